"""sigmoid_cross_entropy and sigmoid_focal_loss: accuracy, options, gradients, errors."""

from __future__ import annotations

import math
from typing import Any

import mpmath
import numpy as np
import pytest
from array_api_compat import is_dask_namespace, is_jax_namespace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _backends import allow_flushed_subnormals, jit, name_of, to_numpy
from _reference import sigmoid_cross_entropy as ref_bce
from _reference import sigmoid_focal_loss as ref_focal
from _reference import ulp_error
from logitkit._sigmoid_losses import (
    _grad_sigmoid_cross_entropy,
    _grad_sigmoid_focal_loss,
    sigmoid_cross_entropy,
    sigmoid_focal_loss,
)

ULP = {"float32": 0.51, "float64": 1.0}

POINTS = [
    -1e-30,
    1e-30,
    0.0,
    -0.5,
    0.5,
    -3.0,
    3.0,
    -20.0,
    20.0,
    -37.5,
    37.5,
    -90.0,
    90.0,
    -710.0,
    710.0,
    -800.0,
    800.0,
    -1e4,
    1e4,
]
SPREAD = (
    np.random.default_rng(7).standard_normal(30) * np.repeat([1.0, 10.0, 100.0], 10)
).tolist()
X_ALL = POINTS + SPREAD


