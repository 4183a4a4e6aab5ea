"""Double-double building blocks (``logitkit._dd``) against mpmath at 60 digits.

Errors are measured as ``|(hi + lo) - exact| / |exact|`` with ``hi + lo``
evaluated exactly in mpmath. Each backend runs the same seeded inputs; JAX
runs under ``jax.jit`` (``_backends.jit``) and with ``jax_enable_x64``.

XLA on CPU flushes subnormal numbers to zero (inputs and results of
arithmetic), so on JAX the accuracy checks stay where results and their low
parts are normal numbers; subnormal results of ``exp_dd`` and ``ldexp_dd``
are built from their bits there and checked on every backend.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import mpmath
import numpy as np
import pytest
from array_api_compat import is_dask_namespace, is_jax_namespace

from _backends import jit, to_numpy
from _reference import ulp_error
from logitkit._dd import (
    _EXP_MAX,
    _N,
    _tables,
    add_dd,
    div_dd,
    exp_dd,
    exp_scaled_dd,
    fast_two_sum,
    ldexp_dd,
    log1p_dd,
    mul_dd,
    sum_dd,
    two_prod,
)

DPS = 60
mpf = mpmath.mpf
LN2_N = math.log(2) / _N

# Bounds asserted below (log2 of the relative error); measured values in the
# docstrings of logitkit/_dd.py are a few bits better.
BOUND = {
    "exp": -86.0,
    "log1p": -75.0,
    "mul": -103.0,
    "div": -102.0,
    "add": -103.0,
    "sum": -100.0,
}


# ------------------------------------------------------------------ helpers


def _dd_data(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A normalised double-double near `x` with a random low part."""
    lo = x * 2.0**-53 * rng.uniform(-1.0, 1.0, x.shape)
    hi = x + lo
    return hi, lo - (hi - x)


def _exact(hi: Any, lo: Any) -> Any:
    return mpf(float(hi)) + mpf(float(lo))


def _log2_rel_err(hi: Any, lo: Any, exact: Sequence[Any]) -> float:
    """max log2 of the relative error of ``hi + lo`` (``-inf`` when exact)."""
    worst = mpf(0)
    with mpmath.workdps(DPS):
        for h, l, e in zip(
            np.ravel(to_numpy(hi)), np.ravel(to_numpy(lo)), exact, strict=True
        ):
            err = abs(_exact(h, l) - e)
            if e != 0:
                err /= abs(e)
            worst = max(worst, err)
    return -math.inf if worst == 0 else float(mpmath.log(worst, 2))


def _xp(xp: Any, values: np.ndarray) -> Any:
    return xp.asarray(np.asarray(values, dtype=np.float64))


_JITTED: dict[tuple[Any, Any], Callable[..., Any]] = {}


def _run(xp: Any, f: Callable[..., Any], *arrays: np.ndarray) -> tuple[Any, ...]:
    """`f` on `arrays` in namespace `xp` (jitted for JAX), results as NumPy."""
    key = (f, xp)
    if key not in _JITTED:

        def g(*args: Any) -> Any:
            return f(*args, xp=xp)

        _JITTED[key] = jit(xp, g)  # one compilation per function and shape
    out = _JITTED[key](*(_xp(xp, a) for a in arrays))
    if is_dask_namespace(xp):  # one pass over the shared graph, no thread pool
        import dask

        out = dask.compute(*out, scheduler="synchronous")
    return tuple(to_numpy(v) for v in out)


@functools.cache
def _exp_cases() -> dict[str, tuple[np.ndarray, np.ndarray, list[Any]]]:
    """Seeded exp arguments (results >= 2**-968: normal low parts) and exp."""
    rng = np.random.default_rng(2024)
    n = 300
    args = {
        "wide": rng.uniform(-670.0, _EXP_MAX, n),
        "[-1, 0]": -rng.uniform(0.0, 1.0, n),
        "tiny": -np.exp(rng.uniform(-700.0, 0.0, n)),
        "near k ln2/N": rng.integers(-660_000, 0, n)
        * LN2_N
        * (1 + rng.uniform(-1e-15, 1e-15, n)),
        "near (k + 1/2) ln2/N": (rng.integers(-660_000, 0, n) + 0.5) * LN2_N,
    }
    out = {}
    with mpmath.workdps(DPS):
        for name, x in args.items():
            hi, lo = _dd_data(x, rng)
            out[name] = (
                hi,
                lo,
                [mpmath.exp(_exact(h, l)) for h, l in zip(hi, lo, strict=True)],
            )
    return out


