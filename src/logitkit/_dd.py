r"""Double-double arithmetic: float64 pairs ``hi + lo`` with ~106 bits.

A double-double (dd) number is an unevaluated sum ``hi + lo`` of two float64
arrays with ``hi = fl(hi + lo)`` (normalised: ``|lo| <= ulp(hi) / 2``). These
building blocks let the float64 paths of logitkit round only once, at the end:
``hi`` of a result whose relative error is far below ``2**-53`` is the
correctly rounded value but for rare double roundings.

Everything is portable Array-API code: every operation goes through `xp`, no
value is inspected, nothing is written in place, so the functions work eagerly
on NumPy, PyTorch and array-api-strict and under ``jax.jit``. Only float64 is
accepted (the Veltkamp split and the tables are float64-specific).

Products use Dekker's algorithm with Veltkamp's split (no fused multiply-add
is assumed). The split overflows for ``|a| >= 2**996``: operands of
:func:`two_prod`, :func:`mul_dd` and :func:`div_dd` must stay below
``2**995`` (about ``3e299``) in magnitude, and products and quotients must be
normal numbers for the ``lo`` part to carry its full precision.

Error bounds quoted in the docstrings are relative errors of ``hi + lo``
(evaluated exactly) against mpmath at 60 digits: the bound is what
``tests/test_dd.py`` asserts, "measured" the worst of a sweep of 10**5
seeded arguments per function.

Two facts about XLA (JAX) shape the code. Under ``jax.jit`` XLA folds
``(w + c) - c`` to ``w`` when ``c`` is a compile-time constant, which would
turn a TwoSum into garbage: no Python constant is ever an addend of an
error-free transformation here (constants only multiply, and powers of two
and table values come from look-ups, i.e. data); the tests check that jitted
results equal NumPy's bit for bit. And XLA on CPU flushes subnormal inputs
and results to zero: there, results below ``2**-1022`` are 0 and low parts
below it are lost. Only XLA on CPU has been checked; XLA on GPU may contract
``a * b + c`` into a fused multiply-add, which Veltkamp's split does not
survive.

References: T. J. Dekker, *A floating-point technique for extending the
available precision*, 1971; Y. Hida, X. S. Li and D. H. Bailey, *Library for
double-double and quad-double arithmetic*, 2007; J.-M. Muller et al.,
*Handbook of Floating-Point Arithmetic*, 2018, ch. 4 and 14.
"""

from __future__ import annotations

import functools
import math
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import NamedTuple

from array_api_compat import device, is_dask_namespace, is_jax_namespace

from ._helpers import const, two_sum
from ._typing import Array, ArrayNamespace

__all__ = [
    "add_dd",
    "div_dd",
    "exp_dd",
    "exp_scaled_dd",
    "fast_two_sum",
    "ldexp_dd",
    "log1p_dd",
    "mul_dd",
    "sum_dd",
    "two_prod",
    "two_sum",
]

DD = tuple[Array, Array]

# ------------------------------------------------------------------ constants

_SPLITTER = 134217729.0  # 2**27 + 1: Veltkamp's split of a 53-bit significand

# exp reduction: x = k ln2/N + r, |r| <= ln2/(2N) ~ 2**-11.5, k = N q + j.
_N = 1024
# exp(x) rounds to a finite float64 up to this x, and to 0 below about -745.13.
_EXP_MAX = 709.782712893384
_EXP_MIN = -746.0
# 2**i for i in [_POW_MIN, _POW_MAX]: scale factors by table look-up, exact on
# every backend (``xp.pow(2.0, q)`` need not be exact everywhere).
_POW_MIN = -540
_POW_MAX = 540
# Taylor coefficients of (exp(r) - 1 - r - r**2/2) / r**3 up to r**7/7!:
# truncation ~2**-95 relative to r.
_TAIL = [1.0 / math.factorial(n) for n in range(3, 8)]


def _dd_of(value: Fraction) -> tuple[float, float]:
    """The double-double nearest to an exact rational `value`."""
    hi = float(value)
    return hi, float(value - Fraction(hi))


def _leading_bits(value: Fraction, bits: int) -> Fraction:
    """`value` rounded to `bits` significant bits."""
    e = math.floor(math.log2(abs(value))) + 1 - bits
    return Fraction(round(value / Fraction(2) ** e)) * Fraction(2) ** e


