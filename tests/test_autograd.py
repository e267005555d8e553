"""The tape: accumulation, freeing, retain_graph, grad modes, deep graphs, hooks."""
import sys

import numpy as np
import pytest

import minigrad as mg


def test_gradients_accumulate_across_backward_calls():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3 + 2, 3 + 4])


def test_shared_gradient_arrays_are_not_aliased():
    a, b = mg.tensor([1.0, 2.0], requires_grad=True), mg.tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward()
    a.grad.data *= 10  # an in-place change to one leaf's gradient must not leak into the other
    np.testing.assert_allclose(b.grad.numpy(), [1, 1])
    (a + b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [11, 11])
    np.testing.assert_allclose(b.grad.numpy(), [2, 2])


def test_second_backward_through_freed_graph_raises():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4, 8])


def test_backward_frees_saved_arrays():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    h = x.exp()
    y = h.sum()
    y.backward()
    assert h._ctx.saved_tensors is None and h._ctx.inputs == ()


def test_non_scalar_backward_needs_grad():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"scalar output, found shape \(2,\)"):
        (x * 2).backward()
    (x * 2).backward(mg.tensor([1.0, 1.0]))
    np.testing.assert_allclose(x.grad.numpy(), [2, 2])
    with pytest.raises(RuntimeError, match=r"grad has shape \(3,\)"):
        (x * 2).backward(mg.tensor([1.0, 1.0, 1.0]))


def test_backward_without_requires_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mg.tensor([1.0]).sum().backward()


def test_no_grad_and_enable_grad():
    x = mg.tensor([1.0], requires_grad=True)
    with mg.no_grad():
        y = x * 2
        with mg.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad
    assert mg.is_grad_enabled()

    @mg.no_grad()
    def f(t):
        return t * 2
    assert not f(x).requires_grad


def test_detach_cuts_the_tape():
    x = mg.tensor([2.0], requires_grad=True)
    y = x * x.detach()
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0])


def test_deep_chain_has_no_recursion_limit():
    x = mg.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(20_000):
        y = y * 1.0001
    limit = sys.getrecursionlimit()
    y.backward()
    assert sys.getrecursionlimit() == limit
    np.testing.assert_allclose(x.grad.item(), 1.0001 ** 20_000, rtol=1e-3)
    del y  # freeing a 20,000-deep graph must not overflow the C stack either


def test_diamond_graph_order():
    x = mg.tensor(3.0, requires_grad=True)
    a = x * 2
    b = a * a  # a used twice, once through b
    y = a + b
    y.backward()
    assert x.grad.item() == pytest.approx(2 + 2 * 2 * 6)


def test_post_accumulate_grad_hook_sees_the_full_gradient():
    w = mg.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    handle = w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    y = (w * 2).sum() + (w * 3).sum()  # two contributions
    y.backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], [5, 5])
    handle.remove()
    (w * 2).sum().backward()
    assert len(seen) == 1


def test_queue_callback_runs_at_the_end_of_backward():
    w = mg.tensor([1.0], requires_grad=True)
    order = []
    w.register_post_accumulate_grad_hook(lambda t: (order.append("hook"),
                                                    mg.autograd.queue_callback(lambda: order.append("end"))))
    (w * 2).sum().backward()
    assert order == ["hook", "end"]
    with pytest.raises(RuntimeError, match="while backward"):
        mg.autograd.queue_callback(lambda: None)


def test_unused_input_gets_no_gradient():
    a, b = mg.tensor([1.0], requires_grad=True), mg.tensor([1.0], requires_grad=True)
    (a * 2).sum().backward()
    assert b.grad is None


def test_gradient_of_integer_tensor_is_refused():
    with pytest.raises(TypeError, match="floating point"):
        mg.tensor([1, 2], requires_grad=True)


def test_gradients_sharing_memory_through_a_view_are_not_aliased():
    """A kernel output (memory from the extension's cache) reaching one leaf as is and another
    through a reshape view must not become both leaves' .grad."""
    from minigrad.ops.nn import bias_act
    a = mg.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    b = mg.tensor(np.ones(6, np.float32), requires_grad=True)
    y = bias_act(a + b.reshape(2, 3), None, "relu")
    (y * 2).sum().backward()
    assert not np.shares_memory(a.grad.data, b.grad.data)
    a.grad.data *= 10
    np.testing.assert_allclose(b.grad.numpy(), np.full(6, 2.0))
