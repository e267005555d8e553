"""cupy.ElementwiseKernel of the test double: CuPy's argument and type rules, and the kernel's C
body evaluated with NumPy, statement by statement (declarations and assignments of C expressions:
arithmetic, comparisons, logic, casts, the ternary operator and the usual math functions). What it
cannot translate raises NotImplementedError, never runs as something else."""
import math
import re

import numpy as np

from .cuda.compiler import CompileException

_CTYPES = {"float": np.float32, "double": np.float64, "float16": np.float16, "half": np.float16,
           "int": np.int32, "long long": np.int64, "bool": np.bool_, "float32": np.float32,
           "float64": np.float64, "int32": np.int32, "int64": np.int64}
_TOKEN = re.compile(r"\s*(?:(\d+\.\d*(?:[eE][-+]?\d+)?[fF]?|\.\d+(?:[eE][-+]?\d+)?[fF]?|\d+[eE][-+]?\d+[fF]?"
                    r"|\d+[uUlL]*)|([A-Za-z_]\w*)|(\?|:|\|\||&&|==|!=|<=|>=|[-+*/%<>!(),]))")


def _erf(x):
    try:
        from scipy.special import erf
        return erf(x)
    except ImportError:
        return np.vectorize(math.erf, otypes=[np.float64])(x)


_FLOAT_FUNCS = {"exp": np.exp, "log": np.log, "tanh": np.tanh, "erf": _erf, "sqrt": np.sqrt,
                "log1p": np.log1p, "expm1": np.expm1, "fabs": np.abs, "sinh": np.sinh, "cosh": np.cosh,
                "erfc": lambda x: 1 - _erf(x), "exp2": np.exp2, "log2": np.log2, "floor": np.floor,
                "ceil": np.ceil, "rsqrt": lambda x: 1 / np.sqrt(x), "pow": np.power, "fmax": np.fmax,
                "fmin": np.fmin, "copysign": np.copysign, "atan": np.arctan, "sin": np.sin, "cos": np.cos}
_ANY_FUNCS = {"max": np.maximum, "min": np.minimum, "abs": np.abs, "isnan": np.isnan, "isinf": np.isinf}


def _dtype_of(v):
    return v.dtype if isinstance(v, (np.ndarray, np.generic)) else np.dtype(type(v))


