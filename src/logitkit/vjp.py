r"""Vector-Jacobian products of the normalisers and of the sigmoid.

``lk.vjp.f(x, g)`` is ``g`` pulled back through ``f`` at ``x``: the gradient
of ``sum(g * f(x))`` with respect to ``x``, computed analytically in the
working precision (float64 for float32 and narrower inputs) and returned in
the dtype of `x`:

.. math:: \text{softmax:}\; p \odot (g - \langle g, p \rangle), \quad
          \text{log\_softmax:}\; g - p \sum g, \quad
          \text{logsumexp:}\; g\, p, \quad
          \text{sigmoid:}\; g\, \sigma(x)\, \sigma(-x)

A row with no valid entry (all ``-inf``) has zero gradient, not NaN.

For NumPy float32/float64 arrays (and CPU torch tensors and JAX arrays
outside autograd and tracing) ``softmax`` and ``log_softmax`` run compiled
kernels (``logitkit._kernels``): the same formulas, their sums taken in
another order (the results agree to the rounding of those sums). They are
also the backward of ``lk.softmax``/``lk.log_softmax`` on CPU tensors that
torch autograd tracks.

Examples
--------
>>> import numpy as np
>>> import logitkit as lk
>>> x = np.asarray([1.0, 2.0, 3.0])
>>> lk.vjp.logsumexp(x, np.asarray(1.0))  # the softmax
array([0.09003057, 0.24472847, 0.66524096])
"""

from __future__ import annotations

from typing import Any

from . import _kernels
from ._helpers import (
    adopt,
    as_array,
    as_floating,
    const,
    namespace,
    normalize_axis,
    round_to,
    work_dtype,
)
from ._sigmoid import sigmoid as _sigmoid
from ._softmax import softmax as _softmax
from ._typing import Array, ArrayNamespace, Axis

__all__ = ["log_softmax", "logsumexp", "sigmoid", "softmax"]


def _inputs(
    x: Any, g: Any, xp: ArrayNamespace | None, *, same_shape: bool = True
) -> tuple[Array, Array, ArrayNamespace]:
    x = as_array(x, name="x")
    g = as_array(g, name="g")
    xp = namespace(x, g, xp=xp)
    x = adopt(x, g, xp=xp)
    g = adopt(g, x, xp=xp)
    x = as_floating(x, name="x", xp=xp)
    g = as_floating(g, name="g", xp=xp)
    if same_shape and tuple(g.shape) != tuple(x.shape):
        msg = (
            f"`g` must have the shape of `x` {tuple(x.shape)}; got shape "
            f"{tuple(g.shape)}."
        )
        raise ValueError(msg)
    return x, g, xp


def _probs(
    x: Array, axes: tuple[int, ...], /, *, xp: ArrayNamespace
) -> tuple[Array, Array]:
    """Softmax of `x` over `axes` in the working dtype, and the no-valid-entry rows."""
    wd = work_dtype(x.dtype, xp=xp)
    xw = xp.astype(x, wd) if x.dtype != wd else x
    p = _softmax(xw, axes, xp=xp)
    empty = xp.all(xw == -xp.inf, axis=axes, keepdims=True)
    return p, empty


def softmax(
    x: Any, g: Any, /, *, axis: Axis = -1, xp: ArrayNamespace | None = None
) -> Array:
    r"""``g`` pulled back through :func:`logitkit.softmax`: ``p (g - <g, p>)``.

    Parameters
    ----------
    x : array_like
        The logits at which the Jacobian is taken.
    g : array_like
        The cotangent, of the shape of `x`.
    axis : int or tuple of ints, optional
        The class axis (or axes) of the forward call. Default: ``-1``.
    xp : array_namespace, optional
        The namespace of `x`. Default: inferred.

    Returns
    -------
    array
        The gradient of ``sum(g * softmax(x))``, in the dtype of `x`.

    Examples
    --------
    >>> import logitkit as lk
    >>> lk.vjp.softmax([0.0, 0.0], [1.0, 0.0])
    array([ 0.25, -0.25])
    """
    # --- fast path: compiled kernels for NumPy float32/float64 (``_kernels``) ---
    if xp is None:
        fast = _kernels.normaliser_vjp(x, g, axis, name="softmax")
        if fast is not None:
            return fast
    # --- end of fast path ---
    x, g, xp = _inputs(x, g, xp)
    axes = normalize_axis(axis, x.ndim)
    p, empty = _probs(x, axes, xp=xp)
    gw = xp.astype(g, p.dtype)
    inner = xp.sum(gw * p, axis=axes, keepdims=True)
    out = p * (gw - inner)
    out = xp.where(empty, const(0.0, out, xp=xp), out)
    return round_to(out, x.dtype, xp=xp)


