r"""PyTorch's ``torch.nn.functional`` losses and normalisers, exact, on any array.

The names, signatures, defaults and conventions are PyTorch's: the class axis
is 1 (0 for an unbatched ``(C,)`` input), ``reduction="mean"`` by default,
the deprecated `size_average` / `reduce` arguments override `reduction` with
PyTorch's warning. The arrays may be of any library (NumPy, PyTorch, JAX,
...); the result is of the input's library. Importing this module does not
import PyTorch.

Kept from PyTorch, where logitkit's core differs:

- a ``"mean"`` over no example (every target ignored, or summed class
  weights of 0) is NaN (PyTorch's ``0 / 0``), not 0;
- ``binary_cross_entropy`` bounds each log below by -100;
- ``softmax`` / ``log_softmax`` with ``dim=None`` pick PyTorch's legacy
  implicit axis (0 for 0-, 1- and 3-d input, else 1) and warn, as PyTorch
  does;
- ``kl_div`` takes log-probabilities as `input`, warns for
  ``reduction="mean"``, and has ``"batchmean"``.

Different from PyTorch: the values are exact (float32 computed in float64
and rounded once, reductions included); inputs out of their domain (a
target outside ``[0, C)``, a probability outside [0, 1]) raise
``ValueError`` instead of ``IndexError`` / ``RuntimeError``, on eager arrays
only; integer input is promoted to float instead of rejected; a negative
`pos_weight` is rejected.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from array_api_compat import device

from .._cross_entropy import softmax_cross_entropy, sparse_softmax_cross_entropy
from .._helpers import as_array, as_floating, const, is_eager, namespace, round_to
from .._reduction import check_label_smoothing
from .._reduction import reduce as _reduce
from .._sigmoid_losses import sigmoid_cross_entropy
from .._softmax import log_softmax as _log_softmax
from .._softmax import softmax as _softmax
from .._typing import Array, ArrayNamespace
from ._common import (
    array_like,
    finish,
    log1m_or,
    log_or,
    mean_or_nan,
    move_class_axis_last,
    resolve_dtype,
    to_work,
    with_nan_where_empty,
)

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "kl_div",
    "log_softmax",
    "nll_loss",
    "softmax",
]


# ------------------------------------------------------------------ helpers


def _get_softmax_dim(name: str, ndim: int, stacklevel: int) -> int:
    """PyTorch's legacy implicit `dim`, with its deprecation warning."""
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. "
        "Change the call to include dim=X as an argument.",
        stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def _legacy_reduction(size_average: bool | None, reduce: bool | None) -> str:
    """PyTorch's ``_Reduction.legacy_get_string``, warning included."""
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if size_average and reduce:
        ret = "mean"
    elif reduce:
        ret = "sum"
    else:
        ret = "none"
    warnings.warn(
        "size_average and reduce args will be deprecated, please use "
        f"reduction='{ret}' instead.",
        stacklevel=3,
    )
    return ret


def _reduction(
    reduction: str,
    size_average: bool | None,
    reduce: bool | None,
    allowed: tuple[str, ...] = ("none", "mean", "sum"),
) -> str:
    if size_average is not None or reduce is not None:
        return _legacy_reduction(size_average, reduce)
    if reduction not in allowed:
        msg = f"{reduction} is not a valid value for reduction"
        raise ValueError(msg)
    return reduction


def _input(x: Any, /) -> tuple[Array, ArrayNamespace]:
    x = as_array(x, name="input")
    xp = namespace(x)
    return as_floating(x, name="input", xp=xp), xp


def _class_axis(x: Array, /) -> int:
    if x.ndim == 0:
        msg = "`input` must have at least one dimension (the classes); got a scalar."
        raise ValueError(msg)
    return 0 if x.ndim == 1 else 1


