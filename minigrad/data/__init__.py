"""Data: Dataset, TensorDataset, Subset, random_split, DataLoader, scikit-learn's bundled data sets, and
MNIST / Fashion-MNIST."""
from .dataloader import DataLoader, default_collate  # noqa: F401
from .dataset import Dataset, Subset, TensorDataset, random_split  # noqa: F401
from .datasets import (load_digits, load_fashion_mnist, load_iris, load_mnist, read_idx, standardize,  # noqa: F401
                       train_test_split)
from ..distributed.sampler import DistributedSampler  # noqa: F401
