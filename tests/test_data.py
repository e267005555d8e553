"""mg.data: TensorDataset, DataLoader (batching, shuffling, resumable order, samplers), bundled data sets."""
import sys

import numpy as np
import pytest

import minigrad as mg
from minigrad.data import DataLoader, Dataset, DistributedSampler, TensorDataset


def _xy(n=10):
    return np.arange(n * 3, dtype=np.float64).reshape(n, 3), np.arange(n, dtype=np.int64)


def test_tensor_dataset_accepts_tensors_and_arrays():
    x, y = _xy()
    ds = TensorDataset(mg.tensor(x), y)
    assert len(ds) == 10
    xi, yi = ds[3]
    np.testing.assert_array_equal(xi, x[3])
    assert yi == 3
    assert "10 samples" in repr(ds)


def test_tensor_dataset_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match=r"different numbers of samples.*\[10, 9\]"):
        TensorDataset(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(ValueError, match="scalar"):
        TensorDataset(np.float32(1.0))


@pytest.mark.parametrize("drop_last,expected", [(False, [4, 4, 2]), (True, [4, 4])])
def test_batches_in_order(drop_last, expected):
    x, y = _xy()
    loader = DataLoader((x, y), batch_size=4, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(expected)
    assert [len(b[1]) for b in batches] == expected
    assert all(isinstance(t, mg.Tensor) for b in batches for t in b)
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches]), y[:sum(expected)])
    assert batches[0][0].dtype == np.float64            # no dtype given: kept


def test_single_array_and_dtype_cast():
    x, _ = _xy()
    (xb,), = list(DataLoader(x, batch_size=10, dtype=mg.float32))
    assert xb.dtype == np.float32 and xb.shape == (10, 3)
    _, y = _xy()
    (yb,), = list(DataLoader(y, batch_size=10, dtype=mg.float32))
    assert yb.dtype == np.int64                          # only floating fields are cast


def test_shuffle_is_a_permutation_reproducible_per_seed_and_epoch():
    x, y = _xy(50)
    loader = DataLoader((x, y), batch_size=8, shuffle=True, seed=7)
    e0 = np.concatenate([b[1].numpy() for b in loader])
    e1 = np.concatenate([b[1].numpy() for b in loader])
    assert sorted(e0.tolist()) == list(range(50)) and sorted(e1.tolist()) == list(range(50))
    assert not np.array_equal(e0, e1)                    # a new order every epoch
    again = DataLoader((x, y), batch_size=8, shuffle=True, seed=7)
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in again]), e0)
    again.set_epoch(1)
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in again]), e1)
    state = loader.state_dict()
    e2 = np.concatenate([b[1].numpy() for b in loader])
    fresh = DataLoader((x, y), batch_size=8, shuffle=True)
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in fresh]), e2)
    # features and labels stay aligned
    for xb, yb in loader:
        np.testing.assert_array_equal(xb.numpy(), x[yb.numpy()])


def test_shuffle_without_seed_follows_minigrads_generator():
    x, y = _xy(30)
    mg.manual_seed(3)
    state = mg.get_rng_state()
    a = np.concatenate([b[1].numpy() for b in DataLoader((x, y), batch_size=4, shuffle=True)])
    mg.set_rng_state(state)
    b = np.concatenate([b[1].numpy() for b in DataLoader((x, y), batch_size=4, shuffle=True)])
    np.testing.assert_array_equal(a, b)


def test_tensor_dataset_batches_use_one_fancy_index_per_array(monkeypatch):
    x, y = _xy(20)

    def per_sample(self, index):
        raise AssertionError("DataLoader fetched a TensorDataset sample by sample")

    monkeypatch.setattr(TensorDataset, "__getitem__", per_sample)
    assert sum(len(b[0]) for b in DataLoader((x, y), batch_size=6, shuffle=True, seed=0)) == 20


def test_generic_dataset_is_collated():
    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.array([i, i * i], dtype=np.float32), i

    batches = list(DataLoader(Squares(), batch_size=2))
    assert [tuple(b[0].shape) for b in batches] == [(2, 2), (2, 2), (1, 2)]
    np.testing.assert_array_equal(batches[1][0].numpy(), [[2, 4], [3, 9]])
    assert batches[1][1].dtype == np.int64


