"""Shape and data movement ops: expand (broadcasting), reshape, transpose, indexing, cat, stack, casts."""
import numpy as np

from .. import autograd
from ..autograd import Function
from ..backend import get_array_module, to_device


def sum_to_shape(g, shape):
    """Sum a broadcast gradient back down to `shape` (the inverse of broadcasting)."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1)
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape) if lead else g


def shape_arg(shape):
    """A shape given PyTorch's two ways, as *ints or as one tuple or list, as a tuple."""
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


class Expand(Function):
    @staticmethod
    def forward(ctx, x, shape):
        return get_array_module(x).broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output  # the engine sums a broadcast gradient back to the input's shape


def expand(x, *shape):
    shape = shape_arg(shape)
    shape = tuple(x.shape[i - len(shape) + x.ndim] if n == -1 else n for i, n in enumerate(shape))
    return x if shape == x.shape else Expand.apply(x, shape=shape)


_shapes = {}


def broadcast_shape(*shapes):
    """NumPy's broadcast shape, with an error naming the shapes and the dimension at fault."""
    out = _shapes.get(shapes)
    if out is not None:
        return out
    ndim = max(len(s) for s in shapes)
    out = []
    for i in range(-ndim, 0):
        sizes = {s[i] for s in shapes if len(s) >= -i} - {1}
        if len(sizes) > 1:
            found = " and ".join(str(s) for s in shapes)
            raise ValueError(f"shapes {found} cannot be broadcast together: dimension {i} "
                             f"has sizes {sorted(sizes)}")
        out.append(sizes.pop() if sizes else 1)
    if len(_shapes) < 4096:  # shapes repeat every training step; the cache makes the check free
        _shapes[shapes] = tuple(out)
    return tuple(out)


def broadcast(*tensors):
    """Check that the tensors broadcast together (NumPy's rules). Their arrays broadcast inside
    the forward op, and backward() sums every gradient back to its input's shape."""
    s0 = tensors[0].data.shape
    for t in tensors:
        if t.data.shape != s0:
            broadcast_shape(*(t.data.shape for t in tensors))
            break
    return tensors


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.in_shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape shape {x.shape} ({x.size} elements) into {shape}") from None

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.reshape(ctx.in_shape)


def reshape(x, *shape):
    shape = shape_arg(shape)
    return x if shape == x.shape else Reshape.apply(x, shape=shape)


def flatten(x, start=0, end=-1):
    s = x.shape
    if not s:
        return reshape(x, 1)
    start, end = start % len(s), end % len(s)
    return reshape(x, s[:start] + (-1,) + s[end + 1:])


class Transpose(Function):
    @staticmethod
    def forward(ctx, x, axes):
        ctx.axes = axes
        return x.transpose(axes)

    @staticmethod
    def backward(ctx, grad_output):
        inverse = sorted(range(len(ctx.axes)), key=ctx.axes.__getitem__)
        return grad_output.transpose(inverse)


def transpose(x, *axes):
    """transpose() reverses all axes; transpose(a, b) swaps two (PyTorch); transpose(perm) permutes."""
    n = x.ndim
    if not axes and n == 2:
        return Transpose.apply(x, axes=(1, 0))
    if not axes:
        perm = tuple(range(n))[::-1]
    elif len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        perm = tuple(a % n for a in axes[0])
    elif len(axes) == 2:
        perm = list(range(n))
        a, b = axes[0] % n, axes[1] % n
        perm[a], perm[b] = perm[b], perm[a]
        perm = tuple(perm)
    else:
        perm = tuple(a % n for a in axes)
    if sorted(perm) != list(range(n)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of the {n} dimensions of shape {x.shape}")
    return Transpose.apply(x, axes=perm)


def _is_advanced(idx):
    items = idx if isinstance(idx, tuple) else (idx,)
    return any(not isinstance(i, (int, np.integer, slice)) and i is not None and i is not Ellipsis for i in items)


class GetItem(Function):
    @staticmethod
    def forward(ctx, x, idx):
        ctx.in_shape, ctx.idx = x.shape, idx
        try:
            return x[idx]
        except IndexError as e:
            raise IndexError(f"index {idx!r} out of range for shape {x.shape}: {e}") from None

    @staticmethod
    def backward(ctx, grad_output):
        xp = get_array_module(grad_output)
        g = xp.zeros(ctx.in_shape, grad_output.dtype)
        if _is_advanced(ctx.idx):
            xp.add.at(g, ctx.idx, grad_output)  # repeated indices accumulate
        else:
            g[ctx.idx] = grad_output
        return g


def getitem(x, idx):
    def conv(i):
        if isinstance(i, autograd.Tensor):
            return i.data
        if isinstance(i, list):
            return to_device(np.asarray(i), x.device)
        return i
    idx = tuple(conv(i) for i in idx) if isinstance(idx, tuple) else conv(idx)
    return GetItem.apply(x, idx=idx)


class Cat(Function):
    @staticmethod
    def forward(ctx, *xs, axis):
        ctx.axis = axis
        ctx.splits = np.cumsum([x.shape[axis] for x in xs])[:-1]
        return get_array_module(xs[0]).concatenate(xs, axis=axis)

    @staticmethod
    def backward(ctx, grad_output):
        return tuple(get_array_module(grad_output).split(grad_output, ctx.splits, axis=ctx.axis))


def _check_same(seq, what, axis):
    if not seq:
        raise ValueError(f"{what}: expected a non-empty sequence of tensors")
    ref = seq[0].shape
    for i, t in enumerate(seq):
        if len(t.shape) != len(ref) or any(a != b for d, (a, b) in enumerate(zip(t.shape, ref))
                                           if what == "stack" or d != axis % len(ref)):
            raise ValueError(f"{what}: tensor {i} has shape {t.shape}, expected shape {ref}"
                             + ("" if what == "stack" else f" except in dimension {axis}"))


def cat(seq, axis=0, *, dim=None):
    axis = axis if dim is None else dim
    seq = list(seq)
    _check_same(seq, "cat", axis)
    return Cat.apply(*seq, axis=axis % seq[0].ndim)


class Stack(Function):
    @staticmethod
    def forward(ctx, *xs, axis):
        ctx.axis = axis
        return get_array_module(xs[0]).stack(xs, axis=axis)

    @staticmethod
    def backward(ctx, grad_output):
        g = get_array_module(grad_output).moveaxis(grad_output, ctx.axis, 0)
        return tuple(g)


def stack(seq, axis=0, *, dim=None):
    axis = axis if dim is None else dim
    seq = list(seq)
    _check_same(seq, "stack", axis)
    return Stack.apply(*seq, axis=axis % (seq[0].ndim + 1))


class Cast(Function):
    @staticmethod
    def forward(ctx, x, dtype):
        ctx.in_dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.astype(ctx.in_dtype)


def cast(x, dtype):
    return x if x.dtype == dtype else Cast.apply(x, dtype=dtype)


class ToDevice(Function):
    @staticmethod
    def forward(ctx, x, src, device):
        ctx.src = src
        return to_device(x, device)

    @staticmethod
    def backward(ctx, grad_output):
        return to_device(grad_output, ctx.src)


def to(x, device):
    """Move x to a Device (differentiable: the gradient moves back)."""
    if x.device is device:
        return x
    out = ToDevice.apply(x, src=x.device, device=device)
    out.device = device  # apply assumes outputs live with inputs; this op is the exception
    return out
