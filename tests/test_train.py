"""mg.Trainer: fit / evaluate / predict, history, progress output, accuracy kinds, validation errors."""
import subprocess
import sys

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim


def _blobs(n=200, classes=3, features=5, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, features)) * 3
    y = rng.integers(0, classes, n)
    x = centers[y] + rng.standard_normal((n, features))
    return x.astype(dtype), y.astype(np.int64)


def _trainer(features=5, classes=3, hidden=16, loss=None, lr=0.05, device=None, **kw):
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(features, hidden, activation="relu"), nn.Linear(hidden, classes))
    return mg.Trainer(model, optim.Adam(model.parameters(), lr=lr), loss or nn.CrossEntropyLoss(),
                      device=device, **kw)


def test_fit_learns_and_returns_keras_history():
    x, y = _blobs()
    trainer = _trainer()
    h = trainer.fit(x[:150], y[:150], epochs=5, batch_size=16, validation_data=(x[150:], y[150:]), verbose=0)
    assert list(h) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert all(len(v) == 5 for v in h.values())
    assert all(isinstance(v, float) for vs in h.values() for v in vs)
    assert h["loss"][-1] < h["loss"][0]
    assert h["accuracy"][-1] > 0.9 and h["val_accuracy"][-1] > 0.9
    assert trainer.history is h and trainer.epoch == 5
    ev = trainer.evaluate(x[150:], y[150:])
    assert set(ev) == {"loss", "accuracy"}
    assert ev["loss"] == pytest.approx(h["val_loss"][-1]) and ev["accuracy"] == h["val_accuracy"][-1]


def test_float64_features_train_a_float32_model():
    x, y = _blobs(dtype=np.float64)
    trainer = _trainer()
    trainer.fit(mg.tensor(x), y, epochs=1, verbose=0)
    assert all(p.dtype == np.float32 for p in trainer.model.parameters())
    out = trainer.predict(x[:7])
    assert isinstance(out, np.ndarray) and out.shape == (7, 3) and out.dtype == np.float32
    assert trainer.predict(x[:0]).shape[0] == 0


def test_history_without_metrics_or_validation():
    x, y = _blobs()
    h = _trainer(metrics=()).fit(x, y, epochs=2, verbose=0)
    assert list(h) == ["loss"]
    with pytest.raises(ValueError, match="unknown metric"):
        _trainer(metrics=("f1",))


def test_verbose_levels(capsys):
    x, y = _blobs(64)
    trainer = _trainer()
    trainer.fit(x, y, epochs=2, batch_size=16, verbose=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    trainer.fit(x, y, epochs=2, batch_size=16, verbose=2, validation_data=(x, y))
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Epoch 1/2") and "val_accuracy:" in lines[1]
    assert out.err == ""
    trainer.fit(x, y, epochs=1, batch_size=16, verbose=1)
    out = capsys.readouterr()
    assert out.out == ""
    assert "Epoch 1/1" in out.err and "4/4" in out.err and "loss=" in out.err and "accuracy=" in out.err


def test_no_item_calls_per_batch(monkeypatch):
    """Metrics stay on the device between progress refreshes: no Tensor.item() per step."""
    x, y = _blobs()
    trainer = _trainer()

    def forbidden(self):
        raise AssertionError("Tensor.item() called during fit")

    monkeypatch.setattr(mg.Tensor, "item", forbidden)
    trainer.fit(x, y, epochs=1, batch_size=8, verbose=0)


def test_one_hot_targets_accuracy():
    x, y = _blobs()
    onehot = np.eye(3)[y]
    h = _trainer().fit(x, onehot, epochs=3, verbose=0)
    assert h["accuracy"][-1] > 0.9


@pytest.mark.parametrize("kind", ["sigmoid+bce", "logits+bce_with_logits", "string-loss"])
def test_binary_accuracy(kind):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 4))
    y = (x[:, 0] - x[:, 1] > 0).astype(np.int64)          # (N,) labels for an (N, 1) output, as Keras
    mg.manual_seed(0)
    layers = [nn.Linear(4, 8, activation="tanh"), nn.Linear(8, 1)]
    if kind == "sigmoid+bce":
        layers.append(nn.Sigmoid())
        loss = nn.BCELoss()
    elif kind == "logits+bce_with_logits":
        loss = nn.BCEWithLogitsLoss()
    else:
        loss = "bce_with_logits"
    model = nn.Sequential(*layers)
    trainer = mg.Trainer(model, optim.Adam(model.parameters(), lr=0.05), loss)
    h = trainer.fit(x, y, epochs=10, batch_size=20, verbose=0)
    assert h["accuracy"][-1] > 0.9
    out = trainer.predict(x)
    threshold = 0.5 if kind == "sigmoid+bce" else 0.0
    expected = np.mean((out[:, 0] > threshold) == (y == 1))
    assert trainer.evaluate(x, y)["accuracy"] == pytest.approx(expected)