@functools.cache
def _log1p_cases() -> dict[str, tuple[np.ndarray, np.ndarray, list[Any]]]:
    rng = np.random.default_rng(7)
    n = 300
    args = {
        "wide": np.exp(rng.uniform(-650.0, 709.0, n)),
        "[0, 4]": rng.uniform(0.0, 4.0, n),
        "small": np.exp(rng.uniform(-60.0, -3.0, n)),
        # down to 2**-938: the low parts stay normal (XLA flushes subnormals)
        "tiny": np.exp(rng.uniform(-650.0, -60.0, n)),
        # where the Newton correction switches formula (q = -1 to q = -2)
        "near the switch": np.expm1(
            (_N + 1) * LN2_N * (1 + rng.uniform(-1e-3, 1e-3, n))
        ),
        "near k = 0": np.expm1(LN2_N / 2 * (1 + rng.uniform(-1e-3, 1e-3, n))),
        "huge": np.exp(rng.uniform(690.0, 709.78, n)),
    }
    out = {}
    with mpmath.workdps(DPS):
        for name, s in args.items():
            hi, lo = _dd_data(s, rng)
            out[name] = (
                hi,
                lo,
                [mpmath.log1p(_exact(h, l)) for h, l in zip(hi, lo, strict=True)],
            )
    return out


def _random_dd(
    rng: np.random.Generator, n: int, emin: float, emax: float
) -> tuple[np.ndarray, np.ndarray]:
    x = np.exp(rng.uniform(emin, emax, n)) * rng.choice([-1.0, 1.0], n)
    return _dd_data(x, rng)


@functools.cache
def _arith_cases() -> dict[str, tuple[tuple[np.ndarray, ...], list[Any]]]:
    rng = np.random.default_rng(11)
    n = 300
    a = _random_dd(rng, n, -300.0, 300.0)
    b = _random_dd(rng, n, -300.0, 300.0)
    c = _random_dd(rng, n, -30.0, 30.0)
    # b nearly -c: the sum cancels to about 2**-40 of the terms
    d_hi = -c[0] * (1 + rng.uniform(-1e-12, 1e-12, n))
    d = _dd_data(d_hi, rng)
    with mpmath.workdps(DPS):
        ea = [_exact(*p) for p in zip(*a, strict=True)]
        eb = [_exact(*p) for p in zip(*b, strict=True)]
        ec = [_exact(*p) for p in zip(*c, strict=True)]
        ed = [_exact(*p) for p in zip(*d, strict=True)]
        return {
            "mul": ((*a, *b), [u * v for u, v in zip(ea, eb, strict=True)]),
            "div": ((*a, *b), [u / v for u, v in zip(ea, eb, strict=True)]),
            "add": ((*a, *b), [u + v for u, v in zip(ea, eb, strict=True)]),
            "add cancelling": ((*c, *d), [u + v for u, v in zip(ec, ed, strict=True)]),
        }


def _check_cases(
    xp: Any,
    f: Callable[..., Any],
    cases: dict[str, tuple[np.ndarray, np.ndarray, list[Any]]],
    bound: float,
) -> None:
    """Run all cases in one call (one graph, one compilation), check each."""
    hi = np.concatenate([c[0] for c in cases.values()])
    lo = np.concatenate([c[1] for c in cases.values()])
    r_hi, r_lo = _run(xp, f, hi, lo)
    np.testing.assert_array_equal(r_hi + r_lo, r_hi)  # normalised
    start = 0
    for name, (h, _, exact) in cases.items():
        part = slice(start, start + h.size)
        start += h.size
        err = _log2_rel_err(r_hi[part], r_lo[part], exact)
        assert err <= bound, (name, err)


def _sum_last(x: Any, *, xp: Any) -> tuple[Any, Any]:
    return sum_dd(x, xp=xp)


