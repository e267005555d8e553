"""mg.nn: Module, Parameter, layers, losses; mg.nn.functional, mg.nn.init and mg.nn.utils."""
from . import functional, init, utils  # noqa: F401
from .module import Module, Parameter  # noqa: F401
from .modules import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Dropout, Flatten, GELU,  # noqa: F401
                      Identity, Linear, MSELoss, ReLU, Sequential, Sigmoid, Softmax, Tanh)
