"""Devices and array modules: the one place that knows about NumPy vs CuPy.

A device is "cpu" or "cuda:N". CuPy is imported lazily, the first time a CUDA
device is asked for, so `import minigrad` never touches it on a machine
without a GPU.
"""
import warnings

import numpy as np


class Device:
    """A device such as cpu or cuda:0. Instances are interned: compare with `is` or `==`."""
    __slots__ = ("type", "index")
    _cache = {}

    def __new__(cls, type, index=None):
        key = (type, index)
        dev = cls._cache.get(key)
        if dev is None:
            dev = object.__new__(cls)
            dev.type, dev.index = type, index
            cls._cache[key] = dev
        return dev

    def __eq__(self, other):
        if isinstance(other, str):
            other = device(other)
        return self is other

    def __hash__(self):
        return hash((self.type, self.index))

    def __reduce__(self):  # pickle and deepcopy give back the interned instance
        return Device, (self.type, self.index)

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"


CPU = Device("cpu")


def device(spec):
    """Parse "cpu", "cuda", "cuda:N" (or a Device) into a Device."""
    if isinstance(spec, Device):
        return spec
    if spec is None:
        return CPU
    if not isinstance(spec, str):
        raise TypeError(f"expected a device such as 'cpu' or 'cuda:0', found {spec!r}")
    kind, _, idx = spec.partition(":")
    if kind == "cpu" and not idx:
        return CPU
    if kind == "cuda":
        if idx and not idx.isdigit():
            raise ValueError(f"expected a device such as 'cuda:0', found {spec!r}")
        return Device("cuda", int(idx) if idx else 0)
    raise ValueError(f"expected a device 'cpu', 'cuda' or 'cuda:N', found {spec!r}")


_cupy = None
_cupy_error = None


def cupy():
    """The cupy module, imported on first use, or None when CuPy or a GPU is missing."""
    global _cupy, _cupy_error
    if _cupy is None and _cupy_error is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import cupy as cp
                if cp.cuda.runtime.getDeviceCount() < 1:
                    raise RuntimeError("no CUDA device found")
            _cupy = cp
        except Exception as e:  # ImportError, CUDARuntimeError, missing driver...
            _cupy_error = f"{type(e).__name__}: {e}"
    return _cupy


def cuda_is_available():
    return cupy() is not None


def cuda_device_count():
    cp = cupy()
    return cp.cuda.runtime.getDeviceCount() if cp is not None else 0


def _require_cuda(dev):
    cp = cupy()
    if cp is None:
        raise RuntimeError(f"device {dev} requested but CUDA is not usable here ({_cupy_error})")
    n = cp.cuda.runtime.getDeviceCount()
    if dev.index >= n:
        raise RuntimeError(f"device {dev} requested but only {n} CUDA device(s) found")
    return cp


def get_array_module(a):
    """numpy for NumPy arrays (and scalars), cupy for CuPy arrays."""
    if type(a) is np.ndarray:
        return np
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy
    return np


def xp_for(dev):
    """The array module serving a Device."""
    return np if dev is CPU else _require_cuda(dev)


def device_of(a):
    """The Device holding array `a`."""
    if type(a) is np.ndarray or _cupy is None or not isinstance(a, _cupy.ndarray):
        return CPU
    return Device("cuda", a.device.id)


def to_device(a, dev):
    """Move (or keep) array `a` on Device `dev`; returns `a` itself when it is already there."""
    src = device_of(a)
    if src is dev:
        return a
    if dev is CPU:
        return a.get()
    cp = _require_cuda(dev)
    with cp.cuda.Device(dev.index):
        return cp.asarray(a)


def synchronize(dev=None):
    """Wait for queued GPU work (no-op on CPU): needed before timing GPU code."""
    dev = device(dev) if dev is not None else None
    if _cupy is not None and (dev is None or dev.type == "cuda"):
        _cupy.cuda.Device(dev.index if dev is not None else 0).synchronize()


# ----------------------------------------------------------------------------------------------
# C++ extension (minigrad._C): fused bias + activation on CPU. Used by minigrad/kernels.py.
# Imported lazily, once; MINIGRAD_DISABLE_EXT=1 (read at that first use) forces the NumPy path.

_ext = None
_ext_error = None


def ext():
    """The compiled minigrad._C module, or None when it is not built, fails to load, or is disabled."""
    global _ext, _ext_error
    if _ext is None and _ext_error is None:
        import os
        if os.environ.get("MINIGRAD_DISABLE_EXT", "0") not in ("", "0"):
            _ext_error = "disabled by MINIGRAD_DISABLE_EXT=1"
        else:
            try:
                from . import _C
                _ext = _C
            except ImportError as e:
                _ext_error = f"minigrad._C is not built: {e}"
    return _ext


# ----------------------------------------------------------------------------------------------
# MKL for CPU matmuls (the `mkl` extra): NumPy's OpenBLAS is slower at GEMM on x86. Found through
# the `mkl` package's installed files and opened by the extension, once, at the first matmul;
# MINIGRAD_DISABLE_MKL=1 (read then) keeps every matmul on NumPy.

_blas = None
_blas_error = None
_blas_version = ""


def _mkl_library():
    """Path of the `mkl` package's libmkl_rt, or None when the package is not installed."""
    from importlib import metadata
    try:
        files = metadata.files("mkl") or ()
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name.startswith("libmkl_rt.so"):
            return str(f.locate())
    return None


def blas():
    """The extension with MKL loaded for matmul (minigrad._C.matmul), or None: no extension, no
    `mkl` package, or disabled."""
    global _blas, _blas_error, _blas_version
    if _blas is None and _blas_error is None:
        import os
        if os.environ.get("MINIGRAD_DISABLE_MKL", "0") not in ("", "0"):
            _blas_error = "disabled by MINIGRAD_DISABLE_MKL=1"
        elif ext() is None:
            _blas_error = "needs minigrad._C"
        else:
            path = _mkl_library()
            if path is None:
                _blas_error = "the mkl package is not installed"
            else:
                try:
                    _blas_version = _ext.load_blas(path).split(" for ")[0] or path
                    _blas = _ext
                except RuntimeError as e:
                    _blas_error = str(e)
    return _blas


def matmul_info():
    """Which library runs CPU matmuls, e.g. "MKL (Intel(R) oneAPI Math Kernel Library Version
    2026.2...)" or "NumPy (the mkl package is not installed)"."""
    return f"MKL ({_blas_version})" if blas() is not None else f"NumPy ({_blas_error})"


def backend_info():
    """Which kernel path each device uses, e.g. {"cpu": "C++ (minigrad._C)", "cuda": "CuPy kernels"}."""
    cpu = "C++ (minigrad._C)" if ext() is not None else f"NumPy fallback ({_ext_error})"
    cuda = "CuPy kernels" if cupy() is not None else f"unavailable ({_cupy_error})"
    info = {"cpu": cpu, "cpu_matmul": matmul_info(), "cuda": cuda}
    if _ext is not None:
        info["cpu_threads"] = _ext.get_num_threads()
    return info
