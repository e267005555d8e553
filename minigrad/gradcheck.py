"""Finite-difference gradient checks: the test oracle for every op's backward."""
import numpy as np

from .autograd import no_grad


class GradcheckError(AssertionError):
    pass


def numerical_grad(fn, inputs, upstream, eps=1e-6):
    """Central differences of sum(fn(*inputs) * upstream) with respect to each input's data."""
    grads = []
    for t in inputs:
        if not t.requires_grad:
            grads.append(None)
            continue
        x = t.data
        g = np.zeros(x.shape, dtype=np.float64)
        flat = x.reshape(-1)  # a view: perturbing it perturbs t.data
        for i in range(flat.size):
            old = flat[i].item()
            flat[i] = old + eps
            fp = float((fn(*inputs).data * upstream).sum())
            flat[i] = old - eps
            fm = float((fn(*inputs).data * upstream).sum())
            flat[i] = old
            g.reshape(-1)[i] = (fp - fm) / (2 * eps)
        grads.append(g)
    return grads


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Check fn's analytic gradients against central differences along a random upstream gradient.

    inputs: float64 CPU Tensors; those with requires_grad=True are checked.
    Returns True, or raises GradcheckError naming the input and the worst element."""
    for i, t in enumerate(inputs):
        if t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 inputs, input {i} is {t.dtype}")
    out = fn(*inputs)
    upstream = np.random.default_rng(seed).standard_normal(out.shape)
    for t in inputs:
        t.grad = None
    out.backward(type(out)(upstream))
    analytic = [None if t.grad is None else t.grad.numpy() for t in inputs]
    with no_grad():
        numeric = numerical_grad(fn, inputs, upstream, eps)
    for i, (a, n) in enumerate(zip(analytic, numeric)):
        if n is None:
            continue
        if a is None:
            a = np.zeros_like(n)  # no path from this input to the output
        if a.shape != n.shape:
            raise GradcheckError(f"input {i}: gradient has shape {a.shape}, expected {n.shape}")
        err = np.abs(a - n) - (atol + rtol * np.abs(n))
        if (err > 0).any():
            j = np.unravel_index(np.argmax(err), err.shape)
            raise GradcheckError(f"input {i}: analytic gradient {a[j]:.6g} != numerical {n[j]:.6g} "
                                 f"at index {tuple(int(k) for k in j)} (max abs diff {np.abs(a - n).max():.3g})")
    return True