class _Tables(NamedTuple):
    inv_step: float  # N / ln2
    c1: float  # ln2/N = c1 + c2 + c3; c1, c2 with 32 bits: k * c1, k * c2 exact
    c2: float
    c3: float
    values: list[float]  # the look-up tables below, concatenated


# offsets into _Tables.values
_T_HI = 0  # 2**(j/N), high parts, j in [0, N)
_T_LO = _N  # low parts
_D_HI = 2 * _N  # 2**(j/N + q) - 1 for q = 0 (j) and q = -1 (N + j): 2N entries
_D_LO = 4 * _N
_POW = 6 * _N - _POW_MIN  # 2**i at _POW + i


@functools.cache
def _tables() -> _Tables:
    """Build the constants once, on first use, in exact rational arithmetic.

    From 40-digit decimal values (``2**-132``), far below the ``2**-106`` of
    a double-double. About 20 ms, so not at import.
    """
    with localcontext() as ctx:
        ctx.prec = 40
        ln2_dec = Decimal(2).ln()
        step_dec = ln2_dec / _N
        table = [Fraction((step_dec * j).exp()) for j in range(_N)]
    ln2 = Fraction(ln2_dec)
    step = ln2 / _N
    # |k| < 2**21: k * c1 and k * c2 (32 bits each) are exact.
    c1 = _leading_bits(step, 32)
    c2 = _leading_bits(step - c1, 32)
    c3 = float(step - c1 - c2)
    t = [_dd_of(v) for v in table]
    d = [_dd_of(v - 1) for v in table] + [_dd_of(v / 2 - 1) for v in table]
    powers = [math.ldexp(1.0, i) for i in range(_POW_MIN, _POW_MAX + 1)]
    values = [h for h, _ in t] + [lo for _, lo in t]
    values += [h for h, _ in d] + [lo for _, lo in d] + powers
    return _Tables(float(_N / ln2), float(c1), float(c2), c3, values)


_TABLE_CACHE: dict[tuple[str, str], Array] = {}


# ------------------------------------------------------- checks and lookups


def _check_float64(*arrays: Array, xp: ArrayNamespace) -> None:
    for a in arrays:
        if a.dtype != xp.float64:
            msg = f"double-double arithmetic needs float64 arrays; got {a.dtype}."
            raise TypeError(msg)


def _table_array(like: Array, /, *, xp: ArrayNamespace) -> Array:
    """The look-up tables as one float64 array of `xp` on the device of `like`.

    Cached for eager namespaces; JAX and Dask build it per call (a constant
    of the traced or lazy graph).
    """
    dev = device(like)
    key = (xp.__name__, str(dev))
    cacheable = not (is_jax_namespace(xp) or is_dask_namespace(xp))
    if cacheable and key in _TABLE_CACHE:
        return _TABLE_CACHE[key]
    values = xp.asarray(_tables().values, dtype=xp.float64, device=dev)
    if cacheable:
        _TABLE_CACHE[key] = values
    return values


def _lookup(table: Array, offset: int, index: Array, /, *, xp: ArrayNamespace) -> Array:
    """``table[offset + index]`` for a float array `index` of integral values."""
    flat = xp.reshape(xp.astype(index + float(offset), xp.int64), (-1,))
    return xp.reshape(xp.take(table, flat, axis=0), index.shape)


def _powers(q: Array, table: Array, /, *, xp: ArrayNamespace) -> tuple[Array, Array]:
    """``2**q1`` and ``2**q2`` with ``q1 + q2 = q``, both at least ``2**-540``."""
    q1 = xp.floor(q * 0.5)
    return _lookup(table, _POW, q1, xp=xp), _lookup(table, _POW, q - q1, xp=xp)


def _scale(
    hi: Array, lo: Array, q: Array, table: Array, /, *, xp: ArrayNamespace
) -> DD:
    """``(hi, lo) * 2**q`` for integral float `q` in [-1080, 1080], plain.

    The first product is exact (normal), the second rounds once.
    """
    p1, p2 = _powers(q, table, xp=xp)
    return (hi * p1) * p2, (lo * p1) * p2


_SMALLEST_SUBNORMAL = 2.0**-1074