def _hard(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(X_ALL + X_ALL, dtype=dtype)
    y = np.asarray([1.0] * len(X_ALL) + [0.0] * len(X_ALL), dtype=dtype)
    return x, y


def _soft(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = np.asarray(X_ALL, dtype=dtype)
    y = rng.random(len(X_ALL)).astype(dtype)
    y[:4] = [0.5, 1e-10, 1 - 1e-7, 0.25]
    return x, y


def _logic_only_on_eager(xp: Any) -> None:
    """Skip option and special-value tests on JAX and Dask, with a reason.

    The arithmetic is the same portable code on every backend; JAX (eager op
    by op, each op compiled per shape) and Dask (a large graph) make it slow.
    They run the accuracy, reduction and gradient tests.
    """
    if is_dask_namespace(xp):
        pytest.skip("option logic is tested on numpy, array_api_strict, torch and jax")


def _slow(xp: Any) -> bool:
    return bool(is_jax_namespace(xp) or is_dask_namespace(xp))


def _check_ulp(xp: Any, dtype: str, got: Any, exact: list[Any], x: Any) -> float:
    y = to_numpy(got)
    assert str(y.dtype) == dtype
    err = allow_flushed_subnormals(xp, dtype, y, ulp_error(y, exact), exact)
    assert err.max() <= ULP[dtype], (x[err.argmax()], y[err.argmax()], err.max())
    return float(err.max())


class TestSigmoidCrossEntropy:
    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_hard_labels_ulp(self, xp: Any, dtype: str) -> None:
        x, y = _hard(dtype)
        got = jit(xp, sigmoid_cross_entropy)(xp.asarray(x), xp.asarray(y))
        exact = [ref_bce(a, b) for a, b in zip(x, y, strict=True)]
        _check_ulp(xp, dtype, got, exact, x)

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    @pytest.mark.parametrize(
        ("pw", "eps"), [(1.0, 0.0), (3.5, 0.0), (1.0, 0.1), (0.3, 0.25)]
    )
    def test_soft_labels_ulp(self, xp: Any, dtype: str, pw: float, eps: float) -> None:
        if _slow(xp) and eps == 0.0:
            pytest.skip("JAX and Dask: the two option sets with smoothing suffice")
        x, y = _soft(dtype)
        f = jit(xp, sigmoid_cross_entropy, pos_weight=pw, label_smoothing=eps)
        got = f(xp.asarray(x), xp.asarray(y))
        exact = [ref_bce(a, b, pw, eps) for a, b in zip(x, y, strict=True)]
        _check_ulp(xp, dtype, got, exact, x)

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    @pytest.mark.parametrize("reduction", ["mean", "sum"])
    def test_reductions_within_2_ulp(self, xp: Any, dtype: str, reduction: str) -> None:
        if _slow(xp) and (dtype, reduction) != ("float64", "mean"):
            pytest.skip("JAX and Dask: the float64 mean suffices")
        x, y = _soft(dtype)
        f = jit(xp, sigmoid_cross_entropy, pos_weight=2.0, reduction=reduction)
        got = to_numpy(f(xp.asarray(x), xp.asarray(y)))
        total = mpmath.fsum(ref_bce(a, b, 2.0) for a, b in zip(x, y, strict=True))
        exact = total / len(x) if reduction == "mean" else total
        assert got.shape == ()
        assert ulp_error(got, exact).max() <= 2.0

    @pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
    def test_low_precision_gives_float32(self, xp: Any, dtype: str) -> None:
        if not hasattr(xp, dtype):
            pytest.skip(f"{name_of(xp)} has no {dtype}")
        if _slow(xp) and dtype == "float16":
            pytest.skip("JAX: bfloat16 suffices")
        vals = np.asarray([-60.0, -9.0, -2.5, -0.1, 0.0, 0.3, 1.7, 6.0, 11.0, 60.0])
        x = xp.astype(xp.asarray(vals), getattr(xp, dtype))
        y = xp.astype(xp.asarray(np.asarray([1.0, 0.0] * 5)), getattr(xp, dtype))
        got = jit(xp, sigmoid_cross_entropy)(x, y)
        assert got.dtype == xp.float32
        xs = to_numpy(xp.astype(x, xp.float32)).astype(np.float64)
        ys = to_numpy(xp.astype(y, xp.float32)).astype(np.float64)
        exact = [ref_bce(a, b) for a, b in zip(xs, ys, strict=True)]
        assert ulp_error(to_numpy(got), exact).max() <= 0.51
        _, g = jit(xp, _grad_sigmoid_cross_entropy)(x, y)
        assert g.dtype == x.dtype

    def test_pos_weight_vector_matches_torch(self) -> None:
        torch = pytest.importorskip("torch")
        fn = torch.nn.functional
        rng = np.random.default_rng(5)
        x = rng.standard_normal((6, 4)) * 5
        y = (rng.random((6, 4)) > 0.5).astype(np.float64)
        y[0] = [0.2, 0.7, 0.5, 1.0]  # soft labels too
        pw = np.asarray([0.5, 1.0, 2.0, 10.0])
        ours = sigmoid_cross_entropy(
            torch.asarray(x), torch.asarray(y), pos_weight=torch.asarray(pw)
        )
        want = fn.binary_cross_entropy_with_logits(
            torch.asarray(x),
            torch.asarray(y),
            pos_weight=torch.asarray(pw),
            reduction="none",
        )
        # torch's (1 - y) x + (1 + (w - 1) y) softplus(-x) cancels: its error
        # scales with |x|, ours does not (see the ulp tests).
        slack = 8 * np.finfo(np.float64).eps * (np.abs(x) + 1) * pw.max()
        assert (np.abs(to_numpy(ours) - to_numpy(want)) <= slack).all()
        for reduction in ("mean", "sum"):
            ours = sigmoid_cross_entropy(x, y, pos_weight=pw, reduction=reduction)
            want = fn.binary_cross_entropy_with_logits(
                torch.asarray(x),
                torch.asarray(y),
                pos_weight=torch.asarray(pw),
                reduction=reduction,
            )
            np.testing.assert_allclose(float(ours), float(want), rtol=1e-13)

    def test_pos_weight_broadcasts_like_torch(self, xp: Any) -> None:
        _logic_only_on_eager(xp)
        x = xp.asarray(np.asarray([[1.0, -2.0], [0.5, 3.0]]))
        y = xp.asarray(np.asarray([[1.0, 1.0], [0.0, 1.0]]))
        pw = xp.asarray(np.asarray([2.0, 0.5]))
        got = to_numpy(sigmoid_cross_entropy(x, y, pos_weight=pw))
        xn, yn = to_numpy(x), to_numpy(y)
        exact = [
            [ref_bce(xn[i, j], yn[i, j], [2.0, 0.5][j]) for j in range(2)]
            for i in range(2)
        ]
        assert ulp_error(got, exact).max() <= 1.0

    def test_smoothing_moves_labels_to_half(self, xp: Any) -> None:
        _logic_only_on_eager(xp)
        x = xp.asarray(np.asarray([2.0, -1.0]))
        got = sigmoid_cross_entropy(x, xp.asarray([1.0, 0.0]), label_smoothing=1.0)
        half = sigmoid_cross_entropy(x, xp.asarray([0.5, 0.5]))
        np.testing.assert_allclose(to_numpy(got), to_numpy(half), rtol=1e-15)

    def test_integer_and_bool_labels(self, xp: Any) -> None:
        _logic_only_on_eager(xp)
        x = xp.asarray(np.asarray([2.0, -1.0]))
        a = sigmoid_cross_entropy(x, xp.asarray([1, 0]))
        b = sigmoid_cross_entropy(x, xp.asarray([True, False]))
        c = sigmoid_cross_entropy(x, xp.asarray([1.0, 0.0]))
        np.testing.assert_array_equal(to_numpy(a), to_numpy(c))
        np.testing.assert_array_equal(to_numpy(b), to_numpy(c))

    def test_special_values(self, xp: Any) -> None:
        x = xp.asarray(np.asarray([np.inf, np.inf, -np.inf, -np.inf, np.nan]))
        y = xp.asarray(np.asarray([1.0, 0.0, 0.0, 1.0, 1.0]))
        np.testing.assert_array_equal(
            to_numpy(jit(xp, sigmoid_cross_entropy)(x, y)),
            [0.0, np.inf, 0.0, np.inf, np.nan],
        )

    def test_python_lists_and_empty(self) -> None:
        assert isinstance(sigmoid_cross_entropy([0.0], [1.0]), np.ndarray)
        empty = np.zeros((0, 3))
        assert sigmoid_cross_entropy(empty, empty).shape == (0, 3)
        assert float(sigmoid_cross_entropy(empty, empty, reduction="sum")) == 0.0

    def test_no_writeback(self, xp: Any) -> None:
        _logic_only_on_eager(xp)
        x = xp.asarray(np.asarray([1.0, -2.0]))
        y = xp.asarray(np.asarray([1.0, 0.0]))
        _grad_sigmoid_cross_entropy(x, y, label_smoothing=0.1, reduction="mean")
        np.testing.assert_array_equal(to_numpy(x), [1.0, -2.0])
        np.testing.assert_array_equal(to_numpy(y), [1.0, 0.0])


def _torchvision_focal(x: np.ndarray, y: np.ndarray, alpha: Any, gamma: float) -> Any:
    """torchvision.ops.sigmoid_focal_loss, literally, in NumPy float64."""
    p = 1 / (1 + np.exp(-x))
    ce = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None and alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


class TestSigmoidFocalLoss:
    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    @pytest.mark.parametrize(
        ("alpha", "gamma"), [(0.25, 2.0), (None, 0.5), (0.7, 3.3), (0.25, 0.0)]
    )
    def test_hard_labels_ulp(
        self, xp: Any, dtype: str, alpha: Any, gamma: float
    ) -> None:
        if _slow(xp) and alpha not in (0.25, None):
            pytest.skip("JAX and Dask: two option sets suffice")
        x, y = _hard(dtype)
        f = jit(xp, sigmoid_focal_loss, alpha=alpha, gamma=gamma)
        got = f(xp.asarray(x), xp.asarray(y))
        exact = [ref_focal(a, b, alpha, gamma) for a, b in zip(x, y, strict=True)]
        _check_ulp(xp, dtype, got, exact, x)

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_soft_labels(self, xp: Any, dtype: str) -> None:
        if _slow(xp) and dtype == "float32":
            pytest.skip("JAX and Dask: float64 suffices")
        x, y = _soft(dtype)
        keep = np.abs(x) < 100  # the documented float64 bound grows with gamma |x|
        x, y = x[keep], y[keep]
        got = to_numpy(jit(xp, sigmoid_focal_loss)(xp.asarray(x), xp.asarray(y)))
        exact = [ref_focal(a, b) for a, b in zip(x, y, strict=True)]
        err = ulp_error(got, exact)
        bound = 0.51 if dtype == "float32" else 2 + 2.0 * 100
        assert err.max() <= bound, (x[err.argmax()], err.max())

    @pytest.mark.parametrize("reduction", ["mean", "sum"])
    def test_reductions_within_2_ulp(self, xp: Any, reduction: str) -> None:
        if _slow(xp) and reduction == "sum":
            pytest.skip("JAX and Dask: the mean suffices")
        x, y = _hard("float64")
        f = jit(xp, sigmoid_focal_loss, reduction=reduction)
        got = to_numpy(f(xp.asarray(x), xp.asarray(y)))
        total = mpmath.fsum(ref_focal(a, b) for a, b in zip(x, y, strict=True))
        exact = total / len(x) if reduction == "mean" else total
        assert ulp_error(got, exact).max() <= 2.0

    @pytest.mark.parametrize("alpha", [None, 0.25, 0.9])
    @pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 2.5])
    def test_matches_torchvision_formula(self, alpha: Any, gamma: float) -> None:
        rng = np.random.default_rng(9)
        x = rng.standard_normal((5, 7)) * 4
        y = (rng.random((5, 7)) > 0.6).astype(np.float64)
        y[0, :3] = [0.3, 0.9, 0.05]
        got = sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma)
        np.testing.assert_allclose(
            got, _torchvision_focal(x, y, alpha, gamma), rtol=1e-12
        )
        mean = sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma, reduction="mean")
        np.testing.assert_allclose(
            float(mean), _torchvision_focal(x, y, alpha, gamma).mean(), rtol=1e-12
        )

    def test_gamma_0_is_alpha_t_times_bce(self, xp: Any) -> None:
        _logic_only_on_eager(xp)
        x, y = _hard("float64")
        xa, ya = xp.asarray(x), xp.asarray(y)
        bce = to_numpy(sigmoid_cross_entropy(xa, ya))
        if is_jax_namespace(xp):
            # Concrete JAX arrays take the compiled kernel for the cross
            # entropy (subnormal results kept, as NumPy), the focal loss
            # XLA's portable path (subnormals flushed to 0).
            bce = np.where(np.abs(bce) < np.finfo(np.float64).tiny, 0.0, bce)
        plain = to_numpy(sigmoid_focal_loss(xa, ya, alpha=None, gamma=0.0))
        halved = to_numpy(sigmoid_focal_loss(xa, ya, alpha=0.5, gamma=0.0))
        np.testing.assert_array_equal(plain, bce)
        np.testing.assert_array_equal(halved, 0.5 * bce)

    def test_out_of_range_labels_follow_torchvision(self) -> None:
        x = np.asarray([0.3, -1.2, 2.0])
        y = np.asarray([1.5, -0.5, 2.0])
        np.testing.assert_allclose(
            sigmoid_focal_loss(x, y), _torchvision_focal(x, y, 0.25, 2.0), rtol=1e-13
        )

    def test_special_values(self, xp: Any) -> None:
        x = xp.asarray(np.asarray([np.inf, np.inf, -np.inf, -np.inf, np.nan]))
        y = xp.asarray(np.asarray([1.0, 0.0, 0.0, 1.0, 1.0]))
        np.testing.assert_array_equal(
            to_numpy(jit(xp, sigmoid_focal_loss, alpha=None, gamma=2.0)(x, y)),
            [0.0, np.inf, 0.0, np.inf, np.nan],
        )

    @pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
    def test_low_precision_gives_float32(self, xp: Any, dtype: str) -> None:
        if not hasattr(xp, dtype):
            pytest.skip(f"{name_of(xp)} has no {dtype}")
        if _slow(xp) and dtype == "float16":
            pytest.skip("JAX: bfloat16 suffices")
        vals = np.asarray([-30.0, -2.5, 0.0, 1.7, 11.0, 40.0])
        x = xp.astype(xp.asarray(vals), getattr(xp, dtype))
        y = xp.astype(xp.asarray(np.asarray([1.0, 0.0] * 3)), getattr(xp, dtype))
        got = jit(xp, sigmoid_focal_loss)(x, y)
        assert got.dtype == xp.float32
        xs = to_numpy(xp.astype(x, xp.float32)).astype(np.float64)
        exact = [ref_focal(a, b) for a, b in zip(xs, [1.0, 0.0] * 3, strict=True)]
        assert ulp_error(to_numpy(got), exact).max() <= 0.51


