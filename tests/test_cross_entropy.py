"""Softmax cross entropies: accuracy, PyTorch/optax semantics, gradients, errors."""

from __future__ import annotations

import functools
from typing import Any

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import logitkit as lk
from _backends import jit, name_of, to_numpy
from _reference import log_softmax as ref_log_softmax
from _reference import logsumexp as ref_logsumexp
from _reference import sparse_cross_entropy as ref_sparse_cross_entropy
from _reference import ulp_error

ULP = {"float32": 0.51, "float64": 1.0}


@functools.cache
def ref_sparse(row: tuple[float, ...], label: int) -> mpmath.mpf:
    return -ref_log_softmax(row)[label]


def ref_dense(row: tuple[float, ...], y: tuple[float, ...]) -> mpmath.mpf:
    ls = ref_log_softmax(row)
    return -mpmath.fsum(mpmath.mpf(v) * a for v, a in zip(y, ls, strict=True) if v)


def _cases(dtype: str) -> list[tuple[str, list[float], int]]:
    """(name, row, label): the contract's hard cases and a random spread."""
    rng = np.random.default_rng(42)
    big = 1e30 if dtype == "float32" else 1e300
    cases: list[tuple[str, list[float], int]] = [
        ("confident 1e-13", [0.0, 29.933606208922594], 1),
        ("confident 1e-17", [0.0, 39.0, -3.0], 1),
        ("confident 1e-26", [-60.0, 0.0, -61.0, -70.0], 1),
        ("label at the minimum", [-1e4, 0.0, 1e4], 0),
        ("huge logits", [big, -big, 0.0], 0),
        ("huge logits, label low", [big, -big, 0.0], 2),
        ("masked actions", [-np.inf, 2.0, -np.inf, 1.0], 3),
        ("ties", [3.0, 3.0, 3.0], 1),
        ("one class", [5.0], 0),
    ]
    for scale in (1.0, 10.0, 100.0, 1e4):
        for _ in range(6):
            row = (rng.standard_normal(10) * scale).tolist()
            cases.append((f"normal x{scale:g}", row, int(rng.integers(10))))
    # the top class, nearly certain (logsumexp(x) - x_y cancels)
    for margin in (20.0, 35.0, 50.0, 80.0):
        row = rng.standard_normal(10).tolist()
        row[3] = max(row) + margin
        cases.append((f"top class, margin {margin:g}", row, 3))
    return cases


def _rounded(row: list[float], dtype: str) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(row, dtype=dtype))


