"""Adam and AdamW (decoupled weight decay), with PyTorch's update rule."""
import math

from .. import kernels
from ..backend import get_array_module
from ..tensor import _wrap
from .optimizer import Optimizer, plain_update


class Adam(Optimizer):
    """PyTorch's Adam; fused as for SGD."""
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 fused=None):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, fused=fused))

    def _check_group(self, group):
        self._check(group, "lr", group["lr"] >= 0, "must be >= 0")
        self._check(group, "eps", group["eps"] >= 0, "must be >= 0")
        b1, b2 = group["betas"]
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"{type(self).__name__}: betas must lie in [0, 1), found {group['betas']}")
        self._check(group, "weight_decay", group["weight_decay"] >= 0, "must be >= 0")
        group["betas"] = (b1, b2)

    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            params, arrays, grads, states = self._params_with_grad(group)
            if not params:
                continue
            amsgrad = group["amsgrad"]
            exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = [], [], [] if amsgrad else None, []
            for p, st in zip(params, states):  # one loop, not a comprehension per list: small models step often
                if not st:
                    xp = get_array_module(p.data)
                    st["step"] = 0
                    st["exp_avg"] = _wrap(xp.zeros_like(p.data), p.device)
                    st["exp_avg_sq"] = _wrap(xp.zeros_like(p.data), p.device)
                    if amsgrad:
                        st["max_exp_avg_sq"] = _wrap(xp.zeros_like(p.data), p.device)
                st["step"] = t = st["step"] + 1
                steps.append(t)
                exp_avgs.append(st["exp_avg"].data)
                exp_avg_sqs.append(st["exp_avg_sq"].data)
                if amsgrad:
                    max_exp_avg_sqs.append(st["max_exp_avg_sq"].data)
            beta1, beta2 = group["betas"]
            adam(arrays, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps,
                 lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                 decoupled=self._decoupled, fused=group["fused"])
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (p *= 1 - lr * weight_decay before the Adam step)."""
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, fused=fused)


def adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1, beta2, eps, weight_decay,
         decoupled=False, fused=None):
    """Adam on lists of arrays, in place, per parameter (t: its step count, already advanced):

        g = grad + weight_decay * p                   (AdamW instead scales p by 1 - lr * weight_decay)
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g;  v = max(vmax, v) (amsgrad)
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)"""
    step_sizes, bias2_sqrts = [], []
    for t in steps:
        step_sizes.append(lr / (1 - beta1 ** t))
        bias2_sqrts.append(math.sqrt(1 - beta2 ** t))

    if fused is not False and kernels.adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step_sizes,
                                                bias2_sqrts, lr, beta1, beta2, eps, weight_decay, decoupled):
        return
    plain_update(fused, params, grads)
    w = 1 - beta1
    for i, (p, g) in enumerate(zip(params, grads)):
        xp = get_array_module(p)
        if weight_decay:
            if decoupled:
                p *= 1 - lr * weight_decay
            else:
                g = g + xp.multiply(p, weight_decay)
        m, v = exp_avgs[i], exp_avg_sqs[i]
        d = g - m                                   # torch.lerp(m, g, w), both of its branches
        if w < 0.5:
            m += d * w
        else:
            xp.subtract(g, d * (1 - w), out=m)
        v *= beta2
        v += xp.multiply(g, 1 - beta2) * g
        if max_exp_avg_sqs is not None:
            v = xp.maximum(max_exp_avg_sqs[i], v, out=max_exp_avg_sqs[i])
        denom = xp.sqrt(v) / bias2_sqrts[i]
        denom += eps
        p += (m / denom) * -step_sizes[i]
