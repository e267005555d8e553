"""mg.save / mg.load / checkpoints: round trips, atomic writes, damaged files, exact resume."""
import json
import os

import numpy as np
import pytest

import minigrad as mg
import minigrad.io as mio
from minigrad import nn, optim
from minigrad.io import CheckpointError


def _model(seed=0, dropout=0.0):
    mg.manual_seed(seed)
    layers = [nn.Linear(6, 16, activation="relu")]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(16, 3))
    return nn.Sequential(*layers)


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    return x, y


def _leftovers(folder):
    return [f for f in os.listdir(folder) if f.endswith(".tmp")]


# --- save / load -------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    path = tmp_path / "w.safetensors"
    sd = {"a": mg.randn(3, 4), "b": mg.tensor(np.arange(5)), "c": np.ones((2, 2), np.float64),
          "d": mg.zeros(0, 3)}
    mg.save(sd, path, metadata={"note": "hello"})
    back = mg.load(path)
    assert set(back) == set(sd)
    for k in sd:
        ref = sd[k].numpy() if isinstance(sd[k], mg.Tensor) else sd[k]
        assert isinstance(back[k], mg.Tensor) and back[k].dtype == ref.dtype
        np.testing.assert_array_equal(back[k].numpy(), ref)
    assert mio.load_metadata(path)["note"] == "hello"
    assert _leftovers(tmp_path) == []


def test_model_state_dict_round_trip(tmp_path):
    model = _model(0)
    mg.save(model.state_dict(), tmp_path / "m.safetensors")
    other = _model(1)
    other.load_state_dict(mg.load(tmp_path / "m.safetensors"))
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_safetensors_file_is_readable_by_the_reference_library(tmp_path):
    from safetensors.numpy import load_file
    mg.save({"w": mg.ones(2, 3)}, tmp_path / "w.safetensors")
    np.testing.assert_array_equal(load_file(str(tmp_path / "w.safetensors"))["w"], np.ones((2, 3), np.float32))


def test_save_rejects_bad_values(tmp_path):
    with pytest.raises(TypeError, match="'x'"):
        mg.save({"x": object()}, tmp_path / "bad.safetensors")
    with pytest.raises(TypeError, match="str to str"):
        mg.save({"x": mg.ones(1)}, tmp_path / "bad.safetensors", metadata={"n": 1})
    assert os.listdir(tmp_path) == []


