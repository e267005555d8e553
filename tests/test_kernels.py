"""The fused bias + activation kernels (minigrad/kernels.py, csrc/) and the ops built on them."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend, kernels
from minigrad.autograd import gradcheck
from minigrad.ops.nn import bias_act, gelu, linear

try:
    import torch
except ImportError:
    torch = None

ACTS = [None, "relu", "sigmoid", "tanh", "gelu"]
SHAPES = [(1, 1), (1, 17), (19, 1), (7, 13), (3, 5, 11), (513, 1031),
          (1, 1200007), (1200007, 1)]  # the last three are large enough to be split across threads
DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-6, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}
HAS_EXT = backend.ext() is not None
needs_ext = pytest.mark.skipif(not HAS_EXT, reason="minigrad._C is not built (or disabled)")
CUDA = mg.cuda.is_available()
try:
    from scipy.special import erf as _erf
except ImportError:
    _erf = np.vectorize(math.erf, otypes=[np.float64])


def reference_forward(z, b, act):
    """act(z + b) computed in float64 with the textbook formulas."""
    h = z.astype(np.float64) + (0 if b is None else b.astype(np.float64))
    if act is None:
        return h
    if act == "relu":
        return np.maximum(h, 0)
    if act == "sigmoid":
        return 1 / (1 + np.exp(-h))
    if act == "tanh":
        return np.tanh(h)
    return 0.5 * h * (1 + _erf(h / math.sqrt(2)))


def reference_backward(gy, z, b, act):
    h = z.astype(np.float64) + (0 if b is None else b.astype(np.float64))
    d = {None: np.ones_like(h), "relu": (h > 0).astype(np.float64),
         "sigmoid": (s := 1 / (1 + np.exp(-h))) * (1 - s), "tanh": 1 - np.tanh(h) ** 2,
         "gelu": 0.5 * (1 + _erf(h / math.sqrt(2))) + h * np.exp(-h * h / 2) / math.sqrt(2 * math.pi)}[act]
    gz = gy.astype(np.float64) * d
    return gz, gz.reshape(-1, h.shape[-1]).sum(0)


def make(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    b = rng.standard_normal(shape[-1]).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    return z, b, gy


# ---- the C++ extension against the reference -----------------------------------------------------

@needs_ext
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_forward_matches_reference(act, dtype, shape, with_bias):
    z, b, _ = make(shape, dtype)
    b = b if with_bias else None
    assert kernels.path(z, b) == "C++"
    y = kernels.bias_act_forward(z, b, act)
    assert y.shape == z.shape and y.dtype == dtype and y.flags.c_contiguous
    np.testing.assert_allclose(y, reference_forward(z, b, act), **TOL[dtype])


@needs_ext
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 17), (19, 1), (3, 5, 11), (513, 1031)])
def test_forward_in_place_and_out(act, dtype, shape):
    z, b, _ = make(shape, dtype)
    expected = kernels.bias_act_forward(z, b, act)
    out = np.empty_like(z)
    assert kernels.bias_act_forward(z, b, act, out=out) is out
    np.testing.assert_array_equal(out, expected)
    z2 = z.copy()
    assert kernels.bias_act_forward(z2, b, act, out=z2) is z2
    np.testing.assert_array_equal(z2, expected)


@needs_ext
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_reference(act, dtype, shape):
    z, b, gy = make(shape, dtype)
    y = kernels.bias_act_forward(z, b, act)
    saved = z if act == "gelu" else y
    gz, gb = kernels.bias_act_backward(gy, saved, act, b=b)
    ref_gz, ref_gb = reference_backward(gy, z, b, act)
    assert gz.shape == z.shape and gz.dtype == dtype and gb.shape == b.shape and gb.dtype == dtype
    tol = TOL[dtype]
    if act == "relu":  # the kink: y > 0 vs h > 0 differ only where rounding gives h + b == 0
        ref_gz = np.where(y > 0, gy, 0).astype(np.float64)
        ref_gb = ref_gz.reshape(-1, shape[-1]).sum(0)
    np.testing.assert_allclose(gz, ref_gz, **tol)
    n = math.prod(shape[:-1])  # gb sums n terms of gz
    np.testing.assert_allclose(gb, ref_gb, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10 * math.sqrt(n))


@needs_ext
@pytest.mark.parametrize("act", ACTS)
def test_backward_partial_requests(act):
    z, b, gy = make((9, 6), np.float64)
    saved = z if act == "gelu" else kernels.bias_act_forward(z, b, act)
    gz, gb = kernels.bias_act_backward(gy, saved, act, b=b)
    gz_only, none = kernels.bias_act_backward(gy, saved, act, b=b, need_gb=False)
    none2, gb_only = kernels.bias_act_backward(gy, saved, act, b=b, need_gz=False)
    assert none is None and none2 is None
    np.testing.assert_array_equal(gz_only, gz)
    np.testing.assert_array_equal(gb_only, gb)


@needs_ext
def test_float32_special_values():
    z = np.array([[-np.inf, -100.0, -20.0, -1e-8, 0.0, 1e-8, 20.0, 100.0, np.inf, np.nan]], np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for act in ACTS:
            y = kernels.bias_act_forward(z, None, act)
            ref = reference_forward(z[:, :-1], None, act)
            ref = np.where(np.isnan(ref), 0, ref)  # gelu(-inf) = -inf * 0: PyTorch gives 0 too
            got = np.where(np.isnan(y[:, :-1]), 0, y[:, :-1])
            np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-30 if act in (None, "relu") else 1e-7,
                                       err_msg=str(act))
            assert np.isnan(y[0, -1]), act  # NaN propagates


@needs_ext
@pytest.mark.parametrize("shape", [(4096, 300), (1200007, 3), (2, 800003)])
def test_extension_threads_agree(shape):
    z, b, gy = make(shape, np.float32)
    ext = backend.ext()
    n = ext.get_num_threads()
    try:
        ext.set_num_threads(1)
        one = kernels.bias_act_forward(z, b, "gelu"), kernels.bias_act_backward(gy, z, "gelu", b=b)
        ext.set_num_threads(4)
        four = kernels.bias_act_forward(z, b, "gelu"), kernels.bias_act_backward(gy, z, "gelu", b=b)
    finally:
        ext.set_num_threads(n)
    np.testing.assert_array_equal(one[0], four[0])
    np.testing.assert_array_equal(one[1][0], four[1][0])
    np.testing.assert_allclose(one[1][1], four[1][1], rtol=1e-6)


@needs_ext
def test_cached_buffers_are_not_reused_while_alive():
    z, b, _ = make((300, 400), np.float32)
    y1 = kernels.bias_act_forward(z, b, "relu")
    view = y1[1:3]
    del y1
    y2 = kernels.bias_act_forward(z + 1, b, "relu")
    assert not np.shares_memory(view, y2)
    np.testing.assert_array_equal(view, np.maximum(z + b, 0)[1:3])


@needs_ext
def test_extension_rejects_what_it_cannot_do():
    ext = backend.ext()
    z = np.zeros((4, 3), np.float32)
    with pytest.raises(TypeError, match="float32"):
        ext.bias_act_forward(z, np.zeros(3, np.float64), "relu")
    with pytest.raises(ValueError, match="C-contiguous"):
        ext.bias_act_forward(np.zeros((3, 4), np.float32).T, None, "relu")
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        ext.bias_act_forward(z, np.zeros(4, np.float32), "relu")
    with pytest.raises(ValueError, match="unknown activation"):
        ext.bias_act_forward(z, None, "swish")


# ---- the dispatch: fallbacks ----------------------------------------------------------------------

@pytest.mark.parametrize("act", ACTS)
def test_non_contiguous_takes_numpy_path_and_is_right(act):
    z, b, gy = make((12, 10), np.float64)
    zt, gyt = z.T, gy.T  # (10, 12), Fortran order
    bt = np.arange(12, dtype=np.float64) / 7
    assert kernels.path(zt, bt) == "NumPy"
    y = kernels.bias_act_forward(zt, bt, act)
    np.testing.assert_allclose(y, reference_forward(zt, bt, act), rtol=1e-12, atol=1e-14)
    gz, gb = kernels.bias_act_backward(gyt, zt if act == "gelu" else y, act, b=bt)
    ref_gz, ref_gb = reference_backward(gyt, zt, bt, act)
    np.testing.assert_allclose(gz, ref_gz, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gb, ref_gb, rtol=1e-12, atol=1e-12)
    assert not np.shares_memory(y, zt)  # not written in place by accident


@pytest.mark.parametrize("dtype", [np.float16, np.int64])
def test_other_dtypes_take_numpy_path(dtype):
    z = np.arange(-6, 6).reshape(3, 4).astype(dtype)
    assert kernels.path(z, None) == "NumPy"
    np.testing.assert_array_equal(kernels.bias_act_forward(z, None, "relu"), np.maximum(z, 0))


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
def test_integer_inputs_give_torchs_dtype(act):
    x = mg.tensor([-2, 0, 3])
    y, ty = getattr(x, act)(), getattr(torch.tensor([-2, 0, 3]), act)()
    assert str(y.dtype) == str(ty.dtype).replace("torch.", "")
    np.testing.assert_allclose(y.numpy(), ty.numpy(), rtol=1e-6)


FALLBACK_SCRIPT = r"""
import math, numpy as np
from minigrad import backend, kernels
assert backend.ext() is None, "extension should be disabled"
info = backend.backend_info()
assert info["cpu"].startswith("NumPy fallback"), info
erf = np.vectorize(math.erf)
rng = np.random.default_rng(1)
for dtype in (np.float32, np.float64):
    z = rng.standard_normal((33, 17)).astype(dtype); b = rng.standard_normal(17).astype(dtype)
    gy = rng.standard_normal((33, 17)).astype(dtype)
    assert kernels.path(z, b) == "NumPy"
    h = z.astype(np.float64) + b
    ref = {None: h, "relu": np.maximum(h, 0), "sigmoid": 1 / (1 + np.exp(-h)), "tanh": np.tanh(h),
           "gelu": 0.5 * h * (1 + erf(h / math.sqrt(2)))}
    for act, r in ref.items():
        y = kernels.bias_act_forward(z, b, act)
        assert y.dtype == dtype, (act, y.dtype)
        np.testing.assert_allclose(y, r, rtol=3e-6, atol=3e-6)
        z2 = z.copy(); kernels.bias_act_forward(z2, b, act, out=z2)
        np.testing.assert_allclose(z2, r, rtol=3e-6, atol=3e-6)
        gz, gb = kernels.bias_act_backward(gy, z if act == "gelu" else y, act, b=b)
        assert gz.dtype == dtype and gb.shape == (17,)
