r"""numba kernel of ``logitkit score``: every per-row metric of float32 logits.

One row of logits ``x`` (float32, ``n`` classes) and its label ``y`` give, in
two passes over the row (the second from L1), with ``m`` the row maximum,
``d_j = x_j - m`` and ``e_j = exp(d_j)`` in float64 as in :mod:`._f32`,
``S = sum_{j: d_j < 0} e_j + (#{j: d_j = 0} - 1)`` and ``L = log1p(S)``:

- ``nll = L - d_y`` (the sparse cross entropy),
- ``entropy = L + G / (1 + S)`` with ``G = sum_j e_j (-d_j) >= 0`` (no
  cancellation: both terms are non-negative),
- ``brier = (1 - p_y)^2 + Q / (1 + S)^2`` with ``Q = sum_{j != y} e_j^2``
  and ``1 - p_y = S / (1 + S)`` when ``x_y = m``, else
  ``(1 + (S - e_y)) / (1 + S)`` (the numerator is at least 1). ``Q`` is
  ``q + (t - 1)`` or ``(q - e_y^2) + t`` from ``q``, the sum of ``e_j^2``
  over ``x_j < m``: where ``e_y^2`` cancels most of ``q``, the part lost is
  below ``2**-53 q <= 2**-53 S`` relative to ``brier >= 1 / (1 + S)^2``,
  far below a float32 rounding for any ``n < 2**20``,
- ``conf = 1 / (1 + S)`` (the largest probability),

each rounded once to float32, and ``rank``: the number of classes scored above
``y`` plus the tied ones of a lower index (0 exactly when ``y`` is the first
arg-max). ``status`` is 1 for a row with a NaN, a ``+inf`` or no finite logit
(the caller then raises the checker's error), else 0.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from ._f32 import _CUT, _FM, _KW, exp_nonpos
from ._intrinsics import maxnum32

__all__ = ["multiclass_rows_parallel", "multiclass_rows_serial"]


@njit(fastmath={"nnan", "nsz", "reassoc"}, **_KW)  # type: ignore[untyped-decorator]
def _max_rank(x: Any, i: int, n: int, y: int) -> tuple[float, int]:
    """The row maximum and the rank of class `y` (a NaN row: any values)."""
    xy = x[i, y]
    m = np.float32(-np.inf)
    rank = 0
    for j in range(n):
        v = x[i, j]
        m = maxnum32(m, v)
        rank += (v > xy) | ((v == xy) & (j < y))
    return float(m), rank


@njit(fastmath=_FM, **_KW)  # type: ignore[untyped-decorator]
def _sums(x: Any, i: int, n: int, m: float) -> tuple[float, float, float, float]:
    """``s`` and ``q``: sums of ``e_j`` and ``e_j**2`` over ``x_j < m``, the
    count ``t`` of ``x_j = m``, and ``G``; a NaN in the row makes ``s`` NaN."""
    s = 0.0
    t = 0.0
    g = 0.0
    q = 0.0
    for j in range(n):
        d = np.float64(x[i, j]) - m
        e = exp_nonpos(d)
        s += e if d != 0.0 else 0.0
        t += 1.0 if d == 0.0 else 0.0
        g -= e * (d if d > _CUT else 0.0)
        q += e * e if d != 0.0 else 0.0
    return s, t, g, q


@njit(**_KW)  # type: ignore[untyped-decorator]
def _row(
    x: Any,
    labels: Any,
    i: int,
    n: int,
    nll: Any,
    ent: Any,
    brier: Any,
    conf: Any,
    rank: Any,
    status: Any,
) -> None:
    y = labels[i]
    yy = max(y, 0)  # an ignored row is still checked
    m, r = _max_rank(x, i, n, yy)
    if not math.isfinite(m):
        status[i] = 1
        return
    s, t, g, q = _sums(x, i, n, m)
    s = s + (t - 1.0)
    if math.isnan(s) or math.isnan(g):
        status[i] = 1
        return
    status[i] = 0
    big = math.log1p(s)
    one_s = 1.0 + s
    dy = np.float64(x[i, yy]) - m
    nll[i] = big - dy
    ent[i] = big + g / one_s
    if dy == 0.0:  # y is a maximum: 1 - p_y = S / (1 + S)
        miss = s / one_s
        other = q + (t - 1.0)
    else:
        ey = exp_nonpos(dy)
        miss = (1.0 + (s - ey)) / one_s
        other = (q - ey * ey) + t
    brier[i] = miss * miss + other / (one_s * one_s)
    conf[i] = 1.0 / one_s
    rank[i] = r


@njit(**_KW)  # type: ignore[untyped-decorator]
def multiclass_rows_serial(
    x: Any,
    labels: Any,
    nll: Any,
    ent: Any,
    brier: Any,
    conf: Any,
    rank: Any,
    status: Any,
    _nchunks: int,
) -> None:
    rows, n = x.shape
    for i in range(rows):
        _row(x, labels, i, n, nll, ent, brier, conf, rank, status)


@njit(parallel=True, **_KW)  # type: ignore[untyped-decorator]
def multiclass_rows_parallel(
    x: Any,
    labels: Any,
    nll: Any,
    ent: Any,
    brier: Any,
    conf: Any,
    rank: Any,
    status: Any,
    nchunks: int,
) -> None:
    rows, n = x.shape
    for c in prange(nchunks):
        for i in range(c * rows // nchunks, (c + 1) * rows // nchunks):
            _row(x, labels, i, n, nll, ent, brier, conf, rank, status)
