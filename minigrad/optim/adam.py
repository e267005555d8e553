"""Adam and AdamW (decoupled weight decay), with PyTorch's update rule."""
import math

from .. import kernels
from ..backend import get_array_module
from .optimizer import Optimizer


class Adam(Optimizer):
    """PyTorch's Adam, on flat buffers (t is the parameter's step count):

        g = grad + weight_decay * p                   (Adam; AdamW instead scales p by 1 - lr * weight_decay)
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    amsgrad=True uses the running maximum of v in the denominator."""
    _n_work = 2
    _has_step = True
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def _check_group(self, group):
        name = type(self).__name__
        if group["lr"] < 0:
            raise ValueError(f"{name}: invalid learning rate {group['lr']} (must be >= 0)")
        if group["eps"] < 0:
            raise ValueError(f"{name}: invalid eps {group['eps']} (must be >= 0)")
        b1, b2 = group["betas"]
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"{name}: betas must lie in [0, 1), found {group['betas']}")
        if group["weight_decay"] < 0:
            raise ValueError(f"{name}: invalid weight_decay {group['weight_decay']} (must be >= 0)")
        group["betas"] = (b1, b2)

    def _state_names(self, group):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    def _fused_update(self, group, p, grads, state, step):
        beta1, beta2 = group["betas"]
        return kernels.adam_step(p, grads, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"),
                                 lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                                 weight_decay=group["weight_decay"], decoupled=self._decoupled,
                                 step_size=group["lr"] / (1 - beta1 ** step),
                                 bias2_sqrt=math.sqrt(1 - beta2 ** step))

    def _update(self, group, p, g, state, step, work):
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        step_size = lr / (1 - beta1 ** step)
        xp, t1, t2 = get_array_module(p), work[0], work[1]
        if wd:
            if self._decoupled:
                p *= 1 - lr * wd
            else:
                xp.multiply(p, wd, out=t1)
                g += t1
        m, v = state["exp_avg"], state["exp_avg_sq"]
        w = 1 - beta1
        xp.subtract(g, m, out=t1)                  # torch.lerp(m, g, w), both of its branches
        if w < 0.5:
            t1 *= w
            m += t1
        else:
            t1 *= 1 - w
            xp.subtract(g, t1, out=m)
        v *= beta2
        xp.multiply(g, 1 - beta2, out=t1)
        t1 *= g
        v += t1
        if group["amsgrad"]:
            vmax = state["max_exp_avg_sq"]
            xp.maximum(vmax, v, out=vmax)
            v = vmax
        xp.sqrt(v, out=t1)
        t1 /= math.sqrt(1 - beta2 ** step)
        t1 += eps
        xp.divide(m, t1, out=t2)
        t2 *= -step_size
        p += t2


class AdamW(Adam):
    """Adam with decoupled weight decay (p *= 1 - lr * weight_decay before the Adam step)."""
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
