"""Differential test: every op against PyTorch, property-based (hypothesis).

One table (OPS) drives it: each row draws its operands (random shapes including 0-d, size-0 and
broadcasting; dtypes bool, int32, int64, float16, float32, float64 and Python scalars; dims in and
out of range; permutations; index expressions) and applies the same expression to torch and to
minigrad. The results must agree in type (a (values, indices) pair or a tensor), dtype, shape and
values, and so must the gradients of every floating input; where PyTorch raises, minigrad raises an
error of the same class, and nowhere else. derandomize=True keeps CI deterministic.

Values come from a half-integer grid in [-2, 2]: exact in float16, full of ties, zeros and negative
numbers, so the conventions at kinks (max ties, abs and relu at 0, clip bounds, 0 ** negative) are
compared too.

Intentional differences are not drawn; each is listed in DIFFERENCES with its reason (README,
"Differences from PyTorch")."""
import operator
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

import minigrad as mg

from conftest import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

pytestmark = pytest.mark.skipif(torch is None, reason="PyTorch not installed")

DIFFERENCES = {
    "transpose(perm) / transpose() / transpose(a, b, c)": "NumPy's forms, kept from minigrad's design "
    "(PyTorch accepts only transpose(a, b) and raises TypeError for the others)",
    "matmul of two dtypes": "promotes as the elementwise ops do, so NumPy arrays mix freely (PyTorch raises)",
    "x[[[0, 1]]] (a list of lists)": "an integer-array index, which PyTorch announces as its future reading "
    "(today it warns and reads it as the tuple x[[0, 1]])",
    "bool ** Python bool": "raises NotImplementedError, as bool ** bool tensors do (PyTorch returns bool); "
    "a Python bool base (False ** t) fails an internal assert inside PyTorch, so neither is drawn",
    "keepdim= without a dim in sum / mean": "accepted (PyTorch raises TypeError)",
    "floating-point warnings": "NumPy's RuntimeWarnings show (log(0), 0 ** -1.0); PyTorch is silent",
    "var / std with dim=()": "PyTorch reduces over every dim but its gradient divides by 1 - correction "
    "(inf for the default correction); minigrad's gradient divides by the N of the reduction it computed",
}

DTYPES = ("bool", "int32", "int64", "float16", "float32", "float64")
FLOATS = ("float16", "float32", "float64")
TOL = {"float16": 2e-3, "float32": 1e-5, "float64": 1e-10}


def values(rng, shape, dtype):
    """A half-integer grid in [-2, 2] (exact in every float dtype), small ints, or bools."""
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)
    if dtype.startswith("int"):
        return np.asarray(rng.integers(-3, 4, shape), dtype)
    return np.asarray(rng.integers(-4, 5, shape) / 2, dtype)


# --- drawing operands -------------------------------------------------------------------------
shapes = st.lists(st.integers(0, 3), max_size=3).map(tuple)
nonempty_shapes = st.lists(st.integers(1, 3), max_size=3).map(tuple)


def draw_rng(data):
    return np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))


def draw_tensor(data, shape=None, dtypes=DTYPES):
    shape = data.draw(shapes, label="shape") if shape is None else shape
    return values(draw_rng(data), shape, data.draw(st.sampled_from(dtypes), label="dtype"))


def broadcast_partner(data, shape):
    """A shape that broadcasts with shape: fewer leading dims and some dims set to 1 (or, rarely, one
    that does not broadcast)."""
    lead = data.draw(st.integers(0, len(shape)))
    out = tuple(1 if data.draw(st.booleans()) else n for n in shape[lead:])
    if data.draw(st.integers(0, 9)) == 0:
        out = out + (4,)
    return out


