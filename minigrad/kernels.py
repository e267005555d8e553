"""Fused bias + activation, y = act(z + b): the one place that picks how it runs.

- C-contiguous float32/float64 NumPy arrays: the C++ kernels in minigrad._C (one pass, threads);
- CuPy arrays: CuPy ElementwiseKernels, compiled on first use and cached;
- anything else (no extension, MINIGRAD_DISABLE_EXT=1, strided views, other dtypes): NumPy.
  Inputs are never copied to make them fit a faster path.

Activations: the ACTIVATIONS table below, the one place each activation's forward and derivative
are written (None is the identity). z has shape (..., M) and b shape (M,) or is None.

The optimizers' one-pass updates (adam_step, sgd_step, rmsprop_step, adagrad_step) run in C++ where
the extension takes their arrays. CPU matmul: MKL through the extension when the `mkl` extra is
installed, else NumPy.
"""
import math
from types import SimpleNamespace
from typing import Callable, NamedTuple

import numpy as np

from . import backend

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class Activation(NamedTuple):
    """One activation. forward(m, h, *params) is act(h); backward(m, g, s, *params) is g * act'(.)
    computed from s, the value named by `saves`: "y" (the output) or "z" (the pre-activation, to
    which the bias is added back on the fly). `m` is a math namespace (where, exp, expm1, log1p,
    tanh, erf, and let(e): e computed once, for a value used twice): NumPy's functions for the
    NumPy path, or _CExpr's, which turn the same formula into the C source of the CuPy kernels.
    The C++ kernel's cases (csrc/kernels_cpu.cpp) are vectorized forms of these formulas, tested
    against them. params: ((name, default), ...), the scalar parameters in the order forward and
    backward take them."""
    forward: Callable
    backward: Callable
    saves: str = "y"
    params: tuple = ()


_SQRT_HALF, _INV_SQRT_2PI = 1 / math.sqrt(2), 1 / math.sqrt(2 * math.pi)
_SQRT_2_OVER_PI, _KAPPA = math.sqrt(2 / math.pi), 0.044715


def _sigmoid(m, h):
    return 1 / (1 + m.exp(-h))


def _silu_backward(m, g, s):
    sig = m.let(_sigmoid(m, s))
    return g * sig * (1 + s * (1 - sig))


def _gelu_tanh_backward(m, g, s):
    s2 = m.let(s * s)
    t = m.let(m.tanh(_SQRT_2_OVER_PI * (s + _KAPPA * (s2 * s))))
    return g * (0.5 * (1 + t) + 0.5 * s * (1 - t * t) * (_SQRT_2_OVER_PI * (1 + 3 * _KAPPA * s2)))


def _softplus_backward(m, g, s, beta, threshold):
    e = m.let(m.exp(s * beta))
    return m.where(s * beta > threshold, g, g * e / (e + 1))


# PyTorch's formulas (and its choice of the branch taken at a kink); relu propagates NaN.
ACTIVATIONS = {
    None: Activation(lambda m, h: h, lambda m, g, s: g),
    "relu": Activation(lambda m, h: m.where(h < 0, 0, h), lambda m, g, s: m.where(s > 0, g, 0)),
    "sigmoid": Activation(_sigmoid, lambda m, g, s: g * (s * (1 - s))),
    "tanh": Activation(lambda m, h: m.tanh(h), lambda m, g, s: g * (1 - s * s)),
    "gelu": Activation(  # exact: h * Phi(h), PyTorch's approximate="none"
        lambda m, h: 0.5 * h * (1 + m.erf(h * _SQRT_HALF)),
        lambda m, g, s: g * (0.5 * (1 + m.erf(s * _SQRT_HALF)) + s * _INV_SQRT_2PI * m.exp(-0.5 * s * s)),
        saves="z"),
    "gelu_tanh": Activation(  # PyTorch's approximate="tanh"
        lambda m, h: 0.5 * h * (1 + m.tanh(_SQRT_2_OVER_PI * (h + _KAPPA * (h * h * h)))),
        _gelu_tanh_backward, saves="z"),
    "leaky_relu": Activation(lambda m, h, a: m.where(h > 0, h, h * a),
                             lambda m, g, s, a: m.where(s > 0, g, g * a),
                             saves="z", params=(("negative_slope", 0.01),)),
    "elu": Activation(lambda m, h, a: m.where(h > 0, h, a * m.expm1(h)),
                      lambda m, g, s, a: m.where(s > 0, g, g * a * m.exp(s)),
                      saves="z", params=(("alpha", 1.0),)),
    "silu": Activation(lambda m, h: h / (1 + m.exp(-h)), _silu_backward, saves="z"),
    "softplus": Activation(lambda m, h, beta, threshold: m.where(h * beta > threshold, h, m.log1p(m.exp(h * beta)) / beta),
                           _softplus_backward, saves="z", params=(("beta", 1.0), ("threshold", 20.0))),
}
_ALIASES = {"identity": None, "linear": None, "none": None}
_DEFAULTS = {name: tuple(d for _, d in act.params) for name, act in ACTIVATIONS.items()}


