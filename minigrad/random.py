"""minigrad's random number generator: one NumPy Generator behind manual_seed, randn, init and dropout."""
import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed):
    """Seed minigrad's generator (and CuPy's, when CuPy is in use)."""
    global _rng
    _rng = np.random.default_rng(seed)
    from . import backend
    if backend._cupy is not None:
        backend._cupy.random.seed(seed)
    return _rng


def generator():
    return _rng


def get_rng_state():
    """The generator's state as a JSON-serialisable dict."""
    return _rng.bit_generator.state


def set_rng_state(state):
    _rng.bit_generator.state = state
