#!/usr/bin/env bash
# Every GPU path of minigrad on a real NVIDIA GPU, in one command that ends within 8 minutes:
#
#   bash benchmarks/gpu_check.sh OUTDIR          (from anywhere; OUTDIR is created)
#
# Steps, each under `timeout` and all inside one budget (GPU_CHECK_BUDGET seconds, default 450):
# versions (driver, CUDA, CuPy, NCCL, torch), nvidia-smi and whether mpiexec works; pip install
# --no-index --no-build-isolation -e . (builds the extension); the `cuda` tests (per-test timeout,
# JUnit XML); the fused-kernel benchmark; the training benchmark, minigrad-cuda and torch-cuda on
# mnist_mlp, wide and huge; a one-rank NCCL data-parallel run without mpiexec; the two-rank NCCL
# test and benchmark only when NCCL >= 2.30 (two ranks on one GPU) and mpiexec works. A summary
# table of each step's status and time ends the log. It writes only into OUTDIR, as it goes:
#   gpu_check.log              everything printed, ending in the summary table
#   cuda_tests.xml             JUnit XML of the cuda tests
#   bench_fused_cuda.json      the fused bias+activation kernel against CuPy and PyTorch
#   <date>-<host>.json, .png   the training benchmark (benchmarks/bench_train.py)
#   bench_dp_nccl_1rank.json   the one-rank NCCL data-parallel run
#   bench_dp_nccl_2ranks.json  the two-rank one, when it runs
# Exit status 0 when no step failed or timed out (skipped steps do not count).
# GPU_CHECK_WORKLOADS (default mnist_mlp,wide,huge) and PYTHON (default python3) may be set.
# GPU_CHECK_QUICK=1 is for rehearsals against the CuPy test double (tests/cupy_double), which runs
# GPU-sized work on NumPy: one-repeat, quick benchmarks on mnist_mlp, and the cuda tests without
# the fused-benchmark test (the benchmark step runs that code). Not for GPU runs.
set -uo pipefail
if [ $# -ne 1 ]; then
    echo "usage: bash benchmarks/gpu_check.sh OUTDIR" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
out=$(cd "$1" && pwd)
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
budget=${GPU_CHECK_BUDGET:-450}
quick=${GPU_CHECK_QUICK:-0}
if [ "$quick" = 1 ]; then
    workloads=${GPU_CHECK_WORKLOADS:-mnist_mlp}
    fused_args=(--quick --repeat 1) train_args=(--quick) dp_args=(--quick)
    test_args=(--deselect tests/test_bench.py::test_fused_benchmark_on_cuda)
else
    workloads=${GPU_CHECK_WORKLOADS:-mnist_mlp,wide,huge}
    fused_args=() train_args=() dp_args=() test_args=()
fi
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

names=() statuses=() times=()
failed=0

record() {  # record NAME STATUS SECONDS
    names+=("$1") statuses+=("$2") times+=("$3")
    case $2 in ok*|skipped*|yes*|no*) ;; *) failed=1 ;; esac
}

step() {  # step NAME CAP_SECONDS COMMAND...: run under timeout min(CAP, what the budget has left)
    local name=$1 cap=$2 left t t0 rc status cmd
    shift 2
    left=$((budget - SECONDS))
    if [ "$left" -lt 15 ]; then
        echo; echo "=== $name: skipped, the ${budget}s budget is spent"
        record "$name" "skipped: budget spent" 0
        return 1
    fi
    t=$((cap < left ? cap : left))
    cmd="$*"
    echo; echo "=== $name (timeout ${t}s, $((budget - SECONDS))s of the budget left)"; echo "\$ ${cmd%%$'\n'*}"
    t0=$SECONDS
    timeout -k 5 "$t" "$@"
    rc=$?
    case $rc in
        0) status=ok ;;
        124|137) status="TIMEOUT after ${t}s" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    [ -n "${PROBE:-}" ] && status=$([ $rc -eq 0 ] && echo yes || echo "no (exit $rc)")
    echo "=== $name: $status ($((SECONDS - t0))s)"
    record "$name" "$status" $((SECONDS - t0))
    return $rc
}

probe() {  # probe NAME CAP COMMAND...: a step whose answer is yes or no, never a failure
    PROBE=1 step "$@"
}

skip() {  # skip NAME REASON
    echo; echo "=== $1: skipped ($2)"
    record "$1" "skipped: $2" 0
}

