"""Trainer: Keras' fit / evaluate / predict over minigrad models, with progress bars and history.

    trainer = mg.Trainer(model, mg.optim.Adam(model.parameters()), mg.nn.CrossEntropyLoss())
    history = trainer.fit(x, y, epochs=10, batch_size=32, validation_data=(x_val, y_val))
    trainer.evaluate(x_test, y_test)      # {"loss": ..., "accuracy": ...}
    probs = trainer.predict(x_test)       # a NumPy array of model outputs

Under ``mpiexec -n N`` (world size > 1) ``fit`` trains data-parallel: it wraps the model in
``DistributedDataParallel``, shards the data with ``DistributedSampler``, sums the metrics over
ranks, and only rank 0 prints and saves checkpoints. A plain ``python`` run is a world of one
and imports no MPI.

Per step the Trainer keeps its loss and accuracy sums as arrays on the model's device and
reads them back once per progress refresh and once per epoch, so a GPU is never synchronised
after every batch.
"""
import math
import sys
import time

import numpy as np

from . import autograd, backend
from .backend import get_array_module, to_device
from .tensor import Tensor, _wrap

_METRICS = {"accuracy": "accuracy", "acc": "accuracy"}
# Keras' loss names (and minigrad's functional ones). The categorical losses take logits, as
# cross_entropy does; "binary_crossentropy" takes probabilities, as BCELoss does.
_LOSS_NAMES = {
    "sparse_categorical_crossentropy": "CrossEntropyLoss", "categorical_crossentropy": "CrossEntropyLoss",
    "cross_entropy": "CrossEntropyLoss", "binary_crossentropy": "BCELoss", "bce": "BCELoss",
    "bce_with_logits": "BCEWithLogitsLoss", "mse": "MSELoss", "mean_squared_error": "MSELoss",
}
# Keras' optimizer names, built with Keras' defaults: name -> (mg.optim class, keyword arguments)
_OPTIMIZER_NAMES = {
    "adam": ("Adam", {"lr": 1e-3, "eps": 1e-7}),
    "adamw": ("AdamW", {"lr": 1e-3, "weight_decay": 0.004, "eps": 1e-7}),
    "rmsprop": ("RMSprop", {"lr": 1e-3, "alpha": 0.9, "eps": 1e-7}),
    "sgd": ("SGD", {"lr": 0.01}),
}
# What each known loss (module class or function name) takes: "logits", "probabilities" or "values"
# (regression). Accuracy is a metric of the first two only.
_LOSS_INPUTS = {
    "CrossEntropyLoss": "logits", "cross_entropy": "logits", "BCEWithLogitsLoss": "logits",
    "binary_cross_entropy_with_logits": "logits", "NLLLoss": "log_probabilities", "nll_loss": "log_probabilities",
    "BCELoss": "probabilities", "binary_cross_entropy": "probabilities",
    "MSELoss": "values", "mse_loss": "values", "L1Loss": "values", "l1_loss": "values", "HuberLoss": "values",
    "huber_loss": "values", "SmoothL1Loss": "values", "smooth_l1_loss": "values",
}
_PROGRESS_INTERVAL = 0.5      # seconds between running-metric refreshes of the progress bar


def resolve_device(spec):
    """A Device from "auto" (the first GPU when CuPy can use one, else the CPU), "cpu", "cuda[:N]"."""
    if spec is None or spec == "auto":
        return backend.device("cuda:0" if backend.cuda_is_available() else "cpu")
    return backend.device(spec)


def _resolve_loss(loss):
    if isinstance(loss, str):
        from . import nn
        name = _LOSS_NAMES.get(loss.lower())
        if name is None:
            raise ValueError(f"unknown loss {loss!r}; use a loss module such as mg.nn.CrossEntropyLoss() "
                             f"or one of {sorted(_LOSS_NAMES)}")
        return getattr(nn, name)()
    if not callable(loss):
        raise TypeError(f"loss must be a callable (e.g. mg.nn.CrossEntropyLoss()), found {type(loss).__name__}")
    return loss


def optimizer_names():
    """The optimizer names Trainer accepts (those whose class this minigrad has)."""
    from . import optim
    return sorted(n for n, (cls, _) in _OPTIMIZER_NAMES.items() if hasattr(optim, cls))


