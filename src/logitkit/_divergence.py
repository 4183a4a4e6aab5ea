r"""Information of softmax distributions: entropy and KL divergence from logits.

With ``d = x - max(x)``, ``L = log1p(sum_{j != k} e^{d_j})`` and
``log p_j = d_j - L`` (:mod:`logitkit._softmax`):

.. math:: H(p) = L - \sum_j p_j d_j, \qquad
          \operatorname{KL}(p \,\|\, q) = \sum_j p_j (\log p_j - \log q_j)

The entropy adds two non-negative numbers. The divergence of nearby
distributions cancels: its terms are taken in double-double (float64
accumulation and double-double for float32 inputs too), so a divergence of
``1e-12`` keeps its digits.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._dd import add_dd, div_dd, exp_scaled_dd, ldexp_dd, log1p_dd, mul_dd, sum_dd
from ._helpers import (
    adopt,
    as_array,
    as_floating,
    const,
    flatten_axes,
    namespace,
    round_to,
    unflatten_axes,
)
from ._reduction import axis_index, loss_dtype
from ._softmax import _row_stats
from ._typing import Array, ArrayNamespace, DType

__all__ = ["kl_divergence", "softmax_entropy"]

_DD_SAFE = 2.0**990


class _LogProbs(NamedTuple):
    p: Array  # probabilities (high part)
    p_lo: Array | None
    lp: Array  # log-probabilities (high part); -inf where p = 0
    lp_lo: Array | None
    big: Array  # L = log1p(S), (..., 1)
    big_lo: Array | None
    d: Array  # x - max
    m: Array
    dl: Array | None  # rounding error of d (double-double only)
    s: Array  # sum of exp(d) without the maximum
    s_lo: Array | None


def _log_probs(x: Array, /, *, refine: bool, xp: ArrayNamespace) -> _LogProbs:
    st = _row_stats(x, refine=refine, xp=xp)
    big, small = st.log1p_s(xp)
    one = const(1.0, x, xp=xp)
    zero = const(0.0, x, xp=xp)
    if not refine or small is None or st.dl is None or st.e_lo is None:
        return _LogProbs(
            st.e / (one + st.s),
            None,
            st.d - big,
            None,
            big,
            None,
            st.d,
            st.m,
            None,
            st.s,
            None,
        )
    assert st.s_lo is not None
    den_hi, den_lo = add_dd(
        xp.ones_like(st.s), xp.zeros_like(st.s), st.s, st.s_lo, xp=xp
    )
    p, p_lo = div_dd(st.e, st.e_lo, den_hi, den_lo, xp=xp)
    fin = xp.isfinite(st.d)
    shape = st.d.shape
    lp, lp_lo = add_dd(
        xp.where(fin, st.d, zero),
        xp.where(fin, st.dl, zero),
        -xp.broadcast_to(big, shape),
        -xp.broadcast_to(small, shape),
        xp=xp,
    )
    lp = xp.where(fin, lp, st.d - big)
    lp_lo = xp.where(fin, lp_lo, zero)
    return _LogProbs(p, p_lo, lp, lp_lo, big, small, st.d, st.m, st.dl, st.s, st.s_lo)


def _tiny_entropy(lp: _LogProbs, /, *, xp: ArrayNamespace) -> Array:
    r"""The entropy of rows with ``S < 2**-900``, right down to subnormals.

    There ``L = log1p(S) = S`` and ``1 + S = 1`` to far below an ulp, so
    ``H = sum_{j != k} e^{d_j} (1 - d_j)``; the exponentials are taken as
    mantissas and exponents (:func:`exp_scaled_dd`), summed relative to the
    row's largest, and scaled back once, so a subnormal entropy is rounded
    once instead of being assembled from subnormal probabilities.
    """
    assert lp.dl is not None
    zero = xp.zeros_like(lp.d)
    live = (lp.d < zero) & xp.isfinite(lp.d)  # j != k with e^{d_j} > 0
    d = xp.where(live, lp.d, zero)
    dl = xp.where(live, lp.dl, zero)
    m_hi, m_lo, q = exp_scaled_dd(d, dl, xp=xp)
    m_hi = xp.where(live, m_hi, zero)
    m_lo = xp.where(live, m_lo, zero)
    big_q = xp.max(xp.where(m_hi > zero, q, zero - 2000.0), axis=-1, keepdims=True)
    shift = xp.where(m_hi > zero, q - big_q, zero)
    shift = xp.where(shift < -1000.0, zero - 1000.0, shift)
    sm_hi, sm_lo = ldexp_dd(m_hi, m_lo, shift, xp=xp)
    one_hi, one_lo = add_dd(zero + 1.0, zero, -d, -dl, xp=xp)
    t_hi, t_lo = mul_dd(sm_hi, sm_lo, one_hi, one_lo, xp=xp)
    s_hi, s_lo = sum_dd(t_hi, lo=t_lo, xp=xp)
    big_q = xp.where(big_q < -1080.0, zero[..., :1], big_q)
    h_hi, _ = ldexp_dd(s_hi, s_lo, big_q, xp=xp)
    return h_hi


def _prepare(
    x: Any, name: str, xp: ArrayNamespace | None
) -> tuple[Array, ArrayNamespace]:
    x = as_array(x, name=name)
    xp = namespace(x, xp=xp)
    return as_floating(x, name=name, xp=xp), xp


def _dtypes(dtype: DType, /, *, xp: ArrayNamespace) -> tuple[DType, DType]:
    from ._helpers import work_dtype

    out = loss_dtype(dtype, xp=xp)
    return out, work_dtype(out, xp=xp)


def _finish(
    y: Array, batch: tuple[int, ...], dtype: DType, /, *, xp: ArrayNamespace
) -> Array:
    return round_to(xp.reshape(y, batch), dtype, xp=xp)


def _entropy(
    logits: Any, axis: int, want_grad: bool, xp: ArrayNamespace | None
) -> tuple[Array, Array | None]:
    x, xp = _prepare(logits, "logits", xp)
    in_dtype = x.dtype
    if x.ndim == 0:
        msg = "`logits` must have at least one dimension (the classes); got a scalar."
        raise ValueError(msg)
    ax = axis_index(axis, x.ndim)
    out, wd = _dtypes(x.dtype, xp=xp)
    x = xp.astype(x, wd) if x.dtype != wd else x
    x, moved = flatten_axes(x, (ax,), xp=xp)
    batch = moved[:-1]
    refine = wd == out == xp.float64
    zero = const(0.0, x, xp=xp)
    if x.shape[-1] == 0:
        h = xp.zeros((*batch, 1), dtype=x.dtype)
        return _finish(h, batch, out, xp=xp), (x if want_grad else None)
    lp = _log_probs(x, refine=refine, xp=xp)
    pos = lp.p > zero  # 0 log 0 = 0
    d = xp.where(pos, lp.d, zero)
    if lp.p_lo is None or lp.big_lo is None:
        h = lp.big - xp.sum(lp.p * d, axis=-1, keepdims=True)
    else:
        assert lp.dl is not None
        ok = xp.abs(d) < _DD_SAFE
        d_ok = xp.where(ok, d, zero)
        dl_ok = xp.where(ok & pos, lp.dl, zero)
        t_hi, t_lo = mul_dd(lp.p, lp.p_lo, -d_ok, -dl_ok, xp=xp)
        t_hi = xp.where(ok, t_hi, -(lp.p * d))
        t_lo = xp.where(ok & pos, t_lo, zero)
        s_hi, s_lo = sum_dd(t_hi, lo=t_lo, xp=xp)
        fin = xp.isfinite(s_hi) & xp.isfinite(lp.big)
        h_hi, h_lo = add_dd(
            xp.where(fin, lp.big, zero),
            xp.where(fin, lp.big_lo, zero),
            xp.where(fin, s_hi, zero),
            xp.where(fin, s_lo, zero),
            xp=xp,
        )
        h = xp.where(fin, h_hi + h_lo, lp.big + s_hi)
        assert lp.s_lo is not None
        tiny = (lp.s < 2.0**-900) & (lp.s > zero)
        h = xp.where(tiny, _tiny_entropy(lp, xp=xp), h)
    # A row with no valid entry is a point mass nowhere: entropy 0.
    h = xp.where(lp.m == -xp.inf, zero, h)
    value = _finish(h, batch, out, xp=xp)
    if not want_grad:
        return value, None
    lpf = xp.where(pos, lp.lp, zero)
    g = xp.where(pos, -lp.p * (lpf + h), zero)
    g = unflatten_axes(g, (ax,), moved, xp=xp)
    return value, round_to(g, in_dtype, xp=xp)


def softmax_entropy(
    logits: Any, /, *, axis: int = -1, xp: ArrayNamespace | None = None
) -> Array:
    r"""Shannon entropy (in nats) of ``softmax(logits)`` along `axis`.

    .. math:: H = -\sum_j p_j \log p_j = \operatorname{log1p}(S) -
              \sum_j p_j (x_j - m), \quad m = \max_j x_j

    Parameters
    ----------
    logits : array_like
        Unnormalised log-probabilities, classes along `axis`.
    axis : int, optional
        The class axis. Default: ``-1``.
    xp : array_namespace, optional
        The namespace of `logits`. Default: inferred.

    Returns
    -------
    array
        One entropy per row (the shape of `logits` without `axis`); float32
        for float16/bfloat16 logits, else the logits' dtype.

    See Also
    --------
    kl_divergence : the divergence of two softmax distributions.
    logitkit.grad.softmax_entropy : the entropy and its gradient.

    Notes
    -----
    Both terms are non-negative, so a confident row keeps its small entropy.
    Classes with probability 0 (``-inf`` logits) add nothing; a row with no
    valid class has entropy 0; NaN anywhere in a row gives NaN.

    Examples
    --------
    >>> import numpy as np
    >>> import logitkit as lk
    >>> lk.softmax_entropy(np.zeros((2, 4)))  # uniform: log(4)
    array([1.38629436, 1.38629436])
    >>> float(lk.softmax_entropy([0.0, 40.0, -np.inf]))
    1.7418252446695514e-16
    """
    value, _ = _entropy(logits, axis, False, xp)
    return value


def _kl(
    logits_p: Any,
    logits_q: Any,
    axis: int,
    want_grad: bool,
    xp: ArrayNamespace | None,
) -> tuple[Array, Array | None]:
    xp_ = xp
    a = as_array(logits_p, name="logits_p")
    b = as_array(logits_q, name="logits_q")
    xp = namespace(a, b, xp=xp_)
    a = adopt(a, b, xp=xp)
    b = adopt(b, a, xp=xp)
    a = as_floating(a, name="logits_p", xp=xp)
    b = as_floating(b, name="logits_q", xp=xp)
    if tuple(a.shape) != tuple(b.shape):
        msg = (
            "`logits_p` and `logits_q` must have the same shape; got shapes "
            f"{tuple(a.shape)} and {tuple(b.shape)}."
        )
        raise ValueError(msg)
    if a.ndim == 0:
        msg = "`logits_p` must have at least one dimension (the classes); got a scalar."
        raise ValueError(msg)
    in_dtype = a.dtype
    dtype = xp.result_type(a, b)
    out, wd = _dtypes(dtype, xp=xp)
    ax = axis_index(axis, a.ndim)
    a = xp.astype(a, wd) if a.dtype != wd else a
    b = xp.astype(b, wd) if b.dtype != wd else b
    a, moved = flatten_axes(a, (ax,), xp=xp)
    b, _ = flatten_axes(b, (ax,), xp=xp)
    batch = moved[:-1]
    if a.shape[-1] == 0:
        kl = xp.zeros((*batch, 1), dtype=a.dtype)
        return _finish(kl, batch, out, xp=xp), (a if want_grad else None)
    # Nearby distributions cancel: double-double whenever float64 is there.
    refine = wd == xp.float64
    lp = _log_probs(a, refine=refine, xp=xp)
    lq = _log_probs(b, refine=refine, xp=xp)
    zero = const(0.0, a, xp=xp)
    pos = lp.p > zero
    if lp.lp_lo is None or lq.lp_lo is None or lp.p_lo is None:
        diff = xp.where(pos, lp.lp, zero) - xp.where(pos, lq.lp, zero)
        kl = xp.sum(lp.p * diff, axis=-1, keepdims=True)
    else:
        kl = _kl_dd(lp, lq, xp=xp)
    nan = const(float("nan"), a, xp=xp)
    # Rows where p has no valid class are undefined.
    kl = xp.where(lp.m == -xp.inf, nan, kl)
    value = _finish(kl, batch, out, xp=xp)
    if not want_grad:
        return value, None
    diff = xp.where(pos, lp.lp, zero) - xp.where(pos, lq.lp, zero)
    g = xp.where(pos, lp.p * (diff - kl), zero)
    g = unflatten_axes(g, (ax,), moved, xp=xp)
    return value, round_to(g, in_dtype, xp=xp)


def _phi_terms(
    u_hi: Array, u_lo: Array, lp: _LogProbs, lq: _LogProbs, /, *, xp: ArrayNamespace
) -> tuple[Array, Array]:
    r"""``q_j phi(u_j)``, ``phi(u) = e^u (u - 1) + 1 >= 0``, in double-double.

    ``u = log p_j - log q_j``. Small ``|u|``: the series ``u^2/2 + u^3/3 +
    u^4/8 + ...`` (no cancellation); otherwise ``q + p (u - 1)``.
    """
    assert lp.p_lo is not None
    assert lq.p_lo is not None
    zero = xp.zeros_like(u_hi)
    small = xp.abs(u_hi) < 2.0**-10
    us = xp.where(small, u_hi, zero)
    us_lo = xp.where(small, u_lo, zero)
    sq_hi, sq_lo = mul_dd(us, us_lo, us, us_lo, xp=xp)
    poly = 1.0 / 840.0 + us * (1.0 / 5760.0)
    for c in (1.0 / 144.0, 1.0 / 30.0, 1.0 / 8.0, 1.0 / 3.0):
        poly = c + us * poly
    phi_hi, phi_lo = add_dd(
        sq_hi * 0.5, sq_lo * 0.5, (us * us) * us * poly, zero, xp=xp
    )
    t_small = mul_dd(lq.p, lq.p_lo, phi_hi, phi_lo, xp=xp)
    ub = xp.where(small, zero + 2.0, u_hi)
    ub_lo = xp.where(small, zero, u_lo)
    um_hi, um_lo = add_dd(ub, ub_lo, -(zero + 1.0), zero, xp=xp)
    pu_hi, pu_lo = mul_dd(lp.p, lp.p_lo, um_hi, um_lo, xp=xp)
    t_large = add_dd(lq.p, lq.p_lo, pu_hi, pu_lo, xp=xp)
    return (
        xp.where(small, t_small[0], t_large[0]),
        xp.where(small, t_small[1], t_large[1]),
    )


def _kl_dd(lp: _LogProbs, lq: _LogProbs, /, *, xp: ArrayNamespace) -> Array:
    r"""``KL = sum_j q_j phi(u_j)``: a sum of non-negative double-doubles.

    ``u_j = (d^p_j - d^q_j) - (L_p - L_q)`` with ``L_p - L_q =
    log1p((S_p - S_q) / (1 + S_q))``: both differences are taken exactly
    enough that nearby distributions keep every digit of their divergence.
    """
    assert lp.dl is not None
    assert lq.dl is not None
    assert lp.s_lo is not None
    assert lq.s_lo is not None
    assert lq.p_lo is not None
    zero = xp.zeros_like(lp.d)
    fin = xp.isfinite(lp.d) & xp.isfinite(lq.d)
    dd_hi, dd_lo = add_dd(
        xp.where(fin, lp.d, zero),
        xp.where(fin, lp.dl, zero),
        -xp.where(fin, lq.d, zero),
        -xp.where(fin, lq.dl, zero),
        xp=xp,
    )
    rz = xp.zeros_like(lp.s)
    row_ok = xp.isfinite(lp.s) & xp.isfinite(lq.s)
    sp, sp_lo = xp.where(row_ok, lp.s, rz), xp.where(row_ok, lp.s_lo, rz)
    sq, sq_lo = xp.where(row_ok, lq.s, rz), xp.where(row_ok, lq.s_lo, rz)
    n_hi, n_lo = add_dd(sp, sp_lo, -sq, -sq_lo, xp=xp)
    up = n_hi >= 0.0
    a_hi, a_lo = xp.where(up, n_hi, -n_hi), xp.where(up, n_lo, -n_lo)
    b_hi, b_lo = add_dd(
        rz + 1.0, rz, xp.where(up, sq, sp), xp.where(up, sq_lo, sp_lo), xp=xp
    )
    r_hi, r_lo = div_dd(a_hi, a_lo, b_hi, b_lo, xp=xp)
    g_hi, g_lo = log1p_dd(r_hi, r_lo, xp=xp)
    dl_hi, dl_lo = xp.where(up, g_hi, -g_hi), xp.where(up, g_lo, -g_lo)
    shape = lp.d.shape
    u_hi, u_lo = add_dd(
        dd_hi,
        dd_lo,
        -xp.broadcast_to(dl_hi, shape),
        -xp.broadcast_to(dl_lo, shape),
        xp=xp,
    )
    u_hi = xp.where(fin, u_hi, zero)
    u_lo = xp.where(fin, u_lo, zero)
    t_hi, t_lo = _phi_terms(u_hi, u_lo, lp, lq, xp=xp)
    pos = lp.p > zero
    q_pos = lq.p > zero
    # p_j = 0: q_j phi(-inf) = q_j; p_j > 0 = q_j: +inf.
    t_hi = xp.where(
        fin, t_hi, xp.where(pos, xp.where(q_pos, t_hi, zero + xp.inf), lq.p)
    )
    t_lo = xp.where(fin, t_lo, xp.where(pos, zero, lq.p_lo))
    s_hi, s_lo = sum_dd(t_hi, lo=xp.where(xp.isfinite(t_hi), t_lo, zero), xp=xp)
    kl = s_hi + s_lo
    # Rows with NaN (or +inf logits) fall back to the plain formula.
    diff = xp.where(pos, lp.lp, zero) - xp.where(pos, lq.lp, zero)
    plain = xp.sum(lp.p * diff, axis=-1, keepdims=True)
    return xp.where(row_ok & (lp.m < xp.inf) & (lq.m < xp.inf), kl, plain)


def kl_divergence(
    logits_p: Any,
    logits_q: Any,
    /,
    *,
    axis: int = -1,
    xp: ArrayNamespace | None = None,
) -> Array:
    r"""Kullback-Leibler divergence ``KL(p || q)`` of two softmax distributions.

    .. math:: \operatorname{KL}(p \,\|\, q) = \sum_j p_j (\log p_j - \log q_j),
              \quad p = \operatorname{softmax}(x^p), \; q = \operatorname{softmax}(x^q)

    Parameters
    ----------
    logits_p, logits_q : array_like
        Logits of the two distributions, of the same shape.
    axis : int, optional
        The class axis. Default: ``-1``.
    xp : array_namespace, optional
        The namespace of the logits. Default: inferred.

    Returns
    -------
    array
        One divergence per row (the shape without `axis`), in nats; float32
        for float16/bfloat16 logits.

    Raises
    ------
    ValueError
        If the shapes differ (both are named).

    See Also
    --------
    softmax_entropy : ``H(p)``; ``H(p, q) = H(p) + KL(p || q)``.
    logitkit.grad.kl_divergence : the divergence and its gradient with
        respect to `logits_p`.

    Notes
    -----
    Classes with ``p_j = 0`` add nothing (``0 log 0 = 0``); ``p_j > 0`` with
    ``q_j = 0`` gives ``+inf``. A row where ``p`` has no valid class is NaN.
    The terms are summed in double-double, so nearby distributions keep a
    small, accurate divergence instead of rounding noise.

    Examples
    --------
    >>> import numpy as np
    >>> import logitkit as lk
    >>> float(lk.kl_divergence([0.0, 1.0], [0.0, 1.0]))
    0.0
    >>> float(lk.kl_divergence([0.0, 1.0], [0.0, 1.0 + 1e-6]))  # ~ var(p) * 1e-12 / 2
    9.830595146160691e-14
    """
    value, _ = _kl(logits_p, logits_q, axis, False, xp)
    return value
