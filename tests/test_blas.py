"""CPU matmul through MKL (the `mkl` extra): every layout and dtype the extension takes agrees with
NumPy, the rest falls back to NumPy, and gradients through it check out."""
import os
import subprocess
import sys

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend, kernels
from minigrad.autograd import gradcheck
from minigrad.ops.nn import linear


@pytest.fixture
def mkl(monkeypatch):
    """MKL loaded; records each product it is offered (True: it took it)."""
    blas = backend.blas()
    if blas is None:
        pytest.skip(f"no MKL matmul here: {backend.matmul_info()}")
    calls = []
    real = blas.matmul

    def spy(a, b, out):
        took = real(a, b, out)
        calls.append(took)
        return took
    monkeypatch.setattr(blas, "matmul", spy)
    return calls


def _layouts(rng, m, k, dtype):
    """(name, array of shape (m, k)) in each layout BLAS takes without a copy, and one it does not."""
    c = rng.standard_normal((m, k)).astype(dtype)
    t = np.ascontiguousarray(c.T).T
    tall = rng.standard_normal((m + 4, k)).astype(dtype)
    wide = rng.standard_normal((m + 3, k + 5)).astype(dtype)
    return [("C", c, True), ("transposed", t, True), ("row slice", tall[2:m + 2], True),
            ("column slice", wide[:m, 3:k + 3], True), ("transposed slice", wide.T.copy().T[1:m + 1, :k], True),
            ("strided", np.repeat(c, 2, axis=1)[:, ::2], False)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_layout_matches_numpy(mkl, dtype):
    rng = np.random.default_rng(0)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for na, a, a_ok in _layouts(rng, 37, 23, dtype):
        for nb, b, b_ok in _layouts(rng, 23, 19, dtype):
            mkl.clear()
            out = kernels.matmul(a, b)
            assert out.dtype == dtype and out.shape == (37, 19)
            np.testing.assert_allclose(out, a @ b, **tol, err_msg=f"{na} @ {nb}")
            assert mkl == [a_ok and b_ok], f"{na} @ {nb}: MKL took it: {mkl}"


def test_writes_into_out_and_returns_it(mkl):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((8, 5)), rng.standard_normal((5, 6))
    out = np.full((8, 6), np.nan)
    assert kernels.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-12)
    assert mkl == [True]


def test_other_dtypes_and_shapes_stay_on_numpy(mkl):
    rng = np.random.default_rng(2)
    a32, a64 = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((3, 2))
    mixed = kernels.matmul(a32, a64)
    assert mixed.dtype == np.float64 and np.allclose(mixed, a32 @ a64)
    ints = np.arange(12).reshape(4, 3)
    assert np.array_equal(kernels.matmul(ints, ints.T), ints @ ints.T)
    stacks = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 3, 5))
    assert np.allclose(kernels.matmul(*stacks), np.matmul(*stacks))
    transposed_stack = rng.standard_normal((2, 3, 4)).swapaxes(1, 2)
    assert np.allclose(kernels.matmul(transposed_stack, a64), transposed_stack @ a64)
    assert mkl == []
    empty = kernels.matmul(np.ones((0, 3)), np.ones((3, 2)))
    assert empty.shape == (0, 2)
    zero_k = kernels.matmul(np.ones((2, 0)), np.ones((0, 3)))
    assert np.array_equal(zero_k, np.zeros((2, 3)))
    assert mkl == [False, False]  # empty products reach the extension, which leaves them to NumPy


@pytest.mark.parametrize("shapes", [((5,), (5, 3)), ((4, 5), (5,)), ((5,), (5,)), ((2, 3, 5), (5, 4)),
                                    ((2, 3, 5), (5,))])
def test_one_gemm_covers_vectors_and_a_stack_times_a_matrix(mkl, shapes):
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal(s) for s in shapes)
    out = kernels.matmul(a, b)
    assert out.shape == np.matmul(a, b).shape
    np.testing.assert_allclose(out, np.matmul(a, b), rtol=1e-12)
    assert mkl == [True]


