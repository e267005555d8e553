"""mg.nn: Module registration and traversal, state dicts, modes, devices and dtypes, layers
(gradcheck and PyTorch parity), init, and Linear's input validation."""
import math
from collections import OrderedDict

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from minigrad.autograd import gradcheck

from conftest import torch

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8, activation="relu")
        self.body = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Dropout(0.5))
        self.head = nn.Linear(8, 3, bias=False)
        self.register_buffer("scale", mg.ones(3))

    def forward(self, x):
        return self.head(self.body(self.fc1(x))) * self.scale


# --- Module ------------------------------------------------------------------------------------
def test_parameter_is_a_tensor_that_requires_grad():
    p = nn.Parameter(mg.zeros(2, 3))
    assert isinstance(p, mg.Tensor) and p.requires_grad and p.shape == (2, 3)
    assert nn.Parameter.__slots__ == ()
    assert not nn.Parameter(mg.zeros(2), requires_grad=False).requires_grad
    assert nn.Parameter(np.ones(3)).dtype == np.float64
    assert repr(nn.Parameter(mg.zeros(1))).startswith("Parameter containing:")


def test_named_parameters_order_and_names():
    m = MLP()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "body.0.weight", "body.0.bias", "head.weight"]
    assert [p.shape for p in m.parameters()] == [(8, 4), (8,), (8, 8), (8,), (3, 8)]
    assert [n for n, _ in m.named_buffers()] == ["scale"]
    assert [n for n, _ in m.named_children()] == ["fc1", "body", "head"]
    assert [n for n, _ in m.named_modules()] == ["", "fc1", "body", "body.0", "body.1", "body.2", "head"]
    assert len(list(m.parameters(recurse=False))) == 0


def test_shared_parameters_listed_once():
    m = nn.Module()
    m.a = nn.Linear(2, 2)
    m.b = m.a
    assert len(list(m.parameters())) == 2
    assert [n for n, _ in m.named_parameters()] == ["a.weight", "a.bias"]


def test_registration_updates_and_deregisters():
    m = nn.Module()
    m.w = nn.Parameter(mg.zeros(2))
    m.child = nn.Linear(1, 1)
    assert "w" in m._parameters and "child" in m._modules
    m.w = None
    assert list(m.named_parameters())[0][0] == "child.weight"
    with pytest.raises(TypeError, match="cannot assign Tensor as parameter 'w'"):
        m.w = mg.zeros(2)
    m.child = nn.Parameter(mg.zeros(1))     # a name can change kind
    assert "child" not in m._modules and "child" in m._parameters
    del m.child
    assert "child" not in m._parameters and not hasattr(m, "child")
    m.plain = 3
    assert m.plain == 3 and "plain" not in m._parameters


def test_assign_before_init_is_an_error():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)
    with pytest.raises(AttributeError, match="before Module.__init__"):
        Bad()


def test_repr_like_pytorch():
    m = nn.Sequential(nn.Linear(64, 10, activation="relu"), nn.ReLU(), nn.Dropout(0.2), nn.Linear(10, 3, bias=False))
    assert repr(m) == ("Sequential(\n"
                       "  (0): Linear(in_features=64, out_features=10, bias=True, activation='relu')\n"
                       "  (1): ReLU()\n"
                       "  (2): Dropout(p=0.2)\n"
                       "  (3): Linear(in_features=10, out_features=3, bias=False)\n"
                       ")")
    assert "(body): Sequential(\n    (0): Linear" in repr(MLP())


def test_train_eval_propagates():
    m = MLP()
    assert all(x.training for x in m.modules())
    assert m.eval() is m and not any(x.training for x in m.modules())
    m.train()
    assert m.body[2].training


