"""Communicators: the transport under ``mg.distributed``.

One process per device, launched by ``mpiexec``/``srun``. A communicator knows its
``rank``, ``world_size`` and ``local_rank`` (rank among the processes on the same
node) and offers in-place collectives on raw arrays:

    all_reduce(array, op)   -> array     op: "sum" | "mean" | "max" | "min"
    broadcast(array, src)   -> array
    all_gather_object(obj)  -> list      (small Python objects, for checks)
    barrier()

``all_reduce_async`` starts a reduction and returns a :class:`Work` whose
``wait()`` finishes it; DistributedDataParallel uses it to overlap communication
with the rest of the backward pass.

* :class:`LocalCommunicator`: a world of one, needing neither mpi4py nor NCCL.
* :class:`MPICommunicator`: mpi4py on NumPy arrays (CPU), and the control plane.
* :class:`NCCLCommunicator`: ``cupy.cuda.nccl`` on CuPy arrays; bootstrapped over
  MPI (rank 0 draws the unique id and broadcasts it).
* :class:`ProcessGroup`: what ``init_process_group`` builds: MPI plus, on GPUs,
  NCCL, picking the transport from the array type.

Every blocking wait polls with a deadline of ``MINIGRAD_DIST_TIMEOUT`` seconds
(default 300) and raises :class:`DistributedTimeoutError` instead of hanging.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

OPS = ("sum", "mean", "max", "min")

# Environment variables that launchers set in every rank they start.
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE",
              "MPI_WORLD_SIZE")
_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")
_LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK",
                    "SLURM_LOCALID")
_TAG_LEFT = 1        # on MPICommunicator's control communicator: "this rank has left the job"


class DistributedError(RuntimeError):
    """A collective failed or the ranks disagree."""


class DistributedTimeoutError(DistributedError, TimeoutError):
    """A collective did not complete within MINIGRAD_DIST_TIMEOUT seconds."""


def default_timeout() -> float:
    """Seconds a collective may wait for the other ranks (``MINIGRAD_DIST_TIMEOUT``, default 300)."""
    value = os.environ.get("MINIGRAD_DIST_TIMEOUT", "300")
    try:
        timeout = float(value)
    except ValueError:
        raise ValueError(f"MINIGRAD_DIST_TIMEOUT must be a number of seconds, got {value!r}") from None
    return timeout if timeout > 0 else float("inf")


def launcher_world_size() -> int:
    """The world size the launcher (mpiexec, srun) announced, 1 for a plain ``python``.

    Reads environment variables only, so nothing is imported."""
    for var in _SIZE_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    # srun sets SLURM_STEP_NUM_TASKS for the step it launched; SLURM_NTASKS alone is also set
    # in the batch script itself, where one process runs.
    if os.environ.get("SLURM_STEP_NUM_TASKS", "").isdigit() and "SLURM_PROCID" in os.environ:
        return int(os.environ["SLURM_STEP_NUM_TASKS"])
    return 1


def _env_int(names, default):
    for var in names:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return default


def _check_op(op):
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")


def _mean_divide(array, world_size):
    if array.dtype.kind not in "fc":
        raise TypeError(f"all_reduce(op='mean') needs a floating-point array, got {array.dtype}")
    array *= array.dtype.type(1.0 / world_size)


class Work:
    """Handle of an asynchronous collective: ``wait()`` blocks until it is done and returns the array."""

    def __init__(self, array, wait=None):
        self.array = array
        self._wait = wait

    def test(self) -> bool:
        """Drive progress; True once complete (a finished Work returns True)."""
        return self._wait is None

    def wait(self):
        if self._wait is not None:
            wait, self._wait = self._wait, None
            wait()
        return self.array


class P2POp:
    """One point-to-point transfer for :meth:`Communicator.exchange`: ``op`` is "send" or "recv",
    ``array`` the data (a recv fills it in place), ``peer`` the other rank in this communicator,
    ``tag`` tells transfers between the same two ranks apart (MPI; NCCL matches them in order),
    and ``what`` names the transfer in a timeout's message."""

    __slots__ = ("op", "array", "peer", "tag", "what")

    def __init__(self, op, array, peer, tag=0, what=""):
        if op not in ("send", "recv"):
            raise ValueError(f"P2POp: op must be 'send' or 'recv', got {op!r}")
        self.op, self.array, self.peer, self.tag = op, array, peer, tag
        self.what = what or f"{op} of {array.dtype} {tuple(array.shape)} {'to' if op == 'send' else 'from'} rank {peer}"

    def __repr__(self):
        return f"P2POp({self.what})"


