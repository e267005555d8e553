"""mg.optim: PyTorch parity of SGD / Adam / AdamW / RMSprop / Adagrad over 60 steps, per-parameter
state (following replaced arrays, skipped parameters), the fused C++ update against the plain one,
state dicts with exact resume, Keras' arguments and argument validation."""
import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim
from minigrad.optim import lr_scheduler

from conftest import torch

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")
STEPS = 60


def make_model(dtype=mg.float64, seed=0):
    mg.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7, activation="relu"), nn.Linear(7, 4, activation="tanh"),
                         nn.Linear(4, 3)).to(dtype)


def batches(n=STEPS, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((8, 5)), rng.integers(0, 3, 8)) for _ in range(n)]


def train(model, opt, data, sched=None, dtype=np.float64):
    loss_fn = nn.CrossEntropyLoss()
    for x, y in data:
        opt.zero_grad()
        loss_fn(model(mg.tensor(x.astype(dtype))), mg.tensor(y)).backward()
        opt.step()
        if sched is not None:
            sched.step()
    return [p.numpy().copy() for p in model.parameters()]


def torch_model(model):
    t = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 4), torch.nn.Tanh(),
                            torch.nn.Linear(4, 3)).double()
    with torch.no_grad():
        for p, q in zip(t.parameters(), model.parameters()):
            p.copy_(torch.tensor(q.numpy()))
    return t


def torch_train(t, opt, data, sched=None):
    loss_fn = torch.nn.CrossEntropyLoss()
    for x, y in data:
        opt.zero_grad()
        loss_fn(t(torch.tensor(x)), torch.tensor(y)).backward()
        opt.step()
        if sched is not None:
            sched.step()
    return [p.detach().numpy() for p in t.parameters()]


def assert_params_close(a, b, rtol=1e-9, atol=1e-12):
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


OPTIMIZERS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.5, nesterov=True, weight_decay=1e-3)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("Adam", dict(lr=1e-2, betas=(0.3, 0.9))),        # torch.lerp's other branch (weight >= 0.5)
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=1e-3, alpha=0.9, eps=1e-6, weight_decay=1e-2, momentum=0.9)),
    ("RMSprop", dict(lr=1e-3, centered=True)),
    ("RMSprop", dict(lr=1e-3, alpha=0.3, momentum=0.5, centered=True)),  # lerp's other branch
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.05, lr_decay=1e-2, weight_decay=1e-2, initial_accumulator_value=0.1, eps=1e-6)),
]


@needs_torch
@pytest.mark.parametrize("name, kwargs", OPTIMIZERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIMIZERS)])
def test_torch_parity_60_steps(name, kwargs):
    model = make_model()
    t = torch_model(model)
    data = batches()
    ours = train(model, getattr(optim, name)(model.parameters(), **kwargs), data)
    theirs = torch_train(t, getattr(torch.optim, name)(t.parameters(), **kwargs), data)
    assert_params_close(ours, theirs)


SCHEDULERS = [
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("ExponentialLR", dict(gamma=0.95)),
    ("CosineAnnealingLR", dict(T_max=25, eta_min=1e-3)),   # 60 steps run past T_max: the cosine continues
]


