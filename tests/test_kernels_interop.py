"""torch and JAX arrays through the compiled kernels (``logitkit._kernels``).

A CPU torch tensor that autograd does not track and a concrete JAX array on
the CPU are viewed as NumPy by DLPack (no copy), run through the NumPy
kernels and handed back in their own library. Checked here: the kernel runs
(a call counter), the values are those of the same kernel on the NumPy
array, bit for bit, and agree with the portable path of the input's own
library (``LOGITKIT_DISABLE_KERNELS=1``) as ``tests/test_kernels.py`` asks;
type, dtype, device and shape are the portable path's; no copy is made of
the input nor of the result; autograd and traced inputs (``requires_grad``,
``jax.jit``, ``jax.grad``) take the portable path and still differentiate
(but the sparse cross entropy, softmax and log_softmax of a tensor
autograd tracks: their ``autograd.Function`` s are tested in
``tests/test_kernels_grad.py`` and ``tests/test_kernels_vjp.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import logitkit as lk
from test_kernels import assert_same, portable, record_kernel_calls

pytest.importorskip("numba")

RNG = np.random.default_rng(20261202)
CALLS: list[str] = []
OUTS: list[Any] = []  # the NumPy arrays each kernel call wrote


@pytest.fixture(autouse=True)
def _count_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    record_kernel_calls(monkeypatch, CALLS, OUTS)


def _torch() -> Any:
    return pytest.importorskip("torch")


def _jax() -> Any:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


def _lib(name: str) -> tuple[Callable[[np.ndarray], Any], Callable[[Any], int]]:
    """(NumPy -> the library's array, the address of an array's data)."""
    if name == "torch":
        torch = _torch()
        return (lambda a: torch.from_numpy(np.ascontiguousarray(a))), (
            lambda t: int(t.data_ptr())
        )
    jnp = _jax().numpy
    return (lambda a: jnp.asarray(a)), (lambda t: int(t.unsafe_buffer_pointer()))


LIBS = ["torch", "jax"]
DTYPES = [np.float32, np.float64]


def _same_kind(k: Any, p: Any) -> None:
    """Same library type, dtype, shape and device as the portable result."""
    assert type(k) is type(p)
    assert k.dtype == p.dtype
    assert tuple(k.shape) == tuple(p.shape)
    if hasattr(p, "devices"):
        assert k.devices() == p.devices()
    else:
        assert k.device == p.device
        assert not k.requires_grad


def _tuple(v: Any) -> tuple[Any, ...]:
    return v if isinstance(v, tuple) else (v,)


def _check(
    fn: Callable[..., Any],
    x: Any,
    xn: np.ndarray,
    kind: str,
    *,
    own: bool = True,
    **kw: Any,
) -> None:
    """Kernel on `x` == kernel on the NumPy `xn`, bit for bit, and the
    portable path of NumPy; with `own`, also the portable path of `x`'s own
    library (type, dtype, device, shape, and values as test_kernels asks)."""
    CALLS.clear()
    k = fn(x, **kw)
    assert [kind] == CALLS, (fn.__name__, CALLS)
    kn = fn(xn, **kw)
    pn = portable(fn, xn, **kw)
    for a, c, d in zip(_tuple(k), _tuple(kn), _tuple(pn), strict=True):
        a_np, c_np = np.asarray(a), np.asarray(c)
        nan = np.isnan(a_np) & np.isnan(c_np)
        assert np.array_equal(a_np, c_np, equal_nan=True)
        assert np.array_equal(np.signbit(a_np[~nan]), np.signbit(c_np[~nan]))
        assert_same(a_np, np.asarray(d), what=f"{fn.__name__} {kw}")
    if own:  # the eager JAX portable path is slow: only where asked
        p = portable(fn, x, **kw)
        for a, b in zip(_tuple(k), _tuple(p), strict=True):
            _same_kind(a, b)
            assert_same(np.asarray(a), np.asarray(b), what=f"{fn.__name__} {kw}")


def _adversarial(dtype: Any) -> np.ndarray:
    big = float(np.finfo(dtype).max)
    rows = [
        [0.0, -np.inf, 1.0, -np.inf, 2.0, 0.5],
        [-np.inf] * 6,
        [0.0, np.nan, 1.0, 2.0, 3.0, 4.0],
        [np.inf, 0.0, 1.0, np.inf, -np.inf, 2.0],
        [big, -big, big, 0.0, -big, 1.0],
        [0.0, 30.0, -5.0, -5.0, -5.0, -5.0],
        [-0.0, 0.0, -0.0, 0.0, -0.0, 0.0],
        [1e-45, -1e-45, 1e-40, 0.0, 5e-324, -800.0],
    ]
    with np.errstate(over="ignore"):
        return np.asarray(rows, dtype=np.float64).astype(dtype)


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_normalisers(lib: str, dtype: Any) -> None:
    to, _ = _lib(lib)
    for i, xn in enumerate(
        [
            _adversarial(dtype),
            (RNG.standard_normal((40, 33)) * 10).astype(dtype),
            (RNG.standard_normal((3, 4, 5)) * 3).astype(dtype),
        ]
    ):
        x = to(xn)
        own = lib == "torch" or i == 0
        with np.errstate(invalid="ignore"):
            for axis in (-1, 0):
                own_axis = own and (lib == "torch" or axis == -1)
                _check(lk.softmax, x, xn, "softmax", own=own_axis, axis=axis)
                _check(lk.log_softmax, x, xn, "log_softmax", own=own_axis, axis=axis)
                _check(lk.logsumexp, x, xn, "logsumexp", own=own_axis, axis=axis)
            kw: dict[str, Any] = {"axis": None, "keepdims": True}
            _check(lk.logsumexp, x, xn, "logsumexp", own=own, **kw)
            kw = {"axis": -1, "return_sign": True}
            _check(lk.logsumexp, x, xn, "logsumexp", own=own, **kw)


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_sparse_cross_entropy(lib: str, dtype: Any, reduction: str) -> None:
    to, _ = _lib(lib)
    xn = (RNG.standard_normal((50, 12)) * 4).astype(dtype)
    yn = RNG.integers(0, 12, 50)
    yn[::5] = -100
    ce = lk.sparse_softmax_cross_entropy
    x, y = to(xn), to(yn)
    for kw in [{"reduction": reduction, "ignore_index": -100}]:
        CALLS.clear()
        k = ce(x, y, **kw)
        assert CALLS == ["sparse_ce"]
        p = portable(ce, x, y, **kw)
        _same_kind(k, p)
        assert_same(np.asarray(k), np.asarray(ce(xn, yn, **kw)), what="vs NumPy")
        assert_same(np.asarray(k), np.asarray(p), what=f"ce {kw}")
    yy = to(np.abs(yn) % 12)
    k = ce(x, yy, reduction=reduction)
    assert_same(np.asarray(k), np.asarray(portable(ce, x, yy, reduction=reduction)))


@pytest.mark.parametrize("lib", LIBS)
def test_errors_are_the_portable_paths(lib: str) -> None:
    to, _ = _lib(lib)
    x = to(np.zeros((3, 4), dtype=np.float32))
    ce = lk.sparse_softmax_cross_entropy
    for labels, kw in [
        (to(np.asarray([0, 5, 1])), {}),
        (to(np.asarray([0, -1, 1])), {}),
        (to(np.asarray([0.0, 1.0, 1.0])), {}),
        (to(np.asarray([0, 1])), {}),
        (to(np.asarray([0, 1, 1])), {"reduction": "avg"}),
    ]:
        with pytest.raises((ValueError, TypeError)) as port_err:
            portable(ce, x, labels, **kw)
        with pytest.raises(type(port_err.value)) as kern_err:
            ce(x, labels, **kw)
        assert str(kern_err.value) == str(port_err.value)
    for fn in (lk.softmax, lk.log_softmax):  # `out=` is for NumPy only
        with pytest.raises(TypeError, match="NumPy arrays only"):
            fn(x, out=np.empty((3, 4), np.float32))
    with pytest.raises(IndexError):
        lk.softmax(x, axis=2)


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_copy(lib: str, dtype: Any) -> None:
    """The kernel reads the input's memory and the result owns the kernel's."""
    to, address = _lib(lib)
    x = to((RNG.standard_normal((64, 100)) * 3).astype(dtype))
    for fn, kind in [(lk.softmax, "softmax"), (lk.log_softmax, "log_softmax")]:
        OUTS.clear()
        y = fn(x)
        (args,) = OUTS
        xr, yr = args[2], args[3]
        assert xr.ctypes.data == address(x)  # a view of the input
        assert yr.ctypes.data == address(y)  # the result is the kernel's output
        assert CALLS[-1] == kind
    OUTS.clear()
    lse = lk.logsumexp(x)
    assert OUTS[0][3].ctypes.data == address(lse)


def test_torch_autograd_takes_the_autograd_functions() -> None:
    """Tracked tensors: kernel-backed ``torch.autograd.Function`` s."""
    torch = _torch()
    xn = RNG.standard_normal((4, 6))
    x = torch.tensor(xn, requires_grad=True)
    g = torch.tensor(RNG.standard_normal((4, 6)))
    for fn, vjp in [(lk.softmax, lk.vjp.softmax), (lk.log_softmax, lk.vjp.log_softmax)]:
        CALLS.clear()
        y = fn(x)
        assert [fn.__name__] == CALLS
        assert y.requires_grad
        (dx,) = torch.autograd.grad(y, x, g)
        assert [fn.__name__, fn.__name__ + "_vjp"] == CALLS
        want = vjp(xn, g.numpy())
        assert np.array_equal(dx.numpy(), want)
        CALLS.clear()
        with torch.no_grad():  # no graph wanted: the kernel, on a detached view
            y = fn(x)
        assert [fn.__name__] == CALLS
        assert not y.requires_grad
        assert_same(y.numpy(), fn(xn))
    labels = torch.tensor([0, 5, 2, 1])
    CALLS.clear()  # the sparse CE has its own autograd.Function of the kernels
    loss = lk.sparse_softmax_cross_entropy(x, labels, reduction="sum")
    (dx,) = torch.autograd.grad(loss, x)
    assert CALLS == ["sparse_ce_fwd", "sparse_ce_bwd"]
    _, want = lk.grad.sparse_softmax_cross_entropy(xn, labels.numpy(), reduction="sum")
    np.testing.assert_allclose(dx.numpy(), want, rtol=1e-13, atol=1e-15)


def test_torch_func_transforms_take_the_portable_path() -> None:
    """functorch wrappers (``torch.func.vmap``/``grad``) are not viewed."""
    torch = _torch()
    x = torch.tensor(RNG.standard_normal((4, 5)))
    CALLS.clear()
    y = torch.func.vmap(lk.softmax)(x)
    g = torch.func.grad(lambda t: lk.log_softmax(t)[0, 1])(x)
    gs = torch.func.grad(lambda t: lk.sigmoid(t).sum())(x)
    assert CALLS == []
    torch.testing.assert_close(y, torch.softmax(x, -1), rtol=1e-13, atol=0)
    want = torch.func.grad(lambda t: torch.log_softmax(t, -1)[0, 1])(x)
    torch.testing.assert_close(g, want, rtol=1e-12, atol=1e-15)
    s = torch.sigmoid(x)
    torch.testing.assert_close(gs, s * (1 - s), rtol=1e-12, atol=1e-15)


def test_torch_strided_and_parameter() -> None:
    torch = _torch()
    base = torch.tensor(RNG.standard_normal((8, 30)), dtype=torch.float32)
    for x in [base.T, base[:, ::3], base[::2]]:
        xn = x.numpy()
        _check(lk.softmax, x, xn, "softmax")
        _check(lk.softmax, x, xn, "softmax", axis=0)
    p = torch.nn.Parameter(base.clone())
    CALLS.clear()
    lk.softmax(p).sum().backward()  # a parameter in a graph: the Function
    assert CALLS == ["softmax", "softmax_vjp"]
    assert p.grad is not None
    CALLS.clear()
    with torch.no_grad():
        y = lk.softmax(p)
    assert CALLS == ["softmax"]
    assert type(y) is torch.Tensor


def test_jax_traced_inputs_take_the_portable_path() -> None:
    jax = _jax()
    jnp = jax.numpy
    xn = RNG.standard_normal((3, 5)).astype(np.float32)  # float32: a lighter trace
    x = jnp.asarray(xn)
    CALLS.clear()
    y = jax.jit(lk.softmax)(x)
    g = jax.grad(lambda v: lk.log_softmax(v)[0, 1])(x)
    jax.vmap(lk.softmax)(x)
    assert CALLS == []
    assert_same(np.asarray(y), lk.softmax(xn))
    want = lk.vjp.log_softmax(xn.astype(np.float64), np.eye(15)[1].reshape(3, 5))
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-6, atol=1e-7)
    CALLS.clear()
    lk.softmax(x)
    assert CALLS == ["softmax"]


def test_disabled_torch_and_jax(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGITKIT_DISABLE_KERNELS", "1")
    for lib in LIBS:
        to, _ = _lib(lib)
        lk.softmax(to(np.ones((2, 3), np.float32)))
    assert CALLS == []
    assert os.environ["LOGITKIT_DISABLE_KERNELS"] == "1"
