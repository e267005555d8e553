"""PyTorch's Tensor methods and top-level functions (clone, norm, var, std, logsumexp, repeat,
masked_fill, ..., mg.sum, mg.from_numpy, mg.linspace, ...): values, dtypes and gradients against
PyTorch, gradients against finite differences in float64."""
import math

import numpy as np
import pytest

import minigrad as mg
from conftest import torch

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")
INF = math.inf

X = np.array([[1.5, -3.0, 3.0, 0.5], [0.0, 0.0, 0.0, 0.0], [-2.0, 0.25, 1.0, -1.0]])

# name -> f(lib, x): the same line in minigrad and in PyTorch; x is a float tensor of X's shape
METHODS = {
    "clone": lambda lib, x: x.clone() * 2,
    "contiguous": lambda lib, x: x.T.contiguous(),
    "add_alpha": lambda lib, x: x.add(x * x, alpha=2.5),
    "sub_alpha": lambda lib, x: x.sub(x.exp(), alpha=-0.5),
    "mul": lambda lib, x: x.mul(x.neg()),
    "div": lambda lib, x: x.div(x * x + 1),
    "pow": lambda lib, x: (x * x + 1).pow(1.5),
    "matmul": lambda lib, x: x.matmul(x.T),
    "clamp": lambda lib, x: x.clamp(min=-1.2, max=0.7) + x.clamp(max=0.2) + x.clamp(-0.3),
    "norm": lambda lib, x: x.norm(),
    "norm_2_dim": lambda lib, x: x.norm(2, dim=0, keepdim=True),
    "norm_1": lambda lib, x: x.norm(p=1, dim=1),
    "norm_inf": lambda lib, x: x.norm(p=INF, dim=1),
    "norm_-inf": lambda lib, x: x.norm(p=-INF, dim=0),
    "norm_3": lambda lib, x: x.norm(p=3, dim=(0, 1)),
    "norm_0.5": lambda lib, x: (x + 0.1).norm(p=0.5, dim=1),
    "norm_fro": lambda lib, x: x.norm(p="fro", dim=-1),
    "norm_0": lambda lib, x: x.norm(p=0, dim=1),
    "var": lambda lib, x: x.var(),
    "var_dim": lambda lib, x: x.var(1, keepdim=True),
    "var_unbiased_false": lambda lib, x: x.var(0, unbiased=False),
    "var_correction": lambda lib, x: x.var(dim=(0, 1), correction=2),
    "var_positional_bool": lambda lib, x: x.var(False),
    "std": lambda lib, x: (x + lib.arange(4) * 0.1).std(0),
    "std_correction": lambda lib, x: (x + lib.arange(4) * 0.1).std(dim=1, correction=0, keepdim=True),
    "repeat": lambda lib, x: x.repeat(2, 3) * lib.arange(72).reshape(6, 12).to(x.dtype),
    "repeat_new_dims": lambda lib, x: x[0].repeat(2, 1, 3),
    "expand": lambda lib, x: x[:, :1].expand(2, -1, 5),
    "masked_fill": lambda lib, x: x.masked_fill(x > 0.4, -1.5),
    "masked_fill_broadcast": lambda lib, x: x[0].masked_fill(x < 0, 2),
    "logsumexp": lambda lib, x: x.logsumexp(1),
    "logsumexp_dims": lambda lib, x: (x * 300).logsumexp((0, 1), keepdim=True),
    "argmin": lambda lib, x: x.argmin(1),
    "argmin_all": lambda lib, x: x.argmin(),
    "argmin_keepdim": lambda lib, x: x.argmin(dim=0, keepdim=True),
}

