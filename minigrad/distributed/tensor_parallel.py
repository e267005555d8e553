"""Tensor (model) parallelism: each rank of a group holds a slice of a layer's weights (Megatron-LM).

Two conjugate operators carry all the communication (Megatron-LM's f and g):

* ``copy_to_tensor_parallel`` (f): identity forward, all-reduce (sum) of the gradient backward.
  Every rank uses the same full input; each contributes a partial gradient for it.
* ``reduce_from_tensor_parallel`` (g): all-reduce (sum) forward, identity backward.
  Each rank holds a partial sum of the output; the output's gradient is the same on every rank.

and two for moving between sharded and full activations along the last axis:
``gather_from_tensor_parallel`` (all-gather forward, keep this rank's slice backward) and
``scatter_to_tensor_parallel`` (keep this rank's slice forward, all-gather backward).

A ColumnParallelLinear (f, then this rank's rows of W) followed by a RowParallelLinear (this rank's
columns of W, then g) is one MLP block with one all-reduce forward and one backward::

    x --f--> [x W1_r^T + b1_r -> act] --> h_r --> [h_r W2_r^T] --g--> + b2 --> y
"""
from __future__ import annotations

from ..autograd import Function
from ..backend import get_array_module
from ..nn.module import Module, Parameter
from ..nn.modules import Linear
from ..ops import nn as _nn_ops
from ..tensor import _wrap


def _group(group):
    if group is not None:
        return group
    from . import get_process_group
    return get_process_group()


class _CopyToParallel(Function):
    @staticmethod
    def forward(ctx, x, group=None):
        ctx.group = group
        return x

    @staticmethod
    def backward(ctx, grad_output):
        return ctx.group.all_reduce(grad_output.copy(), "sum")


class _ReduceFromParallel(Function):
    @staticmethod
    def forward(ctx, x, group=None):
        return group.all_reduce(x.copy(), "sum")

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output


def _gather_last(x, group):
    """(..., n) on each of k ranks -> (..., k * n), rank r's piece at r*n:(r+1)*n."""
    xp = get_array_module(x)
    pieces = group.all_gather(xp.ascontiguousarray(x))          # (k, ..., n)
    return xp.concatenate(list(pieces), axis=-1)


def _my_slice(x, group):
    n = x.shape[-1] // group.world_size
    return get_array_module(x).ascontiguousarray(x[..., group.rank * n:(group.rank + 1) * n])


class _GatherFromParallel(Function):
    @staticmethod
    def forward(ctx, x, group=None):
        ctx.group = group
        return _gather_last(x, group)

    @staticmethod
    def backward(ctx, grad_output):
        return _my_slice(grad_output, ctx.group)


class _ScatterToParallel(Function):
    @staticmethod
    def forward(ctx, x, group=None):
        ctx.group = group
        return _my_slice(x, group)

    @staticmethod
    def backward(ctx, grad_output):
        return _gather_last(grad_output, ctx.group)


def copy_to_tensor_parallel(x, group=None):
    """f: x unchanged; backward, the gradient summed over the group's ranks."""
    return _CopyToParallel.apply(x, group=_group(group))


def reduce_from_tensor_parallel(x, group=None):
    """g: the sum of x over the group's ranks; backward, the gradient unchanged."""
    return _ReduceFromParallel.apply(x, group=_group(group))


def gather_from_tensor_parallel(x, group=None):
    """(..., n) slices -> (..., k*n), concatenated in rank order; backward, this rank's slice."""
    return _GatherFromParallel.apply(x, group=_group(group))


def scatter_to_tensor_parallel(x, group=None):
    """(..., k*n) -> this rank's (..., n) slice; backward, the slices' gradients gathered.
    The last axis must divide by the group size."""
    group = _group(group)
    _check_divisible("scatter_to_tensor_parallel", "the input's last axis", x.shape[-1], group)
    return _ScatterToParallel.apply(x, group=group)


def _check_divisible(layer, what, n, group):
    if n % group.world_size:
        raise ValueError(f"{layer}: {what} ({n}) must be divisible by the tensor-parallel group's "
                         f"size ({group.world_size})")


def _shard(full, group, axis):
    """This rank's slice of the Parameter ``full`` along ``axis``, as a new Parameter (a copy)."""
    a = full.data
    n = a.shape[axis] // group.world_size
    index = [slice(None)] * a.ndim
    index[axis] = slice(group.rank * n, (group.rank + 1) * n)
    return Parameter(_wrap(a[tuple(index)].copy(), full.device))


