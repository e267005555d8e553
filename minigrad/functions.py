"""PyTorch's function forms of Tensor methods: mg.sum(t, 1) is t.sum(1), as torch.sum(t, 1)."""
from .tensor import Tensor


def _function_form(name):
    def f(input, *args, **kwargs):
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}(): argument 'input' must be Tensor, not {type(input).__name__}")
        return getattr(input, name)(*args, **kwargs)
    f.__name__ = f.__qualname__ = name
    f.__doc__ = f"mg.{name}(input, ...): input.{name}(...), as torch.{name}."
    return f


sum, mean, max, min, argmax, argmin, abs, clamp, clip, norm, var, std, logsumexp, clone = map(  # noqa: A001
    _function_form, ["sum", "mean", "max", "min", "argmax", "argmin", "abs", "clamp", "clip", "norm", "var", "std",
                     "logsumexp", "clone"])
