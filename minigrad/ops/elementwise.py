"""Elementwise ops. Inputs broadcast as in NumPy; backward() sums each gradient back to its input's shape."""
import numbers

import numpy as np

from .. import autograd
from ..autograd import Function
from ..backend import get_array_module
from .dtypes import DEFAULT_FLOAT, binary, floating, result_type, scalar_result
from .movement import broadcast_shape, cast


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, grad_output


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, -grad_output if ctx.needs_input_grad[1] else None


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        need_a, need_b = ctx.needs_input_grad or (False, False)
        ctx.save_for_backward(a if need_b else None, b if need_a else None)  # only what a gradient reads
        return a * b

    @staticmethod
    def backward(ctx, grad_output):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return grad_output * b if need_a else None, grad_output * a if need_b else None


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a if True in ctx.needs_input_grad[1:] else None, b)  # only what a gradient reads
        return a / b

    @staticmethod
    def backward(ctx, grad_output):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ga = grad_output / b if need_a else None
        return ga, -grad_output * a / (b * b) if need_b else None


class Pow(Function):
    @staticmethod
    def forward(ctx, a, b):
        if b.dtype.kind == "i" and (b < 0).any():  # NumPy refuses; PyTorch truncates 1 / a**|b| to an integer
            xp = get_array_module(a)
            y = xp.where(b < 0, xp.where(abs(a) == 1, a ** (b & 1), 0), a ** xp.maximum(b, 0))
        else:
            y = a ** b
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        a, b, y = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        xp = get_array_module(a)
        with _quiet():  # inf and nan are the answers at a base of 0 or below, as in PyTorch
            ga = xp.where(b == 0, 0, grad_output * b * a ** (b - 1)) if need_a else None
            gb = xp.where((a == 0) & (b >= 0), 0, grad_output * y * xp.log(a)) if need_b else None
        return ga, gb


class PowScalar(Function):
    @staticmethod
    def forward(ctx, x, exponent):
        ctx.save_for_backward(x)
        ctx.exponent = exponent
        return x ** exponent

    @staticmethod
    def backward(ctx, grad_output):
        x, = ctx.saved_tensors
        e = ctx.exponent
        if e == 0:
            return get_array_module(x).zeros_like(grad_output)
        with _quiet():
            return grad_output * (e * x ** (e - 1) if e != 2 else 2 * x)


def _quiet():
    return np.errstate(divide="ignore", invalid="ignore")  # NumPy's warnings; CuPy gives none


class Neg(Function):
    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, grad_output):
        return -grad_output


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        y = get_array_module(x).exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        y, = ctx.saved_tensors
        return grad_output * y


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).log(x)

    @staticmethod
    def backward(ctx, grad_output):
        x, = ctx.saved_tensors
        return grad_output / x


class Sqrt(Function):
    @staticmethod
    def forward(ctx, x):
        y = get_array_module(x).sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        y, = ctx.saved_tensors
        return grad_output / (2 * y)