def check_activation(activation, op="bias_act"):
    """The canonical name of `activation` (None for identity); ValueError for an unknown one."""
    if activation is None or activation in ACTIVATIONS:
        return activation
    if isinstance(activation, str) and activation.lower() in _ALIASES:
        return None
    if isinstance(activation, str) and activation.lower() in ACTIVATIONS:
        return activation.lower()
    names = ", ".join(repr(a) for a in ACTIVATIONS)
    raise ValueError(f"{op}: unknown activation {activation!r}; expected one of {names}")


def activation_params(activation, *values):
    """The activation's scalar parameters as a tuple of floats: `values` in the table's order, the
    defaults for those not given."""
    spec = ACTIVATIONS[activation].params
    if len(values) > len(spec):
        raise TypeError(f"activation {activation!r} takes {len(spec)} parameter(s), found {len(values)}")
    return tuple(float(v) for v in values) + _DEFAULTS[activation][len(values):]


_cpp_names = None


def _cpp_activations():
    """The activations the C++ kernel has a case for (asked of the extension once)."""
    global _cpp_names
    _cpp_names = frozenset(backend.ext().activations()) | {None}
    return _cpp_names


def path(*arrays):
    """"C++", "CuPy" or "NumPy": the implementation bias_act_* would use for these arrays. Each
    kernel takes arrays of its own kind and one floating dtype only (C++: float32 or float64,
    C-contiguous; CuPy: float16 too, any strides); "NumPy" is the array-module path, which serves
    CuPy arrays as well."""
    first = arrays[0]
    if type(first) is not np.ndarray:
        return "NumPy" if backend.get_array_module(first) is np else _cupy_path(arrays)
    dt = first.dtype
    if dt.char not in "fd" or not dt.isnative or backend.ext() is None:  # float32, float64, native byte order
        return "NumPy"
    for a in arrays:
        if a is not None and (type(a) is not np.ndarray or (a.dtype is not dt and a.dtype != dt)
                              or not a.flags.c_contiguous):
            return "NumPy"
    return "C++"


def _cupy_path(arrays):
    kind, dt = type(arrays[0]), arrays[0].dtype
    if dt.char not in "efd":  # the dtypes the kernels compile for (benchmarks/cuda_compile_check.py)
        return "NumPy"
    for a in arrays:
        if a is not None and (type(a) is not kind or a.dtype != dt):
            return "NumPy"
    return "CuPy"


# Below this size a fresh array comes from malloc's already-mapped arena, and np.empty is cheaper
# than a trip through the extension's cache.
_CACHED_BYTES = 1 << 20


def empty(shape, dtype, like):
    """An uninitialized C-contiguous array on `like`'s device. On CPU a large one comes from the
    extension's buffer cache, so a fresh big output does not pay page faults every step."""
    if type(like) is not np.ndarray:
        return backend.get_array_module(like).empty(shape, dtype=dtype)
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize >= _CACHED_BYTES and dtype in _FLOATS:
        ext = backend.ext()
        if ext is not None:
            return ext.empty(tuple(shape), dtype)
    return np.empty(shape, dtype)


