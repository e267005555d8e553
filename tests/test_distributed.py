"""mg.distributed: in-process tests for a world of one, and real ranks launched with mpiexec.

The multi-rank tests run `mpiexec -n 2 python -m mpi4py tests/dist_scripts/<script>.py`
(skipped when mpiexec or mpi4py is missing; `pip install 'minigrad[mpi]'` provides both).
"""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import minigrad as mg
import minigrad.distributed as dist
from minigrad.distributed import comm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "tests", "dist_scripts")
LAUNCH_ENV_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE", "MPI_WORLD_SIZE",
                   "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK")


def _find_mpiexec():
    """mpiexec of the running interpreter's environment first (pip's mpich puts it there)."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else shutil.which("mpiexec")


MPIEXEC = _find_mpiexec()
HAVE_MPI = MPIEXEC is not None and importlib.util.find_spec("mpi4py") is not None
needs_mpi = [pytest.mark.mpi,
             pytest.mark.skipif(not HAVE_MPI, reason="needs mpiexec and mpi4py (pip install 'minigrad[mpi]')")]


def _mpiexec_flags():
    """Open MPI refuses to run as root or oversubscribed without flags; MPICH needs none."""
    try:
        out = subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True, timeout=30).stdout
    except Exception:
        return []
    if "Open MPI" in out or "OpenRTE" in out:
        return ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    return []


THREAD_VARS = ("MINIGRAD_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def launch(script, *args, n=2, timeout=120, dist_timeout=60):
    """Run a script on n ranks; returns (returncode, output, seconds). Kills the job on timeout.
    The ranks pick their thread counts themselves (their share of the cores)."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV_VARS + THREAD_VARS}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["MINIGRAD_DIST_TIMEOUT"] = str(dist_timeout)
    cmd = [MPIEXEC, *_mpiexec_flags(), "-n", str(n), sys.executable, "-m", "mpi4py",
           os.path.join(SCRIPTS, script), *args]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=SCRIPTS, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)          # mpiexec and every rank it started
        out, _ = proc.communicate()
        pytest.fail(f"{script} on {n} ranks did not finish within {timeout} s:\n{out}")
    return proc.returncode, out, time.monotonic() - start


# --- a world of one: no launcher, no mpi4py ---------------------------------------------------

@pytest.fixture
def world_of_one(monkeypatch):
    for var in LAUNCH_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    dist.destroy_process_group()
    yield dist.init_process_group()
    dist.destroy_process_group()


def test_world_of_one_needs_no_mpi(world_of_one):
    assert (dist.get_rank(), dist.get_world_size(), dist.get_local_rank()) == (0, 1, 0)
    assert dist.is_main_process() and dist.get_device() == "cpu"
    assert isinstance(world_of_one.host, comm.LocalCommunicator)
    code = ("import sys, minigrad.distributed as d; d.init_process_group(); d.get_world_size(); "
            "d.barrier(); print('mpi4py' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV_VARS}
    env["PYTHONPATH"] = ROOT
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_world_of_one_collectives_are_identity(world_of_one):
    t = mg.tensor([1.0, 2.0])
    assert dist.all_reduce(t) is t and t.tolist() == [1.0, 2.0]
    assert dist.all_reduce(t, op="mean").tolist() == [1.0, 2.0]
    assert dist.broadcast(t, src=0) is t
    assert dist.all_reduce([3, 4.5]) == [3.0, 4.5] and dist.all_reduce(7) == 7
    assert dist.all_gather_object({"a": 1}) == [{"a": 1}]
    assert dist.check_equal(5, "batches") == 5
    dist.barrier()
    with pytest.raises(ValueError, match="op must be one of"):
        dist.all_reduce(t, op="avg")
    with pytest.raises(ValueError, match="out of range"):
        dist.broadcast(t, src=1)


def test_ddp_world_of_one_is_transparent(world_of_one):
    w = mg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)

    class Model:
        def named_parameters(self):
            return [("w", w)]

        def parameters(self):
            return [w]

        def state_dict(self):
            return {"w": w}

        def __call__(self, x):
            return x @ w.T

        hidden = 42

    model = dist.DistributedDataParallel(Model())
    assert model.hidden == 42 and model.state_dict()["w"] is w and list(model.parameters()) == [w]
    x = np.ones((4, 3))
    model(mg.tensor(x)).sum().backward()
    assert np.array_equal(w.grad.data, np.full((2, 3), 4.0))
    with model.no_sync():
        model(mg.tensor(x)).sum().backward()
    assert np.array_equal(w.grad.data, np.full((2, 3), 8.0))


