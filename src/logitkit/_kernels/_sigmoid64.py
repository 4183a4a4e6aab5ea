r"""numba kernels of the sigmoid family for float64 results (double-double).

Elementwise over C-contiguous 1-D arrays, the portable float64 path
(``logitkit._sigmoid``, ``logitkit._sigmoid_losses`` with ``refine=True``)
operation for operation, with :mod:`._f64`'s ports of ``exp_dd``,
``log1p_dd``, ``add_dd``, ``mul_dd`` and ``div_dd``:

- sigmoid: ``E = exp_dd(-|x|)``, ``1 / (1 + E)`` for ``x >= 0``, else
  ``E / (1 + E)``;
- softplus: ``log1p_dd(E) + max(x, 0)`` rounded once; log_sigmoid:
  ``-softplus(-x)``;
- sigmoid cross entropy (no ``pos_weight``, no smoothing):
  ``(1 - y) s_+ + y s_-`` with ``1 - y`` a TwoSum pair, guarded products and
  sums as in ``_sigmoid_losses``.

Each kernel makes one branch-free pass that vectorises (AVX-512 on the
machines measured: table look-ups become gathers), for ``x = 0`` or
``2**-400 <= |x| <= 300`` (and labels ``y = 0``, ``|y| >= 2**-400`` or
NaN), then redoes the rare other elements (NaN, infinities, tiny or large
``|x|``, tiny labels) with the scalar ports in a second pass. The vector
pass computes the same double-doubles as the scalar ports, with two
changes:

- Dekker's products (Veltkamp splits, ~17 operations) are ``p = a b``,
  ``e = fma(a, b, -p)``. Both are the exact ``a b - p`` where the exponents
  of the factors add up to at least ``-970`` (the error is then a float64,
  and no partial product of Dekker's underflows), and both give ``+0`` for
  an exact product; the domain above keeps every product of the chain
  there (``|r|``, ``E`` and ``log1p(E)`` above ``2**-434``).
- ``exp_dd``'s final scaling by ``2**q`` is one product with ``2**q``
  built from its exponent bits: the same rounding where the result is
  normal (``|x| <= 300``); ``log1p_dd``'s starting value
  ``y0 = log1p(s_hi)`` is :func:`._sigmoid32.log1p01` (branch-free, within
  an ulp) where the scalar port calls the C library's ``log1p`` (and the
  portable path NumPy's, which is another function again on AVX-512
  machines: they differ in ~5 % of the ``y0``).

``y0`` is only the start of a Newton step: another ``y0`` moves the
double-double result by its rounding errors (~``2**-86`` relative), which
the final rounding sees only for an exact value that close to a rounding
tie (none in sweeps of 10**8 elements); the other changes give the very
same double-doubles. No fast-math anywhere. The cross entropy writes
``hi + lo`` (``"none"``) or both parts (for ``"mean"``/``"sum"``, when
``lo`` is not empty).
"""

# numba-compiled helpers are untyped for mypy: their results are Any.
# mypy: disable-error-code="no-any-return"

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from ._f64 import (
    _C1,
    _C2,
    _C3,
    _D_HI,
    _D_LO,
    _INV_N,
    _INV_STEP,
    _NF,
    _SHIFT,
    _T_HI,
    _T_LO,
    _TAIL3,
    _TAIL4,
    _TAIL5,
    _TAIL6,
    _TAIL7,
    add_dd,
    add_rounded,
    div_dd,
    exp_dd,
    fast_two_sum,
    log1p_dd,
    mul_dd,
)
from ._f64 import two_sum as _two_sum
from ._intrinsics import as_float, fma
from ._sigmoid32 import _acc, _merge, log1p01

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