def _class_targets(target: Array, x: Array, ax: int, /, *, xp: ArrayNamespace) -> Array:
    """Check integer class targets of shape ``input.shape`` without `ax`."""
    if not xp.isdtype(target.dtype, "integral"):
        msg = (
            "`target` must hold integer class indices or floating class "
            f"probabilities; got dtype {target.dtype}."
        )
        raise TypeError(msg)
    expected = tuple(s for i, s in enumerate(x.shape) if i != ax)
    if tuple(target.shape) != expected:
        msg = (
            f"`target` must have shape {expected} (the input's shape "
            f"{tuple(x.shape)} without the class axis {ax}); got "
            f"{tuple(target.shape)}."
        )
        raise ValueError(msg)
    return target


def _check_kept(target: Array, kept: Array, k: int, /, *, xp: ArrayNamespace) -> None:
    """Name the first non-ignored target outside ``[0, k)`` (eager arrays only)."""
    if not (is_eager(target) and target.size):
        return
    bad = kept & ((target < 0) | (target >= k))
    if not bool(xp.any(bad)):
        return
    pos = tuple(int(w[0]) for w in xp.nonzero(bad)) if target.ndim else ()
    value = int(target[pos]) if pos else int(target)
    where = pos if len(pos) != 1 else pos[0]
    msg = (
        f"`target` must be in [0, {k}) or ignore_index; got {value} at "
        f"position {where}."
    )
    raise ValueError(msg)


def _class_weight_of_target(
    weight: Array | None, safe: Array, like: Array, /, *, xp: ArrayNamespace
) -> Array | None:
    """``weight[target]`` (`safe`: targets with the ignored ones set to 0)."""
    if weight is None:
        return None
    w = xp.take(weight, xp.reshape(safe, (-1,)))
    return xp.reshape(xp.astype(w, like.dtype), tuple(safe.shape))


def _weights(
    weight: Any, like: Array, k: int, /, *, xp: ArrayNamespace
) -> Array | None:
    if weight is None:
        return None
    w = array_like(weight, like, name="weight", xp=xp)
    if tuple(w.shape) != (k,):
        msg = (
            f"`weight` must have shape ({k},) (one weight per class); got "
            f"{tuple(w.shape)}."
        )
        raise ValueError(msg)
    return w


# --------------------------------------------------------------- normalisers


def softmax(
    input: Any,
    dim: int | None = None,
    _stacklevel: int = 3,
    dtype: Any = None,
) -> Array:
    """``torch.nn.functional.softmax``: probabilities along `dim`.

    Parameters
    ----------
    input : array_like
        Logits.
    dim : int, optional
        The class axis. ``None`` (deprecated in PyTorch, and warned about
        here as there) picks 0 for 0-, 1- and 3-d input and 1 otherwise.
    _stacklevel : int, optional
        The stack level of that warning (PyTorch's private argument).
    dtype : dtype or str, optional
        Cast `input` to this dtype (of its library, or its name) first.

    Returns
    -------
    array
        ``logitkit.softmax(input, axis=dim)``.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit.compat import torch as F
    >>> F.softmax(np.asarray([[0.0, 3.0, 1.0]], dtype=np.float32), dim=1)
    array([[0.04201007, 0.84379476, 0.1141952 ]], dtype=float32)
    """
    x = as_array(input, name="input")
    if dim is None:
        dim = _get_softmax_dim("softmax", x.ndim, _stacklevel)
    if dtype is not None:
        xp = namespace(x)
        x = xp.astype(x, resolve_dtype(dtype, xp=xp))
    return _softmax(x, axis=dim)


def log_softmax(
    input: Any,
    dim: int | None = None,
    _stacklevel: int = 3,
    dtype: Any = None,
) -> Array:
    """``torch.nn.functional.log_softmax``: log-probabilities along `dim`.

    Parameters
    ----------
    input : array_like
        Logits.
    dim : int, optional
        The class axis; ``None`` as in :func:`softmax` (with the warning).
    _stacklevel : int, optional
        The stack level of that warning.
    dtype : dtype or str, optional
        Cast `input` to this dtype first.

    Returns
    -------
    array
        ``logitkit.log_softmax(input, axis=dim)``.
    """
    x = as_array(input, name="input")
    if dim is None:
        dim = _get_softmax_dim("log_softmax", x.ndim, _stacklevel)
    if dtype is not None:
        xp = namespace(x)
        x = xp.astype(x, resolve_dtype(dtype, xp=xp))
    return _log_softmax(x, axis=dim)


