"""The benchmark script runs and writes valid results (no timing assertions: timings belong in benchmarks/)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import minigrad as mg

ROOT = Path(__file__).resolve().parents[1]


def _run_quick(tmp_path, *args):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), "--quick", "--no-progress",
           "--out", str(tmp_path), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    files = list(tmp_path.glob("*-quick.json"))
    assert len(files) == 1, list(tmp_path.iterdir())
    return json.loads(files[0].read_text()), p.stdout


def _check(res, backends, workloads):
    assert res["quick"] is True and not res["errors"]
    assert res["backends"] == backends
    assert list(res["workloads"]) == workloads
    for b in backends:
        for w in workloads:
            r = res["results"][b][w]
            assert r["ms"] > 0 and r["ms_min"] <= r["ms"] and len(r["times_ms"]) == r["blocks"]
    assert res["matmul_peak"]["gflops"] > 0
    assert res["rss_mib"]["minigrad"] > 0
    assert res["import_minigrad"]["median_s"] > 0
    env = res["env"]
    assert env["cores"] >= 1 and env["cpu"] and env["numpy"]
    assert {t["name"] for t in res["targets"]} >= {"digits training peak RSS, MiB", "import minigrad, s"}
    if res["files"]["png"]:
        assert Path(res["files"]["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_minigrad_only(tmp_path):
    res, out = _run_quick(tmp_path, "--backends", "minigrad-cpu", "--workloads", "iris,digits")
    _check(res, ["minigrad-cpu"], ["iris", "digits"])
    assert "iris" in out and "import minigrad" in out


def test_quick_against_torch(tmp_path):
    pytest.importorskip("torch")
    res, out = _run_quick(tmp_path, "--backends", "minigrad-cpu,torch-cpu", "--workloads", "digits")
    _check(res, ["minigrad-cpu", "torch-cpu"], ["digits"])
    assert res["ratios"]["cpu"]["digits"] > 0
    assert any(t["name"].startswith("digits minigrad/torch") for t in res["targets"])
    assert "PASS" in out or "FAIL" in out


def test_unknown_workload_is_an_error(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), "--quick", "--workloads", "mnist",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "unknown workloads" in p.stderr


def _bench_fused(tmp_path, *args):
    out = tmp_path / "fused.json"
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_fused.py"), "--quick", "--repeat", "3",
                        "--out", str(out), *args], capture_output=True, text=True, timeout=600)
    return p, out


def test_fused_benchmark_quick(tmp_path):
    p, out = _bench_fused(tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    res = json.loads(out.read_text())
    impls = {r["impl"] for r in res["cases"][0]["rows"]}
    assert "minigrad fused, new array (cached buffer)" in impls and res["copy_gb_per_s"] > 0


@pytest.mark.skipif(mg.cuda.is_available(), reason="CUDA is usable here")
def test_fused_benchmark_on_cuda_says_why_it_cannot_run(tmp_path):
    p, _ = _bench_fused(tmp_path, "--device", "cuda")
    assert p.returncode != 0 and "--device cuda: CUDA is not usable here" in p.stderr


@pytest.mark.cuda
def test_fused_benchmark_on_cuda(tmp_path):
    p, out = _bench_fused(tmp_path, "--device", "cuda")
    assert p.returncode == 0, p.stdout + p.stderr
    res = json.loads(out.read_text())
    impls = {r["impl"] for r in res["cases"][0]["rows"]}
    assert {"minigrad fused (CuPy kernel)", "cupy cp.maximum(z + b, 0)"} <= impls
    assert res["ratios_1024x4096_f32"]["cupy unfused / minigrad"] > 0
