"""Tensor creation, dtypes, devices, conversions, errors and repr."""
import numpy as np
import pytest

import minigrad as mg


def test_dtype_inference_follows_torch():
    assert mg.tensor(1.5).dtype == mg.float32
    assert mg.tensor([1, 2]).dtype == mg.int64
    assert mg.tensor([True, False]).dtype == mg.bool
    assert mg.tensor(np.zeros(2)).dtype == mg.float64
    assert mg.tensor(np.zeros(2, np.int32)).dtype == mg.int32
    assert mg.tensor([1, 2], dtype=mg.float64).dtype == mg.float64


def test_scalars_do_not_upcast():
    x32, x64 = mg.ones(2), mg.ones(2, dtype=mg.float64)
    for y in (x32 * 2.5, 2.5 * x32, x32 + 1, x32 / 3, 1 - x32, x32 ** 2):
        assert y.dtype == mg.float32
    assert (x64 * 2.5).dtype == mg.float64
    assert (mg.tensor([1, 2]) * 2).dtype == mg.int64
    assert (mg.tensor([1, 2]) * 0.5).dtype == mg.float32
    assert (mg.tensor([True, False]) + 2).tolist() == [3, 2]
    assert (mg.tensor([True, False]) | False).tolist() == [True, False]


I32, I64, F16, F32, F64, B = (np.dtype(d) for d in ("int32", "int64", "float16", "float32", "float64", "bool"))


@pytest.mark.parametrize("a, b, op, expected", [
    ((I64, (2,)), 0.5, "mul", F32), ((I64, (2,)), (I64, (2,)), "truediv", F32), ((B, (2,)), (B, (2,)), "truediv", F32),
    ((I64, (2,)), (F32, (2,)), "add", F32), (0.7, (I64, (2,)), "pow", F32), ((F16, (2,)), (F32, (2,)), "add", F32),
    ((F16, (2,)), 2.5, "mul", F16), ((I32, (2,)), 2, "add", I32), ((B, (2,)), (B, (2,)), "add", B),
    ((B, (2,)), 2, "add", I64), ((I32, (2,)), (F64, ()), "add", F64), ((F16, (2,)), (F64, ()), "add", F16),
    ((I32, (2,)), (I64, ()), "add", I32), ((I32, ()), (I64, ()), "add", I64), ((I64, (2,)), (F16, (2,)), "sub", F16),
    ((F32, (2,)), (I32, (2,)), "lt", B), ((I32, (2,)), (I64, (2,)), "and_", I64), (True, (I32, (2,)), "or_", I32),
])
def test_binary_ops_promote_as_torch(a, b, op, expected):
    import operator
    make = lambda s: mg.ones(s[1], dtype=s[0]) if isinstance(s, tuple) else s  # noqa: E731
    assert getattr(operator, op)(make(a), make(b)).dtype == expected


def test_promotion_is_differentiable_and_keeps_gradient_dtypes():
    x = mg.ones(3, dtype=mg.float16, requires_grad=True)
    w = mg.ones(3, requires_grad=True)
    y = x * w
    assert y.dtype == mg.float32
    y.sum().backward()
    assert x.grad.dtype == mg.float16 and w.grad.dtype == mg.float32


def test_bool_subtraction_and_negation_raise_as_torch():
    b = mg.tensor([True, False])
    for bad in (lambda: b - b, lambda: b - 1, lambda: 2 - b, lambda: -b, lambda: mg.tensor([1, 2]) ** -1):
        with pytest.raises(RuntimeError):
            bad()


def test_bitwise_ops_on_integers_and_bools():
    x = mg.tensor([6, 3])
    assert (x & 5).tolist() == [4, 1] and (5 & x).tolist() == [4, 1]
    assert (x | 5).tolist() == [7, 7] and (5 | x).tolist() == [7, 7]
    assert (x ^ 5).tolist() == [3, 6] and (5 ^ x).tolist() == [3, 6]
    assert (~x).tolist() == [-7, -4]
    b = mg.tensor([True, False])
    assert (b & True).tolist() == [True, False] and (True ^ b).tolist() == [False, True]
    assert (~b).tolist() == [False, True]
    with pytest.raises(TypeError):
        ~mg.ones(2)
    with pytest.raises(NotImplementedError):
        mg.ones(2) & mg.ones(2)