@needs_torch
@pytest.mark.parametrize("name, kwargs", SCHEDULERS)
def test_torch_parity_schedulers(name, kwargs):
    model = make_model()
    t = torch_model(model)
    data = batches()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    topt = torch.optim.SGD(t.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    sched = getattr(lr_scheduler, name)(opt, **kwargs)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    lrs, tlrs = [], []
    for x, y in data:
        train(model, opt, [(x, y)], sched)
        torch_train(t, topt, [(x, y)], tsched)
        lrs.append(sched.get_last_lr()[0])
        tlrs.append(tsched.get_last_lr()[0])
    np.testing.assert_allclose(lrs, tlrs, rtol=1e-12, atol=1e-15)
    assert_params_close([p.numpy() for p in model.parameters()], [p.detach().numpy() for p in t.parameters()])


@needs_torch
def test_torch_parity_inverse_time_decay_as_lambda_lr():
    model = make_model()
    t = torch_model(model)
    data = batches()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    topt = torch.optim.SGD(t.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    ours = train(model, opt, data, lr_scheduler.InverseTimeDecay(opt, decay=0.01))
    theirs = torch_train(t, topt, data, torch.optim.lr_scheduler.LambdaLR(topt, lambda i: 1.0 / (1.0 + 0.01 * i)))
    assert_params_close(ours, theirs)


@needs_torch
@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_torch_parity_parameters_without_grad_are_skipped(name):
    """A parameter that gets no gradient on some steps is skipped (no momentum, no Adam step count)."""
    mg.manual_seed(0)
    a, b = nn.Linear(4, 3).double(), nn.Linear(4, 3).double()
    ta, tb = torch.nn.Linear(4, 3).double(), torch.nn.Linear(4, 3).double()
    with torch.no_grad():
        for p, q in zip(list(ta.parameters()) + list(tb.parameters()), list(a.parameters()) + list(b.parameters())):
            p.copy_(torch.tensor(q.numpy()))
    kw = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=0.01)
    opt = getattr(optim, name)(list(a.parameters()) + list(b.parameters()), **kw)
    topt = getattr(torch.optim, name)(list(ta.parameters()) + list(tb.parameters()), **kw)
    rng = np.random.default_rng(0)
    for i in range(STEPS):
        x = rng.standard_normal((6, 4))
        use_b = i % 3 == 0
        opt.zero_grad(), topt.zero_grad()
        out = a(mg.tensor(x)) + b(mg.tensor(x)) if use_b else a(mg.tensor(x))
        tout = ta(torch.tensor(x)) + tb(torch.tensor(x)) if use_b else ta(torch.tensor(x))
        (out * out).sum().backward()
        (tout * tout).sum().backward()
        opt.step(), topt.step()
    assert_params_close([p.numpy() for p in list(a.parameters()) + list(b.parameters())],
                        [p.detach().numpy() for p in list(ta.parameters()) + list(tb.parameters())])
    if name == "Adam":
        steps = [opt.state[p]["step"] for p in opt.param_groups[0]["params"]]
        assert steps == [STEPS, STEPS, STEPS // 3, STEPS // 3]


@needs_torch
def test_torch_parity_param_groups():
    model = make_model()
    t = torch_model(model)
    ps, tps = list(model.parameters()), list(t.parameters())
    opt = optim.Adam([{"params": ps[:2], "lr": 0.05}, {"params": ps[2:]}], lr=0.01)
    topt = torch.optim.Adam([{"params": tps[:2], "lr": 0.05}, {"params": tps[2:]}], lr=0.01)
    data = batches()
    assert_params_close(train(model, opt, data), torch_train(t, topt, data))
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.01]


# --- per-parameter state -----------------------------------------------------------------------
def test_state_is_per_parameter_with_pytorch_keys():
    model = make_model(mg.float32)
    opt = optim.Adam(model.parameters(), lr=0.1)
    assert len(opt.state) == 0
    train(model, opt, batches(2), dtype=np.float32)
    for p in model.parameters():
        st = opt.state[p]
        assert set(st) == {"step", "exp_avg", "exp_avg_sq"} and st["step"] == 2
        assert isinstance(st["exp_avg"], mg.Tensor) and st["exp_avg"].shape == p.shape
        assert st["exp_avg"].dtype == np.float32


def test_mixed_dtypes_keep_their_own_state():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2).double()
    opt = optim.Adam(list(a.parameters()) + list(b.parameters()))
    a(mg.ones(1, 3)).sum().backward()
    b(mg.ones(1, 3, dtype=mg.float64)).sum().backward()
    before = [p.numpy().copy() for p in list(a.parameters()) + list(b.parameters())]
    opt.step()
    after = [p.numpy() for p in list(a.parameters()) + list(b.parameters())]
    assert all((x != y).any() for x, y in zip(before[::2], after[::2]))   # weights moved
    assert a.weight.dtype == np.float32 and b.weight.dtype == np.float64
    assert opt.state[a.weight]["exp_avg"].dtype == np.float32 and opt.state[b.weight]["exp_avg"].dtype == np.float64


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_model_to_after_optimizer_moves_the_state(name):
    """model.to(dtype) replaces the parameters' arrays: the optimizer must train the new ones and
    carry its state over, exactly as an optimizer rebuilt from a state dict would."""
    data = batches(12)
    kw = dict(lr=0.05, momentum=0.9, nesterov=True) if name == "SGD" else dict(lr=0.01)
    m1 = make_model(mg.float32)
    o1 = getattr(optim, name)(m1.parameters(), **kw)
    train(m1, o1, data[:6], dtype=np.float32)
    m2 = make_model(mg.float32, seed=3)
    m2.load_state_dict(m1.state_dict())
    sd = o1.state_dict()

    m1.to(mg.float64)
    ours = train(m1, o1, data[6:])
    assert all(v.dtype == np.float64 for st in o1.state.values() for k, v in st.items() if k != "step")

    m2.to(mg.float64)
    o2 = getattr(optim, name)(m2.parameters(), **kw)
    o2.load_state_dict(sd)
    ref = train(m2, o2, data[6:])
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)


