"""Measure the accuracy of logitkit's losses (and of SciPy, PyTorch, JAX, optax, ...).

The companion of ``benchmarks/accuracy.py``, with its machinery (ulp errors in
double-double, rechecked with ``tests/_reference.py``): every loss is run on
seeded adversarial inputs in float64, float32, float16 and bfloat16 and
compared with 50-digit mpmath references. Low-precision inputs give logitkit a
float32 loss, measured in float32 ulps; every peer is fed the same inputs in
the same dtype and measured in the dtype it returns (TensorFlow and Keras 3
where importable). The script writes
``docs/accuracy-losses.md`` and ``benchmarks/results/accuracy_losses.json``::

    python benchmarks/accuracy_losses.py            # the full run (a few minutes)
    python benchmarks/accuracy_losses.py --quick    # a small smoke run (< 1 min)
    python benchmarks/accuracy_losses.py --quick --out /tmp/acc   # elsewhere
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import scipy.special as sps
import torch
import torch.nn.functional as tnf

import accuracy as acc
import logitkit as lk

try:
    import optax
except ImportError:  # pragma: no cover - optax is optional
    optax = None

try:  # TensorFlow is not a dependency: measured only where installed
    import tensorflow as tf
except ImportError:
    tf = None

try:  # nor is Keras 3 (measured on its default backend where installed)
    import keras
    import ml_dtypes
except ImportError:
    keras = None
    ml_dtypes = None

ref = acc.ref
mpf = mpmath.mpf
ROOT = acc.ROOT
DTYPES = acc.DTYPES
IMPLS = ("logitkit", "scipy", "torch", "jax", "optax", "tensorflow", "keras")
PEERS = IMPLS[1:]
#: Per-example targets, by the dtype the loss is measured in.
TARGET = dict(acc.TARGET)
#: Reduced losses ("mean", "sum") against the exact mean/sum.
TARGET_REDUCED = 2.0
#: Rows longer than this use the fast references (``big_stats``, ``big_kl``),
#: checked against ``_reference`` at every start (``self_check_big_rows``).
BIG_ROW = 100
#: The implementations run (``--impls``).
SELECTED = set(IMPLS)
#: Terms this far (in log space) below the largest non-maximal term of a
#: big row are left out of its reference (with a bound checked every time).
DROP = 130.0
LOSSES = (
    "sparse_softmax_cross_entropy",
    "sparse_softmax_cross_entropy, mean",
    "sparse_softmax_cross_entropy, sum",
    "softmax_cross_entropy",
    "softmax_entropy",
    "kl_divergence",
    "sigmoid_cross_entropy",
    "binary_cross_entropy",
    "categorical_cross_entropy",
)


@dataclass(frozen=True)
class Config:
    """Sizes of one run."""

    rows: dict[int, int]  # classes -> rows (the biggest: 1 row, many labels)
    big_labels: int  # labels (copies of the row) per big row
    kl_rows: dict[int, int]
    elementwise: int  # points per elementwise case and scale


FULL = Config(
    {2: 200, 10: 200, 1000: 20, 128_000: 1},
    8,
    {2: 100, 10: 100, 1000: 8, 128_000: 1},
    1000,
)
QUICK = Config(
    {2: 20, 10: 20, 1000: 2, 6000: 1}, 3, {2: 10, 10: 10, 1000: 2, 6000: 1}, 100
)

log = acc.log
rng_for = acc.rng_for
round_to_dtype = acc.round_to_dtype
fmt = acc.fmt
fmt_scale = acc.fmt_scale


def optional_loss(name: str) -> tuple[Callable[..., Any] | None, str]:
    """``logitkit.<name>`` or, not yet exported, from its private module."""
    f = getattr(lk, name, None)
    if f is not None:
        return f, f"lk.{name}"
    for mod in ("logitkit._sigmoid_losses", "logitkit._prob_losses"):
        try:
            m = importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001 - a module being written may not import
            log(f"{mod} does not import: {e!r}")
            m = None
        f = getattr(m, name, None)
        if f is not None:
            return f, f"{mod}.{name}"
    return None, ""


# ------------------------------------------------------------- big rows


def _unique_rest(row: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Distinct finite values, counts without one copy of the max, the max."""
    finite = row[row != -np.inf]
    values, counts = np.unique(finite, return_counts=True)
    counts[-1] -= 1
    return values, counts, float(values[-1])


def _kept(values: np.ndarray, counts: np.ndarray, m: float) -> np.ndarray:
    """Which distinct values enter a big row's reference.

    A value more than DROP below the largest non-maximal value adds at most
    ``n e^-DROP |d|`` relative to the sum (and to the entropy term): below
    1e-40 for every row of range < 1e10, which is asserted.
    """
    d = values - m
    live = counts > 0
    if not live.any():
        return live
    d2 = float(d[live].max())
    n = float(counts.sum())
    span = max(1.0, float(-d[live].min()))
    assert math.log(n) - DROP + math.log(span) < math.log(1e-40), (n, span)
    return live & (d >= d2 - DROP)


def big_stats(row: np.ndarray) -> tuple[mpmath.mpf, mpmath.mpf, mpmath.mpf]:
    """``(m, log1p(S), entropy)`` of a long row, the ``_reference`` forms.

    One exponential per distinct value (times its count), terms negligible at
    50 digits left out (``_kept``).
    """
    values, counts, mf = _unique_rest(row)
    m = mpf(mf)
    keep = _kept(values, counts, mf)
    s_terms, t_terms = [], []
    for v, c in zip(values[keep], counts[keep], strict=True):
        d = mpf(float(v)) - m
        e = int(c) * mpmath.exp(d)
        s_terms.append(e)
        t_terms.append(-d * e)
    s = mpmath.fsum(s_terms)
    l1p = mpmath.log1p(s)
    return m, l1p, l1p + mpmath.fsum(t_terms) / (1 + s)


def big_cross_entropy(stats: tuple[Any, Any, Any], x_label: float) -> mpmath.mpf:
    m, l1p, _ = stats
    if x_label == -np.inf:
        return mpmath.inf
    return l1p - (mpf(float(x_label)) - m)


def _exps(values: np.ndarray, m: float, keep: np.ndarray) -> dict[float, Any]:
    """``{v: exp(v - m)}`` (mpmath) for the kept distinct values."""
    mm = mpf(m)
    return {float(v): mpmath.exp(mpf(float(v)) - mm) for v in values[keep]}


def big_kl(xp: np.ndarray, xq: np.ndarray, *, drop: bool = True) -> mpmath.mpf:
    """``_reference.kl`` of two long rows, in the direct form.

    ``KL = sum_j e^(dp_j) (dp_j - dq_j) / (1 + Sp) - log1p(Sp) + log1p(Sq)``
    with ``d = x - max``: one exponential per distinct value of each row. The
    sum cancels (by about the relative distance of p and q); it is accepted
    when ``|KL| >= 1e-25 sum |terms|`` (50 digits then leave 20), else the
    row is summed in ``_reference.kl``'s form without cancellation. Pairs with
    ``p_j < e^-DROP / n`` are left out when their bound ``sum p |dp - dq|``
    is below 1e-30 of KL, else everything is summed.
    """
    if np.array_equal(xp, xq):
        return mpf(0)
    vp, cp, mpf_ = _unique_rest(xp)
    vq, cq, mqf = _unique_rest(xq)
    n = float(xp.size)
    pairs, counts = np.unique(np.stack([xp, xq], axis=1), axis=0, return_counts=True)
    with np.errstate(invalid="ignore"):
        log_p = pairs[:, 0] - mpf_  # up to log1p(Sp) <= log(n)
    keep_pairs = (pairs[:, 0] != -np.inf) & (
        log_p >= -DROP - math.log(n) if drop else True
    )
    if np.any(keep_pairs & (pairs[:, 1] == -np.inf)):
        return mpmath.inf
    kp, kq = _kept(vp, cp, mpf_), _kept(vq, cq, mqf)
    # every p of a kept pair is needed, whatever _kept says
    kp |= np.isin(vp, pairs[keep_pairs, 0])
    ep, eq = _exps(vp, mpf_, kp), _exps(vq, mqf, kq)
    sp = mpmath.fsum(int(c) * ep[float(v)] for v, c in zip(vp[kp], cp[kp], strict=True))
    sq = mpmath.fsum(int(c) * eq[float(v)] for v, c in zip(vq[kq], cq[kq], strict=True))
    mp_, mq = mpf(mpf_), mpf(mqf)
    terms = []
    for (x, y), c in zip(pairs[keep_pairs], counts[keep_pairs], strict=True):
        d = (mpf(float(x)) - mp_) - (mpf(float(y)) - mq)
        terms.append(int(c) * ep[float(x)] * d)
    lp, lq = mpmath.log1p(sp), mpmath.log1p(sq)
    body = mpmath.fsum(terms) / (1 + sp)
    total = body - lp + lq
    size = mpmath.fsum(abs(t) for t in terms) / (1 + sp) + abs(lp) + abs(lq)
    if abs(total) < mpf(10) ** -25 * size:
        return ref.kl(list(xp), list(xq))
    if drop and not keep_pairs.all():
        gone = ~keep_pairs & (pairs[:, 0] != -np.inf)
        if gone.any():
            with np.errstate(invalid="ignore"):
                diff = np.abs((pairs[gone, 0] - mpf_) - (pairs[gone, 1] - mqf))
            dmax = float(np.max(diff[np.isfinite(diff)], initial=0.0)) + 1.0
            if np.any(~np.isfinite(diff)):
                return big_kl(xp, xq, drop=False)
            log_bound = (
                math.log(float(counts[gone].sum()))
                + float(log_p[gone].max())
                + math.log(dmax)
            )
            if total <= 0 or log_bound > float(mpmath.log(total)) + math.log(1e-30):
                return big_kl(xp, xq, drop=False)
    return total