import minigrad as mg
from minigrad.ops.nn import linear
from minigrad.autograd import gradcheck
x = mg.tensor(rng.standard_normal((4, 5)), requires_grad=True)
w = mg.tensor(rng.standard_normal((3, 5)), requires_grad=True)
bb = mg.tensor(rng.standard_normal(3), requires_grad=True)
for act in (None, "relu", "sigmoid", "tanh", "gelu"):
    assert gradcheck(lambda x, w, b: linear(x, w, b, act), [x, w, bb])
print("fallback ok")
"""


def test_fallback_with_extension_disabled():
    env = dict(os.environ, MINIGRAD_DISABLE_EXT="1")
    r = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT], env=env, capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0, r.stderr
    assert "fallback ok" in r.stdout


def test_backend_info_names_the_cpu_path():
    info = backend.backend_info()
    assert info["cpu"] == ("C++ (minigrad._C)" if HAS_EXT else info["cpu"])
    assert info["cpu"].startswith("C++") or info["cpu"].startswith("NumPy fallback")
    assert "cuda" in info


# ---- the differentiable ops -----------------------------------------------------------------------

def t64(a, requires_grad=True):
    return mg.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", [(1, 1), (4, 6), (2, 3, 5)])
def test_bias_act_gradcheck(act, shape):
    z, b, _ = make(shape, np.float64, seed=2)
    z = z + 0.05 * np.sign(z)  # keep relu away from its kink
    assert gradcheck(lambda z, b: bias_act(z, b, act), [t64(z), t64(b - b.mean())])
    assert gradcheck(lambda z: bias_act(z, None, act), [t64(z)])


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("x_shape", [(5, 7), (7,), (2, 3, 7)])
def test_linear_gradcheck(act, with_bias, x_shape):
    rng = np.random.default_rng(3)
    x, w = t64(rng.standard_normal(x_shape)), t64(rng.standard_normal((4, 7)) / 2)
    if with_bias:
        assert gradcheck(lambda x, w, b: linear(x, w, b, act), [x, w, t64(rng.standard_normal(4))])
    else:
        assert gradcheck(lambda x, w: linear(x, w, None, act), [x, w])


def test_gelu_gradcheck():
    assert gradcheck(gelu, [t64(np.linspace(-4, 4, 12).reshape(3, 4) + 0.01)])


@pytest.mark.parametrize("act", ACTS)
def test_linear_forward_matches_unfused(act):
    rng = np.random.default_rng(4)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in [(64, 33), (17, 33), (17,)])
    y = linear(mg.tensor(x), mg.tensor(w), mg.tensor(b), act)
    assert y.shape == (64, 17) and y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), reference_forward(x.astype(np.float64) @ w.T.astype(np.float64), b, act),
                               rtol=1e-4, atol=1e-5)


def test_linear_only_grads_asked_for():
    rng = np.random.default_rng(5)
    x = mg.tensor(rng.standard_normal((3, 4)))
    w = mg.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    b = mg.tensor(rng.standard_normal(2))
    linear(x, w, b, "tanh").sum().backward()
    assert w.grad is not None and x.grad is None and b.grad is None


def test_shape_and_dtype_errors_name_both_sides():
    x, w = mg.zeros(32, 5), mg.zeros(10, 64)
    with pytest.raises(ValueError, match=r"input has 5 features \(shape \(32, 5\)\) but weight expects 64 "
                                         r"\(shape \(10, 64\)\)"):
        linear(x, w)
    with pytest.raises(ValueError, match=r"bias has shape \(3,\).*\(10, 64\)"):
        linear(mg.zeros(32, 64), w, mg.zeros(3))
    with pytest.raises(ValueError, match=r"bias has shape \(4,\) but input has 5 features \(shape \(32, 5\)\)"):
        bias_act(x, mg.zeros(4), "relu")
    with pytest.raises(TypeError, match="float64"):
        bias_act(x, mg.zeros(5, dtype=mg.float64), "relu")
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(x, mg.zeros(5), "swish")


# ---- against PyTorch --------------------------------------------------------------------------------

@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("act", ACTS)
def test_linear_matches_torch(act):
    rng = np.random.default_rng(6)
    xs, ws, bs, gs = (rng.standard_normal(s) for s in [(8, 5), (3, 5), (3,), (8, 3)])
    x, w, b = t64(xs), t64(ws), t64(bs)
    y = linear(x, w, b, act)
    y.backward(mg.tensor(gs))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (xs, ws, bs))
    tact = {None: lambda t: t, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "gelu": torch.nn.functional.gelu}[act]
    ty = tact(torch.nn.functional.linear(tx, tw, tb))
    ty.backward(torch.tensor(gs))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    for mine, theirs in [(x, tx), (w, tw), (b, tb)]:
        np.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("act", ACTS)
def test_float32_forward_matches_torch(act):
    z, b, _ = make((256, 300), np.float32, seed=7)
    y = kernels.bias_act_forward(z, b, act)
    tact = {None: lambda t: t, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "gelu": torch.nn.functional.gelu}[act]
    ty = tact(torch.from_numpy(z) + torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(y, ty, rtol=3e-6, atol=3e-6)


# ---- CUDA -------------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="no CUDA device")
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_kernels_match_cpu(act, dtype):
    cp = backend.cupy()
    z, b, gy = make((65, 129), dtype)
    assert kernels.path(cp.asarray(z), cp.asarray(b)) == "CuPy"
    y = kernels.bias_act_forward(cp.asarray(z), cp.asarray(b), act)
    np.testing.assert_allclose(cp.asnumpy(y), reference_forward(z, b, act), **TOL[dtype])
    saved = z if act == "gelu" else cp.asnumpy(y)
    gz, gb = kernels.bias_act_backward(cp.asarray(gy), cp.asarray(saved), act, b=cp.asarray(b))
    ref_gz, ref_gb = reference_backward(gy, z, b, act)
    np.testing.assert_allclose(cp.asnumpy(gz), ref_gz, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cp.asnumpy(gb), ref_gb, rtol=1e-4, atol=1e-4)
    zz = cp.asarray(z)
    assert kernels.bias_act_forward(zz, cp.asarray(b), act, out=zz) is zz
    np.testing.assert_allclose(cp.asnumpy(zz), cp.asnumpy(y), rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="no CUDA device")
@pytest.mark.parametrize("act", ACTS)
def test_cuda_linear_gradcheck_against_cpu(act):
    rng = np.random.default_rng(8)
    xs, ws, bs, gs = (rng.standard_normal(s) for s in [(6, 5), (4, 5), (4,), (6, 4)])
    grads = []
    for dev in ("cpu", "cuda"):
        x, w, b = (mg.tensor(a, device=dev, requires_grad=True) for a in (xs, ws, bs))
        y = linear(x, w, b, act)
        y.backward(mg.tensor(gs, device=dev))
        grads.append([y.numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy()])
    for c, g in zip(*grads):
        np.testing.assert_allclose(g, c, rtol=1e-10, atol=1e-12)


# ---- the activation table: one source for the NumPy path, the CuPy sources and the C++ switch ------

TABLE = list(kernels.ACTIVATIONS)
# parameters away from the defaults, so that a kernel ignoring them fails
PARAMS = {"leaky_relu": (0.2,), "elu": (0.7,), "softplus": (2.0, 5.0)}


def torch_act(act, params=None):
    F = torch.nn.functional
    p = PARAMS.get(act, ()) if params is None else params
    return {None: lambda t: t, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
            "leaky_relu": lambda t: F.leaky_relu(t, *p), "elu": lambda t: F.elu(t, *p), "silu": F.silu,
            "softplus": lambda t: F.softplus(t, *p)}[act]


def table_reference(z, b, gy, act, params):
    """The table's formulas on the NumPy path, in float64: (y, gz, gb)."""
    z64, b64, gy64 = (None if a is None else a.astype(np.float64) for a in (z, b, gy))
    y = kernels._numpy_forward(z64, b64, act, params, None)
    saves_z = kernels.ACTIVATIONS[act].saves == "z"
    gz, gb = kernels._numpy_backward(gy64, z64 if saves_z else y, act, b64 if saves_z else None, params, True, True)
    return y, gz, gb


