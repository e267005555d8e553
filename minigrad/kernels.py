"""Fused bias + activation, y = act(z + b): the one place that picks how it runs.

- C-contiguous float32/float64 NumPy arrays: the C++ kernels in minigrad._C (one pass, threads);
- CuPy arrays: CuPy ElementwiseKernels, compiled on first use and cached;
- anything else (no extension, MINIGRAD_DISABLE_EXT=1, strided views, other dtypes): NumPy.
  Inputs are never copied to make them fit a faster path.

Activations: None (identity), "relu", "sigmoid", "tanh", "gelu" (exact erf form, as PyTorch's default).
z has shape (..., M) and b shape (M,) or is None.

The same choice for the optimizers' one-pass updates (adam_step, sgd_step), and for CPU matmul
(matmul: MKL through the extension when the `mkl` extra is installed, else NumPy).
"""
import math

import numpy as np

from . import backend

ACTIVATIONS = (None, "relu", "sigmoid", "tanh", "gelu")
_ALIASES = {"identity": None, "linear": None, "none": None}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def check_activation(activation, op="bias_act"):
    """The canonical name of `activation` (None for identity); ValueError for an unknown one."""
    if activation is None or activation in ACTIVATIONS:
        return activation
    if isinstance(activation, str) and activation.lower() in _ALIASES:
        return None
    if isinstance(activation, str) and activation.lower() in ACTIVATIONS:
        return activation.lower()
    raise ValueError(f"{op}: unknown activation {activation!r}; expected one of {ACTIVATIONS}")


def path(*arrays):
    """"C++", "CuPy" or "NumPy": the implementation bias_act_* would use for these arrays."""
    first = arrays[0]
    if type(first) is not np.ndarray:
        return "NumPy" if backend.get_array_module(first) is np else "CuPy"
    dt = first.dtype
    if dt.char not in "fd" or backend.ext() is None:  # float32, float64
        return "NumPy"
    for a in arrays:
        if a is not None and (type(a) is not np.ndarray or (a.dtype is not dt and a.dtype != dt)
                              or not a.flags.c_contiguous):
            return "NumPy"
    return "C++"


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
                a2 = a.reshape(-1, a.shape[-1]) if a.ndim > 1 else a[None, :]
                c = matmul(a2, b if b.ndim == 2 else b[:, None])
                return c.reshape(a.shape[:-1] + b.shape[1:])
    return backend.get_array_module(a).matmul(a, b, out=out)


def _as_rows(a, m):
    """A C-contiguous (..., m) array as an (n, m) view (never a copy)."""
    return a if a.ndim == 2 else a.reshape(-1, m)


def bias_act_forward(z, b, activation, out=None):
    """y = act(z + b) for z (..., M), b (M,) or None. Writes into `out` when given (out=z works in
    place), else returns a new array of z's shape and dtype."""
    activation = check_activation(activation)
    kind = path(z, b, out)
    if kind == "C++" and z.ndim and z.size:
        m = z.shape[-1]
        res = backend.ext().bias_act_forward(_as_rows(z, m), b, activation,
                                             None if out is None else _as_rows(out, m))
        return out if out is not None else res if res.shape == z.shape else res.reshape(z.shape)
    if kind == "CuPy":  # CuPy kernels take any shape and strides
        return _cupy_forward(z, b, activation, out)
    return _numpy_forward(z, b, activation, out)


def bias_act_backward(gy, saved, activation, b=None, need_gz=True, need_gb=True):
    """(gz, gb) for y = act(z + b) given grad_output gy (..., M).

    saved is the forward output y for identity, relu, sigmoid and tanh, and z (before the bias) for
    gelu, whose bias b is then passed too. gz = gy * act'(.) has gy's shape (for identity it is gy
    itself), gb = gz summed over all but the last axis. Either is None when not asked for."""
    activation = check_activation(activation)
    gelu_b = b if activation == "gelu" else None
    kind = path(gy, saved, gelu_b)
    if kind == "C++" and gy.ndim and gy.size:
        m = gy.shape[-1]
        gz, gb = backend.ext().bias_act_backward(_as_rows(gy, m), _as_rows(saved, m), activation,
                                                 gelu_b, need_gz, need_gb)
        if gz is not None and gz.shape != gy.shape:
            gz = gz.reshape(gy.shape)
        return gz, gb
    if kind == "CuPy":
        return _cupy_backward(gy, saved, activation, gelu_b, need_gz, need_gb)
    return _numpy_backward(gy, saved, activation, gelu_b, need_gz, need_gb)


def _pieces(g):
    """A gradient given as a flat buffer or as a list of arrays, as a sequence of arrays."""
    return g if isinstance(g, list) else (g,)


def adam_step(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, **hyper):
    """One fused Adam/AdamW pass over flat buffers in C++ when the extension takes them. g is a flat
    buffer or a list of arrays (the parameters' gradients) that together cover p in order.
    Returns False, having done nothing, when the caller must run its array-module version."""
    if path(p, *_pieces(g), exp_avg, exp_avg_sq, max_exp_avg_sq) != "C++":
        return False
    backend.ext().adam_step(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, **hyper)
    return True