# ------------------------------------------------------------------ gradients

LOSSES = {
    "bce": (sigmoid_cross_entropy, _grad_sigmoid_cross_entropy),
    "focal": (sigmoid_focal_loss, _grad_sigmoid_focal_loss),
}
OPTIONS = [
    ("bce", {}),
    ("bce", {"pos_weight": 2.5, "label_smoothing": 0.1}),
    ("focal", {}),
    ("focal", {"alpha": None, "gamma": 0.5}),
    ("focal", {"alpha": 0.6, "gamma": 0.0}),
]
GRAD_X = np.asarray([[-7.0, -1.3, 0.0, 0.4], [2.2, 9.0, -0.01, 3.3]])
GRAD_Y = np.asarray([[1.0, 0.0, 1.0, 0.3], [0.0, 1.0, 0.8, 1.0]])


def _ids(opt: tuple[str, dict[str, Any]]) -> str:
    return opt[0] + "-" + ",".join(f"{k}={v}" for k, v in opt[1].items())


@pytest.mark.parametrize("opt", OPTIONS, ids=_ids)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_grad_matches_central_differences(
    opt: tuple[str, dict[str, Any]], reduction: str
) -> None:
    loss, grad = LOSSES[opt[0]]
    kw = {**opt[1], "reduction": reduction}
    value, g = grad(GRAD_X, GRAD_Y, **kw)
    np.testing.assert_array_equal(value, loss(GRAD_X, GRAD_Y, **kw))
    h = 1e-6
    fd = np.zeros_like(GRAD_X)
    for idx in np.ndindex(GRAD_X.shape):
        up, down = GRAD_X.copy(), GRAD_X.copy()
        up[idx] += h
        down[idx] -= h
        fd[idx] = (
            np.sum(loss(up, GRAD_Y, **kw)) - np.sum(loss(down, GRAD_Y, **kw))
        ) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


