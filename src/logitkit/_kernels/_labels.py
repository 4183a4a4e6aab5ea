"""numba helper of the sparse cross entropy's label checks."""

from __future__ import annotations

from typing import Any

from numba import njit

__all__ = ["label_range"]


@njit(cache=True, nogil=True)
def label_range(labels: Any) -> tuple[int, int]:
    """``(labels.min(), labels.max())`` of a non-empty 1-D integer array, in one pass.

    Two NumPy reductions cost ~3.5 us on a small array, a tenth of a small
    call; this one ~0.5 us.
    """
    lo = labels[0]
    hi = labels[0]
    for v in labels:
        lo = min(lo, v)
        hi = max(hi, v)
    return lo, hi
