"""Losses: values and gradients against NumPy references, gradcheck (float64), PyTorch parity,
every reduction, and every validation error."""
import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from minigrad.autograd import gradcheck

from conftest import torch

REDUCTIONS = ["mean", "sum", "none"]


def t64(a, grad=True):
    return mg.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def _log_softmax(x):
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _reduce(v, reduction):
    return v.mean() if reduction == "mean" else v.sum() if reduction == "sum" else v


# --- values against NumPy ---------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_indices_value(rng, reduction):
    x = rng.standard_normal((7, 5))
    t = rng.integers(0, 5, 7)
    out = F.cross_entropy(mg.tensor(x), mg.tensor(t), reduction=reduction)
    ref = _reduce(-_log_softmax(x)[np.arange(7), t], reduction)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probs_value(rng, reduction):
    x = rng.standard_normal((6, 4))
    p = rng.dirichlet(np.ones(4), 6)
    out = F.cross_entropy(mg.tensor(x), mg.tensor(p), reduction=reduction)
    ref = _reduce(-(p * _log_softmax(x)).sum(axis=1), reduction)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12)


def test_cross_entropy_one_hot_equals_indices(rng):
    x = mg.tensor(rng.standard_normal((8, 3)))
    t = rng.integers(0, 3, 8)
    a = F.cross_entropy(x, mg.tensor(t))
    b = F.cross_entropy(x, mg.tensor(np.eye(3)[t]))
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    x = mg.tensor(np.array([[1000.0, 0.0, -1000.0], [-1e4, 1e4, 0.0]], np.float32), requires_grad=True)
    loss = F.cross_entropy(x, mg.tensor([0, 2]))
    loss.backward()
    assert np.isfinite(loss.item()) and np.isclose(loss.item(), 1e4 / 2, rtol=1e-6)
    assert np.isfinite(x.grad.numpy()).all()


def test_cross_entropy_1d_logits(rng):
    x = rng.standard_normal(5)
    out = F.cross_entropy(mg.tensor(x), mg.tensor(3))
    np.testing.assert_allclose(out.item(), -_log_softmax(x[None])[0, 3], rtol=1e-12)


def test_bce_with_logits_stable_and_value(rng):
    x = np.array([-800.0, -3.0, 0.0, 2.0, 800.0])
    y = np.array([1.0, 0.0, 0.5, 1.0, 0.0])
    out = F.binary_cross_entropy_with_logits(mg.tensor(x), mg.tensor(y), reduction="none").numpy()
    ref = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    assert np.isfinite(out).all()


def test_bce_clamps_log_like_pytorch():
    out = F.binary_cross_entropy(mg.tensor([0.0, 1.0]), mg.tensor([1.0, 0.0]), reduction="none")
    np.testing.assert_allclose(out.numpy(), [100.0, 100.0])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_value(rng, reduction):
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    out = F.mse_loss(mg.tensor(x), mg.tensor(y), reduction=reduction)
    np.testing.assert_allclose(out.numpy(), _reduce((x - y) ** 2, reduction), rtol=1e-12)


def test_float32_stays_float32(rng):
    x = mg.tensor(rng.standard_normal((4, 3)).astype(np.float32))
    assert F.cross_entropy(x, mg.tensor([0, 1, 2, 0])).dtype == np.float32
    assert F.mse_loss(x, rng.standard_normal((4, 3))).dtype == np.float32  # float64 target follows input