def test_full_infers_its_dtype_from_the_fill_value():
    assert mg.full((2,), 4).dtype == mg.int64
    assert mg.full((2,), True).dtype == mg.bool
    assert mg.full((2,), 1.5).dtype == mg.float32
    assert mg.full((2,), 4, dtype=mg.float64).dtype == mg.float64


def test_creation_shapes_as_ints_or_tuple():
    mg.manual_seed(0)
    a = mg.randn(3, 4)
    mg.manual_seed(0)
    b = mg.randn((3, 4))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert mg.zeros(2, 3).shape == mg.ones((2, 3)).shape == (2, 3)
    assert mg.full((2,), 7.0).tolist() == [7.0, 7.0]
    assert mg.arange(5).dtype == mg.int64 and mg.arange(0, 1, 0.5).tolist() == [0.0, 0.5]
    np.testing.assert_array_equal(mg.eye(3).numpy(), np.eye(3))
    assert mg.rand(4).numpy().min() >= 0
    assert mg.zeros_like(a).shape == (3, 4) and mg.ones_like(a, dtype=mg.float64).dtype == mg.float64
    assert mg.zeros(2, requires_grad=True).requires_grad


def test_conversions():
    t = mg.tensor([[1.0, 2.0]])
    assert t.tolist() == [[1.0, 2.0]]
    assert t.sum().item() == 3.0
    assert float(t[0, 1]) == 2.0
    assert isinstance(t.numpy(), np.ndarray)
    assert t.to(mg.float64).dtype == mg.float64
    assert t.to("cpu") is t
    assert t.ndim == 2 and len(t) == 1
    with pytest.raises(ValueError, match="one element"):
        t.item()


def test_non_numeric_data_is_a_type_error():
    with pytest.raises(TypeError):
        mg.tensor(["a", "b"])
    with pytest.raises(TypeError):
        mg.tensor({"a": 1})


def test_shape_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(5, 2\).*\(4\).*\(5\)"):
        mg.ones(3, 4) @ mg.ones(5, 2)
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(3,\).*dimension -1"):
        mg.ones(3, 4) + mg.ones(3)
    with pytest.raises(ValueError, match="cannot reshape"):
        mg.ones(3, 4).reshape(5, 2)
    with pytest.raises(ValueError, match=r"tensor 1 has shape \(2, 4\)"):
        mg.cat([mg.ones(3, 4), mg.ones(2, 4)], dim=1)


def test_two_devices_are_named():
    a, b = mg.ones(2), mg.ones(2)
    b.device = mg.device("cuda:1")  # a stand-in: only the device tag matters for the check
    with pytest.raises(RuntimeError, match="cpu and cuda:1"):
        a + b


def test_device_parsing():
    assert str(mg.device("cuda")) == "cuda:0"
    assert mg.device("cpu") == "cpu"
    with pytest.raises(ValueError, match="expected a device"):
        mg.device("tpu")


def test_comparisons_are_outside_the_tape():
    x = mg.tensor([1.0, -1.0], requires_grad=True)
    m = x > 0
    assert m.dtype == mg.bool and not m.requires_grad
    assert m.tolist() == [True, False]
    assert (x == x).tolist() == [True, True]


def test_in_place_ops_respect_the_tape():
    w = mg.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w += 1
    with mg.no_grad():
        w -= 0.5
        w.mul_(2)
    assert w.tolist() == [1.0, 1.0] and w.requires_grad


def test_numpy_arrays_mix_with_tensors():
    x = mg.ones(2, requires_grad=True)
    y = np.array([2.0, 3.0], dtype=np.float32) * x
    assert isinstance(y, mg.Tensor)
    y.sum().backward()
    assert x.grad.tolist() == [2.0, 3.0]


def test_repr_is_torch_like():
    assert repr(mg.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert "requires_grad=True" in repr(mg.ones(2, requires_grad=True))
    assert "grad_fn=<MulBackward>" in repr(mg.ones(2, requires_grad=True) * 2)
    assert "dtype=float64" in repr(mg.ones(2, dtype=mg.float64))


def test_cuda_queries_work_without_a_gpu():
    assert isinstance(mg.cuda.is_available(), bool)
    assert mg.cuda.device_count() >= 0


def test_import_does_not_touch_cupy():
    import subprocess
    import sys
    code = "import sys, minigrad; assert 'cupy' not in sys.modules, 'cupy imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.cuda
def test_round_trip_to_cuda():
    x = mg.randn(3, 4, requires_grad=True)
    y = x.cuda()
    assert y.device == "cuda:0" and y.is_cuda
    (y * 2).sum().backward()
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), 2)


