r"""Sigmoid (multi-label) losses from logits: cross entropy and focal loss.

Both losses are built from the two softplus values of each logit,

.. math:: s_+ = \operatorname{softplus}(x) = -\log(1 - \sigma(x)), \qquad
          s_- = \operatorname{softplus}(-x) = -\log\sigma(x),

``s_± = max(±x, 0) + log1p(exp(-|x|))``, which share their ``log1p`` term.
The binary cross entropy with a positive weight ``w`` is

.. math:: \ell = (1 - y)\, s_+ + w\, y\, s_-

which is the textbook ``(1 - y) x + (1 + (w - 1) y) s_-`` (torch) rewritten
with ``s_+ = x + s_-``: for labels in [0, 1] and ``w >= 0`` both terms are
non-negative, so nothing cancels, for hard and for soft labels alike.
float32 and narrower logits are computed in float64 and rounded once;
float64 logits in double-double (``_dd``).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, NamedTuple

from array_api_compat import device

from . import _kernels
from ._dd import add_dd, exp_dd, fast_two_sum, log1p_dd, mul_dd
from ._helpers import (
    _broadcast_shapes,
    as_array,
    as_floating,
    const,
    is_eager,
    namespace,
    round_to,
    two_sum,
    work_dtype,
)
from ._reduction import (
    check_label_smoothing,
    check_nonnegative,
    check_reduction,
    check_shape,
    loss_dtype,
    reduce,
)
from ._typing import Array, ArrayNamespace, DType

__all__ = ["sigmoid_cross_entropy", "sigmoid_focal_loss"]

# Products in double-double need operands below 2**995 (Veltkamp's split).
_DD_SAFE = 2.0**990

DD = tuple[Array, Array]


# ------------------------------------------------------------------ plumbing


class _Setup(NamedTuple):
    x: Array  # logits, work dtype
    y: Array  # labels, work dtype
    in_dtype: DType  # the logits' dtype: the gradient's dtype
    out_dtype: DType  # the loss's dtype
    refine: bool  # float64 loss: double-double
    xp: ArrayNamespace


def labels_like(labels: Any, like: Array, /, *, xp: ArrayNamespace) -> Array:
    """`labels` as a real array of `xp` on the device of `like`."""
    if isinstance(labels, (int, float, list, tuple)):
        labels = xp.asarray(labels, device=device(like))
    else:
        labels = xp.asarray(as_array(labels, name="labels"), device=device(like))
    if not xp.isdtype(labels.dtype, ("real floating", "integral", "bool")):
        msg = (
            f"`labels` must be real numbers (probabilities); got dtype {labels.dtype}."
        )
        raise TypeError(msg)
    return labels


def _setup(logits: Any, labels: Any, xp: ArrayNamespace | None) -> _Setup:
    x = as_array(logits, name="logits")
    xp = namespace(x, xp=xp)
    x = as_floating(x, name="logits", xp=xp)
    y = labels_like(labels, x, xp=xp)
    check_shape(y, tuple(x.shape), x, what="of the logits")
    in_dtype = x.dtype
    out_dtype = loss_dtype(in_dtype, xp=xp)
    wd = work_dtype(out_dtype, xp=xp)
    x = xp.astype(x, wd) if x.dtype != wd else x
    y = xp.astype(y, wd) if y.dtype != wd else y
    refine = wd == out_dtype and out_dtype == xp.float64
    return _Setup(x, y, in_dtype, out_dtype, refine, xp)


def _dd_const(value: Fraction, like: Array, /, *, xp: ArrayNamespace) -> DD:
    """The double-double nearest to the rational `value`, as two 0-d arrays."""
    hi = float(value)
    return const(hi, like, xp=xp), const(float(value - Fraction(hi)), like, xp=xp)


def _finite_or(value: Array, /, *, xp: ArrayNamespace) -> Array:
    """softplus at ``±inf`` and NaN: ``inf``, ``0``, NaN."""
    zero = const(0.0, value, xp=xp)
    return xp.where(value > zero, value, xp.where(value < zero, zero, value))


class _Softplus(NamedTuple):
    pos: Array  # softplus(x)
    neg: Array  # softplus(-x)
    pos_lo: Array | None  # low parts (double-double), where refined
    neg_lo: Array | None


def _plus(hi: Array, lo: Array, b: Array, /) -> DD:
    """``(hi + lo) + b`` as a double-double."""
    s, e = two_sum(b, hi)
    return fast_two_sum(s, e + lo)


def softplus_pair(x: Array, /, *, refine: bool, xp: ArrayNamespace) -> _Softplus:
    """``softplus(x)`` and ``softplus(-x)``, in double-double where `refine`."""
    zero = const(0.0, x, xp=xp)
    fin = xp.isfinite(x)
    xs = xp.where(fin, x, zero)
    # where, not abs and maximum: autograd through them at x = 0 would take
    # one-sided or split derivatives of the kinks (JAX: abs'(0) = 1).
    up = xs >= zero
    ax = xp.where(up, xs, -xs)
    rp, rn = xp.where(up, xs, zero), xp.where(up, zero, -xs)
    if not refine:
        lg = xp.log1p(xp.exp(-ax))
        pos = xp.where(fin, rp + lg, _finite_or(x, xp=xp))
        neg = xp.where(fin, rn + lg, _finite_or(-x, xp=xp))
        return _Softplus(pos, neg, None, None)
    e_hi, e_lo = exp_dd(-ax, xp.zeros_like(ax), xp=xp)
    l_hi, l_lo = log1p_dd(e_hi, e_lo, xp=xp)
    p_hi, p_lo = _plus(l_hi, l_lo, rp)
    n_hi, n_lo = _plus(l_hi, l_lo, rn)
    return _Softplus(
        xp.where(fin, p_hi, _finite_or(x, xp=xp)),
        xp.where(fin, n_hi, _finite_or(-x, xp=xp)),
        xp.where(fin, p_lo, zero),
        xp.where(fin, n_lo, zero),
    )


def sigmoid_pair(x: Array, /, *, xp: ArrayNamespace) -> tuple[Array, Array]:
    """``sigmoid(x)`` and ``sigmoid(-x)`` without overflow (work dtype)."""
    zero = const(0.0, x, xp=xp)
    one = const(1.0, x, xp=xp)
    e = xp.exp(-xp.abs(xp.where(xp.isnan(x), zero, x)))
    big = one / (one + e)
    small = e * big
    up = x >= zero
    nan = xp.isnan(x)
    pos = xp.where(up, big, small)
    neg = xp.where(up, small, big)
    return xp.where(nan, x, pos), xp.where(nan, x, neg)


def mul_guarded(
    a_hi: Array, a_lo: Array, b_hi: Array, b_lo: Array, /, *, xp: Any
) -> DD:
    """``a * b`` in double-double; plain where an operand is too large or not
    finite; exactly 0 where ``a_hi == 0`` (``0 * inf = 0``: no weight)."""
    zero = const(0.0, a_hi, xp=xp)
    ok = (
        xp.isfinite(a_hi)
        & xp.isfinite(b_hi)
        & (xp.abs(a_hi) < _DD_SAFE)
        & (xp.abs(b_hi) < _DD_SAFE)
    )
    p_hi, p_lo = mul_dd(
        xp.where(ok, a_hi, zero),
        xp.where(ok, a_lo, zero),
        xp.where(ok, b_hi, zero),
        xp.where(ok, b_lo, zero),
        xp=xp,
    )
    nz = a_hi != zero
    plain = xp.where(nz, a_hi * xp.where(nz, b_hi, zero), zero)
    return xp.where(ok, p_hi, plain), xp.where(ok, p_lo, zero)


def add_guarded(
    a_hi: Array, a_lo: Array, b_hi: Array, b_lo: Array, /, *, xp: Any
) -> DD:
    """``a + b`` in double-double; plain where a term is not finite."""
    zero = const(0.0, a_hi, xp=xp)
    ok = xp.isfinite(a_hi) & xp.isfinite(b_hi)
    s_hi, s_lo = add_dd(
        xp.where(ok, a_hi, zero),
        xp.where(ok, a_lo, zero),
        xp.where(ok, b_hi, zero),
        xp.where(ok, b_lo, zero),
        xp=xp,
    )
    return xp.where(ok, s_hi, a_hi + b_hi), xp.where(ok, s_lo, zero)


def _count(x: Array, /) -> float:
    return float(math.prod(x.shape))


def _grad_out(g: Array, s: _Setup, reduction: str, /, *, xp: ArrayNamespace) -> Array:
    """Scale by ``1 / n`` for ``"mean"`` and round to the logits' dtype."""
    if reduction == "mean":
        n = _count(g)
        g = g / const(n if n > 0 else 1.0, g, xp=xp)
    return round_to(g, s.in_dtype, xp=xp)