def test_replaced_parameter_array_is_trained():
    p = nn.Parameter(mg.ones(3))
    opt = optim.SGD([p], lr=1.0)
    p.data = np.full(3, 5.0, np.float32)    # replaced, not written in place
    p.grad = mg.ones(3)
    opt.step()
    np.testing.assert_array_equal(p.numpy(), [4.0, 4.0, 4.0])
    p.grad = mg.ones(3)
    opt.step()
    np.testing.assert_array_equal(p.numpy(), [3.0, 3.0, 3.0])


def test_parameters_are_updated_in_place():
    model = make_model(mg.float32)
    opt = optim.Adam(model.parameters(), lr=0.1)
    arrays = [p.data for p in model.parameters()]
    train(model, opt, batches(2), dtype=np.float32)
    assert all(p.data is a for p, a in zip(model.parameters(), arrays))


def test_load_state_dict_on_model_keeps_views():
    model = make_model(mg.float32)
    opt = optim.SGD(model.parameters(), lr=0.1)
    views = [p.data for p in model.parameters()]
    model.load_state_dict(make_model(mg.float32, seed=5).state_dict())
    assert all(p.data is v for p, v in zip(model.parameters(), views))
    train(model, opt, batches(1), dtype=np.float32)


def test_zero_grad():
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    model(mg.zeros(2, 5, dtype=mg.float64)).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    opt.step()   # no gradients: nothing happens


def test_closure_is_called():
    p = nn.Parameter(mg.tensor([2.0]))
    opt = optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss
    assert opt.step(closure).item() == 4.0
    assert p.item() == 1.0


# --- state dicts -------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kwargs", [("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
                                          ("Adam", dict(lr=1e-2, amsgrad=True)), ("AdamW", dict(lr=1e-2))])
def test_state_dict_resume_continues_identically(name, kwargs):
    data = batches()
    m1 = make_model(mg.float32)
    o1 = getattr(optim, name)(m1.parameters(), **kwargs)
    s1 = lr_scheduler.CosineAnnealingLR(o1, T_max=40)
    train(m1, o1, data[:30], s1, np.float32)
    model_sd = {k: v.numpy().copy() for k, v in m1.state_dict().items()}
    opt_sd, sched_sd = o1.state_dict(), s1.state_dict()
    straight = train(m1, o1, data[30:], s1, np.float32)

    m2 = make_model(mg.float32, seed=9)
    o2 = getattr(optim, name)(m2.parameters(), **kwargs)
    s2 = lr_scheduler.CosineAnnealingLR(o2, T_max=40)
    m2.load_state_dict(model_sd)
    o2.load_state_dict(opt_sd)
    s2.load_state_dict(sched_sd)
    resumed = train(m2, o2, data[30:], s2, np.float32)
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)


def test_state_dict_format_like_pytorch():
    model = make_model()
    opt = optim.Adam([{"params": list(model.parameters())[:2]}, {"params": list(model.parameters())[2:], "lr": 0.1}])
    sd = opt.state_dict()
    assert sd["state"] == {}
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2, 3, 4, 5]]
    assert sd["param_groups"][1]["lr"] == 0.1 and sd["param_groups"][0]["betas"] == (0.9, 0.999)
    train(model, opt, batches(2))
    sd = opt.state_dict()
    assert sorted(sd["state"]) == list(range(6))
    st = sd["state"][0]
    assert st["step"] == 2 and set(st) == {"step", "exp_avg", "exp_avg_sq"}
    assert st["exp_avg"].shape == (7, 5)
    before = st["exp_avg"].numpy().copy()
    train(model, opt, batches(1))
    np.testing.assert_array_equal(st["exp_avg"].numpy(), before)   # a copy, not the live buffer

    sgd = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    assert sgd.state_dict()["state"] == {}
    train(model, sgd, batches(1))
    assert set(sgd.state_dict()["state"][0]) == {"momentum_buffer"}
    assert set(optim.SGD(model.parameters(), lr=0.1).state_dict()["state"]) == set()


