"""Matrix products."""
from .. import kernels
from ..autograd import Function
from .dtypes import promote
from .movement import ShapeError, sum_to_shape


def _check_matmul(a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: both operands need at least 1 dimension, found shapes {a.shape} and {b.shape}")
    ka, kb = a.shape[-1], b.shape[-2] if b.ndim > 1 else b.shape[0]
    if ka != kb:
        raise ShapeError(f"matmul: shapes {a.shape} and {b.shape} are not aligned: last dimension of the "
                         f"first ({ka}) != {'second-to-last' if b.ndim > 1 else 'only'} dimension of the second ({kb})")


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        _check_matmul(a, b)
        ctx.save_for_backward(a, b)
        return kernels.matmul(a, b)

    @staticmethod
    def backward(ctx, grad_output):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        g = grad_output
        if a.ndim == 2 and b.ndim == 2:
            return (kernels.matmul(g, b.T) if need_a else None), (kernels.matmul(a.T, g) if need_b else None)
        if a.ndim == 1 and b.ndim == 1:
            return g * b if need_a else None, g * a if need_b else None
        # promote 1-D operands as NumPy does, then sum out broadcast batch dimensions
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if a.ndim == 1:
            g = g[..., None, :]
        if b.ndim == 1:
            g = g[..., None]
        ga = sum_to_shape(kernels.matmul(g, b2.swapaxes(-1, -2)), a2.shape).reshape(a.shape) if need_a else None
        gb = sum_to_shape(kernels.matmul(a2.swapaxes(-1, -2), g), b2.shape).reshape(b.shape) if need_b else None
        return ga, gb


def matmul(a, b):
    return MatMul.apply(*promote(a, b))
