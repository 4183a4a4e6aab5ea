r"""Cross entropy of ``hidden @ weight.T (+ bias)`` without the logits.

The logits of a language model's last layer are ``(tokens, vocab)``: at
8192 tokens and 128,256 classes, 4.2 GB in float32, and as much again for
their gradient. :func:`linear_cross_entropy` computes the sparse cross
entropy of those logits in tiles of ``tn`` tokens by ``tv`` classes and never
holds more than one tile: each tile's logits come from the backend's matmul
in the inputs' dtype, are widened to float64 (where the namespace has it),
capped, and reduced to per-token statistics (:func:`_row_stats`), which are
merged across the vocabulary with the online-softmax rule
(:func:`logitkit._streaming._merge_arrays`):

.. math:: m = \max_j x_j, \quad S = \sum_{j \ne k} e^{x_j - m}, \quad
          x_y, \quad T = \sum_j (m - x_j) \ (\text{for smoothing}),

and the loss of a token with label ``y`` is, with ``L = log1p(S)`` and
``d_y = x_y - m <= 0``,

.. math:: \ell = L - (1 - \varepsilon) d_y + \frac{\varepsilon}{V} T
          + z (m + L)^2,

a sum of non-negative terms (the form of :mod:`logitkit._cross_entropy`).

The gradient takes a second pass over the same tiles (recomputation):
``G = (p (1 + 2 z lse) - y) * scale``, chained through the softcap, with
``p_y - 1 = (expm1(d_y) - S) / (1 + S)`` for the label (no cancellation for a
confident right answer), then ``dhidden += G @ W_j``, ``dweight_j += G.T @ H_i``
and ``dbias_j += sum(G)``.
"""

from __future__ import annotations

import math
import operator
from typing import Any, NamedTuple

from array_api_compat import array_namespace, device

from ._cross_entropy import _check_int_labels, _check_kept_positions, _labels_array
from ._helpers import (
    adopt,
    as_array,
    as_floating,
    const,
    is_eager,
    namespace,
    round_to,
    work_dtype,
)
from ._one_hot import check_labels
from ._reduction import (
    check_label_smoothing,
    check_nonnegative,
    check_reduction,
    loss_dtype,
    reduce,
)
from ._softmax import _row_stats
from ._streaming import _merge_arrays
from ._typing import Array, ArrayNamespace, DType

__all__ = ["linear_cross_entropy"]

#: Entries of one logits tile (tokens x classes) when `chunk_size` is None:
#: 2**20, i.e. 8 MiB as the float64 working copy (4 MiB in float32). The
#: working set of a tile is a few such arrays (the logits, their float64
#: copy, exp, the gradient tile).
CHUNK_ELEMENTS = 2**20
#: The vocabulary tile is at least this wide when `chunk_size` is None (as
#: long as the vocabulary is), so that each matmul is a real GEMM.
_MIN_VOCAB_TILE = 1024


