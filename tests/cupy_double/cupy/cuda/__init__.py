"""cupy.cuda of the test double: two fake devices, eager streams and events."""
import threading

from . import compiler, nccl, runtime  # noqa: F401  (cupy.cuda.nccl, cupy.cuda.runtime as in CuPy)

_tls = threading.local()  # the current device is per host thread, as in CUDA


def _current():
    return getattr(_tls, "device", 0)


def _set_current(i):
    runtime._check_device(i)
    _tls.device = i


class Device:
    """cupy.cuda.Device: `with Device(n):` makes n current and restores the previous one after."""

    def __init__(self, device=None):
        if device is None:
            device = _current()
        elif isinstance(device, Device):
            device = device.id
        runtime._check_device(int(device))
        self.id = int(device)
        self._saved = []

    def __enter__(self):
        self._saved.append(_current())
        _set_current(self.id)
        return self

    def __exit__(self, *exc):
        _set_current(self._saved.pop())

    def use(self):
        _set_current(self.id)

    def synchronize(self):
        pass  # everything ran eagerly

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __int__(self):
        return self.id

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


class Event:
    """Recorded after eager work: always complete."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        pass

    def record(self, stream=None):
        pass

    def synchronize(self):
        pass

    @property
    def done(self):
        return True

    def query(self):
        return True


class Stream:
    """An eager stream: work is done when it is queued. `with stream:` makes it current."""
    null = None

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=0):
        self.device_id = _current()
        self.ptr = 0 if null else id(self)
        self._saved = []

    def __enter__(self):
        self._saved.append(get_current_stream())
        _tls.stream = self
        return self

    def __exit__(self, *exc):
        _tls.stream = self._saved.pop()

    def use(self):
        _tls.stream = self
        return self

    def record(self, event=None):
        event = event or Event()
        event.record(self)
        return event

    def wait_event(self, event):
        pass

    def synchronize(self):
        pass

    @property
    def done(self):
        return True


Stream.null = Stream(null=True)


def get_current_stream(device_id=None):
    return getattr(_tls, "stream", None) or Stream.null
