"""Optimizer: param_groups from defaults, per-parameter state, and one vectorized update per group.

Each parameter group keeps its parameters as views into one flat contiguous buffer per
(device, dtype), with the gradients gathered into a flat buffer of the same layout and the
optimizer state (momentum, moments) held as flat buffers too. A step is then a handful of array
calls over the whole group instead of a Python loop of small calls per parameter.

If a parameter's array is replaced after the optimizer was built (model.to(...), p.data = ...),
the next step notices (each parameter's .data must still be its view) and re-flattens from the
parameters' current arrays, converting the state to their device and dtype: it never trains a
stale copy."""
from collections import OrderedDict

from .. import autograd
from ..backend import device_of, get_array_module, to_device
from ..tensor import Tensor, _wrap


class _Required:
    def __repr__(self):
        return "<required parameter>"


required = _Required()


class _Bucket:
    """Parameters of one group, device and dtype, as views into one flat buffer `data`.

    grad, state[name] and work[i] are flat buffers with the same layout. count is the number of
    updates every parameter has taken while they agree; steps lists them once they differ (a
    parameter without a gradient is skipped, as in PyTorch)."""

    def __init__(self, params, state_names, n_work):
        p0 = params[0].data
        xp = self.xp = get_array_module(p0)
        self.params = params
        self.shapes = [p.data.shape for p in params]
        offsets = [0]
        for p in params:
            offsets.append(offsets[-1] + p.data.size)
        self.offsets = offsets
        self.data = xp.empty(offsets[-1], p0.dtype)
        if offsets[-1]:
            xp.concatenate([p.data for p in params], axis=None, out=self.data)
        self.views = [self.data[a:b].reshape(s) for a, b, s in zip(offsets, offsets[1:], self.shapes)]
        for p, v in zip(params, self.views):
            p.data = v
        self.grad = xp.zeros_like(self.data)
        self.state = {n: xp.zeros_like(self.data) for n in state_names}
        self.work = [xp.empty_like(self.data) for _ in range(n_work)]
        self.count, self.steps = 0, None

    def stale(self):
        for p, v in zip(self.params, self.views):
            if p.data is not v:
                return True
        return False

    def step_list(self):
        return list(self.steps) if self.steps is not None else [self.count] * len(self.params)

    def set_steps(self, steps):
        if len(set(steps)) <= 1:
            self.count, self.steps = (steps[0] if steps else 0), None
        else:
            self.steps = steps

    def segment(self, j):
        return slice(self.offsets[j], self.offsets[j + 1])

    def state_views(self, j):
        """{name: parameter j's state, as a view of its segment in the parameter's shape}."""
        return {n: f[self.segment(j)].reshape(self.shapes[j]) for n, f in self.state.items()}

    def export(self):
        """{param id: (steps, {name: array of the parameter's shape})} (views, not copies)."""
        steps = self.step_list()
        return {id(p): (steps[j], self.state_views(j))
                for j, p in enumerate(self.params)}

    def load(self, j, step, arrays):
        """Set parameter j's state, converting arrays to this bucket's device and dtype."""
        sl, dev = self.segment(j), device_of(self.data)
        for name, flat in self.state.items():
            a = arrays.get(name)
            if a is None:
                flat[sl] = 0
            else:
                a = a.data if isinstance(a, Tensor) else a
                flat[sl] = to_device(a, dev).reshape(-1)
        steps = self.step_list()
        steps[j] = step
        self.set_steps(steps)


