r"""Cross entropy of logits sharded over the vocabulary (``torch.distributed``).

Each rank of a process group holds the columns ``[vocab_start, vocab_start +
local_V)`` of the ``(..., V)`` logits (the output layer of a model with
tensor-parallel vocabulary). Each rank reduces its columns to per-token
statistics, the ranks exchange them in **one** ``all_gather`` of a float64
tensor, and every rank merges them, in the order of the shards, into the
statistics of the full vocabulary (the online-softmax rule of
:class:`logitkit.LogSumExp`):

.. math:: m = \max_j x_j, \quad S = \sum_{j \ne k} e^{x_j - m}, \quad x_y,
          \quad T = \sum_j (m - x_j) \ (\text{label smoothing only}),

with ``k`` the global argmax. The loss of a token with label ``y`` is the
non-negative-terms form of :mod:`logitkit._cross_entropy`,

.. math:: \ell = \operatorname{log1p}(S) - (1 - \varepsilon)(x_y - m)
          + \frac{\varepsilon}{V} T,

so the confident right answer keeps its ``1e-13``. The gradient needs no
collective: with ``m`` and ``S`` of the whole vocabulary known, each rank's
slice of ``p - \tilde y`` is local.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any, NamedTuple

from ._chunked import _label_grad, _logit_grad, _row_factor
from ._dd import add_dd, exp_dd, log1p_dd, mul_dd, sum_dd
from ._helpers import round_to, two_sum
from ._reduction import check_label_smoothing, check_reduction, loss_dtype, reduce
from ._softmax import _row_stats
from ._streaming import _merge_arrays

__all__ = ["vocab_parallel_cross_entropy"]

#: Logits per block of rows in the local statistics and in the gradient: the
#: float64 working copies of the slice stay at a few times 32 MiB.
ROW_BLOCK_ELEMENTS = 2**22

# The columns of the per-token part of the gathered tensor.
_M, _S, _S_LO, _XY, _T, _T_LO, _LABEL = range(7)
_K = 7
# The header: what every rank checks about every other rank.
_H_START, _H_SIZE, _H_TOKENS, _H_DTYPE, _H_EPS, _H_IGNORE, _H_REDUCTION = range(7)
_H_ERROR, _H_MSG_LEN, _H_NDIM = 7, 8, 9
_H_DIMS = 10  # the batch shape, up to _MAX_DIMS entries
_MAX_DIMS = 8
_H_MSG = _H_DIMS + _MAX_DIMS  # the UTF-8 bytes of a local error's message
_MSG_BYTES = 512
_HEADER = _H_MSG + _MSG_BYTES

_REDUCTIONS = ("none", "mean", "sum")
_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError)
_DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")
_DD_SAFE = 2.0**990  # operands of a double-double product (Veltkamp's split)


def _torch() -> Any:
    import torch

    return torch


def _xp() -> Any:
    from array_api_compat import torch as xp

    return xp


# ------------------------------------------------------------ local checks


class _Local(NamedTuple):
    """This rank's validated inputs, flattened to ``(n, local_V)`` tokens."""

    x: Any  # (n, local_V) view of the logits, input dtype
    lab: Any  # (n,) int64 labels
    batch: tuple[int, ...]
    n: int
    vocab_start: int
    eps: float
    reduction: str
    ignore_index: int | None


