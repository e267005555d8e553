"""minigrad: a small, fast reverse-mode autodiff framework with PyTorch's API on NumPy and CuPy."""
from . import autograd, cuda, ops  # noqa: F401
from .autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401
from .backend import Device, backend_info, device, get_num_threads, set_num_threads  # noqa: F401
from .random import get_rng_state, manual_seed, set_rng_state  # noqa: F401
from .tensor import (Tensor, arange, bool_, cat, empty, eye, float16, float32, float64, full, int32,  # noqa: F401
                     int64, matmul, ones, ones_like, rand, randn, stack, tensor, where, zeros, zeros_like)
from .ops import softmax, log_softmax, relu, sigmoid, tanh, exp, log, sqrt  # noqa: F401
from .tensor import allclose, from_numpy, full_like, linspace, randperm  # noqa: F401
from .functions import (abs, argmax, argmin, clamp, clip, clone, logsumexp, max, mean, min,  # noqa: F401,A004
                        norm, std, sum, var)
from . import callbacks, data, distributed, nn, optim  # noqa: F401
from .io import load, load_checkpoint, save, save_checkpoint  # noqa: F401
from .train import Trainer  # noqa: F401

bool = bool_  # noqa: A001  (torch.bool)
__version__ = "0.1.0"