# ------------------------------------------------------ sigmoid cross entropy


class _Weights(NamedTuple):
    """The (double-double) coefficients ``1 - y`` of ``s_+`` and ``w y`` of ``s_-``."""

    a: Array
    a_lo: Array
    b: Array
    b_lo: Array


def _pos_weight(pos_weight: Any, x: Array, /, *, xp: ArrayNamespace) -> Array | None:
    """`pos_weight` in the work dtype, broadcast to the logits' shape."""
    if pos_weight is None:
        return None
    if isinstance(pos_weight, (int, float)):
        check_nonnegative(pos_weight, name="pos_weight")
        return None if float(pos_weight) == 1.0 else const(float(pos_weight), x, xp=xp)
    w = xp.asarray(as_array(pos_weight, name="pos_weight"), device=device(x))
    if not xp.isdtype(w.dtype, ("real floating", "integral", "bool")):
        msg = f"`pos_weight` must be a real array; got dtype {w.dtype}."
        raise TypeError(msg)
    try:
        shape = _broadcast_shapes(tuple(w.shape), tuple(x.shape))
    except ValueError:
        shape = None
    if shape != tuple(x.shape):
        msg = (
            "`pos_weight` must broadcast to the logits' shape "
            f"{tuple(x.shape)} (one weight per class, on the last axis); "
            f"got shape {tuple(w.shape)}."
        )
        raise ValueError(msg)
    w = xp.astype(w, x.dtype)
    if is_eager(w) and math.prod(w.shape) > 0:
        bad = ~(w >= const(0.0, w, xp=xp)) | ~xp.isfinite(w)
        if bool(xp.any(bad)):
            where = xp.nonzero(bad) if w.ndim else ()
            pos = tuple(int(i[0]) for i in where)
            value = float(w[pos]) if pos else float(w)
            msg = (
                "`pos_weight` must be non-negative and finite; got "
                f"{value} at position {pos if len(pos) != 1 else pos[0]}."
            )
            raise ValueError(msg)
    return xp.broadcast_to(w, tuple(x.shape))