@needs_torch
def test_load_pytorch_state_dict():
    """A torch Adam state dict (tensor steps, torch tensors converted to arrays) loads and continues."""
    model = make_model()
    t = torch_model(model)
    data = batches()
    topt = torch.optim.Adam(t.parameters(), lr=0.01)
    torch_train(t, topt, data[:20])
    tsd = topt.state_dict()
    sd = {"state": {k: {n: (v.numpy() if n != "step" else v) for n, v in st.items()} for k, st in tsd["state"].items()},
          "param_groups": tsd["param_groups"]}
    with torch.no_grad():
        for p, q in zip(model.parameters(), t.parameters()):
            p.data[...] = q.numpy()
    opt = optim.Adam(model.parameters(), lr=0.5)
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == 0.01
    assert_params_close(train(model, opt, data[20:]), torch_train(t, topt, data[20:]))


def test_load_state_dict_mismatches():
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, opt, batches(1))
    sd = opt.state_dict()
    other = optim.SGD(list(model.parameters())[:2], lr=0.1)
    with pytest.raises(ValueError, match="parameter group 0 has 6 parameters, this optimizer's has 2"):
        other.load_state_dict(sd)
    two = optim.SGD([{"params": list(model.parameters())[:2]}, {"params": list(model.parameters())[2:]}], lr=0.1)
    with pytest.raises(ValueError, match="has 1 parameter groups, this optimizer has 2"):
        two.load_state_dict(sd)
    bad = {"state": {**sd["state"], 0: {"momentum_buffer": mg.zeros(3)}}, "param_groups": sd["param_groups"]}
    with pytest.raises(ValueError, match=r"'momentum_buffer' for parameter 0 has shape \(3,\), the parameter has "
                                         r"shape \(7, 5\)"):
        opt.load_state_dict(bad)


# --- schedulers --------------------------------------------------------------------------------
def test_inverse_time_decay_is_keras_decay():
    p = nn.Parameter(mg.zeros(1))
    opt = optim.SGD([p], lr=0.01)
    sched = lr_scheduler.InverseTimeDecay(opt, decay=1e-3)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    np.testing.assert_allclose(lrs, [0.01 / (1 + 1e-3 * i) for i in range(5)], rtol=1e-15)


def test_scheduler_closed_forms():
    p = nn.Parameter(mg.zeros(1))
    opt = optim.SGD([p], lr=1.0)
    s = lr_scheduler.StepLR(opt, step_size=3, gamma=0.1)
    got = [opt.param_groups[0]["lr"]] + [(s.step(), s.get_last_lr()[0])[1] for _ in range(6)]
    np.testing.assert_allclose(got, [1, 1, 1, 0.1, 0.1, 0.1, 0.01])
    opt = optim.SGD([p], lr=1.0)
    s = lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    got = [s.get_last_lr()[0]] + [(s.step(), s.get_last_lr()[0])[1] for _ in range(4)]
    np.testing.assert_allclose(got, [1, (1 + np.cos(np.pi / 4)) / 2, 0.5, (1 - np.cos(np.pi / 4)) / 2, 0], atol=1e-15)
    opt = optim.SGD([p], lr=2.0)
    s = lr_scheduler.ExponentialLR(opt, gamma=0.5)
    s.step(), s.step()
    assert opt.param_groups[0]["lr"] == 0.5
    assert "ExponentialLR(" in repr(s)