def draw_operand(data, shape, dtypes=DTYPES, scalars=("bool", "int", "float")):
    """A tensor of a broadcasting shape, or a Python bool, int or float."""
    kind = data.draw(st.sampled_from(("tensor",) * 3 + scalars))
    if kind == "tensor":
        return draw_tensor(data, broadcast_partner(data, shape), dtypes)
    return data.draw({"bool": st.booleans(), "int": st.integers(-3, 3),
                      "float": st.sampled_from([-1.5, -0.5, 0.0, 0.5, 2.0, 2.5])}[kind], label=kind)


def draw_dim(data, ndim, extra=1):
    """A dim in [-ndim - extra, ndim + extra): in range and, less often, just out of it."""
    n = max(ndim, 1)
    return data.draw(st.integers(-n - extra, n - 1 + extra), label="dim")


def draw_dims(data, ndim):
    """None, an int, or a tuple of dims (maybe repeated or out of range)."""
    kind = data.draw(st.sampled_from(("none", "int", "tuple")))
    if kind == "none":
        return None
    if kind == "int":
        return draw_dim(data, ndim)
    return tuple(data.draw(st.lists(st.integers(-ndim, max(ndim - 1, 0)), max_size=max(ndim, 1))))


def draw_index(data, shape):
    """An index expression: ints, slices, integer lists, bool masks, 0-d integer tensors, None and
    at most one Ellipsis, in any order, over some of shape's dims (sometimes too many)."""
    items, dims = [], list(shape)
    n_items = data.draw(st.integers(0, len(shape) + 1))
    length = data.draw(st.integers(0, 3))  # every integer list has this length, so they broadcast
    for _ in range(n_items):
        size = dims.pop(0) if dims else 2
        kind = data.draw(st.sampled_from(("int", "slice", "list", "mask", "mask2", "none", "tensor0", "bool")))
        if kind == "int":
            items.append(data.draw(st.integers(-size - 1, size)))
        elif kind == "slice":
            items.append(slice(data.draw(st.one_of(st.none(), st.integers(-3, 3))),
                               data.draw(st.one_of(st.none(), st.integers(-3, 3))),
                               data.draw(st.one_of(st.none(), st.integers(1, 2)))))
        elif kind == "list":
            items.append([data.draw(st.integers(-size, max(size - 1, 0))) for _ in range(length)])
        elif kind == "mask":
            items.append([data.draw(st.booleans()) for _ in range(size)])
        elif kind == "mask2":  # a 2-D bool tensor over this dim and the next
            size2 = dims.pop(0) if dims else 2
            items.append(Mask(np.asarray(data.draw(st.lists(st.booleans(), min_size=size * size2,
                                                            max_size=size * size2))).reshape(size, size2)))
        elif kind == "tensor0":
            items.append(Int0d(data.draw(st.integers(-size, max(size - 1, 0)))))
        else:  # None, or a Python bool (a new dim, indexed by [0] or [])
            items.append(None if kind == "none" else data.draw(st.booleans()))
            dims.insert(0, size)
    if data.draw(st.booleans()):
        items.insert(data.draw(st.integers(0, len(items))), Ellipsis)
    return tuple(items) if len(items) != 1 or data.draw(st.booleans()) else items[0]


class Int0d(int):
    """A 0-d integer tensor in an index (made in each library by lib_index)."""


class Mask:
    """A bool tensor in an index (made in each library by lib_index)."""
    def __init__(self, array):
        self.array = array


def lib_index(lib, index):
    """index with its 0-d integer tensors and bool masks made in lib."""
    def conv(i):
        if isinstance(i, Int0d):
            return lib.tensor(int(i))
        return lib.tensor(i.array) if isinstance(i, Mask) else i
    return tuple(conv(i) for i in index) if isinstance(index, tuple) else conv(index)


# --- the table --------------------------------------------------------------------------------
@dataclass
class Op:
    name: str
    draw: object      # data -> (operands, params): operands are arrays, scalars or lists of arrays
    fn: object        # (lib, *operands, **params) -> tensor or (values, indices)
    examples: int = 60


def unary(data, dtypes=DTYPES):
    return [draw_tensor(data, dtypes=dtypes)], {}


