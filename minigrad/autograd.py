"""The tape: Function (forward and backward side by side), grad mode, and backward().

Every differentiable op is a Function subclass whose static `forward` and
`backward` take and return raw arrays (NumPy or CuPy). `Function.apply` runs
forward and, when grad mode is on and an input requires grad, links the output
Tensor to the Function instance (the "ctx"), which remembers the inputs and
whatever forward saved. `backward` walks those links in reverse topological
order without recursion.
"""
import collections
import functools
import operator
import threading
import weakref

from .backend import CPU, get_array_module, use_device

Tensor = None  # set by minigrad.tensor, which imports this module
_wrap = None
_new = object.__new__
_grad_fn = operator.attrgetter("_ctx")


class _ThreadState(threading.local):
    """Grad mode and the running backward pass's callbacks: per thread, as in PyTorch."""
    grad_enabled = True
    callbacks = None  # list while a backward pass runs in this thread, for queue_callback


_state = _ThreadState()


class _GradMode:
    """Context manager and decorator (with or without parentheses) that sets grad mode."""
    mode = True

    def __new__(cls, fn=None):
        return _new(cls) if fn is None else _new(cls)(fn)  # fn: used bare, as @no_grad

    def __enter__(self):
        self.prev, _state.grad_enabled = _state.grad_enabled, self.mode

    def __exit__(self, *exc):
        _state.grad_enabled = self.prev

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev, _state.grad_enabled = _state.grad_enabled, mode
            try:
                return fn(*args, **kwargs)
            finally:
                _state.grad_enabled = prev
        return wrapper


class no_grad(_GradMode):
    """Context manager (or decorator): ops run without recording the tape, in this thread."""
    mode = False


class enable_grad(_GradMode):
    """Context manager (or decorator): record the tape even inside no_grad."""
    mode = True


class set_grad_enabled(_GradMode):
    """set_grad_enabled(mode): sets grad mode now (a function call), or for a with block, or
    for each call of a decorated function."""

    def __new__(cls, mode):
        return object.__new__(cls)

    def __init__(self, mode):
        self.mode, self.prev = bool(mode), _state.grad_enabled
        _state.grad_enabled = self.mode

    def __enter__(self):
        pass

    def __call__(self, fn):
        _state.grad_enabled = self.prev  # as a decorator it changes nothing until fn runs
        return super().__call__(fn)


class inference_mode(_GradMode):
    """PyTorch's inference_mode, as no_grad (minigrad has no inference-only tensors);
    inference_mode(False) leaves grad mode as it is."""

    def __new__(cls, mode=True):
        if callable(mode):
            return no_grad(mode)
        self = object.__new__(cls)
        self.mode = False if mode else _state.grad_enabled
        return self


def is_grad_enabled():
    return _state.grad_enabled


def sum_to_shape(g, shape):
    """Sum a broadcast gradient back down to `shape` (the inverse of broadcasting)."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1)
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape) if lead else g


# --- version counters -------------------------------------------------------------------
# Every change made in place through a Tensor (add_, copy_, +=, an optimizer step) bumps the
# version of the memory it wrote; views share their base's memory and so its version, as in
# PyTorch. Versions are kept per memory owner (the end of an array's chain of views), only for
# memory that was ever changed in place. A call that saves arrays for backward notes the
# generation (the count of bump_version calls so far); backward checks its arrays only when
# something was bumped since, so an ordinary training step pays two integer reads per op.
_versions = {}  # id(owner) -> [weakref to the owner (dropping the entry when it dies), version, recent bumps' generations]
_generation = 0
_HISTORY = 16


def _owner(a):
    """The array that holds a's memory: the end of its chain of views. (An array whose base is
    not an array, such as memory from the extension's buffer cache, is its own owner.)"""
    while True:
        base = a.base
        if base is None or not hasattr(base, "base"):
            return a
        a = base


def _entry(a):
    return _versions.get(id(_owner(a)))


def version(a):
    """How many times the memory under array a was changed in place through a Tensor."""
    e = None if a is None else _entry(a)
    return 0 if e is None else e[1]


def bump_version(*arrays):
    """Record one in-place change of each array's memory (an optimizer step: one call for all)."""
    global _generation
    _generation += 1
    for a in arrays:
        o = a if a.base is None else _owner(a)  # (inlined: this runs for every parameter every step)
        e = _versions.get(id(o))
        if e is None:
            e = _new_entry(o)
        e[1] += 1
        e[2].append(_generation)


