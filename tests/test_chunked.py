"""Chunked linear cross entropy: the loss of the logits it never forms."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logitkit as lk
from _backends import jit, name_of, to_numpy
from logitkit._chunked import _grad_linear_cross_entropy, linear_cross_entropy

OPTIONS = [
    {},
    {"ignore_index": -100},
    {"label_smoothing": 0.3},
    {"z_loss": 1e-2},
    {"softcap": 2.5},
    {"ignore_index": -100, "label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 4.0},
]


def _problem(
    n: int = 23, d: int = 6, v: int = 41, *, seed: int = 1234, dtype: str = "float64"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h = (rng.standard_normal((n, d)) * 1.5).astype(dtype)
    w = rng.standard_normal((v, d)).astype(dtype)
    b = rng.standard_normal(v).astype(dtype)
    y = rng.integers(0, v, n)
    y[::5] = -100
    return h, w, b, y


def _labels_for(options: dict[str, Any], y: np.ndarray) -> np.ndarray:
    return y if "ignore_index" in options else np.where(y < 0, 0, y)


class TestValue:
    @pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "plain")
    @pytest.mark.parametrize("chunk_size", [1, 7, (4, 9), (100, 100), None])
    def test_matches_materialised_logits(
        self, options: dict[str, Any], chunk_size: Any
    ) -> None:
        h, w, b, y = _problem()
        y = _labels_for(options, y)
        got = linear_cross_entropy(
            h, w, y, bias=b, reduction="none", chunk_size=chunk_size, **options
        )
        want = lk.sparse_softmax_cross_entropy(h @ w.T + b, y, **options)
        np.testing.assert_allclose(got, want, rtol=2e-15, atol=0)
        mean = linear_cross_entropy(h, w, y, bias=b, chunk_size=chunk_size, **options)
        want_mean = lk.sparse_softmax_cross_entropy(
            h @ w.T + b, y, reduction="mean", **options
        )
        np.testing.assert_allclose(mean, want_mean, rtol=2e-15)

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(tv=st.integers(1, 41), tn=st.integers(1, 23))
    def test_any_chunk_size(self, tv: int, tn: int) -> None:
        h, w, b, y = _problem()
        options = OPTIONS[-1]
        whole = linear_cross_entropy(
            h, w, y, bias=b, reduction="none", chunk_size=(23, 41), **options
        )
        for cs in (tv, (tn, tv)):
            got = linear_cross_entropy(
                h, w, y, bias=b, reduction="none", chunk_size=cs, **options
            )
            np.testing.assert_allclose(got, whole, rtol=2e-15)

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_backends(self, xp: Any, dtype: str) -> None:
        h, w, b, y = _problem(dtype=dtype)
        options = OPTIONS[-1]
        args = [xp.asarray(a) for a in (h, w, y)]
        f = jit(
            xp,
            lambda hh, ww, yy, bb: linear_cross_entropy(
                hh, ww, yy, bias=bb, reduction="none", chunk_size=(8, 16), **options
            ),
        )
        got = f(*args, xp.asarray(b))
        assert to_numpy(got).dtype == np.dtype(dtype)
        want = lk.sparse_softmax_cross_entropy(h @ w.T + b, y, **options)
        rtol = 2e-15 if dtype == "float64" else 2e-6
        np.testing.assert_allclose(to_numpy(got), want, rtol=rtol)
        mean = linear_cross_entropy(*args, bias=xp.asarray(b), chunk_size=5, **options)
        want_mean = lk.sparse_softmax_cross_entropy(
            h @ w.T + b, y, reduction="mean", **options
        )
        np.testing.assert_allclose(float(to_numpy(mean)), want_mean, rtol=rtol)

    @pytest.mark.parametrize("seed", range(6))
    def test_float32_mean_within_2_ulp(self, seed: int) -> None:
        # The exact loss of the float32 inputs (float64 logits, float64 loss)
        # against the chunked float32 loss: within 2 ulp of float32.
        h, w, b, y = _problem(96, 48, 1500, seed=seed, dtype="float32")
        for options in ({"ignore_index": -100}, OPTIONS[-1]):
            got = linear_cross_entropy(h, w, y, bias=b, chunk_size=(32, 256), **options)
            assert got.dtype == np.float32
            exact = lk.sparse_softmax_cross_entropy(
                h.astype(np.float64) @ w.T.astype(np.float64) + b,
                y,
                reduction="mean",
                **options,
            )
            err = abs(float(got) - float(exact)) / float(np.spacing(np.float32(exact)))
            assert err <= 2.0, (options, err)

    def test_batch_shape_and_reductions(self) -> None:
        h, w, _, y = _problem(24)
        y = np.where(y < 0, 3, y)
        h3, y3 = h.reshape(2, 3, 4, -1), y.reshape(2, 3, 4)
        none = linear_cross_entropy(h3, w, y3, reduction="none", chunk_size=10)
        assert none.shape == (2, 3, 4)
        want = lk.sparse_softmax_cross_entropy(h3 @ w.T, y3)
        np.testing.assert_allclose(none, want, rtol=2e-15)
        total = linear_cross_entropy(h3, w, y3, reduction="sum")
        np.testing.assert_allclose(total, want.sum(), rtol=1e-15)

    def test_confident_right_answer(self) -> None:
        # loss 9.357623e-14: logsumexp(x) - x_y would round to 0 in float32.
        h = np.asarray([[1.0]], dtype=np.float32)
        w = np.asarray([[0.0], [30.0]], dtype=np.float32)
        got = linear_cross_entropy(h, w, np.asarray([1]), chunk_size=1)
        assert float(got) == float(np.float32(9.357623e-14))

    def test_all_ignored(self) -> None:
        h, w, b, _ = _problem()
        y = np.full(23, -100)
        loss, dh, dw, db = _grad_linear_cross_entropy(
            h, w, y, bias=b, ignore_index=-100, chunk_size=(5, 5)
        )
        assert float(loss) == 0.0
        assert not dh.any()
        assert not dw.any()
        assert not db.any()

    def test_empty_batch(self) -> None:
        h = np.zeros((0, 3))
        w = np.ones((4, 3))
        y = np.zeros(0, dtype=np.int64)
        assert float(linear_cross_entropy(h, w, y)) == 0.0
        loss, dh, dw = _grad_linear_cross_entropy(h, w, y, reduction="sum")
        assert float(loss) == 0.0
        assert dh.shape == (0, 3)
        assert not dw.any()


def _naive_grads(
    h: np.ndarray, w: np.ndarray, b: np.ndarray | None, y: np.ndarray, **options: Any
) -> tuple[Any, ...]:
    """Loss and gradients through lk.grad on the materialised logits."""
    logits = h @ w.T + (0.0 if b is None else b)
    loss, g = lk.grad.sparse_softmax_cross_entropy(logits, y, **options)
    out = [loss, g @ w, g.T @ h]
    if b is not None:
        out.append(g.sum(axis=0))
    return tuple(out)


class TestGradient:
    @pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "plain")
    @pytest.mark.parametrize("reduction", ["mean", "sum"])
    def test_matches_materialised_gradient(
        self, options: dict[str, Any], reduction: str
    ) -> None:
        h, w, b, y = _problem()
        y = _labels_for(options, y)
        got = _grad_linear_cross_entropy(
            h, w, y, bias=b, reduction=reduction, chunk_size=(6, 10), **options
        )
        want = _naive_grads(h, w, b, y, reduction=reduction, **options)
        assert len(got) == 4
        for a, e in zip(got, want, strict=True):
            np.testing.assert_allclose(a, e, rtol=1e-13, atol=1e-15)

    def test_central_differences(self) -> None:
        h, w, b, y = _problem(5, 3, 7)
        options = {"ignore_index": -100, "label_smoothing": 0.2, "z_loss": 0.05}
        options |= {"softcap": 2.0}

        def f(hh: np.ndarray, ww: np.ndarray, bb: np.ndarray) -> float:
            return float(
                linear_cross_entropy(hh, ww, y, bias=bb, chunk_size=(2, 3), **options)
            )

        _, dh, dw, db = _grad_linear_cross_entropy(
            h, w, y, bias=b, chunk_size=(2, 3), **options
        )
        step = 1e-6
        for k, (arr, grad) in enumerate(((h, dh), (w, dw), (b, db))):
            num = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                plus, minus = arr.copy(), arr.copy()
                plus[idx] += step
                minus[idx] -= step
                args = [h, w, b]
                args[k] = plus
                fp = f(*args)
                args[k] = minus
                num[idx] = (fp - f(*args)) / (2 * step)
            np.testing.assert_allclose(grad, num, rtol=1e-7, atol=1e-9)

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    @pytest.mark.parametrize("reduction", ["mean", "sum"])
    def test_matches_torch_autograd(self, dtype: str, reduction: str) -> None:
        torch = pytest.importorskip("torch")
        import torch.nn.functional as F

        h, w, b, y = _problem(dtype=dtype)
        th, tw, tb = (torch.tensor(a, requires_grad=True) for a in (h, w, b))
        ty = torch.tensor(y)
        for eps in (0.0, 0.2):
            for t in (th, tw, tb):
                t.grad = None
            naive = F.cross_entropy(
                F.linear(th, tw, tb),
                ty,
                ignore_index=-100,
                label_smoothing=eps,
                reduction=reduction,
            )
            naive.backward()
            got = _grad_linear_cross_entropy(
                th.detach(),
                tw.detach(),
                ty,
                bias=tb.detach(),
                ignore_index=-100,
                label_smoothing=eps,
                reduction=reduction,
                chunk_size=(8, 16),
            )
            rtol = 1e-12 if dtype == "float64" else 2e-5
            assert got[0].dtype == th.dtype
            np.testing.assert_allclose(got[0].item(), naive.item(), rtol=rtol)
            for a, t in zip(got[1:], (th, tw, tb), strict=True):
                assert a.dtype == t.dtype
                np.testing.assert_allclose(
                    a.numpy(), t.grad.numpy(), rtol=rtol, atol=rtol * 1e-2
                )

    def test_backends(self, xp: Any) -> None:
        h, w, b, y = _problem()
        options = OPTIONS[-1]
        f = jit(
            xp,
            lambda hh, ww, yy, bb: _grad_linear_cross_entropy(
                hh, ww, yy, bias=bb, chunk_size=(8, 16), **options
            ),
        )
        got = f(*(xp.asarray(a) for a in (h, w, y, b)))
        want = _naive_grads(h, w, b, y, reduction="mean", **options)
        for a, e in zip(got, want, strict=True):
            np.testing.assert_allclose(to_numpy(a), e, rtol=1e-13, atol=1e-15)

    def test_no_bias(self) -> None:
        h, w, _, y = _problem()
        y = np.where(y < 0, 1, y)
        got = _grad_linear_cross_entropy(h, w, y, chunk_size=9)
        assert len(got) == 3
        for a, e in zip(
            got, _naive_grads(h, w, None, y, reduction="mean"), strict=True
        ):
            np.testing.assert_allclose(a, e, rtol=1e-13, atol=1e-15)


class TestMemory:
    def test_peak_is_a_tile_not_the_logits(self) -> None:
        n, d, v = 256, 16, 20_000
        h, w, _, y = _problem(n, d, v, dtype="float32")
        y = np.where(y < 0, 0, y)
        logits_bytes = n * v * 4  # the float32 logits: 20 MB
        tile = (256, 512)
        tile_bytes = 256 * 512 * 8  # 1 MiB as float64
        _grad_linear_cross_entropy(h[:2], w[:3], y[:2] % 3)  # warm-up: imports
        tracemalloc.start()
        try:
            linear_cross_entropy(h, w, y, chunk_size=tile)
            _, peak_loss = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            _, _, dw = _grad_linear_cross_entropy(h, w, y, chunk_size=tile)
            _, peak_grad = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # measured: 6.6 MB and 8.8 MB (the gradient holds dweight, 1.3 MB)
        assert peak_loss < 8 * tile_bytes < logits_bytes / 2, peak_loss
        assert peak_grad < 8 * tile_bytes + 2 * dw.nbytes, peak_grad


class TestErrors:
    def test_feature_sizes(self) -> None:
        with pytest.raises(ValueError, match=r"got shapes \(4, 3\) and \(5, 2\)"):
            linear_cross_entropy(np.ones((4, 3)), np.ones((5, 2)), np.zeros(4, int))

    def test_weight_not_2d(self) -> None:
        with pytest.raises(ValueError, match="`weight` must be 2-D"):
            linear_cross_entropy(np.ones((4, 3)), np.ones(3), np.zeros(4, int))

    def test_labels_shape(self) -> None:
        with pytest.raises(ValueError, match=r"\(4,\); got shape \(5,\) for hidden"):
            linear_cross_entropy(np.ones((4, 3)), np.ones((5, 3)), np.zeros(5, int))

    def test_labels_dtype(self) -> None:
        with pytest.raises(TypeError, match="must be integer class ids"):
            linear_cross_entropy(np.ones((4, 3)), np.ones((5, 3)), np.zeros(4))

    def test_label_out_of_range(self, xp: Any) -> None:
        h = xp.asarray(np.ones((4, 3)))
        w = xp.asarray(np.ones((5, 3)))
        y = xp.asarray(np.asarray([0, 1, 7, 2]))
        if name_of(xp) == "dask":  # lazy: the token's loss is NaN
            loss = linear_cross_entropy(h, w, y, reduction="none")
            assert np.isnan(to_numpy(loss)).tolist() == [False, False, True, False]
            return
        with pytest.raises(ValueError, match=r"in \[0, 5\); got 7 at position 2"):
            linear_cross_entropy(h, w, y)
        with pytest.raises(ValueError, match="got 7 at position 2"):
            linear_cross_entropy(h, w, y, ignore_index=-1)

    def test_label_out_of_range_under_jit_is_nan(self) -> None:
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        h, w, y = jnp.ones((3, 2)), jnp.ones((4, 2)), jnp.asarray([0, 9, 1])

        def f(hh: Any, ww: Any) -> Any:
            return _grad_linear_cross_entropy(hh, ww, y, reduction="none")

        loss, dh, _ = jax.jit(f)(h, w)
        assert np.isnan(np.asarray(loss)).tolist() == [False, True, False]
        assert np.isnan(np.asarray(dh)[1]).all()
        assert not np.isnan(np.asarray(dh)[0]).any()

    def test_bias_length(self) -> None:
        with pytest.raises(ValueError, match=r"`bias` must have shape \(5,\)"):
            linear_cross_entropy(
                np.ones((4, 3)), np.ones((5, 3)), np.zeros(4, int), bias=np.ones(4)
            )

    @pytest.mark.parametrize(
        ("chunk_size", "error"),
        [
            (0, ValueError),
            (-3, ValueError),
            ((4, 0), ValueError),
            ((1, 2, 3), ValueError),
            (2.5, TypeError),
            (True, TypeError),
            ("8", TypeError),
        ],
    )
    def test_chunk_size(self, chunk_size: Any, error: type) -> None:
        with pytest.raises(error, match="`chunk_size`"):
            linear_cross_entropy(
                np.ones((4, 3)),
                np.ones((5, 3)),
                np.zeros(4, int),
                chunk_size=chunk_size,
            )

    def test_options(self) -> None:
        args = (np.ones((4, 3)), np.ones((5, 3)), np.zeros(4, int))
        with pytest.raises(ValueError, match="Unknown reduction"):
            linear_cross_entropy(*args, reduction="avg")
        with pytest.raises(ValueError, match="label_smoothing"):
            linear_cross_entropy(*args, label_smoothing=1.5)
        with pytest.raises(ValueError, match="softcap"):
            linear_cross_entropy(*args, softcap=0.0)
        with pytest.raises(ValueError, match="z_loss"):
            linear_cross_entropy(*args, z_loss=-1.0)
        with pytest.raises(TypeError, match="ignore_index"):
            linear_cross_entropy(*args, ignore_index=1.5)  # type: ignore[arg-type]
