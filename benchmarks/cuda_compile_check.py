"""Compile every CUDA kernel minigrad's CuPy path builds, for sm_90 with nvcc, without a GPU.

    python benchmarks/cuda_compile_check.py [--cupy-include DIR] [--dtypes float16 float32 float64]
                                            [--arch sm_90] [--log FILE]

The kernels are the ones minigrad.kernels builds (every activation in kernels.ACTIVATIONS, forward
and backward, with and without bias): they are captured by running kernels._cupy_kernel against a
recorder standing in for cupy.ElementwiseKernel, so a new row of the table is covered with no change
here. Each is turned into the source CuPy generates for it (the template of CuPy's
_core/_kernel.pyx _get_elementwise_kernel_code and _get_simple_elementwise_kernel_code, with the
headers core.pyx compile_with_cache prepends and the typedefs of _scalar.pyx) for 2-D strided
arrays, and compiled with `nvcc -cubin -arch=<arch> --std=c++17` against CuPy's own headers
(cupy/_core/include from the installed CuPy, or --cupy-include from a CuPy source tree). One
translation unit per dtype; a failing one is compiled kernel by kernel to name the culprits.

This checks that the kernels compile, nothing about their numerics or speed (tests do that on a
GPU, or against the test double for the Python-level logic). Exit status 0 when every kernel
compiled for every dtype asked for.
"""
import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from minigrad import backend, kernels  # noqa: E402

_CTYPE = {"float16": "float16", "float32": "float", "float64": "double", "int64": "long long"}
_HEADERS = "".join(f"#include <{h}>\n" for h in ("cupy/complex.cuh", "cupy/carray.cuh", "cupy/atomics.cuh",
                                                 "cupy/math_constants.h"))


class _Recorder:
    """Stands in for cupy.ElementwiseKernel: keeps what minigrad passes it."""

    def __init__(self, in_params, out_params, operation, name, **kwargs):
        self.in_params, self.out_params, self.operation, self.name = in_params, out_params, operation, name


def minigrad_kernels():
    """[(in_params, out_params, operation, name)] of every ElementwiseKernel minigrad builds."""
    saved_cupy, saved_cache = backend.cupy, dict(kernels._cupy_kernels)
    backend.cupy = lambda: SimpleNamespace(ElementwiseKernel=_Recorder)
    kernels._cupy_kernels.clear()
    try:
        found = []
        for activation in kernels.ACTIVATIONS:
            for direction in ("fwd", "bwd"):
                for with_bias in (False, True):
                    k = kernels._cupy_kernel(direction, activation, with_bias)
                    found.append((k.in_params, k.out_params, k.operation, k.name))
        return found
    finally:
        backend.cupy = saved_cupy
        kernels._cupy_kernels.clear()
        kernels._cupy_kernels.update(saved_cache)


def _params(spec):
    return [p.split() for p in spec.split(",") if p.strip()]


def cupy_source(in_params, out_params, operation, name, dtype, ndim=2):
    """The CUDA source CuPy generates for this kernel with every T argument an ndim-D strided
    array (scalar parameters p0, p1, ... stay scalars) of `dtype`."""
    ctype = _CTYPE[dtype]
    decls = '#include "cupy/float16.cuh"\n' if dtype == "float16" else ""
    args, body = [], []
    for const, params in ((True, _params(in_params)), (False, _params(out_params))):
        for t, n in params:
            if re.fullmatch(r"p\d+", n):  # the activation's scalar parameters
                args.append(f"{'const ' if const else ''}{ctype} {n}")
                continue
            args.append(f"{'const ' if const else ''}CArray<{ctype}, {ndim}, 0, 1> _raw_{n}")
            body.append(f"{'const ' if const else ''}{t} &{n} = _raw_{n}[_ind.get()];")
    args.append(f"CIndexer<{ndim}, 1> _ind")
    body.append(operation)
    op = "\n".join(body)
    return (f"\n    {decls}typedef {ctype} T;\n\n    \n    extern \"C\" __global__ void {name}({', '.join(args)}) {{\n"
            f"      ;\n      #pragma unroll 1\n      CUPY_FOR(i, _ind.size()) {{\n        _ind.set(i);\n"
            f"        {op};\n      }}\n      ;\n    }}\n    ")


