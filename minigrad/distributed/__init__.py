"""Data-parallel training across processes: MPI on CPUs, NCCL (through CuPy) on GPUs.

One process per device. Launch the same script with ``mpiexec -n 4 python train.py``
(or ``srun``); a plain ``python train.py`` is a world of one and needs neither mpi4py
nor NCCL::

    import minigrad as mg
    import minigrad.distributed as dist

    dist.init_process_group()                  # "auto": MPI, plus NCCL when a GPU is in use
    device = dist.get_device()                 # "cuda:<local_rank % n_gpus>" with NCCL, else "cpu"
    model = dist.DistributedDataParallel(make_model().to(device))   # rank 0's weights everywhere
    opt = mg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sampler = dist.DistributedSampler(len(train_set), shuffle=True, seed=0)
    loader = mg.data.DataLoader(train_set, batch_size=64, sampler=sampler)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        dist.check_equal(len(loader), "the number of batches per epoch")
        for x, y in loader:
            opt.zero_grad()
            loss = mg.nn.functional.cross_entropy(model(x), y)   # a per-batch *mean*
            loss.backward()                    # grads are averaged over ranks on return
            opt.step()
        if dist.get_rank() == 0:
            mg.save(model.state_dict(), "model.safetensors")

The loss must be a mean over the batch: DDP averages gradients over ranks, so the
result equals the gradient of the mean loss over the global batch only when each
rank's loss is its own batch mean (and all ranks use equal batch sizes, which
DistributedSampler guarantees).

Failures end the job instead of hanging it: with more than one rank an uncaught
exception on any rank aborts all ranks (``MPI_Abort``), and a collective that does
not complete within ``MINIGRAD_DIST_TIMEOUT`` seconds (default 300) raises
:class:`DistributedTimeoutError`.

What ``Trainer.fit`` does under ``mpiexec`` (minigrad/train.py), for other training loops::

    world = dist.get_world_size()              # 1 without a launcher: nothing below changes
    if world > 1:
        if dist.get_device() != "cpu":         # under NCCL: this rank's GPU, "cuda:<local_rank % n>"
            model.to(dist.get_device())
        model = dist.DistributedDataParallel(model)          # rank 0's weights everywhere
        sampler = dist.DistributedSampler(len(x), shuffle=shuffle, seed=seed)
        loader = DataLoader(dataset, batch_size, sampler=sampler)
    for epoch in ...:
        sampler.set_epoch(epoch)               # (or loader.set_epoch(epoch))
        dist.check_equal(len(loader), "the number of batches per epoch")   # clear error, no hang
        ... train; keep loss_sum (loss * batch size), correct, count ...
        loss_sum, correct, count = dist.all_reduce([loss_sum, correct, count])   # sums over ranks
        history["loss"].append(loss_sum / count)
        if dist.is_main_process(): print / tqdm / save checkpoints (model.state_dict() has no prefix)

Note that the padded samples DistributedSampler adds (when the data does not split
evenly) are counted twice in the epoch metrics, as in PyTorch.

The other two ways to split training, composable with this one on a device mesh
(``init_device_mesh``): tensor parallel (tensor_parallel.py: ColumnParallelLinear,
RowParallelLinear and the f/g operators) and pipeline parallel (pipeline.py: PipelineStage,
ScheduleGPipe, Schedule1F1B; schedule.py: the schedules as data, validated before they run).
hybrid.py (HybridParallel) combines all three for ``Trainer(..., pipeline_parallel=,
tensor_parallel=)``.
"""
from __future__ import annotations

import atexit
import os
import sys
import time

import numpy as np

from .comm import (Communicator, DistributedError, DistributedTimeoutError, LocalCommunicator,
                   MPICommunicator, NCCLCommunicator, ProcessGroup, Work, default_timeout,
                   launcher_world_size)
from .parallel import DistributedDataParallel
from .sampler import DistributedSampler

__all__ = [
    "init_process_group", "destroy_process_group", "is_initialized", "get_rank", "get_world_size",
    "get_local_rank", "get_device", "is_main_process", "all_reduce", "broadcast", "barrier",
    "all_gather_object", "check_equal", "get_process_group", "DistributedDataParallel",
    "DistributedSampler", "DistributedError", "DistributedTimeoutError", "Communicator",
    "LocalCommunicator", "MPICommunicator", "NCCLCommunicator", "ProcessGroup", "Work",
    "default_timeout", "launcher_world_size",
]
# Tensor and pipeline parallelism, imported at first use: `import minigrad` imports this package
# (for DistributedSampler) and should not pay for the pipeline machinery.
_LAZY = {
    "mesh": ("DeviceMesh", "init_device_mesh"),
    "tensor_parallel": ("ColumnParallelLinear", "RowParallelLinear", "copy_to_tensor_parallel",
                        "reduce_from_tensor_parallel", "gather_from_tensor_parallel", "scatter_to_tensor_parallel"),
    "pipeline": ("split_sequential", "PipelineStage", "ScheduleGPipe", "Schedule1F1B"),
    "schedule": ("ScheduleError",),
    "hybrid": ("HybridParallel",),
}
_LAZY_NAMES = {name: module for module, names in _LAZY.items() for name in names}
__all__ += list(_LAZY_NAMES)


def __getattr__(name):
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    value = globals()[name] = getattr(importlib.import_module(f".{module}", __name__), name)
    return value

_group: ProcessGroup | None = None
_previous_excepthook = None