def _ldexp_round(
    hi: Array, lo: Array, q: Array, table: Array, /, *, xp: ArrayNamespace
) -> DD:
    """``(hi + lo) * 2**q`` with the high part rounded once also when subnormal.

    ``t = RN(hi 2**q)`` rounds `hi` alone. That is the rounding of
    ``hi + lo`` but where ``hi 2**q`` is exactly halfway between two
    subnormals (the subnormal step is at least ``2 ulp(hi)`` there and
    ``|lo| <= ulp(hi) / 2``): there the sign of `lo` decides. The remainder
    ``d = hi - t 2**-q`` (exact scaling back by division) finds the ties; it
    is 0 for normal results. Low parts of subnormal results round to 0.
    """
    p1, p2 = _powers(q, table, xp=xp)
    t = (hi * p1) * p2
    d = hi - (t / p2) / p1
    half = ((_SMALLEST_SUBNORMAL / p2) / p1) * 0.5  # half a subnormal step
    up = (d > half) | ((d == half) & (lo > 0.0))
    down = (d < -half) | ((d == -half) & (lo < 0.0))
    zero = xp.zeros_like(t)
    tiny = zero + _SMALLEST_SUBNORMAL
    t = (t + xp.where(up, tiny, zero)) - xp.where(down, tiny, zero)
    t_lo = (lo * p1) * p2
    if is_jax_namespace(xp):
        return _jax_subnormals(hi, lo, q, t, t_lo, table, xp=xp)
    return t, t_lo


def _jax_subnormals(
    hi: Array,
    lo: Array,
    q: Array,
    t: Array,
    t_lo: Array,
    table: Array,
    /,
    *,
    xp: ArrayNamespace,
) -> DD:
    """XLA on CPU flushes subnormal results to zero: build them from their bits.

    ``v = hi 2**(q + 1074)`` counts subnormal steps (exact, normal); where
    ``|v| < 2**52`` the result is ``n 2**-1074`` with ``n = RN(v)``, the sign
    of `lo` breaking ties, written as the bit pattern ``n`` (plus the sign
    bit). Arithmetic on such results flushes them again: this is for final
    results only.
    """
    from jax import lax

    s1, s2 = _powers(xp.clip(q + 1074.0, -1080.0, 1080.0), table, xp=xp)
    v = (hi * s1) * s2
    sub = xp.abs(v) < 2.0**52
    v = xp.where(sub, v, xp.zeros_like(v))
    n = xp.round(v)
    d = v - n
    zero = xp.zeros_like(v)
    n = n + xp.where((d == 0.5) & (lo > 0.0), zero + 1.0, zero)
    n = n - xp.where((d == -0.5) & (lo < 0.0), zero + 1.0, zero)
    bits = xp.astype(xp.abs(n), xp.int64)
    bits = xp.where(n < 0.0, bits | xp.asarray(-(2**63), dtype=xp.int64), bits)
    built = lax.bitcast_convert_type(bits, xp.float64)
    return xp.where(sub, built, t), xp.where(sub, zero, t_lo)


# --------------------------------------------------- error-free transforms


def fast_two_sum(a: Array, b: Array, /) -> DD:
    """Dekker's FastTwoSum: ``s + e == a + b`` exactly, for ``|a| >= |b|`` or ``a == 0``.

    Three operations instead of TwoSum's six; finite inputs only.
    """
    s = a + b
    return s, b - (s - a)


def _split(a: Array, /) -> DD:
    """Veltkamp's split: ``a == hi + lo`` with 26 and 27 significant bits."""
    c = a * _SPLITTER
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a: Array, b: Array, /) -> DD:
    """Dekker's TwoProduct: ``p + e == a * b`` exactly, ``p = fl(a * b)``.

    Exact for float64 ``|a|, |b| < 2**995`` whose product neither underflows
    nor overflows. No fused multiply-add is needed.
    """
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    e = (((a_hi * b_hi - p) + a_hi * b_lo) + a_lo * b_hi) + a_lo * b_lo
    return p, e


def _square(a: Array, /) -> DD:
    """TwoProduct of `a` with itself (one split)."""
    p = a * a
    a_hi, a_lo = _split(a)
    return p, ((a_hi * a_hi - p) + (2.0 * a_hi) * a_lo) + a_lo * a_lo


# ------------------------------------------------------------ arithmetic


