"""The compiled sigmoid-family kernels against the portable path.

``sigmoid``, ``log_sigmoid``, ``softplus`` and ``sigmoid_cross_entropy``
(no ``pos_weight``, no smoothing) of NumPy float32/float64 arrays, and of
torch/JAX arrays through their NumPy views, compared with the portable path
(``LOGITKIT_DISABLE_KERNELS=1``) as ``tests/test_kernels.py`` compares the
softmax family: bit for bit and with the signs of zeros, or a rare one-ulp
difference where the kernel's float32 value is the correctly rounded one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import logitkit as lk
from logitkit import _kernels
from test_kernels import assert_same, portable, record_kernel_calls

pytest.importorskip("numba")

RNG = np.random.default_rng(20261203)
CALLS: list[str] = []
DTYPES = [np.float32, np.float64]
ACTIVATIONS = [lk.sigmoid, lk.log_sigmoid, lk.softplus]


@pytest.fixture(autouse=True)
def _count_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    record_kernel_calls(monkeypatch, CALLS)


def _exact64(fn: Callable[..., Any], *args: Any, **kw: Any) -> Callable[[], Any]:
    """The float64 (double-double, portable) result of float32 inputs."""
    return lambda: portable(fn, *(np.asarray(a, np.float64) for a in args), **kw)


def check(fn: Callable[..., Any], *args: Any, kind: str | None, **kw: Any) -> None:
    """The kernel ran (none for `kind` None), and gave the portable path's result."""
    CALLS.clear()
    with np.errstate(all="ignore"):  # NaN labels/logits in the portable sum
        k = fn(*args, **kw)
        want = [] if kind is None else [kind]
        if kind == "sigmoid_ce_sum" and [kind, "sigmoid_ce"] == CALLS:
            want = CALLS  # an infinite or NaN total: the portable reduction
        assert want == CALLS, (fn.__name__, CALLS)
        p = portable(fn, *args, **kw)
    assert type(k) is type(p)
    exact = _exact64(fn, *args, **kw) if args[0].dtype == np.float32 else None
    assert_same(k, p, exact, what=f"{fn.__name__} {args[0].dtype} {kw}")


def _adversarial(dtype: Any) -> np.ndarray:
    tiny = float(np.finfo(dtype).smallest_subnormal)
    big = float(np.finfo(dtype).max)
    eps = float(np.finfo(dtype).eps)
    values = [
        0.0, -0.0, np.inf, -np.inf, np.nan, tiny, -tiny, 1e-30, -1e-30, eps, -eps,
        big, -big, 1e30, -1e30, 1e300, -1e300,
        # exp(-|x|) turns subnormal / zero in float64 (and below -708 the
        # float32 kernel's exp gives 0)
        707.9, 708.0, 708.1, 709.78, 709.79, 744.4, 745.1, 745.2, 746.0, 800.0,
        -707.9, -708.0, -708.1, -709.78, -744.4, -745.1, -745.2, -746.0, -800.0,
        # float32 results turn subnormal or 0; sigmoid rounds to 1
        87.3, 88.7, 89.0, 103.0, 103.9, 104.0, 150.0,
        -87.3, -88.7, -89.0, -103.0, -103.9, -104.0, -150.0,
        16.6, 17.3, 36.7, 36.8, 37.0, -16.6, -17.3, -36.7, -36.8, -37.0,
        # log(w) switches at w = sqrt(2), i.e. exp(-|x|) = sqrt(2) - 1
        0.8813735870195429, 0.881373587019543, 0.8813735870195432,
        -0.8813735870195429, -0.881373587019543, -0.8813735870195432,
        0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 1e-8, -1e-8,
        # the float64 vector pass's domain: x = 0 or 2**-400 <= |x| <= 300
        2.0**-400, -(2.0**-400), 2.0**-401, -(2.0**-401), 1e-300, -1e-300,
        300.0, -300.0, 300.00000000000006, -300.00000000000006,
        299.99999999999994, -299.99999999999994, 336.0, -336.0, 670.0, -670.0,
        700.0, -700.0,
    ]  # fmt: skip
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float64).astype(dtype)