EXTREME_X = np.asarray([-1e4, -800.0, -40.0, 0.0, 40.0, 800.0, 1e4, 1e-30])
EXTREME_Y = np.asarray([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0])


def _torch_reference(name: str, x: Any, y: Any, kw: dict[str, Any]) -> Any:
    import torch

    fn = torch.nn.functional
    if name == "bce":
        eps = kw.get("label_smoothing", 0.0)
        ys = y * (1 - eps) + eps / 2
        pw = kw.get("pos_weight")
        pw_t = None if pw is None else torch.full_like(x, pw)
        return fn.binary_cross_entropy_with_logits(
            x, ys, pos_weight=pw_t, reduction="sum"
        )
    alpha, gamma = kw.get("alpha", 0.25), kw.get("gamma", 2.0)
    p = torch.sigmoid(x)
    ce = fn.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss.sum()


@pytest.mark.parametrize("opt", OPTIONS, ids=_ids)
def test_grad_matches_torch_autograd(opt: tuple[str, dict[str, Any]]) -> None:
    torch = pytest.importorskip("torch")
    name, kw = opt
    x = torch.asarray(GRAD_X, requires_grad=True)
    y = torch.asarray(GRAD_Y)
    _torch_reference(name, x, y, kw).backward()
    _, g = LOSSES[name][1](GRAD_X, GRAD_Y, **kw)
    # torchvision's 1 - p_t cancels (x = 9: 1.5e-12 relative); ours does not
    # (test_grad_matches_mpmath): the literal formulas are checked to 1e-10.
    np.testing.assert_allclose(g, x.grad.numpy(), rtol=1e-10, atol=1e-300)


