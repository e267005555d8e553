"""Saving and loading: safetensors files, written atomically, and full training checkpoints.

A file is only ever replaced whole: it is written to a temporary file in the same folder,
flushed and fsync'ed, then renamed over the target (``os.replace``), so a crash while
saving leaves the previous file intact (and the next save to that path removes the dead
writer's temporary file). Loading parses safetensors (never pickle), so a file cannot run
code, and checks the SHA-256 of every byte of the file, header included, so truncation or
any change raises :class:`CheckpointError` naming the file.

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
import errno
import json
import os
import stat
import tempfile
import zlib

import numpy as np

from . import random as _random
from .backend import CPU, device as _device, to_device
from .tensor import Tensor, _wrap

FORMAT = "minigrad"
_CHECKSUM = "minigrad.sha256"    # of the whole file, taken with this value set to _UNSET
_UNSET = "0" * 64
_OLD_CHECKSUM = "minigrad.crc32"  # files of earlier versions: a CRC32 of the tensors only


class CheckpointError(RuntimeError):
    """A file that is missing, truncated, corrupted or not what was expected."""


def _name(path):
    """path (str, bytes or os.PathLike) as a str, for messages and os calls alike."""
    return os.fsdecode(os.fspath(path))


# --- atomic writes -------------------------------------------------------------------------
def _write_bytes(f, data):
    f.write(data)


def _destination(path):
    """The regular file a save to `path` replaces: path itself, or the file a symlink (chain)
    points to, so that the link stays and its target is what changes. Anything else that is
    not a regular file (a folder, a FIFO, a device) is refused rather than replaced."""
    real = os.path.realpath(path)
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return real
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "cannot save over a folder", path)
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"refusing to save to {path!r}: it is not a regular file (mode "
                              f"{stat.filemode(mode)}), and saving replaces the file whole")
    return real


def _temp_prefix(base):
    return f".{base}."


def _host():
    import socket  # here, not at import: `import minigrad` stays fast
    return socket.gethostname()


def _remove_stale_temps(folder, base):
    """Delete temporary files of earlier saves to the same file whose writer is gone (killed
    mid-write). A temporary file's name carries its writer's host and pid."""
    prefix, host = _temp_prefix(base), _host()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for n in names:
        if not (n.startswith(prefix) and n.endswith(".tmp")):
            continue
        parts = n[len(prefix):-len(".tmp")].rsplit(".", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            try:
                os.unlink(os.path.join(folder, n))
            except OSError:
                pass
        except OSError:  # alive, owned by someone else
            pass


def atomic_write(path, data):
    """Write bytes to ``path`` atomically: a temporary file in the same folder, flush, fsync,
    then ``os.replace``. On any failure the temporary file is removed and ``path`` is untouched.
    A symlink is written through (its target is replaced atomically); other files that are not
    regular files are refused."""
    path = _destination(_name(path))
    folder, base = os.path.split(path)
    _remove_stale_temps(folder, base)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{_temp_prefix(base)}{_host()}.{os.getpid()}.",
                               suffix=".tmp")
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


# --- safetensors with a checksum of every byte -----------------------------------------------
def _host_array(v, name):
    """A C-contiguous, little-endian NumPy array (0-d stays 0-d) of v, as safetensors stores it."""
    if isinstance(v, Tensor):
        v = v.data
    if not hasattr(v, "__array_interface__") and not hasattr(v, "__cuda_array_interface__"):
        if isinstance(v, (int, float, bool, np.number, np.bool_, list)):
            v = np.asarray(v)
        else:
            raise TypeError(f"cannot save {name!r}: expected a Tensor or an array, found {type(v).__name__}")
    a = to_device(v, CPU)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a if a.flags.c_contiguous else np.array(a, order="C")


def _field(digest):
    return f'"{_CHECKSUM}":"{digest}"'.encode()


def _serialize(arrays, metadata):
    """The safetensors bytes of arrays + metadata, with the SHA-256 of the whole file in the header.

    The digest is taken over the file as written with the digest's own value set to zeros; it
    then replaces those zeros, which has the same length, so no offset moves."""
    import hashlib
    from safetensors.numpy import save
    meta = {"format": FORMAT, **(metadata or {})}
    for k, v in meta.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"safetensors metadata must map str to str, found {k!r}: {type(v).__name__}")
    meta[_CHECKSUM] = _UNSET
    data = bytearray(save(arrays, metadata=meta))
    at = data.index(_field(_UNSET))
    data[at:at + len(_field(_UNSET))] = _field(hashlib.sha256(data).hexdigest())
    return bytes(data)


def _file_digest(data, header, digest):
    """The SHA-256 of the file with the stored digest set back to zeros, or None when the header
    does not hold that digest exactly once."""
    import hashlib
    field = _field(digest)
    at = header.find(field)
    if at < 0 or header.find(field, at + 1) >= 0:
        return None
    at += 8
    h = hashlib.sha256(memoryview(data)[:at])
    h.update(_field(_UNSET))
    h.update(memoryview(data)[at + len(field):])
    return h.hexdigest()


def _old_checksum(arrays):
    crc = 0
    for k in sorted(arrays):
        a = arrays[k]
        crc = zlib.crc32(f"{k}|{a.dtype.str}|{a.shape}".encode(), crc)
        crc = zlib.crc32(memoryview(a).cast("B") if a.size else b"", crc)
    return f"{crc:08x}"


_DTYPES = {"BOOL": "?", "U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "F16": "<f2", "U32": "<u4",
           "I32": "<i4", "F32": "<f4", "U64": "<u8", "I64": "<i8", "F64": "<f8"}


def _array(name, view, path):
    """A safetensors tensor view as a NumPy array; bfloat16 (which NumPy lacks) widens to float32
    exactly, since a bfloat16 is the upper half of the float32 with the same value."""
    dt, shape, raw = view["dtype"], view["shape"], view["data"]
    if dt == "BF16":
        return (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4").reshape(shape)
    if dt not in _DTYPES:
        raise CheckpointError(f"{path!r}: tensor {name!r} has dtype {dt}, which minigrad cannot hold "
                              f"(supported: {', '.join(sorted(_DTYPES))} and BF16, read as float32)")
    return np.frombuffer(raw, _DTYPES[dt]).reshape(shape)


def _read(path):
    """(arrays, metadata) from a safetensors file. A file minigrad wrote must match the SHA-256
    of every byte it was saved with; anything else raises CheckpointError naming the file."""
    from safetensors import deserialize
    path = _name(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"no such checkpoint file: {path!r}") from None
    damaged = (f"{path!r} is not a readable safetensors file ({len(data)} bytes; it may be truncated "
               "or corrupted)")
    try:
        n = int.from_bytes(data[:8], "little")
        header = data[8:8 + n]
        meta = json.loads(header).get("__metadata__") or {}
        if not isinstance(meta, dict):
            raise ValueError("__metadata__ is not a JSON object")
        views = deserialize(data)
    except Exception as e:                          # SafetensorError, JSON, ...
        raise CheckpointError(f"{damaged}: {e}") from None
    digest = meta.get(_CHECKSUM)
    if digest is not None:
        if _file_digest(data, header, digest) != digest:
            raise CheckpointError(f"{path!r} is corrupted: its bytes do not match the SHA-256 stored "
                                  "when it was saved")
    elif meta.get("format") == FORMAT and _OLD_CHECKSUM not in meta:
        raise CheckpointError(f"{damaged}: its header lost the checksum minigrad writes")
    arrays = {k: _array(k, v, path) for k, v in views}
    if digest is None and _OLD_CHECKSUM in meta and _old_checksum(arrays) != meta[_OLD_CHECKSUM]:
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
    """Load a safetensors file into a dict of name -> Tensor (on ``device``, default CPU).
    bfloat16 tensors (from other frameworks) come back as float32."""
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


def _parts(path, arrays, meta, wanted, dev):
    """Everything load_checkpoint restores, decoded before anything is changed."""
    for name, obj in wanted.items():
        if obj is not None and name not in meta:
            raise CheckpointError(f"{path!r} holds no {'lr scheduler' if name == 'scheduler' else name} "
                                  f"{'weights' if name == 'model' else 'state'}")
    try:
        parts = {}
        if wanted["model"] is not None:
            parts["model"] = {k[len("model."):]: _wrap(a, CPU) for k, a in arrays.items() if k.startswith("model.")}
        for name in ("optimizer", "scheduler"):
            if wanted[name] is not None:
                parts[name] = _decode(json.loads(meta[name]), arrays, dev)
        parts["rng"] = json.loads(meta["rng"]) if "rng" in meta else None
        parts["extra"] = _decode(json.loads(meta.get("extra", "{}")), arrays, dev)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path!r} has damaged metadata: {type(e).__name__}: {e}") from None
    return parts


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, restore_rng=True, device=None):
    """Restore what ``save_checkpoint`` stored into the given objects; returns the extras (a dict).

    All or nothing: the file is checked and decoded whole first, and if restoring any part fails
    (weights that do not fit the model, optimizer state that does not fit the optimizer), the
    objects are left as they were and the error is raised. The model's weights are loaded
    strictly (missing or unexpected names raise). Optimizer state goes to the model's device (or
    ``device``). minigrad's RNG state is restored unless restore_rng=False."""
    path = _name(path)
    arrays, meta = _read(path)
    if meta.get("kind") != "checkpoint":
        raise CheckpointError(f"{path!r} is a plain safetensors file, not a checkpoint written "
                              "by mg.save_checkpoint (load it with mg.load)")
    if device is None and model is not None:
        params = list(model.parameters())
        device = params[0].device if params else CPU
    dev = _device(device)
    parts = _parts(path, arrays, meta, {"model": model, "optimizer": optimizer, "scheduler": scheduler}, dev)
    # The optimizer and scheduler go first, each with a copy of its state to put back; the model
    # checks every entry before it copies any, so once it has loaded nothing else can fail.
    undo = []
    try:
        for obj, name in ((optimizer, "optimizer"), (scheduler, "scheduler")):
            if obj is not None:
                undo.append((obj, _copy(obj.state_dict())))
                obj.load_state_dict(parts[name])
        if model is not None:
            model.load_state_dict(parts["model"])
    except BaseException:
        for obj, state in reversed(undo):
            obj.load_state_dict(state)
        raise
    if restore_rng and parts["rng"] is not None:
        _random.set_rng_state(parts["rng"])
    return parts["extra"]


def _copy(state):
    """A deep copy of a state dict whose arrays may be views of the live state."""
    if isinstance(state, Tensor):
        return _wrap(state.data.copy(), state.device)
    if hasattr(state, "__array_interface__") or hasattr(state, "__cuda_array_interface__"):
        return state.copy()
    if isinstance(state, dict):
        return {k: _copy(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_copy(v) for v in state)
    return state