@functools.cache
def _sum_case(n: int, signs: str) -> tuple[np.ndarray, list[Any], list[float]]:
    """Rows to sum, their exact sums, and the scale of the error bound.

    Non-negative terms over 20 binades (relative error), mixed signs over 40
    (error relative to ``sum(|x|)``).
    """
    rng = np.random.default_rng(n)
    rows = 1 if n > 1000 else 3
    if signs == "non-negative":
        x = np.exp(rng.uniform(-20, 0, (rows, n)))
    else:
        x = rng.standard_normal((rows, n)) * np.exp(rng.uniform(-20, 20, (rows, n)))
    with mpmath.workdps(DPS):
        exact = [mpmath.fsum(mpf(float(v)) for v in row) for row in x]
    return x, exact, [math.fsum(abs(row)) for row in x]


# ------------------------------------------------------------------ tables


class TestTables:
    def test_exp_table_and_reduction_constants(self) -> None:
        t = _tables()
        with mpmath.workdps(DPS):
            ln2_n = mpmath.log(2) / _N
            assert abs(mpf(t.c1) + t.c2 + t.c3 - ln2_n) <= ln2_n * mpf(2) ** -112
            for c in (t.c1, t.c2):  # 32 significant bits: k * c exact for |k| < 2**21
                m, _ = math.frexp(c)
                assert float(m * 2**32).is_integer()
            for j in range(_N):
                hi, lo = t.values[j], t.values[_N + j]
                exact = mpf(2) ** (mpf(j) / _N)
                assert hi + lo == hi
                assert abs(_exact(hi, lo) - exact) <= exact * mpf(2) ** -106
                for q, offset in ((0, j), (-1, _N + j)):
                    d_hi, d_lo = t.values[2 * _N + offset], t.values[4 * _N + offset]
                    d_exact = exact * mpf(2) ** q - 1
                    assert (
                        abs(_exact(d_hi, d_lo) - d_exact)
                        <= abs(d_exact) * mpf(2) ** -106 + mpf(2) ** -1000
                    )

    def test_exp_max_is_the_overflow_threshold(self) -> None:
        with mpmath.workdps(DPS):
            limit = (2 - mpf(2) ** -53) * mpf(2) ** 1023  # rounds to inf at and above
            assert mpmath.exp(_EXP_MAX) < limit
            assert mpmath.exp(np.nextafter(_EXP_MAX, np.inf)) >= limit


# -------------------------------------------------- error-free transforms


class TestTwoProd:
    def test_exact(self, xp: Any) -> None:
        rng = np.random.default_rng(3)
        a = np.exp(rng.uniform(-300, 300, 500)) * rng.choice([-1.0, 1.0], 500)
        b = np.exp(rng.uniform(-300, 300, 500))
        p, e = _run(xp, lambda u, v, **_: two_prod(u, v), a, b)
        np.testing.assert_array_equal(p, a * b)
        with mpmath.workdps(DPS):
            for pi, ei, ai, bi in zip(p, e, a, b, strict=True):
                assert _exact(pi, ei) == mpf(float(ai)) * mpf(float(bi))

    def test_fast_two_sum(self, xp: Any) -> None:
        a = np.asarray([1.0, 3.0, -(2.0**60), 0.0])
        b = np.asarray([2.0**-60, -(2.0**-55), 1.0, 5.0])
        s, e = _run(xp, lambda u, v, **_: fast_two_sum(u, v), a, b)
        np.testing.assert_array_equal(s, a + b)
        np.testing.assert_array_equal(e, [2.0**-60, -(2.0**-55), 1.0, 0.0])


# -------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("case", "fn", "bound"),
    [
        ("mul", mul_dd, "mul"),
        ("div", div_dd, "div"),
        ("add", add_dd, "add"),
        ("add cancelling", add_dd, "add"),
    ],
)
def test_arithmetic(xp: Any, case: str, fn: Callable[..., Any], bound: str) -> None:
    arrays, exact = _arith_cases()[case]
    hi, lo = _run(xp, fn, *arrays)
    assert _log2_rel_err(hi, lo, exact) <= BOUND[bound]
    np.testing.assert_array_equal(hi + lo, hi)  # normalised


