"""mg.cuda: is a GPU usable, and how many."""
from .backend import cuda_device_count as device_count, cuda_is_available as is_available, synchronize  # noqa: F401