def _resolve_optimizer(optimizer, model):
    if isinstance(optimizer, str):
        from . import optim
        if optimizer.lower() not in optimizer_names():
            raise ValueError(f"unknown optimizer {optimizer!r}; use an optimizer such as "
                             f"mg.optim.Adam(model.parameters()) or one of {optimizer_names()}")
        cls, kwargs = _OPTIMIZER_NAMES[optimizer.lower()]
        return getattr(optim, cls)(model.parameters(), **kwargs)
    if isinstance(optimizer, type) or not (hasattr(optimizer, "step") and hasattr(optimizer, "zero_grad")):
        raise TypeError(f"optimizer must be an optimizer (e.g. mg.optim.Adam(model.parameters())) or one of "
                        f"{optimizer_names()}, found {type(optimizer).__name__}")
    return optimizer


def _loss_inputs(loss):
    """What ``loss`` takes ("logits", "probabilities", "log_probabilities", "values"), None if unknown."""
    return _LOSS_INPUTS.get(getattr(loss, "__name__", type(loss).__name__))


def _output_layer(model):
    """The module that produces the model's output, as far as it can be told (a Sequential's last)."""
    from .nn import Sequential
    while isinstance(model, Sequential) and len(model):
        model = model[-1]
    return model


def _warn_squashed_logits(model, loss):
    """One warning when the model's output goes through softmax / sigmoid into a loss that applies it."""
    if _loss_inputs(loss) != "logits":
        return
    last = _output_layer(model)
    squash = type(last).__name__ if type(last).__name__ in ("Softmax", "Sigmoid") else None
    if squash is None and getattr(last, "activation", None) == "sigmoid":
        squash = 'Linear(..., activation="sigmoid")'
    if squash is None:
        return
    name = getattr(loss, "__name__", type(loss).__name__)
    fix = f"remove the final {squash}"
    if "igmoid" in squash and "with_logits" in name.lower().replace("withlogits", "with_logits"):
        fix += ', or keep it and use the loss "binary_crossentropy" (BCELoss), which takes probabilities'
    elif squash == "Softmax":
        fix += "; apply softmax to predict()'s outputs when you need probabilities"
    import warnings
    warnings.warn(f"the model ends in {squash}, but {name} takes logits (it applies the softmax or sigmoid "
                  f"itself, so training would see it twice): {fix}", UserWarning, stacklevel=3)


class History(dict):
    """fit's history: a dict of per-epoch lists ("loss", "accuracy", "val_loss", ...) that also answers
    Keras' ``history.history["loss"]`` and ``history.epoch``."""

    @property
    def history(self):
        return self



def _world():
    """(distributed module, world size); the module is only imported, MPI only starts under mpiexec."""
    from . import distributed as dist
    from .distributed.comm import launcher_world_size
    if launcher_world_size() == 1 and not dist.is_initialized():
        return dist, 1
    return dist, dist.get_world_size()


def _sums_to_metrics(loss_sum, correct, count, with_acc, prefix=""):
    out = {prefix + "loss": float(loss_sum) / max(count, 1)}
    if with_acc:
        out[prefix + "accuracy"] = float(correct) / max(count, 1)
    return out


def _split_last(x, y, fraction):
    """(x_train, y_train, (x_val, y_val)): the last ``fraction`` of the samples held out, as Keras."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation_split must be a fraction between 0 and 1, found {fraction!r}")
    n = len(x)
    at = math.floor(n * (1 - fraction))
    if at in (0, n):
        raise ValueError(f"validation_split={fraction} of {n} samples leaves {at} for training and {n - at} for "
                         "validation; both need at least one (more data or another fraction)")
    return x[:at], y[:at], (x[at:], y[at:])


def _compact(logs):
    """loss=0.1234 acc=0.9876 val_loss=0.1234 val_acc=0.9876: an epoch's metrics in 53 characters."""
    return " ".join(f"{k.replace('accuracy', 'acc')}={v:.4f}" for k, v in logs.items())


