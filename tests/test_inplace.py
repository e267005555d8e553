"""In-place ops: recorded on the tape as PyTorch records them, refused on leaves that require
grad, and checked by version counters at backward; each case is compared with PyTorch."""
import copy
import pickle

import numpy as np
import pytest

import minigrad as mg
from conftest import torch

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")
STALE = "modified by an inplace operation"


def _run(lib, case):
    """Run case(lib) and return ("ok", gradients as lists) or ("error", exception class, message)."""
    try:
        grads = case(lib)
    except Exception as e:  # compared below: which class, which message
        return "error", e
    return "ok", [None if g is None else np.asarray(g.tolist()) for g in grads]


def _leaf(lib, values):
    return lib.tensor(values, requires_grad=True)


def _saved_input_copied(lib):
    x = _leaf(lib, [1.0, 2.0, 3.0])
    y = x * x
    with lib.no_grad():
        x.copy_(lib.tensor([2.0, 2.0, 2.0]))
    y.sum().backward()
    return [x.grad]


def _saved_input_add_(lib):
    x = _leaf(lib, [1.0, 2.0, 3.0])
    y = (x * x).sum()
    with lib.no_grad():
        x.add_(1)
    y.backward()
    return [x.grad]


def _saved_output_plus_equals(lib):
    x = _leaf(lib, [1.0, 2.0, 3.0])
    y = x.exp()
    y += 1  # Exp saved its output
    y.sum().backward()
    return [x.grad]


def _recorded_plus_equals(lib):
    a, b = _leaf(lib, [1.0, 2.0, 3.0]), _leaf(lib, [4.0, 5.0, 6.0])
    c = a * b
    c += 1
    c *= b
    (c * c).sum().backward()
    return [a.grad, b.grad]


def _recorded_chain(lib):
    x = _leaf(lib, [1.0, -2.0, 3.0])
    c = x * 2
    c.div_(4)
    c.sub_(1, alpha=2)
    c.clamp_(-1.5, 0.2)
    c.mul_(3)
    c.pow_(2)
    c.sum().backward()
    return [x.grad]


def _recorded_into_a_constant(lib):
    w = _leaf(lib, [1.0, 2.0, 3.0])
    c = lib.ones(3) * 2  # requires no grad until w is added into it
    c.add_(w, alpha=3)
    (c * c).sum().backward()
    return [w.grad]


def _recorded_fill_zero_copy(lib):
    x, y = _leaf(lib, [1.0, 2.0, 3.0]), _leaf(lib, [4.0, 5.0, 6.0])
    a, b, c = x * 2, x * 3, x * 4
    a.zero_()
    b.fill_(7)
    c.copy_(y * y)
    (a + b + c).sum().backward()
    return [x.grad, y.grad]


def _leaf_plus_equals(lib):
    x = _leaf(lib, [1.0, 2.0])
    x += 1
    return [x]


def _leaf_zero_(lib):
    x = _leaf(lib, [1.0, 2.0])
    x.zero_()
    return [x]


def _optimizer_step_between(lib):
    w = _leaf(lib, [1.0, 2.0, 3.0])
    opt = lib.optim.SGD([w], lr=0.1)
    loss = (w * w).sum()
    loss.backward(retain_graph=True)
    opt.step()
    loss.backward()
    return [w.grad]


def _unsaved_input_changed(lib):
    x = _leaf(lib, [1.0, 2.0, 3.0])
    y = (x * 2).exp()  # x * 2 saves no tensor of x's
    with lib.no_grad():
        x.add_(1)
    y.sum().backward()
    return [x.grad]


def _change_after_backward(lib):
    x = _leaf(lib, [1.0, 2.0, 3.0])
    (x * x).sum().backward()
    with lib.no_grad():
        x.mul_(2)
    (x * x).sum().backward()
    return [x.grad]


def _through_detach(lib):
    x = _leaf(lib, [1.0, 2.0, 3.0])
    y = x * x
    x.detach().add_(1)  # a detached tensor shares x's memory and version
    y.sum().backward()
    return [x.grad]


def _through_a_view(lib):
    x = _leaf(lib, [[1.0, 2.0], [3.0, 4.0]])
    y = (x * x).sum()
    with lib.no_grad():
        x[0].mul_(2)
    y.backward()
    return [x.grad]


def _self_times_self(lib):
    x = _leaf(lib, [1.0, 2.0])
    c = x * 2
    c.mul_(c)
    c.sum().backward()
    return [x.grad]


def _shape_grows(lib):
    c = lib.ones(3)
    c.add_(lib.ones((2, 3)))
    return [c]


def _int_plus_float(lib):
    c = lib.ones(3, dtype=lib.int64)
    c += 1.5
    return [c]


def _int_copy_from_float(lib):
    c = lib.zeros(3, dtype=lib.int64)
    c.copy_(lib.tensor([1.7, -2.2, 3.0]))
    c.fill_(2.9)
    c.add_(lib.ones(3, dtype=lib.int32))
    return [c]


