"""Stateless forms of the layers and losses in mg.nn: f(tensors, options) -> Tensor."""
import numpy as np

from .. import random as _random
from ..autograd import Function
from ..backend import get_array_module, to_device
from ..ops import log_softmax, softmax  # noqa: F401
from ..ops.loss import (_check_reduction, _index_coefficients, binary_cross_entropy,  # noqa: F401
                        binary_cross_entropy_with_logits, cross_entropy, mse_loss)
from ..ops.nn import (Embedding, NLLLoss, bias_act, elu, gelu, leaky_relu, linear, moments,  # noqa: F401
                      normalize, relu, sigmoid, silu, softplus, tanh)
from ..tensor import Tensor, _wrap, tensor


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


def _indices(name, t):
    """The integer array of an index tensor (or array-like); RuntimeError for another dtype, as PyTorch."""
    a = t.data if isinstance(t, Tensor) else np.asarray(t)
    if a.dtype.kind not in "iu":
        raise RuntimeError(f"{name}: expected an integer (index) tensor, found dtype {a.dtype}")
    return a


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalize over the last len(normalized_shape) dimensions (biased variance), then * weight + bias
    (both of shape normalized_shape, or None)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or tuple(input.shape[input.ndim - k:]) != shape or input.ndim < k:
        raise RuntimeError(f"layer_norm: normalized_shape={list(shape)} expects input of shape [*, "
                           f"{', '.join(map(str, shape))}], found {list(input.shape)}")
    y = normalize(input, tuple(range(input.ndim - k, input.ndim)), eps)
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalize each channel (axis 1) of (N, C) or (N, C, L) input over the others: with the batch's
    statistics when training (or without running statistics), updating running_mean and running_var
    in place (running_var with the unbiased variance, as PyTorch), else with the running ones. Then
    * weight + bias, each (C,) or None."""
    if input.ndim not in (2, 3):
        raise ValueError(f"batch_norm: expected 2D (N, C) or 3D (N, C, L) input, found shape {tuple(input.shape)}")
    c = input.shape[1]
    axes, stat_shape = ((0,), (1, c)) if input.ndim == 2 else ((0, 2), (1, c, 1))
    if training or running_mean is None:
        n = input.data.size // c if c else 0
        if training and n <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, found input "
                             f"of shape {tuple(input.shape)}")
        mean, var = moments(input.data, axes)
        if training and running_mean is not None:
            rm, rv = running_mean.data, running_var.data
            rm[...] = (1 - momentum) * rm + momentum * mean.reshape(c)
            rv[...] = (1 - momentum) * rv + momentum * var.reshape(c) * (n / (n - 1))
        y = normalize(input, axes, eps)
    else:
        y = normalize(input, axes, eps, running_mean.data.reshape(stat_shape), running_var.data.reshape(stat_shape))
    affine = stat_shape[1:]  # (C,) broadcasts over (N, C); (C, 1) over (N, C, L)
    if weight is not None:
        y = y * (weight if len(affine) == 1 else weight.reshape(affine))
    if bias is not None:
        y = y + (bias if len(affine) == 1 else bias.reshape(affine))
    return y


def embedding(input, weight, padding_idx=None):
    """weight[input]: rows of weight (num_embeddings, embedding_dim) for integer indices of any shape;
    the row padding_idx gets no gradient."""
    idx = _indices("embedding", input)
    v = weight.shape[0]
    if idx.size and (idx.min() < 0 or idx.max() >= v):
        bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
        raise IndexError(f"embedding: index {bad} is out of range for {v} embeddings (valid 0..{v - 1})")
    if padding_idx is not None:
        if not -v <= padding_idx < v:
            raise AssertionError(f"embedding: padding_idx must be within num_embeddings ({v}), found {padding_idx}")
        padding_idx %= v
    return Embedding.apply(weight, indices=idx, padding_idx=padding_idx)


def one_hot(tensor, num_classes=-1):
    """int64 (*tensor.shape, num_classes) with a 1 at each index; num_classes=-1: tensor.max() + 1."""
    t = _indices("one_hot", tensor)
    if num_classes == -1:
        if not t.size:
            raise RuntimeError("one_hot: cannot infer the number of classes from an empty tensor; pass num_classes")
        num_classes = int(t.max()) + 1
    if t.size and t.min() < 0:
        raise RuntimeError(f"one_hot: class values must be non-negative, found {int(t.min())}")
    if t.size and t.max() >= num_classes:
        raise RuntimeError(f"one_hot: class values must be smaller than num_classes ({num_classes}), "
                           f"found {int(t.max())}")
    xp = get_array_module(t)
    return _wrap((t[..., None] == xp.arange(num_classes)).astype(np.int64), tensor.device)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities input (N, C), (C,) or (N, C, d1, ...) at integer
    class indices target (N,), () or (N, d1, ...); weight (C,) per class; targets equal to
    ignore_index count nothing. "mean" divides by the summed weight of the counted targets."""
    _check_reduction("nll_loss", reduction)
    t = _indices("nll_loss", target)
    target = target if isinstance(target, Tensor) else tensor(t)
    if input.ndim == 1 or input.ndim > 2:
        if input.ndim == 1:
            rows, t_rows, shape = input.reshape(1, -1), target.reshape(1), ()
        else:
            shape = (input.shape[0], *input.shape[2:])
            if tuple(t.shape) != shape:
                raise ValueError(f"nll_loss: target must have shape {shape} for input of shape "
                                 f"{tuple(input.shape)}, found {tuple(t.shape)}")
            rows = input.transpose((0, *range(2, input.ndim), 1)).reshape(-1, input.shape[1])
            t_rows = target.reshape(-1)
        out = nll_loss(rows, t_rows, weight, ignore_index, reduction)
        return out.reshape(shape) if reduction == "none" else out
    if input.ndim != 2:
        raise ValueError(f"nll_loss: input must have shape (N, C), (C,) or (N, C, d1, ...), found {tuple(input.shape)}")
    n, c = input.shape
    if tuple(t.shape) != (n,):
        raise ValueError(f"nll_loss: target must have shape ({n},) for input of shape {(n, c)}, found {tuple(t.shape)}")
    keep = t != ignore_index
    kept = t[keep]
    if kept.size and (kept.min() < 0 or kept.max() >= c):
        bad = int(kept.min()) if kept.min() < 0 else int(kept.max())
        raise IndexError(f"nll_loss: target contains class {bad} but input has {c} classes (valid 0..{c - 1})")
    if weight is not None:
        if tuple(weight.shape) != (c,):
            raise ValueError(f"nll_loss: weight must have one entry per class, shape ({c},), found {tuple(weight.shape)}")
        weight = weight.detach()
    q, total = _index_coefficients(t, c, keep, weight, 0.0, input.dtype)
    return NLLLoss.apply(input, reduction=reduction, q=q, n=total)



def logsumexp(input, dim, keepdim=False):
    """log(sum(exp(input))) over dim, computed stably (Tensor.logsumexp)."""
    return input.logsumexp(dim, keepdim=keepdim)
