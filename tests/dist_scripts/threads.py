"""Run under `mpiexec -n 2` without thread-count variables: every rank reports the threads its CPU
work uses (minigrad's count, the extension's kernels, each BLAS pool after a matmul loaded MKL)."""
import json
import os

import numpy as np
from _common import mg
from threadpoolctl import threadpool_info

import minigrad.distributed as dist
from minigrad import backend

dist.init_process_group()
(mg.ones(4, 4) @ mg.ones(4, 4)).numpy()
report = {"threads": mg.get_num_threads(), "info": backend.threads_info(),
          "kernels": backend.ext().get_num_threads() if backend.ext() is not None else None,
          "blas": {i["internal_api"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"},
          "cores": len(os.sched_getaffinity(0)), "local_size": dist.get_process_group().local_size}
everyone = dist.all_gather_object(report)
dist.all_reduce(np.ones(1))
if dist.get_rank() == 0:
    print(json.dumps(everyone))
