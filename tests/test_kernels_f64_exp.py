"""The branch-free float64 exp of the kernels' hot loop (``_f64.exp_neg_dd``).

It replaces ``exp_dd`` where ``-670 <= d <= 0``: its high part must be
``exp_dd``'s (the correctly rounded value), its double-double within
``2**-86`` of it and within ``2**-96.5`` of the exact value (checked with
50-digit ``decimal``); the row loop must vectorise; below ``-670``
(results under ``2**-966``, subnormal ones) the kernels keep ``exp_dd``'s
values.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

pytest.importorskip("numba")

from numba import njit

import logitkit as lk
from logitkit._kernels import _f64
from test_kernels import record_kernel_calls


def _pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``d + dl = x - m`` as the kernels form it, ``-670 <= d <= 0``."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal(n) * 50.0
    v = m - np.abs(rng.standard_normal(n)) * np.exp(rng.uniform(-40.0, 6.5, n))
    d = v - m
    bb = d - v
    dl = (v - (d - bb)) + (-m - bb)
    keep = d >= _f64._FAST_MIN
    d = np.concatenate([d[keep], [0.0, -5e-324, -1e-300, -1.0, -0.5, -669.9, -670.0]])
    dl = np.concatenate([dl[keep], np.zeros(7)])
    return d, dl


def test_exp_neg_dd_matches_exp_dd() -> None:
    @njit  # type: ignore[untyped-decorator]
    def both(d: Any, dl: Any) -> Any:
        out = np.empty((4, d.size))
        for j in range(d.size):
            out[0, j], out[1, j] = _f64.exp_dd(d[j], dl[j])
            out[2, j], out[3, j] = _f64.exp_neg_dd(d[j], dl[j])
        return out

    d, dl = _pairs(200_000, 7)
    o = both(d, dl)
    np.testing.assert_array_equal(o[2], o[0])
    rel = ((o[2] - o[0]) + (o[3] - o[1])) / o[0]
    assert np.max(np.abs(rel)) < 2.0**-85
    assert _f64.exp_neg_dd(0.0, 0.0) == (1.0, 0.0)  # ties are (1, 0)


@njit  # type: ignore[untyped-decorator]
def _exp_neg_dd_of(d: Any, dl: Any) -> Any:
    out = np.empty((2, d.size))
    for j in range(d.size):
        out[0, j], out[1, j] = _f64.exp_neg_dd(d[j], dl[j])
    return out


def _sweep(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``d`` over all magnitudes in ``[-670, 0]``, ``|dl| <= ulp(d)/2``.

    With the worst cases of the reduction: ``r`` at ``+-ln2/2048`` (the
    polynomial's ends), ``r`` near 0 for ``k != 0``, ``dl = +-ulp(d)/2``
    at ``|d| >= 512`` (the largest tail, ``2**-44``).
    """
    rng = np.random.default_rng(seed)
    step = math.log(2.0) / 1024
    k = rng.integers(-989_000, 1, 3000).astype(np.float64)
    d = np.concatenate(
        [
            -np.exp2(rng.uniform(-70.0, math.log2(670.0), 12_000)),
            -rng.uniform(512.0, 670.0, 2000),
            k * step + step / 2 * (1 - np.exp2(rng.uniform(-50.0, -1.0, 3000))),
            k * step - step / 2 * (1 - np.exp2(rng.uniform(-50.0, -1.0, 3000))),
            k * step + np.exp2(rng.uniform(-64.0, -40.0, 3000)),
            [0.0, -0.0, -5e-324, -1e-300, -(2.0**-12), -step / 2, -step, -1.0],
            [-0.5, -np.log(2.0), -669.9, -670.0, -512.0, -np.nextafter(512.0, 0)],
        ]
    )
    d = np.clip(d, _f64._FAST_MIN, 0.0)
    half_ulp = np.spacing(np.abs(d)) / 2
    dl = rng.uniform(-1.0, 1.0, d.size) * half_ulp
    dl[rng.uniform(size=d.size) < 0.2] = 0.0
    extreme = rng.uniform(size=d.size) < 0.2
    dl[extreme] = np.where(rng.uniform(size=d.size) < 0.5, -1.0, 1.0)[extreme]
    dl[extreme] *= half_ulp[extreme]
    return d, dl