def _bce_weights(
    y: Array, eps: float, pw: Array | None, /, *, refine: bool, xp: ArrayNamespace
) -> _Weights:
    """``1 - y'`` and ``pw y'`` with ``y' = (1 - eps) y + eps / 2``."""
    zero = const(0.0, y, xp=xp)
    one = const(1.0, y, xp=xp)
    if not refine:
        if eps > 0.0:
            a = const(1.0 - eps / 2, y, xp=xp) - y * const(1.0 - eps, y, xp=xp)
            y = y * const(1.0 - eps, y, xp=xp) + const(eps / 2, y, xp=xp)
        else:
            a = one - y
        b = y if pw is None else pw * y
        return _Weights(a, zero, b, zero)
    if eps > 0.0:
        c_hi, c_lo = _dd_const(1 - Fraction(eps), y, xp=xp)
        h_hi, h_lo = _dd_const(Fraction(eps) / 2, y, xp=xp)
        k_hi, k_lo = _dd_const(1 - Fraction(eps) / 2, y, xp=xp)
        ys_hi, ys_lo = mul_guarded(y, xp.zeros_like(y), c_hi + zero, c_lo + zero, xp=xp)
        y_hi, y_lo = add_guarded(ys_hi, ys_lo, h_hi + zero, h_lo + zero, xp=xp)
        a_hi, a_lo = add_guarded(k_hi + zero, k_lo + zero, -ys_hi, -ys_lo, xp=xp)
    else:
        y_hi, y_lo = y, xp.zeros_like(y)
        a_hi, a_lo = two_sum(xp.broadcast_to(one, y.shape), -y)
        fin = xp.isfinite(a_hi)
        a_lo = xp.where(fin, a_lo, zero)
    if pw is None:
        return _Weights(a_hi, a_lo, y_hi, y_lo)
    b_hi, b_lo = mul_guarded(
        xp.broadcast_to(pw, y.shape), xp.zeros_like(y), y_hi, y_lo, xp=xp
    )
    return _Weights(a_hi, a_lo, b_hi, b_lo)


