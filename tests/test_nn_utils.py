"""mg.nn.utils: clip_grad_norm_ / clip_grad_value_ (and get_total_norm, clip_grads_with_norm_) against PyTorch."""
import math

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn

from conftest import torch

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")


def pairs(dtypes=(np.float32, np.float64, np.float32), shapes=((4, 3), (3,), (2, 2, 2)), seed=0, scale=3.0):
    """Parameters with gradients, in minigrad and in PyTorch, holding the same values."""
    rng = np.random.default_rng(seed)
    ours, theirs = [], []
    for dt, s in zip(dtypes, shapes):
        w, g = rng.standard_normal(s).astype(dt), (scale * rng.standard_normal(s)).astype(dt)
        p, q = nn.Parameter(mg.tensor(w)), torch.nn.Parameter(torch.tensor(w))
        p.grad, q.grad = mg.tensor(g), torch.tensor(g)
        ours.append(p)
        theirs.append(q)
    return ours, theirs


def assert_grads_equal(ours, theirs, rtol=1e-6):
    for p, q in zip(ours, theirs):
        if q.grad is None:
            assert p.grad is None
            continue
        assert p.grad.dtype == np.dtype(str(q.grad.dtype).replace("torch.", ""))
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=rtol, atol=1e-7)


@needs_torch
@pytest.mark.parametrize("norm_type", [2.0, 1, math.inf, -math.inf, 0, 3.5])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
@pytest.mark.parametrize("dtypes", [(np.float32,) * 3, (np.float64,) * 3, (np.float32, np.float64, np.float32)],
                         ids=["f32", "f64", "mixed"])
def test_clip_grad_norm_like_pytorch(norm_type, max_norm, dtypes):
    ours, theirs = pairs(dtypes)
    total = nn.utils.clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert isinstance(total, mg.Tensor) and total.shape == () and str(total.dtype) == str(ttotal.dtype)[6:]
    np.testing.assert_allclose(total.item(), ttotal.item(), rtol=1e-6)
    assert_grads_equal(ours, theirs)


@needs_torch
def test_clip_grad_norm_single_tensor_missing_grads_and_no_grads():
    ours, theirs = pairs()
    ours[1].grad, theirs[1].grad = None, None
    np.testing.assert_allclose(nn.utils.clip_grad_norm_(ours, 1.0).item(),
                               torch.nn.utils.clip_grad_norm_(theirs, 1.0).item(), rtol=1e-6)
    assert_grads_equal(ours, theirs)
    total = nn.utils.clip_grad_norm_(ours[0], 0.1)
    np.testing.assert_allclose(total.item(), torch.nn.utils.clip_grad_norm_(theirs[0], 0.1).item(), rtol=1e-6)
    assert_grads_equal(ours, theirs)
    empty = nn.utils.clip_grad_norm_([nn.Parameter(mg.ones(2))], 1.0)
    assert empty.item() == 0.0 and empty.dtype == np.float32


def test_clip_grad_norm_bounds_the_norm():
    ours = [nn.Parameter(mg.ones(4)), nn.Parameter(mg.ones(3))]
    for p in ours:
        p.grad = mg.full(p.shape, 2.0)
    total = nn.utils.clip_grad_norm_(iter(ours), max_norm=1.0)    # a generator, as model.parameters()
    np.testing.assert_allclose(total.item(), math.sqrt(7 * 4), rtol=1e-6)
    after = math.sqrt(sum(float((p.grad.numpy() ** 2).sum()) for p in ours))
    assert after == pytest.approx(1.0, rel=1e-5)


def test_clip_grad_norm_nonfinite():
    p = nn.Parameter(mg.ones(3))
    p.grad = mg.tensor([float("nan"), 1.0, 2.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(p.grad.numpy()[1:], [1.0, 2.0])       # untouched
    assert math.isnan(nn.utils.clip_grad_norm_([p], 1.0).item())       # scaled by it anyway, as PyTorch


@needs_torch
def test_get_total_norm_and_clip_grads_with_norm_like_pytorch():
    ours, theirs = pairs()
    total = nn.utils.get_total_norm([p.grad for p in ours], 3.0)
    ttotal = torch.nn.utils.get_total_norm([p.grad for p in theirs], 3.0)
    np.testing.assert_allclose(total.item(), ttotal.item(), rtol=1e-6)
    nn.utils.clip_grads_with_norm_(ours, 2.0, total)
    torch.nn.utils.clip_grads_with_norm_(theirs, 2.0, ttotal)
    assert_grads_equal(ours, theirs)


@needs_torch
@pytest.mark.parametrize("clip_value", [0.5, 2, 100.0])
def test_clip_grad_value_like_pytorch(clip_value):
    ours, theirs = pairs()
    assert nn.utils.clip_grad_value_(ours, clip_value) is None
    torch.nn.utils.clip_grad_value_(theirs, clip_value)
    for p, q in zip(ours, theirs):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())


def test_importable_as_mg_nn_utils():
    import minigrad.nn.utils as u
    assert mg.nn.utils is u and callable(u.clip_grad_norm_)


def test_clip_on_cuda_device(device):
    p = nn.Parameter(mg.ones(3, device=device))
    p.grad = mg.tensor([3.0, 4.0, 0.0], device=device)
    total = nn.utils.clip_grad_norm_([p], 1.0)
    assert total.device == p.device and total.item() == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.numpy(), [0.6, 0.8, 0.0], rtol=1e-5)
    nn.utils.clip_grad_value_([p], 0.7)
    np.testing.assert_allclose(p.grad.numpy(), [0.6, 0.7, 0.0], rtol=1e-5)
