"""The vector-Jacobian product kernels and the torch autograd Function of the normalisers.

``lk.vjp.softmax`` / ``lk.vjp.log_softmax`` of NumPy float32/float64 arrays
run ``softmax_vjp`` / ``log_softmax_vjp`` (``logitkit._kernels``): compared
here with the portable path (``LOGITKIT_DISABLE_KERNELS=1``). Their sums
(``<g, p>``, ``sum g``) are taken in another order than NumPy's pairwise
ones, so the float64 results agree to rounding (a few ulp of the terms) and
the float32 ones within one ulp, rarely (the float64 intermediates rounded
once); special rows (NaN, no valid entry, ``+inf`` entries) exactly.

``lk.softmax`` / ``lk.log_softmax`` of a CPU tensor autograd tracks run the
forward kernel and, in backward, the same VJP kernel: ``x.grad`` is
``lk.vjp``'s bit for bit; ``create_graph`` differentiates ``lk.vjp``'s torch
operations instead (gradgradcheck).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import logitkit as lk
from test_kernels import _adversarial, portable, record_kernel_calls

pytest.importorskip("numba")

RNG = np.random.default_rng(20261203)
CALLS: list[str] = []
DTYPES = [np.float32, np.float64]
FNS = [lk.vjp.softmax, lk.vjp.log_softmax]


@pytest.fixture(autouse=True)
def _count_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    record_kernel_calls(monkeypatch, CALLS)


def _bound(fn: Any, x: np.ndarray, g: np.ndarray, axis: int) -> np.ndarray:
    """What the float64 sums' order can move: ``p (g - <g, p>)`` cancels.

    16 ulp of float64 of the terms' sizes: ``p (|g| + <|g|, p>)`` for the
    softmax, ``|g| + p sum |g|`` for the log-softmax.
    """
    with np.errstate(all="ignore"):
        p = np.asarray(portable(lk.softmax, x.astype(np.float64), axis=axis))
        ag = np.abs(g.astype(np.float64))
        if fn is lk.vjp.softmax:
            size = p * (ag + np.sum(ag * p, axis=axis, keepdims=True))
        else:
            size = ag + p * np.sum(ag, axis=axis, keepdims=True)
    return 16 * np.finfo(np.float64).eps * size


def check(
    fn: Any, x: np.ndarray, g: np.ndarray, axis: int = -1, what: str = ""
) -> None:
    """Kernel (it ran) == portable path, but for the order of its sums."""
    CALLS.clear()
    with np.errstate(all="ignore"):
        k = fn(x, g, axis=axis)
        assert [fn.__name__ + "_vjp"] == CALLS, CALLS
        p = portable(fn, x, g, axis=axis)
    assert type(k) is np.ndarray
    assert k.shape == x.shape
    assert k.dtype == x.dtype
    what = f"{fn.__name__} {what} {x.dtype}"
    assert np.array_equal(np.isnan(k), np.isnan(p)), what
    ok = ~np.isnan(k)
    err = np.abs(k[ok].astype(np.float64) - p[ok])
    bound = _bound(fn, x, g, axis)[ok] + 4 * np.spacing(np.abs(p[ok]))
    assert np.all(err <= bound), (what, float(np.max(err - bound)))


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(64, 10), (50, 1000), (2, 5, 7)])
def test_random(fn: Any, dtype: Any, shape: tuple[int, ...]) -> None:
    x = (RNG.standard_normal(shape) * 10).astype(dtype)
    g = RNG.standard_normal(shape).astype(dtype)
    check(fn, x, g, what=str(shape))
    check(fn, x, g, axis=0, what=f"{shape} axis 0")


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_special_rows_and_layouts(fn: Any, dtype: Any) -> None:
    x = _adversarial(dtype)
    g = RNG.standard_normal(x.shape).astype(dtype)
    check(fn, x, g, what="adversarial")
    check(fn, np.asfortranarray(x), g[:, ::-1], what="F-order, strided g")
    check(fn, x.T, g.T, axis=0, what="transposed")
    with np.errstate(all="ignore"):
        k = fn(x, g)
    assert np.isnan(k[2]).all()  # a NaN row
    assert np.array_equal(k[1], np.zeros(x.shape[1], dtype=dtype))  # no valid entry


def test_what_keeps_the_portable_path() -> None:
    x = RNG.standard_normal((4, 5)).astype(np.float32)
    for g in (x.astype(np.float64), x.tolist()):  # another dtype, not an array
        CALLS.clear()
        lk.vjp.softmax(x, g)
        assert CALLS == []
    check(lk.vjp.softmax, x, np.broadcast_to(x[:, :1], x.shape), what="broadcast g")
    with pytest.raises(ValueError, match="shape"):
        lk.vjp.softmax(x, x[:, :2])


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_backward_is_lk_vjp(name: str, dtype: Any) -> None:
    fwd, vjp = getattr(lk, name), getattr(lk.vjp, name)
    for shape, axis in [((64, 10), -1), ((30, 700), -1), ((3, 40, 5), 1)]:
        base = torch.randn(shape, dtype=dtype) * 8
        x = base.clone().requires_grad_(True)
        g = torch.randn(shape, dtype=dtype)
        CALLS.clear()
        y = fwd(x, axis=axis)
        assert y.grad_fn is not None
        y.backward(g)
        assert [name, name + "_vjp"] == CALLS, CALLS
        assert torch.equal(y.detach(), fwd(base, axis=axis))
        want = vjp(base.numpy(), g.numpy(), axis=axis)
        assert np.array_equal(x.grad.numpy(), want)
    # a transposed (non-contiguous) leaf
    x = (torch.randn(50, 20, dtype=dtype) * 5).requires_grad_(True)
    g = torch.randn(20, 50, dtype=dtype)
    fwd(x.T, axis=-1).backward(g)
    assert np.array_equal(x.grad.numpy(), vjp(x.detach().T.numpy(), g.numpy()).T)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_torch_gradcheck_and_double_backward(name: str) -> None:
    fwd = getattr(lk, name)
    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fwd(t, axis=1), (x,))
    assert torch.autograd.gradgradcheck(lambda t: fwd(t, axis=-1), (x,))
    # the double backward agrees with torch's own
    ref = getattr(torch, name)
    (g1,) = torch.autograd.grad((fwd(x, axis=-1) ** 2).sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad((ref(x, -1) ** 2).sum(), x, create_graph=True)
    torch.testing.assert_close(g1, g2)
    h1 = torch.autograd.grad(g1.sum(), x)[0]
    h2 = torch.autograd.grad(g2.sum(), x)[0]
    torch.testing.assert_close(h1, h2)


def test_torch_what_keeps_the_portable_path() -> None:
    x = torch.randn(4, 5, requires_grad=True)
    CALLS.clear()
    y = lk.softmax(x, where=torch.ones(4, 5, dtype=torch.bool))  # an option
    y.sum().backward()
    assert CALLS == []
    with torch.no_grad():
        y = lk.softmax(x)
    assert y.grad_fn is None
    assert CALLS == ["softmax"]