def _check_local(
    x: Any,
    labels: Any,
    vocab_start: Any,
    ignore_index: Any,
    label_smoothing: Any,
    reduction: Any,
) -> _Local:
    """Validate this rank's arguments; raise ValueError or TypeError."""
    torch = _torch()
    if x.ndim == 0:
        msg = (
            "`local_logits` must have at least one dimension (the local "
            "classes); got a scalar."
        )
        raise ValueError(msg)
    if not x.is_floating_point():
        msg = f"`local_logits` must be a floating tensor; got dtype {x.dtype}."
        raise TypeError(msg)
    if isinstance(vocab_start, bool):
        msg = f"`vocab_start` must be an int; got {vocab_start!r}."
        raise TypeError(msg)
    try:
        start = operator.index(vocab_start)
    except TypeError:
        msg = f"`vocab_start` must be an int; got {vocab_start!r}."
        raise TypeError(msg) from None
    if start < 0:
        msg = (
            "`vocab_start` must be non-negative (the global index of this "
            f"rank's first column); got {start}."
        )
        raise ValueError(msg)
    check_reduction(reduction)
    eps = check_label_smoothing(label_smoothing)
    if ignore_index is not None and (
        isinstance(ignore_index, bool) or not isinstance(ignore_index, int)
    ):
        msg = f"`ignore_index` must be an int or None; got {ignore_index!r}."
        raise TypeError(msg)
    try:
        lab = torch.as_tensor(labels, device=x.device)
    except (TypeError, ValueError, RuntimeError):
        msg = f"`labels` must be a tensor of integer class ids; got {labels!r}."
        raise TypeError(msg) from None
    if lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool:
        msg = (
            "`labels` must be integer class ids; got dtype "
            f"{lab.dtype} (use softmax_cross_entropy for probabilities)."
        )
        raise TypeError(msg)
    batch = tuple(x.shape[:-1])
    if tuple(lab.shape) != batch:
        msg = (
            f"`labels` must have shape `local_logits.shape[:-1]` {batch}; got "
            f"shape {tuple(lab.shape)} for local_logits of shape {tuple(x.shape)}."
        )
        raise ValueError(msg)
    n = math.prod(batch)
    x2 = x.reshape(n, int(x.shape[-1]))
    lab = lab.reshape(n).to(torch.int64)
    return _Local(x2, lab, batch, n, start, eps, reduction, ignore_index)


def _header(
    x: Any,
    vocab_start: Any,
    ignore_index: Any,
    label_smoothing: Any,
    reduction: Any,
    error: Exception | None,
) -> list[float]:
    """The header of this rank: its shard, options, shape and error (if any)."""
    nan = math.nan
    h = [0.0] * _HEADER
    batch = tuple(x.shape[:-1]) if x.ndim else ()
    try:
        h[_H_START] = float(operator.index(vocab_start))
    except TypeError:
        h[_H_START] = nan
    h[_H_SIZE] = float(x.shape[-1]) if x.ndim else 0.0
    h[_H_TOKENS] = float(math.prod(batch))
    name = str(x.dtype).removeprefix("torch.")
    h[_H_DTYPE] = float(_DTYPE_NAMES.index(name)) if name in _DTYPE_NAMES else nan
    try:
        h[_H_EPS] = float(label_smoothing)
    except (TypeError, ValueError):
        h[_H_EPS] = nan
    h[_H_IGNORE] = float(ignore_index) if isinstance(ignore_index, int) else nan
    h[_H_REDUCTION] = (
        float(_REDUCTIONS.index(reduction)) if reduction in _REDUCTIONS else nan
    )
    h[_H_NDIM] = float(len(batch))
    for i, s in enumerate(batch[:_MAX_DIMS]):
        h[_H_DIMS + i] = float(s)
    if error is not None:
        raw = str(error).encode("utf-8")[:_MSG_BYTES]
        h[_H_ERROR] = 1.0 if isinstance(error, ValueError) else 2.0
        h[_H_MSG_LEN] = float(len(raw))
        h[_H_MSG : _H_MSG + len(raw)] = [float(b) for b in raw]
    return h


# ------------------------------------------------------- local statistics


