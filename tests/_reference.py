"""mpmath reference implementations (50 digits) and the ulp-error helper.

Run as a script to print the reference values pasted into the tests::

    python tests/_reference.py
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import mpmath
import numpy as np

mpmath.mp.dps = 50
mpf = mpmath.mpf

NEG_INF = mpmath.ninf


def _row(x: Iterable[float]) -> list[mpmath.mpf]:
    return [mpf(float(v)) for v in x]


def _max_and_rest(x: Sequence[float]) -> tuple[mpmath.mpf, mpmath.mpf] | None:
    """``(m, S)`` with ``logsumexp = m + log1p(S)``, S the sum without one max.

    Keeping ``log1p(S)`` apart keeps 50 significant digits of a tiny
    ``log_softmax`` of the top class (``-1e-60`` next to ``m = 200``).
    """
    row = [v for v in _row(x) if v != NEG_INF]
    if not row:
        return None
    m = max(row)
    rest = list(row)
    rest.remove(m)
    return m, mpmath.fsum(mpmath.exp(v - m) for v in rest)


def logsumexp(x: Sequence[float]) -> mpmath.mpf:
    """Exact logsumexp of a row (``-inf`` for an empty or all -inf row)."""
    ms = _max_and_rest(x)
    if ms is None:
        return NEG_INF
    return ms[0] + mpmath.log1p(ms[1])


def log_softmax(x: Sequence[float]) -> list[mpmath.mpf]:
    """Exact log-softmax of a finite-or--inf row."""
    ms = _max_and_rest(x)
    if ms is None:
        return [NEG_INF for _ in x]
    m, s = ms
    return [(v - m) - mpmath.log1p(s) if v != NEG_INF else NEG_INF for v in _row(x)]


def softmax(x: Sequence[float]) -> list[mpmath.mpf]:
    """Exact softmax of a finite-or--inf row (zeros for an all -inf row)."""
    return [mpmath.exp(v) if v != NEG_INF else mpf(0) for v in log_softmax(x)]


def sigmoid(x: float) -> mpmath.mpf:
    """Exact logistic function."""
    return 1 / (1 + mpmath.exp(-mpf(float(x))))


def softplus(x: float) -> mpmath.mpf:
    """Exact log(1 + exp(x))."""
    return mpmath.log1p(mpmath.exp(mpf(float(x))))


def log_sigmoid(x: float) -> mpmath.mpf:
    """Exact log(sigmoid(x))."""
    return -softplus(-float(x))


def logit(p: float) -> mpmath.mpf:
    """Exact log(p / (1 - p)) for p in (0, 1)."""
    q = mpf(float(p))
    return mpmath.log(q / (1 - q))


def ulp_error(actual: object, exact: object, dtype: object = None) -> np.ndarray:
    """``|actual - exact| / ulp(exact)`` in the dtype of `actual`.

    `exact` holds mpmath numbers (or anything ``mpmath.mpf`` takes). The ulp
    of a value is the spacing of the dtype's numbers at the exact value's
    magnitude, with the subnormal spacing as its floor, so an error of one
    unit in the last place of the result reads 1.0. Equal infinities and
    NaN against NaN count as 0; anything else non-finite counts as inf.
    """
    a = np.asarray(actual)
    if str(dtype) == "bfloat16":  # without ml_dtypes: 8 bits of precision
        nmant, minexp, maxexp = 7, -126, 128
    else:
        info = np.finfo(np.dtype(dtype) if dtype is not None else a.dtype)
        nmant, minexp, maxexp = int(info.nmant), int(info.minexp), int(info.maxexp)
    # exact values at or beyond this round to infinity
    overflow = (2 - mpf(2) ** -(nmant + 1)) * mpf(2) ** (maxexp - 1)
    flat_a = a.astype(np.float64).reshape(-1)
    flat_e = np.asarray(exact, dtype=object).reshape(-1)
    out = np.empty(flat_a.shape, dtype=np.float64)
    tiny_spacing = mpf(2) ** (minexp - nmant)
    for i, (av, ev) in enumerate(zip(flat_a, flat_e, strict=True)):
        av = float(av)
        ev = mpf(ev)
        if mpmath.isnan(ev) or math.isnan(av):
            out[i] = 0.0 if (mpmath.isnan(ev) and math.isnan(av)) else math.inf
            continue
        if math.isinf(av) and not mpmath.isinf(ev) and abs(ev) >= overflow:
            out[i] = 0.0 if (av > 0) == (ev > 0) else math.inf
            continue
        if mpmath.isinf(ev) or math.isinf(av):
            out[i] = 0.0 if mpf(av) == ev else math.inf
            continue
        if ev == 0:
            spacing = tiny_spacing
        else:
            e = int(mpmath.floor(mpmath.log(abs(ev), 2)))
            spacing = mpf(2) ** max(e - nmant, minexp - nmant)
            # floor(log2) can be off by one near powers of two at 50 digits
            while spacing * 2**nmant > abs(ev) and spacing > tiny_spacing:
                spacing /= 2
            while spacing * 2 ** (nmant + 1) <= abs(ev):
                spacing *= 2
        out[i] = float(abs(mpf(av) - ev) / spacing)
    return out.reshape(a.shape)


# ---------------------------------------------------------------- losses


def sigmoid_cross_entropy(
    x: float, y: float, pos_weight: float = 1.0, smoothing: float = 0.0
) -> mpmath.mpf:
    """Exact (1 - y') softplus(x) + w y' softplus(-x), y' = y (1 - e) + e / 2."""
    e = mpf(float(smoothing))
    ys = mpf(float(y)) * (1 - e) + e / 2
    return (1 - ys) * softplus(x) + mpf(float(pos_weight)) * ys * softplus(-float(x))


def sigmoid_focal_loss(
    x: float, y: float, alpha: float | None = 0.25, gamma: float = 2.0
) -> mpmath.mpf:
    """Exact torchvision focal loss; ``1 - p_t = (1 - y) sigmoid(x) + y sigmoid(-x)``."""
    yv = mpf(float(y))
    ce = sigmoid_cross_entropy(x, y)
    m = (1 - yv) * sigmoid(x) + yv * sigmoid(-float(x))
    g = mpf(float(gamma))
    loss = ce * (m**g if g != 0 else mpf(1))
    if alpha is not None:
        a = mpf(float(alpha))
        loss = (a * yv + (1 - a) * (1 - yv)) * loss
    return loss


def _clipped_log(p: mpmath.mpf, eps: mpmath.mpf) -> mpmath.mpf:
    p = max(p, eps)
    return mpmath.log(p) if p > 0 else NEG_INF


def categorical_cross_entropy(
    p: Sequence[float], y: Sequence[float], eps: float, smoothing: float = 0.0
) -> mpmath.mpf:
    """Exact -sum y' log(clip(p, eps, 1)), y' = y (1 - e) + e / K."""
    e = mpf(float(smoothing))
    k = len(p)
    total = mpf(0)
    for pv, yv in zip(p, y, strict=True):
        ys = mpf(float(yv)) * (1 - e) + e / k
        if ys != 0:
            total -= ys * _clipped_log(min(mpf(float(pv)), mpf(1)), mpf(float(eps)))
    return total


def binary_cross_entropy(p: float, y: float, eps: float) -> mpmath.mpf:
    """Exact -(y log max(p, eps) + (1 - y) log max(1 - p, eps)), 0 log 0 = 0."""
    pv, yv, ev = mpf(float(p)), mpf(float(y)), mpf(float(eps))
    total = mpf(0)
    if yv != 0:
        total -= yv * _clipped_log(pv, ev)
    if yv != 1:
        # log1p(-p): 1 - p at 50 digits would lose a p below 1e-50
        q = 1 - pv
        log_q = mpmath.log(ev) if q < ev else mpmath.log1p(-pv) if q > 0 else NEG_INF
        total -= (1 - yv) * log_q
    return total


# ------------------------------------------------------- softmax losses


def sparse_cross_entropy(x: Sequence[float], label: int) -> mpmath.mpf:
    """Exact ``-log softmax(x)[label] = log1p(S) - (x_label - m)``.

    ``inf`` where the label's logit is -inf (or the row is all -inf).
    """
    ms = _max_and_rest(x)
    v = mpf(float(x[label]))
    if ms is None or v == NEG_INF:
        return mpmath.inf
    m, s = ms
    return mpmath.log1p(s) - (v - m)


def entropy(x: Sequence[float]) -> mpmath.mpf:
    """Exact Shannon entropy of softmax(x) (0 for an all -inf row).

    ``H = log1p(S) + sum_j e^(d_j) (-d_j) / (1 + S)`` with ``d = x - max``:
    two sums of non-negative terms, no cancellation for a peaked row.
    """
    ms = _max_and_rest(x)
    if ms is None:
        return mpf(0)
    m, s = ms
    t = mpmath.fsum(mpmath.exp(v - m) * (m - v) for v in _row(x) if v != NEG_INF)
    return mpmath.log1p(s) + t / (1 + s)


def kl(xp: Sequence[float], xq: Sequence[float]) -> mpmath.mpf:
    """Exact KL(softmax(xp) || softmax(xq)), as a sum of non-negative terms.

    With ``a = log p``, ``b = log q`` and ``t = b - a``:
    ``KL = sum_{p_j > 0} p_j (expm1(t_j) - t_j) + sum_{p_j = 0} q_j``
    (the same value as ``sum p (a - b)``, as ``sum q = 1``), ``inf`` where
    ``q_j = 0 < p_j``.
    """
    a, b = log_softmax(xp), log_softmax(xq)
    terms = []
    for av, bv in zip(a, b, strict=True):
        if av == NEG_INF:
            if bv != NEG_INF:
                terms.append(mpmath.exp(bv))
            continue
        if bv == NEG_INF:
            return mpmath.inf
        t = bv - av
        terms.append(mpmath.exp(av) * (mpmath.expm1(t) - t))
    return mpmath.fsum(terms)


if __name__ == "__main__":  # pragma: no cover - prints the pasted values
    print("LOG_SOFTMAX_1D", [float(v) for v in log_softmax([0.0, 1.0, 2.0, 3.0])])
    print("SOFTMAX_031", [float(v) for v in softmax([0.0, 3.0, 1.0])])
    print("LSE_CONFIDENT", float(log_softmax([0.0, 29.933606208922594])[1]))
