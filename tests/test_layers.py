"""mg.nn layers beyond Linear: the activation modules, ModuleList / ModuleDict, LayerNorm, BatchNorm1d,
Embedding, NLLLoss, and their mg.nn.functional forms (one_hot, nll_loss and logsumexp too), each against
PyTorch (values, gradients, dtypes, state_dict keys and shapes) and gradient-checked in float64."""
import warnings

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from minigrad.autograd import gradcheck

from conftest import torch

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")


def t64(a, requires_grad=True):
    return mg.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def torch_twin(a, requires_grad=True):
    return torch.tensor(np.asarray(a), requires_grad=requires_grad)


def assert_close(mine, theirs, rtol=1e-10, atol=1e-12):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    mine = mine.numpy() if hasattr(mine, "numpy") else np.asarray(mine)
    assert mine.shape == theirs.shape and mine.dtype == theirs.dtype, (mine.shape, theirs.shape, mine.dtype, theirs.dtype)
    np.testing.assert_allclose(mine, theirs, rtol=rtol, atol=atol)


def assert_same_state(mine, theirs):
    """Same state_dict keys, in order, with the same shapes and dtypes."""
    a, b = mine.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert tuple(a[k].shape) == tuple(b[k].shape) and str(a[k].dtype) == str(b[k].dtype).replace("torch.", ""), k


# --- activations ---------------------------------------------------------------------------------
ACTIVATION_MODULES = [  # (minigrad module, torch module)
    (lambda: nn.ReLU(inplace=True), lambda: torch.nn.ReLU()),
    (lambda: nn.LeakyReLU(), lambda: torch.nn.LeakyReLU()),
    (lambda: nn.LeakyReLU(0.2, inplace=True), lambda: torch.nn.LeakyReLU(0.2)),
    (lambda: nn.ELU(), lambda: torch.nn.ELU()),
    (lambda: nn.ELU(alpha=0.5), lambda: torch.nn.ELU(alpha=0.5)),
    (lambda: nn.SiLU(), lambda: torch.nn.SiLU()),
    (lambda: nn.Softplus(), lambda: torch.nn.Softplus()),
    (lambda: nn.Softplus(beta=2.0, threshold=3.0), lambda: torch.nn.Softplus(beta=2.0, threshold=3.0)),
    (lambda: nn.GELU(), lambda: torch.nn.GELU()),
    (lambda: nn.GELU(approximate="tanh"), lambda: torch.nn.GELU(approximate="tanh")),
    (lambda: nn.Sigmoid(), lambda: torch.nn.Sigmoid()),
    (lambda: nn.Tanh(), lambda: torch.nn.Tanh()),
]


