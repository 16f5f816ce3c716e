"""Numba CPU kernel for low-bit optimizer state: bfloat16 moments (kernels/lowbit_reference.py
is the oracle and documents the rounding).

One fused pass per chunk: read p, g and the 16-bit moment and inf-norm, step in float32 with
the float32 path's own element code (``cpu.prepared_grad``, ``cpu.adamax_element``), write p
and the moments rounded back to bfloat16. 4 + 4 + 2 + 2 bytes read and 4 + 2 + 2 written per
element: 20 B instead of 28. No fastmath: bit-identical to the oracle, whatever the thread
count (the random bits depend on the step and the element only).
"""
import numpy as np
from numba import njit, prange

from .cpu import adamax_element, prepared_grad, sumsq_flat
from .halfbits import bf16_to_f32, f32_bits, f32_to_bf16
from .layout import (ACTIVE, BETA1, BETA2, CLIP_MAX, CLIP_MIN, CLIP_VALUE, DECAY, DECAY_MODE,
                     EPS, GRAD_SCALE, LR_T, ONE_MINUS_BETA1, SCALE_GRAD)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(inline="always")
def random16(seed, index):
    """splitmix64(seed * golden ^ index) & 0xFFFF (lowbit_reference.random16)."""
    z = (np.uint64(seed) * _GOLDEN) ^ np.uint64(index)
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return np.uint32(z & np.uint64(0xFFFF))


@njit(inline="always")
def bf16_stochastic(x, r):
    """float32 -> bfloat16 bits rounded up with probability equal to the remainder; inf/NaN
    rounded to nearest (lowbit_reference.bf16_stochastic)."""
    bits = f32_bits(x)
    if (bits & np.uint32(0x7F800000)) == np.uint32(0x7F800000):
        return f32_to_bf16(x)
    return np.uint16((bits + r) >> np.uint32(16))


@njit(parallel=True, cache=True, error_model="numpy")
def bf16_update(params, grads, mq, uq, chunks, hyper, flags, flavor, steps, stochastic):
    """One step of every active segment of a float32 bucket whose state is bfloat16 bits."""
    for c in prange(chunks.shape[0]):
        seg, start, end = chunks[c, 0], chunks[c, 1], chunks[c, 2]
        f = flags[seg]
        if f[ACTIVE] == 0:
            continue
        h = hyper[seg]
        clip_value, scale_grad, decay_mode = f[CLIP_VALUE] != 0, f[SCALE_GRAD] != 0, \
            f[DECAY_MODE]
        scale = h[GRAD_SCALE] if scale_grad else h.dtype.type(1)
        lr_t, b1, omb1, b2, eps = h[LR_T], h[BETA1], h[ONE_MINUS_BETA1], h[BETA2], h[EPS]
        lo, hi, decay = h[CLIP_MIN], h[CLIP_MAX], h[DECAY]
        seed = np.uint64(2) * np.uint64(steps[seg])
        for i in range(start, end):
            g = prepared_grad(grads[i], params[i], lo, hi, scale, decay, clip_value,
                              scale_grad, decay_mode)
            p, m, u = adamax_element(params[i], g, bf16_to_f32(mq[i]), bf16_to_f32(uq[i]),
                                     lr_t, b1, omb1, b2, eps, flavor)
            params[i] = p
            if stochastic:
                mq[i] = bf16_stochastic(m, random16(seed, i))
                uq[i] = bf16_stochastic(u, random16(seed + np.uint64(1), i))
            else:
                mq[i] = f32_to_bf16(m)
                uq[i] = f32_to_bf16(u)


# --- the host stepper's entry points (step/host.py KERNELS), one signature per operation ------
def update_flat_bf16(ops, flavor):
    bf16_update(ops.params, ops.grads, ops.moment, ops.inf_norm, ops.chunks, ops.hyper,
                ops.flags, flavor, ops.steps, ops.stochastic)


def sumsq_flat_bf16(ops, flags):
    return sumsq_flat(ops, flags)  # the norm pass reads the grads only: the float32 one
