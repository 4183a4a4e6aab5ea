r"""TensorFlow's names, signatures and defaults, computed exactly on any array.

``logitkit.compat.tf.nn.softmax`` does not exist: the functions are flat, named
as in ``tf.nn`` (``softmax``, ``log_softmax``, ``sigmoid``, the cross
entropies) and ``tf.math`` / ``tf`` (``reduce_logsumexp``, ``one_hot``). Each
takes TensorFlow's arguments in TensorFlow's order (`name` is accepted and
ignored) and returns an array of the library of its input (NumPy, PyTorch,
JAX, ...). Where TensorFlow differs from logitkit's core, the TensorFlow
behaviour is kept: ``one_hot`` gives a row of `off_value` for an index outside
``[0, depth)``, and `axis=None` means the last axis.

Differences from TensorFlow: the values are exact (correctly rounded in
float32 but for a rare double rounding) where TensorFlow's are within a few
ulps; integer logits are promoted to the default float dtype instead of being
rejected; an out-of-range label of
``sparse_softmax_cross_entropy_with_logits`` is a ``ValueError`` on eager
arrays (TensorFlow raises on CPU and returns NaN on GPU).
"""

from __future__ import annotations

import operator
from typing import Any, cast

from array_api_compat import device

from .._cross_entropy import softmax_cross_entropy, sparse_softmax_cross_entropy
from .._helpers import as_array, namespace, normalize_axis
from .._sigmoid import sigmoid as _sigmoid
from .._sigmoid_losses import sigmoid_cross_entropy
from .._softmax import log_softmax as _log_softmax
from .._softmax import logsumexp as _logsumexp
from .._softmax import softmax as _softmax
from .._typing import Array
from ._common import array_like, resolve_dtype

__all__ = [
    "log_softmax",
    "one_hot",
    "reduce_logsumexp",
    "sigmoid",
    "sigmoid_cross_entropy_with_logits",
    "softmax",
    "softmax_cross_entropy_with_logits",
    "sparse_softmax_cross_entropy_with_logits",
    "weighted_cross_entropy_with_logits",
]


def softmax(logits: Any, axis: int | None = None, name: str | None = None) -> Array:
    """``tf.nn.softmax``: probabilities along `axis` (``None``: the last axis).

    Parameters
    ----------
    logits : array_like
        Logits, of any floating dtype (integers are promoted).
    axis : int, optional
        The class axis. ``None`` (TensorFlow's default) means ``-1``.
    name : str, optional
        Ignored (TensorFlow's op name).

    Returns
    -------
    array
        ``logitkit.softmax(logits, axis)``: same shape, library and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit.compat import tf
    >>> tf.softmax(np.asarray([0.0, 3.0, 1.0], dtype=np.float32))
    array([0.04201007, 0.84379476, 0.1141952 ], dtype=float32)
    """
    del name
    return _softmax(logits, axis=-1 if axis is None else axis)


def log_softmax(logits: Any, axis: int | None = None, name: str | None = None) -> Array:
    """``tf.nn.log_softmax``: log-probabilities along `axis` (``None``: last).

    Parameters
    ----------
    logits : array_like
        Logits.
    axis : int, optional
        The class axis. ``None`` (TensorFlow's default) means ``-1``.
    name : str, optional
        Ignored.

    Returns
    -------
    array
        ``logitkit.log_softmax(logits, axis)``, never ``log`` of an
        underflowed 0.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit.compat import tf
    >>> tf.log_softmax(np.asarray([3.0, 4.0, 0.0], dtype=np.float32))
    array([-1.3265626 , -0.32656264, -4.3265624 ], dtype=float32)
    """
    del name
    return _log_softmax(logits, axis=-1 if axis is None else axis)


def sigmoid(x: Any, name: str | None = None) -> Array:
    """``tf.math.sigmoid`` (``tf.nn.sigmoid``): ``1 / (1 + exp(-x))``, exact.

    Parameters
    ----------
    x : array_like
        Input.
    name : str, optional
        Ignored.

    Returns
    -------
    array
        ``logitkit.sigmoid(x)``.
    """
    del name
    return _sigmoid(x)


