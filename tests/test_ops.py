"""Every differentiable op, checked three ways: forward against NumPy (float32 and float64),
backward with gradcheck (float64), and values + gradients against PyTorch when it is installed."""
from dataclasses import dataclass, field

import numpy as np
import pytest

import minigrad as mg
from minigrad.autograd import gradcheck
from minigrad.gradcheck import GradcheckError

from conftest import torch


@dataclass
class Op:
    name: str
    fn: object              # applied to minigrad tensors (and to torch tensors unless torch_fn is given)
    ref: object             # the NumPy reference, applied to arrays
    shapes: list
    domain: str = "real"    # real | positive | nonzero | clip
    torch_fn: object = None
    kwargs: dict = field(default_factory=dict)


def sample(rng, shape, domain):
    """Test points inside the op's domain and away from its kinks (0 for abs/relu, +-0.5 for clip)."""
    if domain == "positive":
        return rng.uniform(0.5, 2, size=shape)
    x = rng.uniform(-2, 2, size=shape)
    if domain == "nonzero":
        return np.sign(x) * rng.uniform(0.2, 2, size=shape)
    if domain == "clip":
        inside, outside = rng.uniform(-0.4, 0.4, size=shape), np.sign(x) * rng.uniform(0.6, 2, size=shape)
        return np.where(np.abs(x) < 1, inside, outside)
    return x


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