def _chunk_sizes(n: int, v: int, chunk_size: Any, /) -> tuple[int, int]:
    """``(tokens per tile, classes per tile)`` from `chunk_size` and the shapes."""

    def positive(value: Any) -> int:
        if isinstance(value, bool):
            msg = f"`chunk_size` must be a positive int or a pair of them; got {chunk_size!r}."
            raise TypeError(msg)
        try:
            c = operator.index(value)
        except TypeError:
            msg = f"`chunk_size` must be a positive int or a pair of them; got {chunk_size!r}."
            raise TypeError(msg) from None
        if c <= 0:
            msg = f"`chunk_size` must be positive; got {chunk_size!r}."
            raise ValueError(msg)
        return c

    if chunk_size is None:
        tn = min(n, max(1, CHUNK_ELEMENTS // min(v, _MIN_VOCAB_TILE)))
        tv = min(v, max(1, CHUNK_ELEMENTS // max(tn, 1)))
    elif isinstance(chunk_size, tuple):
        if len(chunk_size) != 2:
            msg = (
                "`chunk_size` must be an int (classes per tile) or a pair "
                f"(tokens, classes); got {chunk_size!r}."
            )
            raise ValueError(msg)
        tn, tv = positive(chunk_size[0]), positive(chunk_size[1])
    else:
        tv = positive(chunk_size)
        tn = max(1, CHUNK_ELEMENTS // min(tv, v))
    return max(1, min(tn, n)), min(tv, v)


class _Setup(NamedTuple):
    h: Array  # (N, D), compute dtype
    w: Array  # (V, D), compute dtype
    b: Array | None  # (V,), compute dtype
    lab: Array  # (N,), safe labels (0 where ignored or out of range)
    kept: Array | None  # (N,) bool, not ignored
    bad: Array | None  # (N,) bool, out of range (lazy backends only)
    batch: tuple[int, ...]
    n: int
    v: int
    tn: int
    tv: int
    eps: float
    z: float
    cap: float | None
    reduction: str
    out_dtype: DType
    wd: DType  # the working dtype of the statistics
    dtypes: tuple[DType, DType, DType | None]  # of hidden, weight, bias
    xp: ArrayNamespace


def _setup(
    hidden: Any,
    weight: Any,
    labels: Any,
    bias: Any,
    ignore_index: int | None,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    reduction: str,
    chunk_size: Any,
    xp: ArrayNamespace | None,
) -> _Setup:
    h = as_array(hidden, name="hidden")
    w = as_array(weight, name="weight")
    b = None if bias is None else as_array(bias, name="bias")
    xp = namespace(h, w, b, xp=xp)
    h = as_floating(
        h if array_namespace(h) is xp else xp.asarray(h), name="hidden", xp=xp
    )
    w = as_floating(adopt(w, h, xp=xp), name="weight", xp=xp)
    if b is not None:
        b = as_floating(adopt(b, h, xp=xp), name="bias", xp=xp)
    if h.ndim < 1:
        msg = "`hidden` must have at least one dimension (the features); got a scalar."
        raise ValueError(msg)
    if w.ndim != 2:
        msg = f"`weight` must be 2-D (vocab, features); got shape {tuple(w.shape)}."
        raise ValueError(msg)
    if h.shape[-1] != w.shape[1]:
        msg = (
            "`hidden` and `weight` must have the same feature size (their last "
            f"axis); got shapes {tuple(h.shape)} and {tuple(w.shape)}."
        )
        raise ValueError(msg)
    v = int(w.shape[0])
    if v == 0:
        msg = "`weight` must have at least one row (class); got shape (0, ...)."
        raise ValueError(msg)
    if b is not None and tuple(b.shape) != (v,):
        msg = (
            f"`bias` must have shape ({v},) (one value per row of `weight`); got "
            f"shape {tuple(b.shape)} for weight of shape {tuple(w.shape)}."
        )
        raise ValueError(msg)
    lab = _labels_array(labels, h, xp=xp)
    _check_int_labels(lab)
    batch = tuple(h.shape[:-1])
    if tuple(lab.shape) != batch:
        msg = (
            f"`labels` must have shape `hidden.shape[:-1]` {batch}; got shape "
            f"{tuple(lab.shape)} for hidden of shape {tuple(h.shape)}."
        )
        raise ValueError(msg)
    eps = check_label_smoothing(label_smoothing)
    z = check_nonnegative(z_loss, name="z_loss")
    cap = None
    if softcap is not None:
        cap = check_nonnegative(softcap, name="softcap")
        if cap == 0.0:
            msg = f"`softcap` must be a positive number; got {softcap!r}."
            raise ValueError(msg)
    check_reduction(reduction)
    if ignore_index is not None and (
        isinstance(ignore_index, bool) or not isinstance(ignore_index, int)
    ):
        msg = f"`ignore_index` must be an int or None; got {ignore_index!r}."
        raise TypeError(msg)
    n = math.prod(batch)
    tn, tv = _chunk_sizes(n, v, chunk_size)

    kept = None
    if ignore_index is not None:
        kept = lab != xp.asarray(int(ignore_index), dtype=lab.dtype, device=device(h))
    eager = is_eager(lab) and is_eager(h) and (kept is None or is_eager(kept))
    if eager:
        if kept is None:
            check_labels(lab, v, name="labels", xp=xp)
        else:
            _check_kept_positions(lab, kept, v, xp=xp)
    lab = xp.reshape(lab, (n,))
    kept = None if kept is None else xp.reshape(kept, (n,))
    zero_i = xp.zeros_like(lab)
    safe = lab if kept is None else xp.where(kept, lab, zero_i)
    bad = None
    if not eager:
        bad = (safe < 0) | (safe >= v)
        safe = xp.where(bad, zero_i, safe)

    dtypes = (h.dtype, w.dtype, None if b is None else b.dtype)
    cd = h.dtype if b is None else xp.result_type(h.dtype, b.dtype)
    cd = xp.result_type(cd, w.dtype)
    h = xp.reshape(h, (n, int(h.shape[-1])))
    if kept is not None:
        # Ignored tokens' hidden states take no part: zeros, so that a NaN
        # there never reaches dweight (0 * NaN) or the other tokens.
        h = xp.where(kept[:, None], h, const(0.0, h, xp=xp))
    h = h if h.dtype == cd else xp.astype(h, cd)
    w = w if w.dtype == cd else xp.astype(w, cd)
    if b is not None and b.dtype != cd:
        b = xp.astype(b, cd)
    out_dtype = loss_dtype(cd, xp=xp)
    wd = work_dtype(out_dtype, xp=xp)
    return _Setup(
        h, w, b, safe, kept, bad, batch, n, v, tn, tv, eps, z, cap, reduction,
        out_dtype, wd, dtypes, xp,
    )  # fmt: skip


def _tile(
    sp: _Setup, i0: int, i1: int, j0: int, j1: int, /
) -> tuple[Array, Array | None]:
    """The float64 (capped) logits of tokens ``[i0, i1)`` and classes ``[j0, j1)``.

    Also ``tanh(x / cap)`` for the gradient of the softcap.
    """
    xp = sp.xp
    x = xp.matmul(sp.h[i0:i1, :], xp.permute_dims(sp.w[j0:j1, :], (1, 0)))
    if sp.b is not None:
        x = x + sp.b[j0:j1]
    x = x if x.dtype == sp.wd else xp.astype(x, sp.wd)
    if sp.cap is None:
        return x, None
    c = const(sp.cap, x, xp=xp)
    t = xp.tanh(x / c)
    return c * t, t


class _Stats(NamedTuple):
    m: Array  # (N,) max of the (capped) logits
    s: Array  # (N,) sum of exp(x - m) over all classes but one maximum
    xy: Array  # (N,) the label's logit
    t: Array | None  # (N,) sum of (m - x_j) (label smoothing only)


def _label_mask(sp: _Setup, i0: int, i1: int, j0: int, j1: int, /) -> Array:
    xp = sp.xp
    cols = xp.arange(j0, j1, dtype=sp.lab.dtype, device=device(sp.h))
    return cols == sp.lab[i0:i1, None]


def _stats(sp: _Setup, /) -> _Stats:
    """Pass 1: the per-token statistics, merged over the vocabulary tiles."""
    xp = sp.xp
    if sp.n == 0:
        empty = xp.zeros((0,), dtype=sp.wd, device=device(sp.h))
        return _Stats(empty, empty, empty, empty if sp.eps > 0.0 else None)
    ms, ss, xys, ts = [], [], [], []
    for i0 in range(0, sp.n, sp.tn):
        i1 = min(i0 + sp.tn, sp.n)
        m = s = xy = t = None
        seen = 0
        for j0 in range(0, sp.v, sp.tv):
            j1 = min(j0 + sp.tv, sp.v)
            x, _ = _tile(sp, i0, i1, j0, j1)
            st = _row_stats(x, refine=False, xp=xp)
            m_b, s_b = st.m[:, 0], st.s[:, 0]
            zero = const(0.0, x, xp=xp)
            xy_b = xp.sum(xp.where(_label_mask(sp, i0, i1, j0, j1), x, zero), axis=-1)
            t_b = None
            if sp.eps > 0.0:
                t_b = xp.sum(m_b[:, None] - x, axis=-1)
            if m is None:
                m, s, xy, t = m_b, s_b, xy_b, t_b
            else:
                m_new, s, _ = _merge_arrays(m, s, None, m_b, s_b, None, xp=xp)
                xy = xy + xy_b
                if t is not None and t_b is not None:
                    # Re-centre both sums on the new maximum: non-negative terms.
                    t = (t + float(seen) * (m_new - m)) + (
                        t_b + float(j1 - j0) * (m_new - m_b)
                    )
                m = m_new
            seen += j1 - j0
        ms.append(m)
        ss.append(s)
        xys.append(xy)
        ts.append(t)

    def cat(a: list[Any]) -> Array:
        return a[0] if len(a) == 1 else xp.concat(a, axis=0)

    return _Stats(cat(ms), cat(ss), cat(xys), cat(ts) if sp.eps > 0.0 else None)


def _count(sp: _Setup, /) -> Array:
    """The denominator of ``"mean"``: the number of kept tokens (0-d, work dtype)."""
    xp = sp.xp
    if sp.kept is None:
        return xp.asarray(float(sp.n), dtype=sp.wd, device=device(sp.h))
    return xp.sum(xp.astype(sp.kept, sp.wd))


def _token_losses(sp: _Setup, st: _Stats, /) -> Array:
    """Per-token losses (work dtype, 0 where ignored, NaN for bad labels)."""
    xp = sp.xp
    zero = const(0.0, st.s, xp=xp)
    big = xp.log1p(st.s)
    dy = st.xy - st.m
    loss = big - (dy if sp.eps == 0.0 else const(1.0 - sp.eps, dy, xp=xp) * dy)
    if st.t is not None:
        loss = loss + const(sp.eps / sp.v, loss, xp=xp) * st.t
    if sp.z > 0.0:
        lse = st.m + big
        loss = loss + const(sp.z, loss, xp=xp) * (lse * lse)
    if sp.kept is not None:
        loss = xp.where(sp.kept, loss, zero)
    if sp.bad is not None:
        loss = xp.where(sp.bad, const(float("nan"), loss, xp=xp), loss)
    return loss


def _value(sp: _Setup, loss: Array, count: Array, /) -> Array:
    xp = sp.xp
    return reduce(
        xp.reshape(loss, sp.batch),
        sp.reduction,
        out_dtype=sp.out_dtype,
        count=count,
        xp=xp,
    )


class _LabelGrad(NamedTuple):
    """Per-token factors of ``G``, the gradient of a token's loss in its logits.

    ``G_j = e^{x_j - m} inv c1 - eps / V`` off the label and ``g_lab`` at it,
    before the row factor (:func:`_row_factor`) and the softcap's slope.
    """

    inv: Array  # 1 / (1 + S): p_j = e^{x_j - m} inv
    c1: Array | None  # 1 + 2 z lse, the z-loss's factor of p (None without it)
    g_lab: Array  # p_y c1 - (1 - eps) - eps / V, the label's entry

    def block(self, i0: int, i1: int, /) -> _LabelGrad:
        """Tokens ``[i0, i1)`` as ``(tokens, 1)`` columns, to broadcast on a tile."""
        c1 = None if self.c1 is None else self.c1[i0:i1, None]
        return _LabelGrad(self.inv[i0:i1, None], c1, self.g_lab[i0:i1, None])


def _label_grad(
    m: Array,
    s: Array,
    dy: Array,
    /,
    *,
    z: float,
    eps: float,
    v: int,
    xp: ArrayNamespace,
) -> _LabelGrad:
    """The factors of ``G`` from the statistics ``m``, ``S`` and ``d_y = x_y - m``.

    Elementwise (any shape); `v` is the number of classes that label
    smoothing spreads over (the global vocabulary of a sharded one). The
    Python scalars take the arrays' dtype (no 0-d arrays to allocate: the
    PyTorch path calls this for every block of rows).
    """
    inv = 1.0 / (1.0 + s)
    # The label's entry: p_y (1 + 2 z lse) - (1 - eps) - eps / V, with
    # p_y - 1 = (expm1(d_y) - S) / (1 + S): no cancellation at p_y ~ 1.
    g_lab = (xp.expm1(dy) - s) * inv
    c1 = None
    if z > 0.0:
        c1 = 1.0 + (2.0 * z) * (m + xp.log1p(s))
        g_lab = g_lab + (c1 - 1.0) * (xp.exp(dy) * inv)
    if eps > 0.0:
        g_lab = g_lab + eps * (v - 1) / v
    return _LabelGrad(inv, c1, g_lab)


def _row_factor(
    like: Array,
    count: Array,
    reduction: str,
    /,
    *,
    weight: Array | None = None,
    keep: Array | None = None,
    bad: Array | None = None,
    xp: ArrayNamespace,
) -> Array:
    """The factor of each token's row of ``G``, of the shape and dtype of `like`.

    ``1 / count`` for ``"mean"`` (0 when `count` is 0), else 1; times
    `weight` (the upstream gradient: one per token, or 0-d); 0 where `keep`
    is False; NaN where `bad` (a label out of range on a lazy backend).
    """
    zero = const(0.0, like, xp=xp)
    one = const(1.0, like, xp=xp)
    if reduction == "mean":
        pos = count > zero
        scale = xp.where(pos, one / xp.where(pos, count, one), zero)
    else:
        scale = one
    row = xp.ones_like(like) * scale
    if weight is not None:
        row = row * xp.astype(weight, row.dtype)
    if keep is not None:
        row = xp.where(keep, row, zero)
    if bad is not None:
        row = xp.where(bad, const(float("nan"), row, xp=xp), row)
    return row


def _logit_grad(
    e: Array,
    lg: _LabelGrad,
    row: Array,
    is_label: Array,
    keep: Array | None,
    /,
    *,
    spread: float,
    xp: ArrayNamespace,
) -> Array:
    """``G`` of a tile, from ``e = exp(x - m)`` (tokens x classes).

    `lg` and `row` are ``(tokens, 1)`` columns (:meth:`_LabelGrad.block`),
    `is_label` marks each token's label in the tile, `keep` ``(tokens, 1)``
    the tokens with a gradient (an ignored row with NaN logits stays 0) and
    `spread` is ``eps / V``. Not the softcap's slope (:func:`_cap_slope`).
    """
    g = e * lg.inv
    if lg.c1 is not None:
        g = g * lg.c1
    if spread > 0.0:
        g = g - spread
    g = xp.where(is_label, lg.g_lab, g)
    if keep is None:
        return g * row
    return xp.where(keep, g * row, const(0.0, g, xp=xp))


def _cap_slope(t: Array, /) -> Array:
    """``d/dx [cap tanh(x / cap)] = 1 - t**2`` from ``t = tanh(x / cap)``."""
    return (1.0 - t) * (1.0 + t)


def _linear_cross_entropy(
    hidden: Any,
    weight: Any,
    labels: Any,
    bias: Any,
    ignore_index: int | None,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    reduction: str,
    chunk_size: Any,
    want_grad: bool,
    xp: ArrayNamespace | None,
    *,
    row_weight: Array | None = None,
) -> tuple[Array, ...]:
    """The loss and, with `want_grad`, the gradients of hidden, weight (, bias).

    `row_weight` (the shape of `labels`) multiplies each token's row of the
    gradient: the upstream gradient of a ``"none"`` loss.
    """
    sp = _setup(
        hidden, weight, labels, bias, ignore_index, label_smoothing, z_loss,
        softcap, reduction, chunk_size, xp,
    )  # fmt: skip
    st = _stats(sp)
    count = _count(sp)
    value = _value(sp, _token_losses(sp, st), count)
    if not want_grad:
        return (value,)
    return (value, *_grads(sp, st, count, row_weight))


def _grads(
    sp: _Setup, st: _Stats, count: Array, row_weight: Array | None = None, /
) -> tuple[Array, ...]:
    """Pass 2: recompute each tile, form its gradient, two matmuls per tile."""
    xp = sp.xp
    lg = _label_grad(st.m, st.s, st.xy - st.m, z=sp.z, eps=sp.eps, v=sp.v, xp=xp)
    rw = None
    if row_weight is not None:
        rw = xp.reshape(xp.asarray(row_weight, device=device(sp.h)), (sp.n,))
    row = _row_factor(
        st.s, count, sp.reduction, weight=rw, keep=sp.kept, bad=sp.bad, xp=xp
    )

    # The GEMMs run in the inputs' dtype, float32 for float16/bfloat16 (whose
    # sums over tiles would otherwise round at every tile); one rounding at the end.
    cd = sp.h.dtype if xp.finfo(sp.h.dtype).bits >= 32 else xp.float32
    tiny = const(float(xp.finfo(cd).smallest_normal), st.s, xp=xp)
    dh: list[Array | None] = [None] * len(range(0, sp.n, sp.tn))
    dw: list[Array] = []
    db: list[Array] = []
    for j0 in range(0, sp.v, sp.tv):
        j1 = min(j0 + sp.tv, sp.v)
        dw_j = xp.zeros((j1 - j0, int(sp.w.shape[1])), dtype=cd, device=device(sp.h))
        db_j = xp.zeros((j1 - j0,), dtype=sp.wd, device=device(sp.h))
        w_j = sp.w[j0:j1, :]
        w_j = w_j if w_j.dtype == cd else xp.astype(w_j, cd)
        for c, i0 in enumerate(range(0, sp.n, sp.tn)):
            i1 = min(i0 + sp.tn, sp.n)
            x, t = _tile(sp, i0, i1, j0, j1)
            g = _logit_grad(
                xp.exp(x - st.m[i0:i1, None]),
                lg.block(i0, i1),
                row[i0:i1, None],
                _label_mask(sp, i0, i1, j0, j1),
                None if sp.kept is None else sp.kept[i0:i1, None],
                spread=sp.eps / sp.v,
                xp=xp,
            )
            if t is not None:
                g = g * _cap_slope(t)
            if sp.b is not None:
                db_j = db_j + xp.sum(g, axis=0)
            if g.dtype != cd:
                # Entries below the smallest normal of the compute dtype add
                # less than its ulp to any sum, but subnormal operands slow
                # BLAS down by orders of magnitude: flush them to zero.
                g = xp.where(xp.abs(g) < tiny, const(0.0, g, xp=xp), g)
            gc = g if g.dtype == cd else xp.astype(g, cd)
            prev = dh[c]
            step = xp.matmul(gc, w_j)
            dh[c] = step if prev is None else prev + step
            h_i = sp.h[i0:i1, :]
            h_i = h_i if h_i.dtype == cd else xp.astype(h_i, cd)
            dw_j = dw_j + xp.matmul(xp.permute_dims(gc, (1, 0)), h_i)
        dw.append(dw_j)
        db.append(db_j)
    d = int(sp.h.shape[1])
    parts = [a for a in dh if a is not None]
    if not parts:
        dhidden = xp.zeros((0, d), dtype=cd, device=device(sp.h))
    else:
        dhidden = parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)
    dhidden = xp.reshape(dhidden, (*sp.batch, d))
    dweight = dw[0] if len(dw) == 1 else xp.concat(dw, axis=0)
    h_dt, w_dt, b_dt = sp.dtypes
    out = [round_to(dhidden, h_dt, xp=xp), round_to(dweight, w_dt, xp=xp)]
    if sp.b is not None:
        dbias = db[0] if len(db) == 1 else xp.concat(db, axis=0)
        out.append(round_to(dbias, b_dt, xp=xp))
    return tuple(out)


def linear_cross_entropy(
    hidden: Any,
    weight: Any,
    labels: Any,
    /,
    *,
    bias: Any = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: str = "mean",
    chunk_size: int | tuple[int, int] | None = None,
    xp: ArrayNamespace | None = None,
) -> Array:
    r"""Cross entropy of ``hidden @ weight.T (+ bias)``, never forming the logits.

    The value of
    ``sparse_softmax_cross_entropy(hidden @ weight.T + bias, labels, ...)``,
    computed in tiles of tokens by classes with the online (max, sum) merge:
    the extra memory is that of one tile, not of the (tokens x vocab)
    logits. With ``x`` the (capped) logits of a token, ``m`` their maximum,
    ``S = sum_{j != k} e^{x_j - m}`` and label ``y``,

    .. math:: \ell = \operatorname{log1p}(S) - (1 - \varepsilon)(x_y - m)
              + \frac{\varepsilon}{V} \sum_j (m - x_j)
              + z \operatorname{logsumexp}(x)^2

    Parameters
    ----------
    hidden : array_like
        Hidden states, ``(N, D)`` or ``(..., D)``.
    weight : array_like
        The output projection (unembedding), ``(V, D)``.
    labels : array_like of int
        Class ids in ``[0, V)`` of shape ``hidden.shape[:-1]``.
    bias : array_like, optional
        ``(V,)``, added to the logits.
    ignore_index : int, optional
        Tokens with this label have loss 0 and no gradient and are left out
        of ``"mean"`` (a batch with every token ignored has mean 0).
    label_smoothing : float, optional
        ``eps`` in [0, 1], spread over all ``V`` classes (PyTorch's rule).
    z_loss : float, optional
        The coefficient of ``logsumexp(x)**2`` per kept token (PaLM).
    softcap : float, optional
        ``cap > 0``: the logits become ``cap tanh(x / cap)`` first (Gemma 2).
    reduction : {"mean", "sum", "none"}, optional
        Default ``"mean"`` (over the kept tokens), as for a training loss;
        ``"none"`` gives one loss per token, of the shape of `labels`.
    chunk_size : int or (int, int), optional
        The tile: an int is the number of classes per tile (the tokens per
        tile are then chosen to keep a tile at :data:`CHUNK_ELEMENTS`
        entries), a pair is ``(tokens, classes)``. ``None`` (the default)
        chooses both from the shapes: tiles of at most ``2**20`` logits
        (8 MiB as float64), at least 1024 classes wide.
    xp : array_namespace, optional
        The namespace of the arrays. Default: inferred.

    Returns
    -------
    array
        The loss: 0-d, or of the shape of `labels` for ``"none"``; float32
        for float16/bfloat16 inputs, else the inputs' (promoted) dtype.

    Raises
    ------
    ValueError
        If `hidden` and `weight` differ in their feature size, `labels` does
        not match the tokens (both shapes are named), `bias` is not
        ``(V,)``, a label is outside ``[0, V)`` (its value and position are
        named; eager arrays only: under ``jax.jit`` or dask that token's
        loss is NaN), `chunk_size` is not positive, or an option is out of
        range.
    TypeError
        If `labels` is not integer, an array is complex, or `chunk_size` is
        not an int or a pair of ints.

    See Also
    --------
    logitkit.sparse_softmax_cross_entropy : the same loss of given logits.
    logitkit.LogSumExp : the online (max, sum) state.

    Notes
    -----
    Each tile's logits are computed by the backend's matmul in the inputs'
    dtype (as ``hidden @ weight.T`` would be), then widened to float64
    where the namespace has it; the per-token statistics are accumulated in
    float64 and every loss is rounded once. The reduced loss of float32
    inputs is within 2 ulp of the exact loss of the float32 logits. The
    tiling changes which matmuls run, so per-token losses can differ from
    those of the materialised logits by the matmul's own rounding.
    Non-finite logits (from non-finite inputs) give NaN or inf losses.

    .. versionadded:: 0.2

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit import linear_cross_entropy
    >>> h = np.asarray([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    >>> w = np.asarray([[1.0, 1.0], [2.0, -1.0], [0.0, 3.0]])
    >>> float(linear_cross_entropy(h, w, np.asarray([0, 2, 1]), chunk_size=2))
    1.2778970771611393
    >>> import logitkit as lk  # the same as on the materialised logits
    >>> float(lk.sparse_softmax_cross_entropy(h @ w.T, [0, 2, 1], reduction="mean"))
    1.2778970771611393
    """
    (value,) = _linear_cross_entropy(
        hidden, weight, labels, bias, ignore_index, label_smoothing, z_loss,
        softcap, reduction, chunk_size, False, xp,
    )  # fmt: skip
    return value


def _grad_linear_cross_entropy(
    hidden: Any,
    weight: Any,
    labels: Any,
    /,
    *,
    bias: Any = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: str = "mean",
    chunk_size: int | tuple[int, int] | None = None,
    xp: ArrayNamespace | None = None,
) -> tuple[Array, ...]:
    r""":func:`linear_cross_entropy` and its gradients, tile by tile.

    With ``G`` the gradient of the loss with respect to the (uncapped)
    logits, ``(p (1 + 2 z lse) - y) * scale * (1 - tanh(x / cap)**2)``
    (``y`` the smoothed one-hot label, ``scale`` ``1 / count`` for
    ``"mean"``, 0 for ignored tokens),

    .. math:: \frac{\partial \ell}{\partial H} = G W, \qquad
              \frac{\partial \ell}{\partial W} = G^\top H, \qquad
              \frac{\partial \ell}{\partial b} = \textstyle\sum_i G_i.

    A first pass computes the per-token statistics, a second recomputes
    each tile of logits, forms its ``G`` and adds ``G_ij W_j`` to the
    token tile's ``dhidden`` and ``G_ij^T H_i`` to the vocabulary tile's
    ``dweight``: extra memory stays that of a tile (plus the outputs).

    Parameters
    ----------
    hidden, weight, labels, bias, ignore_index, label_smoothing, z_loss, \
softcap, reduction, chunk_size, xp
        As :func:`linear_cross_entropy`.

    Returns
    -------
    tuple of arrays
        ``(loss, dhidden, dweight)``, plus ``dbias`` when `bias` is given:
        the gradients of the (reduced, or summed) loss, each of the shape
        and dtype of its argument. Ignored tokens get zero rows.

    Raises
    ------
    ValueError, TypeError
        As :func:`linear_cross_entropy`.

    Examples
    --------
    >>> import numpy as np
    >>> import logitkit as lk
    >>> h = np.asarray([[0.0, 0.0]])
    >>> w = np.asarray([[1.0, 0.0], [0.0, 1.0]])
    >>> loss, dh, dw = lk.grad.linear_cross_entropy(h, w, np.asarray([0]))
    >>> float(loss), dh, dw  # p = (1/2, 1/2): dlogits = (-1/2, 1/2)
    (0.6931471805599453, array([[-0.5,  0.5]]), array([[0., 0.],
           [0., 0.]]))
    """
    return _linear_cross_entropy(
        hidden, weight, labels, bias, ignore_index, label_smoothing, z_loss,
        softcap, reduction, chunk_size, True, xp,
    )  # fmt: skip
