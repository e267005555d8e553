"""Shape and data movement ops: expand (broadcasting), reshape, transpose, indexing, cat, stack, casts."""
import numpy as np

from .. import autograd
from ..autograd import Function, sum_to_shape  # noqa: F401  (ops.movement.sum_to_shape)
from ..backend import device_of, get_array_module, to_device


class ShapeError(RuntimeError, ValueError):
    """Shapes that do not fit together. PyTorch raises RuntimeError; subclassing ValueError too keeps
    `except ValueError` (NumPy's class for the same mistakes) working."""


def dim_index(dim, ndim):
    """dim in [0, ndim) from PyTorch's range [-ndim, ndim) (a 0-d tensor takes 0 and -1), as torch."""
    n = ndim or 1
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return dim % n


def shape_arg(shape):
    """A shape given PyTorch's two ways, as *ints or as one tuple or list, as a tuple."""
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


class Expand(Function):
    @staticmethod
    def forward(ctx, x, shape):
        return get_array_module(x).broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output  # the engine sums a broadcast gradient back to the input's shape


def expand(x, *shape):
    """A read-only broadcast view of x with the given shape: -1 keeps a dimension's size, new
    dimensions go in front, and only size-1 dimensions grow (PyTorch's rules and errors)."""
    shape, lead = shape_arg(shape), len(shape_arg(shape)) - x.ndim
    if lead < 0:
        raise ShapeError(f"expand: the number of sizes provided ({len(shape)}) must be greater or equal to the "
                         f"number of dimensions in the tensor ({x.ndim})")
    out = []
    for i, n in enumerate(shape):
        have = x.shape[i - lead] if i >= lead else None
        if n == -1:
            if have is None:
                raise ShapeError(f"The expanded size of the tensor (-1) isn't allowed in a leading, non-existing "
                                 f"dimension {i}")
            n = have
        elif have not in (None, 1, n) or n < 0:
            raise ShapeError(f"The expanded size of the tensor ({n}) must match the existing size ({have}) at "
                             f"non-singleton dimension {i}.  Target sizes: {list(shape)}.  Tensor sizes: "
                             f"{list(x.shape)}")
        out.append(n)
    shape = tuple(out)
    return x if shape == x.shape else Expand.apply(x, shape=shape)


class Clone(Function):
    @staticmethod
    def forward(ctx, x):
        return x.copy()  # C-contiguous

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output


def clone(x):
    """A copy of x in new (C-contiguous) memory; differentiable."""
    return Clone.apply(x)


def contiguous(x):
    """x itself when its memory is C-contiguous, else a contiguous copy (differentiable)."""
    return x if x.data.flags.c_contiguous else Clone.apply(x)


_shapes = {}


def broadcast_shape(*shapes):
    """NumPy's broadcast shape, with an error naming the shapes and the dimension at fault."""
    out = _shapes.get(shapes)
    if out is not None:
        return out
    ndim = max(len(s) for s in shapes)
    out = []
    for i in range(-ndim, 0):
        sizes = {s[i] for s in shapes if len(s) >= -i} - {1}
        if len(sizes) > 1:
            found = " and ".join(str(s) for s in shapes)
            raise ShapeError(f"shapes {found} cannot be broadcast together: dimension {i} "
                             f"has sizes {sorted(sizes)}")
        out.append(sizes.pop() if sizes else 1)
    if len(_shapes) < 4096:  # shapes repeat every training step; the cache makes the check free
        _shapes[shapes] = tuple(out)
    return tuple(out)


def broadcast(*tensors):
    """Check that the tensors broadcast together (NumPy's rules). Their arrays broadcast inside
    the forward op, and backward() sums every gradient back to its input's shape."""
    s0 = tensors[0].data.shape
    for t in tensors:
        if t.data.shape != s0:
            broadcast_shape(*(t.data.shape for t in tensors))
            break
    return tensors


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.in_shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ShapeError(f"reshape: cannot reshape shape {x.shape} ({x.size} elements) into {shape}") from None

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.reshape(ctx.in_shape)


def reshape(x, *shape):
    shape = shape_arg(shape)
    return x if shape == x.shape else Reshape.apply(x, shape=shape)


def flatten(x, start=0, end=-1):
    """x with dims start..end (inclusive) merged into one; a 0-d x becomes 1-d."""
    s = x.shape
    start, end = dim_index(start, len(s)), dim_index(end, len(s))
    if start > end:
        raise RuntimeError(f"flatten: start_dim ({start}) cannot come after end_dim ({end}) for shape {s}")
    return reshape(x, s[:start] + (int(np.prod(s[start:end + 1])),) + s[end + 1:])


class Transpose(Function):
    @staticmethod
    def forward(ctx, x, axes):
        ctx.axes = axes
        return x.transpose(axes)

    @staticmethod
    def backward(ctx, grad_output):
        inverse = sorted(range(len(ctx.axes)), key=ctx.axes.__getitem__)
        return grad_output.transpose(inverse)


