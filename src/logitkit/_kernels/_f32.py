r"""numba kernels of the softmax family for float32 results (computed in float64).

Every function works on a C-contiguous 2-D array ``x`` of shape (rows, n),
``n >= 1``, the classes along the last axis, and computes exactly what the
portable path computes (``logitkit._softmax._row_stats`` with ``refine=False``):
with ``m`` the row maximum, ``d_j = x_j - m`` (in float64),
``S = sum_{j != k} exp(d_j)`` and ``L = log1p(S)``,

- softmax: ``exp(d_j) / (1 + S)``,
- log_softmax: ``d_j - L``,
- logsumexp: ``m + L``,
- sparse cross entropy: ``L - d_y``,
- its gradient (``sparse_ce_grad``, with the loss): ``p_j - [j = y]`` with
  ``p_j = exp(d_j) / (1 + S)``, and ``((1 - [y = k]) - [y = k] S) / (1 + S)``
  at the (first) maximum ``k`` (``logitkit._cross_entropy._row_grad``),
  times a per-row scale; for torch autograd the same in two halves:
  ``sparse_ce_fwd`` (the loss and each row's ``m`` and ``S``) and
  ``sparse_ce_bwd`` (the gradient from those statistics),
- the dense cross entropy and its gradient (``dense_ce_grad``):
  ``sum_j y_j (L - d_j)`` (terms with ``y_j = 0`` left out) and
  ``Y p_j - y_j``, ``(Y_rest - y_k S) / (1 + S)`` at ``k``, ``Y = sum_j y_j``,

each rounded once to the output dtype. ``exp`` is a float64 polynomial
(relative error ~1e-17 before its last rounding, about 1 ulp of float64 in
all): results differ from NumPy's ``exp`` in the last bit of the float64
intermediate, which moves the float32 result only when it lies within about
``2**-52`` (relative) of a rounding boundary of float32, a double rounding
the portable path is exposed to as well.

Rows whose maximum is not finite or that hold a NaN take a scalar path with
the portable path's special values.
"""

# numba-compiled helpers are untyped for mypy: their results are Any.
# mypy: disable-error-code="no-any-return"

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from ._intrinsics import as_float, as_int, fma, maxnum32

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

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471805599453
_LN2_LO = 2.3190468138462996e-17
_SHIFT = 6755399441055744.0  # 1.5 * 2**52: adding it rounds to an integer
# (exp(r) - 1) / r on [-0.3466, 0.3466], Chebyshev interpolation, degree 10:
# 1 + r * q(r) is within 1e-17 of exp(r) (relative) before rounding.
_Q0 = 1.0
_Q1 = 0.5000000000000006
_Q2 = 0.1666666666666667
_Q3 = 0.041666666666573086
_Q4 = 0.008333333333326136
_Q5 = 0.0013888888932508548
_Q6 = 0.00019841269874815834
_Q7 = 2.4801504321690158e-05
_Q8 = 2.7557255406285044e-06
_Q9 = 2.7626367775723217e-07
_Q10 = 2.5105214474751413e-08
# Below this d, exp(d) < 2**-1021: such terms cannot move a float32 result
# (they are taken as 0), and 2**k stays a normal number.
_CUT = -708.0

_FM: Any = {"reassoc", "nsz"}  # sums only: lets LLVM vectorise the reductions
_KW: Any = {"cache": True, "nogil": True, "error_model": "numpy"}


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def exp_poly(d: float) -> float:
    """``exp(d)`` for ``_CUT <= d <= 0`` (NaN propagates), without clamps.

    No fast-math here: the shifter must not be folded.
    """
    t = fma(d, _LOG2E, _SHIFT)
    k = t - _SHIFT
    r = fma(-k, _LN2_HI, d)
    r = fma(-k, _LN2_LO, r)
    # Estrin's scheme: a short dependency chain (the loop is latency-bound).
    r2 = r * r
    r4 = r2 * r2
    b0 = fma(r2, fma(r, _Q3, _Q2), fma(r, _Q1, _Q0))
    b1 = fma(r2, fma(r, _Q7, _Q6), fma(r, _Q5, _Q4))
    b2 = fma(r2, _Q10, fma(r, _Q9, _Q8))
    q = fma(r4 * r4, b2, fma(r4, b1, b0))
    e = fma(r, q, 1.0)
    return e * as_float((as_int(t) + 1023) << 52)