THROUGH_X = np.concatenate([GRAD_X.ravel(), EXTREME_X])
THROUGH_Y = np.concatenate([GRAD_Y.ravel(), EXTREME_Y])


@pytest.mark.parametrize("opt", OPTIONS, ids=_ids)
def test_torch_autograd_through_the_loss(opt: tuple[str, dict[str, Any]]) -> None:
    torch = pytest.importorskip("torch")
    name, kw = opt
    xs, ys = THROUGH_X, THROUGH_Y
    for dtype in (torch.float64, torch.float32):
        x = torch.asarray(xs, dtype=dtype, requires_grad=True)
        loss = LOSSES[name][0](x, torch.asarray(ys, dtype=dtype), **kw)
        loss.sum().backward()
        _, g = LOSSES[name][1](xs.astype(np.float64), ys, **kw)
        got = x.grad.double().numpy()
        assert np.isfinite(got).all()
        rtol = 1e-12 if dtype == torch.float64 else 1e-6
        np.testing.assert_allclose(got, g, rtol=rtol, atol=1e-300)


@pytest.mark.parametrize("opt", OPTIONS[:4], ids=_ids)
def test_jax_grad_through_the_loss(opt: tuple[str, dict[str, Any]]) -> None:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    name, kw = opt
    xs, ys = THROUGH_X, THROUGH_Y

    def f(x: Any) -> Any:
        return jnp.sum(LOSSES[name][0](x, jnp.asarray(ys), **kw))

    got = np.asarray(jax.jit(jax.grad(f))(jnp.asarray(xs)))
    _, g = LOSSES[name][1](xs, ys, **kw)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, g, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("opt", OPTIONS, ids=_ids)
