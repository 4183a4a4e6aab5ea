"""The per-row metrics of ``logitkit score`` for float32 logits.

``logitkit._score._logit_rows`` computes them with a compiled kernel
(``logitkit/_native/lk.c``) where it was built, else with NumPy in the
same arithmetic. Both are checked here against mpmath (each value within
0.5 ulp of float32 plus the float64 error of its computation) and against
each other (NumPy's ``exp`` against the kernel's polynomial and sums in
another order: the same float32 bits but for rare double roundings), on rows with ties,
masked classes, huge spreads and ignored labels, and the kernel's flagged rows
against the checker's errors.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
import pytest

from logitkit import _native
from logitkit._score import (
    ExactSums,
    MulticlassScorer,
    RowError,
    ScoreOptions,
    _Checker,
    _logit_rows,
)

if not _native.available():
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        msg = f"the compiled score kernels were not built: {_native._state}"
        raise RuntimeError(msg)
    pytest.skip(
        "the compiled score kernels were not built (no C compiler at install)",
        allow_module_level=True,
    )

RNG = np.random.default_rng(77)


def _rows(x: np.ndarray, y: np.ndarray, *, kernel: bool) -> Any:
    saved = os.environ.pop("LOGITKIT_DISABLE_KERNELS", None)
    if not kernel:
        os.environ["LOGITKIT_DISABLE_KERNELS"] = "1"
    try:
        return _logit_rows(x, y, _Checker(ScoreOptions()), 0)
    finally:
        os.environ.pop("LOGITKIT_DISABLE_KERNELS", None)
        if saved is not None:
            os.environ["LOGITKIT_DISABLE_KERNELS"] = saved


def _adversarial(n: int = 400, k: int = 37) -> tuple[np.ndarray, np.ndarray]:
    x = (RNG.standard_normal((n, k)) * 4).astype(np.float32)
    y = RNG.integers(0, k, n)
    x[0:50] *= 30  # confident rows: entropy and Brier ~ 1e-30 and below
    x[50:60] = 0.0  # uniform rows: every class tied
    x[60:80, :3] = x[60:80, 3:4]  # ties at arbitrary places
    x[80:100, 5] = -np.inf  # masked classes (not the label)
    y[80:100] = np.where(y[80:100] == 5, 4, y[80:100])
    x[100:120] = np.round(x[100:120])  # many ties
    x[120:140] += 1e30  # a huge offset: d_j lose nothing but the row's spread
    x[140:160] *= 1e-30  # near-uniform rows
    x[160:180, 0] = 1e4  # one class far above: S underflows to 0
    y[160:170] = 0  # ... and is the label
    top = np.argmax(x, axis=1)
    y[180:220] = top[180:220]  # the label is the arg-max
    return x, y


def _exact(x: np.ndarray, y: int) -> tuple[Any, Any, Any, Any]:
    """nll, entropy, Brier and max probability of one row, with mpmath."""
    with mpmath.workdps(80):
        v = [mpmath.mpf(float(t)) for t in x if t != -np.inf]
        lab = [j for j, t in enumerate(x) if t != -np.inf].index(y)
        m = max(v)
        e = [mpmath.exp(t - m) for t in v]
        z = mpmath.fsum(e)
        p = [t / z for t in e]
        nll = mpmath.log(z) - (v[lab] - m)
        ent = mpmath.fsum(-q * mpmath.log(q) for q in p if q > 0)
        brier = mpmath.fsum((q - (j == lab)) ** 2 for j, q in enumerate(p))
        return nll, ent, brier, max(p)


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "numpy"])
def test_against_mpmath(kernel: bool) -> None:
    x, y = _adversarial()
    got = _rows(x, y, kernel=kernel)
    worst = 0.0
    for i in range(len(x)):
        want = _exact(x[i], int(y[i]))
        for name, value, exact in zip(
            ("nll", "entropy", "brier", "conf"),
            (got.nll[i], got.entropy[i], got.brier[i], got.conf[i]),
            want,
            strict=True,
        ):
            assert value.dtype == np.float32, name
            exact32 = np.float32(float(exact))  # float(exact) is within 0.5 ulp64
            ulp = float(np.spacing(np.abs(exact32))) or float(np.spacing(np.float32(0)))
            err = abs(float(value) - float(exact)) / ulp
            worst = max(worst, err)
            assert err <= 0.5 + 1e-6, (i, name, value, exact)
    assert worst > 0.25  # the rows do exercise rounding


def test_kernel_and_numpy_agree() -> None:
    x, y = _adversarial(2000, 101)
    y[::7] = -1  # ignored rows are checked, their values unused
    a = _rows(x, y, kernel=True)
    b = _rows(x, y, kernel=False)
    np.testing.assert_array_equal(a.rank, b.rank)
    keep = y >= 0
    for name in ("nll", "entropy", "brier", "conf"):
        u, v = getattr(a, name)[keep], getattr(b, name)[keep]
        diff = u != v
        # a float64 sum in another order can round once more: 1 ulp, rarely
        assert diff.sum() <= 2, name
        np.testing.assert_array_max_ulp(u, v, maxulp=1)


def test_rank_is_the_position_among_the_scores() -> None:
    x = np.asarray([[1, 3, 3, 0], [1, 3, 3, 0], [1, 3, 3, 0], [5, 5, 5, 5]], np.float32)
    y = np.asarray([2, 1, 3, 3])
    for kernel in (True, False):
        assert _rows(x, y, kernel=kernel).rank.tolist() == [1, 0, 3, 3]


@pytest.mark.parametrize("ignored", [False, True])
@pytest.mark.parametrize(
    ("value", "expect"),
    [
        (np.nan, "row 5, column 2: nan; expected finite numbers or -inf"),
        (np.inf, "row 5, column 2: inf; expected finite numbers or -inf"),
        (-np.inf, "row 5: every logit is -inf; expected a class to predict"),
    ],
)
def test_bad_rows_give_the_checker_error(
    value: float, expect: str, ignored: bool
) -> None:
    x, _ = _adversarial(20, 6)
    y = np.zeros((20, 1), dtype=np.int64)
    if value == -np.inf:
        x[5] = value
    else:
        x[5, 2] = value
    if ignored:
        y[5] = -100
    scorer = MulticlassScorer(6, ScoreOptions(ignore_index=-100))
    with pytest.raises(RowError, match=expect.replace("(", r"\(")):
        scorer.update(x, y, 0)
    assert scorer.rows == 0  # nothing counted from a refused chunk


def test_float16_takes_the_float32_path() -> None:
    x, y = _adversarial(100, 10)
    x = np.clip(x, -6e4, 6e4).astype(np.float16)
    a = _rows(x, y, kernel=True)
    b = _rows(x.astype(np.float32), y, kernel=True)
    for name in a._fields:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def _sums(values: np.ndarray, groups: Any, n: int, *, kernel: bool) -> list[Any]:
    saved = os.environ.pop("LOGITKIT_DISABLE_KERNELS", None)
    if not kernel:
        os.environ["LOGITKIT_DISABLE_KERNELS"] = "1"
    try:
        s = ExactSums(n)
        for part in np.array_split(np.arange(values.size), 5):
            s.add(values[part], None if groups is None else groups[part])
        return [s.fraction(i) for i in range(n)]
    finally:
        os.environ.pop("LOGITKIT_DISABLE_KERNELS", None)
        if saved is not None:
            os.environ["LOGITKIT_DISABLE_KERNELS"] = saved


def test_exact_sums_kernel_equals_the_numpy_path() -> None:
    v = RNG.standard_normal(5000) * 10.0 ** RNG.integers(-320, 308, 5000)
    v[:10] = [
        0.0,
        -0.0,
        5e-324,
        -5e-324,
        2.2250738585072014e-308,
        1.7976931348623157e308,
        -1.7976931348623157e308,
        1.0,
        -1.0,
        2.0**-1074 * 3,
    ]
    g = RNG.integers(0, 7, v.size)
    assert _sums(v, None, 1, kernel=True) == _sums(v, None, 1, kernel=False)
    assert _sums(v, g, 7, kernel=True) == _sums(v, g, 7, kernel=False)
    assert _sums(v, None, 1, kernel=True)[0] == sum(Fraction(t) for t in v.tolist())


def test_exact_sums_kernel_refuses_non_finite_and_adds_nothing() -> None:
    s = ExactSums()
    s.add(np.asarray([1.5]))
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="finite values only"):
            s.add(np.asarray([2.0, bad]))
    assert s.value() == 1.5


def test_exact_sums_pickle_folds_the_pending_sums() -> None:
    s = ExactSums(2)
    s.add(np.asarray([0.1, 0.2, 0.3]), np.asarray([0, 1, 1]))
    t = pickle.loads(pickle.dumps(s))
    assert [t.fraction(i) for i in range(2)] == [
        Fraction(0.1),
        Fraction(0.2) + Fraction(0.3),
    ]
    t.add(np.asarray([1.0]), np.asarray([0]))
    assert t.fraction(0) == Fraction(0.1) + 1


def test_cli_same_metrics_with_and_without_the_kernel(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from logitkit._cli import main

    x, y = _adversarial(300, 12)
    np.save(tmp_path / "p.npy", x)
    np.save(tmp_path / "y.npy", y)
    outs = []
    for disable in ("0", "1"):
        monkeypatch.setenv("LOGITKIT_DISABLE_KERNELS", disable)
        args = ["score", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy")]
        assert main([*args, "--json", "--per-class", "--top-k", "3"]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    a, b = outs
    assert a["calibration"] == b["calibration"]
    assert a["metrics"]["accuracy"] == b["metrics"]["accuracy"]
    assert a["metrics"]["top_k_accuracy"] == b["metrics"]["top_k_accuracy"]
    for key in ("nll_sum", "nll_mean", "brier", "ece", "entropy_mean"):
        # exact sums of values equal but for a rare 1-ulp double rounding
        assert a["metrics"][key] == pytest.approx(b["metrics"][key], rel=1e-9), key


def test_npy_read_in_place_and_a_file_that_shrinks(tmp_path: Any) -> None:
    from logitkit._io import DataError, open_array

    x = RNG.standard_normal((1000, 16)).astype(np.float32)
    np.save(tmp_path / "p.npy", x)
    src = open_array(
        tmp_path / "p.npy", key=None, class_axis_of=lambda _shape: 1, what="predictions"
    )
    first = src.read(300)
    np.testing.assert_array_equal(first, x[:300])
    assert not first.flags.writeable  # a view of the read-only map, not a copy
    assert not first.flags.owndata
    second = src.read(300)  # the first read's pages are released, not its data
    np.testing.assert_array_equal(first, x[:300])
    np.testing.assert_array_equal(second, x[300:600])
    with open(tmp_path / "p.npy", "r+b") as fh:
        fh.truncate(fh.seek(0, 2) - 64 * 200)
    with pytest.raises(DataError, match=r"p\.npy: truncated: 1000 rows expected, \d+"):
        src.read(300)
    src.close()
    np.testing.assert_array_equal(second, x[300:600])  # views outlive the source


def test_rows_split_over_threads_give_the_same_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, y = _adversarial(999, 23)
    one = _rows(x, y, kernel=True)
    monkeypatch.setattr(_native, "_MIN_ROWS_PER_THREAD", 1)
    monkeypatch.setitem(_native._state, "threads", 3)
    monkeypatch.delitem(_native._state, "pool", raising=False)
    many = _rows(x, y, kernel=True)
    for name in one._fields:
        np.testing.assert_array_equal(getattr(one, name), getattr(many, name))


def test_labels_outside_the_rows_are_refused_before_the_kernel() -> None:
    x = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="labels of shape"):
        _native.score_rows_f32(x, np.asarray([0, 1, 9]))
    with pytest.raises(ValueError, match="labels of shape"):
        _native.score_rows_f32(x, np.asarray([0, 1]))
    with pytest.raises(ValueError, match="predictions of shape"):
        MulticlassScorer(10).update(x, np.asarray([[9]] * 3), 0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_scores_with_a_new_pool() -> None:
    # In a fresh interpreter: this one may hold other libraries' threads (JAX
    # warns at any fork).
    code = textwrap.dedent(
        """
        import os, signal, sys
        import numpy as np
        from logitkit import _native
        _native._MIN_ROWS_PER_THREAD = 1
        _native._state["threads"] = 2
        rng = np.random.default_rng(0)
        x = rng.standard_normal((300, 12)).astype(np.float32)
        y = rng.integers(0, 12, 300)
        want = _native.score_rows_f32(x, y)[0]  # the parent's pool is running
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if it scores (a hang is killed)
            signal.alarm(20)
            got = _native.score_rows_f32(x, y)[0]
            os._exit(0 if np.array_equal(got, want) else 1)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, timeout=120)
    assert done.returncode == 0


def test_exact_sums_fold_at_the_pending_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import logitkit._score as score

    v = RNG.standard_normal(50) * 10.0 ** RNG.integers(-300, 300, 50)
    g = RNG.integers(0, 3, 50)
    want = [
        sum((Fraction(t) for t, k in zip(v, g, strict=True) if k == i), Fraction(0))
        for i in range(3)
    ]
    monkeypatch.setattr(score, "_KERNEL_PENDING", 7)  # a fold every few adds
    s = ExactSums(3)
    for part in np.array_split(np.arange(50), 10):
        s.add(v[part], g[part])
    assert [s.fraction(i) for i in range(3)] == want
    with pytest.raises(ValueError, match="groups must lie in"):
        s.add(np.asarray([1.0]), np.asarray([3]))
    assert [s.fraction(i) for i in range(3)] == want
