"""Saving and loading: safetensors files, written atomically, and full training checkpoints.

A file is only ever replaced whole: it is written to a temporary file in the same folder,
flushed and fsync'ed, then renamed over the target (``os.replace``), so a crash while
saving leaves the previous file intact. Loading parses safetensors (never pickle), so a
file cannot run code, and checks a CRC32 of every tensor, so truncation or corruption
raises :class:`CheckpointError` naming the file.

A checkpoint (``save_checkpoint``) holds, in one safetensors file:

- ``model.<name>``: the model's state dict;
- ``optimizer.<i>``: the optimizer state's arrays, with its structure and scalars as JSON in
  the header metadata (key ``optimizer``), so ``optimizer.load_state_dict`` gets back exactly
  what ``optimizer.state_dict()`` gave;
- ``scheduler``: an lr scheduler's state (JSON), when one is passed;
- ``rng``: minigrad's generator state (``mg.get_rng_state()``): dropout masks and DataLoader
  shuffles continue where they stopped;
- ``extra``: the caller's keyword arguments (epoch, history, ...) as JSON.
"""
import json
import os
import tempfile
import zlib

import numpy as np

from . import random as _random
from .backend import CPU, device as _device, to_device
from .tensor import Tensor, _wrap

FORMAT = "minigrad"
_CHECKSUM = "minigrad.crc32"


class CheckpointError(RuntimeError):
    """A file that is missing, truncated, corrupted or not what was expected."""


# --- atomic writes -------------------------------------------------------------------------
def _write_bytes(f, data):
    f.write(data)


def atomic_write(path, data):
    """Write bytes to ``path`` atomically: a temporary file in the same folder, flush, fsync,
    then ``os.replace``. On any failure the temporary file is removed and ``path`` is untouched."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            _write_bytes(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                                   # make the rename itself durable (POSIX)
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


# --- safetensors with a checksum -------------------------------------------------------------
def _host_array(v, name):
    if isinstance(v, Tensor):
        v = v.data
    if not hasattr(v, "__array_interface__") and not hasattr(v, "__cuda_array_interface__"):
        if isinstance(v, (int, float, bool, np.number, np.bool_, list)):
            v = np.asarray(v)
        else:
            raise TypeError(f"cannot save {name!r}: expected a Tensor or an array, found {type(v).__name__}")
    return np.ascontiguousarray(to_device(v, CPU))


def _checksum(arrays):
    crc = 0
    for k in sorted(arrays):
        a = arrays[k]
        crc = zlib.crc32(f"{k}|{a.dtype.str}|{a.shape}".encode(), crc)
        crc = zlib.crc32(memoryview(a).cast("B") if a.size else b"", crc)
    return f"{crc:08x}"


def _serialize(arrays, metadata):
    from safetensors.numpy import save
    meta = {"format": FORMAT, **(metadata or {})}
    for k, v in meta.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"safetensors metadata must map str to str, found {k!r}: {type(v).__name__}")
    meta[_CHECKSUM] = _checksum(arrays)
    return save(arrays, metadata=meta)


def _read(path):
    """(arrays, metadata) from a safetensors file; a clear CheckpointError if it is damaged."""
    from safetensors.numpy import load
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"no such checkpoint file: {path!r}") from None
    try:
        arrays = load(data)
        n = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + n]).get("__metadata__") or {}
    except Exception as e:                          # SafetensorError, JSON, ...
        raise CheckpointError(f"{path!r} is not a readable safetensors file ({len(data)} bytes; it may be "
                              f"truncated or corrupted): {e}") from None
    expected = meta.get(_CHECKSUM)
    if expected is not None and _checksum(arrays) != expected:
        raise CheckpointError(f"{path!r} is corrupted: its tensors do not match the checksum stored "
                              "when it was saved")
    return arrays, meta


def save(state_dict, path, metadata=None):
    """Save a dict of name -> Tensor (or array) to ``path`` as safetensors, atomically.

    metadata: optional dict of str -> str stored in the file's header."""
    arrays = {}
    for k, v in state_dict.items():
        if not isinstance(k, str):
            raise TypeError(f"state dict keys must be strings, found {k!r}")
        arrays[k] = _host_array(v, k)
    atomic_write(path, _serialize(arrays, metadata))


def load(path, device=None):
    """Load a safetensors file into a dict of name -> Tensor (on ``device``, default CPU)."""
    arrays, _ = _read(path)
    dev = _device(device)
    return {k: _wrap(to_device(np.array(a), dev), dev) for k, a in arrays.items()}


def load_metadata(path):
    """The header metadata (str -> str) of a safetensors file."""
    return _read(path)[1]