def _add(a_hi: Array, a_lo: Array, b_hi: Array, b_lo: Array, /) -> DD:
    s, e = two_sum(a_hi, b_hi)
    t, f = two_sum(a_lo, b_lo)
    s, e = fast_two_sum(s, e + t)
    return fast_two_sum(s, e + f)


def _mul(a_hi: Array, a_lo: Array, b_hi: Array, b_lo: Array, /) -> DD:
    p, e = two_prod(a_hi, b_hi)
    return fast_two_sum(p, e + (a_hi * b_lo + a_lo * b_hi))


def _div(a_hi: Array, a_lo: Array, b_hi: Array, b_lo: Array, /) -> DD:
    q1 = a_hi / b_hi
    p, e = two_prod(q1, b_hi)
    r = (((a_hi - p) - e) + a_lo) - q1 * b_lo
    return fast_two_sum(q1, r / b_hi)


def add_dd(
    a_hi: Array, a_lo: Array, b_hi: Array, b_lo: Array, /, *, xp: ArrayNamespace
) -> DD:
    """``a + b`` of two double-doubles, normalised.

    The accurate ("IEEE") addition of Hida, Li and Bailey: relative error
    below ``2**-103`` also when `a` and `b` nearly cancel (measured:
    ``2**-105``; exact on the cancelling test cases). Finite inputs whose
    sum does not overflow.
    """
    _check_float64(a_hi, a_lo, b_hi, b_lo, xp=xp)
    return _add(a_hi, a_lo, b_hi, b_lo)


def mul_dd(
    a_hi: Array, a_lo: Array, b_hi: Array, b_lo: Array, /, *, xp: ArrayNamespace
) -> DD:
    """``a * b`` of two double-doubles, normalised.

    Relative error below ``2**-103`` (measured: ``2**-104.3``) for
    ``|a_hi|, |b_hi| < 2**995`` and a normal product (the low part normal
    too: above ``2**-969``).
    """
    _check_float64(a_hi, a_lo, b_hi, b_lo, xp=xp)
    return _mul(a_hi, a_lo, b_hi, b_lo)


def div_dd(
    a_hi: Array, a_lo: Array, b_hi: Array, b_lo: Array, /, *, xp: ArrayNamespace
) -> DD:
    """``a / b`` of two double-doubles, normalised.

    One long-division step: ``q1 = a_hi / b_hi``, then the remainder
    ``a - q1 * b`` (exact product) divided by ``b_hi``. Relative error below
    ``2**-102`` (measured: ``2**-103.3``) for ``b != 0``, operands below
    ``2**995`` in magnitude and a quotient above ``2**-969``.
    """
    _check_float64(a_hi, a_lo, b_hi, b_lo, xp=xp)
    return _div(a_hi, a_lo, b_hi, b_lo)


# ------------------------------------------------------------------ exp


class _ExpParts(NamedTuple):
    """``exp(hi + lo) = 2**q * t * (1 + p)``, ``t = 2**(j/N)``, ``k = N q + j``."""

    k: Array
    q: Array
    t_hi: Array
    t_lo: Array
    p_hi: Array
    p_lo: Array


def _exp_parts(
    hi: Array, lo: Array, table: Array, /, *, xp: ArrayNamespace
) -> _ExpParts:
    """Reduce ``hi + lo = k ln2/N + r`` (``|r| <= ~ln2/2N``), expand ``exp(r)``."""
    c = _tables()
    # k is integral and |k| < 2**21: k * c1 and k * c2 are exact, and so is
    # hi - k * c1 (a multiple of the smaller ulp of the two, and small).
    k = xp.round(hi * c.inv_step)
    r_hi, r_lo = two_sum(hi - k * c.c1, -(k * c.c2))
    r_hi, r_lo = two_sum(r_hi, (r_lo + lo) - k * c.c3)
    q = xp.floor(k * (1.0 / _N))
    j = k - q * float(_N)
    t_hi = _lookup(table, _T_HI, j, xp=xp)
    t_lo = _lookup(table, _T_LO, j, xp=xp)
    p_hi, p_lo = _expm1_small(r_hi, r_lo)
    return _ExpParts(k, q, t_hi, t_lo, p_hi, p_lo)