# --- gradients --------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_cross_entropy_indices(rng, reduction):
    t = mg.tensor(rng.integers(0, 4, 5))
    gradcheck(lambda x: F.cross_entropy(x, t, reduction=reduction), [t64(rng.standard_normal((5, 4)))])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_cross_entropy_probs(rng, reduction):
    x, p = t64(rng.standard_normal((5, 4))), t64(rng.dirichlet(np.ones(4), 5))
    gradcheck(lambda x, p: F.cross_entropy(x, p, reduction=reduction), [x, p])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_bce_with_logits(rng, reduction):
    x, y = t64(rng.standard_normal((4, 3)) * 3), t64(rng.uniform(0, 1, (4, 3)))
    gradcheck(lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction=reduction), [x, y])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_bce(rng, reduction):
    p, y = t64(rng.uniform(0.05, 0.95, (4, 3))), t64(rng.uniform(0.1, 0.9, (4, 3)))
    gradcheck(lambda p, y: F.binary_cross_entropy(p, y, reduction=reduction), [p, y])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_mse(rng, reduction):
    x, y = t64(rng.standard_normal((3, 4))), t64(rng.standard_normal((3, 4)))
    gradcheck(lambda x, y: F.mse_loss(x, y, reduction=reduction), [x, y])


@pytest.mark.parametrize("cls, target", [
    (nn.CrossEntropyLoss, lambda rng: mg.tensor(rng.integers(0, 3, 4))),
    (nn.MSELoss, lambda rng: mg.tensor(rng.standard_normal((4, 3)))),
    (nn.BCEWithLogitsLoss, lambda rng: mg.tensor(rng.uniform(0, 1, (4, 3)))),
])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_loss_modules(rng, cls, target, reduction):
    loss, y = cls(reduction=reduction), target(rng)
    gradcheck(lambda x: loss(x, y), [t64(rng.standard_normal((4, 3)))])


def test_gradcheck_bce_module(rng):
    y = mg.tensor(rng.uniform(0, 1, (4, 3)))
    gradcheck(lambda p: nn.BCELoss()(p, y), [t64(rng.uniform(0.1, 0.9, (4, 3)))])


def test_backward_twice_with_retain_graph(rng):
    x = mg.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    loss = F.cross_entropy(x, mg.tensor([0, 1, 2]))
    loss.backward(retain_graph=True)
    g = x.grad.numpy().copy()
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * g)


# --- PyTorch parity ---------------------------------------------------------------------------
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")


def _torch_pair(mg_fn, torch_fn, x, y, y_grad=False):
    a = mg.tensor(x, requires_grad=True)
    b = mg.tensor(y, requires_grad=y_grad)
    out = mg_fn(a, b)
    out.backward(mg.tensor(np.ones(out.shape)))
    ta = torch.tensor(x, requires_grad=True)
    tb = torch.tensor(y, requires_grad=y_grad)
    tout = torch_fn(ta, tb)
    tout.backward(torch.ones_like(tout))
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    if y_grad:
        np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-10, atol=1e-12)


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_cross_entropy(rng, reduction):
    tf = torch.nn.functional
    x = rng.standard_normal((9, 6))
    _torch_pair(lambda a, b: F.cross_entropy(a, b, reduction=reduction),
                lambda a, b: tf.cross_entropy(a, b, reduction=reduction), x, rng.integers(0, 6, 9))
    _torch_pair(lambda a, b: F.cross_entropy(a, b, reduction=reduction),
                lambda a, b: tf.cross_entropy(a, b, reduction=reduction), x, rng.dirichlet(np.ones(6), 9),
                y_grad=True)


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_binary_losses(rng, reduction):
    tf = torch.nn.functional
    x, y = rng.standard_normal((5, 3)) * 4, rng.uniform(0, 1, (5, 3))
    _torch_pair(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction),
                lambda a, b: tf.binary_cross_entropy_with_logits(a, b, reduction=reduction), x, y, True)
    p = rng.uniform(0.02, 0.98, (5, 3))
    _torch_pair(lambda a, b: F.binary_cross_entropy(a, b, reduction=reduction),
                lambda a, b: tf.binary_cross_entropy(a, b, reduction=reduction), p, y, True)
    _torch_pair(lambda a, b: F.mse_loss(a, b, reduction=reduction),
                lambda a, b: tf.mse_loss(a, b, reduction=reduction), x, y, True)