def test_grad_matches_jax_grad_of_the_formula(opt: tuple[str, dict[str, Any]]) -> None:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    name, kw = opt
    y = jnp.asarray(GRAD_Y)

    def f(x: Any) -> Any:
        sp_pos = jax.nn.softplus(x)
        sp_neg = jax.nn.softplus(-x)
        if name == "bce":
            eps = kw.get("label_smoothing", 0.0)
            ys = y * (1 - eps) + eps / 2
            return jnp.sum((1 - ys) * sp_pos + kw.get("pos_weight", 1.0) * ys * sp_neg)
        alpha, gamma = kw.get("alpha", 0.25), kw.get("gamma", 2.0)
        p = jax.nn.sigmoid(x)
        loss = ((1 - y) * sp_pos + y * sp_neg) * (
            1 - (p * y + (1 - p) * (1 - y))
        ) ** gamma
        if alpha is not None:
            loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
        return jnp.sum(loss)

    want = np.asarray(jax.grad(f)(jnp.asarray(GRAD_X)))
    _, g = LOSSES[name][1](GRAD_X, GRAD_Y, **kw)
    np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-300)


def _mp_loss(name: str, t: Any, y: float, kw: dict[str, Any]) -> Any:
    """The loss of one element in mpmath, differentiable in `t` (an mpf)."""
    yv = mpmath.mpf(y)

    def sp(u: Any) -> Any:
        return mpmath.log1p(mpmath.exp(u))

    if name == "bce":
        eps = mpmath.mpf(kw.get("label_smoothing", 0.0))
        ys = yv * (1 - eps) + eps / 2
        return (1 - ys) * sp(t) + mpmath.mpf(kw.get("pos_weight", 1.0)) * ys * sp(-t)
    alpha, gamma = kw.get("alpha", 0.25), mpmath.mpf(kw.get("gamma", 2.0))
    m = (1 - yv) / (1 + mpmath.exp(-t)) + yv / (1 + mpmath.exp(t))
    loss = ((1 - yv) * sp(t) + yv * sp(-t)) * (m**gamma if gamma else 1)
    if alpha is not None:
        loss = (alpha * yv + (1 - alpha) * (1 - yv)) * loss
    return loss


