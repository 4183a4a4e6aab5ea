"""Backend dispatch, dtype rules, axis handling and error-free transformations.

Everything here works on any Array-API namespace through ``xp.*`` calls only.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

from array_api_compat import (
    array_namespace,
    device,
    is_array_api_obj,
    is_jax_array,
    is_jax_namespace,
    is_lazy_array,
    is_numpy_array,
    is_numpy_namespace,
)

from ._typing import Array, ArrayNamespace, Axis, DType

__all__ = [
    "as_array",
    "as_floating",
    "const",
    "flatten_axes",
    "namespace",
    "normalize_axis",
    "unflatten_axes",
]


def as_array(x: Any, /, *, name: str) -> Array:
    """Return `x` unchanged if it is an array, else as a NumPy array.

    Python scalars and (nested) lists are accepted and treated as NumPy.
    """
    if is_array_api_obj(x):
        return x
    import numpy as np  # only reached for Python scalars and lists

    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        msg = f"`{name}` must be an array or a nested sequence of numbers; got {x!r}."
        raise TypeError(msg) from exc


def namespace(
    *arrays: Array | None, xp: ArrayNamespace | None = None
) -> ArrayNamespace:
    """Return `xp` if given, else the common namespace of the non-None arrays."""
    if xp is not None:
        return xp
    present = [a for a in arrays if a is not None]
    try:
        return array_namespace(*present)
    except TypeError:
        # NumPy arrays beside arrays of one other library (a torch tensor and
        # a NumPy constant) belong to that library; callers convert them.
        others = [a for a in present if not is_numpy_array(a)]
        if others and len(others) < len(present):
            return array_namespace(*others)
        raise


def adopt(x: Array, like: Array, /, *, xp: ArrayNamespace) -> Array:
    """`x` as an array of `xp` on the device of `like` (a no-op if it is one)."""
    if array_namespace(x) is xp:
        return x
    return xp.asarray(x, device=device(like))


def default_float(x: Array, /, *, xp: ArrayNamespace) -> DType:
    """The default real floating dtype of `xp` on the device of `x`."""
    info = xp.__array_namespace_info__()
    return info.default_dtypes(device=device(x))["real floating"]


def as_floating(x: Array, /, *, name: str, xp: ArrayNamespace) -> Array:
    """Promote integer and boolean arrays to the default real floating dtype.

    Raises
    ------
    TypeError
        If `x` is complex: logitkit works on real numbers.
    """
    if xp.isdtype(x.dtype, "real floating"):
        return x
    if xp.isdtype(x.dtype, "complex floating"):
        msg = f"`{name}` must be a real (not complex) array; got dtype {x.dtype}."
        raise TypeError(msg)
    return xp.astype(x, default_float(x, xp=xp))


def has_float64(xp: ArrayNamespace) -> bool:
    """Whether `xp` can compute in float64 (JAX only with ``jax_enable_x64``)."""
    if is_jax_namespace(xp):
        import jax

        return bool(jax.config.read("jax_enable_x64"))  # type: ignore[no-untyped-call]
    return True


def work_dtype(dtype: DType, /, *, xp: ArrayNamespace) -> DType:
    """The dtype logitkit computes in for results of `dtype`.

    float64 whenever the namespace has it: a float32 (or float16, bfloat16)
    result rounded once from a float64 value with a relative error far below
    2**-24 is correctly rounded but for a rare double rounding.
    """
    if has_float64(xp):
        return xp.float64
    return xp.float32 if dtype != xp.float32 else dtype


def round_to(y: Array, dtype: DType, /, *, xp: ArrayNamespace) -> Array:
    """Round `y` to the narrower `dtype`, overflowing to ``±inf`` without a warning.

    Values at or beyond ``max + ulp(max) / 2`` round to infinity (round to
    nearest); NumPy would warn on such a cast.
    """
    if y.dtype == dtype:
        return y
    info = xp.finfo(dtype)
    big = float(info.max)
    _, e = math.frexp(big)
    threshold = big + math.ldexp(float(info.eps), e - 2)
    inf = const(float("inf"), y, xp=xp)
    y = xp.where(y >= const(threshold, y, xp=xp), inf, y)
    y = xp.where(y <= const(-threshold, y, xp=xp), -inf, y)
    if is_jax_namespace(xp):
        return _jax_round_keeping_subnormals(y, dtype, xp=xp)
    return xp.astype(y, dtype)


def _jax_round_keeping_subnormals(
    y: Array, dtype: DType, /, *, xp: ArrayNamespace
) -> Array:
    """XLA on CPU flushes subnormal results of a cast to zero; build them by bits."""
    from jax import lax

    info = xp.finfo(dtype)
    nbits = int(info.bits)
    if nbits not in (16, 32):
        return xp.astype(y, dtype)
    int_dtype = xp.int32 if nbits == 32 else xp.int16
    smallest = float(info.smallest_normal)
    spacing = smallest * float(info.eps)  # the subnormal spacing
    a = xp.abs(y)
    sub = a < const(smallest, y, xp=xp)
    q = xp.astype(xp.round(xp.where(sub, a, 0.0) / spacing), int_dtype)
    sign = xp.asarray(-(2 ** (nbits - 1)), dtype=int_dtype)
    bits = xp.where(y < 0, q | sign, q)
    return xp.where(sub, lax.bitcast_convert_type(bits, dtype), xp.astype(y, dtype))


def const(value: float, like: Array, /, *, xp: ArrayNamespace) -> Array:
    """A 0-d array holding `value` with the dtype and device of `like`."""
    return xp.asarray(value, dtype=like.dtype, device=device(like))


def is_eager(x: Array, /) -> bool:
    """Whether values of `x` can be inspected now (not a tracer or lazy graph).

    A concrete JAX array (outside ``jit``) is eager; a tracer is not.
    """
    if is_jax_array(x):
        import jax

        return not isinstance(x, jax.core.Tracer)
    return not is_lazy_array(x)


def check_out(out: Any, result: Array, /, *, xp: ArrayNamespace) -> Array:
    """Write `result` into the NumPy array `out` (ufunc-style ``out=``)."""
    if not is_numpy_namespace(xp):
        msg = (
            "`out` is supported for NumPy arrays only; "
            f"got input arrays of {xp.__name__}."
        )
        raise TypeError(msg)
    import numpy as np

    if not isinstance(out, np.ndarray):
        msg = f"`out` must be a NumPy array; got {type(out).__name__}."
        raise TypeError(msg)
    if out.shape != result.shape or out.dtype != result.dtype:
        msg = (
            f"`out` must have shape {result.shape} and dtype {result.dtype}; "
            f"got shape {out.shape} and dtype {out.dtype}."
        )
        raise ValueError(msg)
    out[...] = result
    return out


# ---------------------------------------------------------------- axes


def normalize_axis(
    axis: Axis, ndim: int, /, *, allow_none: bool = False
) -> tuple[int, ...]:
    """Return `axis` as a sorted tuple of non-negative ints.

    Raises
    ------
    IndexError
        If an axis is out of bounds (the NumPy convention).
    TypeError, ValueError
        If `axis` is not an int, a tuple of ints or (where allowed) None, or
        names the same axis twice.
    """
    if axis is None:
        if allow_none:
            return tuple(range(ndim))
        msg = "`axis` must be an int or a tuple of ints; got None."
        raise TypeError(msg)
    axes = axis if isinstance(axis, tuple) else (axis,)
    out = []
    for a in axes:
        try:
            a = operator.index(a)
        except TypeError:
            msg = f"`axis` must be an int or a tuple of ints; got {axis!r}."
            raise TypeError(msg) from None
        if not -ndim <= a < ndim:
            msg = f"axis {a} is out of bounds for array of dimension {ndim}"
            raise IndexError(msg)
        out.append(a % ndim)
    if len(set(out)) != len(out):
        msg = f"`axis` must not repeat an axis; got {axis!r}."
        raise ValueError(msg)
    return tuple(sorted(out))


def flatten_axes(
    x: Array, axes: Sequence[int], /, *, xp: ArrayNamespace
) -> tuple[Array, tuple[int, ...]]:
    """Move `axes` to the end and merge them into one trailing axis.

    Returns the reshaped array and the permuted shape needed to undo it.
    """
    ndim = x.ndim
    rest = [a for a in range(ndim) if a not in axes]
    perm = (*rest, *axes)
    if perm != tuple(range(ndim)):
        x = xp.permute_dims(x, perm)
    moved_shape = tuple(x.shape)
    if len(axes) != 1:
        batch = moved_shape[: len(rest)]
        size = math.prod(moved_shape[len(rest) :])
        x = xp.reshape(x, (*batch, size))
    return x, moved_shape


def unflatten_axes(
    y: Array,
    axes: Sequence[int],
    moved_shape: tuple[int, ...],
    /,
    *,
    xp: ArrayNamespace,
) -> Array:
    """Undo :func:`flatten_axes` on an array of the flattened shape."""
    ndim = len(moved_shape)
    if len(axes) != 1:
        y = xp.reshape(y, moved_shape)
    rest = [a for a in range(ndim) if a not in axes]
    perm = (*rest, *axes)
    if perm != tuple(range(ndim)):
        inverse = [0] * ndim
        for i, p in enumerate(perm):
            inverse[p] = i
        y = xp.permute_dims(y, tuple(inverse))
    return y


def check_temperature(temperature: float, /) -> float:
    """Validate a temperature: a positive finite number."""
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        msg = f"`temperature` must be a positive number; got {temperature!r}."
        raise TypeError(msg) from None
    if not (t > 0 and math.isfinite(t)):
        msg = f"`temperature` must be a positive finite number; got {temperature!r}."
        raise ValueError(msg)
    return t


def as_mask(where: Any, x: Array, /, *, xp: ArrayNamespace) -> Array:
    """Validate a boolean `where` mask and broadcast it to the shape of `x`."""
    where = as_array(where, name="where")
    if not xp.isdtype(where.dtype, "bool"):
        msg = f"`where` must be a boolean array; got dtype {where.dtype}."
        raise TypeError(msg)
    try:
        shape = _broadcast_shapes(tuple(where.shape), tuple(x.shape))
    except ValueError:
        shape = None
    if shape != tuple(x.shape):
        msg = (
            f"`where` must be broadcastable to the input's shape {tuple(x.shape)}; "
            f"got shape {tuple(where.shape)}."
        )
        raise ValueError(msg)
    where = xp.asarray(where, device=device(x))
    if tuple(where.shape) != tuple(x.shape):
        where = xp.broadcast_to(where, tuple(x.shape))
    return where


def _broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    ndim = max(len(s) for s in shapes)
    out = []
    for dims in zip(*((1,) * (ndim - len(s)) + s for s in shapes), strict=True):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            msg = f"shapes {shapes} do not broadcast"
            raise ValueError(msg)
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


# ------------------------------------------------ error-free transformations


def two_sum(a: Array, b: Array, /) -> tuple[Array, Array]:
    """Knuth's TwoSum: ``s + e == a + b`` exactly, ``s = fl(a + b)``.

    Only meaningful for finite inputs; callers mask non-finite results.
    """
    s = no_simplify(a + b)
    bb = no_simplify(s - a)
    e = (a - (s - bb)) + (b - bb)
    return s, e


def no_simplify(x: Array, /) -> Array:
    """`x` unchanged, hidden from algebraic rewriting by a compiler.

    XLA rewrites ``(a + b) - a`` to ``b``, which is false in floating point and
    destroys every error-free transformation. An optimisation barrier keeps
    the operations as written under ``jax.jit``; other libraries evaluate
    operations as written already.
    """
    if is_jax_array(x):
        from jax import lax

        return lax.optimization_barrier(x)  # type: ignore[no-untyped-call]
    return x


def add_rounded(hi: Array, lo: Array, b: Array, /, *, xp: ArrayNamespace) -> Array:
    """``fl(hi + lo + b)`` for a double-double ``hi + lo`` plus a float `b`.

    One TwoSum of the large parts, the small parts added to its error, one
    final rounding. Where `hi` or `b` is infinite or NaN, ``hi + b``.
    """
    finite = xp.isfinite(hi) & xp.isfinite(b)
    zero = const(0.0, hi, xp=xp)
    hf, bf = xp.where(finite, hi, zero), xp.where(finite, b, zero)
    t, err = two_sum(hf, bf)
    return xp.where(finite, t + (err + xp.where(finite, lo, zero)), hi + b)
