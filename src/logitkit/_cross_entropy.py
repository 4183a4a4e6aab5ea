r"""Softmax cross entropy from logits: dense and sparse (integer) labels.

Both losses are one computation: the cross entropy of dense per-class weights
``y`` (one-hot, soft, smoothed or class-weighted labels) against the logits,

.. math:: \ell = \sum_j y_j \bigl(L - d_j\bigr), \qquad d_j = x_j - m,
          \quad L = \operatorname{log1p}\Bigl(\sum_{j \ne k} e^{d_j}\Bigr),

with ``m = x_k`` the row maximum (:func:`logitkit._softmax._row_stats`).
``L >= 0`` and ``-d_j >= 0``: every term is a sum of two non-negative numbers,
so the loss of a confident right answer (``L = 1e-13``, ``d_y = 0``) keeps all
its digits where ``logsumexp(x) - x_y`` returns 0. float32 and narrower
logits are computed in float64 and rounded once; float64 in double-double.

The gradient with respect to the logits is ``Y p_j - y_j`` with
``Y = sum_j y_j``; for the argmax ``k`` it is computed as
``((Y - y_k) - y_k S) / (1 + S)``, which has no cancellation when the label
is the (confident) top class: ``p_y - 1 = -S / (1 + S)``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from array_api_compat import device

from . import _kernels
from ._dd import add_dd, mul_dd, sum_dd
from ._helpers import (
    as_array,
    as_floating,
    as_mask,
    check_temperature,
    const,
    flatten_axes,
    is_eager,
    namespace,
    normalize_axis,
    round_to,
    unflatten_axes,
    work_dtype,
)
from ._one_hot import check_labels
from ._reduction import (
    check_label_smoothing,
    check_nonnegative,
    check_reduction,
    check_shape,
    loss_dtype,
    reduce,
)
from ._softmax import _row_stats, _RowStats
from ._typing import Array, ArrayNamespace, Axis, DType

__all__ = ["softmax_cross_entropy", "sparse_softmax_cross_entropy"]

# Products in double-double need operands below 2**995 (Veltkamp's split).
_DD_SAFE = 2.0**990


class _Rows(NamedTuple):
    """Per-row loss (double-double where refined) and what the gradient needs."""

    loss: Array  # (..., 1), work dtype
    loss_lo: Array | None
    st: _RowStats
    lse: Array  # (..., 1), logsumexp of the row


def _safe_mul(
    a: Array, b_hi: Array, b_lo: Array, /, *, xp: ArrayNamespace
) -> tuple[Array, Array]:
    """``a * (b_hi + b_lo)`` in double-double where the operands allow it."""
    zero = const(0.0, a, xp=xp)
    ok = (xp.abs(a) < _DD_SAFE) & (xp.abs(b_hi) < _DD_SAFE)
    p_hi, p_lo = mul_dd(
        xp.where(ok, a, zero),
        xp.zeros_like(a),
        xp.where(ok, b_hi, zero),
        xp.where(ok, b_lo, zero),
        xp=xp,
    )
    return xp.where(ok, p_hi, a * b_hi), xp.where(ok, p_lo, zero)


def _rows(
    x: Array, y: Array, zcoef: Array | None, /, *, refine: bool, xp: ArrayNamespace
) -> _Rows:
    r"""``sum_j y_j (L - d_j) + zcoef * lse**2`` for each row of `x` (class axis last)."""
    st = _row_stats(x, refine=refine, xp=xp)
    zero = const(0.0, x, xp=xp)
    big, small = st.log1p_s(xp)
    m = st.m
    nz = y != zero  # 0 * log 0 = 0: a class with no weight adds nothing
    if not refine or small is None or st.dl is None:
        t = xp.where(nz, big - st.d, zero)
        loss = xp.sum(y * t, axis=-1, keepdims=True)
        lse = m + big
        if zcoef is not None:
            loss = loss + xp.where(zcoef != zero, zcoef * (lse * lse), zero)
        return _Rows(loss, None, st, lse)
    fin = xp.isfinite(st.d)
    t_hi, t_lo = add_dd(
        xp.broadcast_to(big, st.d.shape),
        xp.broadcast_to(small, st.d.shape),
        xp.where(fin, -st.d, zero),
        xp.where(fin, -st.dl, zero),
        xp=xp,
    )
    t_hi = xp.where(nz, xp.where(fin, t_hi, big - st.d), zero)
    t_lo = xp.where(nz & fin, t_lo, zero)
    p_hi, p_lo = _safe_mul(y, t_hi, t_lo, xp=xp)
    p_hi = xp.where(nz, p_hi, zero)
    p_lo = xp.where(nz & xp.isfinite(p_hi), p_lo, zero)
    loss, loss_lo = sum_dd(p_hi, lo=p_lo, xp=xp)
    m_fin = xp.isfinite(m)
    m_safe = xp.where(m_fin, m, zero)
    l_hi, l_lo = add_dd(m_safe, xp.zeros_like(m), big, small, xp=xp)
    lse = xp.where(m_fin, l_hi, m + big)
    if zcoef is not None:
        lse_lo = xp.where(m_fin, l_lo, zero)
        ok = xp.abs(lse) < _DD_SAFE**0.5
        sq_hi, sq_lo = mul_dd(
            xp.where(ok, lse, zero),
            xp.where(ok, lse_lo, zero),
            xp.where(ok, lse, zero),
            xp.where(ok, lse_lo, zero),
            xp=xp,
        )
        sq_hi = xp.where(ok, sq_hi, lse * lse)
        sq_lo = xp.where(ok, sq_lo, zero)
        z_hi, z_lo = _safe_mul(zcoef, sq_hi, sq_lo, xp=xp)
        on = (zcoef != zero) & xp.isfinite(z_hi) & xp.isfinite(loss)
        s_hi, s_lo = add_dd(
            xp.where(on, loss, zero),
            xp.where(on, loss_lo, zero),
            xp.where(on, z_hi, zero),
            xp.where(on, z_lo, zero),
            xp=xp,
        )
        plain = loss + xp.where(zcoef != zero, z_hi, zero)
        loss = xp.where(on, s_hi, plain)
        loss_lo = xp.where(on, s_lo, xp.where(zcoef != zero, zero, loss_lo))
    return _Rows(loss, loss_lo, st, lse)


def _row_grad(
    r: _Rows, y: Array, zcoef: Array | None, /, *, xp: ArrayNamespace
) -> Array:
    """``d loss / d x`` of each row: ``Y p - y (+ 2 zcoef lse p)``."""
    st = r.st
    zero = const(0.0, st.e, xp=xp)
    one = const(1.0, st.e, xp=xp)
    den = one + st.s
    p = st.e / den
    y_total = xp.sum(y, axis=-1, keepdims=True)
    y_rest = xp.sum(xp.where(st.onehot, zero, y), axis=-1, keepdims=True)
    y_k = xp.sum(xp.where(st.onehot, y, zero), axis=-1, keepdims=True)
    g_top = (y_rest - y_k * st.s) / den  # Y p_k - y_k without cancellation
    g = xp.where(st.onehot, g_top, y_total * p - y)
    if zcoef is not None:
        lse = xp.where(xp.isfinite(r.lse), r.lse, zero)
        g = g + (2.0 * zcoef) * lse * p
    # A row with no valid entry has no gradient (and no NaN); a row with a NaN
    # has a NaN gradient throughout (its ``d`` is NaN throughout), even with a
    # single class, where ``g_top`` does not see it.
    g = xp.where(st.m == -xp.inf, zero, g)
    return xp.where(xp.isnan(st.d), st.d, g)


def _labels_array(labels: Any, like: Array, /, *, xp: ArrayNamespace) -> Array:
    if isinstance(labels, (int, float, list, tuple)):
        return xp.asarray(labels, device=device(like))
    labels = as_array(labels, name="labels")
    return xp.asarray(labels, device=device(like))


def _out_dtypes(x: Array, /, *, xp: ArrayNamespace) -> tuple[DType, DType, bool]:
    out = loss_dtype(x.dtype, xp=xp)
    wd = work_dtype(out, xp=xp)
    return out, wd, wd == out and out == xp.float64


def _grad_to_input(
    g: Array,
    scale: Array | None,
    axes: tuple[int, ...],
    moved_shape: tuple[int, ...],
    dtype: DType,
    /,
    *,
    xp: ArrayNamespace,
) -> Array:
    if scale is not None:
        g = g * scale
    g = unflatten_axes(g, axes, moved_shape, xp=xp)
    return round_to(g, dtype, xp=xp)


def _mean_scale(reduction: str, count: Array, /, *, xp: ArrayNamespace) -> Array | None:
    """The factor of the per-example gradients under `reduction`."""
    if reduction != "mean":
        return None
    zero = const(0.0, count, xp=xp)
    positive = count > zero
    return xp.where(positive, 1.0 / xp.where(positive, count, zero + 1.0), zero)


def _class_mask(
    where: Any, x: Array, axes: tuple[int, ...], /, *, xp: ArrayNamespace
) -> Array:
    """`where` as a boolean mask of the shape of `x`.

    A mask of the batch shape (the logits' shape without the class axes)
    selects whole examples, as in optax: it is expanded along the class axes.
    """
    w = as_array(where, name="where")
    if w.ndim == x.ndim - len(axes) and w.ndim < x.ndim:
        for a in axes:
            w = xp.expand_dims(xp.asarray(w, device=device(x)), axis=a)
    return as_mask(w, x, xp=xp)


def _batch_of(moved: tuple[int, ...], axes: tuple[int, ...], /) -> tuple[int, ...]:
    return moved[: len(moved) - len(axes)]


# --------------------------------------------------------------- dense labels


def _dense(
    logits: Any,
    labels: Any,
    axis: Axis,
    where: Any,
    label_smoothing: float,
    reduction: str,
    want_grad: bool,
    xp: ArrayNamespace | None,
) -> tuple[Array, Array | None]:
    x = as_array(logits, name="logits")
    xp = namespace(x, xp=xp)
    x = as_floating(x, name="logits", xp=xp)
    in_dtype = x.dtype
    y = _labels_array(labels, x, xp=xp)
    if not xp.isdtype(y.dtype, ("real floating", "integral", "bool")):
        msg = f"`labels` must be real numbers (probabilities); got dtype {y.dtype}."
        raise TypeError(msg)
    check_shape(y, tuple(x.shape), x, what="of the logits")
    eps = check_label_smoothing(label_smoothing)
    check_reduction(reduction)
    if x.ndim == 0:
        msg = "`logits` must have at least one dimension (the classes); got a scalar."
        raise ValueError(msg)
    axes = normalize_axis(axis, x.ndim, allow_none=True)
    out_dtype, wd, refine = _out_dtypes(x, xp=xp)
    x = xp.astype(x, wd) if x.dtype != wd else x
    y = xp.astype(y, wd) if y.dtype != wd else y
    valid = None
    if where is not None:
        # Excluded classes take no part: not in the normaliser, not in the
        # label sum (optax's and JAX's meaning of `where`).
        valid = _class_mask(where, x, axes, xp=xp)
        x = xp.where(valid, x, const(-float("inf"), x, xp=xp))
        y = xp.where(valid, y, const(0.0, y, xp=xp))
    x, moved = flatten_axes(x, axes, xp=xp)
    y, _ = flatten_axes(y, axes, xp=xp)
    if valid is not None:
        valid, _ = flatten_axes(valid, axes, xp=xp)
    if eps > 0.0:
        # Smoothing spreads eps over the classes that take part (all, or the
        # included ones under `where`).
        if valid is None:
            spread = const(eps / x.shape[-1], x, xp=xp)
        else:
            n_valid = xp.sum(xp.astype(valid, x.dtype), axis=-1, keepdims=True)
            spread = xp.where(
                valid, eps / xp.where(n_valid > 0, n_valid, n_valid + 1), 0.0
            )
        y = y * const(1.0 - eps, y, xp=xp) + spread
    batch = _batch_of(moved, axes)
    if x.shape[-1] == 0:
        loss = xp.zeros((*batch, 1), dtype=x.dtype, device=device(x))
        rows = None
        lo = None
    else:
        rows = _rows(x, y, None, refine=refine, xp=xp)
        loss, lo = rows.loss, rows.loss_lo
    loss = xp.reshape(loss, batch)
    lo = None if lo is None else xp.reshape(lo, batch)
    count = const(float(math.prod(batch)), loss, xp=xp)
    value = reduce(loss, reduction, out_dtype=out_dtype, lo=lo, count=count, xp=xp)
    if not want_grad:
        return value, None
    if rows is None:
        g = x
    else:
        g = _row_grad(rows, y, None, xp=xp)
        if valid is not None:
            g = xp.where(valid, g, const(0.0, g, xp=xp))
    scale = _mean_scale(reduction, count, xp=xp)
    return value, _grad_to_input(g, scale, axes, moved, in_dtype, xp=xp)


def softmax_cross_entropy(
    logits: Any,
    labels: Any,
    /,
    *,
    axis: Axis = -1,
    where: Any = None,
    label_smoothing: float = 0.0,
    reduction: str = "none",
    xp: ArrayNamespace | None = None,
) -> Array:
    r"""Cross entropy between dense labels and the softmax of `logits`.

    .. math:: \ell = -\sum_j y_j \log \operatorname{softmax}(x)_j
              = \sum_j y_j \Bigl(\operatorname{log1p}\bigl(\textstyle
              \sum_{i \ne k} e^{x_i - m}\bigr) - (x_j - m)\Bigr)

    The same as ``tf.nn.softmax_cross_entropy_with_logits`` and
    ``optax.softmax_cross_entropy``, exact.

    Parameters
    ----------
    logits : array_like
        Unnormalised log-probabilities, classes along `axis`.
    labels : array_like
        One-hot or soft labels (per-class probabilities) of the shape of
        `logits`.
    axis : int or tuple of ints or None, optional
        The class axis, or axes taken jointly. Default: ``-1``.
    where : array_like of bool, optional
        Classes that take part, broadcastable to `logits` (or of the shape
        without `axis`, selecting whole examples). Excluded classes are left
        out of the normaliser and of the label sum (optax's and JAX's
        meaning of `where`): a row with none has loss 0.
    label_smoothing : float, optional
        ``eps`` in [0, 1]: the labels become ``(1 - eps) y + eps / K`` with
        ``K`` the number of classes (that take part, under `where`).
    reduction : {"none", "mean", "sum"}, optional
        ``"none"`` (the default) returns one loss per example.
    xp : array_namespace, optional
        The namespace of `logits`. Default: inferred.

    Returns
    -------
    array
        The loss, of the shape of `logits` without `axis` (``"none"``) or 0-d;
        float32 for float16/bfloat16 logits, else the logits' dtype.

    Raises
    ------
    ValueError
        If the shapes differ (both are named), `label_smoothing` is outside
        [0, 1] or `reduction` is unknown.
    TypeError
        If `logits` or `labels` is not real.

    See Also
    --------
    sparse_softmax_cross_entropy : integer labels, with class weights,
        ``ignore_index``, ``z_loss`` and ``softcap``.
    logitkit.grad.softmax_cross_entropy : the loss and its gradient.

    Notes
    -----
    A class with label 0 adds nothing, even where its logit is ``-inf``
    (``0 log 0 = 0``); label mass on a ``-inf`` logit gives ``+inf`` (but on
    a class excluded by `where` it is left out). A row with no valid class
    has loss 0 and zero gradient.
    Per-example losses of one-hot labels are within 0.51 ulp (float32) and
    1 ulp (float64) of the exact value; the mean and sum are taken in
    float64 (double-double for float64) and rounded once.

    Examples
    --------
    >>> import numpy as np
    >>> import logitkit as lk
    >>> x = np.asarray([[0.0, 30.0], [2.0, 1.0]])
    >>> y = np.asarray([[0.0, 1.0], [0.0, 1.0]])
    >>> lk.softmax_cross_entropy(x, y)  # logsumexp(x) - x_y gives 0 for row 0
    array([9.35762297e-14, 1.31326169e+00])
    """
    # --- fast path: compiled kernels for NumPy float32/float64 (``_kernels``) ---
    if where is None and label_smoothing == 0.0 and xp is None:
        fast = _kernels.softmax_cross_entropy(logits, labels, axis, reduction)
        if fast is not None:
            return fast
    # --- end of fast path ---
    value, _ = _dense(
        logits, labels, axis, where, label_smoothing, reduction, False, xp
    )
    return value


# -------------------------------------------------------------- sparse labels


class _Sparse(NamedTuple):
    x: Array  # capped and tempered logits, class axis last, work dtype
    y: Array  # dense label weights ytilde
    zcoef: Array | None
    count: Array  # the denominator of "mean"
    bad: Array | None  # labels outside [0, K) (lazy backends): NaN loss
    batch: tuple[int, ...]
    valid: Array | None  # the class mask (flattened), if any


def _check_int_labels(labels: Array, /) -> None:
    import array_api_compat

    xp = array_api_compat.array_namespace(labels)
    if not xp.isdtype(labels.dtype, "integral"):
        msg = (
            "`labels` must be integer class ids; got dtype "
            f"{labels.dtype} (use softmax_cross_entropy for probabilities)."
        )
        raise TypeError(msg)


def _sparse_setup(
    x: Array,
    labels: Any,
    axes: tuple[int, ...],
    where: Any,
    ignore_index: int | None,
    class_weights: Any,
    eps: float,
    z: float,
    softcap: float | None,
    temperature: float,
    *,
    xp: ArrayNamespace,
) -> tuple[_Sparse, tuple[int, ...], Array | None, Array | None]:
    lab = _labels_array(labels, x, xp=xp)
    _check_int_labels(lab)
    n_classes = math.prod(x.shape[a] for a in axes)
    expected = tuple(s for i, s in enumerate(x.shape) if i not in axes)
    check_shape(lab, expected, x, what="of the logits without axis")
    valid = None if where is None else _class_mask(where, x, axes, xp=xp)
    kept = None
    if ignore_index is not None:
        kept = lab != xp.asarray(int(ignore_index), dtype=lab.dtype, device=device(x))
    if is_eager(lab) and is_eager(x) and (kept is None or is_eager(kept)):
        if kept is None:
            check_labels(lab, n_classes, name="labels", xp=xp)
        else:
            _check_kept_positions(lab, kept, n_classes, xp=xp)
    x, moved = flatten_axes(x, axes, xp=xp)
    softcap_t = None
    if softcap is not None:
        cap = check_nonnegative(softcap, name="softcap")
        if cap == 0.0:
            msg = f"`softcap` must be a positive number; got {softcap!r}."
            raise ValueError(msg)
        c = const(cap, x, xp=xp)
        softcap_t = xp.tanh(x / c)
        x = c * softcap_t
    if temperature != 1.0:
        x = x / const(temperature, x, xp=xp)
    if valid is not None:  # after the softcap: a masked logit stays -inf
        valid, _ = flatten_axes(valid, axes, xp=xp)
        x = xp.where(valid, x, const(-float("inf"), x, xp=xp))
        # An example with no valid class counts as ignored (optax gives 0).
        any_valid = xp.any(valid, axis=-1)
        kept = any_valid if kept is None else kept & any_valid
    zero_i = xp.zeros_like(lab)
    safe = lab if kept is None else xp.where(kept, lab, zero_i)
    bad = None
    if not (is_eager(lab) and is_eager(x)):
        bad = (safe < 0) | (safe >= n_classes)
        safe = xp.where(bad, zero_i, safe)
    classes = xp.arange(n_classes, device=device(x), dtype=lab.dtype)
    onehot = classes == safe[..., None]
    zero = const(0.0, x, xp=xp)
    one = const(1.0, x, xp=xp)
    keep_f = one if kept is None else xp.where(kept, one, zero)[..., None]
    if class_weights is None:
        w = None
        w_y = keep_f if kept is not None else None
        y = xp.where(onehot, one, zero) * keep_f
    else:
        w = as_array(class_weights, name="class_weights")
        w = xp.asarray(w, device=device(x))
        if not xp.isdtype(w.dtype, ("real floating", "integral")):
            msg = f"`class_weights` must be real numbers; got dtype {w.dtype}."
            raise TypeError(msg)
        if tuple(w.shape) != (n_classes,):
            msg = (
                f"`class_weights` must have shape ({n_classes},) (one weight per "
                f"class); got shape {tuple(w.shape)}."
            )
            raise ValueError(msg)
        w = xp.astype(w, x.dtype)
        w_y = xp.sum(xp.where(onehot, w, zero), axis=-1, keepdims=True) * keep_f
        y = xp.where(onehot, w_y, zero)
    if eps > 0.0:
        y = y * const(1.0 - eps, x, xp=xp)
        spread = const(eps / n_classes, x, xp=xp)
        y = y + (spread * keep_f if w is None else (spread * w) * keep_f)
    zcoef = None
    if z > 0.0:
        zc = const(z, x, xp=xp)
        zcoef = zc * (w_y if w_y is not None else xp.ones_like(x[..., :1]))
    batch = _batch_of(moved, axes)
    count = const(float(math.prod(batch)), x, xp=xp) if w_y is None else xp.sum(w_y)
    return _Sparse(x, y, zcoef, count, bad, batch, valid), moved, softcap_t, kept


def _check_kept_positions(
    lab: Array, kept: Array, n_classes: int, /, *, xp: ArrayNamespace
) -> None:
    """Name the first non-ignored label outside ``[0, n_classes)`` with its position."""
    out = kept & ((lab < 0) | (lab >= n_classes))
    if not bool(xp.any(out)):
        return
    pos = tuple(int(w[0]) for w in xp.nonzero(out)) if out.ndim else ()
    value = int(lab[pos])
    msg = (
        f"`labels` must be in [0, {n_classes}) or ignore_index; got {value} at "
        f"position {pos if len(pos) != 1 else pos[0]}."
    )
    raise ValueError(msg)


def _sparse(
    logits: Any,
    labels: Any,
    axis: Axis,
    where: Any,
    ignore_index: int | None,
    class_weights: Any,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    temperature: float,
    reduction: str,
    want_grad: bool,
    xp: ArrayNamespace | None,
) -> tuple[Array, Array | None]:
    x = as_array(logits, name="logits")
    xp = namespace(x, xp=xp)
    x = as_floating(x, name="logits", xp=xp)
    in_dtype = x.dtype
    if x.ndim == 0:
        msg = "`logits` must have at least one dimension (the classes); got a scalar."
        raise ValueError(msg)
    axes = normalize_axis(axis, x.ndim, allow_none=True)
    eps = check_label_smoothing(label_smoothing)
    z = check_nonnegative(z_loss, name="z_loss")
    t = check_temperature(temperature)
    check_reduction(reduction)
    if ignore_index is not None and not isinstance(ignore_index, int):
        msg = f"`ignore_index` must be an int or None; got {ignore_index!r}."
        raise TypeError(msg)
    out_dtype, wd, refine = _out_dtypes(x, xp=xp)
    x = xp.astype(x, wd) if x.dtype != wd else x
    sp, moved, tanh_t, kept = _sparse_setup(
        x, labels, axes, where, ignore_index, class_weights, eps, z, softcap, t, xp=xp
    )
    if sp.x.shape[-1] == 0:
        msg = "`logits` must have at least one class along `axis`; got 0."
        raise ValueError(msg)
    rows = _rows(sp.x, sp.y, sp.zcoef, refine=refine, xp=xp)
    loss = xp.reshape(rows.loss, sp.batch)
    lo = None if rows.loss_lo is None else xp.reshape(rows.loss_lo, sp.batch)
    zero = const(0.0, loss, xp=xp)
    if kept is not None:  # an ignored example whose row is NaN or inf is still 0
        loss = xp.where(kept, loss, zero)
        lo = None if lo is None else xp.where(kept, lo, zero)
    if sp.bad is not None:
        loss = xp.where(sp.bad, const(float("nan"), loss, xp=xp), loss)
    value = reduce(loss, reduction, out_dtype=out_dtype, lo=lo, count=sp.count, xp=xp)
    if not want_grad:
        return value, None
    g = _row_grad(rows, sp.y, sp.zcoef, xp=xp)
    if kept is not None:
        g = xp.where(kept[..., None], g, const(0.0, g, xp=xp))
    if sp.valid is not None:
        g = xp.where(sp.valid, g, const(0.0, g, xp=xp))
    if sp.bad is not None:
        g = xp.where(sp.bad[..., None], const(float("nan"), g, xp=xp), g)
    if t != 1.0:
        g = g / const(t, g, xp=xp)
    if tanh_t is not None:
        one = const(1.0, g, xp=xp)
        g = g * ((one - tanh_t) * (one + tanh_t))
    scale = _mean_scale(reduction, sp.count, xp=xp)
    return value, _grad_to_input(g, scale, axes, moved, in_dtype, xp=xp)


def _plain_sparse(
    where: Any,
    class_weights: Any,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    temperature: float,
    xp: ArrayNamespace | None,
) -> bool:
    """Whether a sparse cross entropy uses only the options the kernels take
    (its loss, and with ``lk.grad`` its gradient; ``ignore_index`` and every
    reduction are theirs too)."""
    return (
        where is None
        and class_weights is None
        and label_smoothing == 0.0
        and z_loss == 0.0
        and softcap is None
        and temperature == 1.0
        and xp is None
    )


def sparse_softmax_cross_entropy(
    logits: Any,
    labels: Any,
    /,
    *,
    axis: Axis = -1,
    where: Any = None,
    ignore_index: int | None = None,
    class_weights: Any = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    temperature: float = 1.0,
    reduction: str = "none",
    xp: ArrayNamespace | None = None,
) -> Array:
    r"""Cross entropy between integer class labels and the softmax of `logits`.

    With ``d = x - max(x)`` and ``k`` the argmax, the loss of an example
    with label ``y`` is

    .. math:: \ell = \operatorname{log1p}\Bigl(\sum_{j \ne k} e^{d_j}\Bigr)
              - d_y

    (a sum of two non-negative numbers), the options adding to it in this
    order: ``softcap`` (``x <- cap tanh(x / cap)``), ``temperature``
    (``x <- x / T``), label smoothing and class weights (PyTorch's rules:
    ``(1 - eps) w_y (-log p_y) + eps / K sum_c w_c (-log p_c)``), then
    ``z_loss * w_y * logsumexp(x)**2``.

    Parameters
    ----------
    logits : array_like
        Unnormalised log-probabilities, classes along `axis`.
    labels : array_like of int
        Class ids in ``[0, K)``, of the shape of `logits` without `axis`.
    axis : int or tuple of ints, optional
        The class axis, or axes taken jointly as one class axis (labels then
        index the flattened classes, as in optax). Default: ``-1``
        (PyTorch's is 1: see ``logitkit.compat.torch``).
    where : array_like of bool, optional
        Classes that take part, broadcastable to `logits` (or of the labels'
        shape, selecting whole examples): the others are ``-inf`` logits
        after the softcap. An example with no valid class counts as ignored
        (loss 0, as optax); a label on an excluded class gives ``+inf``.
    ignore_index : int, optional
        Examples with this label have loss 0 and no gradient and are left out
        of ``"mean"``. A batch with every example ignored has mean 0.
    class_weights : array_like, optional
        A weight per class (shape ``(K,)``), as ``torch.nn.CrossEntropyLoss``'s
        `weight`; ``"mean"`` then divides by the summed ``w_y`` of the kept
        examples.
    label_smoothing : float, optional
        ``eps`` in [0, 1], spread over all ``K`` classes.
    z_loss : float, optional
        The coefficient of ``logsumexp(x)**2`` (PaLM). Default: 0.
    softcap : float, optional
        ``cap > 0``: logits become ``cap tanh(x / cap)`` first (Gemma 2).
    temperature : float, optional
        ``T > 0``: logits are divided by it (after the softcap).
    reduction : {"none", "mean", "sum"}, optional
        ``"none"`` (the default) returns one loss per example.
    xp : array_namespace, optional
        The namespace of `logits`. Default: inferred.

    Returns
    -------
    array
        The loss, of the shape of `labels` (``"none"``) or 0-d; float32 for
        float16/bfloat16 logits, else the logits' dtype.

    Raises
    ------
    ValueError
        If `labels` has the wrong shape (both shapes are named), a label is
        outside ``[0, K)`` (its value and position are named; eager arrays
        only: under ``jax.jit`` or dask the loss of that example is NaN), an
        option is out of range or `reduction` is unknown.
    TypeError
        If `labels` is not integer or `logits` not real.

    See Also
    --------
    softmax_cross_entropy : dense (one-hot or soft) labels.
    logitkit.grad.sparse_softmax_cross_entropy : the loss and its gradient.

    Notes
    -----
    Per-example losses are within 0.51 ulp (float32) and 1 ulp (float64) of
    the exact value, also for the confident right answer whose loss
    ``logsumexp(x) - x_y`` rounds to 0. A ``-inf`` logit (a masked action)
    that is not the label adds nothing; the label's own ``-inf`` logit gives
    ``+inf``. "mean" and "sum" are accumulated in float64 (double-double
    for float64) and rounded once.

    Examples
    --------
    >>> import numpy as np
    >>> import logitkit as lk
    >>> x = np.asarray([[0.0, 30.0, -np.inf], [2.0, 1.0, 0.0]], dtype=np.float32)
    >>> lk.sparse_softmax_cross_entropy(x, np.asarray([1, 0]))
    array([9.357623e-14, 4.076060e-01], dtype=float32)
    >>> float(lk.sparse_softmax_cross_entropy(
    ...     x, np.asarray([1, -100]), ignore_index=-100, reduction="mean"))
    9.357622912219837e-14
    """
    # --- fast path: compiled kernels for NumPy float32/float64 (``_kernels``) ---
    if _plain_sparse(
        where, class_weights, label_smoothing, z_loss, softcap, temperature, xp
    ):
        fast = _kernels.sparse_softmax_cross_entropy(
            logits, labels, axis, ignore_index, reduction
        )
        if fast is not None:
            return fast
    # --- end of fast path ---
    value, _ = _sparse(
        logits,
        labels,
        axis,
        where,
        ignore_index,
        class_weights,
        label_smoothing,
        z_loss,
        softcap,
        temperature,
        reduction,
        False,
        xp,
    )
    return value