def test_zero_grad_on_module(rng):
    m = MLP()
    m(mg.tensor(rng.standard_normal((2, 4)).astype(np.float32))).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    assert all(float(abs(p.grad.numpy()).sum()) == 0 for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


# --- state dicts -------------------------------------------------------------------------------
def test_state_dict_round_trip(rng):
    a, b = MLP(), MLP()
    sd = a.state_dict()
    assert list(sd) == ["scale", "fc1.weight", "fc1.bias", "body.0.weight", "body.0.bias", "head.weight"]  # as torch
    res = b.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == []
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
        assert p.data is not q.data
    a.eval(), b.eval()
    x = mg.tensor(rng.standard_normal((3, 4)).astype(np.float32))
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_load_state_dict_copies_in_place_and_accepts_arrays():
    m = nn.Linear(2, 3)
    w = m.weight
    arr = m.weight.data
    m.load_state_dict({"weight": np.ones((3, 2)), "bias": mg.zeros(3)})
    assert m.weight is w and m.weight.data is arr
    assert m.weight.dtype == np.float32 and (m.weight.numpy() == 1).all()


def test_load_state_dict_strict_errors_name_everything():
    m = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    sd = m.state_dict()
    sd.pop("1.bias")
    sd["2.weight"] = mg.zeros(1)
    sd["0.weight"] = mg.zeros(4, 3)
    with pytest.raises(RuntimeError) as e:
        m.load_state_dict(sd)
    msg = str(e.value)
    assert "missing keys: '1.bias'" in msg
    assert "unexpected keys: '2.weight'" in msg
    assert "size mismatch for 0.weight: copying a value of shape (4, 3), the parameter in this model has " \
           "shape (3, 4)" in msg


def test_load_state_dict_non_strict():
    m = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    sd = m.state_dict()
    sd.pop("1.bias")
    sd["extra"] = mg.zeros(1)
    res = m.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["1.bias"] and res.unexpected_keys == ["extra"]
    sd["0.bias"] = mg.zeros(5)
    with pytest.raises(RuntimeError, match="size mismatch for 0.bias"):
        m.load_state_dict(sd, strict=False)


@needs_torch
def test_state_dict_maps_one_to_one_to_pytorch(rng):
    m = nn.Sequential(nn.Linear(5, 4, activation="relu"), nn.Linear(4, 2))
    t = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    t.load_state_dict({k.replace("1.", "2."): torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    x = rng.standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_allclose(m(mg.tensor(x)).numpy(), t(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    back = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 2))
    back.load_state_dict({k.replace("2.", "1."): v.detach().numpy() for k, v in t.state_dict().items()})
    np.testing.assert_array_equal(back[0].weight.numpy(), m[0].weight.numpy())


# --- to(dtype / device) ------------------------------------------------------------------------
def test_to_dtype_keeps_objects(rng):
    m = MLP()
    params = list(m.parameters())
    m(mg.tensor(rng.standard_normal((2, 4)).astype(np.float32))).sum().backward()
    assert m.to(mg.float64) is m
    assert all(p is q for p, q in zip(params, m.parameters()))
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in m.parameters())
    assert m.scale.dtype == np.float64
    m.double().float()
    assert all(p.dtype == np.float32 for p in m.parameters())
    with pytest.raises(TypeError, match="only floating point dtypes"):
        m.to(mg.int64)


def test_to_device(device):
    m = nn.Linear(3, 2).to(device)
    assert m.weight.device == device
    assert m(mg.zeros(4, 3, device=device)).device == device


# --- layers ------------------------------------------------------------------------------------
def test_linear_shapes_and_init():
    mg.manual_seed(0)
    m = nn.Linear(100, 50)
    assert m.weight.shape == (50, 100) and m.bias.shape == (50,) and m.weight.dtype == np.float32
    bound = 1 / math.sqrt(100)   # kaiming_uniform(a=sqrt(5)) on (out, in) gives U(-1/sqrt(in), 1/sqrt(in))
    w = m.weight.numpy()
    assert abs(w).max() <= bound and abs(w).max() > 0.9 * bound and abs(w.mean()) < 0.01
    assert abs(m.bias.numpy()).max() <= bound
    assert nn.Linear(3, 2, bias=False).bias is None
    assert nn.Linear(3, 2, dtype=mg.float64).weight.dtype == np.float64
    mg.manual_seed(1)
    a = nn.Linear(4, 4).weight.numpy()
    mg.manual_seed(1)
    np.testing.assert_array_equal(a, nn.Linear(4, 4).weight.numpy())


def test_linear_wrong_width_names_both():
    m = nn.Linear(64, 10)
    with pytest.raises(ValueError, match=r"Linear\(in_features=64, out_features=10\) expected input with last "
                                         r"dimension 64, found input of shape \(32, 63\)"):
        m(mg.zeros(32, 63))
    with pytest.raises(ValueError, match="Linear: unknown activation .swish."):
        nn.Linear(2, 2, activation="swish")


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "tanh", "gelu"])
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_linear(rng, activation, bias):
    m = nn.Linear(4, 3, bias=bias, activation=activation).double()
    x = mg.tensor(rng.standard_normal((5, 4)), requires_grad=True)
    gradcheck(lambda x, *ps: m(x), [x, *m.parameters()])


