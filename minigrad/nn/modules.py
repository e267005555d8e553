"""Layers and losses: Linear, activations, normalization, Embedding, Dropout, Flatten, Identity, the
containers (Sequential, ModuleList, ModuleDict), and the loss modules."""
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
    bias U(-1/sqrt(in), 1/sqrt(in)). activation: None or a name in minigrad.kernels.ACTIVATIONS
    ("relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "leaky_relu", "elu", "silu", "softplus"; the
    last three with PyTorch's default parameters)."""

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


# Activations: each a row of kernels.ACTIVATIONS. inplace= is accepted for PyTorch's signatures and
# ignored (README, "Differences from PyTorch"): the result is always a new tensor.
class _Activation(Module):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class ReLU(_Activation):
    def forward(self, x):
        return F.relu(x)


class SiLU(_Activation):
    def forward(self, x):
        return F.silu(x)


class LeakyReLU(_Activation):
    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__(inplace)
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class ELU(_Activation):
    def __init__(self, alpha=1.0, inplace=False):
        super().__init__(inplace)
        self.alpha = alpha

    def forward(self, x):
        return F.elu(x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class Softplus(Module):
    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, x):
        return F.softplus(x, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class GELU(Module):
    """approximate: "none" (x * Phi(x), exact) or "tanh" (PyTorch's tanh approximation)."""
    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', found {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


# --- normalization and embedding ---------------------------------------------------------------
def _param(shape, fill, dtype, device):
    """A Parameter of the given shape filled with `fill`."""
    dev = _device(device)
    return Parameter(_wrap(xp_for(dev).full(shape, fill, np.dtype(dtype or np.float32)), dev))


class LayerNorm(Module):
    """Normalize over the last len(normalized_shape) dimensions, then * weight + bias (learned, of
    shape normalized_shape, initialized to ones and zeros)."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=None, device=None):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        self.register_parameter("weight", _param(shape, 1.0, dtype, device) if elementwise_affine else None)
        self.register_parameter("bias", _param(shape, 0.0, dtype, device) if elementwise_affine and bias else None)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class BatchNorm1d(Module):
    """Batch normalization of (N, C) or (N, C, L) input per channel C: the batch's statistics in
    train(), the running ones in eval(). Buffers running_mean, running_var (updated with the
    unbiased variance) and num_batches_tracked as PyTorch's; momentum=None averages all batches."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=None, device=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = _param((num_features,), 1.0, dtype, device)
            self.bias = _param((num_features,), 0.0, dtype, device)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            dev = _device(device)
            xp, dt = xp_for(dev), np.dtype(dtype or np.float32)
            self.register_buffer("running_mean", _wrap(xp.zeros(num_features, dt), dev))
            self.register_buffer("running_var", _wrap(xp.ones(num_features, dt), dev))
            self.register_buffer("num_batches_tracked", _wrap(xp.zeros((), np.int64), dev))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def forward(self, x):
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d({self.num_features}) expected input of shape (N, {self.num_features}) or "
                             f"(N, {self.num_features}, L), found {tuple(x.shape)}")
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked.data)
        # without running statistics (None), the batch's are used in eval() too, as PyTorch
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training or not self.track_running_stats, momentum, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class Embedding(Module):
    """A lookup table: weight (num_embeddings, embedding_dim) initialized N(0, 1), the padding_idx row
    zero (and it gets no gradient). Input: integer indices of any shape -> (*shape, embedding_dim)."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, _weight=None, _freeze=False,
                 dtype=None, device=None):
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise AssertionError(f"Embedding: padding_idx must be within num_embeddings ({num_embeddings}), "
                                     f"found {padding_idx}")
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        if _weight is None:
            self.weight = _param((num_embeddings, embedding_dim), 0.0, dtype, device)
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError(f"Embedding: _weight must have shape {(num_embeddings, embedding_dim)}, "
                                 f"found {tuple(_weight.shape)}")
            self.weight = Parameter(_weight)
        self.weight.requires_grad_(not _freeze)

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None):
        """An Embedding whose weight is `embeddings` (2-D), trained unless freeze."""
        if embeddings.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D, found shape {tuple(embeddings.shape)}")
        return cls(*embeddings.shape, padding_idx=padding_idx, _weight=embeddings, _freeze=freeze)

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, x):
        return F.embedding(x, self.weight, self.padding_idx)

    def extra_repr(self):
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


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


class ModuleList(Module):
    """A list of Modules whose parameters are registered (named "0", "1", ...). Supports indexing,
    slicing (a new ModuleList), len, iteration, append, extend, insert, +=, assignment and del."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _set_all(self, modules):
        for name in list(self._modules):
            self.__dict__.pop(name, None)
        self._modules.clear()
        for i, m in enumerate(modules):
            self.add_module(str(i), m)

    def _index(self, idx):
        n = len(self._modules)
        if not -n <= idx < n:
            raise IndexError(f"ModuleList index {idx} is out of range for {n} modules")
        return str(idx % n)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return ModuleList(list(self._modules.values())[idx])
        return self._modules[self._index(idx)]

    def __setitem__(self, idx, module):
        self.add_module(self._index(idx), _check_module("ModuleList", module))

    def __delitem__(self, idx):
        mods = list(self._modules.values())
        del mods[idx if isinstance(idx, slice) else int(self._index(idx))]
        self._set_all(mods)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __iadd__(self, modules):
        return self.extend(modules)

    def __add__(self, other):
        return ModuleList([*self, *other])

    def append(self, module):
        self.add_module(str(len(self)), _check_module("ModuleList", module))
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index, module):
        mods = list(self._modules.values())
        mods.insert(index, _check_module("ModuleList", module))
        self._set_all(mods)


class ModuleDict(Module):
    """A dict of Modules whose parameters are registered under their keys, in insertion order."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        if not isinstance(key, str):
            raise TypeError(f"ModuleDict keys must be strings, found {type(key).__name__}")
        # kept in _modules only, not as attributes: a key such as "keys" must not hide a method
        self._modules[key] = _check_module("ModuleDict", module)

    def __delitem__(self, key):
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def pop(self, key):
        return self._modules.pop(key)

    def clear(self):
        self._modules.clear()

    def update(self, modules):
        items = modules.items() if hasattr(modules, "items") else modules
        for key, m in items:
            self[key] = m

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict has no forward(): index it in your module's forward")


def _check_module(container, module):
    if not isinstance(module, Module):
        raise TypeError(f"{container} holds Modules, found {type(module).__name__}")
    return module


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


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities (N, C) at integer class indices (N,); weight (C,)
    is a buffer. See nn.functional.nll_loss."""
    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        if weight is not None and not isinstance(weight, Tensor):
            weight = tensor(weight)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


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
