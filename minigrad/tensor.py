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
            raise ops.movement.ShapeError(f"item() needs a tensor with one element, found shape {self.shape}")
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

    # --- in place -------------------------------------------------------------------------
    # Each is op(self, ...) written back into self's memory (see _in_place): recorded on the tape
    # when grad mode is on and an operand requires grad, and counted in self's version.
    _version = property(lambda self: autograd.version(self.data))

    def zero_(self): return _in_place(self, _overwrite, 0)
    def fill_(self, value): return _in_place(self, _overwrite, value, casting="unsafe")

    def copy_(self, src):
        """Copy src (broadcast to self's shape, cast to self's dtype and device) into self."""
        src = _const(src, self)
        return _in_place(self, _overwrite, src if src.device is self.device else src.to(self.device),
                         casting="unsafe")

    def add_(self, other, alpha=1): return _in_place(self, Tensor.add, other, alpha=alpha)
    def sub_(self, other, alpha=1): return _in_place(self, Tensor.sub, other, alpha=alpha)
    def mul_(self, other): return _in_place(self, Tensor.__mul__, other)
    def div_(self, other): return _in_place(self, Tensor.__truediv__, other)
    def pow_(self, other): return _in_place(self, Tensor.__pow__, other)
    def clamp_(self, min=None, max=None): return _in_place(self, Tensor.clamp, min, max)
    clip_ = clamp_
    __iadd__, __isub__, __imul__, __itruediv__, __ipow__ = add_, sub_, mul_, div_, pow_

    # --- method forms of the operators (PyTorch's names) ------------------------------------
    def add(self, other, alpha=1): return self + (other if alpha == 1 else _const(other, self) * alpha)
    def sub(self, other, alpha=1): return self - (other if alpha == 1 else _const(other, self) * alpha)
    def mul(self, other): return self * other
    def div(self, other): return self / other
    def pow(self, exponent): return self ** exponent
    def matmul(self, other): return self @ other
    def neg(self): return -self
    def clamp(self, min=None, max=None): return ops.clip(self, _operand(min, self), _operand(max, self))

    # --- more of PyTorch's methods ----------------------------------------------------------
    def clone(self): return ops.movement.clone(self)
    def contiguous(self): return ops.movement.contiguous(self)
    def norm(self, p="fro", dim=None, keepdim=False): return ops.reduce.norm(self, p, dim, keepdim)
    def logsumexp(self, dim, keepdim=False): return ops.reduce.logsumexp(self, dim, keepdim)

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return ops.reduce.var(self, dim, unbiased, keepdim, correction=correction)

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return ops.reduce.std(self, dim, unbiased, keepdim, correction=correction)

    def argmin(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        if self.dtype == bool_:
            raise RuntimeError("argmin(): does not support bool input")
        axis, keepdims = ops.reduce._norm_axis(self, axis, dim, "argmin"), (keepdims if keepdim is None else keepdim)
        return _wrap(self.data.argmin(axis=axis, keepdims=keepdims), self.device)

    def repeat(self, *sizes):
        """self tiled sizes[i] times along dim i (sizes may add leading dims), as torch.Tensor.repeat;
        differentiable (a broadcast then a reshape)."""
        if not sizes:
            raise TypeError('repeat() missing 1 required positional arguments: "repeats"')
        sizes = ops.movement.shape_arg(sizes)
        if len(sizes) < self.ndim:
            raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of dimensions "
                               f"of tensor (repeat dims {list(sizes)}, tensor shape {list(self.shape)})")
        shape = (1,) * (len(sizes) - self.ndim) + tuple(self.shape)
        x = self.reshape(*[v for n in shape for v in (1, n)])
        x = x.expand(*[v for r, n in zip(sizes, shape) for v in (r, n)])
        return x.reshape(*[r * n for r, n in zip(sizes, shape)])

    def masked_fill(self, mask, value):
        """value where the bool mask (broadcast with self) is True, else self; value is a number or
        a 0-d tensor, cast to self's dtype."""
        if not isinstance(mask, Tensor) or mask.dtype != bool_:
            found = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
            raise RuntimeError(f"masked_fill only supports boolean masks, but got mask with dtype {found}")
        value = _const(value, self)
        if value.ndim:
            raise RuntimeError("masked_fill only supports a 0-dimensional value tensor, but got tensor with "
                               f"{value.ndim} dimension(s).")
        return ops.where(mask, ops.cast(value, self.dtype), self)

    # --- arithmetic -----------------------------------------------------------------
    # binary ops promote dtypes as PyTorch (ops.dtypes); the other operand may be a scalar or an array
    def __add__(self, other): return ops.add(self, other)
    def __radd__(self, other): return ops.add(other, self)
    def __sub__(self, other): return ops.sub(self, other)
    def __rsub__(self, other): return ops.sub(other, self)
    def __mul__(self, other): return ops.mul(self, other)
    def __rmul__(self, other): return ops.mul(other, self)
    def __truediv__(self, other): return ops.div(self, other)
    def __rtruediv__(self, other): return ops.div(other, self)
    def __matmul__(self, other): return ops.matmul(self, other)
    def __rmatmul__(self, other): return ops.matmul(other, self)
    def __neg__(self): return ops.neg(self)
    def __pos__(self): return self
    def __abs__(self): return ops.abs_(self)

    def __pow__(self, other):
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return ops.pow_scalar(self, other)
        return ops.pow(self, other)

    def __rpow__(self, other): return ops.pow(other, self)

    # comparisons and bitwise ops give tensors outside the tape
    def __eq__(self, other): return ops.compare(self, other, "equal")
    def __ne__(self, other): return ops.compare(self, other, "not_equal")
    def __lt__(self, other): return ops.compare(self, other, "less")
    def __le__(self, other): return ops.compare(self, other, "less_equal")
    def __gt__(self, other): return ops.compare(self, other, "greater")
    def __ge__(self, other): return ops.compare(self, other, "greater_equal")
    def __and__(self, other): return ops.bitwise(self, other, "bitwise_and")
    def __rand__(self, other): return ops.bitwise(other, self, "bitwise_and")
    def __or__(self, other): return ops.bitwise(self, other, "bitwise_or")
    def __ror__(self, other): return ops.bitwise(other, self, "bitwise_or")
    def __xor__(self, other): return ops.bitwise(self, other, "bitwise_xor")
    def __rxor__(self, other): return ops.bitwise(other, self, "bitwise_xor")
    def __invert__(self): return ops.invert(self)

    def __getitem__(self, idx): return ops.getitem(self, idx)

    def __setitem__(self, idx, value):
        """self[idx] = value, in place, with PyTorch's index layout (value broadcast and cast to self's
        dtype). Recorded on the tape when grad mode is on and self or value requires grad, as in
        PyTorch: value gets the gradient of the positions it fills, self's old value the others."""
        value = value if isinstance(value, Tensor) else _const(value, self)
        if value.device is not self.device:
            raise RuntimeError(f"index assignment: expected the value on {self.device}, found {value.device}")
        if autograd._state.grad_enabled and (self.requires_grad or value.requires_grad):
            _in_place(self, ops.index_put, idx, value)
        else:
            ops.movement.assign(self.data, idx, value.data)
            autograd.bump_version(self.data)

    # --- math -----------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False, *, dim=None, keepdim=None): return ops.sum(self, axis, keepdims, dim=dim, keepdim=keepdim)
    def mean(self, axis=None, keepdims=False, *, dim=None, keepdim=None): return ops.mean(self, axis, keepdims, dim=dim, keepdim=keepdim)
    def max(self, axis=None, keepdims=False, *, dim=None, keepdim=None): return ops.max(self, axis, keepdims, dim=dim, keepdim=keepdim)
    def min(self, axis=None, keepdims=False, *, dim=None, keepdim=None): return ops.min(self, axis, keepdims, dim=dim, keepdim=keepdim)
    def amax(self, axis=None, keepdims=False, *, dim=None, keepdim=None): return ops.amax(self, axis, keepdims, dim=dim, keepdim=keepdim)
    def amin(self, axis=None, keepdims=False, *, dim=None, keepdim=None): return ops.amin(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def argmax(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        if self.dtype == bool_:
            raise RuntimeError("argmax(): does not support bool input")
        axis, keepdims = ops.reduce._norm_axis(self, axis, dim, "argmax"), (keepdims if keepdim is None else keepdim)
        return _wrap(self.data.argmax(axis=axis, keepdims=keepdims), self.device)

    def exp(self): return ops.exp(self)
    def log(self): return ops.log(self)
    def sqrt(self): return ops.sqrt(self)
    def abs(self): return ops.abs_(self)
    def clip(self, lo=None, hi=None): return ops.clip(self, _operand(lo, self), _operand(hi, self))
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
    """A non-Tensor operand as a Tensor next to `like`: a Python scalar as a 0-d array of its
    PyTorch result dtype with like (2.0 beside float32 stays float32, 0.5 beside int64 is float32),
    other data as torch.tensor would make it."""
    return ops.dtypes.as_operand(x, like)


def _operand(x, like):
    """x as a raw operand beside like's array (comparisons, clip bounds): a scalar (or None) as
    it is, a Tensor's array, and other data (NumPy arrays, lists) on like's device, as a binary
    op's operand (CuPy refuses host arrays)."""
    if isinstance(x, Tensor):
        t = x
    elif x is None or isinstance(x, numbers.Number):
        return x
    else:
        t = _const(x, like)
    if t.device is not like.device:
        raise RuntimeError(f"expected all tensors on one device, found {like.device} and {t.device}")
    return t.data



def _in_place(t, op, *args, casting="same_kind", **kwargs):
    """Write op(t, *args) into t's memory and count the change in t's version. With grad mode
    on and an operand requiring grad it is recorded, as in PyTorch: t takes the op as its
    grad_fn (its old value lives on in the graph), and ops that saved t's old memory find the
    new version at backward and refuse it."""
    recorded = autograd._state.grad_enabled and (t.requires_grad or any(isinstance(a, Tensor) and a.requires_grad
                                                                         for a in args))
    if recorded:
        out = _record_in_place(t, op, args, kwargs)
    else:
        out = op(t, *args, **kwargs)
    data, new = t.data, out.data
    if not np.can_cast(new.dtype, data.dtype, casting):
        raise RuntimeError(f"result type {new.dtype} can't be cast to the desired output type {data.dtype}")
    if type(data) is np.ndarray and not data.flags.writeable:  # CuPy arrays have no read-only flag
        raise RuntimeError(f"in-place operation on a read-only tensor of shape {tuple(data.shape)} (an expand() "
                           "view, whose elements share memory); make a copy first with clone()")
    try:
        data[...] = new
    except ValueError:
        raise RuntimeError(f"output with shape {list(data.shape)} doesn't match the broadcast shape "
                           f"{list(new.shape)}") from None
    autograd.bump_version(data)
    if recorded:
        t._ctx, t.requires_grad = out._ctx, True
    return t


def _record_in_place(t, op, args, kwargs):
    """op(t, ...) recorded on the tape, its input standing for t's value before the change."""
    ctx = t._ctx
    mem = autograd._owner(t.data)
    if ctx is None and t.requires_grad:
        raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
    for base in () if getattr(ctx, "in_place", False) else getattr(ctx, "inputs", ()):
        if autograd._owner(base.data) is mem:
            if base._ctx is None and base.requires_grad:
                raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place "
                                   "operation.")
            raise RuntimeError(f"in-place change of a view (made by {ctx!r}) of a tensor in the graph: minigrad "
                               "does not rewrite the base's history as PyTorch does; use an out-of-place op")
    old = _wrap(t.data, t.device, t.requires_grad)
    old._ctx = ctx
    out = op(old, *[old if a is t else a for a in args], **kwargs)
    node = out._ctx
    node.in_place = True  # its input shares t's memory as t's old value, not as a view
    if node.saved_tensors:  # what the op saved of t's memory must outlive the write
        node.saved_tensors = tuple(a.copy() if a is not None and autograd._owner(a) is mem else a
                                   for a in node.saved_tensors)
    return out


def _overwrite(t, value):
    """value broadcast to t's shape, in t's place: t's old value gets no gradient, value does."""
    value = _const(value, t)
    if not (autograd._state.grad_enabled and (t.requires_grad or value.requires_grad)):
        return value
    return ops.where(_wrap(get_array_module(t.data).zeros(t.shape, bool), t.device), t, value)


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
    """A tensor of fill_value; without dtype, fill_value's as PyTorch: bool, int64 or float32."""
    if dtype is None:
        dtype = ops.dtypes.result_type(fill_value)
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


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    return full(t.shape, fill_value, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def from_numpy(a):
    """A CPU tensor that shares a's memory (a change to one shows in the other), as torch.from_numpy."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(a).__name__})")
    if a.dtype.kind not in "biufc" or not a.dtype.isnative:
        raise TypeError(f"can't convert np.ndarray of type {a.dtype}: the supported types are booleans, integers, "
                        "floats and complex numbers in native byte order")
    return _wrap(a, CPU)


def randperm(n, dtype=None, device="cpu", requires_grad=False):
    """A random permutation of 0 .. n-1 from minigrad's generator (mg.manual_seed)."""
    dev = _device(device)
    perm = _random.generator().permutation(n).astype(dtype or int64)
    return _wrap(to_device(perm, dev), dev).requires_grad_(requires_grad)


def linspace(start, end, steps, dtype=None, device="cpu", requires_grad=False):
    """steps evenly spaced values from start to end, both included (float32 by default)."""
    if steps < 0:
        raise RuntimeError(f"linspace: number of steps must be non-negative, found {steps}")
    dev = _device(device)
    return _wrap(xp_for(dev).linspace(start, end, steps, dtype=dtype or float32), dev).requires_grad_(requires_grad)


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """Whether |a - b| <= atol + rtol * |b| everywhere (a and b broadcast; same dtype, as PyTorch)."""
    if a.dtype != b.dtype:
        raise RuntimeError(f"allclose: {b.dtype} did not match {a.dtype}")
    return bool(get_array_module(a.data).allclose(a.data, b.data, rtol=rtol, atol=atol, equal_nan=equal_nan))


def where(cond, a, b):
    """Elementwise a where cond else b; differentiable in a and b."""
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else cond
    return ops.where(_const(cond, like), _const(a, like), _const(b, like))


def cat(seq, axis=0, *, dim=None): return ops.cat(seq, axis, dim=dim)
def stack(seq, axis=0, *, dim=None): return ops.stack(seq, axis, dim=dim)
def matmul(a, b): return a @ b
