"""A strict NumPy-backed stand-in for CuPy (tests only; see ../README.md).

An `ndarray` holds a NumPy array and the id of its (fake) device. Every function and operator
unwraps its operands, refusing host `numpy.ndarray`s and arrays on another device than the current
one as CuPy does, runs NumPy, and wraps the result on the current device."""
import builtins as _b
import operator

import numpy as _np

from . import cuda
from ._kernel import ElementwiseKernel  # noqa: F401

__version__ = "14.2.0+testdouble"
IS_TEST_DOUBLE = True

_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
             "Please use `.get()` to construct a NumPy array explicitly.")
_SCALARS = (bool, int, float, complex, _np.generic)


def _check_device(a):
    cur = cuda._current()
    if a._dev != cur:
        raise ValueError(f"The device where the array resides ({a._dev}) is different from the current "
                         f"device ({cur}). Peer access is unavailable between these devices.")


def _unwrap(x):
    """x as an operand: a checked ndarray's NumPy array; TypeError for a host NumPy array."""
    if type(x) is ndarray:
        _check_device(x)
        return x._a
    if isinstance(x, _np.ndarray):
        raise TypeError(f"Unsupported type {type(x)}")
    if isinstance(x, (list, tuple)) and _b.any(type(e) is ndarray or isinstance(e, (_np.ndarray, list, tuple))
                                            for e in x):
        return type(x)(_unwrap(e) for e in x)
    return x


def _index(idx):
    """An index: host lists and NumPy arrays in it are transferred (CuPy takes them), ndarrays checked."""
    if isinstance(idx, tuple):
        return tuple(_index(i) for i in idx)
    if isinstance(idx, (list, _np.ndarray)):
        return _np.asarray(idx)
    return _unwrap(idx)


def _check_axis(a, args, kwargs):
    """CuPy takes no axis of a 0-d array (NumPy quietly accepts axis 0 and -1)."""
    axis = kwargs.get("axis", args[0] if args else None)
    if a.ndim == 0 and axis is not None and axis != ():
        raise _np.exceptions.AxisError(f"axis {axis} is out of bounds for array of dimension 0")


def _roots(args):
    for x in args:
        if type(x) is ndarray:
            yield x
        elif isinstance(x, (list, tuple)):
            yield from _roots(x)


def _wrap(r, args=()):
    """A NumPy result as an ndarray on the current device (0-d for scalars, as CuPy's reductions);
    an input's own wrapper when NumPy returned its array (out=), a view's root as its base."""
    if isinstance(r, tuple):
        return tuple(_wrap(e, args) for e in r)
    if isinstance(r, list):
        return [_wrap(e, args) for e in r]
    if isinstance(r, _np.generic):
        return ndarray._new(_np.asarray(r))
    if not isinstance(r, _np.ndarray):
        return r
    base = None
    for x in _roots(args):
        if r is x._a:
            return x
        if r.base is not None and base is None and _np.may_share_memory(r, x._a):
            base = x.base if x.base is not None else x
    return ndarray._new(r, base=base)


def _call(fn, args, kwargs, operands=None):
    """fn on NumPy arrays. Operands (positions in `operands`, all when None, and out=) must be
    ndarrays on the current device or scalars; other arguments (indices, split points) may be host data."""
    args = [_unwrap(a) if operands is None or i in operands or type(a) is ndarray else a
            for i, a in enumerate(args)]
    kw = {k: _unwrap(v) if k in ("out", "x", "a") or type(v) is ndarray else v for k, v in kwargs.items()}
    return _wrap(fn(*args, **kw), list(args) + list(kwargs.values()))


class _Flags:
    def __init__(self, a):
        self.c_contiguous, self.f_contiguous = a.flags.c_contiguous, a.flags.f_contiguous
        self.owndata = a.flags.owndata

    def __getitem__(self, key):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous,
                "OWNDATA": self.owndata}[key]