def _bce(
    logits: Any,
    labels: Any,
    pos_weight: Any,
    label_smoothing: float,
    reduction: str,
    want_grad: bool,
    xp: ArrayNamespace | None,
) -> tuple[Array, Array | None]:
    check_reduction(reduction)
    eps = check_label_smoothing(label_smoothing)
    s = _setup(logits, labels, xp)
    xp = s.xp
    x, y = s.x, s.y
    pw = _pos_weight(pos_weight, x, xp=xp)
    w = _bce_weights(y, eps, pw, refine=s.refine, xp=xp)
    sp = softplus_pair(x, refine=s.refine, xp=xp)
    zero = const(0.0, x, xp=xp)
    lo = None
    if sp.pos_lo is None or sp.neg_lo is None:
        t1 = xp.where(w.a == zero, zero, w.a * sp.pos)
        t2 = xp.where(w.b == zero, zero, w.b * sp.neg)
        loss = t1 + t2
    else:
        t1_hi, t1_lo = mul_guarded(w.a, w.a_lo, sp.pos, sp.pos_lo, xp=xp)
        t2_hi, t2_lo = mul_guarded(w.b, w.b_lo, sp.neg, sp.neg_lo, xp=xp)
        loss, lo = add_guarded(t1_hi, t1_lo, t2_hi, t2_lo, xp=xp)
    value = reduce(loss, reduction, out_dtype=s.out_dtype, lo=lo, xp=xp)
    if not want_grad:
        return value, None
    # d/dx: (1 - y) sigmoid(x) - w y sigmoid(-x); each term alone has no
    # cancellation (for y = 1, w = 1 this is -sigmoid(-x), not sigmoid(x) - 1).
    sig_pos, sig_neg = sigmoid_pair(x, xp=xp)
    a = w.a + w.a_lo
    b = w.b + w.b_lo
    g = xp.where(a == zero, zero, a * sig_pos) - xp.where(b == zero, zero, b * sig_neg)
    return value, _grad_out(g, s, reduction, xp=xp)


