r"""Keras 3's loss functions (``keras.losses.*``), computed exactly on any array.

Signatures, defaults and return shapes are Keras 3's: ``(y_true, y_pred)``,
one loss per example (no reduction), the binary losses averaged over `axis`.
With ``from_logits=False`` Keras' own rules for probabilities are kept:

- categorical losses divide `y_pred` by its sum along `axis` first;
- probabilities are clipped to ``[epsilon, 1 - epsilon]`` with Keras'
  default ``epsilon = 1e-7`` (both bounds rounded to `y_pred`'s dtype, as
  ``ops.clip`` does), so ``-log`` of a probability is at most about 16.1;
- `y_true` is cast to `y_pred`'s dtype; label smoothing uses the size of
  the *last* axis as the number of classes, whatever `axis` is.

What differs from Keras: the arithmetic is done in float64 for float32 (and
narrower) inputs and rounded once, so the result is the exact value of
Keras' formula rather than a few ulps off it; ``from_logits=True`` uses
logitkit's exact log-softmax / softplus; float64 inputs are computed in
float64 (Keras casts to ``floatx``, float32, first); float16/bfloat16 inputs
give float32 losses (the logitkit contract). Keras'
``sparse_categorical_crossentropy(..., ignore_class=c)`` also attaches a
mask to its result for ``Loss`` objects; here ignored examples are simply 0.
An out-of-range label is a ``ValueError`` on eager arrays (Keras' JAX and
NumPy backends silently give a loss of 0; TensorFlow and PyTorch raise).
Keras' TensorFlow backend computes ``sparse_categorical_crossentropy`` from
probabilities slightly differently (it renormalises by the sum of the
*clipped* probabilities); the JAX, NumPy and PyTorch backends' formula is
the one used here.
"""

from __future__ import annotations

import operator
import warnings
from typing import Any

from array_api_compat import device

from .._cross_entropy import softmax_cross_entropy, sparse_softmax_cross_entropy
from .._helpers import as_array, as_floating, const, is_eager, namespace, round_to
from .._one_hot import check_labels
from .._reduction import axis_index, check_label_smoothing
from .._sigmoid import sigmoid as _sigmoid
from .._sigmoid_losses import sigmoid_cross_entropy
from .._softmax import softmax as _softmax
from .._typing import Array, ArrayNamespace, DType
from ._common import array_like, move_class_axis_last, to_work

__all__ = [
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "sparse_categorical_crossentropy",
]

#: ``keras.config.epsilon()``'s default.
EPSILON = 1e-7


def _check_axis_type(axis: Any, /) -> None:
    if isinstance(axis, bool):
        msg = (
            f"`axis` must be of type `int`. Received: axis={axis} of type {type(axis)}"
        )
        raise ValueError(msg)  # noqa: TRY004 (Keras raises a ValueError)


def _setup(
    y_true: Any, y_pred: Any, /
) -> tuple[Array, Array, DType, DType, ArrayNamespace]:
    """`y_pred` and `y_true` (cast to `y_pred`'s dtype, as Keras does)."""
    p = as_array(y_pred, name="y_pred")
    xp = namespace(p)
    p = as_floating(p, name="y_pred", xp=xp)
    y = array_like(y_true, p, name="y_true", xp=xp)
    if xp.isdtype(y.dtype, "complex floating"):
        msg = f"`y_true` must be real; got dtype {y.dtype}."
        raise TypeError(msg)
    in_dtype = p.dtype
    y = xp.astype(y, in_dtype) if y.dtype != in_dtype else y
    return y, p, in_dtype, p.dtype, xp


def _same_shape(y: Array, p: Array, /) -> None:
    if tuple(y.shape) != tuple(p.shape):
        msg = (
            "Arguments `target` and `output` must have the same shape. Received: "
            f"target.shape={tuple(y.shape)}, output.shape={tuple(p.shape)}"
        )
        raise ValueError(msg)


def _warn_one_class(p: Array, fname: str, /) -> None:
    if p.ndim and p.shape[-1] == 1:
        warnings.warn(
            f"In loss {fname}, expected y_pred.shape to be (batch_size, num_classes) "
            f"with num_classes > 1. Received: y_pred.shape={tuple(p.shape)}. "
            "Consider using 'binary_crossentropy' if you only have 2 classes.",
            SyntaxWarning,
            stacklevel=3,
        )


