"""Compiled CPU kernels (numba) of the softmax and sigmoid families.

``_f32`` computes float32 results (float64 arithmetic, a polynomial ``exp``),
``_f64`` float64 results (double-double, a port of ``logitkit._dd``);
``_sigmoid32`` and ``_sigmoid64`` are the elementwise sigmoid family's.

The public functions of ``logitkit._softmax``, ``logitkit._cross_entropy``,
``logitkit._sigmoid`` and ``logitkit._sigmoid_losses`` (and
``lk.grad.sparse_softmax_cross_entropy`` and ``lk.grad.softmax_cross_entropy``,
float32 logits with integer labels or float64 logits with any real labels:
one fused kernel for the loss and its gradient; ``lk.vjp.softmax`` and
``lk.vjp.log_softmax``) call the dispatchers here first. A dispatcher returns ``None`` when its input
does not qualify (not a float32/float64 array of NumPy, or of torch or JAX
as below, an option other than the common ones, an empty axis, numba
missing, kernels disabled), and the portable Array-API code then runs as
before.

A CPU torch tensor that autograd does not track (``requires_grad`` False, or
grad mode off) and a concrete JAX array on one CPU device (not a tracer:
not inside ``jit``, ``grad`` or ``vmap``) are viewed as NumPy arrays through
DLPack, without a copy, and the result is handed back the same way
(``Tensor.numpy``/``torch.from_numpy``, the same sharing as DLPack but
cheaper per call; ``jax.dlpack.from_dlpack``, which shares the buffer
when it is C-contiguous and 64-byte aligned, as the outputs made here are
for JAX, and copies otherwise). A CPU float tensor that autograd tracks
takes the kernels in ``sparse_softmax_cross_entropy``, ``softmax`` and
``log_softmax`` only, through ``torch.autograd.Function`` s (``_torch_fn``:
the loss kernel in forward, the gradient kernel in backward; the softmax
kernels in forward, the ``lk.vjp`` kernels in backward). Everything else
of those libraries (autograd, tracers, other devices, ``torch.compile``,
``torch.func`` transforms) takes the portable path. Where a kernel runs, it
gives the portable path's values and special values, bit for bit but for the
rare double roundings both are exposed to (see ``docs/performance.md``).

The kernels take C-contiguous (rows, classes) arrays (1-D ones for the
sigmoid family). An input of another layout (a class axis other than the
last, ``x.T``, a strided view), labels of another layout or a non-float
dtype, and an ``out=`` the kernel cannot write directly are copied (or
written back) a panel of rows at a time (``_PANEL_BYTES``, 16 MiB), never
as a whole: the extra memory is bounded whatever the input's size, and the
values are those of one pass (each row, each element, is computed on its
own; the sums of the sigmoid cross entropy keep their chunks).

Nothing is imported here at ``import logitkit``: numba and the kernels are
loaded on the first qualifying call.

Environment:

- ``LOGITKIT_DISABLE_KERNELS=1`` forces the portable path (read on each call);
- ``LOGITKIT_NUM_THREADS=N`` caps the kernels' threads (read once, at load).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any, NamedTuple

from array_api_compat import is_jax_array, is_torch_array

__all__ = [
    "available",
    "disabled",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "sigmoid",
    "sigmoid_cross_entropy",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
    "softplus",
    "sparse_softmax_cross_entropy",
    "sparse_softmax_cross_entropy_grad",
]

# Below this many elements one thread does the work: waking the thread pool
# costs a scheduler time slice (~4-8 ms measured) when the cores are busy.
_PARALLEL_MIN = 1 << 20

_state: dict[str, Any] = {}


#: One parallel kernel at a time: numba's workqueue layer aborts on concurrent
#: launches from several Python threads (serial kernels run concurrently).
_PARALLEL_LOCK = threading.Lock()


_OFF_NAME = "LOGITKIT_DISABLE_KERNELS"
_ON_VALUES = frozenset(("", "0", "false", "False", "no"))
# ``os.environ`` encodes the key on every lookup (~1.5 us, a tenth of a small
# call); its mapping of encoded keys and values is read directly where it has
# one (CPython's ``os.environ._data``, kept in step by ``os.environ[...] =``,
# ``putenv`` aside, as ``os.environ.get`` itself is).
_ENV_DATA = getattr(os.environ, "_data", None)
try:
    _OFF_KEY: Any = os.environ.encodekey(_OFF_NAME)
    _ON_RAW = frozenset(os.environ.encodevalue(v) for v in _ON_VALUES)
except (AttributeError, TypeError):  # another mapping: ``os.environ.get``
    _ENV_DATA = None


def disabled() -> bool:
    """Whether ``LOGITKIT_DISABLE_KERNELS`` turns the kernels off (read per call)."""
    if type(_ENV_DATA) is dict:
        raw = _ENV_DATA.get(_OFF_KEY)
        return raw is not None and raw not in _ON_RAW
    return os.environ.get(_OFF_NAME, "") not in _ON_VALUES


def _label_range(lab: Any) -> tuple[int, int]:
    """``(lab.min(), lab.max())`` of a non-empty 1-D integer array (one pass)."""
    from ._labels import label_range

    lo, hi = label_range(lab)
    return int(lo), int(hi)


def _load() -> tuple[ModuleType, ModuleType] | None:
    """Import numba and the kernels once; None where numba is missing."""
    if "mods" in _state:
        mods: tuple[ModuleType, ModuleType] | None = _state["mods"]
        return mods
    try:
        import numba

        from . import _f32, _f64
    except ImportError as exc:
        _state["mods"] = None
        _state["error"] = repr(exc)
        return None
    limit = os.environ.get("LOGITKIT_NUM_THREADS", "")
    top = int(getattr(numba.config, "NUMBA_NUM_THREADS", 1))
    # numba's thread count is per calling thread: _run sets it on each call.
    _state["threads"] = max(1, min(int(limit), top)) if limit.isdigit() else top
    _state["mods"] = (_f32, _f64)
    return _state["mods"]  # type: ignore[no-any-return]


def available() -> bool:
    """Whether the compiled kernels are in use (numba imports, not disabled)."""
    return not disabled() and _load() is not None


class _Input(NamedTuple):
    """An input a kernel can take: `x` as NumPy, and the way back."""

    np: Any  # the numpy module
    x: Any  # a numpy.ndarray (a zero-copy view of a torch or JAX input)
    back: Callable[[Any], Any] | None  # a NumPy result -> the input's library
    aligned: bool  # allocate results 64-byte aligned (JAX shares them then)


def _input(x: Any) -> _Input | None:
    """`x` as a float32/float64 NumPy array for a kernel, or None.

    NumPy arrays as they are; CPU torch tensors and JAX arrays that need no
    autograd or tracing, by a zero-copy DLPack view (see the module doc).
    """
    if type(x).__name__ == "ndarray" and type(x).__module__ == "numpy":
        view, back, aligned = x, None, False
    elif is_torch_array(x):
        got = _torch_view(x)
        if got is None:
            return None
        view, back, aligned = got[0], got[1], False
    elif is_jax_array(x):
        got = _jax_view(x)
        if got is None:
            return None
        view, back, aligned = got[0], got[1], True
    else:
        return None
    np = sys.modules["numpy"]
    dt = view.dtype
    if dt.kind != "f" or dt.itemsize not in (4, 8) or not dt.isnative:
        return None  # float32/float64 (``dtype == np.float32`` costs ~0.3 us)
    if view.ndim == 0 or view.size == 0 or disabled():
        return None
    return _Input(np, view, back, aligned)


def _torch_view(x: Any) -> tuple[Any, Callable[[Any], Any]] | None:
    """A NumPy view of a CPU float tensor autograd does not track, or None."""
    import torch

    if type(x) is not torch.Tensor and type(x) is not torch.nn.Parameter:
        return None  # subclasses (FakeTensor, functorch wrappers, ...)
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    if x.requires_grad and torch.is_grad_enabled():
        return None  # autograd needs the graph of the portable path
    if torch.compiler.is_compiling():
        return None
    # ``Tensor.numpy`` and ``torch.from_numpy`` share memory as DLPack does,
    # and cost 3.5 us less per call together (measured: 0.96 + 0.78 us
    # against 3.35 + 1.90 us), which shows on small inputs.
    try:
        view = (x.detach() if x.requires_grad else x).numpy()
    except (RuntimeError, TypeError):
        return None
    return view, torch.from_numpy


def _jax_view(x: Any) -> tuple[Any, Callable[[Any], Any]] | None:
    """A NumPy view of a concrete float JAX array on one CPU device, or None."""
    import jax

    if isinstance(x, jax.core.Tracer) or not isinstance(x, jax.Array):
        return None  # inside jit, grad, vmap: the portable path traces
    if getattr(x, "weak_type", False):
        return None  # the portable path keeps the weak type
    devices = x.devices()
    if len(devices) != 1:
        return None
    (dev,) = devices
    if dev.platform != "cpu":
        return None
    np = sys.modules["numpy"]
    try:
        view = np.from_dlpack(x)
    except (BufferError, RuntimeError, TypeError, ValueError):
        return None
    return view, functools.partial(_to_jax, dev)


def _to_jax(dev: Any, y: Any) -> Any:
    """The NumPy result `y` as a JAX array on `dev` (shares `y` when it can)."""
    import jax

    np = sys.modules["numpy"]
    y = np.asarray(y)
    if not y.flags.c_contiguous:
        y = _aligned_copy(np, y)
    out = jax.dlpack.from_dlpack(y)
    if out.devices() != {dev}:
        out = jax.device_put(out, dev)
    return out


def _same(y: Any) -> Any:
    return y


def _empty(np: Any, shape: Any, dtype: Any, aligned: bool) -> Any:
    """``np.empty(shape, dtype)``; 64-byte aligned if `aligned` (for JAX)."""
    if not aligned:
        return np.empty(shape, dtype=dtype)
    dtype = np.dtype(dtype)
    size = 1
    for s in shape if isinstance(shape, tuple) else (shape,):
        size *= int(s)
    raw = np.empty(size * dtype.itemsize + 64, dtype=np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + size * dtype.itemsize].view(dtype).reshape(shape)


def _aligned_copy(np: Any, y: Any) -> Any:
    out = _empty(np, y.shape, y.dtype, True)
    out[...] = y
    return out


def _class_axis(axis: Any, ndim: int) -> int | None:
    """`axis` as a non-negative int when it names one valid axis, else None."""
    if axis is None:
        return 0 if ndim == 1 else None
    if isinstance(axis, tuple):
        if len(axis) != 1:
            return None
        axis = axis[0]
    if type(axis) is not int or not -ndim <= axis < ndim:
        return None  # the portable path raises the error
    return axis % ndim


def _last(np: Any, x: Any, axis: int) -> Any:
    """A view of `x` with the class axis `axis` last: (*rows, classes)."""
    return x if axis == x.ndim - 1 else np.moveaxis(x, axis, -1)


# Inputs (and ``out=`` arrays) that are not C-contiguous with the classes
# last are copied (or written back) a panel of rows at a time: at most this
# many bytes of copies per panel (all of a call's together), a bounded extra
# memory whatever the input's size.
_PANEL_BYTES = 16 << 20


class _View(NamedTuple):
    """An array of the input's layout that a kernel reads (or writes) by panels."""

    v: Any  # (*rows, n) view, the classes last (n = 1 for elementwise kernels)
    dtype: Any  # the dtype the kernel gets (a panel's copy is converted)
    tail: tuple[int, ...]  # (n,), or () for the elementwise (1-D) kernels
    write: bool  # an output: each panel written back after the kernel