def test_base_dataset_must_be_subclassed():
    with pytest.raises(NotImplementedError):
        len(Dataset())


def test_sampler_gives_the_order():
    x, y = _xy(10)
    sampler = DistributedSampler(10, num_replicas=2, rank=1, shuffle=False)
    loader = DataLoader((x, y), batch_size=2, sampler=sampler)
    assert len(loader) == 3
    assert np.concatenate([b[1].numpy() for b in loader]).tolist() == [1, 3, 5, 7, 9]
    with pytest.raises(ValueError, match="either shuffle=True or a sampler"):
        DataLoader((x, y), shuffle=True, sampler=sampler)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(np.zeros((3, 1)), batch_size=bad)


def test_loader_on_device(device):
    x, y = _xy(8)
    (xb, yb), = list(DataLoader((x, y), batch_size=8, device=device, dtype=mg.float32))
    assert xb.device == mg.device(device) and yb.device == mg.device(device)


# --- bundled data sets --------------------------------------------------------------------------
def test_load_digits_and_iris():
    pytest.importorskip("sklearn")
    x, y = mg.data.load_digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32 and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(10))
    x, y = mg.data.load_iris()
    assert x.shape == (150, 4) and x.dtype == np.float32 and y.dtype == np.int64 and y.max() == 2


def test_missing_sklearn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"minigrad\[data\]"):
        mg.data.load_iris()


def test_train_test_split_is_stratified_and_reproducible():
    y = np.repeat(np.arange(4), [40, 30, 20, 10])
    x = np.arange(100, dtype=np.float32)[:, None]
    xtr, xte, ytr, yte = mg.data.train_test_split(x, y, test_size=0.2, seed=1)
    assert len(xte) == 20 and len(xtr) == 80
    assert np.bincount(yte).tolist() == [8, 6, 4, 2]
    assert sorted(np.concatenate([xtr, xte]).ravel().tolist()) == list(range(100))
    np.testing.assert_array_equal(ytr, y[xtr.ravel().astype(int)])
    again = mg.data.train_test_split(x, y, test_size=0.2, seed=1)
    np.testing.assert_array_equal(again[1], xte)
    with pytest.raises(ValueError, match="test_size"):
        mg.data.train_test_split(x, y, test_size=0.0)


def test_standardize_uses_training_statistics():
    a = np.array([[1.0, 5.0], [3.0, 5.0]], dtype=np.float32)
    b = np.array([[2.0, 6.0]], dtype=np.float32)
    sa, sb = mg.data.standardize(a, b)
    np.testing.assert_allclose(sa, [[-1, 0], [1, 0]])
    np.testing.assert_allclose(sb, [[0, 1]])
    assert sa.dtype == np.float32


# --- random_split ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n,lengths", [(10, [3, 7]), (10, [0.3, 0.7]), (11, [0.5, 0.5]), (30, [0.3, 0.3, 0.4]),
                                       (7, [0.1, 0.2, 0.7]), (5, [0.0, 1.0]), (4, [4, 0])])
def test_random_split_lengths_as_pytorch(n, lengths):
    torch = pytest.importorskip("torch")
    import warnings
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        parts = mg.data.random_split(TensorDataset(np.arange(n)), lengths, seed=0)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        expected = torch.utils.data.random_split(range(n), lengths)
    assert [len(p) for p in parts] == [len(p) for p in expected]
    assert len(ours) == len(theirs)
    got = np.concatenate([np.asarray(p.indices, dtype=np.int64) for p in parts])
    np.testing.assert_array_equal(np.sort(got), np.arange(n))      # disjoint, covering every sample


def test_random_split_errors_as_pytorch():
    torch = pytest.importorskip("torch")
    ds = TensorDataset(np.arange(10))
    for lengths in ([3, 3], [0.5, 0.6, -0.1]):
        with pytest.raises(ValueError) as theirs:
            torch.utils.data.random_split(range(10), lengths)
        with pytest.raises(ValueError, match=str(theirs.value).split("!")[0][:20]):
            mg.data.random_split(ds, lengths)


