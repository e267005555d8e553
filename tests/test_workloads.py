"""The seed programs of DESIGN.md's workloads table, translated to minigrad, run end to end and learn.

| iris         | 4-3-3-3 ReLU, softmax       | Adam, batch 32, 100 epochs                              |
| digits       | 64-10-8-10 ReLU             | SGD lr 0.01, momentum 0.9, Nesterov, decay 1e-6, batch 32 |
| mnist-shaped | 784-32-10, 784-64-64-10     | Adam lr 1e-3, batch 128, validation each epoch          |
| wide / huge  | 784-1024-1024-10, 4096x4   | a couple of steps at batch 512 / 64 (timings: benchmarks/) |

The softmax of the Keras originals is folded into CrossEntropyLoss (the models output logits).
"""
import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim


def _standardized(loader, seed):
    x, y = loader()
    x_train, x_test, y_train, y_test = mg.data.train_test_split(x, y, test_size=0.2, seed=seed)
    x_train, x_test = mg.data.standardize(x_train, x_test)
    return x_train, x_test, y_train, y_test


def _mlp(*sizes):
    layers = [nn.Linear(a, b, activation="relu") for a, b in zip(sizes[:-2], sizes[1:-1])]
    return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))


def test_iris_adam():
    pytest.importorskip("sklearn")
    x_train, x_test, y_train, y_test = _standardized(mg.data.load_iris, seed=1)
    mg.manual_seed(0)
    model = _mlp(4, 3, 3, 3)                 # so small that some inits die; seed 0 is a healthy one
    trainer = mg.Trainer(model, optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss())
    history = trainer.fit(x_train, y_train, epochs=100, batch_size=32, verbose=0)
    assert len(history["loss"]) == 100 and history["loss"][-1] < 0.3 * history["loss"][0]
    assert trainer.evaluate(x_test, y_test)["accuracy"] >= 0.9


def test_digits_sgd_nesterov_time_decay_reaches_95_percent():
    pytest.importorskip("sklearn")
    x_train, x_test, y_train, y_test = _standardized(mg.data.load_digits, seed=2)
    accuracies = []
    for seed in (0, 1):
        mg.manual_seed(seed)
        model = _mlp(64, 10, 8, 10)
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        decay = optim.lr_scheduler.InverseTimeDecay(opt, decay=1e-6)     # Keras' decay=1e-6, per batch
        trainer = mg.Trainer(model, opt, nn.CrossEntropyLoss())
        trainer.fit(x_train, y_train, epochs=60, batch_size=32, verbose=0, scheduler=decay)
        assert opt.param_groups[0]["lr"] == pytest.approx(0.01 / (1 + 1e-6 * 60 * 45))
        accuracies.append(trainer.evaluate(x_test, y_test)["accuracy"])
    assert min(accuracies) >= 0.95, accuracies


def _mnist_shaped(n, seed=0):
    """784-feature, 10-class synthetic data: noisy, sparse-ish class prototypes in [0, 1]."""
    prototypes = (np.random.default_rng(1234).random((10, 784)) < 0.2).astype(np.float32)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = np.clip(prototypes[y] * rng.random((n, 784)) + 0.3 * rng.random((n, 784)), 0, 1)
    return x.astype(np.float32), y.astype(np.int64)


@pytest.mark.parametrize("sizes", [(784, 32, 10), (784, 64, 64, 10)], ids=["784-32-10", "784-64-64-10"])
def test_mnist_shaped_adam_with_validation(sizes):
    x, y = _mnist_shaped(3000)
    x_val, y_val = _mnist_shaped(500, seed=1)
    mg.manual_seed(0)
    model = _mlp(*sizes)
    trainer = mg.Trainer(model, optim.Adam(model.parameters(), lr=1e-3), nn.CrossEntropyLoss())
    history = trainer.fit(x, y, epochs=3, batch_size=128, validation_data=(x_val, y_val), verbose=0)
    assert all(len(history[k]) == 3 for k in ("loss", "accuracy", "val_loss", "val_accuracy"))
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert history["val_accuracy"][-1] > 0.8


def _a_couple_of_steps(sizes, batch, steps=2):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch * steps, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch * steps)
    mg.manual_seed(0)
    model = _mlp(*sizes)
    before = [p.numpy().copy() for p in model.parameters()]
    trainer = mg.Trainer(model, optim.SGD(model.parameters(), lr=1e-3), nn.CrossEntropyLoss())
    history = trainer.fit(x, y, epochs=1, batch_size=batch, verbose=0)
    assert np.isfinite(history["loss"][0])
    assert all(not np.array_equal(b, p.numpy()) for b, p in zip(before, model.parameters()))
    assert trainer.predict(x[:3]).shape == (3, sizes[-1])


def test_wide_784_1024_1024_10():
    _a_couple_of_steps((784, 1024, 1024, 10), batch=512)


@pytest.mark.slow
def test_huge_4096x4():
    _a_couple_of_steps((4096, 4096, 4096, 4096), batch=64)
