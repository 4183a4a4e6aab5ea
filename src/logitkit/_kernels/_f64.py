r"""numba kernels of the softmax family for float64 results (double-double).

A scalar port of the portable float64 path (``logitkit._dd``: TwoSum,
Dekker products, the table-driven ``exp_dd`` with its subnormal rounding,
the Newton-corrected ``log1p_dd``), operation for operation, but for the hot
loop: the ``exp(d_j)`` of a row with a finite maximum are those of
:func:`exp_neg_dd`, a branch-free double-double exp that vectorises
(``exp_dd``'s table by gathers, no floor or ldexp: FMA reduction, a
degree-7 polynomial on ``|r| <= ln2/2048``, four double-double Horner
steps), within ``2**-96.5`` of the exact value where ``exp_dd`` is within
``2**-86``;
the few results below ``2**-966`` (where low parts lose digits, and the
subnormal ones with ``exp_dd``'s rounding) are ``exp_dd``'s. The sum ``S``
is a compensated sum in 32 running parts here (vectorised, renormalised
every 8 terms of a part; four for rows below 128 classes), a pairwise tree
there. All
of these are within ~2**-86 of the exact values: the final rounding to
float64 sees the difference only for an exact value within about that
(relative) of a rounding tie, a double rounding both paths are exposed to
(none in a sweep of 4e7 elements). No fast-math anywhere (error-free
transformations do not survive reassociation or FMA contraction; the FMAs
are explicit).

Drivers have the signatures of :mod:`._f32`'s; the cross entropy also
writes the low parts of the losses (for ``"mean"``/``"sum"``). The gradient
(``sparse_ce_grad``) uses the high parts of ``exp`` and ``S`` only, in plain
float64, as ``logitkit._cross_entropy._row_grad`` does; ``sparse_ce_fwd``
and ``sparse_ce_bwd`` split it in two for torch autograd (each row's ``m``
and ``S`` kept in between). ``dense_ce_grad`` is the dense-label loss (the
portable path's ``sum_dd`` of double-double terms) and its gradient, the
label sums NumPy's sums in NumPy's order (its pairwise sum, or one term at a
time, as the caller says from the labels' strides); rows whose signed labels
cancel ``log1p(S)`` are flagged for the portable path.
"""

# numba-compiled helpers are untyped for mypy: their results are Any.
# mypy: disable-error-code="no-any-return"

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
from numba import njit, prange

from .._dd import _N, _tables
from ._intrinsics import as_float, as_int, fma, maxnum64

__all__ = [
    "dense_ce_grad_parallel",
    "dense_ce_grad_serial",
    "log_softmax_parallel",
    "log_softmax_serial",
    "log_softmax_vjp_parallel",
    "log_softmax_vjp_serial",
    "logsumexp_parallel",
    "logsumexp_serial",
    "softmax_parallel",
    "softmax_serial",
    "softmax_vjp_parallel",
    "softmax_vjp_serial",
    "sparse_ce_bwd_parallel",
    "sparse_ce_bwd_serial",
    "sparse_ce_fwd_parallel",
    "sparse_ce_fwd_serial",
    "sparse_ce_grad_parallel",
    "sparse_ce_grad_serial",
    "sparse_ce_parallel",
    "sparse_ce_serial",
]

_T = _tables()
_VALUES = np.asarray(_T.values, dtype=np.float64)
_T_HI = _VALUES[0:_N].copy()
_T_LO = _VALUES[_N : 2 * _N].copy()
_D_HI = _VALUES[2 * _N : 4 * _N].copy()
_D_LO = _VALUES[4 * _N : 6 * _N].copy()
_INV_STEP = _T.inv_step
_C1 = _T.c1
_C2 = _T.c2
_C3 = _T.c3
_NF = float(_N)
_INV_N = 1.0 / _N
_SHIFT = 6755399441055744.0  # 1.5 * 2**52: round half to even (np.round)
_SPLITTER = 134217729.0
_TINY = 2.0**-1074
_EXP_MAX = 709.782712893384
_EXP_MIN = -746.0
_HALF_MAX = float(np.finfo(np.float64).max) * 0.5
_DD_SAFE = 2.0**990
_TAIL3 = 1.0 / 6.0
_TAIL4 = 1.0 / 24.0
_TAIL5 = 1.0 / 120.0
_TAIL6 = 1.0 / 720.0
_TAIL7 = 1.0 / 5040.0

_KW: Any = {"cache": True, "nogil": True, "error_model": "numpy"}

# The branch-free exp of the hot loop (exp_neg_dd): the reduction step
# ln2/N = _STEP_HI + _STEP_LO + O(2**-120) (_STEP_HI the nearest float64, a
# multiple of 2**-63; |_STEP_LO| < 2**-65), and 1/3! as a double-double.
_STEP = Fraction(_C1) + Fraction(_C2) + Fraction(_C3)
_STEP_HI = float(_STEP)
_STEP_LO = float(_STEP - Fraction(_STEP_HI))
_LOG2_N = _N.bit_length() - 1  # N = 2**10


def _inv_factorial(n: int) -> tuple[float, float]:
    f = Fraction(1, math.factorial(n))
    hi = float(f)
    return hi, float(f - Fraction(hi))


_F3H, _F3L = _inv_factorial(3)
# Below this d the hot loop leaves exp to exp_dd (results below 2**-966,
# whose low parts lose digits, and subnormal results with their rounding).
_FAST_MIN = -670.0


@njit(**_KW)  # type: ignore[untyped-decorator]
def two_sum(a: float, b: float) -> tuple[float, float]:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@njit(**_KW)  # type: ignore[untyped-decorator]
def fast_two_sum(a: float, b: float) -> tuple[float, float]:
    s = a + b
    return s, b - (s - a)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _split(a: float) -> tuple[float, float]:
    c = a * _SPLITTER
    hi = c - (c - a)
    return hi, a - hi


@njit(**_KW)  # type: ignore[untyped-decorator]
def two_prod(a: float, b: float) -> tuple[float, float]:
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    return p, (((a_hi * b_hi - p) + a_hi * b_lo) + a_lo * b_hi) + a_lo * b_lo


@njit(**_KW)  # type: ignore[untyped-decorator]
def _square(a: float) -> tuple[float, float]:
    p = a * a
    a_hi, a_lo = _split(a)
    return p, ((a_hi * a_hi - p) + (2.0 * a_hi) * a_lo) + a_lo * a_lo


@njit(**_KW)  # type: ignore[untyped-decorator]
def add_dd(a_hi: float, a_lo: float, b_hi: float, b_lo: float) -> tuple[float, float]:
    s, e = two_sum(a_hi, b_hi)
    t, f = two_sum(a_lo, b_lo)
    s, e = fast_two_sum(s, e + t)
    return fast_two_sum(s, e + f)


@njit(**_KW)  # type: ignore[untyped-decorator]
def mul_dd(a_hi: float, a_lo: float, b_hi: float, b_lo: float) -> tuple[float, float]:
    p, e = two_prod(a_hi, b_hi)
    return fast_two_sum(p, e + (a_hi * b_lo + a_lo * b_hi))


@njit(**_KW)  # type: ignore[untyped-decorator]
def div_dd(a_hi: float, a_lo: float, b_hi: float, b_lo: float) -> tuple[float, float]:
    q1 = a_hi / b_hi
    p, e = two_prod(q1, b_hi)
    r = (((a_hi - p) - e) + a_lo) - q1 * b_lo
    return fast_two_sum(q1, r / b_hi)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _expm1_small(r_hi: float, r_lo: float) -> tuple[float, float]:
    t = _TAIL7
    t = t * r_hi + _TAIL6
    t = t * r_hi + _TAIL5
    t = t * r_hi + _TAIL4
    t = t * r_hi + _TAIL3
    sq_hi, sq_lo = _square(r_hi)
    sq_lo = sq_lo + (2.0 * r_hi) * r_lo
    q_hi, q_e = fast_two_sum(0.5 * sq_hi, (sq_hi * r_hi) * t)
    p_hi, p_e = fast_two_sum(r_hi, q_hi)
    return fast_two_sum(p_hi, p_e + (r_lo + (q_e + 0.5 * sq_lo)))