def test_random_split_is_reproducible_and_follows_minigrads_generator():
    ds = TensorDataset(np.arange(20))
    a = [p.indices for p in mg.data.random_split(ds, [0.8, 0.2], seed=3)]
    assert a == [p.indices for p in mg.data.random_split(ds, [0.8, 0.2], seed=3)]
    assert a != [p.indices for p in mg.data.random_split(ds, [0.8, 0.2], seed=4)]
    mg.manual_seed(1)
    b = [p.indices for p in mg.data.random_split(ds, [16, 4])]
    mg.manual_seed(1)
    assert b == [p.indices for p in mg.data.random_split(ds, [16, 4])]


def test_random_split_subsets_work_with_dataloader():
    x, y = _xy(10)
    train, val = mg.data.random_split((x, y), [0.7, 0.3], seed=0)
    assert isinstance(train, mg.data.Subset) and len(train) == 7 and len(val) == 3
    xi, yi = train[2]
    np.testing.assert_array_equal(xi, x[train.indices[2]])
    for subset in (train, val):
        batches = list(DataLoader(subset, batch_size=2, shuffle=True, seed=1, dtype=np.float32))
        xs = np.concatenate([b[0].numpy() for b in batches])
        ys = np.concatenate([b[1].numpy() for b in batches])
        assert xs.dtype == np.float32 and sorted(ys.tolist()) == sorted(y[subset.indices].tolist())
        np.testing.assert_array_equal(xs, x[ys])                  # rows stay with their labels
        in_order = np.concatenate([b[1].numpy() for b in DataLoader(subset, batch_size=3)])
        np.testing.assert_array_equal(in_order, y[subset.indices])


