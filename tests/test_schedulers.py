"""mg.optim.lr_scheduler: MultiStepLR, LambdaLR, LinearLR, OneCycleLR and ReduceLROnPlateau against
PyTorch's lr (and momentum) sequences over many steps, and state_dict / checkpoint round trips."""
import math

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim
from minigrad.optim import lr_scheduler

from conftest import torch

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")


def pair(name="SGD", groups=1, **kw):
    """The same optimizer over one-parameter groups, in minigrad and in PyTorch."""
    kw = kw or (dict(lr=0.1, momentum=0.9) if name == "SGD" else dict(lr=1e-3))
    ours = [{"params": [nn.Parameter(mg.zeros(2))], "lr": kw["lr"] * (i + 1)} for i in range(groups)]
    theirs = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": kw["lr"] * (i + 1)} for i in range(groups)]
    return getattr(optim, name)(ours, **kw), getattr(torch.optim, name)(theirs, **kw)


def momenta(opt):
    return [g["betas"][0] if "betas" in g else g.get("momentum") for g in opt.param_groups]


def run(sched, opt, steps, metrics=None):
    """lrs and momenta after construction and after each step."""
    lrs, ms = [[g["lr"] for g in opt.param_groups]], [momenta(opt)]
    for i in range(steps):
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[i])
        lrs.append([g["lr"] for g in opt.param_groups])
        ms.append(momenta(opt))
    return np.array(lrs), np.array(ms, dtype=float)


CLOSED_FORM = [
    ("MultiStepLR", dict(milestones=[30, 5, 12, 12], gamma=0.5)),
    ("MultiStepLR", dict(milestones=[3])),
    ("LinearLR", dict()),
    ("LinearLR", dict(start_factor=0.05, end_factor=0.8, total_iters=40)),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.0, total_iters=17)),
]


@needs_torch
@pytest.mark.parametrize("name, kwargs", CLOSED_FORM, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CLOSED_FORM)])
def test_closed_form_schedulers_like_pytorch(name, kwargs):
    opt, topt = pair(groups=2)
    ours = run(getattr(lr_scheduler, name)(opt, **kwargs), opt, 80)
    theirs = run(getattr(torch.optim.lr_scheduler, name)(topt, **kwargs), topt, 80)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12, atol=1e-15)   # PyTorch chains, rounding apart


@needs_torch
def test_lambda_lr_like_pytorch():
    fns = [lambda t: 0.95 ** t, lambda t: 1.0 / (1 + 0.1 * t) if t < 20 else 0.5]
    opt, topt = pair(groups=2)
    ours = run(lr_scheduler.LambdaLR(opt, fns), opt, 60)
    theirs = run(torch.optim.lr_scheduler.LambdaLR(topt, fns), topt, 60)
    np.testing.assert_array_equal(ours[0], theirs[0])
    opt, topt = pair(groups=2)
    np.testing.assert_array_equal(run(lr_scheduler.LambdaLR(opt, fns[0]), opt, 30)[0],
                                  run(torch.optim.lr_scheduler.LambdaLR(topt, fns[0]), topt, 30)[0])
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
        lr_scheduler.LambdaLR(opt, fns[:1])


ONE_CYCLE = [
    ("SGD", dict(max_lr=1.0, total_steps=100)),
    ("SGD", dict(max_lr=[0.5, 2.0], epochs=7, steps_per_epoch=13, pct_start=0.25, anneal_strategy="linear")),
    ("SGD", dict(max_lr=0.3, total_steps=90, three_phase=True, div_factor=10.0, final_div_factor=100.0)),
    ("Adam", dict(max_lr=1e-2, total_steps=75, base_momentum=0.8, max_momentum=0.9)),
    ("Adam", dict(max_lr=1e-2, total_steps=60, three_phase=True, anneal_strategy="linear", cycle_momentum=False)),
    ("AdamW", dict(max_lr=3e-3, total_steps=50, pct_start=0.5)),
]