def _random(dtype: Any, n: int = 50_000) -> np.ndarray:
    scale = np.exp(RNG.uniform(-8.0, 6.5, n))  # |x| from ~1e-4 to ~700
    return (RNG.standard_normal(n) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", ACTIVATIONS, ids=lambda f: f.__name__)
def test_activations(dtype: Any, fn: Callable[..., Any]) -> None:
    check(fn, _random(dtype), kind=fn.__name__)
    check(fn, _adversarial(dtype), kind=fn.__name__)
    x = RNG.standard_normal((7, 9)).astype(dtype) * 20
    check(fn, x, kind=fn.__name__)
    check(fn, np.asfortranarray(x), kind=fn.__name__)
    check(fn, x[::2, 1::3], kind=fn.__name__)
    check(fn, np.asarray(x[0, 3]), kind=None)  # 0-d: portable
    out = np.empty_like(x)
    assert fn(x, out=out) is out
    assert_same(out, portable(fn, x))
    out_f = np.empty_like(x, order="F")
    assert fn(x, out=out_f) is out_f
    assert_same(out_f, portable(fn, x))


def test_activation_fallbacks_and_errors() -> None:
    x = RNG.standard_normal(10).astype(np.float32)
    for fn in ACTIVATIONS:
        CALLS.clear()
        for arg in (x.astype(np.float16), x.astype(np.int64), [1.0, 2.0], 3.0):
            assert_same(fn(arg), portable(fn, arg))
        assert_same(fn(x[:0]), portable(fn, x[:0]))
        assert CALLS == []
        for bad in (np.empty(9, np.float32), np.empty(10, np.float64), [0.0] * 10):
            with pytest.raises((ValueError, TypeError)) as port_err:
                portable(fn, x, out=bad)
            with pytest.raises(type(port_err.value)) as kern_err:
                fn(x, out=bad)
            assert str(kern_err.value) == str(port_err.value)


def _labels(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    y = RNG.random(shape)
    flat = y.reshape(-1)
    flat[::3] = np.round(flat[::3])  # hard labels
    flat[1::7] = RNG.choice([0.0, 1.0, 0.5, 1.5, -0.5], flat[1::7].shape)
    return y.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_sigmoid_cross_entropy(dtype: Any, reduction: str) -> None:
    ce = lk.sigmoid_cross_entropy
    kind = "sigmoid_ce" if reduction == "none" else "sigmoid_ce_sum"
    x = _random(dtype, 20_000)
    check(ce, x, _labels(x.shape, dtype), kind=kind, reduction=reduction)
    adv = _adversarial(dtype)
    for y in (0.0, 1.0, 0.5, 0.25, 2.0, -1.0):
        labels = np.full(adv.shape, y, dtype=dtype)
        if reduction != "none":  # a NaN or an inf loss would make the sum NaN
            keep = np.isfinite(adv)
            adv_r, labels = adv[keep], labels[keep]
        else:
            adv_r = adv
        check(ce, adv_r, labels, kind=kind, reduction=reduction)
    x2 = (RNG.standard_normal((30, 7)) * 5).astype(dtype)
    y2 = _labels(x2.shape, dtype)
    for xx, yy in [(np.asfortranarray(x2), y2), (x2[::2, ::-1], y2[::2, ::-1])]:
        check(ce, xx, yy, kind=kind, reduction=reduction)
    for yy in (y2 > 0.5, (y2 > 0.5).astype(np.int64), y2.astype(np.float32)):
        check(ce, x2, yy, kind=kind, reduction=reduction)
    x0, y0 = np.asarray(x2[0, 0]), np.asarray(y2[0, 0])
    check(ce, x0, y0, kind=None, reduction=reduction)  # 0-d: portable


def test_float64_vector_pass_and_fix_ups() -> None:
    """float64: elements of the vector pass and of the scalar fix-ups (tiny,
    large or non-finite logits; tiny labels) side by side in the same blocks
    of 512, in a serial and a parallel kernel call."""
    ce = lk.sigmoid_cross_entropy
    edges = _adversarial(np.float64)
    tiny = [5e-324, -5e-324, 1e-300, 2.0**-400, 2.0**-401, -(2.0**-401), 1e-310]
    big = [1e300, -1e300, 2.0**990, np.inf, -np.inf, np.nan, 1.0 - 2.0**-53]

    def strict(fn: Callable[..., Any], *args: Any, kind: str, **kw: Any) -> None:
        """Bit for bit (no ulp allowed), signs of zeros too; NaN where NaN."""
        CALLS.clear()
        with np.errstate(all="ignore"):
            k = np.asarray(fn(*args, **kw))
            assert [kind] == CALLS, (fn.__name__, CALLS)
            p = np.asarray(portable(fn, *args, **kw))
        nan = np.isnan(p)
        assert np.array_equal(np.isnan(k), nan)
        assert k[~nan].tobytes() == p[~nan].tobytes(), (fn.__name__, kw)

    for n in (3000, (1 << 20) + 7):  # serial, then parallel
        x = _random(np.float64, n)
        x[RNG.integers(0, n, 200)] = RNG.choice(edges, 200)
        y = _labels(x.shape, np.float64)
        y[RNG.integers(0, n, 100)] = RNG.choice(tiny, 100)
        for fn in ACTIVATIONS:
            strict(fn, x, kind=fn.__name__)
        strict(ce, x, y, kind="sigmoid_ce")
        keep = np.abs(x) < 1e30  # finite totals: the sum kernel's own result
        xf, yf = x[keep], y[keep]
        for reduction in ("mean", "sum"):
            strict(ce, xf, yf, kind="sigmoid_ce_sum", reduction=reduction)
        y[RNG.integers(0, n, 100)] = RNG.choice(big, 100)
        strict(ce, x, y, kind="sigmoid_ce")


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_total_is_reduced_as_the_portable_path(dtype: Any) -> None:
    """A total that is inf or NaN: the losses are stored and reduced as before."""
    ce = lk.sigmoid_cross_entropy
    x = np.asarray([1.0, -np.inf, 2.0, np.nan], dtype=dtype)
    y = np.asarray([0.0, 1.0, 0.5, 1.0], dtype=dtype)
    for reduction in ("mean", "sum"):
        for xx in (x[:3], x):
            CALLS.clear()
            with np.errstate(all="ignore"):
                k = ce(xx, y[: xx.size], reduction=reduction)
                p = portable(ce, xx, y[: xx.size], reduction=reduction)
            assert CALLS == ["sigmoid_ce_sum", "sigmoid_ce"]
            assert type(k) is type(p)
            assert_same(k, p)


def test_huge_finite_total() -> None:
    """A total above 2**990: the final division's split overflows (NaN) on
    both paths alike."""
    x = np.asarray([1e300, 2e300, 0.5])
    y = np.asarray([0.0, 0.25, 1.0])
    for reduction in ("mean", "sum"):
        check(
            lk.sigmoid_cross_entropy, x, y, kind="sigmoid_ce_sum", reduction=reduction
        )


def test_sigmoid_cross_entropy_nan_label() -> None:
    x = np.asarray([0.0, 1.0, -np.inf, np.inf, np.nan], dtype=np.float32)
    for y in (np.nan, 0.0, 1.0):
        labels = np.full(5, y, dtype=np.float32)
        check(lk.sigmoid_cross_entropy, x, labels, kind="sigmoid_ce")
        check(lk.sigmoid_cross_entropy, x.astype(np.float64), labels, kind="sigmoid_ce")


def test_sigmoid_cross_entropy_fallbacks_and_errors() -> None:
    ce = lk.sigmoid_cross_entropy
    x = RNG.standard_normal((4, 3)).astype(np.float32)
    y = _labels((4, 3), np.float32)
    CALLS.clear()
    for kw in [{"pos_weight": 2.0}, {"label_smoothing": 0.1}]:
        assert_same(ce(x, y, **kw), portable(ce, x, y, **kw))
    assert_same(ce(x, y.tolist()), portable(ce, x, y.tolist()))
    assert CALLS == []
    for labels, kw in [
        (y[:3], {}),
        (y, {"reduction": "avg"}),
        (y, {"label_smoothing": 2.0}),
        (y.astype(np.complex64), {}),
    ]:
        with pytest.raises((ValueError, TypeError)) as port_err:
            portable(ce, x, labels, **kw)
        with pytest.raises(type(port_err.value)) as kern_err:
            ce(x, labels, **kw)
        assert str(kern_err.value) == str(port_err.value)


def test_inputs_not_written() -> None:
    x = RNG.standard_normal(100).astype(np.float32)
    y = RNG.random(100).astype(np.float32)
    x0, y0 = x.copy(), y.copy()
    for fn in ACTIVATIONS:
        fn(x)
    lk.sigmoid_cross_entropy(x, y, reduction="mean")
    assert np.array_equal(x, x0)
    assert np.array_equal(y, y0)


def test_large_input_runs_in_parallel() -> None:
    x = (RNG.standard_normal(1 << 20) * 30).astype(np.float32)
    y = RNG.random(x.shape).astype(np.float32)
    for fn in ACTIVATIONS:
        check(fn, x, kind=fn.__name__)
    check(lk.sigmoid_cross_entropy, x, y, kind="sigmoid_ce_sum", reduction="mean")


@pytest.mark.parametrize("lib", ["torch", "jax"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_and_jax(lib: str, dtype: Any) -> None:
    if lib == "torch":
        torch = pytest.importorskip("torch")
        to: Callable[[np.ndarray], Any] = torch.from_numpy
    else:
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        to = jax.numpy.asarray
    xn = np.concatenate([_adversarial(dtype), _random(dtype, 300)])
    yn = _labels(xn.shape, dtype)
    x, y = to(xn), to(yn)
    calls = [(fn, (x,), (xn,), {}, fn.__name__) for fn in ACTIVATIONS]
    calls += [
        (lk.sigmoid_cross_entropy, (x, y), (xn, yn), {"reduction": r}, kind)
        for r, kind in (("none", "sigmoid_ce"), ("sum", "sigmoid_ce_sum"))
    ]
    for fn, args, args_np, kw, kind in calls:
        CALLS.clear()
        with np.errstate(all="ignore"):
            k = fn(*args, **kw)
            assert CALLS[:1] == [kind]  # (+ "sigmoid_ce": a NaN total)
            kn = fn(*args_np, **kw)
            p = portable(fn, *args, **kw)
        assert type(k) is type(p)
        assert k.dtype == p.dtype
        assert tuple(k.shape) == tuple(p.shape)
        k_np = np.asarray(k)
        assert np.array_equal(k_np, kn, equal_nan=True)  # the same kernel
        nan = np.isnan(k_np)
        assert np.array_equal(np.signbit(k_np[~nan]), np.signbit(kn[~nan]))
        # The signs of zeros are the NumPy path's (above); XLA's portable path
        # may give log_sigmoid(800) = +0.0 where NumPy's gives -0.0, and
        # flushes subnormal float64 results to 0 (``_dd.exp_dd``'s Notes):
        # compared with it where the exact result is normal.
        pp = np.asarray(p) + 0.0
        if lib == "jax":
            normal = ~(np.abs(kn) < np.finfo(dtype).tiny)
            k_np, pp = k_np[normal], pp[normal]
        assert_same(k_np + 0.0, pp, what=f"{lib} {fn.__name__}")


# ---------------------------------------------- panels (issue 5)
#
# Inputs, labels and ``out=`` arrays whose flat views are not free are
# copied (written back) a panel at a time (``_kernels._PANEL_BYTES``, made
# tiny here); the sums add the chunks of the one-pass kernel segment by
# segment. Each result must be the portable path's, and bit for bit what
# the one-pass kernels give on contiguous copies (float64 labels for
# integer ones: the portable path's astype).


def _one_pass(fn: Callable[..., Any], x: np.ndarray, *rest: Any, **kw: Any) -> Any:
    """`fn` on C-contiguous copies in `x`'s flat order (as before panels)."""
    f = x.flags.f_contiguous and not x.flags.c_contiguous
    args = [np.ascontiguousarray(a.T if f else a) for a in (x, *rest)]
    for i, a in enumerate(args[1:], 1):
        if a.dtype not in (np.float32, np.float64) or not a.dtype.isnative:
            args[i] = a.astype(np.float64)
    with np.errstate(all="ignore"):
        r = fn(*args, **kw)
    return r.T if f and np.ndim(r) else r


def _same_bits(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", ACTIVATIONS, ids=lambda f: f.__name__)
def test_panels_elementwise(
    dtype: Any, fn: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_kernels, "_PANEL_BYTES", 1000)
    x = _random(dtype, 12_000).reshape(60, 200)
    for xx in (x.T, x[::2, 1::3], x[::-1], np.asfortranarray(x), x.T[None]):
        CALLS.clear()
        k = fn(xx)
        copied = not (xx.flags.c_contiguous or xx.flags.f_contiguous)
        assert len(CALLS) > 1 if copied else [fn.__name__] == CALLS
        want = _one_pass(fn, xx)
        assert _same_bits(k, want)
        assert_same(k, portable(fn, xx))
        big = np.full((*xx.shape[:-1], 2 * xx.shape[-1]), np.nan, dtype=dtype)
        for out in (np.empty_like(xx, order="C"), np.empty_like(xx, order="F")):
            CALLS.clear()
            assert fn(xx, out=out) is out
            assert _same_bits(np.ascontiguousarray(out), np.ascontiguousarray(want))
        out = big[..., ::2]
        assert fn(xx, out=out) is out
        assert np.array_equal(out, want)
        assert np.isnan(big[..., 1::2]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("parallel", [False, True])
def test_panels_sigmoid_cross_entropy(
    dtype: Any, reduction: str, parallel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_kernels, "_PANEL_BYTES", 2048)
    if parallel:  # several chunks of the one-pass sum, each in segments
        monkeypatch.setattr(_kernels, "_PARALLEL_MIN", 1000)
    ce = lk.sigmoid_cross_entropy
    x = _random(dtype, 12_000).reshape(60, 200)
    y = _labels(x.shape, dtype)
    hard = y > 0.5
    cases = [
        (x.T, np.ascontiguousarray(y.T)),
        (x, np.asfortranarray(y)),
        (x[::2, 1::3], y[::2, 1::3]),
        (np.asfortranarray(x), y),
        (x, hard),
        (x, hard.astype(np.int8)),
        (x, hard.astype(np.int64)),
        (x, hard.astype(np.uint8)),
        (x.T, hard.T),
        (x, hard.astype(">i8")),
        (x, y.astype(np.float16)),
        (x.T, y.astype(np.float32).T),
    ]
    for xx, yy in cases:
        what = f"{xx.strides} {yy.dtype} {yy.strides}"
        CALLS.clear()
        k = ce(xx, yy, reduction=reduction)
        assert CALLS, what
        assert _same_bits(k, _one_pass(ce, xx, yy, reduction=reduction)), what
        exact = _exact64(ce, xx, yy, reduction=reduction)
        p = portable(ce, xx, yy, reduction=reduction)
        assert type(k) is type(p)
        assert_same(k, p, exact if dtype == np.float32 else None, what)
    x2 = x.T.copy(order="C").T  # F-ordered, labels C: the segmented sum
    x2[3, 7] = -np.inf  # an infinite loss: the losses stored, then reduced
    with np.errstate(all="ignore"):
        k = ce(x2, hard, reduction=reduction)
        assert_same(k, portable(ce, x2, hard, reduction=reduction))
    assert _same_bits(k, _one_pass(ce, x2, hard, reduction=reduction))


def test_panels_bound_the_extra_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """No copy of the input or the labels (tracemalloc sees NumPy's allocations)."""
    import tracemalloc

    x = RNG.standard_normal((2048, 4096)).astype(np.float32)  # 32 MiB
    hard = RNG.random((4096, 2048)) > 0.5
    hard_f = hard.T.astype(np.int8)  # F-ordered, as hard.T
    hard_c = np.ascontiguousarray(hard_f)
    out = np.empty_like(x.T)
    monkeypatch.setattr(_kernels, "_PANEL_BYTES", 1 << 20)
    calls = [
        lambda: lk.sigmoid(x.T, out=out),
        lambda: lk.sigmoid_cross_entropy(x.T, hard, reduction="mean"),
        lambda: lk.sigmoid_cross_entropy(x, hard.T, reduction="sum"),
        lambda: lk.sigmoid_cross_entropy(x, hard_f, reduction="sum"),
        lambda: lk.sigmoid_cross_entropy(x, hard_c, reduction="mean"),
    ]
    for i, call in enumerate(calls):
        call()  # compiled and warm
        tracemalloc.start()
        try:
            call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < x.nbytes // 8, (i, peak)


def test_out_overlapping_the_input_in_another_order() -> None:
    s = RNG.standard_normal(40000 * 64)
    want = lk.sigmoid(s[::-1].copy())
    assert lk.sigmoid(s[::-1], out=s) is s
    assert np.array_equal(s, want)
    t = RNG.standard_normal(1000)
    want = lk.softplus(t[:-1].copy())
    lk.softplus(t[:-1], out=t[1:])  # shifted by one element
    assert np.array_equal(t[1:], want)