def _view(
    np: Any, v: Any, dtype: Any = None, *, flat: bool = False, write: bool = False
) -> Any:
    """`v` (*rows, n) as a kernel argument (`flat`: 1-D elementwise, n = 1).

    The C-contiguous (rows, n) (or 1-D) view where there is one, else a
    :class:`_View` that :func:`_panels` copies a panel at a time.
    """
    if v.flags.c_contiguous and (dtype is None or v.dtype == dtype):
        return v.reshape(-1) if flat else v.reshape(-1, v.shape[-1])
    dtype = v.dtype if dtype is None else np.dtype(dtype)
    return _View(v, dtype, () if flat else (v.shape[-1],), write)


def _pieces(v: Any, lo: int, hi: int, found: list[Any]) -> None:
    """Views of `v` (*rows, n) holding its rows ``lo:hi`` (C order), in order."""
    if v.ndim <= 2:
        found.append(v[lo:hi] if v.ndim == 2 else v[None])
        return
    inner = 1
    for s in v.shape[1:-1]:
        inner *= s
    i0, r0 = divmod(lo, inner)
    i1, r1 = divmod(hi, inner)
    if i0 == i1:
        _pieces(v[i0], r0, r1, found)
        return
    if r0:
        _pieces(v[i0], r0, inner, found)
        i0 += 1
    if i1 > i0:
        found.append(v[i0:i1])
    if r1:
        _pieces(v[i1], 0, r1, found)