def self_check_big_rows() -> None:
    """The long-row paths give what ``_reference`` gives on whole rows."""
    rng = rng_for("losses self-check")
    tol = mpf(10) ** -40
    for scale in (1.0, 30.0, 300.0):
        row = np.round(rng.standard_normal(300) * scale, 1)  # repeated values
        row[::37] = -np.inf
        lst = list(row)
        stats = big_stats(row)
        want_h = ref.entropy(lst)
        assert abs(stats[2] - want_h) <= tol * abs(want_h), (scale, stats, want_h)
        for j in (
            int(np.argmax(row)),
            int(np.argmin(np.where(row > -np.inf, row, 0))),
            5,
        ):
            got, want = (
                big_cross_entropy(stats, row[j]),
                ref.sparse_cross_entropy(lst, j),
            )
            assert abs(got - want) <= tol * abs(want), (scale, j, got, want)
        q = np.round(row + rng.standard_normal(300) * 0.3, 1)
        q[::37] = -np.inf
        q[1::41] = -np.inf
        q[1::41] = np.where(row[1::41] == -np.inf, -np.inf, q[1::41])
        p_only = row.copy()
        p_only[2::29] = -np.inf  # q keeps mass where p has none
        for a, b in ((row, q), (p_only, q), (row, row + 0.0)):
            got, want = big_kl(a, b), ref.kl(list(a), list(b))
            assert got == want or abs(got - want) <= tol * abs(want), (got, want)
            got = big_kl(a, b, drop=False)
            assert got == want or abs(got - want) <= tol * abs(want), (got, want)


# ------------------------------------------------------------------ cases


@dataclass
class LogitBatch:
    """Rows of logits with one label each (big rows repeat, one per label)."""

    x: np.ndarray  # (rows, n) float64, representable in the dtype
    labels: np.ndarray  # (rows,) int64
    first: np.ndarray  # (rows,) bool: not a repeat of the row above


@dataclass
class PairBatch:
    p: np.ndarray  # (rows, n) logits of p
    q: np.ndarray  # (rows, n) logits of q


@dataclass
class Case:
    name: str
    batches: list[Any]


def _labelled(x: np.ndarray, labels: np.ndarray) -> LogitBatch:
    first = np.ones(len(labels), dtype=bool)
    first[1:] = np.any(x[1:] != x[:-1], axis=1)
    return LogitBatch(x, labels.astype(np.int64), first)


def _repeat(row: np.ndarray, labels: Sequence[int]) -> LogitBatch:
    return _labelled(np.repeat(row[None, :], len(labels), axis=0), np.asarray(labels))


def _big_labels(row: np.ndarray, k: int, rng: np.random.Generator) -> list[int]:
    finite = np.flatnonzero(row != -np.inf)
    picks = [int(np.argmax(row)), int(finite[np.argmin(row[finite])])]
    return picks + [int(v) for v in rng.choice(finite, max(0, k - 2), replace=False)]


def _finite_label(row: np.ndarray, rng: np.random.Generator) -> int:
    return int(rng.choice(np.flatnonzero(row != -np.inf)))


def logit_cases(dtype: str, cfg: Config) -> Iterator[Case]:
    """Logits with integer labels (sparse and one-hot CE, entropy, mean/sum)."""
    big = acc.MAXVAL[dtype]
    big_n = max(cfg.rows)
    for scale in acc.SCALES:
        rng = rng_for("losses randn", scale)
        out = []
        for n, nrows in cfg.rows.items():
            x = np.clip(rng.standard_normal((nrows, n)) * scale, -big, big)
            x = round_to_dtype(x, dtype)
            if n == big_n:
                out.append(_repeat(x[0], _big_labels(x[0], cfg.big_labels, rng)))
            else:
                out.append(_labelled(x, rng.integers(0, n, nrows)))
        yield Case(f"randn, scale {fmt_scale(scale)}, random label", out)

    rng = rng_for("losses confident")
    out = []
    for n, nrows in cfg.rows.items():
        rows = nrows if n != big_n else 1
        x = rng.standard_normal((rows, n))
        top = rng.integers(0, n, rows)
        # loss ~ (n - 1) e^-(margin): 1e-13 ... 1e-30
        margin = rng.uniform(30.0, 69.0, rows) + math.log(max(n - 1, 1))
        x[np.arange(rows), top] = x.max(axis=1) + margin
        x = round_to_dtype(x, dtype)
        top = np.argmax(x, axis=1)
        if n == big_n:
            for r in range(rows):
                out.append(_repeat(x[r], [int(top[r])]))
        else:
            out.append(_labelled(x, top))
    yield Case("confident right answer (loss 1e-13 ... 1e-30)", out)

    rng = rng_for("losses argmin")
    out = []
    for scale in acc.SCALES:
        for n in (10, 1000):
            nrows = cfg.rows[n]  # the shapes of the other cases: fewer jit compiles
            x = np.clip(rng.standard_normal((nrows, n)) * scale, -big, big)
            x = round_to_dtype(x, dtype)
            out.append(_labelled(x, np.argmin(x, axis=1)))
    yield Case("label at the minimum (huge loss), scales 1 ... 1e4", out)

    rng = rng_for("losses -inf")
    out = []
    for n in (10, 1000, big_n):
        nrows = 1 if n == big_n else cfg.rows[n]
        x = rng.standard_normal((nrows, n)) * 3
        x[rng.random((nrows, n)) < 0.4] = -np.inf
        keep = rng.integers(0, n, nrows)
        x[np.arange(nrows), keep] = rng.standard_normal(nrows)
        # half of the rows: the label is a confident argmax among masked actions
        conf = np.arange(nrows) % 2 == 1
        x[conf, keep[conf]] = np.nanmax(
            np.where(x[conf] > -np.inf, x[conf], np.nan), axis=1
        ) + rng.uniform(30.0, 60.0, int(conf.sum()))
        x = round_to_dtype(x, dtype)
        if n == big_n:
            out.append(_repeat(x[0], _big_labels(x[0], cfg.big_labels, rng)))
            continue
        labels = np.array(
            [
                int(np.argmax(r)) if c else _finite_label(r, rng)
                for r, c in zip(x, conf, strict=True)
            ]
        )
        out.append(_labelled(x, labels))
    yield Case("-inf logits (masked actions, not at the label)", out)