def _bounds(
    in_dtype: DType, like: Array, /, *, xp: ArrayNamespace
) -> tuple[Array, Array]:
    """``epsilon`` and ``1 - epsilon`` rounded to `in_dtype`, in `like`'s dtype."""
    lo = xp.asarray(EPSILON, dtype=in_dtype, device=device(like))
    hi = xp.asarray(1.0 - EPSILON, dtype=in_dtype, device=device(like))
    return xp.astype(lo, like.dtype), xp.astype(hi, like.dtype)


def _clip(p: Array, lo: Array, hi: Array, /, *, xp: ArrayNamespace) -> Array:
    """``clip(p, lo, hi)``, NaN propagating."""
    return xp.minimum(xp.maximum(p, lo), hi)


def _normalised_clipped(
    p: Array, axis: int, in_dtype: DType, /, *, xp: ArrayNamespace
) -> Array:
    """Keras' ``clip(p / sum(p, axis), epsilon, 1 - epsilon)``, in `p`'s dtype."""
    lo, hi = _bounds(in_dtype, p, xp=xp)
    return _clip(p / xp.sum(p, axis=axis, keepdims=True), lo, hi, xp=xp)


def _smooth_categorical(
    y: Array, label_smoothing: float, /, *, xp: ArrayNamespace
) -> Array:
    """``y (1 - e) + e / K`` with ``K`` the size of the last axis (Keras)."""
    k = y.shape[-1]
    return y * const(1.0 - label_smoothing, y, xp=xp) + const(
        label_smoothing / k, y, xp=xp
    )