def sigmoid_cross_entropy(
    logits: Any,
    labels: Any,
    /,
    *,
    pos_weight: Any = None,
    label_smoothing: float = 0.0,
    reduction: str = "none",
    xp: ArrayNamespace | None = None,
) -> Array:
    r"""Elementwise binary cross entropy of `labels` and ``sigmoid(logits)``.

    .. math:: \ell = -w\, y \log\sigma(x) - (1 - y)\log(1 - \sigma(x))
              = (1 - y)\operatorname{softplus}(x) + w\, y
              \operatorname{softplus}(-x)

    The same as ``tf.nn.sigmoid_cross_entropy_with_logits`` and torch's
    ``BCEWithLogitsLoss`` (with ``pos_weight`` ``w``: torch's
    ``(1 - y) x + (1 + (w - 1) y) softplus(-x)``), exact. Each element is an
    independent two-class problem (multi-label classification).

    Parameters
    ----------
    logits : array_like
        Logits of any shape. Integer input is promoted to the default float
        dtype.
    labels : array_like
        Targets of the shape of `logits`: 0/1 or soft labels (probabilities).
        Integer and boolean labels are accepted.
    pos_weight : float or array_like, optional
        ``w >= 0``, the weight of the positive term; an array broadcasts
        against `logits` as in torch (one weight per class on the last axis,
        shape ``(C,)``) and must not change the logits' shape. Default:
        None (``w = 1``).
    label_smoothing : float, optional
        ``eps`` in [0, 1]: labels become ``y (1 - eps) + eps / 2`` (towards
        0.5, as in Keras and optax). Default: 0.
    reduction : {"none", "mean", "sum"}, optional
        ``"none"`` (the default) returns the elementwise loss; ``"mean"``
        averages over all elements.
    xp : array_namespace, optional
        The namespace of `logits`. Default: inferred.

    Returns
    -------
    array
        The loss, of the shape of `logits` (``"none"``) or 0-d; float32 for
        float16/bfloat16 logits, else the logits' dtype.

    Raises
    ------
    ValueError
        If the shapes of `labels` and `logits` differ (both are named),
        `pos_weight` does not broadcast to the logits' shape or is negative
        (the values only on eager backends), `label_smoothing` is outside
        [0, 1], or `reduction` is unknown.
    TypeError
        If `logits` or `labels` is complex.

    See Also
    --------
    sigmoid_focal_loss : down-weights the easy examples.
    logitkit.grad.sigmoid_cross_entropy : the loss and its gradient.

    Notes
    -----
    Both terms are non-negative for labels in [0, 1] and ``w >= 0``: the loss
    is computed without cancellation for hard *and* soft labels, within 0.51
    ulp (float32) and 1 ulp (float64) of the exact value for any label in
    [0, 1], smoothed or not (the smoothed label is formed exactly, in
    double-double, for float64). Labels outside [0, 1] use the same formula,
    but a negative term can cancel the other there. A label of exactly 0 or
    1 leaves the other term out, also where it is infinite: ``x = +inf`` with
    ``y = 1`` is a loss of 0. The reduced loss is within 2 ulp of the exact
    mean or sum.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit._sigmoid_losses import sigmoid_cross_entropy
    >>> x = np.asarray([40.0, -3.0, 0.0])
    >>> y = np.asarray([1.0, 0.0, 0.5])
    >>> sigmoid_cross_entropy(x, y)  # -log(sigmoid(40)) = 4.2e-18, not 0
    array([4.24835426e-18, 4.85873516e-02, 6.93147181e-01])
    >>> float(sigmoid_cross_entropy(x, y, pos_weight=3.0, reduction="sum"))
    1.4348817127
    """
    # --- fast path: compiled kernels for NumPy float32/float64 (``_kernels``) ---
    if (
        pos_weight is None
        and type(label_smoothing) in (int, float)
        and label_smoothing == 0.0
        and xp is None
    ):
        fast = _kernels.sigmoid_cross_entropy(logits, labels, reduction)
        if fast is not None:
            return fast
    # --- end of fast path ---
    value, _ = _bce(logits, labels, pos_weight, label_smoothing, reduction, False, xp)
    return value


def _grad_sigmoid_cross_entropy(
    logits: Any,
    labels: Any,
    /,
    *,
    pos_weight: Any = None,
    label_smoothing: float = 0.0,
    reduction: str = "none",
    xp: ArrayNamespace | None = None,
) -> tuple[Array, Array]:
    r"""`sigmoid_cross_entropy` and its gradient with respect to `logits`.

    .. math:: \frac{\partial \ell}{\partial x} = (1 - y)\,\sigma(x)
              - w\, y\, \sigma(-x)

    The gradient of ``loss.sum()`` (of the reduced value for ``"mean"`` and
    ``"sum"``), in the logits' dtype.
    """
    value, g = _bce(logits, labels, pos_weight, label_smoothing, reduction, True, xp)
    assert g is not None
    return value, g


# --------------------------------------------------------------- focal loss


def _check_alpha(alpha: float | None, /) -> float | None:
    if alpha is None:
        return None
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        msg = f"`alpha` must be a number in [0, 1] or None; got {alpha!r}."
        raise TypeError(msg) from None
    if not 0.0 <= a <= 1.0:
        msg = (
            f"`alpha` must be in [0, 1], or None for no weighting (torchvision's "
            f"alpha < 0); got {alpha!r}."
        )
        raise ValueError(msg)
    return a


class _Focal(NamedTuple):
    hard: Array  # y is 0 or 1
    soft: Array  # 0 < y < 1
    up: Array  # y == 1
    u: Array  # the cross entropy of a hard label: s_- for y = 1, s_+ for y = 0
    v: Array  # -log(1 - p_t) of a hard label: s_+ for y = 1, s_- for y = 0
    w: Array  # alpha_t of a hard label
    ys: Array  # y where soft, else 0.5
    yo: Array  # y where neither hard nor soft (out of range, NaN), else 0.5
    at_s: Array  # alpha_t of ys
    at_o: Array  # alpha_t of yo


