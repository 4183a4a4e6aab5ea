r"""numba kernels of the sigmoid family for float32 results (computed in float64).

Elementwise over C-contiguous 1-D arrays, the portable path's formulas
(``logitkit._sigmoid``, ``logitkit._sigmoid_losses`` with ``refine=False``)
operation for operation, in float64, each result rounded once:

- sigmoid: ``e = exp(-|x|)``, ``1 / (1 + e)`` for ``x >= 0``, else
  ``e * (1 / (1 + e))``;
- softplus: ``max(x, 0) + log1p(e)``; log_sigmoid: ``-softplus(-x)``;
- sigmoid cross entropy (no ``pos_weight``, no smoothing):
  ``(1 - y) softplus(x) + y softplus(-x)``, a term left out where its
  weight is 0, ``softplus(+-inf)`` as ``inf``/``0``.

``exp`` is :func:`._f32.exp_nonpos` (a polynomial, ~1 ulp of float64, 0
below -708 where NumPy's gives a subnormal that no float32 result can see),
``log1p`` :func:`log1p01` (fdlibm's ``log`` as branch-free arithmetic, within
1 ulp of float64; ``math.log1p``, a scalar libm call, made softplus 6x
slower). The float64
intermediates may differ from NumPy's in the last bit, which moves a float32
result only where it lies within ~``2**-52`` of a float32 rounding boundary
(a double rounding the portable path is exposed to as well).

Drivers take ``(x, [labels,] out, nchunks)``; ``out`` is float32 for
results, or float64 for the per-element losses that ``"mean"``/``"sum"``
then reduce.
"""

# numba-compiled helpers are untyped for mypy: their results are Any.
# mypy: disable-error-code="no-any-return"

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from ._f32 import exp_nonpos

__all__ = [
    "log_sigmoid_parallel",
    "log_sigmoid_serial",
    "sigmoid_ce_parallel",
    "sigmoid_ce_serial",
    "sigmoid_ce_sum_acc_parallel",
    "sigmoid_ce_sum_acc_serial",
    "sigmoid_ce_sum_parallel",
    "sigmoid_ce_sum_serial",
    "sigmoid_parallel",
    "sigmoid_serial",
    "softplus_parallel",
    "softplus_serial",
]

_KW: Any = {"cache": True, "nogil": True, "error_model": "numpy"}

# log(1 + f) = f - f**2/2 + s (f**2/2 + R(s**2)), s = f / (2 + f): fdlibm's
# e_log.c coefficients (|error of R| < 2**-58.45 on |s| < 0.1716).
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_SQRT2 = 1.4142135623730951


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def log1p01(u: float) -> float:
    """``log1p(u)`` for ``u`` in ``[0, 1]`` (or NaN), as arithmetic.

    ``w = 1 + u`` and ``log1p(u) = log(w) + (u - (w - 1)) / w``; ``log(w)``
    is fdlibm's ``log`` (``w = 2**k m``, ``m`` in ``[sqrt(2)/2, sqrt(2)]``,
    ``k`` in {0, 1}) without its branches, so that the loops vectorise
    (``math.log1p`` is a scalar libm call). Within ~1 ulp of float64, as
    the C library's ``log1p``.
    """
    w = 1.0 + u
    c = (u - (w - 1.0)) / w
    big = w > _SQRT2
    f = (w * 0.5 if big else w) - 1.0
    k = 1.0 if big else 0.0
    s = f / (2.0 + f)
    z = s * s
    z2 = z * z
    t1 = z2 * (_LG2 + z2 * (_LG4 + z2 * _LG6))
    t2 = z * (_LG1 + z2 * (_LG3 + z2 * (_LG5 + z2 * _LG7)))
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + (t1 + t2)) + (k * _LN2_LO + c))) - f)


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _sigmoid(v: Any) -> float:
    x = np.float64(v)
    e = exp_nonpos(-x if x >= 0.0 else x)  # -|x|, NaN stays NaN
    pos = 1.0 / (1.0 + e)
    return pos if x >= 0.0 else e * pos


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _softplus(x: float) -> float:
    """``where(x >= 0, x, 0) + log1p(exp(-|x|))`` (float64 `x`)."""
    e = exp_nonpos(-x if x >= 0.0 else x)
    return (x if x >= 0.0 else 0.0) + log1p01(e)  # noqa: FURB136 (-0.0, NaN)


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _finite_or(v: float) -> float:
    """softplus at ``+-inf`` and NaN: ``inf``, ``0``, NaN."""
    if v > 0.0:
        return v
    return 0.0 if v < 0.0 else v  # noqa: FURB136 (max() would drop a NaN)


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _bce(v: Any, w: Any) -> float:
    x = np.float64(v)
    y = np.float64(w)
    fin = math.isfinite(x)
    xs = x if fin else 0.0
    up = xs >= 0.0
    ax = xs if up else -xs
    lg = log1p01(exp_nonpos(-ax))
    if fin:
        pos = (xs if up else 0.0) + lg
        neg = (0.0 if up else -xs) + lg
    else:
        pos = _finite_or(x)
        neg = _finite_or(-x)
    a = 1.0 - y
    t1 = 0.0 if a == 0.0 else a * pos
    t2 = 0.0 if y == 0.0 else y * neg
    return t1 + t2