@needs_torch
def test_torch_cross_entropy_float32(rng):
    x = rng.standard_normal((32, 10)).astype(np.float32) * 5
    t = rng.integers(0, 10, 32)
    a = mg.tensor(x, requires_grad=True)
    F.cross_entropy(a, mg.tensor(t)).backward()
    ta = torch.tensor(x, requires_grad=True)
    torch.nn.functional.cross_entropy(ta, torch.tensor(t)).backward()
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-5, atol=1e-7)


# --- validation -------------------------------------------------------------------------------
def test_class_index_out_of_range():
    x = mg.zeros(3, 10)
    with pytest.raises(IndexError, match=r"target contains class 10 but logits have 10 classes \(valid 0..9\)"):
        F.cross_entropy(x, mg.tensor([1, 10, 2]))
    with pytest.raises(IndexError, match=r"target contains class -1 but logits have 10 classes"):
        F.cross_entropy(x, mg.tensor([1, -1, 2]))
    with pytest.raises(IndexError, match="class 12"):
        nn.CrossEntropyLoss()(x, mg.tensor(np.array([12, 0, 0], np.int32)))


def test_cross_entropy_float_labels_rejected():
    with pytest.raises(ValueError, match=r"class indices must be an integer tensor of shape \(3,\).*"
                                         r"class probabilities a float tensor of the logits' shape \(3, 4\)"):
        F.cross_entropy(mg.zeros(3, 4), mg.tensor([0.0, 1.0, 2.0]))


def test_cross_entropy_integer_one_hot_rejected():
    with pytest.raises(ValueError, match=r"integer class-index target must have shape \(3,\).*found \(3, 4\)"):
        F.cross_entropy(mg.zeros(3, 4), mg.tensor(np.eye(4, dtype=np.int64)[[0, 1, 2]]))


def test_cross_entropy_probability_shape_mismatch():
    with pytest.raises(ValueError, match=r"target of shape \(3, 5\)"):
        F.cross_entropy(mg.zeros(3, 4), mg.zeros(3, 5))


def test_cross_entropy_wrong_target_dtype_and_logits_rank():
    with pytest.raises(TypeError, match="found dtype bool"):
        F.cross_entropy(mg.zeros(2, 3), mg.tensor([True, False]))
    with pytest.raises(ValueError, match=r"input must have shape \(N, C\), \(C,\) or \(N, C, d1, ...\), found \(\)"):
        F.cross_entropy(mg.tensor(1.0), mg.tensor(0))


@pytest.mark.parametrize("fn", [F.binary_cross_entropy, F.binary_cross_entropy_with_logits])
def test_binary_targets_outside_unit_interval(fn):
    # a seed program fed digit labels 0..9 to binary cross-entropy
    with pytest.raises(ValueError, match=r"target values must lie in \[0, 1\], found values in \[0, 9\]"):
        fn(mg.full((4,), 0.5), mg.tensor([0.0, 3.0, 9.0, 1.0]))
    with pytest.raises(ValueError, match=r"found values in \[-1, 1\]"):
        fn(mg.full((2,), 0.5), mg.tensor([-1.0, 1.0]))


def test_bce_input_outside_unit_interval():
    with pytest.raises(ValueError, match=r"binary_cross_entropy: input values must lie in \[0, 1\], found values "
                                         r"in \[-2, 3\]"):
        F.binary_cross_entropy(mg.tensor([-2.0, 3.0]), mg.tensor([0.0, 1.0]))


@pytest.mark.parametrize("fn", [F.binary_cross_entropy, F.binary_cross_entropy_with_logits, F.mse_loss])
def test_integer_labels_where_one_hot_was_meant(fn):
    with pytest.raises(ValueError, match=r"target shape \(4,\) does not match input shape \(4, 3\).*one-hot"):
        fn(mg.full((4, 3), 0.5), mg.tensor([0, 1, 2, 1]))