def binary(data, dtypes=DTYPES, scalars=("bool", "int", "float")):
    x = draw_tensor(data, dtypes=dtypes)
    y = draw_operand(data, x.shape, dtypes, scalars)
    return ([y, x] if data.draw(st.booleans(), label="reflected") else [x, y]), {}


def with_dim(data, dtypes=DTYPES, keepdim=True, dims=draw_dim):
    x = draw_tensor(data, dtypes=dtypes)
    params = {"dim": dims(data, x.ndim)}
    if keepdim:
        params["keepdim"] = data.draw(st.booleans())
    return [x], params


def reduction(data, dtypes=DTYPES):
    x, = draw_tensor(data, dtypes=dtypes),
    return [x], {"dim": draw_dims(data, x.ndim), "keepdim": data.draw(st.booleans())}


def reduce_kwargs(p):
    """dim and keepdim, or neither (PyTorch's reductions take keepdim only with a dim)."""
    return p if p["dim"] is not None else {}


def sequence(data):
    """1-3 tensors for cat / stack: one shape, except (sometimes) along the dim cat joins."""
    shape = data.draw(shapes)
    dim = draw_dim(data, len(shape), extra=2)
    dtype = data.draw(st.sampled_from(DTYPES))
    rng = draw_rng(data)
    out = []
    for _ in range(data.draw(st.integers(1, 3))):
        s = list(shape)
        if s and data.draw(st.booleans()):
            s[dim % len(s)] = data.draw(st.integers(0, 3))
        out.append(values(rng, tuple(s), dtype))
    return [out], {"dim": dim}


