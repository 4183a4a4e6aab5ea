"""The compiled NumPy kernels (``logitkit._kernels``) against the portable path.

Every kernel result is compared with the portable Array-API path's
(``LOGITKIT_DISABLE_KERNELS=1``) with ``np.array_equal`` and the signs of
zeros. Where the two differ, the difference must be one ulp, rare, and the
kernel's value the correctly rounded one or as close to it (a double rounding
of a float64 intermediate lying within ~2**-52 of a float32 rounding
boundary): the exact value is taken from the float64 (double-double) portable
path of the same input.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import logitkit as lk
from logitkit import _kernels

pytest.importorskip("numba")

RNG = np.random.default_rng(20240611)
DIFFS: list[str] = []  # differences seen (reported at the end of the module)


CALLS: list[str] = []


def record_kernel_calls(
    monkeypatch: pytest.MonkeyPatch,
    calls: list[str],
    outs: list[Any] | None = None,
    *,
    suffix: bool = False,
) -> None:
    """Turn the kernels on and record each kernel run in `calls` (cleared).

    A run is recorded by the kernel's name without ``_serial``/``_parallel``
    (with it if `suffix`), and its arguments in `outs` when given (the arrays
    the kernel wrote). The test modules of the kernels share this fixture body.
    """
    monkeypatch.delenv("LOGITKIT_DISABLE_KERNELS", raising=False)
    assert _kernels.available()
    run = _kernels._run
    calls.clear()
    if outs is not None:
        outs.clear()

    def counting(kernels: Any, *args: Any) -> None:
        name = kernels[0].__name__
        calls.append(name if suffix else name.rsplit("_", 1)[0])
        if outs is not None:
            outs.append(args)
        run(kernels, *args)

    monkeypatch.setattr(_kernels, "_run", counting)


@pytest.fixture(autouse=True)
def _kernels_on(monkeypatch: pytest.MonkeyPatch) -> None:
    record_kernel_calls(monkeypatch, CALLS, suffix=True)


def portable(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    os.environ["LOGITKIT_DISABLE_KERNELS"] = "1"
    try:
        return fn(*args, **kwargs)
    finally:
        del os.environ["LOGITKIT_DISABLE_KERNELS"]


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place of `a`'s dtype."""
    a64 = a.astype(np.float64)
    return np.abs(a64 - b.astype(np.float64)) / np.spacing(np.abs(a)).astype(np.float64)


