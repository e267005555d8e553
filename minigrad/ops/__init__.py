"""The differentiable primitives. Each is a Function with forward and backward side by side."""
from . import dtypes  # noqa: F401
from .dtypes import result_type, promote_types  # noqa: F401
from .elementwise import (add, sub, mul, div, pow, pow_scalar, neg, exp, log, sqrt, abs_, clip,  # noqa: F401
                          compare, bitwise, invert, where)
from .nn import relu, sigmoid, tanh  # noqa: F401  (rows of the activation table, kernels.ACTIVATIONS)
from .reduce import sum, mean, max, min, amax, amin, softmax, log_softmax  # noqa: F401
from .movement import (expand, broadcast, reshape, flatten, transpose, permute, getitem, index_put,  # noqa: F401
                       cat, stack, cast, to)
from .linalg import matmul  # noqa: F401