@pytest.mark.parametrize("opt", OPTIONS, ids=_ids)
def test_grad_matches_mpmath(opt: tuple[str, dict[str, Any]]) -> None:
    name, kw = opt
    xs = np.concatenate([GRAD_X.ravel(), [30.0, -30.0, 30.0, -30.0]])
    ys = np.concatenate([GRAD_Y.ravel(), [1.0, 1.0, 0.0, 0.0]])
    _, g = LOSSES[name][1](xs, ys, **kw)
    exact = [
        float(mpmath.diff(lambda t, y=b: _mp_loss(name, t, y, kw), mpmath.mpf(a)))
        for a, b in zip(xs, ys, strict=True)
    ]
    np.testing.assert_allclose(g, exact, rtol=1e-14, atol=1e-300)


def test_grad_on_every_backend(xp: Any) -> None:
    x, y = xp.asarray(GRAD_X), xp.asarray(GRAD_Y)
    for name, kw in [OPTIONS[2]] if _slow(xp) else OPTIONS:
        value, g = jit(xp, LOSSES[name][1], **kw, reduction="mean")(x, y)
        ref_value, ref_g = LOSSES[name][1](GRAD_X, GRAD_Y, **kw, reduction="mean")
        np.testing.assert_allclose(to_numpy(value), ref_value, rtol=1e-15)
        np.testing.assert_allclose(to_numpy(g), ref_g, rtol=1e-14, atol=1e-300)


def test_bce_grad_of_confident_right_answer_has_no_cancellation() -> None:
    # y = 1, x = 40: sigmoid(x) - 1 would be 0; the gradient is -sigmoid(-40).
    _, g = _grad_sigmoid_cross_entropy(np.asarray([40.0]), np.asarray([1.0]))
    assert ulp_error(g, [-1 / (1 + mpmath.exp(40))]).max() <= 1.0


# ------------------------------------------------------------------ properties


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    deadline=None,
    max_examples=40,
)
@given(
    x=st.floats(-1e3, 1e3),
    k=st.integers(0, 2**20),
    pw=st.floats(0.0, 10.0),
)
def test_bce_is_non_negative_and_mirrors(x: float, k: int, pw: float) -> None:
    xa, ya = np.asarray([x]), np.asarray([k / 2**20])  # 1 - y is exact
    loss = sigmoid_cross_entropy(xa, ya, pos_weight=pw)
    assert loss[0] >= 0
    # without pos_weight, relabelling 1 - y and flipping the logit is the same loss
    a = sigmoid_cross_entropy(xa, ya)
    b = sigmoid_cross_entropy(-xa, 1.0 - ya)
    np.testing.assert_array_equal(a, b)


@settings(deadline=None, max_examples=40)
@given(
    x=st.floats(-200.0, 200.0),
    y=st.sampled_from([0.0, 1.0, 0.3]),
    gamma=st.floats(0.0, 5.0),
)
def test_focal_is_at_most_alpha_t_bce(x: float, y: float, gamma: float) -> None:
    xa, ya = np.asarray([x]), np.asarray([y])
    focal = sigmoid_focal_loss(xa, ya, alpha=None, gamma=gamma)
    bce = sigmoid_cross_entropy(xa, ya)
    assert 0 <= focal[0] <= bce[0] * (1 + 1e-15)


# ----------------------------------------------------------------- errors


