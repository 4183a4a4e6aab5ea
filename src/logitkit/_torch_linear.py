r"""``lk.torch.linear_cross_entropy``: the fused linear cross entropy for PyTorch.

A :class:`torch.autograd.Function` around the loss of
:func:`logitkit.linear_cross_entropy`, for a training step: the logits
``hidden @ weight.T (+ bias)`` are never held, and the backward pass needs no
second look at them.

With the default ``chunk_size=None`` it takes PyTorch's fast path: tiles of
``tn`` tokens by the *whole* vocabulary (``tn * V`` at most
  :data:`TILE_ELEMENTS`, 64 MiB in float32), one GEMM for the tile's logits,
the per-token statistics in float64 (rows of the tile widened a few at a
time), and — when a gradient is wanted and the reduction is ``"mean"`` or
``"sum"`` — the gradient of the tile formed at once ("gradient in forward")
and pushed through the two GEMMs of the backward,

.. math:: dH_i = G_i W, \qquad dW \mathrel{+}= G_i^\top H_i, \qquad
          db \mathrel{+}= \textstyle\sum_i G_i ,

so forward and backward cost the three GEMMs of the naive loss and no
more; ``backward`` only scales the saved gradients by the upstream 0-d
gradient. ``reduction="none"`` cannot know its upstream per-token weights
in the forward, so its backward recomputes the tiles (four GEMMs).

The statistics are those of :mod:`logitkit._chunked` (``m``, ``S`` without
one maximum, the label's logit, ``sum_j (m - x_j)``), so the losses are
those of the portable :func:`logitkit.linear_cross_entropy` up to the
rounding of the BLAS: the tests compare both. An explicit `chunk_size`
runs the portable tiles (vocabulary tiles included) with the same autograd
wiring.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from ._chunked import (
    _cap_slope,
    _count,
    _label_grad,
    _linear_cross_entropy,
    _row_factor,
    _Setup,
    _setup,
    _Stats,
    _token_losses,
    _value,
)

__all__ = ["linear_cross_entropy"]

#: Entries of one (tokens x vocabulary) tile of the fast path: 2**24, i.e.
#: 64 MiB of float32 logits (the tile's buffer is reused for its gradient).
TILE_ELEMENTS = 2**24
#: Entries of the float64 rows widened at a time for the statistics: 1 MiB,
#: so that the passes over them stay in a core's L2 cache.
ROW_ELEMENTS = 2**17

_NARROW = (torch.float16, torch.bfloat16)


def _fast(
    sp: _Setup,
    count: torch.Tensor,
    *,
    want: tuple[bool, bool, bool],
    row_weight: torch.Tensor | None,
) -> tuple[_Stats, list[torch.Tensor | None]]:
    """One pass over token tiles of the whole vocabulary.

    Returns the float64 per-token statistics and, for each of `want`
    (hidden, weight, bias), its gradient (``None`` where not wanted or no
    gradient is wanted at all): the gradient of the sum of the per-token
    losses, each row times its factor (``1 / count`` for ``"mean"``, and
    `row_weight`, the upstream gradient, when given).
    """
    h, w, b, xp = sp.h, sp.w, sp.b, sp.xp
    n, v, d = sp.n, sp.v, int(h.shape[1])
    f64 = torch.float64
    dev = h.device
    m_all = torch.empty(n, dtype=f64, device=dev)
    s_all = torch.empty(n, dtype=f64, device=dev)
    xy_all = torch.empty(n, dtype=f64, device=dev)
    t_all = torch.empty(n, dtype=f64, device=dev) if sp.eps > 0.0 else None
    grad = any(want)
    cd = h.dtype
    acc = torch.float32 if cd in _NARROW else cd  # accumulate narrow in float32
    dh = torch.empty((n, d), dtype=cd, device=dev) if want[0] else None
    dw = torch.empty((v, d), dtype=acc, device=dev) if want[1] else None
    db = torch.zeros(v, dtype=f64, device=dev) if want[2] and b is not None else None

    if grad:
        rw = None if row_weight is None else row_weight.reshape(n)
        row = _row_factor(m_all, count, sp.reduction, weight=rw, keep=sp.kept, xp=xp)
        spread = sp.eps / v
        tiny = torch.finfo(cd).smallest_normal
        inf = float("inf")

    tn = max(1, min(n, TILE_ELEMENTS // v))
    rn = max(1, min(tn, ROW_ELEMENTS // v))
    wt = w.T
    first_dw = True
    # The ignored tokens, found once (one device-to-host copy, not one a block).
    # _setup zeroed their hidden rows, but a non-finite weight or bias still
    # makes their logits NaN (0 * inf): their rows are zeroed below, so that
    # their gradient rows stay 0 and no NaN reaches dW or db.
    ignored = None if sp.kept is None else torch.nonzero(~sp.kept)[:, 0]
    ignored_at = [] if ignored is None else ignored.tolist()
    # Reused buffers: fresh large allocations cost page faults at every tile.
    tile = torch.empty((min(tn, n), v), dtype=cd, device=dev)
    rows = torch.empty((rn, v), dtype=f64, device=dev)
    for i0 in range(0, n, tn):
        i1 = min(i0 + tn, n)
        h_i = h[i0:i1]
        x = tile[: i1 - i0]
        if b is not None:
            torch.addmm(b, h_i, wt, out=x)
        else:
            torch.matmul(h_i, wt, out=x)
        for r0 in range(0, i1 - i0, rn):
            r1 = min(r0 + rn, i1 - i0)
            g0, g1 = i0 + r0, i0 + r1
            xr = rows[: r1 - r0]
            xr.copy_(x[r0:r1])
            lo, hi = bisect_left(ignored_at, g0), bisect_left(ignored_at, g1)
            if ignored is not None and hi > lo:  # ignored rows: zeros
                xr.index_fill_(0, ignored[lo:hi] - g0, 0.0)
            t = None
            if sp.cap is not None:
                t = torch.tanh(xr.div_(sp.cap))
                xr = torch.mul(t, sp.cap, out=xr)
            m, k = torch.max(xr, dim=1, keepdim=True)
            lab = sp.lab[g0:g1, None]
            xy = torch.gather(xr, 1, lab)
            e = xr.sub_(m)  # d = x - m <= 0, in place
            if t_all is not None:
                t_all[g0:g1] = -torch.sum(e, dim=1)
            dy = xy - m
            e.exp_()
            e.scatter_(1, k, 0.0)  # the sum leaves one maximum out
            s = torch.sum(e, dim=1, keepdim=True)
            m_all[g0:g1] = m[:, 0]
            s_all[g0:g1] = s[:, 0]
            xy_all[g0:g1] = xy[:, 0]
            if not grad:
                continue
            # G = e f - eps/V r, in place in the rows' buffer: r the row's
            # factor, f = r c1 / (1 + S) (at the maximum e = 1), g_lab r at
            # the label (the factors of _chunked._label_grad).
            lg = _label_grad(m, s, dy, z=sp.z, eps=sp.eps, v=v, xp=xp)
            r = row[g0:g1, None]
            f = lg.inv * r
            if lg.c1 is not None:
                f = f * lg.c1
            # Entries of G below the smallest normal of the compute dtype add
            # less than its ulp to any sum, but subnormal operands slow BLAS
            # down: flush them (e >= 0, so one comparison per entry).
            af = torch.abs(f)
            thr = torch.where(af > 0.0, tiny / torch.where(af > 0.0, af, 1.0), inf)
            g = e.masked_fill_(e < thr, 0.0).mul_(f)
            g.scatter_(1, k, f)
            if sp.eps > 0.0:
                g.sub_(spread * r)
            g.scatter_(1, lab, lg.g_lab * r)
            if t is not None:
                g.mul_(_cap_slope(t))
            if db is not None:
                db += torch.sum(g, dim=0)
            x[r0:r1] = g  # the tile's buffer now holds its gradient
        if not grad:
            continue
        if dh is not None:
            torch.matmul(x, w, out=dh[i0:i1])
        if dw is not None:
            xt, hi = (x.T, h_i) if acc == cd else (x.T.to(acc), h_i.to(acc))
            if first_dw:  # written, not added: no pass to zero dW first
                torch.matmul(xt, hi, out=dw)
                first_dw = False
            else:
                dw.addmm_(xt, hi)
    if dw is not None and first_dw:
        dw.zero_()  # no tokens
    stats = _Stats(m_all, s_all, xy_all, t_all)
    grads: list[torch.Tensor | None] = [dh, dw, db]
    return stats, grads


def _rounded(
    sp: _Setup, grads: list[torch.Tensor | None]
) -> tuple[torch.Tensor | None, ...]:
    """Gradients in the dtypes and shapes of hidden, weight and bias."""
    dh, dw, db = grads
    h_dt, w_dt, b_dt = sp.dtypes
    if dh is not None:
        dh = dh.reshape(*sp.batch, int(sp.h.shape[1])).to(h_dt)
    if dw is not None:
        dw = dw.to(w_dt)
    if db is not None and b_dt is not None:
        db = db.to(b_dt)
    return dh, dw, db


class _LinearCrossEntropy(torch.autograd.Function):
    """Loss in forward; gradients formed in forward ("mean"/"sum")."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        labels: torch.Tensor,
        opts: dict[str, Any],
    ) -> torch.Tensor:
        need = (
            bool(ctx.needs_input_grad[0]),
            bool(ctx.needs_input_grad[1]),
            bias is not None and bool(ctx.needs_input_grad[2]),
        )
        ctx.opts, ctx.need = opts, need
        early = any(need) and opts["reduction"] != "none"
        if early:
            value, grads = _run(hidden, weight, bias, labels, opts, need, None)
            ctx.mode = "saved"
            ctx.save_for_backward(*(g for g in grads if g is not None))
        else:
            value, _ = _run(hidden, weight, bias, labels, opts, (False,) * 3, None)
            ctx.mode = "recompute"
            extra = () if bias is None else (bias,)
            ctx.save_for_backward(hidden, weight, labels, *extra)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        need = ctx.need
        if ctx.mode == "saved":
            saved = iter(ctx.saved_tensors)
            if bool(grad_out == 1.0):  # the usual loss.backward(): no pass
                out = [next(saved) if wanted else None for wanted in need]
            else:
                out = [next(saved) * grad_out if wanted else None for wanted in need]
            return (*out, None, None)
        hidden, weight, labels, *rest = ctx.saved_tensors
        bias = rest[0] if rest else None
        _, grads = _run(hidden, weight, bias, labels, ctx.opts, need, grad_out)
        return (*grads, None, None)


