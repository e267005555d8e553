"""Tensor and pipeline parallelism: schedules as data, the device mesh, the layers, and real ranks.

In-process tests cover what needs no peers (the schedule validator and simulator, splitting a
model, a world of one). The equivalence tests launch tests/dist_scripts/tp_pp_checks.py once on
2 ranks and once on 4 (float64, 10 steps of SGD with momentum and of Adam, 1e-10 relative).
"""
import json
from fractions import Fraction

import numpy as np
import pytest

import minigrad as mg
import minigrad.distributed as dist
from minigrad.distributed import comm
from minigrad.distributed.schedule import (SCHEDULES, Action, ScheduleError, Step, Transfer, bubble_fraction,
                                           draw_timeline, peak_in_flight, pipeline_steps, simulate, validate)
from test_distributed import HAVE_MPI, LAUNCH_ENV_VARS, launch, needs_nccl, world_of_one  # noqa: F401 (a fixture)


# --- schedules as data ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["gpipe", "1f1b"])
def test_schedules_are_valid_and_their_bubble_is_the_formula(kind):
    """p = 1..8 stages, m = 1..32 micro-batches: every send has its receive, the simulation under a
    transport where a send waits for its receive finishes (no deadlock), 1F1B holds at most p - s
    micro-batches on stage s (GPipe: m), and the idle share is (p - 1) / (m + p - 1), whether a
    backward takes as long as a forward or twice as long."""
    for p in range(1, 9):
        for m in range(1, 33):
            actions = SCHEDULES[kind](p, m)
            steps = pipeline_steps(actions)
            validate(steps, m, max_in_flight=p if kind == "1f1b" else None)
            bound = [min(p - s, m) for s in range(p)] if kind == "1f1b" else [m] * p
            assert peak_in_flight(actions) == bound, (p, m)
            for backward_time in (1, 2):
                timeline = simulate(steps, 1, backward_time)
                assert bubble_fraction(timeline) == Fraction(p - 1, m + p - 1), (p, m, backward_time)
                assert max(end for _, _, end in timeline[0]) == (m + p - 1) * (1 + backward_time)


def test_one_f_one_b_order():
    assert [repr(a) for a in SCHEDULES["1f1b"](3, 4)[0]] == "F0 F1 F2 B0 F3 B1 B2 B3".split()
    assert [repr(a) for a in SCHEDULES["1f1b"](3, 4)[2]] == "F0 B0 F1 B1 F2 B2 F3 B3".split()
    assert [repr(a) for a in SCHEDULES["gpipe"](2, 2)[1]] == "F0 F1 B0 B1".split()


def test_steps_post_a_sends_with_the_next_receive():
    steps = pipeline_steps(SCHEDULES["1f1b"](2, 2))
    # stage 0: F0 F1 B0 B1; the activation of F1 goes out with the receive of B0's gradient
    assert steps[0][2] == Step((Transfer("send", "act", 1, 1), Transfer("recv", "grad", 0, 1)), Action("B", 0))
    assert steps[1][-1] == Step((Transfer("send", "grad", 1, 0),), None)


def _send_first(steps):
    """The same transfers, each waited for on its own, sends before receives (no batching)."""
    out = []
    for stage in steps:
        split = []
        for step in stage:
            ordered = sorted(step.transfers, key=lambda t: t.op != "send")
            split += [Step((t,), None) for t in ordered[:-1]]
            split.append(Step(tuple(ordered[-1:]), step.action))
        out.append(split)
    return out