@njit(inline="always", **_KW)  # type: ignore[untyped-decorator]
def exp_nonpos(d: float) -> float:
    """``exp(d)`` for ``d <= 0`` (or NaN, which propagates); 0 below -708."""
    dc = _CUT if d < _CUT else d  # noqa: FURB136 (max() would drop a NaN)
    e = exp_poly(dc)
    return 0.0 if d < _CUT else e


@njit(fastmath={"nnan", "nsz", "reassoc"}, **_KW)  # type: ignore[untyped-decorator]
def _row_range(x: Any, i: int, n: int) -> tuple[float, float]:
    """The row's maximum and minimum (vectorised: ``maxnum`` of ``x`` and ``-x``).

    With a NaN in the row either may be anything: the sums then see the NaN.
    """
    m = np.float32(-np.inf)
    neg_lo = np.float32(-np.inf)
    for j in range(n):
        v = x[i, j]
        m = maxnum32(m, v)
        neg_lo = maxnum32(neg_lo, -v)
    return float(m), -float(neg_lo)


@njit(fastmath={"nnan", "nsz", "reassoc"}, **_KW)  # type: ignore[untyped-decorator]
def _row_max(x: Any, i: int, n: int) -> float:
    m = np.float32(-np.inf)
    for j in range(n):
        m = maxnum32(m, x[i, j])
    return float(m)


@njit(fastmath=_FM, **_KW)  # type: ignore[untyped-decorator]
def _row_sum(x: Any, i: int, n: int, m: float, lo: float) -> tuple[float, float]:
    """``exp(x_j - m)`` summed over ``x_j < m``, and the count of ``x_j = m``.

    ``S = s + (t - 1)`` is formed by the caller, outside this fast-math
    function: reassociated to ``(s + t) - 1`` it would lose a tiny ``s``.
    A NaN in the row makes ``s`` NaN. A row whose minimum `lo` is within
    ``-_CUT`` of `m` needs no clamps (the same values, ~8 % faster).
    """
    s = 0.0
    t = 0.0
    if lo - m >= _CUT:
        for j in range(n):
            d = np.float64(x[i, j]) - m
            e = exp_poly(d)
            s += e if d != 0.0 else 0.0
            t += 1.0 if d == 0.0 else 0.0
        return s, t
    for j in range(n):
        d = np.float64(x[i, j]) - m
        e = exp_nonpos(d)
        s += e if d != 0.0 else 0.0
        t += 1.0 if d == 0.0 else 0.0
    return s, t


@njit(fastmath=_FM, **_KW)  # type: ignore[untyped-decorator]
def _row_sum_store(
    x: Any, i: int, n: int, m: float, lo: float, buf: Any
) -> tuple[float, float]:
    """:func:`_row_sum`, keeping each ``exp(x_j - m)`` in `buf`."""
    s = 0.0
    t = 0.0
    if lo - m >= _CUT:
        for j in range(n):
            d = np.float64(x[i, j]) - m
            e = exp_poly(d)
            buf[j] = e
            s += e if d != 0.0 else 0.0
            t += 1.0 if d == 0.0 else 0.0
        return s, t
    for j in range(n):
        d = np.float64(x[i, j]) - m
        e = exp_nonpos(d)
        buf[j] = e
        s += e if d != 0.0 else 0.0
        t += 1.0 if d == 0.0 else 0.0
    return s, t