def kl_cases(dtype: str, cfg: Config) -> Iterator[Case]:
    """Pairs of logit rows for KL(p || q)."""
    big = acc.MAXVAL[dtype]
    big_n = max(cfg.kl_rows)

    def rd(v: np.ndarray) -> np.ndarray:  # -inf stays -inf
        return round_to_dtype(np.where(np.isinf(v), v, np.clip(v, -big, big)), dtype)

    for scale in acc.SCALES:
        rng = rng_for("kl randn", scale)
        out = []
        for n, nrows in cfg.kl_rows.items():
            if n == big_n and scale != 1.0:  # big KL references are slow
                continue
            p = rng.standard_normal((nrows, n)) * scale
            q = rng.standard_normal((nrows, n)) * scale
            out.append(PairBatch(rd(p), rd(q)))
        yield Case(f"independent p, q, scale {fmt_scale(scale)}", out)

    rng = rng_for("kl near")
    out = []
    for delta in (1e-1, 1e-3, 1e-5, 1e-7):
        for n, nrows in cfg.kl_rows.items():
            if n == big_n and delta != 1e-3:
                continue
            p = rd(rng.standard_normal((nrows, n)) * 3)
            q = rd(p + rng.standard_normal((nrows, n)) * delta)
            out.append(PairBatch(p, q))
    yield Case("near-identical (q = p + 1e-1 ... 1e-7 noise)", out)

    rng = rng_for("kl confident")
    out = []
    for n, nrows in cfg.kl_rows.items():
        if n == big_n:
            continue
        p = rng.standard_normal((nrows, n))
        q = rng.standard_normal((nrows, n))
        top = rng.integers(0, n, nrows)
        idx = np.arange(nrows)
        p[idx, top] = p.max(axis=1) + rng.uniform(20.0, 60.0, nrows)
        q[idx, top] = q.max(axis=1) + rng.uniform(20.0, 60.0, nrows)
        out.append(PairBatch(rd(p), rd(q)))
    yield Case("both confident on the same class (tiny KL)", out)

    rng = rng_for("kl -inf")
    out = []
    for n in (10, 1000, big_n):
        nrows = {10: cfg.kl_rows[10], 1000: cfg.kl_rows[1000], big_n: 1}[n]
        p = rng.standard_normal((nrows, n)) * 3
        q = p + rng.standard_normal((nrows, n)) * 0.5
        mask = rng.random((nrows, n)) < 0.4
        mask[:, 0] = False
        p[mask] = -np.inf
        q[mask] = -np.inf
        p_only = rng.random((nrows, n)) < 0.1  # p = 0 where q > 0
        p_only[:, 0] = False
        p[p_only] = -np.inf
        out.append(PairBatch(rd(p), rd(q)))
    yield Case("-inf (shared masked actions; p = 0 < q)", out)

    rng = rng_for("kl equal")
    p = rd(rng.standard_normal((cfg.kl_rows[10], 10)) * 3)
    yield Case("q = p (KL = 0)", [PairBatch(p, p.copy())])


@dataclass
class ElemCase:
    name: str
    x: np.ndarray  # logits or probabilities, float64 representable in dtype
    y: np.ndarray  # 0/1 labels


def sigmoid_cases(dtype: str, cfg: Config) -> list[ElemCase]:
    big = acc.MAXVAL[dtype]
    k = cfg.elementwise
    rng = rng_for("sigmoid ce")
    out = []
    scale = np.asarray(acc.SCALES)[np.arange(k) % len(acc.SCALES)]
    x = round_to_dtype(np.clip(rng.standard_normal(k) * scale, -big, big), dtype)
    out.append(
        ElemCase(
            "randn, scales 1 ... 1e4, random 0/1", x, rng.integers(0, 2, x.size) * 1.0
        )
    )
    mag = rng.uniform(30.0, 69.0, k)
    sign = np.where(rng.random(k) < 0.5, -1.0, 1.0)
    x = round_to_dtype(mag * sign, dtype)
    out.append(ElemCase("confident right (loss 1e-13 ... 1e-30)", x, (x > 0) * 1.0))
    mag = np.minimum(10.0 ** rng.uniform(0.0, 4.0, k), big)
    x = round_to_dtype(mag * sign, dtype)
    out.append(ElemCase("confident wrong (huge loss), |x| 1 ... 1e4", x, (x < 0) * 1.0))
    lo = {"float16": -7.0}.get(dtype, -30.0)
    x = round_to_dtype(10.0 ** rng.uniform(lo, 0.0, k) * sign, dtype)
    out.append(ElemCase("|x| < 1 (to 1e-30)", x, rng.integers(0, 2, k) * 1.0))
    return out


def tiny_normal(dtype: str) -> float:
    if dtype == "bfloat16":
        return float(torch.finfo(torch.bfloat16).tiny)
    return float(np.finfo(np.dtype(dtype)).tiny)


def bce_cases(dtype: str, cfg: Config) -> list[ElemCase]:
    nmant, _ = acc.FORMAT[dtype]
    k = cfg.elementwise
    rng = rng_for("bce")
    tiny = tiny_normal(dtype)

    def clean(v: np.ndarray) -> np.ndarray:
        p = round_to_dtype(v, dtype)
        return np.clip(p, tiny, 1.0)

    out = []
    p = clean(rng.uniform(0.0, 1.0, k))
    out.append(ElemCase("p uniform (0, 1), random 0/1", p, rng.integers(0, 2, k) * 1.0))
    ulp1 = 2.0 ** -(nmant + 1)
    near1 = np.concatenate(
        [
            1 - np.arange(1, 51) * ulp1,
            1 - 10.0 ** rng.uniform(math.log10(ulp1), -1.0, k - 50),
        ]
    )
    near1 = np.minimum(clean(near1), 1 - ulp1)  # k values, all below 1
    out.append(ElemCase("p near 1, label 1 (loss ~ 1 - p)", near1, np.ones(near1.size)))
    out.append(
        ElemCase("p near 1, label 0 (loss -log(1 - p))", near1, np.zeros(near1.size))
    )
    small = clean(10.0 ** rng.uniform(math.log10(tiny), -1.0, k))
    out.append(
        ElemCase(
            "p small (to the smallest normal), label 0 (loss ~ p)", small, np.zeros(k)
        )
    )
    out.append(ElemCase("p small, label 1 (huge loss)", small, np.ones(k)))
    return out