def permute(x, *dims):
    """The dimensions of x reordered: result dimension i is x's dimension dims[i] (dims as *ints or one
    tuple, each in [-ndim, ndim)), as numpy.transpose."""
    dims = shape_arg(dims)
    if len(dims) != x.ndim:
        raise ShapeError(f"permute: expected {x.ndim} dims for a tensor of shape {x.shape}, found {len(dims)}: {dims}")
    perm = tuple(dim_index(d, x.ndim) for d in dims)
    if len(set(perm)) != len(perm):
        raise ShapeError(f"permute: duplicate dims are not allowed, found {dims}")
    return x if perm == tuple(range(x.ndim)) else Transpose.apply(x, axes=perm)


def transpose(x, *dims):
    """transpose(a, b) swaps dimensions a and b (PyTorch); transpose() reverses all of them and
    transpose(perm) or transpose(*perm) with more than two dims permutes (NumPy's forms)."""
    n = x.ndim
    if len(dims) == 2:
        a, b = dim_index(dims[0], n), dim_index(dims[1], n)
        perm = list(range(n))
        if n:
            perm[a], perm[b] = b, a
        return permute(x, perm)
    return permute(x, *dims) if dims else permute(x, tuple(range(n))[::-1])


def _is_advanced(idx):
    items = idx if isinstance(idx, tuple) else (idx,)
    return any(not isinstance(i, (int, np.integer, slice)) and i is not None and i is not Ellipsis for i in items)


class GetItem(Function):
    @staticmethod
    def forward(ctx, x, idx):
        ctx.in_shape, ctx.idx = x.shape, idx
        try:
            y = x[idx]
        except IndexError as e:
            raise IndexError(f"index {idx!r} out of range for shape {x.shape}: {e}") from None
        if isinstance(y, np.generic):  # NumPy copies out a scalar; x[i] is a 0-d view in PyTorch (and CuPy)
            y = x[(idx if isinstance(idx, tuple) else (idx,)) + (Ellipsis,)]
        return y

    @staticmethod
    def backward(ctx, grad_output):
        xp = get_array_module(grad_output)
        g = xp.zeros(ctx.in_shape, grad_output.dtype)
        if _is_advanced(ctx.idx):
            xp.add.at(g, ctx.idx, grad_output)  # repeated indices accumulate
        else:
            g[ctx.idx] = grad_output
        return g


def _index_item(i, device):
    """One item of an index as NumPy takes it: a Tensor's array, a list as an integer (or bool)
    array, and a 0-d integer array as an int (PyTorch selects with it, as with an int)."""
    if isinstance(i, autograd.Tensor):
        i = i.data
    elif isinstance(i, list):
        i = to_device(np.asarray(i) if i else np.zeros(0, np.int64), device)
    elif isinstance(i, slice) and i.step is not None and i.step < 0:
        raise ValueError(f"step must be greater than zero, found slice {i}")
    if getattr(i, "ndim", None) == 0 and i.dtype.kind in "iu":
        return int(i)
    return i


def _split_index(items, ndim, device):
    """PyTorch applies ints (select) before array indices, so these never count as array indices in
    NumPy's placement rule: x[0, :, [0, 1]] is x[0][:, [0, 1]]; a Python bool is a new dim indexed by
    [0] (True) or [] (False). Returns the index of ints, slices, None and Ellipsis (slice(None) where
    an array goes) and then the array index into that result."""
    spans = [i.ndim if i.dtype.kind == "b" else 1 for i in items if hasattr(i, "ndim")]
    fixed = sum(spans) + sum(1 for i in items if isinstance(i, (int, np.integer, slice)) and not isinstance(i, bool))
    first, second, at = [], [], 0
    for i in items:
        if hasattr(i, "ndim"):
            k = spans.pop(0)
            first += [slice(None)] * k
            second += [slice(None)] * (at - len(second)) + [i]
            at += k
            continue
        if isinstance(i, bool):
            first.append(None)
            second += [slice(None)] * (at - len(second)) + [to_device(np.zeros(int(i), np.int64), device)]
            at += 1
            continue
        first.append(i)
        if i is Ellipsis:
            at += ndim - fixed
        elif i is None or isinstance(i, slice):
            at += 1
    return tuple(first), tuple(second)


def _steps(idx, ndim, device):
    """The NumPy indices that, applied in turn, give PyTorch's x[idx] (ints apply before array
    indices; see _split_index): one, or a basic index (a view) and then an array index."""
    items = tuple(_index_item(i, device) for i in (idx if isinstance(idx, tuple) else (idx,)))
    bools = any(isinstance(i, bool) for i in items)
    if bools or any(hasattr(i, "ndim") for i in items) and any(isinstance(i, (int, np.integer)) for i in items):
        return _split_index(items, ndim, device)
    return (items if isinstance(idx, tuple) else items[0],)


def getitem(x, idx):
    """x[idx] with PyTorch's result layout."""
    if type(idx) is int:  # the common case, as NumPy and PyTorch agree on it
        return GetItem.apply(x, idx=idx)
    for step in _steps(idx, x.ndim, x.device):
        x = GetItem.apply(x, idx=step)
    return x