def _mantissa(e: _ExpParts, /) -> tuple[Array, Array, Array, Array]:
    """``t * (1 + p)`` (in [0.999, 2.001)) as a double-double, and ``t * p``."""
    tp_hi, tp_lo = _mul(e.t_hi, e.t_lo, e.p_hi, e.p_lo)
    s, err = fast_two_sum(e.t_hi, tp_hi)
    m_hi, m_lo = fast_two_sum(s, err + (tp_lo + e.t_lo))
    return m_hi, m_lo, tp_hi, tp_lo


def _expm1_small(r_hi: Array, r_lo: Array, /) -> DD:
    """``expm1(r)`` for ``|r| <= ~ln2/2048 ~ 2**-11.5``, relative error ~2**-77.

    ``p = r + (r**2/2 + r**3 t)`` with ``r**2`` exact (TwoProduct) and the
    tail ``t = 1/6 + r/24 + ... + r**4/7!`` in plain float64: its rounding,
    ~2**-51 of ``r**3 t``, is the bound (~2**-88 relative to ``exp(r)``).

    Under ``jax.jit`` XLA folds ``(w + c) - c`` to ``w`` for a compile-time
    constant ``c``, which would break TwoSum: no constant is ever an addend
    of an error-free transformation here.
    """
    t = _TAIL[-1]
    for coef in reversed(_TAIL[:-1]):
        t = t * r_hi + coef
    sq_hi, sq_lo = _square(r_hi)
    sq_lo = sq_lo + (2.0 * r_hi) * r_lo
    # |r**3 t| <= |r**2 / 2| * 2**-12 and |r**2 / 2| <= |r| * 2**-12.5
    q_hi, q_e = fast_two_sum(0.5 * sq_hi, (sq_hi * r_hi) * t)
    p_hi, p_e = fast_two_sum(r_hi, q_hi)
    return fast_two_sum(p_hi, p_e + (r_lo + (q_e + 0.5 * sq_lo)))


def _exp_safe(
    hi: Array, lo: Array, /, *, xp: ArrayNamespace
) -> tuple[Array, _ExpParts, Array]:
    """The range mask, the reduction of the in-range arguments, the tables."""
    ok = (hi >= _EXP_MIN) & (hi <= _EXP_MAX)
    zero = xp.zeros_like(hi)
    table = _table_array(hi, xp=xp)
    parts = _exp_parts(xp.where(ok, hi, zero), xp.where(ok, lo, zero), table, xp=xp)
    return ok, parts, table


def _exp_outside(hi: Array, /, *, xp: ArrayNamespace) -> Array:
    """exp outside [_EXP_MIN, _EXP_MAX]: 0 below, inf above, NaN stays NaN."""
    zero = xp.zeros_like(hi)
    return xp.where(hi < 0.0, zero, xp.where(hi > 0.0, const(math.inf, hi, xp=xp), hi))


def exp_scaled_dd(
    hi: Array, lo: Array, /, *, xp: ArrayNamespace
) -> tuple[Array, Array, Array]:
    r"""``exp(hi + lo) = (m_hi + m_lo) * 2**q`` with ``m`` in ``[0.999, 2.001)``.

    The form of :func:`exp_dd` before its final scaling: a chain of further
    double-double operations on ``m`` (say a division by a sum) can round
    once at the end with :func:`ldexp_dd`, correctly also for subnormal
    results.

    Parameters
    ----------
    hi, lo : array
        float64 arrays of the same shape, ``|lo| <= ulp(hi)``.
    xp : array_namespace
        The namespace of `hi` and `lo`.

    Returns
    -------
    tuple of arrays
        ``(m_hi, m_lo, q)``: a normalised double-double and an integral
        float64 exponent in ``[-1077, 1024]``. Outside the range of
        :func:`exp_dd`: ``(0, 0, 0)`` below, ``(inf, 0, 0)`` above,
        ``(nan, 0, 0)`` for NaN.

    Notes
    -----
    Relative error of ``m_hi + m_lo`` below ``2**-86`` on the whole range.
    """
    _check_float64(hi, lo, xp=xp)
    ok, parts, _ = _exp_safe(hi, lo, xp=xp)
    m_hi, m_lo, _, _ = _mantissa(parts)
    zero = xp.zeros_like(hi)
    return (
        xp.where(ok, m_hi, _exp_outside(hi, xp=xp)),
        xp.where(ok, m_lo, zero),
        xp.where(ok, parts.q, zero),
    )


