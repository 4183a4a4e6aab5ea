"""Plumbing shared by the compatibility namespaces (not public)."""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import device

from .._helpers import as_array, const, round_to, work_dtype
from .._reduction import loss_dtype, reduce
from .._typing import Array, ArrayNamespace, DType

__all__ = [
    "array_like",
    "finish",
    "log1m_or",
    "log_or",
    "mean_or_nan",
    "move_class_axis_last",
    "resolve_dtype",
    "to_work",
    "with_nan_where_empty",
]


def array_like(value: Any, like: Array, /, *, name: str, xp: ArrayNamespace) -> Array:
    """`value` (an array of any library, a list or a scalar) as an array of `xp`.

    It is placed on the device of `like`; its dtype is kept.
    """
    # Python scalars and lists go through NumPy (as everywhere in logitkit):
    # float64, where torch and JAX would round them to their default float32.
    return xp.asarray(as_array(value, name=name), device=device(like))


def resolve_dtype(dtype: Any, /, *, xp: ArrayNamespace) -> Any:
    """A dtype of `xp` from a dtype object or its name (``"float32"``)."""
    if isinstance(dtype, str):
        try:
            return getattr(xp, dtype)
        except AttributeError:
            msg = f"`dtype` must name a dtype of {xp.__name__}; got {dtype!r}."
            raise TypeError(msg) from None
    return dtype


def to_work(x: Array, /, *, xp: ArrayNamespace) -> tuple[Array, DType]:
    """`x` in the working dtype, and the dtype its loss is returned in."""
    out_dtype = loss_dtype(x.dtype, xp=xp)
    wd = work_dtype(out_dtype, xp=xp)
    return (x if x.dtype == wd else xp.astype(x, wd)), out_dtype


def log_or(x: Array, floor: float, /, *, xp: ArrayNamespace) -> Array:
    """``max(log(x), floor)`` for ``x >= 0``, with no ``log(0)`` evaluated."""
    positive = x > 0
    one = const(1.0, x, xp=xp)
    y = xp.log(xp.where(positive, x, one))
    y = xp.where(positive, y, const(-math.inf, x, xp=xp))
    return xp.maximum(y, const(floor, x, xp=xp))


def log1m_or(p: Array, floor: float, /, *, xp: ArrayNamespace) -> Array:
    """``max(log1p(-p), floor)`` for ``p <= 1``, with no ``log(0)`` evaluated."""
    below = p < const(1.0, p, xp=xp)
    y = xp.log1p(-xp.where(below, p, const(0.0, p, xp=xp)))
    y = xp.where(below, y, const(-math.inf, p, xp=xp))
    return xp.maximum(y, const(floor, p, xp=xp))


def move_class_axis_last(x: Array, axis: int, /, *, xp: ArrayNamespace) -> Array:
    """`x` with its (non-negative) `axis` moved to the end."""
    if axis == x.ndim - 1:
        return x
    return xp.moveaxis(x, axis, -1)


def with_nan_where_empty(value: Array, den: Array, /, *, xp: ArrayNamespace) -> Array:
    """`value`, or NaN where the denominator of a mean is 0 (``0 / 0``)."""
    return xp.where(den == 0, const(math.nan, value, xp=xp), value)


def mean_or_nan(
    loss: Array, den: Array, out_dtype: DType, /, *, xp: ArrayNamespace
) -> Array:
    """``sum(loss) / den`` rounded once; NaN for ``den == 0`` (PyTorch's ``0 / 0``)."""
    den = xp.astype(den, loss.dtype) if den.dtype != loss.dtype else den
    value = reduce(loss, "mean", out_dtype=out_dtype, count=den, xp=xp)
    return with_nan_where_empty(value, xp.astype(den, value.dtype), xp=xp)


def finish(
    loss: Array, reduction: str, out_dtype: DType, /, *, xp: ArrayNamespace
) -> Array:
    """Round per-example losses once, or reduce them (``"mean"`` of nothing: NaN)."""
    if reduction == "none":
        return round_to(loss, out_dtype, xp=xp)
    if reduction == "sum":
        return reduce(loss, "sum", out_dtype=out_dtype, xp=xp)
    n = const(float(math.prod(loss.shape)), loss, xp=xp)
    return mean_or_nan(loss, n, out_dtype, xp=xp)
