"""Optimizer: PyTorch's shape. `defaults` become `param_groups`, each parameter has its own
`state[p]` dict (PyTorch's keys: "step", "exp_avg", "momentum_buffer", ...), and a subclass's
`step` gathers a group's arrays into lists and hands them to its update function (sgd, adam, ...),
which runs one compiled pass over all of them where the C++ extension takes the arrays and the
plain per-parameter update otherwise, with bit-identical results.

Each step reads every parameter's current array, so an optimizer follows a parameter whose array
was replaced (model.to(...), p.data = ...); its state moves to the new array's device and dtype."""
import inspect
from collections import defaultdict

from .. import autograd
from ..backend import device_of, get_array_module, to_device
from ..tensor import Tensor, _wrap


class _Required:
    def __repr__(self):
        return "<required parameter>"


required = _Required()

# Keras' optimizer arguments that PyTorch's optimizers (and so minigrad's) do not take: what to write
# instead. learning_rate is not taken as an alias of lr either: code written for minigrad runs
# unchanged on PyTorch, and param_groups (which schedulers and checkpoints read) have one key.
_KERAS_ARGS = {
    "decay": "mg.optim.lr_scheduler.InverseTimeDecay(optimizer, decay=...), stepped once per batch",
    "learning_rate": "lr=",
    "clipnorm": "mg.nn.utils.clip_grad_norm_(model.parameters(), max_norm) between backward() and step()",
    "global_clipnorm": "mg.nn.utils.clip_grad_norm_(model.parameters(), max_norm) between backward() and step()",
    "clipvalue": "mg.nn.utils.clip_grad_value_(model.parameters(), clip_value) between backward() and step()",
    "epsilon": "eps=",
    "beta_1": "betas=(beta_1, beta_2)",
    "beta_2": "betas=(beta_1, beta_2)",
    "rho": "RMSprop's alpha=",
}


