"""DistributedDataParallel: one model replica per rank, gradients averaged in flat buckets."""
from __future__ import annotations

import contextlib
import time

import numpy as np

from .. import autograd
from ..backend import get_array_module


class _Bucket:
    """Gradients of a few parameters of one dtype and device, packed into one flat buffer.

    ``buffer[:numel]`` holds the gradients; ``buffer[numel + i]`` is 1 when parameter i
    had a gradient on this rank, so after the sum a parameter whose gradient is None on
    every rank keeps ``grad = None`` (and a parameter used on only some ranks still
    gets the mean)."""

    def __init__(self, params):
        self.params = params
        self.offsets, offset = [], 0
        for p in params:
            self.offsets.append(offset)
            offset += p.data.size
        self.numel = offset
        first = params[0].data
        xp = get_array_module(first)
        with (first.device if xp is not np else contextlib.nullcontext()):   # the parameters' GPU
            self.buffer = xp.zeros(self.numel + len(params), dtype=first.dtype)
        self.reset()

    def fill(self, i):
        """Copy parameter i's current gradient (or zeros) into the buffer."""
        p, start = self.params[i], self.offsets[i]
        view = self.buffer[start:start + p.data.size]
        g = p.grad
        if g is None:
            view.fill(0)
            self.buffer[self.numel + i] = 0
        else:
            if tuple(g.data.shape) != tuple(p.data.shape):
                raise RuntimeError(f"DistributedDataParallel: a gradient of shape {tuple(g.data.shape)} "
                                   f"for a parameter of shape {tuple(p.data.shape)}")
            view[...] = g.data.reshape(-1)
            self.buffer[self.numel + i] = 1
        self.filled[i] = True
        self.pending -= 1

    def unpack(self, world_size):
        """Store the mean over ranks back into each parameter's ``.grad`` (one pass per gradient)."""
        xp = get_array_module(self.buffer)
        scale = self.buffer.dtype.type(1.0 / world_size)
        had_grad = self.buffer[self.numel:].tolist()
        for p, start, flag in zip(self.params, self.offsets, had_grad):
            if not flag:
                continue            # None on every rank: stays None
            total = self.buffer[start:start + p.data.size].reshape(p.data.shape)
            g = p.grad
            if g is not None and g.data.flags.c_contiguous and getattr(g.data.flags, "writeable", True):
                xp.multiply(total, scale, out=g.data)
            else:
                p.grad = autograd._wrap(total * scale, p.device)

    def reset(self):
        self.filled = [False] * len(self.params)
        self.pending = len(self.params)
        self.work = None


