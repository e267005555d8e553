"""Shared pieces of the scripts that tests/test_distributed.py runs under mpiexec."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import minigrad as mg  # noqa: E402


def _has_nn():
    try:
        from minigrad import nn, optim  # noqa: F401
        return hasattr(nn, "Linear") and hasattr(optim, "SGD")
    except ImportError:
        return False


HAS_NN = _has_nn()


class TinyMLP:
    """A two-layer tanh MLP on bare tensors, for when minigrad.nn is not there."""

    def __init__(self, sizes, seed, dtype, device="cpu"):
        rng = np.random.default_rng(seed)
        self._params = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            w = mg.tensor(rng.uniform(-1, 1, (n_out, n_in)) / np.sqrt(n_in), dtype=dtype, device=device,
                          requires_grad=True)
            b = mg.tensor(rng.uniform(-0.1, 0.1, n_out), dtype=dtype, device=device, requires_grad=True)
            self._params += [(f"{2 * i}.weight", w), (f"{2 * i}.bias", b)]

    def named_parameters(self):
        return list(self._params)

    def parameters(self):
        return [p for _, p in self._params]

    def state_dict(self):
        return dict(self._params)

    def __call__(self, x):
        for i in range(0, len(self._params), 2):
            w, b = self._params[i][1], self._params[i + 1][1]
            x = x @ w.T + b
            if i + 2 < len(self._params):
                x = x.tanh()
        return x


class TinySGD:
    """torch.optim.SGD with momentum (dampening 0), for when minigrad.optim is not there."""

    def __init__(self, params, lr, momentum=0.0):
        self.params, self.lr, self.momentum = list(params), lr, momentum
        self.buf = {}

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        for p in self.params:
            if p.grad is None:
                continue
            g = p.grad.data
            if self.momentum:
                v = self.buf.get(id(p))
                v = g.copy() if v is None else self.momentum * v + g
                self.buf[id(p)] = v
                g = v
            p.data -= self.lr * g


def make_model(sizes, seed, dtype="float64", device="cpu"):
    """An MLP with tanh between Linear layers; the same seed gives the same weights."""
    if not HAS_NN:
        return TinyMLP(sizes, seed, dtype, device)
    mg.manual_seed(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(mg.nn.Linear(n_in, n_out))
        if i + 2 < len(sizes):
            layers.append(mg.nn.Tanh())
    return mg.nn.Sequential(*layers).to(getattr(mg, dtype)).to(device)


def make_sgd(params, lr, momentum):
    if HAS_NN:
        return mg.optim.SGD(params, lr=lr, momentum=momentum)
    return TinySGD(params, lr, momentum)


def mse(pred, target):
    """Mean over the batch of the squared error (a per-batch mean, as DDP requires)."""
    if HAS_NN:
        return mg.nn.functional.mse_loss(pred, target)
    return ((pred - target) ** 2).mean()


def weights(model):
    return {n: np.array(p.numpy(), dtype=np.float64) for n, p in model.named_parameters()}


def max_diff(a, b):
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def write_result(result):
    """Rank 0 writes the result dict as JSON to the path in argv[1] (if given)."""
    if len(sys.argv) > 1 and mg.distributed.get_rank() == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(result, f, indent=1)