@njit(**_KW)  # type: ignore[untyped-decorator]
def _exp_parts(hi: float, lo: float) -> tuple[float, float, int, float, float]:
    """``k``, ``q``, the table index ``j`` and ``expm1(r)`` of ``exp_dd``'s reduction."""
    v = hi * _INV_STEP
    k = (v + _SHIFT) - _SHIFT
    r_hi, r_lo = two_sum(hi - k * _C1, -(k * _C2))
    r_hi, r_lo = two_sum(r_hi, (r_lo + lo) - k * _C3)
    q = math.floor(k * _INV_N)
    j = int(k - q * _NF)
    p_hi, p_lo = _expm1_small(r_hi, r_lo)
    return k, q, j, p_hi, p_lo


@njit(**_KW)  # type: ignore[untyped-decorator]
def _mantissa(j: int, p_hi: float, p_lo: float) -> tuple[float, float, float, float]:
    t_hi = _T_HI[j]
    t_lo = _T_LO[j]
    tp_hi, tp_lo = mul_dd(t_hi, t_lo, p_hi, p_lo)
    s, err = fast_two_sum(t_hi, tp_hi)
    m_hi, m_lo = fast_two_sum(s, err + (tp_lo + t_lo))
    return m_hi, m_lo, tp_hi, tp_lo


@njit(**_KW)  # type: ignore[untyped-decorator]
def _powers(q: float) -> tuple[float, float]:
    q1 = math.floor(q * 0.5)
    return math.ldexp(1.0, int(q1)), math.ldexp(1.0, int(q - q1))


@njit(**_KW)  # type: ignore[untyped-decorator]
def exp_dd(hi: float, lo: float) -> tuple[float, float]:
    """``logitkit._dd.exp_dd`` of one value (subnormal results rounded once)."""
    if not (hi >= _EXP_MIN and hi <= _EXP_MAX):
        if hi < 0.0:
            return 0.0, 0.0
        if hi > 0.0:
            return math.inf, 0.0
        return hi, 0.0
    _, q, j, p_hi, p_lo = _exp_parts(hi, lo)
    m_hi, m_lo, _, _ = _mantissa(j, p_hi, p_lo)
    p1, p2 = _powers(q)
    t = (m_hi * p1) * p2
    d = m_hi - (t / p2) / p1
    half = ((_TINY / p2) / p1) * 0.5
    up = (d > half) or (d == half and m_lo > 0.0)
    down = (d < -half) or (d == -half and m_lo < 0.0)
    t = (t + (_TINY if up else 0.0)) - (_TINY if down else 0.0)
    return t, (m_lo * p1) * p2


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def exp_neg_dd(d: float, dl: float) -> tuple[float, float]:
    r"""``exp(d + dl)`` for ``_FAST_MIN <= d <= 0``, branch-free (it vectorises).

    `dl` a low part, ``|dl| <= 2**-44`` and ``|dl| <= |d|`` or ``d = 0``
    (as the TwoSum error of ``d = x - m``: ``|dl| <= ulp(d)/2``). Tang's
    reduction, as ``exp_dd``'s but by FMAs:
    ``d + dl = k ln2/N + r`` (``N = 1024``, ``k = N q + j`` by the shifter,
    ``|r| <= ln2/2N < 2**-11``) and

    .. math::

        e^{d + dl} = 2^q \, 2^{j/N} \, e^{r_{hi}} (1 + r_{lo}),

    ``2**(j/N)`` the double-double of ``exp_dd``'s table (two gathers),
    ``exp(r_hi)`` by its Taylor polynomial of degree 7 (truncation below
    ``2**-107``): ``1/4! + ... + r**3/7!`` in float64, then four
    double-double Horner steps ``c + r a`` (``hi = fma(a_hi, r, c)``, ``lo``
    the residual ``fma(a_hi, r, c - hi)``, exact up to its own rounding,
    plus ``a_lo r + c_lo``), for ``c = 1/3!, 1/2, 1, 1``; then one
    double-double product with the table entry and ``2**q`` from the
    exponent bits (``q >= -967``: normal).

    Error, relative to the result (``|k| < 2**20``): ``r_hi + r_lo`` is
    ``r`` but for ``2**-97`` (the one rounding of ``dl - k _STEP_LO``) and
    ``2**-100.4`` (``ln2/N - _STEP_HI - _STEP_LO`` times ``k``); the
    polynomial's float64 part and the Horner and product roundings add
    below ``2**-102``. In all below ``2**-96.5`` (measured: ``2**-96.9``;
    ``exp_dd``: ``2**-86``, measured ``2**-88``). Normalised: the high part
    is the correctly rounded ``exp`` but within ``~2**-96`` (relative) of a
    tie, as ``exp_dd``'s is within ``~2**-86``.
    """
    t = fma(d, _INV_STEP, _SHIFT)
    k = t - _SHIFT  # |k| < 2**20
    kk = as_int(t) - as_int(_SHIFT)
    # d - k _STEP_HI is exact: for k != 0 a multiple of 2**-64 (|d| > 2**-12
    # and _STEP_HI a multiple of 2**-63) below 2**-11 in magnitude. The
    # tail is below 2**-43.5, its one rounding below 2**-97; TwoSum's fast
    # form is exact as d - k _STEP_HI is a multiple of ulp(tail) (or k = 0
    # and |dl| <= |d|).
    r, r_lo = fast_two_sum(fma(-k, _STEP_HI, d), fma(-k, _STEP_LO, dl))
    j = kk & (_N - 1)
    t_hi = _T_HI[j]
    t_lo = _T_LO[j]
    # 1/4! + r/5! + r**2/6! + r**3/7! (times r**4 < 2**-46: rounding below
    # 2**-103 of the result).
    a = fma(fma(fma(_TAIL7, r, _TAIL6), r, _TAIL5), r, _TAIL4)
    # c + r (a + a_lo) for c = 1/3!, 1/2, 1, 1; every c - hi is exact
    # (Sterbenz: |r a| < c/2).
    b = fma(a, r, _F3H)
    b_lo = fma(a, r, _F3H - b) + _F3L
    a = fma(b, r, 0.5)
    a_lo = fma(b_lo, r, fma(b, r, 0.5 - a))
    b = fma(a, r, 1.0)
    b_lo = fma(a_lo, r, fma(a, r, 1.0 - b))
    e = fma(b, r, 1.0)
    e_lo = fma(b_lo, r, fma(b, r, 1.0 - e))
    e_lo = fma(e, r_lo, e_lo)  # exp(r_lo) = 1 + r_lo (|r_lo| < 2**-64)
    # (t_hi + t_lo)(e + e_lo), t_lo e_lo (below 2**-105) left out.
    p = t_hi * e
    p_lo = fma(t_hi, e_lo, fma(t_lo, e, fma(t_hi, e, -p)))
    m_hi, m_lo = fast_two_sum(p, p_lo)
    scale = as_float(((kk >> _LOG2_N) + 1023) << 52)  # 2**q, k = N q + j
    return m_hi * scale, m_lo * scale


@njit(**_KW)  # type: ignore[untyped-decorator]
def _exp_row(x: Any, i: int, n: int, m: float, buf: Any) -> None:
    """``buf[0, j] + buf[1, j] = exp_dd(x_j - m)`` (``(1, 0)`` at ``x_j = m``).

    For a finite `m` and a row without NaN. One branch-free (vectorised)
    pass with :func:`exp_neg_dd`; the few ``d_j`` in ``[_EXP_MIN,
    _FAST_MIN)`` are then redone by ``exp_dd`` (below ``_EXP_MIN``: 0).
    """
    slow = 0
    for j in range(n):
        v = x[i, j]
        d = v - m
        bb = d - v
        dl = (v - (d - bb)) + (-m - bb)
        fast = d >= _FAST_MIN
        e_hi, e_lo = exp_neg_dd(d if fast else 0.0, dl if fast else 0.0)
        buf[0, j] = e_hi if fast else 0.0
        buf[1, j] = e_lo if fast else 0.0
        slow += 1 if (d < _FAST_MIN and d >= _EXP_MIN) else 0
    if slow > 0:
        for j in range(n):
            d, dl = _d(x[i, j], m)
            if d < _FAST_MIN and d >= _EXP_MIN:
                buf[0, j], buf[1, j] = exp_dd(d, dl)