VERSIONS_PY='
import platform, numpy
print("python", platform.python_version(), "| numpy", numpy.__version__)
try:
    import cupy
    rt = cupy.cuda.runtime
    print("cupy", cupy.__version__, "| CUDA runtime", rt.runtimeGetVersion(), "| CUDA driver API", rt.driverGetVersion(),
          "| devices", rt.getDeviceCount())
    if getattr(cupy, "IS_TEST_DOUBLE", False):
        print("CUPY IS THE TEST DOUBLE (tests/cupy_double, NumPy, no GPU): NOTHING IN THIS LOG IS GPU EVIDENCE")
    from cupy.cuda import nccl
    print("nccl", nccl.get_version())
except Exception as e:
    print("cupy/nccl unavailable:", type(e).__name__, e)
try:
    import torch
    print("torch", torch.__version__, "| torch CUDA", torch.version.cuda, "| torch.cuda.is_available()",
          torch.cuda.is_available())
except Exception as e:
    print("torch unavailable:", type(e).__name__, e)
'
NCCL_PY='
try:
    from cupy.cuda import nccl
    print(nccl.get_version())
except Exception:
    print(0)
'

main() {
    echo "minigrad gpu_check: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "output folder: $out; budget ${budget}s; workloads $workloads"
    [ "$quick" = 1 ] && echo "GPU_CHECK_QUICK=1: a rehearsal's quick settings, not a GPU measurement"

    step "versions" 60 "$PY" -c "$VERSIONS_PY"
    step "nvidia-smi" 30 nvidia-smi
    local mpi_ok=0 nccl
    if probe "mpiexec works (2 ranks)" 30 mpiexec -n 2 "$PY" -c \
        "from mpi4py import MPI; assert MPI.COMM_WORLD.Get_size() == 2"; then
        mpi_ok=1
    fi
    nccl=$(timeout 30 "$PY" -c "$NCCL_PY" 2>/dev/null | tail -n1)
    nccl=${nccl:-0}

    step "install (builds minigrad._C)" 240 "$PY" -m pip install --no-index --no-build-isolation -q -e .
    step "minigrad info" 30 "$PY" -m minigrad info

    local per_test=()
    if "$PY" -c "import pytest_timeout" 2>/dev/null; then
        per_test=(--timeout=90)
    else
        echo; echo "(pytest-timeout is not installed: only the step's timeout bounds the cuda tests)"
    fi
    step "cuda tests" 240 "$PY" -m pytest -q -rs -m cuda -p no:cacheprovider "${per_test[@]}" \
        --junitxml="$out/cuda_tests.xml" --deselect tests/test_distributed.py::test_nccl_two_ranks \
        "${test_args[@]}" tests
    step "fused kernel benchmark" 90 "$PY" benchmarks/bench_fused.py --device cuda "${fused_args[@]}" \
        --out "$out/bench_fused_cuda.json"
    step "training benchmark (minigrad-cuda, torch-cuda: $workloads)" 180 "$PY" benchmarks/bench_train.py \
        --workloads "$workloads" --backends minigrad-cuda,torch-cuda "${train_args[@]}" --out "$out" --no-progress
    step "NCCL data parallel, one rank, no mpiexec" 90 "$PY" benchmarks/bench_dp.py --worker --backend nccl \
        "${dp_args[@]}" --out "$out/bench_dp_nccl_1rank.json"

    local why=() reason
    [ "$nccl" -lt 23000 ] && why+=("NCCL $((nccl / 10000)).$((nccl % 10000 / 100)).$((nccl % 100)) < 2.30 cannot put two ranks on one GPU")
    [ "$mpi_ok" -ne 1 ] && why+=("mpiexec does not work here")
    if [ ${#why[@]} -gt 0 ]; then
        reason=$(printf '%s; ' "${why[@]}")
        skip "NCCL two ranks on one GPU" "${reason%; }"
    else
        step "NCCL two ranks on one GPU: test" 120 env NCCL_MULTI_RANK_GPU_ENABLE=1 \
            "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_distributed.py -k nccl_two_ranks
        step "NCCL two ranks on one GPU: benchmark" 120 env NCCL_MULTI_RANK_GPU_ENABLE=1 \
            "$PY" benchmarks/bench_dp.py --ranks 2 --backend nccl --quick --out "$out/bench_dp_nccl_2ranks.json"
    fi

    echo
    echo "=== summary (${SECONDS}s of ${budget}s)"
    printf '%-62s %-44s %6s\n' step status seconds
    local i
    for i in "${!names[@]}"; do
        printf '%-62s %-44s %6s\n' "${names[$i]}" "${statuses[$i]}" "${times[$i]}"
    done
    echo "files in $out:"; ls -1 "$out"
    return $failed
}

main 2>&1 | tee "$out/gpu_check.log"
exit "${PIPESTATUS[0]}"
