"""RMSprop, with PyTorch's update rule (momentum and the centered variant included)."""
from .. import kernels
from ..backend import get_array_module
from ..tensor import _wrap
from .optimizer import Optimizer, plain_update


class RMSprop(Optimizer):
    """PyTorch's RMSprop; fused as for SGD."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
                 fused=None):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, fused=fused))

    def _check_group(self, group):
        for key in ("lr", "eps", "weight_decay", "momentum", "alpha"):
            self._check(group, key, group[key] >= 0, "must be >= 0")

    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            params, arrays, grads, states = self._params_with_grad(group)
            if not params:
                continue
            names = ("square_avg",) + (("momentum_buffer",) if group["momentum"] > 0 else ()) + \
                (("grad_avg",) if group["centered"] else ())
            for p, st in zip(params, states):
                if not st:
                    st["step"] = 0
                    for name in names:
                        st[name] = _wrap(get_array_module(p.data).zeros_like(p.data), p.device)
                st["step"] += 1
            lists = {name: [st[name].data for st in states] for name in names}
            rmsprop(arrays, grads, lists["square_avg"], lists.get("grad_avg"), lists.get("momentum_buffer"),
                    lr=group["lr"], alpha=group["alpha"], eps=group["eps"], weight_decay=group["weight_decay"],
                    momentum=group["momentum"], centered=group["centered"], fused=group["fused"])
        return loss


def rmsprop(params, grads, square_avgs, grad_avgs, momentum_buffers, *, lr, alpha, eps, weight_decay, momentum,
            centered, fused=None):
    """RMSprop on lists of arrays, in place, per parameter (grad_avgs only when centered,
    momentum_buffers only with momentum > 0):

        g = grad + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        avg = sqrt(v - ga * ga) + eps, ga = lerp(ga, g, 1 - alpha)   (centered)   else   sqrt(v) + eps
        buf = momentum * buf + g / avg;  p = p - lr * buf             (momentum)   else   p = p - lr * g / avg"""
    if fused is not False and kernels.rmsprop_step(params, grads, square_avgs, grad_avgs, momentum_buffers, lr, alpha,
                                                   eps, weight_decay, momentum, centered):
        return
    plain_update(fused, params, grads)
    w = 1 - alpha
    for i, (p, g) in enumerate(zip(params, grads)):
        xp = get_array_module(p)
        if weight_decay:
            g = g + xp.multiply(p, weight_decay)
        v = square_avgs[i]
        v *= alpha
        v += xp.multiply(g, w) * g
        if centered:
            ga = grad_avgs[i]
            d = g - ga                              # torch.lerp(ga, g, w), both of its branches
            if w < 0.5:
                ga += d * w
            else:
                xp.subtract(g, d * (1 - w), out=ga)
            avg = xp.sqrt(v + xp.multiply(ga, -1.0) * ga)
        else:
            avg = xp.sqrt(v)
        avg += eps
        if momentum > 0:
            buf = momentum_buffers[i]
            buf *= momentum
            buf += g / avg
            p += xp.multiply(buf, -lr)
        else:
            p += xp.multiply(g / avg, -lr)