def _run(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    opts: dict[str, Any],
    need: tuple[bool, bool, bool],
    grad_out: torch.Tensor | None,
) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]:
    """The loss and the wanted gradients (times `grad_out` when given).

    For ``"none"`` `grad_out` weighs each token's row of the gradient; for
    ``"mean"``/``"sum"`` it is the 0-d upstream gradient.
    """
    per_token = opts["reduction"] == "none"
    rows = grad_out if per_token else None
    if opts["chunk_size"] is not None:  # the portable tiles, as asked
        out = _linear_cross_entropy(
            hidden, weight, labels, bias, opts["ignore_index"],
            opts["label_smoothing"], opts["z_loss"], opts["softcap"],
            opts["reduction"], opts["chunk_size"], any(need), None,
            row_weight=rows,
        )  # fmt: skip
        value = out[0]
        grads: tuple[torch.Tensor | None, ...] = (None, None, None)
        if any(need):
            full = [*out[1:], None][:3]
            grads = tuple(
                g if wanted else None for g, wanted in zip(full, need, strict=True)
            )
    else:
        sp = _setup(
            hidden, weight, labels, bias, opts["ignore_index"],
            opts["label_smoothing"], opts["z_loss"], opts["softcap"],
            opts["reduction"], None, None,
        )  # fmt: skip
        count = _count(sp)  # before the statistics: the gradient is formed with them
        stats, raw = _fast(sp, count, want=need, row_weight=rows)
        value = _value(sp, _token_losses(sp, stats), count)
        grads = _rounded(sp, raw)
    if grad_out is not None and not per_token:
        grads = tuple(None if g is None else g * grad_out for g in grads)
    return value, grads


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    /,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: str = "mean",
    chunk_size: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    r"""Cross entropy of ``hidden @ weight.T (+ bias)``, differentiable in PyTorch.

    The loss of :func:`logitkit.linear_cross_entropy` as a
    :class:`torch.autograd.Function`: a drop-in for
    ``F.cross_entropy(F.linear(hidden, weight, bias), labels)`` in a training
    step that never holds the ``(tokens, vocab)`` logits or their gradient.
    With ``x`` the (capped) logits of a token, ``m`` their maximum,
    ``S = sum_{j != k} e^{x_j - m}`` and label ``y``,

    .. math:: \ell = \operatorname{log1p}(S) - (1 - \varepsilon)(x_y - m)
              + \frac{\varepsilon}{V} \sum_j (m - x_j)
              + z \operatorname{logsumexp}(x)^2 .

    Parameters
    ----------
    hidden : torch.Tensor
        ``(N, D)`` or ``(..., D)`` hidden states (float32, float64, bfloat16
        or float16).
    weight : torch.Tensor
        ``(V, D)``, the output projection.
    labels : torch.Tensor of int
        Class ids in ``[0, V)``, of shape ``hidden.shape[:-1]``.
    bias : torch.Tensor, optional
        ``(V,)``.
    ignore_index, label_smoothing, z_loss, softcap, reduction
        As :func:`logitkit.linear_cross_entropy` (``reduction="mean"`` by
        default, over the kept tokens; a mean over none is 0 with zero
        gradients).
    chunk_size : int or (int, int), optional
        ``None`` (default): PyTorch's fast path, tiles of whole vocabulary
        rows of at most :data:`TILE_ELEMENTS` logits, gradients formed in
        the forward pass. Given: the portable tiles of
        :func:`logitkit.linear_cross_entropy` (an int is classes per tile,
        a pair ``(tokens, classes)``), recomputed in the backward pass.

    Returns
    -------
    torch.Tensor
        The loss, 0-d (or of the shape of `labels` for ``"none"``), float32
        for float16/bfloat16 inputs; differentiable with respect to
        `hidden`, `weight` and `bias`.

    Raises
    ------
    ValueError, TypeError
        As :func:`logitkit.linear_cross_entropy`.

    Notes
    -----
    The statistics are taken in float64 and each loss is rounded once;
    float16/bfloat16 logits come from PyTorch's GEMM (float32 accumulation),
    and the gradients of narrow weights are accumulated in float32 before
    their one rounding. The gradients are not differentiable again: a
    second derivative through them raises PyTorch's ``once_differentiable``
    error.

    Examples
    --------
    >>> import torch
    >>> import logitkit as lk
    >>> h = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    >>> w = torch.tensor([[1.0, 1.0], [2.0, -1.0], [0.0, 3.0]], requires_grad=True)
    >>> loss = lk.torch.linear_cross_entropy(h, w, torch.tensor([0, 2]))
    >>> loss.backward()
    >>> naive = torch.nn.functional.cross_entropy(h.detach() @ w.detach().T,
    ...                                           torch.tensor([0, 2]))
    >>> bool(torch.isclose(loss, naive)), h.grad.shape, w.grad.shape
    (True, torch.Size([2, 2]), torch.Size([3, 2]))
    """
    opts = {
        "ignore_index": ignore_index,
        "label_smoothing": label_smoothing,
        "z_loss": z_loss,
        "softcap": softcap,
        "reduction": reduction,
        "chunk_size": chunk_size,
    }
    return _LinearCrossEntropy.apply(  # type: ignore[no-untyped-call,no-any-return]
        hidden, weight, bias, labels, opts
    )
