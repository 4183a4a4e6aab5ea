r"""Losses with their analytic gradients: ``lk.grad.<loss>(...) -> (loss, dx)``.

Each function takes the arguments of the loss of the same name and returns
the loss and the gradient of its sum (of the reduced value for ``"mean"``
and ``"sum"``) with respect to the first argument (the logits), in the
dtype of that argument. Nothing is differentiated numerically: for the
softmax cross entropies the gradient is ``Y p - y`` with the true class's
``p_y - 1`` taken as ``-S / (1 + S)`` when it is the argmax (no
cancellation for a confident right answer). Masked rows, ignored examples
and a ``"mean"`` over no example have zero gradient, not NaN.

Examples
--------
>>> import numpy as np
>>> import logitkit as lk
>>> loss, dx = lk.grad.sparse_softmax_cross_entropy(
...     np.asarray([[0.0, 40.0]]), np.asarray([1]))
>>> dx  # p - onehot: -p_0 = -4.2e-18 for the true class, not 0
array([[ 4.24835426e-18, -4.24835426e-18]])
"""

from __future__ import annotations

from typing import Any

from . import _kernels
from ._chunked import _grad_linear_cross_entropy as linear_cross_entropy
from ._cross_entropy import _dense, _plain_sparse, _sparse
from ._divergence import _entropy, _kl
from ._prob_losses import _grad_binary_cross_entropy as binary_cross_entropy
from ._prob_losses import _grad_categorical_cross_entropy as categorical_cross_entropy
from ._sigmoid_losses import _grad_sigmoid_cross_entropy as sigmoid_cross_entropy
from ._sigmoid_losses import _grad_sigmoid_focal_loss as sigmoid_focal_loss
from ._typing import Array, ArrayNamespace, Axis

__all__ = [
    "binary_cross_entropy",
    "categorical_cross_entropy",
    "kl_divergence",
    "linear_cross_entropy",
    "sigmoid_cross_entropy",
    "sigmoid_focal_loss",
    "softmax_cross_entropy",
    "softmax_entropy",
    "sparse_softmax_cross_entropy",
]


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
) -> tuple[Array, Array]:
    r""":func:`logitkit.softmax_cross_entropy` and its gradient ``Y p - y``.

    Returns
    -------
    loss : array
        As :func:`logitkit.softmax_cross_entropy`.
    dlogits : array
        The gradient of the (summed or reduced) loss, of the shape and dtype
        of `logits`; zero for entries excluded by `where`.

    Examples
    --------
    >>> import logitkit as lk
    >>> loss, d = lk.grad.softmax_cross_entropy([0.0, 0.0], [0.0, 1.0])
    >>> float(loss), d
    (0.6931471805599453, array([ 0.5, -0.5]))
    """
    if where is None and label_smoothing == 0.0 and xp is None:  # kernels
        fast = _kernels.softmax_cross_entropy_grad(logits, labels, axis, reduction)
        if fast is not None:
            loss, dlogits = fast
            return loss, dlogits
    value, g = _dense(logits, labels, axis, where, label_smoothing, reduction, True, xp)
    assert g is not None
    return value, g


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
) -> tuple[Array, Array]:
    r""":func:`logitkit.sparse_softmax_cross_entropy` and its gradient.

    The gradient of one example is ``Y p - y + 2 z w_y lse p`` with ``y``
    the smoothed, class-weighted one-hot row and ``Y`` its sum, chained
    through the temperature and the softcap (``1 - tanh(x / cap)**2``).

    Returns
    -------
    loss : array
        As :func:`logitkit.sparse_softmax_cross_entropy`.
    dlogits : array
        The gradient, of the shape and dtype of `logits`; zero rows for
        ignored examples.

    Examples
    --------
    >>> import logitkit as lk
    >>> loss, d = lk.grad.sparse_softmax_cross_entropy(
    ...     [[0.0, 0.0], [1.0, 2.0]], [0, -1], ignore_index=-1, reduction="mean")
    >>> float(loss), d
    (0.6931471805599453, array([[-0.5,  0.5],
           [ 0. ,  0. ]]))
    """
    # --- fast path: one fused loss + gradient kernel (``_kernels``) ---
    if _plain_sparse(
        where, class_weights, label_smoothing, z_loss, softcap, temperature, xp
    ):
        fast = _kernels.sparse_softmax_cross_entropy_grad(
            logits, labels, axis, ignore_index, reduction
        )
        if fast is not None:
            return fast
    # --- end of fast path ---
    value, g = _sparse(
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
        True,
        xp,
    )
    assert g is not None
    return value, g


def softmax_entropy(
    logits: Any, /, *, axis: int = -1, xp: ArrayNamespace | None = None
) -> tuple[Array, Array]:
    r""":func:`logitkit.softmax_entropy` and its gradient ``-p (log p + H)``.

    Examples
    --------
    >>> import logitkit as lk
    >>> h, d = lk.grad.softmax_entropy([0.0, 0.0])
    >>> float(h), d  # the maximum: zero gradient
    (0.6931471805599453, array([0., 0.]))
    """
    value, g = _entropy(logits, axis, True, xp)
    assert g is not None
    return value, g


def kl_divergence(
    logits_p: Any,
    logits_q: Any,
    /,
    *,
    axis: int = -1,
    xp: ArrayNamespace | None = None,
) -> tuple[Array, Array]:
    r""":func:`logitkit.kl_divergence` and its gradient in `logits_p`.

    ``d KL / d x^p_j = p_j (log p_j - log q_j - KL)``. (The gradient in
    `logits_q` is ``q - p``.)

    Examples
    --------
    >>> import logitkit as lk
    >>> kl, d = lk.grad.kl_divergence([0.0, 0.0], [0.0, 0.0])
    >>> float(kl), d
    (0.0, array([0., 0.]))
    """
    value, g = _kl(logits_p, logits_q, axis, True, xp)
    assert g is not None
    return value, g