# --- validation --------------------------------------------------------------------------------
def test_argument_validation():
    ps = list(make_model().parameters())
    with pytest.raises(ValueError, match="invalid learning rate -1"):
        optim.SGD(ps, lr=-1)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum > 0 and zero dampening"):
        optim.SGD(ps, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="invalid eps -1"):
        optim.RMSprop(ps, eps=-1)
    with pytest.raises(ValueError, match="invalid lr_decay -0.5"):
        optim.Adagrad(ps, lr_decay=-0.5)
    with pytest.raises(ValueError, match=r"betas must lie in \[0, 1\)"):
        optim.Adam(ps, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(ValueError, match="more than once"):
        optim.Adam(ps + ps[:1])
    with pytest.raises(TypeError, match="single Tensor"):
        optim.Adam(ps[0])
    with pytest.raises(TypeError, match="floating point"):
        optim.SGD([mg.tensor([1, 2])], lr=0.1)
    with pytest.raises(ValueError, match="leaf tensors"):
        optim.SGD([ps[0] * 2], lr=0.1)


def test_repr():
    r = repr(optim.SGD(make_model().parameters(), lr=0.1, momentum=0.9))
    assert r.startswith("SGD (\nParameter Group 0\n") and "    momentum: 0.9" in r


def test_learns_on_cuda_device(device):
    model = make_model(mg.float32).to(device)
    opt = optim.Adam(model.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()
    x, y = batches(1)[0]
    x, y = mg.tensor(x.astype(np.float32), device=device), mg.tensor(y, device=device)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_gradient_of_wrong_shape_is_named():
    a, b = nn.Parameter(mg.zeros(2, 3)), nn.Parameter(mg.zeros(4))
    opt = optim.SGD([a, b], lr=0.1)
    a.grad, b.grad = mg.zeros(2, 3), mg.zeros(5)
    with pytest.raises(RuntimeError, match=r"parameter of shape \(4,\) has a gradient of shape \(5,\)"):
        opt.step()
    b.grad = None
    a.grad = mg.zeros(6)
    with pytest.raises(RuntimeError, match=r"parameter of shape \(2, 3\) has a gradient of shape \(6,\)"):
        opt.step()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [
    lambda ps, **f: mg.optim.SGD(ps, lr=0.05, **f),
    lambda ps, **f: mg.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2, **f),
    lambda ps, **f: mg.optim.SGD(ps, lr=0.05, momentum=0.8, dampening=0.3, **f),
    lambda ps, **f: mg.optim.Adam(ps, lr=1e-2, **f),
    lambda ps, **f: mg.optim.Adam(ps, lr=1e-2, betas=(0.3, 0.9), weight_decay=1e-2, amsgrad=True, **f),
    lambda ps, **f: mg.optim.AdamW(ps, lr=1e-2, **f),
    lambda ps, **f: mg.optim.RMSprop(ps, **f),
    lambda ps, **f: mg.optim.RMSprop(ps, alpha=0.9, weight_decay=1e-2, momentum=0.9, centered=True, **f),
    lambda ps, **f: mg.optim.RMSprop(ps, alpha=0.3, momentum=0.5, centered=True, **f),
    lambda ps, **f: mg.optim.Adagrad(ps, **f),
    lambda ps, **f: mg.optim.Adagrad(ps, lr_decay=0.1, weight_decay=1e-2, initial_accumulator_value=0.1, **f),
], ids=["sgd", "sgd-nesterov-wd", "sgd-dampening", "adam", "adam-lerp-wd-amsgrad", "adamw", "rmsprop",
        "rmsprop-centered-momentum-wd", "rmsprop-lerp", "adagrad", "adagrad-decay-wd"])
def test_fused_cpp_update_equals_the_plain_one_bit_for_bit(make, dtype):
    """The C++ kernels follow the plain update's order of operations exactly, parameter by parameter,
    also when some parameters skip a step (their step counts and momentum buffers then differ)."""
    def run(fused):
        rng = np.random.default_rng(0)
        params = [mg.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in [(7, 5), (5,), (3,)]]
        opt = make(params, fused=fused)
        for i in range(6):
            for j, p in enumerate(params):
                p.grad = mg.tensor(rng.standard_normal(p.shape).astype(dtype)) if i % 2 or j else None
            opt.step()
        return [p.numpy().copy() for p in params] + [v.numpy() for st in opt.state.values()
                                                      for v in st.values() if isinstance(v, mg.Tensor)]

    plain = run(False)
    fused = run(True if mg.backend.ext() is not None else None)   # True: the C++ kernel or an error
    assert len(fused) == len(plain)
    for a, b in zip(fused, plain):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(mg.backend.ext() is None, reason="minigrad._C not built")
