"""Builds the optional C++ extension minigrad._C; everything else is in pyproject.toml.

The extension is optional: without pybind11, a C++17 compiler, or when compiling fails, the
install still succeeds with a warning and minigrad runs its kernels on NumPy instead.
"""
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

try:
    from pybind11.setup_helpers import Pybind11Extension
except ImportError:  # pybind11 missing (e.g. --no-build-isolation): no extension
    Pybind11Extension = None


def _warn(msg):
    print(f"WARNING: minigrad._C not built ({msg}); minigrad will use its NumPy kernels.",
          file=sys.stderr)


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing when the C++ extension cannot be compiled."""

    def run(self):
        try:
            super().run()
        except Exception as e:  # no compiler at all (DistutilsPlatformError and friends)
            _warn(f"{type(e).__name__}: {e}")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:  # CompileError, LinkError, missing headers, ...
            _warn(f"{type(e).__name__}: {e}")


ext_modules = []
if Pybind11Extension is None:
    _warn("pybind11 is not installed")
elif os.environ.get("MINIGRAD_NO_EXT") == "1":
    _warn("MINIGRAD_NO_EXT=1")
else:
    msvc = sys.platform == "win32"
    # -O3 but no -march: the wheel must run on any CPU of its architecture, so the loops are
    # written for the baseline vector unit (SSE2 / NEON); kernels_cpu.cpp adds AVX2 / AVX-512
    # clones picked at load time. -fno-trapping-math lets GCC vectorize the branch-free selects
    # (unlike -ffast-math it changes no result), -fno-math-errno lets sqrt vectorize (errno is
    # never read); -ffp-contract=off keeps FMA contraction out, so
    # every clone, and so every CPU, computes bit-identical results.
    ext_modules.append(Pybind11Extension(
        "minigrad._C",
        sources=["csrc/bindings.cpp", "csrc/kernels_cpu.cpp", "csrc/blas.cpp"],
        depends=["csrc/kernels.h"],
        include_dirs=["csrc"],
        cxx_std=17,
        extra_compile_args=["/O2"] if msvc else ["-O3", "-fno-trapping-math", "-fno-math-errno", "-ffp-contract=off",
                                                     "-pthread"],
        extra_link_args=[] if msvc else ["-pthread"],
        libraries=[] if msvc else ["dl"],  # dlopen, for csrc/blas.cpp (in libc itself from glibc 2.34)
    ))

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
