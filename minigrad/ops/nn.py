"""Fused layers: bias + activation in one kernel (minigrad/kernels.py), and linear built on it; the
activations as ops; normalization, embedding lookup and the negative log-likelihood."""
from .. import kernels
from ..autograd import Function
from ..backend import get_array_module
from .dtypes import floating
from .movement import ShapeError
from .loss import _reduce, _upstream


def _check_bias(op, z, b, what="input"):
    if b is None:
        return
    if z.ndim == 0:
        raise ShapeError(f"{op}: {what} must have at least 1 dimension to add a bias, found shape ()")
    if b.ndim != 1 or b.shape[0] != z.shape[-1]:
        raise ShapeError(f"{op}: bias has shape {b.shape} but {what} has {z.shape[-1]} features "
                         f"(shape {z.shape}); expected bias of shape ({z.shape[-1]},)")
    if b.dtype != z.dtype:
        raise TypeError(f"{op}: bias is {b.dtype} but {what} is {z.dtype}; cast one of them")


class BiasAct(Function):
    @staticmethod
    def forward(ctx, z, b=None, activation=None, params=()):
        if b is not None:
            _check_bias("bias_act", z, b)
        ctx.activation, ctx.params = activation, params
        y = kernels.bias_act_forward(z, b, activation, params=params)
        ctx.save_for_backward(z if kernels.ACTIVATIONS[activation].saves == "z" else y, b)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        saved, b = ctx.saved_tensors
        need_z = ctx.needs_input_grad[0]
        need_b = b is not None and ctx.needs_input_grad[1]
        gz, gb = kernels.bias_act_backward(grad_output, saved, ctx.activation, b=b,
                                           need_gz=need_z, need_gb=need_b, params=ctx.params)
        return gz if b is None else (gz, gb)


def bias_act(z, b=None, activation=None):
    """act(z + b) in one fused pass. z: (..., M), b: (M,) or None; activation: a name in
    minigrad.kernels.ACTIVATIONS (None, "relu", "sigmoid", "tanh", "gelu", "gelu_tanh",
    "leaky_relu", "elu", "silu", "softplus"), with its parameters' defaults."""
    activation = kernels.check_activation(activation, "bias_act")
    params = kernels.activation_params(activation)
    return BiasAct.apply(z, activation=activation, params=params) if b is None else \
        BiasAct.apply(z, b, activation=activation, params=params)


# The activations as ops of their own, each one row of kernels.ACTIVATIONS (inplace= is accepted
# for PyTorch's signatures and ignored: the result is always a new tensor).
def sigmoid(x): return BiasAct.apply(floating(x), activation="sigmoid", params=())
def tanh(x): return BiasAct.apply(floating(x), activation="tanh", params=())


def relu(x, inplace=False):
    if x.data.dtype.kind == "b":
        raise RuntimeError("relu: bool inputs are not supported")
    return BiasAct.apply(x, activation="relu", params=())


def silu(x, inplace=False): return BiasAct.apply(x, activation="silu", params=())


def gelu(x, approximate="none"):
    """GELU: x * Phi(x) with the exact normal CDF (approximate="none", PyTorch's default), or
    PyTorch's tanh approximation (approximate="tanh")."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', found {approximate!r}")
    return BiasAct.apply(x, activation="gelu" if approximate == "none" else "gelu_tanh", params=())


def leaky_relu(x, negative_slope=0.01, inplace=False):
    return BiasAct.apply(x, activation="leaky_relu", params=(float(negative_slope),))


def elu(x, alpha=1.0, inplace=False):
    return BiasAct.apply(x, activation="elu", params=(float(alpha),))


def softplus(x, beta=1.0, threshold=20.0):
    """log(1 + exp(beta * x)) / beta, and x itself where beta * x > threshold (as PyTorch)."""
    return BiasAct.apply(x, activation="softplus", params=(float(beta), float(threshold)))


class Linear(Function):
    @staticmethod
    def forward(ctx, x, w, b=None, activation=None):
        _check_linear(x, w, b)
        out_features, in_features = w.shape
        x2 = x.reshape(-1, in_features)
        # z = x @ w.T into a buffer this op owns, so the bias + activation can run in place on it
        z = kernels.empty((x2.shape[0], out_features), w.dtype, like=w)
        kernels.matmul(x2, w.T, out=z)
        ctx.activation, ctx.x_shape = activation, x.shape
        if kernels.ACTIVATIONS[activation].saves == "z":  # backward needs z + b: keep z, write y elsewhere
            y = kernels.bias_act_forward(z, b, activation)
            ctx.save_for_backward(x2, w, z, b)
        else:
            y = kernels.bias_act_forward(z, b, activation, out=z)
            ctx.save_for_backward(x2, w, y, b)
        return y.reshape(*x.shape[:-1], out_features)

    @staticmethod
    def backward(ctx, grad_output):
        x2, w, saved, b = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[:2]
        need_b = b is not None and ctx.needs_input_grad[2]
        g = grad_output.reshape(-1, w.shape[0])
        gz, gb = kernels.bias_act_backward(g, saved, ctx.activation, b=b, need_gb=need_b)
        # outputs from the kernel buffer cache: big gradients reuse already-mapped pages each step
        gx = kernels.matmul(gz, w, out=kernels.empty(x2.shape, w.dtype, like=w)).reshape(ctx.x_shape) \
            if need_x else None
        gw = kernels.matmul(gz.T, x2, out=kernels.empty(w.shape, w.dtype, like=w)) if need_w else None
        return (gx, gw) if b is None else (gx, gw, gb)


def _check_linear(x, w, b):
    if w.ndim != 2:
        raise ShapeError(f"linear: weight must be 2-D (out_features, in_features), found shape {w.shape}")
    if x.ndim == 0 or x.shape[-1] != w.shape[1]:
        n = x.shape[-1] if x.ndim else "no"
        raise ShapeError(f"linear: input has {n} features (shape {x.shape}) but weight expects "
                         f"{w.shape[1]} (shape {w.shape})")
    if x.dtype != w.dtype:
        raise TypeError(f"linear: input is {x.dtype} but weight is {w.dtype}; cast one of them")
    if b is not None and (b.ndim != 1 or b.shape[0] != w.shape[0]):
        raise ShapeError(f"linear: bias has shape {b.shape} but weight has {w.shape[0]} outputs "
                         f"(shape {w.shape}); expected bias of shape ({w.shape[0]},)")
    if b is not None and b.dtype != w.dtype:
        raise TypeError(f"linear: bias is {b.dtype} but weight is {w.dtype}; cast one of them")


def linear(x, w, b=None, activation=None):
    """act(x @ w.T + b): x (..., in), w (out, in) as PyTorch's, b (out,) or None.
    The bias and activation run fused and in place on the matmul's output."""
    activation = kernels.check_activation(activation, "linear")
    return Linear.apply(x, w, activation=activation) if b is None else \
        Linear.apply(x, w, b, activation=activation)



