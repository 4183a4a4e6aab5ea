r"""Elementwise activations: ``sigmoid``, ``log_sigmoid``, ``softplus``, ``logit``.

Each is evaluated in a form without overflow or cancellation, in float64 for
float32 and narrower inputs (then rounded once):

.. math:: \sigma(x) = \frac{1}{1 + e^{-|x|}} \text{ or } \frac{e^{-|x|}}{1 + e^{-|x|}},
          \qquad \operatorname{softplus}(x) = \max(x, 0) + \operatorname{log1p}(e^{-|x|})

and ``logit(p) = 2 atanh(2p - 1)`` for ``p >= 1/4``, where ``2p - 1`` is exact.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import _kernels
from ._dd import add_dd, div_dd, exp_dd, log1p_dd
from ._helpers import (
    add_rounded,
    as_array,
    as_floating,
    check_out,
    const,
    namespace,
    round_to,
    two_sum,
    work_dtype,
)
from ._typing import Array, ArrayNamespace, DType

__all__ = ["log_sigmoid", "logit", "sigmoid", "softplus"]


class _Work(NamedTuple):
    x: Array
    out_dtype: DType
    refine: bool
    xp: ArrayNamespace


def _work(x: Any, xp: ArrayNamespace | None, name: str = "x") -> _Work:
    x = as_array(x, name=name)
    xp = namespace(x, xp=xp)
    x = as_floating(x, name=name, xp=xp)
    out_dtype = x.dtype
    wd = work_dtype(out_dtype, xp=xp)
    if wd != out_dtype:
        x = xp.astype(x, wd)
    # float64 results are computed in double-double (``_dd``)
    return _Work(x, out_dtype, wd == out_dtype and out_dtype == xp.float64, xp)


def _done(y: Array, w: _Work, out: Any) -> Array:
    y = round_to(y, w.out_dtype, xp=w.xp)
    return y if out is None else check_out(out, y, xp=w.xp)


def _neg_abs(x: Array, /, *, xp: ArrayNamespace) -> Array:
    """``-|x|`` with the derivative -1 at 0 (``abs`` has 0 in torch, 1 in JAX).

    With it the autograd derivatives of sigmoid (1/4) and softplus (1/2) at
    0 are right on every library; NaN stays NaN.
    """
    return xp.where(x >= const(0.0, x, xp=xp), -x, x)


def sigmoid(x: Any, /, *, out: Any = None, xp: ArrayNamespace | None = None) -> Array:
    r"""The logistic function ``1 / (1 + exp(-x))``, accurate on the whole line.

    .. math:: \sigma(x) = \frac{1}{1 + e^{-x}} = \operatorname{softmax}([0, x])_1

    Parameters
    ----------
    x : array_like
        Logits. Integer input is promoted to the default float dtype.
    out : numpy.ndarray, optional
        For NumPy input only: the array to write the result into.
    xp : array_namespace, optional
        The namespace of `x`. Default: inferred.

    Returns
    -------
    array
        ``sigmoid(x)``, same shape, namespace, device and dtype as `x`.

    Raises
    ------
    TypeError
        If `x` is complex, or `out` is given for a non-NumPy input.
    ValueError
        If `out` has the wrong shape or dtype.

    See Also
    --------
    logit : the inverse function.
    log_sigmoid : ``log(sigmoid(x))`` without underflow.

    Notes
    -----
    ``sigmoid(-800)`` is 0 in float64 (the exact value is below the smallest
    subnormal) and ``sigmoid(-90)`` in float32 is the subnormal nearest to
    ``exp(-90)``; ``sigmoid(1e-30)`` is ``0.5`` rounded, NaN stays NaN.

    Examples
    --------
    >>> import numpy as np
    >>> import logitkit as lk
    >>> lk.sigmoid(np.asarray([-800.0, 0.0, 800.0]))  # no overflow warning
    array([0. , 0.5, 1. ])
    >>> float(lk.sigmoid(-40.0))  # 1 - sigmoid(40) would be 0
    4.248354255291589e-18
    """
    # --- fast path: compiled kernels for NumPy float32/float64 (``_kernels``) ---
    if xp is None:
        fast = _kernels.sigmoid(x, out)
        if fast is not None:
            return fast
    # --- end of fast path ---
    w = _work(x, xp)
    xp, x = w.xp, w.x
    one = const(1.0, x, xp=xp)
    if w.refine:  # float64: 1 / (1 + e) and e / (1 + e) in double-double
        zero = const(0.0, x, xp=xp)
        e, e_lo = exp_dd(_neg_abs(x, xp=xp), xp.zeros_like(x), xp=xp)
        den, den_lo = add_dd(one, zero, e, e_lo, xp=xp)
        pos, _ = div_dd(xp.ones_like(x), xp.zeros_like(x), den, den_lo, xp=xp)
        neg, _ = div_dd(e, e_lo, den, den_lo, xp=xp)
    else:
        e = xp.exp(_neg_abs(x, xp=xp))
        pos = one / (one + e)
        neg = e * pos
    return _done(xp.where(x >= 0, pos, neg), w, out)


def softplus(x: Any, /, *, out: Any = None, xp: ArrayNamespace | None = None) -> Array:
    r"""``log(1 + exp(x))`` without overflow or loss of small values.

    .. math:: \operatorname{softplus}(x) = \max(x, 0) +
              \operatorname{log1p}(e^{-|x|})

    Parameters
    ----------
    x : array_like
        Input. Integer input is promoted to the default float dtype.
    out : numpy.ndarray, optional
        For NumPy input only: the array to write the result into.
    xp : array_namespace, optional
        The namespace of `x`. Default: inferred.

    Returns
    -------
    array
        ``softplus(x)``, same shape, namespace, device and dtype as `x`.

    Raises
    ------
    TypeError
        If `x` is complex, or `out` is given for a non-NumPy input.
    ValueError
        If `out` has the wrong shape or dtype.

    See Also
    --------
    log_sigmoid : ``-softplus(-x)``.

    Examples
    --------
    >>> import numpy as np
    >>> import logitkit as lk
    >>> lk.softplus(np.asarray([-50.0, 0.0, 1000.0]))  # exp(1000) would overflow
    array([1.92874985e-22, 6.93147181e-01, 1.00000000e+03])
    """
    # --- fast path: compiled kernels for NumPy float32/float64 (``_kernels``) ---
    if xp is None:
        fast = _kernels.softplus(x, out)
        if fast is not None:
            return fast
    # --- end of fast path ---
    w = _work(x, xp)
    return _done(_softplus(w.x, refine=w.refine, xp=w.xp), w, out)


def _softplus(x: Array, /, *, refine: bool, xp: ArrayNamespace) -> Array:
    zero = const(0.0, x, xp=xp)
    if not refine:
        return xp.where(x >= zero, x, zero) + xp.log1p(xp.exp(_neg_abs(x, xp=xp)))
    e, e_lo = exp_dd(_neg_abs(x, xp=xp), xp.zeros_like(x), xp=xp)
    lp, lp_lo = log1p_dd(e, e_lo, xp=xp)
    return add_rounded(lp, lp_lo, xp.where(x >= zero, x, zero), xp=xp)


def log_sigmoid(
    x: Any, /, *, out: Any = None, xp: ArrayNamespace | None = None
) -> Array:
    r"""``log(sigmoid(x)) = -softplus(-x)``, never ``-inf`` for finite `x`.

    .. math:: \log\sigma(x) = \min(x, 0) - \operatorname{log1p}(e^{-|x|})

    Parameters
    ----------
    x : array_like
        Logits. Integer input is promoted to the default float dtype.
    out : numpy.ndarray, optional
        For NumPy input only: the array to write the result into.
    xp : array_namespace, optional
        The namespace of `x`. Default: inferred.

    Returns
    -------
    array
        ``log(sigmoid(x))``, same shape, namespace, device and dtype as `x`.

    Raises
    ------
    TypeError
        If `x` is complex, or `out` is given for a non-NumPy input.
    ValueError
        If `out` has the wrong shape or dtype.

    See Also
    --------
    sigmoid, softplus

    Examples
    --------
    >>> import numpy as np
    >>> import logitkit as lk
    >>> lk.log_sigmoid(np.asarray([-800.0, 40.0]))  # log(sigmoid(-800)) = log(0)
    array([-8.00000000e+02, -4.24835426e-18])
    """
    # --- fast path: compiled kernels for NumPy float32/float64 (``_kernels``) ---
    if xp is None:
        fast = _kernels.log_sigmoid(x, out)
        if fast is not None:
            return fast
    # --- end of fast path ---
    w = _work(x, xp)
    return _done(-_softplus(-w.x, refine=w.refine, xp=w.xp), w, out)


def logit(p: Any, /, *, xp: ArrayNamespace | None = None) -> Array:
    r"""The inverse of the sigmoid, ``log(p / (1 - p))``.

    .. math:: \operatorname{logit}(p) = \log\frac{p}{1-p}
              = 2\operatorname{atanh}(2p - 1)

    Parameters
    ----------
    p : array_like
        Probabilities. Integer input is promoted to the default float dtype.
    xp : array_namespace, optional
        The namespace of `p`. Default: inferred.

    Returns
    -------
    array
        Logits, same shape, namespace, device and dtype as `p`: ``-inf`` at
        0, ``inf`` at 1, NaN outside ``[0, 1]`` (as ``scipy.special.logit``),
        with no warning.

    Raises
    ------
    TypeError
        If `p` is complex.

    See Also
    --------
    sigmoid : the inverse function.

    Notes
    -----
    For ``p >= 1/4``, ``2p - 1`` is exact and ``2 atanh(2p - 1)`` loses
    nothing near ``p = 1/2``, where ``log(p) - log(1 - p)`` cancels. Below,
    ``log(p) - log1p(-p)`` has no cancellation.

    Examples
    --------
    >>> import numpy as np
    >>> import logitkit as lk
    >>> lk.logit(np.asarray([0.0, 0.25, 0.5, 1.0, 2.0]))
    array([       -inf, -1.09861229,  0.        ,         inf,         nan])
    >>> float(lk.logit(0.5 + 2.0**-52))  # 4 * 2**-52, to the last bit
    8.881784197001252e-16
    """
    w = _work(p, xp, name="p")
    xp, p = w.xp, w.x
    zero = const(0.0, p, xp=xp)
    one = const(1.0, p, xp=xp)
    two = const(2.0, p, xp=xp)
    half = const(0.5, p, xp=xp)
    if w.refine:
        y = _logit_dd(p, xp=xp)
    else:
        quarter = const(0.25, p, xp=xp)
        mid = (p >= quarter) & (p < one)
        low = (p > zero) & (p < quarter)
        p_mid = xp.where(mid, p, half)
        p_low = xp.where(low, p, quarter * half)
        y = xp.where(
            mid,
            two * xp.atanh(two * p_mid - one),
            xp.log(p_low) - xp.log1p(-p_low),
        )
    y = xp.where(p == zero, const(-float("inf"), p, xp=xp), y)
    y = xp.where(p == one, const(float("inf"), p, xp=xp), y)
    y = xp.where((p < zero) | (p > one) | xp.isnan(p), const(float("nan"), p, xp=xp), y)
    return _done(y, w, None)


def _logit_dd(p: Array, /, *, xp: ArrayNamespace) -> Array:
    r"""float64 logit through ``log1p`` of an exact-enough ratio.

    For ``p >= 1/2``, ``logit(p) = log1p((2p - 1) / (1 - p))`` with both terms
    exact; below, ``logit(p) = -log1p((1 - 2p) / p)`` with ``1 - 2p`` as a
    TwoSum pair. For ``p < 2**-60`` the ratio is huge and ``logit(p)`` is
    ``log(p)`` to well below an ulp.
    """
    zero = const(0.0, p, xp=xp)
    one = const(1.0, p, xp=xp)
    two = const(2.0, p, xp=xp)
    tiny = const(2.0**-60, p, xp=xp)
    upper = (p >= const(0.5, p, xp=xp)) & (p < one)
    lower = (p >= tiny) & (p < const(0.5, p, xp=xp))
    pu = xp.where(upper, p, const(0.75, p, xp=xp))
    r, r_lo = div_dd(
        two * pu - one, xp.zeros_like(p), one - pu, xp.zeros_like(p), xp=xp
    )
    up, _ = log1p_dd(r, r_lo, xp=xp)
    pl = xp.where(lower, p, const(0.25, p, xp=xp))
    n, n_lo = two_sum(one, -(two * pl))
    r, r_lo = div_dd(n, n_lo, pl, xp.zeros_like(p), xp=xp)
    down, _ = log1p_dd(r, r_lo, xp=xp)
    tiny_p = xp.log(xp.where((p > zero) & (p < tiny), p, one))
    return xp.where(upper, up, xp.where(lower, -down, tiny_p))