class Communicator:
    """Base class: rank, world_size, local_rank and in-place collectives on raw arrays."""

    rank = 0
    world_size = 1
    local_rank = 0
    local_size = 1
    name = "local"

    def __init__(self, timeout=None):
        self.timeout = default_timeout() if timeout is None else timeout

    def all_reduce(self, array, op="sum"):
        """Reduce ``array`` over all ranks in place; every rank gets the result. Returns ``array``."""
        return self.all_reduce_async(array, op).wait()

    def all_reduce_async(self, array, op="sum") -> Work:
        raise NotImplementedError  # abstract: each subclass defines it

    def broadcast(self, array, src=0):
        """Overwrite ``array`` on every rank with rank ``src``'s values, in place. Returns ``array``."""
        raise NotImplementedError  # abstract: each subclass defines it

    def all_gather_object(self, obj) -> list:
        """Pickle-able ``obj`` from every rank, as a list indexed by rank."""
        raise NotImplementedError  # abstract: each subclass defines it

    def barrier(self):
        raise NotImplementedError  # abstract: each subclass defines it

    def abort(self, code=1):
        """End every rank of the job now."""
        os._exit(code)

    def leave(self):
        """This rank is done with the job: wait until every rank has left (see MPICommunicator)."""

    # -- sub-groups, gathers and point-to-point (tensor and pipeline parallelism) ---------------
    def split(self, color, key=0) -> "Communicator":
        """A new communicator over the ranks that pass the same ``color``, ordered by ``key``
        (MPI_Comm_split). Every rank of this communicator must call it."""
        raise NotImplementedError  # abstract: each subclass defines it

    def all_gather(self, array):
        """Every rank's ``array`` (same shape and dtype on all), stacked: shape (world_size, *shape)."""
        raise NotImplementedError  # abstract: each subclass defines it

    def exchange_async(self, ops) -> Work:
        """Post every :class:`P2POp` in ``ops`` at once (so no order of sends and receives
        between two ranks can deadlock); ``wait()`` waits for all of them."""
        raise NotImplementedError  # abstract: each subclass defines it

    def exchange(self, ops, wait_for_sends=True) -> Work:
        """Post the sends and receives of ``ops`` together and wait for them. A wait longer than
        ``MINIGRAD_DIST_TIMEOUT`` raises DistributedTimeoutError naming the pending transfers.
        wait_for_sends=False may return once the receives are done, with a Work for the sends
        still in flight (their arrays must not change before its wait())."""
        self.exchange_async(ops).wait()
        return Work(None)

    def close(self):
        pass

    def __repr__(self):
        return (f"{type(self).__name__}(rank={self.rank}, world_size={self.world_size}, "
                f"local_rank={self.local_rank})")


class LocalCommunicator(Communicator):
    """A world of one process: every collective is the identity."""

    def all_reduce_async(self, array, op="sum"):
        _check_op(op)
        return Work(array)

    def broadcast(self, array, src=0):
        if src != 0:
            raise ValueError(f"broadcast src={src} is out of range for a world of size 1")
        return array

    def all_gather_object(self, obj):
        return [obj]

    def barrier(self):
        pass

    def split(self, color, key=0):
        return LocalCommunicator(self.timeout)

    def all_gather(self, array):
        return array[None].copy()

    def exchange_async(self, ops):
        if ops:
            raise ValueError(f"a world of one has no peers to exchange with: {list(ops)}")
        return Work(None)


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(
            "minigrad.distributed needs mpi4py for more than one process: "
            "pip install 'minigrad[mpi]' (mpi4py + mpich), or use your cluster's MPI") from exc
    return MPI