def test_subset_of_a_generic_dataset_is_collated():
    class Squares(Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return float(i), i * i

    part, _ = mg.data.random_split(Squares(), [4, 2], seed=0)
    xs, ys = next(iter(DataLoader(part, batch_size=4)))
    np.testing.assert_array_equal(ys.numpy(), np.asarray(part.indices) ** 2)


# --- MNIST / Fashion-MNIST from IDX files ---------------------------------------------------------
def _idx_bytes(array):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.tobytes()


def _write_idx_set(folder, prefix="train", n=5, gzipped=True, seed=0):
    import gzip
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for kind, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
        data = _idx_bytes(arr)
        if gzipped:
            (folder / f"{prefix}-{kind}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / f"{prefix}-{kind}").write_bytes(data)
    return images, labels


@pytest.mark.parametrize("gzipped", [True, False])
@pytest.mark.parametrize("loader,name", [(mg.data.load_mnist, "mnist"), (mg.data.load_fashion_mnist, "fashion_mnist")])
def test_load_mnist_reads_idx_files(tmp_path, loader, name, gzipped, monkeypatch):
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("no download expected"))
    images, labels = _write_idx_set(tmp_path / name, "train", 5, gzipped)
    test_images, test_labels = _write_idx_set(tmp_path / name, "t10k", 3, gzipped, seed=1)
    x, y = loader(root=tmp_path)
    assert x.shape == (5, 784) and x.dtype == np.float32 and y.dtype == np.int64
    assert 0 <= x.min() and x.max() <= 1
    np.testing.assert_allclose(x, images.reshape(5, 784) / 255, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    xt, yt = loader(root=str(tmp_path), train=False, download=False)
    np.testing.assert_allclose(xt * 255, test_images.reshape(3, 784), rtol=1e-6)
    np.testing.assert_array_equal(yt, test_labels)


def test_load_mnist_default_root_is_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert mg.data.datasets.default_root() == tmp_path / ".cache" / "minigrad"
    _write_idx_set(tmp_path / ".cache" / "minigrad" / "mnist", "t10k", 2)
    assert mg.data.load_mnist(train=False, download=False)[0].shape == (2, 784)


def test_load_mnist_missing_without_download_says_where(tmp_path):
    with pytest.raises(RuntimeError, match=r"download=False.*put t10k-images-idx3-ubyte\.gz.*"
                                           + str(tmp_path / "mnist").replace("\\", "\\\\")):
        mg.data.load_mnist(root=tmp_path, train=False, download=False)


def test_corrupt_idx_file_is_a_clear_error(tmp_path):
    (tmp_path / "mnist").mkdir()
    _write_idx_set(tmp_path / "mnist", "t10k", 2, gzipped=False)
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        mg.data.load_mnist(root=tmp_path, train=False)
    path.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(ValueError, match="not an IDX file"):
        mg.data.read_idx(path)


class _Response:
    """A stand-in for urllib's response object: a body, its length header, a context manager."""

    def __init__(self, body):
        import io
        self._body, self.headers = io.BytesIO(body), {"Content-Length": str(len(body))}

    def read(self, n=-1):
        return self._body.read(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _serve(monkeypatch, files, fail=()):
    """Answer urlopen from ``files`` (name -> bytes); URLs starting with one of ``fail`` are unreachable."""
    import urllib.error
    requested = []

    def urlopen(url, timeout=None):
        requested.append(url)
        if url.startswith(tuple(fail)):
            raise urllib.error.URLError("unreachable")
        return _Response(files[url.rsplit("/", 1)[1]])
    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    return requested


def _published(tmp_path, monkeypatch, prefix="t10k", n=3):
    """Files to serve, registered as the published ones (their SHA-256 in the loader's table)."""
    import gzip
    import hashlib
    src = tmp_path / "src"
    _write_idx_set(src, prefix, n)
    files = {p.name: p.read_bytes() for p in src.iterdir()}
    table = {**mg.data.datasets._IDX_SETS["mnist"]["sha256"]}
    table.update({name: hashlib.sha256(body).hexdigest() for name, body in files.items()})
    monkeypatch.setitem(mg.data.datasets._IDX_SETS["mnist"], "sha256", table)
    return files, {name: gzip.decompress(body) for name, body in files.items()}


def test_download_is_verified_kept_and_done_once(tmp_path, monkeypatch):
    files, _ = _published(tmp_path, monkeypatch)
    mirrors = mg.data.datasets._IDX_SETS["mnist"]["mirrors"]
    requested = _serve(monkeypatch, files, fail=[mirrors[0]])           # the first mirror is down
    x, y = mg.data.load_mnist(root=tmp_path / "root", train=False)
    assert x.shape == (3, 784) and len(y) == 3
    assert [u.rsplit("/", 1)[0] + "/" for u in requested] == [mirrors[0], mirrors[1]] * 2
    for name, body in files.items():
        assert (tmp_path / "root" / "mnist" / name).read_bytes() == body
    assert not list((tmp_path / "root" / "mnist").glob("*.part"))
    requested.clear()
    np.testing.assert_array_equal(mg.data.load_mnist(root=tmp_path / "root", train=False)[1], y)
    assert requested == []                                               # read from the folder now


def test_download_with_a_wrong_hash_is_rejected(tmp_path, monkeypatch):
    files, _ = _published(tmp_path, monkeypatch)
    files = {name: body + b"tampered" for name, body in files.items()}
    _serve(monkeypatch, files)
    with pytest.raises(RuntimeError, match=r"SHA-256 [0-9a-f]{64}, expected [0-9a-f]{64}") as e:
        mg.data.load_mnist(root=tmp_path, train=False)
    assert "To use the data offline, put t10k-images-idx3-ubyte.gz" in str(e.value)
    assert list((tmp_path / "mnist").iterdir()) == []                    # nothing unverified left behind


def test_offline_download_error_says_where_to_put_the_files(tmp_path, monkeypatch):
    _serve(monkeypatch, {}, fail=["http"])
    with pytest.raises(RuntimeError) as e:
        mg.data.load_fashion_mnist(root=tmp_path)
    msg = str(e.value)
    assert "could not download train-images-idx3-ubyte.gz" in msg and "unreachable" in msg
    assert str(tmp_path / "fashion_mnist") in msg and "fashion-mnist.s3" in msg