def matmul(a, b, out=None):
    """a @ b, as the array module's matmul. Float32/float64 NumPy products that one GEMM covers go to
    MKL when minigrad found it (backend.blas(): the `mkl` extra): 2-D @ 2-D with unit-stride rows
    or columns (transposed views such as w.T included, without copies), 1-D operands, and a
    C-contiguous (..., M, K) @ (K, N) folded into one (-1, K) @ (K, N) product. Batched products
    of two stacks stay on NumPy. `out` (2-D products only) must not overlap a or b.

    Small products go to MKL too: it was faster at every size measured, and two threaded BLAS
    libraries taking turns in one step both lose, each one's idle threads spinning on the cores
    the other needs (a wide training step ran twice as slow)."""
    if type(a) is np.ndarray and type(b) is np.ndarray and a.dtype == b.dtype and a.dtype in _FLOATS:
        blas = backend.blas()
        if blas is not None:
            if a.ndim == 2 and b.ndim == 2 and a.shape[1] == b.shape[0]:
                c = empty((a.shape[0], b.shape[1]), a.dtype, like=a) if out is None else out
                return c if blas.matmul(a, b, c) else np.matmul(a, b, out=c)
            if out is None and 1 <= b.ndim <= 2 and a.ndim and a.shape[-1] == b.shape[0] \
                    and (a.ndim <= 2 or a.flags.c_contiguous):
                a2 = a.reshape(a.size // a.shape[-1] if a.shape[-1] else int(np.prod(a.shape[:-1])),
                               a.shape[-1]) if a.ndim > 1 else a[None, :]  # (-1 is ambiguous for a.size == 0)
                c = matmul(a2, b if b.ndim == 2 else b[:, None])
                return c.reshape(a.shape[:-1] + b.shape[1:])
    return backend.get_array_module(a).matmul(a, b, out=out)


def _as_rows(a, m):
    """A C-contiguous (..., m) array as an (n, m) view (never a copy)."""
    return a if a.ndim == 2 else a.reshape(-1, m)


def bias_act_forward(z, b, activation, out=None, params=None):
    """y = act(z + b) for z (..., M), b (M,) or None. Writes into `out` when given (out=z works in
    place), else returns a new array of z's shape and dtype. params: the activation's scalar
    parameters (activation_params); None for its defaults."""
    if activation not in ACTIVATIONS:
        activation = check_activation(activation)
    if params is None:
        params = _DEFAULTS[activation]
    kind = path(z, b, out)
    if kind == "C++" and z.ndim and z.size and activation in (_cpp_names or _cpp_activations()):
        m = z.shape[-1]
        res = backend.ext().bias_act_forward(_as_rows(z, m), b, activation,
                                             None if out is None else _as_rows(out, m), params)
        return out if out is not None else res if res.shape == z.shape else res.reshape(z.shape)
    if kind == "CuPy":  # CuPy kernels take any shape and strides
        return _cupy_forward(z, b, activation, params, out)
    return _numpy_forward(z, b, activation, params, out)


def bias_act_backward(gy, saved, activation, b=None, need_gz=True, need_gb=True, params=None):
    """(gz, gb) for y = act(z + b) given grad_output gy (..., M).

    saved is what the activation's `saves` names: the forward output y, or z (before the bias), in
    which case the bias b is passed too (it is ignored otherwise). gz = gy * act'(.) has gy's shape
    (for identity it is gy itself), gb = gz summed over all but the last axis. Either is None when
    not asked for."""
    if activation not in ACTIVATIONS:
        activation = check_activation(activation)
    if params is None:
        params = _DEFAULTS[activation]
    if ACTIVATIONS[activation].saves != "z":
        b = None
    kind = path(gy, saved, b)
    if kind == "C++" and gy.ndim and gy.size and activation in (_cpp_names or _cpp_activations()):
        m = gy.shape[-1]
        gz, gb = backend.ext().bias_act_backward(_as_rows(gy, m), _as_rows(saved, m), activation,
                                                 b, need_gz, need_gb, params)
        if gz is not None and gz.shape != gy.shape:
            gz = gz.reshape(gy.shape)
        return gz, gb
    if kind == "CuPy":
        return _cupy_backward(gy, saved, activation, b, params, need_gz, need_gb)
    return _numpy_backward(gy, saved, activation, b, params, need_gz, need_gb)


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step_sizes, bias2_sqrts, lr, beta1, beta2,
              eps, weight_decay, decoupled):
    """One fused Adam/AdamW pass in C++ over lists with one array per parameter (max_exp_avg_sqs None
    without amsgrad; per parameter step_sizes lr / (1 - beta1**t) and bias2_sqrts sqrt(1 - beta2**t)).
    Returns False, having done nothing, when the extension does not take the arrays (none built,
    CuPy, other dtypes, strided or mismatched shapes): the caller then runs its plain update."""
    ext = backend.ext()
    return ext is not None and ext.adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step_sizes,
                                             bias2_sqrts, lr, beta1, beta2, eps, weight_decay, decoupled)


