"""Module and Parameter: attribute registration, parameter traversal, state dicts, modes, devices.

Parameters, buffers and submodules are registered by assigning them as attributes. Each is kept
both in the instance __dict__ (so `self.weight` is a plain attribute lookup on the hot path) and in
an ordered registry (`_parameters`, `_buffers`, `_modules`) that names and orders them."""
import warnings
from collections import OrderedDict

import numpy as np

from .. import autograd
from ..backend import Device, device as _device, device_of, get_array_module, to_device
from ..tensor import Tensor, _as_array, _wrap


class Parameter(Tensor):
    """A Tensor that a Module registers as a parameter; requires grad by default."""
    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = np.empty((0,), np.float32)
        if isinstance(data, Tensor):  # share the array, as torch.nn.Parameter(t) does
            arr, dev = data.data, data.device
        else:
            arr, dev = _as_array(data, None, None)
        self.data, self.device, self.grad, self._ctx, self._hooks = arr, dev, None, None, None
        self.requires_grad = False
        self.requires_grad_(requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and models. Subclasses set attributes in __init__ and define forward()."""

    def __init__(self):
        d = self.__dict__
        d["_parameters"], d["_buffers"], d["_modules"] = OrderedDict(), OrderedDict(), OrderedDict()
        d["training"] = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")  # abstract

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # --- registration -----------------------------------------------------------------
    def __setattr__(self, name, value):
        d = self.__dict__
        if "_parameters" not in d:
            if isinstance(value, (Parameter, Module)):
                raise AttributeError(f"cannot assign {type(value).__name__} '{name}' before "
                                     f"Module.__init__() is called (call super().__init__() first)")
            object.__setattr__(self, name, value)
            return
        params, buffers, modules = d["_parameters"], d["_buffers"], d["_modules"]
        if isinstance(value, Parameter):
            buffers.pop(name, None)
            modules.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            buffers.pop(name, None)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter '{name}' "
                                "(a Parameter or None is expected)")
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module '{name}' "
                                "(a Module or None is expected)")
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer '{name}' "
                                "(a Tensor or None is expected)")
            buffers[name] = value
        elif isinstance(value, (list, tuple, dict)):
            _warn_unregistered(self, name, value)
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for reg in (self._parameters, self._buffers, self._modules):
            reg.pop(name, None)
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: '{name}' must be a Parameter or None, "
                            f"found {type(param).__name__}")
        self.__dict__["_parameters"][name] = param
        object.__setattr__(self, name, param)

    def register_buffer(self, name, tensor):
        """A tensor that is part of the state (state_dict, to()) but is not trained."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: '{name}' must be a Tensor or None, found {type(tensor).__name__}")
        self.__dict__["_buffers"][name] = tensor
        object.__setattr__(self, name, tensor)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: '{name}' must be a Module or None, found {type(module).__name__}")
        self.__dict__["_modules"][name] = module
        object.__setattr__(self, name, module)

    # --- traversal --------------------------------------------------------------------
    def _named(self, registry, prefix="", recurse=True):
        """(qualified name, value) for every entry of one registry in this module (and below),
        each object once, in registration order. named_parameters and named_buffers use it."""
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, mod in mods:
            for name, v in mod.__dict__[registry].items():
                if v is None or id(v) in seen:
                    continue
                seen.add(id(v))
                yield (mod_prefix + "." + name if mod_prefix else name), v

    def named_parameters(self, prefix="", recurse=True):
        return self._named("_parameters", prefix, recurse)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        return self._named("_buffers", prefix, recurse)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix="", memo=None):
        """This module and every submodule, depth first, each once, with dotted names."""
        if memo is None:
            memo = set()
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(prefix + "." + name if prefix else name, memo)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def apply(self, fn):
        """Call fn(module) on every submodule (children first) and on self; returns self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # --- state ------------------------------------------------------------------------
    def state_dict(self, prefix=""):
        """An ordered dict of name -> Tensor (parameters and buffers, detached, sharing memory)."""
        out = OrderedDict()
        self._state_into(out, prefix)
        return out

    def _state_into(self, out, prefix):
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p.detach()
        for name, b in self._buffers.items():
            if b is not None:
                out[prefix + name] = b.detach()
        for name, m in self._modules.items():
            if m is not None:
                m._state_into(out, prefix + name + ".")

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into this module's parameters and buffers, in place.

        state_dict maps names to Tensors or arrays. With strict=True, missing keys, unexpected keys
        and shape mismatches raise one error listing all of them; with strict=False only shape
        mismatches raise, and the result names the missing and unexpected keys."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        for k, dst in own.items():
            if k not in state_dict:
                continue
            src = state_dict[k]
            shape = tuple(src.shape)
            if shape != tuple(dst.shape):
                problems.append(f"size mismatch for {k}: copying a value of shape {shape}, "
                                f"the parameter in this model has shape {tuple(dst.shape)}")
        if strict:
            if missing:
                problems.insert(0, "missing keys: " + ", ".join(repr(k) for k in missing))
            if unexpected:
                problems.insert(len(missing) > 0, "unexpected keys: " + ", ".join(repr(k) for k in unexpected))
        if problems:
            raise RuntimeError(f"error(s) in loading state_dict for {type(self).__name__}:\n  "
                               + "\n  ".join(problems))
        with autograd.no_grad():
            for k, dst in own.items():
                if k in state_dict:
                    src = state_dict[k]
                    src = src.data if isinstance(src, Tensor) else get_array_module(src).asarray(src)
                    dst.data[...] = to_device(src, dst.device)  # dst shares the parameter's array
        return _IncompatibleKeys(missing, unexpected)

    # --- modes, devices, grads ---------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            m.__dict__["training"] = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.data[...] = 0

    def _apply(self, fn):
        """Replace every parameter's and buffer's array (and gradient) with fn(array)."""
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    p.data = fn(p.data)
                    p.device = device_of(p.data)
                    if p.grad is not None:
                        g = fn(p.grad.data)
                        p.grad = _wrap(g, device_of(g))
            for name, b in m._buffers.items():
                if b is not None:
                    b.data = fn(b.data)
                    b.device = device_of(b.data)
        return self

    def to(self, *args, dtype=None, device=None):
        """to(device), to(dtype) or to(device, dtype): moves and casts floating parameters and
        buffers in place (the Module and its Parameter objects stay the same); returns self."""
        for a in args:
            if isinstance(a, (str, Device)):
                device = a
            else:
                dtype = a
        dev = None if device is None else _device(device)
        dt = None if dtype is None else np.dtype(dtype)
        if dt is not None and dt.kind not in "fc":
            raise TypeError(f"Module.to: only floating point dtypes are allowed, found {dt}")

        def convert(a):
            if dev is not None:
                a = to_device(a, dev)
            if dt is not None and a.dtype.kind in "fc" and a.dtype != dt:
                a = a.astype(dt)
            return a
        return self._apply(convert)

    def cpu(self): return self.to("cpu")
    def cuda(self, i=0): return self.to(f"cuda:{i}")
    def float(self): return self.to(np.float32)
    def double(self): return self.to(np.float64)
    def half(self): return self.to(np.float16)

    # --- repr -------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines.extend(extra.split("\n"))
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        if not lines:
            return f"{type(self).__name__}()"
        if len(lines) == 1 and not self._modules:
            return f"{type(self).__name__}({lines[0]})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


def _warn_unregistered(module, name, value):
    """A plain list, tuple or dict of Modules registers nothing (as in PyTorch): say so once, at the
    assignment, instead of letting parameters() and the optimizer silently miss them."""
    items = value.values() if isinstance(value, dict) else value
    if any(isinstance(v, Module) for v in items):
        kind = "ModuleDict" if isinstance(value, dict) else "ModuleList"
        warnings.warn(f"{type(module).__name__}.{name} is a plain {type(value).__name__} holding Modules: their "
                      f"parameters are not registered (parameters(), state_dict(), to() and optimizers do not "
                      f"see them); use nn.{kind}", UserWarning, stacklevel=3)


class _IncompatibleKeys:
    """What load_state_dict(strict=False) did not match."""
    __slots__ = ("missing_keys", "unexpected_keys")

    def __init__(self, missing, unexpected):
        self.missing_keys, self.unexpected_keys = missing, unexpected

    def __iter__(self):
        return iter((self.missing_keys, self.unexpected_keys))

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return f"_IncompatibleKeys(missing_keys={self.missing_keys}, unexpected_keys={self.unexpected_keys})"

