"""cupy.cuda.runtime of the test double."""
DEVICE_COUNT = 2


class CUDARuntimeError(RuntimeError):
    pass


def _check_device(i):
    if not 0 <= i < DEVICE_COUNT:
        raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")


def getDeviceCount():
    return DEVICE_COUNT


def getDevice():
    from . import _current
    return _current()


def setDevice(i):
    from . import _set_current
    _set_current(i)


def runtimeGetVersion():
    return 13000


def driverGetVersion():
    return 13000


def getDeviceProperties(i):
    _check_device(i)
    return {"name": b"CuPy test double (NumPy, no GPU)", "major": 9, "minor": 0,
            "totalGlobalMem": 1 << 34, "multiProcessorCount": 1}