@needs_torch
@pytest.mark.parametrize("pair", ACTIVATION_MODULES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_modules_match_torch(pair, dtype, rng):
    mine, theirs = pair[0](), pair[1]()
    a = (rng.standard_normal((6, 7)) * 3).astype(dtype)
    a[0, :3] = [0.5, -30.0, 30.0]
    g = rng.standard_normal((6, 7)).astype(dtype)
    x, tx = mg.tensor(a, requires_grad=True), torch_twin(a)
    y, ty = mine(x), theirs(tx)
    y.backward(mg.tensor(g))
    ty.backward(torch.tensor(g))
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == np.float64 else dict(rtol=4e-6, atol=4e-6)
    assert_close(y, ty, **tol)
    assert_close(x.grad, tx.grad, **tol)


@pytest.mark.parametrize("fn", [F.relu, F.silu, F.sigmoid, F.tanh, F.gelu, lambda x: F.gelu(x, approximate="tanh"),
                                lambda x: F.leaky_relu(x, 0.3), lambda x: F.elu(x, 0.8), F.softplus,
                                lambda x: F.softplus(x, beta=3.0, threshold=4.0)])
def test_functional_activations_gradcheck(fn):
    a = np.linspace(-3, 3, 24).reshape(4, 6) + 0.013  # off the kinks at 0
    assert gradcheck(fn, [t64(a)])


@needs_torch
@pytest.mark.parametrize("act", ["gelu_tanh", "leaky_relu", "elu", "silu", "softplus"])
def test_linear_with_the_new_activations_matches_torch(act, rng):
    lin = nn.Linear(5, 4, activation=act, dtype=np.float64)
    tlin = torch.nn.Linear(5, 4, dtype=torch.float64)
    tlin.load_state_dict({k: torch.tensor(v.numpy()) for k, v in lin.state_dict().items()})
    tact = {"gelu_tanh": lambda t: torch.nn.functional.gelu(t, approximate="tanh"),
            "leaky_relu": torch.nn.functional.leaky_relu, "elu": torch.nn.functional.elu,
            "silu": torch.nn.functional.silu, "softplus": torch.nn.functional.softplus}[act]
    a = rng.standard_normal((8, 5)) * 2
    x, tx = t64(a), torch_twin(a)
    y, ty = lin(x), tact(tlin(tx))
    y.sum().backward()
    ty.sum().backward()
    assert_close(y, ty)
    assert_close(x.grad, tx.grad)
    assert_close(lin.weight.grad, tlin.weight.grad)
    assert_close(lin.bias.grad, tlin.bias.grad)


def test_activation_arguments_and_reprs():
    assert repr(nn.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert repr(nn.ReLU(inplace=True)) == "ReLU(inplace=True)" and repr(nn.ReLU()) == "ReLU()"
    assert repr(nn.GELU(approximate="tanh")) == "GELU(approximate='tanh')"
    assert repr(nn.Softplus()) == "Softplus(beta=1.0, threshold=20.0)"
    x = mg.tensor([-1.0, 2.0])
    assert nn.ReLU(inplace=True)(x) is not x and x.tolist() == [-1.0, 2.0]  # inplace is ignored
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU(approximate="erf")
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="fast")


# --- ModuleList / ModuleDict -------------------------------------------------------------------
def test_module_list_is_a_registered_list():
    layers = nn.ModuleList([nn.Linear(2, 3), nn.ReLU()])
    layers.append(nn.Linear(3, 4))
    layers.extend([nn.Tanh(), nn.Linear(4, 1)])
    layers.insert(1, nn.LayerNorm(3))
    assert len(layers) == 6
    assert [type(m).__name__ for m in layers] == ["Linear", "LayerNorm", "ReLU", "Linear", "Tanh", "Linear"]
    assert isinstance(layers[1], nn.LayerNorm) and layers[-1] is list(layers)[5]
    sub = layers[1:4]
    assert isinstance(sub, nn.ModuleList) and len(sub) == 3 and sub[0] is layers[1]
    assert [n for n, _ in layers.named_parameters()] == [
        "0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias"]
    del layers[2]  # the ReLU: later ones are renumbered
    assert [n for n, _ in layers.named_parameters()][4:] == ["2.weight", "2.bias", "4.weight", "4.bias"]
    assert not hasattr(layers, "5")
    layers[0] = nn.Linear(2, 3, bias=False)
    assert [n for n, _ in layers.named_parameters()][0] == "0.weight" and layers[0].bias is None
    layers += [nn.Identity()]
    assert len(layers) == 6
    with pytest.raises(IndexError, match="out of range"):
        layers[6]
    with pytest.raises(TypeError, match="holds Modules"):
        layers.append(3)


@needs_torch
def test_module_list_state_dict_and_optimizer_match_torch():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(3, 3) for _ in range(2)])
            self.heads = nn.ModuleDict({"a": nn.Linear(3, 1), "b": nn.Linear(3, 2)})

    class TNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(3, 3) for _ in range(2)])
            self.heads = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 1), "b": torch.nn.Linear(3, 2)})
    net = Net()
    assert_same_state(net, TNet())
    assert len(list(mg.optim.SGD(net.parameters(), lr=0.1).param_groups[0]["params"])) == 8


def test_module_dict():
    d = nn.ModuleDict({"enc": nn.Linear(2, 2), "keys": nn.ReLU()})
    d["dec"] = nn.Linear(2, 1)
    assert list(d) == ["enc", "keys", "dec"] and list(d.keys()) == ["enc", "keys", "dec"]
    assert callable(d.keys) and isinstance(d["keys"], nn.ReLU)  # a key never hides a method
    assert "enc" in d and len(d) == 3
    assert [n for n, _ in d.named_parameters()] == ["enc.weight", "enc.bias", "dec.weight", "dec.bias"]
    d.update([("x", nn.Tanh())])
    assert isinstance(d.pop("x"), nn.Tanh)
    del d["enc"]
    assert [k for k, _ in d.items()] == ["keys", "dec"]
    with pytest.raises(KeyError):
        d["enc"]
    with pytest.raises(TypeError, match="strings"):
        d[1] = nn.ReLU()