#: Running sums of :func:`_sum_span` on rows of at least ``_LANES_MIN``
#: classes: lane ``k`` sums the terms ``j = k (mod _LANES)``, the lanes in an
#: array that the loop vectoriser updates 8 at a time (four zmm registers).
_LANES = 32
#: Blocks of ``_LANES`` terms between two renormalisations of the lanes.
_FOLD = 8
#: Shorter rows (all of :func:`_block_stats`'s) take four scalar running
#: sums: no array to allocate (the lanes are faster from about 100 classes).
_LANES_MIN = 128


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _lane_add(
    s: Any, c: Any, k: int, xr: Any, m: float, eh: Any, el: Any, u: Any
) -> None:
    """Term `u` into lane `k`: ``s[k]`` by TwoSum, its error and ``e_lo`` to ``c[k]``.

    `u` unsigned: numba then emits no wraparound of negative indices, and
    the loads of consecutive `u` are contiguous (not gathers). The loads
    are unconditional, the exclusion of ``x_j = m`` a select.
    """
    keep = xr[u] != m
    e = eh[u]
    lo = el[u]
    e = e if keep else 0.0
    lo = lo if keep else 0.0
    a = s[k]
    t = a + e
    bb = t - a
    c[k] += ((a - (t - bb)) + (e - bb)) + lo
    s[k] = t


@njit(**_KW)  # type: ignore[untyped-decorator]
def _sum_lanes(xr: Any, m: float, eh: Any, el: Any, n: int) -> tuple[float, float]:
    """``(s, c)`` of :func:`_sum_span` (ties left out) in ``_LANES`` running sums.

    `xr` the row, `eh`/`el` its ``exp`` parts from index 0; ``n >= _LANES``.
    """
    acc = np.zeros((2, _LANES), np.float64)
    s = acc[0]
    c = acc[1]
    nw = n - n % _LANES
    j = 0
    while j < nw:
        jb = min(j + _LANES * _FOLD, nw)
        for jj in range(j, jb, _LANES):
            for k in range(_LANES):
                _lane_add(s, c, k, xr, m, eh, el, np.uintp(jj + k))
        # (s, c) <- TwoSum(s, c): exact, |c| <= ulp(s)/2 again.
        for k in range(_LANES):
            a = s[k]
            e = c[k]
            t = a + e
            bb = t - a
            c[k] = (a - (t - bb)) + (e - bb)
            s[k] = t
        j = jb
    for k in range(n - nw):
        _lane_add(s, c, k, xr, m, eh, el, np.uintp(nw + k))
    # Lane k + h into lane k, h = 16, 8, 4, 2, 1.
    h = _LANES // 2
    while h >= 1:
        for k in range(h):
            a = s[k]
            e = s[k + h]
            t = a + e
            bb = t - a
            c[k] += c[k + h] + ((a - (t - bb)) + (e - bb))
            s[k] = t
        h //= 2
    return s[0], c[0]


@njit(**_KW)  # type: ignore[untyped-decorator]
def _sum_span(
    x: Any, i: int, n: int, m: float, e_hi: Any, e_lo: Any, off: int
) -> tuple[float, float]:
    r"""``S`` of row `i` from its ``exp`` parts ``e_hi[off + j] + e_lo[off + j]``.

    .. math::

        S = \sum_{j:\, x_j \ne m} (e_{hi,j} + e_{lo,j}) + (t - 1),

    ``t`` the count of ``x_j = m`` (``t >= 1``), added last (exactly, by
    TwoSum), normalised by a final TwoSum. For a finite `m` and a row
    without NaN (terms in ``[0, 1]``).

    Rows of ``n >= _LANES_MIN`` classes: ``_LANES = 32`` running sums, lane
    ``k`` of the terms ``j = k (mod 32)``: ``s_k <- fl(s_k + e_hi)``,
    ``c_k <- fl(c_k + fl(f + e_lo))`` (``f`` the TwoSum error), and every
    ``_FOLD = 8`` terms of a lane ``(s_k, c_k) <- TwoSum(s_k, c_k)``; then a
    pairwise TwoSum tree of the lanes (``c`` summed with the errors). The
    lanes' updates are elementwise: the loop vectoriser runs them 8 lanes
    to a zmm register, each lane's operations those of the scalar form (no
    fast-math; the result does not depend on the vector width). Shorter
    rows: four scalar running sums (no renormalisation).

    Error (``u = 2**-53``, ``S_k`` a lane's exact sum): between two
    renormalisations ``|c_k| <= (2 _FOLD + 1) u S_k``, so the two roundings
    of an update are below ``(2 _FOLD + 3) u**2 S_k``; in all below
    ``19 (n / 32 + 1) u**2 S`` (``2**-91.8 S`` at ``n = 32000``), the
    tree's and the ties' roundings below ``2**6 u**2 S`` (four running sums,
    without renormalising: ``2 (n / 4)**2 u**2 S``, ``2**-79`` at
    ``n = 32000``). Measured at ``n = 32000``: ``2**-101 S`` (random rows),
    ``2**-98.8 S`` (all terms equal; four running sums: ``2**-88``).
    """
    if n >= _LANES_MIN:
        s, c = _sum_lanes(x[i], m, e_hi[off:], e_lo[off:], n)
    else:
        s0 = s1 = s2 = s3 = 0.0
        c0 = c1 = c2 = c3 = 0.0
        n4 = n - n % 4
        for j in range(0, n4, 4):
            e0 = e_hi[off + j] if x[i, j] != m else 0.0
            e1 = e_hi[off + j + 1] if x[i, j + 1] != m else 0.0
            e2 = e_hi[off + j + 2] if x[i, j + 2] != m else 0.0
            e3 = e_hi[off + j + 3] if x[i, j + 3] != m else 0.0
            l0 = e_lo[off + j] if x[i, j] != m else 0.0
            l1 = e_lo[off + j + 1] if x[i, j + 1] != m else 0.0
            l2 = e_lo[off + j + 2] if x[i, j + 2] != m else 0.0
            l3 = e_lo[off + j + 3] if x[i, j + 3] != m else 0.0
            s0, f0 = two_sum(s0, e0)
            s1, f1 = two_sum(s1, e1)
            s2, f2 = two_sum(s2, e2)
            s3, f3 = two_sum(s3, e3)
            c0 += f0 + l0
            c1 += f1 + l1
            c2 += f2 + l2
            c3 += f3 + l3
        for j in range(n4, n):
            e0 = e_hi[off + j] if x[i, j] != m else 0.0
            l0 = e_lo[off + j] if x[i, j] != m else 0.0
            s0, f0 = two_sum(s0, e0)
            c0 += f0 + l0
        s, f = two_sum(s0, s1)
        c = (c0 + c1) + f
        s, f = two_sum(s, s2)
        c += c2 + f
        s, f = two_sum(s, s3)
        c += c3 + f
    ties = 0
    for j in range(n):
        ties += 1 if x[i, j] == m else 0
    if ties > 1:
        s, f = two_sum(s, float(ties) - 1.0)
        c += f
    return two_sum(s, c)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _sum_row(x: Any, i: int, n: int, m: float, buf: Any) -> tuple[float, float]:
    """``S`` of :func:`_row` from :func:`_exp_row`'s `buf` (:func:`_sum_span`)."""
    return _sum_span(x, i, n, m, buf[0], buf[1], 0)