def test_validator_catches_broken_schedules():
    good = pipeline_steps(SCHEDULES["1f1b"](2, 2))
    validate(good, 2, max_in_flight=2)
    # sends posted before receives, one at a time, deadlock once a send waits for its receive
    with pytest.raises(ScheduleError, match="deadlocks"):
        validate(_send_first(good), 2)
    with pytest.raises(ScheduleError, match="holds 2 micro-batches in flight, more than 1"):
        validate(good, 2, max_in_flight=1)
    lost = [good[0], [Step(tuple(t for t in s.transfers if t.what != "grad"), s.action) for s in good[1]]]
    with pytest.raises(ScheduleError, match=r"grad0 from stage 1 to stage 0: 0 send\(s\) and 1 receive"):
        validate(lost, 2)
    itself = [[Step((Transfer("send", "act", 0, 0),), Action("F", 0)), Step((), Action("B", 0))]]
    with pytest.raises(ScheduleError, match="addresses itself"):
        validate(itself, 1)
    backwards = [[Step((), Action("B", 0)), Step((), Action("F", 0))]]
    with pytest.raises(ScheduleError, match="before its forward"):
        validate(backwards, 1)
    with pytest.raises(ScheduleError, match="missing"):
        validate([[Step((), Action("F", 0)), Step((), Action("B", 0))]], 2)
    crossed = [[Step((Transfer("recv", "grad", 0, 1),), Action("F", 0)), Step((Transfer("send", "act", 0, 1),), Action("B", 0))],
               [Step((Transfer("recv", "act", 0, 0),), Action("F", 0)), Step((Transfer("send", "grad", 0, 0),), Action("B", 0))]]
    with pytest.raises(ScheduleError, match="stage 0 at step 0 waits for"):
        validate(crossed, 1)
    with pytest.raises(ValueError, match="n_microbatches must be a positive int"):
        SCHEDULES["gpipe"](2, 0)


def test_timeline_png(tmp_path):
    path = tmp_path / "t.png"
    draw_timeline(simulate(pipeline_steps(SCHEDULES["1f1b"](3, 4))), str(path), "1F1B")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- splitting a model -------------------------------------------------------------------------

def _mlp(*sizes):
    mg.manual_seed(0)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [mg.nn.Linear(a, b), mg.nn.Tanh()]
    return mg.nn.Sequential(*layers[:-1]).double()


def test_split_sequential():
    model = _mlp(3, 4, 5, 6, 2)                                  # 7 modules
    pieces = dist.split_sequential(model, 3)
    assert [len(p) for p in pieces] == [3, 2, 2]
    assert [list(p._modules) for p in pieces] == [["0", "1", "2"], ["3", "4"], ["5", "6"]]
    assert pieces[0][0] is model[0], "the pieces share the model's modules"
    keys = [k for p in pieces for k in p.state_dict()]
    assert keys == list(model.state_dict()), "no module dropped, names kept"
    assert [len(p) for p in dist.split_sequential(model, 2, balance=[1, 6])] == [1, 6]
    assert len(dist.split_sequential(model, 7)) == 7
    with pytest.raises(ValueError, match="cannot split 7 modules into 8"):
        dist.split_sequential(model, 8)
    with pytest.raises(ValueError, match="add up to the model's 7 modules"):
        dist.split_sequential(model, 2, balance=[3, 3])
    with pytest.raises(ValueError, match="at least one"):
        dist.split_sequential(model, 2, balance=[0, 7])


# --- a world of one --------------------------------------------------------------------------

def test_mesh_of_one(world_of_one):
    mesh = dist.init_device_mesh("cpu", (1, 1, 1), mesh_dim_names=("dp", "pp", "tp"))
    assert mesh.size() == 1 and mesh.size("tp") == 1 and mesh.get_local_rank("pp") == 0
    assert mesh.get_coordinate() == [0, 0, 0]
    group = mesh.get_group("dp")
    assert group.world_size == 1 and group.all_gather(np.arange(3.0)).tolist() == [[0.0, 1.0, 2.0]]
    with pytest.raises(ValueError, match="multiply to the world size"):
        dist.init_device_mesh("cpu", (2, 1), mesh_dim_names=("pp", "tp"))
    with pytest.raises(ValueError, match="name each of the 2 dimensions once"):
        dist.init_device_mesh("cpu", (1, 1), mesh_dim_names=("pp", "pp"))
    with pytest.raises(KeyError, match="no mesh dimension named 'ep'"):
        mesh.get_group("ep")
    with pytest.raises(ValueError, match="device_type"):
        dist.init_device_mesh("tpu", (1,))


def test_tensor_parallel_of_one_is_linear(world_of_one):
    full = _mlp(4, 6)[0]
    full.activation = "relu"
    col = dist.ColumnParallelLinear.from_linear(full)
    full.activation = None
    row = dist.RowParallelLinear.from_linear(full, input_is_parallel=False)
    x = mg.tensor(np.random.default_rng(0).normal(size=(5, 4)))
    assert np.array_equal(col(x).numpy(), np.maximum(full(x).numpy(), 0))
    assert np.allclose(row(x).numpy(), full(x).numpy(), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="activation='tanh', which must follow the sum"):
        dist.RowParallelLinear.from_linear(mg.nn.Linear(4, 6, activation="tanh"))