def categorical_crossentropy(
    y_true: Any,
    y_pred: Any,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Array:
    r"""``keras.losses.categorical_crossentropy``: one loss per example.

    .. math:: \ell = -\sum_c y_c \log \operatorname{clip}\Bigl(
              \frac{p_c}{\sum_j p_j}, \epsilon, 1 - \epsilon\Bigr)

    (``from_logits=False``), or ``-sum(y * log_softmax(y_pred))``, exact
    (``from_logits=True``).

    Parameters
    ----------
    y_true : array_like
        One-hot or soft labels of the shape of `y_pred`.
    y_pred : array_like
        Probabilities (renormalised along `axis`) or, with `from_logits`,
        logits.
    from_logits : bool, optional
        Whether `y_pred` holds logits. Default: False.
    label_smoothing : float, optional
        ``e`` in [0, 1]: labels become ``y (1 - e) + e / K``, ``K`` the size
        of the last axis (Keras' rule). Default: 0.
    axis : int, optional
        The class axis. Default: ``-1``.

    Returns
    -------
    array
        The loss, of the shape of `y_pred` without `axis`.

    Raises
    ------
    ValueError
        If the shapes differ, `y_pred` is 0-d, `axis` is a bool or
        `label_smoothing` is outside [0, 1].

    Warns
    -----
    SyntaxWarning
        If the last axis has size 1 (as Keras).

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit.compat import keras
    >>> y = np.asarray([[0, 1, 0], [0, 0, 1]])
    >>> p = np.asarray([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]], dtype=np.float32)
    >>> keras.categorical_crossentropy(y, p)  # Keras (float32 sums): 0.05129331
    array([0.05129329, 2.3025851 ], dtype=float32)
    """
    _check_axis_type(axis)
    y, p, in_dtype, _, xp = _setup(y_true, y_pred)
    _same_shape(y, p)
    if p.ndim < 1:
        msg = (
            "Arguments `target` and `output` must be at least rank 1. Received: "
            f"target.shape={tuple(y.shape)}, output.shape={tuple(p.shape)}"
        )
        raise ValueError(msg)
    ax = axis_index(axis, p.ndim)
    eps = check_label_smoothing(label_smoothing)
    _warn_one_class(p, "categorical_crossentropy")
    pw, out_dtype = to_work(p, xp=xp)
    yw, _ = to_work(y, xp=xp)
    if from_logits:
        if eps and ax != p.ndim - 1 and p.shape[ax] != p.shape[-1]:
            yw = _smooth_categorical(yw, eps, xp=xp)
            eps = 0.0
        loss = softmax_cross_entropy(pw, yw, axis=ax, label_smoothing=eps)
        return round_to(loss, out_dtype, xp=xp)
    if eps:
        yw = _smooth_categorical(yw, eps, xp=xp)
    q = _normalised_clipped(pw, ax, in_dtype, xp=xp)
    loss = -xp.sum(yw * xp.log(q), axis=ax)
    return round_to(loss, out_dtype, xp=xp)


def sparse_categorical_crossentropy(
    y_true: Any,
    y_pred: Any,
    from_logits: bool = False,
    ignore_class: int | None = None,
    axis: int = -1,
) -> Array:
    r"""``keras.losses.sparse_categorical_crossentropy``: integer labels.

    .. math:: \ell = -\log \operatorname{clip}\Bigl(\frac{p_y}{\sum_j p_j},
              \epsilon, 1 - \epsilon\Bigr)

    (``from_logits=False``), or ``-log_softmax(y_pred)[y]``, exact.

    Parameters
    ----------
    y_true : array_like
        Class ids (floating labels are truncated to integers, as Keras casts
        them), of the shape of `y_pred` without `axis`, or with a size-1
        axis there (squeezed, as Keras does).
    y_pred : array_like
        Probabilities or, with `from_logits`, logits.
    from_logits : bool, optional
        Whether `y_pred` holds logits. Default: False.
    ignore_class : int, optional
        A label value whose examples get a loss of 0.
    axis : int, optional
        The class axis. Default: ``-1``.

    Returns
    -------
    array
        The loss, of the shape of `y_pred` without `axis`.

    Raises
    ------
    ValueError
        If the shapes do not match, or (eager arrays) a label other than
        `ignore_class` is outside ``[0, K)``.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit.compat import keras
    >>> p = np.asarray([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]], dtype=np.float32)
    >>> keras.sparse_categorical_crossentropy(np.asarray([1, 2]), p)
    array([0.05129329, 2.3025851 ], dtype=float32)
    """
    _check_axis_type(axis)
    p = as_array(y_pred, name="y_pred")
    xp = namespace(p)
    p = as_floating(p, name="y_pred", xp=xp)
    if p.ndim < 1:
        msg = (
            "Argument `output` must be at least rank 1. Received: "
            f"output.shape={tuple(p.shape)}"
        )
        raise ValueError(msg)
    ax = axis_index(axis, p.ndim)
    y = array_like(y_true, p, name="y_true", xp=xp)
    if not xp.isdtype(y.dtype, "integral"):
        if not xp.isdtype(y.dtype, ("real floating", "bool")):
            msg = f"`y_true` must hold class ids; got dtype {y.dtype}."
            raise TypeError(msg)
        y = xp.astype(y, xp.int64)
    if y.ndim == p.ndim and y.shape[ax] == 1:
        y = xp.squeeze(y, axis=ax)
    expected = tuple(s for i, s in enumerate(p.shape) if i != ax)
    if tuple(y.shape) != expected:
        msg = (
            "Arguments `target` and `output` must have the same shape up until "
            f"the class axis: target.shape={tuple(y.shape)}, "
            f"output.shape={tuple(p.shape)}"
        )
        raise ValueError(msg)
    ignore = None if ignore_class is None else operator.index(ignore_class)
    pw, out_dtype = to_work(p, xp=xp)
    if from_logits:
        loss = sparse_softmax_cross_entropy(pw, y, axis=ax, ignore_index=ignore)
        return round_to(loss, out_dtype, xp=xp)
    k = p.shape[ax]
    kept = None
    if ignore is not None:
        kept = y != xp.asarray(ignore, dtype=y.dtype, device=device(y))
        y = xp.where(kept, y, xp.zeros_like(y))
    bad = None
    if is_eager(y):
        check_labels(y, k, name="y_true", xp=xp)
    else:  # Keras' JAX backend: a zero one-hot row, loss 0
        bad = (y < 0) | (y >= k)
    pw = move_class_axis_last(pw, ax, xp=xp)
    classes = xp.arange(k, dtype=y.dtype, device=device(y))
    zero = const(0.0, pw, xp=xp)
    p_y = xp.sum(xp.where(y[..., None] == classes, pw, zero), axis=-1)
    lo, hi = _bounds(p.dtype, pw, xp=xp)
    loss = -xp.log(_clip(p_y / xp.sum(pw, axis=-1), lo, hi, xp=xp))
    if kept is not None:
        loss = xp.where(kept, loss, zero)
    if bad is not None:
        loss = xp.where(bad, zero, loss)
    return round_to(loss, out_dtype, xp=xp)


def _binary_elementwise(
    y: Array, p: Array, in_dtype: DType, /, *, xp: ArrayNamespace
) -> Array:
    """Keras' ``binary_crossentropy`` of probabilities, elementwise (work dtype)."""
    lo, hi = _bounds(in_dtype, p, xp=xp)
    q = _clip(p, lo, hi, xp=xp)
    one = const(1.0, p, xp=xp)
    return -(y * xp.log(q) + (one - y) * xp.log1p(-q))


def binary_crossentropy(
    y_true: Any,
    y_pred: Any,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Array:
    r"""``keras.losses.binary_crossentropy``: the elementwise BCE, averaged over `axis`.

    .. math:: \ell = -\operatorname{mean}_{\text{axis}}\bigl(y \log q +
              (1 - y) \log(1 - q)\bigr), \quad
              q = \operatorname{clip}(p, \epsilon, 1 - \epsilon)

    (``from_logits=False``), or the mean of the exact
    ``sigmoid_cross_entropy`` of the logits.

    Parameters
    ----------
    y_true : array_like
        0/1 or soft labels of the shape of `y_pred`.
    y_pred : array_like
        Probabilities or, with `from_logits`, logits.
    from_logits : bool, optional
        Whether `y_pred` holds logits. Default: False.
    label_smoothing : float, optional
        ``e`` in [0, 1]: labels become ``y (1 - e) + e / 2``. Default: 0.
    axis : int, optional
        The axis the elementwise losses are averaged over. Default: ``-1``.

    Returns
    -------
    array
        The loss, of the shape of `y_pred` without `axis`.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit.compat import keras
    >>> y = np.asarray([[0, 1], [0, 0]])
    >>> p = np.asarray([[0.6, 0.4], [0.4, 0.6]], dtype=np.float32)
    >>> keras.binary_crossentropy(y, p)  # Keras' docstring example
    array([0.91629076, 0.7135582 ], dtype=float32)
    """
    y, p, in_dtype, _, xp = _setup(y_true, y_pred)
    _same_shape(y, p)
    eps = check_label_smoothing(label_smoothing)
    pw, out_dtype = to_work(p, xp=xp)
    yw, _ = to_work(y, xp=xp)
    if from_logits:
        elem = sigmoid_cross_entropy(pw, yw, label_smoothing=eps)
    else:
        if eps:
            yw = yw * const(1.0 - eps, yw, xp=xp) + const(0.5 * eps, yw, xp=xp)
        elem = _binary_elementwise(yw, pw, in_dtype, xp=xp)
    return round_to(xp.mean(elem, axis=axis), out_dtype, xp=xp)


def categorical_focal_crossentropy(
    y_true: Any,
    y_pred: Any,
    alpha: Any = 0.25,
    gamma: float = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Array:
    r"""``keras.losses.categorical_focal_crossentropy``: one loss per example.

    .. math:: \ell = -\sum_c \alpha_c (1 - q_c)^\gamma\, y_c \log q_c, \quad
              q = \operatorname{clip}\Bigl(\frac{p}{\sum_j p_j}, \epsilon,
              1 - \epsilon\Bigr)

    with ``p = softmax(y_pred)`` (exact) when `from_logits`.

    Parameters
    ----------
    y_true : array_like
        One-hot or soft labels of the shape of `y_pred`.
    y_pred : array_like
        Probabilities or, with `from_logits`, logits.
    alpha : float or array_like, optional
        The class weight: a scalar, or one per class (broadcast against
        `y_pred`, as Keras). Default: 0.25.
    gamma : float, optional
        The focusing exponent. Default: 2.
    from_logits : bool, optional
        Whether `y_pred` holds logits. Default: False.
    label_smoothing : float, optional
        As in :func:`categorical_crossentropy`. Default: 0.
    axis : int, optional
        The class axis. Default: ``-1``.

    Returns
    -------
    array
        The loss, of the shape of `y_pred` without `axis`.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit.compat import keras
    >>> y = np.asarray([[0, 1, 0], [0, 0, 1]])
    >>> p = np.asarray([[0.05, 0.9, 0.05], [0.1, 0.85, 0.05]], dtype=np.float32)
    >>> keras.categorical_focal_crossentropy(y, p)  # Keras' docstring example
    array([2.634013e-04, 6.759121e-01], dtype=float32)
    """
    _check_axis_type(axis)
    y, p, in_dtype, _, xp = _setup(y_true, y_pred)
    _same_shape(y, p)
    ax = axis_index(axis, p.ndim)
    eps = check_label_smoothing(label_smoothing)
    _warn_one_class(p, "categorical_focal_crossentropy")
    pw, out_dtype = to_work(p, xp=xp)
    yw, _ = to_work(y, xp=xp)
    if eps:
        yw = _smooth_categorical(yw, eps, xp=xp)
    if from_logits:
        pw = _softmax(pw, axis=ax)
    q = _normalised_clipped(pw, ax, in_dtype, xp=xp)
    a = _alpha(alpha, pw, in_dtype, xp=xp)
    one = const(1.0, q, xp=xp)
    focal = ((one - q) ** float(gamma)) * a
    loss = xp.sum(focal * (-yw * xp.log(q)), axis=ax)
    return round_to(loss, out_dtype, xp=xp)


def _alpha(alpha: Any, like: Array, in_dtype: DType, /, *, xp: ArrayNamespace) -> Array:
    """`alpha` (a scalar or per-class weights) rounded to `in_dtype`, as Keras."""
    if isinstance(alpha, (int, float)):
        a = xp.asarray(float(alpha), dtype=in_dtype, device=device(like))
    else:
        a = xp.astype(array_like(alpha, like, name="alpha", xp=xp), in_dtype)
    return xp.astype(a, like.dtype)


def binary_focal_crossentropy(
    y_true: Any,
    y_pred: Any,
    apply_class_balancing: bool = False,
    alpha: float = 0.25,
    gamma: float = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Array:
    r"""``keras.losses.binary_focal_crossentropy``: mean over `axis`.

    .. math:: \ell = \operatorname{mean}_{\text{axis}}\bigl(w\,
              (1 - p_t)^\gamma \operatorname{bce}(y, p)\bigr), \quad
              p_t = y p + (1 - y)(1 - p)

    with ``bce`` the clipped elementwise loss of
    :func:`binary_crossentropy`, ``p = sigmoid(y_pred)`` when `from_logits`
    and ``w = y alpha + (1 - y)(1 - alpha)`` with `apply_class_balancing`
    (else 1). Keras computes ``p_t`` from the unclipped ``p``.

    Parameters
    ----------
    y_true : array_like
        0/1 or soft labels of the shape of `y_pred`.
    y_pred : array_like
        Probabilities or, with `from_logits`, logits.
    apply_class_balancing : bool, optional
        Weigh positives by `alpha` and negatives by ``1 - alpha``.
    alpha : float, optional
        Default: 0.25.
    gamma : float, optional
        The focusing exponent. Default: 2.
    from_logits : bool, optional
        Whether `y_pred` holds logits. Default: False.
    label_smoothing : float, optional
        ``e``: labels become ``y (1 - e) + e / 2``. Default: 0.
    axis : int, optional
        The axis averaged over. Default: ``-1``.

    Returns
    -------
    array
        The loss, of the shape of `y_pred` without `axis`.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit.compat import keras
    >>> y = np.asarray([[0, 1], [0, 0]])
    >>> p = np.asarray([[0.6, 0.4], [0.4, 0.6]], dtype=np.float32)
    >>> keras.binary_focal_crossentropy(y, p, gamma=2)  # Keras' docstring example
    array([0.32986468, 0.2057984 ], dtype=float32)
    """
    y, p, in_dtype, _, xp = _setup(y_true, y_pred)
    _same_shape(y, p)
    eps = check_label_smoothing(label_smoothing)
    pw, out_dtype = to_work(p, xp=xp)
    yw, _ = to_work(y, xp=xp)
    one = const(1.0, pw, xp=xp)
    if eps:
        yw = yw * const(1.0 - eps, yw, xp=xp) + const(0.5 * eps, yw, xp=xp)
    if from_logits:
        pw = _sigmoid(pw)
    bce = _binary_elementwise(yw, pw, in_dtype, xp=xp)
    p_t = yw * pw + (one - yw) * (one - pw)
    loss = ((one - p_t) ** float(gamma)) * bce
    if apply_class_balancing:
        a = _alpha(alpha, pw, in_dtype, xp=xp)
        loss = (yw * a + (one - yw) * (one - a)) * loss
    return round_to(xp.mean(loss, axis=axis), out_dtype, xp=xp)
