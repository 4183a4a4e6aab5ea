"""Type aliases shared by the modules of logitkit."""

from __future__ import annotations

from typing import Any, TypeAlias

#: Any Array-API array (NumPy, PyTorch, JAX, CuPy, Dask, array-api-strict, ...).
Array: TypeAlias = Any
#: An Array-API namespace, as returned by ``array_api_compat.array_namespace``.
ArrayNamespace: TypeAlias = Any
#: A data type object of some namespace.
DType: TypeAlias = Any
#: An axis argument: one axis, several axes, or ``None`` for all of them.
Axis: TypeAlias = int | tuple[int, ...] | None