# ------------------------------------------------------------ class losses


def cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Array:
    r"""``torch.nn.functional.cross_entropy``: logits (class axis 1) and targets.

    With class-index targets (an integer array of the input's shape without
    the class axis) the loss of an example with target ``y`` is
    ``(1 - e) w_y (-log p_y) + e / C sum_c w_c (-log p_c)``; examples with
    ``target == ignore_index`` give 0 and are left out of ``"mean"``, which
    divides by the summed ``w_y`` of the kept examples. With probability
    targets (a floating array of the input's shape) it is
    ``-sum_c w_c t_c log p_c`` with ``t = (1 - e) target + e / C``, and
    ``"mean"`` divides by the number of examples.

    Parameters
    ----------
    input : array_like
        Logits of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``.
    target : array_like
        Class indices of shape ``()``, ``(N,)`` or ``(N, d1, ..., dK)``, or
        class probabilities of the shape of `input`.
    weight : array_like, optional
        A weight per class, shape ``(C,)``.
    size_average, reduce : bool, optional
        Deprecated (as in PyTorch); either overrides `reduction`.
    ignore_index : int, optional
        The target value of ignored examples (class indices only). Default:
        -100.
    reduction : {"mean", "sum", "none"}, optional
        Default: ``"mean"``.
    label_smoothing : float, optional
        ``e`` in [0, 1]. Default: 0.

    Returns
    -------
    array
        The loss: 0-d, or of the shape of `target` (class indices) or of
        `input` without the class axis (probabilities) for ``"none"``.

    Raises
    ------
    ValueError
        For mismatched shapes, an unknown reduction, or (eager arrays) a
        non-ignored target outside ``[0, C)``.

    Notes
    -----
    ``"mean"`` with every target ignored is NaN, as in PyTorch (logitkit's
    ``sparse_softmax_cross_entropy`` gives 0).

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit.compat import torch as F
    >>> x = np.asarray([[0.0, 40.0], [2.0, 1.0]], dtype=np.float32)
    >>> float(F.cross_entropy(x, np.asarray([1, 0]), reduction="sum"))
    0.3132616877555847
    >>> F.cross_entropy(x, np.asarray([1, 0]), reduction="none")  # torch: 0
    array([4.248354e-18, 3.132617e-01], dtype=float32)
    """
    red = _reduction(reduction, size_average, reduce)
    x, xp = _input(input)
    ax = _class_axis(x)
    eps = check_label_smoothing(label_smoothing)
    t = array_like(target, x, name="target", xp=xp)
    k = x.shape[ax]
    w = _weights(weight, x, k, xp=xp)
    if xp.isdtype(t.dtype, "real floating"):
        if tuple(t.shape) != tuple(x.shape):
            msg = (
                "`target` probabilities must have the input's shape "
                f"{tuple(x.shape)}; got {tuple(t.shape)}."
            )
            raise ValueError(msg)
        if w is None:
            return softmax_cross_entropy(
                x, t, axis=ax, label_smoothing=eps, reduction=red
            )
        xw, out_dtype = to_work(x, xp=xp)
        tw = xp.astype(t, xw.dtype)
        if eps:
            tw = tw * const(1.0 - eps, tw, xp=xp) + const(eps / k, tw, xp=xp)
        shape = (k,) + (1,) * (x.ndim - ax - 1)
        tw = tw * xp.reshape(xp.astype(w, xw.dtype), shape)
        loss = softmax_cross_entropy(xw, tw, axis=ax)
        return finish(loss, red, out_dtype, xp=xp)
    t = _class_targets(t, x, ax, xp=xp)
    value = sparse_softmax_cross_entropy(
        x,
        t,
        axis=ax,
        ignore_index=ignore_index,
        class_weights=w,
        label_smoothing=eps,
        reduction=red,
    )
    if red != "mean":
        return value
    return with_nan_where_empty(
        value, _mean_denominator(t, w, ignore_index, value, xp=xp), xp=xp
    )