OPS = [
    Op("add", lambda a, b: a + b, np.add, [(3, 4), (3, 4)]),
    Op("add_broadcast", lambda a, b: a + b, np.add, [(3, 4), (4,)]),
    Op("add_broadcast_both", lambda a, b: a + b, np.add, [(3, 1), (1, 4)]),
    Op("add_0d", lambda a, b: a + b, np.add, [(3, 4), ()]),
    Op("add_scalar", lambda a: 2.5 + a, lambda a: 2.5 + a, [(3, 4)]),
    Op("sub", lambda a, b: a - b, np.subtract, [(2, 3), (2, 3)]),
    Op("sub_broadcast", lambda a, b: a - b, np.subtract, [(2, 1, 3), (4, 1)]),
    Op("rsub_scalar", lambda a: 1 - a, lambda a: 1 - a, [(5,)]),
    Op("mul", lambda a, b: a * b, np.multiply, [(3, 4), (3, 4)]),
    Op("mul_broadcast", lambda a, b: a * b, np.multiply, [(2, 3, 4), (3, 1)]),
    Op("mul_0d_0d", lambda a, b: a * b, np.multiply, [(), ()]),
    Op("div", lambda a, b: a / b, np.divide, [(3, 4), (3, 4)], "positive"),
    Op("div_broadcast", lambda a, b: a / b, np.divide, [(3, 4), (4,)], "positive"),
    Op("rdiv_scalar", lambda a: 2 / a, lambda a: 2 / a, [(3,)], "positive"),
    Op("pow", lambda a, b: a ** b, np.power, [(3, 4), (3, 4)], "positive"),
    Op("pow_scalar", lambda a: a ** 3, lambda a: a ** 3, [(3, 4)]),
    Op("pow_square", lambda a: a ** 2, lambda a: a ** 2, [(3, 4)]),
    Op("pow_half", lambda a: a ** 0.5, np.sqrt, [(3, 4)], "positive"),
    Op("rpow", lambda a: 2.0 ** a, lambda a: 2.0 ** a, [(3, 4)]),
    Op("neg", lambda a: -a, np.negative, [(3, 4)]),
    Op("exp", lambda a: a.exp(), np.exp, [(3, 4)]),
    Op("log", lambda a: a.log(), np.log, [(3, 4)], "positive"),
    Op("sqrt", lambda a: a.sqrt(), np.sqrt, [(3, 4)], "positive"),
    Op("abs", lambda a: a.abs(), np.abs, [(3, 4)], "nonzero"),
    Op("clip", lambda a: a.clip(-0.5, 0.5), lambda a: np.clip(a, -0.5, 0.5), [(4, 5)], "clip"),
    Op("relu", lambda a: a.relu(), lambda a: np.maximum(a, 0), [(3, 4)], "nonzero"),
    Op("sigmoid", lambda a: a.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), [(3, 4)]),
    Op("tanh", lambda a: a.tanh(), np.tanh, [(3, 4)]),
    Op("softmax", lambda a: a.softmax(dim=-1), lambda a: _softmax(a, -1), [(3, 5)]),
    Op("softmax_axis0", lambda a: a.softmax(dim=0), lambda a: _softmax(a, 0), [(3, 5)]),
    Op("log_softmax", lambda a: a.log_softmax(dim=-1), lambda a: np.log(_softmax(a, -1)), [(4, 6)]),
    Op("log_softmax_3d", lambda a: a.log_softmax(dim=1), lambda a: np.log(_softmax(a, 1)), [(2, 3, 4)]),
    Op("sum", lambda a: a.sum(), np.sum, [(3, 4)]),
    Op("sum_dim", lambda a: a.sum(dim=0), lambda a: a.sum(0), [(3, 4)]),
    Op("sum_dims_keepdim", lambda a: a.sum(dim=(0, 2), keepdim=True), lambda a: a.sum((0, 2), keepdims=True), [(2, 3, 4)]),
    Op("sum_0d", lambda a: a.sum(), np.sum, [()]),
    Op("mean", lambda a: a.mean(), np.mean, [(3, 4)]),
    Op("mean_dim", lambda a: a.mean(dim=-1, keepdim=True), lambda a: a.mean(-1, keepdims=True), [(3, 4)]),
    Op("max", lambda a: a.max(), np.max, [(3, 4)]),
    Op("max_dim", lambda a: a.max(dim=1).values, lambda a: a.max(1), [(3, 4)]),
    Op("min_dim_keepdim", lambda a: a.min(0, keepdim=True)[0], lambda a: a.min(0, keepdims=True), [(3, 4)]),
    Op("amax", lambda a: a.amax(dim=(0, 2)), lambda a: a.max((0, 2)), [(2, 3, 4)]),
    Op("amin_keepdim", lambda a: a.amin(dim=-1, keepdim=True), lambda a: a.min(-1, keepdims=True), [(3, 4)]),
    Op("matmul", lambda a, b: a @ b, np.matmul, [(3, 4), (4, 5)]),
    Op("matmul_batched", lambda a, b: a @ b, np.matmul, [(2, 3, 4), (2, 4, 5)]),
    Op("matmul_broadcast", lambda a, b: a @ b, np.matmul, [(2, 3, 4), (4, 5)]),
    Op("matmul_vec_mat", lambda a, b: a @ b, np.matmul, [(4,), (4, 5)]),
    Op("matmul_mat_vec", lambda a, b: a @ b, np.matmul, [(3, 4), (4,)]),
    Op("matmul_vec_vec", lambda a, b: a @ b, np.matmul, [(4,), (4,)]),
    Op("matmul_batched_vec", lambda a, b: a @ b, np.matmul, [(2, 3, 4), (4,)]),
    Op("reshape", lambda a: a.reshape(4, 3), lambda a: a.reshape(4, 3), [(3, 4)]),
    Op("reshape_tuple_infer", lambda a: a.reshape((2, -1)), lambda a: a.reshape(2, -1), [(3, 4)]),
    Op("transpose", lambda a: a.transpose(0, 1), lambda a: a.T, [(3, 4)]),
    Op("transpose_3d", lambda a: a.transpose(0, 2), lambda a: a.transpose(2, 1, 0), [(2, 3, 4)]),
    Op("T", lambda a: a.T, lambda a: a.T, [(3, 4)]),
    Op("flatten", lambda a: a.flatten(1), lambda a: a.reshape(2, -1), [(2, 3, 4)]),
    Op("getitem_slice", lambda a: a[1:, ::2], lambda a: a[1:, ::2], [(3, 4)]),
    Op("getitem_int", lambda a: a[1], lambda a: a[1], [(3, 4)]),
    Op("getitem_int_array", lambda a: a[[0, 2, 0, 0]], lambda a: a[[0, 2, 0, 0]], [(3, 4)]),
    Op("getitem_pairs", lambda a: a[[0, 1, 1], [2, 3, 3]], lambda a: a[[0, 1, 1], [2, 3, 3]], [(3, 4)]),
    # PyTorch selects with ints before indexing with arrays: never NumPy's "advanced dims first" here
    Op("getitem_int_slice_array", lambda a: a[0, :, [0, 1, 1]], lambda a: a[0][:, [0, 1, 1]], [(2, 3, 4)]),
    Op("getitem_array_none_int", lambda a: a[[1, 0], None, 2], lambda a: a[:, 2][[1, 0], None], [(2, 3, 4)]),
    Op("getitem_int_mask", lambda a: a[1, [True, False, True]], lambda a: a[1][[True, False, True]], [(2, 3, 4)]),
    Op("cat", lambda a, b: mg.cat([a, b], dim=1) if isinstance(a, mg.Tensor) else torch.cat([a, b], dim=1),
       lambda a, b: np.concatenate([a, b], 1), [(2, 3), (2, 4)]),
    Op("stack", lambda a, b: mg.stack([a, b], dim=1) if isinstance(a, mg.Tensor) else torch.stack([a, b], dim=1),
       lambda a, b: np.stack([a, b], 1), [(2, 3), (2, 3)]),
    Op("where", lambda a, b: mg.where(a > 0, a, b) if isinstance(a, mg.Tensor) else torch.where(a > 0, a, b),
       lambda a, b: np.where(a > 0, a, b), [(3, 4), (4,)], "nonzero"),
    Op("expand", lambda a: a.expand(3, 4), lambda a: np.broadcast_to(a, (3, 4)), [(1, 4)]),
]
IDS = [op.name for op in OPS]


