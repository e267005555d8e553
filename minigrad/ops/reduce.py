"""Reductions over axes, and softmax/log_softmax along one axis."""
from ..autograd import Function
from ..backend import get_array_module
from .elementwise import exp


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
        return mask * (grad_output.reshape(keep) / mask.sum(axis=ctx.axis, keepdims=True))


def _norm_axis(x, axis, dim):
    """The reduction axis (PyTorch's dim= wins over axis=) as None, an int or a tuple, each in
    [0, ndim); IndexError for one out of range."""
    axis = dim if dim is not None else axis
    if axis is None:
        return None
    n = x.ndim or 1  # NumPy accepts axis 0 / -1 on 0-d arrays
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    for a in axes:
        if not -n <= a < n:
            raise IndexError(f"axis {a} is out of range for a tensor of shape {x.shape}")
    axes = tuple(a % n for a in axes)
    return axes if isinstance(axis, (tuple, list)) else axes[0]


def _reduction(x, axis, dim, keepdims, keepdim):
    """(axis, keepdims) of a reduction called NumPy's way or PyTorch's."""
    return dict(axis=_norm_axis(x, axis, dim), keepdims=keepdims if keepdim is None else keepdim)


def sum(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    return Sum.apply(x, **_reduction(x, axis, dim, keepdims, keepdim))


def mean(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    return Mean.apply(x, **_reduction(x, axis, dim, keepdims, keepdim))


def max(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    return Max.apply(x, **_reduction(x, axis, dim, keepdims, keepdim), minimum=False)


def min(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    return Max.apply(x, **_reduction(x, axis, dim, keepdims, keepdim), minimum=True)


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, axis):
        xp = get_array_module(x)
        z = x - x.max(axis=axis, keepdims=True)
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
    return LogSoftmax.apply(x, axis=_norm_axis(x, axis, dim))


def softmax(x, axis=-1, *, dim=None):
    """exp(log_softmax(x)): stable for any input, and its backward comes for free."""
    return exp(log_softmax(x, axis, dim=dim))
