"""Helpers for tests that run on several array libraries."""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import (
    is_array_api_strict_namespace,
    is_dask_namespace,
    is_jax_namespace,
    is_torch_namespace,
)


def to_numpy(x: Any) -> np.ndarray:
    """Any backend's array as a NumPy array (computing Dask graphs)."""
    if hasattr(x, "compute"):
        x = x.compute()
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # NumPy has no bfloat16
            return np.asarray(x.float().numpy())
    if type(x).__module__.startswith("array_api_strict"):
        return np.asarray(x._array)
    x = np.asarray(x)
    if x.dtype.name == "bfloat16":  # JAX's ml_dtypes bfloat16: exact in float32
        return x.astype(np.float32)
    return x


def asarray(xp: Any, values: Any, dtype: str = "float64") -> Any:
    """`values` as an array of `xp` with the named dtype."""
    return xp.asarray(np.asarray(values, dtype=np.float64), dtype=getattr(xp, dtype))


def jit(xp: Any, f: Any, **static: Any) -> Any:
    """`f` with keyword options bound, under ``jax.jit`` for JAX."""

    def g(*arrays: Any) -> Any:
        return f(*arrays, **static)

    if is_jax_namespace(xp):
        import jax

        return jax.jit(g)
    return g


def name_of(xp: Any) -> str:
    if is_torch_namespace(xp):
        return "torch"
    if is_jax_namespace(xp):
        return "jax"
    if is_dask_namespace(xp):
        return "dask"
    if is_array_api_strict_namespace(xp):
        return "array_api_strict"
    return "numpy"


def allow_flushed_subnormals(
    xp: Any, dtype: str, y: np.ndarray, err: np.ndarray, exact: Any
) -> np.ndarray:
    """JAX on CPU flushes float64 subnormal results to zero (XLA; documented in
    docs/decisions.md): there, a zero where the exact value is subnormal is no
    error. Every other backend and dtype keeps `err` unchanged."""
    if not (is_jax_namespace(xp) and dtype == "float64"):
        return err
    tiny = np.finfo(np.float64).tiny
    exact_abs = np.abs(np.asarray([float(v) for v in np.ravel(exact)])).reshape(
        err.shape
    )
    flushed = (np.asarray(y) == 0) & (exact_abs < tiny)
    return np.where(flushed, 0.0, err)