def test_ddp_wraps_an_nn_module(world_of_one):
    net = mg.nn.Sequential(mg.nn.Linear(3, 4), mg.nn.ReLU(), mg.nn.Linear(4, 2))
    model = dist.DistributedDataParallel(net, bucket_mb=1e-6)
    assert model.module is net and len(model._buckets) == 4
    assert list(model.state_dict()) == list(net.state_dict())          # no "module." prefix
    assert model.double() is model and model._buckets[0].buffer.dtype == np.float64
    assert model.train() is model and model.eval() is model and not net.training
    out = model(mg.tensor(np.ones((5, 3))))
    assert out.shape == (5, 2) and out.dtype == np.float64


class MirrorCommunicator(comm.Communicator):
    """A pretend world of two whose other rank always has the same values: sum = 2x, mean = x."""
    name, world_size = "mirror", 2

    def __init__(self):
        super().__init__()
        self.log = []

    def all_reduce_async(self, array, op="sum"):
        self.log.append("launch")

        def finish():
            array[...] *= 2
        return comm.Work(array, finish)

    def broadcast(self, array, src=0):
        return array

    def all_gather_object(self, obj):
        return [obj, obj]

    def barrier(self):
        pass


def test_ddp_buckets_start_during_backward():
    """Buckets are all-reduced as they fill, while backward still runs, in reverse parameter order."""
    mg.manual_seed(0)
    net = mg.nn.Sequential(mg.nn.Linear(3, 8), mg.nn.Tanh(), mg.nn.Linear(8, 8), mg.nn.Tanh(),
                           mg.nn.Linear(8, 2)).double()
    group = MirrorCommunicator()
    model = dist.DistributedDataParallel(net, bucket_mb=1e-9, group=group)
    params = list(net.parameters())
    assert [id(b.params[0]) for b in model._buckets] == [id(p) for p in params[::-1]]
    first = params[0]
    first.register_post_accumulate_grad_hook(lambda p: group.log.append("first layer's grad ready"))
    x = mg.tensor(np.random.default_rng(0).normal(size=(4, 3)))
    loss = (model(x) ** 2).mean()
    loss.backward()
    ready = group.log.index("first layer's grad ready")
    assert group.log.count("launch") == len(params) and group.log[:ready].count("launch") >= 4, group.log
    local = {n: p.grad.data.copy() for n, p in net.named_parameters()}
    for p in params:
        p.grad = None
    model.remove_hooks()
    (net(x) ** 2).mean().backward()
    for n, p in net.named_parameters():
        assert np.allclose(p.grad.data, local[n], rtol=0, atol=1e-15), n


def test_launcher_detection(monkeypatch):
    for var in LAUNCH_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    assert comm.launcher_world_size() == 1
    monkeypatch.setenv("SLURM_NTASKS", "8")            # an sbatch script running plain python
    assert comm.launcher_world_size() == 1
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "2")             # a task started by srun
    assert comm.launcher_world_size() == 4
    monkeypatch.setenv("PMI_SIZE", "3")                 # MPICH / Intel MPI mpiexec
    assert comm.launcher_world_size() == 3
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")     # Open MPI mpirun
    assert comm.launcher_world_size() == 2