def test_float32_is_rejected(np_xp: Any) -> None:
    x = np.zeros(3, dtype=np.float32)
    with pytest.raises(TypeError, match="needs float64 arrays"):
        exp_dd(x, x, xp=np_xp)


# --------------------------------------------------------------------- exp


class TestExpDD:
    def test_random(self, xp: Any) -> None:
        _check_cases(xp, exp_dd, _exp_cases(), BOUND["exp"])

    def test_special_values(self, xp: Any) -> None:
        over = np.nextafter(_EXP_MAX, np.inf)
        x = np.asarray(
            [0.0, -0.0, 1e-320, -np.inf, -746.0, -1e300, np.inf, over, 1e300, np.nan]
        )
        e_hi, e_lo = _run(xp, exp_dd, x, np.zeros_like(x))
        np.testing.assert_array_equal(
            e_hi, [1, 1, 1, 0, 0, 0, np.inf, np.inf, np.inf, np.nan]
        )
        np.testing.assert_array_equal(e_lo[:2], 0.0)
        np.testing.assert_array_equal(e_lo[3:], 0.0)

    def test_largest_finite(self, xp: Any) -> None:
        e_hi, e_lo = _run(xp, exp_dd, np.asarray([_EXP_MAX]), np.zeros(1))
        assert np.isfinite(e_hi).all()
        with mpmath.workdps(DPS):
            exact = mpmath.exp(_EXP_MAX)
            assert (
                abs(_exact(e_hi[0], e_lo[0]) - exact) <= exact * mpf(2) ** BOUND["exp"]
            )

    def test_subnormal_results(self, xp: Any) -> None:
        """Below 2**-1022 ``fl(e_hi + e_lo)`` is within half an ulp (plus rare misrounding)."""
        x = np.concatenate(
            [np.linspace(-745.2, -708.5, 200), [-745.0, -745.13, -745.14]]
        )
        e_hi, e_lo = _run(xp, exp_dd, x, np.zeros_like(x))
        with mpmath.workdps(DPS):
            exact = [mpmath.exp(mpf(float(v))) for v in x]
        assert ulp_error(e_hi + e_lo, exact).max() <= 0.5 + 2**-10

    def test_jit_matches_numpy_bitwise(self, xp: Any) -> None:
        """XLA may not reassociate the error-free transformations: same bits as NumPy."""
        if not is_jax_namespace(xp):
            pytest.skip("only JAX compiles")
        from array_api_compat import numpy as np_xp

        hi = np.concatenate([c[0] for c in _exp_cases().values()])
        lo = np.concatenate([c[1] for c in _exp_cases().values()])
        want = exp_dd(hi, lo, xp=np_xp)
        got = _run(xp, exp_dd, hi, lo)  # the compilation of test_random
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


class TestScaled:
    def test_exp_scaled_dd(self, xp: Any) -> None:
        hi, lo, exact = _exp_cases()["wide"]
        m_hi, m_lo, q = _run(xp, exp_scaled_dd, hi, lo)
        assert (np.abs(m_hi) >= 0.999).all()
        assert (np.abs(m_hi) < 2.001).all()
        np.testing.assert_array_equal(q, np.round(q))
        scaled = [e / mpf(2) ** int(k) for e, k in zip(exact, q, strict=True)]
        assert _log2_rel_err(m_hi, m_lo, scaled) <= BOUND["exp"]

    def test_exp_scaled_dd_special_values(self, xp: Any) -> None:
        x = np.asarray([-np.inf, -800.0, 800.0, np.inf, np.nan])
        m_hi, m_lo, q = _run(xp, exp_scaled_dd, x, np.zeros_like(x))
        np.testing.assert_array_equal(m_hi, [0.0, 0.0, np.inf, np.inf, np.nan])
        np.testing.assert_array_equal(m_lo, 0.0)
        np.testing.assert_array_equal(q, 0.0)

    def test_ldexp_dd_rounds_once_into_subnormals(self, xp: Any) -> None:
        tiny = 2.0**-1074
        # hi * 2**-1074 is a tie between two subnormals; lo decides
        hi = np.asarray([1.5, 1.5, 2.5, 2.5, 2.5, 1.0 + 2.0**-52, 3.0, 0.0])
        lo = np.asarray(
            [-(2.0**-60), 2.0**-60, 2.0**-60, -(2.0**-60), 0.0, 0.0, 0.0, 0.0]
        )
        q = np.full(hi.shape, -1074.0)
        r_hi, r_lo = _run(xp, ldexp_dd, hi, lo, q)
        np.testing.assert_array_equal(r_hi, np.asarray([1, 2, 3, 2, 2, 1, 3, 0]) * tiny)
        np.testing.assert_array_equal(r_lo, 0.0)

    def test_ldexp_dd_random(self, xp: Any) -> None:
        rng = np.random.default_rng(13)
        hi, lo = _dd_data(rng.uniform(1.0, 2.0, 400), rng)
        q = rng.integers(-1080, 1020, 400).astype(np.float64)
        r_hi, _ = _run(xp, ldexp_dd, hi, lo, q)
        with mpmath.workdps(DPS):
            exact = [
                _exact(h, l) * mpf(2) ** int(k)
                for h, l, k in zip(hi, lo, q, strict=True)
            ]
        assert ulp_error(r_hi, exact).max() <= 0.5