@njit(**_KW)  # type: ignore[untyped-decorator]
def _special(x: Any, i: int, n: int, m: float, buf: Any) -> tuple[float, float, bool]:
    """A row with a NaN or a non-finite maximum, as the portable path treats it.

    Fills `buf` with ``d_j`` and returns ``(m, S, nan_row)``: with ``+inf``
    entries ``d_j`` is 0 there and ``-inf`` elsewhere, ``S`` their count
    less one; an all ``-inf`` row has ``d_j = -inf`` and ``S = 0``.
    """
    for j in range(n):
        if math.isnan(x[i, j]):
            return m, math.nan, True
    if m == math.inf:
        c = 0.0
        for j in range(n):
            if x[i, j] == math.inf:
                buf[j] = 0.0
                c += 1.0
            else:
                buf[j] = -math.inf
        return m, c - 1.0, False
    for j in range(n):
        buf[j] = -math.inf
    return m, 0.0, False


@njit(**_KW)  # type: ignore[untyped-decorator]
def _softmax_row(x: Any, out: Any, i: int, n: int, buf: Any) -> None:
    r = _probs_row(x, i, n, buf)
    if r == 0.0 or math.isnan(r):  # no valid entry: zeros; a NaN: NaN
        for j in range(n):
            out[i, j] = r
        return
    for j in range(n):
        out[i, j] = buf[j] * r


@njit(**_KW)  # type: ignore[untyped-decorator]
def _log_softmax_row(x: Any, out: Any, i: int, n: int, buf: Any) -> None:
    m, lo = _row_range(x, i, n)
    if math.isfinite(m):
        s, t = _row_sum(x, i, n, m, lo)
        s = s + (t - 1.0)
        if not math.isnan(s):
            big = math.log1p(s)
            for j in range(n):
                out[i, j] = (np.float64(x[i, j]) - m) - big
            return
    m, s, nan_row = _special(x, i, n, m, buf)
    if nan_row:
        for j in range(n):
            out[i, j] = math.nan
        return
    big = math.log1p(s)
    for j in range(n):
        out[i, j] = buf[j] - big


@njit(**_KW)  # type: ignore[untyped-decorator]
def _lse_row(x: Any, out: Any, i: int, n: int, buf: Any) -> None:
    m, lo = _row_range(x, i, n)
    if math.isfinite(m):
        s, t = _row_sum(x, i, n, m, lo)
        s = s + (t - 1.0)
        if not math.isnan(s):
            out[i] = m + math.log1p(s)
            return
    m, s, nan_row = _special(x, i, n, m, buf)
    out[i] = math.nan if nan_row else m + math.log1p(s)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _ce_row(x: Any, labels: Any, out: Any, i: int, n: int, buf: Any) -> None:
    y = labels[i]
    if y < 0:  # ignored (validated in Python): loss 0, row not read
        out[i] = 0.0
        return
    m, lo = _row_range(x, i, n)
    if math.isfinite(m):
        s, t = _row_sum(x, i, n, m, lo)
        s = s + (t - 1.0)
        if not math.isnan(s):
            out[i] = math.log1p(s) - (np.float64(x[i, y]) - m)
            return
    m, s, nan_row = _special(x, i, n, m, buf)
    out[i] = math.nan if nan_row else math.log1p(s) - buf[y]


@njit(**_KW)  # type: ignore[untyped-decorator]
def _first_max(x: Any, i: int, n: int, m: float) -> int:
    """The position of the first maximum (``argmax``'s ``k``)."""
    for j in range(n):
        if x[i, j] == m:
            return j
    return 0


@njit(**_KW)  # type: ignore[untyped-decorator]
def _grad_write(
    grad: Any, i: int, n: int, buf: Any, s: float, k: int, y: int, c: float
) -> None:
    """``(p_j - [j = y]) c`` with ``p_j = buf_j / (1 + S)``, the top one exact.

    No fast-math: ``buf_j / den * c`` must stay a division and a product.
    """
    den = 1.0 + s
    for j in range(n):
        grad[i, j] = (buf[j] / den) * c
    if y != k:
        grad[i, y] = (buf[y] / den - 1.0) * c
    y_k = 1.0 if y == k else 0.0
    grad[i, k] = (((1.0 - y_k) - y_k * s) / den) * c


