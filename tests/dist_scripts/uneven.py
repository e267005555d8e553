"""Run under `mpiexec -n 2`: ranks whose data gives different batch counts get a clear error."""
import numpy as np
from _common import mg

import minigrad.distributed as dist

dist.init_process_group()
rank = dist.get_rank()
n_batches = 3 + rank                            # as if each rank had sharded the data by hand
dist.check_equal(n_batches, "the number of batches per epoch")
for _ in range(n_batches):                      # would deadlock on the last rank's extra batch
    dist.all_reduce(mg.tensor(np.ones(2)))
print(f"rank {rank} was not stopped", flush=True)