def make_inputs(op, dtype, device, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(sample(rng, s, op.domain), dtype=dtype) for s in op.shapes]
    return arrays, [mg.tensor(a, device=device, requires_grad=True) for a in arrays]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_forward_matches_numpy(op, dtype, device):
    arrays, tensors = make_inputs(op, dtype, device)
    out = op.fn(*tensors)
    expected = np.asarray(op.ref(*arrays))
    assert out.dtype == expected.dtype, f"{op.name}: dtype {out.dtype}, NumPy gives {expected.dtype}"
    assert out.shape == expected.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out.numpy(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_gradcheck(op):
    _, tensors = make_inputs(op, np.float64, "cpu")
    assert gradcheck(op.fn, tensors)


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_matches_torch(op):
    arrays, tensors = make_inputs(op, np.float64, "cpu")
    tts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, tout = op.fn(*tensors), (op.torch_fn or op.fn)(*tts)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    upstream = np.random.default_rng(1).standard_normal(out.shape)
    out.backward(mg.tensor(upstream))
    tout.backward(torch.tensor(upstream))
    for t, tt in zip(tensors, tts):
        np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_backward_on_device(op, device):
    """Gradients computed on the device equal the float64 CPU ones."""
    if device == "cpu":
        pytest.skip("the CPU gradients are the reference")
    _, cpu = make_inputs(op, np.float64, "cpu")
    _, dev = make_inputs(op, np.float64, device)
    for ts in (cpu, dev):
        op.fn(*ts).sum().backward()
    for a, b in zip(cpu, dev):
        np.testing.assert_allclose(b.grad.numpy(), a.grad.numpy(), rtol=1e-10, atol=1e-12)


class _BadExp(mg.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = np.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        y, = ctx.saved_tensors
        return grad_output * y * 1.01  # deliberately 1% off


def test_gradcheck_catches_a_wrong_backward():
    x = mg.tensor(np.random.default_rng(0).standard_normal((3, 2)), requires_grad=True)
    with pytest.raises(GradcheckError, match="analytic gradient"):
        gradcheck(_BadExp.apply, [x])


def test_gradcheck_needs_float64():
    x = mg.randn(3, requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda a: a.exp(), [x])


TIES = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]])


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("call", [lambda a: a.max(1), lambda a: a.min(dim=0, keepdim=True), lambda a: a.max(-1)])
def test_max_min_along_a_dim_are_named_pairs_whose_gradient_goes_to_the_index(call):
    x, t = mg.tensor(TIES, requires_grad=True), torch.tensor(TIES, requires_grad=True)
    (values, indices), tout = call(x), call(t)
    assert call(x).values is not None and type(call(x)).__name__ == type(tout).__name__
    np.testing.assert_array_equal(values.numpy(), tout.values.detach().numpy())
    np.testing.assert_array_equal(indices.numpy(), tout.indices.numpy())
    assert indices.dtype == mg.int64 and not indices.requires_grad
    values.sum().backward()
    tout.values.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())  # the tie's first index only


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("call", [lambda a: a.max(), lambda a: a.amax(1), lambda a: a.amin((0, 1)), lambda a: a.min()])
def test_full_max_and_amax_split_ties_evenly(call):
    x, t = mg.tensor(TIES, requires_grad=True), torch.tensor(TIES, requires_grad=True)
    call(x).sum().backward()
    call(t).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())