def log_softmax(
    x: Any, g: Any, /, *, axis: Axis = -1, xp: ArrayNamespace | None = None
) -> Array:
    r"""``g`` pulled back through :func:`logitkit.log_softmax`: ``g - p sum(g)``.

    Parameters
    ----------
    x : array_like
        The logits at which the Jacobian is taken.
    g : array_like
        The cotangent, of the shape of `x`.
    axis : int or tuple of ints, optional
        The class axis (or axes) of the forward call. Default: ``-1``.
    xp : array_namespace, optional
        The namespace of `x`. Default: inferred.

    Returns
    -------
    array
        The gradient of ``sum(g * log_softmax(x))``, in the dtype of `x`;
        zero in a row with no valid entry.

    Examples
    --------
    >>> import logitkit as lk
    >>> lk.vjp.log_softmax([0.0, 0.0], [1.0, 0.0])
    array([ 0.5, -0.5])
    """
    # --- fast path: compiled kernels for NumPy float32/float64 (``_kernels``) ---
    if xp is None:
        fast = _kernels.normaliser_vjp(x, g, axis, name="log_softmax")
        if fast is not None:
            return fast
    # --- end of fast path ---
    x, g, xp = _inputs(x, g, xp)
    axes = normalize_axis(axis, x.ndim)
    p, empty = _probs(x, axes, xp=xp)
    gw = xp.astype(g, p.dtype)
    out = gw - p * xp.sum(gw, axis=axes, keepdims=True)
    out = xp.where(empty, const(0.0, out, xp=xp), out)
    return round_to(out, x.dtype, xp=xp)


def logsumexp(
    x: Any, g: Any, /, *, axis: Axis = None, xp: ArrayNamespace | None = None
) -> Array:
    r"""``g`` pulled back through :func:`logitkit.logsumexp`: ``g softmax(x)``.

    Parameters
    ----------
    x : array_like
        The values at which the Jacobian is taken.
    g : array_like
        The cotangent, of the reduced shape (as with ``keepdims=False``).
    axis : int or tuple of ints or None, optional
        The reduced axes of the forward call. Default: ``None`` (all), as in
        :func:`logitkit.logsumexp`.
    xp : array_namespace, optional
        The namespace of `x`. Default: inferred.

    Returns
    -------
    array
        The gradient of ``sum(g * logsumexp(x, axis))``, of the shape and
        dtype of `x`.

    Raises
    ------
    ValueError
        If `g` does not have the reduced shape.

    Examples
    --------
    >>> import numpy as np
    >>> import logitkit as lk
    >>> lk.vjp.logsumexp(np.zeros((2, 2)), np.asarray([1.0, 2.0]), axis=1)
    array([[0.5, 0.5],
           [1. , 1. ]])
    """
    x, g, xp = _inputs(x, g, xp, same_shape=False)
    axes = normalize_axis(axis, x.ndim, allow_none=True)
    reduced = tuple(s for i, s in enumerate(x.shape) if i not in axes)
    if tuple(g.shape) != reduced:
        msg = (
            f"`g` must have the reduced shape {reduced} of `x` {tuple(x.shape)} "
            f"over axis {axis!r}; got shape {tuple(g.shape)}."
        )
        raise ValueError(msg)
    p, empty = _probs(x, axes, xp=xp)
    keep = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
    gw = xp.reshape(xp.astype(g, p.dtype), keep)
    out = gw * p
    out = xp.where(empty, const(0.0, out, xp=xp), out)
    return round_to(out, x.dtype, xp=xp)


def sigmoid(x: Any, g: Any, /, *, xp: ArrayNamespace | None = None) -> Array:
    r"""``g`` pulled back through :func:`logitkit.sigmoid`: ``g sigma(x) sigma(-x)``.

    The product form keeps its relative accuracy where ``s (1 - s)`` loses
    it (large ``|x|``).

    Parameters
    ----------
    x : array_like
        The points at which the derivative is taken.
    g : array_like
        The cotangent, of the shape of `x`.
    xp : array_namespace, optional
        The namespace of `x`. Default: inferred.

    Returns
    -------
    array
        ``g * sigmoid'(x)``, in the dtype of `x`.

    Examples
    --------
    >>> import logitkit as lk
    >>> float(lk.vjp.sigmoid(40.0, 1.0))  # s * (1 - s) would give 0
    4.248354255291589e-18
    """
    x, g, xp = _inputs(x, g, xp)
    wd = work_dtype(x.dtype, xp=xp)
    xw = xp.astype(x, wd) if x.dtype != wd else x
    out = xp.astype(g, wd) * _sigmoid(xw, xp=xp) * _sigmoid(-xw, xp=xp)
    return round_to(out, x.dtype, xp=xp)