def cce_cases(dtype: str, cfg: Config) -> Iterator[Case]:
    """Rows of probabilities with integer labels (one-hot)."""
    nmant, _ = acc.FORMAT[dtype]
    tiny = tiny_normal(dtype)
    rng = rng_for("cce")
    sizes = {n: r for n, r in cfg.rows.items() if n <= 1000}

    def probs(x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return round_to_dtype(e / e.sum(axis=1, keepdims=True), dtype)

    out = []
    for n, nrows in sizes.items():
        p = probs(rng.standard_normal((nrows, n)) * 3)
        labels = rng.integers(0, n, nrows)
        idx = np.arange(nrows)
        p[idx, labels] = np.maximum(p[idx, labels], tiny)
        out.append(_labelled(p, labels))
    yield Case("softmax of randn rows, random label", out)

    out = []
    ulp1 = 2.0 ** -(nmant + 1)
    for n, nrows in sizes.items():
        p = probs(rng.standard_normal((nrows, n)) * 3)
        labels = rng.integers(0, n, nrows)
        idx = np.arange(nrows)
        top = 1 - np.where(
            rng.random(nrows) < 0.5,
            rng.integers(1, 50, nrows) * ulp1,
            10.0 ** rng.uniform(math.log10(ulp1), -2.0, nrows),
        )
        p[idx, labels] = round_to_dtype(top, dtype)
        out.append(_labelled(p, labels))
    yield Case("confident: p_label near 1 (loss ~ 1 - p)", out)

    out = []
    for n, nrows in sizes.items():
        p = probs(rng.standard_normal((nrows, n)) * 3)
        labels = rng.integers(0, n, nrows)
        small = 10.0 ** rng.uniform(math.log10(tiny), -3.0, nrows)
        p[np.arange(nrows), labels] = np.maximum(round_to_dtype(small, dtype), tiny)
        out.append(_labelled(p, labels))
    yield Case("p_label small (huge loss)", out)


# ------------------------------------------------------- implementations


def _np_pick(ls: np.ndarray, y: np.ndarray) -> np.ndarray:
    out: np.ndarray = -np.take_along_axis(ls, y[:, None], axis=-1)[:, 0]
    return out


@jax.jit
def _jax_sparse_ce(x: jax.Array, y: jax.Array) -> jax.Array:
    return -jnp.take_along_axis(jax.nn.log_softmax(x, axis=-1), y[:, None], axis=-1)[
        :, 0
    ]


@jax.jit
def _jax_dense_ce(x: jax.Array, y: jax.Array) -> jax.Array:
    return -(y * jax.nn.log_softmax(x, axis=-1)).sum(axis=-1)


@jax.jit
def _jax_entropy(x: jax.Array) -> jax.Array:
    return -(jax.nn.softmax(x, axis=-1) * jax.nn.log_softmax(x, axis=-1)).sum(axis=-1)


@jax.jit
def _jax_kl(p: jax.Array, q: jax.Array) -> jax.Array:
    lp, lq = jax.nn.log_softmax(p, axis=-1), jax.nn.log_softmax(q, axis=-1)
    return (jnp.exp(lp) * (lp - lq)).sum(axis=-1)


@jax.jit
def _jax_sigmoid_ce(x: jax.Array, y: jax.Array) -> jax.Array:
    return -(y * jax.nn.log_sigmoid(x) + (1 - y) * jax.nn.log_sigmoid(-x))


@jax.jit
def _jax_bce(p: jax.Array, y: jax.Array) -> jax.Array:
    return -(y * jnp.log(p) + (1 - y) * jnp.log1p(-p))


@jax.jit
def _jax_cce(p: jax.Array, y: jax.Array) -> jax.Array:
    return -(y * jnp.log(p)).sum(axis=-1)


def _torch_entropy(x: torch.Tensor) -> torch.Tensor:
    return torch.distributions.Categorical(logits=x, validate_args=False).entropy()


def _torch_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    lp, lq = tnf.log_softmax(p, dim=-1), tnf.log_softmax(q, dim=-1)
    return tnf.kl_div(lq, lp, reduction="none", log_target=True).sum(dim=-1)


if optax is not None:
    _optax_sparse = jax.jit(optax.softmax_cross_entropy_with_integer_labels)
    _optax_dense = jax.jit(optax.softmax_cross_entropy)
    _optax_sigmoid = jax.jit(optax.sigmoid_binary_cross_entropy)

    @jax.jit
    def _optax_kl(p: jax.Array, q: jax.Array) -> jax.Array:
        lp, lq = jax.nn.log_softmax(p, axis=-1), jax.nn.log_softmax(q, axis=-1)
        return optax.losses.kl_divergence_with_log_targets(lq, lp)


#: What each peer runs (None: no such function).
PEER_CALLS: dict[str, dict[str, str | None]] = {
    "sparse_softmax_cross_entropy": {
        "scipy": "-take(scipy.special.log_softmax(x), y)",
        "torch": "F.cross_entropy(x, y, reduction='none')",
        "jax": "-take(jax.nn.log_softmax(x), y)",
        "optax": "optax.softmax_cross_entropy_with_integer_labels",
        "tensorflow": "tf.nn.sparse_softmax_cross_entropy_with_logits",
        "keras": "keras.losses.sparse_categorical_crossentropy(y, x, from_logits=True)",
    },
    "sparse_softmax_cross_entropy, mean": {
        "scipy": "np.mean of the scipy losses",
        "torch": "F.cross_entropy(x, y, reduction='mean')",
        "jax": "jnp.mean of the jax losses",
        "optax": "jnp.mean of the optax losses",
        "tensorflow": "tf.reduce_mean of the tf losses",
        "keras": "keras.ops.mean of the keras losses",
    },
    "sparse_softmax_cross_entropy, sum": {
        "scipy": "np.sum of the scipy losses",
        "torch": "F.cross_entropy(x, y, reduction='sum')",
        "jax": "jnp.sum of the jax losses",
        "optax": "jnp.sum of the optax losses",
        "tensorflow": "tf.reduce_sum of the tf losses",
        "keras": "keras.ops.sum of the keras losses",
    },
    "softmax_cross_entropy": {
        "scipy": "-(onehot * scipy.special.log_softmax(x)).sum(-1)",
        "torch": "F.cross_entropy(x, onehot, reduction='none')",
        "jax": "-(onehot * jax.nn.log_softmax(x)).sum(-1)",
        "optax": "optax.softmax_cross_entropy",
        "tensorflow": "tf.nn.softmax_cross_entropy_with_logits",
        "keras": "keras.losses.categorical_crossentropy(onehot, x, from_logits=True)",
    },
    "softmax_entropy": {
        "scipy": "scipy.special.entr(scipy.special.softmax(x)).sum(-1)",
        "torch": "torch.distributions.Categorical(logits=x).entropy()",
        "jax": "-(jax.nn.softmax(x) * jax.nn.log_softmax(x)).sum(-1)",
        "optax": None,
        "tensorflow": None,
        "keras": None,
    },
    "kl_divergence": {
        "scipy": "scipy.special.rel_entr(softmax(p), softmax(q)).sum(-1)",
        "torch": "F.kl_div(log_softmax(q), log_softmax(p), log_target=True).sum(-1)",
        "jax": "(softmax(p) * (log_softmax(p) - log_softmax(q))).sum(-1)",
        "optax": "optax.losses.kl_divergence_with_log_targets(log_softmax(q), log_softmax(p))",
        "tensorflow": None,
        "keras": "keras.losses.kl_divergence(keras.ops.softmax(p), keras.ops.softmax(q))",
    },
    "sigmoid_cross_entropy": {
        "scipy": "-(y * log_expit(x) + (1 - y) * log_expit(-x))",
        "torch": "F.binary_cross_entropy_with_logits(x, y, reduction='none')",
        "jax": "-(y * jax.nn.log_sigmoid(x) + (1 - y) * jax.nn.log_sigmoid(-x))",
        "optax": "optax.sigmoid_binary_cross_entropy",
        "tensorflow": "tf.nn.sigmoid_cross_entropy_with_logits",
        "keras": "keras.losses.binary_crossentropy(y[:, None], x[:, None], from_logits=True)",
    },
    "binary_cross_entropy": {
        "scipy": "-(xlogy(y, p) + xlog1py(1 - y, -p))",
        "torch": "F.binary_cross_entropy(p, y, reduction='none')",
        "jax": "-(y * jnp.log(p) + (1 - y) * jnp.log1p(-p))",
        "optax": None,
        "tensorflow": None,
        "keras": "keras.losses.binary_crossentropy(y[:, None], p[:, None])",
    },
    "categorical_cross_entropy": {
        "scipy": "-xlogy(onehot, p).sum(-1)",
        "torch": "F.nll_loss(torch.log(p), y, reduction='none')",
        "jax": "-(onehot * jnp.log(p)).sum(-1)",
        "optax": None,
        "tensorflow": None,
        "keras": "keras.losses.categorical_crossentropy(onehot, p)",
    },
}


def lib_of(impl: str, dtype: str) -> str | None:
    """The array library `impl` is fed (None: no such dtype or not installed)."""
    if impl == "optax":
        return "jax" if optax is not None else None
    if impl == "tensorflow":
        return "tf" if tf is not None else None
    if impl == "keras":
        return "keras" if keras is not None else None
    return acc.library_of(impl, dtype)


def native(lib: str, x: np.ndarray, dtype: str) -> Any:
    if lib == "keras":  # NumPy arrays in the dtype (bfloat16: ml_dtypes), as a user
        if x.dtype.kind == "i":
            return x.copy()
        return x.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
    if x.dtype.kind == "i":
        if lib == "torch":
            return torch.from_numpy(x.copy())
        if lib == "jax":
            return jnp.asarray(x)
        if lib == "tf":  # pragma: no cover - tf is not installed by default
            return tf.constant(x)
        return x
    if lib == "tf":  # pragma: no cover
        return tf.cast(tf.constant(x.astype(np.float64)), dtype)
    return acc.native(lib, x, dtype)


def onehot(labels: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((labels.size, n))
    out[np.arange(labels.size), labels] = 1.0
    return out


def tf_losses() -> dict[str, Callable[..., Any]]:  # pragma: no cover - no tf here
    if tf is None:
        return {}
    sparse = tf.nn.sparse_softmax_cross_entropy_with_logits
    return {
        "sparse_softmax_cross_entropy": lambda x, y: sparse(labels=y, logits=x),
        # 1-d: NumPy cannot take a 0-d bfloat16 TensorFlow tensor
        "sparse_softmax_cross_entropy, mean": lambda x, y: tf.reshape(
            tf.reduce_mean(sparse(labels=y, logits=x)), [-1]
        ),
        "sparse_softmax_cross_entropy, sum": lambda x, y: tf.reshape(
            tf.reduce_sum(sparse(labels=y, logits=x)), [-1]
        ),
        "softmax_cross_entropy": lambda x, y: tf.nn.softmax_cross_entropy_with_logits(
            labels=y, logits=x
        ),
        "sigmoid_cross_entropy": lambda x, y: tf.nn.sigmoid_cross_entropy_with_logits(
            labels=y, logits=x
        ),
    }


def _flat(t: Any) -> Any:
    """A Keras result as a 1-d tensor (values unchanged).

    TensorFlow's ``__array__`` fails on a 0-d bfloat16 tensor (the "mean" and
    "sum" rows): ``object __array__ method not producing an array``.
    """
    return keras.ops.reshape(t, (-1,))


def keras_losses() -> dict[str, Callable[..., Any]]:  # pragma: no cover - no keras
    """Keras 3's public losses, per loss; called as ``f(x_or_p, y)``."""
    if keras is None:
        return {}
    kl = keras.losses

    def sparse(x: Any, y: Any) -> Any:
        return kl.sparse_categorical_crossentropy(y, x, from_logits=True)

    def kl_div(p: Any, q: Any) -> Any:
        sm = keras.ops.softmax
        return kl.kl_divergence(sm(p, axis=-1), sm(q, axis=-1))

    return {
        "sparse_softmax_cross_entropy": lambda x, y: _flat(sparse(x, y)),
        "sparse_softmax_cross_entropy, mean": lambda x, y: _flat(
            keras.ops.mean(sparse(x, y))
        ),
        "sparse_softmax_cross_entropy, sum": lambda x, y: _flat(
            keras.ops.sum(sparse(x, y))
        ),
        "softmax_cross_entropy": lambda x, oh: _flat(
            kl.categorical_crossentropy(oh, x, from_logits=True)
        ),
        "kl_divergence": lambda p, q: _flat(kl_div(p, q)),
        # binary_crossentropy averages over the last axis: give it one of size 1
        "sigmoid_cross_entropy": lambda x, y: _flat(
            kl.binary_crossentropy(y[:, None], x[:, None], from_logits=True)
        ),
        "binary_cross_entropy": lambda p, y: _flat(
            kl.binary_crossentropy(y[:, None], p[:, None])
        ),
        "categorical_cross_entropy": lambda p, oh: _flat(
            kl.categorical_crossentropy(oh, p)
        ),
    }


# ------------------------------------------------------------ measuring


@dataclass
class Cell:
    """One implementation on one (loss, dtype, case)."""

    max: float
    median: float
    over: int  # values over the target
    n: int
    out_dtype: str  # what it returned
    measured_in: str  # the dtype whose ulps count
    note: str = ""
    worst: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass
class Record:
    loss: str
    dtype: str
    case: str
    n: int
    cells: dict[str, Cell | None]


def target_of(loss: str, meas: str) -> float:
    return TARGET_REDUCED if loss.endswith(("mean", "sum")) else TARGET[meas]


def measured_dtype(impl: str, dtype: str, got: str) -> tuple[str, str]:
    """The dtype whose ulps count, and a note when it is not the expected one."""
    low = dtype in ("float16", "bfloat16")
    if impl == "logitkit":
        want = "float32" if low else dtype
        if got == want:
            return want, ""
        return (got if got in DTYPES else want), f"returns {got}, expected {want}"
    if got == dtype:
        return dtype, ""
    if got == "float64" and dtype != "float64":
        return "float32", "returns float64 (rounded to float32)"
    if got in DTYPES:
        return got, f"returns {got}"
    return dtype, f"returns {got} (rounded to {dtype})"


def run_calls(calls: Sequence[Callable[[], Any]]) -> tuple[np.ndarray, str]:
    vals, got = [], ""
    for call in calls:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            y, g = acc.to_float64(call())
        got = got or g
        vals.append(y.reshape(-1))
    return np.concatenate(vals), got


def measure(
    loss: str,
    dtype: str,
    case: str,
    calls: dict[str, list[Callable[[], Any]] | None],
    exact: Sequence[Any],
    describe: Callable[[int], dict[str, Any]],
) -> Record:
    rng = rng_for("losses check", loss, case, dtype)
    exacts: dict[str, acc.Exact] = {}
    cells: dict[str, Cell | None] = {}
    for impl, fns in calls.items():
        if fns is None or impl not in SELECTED:
            cells[impl] = None
            continue
        try:
            y, got = run_calls(fns)
        except Exception as e:  # noqa: BLE001 - a peer without the dtype, say
            msg = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            cells[impl] = Cell(
                math.inf, math.inf, len(exact), len(exact), "", dtype, error=msg
            )
            continue
        meas, note = measured_dtype(impl, dtype, got)
        if got != meas:
            y = round_to_dtype(y, meas)
        if meas not in exacts:
            exacts[meas] = acc.make_exact(list(exact), meas)
        ex = exacts[meas]
        err = acc.ulp_errors(y, ex, meas)
        base = acc.summarise(err, y, ex, meas, describe, got, note, rng)
        over = int(np.sum(~(err <= target_of(loss, meas))))
        cells[impl] = Cell(
            base.max, base.median, over, int(err.size), got, meas, note, base.worst
        )
    return Record(loss, dtype, case, len(exact), cells)


def describe_row(x: np.ndarray, labels: np.ndarray | None, i: int) -> dict[str, Any]:
    row = x[i]
    out: dict[str, Any] = {"n": int(row.size), "row_index": i}
    if labels is not None:
        out["label"] = int(labels[i])
        out["x_label"] = float(row[labels[i]])
    if row.size <= 10:
        out["row"] = [float(v) for v in row]
    else:
        fin = row[row != -np.inf]
        out.update(row_max=float(fin.max()), row_min=float(fin.min()))
        out["n_-inf"] = int(row.size - fin.size)
    return out


def _locate(sizes: Sequence[int], k: int) -> tuple[int, int]:
    for b, s in enumerate(sizes):
        if k < s:
            return b, k
        k -= s
    raise IndexError(k)


def logit_calls(
    loss: str, batches: Sequence[LogitBatch], dtype: str, rows: Sequence[np.ndarray]
) -> dict[str, list[Callable[[], Any]] | None]:
    """Thunks per implementation; `rows` selects the rows measured per batch."""
    tfl = tf_losses()
    out: dict[str, list[Callable[[], Any]] | None] = {}
    red = loss.rsplit(", ", 1)[1] if ", " in loss else "none"
    for impl in IMPLS:
        lib = lib_of(impl, dtype)
        if lib is None or (PEER_CALLS[loss].get(impl) is None and impl != "logitkit"):
            out[impl] = None
            continue
        if impl == "tensorflow" and loss not in tfl:  # pragma: no cover
            out[impl] = None
            continue
        fns = []
        for b, sel in zip(batches, rows, strict=True):
            x = native(lib, b.x[sel], dtype)
            y = native(lib, b.labels[sel], dtype)
            oh = native(lib, onehot(b.labels[sel], b.x.shape[1]), dtype)
            fns.append(_logit_thunk(loss, red, impl, x, y, oh, tfl))
        out[impl] = fns
    return out


def _logit_thunk(
    loss: str, red: str, impl: str, x: Any, y: Any, oh: Any, tfl: dict[str, Any]
) -> Callable[[], Any]:
    base = loss.split(",")[0]
    if impl == "logitkit":
        if base == "softmax_entropy":
            return lambda: lk.softmax_entropy(x)
        if base == "softmax_cross_entropy":
            return lambda: lk.softmax_cross_entropy(x, oh)
        return lambda: lk.sparse_softmax_cross_entropy(x, y, reduction=red)
    if impl in ("tensorflow", "keras"):  # pragma: no cover
        f = tfl[loss] if impl == "tensorflow" else keras_losses()[loss]
        return lambda: f(x, oh if base == "softmax_cross_entropy" else y)
    if base == "softmax_entropy":
        return {
            "scipy": lambda: sps.entr(sps.softmax(x, axis=-1)).sum(axis=-1),
            "torch": lambda: _torch_entropy(x),
            "jax": lambda: _jax_entropy(x),
        }[impl]
    if base == "softmax_cross_entropy":
        return {
            "scipy": lambda: -(oh * sps.log_softmax(x, axis=-1)).sum(axis=-1),
            "torch": lambda: tnf.cross_entropy(x, oh, reduction="none"),
            "jax": lambda: _jax_dense_ce(x, oh),
            "optax": lambda: _optax_dense(x, oh),
        }[impl]
    if impl == "torch":
        return lambda: tnf.cross_entropy(x, y, reduction=red)
    per: Callable[[], Any] = {
        "scipy": lambda: _np_pick(sps.log_softmax(x, axis=-1), y),
        "jax": lambda: _jax_sparse_ce(x, y),
        "optax": lambda: _optax_sparse(x, y),
    }[impl]
    if red == "mean":
        return lambda: per().mean()
    if red == "sum":
        return lambda: per().sum()
    return per


def measure_logits(case: Case, dtype: str, *, probs: bool = False) -> list[Record]:
    """The softmax cross entropies, the entropy and the reductions on one case.

    With ``probs``, the rows are probabilities: categorical_cross_entropy.
    """
    batches: list[LogitBatch] = case.batches
    ce: list[list[Any]] = []  # per batch, per row
    ent: list[list[Any]] = []  # per batch, distinct rows only
    for b in batches:
        ce_b, ent_b = [], []
        stats: Any = None
        for i, row in enumerate(b.x):
            if probs:
                eps = tiny_normal(dtype)
                oh = onehot(b.labels[i : i + 1], row.size)[0]
                ce_b.append(ref.categorical_cross_entropy(list(row), list(oh), eps))
                continue
            if row.size > BIG_ROW:
                if b.first[i]:
                    stats = big_stats(row)
                    ent_b.append(stats[2])
                ce_b.append(big_cross_entropy(stats, row[b.labels[i]]))
            else:
                lst = [float(v) for v in row]
                if b.first[i]:
                    ent_b.append(ref.entropy(lst))
                ce_b.append(ref.sparse_cross_entropy(lst, int(b.labels[i])))
        ce.append(ce_b)
        ent.append(ent_b)
    all_rows = [np.arange(len(b.labels)) for b in batches]
    sizes = [len(b.labels) for b in batches]

    def describe(k: int) -> dict[str, Any]:
        bi, i = _locate(sizes, k)
        return describe_row(batches[bi].x, batches[bi].labels, i)

    flat = [v for c in ce for v in c]
    if probs:
        loss_fn, _ = optional_loss("categorical_cross_entropy")
        calls = cce_calls(batches, dtype, loss_fn)
        return [
            measure(
                "categorical_cross_entropy", dtype, case.name, calls, flat, describe
            )
        ]
    recs = []
    for loss in ("sparse_softmax_cross_entropy", "softmax_cross_entropy"):
        calls = logit_calls(loss, batches, dtype, all_rows)
        recs.append(measure(loss, dtype, case.name, calls, flat, describe))
    # reductions: one value per batch
    for red in ("mean", "sum"):
        loss = f"sparse_softmax_cross_entropy, {red}"
        exact = []
        for c in ce:
            s = mpmath.fsum(c)
            exact.append(s / len(c) if red == "mean" else s)
        calls = logit_calls(loss, batches, dtype, all_rows)
        recs.append(
            measure(
                loss,
                dtype,
                case.name,
                calls,
                exact,
                lambda k: {"batch_shape": list(batches[k].x.shape)},
            )
        )
    firsts = [np.flatnonzero(b.first) for b in batches]
    fsizes = [len(f) for f in firsts]

    def describe_first(k: int) -> dict[str, Any]:
        bi, i = _locate(fsizes, k)
        return describe_row(batches[bi].x, None, int(firsts[bi][i]))

    calls = logit_calls("softmax_entropy", batches, dtype, firsts)
    recs.append(
        measure(
            "softmax_entropy",
            dtype,
            case.name,
            calls,
            [v for e in ent for v in e],
            describe_first,
        )
    )
    return recs


def cce_calls(
    batches: Sequence[LogitBatch], dtype: str, loss_fn: Callable[..., Any] | None
) -> dict[str, list[Callable[[], Any]] | None]:
    out: dict[str, list[Callable[[], Any]] | None] = {}
    kerl = keras_losses()
    for impl in IMPLS:
        lib = lib_of(impl, dtype)
        spec = PEER_CALLS["categorical_cross_entropy"].get(impl)
        if (
            lib is None
            or (impl != "logitkit" and spec is None)
            or (impl == "logitkit" and loss_fn is None)
        ):
            out[impl] = None
            continue
        fns = []
        for b in batches:
            p = native(lib, b.x, dtype)
            y = native(lib, b.labels, dtype)
            oh = native(lib, onehot(b.labels, b.x.shape[1]), dtype)
            fns.append(
                {
                    "logitkit": lambda p=p, oh=oh: loss_fn(p, oh),  # type: ignore[misc]
                    "scipy": lambda p=p, oh=oh: -sps.xlogy(oh, p).sum(axis=-1),
                    "torch": lambda p=p, y=y: tnf.nll_loss(
                        torch.log(p), y, reduction="none"
                    ),
                    "jax": lambda p=p, oh=oh: _jax_cce(p, oh),
                    "keras": lambda p=p, oh=oh: kerl["categorical_cross_entropy"](
                        p, oh
                    ),
                }[impl]
            )
        out[impl] = fns
    return out


def measure_kl(case: Case, dtype: str) -> Record:
    batches: list[PairBatch] = case.batches
    exact = []
    for b in batches:
        for rp, rq in zip(b.p, b.q, strict=True):
            if rp.size > BIG_ROW:
                exact.append(big_kl(rp, rq))
            else:
                exact.append(ref.kl([float(v) for v in rp], [float(v) for v in rq]))
    sizes = [b.p.shape[0] for b in batches]

    def describe(k: int) -> dict[str, Any]:
        bi, i = _locate(sizes, k)
        b = batches[bi]
        out = describe_row(b.p, None, i)
        if b.p.shape[1] <= 10:
            out["q"] = [float(v) for v in b.q[i]]
        return out

    calls: dict[str, list[Callable[[], Any]] | None] = {}
    kerl = keras_losses()
    for impl in IMPLS:
        lib = lib_of(impl, dtype)
        if lib is None or (
            impl != "logitkit" and PEER_CALLS["kl_divergence"].get(impl) is None
        ):
            calls[impl] = None
            continue
        fns = []
        for b in batches:
            p, q = native(lib, b.p, dtype), native(lib, b.q, dtype)
            fns.append(
                {
                    "logitkit": lambda p=p, q=q: lk.kl_divergence(p, q),
                    "scipy": lambda p=p, q=q: sps.rel_entr(
                        sps.softmax(p, axis=-1), sps.softmax(q, axis=-1)
                    ).sum(axis=-1),
                    "torch": lambda p=p, q=q: _torch_kl(p, q),
                    "jax": lambda p=p, q=q: _jax_kl(p, q),
                    "optax": lambda p=p, q=q: _optax_kl(p, q),
                    "keras": lambda p=p, q=q: kerl["kl_divergence"](p, q),
                }[impl]
            )
        calls[impl] = fns
    return measure("kl_divergence", dtype, case.name, calls, exact, describe)


def _elem_thunk(
    loss: str,
    impl: str,
    x: Any,
    y: Any,
    loss_fn: Callable[..., Any] | None,
    tfl: dict[str, Any],
) -> Callable[[], Any]:
    if impl == "logitkit":
        assert loss_fn is not None
        return lambda: loss_fn(x, y)
    if impl == "tensorflow":  # pragma: no cover
        return lambda: tfl[loss](x, y)
    if impl == "keras":  # pragma: no cover
        f = keras_losses()[loss]
        return lambda: f(x, y)
    if loss == "sigmoid_cross_entropy":
        return {
            "scipy": lambda: -(y * sps.log_expit(x) + (1 - y) * sps.log_expit(-x)),
            "torch": lambda: tnf.binary_cross_entropy_with_logits(
                x, y, reduction="none"
            ),
            "jax": lambda: _jax_sigmoid_ce(x, y),
            "optax": lambda: _optax_sigmoid(x, y),
        }[impl]
    return {
        "scipy": lambda: -(sps.xlogy(y, x) + sps.xlog1py(1 - y, -x)),
        "torch": lambda: tnf.binary_cross_entropy(x, y, reduction="none"),
        "jax": lambda: _jax_bce(x, y),
    }[impl]


def measure_elem(
    loss: str, case: ElemCase, dtype: str, loss_fn: Callable[..., Any] | None
) -> Record:
    if loss == "sigmoid_cross_entropy":
        exact = [
            ref.sigmoid_cross_entropy(float(a), float(b))
            for a, b in zip(case.x, case.y, strict=True)
        ]
    else:
        eps = tiny_normal(dtype)
        exact = [
            ref.binary_cross_entropy(float(a), float(b), eps)
            for a, b in zip(case.x, case.y, strict=True)
        ]

    def describe(k: int) -> dict[str, Any]:
        key = "x" if loss == "sigmoid_cross_entropy" else "p"
        return {key: float(case.x[k]), "label": float(case.y[k])}

    tfl = tf_losses()
    calls: dict[str, list[Callable[[], Any]] | None] = {}
    for impl in IMPLS:
        lib = lib_of(impl, dtype)
        spec = PEER_CALLS[loss].get(impl)
        if (
            lib is None
            or (impl != "logitkit" and spec is None)
            or (impl == "logitkit" and loss_fn is None)
            or (impl == "tensorflow" and loss not in tfl)
        ):
            calls[impl] = None
            continue
        x, y = native(lib, case.x, dtype), native(lib, case.y, dtype)
        calls[impl] = [_elem_thunk(loss, impl, x, y, loss_fn, tfl)]
    return measure(loss, dtype, case.name, calls, exact, describe)


# ------------------------------------------------------------ reporting


def summary(
    records: Sequence[Record],
) -> dict[tuple[str, str], dict[str, dict[str, Any] | None]]:
    """Per (loss, dtype) and implementation: max error, values over target, count."""
    out: dict[tuple[str, str], dict[str, dict[str, Any] | None]] = {}
    for r in records:
        row = out.setdefault((r.loss, r.dtype), {})
        for impl, c in r.cells.items():
            if c is None:
                row.setdefault(impl, None)
                continue
            s = row.get(impl) or {
                "max": 0.0,
                "over": 0,
                "n": 0,
                "measured_in": set(),
                "error": "",
            }
            s["max"] = max(s["max"], c.max)
            s["over"] += c.over
            s["n"] += c.n
            s["measured_in"].add(c.measured_in)
            s["error"] = s["error"] or c.error
            row[impl] = s
    return out


def cell_text(
    s: dict[str, Any] | None, target: float | None = None, bold: bool = False
) -> str:
    if s is None:
        return "—"
    if s.get("error"):
        return "error"
    txt = f"{fmt(s['max'])} ({s['over']}/{s['n']})"
    return (
        f"**{txt}**" if bold and target is not None and not s["max"] <= target else txt
    )


def peer_failures(records: Sequence[Record], limit: int = 60) -> list[dict[str, Any]]:
    """The worst failure of each (loss, peer) (at its worst dtype), by loss."""
    best: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in records:
        for impl in PEERS:
            c = r.cells.get(impl)
            if c is None or c.error or c.max <= target_of(r.loss, c.measured_in):
                continue
            key = (r.loss, impl, r.dtype)
            if key not in best or c.max > best[key]["max"]:
                best[key] = {
                    "loss": r.loss,
                    "impl": impl,
                    "dtype": r.dtype,
                    "case": r.case,
                    "max": c.max,
                    "measured_in": c.measured_in,
                    "worst": c.worst,
                }
    items = sorted(
        best.values(), key=lambda d: (-d["max"], LOSSES.index(d["loss"]), d["impl"])
    )
    # one line per (loss, peer): its worst dtype
    seen: set[tuple[str, str]] = set()
    out = []
    for d in items:
        if (d["loss"], d["impl"]) in seen:
            continue
        seen.add((d["loss"], d["impl"]))
        out.append(d)
    out.sort(key=lambda d: (LOSSES.index(d["loss"]), PEERS.index(d["impl"])))
    return out[:limit]


def misses(records: Sequence[Record]) -> list[Record]:
    out = []
    for r in records:
        c = r.cells["logitkit"]
        if c is not None and (c.error or not c.max <= target_of(r.loss, c.measured_in)):
            out.append(r)
    return out


def short(v: Any) -> str:
    return json.dumps(acc.jsonable(v)).replace("|", "\\|")


def keras_notes() -> str:
    """What Keras does differently (for "Why, mostly"); empty without Keras."""
    if keras is None:
        return ""
    eps = keras.backend.epsilon()
    out = (
        f" Keras' losses from probabilities clip them to `[{eps:g}, 1 - {eps:g}]` "
        "(`keras.backend.epsilon()`, a global setting; 1 - eps rounds to 1 in "
        "float16/bfloat16): in `binary_crossentropy` a p below "
        f"{eps:g} counts as {eps:g}, so the loss is at most `-log({eps:g})` ~ "
        f"{-math.log(eps):.1f} (p small, label 1) and ~{eps:g} or 0 instead of ~p "
        "(p small, label 0), and in float32/float64 a 1 - p below eps counts as "
        "eps (p near 1); it also takes `log(1 - p)`, not `log1p(-p)`; "
        "`categorical_crossentropy` first divides p by its row "
        "sum (the rows of the 'confident' case are not normalised: p_label is "
        "set near 1 in a softmax row) and then clips (p_label near 1 becomes "
        "1 - eps: a loss of ~eps, or 0); `kl_divergence` clips both "
        f"distributions to `[{eps:g}, 1]`, so a probability below {eps:g} (a "
        f"masked action, p = 0 < q, a confident row) counts as {eps:g}, and "
        "it sums `p log(p / q)`, which cancels for near-identical p, q. The "
        "references are the exact, unclipped losses: these are real differences "
        "of Keras, kept."
    )
    if keras.backend.backend() == "tensorflow":
        out += (
            " On the tensorflow backend `from_logits=True` calls the `tf.nn` "
            "losses of the tensorflow column; `keras.ops.mean` (unlike "
            "`tf.reduce_mean`) accumulates float16/bfloat16 in float32."
        )
    return out


def render(
    records: Sequence[Record],
    info: dict[str, str],
    cfg: Config,
    quick: bool,
    command: str,
    sources: dict[str, str],
) -> str:
    big_n = max(cfg.rows)
    lines = [
        "# Accuracy of logitkit's losses",
        "",
        "<!-- generated by benchmarks/accuracy_losses.py; do not edit by hand -->",
        "",
        (
            "The companion of [accuracy.md](accuracy.md) (the softmax family and the "
            "activations), measured the same way."
        ),
        "",
    ]
    if quick:
        lines += [
            "> **Quick run** (`--quick`): reduced sample sizes; regenerate without",
            "> `--quick` for the published numbers.",
            "",
        ]
    tf_line = (
        "TensorFlow is measured where it is importable; **it is not installed in this run**."
        if tf is None
        else "TensorFlow is measured (eager)."
    )
    keras_line = (
        " Keras 3 is measured where it is importable; **it is not installed in this "
        "run**."
        if keras is None
        else f" Keras {keras.__version__} is measured on its "
        f"{keras.backend.backend()} backend (eager), through its public "
        "`keras.losses` functions, fed NumPy arrays in the input dtype "
        "(bfloat16: `ml_dtypes.bfloat16`)."
    )
    lines += [
        (
            "Every loss is evaluated on seeded adversarial inputs in float64, float32, "
            "float16 and bfloat16 and compared with 50-digit mpmath references "
            "(`tests/_reference.py`: `sparse_cross_entropy`, `entropy`, `kl`, "
            "`sigmoid_cross_entropy`, `binary_cross_entropy`, "
            "`categorical_cross_entropy`; all in forms without cancellation, such as "
            "`log1p(S) - (x_y - max)` and `KL = sum p (expm1(t) - t) + q(p = 0)`, "
            "`t = log q - log p`). Errors are `|result - exact| / ulp` as in "
            "accuracy.md (double-double, rechecked with `_reference.ulp_error`); a 0 "
            "more than 1 ulp from a non-zero exact loss (the lost `1e-13` of a "
            "confident right answer) or a NaN/inf for a finite loss counts **inf**. "
            "logitkit returns a float32 loss for float16/bfloat16 input, measured in "
            "float32 ulps; every peer gets the same values in the same dtype and is "
            "measured in the dtype it returns (a peer returning float64 for float16 "
            "input is rounded to float32 and measured there). Targets: "
            "0.51 ulp (float32, float16, bfloat16), 1 ulp (float64) per example; "
            f'{TARGET_REDUCED:g} ulp for `reduction="mean"`/`"sum"` against the '
            "exact mean/sum of the exact losses (one value per batch). "
            f"Rows of {big_n:,} classes: one row per case and scale, with several labels "
            "(copies of the row: the argmax, the argmin, random classes). References "
            f"of rows longer than {BIG_ROW} classes use one exponential per distinct "
            "value (times its count) and the direct form of KL (accepted where it "
            "cancels by less than 1e-25, else the form without cancellation), and "
            f"leave out terms more than {DROP:g} below the largest non-maximal term "
            "(bounded below 1e-40 relative, checked per row; for KL below 1e-30 or the "
            "row is summed in full); they are checked against `_reference` at every "
            "start (`self_check_big_rows`). Peers measured beside logitkit: the same "
            "values, so a peer's failure at one input is a failure of that peer. "
            "JAX runs with `jax_enable_x64`, under `jax.jit`. "
            "float16 goes through NumPy (logitkit, SciPy), PyTorch and JAX; bfloat16 "
            "through PyTorch (logitkit, torch) and JAX (jax, optax). "
            + tf_line
            + keras_line
        ),
        "",
        "## Machine",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", "logitkit functions measured:", ""]
    lines += [
        f"- {k}: `{v}`" if v else f"- {k}: **not available in this run**"
        for k, v in sources.items()
    ]
    lines += ["", "Regenerate with:", "", "```", command, "```", ""]

    summ = summary(records)
    absent = {"tensorflow": tf is None, "keras": keras is None}
    impls = [i for i in IMPLS if not absent.get(i, False)]
    lines += [
        "## Summary",
        "",
        (
            "Per loss and input dtype: the largest error (ulps) over every case, and "
            "(in brackets) how many values are over the target / how many were "
            "measured. **Bold**: logitkit misses its target. — : no such function "
            "or dtype in that library."
        ),
        "",
        "| loss | dtype | " + " | ".join(impls) + " |",
        "|---|---|" + "--:|" * len(impls),
    ]
    for loss in LOSSES:
        for dtype in DTYPES:
            row = summ.get((loss, dtype))
            if row is None:
                continue
            lkc = row.get("logitkit")
            tgt = None
            if lkc is not None:
                tgt = target_of(loss, next(iter(lkc["measured_in"])))
            cells = [cell_text(row.get("logitkit"), tgt, bold=True)]
            cells += [cell_text(row.get(p)) for p in impls[1:]]
            lines.append(f"| {loss} | {dtype} | " + " | ".join(cells) + " |")
    lines.append("")

    fails = peer_failures(records)
    lines += [
        "## Worst peer failures",
        "",
        "The worst value of each peer and loss over the target (its worst dtype).",
        "",
        "| loss | peer | dtype | case | ulps | input | exact | got |",
        "|---|---|---|---|--:|---|--:|--:|",
    ]
    for d in fails:
        w = dict(d["worst"])
        exact, got = w.pop("exact", ""), w.pop("got", "")
        lines.append(
            f"| {d['loss']} | {d['impl']} | {d['dtype']} | {d['case']} | {fmt(d['max'])} | "
            f"`{short(w)}` | {exact} | {got!r} |"
        )
    lines.append("")

    lines += [
        (
            "Why, mostly: `logsumexp(x) - x[y]` (or `log_softmax` picked at the "
            "label) rounds a loss below half an ulp of the logsumexp to 0 (the "
            "confident right answer) and loses digits wherever the loss is small "
            "next to the logits; `0 * -inf = NaN` in `-(onehot * log_softmax(x))` "
            "and `softmax * log_softmax` once a logit is -inf (a masked action) or a "
            "probability is 0; `exp` underflows in `p * (log p - log q)` long before "
            "the result does; sums in float16 overflow. "
            "`torch.nn.functional.binary_cross_entropy` clamps the log at -100 "
            "(documented): a loss above 100 comes back as 100." + keras_notes()
        ),
        "",
    ]
    missed = misses(records)
    lines += ["## logitkit against its targets", ""]
    if not missed:
        lines.append("Every logitkit value above meets its target.")
    else:
        lines += [
            f"{len(missed)} logitkit row(s) miss the target:",
            "",
            "| loss | dtype | case | max ulp | over | target | worst input |",
            "|---|---|---|--:|--:|--:|---|",
        ]
        for r in missed:
            c = r.cells["logitkit"]
            assert c is not None
            lines.append(
                f"| {r.loss} | {r.dtype} | {r.case} | {fmt(c.max)} | {c.over}/{c.n} | "
                f"{target_of(r.loss, c.measured_in)} | `{short(c.worst) if not c.error else c.error}` |"
            )
    lines.append("")

    lines += [
        "## Per case",
        "",
        "Largest error (values over the target / measured) per case.",
    ]
    for loss in LOSSES:
        recs = [r for r in records if r.loss == loss]
        if not recs:
            continue
        calls = PEER_CALLS[loss]
        peers = ", ".join(f"{p} = `{calls[p]}`" for p in impls[1:] if calls.get(p))
        lines += [
            "",
            f"### {loss}",
            "",
            f"Peers: {peers}.",
            "",
            "| case | dtype | " + " | ".join(impls) + " |",
            "|---|---|" + "--:|" * len(impls),
        ]
        for r in recs:
            cells = []
            for impl in impls:
                c = r.cells.get(impl)
                if c is None:
                    cells.append("—")
                elif c.error:
                    cells.append("error")
                else:
                    txt = f"{fmt(c.max)} ({c.over}/{c.n})"
                    if impl == "logitkit" and not c.max <= target_of(
                        loss, c.measured_in
                    ):
                        txt = f"**{txt}**"
                    elif impl != "logitkit" and c.measured_in != r.dtype:
                        txt += "†"
                    cells.append(txt)
            lines.append(f"| {r.case} | {r.dtype} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "† measured in the ulps of the dtype the peer returned (wider than its input).",
        "",
    ]
    errors = sorted(
        {
            (r.loss, i, c.error)
            for r in records
            for i, c in r.cells.items()
            if c is not None and c.error
        }
    )
    if errors:
        lines += ["Calls that raised:", ""]
        lines += [f"- {loss}, {impl}: `{e}`" for loss, impl, e in errors]
        lines.append("")
    return "\n".join(lines)


def to_json(r: Record) -> dict[str, Any]:
    return {
        "loss": r.loss,
        "dtype": r.dtype,
        "case": r.case,
        "n": r.n,
        "impls": {
            k: None
            if c is None
            else {
                "max": c.max,
                "median": c.median,
                "over_target": c.over,
                "n": c.n,
                "out_dtype": c.out_dtype,
                "measured_in": c.measured_in,
                "target": target_of(r.loss, c.measured_in),
                "note": c.note,
                "error": c.error,
                "worst": c.worst,
            }
            for k, c in r.cells.items()
        },
    }


def run(cfg: Config) -> tuple[list[Record], dict[str, str]]:
    sig, sig_name = optional_loss("sigmoid_cross_entropy")
    bce, bce_name = optional_loss("binary_cross_entropy")
    _, cce_name = optional_loss("categorical_cross_entropy")
    sources = {
        "sparse_softmax_cross_entropy": "lk.sparse_softmax_cross_entropy",
        "softmax_cross_entropy": "lk.softmax_cross_entropy",
        "softmax_entropy": "lk.softmax_entropy",
        "kl_divergence": "lk.kl_divergence",
        "sigmoid_cross_entropy": sig_name,
        "binary_cross_entropy": bce_name,
        "categorical_cross_entropy": cce_name,
    }
    records: list[Record] = []
    for dtype in DTYPES:
        t0 = time.perf_counter()
        for case in logit_cases(dtype, cfg):
            records += measure_logits(case, dtype)
        t1 = time.perf_counter()
        for case in kl_cases(dtype, cfg):
            records.append(measure_kl(case, dtype))
        t2 = time.perf_counter()
        for ec in sigmoid_cases(dtype, cfg):
            records.append(measure_elem("sigmoid_cross_entropy", ec, dtype, sig))
        for ec in bce_cases(dtype, cfg):
            records.append(measure_elem("binary_cross_entropy", ec, dtype, bce))
        for case in cce_cases(dtype, cfg):
            records += measure_logits(case, dtype, probs=True)
        log(
            f"{dtype}: {time.perf_counter() - t0:.1f} s "
            f"(softmax losses {t1 - t0:.1f}, kl {t2 - t1:.1f})"
        )
    # drop losses logitkit does not have (yet) unless a peer was measured
    case_rank: dict[tuple[str, str], int] = {}
    for r in records:
        case_rank.setdefault((r.loss, r.case), len(case_rank))
    records.sort(
        key=lambda r: (
            LOSSES.index(r.loss),
            case_rank[r.loss, r.case],
            DTYPES.index(r.dtype),
        )
    )
    return records, sources


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small, fast run")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write accuracy-losses.md and accuracy_losses.json into this directory "
        "(default: docs/ and benchmarks/results/)",
    )
    parser.add_argument(
        "--impls",
        default=",".join(IMPLS),
        help="comma-separated implementations to run (default: all installed)",
    )
    args = parser.parse_args(argv)
    SELECTED.clear()
    SELECTED.update(args.impls.split(","))
    if not set(IMPLS) >= SELECTED:
        parser.error(f"--impls: unknown {sorted(SELECTED - set(IMPLS))}")
    cfg = QUICK if args.quick else FULL
    md = ROOT / "docs" / "accuracy-losses.md"
    js = ROOT / "benchmarks" / "results" / "accuracy_losses.json"
    if args.out is not None:
        md, js = args.out / "accuracy-losses.md", args.out / "accuracy_losses.json"
    start = time.perf_counter()
    self_check_big_rows()
    records, sources = run(cfg)
    info = acc.machine()
    info["optax"] = getattr(optax, "__version__", "not installed")
    info["tensorflow"] = getattr(tf, "__version__", "not installed")
    info["keras"] = (
        "not installed"
        if keras is None
        else f"{keras.__version__} ({keras.backend.backend()} backend)"
    )
    command = "python benchmarks/accuracy_losses.py" + (
        " --quick" if args.quick else ""
    )
    if set(IMPLS) != SELECTED:
        command += f" --impls {args.impls}"
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(
        render(records, info, cfg, args.quick, command, sources), encoding="utf-8"
    )
    runtime = time.perf_counter() - start
    summ = summary(records)
    payload = {
        "command": command,
        "quick": args.quick,
        "seed": acc.SEED,
        "machine": info,
        "runtime_s": round(runtime, 1),
        "targets": {**TARGET, "mean/sum": TARGET_REDUCED},
        "sources": sources,
        "summary": [
            {
                "loss": loss,
                "dtype": dtype,
                "impls": {
                    k: None
                    if s is None
                    else {**s, "measured_in": sorted(s["measured_in"])}
                    for k, s in row.items()
                },
            }
            for (loss, dtype), row in summ.items()
        ],
        "peer_failures": peer_failures(records),
        "results": [to_json(r) for r in records],
        "misses": [
            {
                "loss": r.loss,
                "dtype": r.dtype,
                "case": r.case,
                "max": r.cells["logitkit"].max,  # type: ignore[union-attr]
                "worst": r.cells["logitkit"].worst,  # type: ignore[union-attr]
                "error": r.cells["logitkit"].error,  # type: ignore[union-attr]
            }
            for r in misses(records)
        ],
    }
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_text(json.dumps(acc.jsonable(payload), indent=1) + "\n")
    log(f"wrote {md} and {js} in {runtime:.1f} s")
    for m in payload["misses"]:
        log(
            f"MISS {m['loss']} {m['dtype']} {m['case']}: {fmt(m['max'])} ulp {m['worst']} {m['error']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
