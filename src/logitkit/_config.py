"""Which paths logitkit takes here, and the kernels' thread count."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any, Literal

from . import _kernels

__all__ = ["get_num_threads", "set_num_threads", "show_config"]

_BACKENDS = (
    "numpy",
    "numba",
    "scipy",
    "torch",
    "jax",
    "array-api-strict",
    "dask",
    "cupy",
)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _kernel_state() -> dict[str, Any]:
    """The compiled kernels: in use, or why not (imports numba when installed)."""
    if _kernels.disabled():
        return {"active": False, "reason": "LOGITKIT_DISABLE_KERNELS is set"}
    if _kernels._load() is None:
        error = _kernels._state.get("error", "numba is not installed")
        return {"active": False, "reason": f"numba cannot be imported ({error})"}
    import llvmlite.binding  # type: ignore[import-untyped]
    import numba

    target = str(llvmlite.binding.get_host_cpu_name())  # what numba compiles for
    return {
        "active": True,
        "threads": get_num_threads(),
        "max_threads": int(getattr(numba.config, "NUMBA_NUM_THREADS", 1)),
        "threading_layer": str(getattr(numba.config, "THREADING_LAYER", "default")),
        "cpu_target": target,
    }


def show_config(mode: Literal["stdout", "dicts"] = "stdout") -> dict[str, Any] | None:
    """Show which path logitkit takes on this machine, and the versions involved.

    The compiled kernels (numba) run for NumPy float32/float64 arrays, and for
    CPU torch tensors and JAX arrays outside tracing; where numba cannot be
    imported, or ``LOGITKIT_DISABLE_KERNELS`` is set, every call takes the
    portable Array-API path (the same values, slower). Calling this imports
    numba when it is installed.

    Parameters
    ----------
    mode : {"stdout", "dicts"}, optional
        ``"stdout"`` prints a report; ``"dicts"`` returns it as a dict.
        Default: ``"stdout"``.

    Returns
    -------
    dict or None
        With ``mode="dicts"``: ``{"logitkit", "python", "platform",
        "kernels", "packages"}``; ``kernels["active"]`` says whether the
        compiled kernels are in use (else ``kernels["reason"]``).

    Examples
    --------
    >>> import logitkit as lk
    >>> info = lk.show_config(mode="dicts")
    >>> sorted(info)
    ['kernels', 'logitkit', 'packages', 'platform', 'python']
    """
    if mode not in ("stdout", "dicts"):
        msg = f'`mode` must be "stdout" or "dicts"; got {mode!r}.'
        raise ValueError(msg)
    from . import __version__

    info: dict[str, Any] = {
        "logitkit": __version__,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "kernels": _kernel_state(),
        "packages": {name: _version(name) for name in _BACKENDS},
    }
    if mode == "dicts":
        return info
    k = info["kernels"]
    if k["active"]:
        path = (
            f"compiled kernels (numba), {k['threads']} of {k['max_threads']} threads, "
            f"{k['threading_layer']} threading layer, CPU target {k['cpu_target']}"
        )
    else:
        path = f"portable Array-API path: {k['reason']}"
    lines = [
        f"logitkit {info['logitkit']} (Python {info['python']}, {info['platform']})",
        f"NumPy float32/float64: {path}",
        "packages:",
    ]
    for name, v in info["packages"].items():
        lines.append(f"  {name}: {v or 'not installed'}")
    print("\n".join(lines))
    return None


def set_num_threads(n: int) -> None:
    """Cap the threads of the compiled kernels (all of them by default).

    Large inputs (from 2**20 elements) split their rows between this many
    threads; smaller ones run on the calling thread. The environment
    variable ``LOGITKIT_NUM_THREADS`` sets the starting value. Imports
    numba.

    Parameters
    ----------
    n : int
        From 1 to numba's ``NUMBA_NUM_THREADS`` (the CPUs, by default).

    Raises
    ------
    ValueError
        If `n` is not in that range, or the kernels are not available
        (``lk.show_config()`` says why).

    Examples
    --------
    >>> import logitkit as lk
    >>> before = lk.get_num_threads()
    >>> lk.set_num_threads(1)
    >>> lk.get_num_threads()
    1
    >>> lk.set_num_threads(before)
    """
    if _kernels._load() is None:
        msg = "the compiled kernels are not available: " + _kernel_state()["reason"]
        raise ValueError(msg)
    import numba

    top = int(getattr(numba.config, "NUMBA_NUM_THREADS", 1))
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= top:
        msg = f"`n` must be an int from 1 to {top} (NUMBA_NUM_THREADS); got {n!r}."
        raise ValueError(msg)
    _kernels._state["threads"] = n


def get_num_threads() -> int:
    """The threads the compiled kernels may use (see :func:`set_num_threads`).

    1 where the kernels are not available.
    """
    if _kernels._load() is None:
        return 1
    return int(_kernels._state["threads"])
