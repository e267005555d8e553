"""`minigrad bench`: find the training benchmark, benchmarks/bench_train.py, and run it.

The benchmark lives outside the library package: it is a script (standard library only at the top,
so that its PyTorch worker processes never import minigrad) together with the project's own
performance targets, none of which an installed library needs. `minigrad bench` passes its
arguments on to the script and leaves the targets out. The script is looked for in

1. $MINIGRAD_BENCHMARKS, a folder holding bench_train.py;
2. the benchmarks/ folder next to the package: a source checkout or an editable install
   (`pip install -e .`);
3. the files of the installed distribution: a wheel installs the script as a data file, under
   <prefix>/share/minigrad/benchmarks/ (pyproject.toml's data-files).
"""
import os
import sys
from pathlib import Path

SCRIPT = "bench_train.py"


def find_script():
    """The path of bench_train.py, or FileNotFoundError saying where it was looked for."""
    places = []
    if os.environ.get("MINIGRAD_BENCHMARKS"):
        places.append(Path(os.environ["MINIGRAD_BENCHMARKS"]) / SCRIPT)
    places.append(Path(__file__).resolve().parents[1] / "benchmarks" / SCRIPT)
    places += _installed_copies()
    for path in places:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"minigrad bench runs benchmarks/{SCRIPT}, which is not in this installation (looked in "
        f"{', '.join(str(p.parent) for p in places)}); reinstall minigrad from a wheel or a source checkout, or "
        f"set MINIGRAD_BENCHMARKS to a folder holding {SCRIPT}")


def _installed_copies():
    from importlib import metadata
    try:
        files = metadata.files("minigrad") or []
    except metadata.PackageNotFoundError:
        return []
    return [Path(f.locate()).resolve() for f in files if f.name == SCRIPT and "share" in f.parts]


def main(argv):
    """Run the benchmark script with ``argv``; returns its exit status."""
    import runpy
    script = runpy.run_path(str(find_script()), run_name="minigrad_bench_train")
    return script["main"](list(argv), targets=False, prog="minigrad bench")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