def _interactive(stream):
    """True for a terminal or a notebook (where progress bars redraw), False for a pipe or a file."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) or type(stream).__module__.startswith("ipykernel")


class _Progress:
    """One epoch's progress. verbose=1: in a terminal a tqdm bar on stderr whose last frame is the
    epoch's time and metrics without the bar (so that loss, accuracy, val_loss and val_accuracy fit
    in 80 columns); on a pipe or in a file one plain line per epoch instead of carriage-return frames.
    verbose=2: one plain line per epoch on stdout. verbose=0: nothing."""

    _RUNNING = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{postfix}"

    def __init__(self, epoch, epochs, batches, verbose):
        self.desc, self.verbose, self.start = f"Epoch {epoch + 1}/{epochs}", verbose, time.perf_counter()
        self.file = sys.stderr if verbose == 1 else sys.stdout
        self.bar = None
        if verbose == 1 and _interactive(self.file):
            from tqdm.auto import tqdm
            self.bar = tqdm(total=batches, desc=self.desc, unit="batch", leave=True, dynamic_ncols=True,
                            file=self.file, bar_format=self._RUNNING)
        self.live = self.bar is not None

    def update(self, done, logs):
        self.bar.set_postfix_str(_compact(logs), refresh=False)
        self.bar.update(done - self.bar.n)

    def end(self, logs):
        if self.bar is not None:
            self.bar.bar_format = f"{{desc}} [{{elapsed}}] {_compact(logs)}"
            self.bar.refresh()
        elif self.verbose:
            line = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
            print(f"{self.desc} - {time.perf_counter() - self.start:.2f}s - {line}", file=self.file, flush=True)

    def write(self, message):
        if self.bar is not None:
            self.bar.write(message, file=self.file)
        elif self.verbose:
            print(message, file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class Trainer:
    """fit / evaluate / predict for ``model`` with ``optimizer`` and ``loss``.

    optimizer: an optimizer over the model's parameters, or a Keras name built with Keras' defaults
        ("adam": Adam(lr=1e-3, eps=1e-7), "sgd": SGD(lr=0.01), "rmsprop": RMSprop(lr=1e-3,
        alpha=0.9, eps=1e-7), "adamw": AdamW(lr=1e-3, weight_decay=0.004, eps=1e-7)).
    loss: a loss module or function called as loss(outputs, targets) returning the batch *mean*
        (mg.nn.CrossEntropyLoss(), ...), or a name: Keras' "sparse_categorical_crossentropy" and
        "categorical_crossentropy" (both CrossEntropyLoss: they take logits), "binary_crossentropy"
        (BCELoss: probabilities), "mse", or "cross_entropy", "bce_with_logits". A model ending in
        Softmax or Sigmoid given a loss that takes logits gets a warning saying what to change.
    metrics: "auto" (accuracy for classification losses, nothing for regression or unknown ones),
        ("accuracy",) or (). Accuracy is argmax agreement for (N, C) outputs (targets as
        class indices or one-hot/probabilities) and thresholded agreement for one output per
        sample (0.5 on probabilities, 0 on logits when the loss is BCEWithLogits).
    device: "cpu", "cuda[:N]", "auto" or None (keep the model where it is); the model is moved
        there, and data are moved there once per fit.
    pipeline_parallel, tensor_parallel, n_microbatches: under mpiexec, split a Sequential model
        into that many pipeline stages (run 1F1B over n_microbatches, default 2 x stages) and
        tensor-parallel slices (its Linears in column/row pairs), the remaining factor of the world
        size data parallel (mg.distributed.HybridParallel). After each epoch every rank holds the
        whole trained model, so validation, evaluate and predict run as usual.
    """

    def __init__(self, model, optimizer, loss, metrics="auto", device=None, *, pipeline_parallel=1,
                 tensor_parallel=1, n_microbatches=None):
        self._ddp = None
        self._split = (pipeline_parallel, tensor_parallel, n_microbatches)
        if type(model).__name__ == "DistributedDataParallel" and hasattr(model, "module"):
            self._ddp, model = model, model.module        # already wrapped by the caller: use that wrapper
        if device is not None:
            model.to(resolve_device(device))
        self.model = model
        self.loss = _resolve_loss(loss)
        self.optimizer = _resolve_optimizer(optimizer, model)
        self.metrics = self._resolve_metrics(metrics)
        inputs = _loss_inputs(self.loss)
        self._logits = inputs == "logits" if inputs else "logits" in getattr(
            self.loss, "__name__", type(self.loss).__name__).lower()
        _warn_squashed_logits(model, self.loss)
        self.history = History()
        self.epoch = 0
        self.stop_training = False

    def _resolve_metrics(self, metrics):
        inputs = _loss_inputs(self.loss)
        if isinstance(metrics, str) and metrics == "auto":
            return ("accuracy",) if inputs in ("logits", "probabilities", "log_probabilities") else ()
        metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics or ())
        unknown = [m for m in metrics if m not in _METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; supported: {sorted(set(_METRICS))}")
        metrics = tuple(dict.fromkeys(_METRICS[m] for m in metrics))
        if "accuracy" in metrics and inputs == "values":
            name = getattr(self.loss, "__name__", type(self.loss).__name__)
            raise ValueError(f"accuracy is a classification metric, but {name} is a regression "
                             "loss; leave metrics at 'auto' or pass metrics=()")
        return metrics

    # --- the model's device and dtype ----------------------------------------------------------
    def _first_param(self):
        for p in self.model.parameters():
            if p.data.dtype.kind == "f":
                return p
        return None

    @property
    def device(self):
        p = self._first_param()
        return p.device if p is not None else backend.CPU

    @property
    def dtype(self):
        p = self._first_param()
        return p.data.dtype if p is not None else np.dtype(np.float32)

    def _features(self, x, what="x"):
        """x as an array of the model's dtype on the model's device (one copy at most)."""
        a = _numeric_array(x, what)
        if a.ndim == 0:
            raise ValueError(f"{what} must have a first (sample) axis, found a scalar")
        a = to_device(a, self.device)
        return a if a.dtype == self.dtype else a.astype(self.dtype)

    def _targets(self, y, n, what="y"):
        a = _numeric_array(y, what)
        if a.ndim == 0 or len(a) != n:
            raise ValueError(f"{what} has {len(a) if a.ndim else 0} samples but the features have {n}; "
                             "every sample needs one target")
        a = to_device(a, self.device)
        if a.dtype.kind == "f" and a.dtype != self.dtype or a.dtype.kind == "b":
            a = a.astype(self.dtype)
        return a

    def _data(self, x, y, names=("x", "y")):
        xa = self._features(x, names[0])
        return xa, self._targets(y, len(xa), names[1])

    # --- one batch -----------------------------------------------------------------------------
    def _loss(self, out, y):
        if out.data.ndim == 2 and out.data.shape[1] == 1 and y.data.ndim == 1:
            y = _wrap(y.data.reshape(-1, 1), y.device)       # (N,) targets for an (N, 1) output, as Keras
        return self.loss(out, y)

    def _correct(self, out, y):
        """Number of correct predictions in a batch, as a 0-d array on the device (no sync)."""
        if out.ndim == 2 and out.shape[1] > 1:
            pred = out.argmax(axis=1)
            target = y.argmax(axis=1) if y.ndim == 2 else y
            return (pred == target).sum()
        pred = out.reshape(-1) > (0.0 if self._logits else 0.5)
        return (pred == (y.reshape(-1) > 0.5)).sum()

    # --- fit -----------------------------------------------------------------------------------
    def fit(self, x, y, epochs=1, batch_size=32, validation_data=None, verbose=1, shuffle=True,
            scheduler=None, scheduler_step="auto", initial_epoch=0, checkpoint=None, checkpoint_extra=None,
            validation_batch_size=None, validation_split=0.0, callbacks=None):
        """Train for epochs ``initial_epoch .. epochs - 1`` (Keras' meaning); returns the history.

        x: (N, ...) features (Tensor, NumPy/CuPy array); cast to the model's dtype. y: (N,) class
        indices or (N, ...) targets. validation_data: (x_val, y_val), evaluated after each epoch.
        validation_split: a fraction; the *last* floor(N * (1 - fraction)):N samples, taken before
        any shuffling, are held out for validation, as Keras does (validation_data, when given,
        takes precedence, as in Keras).
        verbose: 1 progress per epoch (a tqdm bar in a terminal; one plain line per epoch when
        stderr is a pipe or a file), 2 one line per epoch on stdout, 0 silent.
        shuffle: a new order each epoch, drawn from minigrad's generator (so mg.manual_seed makes
        it reproducible and checkpoints resume it).
        scheduler: an lr scheduler stepped after every batch (scheduler_step="batch") or epoch
        ("epoch"); "auto" steps InverseTimeDecay (Keras' per-iteration decay) per batch, others
        per epoch; ReduceLROnPlateau gets the epoch's val_loss (its loss without validation data).
        checkpoint: a path; after every epoch the model, optimizer, scheduler, RNG
        state, epoch and history (plus ``checkpoint_extra``) are saved there (atomically, by rank 0);
        resume with ``extra = mg.load_checkpoint(path, model=, optimizer=)`` and
        ``fit(..., initial_epoch=extra["epoch"])``.
        callbacks: mg.callbacks.Callback objects (e.g. EarlyStopping), called at the start and end
        of training and of every epoch with the epoch's logs.

        history: {"loss": [...], "accuracy": [...], "val_loss": [...], "val_accuracy": [...]}, a dict
        that also answers Keras' ``history.history["loss"]``.
        """
        from .data import DataLoader, TensorDataset
        if scheduler_step == "auto":
            scheduler_step = "batch" if getattr(scheduler, "step_per_batch", False) else "epoch"
        if scheduler_step not in ("batch", "epoch"):
            raise ValueError(f"scheduler_step must be 'auto', 'batch' or 'epoch', found {scheduler_step!r}")
        on_metric = getattr(scheduler, "steps_on_metric", False)
        if on_metric and scheduler_step == "batch":
            raise ValueError(f"{type(scheduler).__name__} steps on the epoch's validation loss: "
                             "use scheduler_step='epoch' (or 'auto')")
        dist, world = _world()
        main = world == 1 or dist.get_rank() == 0
        model = self._parallel(dist, world)
        hybrid = isinstance(model, dist.HybridParallel)
        if hybrid and checkpoint is not None:
            raise ValueError("checkpoints of a pipeline- or tensor-parallel fit are not supported: each rank's "
                             "optimizer holds the state of its own slice of the model")
        xa, ya = self._data(x, y)
        if len(xa) == 0:
            raise ValueError("fit: x holds no samples")
        val = None
        if validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (x_val, y_val)")
            val = self._data(*validation_data, names=("x_val", "y_val"))
        elif validation_split:
            xa, ya, val = _split_last(xa, ya, validation_split)
        sampler = None
        if world > 1:
            replicas, replica = model.data_parallel if hybrid else (world, dist.get_rank())
            sampler = dist.DistributedSampler(len(xa), replicas, replica, shuffle=shuffle, seed=0, drop_last=False)
        loader = DataLoader(TensorDataset(xa, ya), batch_size, shuffle=shuffle and sampler is None, sampler=sampler)
        with_acc = "accuracy" in self.metrics
        keys = ["loss"] + (["accuracy"] if with_acc else [])
        keys += ["val_" + k for k in keys] if val is not None else []
        history = History((k, []) for k in keys)
        self.history = history
        callbacks = list(callbacks or ())
        for cb in callbacks:
            cb.set_trainer(self)
        self.stop_training = False
        for cb in callbacks:
            cb.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            if sampler is not None:
                sampler.seed = self._shared_seed(dist)
                sampler.set_epoch(epoch)
                dist.check_equal(len(loader), "the number of batches per epoch")
            progress = _Progress(epoch, epochs, len(loader), verbose if main else 0)
            try:
                sums = self._train_epoch(model, loader, scheduler if scheduler_step == "batch" else None,
                                         with_acc, progress)
                if hybrid:
                    model.gather()          # the whole trained model on every rank, for validation and saving
                if world > 1:
                    sums = dist.all_reduce(list(sums))
                logs = _sums_to_metrics(*sums, with_acc)
                if val is not None:
                    logs.update(self._evaluate_arrays(*val, validation_batch_size or max(batch_size, 256),
                                                      dist, world, prefix="val_"))
                progress.end(logs)
            finally:
                progress.close()
            if on_metric:
                scheduler.step(logs.get("val_loss", logs["loss"]))
            elif scheduler is not None and scheduler_step == "epoch":
                scheduler.step()
            for k in keys:
                history[k].append(logs[k])
            self.epoch = epoch + 1
            for cb in callbacks:
                cb.on_epoch_end(epoch, dict(logs))
            if checkpoint is not None and main:
                from .io import save_checkpoint
                save_checkpoint(checkpoint, model=self.model, optimizer=self.optimizer, scheduler=scheduler,
                                **{**(checkpoint_extra or {}), "epoch": epoch + 1, "history": dict(history)})
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end(dict(history))
        return history

    def _parallel(self, dist, world):
        """The model to call: wrapped in DistributedDataParallel (once) when world > 1, or split by
        HybridParallel (pipeline and tensor parallel, the rest data parallel) when asked to."""
        split = self._split[0] * self._split[1] > 1
        if world == 1 and not split:
            return self.model
        if self._ddp is None:
            dev = dist.get_device()
            if dev != "cpu" and self.device.type == "cuda" and self.device != dev:
                self.model.to(dev)
            if split:
                self._ddp = dist.HybridParallel(self.model, *self._split)
                self._ddp.adopt(self.optimizer)
            else:
                self._ddp = dist.DistributedDataParallel(self.model)
        return self._ddp

    @staticmethod
    def _shared_seed(dist):
        """A shuffling seed drawn from minigrad's generator on rank 0 and shared with all ranks."""
        from . import random as _random
        seed = np.array([_random.generator().integers(2 ** 62)], dtype=np.int64)
        dist.broadcast(seed, 0)
        return int(seed[0])

    def _train_epoch(self, model, loader, batch_scheduler, with_acc, progress):
        self.model.train()
        xp = get_array_module(loader.dataset.arrays[0])
        loss_sum = xp.zeros((), np.float64)
        correct = xp.zeros((), np.int64)
        count, done, last = 0, 0, time.perf_counter()
        opt, loss_fn = self.optimizer, self._loss
        live = progress.live
        train_step = getattr(model, "train_step", None) if type(model).__name__ == "HybridParallel" else None
        for xb, yb in loader:
            opt.zero_grad()
            if train_step is not None:      # a pipeline runs forward and backward together
                out, loss = train_step(xb, yb, loss_fn)
            else:
                out = model(xb)
                loss = loss_fn(out, yb)
                loss.backward()
            opt.step()
            if batch_scheduler is not None:
                batch_scheduler.step()
            n = len(xb.data)
            loss_sum += loss.data * n
            if with_acc:
                correct += self._correct(out.data, yb.data)
            count += n
            if live:
                done += 1
                now = time.perf_counter()
                if now - last >= _PROGRESS_INTERVAL or done == len(loader):
                    progress.update(done, _sums_to_metrics(loss_sum, correct, count, with_acc))
                    last = now
        if count == 0:
            raise ValueError("fit: the data loader produced no batches (fewer samples than one batch "
                             "with drop_last?)")
        if not math.isfinite(float(loss_sum)):
            progress.write("warning: the training loss is not finite (nan or inf); try a smaller learning rate")
        return float(loss_sum), int(correct), count

    # --- evaluate / predict --------------------------------------------------------------------
    def _evaluate_arrays(self, xa, ya, batch_size, dist=None, world=1, prefix=""):
        """Loss and metrics over (xa, ya); with world > 1 each rank takes every world-th sample and the
        sums are combined, so the result is exact (no padding)."""
        if world > 1:
            rank = dist.get_rank()
            xa, ya = xa[rank::world], ya[rank::world]
        with_acc = "accuracy" in self.metrics
        xp = get_array_module(xa)
        loss_sum = xp.zeros((), np.float64)
        correct = xp.zeros((), np.int64)
        was_training = self.model.training
        self.model.eval()
        dev = self.device
        try:
            with autograd.no_grad():
                for start in range(0, len(xa), batch_size):
                    xb = _wrap(xa[start:start + batch_size], dev)
                    yb = _wrap(ya[start:start + batch_size], dev)
                    out = self.model(xb)
                    loss_sum += self._loss(out, yb).data * len(xb.data)
                    if with_acc:
                        correct += self._correct(out.data, yb.data)
        finally:
            self.model.train(was_training)
        sums = [float(loss_sum), int(correct), len(xa)]
        if world > 1:
            sums = dist.all_reduce(sums)
        return _sums_to_metrics(*sums, with_acc, prefix)

    def evaluate(self, x, y, batch_size=256, verbose=0):
        """{"loss": mean loss, "accuracy": ...} over (x, y), in eval mode without gradients."""
        xa, ya = self._data(x, y)
        dist, world = _world()
        logs = self._evaluate_arrays(xa, ya, batch_size, dist, world)
        if verbose and (world == 1 or dist.get_rank() == 0):
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
        return logs

    def predict(self, x, batch_size=256):
        """The model's outputs for x, as a NumPy array (eval mode, no gradients)."""
        xa = self._features(x)
        was_training = self.model.training
        self.model.eval()
        dev = self.device
        outs = []
        try:
            with autograd.no_grad():
                for start in range(0, len(xa), batch_size):
                    outs.append(to_device(self.model(_wrap(xa[start:start + batch_size], dev)).data, backend.CPU))
        finally:
            self.model.train(was_training)
        if not outs:
            return np.zeros((0,), dtype=self.dtype)
        return np.concatenate(outs)

    # --- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, path, scheduler=None, **extra):
        """Save model, optimizer, (scheduler), RNG state, ``epoch`` and ``extra`` to ``path``."""
        from .io import save_checkpoint
        dist, world = _world()
        if world == 1 or dist.get_rank() == 0:
            save_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=scheduler,
                            **{"epoch": self.epoch, **extra})

    def load_checkpoint(self, path, scheduler=None):
        """Restore what save_checkpoint (or fit(checkpoint=)) stored; sets ``self.epoch``; returns the extras."""
        from .io import load_checkpoint
        extra = load_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=scheduler)
        self.epoch = int(extra.get("epoch", 0))
        return extra