# ------------------------------------------------------------------- log1p


class TestLog1pDD:
    def test_random(self, xp: Any) -> None:
        _check_cases(xp, log1p_dd, _log1p_cases(), BOUND["log1p"])

    def test_special_values(self, xp: Any) -> None:
        big = np.finfo(np.float64).max
        s = np.asarray([0.0, 1e-300, 1e-16, 1.0, big, np.inf, np.nan])
        l_hi, l_lo = _run(xp, log1p_dd, s, np.zeros_like(s))
        with mpmath.workdps(DPS):
            exact = [mpmath.log1p(mpf(float(v))) for v in s[:5]]
        assert _log2_rel_err(l_hi[:5], l_lo[:5], exact) <= BOUND["log1p"]
        assert l_hi[5] == np.inf
        assert np.isnan(l_hi[6])
        np.testing.assert_array_equal(l_lo[5:], 0.0)

    def test_subnormal_argument(self, xp: Any) -> None:
        if is_jax_namespace(xp):
            pytest.skip("XLA on CPU flushes subnormal float64 inputs to zero")
        s = np.asarray([5e-324, 1e-310, 2.2e-308])
        l_hi, _ = _run(xp, log1p_dd, s, np.zeros_like(s))
        np.testing.assert_array_equal(l_hi, s)


# --------------------------------------------------------------------- sum