class Optimizer:
    """Base class: keeps param_groups and per-parameter state; subclasses define step()."""

    def __new__(cls, *args, **kwargs):
        params = inspect.signature(cls.__init__).parameters if kwargs else {}
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())   # a subclass's **kwargs
        keras = [k for k in kwargs if k in _KERAS_ARGS and k not in params and not takes_any]
        if keras:
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {keras[0]!r} (a Keras "
                            f"argument; PyTorch's optimizers do not take it): use {_KERAS_ARGS[keras[0]]}")
        return super().__new__(cls)

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = defaultdict(dict)
        self.param_groups = []
        self._arrays = {}   # param -> the array its state last matched (see _params_with_grad)
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

    def _check_group(self, group):
        """Validate (and normalise) a group's hyper-parameters; ValueError naming the bad one."""

    def _check(self, group, key, ok, what):
        if not ok:
            name = "learning rate" if key == "lr" else key
            raise ValueError(f"{type(self).__name__}: invalid {name} {group[key]} ({what})")

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
        raise NotImplementedError  # abstract: each subclass defines it

    @staticmethod
    def _closure_loss(closure):
        if closure is None:
            return None
        with autograd.enable_grad():
            return closure()

    def _params_with_grad(self, group):
        """(params, arrays, grads, states): the group's parameters that have a gradient, which this
        step updates in place (the one place that decides which parameters a step writes), their
        arrays, their gradients' arrays and their state dicts. A parameter whose array was replaced
        since its last step first gets its state moved to the new array's device and dtype."""
        params, arrays, grads, states = [], [], [], []
        state, last = self.state, self._arrays
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            a = p.data
            st = state[p]
            if last.get(p) is not a:
                _follow(a, st)
                last[p] = a
            params.append(p)
            arrays.append(a)
            grads.append(g.data)
            states.append(st)
        autograd.bump_version(*arrays)  # backward through a graph saved before this step raises
        return params, arrays, grads, states

    # --- state ----------------------------------------------------------------------------
    def state_dict(self):
        """{"state": {index: {name: Tensor copy, "step": int}}, "param_groups": [{..., "params": [index, ...]}]},
        indices numbering the parameters across groups in order, as PyTorch."""
        index, groups = {}, []
        for group in self.param_groups:
            g = {k: v for k, v in group.items() if k != "params"}
            g["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(g)
        state = {}
        for p, st in self.state.items():
            if st and id(p) in index:
                state[index[id(p)]] = {k: _wrap(v.data.copy(), v.device) if isinstance(v, Tensor) else v
                                       for k, v in st.items()}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and per-parameter state from state_dict() output (a PyTorch
        optimizer's too); arrays are copied to each parameter's device and dtype."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(groups)} parameter groups, this optimizer has "
                             f"{len(self.param_groups)}")
        by_index = {}
        for k, (mine, theirs) in enumerate(zip(self.param_groups, groups)):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError(f"loaded state dict's parameter group {k} has {len(theirs['params'])} parameters, "
                                 f"this optimizer's has {len(mine['params'])}")
            by_index.update(zip(theirs["params"], mine["params"]))
        saved = {int(k): v for k, v in state_dict["state"].items()}
        for k, st in saved.items():
            if k not in by_index:
                raise ValueError(f"loaded state dict has state for parameter {k}, which no parameter group lists")
            p = by_index[k]
            for name, v in st.items():
                if name != "step" and v is not None and tuple(v.shape) != tuple(p.data.shape):
                    raise ValueError(f"loaded state dict's {name!r} for parameter {k} has shape {tuple(v.shape)}, "
                                     f"the parameter has shape {tuple(p.data.shape)}")
        new_groups = []
        for mine, theirs in zip(self.param_groups, groups):
            # the saved group replaces this one, as in PyTorch; keys it lacks (saved by an older
            # version) keep their values, and JSON's lists become tuples again
            loaded = {k: tuple(v) if isinstance(v, list) and isinstance(mine.get(k), tuple) else v
                      for k, v in theirs.items() if k != "params"}
            new_groups.append({**{k: v for k, v in mine.items() if k in self.defaults}, **loaded,
                               "params": mine["params"]})
            self._check_group(new_groups[-1])
        for mine, loaded in zip(self.param_groups, new_groups):
            mine.clear()
            mine.update(loaded)
        self.state = defaultdict(dict)
        self._arrays = {}
        for k, st in saved.items():
            p = by_index[k]
            self.state[p] = {name: _loaded(v, p.data) for name, v in st.items()}

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(group):
                if k != "params":
                    lines.append(f"    {k}: {group[k]}")
        return "\n".join(lines) + "\n)"


def _loaded(v, like):
    """A loaded state value: "step" as an int (PyTorch saves a tensor), arrays as a Tensor copy on
    `like`'s device in its dtype."""
    if v is None or isinstance(v, (int, float)):
        return v
    a = v.data if isinstance(v, Tensor) else v
    if getattr(a, "ndim", None) == 0 or not hasattr(a, "shape"):   # a step saved as a tensor
        return int(float(a.item() if hasattr(a, "item") else a))
    dev = device_of(like)
    a = to_device(a, dev)
    return _wrap(get_array_module(like).array(a, dtype=like.dtype, copy=True), dev)


def _follow(a, st):
    """Move a parameter's state arrays to its (new) array a's device and dtype."""
    dev = None
    for k, v in st.items():
        if isinstance(v, Tensor) and (v.data.dtype != a.dtype or device_of(v.data) is not device_of(a)):
            dev = dev or device_of(a)
            st[k] = _wrap(get_array_module(a).asarray(to_device(v.data, dev), dtype=a.dtype), dev)


def check_grads(arrays, grads):
    """RuntimeError for a gradient whose shape or device differs from its parameter's."""
    for a, g in zip(arrays, grads):
        if tuple(g.shape) != tuple(a.shape):
            raise RuntimeError(f"optimizer step: a parameter of shape {tuple(a.shape)} has a gradient of "
                               f"shape {tuple(g.shape)}")
        if device_of(g) is not device_of(a):
            raise RuntimeError(f"optimizer step: a parameter on {device_of(a)} has its gradient on "
                               f"{device_of(g)}")


def plain_update(fused, arrays, grads):
    """Called where the one-pass C++ update did not take the arrays, before the plain per-parameter
    update runs: a gradient of the wrong shape or device raises here, and so does fused=True."""
    check_grads(arrays, grads)
    if fused:
        raise RuntimeError("fused=True: the compiled update takes C-contiguous float32/float64 NumPy arrays "
                           "(and needs minigrad._C); pass fused=None to fall back to the plain update")
