"""categorical_cross_entropy and binary_cross_entropy (from probabilities)."""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np
import pytest
from array_api_compat import is_dask_namespace, is_jax_namespace

from _backends import allow_flushed_subnormals, jit, name_of, to_numpy
from _reference import binary_cross_entropy as ref_bce
from _reference import categorical_cross_entropy as ref_cce
from _reference import ulp_error
from logitkit._prob_losses import (
    _grad_binary_cross_entropy,
    _grad_categorical_cross_entropy,
    binary_cross_entropy,
    categorical_cross_entropy,
)

ULP = {"float32": 0.51, "float64": 1.0}


def _slow(xp: Any) -> bool:
    return bool(is_jax_namespace(xp) or is_dask_namespace(xp))


def _logic_only_on_eager(xp: Any) -> None:
    """Option logic runs on numpy, array_api_strict, torch and JAX (same code)."""
    if is_dask_namespace(xp):
        pytest.skip("option logic is tested on numpy, array_api_strict, torch and jax")


def _smallest_normal(dtype: str) -> float:
    return float(np.finfo(dtype).smallest_normal)


def _cce_case(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(21)
    logits = rng.standard_normal((12, 5)) * 4
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    eps_d = float(np.finfo(dtype).eps)
    p[0] = [1 - eps_d, eps_d / 2, eps_d / 4, eps_d / 8, 0.0]  # confident, tiny, 0
    p[1] = [1.0, 0.0, 0.0, 0.0, 0.0]
    p[2] = [0.5, 0.25, 0.125, 0.0625, 1e-30]
    y = np.eye(5)[rng.integers(0, 5, 12)]
    y[0] = [1, 0, 0, 0, 0]
    y[1] = [0, 1, 0, 0, 0]  # all mass on a 0 probability: clipped
    y[3] = rng.random(5)  # soft
    y[4] = [0.2, 0.2, 0.2, 0.2, 0.2]
    return p.astype(dtype), y.astype(dtype)


def _bce_case(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(22)
    eps_d = float(np.finfo(dtype).eps)
    special = [0.0, 1.0, 0.5, 1e-30, 1e-20, 1e-8, 0.1, 0.9, 1 - eps_d, 1 - 4 * eps_d]
    p = np.concatenate([special, special, rng.random(20), [1e-300, 3e-320]])
    y = np.concatenate([[1.0] * 10, [0.0] * 10, rng.random(10), [1.0] * 10, [1, 0]])
    return p.astype(dtype), y.astype(dtype)


def _assert_ulp(xp: Any, got: Any, exact: list[Any], dtype: str, bound: float) -> float:
    y = to_numpy(got)
    assert str(y.dtype) == dtype
    err = allow_flushed_subnormals(xp, dtype, y, ulp_error(y, exact), exact)
    assert err.max() <= bound, (err.argmax(), y.ravel()[err.argmax()], err.max())
    return float(err.max())


class TestCategoricalCrossEntropy:
    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    @pytest.mark.parametrize("smoothing", [0.0, 0.1])
    def test_ulp(self, xp: Any, dtype: str, smoothing: float) -> None:
        if _slow(xp) and smoothing == 0.0:
            pytest.skip("JAX and Dask: the smoothed labels suffice")
        p, y = _cce_case(dtype)
        f = jit(xp, categorical_cross_entropy, label_smoothing=smoothing)
        got = f(xp.asarray(p), xp.asarray(y))
        eps = _smallest_normal(dtype)
        exact = [ref_cce(a, b, eps, smoothing) for a, b in zip(p, y, strict=True)]
        _assert_ulp(xp, got, exact, dtype, ULP[dtype])

    @pytest.mark.parametrize("reduction", ["mean", "sum"])
    def test_reductions_within_2_ulp(self, xp: Any, reduction: str) -> None:
        p, y = _cce_case("float64")
        got = jit(xp, categorical_cross_entropy, reduction=reduction)(
            xp.asarray(p), xp.asarray(y)
        )
        eps = _smallest_normal("float64")
        total = mpmath.fsum(ref_cce(a, b, eps) for a, b in zip(p, y, strict=True))
        exact = total / len(p) if reduction == "mean" else total
        assert ulp_error(to_numpy(got), exact).max() <= 2.0

    def test_eps_and_clip_above_one(self, xp: Any) -> None:
        _logic_only_on_eager(xp)
        p = xp.asarray(np.asarray([[0.0, 1.0], [1.5, -0.5], [0.0, 1.0]]))
        y = xp.asarray(np.asarray([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
        got = to_numpy(categorical_cross_entropy(p, y, eps=1e-7))
        np.testing.assert_allclose(got, [-np.log(1e-7), 0.0, 0.0], rtol=1e-15)
        # eps = 0: 0 log 0 = 0 (no NaN), a label on a 0 probability is inf
        got = to_numpy(categorical_cross_entropy(p, y, eps=0.0))
        np.testing.assert_array_equal(got, [np.inf, 0.0, 0.0])

    def test_eps_is_rounded_to_the_dtype(self) -> None:
        p = np.asarray([[0.0, 1.0]], dtype=np.float32)
        y = np.asarray([[1.0, 0.0]], dtype=np.float32)
        got = categorical_cross_entropy(p, y, eps=1e-7)
        exact = -mpmath.log(mpmath.mpf(float(np.float32(1e-7))))
        assert ulp_error(got, [exact]).max() <= 0.51

    def test_axis(self, xp: Any) -> None:
        _logic_only_on_eager(xp)
        p, y = _cce_case("float64")
        a = categorical_cross_entropy(xp.asarray(p.T), xp.asarray(y.T), axis=0)
        b = categorical_cross_entropy(xp.asarray(p), xp.asarray(y))
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))

    @pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
    def test_low_precision_gives_float32(self, xp: Any, dtype: str) -> None:
        if not hasattr(xp, dtype):
            pytest.skip(f"{name_of(xp)} has no {dtype}")
        if _slow(xp) and dtype == "float16":
            pytest.skip("JAX: bfloat16 suffices")
        p16 = xp.astype(
            xp.asarray(np.asarray([[0.25, 0.75], [0.0, 1.0]])), getattr(xp, dtype)
        )
        y = xp.asarray(np.asarray([[0.0, 1.0], [1.0, 0.0]]))
        got = jit(xp, categorical_cross_entropy)(p16, y)
        assert got.dtype == xp.float32
        eps = float(xp.finfo(getattr(xp, dtype)).smallest_normal)
        exact = [ref_cce([0.25, 0.75], [0, 1], eps), ref_cce([0.0, 1.0], [1, 0], eps)]
        assert ulp_error(to_numpy(got), exact).max() <= 0.51
        _, g = jit(xp, _grad_categorical_cross_entropy)(p16, y)
        assert g.dtype == p16.dtype


class TestBinaryCrossEntropy:
    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_ulp(self, xp: Any, dtype: str) -> None:
        p, y = _bce_case(dtype)
        got = jit(xp, binary_cross_entropy)(xp.asarray(p), xp.asarray(y))
        eps = _smallest_normal(dtype)
        exact = [ref_bce(a, b, eps) for a, b in zip(p, y, strict=True)]
        _assert_ulp(xp, got, exact, dtype, ULP[dtype])

    @pytest.mark.parametrize("reduction", ["mean", "sum"])
    def test_reductions_within_2_ulp(self, xp: Any, reduction: str) -> None:
        if _slow(xp):
            pytest.skip("JAX and Dask: the reduction is tested with the CCE")
        p, y = _bce_case("float64")
        got = jit(xp, binary_cross_entropy, reduction=reduction)(
            xp.asarray(p), xp.asarray(y)
        )
        eps = _smallest_normal("float64")
        total = mpmath.fsum(ref_bce(a, b, eps) for a, b in zip(p, y, strict=True))
        exact = total / len(p) if reduction == "mean" else total
        assert ulp_error(to_numpy(got), exact).max() <= 2.0

    def test_custom_eps(self, xp: Any) -> None:
        _logic_only_on_eager(xp)
        p = np.asarray([0.0, 1.0, 1e-9, 1 - 1e-9, 0.3])
        y = np.asarray([1.0, 0.0, 0.5, 0.5, 0.0])
        got = to_numpy(binary_cross_entropy(xp.asarray(p), xp.asarray(y), eps=1e-7))
        exact = [ref_bce(a, b, 1e-7) for a, b in zip(p, y, strict=True)]
        assert ulp_error(got, exact).max() <= 1.0
        # eps = 0: 0 log 0 = 0 (never NaN), a label on log(0) is inf
        p0 = xp.asarray(np.asarray([0.0, 1.0, 0.0, 1.0]))
        y0 = xp.asarray(np.asarray([0.0, 1.0, 1.0, 0.0]))
        got = to_numpy(binary_cross_entropy(p0, y0, eps=0.0))
        np.testing.assert_array_equal(got, [0.0, 0.0, np.inf, np.inf])

    def test_matches_torch_away_from_the_clamp(self) -> None:
        torch = pytest.importorskip("torch")
        p, y = _bce_case("float64")
        keep = (p > 1e-40) & (p < 1)  # torch bounds each log at -100 instead
        p, y = p[keep], y[keep]
        want = torch.nn.functional.binary_cross_entropy(
            torch.asarray(p), torch.asarray(y), reduction="none"
        ).numpy()
        # torch's log(1 - p) rounds 1 - p first (relative 1e-16 of |log|)
        np.testing.assert_allclose(binary_cross_entropy(p, y), want, rtol=2e-12)

    def test_differs_from_torch_where_torch_clamps_at_minus_100(self) -> None:
        torch = pytest.importorskip("torch")
        p, y = np.asarray([0.0, 1e-50]), np.asarray([1.0, 1.0])
        want = torch.nn.functional.binary_cross_entropy(
            torch.asarray(p), torch.asarray(y), reduction="none"
        ).numpy()
        np.testing.assert_array_equal(want, [100.0, 100.0])
        ours = binary_cross_entropy(p, y)
        np.testing.assert_allclose(
            ours, [-np.log(np.finfo(np.float64).smallest_normal), 50 * np.log(10)]
        )

    def test_out_of_range_is_an_error_on_eager_backends(self, xp: Any) -> None:
        p = xp.asarray(np.asarray([[0.2, 0.4], [1.5, 0.3]]))
        y = xp.asarray(np.asarray([[0.0, 1.0], [1.0, 0.0]]))
        if is_dask_namespace(xp):
            # lazy: not inspected, clipped to [0, 1]
            np.testing.assert_equal(
                np.isfinite(to_numpy(binary_cross_entropy(p, y))), True
            )
            return
        with pytest.raises(
            ValueError,
            match=r"`probs` must be in \[0, 1\]; got 1.5 at position \(1, 0\)",
        ):
            binary_cross_entropy(p, y)
        with pytest.raises(ValueError, match=r"got -0\.25 at position 1"):
            binary_cross_entropy(np.asarray([0.5, -0.25]), np.asarray([1.0, 1.0]))

    def test_out_of_range_is_clipped_under_jit(self) -> None:
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        p = jax.numpy.asarray([1.5, -0.5])
        y = jax.numpy.asarray([1.0, 0.0])
        got = np.asarray(jax.jit(binary_cross_entropy)(p, y))
        np.testing.assert_array_equal(got, [0.0, 0.0])

    @pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
    def test_low_precision_gives_float32(self, xp: Any, dtype: str) -> None:
        if not hasattr(xp, dtype):
            pytest.skip(f"{name_of(xp)} has no {dtype}")
        if _slow(xp) and dtype == "float16":
            pytest.skip("JAX: bfloat16 suffices")
        p = xp.astype(
            xp.asarray(np.asarray([0.25, 0.0, 1.0, 0.001])), getattr(xp, dtype)
        )
        y = xp.asarray(np.asarray([1.0, 1.0, 0.0, 0.0]))
        got = jit(xp, binary_cross_entropy)(p, y)
        assert got.dtype == xp.float32
        eps = float(xp.finfo(getattr(xp, dtype)).smallest_normal)
        ps = to_numpy(xp.astype(p, xp.float32)).astype(np.float64)
        exact = [
            ref_bce(a, b, eps) for a, b in zip(ps, [1.0, 1.0, 0.0, 0.0], strict=True)
        ]
        assert ulp_error(to_numpy(got), exact).max() <= 0.51


# ------------------------------------------------------------------ gradients

LOSSES = {
    "cce": (categorical_cross_entropy, _grad_categorical_cross_entropy),
    "bce": (binary_cross_entropy, _grad_binary_cross_entropy),
}
OPTIONS = [("cce", {}), ("cce", {"label_smoothing": 0.2}), ("bce", {})]
P = np.asarray([[0.1, 0.6, 0.3], [0.25, 0.05, 0.7]])
Y = np.asarray([[0.0, 1.0, 0.0], [0.3, 0.2, 0.5]])


def _ids(opt: tuple[str, dict[str, Any]]) -> str:
    return opt[0] + "-" + ",".join(f"{k}={v}" for k, v in opt[1].items())


@pytest.mark.parametrize("opt", OPTIONS, ids=_ids)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_grad_matches_central_differences(
    opt: tuple[str, dict[str, Any]], reduction: str
) -> None:
    loss, grad = LOSSES[opt[0]]
    kw = {**opt[1], "reduction": reduction}
    value, g = grad(P, Y, **kw)
    np.testing.assert_array_equal(value, loss(P, Y, **kw))
    h = 1e-7
    fd = np.zeros_like(P)
    for idx in np.ndindex(P.shape):
        up, down = P.copy(), P.copy()
        up[idx] += h
        down[idx] -= h
        fd[idx] = (np.sum(loss(up, Y, **kw)) - np.sum(loss(down, Y, **kw))) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_grad_is_zero_where_the_clip_is_active() -> None:
    p = np.asarray([[0.0, 1.0, 1e-9]])
    y = np.asarray([[0.5, 0.5, 0.0]])
    _, g = _grad_categorical_cross_entropy(p, y, eps=1e-7)
    np.testing.assert_array_equal(g, [[0.0, -0.5, 0.0]])
    _, g = _grad_binary_cross_entropy(
        np.asarray([0.0, 1.0, 1e-9, 0.5]), np.asarray([1.0, 0.0, 0.5, 1.0]), eps=1e-7
    )
    np.testing.assert_allclose(g, [0.0, 0.0, 1 / (1 - 1e-9) * 0.5, -2.0], rtol=1e-15)


@pytest.mark.parametrize("opt", OPTIONS, ids=_ids)
def test_grad_matches_torch_autograd(opt: tuple[str, dict[str, Any]]) -> None:
    torch = pytest.importorskip("torch")
    name, kw = opt
    p = torch.asarray(P, requires_grad=True)
    y = torch.asarray(Y)
    if name == "bce":
        want = torch.nn.functional.binary_cross_entropy(p, y, reduction="sum")
    else:
        e = kw.get("label_smoothing", 0.0)
        ys = y * (1 - e) + e / 3
        want = -(ys * torch.log(torch.clamp(p, 1e-300, 1.0))).sum()
    want.backward()
    _, g = LOSSES[name][1](P, Y, **kw)
    np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-14)
    # and torch's autograd through our loss gives the same
    p2 = torch.asarray(P, requires_grad=True)
    LOSSES[name][0](p2, y, **kw).sum().backward()
    np.testing.assert_allclose(p2.grad.numpy(), g, rtol=1e-13)


@pytest.mark.parametrize("opt", OPTIONS, ids=_ids)
def test_jax_grad_through_the_loss(opt: tuple[str, dict[str, Any]]) -> None:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    name, kw = opt

    def f(p: Any) -> Any:
        return jnp.sum(LOSSES[name][0](p, jnp.asarray(Y), **kw))

    got = np.asarray(jax.jit(jax.grad(f))(jnp.asarray(P)))
    _, g = LOSSES[name][1](P, Y, **kw)
    np.testing.assert_allclose(got, g, rtol=1e-13)


def test_grad_on_every_backend(xp: Any) -> None:
    for name, kw in [OPTIONS[2]] if _slow(xp) else OPTIONS:
        f = jit(xp, LOSSES[name][1], **kw, reduction="mean")
        value, g = f(xp.asarray(P), xp.asarray(Y))
        ref_value, ref_g = LOSSES[name][1](P, Y, **kw, reduction="mean")
        np.testing.assert_allclose(to_numpy(value), ref_value, rtol=1e-15)
        np.testing.assert_allclose(to_numpy(g), ref_g, rtol=1e-15)


# ----------------------------------------------------------------- errors


class TestErrors:
    @pytest.mark.parametrize("fn", [categorical_cross_entropy, binary_cross_entropy])
    def test_probs_must_be_floating(self, fn: Any) -> None:
        with pytest.raises(
            TypeError, match="`probs` must be an array of real floating"
        ):
            fn(np.asarray([[0, 1]]), np.asarray([[0, 1]]))

    @pytest.mark.parametrize("fn", [categorical_cross_entropy, binary_cross_entropy])
    def test_shape_mismatch_names_both_shapes(self, fn: Any) -> None:
        with pytest.raises(
            ValueError, match=r"shape of `probs` \(2, 3\); got shape \(3,\)"
        ):
            fn(np.zeros((2, 3)), np.zeros(3))

    @pytest.mark.parametrize("fn", [categorical_cross_entropy, binary_cross_entropy])
    def test_unknown_reduction(self, fn: Any) -> None:
        with pytest.raises(ValueError, match="Unknown reduction 'avg'"):
            fn(np.zeros((1, 2)), np.zeros((1, 2)), reduction="avg")

    @pytest.mark.parametrize("eps", [-1e-7, 1.0])
    def test_eps_range(self, eps: float) -> None:
        with pytest.raises(ValueError, match=r"`eps` must be in \[0, 1\)"):
            binary_cross_entropy(np.zeros(2), np.zeros(2), eps=eps)
        with pytest.raises(TypeError, match="`eps` must be a number"):
            categorical_cross_entropy(np.zeros((1, 2)), np.zeros((1, 2)), eps="x")  # type: ignore[arg-type]

    def test_label_smoothing_range(self) -> None:
        with pytest.raises(ValueError, match="`label_smoothing` must be in"):
            categorical_cross_entropy(
                np.zeros((1, 2)), np.zeros((1, 2)), label_smoothing=2.0
            )

    def test_axis_and_scalar(self) -> None:
        with pytest.raises(IndexError, match="axis 2 is out of bounds"):
            categorical_cross_entropy(np.zeros((1, 2)), np.zeros((1, 2)), axis=2)
        with pytest.raises(ValueError, match="at least one dimension"):
            categorical_cross_entropy(np.float64(0.5), np.float64(1.0))

    def test_complex_labels(self) -> None:
        with pytest.raises(TypeError, match="`labels` must be real"):
            binary_cross_entropy(np.zeros(2), np.zeros(2) * 1j)