CASES = [_saved_input_copied, _saved_input_add_, _saved_output_plus_equals, _recorded_plus_equals,
         _recorded_chain, _recorded_into_a_constant, _recorded_fill_zero_copy, _leaf_plus_equals, _leaf_zero_,
         _optimizer_step_between, _unsaved_input_changed, _change_after_backward, _through_detach,
         _through_a_view, _shape_grows, _int_plus_float, _int_copy_from_float]


@needs_torch
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__.strip("_"))
def test_in_place_matches_torch(case):
    got, want = _run(mg, case), _run(torch, case)
    assert got[0] == want[0], (got, want)
    if got[0] == "error":
        assert type(want[1]) is RuntimeError and isinstance(got[1], RuntimeError), (got, want)
        for phrase in (STALE, "leaf Variable", "doesn't match the broadcast shape", "can't be cast"):
            assert (phrase in str(got[1])) == (phrase in str(want[1])), (str(got[1]), str(want[1]))
        return
    for g, w in zip(got[1], want[1]):
        assert (g is None) == (w is None)
        if g is not None:
            np.testing.assert_allclose(g, w, rtol=1e-6)


def test_stale_message_names_the_versions_and_the_op():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    y += 1
    y += 1
    with pytest.raises(RuntimeError, match=r"\[float32 tensor of shape \(2,\)\], saved by <ExpBackward>, is at "
                                           r"version 2; expected version 0 instead"):
        y.sum().backward()


def test_self_times_self_in_place_gives_the_right_gradient():
    # PyTorch refuses c.mul_(c) (its Mul saved c, then overwritten); minigrad keeps what the
    # in-place op saved of c's old value, so the gradient is right: d(4x^2)/dx = 8x
    (ok, grads) = _run(mg, _self_times_self)
    assert ok == "ok"
    np.testing.assert_allclose(grads[0], [8.0, 16.0])


def test_version_counts_changes_through_tensors_only():
    x = mg.zeros(3)
    assert x._version == 0
    x.add_(1)
    x += 1
    x.zero_()
    x.detach().fill_(2)
    assert x._version == 4
    x.data[...] = 5  # .data is the raw array, outside the tape and its counters (as torch's .data)
    assert x._version == 4
    v = x.reshape(3, 1)
    v.mul_(2)
    assert x._version == 5 and v._version == 5  # a view and its base share a version


def test_in_place_on_a_view_inside_the_graph_is_refused():
    x = mg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    with pytest.raises(RuntimeError, match="a view of a leaf Variable"):
        x.T.add_(1)
    c = x * 1
    with pytest.raises(RuntimeError, match="does not rewrite the base's history"):
        c[0].add_(1)


def test_an_element_is_a_view_of_its_tensor():
    """x[i] of a 1-D tensor and x[i, j] are 0-d views, as PyTorch's: changing one changes x."""
    x, m = mg.zeros(3), mg.zeros(2, 2)
    x[0].add_(1)
    m[0, 1].fill_(5)
    assert x.tolist() == [1.0, 0.0, 0.0] and m.tolist() == [[0.0, 5.0], [0.0, 0.0]] and x._version == 1
    with pytest.raises(RuntimeError, match="does not rewrite the base's history"):
        (mg.ones(2, requires_grad=True) * 1)[0].add_(1)


def test_in_place_on_an_expanded_tensor_is_refused():
    with pytest.raises(RuntimeError, match="read-only"):
        mg.ones(3).expand(2, 3).add_(1)


def test_leaves_change_in_place_under_no_grad():
    w = mg.ones(2, requires_grad=True)
    with mg.no_grad():
        w -= 0.5
        w.mul_(2).clamp_(max=0.5)
    assert w.tolist() == [0.5, 0.5] and w.requires_grad and w.is_leaf


def test_in_place_gradients_pass_gradcheck():
    rng = np.random.default_rng(0)
    a = mg.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    b = mg.tensor(rng.standard_normal(4) + 3, requires_grad=True)

    def f(a, b):
        c = a * 2
        c += b
        c.mul_(b)
        c.div_(b + 1)
        c.clamp_(-2, 2)
        return c
    assert mg.autograd.gradcheck(f, [a, b])


@pytest.mark.parametrize("clone", [pickle, copy], ids=["pickle", "deepcopy"])
def test_unpickled_or_copied_model_trains(clone):
    mg.manual_seed(0)
    model = mg.nn.Sequential(mg.nn.Linear(4, 8, activation="relu"), mg.nn.Linear(8, 3))
    model = pickle.loads(pickle.dumps(model)) if clone is pickle else copy.deepcopy(model)
    assert model[0].weight.dtype == mg.float32
    x = mg.randn(16, 4)
    y = mg.tensor(np.arange(16) % 3)
    for opt in (mg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), mg.optim.Adam(model.parameters(), lr=0.01)):
        losses = []
        for _ in range(5):
            loss = mg.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0]


