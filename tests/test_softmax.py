"""softmax, log_softmax and logsumexp: accuracy, special values, options, errors."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from array_api_compat import is_jax_namespace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

import logitkit as lk
from _backends import asarray, jit, name_of, to_numpy
from _reference import log_softmax as ref_log_softmax
from _reference import logsumexp as ref_logsumexp
from _reference import softmax as ref_softmax
from _reference import ulp_error

# The contract (shared/API.md): float32 within 0.51 ulp, float64 within 1 ulp.
ULP = {"float32": 0.51, "float64": 1.0, "float16": 0.51, "bfloat16": 0.51}

# Computed with tests/_reference.py (mpmath, 50 digits).
X_1D = [0.0, 1.0, 2.0, 3.0]
LOG_SOFTMAX_1D = [
    -3.4401896985611953,
    -2.4401896985611953,
    -1.4401896985611953,
    -0.44018969856119533,
]
# softmax([0, 3, 1]) in float32, correctly rounded. The note's TensorFlow printed
# [0.04201007, 0.8437947, 0.11419519]: its last two are one ulp off.
SOFTMAX_031_F32 = [0.042010065, 0.84379476, 0.1141952]

_rng = np.random.default_rng(1234)
ADVERSARIAL: dict[str, list[list[float]]] = {
    "scale 1": (_rng.standard_normal((3, 10))).tolist(),
    "scale 10": (_rng.standard_normal((3, 10)) * 10).tolist(),
    "scale 100": (_rng.standard_normal((3, 10)) * 100).tolist(),
    "scale 1e4": (_rng.standard_normal((3, 10)) * 1e4).tolist(),
    "2 classes": (_rng.standard_normal((4, 2)) * 5).tolist(),
    "1000 classes": (_rng.standard_normal((1, 1000)) * 3).tolist(),
    # top probability 1 - 1e-13: its log-probability is -1e-13
    "confident": [[0.0, 29.933606208922594], [1.0, 2.0, 34.23, 0.5, -1.0]],
    "ties": [[2.0, 2.0, 1.0], [5.0, 5.0, 5.0, 5.0]],
    "-inf entries": [[-np.inf, 0.0, 1.0], [-np.inf, 3.0, -np.inf]],
    "tiny": [[1e-30, -1e-30, 0.0], [1e-40, 0.0, 2e-40]],
}
NEAR_OVERFLOW = {
    "float32": [[3e38, 3e38 - 1e32, -3e38], [-3e38, -3.3e38]],
    "float64": [[1.7e308, 1.7e308 - 1e293, -1.7e308], [-1.7e308, -1.79e308]],
}


def _cases(dtype: str) -> list[tuple[str, list[float]]]:
    out = [(name, row) for name, rows in ADVERSARIAL.items() for row in rows]
    out += [("near overflow", row) for row in NEAR_OVERFLOW[dtype]]
    return out


@functools.cache
def _reference(fn: str, row: tuple[float, ...]) -> list[Any]:
    if fn == "softmax":
        return ref_softmax(row)
    if fn == "log_softmax":
        return ref_log_softmax(row)
    return [ref_logsumexp(row)]


def _rounded(row: list[float], dtype: str) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(row, dtype=dtype))


FAMILY = ("softmax", "log_softmax", "logsumexp")


@functools.cache
def _jitted_family() -> Any:
    """One ``jax.jit`` of all three functions of a row, shared by the tests.

    XLA compiles the row statistics the three share once: a third of the
    compilation time of three separate ``jax.jit`` (each output is still
    logitkit's code as XLA compiles it under ``jit``).
    """
    import jax

    return jax.jit(lambda x: tuple(getattr(lk, fn)(x, axis=-1) for fn in FAMILY))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fn", FAMILY)
def test_adversarial_ulp(xp: Any, fn: str, dtype: str) -> None:
    """Every adversarial row within the contract's ulp bound, on every backend."""
    if is_jax_namespace(xp):
        family = _jitted_family()

        def f(x: Any) -> Any:
            return family(x)[FAMILY.index(fn)]
    else:
        f = jit(xp, getattr(lk, fn), axis=-1)
    by_length: dict[int, list[tuple[str, list[float]]]] = {}
    for name, row in _cases(dtype):
        by_length.setdefault(len(row), []).append((name, row))
    worst = 0.0
    for group in by_length.values():  # one call (and one jit) per row length
        x = xp.asarray(np.asarray([row for _, row in group], dtype=dtype))
        y = to_numpy(f(x)).reshape(len(group), -1)
        for (name, row), y_row in zip(group, y, strict=True):
            exact = _reference(fn, _rounded(row, dtype))
            err = ulp_error(y_row, exact)
            assert err.max() <= ULP[dtype], (name, row, y_row, err)
            worst = max(worst, float(err.max()))
    assert worst > 0.0  # the check compares something


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("fn", ["softmax", "log_softmax", "logsumexp"])
def test_low_precision_ulp(xp: Any, fn: str, dtype: str) -> None:
    """float16 and bfloat16 accumulate wide and round once: 0.51 ulp of their type."""
    if not hasattr(xp, dtype):
        pytest.skip(f"{name_of(xp)} has no {dtype}")
    rows = (np.random.default_rng(5).standard_normal((6, 12)) * 4).tolist()
    f = getattr(lk, fn)
    for row in rows:
        x = xp.astype(xp.asarray(np.asarray(row)), getattr(xp, dtype))
        x64 = to_numpy(xp.astype(x, xp.float64))
        y = f(x, axis=-1)
        assert y.dtype == getattr(xp, dtype)
        exact = _reference(fn, tuple(float(v) for v in x64))
        assert ulp_error(np.atleast_1d(to_numpy(y)), exact, dtype).max() <= ULP[dtype]


class TestSoftmax:
    def test_note_values(self, xp: Any) -> None:
        y = lk.softmax(xp.asarray(np.asarray([0.0, 3.0, 1.0], dtype=np.float32)))
        assert y.dtype == xp.float32
        np.testing.assert_array_equal(to_numpy(y), np.float32(SOFTMAX_031_F32))

    def test_reference_1d(self, xp: Any) -> None:
        y = to_numpy(lk.softmax(asarray(xp, X_1D)))
        assert ulp_error(y, _reference("softmax", tuple(X_1D))).max() <= ULP["float64"]

    def test_fully_masked_and_all_neg_inf_rows_are_zero(self, xp: Any) -> None:
        x = asarray(xp, [[1.0, 2.0, 3.0], [-np.inf, -np.inf, -np.inf], [4.0, 5.0, 6.0]])
        mask = xp.asarray(
            np.asarray([[True, True, True], [True, True, True], [False, False, False]])
        )
        y = to_numpy(lk.softmax(x, where=mask))
        np.testing.assert_array_equal(y[1:], 0.0)
        np.testing.assert_allclose(y[0].sum(), 1.0, rtol=1e-15)

    def test_axis_none_is_all_axes(self, xp: Any) -> None:
        x = np.random.default_rng(2).standard_normal((2, 3))
        y = to_numpy(lk.softmax(xp.asarray(x), axis=None))
        ref = to_numpy(lk.softmax(xp.asarray(x.reshape(-1)))).reshape(2, 3)
        np.testing.assert_array_equal(y, ref)

    def test_nan_next_to_inf_is_nan(self, xp: Any) -> None:
        y = to_numpy(
            lk.softmax(asarray(xp, [[np.inf, np.nan, 1.0], [1.0, np.inf, np.nan]]))
        )
        assert np.isnan(y).all()

    def test_nan_row_is_nan_other_rows_unharmed(self, xp: Any) -> None:
        y = to_numpy(lk.softmax(asarray(xp, [[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0]])))
        assert np.isnan(y[0]).all()
        assert np.isfinite(y[1]).all()

    def test_posinf_entries_share_the_mass(self, xp: Any) -> None:
        x = asarray(xp, [[np.inf, 1.0, np.inf, np.inf], [np.inf, -np.inf, 0.0, 0.0]])
        y = to_numpy(lk.softmax(x))
        np.testing.assert_array_equal(y[0], [1 / 3, 0.0, 1 / 3, 1 / 3])
        np.testing.assert_array_equal(y[1], [1.0, 0.0, 0.0, 0.0])

    def test_masked_entries_equal_filtering(self, xp: Any) -> None:
        x = np.asarray([1.0, 5.0, -2.0, 3.0])
        mask = np.asarray([True, False, True, True])
        y = to_numpy(lk.softmax(xp.asarray(x), where=xp.asarray(mask)))
        assert y[1] == 0.0
        np.testing.assert_array_equal(
            y[mask], to_numpy(lk.softmax(xp.asarray(x[mask])))
        )

    def test_masked_nan_does_not_poison_the_row(self, xp: Any) -> None:
        x = asarray(xp, [np.nan, 1.0, 2.0])
        mask = xp.asarray(np.asarray([False, True, True]))
        y = to_numpy(lk.softmax(x, where=mask))
        assert y[0] == 0.0
        assert np.isfinite(y).all()

    def test_temperature_divides_the_logits(self, xp: Any) -> None:
        x = np.asarray([[1.0, 2.0, 4.0]])
        y = to_numpy(lk.softmax(xp.asarray(x), temperature=2.0))
        np.testing.assert_array_equal(y, to_numpy(lk.softmax(xp.asarray(x / 2.0))))

    # JAX and Dask: the unsorted tuple (2, 0), which moves, merges and restores
    # axes; every axis goes through the same backend-neutral transpose and
    # reshape, run for all six on NumPy, array-api-strict and PyTorch.
    @pytest.mark.backend_cases("jax.numpy", "dask.array", axis=[(2, 0)])
    @pytest.mark.parametrize("axis", [0, 1, -1, (0, 2), (2, 0), (0, 1, 2)])
    def test_axis_matches_moveaxis(self, xp: Any, axis: Any) -> None:
        x = np.random.default_rng(0).standard_normal((3, 4, 5))
        y = to_numpy(lk.softmax(xp.asarray(x), axis=axis))
        axes = tuple(
            sorted(a % 3 for a in (axis if isinstance(axis, tuple) else (axis,)))
        )
        rest = [a for a in range(3) if a not in axes]
        moved = np.transpose(x, (*rest, *axes))
        flat = moved.reshape(*moved.shape[: len(rest)], -1)
        ref = to_numpy(lk.softmax(xp.asarray(flat))).reshape(moved.shape)
        np.testing.assert_array_equal(np.transpose(y, (*rest, *axes)), ref)
        np.testing.assert_allclose(y.sum(axis=axes), 1.0, rtol=1e-15)

    def test_integer_input_is_promoted(self, xp: Any) -> None:
        y = lk.softmax(xp.asarray([0, 3, 1]))
        assert xp.isdtype(y.dtype, "real floating")

    def test_no_writeback(self, xp: Any) -> None:
        x_np = np.asarray([[1.0, -np.inf, 3.0]])
        x = xp.asarray(x_np.copy())
        lk.softmax(x, where=xp.asarray(np.asarray([[True, True, False]])))
        lk.log_softmax(x)
        np.testing.assert_array_equal(to_numpy(x), x_np)

    def test_empty(self, xp: Any) -> None:
        if name_of(xp) == "dask":
            pytest.skip("dask: zero-size reductions need a known chunk layout")
        assert tuple(lk.softmax(xp.zeros((3, 0))).shape) == (3, 0)
        assert tuple(lk.log_softmax(xp.zeros((0, 4))).shape) == (0, 4)

    def test_same_device(self, xp: Any) -> None:
        from array_api_compat import device

        x = asarray(xp, [1.0, 2.0])
        assert device(lk.softmax(x)) == device(x)


class TestLogSoftmax:
    def test_reference_values(self, xp: Any) -> None:
        y = to_numpy(lk.log_softmax(asarray(xp, X_1D)))
        assert ulp_error(y, _reference("log_softmax", tuple(X_1D))).max() <= 1.0
        np.testing.assert_allclose(y, LOG_SOFTMAX_1D, rtol=1e-15)

    def test_confident_top_class(self, xp: Any) -> None:
        # x - logsumexp(x) gives 0 (float32) or -1.0000333894311098e-13 (float64).
        for dtype in ("float32", "float64"):
            row = [0.0, 29.933606208922594]
            x = xp.asarray(np.asarray(row, dtype=dtype))
            y = to_numpy(lk.log_softmax(x))
            exact = _reference("log_softmax", _rounded(row, dtype))
            assert y[1] < 0
            assert ulp_error(y, exact).max() <= ULP[dtype]

    def test_where_log_softmax_of_softmax_fails(self, xp: Any) -> None:
        y = to_numpy(lk.log_softmax(asarray(xp, [0.0, 200.0], "float32")))
        np.testing.assert_array_equal(y, np.float32([-200.0, 0.0]))

    def test_masked_entries_are_neg_inf(self, xp: Any) -> None:
        x = asarray(xp, [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
        mask = xp.asarray(np.asarray([[True, False, True], [False, False, False]]))
        y = to_numpy(lk.log_softmax(x, where=mask))
        assert y[0, 1] == -np.inf
        np.testing.assert_array_equal(y[1], -np.inf)

    def test_shift_invariance_exact_for_exact_shifts(self, xp: Any) -> None:
        x = np.asarray([0.5, 1.25, -3.0, 2.0])
        a = to_numpy(lk.log_softmax(xp.asarray(x)))
        b = to_numpy(lk.log_softmax(xp.asarray(x + 1024.0)))  # exact shift
        np.testing.assert_array_equal(a, b)


class TestLogSumExp:
    def test_default_axis_is_none(self, xp: Any) -> None:
        x = asarray(xp, [[0.0, 1.0], [2.0, 3.0]])
        y = to_numpy(lk.logsumexp(x))
        assert y.shape == ()
        assert ulp_error(y, [ref_logsumexp([0.0, 1.0, 2.0, 3.0])]).max() <= 1.0

    def test_keepdims_and_tuple_axis(self, xp: Any) -> None:
        x = xp.asarray(np.zeros((2, 3, 4)))
        assert tuple(lk.logsumexp(x, axis=(0, 2)).shape) == (3,)
        assert tuple(lk.logsumexp(x, axis=(0, 2), keepdims=True).shape) == (1, 3, 1)
        np.testing.assert_allclose(
            to_numpy(lk.logsumexp(x, axis=(0, 2))), np.log(8.0), rtol=1e-15
        )

    def test_special_rows(self, xp: Any) -> None:
        x = asarray(
            xp, [[np.inf, 1.0], [np.nan, 1.0], [-np.inf, -np.inf], [1e308, 1e308]]
        )
        y = to_numpy(lk.logsumexp(x, axis=-1))
        assert y[0] == np.inf
        assert np.isnan(y[1])
        assert y[2] == -np.inf
        assert y[3] == 1e308 + np.log(2.0)  # no overflow

    def test_where(self, xp: Any) -> None:
        x = asarray(xp, [1.0, 2.0, 3.0])
        mask = xp.asarray(np.asarray([True, True, False]))
        y = to_numpy(lk.logsumexp(x, where=mask))
        assert ulp_error(y, [ref_logsumexp([1.0, 2.0])]).max() <= 1.0
        none = xp.asarray(np.asarray([False, False, False]))
        assert to_numpy(lk.logsumexp(x, where=none)) == -np.inf

    def test_weights_match_scipy(self, xp: Any) -> None:
        special = pytest.importorskip("scipy.special")
        rng = np.random.default_rng(3)
        a = rng.standard_normal((4, 6))
        b = rng.standard_normal((4, 6))
        for bb in (np.abs(b), b, np.abs(b[0])):
            got, sgn = lk.logsumexp(
                xp.asarray(a), axis=1, b=xp.asarray(bb), return_sign=True
            )
            ref, ref_sign = special.logsumexp(a, axis=1, b=bb, return_sign=True)
            np.testing.assert_allclose(to_numpy(got), ref, rtol=1e-13)
            np.testing.assert_array_equal(to_numpy(sgn), ref_sign)
        # a negative sum without return_sign is NaN, as in SciPy
        y = to_numpy(lk.logsumexp(asarray(xp, [1.0, 2.0]), b=asarray(xp, [1.0, -2.0])))
        assert np.isnan(y)

    def test_zero_weight_excludes_even_inf(self, xp: Any) -> None:
        x = asarray(xp, [1.0, np.inf])
        y = to_numpy(lk.logsumexp(x, b=asarray(xp, [1.0, 0.0])))
        assert y == 1.0

    def test_exact_cancellation_has_sign_zero(self, xp: Any) -> None:
        x = asarray(xp, [1.0, 1.0])
        y, s = lk.logsumexp(x, b=asarray(xp, [1.0, -1.0]), return_sign=True)
        assert to_numpy(y) == -np.inf
        assert to_numpy(s) == 0.0

    def test_empty_is_neg_inf(self) -> None:
        assert float(lk.logsumexp(np.zeros((0,)))) == -np.inf
        assert lk.logsumexp(np.zeros((2, 0)), axis=1).tolist() == [-np.inf, -np.inf]

    def test_weights_must_broadcast(self) -> None:
        with pytest.raises(ValueError, match=r"`b` must broadcast against `x`.*\(3,\)"):
            lk.logsumexp(np.zeros(4), b=np.ones(3))


class TestAutograd:
    """Fully masked rows have zero gradients, not NaN, through torch and JAX."""

    def test_torch(self) -> None:
        torch = pytest.importorskip("torch")
        x = torch.tensor(
            [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64, requires_grad=True
        )
        mask = torch.tensor([[True, True, False], [False, False, False]])
        (
            lk.softmax(x, where=mask)[:, 0].sum()
            + lk.log_softmax(x, where=mask)[0, 1]
            + lk.logsumexp(x, axis=1, where=mask)[0]
        ).backward()
        g = x.grad.numpy()
        assert np.isfinite(g).all()
        np.testing.assert_array_equal(g[1], 0.0)
        assert g[0, 2] == 0.0
        # matches torch's own on the valid part
        x2 = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
        (
            torch.softmax(x2, 0)[0]
            + torch.log_softmax(x2, 0)[1]
            + torch.logsumexp(x2, 0)
        ).backward()
        np.testing.assert_allclose(g[0, :2], x2.grad.numpy(), rtol=1e-14)

    def test_jax(self) -> None:
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        mask = jnp.asarray([[True, True, False], [False, False, False]])

        def f(x: Any) -> Any:
            return (
                lk.softmax(x, where=mask)[:, 0].sum()
                + lk.log_softmax(x, where=mask)[0, 1]
                + lk.logsumexp(x, axis=1, where=mask)[0]
            )

        x = jnp.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
        g = np.asarray(jax.jit(jax.grad(f))(x))
        assert np.isfinite(g).all()
        np.testing.assert_array_equal(g[1], 0.0)

        def ref(x: Any) -> Any:
            return jax.nn.softmax(x)[0] + jax.nn.log_softmax(x)[1] + jax.nn.logsumexp(x)

        np.testing.assert_allclose(g[0, :2], jax.grad(ref)(x[0, :2]), rtol=1e-14)

    def test_torch_ties_split_the_gradient_correctly(self) -> None:
        torch = pytest.importorskip("torch")
        x = torch.tensor([3.0, 3.0, 1.0], dtype=torch.float64, requires_grad=True)
        lk.logsumexp(x).backward()
        np.testing.assert_allclose(
            x.grad.numpy(), torch.softmax(x.detach(), 0).numpy(), rtol=1e-15
        )


_settings = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    deadline=None,
    max_examples=40,
)
_rows = npst.arrays(
    np.float64,
    npst.array_shapes(min_dims=1, max_dims=3, max_side=6),
    elements=st.floats(-1e3, 1e3),
)


@_settings
@given(x=_rows)
def test_softmax_is_a_distribution(x: np.ndarray) -> None:
    p = lk.softmax(x)
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=0, atol=4e-16 * x.shape[-1])


@_settings
@given(x=_rows, shift=st.floats(-1e3, 1e3))
def test_softmax_shift_invariance(x: np.ndarray, shift: float) -> None:
    # x + shift is rounded, so compare at the size of that rounding
    a, b = lk.softmax(x), lk.softmax(x + shift)
    atol = 8 * np.finfo(np.float64).eps * (np.abs(x).max() + abs(shift) + 1)
    np.testing.assert_allclose(a, b, rtol=0, atol=atol)


@_settings
@given(x=_rows)
def test_exp_log_softmax_is_softmax(x: np.ndarray) -> None:
    # exp turns the half-ulp rounding of a log-probability l into a relative
    # error of |l| * eps/2; both sides are otherwise within an ulp or two.
    ls, p = lk.log_softmax(x), lk.softmax(x)
    eps = np.finfo(np.float64).eps
    tol = p * eps * (np.abs(ls) / 2 + 4) + 1e-300
    assert (np.abs(np.exp(ls) - p) <= tol).all()


@_settings
@given(x=st.floats(-700, 700))
def test_sigmoid_is_two_class_softmax(x: float) -> None:
    a = float(lk.sigmoid(x))
    b = float(lk.softmax(np.asarray([0.0, x]))[1])
    assert abs(a - b) <= 2 * np.spacing(max(a, b))


@_settings
@given(x=_rows)
def test_logsumexp_is_x_minus_log_softmax(x: np.ndarray) -> None:
    lse = lk.logsumexp(x, axis=-1, keepdims=True)
    atol = 4 * np.finfo(np.float64).eps * (np.abs(x).max() + 8)
    np.testing.assert_allclose(
        x - lk.log_softmax(x), np.broadcast_to(lse, x.shape), rtol=0, atol=atol
    )


class TestErrors:
    def test_axis_out_of_bounds(self) -> None:
        with pytest.raises(
            IndexError, match="axis 2 is out of bounds for array of dimension 2"
        ):
            lk.softmax(np.zeros((2, 3)), axis=2)

    def test_axis_repeated(self) -> None:
        with pytest.raises(ValueError, match="`axis` must not repeat"):
            lk.log_softmax(np.zeros((2, 3)), axis=(1, -1))

    def test_axis_not_int(self) -> None:
        with pytest.raises(TypeError, match="`axis` must be an int"):
            lk.softmax(np.zeros((2, 3)), axis=1.5)  # type: ignore[arg-type]

    @pytest.mark.parametrize("t", [0.0, -1.0, np.inf, np.nan])
    def test_temperature(self, t: float) -> None:
        with pytest.raises(ValueError, match="`temperature` must be a positive finite"):
            lk.softmax(np.zeros(3), temperature=t)

    def test_where_not_bool(self) -> None:
        with pytest.raises(
            TypeError, match="`where` must be a boolean array; got dtype"
        ):
            lk.softmax(np.zeros(3), where=np.ones(3))

    def test_where_shape(self) -> None:
        with pytest.raises(
            ValueError,
            match=r"`where` must be broadcastable to the "
            r"input's shape \(2, 3\); got shape \(2,\)",
        ):
            lk.log_softmax(np.zeros((2, 3)), where=np.ones(2, dtype=bool))

    def test_complex(self) -> None:
        with pytest.raises(TypeError, match="`x` must be a real"):
            lk.softmax(np.zeros(3, dtype=complex))

    def test_not_an_array(self) -> None:
        with pytest.raises(TypeError, match="`x` must be an array"):
            lk.softmax([[1.0], [2.0, 3.0]])


class TestOut:
    @pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
    def test_out_is_filled_and_returned(self, fn: str) -> None:
        x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
        out = np.empty_like(x)
        y = getattr(lk, fn)(x, out=out)
        assert y is out
        np.testing.assert_array_equal(out, getattr(lk, fn)(x))

    def test_out_mismatch(self) -> None:
        with pytest.raises(
            ValueError,
            match=r"`out` must have shape \(2, 3\) and dtype "
            r"float64; got shape \(3, 2\)",
        ):
            lk.softmax(np.zeros((2, 3)), out=np.empty((3, 2)))
        with pytest.raises(ValueError, match="dtype float32"):
            lk.log_softmax(np.zeros(3, dtype=np.float32), out=np.empty(3))

    def test_out_rejected_for_other_libraries(self) -> None:
        torch = pytest.importorskip("torch")
        with pytest.raises(TypeError, match="`out` is supported for NumPy arrays only"):
            lk.softmax(torch.zeros(3), out=torch.empty(3))