class TestAccuracy:
    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_sparse_per_example(self, xp: Any, dtype: str) -> None:
        f = jit(xp, lk.sparse_softmax_cross_entropy)
        worst = 0.0
        groups: dict[int, list[tuple[str, list[float], int]]] = {}
        for case in _cases(dtype):
            groups.setdefault(len(case[1]), []).append(case)
        for group in groups.values():
            x = xp.asarray(np.asarray([row for _, row, _ in group], dtype=dtype))
            y = xp.asarray(np.asarray([lab for _, _, lab in group]))
            loss = to_numpy(f(x, y))
            assert loss.dtype == np.dtype(dtype)
            for (name, row, lab), value in zip(group, loss, strict=True):
                exact = ref_sparse(_rounded(row, dtype), lab)
                err = float(ulp_error(np.asarray([value]), [exact]).max())
                assert err <= ULP[dtype], (name, row, lab, value, float(exact), err)
                worst = max(worst, err)
        assert worst > 0.0

    # JAX and Dask: float64, the double-double path (float32 computes in
    # float64 and rounds once, the same Array-API code on every backend, which
    # NumPy, array-api-strict and PyTorch run; JAX's own float32 rounding is
    # in test_sparse_per_example). A JAX case costs 5-15 s of compilation.
    @pytest.mark.backend_cases("jax.numpy", "dask.array", dtype=["float64"])
    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_dense_one_hot_equals_sparse_exactly(self, xp: Any, dtype: str) -> None:
        # JAX: the dense loss under jax.jit (as in test_sparse_per_example), a
        # third of the compilation time of running it eagerly, op by op, on
        # every row length; the eager portable code is NumPy's, and eager JAX
        # dense losses are checked in TestSemantics and TestOptaxAxisAndWhere.
        dense_loss = jit(xp, lk.softmax_cross_entropy)
        groups: dict[int, list[tuple[str, list[float], int]]] = {}
        for case in _cases(dtype):
            groups.setdefault(len(case[1]), []).append(case)
        for group in groups.values():
            x_np = np.asarray([row for _, row, _ in group], dtype=dtype)
            labels = np.asarray([lab for _, _, lab in group])
            x = xp.asarray(x_np)
            y1 = np.eye(x_np.shape[1], dtype=dtype)[labels]
            dense = to_numpy(dense_loss(x, xp.asarray(y1)))
            sparse = to_numpy(lk.sparse_softmax_cross_entropy(x, xp.asarray(labels)))
            np.testing.assert_array_equal(dense, sparse)

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_soft_labels(self, dtype: str) -> None:
        rng = np.random.default_rng(3)
        x = (rng.standard_normal((20, 7)) * 5).astype(dtype)
        y = rng.dirichlet(np.ones(7), size=20).astype(dtype)
        loss = lk.softmax_cross_entropy(x, y)
        exact = [
            ref_dense(_rounded(r, dtype), _rounded(t, dtype))
            for r, t in zip(x, y, strict=True)
        ]
        assert ulp_error(loss, exact).max() <= ULP[dtype]

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_128k_classes(self, dtype: str) -> None:
        rng = np.random.default_rng(11)
        x = (rng.standard_normal((2, 128_000)) * 3).astype(dtype)
        x[1, 77] = 60.0  # confident right answer among 128k classes
        labels = np.asarray([5, 77])
        loss = lk.sparse_softmax_cross_entropy(x, labels)
        # log1p(S) - (x_y - m) at 50 digits: the value of ref_sparse (checked in
        # test_logsumexp_reference_is_consistent) without 128k log-probabilities
        exact = [
            ref_sparse_cross_entropy(_rounded(list(r), dtype), int(k))
            for r, k in zip(x, labels, strict=True)
        ]
        assert ulp_error(loss, exact).max() <= ULP[dtype]

    # JAX and Dask: the mean, in both dtypes (the mean is the sum, divided)
    @pytest.mark.backend_cases("jax.numpy", "dask.array", reduction=["mean"])
    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    @pytest.mark.parametrize("reduction", ["mean", "sum"])
    def test_reductions_within_2_ulp(self, xp: Any, dtype: str, reduction: str) -> None:
        rng = np.random.default_rng(9)
        x = (rng.standard_normal((300, 6)) * 8).astype(dtype)
        labels = rng.integers(0, 6, 300)
        labels[::7] = np.argmax(x[::7], axis=1)  # many tiny losses among large ones
        value = to_numpy(
            lk.sparse_softmax_cross_entropy(
                xp.asarray(x), xp.asarray(labels), reduction=reduction
            )
        )
        terms = [
            ref_sparse(_rounded(list(r), dtype), int(k))
            for r, k in zip(x, labels, strict=True)
        ]
        exact = mpmath.fsum(terms)
        if reduction == "mean":
            exact /= len(terms)
        assert ulp_error(np.asarray([value]), [exact]).max() <= 2.0

    @pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
    def test_low_precision_gives_float32(self, xp: Any, dtype: str) -> None:
        if not hasattr(xp, dtype):
            pytest.skip(f"{name_of(xp)} has no {dtype}")
        rng = np.random.default_rng(5)
        x = xp.astype(xp.asarray(rng.standard_normal((8, 5)) * 4), getattr(xp, dtype))
        labels = rng.integers(0, 5, 8)
        loss = lk.sparse_softmax_cross_entropy(x, xp.asarray(labels))
        assert loss.dtype == xp.float32
        x64 = to_numpy(xp.astype(x, xp.float64))
        exact = [
            ref_sparse(tuple(map(float, r)), int(k))
            for r, k in zip(x64, labels, strict=True)
        ]
        assert ulp_error(to_numpy(loss), exact).max() <= 0.51

    def test_entropy_and_kl(self, xp: Any) -> None:
        rng = np.random.default_rng(8)
        a = rng.standard_normal((6, 9)) * 4
        b = (
            a
            + rng.standard_normal((6, 9))
            * np.asarray([1e-5, 1e-2, 1, 3, 1e-8, 0])[:, None]
        )
        a[0, 2] = -np.inf
        b[0, 2] = -np.inf
        a[1, 0] = 45.0  # a confident row: tiny entropy
        h = to_numpy(lk.softmax_entropy(xp.asarray(a)))
        kl = to_numpy(lk.kl_divergence(xp.asarray(a), xp.asarray(b)))
        for i in range(6):
            ls_a, ls_b = ref_log_softmax(list(a[i])), ref_log_softmax(list(b[i]))
            pa = [mpmath.exp(v) for v in ls_a]
            h_ex = -mpmath.fsum(p * v for p, v in zip(pa, ls_a, strict=True) if p)
            kl_ex = mpmath.fsum(
                p * (u - v) for p, u, v in zip(pa, ls_a, ls_b, strict=True) if p
            )
            assert ulp_error(h[i : i + 1], [h_ex]).max() <= 1.0, i
            if kl_ex == 0:
                assert kl[i] == 0.0
            else:
                assert ulp_error(kl[i : i + 1], [kl_ex]).max() <= 1.0, i


