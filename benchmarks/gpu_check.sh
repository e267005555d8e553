#!/usr/bin/env bash
# Every GPU path on a real NVIDIA GPU, with the evidence in one log:
#   nvidia-smi, the CUDA test cases (NCCL with world size 1 among them), the GPU benchmarks,
#   and NCCL with two ranks sharing the one GPU.
# Usage (repository root, on a machine with a GPU, CuPy and NCCL):
#   bash benchmarks/gpu_check.sh [OUTDIR]      -> OUTDIR/<date>-<gpu>-gpu_check.log (+ JSON, PNG)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results}"
mkdir -p "$out"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1 | tr ' ' '-' )
log="$out/$(date +%Y-%m-%d)-${gpu}-gpu_check.log"
export PYTHONUNBUFFERED=1
status=0
step() {  # step NAME COMMAND...: run, log, remember a failure, carry on
    echo; echo "=== $1"; shift; echo "\$ $*"
    "$@" || { echo "=== FAILED (exit $?)"; status=1; }
}
{
    step "nvidia-smi" nvidia-smi
    step "install (extension built here)" python3 -m pip install -q --no-build-isolation -e .
    step "minigrad info" python3 -m minigrad info
    step "CUDA test cases" python3 -m pytest -q -m cuda -rs tests
    step "fused kernel benchmark" python3 benchmarks/bench_fused.py --device cuda --out "$out/bench_fused_cuda.json"
    step "training benchmark (minigrad and PyTorch, CPU and CUDA)" python3 benchmarks/bench_train.py --out "$out"
    step "NCCL, two ranks on one GPU (NCCL_MULTI_RANK_GPU_ENABLE=1, NCCL >= 2.30, experimental)" \
        env NCCL_MULTI_RANK_GPU_ENABLE=1 python3 -m pytest -q -rs tests/test_distributed.py -k nccl_two_ranks
    step "data-parallel benchmark over NCCL (2 ranks share the GPU)" \
        env NCCL_MULTI_RANK_GPU_ENABLE=1 python3 benchmarks/bench_dp.py --backend nccl
    echo; echo "=== gpu_check finished, status $status"
    exit $status  # the group runs in a subshell (it is piped to tee): its status is the step's
} 2>&1 | tee "$log"
exit "${PIPESTATUS[0]}"