# --- the `minigrad train` recipe ---------------------------------------------------------------
def mlp(sizes, activation="relu", dtype=None, device=None):
    """Sequential MLP: Linear layers of widths ``sizes`` (input first), each but the last with a
    fused ``activation``. mlp([64, 64, 32, 10]) -> 64-64-32-10."""
    from . import nn
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"mlp needs at least an input and an output width, all positive; found {sizes}")
    layers = [nn.Linear(a, b, activation=activation if i < len(sizes) - 2 else None, dtype=dtype, device=device)
              for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
    return nn.Sequential(*layers)


def make_optimizer(name, params, lr=None):
    """"sgd" (momentum 0.9, Nesterov; lr 0.01), "adam" (lr 1e-3) or "adamw" (lr 1e-3)."""
    from . import optim
    name = name.lower()
    if name == "sgd":
        return optim.SGD(params, lr=0.01 if lr is None else lr, momentum=0.9, nesterov=True)
    if name == "adam":
        return optim.Adam(params, lr=1e-3 if lr is None else lr)
    if name == "adamw":
        return optim.AdamW(params, lr=1e-3 if lr is None else lr)
    raise ValueError(f"unknown optimizer {name!r}; choose sgd, adam or adamw")


DATASETS = ("digits", "iris", "mnist", "fashion_mnist")
OPTIMIZERS = ("sgd", "adam", "adamw")


def _numeric_array(x, what):
    """x (a Tensor, an array or anything np.asarray takes) as an array; TypeError unless numeric."""
    a = x.data if isinstance(x, Tensor) else x
    if not hasattr(a, "__array_interface__") and not hasattr(a, "__cuda_array_interface__"):
        a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{what} must be numeric, found dtype {a.dtype}")
    return a


def load_dataset(name, seed=0, test_size=0.2, root=None):
    """(x_train, x_test, y_train, y_test) for ``minigrad train``: digits and iris standardized and split
    80/20 (stratified, by ``seed``); MNIST and Fashion-MNIST as published (60000 / 10000, pixels in
    [0, 1]), read from or downloaded to ``root`` (default ~/.cache/minigrad)."""
    from . import data
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if name in ("mnist", "fashion_mnist"):
        load = data.load_mnist if name == "mnist" else data.load_fashion_mnist
        (x_train, y_train), (x_test, y_test) = load(root, train=True), load(root, train=False)
        return x_train, x_test, y_train, y_test
    x, y = data.load_digits() if name == "digits" else data.load_iris()
    x_train, x_test, y_train, y_test = data.train_test_split(x, y, test_size=test_size, seed=seed)
    return (*data.standardize(x_train, x_test), y_train, y_test)


def train_classifier(dataset="digits", hidden=(256, 128), epochs=20, batch_size=32, optimizer="adam", lr=None,
                     device="auto", seed=0, save=None, resume=None, verbose=1, test_size=0.2, log=print,
                     data_root=None, pipeline_parallel=1, tensor_parallel=1, micro_batches=None):
    """Train an MLP classifier on digits, iris, MNIST or Fashion-MNIST (see load_dataset).

    save: checkpoint path written after every epoch; resume: a checkpoint to continue from (its
    epoch count is kept: training runs until ``epochs`` epochs in total). Under mpiexec the
    Trainer trains data-parallel and only rank 0 logs and saves; pipeline_parallel and
    tensor_parallel split the model over that many ranks each (micro_batches per batch in the
    pipeline), the rest of the ranks data-parallel.
    Returns {"history", "test_loss", "test_accuracy", "epochs_run", "device", "model"}."""
    from . import nn
    from .random import manual_seed
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
    dist, world = _world()
    main = world == 1 or dist.get_rank() == 0
    if not main:
        log = lambda *a, **k: None          # noqa: E731  (only rank 0 talks)
    dev = resolve_device(device)
    if world > 1 and dev.type == "cuda":
        dev = backend.device(dist.get_device())
    x_train, x_test, y_train, y_test = load_dataset(dataset, seed, test_size, data_root)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    sizes = [x_train.shape[1], *[int(h) for h in hidden], n_classes]
    manual_seed(seed)
    model = mlp(sizes, device=dev)
    opt = make_optimizer(optimizer, model.parameters(), lr)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), pipeline_parallel=pipeline_parallel,
                      tensor_parallel=tensor_parallel, n_microbatches=micro_batches)
    config = {"dataset": dataset, "sizes": sizes, "optimizer": optimizer, "lr": lr, "seed": seed,
              "batch_size": batch_size}
    initial_epoch = 0
    if resume is not None:
        from .io import load_checkpoint, load_metadata
        import json
        saved = json.loads(load_metadata(resume).get("extra", "{}")).get("config", {})
        for key in ("dataset", "sizes", "optimizer"):
            if key in saved and saved[key] != config[key]:
                raise ValueError(f"--resume {resume}: the checkpoint was trained with {key}={saved[key]!r}, "
                                 f"this run asks for {config[key]!r}")
        extra = load_checkpoint(resume, model=model, optimizer=opt)
        initial_epoch = int(extra.get("epoch", 0))
        log(f"resumed from {resume} after epoch {initial_epoch}")
    log(f"{dataset}: {len(x_train)} training / {len(x_test)} test samples; model "
        f"{'-'.join(map(str, sizes))} (ReLU); {optimizer} lr {lr if lr is not None else 'default'}; "
        f"batch {batch_size}; device {dev}" + (f"; {world} ranks" if world > 1 else "")
        + (f" (pipeline {pipeline_parallel} x tensor {tensor_parallel} x data "
           f"{world // (pipeline_parallel * tensor_parallel)})" if pipeline_parallel * tensor_parallel > 1 else ""))
    history = trainer.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=verbose,
                          validation_data=(x_test, y_test), initial_epoch=initial_epoch, checkpoint=save,
                          checkpoint_extra={"config": config})
    result = trainer.evaluate(x_test, y_test)
    log(f"test loss {result['loss']:.4f}  test accuracy {result['accuracy']:.4f}")
    if save is not None and main:
        log(f"saved checkpoint to {save}")
    return {"history": history, "test_loss": result["loss"], "test_accuracy": result["accuracy"],
            "epochs_run": max(epochs - initial_epoch, 0), "device": str(dev), "model": model}
