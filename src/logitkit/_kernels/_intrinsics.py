"""LLVM intrinsics numba does not expose: fused multiply-add, bit casts, maxnum.

Imported only by the kernel modules (it imports numba and llvmlite).
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.extending import intrinsic

__all__ = ["as_float", "as_int", "fma", "maxnum32", "maxnum64"]


def _fma(_typingctx: Any, _a: Any, _b: Any, _c: Any) -> Any:
    """``a * b + c`` rounded once (``llvm.fma``; never reassociated)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(_context: Any, builder: Any, _signature: Any, args: Any) -> Any:
        f64 = ir.DoubleType()
        fnty = ir.FunctionType(f64, [f64, f64, f64])
        fn = builder.module.declare_intrinsic("llvm.fma", [f64], fnty)
        return builder.call(fn, args)

    return sig, codegen


def _as_int(_typingctx: Any, _a: Any) -> Any:
    """The bits of a float64 as an int64."""
    sig = types.int64(types.float64)

    def codegen(_context: Any, builder: Any, _signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


def _as_float(_typingctx: Any, _a: Any) -> Any:
    """The float64 whose bits are the int64 `a`."""
    sig = types.float64(types.int64)

    def codegen(_context: Any, builder: Any, _signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


fma: Any = intrinsic(_fma)
as_int: Any = intrinsic(_as_int)
as_float: Any = intrinsic(_as_float)


def _maxnum(ty: Any, irty: Any) -> Any:
    def impl(_typingctx: Any, _a: Any, _b: Any) -> Any:
        sig = ty(ty, ty)

        def codegen(_context: Any, builder: Any, _signature: Any, args: Any) -> Any:
            fnty = ir.FunctionType(irty, [irty, irty])
            fn = builder.module.declare_intrinsic("llvm.maxnum", [irty], fnty)
            # nnan on this call only: the row maximum vectorises (vmaxps); a
            # NaN in the row is detected by the sum, not by the maximum.
            return builder.call(fn, args, fastmath=("nnan", "nsz"))

        return sig, codegen

    return intrinsic(impl)


maxnum32: Any = _maxnum(types.float32, ir.FloatType())
maxnum64: Any = _maxnum(types.float64, ir.DoubleType())