@needs_torch
@pytest.mark.parametrize("opt_name, kwargs", ONE_CYCLE, ids=[f"{n}-{i}" for i, (n, _) in enumerate(ONE_CYCLE)])
def test_one_cycle_like_pytorch(opt_name, kwargs):
    opt, topt = pair(opt_name, groups=2)
    sched, tsched = lr_scheduler.OneCycleLR(opt, **kwargs), torch.optim.lr_scheduler.OneCycleLR(topt, **kwargs)
    steps = sched.total_steps
    ours, theirs = run(sched, opt, steps - 1), run(tsched, topt, steps - 1)
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])
    for key in ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum"):
        assert [g.get(key) for g in opt.param_groups] == [g.get(key) for g in topt.param_groups], key
    sched.step()                                         # step total_steps still computes
    with pytest.raises(ValueError, match="Tried to step .* times. The specified number of total steps is"):
        sched.step()
    assert sched.step_per_batch


def test_one_cycle_argument_errors():
    opt, _ = pair() if torch is not None else (optim.SGD([nn.Parameter(mg.zeros(1))], lr=0.1, momentum=0.9), None)
    with pytest.raises(ValueError, match="total_steps OR"):
        lr_scheduler.OneCycleLR(opt, max_lr=1.0)
    with pytest.raises(ValueError, match="anneal_strategy"):
        lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10, anneal_strategy="exp")
    with pytest.raises(ValueError, match="support momentum or beta1"):
        lr_scheduler.OneCycleLR(optim.Adagrad([nn.Parameter(mg.zeros(1))]), max_lr=1.0, total_steps=10)
    lr_scheduler.OneCycleLR(optim.Adagrad([nn.Parameter(mg.zeros(1))]), max_lr=1.0, total_steps=10,
                            cycle_momentum=False)


def plateau_metrics(n=120, seed=0):
    """Falls, stalls, wobbles inside the threshold, falls again: every branch of the rule."""
    rng = np.random.default_rng(seed)
    base = np.concatenate([np.linspace(1.0, 0.5, 20), np.full(30, 0.5), np.linspace(0.5, 0.2, 20), np.full(50, 0.2)])
    return list(base[:n] + rng.choice([0.0, 1e-6, -1e-6, 1e-3], n))


PLATEAU = [
    dict(),
    dict(mode="max", factor=0.5, patience=3),
    dict(patience=2, threshold=1e-2, threshold_mode="abs", cooldown=4),
    dict(patience=0, factor=0.3, min_lr=[1e-3, 5e-3]),
    dict(patience=1, factor=0.5, min_lr=0.02, eps=1e-3),
    dict(mode="max", threshold_mode="abs", threshold=0.0, patience=4, cooldown=2),
]


@needs_torch
@pytest.mark.parametrize("kwargs", PLATEAU)
def test_reduce_lr_on_plateau_like_pytorch(kwargs):
    metrics = plateau_metrics()
    if kwargs.get("mode") == "max":
        metrics = [2.0 - m for m in metrics]
    opt, topt = pair(groups=2)
    ours = run(lr_scheduler.ReduceLROnPlateau(opt, **kwargs), opt, len(metrics), metrics)
    theirs = run(torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs), topt, len(metrics), metrics)
    np.testing.assert_array_equal(ours[0], theirs[0])
    assert len(set(ours[0][:, 0])) > 1                     # it did reduce


