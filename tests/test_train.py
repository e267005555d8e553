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
    trainer.fit(x, y, epochs=2, batch_size=16, verbose=1)        # stderr is not a terminal here: plain lines
    out = capsys.readouterr()
    assert out.out == "" and "\r" not in out.err
    lines = out.err.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2") and "accuracy:" in lines[1]


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


# --- Keras' conveniences ----------------------------------------------------------------------------
def _model(features=5, classes=3, last=None):
    mg.manual_seed(0)
    layers = [nn.Linear(features, 16, activation="relu"), nn.Linear(16, classes)]
    return nn.Sequential(*layers, *([last] if last is not None else []))


def test_optimizer_by_name_uses_keras_defaults():
    model = _model()
    adam = mg.Trainer(model, "adam", "sparse_categorical_crossentropy").optimizer
    assert isinstance(adam, optim.Adam)
    assert adam.param_groups[0]["lr"] == 1e-3 and adam.param_groups[0]["eps"] == 1e-7
    assert [id(p) for p in adam.param_groups[0]["params"]] == [id(p) for p in model.parameters()]
    sgd = mg.Trainer(model, "SGD", "mse").optimizer
    assert isinstance(sgd, optim.SGD)
    assert sgd.param_groups[0]["lr"] == 0.01 and sgd.param_groups[0]["momentum"] == 0
    names = mg.train.optimizer_names()
    assert {"adam", "sgd"} <= set(names)
    if hasattr(optim, "RMSprop"):
        rms = mg.Trainer(model, "rmsprop", "mse").optimizer
        assert rms.param_groups[0]["lr"] == 1e-3 and rms.param_groups[0]["alpha"] == 0.9
    with pytest.raises(ValueError, match=r"unknown optimizer 'nadam'.*'adam'.*'sgd'"):
        mg.Trainer(model, "nadam", "mse")
    with pytest.raises(TypeError, match="optimizer must be an optimizer"):
        mg.Trainer(model, optim.Adam, "mse")


@pytest.mark.parametrize("name,cls", [("sparse_categorical_crossentropy", "CrossEntropyLoss"),
                                      ("categorical_crossentropy", "CrossEntropyLoss"),
                                      ("binary_crossentropy", "BCELoss"), ("mse", "MSELoss")])
def test_loss_by_keras_name(name, cls):
    assert type(mg.Trainer(_model(), "adam", name).loss).__name__ == cls


def test_unknown_loss_name_lists_the_names():
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'.*'binary_crossentropy'.*'categorical_crossentropy'"
                                         r".*'mse'.*'sparse_categorical_crossentropy'"):
        mg.Trainer(_model(), "adam", "hinge")


def test_categorical_crossentropy_trains_on_one_hot_logits():
    x, y = _blobs()
    trainer = mg.Trainer(_model(), "adam", "categorical_crossentropy")
    trainer.optimizer.param_groups[0]["lr"] = 0.05
    h = trainer.fit(x, np.eye(3)[y], epochs=5, verbose=0)
    assert h["accuracy"][-1] > 0.9


def test_accuracy_only_for_classification_losses():
    x, y = _blobs()
    assert list(mg.Trainer(_model(), "adam", "mse").fit(x, np.eye(3)[y], verbose=0)) == ["loss"]
    assert list(mg.Trainer(_model(), "adam", nn.MSELoss()).fit(x, np.eye(3)[y], verbose=0)) == ["loss"]
    assert list(mg.Trainer(_model(), "adam", nn.CrossEntropyLoss()).fit(x, y, verbose=0)) == ["loss", "accuracy"]
    model = _model(classes=1, last=nn.Sigmoid())
    assert mg.Trainer(model, "adam", "binary_crossentropy").metrics == ("accuracy",)
    with pytest.raises(ValueError, match="accuracy is a classification metric, but MSELoss is a regression loss"):
        mg.Trainer(_model(), "adam", "mse", metrics=["accuracy"])


def test_fit_returns_a_history_that_answers_history():
    x, y = _blobs()
    history = _trainer().fit(x, y, epochs=2, verbose=0)
    assert history.history is history and history.history["loss"] == history["loss"] and len(history["loss"]) == 2


def test_validation_split_holds_out_the_last_samples_before_shuffling():
    x, y = _blobs(100)
    a = _trainer()
    mg.manual_seed(5)
    ha = a.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0)
    b = _trainer()
    mg.manual_seed(5)
    hb = b.fit(x[:75], y[:75], epochs=3, batch_size=16, validation_data=(x[75:], y[75:]), verbose=0)
    assert ha == hb and list(ha) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    # as Keras: floor(n * (1 - split)) samples train; validation_data takes precedence over the split
    c = _trainer()
    hc = c.fit(x, y, epochs=1, validation_split=0.333, validation_data=(x[:10], y[:10]), verbose=0)
    assert hc["val_loss"][0] == pytest.approx(c.evaluate(x[:10], y[:10])["loss"], rel=0.2)
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="validation_split must be a fraction"):
            _trainer().fit(x, y, validation_split=bad, verbose=0)
    with pytest.raises(ValueError, match="leaves 0 for training"):
        _trainer().fit(x[:1], y[:1], validation_split=0.5, verbose=0)


