"""One-hot encoding of integer class labels."""

from __future__ import annotations

import operator
from typing import Any

from array_api_compat import device

from ._helpers import as_array, default_float, is_eager, namespace, normalize_axis
from ._typing import Array, ArrayNamespace, DType

__all__ = ["one_hot"]


def one_hot(
    labels: Any,
    num_classes: int,
    *,
    dtype: DType | None = None,
    axis: int = -1,
    xp: ArrayNamespace | None = None,
) -> Array:
    r"""Encode integer class labels as one-hot vectors.

    .. math:: \operatorname{one\_hot}(y)_{\dots, c} = [y_{\dots} = c]

    Parameters
    ----------
    labels : array_like of int
        Class ids in ``[0, num_classes)``.
    num_classes : int
        The number of classes, ``K >= 0``.
    dtype : dtype, optional
        The result's dtype. Default: the array library's default floating
        dtype (float64 for NumPy, float32 for PyTorch and JAX by default).
    axis : int, optional
        Where the new class axis goes in the result. Default: ``-1`` (last).
    xp : array_namespace, optional
        The namespace of `labels`. Default: inferred.

    Returns
    -------
    array
        ``labels.shape`` with a class axis of size `num_classes` inserted at
        `axis`, in the namespace and on the device of `labels`.

    Raises
    ------
    TypeError
        If `labels` is not of an integer dtype or `num_classes` is not an int.
    ValueError
        If `num_classes` is negative, or (on eager backends: NumPy, PyTorch,
        JAX outside ``jit``, array-api-strict) a label is outside
        ``[0, num_classes)``; the message gives its value and position.
    IndexError
        If `axis` is out of bounds.

    Notes
    -----
    Under ``jax.jit`` or Dask, labels are not inspected: an out-of-range label
    gives a row of zeros there (what ``tf.one_hot`` does everywhere).

    Examples
    --------
    >>> import numpy as np
    >>> import logitkit as lk
    >>> lk.one_hot(np.asarray([2, 1, 3]), 5, dtype=np.float32)
    array([[0., 0., 1., 0., 0.],
           [0., 1., 0., 0., 0.],
           [0., 0., 0., 1., 0.]], dtype=float32)
    """
    labels = as_array(labels, name="labels")
    xp = namespace(labels, xp=xp)
    if not xp.isdtype(labels.dtype, "integral"):
        msg = f"`labels` must have an integer dtype; got {labels.dtype}."
        raise TypeError(msg)
    try:
        k = operator.index(num_classes)
    except TypeError:
        msg = f"`num_classes` must be an int; got {num_classes!r}."
        raise TypeError(msg) from None
    if k < 0:
        msg = f"`num_classes` must be non-negative; got {k}."
        raise ValueError(msg)
    ax = normalize_axis(axis, labels.ndim + 1)[0]
    if is_eager(labels):
        check_labels(labels, k, name="labels", xp=xp)
    if dtype is None:
        dtype = default_float(labels, xp=xp)
    classes = xp.arange(k, dtype=labels.dtype, device=device(labels))
    y = xp.astype(labels[..., None] == classes, dtype)
    if ax != labels.ndim:
        y = xp.moveaxis(y, -1, ax)
    return y


def check_labels(
    labels: Array, num_classes: int, /, *, name: str, xp: ArrayNamespace
) -> None:
    """Raise ValueError naming the first label outside ``[0, num_classes)``.

    Only for eager arrays: it reads values.
    """
    if labels.size == 0:
        return
    bad = (labels < 0) | (labels >= num_classes)
    if not bool(xp.any(bad)):
        return
    where = xp.nonzero(bad) if labels.ndim else ()
    pos = tuple(int(w[0]) for w in where)
    value = int(labels[pos]) if pos else int(labels)
    msg = (
        f"`{name}` must be in [0, {num_classes}); got {value} at position "
        f"{pos if len(pos) != 1 else pos[0]}."
    )
    raise ValueError(msg)