# Drivers: serial, and parallel over `nchunks` chunks of the flat array (each
# chunk a slice indexed from 0: with ``range(start, stop)`` indices numba's
# negative-index handling made the loads gathers, ~4x slower per element).


@njit(**_KW)  # type: ignore[untyped-decorator]
def sigmoid_serial(x: Any, out: Any, _nchunks: int) -> None:
    for i in range(x.size):
        out[i] = _sigmoid(x[i])


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sigmoid_parallel(x: Any, out: Any, nchunks: int) -> None:
    n = x.size
    for c in prange(nchunks):
        a, b = c * n // nchunks, (c + 1) * n // nchunks
        sigmoid_serial(x[a:b], out[a:b], 1)


@njit(**_KW)  # type: ignore[untyped-decorator]
def softplus_serial(x: Any, out: Any, _nchunks: int) -> None:
    for i in range(x.size):
        out[i] = _softplus(np.float64(x[i]))


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def softplus_parallel(x: Any, out: Any, nchunks: int) -> None:
    n = x.size
    for c in prange(nchunks):
        a, b = c * n // nchunks, (c + 1) * n // nchunks
        softplus_serial(x[a:b], out[a:b], 1)


@njit(**_KW)  # type: ignore[untyped-decorator]
def log_sigmoid_serial(x: Any, out: Any, _nchunks: int) -> None:
    for i in range(x.size):
        out[i] = -_softplus(-np.float64(x[i]))


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def log_sigmoid_parallel(x: Any, out: Any, nchunks: int) -> None:
    n = x.size
    for c in prange(nchunks):
        a, b = c * n // nchunks, (c + 1) * n // nchunks
        log_sigmoid_serial(x[a:b], out[a:b], 1)


@njit(**_KW)  # type: ignore[untyped-decorator]
def sigmoid_ce_serial(x: Any, y: Any, out: Any, _nchunks: int) -> None:
    for i in range(x.size):
        out[i] = _bce(x[i], y[i])


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sigmoid_ce_parallel(x: Any, y: Any, out: Any, nchunks: int) -> None:
    n = x.size
    for c in prange(nchunks):
        a, b = c * n // nchunks, (c + 1) * n // nchunks
        sigmoid_ce_serial(x[a:b], y[a:b], out[a:b], 1)


_BLOCK = 512  # losses computed (vectorised) into a buffer, then added


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _acc(s: float, c: float, v: float) -> tuple[float, float]:
    """Add `v` to the compensated sum ``s + c`` (TwoSum; no fast-math)."""
    t = s + v
    bb = t - s
    return t, c + ((s - (t - bb)) + (v - bb))


