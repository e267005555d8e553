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
    _use(dev.index)
    return cp


def _use(index):
    """Make GPU `index` current. CuPy allocates and launches kernels on the current device, so
    minigrad makes a device current whenever it allocates for it (xp_for, to_device) or hands out
    an array's module (get_array_module, which every op, kernel and optimizer step asks): work on
    cuda:N runs on GPU N, whichever GPU was current before."""
    rt = _cupy.cuda.runtime
    if rt.getDevice() != index:
        rt.setDevice(index)


def use_device(dev):
    """Make Device `dev` current when it is a GPU (see _use); the op dispatch calls it."""
    if dev.type == "cuda":
        _use(dev.index)


def get_array_module(a):
    """numpy for NumPy arrays (and scalars), cupy for CuPy arrays."""
    if type(a) is np.ndarray:
        return np
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        _use(a.data.device_id)
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
    return _require_cuda(dev).asarray(a)  # a copy made on dev, also from another GPU


def cupy_erf(a):
    """erf of a CuPy array (cupyx.scipy.special.erf)."""
    from cupyx.scipy.special import erf
    return erf(a)


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
                if _num_threads is not None:
                    _C.set_num_threads(_num_threads)
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
                    if _num_threads is not None:
                        _limit_blas_threads(_num_threads)       # MKL starts with one per core
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


# ----------------------------------------------------------------------------------------------
# CPU threads: the BLAS libraries' pools (NumPy's OpenBLAS, MKL once loaded) and minigrad._C's
# kernels. By default each library starts one thread per core; several ranks on one node would
# then run cores x ranks threads that fight over the cores, so init_process_group gives each rank
# its share (share_threads). A count the user set wins over that share.

_USER_THREAD_VARS = ("MINIGRAD_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_num_threads = None         # the count set for both pools, or None: the libraries' own defaults
_threads_source = "default: one per core"


def _env_threads():
    """(count, variable) of the first thread-count variable the user set, or (None, None)."""
    import os
    for var in _USER_THREAD_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return value, var
    return None, None


def _limit_blas_threads(n):
    from threadpoolctl import threadpool_limits
    threadpool_limits(n, user_api="blas")


def _apply_threads(n, source):
    global _num_threads, _threads_source
    _num_threads, _threads_source = n, source
    _limit_blas_threads(n)
    if ext() is not None:
        _ext.set_num_threads(n)


def set_num_threads(n):
    """Use n threads for CPU work: the BLAS libraries' matmuls (OpenBLAS, MKL) and minigrad._C's
    kernels (as torch.set_num_threads). Overrides the per-rank share under mpiexec."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads expects an int, found {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads expects a positive number of threads, found {n}")
    _apply_threads(n, "mg.set_num_threads")


def get_num_threads():
    """The number of threads CPU kernels use (the count set_num_threads sets)."""
    if _num_threads is not None:
        return _num_threads
    if ext() is not None:
        return _ext.get_num_threads()
    from threadpoolctl import threadpool_info
    return max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), default=1)


def share_threads(cores, ranks):
    """Under mpiexec (init_process_group): each of ``ranks`` processes on a node with ``cores``
    cores uses max(1, cores // ranks) threads, unless the user set a count. Returns the count."""
    value, var = _env_threads()
    if _threads_source == "mg.set_num_threads" or var is not None:
        return get_num_threads()
    n = max(1, cores // ranks)
    _apply_threads(n, f"{cores} cores shared by {ranks} ranks on this node")
    return n


def threads_info():
    """How many threads CPU work uses and why, e.g. "1 (2 cores shared by 2 ranks on this node)"."""
    value, var = _env_threads()
    if _threads_source == "default: one per core" and var is not None:
        return f"{get_num_threads()} (kernels; the BLAS reads {var}={value})"
    return f"{get_num_threads()} ({_threads_source})"


def _init_threads():
    """MINIGRAD_NUM_THREADS: as set_num_threads at import. OMP_NUM_THREADS, which the BLAS
    libraries read themselves, sets minigrad._C's kernel threads too (as it sets PyTorch's)."""
    global _num_threads, _threads_source
    value, var = _env_threads()
    if var == "OMP_NUM_THREADS" and value.split(",")[0].strip().isdigit() and int(value.split(",")[0]) > 0:
        _num_threads, _threads_source = int(value.split(",")[0]), f"OMP_NUM_THREADS={value}"
    if var == "MINIGRAD_NUM_THREADS":
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"MINIGRAD_NUM_THREADS must be a positive number of threads, found {value!r}")
        _apply_threads(n, f"MINIGRAD_NUM_THREADS={n}")


_init_threads()