def test_failed_save_keeps_the_previous_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    mg.save({"w": mg.ones(1000)}, path)
    before = path.read_bytes()

    def crash(f, data):
        f.write(data[:len(data) // 2])              # half written, then the "disk" fails
        raise OSError("simulated failure while writing")

    monkeypatch.setattr(mio, "_write_bytes", crash)
    with pytest.raises(OSError, match="simulated"):
        mg.save({"w": mg.zeros(1000)}, path)
    with pytest.raises(OSError, match="simulated"):
        mg.save_checkpoint(path, model=_model())
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ckpt.safetensors"]
    np.testing.assert_array_equal(mg.load(path)["w"].numpy(), np.ones(1000))


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    mg.save({"w": mg.ones(10)}, path)

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(mio.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mg.save({"w": mg.zeros(10)}, path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["ckpt.safetensors"]
    np.testing.assert_array_equal(mg.load(path)["w"].numpy(), np.ones(10))


@pytest.mark.parametrize("cut", [0, 5, 30, -1, -9])
def test_truncated_file_raises_a_clear_error(tmp_path, cut):
    path = tmp_path / "t.safetensors"
    mg.save_checkpoint(path, model=_model(), epoch=3)
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut >= 0 else data[:len(data) + cut])
    with pytest.raises(CheckpointError, match="t.safetensors"):
        mg.load(path)
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        mg.load_checkpoint(path, model=_model())


def test_corrupted_tensor_bytes_are_detected(tmp_path):
    path = tmp_path / "c.safetensors"
    mg.save({"w": mg.randn(64)}, path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF                                 # inside the tensor data, header intact
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"c\.safetensors.*corrupted"):
        mg.load(path)


def test_garbage_and_missing_files(tmp_path):
    path = tmp_path / "g.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(CheckpointError, match="g.safetensors"):
        mg.load(path)
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        mg.load(tmp_path / "nope.safetensors")


def test_load_on_device(tmp_path, device):
    mg.save({"w": mg.ones(3)}, tmp_path / "w.safetensors")
    assert mg.load(tmp_path / "w.safetensors", device=device)["w"].device == mg.device(device)


# --- checkpoints -------------------------------------------------------------------------------
def _train_steps(model, opt, x, y, steps=3):
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(mg.tensor(x, dtype=mg.float32)), mg.tensor(y)).backward()
        opt.step()


@pytest.mark.parametrize("make_opt", [
    lambda p: optim.Adam(p, lr=1e-2),
    lambda p: optim.AdamW(p, lr=1e-2, betas=(0.8, 0.99)),
    lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
], ids=["adam", "adamw", "sgd"])
def test_checkpoint_round_trip(tmp_path, make_opt):
    x, y = _data()
    model = _model()
    opt = make_opt(model.parameters())
    _train_steps(model, opt, x, y)
    mg.manual_seed(42)
    rng_state = mg.get_rng_state()
    path = tmp_path / "ckpt.safetensors"
    mg.save_checkpoint(path, model=model, optimizer=opt, epoch=7, history={"loss": [1.5, 0.25]},
                       note="hi", pair=(1, 2), nothing=None, arr=np.arange(3))
    mg.randn(5)                                      # move the generator on
    model2 = _model(9)
    opt2 = make_opt(model2.parameters())
    extra = mg.load_checkpoint(path, model=model2, optimizer=opt2)
    assert extra["epoch"] == 7 and extra["history"] == {"loss": [1.5, 0.25]} and extra["note"] == "hi"
    assert extra["pair"] == (1, 2) and extra["nothing"] is None
    np.testing.assert_array_equal(extra["arr"], np.arange(3))
    assert mg.get_rng_state() == rng_state
    for (k, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    assert s1["state"].keys() == s2["state"].keys()
    for i in s1["state"]:
        for name, v in s1["state"][i].items():
            w = s2["state"][i][name]
            if isinstance(v, mg.Tensor):
                np.testing.assert_array_equal(v.numpy(), w.numpy())
            else:
                assert v == w
    # both continue identically
    _train_steps(model, opt, x, y, 2)
    _train_steps(model2, opt2, x, y, 2)
    for (k, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)


def test_checkpoint_metadata_is_json(tmp_path):
    model = _model()
    opt = optim.Adam(model.parameters())
    _train_steps(model, opt, *_data(), steps=1)
    mg.save_checkpoint(tmp_path / "c.safetensors", model=model, optimizer=opt, epoch=1)
    meta = mio.load_metadata(tmp_path / "c.safetensors")
    assert meta["kind"] == "checkpoint"
    for key in ("optimizer", "rng", "extra"):
        json.loads(meta[key])
    names = set(mg.load(tmp_path / "c.safetensors"))
    assert {"model.0.weight", "model.0.bias", "model.1.weight", "model.1.bias"} <= names
    assert any(n.startswith("optimizer.") for n in names)


def test_checkpoint_errors_name_the_problem(tmp_path):
    path = tmp_path / "c.safetensors"
    mg.save_checkpoint(path, model=_model(), epoch=1)
    wide = nn.Sequential(nn.Linear(6, 32), nn.Linear(32, 3))
    with pytest.raises(RuntimeError, match=r"0\.weight"):
        mg.load_checkpoint(path, model=wide)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        m = _model()
        mg.load_checkpoint(path, model=m, optimizer=optim.SGD(m.parameters(), lr=0.1))
    mg.save({"w": mg.ones(1)}, tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        mg.load_checkpoint(tmp_path / "plain.safetensors", model=_model())
    with pytest.raises(TypeError, match="extra"):
        mg.save_checkpoint(path, model=_model(), bad=object())
    assert mg.load_checkpoint(path, model=_model())["epoch"] == 1      # the failed save left it intact


# --- exact resume ----------------------------------------------------------------------------
def _setup(with_scheduler):
    model = _model(0, dropout=0.2)                   # dropout draws from the RNG the checkpoint holds
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    sched = optim.lr_scheduler.InverseTimeDecay(opt, decay=1e-2) if with_scheduler else None
    return model, opt, sched, mg.Trainer(model, opt, nn.CrossEntropyLoss())


@pytest.mark.parametrize("with_scheduler", [False, True])
def test_resume_continues_bit_for_bit(tmp_path, with_scheduler):
    x, y = _data(100)
    model, opt, sched, trainer = _setup(with_scheduler)
    mg.manual_seed(123)
    straight = trainer.fit(x, y, epochs=4, batch_size=16, verbose=0, scheduler=sched)

    model, opt, sched, trainer = _setup(with_scheduler)
    mg.manual_seed(123)
    first = trainer.fit(x, y, epochs=2, batch_size=16, verbose=0, scheduler=sched)
    path = tmp_path / "resume.safetensors"
    mg.save_checkpoint(path, model=model, optimizer=opt, scheduler=sched, epoch=2)
    del model, opt, sched, trainer
    mg.manual_seed(999)                              # a fresh process would start elsewhere
    model2, opt2, sched2, trainer2 = _setup(with_scheduler)
    extra = mg.load_checkpoint(path, model=model2, optimizer=opt2, scheduler=sched2)
    second = trainer2.fit(x, y, epochs=4, batch_size=16, verbose=0, scheduler=sched2,
                          initial_epoch=extra["epoch"])
    assert first["loss"] + second["loss"] == straight["loss"]

    model3, opt3, sched3, _ = _setup(with_scheduler)
    mg.manual_seed(123)
    mg.Trainer(model3, opt3, nn.CrossEntropyLoss()).fit(x, y, epochs=4, batch_size=16, verbose=0, scheduler=sched3)
    for (k, a), (_, b) in zip(model3.state_dict().items(), model2.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)


def test_fit_checkpoint_argument_resumes_exactly(tmp_path):
    x, y = _data(64)
    path = tmp_path / "every-epoch.safetensors"
    model, opt, _, trainer = _setup(False)
    mg.manual_seed(5)
    full = trainer.fit(x, y, epochs=3, batch_size=16, verbose=0)

    model, opt, _, trainer = _setup(False)
    mg.manual_seed(5)
    trainer.fit(x, y, epochs=1, batch_size=16, verbose=0, checkpoint=path, checkpoint_extra={"run": "a"})
    assert _leftovers(tmp_path) == []
    model2, opt2, _, trainer2 = _setup(False)
    extra = trainer2.load_checkpoint(path)
    assert extra["epoch"] == 1 and trainer2.epoch == 1 and extra["run"] == "a"
    assert len(extra["history"]["loss"]) == 1
    rest = trainer2.fit(x, y, epochs=3, batch_size=16, verbose=0, initial_epoch=trainer2.epoch)
    assert extra["history"]["loss"] + rest["loss"] == full["loss"]


# --- every byte covered: fault injection ------------------------------------------------------
def _small_run(tmp_path):
    """A model with a 0-d parameter and buffer, Adam and a scheduler, trained a little and saved."""
    model = _model()
    model.scale = nn.Parameter(mg.tensor(1.5))
    model.register_buffer("count", mg.tensor(3))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2)
    _train_steps(model, opt, *_data(), steps=2)
    sched.step()
    path = tmp_path / "run.safetensors"
    mg.save_checkpoint(path, model=model, optimizer=opt, scheduler=sched, epoch=7)
    return path, model, opt, sched


def _snapshot(model, opt):
    """The model's weights and the optimizer's state as plain, comparable values."""
    sd = opt.state_dict()
    state = {i: {k: v.numpy().copy() if isinstance(v, mg.Tensor) else v for k, v in s.items()}
             for i, s in sd["state"].items()}
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}, repr(sd["param_groups"]), state


def _assert_same(a, b):
    assert a[0].keys() == b[0].keys() and a[1] == b[1] and a[2].keys() == b[2].keys()
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k], err_msg=k)
    for i in a[2]:
        assert a[2][i].keys() == b[2][i].keys()
        for k in a[2][i]:
            np.testing.assert_array_equal(a[2][i][k], b[2][i][k], err_msg=f"state {i} {k}")


