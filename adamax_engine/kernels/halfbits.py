"""float16 / bfloat16 <-> float32 on raw uint16 bits, for numba CPU kernels.

numba has no CPU float16 or bfloat16 arithmetic, so mixed-precision kernels read and write the
16-bit values as uint16 and convert here, with integer operations only (plus one float add for
fp16 subnormals). Conversions up are exact; conversions down round to nearest, ties to even,
like numpy's ``astype(float16)`` and ml_dtypes' ``astype(bfloat16)``: inf stays inf, overflow
becomes inf, NaN stays NaN (quiet). Where the CPU has half conversion instructions (x86 F16C,
ARMv8) fp16 uses them through LLVM's fpext/fptrunc (same results, faster). The tests check all
65536 inputs of each upcast and ~10^6 downcasts, both fp16 versions, against numpy/ml_dtypes.
(F. Giesen's branch-light half conversions, public domain, are the model for the fp16 pair.)
"""
import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

FLOAT16, BFLOAT16 = 0, 1  # the ``store`` code the mixed-precision kernels take


def store_code(dtype):
    """The ``store`` code of a 16-bit numpy dtype (numpy float16 or ml_dtypes bfloat16)."""
    return BFLOAT16 if dtype.name == "bfloat16" else FLOAT16


@intrinsic
def bitcast(typingctx, value, to):
    """Reinterpret a 32-bit value's bits as the other 32-bit type (uint32 <-> float32)."""
    target = to.instance_type if isinstance(to, types.NumberClass) else None
    if target is None or target.bitwidth != 32 or value.bitwidth != 32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(target))

    return target(value, to), codegen


@njit(inline="always")
def f32_bits(x):
    return bitcast(np.float32(x), np.uint32)


@njit(inline="always")
def f32_from_bits(u):
    return bitcast(np.uint32(u), np.float32)


@njit(inline="always")
def bf16_to_f32(h):
    return f32_from_bits(np.uint32(h) << np.uint32(16))


@njit(inline="always")
def bf16_quiet(u):
    """The bfloat16 bits of the float32 NaN with bits ``u``: its top half, made quiet."""
    return np.uint32(np.uint32(u >> np.uint32(16)) | np.uint32(0x40))


@njit(inline="always")
def f32_is_nan(u):
    return np.uint32(u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)


@njit(inline="always")
def f32_to_bf16(x):
    """Round to nearest even. Every intermediate is cut back to 32 bits: numba widens integer
    arithmetic to 64, which would halve the vector width."""
    u = f32_bits(x)
    odd = np.uint32(np.uint32(u >> np.uint32(16)) & np.uint32(1))
    rounded = np.uint32(np.uint32(np.uint32(u + np.uint32(0x7FFF)) + odd) >> np.uint32(16))
    return np.uint16(bf16_quiet(u) if f32_is_nan(u) else rounded)  # a select: vectorises


@njit(inline="always")
def f16_to_f32_soft(h):
    h = np.uint32(h)
    o = (h & np.uint32(0x7FFF)) << np.uint32(13)   # exponent and mantissa in place
    exp = o & np.uint32(0x0F800000)
    o = o + np.uint32((127 - 15) << 23)            # rebias the exponent
    if exp == np.uint32(0x0F800000):               # inf / NaN
        o = o + np.uint32((128 - 16) << 23)
    elif exp == 0:                                  # zero / subnormal: renormalise exactly
        o = f32_bits(f32_from_bits(o + np.uint32(1 << 23)) - f32_from_bits(np.uint32(113 << 23)))
    return f32_from_bits(o | ((h & np.uint32(0x8000)) << np.uint32(16)))


@njit(inline="always")
def f32_to_f16_soft(x):
    u = f32_bits(x)
    sign = (u >> np.uint32(16)) & np.uint32(0x8000)
    u = u & np.uint32(0x7FFFFFFF)
    if u >= np.uint32((127 + 16) << 23):            # overflow, inf or NaN
        o = np.uint32(0x7E00) if u > np.uint32(0x7F800000) else np.uint32(0x7C00)
    elif u < np.uint32(113 << 23):                  # subnormal or zero: let the FPU round
        magic = np.uint32(((127 - 15) + (23 - 10) + 1) << 23)
        o = f32_bits(f32_from_bits(u) + f32_from_bits(magic)) - magic
    else:
        odd = (u >> np.uint32(13)) & np.uint32(1)
        u = u + np.uint32((((15 - 127) << 23) + 0xFFF) & 0xFFFFFFFF) + odd
        o = u >> np.uint32(13)
    return np.uint16(o | sign)


@intrinsic
def _half_to_float(typingctx, h):
    """LLVM ``fpext half -> float``: one F16C / ARMv8 instruction, exact."""
    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
    return types.float32(types.uint16), codegen


@intrinsic
def _float_to_half(typingctx, x):
    """LLVM ``fptrunc float -> half``: round to nearest even, NaN stays NaN."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))
    return types.uint16(types.float32), codegen


def _hardware_half():
    """Whether this CPU converts halves itself (x86 F16C, any 64-bit ARM). Elsewhere LLVM would
    call compiler-rt helpers that numba's JIT may not link, so the integer version is used."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return True
    try:
        import llvmlite.binding as llvm
        return "+f16c" in llvm.get_host_cpu_features().flatten().split(",")
    except Exception:  # noqa: BLE001 - any doubt: the portable path
        return False


HARDWARE_HALF = _hardware_half()


@njit(inline="always")
def _f16_to_f32_hard(h):
    return _half_to_float(np.uint16(h))


@njit(inline="always")
def _f32_to_f16_hard(x):
    return _float_to_half(np.float32(x))


# ~2x faster in the mixed kernel where the CPU has the instructions; bit-identical either way
f16_to_f32 = _f16_to_f32_hard if HARDWARE_HALF else f16_to_f32_soft
f32_to_f16 = _f32_to_f16_hard if HARDWARE_HALF else f32_to_f16_soft


@njit(inline="always")
def to_f32(h, store):
    return bf16_to_f32(h) if store == BFLOAT16 else f16_to_f32(h)


@njit(inline="always")
def from_f32(x, store):
    return f32_to_bf16(x) if store == BFLOAT16 else f32_to_f16(x)


@njit(cache=True)
def widen(bits, store):
    """uint16 bits -> float32 array (exact); store 2 = the integer fp16 version (for tests)."""
    out = np.empty(bits.shape[0], np.float32)
    for i in range(bits.shape[0]):
        out[i] = f16_to_f32_soft(bits[i]) if store == 2 else to_f32(bits[i], store)
    return out


@njit(cache=True)
def narrow(values, store):
    """float32 array -> uint16 bits, round to nearest even; store 2 as in widen."""
    out = np.empty(values.shape[0], np.uint16)
    for i in range(values.shape[0]):
        out[i] = f32_to_f16_soft(values[i]) if store == 2 else from_f32(values[i], store)
    return out