def test_kernel_refuses_arrays_it_cannot_read_and_writes_nothing():
    """The C++ update takes only C-contiguous arrays of the parameters' dtype and shapes; anything
    else returns False before a single element is written."""
    from minigrad import kernels
    rng = np.random.default_rng(1)
    ps = [rng.standard_normal(s).astype(np.float32) for s in [(4, 3), (3,)]]
    gs = [rng.standard_normal(s).astype(np.float32) for s in [(4, 3), (3,)]]
    bufs = [np.zeros_like(p) for p in ps]

    def step(params, grads, buffers):
        return kernels.sgd_step(params, grads, buffers, [False, False], 0.1, 0.9, 0.0, 0.0, False)

    before = [p.copy() for p in ps]
    for grads, buffers in [([gs[0], gs[1].astype(np.float64)], bufs),        # a float64 gradient
                           ([gs[0], gs[1][None]], bufs),                     # another shape, same size
                           ([gs[0].T.copy().T, gs[1]], bufs),                 # not C-contiguous
                           (gs[:1], bufs),                                   # one gradient short
                           (gs, [bufs[0], bufs[1].astype(np.float64)])]:     # a float64 state
        assert step(ps, grads, buffers) is False
        for a, b in zip(ps, before):
            np.testing.assert_array_equal(a, b)
    assert step(ps, gs, bufs) is True
    assert not np.array_equal(ps[0], before[0])
    after = [p.copy() for p in ps]
    sums = [np.zeros_like(p) for p in ps]
    assert kernels.adagrad_step(ps, gs, sums, [0.1], 0.0, 1e-10) is False            # one rate short
    assert kernels.rmsprop_step(ps, gs, sums, None, None, 0.01, 0.99, 1e-8, 0.0, 0.0, True) is False  # no grad_avgs
    for a, b in zip(ps + sums, after + [np.zeros_like(p) for p in ps]):
        np.testing.assert_array_equal(a, b)


def test_fused_true_without_a_kernel_raises():
    p = nn.Parameter(mg.ones(3, dtype=mg.float16))
    p.grad = mg.ones(3, dtype=mg.float16)
    with pytest.raises(RuntimeError, match="fused=True"):
        optim.Adam([p], fused=True).step()
    optim.Adam([p]).step()                   # fused=None: the plain update
    assert p.dtype == np.float16 and (p.numpy() < 1).all()


def test_gradients_the_kernel_cannot_read_take_the_plain_path():
    """A transposed (non-contiguous) .grad takes the plain update, with the same result."""
    from minigrad.tensor import _wrap
    rng = np.random.default_rng(2)
    w0, g = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    results = []
    for grad in (np.ascontiguousarray(g.T), g.T):
        w = nn.Parameter(mg.tensor(w0.copy()))
        opt = optim.Adam([w], lr=0.1)
        w.grad = _wrap(grad, w.device)   # as backward stores it: the array itself, no copy
        opt.step()
        results.append(w.numpy())
    np.testing.assert_array_equal(results[0], results[1])


# --- PyTorch's defaults, state dict layout and Keras' arguments -----------------------------------
ALL = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]


@needs_torch
@pytest.mark.parametrize("name", ALL)
def test_defaults_are_pytorchs(name):
    ours = getattr(optim, name)(make_model().parameters()).param_groups[0]
    theirs = getattr(torch.optim, name)(torch_model(make_model()).parameters()).param_groups[0]
    assert ours["fused"] is None                         # minigrad's meaning: the C++ pass where it applies
    assert {k: v for k, v in ours.items() if k not in ("params", "fused")}.items() <= theirs.items()


@needs_torch
@pytest.mark.parametrize("name, kwargs", [("SGD", dict(momentum=0.9)), ("Adam", dict(amsgrad=True)), ("AdamW", {}),
                                          ("RMSprop", dict(momentum=0.5, centered=True)), ("RMSprop", {}),
                                          ("Adagrad", {})])
