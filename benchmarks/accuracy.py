"""Measure the accuracy of logitkit (and of SciPy, PyTorch and JAX) against mpmath.

Every function of the softmax family and the elementwise activations is run on
a seeded set of adversarial inputs in float64, float32, float16 and bfloat16.
The exact values come from the 50-digit mpmath references in
``tests/_reference.py``; errors are in ulps of the output dtype at the exact
value (``_reference.ulp_error``). The script writes ``docs/accuracy.md`` and
the raw numbers to ``benchmarks/results/accuracy.json``::

    python benchmarks/accuracy.py            # the full run (a few minutes)
    python benchmarks/accuracy.py --quick    # a small smoke run

Errors are computed vectorised from a double-double copy of each exact value
(about 106 bits, far more than the 1e-6 ulp the tables show); elements the
double-double cannot represent (infinite, NaN, near the float64 overflow or
subnormal range) go through ``_reference.ulp_error`` itself, and every reported
maximum is recomputed with ``_reference.ulp_error`` and checked.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]

import jax.numpy as jnp
import mpmath
import numpy as np
import scipy
import scipy.special as sps
import torch
import torch.nn.functional as tnf

import logitkit as lk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import _reference as ref

mpf = mpmath.mpf
SEED = 20250101
DTYPES = ("float64", "float32", "float16", "bfloat16")
IMPLS = ("logitkit", "scipy", "torch", "jax")
PEERS = IMPLS[1:]
ROW_FUNCS = ("logsumexp", "softmax", "log_softmax")
ELEM_FUNCS = ("sigmoid", "log_sigmoid", "softplus", "logit")
FUNCS = (*ROW_FUNCS, *ELEM_FUNCS)
#: The contract: the largest error logitkit may show, per output dtype.
TARGET = {"float64": 1.0, "float32": 0.51, "float16": 0.51, "bfloat16": 0.51}
#: (explicit mantissa bits, minimum exponent) of each dtype.
FORMAT = {
    "float64": (52, -1022),
    "float32": (23, -126),
    "float16": (10, -14),
    "bfloat16": (7, -126),
}
#: Largest finite value of each dtype.
MAXVAL = {
    "float64": float(np.finfo(np.float64).max),
    "float32": float(np.finfo(np.float32).max),
    "float16": float(np.finfo(np.float16).max),
    "bfloat16": float(torch.finfo(torch.bfloat16).max),
}
TORCH_DTYPE = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
JAX_DTYPE = {
    "float64": jnp.float64,
    "float32": jnp.float32,
    "float16": jnp.float16,
    "bfloat16": jnp.bfloat16,
}
BIG_ROW = 5000  # rows longer than this are subsampled


@dataclass(frozen=True)
class Config:
    """Sizes of one run."""

    random_rows: dict[int, int]  # classes -> rows, for every scale
    sample: int  # elements checked per big row (plus argmax and smallest)
    n_smallest: int
    elementwise: int  # random points of the elementwise functions
    rowsum_rows: int


FULL = Config({2: 200, 10: 200, 1000: 20, 128_000: 2}, 2000, 10, 2000, 10_000)
QUICK = Config({2: 20, 10: 20, 1000: 2, 20_000: 1}, 200, 5, 200, 1000)
SCALES = (1.0, 10.0, 100.0, 1e4)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rng_for(*key: object) -> np.random.Generator:
    """A generator seeded by `key`, the same on every run and platform."""
    return np.random.default_rng([SEED, zlib.crc32(repr(key).encode())])


# ------------------------------------------------------------------ dtypes


def round_to_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """`x` rounded to `dtype` and returned as float64 (exactly representable)."""
    x = np.asarray(x, dtype=np.float64)
    if dtype == "bfloat16":
        t = torch.from_numpy(x.copy()).to(torch.bfloat16)
        return t.to(torch.float64).numpy()
    with np.errstate(over="ignore"):
        return x.astype(dtype).astype(np.float64)


def to_numpy_input(x: np.ndarray, dtype: str) -> np.ndarray:
    return x.astype(dtype)


def to_torch(x: np.ndarray, dtype: str) -> torch.Tensor:
    if x.dtype == np.bool_:
        return torch.from_numpy(x.copy())
    # values are representable in `dtype`, so the float32 detour is exact
    wide = np.float64 if dtype == "float64" else np.float32
    return torch.from_numpy(x.astype(wide)).to(TORCH_DTYPE[dtype])


def to_jax(x: np.ndarray, dtype: str) -> jax.Array:
    if x.dtype == np.bool_:
        return jnp.asarray(x)
    wide = np.float64 if dtype == "float64" else np.float32
    return jnp.asarray(x.astype(wide), dtype=JAX_DTYPE[dtype])


def to_float64(y: Any) -> tuple[np.ndarray, str]:
    """Any library's array as float64 NumPy values, with its dtype's name."""
    if isinstance(y, torch.Tensor):
        name = str(y.dtype).removeprefix("torch.")
        return y.detach().to(torch.float64).numpy(), name
    y = np.asarray(y)
    return y.astype(np.float64), str(y.dtype)


# --------------------------------------------------------- implementations

Mask = Any
RowFn = Callable[[Any, Mask], Any]
ElemFn = Callable[[Any], Any]


def _np_fill(x: np.ndarray, mask: Mask) -> np.ndarray:
    return x if mask is None else np.where(mask, x, -np.inf).astype(x.dtype)


def _torch_fill(x: torch.Tensor, mask: Mask) -> torch.Tensor:
    return x if mask is None else x.masked_fill(~mask, float("-inf"))


def _jax_row(f: Callable[..., Any], **kw: Any) -> RowFn:
    plain = jax.jit(lambda x: f(x, axis=-1, **kw))
    masked = jax.jit(lambda x, m: f(x, axis=-1, where=m, **kw))
    return lambda x, m: plain(x) if m is None else masked(x, m)


ROW_IMPLS: dict[str, dict[str, RowFn]] = {
    "logsumexp": {
        "logitkit": lambda x, m: lk.logsumexp(x, axis=-1, where=m),
        "scipy": lambda x, m: sps.logsumexp(_np_fill(x, m), axis=-1),
        "torch": lambda x, m: torch.logsumexp(_torch_fill(x, m), dim=-1),
        "jax": _jax_row(jax.nn.logsumexp),
    },
    "softmax": {
        "logitkit": lambda x, m: lk.softmax(x, where=m),
        "scipy": lambda x, m: sps.softmax(_np_fill(x, m), axis=-1),
        "torch": lambda x, m: torch.softmax(_torch_fill(x, m), dim=-1),
        "jax": _jax_row(jax.nn.softmax),
    },
    "log_softmax": {
        "logitkit": lambda x, m: lk.log_softmax(x, where=m),
        "scipy": lambda x, m: sps.log_softmax(_np_fill(x, m), axis=-1),
        "torch": lambda x, m: torch.log_softmax(_torch_fill(x, m), dim=-1),
        "jax": _jax_row(jax.nn.log_softmax),
    },
}

ELEM_IMPLS: dict[str, dict[str, ElemFn]] = {
    "sigmoid": {
        "logitkit": lk.sigmoid,
        "scipy": sps.expit,
        "torch": torch.sigmoid,
        "jax": jax.jit(jax.nn.sigmoid),
    },
    "log_sigmoid": {
        "logitkit": lk.log_sigmoid,
        "scipy": sps.log_expit,
        "torch": tnf.logsigmoid,
        "jax": jax.jit(jax.nn.log_sigmoid),
    },
    "softplus": {
        "logitkit": lk.softplus,
        "scipy": lambda x: np.logaddexp(np.zeros((), x.dtype), x),
        "torch": tnf.softplus,
        "jax": jax.jit(jax.nn.softplus),
    },
    "logit": {
        "logitkit": lk.logit,
        "scipy": sps.logit,
        "torch": torch.logit,
        "jax": jax.jit(jax.scipy.special.logit),
    },
}

PEER_CALLS = {
    "logsumexp": (
        "scipy.special.logsumexp",
        "torch.logsumexp",
        "jax.nn.logsumexp",
    ),
    "softmax": ("scipy.special.softmax", "torch.softmax", "jax.nn.softmax"),
    "log_softmax": (
        "scipy.special.log_softmax",
        "torch.log_softmax",
        "jax.nn.log_softmax",
    ),
    "sigmoid": ("scipy.special.expit", "torch.sigmoid", "jax.nn.sigmoid"),
    "log_sigmoid": (
        "scipy.special.log_expit",
        "torch.nn.functional.logsigmoid",
        "jax.nn.log_sigmoid",
    ),
    "softplus": (
        "numpy.logaddexp(0, x)",
        "torch.nn.functional.softplus",
        "jax.nn.softplus",
    ),
    "logit": ("scipy.special.logit", "torch.logit", "jax.scipy.special.logit"),
}


def library_of(impl: str, dtype: str) -> str | None:
    """The array library `impl` is fed in `dtype` (None: it has no such dtype)."""
    if impl == "logitkit":
        return "torch" if dtype == "bfloat16" else "numpy"
    if impl == "scipy":
        return None if dtype == "bfloat16" else "numpy"
    return impl


def native(lib: str, x: np.ndarray, dtype: str) -> Any:
    if lib == "numpy":
        return x if x.dtype == np.bool_ else to_numpy_input(x, dtype)
    if lib == "torch":
        return to_torch(x, dtype)
    return to_jax(x, dtype)


def run_impl(call: Callable[[], Any], dtype: str) -> tuple[np.ndarray, str, str]:
    """Call, and return float64 values in `dtype` with the dtype it returned.

    A result in another dtype (SciPy's float16 ufunc loops return float64) is
    rounded to `dtype`, as a float16 pipeline would store it; the note says so.
    """
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        y, got = to_float64(call())
    note = ""
    if got != dtype:
        note = f"returns {got}"
        y = round_to_dtype(y, dtype)
    return y, got, note


# ----------------------------------------------------------- exact values


@dataclass
class Exact:
    """Exact values (mpmath) and their double-double ``hi + lo``."""

    values: np.ndarray  # object array of mpf
    hi: np.ndarray
    lo: np.ndarray
    slow: np.ndarray  # bool: measure with _reference.ulp_error itself


def make_exact(values: Sequence[Any], dtype: str) -> Exact:
    vals = np.empty(len(values), dtype=object)
    hi = np.zeros(len(values))
    lo = np.zeros(len(values))
    slow = np.zeros(len(values), dtype=bool)
    limit = MAXVAL[dtype] / 2
    for i, v in enumerate(values):
        v = mpf(v)
        vals[i] = v
        h = float(v)
        hi[i] = h
        if not mpmath.isfinite(v) or not math.isfinite(h) or abs(h) > limit:
            slow[i] = True
        elif h == 0.0:
            # |v| < 2**-1075: negligible against every subnormal spacing
            # unless it is not far below float64's (2**-1074)
            slow[i] = dtype == "float64" and float(mpmath.ldexp(v, 1100)) != 0.0
        elif abs(h) < 2.0**-960:
            slow[i] = dtype == "float64"  # lo would be lost in the subnormals
        else:
            lo[i] = float(v - h)
    return Exact(vals, hi, lo, slow)


def concat_exact(parts: Sequence[Exact]) -> Exact:
    return Exact(
        np.concatenate([p.values for p in parts]),
        np.concatenate([p.hi for p in parts]),
        np.concatenate([p.lo for p in parts]),
        np.concatenate([p.slow for p in parts]),
    )


def ulp_errors(actual: np.ndarray, ex: Exact, dtype: str) -> np.ndarray:
    """``_reference.ulp_error(actual, exact, dtype)``, vectorised.

    Also counts a 0 more than 1 ulp away from the exact value (a flushed
    subnormal, an underflow, a lost ``-1e-13``) as ``inf``.
    """
    nmant, minexp = FORMAT[dtype]
    hi, lo = ex.hi, ex.lo
    tiny = math.ldexp(1.0, minexp - nmant)
    with np.errstate(all="ignore"):
        frac, exp = np.frexp(hi)
        e = exp.astype(np.int64) - 1
        # |exact| just below a power of two that its float64 rounding reached
        below = (np.abs(frac) == 0.5) & (lo != 0) & (np.sign(lo) != np.sign(hi))
        e = e - below
        spacing = np.ldexp(1.0, np.maximum(e - nmant, minexp - nmant))
        spacing = np.where(hi == 0, tiny, spacing)
        err = np.abs((actual - hi) - lo) / spacing
    err = np.where(np.isfinite(actual), err, np.inf)
    if ex.slow.any():
        idx = np.flatnonzero(ex.slow)
        err[idx] = ref.ulp_error(actual[idx], ex.values[idx], dtype=dtype)
    wrong_zero = (actual == 0) & (err > 1.0)
    return np.where(wrong_zero, np.inf, err)


def check_errors(
    actual: np.ndarray, ex: Exact, err: np.ndarray, dtype: str, rng: np.random.Generator
) -> None:
    """Recompute the worst and a few random errors with ``_reference.ulp_error``."""
    picks = {int(np.argmax(err))} | {int(i) for i in rng.integers(0, err.size, 3)}
    for i in sorted(picks):
        want = float(ref.ulp_error(actual[i : i + 1], ex.values[i : i + 1], dtype)[0])
        if np.isinf(err[i]) and actual[i] == 0:
            ok = want > 1.0  # the wrong-zero rule on top of ulp_error
        else:
            ok = want == err[i] or abs(want - err[i]) <= 1e-6 * max(1.0, want)
        if not ok:
            msg = f"fast ulp error {err[i]!r} != _reference.ulp_error {want!r}"
            raise AssertionError(msg)


# ------------------------------------------------------- row references


def big_row_reference(
    row: np.ndarray, idx: np.ndarray
) -> tuple[mpmath.mpf, list[mpmath.mpf], list[mpmath.mpf]]:
    """logsumexp of `row`, and log_softmax and softmax at `idx`.

    One ``mpmath.fsum`` of the exponentials per row, over the distinct values
    with their counts (exact), in the form of ``_reference``: with ``m`` the
    maximum and ``S`` the sum without one copy of it, ``lse = m + log1p(S)``
    and ``log_softmax_j = (x_j - m) - log1p(S)``.
    """
    finite = row[row != -np.inf]
    values, counts = np.unique(finite, return_counts=True)
    m = mpf(float(values[-1]))
    counts[-1] -= 1
    s = mpmath.fsum(
        int(c) * mpmath.exp(mpf(float(v)) - m)
        for v, c in zip(values, counts, strict=True)
        if c
    )
    l1p = mpmath.log1p(s)
    ls = [
        (mpf(float(row[j])) - m) - l1p if row[j] != -np.inf else ref.NEG_INF
        for j in idx
    ]
    sm = [mpmath.exp(v) if v != ref.NEG_INF else mpf(0) for v in ls]
    return m + l1p, ls, sm


def self_check_big_rows() -> None:
    """The subsampled path gives what ``_reference`` gives on a whole row."""
    rng = rng_for("self-check")
    row = np.round(rng.standard_normal(300) * 20, 1)  # many repeated values
    row[::37] = -np.inf
    idx = np.arange(row.size)
    lse, ls, sm = big_row_reference(row, idx)
    lst = list(row)
    tol = mpf(10) ** -45
    assert abs(lse - ref.logsumexp(lst)) <= tol * abs(lse)
    for a, b in zip(ls, ref.log_softmax(lst), strict=True):
        assert a == b or abs(a - b) <= tol * abs(b)
    for a, b in zip(sm, ref.softmax(lst), strict=True):
        assert a == b or abs(a - b) <= tol * abs(b)


# ------------------------------------------------------------------ cases


@dataclass
class Batch:
    x: np.ndarray  # (rows, n) float64, already representable in the dtype
    mask: np.ndarray | None = None  # True = included


@dataclass
class RowCase:
    name: str
    batches: list[Batch]


@dataclass
class ElemCase:
    name: str
    x: np.ndarray  # 1-d float64, representable in the dtype


def batches_by_length(rows: Sequence[Sequence[float]], dtype: str) -> list[Batch]:
    by_len: dict[int, list[Sequence[float]]] = {}
    for r in rows:
        by_len.setdefault(len(r), []).append(r)
    return [
        Batch(round_to_dtype(np.asarray(v, dtype=np.float64), dtype))
        for _, v in sorted(by_len.items())
    ]


def fmt_scale(s: float) -> str:
    return f"{s:g}".replace("10000", "1e4")


def row_cases(dtype: str, cfg: Config) -> Iterator[RowCase]:
    """The softmax-family cases for `dtype` (generated lazily)."""
    big = MAXVAL[dtype]
    for scale in SCALES:
        for n, nrows in cfg.random_rows.items():
            x = rng_for("randn", scale, n).standard_normal((nrows, n)) * scale
            x = np.clip(x, -big, big)
            yield RowCase(
                f"randn, scale {fmt_scale(scale)}, n={n}",
                [Batch(round_to_dtype(x, dtype))],
            )

    rng = rng_for("dominant")
    rows: list[list[float]] = [[0.0, 29.933606208922594], [32.24] + [0.0] * 9]
    rows += [[0.0, t] for t in rng.uniform(25.0, 37.0, 49)]
    for _ in range(49):
        r = rng.standard_normal(10) * 0.5
        k = int(rng.integers(10))
        r[k] = np.delete(r, k).max() + rng.uniform(28.0, 37.0)
        rows.append(list(r))
    yield RowCase("dominant (top p = 1 - 1e-13)", batches_by_length(rows, dtype))

    # near overflow: values are multiples of the spacing there, so the only
    # rows with non-trivial results hold ties (sums of 2, 4 equal maxima)
    near = {"float64": 1e308, "float32": 3e38, "float16": 6e4, "bfloat16": 3e38}[dtype]
    delta = {"float64": 1e292, "float32": 1e32, "float16": 32.0, "bfloat16": 1e36}[
        dtype
    ]
    rows = [
        [near - k * delta for k in range(8)],
        [near, near],
        [big, big, big, big],
        [near, -near],
        [-near, -near],
        [-big, -big, -big],
        [big, 0.0, 1.0, -1.0, -big],
        [big, big, 0.0, -big],
    ]
    pool = [big, near, near - delta, near - 3 * delta, big / 2, 0.0, 1.0, -2.5]
    pool += [-v for v in pool]
    rng = rng_for("overflow")
    rows += [list(rng.choice(pool, 8)) for _ in range(40)]
    yield RowCase("near overflow (±max)", batches_by_length(rows, dtype))

    rng = rng_for("-inf")
    x = rng.standard_normal((100, 10)) * 3
    x[rng.random((100, 10)) < 0.3] = -np.inf
    x[np.arange(100), rng.integers(0, 10, 100)] = rng.standard_normal(100)
    x2 = rng.standard_normal((20, 2)) * 3
    x2[np.arange(20), rng.integers(0, 2, 20)] = -np.inf
    x3 = rng.standard_normal((5, 1000)) * 3
    x3[rng.random((5, 1000)) < 0.5] = -np.inf
    yield RowCase(
        "with -inf entries",
        [Batch(round_to_dtype(v, dtype)) for v in (x2, x, x3)],
    )

    yield RowCase(
        "all -inf row",
        [Batch(np.full((1, 2), -np.inf)), Batch(np.full((1, 10), -np.inf))],
    )

    rng = rng_for("where")
    out = []
    for nrows, n in ((100, 10), (5, 1000)):
        x = rng.standard_normal((nrows, n)) * 3
        mask = rng.random((nrows, n)) < 0.7
        mask[np.arange(nrows), rng.integers(0, n, nrows)] = True
        x = np.where(mask, x, x + 50.0)  # masked entries would dominate
        out.append(Batch(round_to_dtype(x, dtype), mask))
    yield RowCase("where= mask", out)

    tiny = {
        "float64": [1e-30, 1e-300, 1e-310, 5e-324],
        "float32": [1e-30, 1e-38, 1e-40, 1e-45],
        "float16": [1e-4, 1e-6, 1e-7, 6e-8],
        "bfloat16": [1e-30, 1e-38, 1e-40, 1e-39],
    }[dtype]
    pool = [0.0, *tiny, *(-t for t in tiny), *(2 * t for t in tiny)]
    rng = rng_for("tiny")
    rows = [[t, 0.0] for t in tiny] + [[0.0, -t] for t in tiny]
    rows += [[t, -t] for t in tiny] + [[t, 1.0, 2.0] for t in tiny]
    rows += [list(rng.choice(pool, 10)) for _ in range(50)]
    yield RowCase("tiny (near 0, subnormal)", batches_by_length(rows, dtype))


def elem_cases(func: str, dtype: str, cfg: Config) -> list[ElemCase]:
    """The cases of an elementwise function in `dtype`."""
    nmant, _ = FORMAT[dtype]
    if func != "logit":
        specials = np.asarray([1e-30, 20.0, 90.0, 800.0])
        specials = np.concatenate([specials, -specials])
        rng = rng_for("elementwise")
        n_uniform = cfg.elementwise // 2
        uniform = rng.uniform(-800.0, 800.0, n_uniform)
        mags = 10.0 ** rng.uniform(-6.0, math.log10(800.0), cfg.elementwise - n_uniform)
        mixed = np.where(rng.random(mags.size) < 0.5, -mags, mags)
        return [
            ElemCase("±1e-30, ±20, ±90, ±800", round_to_dtype(specials, dtype)),
            ElemCase(
                "random in [-800, 800]",
                round_to_dtype(np.concatenate([uniform, mixed]), dtype),
            ),
        ]
    rng = rng_for("logit")
    n = cfg.elementwise // 2
    ks = np.arange(1, 21)
    up, down = 2.0 ** -(nmant + 1), 2.0 ** -(nmant + 2)  # spacing above/below 1/2
    half = [0.5 + 1e-8, 0.5 - 1e-8, 0.5 + 1e-4, 0.5 - 1e-4, 0.5]
    half += [
        *(0.5 + ks * up),
        *(0.5 - ks * down),
        *(0.5 + rng.uniform(-1e-3, 1e-3, 60)),
    ]
    quarter = [*(0.25 + ks * up / 2), *(0.25 - ks * down / 2)]
    quarter += list(0.25 + rng.uniform(-1e-3, 1e-3, 60))
    lo_exp = {"float64": -300, "float32": -40, "float16": -7, "bfloat16": -40}[dtype]
    near0 = [1e-30, 1e-40, 1e-310, 5e-324, 6e-8, 1e-4]
    near0 += list(10.0 ** rng.uniform(lo_exp, -1.0, n))
    near1 = [1 - 2.0 ** -(nmant + 1), *(1 - np.arange(1, 51) * 2.0 ** -(nmant + 1))]
    near1 += list(1 - 10.0 ** rng.uniform(-(nmant + 1) * math.log10(2), -1.0, n))

    def clean(v: Sequence[float] | np.ndarray) -> np.ndarray:
        p = round_to_dtype(np.asarray(v, dtype=np.float64), dtype)
        return np.unique(p[(p > 0) & (p < 1)])

    return [
        ElemCase("uniform (0, 1)", clean(rng.uniform(0.0, 1.0, n))),
        ElemCase("near 1/2", clean(half)),
        ElemCase("near 1/4", clean(quarter)),
        ElemCase("near 0 (to 1e-30 / subnormal)", clean(near0)),
        ElemCase("near 1 (to 1 - 2^-(p+1))", clean(near1)),
    ]


# ------------------------------------------------------------ measuring


@dataclass
class Cell:
    """One implementation on one (function, dtype, case)."""

    max: float
    median: float
    out_dtype: str
    note: str = ""
    worst: dict[str, Any] = field(default_factory=dict)


@dataclass
class Record:
    function: str
    dtype: str
    case: str
    n: int
    cells: dict[str, Cell | None]


def summarise(
    err: np.ndarray,
    actual: np.ndarray,
    ex: Exact,
    dtype: str,
    describe: Callable[[int], dict[str, Any]],
    got: str,
    note: str,
    rng: np.random.Generator,
) -> Cell:
    check_errors(actual, ex, err, dtype, rng)
    i = int(np.argmax(err))
    worst = describe(i)
    worst.update(got=float(actual[i]), exact=mpmath.nstr(ex.values[i], 20))
    return Cell(float(err.max()), float(np.median(err)), got, note, worst)


def measure_rows(case: RowCase, dtype: str, cfg: Config) -> list[Record]:
    """Errors of the softmax family on one case."""
    rng = rng_for("sample", case.name, dtype)
    lse_parts, ls_parts, sm_parts = [], [], []
    picks: list[tuple[np.ndarray, np.ndarray]] = []  # (rows, cols) per batch
    masked: list[tuple[np.ndarray, ...]] = []
    for b in case.batches:
        xr = b.x if b.mask is None else np.where(b.mask, b.x, -np.inf)
        r_idx, c_idx, lse_vals, ls_vals, sm_vals = [], [], [], [], []
        for i, row in enumerate(xr):
            n = row.size
            if n > BIG_ROW:
                order = np.argsort(row, kind="stable")
                cols = np.unique(
                    np.concatenate(
                        [
                            rng.choice(n, cfg.sample, replace=False),
                            order[-1:],
                            order[: cfg.n_smallest],
                        ]
                    )
                )
                lse, ls, sm = big_row_reference(row, cols)
            else:
                cols = np.arange(n)
                lst = [float(v) for v in row]
                lse, ls, sm = ref.logsumexp(lst), ref.log_softmax(lst), ref.softmax(lst)
            if b.mask is not None:
                keep = b.mask[i, cols]
                ls = [v for v, k in zip(ls, keep, strict=True) if k]
                sm = [v for v, k in zip(sm, keep, strict=True) if k]
                cols = cols[keep]
            r_idx.append(np.full(cols.size, i))
            c_idx.append(cols)
            lse_vals.append(lse)
            ls_vals += ls
            sm_vals += sm
        picks.append((np.concatenate(r_idx), np.concatenate(c_idx)))
        if b.mask is not None:
            masked.append(np.nonzero(~b.mask))
        else:
            masked.append((np.zeros(0, np.intp), np.zeros(0, np.intp)))
        lse_parts.append(make_exact(lse_vals, dtype))
        ls_parts.append(make_exact(ls_vals, dtype))
        sm_parts.append(make_exact(sm_vals, dtype))
    exact = {
        "logsumexp": concat_exact(lse_parts),
        "log_softmax": concat_exact(ls_parts),
        "softmax": concat_exact(sm_parts),
    }
    n_rows = [b.x.shape[0] for b in case.batches]

    def describe(func: str, k: int) -> dict[str, Any]:
        for bi, b in enumerate(case.batches):
            size = n_rows[bi] if func == "logsumexp" else picks[bi][0].size
            if k < size:
                i, j = (
                    (k, None)
                    if func == "logsumexp"
                    else (
                        int(picks[bi][0][k]),
                        int(picks[bi][1][k]),
                    )
                )
                row = b.x[i]
                out: dict[str, Any] = {"n": int(row.size), "j": j}
                if row.size <= 10:
                    out["row"] = [float(v) for v in row]
                    if b.mask is not None:
                        out["mask"] = [bool(v) for v in b.mask[i]]
                else:
                    out["x_j"] = None if j is None else float(row[j])
                    out["row_max"] = float(row.max())
                return out
            k -= size
        return {}

    records = []
    for func in ROW_FUNCS:
        ex = exact[func]
        cells: dict[str, Cell | None] = {}
        for impl in IMPLS:
            lib = library_of(impl, dtype)
            if lib is None:
                cells[impl] = None
                continue
            fn = ROW_IMPLS[func][impl]
            vals, masked_ok, got, notes = [], True, dtype, set()
            for bi, b in enumerate(case.batches):
                x = native(lib, b.x, dtype)
                m = None if b.mask is None else native(lib, b.mask, dtype)
                y, got, note = run_impl(functools.partial(fn, x, m), dtype)
                if note:
                    notes.add(note)
                if func == "logsumexp":
                    vals.append(y.reshape(-1))
                    continue
                vals.append(y[picks[bi]])
                mi = masked[bi]
                if mi[0].size:
                    want = 0.0 if func == "softmax" else -np.inf
                    masked_ok &= bool(np.all(y[mi] == want))
            actual = np.concatenate(vals)
            err = ulp_errors(actual, ex, dtype)
            cell = summarise(
                err,
                actual,
                ex,
                dtype,
                functools.partial(describe, func),
                got,
                "; ".join(sorted(notes)),
                rng,
            )
            if not masked_ok:  # a masked entry not exactly 0 / -inf
                cell.max = math.inf
                cell.note = "; ".join(filter(None, [cell.note, "masked not exact"]))
            cells[impl] = cell
        records.append(Record(func, dtype, case.name, int(ex.hi.size), cells))
    return records


def describe_point(x: np.ndarray, k: int) -> dict[str, Any]:
    return {"x": float(x[k])}


ELEM_REF: dict[str, Callable[[float], Any]] = {
    "sigmoid": ref.sigmoid,
    "log_sigmoid": ref.log_sigmoid,
    "softplus": ref.softplus,
    "logit": ref.logit,
}


def measure_elementwise(func: str, dtype: str, cfg: Config) -> list[Record]:
    records = []
    for case in elem_cases(func, dtype, cfg):
        rng = rng_for("sample", func, case.name, dtype)
        ex = make_exact([ELEM_REF[func](float(v)) for v in case.x], dtype)
        cells: dict[str, Cell | None] = {}
        for impl in IMPLS:
            lib = library_of(impl, dtype)
            if lib is None:
                cells[impl] = None
                continue
            fn = ELEM_IMPLS[func][impl]
            x = native(lib, case.x, dtype)
            y, got, note = run_impl(functools.partial(fn, x), dtype)
            err = ulp_errors(y, ex, dtype)
            cells[impl] = summarise(
                err,
                y,
                ex,
                dtype,
                functools.partial(describe_point, case.x),
                got,
                note,
                rng,
            )
        records.append(Record(func, dtype, case.name, int(case.x.size), cells))
    return records


def row_sums(cfg: Config) -> dict[str, dict[str, float]]:
    """How often a float32 softmax row sums to exactly 1 (np.sum in float32)."""
    x = (rng_for("rowsum").standard_normal((cfg.rowsum_rows, 10)) * 3).astype(
        np.float32
    )
    jsm = jax.jit(jax.nn.softmax)

    def naive(v: np.ndarray) -> np.ndarray:
        e = np.exp(v - v.max(axis=-1, keepdims=True))
        out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
        return out

    outs = {
        "logitkit": lk.softmax(x),
        "scipy": sps.softmax(x, axis=-1),
        "torch": torch.softmax(torch.from_numpy(x), dim=-1).numpy(),
        "jax": np.asarray(jsm(jnp.asarray(x))),
        "naive numpy": naive(x),
    }
    res = {}
    for name, y in outs.items():
        assert y.dtype == np.float32, (name, y.dtype)
        s32 = np.array([np.sum(r) for r in y])
        s64 = y.astype(np.float64).sum(axis=-1)
        res[name] = {
            "fraction_exactly_one": float(np.mean(s32 == np.float32(1.0))),
            "max_abs_sum64_minus_1_ulp": float(np.max(np.abs(s64 - 1.0)) / 2.0**-23),
        }
    return res


# ------------------------------------------------------------ reporting


def git_state() -> str:
    """`` (git <commit>[, uncommitted changes in src])`` or ``""`` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f" (git {head}{', uncommitted changes in src' if dirty else ''})"


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        ncpu = os.cpu_count() or 0
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "jax": jax.__version__,
        "mpmath": mpmath.__version__,
        "logitkit": lk.__version__ + git_state(),
        "platform": platform.platform(),
        "cpu": f"{cpu} ({ncpu} cores available)",
    }


