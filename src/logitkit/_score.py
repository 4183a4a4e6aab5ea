r"""The metrics of ``logitkit score``, accumulated exactly over chunks of rows.

Each chunk of rows goes through logitkit's per-example losses (correctly
rounded in the loss dtype: float32 for float32 and narrower predictions,
float64 for float64 ones); every sum over examples is then **exact**
(:class:`ExactSums`: integers in units of ``2**-1126``, the finest binade a
float64 can hold) and counts are integers, so that a metric is the correctly
rounded value of the exact sum of the per-example values divided by the exact
count, whatever the chunk size or the order of the chunks.

Multi-class metrics (``N`` scored rows, ``p = softmax(logits)`` or the given
probabilities, ``y`` the true class):

- ``nll_sum`` :math:`\sum_i \ell_i` and ``nll_mean`` :math:`\frac1N\sum_i\ell_i`
  with :math:`\ell_i = -\log p_{i,y_i}` (from logits:
  :func:`~logitkit.sparse_softmax_cross_entropy`; from probabilities:
  :func:`~logitkit.categorical_cross_entropy`, clipped at the dtype's smallest
  normal); ``perplexity`` :math:`e^{\text{nll\_mean}}` (null on overflow);
- ``accuracy``: the share of rows whose first arg-max is ``y``;
- ``top_k_accuracy[k]``: the share of rows with ``rank(y) < k``, where the rank
  counts the classes scored above ``y`` plus the tied ones of a lower index
  (so that top-1 is ``accuracy``);
- ``brier``: :math:`\frac1N\sum_i\sum_c (p_{ic} - [c = y_i])^2`;
- ``ece``: :math:`\sum_b \frac{n_b}{N}\,|\mathrm{acc}_b - \mathrm{conf}_b|`
  over ``bins`` equal-width bins of the top probability
  :math:`\max_c p_{ic}` (bin ``b`` holds ``[b/B, (b+1)/B)``, the last one
  also 1), ``acc_b`` the accuracy and ``conf_b`` the mean top probability
  of its rows;
- ``entropy_mean``: :math:`\frac1N\sum_i H(p_i)` (from logits:
  :func:`~logitkit.softmax_entropy`).

Multi-label metrics (``E`` scored elements, labels 0/1, one independent
sigmoid per label): ``bce_sum`` and ``bce_mean`` (over all elements, from
logits :func:`~logitkit.sigmoid_cross_entropy`, from probabilities
:func:`~logitkit.binary_cross_entropy`), ``bce_macro`` (the mean over labels
of each label's mean), ``accuracy_micro`` (over all elements, predicted
positive where ``logit > 0``, i.e. ``p > 0.5``), ``accuracy_macro`` (the mean
of the labels' accuracies), ``subset_accuracy`` (rows with every label right).

JSON schema (``logitkit.score/1``; keys are stable, values that have no
meaning, such as a mean over nothing, are ``null``)::

    {
      "schema": "logitkit.score/1",
      "logitkit": str,                # version
      "predictions": str, "labels": str | null,
      "task": "multiclass" | "multilabel",
      "input": "logits" | "probs",
      "rows": int,                    # rows read
      "classes": int,                 # classes (labels for multilabel)
      "scored": int,                  # rows (multilabel: elements) scored
      "ignored": int,                 # rows (elements) with --ignore-index
      "metrics": {
        # multiclass
        "nll_sum", "nll_mean", "perplexity", "accuracy",
        "top_k_accuracy": {"<k>": float, ...},
        "brier", "ece", "entropy_mean",
        # multilabel
        "bce_sum", "bce_mean", "bce_macro",
        "accuracy_micro", "accuracy_macro", "subset_accuracy"
      },
      "calibration": [                # multiclass only, one per bin
        {"lower": float, "upper": float, "count": int,
         "confidence": float | null, "accuracy": float | null}, ...
      ],
      "per_class": [                  # with --per-class, else null
        {"class": int, "count": int, "accuracy": float | null,
         "nll_mean": float | null}, ...          # multiclass
        {"class": int, "count": int, "positives": int,
         "accuracy": float | null, "bce_mean": float | null}, ...  # multilabel
      ] | null
    }
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ._cross_entropy import sparse_softmax_cross_entropy
from ._divergence import softmax_entropy
from ._one_hot import one_hot
from ._prob_losses import binary_cross_entropy, categorical_cross_entropy
from ._sigmoid_losses import sigmoid_cross_entropy

__all__ = [
    "SCHEMA",
    "ExactSums",
    "MulticlassScorer",
    "MultilabelScorer",
    "RowError",
    "ScoreOptions",
]

SCHEMA = "logitkit.score/1"

# A float64 x is m * 2**e with m in [0.5, 1) (np.frexp), i.e. the integer
# M = m * 2**53 times 2**(e - 53); e - 53 runs from -1126 (2**-1074) to 971.
_E_MIN = -1126
_E_SPAN = 971 - _E_MIN + 1
# M splits into hi * 2**27 + lo with |hi| < 2**26, |lo| < 2**27: float64 sums
# of 2**26 of them (np.bincount) are exact integers.
_BLOCK = 1 << 26
_DENSE_KEYS = 1 << 16
# The compiled path: up to this many groups (2046 int64 pairs each), and
# 2**36 values between two folds (its accumulators cannot overflow).
_KERNEL_GROUPS = 64
_KERNEL_PENDING = 1 << 36

FloatArray = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.integer[Any]]


class ExactSums:
    """Exact sums of float64 values in `n` groups, chunk by chunk.

    Each total is a Python integer in units of ``2**-1126``: adding is exact,
    so the totals do not depend on how the values are split into chunks or on
    their order. Values are decomposed with :func:`numpy.frexp` and summed by
    binade with :func:`numpy.bincount` in float64 on integers small enough
    to be exact; only the few non-empty binades go through Python integers.

    Parameters
    ----------
    n : int, optional
        The number of groups. Default: 1.

    Examples
    --------
    >>> import numpy as np
    >>> s = ExactSums()
    >>> s.add(np.asarray([1e16, 1.0, -1e16]))
    >>> s.value(), sum([1e16, 1.0, -1e16])
    (1.0, 0.0)
    """

    def __init__(self, n: int = 1) -> None:
        self._totals = [0] * n
        # Pending sums of the compiled path (logitkit._native): int64
        # accumulators by (group, binade), folded into _totals by _flush().
        self._acc: IntArray | None = None
        self._pending = 0

    def __len__(self) -> int:
        return len(self._totals)

    def add(self, values: Any, groups: Any = None) -> None:
        """Add finite `values` (any real dtype), each to its group in `groups`."""
        v = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        g = None if groups is None else np.asarray(groups, dtype=np.int64).reshape(-1)
        if g is not None and g.shape != v.shape:
            msg = f"groups of shape {g.shape} for values of shape {v.shape}"
            raise ValueError(msg)
        if self._add_compiled(v, g):
            return
        for start in range(0, v.size, _BLOCK):
            stop = start + _BLOCK
            self._add_block(v[start:stop], None if g is None else g[start:stop])

    def _add_compiled(self, v: FloatArray, g: IntArray | None) -> bool:
        """Add by the compiled kernel; False where it is not available."""
        if len(self._totals) > _KERNEL_GROUPS or v.size > _KERNEL_PENDING:
            return False
        from . import _native

        if not _native.available():
            return False
        if self._pending + v.size > _KERNEL_PENDING:
            self._flush()
        if self._acc is None:
            size = len(self._totals) * _native.KEYS
            self._acc = np.zeros((2, size), dtype=np.int64)
        if g is not None and g.size and (g.min() < 0 or g.max() >= len(self._totals)):
            msg = f"groups must lie in [0, {len(self._totals)})"
            raise ValueError(msg)
        if not _native.bin_sums(v, g, self._acc[0], self._acc[1]):
            msg = "ExactSums.add takes finite values only"
            raise ValueError(msg)
        self._pending += v.size
        return True

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a Dask partition's scorer) with its totals folded."""
        self._flush()
        return {**self.__dict__, "_acc": None}

    def _flush(self) -> None:
        """Fold the compiled path's accumulators into the Python totals."""
        acc = self._acc
        if acc is None or self._pending == 0:
            return
        keys = acc.shape[1] // len(self._totals)
        for i in np.flatnonzero((acc[0] != 0) | (acc[1] != 0)).tolist():
            group, k = divmod(i, keys)
            # binade k holds multiples of 2**(k - 1074) = 2**(k + 52) units
            total = (int(acc[0, i]) << 27) + int(acc[1, i])
            self._totals[group] += total << (k + 52)
        acc[...] = 0
        self._pending = 0

    def _add_block(self, v: FloatArray, g: IntArray | None) -> None:
        if not np.isfinite(v).all():
            msg = "ExactSums.add takes finite values only"
            raise ValueError(msg)
        m, e = np.frexp(v)
        big = np.ldexp(m, 53)  # integers, |big| < 2**53
        hi = np.trunc(np.ldexp(big, -27))
        lo = big - np.ldexp(hi, 27)
        key = e.astype(np.int64) - (53 + _E_MIN)
        if g is not None:
            key = key + g * _E_SPAN
        n_keys = len(self._totals) * _E_SPAN
        uniq: IntArray | None = None
        if n_keys <= _DENSE_KEYS:
            index, size = key, n_keys
        else:
            uniq, index = np.unique(key, return_inverse=True)
            size = uniq.size
        s_hi = np.bincount(index, weights=hi, minlength=size)
        s_lo = np.bincount(index, weights=lo, minlength=size)
        for i in np.flatnonzero((s_hi != 0) | (s_lo != 0)).tolist():
            k = i if uniq is None else int(uniq[i])
            group, shift = divmod(k, _E_SPAN)
            self._totals[group] += ((int(s_hi[i]) << 27) + int(s_lo[i])) << shift

    def merge(self, other: ExactSums) -> None:
        """Add the totals of `other` (of the same number of groups)."""
        other._flush()
        for i, t in enumerate(other._totals):
            self._totals[i] += t

    def fraction(self, group: int = 0) -> Fraction:
        """The exact sum of `group`."""
        self._flush()
        return Fraction(self._totals[group], 1 << -_E_MIN)

    def value(self, group: int = 0) -> float:
        """The sum of `group`, correctly rounded."""
        self._flush()
        return self._totals[group] / (1 << -_E_MIN)

    def mean(self, count: int, group: int = 0) -> float | None:
        """The sum of `group` over `count`, correctly rounded; None for 0."""
        if count == 0:
            return None
        self._flush()
        return self._totals[group] / (count << -_E_MIN)


