"""Layers and losses: Linear, activations, Dropout, Flatten, Identity, Sequential, and the loss modules."""
import math
from collections import OrderedDict

import numpy as np

from . import functional as F, init
from .module import Module, Parameter
from .. import kernels
from ..backend import device as _device, xp_for
from ..ops import flatten as _flatten
from ..ops.loss import _check_reduction
from ..ops.nn import Linear as _LinearFn
from ..tensor import Tensor, _wrap, tensor


class Linear(Module):
    """y = activation(x @ weight.T + bias), as one fused op. weight: (out_features, in_features),
    bias: (out_features,); x: (..., in_features) -> (..., out_features).

    Initialized as torch.nn.Linear: weight by kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)),
    bias U(-1/sqrt(in), 1/sqrt(in)). activation: None, "relu", "sigmoid", "tanh" or "gelu"."""

    def __init__(self, in_features, out_features, bias=True, activation=None, dtype=None, device=None):
        super().__init__()
        activation = kernels.check_activation(activation, "Linear")
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        dev = _device(device)
        dt = np.dtype(dtype or np.float32)
        xp = xp_for(dev)
        self.weight = Parameter(_wrap(xp.empty((out_features, in_features), dt), dev))
        if bias:
            self.bias = Parameter(_wrap(xp.empty((out_features,), dt), dev))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        if x.data.shape[-1:] != (self.in_features,):
            raise ValueError(f"Linear(in_features={self.in_features}, out_features={self.out_features}) expected "
                             f"input with last dimension {self.in_features}, found input of shape "
                             f"{tuple(x.data.shape)}")
        b = self.bias  # ops.nn.linear minus its activation-name check, done once in __init__
        if b is None:
            return _LinearFn.apply(x, self.weight, activation=self.activation)
        return _LinearFn.apply(x, self.weight, b, activation=self.activation)

    def extra_repr(self):
        act = "" if self.activation is None else f", activation={self.activation!r}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}{act}")


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class GELU(Module):
    def forward(self, x):
        return F.gelu(x)


class Softmax(Module):
    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Dropout(Module):
    """Inverted dropout: active only in train mode (model.train()), identity in eval mode."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: probability must be in [0, 1], found {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    """Flatten dimensions start_dim..end_dim (by default all but the batch dimension)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return _flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Identity(Module):
    def forward(self, x):
        return x


class Sequential(Module):
    """Modules applied in order; children are named "0", "1", ... (or by an OrderedDict's keys)."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                if not isinstance(m, Module):
                    raise TypeError(f"Sequential: argument {i} is a {type(m).__name__}, not a Module")
                self.add_module(str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        if not -len(mods) <= idx < len(mods):
            raise IndexError(f"Sequential index {idx} is out of range for {len(mods)} modules")
        return mods[idx]

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self


# --- losses ------------------------------------------------------------------------------------
class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        _check_reduction(type(self).__name__, reduction)
        self.reduction = reduction

    def extra_repr(self):
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Cross-entropy from logits (N, C) (or (N, C, d1, ...)); target: integer class indices (N,) or
    class probabilities of the logits' shape. weight (C,) is a buffer: it follows .to() and is saved
    in state_dict. See nn.functional.cross_entropy for ignore_index and label_smoothing."""
    def __init__(self, weight=None, *, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        if isinstance(weight, str):
            raise TypeError(f"CrossEntropyLoss: the first argument is weight, found {weight!r}; "
                            f"pass reduction={weight!r} by keyword")
        if weight is not None and not isinstance(weight, Tensor):
            weight = tensor(weight)
        self.register_buffer("weight", weight)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction,
                               label_smoothing=self.label_smoothing)

    def extra_repr(self):
        parts = [super().extra_repr()] + ([f"ignore_index={self.ignore_index}"] if self.ignore_index != -100 else []) \
            + ([f"label_smoothing={self.label_smoothing}"] if self.label_smoothing else [])
        return ", ".join(p for p in parts if p)


class MSELoss(_Loss):
    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)


class BCELoss(_Loss):
    """Binary cross-entropy of probabilities in [0, 1] against targets in [0, 1] of the same shape."""
    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of sigmoid(input), computed stably from the logits."""
    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.reduction)