@njit(**_KW)  # type: ignore[untyped-decorator]
def log1p_dd(s_hi: float, s_lo: float) -> tuple[float, float]:
    """``logitkit._dd.log1p_dd`` of one value."""
    if not math.isfinite(s_hi):
        return s_hi, 0.0
    y0 = math.log1p(s_hi)
    k, q, j, p_hi, p_lo = _exp_parts(-y0, 0.0)
    m_hi, m_lo, tp_hi, tp_lo = _mantissa(j, p_hi, p_lo)
    if q >= -1.0:
        idx = int(k - (2.0 * _NF) * q)
        scale = 0.5 if q < 0.0 else 1.0
        d_hi, d_lo = add_dd(_D_HI[idx], _D_LO[idx], tp_hi * scale, tp_lo * scale)
        se_hi, se_lo = mul_dd(s_hi, s_lo, m_hi * scale, m_lo * scale)
        c_hi, c_lo = add_dd(d_hi, d_lo, se_hi, se_lo)
    else:
        p1, p2 = _powers(q)
        a_hi = (s_hi * p1) * p2
        a_lo = (s_lo * p1) * p2
        one_hi = (1.0 * p1) * p2
        a_hi, a_e = two_sum(a_hi, one_hi)
        a_hi, a_lo = fast_two_sum(a_hi, a_e + a_lo)
        am_hi, am_lo = mul_dd(a_hi, a_lo, m_hi, m_lo)
        c_hi, c_lo = two_sum(am_hi - 1.0, am_lo)
    l_hi, l_e = two_sum(y0, c_hi)
    return fast_two_sum(l_hi, l_e + (c_lo - 0.5 * (c_hi * c_hi)))


@njit(**_KW)  # type: ignore[untyped-decorator]
def add_rounded(hi: float, lo: float, b: float) -> float:
    if math.isfinite(hi) and math.isfinite(b):
        t, err = two_sum(hi, b)
        return t + (err + lo)
    return hi + b


@njit(**_KW)  # type: ignore[untyped-decorator]
def _d(v: float, m: float) -> tuple[float, float]:
    """``x - m`` and its rounding error, as the portable path forms them."""
    if math.isinf(m):  # +inf maximum: +inf entries 0, the rest -inf
        if m > 0.0:
            return (0.0 if v == math.inf else -math.inf), 0.0
        return -math.inf, 0.0  # all -inf row (m_safe = 0)
    if v * 0.5 - m * 0.5 < -_HALF_MAX:
        return -math.inf, 0.0
    d = v - m
    if not math.isfinite(d):
        return d, 0.0
    _, err = two_sum(v, -m)
    return d, err


@njit(**_KW)  # type: ignore[untyped-decorator]
def _row(x: Any, i: int, n: int, buf: Any, store: bool) -> tuple[float, float, float]:
    """``(m, S_hi, S_lo)``; NaN in the row gives ``S_hi`` NaN.

    ``buf`` (2, n): its rows hold ``exp_dd(d_j)`` after a finite maximum
    (:func:`_exp_row`), and else with `store`.
    """
    m = -math.inf
    for j in range(n):
        m = maxnum64(m, x[i, j])
    nan = False
    for j in range(n):
        if math.isnan(x[i, j]):
            nan = True
    if nan:
        return m, math.nan, 0.0
    if math.isfinite(m):
        _exp_row(x, i, n, m, buf)
        s_hi, s_lo = _sum_row(x, i, n, m, buf)
        return m, s_hi, s_lo
    s = 0.0
    c = 0.0
    ties = 0.0
    for j in range(n):
        d, dl = _d(x[i, j], m)
        if d == 0.0:
            ties += 1.0
            if store:
                buf[0, j] = 1.0
                buf[1, j] = 0.0
            continue
        e_hi, e_lo = exp_dd(d, dl)
        if store:
            buf[0, j] = e_hi
            buf[1, j] = e_lo
        s, err = two_sum(s, e_hi)
        c += err + e_lo
    if ties > 1.0:
        s, err = two_sum(s, ties - 1.0)
        c += err
    s_hi, s_lo = two_sum(s, c)
    return m, s_hi, s_lo


@njit(**_KW)  # type: ignore[untyped-decorator]
def _softmax_row(x: Any, out: Any, i: int, n: int, buf: Any) -> None:
    _, s_hi, s_lo = _row(x, i, n, buf, True)
    _softmax_write(out, i, n, buf[0], buf[1], 0, s_hi, s_lo)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _softmax_write(
    out: Any, i: int, n: int, e_hi: Any, e_lo: Any, off: int, s_hi: float, s_lo: float
) -> None:
    """Row `i` of softmax: ``(e_hi + e_lo)[off + j] / (1 + S)``, NaN if ``S`` is."""
    if math.isnan(s_hi):
        for j in range(n):
            out[i, j] = math.nan
        return
    den_hi, den_lo = add_dd(1.0, 0.0, s_hi, s_lo)
    for j in range(n):
        out[i, j] = div_dd(e_hi[off + j], e_lo[off + j], den_hi, den_lo)[0]


@njit(**_KW)  # type: ignore[untyped-decorator]
def _log_softmax_row(x: Any, out: Any, i: int, n: int, buf: Any) -> None:
    m, s_hi, s_lo = _row(x, i, n, buf, False)
    _log_softmax_write(x, out, i, n, m, s_hi, s_lo)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _log_softmax_write(
    x: Any, out: Any, i: int, n: int, m: float, s_hi: float, s_lo: float
) -> None:
    """Row `i` of log_softmax from its statistics: ``d_j - log1p(S)``."""
    if math.isnan(s_hi):
        for j in range(n):
            out[i, j] = math.nan
        return
    big, small = log1p_dd(s_hi, s_lo)
    for j in range(n):
        d, dl = _d(x[i, j], m)
        out[i, j] = add_rounded(-big, dl - small, d)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _lse_row(x: Any, out: Any, i: int, n: int, buf: Any) -> None:
    m, s_hi, s_lo = _row(x, i, n, buf, False)
    _lse_write(out, i, m, s_hi, s_lo)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _lse_write(out: Any, i: int, m: float, s_hi: float, s_lo: float) -> None:
    """``out[i] = m + log1p(S)`` (NaN if ``S`` is)."""
    if math.isnan(s_hi):
        out[i] = math.nan
        return
    big, small = log1p_dd(s_hi, s_lo)
    out[i] = add_rounded(big, small, m)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _ce_row(
    x: Any, labels: Any, out: Any, lo: Any, i: int, n: int, buf: Any
) -> tuple[float, float]:
    """The loss of row `i`; returns ``(m, S_hi)`` (``(0, 0)`` if ignored)."""
    y = labels[i]
    if y < 0:
        out[i] = 0.0
        lo[i] = 0.0
        return 0.0, 0.0
    m, s_hi, s_lo = _row(x, i, n, buf, False)
    _ce_write(x, y, out, lo, i, m, s_hi, s_lo)
    return m, s_hi


@njit(**_KW)  # type: ignore[untyped-decorator]
def _ce_write(
    x: Any, y: int, out: Any, lo: Any, i: int, m: float, s_hi: float, s_lo: float
) -> None:
    """The loss ``log1p(S) - d_y`` of row `i` (label ``y >= 0``) and its low part."""
    if math.isnan(s_hi):
        out[i] = math.nan
        lo[i] = 0.0
        return
    big, small = log1p_dd(s_hi, s_lo)
    d, dl = _d(x[i, y], m)
    if not math.isfinite(d):
        out[i] = big - d
        lo[i] = 0.0
        return
    t_hi, t_lo = add_dd(big, small, -d, -dl)
    out[i] = t_hi
    lo[i] = t_lo if abs(t_hi) < _DD_SAFE and math.isfinite(t_hi) else 0.0