def test_reduce_lr_on_plateau_errors_and_tensor_metric():
    opt = optim.SGD([nn.Parameter(mg.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="factor must be < 1.0"):
        lr_scheduler.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        lr_scheduler.ReduceLROnPlateau(opt, mode="up")
    with pytest.raises(ValueError, match="threshold_mode"):
        lr_scheduler.ReduceLROnPlateau(opt, threshold_mode="pct")
    s = lr_scheduler.ReduceLROnPlateau(opt, patience=0)
    s.step(mg.tensor(1.0))
    s.step(mg.tensor(2.0))
    assert s.get_last_lr() == [0.1]


# --- state dicts and checkpoints ---------------------------------------------------------------
def _adjust(t):
    return 0.9 ** t


class Warmup:
    """A callable object: LambdaLR saves its attributes."""

    def __init__(self, n):
        self.n = n

    def __call__(self, t):
        return min(1.0, (t + 1) / self.n)


SCHEDULERS = [
    ("SGD", lambda o: lr_scheduler.MultiStepLR(o, milestones=[4, 9, 15], gamma=0.5)),
    ("SGD", lambda o: lr_scheduler.LambdaLR(o, _adjust)),
    ("SGD", lambda o: lr_scheduler.LambdaLR(o, Warmup(12))),
    ("SGD", lambda o: lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=25)),
    ("SGD", lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=40)),
    ("Adam", lambda o: lr_scheduler.OneCycleLR(o, max_lr=1e-2, total_steps=40, three_phase=True)),
    ("SGD", lambda o: lr_scheduler.ReduceLROnPlateau(o, patience=1, cooldown=1)),
]


def _train(model, opt, sched, data, metrics):
    loss_fn = nn.CrossEntropyLoss()
    lrs = []
    for (x, y), m in zip(data, metrics):
        opt.zero_grad()
        loss_fn(model(mg.tensor(x)), mg.tensor(y)).backward()
        opt.step()
        sched.step(m) if isinstance(sched, lr_scheduler.ReduceLROnPlateau) else sched.step()
        lrs.append([g["lr"] for g in opt.param_groups] + momenta(opt))
    return lrs, [p.numpy().copy() for p in model.parameters()]


def _setup(opt_name, make):
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8, activation="relu"), nn.Linear(8, 3))
    opt = getattr(optim, opt_name)(model.parameters(), **({"lr": 0.1, "momentum": 0.9} if opt_name == "SGD" else {}))
    return model, opt, make(opt)


@pytest.mark.parametrize("via_checkpoint", [False, True], ids=["state_dict", "checkpoint"])
@pytest.mark.parametrize("opt_name, make", SCHEDULERS, ids=[f"{i}" for i in range(len(SCHEDULERS))])
def test_resume_continues_exactly(tmp_path, opt_name, make, via_checkpoint):
    rng = np.random.default_rng(0)
    data = [(rng.standard_normal((6, 4)).astype(np.float32), rng.integers(0, 3, 6)) for _ in range(36)]
    metrics = plateau_metrics(36)
    model, opt, sched = _setup(opt_name, make)
    straight = _train(model, opt, sched, data, metrics)

    model, opt, sched = _setup(opt_name, make)
    first = _train(model, opt, sched, data[:18], metrics[:18])
    path = tmp_path / "c.safetensors"
    if via_checkpoint:
        mg.save_checkpoint(path, model=model, optimizer=opt, scheduler=sched)
    else:
        saved = ({k: v.numpy().copy() for k, v in model.state_dict().items()}, opt.state_dict(), sched.state_dict())
    model, opt, sched = _setup(opt_name, make)
    if via_checkpoint:
        mg.load_checkpoint(path, model=model, optimizer=opt, scheduler=sched)
    else:
        model.load_state_dict(saved[0])
        opt.load_state_dict(saved[1])
        sched.load_state_dict(saved[2])
    second = _train(model, opt, sched, data[18:], metrics[18:])
    assert first[0] + second[0] == straight[0]
    for a, b in zip(second[1], straight[1]):
        np.testing.assert_array_equal(a, b)


def test_lambda_lr_state_dict_keeps_callable_objects_only():
    opt = optim.SGD([nn.Parameter(mg.zeros(1))], lr=1.0)
    warm = Warmup(5)
    sd = lr_scheduler.LambdaLR(opt, [warm]).state_dict()
    assert sd["lr_lambdas"] == [{"n": 5}]
    assert lr_scheduler.LambdaLR(opt, _adjust).state_dict()["lr_lambdas"] == [None]
    other = Warmup(50)
    s = lr_scheduler.LambdaLR(opt, other)
    s.load_state_dict(sd)
    assert other.n == 5 and opt.param_groups[0]["lr"] == pytest.approx(0.2)