def one_hot(
    indices: Any,
    depth: int,
    on_value: Any = None,
    off_value: Any = None,
    axis: int | None = None,
    dtype: Any = None,
    name: str | None = None,
) -> Array:
    """``tf.one_hot``: `on_value` where ``indices == c``, `off_value` elsewhere.

    Unlike ``logitkit.one_hot`` (which raises), an index outside
    ``[0, depth)``, negative ones included, gives a row of `off_value`, as in
    TensorFlow.

    Parameters
    ----------
    indices : array_like of int
        Class ids.
    depth : int
        The number of classes (``>= 0``).
    on_value, off_value : scalar, optional
        The values of the hit and of the other entries. Default: 1 and 0.
    axis : int, optional
        Where the new axis goes; ``None`` or ``-1`` (the default) appends it.
    dtype : dtype or str, optional
        The result's dtype (a dtype of the indices' library, or its name).
        Default, as in TensorFlow: the dtype of `on_value` / `off_value` when
        given (int32 for Python ints, float32 for Python floats, bool for
        Python bools), else float32.
    name : str, optional
        Ignored.

    Returns
    -------
    array
        ``indices.shape`` with an axis of size `depth` inserted at `axis`.

    Raises
    ------
    TypeError
        If `indices` is not of an integer dtype or `depth` is not an int.
    ValueError
        If `depth` is negative.
    IndexError
        If `axis` is out of bounds.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit.compat import tf
    >>> tf.one_hot(np.asarray([2, -1, 5]), depth=3)  # -1 and 5: zero rows
    array([[0., 0., 1.],
           [0., 0., 0.],
           [0., 0., 0.]], dtype=float32)
    """
    del name
    indices = as_array(indices, name="indices")
    xp = namespace(indices)
    if not xp.isdtype(indices.dtype, "integral"):
        msg = f"`indices` must have an integer dtype; got {indices.dtype}."
        raise TypeError(msg)
    try:
        k = operator.index(depth)
    except TypeError:
        msg = f"`depth` must be an int; got {depth!r}."
        raise TypeError(msg) from None
    if k < 0:
        msg = f"`depth` must be non-negative; got {k}."
        raise ValueError(msg)
    ax = normalize_axis(-1 if axis is None else axis, indices.ndim + 1)[0]
    dt = _one_hot_dtype(on_value, off_value, dtype, indices, xp=xp)
    is_bool = xp.isdtype(dt, "bool")
    on = xp.asarray(
        (True if is_bool else 1) if on_value is None else on_value,
        dtype=dt,
        device=device(indices),
    )
    off = xp.asarray(
        (False if is_bool else 0) if off_value is None else off_value,
        dtype=dt,
        device=device(indices),
    )
    classes = xp.arange(k, dtype=indices.dtype, device=device(indices))
    y = xp.where(indices[..., None] == classes, on, off)
    if ax != indices.ndim:
        y = xp.moveaxis(y, -1, ax)
    return y


def _one_hot_dtype(
    on_value: Any, off_value: Any, dtype: Any, indices: Array, /, *, xp: Any
) -> Any:
    if dtype is not None:
        return resolve_dtype(dtype, xp=xp)
    for v in (on_value, off_value):
        if v is None:
            continue
        if isinstance(v, bool):
            return xp.bool
        if isinstance(v, int):
            return xp.int32
        if isinstance(v, float):
            return xp.float32
        return array_like(v, indices, name="on_value", xp=xp).dtype
    return xp.float32


def reduce_logsumexp(
    input_tensor: Any,
    axis: int | tuple[int, ...] | list[int] | None = None,
    keepdims: bool = False,
    name: str | None = None,
) -> Array:
    """``tf.math.reduce_logsumexp``: ``log(sum(exp(x)))`` over `axis`.

    Parameters
    ----------
    input_tensor : array_like
        Input.
    axis : int or sequence of ints, optional
        The axes to reduce. Default: all of them.
    keepdims : bool, optional
        Keep the reduced axes with size 1. Default: False.
    name : str, optional
        Ignored.

    Returns
    -------
    array
        ``logitkit.logsumexp(input_tensor, axis, keepdims=keepdims)``: no
        overflow, and ``log1p`` of the non-maximal terms (no cancellation).
    """
    del name
    if isinstance(axis, list):
        axis = tuple(axis)
    return cast(Array, _logsumexp(input_tensor, axis, keepdims=keepdims))