class TestSemantics:
    def test_matches_torch(self) -> None:
        torch = pytest.importorskip("torch")
        F = torch.nn.functional
        rng = np.random.default_rng(1)
        x = rng.standard_normal((7, 5)) * 3
        labels = np.asarray([0, 4, -100, 2, 2, -100, 1])
        w = np.asarray([0.5, 2.0, 1.0, 3.0, 0.25])
        for kw in [
            {},
            {"label_smoothing": 0.2},
            {"weight": w},
            {"weight": w, "label_smoothing": 0.3},
        ]:
            for reduction in ("none", "mean", "sum"):
                tkw = {
                    k: torch.tensor(v) if k == "weight" else v for k, v in kw.items()
                }
                expected = F.cross_entropy(
                    torch.tensor(x),
                    torch.tensor(labels),
                    ignore_index=-100,
                    reduction=reduction,
                    **tkw,
                ).numpy()
                got = lk.sparse_softmax_cross_entropy(
                    x,
                    labels,
                    ignore_index=-100,
                    class_weights=kw.get("weight"),
                    label_smoothing=kw.get("label_smoothing", 0.0),
                    reduction=reduction,
                )
                np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)

    def test_matches_optax(self) -> None:
        optax = pytest.importorskip("optax")
        import jax

        jax.config.update("jax_enable_x64", True)
        rng = np.random.default_rng(2)
        x = rng.standard_normal((6, 4)) * 2
        labels = rng.integers(0, 4, 6)
        np.testing.assert_allclose(
            lk.sparse_softmax_cross_entropy(x, labels),
            optax.softmax_cross_entropy_with_integer_labels(x, labels),
            rtol=1e-13,
        )
        y = optax.smooth_labels(np.eye(4)[labels], 0.1)
        np.testing.assert_allclose(
            lk.sparse_softmax_cross_entropy(x, labels, label_smoothing=0.1),
            optax.softmax_cross_entropy(x, y),
            rtol=1e-13,
        )
        np.testing.assert_allclose(
            lk.softmax_cross_entropy(x, np.eye(4)[labels], label_smoothing=0.1),
            optax.softmax_cross_entropy(x, y),
            rtol=1e-13,
        )
        q = rng.standard_normal((6, 4))
        np.testing.assert_allclose(
            lk.kl_divergence(x, q),
            optax.losses.kl_divergence_with_log_targets(
                jax.nn.log_softmax(q), jax.nn.log_softmax(x)
            ),
            rtol=1e-12,
        )

    def test_every_label_ignored(self, xp: Any) -> None:
        x = xp.asarray(np.asarray([[1.0, 2.0], [3.0, -np.inf]]))
        labels = xp.asarray(np.asarray([-1, -1]))
        for red, expected in (("mean", 0.0), ("sum", 0.0)):
            loss, g = lk.grad.sparse_softmax_cross_entropy(
                x, labels, ignore_index=-1, reduction=red
            )
            assert float(to_numpy(loss)) == expected
            np.testing.assert_array_equal(to_numpy(g), 0.0)
        with_weights = lk.sparse_softmax_cross_entropy(
            x,
            labels,
            ignore_index=-1,
            class_weights=xp.asarray(np.asarray([1.0, 2.0])),
            label_smoothing=0.5,
            reduction="mean",
        )
        assert float(to_numpy(with_weights)) == 0.0

    def test_ignored_examples_are_zero_even_when_nan(self, xp: Any) -> None:
        x = xp.asarray(np.asarray([[np.nan, 1.0], [0.0, 1.0]]))
        loss = to_numpy(
            lk.sparse_softmax_cross_entropy(
                x, xp.asarray(np.asarray([7, 1])), ignore_index=7
            )
        )
        assert loss[0] == 0.0
        assert np.isclose(loss[1], np.log1p(np.exp(-1.0)))

    def test_masked_actions_never_nan(self, xp: Any) -> None:
        inf = np.inf
        x = xp.asarray(np.asarray([[-inf, 2.0, -inf], [1.0, -inf, -inf]]))
        labels = xp.asarray(np.asarray([1, 0]))
        loss, g = lk.grad.sparse_softmax_cross_entropy(x, labels, label_smoothing=0.0)
        np.testing.assert_array_equal(to_numpy(loss), [0.0, 0.0])
        np.testing.assert_array_equal(to_numpy(g), 0.0)
        # label on a masked action: the loss is +inf, honestly
        loss = to_numpy(
            lk.sparse_softmax_cross_entropy(x, xp.asarray(np.asarray([0, 0])))
        )
        assert loss[0] == inf
        assert loss[1] == 0.0

    def test_fully_masked_rows_dense(self, xp: Any) -> None:
        x = xp.asarray(np.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
        mask = xp.asarray(np.asarray([[True, False, True], [False, False, False]]))
        y = xp.asarray(np.asarray([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
        loss, g = lk.grad.softmax_cross_entropy(x, y, where=mask)
        loss, g = to_numpy(loss), to_numpy(g)
        assert np.isclose(loss[0], np.log1p(np.exp(-2.0)))
        assert loss[1] == 0.0
        np.testing.assert_array_equal(g[1], 0.0)
        assert g[0, 1] == 0.0
        assert np.isfinite(g).all()
        # where= is the same as dropping the masked classes
        only = lk.softmax_cross_entropy(
            xp.asarray(np.asarray([[1.0, 3.0]])), xp.asarray(np.asarray([[0.0, 1.0]]))
        )
        assert float(to_numpy(only)[0]) == loss[0]

    def test_smoothing_spreads_over_all_classes(self) -> None:
        x = np.asarray([[1.0, -2.0, 0.5, 3.0]])
        eps = 0.25
        expected = -(
            (1 - eps) * lk.log_softmax(x)[0, 2] + eps / 4 * lk.log_softmax(x).sum()
        )
        got = lk.sparse_softmax_cross_entropy(x, np.asarray([2]), label_smoothing=eps)
        np.testing.assert_allclose(got, [expected], rtol=1e-15)
        y = np.asarray([[0.0, 0.0, 1.0, 0.0]])
        np.testing.assert_allclose(
            lk.softmax_cross_entropy(x, y, label_smoothing=eps), got, rtol=1e-15
        )

    def test_softcap_temperature_z_loss_order(self, xp: Any) -> None:
        rng = np.random.default_rng(4)
        x_np = rng.standard_normal((5, 6)) * 20
        labels = rng.integers(0, 6, 5)
        cap, t, z = 15.0, 2.0, 1e-3
        got = to_numpy(
            lk.sparse_softmax_cross_entropy(
                xp.asarray(x_np),
                xp.asarray(labels),
                softcap=cap,
                temperature=t,
                z_loss=z,
                label_smoothing=0.1,
            )
        )
        xc = cap * np.tanh(x_np / cap) / t
        base = lk.sparse_softmax_cross_entropy(xc, labels, label_smoothing=0.1)
        lse = lk.logsumexp(xc, axis=-1)
        np.testing.assert_allclose(got, base + z * lse**2, rtol=1e-14)

    def test_axis(self, xp: Any) -> None:
        rng = np.random.default_rng(6)
        x = rng.standard_normal((3, 4, 5))
        labels = rng.integers(0, 4, (3, 5))
        got = to_numpy(
            lk.sparse_softmax_cross_entropy(xp.asarray(x), xp.asarray(labels), axis=1)
        )
        moved = np.moveaxis(x, 1, -1)
        np.testing.assert_array_equal(
            got, lk.sparse_softmax_cross_entropy(moved, labels)
        )
        assert got.shape == (3, 5)

    def test_labels_as_lists_and_scalar(self) -> None:
        assert float(lk.sparse_softmax_cross_entropy([0.0, 0.0], 1)) == np.log(2.0)
        np.testing.assert_allclose(
            lk.softmax_cross_entropy([[0.0, 0.0]], [[0.5, 0.5]]), [np.log(2.0)]
        )

    def test_note_values(self) -> None:
        """CE from probabilities and from logits agree on the note's example."""
        x = np.asarray([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], dtype=np.float32)
        y = np.asarray([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=np.float32)
        from_logits = lk.softmax_cross_entropy(x, y)
        np.testing.assert_allclose(
            from_logits, -np.log(lk.softmax(x.astype(np.float64)))[y == 1], rtol=1e-7
        )


class TestGradients:
    def test_central_differences(self) -> None:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((4, 5))
        labels = np.asarray([0, 1, 4, 2])
        options = {
            "ignore_index": 1,
            "class_weights": np.arange(1.0, 6.0),
            "label_smoothing": 0.2,
            "z_loss": 0.1,
            "softcap": 3.0,
            "temperature": 1.5,
        }
        for reduction in ("none", "mean", "sum"):
            _, g = lk.grad.sparse_softmax_cross_entropy(
                x, labels, reduction=reduction, **options
            )

            def f(v: np.ndarray, red: str = reduction) -> float:
                loss = lk.sparse_softmax_cross_entropy(
                    v, labels, reduction=red, **options
                )
                return float(np.sum(loss))

            fd = np.zeros_like(x)
            for i in np.ndindex(x.shape):
                e = np.zeros_like(x)
                e[i] = 1e-6
                fd[i] = (f(x + e) - f(x - e)) / 2e-6
            np.testing.assert_allclose(g, fd, atol=1e-8)

    def test_true_class_without_cancellation(self) -> None:
        x = np.asarray([[0.0, 40.0], [0.0, 80.0]])
        _, g = lk.grad.sparse_softmax_cross_entropy(x, np.asarray([1, 1]))
        exact = [-mpmath.exp(-40) / (1 + mpmath.exp(-40)), -mpmath.exp(-80)]
        assert ulp_error(g[:, 1], exact).max() <= 1.0
        _, g32 = lk.grad.softmax_cross_entropy(
            x.astype(np.float32), np.asarray([[0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
        )
        assert g32.dtype == np.float32
        assert g32[0, 1] < 0.0

    def test_matches_torch_autograd(self) -> None:
        torch = pytest.importorskip("torch")
        rng = np.random.default_rng(12)
        x = rng.standard_normal((6, 5)) * 3
        labels = np.asarray([0, 4, -100, 2, 2, 1])
        w = np.asarray([0.5, 2.0, 1.0, 3.0, 0.25])
        xt = torch.tensor(x, requires_grad=True)
        torch.nn.functional.cross_entropy(
            xt,
            torch.tensor(labels),
            weight=torch.tensor(w),
            label_smoothing=0.1,
            ignore_index=-100,
        ).backward()
        _, g = lk.grad.sparse_softmax_cross_entropy(
            x,
            labels,
            ignore_index=-100,
            class_weights=w,
            label_smoothing=0.1,
            reduction="mean",
        )
        np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-12, atol=1e-15)

    def test_torch_autograd_through_the_loss(self) -> None:
        torch = pytest.importorskip("torch")
        x = torch.tensor(
            [[0.0, 40.0, -float("inf")], [1.0, 2.0, 3.0], [5.0, 1e4, -1e4]],
            dtype=torch.float64,
            requires_grad=True,
        )
        labels = torch.tensor([1, -1, 2])
        kw: dict[str, Any] = {"ignore_index": -1, "label_smoothing": 0.0}
        lk.sparse_softmax_cross_entropy(x, labels, reduction="sum", **kw).backward()
        _, g = lk.grad.sparse_softmax_cross_entropy(
            x.detach().numpy(), labels.numpy(), reduction="sum", **kw
        )
        assert torch.isfinite(x.grad).all()
        np.testing.assert_allclose(x.grad.numpy(), g, rtol=1e-12, atol=1e-300)
        np.testing.assert_array_equal(x.grad.numpy()[1], 0.0)

    def test_jax_grad_through_the_loss(self) -> None:
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        x = jnp.asarray([[0.0, 40.0, -jnp.inf], [1.0, 2.0, 3.0], [5.0, 1e4, -1e4]])
        labels = jnp.asarray([1, -1, 2])
        w = jnp.asarray([1.0, 2.0, 0.5])

        def f(v: Any) -> Any:
            return lk.sparse_softmax_cross_entropy(
                v,
                labels,
                ignore_index=-1,
                class_weights=w,
                z_loss=1e-4,
                reduction="mean",
            )

        g = np.asarray(jax.jit(jax.grad(f))(x))
        _, g_lk = lk.grad.sparse_softmax_cross_entropy(
            np.asarray(x),
            np.asarray(labels),
            ignore_index=-1,
            class_weights=np.asarray(w),
            z_loss=1e-4,
            reduction="mean",
        )
        assert np.isfinite(g).all()
        np.testing.assert_allclose(g, g_lk, rtol=1e-12, atol=1e-300)

    def test_dense_autograd(self, xp: Any) -> None:
        if name_of(xp) not in ("torch", "jax"):
            pytest.skip("autograd is a torch/JAX feature")
        rng = np.random.default_rng(13)
        x_np = rng.standard_normal((3, 4))
        y_np = rng.dirichlet(np.ones(4), size=3)
        _, g = lk.grad.softmax_cross_entropy(
            x_np, y_np, label_smoothing=0.2, reduction="mean"
        )
        if name_of(xp) == "torch":
            import torch

            x = torch.tensor(x_np, requires_grad=True)
            lk.softmax_cross_entropy(
                x, torch.tensor(y_np), label_smoothing=0.2, reduction="mean"
            ).backward()
            got = x.grad.numpy()
        else:
            import jax

            got = np.asarray(
                jax.jit(
                    jax.grad(
                        lambda v: lk.softmax_cross_entropy(
                            v, y_np, label_smoothing=0.2, reduction="mean"
                        )
                    )
                )(xp.asarray(x_np))
            )
        np.testing.assert_allclose(got, g, rtol=1e-12)

    def test_entropy_kl_gradients(self) -> None:
        rng = np.random.default_rng(14)
        a, b = rng.standard_normal((2, 3, 5))
        _, gh = lk.grad.softmax_entropy(a)
        _, gk = lk.grad.kl_divergence(a, b)
        for g, f in (
            (gh, lambda v: lk.softmax_entropy(v).sum()),
            (gk, lambda v: lk.kl_divergence(v, b).sum()),
        ):
            fd = np.zeros_like(a)
            for i in np.ndindex(a.shape):
                e = np.zeros_like(a)
                e[i] = 1e-6
                fd[i] = (f(a + e) - f(a - e)) / 2e-6
            np.testing.assert_allclose(g, fd, atol=1e-8)


@settings(max_examples=40, deadline=None)
@given(
    x=hnp.arrays(
        np.float64,
        (3, 4),
        elements=st.floats(-30, 30, allow_nan=False, allow_infinity=False),
    ),
    labels=hnp.arrays(np.int64, (3,), elements=st.integers(0, 3)),
    eps=st.sampled_from([0.0, 0.1, 1.0]),
)
def test_gradient_is_the_derivative(
    x: np.ndarray, labels: np.ndarray, eps: float
) -> None:
    """The analytic gradient equals central differences of the loss."""
    _, g = lk.grad.sparse_softmax_cross_entropy(
        x, labels, label_smoothing=eps, reduction="sum"
    )
    h = 1e-5
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        up = lk.sparse_softmax_cross_entropy(
            x + e, labels, label_smoothing=eps, reduction="sum"
        )
        dn = lk.sparse_softmax_cross_entropy(
            x - e, labels, label_smoothing=eps, reduction="sum"
        )
        assert abs((float(up) - float(dn)) / (2 * h) - g[i]) <= 1e-6


@settings(max_examples=40, deadline=None)
@given(
    x=hnp.arrays(np.float64, (5,), elements=st.floats(-1e3, 1e3, allow_nan=False)),
    label=st.integers(0, 4),
)
def test_loss_is_minus_log_softmax(x: np.ndarray, label: int) -> None:
    loss = lk.sparse_softmax_cross_entropy(x, label)
    assert float(loss) == -float(lk.log_softmax(x)[label])
    assert float(loss) >= 0.0


class TestVjp:
    def test_against_torch(self) -> None:
        torch = pytest.importorskip("torch")
        rng = np.random.default_rng(15)
        x_np = rng.standard_normal((3, 4)) * 3
        g_np = rng.standard_normal((3, 4))
        x = torch.tensor(x_np, requires_grad=True)
        for name, tf in (
            ("softmax", lambda v: torch.softmax(v, -1)),
            ("log_softmax", lambda v: torch.log_softmax(v, -1)),
        ):
            x.grad = None
            (tf(x) * torch.tensor(g_np)).sum().backward()
            got = getattr(lk.vjp, name)(x_np, g_np, axis=-1)
            np.testing.assert_allclose(got, x.grad.numpy(), rtol=1e-12, atol=1e-15)
        x.grad = None
        (torch.logsumexp(x, 1) * torch.tensor(g_np[:, 0])).sum().backward()
        got = lk.vjp.logsumexp(x_np, g_np[:, 0], axis=1)
        np.testing.assert_allclose(got, x.grad.numpy(), rtol=1e-12)
        x.grad = None
        (torch.sigmoid(x) * torch.tensor(g_np)).sum().backward()
        np.testing.assert_allclose(
            lk.vjp.sigmoid(x_np, g_np), x.grad.numpy(), rtol=1e-12
        )

    def test_backends_and_masked_rows(self, xp: Any) -> None:
        x = xp.asarray(np.asarray([[1.0, 2.0, -np.inf], [-np.inf, -np.inf, -np.inf]]))
        g = xp.asarray(np.asarray([[1.0, -1.0, 2.0], [1.0, 2.0, 3.0]]))
        for name in ("softmax", "log_softmax"):
            out = to_numpy(getattr(lk.vjp, name)(x, g))
            assert np.isfinite(out).all()
            np.testing.assert_array_equal(out[1], 0.0)
        out = to_numpy(lk.vjp.logsumexp(x, xp.asarray(np.asarray([1.0, 1.0])), axis=-1))
        np.testing.assert_array_equal(out[1], 0.0)
        np.testing.assert_allclose(out[0], to_numpy(lk.softmax(x))[0])

    def test_sigmoid_tails(self) -> None:
        got = lk.vjp.sigmoid(np.asarray([-800.0, 40.0, 0.0]), np.ones(3))
        exact = [mpmath.exp(-800) / (1 + mpmath.exp(-800)) ** 2, None, 0.25]
        exact[1] = mpmath.exp(-40) / (1 + mpmath.exp(-40)) ** 2
        assert ulp_error(got, exact).max() <= 2.0

    def test_shape_errors(self) -> None:
        with pytest.raises(ValueError, match=r"`g` must have the shape of `x` \(2,\)"):
            lk.vjp.softmax([1.0, 2.0], [1.0])
        with pytest.raises(ValueError, match=r"reduced shape \(2,\)"):
            lk.vjp.logsumexp(np.zeros((2, 3)), np.zeros(3), axis=1)


class TestErrors:
    def test_label_shape(self) -> None:
        with pytest.raises(ValueError, match=r"\(4,\).*\(3,\).*\(4, 5\)"):
            lk.sparse_softmax_cross_entropy(np.zeros((4, 5)), np.zeros(3, dtype=int))
        with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
            lk.softmax_cross_entropy(np.zeros((2, 3)), np.zeros((3, 2)))

    def test_label_out_of_range(self) -> None:
        with pytest.raises(ValueError, match=r"\[0, 3\); got 3 at position 1"):
            lk.sparse_softmax_cross_entropy(np.zeros((2, 3)), np.asarray([0, 3]))
        with pytest.raises(ValueError, match=r"got -2 at position \(1, 0\)"):
            lk.sparse_softmax_cross_entropy(
                np.zeros((2, 2, 3)), np.asarray([[0, -1], [-2, 0]]), ignore_index=-1
            )
        # one example: a 0-d label, with and without ignore_index
        for ii in (None, -1):
            with pytest.raises(ValueError, match=r"got 5 at position \(\)"):
                lk.sparse_softmax_cross_entropy(
                    np.zeros(3), np.asarray(5), ignore_index=ii
                )

    def test_label_out_of_range_under_jit_is_nan(self) -> None:
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        f = jax.jit(lk.sparse_softmax_cross_entropy)
        loss = np.asarray(f(jnp.zeros((2, 3)), jnp.asarray([0, 5])))
        assert np.isnan(loss[1])
        assert loss[0] == np.log(3.0)

    def test_labels_not_integer(self) -> None:
        with pytest.raises(TypeError, match="`labels` must be integer class ids"):
            lk.sparse_softmax_cross_entropy(np.zeros((2, 3)), np.zeros(2))

    @pytest.mark.parametrize(
        ("kwargs", "exc", "match"),
        [
            ({"reduction": "avg"}, ValueError, "Unknown reduction 'avg'"),
            (
                {"label_smoothing": 1.5},
                ValueError,
                r"`label_smoothing` must be in \[0, 1\]",
            ),
            ({"label_smoothing": -0.1}, ValueError, "label_smoothing"),
            ({"z_loss": -1.0}, ValueError, "`z_loss`"),
            ({"softcap": 0.0}, ValueError, "`softcap`"),
            ({"temperature": 0.0}, ValueError, "`temperature`"),
            ({"class_weights": np.ones(4)}, ValueError, r"\(3,\).*\(4,\)"),
            ({"ignore_index": 1.5}, TypeError, "`ignore_index`"),
        ],
    )
    def test_options(self, kwargs: dict[str, Any], exc: type, match: str) -> None:
        with pytest.raises(exc, match=match):
            lk.sparse_softmax_cross_entropy(
                np.zeros((2, 3)), np.asarray([0, 1]), **kwargs
            )

    def test_dense_options(self) -> None:
        with pytest.raises(ValueError, match="Unknown reduction"):
            lk.softmax_cross_entropy(np.zeros((1, 2)), np.zeros((1, 2)), reduction="x")
        with pytest.raises(ValueError, match="label_smoothing"):
            lk.softmax_cross_entropy(
                np.zeros((1, 2)), np.zeros((1, 2)), label_smoothing=2
            )
        with pytest.raises(TypeError, match="`logits`"):
            lk.softmax_cross_entropy(np.zeros((1, 2), dtype=complex), np.zeros((1, 2)))

    def test_kl_shapes(self) -> None:
        with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 4\)"):
            lk.kl_divergence(np.zeros((2, 3)), np.zeros((2, 4)))

    def test_scalar_logits(self) -> None:
        with pytest.raises(ValueError, match="at least one dimension"):
            lk.sparse_softmax_cross_entropy(np.float64(1.0), 0)


def test_logsumexp_reference_is_consistent() -> None:
    """The references agree with each other (a guard on the test itself)."""
    row = (1.0, 2.0, 3.0)
    assert abs(ref_sparse(row, 0) - (ref_logsumexp(row) - 1)) < mpmath.mpf(10) ** -40
    rng = np.random.default_rng(11)
    for _ in range(3):
        r = tuple((rng.standard_normal(50) * 3).tolist())
        assert ref_sparse(r, 7) == ref_sparse_cross_entropy(r, 7)


@pytest.mark.parametrize(
    "row",
    [
        [6755.939316930017, 7493.2815553678365],  # subnormal entropy
        [0.0, 745.0],
        [68.87528494081556, 0.09131859365908906],  # tiny: x - m is inexact
        [0.0, 738.0, -1e5, 737.0, 5.0],
    ],
)
def test_entropy_tiny_and_subnormal(row: list[float]) -> None:
    ls = ref_log_softmax(row)
    exact = -mpmath.fsum(mpmath.exp(v) * v for v in ls if v != mpmath.ninf)
    h = lk.softmax_entropy(np.asarray(row))
    assert ulp_error(np.asarray([h]), [exact]).max() <= 1.0


class TestOptaxAxisAndWhere:
    """`axis` tuples and `where` masks mean what they mean in optax."""

    @pytest.fixture(autouse=True)
    def _x64(self) -> None:
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)

    def test_dense_where(self, xp: Any) -> None:
        optax = pytest.importorskip("optax")
        rng = np.random.default_rng(21)
        x = rng.standard_normal((4, 5)) * 3
        y = rng.dirichlet(np.ones(5), size=4)  # mass on excluded classes too
        w = rng.random((4, 5)) > 0.3
        w[2] = False  # a row with no valid class
        got = to_numpy(
            lk.softmax_cross_entropy(xp.asarray(x), xp.asarray(y), where=xp.asarray(w))
        )
        expected = np.asarray(optax.softmax_cross_entropy(x, y, where=w))
        np.testing.assert_allclose(got, expected, rtol=1e-13)
        assert got[2] == 0.0
        # a mask of whole examples (the batch shape)
        rows = np.asarray([True, False, True, True])
        got = lk.softmax_cross_entropy(x, y, where=rows)
        np.testing.assert_allclose(
            got, optax.softmax_cross_entropy(x, y, where=rows), rtol=1e-13
        )

    def test_axis_tuple(self, xp: Any) -> None:
        optax = pytest.importorskip("optax")
        rng = np.random.default_rng(22)
        x = rng.standard_normal((2, 3, 4, 5))
        labels = rng.integers(0, 12, (2, 5))
        got = to_numpy(
            lk.sparse_softmax_cross_entropy(
                xp.asarray(x), xp.asarray(labels), axis=(1, 2)
            )
        )
        expected = optax.softmax_cross_entropy_with_integer_labels(
            x, labels, axis=(1, 2)
        )
        np.testing.assert_allclose(got, expected, rtol=1e-13)
        y = np.moveaxis(np.eye(12)[labels].reshape(2, 5, 3, 4), 1, -1)
        got = to_numpy(
            lk.softmax_cross_entropy(xp.asarray(x), xp.asarray(y), axis=(1, 2))
        )
        np.testing.assert_allclose(
            got, optax.softmax_cross_entropy(x, y, axis=(1, 2)), rtol=1e-13
        )
        _, g = lk.grad.sparse_softmax_cross_entropy(x, labels, axis=(1, 2))
        assert g.shape == x.shape

    def test_sparse_where(self, xp: Any) -> None:
        optax = pytest.importorskip("optax")
        x = np.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [0.0, 1.0, 2.0]])
        w = np.asarray([[True, False, True], [True, True, True], [False] * 3])
        labels = np.asarray([2, 0, 1])
        loss, g = lk.grad.sparse_softmax_cross_entropy(
            xp.asarray(x), xp.asarray(labels), where=xp.asarray(w)
        )
        expected = optax.softmax_cross_entropy_with_integer_labels(x, labels, where=w)
        np.testing.assert_allclose(to_numpy(loss), expected, rtol=1e-13)
        g = to_numpy(g)
        assert g[0, 1] == 0.0
        np.testing.assert_array_equal(g[2], 0.0)  # no valid class: ignored
        # a label on an excluded class: its probability is 0
        inf_loss = lk.sparse_softmax_cross_entropy(x[:1], np.asarray([1]), where=w[:1])
        assert float(inf_loss[0]) == np.inf
        # the mask applies after the softcap: excluded logits stay excluded
        capped = lk.sparse_softmax_cross_entropy(x, labels, where=w, softcap=2.0)
        xc = 2.0 * np.tanh(x / 2.0)
        np.testing.assert_allclose(
            capped, lk.sparse_softmax_cross_entropy(xc, labels, where=w), rtol=1e-15
        )


@pytest.mark.parametrize("lib", ["torch", "jax"])
def test_entropy_and_kl_autograd(lib: str) -> None:
    """Torch and JAX differentiate through softmax_entropy and kl_divergence."""
    rng = np.random.default_rng(23)
    a = rng.standard_normal((3, 4)) * 3
    b = rng.standard_normal((3, 4))
    a[0, 1] = -np.inf  # a masked class: zero gradient, no NaN
    b[0, 1] = -np.inf
    _, gh = lk.grad.softmax_entropy(a)
    _, gk = lk.grad.kl_divergence(a, b)
    if lib == "torch":
        torch = pytest.importorskip("torch")
        got = []
        for f in (
            lambda v: lk.softmax_entropy(v).sum(),
            lambda v: lk.kl_divergence(v, torch.tensor(b)).sum(),
        ):
            x = torch.tensor(a, requires_grad=True)
            f(x).backward()
            got.append(x.grad.numpy())
    else:
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        # One reverse-mode pass: jax.vjp of both losses, pulled back with a
        # cotangent of ones on one and zeros on the other, is jax.grad of each
        # sum. The two pullbacks run the same (already compiled) operations:
        # half the eager XLA compilations of two separate jax.grad calls.
        (h, _), pull = jax.vjp(
            lambda v: (lk.softmax_entropy(v), lk.kl_divergence(v, b)),
            jax.numpy.asarray(a),
        )
        ones, zeros = jax.numpy.ones_like(h), jax.numpy.zeros_like(h)
        got = [
            np.asarray(pull((ones, zeros))[0]),
            np.asarray(pull((zeros, ones))[0]),
        ]
    for g_auto, g in zip(got, (gh, gk), strict=True):
        assert np.isfinite(g_auto).all()
        np.testing.assert_allclose(g_auto, g, rtol=1e-10, atol=1e-14)