def test_state_dict_layout_and_round_trip_like_pytorch(name, kwargs):
    """The same state keys, shapes and step counts as PyTorch's, before and after steps; a torch
    state dict loads into minigrad and ours into torch, and both continue as PyTorch does."""
    model = make_model()
    t = torch_model(model)
    data = batches(30)
    opt, topt = getattr(optim, name)(model.parameters(), **kwargs), getattr(torch.optim, name)(t.parameters(), **kwargs)
    for steps in (0, 10):
        train(model, opt, data[:steps]), torch_train(t, topt, data[:steps])
        sd, tsd = opt.state_dict(), topt.state_dict()
        assert sd["state"].keys() == tsd["state"].keys()
        for i, st in tsd["state"].items():
            assert sd["state"][i].keys() == st.keys()
            for k, v in st.items():
                if k == "step":
                    assert sd["state"][i][k] == int(v)
                else:
                    np.testing.assert_allclose(sd["state"][i][k].numpy(), v.numpy(), rtol=1e-9, atol=1e-12)
    # torch's state dict into minigrad, and minigrad's into torch
    m2 = make_model(seed=4)
    for p, q in zip(m2.parameters(), model.parameters()):
        p.data[...] = q.numpy()
    o2 = getattr(optim, name)(m2.parameters(), **kwargs)
    o2.load_state_dict({"state": {i: {k: v if k == "step" else v.numpy() for k, v in st.items()}
                                  for i, st in tsd["state"].items()}, "param_groups": tsd["param_groups"]})
    t2 = torch_model(model)
    to2 = getattr(torch.optim, name)(t2.parameters(), **kwargs)
    to2.load_state_dict({"state": {i: {k: torch.tensor(float(v)) if k == "step" else torch.tensor(v.numpy())
                                       for k, v in st.items()} for i, st in sd["state"].items()},
                         "param_groups": tsd["param_groups"]})
    ref = torch_train(t, topt, data[10:])
    assert_params_close(train(model, opt, data[10:]), ref)
    assert_params_close(train(m2, o2, data[10:]), ref)
    assert_params_close(torch_train(t2, to2, data[10:]), ref)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("arg, hint", [("decay", "InverseTimeDecay"), ("clipnorm", "clip_grad_norm_"),
                                       ("global_clipnorm", "clip_grad_norm_"), ("clipvalue", "clip_grad_value_"),
                                       ("learning_rate", "lr="), ("epsilon", "eps=")])
def test_keras_arguments_name_the_minigrad_equivalent(name, arg, hint):
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{arg}'.*Keras.*{hint}"):
        getattr(optim, name)(make_model().parameters(), **{arg: 0.1})


def test_other_unknown_arguments_are_plain_type_errors():
    with pytest.raises(TypeError, match="unexpected keyword argument 'lrr'"):
        optim.SGD(make_model().parameters(), lrr=0.1)
    opt = optim.Adagrad(make_model().parameters(), initial_accumulator_value=0.5)   # a PyTorch argument too
    assert opt.param_groups[0]["initial_accumulator_value"] == 0.5


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_state_follows_the_model_to_another_device(device, name):
    kw = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=0.01)
    data = batches(4)
    results = []
    for dev in ("cpu", device):
        model = make_model(mg.float32)
        opt = getattr(optim, name)(model.parameters(), **kw)
        train(model, opt, data[:2], dtype=np.float32)
        model.to(dev)
        for x, y in data[2:]:
            opt.zero_grad()
            out = model(mg.tensor(x.astype(np.float32), device=dev))
            nn.CrossEntropyLoss()(out, mg.tensor(y, device=dev)).backward()
            opt.step()
        assert all(v.device == p.device for p in model.parameters() for v in opt.state[p].values()
                   if isinstance(v, mg.Tensor))
        results.append([p.numpy() for p in model.parameters()])
    assert_params_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_a_subclass_taking_keyword_arguments_gets_them():
    class Decaying(optim.SGD):
        def __init__(self, params, decay=0.0, **kwargs):
            self.clipnorm = kwargs.pop("clipnorm", None)
            super().__init__(params, **kwargs)
            self.decay = decay

    opt = Decaying(make_model().parameters(), decay=0.5, clipnorm=1.0, lr=0.1)
    assert opt.decay == 0.5 and opt.clipnorm == 1.0 and opt.param_groups[0]["lr"] == 0.1


@needs_torch
def test_add_param_group_like_pytorch():
    m1, m2 = make_model(seed=1), make_model(seed=2)
    t1, t2 = torch_model(m1), torch_model(m2)
    data = batches(10)
    for name, kw in [("Adagrad", dict(initial_accumulator_value=0.1)), ("Adam", dict(lr=0.01))]:
        opt = getattr(optim, name)(m1.parameters(), **kw)
        topt = getattr(torch.optim, name)(t1.parameters(), **kw)
        opt.add_param_group({"params": list(m2.parameters()), "lr": 0.02})
        topt.add_param_group({"params": list(t2.parameters()), "lr": 0.02})
        assert opt.param_groups[1].keys() - {"fused"} <= topt.param_groups[1].keys()
        for x, y in data:
            for opt_, loss in ((opt, m1(mg.tensor(x)).sum() + m2(mg.tensor(x)).sum()),
                               (topt, t1(torch.tensor(x)).sum() + t2(torch.tensor(x)).sum())):
                opt_.zero_grad()
                loss.backward()
                opt_.step()
        assert_params_close([p.numpy() for p in list(m1.parameters()) + list(m2.parameters())],
                            [p.detach().numpy() for p in list(t1.parameters()) + list(t2.parameters())])