@needs_ext
def test_cpp_switch_has_a_case_for_each_table_row():
    assert set(backend.ext().activations()) == {"identity"} | (set(TABLE) - {None})


@needs_ext
@pytest.mark.parametrize("act", TABLE)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (3, 5, 11), (64, 3000)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_cpp_matches_table(act, dtype, shape, with_bias):
    z, b, gy = make(shape, dtype, seed=11)
    b = b if with_bias else None
    params = PARAMS.get(act, kernels.activation_params(act))
    assert kernels.path(z, b) == "C++"
    y = kernels.bias_act_forward(z, b, act, params=params)
    saved = z if kernels.ACTIVATIONS[act].saves == "z" else y
    gz, gb = kernels.bias_act_backward(gy, saved, act, b=b, params=params)
    ref_y, ref_gz, ref_gb = table_reference(z, b, gy, act, params)
    # the C++ and NumPy forms round differently, which shows where a derivative cancels (1 + tanh(.) for
    # gelu_tanh's large negative inputs)
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == np.float64 else dict(rtol=4e-6, atol=4e-6)
    assert y.dtype == gz.dtype == dtype
    np.testing.assert_allclose(y, ref_y, **tol)
    if act == "relu":  # the kink: y > 0 vs z + b > 0 differ only where rounding gives z + b == 0
        ref_gz = np.where(y > 0, gy, 0)
    np.testing.assert_allclose(gz, ref_gz, **tol)
    if with_bias:
        n = math.prod(shape[:-1])
        np.testing.assert_allclose(gb, ref_gz.reshape(-1, shape[-1]).sum(0),
                                   rtol=tol["rtol"] * 10, atol=tol["atol"] * 10 * math.sqrt(n))


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("act", TABLE)
@pytest.mark.parametrize("path", ["table", "dispatch"])
def test_activation_matches_torch_float64(act, path):
    """Values and gradients of each row against PyTorch, on the NumPy path and through the dispatch."""
    rng = np.random.default_rng(12)
    z = rng.standard_normal((40, 25)) * 4
    z[0, :5] = [-50, -25, 0.5, 25, 50]  # softplus' threshold and saturating tails
    b, gy = rng.standard_normal(25), rng.standard_normal((40, 25))
    params = PARAMS.get(act, ())
    if path == "table":
        y, gz, gb = table_reference(z, b, gy, act, params)
    else:
        y = kernels.bias_act_forward(z, b, act, params=params)
        saved = z if kernels.ACTIVATIONS[act].saves == "z" else y
        gz, gb = kernels.bias_act_backward(gy, saved, act, b=b, params=params)
    tz, tb = torch.tensor(z, requires_grad=True), torch.tensor(b, requires_grad=True)
    ty = torch_act(act)(tz + tb)
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-13, atol=1e-15)
    # atol: where tanh(.) rounds to -1 in one library and not the other, gelu_tanh's derivative is 0 or ~1e-14
    np.testing.assert_allclose(gz, tz.grad.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("act", TABLE)
def test_float32_and_float16_match_torch(act):
    z, b, _ = make((64, 300), np.float32, seed=13)
    t = torch_act(act)
    y = kernels.bias_act_forward(z, b, act, params=PARAMS.get(act))
    np.testing.assert_allclose(y, t(torch.from_numpy(z) + torch.from_numpy(b)).numpy(), rtol=4e-6, atol=4e-6)
    z16, b16 = z.astype(np.float16), b.astype(np.float16)
    y16 = kernels.bias_act_forward(z16, b16, act, params=PARAMS.get(act))  # float16 stays float16
    assert y16.dtype == np.float16
    ty16 = t(torch.from_numpy(z16) + torch.from_numpy(b16)).numpy()
    np.testing.assert_allclose(y16.astype(np.float32), ty16.astype(np.float32), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("act", TABLE)
def test_cupy_sources_come_from_the_table(act):
    """Each kernel source is the table's formula: every parameter is read, nothing from Python leaks."""
    for direction in ("fwd", "bwd"):
        src = kernels.cupy_source(direction, act)
        assert src.endswith(";") and src.split()[-3 if act is None else 0] and "None" not in src
        assert src.rsplit(";", 2)[-2].strip().startswith("y =" if direction == "fwd" else "gz =")
        for i in range(len(kernels.ACTIVATIONS[act].params)):
            assert f"p{i}" in src


@needs_ext
@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("act", TABLE)
@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values_match_torch(act, dtype):
    z = np.array([[-np.inf, -100.0, -20.0, -1e-8, 0.0, 1e-8, 20.0, 100.0, np.inf, np.nan]], dtype)
    y = kernels.bias_act_forward(z, None, act)
    ty = torch_act(act, ())(torch.from_numpy(z)).numpy()
    if act == "gelu":  # PyTorch's float32 gelu(inf) is NaN (its vectorized erf path), its float64 one inf
        ty[0, 8] = np.inf
    np.testing.assert_allclose(y, ty, rtol=2e-6, atol=1e-37, equal_nan=True)


def test_activation_params_defaults_and_errors():
    assert kernels.activation_params("softplus") == (1.0, 20.0)
    assert kernels.activation_params("softplus", 2) == (2.0, 20.0)
    assert kernels.activation_params("relu") == ()
    with pytest.raises(TypeError, match="takes 1 parameter"):
        kernels.activation_params("elu", 1.0, 2.0)


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="no CUDA device")
@pytest.mark.parametrize("act", TABLE)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_kernels_with_parameters_match_cpu(act, dtype):
    cp = backend.cupy()
    z, b, gy = make((33, 17), dtype, seed=14)
    params = PARAMS.get(act, kernels.activation_params(act))
    y = kernels.bias_act_forward(cp.asarray(z), cp.asarray(b), act, params=params)
    saved = z if kernels.ACTIVATIONS[act].saves == "z" else cp.asnumpy(y)
    gz, gb = kernels.bias_act_backward(cp.asarray(gy), cp.asarray(saved), act, b=cp.asarray(b), params=params)
    ref_y, ref_gz, ref_gb = table_reference(z, b, gy, act, params)
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cp.asnumpy(y), ref_y, **tol)
    np.testing.assert_allclose(cp.asnumpy(gz), ref_gz, **tol)
    np.testing.assert_allclose(cp.asnumpy(gb), ref_gb, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
def test_a_new_row_is_all_an_activation_needs(monkeypatch):
    """softsign, added as one row with no C++ case: Linear runs it (on NumPy), gradients included, and
    its CuPy source is generated."""
    row = kernels.Activation(lambda m, h: h / (1 + m.where(h < 0, -h, h)),
                             lambda m, g, s: g / ((1 + m.where(s < 0, -s, s)) * (1 + m.where(s < 0, -s, s))),
                             saves="z")
    monkeypatch.setitem(kernels.ACTIVATIONS, "softsign", row)
    monkeypatch.setitem(kernels._DEFAULTS, "softsign", ())
    rng = np.random.default_rng(15)
    lin = mg.nn.Linear(5, 3, activation="softsign", dtype=np.float64)
    xs = rng.standard_normal((4, 5))
    x = t64(xs)
    lin(x).sum().backward()
    tx = torch.tensor(xs, requires_grad=True)
    tw, tb = (torch.tensor(p.numpy(), requires_grad=True) for p in (lin.weight, lin.bias))
    ty = torch.nn.functional.softsign(torch.nn.functional.linear(tx, tw, tb))
    ty.sum().backward()
    np.testing.assert_allclose(lin(x).numpy(), ty.detach().numpy(), rtol=1e-12)
    for mine, theirs in [(x, tx), (lin.weight, tw), (lin.bias, tb)]:
        np.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), rtol=1e-12, atol=1e-14)
    assert gradcheck(lambda z: bias_act(z, None, "softsign"), [t64(rng.standard_normal((3, 4)))])
    src = kernels.cupy_source("fwd", "softsign")
    assert src.startswith("y = (h / ((T)1.0 + ((h < (T)0.0) ?") and src.endswith(";")