class _Pair(comm.Communicator):
    """A pretend group of two, enough for the layers' size checks."""
    name, world_size, rank = "pair", 2, 1


def test_tensor_parallel_sizes_must_divide():
    with pytest.raises(ValueError, match=r"out_features \(5\) must be divisible by the tensor-parallel group's size \(2\)"):
        dist.ColumnParallelLinear(3, 5, group=_Pair())
    with pytest.raises(ValueError, match=r"in_features \(3\) must be divisible"):
        dist.RowParallelLinear(3, 4, group=_Pair())
    col = dist.ColumnParallelLinear(3, 4, bias=False, group=_Pair())
    assert col.weight.shape == (2, 3) and col.bias is None
    row = dist.RowParallelLinear(6, 4, group=_Pair())
    assert row.weight.shape == (4, 3) and row.bias.shape == (4,)


@pytest.mark.parametrize("kind", [dist.ScheduleGPipe, dist.Schedule1F1B])
def test_pipeline_of_one_stage_is_the_batch_gradient(world_of_one, kind):
    model = _mlp(3, 5, 2)
    rng = np.random.default_rng(1)
    x, y = mg.tensor(rng.normal(size=(8, 3))), mg.tensor(rng.normal(size=(8, 2)))
    sched = kind(dist.PipelineStage(model, 0, 1), 4, loss_fn=mg.nn.functional.mse_loss)
    losses = []
    out = sched.step(x, target=y, losses=losses)
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    loss = mg.nn.functional.mse_loss(model(x), y)
    loss.backward()
    for g, p in zip(grads, model.parameters()):
        assert np.allclose(g, p.grad.numpy(), rtol=1e-13, atol=1e-15)
    assert np.allclose(out.numpy(), model(x).numpy(), rtol=0, atol=1e-15)
    assert len(losses) == 4 and np.isclose(np.mean([v.item() for v in losses]), loss.item(), rtol=1e-14)
    with pytest.raises(ValueError, match="batch of 8 samples does not split into 3 equal micro-batches"):
        kind(dist.PipelineStage(model, 0, 1), 3, loss_fn=mg.nn.functional.mse_loss).step(x, target=y)
    with pytest.raises(ValueError, match="needs the targets"):
        sched.step(x)
    with pytest.raises(ValueError, match="a pipeline of 2 stages needs a group of 2 ranks, found 1"):
        dist.PipelineStage(model, 0, 2)
    with pytest.raises(ValueError, match="last stage needs loss_fn"):
        kind(dist.PipelineStage(model, 0, 1), 2)


@pytest.mark.cuda
@needs_nccl
def test_nccl_groups_layers_and_pipeline_of_one(monkeypatch):
    """The NCCL paths on one GPU: sub-communicators, all_gather, a send to oneself and a receive
    in one group, tensor-parallel layers and a one-stage pipeline on "cuda"."""
    from minigrad import backend
    cp = backend.cupy()
    for var in LAUNCH_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    dist.destroy_process_group()
    try:
        dist.init_process_group("nccl")
        mesh = dist.init_device_mesh("cuda", (1, 1), mesh_dim_names=("pp", "tp"))
        tp = mesh.get_group("tp")
        assert tp.nccl is not None and tp.nccl is not dist.get_process_group().nccl
        a = cp.asarray(np.arange(6.0).reshape(2, 3))
        assert tp.all_gather(a).get().tolist() == [np.arange(6.0).reshape(2, 3).tolist()]
        b = cp.zeros((2, 3))
        tp.exchange([comm.P2POp("send", a, 0), comm.P2POp("recv", b, 0)])
        assert np.array_equal(b.get(), a.get())

        full = _mlp(4, 6)[0].to("cuda:0")
        col = dist.ColumnParallelLinear.from_linear(full, group=tp, gather_output=True)
        row = dist.RowParallelLinear.from_linear(full, group=tp, input_is_parallel=False)
        x = mg.tensor(np.random.default_rng(0).normal(size=(5, 4)), device="cuda:0", requires_grad=True)
        (col(x).sum() + row(x).sum()).backward()
        assert col.weight.grad.device == x.device and np.allclose(x.grad.numpy(), 2 * full.weight.numpy().sum(0))

        model = _mlp(3, 5, 2).to("cuda:0")
        y = mg.tensor(np.ones((4, 2)), device="cuda:0")
        sched = dist.Schedule1F1B(dist.PipelineStage(model, 0, 1, group=mesh.get_group("pp")), 2,
                                  loss_fn=mg.nn.functional.mse_loss)
        out = sched.step(mg.tensor(np.ones((4, 3)), device="cuda:0"), target=y)
        assert out.device == y.device and model[0].weight.grad is not None
    finally:
        dist.destroy_process_group()


