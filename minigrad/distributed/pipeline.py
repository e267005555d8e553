"""Pipeline parallelism: each rank of a group runs one stage, a contiguous piece of the model.

    pieces = dist.split_sequential(model, num_stages)
    stage = dist.PipelineStage(pieces[i], stage_index=i, num_stages=n, group=pp)
    sched = dist.Schedule1F1B(stage, n_microbatches, loss_fn=mg.nn.functional.cross_entropy)
    opt.zero_grad()
    sched.step(x)                                     # first stage: the whole batch
    sched.step()                                      # middle stages
    sched.step(target=y, losses=losses)               # last stage
    opt.step()

The batch is split into equal micro-batches along its first axis. The last stage seeds each
micro-batch's backward with 1/m, so afterwards every parameter's ``.grad`` holds the gradient
of the mean over micro-batches of their mean losses: the whole batch's mean loss. The
schedule's action lists (minigrad.distributed.schedule) are validated before anything runs; each
step's sends and receives are posted together, the step waits for its receives, and its sends
complete while it computes (all of them before step() returns).

A stage's module may be a DistributedDataParallel over a data-parallel group: all backwards but
the stage's last run under ``no_sync()``, so gradients are averaged over that group once per step.
"""
from __future__ import annotations

import contextlib
import time
from collections import OrderedDict

import numpy as np

from ..backend import device as _device, xp_for
from ..nn.modules import Sequential
from ..tensor import Tensor, _wrap
from . import schedule as _schedule
from .comm import P2POp, Work

# A received activation's shape and dtype travel ahead of the first micro-batch of each step.
_HEADER_DIMS = 8
_DTYPES = ("float16", "float32", "float64", "int32", "int64", "uint8", "int8", "bool")