class TestSumDD:
    @pytest.mark.parametrize("n", [1, 3, 1000, 128_000])
    @pytest.mark.parametrize("signs", ["non-negative", "mixed"])
    def test_random(self, xp: Any, n: int, signs: str) -> None:
        data, exact, scale = _sum_case(n, signs)
        s_hi, s_lo = _run(xp, _sum_last, data)
        assert s_hi.shape == (data.shape[0], 1)
        with mpmath.workdps(DPS):
            for h, l, e, sc in zip(
                s_hi.ravel(), s_lo.ravel(), exact, scale, strict=True
            ):
                assert abs(_exact(h, l) - e) <= sc * mpf(2) ** BOUND["sum"], (n, signs)

    def test_axis_keepdims_and_shapes(self, xp: Any) -> None:
        x = np.arange(24.0).reshape(2, 3, 4) * 0.1
        f = lambda v, xp: sum_dd(v, axis=1, keepdims=False, xp=xp)
        s_hi, _ = _run(xp, f, x)
        assert s_hi.shape == (2, 4)
        np.testing.assert_allclose(s_hi, x.sum(axis=1), rtol=1e-15)
        s_hi, _ = _run(xp, lambda v, xp: sum_dd(v, axis=0, xp=xp), x)
        assert s_hi.shape == (1, 3, 4)
        np.testing.assert_allclose(s_hi[0], x.sum(axis=0), rtol=1e-15)

    def test_lo_term(self, xp: Any) -> None:
        # low parts are summed plainly into the error term: the sum is
        # 1 + 2**-59 + 2**-54 + 2**-109, the last below the error term's ulp
        x = np.asarray([1.0, 2.0**-60, 2.0**-60])
        lo = np.asarray([2.0**-54, 2.0**-110, 2.0**-110])
        s_hi, s_lo = _run(xp, lambda v, w, xp: sum_dd(v, lo=w, xp=xp), x, lo)
        assert (s_hi[0], s_lo[0]) == (1.0, 2.0**-54 + 2.0**-59)

    def test_empty_and_scalar(self, xp: Any) -> None:
        s_hi, s_lo = _run(xp, lambda v, xp: sum_dd(v, xp=xp), np.zeros((3, 0)))
        np.testing.assert_array_equal(s_hi, np.zeros((3, 1)))
        np.testing.assert_array_equal(s_lo, np.zeros((3, 1)))
        f = lambda v, xp: sum_dd(v, keepdims=False, xp=xp)
        s_hi, _ = _run(xp, f, np.asarray(2.5))
        assert s_hi.shape == ()
        assert float(s_hi) == 2.5

    def test_non_finite(self, xp: Any) -> None:
        x = np.asarray([[1.0, np.inf, 2.0], [1.0, np.nan, 2.0], [1e-300, 1.0, 1e300]])
        s_hi, s_lo = _run(xp, lambda v, xp: sum_dd(v, xp=xp), x)
        assert s_hi[0, 0] == np.inf
        assert np.isnan(s_hi[1, 0])
        np.testing.assert_array_equal(s_lo[:2], 0.0)
        assert (s_hi[2, 0], s_lo[2, 0]) == (1e300, 1.0)  # finite rows unharmed

    def test_out_of_bounds_axis(self, np_xp: Any) -> None:
        with pytest.raises(IndexError, match="axis 2 is out of bounds"):
            sum_dd(np.zeros((2, 2)), axis=2, xp=np_xp)


# --------------------------------------------------------------- gradients


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_gradients_are_finite(backend: str) -> None:
    """Autograd through the dd functions gives no NaN for finite (or -inf) inputs."""
    x = [-1.0, 0.0, -np.inf, -800.0, -745.5, -1e-300, -700.0, 10.0, 800.0]
    s = [0.0, 1e-300, 1e-10, 1.0, 3.0, 1e300, 1.79e308]
    if backend == "torch":
        torch = pytest.importorskip("torch", reason="torch is not installed")
        from array_api_compat import torch as xp

        grads = []
        for values, f in ((x, exp_dd), (s, log1p_dd)):
            v = torch.tensor(values, dtype=torch.float64, requires_grad=True)
            hi, lo = f(v, torch.zeros_like(v), xp=xp)
            (hi + lo).sum().backward()
            grads.append(v.grad.numpy())
        w = torch.rand(3, 5, dtype=torch.float64, requires_grad=True)
        hi, lo = sum_dd(w, xp=xp)
        (hi + lo).sum().backward()
        grads.append(w.grad.numpy())
    else:
        jax = pytest.importorskip("jax", reason="jax is not installed")
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from array_api_compat import array_namespace

        xp = array_namespace(jnp.zeros(1))

        def total(f: Callable[..., Any]) -> Callable[[Any], Any]:
            return lambda v: sum(f(v, jnp.zeros_like(v), xp=xp)).sum()

        def total_sum(w: Any) -> Any:
            return sum(sum_dd(w, xp=xp)).sum()

        grads = [  # jitted: eager JAX dispatches op by op and takes seconds
            np.asarray(jax.jit(jax.grad(total(exp_dd)))(jnp.asarray(x))),
            np.asarray(jax.jit(jax.grad(total(log1p_dd)))(jnp.asarray(s))),
            np.asarray(jax.jit(jax.grad(total_sum))(jnp.ones((3, 5)))),
        ]
    for g in grads:
        assert not np.isnan(g).any(), g
    np.testing.assert_allclose(grads[0][:2], [math.exp(-1.0), 1.0], rtol=1e-14)
    np.testing.assert_allclose(grads[1][3], 0.5, rtol=1e-14)
    np.testing.assert_array_equal(grads[2], 1.0)