class _FakeTrainer:
    def __init__(self, model):
        self.model, self.stop_training = model, False


def _drive(stop, values, model=None):
    """Feed EarlyStopping one monitored value per epoch; returns the epochs it ran (as fit would)."""
    trainer = _FakeTrainer(model or _model())
    stop.set_trainer(trainer)
    stop.on_train_begin()
    ran = 0
    for epoch, v in enumerate(values):
        ran += 1
        stop.on_epoch_end(epoch, {"val_loss": v, "val_accuracy": v})
        if trainer.stop_training:
            break
    stop.on_train_end()
    return ran


def test_early_stopping_follows_keras_rules():
    ES = mg.callbacks.EarlyStopping
    assert _drive(ES(patience=0), [1.0, 0.9, 0.95, 0.5]) == 3
    assert _drive(ES(patience=2), [1.0, 0.9, 0.95, 0.91, 0.5]) == 4
    assert _drive(ES(patience=2), [1.0, 0.9, 0.95, 0.8, 0.85, 0.7]) == 6
    assert _drive(ES(patience=1, min_delta=0.2), [1.0, 0.7, 0.6, 0.1]) == 3      # 0.1 is no improvement
    assert _drive(ES(monitor="val_accuracy", patience=2), [0.5, 0.6, 0.55, 0.58, 0.9]) == 4   # auto: max
    assert _drive(ES(monitor="val_accuracy", mode="min", patience=0), [0.5, 0.6]) == 2
    assert _drive(ES(patience=2), [1.0, 0.9, 0.95, 0.4]) == 4
    assert _drive(ES(patience=2, baseline=0.5), [1.0, 0.9, 0.95, 0.4]) == 3        # improvements short of it count
    assert _drive(ES(patience=0, start_from_epoch=2), [1.0, 2.0, 3.0, 4.0, 3.0]) == 4
    stop = ES(patience=1)
    _drive(stop, [1.0, 0.5, 0.7, 0.8])
    assert stop.stopped_epoch == 2 and stop.best == 0.5 and stop.best_epoch == 1
    with pytest.raises(ValueError, match="mode='max'"):
        _drive(ES(monitor="val_f1"), [1.0])
    with pytest.raises(ValueError, match="mode must be"):
        ES(mode="up")


def test_early_stopping_stops_fit_and_restores_the_best_weights(capsys):
    x, y = _blobs(120)
    trainer = _trainer(lr=0.5)
    seen = []

    class Snapshot(mg.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append({k: v.numpy().copy() for k, v in self.model.state_dict().items()})

    stop = mg.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True, verbose=1)
    h = trainer.fit(x[:80], y[:80], epochs=40, batch_size=8, validation_data=(x[80:], y[80:] % 2), verbose=0,
                    callbacks=[Snapshot(), stop])
    ran = len(h["loss"])
    assert ran < 40 and trainer.epoch == ran and stop.stopped_epoch == ran - 1
    best = int(np.argmin(h["val_loss"]))
    assert stop.best_epoch == best and ran - 1 - best == 2
    for k, v in trainer.model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), seen[best][k])
    out = capsys.readouterr().out
    assert f"Epoch {ran}: early stopping" in out and f"best epoch: {best + 1}." in out


def test_early_stopping_on_a_missing_value_warns():
    x, y = _blobs(40)
    with pytest.warns(UserWarning, match="'val_loss', which this fit does not produce"):
        h = _trainer().fit(x, y, epochs=2, verbose=0, callbacks=[mg.callbacks.EarlyStopping(patience=0)])
    assert len(h["loss"]) == 2


@pytest.mark.parametrize("last,loss,hint", [
    (nn.Softmax(), nn.CrossEntropyLoss(), "remove the final Softmax"),
    (nn.Softmax(), "sparse_categorical_crossentropy", "apply softmax to predict"),
    (nn.Sigmoid(), nn.BCEWithLogitsLoss(), r'"binary_crossentropy" \(BCELoss\)'),
    (nn.Sigmoid(), mg.nn.functional.cross_entropy, "remove the final Sigmoid"),
])
def test_squashed_output_into_a_logits_loss_warns_once(last, loss, hint):
    import warnings
    x, y = _blobs(40)
    classes = 1 if isinstance(loss, nn.BCEWithLogitsLoss) else 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = mg.Trainer(_model(classes=classes, last=last), "adam", loss)
        trainer.fit(x, (y > 0).astype(np.float64) if classes == 1 else y, epochs=2, verbose=0)
        trainer.evaluate(x, y if classes == 3 else (y > 0))
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert "takes logits" in str(caught[0].message)
    assert __import__("re").search(hint, str(caught[0].message))