def split_sequential(model, num_stages: int, balance=None) -> list:
    """``model`` (a Sequential or a list of modules) cut into ``num_stages`` contiguous,
    non-empty Sequentials that share its modules (and keep their names, so the stages'
    state-dict keys are the model's). By default as even as possible in modules, earlier
    stages taking the extra ones; ``balance=[n0, n1, ...]`` gives each stage's module count."""
    items = list(model._modules.items()) if isinstance(model, Sequential) else \
        [(str(i), m) for i, m in enumerate(model)]
    n = len(items)
    if not isinstance(num_stages, int) or num_stages < 1:
        raise ValueError(f"num_stages must be a positive int, got {num_stages!r}")
    if balance is None:
        if num_stages > n:
            raise ValueError(f"cannot split {n} modules into {num_stages} non-empty stages")
        balance = [n // num_stages + (1 if s < n % num_stages else 0) for s in range(num_stages)]
    else:
        balance = list(balance)
        if len(balance) != num_stages or sum(balance) != n or any(b < 1 for b in balance):
            raise ValueError(f"balance={balance} must give each of the {num_stages} stages at least one "
                             f"module and add up to the model's {n} modules")
    pieces, start = [], 0
    for count in balance:
        pieces.append(Sequential(OrderedDict(items[start:start + count])))
        start += count
    return pieces


class PipelineStage:
    """One stage of a pipeline: ``module`` runs on this rank, which is rank ``stage_index`` of
    ``group`` (the pipeline group; default the world), a group of ``num_stages`` ranks."""

    def __init__(self, module, stage_index: int, num_stages: int, group=None):
        from . import get_device, get_process_group, get_rank
        group = group if group is not None else get_process_group()
        if group.world_size != num_stages:
            raise ValueError(f"a pipeline of {num_stages} stages needs a group of {num_stages} ranks, "
                             f"found {group.world_size}")
        if not 0 <= stage_index < num_stages:
            raise ValueError(f"stage_index {stage_index} is out of range for {num_stages} stages")
        if group.rank != stage_index:
            raise ValueError(f"stage_index is {stage_index} but this rank is rank {group.rank} of the "
                             f"pipeline group; a stage's index is its rank's place in the group "
                             f"(mesh.get_local_rank('pp'))")
        self.module, self.stage_index, self.num_stages, self.group = module, stage_index, num_stages, group
        self.is_first, self.is_last = stage_index == 0, stage_index == num_stages - 1
        self.world_ranks = group.all_gather_object(get_rank()) if num_stages > 1 else [get_rank()]
        params = list(module.parameters())
        self.device = params[0].device if params else _device(get_device())

    def parameters(self):
        return self.module.parameters()

    def __repr__(self):
        return f"PipelineStage({self.stage_index}/{self.num_stages}, module={self.module!r})"


class PipelineSchedule:
    """Runs one stage's part of a schedule (``kind`` in schedule.SCHEDULES) over micro-batches."""

    kind = None

    def __init__(self, stage: PipelineStage, n_microbatches: int, loss_fn=None):
        if not isinstance(n_microbatches, int) or n_microbatches < 1:
            raise ValueError(f"n_microbatches must be a positive int, got {n_microbatches!r}")
        if stage.is_last and loss_fn is None:
            raise ValueError("the last stage needs loss_fn(output, target)")
        self.stage, self.n_microbatches, self.loss_fn = stage, n_microbatches, loss_fn
        self._all_steps = _schedule.pipeline_steps(self.actions())
        _schedule.validate(self._all_steps, n_microbatches, max_in_flight=self.max_in_flight)
        self._steps = self._all_steps[stage.stage_index]
        self._last_backward = max(k for k, st in enumerate(self._steps)
                                  if st.action is not None and st.action.kind == "B")
        self._header = None
        # bytes this stage sent, the most micro-batches it held at once, and seconds it computed
        self.stats = {"bytes_sent": 0, "peak_in_flight": 0, "compute_s": 0.0}

    @property
    def max_in_flight(self):
        return None

    def actions(self) -> list:
        """Every stage's ordered list of Actions (forward / backward of a micro-batch)."""
        return _schedule.SCHEDULES[self.kind](self.stage.num_stages, self.n_microbatches)

    def step(self, x=None, *, target=None, losses=None):
        """Run one batch through this stage: forwards and backwards of every micro-batch,
        accumulating into the parameters' ``.grad`` (zero them before, as for backward()).
        First stage: ``x``, the whole batch. Last stage: ``target`` (and ``losses``, a list that
        gets each micro-batch's mean loss, detached, in order). Returns, on the last stage, the
        outputs of the whole batch (detached, concatenated); None elsewhere."""
        stage, m = self.stage, self.n_microbatches
        if stage.is_first:
            if x is None:
                raise ValueError("the first stage's step() needs the batch: sched.step(x)")
            inputs = _split(x, m, "input")
        elif x is not None:
            raise ValueError(f"only the first stage takes the input; stage {stage.stage_index} calls "
                             f"sched.step() (the last stage: sched.step(target=y))")
        if stage.is_last:
            if target is None:
                raise ValueError("the last stage's step() needs the targets: sched.step(target=y)")
            targets = _split(target, m, "target")
        elif target is not None or losses is not None:
            raise ValueError(f"only the last stage takes target= and losses=; this is stage "
                             f"{stage.stage_index} of {stage.num_stages}")
        ins, outs, loss_values, results = {}, {}, [None] * m, [None] * m
        received, sending = {}, []
        in_flight = 0
        for k, st in enumerate(self._steps):
            # a step waits for the data it receives; its sends complete while it computes
            sending.append(self._communicate(st.transfers, ins, outs, received))
            a = st.action
            if a is None:
                continue
            i = a.microbatch
            start = time.perf_counter()
            if a.kind == "F":
                xin = inputs[i] if stage.is_first else _wrap(received.pop(("act", i)), stage.device, True)
                out = stage.module(xin)
                ins[i] = xin
                if stage.is_last:
                    results[i] = out.detach()
                    loss_values[i] = self.loss_fn(out, targets[i])
                    out = loss_values[i]
                outs[i] = out
                in_flight += 1
                self.stats["peak_in_flight"] = max(self.stats["peak_in_flight"], in_flight)
            else:
                root = outs[i]
                if stage.is_last:
                    grad = xp_for(root.device).full((), 1.0 / m, dtype=root.data.dtype)
                else:
                    grad = received.pop(("grad", i))
                sync = k == self._last_backward or not hasattr(stage.module, "no_sync")
                with (contextlib.nullcontext() if sync else stage.module.no_sync()):
                    if root.requires_grad:
                        root.backward(grad)
                outs[i] = None
                in_flight -= 1
            self.stats["compute_s"] += time.perf_counter() - start
        for work in sending:
            work.wait()
        if losses is not None:
            losses.extend(v.detach() for v in loss_values)
        if stage.is_last:
            first = results[0]
            return _wrap(xp_for(first.device).concatenate([r.data for r in results]), first.device)
        return None

    # -- communication --------------------------------------------------------------------
    def _communicate(self, transfers, ins, outs, received):
        """Post one step's transfers; return once its receives are done, with a Work for its sends."""
        if not transfers:
            return Work(None)
        stage = self.stage
        ops, later = [], []
        for t in transfers:
            tag = 3 * t.microbatch + (0 if t.what == "act" else 1)
            what = self._describe(t)
            if t.op == "send":
                if t.what == "act":
                    array = outs[t.microbatch].data
                    if t.microbatch == 0:
                        ops.append(P2POp("send", _header(array), t.peer, 2, what + " (its shape)"))
                else:
                    x = ins.pop(t.microbatch)
                    array = x.grad.data if x.grad is not None else xp_for(x.device).zeros_like(x.data)
                ops.append(P2POp("send", array, t.peer, tag, what))
                self.stats["bytes_sent"] += array.nbytes
            elif t.what == "act":
                if t.microbatch == 0:           # learn this step's activation shape first
                    self._header = np.zeros(2 + _HEADER_DIMS, np.int64)
                    ops.append(P2POp("recv", self._header, t.peer, 2, what + " (its shape)"))
                    later.append((t, tag, what))
                    continue
                buf = self._empty_activation()
                received[("act", t.microbatch)] = buf
                ops.append(P2POp("recv", buf, t.peer, tag, what))
            else:
                sent = outs[t.microbatch].data
                buf = xp_for(stage.device).empty(sent.shape, sent.dtype)
                received[("grad", t.microbatch)] = buf
                ops.append(P2POp("recv", buf, t.peer, tag, what))
        sends = stage.group.exchange(ops, wait_for_sends=False)
        if later:
            t, tag, what = later[0]
            buf = self._empty_activation()
            received[("act", t.microbatch)] = buf
            stage.group.exchange([P2POp("recv", buf, t.peer, tag, what)])
        return sends

    def _empty_activation(self):
        h = self._header
        shape = tuple(int(n) for n in h[2:2 + h[1]])
        return xp_for(self.stage.device).empty(shape, _DTYPES[h[0]])

    def _describe(self, t):
        s, ranks = self.stage.stage_index, self.stage.world_ranks
        name = "activation" if t.what == "act" else "gradient"
        if t.op == "send":
            return (f"stage {s} sending the {name} of micro-batch {t.microbatch} to stage {t.peer} "
                    f"(rank {ranks[t.peer]})")
        return (f"stage {s} receiving the {name} of micro-batch {t.microbatch} from stage {t.peer} "
                f"(rank {ranks[t.peer]})")


class ScheduleGPipe(PipelineSchedule):
    """GPipe: all forwards, then all backwards (holds all m micro-batches' activations)."""
    kind = "gpipe"


class Schedule1F1B(PipelineSchedule):
    """1F1B: after a warm-up of forwards, one forward then one backward; stage s holds at most
    p - s micro-batches' activations, whatever m is."""
    kind = "1f1b"

    @property
    def max_in_flight(self):
        return self.stage.num_stages


def _header(array):
    if array.ndim > _HEADER_DIMS:
        raise ValueError(f"a pipeline activation may have at most {_HEADER_DIMS} dimensions, "
                         f"found shape {tuple(array.shape)}")
    if array.dtype.name not in _DTYPES:
        raise TypeError(f"a pipeline activation of dtype {array.dtype} cannot be sent; "
                        f"supported: {', '.join(_DTYPES)}")
    h = np.zeros(2 + _HEADER_DIMS, np.int64)
    h[0], h[1] = _DTYPES.index(array.dtype.name), array.ndim
    h[2:2 + array.ndim] = array.shape
    return h


def _split(x, m, what):
    """The batch x (a Tensor or array) as m equal micro-batch Tensors along the first axis."""
    t = x if isinstance(x, Tensor) else None
    data = x.data if t is not None else np.asarray(x)
    dev = t.device if t is not None else _device("cpu")
    n = data.shape[0] if data.ndim else 0
    if n == 0 or n % m:
        raise ValueError(f"the {what} batch of {n} samples does not split into {m} equal micro-batches; "
                         f"use a batch size divisible by n_microbatches (or drop the last partial batch)")
    size = n // m
    return [_wrap(data[i * size:(i + 1) * size], dev) for i in range(m)]