# The vector pass (module doc): the functions above, branch-free, for
# x = 0 or _TINY <= |x| <= _FAST (and labels y = 0, |y| >= _TINY or NaN).
_FAST = 300.0
_TINY = 2.0**-400
_BLOCK = 512  # the cross entropy's elements per block (labels, losses)


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _fast_x(x: float) -> bool:
    """Whether the vector pass takes `x` (False for NaN and infinities)."""
    a = abs(x)
    return (a <= _FAST) & ((a >= _TINY) | (x == 0.0))


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _fast_y(y: float) -> bool:
    """Whether the vector pass takes the label `y` (not ``0 < |y| < _TINY``)."""
    return not ((abs(y) < _TINY) & (y != 0.0))


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _two_prod_fma(a: float, b: float) -> tuple[float, float]:
    """``two_prod(a, b)``: the same pair where the exponents add to ``>= -970``."""
    p = a * b
    return p, fma(a, b, -p)


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _mul_fma(a_hi: float, a_lo: float, b_hi: float, b_lo: float) -> tuple[float, float]:
    """``mul_dd`` with :func:`_two_prod_fma`."""
    p, e = _two_prod_fma(a_hi, b_hi)
    return fast_two_sum(p, e + (a_hi * b_lo + a_lo * b_hi))


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _div_fma(a_hi: float, a_lo: float, b_hi: float, b_lo: float) -> tuple[float, float]:
    """``div_dd`` with :func:`_two_prod_fma`."""
    q1 = a_hi / b_hi
    p, e = _two_prod_fma(q1, b_hi)
    r = (((a_hi - p) - e) + a_lo) - q1 * b_lo
    return fast_two_sum(q1, r / b_hi)


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _expm1_fma(r_hi: float, r_lo: float) -> tuple[float, float]:
    """``_f64._expm1_small`` with the square by :func:`_two_prod_fma`."""
    t = _TAIL7
    t = t * r_hi + _TAIL6
    t = t * r_hi + _TAIL5
    t = t * r_hi + _TAIL4
    t = t * r_hi + _TAIL3
    sq_hi, sq_lo = _two_prod_fma(r_hi, r_hi)
    sq_lo = sq_lo + (2.0 * r_hi) * r_lo
    q_hi, q_e = fast_two_sum(0.5 * sq_hi, (sq_hi * r_hi) * t)
    p_hi, p_e = fast_two_sum(r_hi, q_hi)
    return fast_two_sum(p_hi, p_e + (r_lo + (q_e + 0.5 * sq_lo)))


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _exp_parts_fma(hi: float) -> tuple[float, int, int, float, float]:
    """``_f64._exp_parts(hi, 0.0)`` (``k``, ``q``, ``j``, ``expm1(r)``)."""
    v = hi * _INV_STEP
    k = (v + _SHIFT) - _SHIFT
    r_hi, r_lo = _two_sum(hi - k * _C1, -(k * _C2))
    r_hi, r_lo = _two_sum(r_hi, (r_lo + 0.0) - k * _C3)
    q = math.floor(k * _INV_N)
    j = int(k - q * _NF)
    p_hi, p_lo = _expm1_fma(r_hi, r_lo)
    return k, q, j, p_hi, p_lo


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _mantissa_fma(
    j: int, p_hi: float, p_lo: float
) -> tuple[float, float, float, float]:
    """``_f64._mantissa``: ``2**(j/N) (1 + p)`` and ``2**(j/N) p`` (gathers)."""
    t_hi = _T_HI[j]
    t_lo = _T_LO[j]
    tp_hi, tp_lo = _mul_fma(t_hi, t_lo, p_hi, p_lo)
    s, err = fast_two_sum(t_hi, tp_hi)
    m_hi, m_lo = fast_two_sum(s, err + (tp_lo + t_lo))
    return m_hi, m_lo, tp_hi, tp_lo


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _exp_vec(d: float) -> tuple[float, float]:
    """``exp_dd(d, 0.0)`` for ``-_FAST <= d <= 0`` (a normal result, exact scaling)."""
    _, q, j, p_hi, p_lo = _exp_parts_fma(d)
    m_hi, m_lo, _, _ = _mantissa_fma(j, p_hi, p_lo)
    scale = as_float((q + 1023) << 52)
    return m_hi * scale, m_lo * scale


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _log1p_vec(s_hi: float, s_lo: float) -> tuple[float, float]:
    r"""``log1p_dd(s)`` for ``exp(-_FAST) <= s_hi <= 1`` (its ``q >= -1`` branch).

    .. math:: y = y_0 + c - c^2/2, \qquad c = s E + (E - 1), \quad E = e^{-y_0}

    with ``y0 = log1p01(s_hi)`` and ``E - 1`` from the table of
    ``2**(j/N + q) - 1`` (``q`` is 0 or -1 for ``y0 <= ln 2``).
    """
    y0 = log1p01(s_hi)
    k, q, j, p_hi, p_lo = _exp_parts_fma(-y0)
    m_hi, m_lo, tp_hi, tp_lo = _mantissa_fma(j, p_hi, p_lo)
    idx = int(k - (2.0 * _NF) * q)
    scale = 0.5 if q < 0.0 else 1.0
    d_hi, d_lo = add_dd(_D_HI[idx], _D_LO[idx], tp_hi * scale, tp_lo * scale)
    se_hi, se_lo = _mul_fma(s_hi, s_lo, m_hi * scale, m_lo * scale)
    c_hi, c_lo = add_dd(d_hi, d_lo, se_hi, se_lo)
    l_hi, l_e = _two_sum(y0, c_hi)
    return fast_two_sum(l_hi, l_e + (c_lo - 0.5 * (c_hi * c_hi)))


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _sigmoid_vec(x: float) -> float:
    """:func:`_sigmoid` on the vector domain (one division for both signs)."""
    up = x >= 0.0
    e, e_lo = _exp_vec(-x if up else x)
    den, den_lo = add_dd(1.0, 0.0, e, e_lo)
    return _div_fma(1.0 if up else e, 0.0 if up else e_lo, den, den_lo)[0]


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _softplus_vec(x: float) -> float:
    """:func:`_softplus` on the vector domain."""
    up = x >= 0.0
    e, e_lo = _exp_vec(-x if up else x)
    lp, lp_lo = _log1p_vec(e, e_lo)
    t, err = _two_sum(lp, x if up else 0.0)  # add_rounded, all finite
    return t + (err + lp_lo)


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _mul_guarded_vec(
    a_hi: float, a_lo: float, b_hi: float, b_lo: float
) -> tuple[float, float]:
    """:func:`_mul_guarded` as selects (``|v| < _DD_SAFE`` is False for NaN, inf)."""
    ok = (abs(a_hi) < _DD_SAFE) & (abs(b_hi) < _DD_SAFE)
    p_hi, p_lo = _mul_fma(
        a_hi if ok else 0.0,
        a_lo if ok else 0.0,
        b_hi if ok else 0.0,
        b_lo if ok else 0.0,
    )
    plain = a_hi * b_hi if a_hi != 0.0 else 0.0
    return (p_hi if ok else plain), (p_lo if ok else 0.0)


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _add_guarded_vec(
    a_hi: float, a_lo: float, b_hi: float, b_lo: float
) -> tuple[float, float]:
    """:func:`_add_guarded` as selects."""
    ok = (abs(a_hi) < math.inf) & (abs(b_hi) < math.inf)
    s_hi, s_lo = add_dd(
        a_hi if ok else 0.0,
        a_lo if ok else 0.0,
        b_hi if ok else 0.0,
        b_lo if ok else 0.0,
    )
    return (s_hi if ok else a_hi + b_hi), (s_lo if ok else 0.0)


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _bce_vec(x: float, y: float) -> tuple[float, float]:
    """:func:`_bce` on the vector domain (finite `x`, any label but tiny ones)."""
    up = x >= 0.0
    ax = x if up else -x
    e_hi, e_lo = _exp_vec(-ax)
    l_hi, l_lo = _log1p_vec(e_hi, e_lo)
    p_hi, p_lo = _plus(l_hi, l_lo, x if up else 0.0)
    n_hi, n_lo = _plus(l_hi, l_lo, 0.0 if up else -x)
    a_hi, a_lo = _two_sum(1.0, -y)
    a_lo = a_lo if abs(a_hi) < math.inf else 0.0
    t1_hi, t1_lo = _mul_guarded_vec(a_hi, a_lo, p_hi, p_lo)
    t2_hi, t2_lo = _mul_guarded_vec(y, 0.0, n_hi, n_lo)
    return _add_guarded_vec(t1_hi, t1_lo, t2_hi, t2_lo)


