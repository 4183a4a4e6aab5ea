r"""numba kernels of the sigmoid family for float64 results (double-double).

Elementwise over C-contiguous 1-D arrays, a scalar port of the portable
float64 path (``logitkit._sigmoid``, ``logitkit._sigmoid_losses`` with
``refine=True``) operation for operation, with :mod:`._f64`'s ports of
``exp_dd``, ``log1p_dd``, ``add_dd``, ``mul_dd`` and ``div_dd``: every value
is the same double-double before its one final rounding, so the results are
the portable path's, bit for bit.

- sigmoid: ``E = exp_dd(-|x|)``, ``1 / (1 + E)`` for ``x >= 0``, else
  ``E / (1 + E)``;
- softplus: ``log1p_dd(E) + max(x, 0)`` rounded once; log_sigmoid:
  ``-softplus(-x)``;
- sigmoid cross entropy (no ``pos_weight``, no smoothing):
  ``(1 - y) s_+ + y s_-`` with ``1 - y`` a TwoSum pair, guarded products and
  sums as in ``_sigmoid_losses``.

No fast-math anywhere. The cross entropy writes ``hi + lo`` (``"none"``) or
both parts (for ``"mean"``/``"sum"``, when ``lo`` is not empty).
"""

# numba-compiled helpers are untyped for mypy: their results are Any.
# mypy: disable-error-code="no-any-return"

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from ._f64 import add_dd, add_rounded, div_dd, exp_dd, fast_two_sum, log1p_dd, mul_dd
from ._f64 import two_sum as _two_sum

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

_DD_SAFE = 2.0**990
_KW: Any = {"cache": True, "nogil": True, "error_model": "numpy"}


@njit(**_KW)  # type: ignore[untyped-decorator]
def _sigmoid(x: float) -> float:
    e, e_lo = exp_dd(-x if x >= 0.0 else x, 0.0)
    den, den_lo = add_dd(1.0, 0.0, e, e_lo)
    if x >= 0.0:
        return div_dd(1.0, 0.0, den, den_lo)[0]
    return div_dd(e, e_lo, den, den_lo)[0]


@njit(**_KW)  # type: ignore[untyped-decorator]
def _softplus(x: float) -> float:
    e, e_lo = exp_dd(-x if x >= 0.0 else x, 0.0)
    lp, lp_lo = log1p_dd(e, e_lo)
    return add_rounded(lp, lp_lo, x if x >= 0.0 else 0.0)  # noqa: FURB136


@njit(**_KW)  # type: ignore[untyped-decorator]
def _finite_or(v: float) -> float:
    if v > 0.0:
        return v
    return 0.0 if v < 0.0 else v  # noqa: FURB136 (max() would drop a NaN)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _plus(hi: float, lo: float, b: float) -> tuple[float, float]:
    s, e = _two_sum(b, hi)
    return fast_two_sum(s, e + lo)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _mul_guarded(
    a_hi: float, a_lo: float, b_hi: float, b_lo: float
) -> tuple[float, float]:
    ok = (
        math.isfinite(a_hi)
        and math.isfinite(b_hi)
        and abs(a_hi) < _DD_SAFE
        and abs(b_hi) < _DD_SAFE
    )
    if ok:
        return mul_dd(a_hi, a_lo, b_hi, b_lo)
    if a_hi != 0.0:
        return a_hi * b_hi, 0.0
    return 0.0, 0.0


@njit(**_KW)  # type: ignore[untyped-decorator]
def _add_guarded(
    a_hi: float, a_lo: float, b_hi: float, b_lo: float
) -> tuple[float, float]:
    if math.isfinite(a_hi) and math.isfinite(b_hi):
        return add_dd(a_hi, a_lo, b_hi, b_lo)
    return a_hi + b_hi, 0.0