def _copy_rows(np: Any, v: Any, lo: int, hi: int, buf: Any, *, into: bool) -> None:
    """Copy rows ``lo:hi`` of `v` into `buf` (C-contiguous), or back if not `into`."""
    found: list[Any] = []
    _pieces(v, lo, hi, found)
    flat = buf.reshape(-1)
    start = 0
    for p in found:
        b = flat[start : start + p.size].reshape(p.shape)
        start += p.size
        if into:
            np.copyto(b, p, casting="unsafe")
        else:
            np.copyto(p, b, casting="unsafe")


def _gathered(np: Any, w: Any) -> Any:
    """A C-contiguous copy of the whole of `w` if it is a :class:`_View`.

    An output's copy is left uninitialised (written back after the kernel).
    """
    if type(w) is not _View:
        return w
    if w.write:
        return np.empty((w.v.size // w.v.shape[-1], *w.tail), dtype=w.dtype)
    got = np.asarray(w.v, w.dtype, order="C")
    if not got.flags.writeable:  # a one-element scratch (``_scratch``) is its view
        got = got.copy()
    return got.reshape(-1, *w.tail)


def _panels(kernels: tuple[Any, Any], rows: int, n: int, *args: Any) -> None:
    """``_run(kernels, rows, n, *args)``, a panel of rows at a time if need be.

    `args` as the kernel takes them, the arrays of the input's layout as
    :func:`_view` gives them; NumPy arrays with `rows` leading entries (the
    input's C-contiguous views, per-row labels, losses, fresh outputs) are
    sliced per panel, the rest passed as they are. Every row is computed on
    its own, so panels change no value.
    """
    for a in args:
        if type(a) is _View:
            break
    else:  # nothing to copy: one call, as on a C-contiguous input
        _run(kernels, rows, n, *args)
        return
    np = sys.modules["numpy"]
    views = []
    per_row = 0  # bytes of all the copies of one row
    for a in args:
        if type(a) is _View:
            views.append(a)
            per_row += a.dtype.itemsize * n
    if rows * per_row <= _PANEL_BYTES:  # one panel: copies of the whole
        whole = [_gathered(np, a) if type(a) is _View else a for a in args]
        _run(kernels, rows, n, *whole)
        for w, buf in zip(args, whole, strict=True):
            if type(w) is _View and w.write:
                np.copyto(w.v, buf.reshape(w.v.shape))
        return
    step = max(1, _PANEL_BYTES // per_row)
    bufs = [np.empty((step, *w.tail), w.dtype) for w in views]
    for lo in range(0, rows, step):
        hi = min(rows, lo + step)
        call: list[Any] = []
        k = 0
        for a in args:
            if type(a) is _View:
                part = bufs[k][: hi - lo]
                k += 1
                if not a.write:
                    _copy_rows(np, a.v, lo, hi, part, into=True)
                call.append(part)
            elif type(a) is np.ndarray and a.ndim and a.shape[0] == rows:
                call.append(a[lo:hi])
            else:
                call.append(a)
        _run(kernels, hi - lo, n, *call)
        for w, buf in zip(views, bufs, strict=True):
            if w.write:
                _copy_rows(np, w.v, lo, hi, buf[: hi - lo], into=False)


def _find(dtype: Any, name: str, *, sigmoid: bool = False) -> Any:
    """The (serial, parallel) pair of kernel `name` for `dtype` (loading the
    softmax-family or, with `sigmoid`, the sigmoid-family modules), or None
    where numba is missing or there is no such kernel."""
    mods = _sigmoid_mods() if sigmoid else _load()
    return None if mods is None else _kernel(mods, dtype, name)


def _kernel(mods: tuple[ModuleType, ModuleType], dtype: Any, name: str) -> Any:
    """The (serial, parallel) pair of kernel `name` for `dtype`, or None."""
    key = (id(mods[0]), dtype.itemsize, name)
    got = _KERNELS.get(key, _KERNELS)
    if got is not _KERNELS:
        return got
    mod = mods[0] if dtype.itemsize == 4 else mods[1]
    serial = getattr(mod, name + "_serial", None)
    pair = None if serial is None else (serial, getattr(mod, name + "_parallel"))
    _KERNELS[key] = pair
    return pair


#: ``_kernel``'s answers (float32/float64 told apart by the item size).
_KERNELS: dict[tuple[int, int, str], Any] = {}


def _run(kernels: tuple[Any, Any], rows: int, n: int, *args: Any) -> None:
    serial, parallel = kernels
    if rows > 1 and rows * n >= _PARALLEL_MIN:
        import numba

        threads = int(_state.get("threads", 1))
        numba.set_num_threads(threads)
        with _PARALLEL_LOCK:  # numba's thread pools are not all re-entrant
            parallel(*args, min(rows, 4 * threads))
    else:
        serial(*args, 1)


def _aliased(np: Any, x: Any, out: Any) -> bool:
    """Whether `out` overlaps `x` other than element for element.

    A kernel writing `out` row by row (or panel by panel) would then read
    values it has overwritten: the result is made apart and copied in, as the
    portable path does. (``out is x`` and other exact aliases are safe.)
    """
    if not np.may_share_memory(x, out):
        return False
    return not (x.ctypes.data == out.ctypes.data and x.strides == out.strides)


def _normalise(x: Any, axis: Any, out: Any, *, name: str) -> Any | None:
    if out is None and is_torch_array(x) and _torch_tracked(x):
        if _class_axis(axis, x.ndim) is None or x.numel() == 0:
            return None
        from . import _torch_fn

        return _torch_fn.normalise(x, axis, name)
    inp = _input(x)
    if inp is None or (out is not None and inp.back is not None):
        return None  # `out=` is NumPy-only: the portable path raises
    np, x = inp.np, inp.x
    a = _class_axis(axis, x.ndim)
    if a is None:
        return None
    if out is not None and not (
        type(out) is np.ndarray and out.shape == x.shape and out.dtype == x.dtype
    ):
        return None  # the portable path raises the error
    kernel = _find(x.dtype, name)
    if kernel is None:
        return None
    n = x.shape[a]
    rows = x.size // n
    v = _last(np, x, a)
    if out is not None and _aliased(np, x, out):
        out[...] = _normalise(x, axis, None, name=name)
        return out
    if out is not None:
        _panels(kernel, rows, n, _view(np, v), _view(np, _last(np, out, a), write=True))
        return out
    yr = _empty(np, (rows, n), x.dtype, inp.aligned)
    _panels(kernel, rows, n, _view(np, v), yr)
    y = yr.reshape(v.shape)
    if a != x.ndim - 1:
        y = np.moveaxis(y, -1, a)
    return y if inp.back is None else inp.back(y)


def softmax(x: Any, axis: Any, out: Any) -> Any | None:
    """``softmax(x, axis, out=out)`` by a kernel, or None (see module doc)."""
    return _normalise(x, axis, out, name="softmax")


def log_softmax(x: Any, axis: Any, out: Any) -> Any | None:
    """``log_softmax(x, axis, out=out)`` by a kernel, or None."""
    return _normalise(x, axis, out, name="log_softmax")


def normaliser_vjp(x: Any, g: Any, axis: Any, *, name: str) -> Any | None:
    """``lk.vjp.softmax``/``log_softmax`` (`name`) of `x` and `g` by a kernel, or None.

    `g` must be an array of `x`'s library, shape and dtype (anything else:
    the portable path, which casts and checks).
    """
    inp = _input(x)
    if inp is None:
        return None
    ginp = _input(g)
    if ginp is None or (is_torch_array(x), is_jax_array(x)) != (
        is_torch_array(g),
        is_jax_array(g),
    ):
        return None  # g of another library: the portable path decides
    np, xn, gn = inp.np, inp.x, ginp.x
    if gn.shape != xn.shape or gn.dtype != xn.dtype:
        return None
    a = _class_axis(axis, xn.ndim)
    if a is None:
        return None
    kernel = _find(xn.dtype, name + "_vjp")
    if kernel is None:
        return None
    v = _last(np, xn, a)
    n = xn.shape[a]
    rows = xn.size // n
    yr = _empty(np, (rows, n), xn.dtype, inp.aligned)
    _panels(kernel, rows, n, _view(np, v), _view(np, _last(np, gn, a)), yr)
    y = yr.reshape(v.shape)
    if a != xn.ndim - 1:
        y = np.moveaxis(y, -1, a)
    return y if inp.back is None else inp.back(y)


def logsumexp(x: Any, axis: Any, keepdims: bool, return_sign: bool) -> Any | None:
    """``logsumexp(x, axis, keepdims=..., return_sign=...)`` by a kernel, or None."""
    inp = _input(x)
    if inp is None:
        return None
    np, x = inp.np, inp.x
    if axis is None or (isinstance(axis, tuple) and len(axis) == x.ndim > 1):
        try:
            if axis is not None and (
                any(type(a) is not int for a in axis)
                or sorted(a % x.ndim for a in axis) != list(range(x.ndim))
            ):
                return None
        except TypeError:
            return None
        # One row of all elements (a copy if `x` is not C-contiguous).
        xv = np.ascontiguousarray(x).reshape(1, -1)
        shape: tuple[int, ...] = (1,) * x.ndim if keepdims else ()
        n = x.size
    else:
        a = _class_axis(axis, x.ndim)
        if a is None:
            return None
        xv = _view(np, _last(np, x, a))
        n = x.shape[a]
        shape = tuple(
            1 if i == a else s for i, s in enumerate(x.shape) if keepdims or i != a
        )
    kernel = _find(x.dtype, "logsumexp")
    if kernel is None:
        return None
    rows = x.size // n
    lse = _empty(np, rows, x.dtype, inp.aligned)
    _panels(kernel, rows, n, xv, lse)
    lse = lse.reshape(shape)
    back = _same if inp.back is None else inp.back
    if not return_sign:
        return back(lse)
    sign = np.where(lse == -np.inf, 0.0, 1.0).astype(x.dtype)
    sign = np.where(np.isnan(lse), lse, sign)
    return back(lse), back(sign)


@functools.cache
def _helpers() -> SimpleNamespace:
    """The portable path's checks (imported once: this module loads first)."""
    from array_api_compat import array_namespace

    from .._cross_entropy import (
        _check_int_labels,
        _check_kept_positions,
        _labels_array,
    )
    from .._helpers import round_to
    from .._one_hot import check_labels
    from .._reduction import check_reduction, check_shape, finish_mean, reduce

    return SimpleNamespace(
        array_namespace=array_namespace,
        check_int_labels=_check_int_labels,
        check_kept_positions=_check_kept_positions,
        labels_array=_labels_array,
        check_labels=check_labels,
        check_reduction=check_reduction,
        check_shape=check_shape,
        finish_mean=finish_mean,
        reduce=reduce,
        round_to=round_to,
    )


class _Sparse(NamedTuple):
    """A sparse cross entropy a kernel can take, checked as the portable path checks."""

    inp: _Input
    kernel: tuple[Any, Any]
    xv: Any  # the logits (rows, classes) as _view gives them, or None once used
    y: Any  # int64 labels per row (C-contiguous), -1 where ignored
    kept: Any  # the kept examples (bool, labels' shape) or None
    a: int  # the class axis
    expected: tuple[int, ...]  # the labels' (loss's) shape


def _sparse_setup(
    logits: Any,
    labels: Any,
    axis: Any,
    ignore_index: Any,
    reduction: str,
    *,
    name: str,
) -> _Sparse | None:
    """Checks and labels of the plain sparse cross entropy, or None."""
    inp = _input(logits)
    if inp is None:
        return None
    np, x = inp.np, inp.x
    foreign = inp.back is not None
    a = _class_axis(axis, x.ndim)
    if a is None:
        return None
    kernel = _find(x.dtype, name)
    if kernel is None:
        return None
    # The portable path's own checks, in its order and with its messages.
    h = _helpers()
    h.check_reduction(reduction)
    if ignore_index is not None and not isinstance(ignore_index, int):
        return None
    if foreign:
        lab = _labels_view(labels, logits)
        if lab is None:
            return None
    elif type(labels) is np.ndarray:
        lab = labels
    else:
        lab = h.labels_array(labels, x, xp=h.array_namespace(x))
    if lab.dtype.kind not in "iu":
        if foreign:
            return None
        h.check_int_labels(lab)
    n = x.shape[a]
    expected = tuple(s for i, s in enumerate(x.shape) if i != a)
    if lab.shape != expected:
        if foreign:
            return None
        h.check_shape(lab, expected, x, what="of the logits without axis")
    kept = None
    if ignore_index is None:
        if lab.size:
            lo, hi = _label_range(lab.reshape(-1))
            if lo < 0 or hi >= n:
                if foreign:
                    return None
                h.check_labels(lab, n, name="labels", xp=h.array_namespace(lab))
        y = lab.astype(np.int64, copy=False).reshape(-1)
    else:
        kept = lab != np.asarray(int(ignore_index), dtype=lab.dtype)
        y = np.where(kept, lab, -1).astype(np.int64, copy=False).reshape(-1)
        if y.size and (y.min() < -1 or y.max() >= n or (lab[kept] < 0).any()):
            if foreign:
                return None
            h.check_kept_positions(lab, kept, n, xp=h.array_namespace(lab))
    y = np.ascontiguousarray(y)
    return _Sparse(inp, kernel, _view(np, _last(np, x, a)), y, kept, a, expected)


def _sparse_value(
    sp: _Sparse, loss: Any, lo: Any | None, reduction: str, count: float
) -> Any:
    """The per-example losses `loss` (+ `lo`) reduced as the portable path does."""
    np, x = sp.inp.np, sp.inp.x
    if reduction == "none":
        if lo is not None and not sp.expected:  # NumPy's scalar, as the portable sum
            return loss.reshape(()) + lo.reshape(())
        return loss.reshape(sp.expected)
    h = _helpers()
    return h.reduce(
        loss.reshape(sp.expected),
        reduction,
        out_dtype=x.dtype,
        lo=None if lo is None else lo.reshape(sp.expected),
        count=np.asarray(count),
        xp=h.array_namespace(x),
    )


def _count(sp: _Sparse) -> float:
    """The denominator of ``"mean"``: the kept examples."""
    if sp.kept is None:
        return float(sp.y.size)
    return float(sp.inp.np.count_nonzero(sp.kept))


def sparse_softmax_cross_entropy(
    logits: Any, labels: Any, axis: Any, ignore_index: Any, reduction: str
) -> Any | None:
    """The plain sparse cross entropy (no weights, smoothing, ...) by a kernel.

    For torch and JAX logits, `labels` must be an integer array of the same
    library (viewed the same way); anything the checks below would refuse
    goes to the portable path, which raises its own error.
    """
    if is_torch_array(logits) and _torch_tracked(logits):
        return _torch_sparse_ce(logits, labels, axis, ignore_index, reduction)
    sp = _sparse_setup(logits, labels, axis, ignore_index, reduction, name="sparse_ce")
    if sp is None:
        return None
    inp, np, x = sp.inp, sp.inp.np, sp.inp.x
    rows, n = sp.y.size, x.shape[sp.a]
    refine = x.dtype == np.float64  # double-double: the low parts too
    dtype = x.dtype if reduction == "none" else np.float64
    loss = _empty(np, rows, dtype, inp.aligned)
    lo = np.empty(rows, dtype=np.float64) if refine else None
    _panels(sp.kernel, rows, n, sp.xv, sp.y, loss, *(() if lo is None else (lo,)))
    value = _sparse_value(sp, loss, lo, reduction, _count(sp))
    return value if inp.back is None else inp.back(np.asarray(value))


def _torch_tracked(x: Any) -> bool:
    """A CPU float tensor under reverse-mode autograd, not compiled or transformed."""
    import torch

    if type(x) is not torch.Tensor and type(x) is not torch.nn.Parameter:
        return False
    if not (x.requires_grad and torch.is_grad_enabled()):
        return False
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    if torch.compiler.is_compiling():
        return False
    dual = torch.autograd.forward_ad.unpack_dual(x)  # type: ignore[no-untyped-call]
    if dual.tangent is not None:
        return False  # forward-mode AD: the portable path has a jvp
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return active is not None and not active()


def _torch_sparse_ce(
    x: Any, labels: Any, axis: Any, ignore_index: Any, reduction: str
) -> Any | None:
    """The sparse cross entropy of a tracked tensor: a kernel-backed autograd.Function."""
    sp = _sparse_setup(
        x.detach(), labels, axis, ignore_index, reduction, name="sparse_ce_fwd"
    )
    if sp is None:
        return None
    from . import _torch_fn

    return _torch_fn.sparse_ce(x, sp, reduction, _count(sp))


def _mean_scale(reduction: str, count: float) -> float:
    """The factor of the per-example gradients (``_cross_entropy._mean_scale``)."""
    if reduction != "mean":
        return 1.0
    return 1.0 / count if count > 0.0 else 0.0


def _sparse_grad_rows(
    sp: _Sparse, scale: Any, loss_dtype: Any
) -> tuple[Any, Any | None, Any]:
    """Run the fused kernel: per-row losses (and low parts), gradient rows."""
    inp, np, x = sp.inp, sp.inp.np, sp.inp.x
    rows, n = sp.y.size, x.shape[sp.a]
    loss = _empty(np, rows, loss_dtype, inp.aligned)
    grad = _empty(np, (rows, n), x.dtype, inp.aligned)
    lo = np.empty(rows, dtype=np.float64) if x.dtype == np.float64 else None
    args = (sp.xv, sp.y, scale, loss, grad, *(() if lo is None else (lo,)))
    _panels(sp.kernel, rows, n, *args)
    return loss, lo, grad


def _grad_to_input(sp: _Sparse, grad: Any) -> Any:
    """Gradient rows back in the logits' shape (the class axis where it was)."""
    np, x = sp.inp.np, sp.inp.x
    g = grad.reshape(*sp.expected, x.shape[sp.a])
    return g if sp.a == x.ndim - 1 else np.moveaxis(g, -1, sp.a)


def sparse_softmax_cross_entropy_grad(
    logits: Any, labels: Any, axis: Any, ignore_index: Any, reduction: str
) -> tuple[Any, Any] | None:
    """``lk.grad.sparse_softmax_cross_entropy`` with the plain options, or None.

    One fused kernel computes each row's loss and gradient row; the same
    inputs as :func:`sparse_softmax_cross_entropy` qualify.
    """
    sp = _sparse_setup(
        logits, labels, axis, ignore_index, reduction, name="sparse_ce_grad"
    )
    if sp is None:
        return None
    inp, np, x = sp.inp, sp.inp.np, sp.inp.x
    rows = sp.y.size
    count = _count(sp)
    scale = np.full(rows, _mean_scale(reduction, count), dtype=np.float64)
    dtype = x.dtype if reduction == "none" else np.float64
    loss, lo, grad = _sparse_grad_rows(sp, scale, dtype)
    value = _sparse_value(sp, loss, lo, reduction, count)
    g = _grad_to_input(sp, grad)
    return _back_pair(inp, value, g)


def softmax_cross_entropy(
    logits: Any, labels: Any, axis: Any, reduction: str
) -> Any | None:
    """``lk.softmax_cross_entropy`` (dense labels, no options) by a kernel, or None.

    The fused kernel of :func:`softmax_cross_entropy_grad` (its loss is the
    portable path's, which is the same for the loss alone and for the loss
    with its gradient), the gradient written a panel at a time into a
    scratch buffer and dropped: no array of the input's size.
    """
    return softmax_cross_entropy_grad(logits, labels, axis, reduction, grad=False)


def _scratch(np: Any, rows: int, n: int, dtype: Any) -> _View:
    """A (rows, n) kernel output that is dropped (read as zeros, never written back)."""
    return _View(
        np.broadcast_to(np.zeros((), dtype), (rows, n)), np.dtype(dtype), (n,), False
    )


def softmax_cross_entropy_grad(
    logits: Any, labels: Any, axis: Any, reduction: str, *, grad: bool = True
) -> Any | None:
    """``lk.grad.softmax_cross_entropy`` (dense labels, no options), or None.

    With ``grad=False``: the loss alone (:func:`softmax_cross_entropy`).

    float32 logits with integer or boolean labels: the portable path's
    per-row label sums ``Y`` are NumPy sums whose order (pairwise, or by
    columns for other layouts) the float32 kernel does not follow; sums of
    integers are exact in any order, sums of float labels are not, and where
    ``p_j`` is close to ``y_j`` (distillation) ``Y p_j - y_j`` shows the
    difference even after rounding to float32.

    float64 logits with any real labels (:func:`_dense_grad64`): that kernel
    adds the labels in NumPy's order. `labels` must be an array of the
    logits' shape and library.
    """
    if reduction not in ("none", "mean", "sum"):
        return None
    inp = _input(logits)
    if inp is None:
        return None
    np, x = inp.np, inp.x
    a = _class_axis(axis, x.ndim)
    if a is None:
        return None
    if x.dtype == np.float64:
        return _dense_grad64(inp, labels, logits, a, reduction, grad)
    if x.dtype != np.float32:
        return None
    lab = _dense_labels(inp, labels, logits, kinds="iub")
    if lab is None:
        return None  # float labels: the portable path (see above)
    kernel = _find(x.dtype, "dense_ce_grad")
    if kernel is None:
        return None
    ldt = lab.dtype
    if ldt not in (np.float32, np.float64) or not ldt.isnative:
        ldt = np.float64  # as the portable path's astype (a panel at a time)
    n = x.shape[a]
    rows = x.size // n
    expected = tuple(s for i, s in enumerate(x.shape) if i != a)
    dtype = x.dtype if reduction == "none" else np.float64
    loss = _empty(np, rows, dtype, inp.aligned)
    g_out = _empty(np, (rows, n), x.dtype, inp.aligned) if grad else None
    gv = _scratch(np, rows, n, x.dtype) if g_out is None else g_out
    scale = np.full(rows, 1.0 / rows if reduction == "mean" else 1.0)
    xv, yv = _view(np, _last(np, x, a)), _view(np, _last(np, lab, a), ldt)
    _panels(kernel, rows, n, xv, yv, scale, loss, gv)
    value = loss.reshape(expected)
    if reduction != "none":
        h = _helpers()
        count = np.asarray(float(rows))
        xp = h.array_namespace(x)
        value = h.reduce(value, reduction, out_dtype=x.dtype, count=count, xp=xp)
    if g_out is None:
        return value if inp.back is None else inp.back(np.asarray(value))
    g = g_out.reshape(*expected, n)
    g = g if a == x.ndim - 1 else np.moveaxis(g, -1, a)
    return _back_pair(inp, value, g)


def _sum_order(v: Any) -> bool | None:
    """How NumPy sums `v` along its last axis: one term at a time (True),
    pairwise (False), or None where the strides do not tell.

    NumPy's reduction loops over the axes in the order of their strides, the
    smallest innermost (axes of length 1 aside). The reduced axis innermost,
    each row is one call of its pairwise sum; else the rows grow one term at
    a time, in order (checked against ``np.sum`` on random layouts in
    ``tests/test_kernels_grad.py``). A copy by ``astype`` (order "K") keeps
    the order of the strides.
    """
    if v.shape[-1] <= 1:
        return False
    last = abs(v.strides[-1])
    others = [
        abs(s) for s, d in zip(v.strides[:-1], v.shape[:-1], strict=True) if d > 1
    ]
    if last == 0 or any(s in (0, last) for s in others):
        return None
    return any(s < last for s in others)


def _label_dtype(np: Any, lab: Any) -> Any:
    """The dtype the float64 dense kernel reads `lab` in: its own where the
    kernel converts it (bool, integers, float32/float64; as ``astype``),
    else float64 (a panel at a time)."""
    dt = lab.dtype
    if dt.isnative and (dt.kind in "biu" or dt in (np.float32, np.float64)):
        return dt
    return np.float64


def _dense_grad64(
    inp: _Input, labels: Any, logits: Any, a: int, reduction: str, grad: bool
) -> Any | None:
    """The float64 dense cross entropy and its gradient (``_f64.dense_ce_grad``).

    NumPy labels of any real dtype: the kernel adds them (``Y``) in the
    order NumPy adds them on the portable path, given by the labels' strides
    (:func:`_sum_order`; strides that do not tell it take the portable
    path). torch and JAX labels: integers or bool, whose sums are exact in
    any order (that library's, on the portable path), but where a row's
    absolute sum reaches ``2**53`` (the kernel flags it). The kernel also
    flags rows whose labels cancel the ``L`` of the loss (signed labels
    summing to ~0, see ``_f64._dense_ce_grad_row``). A call with a flagged
    row takes the portable path after all.
    """
    np, x = inp.np, inp.x
    foreign = inp.back is not None
    lab = _dense_labels(inp, labels, logits, kinds="iub" if foreign else "iubf")
    if lab is None:
        return None
    ym = _last(np, lab, a)
    seq = _sum_order(ym)
    if seq is None:
        return None
    kernel = _find(x.dtype, "dense_ce_grad")
    if kernel is None:
        return None
    n = x.shape[a]
    rows = x.size // n
    expected = tuple(s for i, s in enumerate(x.shape) if i != a)
    loss = _empty(np, rows, np.float64, inp.aligned)
    lo = np.empty(rows, dtype=np.float64)
    flag = np.zeros(rows, dtype=np.uint8)
    g_out = _empty(np, (rows, n), x.dtype, inp.aligned) if grad else None
    gv = _scratch(np, rows, n, x.dtype) if g_out is None else g_out
    scale = np.full(rows, 1.0 / rows if reduction == "mean" else 1.0)
    xv, yv = _view(np, _last(np, x, a)), _view(np, ym, _label_dtype(np, lab))
    _panels(kernel, rows, n, xv, yv, scale, loss, gv, lo, flag, seq)
    if (flag & (3 if foreign else 1)).any():
        return None
    if reduction == "none":
        value = loss.reshape(expected) + lo.reshape(expected)  # as _reduction.reduce
    else:
        h = _helpers()
        value = h.reduce(
            loss.reshape(expected),
            reduction,
            out_dtype=x.dtype,
            lo=lo.reshape(expected),
            count=np.asarray(float(rows)),
            xp=h.array_namespace(x),
        )
    if g_out is None:
        return value if inp.back is None else inp.back(np.asarray(value))
    g = g_out.reshape(*expected, n)
    g = g if a == x.ndim - 1 else np.moveaxis(g, -1, a)
    return _back_pair(inp, value, g)


def _py_two_sum(a: float, b: float) -> tuple[float, float]:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _py_div_dd(a_hi: float, a_lo: float, b: float) -> float:
    """The high part of ``_dd.div_dd(a_hi, a_lo, b, 0)``, in Python floats."""
    q1 = a_hi / b
    p = q1 * b
    c = q1 * 134217729.0  # Veltkamp's split, as _dd.two_prod
    q_hi = c - (c - q1)
    q_lo = q1 - q_hi
    c = b * 134217729.0
    b_hi = c - (c - b)
    b_lo = b - b_hi
    e = (((q_hi * b_hi - p) + q_hi * b_lo) + q_lo * b_hi) + q_lo * b_lo
    r = (((a_hi - p) - e) + a_lo) - q1 * 0.0
    return q1 + r / b  # fast_two_sum's sum


def _sum_parts(np: Any, x: Any, xf: Any, yf: Any) -> Any | None:
    """The sum kernel's per-chunk totals ``(s, c)`` of `xf`, `yf` (flat views).

    Where either needs a copy, each chunk (as ``sigmoid_ce_sum_parallel``
    cuts the elements) is added a segment at a time (``sigmoid_ce_sum_acc``,
    segments of whole ``_BLOCK``s from the chunk's start): the same
    additions in the same order as the one-pass kernel, so the same totals.
    """
    size = x.size
    part = np.zeros((4 * int(_state.get("threads", 1)), 2), dtype=np.float64)
    item = xf.dtype.itemsize + yf.dtype.itemsize
    if (type(xf) is _View or type(yf) is _View) and size * item <= _PANEL_BYTES:
        xf, yf = _gathered(np, xf), _gathered(np, yf)  # small: one pass on copies
    if type(xf) is not _View and type(yf) is not _View:
        kernel = _find(x.dtype, "sigmoid_ce_sum", sigmoid=True)
        if kernel is None:
            return None
        _run(kernel, size, 1, xf, yf, part)
        return part
    kernel = _find(x.dtype, "sigmoid_ce_sum_acc", sigmoid=True)
    if kernel is None:
        return None
    block = 512  # the kernels' _BLOCK
    nch = min(size, part.shape[0]) if size > 1 and size >= _PARALLEL_MIN else 1
    starts = [ch * size // nch for ch in range(nch + 1)]
    seg = max(block, _PANEL_BYTES // (nch * item) // block * block)
    xs = np.empty((nch, seg), dtype=xf.dtype)
    ys = np.empty((nch, seg), dtype=yf.dtype)
    acc = np.zeros((nch, 8), dtype=np.float64)
    lens = np.zeros(nch, dtype=np.int64)
    for off in range(0, max(starts[i + 1] - starts[i] for i in range(nch)), seg):
        for ch in range(nch):
            lo = min(starts[ch] + off, starts[ch + 1])
            hi = min(lo + seg, starts[ch + 1])
            lens[ch] = hi - lo
            for f, buf in ((xf, xs), (yf, ys)):
                if type(f) is _View:
                    _copy_rows(np, f.v, lo, hi, buf[ch, : hi - lo], into=True)
                else:
                    buf[ch, : hi - lo] = f[lo:hi]
        # Parallel over the chunks exactly where the one-pass kernel would be.
        _run(kernel, nch, _PARALLEL_MIN, xs, ys, lens, acc, part[:nch])
    return part


def _sigmoid_ce_total(np: Any, x: Any, xf: Any, yf: Any, reduction: str) -> Any | None:
    """``"sum"``/``"mean"`` of the sigmoid cross entropy, or None if not finite.

    The kernel adds the losses as it computes them (a compensated sum per
    chunk, ~2**-84 relative for 2**22 non-negative terms) instead of storing
    them for the portable path's pairwise double-double sum: both totals
    round to the same value but where the exact one lies within ~2**-84 of
    a rounding boundary of float64. The rounding is the portable path's.
    """
    part = _sum_parts(np, x, xf, yf)
    if part is None:
        return None
    s, lo = 0.0, 0.0
    for p_s, p_c in part.tolist():  # add_dd of the partial totals, in order
        if p_s == 0.0 and p_c == 0.0:
            continue  # adds nothing: (s, lo) is normalised after the first
        t, e = _py_two_sum(s, p_s)
        u, f = _py_two_sum(lo, p_c)
        t, e = _py_two_sum(t, e + u)
        s, lo = _py_two_sum(t, e + f)
    if not (math.isfinite(s) and math.isfinite(lo)):
        return None
    h = _helpers()
    xp = h.array_namespace(x)
    if abs(s) >= 2.0**990:  # the split overflows: NumPy's NaN and warning
        total, total_lo = np.asarray(s), np.asarray(lo)
        if reduction == "sum":
            return h.round_to(total + total_lo, x.dtype, xp=xp)
        count = np.asarray(float(x.size))
        return h.finish_mean(total, total_lo, count, out_dtype=x.dtype, xp=xp)
    # The tail of _reduction.reduce in Python floats (the same IEEE operations
    # as on its 0-d arrays, ~60 us less per call), and its result types: a
    # float64 sum is an np.float64, everything else a 0-d array.
    v = s + lo if reduction == "sum" else _py_div_dd(s, lo, float(x.size))
    if x.dtype == np.float64:
        return np.float64(v) if reduction == "sum" else np.asarray(v)
    if abs(v) < 3.0e38:  # no overflow: float32 rounds to nearest, as round_to
        return np.asarray(v, dtype=np.float32)
    return h.round_to(np.asarray(v), x.dtype, xp=xp)


def _labels_view(labels: Any, logits: Any, *, kinds: str = "iu") -> Any | None:
    """`labels` of the logits' library (torch or JAX) as NumPy, or None.

    Only labels whose dtype kind is in `kinds` (integers by default).
    """
    np = sys.modules["numpy"]
    if is_torch_array(logits) and is_torch_array(labels):
        import torch

        if type(labels) is not torch.Tensor or labels.device.type != "cpu":
            return None
    elif is_jax_array(logits) and is_jax_array(labels):
        import jax

        if isinstance(labels, jax.core.Tracer) or len(labels.devices()) != 1:
            return None
    else:
        return None
    try:
        lab = np.from_dlpack(labels)
    except (BufferError, RuntimeError, TypeError, ValueError):
        return None
    return lab if lab.dtype.kind in kinds else None


def _dense_labels(inp: _Input, labels: Any, logits: Any, *, kinds: str) -> Any | None:
    """Labels of the logits' shape as a NumPy array of a dtype kind in `kinds`,
    or None (the portable path then converts or raises)."""
    np, x = inp.np, inp.x
    if inp.back is None:
        lab = labels if type(labels) is np.ndarray else None
    else:
        lab = _labels_view(labels, logits, kinds=kinds)
    if lab is None or lab.shape != x.shape or lab.dtype.kind not in kinds:
        return None
    return lab


def _back_pair(inp: _Input, value: Any, g: Any) -> tuple[Any, Any]:
    """A loss and its gradient back in the input's library."""
    if inp.back is None:
        return value, g
    return inp.back(inp.np.asarray(value)), inp.back(g)


# ------------------------------------------------------- the sigmoid family


def _sigmoid_mods() -> tuple[ModuleType, ModuleType] | None:
    """The elementwise kernels (float32, float64 results), or None."""
    if _load() is None:
        return None
    if "sigmoid" not in _state:
        from . import _sigmoid32, _sigmoid64

        _state["sigmoid"] = (_sigmoid32, _sigmoid64)
    mods: tuple[ModuleType, ModuleType] = _state["sigmoid"]
    return mods


def _flat(
    np: Any, a: Any, order: str, dtype: Any = None, *, write: bool = False
) -> Any:
    """`a`'s elements in `order` ("C", or "F": of ``a.T``) for a 1-D kernel."""
    o = a if order == "C" else a.T
    if o.flags.c_contiguous and (dtype is None or o.dtype == dtype):
        return o.reshape(-1)
    return _view(np, o[..., None], dtype, flat=True, write=write)


def _unflat(yf: Any, shape: tuple[int, ...], order: str) -> Any:
    return yf.reshape(shape) if order == "C" else yf.reshape(shape[::-1]).T


def _order(x: Any) -> str:
    """ "F" for an F-contiguous (not C-contiguous) array: its flat view is free."""
    return "F" if x.flags.f_contiguous and not x.flags.c_contiguous else "C"


def _elementwise(x: Any, out: Any, *, name: str) -> Any | None:
    inp = _input(x)  # 0-d: the portable path (its return types vary)
    if inp is None or (out is not None and inp.back is not None):
        return None  # `out=` is NumPy-only: the portable path raises
    np, x = inp.np, inp.x
    if out is not None and not (
        type(out) is np.ndarray and out.shape == x.shape and out.dtype == x.dtype
    ):
        return None  # the portable path raises the error
    kernel = _find(x.dtype, name, sigmoid=True)
    if kernel is None:
        return None
    if out is not None and _aliased(np, x, out):
        out[...] = _elementwise(x, None, name=name)
        return out
    order = _order(x)
    xf = _flat(np, x, order)
    if out is not None:
        _panels(kernel, x.size, 1, xf, _flat(np, out, order, write=True))
        return out
    yf = _empty(np, x.size, x.dtype, inp.aligned)
    _panels(kernel, x.size, 1, xf, yf)
    y = _unflat(yf, x.shape, order)
    return y if inp.back is None else inp.back(y)


def sigmoid(x: Any, out: Any) -> Any | None:
    """``sigmoid(x, out=out)`` by a kernel, or None (see module doc)."""
    return _elementwise(x, out, name="sigmoid")


def log_sigmoid(x: Any, out: Any) -> Any | None:
    """``log_sigmoid(x, out=out)`` by a kernel, or None."""
    return _elementwise(x, out, name="log_sigmoid")


def softplus(x: Any, out: Any) -> Any | None:
    """``softplus(x, out=out)`` by a kernel, or None."""
    return _elementwise(x, out, name="softplus")


def sigmoid_cross_entropy(logits: Any, labels: Any, reduction: str) -> Any | None:
    """The plain sigmoid cross entropy (no ``pos_weight``, no smoothing), or None.

    `labels` must be a real array of the logits' shape and library (NumPy
    for NumPy logits); anything else goes to the portable path, which
    converts or raises.
    """
    if reduction not in ("none", "mean", "sum"):
        return None
    inp = _input(logits)
    if inp is None:
        return None
    np, x = inp.np, inp.x
    lab = _dense_labels(inp, labels, logits, kinds="fiub")
    if lab is None:
        return None
    kernel = _find(x.dtype, "sigmoid_ce", sigmoid=True)
    if kernel is None:
        return None
    # The kernels read bool (as uint8) and integer labels as they are, and
    # convert each to float64 as the portable path's astype does; other
    # labels (float16, non-native) are converted a panel at a time.
    if lab.dtype == np.bool_:
        lab = lab.view(np.uint8)
    ldt = lab.dtype
    if not ldt.isnative or (ldt.kind == "f" and ldt not in (np.float32, np.float64)):
        ldt = np.float64
    order = _order(x)
    xf, yf = _flat(np, x, order), _flat(np, lab, order, ldt)
    refine = x.dtype == np.float64  # double-double: the low parts too
    if reduction != "none":
        value = _sigmoid_ce_total(np, x, xf, yf, reduction)
        if value is not None:
            return value if inp.back is None else inp.back(np.asarray(value))
    # "none", or a total that is not finite: the losses, reduced as the
    # portable path reduces them (its NaN, warnings and all).
    dtype = x.dtype if reduction == "none" else np.float64
    loss = _empty(np, x.size, dtype, inp.aligned and reduction == "none")
    lo = np.empty(0 if reduction == "none" else x.size, dtype=np.float64)
    _panels(kernel, x.size, 1, xf, yf, loss, *((lo,) if refine else ()))
    value = _unflat(loss, x.shape, order)
    if reduction != "none":
        value = _helpers().reduce(
            value,
            reduction,
            out_dtype=x.dtype,
            lo=_unflat(lo, x.shape, order) if refine else None,
            xp=_helpers().array_namespace(x),
        )
    return value if inp.back is None else inp.back(np.asarray(value))