def compile_unit(sources, include, arch, workdir, tag):
    """nvcc one translation unit holding `sources`; (ok, seconds, compiler output)."""
    cu = os.path.join(workdir, f"{tag}.cu")
    with open(cu, "w") as f:
        f.write(_HEADERS)
        f.write("\n".join(sources))
    cmd = ["nvcc", "-cubin", f"-arch={arch}", "--std=c++17", f"-I{include}", "-o", cu[:-3] + ".cubin", cu]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode == 0, time.perf_counter() - t0, (p.stdout + p.stderr).strip()


def _unit(kernels_, dtype):
    """One translation unit's worth of sources: typedef T is per kernel, so each sits in a namespace."""
    decls = '#include "cupy/float16.cuh"\n' if dtype == "float16" else ""
    out = [decls]
    for i, k in enumerate(kernels_):
        src = cupy_source(*k, dtype).replace(decls, "", 1) if decls else cupy_source(*k, dtype)
        out.append(src if len(kernels_) == 1 else f"namespace k{i} {{{src}}}")
    return out


def cupy_include(arg):
    if arg:
        return arg
    try:
        import cupy
        return os.path.join(os.path.dirname(cupy.__file__), "_core", "include")
    except ImportError:
        sys.exit("CuPy is not importable here: pass --cupy-include <cupy source tree>/cupy/_core/include")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cupy-include", help="directory holding cupy/carray.cuh (default: the installed CuPy's)")
    ap.add_argument("--dtypes", nargs="+", default=["float16", "float32", "float64"], choices=sorted(_CTYPE))
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--log", help="also write the report to this file")
    args = ap.parse_args()
    include = cupy_include(args.cupy_include)
    if shutil.which("nvcc") is None:
        sys.exit("nvcc is not on PATH")
    found = minigrad_kernels()
    nvcc = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-2:]
    lines = [f"minigrad CuPy kernel compile check ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{platform.node()})",
             f"nvcc: {' / '.join(nvcc)}; arch {args.arch}; CuPy headers: {include}",
             f"{len(found)} kernels ({len(kernels.ACTIVATIONS)} activations x fwd/bwd x bias or not), "
             f"dtypes {', '.join(args.dtypes)}; 2-D strided arrays", ""]
    failed = 0
    with tempfile.TemporaryDirectory() as work:
        for dtype in args.dtypes:
            ok, secs, out = compile_unit(_unit(found, dtype), include, args.arch, work, dtype)
            if ok:
                lines.append(f"{dtype:8s} all {len(found)} kernels compiled ({secs:.1f} s)")
                continue
            for k in found:
                ok1, _, out1 = compile_unit(_unit([k], dtype), include, args.arch, work, f"{dtype}_{k[3]}")
                if not ok1:
                    failed += 1
                    err = next((ln for ln in out1.splitlines() if "error" in ln), out1[-300:])
                    lines.append(f"{dtype:8s} FAILED {k[3]}: {err.strip()}")
            lines.append(f"{dtype:8s} {sum(1 for ln in lines if ln.startswith(dtype) and 'FAILED' in ln)} "
                         f"of {len(found)} kernels failed")
    lines += ["", "kernel sources (operation of each, as minigrad builds it):"]
    lines += [f"  {k[3]}({k[0]}) -> {k[1]}: {k[2]}" for k in found]
    lines.append("")
    lines.append(f"result: {'OK' if not failed else f'{failed} FAILED'}")
    report = "\n".join(lines)
    print(report)
    if args.log:
        with open(args.log, "w") as f:
            f.write(report + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