def test_max_gradient_keeps_float32():
    x = mg.tensor(TIES.astype(np.float32), requires_grad=True)
    x.amax(1).sum().backward()
    assert x.grad.dtype == mg.float32
    w = mg.tensor(TIES.astype(np.float32), requires_grad=True)
    w.max().backward()
    assert w.grad.dtype == mg.float32


def test_max_errors_as_torch():
    with pytest.raises(IndexError):
        mg.zeros(0, 3).max(0)
    with pytest.raises(RuntimeError):
        mg.zeros(0).max()
    with pytest.raises(IndexError):
        mg.zeros(3).max(1)
    with pytest.raises(RuntimeError):
        mg.zeros(3, 2).sum(dim=(0, 0))
    with pytest.raises(RuntimeError):
        mg.tensor([1, 2]).mean()
    v, i = mg.tensor(2.0).max(0)
    assert v.item() == 2.0 and i.item() == 0 and mg.zeros(0, 3).amax(1).shape == (0,)


@pytest.mark.parametrize("make", [lambda: mg.ones(3).sum(), lambda: mg.ones(3)[0], lambda: mg.ones(3).max(),
                                  lambda: mg.tensor(2.0) * mg.tensor(3.0), lambda: mg.tensor(2.0).exp()])
def test_0d_results_hold_arrays(make):
    t = make()
    assert isinstance(t.data, np.ndarray) and t.shape == ()
    t.fill_(3)
    assert t.item() == 3


def test_0d_gradients_hold_arrays():
    p = mg.tensor(2.0, requires_grad=True)
    (p * p).backward()
    assert isinstance(p.grad.data, np.ndarray)
    opt = mg.optim.SGD([p], lr=0.1)
    opt.zero_grad(set_to_none=False)
    assert p.grad.item() == 0


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("base", [-2.0, -0.5, 0.0, 1.5])
@pytest.mark.parametrize("exponent", [-1.0, 0.0, 0.5, 2.0, 3.0])
def test_pow_gradients_at_zero_and_negative_bases_match_torch(base, exponent):
    with np.errstate(all="ignore"):
        for form in (lambda a, b: a ** b, lambda a, b: a ** b.item(), lambda a, b: a.item() ** b):
            a, b = (mg.tensor(v, dtype=mg.float64, requires_grad=True) for v in (base, exponent))
            ta, tb = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (base, exponent))
            form(a, b).backward()
            form(ta, tb).backward()
            for t, tt in ((a, ta), (b, tb)):
                expected = None if tt.grad is None else tt.grad.item()
                got = None if t.grad is None else t.grad.item()
                assert (got is None) == (expected is None)
                if got is not None:
                    np.testing.assert_allclose(got, expected, rtol=1e-14)  # inf and nan must match too


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("index", [
    "0, :, [0, 1]", "T0, :, [0, 1]", "[0], :, T1", ":, 0, [0, 1]", "[0, 1], :, 0", "None, 0, [0, 1]",
    "[0, 1], None, [0, 1]", "[0, 1], ..., [0, 1]", "0, ..., [1, 2]", "0, [True, False, True]", "M",
    ":, [[0, 1], [1, 2]], 0", "[0, 1], 1:, [1, 2]", "0, T1, [0, 1]", "[1, 0], 2, [[0], [3]]", "-1, [0, 0, 1], ::2",
    "[], 0", "[0, 1], 2, None, [3, 0]", "..., None, 0", "5", "0, 0, 0, 0", "[5]", "::-1", "0.5",
    "0, True, [1, 2]", "True", "..., False, 1",
])
def test_indexing_matches_torch_in_layout_values_gradients_and_errors(index):
    a = np.arange(24.0).reshape(2, 3, 4)
    results = []
    for T in (torch.tensor, mg.tensor):
        names = dict(T0=T(0), T1=T(1), M=T(np.array([[True, False, True], [False, False, True]])))
        x = T(a, requires_grad=True)
        try:
            y = eval(f"x[{index}]", names, {"x": x})
        except Exception as e:  # noqa: BLE001  (the class is what is compared)
            results.append(type(e))
            continue
        y.backward(T(np.arange(float(np.prod(y.shape))).reshape(tuple(y.shape))))
        results.append((tuple(y.shape), y.detach().numpy().tolist(), x.grad.numpy().tolist()))
    assert results[0] == results[1] or issubclass(results[1], results[0])