def sgd_step(p, g, momentum_buffer, **hyper):
    """One fused SGD pass over flat buffers in C++ (see adam_step)."""
    if path(p, *_pieces(g), momentum_buffer) != "C++":
        return False
    backend.ext().sgd_step(p, g, momentum_buffer, **hyper)
    return True


# ----------------------------------------------------------------------------------------------
# NumPy (and any array module with NumPy's API)

_erf_ufunc = None


def _erf(x):
    """erf on a NumPy array: SciPy's when installed, else math.erf element by element (looked up
    once: a failed import is not cached, and would search sys.path again on every call)."""
    global _erf_ufunc
    if _erf_ufunc is None:
        try:
            from scipy.special import erf as _erf_ufunc
        except ImportError:
            _erf_ufunc = lambda a: np.frompyfunc(math.erf, 1, 1)(a).astype(a.dtype)  # noqa: E731
    return _erf_ufunc(x)


def _numpy_forward(z, b, activation, out):
    xp = backend.get_array_module(z)
    h = z if b is None else z + b
    if activation is None:
        y = h
    elif activation == "relu":
        y = xp.maximum(h, 0)
    elif activation == "sigmoid":
        with np.errstate(over="ignore"):  # exp(-h) = inf for h << 0 gives 1 / inf = 0, correctly
            y = 1 / (1 + xp.exp(-h))
    elif activation == "tanh":
        y = xp.tanh(h)
    else:
        y = 0.5 * h * (1 + _erf(h * (1 / math.sqrt(2))))
    if out is not None:
        out[...] = y
        return out
    return y.copy() if y is z else y


def _numpy_backward(gy, saved, activation, b, need_gz, need_gb):
    xp = backend.get_array_module(gy)
    if activation is None:
        gz = gy
    elif activation == "relu":
        gz = xp.where(saved > 0, gy, 0)
    elif activation == "sigmoid":
        gz = gy * (saved * (1 - saved))
    elif activation == "tanh":
        gz = gy * (1 - saved * saved)
    else:
        h = saved if b is None else saved + b
        cdf = 0.5 * (1 + _erf(h * (1 / math.sqrt(2))))
        pdf = xp.exp(-0.5 * h * h) * (1 / math.sqrt(2 * math.pi))
        gz = gy * (cdf + h * pdf)
    gb = gz.sum(axis=tuple(range(gz.ndim - 1))) if need_gb else None
    return (gz if need_gz else None), gb


# ----------------------------------------------------------------------------------------------
# CuPy: one ElementwiseKernel per (direction, activation), built on first use. CuPy compiles
# each for the dtypes it meets and caches the binaries (in memory and on disk).

_ACT_FWD = {
    None: "h",
    "relu": "h < (T)0 ? (T)0 : h",
    "sigmoid": "(T)1 / ((T)1 + exp(-h))",
    "tanh": "tanh(h)",
    "gelu": "(T)0.5 * h * ((T)1 + erf(h * (T)0.70710678118654752440))",
}
_ACT_BWD = {
    None: "g",
    "relu": "s > (T)0 ? g : (T)0",
    "sigmoid": "g * (s * ((T)1 - s))",
    "tanh": "g * ((T)1 - s * s)",
    "gelu": "g * ((T)0.5 * ((T)1 + erf(s * (T)0.70710678118654752440))"
            " + s * (T)0.39894228040143267794 * exp((T)-0.5 * s * s))",
}
_cupy_kernels = {}


def _cupy_kernel(direction, activation, with_bias):
    key = (direction, activation, with_bias)
    k = _cupy_kernels.get(key)
    if k is None:
        cp = backend.cupy()
        name = f"minigrad_{direction}_{activation or 'identity'}{'_bias' if with_bias else ''}"
        if direction == "fwd":
            h = "z + b" if with_bias else "z"
            k = cp.ElementwiseKernel("T z" + (", T b" if with_bias else ""), "T y",
                                     f"T h = {h}; y = {_ACT_FWD[activation]};", name)
        else:
            s = "x + b" if with_bias else "x"
            k = cp.ElementwiseKernel("T g, T x" + (", T b" if with_bias else ""), "T gz",
                                     f"T s = {s}; gz = {_ACT_BWD[activation]};", name)
        _cupy_kernels[key] = k
    return k


def _cupy_forward(z, b, activation, out):
    cp = backend.cupy()
    if out is None:
        out = cp.empty(z.shape, dtype=cp.result_type(z, b) if b is not None else z.dtype)
    args = (z,) if b is None else (z, b)
    return _cupy_kernel("fwd", activation, b is not None)(*args, out)


def _cupy_backward(gy, saved, activation, b, need_gz, need_gb):
    if activation is None:
        gz = gy
    else:
        args = (gy, saved) if b is None else (gy, saved, b)
        gz = _cupy_kernel("bwd", activation, b is not None)(*args)
    gb = gz.sum(axis=tuple(range(gz.ndim - 1))) if need_gb else None
    return (gz if need_gz else None), gb