def ldexp_dd(hi: Array, lo: Array, q: Array, /, *, xp: ArrayNamespace) -> DD:
    r"""``(hi + lo) * 2**q``, with ``hi`` of the result correctly rounded.

    Where the result is subnormal, its high part is the rounding of the
    exact ``(hi + lo) 2**q`` (not a double rounding of ``hi 2**q``, which
    can be 0.75 ulp off) and its low part is 0.

    Parameters
    ----------
    hi, lo : array
        A normalised double-double (float64) with ``2**-480 <= |hi| < 2**480``
        or ``hi`` zero or non-finite.
    q : array
        Integral float64 exponents in ``[-1080, 1080]``, of the shape of `hi`.
        The result must not overflow.
    xp : array_namespace
        The namespace of the arrays.

    Returns
    -------
    tuple of arrays
        ``(r_hi, r_lo)``. Non-finite `hi` passes through with ``r_lo = 0``.
        XLA on CPU flushes subnormal results to zero.
    """
    _check_float64(hi, lo, q, xp=xp)
    finite = xp.isfinite(hi)
    zero = xp.zeros_like(hi)
    table = _table_array(hi, xp=xp)
    r_hi, r_lo = _ldexp_round(
        xp.where(finite, hi, zero), xp.where(finite, lo, zero), q, table, xp=xp
    )
    return xp.where(finite, r_hi, hi), xp.where(finite, r_lo, zero)


def exp_dd(hi: Array, lo: Array, /, *, xp: ArrayNamespace) -> DD:
    r"""``exp(hi + lo)`` as a double-double.

    Tang's method: ``hi + lo = k ln2/N + r`` (``N = 1024``) with ``ln2/N``
    in three parts (the first two of 32 bits, so that ``k`` times them is
    exact), ``exp(r) - 1`` by a Taylor polynomial whose first two terms are
    exact (``|r| <= ln2/2N``), times ``2**(j/N)`` from a double-double
    table, times ``2**q`` (``k = N q + j``) with one rounding.

    Parameters
    ----------
    hi, lo : array
        float64 arrays of the same shape, ``|lo| <= ulp(hi)`` (a normalised
        double-double or a TwoSum pair such as ``two_sum(x, -m)``).
    xp : array_namespace
        The namespace of `hi` and `lo`.

    Returns
    -------
    tuple of arrays
        ``(e_hi, e_lo)``, normalised: ``fl(e_hi + e_lo) == e_hi``.

    Notes
    -----
    Relative error of ``e_hi + e_lo`` below ``2**-86`` for results above
    ``2**-968`` (measured: ``2**-88``); below, ``e_lo`` is subnormal and
    loses digits, and for subnormal results it is 0, but ``e_hi`` stays the
    correctly rounded value (but for rare cases, as everywhere). XLA on CPU
    flushes subnormals to zero: there results below ``2**-1022`` are 0.

    Special values: ``hi = -inf`` or ``hi < -746`` give ``(0, 0)``,
    ``hi > 709.782712893384`` (whose exp overflows) gives ``(inf, 0)``,
    NaN gives ``(nan, 0)``. No warnings and no NaN gradients for finite
    inputs: out-of-range inputs are replaced by safe values before the
    computation and the result selected after it. The main domain is
    ``hi <= 0`` (``exp(x - max)``); positive arguments work the same way.

    Examples
    --------
    >>> import numpy as np
    >>> from array_api_compat import numpy as xp
    >>> from logitkit._dd import exp_dd
    >>> e_hi, e_lo = exp_dd(np.asarray([0.0, -1.0]), np.zeros(2), xp=xp)
    >>> float(e_hi[1])  # exp(-1), correctly rounded
    0.36787944117144233
    >>> float(e_lo[1])  # exp(-1) - e_hi, within 1e-29
    -1.2428753673e-17
    """
    _check_float64(hi, lo, xp=xp)
    ok, parts, table = _exp_safe(hi, lo, xp=xp)
    m_hi, m_lo, _, _ = _mantissa(parts)
    e_hi, e_lo = _ldexp_round(m_hi, m_lo, parts.q, table, xp=xp)
    zero = xp.zeros_like(hi)
    return xp.where(ok, e_hi, _exp_outside(hi, xp=xp)), xp.where(ok, e_lo, zero)