def test_extension_checks_shapes(mkl):
    blas = backend.blas()
    with pytest.raises(ValueError, match=r"\(2, 3\) @ \(4, 5\)"):
        blas.matmul(np.ones((2, 3)), np.ones((4, 5)), np.empty((2, 5)))
    with pytest.raises(ValueError, match="2-D"):
        blas.matmul(np.ones(3), np.ones((3, 1)), np.empty(1))
    out = np.empty((2, 2))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        blas.matmul(np.ones((2, 3)), np.ones((3, 2)), out)


def test_repeatable_whatever_the_alignment(mkl):
    """Training resumes exactly from a checkpoint only if a product does not depend on where its
    operands happen to lie in memory."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((96, 200)).astype(np.float32), rng.standard_normal((150, 200)).astype(np.float32)
    ref = kernels.matmul(a, b.T)
    for off in (1, 3, 7):
        a2 = np.empty(a.size + off, np.float32)[off:].reshape(a.shape)
        a2[...] = a
        b2 = np.empty(b.size + 2 * off, np.float32)[2 * off:].reshape(b.shape)
        b2[...] = b
        assert np.array_equal(kernels.matmul(a2, b2.T), ref)


@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_linear_gradcheck(mkl, activation):
    rng = np.random.default_rng(4)
    x = mg.tensor(rng.standard_normal((5, 4)), requires_grad=True)
    w = mg.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    b = mg.tensor(rng.standard_normal(3), requires_grad=True)
    assert gradcheck(lambda x, w, b: linear(x, w, b, activation=activation), (x, w, b))
    assert mkl and all(mkl)


@pytest.mark.parametrize("shapes", [((4, 3), (3, 5)), ((3,), (3, 5)), ((4, 3), (3,)), ((2, 4, 3), (3, 5))])
def test_matmul_gradcheck(mkl, shapes):
    rng = np.random.default_rng(5)
    a, b = (mg.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes)
    assert gradcheck(lambda a, b: a @ b, (a, b))


def test_training_agrees_with_numpy_matmul(mkl, monkeypatch):
    def train():
        mg.manual_seed(0)
        model = mg.nn.Sequential(mg.nn.Linear(20, 32, activation="relu"), mg.nn.Linear(32, 4))
        opt = mg.optim.Adam(model.parameters(), lr=1e-2)
        rng = np.random.default_rng(6)
        x, y = mg.tensor(rng.standard_normal((64, 20)).astype(np.float32)), mg.tensor(rng.integers(0, 4, 64))
        losses = []
        for _ in range(20):
            opt.zero_grad()
            loss = mg.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return np.array(losses)

    with_mkl = train()
    assert all(mkl)
    monkeypatch.setattr(backend, "_blas", None)
    monkeypatch.setattr(backend, "_blas_error", "off for this test")
    np.testing.assert_allclose(with_mkl, train(), rtol=1e-4)
    assert with_mkl[-1] < with_mkl[0] * 0.7


def test_without_the_mkl_package_matmul_is_numpys(monkeypatch):
    monkeypatch.setattr(backend, "_mkl_library", lambda: None)
    monkeypatch.setattr(backend, "_blas", None)
    monkeypatch.setattr(backend, "_blas_error", None)
    assert backend.blas() is None
    assert backend.matmul_info().startswith("NumPy (")
    a = np.ones((512, 512), np.float32)
    assert np.array_equal(kernels.matmul(a, a), a @ a)


def test_disabled_by_environment():
    env = dict(os.environ, MINIGRAD_DISABLE_MKL="1")
    out = subprocess.run([sys.executable, "-c", "from minigrad import backend; print(backend.matmul_info())"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "NumPy (disabled by MINIGRAD_DISABLE_MKL=1)"


def test_info_names_the_matmul_library():
    assert "cpu_matmul" in backend.backend_info()
    assert backend.backend_info()["cpu_matmul"] == backend.matmul_info()
