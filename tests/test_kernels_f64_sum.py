"""The compensated row sum of the float64 kernels (``_f64._sum_span``).

``S = sum_{x_j != m} (e_hi_j + e_lo_j) + (t - 1)`` (``t`` the count of the
maxima): 32 vectorised running TwoSum sums on rows of 128 classes or more,
four scalar ones below. Checked against the exact (rational) sum of the
same ``exp`` parts: within ``2**-96`` (relative), normalised; the same
value at any offset of the flat buffers of the short-row path; the lanes'
loop runs on packed registers.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

pytest.importorskip("numba")

from numba import njit

from logitkit._kernels import _f64
from test_kernels_f64_exp import _has_avx2

_SHIFT = 1200  # every float64 times 2**1200 is an integer


def _exact(v: np.ndarray) -> int:
    """``sum(v) 2**1200`` exactly."""
    total = 0
    for a in v.tolist():
        num, den = float(a).as_integer_ratio()
        total += num * ((1 << _SHIFT) // den)
    return total


def _rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.stack(
        [
            rng.standard_normal(n),
            rng.standard_normal(n) * 10.0,
            rng.standard_normal(n) * 1000.0,  # S close to 0 (or exactly)
            rng.uniform(0.0, 1e-3, n),  # terms close to 1
            np.round(rng.standard_normal(n), 1),  # many ties of the maximum
            np.full(n, 0.3),  # all terms equal
            rng.uniform(-800.0, 0.0, n),  # exp_dd's range, subnormals
        ]
    )
    x[5, n // 2] = 0.30000001
    x[6, 0] = 0.0
    return x


@pytest.mark.parametrize("n", [1, 10, 127, 128, 161, 1001, 4127, 32000])
def test_sum_span_against_the_exact_sum(n: int) -> None:
    x = _rows(n, n)
    buf = np.empty((2, n))
    for i in range(x.shape[0]):
        m = float(x[i].max())
        _f64._exp_row(x, i, n, m, buf)
        keep = x[i] != m
        ties = int(n - keep.sum())
        exact = Fraction(
            _exact(buf[0][keep]) + _exact(buf[1][keep]) + ((ties - 1) << _SHIFT),
            1 << _SHIFT,
        )
        hi, lo = _f64._sum_span(x, i, n, m, buf[0], buf[1], 0)
        assert hi + lo == hi  # normalised
        assert _f64._sum_row(x, i, n, m, buf) == (hi, lo)
        err = abs(Fraction(hi) + Fraction(lo) - exact)
        assert err <= exact * Fraction(2) ** -96, (n, i, float(err / exact))


@pytest.mark.parametrize("n", [7, 200, 1000])
def test_sum_span_offset(n: int) -> None:
    """The flat buffers of ``_block_stats`` (row `r` from ``r n``): the same sums."""
    x = _rows(n, 3)
    rows = x.shape[0]
    e_hi = np.empty(rows * n)
    e_lo = np.empty(rows * n)
    buf = np.empty((2, n))
    for i in range(rows):
        m = float(x[i].max())
        _f64._exp_row(x, i, n, m, buf)
        e_hi[i * n : (i + 1) * n] = buf[0]
        e_lo[i * n : (i + 1) * n] = buf[1]
        want = _f64._sum_span(x, i, n, m, buf[0], buf[1], 0)
        assert _f64._sum_span(x, i, n, m, e_hi, e_lo, i * n) == want


@pytest.mark.skipif(not _has_avx2(), reason="packed adds need AVX2 (x86-64 Linux)")
def test_the_lanes_vectorise() -> None:
    x = np.random.default_rng(0).standard_normal(300)
    fresh: Any = njit(nogil=True, error_model="numpy")(_f64._sum_lanes.py_func)
    fresh(x, float(x.max()), x, x, 300)  # cached code cannot be inspected
    asm = "\n".join(fresh.inspect_asm().values())
    packed = re.findall(r"\bv(?:add|sub)pd\s+[^\n]*%[yz]mm", asm)
    assert len(packed) >= 16, "the lanes' loop is not vectorised"
    assert "gather" not in asm