class Optimizer:
    """Base class: subclasses define _state_names(group), _n_work and _update(...), and may
    define _fused_update(...)."""
    _n_work = 1
    _has_step = False  # whether state_dict() lists a per-parameter "step", as torch's Adam

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self._buckets = []
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Tensors or of dicts, found a single Tensor; "
                            "pass model.parameters() or [tensor]")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    # --- groups --------------------------------------------------------------------------
    def add_param_group(self, param_group):
        group = dict(param_group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, found {type(p).__name__} at position {i}")
            if p.data.dtype.kind != "f":
                raise TypeError(f"optimizer can only optimize floating point tensors, found dtype {p.data.dtype}")
            if p._ctx is not None:
                raise ValueError("optimizer can only optimize leaf tensors (this one was computed by an op)")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or any(id(p) in seen for p in params):
            raise ValueError("some parameters appear more than once (in one group or in two groups)")
        group["params"] = params
        for k, v in self.defaults.items():
            if v is required and k not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {k}")
            group.setdefault(k, v)
        self._check_group(group)
        self.param_groups.append(group)
        self._buckets.append(self._make_buckets(group))

    def _check_group(self, group):
        pass

    def _make_buckets(self, group, old=None):
        """One _Bucket per (device, dtype) in the group; state carried over from `old` per parameter."""
        by_key = OrderedDict()
        for p in group["params"]:
            by_key.setdefault((device_of(p.data), p.data.dtype), []).append(p)
        names = self._state_names(group)
        buckets = [_Bucket(ps, names, self._n_work) for ps in by_key.values()]
        if old:
            saved = {}
            for b in old:
                saved.update(b.export())
            for b in buckets:
                for j, p in enumerate(b.params):
                    if id(p) in saved:
                        step, arrays = saved[id(p)]
                        b.load(j, step, arrays)
        return buckets

    def _current_buckets(self, i):
        buckets = self._buckets[i]
        for b in buckets:
            if b.stale():
                buckets = self._buckets[i] = self._make_buckets(self.param_groups[i], buckets)
                break
        return buckets

    # --- the update -----------------------------------------------------------------------
    def zero_grad(self, set_to_none=True):
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.data[...] = 0

    def step(self, closure=None):
        """One update of every parameter that has a gradient. closure: re-evaluates the model and
        returns the loss (optional)."""
        loss = None
        if closure is not None:
            with autograd.enable_grad():
                loss = closure()
        for i, group in enumerate(self.param_groups):
            for b in self._current_buckets(i):
                try:
                    grads = [p.grad.data for p in b.params]
                except AttributeError:  # a parameter without a gradient: update the others one by one
                    self._step_each(group, b)
                    continue
                if b.steps is not None:
                    self._step_each(group, b)
                    continue
                step = b.count + 1
                try:
                    if not self._fused_update(group, b.data, grads, b.state, step):
                        b.xp.concatenate(grads, axis=None, out=b.grad)
                        self._update(group, b.data, b.grad, b.state, step, b.work)
                except (ValueError, TypeError):
                    _check_grads(b.params)
                    raise
                b.count = step
        return loss

    def _step_each(self, group, b):
        steps = b.step_list()
        for j, p in enumerate(b.params):
            if p.grad is None:
                continue
            _check_grads([p])
            sl = b.segment(j)
            steps[j] += 1
            state = {n: f[sl] for n, f in b.state.items()}
            if not self._fused_update(group, b.data[sl], [p.grad.data], state, steps[j]):
                g = b.grad[sl]
                g[...] = p.grad.data.reshape(-1)
                self._update(group, b.data[sl], g, state, steps[j], [w[sl] for w in b.work])
        b.set_steps(steps)

    def _state_names(self, group):
        return ()

    def _fused_update(self, group, p, grads, state, step):
        """The update in one compiled pass, reading grads (each parameter's gradient array, in p's
        order) where backward left them; False, having done nothing, where no such kernel takes
        these arrays: then they are gathered into a flat buffer for _update."""
        return False

    def _update(self, group, p, g, state, step, work):
        """Update flat arrays in place: p (parameters), g (gradients, may be overwritten),
        state (name -> flat array), step (this update's 1-based count), work (scratch arrays)."""
        raise NotImplementedError  # abstract: each subclass defines it

    # --- state ----------------------------------------------------------------------------
    def _param_state(self, i):
        """[(param, step, {name: array view})] for parameters of group i that have state."""
        out = []
        for b in self._current_buckets(i):
            steps = b.step_list()
            for j, p in enumerate(b.params):
                if steps[j]:
                    out.append((p, steps[j], b.state_views(j)))
        return out

    @property
    def state(self):
        """param -> {name: Tensor view of its live state (and "step" where the optimizer has one)}."""
        return {p: d for p, d in self._state_entries(copy=False)}

    def _state_entries(self, copy):
        """(param, {"step": int (Adam), name: Tensor}) for every parameter that has been updated."""
        for i in range(len(self.param_groups)):
            for p, step, arrays in self._param_state(i):
                d = {"step": step} if self._has_step else {}
                d.update((n, _wrap(a.copy() if copy else a, p.device)) for n, a in arrays.items())
                yield p, d

    def state_dict(self):
        """{"state": {index: {name: Tensor copy, "step": int}}, "param_groups": [{..., "params": [index, ...]}]},
        indices numbering the parameters across groups in order, as PyTorch."""
        index = {}
        groups = []
        for group in self.param_groups:
            g = {k: v for k, v in group.items() if k != "params"}
            g["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(g)
        state = {index[id(p)]: d for p, d in self._state_entries(copy=True)}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and per-parameter state from state_dict() output (arrays are
        copied to each parameter's device and dtype)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(groups)} parameter groups, this optimizer has "
                             f"{len(self.param_groups)}")
        params = []
        for k, (mine, theirs) in enumerate(zip(self.param_groups, groups)):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError(f"loaded state dict's parameter group {k} has {len(theirs['params'])} parameters, "
                                 f"this optimizer's has {len(mine['params'])}")
            params.extend(zip(theirs["params"], mine["params"]))
        by_index = dict(params)
        state = {int(k): v for k, v in state_dict["state"].items()}
        for k, st in state.items():
            if k not in by_index:
                raise ValueError(f"loaded state dict has state for parameter {k}, which no parameter group lists")
            p = by_index[k]
            for name, v in st.items():
                if name != "step" and v is not None and tuple(v.shape) != tuple(p.data.shape):
                    raise ValueError(f"loaded state dict's {name!r} for parameter {k} has shape {tuple(v.shape)}, "
                                     f"the parameter has shape {tuple(p.data.shape)}")
        for i, (mine, theirs) in enumerate(zip(self.param_groups, groups)):
            for key, v in theirs.items():
                if key != "params":
                    mine[key] = tuple(v) if isinstance(v, list) and isinstance(mine.get(key), tuple) else v
            self._check_group(mine)
            buckets = self._buckets[i] = self._make_buckets(mine)
            index = {id(q): int(k) for k, q in zip(theirs["params"], mine["params"])}
            for b in buckets:
                for j, p in enumerate(b.params):
                    st = state.get(index[id(p)])
                    if st is None:
                        b.load(j, 0, {})
                    else:
                        b.load(j, self._loaded_step(st), {n: v for n, v in st.items() if n != "step"})

    def _loaded_step(self, st):
        step = st.get("step")
        if step is None:  # e.g. SGD: a momentum buffer means the parameter has been updated
            return 1 if any(v is not None for v in st.values()) else 0
        return int(float(step.item() if hasattr(step, "item") else step))

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(group):
                if k != "params":
                    lines.append(f"    {k}: {group[k]}")
        return "\n".join(lines) + "\n)"



def _check_grads(params):
    """Raise a clear error for a gradient that does not match its parameter."""
    for i, p in enumerate(params):
        g = p.grad
        if g is None:
            continue
        if tuple(g.data.shape) != tuple(p.data.shape):
            raise RuntimeError(f"optimizer step: a parameter of shape {tuple(p.data.shape)} has a gradient of "
                               f"shape {tuple(g.data.shape)}")
        if device_of(g.data) is not device_of(p.data):
            raise RuntimeError(f"optimizer step: a parameter on {device_of(p.data)} has its gradient on "
                               f"{device_of(g.data)}")
