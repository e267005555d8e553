"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay."""
from .. import kernels
from ..backend import get_array_module
from .optimizer import Optimizer, required


class SGD(Optimizer):
    """PyTorch's SGD, on flat buffers:

        g = grad + weight_decay * p
        buf = g (first step), else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    """

    def __init__(self, params, lr=required, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check_group(self, group):
        if group["lr"] < 0:
            raise ValueError(f"SGD: invalid learning rate {group['lr']} (must be >= 0)")
        if group["momentum"] < 0:
            raise ValueError(f"SGD: invalid momentum {group['momentum']} (must be >= 0)")
        if group["weight_decay"] < 0:
            raise ValueError(f"SGD: invalid weight_decay {group['weight_decay']} (must be >= 0)")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum > 0 and zero dampening, found "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def _state_names(self, group):
        return ("momentum_buffer",) if group["momentum"] else ()

    def _fused_update(self, group, p, grads, state, step):
        momentum = group["momentum"]
        return kernels.sgd_step(p, grads, state.get("momentum_buffer") if momentum else None, lr=group["lr"],
                                momentum=momentum, dampening=group["dampening"],
                                weight_decay=group["weight_decay"], nesterov=group["nesterov"],
                                first_step=step == 1)

    def _update(self, group, p, g, state, step, work):
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        xp, tmp = get_array_module(p), work[0]
        if wd:
            xp.multiply(p, wd, out=tmp)
            g += tmp
        if momentum:
            buf = state["momentum_buffer"]
            if step == 1:
                buf[...] = g
            else:
                buf *= momentum
                dampening = group["dampening"]
                if dampening:
                    xp.multiply(g, 1 - dampening, out=tmp)
                    buf += tmp
                else:
                    buf += g
            if group["nesterov"]:
                xp.multiply(buf, momentum, out=tmp)
                g += tmp
            else:
                g = buf
        xp.multiply(g, lr, out=tmp)
        p -= tmp

    def _loaded_step(self, st):
        return 1 if st.get("momentum_buffer") is not None else 0