def assert_same(
    kern: Any, port: Any, exact: Callable[[], np.ndarray] | None = None, what: str = ""
) -> None:
    """Bit-identical, or rare one-ulp differences where the kernel is right."""
    kern, port = np.asarray(kern), np.asarray(port)
    assert kern.shape == port.shape
    assert kern.dtype == port.dtype
    nan = np.isnan(kern) & np.isnan(port)  # the sign of a NaN is not compared
    same = nan | ((kern == port) & (np.signbit(kern) == np.signbit(port)))
    if same.all():
        return
    bad = ~same
    u = _ulps(port[bad], kern[bad])
    assert np.all(np.isfinite(kern[bad])), what
    assert u.max() <= 1.0, (what, u.max())
    assert bad.sum() <= max(2, bad.size // 100_000), (what, int(bad.sum()))
    msg = f"{what}: {int(bad.sum())} of {bad.size} differ by 1 ulp"
    if exact is not None:
        ref = np.asarray(exact())[bad]
        err_k = _ulps(kern[bad], ref).max()
        err_p = _ulps(port[bad], ref).max()
        msg += f" (kernel {err_k:.6f} ulp, portable {err_p:.6f} ulp from exact)"
        assert err_k <= 0.5 + 1e-6, msg
    DIFFS.append(msg)


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if DIFFS:  # pragma: no cover - shown with -s / in the log
        print("\nkernel vs portable differences:\n  " + "\n  ".join(DIFFS))


def _exact64(fn: Callable[..., Any], x: np.ndarray, **kw: Any) -> Callable[[], Any]:
    """The float64 (double-double, portable) result of the float32 input."""
    return lambda: portable(fn, x.astype(np.float64), **kw)


def check_all(x: np.ndarray, axis: int = -1, *, what: str = "") -> None:
    """softmax, log_softmax, logsumexp and the sparse CE of `x` on both paths."""
    CALLS.clear()
    for fn in (lk.softmax, lk.log_softmax):
        exact = _exact64(fn, x, axis=axis) if x.dtype == np.float32 else None
        k = fn(x, axis=axis)
        assert_same(k, portable(fn, x, axis=axis), exact, f"{fn.__name__} {what}")
    exact = _exact64(lk.logsumexp, x, axis=axis) if x.dtype == np.float32 else None
    k = lk.logsumexp(x, axis=axis)
    assert_same(k, portable(lk.logsumexp, x, axis=axis), exact, f"logsumexp {what}")
    n = x.shape[axis]
    labels = RNG.integers(0, n, size=tuple(np.delete(x.shape, axis % x.ndim)))
    ce = lk.sparse_softmax_cross_entropy
    exact = _exact64(ce, x, labels=labels, axis=axis) if x.dtype == np.float32 else None
    k = ce(x, labels, axis=axis)
    assert_same(k, portable(ce, x, labels, axis=axis), exact, f"ce {what}")
    if x.dtype == np.float32 or _kernels._kernel(_kernels._load(), x.dtype, "softmax"):
        kinds = ("softmax", "log_softmax", "logsumexp", "sparse_ce")
        assert [c.rsplit("_", 1)[0] for c in CALLS] == list(kinds)


DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0])
@pytest.mark.parametrize("shape", [(64, 10), (300, 1000), (2, 5, 7)])
def test_random(dtype: Any, scale: float, shape: tuple[int, ...]) -> None:
    x = (RNG.standard_normal(shape) * scale).astype(dtype)
    check_all(x, what=f"randn*{scale} {shape} {np.dtype(dtype)}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_128000_classes(dtype: Any) -> None:
    x = (RNG.standard_normal((3, 128_000)) * 5).astype(dtype)
    check_all(x, what=f"128000 classes {np.dtype(dtype)}")


def _adversarial(dtype: Any) -> np.ndarray:
    n = 9
    big = float(np.finfo(dtype).max)
    eps = float(np.finfo(dtype).eps)
    rows = [
        [0.0, -np.inf, 1.0, -np.inf, 2.0, 0.5, -np.inf, 3.0, 0.0],  # masked
        [-np.inf] * n,  # all masked
        [0.0, np.nan, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],  # NaN
        [np.nan] * n,
        [-np.inf, np.nan] + [-np.inf] * (n - 2),
        [np.inf, 0.0, 1.0, np.inf, -np.inf, 2.0, 3.0, 4.0, 5.0],  # +inf shares
        [np.inf, np.nan, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        [1e30, -1e30, 1e30, 0.0, 1e29, -1e29, 1e30, 1.0, 2.0],  # huge
        [big, -big, big, 0.0, -big, 1.0, big * 0.5, -1.0, 3.0],
        [1.0 + k * eps for k in range(n)],  # tiny differences
        [0.0, 30.0, -5.0, -5.0, -5.0, -5.0, -5.0, -5.0, -5.0],  # confident
        [0.0, 200.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # log p = -200
        [2.0] * n,  # ties
        [-0.0, 0.0, -0.0, 0.0, -0.0, 0.0, -0.0, 0.0, -0.0],
        [1e-45, -1e-45, 1e-40, 0.0, 1e-38, 5e-324, -5e-324, 1e-300, 0.0],
        [-800.0, 0.0, -700.0, -745.0, -1e4, -104.0, -103.0, -88.0, -150.0],
        [5e3, -5e3, 4e3, 4.99e3, 0.0, 1.0, 2.0, -1.0, 4.999e3],
    ]
    with np.errstate(over="ignore"):
        return np.asarray(rows, dtype=np.float64).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adversarial(dtype: Any) -> None:
    with np.errstate(invalid="ignore"):
        check_all(_adversarial(dtype), what=f"adversarial {np.dtype(dtype)}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 15, 16, 47])
@pytest.mark.parametrize("parallel", [False, True])
def test_short_rows(
    dtype: Any, n: int, parallel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows of a few classes share a flat ``exp`` pass by blocks of rows.

    Several blocks (2048 elements each), special rows at the blocks' edges,
    and the parallel drivers (their chunks start inside a block).
    """
    if parallel:
        monkeypatch.setattr(_kernels, "_PARALLEL_MIN", 1000)
    per_block = max(1, 2048 // n)
    rows = 2 * per_block + 5
    x = (RNG.standard_normal((rows, n)) * 20).astype(dtype)
    adv = _adversarial(dtype)
    special = np.tile(adv, (1, -(-n // adv.shape[1])))[:, :n]
    at = sorted(
        {*range(4), *range(per_block - 3, per_block + 4)}
        | {*range(2 * per_block - 2, 2 * per_block + 3), rows - 3, rows - 2, rows - 1}
    )
    for k, i in enumerate(at):
        x[i] = special[k % len(special)]
    x[at[::2]] = x[at[::2]][:, ::-1]  # the special values elsewhere in the rows
    with np.errstate(invalid="ignore", over="ignore"):
        check_all(x, what=f"short rows n={n} {np.dtype(dtype)} parallel={parallel}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_class_and_single_row(dtype: Any) -> None:
    check_all(np.asarray([[3.0], [-np.inf], [np.inf], [0.0]], dtype=dtype), what="1")
    check_all(np.asarray([1.0, 2.0, 0.5], dtype=dtype), what="1-d")


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty(dtype: Any) -> None:
    for shape in [(0, 5), (5, 0), (0,)]:
        x = np.zeros(shape, dtype=dtype)
        for fn in (lk.softmax, lk.log_softmax, lk.logsumexp):
            assert_same(fn(x, axis=-1), portable(fn, x, axis=-1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_layouts(dtype: Any) -> None:
    base = (RNG.standard_normal((6, 40, 30)) * 4).astype(dtype)
    check_all(base[:, ::2, 1::3], axis=1, what="strided, axis 1")
    check_all(np.asfortranarray(base[0]), what="F-order")
    check_all(np.asfortranarray(base[0]), axis=0, what="F-order, axis 0")
    check_all(base, axis=0, what="axis 0")
    check_all(base[..., ::-1], axis=-1, what="reversed")
    x = base[1]
    for fn in (lk.softmax, lk.log_softmax):
        out = np.empty_like(x)
        assert fn(x, out=out) is out
        assert_same(out, portable(fn, x), what="out=")
        out_f = np.empty_like(x, order="F")
        assert fn(x, axis=0, out=out_f) is out_f
        assert_same(out_f, portable(fn, x, axis=0), what="out= F-order")
    for kw in [
        {"axis": None},
        {"axis": None, "keepdims": True},
        {"axis": (0, 1, 2)},
        {"axis": 1, "keepdims": True},
        {"axis": -1, "return_sign": True},
    ]:
        k = lk.logsumexp(base, **kw)
        p = portable(lk.logsumexp, base, **kw)
        for a, b in zip(
            k if isinstance(k, tuple) else (k,),
            p if isinstance(p, tuple) else (p,),
            strict=True,
        ):
            assert type(a) is type(b)
            assert_same(a, b, what=f"logsumexp {kw}")


def test_inputs_not_written() -> None:
    x = RNG.standard_normal((50, 100)).astype(np.float32)
    x0 = x.copy()
    lk.softmax(x)
    lk.sparse_softmax_cross_entropy(x, np.zeros(50, dtype=np.int64))
    assert np.array_equal(x, x0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_sparse_ce_options(dtype: Any, reduction: str) -> None:
    x = (RNG.standard_normal((200, 50)) * 3).astype(dtype)
    x[3] = -np.inf
    x[4, 7] = np.inf
    labels = RNG.integers(0, 50, 200).astype(np.int32)
    labels[::7] = -100
    # Rows 3 and 4 have an infinite loss unless ignored; the portable "mean"
    # warns on an infinite loss (div_dd of inf), so they are ignored here.
    labels[3:5] = -100
    ce = lk.sparse_softmax_cross_entropy
    for kw in [
        {"ignore_index": -100, "reduction": reduction},
        {"ignore_index": -100, "reduction": reduction, "axis": (1,)},
    ]:
        assert_same(ce(x, labels, **kw), portable(ce, x, labels, **kw), what=str(kw))
    all_ignored = np.full(200, -100)
    kw2 = {"ignore_index": -100, "reduction": reduction}
    assert_same(ce(x, all_ignored, **kw2), portable(ce, x, all_ignored, **kw2))
    ok = np.abs(labels[5:]) % 50
    assert_same(
        ce(x[5:], ok, reduction=reduction),
        portable(ce, x[5:], ok, reduction=reduction),
    )


@pytest.mark.parametrize(
    ("labels", "kw"),
    [
        (np.asarray([0, 5, 1]), {}),
        (np.asarray([0, -1, 1]), {}),
        (np.asarray([0, 5, -100]), {"ignore_index": -100}),
        (np.asarray([0.0, 1.0, 1.0]), {}),
        (np.asarray([0, 1]), {}),
        (np.asarray([0, 1, 1]), {"reduction": "avg"}),
        (np.asarray([0, 1, 1]), {"ignore_index": 1.5}),
    ],
)
def test_sparse_ce_errors_match(labels: np.ndarray, kw: dict[str, Any]) -> None:
    x = np.zeros((3, 4), dtype=np.float32)
    ce = lk.sparse_softmax_cross_entropy
    with pytest.raises((ValueError, TypeError)) as port_err:
        portable(ce, x, labels, **kw)
    with pytest.raises(type(port_err.value)) as kern_err:
        ce(x, labels, **kw)
    assert str(kern_err.value) == str(port_err.value)


def test_fallbacks_still_work() -> None:
    x = RNG.standard_normal((4, 6)).astype(np.float32)
    mask = RNG.random((4, 6)) > 0.3
    for fn in (lk.softmax, lk.log_softmax):
        assert_same(fn(x, where=mask), portable(fn, x, where=mask))
        assert_same(fn(x, temperature=2.0), portable(fn, x, temperature=2.0))
        assert_same(fn(x, axis=(0, 1)), portable(fn, x, axis=(0, 1)))
    assert_same(
        lk.softmax(x.astype(np.float16)), portable(lk.softmax, x.astype(np.float16))
    )
    with pytest.raises(ValueError, match="out"):
        lk.softmax(x, out=np.empty((4, 5), np.float32))
    with pytest.raises(IndexError):
        lk.softmax(x, axis=2)


def test_disable_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGITKIT_DISABLE_KERNELS", "1")
    assert not _kernels.available()
    x = np.asarray([[0.0, 1.0]], dtype=np.float32)
    assert_same(lk.softmax(x), portable(lk.softmax, x))


def _run(code: str, env: dict[str, str]) -> str:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    ).stdout


def test_import_does_not_load_numba() -> None:
    out = _run(
        "import sys, logitkit; print('numba' in sys.modules, 'llvmlite' in sys.modules)",
        {},
    )
    assert out.split() == ["False", "False"]


def test_cold_cache_first_call(tmp_path: Any) -> None:
    """A fresh NUMBA_CACHE_DIR: the first call compiles, then a new process reuses it."""
    code = """
        import time, numpy as np, logitkit as lk
        from logitkit import _kernels
        x = np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32)
        t = time.perf_counter(); y = lk.softmax(x); t = time.perf_counter() - t
        e = np.exp(x.astype(np.float64) - x.max(-1, keepdims=True))
        ok = np.allclose(y, e / e.sum(-1, keepdims=True), rtol=1e-6)
        print(_kernels.available(), ok, t)
    """
    env = {"NUMBA_CACHE_DIR": str(tmp_path), "LOGITKIT_DISABLE_KERNELS": "0"}
    cold = _run(code, env).split()
    assert cold[:2] == ["True", "True"]
    assert any(tmp_path.rglob("*.nbi"))
    warm = _run(code, env).split()
    assert warm[:2] == ["True", "True"]
    print(f"first call: cold cache {float(cold[2]):.2f} s, warm {float(warm[2]):.3f} s")


def test_thread_cap_and_concurrent_callers() -> None:
    """LOGITKIT_NUM_THREADS holds in every calling thread; threads may call at once."""
    code = """
        import threading, numba, numpy as np, logitkit as lk
        from logitkit import _kernels
        x = np.random.default_rng(1).standard_normal((512, 4096)).astype(np.float32)
        want = lk.softmax(x)  # large enough for the parallel kernel
        seen, same = [], []
        def work():
            y = lk.softmax(x)
            seen.append(numba.get_num_threads())
            same.append(bool(np.array_equal(y, want)))
        ts = [threading.Thread(target=work) for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        print(_kernels.available(), sorted(set(seen)), all(same))
    """
    out = _run(code, {"LOGITKIT_NUM_THREADS": "1", "LOGITKIT_DISABLE_KERNELS": "0"})
    assert out.split() == ["True", "[1]", "True"]


def test_float_axes_are_refused_as_by_the_portable_path() -> None:
    x = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(TypeError, match="tuple of ints"):
        lk.logsumexp(x, axis=(0.0, 1.0))


# ---------------------------------------------- panels of rows (issue 5)
#
# An input that is not C-contiguous with the classes last (axis 0, x.T,
# strided, a middle class axis) and an ``out=`` of another layout are copied
# (written back) a panel of rows at a time (``_kernels._PANEL_BYTES``), never
# as a whole. The panel size is made a few rows here: each result must be
# the portable path's, and bit for bit the kernel's on a C-contiguous copy
# with the classes last (what ran before panels, in one call).


def _panel_cases(dtype: Any) -> list[tuple[np.ndarray, int, str]]:
    base = (RNG.standard_normal((6, 40, 30)) * 4).astype(dtype)
    m = base[0]
    return [
        (base, 0, "axis 0"),
        (base, 1, "middle axis"),
        (base[:, ::2, 1::3], 1, "strided, middle axis"),
        (base[:, 1::3, ::2], -1, "strided, last axis"),
        (m.T, -1, "x.T"),
        (m, 0, "axis 0, 2-d"),
        (m[::-1, ::2], 0, "reversed, axis 0"),
        (np.asfortranarray(base), 2, "F-order 3-d"),
    ]


def _contiguous(
    fn: Callable[..., Any], x: np.ndarray, axis: int, *args: Any, **kw: Any
) -> Any:
    """`fn` of the C-contiguous copy of `x` with the classes last."""
    xc = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    return fn(xc, *args, axis=-1, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_panels_of_rows(dtype: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for x, axis, what in _panel_cases(dtype):
        n = x.shape[axis]
        monkeypatch.setattr(_kernels, "_PANEL_BYTES", 3 * n * x.itemsize)
        rows = x.size // n
        for fn in (lk.softmax, lk.log_softmax):
            CALLS.clear()
            k = fn(x, axis=axis)
            assert len(CALLS) == -(-rows // 3) > 1, (what, CALLS)
            want = np.moveaxis(_contiguous(fn, x, axis), -1, axis)
            assert np.array_equal(k, want), what
            assert_same(k, portable(fn, x, axis=axis), what=f"{fn.__name__} {what}")
            for order in ("C", "F"):
                out = np.full(x.shape, np.nan, dtype=dtype, order=order)
                assert fn(x, axis=axis, out=out) is out
                assert np.array_equal(out, want), (what, order)
            big = np.full((*x.shape[:-1], 2 * x.shape[-1]), np.nan, dtype=dtype)
            out = big[..., ::2]  # strided out=
            assert fn(x, axis=axis, out=out) is out
            assert np.array_equal(out, want), what
            assert np.isnan(big[..., 1::2]).all()
        want = _contiguous(lk.logsumexp, x, axis)
        for keepdims in (False, True):
            CALLS.clear()
            k = lk.logsumexp(x, axis=axis, keepdims=keepdims)
            assert len(CALLS) > 1, (what, CALLS)
            w = np.expand_dims(want, axis) if keepdims else want
            assert np.array_equal(k, w), what
            p = portable(lk.logsumexp, x, axis=axis, keepdims=keepdims)
            assert_same(k, p, what=f"logsumexp {what}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_panels_sparse_ce(
    dtype: Any, reduction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ce = lk.sparse_softmax_cross_entropy
    for x, axis, what in _panel_cases(dtype):
        n = x.shape[axis]
        monkeypatch.setattr(_kernels, "_PANEL_BYTES", 4 * n * x.itemsize)
        labels = RNG.integers(0, n, size=tuple(np.delete(x.shape, axis % x.ndim)))
        labels[..., ::5] = -100
        for kw in ({}, {"ignore_index": -100}):
            y = labels if kw else np.abs(labels) % n
            CALLS.clear()
            k = ce(x, y, axis=axis, reduction=reduction, **kw)
            assert y.size > 4
            assert ["sparse_ce_serial"] * -(-y.size // 4) == CALLS, what
            want = _contiguous(ce, x, axis, y, reduction=reduction, **kw)
            assert type(k) is type(want)
            assert np.array_equal(k, want), what
            p = portable(ce, x, y, axis=axis, reduction=reduction, **kw)
            assert_same(k, p, what=f"ce {what} {kw}")


def test_panels_parallel_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Panels large enough for the parallel kernel, rows split unevenly."""
    x = (RNG.standard_normal((37, 1000)) * 5).astype(np.float32).T  # 1000 rows
    monkeypatch.setattr(_kernels, "_PANEL_BYTES", 300 * 37 * 4)
    monkeypatch.setattr(_kernels, "_PARALLEL_MIN", 5000)
    run, rows = _kernels._run, []

    def counting(kernels: Any, r: int, n: int, *args: Any) -> None:
        rows.append(r)
        run(kernels, r, n, *args)

    monkeypatch.setattr(_kernels, "_run", counting)
    k = lk.log_softmax(x)
    assert rows == [300, 300, 300, 100]  # parallel kernels, then a serial one
    assert np.array_equal(k, _contiguous(lk.log_softmax, x, -1))


def test_panels_bound_the_extra_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """No copy of the input: NumPy's allocations (tracemalloc) stay at panels."""
    import tracemalloc

    x = RNG.standard_normal((2048, 4096)).astype(np.float32)  # 32 MiB
    out = np.empty_like(x.T)
    y0 = RNG.integers(0, 2048, 4096)
    monkeypatch.setattr(_kernels, "_PANEL_BYTES", 1 << 20)
    calls = [
        lambda: lk.softmax(x, axis=0, out=out.T),
        lambda: lk.log_softmax(x.T, out=out),
        lambda: lk.logsumexp(x, axis=0),
        lambda: lk.sparse_softmax_cross_entropy(x, y0, axis=0, reduction="mean"),
    ]
    for call in calls:
        call()  # compiled and warm
        tracemalloc.start()
        try:
            call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < x.nbytes // 8, peak


@pytest.mark.parametrize("fn", [lk.softmax, lk.log_softmax])
def test_out_overlapping_the_input_in_another_order(fn: Callable[..., Any]) -> None:
    """out= aliasing the input reversed: rows written before they are read
    would corrupt later panels (40000 rows: several); the result is made apart
    and copied in, as the portable path does. out is x itself stays in place."""
    b = RNG.standard_normal((40000, 64))
    want = fn(b[::-1].copy(), axis=1)
    assert fn(b[::-1], axis=1, out=b) is b
    assert np.array_equal(b, want)
    c = RNG.standard_normal((40000, 64)).astype(np.float32)
    want = fn(c.copy())
    CALLS.clear()
    assert fn(c, out=c) is c
    assert np.array_equal(c, want)
    assert len(CALLS) == 1