def test_no_warning_for_probabilities_into_probability_losses():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mg.Trainer(_model(classes=1, last=nn.Sigmoid()), "adam", "binary_crossentropy")
        mg.Trainer(_model(last=nn.Softmax()), "adam", "mse")
        mg.Trainer(_model(), "adam", "sparse_categorical_crossentropy")
    model = nn.Sequential(nn.Linear(5, 1, activation="sigmoid"))
    with pytest.warns(UserWarning, match='Linear\\(..., activation="sigmoid"\\)'):
        mg.Trainer(model, "adam", "bce_with_logits")


# --- progress display ------------------------------------------------------------------------------
class _Terminal(__import__("io").StringIO):
    def isatty(self):
        return True


def test_progress_in_an_80_column_terminal_keeps_every_metric_visible(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "24")
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    x, y = _blobs(600)
    h = _trainer().fit(x, y, epochs=10, batch_size=4, validation_split=0.2, verbose=1)
    finals = [line.split("\r")[-1] for line in term.getvalue().split("\n") if line.strip()]
    assert len(finals) == 10
    for epoch, line in enumerate(finals):
        assert len(line.rstrip()) <= 79, line
        assert line.startswith(f"Epoch {epoch + 1}/10 ")
        for key, shown in (("loss", "loss"), ("accuracy", "acc"), ("val_loss", "val_loss"),
                           ("val_accuracy", "val_acc")):
            assert f" {shown}={h[key][epoch]:.4f}" in line, line
    assert "\r" in term.getvalue()                       # a live bar while the epoch runs


def test_progress_on_a_pipe_is_one_plain_line_per_epoch(monkeypatch):
    import io
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    x, y = _blobs(100)
    h = _trainer().fit(x, y, epochs=3, batch_size=4, validation_split=0.2, verbose=1)
    text = pipe.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 3
    for epoch, line in enumerate(lines):
        assert line.startswith(f"Epoch {epoch + 1}/3 - ")
        assert line.endswith(f"loss: {h['loss'][epoch]:.4f} - accuracy: {h['accuracy'][epoch]:.4f} - "
                             f"val_loss: {h['val_loss'][epoch]:.4f} - val_accuracy: {h['val_accuracy'][epoch]:.4f}")


def test_the_readme_keras_patterns():
    """The 'Coming from Keras' table, row by row."""
    x, y = _blobs(200)
    model = _model()
    trainer = mg.Trainer(model, "adam", "sparse_categorical_crossentropy")
    history = trainer.fit(x, y, epochs=20, batch_size=32, validation_split=0.2,
                          callbacks=[mg.callbacks.EarlyStopping(patience=3)], verbose=0)
    assert history.history["val_loss"] == history["val_loss"] and len(history["val_loss"]) >= 4
    ev = trainer.evaluate(x, y)
    assert set(ev) == {"loss", "accuracy"} and ev["accuracy"] > 0.8
    probs = mg.tensor(trainer.predict(x)).softmax(1).numpy()
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    sched = optim.lr_scheduler.InverseTimeDecay(opt, decay=1e-6)
    mg.Trainer(model, opt, "sparse_categorical_crossentropy").fit(x, y, epochs=1, batch_size=32, scheduler=sched,
                                                                  verbose=0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 / (1 + 1e-6 * 7))


def test_fit_steps_reduce_lr_on_plateau_with_the_validation_loss():
    x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = mg.nn.Linear(4, 2)
    frozen = mg.zeros(1, requires_grad=True)         # the optimizer moves nothing: a certain plateau
    opt = mg.optim.SGD([frozen], lr=1.0)
    sched = mg.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    seen = []
    sched_step = sched.step
    sched.step = lambda metric: (seen.append(metric), sched_step(metric))
    hist = mg.Trainer(model, opt, mg.nn.CrossEntropyLoss()).fit(
        x, y, epochs=4, batch_size=16, validation_data=(x, y), verbose=0, scheduler=sched)
    assert seen == hist["val_loss"]
    assert opt.param_groups[0]["lr"] == 0.5                # bad epochs 2 and 3 exceed patience 1
    with pytest.raises(ValueError, match="validation loss"):
        mg.Trainer(model, opt, mg.nn.CrossEntropyLoss()).fit(x, y, epochs=1, verbose=0, scheduler=sched,
                                                              scheduler_step="batch")
