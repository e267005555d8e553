"""Reductions over axes, and softmax/log_softmax along one axis."""
from collections import namedtuple

from .. import autograd
from ..autograd import Function
from ..backend import get_array_module
from .elementwise import exp
from .movement import dim_index


def _keep_shape(in_shape, axis):
    """The shape a reduction over `axis` has with keepdims=True."""
    if axis is None:
        return (1,) * len(in_shape)
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(1 if i in axes else n for i, n in enumerate(in_shape))


def _spread(grad_output, in_shape, axis):
    """Broadcast a reduced gradient back over the reduced axes, as a fresh array."""
    g = grad_output.reshape(_keep_shape(in_shape, axis))
    out = get_array_module(g).empty(in_shape, g.dtype)
    out[...] = g
    return out


class Sum(Function):
    @staticmethod
    def forward(ctx, x, axis, keepdims):
        ctx.in_shape, ctx.axis = x.shape, axis
        return x.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, grad_output):
        return _spread(grad_output, ctx.in_shape, ctx.axis)


class Mean(Function):
    @staticmethod
    def forward(ctx, x, axis, keepdims):
        ctx.in_shape, ctx.axis = x.shape, axis
        y = x.mean(axis=axis, keepdims=keepdims)
        ctx.scale = y.size / x.size if x.size else 0.0
        return y

    @staticmethod
    def backward(ctx, grad_output):
        return _spread(grad_output * ctx.scale, ctx.in_shape, ctx.axis)


class Max(Function):
    """max (or min) over axes; ties share the gradient equally, as torch.amax."""
    @staticmethod
    def forward(ctx, x, axis, keepdims, minimum):
        y = x.min(axis=axis, keepdims=keepdims) if minimum else x.max(axis=axis, keepdims=keepdims)
        ctx.save_for_backward(x, y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, grad_output):
        x, y = ctx.saved_tensors
        keep = _keep_shape(x.shape, ctx.axis)
        mask = x == y.reshape(keep)
        return mask * (grad_output.reshape(keep) / mask.sum(axis=ctx.axis, keepdims=True, dtype=grad_output.dtype))


class TakeAlong(Function):
    """x's entries at indices (keepdims-shaped, from argmax or argmin) along one axis; the gradient goes
    to those entries only, as torch.max(dim)'s."""
    @staticmethod
    def forward(ctx, x, indices, axis, keepdims):
        ctx.in_shape, ctx.indices, ctx.axis = x.shape, indices, axis
        y = get_array_module(x).take_along_axis(x, indices, axis)
        return y if keepdims else y.squeeze(axis)

    @staticmethod
    def backward(ctx, grad_output):
        xp, axis = get_array_module(grad_output), ctx.axis
        n = ctx.in_shape[axis]
        hit = xp.arange(n).reshape((n,) + (1,) * (len(ctx.in_shape) - axis - 1)) == ctx.indices
        return hit * grad_output.reshape(ctx.indices.shape)


def _norm_axis(x, axis, dim, extremum=None):
    """The reduction axis (PyTorch's dim= wins over axis=) as None (all, also for () and for a 0-d
    x), an int or a tuple, each in [0, ndim); IndexError for one out of range, RuntimeError for a
    repeated one. extremum ("amax"/"amin") adds PyTorch's checks for an empty x, which NumPy cannot
    reduce."""
    axis = dim if dim is not None else axis
    if axis is None and not extremum:
        return None
    if axis is None or axis == ():
        axes = None
    else:
        axes = tuple(dim_index(a, x.ndim) for a in (axis if isinstance(axis, (tuple, list)) else (axis,)))
    if extremum and x.data.size == 0:
        if axes is None:
            raise RuntimeError(f"{extremum}(): Expected reduction dim to be specified for input.numel() == 0.")
        for a in axes:
            if x.shape[a] == 0:
                raise IndexError(f"{extremum}(): Expected reduction dim {a} to have non-zero size.")
    if axes is None or x.ndim == 0:
        return None
    if len(set(axes)) != len(axes):
        raise RuntimeError(f"dim {next(a for a in axes if axes.count(a) > 1)} appears multiple times in the "
                           f"list of dims {axis}")
    return axes if isinstance(axis, (tuple, list)) else axes[0]


def _reduction(x, axis, dim, keepdims, keepdim, extremum=None):
    """(axis, keepdims) of a reduction called NumPy's way or PyTorch's."""
    return dict(axis=_norm_axis(x, axis, dim, extremum), keepdims=keepdims if keepdim is None else keepdim)