class MemoryPointer:
    def __init__(self, arr):
        self.ptr = arr._a.__array_interface__["data"][0]
        self.device_id = arr._dev
        self.device = cuda.Device(arr._dev)

    def __int__(self):
        return self.ptr


class ndarray:
    """cupy.ndarray of the double: not a numpy.ndarray; refuses implicit conversion to one."""
    __slots__ = ("_a", "_dev", "_base", "__weakref__")  # CuPy arrays take weak references
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        self._a, self._dev, self._base = _np.empty(shape, dtype, order=order), cuda._current(), None

    @classmethod
    def _new(cls, a, base=None, dev=None):
        self = object.__new__(cls)
        self._a, self._dev, self._base = a, cuda._current() if dev is None else dev, base
        return self

    # --- what CuPy refuses -----------------------------------------------------------------
    def __array__(self, *args, **kwargs):
        raise TypeError(_IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        mine = globals().get(ufunc.__name__)
        if not isinstance(mine, _Ufunc):
            return NotImplemented
        return getattr(mine, method)(*inputs, **kwargs) if method != "__call__" else mine(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        mine = globals().get(func.__name__)
        if mine is None or not callable(mine):
            return NotImplemented
        return mine(*args, **kwargs)

    # --- metadata ----------------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: _Flags(self._a))
    base = property(lambda self: self._base)
    data = property(lambda self: MemoryPointer(self))
    device = property(lambda self: cuda.Device(self._dev))

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "version": 3,
                "data": (self.data.ptr, False), "strides": None if self._a.flags.c_contiguous else self.strides}

    def __len__(self):
        if not self._a.shape:
            raise TypeError("len() of unsized object")
        return self._a.shape[0]

    def __iter__(self):
        if not self._a.shape:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    def __repr__(self):
        return repr(self._a)

    def __str__(self):
        return str(self._a)

    # --- to the host (explicitly) --------------------------------------------------------------
    def get(self, stream=None, order="C", out=None):
        a = _np.array(self._a, order=order)
        if out is not None:
            if not isinstance(out, _np.ndarray):
                raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
            out[...] = a
            return out
        return a

    def item(self):
        return self._a.item()

    def tolist(self):
        return self._a.tolist()

    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __complex__(self):
        return complex(self._a)

    def __index__(self):
        return operator.index(self._a)

    # --- views (no kernel: allowed from any device) -----------------------------------------------
    def _view(self, a):
        return ndarray._new(a, self._base if self._base is not None else self, self._dev)

    def reshape(self, *shape, order="C"):
        r = self._a.reshape(*shape, order=order)
        if not _np.may_share_memory(r, self._a):
            _check_device(self)
            return ndarray._new(r)
        return self._view(r)

    def view(self, dtype=None):
        return self._view(self._a.view() if dtype is None else self._a.view(dtype))

    def transpose(self, *axes):
        return self._view(self._a.transpose(*axes))

    def swapaxes(self, a, b):
        return self._view(self._a.swapaxes(a, b))

    def squeeze(self, axis=None):
        return self._view(self._a.squeeze(axis))

    T = property(lambda self: self._view(self._a.T))

    def __getitem__(self, idx):
        if isinstance(idx, tuple):
            basic = _b.all(isinstance(i, (int, slice, type(None), type(Ellipsis))) for i in idx)
        else:
            basic = isinstance(idx, (int, slice, type(None), type(Ellipsis)))
        if basic:
            return self._view(self._a[idx])
        _check_device(self)
        return ndarray._new(self._a[_index(idx)])

    # --- kernels (operands on the current device) ----------------------------------------------
    def __setitem__(self, idx, value):
        _check_device(self)
        # a host value is transferred (CuPy's setitem takes it through cupy.array)
        self._a[_index(idx)] = value if isinstance(value, _np.ndarray) else _unwrap(value)

    def copy(self, order="C"):
        # CuPy copies onto the current device, from any device
        return ndarray._new(self._a.copy(order=order))

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        _check_device(self)
        r = self._a.astype(dtype, order=order, copy=copy)
        return self if r is self._a else ndarray._new(r)

    def fill(self, value):
        _check_device(self)
        self._a.fill(_unwrap(value))

    def ravel(self, order="C"):
        return self.reshape(-1, order=order)

    def flatten(self, order="C"):
        _check_device(self)
        return ndarray._new(self._a.flatten(order))

    def _method(name):  # noqa: N805
        def method(self, *args, **kwargs):
            _check_device(self)
            if name in _REDUCTIONS:
                _check_axis(self, args[:1], kwargs)
            return _call(getattr(self._a, name), args, kwargs)
        method.__name__ = name
        return method

    for _name in ("sum", "mean", "max", "min", "argmax", "argmin", "prod", "var", "std", "any", "all",
                  "cumsum", "clip", "round", "dot", "nonzero", "conj", "take", "repeat", "sort", "argsort"):
        locals()[_name] = _method(_name)
    del _name, _method

    def _binary(fn, reflected=False, inplace=False):  # noqa: N805
        def op(self, other):
            if inplace:
                fn(self, other, out=self)
                return self
            return fn(other, self) if reflected else fn(self, other)
        return op

    def _unary(fn):  # noqa: N805
        return lambda self: fn(self)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)


