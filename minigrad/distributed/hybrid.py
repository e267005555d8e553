"""A Sequential model split three ways at once, for Trainer.fit and `minigrad train`.

``HybridParallel(model, pipeline_parallel=p, tensor_parallel=t)`` on W ranks lays them out on a
(W / (p t), p, t) mesh named ("dp", "pp", "tp"):

* tensor parallel: the model's Linear layers are taken in pairs, the first of each pair becoming
  a ColumnParallelLinear and the second a RowParallelLinear (its activation, if any, applied after
  the sum over ranks); an odd last Linear stays whole on every rank;
* pipeline parallel: the result is cut by split_sequential into p stages, run by Schedule1F1B
  (or ScheduleGPipe) over micro-batches;
* data parallel: each stage is wrapped in DistributedDataParallel over its "dp" group.

``train_step(x, y, loss_fn)`` runs one batch and returns (output, loss) on every rank (the last
stage broadcasts them along its pipeline), so per-batch metrics read the same everywhere.
``gather()`` writes the trained slices and stages back into the full model on every rank, after
which it evaluates, predicts and saves as a model trained in one process would.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from ..backend import xp_for
from ..tensor import _wrap
from .mesh import init_device_mesh
from .parallel import DistributedDataParallel
from .pipeline import _DTYPES, _header, PipelineStage, Schedule1F1B, ScheduleGPipe, split_sequential
from .tensor_parallel import ColumnParallelLinear, RowParallelLinear

_ACTIVATION_MODULES = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh", "gelu": "GELU"}


class HybridParallel:
    """``model`` (a Sequential) split over data x pipeline x tensor parallel ranks; see the module doc."""

    def __init__(self, model, pipeline_parallel=1, tensor_parallel=1, n_microbatches=None, schedule="1f1b",
                 group=None):
        from . import get_process_group
        from ..nn import Sequential
        if not isinstance(model, Sequential):
            raise TypeError(f"pipeline and tensor parallelism split a Sequential, found {type(model).__name__}")
        world = group if group is not None else get_process_group()
        pp, tp = int(pipeline_parallel), int(tensor_parallel)
        if pp < 1 or tp < 1 or world.world_size % (pp * tp):
            raise ValueError(f"pipeline_parallel={pipeline_parallel} x tensor_parallel={tensor_parallel} must "
                             f"divide the world size {world.world_size} (the other factor is data parallel)")
        if schedule not in ("1f1b", "gpipe"):
            raise ValueError(f"schedule must be '1f1b' or 'gpipe', found {schedule!r}")
        self.model, self.n_microbatches = model, n_microbatches or 2 * pp
        params = list(model.parameters())
        device_type = "cuda" if params and params[0].device.type == "cuda" else "cpu"
        self.mesh = init_device_mesh(device_type, (world.world_size // (pp * tp), pp, tp),
                                     mesh_dim_names=("dp", "pp", "tp"), group=world)
        self.dp, self.pp, self.tp = (self.mesh.get_group(n) for n in ("dp", "pp", "tp"))
        local, self._twins = _tensor_parallel(model, self.tp)
        self._twin_of = {id(full): mine for full, mine, _ in self._twins}
        pieces = split_sequential(local, pp)
        self._owner = {id(q): s for s, piece in enumerate(pieces) for q in piece.parameters()}
        self.piece = pieces[self.mesh.get_local_rank("pp")]
        self.module = self.piece if self.dp.world_size == 1 else DistributedDataParallel(self.piece, group=self.dp)
        self.stage = PipelineStage(self.module, self.mesh.get_local_rank("pp"), pp, group=self.pp)
        self._schedule = Schedule1F1B if schedule == "1f1b" else ScheduleGPipe
        self._schedules = {}

    # -- the optimizer and the data -----------------------------------------------------------
    def parameters(self):
        return self.piece.parameters()

    def adopt(self, optimizer):
        """Re-initialize ``optimizer`` (built over the full model, no step taken yet) in place over
        this rank's parameters, keeping its groups' settings; a scheduler holding it keeps working."""
        if len(optimizer.state):
            raise ValueError("the optimizer has already taken steps; pipeline and tensor parallelism need "
                             "a fresh one (its state would not match this rank's slice of the model)")
        mine = {id(q) for q in self.piece.parameters()}
        groups = []
        for g in optimizer.param_groups:
            params = (self._twin_of.get(id(p), p) for p in g["params"])
            groups.append({**{k: v for k, v in g.items() if k != "params"},
                           "params": [q for q in params if id(q) in mine]})
        type(optimizer).__init__(optimizer, groups, **optimizer.defaults)
        return optimizer

    @property
    def data_parallel(self):
        """(number of data-parallel replicas, this rank's replica): how to shard the data."""
        return self.dp.world_size, self.mesh.get_local_rank("dp")

    # -- training ---------------------------------------------------------------------------
    def train_step(self, x, y, loss_fn):
        """Forward and backward of one batch through the pipeline; (output, mean loss) on every rank.
        A batch that does not split into n_microbatches runs in the largest count that divides it."""
        n = len(x.data)
        m = max(d for d in range(1, min(self.n_microbatches, n) + 1) if n % d == 0)
        sched = self._schedules.get(m)
        if sched is None:
            sched = self._schedules[m] = self._schedule(self.stage, m, loss_fn=loss_fn)
        sched.loss_fn = loss_fn
        stage, losses = self.stage, []
        if stage.is_first and stage.is_last:
            out = sched.step(x, target=y, losses=losses)
        elif stage.is_first:
            out = sched.step(x)
        elif stage.is_last:
            out = sched.step(target=y, losses=losses)
        else:
            out = sched.step()
        if stage.is_last:
            xp = xp_for(out.device)
            loss = xp.stack([v.data for v in losses]).mean()    # equal micro-batches: the batch mean
            if stage.num_stages == 1:
                return out, _wrap(loss, out.device)
            header = _header(out.data)
            payload = xp.concatenate([out.data.reshape(-1), loss.reshape(1).astype(out.data.dtype)])
        else:
            header = np.zeros_like(_header(np.zeros(())))
        # the output and the loss, from the last stage to the others: a shape, then the values
        last = stage.num_stages - 1
        self.pp.broadcast(header, last)
        shape = tuple(int(k) for k in header[2:2 + header[1]])
        if not stage.is_last:
            payload = xp_for(stage.device).empty(math.prod(shape) + 1, _DTYPES[header[0]])
        self.pp.broadcast(payload, last)
        return _wrap(payload[:-1].reshape(shape), stage.device), _wrap(payload[-1], stage.device)

    def gather(self):
        """Copy the trained parameters into the full model on every rank: each tensor-parallel
        slice is all-gathered by its stage, then each stage's parameters are broadcast from it."""
        here = self.stage.stage_index
        for full, mine, axis in self._twins:
            if self._owner[id(mine)] != here:
                continue
            if axis is None:
                full.data[...] = mine.data
            else:
                full.data[...] = xp_for(mine.device).concatenate(list(self.tp.all_gather(mine.data)), axis=axis)
        if self.pp.world_size > 1:
            for p in self.model.parameters():
                self.pp.broadcast(p.data, self._owner[id(self._twin_of.get(id(p), p))])

    def __repr__(self):
        return (f"HybridParallel(dp={self.dp.world_size}, pp={self.pp.world_size}, tp={self.tp.world_size}, "
                f"stage={self.stage.stage_index}, n_microbatches={self.n_microbatches})")


def _tensor_parallel(model, group):
    """``model`` with its Linears paired into Column- and RowParallelLinears over ``group``.
    Returns the new Sequential and, per sliced parameter, (full parameter, slice, axis sliced
    along or None for a row-parallel bias, which is whole)."""
    from .. import nn
    from ..nn import Linear, Sequential
    if group.world_size == 1:
        return model, []
    linears = [name for name, m in model._modules.items() if isinstance(m, Linear)]
    paired = linears[:len(linears) - len(linears) % 2]
    kinds = {name: "col" if i % 2 == 0 else "row" for i, name in enumerate(paired)}
    mods, twins = OrderedDict(), []
    for name, m in model._modules.items():
        kind = kinds.get(name)
        if kind is None:
            mods[name] = m
            continue
        if kind == "col":
            layer = ColumnParallelLinear.from_linear(m, group=group)
            axes = (0, 0)
        else:
            act, m.activation = m.activation, None      # the activation follows the sum over ranks
            try:
                layer = RowParallelLinear.from_linear(m, group=group)
            finally:
                m.activation = act
            axes = (1, None)
        twins.append((m.weight, layer.weight, axes[0]))
        if m.bias is not None:
            twins.append((m.bias, layer.bias, axes[1]))
        if kind == "row" and m.activation is not None:
            layer = Sequential(layer, getattr(nn, _ACTIVATION_MODULES[m.activation])())
        mods[name] = layer
    return Sequential(mods), twins