def test_plain_list_of_modules_warns_once_and_names_module_list():
    class Net(nn.Module):
        def __init__(self, wrap):
            super().__init__()
            self.layers = wrap([nn.Linear(2, 2), nn.Linear(2, 2)])
            self.sizes = [2, 2]        # no modules inside: no warning
            self.by_name = {"a": 1}

    with pytest.warns(UserWarning, match=r"Net\.layers is a plain list holding Modules.*nn\.ModuleList") as rec:
        net = Net(list)
    assert len(rec) == 1 and rec[0].filename == __file__  # points at the assignment
    assert list(net.parameters()) == []  # as in PyTorch: nothing registered
    with pytest.warns(UserWarning, match="nn.ModuleDict"):
        nn.Module().__setattr__("heads", {"a": nn.ReLU()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(Net(nn.ModuleList).parameters())) == 4


# --- LayerNorm ---------------------------------------------------------------------------------
@needs_torch
@pytest.mark.parametrize("shape,normalized", [((4, 6), 6), ((2, 3, 5), (3, 5)), ((7,), [7])])
@pytest.mark.parametrize("affine,bias", [(True, True), (True, False), (False, True)])
def test_layer_norm_matches_torch(shape, normalized, affine, bias, rng):
    ln = nn.LayerNorm(normalized, eps=1e-4, elementwise_affine=affine, bias=bias).double()
    tln = torch.nn.LayerNorm(normalized, eps=1e-4, elementwise_affine=affine, bias=bias, dtype=torch.float64)
    assert_same_state(ln, tln)
    if affine:  # non-trivial affine parameters
        ln.weight.data[...] = rng.standard_normal(ln.weight.shape)
        if bias:
            ln.bias.data[...] = rng.standard_normal(ln.bias.shape)
        tln.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ln.state_dict().items()})
    a, g = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape)
    x, tx = t64(a), torch_twin(a)
    y, ty = ln(x), tln(tx)
    y.backward(mg.tensor(g))
    ty.backward(torch.tensor(g))
    assert_close(y, ty)
    assert_close(x.grad, tx.grad)
    for (name, p), tp in zip(ln.named_parameters(), tln.parameters()):
        assert_close(p.grad, tp.grad)


def test_layer_norm_gradcheck_and_errors(rng):
    x, w, b = t64(rng.standard_normal((3, 4, 5))), t64(rng.standard_normal((4, 5))), t64(rng.standard_normal((4, 5)))
    assert gradcheck(lambda x, w, b: F.layer_norm(x, (4, 5), w, b), [x, w, b])
    assert gradcheck(lambda x: F.layer_norm(x, 5), [x])
    assert nn.LayerNorm(5)(mg.randn(2, 5)).dtype == np.float32
    with pytest.raises(RuntimeError, match=r"normalized_shape=\[4\] expects input of shape \[\*, 4\], found \[2, 3\]"):
        nn.LayerNorm(4)(mg.zeros(2, 3))


# --- BatchNorm1d -------------------------------------------------------------------------------
@needs_torch
@pytest.mark.parametrize("shape", [(8, 3), (5, 3, 4)])
@pytest.mark.parametrize("kwargs", [{}, {"momentum": None}, {"momentum": 0.3, "affine": False},
                                    {"track_running_stats": False}])
def test_batch_norm_matches_torch_in_train_and_eval(shape, kwargs, rng):
    bn, tbn = nn.BatchNorm1d(3, **kwargs).double(), torch.nn.BatchNorm1d(3, dtype=torch.float64, **kwargs)
    assert_same_state(bn, tbn)
    if bn.affine:
        bn.weight.data[...] = rng.standard_normal(3)
        bn.bias.data[...] = rng.standard_normal(3)
        tbn.load_state_dict({k: torch.tensor(v.numpy()) for k, v in bn.state_dict().items()})
    for step in range(3):  # running statistics follow PyTorch's over several batches
        a, g = rng.standard_normal(shape) * 2 + step, rng.standard_normal(shape)
        x, tx = t64(a), torch_twin(a)
        y, ty = bn(x), tbn(tx)
        y.backward(mg.tensor(g))
        ty.backward(torch.tensor(g))
        assert_close(y, ty)
        assert_close(x.grad, tx.grad)
        for p, tp in zip(bn.parameters(), tbn.parameters()):
            assert_close(p.grad, tp.grad)
        for k, v in tbn.state_dict().items():
            assert_close(bn.state_dict()[k], v)
    bn.eval(), tbn.eval()
    a = rng.standard_normal(shape)
    x, tx = t64(a), torch_twin(a)
    y, ty = bn(x), tbn(tx)
    y.sum().backward()
    ty.sum().backward()
    assert_close(y, ty)
    assert_close(x.grad, tx.grad)
    if bn.track_running_stats:  # eval leaves the statistics alone
        assert int(bn.num_batches_tracked.item()) == 3
        assert_close(bn.running_mean, tbn.running_mean)


