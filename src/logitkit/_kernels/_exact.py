"""numba kernel of :class:`logitkit._score.ExactSums`: exact sums by binade.

A finite float64 ``v`` is ``M * 2**(k - 1074)`` with ``M`` a 53-bit integer
(the significand with its hidden bit, or a subnormal's) and ``k = max(E, 1) -
1`` from its biased exponent ``E``: ``k`` runs over ``[0, 2046)``. ``M`` is
split into ``hi * 2**27 + lo`` (``hi < 2**26``, ``lo < 2**27``), and both are
added with ``v``'s sign into int64 accumulators, one per (group, ``k``): up to
``2**36`` values can be added before an accumulator could overflow. The
caller turns the accumulators into Python integers (exact totals).
"""

from __future__ import annotations

from typing import Any

from numba import njit

from ._f32 import _KW
from ._intrinsics import as_int

__all__ = ["KEYS", "bin_sums"]

#: Accumulators per group: one per binade k of a float64.
KEYS = 2046


@njit(**_KW)  # type: ignore[untyped-decorator]
def bin_sums(v: Any, groups: Any, hi: Any, lo: Any) -> bool:
    """Add each ``v[i]`` to the accumulators of group ``groups[i]`` (all in
    group 0 when `groups` is empty); False, adding nothing, when a value is
    not finite."""
    for i in range(v.size):
        if (as_int(v[i]) >> 52) & 0x7FF == 0x7FF:
            return False
    grouped = groups.size > 0
    for i in range(v.size):
        b = as_int(v[i])
        e = (b >> 52) & 0x7FF
        m = b & 0xFFFFFFFFFFFFF
        if e > 0:
            m |= 0x10000000000000
            e -= 1
        if m == 0:
            continue
        key = e + (groups[i] * KEYS if grouped else 0)
        if b < 0:
            hi[key] -= m >> 27
            lo[key] -= m & 0x7FFFFFF
        else:
            hi[key] += m >> 27
            lo[key] += m & 0x7FFFFFF
    return True
