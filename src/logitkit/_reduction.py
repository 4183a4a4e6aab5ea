"""Shared plumbing of the losses: reductions, label checks, option checks.

Per-example losses are computed in the working dtype (float64 wherever the
namespace has it) and reduced there, with a compensated (double-double) sum,
before the one final rounding: a float32 mean is then within an ulp of the
exact mean of the exact losses.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Literal

from ._dd import div_dd, sum_dd
from ._helpers import const, round_to
from ._typing import Array, ArrayNamespace, DType

__all__ = [
    "Reduction",
    "check_label_smoothing",
    "check_reduction",
    "check_shape",
    "loss_dtype",
    "reduce",
]

Reduction = Literal["none", "mean", "sum"]


def check_reduction(reduction: str, /) -> str:
    """Validate a `reduction` argument."""
    if reduction not in ("none", "mean", "sum"):
        msg = f"Unknown reduction '{reduction}'. Expected 'none', 'mean' or 'sum'."
        raise ValueError(msg)
    return reduction


def check_label_smoothing(eps: float, /) -> float:
    """Validate `label_smoothing`: a number in [0, 1]."""
    try:
        e = float(eps)
    except (TypeError, ValueError):
        msg = f"`label_smoothing` must be a number in [0, 1]; got {eps!r}."
        raise TypeError(msg) from None
    if not 0.0 <= e <= 1.0:
        msg = f"`label_smoothing` must be in [0, 1]; got {eps!r}."
        raise ValueError(msg)
    return e


def check_nonnegative(value: float, /, *, name: str) -> float:
    """Validate a non-negative finite scalar option such as `z_loss`."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        msg = f"`{name}` must be a non-negative number; got {value!r}."
        raise TypeError(msg) from None
    if not (v >= 0.0 and math.isfinite(v)):
        msg = f"`{name}` must be a non-negative finite number; got {value!r}."
        raise ValueError(msg)
    return v


def check_shape(
    labels: Array, expected: tuple[int, ...], logits: Array, /, *, what: str
) -> None:
    """`labels` must have shape `expected`; the message gives both shapes."""
    if tuple(labels.shape) != tuple(expected):
        msg = (
            f"`labels` must have shape {what} {tuple(expected)}; got shape "
            f"{tuple(labels.shape)} for logits of shape {tuple(logits.shape)}."
        )
        raise ValueError(msg)


def loss_dtype(dtype: DType, /, *, xp: ArrayNamespace) -> DType:
    """Losses of float16/bfloat16 logits are float32 (the contract)."""
    if dtype in (xp.float32, xp.float64):
        return dtype
    return xp.float32


def axis_index(axis: Any, ndim: int, /) -> int:
    """One class axis as a non-negative int (IndexError if out of bounds)."""
    try:
        a = operator.index(axis)
    except TypeError:
        msg = f"`axis` must be an int; got {axis!r}."
        raise TypeError(msg) from None
    if not -ndim <= a < ndim:
        msg = f"axis {a} is out of bounds for array of dimension {ndim}"
        raise IndexError(msg)
    return a % ndim


def reduce(
    loss: Array,
    reduction: str,
    /,
    *,
    out_dtype: DType,
    lo: Array | None = None,
    weight: Array | None = None,
    count: Array | None = None,
    xp: ArrayNamespace,
) -> Array:
    """Reduce per-example losses (work dtype) and round once to `out_dtype`.

    Parameters
    ----------
    loss, lo : array
        Per-example losses in the working dtype, optionally as a double-double
        ``loss + lo``.
    reduction : {"none", "mean", "sum"}
    weight : array, optional
        The denominator of ``"mean"`` per example (torch's summed class weights
        of the kept examples); default: each example counts 1.
    count : array, optional
        A precomputed denominator (0-d) for ``"mean"``; overrides `weight`.

    Notes
    -----
    ``"mean"`` of no example (every label ignored, zero total weight) is 0,
    not NaN, and has zero gradient.
    """
    if reduction == "none":
        if lo is not None:
            loss = loss + lo
        return round_to(loss, out_dtype, xp=xp)
    flat = xp.reshape(loss, (-1,))
    flat_lo = None if lo is None else xp.reshape(lo, (-1,))
    if loss.dtype == xp.float64:
        s, s_lo = sum_dd(flat, lo=flat_lo, axis=-1, keepdims=False, xp=xp)
    else:
        s = xp.sum(flat if flat_lo is None else flat + flat_lo)
        s_lo = xp.zeros_like(s)
    if reduction == "sum":
        return round_to(s + s_lo, out_dtype, xp=xp)
    if count is None:
        if weight is None:
            count = const(float(math.prod(loss.shape)), s, xp=xp)
        else:
            count = xp.sum(xp.reshape(weight, (-1,)))
    return finish_mean(s, s_lo, count, out_dtype=out_dtype, xp=xp)


def finish_mean(
    s: Array, s_lo: Array, count: Array, /, *, out_dtype: DType, xp: ArrayNamespace
) -> Array:
    """``"mean"`` from the (double-double where float64) total ``s + s_lo``.

    The tail of :func:`reduce`, also used by the compiled kernels, which
    form the total themselves.
    """
    zero = const(0.0, s, xp=xp)
    positive = count > zero
    safe = xp.where(positive, count, const(1.0, s, xp=xp))
    if s.dtype == xp.float64:
        m, _ = div_dd(s, s_lo, safe, xp.zeros_like(safe), xp=xp)
    else:
        m = (s + s_lo) / safe
    return round_to(xp.where(positive, m, zero), out_dtype, xp=xp)