def test_batch_norm_gradcheck(rng):
    x, w, b = t64(rng.standard_normal((6, 3, 2))), t64(rng.standard_normal(3)), t64(rng.standard_normal(3))
    rm, rv = mg.zeros(3, dtype=mg.float64), mg.ones(3, dtype=mg.float64)
    assert gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [x, w, b])
    assert gradcheck(lambda x, w, b: F.batch_norm(x, rm + 0.5, rv * 2, w, b, training=False), [x, w, b])
    x2 = t64(rng.standard_normal((5, 4)))
    assert gradcheck(lambda x: F.batch_norm(x, None, None, training=True), [x2])


def test_batch_norm_buffers_follow_to_and_state_dict(rng):
    bn = nn.BatchNorm1d(4)
    sd = bn.state_dict()
    assert sd["running_mean"].dtype == np.float32 and sd["num_batches_tracked"].dtype == np.int64
    assert sd["num_batches_tracked"].shape == ()
    bn.double()
    assert bn.running_var.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64
    bn(mg.tensor(rng.standard_normal((3, 4))))
    other = nn.BatchNorm1d(4).double()
    other.load_state_dict(bn.state_dict())
    assert other.num_batches_tracked.item() == 1 and np.array_equal(other.running_mean.numpy(), bn.running_mean.numpy())
    other.reset_running_stats()
    assert other.running_mean.tolist() == [0.0] * 4 and other.running_var.tolist() == [1.0] * 4
    assert other.num_batches_tracked.item() == 0 and other.running_var.dtype == np.float64
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(mg.zeros(1, 4, dtype=mg.float64))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4\) expected input of shape \(N, 4\)"):
        bn(mg.zeros(3, 5, dtype=mg.float64))


# --- Embedding ---------------------------------------------------------------------------------
@needs_torch
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_torch(padding_idx, rng):
    emb = nn.Embedding(6, 3, padding_idx=padding_idx).double()
    temb = torch.nn.Embedding(6, 3, padding_idx=padding_idx, dtype=torch.float64)
    assert_same_state(emb, temb)
    if padding_idx is not None:
        assert not emb.weight.numpy()[padding_idx].any() and emb.padding_idx == temb.padding_idx
    temb.load_state_dict({k: torch.tensor(v.numpy()) for k, v in emb.state_dict().items()})
    idx = np.array([[0, 2, 2], [5, 2, 1]])  # repeated rows sum their gradients
    g = rng.standard_normal((2, 3, 3))
    y, ty = emb(mg.tensor(idx)), temb(torch.tensor(idx))
    y.backward(mg.tensor(g))
    ty.backward(torch.tensor(g))
    assert_close(y, ty)
    assert_close(emb.weight.grad, temb.weight.grad)
    assert_close(F.embedding(mg.tensor(idx), emb.weight), torch.nn.functional.embedding(torch.tensor(idx), temb.weight))


def test_embedding_init_gradcheck_and_errors():
    mg.manual_seed(0)
    w = nn.Embedding(2000, 8, padding_idx=0).weight.numpy()
    assert not w[0].any() and abs(w[1:].mean()) < 0.02 and abs(w[1:].std() - 1) < 0.02  # N(0, 1)
    weight = t64(np.random.default_rng(1).standard_normal((5, 2)))
    assert gradcheck(lambda w: F.embedding(mg.tensor([[1, 4], [4, 0]]), w), [weight])  # (the padding row's
    # gradient is zero by definition, not the finite difference: tested against PyTorch above)
    with pytest.raises(IndexError, match="index 5 is out of range for 5 embeddings"):
        F.embedding(mg.tensor([5]), weight)
    with pytest.raises(RuntimeError, match="integer"):
        F.embedding(mg.tensor([1.0]), weight)
    with pytest.raises(AssertionError, match="padding_idx"):
        nn.Embedding(3, 2, padding_idx=3)
    pre = nn.Embedding.from_pretrained(mg.ones(3, 2))
    assert not pre.weight.requires_grad and pre(mg.tensor([2])).tolist() == [[1.0, 1.0]]


# --- one_hot, nll_loss, logsumexp -----------------------------------------------------------------
@needs_torch
def test_one_hot_matches_torch():
    t = np.array([[0, 3], [1, 1]])
    for n in (-1, 5):
        mine, theirs = F.one_hot(mg.tensor(t), n), torch.nn.functional.one_hot(torch.tensor(t), n)
        assert mine.dtype == np.int64
        assert_close(mine, theirs)
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        F.one_hot(mg.tensor([3]), 3)
    with pytest.raises(RuntimeError, match="non-negative"):
        F.one_hot(mg.tensor([-1]), 3)
    with pytest.raises(RuntimeError, match="integer"):
        F.one_hot(mg.tensor([1.0]))