@pytest.mark.parametrize("module", [nn.ReLU(), nn.Sigmoid(), nn.Tanh(), nn.GELU(), nn.Softmax(dim=1),
                                    nn.Softmax(dim=0), nn.Flatten(), nn.Identity(), nn.Flatten(0)])
def test_gradcheck_activation_modules(rng, module):
    x = rng.standard_normal((3, 4))
    x = np.where(np.abs(x) < 0.05, 0.1, x)   # away from relu's kink
    gradcheck(module, [mg.tensor(x, requires_grad=True)])


def test_gradcheck_sequential(rng):
    m = nn.Sequential(nn.Linear(3, 4, activation="tanh"), nn.Linear(4, 2), nn.Sigmoid()).double()
    gradcheck(lambda x, *ps: m(x), [mg.tensor(rng.standard_normal((2, 3)), requires_grad=True), *m.parameters()])


def test_dropout_train_and_eval(rng):
    mg.manual_seed(0)
    d = nn.Dropout(0.25)
    x = mg.ones(200, 50, requires_grad=True)
    y = d(x)
    vals = np.unique(y.numpy())
    np.testing.assert_allclose(vals, [0, 1 / 0.75], rtol=1e-6)
    assert abs((y.numpy() == 0).mean() - 0.25) < 0.02
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())   # grad is the same mask
    d.eval()
    assert d(x) is x
    assert nn.Dropout(0.0)(x) is x
    assert (nn.Dropout(1.0)(x).numpy() == 0).all()
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\], found 1.5"):
        nn.Dropout(1.5)


def test_dropout_is_seeded():
    mg.manual_seed(3)
    a = F.dropout(mg.ones(10, 10), 0.5).numpy()
    mg.manual_seed(3)
    np.testing.assert_array_equal(a, F.dropout(mg.ones(10, 10), 0.5).numpy())


def test_flatten_and_identity():
    x = mg.zeros(2, 3, 4)
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Flatten(0, 1)(x).shape == (6, 4)
    assert nn.Identity()(x) is x


def test_sequential_container():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    s = nn.Sequential(a, b, c)
    assert len(s) == 3 and s[0] is a and s[-1] is c and list(s) == [a, b, c]
    assert [n for n, _ in s.named_children()] == ["0", "1", "2"]
    assert isinstance(s[1:], nn.Sequential) and list(s[1:]) == [b, c]
    with pytest.raises(IndexError, match="index 3 is out of range for 3 modules"):
        s[3]
    s.append(nn.Sigmoid())
    assert len(s) == 4 and [n for n, _ in s.named_children()][-1] == "3"
    named = nn.Sequential(OrderedDict([("fc", a), ("act", b)]))
    assert [n for n, _ in named.named_parameters()] == ["fc.weight", "fc.bias"]
    with pytest.raises(TypeError, match="argument 0 is a int, not a Module"):
        nn.Sequential(3)
    assert s(mg.zeros(5, 2)).shape == (5, 1)