def _focal_parts(
    y: Array, sp: _Softplus, alpha: float | None, /, *, xp: ArrayNamespace
) -> _Focal:
    zero = const(0.0, y, xp=xp)
    one = const(1.0, y, xp=xp)
    half = const(0.5, y, xp=xp)
    up = y == one
    hard = up | (y == zero)
    soft = (y > zero) & (y < one)
    other = ~(hard | soft)
    u = xp.where(up, sp.neg, sp.pos)
    v = xp.where(up, sp.pos, sp.neg)
    ys = xp.where(soft, y, half)
    yo = xp.where(other, y, half)
    if alpha is None:
        w = xp.ones_like(y)
        at_s, at_o = w, w
    else:
        al = const(alpha, y, xp=xp)
        w = xp.where(up, al, const(1.0 - alpha, y, xp=xp))
        at_s = al * ys + (one - al) * (one - ys)
        at_o = al * yo + (one - al) * (one - yo)
    return _Focal(hard, soft, up, u, v, w, ys, yo, at_s, at_o)


def _logaddexp(a: Array, b: Array, /, *, xp: ArrayNamespace) -> Array:
    """``log(exp(a) + exp(b))`` for ``a, b`` not both ``-inf``."""
    hi = xp.maximum(a, b)
    return hi + xp.log1p(xp.exp(xp.minimum(a, b) - hi))


def _focal_soft(
    x: Array,
    sp: _Softplus,
    f: _Focal,
    gamma: float,
    /,
    *,
    want_grad: bool,
    xp: ArrayNamespace,
) -> tuple[Array, Array, Array | None, Array | None]:
    """Loss of soft labels (log space) and of other labels (torchvision's
    formula literally); with their gradients where asked."""
    one = const(1.0, x, xp=xp)
    zero = const(0.0, x, xp=xp)
    gam = const(gamma, x, xp=xp)
    ys, yo = f.ys, f.yo
    ce_s = (one - ys) * sp.pos + ys * sp.neg
    # log(1 - p_t) = log((1 - y) sigmoid(x) + y sigmoid(-x))
    logm = _logaddexp(xp.log1p(-ys) - sp.neg, xp.log(ys) - sp.pos, xp=xp)
    big_m = xp.exp(gam * logm)
    loss_s = f.at_s * ce_s * big_m
    sig_pos, sig_neg = sigmoid_pair(x, xp=xp)
    ce_o = (one - yo) * sp.pos + yo * sp.neg
    m_o = (one - yo) * sig_pos + yo * sig_neg
    big_mo = xp.pow(m_o, gam) if gamma != 0.0 else xp.ones_like(m_o)
    loss_o = f.at_o * ce_o * big_mo
    if not want_grad:
        return loss_s, loss_o, None, None
    # d ce / dx = sigmoid(x) - y; d m / dx = sigmoid(x) sigmoid(-x) (1 - 2 y)
    dce_s = (one - ys) * sig_pos - ys * sig_neg
    g_s = dce_s * big_m
    dce_o = (one - yo) * sig_pos - yo * sig_neg
    g_o = dce_o * big_mo
    if gamma != 0.0:
        ratio = xp.exp(-sp.pos - sp.neg - logm)  # sigmoid(x) sigmoid(-x) / m
        g_s = g_s + gam * ce_s * big_m * (one - 2.0 * ys) * ratio
        nz = m_o != zero
        ratio_o = xp.where(nz, sig_pos * sig_neg / xp.where(nz, m_o, one), zero)
        g_o = g_o + gam * ce_o * big_mo * (one - 2.0 * yo) * ratio_o
    return loss_s, loss_o, f.at_s * g_s, f.at_o * g_o