def test_editing_the_metadata_is_detected(tmp_path):
    path, model, opt, sched = _small_run(tmp_path)
    data = path.read_bytes()
    for old, new in ((b'\\"epoch\\":7', b'\\"epoch\\":1'), (b'\\"step\\":2', b'\\"step\\":9')):
        assert data.count(old) >= 1, old
        path.write_bytes(data.replace(old, new, 1))
        before = _snapshot(model, opt)
        with pytest.raises(CheckpointError, match=r"run\.safetensors.*corrupted"):
            mg.load_checkpoint(path, model=model, optimizer=opt, scheduler=sched)
        _assert_same(before, _snapshot(model, opt))


def test_every_flipped_byte_and_every_truncation_raises_checkpoint_error(tmp_path):
    path, model, opt, sched = _small_run(tmp_path)
    good = path.read_bytes()
    before = _snapshot(model, opt)
    rng = np.random.default_rng(0)
    bad = tmp_path / "bad.safetensors"
    changed = [good[:i] + bytes([good[i] ^ int(rng.integers(1, 256))]) + good[i + 1:] for i in range(len(good))]
    changed += [good[:n] for n in range(len(good))]
    for i, data in enumerate(changed):
        bad.write_bytes(data)
        with pytest.raises(CheckpointError, match="bad.safetensors"):
            mg.load_checkpoint(bad, model=model, optimizer=opt, scheduler=sched)
        if i % 8 == 0:                               # mg.load reads through the same checks
            with pytest.raises(CheckpointError, match="bad.safetensors"):
                mg.load(bad)
    _assert_same(before, _snapshot(model, opt))
    bad.write_bytes(good)
    assert mg.load_checkpoint(bad, model=model, optimizer=opt, scheduler=sched)["epoch"] == 7