def sgd_step(params, grads, momentum_buffers, first_steps, lr, momentum, dampening, weight_decay, nesterov):
    """One fused SGD pass in C++ (see adam_step); momentum_buffers None without momentum, first_steps[i]
    whether parameter i's buffer starts as its gradient."""
    ext = backend.ext()
    return ext is not None and ext.sgd_step(params, grads, momentum_buffers, first_steps, lr, momentum,
                                            dampening, weight_decay, nesterov)


def rmsprop_step(params, grads, square_avgs, grad_avgs, momentum_buffers, lr, alpha, eps, weight_decay, momentum,
                 centered):
    """One fused RMSprop pass in C++ (see adam_step); grad_avgs None unless centered, momentum_buffers
    None unless momentum > 0."""
    ext = backend.ext()
    return ext is not None and ext.rmsprop_step(params, grads, square_avgs, grad_avgs, momentum_buffers, lr, alpha,
                                                eps, weight_decay, momentum, centered)


def adagrad_step(params, grads, sums, clrs, weight_decay, eps):
    """One fused Adagrad pass in C++ (see adam_step); clrs: each parameter's lr / (1 + (t - 1) * lr_decay)."""
    ext = backend.ext()
    return ext is not None and ext.adagrad_step(params, grads, sums, clrs, weight_decay, eps)


# ----------------------------------------------------------------------------------------------
# NumPy (and any array module with NumPy's API)

_erf_ufunc = None


def _erf(x):
    """erf on a NumPy array: SciPy's when installed, else math.erf element by element (looked up
    once: a failed import is not cached, and would search sys.path again on every call)."""
    global _erf_ufunc
    if backend.get_array_module(x) is not np:  # a CuPy array on the array-module path
        return backend.cupy_erf(x)
    if _erf_ufunc is None:
        try:
            from scipy.special import erf as _erf_ufunc
        except ImportError:
            _erf_ufunc = lambda a: np.frompyfunc(math.erf, 1, 1)(a).astype(a.dtype)  # noqa: E731
    return _erf_ufunc(x)


_NUMPY_MATH = SimpleNamespace(where=np.where, exp=np.exp, expm1=np.expm1, log1p=np.log1p, tanh=np.tanh,
                              erf=_erf, let=lambda e: e)


def _opmath(a):
    """The array to compute in: float16 is computed in float32 and rounded once at the end, as
    PyTorch does (and SciPy's erf has no float16 loop)."""
    return a.astype(np.float32) if a.dtype == np.float16 else a


def _numpy_forward(z, b, activation, params, out):
    h = z if b is None else z + b
    y = h
    if activation is not None:
        # overflow (exp) and inf * 0 happen only in the branches where() drops, or give PyTorch's inf/nan
        with np.errstate(over="ignore", invalid="ignore"):
            y = ACTIVATIONS[activation].forward(_NUMPY_MATH, _opmath(h), *params)
        # a float input keeps its dtype; an integer one stays integer where the formula keeps it
        # (relu) and is otherwise float32, PyTorch's default float dtype
        y = y.astype(h.dtype if h.dtype.kind == "f" or y.dtype.kind != "f" else np.float32, copy=False)
    if out is not None:
        out[...] = y
        return out
    return y.copy() if y is z else y


def _numpy_backward(gy, saved, activation, b, params, need_gz, need_gb):
    gz = gy
    if activation is not None:
        s = saved if b is None else saved + b
        with np.errstate(over="ignore", invalid="ignore"):
            gz = ACTIVATIONS[activation].backward(_NUMPY_MATH, _opmath(gy), _opmath(s), *params)
        gz = gz.astype(gy.dtype, copy=False)
    gb = gz.sum(axis=tuple(range(gz.ndim - 1))) if need_gb else None
    return (gz if need_gz else None), gb


# ----------------------------------------------------------------------------------------------
# CuPy: one ElementwiseKernel per (direction, activation), built on first use from the table's
# formulas. CuPy compiles each for the dtypes it meets and caches the binaries (in memory and on disk).