def sum(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    return Sum.apply(x, **_reduction(x, axis, dim, keepdims, keepdim))


def mean(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    if x.dtype.kind not in "fc":
        raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be either a floating point "
                           f"or complex dtype. Got: {x.dtype}")
    return Mean.apply(x, **_reduction(x, axis, dim, keepdims, keepdim))


def amax(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """The largest entries over dims (all by default); tied entries share the gradient equally."""
    return Max.apply(x, **_reduction(x, axis, dim, keepdims, keepdim, "amax"), minimum=False)


def amin(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    return Max.apply(x, **_reduction(x, axis, dim, keepdims, keepdim, "amin"), minimum=True)


MaxResult = namedtuple("max", ["values", "indices"])  # as torch.return_types.max: a (values, indices) tuple
MinResult = namedtuple("min", ["values", "indices"])


def _max_min(x, axis, keepdims, dim, keepdim, minimum):
    """max()/min() over all entries: one tensor. Along one dim: (values, indices), the first extremum's
    index in each slice, which alone receives the gradient."""
    name, pair = ("min", MinResult) if minimum else ("max", MaxResult)
    d = dim if dim is not None else axis
    if d is None:
        return (amin if minimum else amax)(x)
    if not isinstance(d, int):
        raise TypeError(f"{name}(): dim must be an int, found {d!r}; amax/amin take several dims")
    keepdims = keepdims if keepdim is None else keepdim
    d = dim_index(d, x.ndim)
    data = x.data if x.ndim else x.data.reshape(1)  # a 0-d x is its own extremum, at index 0
    if data.shape[d] == 0:
        raise IndexError(f"{name}(): Expected reduction dim {d} to have non-zero size.")
    indices = (data.argmin if minimum else data.argmax)(axis=d, keepdims=True)
    if not x.ndim:
        return pair(x, autograd._wrap(indices.reshape(()), x.device))
    values = TakeAlong.apply(x, indices=indices, axis=d, keepdims=keepdims)
    return pair(values, autograd._wrap(indices if keepdims else indices.squeeze(d), x.device))


def max(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    return _max_min(x, axis, keepdims, dim, keepdim, minimum=False)


def min(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    return _max_min(x, axis, keepdims, dim, keepdim, minimum=True)


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, axis):
        xp = get_array_module(x)
        z = x - x.max(axis=axis, keepdims=True) if x.size else x  # (an empty x has no max)
        y = z - xp.log(xp.exp(z).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, grad_output):
        y, = ctx.saved_tensors
        xp = get_array_module(y)
        return grad_output - xp.exp(y) * grad_output.sum(axis=ctx.axis, keepdims=True)


def log_softmax(x, axis=-1, *, dim=None):
    axis = _norm_axis(x, axis, dim)
    # PyTorch has no integer kernel (the error class is its), and returns an empty input as it is
    if x.data.dtype.kind not in "fc":
        if x.data.size:
            raise NotImplementedError(f"log_softmax / softmax: expected a floating-point tensor, found {x.data.dtype}; "
                                      "cast it first (x.float())")
        return x
    return LogSoftmax.apply(x, axis=axis)


def softmax(x, axis=-1, *, dim=None):
    """exp(log_softmax(x)): stable for any input, and its backward comes for free."""
    y = log_softmax(x, axis, dim=dim)
    return x if y is x else exp(y)


class Var(Function):
    """Variance (or, with root=True, standard deviation) over axes, dividing by N - correction;
    PyTorch's gradients: 2 (x - mean) / (N - correction), and none through a standard deviation of 0."""
    @staticmethod
    def forward(ctx, x, axis, keepdims, correction, root, every_dim):
        xp = get_array_module(x)
        n = 1
        for a in range(x.ndim) if axis is None else axis if isinstance(axis, tuple) else (axis,):
            n *= x.shape[a]
        with xp.errstate(divide="ignore", invalid="ignore"):
            d = x - x.mean(axis=axis, keepdims=True)
            y = (d * d).sum(axis=axis, keepdims=True) / (n - correction if n > correction else 0)
            if root:
                y = xp.sqrt(y)
        ctx.save_for_backward(d, y if root else None)
        k = n - correction
        if every_dim and k < 0:  # as PyTorch: over every dim the gradient's divisor is clamped at 0, over given dims not
            k = 0
        ctx.axis, ctx.scale = axis, 2 / k if k else float("inf")
        return y if keepdims else y.reshape(_reduced_shape(x.shape, axis))

    @staticmethod
    def backward(ctx, grad_output):
        d, y = ctx.saved_tensors
        xp = get_array_module(d)
        g = grad_output.reshape(_keep_shape(d.shape, ctx.axis))
        with xp.errstate(divide="ignore", invalid="ignore"):
            if y is not None:
                g = xp.where(y == 0, 0, g / (2 * y))
            return d * (g * ctx.scale)


def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None, root=False):
    """Variance over dims (all by default), dividing by N - correction (correction=1 unless
    unbiased=False, as PyTorch); var(False) is var(unbiased=False)."""
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    if x.dtype.kind not in "fc":
        raise RuntimeError(f"std and var only support floating point and complex dtypes, found {x.dtype}")
    if correction is None:
        correction = 0 if unbiased is False else 1
    return Var.apply(x, axis=_norm_axis(x, None, dim), keepdims=keepdim, correction=correction, root=root,
                     every_dim=dim is None or x.ndim == 0)


def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Standard deviation: the square root of var (same arguments)."""
    return var(x, dim, unbiased, keepdim, correction=correction, root=True)


class LogSumExp(Function):
    @staticmethod
    def forward(ctx, x, axis, keepdims):
        xp = get_array_module(x)
        m = x.max(axis=axis, keepdims=True) if x.size else xp.zeros(_keep_shape(x.shape, axis), x.dtype)
        m = xp.where(xp.isfinite(m), m, 0)  # all -inf (or an inf) in a slice: no shift
        with xp.errstate(divide="ignore"):  # log(0) = -inf: every entry -inf
            y = xp.log(xp.exp(x - m).sum(axis=axis, keepdims=True)) + m
        ctx.save_for_backward(x, y)
        return y if keepdims else y.reshape(_reduced_shape(x.shape, axis))

    @staticmethod
    def backward(ctx, grad_output):
        x, y = ctx.saved_tensors
        return grad_output.reshape(y.shape) * get_array_module(x).exp(x - y)


def _reduced_shape(shape, axis):
    axes = range(len(shape)) if axis is None else axis if isinstance(axis, tuple) else (axis,)
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def logsumexp(x, dim, keepdim=False):
    """log(sum(exp(x))) over dims, computed stably (shifted by the maximum); integer inputs give float32."""
    if x.dtype.kind not in "fc":
        x = autograd._wrap(x.data.astype("float32"), x.device)
    return LogSumExp.apply(x, axis=_norm_axis(x, None, dim), keepdims=keepdim)


def vector_norm(x, p, axis=None):
    """The vector p-norm (p >= 0 or +-inf) of array x over axis (None: all), the reduced axes kept
    with size 1; the inf-norms of an empty reduction are not defined (the callers decide)."""
    xp = get_array_module(x)
    a = abs(x)
    if p == float("inf") or p == -float("inf"):
        return (a.max if p > 0 else a.min)(axis=axis, keepdims=True)
    if p == 0:
        return (x != 0).sum(axis=axis, keepdims=True).astype(x.dtype)
    if p == 1:
        return a.sum(axis=axis, keepdims=True)
    if p == 2:
        return xp.sqrt((x * x).sum(axis=axis, keepdims=True))
    return (a ** p).sum(axis=axis, keepdims=True) ** (1 / p)


class Norm(Function):
    """The vector p-norm over axes (p >= 0 or +-inf); its gradient is 0 where the norm is 0, and
    the inf-norms' ties share it equally, as in PyTorch."""
    @staticmethod
    def forward(ctx, x, p, axis, keepdims):
        n = vector_norm(x, p, axis)
        ctx.save_for_backward(x, n)
        ctx.p, ctx.axis = p, axis
        return n if keepdims else n.reshape(_reduced_shape(x.shape, axis))

    @staticmethod
    def backward(ctx, grad_output):
        x, n = ctx.saved_tensors
        xp, p = get_array_module(x), ctx.p
        g = grad_output.reshape(n.shape)
        if p == 0:
            return None  # a count: no gradient, as PyTorch
        if p == 1:
            return xp.sign(x) * g
        if p == float("inf") or p == -float("inf"):
            hit = abs(x) == n
            return xp.sign(x) * hit * (g / hit.sum(axis=ctx.axis, keepdims=True))
        with xp.errstate(divide="ignore", invalid="ignore"):
            scale = xp.where(n == 0, 0, g / n ** (p - 1))
            if p == 2:
                return x * scale
            if p < 1:
                return xp.where(x == 0, 0, xp.sign(x) * abs(x) ** (p - 1)) * scale
            return x * abs(x) ** (p - 2) * scale


def norm(x, p="fro", dim=None, keepdim=False):
    """The vector p-norm of x over dims (all by default): p = 'fro' (2), any p > 0, inf, -inf, or 0
    (the count of nonzero entries, whose gradient is None)."""
    if x.dtype.kind not in "fc":
        raise RuntimeError(f"linalg.vector_norm: Expected a floating point or complex tensor as input. Got {x.dtype}")
    if isinstance(p, str):
        if p != "fro":
            raise ValueError(f"norm: p must be a number or 'fro', found {p!r} (matrix norms are not supported)")
        p = 2
    axis = _norm_axis(x, None, dim)
    if p < 0 and p != -float("inf"):
        raise ValueError(f"norm: p must be >= 0, inf or -inf, found {p}")
    if abs(p) == float("inf") and 0 in [x.shape[a] for a in (range(x.ndim) if axis is None else
                                                            axis if isinstance(axis, tuple) else (axis,))]:
        raise RuntimeError(f"linalg.vector_norm cannot compute the {p} norm on an empty tensor because the "
                           "operation does not have an identity")
    return Norm.apply(x, p=float(p), axis=axis, keepdims=keepdim)
