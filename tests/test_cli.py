"""The `minigrad` command: train (defaults reach 95% on digits, save/resume), info, the registry."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import minigrad as mg
from minigrad import cli

pytest.importorskip("sklearn")


def _accuracy(text):
    m = re.search(r"test loss (\S+)\s+test accuracy (\S+)", text)
    assert m, text
    return float(m.group(1)), float(m.group(2))


def test_train_defaults_reach_95_percent_on_digits(capsys):
    assert cli.main(["train", "--verbose", "0", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digits: 1438 training / 359 test samples; model 64-256-128-10")
    loss, acc = _accuracy(out)
    assert acc >= 0.95, out


def test_train_flags_and_progress(capsys):
    code = cli.main(["train", "--dataset", "iris", "--hidden", "16", "--epochs", "3", "--batch-size", "16",
                     "--optimizer", "sgd", "--lr", "0.05", "--seed", "3", "--verbose", "2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "model 4-16-3" in out and "sgd lr 0.05" in out
    assert out.count("Epoch ") == 3 and "Epoch 3/3" in out
    _accuracy(out)


def test_save_then_resume_equals_one_run(tmp_path, capsys):
    common = ["train", "--dataset", "iris", "--hidden", "8", "--verbose", "0", "--optimizer", "adamw"]
    straight, part = tmp_path / "straight.safetensors", tmp_path / "part.safetensors"
    assert cli.main(common + ["--epochs", "4", "--save", str(straight)]) == 0
    full_out = capsys.readouterr().out
    assert cli.main(common + ["--epochs", "2", "--save", str(part)]) == 0
    assert cli.main(common + ["--epochs", "4", "--resume", str(part), "--save", str(part)]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "after epoch 2" in out
    assert _accuracy(out.splitlines()[-2] if "saved" in out.splitlines()[-1] else out) == _accuracy(full_out)
    a, b = mg.load(straight), mg.load(part)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=k)
    assert sorted(os.listdir(tmp_path)) == ["part.safetensors", "straight.safetensors"]


def test_resume_with_a_different_model_is_refused(tmp_path, capsys):
    path = tmp_path / "c.safetensors"
    cli.main(["train", "--dataset", "iris", "--hidden", "8", "--epochs", "1", "--verbose", "0", "--save", str(path)])
    capsys.readouterr()
    code = cli.main(["train", "--dataset", "iris", "--hidden", "9", "--epochs", "2", "--verbose", "0",
                     "--resume", str(path)])
    assert code == 1
    assert "sizes" in capsys.readouterr().err


def test_missing_resume_file(tmp_path, capsys):
    assert cli.main(["train", "--resume", str(tmp_path / "nope.safetensors"), "--verbose", "0"]) == 1
    assert "nope.safetensors" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train", "--hidden", "a,b"], ["train", "--epochs", "0"],
                                  ["train", "--dataset", "cifar10"], ["train", "--optimizer", "nadam"],
                                  ["frobnicate"]])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert "usage: minigrad" in capsys.readouterr().err


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_train_on_mnist_files_in_data_root(tmp_path, capsys, dataset, monkeypatch):
    import gzip
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("no download expected"))
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 64), ("t10k", 16)):
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        images = (labels[:, None, None] * 25 + rng.integers(0, 6, (n, 28, 28))).astype(np.uint8)
        for kind, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            header = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
            (tmp_path / dataset).mkdir(exist_ok=True)
            (tmp_path / dataset / f"{prefix}-{kind}.gz").write_bytes(gzip.compress(header + arr.tobytes()))
    assert cli.main(["train", "--dataset", dataset, "--data-root", str(tmp_path), "--hidden", "16",
                     "--epochs", "2", "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{dataset}: 64 training / 16 test samples; model 784-16-10")
    _accuracy(out)


def test_train_on_mnist_offline_says_where_to_put_the_files(tmp_path, capsys, monkeypatch):
    import urllib.error

    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr("urllib.request.urlopen", offline)
    assert cli.main(["train", "--dataset", "mnist", "--data-root", str(tmp_path), "--verbose", "0"]) == 1
    err = capsys.readouterr().err
    assert "could not download train-images-idx3-ubyte.gz" in err and str(tmp_path / "mnist") in err


def test_bad_device(capsys):
    assert cli.main(["train", "--device", "tpu", "--verbose", "0"]) == 1
    assert "tpu" in capsys.readouterr().err


def test_info(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("minigrad:", mg.__version__, "numpy:", np.__version__, "blas loaded:", "cpu_matmul", "cupy:", "gpus:", "kernels:"):
        assert word in out
    assert cli.main(["info", "--json"]) == 0
    import json
    info = json.loads(capsys.readouterr().out)
    assert info["numpy"] == np.__version__ and "cpu" in info["kernels"]


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "train" in capsys.readouterr().out


def test_registry_adds_a_subcommand(monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMANDS", dict(cli.COMMANDS))
    seen = {}

    def configure(p):
        p.add_argument("--size", type=int, default=3)

    def run(args):
        seen["size"] = args.size
        print("ran")

    cli.register("hello", "say hello", configure, run)
    assert cli.main(["hello", "--size", "5"]) == 0
    assert seen == {"size": 5} and "ran" in capsys.readouterr().out


def test_python_dash_m_minigrad():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMI_", "PMIX_"))}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-m", "minigrad", "--version"], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0 and out.stdout.strip() == f"minigrad {mg.__version__}"


MPIEXEC = __import__("shutil").which("mpiexec")
HAVE_MPI = MPIEXEC is not None and __import__("importlib").util.find_spec("mpi4py") is not None


@pytest.mark.mpi
@pytest.mark.skipif(not HAVE_MPI, reason="needs mpiexec and mpi4py (pip install 'minigrad[mpi]')")
def test_mpiexec_two_ranks_train(tmp_path):
    """`mpiexec -n 2 minigrad train`: data-parallel, rank 0 alone prints and saves."""
    import signal
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMI_", "PMIX_", "MPI_", "HYDRA_"))}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"
    env["MINIGRAD_DIST_TIMEOUT"] = "60"
    version = subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True, timeout=30).stdout
    flags = ["--oversubscribe", "--allow-run-as-root"] if "Open MPI" in version else []
    path = tmp_path / "dp.safetensors"
    cmd = [MPIEXEC, *flags, "-n", "2", sys.executable, "-m", "minigrad", "train", "--dataset", "iris",
           "--hidden", "8", "--epochs", "2", "--verbose", "2", "--save", str(path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"mpiexec -n 2 minigrad train did not finish:\n{out}")
    assert proc.returncode == 0, out
    assert "2 ranks" in out and out.count("Epoch 1/2") == 1 and out.count("test accuracy") == 1, out
    assert mg.load_checkpoint(path, model=mg.train.mlp([4, 8, 3]))["epoch"] == 2
    assert os.listdir(tmp_path) == ["dp.safetensors"]