class Abs(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return abs(x)

    @staticmethod
    def backward(ctx, grad_output):
        x, = ctx.saved_tensors
        return grad_output * get_array_module(x).sign(x)


class Clip(Function):
    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return get_array_module(x).clip(x, lo, hi)

    @staticmethod
    def backward(ctx, grad_output):
        x, = ctx.saved_tensors
        inside = True
        if ctx.lo is not None:
            inside = x >= ctx.lo
        if ctx.hi is not None:
            inside = inside & (x <= ctx.hi)
        return grad_output * inside


def stable_sigmoid(xp, x, e):
    """sigmoid(x) from e = exp(-|x|), which never overflows; the two branches agree algebraically."""
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        return get_array_module(a).where(cond, a, b)

    @staticmethod
    def backward(ctx, grad_output):
        cond, = ctx.saved_tensors
        _, need_a, need_b = ctx.needs_input_grad
        return (None, grad_output * cond if need_a else None,
                grad_output * ~cond if need_b else None)


# Binary ops take Tensors, or one Tensor and a Python scalar or array; binary() promotes as PyTorch.
def add(a, b): return Add.apply(*binary(a, b))
def mul(a, b): return Mul.apply(*binary(a, b))


def sub(a, b):
    if _is_bool(a) or _is_bool(b):
        raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported; use `^` or ~ instead")
    return Sub.apply(*binary(a, b))


def div(a, b):
    """True division: integer and bool operands divide in the default float dtype."""
    a, b = binary(a, b)
    if a.data.dtype.kind not in "fc":
        a, b = cast(a, DEFAULT_FLOAT), cast(b, DEFAULT_FLOAT)
    return Div.apply(a, b)


# Dtypes an op has no kernel for raise NotImplementedError, PyTorch's class for them (a RuntimeError
# subclass there; minigrad's tests compare error classes with PyTorch's).
def pow(a, b):
    a, b = binary(a, b)
    if a.data.dtype.kind == "b":
        raise NotImplementedError("pow: expected a numeric base tensor, found bool (PyTorch has no bool pow "
                                  "either); cast it first (x.long() or x.float())")
    return Pow.apply(a, b)


def pow_scalar(x, exponent):
    """x ** exponent for a Python number."""
    dt = result_type(x, exponent)
    if dt.kind in "biu" and exponent < 0:
        raise RuntimeError("Integers to negative integer powers are not allowed.")
    return PowScalar.apply(cast(x, dt), exponent=exponent)


def compare(a, b, name):
    """a (a Tensor) against b, as a bool tensor outside the tape: name is a NumPy comparison (equal,
    less, ...). A scalar b that does not change a's dtype goes to NumPy as it is, which compares in
    a's dtype."""
    if type(b) in (float, int, bool) and scalar_result(a, b) == a.data.dtype:
        y = b
    else:
        a, b = binary(a, b)
        y = b.data
    return autograd._wrap(getattr(get_array_module(a.data), name)(a.data, y), a.device)


def bitwise(a, b, name):
    """bitwise_and / bitwise_or / bitwise_xor of integer or bool tensors (logical on bool), outside the tape."""
    a, b = binary(a, b)
    if a.data.dtype.kind not in "biu":
        raise NotImplementedError(f"{name}: expected integer or bool tensors, found {a.data.dtype}")
    return autograd._wrap(getattr(get_array_module(a.data), name)(a.data, b.data), a.device)


def invert(x):
    if x.data.dtype.kind not in "biu":
        raise TypeError(f"~ (operator.invert) is only implemented on integer and bool tensors, found {x.data.dtype}")
    return autograd._wrap(~x.data, x.device)


def _is_bool(x):
    return isinstance(x, bool) or getattr(getattr(x, "dtype", None), "kind", None) == "b"


def neg(x):
    if x.data.dtype.kind == "b":
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported; use ~ instead")
    return Neg.apply(x)


def exp(x): return Exp.apply(floating(x))
def log(x): return Log.apply(floating(x))
def sqrt(x): return Sqrt.apply(floating(x))


def abs_(x):
    if x.data.dtype.kind == "b":
        raise NotImplementedError("abs: expected a numeric tensor, found bool (PyTorch has no bool abs either)")
    return Abs.apply(x)


def clip(x, lo=None, hi=None):
    """x limited to [lo, hi] (either may be None), in the dtype x promotes to with scalar bounds."""
    if lo is None and hi is None:
        raise RuntimeError("clip: At least one of 'min' or 'max' must not be None")
    dt = result_type(x, *(b for b in (lo, hi) if isinstance(b, numbers.Number)))
    return Clip.apply(cast(x, dt), lo=lo, hi=hi)


def where(cond, a, b):
    if cond.dtype.kind != "b":
        raise RuntimeError(f"where: expected condition to be a bool tensor, found {cond.dtype}")
    a, b = binary(a, b)
    if cond.shape != a.shape or cond.shape != b.shape:
        broadcast_shape(cond.shape, a.shape, b.shape)
    return Where.apply(cond, a, b)