def _focal_hard_dd(
    sp: _Softplus, f: _Focal, gamma: float, alpha: float | None, /, *, xp: Any
) -> DD:
    """``alpha_t u exp(-gamma v)`` of hard labels in double-double."""
    assert sp.pos_lo is not None
    assert sp.neg_lo is not None
    zero = const(0.0, f.u, xp=xp)
    u_lo = xp.where(f.up, sp.neg_lo, sp.pos_lo)
    if gamma == 0.0:
        p_hi, p_lo = f.u, u_lo
    else:
        v_lo = xp.where(f.up, sp.pos_lo, sp.neg_lo)
        # gamma v beyond 800: exp(-gamma v) is 0 (below 2**-1074)
        limit = min(_DD_SAFE, 800.0 / gamma)
        ok = f.v <= limit
        v_hi = xp.where(ok, f.v, zero)
        v_lo = xp.where(ok, v_lo, zero)
        g_hi, g_lo = mul_guarded(
            const(-gamma, f.u, xp=xp) + zero, zero, v_hi, v_lo, xp=xp
        )
        e_hi, e_lo = exp_dd(g_hi, g_lo, xp=xp)
        e_hi = xp.where(ok, e_hi, zero)
        e_lo = xp.where(ok, e_lo, zero)
        p_hi, p_lo = mul_guarded(e_hi, e_lo, f.u, u_lo, xp=xp)
    if alpha is None:
        return p_hi, p_lo
    a_hi, a_lo = _dd_const(Fraction(alpha), zero, xp=xp)
    b_hi, b_lo = _dd_const(1 - Fraction(alpha), zero, xp=xp)
    w_hi = xp.where(f.up, a_hi, b_hi)
    w_lo = xp.where(f.up, a_lo, b_lo)
    return mul_guarded(w_hi, w_lo, p_hi, p_lo, xp=xp)


def _focal(
    logits: Any,
    labels: Any,
    alpha: float | None,
    gamma: float,
    reduction: str,
    want_grad: bool,
    xp: ArrayNamespace | None,
) -> tuple[Array, Array | None]:
    check_reduction(reduction)
    gamma = check_nonnegative(gamma, name="gamma")
    alpha = _check_alpha(alpha)
    s = _setup(logits, labels, xp)
    xp = s.xp
    x, y = s.x, s.y
    zero = const(0.0, x, xp=xp)
    sp = softplus_pair(x, refine=False, xp=xp)
    f = _focal_parts(y, sp, alpha, xp=xp)
    gam = const(gamma, x, xp=xp)
    # Hard labels, log space: (1 - p_t)**gamma = exp(-gamma v).
    mod = xp.ones_like(x) if gamma == 0.0 else xp.exp(-gam * f.v)
    loss_h = f.w * f.u * mod
    loss_s, loss_o, g_s, g_o = _focal_soft(x, sp, f, gamma, want_grad=want_grad, xp=xp)
    loss = xp.where(f.hard, loss_h, xp.where(f.soft, loss_s, loss_o))
    lo = None
    if s.refine:
        spd = softplus_pair(x, refine=True, xp=xp)
        fd = _focal_parts(y, spd, alpha, xp=xp)
        h_hi, h_lo = _focal_hard_dd(spd, fd, gamma, alpha, xp=xp)
        use = f.hard & xp.isfinite(x)
        loss = xp.where(use, h_hi, loss)
        lo = xp.where(use, h_lo, zero)
    value = reduce(loss, reduction, out_dtype=s.out_dtype, lo=lo, xp=xp)
    if not want_grad:
        return value, None
    assert g_s is not None
    assert g_o is not None
    # Hard labels: y = 0: (1 - a) e^{-g s_-} (sigmoid(x) + g sigmoid(-x) s_+),
    #              y = 1: -a e^{-g s_+} (sigmoid(-x) + g sigmoid(x) s_-).
    sig_pos, sig_neg = sigmoid_pair(x, xp=xp)
    s_u = xp.where(f.up, sig_neg, sig_pos)
    s_v = xp.where(f.up, sig_pos, sig_neg)
    inner = s_u
    if gamma != 0.0:
        inner = inner + xp.where(s_v == zero, zero, gam * s_v * f.u)
    g_h = f.w * mod * inner
    g_h = xp.where(f.up, -g_h, g_h)
    g = xp.where(f.hard, g_h, xp.where(f.soft, g_s, g_o))
    return value, _grad_out(g, s, reduction, xp=xp)