# --- normalization, embedding, nll_loss ---------------------------------------------------------
class Normalize(Function):
    """(x - mean) / sqrt(var + eps) with mean and var of x's shape reduced over `axes` (kept as size
    1). batch_stats: mean and var are x's own (biased) moments over `axes`, and the gradient flows
    through them; otherwise they are constants (running statistics)."""
    @staticmethod
    def forward(ctx, x, mean, var, eps, axes, batch_stats):
        rstd = 1 / get_array_module(x).sqrt(var + eps)
        xhat = (x - mean) * rstd
        ctx.save_for_backward(xhat if batch_stats else None, rstd)
        ctx.axes = axes
        return xhat

    @staticmethod
    def backward(ctx, grad_output):
        xhat, rstd = ctx.saved_tensors
        g = grad_output
        if xhat is None:
            return g * rstd
        ax = ctx.axes
        return rstd * (g - g.mean(axis=ax, keepdims=True) - xhat * (g * xhat).mean(axis=ax, keepdims=True))


def moments(x, axes):
    """(mean, biased variance) of the array x over axes, kept as size-1 axes."""
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    return mean, (xc * xc).mean(axis=axes, keepdims=True)


def normalize(x, axes, eps, mean=None, var=None):
    """Normalize over axes with x's own moments, or with the given mean and var (constants)."""
    if mean is None:
        m, v = moments(x.data, axes)
        return Normalize.apply(x, mean=m, var=v, eps=eps, axes=axes, batch_stats=True)
    return Normalize.apply(x, mean=mean, var=var, eps=eps, axes=axes, batch_stats=False)


class Embedding(Function):
    """Rows of weight (V, D) picked by integer indices of any shape -> (*indices.shape, D). The
    gradient of a row is the sum over every place it was picked; the padding row gets none."""
    @staticmethod
    def forward(ctx, weight, indices, padding_idx):
        ctx.save_for_backward(indices)
        ctx.shape, ctx.padding_idx = weight.shape, padding_idx
        return weight[indices]

    @staticmethod
    def backward(ctx, grad_output):
        indices, = ctx.saved_tensors
        xp = get_array_module(grad_output)
        gw = xp.zeros(ctx.shape, grad_output.dtype)
        xp.add.at(gw, indices.reshape(-1), grad_output.reshape(-1, ctx.shape[1]))
        if ctx.padding_idx is not None:
            gw[ctx.padding_idx] = 0
        return gw


class NLLLoss(Function):
    """-sum_j q_ij x_ij per row of (N, C) log-probabilities x, with per-class coefficients q (the
    one-hot targets, weighted; zero rows for ignored targets); "mean" divides the sum by n."""
    @staticmethod
    def forward(ctx, x, q, reduction, n):
        ctx.save_for_backward(q)
        ctx.reduction, ctx.n = reduction, n
        return _reduce(get_array_module(x), -(q * x).sum(axis=1), reduction, n)

    @staticmethod
    def backward(ctx, grad_output):
        q, = ctx.saved_tensors
        g = _upstream(grad_output, ctx.reduction, ctx.n)
        return -q * (g[:, None] if ctx.reduction == "none" else g)