# --- nested state (optimizer state dicts) <-> arrays + JSON -----------------------------------
def _encode(obj, arrays, prefix):
    """obj with its arrays moved into ``arrays`` (as {"__tensor__": key}); JSON-ready."""
    if isinstance(obj, Tensor) or hasattr(obj, "__array_interface__") and not isinstance(obj, np.generic) \
            or hasattr(obj, "__cuda_array_interface__"):
        key = f"{prefix}{len(arrays)}"
        arrays[key] = _host_array(obj, key)
        return {"__tensor__": key, "kind": "tensor" if isinstance(obj, Tensor) else "array"}
    if isinstance(obj, np.generic):
        return {"__scalar__": obj.item(), "dtype": obj.dtype.str}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            if any(k.startswith("__") for k in obj):
                return {"__items__": [[k, _encode(v, arrays, prefix)] for k, v in obj.items()]}
            return {k: _encode(v, arrays, prefix) for k, v in obj.items()}
        return {"__items__": [[_encode(k, arrays, prefix), _encode(v, arrays, prefix)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays, prefix) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays, prefix) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint: {obj!r}")


def _decode(obj, arrays, device):
    if isinstance(obj, list):
        return [_decode(v, arrays, device) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        a = to_device(np.array(arrays[obj["__tensor__"]]), device)
        return _wrap(a, device) if obj.get("kind") == "tensor" else a
    if "__scalar__" in obj:
        return np.dtype(obj["dtype"]).type(obj["__scalar__"])
    if "__tuple__" in obj:
        return tuple(_decode(v, arrays, device) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_key(_decode(k, arrays, device)): _decode(v, arrays, device) for k, v in obj["__items__"]}
    return {k: _decode(v, arrays, device) for k, v in obj.items()}


def _key(k):
    return tuple(k) if isinstance(k, list) else k


def _dumps(obj):
    return json.dumps(obj, allow_nan=True, separators=(",", ":"))


# --- checkpoints ----------------------------------------------------------------------------
def save_checkpoint(path, model=None, optimizer=None, scheduler=None, **extra):
    """Save everything needed to resume training to ``path`` (one safetensors file, atomically).

    model, optimizer, scheduler: objects with ``state_dict()`` (each optional). extra: anything
    JSON can hold (epoch, history, config...), returned by ``load_checkpoint``. minigrad's RNG
    state is always included."""
    arrays, meta = {}, {"kind": "checkpoint"}
    if model is not None:
        weights = model.state_dict()
        for k, v in weights.items():
            arrays["model." + k] = _host_array(v, k)
        meta["model"] = _dumps(list(weights))
    if optimizer is not None:
        meta["optimizer"] = _dumps(_encode(optimizer.state_dict(), arrays, "optimizer."))
    if scheduler is not None:
        meta["scheduler"] = _dumps(_encode(scheduler.state_dict(), arrays, "scheduler."))
    meta["rng"] = _dumps(_random.get_rng_state())
    try:
        meta["extra"] = _dumps(_encode(extra, arrays, "extra."))
    except TypeError as e:
        raise TypeError(f"save_checkpoint: the extra values must be JSON-like or arrays: {e}") from None
    atomic_write(path, _serialize(arrays, meta))


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, restore_rng=True, device=None):
    """Restore what ``save_checkpoint`` stored into the given objects; returns the extras (a dict).

    The model's weights are loaded strictly (missing or unexpected names raise). Optimizer
    state goes to the model's device (or ``device``). minigrad's RNG state is restored unless
    restore_rng=False."""
    arrays, meta = _read(path)
    if meta.get("kind") != "checkpoint":
        raise CheckpointError(f"{os.fspath(path)!r} is a plain safetensors file, not a checkpoint written "
                              "by mg.save_checkpoint (load it with mg.load)")
    try:
        if device is None and model is not None:
            params = list(model.parameters())
            device = params[0].device if params else CPU
        dev = _device(device)
        if model is not None:
            if "model" not in meta:
                raise CheckpointError(f"{os.fspath(path)!r} holds no model weights")
            weights = {k[len("model."):]: _wrap(a, CPU) for k, a in arrays.items() if k.startswith("model.")}
            model.load_state_dict(weights)
        if optimizer is not None:
            if "optimizer" not in meta:
                raise CheckpointError(f"{os.fspath(path)!r} holds no optimizer state")
            optimizer.load_state_dict(_decode(json.loads(meta["optimizer"]), arrays, dev))
        if scheduler is not None:
            if "scheduler" not in meta:
                raise CheckpointError(f"{os.fspath(path)!r} holds no lr scheduler state")
            scheduler.load_state_dict(_decode(json.loads(meta["scheduler"]), arrays, dev))
        if restore_rng and "rng" in meta:
            _random.set_rng_state(json.loads(meta["rng"]))
        return _decode(json.loads(meta.get("extra", "{}")), arrays, dev)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{os.fspath(path)!r} has damaged metadata: {e}") from None