# ---------------------------------------------------------------- log1p


def log1p_dd(s_hi: Array, s_lo: Array, /, *, xp: ArrayNamespace) -> DD:
    r"""``log1p(s_hi + s_lo)`` as a double-double, for ``s >= 0``.

    One Newton step on ``exp(y) = 1 + s`` from ``y0 = xp.log1p(s_hi)``:

    .. math:: y = y_0 + c - c^2/2, \qquad c = (1 + s) e^{-y_0} - 1

    with ``e^{-y_0} = 2^q M`` from the reduction of :func:`exp_dd`. For
    ``y0 <= ~1.4`` (``q >= -1``) ``c = s E + (E - 1)`` with ``E - 1``
    taken straight from the polynomial when ``k = 0``, so a tiny `s` keeps
    its relative accuracy; above, ``c = ((1 + s) 2^q) M - 1`` never forms
    the (possibly subnormal) ``e^{-y_0}``.

    Parameters
    ----------
    s_hi, s_lo : array
        float64 arrays of the same shape, a normalised double-double ``s >= 0``.
    xp : array_namespace
        The namespace of `s_hi` and `s_lo`.

    Returns
    -------
    tuple of arrays
        ``(l_hi, l_lo)``, normalised.

    Notes
    -----
    Relative error below ``2**-75`` (measured: ``2**-76.7``, worst for small
    ``s`` where the polynomial's tail dominates; ``2**-77`` for ``s`` from
    ``1e-280`` to ``1.7e308``). ``y0`` needs only to be within a few ulps.
    ``s = +inf`` gives ``(inf, 0)``, NaN gives ``(nan, 0)``; subnormal `s`
    gives ``(s_hi, 0)`` (``log1p(s) = s`` there). The product ``s E`` is
    only formed where ``s <= 3``, so huge `s` cannot overflow the split.
    """
    _check_float64(s_hi, s_lo, xp=xp)
    finite = xp.isfinite(s_hi)
    zero = xp.zeros_like(s_hi)
    s_hi_ = xp.where(finite, s_hi, zero)
    s_lo_ = xp.where(finite, s_lo, zero)
    y0 = xp.log1p(s_hi_)
    table = _table_array(s_hi, xp=xp)
    parts = _exp_parts(-y0, zero, table, xp=xp)
    m_hi, m_lo, tp_hi, tp_lo = _mantissa(parts)

    # Small y0 (q in {0, -1}, s <= ~3): c = s E + (E - 1) with E = 2**q M and
    # E - 1 = (2**(j/N + q) - 1) + 2**q t p from a table: no cancellation, and
    # for k = 0 it is p itself, with p's relative accuracy.
    small = parts.q >= -1.0
    q_small = xp.where(small, parts.q, zero)
    d_index = xp.where(small, parts.k - (2.0 * _N) * q_small, zero)  # j - N q
    scale = xp.where(q_small < 0.0, zero + 0.5, zero + 1.0)
    d_hi, d_lo = _add(
        _lookup(table, _D_HI, d_index, xp=xp),
        _lookup(table, _D_LO, d_index, xp=xp),
        tp_hi * scale,
        tp_lo * scale,
    )
    sa_hi = xp.where(small, s_hi_, zero)
    sa_lo = xp.where(small, s_lo_, zero)
    se_hi, se_lo = _mul(sa_hi, sa_lo, m_hi * scale, m_lo * scale)
    ca_hi, ca_lo = _add(d_hi, d_lo, se_hi, se_lo)

    # Large y0: c = A M - 1 with A = (1 + s) 2**q = s 2**q + 2**q, about 1/M;
    # 2**q comes from a table (data, not a constant: see _expm1_small).
    q_large = xp.where(small, zero, parts.q)
    a_hi, a_lo = _scale(s_hi_, s_lo_, q_large, table, xp=xp)
    one_hi, _ = _scale(zero + 1.0, zero, q_large, table, xp=xp)
    a_hi, a_e = two_sum(a_hi, one_hi)
    a_hi, a_lo = fast_two_sum(a_hi, a_e + a_lo)
    am_hi, am_lo = _mul(a_hi, a_lo, m_hi, m_lo)
    cb_hi, cb_lo = two_sum(am_hi - 1.0, am_lo)  # am_hi - 1 is exact (Sterbenz)

    c_hi = xp.where(small, ca_hi, cb_hi)
    c_lo = xp.where(small, ca_lo, cb_lo)
    l_hi, l_e = two_sum(y0, c_hi)
    l_hi, l_lo = fast_two_sum(l_hi, l_e + (c_lo - 0.5 * (c_hi * c_hi)))
    return xp.where(finite, l_hi, s_hi), xp.where(finite, l_lo, zero)