def _local_stats(loc: _Local, out: Any, /, *, refine: bool) -> None:
    """Fill `out` (n, _K) with this rank's per-token statistics."""
    torch = _torch()
    xp = _xp()
    x, lab = loc.x, loc.lab
    n, vl = int(x.shape[0]), int(x.shape[1])
    out.zero_()
    out[:, _LABEL] = lab.to(torch.float64)
    if vl == 0:  # an empty shard: the identity of the merge
        out[:, _M] = -math.inf
        return
    step = max(1, ROW_BLOCK_ELEMENTS // vl)
    for i0 in range(0, n, step):
        i1 = min(i0 + step, n)
        xb = x[i0:i1].to(torch.float64)
        st = _row_stats(xb, refine=refine, xp=xp)
        out[i0:i1, _M] = st.m[:, 0]
        out[i0:i1, _S] = st.s[:, 0]
        if st.s_lo is not None:
            out[i0:i1, _S_LO] = st.s_lo[:, 0]
        local = lab[i0:i1] - loc.vocab_start
        inside = (local >= 0) & (local < vl)
        idx = torch.where(inside, local, torch.zeros_like(local))
        xy = torch.gather(xb, 1, idx[:, None])[:, 0]
        out[i0:i1, _XY] = torch.where(inside, xy, torch.zeros_like(xy))
        if loc.eps > 0.0:
            # T = sum_j (m - x_j) >= 0; the argmax's own term is the constant 0.
            if refine and st.dl is not None:
                t, t_lo = sum_dd(-st.d, lo=-st.dl, axis=-1, keepdims=False, xp=xp)
                out[i0:i1, _T] = t
                out[i0:i1, _T_LO] = t_lo
            else:
                out[i0:i1, _T] = torch.sum(-st.d, dim=-1)


# ------------------------------------------------------------ global checks


def _fmt_value(name: str, v: float) -> str:
    if math.isnan(v):
        return "None" if name == "ignore_index" else "an invalid value"
    if name == "dtype":
        return f"torch.{_DTYPE_NAMES[int(v)]}"
    if name == "reduction":
        return repr(_REDUCTIONS[int(v)])
    if name == "label_smoothing":
        return repr(v)
    return str(int(v))


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _batch_of(h: list[float]) -> tuple[int, ...]:
    return tuple(int(h[_H_DIMS + i]) for i in range(min(int(h[_H_NDIM]), _MAX_DIMS)))


def _raise_local_errors(headers: list[list[float]]) -> None:
    """Every rank raises the first (lowest rank's) local error, word for word."""
    errs = []
    for r, h in enumerate(headers):
        if h[_H_ERROR] != 0.0:
            raw = bytes(int(b) for b in h[_H_MSG : _H_MSG + int(h[_H_MSG_LEN])])
            errs.append(
                (r, _ERRORS[int(h[_H_ERROR]) - 1], raw.decode("utf-8", "ignore"))
            )
    if not errs:
        return
    r, cls, msg = errs[0]
    if len(errs) < len(headers) or any(e[1:] != (cls, msg) for e in errs):
        msg = f"{msg.removesuffix('.')} (on rank {r})."
    raise cls(msg)


def _check_consistent(headers: list[list[float]]) -> None:
    """Options, dtype and token shape must agree on every rank."""
    h0 = headers[0]
    for r, h in enumerate(headers[1:], start=1):
        if _batch_of(h) != _batch_of(h0) or h[_H_TOKENS] != h0[_H_TOKENS]:
            msg = (
                "`local_logits.shape[:-1]` must be the same on every rank; got "
                f"{_batch_of(h0)} on rank 0 and {_batch_of(h)} on rank {r}."
            )
            raise ValueError(msg)
        for name, col in (
            ("dtype", _H_DTYPE),
            ("label_smoothing", _H_EPS),
            ("ignore_index", _H_IGNORE),
            ("reduction", _H_REDUCTION),
        ):
            if not _same(h[col], h0[col]):
                what = "`local_logits.dtype`" if name == "dtype" else f"`{name}`"
                msg = (
                    f"{what} must be the same on every rank; got "
                    f"{_fmt_value(name, h0[col])} on rank 0 and "
                    f"{_fmt_value(name, h[col])} on rank {r}."
                )
                raise ValueError(msg)


def _check_tiling(headers: list[list[float]]) -> tuple[int, list[int]]:
    """The global vocabulary size and the ranks in the order of their shards."""
    shards = [(int(h[_H_START]), int(h[_H_SIZE]), r) for r, h in enumerate(headers)]
    v = sum(size for _, size, _ in shards)
    if v == 0:
        msg = (
            "`local_logits` must have at least one class on some rank; got "
            "local_logits.shape[-1] = 0 on every rank."
        )
        raise ValueError(msg)
    for start, size, r in shards:
        if start + size > v:
            msg = (
                "`vocab_start` + local_logits.shape[-1] must be at most the global "
                f"vocabulary size V = {v} (the sum of the ranks' local sizes); got "
                f"columns [{start}, {start + size}) on rank {r}."
            )
            raise ValueError(msg)
    order = sorted((s for s in shards if s[1] > 0), key=lambda s: (s[0], s[2]))
    end = 0
    for start, size, _ in order:
        if start != end:
            what = f"gap [{end}, {start})" if start > end else f"overlap at {start}"
            listing = ", ".join(f"[{s}, {s + z}) on rank {q}" for s, z, q in order)
            msg = (
                "`vocab_start` must place the ranks' columns side by side, tiling "
                f"[0, {v}) (V = the sum of the local sizes); got {listing} "
                f"({what})."
            )
            raise ValueError(msg)
        end = start + size
    return v, [r for _, _, r in order]


def _position(i: int, batch: tuple[int, ...], /) -> Any:
    """The flat index `i` as a position in `batch` (an int for 1-d, as the core)."""
    pos = []
    for size in reversed(batch):
        i, p = divmod(i, size)
        pos.append(p)
    out = tuple(reversed(pos))
    return out if len(out) != 1 else out[0]


def _check_labels(stats: Any, loc: _Local, v: int) -> None:
    """The labels must agree on every rank and lie in ``[0, V)`` (or be ignored)."""
    torch = _torch()
    lab = stats[:, :, _LABEL]  # (world, n)
    differ = lab != lab[0:1]
    if bool(torch.any(differ)):
        r, i = (int(t) for t in torch.nonzero(differ)[0])
        msg = (
            f"`labels` must be the same on every rank; got {int(lab[0, i])} on "
            f"rank 0 and {int(lab[r, i])} on rank {r} at position "
            f"{_position(i, loc.batch)}."
        )
        raise ValueError(msg)
    bad = (loc.lab < 0) | (loc.lab >= v)
    if loc.ignore_index is not None:
        bad = bad & (loc.lab != loc.ignore_index)
    if bool(torch.any(bad)):
        i = int(torch.nonzero(bad)[0, 0])
        allowed = "" if loc.ignore_index is None else " or ignore_index"
        msg = (
            f"`labels` must be in [0, {v}){allowed}; got {int(loc.lab[i])} at "
            f"position {_position(i, loc.batch)}."
        )
        raise ValueError(msg)


# --------------------------------------------------------------- the merge


class _Merged(NamedTuple):
    m: Any  # (n,) float64
    s: Any
    s_lo: Any | None
    xy: Any
    t: Any | None
    t_lo: Any | None


def _merge_shards(
    stats: Any, order: list[int], sizes: list[int], eps: float, /, *, refine: bool
) -> _Merged:
    """Merge the ranks' statistics in the order of their shards (every rank alike)."""
    torch = _torch()
    xp = _xp()
    first = stats[order[0]]
    m, s = first[:, _M], first[:, _S]
    lo = first[:, _S_LO] if refine else None
    xy = first[:, _XY]
    for r in order[1:]:
        b = stats[r]
        m_b, s_b = b[:, _M], b[:, _S]
        lo_b = b[:, _S_LO] if refine else None
        m2, s2, lo2 = _merge_arrays(m, s, lo, m_b, s_b, lo_b, xp=xp)
        # +inf entries share the mass (the core's rule): S counts the others.
        a_inf, b_inf = m == math.inf, m_b == math.inf
        fix = (a_inf | b_inf) & ~torch.isnan(s2)
        zero = torch.zeros_like(s2)
        counted = (
            torch.where(a_inf, s, zero)
            + torch.where(b_inf, s_b, zero)
            + torch.where(a_inf & b_inf, zero + 1.0, zero)
        )
        s2 = torch.where(fix, counted, s2)
        if lo2 is not None:
            lo2 = torch.where(fix, zero, lo2)
        m, s, lo = m2, s2, lo2
        xy = xy + b[:, _XY]
    t = t_lo = None
    if eps > 0.0:
        t, t_lo = _merge_t(stats, order, sizes, m, refine=refine)
    return _Merged(m, s, lo, xy, t, t_lo)


def _merge_t(
    stats: Any, order: list[int], sizes: list[int], m: Any, /, *, refine: bool
) -> tuple[Any, Any | None]:
    r"""``T = sum_r (T_r + V_r (m - m_r))``: every term non-negative."""
    torch = _torch()
    zero = torch.zeros_like(m)
    t = zero
    t_lo = zero if refine else None
    for r in order:
        b = stats[r]
        m_r, t_r = b[:, _M], b[:, _T]
        v_r = float(sizes[r])
        # m_r == m (also two +inf maxima): the shift is 0, not inf - inf.
        shift = torch.where(m_r == m, zero, m - m_r)
        if t_lo is None:
            t = t + (t_r + v_r * shift)
            continue
        fin = torch.isfinite(m) & torch.isfinite(m_r)
        d_hi, d_lo = two_sum(torch.where(fin, m, zero), -torch.where(fin, m_r, zero))
        d_hi = torch.where(fin, d_hi, shift)
        d_lo = torch.where(fin, d_lo, zero)
        t, t_lo = _add_scaled(t, t_lo, t_r, b[:, _T_LO], 1.0)
        t, t_lo = _add_scaled(t, t_lo, d_hi, d_lo, v_r)
    return t, t_lo


def _label_shift(mg: _Merged, *, refine: bool) -> tuple[Any, Any | None]:
    """``d_y = x_y - m <= 0`` (exact as a double-double where refined)."""
    torch = _torch()
    m, xy = mg.m, mg.xy
    zero = torch.zeros_like(m)
    ninf = zero - math.inf
    plain = xy - m
    plain = torch.where(m == math.inf, torch.where(xy == math.inf, zero, ninf), plain)
    plain = torch.where(m == -math.inf, ninf, plain)
    if not refine:
        return plain, None
    ok = torch.isfinite(m) & torch.isfinite(xy)
    hi, lo = two_sum(torch.where(ok, xy, zero), -torch.where(ok, m, zero))
    return torch.where(ok, hi, plain), torch.where(ok, lo, zero)


def _add_scaled(hi: Any, lo: Any, b_hi: Any, b_lo: Any, c: float, /) -> tuple[Any, Any]:
    """``(hi + lo) + c (b_hi + b_lo)`` as a double-double, for ``b, c >= 0``.

    Plain float64 where an operand is not finite or too large for the split.
    """
    torch = _torch()
    xp = _xp()
    zero = torch.zeros_like(hi)
    plain = hi + c * b_hi
    ok = torch.isfinite(plain) & (torch.abs(b_hi) < _DD_SAFE)
    p_hi, p_lo = mul_dd(
        torch.where(ok, b_hi, zero), torch.where(ok, b_lo, zero), zero + c, zero, xp=xp
    )
    s_hi, s_lo = add_dd(
        torch.where(ok, hi, zero), torch.where(ok, lo, zero), p_hi, p_lo, xp=xp
    )
    return torch.where(ok, s_hi, plain), torch.where(ok, s_lo, zero)


def _losses(mg: _Merged, eps: float, v: int, /) -> tuple[Any, Any | None, Any]:
    r"""Per-token ``log1p(S) - (1 - eps) d_y + eps / V T``, its low part, ``d_y``."""
    torch = _torch()
    xp = _xp()
    refine = mg.s_lo is not None
    dy, dy_lo = _label_shift(mg, refine=refine)
    c_label = 1.0 - eps
    c_t = eps / v
    if mg.s_lo is None or dy_lo is None:
        loss = torch.log1p(mg.s)
        if c_label != 0.0:  # (eps = 1 would give 0 * inf for a -inf label logit)
            loss = loss - c_label * dy
        if c_t != 0.0 and mg.t is not None:
            loss = loss + c_t * mg.t
        return loss, None, dy
    hi, lo = log1p_dd(mg.s, mg.s_lo, xp=xp)
    if c_label != 0.0:
        hi, lo = _add_scaled(hi, lo, -dy, -dy_lo, c_label)
    if c_t != 0.0 and mg.t is not None and mg.t_lo is not None:
        hi, lo = _add_scaled(hi, lo, mg.t, mg.t_lo, c_t)
    return hi, lo, dy


# --------------------------------------------------------- forward, backward


def _group_info(group: Any) -> tuple[int, int]:
    """This process's rank in `group` and the group's size."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        msg = (
            "vocab_parallel_cross_entropy needs an initialised torch.distributed "
            "process group: call torch.distributed.init_process_group() first "
            "(on one process, use logitkit.sparse_softmax_cross_entropy)."
        )
        raise RuntimeError(msg)
    rank = dist.get_rank(group)
    if rank < 0:
        msg = "`group` must contain this process; got a group without this rank."
        raise ValueError(msg)
    return int(rank), int(dist.get_world_size(group))


def _all_gather(packed: Any, world: int, group: Any) -> Any:
    """``(world, numel)``: every rank's `packed`, in rank order (one collective)."""
    import torch.distributed as dist

    size = int(packed.numel())
    out = packed.new_empty((world * size,))
    # torch 2.13 renamed all_gather_into_tensor (deprecated there) to this.
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(out, packed, group=group)
    return out.view(world, size)


class _Saved(NamedTuple):
    """What the backward needs: the global statistics of each token."""

    m: Any  # (n,) float64, the global maximum
    s: Any  # (n,) float64, S of the whole vocabulary
    dy: Any  # (n,) float64, x_y - m
    lab: Any  # (n,) int64
    live: Any  # (n,) bool: kept, with a valid class
    count: Any  # 0-d float64, the denominator of "mean"
    v: int
    vocab_start: int
    eps: float
    reduction: str
    refine: bool


def _forward(
    x: Any,
    labels: Any,
    vocab_start: Any,
    group: Any,
    ignore_index: Any,
    label_smoothing: Any,
    reduction: Any,
) -> tuple[Any, _Saved]:
    torch = _torch()
    xp = _xp()
    _, world = _group_info(group)
    error: Exception | None = None
    loc: _Local | None = None
    try:
        loc = _check_local(
            x, labels, vocab_start, ignore_index, label_smoothing, reduction
        )
    except (ValueError, TypeError) as e:
        error = e
    header = _header(x, vocab_start, ignore_index, label_smoothing, reduction, error)
    n = int(header[_H_TOKENS])
    f64 = torch.float64
    packed = torch.zeros(_HEADER + n * _K, dtype=f64, device=x.device)
    packed[:_HEADER] = torch.tensor(header, dtype=f64, device=x.device)
    refine = x.dtype == f64
    if loc is not None:
        _local_stats(loc, packed[_HEADER:].view(n, _K), refine=refine)
    gathered = _all_gather(packed, world, group)
    # Every rank checks every rank's header, in the same order: all raise alike.
    headers = gathered[:, :_HEADER].tolist()
    _raise_local_errors(headers)
    if loc is None:  # pragma: no cover - _raise_local_errors raised
        msg = "internal error: a local error was not raised."
        raise AssertionError(msg)
    _check_consistent(headers)
    v, order = _check_tiling(headers)
    stats = gathered[:, _HEADER:].reshape(world, n, _K)
    _check_labels(stats, loc, v)
    sizes = [int(h[_H_SIZE]) for h in headers]
    mg = _merge_shards(stats, order, sizes, loc.eps, refine=refine)
    loss, lo, dy = _losses(mg, loc.eps, v)
    zero = torch.zeros_like(loss)
    live = mg.m != -math.inf  # NaN rows stay live: NaN gradients, as the core
    if loc.ignore_index is None:
        count = torch.tensor(float(n), dtype=f64, device=x.device)
    else:
        kept = loc.lab != loc.ignore_index
        loss = torch.where(kept, loss, zero)  # also where the row is NaN or inf
        lo = None if lo is None else torch.where(kept, lo, zero)
        count = torch.sum(kept.to(f64))
        live = live & kept
    value = reduce(
        loss.reshape(loc.batch),
        loc.reduction,
        out_dtype=loss_dtype(x.dtype, xp=xp),
        lo=None if lo is None else lo.reshape(loc.batch),
        count=count,
        xp=xp,
    )
    s = mg.s if mg.s_lo is None else mg.s + mg.s_lo
    saved = _Saved(
        mg.m, s, dy, loc.lab.clone(), live, count, v, loc.vocab_start, loc.eps,
        loc.reduction, refine,
    )  # fmt: skip
    return value, saved


def _backward(x: Any, sv: _Saved, grad: Any) -> Any:
    """``(p - y~) * upstream`` on this rank's columns, in the logits' dtype."""
    torch = _torch()
    xp = _xp()
    f64 = torch.float64
    n = int(sv.m.shape[0])
    vl = int(x.shape[-1])
    x2 = x.reshape(n, vl)
    g_out = grad.to(f64)
    up = g_out.reshape(n) if sv.reduction == "none" else g_out
    row = _row_factor(sv.s, sv.count, sv.reduction, weight=up, xp=xp)
    # Label smoothing spreads over the global vocabulary (sv.v), not this shard.
    lg = _label_grad(sv.m, sv.s, sv.dy, z=0.0, eps=sv.eps, v=sv.v, xp=xp)
    local = sv.lab - sv.vocab_start
    inside = (local >= 0) & (local < vl)
    out = torch.empty_like(x2)
    if vl == 0 or n == 0:
        return out.reshape(x.shape)
    step = max(1, ROW_BLOCK_ELEMENTS // vl)
    cols = torch.arange(vl, device=x.device)
    for i0 in range(0, n, step):
        i1 = min(i0 + step, n)
        xb = x2[i0:i1].to(f64)
        mb = sv.m[i0:i1, None]
        d = xb - mb
        # +inf logits share the mass (the core's rule): they get exp(0) = 1.
        top_inf = mb == math.inf
        d = torch.where(top_inf, torch.where(xb == math.inf, 0.0, -math.inf), d)
        if sv.refine:
            fin = torch.isfinite(xb) & torch.isfinite(mb)
            zero = torch.zeros_like(xb)
            d_hi, d_lo = two_sum(
                torch.where(fin, xb, zero), -torch.where(fin, mb, zero)
            )
            e, _ = exp_dd(
                torch.where(fin, d_hi, d), torch.where(fin, d_lo, zero), xp=xp
            )
        else:
            e = torch.exp(d)
        is_lab = (cols == local[i0:i1, None]) & inside[i0:i1, None]
        g = _logit_grad(
            e,
            lg.block(i0, i1),
            row[i0:i1, None],
            is_lab,
            sv.live[i0:i1, None],
            spread=sv.eps / sv.v,
            xp=xp,
        )
        out[i0:i1] = round_to(g, x.dtype, xp=xp)
    return out.reshape(x.shape)


def _fn_forward(
    ctx: Any,
    x: Any,
    labels: Any,
    vocab_start: Any,
    group: Any,
    ignore_index: Any,
    label_smoothing: Any,
    reduction: Any,
) -> Any:
    value, saved = _forward(
        x, labels, vocab_start, group, ignore_index, label_smoothing, reduction
    )
    ctx.save_for_backward(x)
    ctx.vp_saved = saved
    return value


def _fn_backward(ctx: Any, grad: Any) -> tuple[Any, ...]:
    (x,) = ctx.saved_tensors
    return (_backward(x, ctx.vp_saved, grad), None, None, None, None, None, None)


@functools.cache
def _function() -> Any:
    """The ``torch.autograd.Function`` (built on first use: torch is imported then)."""
    torch = _torch()
    base = torch.autograd.Function
    namespace = {
        "__module__": __name__,
        "__doc__": "Autograd of `vocab_parallel_cross_entropy` (analytic backward).",
        "forward": staticmethod(_fn_forward),
        "backward": staticmethod(
            torch.autograd.function.once_differentiable(_fn_backward)
        ),
    }
    return type(base)("VocabParallelCrossEntropy", (base,), namespace)


def vocab_parallel_cross_entropy(
    local_logits: Any,
    labels: Any,
    /,
    *,
    vocab_start: int,
    group: Any = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "none",
) -> Any:
    r"""Sparse cross entropy of logits sharded over the vocabulary across ranks.

    Each rank of the ``torch.distributed`` process `group` holds the columns
    ``[vocab_start, vocab_start + local_V)`` of the ``(..., V)`` logits
    (class axis last); every rank gets the loss of the full vocabulary, the
    same on every rank to the last bit, and, through autograd, the gradient
    of its own columns: the value of
    ``sparse_softmax_cross_entropy(full_logits, labels, ...)`` without ever
    holding the full logits.

    With ``m`` the maximum of a token's logits over the whole vocabulary
    (at ``k``), ``S = sum_{j != k} e^{x_j - m}`` and ``y`` its label,

    .. math:: \ell = \operatorname{log1p}(S) - (1 - \varepsilon)(x_y - m)
              + \frac{\varepsilon}{V} \sum_{j=0}^{V-1} (m - x_j),

    a sum of non-negative terms (no cancellation: a confident right answer
    keeps its ``1e-13``). Each rank reduces its columns to per-token
    statistics (local maximum, local ``S``, the label's logit if the label
    is in its columns, ``sum_j (m_r - x_j)``), the ranks exchange them in
    **one** ``all_gather``, and every rank merges them in the order of the
    shards with the online-softmax rule

    .. math:: m = \max(m_a, m_b), \qquad S = S_a + e^{m_b - m_a} (1 + S_b)
              \quad (m_a \ge m_b).

    The gradient needs no collective: on this rank's columns it is
    ``p_j - (1 - eps) [j = y] - eps / V`` with ``p_j = e^{x_j - m} / (1 + S)``
    (times the upstream gradient, ``1 / count`` for ``"mean"``).

    Parameters
    ----------
    local_logits : torch.Tensor
        ``(..., local_V)``: this rank's columns of the logits, floating.
        ``local_V`` may differ between ranks (and may be 0).
    labels : torch.Tensor or array_like of int
        Global class ids in ``[0, V)``, of shape ``local_logits.shape[:-1]``,
        the same on every rank.
    vocab_start : int
        The global index of this rank's first column. The ranks' columns
        must tile ``[0, V)``, ``V`` being the sum of the ``local_V``, in any
        order of the ranks.
    group : torch.distributed.ProcessGroup, optional
        The ranks that share the vocabulary. Default: the default group.
    ignore_index : int, optional
        Tokens with this label have loss 0 and zero gradient and are left
        out of ``"mean"`` (a mean over no kept token is 0).
    label_smoothing : float, optional
        ``eps`` in [0, 1], spread over the **global** vocabulary of ``V``
        classes (PyTorch's rule, as ``sparse_softmax_cross_entropy``).
    reduction : {"none", "mean", "sum"}, optional
        ``"none"`` (the default) returns one loss per token.

    Returns
    -------
    torch.Tensor
        The loss, of the shape of `labels` (``"none"``) or 0-d; float32 for
        float16/bfloat16 logits, else the logits' dtype. The same value on
        every rank.

    Raises
    ------
    RuntimeError
        If ``torch.distributed`` is not initialised (call
        ``torch.distributed.init_process_group`` first).
    ValueError
        If `labels` does not have shape ``local_logits.shape[:-1]`` (both
        shapes are named), a label is outside ``[0, V)`` and not
        `ignore_index` (value and position named), `vocab_start` is
        negative or the ranks' columns do not tile ``[0, V)``, `labels`,
        the options, the dtype or the token shape differ between ranks,
        `label_smoothing` is outside [0, 1] or `reduction` is unknown.
    TypeError
        If `local_logits` is not a floating tensor, `labels` not integer,
        `vocab_start` or `ignore_index` not an int.

    See Also
    --------
    logitkit.sparse_softmax_cross_entropy : the same loss of whole logits.
    logitkit.LogSumExp : the online (max, sum) state merged here.

    Notes
    -----
    Every argument is checked after the one collective, from every rank's
    header in it: a bad argument on any rank makes *every* rank raise the
    same error (naming the rank if not all ranks had it), and no rank is
    left waiting in a collective. The gathered tensors must have the same
    size on every rank, so `local_logits` must have the same number of
    tokens everywhere (a mismatch aborts the process group in the
    backend, before anything can be checked); `local_logits` must be a
    tensor.

    The statistics are float64 (double-double for float64 logits) and each
    loss is rounded once: per-token losses are within 0.51 ulp (float32)
    and 1 ulp (float64) of the exact value, as the unsharded loss; the
    merge runs in the order of the shards on every rank, so the ranks get
    bit-identical losses. Communication: ``7 n + 530`` float64 numbers per
    rank for ``n`` tokens, gathered to every rank. A ``-inf`` logit (a
    masked class) adds nothing unless it is the label's (``+inf``) or
    label smoothing is on (``+inf``, as the core); NaN in a row makes its
    loss and gradient NaN.

    .. versionadded:: 0.2
    """
    torch = _torch()
    _group_info(group)
    if not isinstance(local_logits, torch.Tensor):
        msg = (
            f"`local_logits` must be a torch.Tensor; got {type(local_logits).__name__}."
        )
        raise TypeError(msg)
    return _function().apply(
        local_logits, labels, vocab_start, group, ignore_index, label_smoothing,
        reduction,
    )  # fmt: skip