FUNCTIONS = {
    "sum": lambda lib, x: lib.sum(x, 1),
    "mean": lambda lib, x: lib.mean(x),
    "max": lambda lib, x: lib.max(x),
    "max_dim": lambda lib, x: lib.max(x, 1).values,
    "min_dim": lambda lib, x: lib.min(x, dim=0, keepdim=True)[0],
    "argmax": lambda lib, x: lib.argmax(x, 1),
    "argmin": lambda lib, x: lib.argmin(x),
    "exp": lambda lib, x: lib.exp(x),
    "log": lambda lib, x: lib.log(x * x + 1),
    "sqrt": lambda lib, x: lib.sqrt(x * x + 1),
    "abs": lambda lib, x: lib.abs(x),
    "relu": lambda lib, x: lib.relu(x),
    "sigmoid": lambda lib, x: lib.sigmoid(x),
    "tanh": lambda lib, x: lib.tanh(x),
    "matmul": lambda lib, x: lib.matmul(x, x.T),
    "clamp": lambda lib, x: lib.clamp(x, -0.5, 0.5),
    "full_like": lambda lib, x: lib.full_like(x, 2.5) * x,
    "full_like_int": lambda lib, x: lib.full_like(x.long(), 2.7, dtype=lib.int32),
    "linspace": lambda lib, x: lib.linspace(-1, 2, 7),
    "linspace_float64": lambda lib, x: lib.linspace(0, 1, 5, dtype=lib.float64),
    "var": lambda lib, x: lib.var(x, 0),
    "std": lambda lib, x: lib.std(x),
    "norm": lambda lib, x: lib.norm(x, dim=1),
    "logsumexp": lambda lib, x: lib.logsumexp(x, 0),
}

# kinks and ties (|x| at 0, the inf-norm's tied maxima) are fine in the PyTorch comparison, but a
# finite difference across them is meaningless
NOT_SMOOTH = {"clamp", "norm_1", "norm_inf", "norm_-inf", "norm_0", "norm_0.5", "norm_3", "norm_2_dim", "norm",
              "norm_fro", "masked_fill", "masked_fill_broadcast", "argmin", "argmin_all", "argmin_keepdim", "abs",
              "relu", "max", "max_dim", "min_dim", "argmax", "full_like_int", "linspace", "linspace_float64"}


def _compare(f, dtype):
    x = mg.tensor(X, dtype=dtype, requires_grad=True)
    tx = torch.tensor(X, dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True)
    y, ty = f(mg, x), f(torch, tx)
    assert y.dtype == np.dtype(str(ty.dtype).removeprefix("torch.")), (y.dtype, ty.dtype)
    assert tuple(y.shape) == tuple(ty.shape)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-6 if dtype == mg.float32 else 1e-12, atol=1e-6)
    assert y.requires_grad == ty.requires_grad
    if ty.requires_grad:
        upstream = np.random.default_rng(1).standard_normal(ty.shape)
        y.backward(mg.tensor(upstream, dtype=y.dtype))
        ty.backward(torch.tensor(upstream, dtype=ty.dtype))
        assert (x.grad is None) == (tx.grad is None)
        if tx.grad is not None:
            np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)