class DistributedDataParallel:
    """Wrap ``module`` so that, when ``loss.backward()`` returns, every parameter's
    ``.grad`` is the mean of the ranks' gradients.

    At construction every rank checks that all ranks hold parameters and buffers with the
    same names, shapes and dtypes (a clear error otherwise), and rank 0's weights and
    buffers are broadcast to all. During backward, gradients are copied into flat buckets of about
    ``bucket_mb`` MiB in reverse parameter order (the order backward produces them);
    each bucket is all-reduced as soon as its last gradient arrives, overlapping
    communication with the rest of the backward pass. A callback at the end of backward
    sends the remaining buckets (parameters that got no gradient) and waits for all.
    Every backward pass starts from empty buckets, also after one that raised.

    The loss on each rank must be the mean over its own batch (as ``cross_entropy`` and
    ``mse_loss`` are by default), and all ranks must use the same batch size
    (DistributedSampler): then the mean of the ranks' gradients is the gradient of the
    global batch's mean loss. Move the model to its device before wrapping it.

    ``model(x)`` calls the module; ``.module`` is the wrapped module; ``state_dict()``
    and other attributes pass through unchanged (keys carry no "module." prefix).
    """

    def __init__(self, module, bucket_mb: float = 25, group=None):
        from . import get_process_group
        self.module = module
        self.group = group if group is not None else get_process_group()
        self.bucket_bytes = max(1, int(bucket_mb * 2**20))
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self._names = [n for n, _ in named]
        self._params = [p for _, p in named]
        self._sync = True
        self._pass = None           # the backward pass the buckets are filled for
        self._next = 0
        self._handles = []
        self.stats = {"all_reduces": 0, "bytes": 0, "wait_s": 0.0}
        self._rebuild_buckets()
        buffers = getattr(module, "named_buffers", None)
        self._buffers = [(n, b) for n, b in (buffers() if buffers is not None else ()) if b is not None]
        if self.group.world_size > 1 or self.group.name != "local":
            self._check_replicas(named, self._buffers)
            self._broadcast_weights()
            self._handles = [p.register_post_accumulate_grad_hook(self._on_grad) for p in self._params]

    # -- construction -------------------------------------------------------------------
    def _make_buckets(self, params):
        """Group parameters in reverse order into buckets of one device and dtype each."""
        buckets, open_ = [], {}                     # (device, dtype) -> (params, bytes)
        for p in reversed(params):
            key = (str(p.device), p.data.dtype)
            group, nbytes = open_.get(key, ([], 0))
            size = p.data.size * p.data.dtype.itemsize
            if group and nbytes + size > self.bucket_bytes:
                buckets.append(group)
                group, nbytes = [], 0
            group.append(p)
            open_[key] = (group, nbytes + size)
        buckets.extend(group for group, _ in open_.values())
        # Start collectives in the order the buckets' first gradients arrive, the same on every rank.
        order = {id(p): i for i, p in enumerate(reversed(params))}
        buckets.sort(key=lambda group: order[id(group[0])])
        return [_Bucket(group) for group in buckets]

    def _check_replicas(self, named, buffers):
        def describe(entries):
            return [(n, tuple(t.data.shape), str(t.data.dtype)) for n, t in entries]

        everyone = self.group.all_gather_object((describe(named), describe(buffers)))
        for kind, i in (("parameter", 0), ("buffer", 1)):
            ref = everyone[0][i]
            for rank, theirs in enumerate(everyone):
                if theirs[i] != ref:
                    problem = _first_difference(ref, theirs[i], rank, kind)
                    raise RuntimeError(f"DistributedDataParallel: the model on rank {rank} differs from the "
                                       f"one on rank 0: {problem}. Every rank must build the same model")

    def _broadcast_weights(self):
        """Rank 0's parameters overwrite everyone's, one broadcast per bucket."""
        for b in self._buckets:
            for p, start in zip(b.params, b.offsets):
                b.buffer[start:start + p.data.size] = p.data.reshape(-1)
            self.group.broadcast(b.buffer, 0)
            for p, start in zip(b.params, b.offsets):
                p.data[...] = b.buffer[start:start + p.data.size].reshape(p.data.shape)
        for _, t in self._buffers:
            self.group.broadcast(t.data, 0)

    # -- backward -------------------------------------------------------------------------
    def _on_grad(self, p):
        if not self._sync:
            return
        current = autograd.current_backward_pass()
        if current is not self._pass or current is None:
            self._start_pass(current)
        bucket, i = self._slot[id(p)]
        if bucket.filled[i]:
            return
        bucket.fill(i)
        if bucket.pending == 0:
            self._launch_ready()
        elif self._next > 0:
            self._buckets[self._next - 1].work.test()      # let MPI progress the one in flight

    def _launch_ready(self):
        buckets = self._buckets
        while self._next < len(buckets) and buckets[self._next].pending == 0:
            b = buckets[self._next]
            b.work = self.group.all_reduce_async(b.buffer, "sum")
            self.stats["all_reduces"] += 1
            self.stats["bytes"] += b.buffer.nbytes
            self._next += 1

    def _start_pass(self, current):
        """The first gradient of a backward pass: start from empty buckets. A previous pass that
        raised before its end (an exception in a hook or an op's backward) still has buckets
        filled or in flight; its remaining all-reduces are sent and all are waited for, unused,
        so that every rank runs one all-reduce per bucket per pass and no buffer is reused while
        MPI still reads it."""
        if self._pass is not None:
            self._complete(unpack=False)
        self._pass = current
        autograd.queue_callback(self._finalize)

    def _finalize(self):
        self._complete(unpack=True)

    def _complete(self, unpack):
        start = time.perf_counter()
        try:
            for b in self._buckets[self._next:]:
                for i, done in enumerate(b.filled):
                    if not done:
                        b.fill(i)
            self._launch_ready()
            world = self.group.world_size
            for b in self._buckets:
                b.work.wait()
                if unpack:
                    b.unpack(world)
        finally:
            for b in self._buckets:
                b.reset()
            self._next = 0
            self._pass = None
            self.stats["wait_s"] += time.perf_counter() - start

    @contextlib.contextmanager
    def no_sync(self):
        """Accumulate gradients locally: backward passes inside skip the all-reduce; the
        first backward after the block averages the accumulated gradients."""
        previous, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = previous

    # -- passthrough -----------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        return self.module.load_state_dict(*args, **kwargs)

    def parameters(self, *args, **kwargs):
        return self.module.parameters(*args, **kwargs)

    def named_parameters(self, *args, **kwargs):
        return self.module.named_parameters(*args, **kwargs)

    def to(self, *args, **kwargs):
        """Move or cast the module (as Module.to) and rebuild the buckets; returns the wrapper."""
        return self._convert("to", *args, **kwargs)

    def cuda(self, i=0):
        return self._convert("cuda", i)

    def cpu(self):
        return self._convert("cpu")

    def float(self):
        return self._convert("float")

    def double(self):
        return self._convert("double")

    def half(self):
        return self._convert("half")

    def _convert(self, method, *args, **kwargs):
        getattr(self.module, method)(*args, **kwargs)
        self._rebuild_buckets()
        return self

    def _rebuild_buckets(self):
        """Buckets (and each parameter's slot in them) for the parameters' current arrays."""
        self._buckets = self._make_buckets(self._params) if self._params else []
        self._slot = {id(p): (b, i) for b in self._buckets for i, p in enumerate(b.params)}

    def train(self, mode=True):
        self.module.train(mode)
        return self

    def eval(self):
        self.module.eval()
        return self

    def remove_hooks(self):
        """Detach from the module's parameters (the module then trains locally again)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __getattr__(self, name):
        if name == "module":            # not yet set: during unpickling or a failed __init__
            raise AttributeError(name)
        return getattr(self.module, name)

    def __repr__(self):
        return (f"DistributedDataParallel(world_size={self.group.world_size}, "
                f"buckets={len(self._buckets)}, module={self.module!r})")


def _first_difference(ref, theirs, rank, kind):
    """What differs between rank 0's (name, shape, dtype) list of parameters or buffers and rank's."""
    names_ref = [n for n, _, _ in ref]
    names = [n for n, _, _ in theirs]
    missing = [n for n in names_ref if n not in names]
    extra = [n for n in names if n not in names_ref]
    if missing or extra:
        return (f"{kind}s missing on rank {rank}: {missing}; "
                f"{kind}s only on rank {rank}: {extra}")
    if names != names_ref:
        return f"{kind}s are registered in another order on rank {rank}: {names} vs {names_ref}"
    for (name, shape0, dtype0), (_, shape, dtype) in zip(ref, theirs):
        if shape != shape0:
            return f"{kind} {name!r} has shape {shape} on rank {rank} but {shape0} on rank 0"
        if dtype != dtype0:
            return f"{kind} {name!r} has dtype {dtype} on rank {rank} but {dtype0} on rank 0"
    return "unknown difference"
