"""DataLoader: batches of Tensors from a Dataset, with reproducible shuffling."""
import numbers

import numpy as np

from .. import random as _random
from ..backend import device as _device, device_of, get_array_module, to_device
from ..tensor import Tensor, _wrap
from .dataset import Dataset, Subset, TensorDataset


class DataLoader:
    """Iterate over ``dataset`` in batches; each batch is a tuple of Tensors (one per field).

    dataset: a Dataset, or Tensors / NumPy arrays (one, or a tuple of them), which are
        wrapped in a TensorDataset. Batches of a TensorDataset are gathered with one fancy
        index per array, never sample by sample.
    shuffle: a new order every epoch. With ``seed`` the order of epoch e is a function of
        (seed, e) only; without one it is drawn from minigrad's generator (``mg.manual_seed``,
        saved in checkpoints), as PyTorch draws from its global generator.
    sampler: an iterable of indices (e.g. DistributedSampler) instead of shuffle.
    dtype: cast floating-point fields to this dtype; device: put batches there. Both are
        applied to a TensorDataset's arrays once, not per batch.

    ``set_epoch(e)``, ``state_dict()`` and ``load_state_dict()`` make the order resumable.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None, sampler=None,
                 dtype=None, device=None, collate_fn=None):
        if not isinstance(dataset, Dataset):
            arrays = dataset if isinstance(dataset, (tuple, list)) else (dataset,)
            dataset = TensorDataset(*arrays)
        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if shuffle and sampler is not None:
            raise ValueError("DataLoader: pass either shuffle=True or a sampler (which decides the order "
                             "itself), not both")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.drop_last, self.sampler = bool(shuffle), bool(drop_last), sampler
        self.seed = None if seed is None else int(seed)
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.device = None if device is None else _device(device)
        self.collate_fn = collate_fn or default_collate
        self.epoch = 0
        self._arrays = None

    # --- order ----------------------------------------------------------------------------
    def set_epoch(self, epoch):
        """The next iteration uses epoch ``epoch``'s order (and the sampler's, if it has set_epoch)."""
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def state_dict(self):
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state):
        self.seed = state.get("seed", self.seed)
        self.set_epoch(state["epoch"])

    def _order(self):
        """This epoch's sample indices (an int64 array), or None for 0..n-1 in order."""
        if self.sampler is not None:
            idx = self.sampler.indices() if hasattr(self.sampler, "indices") else list(self.sampler)
            return np.asarray(idx, dtype=np.int64)
        if not self.shuffle:
            return None
        rng = _random.generator() if self.seed is None else np.random.default_rng([self.seed, self.epoch])
        return rng.permutation(len(self.dataset))

    def __len__(self):
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    # --- batches --------------------------------------------------------------------------
    def _convert(self, a):
        if self.device is not None:
            a = to_device(a, self.device)
        if self.dtype is not None and a.dtype.kind == "f" and a.dtype != self.dtype:
            a = a.astype(self.dtype)
        return a

    def __iter__(self):
        order = self._order()
        self.epoch += 1
        n = len(self.dataset) if order is None else len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        if isinstance(self.dataset, TensorDataset):
            return self._iter_arrays(self.dataset, order, stop)
        if isinstance(self.dataset, Subset) and isinstance(self.dataset.dataset, TensorDataset):
            picked = np.asarray(self.dataset.indices, dtype=np.int64)      # gather from the parent's arrays
            return self._iter_arrays(self.dataset.dataset, picked if order is None else picked[order], stop)
        return self._iter_samples(order, stop)

    def _iter_arrays(self, dataset, order, stop):
        if self._arrays is None:
            self._arrays = [self._convert(a) for a in dataset.arrays]
        arrays, bs = self._arrays, self.batch_size
        devices = [device_of(a) for a in arrays]
        orders = {}
        if order is not None:               # one index array per array module (NumPy / CuPy)
            for a in arrays:
                xp = get_array_module(a)
                if xp not in orders:
                    orders[xp] = order if xp is np else xp.asarray(order)
        keys = [orders.get(get_array_module(a)) for a in arrays]
        for start in range(0, stop, bs):
            end = min(start + bs, stop)
            if order is None:
                yield tuple(_wrap(a[start:end], d) for a, d in zip(arrays, devices))
            else:
                yield tuple(_wrap(a[k[start:end]], d) for a, k, d in zip(arrays, keys, devices))

    def _iter_samples(self, order, stop):
        for start in range(0, stop, self.batch_size):
            idx = range(start, min(start + self.batch_size, stop))
            batch = self.collate_fn([self.dataset[int(i if order is None else order[i])] for i in idx])
            yield self._convert_batch(batch)

    def _convert_batch(self, batch):
        if isinstance(batch, Tensor):
            return _wrap(self._convert(batch.data), self.device or batch.device) if (
                self.device is not None or self.dtype is not None) else batch
        if isinstance(batch, (tuple, list)):
            return tuple(self._convert_batch(b) for b in batch)
        return batch

    def __repr__(self):
        return (f"DataLoader({len(self.dataset)} samples, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, {len(self)} batches)")


def default_collate(samples):
    """Stack a list of samples into a batch: tuples field by field, arrays/Tensors/numbers along a
    new first axis, as Tensors."""
    first = samples[0]
    if isinstance(first, (tuple, list)):
        return tuple(default_collate([s[i] for s in samples]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: default_collate([s[k] for s in samples]) for k in first}
    if isinstance(first, Tensor):
        xp = get_array_module(first.data)
        return _wrap(xp.stack([s.data for s in samples]), first.device)
    if hasattr(first, "__cuda_array_interface__"):
        xp = get_array_module(first)
        return _wrap(xp.stack(samples), device_of(first))
    arr = np.asarray(samples)
    if arr.dtype == np.float64 and isinstance(first, float):
        arr = arr.astype(np.float32)            # Python floats -> float32, as mg.tensor
    return _wrap(arr, device_of(arr))