def _mean_denominator(
    t: Array, w: Array | None, ignore_index: int, like: Array, /, *, xp: ArrayNamespace
) -> Array:
    """The summed ``w_y`` (or count) of the kept examples, in `like`'s dtype."""
    kept = t != xp.asarray(ignore_index, dtype=t.dtype, device=device(t))
    zero = const(0.0, like, xp=xp)
    one = const(1.0, like, xp=xp)
    safe = xp.where(kept, t, xp.zeros_like(t))
    w_y = _class_weight_of_target(w, safe, like, xp=xp)
    return xp.sum(xp.where(kept, one if w_y is None else w_y, zero))


def nll_loss(
    input: Any,
    target: Any,
    weight: Any = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    r"""``torch.nn.functional.nll_loss``: ``-w_y input[y]`` along the class axis 1.

    `input` holds log-probabilities (any real values are taken as they are).

    Parameters
    ----------
    input : array_like
        Log-probabilities of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``.
    target : array_like of int
        Class indices of the input's shape without the class axis.
    weight : array_like, optional
        A weight per class, shape ``(C,)``.
    size_average, reduce : bool, optional
        Deprecated; either overrides `reduction`.
    ignore_index : int, optional
        The target value of ignored examples (loss 0, left out of the
        mean). Default: -100.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides by the summed ``w_y`` of the kept examples (NaN if
        that is 0, as in PyTorch). Default: ``"mean"``.

    Returns
    -------
    array
        The loss: 0-d, or of the shape of `target` for ``"none"``.

    Raises
    ------
    ValueError
        For mismatched shapes, an unknown reduction or (eager arrays) a
        non-ignored target outside ``[0, C)``.
    TypeError
        If `target` is not of an integer dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit.compat import torch as F
    >>> logp = np.log(np.asarray([[0.25, 0.75], [0.5, 0.5]]))
    >>> F.nll_loss(logp, np.asarray([1, -100]), reduction="none")
    array([0.28768207, 0.        ])
    """
    red = _reduction(reduction, size_average, reduce)
    x, xp = _input(input)
    ax = _class_axis(x)
    t = _class_targets(array_like(target, x, name="target", xp=xp), x, ax, xp=xp)
    k = x.shape[ax]
    w = _weights(weight, x, k, xp=xp)
    kept = t != xp.asarray(ignore_index, dtype=t.dtype, device=device(t))
    _check_kept(t, kept, k, xp=xp)
    xw, out_dtype = to_work(x, xp=xp)
    xw = move_class_axis_last(xw, ax, xp=xp)
    safe = xp.where(kept, t, xp.zeros_like(t))
    classes = xp.arange(k, dtype=t.dtype, device=device(t))
    zero = const(0.0, xw, xp=xp)
    picked = xp.sum(xp.where(safe[..., None] == classes, xw, zero), axis=-1)
    w_y = _class_weight_of_target(w, safe, xw, xp=xp)
    loss = -picked if w_y is None else -(w_y * picked)
    loss = xp.where(kept, loss, zero)
    if red == "none":
        return round_to(loss, out_dtype, xp=xp)
    if red == "sum":
        return _reduce(loss, "sum", out_dtype=out_dtype, xp=xp)
    one = const(1.0, xw, xp=xp)
    den = xp.sum(xp.where(kept, one if w_y is None else w_y, zero))
    return mean_or_nan(loss, den, out_dtype, xp=xp)


# ------------------------------------------------------------ binary losses


def _same_size(t: Array, x: Array, /) -> None:
    if tuple(t.shape) != tuple(x.shape):
        msg = (
            f"Target size ({tuple(t.shape)}) must be the same as input size "
            f"({tuple(x.shape)})."
        )
        raise ValueError(msg)


def _elementwise_weight(weight: Any, like: Array, /, *, xp: ArrayNamespace) -> Array:
    w = array_like(weight, like, name="weight", xp=xp)
    try:
        return xp.broadcast_to(xp.astype(w, like.dtype), tuple(like.shape))
    except (ValueError, RuntimeError, TypeError) as exc:
        msg = (
            f"`weight` must broadcast to the input's shape {tuple(like.shape)}; "
            f"got shape {tuple(w.shape)}."
        )
        raise ValueError(msg) from exc


def binary_cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    r"""``torch.nn.functional.binary_cross_entropy`` of probabilities.

    .. math:: \ell = -w\bigl(y \max(\log p, -100) + (1 - y)
              \max(\log(1 - p), -100)\bigr)

    Parameters
    ----------
    input : array_like
        Probabilities in [0, 1].
    target : array_like
        0/1 or soft targets of the shape of `input`.
    weight : array_like, optional
        Elementwise weights, broadcast to the input's shape.
    size_average, reduce : bool, optional
        Deprecated; either overrides `reduction`.
    reduction : {"mean", "sum", "none"}, optional
        Default: ``"mean"`` (over all elements).

    Returns
    -------
    array
        The loss: 0-d, or of the input's shape for ``"none"``.

    Raises
    ------
    ValueError
        If the shapes differ, or (eager arrays) an input is outside [0, 1]
        (PyTorch raises a RuntimeError).

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit.compat import torch as F
    >>> p = np.asarray([0.0, 1e-50, 0.5])
    >>> F.binary_cross_entropy(p, np.asarray([1.0, 1.0, 1.0]), reduction="none")
    array([100.        , 100.        ,   0.69314718])
    """
    red = _reduction(reduction, size_average, reduce)
    p, xp = _input(input)
    t = array_like(target, p, name="target", xp=xp)
    _same_size(t, p)
    if is_eager(p) and p.size:
        ok = (p >= 0) & (p <= 1)
        if not bool(xp.all(ok)):
            pos = tuple(int(i[0]) for i in xp.nonzero(~ok)) if p.ndim else ()
            value = float(p[pos]) if pos else float(p)
            msg = (
                "all elements of `input` should be between 0 and 1; got "
                f"{value} at position {pos if len(pos) != 1 else pos[0]}."
            )
            raise ValueError(msg)
    pw, out_dtype = to_work(p, xp=xp)
    tw = xp.astype(t, pw.dtype)
    one = const(1.0, pw, xp=xp)
    log_p = log_or(pw, -100.0, xp=xp)
    log_q = log1m_or(pw, -100.0, xp=xp)  # exact log1p(-p), not log(1 - p)
    loss = (tw - one) * log_q - tw * log_p
    if weight is not None:
        loss = loss * _elementwise_weight(weight, loss, xp=xp)
    return finish(loss, red, out_dtype, xp=xp)


def binary_cross_entropy_with_logits(
    input: Any,
    target: Any,
    weight: Any = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: Any = None,
) -> Array:
    r"""``torch.nn.functional.binary_cross_entropy_with_logits``, exact.

    .. math:: \ell = w\bigl((1 - y) x + (1 + (q - 1) y)
              \operatorname{softplus}(-x)\bigr)

    with `pos_weight` ``q`` (default 1) and `weight` ``w`` (default 1).

    Parameters
    ----------
    input : array_like
        Logits.
    target : array_like
        0/1 or soft targets of the shape of `input`.
    weight : array_like, optional
        Elementwise weights, broadcast to the input's shape.
    size_average, reduce : bool, optional
        Deprecated; either overrides `reduction`.
    reduction : {"mean", "sum", "none"}, optional
        Default: ``"mean"`` (over all elements).
    pos_weight : array_like, optional
        ``q >= 0``, broadcast against `input` (one per class on the last
        axis).

    Returns
    -------
    array
        The loss: 0-d, or of the input's shape for ``"none"``.
    """
    red = _reduction(reduction, size_average, reduce)
    x, xp = _input(input)
    t = array_like(target, x, name="target", xp=xp)
    _same_size(t, x)
    if weight is None:
        return sigmoid_cross_entropy(x, t, pos_weight=pos_weight, reduction=red)
    xw, out_dtype = to_work(x, xp=xp)
    loss = sigmoid_cross_entropy(xw, t, pos_weight=pos_weight)
    loss = loss * _elementwise_weight(weight, loss, xp=xp)
    return finish(loss, red, out_dtype, xp=xp)


# -------------------------------------------------------------------- kl_div


def kl_div(
    input: Any,
    target: Any,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    log_target: bool = False,
) -> Array:
    r"""``torch.nn.functional.kl_div``: pointwise ``target (log target - input)``.

    `input` holds log-probabilities ``log q``; `target` holds ``p`` (or
    ``log p`` with `log_target`). Pointwise, as PyTorch:
    ``p (log p - input)``, or ``exp(t) (t - input)`` with `log_target`.
    A target of 0 (``-inf`` with `log_target`) gives 0 whatever `input` is
    (``0 log 0 = 0``); PyTorch gives NaN there for an infinite `input`, and
    for every `input` with ``log_target=True``.

    Parameters
    ----------
    input : array_like
        Log-probabilities.
    target : array_like
        Probabilities (or log-probabilities), broadcast against `input`.
    size_average, reduce : bool, optional
        Deprecated; either overrides `reduction`.
    reduction : {"mean", "batchmean", "sum", "none"}, optional
        ``"batchmean"`` divides the sum by ``input.shape[0]`` (the KL
        divergence per example); ``"mean"`` by the number of elements (and
        warns, as PyTorch). Default: ``"mean"``.
    log_target : bool, optional
        Whether `target` holds log-probabilities. Default: False.

    Returns
    -------
    array
        The loss: 0-d, or the pointwise loss for ``"none"``.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit.compat import torch as F
    >>> logq = np.log(np.asarray([[0.5, 0.5], [0.9, 0.1]]))
    >>> p = np.asarray([[0.5, 0.5], [0.5, 0.5]])
    >>> float(F.kl_div(logq, p, reduction="batchmean"))
    0.2554128118829953
    """
    legacy = size_average is not None or reduce is not None
    if legacy:
        red = _legacy_reduction(size_average, reduce)
    else:
        if reduction == "mean":
            warnings.warn(
                "reduction: 'mean' divides the total loss by both the batch size "
                "and the support size.'batchmean' divides only by the batch size, "
                "and aligns with the KL div math definition.'mean' will be changed "
                "to behave the same as 'batchmean' in the next major release.",
                stacklevel=2,
            )
        red = _reduction(reduction, None, None, ("none", "mean", "sum", "batchmean"))
    x, xp = _input(input)
    t = array_like(target, x, name="target", xp=xp)
    if not xp.isdtype(t.dtype, "real floating"):
        t = as_floating(t, name="target", xp=xp)
    dtype = xp.result_type(x, t)
    x, t = xp.astype(x, dtype), xp.astype(t, dtype)
    try:
        x, t = xp.broadcast_arrays(x, t)
    except (ValueError, RuntimeError, TypeError) as exc:
        msg = (
            f"`target` must broadcast against `input`; got shapes "
            f"{tuple(t.shape)} and {tuple(x.shape)}."
        )
        raise ValueError(msg) from exc
    xw, out_dtype = to_work(x, xp=xp)
    tw = xp.astype(t, xw.dtype)
    zero = const(0.0, tw, xp=xp)
    nan_or_zero = xp.where(xp.isnan(xw), xw, zero)  # NaN input stays NaN
    if log_target:
        absent = tw == const(-math.inf, tw, xp=xp)
        t_safe = xp.where(absent, zero, tw)
        loss = xp.where(absent, nan_or_zero, xp.exp(t_safe) * (t_safe - xw))
    else:
        pos = tw > 0
        log_t = xp.log(xp.where(pos, tw, const(1.0, tw, xp=xp)))
        other = xp.where(tw == 0, nan_or_zero, const(math.nan, tw, xp=xp))
        t_pos, x_pos = xp.where(pos, tw, zero), xp.where(pos, xw, zero)
        loss = xp.where(pos, t_pos * (log_t - x_pos), other)
    if red == "batchmean":
        if x.ndim == 0:
            return _reduce(loss, "sum", out_dtype=out_dtype, xp=xp)
        n = const(float(x.shape[0]), loss, xp=xp)
        return mean_or_nan(loss, n, out_dtype, xp=xp)
    return finish(loss, red, out_dtype, xp=xp)
