r"""The softmax family: ``logsumexp``, ``softmax`` and ``log_softmax``.

All three share one row computation (:func:`_row_stats`). Along the reduced
axis, with ``k`` the position of the maximum ``m = x_k``,

.. math:: \operatorname{logsumexp}(x) = m + \operatorname{log1p}(S), \qquad
          S = \sum_{j \ne k} e^{x_j - m}

(Blanchard, Higham and Higham, *Accurately computing the log-sum-exp and
softmax functions*, 2021). ``S`` holds every term but the largest, so a
confident row (``S = 1e-13``) keeps all its digits, and

.. math:: \log\operatorname{softmax}(x)_j = (x_j - m) - \operatorname{log1p}(S)

adds two non-positive numbers: no cancellation. Results of float32 and
narrower inputs are computed in float64 and rounded once. float64 results
carry the rounding error of ``x_j - m`` (TwoSum) and of ``1 + S`` as
corrections.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from array_api_compat import device

from . import _kernels
from ._dd import add_dd, div_dd, exp_dd, log1p_dd, sum_dd
from ._helpers import (
    add_rounded,
    as_array,
    as_floating,
    as_mask,
    check_out,
    check_temperature,
    const,
    flatten_axes,
    namespace,
    normalize_axis,
    round_to,
    two_sum,
    unflatten_axes,
    work_dtype,
)
from ._typing import Array, ArrayNamespace, Axis, DType

__all__ = ["log_softmax", "logsumexp", "softmax"]


class _Prepared(NamedTuple):
    x: Array  # work dtype, reduced axes merged into the last one
    axes: tuple[int, ...]
    moved_shape: tuple[int, ...]
    out_dtype: DType
    refine: bool  # float64 result: compute in double-double (``_dd``)
    scalar: bool  # 0-d input, computed as one row of one entry
    xp: ArrayNamespace


def _prepare(
    x: Any,
    axis: Axis,
    where: Any,
    temperature: float,
    *,
    xp: ArrayNamespace | None,
) -> _Prepared:
    x = as_array(x, name="x")
    xp = namespace(x, xp=xp)
    x = as_floating(x, name="x", xp=xp)
    out_dtype = x.dtype
    scalar = x.ndim == 0
    if scalar:
        x = xp.reshape(x, (1,))
        axes: tuple[int, ...] = (0,)
    else:
        axes = normalize_axis(axis, x.ndim, allow_none=True)
    wd = work_dtype(out_dtype, xp=xp)
    if wd != out_dtype:
        x = xp.astype(x, wd)
    t = check_temperature(temperature)
    if t != 1.0:
        x = x / const(t, x, xp=xp)
    if where is not None:
        x = xp.where(as_mask(where, x, xp=xp), x, const(-float("inf"), x, xp=xp))
    x, moved_shape = flatten_axes(x, axes, xp=xp)
    refine = wd == out_dtype and out_dtype == xp.float64
    return _Prepared(x, axes, moved_shape, out_dtype, refine, scalar, xp)


class _RowStats(NamedTuple):
    onehot: Array  # the (first) maximum of each row
    m: Array  # row maximum, shape (..., 1); gradients flow to x_k
    d: Array  # x - m (rounded); 0 or -inf in rows whose maximum is +inf
    dl: Array | None  # rounding error of d (double-double only)
    e: Array  # exp(d + dl), its high part
    e_lo: Array | None  # ... and its low part (double-double only)
    s: Array  # sum of e over j != k, shape (..., 1)
    s_lo: Array | None  # its low part (double-double only)

    def log1p_s(self, xp: ArrayNamespace) -> tuple[Array, Array | None]:
        """``log1p(S)``, as a double-double when the statistics are."""
        if self.s_lo is None:
            return xp.log1p(self.s), None
        return log1p_dd(self.s, self.s_lo, xp=xp)


def _row_stats(x: Array, /, *, refine: bool, xp: ArrayNamespace) -> _RowStats:
    """Shared statistics of each row of `x` along its last (non-empty) axis.

    With `refine` (float64 results) ``x - m``, ``exp`` and the sum are carried
    as double-doubles, so that every result is rounded once, at the end.
    """
    n = x.shape[-1]
    zero = const(0.0, x, xp=xp)
    inf = const(float("inf"), x, xp=xp)
    k = xp.argmax(x, axis=-1, keepdims=True)
    onehot = xp.arange(n, device=device(x), dtype=k.dtype) == k
    # m = x_k as a masked sum (not xp.max) so that autograd sends the whole
    # derivative of m to x_k, which the sum S leaves out.
    m = xp.sum(xp.where(onehot, x, zero), axis=-1, keepdims=True)
    m_safe = xp.where(xp.isfinite(m), m, zero)
    over = None
    if refine:
        # x - m can overflow (x = -1.7e308, m = 1.7e308) only when nothing is
        # wider to compute in; its correctly rounded value is then -inf.
        half = const(0.5, x, xp=xp)
        big = const(float(xp.finfo(x.dtype).max) * 0.5, x, xp=xp)
        over = (x * half - m_safe * half) < -big
        x = xp.where(over, m_safe, x)
    d = x - m_safe
    if over is not None:
        d = xp.where(over, -inf, d)
    # d_k = 0 as a constant: autograd then never forms x_k - m = 0 out of
    # 1 - 1 while the tiny dL/dm (= -S/(1 + S)) is added to the -1 and lost.
    d = xp.where(onehot & xp.isfinite(m), zero, d)
    # +inf entries share the mass: they become exp(0) = 1, the rest 0.
    d = xp.where(m == inf, xp.where(x == inf, zero, -inf), d)
    # NaN anywhere makes the row NaN (argmax's NaN handling is unspecified).
    row_nan = xp.any(xp.isnan(x), axis=-1, keepdims=True)
    d = xp.where(row_nan, const(float("nan"), x, xp=xp), d)
    if not refine:
        e = xp.exp(d)
        s = xp.sum(xp.where(onehot, zero, e), axis=-1, keepdims=True)
        return _RowStats(onehot, m, d, None, e, None, s, None)
    _, err = two_sum(xp.where(xp.isfinite(x), x, zero), -m_safe)
    dl = xp.where(xp.isfinite(d), err, zero)
    e, e_lo = exp_dd(d, dl, xp=xp)
    s, s_lo = sum_dd(xp.where(onehot, zero, e), lo=xp.where(onehot, zero, e_lo), xp=xp)
    return _RowStats(onehot, m, d, dl, e, e_lo, s, s_lo)


def _finish(
    y: Array, p: _Prepared, /, *, keepdims: bool = True, reduced: bool = False
) -> Array:
    xp = p.xp
    y = round_to(y, p.out_dtype, xp=xp)
    if p.scalar:
        return xp.reshape(y, ())
    if reduced:  # y has shape (*batch, 1); batch axes keep their order
        nbatch = len(p.moved_shape) - len(p.axes)
        shape = list(p.moved_shape[:nbatch])
        if keepdims:
            for a in p.axes:
                shape.insert(a, 1)
        return xp.reshape(y, tuple(shape))
    return unflatten_axes(y, p.axes, p.moved_shape, xp=xp)


def logsumexp(
    x: Any,
    axis: Axis = None,
    *,
    b: Any = None,
    keepdims: bool = False,
    where: Any = None,
    return_sign: bool = False,
    xp: ArrayNamespace | None = None,
) -> Array | tuple[Array, Array]:
    r"""Compute ``log(sum(b * exp(x)))`` along `axis` without overflow or cancellation.

    .. math:: \operatorname{logsumexp}(x) = m + \operatorname{log1p}
              \Bigl(\sum_{j \ne k} e^{x_j - m}\Bigr), \quad m = x_k = \max_j x_j

    Parameters
    ----------
    x : array_like
        Input values. Integer input is promoted to the default float dtype.
    axis : int or tuple of ints or None, optional
        Axis or axes to reduce. ``None`` (the default, as in SciPy) reduces
        over all axes.
    b : array_like, optional
        Weights of the exponentials, broadcast against `x` as in SciPy. May be
        negative (see `return_sign`); entries with ``b == 0`` are left out,
        even where `x` is infinite.
    keepdims : bool, optional
        Keep the reduced axes with size one. Default: False.
    where : array_like of bool, optional
        Elements to include, broadcastable to `x`. A slice with no included
        element gives ``-inf``.
    return_sign : bool, optional
        If True, return ``(log(abs(s)), sign(s))`` for the weighted sum ``s``.
        If False, a negative sum gives NaN (SciPy's behaviour).
    xp : array_namespace, optional
        The namespace of `x`. Default: inferred.

    Returns
    -------
    array or tuple of arrays
        The reduced values, in the namespace, device and float dtype of `x`;
        with `return_sign`, also the sign (1, -1, or 0 for a zero sum).

    Raises
    ------
    IndexError
        If an axis is out of bounds.
    ValueError
        If `b` or `where` does not broadcast against `x`.
    TypeError
        If `x` is complex or `where` is not boolean.

    See Also
    --------
    softmax : the gradient of `logsumexp`.

    Notes
    -----
    NaN anywhere in a slice gives NaN; a ``+inf`` entry gives ``+inf``; an
    empty or all ``-inf`` slice gives ``-inf`` (sign 0). float32 and narrower
    inputs are computed in float64 and correctly rounded but for a rare
    double rounding.

    Examples
    --------
    >>> import numpy as np
    >>> import logitkit as lk
    >>> float(lk.logsumexp(np.asarray([1000.0, 1000.0])))  # 1000 + log(2)
    1000.6931471805599
    >>> float(lk.logsumexp([0.0, -40.0]))  # log1p(e**-40): log(1 + 4e-18) would be 0
    4.248354255291589e-18
    >>> lse, sign = lk.logsumexp([1.0, 2.0], b=[1.0, -2.0], return_sign=True)
    >>> float(lse), float(sign)
    (2.48988012564475, -1.0)
    """
    # --- fast path: compiled kernels for NumPy float32/float64 (``_kernels``) ---
    if b is None and where is None and xp is None:
        fast = _kernels.logsumexp(x, axis, keepdims, return_sign)
        if fast is not None:
            return fast
    # --- end of fast path ---
    if b is None:
        p = _prepare(x, axis, where, 1.0, xp=xp)
        xp = p.xp
        if p.x.shape[-1] == 0:
            lse = xp.full(
                (*p.x.shape[:-1], 1),
                -float("inf"),
                dtype=p.x.dtype,
                device=device(p.x),
            )
            sign = xp.zeros_like(lse)
        else:
            st = _row_stats(p.x, refine=p.refine, xp=xp)
            big, small = st.log1p_s(xp)
            lse = st.m + big if small is None else add_rounded(big, small, st.m, xp=xp)
            sign = xp.where(lse == -xp.inf, xp.zeros_like(lse), xp.ones_like(lse))
            sign = xp.where(xp.isnan(lse), lse, sign)
    else:
        lse, sign, p = _weighted_logsumexp(x, axis, b, where, xp=xp)
        xp = p.xp
        if not return_sign:
            lse = xp.where(sign < 0, const(float("nan"), lse, xp=xp), lse)
    lse = _finish(lse, p, keepdims=keepdims, reduced=True)
    if return_sign:
        return lse, _finish(sign, p, keepdims=keepdims, reduced=True)
    return lse


def _weighted_logsumexp(
    x: Any, axis: Axis, b: Any, where: Any, *, xp: ArrayNamespace | None
) -> tuple[Array, Array, _Prepared]:
    x = as_array(x, name="x")
    b = as_array(b, name="b")
    xp = namespace(x, b, xp=xp)
    x = as_floating(x, name="x", xp=xp)
    b = xp.asarray(b, device=device(x))
    if not xp.isdtype(b.dtype, "real floating"):
        b = xp.astype(as_floating(b, name="b", xp=xp), x.dtype)
    dtype = xp.result_type(x, b)
    try:
        x, b = xp.broadcast_arrays(xp.astype(x, dtype), xp.astype(b, dtype))
    except (ValueError, RuntimeError, TypeError) as exc:
        msg = (
            f"`b` must broadcast against `x`; got shapes {tuple(b.shape)} "
            f"and {tuple(x.shape)}."
        )
        raise ValueError(msg) from exc
    x = xp.where(b != 0, x, const(-float("inf"), x, xp=xp))
    p = _prepare(x, axis, where, 1.0, xp=xp)
    bw = b if p.x.dtype == b.dtype else xp.astype(b, p.x.dtype)
    bw, _ = flatten_axes(bw, p.axes, xp=xp) if b.ndim else (xp.reshape(bw, (1,)), None)
    xw = p.x
    if xw.shape[-1] == 0:
        lse = xp.full(
            (*xw.shape[:-1], 1), -float("inf"), dtype=xw.dtype, device=device(xw)
        )
        return lse, xp.zeros_like(lse), p
    st = _row_stats(xw, refine=p.refine, xp=xp)
    zero = const(0.0, xw, xp=xp)
    one = const(1.0, xw, xp=xp)
    bk = xp.sum(xp.where(st.onehot, bw, zero), axis=-1, keepdims=True)
    bk_safe = xp.where(bk != 0, bk, one)  # bk == 0 only when the row is all -inf
    t = xp.sum(xp.where(st.onehot, zero, (bw / bk_safe) * st.e), axis=-1, keepdims=True)
    neg = t < -1
    pos = t > -1
    log_abs_s = xp.where(
        neg, xp.log(xp.where(neg, -(one + t), one)), xp.log1p(xp.where(pos, t, zero))
    )
    log_abs_s = xp.where(t == -1, const(-float("inf"), t, xp=xp), log_abs_s)
    sign_s = xp.where(t > -1, one, xp.where(t == -1, zero, -one))
    lse = st.m + xp.log(xp.abs(bk_safe)) + log_abs_s
    sign = xp.sign(bk_safe) * sign_s
    sign = xp.where(lse == -xp.inf, zero, sign)
    sign = xp.where(xp.isnan(lse), lse, sign)
    return lse, sign, p


def softmax(
    x: Any,
    axis: Axis = -1,
    *,
    where: Any = None,
    temperature: float = 1.0,
    out: Any = None,
    xp: ArrayNamespace | None = None,
) -> Array:
    r"""Turn logits into probabilities along `axis`.

    .. math:: \operatorname{softmax}(x)_j = \frac{e^{x_j / T}}{\sum_i e^{x_i / T}}

    Parameters
    ----------
    x : array_like
        Logits. Integer input is promoted to the default float dtype.
    axis : int or tuple of ints or None, optional
        Axis (or axes, normalised jointly) of the classes; ``None`` means all
        axes (``scipy.special.softmax``'s default). Default: ``-1``.
    where : array_like of bool, optional
        Entries to include, broadcastable to `x`; masked entries get 0.
    temperature : float, optional
        ``T > 0``; the logits are divided by it. Default: 1.
    out : numpy.ndarray, optional
        For NumPy input only: the array to write the result into (its shape
        and dtype must be those of the result).
    xp : array_namespace, optional
        The namespace of `x`. Default: inferred.

    Returns
    -------
    array
        Probabilities, same shape, namespace, device and float dtype as `x`.

    Raises
    ------
    IndexError
        If an axis is out of bounds.
    ValueError
        If `temperature <= 0`, `where` does not broadcast, or `out` does not
        match.
    TypeError
        If `x` is complex, `where` not boolean, or `out` is given for a
        non-NumPy input.

    See Also
    --------
    log_softmax : the logarithm, without the underflow of ``log(softmax(x))``.
    sigmoid : the two-class case, ``softmax([0, x])[1]``.

    Notes
    -----
    A row with no valid entry (all masked or all ``-inf``) gives zeros, never
    NaN. ``+inf`` entries share the mass equally. NaN anywhere in a row makes
    the row NaN. Every value is within 0.51 ulp (float32, float16, bfloat16)
    or about 1 ulp (float64) of the exact one.

    Examples
    --------
    >>> import numpy as np
    >>> import logitkit as lk
    >>> lk.softmax(np.asarray([0.0, 3.0, 1.0], dtype=np.float32))  # correctly rounded
    array([0.04201007, 0.84379476, 0.1141952 ], dtype=float32)
    >>> lk.softmax([1.0, 2.0, 3.0], where=[True, True, False])  # 3.0 masked out
    array([0.26894142, 0.73105858, 0.        ])
    >>> lk.softmax([[-np.inf, -np.inf]])  # no valid entry: zeros, not NaN
    array([[0., 0.]])
    """
    # --- fast path: compiled kernels for NumPy float32/float64 (``_kernels``) ---
    if where is None and temperature == 1.0 and xp is None:
        fast = _kernels.softmax(x, axis, out)
        if fast is not None:
            return fast
    # --- end of fast path ---
    p = _prepare(x, axis, where, temperature, xp=xp)
    xp = p.xp
    if p.x.shape[-1] == 0:
        y = p.x
    else:
        st = _row_stats(p.x, refine=p.refine, xp=xp)
        one = const(1.0, p.x, xp=xp)
        if st.e_lo is not None and st.s_lo is not None:
            zero = const(0.0, p.x, xp=xp)
            den_hi, den_lo = add_dd(one, zero, st.s, st.s_lo, xp=xp)
            y, _ = div_dd(st.e, st.e_lo, den_hi, den_lo, xp=xp)
        else:
            y = st.e / (one + st.s)
    y = _finish(y, p)
    return y if out is None else check_out(out, y, xp=xp)


def log_softmax(
    x: Any,
    axis: Axis = -1,
    *,
    where: Any = None,
    temperature: float = 1.0,
    out: Any = None,
    xp: ArrayNamespace | None = None,
) -> Array:
    r"""Log-probabilities of the logits along `axis`.

    .. math:: \log\operatorname{softmax}(x)_j = (x_j - m) -
              \operatorname{log1p}\Bigl(\sum_{i \ne k} e^{x_i - m}\Bigr),
              \quad m = x_k = \max_i x_i

    Parameters
    ----------
    x : array_like
        Logits. Integer input is promoted to the default float dtype.
    axis : int or tuple of ints or None, optional
        Axis (or axes, normalised jointly) of the classes; ``None`` means all
        axes (``scipy.special.softmax``'s default). Default: ``-1``.
    where : array_like of bool, optional
        Entries to include, broadcastable to `x`; masked entries get ``-inf``.
    temperature : float, optional
        ``T > 0``; the logits are divided by it. Default: 1.
    out : numpy.ndarray, optional
        For NumPy input only: the array to write the result into.
    xp : array_namespace, optional
        The namespace of `x`. Default: inferred.

    Returns
    -------
    array
        Log-probabilities, same shape, namespace, device and dtype as `x`.

    Raises
    ------
    IndexError
        If an axis is out of bounds.
    ValueError
        If `temperature <= 0`, `where` does not broadcast, or `out` does not
        match.
    TypeError
        If `x` is complex, `where` not boolean, or `out` is given for a
        non-NumPy input.

    See Also
    --------
    softmax : ``exp(log_softmax(x))``.
    logsumexp : ``x - log_softmax(x)``.

    Notes
    -----
    The two terms of the formula are never of opposite signs, so the result
    is accurate even where ``x - logsumexp(x)`` cancels: the top class of a
    confident row gets ``-1e-13``, not 0. An all-masked row gives ``-inf``.

    Examples
    --------
    >>> import numpy as np
    >>> import logitkit as lk
    >>> lk.log_softmax(np.asarray([3.0, 4.0, 0.0], dtype=np.float32))
    array([-1.3265626 , -0.32656264, -4.3265624 ], dtype=float32)
    >>> lk.log_softmax([0.0, 200.0])  # log(softmax(x)) would give -inf
    array([-200.,    0.])
    >>> float(lk.log_softmax([0.0, 29.933606208922594])[1])  # x - logsumexp(x) gives -9.9476e-14
    -9.999999999999498e-14
    """
    # --- fast path: compiled kernels for NumPy float32/float64 (``_kernels``) ---
    if where is None and temperature == 1.0 and xp is None:
        fast = _kernels.log_softmax(x, axis, out)
        if fast is not None:
            return fast
    # --- end of fast path ---
    p = _prepare(x, axis, where, temperature, xp=xp)
    xp = p.xp
    if p.x.shape[-1] == 0:
        y = p.x
    else:
        st = _row_stats(p.x, refine=p.refine, xp=xp)
        big, small = st.log1p_s(xp)
        if small is None or st.dl is None:
            y = st.d - big
        else:  # (d + dl) - (big + small), rounded once
            y = add_rounded(-big, st.dl - small, st.d, xp=xp)
    y = _finish(y, p)
    return y if out is None else check_out(out, y, xp=xp)