# The passes index from 0 (the drivers hand them slices): with a start
# unknown to be >= 0, numba's wraparound of negative indices turns the
# vector loads and stores into gathers and scatters (1.6x slower).


@njit(**_KW)  # type: ignore[untyped-decorator]
def _sigmoid_pass(x: Any, out: Any) -> None:
    """``out[i] = sigmoid(x[i])``: the vector pass, then the fix-ups."""
    slow = 0
    for i in range(x.size):
        v = x[i]
        fast = _fast_x(v)
        out[i] = _sigmoid_vec(v if fast else 0.0)
        slow += 0 if fast else 1
    if slow > 0:
        for i in range(x.size):
            if not _fast_x(x[i]):
                out[i] = _sigmoid(x[i])


@njit(**_KW)  # type: ignore[untyped-decorator]
def _softplus_pass(x: Any, out: Any, sign: float) -> None:
    """``sign softplus(sign x[i])``: softplus (`sign` 1), log_sigmoid (-1).

    ``sign * v`` is ``+-v`` exactly but for the sign of a NaN: NaN goes to
    the second pass, which negates.
    """
    slow = 0
    for i in range(x.size):
        v = sign * x[i]
        fast = _fast_x(v)
        out[i] = sign * _softplus_vec(v if fast else 0.0)
        slow += 0 if fast else 1
    if slow > 0:
        for i in range(x.size):
            v = -x[i] if sign < 0.0 else x[i]
            if not _fast_x(v):
                r = _softplus(v)
                out[i] = -r if sign < 0.0 else r