@njit(**_KW)  # type: ignore[untyped-decorator]
def _ce_grad_row(
    x: Any, labels: Any, scale: Any, out: Any, grad: Any, i: int, n: int, buf: Any
) -> None:
    """The loss of row `i` (as :func:`_ce_row`) and its gradient row."""
    y = labels[i]
    if y < 0:  # ignored: loss 0, zero gradient
        out[i] = 0.0
        for j in range(n):
            grad[i, j] = 0.0
        return
    c = scale[i]
    m, lo = _row_range(x, i, n)
    if math.isfinite(m):
        s, t = _row_sum_store(x, i, n, m, lo, buf)
        s = s + (t - 1.0)
        if not math.isnan(s):
            out[i] = math.log1p(s) - (np.float64(x[i, y]) - m)
            _grad_write(grad, i, n, buf, s, _first_max(x, i, n, m), y, c)
            return
    m, s, nan_row = _special(x, i, n, m, buf)
    if nan_row:
        out[i] = math.nan
        for j in range(n):
            grad[i, j] = math.nan
        return
    out[i] = math.log1p(s) - buf[y]
    if m == -math.inf:  # no valid entry: no gradient
        for j in range(n):
            grad[i, j] = 0.0
        return
    for j in range(n):  # exp(d_j): 1 for the +inf entries, 0 elsewhere
        buf[j] = 1.0 if buf[j] == 0.0 else 0.0
    _grad_write(grad, i, n, buf, s, _first_max(x, i, n, m), y, c)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _ce_fwd_row(
    x: Any, labels: Any, out: Any, stats: Any, i: int, n: int, buf: Any
) -> None:
    """The loss of row `i` (as :func:`_ce_grad_row`), and ``(m, S)`` in `stats`.

    ``S`` is NaN for a row with a NaN; ``m`` is ``-inf`` for a row with no
    valid entry. ``S`` is the sum :func:`_ce_grad_row` forms (the same
    function, :func:`_row_sum_store`): the gradients are the same bits.
    """
    y = labels[i]
    stats[i, 0] = 0.0
    stats[i, 1] = 0.0
    if y < 0:
        out[i] = 0.0
        return
    m, lo = _row_range(x, i, n)
    if math.isfinite(m):
        s, t = _row_sum_store(x, i, n, m, lo, buf)
        s = s + (t - 1.0)
        if not math.isnan(s):
            out[i] = math.log1p(s) - (np.float64(x[i, y]) - m)
            stats[i, 0] = m
            stats[i, 1] = s
            return
    m, s, nan_row = _special(x, i, n, m, buf)
    stats[i, 0] = m
    stats[i, 1] = math.nan if nan_row else s
    out[i] = math.nan if nan_row else math.log1p(s) - buf[y]


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
    if math.isfinite(m):
        _row_sum_store(x, i, n, m, -math.inf, buf)  # _ce_grad_row's exp, bit for bit
    else:  # +inf maximum: exp(d_j) is 1 for the +inf entries, 0 elsewhere
        for j in range(n):
            buf[j] = 1.0 if x[i, j] == math.inf else 0.0
    _grad_write(grad, i, n, buf, s, _first_max(x, i, n, m), y, scale[i])