class _Evaluator:
    """Recursive descent over one C expression, evaluating as it parses (NumPy arrays throughout)."""

    def __init__(self, text, env, types):
        found = _TOKEN.findall(text)
        rest = _TOKEN.sub("", text).strip()
        if rest:
            raise NotImplementedError(f"ElementwiseKernel double: cannot read {rest!r} in {text!r}")
        self.toks = [t[0] or t[1] or t[2] for t in found]
        self.kinds = ["num" if t[0] else "name" if t[1] else "op" for t in found]
        self.i, self.env, self.types, self.text = 0, env, types, text

    def peek(self, k=0):
        return self.toks[self.i + k] if self.i + k < len(self.toks) else None

    def take(self, expected=None):
        t = self.peek()
        if expected is not None and t != expected:
            raise NotImplementedError(f"ElementwiseKernel double: expected {expected!r}, found {t!r} in {self.text!r}")
        self.i += 1
        return t

    def run(self):
        v = self.ternary()
        if self.peek() is not None:
            raise NotImplementedError(f"ElementwiseKernel double: trailing {self.peek()!r} in {self.text!r}")
        return v

    def ternary(self):
        c = self.binary(0)
        if self.peek() == "?":
            self.take()
            a = self.ternary()
            self.take(":")
            b = self.ternary()
            return np.where(np.asarray(c).astype(bool), a, b)[()]
        return c

    _LEVELS = [("||",), ("&&",), ("==", "!="), ("<", ">", "<=", ">="), ("+", "-"), ("*", "/", "%")]
    _OPS = {"||": np.logical_or, "&&": np.logical_and, "==": np.equal, "!=": np.not_equal, "<": np.less,
            ">": np.greater, "<=": np.less_equal, ">=": np.greater_equal, "+": np.add, "-": np.subtract,
            "*": np.multiply, "%": np.remainder}

    def binary(self, level):
        if level == len(self._LEVELS):
            return self.unary()
        v = self.binary(level + 1)
        while self.peek() in self._LEVELS[level] and self.kinds[self.i] == "op":
            op = self.take()
            w = self.binary(level + 1)
            if op == "/":
                if _dtype_of(v).kind in "iub" and _dtype_of(w).kind in "iub":
                    v = np.floor_divide(v, w)  # C truncates; operands here are never negative
                else:
                    v = np.divide(v, w)
            else:
                v = self._OPS[op](v, w)
        return v

    def _cast_type(self):
        """The dtype of a cast `(type)` starting at the current token, or None."""
        if self.peek() != "(":
            return None
        name = self.peek(1)
        if self.peek(2) == ")" and name in self.types:
            return self.types[name]
        if self.peek(2) == ")" and name in _CTYPES:
            return np.dtype(_CTYPES[name])
        return None

    def unary(self):
        t = self.peek()
        if t == "-" and self.kinds[self.i] == "op":
            self.take()
            return np.negative(self.unary())
        if t == "+" and self.kinds[self.i] == "op":
            self.take()
            return self.unary()
        if t == "!":
            self.take()
            return np.logical_not(self.unary())
        dt = self._cast_type()
        if dt is not None:
            self.i += 3
            v = self.unary()
            return v.astype(dt, copy=False) if isinstance(v, np.ndarray) else dt.type(v)
        return self.primary()

    def primary(self):
        kind, t = self.kinds[self.i] if self.i < len(self.kinds) else None, self.take()
        if t == "(":
            v = self.ternary()
            self.take(")")
            return v
        if kind == "num":
            if t[-1] in "fF" and not t.lower().startswith("0x"):
                return np.float32(t[:-1])
            if re.fullmatch(r"\d+[uUlL]*", t):
                return int(t.rstrip("uUlL"))  # a C int literal adapts to the other operand, as NumPy's int
            return np.float64(t)
        if kind == "name":
            if self.peek() == "(":
                return self.call(t)
            if t not in self.env:
                raise CompileException(f"error: identifier \"{t}\" is undefined")
            return self.env[t]
        raise NotImplementedError(f"ElementwiseKernel double: unexpected {t!r} in {self.text!r}")

    def call(self, name):
        self.take("(")
        args = [self.ternary()]
        while self.peek() == ",":
            self.take()
            args.append(self.ternary())
        self.take(")")
        if name in _FLOAT_FUNCS:
            dts = [_dtype_of(a) for a in args]
            if any(isinstance(a, (np.ndarray, np.generic)) and a.dtype.kind in "iub" for a in args):
                raise CompileException(
                    f"error: more than one instance of overloaded function \"{name}\" matches the "
                    f"argument list: argument types are: ({', '.join(str(d) for d in dts)})")
            out_dt = np.result_type(*args)
            r = _FLOAT_FUNCS[name](*args)
            return np.asarray(r).astype(out_dt)[()] if np.ndim(r) == 0 else r.astype(out_dt, copy=False)
        if name in _ANY_FUNCS:
            return _ANY_FUNCS[name](*args)
        raise CompileException(f"error: identifier \"{name}\" is undefined")


def _params(spec):
    """'T z, raw T b' -> [(type, name)]."""
    out = []
    for p in filter(None, (s.strip() for s in spec.split(","))):
        words = p.split()
        if words[0] == "raw":
            raise NotImplementedError("ElementwiseKernel double: raw parameters are not supported")
        out.append((" ".join(words[:-1]), words[-1]))
    return out


