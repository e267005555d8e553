"""mg.nn.utils: gradient clipping, as torch.nn.utils (call between backward() and optimizer.step())."""
import math

import numpy as np

from ..backend import CPU, device_of, get_array_module, to_device
from ..ops.reduce import vector_norm
from ..tensor import Tensor, _wrap


def _grads(parameters):
    """The gradient arrays of parameters (one Tensor or an iterable) that have one."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad.data for p in parameters if p.grad is not None]


def _vector_norm(a, norm_type):
    """vector_norm of all of a, as a 0-d array; an empty a's inf-norms are 0 and inf, as PyTorch's."""
    if not a.size and abs(norm_type) == math.inf:
        return get_array_module(a).asarray(0 if norm_type > 0 else math.inf, a.dtype)
    return vector_norm(a, norm_type).reshape(())


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False):
    """The norm of the norms of `tensors` (Tensors or arrays), as if they were one vector: a 0-d
    Tensor of their promoted dtype on the first one's device."""
    arrays = [t.data if isinstance(t, Tensor) else t for t in ([tensors] if isinstance(tensors, Tensor) else tensors)]
    norm_type = float(norm_type)
    if not arrays:
        return _wrap(np.zeros((), np.float32), CPU)
    dev, xp = device_of(arrays[0]), get_array_module(arrays[0])
    dtype = np.result_type(*[a.dtype for a in arrays])
    norms = xp.stack([xp.asarray(to_device(_vector_norm(a, norm_type), dev), dtype) for a in arrays])
    total = _vector_norm(norms, norm_type).astype(dtype)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so "
                           "it cannot be clipped. To disable this error and scale the gradients by the non-finite "
                           "norm anyway, set `error_if_nonfinite=False`")
    return _wrap(total, dev)


def clip_grads_with_norm_(parameters, max_norm, total_norm):
    """Scale the gradients of `parameters` in place by min(1, max_norm / (total_norm + 1e-6))."""
    total = total_norm.data if isinstance(total_norm, Tensor) else total_norm
    xp = get_array_module(total)
    coef = xp.minimum(xp.asarray(max_norm, total.dtype) / (total + total.dtype.type(1e-6)), 1)
    for g in _grads(parameters):
        g *= to_device(coef, device_of(g)).astype(g.dtype)   # in the gradient's dtype, as PyTorch


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients of `parameters` in place so that their total norm (that of all of them as
    one vector) is at most max_norm; returns the total norm before clipping (a 0-d Tensor)."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    parameters = list(parameters)
    total = get_total_norm(_grads(parameters), norm_type, error_if_nonfinite)
    if _grads(parameters):
        clip_grads_with_norm_(parameters, max_norm, total)
    return total


def clip_grad_value_(parameters, clip_value):
    """Clamp the gradients of `parameters` in place to [-clip_value, clip_value]."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        get_array_module(g).clip(g, -clip_value, clip_value, out=g)