@njit(**_KW)  # type: ignore[untyped-decorator]
def _ce_pass(x: Any, y: Any, hi: Any, lo: Any, n: int) -> None:
    """The losses ``hi[i] + lo[i]`` of ``x[i]`` and float64 labels ``y[i]``, ``i < n``."""
    slow = 0
    for i in range(n):
        v = x[i]
        w = y[i]
        fast = _fast_x(v) & _fast_y(w)
        h, low = _bce_vec(v if fast else 0.0, w if fast else 0.0)
        hi[i] = h
        lo[i] = low
        slow += 0 if fast else 1
    if slow > 0:
        for i in range(n):
            if not (_fast_x(x[i]) & _fast_y(y[i])):
                hi[i], lo[i] = _bce(x[i], y[i])


@njit(**_KW)  # type: ignore[untyped-decorator]
def _ce_block(x: Any, y: Any, yb: Any, hi: Any, lo: Any) -> None:
    """The losses of the block `x`, `y` (``<= _BLOCK``) in `hi` and `lo`.

    The labels are converted to float64 in `yb` first: the vector pass is
    compiled once, whatever the labels' dtype.
    """
    m = x.size
    for j in range(m):
        yb[j] = float(y[j])
    _ce_pass(x, yb, hi, lo, m)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _ce_range(x: Any, y: Any, out: Any, lo: Any) -> None:
    """The losses of `x`, `y`: ``hi + lo`` in `out`, or both parts (`lo` not empty)."""
    buf = np.empty((2, _BLOCK), np.float64)
    for b in range(0, x.size, _BLOCK):
        e = min(b + _BLOCK, x.size)
        if lo.size == 0:
            h = out[b:e]
            _ce_block(x[b:e], y[b:e], buf[0], h, buf[1])
            for j in range(e - b):
                h[j] += buf[1, j]
        else:
            _ce_block(x[b:e], y[b:e], buf[0], out[b:e], lo[b:e])


# Drivers: serial, and parallel over `nchunks` chunks of the flat array.


@njit(**_KW)  # type: ignore[untyped-decorator]
def sigmoid_serial(x: Any, out: Any, _nchunks: int) -> None:
    _sigmoid_pass(x, out)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sigmoid_parallel(x: Any, out: Any, nchunks: int) -> None:
    n = x.size
    for c in prange(nchunks):
        a, b = c * n // nchunks, (c + 1) * n // nchunks
        _sigmoid_pass(x[a:b], out[a:b])


@njit(**_KW)  # type: ignore[untyped-decorator]
def softplus_serial(x: Any, out: Any, _nchunks: int) -> None:
    _softplus_pass(x, out, 1.0)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def softplus_parallel(x: Any, out: Any, nchunks: int) -> None:
    n = x.size
    for c in prange(nchunks):
        a, b = c * n // nchunks, (c + 1) * n // nchunks
        _softplus_pass(x[a:b], out[a:b], 1.0)