def fmt(v: float) -> str:
    if math.isinf(v) or math.isnan(v):
        return "inf" if not math.isnan(v) else "nan"
    if v == 0:
        return "0"
    if v < 10:
        return f"{v:.3f}"
    if v < 1000:
        return f"{v:.1f}"
    return f"{v:.2e}"


def jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: jsonable(w) for k, w in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(w) for w in v]
    return v


def misses(records: Sequence[Record]) -> list[Record]:
    out = []
    for r in records:
        c = r.cells["logitkit"]
        assert c is not None
        if not c.max <= TARGET[r.dtype]:
            out.append(r)
    return out


def render(
    records: Sequence[Record],
    sums: dict[str, dict[str, float]],
    info: dict[str, str],
    cfg: Config,
    quick: bool,
    command: str,
) -> str:
    big_n = max(cfg.random_rows)
    lines = [
        "# Accuracy of logitkit",
        "",
        "<!-- generated by benchmarks/accuracy.py; do not edit by hand -->",
        "",
    ]
    if quick:
        lines += [
            "> **Quick run** (`--quick`): reduced sample sizes; regenerate without",
            "> `--quick` for the published numbers.",
            "",
        ]
    lines += [
        (
            "Every function is evaluated on a seeded set of adversarial inputs and "
            "compared with the mpmath references of `tests/_reference.py` (50 "
            "significant digits, computed from the input exactly as rounded to the "
            "dtype). The error of a result is `|result - exact| / ulp`, where the ulp "
            "is the spacing of the output dtype's numbers at the exact value, with "
            "the subnormal spacing as its floor (`_reference.ulp_error`): 0.5 is a "
            "correctly rounded result, 1.0 one unit in the last place. A result that "
            "is inf or NaN where the exact value is finite and in range, or 0 more "
            "than 1 ulp away from it (a flushed subnormal, an underflow, a lost "
            "`-1e-13`), shows as **inf**; a correct inf, -inf, or overflow to inf "
            "counts 0. The reference gives an all -inf row softmax 0, log_softmax and "
            "logsumexp -inf. Rows of up to "
            f"{BIG_ROW:,} classes are checked in full; for rows of {big_n:,} classes "
            "the logsumexp is computed once per row (`mpmath.fsum` of the exponentials "
            "of the distinct values, each times its count) and the softmax and "
            f"log_softmax are checked at {cfg.sample:,} random elements plus the "
            f"argmax and the {cfg.n_smallest} smallest. `where=` rows compare only the "
            "unmasked entries; the masked ones must be exactly 0 (softmax) or -inf "
            "(log_softmax), or the row counts inf. Peers without `where=` (SciPy, "
            "PyTorch) get the masked entries set to -inf; JAX gets its own `where=`. "
            "JAX runs with `jax_enable_x64` and every JAX function under `jax.jit`. "
            "float16 goes through NumPy (logitkit, SciPy), PyTorch and JAX; bfloat16 "
            "through PyTorch (logitkit and torch) and JAX; — marks a library without "
            "the dtype. SciPy's `expit`, `log_expit` and `logit` return float64 for "
            "float16 input; those results are rounded to float16 before measuring "
            "(marked †). Errors are computed in double-double arithmetic and every "
            "maximum reported is rechecked with `_reference.ulp_error`."
        ),
        "",
        (
            "The losses (cross entropies, entropy, KL divergence) are measured the "
            "same way, beside the same peers, by `benchmarks/accuracy_losses.py`: "
            "see [accuracy-losses.md](accuracy-losses.md)."
        ),
        "",
        "## Machine",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [
        "",
        "Regenerate with:",
        "",
        "```",
        command,
        "```",
        "",
        (
            "Columns: the largest and the median error (ulps) of logitkit over the "
            "elements of the case, and the largest error of each peer. **Bold**: "
            "logitkit misses its target (see [Targets](#targets))."
        ),
        "",
    ]
    for func in FUNCS:
        calls = PEER_CALLS[func]
        lines += [
            f"## {func}",
            "",
            f"Peers: scipy = `{calls[0]}`, torch = `{calls[1]}`, jax = `{calls[2]}`.",
            "",
            (
                "| case | dtype | n | logitkit max | logitkit median | scipy max "
                "| torch max | jax max |"
            ),
            "|---|---|--:|--:|--:|--:|--:|--:|",
        ]
        for r in records:
            if r.function != func:
                continue
            lkc = r.cells["logitkit"]
            assert lkc is not None
            lk_max = fmt(lkc.max)
            if not lkc.max <= TARGET[r.dtype]:
                lk_max = f"**{lk_max}**"
            peers = []
            for p in PEERS:
                c = r.cells[p]
                peers.append("—" if c is None else fmt(c.max) + ("†" if c.note else ""))
            lines.append(
                f"| {r.case} | {r.dtype} | {r.n:,} | {lk_max} | {fmt(lkc.median)} | "
                + " | ".join(peers)
                + " |"
            )
        lines.append("")
    lines += [
        "## Float32 softmax rows that sum to 1",
        "",
        (
            f"{cfg.rowsum_rows:,} seeded float32 rows of 10 logits (standard normal times 3). "
            "*Sums to 1.0*: the fraction of rows whose float32 sum (`np.sum` of the "
            "float32 row) is exactly 1.0. *max |sum - 1|*: the largest distance of the "
            "exact (float64) sum of a row from 1, in units of 2^-23 (ulp(1.0) of "
            "float32). The naive form is `e = np.exp(x - max); e / e.sum()` in "
            "float32."
        ),
        "",
        "| implementation | sums to 1.0 | max \\|sum - 1\\| (2^-23) |",
        "|---|--:|--:|",
    ]
    for name, s in sums.items():
        lines.append(
            f"| {name} | {s['fraction_exactly_one']:.4f} | "
            f"{s['max_abs_sum64_minus_1_ulp']:.3f} |"
        )
    lines += [
        "",
        "## Targets",
        "",
        (
            "The contract: every logitkit result is within **0.51 ulp** of the exact "
            "value in float32, float16 and bfloat16 (computed in float64, rounded "
            "once), and within **1 ulp** in float64."
        ),
        "",
    ]
    lines += [
        "| dtype | target | logitkit's largest error | function, case |",
        "|---|--:|--:|---|",
    ]
    for dtype in DTYPES:
        worst = max(
            (r for r in records if r.dtype == dtype),
            key=lambda r: r.cells["logitkit"].max,  # type: ignore[union-attr]
        )
        c = worst.cells["logitkit"]
        assert c is not None
        lines.append(
            f"| {dtype} | {TARGET[dtype]} | {c.max:.6g} | "
            f"{worst.function}, {worst.case} |"
        )
    lines.append("")
    missed = misses(records)
    if not missed:
        lines.append("Every logitkit row above meets its target.")
    else:
        lines += [
            f"{len(missed)} logitkit row(s) miss the target:",
            "",
            "| function | dtype | case | max ulp | target | worst input |",
            "|---|---|---|--:|--:|---|",
        ]
        for r in missed:
            c = r.cells["logitkit"]
            assert c is not None
            w = json.dumps(jsonable(c.worst)).replace("|", "\\|")
            lines.append(
                f"| {r.function} | {r.dtype} | {r.case} | {fmt(c.max)} | "
                f"{TARGET[r.dtype]} | `{w}` |"
            )
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small, fast run")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "docs" / "accuracy.md", help="markdown"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "accuracy.json",
        help="raw numbers",
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    start = time.perf_counter()
    self_check_big_rows()

    records: list[Record] = []
    for dtype in DTYPES:
        t0 = time.perf_counter()
        for case in row_cases(dtype, cfg):
            records += measure_rows(case, dtype, cfg)
        for func in ELEM_FUNCS:
            records += measure_elementwise(func, dtype, cfg)
        log(f"{dtype}: {time.perf_counter() - t0:.1f} s")
    # by function, then case (in the order generated), then dtype
    func_rank = {f: i for i, f in enumerate(FUNCS)}
    case_rank: dict[tuple[str, str], int] = {}
    for r in records:
        case_rank.setdefault((r.function, r.case), len(case_rank))
    records.sort(
        key=lambda r: (
            func_rank[r.function],
            case_rank[r.function, r.case],
            DTYPES.index(r.dtype),
        )
    )
    sums = row_sums(cfg)
    info = machine()
    command = "python benchmarks/accuracy.py" + (" --quick" if args.quick else "")
    text = render(records, sums, info, cfg, args.quick, command)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    runtime = time.perf_counter() - start
    payload = {
        "command": command,
        "quick": args.quick,
        "seed": SEED,
        "machine": info,
        "runtime_s": round(runtime, 1),
        "targets": TARGET,
        "results": [
            {
                "function": r.function,
                "dtype": r.dtype,
                "case": r.case,
                "n": r.n,
                "impls": {
                    k: None
                    if c is None
                    else {
                        "max": c.max,
                        "median": c.median,
                        "out_dtype": c.out_dtype,
                        "note": c.note,
                        "worst": c.worst,
                    }
                    for k, c in r.cells.items()
                },
            }
            for r in records
        ],
        "row_sums": sums,
        "misses": [
            {
                "function": r.function,
                "dtype": r.dtype,
                "case": r.case,
                "max": r.cells["logitkit"].max,  # type: ignore[union-attr]
            }
            for r in misses(records)
        ],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(jsonable(payload), indent=1) + "\n")
    log(f"wrote {args.output} and {args.json} in {runtime:.1f} s")
    for m in payload["misses"]:
        log(f"MISS {m['function']} {m['dtype']} {m['case']}: {fmt(m['max'])} ulp")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
