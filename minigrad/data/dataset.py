"""Dataset (the map-style protocol), TensorDataset (aligned arrays sharing their first axis), Subset
and random_split."""
import itertools
import math
import numbers
import warnings

import numpy as np

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


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order (PyTorch's Subset).

    A DataLoader over a Subset of a TensorDataset gathers whole batches from the parent's arrays."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __len__(self):
        return len(self.indices)

    def __repr__(self):
        return f"Subset({len(self)} of {len(self.dataset)} samples)"


def random_split(dataset, lengths, seed=None):
    """Split ``dataset`` into non-overlapping Subsets of the given ``lengths``, as PyTorch's random_split.

    lengths: counts that add up to len(dataset), or fractions that add up to 1 (each subset gets
    floor(fraction * n) samples and the remainder is handed out one by one, round-robin from the
    first). seed: the permutation comes from numpy.random.default_rng(seed); without one, from
    minigrad's generator (``mg.manual_seed``), as PyTorch draws from its default generator.
    Arrays (or a tuple of them) are wrapped in a TensorDataset first.
    """
    if not isinstance(dataset, Dataset):
        dataset = TensorDataset(*(dataset if isinstance(dataset, (tuple, list)) else (dataset,)))
    n = len(dataset)
    lengths = list(lengths)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        counts = []
        for i, frac in enumerate(lengths):
            if not 0 <= frac <= 1:
                raise ValueError(f"Fraction at index {i} is not between 0 and 1")
            counts.append(math.floor(n * frac))
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        for i, count in enumerate(counts):
            if count == 0:
                warnings.warn(f"Length of split at index {i} is 0. This might result in an empty dataset.",
                              stacklevel=2)
        lengths = counts
    elif any(not isinstance(k, numbers.Integral) or k < 0 for k in lengths):
        raise ValueError(f"random_split: lengths must be non-negative counts or fractions that sum to 1, "
                         f"found {lengths}")
    if sum(lengths) != n:
        raise ValueError(f"Sum of input lengths does not equal the length of the input dataset! "
                         f"(lengths {lengths} sum to {sum(lengths)}, the dataset has {n} samples)")
    if seed is None:
        from .. import random as _random
        order = _random.generator().permutation(n)
    else:
        order = np.random.default_rng(seed).permutation(n)
    return [Subset(dataset, order[end - k:end].tolist())
            for end, k in zip(itertools.accumulate(lengths), lengths)]