def reshape_draw(data):
    x = draw_tensor(data)
    n = x.size
    options = [(n,), (-1,), (1, n), (n, 1, -1), (), (n + 1,), (-1, -1), (0, -1)]
    if n % 2 == 0 and n:
        options += [(2, n // 2), (2, -1, 1)]
    return [x], {"shape": data.draw(st.sampled_from(options))}


def permute_draw(data):
    x = draw_tensor(data)
    perm = list(data.draw(st.permutations(range(x.ndim))))
    if data.draw(st.integers(0, 4)) == 0:  # a bad permutation: short, repeated or out of range
        perm = perm[:-1] if perm and data.draw(st.booleans()) else perm + [data.draw(st.integers(-4, 3))]
    perm = [d - x.ndim if data.draw(st.booleans()) else d for d in perm]
    return [x], {"dims": tuple(perm)}


def transpose_draw(data):
    x = draw_tensor(data)
    return [x], {"dim0": draw_dim(data, x.ndim), "dim1": draw_dim(data, x.ndim)}


def index_draw(data):
    x = draw_tensor(data)
    return [x], {"index": draw_index(data, x.shape)}


def where_draw(data):
    a = draw_tensor(data)
    cond = values(draw_rng(data), broadcast_partner(data, a.shape), "bool")
    b = draw_operand(data, a.shape)
    return [cond, a, b], {}


def matmul_draw(data):
    dtype = data.draw(st.sampled_from(("int64", "float32", "float64")))
    k = data.draw(st.integers(0, 3))
    a = data.draw(st.sampled_from([(k,), (2, k), (2, 2, k), ()]))
    b = data.draw(st.sampled_from([(k,), (k, 3), (2, k, 3), (k + 1, 2)]))
    rng = draw_rng(data)
    return [values(rng, a, dtype), values(rng, b, dtype)], {}


def linear_draw(data):
    """x (..., k) @ w.T + b for w (o, k) (k sometimes off by one), b (o,) or None, one float dtype."""
    dtype, k, o = data.draw(st.sampled_from(FLOATS[1:])), data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    rng = draw_rng(data)
    x = values(rng, data.draw(st.sampled_from([(k,), (2, k), (2, 2, k)])), dtype)
    w = values(rng, (o, k + (data.draw(st.integers(0, 5)) == 0)), dtype)
    return [x, w, values(rng, (o,), dtype) if data.draw(st.booleans()) else None], {}


def clip_draw(data):
    x = draw_tensor(data, dtypes=("int64",) + FLOATS)
    bound = st.one_of(st.none(), st.sampled_from([-1.5, -0.5, 0.0, 1.0]))
    return [x], {"lo": data.draw(bound), "hi": data.draw(bound)}


def pow_scalar_draw(data):
    x = draw_tensor(data, dtypes=DTYPES[1:])
    return [x], {"e": data.draw(st.sampled_from([-1, 0, 1, 2, 3, 0.5, -0.5, 2.5]))}


def squeeze_draw(data):
    x = draw_tensor(data)
    return [x], {"dim": data.draw(st.one_of(st.none(), st.integers(-x.ndim - 1, x.ndim)))}


def flatten_draw(data):
    x = draw_tensor(data)
    return [x], {"start": draw_dim(data, x.ndim, 0), "end": draw_dim(data, x.ndim, 0)}


def cat(lib, xs, dim): return lib.cat(xs, dim=dim)
def stack(lib, xs, dim): return lib.stack(xs, dim=dim)


BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
          "pow": operator.pow, "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
          "gt": operator.gt, "ge": operator.ge, "and": operator.and_, "or": operator.or_, "xor": operator.xor}

OPS = [Op(name, binary if name != "pow" else lambda d: binary(d, scalars=("int", "float")),
          lambda lib, a, b, f=f: f(a, b), 150) for name, f in BINARY.items()] + [
    Op("neg", lambda d: unary(d, DTYPES[1:]), lambda lib, x: -x),
    Op("invert", lambda d: unary(d), lambda lib, x: ~x),
    Op("abs", unary, lambda lib, x: x.abs()),
    Op("exp", unary, lambda lib, x: x.exp()),
    Op("log", unary, lambda lib, x: x.log()),
    Op("sqrt", unary, lambda lib, x: x.sqrt()),
    Op("relu", unary, lambda lib, x: x.relu()),
    Op("sigmoid", unary, lambda lib, x: x.sigmoid()),
    Op("tanh", unary, lambda lib, x: x.tanh()),
    Op("pow_scalar", pow_scalar_draw, lambda lib, x, e: x ** e, 100),
    Op("clip", clip_draw, lambda lib, x, lo, hi: x.clip(lo, hi)),
    Op("sum", reduction, lambda lib, x, **p: x.sum(**reduce_kwargs(p)), 100),
    Op("mean", lambda d: reduction(d, FLOATS), lambda lib, x, **p: x.mean(**reduce_kwargs(p))),
    Op("amax", reduction, lambda lib, x, **p: x.amax(**{"dim": (), **reduce_kwargs(p)}), 100),
    Op("amin", reduction, lambda lib, x, **p: x.amin(**{"dim": (), **reduce_kwargs(p)})),
    Op("max", lambda d: unary(d), lambda lib, x: x.max()),
    Op("max_dim", with_dim, lambda lib, x, dim, keepdim: x.max(dim, keepdim=keepdim), 100),
    Op("min_dim", with_dim, lambda lib, x, dim, keepdim: x.min(dim=dim, keepdim=keepdim)),
    Op("softmax", lambda d: with_dim(d, keepdim=False), lambda lib, x, dim: x.softmax(dim)),
    Op("log_softmax", lambda d: with_dim(d, keepdim=False), lambda lib, x, dim: x.log_softmax(dim=dim)),
    Op("reshape", reshape_draw, lambda lib, x, shape: x.reshape(shape)),
    Op("permute", permute_draw, lambda lib, x, dims: x.permute(*dims) if dims else x.permute(dims), 100),
    Op("permute_tuple", permute_draw, lambda lib, x, dims: x.permute(dims)),
    Op("transpose", transpose_draw, lambda lib, x, dim0, dim1: x.transpose(dim0, dim1)),
    Op("squeeze", squeeze_draw, lambda lib, x, dim: x.squeeze() if dim is None else x.squeeze(dim)),
    Op("unsqueeze", lambda d: with_dim(d, keepdim=False, dims=lambda d, n: draw_dim(d, n + 1)),
       lambda lib, x, dim: x.unsqueeze(dim)),
    Op("flatten", flatten_draw, lambda lib, x, start, end: x.flatten(start, end)),
    Op("getitem", index_draw, lambda lib, x, index: x[lib_index(lib, index)], 400),
    Op("cat", sequence, cat, 100),
    Op("stack", sequence, stack, 100),
    Op("where", where_draw, lambda lib, c, a, b: lib.where(c, a, b), 100),
    Op("matmul", matmul_draw, lambda lib, a, b: a @ b, 100),
    Op("linear", linear_draw, lambda lib, x, w, b: lib.nn.functional.linear(x, w, b)),
    Op("argmax", with_dim, lambda lib, x, dim, keepdim: x.argmax(dim=dim, keepdim=keepdim)),
    Op("T", lambda d: ([draw_tensor(d, d.draw(st.tuples(st.integers(0, 3), st.integers(0, 3))))], {}),
       lambda lib, x: x.T),
    Op("to_dtype", lambda d: ([draw_tensor(d)], {"dtype": d.draw(st.sampled_from(DTYPES))}),
       lambda lib, x, dtype: x.to(getattr(lib, dtype))),
]


# Tensor methods and function forms built on the ops above (tests/test_methods.py has their edge cases)
def norm_draw(data):
    x, params = reduction(data, FLOATS)
    return x, {**params, "p": data.draw(st.sampled_from([1, 2, 3, 0.5, 0, float("inf"), float("-inf"), "fro"]))}


def var_draw(data):
    x, params = reduction(data, FLOATS)
    if params["dim"] == ():  # see DIFFERENCES
        params["dim"] = None
    return x, {**params, "correction": data.draw(st.sampled_from([None, 0, 1, 2]))}


def masked_fill_draw(data):
    x = draw_tensor(data)
    mask = draw_tensor(data, broadcast_partner(data, x.shape), dtypes=("bool",))
    return [x, mask], {"value": data.draw(st.sampled_from([0, -1.5, True, 2]))}


def repeat_draw(data):
    x = draw_tensor(data)
    extra = data.draw(st.integers(-1, 2))
    return [x], {"sizes": tuple(data.draw(st.lists(st.integers(0, 3), min_size=max(x.ndim + extra, 0),
                                                   max_size=max(x.ndim + extra, 0))))}


def tensor_first(a, b):
    return (a, b) if hasattr(a, "shape") else (b, a)


def correction_kwargs(p):
    kw = reduce_kwargs({"dim": p["dim"], "keepdim": p["keepdim"]})
    return kw if p["correction"] is None else {**kw, "correction": p["correction"]}


OPS += [
    Op("norm", norm_draw, lambda lib, x, p, **d: x.norm(p, **reduce_kwargs(d)), 100),
    Op("var", var_draw, lambda lib, x, **p: x.var(**correction_kwargs(p))),
    Op("std", var_draw, lambda lib, x, **p: lib.std(x, **correction_kwargs(p))),
    Op("logsumexp", lambda d: with_dim(d, FLOATS), lambda lib, x, dim, keepdim: x.logsumexp(dim, keepdim)),
    Op("argmin", with_dim, lambda lib, x, dim, keepdim: lib.argmin(x, dim, keepdim)),
    Op("clone", unary, lambda lib, x: x.clone()),
    Op("repeat", repeat_draw, lambda lib, x, sizes: x.repeat(*sizes)),
    Op("masked_fill", masked_fill_draw, lambda lib, x, mask, value: x.masked_fill(mask, value)),
    Op("add_alpha", lambda d: binary(d, FLOATS, scalars=("float",)), lambda lib, a, b: tensor_first(a, b)[0].add(
        tensor_first(a, b)[1], alpha=2)),
    Op("sub_alpha", lambda d: binary(d, FLOATS, scalars=("float",)), lambda lib, a, b: tensor_first(a, b)[0].sub(
        tensor_first(a, b)[1], alpha=0.5)),
    Op("clamp", clip_draw, lambda lib, x, lo, hi: lib.clamp(x, min=lo, max=hi)),
]


# --- running both -----------------------------------------------------------------------------
def to_lib(lib, x):
    """An operand in lib: arrays become tensors (floating ones require grad), lists of arrays lists
    of tensors, scalars stay."""
    if isinstance(x, list) and x and isinstance(x[0], np.ndarray):
        return [to_lib(lib, a) for a in x]
    if not isinstance(x, np.ndarray):
        return x
    t = torch.tensor(x) if lib is torch else mg.tensor(x)
    return t.requires_grad_(True) if x.dtype.kind == "f" else t


def leaves(operands):
    flat = []
    for x in operands:
        flat += x if isinstance(x, list) else [x]
    return [t for t in flat if hasattr(t, "requires_grad") and t.requires_grad]


def run(lib, op, operands, params, upstream_seed):
    """(outputs, gradients of the floating leaves) or the exception raised."""
    inputs = [to_lib(lib, x) for x in operands]
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            out = op.fn(lib, *inputs, **params)
            outs = list(out) if isinstance(out, tuple) else [out]
            kind = type(out).__name__ if isinstance(out, tuple) else "tensor"
            first = outs[0]
            if first.requires_grad:
                g = values(np.random.default_rng(upstream_seed), tuple(first.shape), str(first.dtype).split(".")[-1])
                first.backward(torch.tensor(g) if lib is torch else mg.tensor(g))
    except Exception as e:  # noqa: BLE001  (its class is what is compared)
        return e
    grads = [None if t.grad is None else t.grad.numpy() for t in leaves(inputs)]
    return kind, [(str(o.dtype).split(".")[-1], tuple(o.shape), o.detach().numpy()) for o in outs], grads


def assert_close(got, expected, dtype, what):
    if dtype in TOL:
        np.testing.assert_allclose(got, expected, rtol=TOL[dtype], atol=TOL[dtype], equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(got, expected, err_msg=what)


def compare(op, operands, params, upstream_seed):
    expected = run(torch, op, operands, params, upstream_seed)
    got = run(mg, op, operands, params, upstream_seed)
    case = (f"{op.name} of {[getattr(x, 'dtype', x) for x in operands]} "
            f"{[getattr(x, 'shape', '') for x in operands]} {params}")
    if isinstance(expected, Exception):
        assert isinstance(got, type(expected)), f"{case}: PyTorch raises {expected!r}, minigrad gives {got!r}"
        return
    assert not isinstance(got, Exception), f"{case}: minigrad raises {got!r}, PyTorch gives {expected[1]}"
    (kind, outs, grads), (tkind, touts, tgrads) = got, expected
    assert kind == tkind, f"{case}: {kind} vs PyTorch's {tkind}"
    for (dt, shape, v), (tdt, tshape, tv) in zip(outs, touts):
        assert (dt, shape) == (tdt, tshape), f"{case}: dtype/shape {dt} {shape}, PyTorch {tdt} {tshape}"
        assert_close(v, tv, dt, f"{case}: values")
    for g, tg in zip(grads, tgrads):
        if g is None or tg is None:  # an input the output does not depend on: None or zeros
            assert not np.any(g if tg is None else tg), f"{case}: gradient {g} vs PyTorch's {tg}"
            continue
        assert str(g.dtype) == str(tg.dtype), f"{case}: gradient dtype {g.dtype}, PyTorch {tg.dtype}"
        assert_close(g, tg, str(g.dtype), f"{case}: gradient")


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_matches_torch(op):
    @settings(max_examples=op.examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        operands, params = op.draw(data)
        compare(op, operands, params, data.draw(st.integers(0, 2**16), label="upstream"))
    check()