def init_process_group(backend: str = "auto", timeout: float | None = None) -> ProcessGroup:
    """Join the job's process group; returns it. Calling it again returns the same group.

    backend: "auto" (MPI between ranks, plus NCCL for CuPy arrays when a GPU is visible),
    "mpi" (MPI only, even for one rank) or "nccl" (requires a GPU; each rank uses GPU
    ``local_rank % device_count``). timeout: seconds a collective may wait
    (default ``MINIGRAD_DIST_TIMEOUT`` or 300).
    """
    global _group
    if _group is not None:
        if backend != "auto" and backend != _group.name:
            raise RuntimeError(f"the process group is already initialized with backend "
                               f"{_group.name!r}; call destroy_process_group() first")
        return _group
    from . import comm
    _group = comm.create(backend, timeout)
    if _group.world_size > 1:
        _install_excepthook()
        atexit.register(_leave)
        _share_cores(_group)
    return _group


def _share_cores(group):
    """Each of the ranks on a node uses its share of the node's cores for BLAS and kernel threads
    (unless the user set a count): a library's default of one thread per core would otherwise run
    cores x ranks threads that take turns on the cores."""
    if group.local_size > 1:
        mine = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
        node = set().union(*group.host.local_comm.allgather(list(mine)))    # the cores of all local ranks
        from .. import backend as array_backend
        array_backend.share_threads(len(node), group.local_size)


def destroy_process_group():
    """Leave the job and release the communicators; a later call re-initializes.

    With several ranks it returns once every rank has called it or exited (ranks that finish
    at different times wait for each other); a rank that is still waiting in a collective
    then aborts the job, as when a rank exits early.
    """
    global _group
    if _group is not None:
        _leave()
        group, _group = _group, None
        group.close()
        _restore_excepthook()
        atexit.unregister(_leave)


def _leave():
    """At exit (the end of the script, sys.exit) or destroy_process_group: tell the other ranks this
    one is done and wait for all to finish. Ranks still waiting in a collective this rank never
    joins abort the job at once, naming this rank, instead of waiting out the timeout."""
    if _group is not None:
        _group.leave()


def is_initialized() -> bool:
    return _group is not None


def get_process_group() -> ProcessGroup:
    """The default group, initialized with backend "auto" on first use."""
    return _group if _group is not None else init_process_group()


def get_rank() -> int:
    return get_process_group().rank


def get_world_size() -> int:
    return get_process_group().world_size


def get_local_rank() -> int:
    """Rank among the processes on this node (from MPI's shared-memory split)."""
    return get_process_group().local_rank


def is_main_process() -> bool:
    """True on rank 0, the rank that prints and saves."""
    return get_rank() == 0


def get_device() -> str:
    """This rank's device: "cuda:N" when the group communicates over NCCL, else "cpu"."""
    group = get_process_group()
    return "cpu" if group.device is None else f"cuda:{group.device}"


def _raw(x):
    from ..tensor import Tensor
    return x.data if isinstance(x, Tensor) else x


def all_reduce(x, op: str = "sum"):
    """Reduce over all ranks; op is "sum", "mean", "max" or "min".

    A Tensor or array is reduced in place and returned. A Python number, or a list or
    tuple of numbers, is returned reduced as the same kind of value (convenient for
    metric sums: ``loss_sum, n = all_reduce([loss_sum, n])``).
    """
    group = get_process_group()
    if isinstance(x, (int, float, np.number)) or isinstance(x, (list, tuple)):
        values = np.asarray(x)
        if values.dtype.kind not in "biuf":
            raise TypeError(f"all_reduce needs numbers, got {x!r}")
        if values.dtype.kind == "b":
            values = values.astype(np.int64)
        if op == "mean" or values.dtype.kind == "f":
            values = values.astype(np.float64)
        values = np.array(values, order="C")          # a private, contiguous copy (0-d stays 0-d)
        group.all_reduce(values, op)
        out = values.tolist()
        return type(x)(out) if isinstance(x, (list, tuple)) else out
    group.all_reduce(_raw(x), op)
    return x


def broadcast(x, src: int = 0):
    """Overwrite the Tensor or array ``x`` on every rank with rank ``src``'s values, in place."""
    get_process_group().broadcast(_raw(x), src)
    return x


def barrier():
    """Wait until every rank reaches this point (raises after the timeout)."""
    get_process_group().barrier()


def all_gather_object(obj) -> list:
    """A picklable object from every rank, as a list indexed by rank."""
    return get_process_group().all_gather_object(obj)


def check_equal(value, what: str = "value"):
    """Raise DistributedError on every rank unless ``value`` is the same on all ranks.

    Call it where a mismatch would otherwise deadlock, e.g. with ``len(loader)`` at the
    start of each epoch: ranks with different batch counts would wait forever in the
    gradient all-reduce of the batch the others do not have. Returns ``value``.
    """
    values = all_gather_object(value)
    if any(v != values[0] for v in values[1:]):
        detail = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
        raise DistributedError(f"{what} differs across ranks ({detail}); every rank must agree. "
                               "Shard the data with DistributedSampler, which gives every rank "
                               "the same number of samples and batches")
    return value


def _install_excepthook():
    """With several ranks, an uncaught exception on one rank aborts the whole job."""
    global _previous_excepthook
    if _previous_excepthook is not None:
        return
    _previous_excepthook = previous = sys.excepthook

    def abort_all(exc_type, exc, tb):
        group = _group
        try:
            previous(exc_type, exc, tb)
            if group is not None:
                sys.stderr.write(f"minigrad.distributed: rank {group.rank} of {group.world_size} "
                                 f"failed with {exc_type.__name__}; aborting all ranks\n")
            sys.stderr.flush()
            sys.stdout.flush()
            time.sleep(0.5)     # let the launcher forward this output before MPI_Abort kills the job
        finally:
            if group is not None and group.world_size > 1:
                group.abort(1)

    sys.excepthook = abort_all


def _restore_excepthook():
    global _previous_excepthook
    if _previous_excepthook is not None:
        sys.excepthook, _previous_excepthook = _previous_excepthook, None