@needs_torch
@pytest.mark.parametrize("dtype", [mg.float32, mg.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_matches_torch(name, dtype):
    _compare(METHODS[name], dtype)


@needs_torch
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_matches_torch(name):
    _compare(FUNCTIONS[name], mg.float32)


@pytest.mark.parametrize("name", sorted(set(METHODS) - NOT_SMOOTH))
def test_method_gradcheck(name):
    x = mg.tensor(X + np.random.default_rng(0).uniform(0.05, 0.1, X.shape), requires_grad=True)
    assert mg.autograd.gradcheck(lambda t: METHODS[name](mg, t), [x])


@pytest.mark.parametrize("p", [1, 2, 3, 0.5, INF, -INF])
def test_norm_gradcheck_away_from_kinks_and_ties(p):
    x = mg.tensor(np.random.default_rng(0).uniform(0.5, 2, (3, 4)) * np.sign(X + 0.1), requires_grad=True)
    assert mg.autograd.gradcheck(lambda t: t.norm(p, dim=1), [x])


def test_logsumexp_is_stable_and_handles_all_minus_inf():
    x = mg.tensor([[1000.0, 1000.0], [-INF, -INF]])
    np.testing.assert_allclose(x.logsumexp(1).numpy(), [1000 + math.log(2), -INF])
    assert mg.tensor([1, 2]).logsumexp(0).dtype == mg.float32  # integers promote, as torch


@needs_torch
@pytest.mark.parametrize("case", [
    lambda lib: lib.tensor([1, 2]).norm(),
    lambda lib: lib.tensor([1, 2]).var(),
    lambda lib: lib.ones(3, 2).expand(-1, 3, 2),
    lambda lib: lib.ones(3).expand(2, 4),
    lambda lib: lib.ones(3, 2).repeat(2),
    lambda lib: lib.ones(3).masked_fill(lib.ones(3), 0),
    lambda lib: lib.ones(3).masked_fill(lib.ones(3) > 0, lib.ones(2)),
    lambda lib: lib.allclose(lib.ones(2), lib.ones(2, dtype=lib.float64)),
    lambda lib: lib.linspace(0, 1, -1),
], ids=["norm_int", "var_int", "expand_leading_-1", "expand_mismatch", "repeat_too_few", "masked_fill_float_mask",
        "masked_fill_value_not_0d", "allclose_dtypes", "linspace_negative_steps"])
def test_errors_match_torch(case):
    with pytest.raises(Exception) as want:
        case(torch)
    with pytest.raises(type(want.value)):
        case(mg)


def test_in_place_clamp_and_method_forms_of_in_place_arithmetic():
    x = mg.tensor([[-2.0, 0.5], [3.0, 1.0]], requires_grad=True)
    y = x * 1
    y.clamp_(min=-1, max=2).add_(1, alpha=2).sub_(x, alpha=0.5)
    y.sum().backward()
    np.testing.assert_allclose(y.numpy(), [[2.0, 2.25], [2.5, 2.5]])
    np.testing.assert_allclose(x.grad.numpy(), [[-0.5, 0.5], [-0.5, 0.5]])


def test_from_numpy_shares_memory_both_ways():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = mg.from_numpy(a)
    assert t.dtype == mg.float32 and t.shape == (2, 3) and t.device == mg.device("cpu")
    a[0, 0] = 10
    assert t[0, 0].item() == 10
    t.mul_(2)
    assert a[1, 2] == 10
    assert mg.from_numpy(np.array([1, 2])).dtype == mg.int64
    with pytest.raises(TypeError, match="expected np.ndarray"):
        mg.from_numpy([1.0, 2.0])
    with pytest.raises(TypeError, match="can't convert"):
        mg.from_numpy(np.array(["a"]))


def test_randperm_follows_the_seed():
    mg.manual_seed(3)
    p = mg.randperm(10)
    assert p.dtype == mg.int64 and sorted(p.tolist()) == list(range(10))
    mg.manual_seed(3)
    assert mg.randperm(10).tolist() == p.tolist()
    assert mg.randperm(0).shape == (0,) and mg.randperm(4, dtype=mg.int32).dtype == mg.int32


def test_allclose():
    a = mg.tensor([1.0, 2.0, float("nan")])
    assert not mg.allclose(a, a) and mg.allclose(a, a, equal_nan=True)
    assert mg.allclose(mg.tensor([1.0]), mg.tensor([1.0 + 1e-6])) and not mg.allclose(mg.tensor([1.0]), mg.tensor([1.1]))
    assert mg.allclose(mg.tensor([1.0]), mg.tensor([1.05]), rtol=0.1)


def test_function_forms_want_a_tensor():
    with pytest.raises(TypeError, match="must be Tensor, not list"):
        mg.sum([1.0, 2.0])
    assert mg.sum.__name__ == "sum" and "torch.sum" in mg.sum.__doc__