def test_mse_regression_and_unknown_loss():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((100, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32)
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 1))
    h = mg.Trainer(model, optim.SGD(model.parameters(), lr=0.1), "mse", metrics=()).fit(x, y, epochs=20, verbose=0)
    assert h["loss"][-1] < 1e-3
    with pytest.raises(ValueError, match="unknown loss"):
        mg.Trainer(model, optim.SGD(model.parameters(), lr=0.1), "hinge")


def test_epoch_and_batch_schedulers():
    x, y = _blobs(64)
    trainer = _trainer(lr=0.1)
    opt = trainer.optimizer
    sched = optim.lr_scheduler.InverseTimeDecay(opt, decay=0.5)
    trainer.fit(x, y, epochs=1, batch_size=16, verbose=0, scheduler=sched)      # 4 batches, stepped per batch
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 / (1 + 0.5 * 4))
    trainer = _trainer(lr=0.1)
    sched = optim.lr_scheduler.StepLR(trainer.optimizer, step_size=1, gamma=0.5)
    trainer.fit(x, y, epochs=2, batch_size=16, verbose=0, scheduler=sched)      # stepped per epoch
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.025)


def test_shuffle_is_reproducible_under_manual_seed():
    x, y = _blobs()
    runs = []
    for _ in range(2):
        trainer = _trainer()
        mg.manual_seed(7)
        runs.append(trainer.fit(x, y, epochs=2, batch_size=16, verbose=0)["loss"])
    assert runs[0] == runs[1]
    trainer = _trainer()
    mg.manual_seed(8)
    assert trainer.fit(x, y, epochs=2, batch_size=16, verbose=0)["loss"] != runs[0]


def test_trainer_on_device(device):
    x, y = _blobs()
    trainer = _trainer(device=device)
    assert trainer.device == mg.device(device)
    h = trainer.fit(x, y, epochs=2, verbose=0, validation_data=(x, y))
    assert h["val_accuracy"][-1] > 0.8
    assert isinstance(trainer.predict(x), np.ndarray)


# --- validation errors surface through the Trainer ----------------------------------------------
def test_wrong_linear_width():
    x, y = _blobs(features=7)
    with pytest.raises(ValueError, match=r"in_features=5.*\(32, 7\)"):
        _trainer(features=5).fit(x, y, epochs=1, verbose=0)


def test_labels_out_of_range():
    x, y = _blobs(classes=3)
    y[17] = 9
    with pytest.raises(IndexError, match=r"class 9.*3 classes"):
        _trainer(classes=3).fit(x, y, epochs=1, batch_size=200, verbose=0)
    y[17] = -1
    with pytest.raises(IndexError, match="class -1"):
        _trainer(classes=3).evaluate(x, y)


def test_bce_targets_outside_unit_interval():
    """A seed program feeds digit labels 0-9 to binary cross-entropy."""
    x, y = _blobs(classes=10)
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 1), nn.Sigmoid())
    trainer = mg.Trainer(model, optim.SGD(model.parameters(), lr=0.1), nn.BCELoss())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        trainer.fit(x, y, epochs=1, verbose=0)


def test_integer_labels_where_one_hot_was_meant():
    x, y = _blobs(classes=10)
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 10), nn.Softmax())
    trainer = mg.Trainer(model, optim.SGD(model.parameters(), lr=0.1), nn.MSELoss())
    with pytest.raises(ValueError, match="one-hot"):
        trainer.fit(x, y, epochs=1, verbose=0)
    model = nn.Sequential(nn.Linear(5, 10), nn.Sigmoid())
    trainer = mg.Trainer(model, optim.SGD(model.parameters(), lr=0.1), nn.BCELoss())
    with pytest.raises(ValueError, match="one-hot"):
        trainer.fit(x, y % 2, epochs=1, verbose=0)


def test_sample_count_mismatch_and_bad_inputs():
    x, y = _blobs()
    trainer = _trainer()
    with pytest.raises(ValueError, match="y has 199 samples but the features have 200"):
        trainer.fit(x, y[:-1], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="y_val has 10 samples but the features have 20"):
        trainer.fit(x, y, epochs=1, verbose=0, validation_data=(x[:20], y[:10]))
    with pytest.raises(TypeError, match="numeric"):
        trainer.fit(np.array([["a"] * 5] * 200), y, verbose=0)
    with pytest.raises(TypeError, match="callable"):
        mg.Trainer(trainer.model, trainer.optimizer, 3)


def test_single_process_imports_no_mpi():
    code = ("import sys, numpy as np, minigrad as mg\n"
            "m = mg.nn.Sequential(mg.nn.Linear(2, 2))\n"
            "t = mg.Trainer(m, mg.optim.SGD(m.parameters(), lr=0.1), mg.nn.CrossEntropyLoss())\n"
            "t.fit(np.zeros((4, 2)), np.array([0, 1, 0, 1]), epochs=1, verbose=0)\n"
            "import minigrad.distributed as dist\n"
            "assert dist.get_world_size() == 1\n"
            "print('mpi4py' in sys.modules)\n")
    env = {k: v for k, v in __import__("os").environ.items()
           if not k.startswith(("OMPI_", "PMI_", "PMIX_", "MPI_", "SLURM_"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