@njit(**_KW)  # type: ignore[untyped-decorator]
def _dense_ce_grad_row(
    x: Any, lab: Any, scale: Any, out: Any, grad: Any, i: int, n: int, buf: Any
) -> None:
    """The dense cross entropy of row `i` and its gradient row.

    `buf` ends up holding ``d_j`` (special rows) or ``exp(d_j)``; the loss
    adds ``y_j (L - d_j)`` over ``y_j != 0`` (``0 log 0 = 0``), as
    ``logitkit._cross_entropy._rows`` does.
    """
    m, lo = _row_range(x, i, n)
    special = True
    s = 0.0
    if math.isfinite(m):
        s, t = _row_sum_store(x, i, n, m, lo, buf)
        s = s + (t - 1.0)
        special = math.isnan(s)
    nan_row = False
    if special:
        m, s, nan_row = _special(x, i, n, m, buf)
    big = math.log1p(s)
    loss = 0.0
    for j in range(n):
        y = np.float64(lab[i, j])
        if y != 0.0:
            if nan_row:
                d = math.nan
            elif special:
                d = buf[j]
            else:
                d = np.float64(x[i, j]) - m
            loss += y * (big - d)
    out[i] = loss
    if nan_row:
        for j in range(n):
            grad[i, j] = math.nan
        return
    if m == -math.inf:  # no valid entry: no gradient
        for j in range(n):
            grad[i, j] = 0.0
        return
    if special:  # exp(d_j): 1 for the +inf entries, 0 elsewhere
        for j in range(n):
            buf[j] = 1.0 if buf[j] == 0.0 else 0.0
    k = _first_max(x, i, n, m)
    y_rest = 0.0
    for j in range(n):
        if j != k:
            y_rest += np.float64(lab[i, j])
    y_k = np.float64(lab[i, k])
    y_total = y_rest + y_k
    c = scale[i]
    den = 1.0 + s
    for j in range(n):
        grad[i, j] = (y_total * (buf[j] / den) - np.float64(lab[i, j])) * c
    grad[i, k] = ((y_rest - y_k * s) / den) * c


# Short rows (n < _SHORT_N): the vector loops of the row functions leave a
# row of a few classes to their scalar remainders, so the ``exp`` of a block
# of rows is taken in one flat (vectorised) pass; the sums and writes are
# the row functions' formulas (rows with a NaN or a non-finite maximum take
# the row functions themselves).

#: Below this many classes a block of rows shares one flat ``exp`` pass
#: (measured on AVX-512: 2.1x faster at n = 10, 1.3x at n = 33).
_SHORT_N = 48
#: Elements of a block of short rows (its buffers stay in L1).
_SHORT_BLOCK = 2048


