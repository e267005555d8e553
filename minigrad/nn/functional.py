"""Stateless forms of the layers and losses in mg.nn: f(tensors, options) -> Tensor."""
from .. import random as _random
from ..autograd import Function
from ..backend import to_device
from ..ops import log_softmax, relu, sigmoid, softmax, tanh  # noqa: F401
from ..ops.loss import (binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,  # noqa: F401
                        mse_loss)
from ..ops.nn import bias_act, gelu, linear  # noqa: F401  (fused matmul + bias + activation)
from ..tensor import _wrap


class _Dropout(Function):
    @staticmethod
    def forward(ctx, x, mask):
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad_output):
        mask, = ctx.saved_tensors
        return grad_output * mask, None


def dropout(x, p=0.5, training=True):
    """Zero each element with probability p and scale the rest by 1 / (1 - p) (inverted dropout),
    so evaluation needs no rescaling. Identity when training is False or p == 0."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: probability must be in [0, 1], found {p}")
    if not training or p == 0:
        return x
    dt = x.data.dtype
    keep = _random.generator().random(x.data.shape, dtype="float32" if dt.itemsize <= 4 else "float64") >= p
    mask = keep.astype(dt)
    if p < 1:
        mask *= 1.0 / (1.0 - p)
    return _Dropout.apply(x, _wrap(to_device(mask, x.device), x.device))
