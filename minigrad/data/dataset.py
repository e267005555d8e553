"""Dataset (the map-style protocol) and TensorDataset (aligned arrays sharing their first axis)."""
from ..backend import get_array_module


class Dataset:
    """A map-style data set: ``len(ds)`` samples, ``ds[i]`` the i-th one (usually a tuple)."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")  # abstract

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")  # abstract


def _raw(a, name):
    """A Tensor's array, or a NumPy/CuPy array as is; lists become NumPy arrays."""
    data = getattr(a, "data", None)
    if data is not None and hasattr(a, "requires_grad"):      # a minigrad Tensor
        return data
    if hasattr(a, "__array_interface__") or hasattr(a, "__cuda_array_interface__"):
        return a
    import numpy as np
    try:
        return np.asarray(a)
    except (TypeError, ValueError) as e:
        raise TypeError(f"TensorDataset: {name} is a {type(a).__name__}, expected a Tensor or an array: {e}") from None


class TensorDataset(Dataset):
    """Samples from arrays (Tensors, NumPy or CuPy arrays) that share their first axis.

    ``ds[i]`` is a tuple with row i of each array. DataLoader gathers whole batches
    from a TensorDataset with one fancy index per array (``arrays[k][indices]``)."""

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        self.arrays = tuple(_raw(a, f"argument {i}") for i, a in enumerate(arrays))
        for i, a in enumerate(self.arrays):
            if a.ndim == 0:
                raise ValueError(f"TensorDataset: argument {i} is a scalar; every array needs a first "
                                 "(sample) axis")
        n = len(self.arrays[0])
        sizes = [len(a) for a in self.arrays]
        if any(s != n for s in sizes):
            raise ValueError(f"TensorDataset: the arrays have different numbers of samples "
                             f"(first-axis sizes {sizes}); every array needs one row per sample")

    @property
    def tensors(self):
        """The arrays (as PyTorch's attribute name)."""
        return self.arrays

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)

    def __len__(self):
        return len(self.arrays[0])

    def __repr__(self):
        shapes = ", ".join(f"{tuple(a.shape)} {a.dtype}" for a in self.arrays)
        xp = get_array_module(self.arrays[0]).__name__
        return f"TensorDataset({len(self)} samples: {shapes}; {xp})"
