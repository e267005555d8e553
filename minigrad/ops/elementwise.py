"""Elementwise ops. Inputs broadcast as in NumPy; backward() sums each gradient back to its input's shape."""
from ..autograd import Function
from ..backend import get_array_module
from .movement import broadcast


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
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad_output):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return grad_output * b if need_a else None, grad_output * a if need_b else None


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
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
        y = a ** b
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        a, b, y = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ga = grad_output * b * a ** (b - 1) if need_a else None
        if need_b:
            xp = get_array_module(a)
            log_a = xp.log(xp.where(a > 0, a, 1))  # d/db a**b = a**b log a, taken as 0 where a <= 0
            return ga, grad_output * y * log_a
        return ga, None


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
        return grad_output * (e * x ** (e - 1) if e != 2 else 2 * x)


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


class ReLU(Function):
    @staticmethod
    def forward(ctx, x):
        y = get_array_module(x).maximum(x, 0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        y, = ctx.saved_tensors
        return grad_output * (y > 0)


def stable_sigmoid(xp, x, e):
    """sigmoid(x) from e = exp(-|x|), which never overflows; the two branches agree algebraically."""
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, x):
        xp = get_array_module(x)
        y = stable_sigmoid(xp, x, xp.exp(-abs(x)))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        y, = ctx.saved_tensors
        return grad_output * y * (1 - y)


class Tanh(Function):
    @staticmethod
    def forward(ctx, x):
        y = get_array_module(x).tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        y, = ctx.saved_tensors
        return grad_output * (1 - y * y)


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


def add(a, b): return Add.apply(*broadcast(a, b))
def sub(a, b): return Sub.apply(*broadcast(a, b))
def mul(a, b): return Mul.apply(*broadcast(a, b))
def div(a, b): return Div.apply(*broadcast(a, b))
def pow(a, b): return Pow.apply(*broadcast(a, b))
def pow_scalar(x, exponent): return PowScalar.apply(x, exponent=exponent)
def neg(x): return Neg.apply(x)
def exp(x): return Exp.apply(x)
def log(x): return Log.apply(x)
def sqrt(x): return Sqrt.apply(x)
def abs_(x): return Abs.apply(x)


def clip(x, lo=None, hi=None):
    if lo is None and hi is None:
        raise RuntimeError("clip: At least one of 'min' or 'max' must not be None")
    return Clip.apply(x, lo=lo, hi=hi)


def relu(x): return ReLU.apply(x)
def sigmoid(x): return Sigmoid.apply(x)
def tanh(x): return Tanh.apply(x)


def where(cond, a, b):
    if cond.dtype.kind != "b":
        raise TypeError(f"where: condition must be a bool tensor, found {cond.dtype}")
    return Where.apply(*broadcast(cond, a, b))