class MPICommunicator(Communicator):
    """Collectives over mpi4py on NumPy arrays. Also the control plane for NCCL."""

    name = "mpi"

    def __init__(self, comm=None, timeout=None):
        super().__init__(timeout)
        MPI = self.MPI = _mpi()
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.world_size = self.comm.Get_size()
        self.local_comm = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = self.local_comm.Get_rank()
        self.local_size = self.local_comm.Get_size()
        self._ops = {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}
        # Leaving the job (leave()): the world's ranks count the collectives they start, and a
        # rank that leaves tells the others its count on a communicator of its own.
        self._seq = 0
        self._left = {}                  # rank -> collectives it had started when it left
        self._control = self.comm.Dup() if comm is None and self.world_size > 1 else None

    def _wait(self, request, what, seq=None):
        """Poll ``request`` until done; raise DistributedTimeoutError after ``self.timeout`` s.

        Polls with Test() and yields the core between polls (ranks often share cores, and the
        peer needs it to make progress); after 50 ms it sleeps between polls, backing off to
        1 ms. ``seq``: the number of the world's collective waited for; while it waits, a rank
        that left the job before starting it aborts the job. With no timeout
        (MINIGRAD_DIST_TIMEOUT=0) and no ``seq`` it blocks in MPI_Wait."""
        if request.Test():
            return
        watch = seq is not None and self._control is not None
        if self.timeout == float("inf") and not watch:
            request.Wait()
            return
        start = time.monotonic()
        delay = 1e-5
        while not request.Test():
            if watch:
                self._abort_if_left(seq, what)
            elapsed = time.monotonic() - start
            if elapsed > self.timeout:
                raise DistributedTimeoutError(
                    f"rank {self.rank}/{self.world_size}: {what} did not complete within "
                    f"{self.timeout:g} s (MINIGRAD_DIST_TIMEOUT). Another rank is stuck, has died, "
                    f"or is running a different collective (e.g. a different number of batches)")
            if elapsed < 0.05:
                os.sched_yield()
            else:
                time.sleep(delay)
                delay = min(2 * delay, 1e-3)

    def all_reduce_async(self, array, op="sum"):
        _check_op(op)
        if not isinstance(array, np.ndarray):
            raise TypeError(f"MPI all_reduce needs a NumPy array, got {type(array).__name__}")
        buf = array
        if not buf.flags.c_contiguous or buf.dtype == np.bool_:
            buf = np.ascontiguousarray(buf, dtype=np.uint8 if buf.dtype == np.bool_ else buf.dtype)
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self._ops[op])
        self._seq += 1
        seq = self._seq

        def finish():
            self._wait(request, f"all_reduce({op}) of {array.dtype} {array.shape}", seq)
            if buf is not array:
                array[...] = buf
            if op == "mean":
                _mean_divide(array, self.world_size)

        work = Work(array, finish)
        work.test = request.Test
        return work

    def broadcast(self, array, src=0):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"MPI broadcast needs a NumPy array, got {type(array).__name__}")
        contiguous = array.flags.c_contiguous
        buf = array if contiguous else np.ascontiguousarray(array)
        wire = buf.view(np.uint8) if buf.dtype == np.bool_ else buf
        self._seq += 1
        self._wait(self.comm.Ibcast(wire, root=src), f"broadcast from rank {src} of {array.shape}", self._seq)
        if not contiguous:
            array[...] = buf
        return array

    def all_gather_object(self, obj):
        # Meet in a nonblocking barrier first, so a missing rank times out instead of hanging.
        self._seq += 1
        self._wait(self.comm.Ibarrier(), "all_gather_object (barrier)", self._seq)
        return self.comm.allgather(obj)

    def split(self, color, key=0):
        self._wait(self.comm.Ibarrier(), "split (barrier)")     # a missing rank times out here
        return MPICommunicator(self.comm.Split(color, key), self.timeout)

    def all_gather(self, array):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"MPI all_gather needs a NumPy array, got {type(array).__name__}")
        out = np.empty((self.world_size,) + array.shape, array.dtype)
        buf = np.ascontiguousarray(array)
        wire = (lambda a: a.view(np.uint8)) if array.dtype == np.bool_ else (lambda a: a)
        self._wait(self.comm.Iallgather(wire(buf), wire(out)), f"all_gather of {array.dtype} {array.shape}")
        return out

    def exchange_async(self, ops):
        requests = self._post(ops)
        return Work(None, lambda: self._finish(ops, requests))

    def exchange(self, ops, wait_for_sends=True):
        requests = self._post(ops)
        if wait_for_sends:
            self._finish(ops, requests)
            return Work(None)
        recvs = [(op, r) for op, r in zip(ops, requests) if op.op == "recv"]
        sends = [(op, r) for op, r in zip(ops, requests) if op.op == "send"]
        if recvs:
            self._finish(*map(list, zip(*recvs)))
        return Work(None, (lambda: self._finish(*map(list, zip(*sends)))) if sends else None)

    def _post(self, ops):
        requests = []
        for op in ops:
            a = op.array
            if not isinstance(a, np.ndarray):
                raise TypeError(f"MPI {op.what} needs a NumPy array, got {type(a).__name__}")
            if op.op == "recv" and not a.flags.c_contiguous:
                raise ValueError(f"MPI {op.what}: the receive buffer must be C-contiguous")
            wire = np.ascontiguousarray(a)
            wire = wire.view(np.uint8) if wire.dtype == np.bool_ else wire
            post = self.comm.Isend if op.op == "send" else self.comm.Irecv
            requests.append(post(wire, op.peer, op.tag))
        return requests

    def _finish(self, ops, requests):
        try:
            self._wait(_AllOf(self.MPI, requests), "exchange")
        except DistributedTimeoutError:
            pending = [op.what for op, r in zip(ops, requests) if not r.Test()]
            for op, r in zip(ops, requests):
                if op.op == "recv" and r != self.MPI.REQUEST_NULL:
                    r.Cancel()      # a late message must not land in a later receive
            raise DistributedTimeoutError(
                f"rank {self.rank}/{self.world_size}: still waiting after {self.timeout:g} s "
                f"(MINIGRAD_DIST_TIMEOUT) for: {'; '.join(pending)}. That peer is stuck, has "
                f"died, or runs another schedule") from None

    def barrier(self):
        self._seq += 1
        self._wait(self.comm.Ibarrier(), "barrier", self._seq)

    def _abort_if_left(self, seq, what):
        """Read the other ranks' notes that they left; abort the job if one left before starting
        collective ``seq``: it will never join it. (One that started it has finished it: then
        the collective completes here too, as at the normal end of a job.)"""
        status = self.MPI.Status()
        while self._control.Iprobe(source=self.MPI.ANY_SOURCE, tag=_TAG_LEFT, status=status):
            note = np.empty(1, np.int64)
            self._control.Recv(note, source=status.Get_source(), tag=_TAG_LEFT)
            self._left[status.Get_source()] = int(note[0])
        gone = sorted(r for r, count in self._left.items() if count < seq)
        if gone:
            sys.stderr.write(f"minigrad.distributed: rank {gone[0]} of {self.world_size} left the job (it "
                             f"exited or called destroy_process_group) while rank {self.rank} waits for "
                             f"it in {what}; aborting all ranks\n")
            sys.stderr.flush()
            sys.stdout.flush()
            time.sleep(0.5)     # let the launcher forward this output before MPI_Abort ends the job
            self.abort(1)

    def leave(self):
        """This rank is done with the job (the end of its script, sys.exit, destroy_process_group):
        tell the other ranks, then wait until every rank has left. A rank still waiting in a
        collective that this rank never started aborts the job (see _abort_if_left), so one rank
        leaving early ends the job within moments instead of leaving the others waiting for the
        timeout; ranks that finish at different times simply wait for each other, without a time
        limit (one still working alone, saving or evaluating, may take as long as it needs), and
        nearly idle, leaving the cores to the ranks still at work."""
        control = self._control
        if control is None:
            return
        note = np.array([self._seq], np.int64)
        sends = [control.Isend(note, dest=r, tag=_TAG_LEFT) for r in range(self.world_size) if r != self.rank]
        everyone_left = control.Ibarrier()
        while not everyone_left.Test():
            time.sleep(1e-3)
        for r in range(self.world_size):           # every note was sent before the barrier completed
            if r != self.rank and r not in self._left:
                control.Recv(np.empty(1, np.int64), source=r, tag=_TAG_LEFT)
        self.MPI.Request.Waitall(sends)
        self._control = None
        control.Free()

    def abort(self, code=1):
        self.comm.Abort(code)

    def close(self):
        if self.local_comm is not None:
            self.local_comm.Free()
            self.local_comm = None
        if self._control is not None:
            self._control.Free()
            self._control = None