@njit(**_KW)  # type: ignore[untyped-decorator]
def _bce(x: float, y: float) -> tuple[float, float]:
    fin = math.isfinite(x)
    xs = x if fin else 0.0
    up = xs >= 0.0
    ax = xs if up else -xs
    e_hi, e_lo = exp_dd(-ax, 0.0)
    l_hi, l_lo = log1p_dd(e_hi, e_lo)
    if fin:
        p_hi, p_lo = _plus(l_hi, l_lo, xs if up else 0.0)
        n_hi, n_lo = _plus(l_hi, l_lo, 0.0 if up else -xs)
    else:
        p_hi, p_lo = _finite_or(x), 0.0
        n_hi, n_lo = _finite_or(-x), 0.0
    a_hi, a_lo = _two_sum(1.0, -y)
    if not math.isfinite(a_hi):
        a_lo = 0.0
    t1_hi, t1_lo = _mul_guarded(a_hi, a_lo, p_hi, p_lo)
    t2_hi, t2_lo = _mul_guarded(y, 0.0, n_hi, n_lo)
    return _add_guarded(t1_hi, t1_lo, t2_hi, t2_lo)


# Drivers: serial, and parallel over `nchunks` chunks of the flat array.


@njit(**_KW)  # type: ignore[untyped-decorator]
def sigmoid_serial(x: Any, out: Any, _nchunks: int) -> None:
    for i in range(x.size):
        out[i] = _sigmoid(x[i])


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sigmoid_parallel(x: Any, out: Any, nchunks: int) -> None:
    n = x.size
    for c in prange(nchunks):
        for i in range(c * n // nchunks, (c + 1) * n // nchunks):
            out[i] = _sigmoid(x[i])


@njit(**_KW)  # type: ignore[untyped-decorator]
def softplus_serial(x: Any, out: Any, _nchunks: int) -> None:
    for i in range(x.size):
        out[i] = _softplus(x[i])


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def softplus_parallel(x: Any, out: Any, nchunks: int) -> None:
    n = x.size
    for c in prange(nchunks):
        for i in range(c * n // nchunks, (c + 1) * n // nchunks):
            out[i] = _softplus(x[i])


@njit(**_KW)  # type: ignore[untyped-decorator]
def log_sigmoid_serial(x: Any, out: Any, _nchunks: int) -> None:
    for i in range(x.size):
        out[i] = -_softplus(-x[i])


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def log_sigmoid_parallel(x: Any, out: Any, nchunks: int) -> None:
    n = x.size
    for c in prange(nchunks):
        for i in range(c * n // nchunks, (c + 1) * n // nchunks):
            out[i] = -_softplus(-x[i])


@njit(**_KW)  # type: ignore[untyped-decorator]
def _ce_one(x: Any, y: Any, out: Any, lo: Any, i: int) -> None:
    hi, low = _bce(x[i], float(y[i]))
    if lo.size == 0:
        out[i] = hi + low
    else:
        out[i] = hi
        lo[i] = low


@njit(**_KW)  # type: ignore[untyped-decorator]
def sigmoid_ce_serial(x: Any, y: Any, out: Any, lo: Any, _nchunks: int) -> None:
    for i in range(x.size):
        _ce_one(x, y, out, lo, i)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sigmoid_ce_parallel(x: Any, y: Any, out: Any, lo: Any, nchunks: int) -> None:
    n = x.size
    for c in prange(nchunks):
        for i in range(c * n // nchunks, (c + 1) * n // nchunks):
            _ce_one(x, y, out, lo, i)


_BLOCK = 512


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _acc(s: float, c: float, v: float) -> tuple[float, float]:
    """Add `v` to the compensated sum ``s + c`` (TwoSum; no fast-math)."""
    t, err = _two_sum(s, v)
    return t, c + err


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
            hi, lo = _bce(x[b + j], float(y[b + j]))
            buf[j] = hi
            c0 += lo
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
    """The losses (both parts) of ``[start, stop)`` as a compensated sum."""
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
        s, c = _sum_range(x, y, ch * n // nchunks, (ch + 1) * n // nchunks, buf)
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
