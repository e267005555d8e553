"""Callbacks for Trainer.fit, as Keras' (``keras.callbacks``): hooks called at the start and end of
training and of every epoch, with the epoch's logs ({"loss": ..., "val_loss": ..., ...}).

    stop = mg.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    trainer.fit(x, y, epochs=100, validation_split=0.2, callbacks=[stop])

A callback sees the Trainer as ``self.trainer`` and the model as ``self.model``; setting
``self.trainer.stop_training = True`` ends fit after the current epoch (Keras'
``self.model.stop_training``). Under mpiexec every rank sees the same (all-reduced) logs, so every
rank takes the same decision.
"""
import warnings


class Callback:
    """Base class: override any of the hooks; each receives the logs of that moment (a dict)."""

    trainer = None
    model = None

    def set_trainer(self, trainer):
        self.trainer, self.model = trainer, trainer.model

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs (Keras' EarlyStopping).

    monitor: a key of the epoch logs ("val_loss", "val_accuracy", "loss", "accuracy").
    min_delta: an improvement must beat the best value by more than this.
    mode: "min", "max", or "auto" (max for accuracies, min for losses).
    baseline: the patience counter only resets once the value beats this.
    restore_best_weights: at the end of training, load the weights of the best epoch.
    start_from_epoch: epochs to wait before monitoring (a warm-up).
    verbose: 1 prints the epoch at which training stopped.
    After fit: ``stopped_epoch`` (0-based; 0 when it never stopped), ``best``, ``best_epoch``.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping mode must be 'auto', 'min' or 'max', found {mode!r}")
        if patience < 0 or min_delta < 0:
            raise ValueError(f"EarlyStopping needs patience >= 0 and min_delta >= 0, found patience={patience}, "
                             f"min_delta={min_delta}")
        self.monitor, self.min_delta, self.patience, self.verbose = monitor, abs(min_delta), int(patience), verbose
        self.mode, self.baseline, self.restore_best_weights = mode, baseline, restore_best_weights
        self.start_from_epoch = int(start_from_epoch)
        self._reset()

    def _reset(self):
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best, self.best_weights = None, None

    def _direction(self):
        if self.mode != "auto":
            return self.mode
        name = self.monitor[4:] if self.monitor.startswith("val_") else self.monitor
        if name in ("accuracy", "acc"):
            return "max"
        if name == "loss":
            return "min"
        raise ValueError(f"EarlyStopping(monitor={self.monitor!r}) cannot tell whether that value should go up or "
                         "down: pass mode='max' to stop on the highest value or mode='min' on the lowest")

    def _improves(self, value, reference):
        if reference is None:
            return True
        if self._direction() == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self._direction()                      # a monitor of unknown direction fails before any training
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"EarlyStopping monitors {self.monitor!r}, which this fit does not produce (its logs "
                          f"have {sorted(logs or {})}); pass validation_data= or validation_split= for val_ "
                          "values", stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self._weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._improves(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self._weights()
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping", flush=True)
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.", flush=True)
            self.model.load_state_dict(self.best_weights)

    def _weights(self):
        return {k: t.data.copy() for k, t in self.model.state_dict().items()}