@njit(**_KW)  # type: ignore[untyped-decorator]
def _sum_blocks(x: Any, y: Any, start: int, stop: int, buf: Any, acc: Any) -> None:
    """Add the losses of ``[start, stop)`` to the accumulators ``acc`` (8).

    ``acc`` holds ``s0..s3, c0..c3`` of :func:`_sum_range`: a range cut at
    multiples of ``_BLOCK`` from its start and added piece by piece gives
    the accumulators of the whole range, bit for bit.
    """
    s0, s1, s2, s3 = acc[0], acc[1], acc[2], acc[3]
    c0, c1, c2, c3 = acc[4], acc[5], acc[6], acc[7]
    for b in range(start, stop, _BLOCK):
        m = min(_BLOCK, stop - b)
        for j in range(m):
            buf[j] = _bce(x[b + j], y[b + j])
        j = 0
        while j + 4 <= m:
            s0, c0 = _acc(s0, c0, buf[j])
            s1, c1 = _acc(s1, c1, buf[j + 1])
            s2, c2 = _acc(s2, c2, buf[j + 2])
            s3, c3 = _acc(s3, c3, buf[j + 3])
            j += 4
        while j < m:
            s0, c0 = _acc(s0, c0, buf[j])
            j += 1
    acc[0], acc[1], acc[2], acc[3] = s0, s1, s2, s3
    acc[4], acc[5], acc[6], acc[7] = c0, c1, c2, c3


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _merge(acc: Any) -> tuple[float, float]:
    """The compensated sum ``(s, c)`` of the accumulators of :func:`_sum_blocks`."""
    s, c = _acc(acc[0], acc[4] + acc[5], acc[1])
    s, c = _acc(s, c + acc[6], acc[2])
    return _acc(s, c + acc[7], acc[3])


@njit(**_KW)  # type: ignore[untyped-decorator]
def _sum_range(x: Any, y: Any, start: int, stop: int, buf: Any) -> tuple[float, float]:
    """The losses of ``[start, stop)`` added as a compensated sum ``(s, c)``.

    Four interleaved TwoSum accumulators (a single one is a chain of
    dependent additions), merged at the end.
    """
    acc = np.zeros(8, np.float64)
    _sum_blocks(x, y, start, stop, buf, acc)
    return _merge(acc)


@njit(**_KW)  # type: ignore[untyped-decorator]
def sigmoid_ce_sum_serial(x: Any, y: Any, part: Any, _nchunks: int) -> None:
    """The sum of the losses as ``part[0] = (s, c)``, without storing them."""
    buf = np.empty(_BLOCK, np.float64)
    part[0, 0], part[0, 1] = _sum_range(x, y, 0, x.size, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sigmoid_ce_sum_parallel(x: Any, y: Any, part: Any, nchunks: int) -> None:
    n = x.size
    for ch in prange(nchunks):
        buf = np.empty(_BLOCK, np.float64)
        a, b = ch * n // nchunks, (ch + 1) * n // nchunks
        s, c = _sum_range(x[a:b], y[a:b], 0, b - a, buf)
        part[ch, 0] = s
        part[ch, 1] = c


# Per-chunk segments (``sigmoid_ce_sum_acc``): row ``ch`` of `x` and `y`
# holds the next ``lens[ch]`` elements of chunk ``ch`` (a multiple of
# ``_BLOCK`` but for the chunk's last); ``acc[ch]`` carries that chunk's
# accumulators across calls and ``part[ch]`` receives its (s, c) so far.


@njit(**_KW)  # type: ignore[untyped-decorator]
def sigmoid_ce_sum_acc_serial(
    x: Any, y: Any, lens: Any, acc: Any, part: Any, _nchunks: int
) -> None:
    buf = np.empty(_BLOCK, np.float64)
    for ch in range(x.shape[0]):
        _sum_blocks(x[ch], y[ch], 0, lens[ch], buf, acc[ch])
        part[ch, 0], part[ch, 1] = _merge(acc[ch])


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sigmoid_ce_sum_acc_parallel(
    x: Any, y: Any, lens: Any, acc: Any, part: Any, nchunks: int
) -> None:
    for ch in prange(nchunks):
        buf = np.empty(_BLOCK, np.float64)
        _sum_blocks(x[ch], y[ch], 0, lens[ch], buf, acc[ch])
        s, c = _merge(acc[ch])
        part[ch, 0] = s
        part[ch, 1] = c
