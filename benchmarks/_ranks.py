"""Running a benchmark script's worker on n MPI ranks: shared by bench_dp.py and bench_parallel.py."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def run_ranks(n, script, worker_args, env=None, timeout=1800):
    """`mpiexec -n n python script --worker --out FILE *worker_args`; returns the JSON rank 0 wrote."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")   # the mpich wheel's, in this venv
    mpiexec = here if os.path.exists(here) else shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("mpiexec not found: pip install 'minigrad[mpi]'")
    env = dict(os.environ, **(env or {}), PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.json")
        cmd = [mpiexec, "-n", str(n), sys.executable, os.path.abspath(script), "--worker", "--out", path,
               *worker_args]
        subprocess.run(cmd, check=True, env=env, timeout=timeout)
        with open(path) as f:
            return json.load(f)