def softmax_cross_entropy_with_logits(
    labels: Any, logits: Any, axis: int = -1, name: str | None = None
) -> Array:
    """``tf.nn.softmax_cross_entropy_with_logits``: dense labels, per example.

    Parameters
    ----------
    labels : array_like
        One-hot or soft labels of the shape of `logits`.
    logits : array_like
        Logits.
    axis : int, optional
        The class axis. Default: ``-1``.
    name : str, optional
        Ignored.

    Returns
    -------
    array
        ``-sum(labels * log_softmax(logits), axis)``, exact
        (``logitkit.softmax_cross_entropy``).

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit.compat import tf
    >>> x = np.asarray([[0.0, 30.0], [2.0, 1.0]])
    >>> tf.softmax_cross_entropy_with_logits(np.asarray([[0.0, 1.0], [0.0, 1.0]]), x)
    array([9.35762297e-14, 1.31326169e+00])
    """
    del name
    return softmax_cross_entropy(logits, labels, axis=axis)


def sparse_softmax_cross_entropy_with_logits(
    labels: Any, logits: Any, name: str | None = None
) -> Array:
    """``tf.nn.sparse_softmax_cross_entropy_with_logits``: integer labels.

    Parameters
    ----------
    labels : array_like of int
        Class ids in ``[0, K)``, of shape ``logits.shape[:-1]``.
    logits : array_like
        Logits, classes along the last axis.
    name : str, optional
        Ignored.

    Returns
    -------
    array
        The per-example loss (``logitkit.sparse_softmax_cross_entropy``).

    Raises
    ------
    ValueError
        For a label outside ``[0, K)`` (eager arrays; under ``jax.jit`` the
        loss of that example is NaN, as on TensorFlow's GPU kernel), or
        shapes that do not match.
    """
    del name
    return sparse_softmax_cross_entropy(logits, labels)


def sigmoid_cross_entropy_with_logits(
    labels: Any = None, logits: Any = None, name: str | None = None
) -> Array:
    """``tf.nn.sigmoid_cross_entropy_with_logits``: elementwise, exact.

    Parameters
    ----------
    labels : array_like
        0/1 or soft labels of the shape of `logits`.
    logits : array_like
        Logits.
    name : str, optional
        Ignored.

    Returns
    -------
    array
        ``max(x, 0) - x z + log(1 + exp(-|x|))`` computed without
        cancellation (``logitkit.sigmoid_cross_entropy``).

    Raises
    ------
    ValueError
        If `labels` or `logits` is missing, or their shapes differ.
    """
    del name
    if labels is None or logits is None:
        msg = (
            "Both `labels` and `logits` must be provided to "
            "sigmoid_cross_entropy_with_logits."
        )
        raise ValueError(msg)
    return sigmoid_cross_entropy(logits, labels)


def weighted_cross_entropy_with_logits(
    labels: Any, logits: Any, pos_weight: Any, name: str | None = None
) -> Array:
    """``tf.nn.weighted_cross_entropy_with_logits``: positives weighted by `pos_weight`.

    ``(1 - z) x + (1 + (q - 1) z) log(1 + exp(-x))``, with ``q`` the
    `pos_weight` (PyTorch's `pos_weight` rule), exact.

    Parameters
    ----------
    labels : array_like
        0/1 or soft labels of the shape of `logits`.
    logits : array_like
        Logits.
    pos_weight : float or array_like
        ``q >= 0``, broadcast against `logits`.
    name : str, optional
        Ignored.

    Returns
    -------
    array
        The elementwise loss.

    Raises
    ------
    ValueError
        If the shapes differ, or `pos_weight` is negative (eager arrays) or
        does not broadcast: TensorFlow accepts a negative weight.
    """
    del name
    return sigmoid_cross_entropy(logits, labels, pos_weight=pos_weight)
