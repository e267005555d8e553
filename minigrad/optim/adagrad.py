"""Adagrad, with PyTorch's update rule."""
from .. import kernels
from ..backend import get_array_module
from ..tensor import _wrap
from .optimizer import Optimizer, plain_update


class Adagrad(Optimizer):
    """PyTorch's Adagrad: its state (step 0, the sum filled with initial_accumulator_value) exists
    from construction on, as in PyTorch (and from add_param_group on). fused as for SGD."""

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10, *,
                 fused=None):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, fused=fused))

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for p in group["params"]:
            sums = get_array_module(p.data).full_like(p.data, group["initial_accumulator_value"])
            self.state[p] = {"step": 0, "sum": _wrap(sums, p.device)}

    def _check_group(self, group):
        for key in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            self._check(group, key, group[key] >= 0, "must be >= 0")

    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            params, arrays, grads, states = self._params_with_grad(group)
            if not params:
                continue
            for st in states:
                st["step"] += 1
            adagrad(arrays, grads, [st["sum"].data for st in states], [st["step"] for st in states], lr=group["lr"],
                    lr_decay=group["lr_decay"], weight_decay=group["weight_decay"], eps=group["eps"],
                    fused=group["fused"])
        return loss


def adagrad(params, grads, state_sums, steps, *, lr, lr_decay, weight_decay, eps, fused=None):
    """Adagrad on lists of arrays, in place, per parameter (t: its step count, already advanced):

        g = grad + weight_decay * p
        s = s + g * g
        p = p - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)"""
    clrs = [lr / (1 + (t - 1) * lr_decay) for t in steps]
    if fused is not False and kernels.adagrad_step(params, grads, state_sums, clrs, weight_decay, eps):
        return
    plain_update(fused, params, grads)
    for p, g, s, clr in zip(params, grads, state_sums, clrs):
        xp = get_array_module(p)
        if weight_decay:
            g = g + xp.multiply(p, weight_decay)
        s += g * g
        std = xp.sqrt(s)
        std += eps
        p += xp.multiply(g / std, -clr)
