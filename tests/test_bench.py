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


# --- `minigrad bench`: the thin command, results where the user is, no project targets -------------
def _script_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_train_under_test", ROOT / "benchmarks" / "bench_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_bench(monkeypatch):
    """The benchmark script with canned worker answers: the run's bookkeeping in milliseconds."""
    bt = _script_module()
    state = {"torch": "2.13.0"}

    def spawn(spec, timeout=None):
        kind = spec["kind"]
        if kind == "probe":
            return {"torch": state["torch"], "torch_cuda": False, "minigrad_cuda": False, "minigrad_kernels": {}}
        if kind == "step":
            ms = 1.0 if spec["backend"].startswith("minigrad") else 2.0
            return {"times_ms": [ms, ms * 1.1, ms * 0.9], "steps_per_block": 10, "warmup": 1, "env": {}}
        if kind == "matmul":
            return {"gflops": [10.0, 11.0], "n": spec["n"]}
        return {"maxrss_mib": 50.0}
    monkeypatch.setattr(bt, "_spawn", spawn)
    monkeypatch.setattr(bt, "_import_time", lambda repeats: {"median_s": 0.1, "runs_s": [0.1]})
    monkeypatch.setattr(bt, "_cores", lambda: 2)
    monkeypatch.setattr("os.getloadavg", lambda: (0.2, 0.2, 0.2))
    bt.state = state
    return bt


def _fake_main(bt, capsys, *argv, targets=False):
    code = bt.main(["--quick", "--no-progress", "--workloads", "iris", *argv], targets=targets, prog="minigrad bench")
    out = capsys.readouterr()
    return code, out.out, out.err


def test_results_go_to_the_current_folder_or_out(fake_bench, capsys, tmp_path, monkeypatch):
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    monkeypatch.chdir(here)
    code, out, _ = _fake_main(fake_bench, capsys)
    assert code == 0 and sorted(p.suffix for p in here.iterdir()) == [".json", ".png"]
    assert f"wrote {here}" in out
    code, out, _ = _fake_main(fake_bench, capsys, "--out", str(there))
    assert code == 0 and sorted(p.suffix for p in there.iterdir()) == [".json", ".png"]
    # --replot writes its plot to --out (the current folder without it), never next to the JSON
    replots = tmp_path / "replots"
    (json_file,) = there.glob("*.json")
    code, out, _ = _fake_main(fake_bench, capsys, "--replot", str(json_file), "--out", str(replots))
    assert code == 0 and [p.name for p in replots.iterdir()] == [json_file.with_suffix(".png").name]
    assert sorted(p.suffix for p in there.iterdir()) == [".json", ".png"]


def test_minigrad_bench_leaves_the_projects_targets_out(fake_bench, capsys, tmp_path):
    code, out, _ = _fake_main(fake_bench, capsys, "--out", str(tmp_path))
    res = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert res["targets"] == [] and not any(res["ratio_targets"].values())
    assert res["ratios"]["cpu"]["iris"] == pytest.approx(0.5)
    assert "target" not in out and "PASS" not in out and "FAIL" not in out
    code, out, _ = _fake_main(fake_bench, capsys, "--out", str(tmp_path / "script"), targets=True)
    assert "target" in out and "PASS  iris minigrad/torch (cpu)" in out


def test_without_pytorch_it_says_how_to_install_the_baseline(fake_bench, capsys, tmp_path):
    fake_bench.state["torch"] = None
    code, out, err = _fake_main(fake_bench, capsys, "--out", str(tmp_path))
    assert code == 0
    for text in (out, err):
        assert ("PyTorch is not installed, so there is no baseline to compare with: install it with "
                'pip install -e ".[bench]"') in text
    assert "torch None" not in out and "PyTorch not installed" in out
    assert json.loads(next(tmp_path.glob("*.json")).read_text())["backends"] == ["minigrad-cpu"]


@pytest.mark.parametrize("load,warned", [((0.5, 0.5, 0.5), False), ((1.5, 1.0, 1.0), True)])
def test_a_busy_machine_is_reported(fake_bench, capsys, tmp_path, monkeypatch, load, warned):
    monkeypatch.setattr("os.getloadavg", lambda: load)
    code, out, err = _fake_main(fake_bench, capsys, "--out", str(tmp_path))
    message = "the machine is busy: load average 1.5 on 2 cores"
    assert (message in err and message in out and "ratios are unreliable" in out) is warned
    assert ("warning: " in out) is warned


def test_bench_command_finds_and_forwards_to_the_script(capsys, monkeypatch, tmp_path):
    from minigrad import bench, cli
    assert bench.find_script() == ROOT / "benchmarks" / "bench_train.py"
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--help"])
    assert e.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: minigrad bench") and "--replot" in help_text and "--out DIR" in help_text
    # elsewhere ($MINIGRAD_BENCHMARKS first); the arguments after `bench` reach it untouched
    (tmp_path / "bench_train.py").write_text(
        "def main(argv, targets=True, prog=None):\n    print('ran', argv, targets, prog)\n    return 3\n")
    monkeypatch.setenv("MINIGRAD_BENCHMARKS", str(tmp_path))
    assert cli.main(["bench", "--quick", "--out", "x", "--workloads=iris"]) == 3
    assert capsys.readouterr().out.strip() == "ran ['--quick', '--out', 'x', '--workloads=iris'] False minigrad bench"


def test_bench_command_without_the_script_says_where_it_looked(capsys, monkeypatch, tmp_path):
    from minigrad import bench, cli
    monkeypatch.delenv("MINIGRAD_BENCHMARKS", raising=False)
    monkeypatch.setattr(bench, "__file__", str(tmp_path / "site-packages" / "minigrad" / "bench.py"))
    monkeypatch.setattr(bench, "_installed_copies", lambda: [tmp_path / "share" / "minigrad" / "benchmarks" /
                                                              "bench_train.py"])
    assert cli.main(["bench", "--quick"]) == 1
    err = capsys.readouterr().err
    assert "minigrad bench runs benchmarks/bench_train.py, which is not in this installation" in err
    assert str(tmp_path / "share" / "minigrad" / "benchmarks") in err and "MINIGRAD_BENCHMARKS" in err


def test_the_package_holds_no_benchmark_code():
    import minigrad.bench
    source = Path(minigrad.bench.__file__).read_text()
    assert "RATIO_TARGETS" not in source and "WORKLOADS" not in source and len(source.splitlines()) < 80


@pytest.mark.slow
def test_minigrad_bench_end_to_end_writes_to_the_current_folder(tmp_path):
    def quick_results():        # what this run would write, wherever it may land in the source tree
        return sorted((ROOT / "benchmarks").rglob("*-quick.json")) + sorted((ROOT / "minigrad").rglob("*-quick.json"))
    before = quick_results()
    p = subprocess.run([sys.executable, "-m", "minigrad", "bench", "--quick", "--no-progress", "--workloads", "iris",
                        "--backends", "minigrad-cpu"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    (json_file,) = tmp_path.glob("*-quick.json")
    res = json.loads(json_file.read_text())
    assert res["results"]["minigrad-cpu"]["iris"]["ms"] > 0 and res["targets"] == []
    assert "iris" in p.stdout and "PASS" not in p.stdout
    assert quick_results() == before


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