def _ratio(num: int | Fraction, den: int) -> float | None:
    return None if den == 0 else float(Fraction(num) / den)


class RowError(ValueError):
    """Bad data at a row (and column) of the predictions or the labels."""

    def __init__(self, message: str, *, what: str, row: int) -> None:
        super().__init__(message)
        self.what = what  # "predictions" or "labels"
        self.row = row


@dataclass(frozen=True)
class ScoreOptions:
    """What to compute: the options of ``logitkit score``."""

    probs: bool = False
    multilabel: bool = False
    ignore_index: int | None = None
    top_k: Sequence[int] = ()
    bins: int = 15
    per_class: bool = False
    prob_tol: float | None = None  # None: max(1e-4, 2 eps) of the dtype


def _first_bad(bad: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """The (row, column) of the first True of a 2-D mask."""
    flat = int(np.argmax(bad.reshape(-1)))
    return divmod(flat, bad.shape[1]) if bad.ndim == 2 else (flat, 0)


def _as_float(x: npt.NDArray[Any]) -> FloatArray:
    """Predictions as floating point (integers and booleans in float64)."""
    if x.dtype.kind == "f":
        return x
    return x.astype(np.float64)


def _fmt(v: Any) -> str:
    return repr(v.item()) if hasattr(v, "item") else repr(v)


@dataclass
class _Checker:
    opts: ScoreOptions

    def predictions(self, x: FloatArray, row0: int) -> None:
        logits = not self.opts.probs and not self.opts.multilabel
        # -inf logits are masked classes (probability 0); NaN and +inf are not
        # predictions.
        valid = ~np.isnan(x) & (x != np.inf) if logits else np.isfinite(x)
        if not valid.all():
            r, c = _first_bad(~valid)
            what = (
                "finite numbers or -inf (a masked class)"
                if logits
                else "finite numbers"
            )
            msg = f"row {row0 + r}, column {c}: {_fmt(x[r, c])}; expected {what}"
            raise RowError(msg, what="predictions", row=row0 + r)
        if logits:
            empty = np.all(x == -np.inf, axis=1)
            if empty.any():
                r = int(np.argmax(empty))
                msg = (
                    f"row {row0 + r}: every logit is -inf; expected a class to predict"
                )
                raise RowError(msg, what="predictions", row=row0 + r)
            return
        if not self.opts.probs:
            return
        outside = (x < 0) | (x > 1)
        if outside.any():
            r, c = _first_bad(outside)
            msg = (
                f"row {row0 + r}, column {c}: {_fmt(x[r, c])}; "
                "expected a probability in [0, 1]"
            )
            raise RowError(msg, what="predictions", row=row0 + r)
        if self.opts.multilabel:
            return
        tol = self.opts.prob_tol
        if tol is None:
            tol = max(1e-4, 2 * float(np.finfo(x.dtype).eps))
        sums: FloatArray = np.asarray(np.sum(x, axis=1, dtype=np.float64))
        off = np.abs(sums - 1.0) > tol
        if off.any():
            r = int(np.argmax(off))
            msg = (
                f"row {row0 + r}: probabilities sum to {float(sums[r])!r}; "
                f"expected 1 within {tol:g} (--prob-tol)"
            )
            raise RowError(msg, what="predictions", row=row0 + r)

    def integral(self, y: npt.NDArray[Any], row0: int) -> IntArray:
        """`y` as int64, each value an integer."""
        if y.dtype.kind in "iub":
            return y.astype(np.int64)
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            r, c = _first_bad(bad)
            msg = f"row {row0 + r}, column {c}: {_fmt(y[r, c])}; expected an integer"
            raise RowError(msg, what="labels", row=row0 + r)
        return y.astype(np.int64)


class RowMetrics(NamedTuple):
    """The per-row values behind the multi-class metrics."""

    nll: FloatArray  # -log p_y
    entropy: FloatArray  # H(p)
    brier: FloatArray  # sum_c (p_c - [c = y])**2
    conf: FloatArray  # max_c p_c
    rank: IntArray  # classes scored above y, plus tied ones of a lower index


def _rank(x: FloatArray, y: IntArray) -> IntArray:
    """The rank of each row's label: 0 exactly when it is the first arg-max."""
    s_y = x[np.arange(len(x)), y][:, None]
    below = np.arange(x.shape[1])[None, :] < y[:, None]
    rank: IntArray = np.count_nonzero((x > s_y) | ((x == s_y) & below), axis=1)
    return rank


def _logit_rows(x: FloatArray, y: IntArray, check: _Checker, row0: int) -> RowMetrics:
    r"""Per-row metrics of logits `x` (rows, K) for labels `y` (-1: ignored).

    With ``m`` the row maximum, ``d_j = x_j - m``, ``e_j = e^{d_j}``,
    ``S = \sum_j e_j - 1`` (the maximum's own 1 left out) and
    ``L = \operatorname{log1p}(S)``:

    .. math::

        \ell = L - d_y, \qquad
        H = L + \frac{\sum_j e_j (-d_j)}{1 + S}, \qquad
        \mathrm{conf} = \frac{1}{1 + S},

        \mathrm{brier} = (1 - p_y)^2 + \frac{\sum_{j \ne y} e_j^2}{(1 + S)^2},
        \quad 1 - p_y = \frac{S}{1 + S} \text{ if } x_y = m \text{ else }
        \frac{1 + (S - e_y)}{1 + S},

    sums of non-negative terms but one: ``sum_{j != y} e_j^2`` is formed as
    ``q + (t - 1)`` (``y`` a maximum) or ``(q - e_y^2) + t`` from ``q``, the
    sum of ``e_j^2`` over ``x_j < m``, and ``t`` the count of ``x_j = m``;
    where ``e_y^2`` cancels most of ``q`` the part lost is below
    ``2**-53 q <= 2**-53 S`` relative to ``brier >= 1 / (1 + S)^2``, far below
    a float32 rounding for fewer than ``2**20`` classes. For float32 and
    narrower logits they are computed in float64 and rounded once to float32,
    by the compiled kernel (``logitkit/_native/lk.c``: two passes per row, a
    float64 ``exp`` as FMA arithmetic) where it was built, else by NumPy with
    the same formulas (with NumPy's ``exp``, and sums in another order: the
    float64 intermediates can differ in the last bit, which moves a float32
    value only in a rare double rounding). For
    float64 logits, ``nll`` and ``entropy`` are
    :func:`~logitkit.sparse_softmax_cross_entropy` and
    :func:`~logitkit.softmax_entropy` (double-double, correctly rounded) and
    the others float64 arithmetic.

    Raises the :class:`RowError` of the first bad row (NaN, ``+inf``, no
    finite logit).
    """
    from . import _native

    narrow = x.dtype.itemsize <= 4
    if narrow and x.dtype != np.float32:
        x = x.astype(np.float32)  # float16 (and integers) are exact in float32
    got = _native.score_rows_f32(x, y) if narrow else None
    if got is not None:
        nll, ent, brier, conf, rank, status = got
        if not status.any():
            return RowMetrics(nll, ent, brier, conf, rank)
    check.predictions(x, row0)  # raises for the row the kernel flagged
    if got is not None:
        msg = "the score kernel flagged a row the checker accepts"
        raise AssertionError(msg)
    idx = np.arange(len(x))
    yy = np.maximum(y, 0)
    xf = x.astype(np.float64)
    m = np.max(xf, axis=1)
    d = xf - m[:, None]
    e = np.where(d < -708.0, 0.0, np.exp(d))
    tie = d == 0.0
    s = np.sum(np.where(tie, 0.0, e), axis=1) + (np.count_nonzero(tie, axis=1) - 1)
    big = np.log1p(s)
    one_s = 1.0 + s
    g = -np.sum(e * np.where(d > -708.0, d, 0.0), axis=1)
    q = np.sum(np.where(tie, 0.0, e * e), axis=1)
    t = np.count_nonzero(tie, axis=1)
    d_y = d[idx, yy]
    e_y = e[idx, yy]
    top = d_y == 0.0  # y is a maximum: 1 - p_y = S / (1 + S)
    miss = np.where(top, s, 1.0 + (s - e_y)) / one_s
    other = np.where(top, q + (t - 1), (q - e_y * e_y) + t)
    brier = miss * miss + other / (one_s * one_s)
    conf = 1.0 / one_s
    rank = _rank(x, yy)
    if narrow:
        nll = (big - d_y).astype(np.float32)
        ent = (big + g / one_s).astype(np.float32)
        return RowMetrics(
            nll, ent, brier.astype(np.float32), conf.astype(np.float32), rank
        )
    return RowMetrics(
        sparse_softmax_cross_entropy(x, yy), softmax_entropy(x), brier, conf, rank
    )


def _prob_rows(p: FloatArray, y: IntArray) -> RowMetrics:
    """Per-row metrics of probabilities `p` (rows, K) for labels `y`.

    ``nll`` is :func:`~logitkit.categorical_cross_entropy` with ``p`` clipped
    below at the dtype's smallest normal; the others are float64 arithmetic on
    the given probabilities.
    """
    k = p.shape[1]
    eps = float(np.finfo(p.dtype).tiny)
    nll = categorical_cross_entropy(p, one_hot(y, k, dtype=p.dtype), eps=eps)
    pf = p.astype(np.float64)
    logp = np.log(np.where(pf > 0, pf, 1.0))
    ent = -np.sum(pf * logp, axis=1)
    dlt = pf.copy()
    dlt[np.arange(len(p)), y] -= 1.0
    brier = np.sum(dlt * dlt, axis=1)
    return RowMetrics(nll, ent, brier, np.max(pf, axis=1), _rank(p, y))


@dataclass
class MulticlassScorer:
    """Accumulates the multi-class metrics of chunks of rows.

    Parameters
    ----------
    n_classes : int
        ``K``, the number of columns of the predictions.
    opts : ScoreOptions
        What to compute.
    """

    n_classes: int
    opts: ScoreOptions = field(default_factory=ScoreOptions)

    def __post_init__(self) -> None:
        k, b = self.n_classes, self.opts.bins
        self.rows = 0
        self.scored = 0
        self.ignored = 0
        self.correct = 0
        self.top_k = {int(t): 0 for t in self.opts.top_k}
        self.nll = ExactSums()
        self.brier = ExactSums()
        self.entropy = ExactSums()
        self.bin_count = np.zeros(b, dtype=np.int64)
        self.bin_correct = np.zeros(b, dtype=np.int64)
        self.bin_conf = ExactSums(b)
        self.class_count = np.zeros(k, dtype=np.int64)
        self.class_correct = np.zeros(k, dtype=np.int64)
        self.class_nll = ExactSums(k) if self.opts.per_class else None
        self._check = _Checker(self.opts)

    def _labels(self, lab: npt.NDArray[Any], row0: int) -> tuple[IntArray, IntArray]:
        """Class ids of `lab` (ids or one-hot) and the mask of the scored rows."""
        k = self.n_classes
        if lab.shape[1] == 1:
            y = self._check.integral(lab, row0)[:, 0]
            ign = self.opts.ignore_index
            keep = np.ones(y.shape, dtype=bool) if ign is None else y != ign
            bad = keep & ((y < 0) | (y >= k))
            if bad.any():
                r = int(np.argmax(bad))
                extra = "" if ign is None else f" or {ign} (--ignore-index)"
                msg = (
                    f"row {row0 + r}: label {y[r]}; expected a class in [0, {k}){extra}"
                )
                raise RowError(msg, what="labels", row=row0 + r)
            return y, keep
        # one-hot rows: zeros and a single one
        if lab.shape[1] != k:
            msg = (
                f"row {row0}: {lab.shape[1]} label columns; expected 1 (class ids) "
                f"or {k} (one-hot)"
            )
            raise RowError(msg, what="labels", row=row0)
        lab = self._check.integral(lab, row0)
        bad = ((lab != 0) & (lab != 1)).any(axis=1) | (lab.sum(axis=1) != 1)
        if bad.any():
            r = int(np.argmax(bad))
            msg = f"row {row0 + r}: not one-hot; expected {k - 1} zeros and a single 1"
            raise RowError(msg, what="labels", row=row0 + r)
        return np.argmax(lab, axis=1).astype(np.int64), np.ones(len(lab), dtype=bool)

    def update(self, pred: npt.NDArray[Any], lab: npt.NDArray[Any], row0: int) -> None:
        """Score rows ``row0, row0 + 1, ...``: `pred` (rows, K), `lab` (rows, 1 or K)."""
        x = _as_float(pred)
        if x.ndim != 2 or x.shape[1] != self.n_classes or lab.shape[0] != len(x):
            msg = (
                f"predictions of shape {x.shape} and labels of shape {lab.shape} "
                f"for {self.n_classes} classes"
            )
            raise ValueError(msg)
        try:
            y, keep = self._labels(lab, row0)
        except RowError:
            self._check.predictions(x, row0)  # a bad prediction is named first
            raise
        n = int(np.count_nonzero(keep))
        if self.opts.probs:
            self._check.predictions(x, row0)
            rows = _prob_rows(x[keep], y[keep]) if n else None
        else:
            rows = _logit_rows(x, np.where(keep, y, -1), self._check, row0)
            if n < len(keep):
                rows = RowMetrics._make(v[keep] for v in rows)
        y = y[keep]
        if rows is not None and np.isinf(rows.nll).any():
            bad = int(np.argmax(np.isinf(rows.nll)))
            r = int(np.flatnonzero(keep)[bad])
            msg = (
                f"row {row0 + r}: the logit of label {y[bad]}"
                " is -inf (probability 0, infinite loss); expected a class "
                "the predictions allow"
            )
            raise RowError(msg, what="predictions", row=row0 + r)
        # Nothing is counted before the whole chunk is known to be good.
        self.rows += len(x)
        self.ignored += int(keep.size - n)
        if n == 0 or rows is None:
            return
        self.scored += n
        nll = rows.nll
        self.nll.add(nll)
        self.entropy.add(rows.entropy)
        self.brier.add(rows.brier)
        if self.class_nll is not None:
            self.class_nll.add(nll, y)

        k = self.n_classes
        correct = rows.rank == 0
        self.correct += int(np.count_nonzero(correct))
        self.class_count += np.bincount(y, minlength=k)
        self.class_correct += np.bincount(y[correct], minlength=k)
        for t in self.top_k:
            self.top_k[t] += int(np.count_nonzero(rows.rank < t))

        b = self.opts.bins
        conf = rows.conf.astype(np.float64)
        bins = np.minimum((conf * b).astype(np.int64), b - 1)
        self.bin_count += np.bincount(bins, minlength=b)
        self.bin_correct += np.bincount(bins[correct], minlength=b)
        self.bin_conf.add(conf, bins)

    def merge(self, other: MulticlassScorer) -> None:
        """Add the counts and exact sums of `other` (same classes and options).

        Every total is an integer or an :class:`ExactSums`, so scoring rows in
        parts and merging the parts gives the same result, bit for bit, as
        scoring them in one pass (the Dask engine does so).

        Examples
        --------
        >>> import numpy as np
        >>> x = np.asarray([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
        >>> y = np.asarray([[0], [0], [1]])
        >>> whole, a, b = (MulticlassScorer(2) for _ in range(3))
        >>> whole.update(x, y, 0)
        >>> a.update(x[:1], y[:1], 0)
        >>> b.update(x[1:], y[1:], 1)
        >>> a.merge(b)
        >>> a.result() == whole.result()
        True
        """
        self.rows += other.rows
        self.scored += other.scored
        self.ignored += other.ignored
        self.correct += other.correct
        for t, c in other.top_k.items():
            self.top_k[t] += c
        self.nll.merge(other.nll)
        self.brier.merge(other.brier)
        self.entropy.merge(other.entropy)
        self.bin_count += other.bin_count
        self.bin_correct += other.bin_correct
        self.bin_conf.merge(other.bin_conf)
        self.class_count += other.class_count
        self.class_correct += other.class_correct
        if self.class_nll is not None and other.class_nll is not None:
            self.class_nll.merge(other.class_nll)

    def result(self) -> dict[str, Any]:
        """The metrics and tables, as in the module's JSON schema."""
        n = self.scored
        nll_mean = self.nll.mean(n)
        perplexity = None
        if nll_mean is not None and nll_mean < 709.0:
            perplexity = math.exp(nll_mean)
        # ECE = sum_b |correct_b - conf_b| / N, exactly
        gap = sum(
            (abs(int(self.bin_correct[i]) - self.bin_conf.fraction(i)))
            for i in range(self.opts.bins)
        )
        b = self.opts.bins
        calibration = [
            {
                "lower": i / b,
                "upper": (i + 1) / b,
                "count": int(self.bin_count[i]),
                "confidence": self.bin_conf.mean(int(self.bin_count[i]), i),
                "accuracy": _ratio(int(self.bin_correct[i]), int(self.bin_count[i])),
            }
            for i in range(b)
        ]
        per_class = None
        if self.class_nll is not None:
            per_class = [
                {
                    "class": c,
                    "count": int(self.class_count[c]),
                    "accuracy": _ratio(
                        int(self.class_correct[c]), int(self.class_count[c])
                    ),
                    "nll_mean": self.class_nll.mean(int(self.class_count[c]), c),
                }
                for c in range(self.n_classes)
            ]
        return {
            "task": "multiclass",
            "input": "probs" if self.opts.probs else "logits",
            "rows": self.rows,
            "classes": self.n_classes,
            "scored": n,
            "ignored": self.ignored,
            "metrics": {
                "nll_sum": self.nll.value(),
                "nll_mean": nll_mean,
                "perplexity": perplexity,
                "accuracy": _ratio(self.correct, n),
                "top_k_accuracy": {str(t): _ratio(c, n) for t, c in self.top_k.items()},
                "brier": self.brier.mean(n),
                "ece": _ratio(gap, n),
                "entropy_mean": self.entropy.mean(n),
            },
            "calibration": calibration,
            "per_class": per_class,
        }


@dataclass
class MultilabelScorer:
    """Accumulates the multi-label metrics of chunks of rows.

    Parameters
    ----------
    n_classes : int
        The number of labels (columns).
    opts : ScoreOptions
        What to compute.
    """

    n_classes: int
    opts: ScoreOptions = field(default_factory=ScoreOptions)

    def __post_init__(self) -> None:
        k = self.n_classes
        self.rows = 0
        self.ignored = 0
        self.subset_rows = 0
        self.subset_correct = 0
        self.count = np.zeros(k, dtype=np.int64)
        self.positives = np.zeros(k, dtype=np.int64)
        self.correct = np.zeros(k, dtype=np.int64)
        self.bce = ExactSums(k)
        self._check = _Checker(self.opts)

    def update(self, pred: npt.NDArray[Any], lab: npt.NDArray[Any], row0: int) -> None:
        """Score rows ``row0, row0 + 1, ...``: `pred` and `lab` (rows, K)."""
        x = _as_float(pred)
        self._check.predictions(x, row0)
        k = self.n_classes
        if lab.shape[1] != k:
            msg = f"row {row0}: {lab.shape[1]} label columns; expected {k} (0/1 each)"
            raise RowError(msg, what="labels", row=row0)
        y = self._check.integral(lab, row0)
        ign = self.opts.ignore_index
        keep = np.ones(y.shape, dtype=bool) if ign is None else y != ign
        bad = keep & (y != 0) & (y != 1)
        if bad.any():
            r, c = _first_bad(bad)
            extra = "" if ign is None else f" or {ign} (--ignore-index)"
            msg = f"row {row0 + r}, column {c}: label {y[r, c]}; expected 0 or 1{extra}"
            raise RowError(msg, what="labels", row=row0 + r)
        self.rows += len(x)
        self.ignored += int(keep.size - np.count_nonzero(keep))
        yf = np.where(keep, y, 0).astype(x.dtype)
        if self.opts.probs:
            eps = float(np.finfo(x.dtype).tiny)
            bce = binary_cross_entropy(x, yf, eps=eps)
            positive = x > 0.5
        else:
            bce = sigmoid_cross_entropy(x, yf)
            positive = x > 0
        cols = np.broadcast_to(np.arange(k), x.shape)
        self.bce.add(bce[keep], cols[keep])
        right = positive == (y == 1)
        self.count += np.count_nonzero(keep, axis=0)
        self.positives += np.count_nonzero(keep & (y == 1), axis=0)
        self.correct += np.count_nonzero(keep & right, axis=0)
        any_kept = keep.any(axis=1)
        self.subset_rows += int(np.count_nonzero(any_kept))
        self.subset_correct += int(
            np.count_nonzero(any_kept & (right | ~keep).all(axis=1))
        )

    def merge(self, other: MultilabelScorer) -> None:
        """Add the counts and exact sums of `other` (same labels and options)."""
        self.rows += other.rows
        self.ignored += other.ignored
        self.subset_rows += other.subset_rows
        self.subset_correct += other.subset_correct
        self.count += other.count
        self.positives += other.positives
        self.correct += other.correct
        self.bce.merge(other.bce)

    def result(self) -> dict[str, Any]:
        """The metrics and tables, as in the module's JSON schema."""
        k = self.n_classes
        counts = [int(c) for c in self.count]
        n = sum(counts)
        total = sum((self.bce.fraction(c) for c in range(k)), Fraction(0))
        labelled = [c for c in range(k) if counts[c] > 0]
        macro_bce = macro_acc = None
        if labelled:
            macro_bce = float(
                sum(self.bce.fraction(c) / counts[c] for c in labelled) / len(labelled)
            )
            macro_acc = float(
                sum(Fraction(int(self.correct[c]), counts[c]) for c in labelled)
                / len(labelled)
            )
        per_class = None
        if self.opts.per_class:
            per_class = [
                {
                    "class": c,
                    "count": counts[c],
                    "positives": int(self.positives[c]),
                    "accuracy": _ratio(int(self.correct[c]), counts[c]),
                    "bce_mean": self.bce.mean(counts[c], c),
                }
                for c in range(k)
            ]
        return {
            "task": "multilabel",
            "input": "probs" if self.opts.probs else "logits",
            "rows": self.rows,
            "classes": k,
            "scored": n,
            "ignored": self.ignored,
            "metrics": {
                "bce_sum": float(total),
                "bce_mean": _ratio(total, n),
                "bce_macro": macro_bce,
                "accuracy_micro": _ratio(int(self.correct.sum()), n),
                "accuracy_macro": macro_acc,
                "subset_accuracy": _ratio(self.subset_correct, self.subset_rows),
            },
            "per_class": per_class,
        }
