"""PyTorch's type promotion, one rule for every binary op (arithmetic, comparisons, where, bitwise).

Categories rank bool < integer < floating < complex. The result takes the highest category among the
operands, and within it a dimensioned tensor's dtype beats a 0-d tensor's, which beats a Python
scalar's (an int counts as int64, a float as float32, the default float dtype): 0.5 * int32 is
float32, 2.5 * float16 stays float16, int64 + float16 is float16, float16 + float32 is float32."""
import numbers

import numpy as np

from .. import autograd
from ..backend import get_array_module
from .movement import broadcast_shape, cast

DEFAULT_FLOAT = np.dtype(np.float32)
_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}
_SCALAR = (np.dtype(bool), np.dtype(np.int64), DEFAULT_FLOAT, np.dtype(np.complex64))  # by category


def promote_types(a, b):
    """torch.promote_types: the higher category's dtype; within one category NumPy's, which agrees."""
    ca, cb = _CATEGORY[a.kind], _CATEGORY[b.kind]
    return a if ca > cb else b if cb > ca else np.promote_types(a, b)


def _combine(higher, lower):
    """The result of a higher-priority group of operands (dimensioned over 0-d over scalars) with a
    lower one: the lower one counts only where its category is higher."""
    if lower is None:
        return higher
    if higher is None or _CATEGORY[lower.kind] > _CATEGORY[higher.kind]:
        return lower if higher is None else promote_types(higher, lower)
    return higher


def _scalar_dtype(x):
    return _SCALAR[0 if isinstance(x, (bool, np.bool_)) else 1 if isinstance(x, numbers.Integral)
                   else 2 if isinstance(x, numbers.Real) else 3]


_cache, _scalar_cache = {}, {}  # result dtypes by operand kinds: a handful of keys, filled once


def _result(key):
    """result_type for a key of (dtype, priority) pairs; priority 0 dimensioned, 1 0-d, 2 scalar."""
    out = _cache.get(key)
    if out is None:
        groups = [None, None, None]
        for dt, p in key:
            groups[p] = dt if groups[p] is None else promote_types(groups[p], dt)
        out = _cache[key] = _combine(groups[0], _combine(groups[1], groups[2]))
    return out


def _key(x):
    if isinstance(x, autograd.Tensor):
        return x.data.dtype, 0 if x.data.ndim else 1
    return _scalar_dtype(x), 2


def result_type(*operands):
    """torch.result_type of Tensors and Python scalars."""
    return _result(tuple(_key(x) for x in operands))


def scalar_result(t, x):
    """result_type(t, x) for a Tensor t and a Python scalar x (cached by t's dtype and x's type)."""
    data = t.data
    key = data.dtype, data.ndim == 0, type(x)
    dt = _scalar_cache.get(key)
    if dt is None:
        dt = _scalar_cache[key] = _result((_key(t), (_scalar_dtype(x), 2)))
    return dt


def as_operand(x, like):
    """A non-Tensor operand as a Tensor on like's device: a Python scalar as a 0-d array of its
    result dtype with like (which keeps the scalar from widening like), other data as torch.tensor."""
    if isinstance(x, autograd.Tensor):
        return x
    if isinstance(x, numbers.Number):
        return autograd._wrap(get_array_module(like.data).asarray(x, dtype=scalar_result(like, x)), like.device)
    return autograd.Tensor(x, device=like.device)


def floating(x):
    """x for a floating-point op (exp, log, ...): integer and bool tensors as the default float dtype."""
    return x if x.data.dtype.kind in "fc" else cast(x, DEFAULT_FLOAT)


def promote(a, b):
    """a and b (Tensors, or one of them a scalar or array) as Tensors of their result dtype."""
    if not isinstance(a, autograd.Tensor):
        a = as_operand(a, b)
    elif not isinstance(b, autograd.Tensor):
        b = as_operand(b, a)
    da, db = a.data.dtype, b.data.dtype
    if da is not db and da != db:
        dt = _result(((da, 0 if a.data.ndim else 1), (db, 0 if b.data.ndim else 1)))
        a, b = cast(a, dt), cast(b, dt)
    if a.device is not b.device:
        raise RuntimeError(f"expected all tensors on one device, found {a.device} and {b.device}")
    return a, b


def binary(a, b):
    """promote(a, b), checked to broadcast together."""
    a, b = promote(a, b)
    if a.data.shape != b.data.shape:
        broadcast_shape(a.data.shape, b.data.shape)
    return a, b