def _new_entry(o):
    """A fresh entry for owner o. It goes when o is freed, before its id can be reused, so a lookup
    by id never finds another array's entry (an owner that takes no weak reference is kept alive)."""
    key = id(o)

    def forget(ref):
        if _versions.get(key, (None,))[0] is ref:
            del _versions[key]
    try:
        r = weakref.ref(o, forget)
    except TypeError:
        r = o
    e = _versions[key] = [r, 0, collections.deque(maxlen=_HISTORY)]
    return e


def _check_versions(node):
    """RuntimeError if an array node saved was changed in place after it was saved."""
    saved_at = node.saved_generation
    for a in node.saved_tensors:
        e = None if a is None else _entry(a)
        if e is None or e[2][-1] <= saved_at:
            continue
        later = sum(g > saved_at for g in e[2])
        expected = f"version {e[1] - later}" if later < _HISTORY else f"a version below {e[1] - later + 1}"
        raise RuntimeError(
            "one of the variables needed for gradient computation has been modified by an inplace operation: "
            f"[{a.dtype} tensor of shape {tuple(a.shape)}], saved by {node!r}, is at version {e[1]}; expected "
            f"{expected} instead. Do the in-place change after backward(), or use an out-of-place op "
            "(y = y + 1 instead of y += 1)")


class Function:
    """Base of every differentiable op; the instance doubles as the ctx of one call."""
    # parents: each input's grad_fn when the call was recorded, so a later in-place op that gives an
    # input a new grad_fn does not reroute this call's gradient. saved_generation: bump_version's
    # count then (see _check_versions).
    __slots__ = ("inputs", "parents", "saved_tensors", "needs_input_grad", "saved_generation", "__dict__")

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays

    @classmethod
    def apply(cls, *inputs, **kwargs):
        """Run forward on the inputs' arrays; record this call on the tape if any input needs grad."""
        ctx = _new(cls)
        ctx.saved_tensors = ()
        x = inputs[0]
        dev = x.device
        if dev is not CPU:  # CuPy launches on the current GPU: make it the inputs' one
            use_device(dev)
        # Two and three inputs (binary ops, linear, losses) are spelled out: comprehensions cost
        # more than the small ops they would serve.
        n = len(inputs)
        if n == 1:
            needs = ctx.needs_input_grad = (_state.grad_enabled and x.requires_grad,)
            out = _wrap(cls.forward(ctx, x.data, **kwargs), dev)
        elif n == 2:
            y = inputs[1]
            if y.device is not dev:
                _mixed_devices(cls, inputs)
            needs = ctx.needs_input_grad = (x.requires_grad, y.requires_grad) if _state.grad_enabled else ()
            out = _wrap(cls.forward(ctx, x.data, y.data, **kwargs), dev)
        elif n == 3:
            y, z = inputs[1], inputs[2]
            if y.device is not dev or z.device is not dev:
                _mixed_devices(cls, inputs)
            needs = ctx.needs_input_grad = (x.requires_grad, y.requires_grad, z.requires_grad) \
                if _state.grad_enabled else ()
            out = _wrap(cls.forward(ctx, x.data, y.data, z.data, **kwargs), dev)
        else:
            if any(t.device is not dev for t in inputs):
                _mixed_devices(cls, inputs)
            needs = ctx.needs_input_grad = tuple([t.requires_grad for t in inputs]) if _state.grad_enabled else ()
            out = _wrap(cls.forward(ctx, *[t.data for t in inputs], **kwargs), dev)
        if True in needs:
            ctx.inputs = inputs
            ctx.parents = (x._ctx,) if n == 1 else (x._ctx, y._ctx) if n == 2 else \
                (x._ctx, y._ctx, z._ctx) if n == 3 else tuple(map(_grad_fn, inputs))
            out.requires_grad = True
            out._ctx = ctx
            ctx.saved_generation = _generation
        return out

    def __repr__(self):
        return f"<{type(self).__name__}Backward>"


def _mixed_devices(cls, inputs):
    devices = ", ".join(dict.fromkeys(str(t.device) for t in inputs))
    raise RuntimeError(f"{cls.__name__}: expected all tensors on one device, found {devices}")


def queue_callback(fn):
    """Run fn() once when the backward pass now running finishes (before backward() returns)."""
    callbacks = _state.callbacks
    if callbacks is None:
        raise RuntimeError("queue_callback can only be called while backward() is running")
    callbacks.append(fn)


def current_backward_pass():
    """The callback list of the backward pass running in this thread (None outside one): it
    identifies the pass, e.g. for hooks that must notice when a new one starts."""
    return _state.callbacks


