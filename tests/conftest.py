import numpy as np
import pytest

import minigrad as mg

try:
    import torch
except ImportError:  # the PyTorch comparisons skip themselves
    torch = None

CUDA = mg.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda,
                                              pytest.mark.skipif(not CUDA, reason="no CUDA device")])]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_collection_modifyitems(config, items):
    # tests that ask for CUDA in their name get the marker too, so `-m cuda` selects every GPU case
    for item in items:
        if "cuda" in item.keywords and not CUDA:
            item.add_marker(pytest.mark.skipif(True, reason="no CUDA device"))
