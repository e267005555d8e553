"""Run under `mpiexec -n 2`: the last rank raises while the others wait in an all-reduce.

The job must end (non-zero) right away instead of hanging. argv[1]: "raise" (an uncaught
exception, aborted by minigrad's excepthook), "exit" (the last rank dies without a word, as
on a segfault or an OOM kill), "sys.exit" (the last rank calls sys.exit(argv[2]): it leaves
while the others are still in the job) or "timeout" (the last rank stalls; the others'
collective times out after MINIGRAD_DIST_TIMEOUT seconds)."""
import os
import sys
import time

import numpy as np
from _common import mg  # noqa: F401  (puts the repo on sys.path)

import minigrad.distributed as dist

dist.init_process_group()
rank, world = dist.get_rank(), dist.get_world_size()
dist.all_reduce(np.ones(3))                    # everyone is up
mode = sys.argv[1] if len(sys.argv) > 1 else "raise"
if rank == world - 1:
    if mode == "raise":
        raise ValueError(f"rank {rank} fails on purpose")
    if mode == "exit":
        os._exit(3)
    if mode == "sys.exit":
        sys.exit(int(sys.argv[2]))
    time.sleep(120)
dist.all_reduce(np.ones(3))                    # the others wait here
print(f"rank {rank} was not stopped", flush=True)