def test_kernels_take_equal_dtypes_and_refuse_other_byte_orders():
    from minigrad import kernels
    z = np.ones((4, 3), np.float32)
    unpickled = pickle.loads(pickle.dumps(z))  # an equal dtype, another object
    assert unpickled.dtype == z.dtype and unpickled.dtype is not z.dtype
    assert kernels.path(unpickled, np.ones(3, np.float32)) == kernels.path(z, np.ones(3, np.float32))
    assert kernels.path(z.astype(">f4")) == "NumPy"  # the C++ kernels read native floats only
    y = mg.nn.functional.bias_act(mg.tensor(unpickled), mg.tensor(np.arange(3, dtype=np.float32)), "relu")
    np.testing.assert_array_equal(y.numpy(), 1 + np.arange(3, dtype=np.float32)[None].repeat(4, 0))


# --- item assignment: t[idx] = value -----------------------------------------------------------
def _torch_index(idx):
    items = idx if isinstance(idx, tuple) else (idx,)
    out = tuple(torch.as_tensor(i) if isinstance(i, np.ndarray) else i for i in items)
    return out if isinstance(idx, tuple) else out[0]


SETITEM_CASES = [
    (1, 5.0), ((0, slice(None), [0, 2]), 7.0), ((Ellipsis, 1), [1.0, 2.0, 3.0]), (slice(None, None, 2), -1.0),
    ((np.array([True, False]),), 3.0), ((slice(None), np.array([2, 0, 2])), 4.0), ((0, 1, 3), 9.0),
    ((None, 1, slice(1, 3)), [[8.0, 8.5, 9.0, 9.5]]), ((np.array([1, 0]), slice(None), 0), [6.0, 7.0, 8.0]),
]


@needs_torch
@pytest.mark.parametrize("idx, value", SETITEM_CASES)
def test_setitem_matches_torch(idx, value):
    base = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    x, t = mg.tensor(base), torch.tensor(base)
    x[idx] = value if np.isscalar(value) else mg.tensor(value, dtype=mg.float64)
    t[_torch_index(idx)] = value if np.isscalar(value) else torch.tensor(value, dtype=torch.float64)
    np.testing.assert_array_equal(x.numpy(), t.numpy())
    xi, ti = mg.arange(6), torch.arange(6)    # an int tensor takes a float value truncated, as PyTorch
    xi[xi > 2] = 1.7
    ti[ti > 2] = 1.7
    assert xi.tolist() == ti.tolist() and xi.dtype == mg.int64


@needs_torch
@pytest.mark.parametrize("idx, value", [c for c in SETITEM_CASES if not np.isscalar(c[1])] + [(1, [1.0])])
def test_setitem_in_a_graph_has_torch_gradients(idx, value):
    rng = np.random.default_rng(0)
    a0, v0 = rng.standard_normal((2, 3, 4)), np.asarray(value) * 0.5
    a, v = mg.tensor(a0, requires_grad=True), mg.tensor(v0, requires_grad=True)
    ta, tv = torch.tensor(a0, requires_grad=True), torch.tensor(v0, requires_grad=True)
    y, ty = a * 2, ta * 2
    y[idx] = v
    ty[_torch_index(idx)] = tv
    (y * y).sum().backward()
    (ty * ty).sum().backward()
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy())
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy())
    np.testing.assert_allclose(v.grad.numpy(), tv.grad.numpy())
    assert mg.autograd.gradcheck(lambda a, v: _put(a, idx, v), (mg.tensor(a0, requires_grad=True),
                                                                  mg.tensor(v0, requires_grad=True)))


def _put(a, idx, v):
    y = a * 1
    y[idx] = v
    return y


def test_setitem_errors_as_torch():
    a = mg.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        a[0] = 1.0
    with mg.no_grad():
        a[0] = 1.0                                   # allowed outside the tape (initialisation)
    assert a[0].item() == 1.0
    y = a.exp()                                      # exp saved its output
    y[1] = 0.0
    with pytest.raises(RuntimeError, match=STALE):
        y.sum().backward()
    x = mg.zeros(2, 3)
    with pytest.raises(RuntimeError, match="shape"):
        x[0] = mg.ones(4)
    with pytest.raises(IndexError):
        x[5] = 1.0
    with pytest.raises(RuntimeError, match="read-only"):
        mg.zeros(3).expand(2, 3)[0] = 1.0
    w = mg.zeros(3)
    view = w[1:]
    view[0] = 4.0                                    # a view writes through to its base, as PyTorch
    assert w.tolist() == [0.0, 4.0, 0.0] and mg.autograd.version(w.data) == mg.autograd.version(view.data)


@needs_torch
def test_an_in_place_op_does_not_reroute_earlier_uses():
    """z = y * 3 was recorded before y.mul_(2): its gradient goes to y's value then, as in PyTorch."""
    def case(lib):
        a = _leaf(lib, [1.0, 2.0])
        y = a * 2
        z = y * 3
        y.mul_(2)
        y[0] = y[1] + 1                               # item assignment reading y itself
        (z.sum() + (y * y).sum()).backward()
        return [a.grad]
    mine, theirs = _run(mg, case), _run(torch, case)
    assert mine[0] == theirs[0] == "ok"
    np.testing.assert_allclose(mine[1][0], theirs[1][0])