def test_zero_dim_parameters_and_buffers_resume(tmp_path):
    path, model, opt, sched = _small_run(tmp_path)
    back = mg.load(path)
    assert back["model.scale"].shape == () and back["model.count"].shape == ()
    assert back["model.count"].dtype == mg.int64
    other = _model(3)
    other.scale = nn.Parameter(mg.tensor(0.0))
    other.register_buffer("count", mg.tensor(0))
    opt2 = optim.Adam(other.parameters(), lr=1e-2)
    sched2 = optim.lr_scheduler.StepLR(opt2, step_size=2)
    assert mg.load_checkpoint(path, model=other, optimizer=opt2, scheduler=sched2)["epoch"] == 7
    assert other.scale.shape == () and other.scale.item() == model.scale.item()
    assert other.count.item() == 3
    _train_steps(model, opt, *_data(), steps=2)
    _train_steps(other, opt2, *_data(), steps=2)
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)


def test_load_checkpoint_changes_nothing_when_a_part_does_not_fit(tmp_path):
    path, model, opt, sched = _small_run(tmp_path)
    # an optimizer with another group layout: its load fails, the model must keep its weights
    m2 = _model(5)
    m2.scale = nn.Parameter(mg.tensor(0.0))
    m2.register_buffer("count", mg.tensor(0))
    params = list(m2.parameters())
    opt2 = optim.Adam([{"params": params[:2]}, {"params": params[2:]}], lr=1e-2)
    _train_steps(m2, opt2, *_data(), steps=1)
    before = _snapshot(m2, opt2)
    with pytest.raises(ValueError):
        mg.load_checkpoint(path, model=m2, optimizer=opt2)
    _assert_same(before, _snapshot(m2, opt2))
    # a model that does not fit: the optimizer, already restored, is put back as it was
    m3 = _model(6)
    m3.scale = nn.Parameter(mg.tensor(0.0))
    m3.register_buffer("count", mg.tensor([0, 0]))
    opt3 = optim.Adam(m3.parameters(), lr=1e-2)
    _train_steps(m3, opt3, *_data(), steps=1)
    before = _snapshot(m3, opt3)
    with pytest.raises(RuntimeError, match="count"):
        mg.load_checkpoint(path, model=m3, optimizer=opt3)
    _assert_same(before, _snapshot(m3, opt3))


