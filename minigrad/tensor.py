"""Tensor: an array (NumPy or CuPy), its gradient, and the op that made it.

Each method is a line calling into `ops`; the arithmetic lives there."""
import numbers

import numpy as np

from . import autograd, ops
from . import random as _random
from .backend import CPU, device as _device, get_array_module, to_device, xp_for

float16, float32, float64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
int32, int64, bool_ = np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.bool_)
_new, _ndarray = object.__new__, np.ndarray


class Tensor:
    __slots__ = ("data", "grad", "requires_grad", "_ctx", "device", "_hooks", "__weakref__")
    __array_priority__ = 1000
    __array_ufunc__ = None  # make NumPy defer to Tensor's reflected operators: ndarray * Tensor -> Tensor

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        arr, dev = _as_array(data, dtype, device)
        self.data, self.device, self.grad, self._ctx, self._hooks = arr, dev, None, None, None
        self.requires_grad = False
        self.requires_grad_(requires_grad)

    # --- attributes -----------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    is_leaf = property(lambda self: self._ctx is None)
    grad_fn = property(lambda self: self._ctx)
    T = property(lambda self: ops.transpose(self))
    is_cuda = property(lambda self: self.device.type == "cuda")

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self):
        return self.data.size

    def __len__(self):
        if not self.data.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    __hash__ = object.__hash__  # tensors key dicts (optimizer state) even though == is elementwise

    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.data.dtype.kind not in "fc":
            raise TypeError(f"only floating point tensors can require grad, found dtype {self.data.dtype}")
        self.requires_grad = requires_grad
        return self

    def register_post_accumulate_grad_hook(self, hook):
        """Call hook(tensor) during backward once this leaf's .grad holds its full gradient."""
        if self._ctx is not None:
            raise RuntimeError("post-accumulate-grad hooks can only be registered on leaf tensors")
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return _HookHandle(self._hooks, hook)

    # --- autograd -------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Accumulate the gradient of this tensor into .grad of every leaf that requires grad.

        grad: the gradient with respect to this tensor (same shape); optional for scalars."""
        autograd.backward(self, grad, retain_graph)

    def detach(self):
        return _wrap(self.data, self.device)

    # --- conversion -----------------------------------------------------------------
    def numpy(self):
        """The data as a NumPy array (shared with the tensor on CPU, copied from a GPU)."""
        return to_device(self.data, CPU)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, found shape {self.shape}")
        return self.data.item()

    def tolist(self):
        return self.numpy().tolist()

    def __float__(self): return float(self.item())
    def __int__(self): return int(self.item())
    def __index__(self): return int(self.item())

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(f"the truth value of a tensor with shape {self.shape} is ambiguous")
        return bool(self.data)

    def to(self, *args, dtype=None, device=None):
        """to(device), to(dtype) or to(device, dtype); differentiable."""
        for a in args:
            if isinstance(a, (str, type(CPU))):
                device = a
            else:
                dtype = a
        out = self if device is None else ops.to(self, _device(device))
        return out if dtype is None else ops.cast(out, np.dtype(dtype))

    def cpu(self): return self.to("cpu")
    def cuda(self, i=0): return self.to(f"cuda:{i}")
    def float(self): return self.to(float32)
    def double(self): return self.to(float64)
    def half(self): return self.to(float16)
    def long(self): return self.to(int64)
    def type(self, dtype): return self.to(dtype)
    def astype(self, dtype): return self.to(dtype)

    # --- in place, outside the tape (initialisation, optimizers) -------------------------
    def _inplace_ok(self, name):
        if autograd._grad_enabled and self.requires_grad:
            raise RuntimeError(f"{name}: a tensor that requires grad cannot be changed in place while the "
                               "tape records; wrap the update in mg.no_grad()")

    def zero_(self):
        self._inplace_ok("zero_")
        self.data[...] = 0
        return self

    def fill_(self, value):
        self._inplace_ok("fill_")
        self.data[...] = value
        return self

    def copy_(self, src):
        self._inplace_ok("copy_")
        src = src.data if isinstance(src, Tensor) else src
        self.data[...] = to_device(get_array_module(src).asarray(src), self.device)
        return self

    def _iop(self, other, fn):
        self._inplace_ok("in-place arithmetic")
        fn(self.data, other.data if isinstance(other, Tensor) else other, out=self.data, casting="same_kind")
        return self

    def add_(self, other, alpha=1):
        return self._iop(other if alpha == 1 else other * alpha, get_array_module(self.data).add)

    def mul_(self, other):
        return self._iop(other, get_array_module(self.data).multiply)

    def __iadd__(self, other): return self._iop(other, get_array_module(self.data).add)
    def __isub__(self, other): return self._iop(other, get_array_module(self.data).subtract)
    def __imul__(self, other): return self._iop(other, get_array_module(self.data).multiply)
    def __itruediv__(self, other): return self._iop(other, get_array_module(self.data).true_divide)

    # --- arithmetic -----------------------------------------------------------------
    def __add__(self, other): return ops.add(self, _const(other, self))
    def __radd__(self, other): return ops.add(_const(other, self), self)
    def __sub__(self, other): return ops.sub(self, _const(other, self))
    def __rsub__(self, other): return ops.sub(_const(other, self), self)
    def __mul__(self, other): return ops.mul(self, _const(other, self))
    def __rmul__(self, other): return ops.mul(_const(other, self), self)
    def __truediv__(self, other): return ops.div(self, _const(other, self))
    def __rtruediv__(self, other): return ops.div(_const(other, self), self)
    def __matmul__(self, other): return ops.matmul(self, _const(other, self))
    def __rmatmul__(self, other): return ops.matmul(_const(other, self), self)
    def __neg__(self): return ops.neg(self)
    def __pos__(self): return self
    def __abs__(self): return ops.abs_(self)

    def __pow__(self, other):
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return ops.pow_scalar(self, other)
        return ops.pow(self, _const(other, self))

    def __rpow__(self, other): return ops.pow(_const(other, self), self)

    # comparisons give bool tensors outside the tape
    def _cmp(self, other, name):
        o = other.data if isinstance(other, Tensor) else other
        return _wrap(getattr(get_array_module(self.data), name)(self.data, o), self.device)

    def __eq__(self, other): return self._cmp(other, "equal")
    def __ne__(self, other): return self._cmp(other, "not_equal")
    def __lt__(self, other): return self._cmp(other, "less")
    def __le__(self, other): return self._cmp(other, "less_equal")
    def __gt__(self, other): return self._cmp(other, "greater")
    def __ge__(self, other): return self._cmp(other, "greater_equal")
    def __invert__(self): return _wrap(~self.data, self.device)
    def __and__(self, other): return self._cmp(other, "logical_and")
    def __or__(self, other): return self._cmp(other, "logical_or")

    def __getitem__(self, idx): return ops.getitem(self, idx)

    # --- math -----------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False, *, dim=None, keepdim=None): return ops.sum(self, axis, keepdims, dim=dim, keepdim=keepdim)
    def mean(self, axis=None, keepdims=False, *, dim=None, keepdim=None): return ops.mean(self, axis, keepdims, dim=dim, keepdim=keepdim)
    def max(self, axis=None, keepdims=False, *, dim=None, keepdim=None): return ops.max(self, axis, keepdims, dim=dim, keepdim=keepdim)
    def min(self, axis=None, keepdims=False, *, dim=None, keepdim=None): return ops.min(self, axis, keepdims, dim=dim, keepdim=keepdim)
    def amax(self, axis=None, keepdims=False, *, dim=None, keepdim=None): return ops.amax(self, axis, keepdims, dim=dim, keepdim=keepdim)
    def amin(self, axis=None, keepdims=False, *, dim=None, keepdim=None): return ops.amin(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def argmax(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        axis, keepdims = (axis if dim is None else dim), (keepdims if keepdim is None else keepdim)
        return _wrap(self.data.argmax(axis=axis, keepdims=keepdims), self.device)

    def exp(self): return ops.exp(self)
    def log(self): return ops.log(self)
    def sqrt(self): return ops.sqrt(self)
    def abs(self): return ops.abs_(self)
    def clip(self, lo=None, hi=None): return ops.clip(self, lo, hi)
    clamp = clip
    def relu(self): return ops.relu(self)
    def sigmoid(self): return ops.sigmoid(self)
    def tanh(self): return ops.tanh(self)
    def softmax(self, axis=-1, *, dim=None): return ops.softmax(self, axis, dim=dim)
    def log_softmax(self, axis=-1, *, dim=None): return ops.log_softmax(self, axis, dim=dim)

    # --- shape ----------------------------------------------------------------------
    def reshape(self, *shape): return ops.reshape(self, *shape)
    view = reshape
    def transpose(self, *dims): return ops.transpose(self, *dims)
    def permute(self, *dims): return ops.permute(self, *dims)
    def flatten(self, start=0, end=-1, *, start_dim=None, end_dim=None):
        return ops.flatten(self, start if start_dim is None else start_dim, end if end_dim is None else end_dim)
    def expand(self, *shape): return ops.expand(self, *shape)

    def unsqueeze(self, dim):
        """A view with a new axis of size 1 at dim (negative counts from the end of the result)."""
        d = ops.movement.dim_index(dim, self.ndim + 1)
        return ops.reshape(self, *self.shape[:d], 1, *self.shape[d:])

    def squeeze(self, dim=None):
        """Drop axes of size 1: all of them, or those of dim (an int or a tuple) that have size 1."""
        if dim is None:
            drop = {d for d, n in enumerate(self.shape) if n == 1}
        else:
            dims = dim if isinstance(dim, (tuple, list)) else (dim,)
            drop = {d for d in (ops.movement.dim_index(a, self.ndim) for a in dims) if self.ndim and self.shape[d] == 1}
        return ops.reshape(self, *[n for d, n in enumerate(self.shape) if d not in drop]) if drop else self

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(", precision=4)
        extra = []
        if self.device is not CPU:
            extra.append(f"device='{self.device}'")
        if self.dtype not in (float32, int64, bool_):
            extra.append(f"dtype={self.dtype}")
        if self._ctx is not None:
            extra.append(f"grad_fn={self._ctx!r}")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extra) + ")"


class _HookHandle:
    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _wrap(data, device, requires_grad=False):
    """A Tensor around an existing array, with no checks: the hot path of every op."""
    if type(data) is not _ndarray and isinstance(data, np.generic):  # NumPy gives 0-d results as scalars
        data = np.asarray(data)
    t = _new(Tensor)
    t.data, t.device, t.requires_grad, t.grad, t._ctx, t._hooks = data, device, requires_grad, None, None, None
    return t


autograd.Tensor, autograd._wrap = Tensor, _wrap


def _as_array(data, dtype, device):
    """Data -> (array, Device), inferring the dtype as torch.tensor does."""
    dev = _device(device) if device is not None else None
    if isinstance(data, Tensor):
        arr = data.data.copy()
        dev = dev or data.device
    elif isinstance(data, np.ndarray) or hasattr(data, "__cuda_array_interface__"):
        arr = data.copy()
    else:
        try:
            arr = np.asarray(data)
        except (ValueError, TypeError) as e:
            raise TypeError(f"tensor(): could not convert {type(data).__name__} to an array: {e}") from None
        if arr.dtype == np.float64 and dtype is None:
            arr = arr.astype(np.float32)  # Python floats become float32, as in PyTorch
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"tensor(): expected numbers, found data of dtype {arr.dtype} ({type(data).__name__})")
    if dtype is not None and arr.dtype != np.dtype(dtype):
        arr = arr.astype(dtype)
    dev = dev or (CPU if isinstance(arr, np.ndarray) else _device(f"cuda:{arr.device.id}"))
    return to_device(arr, dev), dev


def _const(x, like):
    """A non-Tensor operand as a Tensor next to `like`. A Python scalar takes like's dtype when
    that can hold it, as in PyTorch: 2.0 * float32 stays float32, 2 * int64 stays int64,
    0.5 * int64 is float32, True + 2 is int64. Arrays keep their own dtype."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, numbers.Number):
        dt = like.data.dtype
        if dt.kind not in "fc" and not isinstance(x, bool):
            dt = int64 if isinstance(x, numbers.Integral) and dt.kind == "b" else \
                dt if isinstance(x, numbers.Integral) else float32
        return _wrap(get_array_module(like.data).asarray(x, dtype=dt), like.device)
    arr, dev = _as_array(x, None, like.device)
    return _wrap(arr, dev)


