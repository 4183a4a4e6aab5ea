"""sigmoid, log_sigmoid, softplus and logit: accuracy, special values, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import logitkit as lk
from _backends import allow_flushed_subnormals, jit, name_of, to_numpy
from _reference import log_sigmoid as ref_log_sigmoid
from _reference import logit as ref_logit
from _reference import sigmoid as ref_sigmoid
from _reference import softplus as ref_softplus
from _reference import ulp_error

ULP = {"float32": 0.51, "float64": 1.0, "float16": 0.51, "bfloat16": 0.51}

# The contract's points, plus a spread over the whole range.
POINTS = [
    -1e-30,
    1e-30,
    -20.0,
    20.0,
    -90.0,
    90.0,
    -800.0,
    800.0,
    0.0,
    -0.5,
    0.5,
    -37.5,
    37.5,
    -710.0,
    710.0,
    -1e4,
    1e4,
]
SPREAD = (
    np.random.default_rng(7).standard_normal(60) * np.repeat([1.0, 10.0, 100.0], 20)
).tolist()
REFERENCE = {
    "sigmoid": ref_sigmoid,
    "log_sigmoid": ref_log_sigmoid,
    "softplus": ref_softplus,
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fn", sorted(REFERENCE))
def test_ulp(xp: Any, fn: str, dtype: str) -> None:
    x_np = np.asarray(POINTS + SPREAD, dtype=dtype)
    y = to_numpy(jit(xp, getattr(lk, fn))(xp.asarray(x_np)))
    exact = [REFERENCE[fn](float(v)) for v in x_np]
    err = allow_flushed_subnormals(xp, dtype, y, ulp_error(y, exact), exact)
    assert err.max() <= ULP[dtype], (x_np[err.argmax()], y[err.argmax()], err.max())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logit_ulp(xp: Any, dtype: str) -> None:
    rng = np.random.default_rng(11)
    eps = float(np.finfo(dtype).eps)
    p_np = np.concatenate(
        [
            rng.random(80),
            [
                0.5,
                0.5 + 1e-8,
                0.5 - 1e-8,
                0.25,
                0.2499999,
                0.75,
                1e-30,
                1e-5,
                1 - eps,
                1 - 4 * eps,
                0.5 + eps,
            ],
        ]
    ).astype(dtype)
    y = to_numpy(jit(xp, lk.logit)(xp.asarray(p_np)))
    err = ulp_error(y, [ref_logit(float(v)) for v in p_np])
    assert err.max() <= ULP[dtype], (p_np[err.argmax()], err.max())


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("fn", sorted(REFERENCE))
def test_low_precision(xp: Any, fn: str, dtype: str) -> None:
    if not hasattr(xp, dtype):
        pytest.skip(f"{name_of(xp)} has no {dtype}")
    x = xp.astype(
        xp.asarray(np.asarray([-9.0, -2.5, -0.1, 0.0, 0.3, 1.7, 6.0, 11.0])),
        getattr(xp, dtype),
    )
    y = getattr(lk, fn)(x)
    assert y.dtype == x.dtype
    exact = [REFERENCE[fn](float(v)) for v in to_numpy(xp.astype(x, xp.float64))]
    assert ulp_error(to_numpy(y), exact, dtype).max() <= ULP[dtype]


def test_special_values(xp: Any) -> None:
    x = xp.asarray(np.asarray([-np.inf, np.inf, np.nan]))
    np.testing.assert_array_equal(to_numpy(lk.sigmoid(x)), [0.0, 1.0, np.nan])
    np.testing.assert_array_equal(to_numpy(lk.log_sigmoid(x)), [-np.inf, 0.0, np.nan])
    np.testing.assert_array_equal(to_numpy(lk.softplus(x)), [0.0, np.inf, np.nan])
    p = xp.asarray(np.asarray([0.0, 1.0, -0.5, 1.5, np.nan]))
    np.testing.assert_array_equal(
        to_numpy(lk.logit(p)), [-np.inf, np.inf, np.nan, np.nan, np.nan]
    )


def test_log_sigmoid_never_neg_inf_for_finite_x(xp: Any) -> None:
    y = to_numpy(lk.log_sigmoid(xp.asarray(np.asarray([-800.0, -1e300]))))
    np.testing.assert_array_equal(y, [-800.0, -1e300])


def test_sigmoid_is_the_two_class_softmax(xp: Any) -> None:
    x = np.asarray([-30.0, -2.0, 0.0, 0.75, 3.0, 45.0])
    s = to_numpy(lk.sigmoid(xp.asarray(x)))
    two = np.stack([np.zeros_like(x), x], axis=-1)
    p = to_numpy(lk.softmax(xp.asarray(two)))[:, 1]
    assert (ulp_error(s, [ref_sigmoid(v) for v in x]) <= 1.0).all()
    assert (ulp_error(p, [ref_sigmoid(v) for v in x]) <= 1.0).all()


def test_logit_inverts_sigmoid(xp: Any) -> None:
    # For x > 0, sigmoid(x) rounds 1 - p to ulp(1): logit cannot recover x
    # there, so the round trip is checked where p keeps its relative accuracy.
    x = np.linspace(-30, 1, 63)
    back = to_numpy(lk.logit(lk.sigmoid(xp.asarray(x))))
    np.testing.assert_allclose(back, x, rtol=4e-15, atol=4e-16)


def test_integer_input_is_promoted(xp: Any) -> None:
    y = lk.sigmoid(xp.asarray([0, 1]))
    assert xp.isdtype(y.dtype, "real floating")


def test_python_scalars_and_lists_are_numpy() -> None:
    assert isinstance(lk.sigmoid([0.0, 1.0]), np.ndarray)
    assert float(lk.sigmoid(0.0)) == 0.5


@pytest.mark.parametrize("fn", ["sigmoid", "log_sigmoid", "softplus"])
def test_out(fn: str) -> None:
    x = np.linspace(-5, 5, 7, dtype=np.float32)
    out = np.empty_like(x)
    assert getattr(lk, fn)(x, out=out) is out
    np.testing.assert_array_equal(out, getattr(lk, fn)(x))
    with pytest.raises(ValueError, match="`out` must have shape"):
        getattr(lk, fn)(x, out=np.empty(7))


def test_complex_is_rejected() -> None:
    with pytest.raises(TypeError, match="`p` must be a real"):
        lk.logit(np.asarray([0.5j]))


@pytest.mark.parametrize("lib", ["torch", "jax"])
def test_autograd_derivatives_including_zero(lib: str) -> None:
    """abs'(0) differs between libraries; the derivatives at 0 must not."""
    x_np = np.asarray([0.0, -0.0, 1.5, -3.0, 40.0, -40.0])
    s = 1.0 / (1.0 + np.exp(-x_np))
    expected = {
        "sigmoid": s * (1.0 / (1.0 + np.exp(x_np))),
        "softplus": s,
        "log_sigmoid": 1.0 / (1.0 + np.exp(x_np)),
    }
    for name, want in expected.items():
        f = getattr(lk, name)
        if lib == "torch":
            torch = pytest.importorskip("torch")
            x = torch.tensor(x_np, requires_grad=True)
            f(x).sum().backward()
            got = x.grad.numpy()
        else:
            jax = pytest.importorskip("jax")
            jax.config.update("jax_enable_x64", True)
            got = np.asarray(
                jax.grad(lambda v, f=f: f(v).sum())(jax.numpy.asarray(x_np))
            )
        np.testing.assert_allclose(got, want, rtol=1e-14, err_msg=name)
