"""The CUDA paths' Python logic, on every run without a GPU: the `cuda`-marked tests run again in a
subprocess against tests/cupy_double, a strict NumPy-backed stand-in for CuPy. That checks what
minigrad asks of CuPy (no host arrays as operands, no implicit conversions, one dtype per kernel,
the right device current), never GPU numerics or speed.

The `cuda`-marked tests below reproduce bugs that a GPU would hit at once; on a real GPU they run
as they are (the two-device one needs two GPUs)."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend, kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOUBLE = os.path.join(ROOT, "tests", "cupy_double")
CUDA = mg.cuda.is_available()
cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device")
ACTS = list(kernels.ACTIVATIONS)


@pytest.mark.slow
def test_cuda_tests_pass_against_the_cupy_double():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [DOUBLE, os.environ.get("PYTHONPATH")])))
    # two NCCL ranks are two processes: the double's NCCL is a world of one
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-m", "cuda", "-p", "no:cacheprovider",
           "--deselect", "tests/test_distributed.py::test_nccl_two_ranks", "tests"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-8000:] + p.stderr[-2000:]
    passed = re.search(r"(\d+) passed", p.stdout)
    assert passed and int(passed.group(1)) > 100, p.stdout[-3000:]
    assert "no CUDA device" not in p.stdout, "the double was not picked up as cupy"


# ---- the double itself refuses what CuPy refuses -----------------------------------------------

@cuda
@needs_cuda
def test_the_double_is_strict():
    cp = backend.cupy()
    if not getattr(cp, "IS_TEST_DOUBLE", False):
        pytest.skip("checks the CuPy test double, and this is a real CuPy")
    a = cp.asarray(np.arange(6.0).reshape(2, 3))
    assert not isinstance(a, np.ndarray)
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        a + np.ones(3)
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        np.ones(3) < a
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(a)
    k = cp.ElementwiseKernel("T z, T b", "T y", "T h = z + b; y = h < (T)0 ? (T)0 : h;", "relu_bias")
    np.testing.assert_array_equal(k(a, cp.asarray(np.array([-4.0, 0.0, 1.0]))).get(),
                                  np.maximum(np.arange(6.0).reshape(2, 3) + [-4, 0, 1], 0))
    with pytest.raises(TypeError, match="Type is mismatched"):
        k(a, cp.asarray(np.ones(3, np.float32)))
    with pytest.raises(cp.cuda.compiler.CompileException):
        cp.ElementwiseKernel("T x", "T y", "y = exp(x);", "exp_int")(cp.arange(3))
    with cp.cuda.Device(1):
        b = cp.zeros(3)
    assert b.device.id == 1 and cp.cuda.Device().id == 0
    with pytest.raises(ValueError, match="different from the current device"):
        b + 1


# ---- bugs on the GPU paths ---------------------------------------------------------------------

@cuda
@needs_cuda
def test_kernel_path_takes_what_the_cupy_kernels_compile_for():
    cp = backend.cupy()
    f32, f64, f16 = (cp.ones((2, 3), dt) for dt in (np.float32, np.float64, np.float16))
    assert kernels.path(f32, cp.ones(3, np.float32)) == "CuPy"
    assert kernels.path(f64, None, f64) == "CuPy"
    assert kernels.path(f16, cp.ones(3, np.float16)) == "CuPy"
    assert kernels.path(f32[:, ::2]) == "CuPy"  # any strides
    assert kernels.path(cp.ones((2, 3), np.int64)) == "NumPy"
    assert kernels.path(cp.ones((2, 3), np.bool_)) == "NumPy"
    assert kernels.path(f32, f64) == "NumPy"
    assert kernels.path(f32, np.ones(3, np.float32)) == "NumPy"


@cuda
@needs_cuda
@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh", "gelu", None])
def test_integer_arrays_take_the_array_module_path_on_cuda(act):
    cp = backend.cupy()
    z, b = np.arange(-6, 6).reshape(3, 4), np.array([1, -2, 0, 3])
    y = kernels.bias_act_forward(cp.asarray(z), cp.asarray(b), act)
    np.testing.assert_array_equal(cp.asnumpy(y), kernels.bias_act_forward(z, b, act))


@cuda
@needs_cuda
@pytest.mark.parametrize("act", ACTS)
def test_mixed_float_dtypes_take_the_array_module_path_on_cuda(act):
    cp = backend.cupy()
    rng = np.random.default_rng(3)
    gy, z, b = rng.standard_normal((5, 4)), rng.standard_normal((5, 4)).astype(np.float32), \
        rng.standard_normal(4).astype(np.float32)
    saved = z if kernels.ACTIVATIONS[act].saves == "z" else kernels.bias_act_forward(z, b, act)
    gz, gb = kernels.bias_act_backward(cp.asarray(gy), cp.asarray(saved), act, b=cp.asarray(b))
    ref_gz, ref_gb = kernels.bias_act_backward(gy, saved, act, b=b)
    np.testing.assert_allclose(cp.asnumpy(gz), ref_gz, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(cp.asnumpy(gb), ref_gb, rtol=1e-6, atol=1e-6)


@cuda
@needs_cuda
def test_max_backward_keeps_float32_on_cuda():
    mg.manual_seed(0)
    for dev in ("cpu", "cuda"):
        layer = mg.nn.Linear(3, 5, activation="relu").to(dev)
        x = mg.randn(4, 3, device=dev)
        layer(x).amax(axis=1).sum().backward()
        assert layer.weight.grad.dtype == np.float32 and layer.bias.grad.dtype == np.float32


@cuda
@needs_cuda
def test_sum_over_axis_0_of_a_0d_tensor_is_the_same_on_cpu_and_cuda():
    results = []
    for dev in ("cpu", "cuda"):
        x = mg.tensor(3.0, device=dev, requires_grad=True)
        try:
            y = x.sum(0)
        except Exception as e:  # noqa: BLE001  (whatever the CPU does, CUDA must do the same)
            results.append(type(e))
            continue
        y.backward()
        results.append((y.shape, y.item(), x.grad.item()))
    assert results[0] == results[1]


@cuda
@needs_cuda
def test_host_arrays_meet_cuda_tensors_on_the_tensors_device():
    lo, hi, other = np.full(4, -0.5, np.float32), np.full(4, 0.5, np.float32), np.arange(4, dtype=np.float32)
    out = {}
    for dev in ("cpu", "cuda"):
        t = mg.tensor(np.linspace(-1, 1, 4, dtype=np.float32), device=dev)
        r = [t > other, t <= other, t == other, t.clip(lo, hi), t.clamp(lo), t.clip(None, [0.25] * 4)]
        u = t.detach()
        u += other
        u.add_(other, alpha=2)
        u.mul_(other)
        u.clamp_(lo, hi)
        out[dev] = [a.numpy() for a in r + [u]]
        assert all(a.device == dev for a in r + [u])
    for c, g in zip(out["cpu"], out["cuda"]):
        np.testing.assert_array_equal(c, g)


@cuda
@needs_cuda
def test_load_state_dict_takes_cupy_arrays():
    cp = backend.cupy()
    src = mg.nn.Linear(3, 2)
    sd = {k: cp.asarray(v.numpy()) for k, v in src.state_dict().items()}
    for dev in ("cpu", "cuda"):
        dst = mg.nn.Linear(3, 2).to(dev)
        dst.load_state_dict(sd)
        np.testing.assert_array_equal(dst.weight.numpy(), src.weight.numpy())
        np.testing.assert_array_equal(dst.bias.numpy(), src.bias.numpy())


@cuda
@needs_cuda
def test_cuda_n_allocates_and_computes_on_gpu_n():
    cp = backend.cupy()
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")

    def on_gpu0(fn, *args):  # whatever the user made current last, cuda:1 work stays on GPU 1
        cp.cuda.Device(0).use()
        return fn(*args)

    made = [on_gpu0(lambda: mg.zeros(3, device="cuda:1")), on_gpu0(lambda: mg.ones(2, 3, device="cuda:1")),
            on_gpu0(lambda: mg.randn(2, device="cuda:1")), on_gpu0(lambda: mg.arange(3, device="cuda:1")),
            on_gpu0(lambda: mg.eye(2, device="cuda:1")), on_gpu0(lambda: mg.full((2,), 1.5, device="cuda:1")),
            on_gpu0(lambda: mg.tensor([1.0, 2.0], device="cuda:1")), on_gpu0(lambda: mg.ones(2).to("cuda:1")),
            on_gpu0(lambda: mg.ones(2, device="cuda:0").to("cuda:1"))]
    for t in made:
        assert t.device == "cuda:1" and t.data.device.id == 1
    a0, b1 = mg.ones(3, device="cuda:0", requires_grad=True), mg.ones(3, device="cuda:1", requires_grad=True)
    l0, l1 = (a0 * 2).sum(), (b1 * 3).sum()  # ops alternate between the GPUs
    l0.backward()
    l1.backward()
    assert a0.grad.data.device.id == 0 and b1.grad.data.device.id == 1 and a0.grad.tolist() == [2.0] * 3
    mg.manual_seed(0)
    x = mg.randn(8, 3)
    y = mg.tensor(np.arange(8) % 2)
    losses = {}
    for dev in ("cpu", "cuda:1"):
        mg.manual_seed(1)
        model = on_gpu0(lambda: mg.nn.Sequential(mg.nn.Linear(3, 4, activation="tanh"), mg.nn.Linear(4, 2)).to(dev))
        opt = mg.optim.Adam(model.parameters(), lr=0.1)
        xd, yd = on_gpu0(lambda: x.to(dev)), on_gpu0(lambda: y.to(dev))
        for _ in range(3):
            loss = on_gpu0(lambda: mg.nn.functional.cross_entropy(model(xd), yd))
            on_gpu0(opt.zero_grad)
            on_gpu0(loss.backward)
            on_gpu0(opt.step)
        losses[dev] = loss.item()
        for p in model.parameters():
            assert p.device == dev and (dev == "cpu" or p.data.device.id == 1 and p.grad.data.device.id == 1)
    assert losses["cpu"] == pytest.approx(losses["cuda:1"], rel=1e-5)


@cuda
@needs_cuda
@pytest.mark.parametrize("act", ACTS)
def test_float16_runs_the_cupy_kernels(act):
    cp = backend.cupy()
    rng = np.random.default_rng(4)
    z, b, gy = (rng.standard_normal(s).astype(np.float16) for s in [(6, 5), (5,), (6, 5)])
    assert kernels.path(cp.asarray(z), cp.asarray(b)) == "CuPy"
    y = kernels.bias_act_forward(cp.asarray(z), cp.asarray(b), act)
    assert y.dtype == np.float16
    np.testing.assert_allclose(cp.asnumpy(y).astype(np.float32), kernels.bias_act_forward(z, b, act), rtol=2e-2, atol=2e-2)
    saved = z if kernels.ACTIVATIONS[act].saves == "z" else kernels.bias_act_forward(z, b, act)
    gz, gb = kernels.bias_act_backward(cp.asarray(gy), cp.asarray(saved), act, b=cp.asarray(b))
    ref_gz, ref_gb = kernels.bias_act_backward(gy, saved, act, b=b)
    assert gz.dtype == np.float16
    np.testing.assert_allclose(cp.asnumpy(gz).astype(np.float32), ref_gz, rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(cp.asnumpy(gb).astype(np.float32), ref_gb, rtol=2e-2, atol=5e-2)


@cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ACTS)
def test_every_activation_kernel_matches_the_cpu_path(act, dtype):
    cp = backend.cupy()
    rng = np.random.default_rng(5)
    z, b, gy = (rng.standard_normal(s).astype(dtype) * 3 for s in [(7, 6), (6,), (7, 6)])
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    y = kernels.bias_act_forward(cp.asarray(z), cp.asarray(b), act)
    np.testing.assert_allclose(cp.asnumpy(y), kernels.bias_act_forward(z, b, act), **tol)
    saved = z if kernels.ACTIVATIONS[act].saves == "z" else kernels.bias_act_forward(z, b, act)
    gz, gb = kernels.bias_act_backward(cp.asarray(gy), cp.asarray(saved), act, b=cp.asarray(b))
    ref_gz, ref_gb = kernels.bias_act_backward(gy, saved, act, b=b)
    np.testing.assert_allclose(cp.asnumpy(gz), ref_gz, **tol)
    np.testing.assert_allclose(cp.asnumpy(gb), ref_gb, **tol)