class _AllOf:
    """Several MPI requests waited on as one (for MPICommunicator._wait)."""

    def __init__(self, MPI, requests):
        self.MPI, self.requests = MPI, requests

    def Test(self):
        return self.MPI.Request.Testall(self.requests)

    def Wait(self):
        self.MPI.Request.Waitall(self.requests)


_NCCL_DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
                "int32": "NCCL_INT32", "int64": "NCCL_INT64", "uint8": "NCCL_UINT8",
                "int8": "NCCL_INT8", "uint32": "NCCL_UINT32", "uint64": "NCCL_UINT64",
                "bool": "NCCL_UINT8"}


class NCCLCommunicator(Communicator):
    """Collectives over ``cupy.cuda.nccl`` on CuPy arrays of this rank's GPU.

    ``bootstrap`` (an MPICommunicator, or None for a world of one) carries the unique
    id from rank 0. Call it after the rank's device has been selected. Collectives run
    on a dedicated stream ordered after the caller's current stream, so they overlap
    with later kernels; ``Work.wait()`` makes the current stream wait for them, and also
    blocks the CPU until they finish unless the timeout is off (MINIGRAD_DIST_TIMEOUT=0):
    polling is how a stuck peer is detected.
    """

    name = "nccl"

    def __init__(self, bootstrap=None, timeout=None):
        super().__init__(timeout)
        from .. import backend
        cp = backend.cupy()
        if cp is None:
            raise RuntimeError("the NCCL backend needs CuPy with a GPU: pip install 'minigrad[cuda12]'")
        try:
            from cupy.cuda import nccl
        except ImportError as exc:
            raise RuntimeError("CuPy was built without NCCL: pip install nvidia-nccl-cu12 "
                               "(or the cu13 one matching your CuPy)") from exc
        if not getattr(nccl, "available", True):
            raise RuntimeError("CuPy cannot load libnccl: pip install nvidia-nccl-cu12 (or -cu13)")
        self.cp, self.nccl = cp, nccl
        self.bootstrap = bootstrap
        if bootstrap is not None:
            self.rank, self.world_size = bootstrap.rank, bootstrap.world_size
            self.local_rank, self.local_size = bootstrap.local_rank, bootstrap.local_size
        uid = nccl.get_unique_id() if self.rank == 0 else None
        if bootstrap is not None:
            uid = bootstrap.all_gather_object(uid)[0]
        self.device = cp.cuda.Device()
        self.comm = nccl.NcclCommunicator(self.world_size, uid, self.rank)
        self.stream = cp.cuda.Stream(non_blocking=True)
        self._ops = {"sum": nccl.NCCL_SUM, "mean": nccl.NCCL_SUM,
                     "max": nccl.NCCL_MAX, "min": nccl.NCCL_MIN}

    def _dtype(self, array):
        code = _NCCL_DTYPES.get(array.dtype.name)
        if code is None:
            raise TypeError(f"NCCL cannot reduce dtype {array.dtype}")
        return getattr(self.nccl, code)

    def _check(self, array, what):
        if not isinstance(array, self.cp.ndarray):
            raise TypeError(f"NCCL {what} needs a CuPy array, got {type(array).__name__}")
        if array.device.id != self.device.id:
            raise ValueError(f"NCCL {what}: the array is on cuda:{array.device.id}, but rank "
                             f"{self.rank} communicates on cuda:{self.device.id}")

    def _launch(self, array, what, call):
        """Run ``call(buf, stream_ptr)`` on the NCCL stream after the current stream's work."""
        buf = array if array.flags.c_contiguous else self.cp.ascontiguousarray(array)
        ready = self.cp.cuda.get_current_stream().record()
        self.stream.wait_event(ready)
        call(buf, self.stream.ptr)
        done = self.stream.record()

        def finish():
            if self.timeout != float("inf"):
                self._wait_event(done, what)      # the CPU waits, so a stuck peer raises
            self.cp.cuda.get_current_stream().wait_event(done)
            if buf is not array:
                array[...] = buf
            return array

        work = Work(array, finish)
        work.test = lambda: bool(done.done)
        return work

    def _wait_event(self, event, what):
        """Poll the event so that a rank that never joins raises instead of hanging the GPU."""
        start = time.monotonic()
        delay = 1e-5
        while not event.done:
            self.comm.check_async_error()
            if time.monotonic() - start > self.timeout:
                self.comm.abort()       # frees the GPU from the stuck kernel
                raise DistributedTimeoutError(
                    f"rank {self.rank}/{self.world_size}: NCCL {what} did not complete within "
                    f"{self.timeout:g} s (MINIGRAD_DIST_TIMEOUT); the NCCL communicator was aborted")
            time.sleep(delay)
            delay = min(2 * delay, 1e-3)

    def all_reduce_async(self, array, op="sum"):
        _check_op(op)
        self._check(array, "all_reduce")
        if op == "mean" and array.dtype.kind not in "fc":
            raise TypeError(f"all_reduce(op='mean') needs a floating-point array, got {array.dtype}")
        dtype, nccl_op = self._dtype(array), self._ops[op]
        if array.dtype == np.bool_ and op == "sum":
            raise TypeError("NCCL all_reduce(op='sum') of a bool array: cast it to an integer first")

        def call(buf, stream):
            self.comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, dtype, nccl_op, stream)
            if op == "mean":
                with self.stream:
                    buf *= buf.dtype.type(1.0 / self.world_size)

        return self._launch(array, f"all_reduce({op}) of {array.dtype} {array.shape}", call)

    def broadcast(self, array, src=0):
        self._check(array, "broadcast")
        dtype = self._dtype(array)

        def call(buf, stream):
            self.comm.broadcast(buf.data.ptr, buf.data.ptr, buf.size, dtype, src, stream)

        return self._launch(array, f"broadcast from rank {src} of {array.shape}", call).wait()

    def all_gather_object(self, obj):
        if self.bootstrap is None:
            return [obj]
        return self.bootstrap.all_gather_object(obj)

    def all_gather(self, array):
        self._check(array, "all_gather")
        dtype = self._dtype(array)
        with self.device:
            out = self.cp.empty((self.world_size,) + array.shape, array.dtype)

        def call(buf, stream):
            self.comm.allGather(buf.data.ptr, out.data.ptr, buf.size, dtype, stream)

        self._launch(array, f"all_gather of {array.dtype} {array.shape}", call).wait()
        return out

    def exchange_async(self, ops):
        ops = list(ops)
        for op in ops:
            self._check(op.array, op.what)
            if op.op == "recv" and not op.array.flags.c_contiguous:
                raise ValueError(f"NCCL {op.what}: the receive buffer must be C-contiguous")
        bufs = [op.array if op.array.flags.c_contiguous else self.cp.ascontiguousarray(op.array) for op in ops]
        self.stream.wait_event(self.cp.cuda.get_current_stream().record())
        # One NCCL group: all sends and receives progress together, in any order between peers.
        self.nccl.groupStart()
        try:
            for op, buf in zip(ops, bufs):
                move = self.comm.send if op.op == "send" else self.comm.recv
                move(buf.data.ptr, buf.size, self._dtype(buf), op.peer, self.stream.ptr)
        finally:
            self.nccl.groupEnd()
        done = self.stream.record()

        def finish():
            if self.timeout != float("inf"):
                self._wait_event(done, "; ".join(op.what for op in ops))
            self.cp.cuda.get_current_stream().wait_event(done)

        return Work(None, finish)

    def barrier(self):
        if self.bootstrap is not None:
            self.bootstrap.barrier()
        self.cp.cuda.get_current_stream().synchronize()

    def abort(self, code=1):
        try:
            if self.comm is not None:
                self.comm.abort()
        finally:
            if self.bootstrap is not None:
                self.bootstrap.abort(code)
            os._exit(code)

    def close(self):
        if self.comm is not None:
            self.comm.destroy()
            self.comm = None