def _install_operators():
    binary = {"add": "add", "sub": "subtract", "mul": "multiply", "truediv": "true_divide",
              "floordiv": "floor_divide", "mod": "remainder", "pow": "power", "and": "bitwise_and",
              "or": "bitwise_or", "xor": "bitwise_xor", "lshift": "left_shift", "rshift": "right_shift"}
    for name, uf in binary.items():
        f = globals()[uf]
        setattr(ndarray, f"__{name}__", ndarray._binary(f))
        setattr(ndarray, f"__r{name}__", ndarray._binary(f, reflected=True))
        setattr(ndarray, f"__i{name}__", ndarray._binary(f, inplace=True))
    for name, uf in {"eq": "equal", "ne": "not_equal", "lt": "less", "le": "less_equal",
                     "gt": "greater", "ge": "greater_equal"}.items():
        setattr(ndarray, f"__{name}__", ndarray._binary(globals()[uf]))
    for name, uf in {"neg": "negative", "pos": "positive", "abs": "absolute", "invert": "invert"}.items():
        setattr(ndarray, f"__{name}__", ndarray._unary(globals()[uf]))


class _Ufunc:
    """A CuPy ufunc: NumPy's, on checked operands."""

    def __init__(self, uf):
        self._uf, self.__name__ = uf, uf.__name__
        self.nin, self.nout = uf.nin, uf.nout

    def __call__(self, *args, **kwargs):
        for a in args[:self.nin]:
            if type(a) is not ndarray and not isinstance(a, _SCALARS):
                raise TypeError(f"Unsupported type {type(a)}")
        return _call(self._uf, args, kwargs)

    def reduce(self, *args, **kwargs):
        return _call(self._uf.reduce, args, kwargs)

    def accumulate(self, *args, **kwargs):
        return _call(self._uf.accumulate, args, kwargs)

    def outer(self, *args, **kwargs):
        return _call(self._uf.outer, args, kwargs)

    def at(self, a, indices, b=None):
        _check_device(a)
        self._uf.at(a._a, _unwrap(indices), *(() if b is None else (_unwrap(b),)))


for _n in dir(_np):
    if isinstance(getattr(_np, _n), _np.ufunc):
        globals()[_n] = _Ufunc(getattr(_np, _n))
del _n
_install_operators()

# dtypes and constants, as CuPy re-exports them
from numpy import (bool_, dtype, e, float16, float32, float64, complex64, complex128, inf, int8,  # noqa: E402,F401
                   int16, int32, int64, nan, newaxis, pi, uint8, uint16, uint32, uint64, finfo, iinfo,
                   result_type as _np_result_type, can_cast, promote_types)


def result_type(*args):
    return _np_result_type(*[a.dtype if type(a) is ndarray else a for a in args])


