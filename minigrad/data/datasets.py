"""Small data sets bundled with scikit-learn (no network), and the usual preprocessing."""
import numpy as np


def _sklearn_datasets():
    try:
        from sklearn import datasets
    except ImportError:
        raise ImportError("minigrad.data's bundled data sets come from scikit-learn, which is not "
                          "installed; install it with `pip install minigrad[data]` "
                          "(or `pip install scikit-learn`)") from None
    return datasets


def _xy(bunch):
    return np.ascontiguousarray(bunch.data, dtype=np.float32), np.ascontiguousarray(bunch.target, dtype=np.int64)


def load_digits():
    """8x8 handwritten digits: X (1797, 64) float32 with values 0..16, y (1797,) int64 in 0..9."""
    return _xy(_sklearn_datasets().load_digits())


def load_iris():
    """Iris flowers: X (150, 4) float32, y (150,) int64 in 0..2."""
    return _xy(_sklearn_datasets().load_iris())


def train_test_split(x, y, test_size=0.2, seed=0, stratify=True):
    """Split NumPy arrays into (x_train, x_test, y_train, y_test), reproducibly from ``seed``.

    test_size: a fraction (0 < f < 1) or a number of samples. stratify: keep each class's share
    in both parts (for integer class labels y)."""
    x, y = np.asarray(x), np.asarray(y)
    n = len(x)
    if len(y) != n:
        raise ValueError(f"train_test_split: x has {n} samples but y has {len(y)}")
    n_test = int(round(test_size * n)) if isinstance(test_size, float) else int(test_size)
    if not 0 < n_test < n:
        raise ValueError(f"train_test_split: test_size={test_size!r} leaves {n_test} of {n} samples "
                         "for testing; both parts need at least one")
    rng = np.random.default_rng(seed)
    if stratify and y.ndim == 1 and y.dtype.kind in "iub":
        test = []
        classes = np.unique(y)
        for c in classes:                      # each class's share, largest remainders first
            members = rng.permutation(np.flatnonzero(y == c))
            test.append(members[:int(np.floor(len(members) * n_test / n))])
        test = np.concatenate(test)
        rest = rng.permutation(np.setdiff1d(np.arange(n), test))
        test = np.concatenate([test, rest[:n_test - len(test)]])
    else:
        test = rng.permutation(n)[:n_test]
    train_mask = np.ones(n, bool)
    train_mask[test] = False
    train = rng.permutation(np.flatnonzero(train_mask))
    test = rng.permutation(test)
    return x[train], x[test], y[train], y[test]


def standardize(x_train, *others, eps=1e-8):
    """Scale features to zero mean and unit variance using x_train's statistics (constant features
    are only centred). Returns the transformed x_train followed by each of ``others``."""
    x_train = np.asarray(x_train)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std < eps, 1, std).astype(x_train.dtype)
    out = [((np.asarray(a) - mean) / std).astype(x_train.dtype) for a in (x_train, *others)]
    return out[0] if not others else tuple(out)