NLL_CASES = [dict(), dict(reduction="sum"), dict(reduction="none"), dict(ignore_index=1),
             dict(weight=[0.5, 2.0, 1.0, 3.0]), dict(weight=[0.5, 2.0, 1.0, 3.0], ignore_index=0, reduction="none")]


@needs_torch
@pytest.mark.parametrize("kwargs", NLL_CASES)
@pytest.mark.parametrize("shape", [(5, 4), (4,), (3, 4, 2)])
def test_nll_loss_matches_torch(kwargs, shape, rng):
    a = rng.standard_normal(shape)
    t = rng.integers(0, 4, size=(shape[0],) + shape[2:] if len(shape) > 1 else ())
    w = kwargs.get("weight")
    opts = dict(kwargs, weight=None if w is None else t64(w, False))
    topts = dict(kwargs, weight=None if w is None else torch.tensor(w, dtype=torch.float64))
    x, tx = t64(a), torch_twin(a)
    loss, tloss = F.nll_loss(F.log_softmax(x, 0 if len(shape) == 1 else 1), mg.tensor(t), **opts), \
        torch.nn.functional.nll_loss(torch.log_softmax(tx, 0 if len(shape) == 1 else 1), torch.tensor(t), **topts)
    g = rng.standard_normal(tuple(tloss.shape))
    loss.backward(mg.tensor(g))
    tloss.backward(torch.tensor(g))
    assert_close(loss, tloss)
    assert_close(x.grad, tx.grad)
    module = nn.NLLLoss(weight=opts["weight"], ignore_index=kwargs.get("ignore_index", -100),
                        reduction=kwargs.get("reduction", "mean"))
    assert_close(module(F.log_softmax(t64(a, False), 0 if len(shape) == 1 else 1), mg.tensor(t)), tloss)


def test_nll_loss_gradcheck_and_errors(rng):
    x = t64(rng.standard_normal((4, 3)))
    t = mg.tensor([0, 2, 1, 2])
    assert gradcheck(lambda x: F.nll_loss(x, t, weight=mg.tensor([1.0, 2.0, 0.5], dtype=mg.float64)), [x])
    with pytest.raises(IndexError, match="class 3 but input has 3 classes"):
        F.nll_loss(x, mg.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"target must have shape \(4,\)"):
        F.nll_loss(x, mg.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="integer"):
        F.nll_loss(x, mg.tensor([0.0, 1.0, 1.0, 1.0]))


@needs_torch
@pytest.mark.parametrize("dim,keepdim", [(1, False), (0, True), ((0, 1), False)])
def test_logsumexp_matches_torch(dim, keepdim, rng):
    a = rng.standard_normal((3, 4)) * 50  # large values: computed stably
    x, tx = t64(a), torch_twin(a)
    y, ty = F.logsumexp(x, dim, keepdim=keepdim), torch.logsumexp(tx, dim, keepdim=keepdim)
    y.sum().backward()
    ty.sum().backward()
    assert_close(y, ty)
    assert_close(x.grad, tx.grad)
    assert gradcheck(lambda x: F.logsumexp(x, dim, keepdim), [t64(rng.standard_normal((3, 4)))])


@pytest.mark.cuda
@pytest.mark.skipif(not mg.cuda.is_available(), reason="no CUDA device")
def test_layers_on_cuda_match_cpu(rng):
    x = rng.standard_normal((6, 3, 4))
    results = []
    for dev in ("cpu", "cuda"):
        mg.manual_seed(0)
        ln, bn, emb = nn.LayerNorm(4), nn.BatchNorm1d(3), nn.Embedding(5, 4, padding_idx=1)
        for m in (ln, bn, emb):
            m.double().to(dev)
        xt = mg.tensor(x, device=dev, requires_grad=True)
        idx = mg.tensor([[0, 1], [4, 4]], device=dev)
        out = (ln(xt) * bn(xt)).sum() + F.silu(emb(idx)).sum() + F.softplus(xt).sum() \
            + F.nll_loss(F.log_softmax(xt[:, :, 0], 1), mg.tensor([0, 2, 1, 1, 0, 2], device=dev), ignore_index=1)
        out.backward()
        assert F.one_hot(idx, 6).device == xt.device
        results.append([out, xt.grad, emb.weight.grad, bn.weight.grad, ln.bias.grad, bn.running_var,
                        F.one_hot(idx, 6)])
    for cpu, cuda in zip(*results):
        np.testing.assert_allclose(cuda.numpy(), cpu.numpy(), rtol=1e-10, atol=1e-12)