@njit(**_KW)  # type: ignore[untyped-decorator]
def log_sigmoid_serial(x: Any, out: Any, _nchunks: int) -> None:
    _softplus_pass(x, out, -1.0)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def log_sigmoid_parallel(x: Any, out: Any, nchunks: int) -> None:
    n = x.size
    for c in prange(nchunks):
        a, b = c * n // nchunks, (c + 1) * n // nchunks
        _softplus_pass(x[a:b], out[a:b], -1.0)


@njit(**_KW)  # type: ignore[untyped-decorator]
def sigmoid_ce_serial(x: Any, y: Any, out: Any, lo: Any, _nchunks: int) -> None:
    _ce_range(x, y, out, lo)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sigmoid_ce_parallel(x: Any, y: Any, out: Any, lo: Any, nchunks: int) -> None:
    n = x.size
    for c in prange(nchunks):
        a, b = c * n // nchunks, (c + 1) * n // nchunks
        _ce_range(x[a:b], y[a:b], out[a:b], lo[a:b])


@njit(**_KW)  # type: ignore[untyped-decorator]
def _sum_blocks(x: Any, y: Any, start: int, stop: int, buf: Any, acc: Any) -> None:
    """Add the losses of ``[start, stop)`` to the accumulators ``acc`` (8).

    ``acc`` holds ``s0..s3, c0..c3`` of :func:`_sum_range`: a range cut at
    multiples of ``_BLOCK`` from its start and added piece by piece gives
    the accumulators of the whole range, bit for bit. ``buf`` (3,
    ``_BLOCK``): a block's labels (float64), losses and their low parts.
    """
    s0, s1, s2, s3 = acc[0], acc[1], acc[2], acc[3]
    c0, c1, c2, c3 = acc[4], acc[5], acc[6], acc[7]
    for b in range(start, stop, _BLOCK):
        m = min(_BLOCK, stop - b)
        hi = buf[1, :m]
        lo = buf[2, :m]
        _ce_block(x[b : b + m], y[b : b + m], buf[0], hi, lo)
        for j in range(m):  # the low parts first, in order
            c0 += lo[j]
        j = 0
        while j + 4 <= m:
            s0, c0 = _acc(s0, c0, hi[j])
            s1, c1 = _acc(s1, c1, hi[j + 1])
            s2, c2 = _acc(s2, c2, hi[j + 2])
            s3, c3 = _acc(s3, c3, hi[j + 3])
            j += 4
        while j < m:
            s0, c0 = _acc(s0, c0, hi[j])
            j += 1
    acc[0], acc[1], acc[2], acc[3] = s0, s1, s2, s3
    acc[4], acc[5], acc[6], acc[7] = c0, c1, c2, c3


@njit(**_KW)  # type: ignore[untyped-decorator]
def _sum_range(x: Any, y: Any, start: int, stop: int, buf: Any) -> tuple[float, float]:
    """The losses (both parts) of ``[start, stop)`` as a compensated sum."""
    acc = np.zeros(8, np.float64)
    _sum_blocks(x, y, start, stop, buf, acc)
    return _merge(acc)


@njit(**_KW)  # type: ignore[untyped-decorator]
def sigmoid_ce_sum_serial(x: Any, y: Any, part: Any, _nchunks: int) -> None:
    """The sum of the losses as ``part[0] = (s, c)``, without storing them."""
    buf = np.empty((3, _BLOCK), np.float64)
    part[0, 0], part[0, 1] = _sum_range(x, y, 0, x.size, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sigmoid_ce_sum_parallel(x: Any, y: Any, part: Any, nchunks: int) -> None:
    n = x.size
    for ch in prange(nchunks):
        buf = np.empty((3, _BLOCK), np.float64)
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
    buf = np.empty((3, _BLOCK), np.float64)
    for ch in range(x.shape[0]):
        _sum_blocks(x[ch], y[ch], 0, lens[ch], buf, acc[ch])
        part[ch, 0], part[ch, 1] = _merge(acc[ch])


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sigmoid_ce_sum_acc_parallel(
    x: Any, y: Any, lens: Any, acc: Any, part: Any, nchunks: int
) -> None:
    for ch in prange(nchunks):
        buf = np.empty((3, _BLOCK), np.float64)
        _sum_blocks(x[ch], y[ch], 0, lens[ch], buf, acc[ch])
        s, c = _merge(acc[ch])
        part[ch, 0] = s
        part[ch, 1] = c