class _CExpr:
    """A C expression of element type T. A table formula run on these (and _C_MATH) returns the
    expression the CuPy kernel computes."""
    __slots__ = ("src",)

    def __init__(self, src):
        self.src = src

    @staticmethod
    def of(v):
        return v.src if isinstance(v, _CExpr) else f"(T){float(v)!r}"

    def _op(self, op, other, reflected=False):
        a, b = _CExpr.of(self), _CExpr.of(other)
        return _CExpr(f"({b} {op} {a})" if reflected else f"({a} {op} {b})")

    def __add__(self, o): return self._op("+", o)
    def __radd__(self, o): return self._op("+", o, True)
    def __sub__(self, o): return self._op("-", o)
    def __rsub__(self, o): return self._op("-", o, True)
    def __mul__(self, o): return self._op("*", o)
    def __rmul__(self, o): return self._op("*", o, True)
    def __truediv__(self, o): return self._op("/", o)
    def __rtruediv__(self, o): return self._op("/", o, True)
    def __lt__(self, o): return self._op("<", o)
    def __gt__(self, o): return self._op(">", o)
    def __neg__(self): return _CExpr(f"(-{self.src})")


def _c_call(name):
    return lambda x: _CExpr(f"{name}({_CExpr.of(x)})")


# Both branches of a where are cast to T: CuPy's float16 arithmetic gives float, and "T or float" is
# ambiguous to the compiler (benchmarks/cuda_compile_check.py).
def _c_where(c, a, b):
    as_t = [f"(T){v.src}" if isinstance(v, _CExpr) else _CExpr.of(v) for v in (a, b)]
    return _CExpr(f"({_CExpr.of(c)} ? {as_t[0]} : {as_t[1]})")


_C_MATH = SimpleNamespace(where=_c_where,
                          **{f: _c_call(f) for f in ("exp", "expm1", "log1p", "tanh", "erf")})


def cupy_source(direction, activation):
    """The C statements of the CuPy kernel for one activation, ending in "y = <act(h)>;" (direction
    "fwd") or "gz = <g * act'(s)>;" ("bwd"), with the scalar parameters named p0, p1, ..."""
    act = ACTIVATIONS[activation]
    ps = [_CExpr(f"p{i}") for i in range(len(act.params))]
    lets = []

    def let(e):
        lets.append(f"T t{len(lets)} = {_CExpr.of(e)};")
        return _CExpr(f"t{len(lets) - 1}")
    m = SimpleNamespace(**vars(_C_MATH), let=let)
    if direction == "fwd":
        last = f"y = {_CExpr.of(act.forward(m, _CExpr('h'), *ps))};"
    else:
        last = f"gz = {_CExpr.of(act.backward(m, _CExpr('g'), _CExpr('s'), *ps))};"
    return " ".join(lets + [last])


_cupy_kernels = {}


def _cupy_kernel(direction, activation, with_bias):
    key = (direction, activation, with_bias)
    k = _cupy_kernels.get(key)
    if k is None:
        cp = backend.cupy()
        name = f"minigrad_{direction}_{activation or 'identity'}{'_bias' if with_bias else ''}"
        params = "".join(f", T p{i}" for i in range(len(ACTIVATIONS[activation].params)))
        if direction == "fwd":
            h = "z + b" if with_bias else "z"
            k = cp.ElementwiseKernel("T z" + (", T b" if with_bias else "") + params, "T y",
                                     f"T h = {h}; {cupy_source('fwd', activation)}", name)
        else:
            s = "x + b" if with_bias else "x"
            k = cp.ElementwiseKernel("T g, T x" + (", T b" if with_bias else "") + params, "T gz",
                                     f"T s = {s}; {cupy_source('bwd', activation)}", name)
        _cupy_kernels[key] = k
    return k


def _cupy_forward(z, b, activation, params, out):
    cp = backend.cupy()
    if out is None:
        out = cp.empty(z.shape, dtype=cp.result_type(z, b) if b is not None else z.dtype)
    args = ((z,) if b is None else (z, b)) + tuple(z.dtype.type(p) for p in params)
    return _cupy_kernel("fwd", activation, b is not None)(*args, out)


def _cupy_backward(gy, saved, activation, b, params, need_gz, need_gb):
    if activation is None:
        gz = gy
    else:
        args = ((gy, saved) if b is None else (gy, saved, b)) + tuple(gy.dtype.type(p) for p in params)
        gz = _cupy_kernel("bwd", activation, b is not None)(*args)
    gb = gz.sum(axis=tuple(range(gz.ndim - 1))) if need_gb else None
    return (gz if need_gz else None), gb
