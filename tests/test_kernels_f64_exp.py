"""The branch-free float64 exp of the kernels' hot loop (``_f64.exp_neg_dd``).

It replaces ``exp_dd`` where ``-670 <= d <= 0``: its high part must be
``exp_dd``'s (the correctly rounded value), its double-double within
``2**-86`` of it; the row loop must vectorise; below ``-670`` (results
under ``2**-966``, subnormal ones) the kernels keep ``exp_dd``'s values.
"""

from __future__ import annotations

import re
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
