"""The fused loss + gradient kernels (``lk.grad.sparse_softmax_cross_entropy``).

One compiled kernel per dtype computes each row's loss and its gradient row
(``logitkit._kernels._f32`` / ``._f64``: ``sparse_ce_grad``). Compared here
with the portable path (``LOGITKIT_DISABLE_KERNELS=1``) as
``tests/test_kernels.py`` compares the forward kernels: ``np.array_equal``
with the signs of zeros (float64 always; float32 but for a rare one-ulp
double rounding where the kernel's value is the correctly rounded one), on
random and adversarial rows, every reduction, ``ignore_index``, class axis
0 and -1, F-ordered and strided input; and the kernel ran (a call counter).
Also: ``lk.grad.softmax_cross_entropy`` (dense labels: float32 logits with
integer labels, float64 logits with any real labels), and
the ``torch.autograd.Function`` of the sparse loss on tensors autograd tracks.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import logitkit as lk
from logitkit import _kernels
from test_kernels import _adversarial as _forward_adversarial
from test_kernels import assert_same, portable, record_kernel_calls

pytest.importorskip("numba")

RNG = np.random.default_rng(20261204)
CALLS: list[str] = []
DTYPES = [np.float32, np.float64]
REDUCTIONS = ["none", "mean", "sum"]
grad_ce = lk.grad.sparse_softmax_cross_entropy


@pytest.fixture(autouse=True)
def _count_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    record_kernel_calls(monkeypatch, CALLS)


def check(x: np.ndarray, labels: Any, what: str = "", **kw: Any) -> None:
    """Kernel (it ran, once) == portable path, loss and gradient."""
    CALLS.clear()
    with np.errstate(all="ignore"):
        loss, g = grad_ce(x, labels, **kw)
        assert CALLS == ["sparse_ce_grad"], CALLS
        p_loss, p_g = portable(grad_ce, x, labels, **kw)
    assert type(loss) is type(p_loss)
    assert g.shape == x.shape
    assert g.dtype == x.dtype
    what = f"{what} {x.dtype} {kw}"
    if x.dtype == np.float64:
        for k, p in [(loss, p_loss), (g, p_g)]:
            k, p = np.asarray(k), np.asarray(p)
            assert np.array_equal(k, p, equal_nan=True), what
            nan = np.isnan(k)
            assert np.array_equal(np.signbit(k[~nan]), np.signbit(p[~nan])), what
        return

    def exact_grad() -> Any:
        with np.errstate(all="ignore"):
            return portable(grad_ce, x.astype(np.float64), labels, **kw)[1]

    def exact_loss() -> Any:
        with np.errstate(all="ignore"):
            return portable(grad_ce, x.astype(np.float64), labels, **kw)[0]

    assert_same(loss, p_loss, exact_loss, f"loss {what}")
    assert_same(g, p_g, exact_grad, f"grad {what}")


def _labels(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shape = tuple(np.delete(x.shape, axis % x.ndim))
    return RNG.integers(0, x.shape[axis], size=shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0])
@pytest.mark.parametrize("shape", [(64, 10), (50, 1000), (6, 4000), (2, 5, 7)])
def test_random(dtype: Any, scale: float, shape: tuple[int, ...]) -> None:
    x = (RNG.standard_normal(shape) * scale).astype(dtype)
    y = _labels(x)
    for reduction in REDUCTIONS:
        check(x, y, f"randn*{scale} {shape}", reduction=reduction)
    ignored = y.copy()
    ignored.reshape(-1)[::3] = -100
    for reduction in REDUCTIONS:
        check(x, ignored, "ignored", reduction=reduction, ignore_index=-100)


@pytest.mark.parametrize("dtype", DTYPES)
def test_parallel_rows(dtype: Any) -> None:
    """Enough elements for the parallel kernel (``_PARALLEL_MIN``)."""
    x = (RNG.standard_normal((300, 4000)) * 8).astype(dtype)
    assert x.size >= _kernels._PARALLEL_MIN
    check(x, _labels(x), "parallel", reduction="mean")


def _adversarial(dtype: Any) -> np.ndarray:
    """test_kernels' rows, and ties at the maximum and confident rows."""
    n = 9
    extra = [
        [1.0, 3.0, 3.0, 0.0, 3.0, -1.0, 2.0, 3.0, -2.0],  # ties at the max
        [3.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 30.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # loss ~ 8e-13 at 1
        [-3.0, 33.0, 0.0, -1.0, 1.0, 2.0, -5.0, 0.0, 1.5],
        [0.0, 40.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0],
        [1e30, 1e30, -1e30, 1e30, 0.0, 1e29, 0.0, 0.0, 0.0],
        [np.inf, np.inf, 0.0, 1.0, np.inf, -np.inf, 0.0, 0.0, np.nan],
        [-np.inf, 0.0, -np.inf, -np.inf, -np.inf, -np.inf, -np.inf, -np.inf, -1.0],
        [-np.inf] * (n - 1) + [0.0],
    ]
    with np.errstate(over="ignore"):
        rows = np.asarray(extra, dtype=np.float64).astype(dtype)
    return np.concatenate([_forward_adversarial(dtype), rows])


@pytest.mark.parametrize("dtype", DTYPES)
def test_adversarial(dtype: Any) -> None:
    """Every label position of every adversarial row (ties, NaN, inf, masked)."""
    x = _adversarial(dtype)
    for c in range(x.shape[1]):
        y = np.full(x.shape[0], c)
        for reduction in REDUCTIONS:
            check(x, y, f"label {c}", reduction=reduction)
        y[::2] = -1
        check(x, y, f"label {c}, ignored", reduction="mean", ignore_index=-1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values(dtype: Any) -> None:
    """NaN rows are NaN, masked and ignored rows zero, a mean of nothing zero."""
    x = np.asarray(
        [
            [0.0, np.nan, 1.0],
            [-np.inf, -np.inf, -np.inf],
            [np.inf, 0.0, np.inf],
            [np.nan, 2.0, 3.0],
            [0.0, 30.0, 0.0],
        ],
        dtype=dtype,
    )
    y = np.asarray([0, 1, 2, -1, 1])
    with np.errstate(invalid="ignore"):
        loss, g = grad_ce(x, y, ignore_index=-1)
    assert np.isnan(g[0]).all()
    assert np.isnan(loss[0])
    assert np.array_equal(g[1], np.zeros(3))
    assert not np.signbit(g[1]).any()
    assert np.array_equal(g[2], np.asarray([0.5, 0.0, -0.5], dtype=dtype))
    assert np.array_equal(g[3], np.zeros(3))
    assert loss[3] == 0
    assert g[4, 1] < 0 < g[4, 0]
    assert g[4, 0] == -g[4, 1] / 2
    loss, g = grad_ce(x, np.full(5, -1), ignore_index=-1, reduction="mean")
    assert float(loss) == 0.0
    assert np.array_equal(g, np.zeros_like(x))
    assert not np.signbit(g).any()
    assert CALLS == ["sparse_ce_grad"] * 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_class_rows(dtype: Any) -> None:
    """One class: NaN gives a NaN gradient on both paths (the portable path gave 0)."""
    x = np.asarray([[np.nan], [2.0], [-np.inf], [np.inf]], dtype=dtype)
    check(x, np.zeros(4, dtype=np.int64), "one class")
    check(x, np.zeros(4, dtype=np.int64), "one class", reduction="mean")
    with np.errstate(invalid="ignore"):
        _, g = portable(grad_ce, x, np.zeros(4, dtype=np.int64), reduction="none")
    assert np.isnan(g[0, 0])
    assert np.array_equal(g[1:], np.zeros((3, 1), dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_layouts(dtype: Any) -> None:
    base = (RNG.standard_normal((6, 40, 30)) * 4).astype(dtype)
    cases = [
        (base[:, ::2, 1::3], 1, "strided, axis 1"),
        (np.asfortranarray(base[0]), -1, "F-order"),
        (np.asfortranarray(base[0]), 0, "F-order, axis 0"),
        (base, 0, "axis 0"),
        (base[..., ::-1], -1, "reversed"),
        (base[0, 0], -1, "1-d"),
        (base[0, 0], 0, "1-d, axis 0"),
    ]
    for x, axis, what in cases:
        for reduction in REDUCTIONS:
            check(x, _labels(x, axis), what, axis=axis, reduction=reduction)
    x = base[0]
    check(x, _labels(x).tolist(), "list labels")
    check(x, _labels(x).astype(np.uint8), "uint8 labels", reduction="sum")


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_loss_as_the_forward_kernel(dtype: Any) -> None:
    x = (RNG.standard_normal((30, 50)) * 5).astype(dtype)
    y = _labels(x)
    y[::4] = 7
    for reduction in REDUCTIONS:
        loss, _ = grad_ce(x, y, reduction=reduction, ignore_index=7)
        fwd = lk.sparse_softmax_cross_entropy(x, y, reduction=reduction, ignore_index=7)
        assert type(loss) is type(fwd)
        assert np.array_equal(loss, fwd)
    assert CALLS == ["sparse_ce_grad", "sparse_ce"] * 3


def test_options_take_the_portable_path() -> None:
    x = RNG.standard_normal((4, 5)).astype(np.float32)
    y = _labels(x)
    for kw in [
        {"label_smoothing": 0.1},
        {"z_loss": 1e-4},
        {"softcap": 30.0},
        {"temperature": 2.0},
        {"class_weights": np.ones(5)},
        {"where": np.ones((4, 5), bool)},
        {"axis": (0, 1)},
    ]:
        yy = 3 if kw.get("axis") == (0, 1) else y
        CALLS.clear()
        loss, g = grad_ce(x, yy, **kw)
        assert CALLS == []
        p_loss, p_g = portable(grad_ce, x, yy, **kw)
        assert np.array_equal(loss, p_loss)
        assert np.array_equal(g, p_g)
    x16 = x.astype(np.float16)
    grad_ce(x16, y)
    assert CALLS == []


def test_errors_are_the_portable_paths() -> None:
    x = np.zeros((3, 4), dtype=np.float32)
    for labels, kw in [
        (np.asarray([0, 5, 1]), {}),
        (np.asarray([0, -1, 1]), {}),
        (np.asarray([0, -1, 9]), {"ignore_index": -1}),
        (np.asarray([0.0, 1.0, 1.0]), {}),
        (np.asarray([0, 1]), {}),
        (np.asarray([0, 1, 1]), {"reduction": "avg"}),
    ]:
        with pytest.raises((ValueError, TypeError)) as port_err:
            portable(grad_ce, x, labels, **kw)
        with pytest.raises(type(port_err.value)) as kern_err:
            grad_ce(x, labels, **kw)
        assert str(kern_err.value) == str(port_err.value)


def test_confident_row_against_mpmath() -> None:
    """A confident right answer: loss and gradient ~1e-13, every digit kept."""
    mpmath = pytest.importorskip("mpmath")
    row = [0.0, 30.0, -1.0, -2.5, -7.0, -1.0]
    for dtype in DTYPES:
        x = np.asarray([row], dtype=dtype)
        loss, g = grad_ce(x, np.asarray([1]))
        with mpmath.workprec(200):
            xs = [mpmath.mpf(float(v)) for v in x[0]]
            z = mpmath.fsum(mpmath.exp(v) for v in xs)
            p = [mpmath.exp(v) / z for v in xs]
            want_g = [float(pj - (1 if j == 1 else 0)) for j, pj in enumerate(p)]
            want_loss = float(mpmath.log(z) - xs[1])
        assert 1e-13 < want_loss < 1e-12
        tol = 0.5 if dtype == np.float32 else 1.0
        ulp = np.spacing(np.abs(np.asarray(want_g, dtype=dtype))).astype(np.float64)
        err = np.abs(g[0].astype(np.float64) - np.asarray(want_g)) / ulp
        assert err.max() <= tol, err
        loss_ulp = float(np.spacing(dtype(want_loss)))
        assert abs(float(loss[0]) - want_loss) <= tol * loss_ulp


def test_torch_and_jax_without_autograd() -> None:
    """Arrays the forward kernels view (no autograd, no tracing) qualify too."""
    torch = pytest.importorskip("torch")
    xn = (RNG.standard_normal((20, 30)) * 3).astype(np.float32)
    yn = _labels(xn)
    want_loss, want_g = grad_ce(xn, yn, reduction="mean")
    loss, g = grad_ce(torch.from_numpy(xn), torch.from_numpy(yn), reduction="mean")
    assert type(g) is torch.Tensor
    assert g.dtype == torch.float32
    assert np.array_equal(loss.numpy(), want_loss)
    assert np.array_equal(g.numpy(), want_g)
    jnp = pytest.importorskip("jax.numpy")
    loss, g = grad_ce(jnp.asarray(xn), jnp.asarray(yn), reduction="mean")
    assert np.array_equal(np.asarray(g), want_g)
    assert np.array_equal(np.asarray(loss), want_loss)
    assert CALLS == ["sparse_ce_grad"] * 3


# ----------------------------------------------- torch autograd (CPU tensors)


def _torch() -> Any:
    return pytest.importorskip("torch")


def _torch_grad(
    xn: np.ndarray, yn: np.ndarray, go: Any = None, **kw: Any
) -> tuple[Any, Any]:
    """(loss, x.grad) of a tensor requiring grad, and check the kernels ran."""
    torch = _torch()
    x = torch.tensor(xn, requires_grad=True)
    CALLS.clear()
    with np.errstate(all="ignore"):
        loss = lk.sparse_softmax_cross_entropy(x, torch.from_numpy(yn), **kw)
        assert CALLS == ["sparse_ce_fwd"]
        assert loss.requires_grad
        loss.backward(go)
    assert CALLS == ["sparse_ce_fwd", "sparse_ce_bwd"]
    assert x.grad.dtype == x.dtype
    return loss.detach(), x.grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_backward_is_the_numpy_gradient(dtype: Any, reduction: str) -> None:
    """``loss.backward()`` == ``lk.grad`` on NumPy, bit for bit."""
    torch = _torch()
    cases = [
        ((RNG.standard_normal((40, 300)) * 6).astype(dtype), -1),
        ((RNG.standard_normal((30, 20)) * 3).astype(dtype), 0),
        (_adversarial(dtype), -1),
    ]
    for xn, axis in cases:
        yn = _labels(xn, axis)
        yn[::3] = -100
        kw: dict[str, Any] = {"axis": axis, "ignore_index": -100}
        kw["reduction"] = reduction
        tdtype = getattr(torch, xn.dtype.name)
        go = None if reduction != "none" else torch.ones(yn.shape, dtype=tdtype)
        loss, g = _torch_grad(xn, yn, go, **kw)
        with np.errstate(all="ignore"):
            want_loss, want_g = grad_ce(xn, yn, **kw)
        assert np.array_equal(loss.numpy(), want_loss, equal_nan=True)
        assert np.array_equal(g.numpy(), want_g, equal_nan=True)
        nan = np.isnan(want_g)
        assert np.array_equal(np.signbit(g.numpy()[~nan]), np.signbit(want_g[~nan]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_close_to_the_portable_autograd(dtype: Any, reduction: str) -> None:
    """A non-uniform incoming gradient; the portable path's torch autograd agrees."""
    torch = _torch()
    xn = (RNG.standard_normal((16, 2, 50)) * 4).astype(dtype)
    yn = _labels(xn)
    yn[0, 1] = 7
    kw: dict[str, Any] = {"reduction": reduction, "ignore_index": 7}
    shape = yn.shape if reduction == "none" else ()
    go = torch.tensor(RNG.standard_normal(shape) * 3, dtype=torch.float64)
    go = go.to(getattr(torch, xn.dtype.name))
    loss, g = _torch_grad(xn, yn, go, **kw)
    x = torch.tensor(xn, requires_grad=True)
    p_loss = portable(lk.sparse_softmax_cross_entropy, x, torch.from_numpy(yn), **kw)
    p_loss.backward(go)
    assert_same(loss.numpy(), p_loss.detach().numpy(), what="torch loss")
    rtol, atol = (2e-7, 1e-9) if dtype == np.float32 else (1e-13, 1e-16)
    np.testing.assert_allclose(g.numpy(), x.grad.numpy(), rtol=rtol, atol=atol)
    if dtype == np.float64:  # the same products as NumPy's gradient, one rounding
        _, want = grad_ce(xn, yn, **{**kw, "reduction": "sum"})
        scale = np.broadcast_to(go.numpy(), yn.shape)[..., None]  # float64 here
        if reduction == "mean":
            scale = scale * (1.0 / np.count_nonzero(yn != 7))
        assert np.array_equal(g.numpy(), want * scale)


def test_torch_gradcheck_and_double_backward() -> None:
    """gradcheck; a second derivative (``create_graph``) by the portable path."""
    torch = _torch()
    x = torch.tensor(RNG.standard_normal((3, 5)) * 2, requires_grad=True)
    y = torch.tensor([0, 4, -1])
    for reduction in REDUCTIONS:

        def f(t: Any, reduction: str = reduction) -> Any:
            return lk.sparse_softmax_cross_entropy(
                t, y, reduction=reduction, ignore_index=-1
            )

        CALLS.clear()
        assert torch.autograd.gradcheck(f, (x,))
        assert torch.autograd.gradgradcheck(f, (x,))
        assert "sparse_ce_fwd" in CALLS
        assert "sparse_ce_bwd" in CALLS
        loss = f(x)
        (g,) = torch.autograd.grad(loss.sum(), x, create_graph=True)
        (h,) = torch.autograd.grad((g * g).sum(), x)
        x2 = x.detach().clone().requires_grad_()
        p_loss = portable(f, x2)
        (p_g,) = torch.autograd.grad(p_loss.sum(), x2, create_graph=True)
        (p_h,) = torch.autograd.grad((p_g * p_g).sum(), x2)
        torch.testing.assert_close(g, p_g, rtol=1e-13, atol=1e-16)
        torch.testing.assert_close(h, p_h, rtol=1e-13, atol=1e-16)


def test_torch_what_keeps_the_portable_path() -> None:
    """torch.func transforms, options, foreign labels: no kernel; values agree."""
    torch = _torch()
    xn = RNG.standard_normal((4, 6))
    x = torch.tensor(xn, requires_grad=True)
    y = torch.tensor([0, 5, 2, 1])
    ce = lk.sparse_softmax_cross_entropy
    CALLS.clear()
    g = torch.func.grad(lambda t: ce(t, y, reduction="sum"))(x.detach())
    torch.func.vmap(lambda t: ce(t, y))(torch.stack([x.detach()] * 2))
    ce(x, y, label_smoothing=0.1).sum().backward()
    ce(x, y.numpy()).sum().backward()  # NumPy labels for torch logits
    ce(x.to(torch.float16), y).sum().backward()
    fwd_ad = torch.autograd.forward_ad
    with warnings.catch_warnings(), fwd_ad.dual_level():  # forward mode: portable
        warnings.simplefilter("ignore", DeprecationWarning)  # torch's jit decomps
        tangent = torch.ones_like(x)
        dual_loss = ce(fwd_ad.make_dual(x, tangent), y, reduction="sum")
        jvp = fwd_ad.unpack_dual(dual_loss).tangent
    assert CALLS == []
    _, want = grad_ce(xn, y.numpy(), reduction="sum")
    np.testing.assert_allclose(g.numpy(), want, rtol=1e-13, atol=1e-16)
    assert float(jvp.detach()) == pytest.approx(float(want.sum()), abs=1e-12)


def test_torch_parameter_layouts_and_in_place() -> None:
    torch = _torch()
    base = torch.tensor(RNG.standard_normal((30, 8)), dtype=torch.float32)
    p = torch.nn.Parameter(base.clone())
    y = torch.tensor(RNG.integers(0, 30, 8))
    CALLS.clear()
    lk.sparse_softmax_cross_entropy(p.T, y, reduction="mean").backward()
    assert CALLS == ["sparse_ce_fwd", "sparse_ce_bwd"]
    _, want = grad_ce(base.numpy(), y.numpy(), axis=0, reduction="mean")
    assert np.array_equal(p.grad.numpy(), want)
    x = base.clone().requires_grad_()
    loss = lk.sparse_softmax_cross_entropy(x[:, ::2], y[::2], axis=0).sum()
    x.grad = None
    loss.backward()
    _, want = grad_ce(base.numpy()[:, ::2], y.numpy()[::2], axis=0)
    assert np.array_equal(x.grad.numpy()[:, ::2], want)
    assert not x.grad.numpy()[:, 1::2].any()
    w = base.clone().requires_grad_()
    h = w * 1.0
    loss = lk.sparse_softmax_cross_entropy(h.T, y).sum()
    with torch.no_grad():
        h.add_(1.0)  # changed after the forward: autograd refuses
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    labels = y.clone()
    loss = lk.sparse_softmax_cross_entropy(w, labels, axis=0, reduction="sum")
    labels.fill_(0)  # the caller reuses its labels buffer before the backward
    loss.backward()
    _, want = grad_ce(base.numpy(), y.numpy(), axis=0, reduction="sum")
    assert np.array_equal(w.grad.numpy(), want)


# ------------------------------------------------------------ dense labels

dense_ce = lk.grad.softmax_cross_entropy


def _dense_kernel_takes(x: np.ndarray, labels: Any) -> bool:
    """float32 logits: integer and bool labels; float64: any real labels."""
    if type(labels) is not np.ndarray:
        return False
    kind = labels.dtype.kind
    return kind in ("i", "u", "b") or (kind == "f" and x.dtype == np.float64)


def _assert_bits(kern: Any, port: Any, what: str) -> None:
    """The same values, signs of zeros too (NaN equal to NaN)."""
    k, p = np.asarray(kern), np.asarray(port)
    assert k.shape == p.shape, what
    assert np.array_equal(k, p, equal_nan=True), what
    nan = np.isnan(k)
    assert np.array_equal(np.signbit(k[~nan]), np.signbit(p[~nan])), what


def check_dense(x: np.ndarray, labels: Any, what: str = "", **kw: Any) -> None:
    """The portable path's loss and gradient, by the kernel where it takes them.

    float32 logits: integer or bool labels (float labels keep the portable
    path: its label sums are NumPy sums in an order that kernel does not
    follow, see ``test_dense_float_labels_keep_the_portable_path``); float64
    logits: any real labels, bit for bit (that kernel follows NumPy's order).
    """
    CALLS.clear()
    with np.errstate(all="ignore"):
        loss, g = dense_ce(x, labels, **kw)
        want = ["dense_ce_grad"] if _dense_kernel_takes(x, labels) else []
        assert want == CALLS, CALLS
        p_loss, p_g = portable(dense_ce, x, labels, **kw)
    assert type(loss) is type(p_loss)
    assert g.shape == x.shape
    assert g.dtype == x.dtype
    # lk.softmax_cross_entropy: the same kernel (gradient dropped), the same loss
    CALLS.clear()
    with np.errstate(all="ignore"):
        fwd = lk.softmax_cross_entropy(x, labels, **kw)
        assert want == CALLS, CALLS
    assert type(fwd) is type(loss)
    _assert_bits(fwd, loss, f"dense forward {what} {kw}")
    if x.dtype == np.float64:
        _assert_bits(loss, p_loss, f"dense loss {what} {kw}")
        _assert_bits(g, p_g, f"dense grad {what} {kw}")
        return

    def exact(i: int) -> Any:
        x64 = x.astype(np.float64)
        return lambda: portable(dense_ce, x64, labels, **kw)[i]

    with np.errstate(all="ignore"):
        assert_same(loss, p_loss, exact(0), f"dense loss {what} {kw}")
        assert_same(g, p_g, exact(1), f"dense grad {what} {kw}")


def _soft(shape: tuple[int, ...], axis: int = -1) -> np.ndarray:
    return np.asarray(lk.softmax(RNG.standard_normal(shape) * 3, axis=axis))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0])
@pytest.mark.parametrize("shape", [(64, 10), (50, 1000), (6, 4000), (2, 5, 7)])
def test_dense_random(dtype: Any, scale: float, shape: tuple[int, ...]) -> None:
    x = (RNG.standard_normal(shape) * scale).astype(dtype)
    onehot = np.eye(shape[-1])[RNG.integers(0, shape[-1], shape[:-1])]
    soft = _soft(shape)
    for labels in [onehot, soft, soft.astype(np.float32), onehot.astype(np.int8)]:
        for reduction in REDUCTIONS:
            check_dense(x, labels, f"{shape} {labels.dtype}", reduction=reduction)
    check_dense(x, onehot.astype(bool), "bool labels")
    counts = RNG.integers(0, 4, shape)  # several nonzero labels per row
    check_dense(x, counts, "counts", reduction="sum")
    distilled = np.asarray(lk.softmax(x.astype(np.float64) * 0.9))  # p ~ y
    check_dense(x, distilled, "distillation", reduction="mean")


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_parallel_rows(dtype: Any) -> None:
    x = (RNG.standard_normal((300, 4000)) * 8).astype(dtype)
    assert x.size >= _kernels._PARALLEL_MIN
    onehot = np.eye(x.shape[1], dtype=np.int8)[RNG.integers(0, x.shape[1], len(x))]
    check_dense(x, onehot, "parallel", reduction="mean")
    if dtype == np.float64:
        check_dense(x, _soft(x.shape), "parallel, soft labels", reduction="sum")


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_adversarial(dtype: Any) -> None:
    """Special rows against one-hot labels on every position, and odd labels."""
    x = _adversarial(dtype)
    n = x.shape[1]
    for c in range(n):
        labels = np.zeros(x.shape)
        labels[:, c] = 1.0
        check_dense(x, labels, f"one-hot {c}")
        check_dense(x, (labels > 0).astype(np.int64), f"one-hot {c}", reduction="mean")
    odd = _soft(x.shape)
    odd[0] = 0.0  # no label mass at all
    odd[1, 0] = np.nan
    odd[2, 3] = np.inf
    odd[3] = -odd[3]  # negative labels
    odd[4, ::2] = 0.0
    odd[5] = 1e30
    odd[6] = -0.0
    odd[7, :2] = [1e300, -1e300]  # products not split (above 2**990)
    odd[8] = 3.0
    odd[9, 4] = -np.inf
    for reduction in REDUCTIONS:
        check_dense(x, odd, "odd labels", reduction=reduction)
        check_dense(x[7:], _soft(x[7:].shape), "soft", reduction=reduction)
        check_dense(x, RNG.integers(0, 3, x.shape), "counts", reduction=reduction)


def test_dense_float64_special_rows() -> None:
    """Single classes, ties, signed zeros, infinities, NaN rows; the labels
    one class or many, zero, negative, huge."""
    x = np.asarray(
        [
            [0.0, -0.0, -0.0, -1.0],  # ties at 0 of both signs
            [-0.0, -0.0, -5.0, -800.0],
            [np.inf, 1.0, np.inf, -np.inf],
            [-np.inf, -np.inf, -np.inf, -np.inf],
            [np.nan, 0.0, 1.0, 2.0],
            [1e308, -1e308, 0.0, 1.0],  # x - m overflows
            [5.0, 5.0, 5.0, 5.0],
            [0.0, 800.0, 0.0, 0.0],  # S = 0 and L = 0
            [-745.5, 0.0, -700.0, -1e-300],  # exp's slow and subnormal range
        ]
    )
    rows, n = x.shape
    labels = [
        np.eye(n)[np.arange(rows) % n],
        np.eye(n)[(np.arange(rows) + 1) % n] * -2.0,
        np.full(x.shape, 0.25),
        np.full(x.shape, -0.0),
        np.asarray([[0.5, 0.0, 0.0, 0.5]] * rows),
        np.full(x.shape, 1e300),
        np.full(x.shape, 2**60, dtype=np.int64),  # sums of huge integers round
    ]
    for y in labels:
        for reduction in REDUCTIONS:
            check_dense(x, y, f"special rows, labels {y[0]}", reduction=reduction)
    for i in range(rows):  # 1-d: a 0-d loss (NumPy's scalar, as the portable path)
        check_dense(x[i], labels[0][i], f"1-d row {i}")
        check_dense(x[i], labels[2][i], f"1-d row {i}", reduction="sum")
    one = np.asarray([[np.nan], [2.0], [-np.inf], [np.inf], [-0.0]])
    for y in (
        np.ones((5, 1)),
        np.full((5, 1), -3.0),
        np.zeros((5, 1)),
        np.ones((5, 1), bool),
    ):
        for reduction in REDUCTIONS:
            check_dense(one, y, "one class", reduction=reduction)


def test_dense_float64_huge_integer_labels_in_numpys_order() -> None:
    """Label sums that round (integers above 2**53) in either order NumPy takes:
    pairwise along C-ordered rows, one term at a time along F-ordered ones."""
    x = RNG.standard_normal((40, 300))
    y = RNG.integers(2**55, 2**60, x.shape) * RNG.integers(0, 2, x.shape)
    for labels in (
        y,
        np.asfortranarray(y),
        y.astype(np.float64),
        np.asfortranarray(y * 1.0),
    ):
        for reduction in REDUCTIONS:
            check_dense(
                x, labels, f"{labels.dtype} {labels.strides}", reduction=reduction
            )


def test_dense_float64_cancelling_labels_take_the_portable_path() -> None:
    """Signed labels summing to 0 cancel ``L`` in the loss, which then lies
    on a tie often (a quarter of these rows) and is rounded by the last bits
    of ``S``'s low part, not the kernel's: the kernel flags such rows and
    the call takes the portable path."""
    from logitkit._kernels import _f64

    x = RNG.standard_normal((200, 3)) * 5
    y = RNG.integers(-3, 4, x.shape).astype(np.float64)
    y[:, 2] = -(y[:, 0] + y[:, 1])  # every row sums to 0
    rows = len(x)
    loss, lo, grad = np.empty(rows), np.empty(rows), np.empty_like(x)
    flag = np.zeros(rows, dtype=np.uint8)
    _f64.dense_ce_grad_serial(x, y, np.ones(rows), loss, grad, lo, flag, False, 1)
    multi = (y != 0).sum(1) >= 2
    assert np.array_equal(flag, multi.astype(np.uint8))
    for reduction in REDUCTIONS:
        check_dense(x, y, "cancelling labels", reduction=reduction)
        check_dense(x[~multi], y[~multi], "one label or none", reduction=reduction)
    y[:, 2] += 1e-3  # no longer cancelling: the kernel's answer
    flag[:] = 1
    _f64.dense_ce_grad_serial(x, y, np.ones(rows), loss, grad, lo, flag, False, 1)
    assert not flag.any()
    check_dense(x, y, "not cancelling")
    y[0, 0] = 2.0**53  # (bit 2: the sums of row 0 may round)
    _f64.dense_ce_grad_serial(x, y, np.ones(rows), loss, grad, lo, flag, False, 1)
    assert flag[0] == 2
    assert not flag[1:].any()


def test_dense_layouts_float64_labels_and_sum_order() -> None:
    """The label sum ``Y`` follows NumPy's order: the kernel's answer for it
    (``_kernels._sum_order``) against ``np.sum`` on random layouts."""
    from logitkit._kernels import _f64

    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(400):
        nd = int(rng.integers(1, 5))
        shape = tuple(int(s) for s in rng.integers(1, 9, nd))
        if rng.random() < 0.3:
            shape = (*shape[:-1], int(rng.integers(100, 300)))
        big = [2 * s for s in shape]
        base = rng.standard_normal(big) * 10.0 ** rng.integers(-8, 8, big)
        steps = tuple(slice(None, None, int(rng.choice([1, 2, -1]))) for _ in shape)
        v = np.transpose(base, rng.permutation(nd))[steps]
        v = v[tuple(slice(0, s) for s in (*v.shape[:-1], shape[-1]))]
        if rng.random() < 0.3:
            v = np.asfortranarray(v)
        seq = _kernels._sum_order(v)
        if seq is None:
            continue
        seen.add(seq)
        c = np.ascontiguousarray(v).reshape(-1, v.shape[-1])
        got = [_f64._np_sum(row, len(row), seq, -1) for row in c]
        want = np.sum(v, axis=-1).reshape(-1)
        assert np.array_equal(np.asarray(got), want), (v.shape, v.strides)
    assert seen == {False, True}
    for n in [*range(1, 300), 1000, 4097, 32000, 100003]:  # NumPy's pairwise sum
        a = rng.standard_normal(n) * 10.0 ** rng.integers(-5, 5, n)
        k = int(rng.integers(0, n))
        assert _f64._np_sum(a, n, False, -1) == np.sum(a)
        assert _f64._np_sum(a, n, False, k) == np.sum(
            np.where(np.arange(n) == k, 0.0, a)
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_layouts(dtype: Any) -> None:
    base = (RNG.standard_normal((6, 40, 30)) * 4).astype(dtype)
    cases = [
        (base[:, ::2, 1::3], 1),
        (np.asfortranarray(base[0]), -1),
        (np.asfortranarray(base[0]), 0),
        (base, 0),
        (base[..., ::-1], -1),
        (base[0, 0], -1),
        (np.asfortranarray(base), 2),
    ]
    for x, axis in cases:
        labels = _soft(x.shape, axis)
        for reduction in REDUCTIONS:
            check_dense(x, labels, f"axis {axis}", axis=axis, reduction=reduction)
        labels_f = np.asfortranarray(labels)
        check_dense(x, labels_f, f"F-order labels, axis {axis}", axis=axis)
        check_dense(x, labels[..., ::-1], f"reversed labels, axis {axis}", axis=axis)
        n = x.shape[axis]
        hot = np.moveaxis(np.eye(n, dtype=np.int16)[_labels(x, axis)], -1, axis)
        check_dense(
            x, np.asfortranarray(hot), f"F-order int labels, axis {axis}", axis=axis
        )
        distilled = np.asarray(lk.softmax(x.astype(np.float64), axis=axis))
        check_dense(
            x, np.asfortranarray(distilled), f"F distillation {axis}", axis=axis
        )


def test_dense_float_labels_keep_the_portable_path() -> None:
    """Distillation: labels = softmax(logits), p_j ~ y_j. Summing the float
    labels in another order than NumPy's moved 7373 of 64000 gradient
    elements by an ulp (a review found it): float labels are not the
    float32 kernel's. The float64 kernel adds them in NumPy's order."""
    y = RNG.random((64, 1000))
    y /= y.sum(1, keepdims=True)
    x = np.log(y).astype(np.float32)
    for labels in (y, y.astype(np.float32)):
        CALLS.clear()
        loss, g = dense_ce(x, labels, reduction="sum")
        assert CALLS == []
        p_loss, p_g = portable(dense_ce, x, labels, reduction="sum")
        assert np.array_equal(loss, p_loss)
        assert np.array_equal(g, p_g)
        for x64 in (np.log(y), np.asfortranarray(np.log(y))):
            for lab in (labels, np.asfortranarray(labels)):
                check_dense(x64, lab, "float64 distillation", reduction="sum")


def test_dense_what_keeps_the_portable_path() -> None:
    x = RNG.standard_normal((4, 5))
    y = _soft((4, 5))
    x32 = x.astype(np.float32)
    for args, kw in [
        ((x32, y), {}),  # float32 logits: NumPy's pairwise label sums
        ((x32, y), {"label_smoothing": 0.1}),
        ((x, y), {"label_smoothing": 0.1}),
        ((x32, y), {"where": np.ones((4, 5), bool)}),
        ((x, y), {"where": np.ones((4, 5), bool)}),
        ((x32, y), {"axis": (0, 1)}),
        ((x, y), {"axis": (0, 1)}),
        ((x32, y.tolist()), {}),
        ((x, y.tolist()), {}),
        ((x, np.broadcast_to(y[:1], (4, 5))), {}),  # strides that do not tell
    ]:
        CALLS.clear()
        loss, g = dense_ce(*args, **kw)
        assert CALLS == []
        p_loss, p_g = portable(dense_ce, *args, **kw)
        assert np.array_equal(loss, p_loss)
        assert np.array_equal(g, p_g)
    for xx in (x32, x):
        for labels, kw in [(y[:, :4], {}), (y, {"reduction": "avg"}), (y + 0j, {})]:
            with pytest.raises((ValueError, TypeError)) as port_err:
                portable(dense_ce, xx, labels, **kw)
            with pytest.raises(type(port_err.value)) as kern_err:
                dense_ce(xx, labels, **kw)
            assert str(kern_err.value) == str(port_err.value)


def test_dense_float64_other_label_dtypes() -> None:
    x = RNG.standard_normal((30, 20))
    y = _soft(x.shape)
    for labels in (y.astype(np.float16), y.astype(">f8"), (y > 0.1).astype(np.uint16)):
        check_dense(x, labels, f"{labels.dtype} labels", reduction="mean")


def test_dense_torch_and_jax_float64() -> None:
    """Integer labels of torch and JAX (exact sums in the library's order);
    float labels and rows summing to ``2**53`` keep their portable path.
    torch: the values of its portable path; JAX: NumPy's (XLA's portable
    path differs from NumPy's in last bits, as for the sparse kernel)."""
    torch = pytest.importorskip("torch")
    xn = RNG.standard_normal((20, 30)) * 3
    yn = RNG.integers(0, 3, xn.shape)
    soft = _soft(xn.shape)
    huge = yn * 2**52
    for lab, kernel in [(yn, True), (yn > 0, True), (soft, False), (huge, True)]:
        CALLS.clear()
        with np.errstate(all="ignore"):
            tx, ty = torch.from_numpy(xn), torch.from_numpy(lab)
            loss, g = dense_ce(tx, ty, reduction="mean")
            assert (["dense_ce_grad"] if kernel else []) == CALLS, lab.dtype
            p_loss, p_g = portable(dense_ce, tx, ty, reduction="mean")
        assert type(g) is torch.Tensor
        assert g.dtype == torch.float64
        _assert_bits(loss.numpy(), p_loss.numpy(), f"torch {lab.dtype}")
        _assert_bits(g.numpy(), p_g.numpy(), f"torch {lab.dtype}")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)  # as tests/conftest.py's xp
    for lab, kernel in [(yn, True), (soft, False)]:
        CALLS.clear()
        loss, g = dense_ce(jax.numpy.asarray(xn), jax.numpy.asarray(lab))
        assert (["dense_ce_grad"] if kernel else []) == CALLS
        assert np.asarray(g).dtype == np.float64
        if kernel:
            p_loss, p_g = portable(dense_ce, xn, lab)
            _assert_bits(np.asarray(loss), p_loss, f"jax {lab.dtype}")
            _assert_bits(np.asarray(g), p_g, f"jax {lab.dtype}")


# ---------------------------------------------- panels of rows (issue 5)


def _panel_cases(dtype: Any) -> list[tuple[np.ndarray, int]]:
    base = (RNG.standard_normal((6, 40, 30)) * 4).astype(dtype)
    return [
        (base, 0),
        (base, 1),
        (base[:, ::2, 1::3], 1),
        (base[0].T, -1),
        (base[0][::-1, ::2], 0),
        (np.asfortranarray(base), 2),
    ]


def _one_pass(fn: Any, x: np.ndarray, labels: Any, axis: int, **kw: Any) -> Any:
    """`fn` on the C-contiguous copy of `x` (and `labels`), the classes last."""
    xc = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    if labels.shape == x.shape:
        labels = np.ascontiguousarray(np.moveaxis(labels, axis, -1))
    loss, g = fn(xc, labels, axis=-1, **kw)
    return loss, np.moveaxis(g, -1, axis)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_panels_sparse_grad(
    dtype: Any, reduction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for x, axis in _panel_cases(dtype):
        n = x.shape[axis]
        monkeypatch.setattr(_kernels, "_PANEL_BYTES", 3 * n * x.itemsize)
        y = _labels(x, axis)
        y[..., ::4] = -1
        kw = {"axis": axis, "reduction": reduction, "ignore_index": -1}
        CALLS.clear()
        with np.errstate(all="ignore"):
            loss, g = grad_ce(x, y, **kw)
        assert ["sparse_ce_grad"] * -(-y.size // 3) == CALLS, (axis, x.strides)
        want_loss, want_g = _one_pass(grad_ce, x, y, **kw)
        assert type(loss) is type(want_loss)
        assert np.array_equal(loss, want_loss)
        assert np.array_equal(g, want_g)
        assert g.shape == x.shape
        monkeypatch.setattr(_kernels, "_PANEL_BYTES", 16 << 20)
        check(x, y, f"axis {axis}", **kw)  # against the portable path


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_panels_dense_grad(
    dtype: Any, reduction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for x, axis in _panel_cases(dtype):
        n = x.shape[axis]
        monkeypatch.setattr(_kernels, "_PANEL_BYTES", 3 * n * 8)
        onehot = np.moveaxis(np.eye(n)[_labels(x, axis)], -1, axis)
        labelings = [onehot.astype(np.int8), onehot > 0]
        if dtype == np.float64:
            labelings.append(_soft(x.shape, axis))
        for labels in labelings:
            CALLS.clear()
            loss, g = dense_ce(x, labels, axis=axis, reduction=reduction)
            assert len(CALLS) > 1
            if labels.dtype.kind != "f":  # (float labels: their sums' order
                want = _one_pass(  # is the layout's, not the copy's)
                    dense_ce, x, labels.astype(np.int64), axis, reduction=reduction
                )
                assert type(loss) is type(want[0])
                assert np.array_equal(loss, want[0])
                assert np.array_equal(g, want[1])
            p_loss, p_g = portable(dense_ce, x, labels, axis=axis, reduction=reduction)
            if dtype == np.float64:
                _assert_bits(loss, p_loss, f"dense loss panels {axis}")
                _assert_bits(g, p_g, f"dense grad panels {axis}")
                continue
            assert_same(loss, p_loss, what=f"dense loss panels {axis}")
            assert_same(g, p_g, what=f"dense grad panels {axis}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_panels_torch_autograd(dtype: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = _torch()
    base = (RNG.standard_normal((6, 40, 30)) * 4).astype(dtype)
    views: list[tuple[Any, int]] = [
        (lambda t: t, 0),
        (lambda t: t, 1),
        (lambda t: t[:, ::2, 1::3], 1),
        (lambda t: t[0].T, -1),
        (lambda t: t.permute(2, 1, 0), 0),
    ]
    for view, axis in views:
        leaf = torch.from_numpy(base.copy()).requires_grad_()
        tx = view(leaf)
        x = tx.detach().numpy()
        n = x.shape[axis]
        monkeypatch.setattr(_kernels, "_PANEL_BYTES", 3 * n * x.itemsize)
        y = _labels(x, axis)
        CALLS.clear()
        loss = lk.sparse_softmax_cross_entropy(tx, torch.from_numpy(y), axis=axis)
        loss.sum().backward()
        panels = -(-y.size // 3)
        assert ["sparse_ce_fwd"] * panels + ["sparse_ce_bwd"] * panels == CALLS
        want_loss, want_g = _one_pass(grad_ce, x, y, axis, reduction="none")
        assert np.array_equal(loss.detach().numpy(), want_loss)
        expected = torch.zeros_like(leaf)
        view(expected).copy_(torch.from_numpy(want_g))
        assert np.array_equal(leaf.grad.numpy(), expected.numpy())


def test_torch_function_keeps_no_view_of_the_logits() -> None:
    """The logits' memory is held only through save_for_backward (freed with
    the graph, seen by saved-tensor hooks), not by a NumPy view on the node."""
    torch = _torch()
    x = torch.randn(16, 7, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 7, (16,))
    loss = lk.sparse_softmax_cross_entropy(x, y, reduction="sum")
    node = loss.grad_fn
    assert node.sp.inp.x is None
    assert node.sp.xv is None
    loss.backward()
    _, want = grad_ce(x.detach().numpy(), y.numpy(), reduction="sum")
    assert np.array_equal(x.grad.numpy(), want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_forward_drops_the_gradient_by_panels(
    dtype: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lk.softmax_cross_entropy``: the fused kernel, its gradient a panel of scratch."""
    outs: list[Any] = []
    record_kernel_calls(monkeypatch, CALLS, outs)
    monkeypatch.setattr(_kernels, "_PANEL_BYTES", 100 * 64 * np.dtype(dtype).itemsize)
    x = (RNG.standard_normal((1000, 64)) * 4).astype(dtype)
    y = np.eye(64, dtype=np.int64)[RNG.integers(0, 64, 1000)]
    for reduction in REDUCTIONS:
        CALLS.clear()
        outs.clear()
        v = lk.softmax_cross_entropy(x, y, reduction=reduction)
        assert len(CALLS) >= 10
        assert set(CALLS) == {"dense_ce_grad"}
        # (rows, n, x, y, scale, loss, grad, ...): the gradient a panel at a time
        assert all(args[6].shape[0] <= 100 for args in outs)
        _assert_bits(
            v, portable(lk.softmax_cross_entropy, x, y, reduction=reduction), ""
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_forward_single_element(dtype: Any) -> None:
    """A (1, 1) scratch gradient is a read-only view: the kernel gets a copy."""
    x = np.asarray([[2.0]], dtype=dtype)
    for y in (np.ones((1, 1), dtype=np.int64), np.ones((1, 1), dtype=bool)):
        CALLS.clear()
        v = lk.softmax_cross_entropy(x, y)
        assert CALLS == ["dense_ce_grad"]
        _assert_bits(v, portable(lk.softmax_cross_entropy, x, y), "1x1")