def _count_uses(root):
    """For every Function node reachable from root, how many edges lead into it; and for
    leaves with post-accumulate hooks, how many edges reach them. No recursion."""
    uses, hooked, stack = {root: 0}, {}, [root]
    while stack:
        node = stack.pop()
        for t, c in zip(node.inputs, node.parents):
            if c is not None:
                if c in uses:
                    uses[c] += 1
                else:
                    uses[c] = 1
                    stack.append(c)
            elif t._hooks:
                hooked[t] = hooked.get(t, 0) + 1
    return uses, hooked


def _accumulate(t, g, handed):
    """Add g into leaf t.grad. A first gradient is stored without a copy unless another
    leaf already holds that memory (ops like add pass one array to both inputs)."""
    grad = t.grad
    if grad is not None:
        grad.data += g
        return
    key = id(_owner(g))
    if key in handed:
        g = g.copy()
    else:
        handed.add(key)
    data = t.data
    if g.dtype != data.dtype:
        g = g.astype(data.dtype)
    t.grad = _wrap(g, t.device)


def backward(tensor, grad=None, retain_graph=False):
    """Accumulate d(tensor)/d(leaf) into every leaf's .grad. See Tensor.backward."""
    if not tensor.requires_grad:
        raise RuntimeError("backward(): the tensor does not require grad and has no grad_fn; "
                           "did you create it under no_grad or from tensors without requires_grad=True?")
    data = tensor.data
    handed = set()
    if grad is None:
        if data.size != 1:
            raise RuntimeError(f"backward() without grad= needs a scalar output, found shape {tuple(data.shape)}; "
                               "pass grad= (the gradient of a scalar with respect to this tensor, same shape)")
        g = get_array_module(data).ones(data.shape, data.dtype)
    else:
        g = grad.data if isinstance(grad, Tensor) else grad
        if tuple(g.shape) != tuple(data.shape):
            raise RuntimeError(f"backward(): grad has shape {tuple(g.shape)} but the tensor has shape "
                               f"{tuple(data.shape)}")
        handed.add(id(_owner(g)))  # the caller's array: never store it as a .grad
    root = tensor._ctx
    if root is None:
        _accumulate(tensor, g, handed)
        _run_hooks(tensor)
        return
    # Kahn's algorithm: a node runs once every node using its output has passed its gradient on
    uses, hooked = _count_uses(root)
    grads, ready = {root: g}, [root]
    state = _state
    outer = state.callbacks
    callbacks = state.callbacks = []
    try:
        while ready:
            node = ready.pop()
            if node.saved_tensors is None:
                raise RuntimeError(_FREED)
            if node.saved_generation != _generation and node.saved_tensors:
                _check_versions(node)
            g = grads.pop(node, None)
            inputs = node.inputs
            if g is None:  # no gradient flowed here (e.g. an unused branch)
                in_grads = (None,) * len(inputs)
            else:
                dev = inputs[0].device
                if dev is not CPU:  # as in Function.apply
                    use_device(dev)
                in_grads = node.backward(node, g)
                if type(in_grads) is not tuple:
                    in_grads = (in_grads,)
            for t, c, gi in zip(inputs, node.parents, in_grads):
                if gi is not None:
                    if gi.shape != t.data.shape:  # the input was broadcast
                        gi = sum_to_shape(gi, t.data.shape)
                    if c is None:
                        if t.requires_grad:
                            _accumulate(t, gi, handed)
                    else:
                        prev = grads.get(c)
                        grads[c] = gi if prev is None else prev + gi
                if c is not None:
                    n = uses[c] - 1
                    uses[c] = n
                    if not n:
                        ready.append(c)
                elif hooked and t in hooked:
                    hooked[t] -= 1
                    if not hooked[t]:
                        _run_hooks(t)
            if not retain_graph:
                node.saved_tensors = None
                node.inputs = node.parents = ()
        for fn in callbacks:
            fn()
    finally:
        state.callbacks = outer


def _run_hooks(t):
    for hook in list(t._hooks or ()):
        hook(t)


_FREED = ("backward() through a graph whose saved arrays were already freed: a previous backward() "
          "released them. Pass retain_graph=True to the first backward() to run backward twice.")


def __getattr__(name):
    """mg.autograd.gradcheck and numerical_grad, as torch.autograd.gradcheck: they live in
    minigrad.gradcheck, which builds on this module, so they are looked up on first use."""
    if name in ("gradcheck", "numerical_grad", "GradcheckError"):
        from . import gradcheck
        return getattr(gradcheck, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