class ElementwiseKernel:
    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True,
                 preamble="", no_return=False, return_tuple=False, loop_prep="", after_loop="", **kw):
        self.in_params, self.out_params = _params(in_params), _params(out_params)
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.nargs = self.nin + self.nout
        self.operation, self.name, self.preamble = operation, name, preamble
        self.return_tuple = return_tuple
        for t, _ in self.in_params + self.out_params:
            if not (t in _CTYPES or re.fullmatch(r"[A-Z]\w*", t)):
                raise NotImplementedError(f"ElementwiseKernel double: parameter type {t!r}")

    def __call__(self, *args, size=None, block_size=None, stream=None):
        from . import _check_device, _SCALARS, ndarray
        from . import cuda
        if len(args) not in (self.nin, self.nargs):
            raise TypeError(f"Wrong number of arguments for {self.name!r}")
        for a in args:
            if type(a) is ndarray:
                _check_device(a)
            elif not isinstance(a, _SCALARS):
                raise TypeError(f"Unsupported type {type(a)}")
        params = self.in_params + self.out_params[:len(args) - self.nin]
        types = {}
        for (t, pname), a in zip(params, args):
            if type(a) is not ndarray:
                continue
            want = np.dtype(_CTYPES[t]) if t in _CTYPES else types.get(t)
            if want is None:
                types[t] = a.dtype
            elif want != a.dtype:
                raise TypeError(f"Type is mismatched. {pname} {a.dtype} {want} {t}")  # CuPy's words
        for t, pname in self.in_params + self.out_params:
            if t not in _CTYPES and t not in types:
                raise TypeError(f"Cannot determine the type of {pname} ({t}) in {self.name!r}")
        shapes = [a.shape for a in args if type(a) is ndarray]
        shape = np.broadcast_shapes(*shapes) if shapes else ()
        for (t, pname), a in zip(self.out_params, args[self.nin:]):
            if type(a) is not ndarray:
                raise TypeError(f"Output argument {pname} of {self.name!r} must be a cupy.ndarray")
            if a.shape != shape:
                raise ValueError(f"Out shape is mismatched: {a.shape} for {pname}, broadcast shape {shape}")
        dtype = {t: np.dtype(_CTYPES[t]) if t in _CTYPES else types[t] for t, _ in params + self.out_params}
        env = {}
        for (t, pname), a in zip(self.in_params, args):
            env[pname] = np.broadcast_to(a._a, shape) if type(a) is ndarray else dtype[t].type(a)
        outs = list(args[self.nin:])
        for t, pname in self.out_params[len(outs):]:
            outs.append(ndarray._new(np.empty(shape, dtype[t]), dev=cuda._current()))
        for (t, pname), o in zip(self.out_params, outs):
            env[pname] = o._a  # statements rebind names, never write into arrays
        with np.errstate(all="ignore"):  # a GPU computes inf and nan silently
            self._run(env, dtype)
        for (t, pname), o in zip(self.out_params, outs):
            o._a[...] = np.asarray(env[pname]).astype(o.dtype, copy=False)
        return tuple(outs) if self.nout > 1 or self.return_tuple else outs[0]

    def _run(self, env, dtype):
        decl = re.compile(r"^(?:const\s+)?([A-Za-z_][\w ]*?)\s+([A-Za-z_]\w*)\s*=\s*(.+)$", re.S)
        assign = re.compile(r"^([A-Za-z_]\w*)\s*([-+*/]?=)\s*(.+)$", re.S)
        for stmt in filter(None, (s.strip() for s in self.operation.split(";"))):
            m = decl.match(stmt)
            if m and (m.group(1) in dtype or m.group(1) in _CTYPES):
                dt = dtype.get(m.group(1)) or np.dtype(_CTYPES[m.group(1)])
                v = _Evaluator(m.group(3), env, dtype).run()
                env[m.group(2)] = np.asarray(v).astype(dt, copy=False)
                continue
            m = assign.match(stmt)
            if m is None or m.group(1) not in env:
                raise NotImplementedError(f"ElementwiseKernel double: cannot run statement {stmt!r}")
            v = _Evaluator(m.group(3), env, dtype).run()
            name, op = m.group(1), m.group(2)
            if op != "=":
                v = {"+=": np.add, "-=": np.subtract, "*=": np.multiply, "/=": np.divide}[op](env[name], v)
            env[name] = v
