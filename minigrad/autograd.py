"""The tape: Function (forward and backward side by side), grad mode, and backward().

Every differentiable op is a Function subclass whose static `forward` and
`backward` take and return raw arrays (NumPy or CuPy). `Function.apply` runs
forward and, when grad mode is on and an input requires grad, links the output
Tensor to the Function instance (the "ctx"), which remembers the inputs and
whatever forward saved. `backward` walks those links in reverse topological
order without recursion.
"""
import functools

from .backend import get_array_module

Tensor = None  # set by minigrad.tensor, which imports this module
_wrap = None

_grad_enabled = True
_new = object.__new__
_callbacks = None  # list while a backward pass runs, for queue_callback


class _GradMode:
    mode = True

    def __enter__(self):
        global _grad_enabled
        self.prev, _grad_enabled = _grad_enabled, self.mode

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self.prev

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Context manager (or decorator): ops run without recording the tape."""
    mode = False


class enable_grad(_GradMode):
    """Context manager (or decorator): record the tape even inside no_grad."""
    mode = True


def is_grad_enabled():
    return _grad_enabled


class Function:
    """Base of every differentiable op; the instance doubles as the ctx of one call."""
    __slots__ = ("inputs", "saved_tensors", "needs_input_grad", "__dict__")

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays

    @classmethod
    def apply(cls, *inputs, **kwargs):
        """Run forward on the inputs' arrays; record this call on the tape if any input needs grad."""
        ctx = _new(cls)
        ctx.saved_tensors = ()
        x = inputs[0]
        dev = x.device
        if len(inputs) == 1:
            needs = ctx.needs_input_grad = (_grad_enabled and x.requires_grad,)
            out = _wrap(cls.forward(ctx, x.data, **kwargs), dev)
        else:
            for t in inputs:
                if t.device is not dev:
                    raise RuntimeError(f"{cls.__name__}: expected all tensors on one device, "
                                       f"found {dev} and {t.device}")
            needs = ctx.needs_input_grad = [t.requires_grad for t in inputs] if _grad_enabled else ()
            out = _wrap(cls.forward(ctx, *[t.data for t in inputs], **kwargs), dev)
        if True in needs:
            ctx.inputs = inputs
            out.requires_grad = True
            out._ctx = ctx
        return out

    def __repr__(self):
        return f"<{type(self).__name__}Backward>"


def queue_callback(fn):
    """Run fn() once when the backward pass now running finishes (before backward() returns)."""
    if _callbacks is None:
        raise RuntimeError("queue_callback can only be called while backward() is running")
    _callbacks.append(fn)


def _count_uses(root):
    """For every Function node reachable from root, how many edges lead into it; and for
    leaves with post-accumulate hooks, how many edges reach them. No recursion."""
    uses, hooked, stack = {root: 0}, {}, [root]
    while stack:
        for t in stack.pop().inputs:
            c = t._ctx
            if c is not None:
                if c in uses:
                    uses[c] += 1
                else:
                    uses[c] = 1
                    stack.append(c)
            elif t._hooks:
                hooked[t] = hooked.get(t, 0) + 1
    return uses, hooked


def _owner(a):
    """id of the array that holds a's memory: the end of its chain of views. (An array whose base
    is not an array, such as memory from the extension's buffer cache, is its own owner.)"""
    while True:
        base = a.base
        if base is None or not hasattr(base, "base"):
            return id(a)
        a = base


def _accumulate(t, g, handed):
    """Add g into leaf t.grad. A first gradient is stored without a copy unless another
    leaf already holds that memory (ops like add pass one array to both inputs)."""
    grad = t.grad
    if grad is not None:
        grad.data += g
        return
    key = _owner(g)
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
    global _callbacks
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
        handed.add(_owner(g))  # the caller's array: never store it as a .grad
    root = tensor._ctx
    if root is None:
        _accumulate(tensor, g, handed)
        _run_hooks(tensor)
        return
    # Kahn's algorithm: a node runs once every node using its output has passed its gradient on
    uses, hooked = _count_uses(root)
    grads, ready = {root: g}, [root]
    outer, _callbacks = _callbacks, []
    try:
        while ready:
            node = ready.pop()
            if node.saved_tensors is None:
                raise RuntimeError(_FREED)
            g = grads.pop(node, None)
            inputs = node.inputs
            if g is None:  # no gradient flowed here (e.g. an unused branch)
                in_grads = (None,) * len(inputs)
            else:
                in_grads = node.backward(node, g)
                if type(in_grads) is not tuple:
                    in_grads = (in_grads,)
            for t, gi in zip(inputs, in_grads):
                c = t._ctx
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
                node.inputs = ()
        for fn in _callbacks:
            fn()
    finally:
        _callbacks = outer


def _run_hooks(t):
    for hook in list(t._hooks or ()):
        hook(t)


_FREED = ("backward() through a graph whose saved arrays were already freed: a previous backward() "
          "released them. Pass retain_graph=True to the first backward() to run backward twice.")


from .gradcheck import gradcheck, numerical_grad  # noqa: E402,F401  (mg.autograd.gradcheck; needs Function first)
from .ops.movement import sum_to_shape  # noqa: E402
