"""Data: Dataset, TensorDataset, DataLoader, and the small data sets bundled with scikit-learn."""
from .dataloader import DataLoader, default_collate  # noqa: F401
from .dataset import Dataset, TensorDataset  # noqa: F401
from .datasets import load_digits, load_iris, standardize, train_test_split  # noqa: F401
from ..distributed.sampler import DistributedSampler  # noqa: F401