def assign(a, idx, value):
    """a[idx] = value in place on array a, with PyTorch's index layout (value: an array or a scalar,
    broadcast to the indexed shape and cast to a's dtype)."""
    _assign(a, _steps(idx, a.ndim, device_of(a)) if type(idx) is not int else (idx,), value)


def _assign(a, steps, value):
    for step in steps[:-1]:
        a = a[step]  # basic indices: a view of a
    try:
        a[steps[-1]] = value
    except ValueError as e:
        if not a.flags.writeable if type(a) is np.ndarray else False:
            raise RuntimeError(f"in-place operation on a read-only tensor of shape {tuple(a.shape)} (an expand() "
                               "view, whose elements share memory); make a copy first with clone()") from None
        raise ShapeError(f"index assignment: {e}") from None


class IndexPut(Function):
    """x with x[idx] = v (v broadcast to the indexed shape): t[idx] = v recorded on the tape. The
    gradient reaches v from the positions it was written to, and x from all the others."""
    @staticmethod
    def forward(ctx, x, v, steps):
        ctx.steps, ctx.v_dtype = steps, v.dtype
        y = x.copy()
        _assign(y, steps, v)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        need_x, need_v = ctx.needs_input_grad
        gx = gv = None
        if need_x:
            gx = grad_output.copy()
            _assign(gx, ctx.steps, 0)
        if need_v:
            gv = grad_output
            for step in ctx.steps:
                gv = gv[step]
            gv = get_array_module(grad_output).asarray(gv, dtype=ctx.v_dtype)
        return gx, gv


def index_put(x, idx, v):
    """The out-of-place form of x[idx] = v (x and v Tensors on one device)."""
    steps = (idx,) if type(idx) is int else _steps(idx, x.ndim, x.device)
    return IndexPut.apply(x, v, steps=steps)


class Cat(Function):
    @staticmethod
    def forward(ctx, *xs, axis):
        ctx.axis = axis
        ctx.splits = np.cumsum([x.shape[axis] for x in xs])[:-1]
        return get_array_module(xs[0]).concatenate(xs, axis=axis)

    @staticmethod
    def backward(ctx, grad_output):
        return tuple(get_array_module(grad_output).split(grad_output, ctx.splits, axis=ctx.axis))


def _check_same(seq, what, axis):
    """The tensors of a cat (or stack) and its dim in [0, ndim): shapes equal except in dim (all equal)."""
    seq = list(seq)
    if not seq:
        raise (ValueError if what == "cat" else RuntimeError)(f"{what}: expected a non-empty sequence of tensors")
    ref = seq[0].shape
    if what == "cat" and not ref:
        raise ShapeError("cat: zero-dimensional tensor (at position 0) cannot be concatenated")
    axis = dim_index(axis, len(ref) + (what == "stack"))
    for i, t in enumerate(seq):
        if what == "cat" and len(t.shape) != len(ref):
            raise ShapeError(f"cat: tensors must have the same number of dimensions: tensor 0 has {len(ref)}, "
                             f"tensor {i} has {len(t.shape)}")
        if any(a != b for d, (a, b) in enumerate(zip(t.shape, ref)) if what == "stack" or d != axis):
            raise ShapeError(f"{what}: tensor {i} has shape {t.shape}, expected shape {ref}"
                             + ("" if what == "stack" else f" except in dimension {axis}"))
    return seq, axis


def cat(seq, axis=0, *, dim=None):
    seq = list(seq)
    kept = [t for t in seq if t.shape != (0,)]  # PyTorch's legacy rule: 1-D empty tensors are skipped
    if len(kept) < len(seq):
        return cat(kept, axis, dim=dim) if kept else seq[0]
    seq, axis = _check_same(seq, "cat", axis if dim is None else dim)
    return Cat.apply(*seq, axis=axis)


class Stack(Function):
    @staticmethod
    def forward(ctx, *xs, axis):
        ctx.axis = axis
        return get_array_module(xs[0]).stack(xs, axis=axis)

    @staticmethod
    def backward(ctx, grad_output):
        g = get_array_module(grad_output).moveaxis(grad_output, ctx.axis, 0)
        return tuple(g)


def stack(seq, axis=0, *, dim=None):
    seq, axis = _check_same(seq, "stack", axis if dim is None else dim)
    return Stack.apply(*seq, axis=axis)


class Cast(Function):
    @staticmethod
    def forward(ctx, x, dtype):
        ctx.in_dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.astype(ctx.in_dtype)


def cast(x, dtype):
    if x.dtype == dtype:
        return x
    if dtype.kind not in "fc":  # integer and bool results carry no gradient, as in PyTorch
        return autograd._wrap(x.data.astype(dtype), x.device)
    return Cast.apply(x, dtype=dtype)


class ToDevice(Function):
    @staticmethod
    def forward(ctx, x, src, device):
        ctx.src = src
        return to_device(x, device)

    @staticmethod
    def backward(ctx, grad_output):
        return to_device(grad_output, ctx.src)


def to(x, device):
    """Move x to a Device (differentiable: the gradient moves back)."""
    if x.device is device:
        return x
    out = ToDevice.apply(x, src=x.device, device=device)
    out.device = device  # apply assumes outputs live with inputs; this op is the exception
    return out
