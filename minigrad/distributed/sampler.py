"""DistributedSampler: each rank's share of the sample indices, equal in size on every rank."""
from __future__ import annotations

import math

import numpy as np


class DistributedSampler:
    """Iterable of the sample indices this rank trains on; pass it as ``DataLoader(..., sampler=)``.

    Every rank gets ``len(sampler)`` indices, the same number on every rank, so every
    rank runs the same number of batches. With ``drop_last=False`` the shuffled index
    list is padded by wrapping around to a multiple of ``num_replicas`` (a few samples
    are seen twice per epoch); with ``drop_last=True`` the tail is dropped instead.
    Shuffling uses ``seed + epoch``: call ``set_epoch(epoch)`` before each epoch so
    the order changes, identically on all ranks. Rank r takes positions r, r + R, ...
    of the (shuffled, padded) list, as in PyTorch.
    """

    def __init__(self, dataset_or_length, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        n = dataset_or_length if isinstance(dataset_or_length, (int, np.integer)) else len(dataset_or_length)
        if num_replicas is None or rank is None:
            from . import get_rank, get_world_size
            num_replicas = get_world_size() if num_replicas is None else num_replicas
            rank = get_rank() if rank is None else rank
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be at least 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas - 1}], got {rank}")
        if n < 1:
            raise ValueError("DistributedSampler needs a non-empty data set")
        if drop_last and n < num_replicas:
            raise ValueError(f"drop_last=True with {n} samples and {num_replicas} ranks leaves no "
                             "sample for any rank")
        self.length = int(n)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.epoch = 0
        self.num_samples = n // num_replicas if drop_last else math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int):
        """Reshuffle for this epoch (the same permutation on every rank)."""
        self.epoch = int(epoch)

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, an int64 array of length ``len(self)``."""
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(self.length)
        else:
            order = np.arange(self.length)
        if self.total_size > self.length:
            order = np.resize(order, self.total_size)      # wraps around, as many times as needed
        else:
            order = order[:self.total_size]
        return order[self.rank:self.total_size:self.num_replicas].astype(np.int64)

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self):
        return (f"DistributedSampler(length={self.length}, num_replicas={self.num_replicas}, "
                f"rank={self.rank}, shuffle={self.shuffle}, seed={self.seed}, "
                f"drop_last={self.drop_last})")