@pytest.mark.parametrize("seed", [1, 2])
def test_exp_neg_dd_against_decimal(seed: int) -> None:
    """High part correctly rounded, relative error below ``2**-96.5``."""
    d, dl = _sweep(seed)
    got = _exp_neg_dd_of(d, dl)
    worst = Fraction(0)
    with localcontext() as ctx:
        ctx.prec = 50  # exp to ~2**-166: exact enough
        for j in range(d.size):
            exact = (Decimal(float(d[j])) + Decimal(float(dl[j]))).exp()
            assert got[0, j] == float(exact), (d[j], dl[j])
            assert got[0, j] + got[1, j] == got[0, j]  # normalised
            approx = Decimal(float(got[0, j])) + Decimal(float(got[1, j]))
            rel = abs(Fraction(approx) / Fraction(exact) - 1)
            worst = max(worst, rel)
    assert worst < Fraction(2) ** -96 / Fraction(math.sqrt(2))  # 2**-96.5


def test_exp_neg_dd_reduction_constants() -> None:
    """``ln2/1024 = _STEP_HI + _STEP_LO`` to ``2**-119``, ``_STEP_HI`` of ulp ``2**-63``."""
    with localcontext() as ctx:
        ctx.prec = 60
        step = Fraction(Decimal(2).ln()) / 1024
    assert float(step) == _f64._STEP_HI
    assert 2.0**-11 <= _f64._STEP_HI < 2.0**-10  # a multiple of 2**-63
    rest = step - Fraction(_f64._STEP_HI) - Fraction(_f64._STEP_LO)
    assert abs(_f64._STEP_LO) < 2.0**-65
    assert abs(rest) < Fraction(2) ** -120


@pytest.mark.parametrize("shift", [0.0, 600.0, 690.0, 740.0, 760.0])
def test_fast_and_exp_dd_ranges_equal_the_portable_path(
    shift: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows whose ``d_j`` straddle ``-670`` (the ``exp_dd`` fix-up), subnormals."""
    calls: list[str] = []
    record_kernel_calls(monkeypatch, calls)
    rng = np.random.default_rng(int(shift))
    x = rng.uniform(-800.0, 0.0, (7, 333))
    x[4, :] = np.linspace(-746.5, -660.0, 333)
    x[:, 1:4] = np.round(x[:, 1:4])  # ties with an integral maximum
    x[:, 0] = shift
    x[3, 5] = shift
    x[5, :] = shift + rng.uniform(-1e-13, 0.0, 333)  # d near 0
    labels = rng.integers(0, 333, 7)
    fns = [
        lambda: lk.softmax(x, axis=-1),
        lambda: lk.log_softmax(x, axis=-1),
        lambda: lk.logsumexp(x, axis=-1),
        lambda: lk.sparse_softmax_cross_entropy(x, labels),
        lambda: lk.grad.sparse_softmax_cross_entropy(x, labels),
    ]
    for fn in fns:
        calls.clear()
        got = fn()
        assert calls, "no kernel ran"
        monkeypatch.setenv("LOGITKIT_DISABLE_KERNELS", "1")
        want = fn()
        monkeypatch.delenv("LOGITKIT_DISABLE_KERNELS")
        got = got if isinstance(got, tuple) else (got,)
        want = want if isinstance(want, tuple) else (want,)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


def _has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " avx2" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not _has_avx2(), reason="packed FMA needs AVX2 (x86-64 Linux)")
def test_the_row_exp_vectorises() -> None:
    x = np.random.default_rng(0).standard_normal((3, 50))
    buf = np.empty((2, 50))
    # A fresh compilation of the row loop (cached code cannot be inspected).
    fresh = njit(nogil=True, error_model="numpy")(_f64._exp_row.py_func)
    fresh(x, 0, 50, float(x[0].max()), buf)
    asm = "\n".join(fresh.inspect_asm().values())
    packed = re.findall(r"\bvfn?m(?:add|sub)\d+pd\s+%?[yz]mm", asm)
    assert len(packed) >= 20, "exp_neg_dd's loop is not vectorised"
