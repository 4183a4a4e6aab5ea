r"""Cross entropies of probabilities (what Keras' ``from_logits=False`` does).

``log(p)`` of a float32 probability is taken in float64 and rounded once at
the end; of a float64 probability in double-double,

.. math:: \log p = -\operatorname{log1p}\Bigl(\frac{1 - p}{p}\Bigr)

with ``1 - p`` exact (TwoSum) and the quotient in double-double: the ratio
is non-negative, so :func:`logitkit._dd.log1p_dd` applies, and ``log p``
keeps its relative accuracy also for ``p`` next to 1, where ``log p`` is
tiny. ``log(1 - p)`` is ``-log1p(p / (1 - p))`` the same way. Every term
``y log p`` is non-positive for labels in [0, 1]: the sums never cancel.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any, NamedTuple

from ._dd import div_dd, log1p_dd, sum_dd
from ._helpers import (
    as_array,
    const,
    flatten_axes,
    is_eager,
    namespace,
    round_to,
    two_sum,
    unflatten_axes,
    work_dtype,
)
from ._reduction import (
    axis_index,
    check_label_smoothing,
    check_reduction,
    loss_dtype,
    reduce,
)
from ._sigmoid_losses import add_guarded, labels_like, mul_guarded
from ._typing import Array, ArrayNamespace, DType

__all__ = ["binary_cross_entropy", "categorical_cross_entropy"]

DD = tuple[Array, Array]

_SCALE_EXP = 500  # tiny p are scaled by 2**500 before the division


def _ln2_times(n: int) -> tuple[float, float]:
    """``n log(2)`` as a double-double (from 40 digits)."""
    with localcontext() as ctx:
        ctx.prec = 40
        v = Fraction(Decimal(2).ln()) * n
    hi = float(v)
    return hi, float(v - Fraction(hi))


_OFFSET = _ln2_times(_SCALE_EXP)


def log_dd(p: Array, /, *, xp: ArrayNamespace) -> DD:
    r"""``log(p)`` in double-double for float64 ``0 <= p <= 1``.

    ``-log1p((1 - p) / p)``; below ``2**-500`` (subnormals included) ``p``
    is scaled by ``2**500`` first and ``500 log 2`` subtracted. ``p = 0``
    gives ``-inf``, NaN gives NaN.
    """
    zero = const(0.0, p, xp=xp)
    one = const(1.0, p, xp=xp)
    ok = (p > zero) & (p <= one)
    big = p >= const(2.0**-_SCALE_EXP, p, xp=xp)
    ps = xp.where(ok, xp.where(big, p, p * 2.0**_SCALE_EXP), one)
    d_hi, d_lo = two_sum(xp.ones_like(ps), -ps)
    s_hi, s_lo = div_dd(d_hi, d_lo, ps, xp.zeros_like(ps), xp=xp)
    l_hi, l_lo = log1p_dd(s_hi, s_lo, xp=xp)
    off_hi = xp.where(big, zero, const(_OFFSET[0], p, xp=xp))
    off_lo = xp.where(big, zero, const(_OFFSET[1], p, xp=xp))
    r_hi, r_lo = add_guarded(-l_hi, -l_lo, -off_hi, -off_lo, xp=xp)
    neg_inf = const(-math.inf, p, xp=xp)
    nan = const(math.nan, p, xp=xp)
    r_hi = xp.where(ok, r_hi, xp.where(p == zero, neg_inf, nan))
    return r_hi, xp.where(ok, r_lo, zero)


class _Setup(NamedTuple):
    p: Array  # probabilities, work dtype
    y: Array  # labels, work dtype
    eps: Array  # 0-d, the clip floor (rounded to the probabilities' dtype)
    in_dtype: DType
    out_dtype: DType
    refine: bool
    xp: ArrayNamespace


def _setup(
    probs: Any, labels: Any, eps: float | None, xp: ArrayNamespace | None
) -> _Setup:
    p = as_array(probs, name="probs")
    xp = namespace(p, xp=xp)
    if not xp.isdtype(p.dtype, "real floating"):
        msg = (
            "`probs` must be an array of real floating probabilities; "
            f"got dtype {p.dtype}."
        )
        raise TypeError(msg)
    y = labels_like(labels, p, xp=xp)
    if tuple(y.shape) != tuple(p.shape):
        msg = (
            f"`labels` must have the shape of `probs` {tuple(p.shape)}; got "
            f"shape {tuple(y.shape)} for probs of shape {tuple(p.shape)}."
        )
        raise ValueError(msg)
    if eps is None:
        e = float(xp.finfo(p.dtype).smallest_normal)
    else:
        try:
            e = float(eps)
        except (TypeError, ValueError):
            msg = f"`eps` must be a number in [0, 1) or None; got {eps!r}."
            raise TypeError(msg) from None
        if not 0.0 <= e < 1.0:
            msg = f"`eps` must be in [0, 1); got {eps!r}."
            raise ValueError(msg)
    in_dtype = p.dtype
    out_dtype = loss_dtype(in_dtype, xp=xp)
    wd = work_dtype(out_dtype, xp=xp)
    eps_arr = xp.astype(const(e, p, xp=xp), wd)  # rounded to the probs' dtype
    p = xp.astype(p, wd) if p.dtype != wd else p
    y = xp.astype(y, wd) if y.dtype != wd else y
    refine = wd == out_dtype and out_dtype == xp.float64
    return _Setup(p, y, eps_arr, in_dtype, out_dtype, refine, xp)


def _grad_out(
    g: Array, n: float, s: _Setup, reduction: str, /, *, xp: ArrayNamespace
) -> Array:
    if reduction == "mean":
        g = g / const(n if n > 0 else 1.0, g, xp=xp)
    return round_to(g, s.in_dtype, xp=xp)


def _dd_const(value: Fraction, like: Array, /, *, xp: ArrayNamespace) -> DD:
    hi = float(value)
    return const(hi, like, xp=xp), const(float(value - Fraction(hi)), like, xp=xp)


# ---------------------------------------------------- categorical cross entropy


def _cce(
    probs: Any,
    labels: Any,
    axis: int,
    eps: float | None,
    label_smoothing: float,
    reduction: str,
    want_grad: bool,
    xp: ArrayNamespace | None,
) -> tuple[Array, Array | None]:
    check_reduction(reduction)
    smooth = check_label_smoothing(label_smoothing)
    s = _setup(probs, labels, eps, xp)
    xp = s.xp
    if s.p.ndim == 0:
        msg = "`probs` must have at least one dimension (the classes); got a scalar."
        raise ValueError(msg)
    ax = axis_index(axis, s.p.ndim)
    p, moved = flatten_axes(s.p, (ax,), xp=xp)
    y, _ = flatten_axes(s.y, (ax,), xp=xp)
    k = p.shape[-1]
    zero = const(0.0, p, xp=xp)
    one = const(1.0, p, xp=xp)
    pc = xp.where(p < s.eps, s.eps, xp.where(p > one, one, p))
    y_lo = xp.zeros_like(y)
    if smooth > 0.0 and k > 0:
        if s.refine:
            c_hi, c_lo = _dd_const(1 - Fraction(smooth), y, xp=xp)
            h_hi, h_lo = _dd_const(Fraction(smooth) / k, y, xp=xp)
            t_hi, t_lo = mul_guarded(y, y_lo, c_hi + zero, c_lo + zero, xp=xp)
            y, y_lo = add_guarded(t_hi, t_lo, h_hi + zero, h_lo + zero, xp=xp)
        else:
            y = y * const(1.0 - smooth, y, xp=xp) + const(smooth / k, y, xp=xp)
    nz = (y != zero) | (y_lo != zero)  # 0 log 0 = 0: no weight, no term
    lo = None
    if s.refine:
        l_hi, l_lo = log_dd(pc, xp=xp)
        t_hi, t_lo = mul_guarded(y, y_lo, l_hi, l_lo, xp=xp)
        t_hi = xp.where(nz, t_hi, zero)
        t_lo = xp.where(nz, t_lo, zero)
        loss, lo = sum_dd(t_hi, lo=t_lo, axis=-1, keepdims=False, xp=xp)
        loss, lo = zero - loss, zero - lo  # 0 - 0 is +0, -(0) is -0
    else:
        t = xp.where(nz, y * xp.log(pc), zero)
        loss = zero - xp.sum(t, axis=-1)
    value = reduce(loss, reduction, out_dtype=s.out_dtype, lo=lo, xp=xp)
    if not want_grad:
        return value, None
    # d/dp = -y / p where the clip is inactive (eps <= p <= 1), else 0.
    active = nz & (p >= s.eps) & (p <= one)
    safe = xp.where(active & (p != zero), p, one)
    g = xp.where(
        active,
        xp.where(p == zero, const(-math.inf, p, xp=xp), -(y + y_lo) / safe),
        zero,
    )
    g = unflatten_axes(g, (ax,), moved, xp=xp)
    return value, _grad_out(g, float(math.prod(loss.shape)), s, reduction, xp=xp)


def categorical_cross_entropy(
    probs: Any,
    labels: Any,
    /,
    *,
    axis: int = -1,
    eps: float | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "none",
    xp: ArrayNamespace | None = None,
) -> Array:
    r"""Cross entropy of dense labels and probabilities (not logits).

    .. math:: \ell = -\sum_c y_c \log\bigl(\operatorname{clip}(p_c,
              \varepsilon, 1)\bigr)

    What Keras' ``categorical_crossentropy(..., from_logits=False)``
    computes (without its renormalisation of `probs`; see
    ``lk.compat.keras``), with the arguments in logitkit's order.

    Parameters
    ----------
    probs : array_like
        Probabilities, classes along `axis`, of a real floating dtype.
    labels : array_like
        One-hot or soft labels of the shape of `probs`.
    axis : int, optional
        The class axis. Default: ``-1``.
    eps : float, optional
        The clip floor, in [0, 1), rounded to the dtype of `probs`. Default:
        None, the smallest normal number of that dtype (so ``log`` of a 0
        probability is finite: about -708 in float64, -87.3 in float32).
    label_smoothing : float, optional
        ``e`` in [0, 1]: the labels become ``y (1 - e) + e / K`` with ``K``
        the number of classes. Default: 0.
    reduction : {"none", "mean", "sum"}, optional
        ``"none"`` (the default) returns one loss per example.
    xp : array_namespace, optional
        The namespace of `probs`. Default: inferred.

    Returns
    -------
    array
        The loss, of the shape of `probs` without `axis` (``"none"``) or 0-d;
        float32 for float16/bfloat16 probabilities, else their dtype.

    Raises
    ------
    TypeError
        If `probs` is not of a real floating dtype, or `labels` is complex.
    ValueError
        If the shapes differ (both are named), `eps` is outside [0, 1),
        `label_smoothing` is outside [0, 1], `reduction` is unknown or
        `probs` is 0-d.
    IndexError
        If `axis` is out of bounds.

    See Also
    --------
    softmax_cross_entropy : the same loss from logits, without the clip.
    binary_cross_entropy : the elementwise two-class version.

    Notes
    -----
    Probabilities are clipped, not checked: a value above 1 counts as 1,
    below `eps` (negative ones included) as `eps`, as in Keras. A class
    with label 0 adds nothing (``0 log 0 = 0``), even with ``eps = 0``.
    Within 0.51 ulp (float32) and 1 ulp (float64) of the exact loss of the
    clipped probabilities, for any labels in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit._prob_losses import categorical_cross_entropy
    >>> p = np.asarray([[0.1, 0.9], [1.0, 0.0]])
    >>> y = np.asarray([[0.0, 1.0], [0.0, 1.0]])
    >>> categorical_cross_entropy(p, y)  # log(0) is clipped to log(2.2e-308)
    array([1.05360516e-01, 7.08396419e+02])
    """
    value, _ = _cce(probs, labels, axis, eps, label_smoothing, reduction, False, xp)
    return value


def _grad_categorical_cross_entropy(
    probs: Any,
    labels: Any,
    /,
    *,
    axis: int = -1,
    eps: float | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "none",
    xp: ArrayNamespace | None = None,
) -> tuple[Array, Array]:
    r"""`categorical_cross_entropy` and its gradient with respect to `probs`.

    .. math:: \frac{\partial \ell}{\partial p_c} = -\frac{y_c}{p_c}
              \quad (\varepsilon \le p_c \le 1), \qquad 0 \text{ elsewhere}

    The gradient of ``loss.sum()`` (of the reduced value for ``"mean"`` and
    ``"sum"``), in the dtype of `probs`; 0 where the clip is active, as
    autograd through ``clip`` gives.
    """
    value, g = _cce(probs, labels, axis, eps, label_smoothing, reduction, True, xp)
    assert g is not None
    return value, g


# --------------------------------------------------------- binary cross entropy


def _check_range(p: Array, /, *, xp: ArrayNamespace) -> None:
    """ValueError naming the first probability outside [0, 1] (eager only)."""
    if not is_eager(p) or math.prod(p.shape) == 0:
        return
    bad = (p < const(0.0, p, xp=xp)) | (p > const(1.0, p, xp=xp))
    if not bool(xp.any(bad)):
        return
    where = xp.nonzero(bad) if p.ndim else ()
    pos = tuple(int(w[0]) for w in where)
    value = float(p[pos]) if pos else float(p)
    msg = (
        f"`probs` must be in [0, 1]; got {value} at position "
        f"{pos if len(pos) != 1 else pos[0]}."
    )
    raise ValueError(msg)


def _bce(
    probs: Any,
    labels: Any,
    eps: float | None,
    reduction: str,
    want_grad: bool,
    xp: ArrayNamespace | None,
) -> tuple[Array, Array | None]:
    check_reduction(reduction)
    s = _setup(probs, labels, eps, xp)
    xp = s.xp
    _check_range(s.p, xp=xp)
    zero = const(0.0, s.p, xp=xp)
    one = const(1.0, s.p, xp=xp)
    # Lazy backends are not checked: there p is clipped to [0, 1] first.
    p = xp.where(s.p < zero, zero, xp.where(s.p > one, one, s.p))
    y = s.y
    q_hi, q_lo = two_sum(xp.ones_like(p), -p)  # 1 - p, exactly
    low_q = (q_hi < s.eps) | ((q_hi == s.eps) & (q_lo < zero))  # 1 - p < eps
    clip_b = low_q | (q_hi == zero)  # log(max(1 - p, eps)) = log(eps)
    a_hi, a_lo = two_sum(xp.ones_like(y), -y)  # 1 - y
    a_lo = xp.where(xp.isfinite(a_hi), a_lo, zero)
    lo = None
    if s.refine:
        la_hi, la_lo = log_dd(xp.where(p < s.eps, s.eps, p), xp=xp)
        # log(1 - p) = -log1p(p / (1 - p)), the ratio in double-double
        safe_hi = xp.where(clip_b, one, q_hi)
        safe_lo = xp.where(clip_b, zero, q_lo)
        r_hi, r_lo = div_dd(
            xp.where(clip_b, zero, p), xp.zeros_like(p), safe_hi, safe_lo, xp=xp
        )
        lb_hi, lb_lo = log1p_dd(r_hi, r_lo, xp=xp)
        # tiny p (subnormals: their quotient is not a double-double):
        # log1p(-p) = -p - p**2/2 - ..., -p to far below an ulp
        tiny = p < const(2.0**-_SCALE_EXP, p, xp=xp)
        lb_hi = xp.where(tiny, p, lb_hi)
        lb_lo = xp.where(tiny, zero, lb_lo)
        le_hi, le_lo = log_dd(s.eps, xp=xp)
        lb_hi = xp.where(clip_b, le_hi, -lb_hi)
        lb_lo = xp.where(clip_b, le_lo, -lb_lo)
        t1_hi, t1_lo = mul_guarded(y, xp.zeros_like(y), la_hi, la_lo, xp=xp)
        t2_hi, t2_lo = mul_guarded(a_hi, a_lo, lb_hi, lb_lo, xp=xp)
        loss, lo = add_guarded(t1_hi, t1_lo, t2_hi, t2_lo, xp=xp)
        loss, lo = zero - loss, zero - lo
    else:
        la = xp.log(xp.where(p < s.eps, s.eps, p))
        lb = xp.where(clip_b, xp.log(s.eps), xp.log1p(-xp.where(clip_b, zero, p)))
        t1 = xp.where(y == zero, zero, y * la)
        t2 = xp.where(a_hi == zero, zero, a_hi * lb)
        loss = zero - (t1 + t2)
    value = reduce(loss, reduction, out_dtype=s.out_dtype, lo=lo, xp=xp)
    if not want_grad:
        return value, None
    # d/dp = -y / p (where eps <= p) + (1 - y) / (1 - p) (where eps <= 1 - p)
    inside = (s.p >= zero) & (s.p <= one)
    on1 = inside & (p >= s.eps) & (y != zero)
    on2 = inside & ~low_q & (a_hi != zero)
    inf = const(math.inf, p, xp=xp)
    g1 = xp.where(p == zero, -inf, -y / xp.where(on1 & (p != zero), p, one))
    q = q_hi + q_lo
    g2 = xp.where(q == zero, inf, (a_hi + a_lo) / xp.where(on2 & (q != zero), q, one))
    g = xp.where(on1, g1, zero) + xp.where(on2, g2, zero)
    return value, _grad_out(g, float(math.prod(p.shape)), s, reduction, xp=xp)


def binary_cross_entropy(
    probs: Any,
    labels: Any,
    /,
    *,
    eps: float | None = None,
    reduction: str = "none",
    xp: ArrayNamespace | None = None,
) -> Array:
    r"""Elementwise binary cross entropy of labels and probabilities.

    .. math:: \ell = -\bigl(y \max(\log p, \log\varepsilon)
              + (1 - y) \max(\operatorname{log1p}(-p), \log\varepsilon)\bigr)

    with ``0 log 0 = 0``: a label of exactly 1 (0) ignores ``log(1 - p)``
    (``log p``), even where it is ``-inf``.

    Parameters
    ----------
    probs : array_like
        Probabilities in [0, 1], of a real floating dtype.
    labels : array_like
        0/1 or soft labels of the shape of `probs`.
    eps : float, optional
        The floor of ``p`` and ``1 - p`` inside the logs, in [0, 1), rounded
        to the dtype of `probs`. Default: None, the smallest normal number of
        that dtype.
    reduction : {"none", "mean", "sum"}, optional
        ``"none"`` (the default) returns the elementwise loss; ``"mean"``
        averages over all elements.
    xp : array_namespace, optional
        The namespace of `probs`. Default: inferred.

    Returns
    -------
    array
        The loss, of the shape of `probs` (``"none"``) or 0-d; float32 for
        float16/bfloat16 probabilities, else their dtype.

    Raises
    ------
    TypeError
        If `probs` is not of a real floating dtype, or `labels` is complex.
    ValueError
        If the shapes differ (both are named), `eps` is outside [0, 1),
        `reduction` is unknown, or (on eager backends: NumPy, PyTorch, JAX
        outside ``jit``, array-api-strict) a probability is outside [0, 1];
        the message gives its value and position.

    See Also
    --------
    sigmoid_cross_entropy : the same loss from logits, exact and unclipped.
    categorical_cross_entropy : several classes.

    Notes
    -----
    torch's ``binary_cross_entropy`` raises for probabilities outside
    [0, 1] too, and bounds each log below by -100 instead of
    ``log(eps)``: for ``p < e**-100`` (and ``y > 0``) the two differ. Under
    ``jax.jit`` or Dask the values are not inspected: a probability outside
    [0, 1] is clipped to it there. Within 0.51 ulp (float32) and 1 ulp
    (float64) of the exact value for labels in [0, 1]: ``log1p(-p)`` is
    taken without forming a rounded ``1 - p``.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit._prob_losses import binary_cross_entropy
    >>> p = np.asarray([1e-20, 0.5, 1.0])
    >>> y = np.asarray([0.0, 1.0, 1.0])
    >>> binary_cross_entropy(p, y)  # -log1p(-1e-20) = 1e-20, not 0
    array([1.00000000e-20, 6.93147181e-01, 0.00000000e+00])
    """
    value, _ = _bce(probs, labels, eps, reduction, False, xp)
    return value


def _grad_binary_cross_entropy(
    probs: Any,
    labels: Any,
    /,
    *,
    eps: float | None = None,
    reduction: str = "none",
    xp: ArrayNamespace | None = None,
) -> tuple[Array, Array]:
    r"""`binary_cross_entropy` and its gradient with respect to `probs`.

    .. math:: \frac{\partial \ell}{\partial p} = -\frac{y}{p}
              + \frac{1 - y}{1 - p}

    each term where its log is above the floor (``p >= eps``, respectively
    ``1 - p >= eps``), else 0. The gradient of ``loss.sum()`` (of the
    reduced value for ``"mean"`` and ``"sum"``), in the dtype of `probs`.
    """
    value, g = _bce(probs, labels, eps, reduction, True, xp)
    assert g is not None
    return value, g