@pytest.mark.mpi
@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="needs mpi4py")
def test_mpi_of_another_launcher_is_reported():
    """An mpiexec whose MPI differs from mpi4py's starts N singletons: say so instead of training N times."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV_VARS}
    env.update(PYTHONPATH=ROOT, PMI_SIZE="2", PMI_RANK="0")
    code = "import minigrad.distributed as d; d.init_process_group()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0 and "MPI sees a world of 1" in out.stderr, out.stderr


def test_timeout_setting(monkeypatch):
    monkeypatch.setenv("MINIGRAD_DIST_TIMEOUT", "12.5")
    assert comm.default_timeout() == 12.5
    monkeypatch.setenv("MINIGRAD_DIST_TIMEOUT", "0")
    assert comm.default_timeout() == float("inf")
    monkeypatch.setenv("MINIGRAD_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="MINIGRAD_DIST_TIMEOUT"):
        comm.default_timeout()


@pytest.mark.parametrize("n,replicas,drop_last", [(10, 2, False), (11, 2, False), (11, 2, True),
                                                   (7, 3, False), (2, 4, False), (100, 8, True)])
def test_sampler_shards(n, replicas, drop_last):
    shards = []
    for rank in range(replicas):
        s = dist.DistributedSampler(n, num_replicas=replicas, rank=rank, seed=3, drop_last=drop_last)
        s.set_epoch(1)
        idx = list(s)
        assert len(idx) == len(s) and all(isinstance(i, int) for i in idx)
        shards.append(idx)
    assert len({len(s) for s in shards}) == 1, "every rank gets the same number of samples"
    flat = sorted(sum(shards, []))
    if drop_last:
        assert len(flat) == n // replicas * replicas and len(set(flat)) == len(flat)
    else:
        assert set(flat) == set(range(n)) and len(flat) == -(-n // replicas) * replicas


def test_sampler_epochs_and_order():
    s = dist.DistributedSampler(list(range(20)), num_replicas=2, rank=1, shuffle=True, seed=0)
    first = list(s)
    assert list(s) == first, "the same epoch gives the same order"
    s.set_epoch(1)
    assert list(s) != first, "set_epoch reshuffles"
    plain = dist.DistributedSampler(10, num_replicas=2, rank=1, shuffle=False)
    assert list(plain) == [1, 3, 5, 7, 9]
    padded = dist.DistributedSampler(5, num_replicas=2, rank=1, shuffle=False)
    assert list(padded) == [1, 3, 0]                    # wraps around to pad, as PyTorch does


def test_sampler_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        dist.DistributedSampler(10, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="non-empty"):
        dist.DistributedSampler(0, num_replicas=1, rank=0)
    with pytest.raises(ValueError, match="drop_last"):
        dist.DistributedSampler(1, num_replicas=2, rank=0, drop_last=True)


# --- two ranks under mpiexec --------------------------------------------------------------------

DDP_CHECKS = ["matches_single_process", "different_inits_end_identical", "bucket_sizes_do_not_change_results",
              "no_sync_accumulates", "grads_are_the_mean_when_backward_returns", "unused_parameters",
              "mismatched_models_are_reported", "check_equal_reports_uneven_values", "collectives_api",
              "sampler_shards_partition_the_data", "dataloader_with_sampler_matches_single_process",
              "exception_in_backward_does_not_stop_averaging", "buffers_are_broadcast_from_rank_0",
              "mismatched_buffers_are_reported"]


@pytest.fixture(scope="module")
def ddp_checks(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp") / "result.json"
    code, out, _ = launch("ddp_checks.py", str(path))
    result = json.loads(path.read_text()) if path.exists() else {}
    return code, out, result


@pytest.mark.parametrize("name", DDP_CHECKS)
@pytest.mark.mpi
@pytest.mark.skipif(not HAVE_MPI, reason="needs mpiexec and mpi4py (pip install 'minigrad[mpi]')")
def test_two_ranks(ddp_checks, name):
    """2 ranks on half batches == 1 process on the full batch (float64, 1e-10, SGD momentum), etc."""
    code, out, result = ddp_checks
    status = result.get(name)
    assert status == "ok", status or f"check not reached (exit code {code}):\n{out[-4000:]}"


@pytest.mark.mpi
@pytest.mark.skipif(not HAVE_MPI, reason="needs mpiexec and mpi4py (pip install 'minigrad[mpi]')")
def test_two_ranks_exit_cleanly(ddp_checks):
    code, out, _ = ddp_checks
    assert code == 0, out[-4000:]


@pytest.mark.mpi
@pytest.mark.skipif(not HAVE_MPI, reason="needs mpiexec and mpi4py (pip install 'minigrad[mpi]')")
@pytest.mark.parametrize("mode", ["raise", "exit"])
def test_crashing_rank_ends_the_job(mode):
    code, out, seconds = launch("crash.py", mode, timeout=60, dist_timeout=300)
    assert code != 0, out
    assert seconds < 30, f"took {seconds:.1f} s"
    assert "was not stopped" not in out
    if mode == "raise":
        assert "fails on purpose" in out and "aborting all ranks" in out, out


@pytest.mark.mpi
@pytest.mark.skipif(not HAVE_MPI, reason="needs mpiexec and mpi4py (pip install 'minigrad[mpi]')")
@pytest.mark.parametrize("code", [0, 3])
def test_rank_leaving_early_ends_the_job(code):
    """sys.exit on one rank while the other waits in an all-reduce: the job ends at once, non-zero."""
    returncode, out, seconds = launch("crash.py", "sys.exit", str(code), timeout=60, dist_timeout=300)
    assert returncode != 0, out
    assert seconds < 20, f"took {seconds:.1f} s"
    assert "was not stopped" not in out
    assert "rank 1 of 2 left the job" in out and "rank 0 waits for it in all_reduce" in out, out


@pytest.mark.mpi
@pytest.mark.skipif(not HAVE_MPI, reason="needs mpiexec and mpi4py (pip install 'minigrad[mpi]')")
@pytest.mark.parametrize("how", ["end of script", "destroy"])
def test_ranks_finishing_at_different_times_exit_cleanly(how):
    code, out, seconds = launch("finish.py", how, timeout=60, dist_timeout=1.5)
    assert code == 0, out
    assert out.count("finished") == 2 and "aborting" not in out, out


@pytest.mark.mpi
@pytest.mark.skipif(not HAVE_MPI, reason="needs mpiexec and mpi4py (pip install 'minigrad[mpi]')")
def test_stuck_collective_times_out():
    code, out, seconds = launch("crash.py", "timeout", timeout=60, dist_timeout=2)
    assert code != 0, out
    assert seconds < 30, f"took {seconds:.1f} s"
    assert "DistributedTimeoutError" in out and "did not complete within 2 s" in out, out


@pytest.mark.mpi
@pytest.mark.skipif(not HAVE_MPI, reason="needs mpiexec and mpi4py (pip install 'minigrad[mpi]')")
def test_uneven_batch_counts_are_reported():
    code, out, seconds = launch("uneven.py", timeout=60)
    assert code != 0, out
    assert seconds < 30
    assert "the number of batches per epoch differs across ranks (rank 0: 3, rank 1: 4)" in out, out
    assert "was not stopped" not in out


# --- NCCL (GPU) ---------------------------------------------------------------------------------

def _gpu_count():
    from minigrad import backend
    cp = backend.cupy()
    return 0 if cp is None else cp.cuda.runtime.getDeviceCount()


def _have_nccl():
    try:
        from cupy.cuda import nccl
        return bool(getattr(nccl, "available", True))
    except Exception:
        return False


needs_nccl = pytest.mark.skipif(not (_gpu_count() and _have_nccl()), reason="needs a GPU, CuPy and NCCL")


@pytest.mark.cuda
@needs_nccl
def test_nccl_world_of_one(monkeypatch):
    for var in LAUNCH_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    dist.destroy_process_group()
    try:
        group = dist.init_process_group("nccl")
        assert group.name == "nccl" and dist.get_device() == "cuda:0"
        t = mg.tensor(np.arange(4.0), device="cuda:0")
        dist.all_reduce(t, op="mean")
        assert t.tolist() == [0.0, 1.0, 2.0, 3.0]
        dist.broadcast(t, 0)
        w = mg.tensor(np.ones((2, 3)), device="cuda:0", requires_grad=True)

        class Model:
            def named_parameters(self):
                return [("w", w)]

            def __call__(self, x):
                return x @ w.T

        model = dist.DistributedDataParallel(Model())
        model(mg.tensor(np.ones((4, 3)), device="cuda:0")).sum().backward()
        assert np.array_equal(w.grad.numpy(), np.full((2, 3), 4.0))
    finally:
        dist.destroy_process_group()


@pytest.mark.cuda
@pytest.mark.mpi
@needs_nccl
@pytest.mark.skipif(not HAVE_MPI, reason="needs mpiexec and mpi4py")
def test_nccl_two_ranks():
    if _gpu_count() < 2 and os.environ.get("NCCL_MULTI_RANK_GPU_ENABLE") != "1":
        pytest.skip("needs 2 GPUs (or NCCL_MULTI_RANK_GPU_ENABLE=1 with NCCL >= 2.30 on one GPU)")
    code, out, _ = launch("nccl_checks.py", timeout=300)
    assert code == 0, out[-4000:]
    assert out.count("nccl checks ok") == 2, out[-4000:]


@pytest.mark.mpi
@pytest.mark.skipif(not HAVE_MPI, reason="needs mpiexec and mpi4py (pip install 'minigrad[mpi]')")
def test_trainer_fit_on_two_ranks(tmp_path):
    path = tmp_path / "fit.json"
    code, out, _ = launch("trainer_fit.py", str(path), timeout=180)
    assert code == 0, out[-4000:]
    result = json.loads(path.read_text())
    assert result["world"] == 2 and result["same_weights"] and result["same_history"]
    assert len(result["history"]["loss"]) == 3 and result["history"]["loss"][-1] < result["history"]["loss"][0]
    assert out.count("Epoch 1/3") == 1, f"only rank 0 prints:\n{out}"


# --- threads: BLAS pools and the extension's kernels ----------------------------------------

def _threads_in_subprocess(code, **env_vars):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV_VARS + THREAD_VARS}
    env.update(PYTHONPATH=ROOT, **env_vars)
    out = subprocess.run([sys.executable, "-c", "import json, minigrad as mg\n" + code], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


BLAS_THREADS = ("from threadpoolctl import threadpool_info\n"
                "(mg.ones(4, 4) @ mg.ones(4, 4)).numpy()\n"
                "blas = sorted({i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'})\n"
                "kernels = mg.backend.ext().get_num_threads() if mg.backend.ext() else mg.get_num_threads()\n")


def test_set_num_threads_sets_blas_and_kernel_threads():
    got = _threads_in_subprocess(
        "mg.set_num_threads(1)\n" + BLAS_THREADS +
        "print(json.dumps([mg.get_num_threads(), blas, kernels, mg.backend.threads_info()]))")
    assert got == [1, [1], 1, "1 (mg.set_num_threads)"]
    got = _threads_in_subprocess(BLAS_THREADS + "print(json.dumps([mg.get_num_threads(), blas, kernels]))",
                                 MINIGRAD_NUM_THREADS="1")
    assert got == [1, [1], 1]
    with pytest.raises(ValueError, match="positive"):
        mg.set_num_threads(0)
    with pytest.raises(TypeError, match="int"):
        mg.set_num_threads(1.5)


@pytest.mark.parametrize("env,expected", [({}, 2), ({"MINIGRAD_NUM_THREADS": "3"}, 3),
                                          ({"OMP_NUM_THREADS": "5"}, None)])
def test_a_rank_uses_its_share_of_the_cores_unless_a_count_is_set(env, expected):
    """share_threads(cores=4, ranks=2): 2 each; a count the user set stays as it is."""
    got = _threads_in_subprocess(
        "before = mg.get_num_threads()\n"
        "print(json.dumps([before, mg.backend.share_threads(4, 2), mg.get_num_threads(), mg.backend.threads_info()]))",
        **env)
    before, shared, after, info = got
    assert shared == after == (before if expected is None else expected), got
    if env == {}:
        assert info == "2 (4 cores shared by 2 ranks on this node)"
    if "OMP_NUM_THREADS" in env:
        assert "OMP_NUM_THREADS=5" in info, info


@pytest.mark.mpi
@pytest.mark.skipif(not HAVE_MPI, reason="needs mpiexec and mpi4py (pip install 'minigrad[mpi]')")
def test_ranks_share_the_cores():
    """mpiexec -n 2 without thread settings: each rank runs cores / 2 BLAS and kernel threads (at least 1)."""
    code, out, _ = launch("threads.py", timeout=60)
    assert code == 0, out
    ranks = json.loads(out.strip().splitlines()[-1])
    for r in ranks:
        share = max(1, r["cores"] // r["local_size"])
        assert r["local_size"] == 2 and r["threads"] == share, r
        assert set(r["blas"].values()) == {share} and r["kernels"] in (share, None), r
        assert "shared by 2 ranks on this node" in r["info"], r