_REDUCTIONS = {"sum", "mean", "prod", "amax", "amin", "max", "min", "argmax", "argmin", "any", "all", "var",
               "std", "cumsum", "count_nonzero"}


def _on_device(fn, operands=(0,)):
    """NumPy's function on checked operands (positions), its result on the current device."""
    def make(*args, **kwargs):
        if fn.__name__ in _REDUCTIONS and args and type(args[0]) is ndarray:
            _check_axis(args[0], args[1:2], kwargs)
        return _call(fn, args, kwargs, operands)
    make.__name__ = fn.__name__
    return make


for _n in ("zeros", "ones", "empty", "full", "arange", "eye", "identity", "linspace", "tri"):
    globals()[_n] = _on_device(getattr(_np, _n), ())
for _n in ("where", "clip", "matmul", "dot", "tensordot", "outer", "allclose", "isclose", "array_equal",
           "copyto", "take_along_axis", "put_along_axis", "einsum"):
    globals()[_n] = _on_device(getattr(_np, _n), None)
for _n in ("zeros_like", "ones_like", "empty_like", "full_like", "concatenate", "stack",
           "split", "moveaxis", "broadcast_to", "sum", "mean", "prod", "amax", "amin",
           "argmax", "argmin", "transpose", "reshape", "expand_dims", "squeeze",
           "swapaxes", "cumsum", "diff", "tril", "triu",
           "any", "all", "nonzero", "take", "repeat", "tile",
           "flip", "sort", "argsort", "unique", "count_nonzero", "var", "std", "ravel", "pad",
           "atleast_1d", "atleast_2d", "broadcast_arrays", "vstack", "hstack", "round", "around",
           "max", "min", "diag", "trace"):
    globals()[_n] = _on_device(getattr(_np, _n))
del _n


def array(obj, dtype=None, copy=True, order="K", ndmin=0):
    """From host data (NumPy arrays included: an explicit transfer) or an ndarray on any device."""
    if type(obj) is ndarray:
        return ndarray._new(_np.array(obj._a, dtype=dtype, copy=True, order=order, ndmin=ndmin))
    if isinstance(obj, (list, tuple)) and _b.any(type(e) is ndarray for e in obj):
        obj = [e.get() if type(e) is ndarray else e for e in obj]
    return ndarray._new(_np.array(obj, dtype=dtype, copy=True, order=order, ndmin=ndmin))


def asarray(a, dtype=None, order=None):
    """`a` itself when it is an ndarray on the current device of that dtype; else a copy here."""
    if type(a) is ndarray:
        if a._dev == cuda._current() and (dtype is None or _np.dtype(dtype) == a.dtype):
            return a
        if a._dev != cuda._current():
            a = a.copy()
        return a.astype(dtype) if dtype is not None else a
    return array(a, dtype=dtype, order=order or "K")


def ascontiguousarray(a, dtype=None):
    if type(a) is not ndarray:
        raise TypeError(f"Unsupported type {type(a)}")
    _check_device(a)
    r = _np.ascontiguousarray(a._a, dtype=dtype)
    return a if r is a._a else ndarray._new(r)


def asnumpy(a, stream=None, order="C", out=None):
    if type(a) is ndarray:
        return a.get(order=order, out=out)
    return _np.asarray(a, order=order)


def get_array_module(*args):
    return __import__(__name__) if _b.any(type(a) is ndarray for a in args) else _np


def isscalar(x):
    return _np.isscalar(x)


class random:  # noqa: N801  (cupy.random, the few functions a test might call)
    _rng = _np.random.default_rng(0)

    @staticmethod
    def seed(seed=None):
        random._rng = _np.random.default_rng(seed)

    @staticmethod
    def standard_normal(size=None, dtype=float):
        return ndarray._new(random._rng.standard_normal(size).astype(dtype))

    @staticmethod
    def random(size=None, dtype=float):
        return ndarray._new(random._rng.random(size).astype(dtype))

    randn = staticmethod(lambda *shape: random.standard_normal(shape))
    rand = staticmethod(lambda *shape: random.random(shape))

