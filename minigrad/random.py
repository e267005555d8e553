"""minigrad's random number generator: one NumPy Generator behind manual_seed, randn, init and dropout.

Made at first use: importing numpy.random is a sixth of `import minigrad`'s time."""
import numpy as np

_rng = None


def manual_seed(seed):
    """Seed minigrad's generator (and CuPy's, when CuPy is in use)."""
    global _rng
    _rng = np.random.default_rng(seed)
    from . import backend
    if backend._cupy is not None:
        backend._cupy.random.seed(seed)
    return _rng


def generator():
    global _rng
    if _rng is None:
        _rng = np.random.default_rng()
    return _rng


def get_rng_state():
    """The generator's state as a JSON-serialisable dict."""
    return generator().bit_generator.state


def set_rng_state(state):
    generator().bit_generator.state = state
