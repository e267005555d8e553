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


# --- MNIST and Fashion-MNIST: the IDX files, read from a folder, downloaded once when missing --------
# SHA-256 of each gzipped file as its publishers distribute it (the same files on every mirror).
_IDX_SETS = {
    "mnist": {
        "title": "MNIST",
        "mirrors": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "https://storage.googleapis.com/cvdf-datasets/mnist/",
                    "http://yann.lecun.com/exdb/mnist/"),
        "sha256": {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    },
    "fashion_mnist": {
        "title": "Fashion-MNIST",
        "mirrors": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"),
        "sha256": {
            "train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
            "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
            "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
            "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
        },
    },
}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def default_root():
    """Where load_mnist and load_fashion_mnist look for (and download) their files: ~/.cache/minigrad."""
    import os
    from pathlib import Path
    return Path(os.path.expanduser("~")) / ".cache" / "minigrad"


def read_idx(path):
    """An IDX file (gzipped when its name ends in .gz) as a NumPy array of its shape and type."""
    import gzip
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (its first bytes are {raw[:4]!r}, expected 0x00 0x00, a type "
                         "code and the number of dimensions)")
    ndim, dtype = raw[3], np.dtype(_IDX_DTYPES[raw[2]])
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    need = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != need:
        raise ValueError(f"{path}: the header says shape {shape} of {dtype} ({need} bytes with the header), "
                         f"the file has {len(raw)} bytes (truncated or corrupted; delete it to download it again)")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape)


def _download(urls, dest, sha256):
    """Fetch ``dest`` from the first of ``urls`` that answers with the right SHA-256 (progress bar on
    stderr); the file appears in place only once verified. Raises RuntimeError with every failure."""
    import hashlib
    import os
    import sys
    import tempfile
    import urllib.request
    from tqdm.auto import tqdm
    failures = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
                size = response.headers.get("Content-Length")
                with tqdm(total=int(size) if size else None, unit="B", unit_scale=True, unit_divisor=1024,
                          desc=dest.name, file=sys.stderr, leave=False, disable=None) as bar:   # None: tty only
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
            if digest.hexdigest() != sha256:
                failures.append(f"{url}: SHA-256 {digest.hexdigest()}, expected {sha256}")
                continue
            os.replace(tmp, dest)
            return
        except OSError as e:          # URLError, HTTPError, timeouts, a full disk
            failures.append(f"{url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError(f"could not download {dest.name}:\n  " + "\n  ".join(failures))


def _load_idx_set(name, root, train, download):
    from pathlib import Path
    spec = _IDX_SETS[name]
    folder = Path(root if root is not None else default_root()).expanduser() / name
    prefix = "train" if train else "t10k"
    arrays = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        gz = f"{prefix}-{kind}.gz"
        found = next((p for p in (folder / gz, folder / gz[:-3]) if p.is_file()), None)
        if found is None:
            where = (f"put {gz} (gzipped or not) and the other {spec['title']} IDX files in {folder}, from one of "
                     f"{', '.join(spec['mirrors'])}")
            if not download:
                raise RuntimeError(f"{spec['title']} not found: {folder / gz} is missing and download=False; "
                                   f"use download=True or {where}")
            folder.mkdir(parents=True, exist_ok=True)
            try:
                _download([m + gz for m in spec["mirrors"]], folder / gz, spec["sha256"][gz])
            except RuntimeError as e:
                raise RuntimeError(f"{spec['title']}: {e}\nTo use the data offline, {where}") from None
            found = folder / gz
        arrays.append(read_idx(found))
    images, labels = arrays
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{spec['title']} in {folder}: expected images (N, rows, cols) and N labels, found "
                         f"images {images.shape} and labels {labels.shape}")
    x = images.reshape(len(images), -1).astype(np.float32)
    x /= 255.0
    return x, labels.astype(np.int64)


def load_mnist(root=None, train=True, download=True):
    """MNIST handwritten digits: X (N, 784) float32 in [0, 1], y (N,) int64 in 0..9; N = 60000 for the
    training set (train=True), 10000 for the test set.

    Reads the IDX files (train-images-idx3-ubyte.gz and friends, gzipped or not) from
    ``root/mnist`` (root defaults to ~/.cache/minigrad). Missing files are downloaded there once,
    with a progress bar, and kept only if their SHA-256 matches the published files; files already
    there are read as they are. Offline, or with download=False, a missing file is a RuntimeError
    that says where to put it."""
    return _load_idx_set("mnist", root, train, download)


def load_fashion_mnist(root=None, train=True, download=True):
    """Fashion-MNIST (Zalando's clothing images, MNIST's format and sizes): X (N, 784) float32 in
    [0, 1], y (N,) int64 in 0..9, read from (or downloaded to) ``root/fashion_mnist``; as load_mnist."""
    return _load_idx_set("fashion_mnist", root, train, download)