@njit(**_KW)  # type: ignore[untyped-decorator]
def _ce_grad_row(
    x: Any,
    labels: Any,
    scale: Any,
    out: Any,
    grad: Any,
    lo: Any,
    i: int,
    n: int,
    buf: Any,
) -> None:
    """The loss of row `i` (as :func:`_ce_row`) and its gradient row.

    ``p_j = e_j / (1 + S)`` from the high parts; at the first maximum ``k``
    ``((1 - [y = k]) - [y = k] S) / (1 + S)``; times the row's scale.
    """
    y = labels[i]
    out[i] = 0.0
    lo[i] = 0.0
    if y < 0:  # ignored: loss 0, zero gradient
        for j in range(n):
            grad[i, j] = 0.0
        return
    m, s_hi, s_lo = _row(x, i, n, buf, True)
    if math.isnan(s_hi):
        out[i] = math.nan
        for j in range(n):
            grad[i, j] = math.nan
        return
    big, small = log1p_dd(s_hi, s_lo)
    d, dl = _d(x[i, y], m)
    if not math.isfinite(d):
        out[i] = big - d
    else:
        t_hi, t_lo = add_dd(big, small, -d, -dl)
        out[i] = t_hi
        lo[i] = t_lo if abs(t_hi) < _DD_SAFE and math.isfinite(t_hi) else 0.0
    if m == -math.inf:  # no valid entry: no gradient
        for j in range(n):
            grad[i, j] = 0.0
        return
    _grad_write(x, grad, i, n, buf, m, s_hi, y, scale[i])


@njit(**_KW)  # type: ignore[untyped-decorator]
def _grad_write(
    x: Any, grad: Any, i: int, n: int, buf: Any, m: float, s: float, y: int, c: float
) -> None:
    """``(p_j - [j = y]) c`` with ``p_j = buf[0, j] / (1 + S)``, the top one exact."""
    den = 1.0 + s
    for j in range(n):
        grad[i, j] = (buf[0, j] / den) * c
    k = 0
    for j in range(n):
        if x[i, j] == m:
            k = j
            break
    if y != k:
        grad[i, y] = (buf[0, y] / den - 1.0) * c
    y_k = 1.0 if y == k else 0.0
    grad[i, k] = (((1.0 - y_k) - y_k * s) / den) * c


@njit(**_KW)  # type: ignore[untyped-decorator]
def _ce_fwd_row(
    x: Any, labels: Any, out: Any, lo: Any, stats: Any, i: int, n: int, buf: Any
) -> None:
    """:func:`_ce_row`, and ``(m, S_hi)`` in `stats` (``S_hi`` NaN: a NaN row)."""
    m, s_hi = _ce_row(x, labels, out, lo, i, n, buf)
    stats[i, 0] = m
    stats[i, 1] = s_hi


@njit(**_KW)  # type: ignore[untyped-decorator]
def _ce_bwd_row(
    x: Any, labels: Any, stats: Any, scale: Any, grad: Any, i: int, n: int, buf: Any
) -> None:
    """The gradient row of :func:`_ce_grad_row` from :func:`_ce_fwd_row`'s stats."""
    y = labels[i]
    m = stats[i, 0]
    s = stats[i, 1]
    if y >= 0 and math.isnan(s):  # a NaN in the row (m may be -inf)
        for j in range(n):
            grad[i, j] = math.nan
        return
    if y < 0 or m == -math.inf:  # ignored, or no valid entry: no gradient
        for j in range(n):
            grad[i, j] = 0.0
        return
    if math.isfinite(m):  # the high parts of _row's exp, as it forms them
        _exp_row(x, i, n, m, buf)
    else:
        for j in range(n):
            d, dl = _d(x[i, j], m)
            buf[0, j] = 1.0 if d == 0.0 else exp_dd(d, dl)[0]
    _grad_write(x, grad, i, n, buf, m, s, y, scale[i])


# Vector-Jacobian products (``lk.vjp.softmax`` / ``log_softmax``, the
# backward of the torch autograd Function): ``p`` as :func:`_softmax_row`
# gives it (double-double, rounded once: the portable float64 softmax), then
# ``p (g - <g, p>)`` or ``g - p sum(g)`` in float64.


@njit(**_KW)  # type: ignore[untyped-decorator]
def _probs_row(x: Any, i: int, n: int, buf: Any) -> float:
    """``buf[0, j] = p_j`` of row `i`; returns 1, NaN (a NaN row) or 0 (no valid entry)."""
    m, s_hi, s_lo = _row(x, i, n, buf, True)
    if math.isnan(s_hi):
        return math.nan
    if m == -math.inf:
        return 0.0
    den_hi, den_lo = add_dd(1.0, 0.0, s_hi, s_lo)
    for j in range(n):
        buf[0, j] = div_dd(buf[0, j], buf[1, j], den_hi, den_lo)[0]
    return 1.0


@njit(fastmath={"reassoc", "nsz"}, **_KW)  # type: ignore[untyped-decorator]
def _dot_p(g: Any, i: int, n: int, buf: Any) -> float:
    acc = 0.0
    for j in range(n):
        acc += g[i, j] * buf[0, j]
    return acc


@njit(fastmath={"reassoc", "nsz"}, **_KW)  # type: ignore[untyped-decorator]
def _sum_g(g: Any, i: int, n: int) -> float:
    acc = 0.0
    for j in range(n):
        acc += g[i, j]
    return acc


@njit(**_KW)  # type: ignore[untyped-decorator]
def _softmax_vjp_row(x: Any, g: Any, out: Any, i: int, n: int, buf: Any) -> None:
    ok = _probs_row(x, i, n, buf)
    if ok != 1.0:
        for j in range(n):
            out[i, j] = ok
        return
    inner = _dot_p(g, i, n, buf)
    for j in range(n):
        out[i, j] = buf[0, j] * (g[i, j] - inner)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _log_softmax_vjp_row(x: Any, g: Any, out: Any, i: int, n: int, buf: Any) -> None:
    ok = _probs_row(x, i, n, buf)
    if ok != 1.0:
        for j in range(n):
            out[i, j] = ok
        return
    total = _sum_g(g, i, n)
    for j in range(n):
        out[i, j] = g[i, j] - buf[0, j] * total


