"""mg.nn: Module, Parameter, layers, losses; mg.nn.functional, mg.nn.init and mg.nn.utils."""
from . import functional, init, utils  # noqa: F401
from .module import Module, Parameter  # noqa: F401
from .modules import (BCELoss, BCEWithLogitsLoss, BatchNorm1d, CrossEntropyLoss, Dropout, ELU,  # noqa: F401
                      Embedding, Flatten, GELU, Identity, LayerNorm, LeakyReLU, Linear, ModuleDict, ModuleList,
                      MSELoss, NLLLoss, ReLU, Sequential, Sigmoid, SiLU, Softmax, Softplus, Tanh)