# --- real ranks ----------------------------------------------------------------------------------

COMMON = ["gpipe_matches_single_process", "one_f_one_b_matches_single_process", "one_microbatch",
          "two_microbatches", "uneven_stages", "bad_batches_are_reported",
          "a_missing_peer_times_out_naming_stage_microbatch_and_peer"]
CHECKS = {2: COMMON + ["f_and_g_operators_are_exact", "hybrid_two_ranks", "trainer_fit_pipelined_equals_tensor_parallel",
                       "tensor_parallel_layers_hold_their_slice", "tensor_parallel_matches_single_process"],
          4: COMMON + ["data_parallel_times_pipeline", "pipeline_times_tensor_parallel", "hybrid_four_ranks",
                       "four_stages_eight_microbatches_hold_at_most_p"]}
_runs = {}


def _run(n, tmp_path_factory):
    if n not in _runs:
        path = tmp_path_factory.mktemp(f"tp_pp_{n}") / "result.json"
        code, out, _ = launch("tp_pp_checks.py", str(path), n=n, timeout=240, dist_timeout=60)
        _runs[n] = code, out, json.loads(path.read_text()) if path.exists() else {}
    return _runs[n]


@pytest.mark.mpi
@pytest.mark.skipif(not HAVE_MPI, reason="needs mpiexec and mpi4py (pip install 'minigrad[mpi]')")
@pytest.mark.parametrize("n,name", [(n, name) for n in (2, 4) for name in CHECKS[n]])
def test_ranks_match_one_process(n, name, tmp_path_factory):
    """TP=2, PP=2 (GPipe, 1F1B, m=1, m=2), PP=4 with 8 micro-batches, DP=2 x PP=2, PP=2 x TP=2,
    uneven stages: the weights after 10 steps of SGD with momentum and of Adam equal one
    process's to 1e-10 (relative)."""
    code, out, result = _run(n, tmp_path_factory)
    status = result.get(name)
    assert status == "ok", status or f"check not reached (exit code {code}):\n{out[-4000:]}"


@pytest.mark.mpi
@pytest.mark.skipif(not HAVE_MPI, reason="needs mpiexec and mpi4py (pip install 'minigrad[mpi]')")
@pytest.mark.parametrize("n", [2, 4])
def test_ranks_exit_cleanly(n, tmp_path_factory):
    code, out, _ = _run(n, tmp_path_factory)
    assert code == 0, out[-4000:]


@pytest.mark.mpi
@pytest.mark.skipif(not HAVE_MPI, reason="needs mpiexec and mpi4py (pip install 'minigrad[mpi]')")
def test_cli_trains_pipelined_and_tensor_parallel():
    import subprocess
    import sys

    from test_distributed import MPIEXEC, ROOT, _mpiexec_flags
    env = {k: v for k, v in __import__("os").environ.items() if k not in LAUNCH_ENV_VARS}
    env.update(PYTHONPATH=ROOT, MINIGRAD_DIST_TIMEOUT="60", OMP_NUM_THREADS="1")
    cmd = [MPIEXEC, *_mpiexec_flags(), "-n", "4", sys.executable, "-m", "minigrad", "train", "--pipeline-parallel",
           "2", "--tensor-parallel", "2", "--hidden", "32,16", "--epochs", "2", "--verbose", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "4 ranks (pipeline 2 x tensor 2 x data 1)" in out.stdout and out.stdout.count("Epoch 2/2") == 1
    accuracy = float(out.stdout.split("test accuracy")[1].split()[0])
    assert accuracy > 0.5, out.stdout           # 10 classes: it learns (2 short epochs of a small model)