@njit(**_KW)  # type: ignore[untyped-decorator]
def softmax_vjp_serial(x: Any, g: Any, out: Any, _nchunks: int) -> None:
    rows, n = x.shape
    buf = np.empty((2, n), np.float64)
    for i in range(rows):
        _softmax_vjp_row(x, g, out, i, n, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def softmax_vjp_parallel(x: Any, g: Any, out: Any, nchunks: int) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        buf = np.empty((2, n), np.float64)
        for i in range(c * rows // nchunks, (c + 1) * rows // nchunks):
            _softmax_vjp_row(x, g, out, i, n, buf)


@njit(**_KW)  # type: ignore[untyped-decorator]
def log_softmax_vjp_serial(x: Any, g: Any, out: Any, _nchunks: int) -> None:
    rows, n = x.shape
    buf = np.empty((2, n), np.float64)
    for i in range(rows):
        _log_softmax_vjp_row(x, g, out, i, n, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def log_softmax_vjp_parallel(x: Any, g: Any, out: Any, nchunks: int) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        buf = np.empty((2, n), np.float64)
        for i in range(c * rows // nchunks, (c + 1) * rows // nchunks):
            _log_softmax_vjp_row(x, g, out, i, n, buf)


# Short rows (n < _SHORT_N): a row of a few classes leaves the vector loops
# of the row functions to their scalar remainders, so the ``exp`` of a block
# of rows is taken in one flat (vectorised) pass instead; the sums and the
# writes are the row functions' own (the same values).

#: Below this many classes a block of rows shares one flat ``exp`` pass
#: (measured on AVX-512: 3.3x faster at n = 10, even at n = 16).
_SHORT_N = 16
#: Elements of a block of short rows (its buffers stay in L1).
_SHORT_BLOCK = 2048


@njit(**_KW)  # type: ignore[untyped-decorator]
def _exp_flat(xf: Any, mb: Any, e_hi: Any, e_lo: Any, cnt: int) -> None:
    """``e_hi[k] + e_lo[k] = exp_dd(xf[k] - mb[k])`` for ``k < cnt``, as :func:`_exp_row`."""
    slow = 0
    for k in range(cnt):
        v = xf[k]
        m = mb[k]
        d = v - m
        bb = d - v
        dl = (v - (d - bb)) + (-m - bb)
        fast = d >= _FAST_MIN
        h, lo = exp_neg_dd(d if fast else 0.0, dl if fast else 0.0)
        e_hi[k] = h if fast else 0.0
        e_lo[k] = lo if fast else 0.0
        slow += 1 if (d < _FAST_MIN and d >= _EXP_MIN) else 0
    if slow > 0:
        for k in range(cnt):
            d, dl = _d(xf[k], mb[k])
            if d < _FAST_MIN and d >= _EXP_MIN:
                e_hi[k], e_lo[k] = exp_dd(d, dl)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _short_bufs(n: int) -> tuple[int, Any, Any, Any, Any, Any]:
    """Rows per block and the buffers of :func:`_block_stats`."""
    b = max(1, _SHORT_BLOCK // n)
    return (
        b,
        np.empty(b * n, np.float64),
        np.empty(b * n, np.float64),
        np.empty(b * n, np.float64),
        np.empty((b, 3), np.float64),
        np.empty((2, n), np.float64),
    )


@njit(**_KW)  # type: ignore[untyped-decorator]
def _block_stats(
    x: Any, b0: int, b1: int, mb: Any, e_hi: Any, e_lo: Any, st: Any, buf: Any
) -> None:
    """:func:`_row` (with `store`) of rows ``b0:b1``: ``st[i - b0] = (m, S_hi, S_lo)``.

    The ``exp`` parts of row `i` go to ``e_hi``/``e_lo`` from ``(i - b0) n``
    on; rows with a NaN (``S_hi`` NaN) or a non-finite maximum take
    :func:`_row` itself.
    """
    n = x.shape[1]
    for i in range(b0, b1):
        r = i - b0
        m = -math.inf
        for j in range(n):
            m = maxnum64(m, x[i, j])
        nan = False
        for j in range(n):
            if math.isnan(x[i, j]):
                nan = True
        st[r, 0] = m
        st[r, 1] = math.nan if nan else 0.0
        st[r, 2] = 0.0
        mm = m if math.isfinite(m) else 0.0
        for j in range(n):
            mb[r * n + j] = mm
    _exp_flat(x[b0:b1].reshape(-1), mb, e_hi, e_lo, (b1 - b0) * n)
    for i in range(b0, b1):
        r = i - b0
        m = st[r, 0]
        if math.isnan(st[r, 1]):
            continue
        if math.isfinite(m):
            st[r, 1], st[r, 2] = _sum_span(x, i, n, m, e_hi, e_lo, r * n)
        else:
            _, st[r, 1], st[r, 2] = _row(x, i, n, buf, True)
            for j in range(n):
                e_hi[r * n + j] = buf[0, j]
                e_lo[r * n + j] = buf[1, j]


@njit(**_KW)  # type: ignore[untyped-decorator]
def _softmax_short(x: Any, out: Any, r0: int, r1: int) -> None:
    n = x.shape[1]
    b, mb, e_hi, e_lo, st, buf = _short_bufs(n)
    for b0 in range(r0, r1, b):
        b1 = min(r1, b0 + b)
        _block_stats(x, b0, b1, mb, e_hi, e_lo, st, buf)
        for i in range(b0, b1):
            r = i - b0
            _softmax_write(out, i, n, e_hi, e_lo, r * n, st[r, 1], st[r, 2])


@njit(**_KW)  # type: ignore[untyped-decorator]
def _log_softmax_short(x: Any, out: Any, r0: int, r1: int) -> None:
    n = x.shape[1]
    b, mb, e_hi, e_lo, st, buf = _short_bufs(n)
    for b0 in range(r0, r1, b):
        b1 = min(r1, b0 + b)
        _block_stats(x, b0, b1, mb, e_hi, e_lo, st, buf)
        for i in range(b0, b1):
            r = i - b0
            _log_softmax_write(x, out, i, n, st[r, 0], st[r, 1], st[r, 2])


@njit(**_KW)  # type: ignore[untyped-decorator]
def _lse_short(x: Any, out: Any, r0: int, r1: int) -> None:
    n = x.shape[1]
    b, mb, e_hi, e_lo, st, buf = _short_bufs(n)
    for b0 in range(r0, r1, b):
        b1 = min(r1, b0 + b)
        _block_stats(x, b0, b1, mb, e_hi, e_lo, st, buf)
        for i in range(b0, b1):
            r = i - b0
            _lse_write(out, i, st[r, 0], st[r, 1], st[r, 2])


@njit(**_KW)  # type: ignore[untyped-decorator]
def _ce_short(x: Any, labels: Any, out: Any, lo: Any, r0: int, r1: int) -> None:
    n = x.shape[1]
    b, mb, e_hi, e_lo, st, buf = _short_bufs(n)
    for b0 in range(r0, r1, b):
        b1 = min(r1, b0 + b)
        _block_stats(x, b0, b1, mb, e_hi, e_lo, st, buf)
        for i in range(b0, b1):
            r = i - b0
            y = labels[i]
            if y < 0:
                out[i] = 0.0
                lo[i] = 0.0
            else:
                _ce_write(x, y, out, lo, i, st[r, 0], st[r, 1], st[r, 2])


# Drivers: serial, and parallel over `nchunks` chunks of rows (one buffer each).


@njit(**_KW)  # type: ignore[untyped-decorator]
def softmax_serial(x: Any, out: Any, _nchunks: int) -> None:
    rows, n = x.shape
    if n < _SHORT_N:
        _softmax_short(x, out, 0, rows)
        return
    buf = np.empty((2, n), np.float64)
    for i in range(rows):
        _softmax_row(x, out, i, n, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def softmax_parallel(x: Any, out: Any, nchunks: int) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        lo_c, hi_c = c * rows // nchunks, (c + 1) * rows // nchunks
        if n < _SHORT_N:
            _softmax_short(x, out, lo_c, hi_c)
            continue
        buf = np.empty((2, n), np.float64)
        for i in range(lo_c, hi_c):
            _softmax_row(x, out, i, n, buf)


@njit(**_KW)  # type: ignore[untyped-decorator]
def log_softmax_serial(x: Any, out: Any, _nchunks: int) -> None:
    rows, n = x.shape
    if n < _SHORT_N:
        _log_softmax_short(x, out, 0, rows)
        return
    buf = np.empty((2, n), np.float64)
    for i in range(rows):
        _log_softmax_row(x, out, i, n, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def log_softmax_parallel(x: Any, out: Any, nchunks: int) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        lo_c, hi_c = c * rows // nchunks, (c + 1) * rows // nchunks
        if n < _SHORT_N:
            _log_softmax_short(x, out, lo_c, hi_c)
            continue
        buf = np.empty((2, n), np.float64)
        for i in range(lo_c, hi_c):
            _log_softmax_row(x, out, i, n, buf)


@njit(**_KW)  # type: ignore[untyped-decorator]
def logsumexp_serial(x: Any, out: Any, _nchunks: int) -> None:
    rows, n = x.shape
    if n < _SHORT_N:
        _lse_short(x, out, 0, rows)
        return
    buf = np.empty((2, n), np.float64)
    for i in range(rows):
        _lse_row(x, out, i, n, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def logsumexp_parallel(x: Any, out: Any, nchunks: int) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        lo_c, hi_c = c * rows // nchunks, (c + 1) * rows // nchunks
        if n < _SHORT_N:
            _lse_short(x, out, lo_c, hi_c)
            continue
        buf = np.empty((2, n), np.float64)
        for i in range(lo_c, hi_c):
            _lse_row(x, out, i, n, buf)


@njit(**_KW)  # type: ignore[untyped-decorator]
def sparse_ce_serial(x: Any, labels: Any, out: Any, lo: Any, _nchunks: int) -> None:
    rows, n = x.shape
    if n < _SHORT_N:
        _ce_short(x, labels, out, lo, 0, rows)
        return
    buf = np.empty((2, n), np.float64)
    for i in range(rows):
        _ce_row(x, labels, out, lo, i, n, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sparse_ce_parallel(x: Any, labels: Any, out: Any, lo: Any, nchunks: int) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        lo_c, hi_c = c * rows // nchunks, (c + 1) * rows // nchunks
        if n < _SHORT_N:
            _ce_short(x, labels, out, lo, lo_c, hi_c)
            continue
        buf = np.empty((2, n), np.float64)
        for i in range(lo_c, hi_c):
            _ce_row(x, labels, out, lo, i, n, buf)


@njit(**_KW)  # type: ignore[untyped-decorator]
def sparse_ce_grad_serial(
    x: Any, labels: Any, scale: Any, out: Any, grad: Any, lo: Any, _nchunks: int
) -> None:
    rows, n = x.shape
    buf = np.empty((2, n), np.float64)
    for i in range(rows):
        _ce_grad_row(x, labels, scale, out, grad, lo, i, n, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sparse_ce_grad_parallel(
    x: Any, labels: Any, scale: Any, out: Any, grad: Any, lo: Any, nchunks: int
) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        buf = np.empty((2, n), np.float64)
        for i in range(c * rows // nchunks, (c + 1) * rows // nchunks):
            _ce_grad_row(x, labels, scale, out, grad, lo, i, n, buf)


@njit(**_KW)  # type: ignore[untyped-decorator]
def sparse_ce_fwd_serial(
    x: Any, labels: Any, out: Any, lo: Any, stats: Any, _nchunks: int
) -> None:
    rows, n = x.shape
    buf = np.empty((2, n), np.float64)
    for i in range(rows):
        _ce_fwd_row(x, labels, out, lo, stats, i, n, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sparse_ce_fwd_parallel(
    x: Any, labels: Any, out: Any, lo: Any, stats: Any, nchunks: int
) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        buf = np.empty((2, n), np.float64)
        for i in range(c * rows // nchunks, (c + 1) * rows // nchunks):
            _ce_fwd_row(x, labels, out, lo, stats, i, n, buf)


@njit(**_KW)  # type: ignore[untyped-decorator]
def sparse_ce_bwd_serial(
    x: Any, labels: Any, stats: Any, scale: Any, grad: Any, _nchunks: int
) -> None:
    rows, n = x.shape
    buf = np.empty((2, n), np.float64)
    for i in range(rows):
        _ce_bwd_row(x, labels, stats, scale, grad, i, n, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sparse_ce_bwd_parallel(
    x: Any, labels: Any, stats: Any, scale: Any, grad: Any, nchunks: int
) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        buf = np.empty((2, n), np.float64)
        for i in range(c * rows // nchunks, (c + 1) * rows // nchunks):
            _ce_bwd_row(x, labels, stats, scale, grad, i, n, buf)


# ------------------------------------------ dense labels: loss and gradient
#
# ``lk.grad.softmax_cross_entropy`` (``logitkit._cross_entropy._rows`` and
# ``_row_grad`` with ``refine``): the loss of a row is ``sum_dd`` (a pairwise
# tree of TwoSum) of the double-doubles ``y_j (L - d_j)`` (``y_j != 0``), its
# gradient ``Y p_j - y_j`` and ``(Y_rest - y_k S) / (1 + S)`` at the first
# maximum ``k``, with the label sums ``Y`` and ``Y_rest`` NumPy sums (pairwise
# along a row of the smallest stride, else one term at a time).

#: NumPy's ``PW_BLOCKSIZE``: the longest run its pairwise sum adds in one loop.
_PW_BLOCK = 128
#: Labels whose sum is below this fraction of their absolute sum cancel the
#: ``L`` of the loss's terms (see :func:`_dense_ce_grad_row`).
_CANCEL = 2.0**-90


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def _term(a: Any, j: int, skip: int) -> float:
    """``a[j]`` as float64 (labels of any real dtype), +0 at `skip`."""
    return 0.0 if j == skip else np.float64(a[j])


@njit(**_KW)  # type: ignore[untyped-decorator]
def _pairwise_leaf(a: Any, lo: int, n: int, skip: int) -> float:
    """NumPy's pairwise sum of ``a[lo:lo + n]``, ``n <= 128`` (``a[skip]`` read as +0)."""
    if n < 8:
        res = -0.0
        for j in range(lo, lo + n):
            res += _term(a, j, skip)
        return res
    r0 = _term(a, lo, skip)
    r1 = _term(a, lo + 1, skip)
    r2 = _term(a, lo + 2, skip)
    r3 = _term(a, lo + 3, skip)
    r4 = _term(a, lo + 4, skip)
    r5 = _term(a, lo + 5, skip)
    r6 = _term(a, lo + 6, skip)
    r7 = _term(a, lo + 7, skip)
    j = lo + 8
    end = lo + n - n % 8
    while j < end:
        r0 += _term(a, j, skip)
        r1 += _term(a, j + 1, skip)
        r2 += _term(a, j + 2, skip)
        r3 += _term(a, j + 3, skip)
        r4 += _term(a, j + 4, skip)
        r5 += _term(a, j + 5, skip)
        r6 += _term(a, j + 6, skip)
        r7 += _term(a, j + 7, skip)
        j += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while j < lo + n:
        res += _term(a, j, skip)
        j += 1
    return res


@njit(**_KW)  # type: ignore[untyped-decorator]
def _pairwise(a: Any, n: int, skip: int) -> float:
    """NumPy's pairwise sum of ``a[:n]`` (``a[skip]`` read as +0).

    ``pairwise_sum`` of NumPy's ``loops_utils.h.src``: up to 128 terms
    :func:`_pairwise_leaf`, above that the sum of its two halves, the first
    ``n // 2`` rounded down to a multiple of 8. The recursion is walked with
    a stack here: numba's cache does not load recursive functions safely
    (they crash).
    """
    if n <= _PW_BLOCK:
        return _pairwise_leaf(a, 0, n, skip)
    depth = 2
    k = n
    while k > _PW_BLOCK:
        k //= 2
        depth += 2
    frames = np.empty((2 * depth + 2, 3), np.int64)  # (lo, n, halves added)
    sums = np.empty(depth + 1, np.float64)
    top = 0
    nsum = 0
    frames[0, 0], frames[0, 1], frames[0, 2] = 0, n, 0
    while top >= 0:
        lo, cnt, join = frames[top, 0], frames[top, 1], frames[top, 2]
        top -= 1
        if cnt <= _PW_BLOCK:
            sums[nsum] = _pairwise_leaf(a, lo, cnt, skip)
            nsum += 1
        elif join:
            nsum -= 1
            sums[nsum - 1] = sums[nsum - 1] + sums[nsum]
        else:
            n2 = cnt // 2
            n2 -= n2 % 8
            frames[top + 1, 0], frames[top + 1, 1], frames[top + 1, 2] = lo, cnt, 1
            frames[top + 2, 0], frames[top + 2, 1] = lo + n2, cnt - n2
            frames[top + 2, 2] = 0
            frames[top + 3, 0], frames[top + 3, 1], frames[top + 3, 2] = lo, n2, 0
            top += 3
    return sums[0]


@njit(**_KW)  # type: ignore[untyped-decorator]
def _np_sum(a: Any, n: int, seq: bool, skip: int) -> float:
    """``np.sum`` of ``a[:n]`` along a reduced axis (``a[skip]`` read as +0).

    NumPy starts from 0 and adds the terms pairwise (:func:`_pairwise`) where
    the axis is the inner loop of its iteration, else (`seq`: another axis
    has a smaller stride) one at a time, in order.
    """
    if not seq:
        return 0.0 + _pairwise(a, n, skip)
    res = 0.0
    for j in range(n):
        res += _term(a, j, skip)
    return res


@njit(**_KW)  # type: ignore[untyped-decorator]
def _dense_term(
    v: float, m: float, y: float, big: float, small: float, nan_row: bool
) -> tuple[float, float]:
    """``y (L - d)`` of one entry ``v`` as the portable path's ``(p_hi, p_lo)``.

    ``L - d`` by ``add_dd`` (``L - d`` rounded where ``d`` is not finite),
    times ``y`` by ``mul_dd`` where both are below ``2**990`` (else rounded);
    no low part beside a non-finite ``p_hi``.
    """
    if nan_row:
        d, dl = math.nan, 0.0
    else:
        d, dl = _d(v, m)
    if math.isfinite(d):
        t_hi, t_lo = add_dd(big, small, -d, -dl)
    else:
        t_hi, t_lo = big - d, 0.0
    if abs(y) < _DD_SAFE and abs(t_hi) < _DD_SAFE:
        p_hi, p_lo = mul_dd(y, 0.0, t_hi, t_lo)
    else:
        p_hi, p_lo = y * t_hi, 0.0
    return p_hi, (p_lo if math.isfinite(p_hi) else 0.0)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _label_scan(lab: Any, i: int, n: int) -> tuple[int, int, bool, bool]:
    """Row `i`'s labels: how many are nonzero, the last one's position,
    whether they cancel ``L`` (two or more, of mixed signs, whose sum is
    below ``2**-90`` of their absolute sum: see :func:`_dense_ce_grad_row`),
    and whether their sums may round (an absolute sum from ``2**53`` on, or
    NaN: integer labels then depend on the order of the additions)."""
    cnt = 0
    q = 0
    pos = True
    a = 0.0
    for j in range(n):
        y = np.float64(lab[i, j])
        if y != 0.0:
            cnt += 1
            q = j
            a += abs(y)
            if not y > 0.0:
                pos = False
    rounds = not a < 2.0**53
    if cnt < 2 or pos:
        return cnt, q, False, rounds
    t_hi = t_lo = 0.0  # the sum in double-double, against the absolute sum
    for j in range(n):
        t_hi, e = two_sum(t_hi, np.float64(lab[i, j]))
        t_lo += e
    return cnt, q, not abs(t_hi + t_lo) > _CANCEL * a, rounds


@njit(**_KW)  # type: ignore[untyped-decorator]
def _dense_loss(
    x: Any,
    lab: Any,
    i: int,
    n: int,
    m: float,
    big: float,
    small: float,
    nan_row: bool,
    buf: Any,
    cnt: int,
    q: int,
) -> tuple[float, float]:
    """``sum_dd`` of row `i`'s terms ``y_j (L - d_j)`` (`cnt` nonzero labels).

    As ``logitkit._dd.sum_dd``: a non-finite NumPy sum of the high parts is
    the loss (low part 0); else the tree ``values[:h] + values[h:]`` by
    TwoSum (padded with a 0 to an even length), each level's errors added by
    a NumPy sum, then the NumPy sum of the low parts, and one last TwoSum.
    Those NumPy sums are pairwise: the terms are C-ordered there, whatever
    the labels' layout (``np.where`` with a C-ordered mask). A row with one
    nonzero label (at `q`) adds only zeros to its term (a -0.0 becomes +0.0).
    """
    if cnt <= 1:
        v, w = 0.0, 0.0
        if cnt == 1:
            y = np.float64(lab[i, q])
            v, w = _dense_term(x[i, q], m, y, big, small, nan_row)
        if not math.isfinite(v):
            return v, 0.0
        return two_sum(v + 0.0 if n > 1 else v, 0.0 + w)
    vals = buf[1]
    lows = buf[2]
    errs = buf[3]
    for j in range(n):
        y = np.float64(lab[i, j])
        if y != 0.0:
            vals[j], lows[j] = _dense_term(x[i, j], m, y, big, small, nan_row)
        else:
            vals[j], lows[j] = 0.0, 0.0
    plain = _np_sum(vals, n, False, -1)
    if not math.isfinite(plain):
        return plain, 0.0
    err = 0.0
    h = n
    while h > 1:
        if h % 2:
            vals[h] = 0.0
            h += 1
        h //= 2
        for j in range(h):
            vals[j], errs[j] = two_sum(vals[j], vals[j + h])
        err = err + _np_sum(errs, h, False, -1)
    err = err + _np_sum(lows, n, False, -1)
    return two_sum(vals[0], err)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _dense_ce_grad_row(
    x: Any,
    lab: Any,
    scale: Any,
    out: Any,
    grad: Any,
    lo: Any,
    flag: Any,
    i: int,
    n: int,
    buf: Any,
    seq: bool,
) -> None:
    """The dense cross entropy of row `i` (and its low part) and its gradient row.

    ``buf`` (4, n + 1): ``exp`` (high, low parts) from :func:`_row`, then the
    terms of the loss and their errors (:func:`_dense_loss`). ``Y`` is
    NumPy's sum of the row (one term at a time if `seq`, else pairwise),
    ``Y_rest`` its pairwise sum with ``y_k`` as +0 (``np.where``'s result is
    C-ordered), ``y_k`` as the NumPy sum of +0s and ``y_k``; with one nonzero
    label or none they are that label (or +0) exactly, in any order.

    ``flag[i]`` has bit 1 set where the labels cancel ``L``
    (:func:`_label_scan`), bit 2 where their sums may round: the caller
    takes the portable path where it cannot use such rows. With ``L``
    cancelled the loss is ``-sum_j y_j d_j`` up to the rounding of the
    ``y_j L`` terms, whose last bits follow the ``2**-86`` differences of
    ``S``'s low part between this kernel and the portable path (see the
    module doc), and often decide the rounding of a result on a tie (signed
    integer labels summing to 0: a quarter of such rows in a test).
    """
    cnt, q, cancels, rounds = _label_scan(lab, i, n)
    m, s_hi, s_lo = _row(x, i, n, buf, True)
    nan_row = math.isnan(s_hi)
    big, small = log1p_dd(s_hi, s_lo)
    out[i], lo[i] = _dense_loss(x, lab, i, n, m, big, small, nan_row, buf, cnt, q)
    # (L = 0, from S = 0, is the same on both paths: nothing to cancel then.)
    flag[i] = (1 if cancels and big != 0.0 else 0) | (2 if rounds else 0)
    if nan_row:
        for j in range(n):
            grad[i, j] = math.nan
        return
    if m == -math.inf:  # no valid entry: no gradient
        for j in range(n):
            grad[i, j] = 0.0
        return
    k = 0
    for j in range(n):
        if x[i, j] == m:
            k = j
            break
    row = lab[i]
    if cnt <= 1:
        v = np.float64(row[q]) if cnt == 1 else 0.0
        y_total = 0.0 + v
        y_rest = 0.0 + (v if q != k else 0.0)
    else:
        y_total = _np_sum(row, n, seq, -1)
        y_rest = _np_sum(row, n, False, k)
    y_k = 0.0 + np.float64(row[k])
    c = scale[i]
    den = 1.0 + s_hi
    for j in range(n):
        grad[i, j] = (y_total * (buf[0, j] / den) - np.float64(row[j])) * c
    grad[i, k] = ((y_rest - y_k * s_hi) / den) * c


@njit(**_KW)  # type: ignore[untyped-decorator]
def dense_ce_grad_serial(
    x: Any,
    lab: Any,
    scale: Any,
    out: Any,
    grad: Any,
    lo: Any,
    flag: Any,
    seq: bool,
    _nchunks: int,
) -> None:
    rows, n = x.shape
    buf = np.empty((4, n + 1), np.float64)
    for i in range(rows):
        _dense_ce_grad_row(x, lab, scale, out, grad, lo, flag, i, n, buf, seq)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def dense_ce_grad_parallel(
    x: Any,
    lab: Any,
    scale: Any,
    out: Any,
    grad: Any,
    lo: Any,
    flag: Any,
    seq: bool,
    nchunks: int,
) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        buf = np.empty((4, n + 1), np.float64)
        for i in range(c * rows // nchunks, (c + 1) * rows // nchunks):
            _dense_ce_grad_row(x, lab, scale, out, grad, lo, flag, i, n, buf, seq)