# ------------------------------------------------------------------ sum


def sum_dd(
    x: Array,
    /,
    *,
    lo: Array | None = None,
    axis: int = -1,
    keepdims: bool = True,
    xp: ArrayNamespace,
) -> DD:
    r"""Compensated sum of `x` (plus the plain sum of `lo`) along `axis`.

    A pairwise tree of TwoSum: each level adds the first half of the
    (zero-padded, even) axis to the second half, and sums the exact
    rounding errors of that level in plain float64. ``log2(n)`` levels,
    ``O(n)`` work in all.

    Parameters
    ----------
    x : array
        float64 array.
    lo : array, optional
        float64 array of the shape of `x`, the low parts of double-double
        terms ``x + lo``; summed without compensation (its terms are
        ``2**-53`` smaller).
    axis : int, optional
        The axis to reduce. Default: ``-1``.
    keepdims : bool, optional
        Keep the reduced axis with size one. Default: True.
    xp : array_namespace
        The namespace of `x`.

    Returns
    -------
    tuple of arrays
        ``(s_hi, s_lo)``, normalised; zeros for an empty axis.

    Notes
    -----
    Error at most about ``(log2(n) + 2) 2**-106 sum(|x|)`` (for ``x >= 0``
    a relative error; asserted ``2**-100``, measured ``2**-107`` for
    ``n`` up to 128000 over 300 binades, ``2**-108`` of ``sum(|x|)`` for
    mixed signs).
    For finite `x` whose partial sums do not overflow. A non-finite sum (an
    inf or NaN entry) gives ``(xp.sum(x), 0)`` without NaN from the error
    terms; NumPy may still warn where ``xp.sum`` itself would (inf - inf).
    """
    _check_float64(x, xp=xp)
    if lo is not None:
        _check_float64(lo, xp=xp)
    ndim = x.ndim
    if ndim == 0:
        x = xp.reshape(x, (1,))
        lo = None if lo is None else xp.reshape(lo, (1,))
        ndim, axis = 1, -1
    if not -ndim <= axis < ndim:
        msg = f"axis {axis} is out of bounds for array of dimension {ndim}"
        raise IndexError(msg)
    axis %= ndim
    if axis != ndim - 1:
        perm = (*(a for a in range(ndim) if a != axis), axis)
        x = xp.permute_dims(x, perm)
        lo = None if lo is None else xp.permute_dims(lo, perm)

    plain = xp.sum(x, axis=-1, keepdims=True)
    finite = xp.isfinite(plain)
    values = xp.where(xp.isfinite(x), x, xp.zeros_like(x))
    pad = xp.zeros_like(plain)
    err = pad
    n = values.shape[-1]
    if n == 0:
        values = pad
    while n > 1:
        if n % 2:
            values = xp.concat([values, pad], axis=-1)
            n += 1
        n //= 2
        values, e = two_sum(values[..., :n], values[..., n:])
        err = err + xp.sum(e, axis=-1, keepdims=True)
    if lo is not None:
        err = err + xp.sum(lo, axis=-1, keepdims=True)
    s_hi, s_lo = two_sum(values, err)
    s_hi = xp.where(finite, s_hi, plain)
    s_lo = xp.where(finite, s_lo, xp.zeros_like(s_lo))
    if axis != ndim - 1:
        inverse = [0] * ndim
        for i, a in enumerate(perm):
            inverse[a] = i
        s_hi = xp.permute_dims(s_hi, tuple(inverse))
        s_lo = xp.permute_dims(s_lo, tuple(inverse))
    if not keepdims:
        s_hi = xp.squeeze(s_hi, axis=axis)
        s_lo = xp.squeeze(s_lo, axis=axis)
    return s_hi, s_lo