class ColumnParallelLinear(Module):
    """Linear(in_features, out_features) split by output rows over the group's k ranks.

    Rank r holds ``weight`` rows r*out/k:(r+1)*out/k, shape (out/k, in), and that slice of the
    bias, shape (out/k,); its output is that slice of the full output, with the activation applied
    (elementwise, so it commutes with the split). gather_output=True all-gathers the full
    (..., out) output. Initialized as Linear(in_features, out_features) would be from the same
    seed (every rank draws the full weight and keeps its slice), so a seeded model matches one
    process."""

    def __init__(self, in_features, out_features, bias=True, activation=None, gather_output=False,
                 group=None, dtype=None, device=None):
        super().__init__()
        self.group = _group(group)
        _check_divisible("ColumnParallelLinear", "out_features", out_features, self.group)
        full = Linear(in_features, out_features, bias, activation, dtype=dtype, device=device)
        self._take(full, gather_output)

    def _take(self, full, gather_output):
        self.in_features, self.out_features = full.in_features, full.out_features
        self.activation, self.gather_output = full.activation, gather_output
        self.weight = _shard(full.weight, self.group, 0)
        if full.bias is not None:
            self.bias = _shard(full.bias, self.group, 0)
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_linear(cls, linear, group=None, gather_output=False):
        """This rank's slice of a full ``Linear`` (its weights copied, its activation kept)."""
        self = cls.__new__(cls)
        Module.__init__(self)
        self.group = _group(group)
        _check_divisible("ColumnParallelLinear", "out_features", linear.out_features, self.group)
        self._take(linear, gather_output)
        return self

    def forward(self, x):
        x = copy_to_tensor_parallel(x, self.group)
        b = self.bias
        args = (x, self.weight) if b is None else (x, self.weight, b)
        y = _nn_ops.Linear.apply(*args, activation=self.activation)
        return gather_from_tensor_parallel(y, self.group) if self.gather_output else y

    def extra_repr(self):
        act = "" if self.activation is None else f", activation={self.activation!r}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
                f"{act}, gather_output={self.gather_output}, world_size={self.group.world_size}")


class RowParallelLinear(Module):
    """Linear(in_features, out_features) split by input columns over the group's k ranks.

    Rank r holds ``weight`` columns r*in/k:(r+1)*in/k, shape (out, in/k), and the whole bias
    (out,), the same on every rank. The partial products are summed over the group (one
    all-reduce) before the bias is added, so every rank gets the full (..., out) output.
    input_is_parallel=True takes this rank's (..., in/k) slice (a ColumnParallelLinear's output);
    False takes the full (..., in) input and slices it."""

    def __init__(self, in_features, out_features, bias=True, input_is_parallel=True, group=None,
                 dtype=None, device=None):
        super().__init__()
        self.group = _group(group)
        _check_divisible("RowParallelLinear", "in_features", in_features, self.group)
        self._take(Linear(in_features, out_features, bias, dtype=dtype, device=device), input_is_parallel)

    def _take(self, full, input_is_parallel):
        self.in_features, self.out_features = full.in_features, full.out_features
        self.input_is_parallel = input_is_parallel
        self.weight = _shard(full.weight, self.group, 1)
        if full.bias is not None:
            self.bias = Parameter(_wrap(full.bias.data.copy(), full.bias.device))
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_linear(cls, linear, group=None, input_is_parallel=True):
        """This rank's slice of a full ``Linear`` without an activation (the sum over ranks must
        come before any nonlinearity: put the activation after this layer)."""
        if linear.activation is not None:
            raise ValueError(f"RowParallelLinear.from_linear: the Linear has activation="
                             f"{linear.activation!r}, which must follow the sum over ranks; "
                             f"use a Linear without activation and an activation module after it")
        self = cls.__new__(cls)
        Module.__init__(self)
        self.group = _group(group)
        _check_divisible("RowParallelLinear", "in_features", linear.in_features, self.group)
        self._take(linear, input_is_parallel)
        return self

    def forward(self, x):
        if not self.input_is_parallel:
            x = scatter_to_tensor_parallel(x, self.group)
        y = reduce_from_tensor_parallel(_nn_ops.Linear.apply(x, self.weight), self.group)
        return y if self.bias is None else _nn_ops.bias_act(y, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"input_is_parallel={self.input_is_parallel}, world_size={self.group.world_size}")