class TestErrors:
    def test_shape_mismatch_names_both_shapes(self) -> None:
        with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)|\(3,\).*\(2, 3\)"):
            sigmoid_cross_entropy(np.zeros((2, 3)), np.zeros(3))
        with pytest.raises(ValueError, match="`labels` must have shape"):
            sigmoid_focal_loss(np.zeros((2, 3)), np.zeros((3, 2)))

    @pytest.mark.parametrize("fn", [sigmoid_cross_entropy, sigmoid_focal_loss])
    def test_unknown_reduction(self, fn: Any) -> None:
        with pytest.raises(ValueError, match="Unknown reduction 'avg'"):
            fn(np.zeros(2), np.zeros(2), reduction="avg")

    @pytest.mark.parametrize("eps", [-0.1, 1.5])
    def test_label_smoothing_range(self, eps: float) -> None:
        with pytest.raises(ValueError, match="`label_smoothing` must be in"):
            sigmoid_cross_entropy(np.zeros(2), np.zeros(2), label_smoothing=eps)

    def test_negative_pos_weight(self, xp: Any) -> None:
        with pytest.raises(ValueError, match="`pos_weight` must be a non-negative"):
            sigmoid_cross_entropy(np.zeros(2), np.zeros(2), pos_weight=-1.0)
        if is_dask_namespace(xp):
            pytest.skip("the values of lazy (Dask) arrays are not inspected")
        x = xp.asarray(np.zeros((2, 3)))
        pw = xp.asarray(np.asarray([1.0, -2.0, 1.0]))
        with pytest.raises(ValueError, match=r"`pos_weight` .*-2\.0 at position 1"):
            sigmoid_cross_entropy(x, x, pos_weight=pw)

    def test_pos_weight_shape(self) -> None:
        with pytest.raises(ValueError, match=r"`pos_weight` must broadcast.*\(4,\)"):
            sigmoid_cross_entropy(
                np.zeros((2, 3)), np.zeros((2, 3)), pos_weight=np.ones(4)
            )
        with pytest.raises(ValueError, match="`pos_weight` must broadcast"):
            sigmoid_cross_entropy(np.zeros(3), np.zeros(3), pos_weight=np.ones((2, 3)))

    def test_pos_weight_complex(self) -> None:
        with pytest.raises(TypeError, match="`pos_weight` must be a real"):
            sigmoid_cross_entropy(np.zeros(2), np.zeros(2), pos_weight=np.ones(2) * 1j)

    @pytest.mark.parametrize("gamma", [-1.0, math.inf])
    def test_gamma(self, gamma: float) -> None:
        with pytest.raises(ValueError, match="`gamma` must be a non-negative"):
            sigmoid_focal_loss(np.zeros(2), np.zeros(2), gamma=gamma)

    @pytest.mark.parametrize("alpha", [-1.0, 1.5])
    def test_alpha(self, alpha: float) -> None:
        with pytest.raises(ValueError, match="`alpha` must be in"):
            sigmoid_focal_loss(np.zeros(2), np.zeros(2), alpha=alpha)
        with pytest.raises(TypeError, match="`alpha` must be a number"):
            sigmoid_focal_loss(np.zeros(2), np.zeros(2), alpha="big")  # type: ignore[arg-type]

    def test_complex(self) -> None:
        with pytest.raises(TypeError, match="`labels` must be real"):
            sigmoid_cross_entropy(np.zeros(2), np.zeros(2) * 1j)
        with pytest.raises(TypeError, match="`logits` must be a real"):
            sigmoid_cross_entropy(np.zeros(2) * 1j, np.zeros(2))


def test_lazy_backends_stay_lazy(xp: Any) -> None:
    if not is_dask_namespace(xp):
        pytest.skip("dask only")
    x = xp.asarray(GRAD_X)
    y = xp.asarray(GRAD_Y)
    out = sigmoid_focal_loss(x, y, reduction="mean")
    assert hasattr(out, "compute")
