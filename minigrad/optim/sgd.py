"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay."""
from .. import kernels
from ..backend import get_array_module
from ..tensor import _wrap
from .optimizer import Optimizer, plain_update


class SGD(Optimizer):
    """PyTorch's SGD. fused: None (the one-pass C++ update wherever the extension takes the arrays),
    False (always the plain per-parameter update) or True (the C++ update or an error)."""

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, fused=None):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, fused=fused))

    def _check_group(self, group):
        self._check(group, "lr", group["lr"] >= 0, "must be >= 0")
        self._check(group, "momentum", group["momentum"] >= 0, "must be >= 0")
        self._check(group, "weight_decay", group["weight_decay"] >= 0, "must be >= 0")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum > 0 and zero dampening, found "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            params, arrays, grads, states = self._params_with_grad(group)
            if not params:
                continue
            bufs = None
            if group["momentum"]:
                bufs = [st["momentum_buffer"].data if "momentum_buffer" in st else None for st in states]
            sgd(arrays, grads, bufs, lr=group["lr"], momentum=group["momentum"], dampening=group["dampening"],
                weight_decay=group["weight_decay"], nesterov=group["nesterov"], fused=group["fused"])
            if bufs is not None:
                for p, st, buf in zip(params, states, bufs):
                    if "momentum_buffer" not in st:
                        st["momentum_buffer"] = _wrap(buf, p.device)
        return loss


def sgd(params, grads, momentum_buffers, *, lr, momentum, dampening, weight_decay, nesterov, fused=None):
    """SGD on lists of arrays, in place, per parameter:

        g = grad + weight_decay * p
        buf = g (first step), else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
        p = p - lr * g

    momentum_buffers (None without momentum): a parameter's buffer, or None where it has none yet;
    such entries are replaced by the new buffers, as in PyTorch's functional sgd."""
    first = []
    if momentum_buffers is not None:
        first = [b is None for b in momentum_buffers]
        if True in first:
            for i, b in enumerate(momentum_buffers):
                if b is None:
                    momentum_buffers[i] = get_array_module(params[i]).empty_like(params[i])
    if fused is not False and kernels.sgd_step(params, grads, momentum_buffers, first, lr, momentum, dampening,
                                               weight_decay, nesterov):
        return
    plain_update(fused, params, grads)
    for i, (p, g) in enumerate(zip(params, grads)):
        xp = get_array_module(p)
        if weight_decay:
            g = g + xp.multiply(p, weight_decay)
        if momentum_buffers is not None:
            buf = momentum_buffers[i]
            if first[i]:
                buf[...] = g
            else:
                buf *= momentum
                buf += xp.multiply(g, 1 - dampening) if dampening else g
            g = g + xp.multiply(buf, momentum) if nesterov else buf
        p -= xp.multiply(g, lr)
