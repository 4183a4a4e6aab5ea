"""The sparse cross entropy of a CPU torch tensor autograd tracks, by the kernels.

A ``torch.autograd.Function`` whose forward runs the loss kernel on a
detached NumPy view of the logits (``sparse_ce_fwd``: the losses, and each
row's maximum and sum ``S``) and whose backward runs the gradient kernel
from those per-row statistics (``sparse_ce_bwd``: no (rows, classes)
buffer is kept between the two). The gradient is
``lk.grad.sparse_softmax_cross_entropy``'s, bit for bit, times the incoming
gradient (per row for ``reduction="none"``). A backward that must itself be
differentiable (``create_graph=True``: a second derivative, MAML) forms the
gradient by the portable path's torch autograd instead, from the same
saved logits.

``softmax`` and ``log_softmax`` of such a tensor: the forward kernel on a
detached view, and in backward the analytic vector-Jacobian product of
:mod:`logitkit.vjp` (``p (g - <g, p>)``, ``g - p sum g``; its kernel
``softmax_vjp``/``log_softmax_vjp`` on NumPy views of the tensors), so
``x.grad`` is ``lk.vjp``'s bit for bit; with ``create_graph`` the same
``lk.vjp`` by its torch operations, which autograd records.

Imported only when such a tensor reaches :mod:`logitkit._kernels`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import _kernels  # _kernels._panels looked up per call (tests wrap _run)
from . import (
    _grad_to_input,
    _kernel,
    _last,
    _load,
    _mean_scale,
    _Sparse,
    _sparse_value,
    _view,
)

__all__ = ["normalise", "sparse_ce"]


class _SparseCrossEntropy(torch.autograd.Function):
    """Loss in forward (with per-row statistics), the gradient in backward."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, sp: _Sparse, reduction: str, count: float
    ) -> torch.Tensor:
        xn = sp.inp.x
        rows, n = sp.y.size, xn.shape[sp.a]
        refine = xn.dtype == np.float64
        dtype = xn.dtype if reduction == "none" else np.float64
        loss = np.empty(rows, dtype=dtype)
        lo = np.empty(rows, dtype=np.float64) if refine else None
        stats = np.empty((rows, 2), dtype=np.float64)
        args = (sp.xv, sp.y, loss, *(() if lo is None else (lo,)), stats)
        _kernels._panels(sp.kernel, rows, n, *args)
        value = _sparse_value(sp, loss, lo, reduction, count)
        ctx.save_for_backward(x)  # autograd's check of in-place changes
        # The logits' view is taken again in backward (no reference to their
        # memory outside save_for_backward: it is freed with the graph and
        # saved-tensor hooks see it); the labels may be a view of the
        # caller's tensor, which may change before the backward.
        inp = sp.inp._replace(x=None)
        ctx.sp = sp._replace(inp=inp, xv=None, y=sp.y.copy())
        ctx.stats, ctx.reduction, ctx.count = stats, reduction, count
        return torch.from_numpy(np.asarray(value))

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        (x,) = ctx.saved_tensors
        sp: _Sparse = ctx.sp
        if torch.is_grad_enabled():  # create_graph: a gradient with a graph
            return _portable_grad(ctx, x, grad_out), None, None, None
        xn = x.detach().numpy()
        sp = sp._replace(inp=sp.inp._replace(x=xn))
        rows, n = sp.y.size, xn.shape[sp.a]
        go = grad_out.detach().to(torch.float64).numpy()
        if ctx.reduction == "none":
            scale = np.ascontiguousarray(np.broadcast_to(go, sp.expected).reshape(-1))
        else:
            c = float(go) * _mean_scale(ctx.reduction, ctx.count)
            scale = np.full(rows, c, dtype=np.float64)
        mods = _load()
        assert mods is not None
        grad = np.empty((rows, n), dtype=xn.dtype)
        kernel = _kernel(mods, xn.dtype, "sparse_ce_bwd")
        xv = _view(np, _last(np, xn, sp.a))
        _kernels._panels(kernel, rows, n, xv, sp.y, ctx.stats, scale, grad)
        return torch.from_numpy(_grad_to_input(sp, grad)), None, None, None


def _portable_grad(ctx: Any, x: torch.Tensor, grad_out: torch.Tensor) -> Any:
    """The gradient through the portable path's torch autograd (differentiable)."""
    from .._cross_entropy import _sparse

    sp: _Sparse = ctx.sp
    labels = torch.from_numpy(sp.y.reshape(sp.expected))  # -1: ignored
    args = (sp.a, None, -1, None, 0.0, 0.0, None, 1.0, ctx.reduction, False, None)
    value, _ = _sparse(x, labels, *args)
    (g,) = torch.autograd.grad(value, x, grad_out, create_graph=True)
    return g


def sparse_ce(x: torch.Tensor, sp: _Sparse, reduction: str, count: float) -> Any:
    """The loss of `x` (checked into `sp` on a detached view), differentiable."""
    return _SparseCrossEntropy.apply(x, sp, reduction, count)  # type: ignore[no-untyped-call]


class _Normaliser(torch.autograd.Function):
    """softmax / log_softmax by the kernel in forward, ``lk.vjp`` in backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, axis: Any, name: str) -> Any:
        y = _kernels._normalise(x.detach(), axis, None, name=name)
        ctx.save_for_backward(x)
        ctx.axis, ctx.name = axis, name
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        from .. import vjp

        (x,) = ctx.saved_tensors
        fn = vjp.softmax if ctx.name == "softmax" else vjp.log_softmax
        axis = -1 if ctx.axis is None else ctx.axis
        # Without create_graph: the kernel (x and g viewed as NumPy arrays);
        # with it, lk.vjp's torch operations, which autograd records.
        return fn(x, g.to(x.dtype), axis=axis), None, None


def normalise(x: torch.Tensor, axis: Any, name: str) -> Any:
    """``softmax``/``log_softmax`` (`name`) of `x` over `axis`, differentiable."""
    return _Normaliser.apply(x, axis, name)  # type: ignore[no-untyped-call]