def test_a_save_removes_temporary_files_of_killed_writers(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    path = tmp_path / "w.safetensors"
    writer = ("import sys, time, minigrad as mg, minigrad.io as mio\n"
              "def stall(f, data):\n"
              "    f.write(data[:len(data) // 2]); f.flush(); print('writing', flush=True); time.sleep(60)\n"
              "mio._write_bytes = stall\n"
              "mg.save({'w': mg.zeros(100000)}, sys.argv[1])\n")
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(path)], stdout=subprocess.PIPE) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline() == b"writing\n"
        assert len(_leftovers(tmp_path)) == 2
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        mg.save({"w": mg.ones(3)}, path)
        assert len(_leftovers(tmp_path)) == 1              # the live writer's file stays
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
    mg.save({"w": mg.ones(3)}, path)
    assert _leftovers(tmp_path) == []
    np.testing.assert_array_equal(mg.load(path)["w"].numpy(), np.ones(3))


def test_saving_through_a_symlink_replaces_its_target(tmp_path):
    target = tmp_path / "real.safetensors"
    link = tmp_path / "link.safetensors"
    mg.save({"w": mg.zeros(2)}, target)
    link.symlink_to(target.name)
    mg.save({"w": mg.ones(2)}, link)
    assert link.is_symlink() and os.readlink(link) == target.name
    np.testing.assert_array_equal(mg.load(target)["w"].numpy(), np.ones(2))
    dangling = tmp_path / "dangling.safetensors"
    dangling.symlink_to("later.safetensors")
    mg.save_checkpoint(dangling, model=_model(), epoch=2)
    assert dangling.is_symlink() and (tmp_path / "later.safetensors").is_file()
    assert mg.load_checkpoint(dangling, model=_model())["epoch"] == 2
    assert _leftovers(tmp_path) == []


def test_saving_refuses_what_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        mg.save({"w": mg.ones(2)}, fifo)
    link = tmp_path / "to-pipe"
    link.symlink_to(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        mg.save_checkpoint(link, model=_model())
    with pytest.raises(IsADirectoryError):
        mg.save({"w": mg.ones(2)}, tmp_path)
    import stat
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and link.is_symlink()
    assert _leftovers(tmp_path) == []


def test_big_endian_arrays_and_bytes_paths(tmp_path):
    path = os.fsencode(str(tmp_path / "be.safetensors"))
    a = np.arange(6, dtype=">f4").reshape(2, 3)
    mg.save({"a": a, "b": np.array(7, dtype=">i8")}, path)
    back = mg.load(path)
    np.testing.assert_array_equal(back["a"].numpy(), a)
    assert back["a"].dtype == mg.float32 and back["b"].shape == () and back["b"].item() == 7
    mg.save_checkpoint(path, model=_model(), epoch=4)
    assert mg.load_checkpoint(path, model=_model())["epoch"] == 4


def test_bfloat16_files_from_pytorch_load_as_float32(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    t = torch.tensor([[1.5, -2.25, 3e38], [1e-3, 0.0, -7.0]], dtype=torch.bfloat16)
    save_file({"w": t, "i": torch.arange(3)}, str(tmp_path / "bf16.safetensors"))
    back = mg.load(tmp_path / "bf16.safetensors")
    assert back["w"].dtype == mg.float32 and back["i"].dtype == mg.int64
    np.testing.assert_array_equal(back["w"].numpy(), t.float().numpy())
    save_file({"f8": torch.zeros(2, dtype=torch.float8_e4m3fn)}, str(tmp_path / "f8.safetensors"))
    with pytest.raises(CheckpointError, match="F8_E4M3"):
        mg.load(tmp_path / "f8.safetensors")