class ProcessGroup(Communicator):
    """The default group: MPI for NumPy arrays, NCCL for CuPy arrays (when a GPU is in use).

    Either part may be absent: a world of one has neither; ``backend="nccl"``
    requires the NCCL part; a CPU-only job has no NCCL part.
    """

    def __init__(self, host: Communicator, nccl: NCCLCommunicator | None = None):
        super().__init__(host.timeout)
        self.host, self.nccl = host, nccl
        self.rank, self.world_size = host.rank, host.world_size
        self.local_rank, self.local_size = host.local_rank, host.local_size
        self.name = "nccl" if nccl is not None else host.name
        self.device = None if nccl is None else nccl.device.id

    def _for(self, array):
        if isinstance(array, np.ndarray):
            return self.host
        if self.nccl is not None:
            return self.nccl
        if self.world_size == 1:
            return self.host
        raise TypeError(f"cannot communicate a {type(array).__module__}.{type(array).__name__}: "
                        "GPU arrays need the NCCL backend (init_process_group('nccl'))")

    def all_reduce_async(self, array, op="sum"):
        return self._for(array).all_reduce_async(array, op)

    def broadcast(self, array, src=0):
        return self._for(array).broadcast(array, src)

    def all_gather_object(self, obj):
        return self.host.all_gather_object(obj)

    def split(self, color, key=0):
        """A ProcessGroup over the ranks with this ``color`` (ordered by ``key``), with its own
        NCCL communicator when this group has one."""
        host = self.host.split(color, key)
        nccl = None
        if self.nccl is not None:
            nccl = NCCLCommunicator(None if isinstance(host, LocalCommunicator) else host, self.timeout)
        return ProcessGroup(host, nccl)

    def all_gather(self, array):
        return self._for(array).all_gather(array)

    def exchange(self, ops, wait_for_sends=True):
        if all(isinstance(op.array, np.ndarray) for op in ops):
            return self.host.exchange(ops, wait_for_sends)
        self.exchange_async(ops).wait()     # NCCL: one group, done as a whole
        return Work(None)

    def exchange_async(self, ops):
        """NumPy arrays travel over MPI, CuPy arrays over NCCL; both kinds are posted before either waits."""
        host_ops = [op for op in ops if isinstance(op.array, np.ndarray)]
        device_ops = [op for op in ops if not isinstance(op.array, np.ndarray)]
        works = [self.host.exchange_async(host_ops)] if host_ops else []
        if device_ops:
            works.append(self._for(device_ops[0].array).exchange_async(device_ops))
        return Work(None, lambda: [w.wait() for w in works])

    def barrier(self):
        (self.nccl or self.host).barrier()

    def abort(self, code=1):
        (self.nccl or self.host).abort(code)

    def leave(self):
        self.host.leave()

    def close(self):
        if self.nccl is not None:
            self.nccl.close()
        self.host.close()

    def __repr__(self):
        return (f"ProcessGroup(backend={self.name!r}, rank={self.rank}, world_size={self.world_size}, "
                f"local_rank={self.local_rank}, device={self.device})")


