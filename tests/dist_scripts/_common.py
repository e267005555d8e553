"""Shared pieces of the scripts that tests/test_distributed.py runs under mpiexec."""
import json
import os
import sys
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import minigrad as mg  # noqa: E402


def make_model(sizes, seed, dtype="float64", device="cpu"):
    """An MLP with tanh between Linear layers; the same seed gives the same weights."""
    mg.manual_seed(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(mg.nn.Linear(n_in, n_out))
        if i + 2 < len(sizes):
            layers.append(mg.nn.Tanh())
    return mg.nn.Sequential(*layers).to(getattr(mg, dtype)).to(device)


def make_sgd(params, lr, momentum):
    return mg.optim.SGD(params, lr=lr, momentum=momentum)


def mse(pred, target):
    """Mean over the batch of the squared error (a per-batch mean, as DDP requires)."""
    return mg.nn.functional.mse_loss(pred, target)


def weights(model):
    return {n: np.array(p.numpy(), dtype=np.float64) for n, p in model.named_parameters()}


def max_diff(a, b):
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def write_result(result):
    """Rank 0 writes the result dict as JSON to the path in argv[1] (if given)."""
    if len(sys.argv) > 1 and mg.distributed.get_rank() == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(result, f, indent=1)


_results = {}


def check(fn):
    """Run one check on every rank; record "ok" once every rank passed it. A failure
    raises, which aborts the job (the rank's traceback goes to stderr)."""
    try:
        fn()
    except Exception:
        _results[fn.__name__] = f"rank {mg.distributed.get_rank()}: " + traceback.format_exc()
        write_result(_results)
        raise
    if all(mg.distributed.all_gather_object(True)):
        _results[fn.__name__] = "ok"
        write_result(_results)
    return fn