def test_bad_reduction():
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', found 'avg'"):
        F.mse_loss(mg.zeros(2), mg.zeros(2), reduction="avg")
    with pytest.raises(ValueError, match="CrossEntropyLoss: reduction"):
        nn.CrossEntropyLoss(reduction="avg")


def test_targets_as_numpy_and_lists(rng):
    x = mg.tensor(rng.standard_normal((3, 4)))
    a = F.cross_entropy(x, np.array([0, 1, 3]))
    b = F.cross_entropy(x, mg.tensor([0, 1, 3]))
    assert a.item() == b.item()
    assert F.mse_loss(mg.zeros(2), [1.0, 1.0]).item() == 1.0


def test_loss_repr():
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert repr(nn.MSELoss(reduction="sum")) == "MSELoss(reduction='sum')"


@pytest.mark.parametrize("classes", [3, 40])            # both layouts of the fused cross-entropy
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_many_and_few_classes(rng, classes, reduction):
    x = rng.standard_normal((6, classes)) * 3
    t = rng.integers(0, classes, 6)
    out = F.cross_entropy(mg.tensor(x), mg.tensor(t), reduction=reduction)
    np.testing.assert_allclose(out.numpy(), _reduce(-_log_softmax(x)[np.arange(6), t], reduction), rtol=1e-12)
    gradcheck(lambda x: F.cross_entropy(x, mg.tensor(t), reduction=reduction), [t64(x)])
    a = mg.tensor(x.astype(np.float32), requires_grad=True)
    F.cross_entropy(a, mg.tensor(t), reduction=reduction).sum().backward()
    assert a.grad.data.flags.c_contiguous and a.grad.dtype == np.float32


# --- cross_entropy's PyTorch options: weight, ignore_index, label_smoothing, (N, C, d1, ...) -----
CE_OPTIONS = [dict(weight=[1.0, 2.0, 0.5, 3.0, 1.5]), dict(ignore_index=-100), dict(ignore_index=2),
              dict(label_smoothing=0.2), dict(weight=[0.2, 1.0, 2.0, 0.7, 1.1], ignore_index=4, label_smoothing=0.1)]


def _labels_with_ignored(rng, shape, opts):
    t = rng.integers(0, 5, shape)
    flat = t.reshape(-1)
    flat[::3] = opts.get("ignore_index", -100) if "ignore_index" in opts else flat[::3]
    return t


def _opts(opts, lib):
    out = dict(opts)
    if "weight" in out:
        out["weight"] = lib.tensor(np.array(out["weight"], np.float64))
    return out


@needs_torch
@pytest.mark.parametrize("opts", CE_OPTIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(7, 5), (3, 5, 4), (2, 5, 3, 2)])
def test_torch_cross_entropy_options(rng, opts, reduction, shape):
    tf = torch.nn.functional
    x = rng.standard_normal(shape)
    t = _labels_with_ignored(rng, (shape[0],) + shape[2:], opts)
    _torch_pair(lambda a, b: F.cross_entropy(a, b, reduction=reduction, **_opts(opts, mg)),
                lambda a, b: tf.cross_entropy(a, b, reduction=reduction, **_opts(opts, torch)), x, t)


@needs_torch
@pytest.mark.parametrize("opts", [dict(weight=[1.0, 2.0, 0.5, 3.0, 1.5]), dict(label_smoothing=0.3),
                                  dict(weight=[0.2, 1.0, 2.0, 0.7, 1.1], label_smoothing=0.1)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(7, 5), (3, 5, 4)])
def test_torch_cross_entropy_probability_options(rng, opts, reduction, shape):
    tf = torch.nn.functional
    x = rng.standard_normal(shape)
    p = np.moveaxis(rng.dirichlet(np.ones(5), (shape[0],) + shape[2:]), -1, 1)
    _torch_pair(lambda a, b: F.cross_entropy(a, b, reduction=reduction, **_opts(opts, mg)),
                lambda a, b: tf.cross_entropy(a, b, reduction=reduction, **_opts(opts, torch)), x, p, y_grad=True)