def test_devices_survive_deepcopy_and_pickle():
    import copy
    import pickle
    assert pickle.loads(pickle.dumps(mg.device("cuda:1"))) is mg.device("cuda:1")
    layer = mg.nn.Linear(3, 2)
    clone = copy.deepcopy(layer)
    assert clone.weight.device is layer.weight.device
    assert clone.weight.data is not layer.weight.data


def test_squeeze_and_unsqueeze_match_torch_shapes_and_pass_gradients():
    x = mg.randn(3, 1, 4, 1, requires_grad=True)
    assert x.unsqueeze(0).shape == (1, 3, 1, 4, 1)
    assert x.unsqueeze(-1).shape == (3, 1, 4, 1, 1)
    assert x.unsqueeze(2).shape == (3, 1, 1, 4, 1)
    assert x.squeeze().shape == (3, 4)
    assert x.squeeze(1).shape == (3, 4, 1)
    assert x.squeeze(-1).shape == (3, 1, 4)
    assert x.squeeze(0) is x                      # size 3: nothing to drop, as PyTorch
    assert x.squeeze((1, 3)).shape == (3, 4)
    assert mg.tensor(2.0).unsqueeze(0).shape == (1,)
    assert mg.ones(1).squeeze().shape == ()
    w = mg.tensor(np.arange(12.0).reshape(3, 4))
    (x.squeeze().unsqueeze(0) * w).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.arange(12.0).reshape(3, 1, 4, 1))


def test_squeeze_and_unsqueeze_reject_bad_dims():
    x = mg.zeros(2, 3)
    with pytest.raises(IndexError, match=r"expected to be in range of \[-3, 2\], but got 3"):
        x.unsqueeze(3)
    with pytest.raises(IndexError, match=r"expected to be in range of \[-2, 1\], but got -3"):
        x.squeeze(-3)
    with pytest.raises(IndexError, match=r"\[-1, 0\], but got 1"):
        mg.tensor(1.0).squeeze(1)


def test_squeeze_of_a_0d_tensor_is_the_tensor():
    x = mg.tensor(2.0)
    assert x.squeeze(0).shape == x.squeeze(-1).shape == x.squeeze().shape == ()


def test_permute_is_a_permutation_and_transpose_swaps_two():
    a = np.arange(24.0).reshape(2, 3, 4)
    x = mg.tensor(a)
    np.testing.assert_array_equal(mg.tensor(a[0]).permute(0, 1).numpy(), a[0])   # identity, not a swap
    np.testing.assert_array_equal(x.permute(2, 0, 1).numpy(), a.transpose(2, 0, 1))
    np.testing.assert_array_equal(x.permute((1, -1, 0)).numpy(), a.transpose(1, 2, 0))
    np.testing.assert_array_equal(x.transpose(0, 2).numpy(), a.swapaxes(0, 2))
    np.testing.assert_array_equal(x.transpose(-1, 1).numpy(), a.swapaxes(2, 1))
    np.testing.assert_array_equal(x.transpose().numpy(), a.T)


@pytest.mark.parametrize("bad, error", [
    (lambda x: x.permute(0, 1), RuntimeError), (lambda x: x.permute(0, 1, 1), RuntimeError),
    (lambda x: x.permute(0, 1, 3), IndexError), (lambda x: x.transpose(0, 3), IndexError),
    (lambda x: x.reshape(5, 5), RuntimeError), (lambda x: x @ mg.ones(3, 2), RuntimeError),
    (lambda x: x + mg.ones(3), RuntimeError), (lambda x: x.clip(), RuntimeError),
])
def test_bad_shapes_and_dims_raise_torchs_class(bad, error):
    with pytest.raises(error):
        bad(mg.ones(2, 3, 4))


def test_cat_and_stack_check_dims_as_torch():
    z = mg.zeros
    with pytest.raises(IndexError):
        mg.cat([z(2), z(2)], 1)
    with pytest.raises(IndexError):
        mg.stack([z(2), z(2)], -3)
    with pytest.raises(RuntimeError, match="zero-dimensional"):
        mg.cat([z(()), z(())])
    assert mg.cat([z(2), z(3)], -1).shape == (5,) and mg.stack([z(2), z(2)], -1).shape == (2, 2)
