"""What minigrad runs on: versions, BLAS, GPUs, and which kernel path each device uses."""
import platform
import sys
from importlib import metadata

import numpy as np

from . import backend

_OPTIONAL = ("cupy", "cupy-cuda12x", "cupy-cuda13x", "mpi4py", "safetensors", "tqdm", "scikit-learn", "torch", "mkl")


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _blas():
    """BLAS libraries in this process (NumPy's; MKL once minigrad loaded it for matmul): threadpoolctl's
    live view when installed, else NumPy's build info. Which one runs minigrad's matmuls is
    kernels' cpu_matmul."""
    try:
        from threadpoolctl import threadpool_info
        libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if libs:
            return [f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads, "
                    f"{i.get('architecture') or 'unknown arch'})" for i in libs]
    except Exception:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return [f"{blas.get('name')} {blas.get('version')} (build info)"]
    except Exception:
        return ["unknown"]


def _gpus():
    cp = backend.cupy()
    if cp is None:
        return [], backend._cupy_error
    out = []
    for i in range(cp.cuda.runtime.getDeviceCount()):
        props = cp.cuda.runtime.getDeviceProperties(i)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        out.append(f"cuda:{i} {name} ({props['totalGlobalMem'] / 2 ** 30:.1f} GiB, "
                   f"compute capability {props['major']}.{props['minor']})")
    return out, None


def system_info():
    """A dict describing this installation (all values are strings or lists of strings)."""
    from . import __version__
    gpus, why = _gpus()
    cp = backend.cupy()
    info = {
        "minigrad": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "numpy": np.__version__,
        "blas loaded": _blas(),
        "cupy": (cp.__version__ if cp is not None else f"not usable ({why})"),
        "gpus": gpus or ["none found"],
    }
    from .distributed import init_process_group, launcher_world_size
    if launcher_world_size() > 1:
        init_process_group()        # under mpiexec: this rank's share of the cores, as training gets
    info["kernels"] = {k: str(v) for k, v in backend.backend_info().items()}
    info["cpu threads"] = [backend.threads_info(),
                           "under mpiexec each rank uses cores / ranks on its node (at least 1) unless a count",
                           "is set: mg.set_num_threads, MINIGRAD_NUM_THREADS, OMP/OPENBLAS/MKL_NUM_THREADS"]
    versions = {d: _version(d) for d in _OPTIONAL}
    info["packages"] = {d: v or "not installed" for d, v in versions.items() if v or d in ("mpi4py", "torch")}
    info["mpi ranks"] = str(launcher_world_size())
    return info


def format_info(info=None):
    """system_info() as aligned text lines."""
    info = system_info() if info is None else info
    lines = []
    for key, value in info.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines.extend(f"  {k:<14} {v}" for k, v in value.items())
        elif isinstance(value, list):
            lines.append(f"{key + ':':<16}{value[0] if value else ''}")
            lines.extend(f"{'':<16}{v}" for v in value[1:])
        else:
            lines.append(f"{key + ':':<16}{value}")
    return "\n".join(lines)