@needs_torch
def test_torch_cross_entropy_every_target_ignored(rng):
    x = rng.standard_normal((3, 4))
    _torch_pair(lambda a, b: F.cross_entropy(a, b, ignore_index=1),
                lambda a, b: torch.nn.functional.cross_entropy(a, b, ignore_index=1), x, np.ones(3, np.int64))


@pytest.mark.parametrize("opts", CE_OPTIONS)
def test_gradcheck_cross_entropy_options(rng, opts):
    t = mg.tensor(_labels_with_ignored(rng, (3, 2), opts))
    gradcheck(lambda x: F.cross_entropy(x, t, **_opts(opts, mg)), [t64(rng.standard_normal((3, 5, 2)))])


def test_gradcheck_cross_entropy_probabilities_smoothed_and_weighted(rng):
    w = mg.tensor([0.5, 1.0, 2.0])
    gradcheck(lambda x, p: F.cross_entropy(x, p, w, label_smoothing=0.2, reduction="sum"),
              [t64(rng.standard_normal((4, 3))), t64(rng.dirichlet(np.ones(3), 4))])


def test_cross_entropy_ignored_labels_value(rng):
    x = rng.standard_normal((4, 3))
    t = np.array([0, -100, 2, -100])
    loss = F.cross_entropy(mg.tensor(x), mg.tensor(t)).item()
    kept = -_log_softmax(x)[[0, 2], [0, 2]]
    assert loss == pytest.approx(kept.mean())


def test_cross_entropy_options_errors():
    x = mg.zeros(3, 4)
    with pytest.raises(ValueError, match=r"weight must have one entry per class, shape \(4,\), found \(3,\)"):
        F.cross_entropy(x, mg.tensor([0, 1, 2]), mg.ones(3))
    with pytest.raises(ValueError, match=r"label_smoothing must lie in \[0, 1\], found 1.5"):
        F.cross_entropy(x, mg.tensor([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(TypeError, match="pass reduction='sum' by keyword"):
        F.cross_entropy(x, mg.tensor([0, 1, 2]), "sum")
    with pytest.raises(ValueError, match="ignore_index .* only applies to class-index targets"):
        F.cross_entropy(x, mg.ones(3, 4) / 4, ignore_index=0)
    with pytest.raises(IndexError, match=r"class 7 but logits have 4 classes \(valid 0..3\); targets equal to ignore_index \(-1\)"):
        F.cross_entropy(x, mg.tensor([0, -1, 7]), ignore_index=-1)
    with pytest.raises(ValueError, match=r"must have shape \(2, 3\) for input of shape \(2, 4, 3\), found \(2,\)"):
        F.cross_entropy(mg.zeros(2, 4, 3), mg.tensor([0, 1]))


def test_cross_entropy_loss_module_options():
    loss = nn.CrossEntropyLoss([1.0, 2.0, 3.0], ignore_index=0, label_smoothing=0.1, reduction="sum")
    assert repr(loss) == "CrossEntropyLoss(reduction='sum', ignore_index=0, label_smoothing=0.1)"
    assert list(loss.state_dict()) == ["weight"]
    x, t = mg.tensor(np.eye(3) * 2.0), mg.tensor([0, 1, 2])
    expected = F.cross_entropy(x, t, mg.tensor([1.0, 2.0, 3.0]), ignore_index=0, label_smoothing=0.1,
                               reduction="sum")
    assert loss(x, t).item() == pytest.approx(expected.item())
    assert list(nn.CrossEntropyLoss().state_dict()) == []
    with pytest.raises(TypeError, match="pass reduction='none' by keyword"):
        nn.CrossEntropyLoss("none")