def test_functional_forms(rng):
    x = mg.tensor(rng.standard_normal((4, 3)))
    w, b = mg.tensor(rng.standard_normal((2, 3))), mg.tensor(rng.standard_normal(2))
    np.testing.assert_allclose(F.linear(x, w, b, "relu").numpy(), np.maximum(x.numpy() @ w.numpy().T + b.numpy(), 0))
    np.testing.assert_allclose(F.bias_act(x, mg.zeros(3, dtype=mg.float64), "tanh").numpy(), np.tanh(x.numpy()))
    np.testing.assert_allclose(F.softmax(x, 1).numpy().sum(1), 1)
    np.testing.assert_allclose(np.exp(F.log_softmax(x, 1).numpy()).sum(1), 1)
    for f in (F.relu, F.sigmoid, F.tanh, F.gelu):
        assert f(x).shape == (4, 3)


@needs_torch
@pytest.mark.parametrize("activation, torch_act", [("relu", "ReLU"), ("sigmoid", "Sigmoid"), ("tanh", "Tanh"),
                                                   ("gelu", "GELU"), (None, "Identity")])
def test_torch_linear_parity(rng, activation, torch_act):
    m = nn.Linear(6, 4, activation=activation).double()
    t = torch.nn.Linear(6, 4).double()
    t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    x = rng.standard_normal((5, 6))
    a = mg.tensor(x, requires_grad=True)
    ta = torch.tensor(x, requires_grad=True)
    out, tout = m(a), getattr(torch.nn, torch_act)()(t(ta))
    up = rng.standard_normal(out.shape)
    out.backward(mg.tensor(up))
    tout.backward(torch.tensor(up))
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.weight.grad.numpy(), t.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.bias.grad.numpy(), t.bias.grad.numpy(), rtol=1e-10, atol=1e-12)


@needs_torch
def test_torch_init_distribution():
    """Same bounds as torch.nn.Linear's default init (the draws come from different generators)."""
    mg.manual_seed(0)
    torch.manual_seed(0)
    m, t = nn.Linear(300, 200), torch.nn.Linear(300, 200)
    for a, b in ((m.weight.numpy(), t.weight.detach().numpy()), (m.bias.numpy(), t.bias.detach().numpy())):
        assert abs(abs(a).max() - abs(b).max()) < 1e-3
        assert abs(a.std() - b.std()) < 2e-3


# --- init --------------------------------------------------------------------------------------
def test_init_functions():
    mg.manual_seed(0)
    w = mg.zeros(400, 300)
    nn.init.xavier_uniform_(w)
    assert abs(w.numpy()).max() <= math.sqrt(6 / 700) and w.numpy().std() > 0.9 * math.sqrt(2 / 700)
    nn.init.kaiming_uniform_(w, nonlinearity="relu")
    assert abs(w.numpy()).max() <= math.sqrt(2) * math.sqrt(3 / 300)
    nn.init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu")
    assert abs(w.numpy()).max() <= math.sqrt(2) * math.sqrt(3 / 400)
    nn.init.xavier_normal_(w)
    assert abs(w.numpy().std() - math.sqrt(2 / 700)) < 0.1 * math.sqrt(2 / 700)
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert abs(w.numpy().std() - math.sqrt(2 / 400)) < 0.1 * math.sqrt(2 / 400)
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out'"):
        nn.init.kaiming_normal_(w, mode="fan_avg")
    nn.init.normal_(w, 1.0, 0.5)
    assert abs(w.numpy().mean() - 1) < 0.01 and abs(w.numpy().std() - 0.5) < 0.01
    nn.init.uniform_(w, -2, -1)
    assert w.numpy().min() >= -2 and w.numpy().max() <= -1
    assert (nn.init.zeros_(w).numpy() == 0).all() and (nn.init.ones_(w).numpy() == 1).all()
    assert w.dtype == np.float32
    p = nn.Parameter(mg.zeros(3, 3))
    nn.init.normal_(p)   # parameters that require grad can be initialised outside no_grad
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        nn.init.xavier_uniform_(mg.zeros(3))
    assert nn.init.calculate_gain("tanh") == 5 / 3