@njit(**_KW)  # type: ignore[untyped-decorator]
def _short_bufs(n: int) -> tuple[int, Any, Any, Any, Any]:
    """Rows per block and the buffers of :func:`_block_stats`."""
    b = max(1, _SHORT_BLOCK // n)
    return (
        b,
        np.empty(b * n, np.float64),
        np.empty(b * n, np.float64),
        np.empty((b, 2), np.float64),
        np.empty(n, np.float64),
    )


@njit(**_KW)  # type: ignore[untyped-decorator]
def _block_stats(x: Any, b0: int, b1: int, mb: Any, e: Any, st: Any) -> None:
    """``st[i - b0] = (m, S)`` of rows ``b0:b1``, ``exp(d_j)`` in `e` from ``(i - b0) n``.

    ``S`` is NaN for a row the row functions must take (a NaN in it, or a
    maximum that is not finite).
    """
    n = x.shape[1]
    for i in range(b0, b1):
        r = i - b0
        m = _row_max(x, i, n)
        st[r, 0] = m
        mm = m if math.isfinite(m) else 0.0
        for j in range(n):
            mb[r * n + j] = mm
    xf = x[b0:b1].reshape(-1)
    for k in range((b1 - b0) * n):
        e[k] = exp_nonpos(np.float64(xf[k]) - mb[k])
    for i in range(b0, b1):
        r = i - b0
        m = st[r, 0]
        s = 0.0
        t = 0.0
        for j in range(n):
            d = np.float64(x[i, j]) - m
            s += e[r * n + j] if d != 0.0 else 0.0
            t += 1.0 if d == 0.0 else 0.0
        s = s + (t - 1.0)
        st[r, 1] = s if math.isfinite(m) else math.nan


@njit(**_KW)  # type: ignore[untyped-decorator]
def _softmax_short(x: Any, out: Any, r0: int, r1: int) -> None:
    n = x.shape[1]
    b, mb, e, st, buf = _short_bufs(n)
    for b0 in range(r0, r1, b):
        b1 = min(r1, b0 + b)
        _block_stats(x, b0, b1, mb, e, st)
        for i in range(b0, b1):
            r = i - b0
            if math.isnan(st[r, 1]):
                _softmax_row(x, out, i, n, buf)
                continue
            q = 1.0 / (1.0 + st[r, 1])
            for j in range(n):
                out[i, j] = e[r * n + j] * q


@njit(**_KW)  # type: ignore[untyped-decorator]
def _log_softmax_short(x: Any, out: Any, r0: int, r1: int) -> None:
    n = x.shape[1]
    b, mb, e, st, buf = _short_bufs(n)
    for b0 in range(r0, r1, b):
        b1 = min(r1, b0 + b)
        _block_stats(x, b0, b1, mb, e, st)
        for i in range(b0, b1):
            r = i - b0
            if math.isnan(st[r, 1]):
                _log_softmax_row(x, out, i, n, buf)
                continue
            m = st[r, 0]
            big = math.log1p(st[r, 1])
            for j in range(n):
                out[i, j] = (np.float64(x[i, j]) - m) - big


@njit(**_KW)  # type: ignore[untyped-decorator]
def _lse_short(x: Any, out: Any, r0: int, r1: int) -> None:
    n = x.shape[1]
    b, mb, e, st, buf = _short_bufs(n)
    for b0 in range(r0, r1, b):
        b1 = min(r1, b0 + b)
        _block_stats(x, b0, b1, mb, e, st)
        for i in range(b0, b1):
            r = i - b0
            if math.isnan(st[r, 1]):
                _lse_row(x, out, i, n, buf)
            else:
                out[i] = st[r, 0] + math.log1p(st[r, 1])


@njit(**_KW)  # type: ignore[untyped-decorator]
def _ce_short(x: Any, labels: Any, out: Any, r0: int, r1: int) -> None:
    n = x.shape[1]
    b, mb, e, st, buf = _short_bufs(n)
    for b0 in range(r0, r1, b):
        b1 = min(r1, b0 + b)
        _block_stats(x, b0, b1, mb, e, st)
        for i in range(b0, b1):
            r = i - b0
            y = labels[i]
            if y < 0 or math.isnan(st[r, 1]):
                _ce_row(x, labels, out, i, n, buf)
            else:
                out[i] = math.log1p(st[r, 1]) - (np.float64(x[i, y]) - st[r, 0])


# Drivers: serial, and parallel over `nchunks` chunks of rows (one buffer each).


@njit(**_KW)  # type: ignore[untyped-decorator]
def softmax_serial(x: Any, out: Any, _nchunks: int) -> None:
    rows, n = x.shape
    if n < _SHORT_N:
        _softmax_short(x, out, 0, rows)
        return
    buf = np.empty(n, np.float64)
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
        buf = np.empty(n, np.float64)
        for i in range(lo_c, hi_c):
            _softmax_row(x, out, i, n, buf)


@njit(**_KW)  # type: ignore[untyped-decorator]
def log_softmax_serial(x: Any, out: Any, _nchunks: int) -> None:
    rows, n = x.shape
    if n < _SHORT_N:
        _log_softmax_short(x, out, 0, rows)
        return
    buf = np.empty(n, np.float64)
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
        buf = np.empty(n, np.float64)
        for i in range(lo_c, hi_c):
            _log_softmax_row(x, out, i, n, buf)


@njit(**_KW)  # type: ignore[untyped-decorator]
def logsumexp_serial(x: Any, out: Any, _nchunks: int) -> None:
    rows, n = x.shape
    if n < _SHORT_N:
        _lse_short(x, out, 0, rows)
        return
    buf = np.empty(n, np.float64)
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
        buf = np.empty(n, np.float64)
        for i in range(lo_c, hi_c):
            _lse_row(x, out, i, n, buf)


@njit(**_KW)  # type: ignore[untyped-decorator]
def sparse_ce_serial(x: Any, labels: Any, out: Any, _nchunks: int) -> None:
    rows, n = x.shape
    if n < _SHORT_N:
        _ce_short(x, labels, out, 0, rows)
        return
    buf = np.empty(n, np.float64)
    for i in range(rows):
        _ce_row(x, labels, out, i, n, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sparse_ce_parallel(x: Any, labels: Any, out: Any, nchunks: int) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        lo_c, hi_c = c * rows // nchunks, (c + 1) * rows // nchunks
        if n < _SHORT_N:
            _ce_short(x, labels, out, lo_c, hi_c)
            continue
        buf = np.empty(n, np.float64)
        for i in range(lo_c, hi_c):
            _ce_row(x, labels, out, i, n, buf)


@njit(**_KW)  # type: ignore[untyped-decorator]
def sparse_ce_grad_serial(
    x: Any, labels: Any, scale: Any, out: Any, grad: Any, _nchunks: int
) -> None:
    rows, n = x.shape
    buf = np.empty(n, np.float64)
    for i in range(rows):
        _ce_grad_row(x, labels, scale, out, grad, i, n, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sparse_ce_grad_parallel(
    x: Any, labels: Any, scale: Any, out: Any, grad: Any, nchunks: int
) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        buf = np.empty(n, np.float64)
        for i in range(c * rows // nchunks, (c + 1) * rows // nchunks):
            _ce_grad_row(x, labels, scale, out, grad, i, n, buf)


@njit(**_KW)  # type: ignore[untyped-decorator]
def sparse_ce_fwd_serial(
    x: Any, labels: Any, out: Any, stats: Any, _nchunks: int
) -> None:
    rows, n = x.shape
    buf = np.empty(n, np.float64)
    for i in range(rows):
        _ce_fwd_row(x, labels, out, stats, i, n, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sparse_ce_fwd_parallel(
    x: Any, labels: Any, out: Any, stats: Any, nchunks: int
) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        buf = np.empty(n, np.float64)
        for i in range(c * rows // nchunks, (c + 1) * rows // nchunks):
            _ce_fwd_row(x, labels, out, stats, i, n, buf)


@njit(**_KW)  # type: ignore[untyped-decorator]
def sparse_ce_bwd_serial(
    x: Any, labels: Any, stats: Any, scale: Any, grad: Any, _nchunks: int
) -> None:
    rows, n = x.shape
    buf = np.empty(n, np.float64)
    for i in range(rows):
        _ce_bwd_row(x, labels, stats, scale, grad, i, n, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def sparse_ce_bwd_parallel(
    x: Any, labels: Any, stats: Any, scale: Any, grad: Any, nchunks: int
) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        buf = np.empty(n, np.float64)
        for i in range(c * rows // nchunks, (c + 1) * rows // nchunks):
            _ce_bwd_row(x, labels, stats, scale, grad, i, n, buf)


@njit(**_KW)  # type: ignore[untyped-decorator]
def dense_ce_grad_serial(
    x: Any, lab: Any, scale: Any, out: Any, grad: Any, _nchunks: int
) -> None:
    rows, n = x.shape
    buf = np.empty(n, np.float64)
    for i in range(rows):
        _dense_ce_grad_row(x, lab, scale, out, grad, i, n, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def dense_ce_grad_parallel(
    x: Any, lab: Any, scale: Any, out: Any, grad: Any, nchunks: int
) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        buf = np.empty(n, np.float64)
        for i in range(c * rows // nchunks, (c + 1) * rows // nchunks):
            _dense_ce_grad_row(x, lab, scale, out, grad, i, n, buf)


# Vector-Jacobian products (``lk.vjp.softmax`` / ``log_softmax``, the
# backward of the torch autograd Function): ``p`` in float64 as
# :func:`_softmax_row` forms it before its rounding, then
# ``p (g - <g, p>)`` or ``g - p sum(g)`` in float64, rounded once.


@njit(**_KW)  # type: ignore[untyped-decorator]
def _probs_row(x: Any, i: int, n: int, buf: Any) -> float:
    """``buf[j] * r = p_j`` (float64) of row `i`; ``r`` returned.

    NaN for a row with a NaN, 0 for a row with no valid entry (its gradient
    is 0, as ``lk.vjp``'s).
    """
    m, lo = _row_range(x, i, n)
    if math.isfinite(m):
        s, t = _row_sum_store(x, i, n, m, lo, buf)
        s = s + (t - 1.0)
        if not math.isnan(s):
            return 1.0 / (1.0 + s)
    m, s, nan_row = _special(x, i, n, m, buf)
    if nan_row:
        return math.nan
    if m == -math.inf:
        return 0.0
    for j in range(n):
        buf[j] = 1.0 if buf[j] == 0.0 else 0.0
    return 1.0 / (1.0 + s)


@njit(fastmath=_FM, **_KW)  # type: ignore[untyped-decorator]
def _dot_p(g: Any, i: int, n: int, buf: Any, r: float) -> float:
    acc = 0.0
    for j in range(n):
        acc += np.float64(g[i, j]) * (buf[j] * r)
    return acc


@njit(fastmath=_FM, **_KW)  # type: ignore[untyped-decorator]
def _sum_g(g: Any, i: int, n: int) -> float:
    acc = 0.0
    for j in range(n):
        acc += np.float64(g[i, j])
    return acc


@njit(**_KW)  # type: ignore[untyped-decorator]
def _softmax_vjp_row(x: Any, g: Any, out: Any, i: int, n: int, buf: Any) -> None:
    r = _probs_row(x, i, n, buf)
    if r == 0.0 or math.isnan(r):
        for j in range(n):
            out[i, j] = r
        return
    inner = _dot_p(g, i, n, buf, r)
    for j in range(n):
        p = buf[j] * r
        out[i, j] = p * (np.float64(g[i, j]) - inner)


@njit(**_KW)  # type: ignore[untyped-decorator]
def _log_softmax_vjp_row(x: Any, g: Any, out: Any, i: int, n: int, buf: Any) -> None:
    r = _probs_row(x, i, n, buf)
    if r == 0.0 or math.isnan(r):
        for j in range(n):
            out[i, j] = r
        return
    total = _sum_g(g, i, n)
    for j in range(n):
        out[i, j] = np.float64(g[i, j]) - (buf[j] * r) * total


@njit(**_KW)  # type: ignore[untyped-decorator]
def softmax_vjp_serial(x: Any, g: Any, out: Any, _nchunks: int) -> None:
    rows, n = x.shape
    buf = np.empty(n, np.float64)
    for i in range(rows):
        _softmax_vjp_row(x, g, out, i, n, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def softmax_vjp_parallel(x: Any, g: Any, out: Any, nchunks: int) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        buf = np.empty(n, np.float64)
        for i in range(c * rows // nchunks, (c + 1) * rows // nchunks):
            _softmax_vjp_row(x, g, out, i, n, buf)


@njit(**_KW)  # type: ignore[untyped-decorator]
def log_softmax_vjp_serial(x: Any, g: Any, out: Any, _nchunks: int) -> None:
    rows, n = x.shape
    buf = np.empty(n, np.float64)
    for i in range(rows):
        _log_softmax_vjp_row(x, g, out, i, n, buf)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def log_softmax_vjp_parallel(x: Any, g: Any, out: Any, nchunks: int) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        buf = np.empty(n, np.float64)
        for i in range(c * rows // nchunks, (c + 1) * rows // nchunks):
            _log_softmax_vjp_row(x, g, out, i, n, buf)