def _select_gpu(local_rank):
    """Make GPU ``local_rank % device_count`` current; return its index, or None without a GPU."""
    from .. import backend
    cp = backend.cupy()
    if cp is None:
        return None
    count = cp.cuda.runtime.getDeviceCount()
    if count == 0:
        return None
    index = local_rank % count
    cp.cuda.Device(index).use()
    return index


def _gpu_available():
    from .. import backend
    cp = backend.cupy()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def create(backend="auto", timeout=None) -> ProcessGroup:
    """Build the process group for this process (called by ``init_process_group``).

    ``auto``: MPI when a launcher started several ranks (else a local world of one),
    plus NCCL when CuPy sees a GPU. ``mpi``: MPI only (even for one rank).
    ``nccl``: MPI bootstrap plus NCCL; requires a GPU.
    """
    if backend not in ("auto", "mpi", "nccl"):
        raise ValueError(f"backend must be 'auto', 'mpi' or 'nccl', got {backend!r}")
    size = launcher_world_size()
    if size == 1 and (backend == "auto" or (backend == "nccl" and "mpi4py" not in sys.modules)):
        host = LocalCommunicator(timeout)
    else:
        host = MPICommunicator(timeout=timeout)
        announced = _env_int(_SIZE_VARS, 1)        # by mpiexec itself (Slurm's counts can be stale)
        if announced > 1 and host.world_size != announced:
            raise RuntimeError(
                f"mpiexec started {announced} processes but MPI sees a world of {host.world_size}: "
                "mpi4py is linked against another MPI than the one whose mpiexec started this job. "
                "Launch with the matching mpiexec (pip's mpich puts one next to python), or rebuild "
                "mpi4py for your cluster's MPI (pip install --no-binary mpi4py mpi4py)")
        if host.world_size == 1 and backend == "auto":
            host.close()
            host = LocalCommunicator(timeout)
    host.local_rank = host.local_rank if host.world_size > 1 else _env_int(_LOCAL_RANK_VARS, 0)
    nccl = None
    if backend == "nccl" or (backend == "auto" and host.world_size > 1 and _gpu_available()):
        if _select_gpu(host.local_rank) is None:
            raise RuntimeError("backend='nccl' needs CuPy and at least one visible GPU")
        nccl = NCCLCommunicator(None if isinstance(host, LocalCommunicator) else host, timeout)
    return ProcessGroup(host, nccl)
