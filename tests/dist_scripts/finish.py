"""Run under `mpiexec -n 2`: a normal end of training whose ranks finish at different times.

Rank 0 spends another 2 s after the last collective (saving, evaluating), longer than the
collectives' timeout the test sets; the other ranks reach the end of the script (or
destroy_process_group, with argv[1] == "destroy") first and wait for it. The job must exit 0."""
import sys
import time

import numpy as np
from _common import mg  # noqa: F401  (puts the repo on sys.path)

import minigrad.distributed as dist

dist.init_process_group()
rank = dist.get_rank()
for _ in range(3):
    dist.all_reduce(np.ones(3))
if rank == 0:
    time.sleep(2.0)
if sys.argv[1:] == ["destroy"]:
    dist.destroy_process_group()
print(f"rank {rank} finished", flush=True)
