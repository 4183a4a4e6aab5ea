"""Ahead-of-time compiled kernels of ``logitkit score`` (``lk.c``, via ctypes).

The C library is built at install time (an optional setuptools extension:
without a C compiler the install succeeds and this module reports the
kernels missing). It has no start-up cost beyond loading a shared object,
where numba's kernels cost ~0.9 s per process (``import numba``, and numba's
own import of ``scipy.linalg``): for a command line run once per file that is
as long as scoring 2 GB. Calls release the GIL, so that rows are scored by
several Python threads at once.

Nothing is loaded at ``import logitkit``; ``LOGITKIT_DISABLE_KERNELS=1``
turns these kernels off as it does numba's, and ``LOGITKIT_NUM_THREADS``
caps the threads.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import itertools
import os
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._kernels import disabled

__all__ = ["available", "bin_sums", "score_rows_f32"]

#: Binades of a float64 (accumulators per group of :func:`bin_sums`).
KEYS = 2046
#: ``lk_abi_version()`` of the lk.c this module is written for: a library
#: left from an older build (editable installs keep it in the tree) is refused.
ABI_VERSION = 1
#: Rows per thread below which one thread does a call's work.
_MIN_ROWS_PER_THREAD = 512

_state: dict[str, Any] = {}


def _library() -> ctypes.CDLL | None:
    """The compiled library, loaded once; None where it was not built."""
    if "lib" in _state:
        lib: ctypes.CDLL | None = _state["lib"]
        return lib
    lib = None
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"_lk{suffix}"
        if path.is_file():
            try:
                lib = ctypes.CDLL(str(path))
            except OSError as exc:
                _state["error"] = repr(exc)
                continue
            break
    if lib is not None:
        try:
            version = lib.lk_abi_version
        except AttributeError:  # a library built from an older lk.c
            version = None
        if version is None or version() != ABI_VERSION:
            _state["error"] = f"{path}: built from another version of lk.c; reinstall"
            lib = None
    if lib is not None:
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        lib.lk_score_rows_f32.argtypes = [p, i64, i64, i64, i64, p, p, p, p, p, p, p]
        lib.lk_score_rows_f32.restype = None
        lib.lk_bin_sums.argtypes = [p, i64, p, i64, p, p]
        lib.lk_bin_sums.restype = ctypes.c_int
        lib.lk_abi_version.restype = ctypes.c_int
    _state["lib"] = lib
    return lib


def available() -> bool:
    """Whether the compiled library is there and not disabled."""
    return not disabled() and _library() is not None


def _threads() -> int:
    if "threads" not in _state:
        limit = os.environ.get("LOGITKIT_NUM_THREADS", "")
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        _state["threads"] = max(1, min(int(limit), cores)) if limit.isdigit() else cores
    threads: int = _state["threads"]
    return threads


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist here."""
    _state.pop("pool", None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _pool() -> ThreadPoolExecutor:
    if "pool" not in _state:
        _state["pool"] = ThreadPoolExecutor(
            max_workers=_threads(), thread_name_prefix="logitkit"
        )
    pool: ThreadPoolExecutor = _state["pool"]
    return pool


def score_rows_f32(
    x: npt.NDArray[Any], labels: npt.NDArray[Any]
) -> tuple[npt.NDArray[Any], ...] | None:
    """``(nll, entropy, brier, conf, rank, status)`` of float32 logits, or None.

    `x` is (rows, classes), `labels` the class of each row (``-1``: ignored).
    The values are those of ``logitkit._score._logit_rows``, float32; rank
    int64; status int8 (1: a row with a NaN, a ``+inf`` or no finite logit).
    None where the library is not available.
    """
    if disabled():
        return None
    lib = _library()
    if lib is None or x.dtype != np.float32 or x.ndim != 2 or x.shape[1] == 0:
        return None
    if x.strides[1] != 4 or x.strides[0] % 4:
        x = np.ascontiguousarray(x)
    y = np.ascontiguousarray(labels, dtype=np.int64)
    rows, n = x.shape
    if y.shape != (rows,) or (rows and int(y.max()) >= n):
        msg = f"labels of shape {y.shape} (max < {n}) for logits of shape {x.shape}"
        raise ValueError(msg)  # the kernel would read outside the rows
    outs: list[npt.NDArray[Any]] = [
        *(np.empty(rows, dtype=np.float32) for _ in range(4)),
        np.empty(rows, dtype=np.int64),  # rank
        np.empty(rows, dtype=np.int8),  # status
    ]
    ptrs = [o.ctypes.data for o in outs]
    stride = x.strides[0] // 4
    args = (x.ctypes.data, stride, n)
    parts = min(_threads(), max(1, rows // _MIN_ROWS_PER_THREAD))
    if parts == 1:
        lib.lk_score_rows_f32(*args, 0, rows, y.ctypes.data, *ptrs)
    else:
        bounds = [rows * k // parts for k in range(parts + 1)]
        futures = [
            _pool().submit(lib.lk_score_rows_f32, *args, a, b, y.ctypes.data, *ptrs)
            for a, b in itertools.pairwise(bounds[:-1])
        ]
        try:
            # this thread scores the last part: one thread fewer to wake
            # (waking an idle one costs ~0.3 ms on a virtual machine)
            lib.lk_score_rows_f32(*args, bounds[-2], rows, y.ctypes.data, *ptrs)
            for f in futures:
                f.result()
        finally:  # (an interrupt) never free the arrays under a running call
            wait(futures)
    return tuple(outs)


def bin_sums(
    values: npt.NDArray[Any],
    groups: npt.NDArray[Any] | None,
    hi: npt.NDArray[np.int64],
    lo: npt.NDArray[np.int64],
) -> bool | None:
    """Add `values` to the int64 accumulators `hi`/`lo` by (group, binade).

    A finite float64 ``v`` is ``M * 2**(k - 1074)`` with ``M`` a 53-bit
    integer and ``k = max(E, 1) - 1`` (``E`` its biased exponent, so ``k`` in
    ``[0, 2046)``); ``M = hi * 2**27 + lo`` is added with ``v``'s sign to
    accumulator ``group * KEYS + k``: ``2**36`` values fit before one could
    overflow. Returns False, adding nothing, when a value is not finite; None
    where the library is not available.
    """
    if disabled():
        return None
    lib = _library()
    if lib is None:
        return None
    v = np.ascontiguousarray(values, dtype=np.float64)
    g = None if groups is None else np.ascontiguousarray(groups, dtype=np.int64)
    ok = lib.lk_bin_sums(
        v.ctypes.data,
        v.size,
        None if g is None else g.ctypes.data,
        KEYS,
        hi.ctypes.data,
        lo.ctypes.data,
    )
    return bool(ok)