def sigmoid_focal_loss(
    logits: Any,
    labels: Any,
    /,
    *,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
    xp: ArrayNamespace | None = None,
) -> Array:
    r"""The focal loss of RetinaNet (torchvision's ``sigmoid_focal_loss``), exact.

    .. math:: \ell = \alpha_t\,(1 - p_t)^\gamma\,
              \operatorname{BCE}(x, y), \qquad
              p_t = p y + (1 - p)(1 - y), \quad p = \sigma(x),

    with ``alpha_t = alpha y + (1 - alpha)(1 - y)``. For a hard label the
    modulating factor is taken in log space,
    ``(1 - p_t)^gamma = exp(-gamma softplus(±x))`` (``+x`` for ``y = 1``), so it
    never underflows to a 0 that would be raised to a power.

    Parameters
    ----------
    logits : array_like
        Logits of any shape. Integer input is promoted to the default float
        dtype.
    labels : array_like
        Targets of the shape of `logits`, 0/1 (or soft).
    alpha : float or None, optional
        The weight of the positive class, in [0, 1]; ``None`` turns the
        weighting off (torchvision uses ``alpha < 0`` for that). Default:
        0.25.
    gamma : float, optional
        The focusing exponent, ``>= 0``; ``gamma = 0`` is ``alpha_t`` times
        the binary cross entropy. Default: 2.
    reduction : {"none", "mean", "sum"}, optional
        ``"none"`` (the default) returns the elementwise loss; ``"mean"``
        averages over all elements.
    xp : array_namespace, optional
        The namespace of `logits`. Default: inferred.

    Returns
    -------
    array
        The loss, of the shape of `logits` (``"none"``) or 0-d; float32 for
        float16/bfloat16 logits, else the logits' dtype.

    Raises
    ------
    ValueError
        If the shapes of `labels` and `logits` differ, `alpha` is outside
        [0, 1], `gamma` is negative or not finite, or `reduction` is unknown.
    TypeError
        If `logits` or `labels` is complex.

    See Also
    --------
    sigmoid_cross_entropy : the loss without the modulating factor.
    logitkit.grad.sigmoid_focal_loss : the loss and its gradient.

    Notes
    -----
    Hard (0/1) labels are within 0.51 ulp (float32) and 1 ulp (float64) of
    the exact value (float64 in double-double: ``exp(-gamma softplus(x))``
    would otherwise lose ``gamma |x|`` ulps). Soft labels in (0, 1) use
    ``log(1 - p_t) = logaddexp(log1p(-y) - softplus(-x), log(y) -
    softplus(x))``: exact in float32, and in float64 within about
    ``(2 + gamma |log(1 - p_t)|)`` ulp. Labels outside [0, 1] follow
    torchvision's formula literally (``(1 - p_t)**gamma`` of a negative base is
    NaN unless gamma is an integer, as in torch).

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit._sigmoid_losses import sigmoid_focal_loss
    >>> x = np.asarray([3.0, -3.0, 50.0])
    >>> y = np.asarray([1.0, 1.0, 1.0])
    >>> sigmoid_focal_loss(x, y)  # the easy example (x = 50) counts for ~nothing
    array([2.73208311e-05, 6.91570110e-01, 1.79377399e-66])
    """
    value, _ = _focal(logits, labels, alpha, gamma, reduction, False, xp)
    return value


def _grad_sigmoid_focal_loss(
    logits: Any,
    labels: Any,
    /,
    *,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
    xp: ArrayNamespace | None = None,
) -> tuple[Array, Array]:
    r"""`sigmoid_focal_loss` and its gradient with respect to `logits`.

    For a hard label (``y = 1``; ``y = 0`` is the mirror image, ``x -> -x``
    and ``alpha -> 1 - alpha``, with the sign flipped)

    .. math:: \frac{\partial \ell}{\partial x} = -\alpha\,
              e^{-\gamma \operatorname{softplus}(x)}
              \bigl(\sigma(-x) + \gamma\,\sigma(x)
              \operatorname{softplus}(-x)\bigr),

    a product of non-negative terms (no cancellation). The gradient of
    ``loss.sum()`` (of the reduced value for ``"mean"`` and ``"sum"``), in
    the logits' dtype.
    """
    value, g = _focal(logits, labels, alpha, gamma, reduction, True, xp)
    assert g is not None
    return value, g
