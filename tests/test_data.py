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