# --- creation -------------------------------------------------------------------------
def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of data. dtype is inferred as torch.tensor does: NumPy arrays
    keep theirs, Python floats -> float32, ints -> int64, bools -> bool."""
    return Tensor(data, dtype, device, requires_grad)


def _make(fn, shape, dtype, device, requires_grad):
    dev = _device(device)
    return _wrap(fn(xp_for(dev), ops.movement.shape_arg(shape), np.dtype(dtype or float32)), dev).requires_grad_(requires_grad)


def zeros(*shape, dtype=None, device="cpu", requires_grad=False):
    return _make(lambda xp, s, dt: xp.zeros(s, dt), shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device="cpu", requires_grad=False):
    return _make(lambda xp, s, dt: xp.ones(s, dt), shape, dtype, device, requires_grad)


def empty(*shape, dtype=None, device="cpu", requires_grad=False):
    return _make(lambda xp, s, dt: xp.empty(s, dt), shape, dtype, device, requires_grad)


def full(shape, fill_value, dtype=None, device="cpu", requires_grad=False):
    return _make(lambda xp, s, dt: xp.full(s, fill_value, dt), (shape,), dtype, device, requires_grad)


def randn(*shape, dtype=None, device="cpu", requires_grad=False):
    """Standard normal samples from minigrad's generator (mg.manual_seed), made on the host so a
    seed gives the same numbers on every device."""
    return _make(lambda xp, s, dt: to_device(_random.generator().standard_normal(s).astype(dt), _device(device)),
                 shape, dtype, device, requires_grad)


def rand(*shape, dtype=None, device="cpu", requires_grad=False):
    return _make(lambda xp, s, dt: to_device(_random.generator().random(s).astype(dt), _device(device)),
                 shape, dtype, device, requires_grad)


def arange(start, end=None, step=1, dtype=None, device="cpu", requires_grad=False):
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = int64 if all(isinstance(v, numbers.Integral) for v in (start, end, step)) else float32
    dev = _device(device)
    return _wrap(xp_for(dev).arange(start, end, step, dtype=dtype), dev).requires_grad_(requires_grad)


def eye(n, m=None, dtype=None, device="cpu", requires_grad=False):
    return _make(lambda xp, s, dt: xp.eye(n, m, dtype=dt), (), dtype, device, requires_grad)


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    return zeros(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    return ones(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def where(cond, a, b):
    """Elementwise a where cond else b; differentiable in a and b."""
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else cond
    return ops.where(_const(cond, like), _const(a, like), _const(b, like))


def cat(seq, axis=0, *, dim=None): return ops.cat(seq, axis, dim=dim)
def stack(seq, axis=0, *, dim=None): return ops.stack(seq, axis, dim=dim)
def matmul(a, b): return a @ b
