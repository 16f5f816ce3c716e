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
                     EPS, GRAD_SCALE, KERAS, L1_DECAY, L2_DECAY, LR_T, ONE_MINUS_BETA1, PADDLE,
                     SCALE_GRAD, TORCH)

_MUL1, _MUL2 = np.uint32(0x7FEB352D), np.uint32(0x846CA68B)
_S15, _S16 = np.uint32(15), np.uint32(16)
_LOW16, _EXP = np.uint32(0xFFFF), np.uint32(0x7F800000)


@njit(inline="always")
def hash32(x):
    """lowbias32 (lowbit_reference.hash32): 32-bit multiplies, which vectorise. (numba widens
    integer arithmetic to 64 bits: every step is cut back to 32.)"""
    x = np.uint32(x)
    x = np.uint32(x ^ (x >> _S16))
    x = np.uint32(x * _MUL1)
    x = np.uint32(x ^ (x >> _S15))
    x = np.uint32(x * _MUL2)
    return np.uint32(x ^ (x >> _S16))


@njit(inline="always")
def bf16_round(x, r, stochastic):
    """float32 -> bfloat16 bits: stochastic with the 16 random bits ``r``, or to nearest even;
    inf/NaN to nearest (lowbit_reference.bf16_stochastic)."""
    if not stochastic:
        return f32_to_bf16(x)
    bits = f32_bits(x)
    if (bits & _EXP) == _EXP:
        return f32_to_bf16(x)
    return np.uint16(np.uint32(bits + r) >> _S16)


def _make_loop(flavor, stochastic, generic):
    """One chunk's element loop, its own small compiled function (as kernels.cpu._make_loop:
    a loop the flags are hoisted out of, which LLVM vectorises). ``base``: the chunk's first
    index in the flat buffer (the random bits' counter)."""

    @njit(error_model="numpy")
    def loop(p, g, mq, uq, base, lr_t, b1, omb1, b2, eps, lo, hi, scale, decay, clip_value,
             scale_grad, decay_mode, key):
        l2 = decay_mode == L2_DECAY
        for j in range(p.shape[0]):
            if generic:
                gj = prepared_grad(g[j], p[j], lo, hi, scale, decay, clip_value, scale_grad,
                                   decay_mode)
            else:
                gj = g[j] * scale
                if l2:
                    gj = gj + decay * p[j]
            pj, m, u = adamax_element(p[j], gj, bf16_to_f32(mq[j]), bf16_to_f32(uq[j]), lr_t,
                                      b1, omb1, b2, eps, flavor)
            p[j] = pj
            h = hash32(np.uint32(base + j) ^ key) if stochastic else np.uint32(0)
            mq[j] = bf16_round(m, h & _LOW16, stochastic)
            uq[j] = bf16_round(u, h >> _S16, stochastic)
    return loop


def _make_kernel(flavor, stochastic):
    """The fused bfloat16-state update for one flavor and rounding, compiled on first use.
    Chunks without value clip or L1 decay take the fast loop (the norm scale always applied,
    x * 1 == x; L2 as one select), the others the generic one: the same bits either way."""
    fast, generic = _make_loop(flavor, stochastic, False), _make_loop(flavor, stochastic, True)

    @njit(parallel=True, error_model="numpy")
    def kernel(params, grads, mq, uq, chunks, hyper, flags, steps):
        for c in prange(chunks.shape[0]):
            seg, start, end = chunks[c, 0], chunks[c, 1], chunks[c, 2]
            f = flags[seg]
            if f[ACTIVE] == 0:
                continue
            h = hyper[seg]
            clip_value, scale_grad, decay_mode = f[CLIP_VALUE] != 0, f[SCALE_GRAD] != 0, \
                f[DECAY_MODE]
            scale = h[GRAD_SCALE] if scale_grad else h.dtype.type(1)
            args = (start, h[LR_T], h[BETA1], h[ONE_MINUS_BETA1], h[BETA2], h[EPS], h[CLIP_MIN],
                    h[CLIP_MAX], scale, h[DECAY], clip_value, scale_grad, decay_mode,
                    hash32(np.uint32(steps[seg] & 0xFFFFFFFF)))
            sl = slice(start, end)
            if clip_value or decay_mode == L1_DECAY:
                generic(params[sl], grads[sl], mq[sl], uq[sl], *args)
            else:
                fast(params[sl], grads[sl], mq[sl], uq[sl], *args)
    return kernel


_KERNELS = {}


def bf16_update(params, grads, mq, uq, chunks, hyper, flags, flavor, steps, stochastic):
    """One step of every active segment of a float32 bucket whose state is bfloat16 bits."""
    key = (int(flavor) if int(flavor) in (PADDLE, KERAS) else TORCH, bool(stochastic))
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = _KERNELS[key] = _make_kernel(*key)
    kernel(params, grads, mq, uq, chunks, hyper, flags, steps)
# --- the host stepper's entry points (step/host.py KERNELS), one signature per operation ------
def update_flat_bf16(ops, flavor):
    bf16_update(ops.params, ops.grads, ops.moment, ops.inf_norm, ops.chunks, ops.hyper,
                ops.flags, flavor, ops.steps, ops.stochastic)


def sumsq_flat_bf16(ops, flags):
    return sumsq_flat(ops, flags)  # the norm pass reads the grads only: the float32 one


# --- int8 block-quantized state (lowbit_reference.int8_update documents it) -------------------
BLOCK = 256
_UNIT = np.float32(2.0 ** -16)
_HALF = np.float32(0.5)
_NAN = np.float32(np.nan)


def _make_int8_kernel(flavor, stochastic):
    """Per block of BLOCK elements, one pass: dequantize, step in float32 (the float32 path's
    element code), keep the block's new moments in two small buffers with their maxima, then
    requantize with fresh scales. Same bits as the oracle (max is exact in any order)."""

    @njit(parallel=True, error_model="numpy")
    def kernel(params, grads, mq, uq, m_scale, u_scale, chunks, hyper, flags, steps):
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
            key = hash32(np.uint32(steps[seg] & 0xFFFFFFFF))
            mbuf = np.empty(BLOCK, np.float32)
            ubuf = np.empty(BLOCK, np.float32)
            for b0 in range(start, end, BLOCK):
                n = min(BLOCK, end - b0)
                blk = b0 // BLOCK
                sm_old = m_scale[blk] / np.float32(127)
                su_old = u_scale[blk]
                sm, su = np.float32(0), np.float32(0)
                for j in range(n):
                    i = b0 + j
                    g = prepared_grad(grads[i], params[i], lo, hi, scale, decay, clip_value,
                                      scale_grad, decay_mode)
                    q = np.float32(uq[i]) / np.float32(255)
                    p, m, u = adamax_element(params[i], g, np.float32(mq[i]) * sm_old,
                                             su_old * ((q * q) * (q * q)), lr_t, b1, omb1, b2,
                                             eps, flavor)
                    params[i] = p
                    mbuf[j], ubuf[j] = m, u
                    am = abs(m)
                    sm = am if (am > sm or am != am) else sm
                    su = u if (u > su or u != u) else su
                sm = _NAN if sm != sm else sm  # one NaN (lowbit_reference.int8_quantize)
                su = _NAN if su != su else su
                tm = np.float32(127) / sm if sm > 0 else np.float32(0)
                for j in range(n):
                    i = b0 + j
                    if stochastic:
                        r = hash32(np.uint32(i) ^ key)
                        um = np.float32(r & _LOW16) * _UNIT
                        uu = np.float32(r >> _S16) * _UNIT
                    else:
                        um, uu = _HALF, _HALF
                    xm = mbuf[j] * tm + um if sm > 0 else um
                    xu = np.sqrt(np.sqrt(ubuf[j] / su)) * np.float32(255) + uu if su > 0 else uu
                    cm = np.floor(xm) if xm == xm else np.float32(0)
                    cu = np.floor(xu) if xu == xu else np.float32(0)
                    mq[i] = np.int8(min(max(cm, np.float32(-127)), np.float32(127)))
                    uq[i] = np.uint8(min(max(cu, np.float32(0)), np.float32(255)))
                m_scale[blk], u_scale[blk] = sm, su
    return kernel


_INT8_KERNELS = {}


def int8_update(params, grads, mq, uq, m_scale, u_scale, chunks, hyper, flags, flavor, steps,
                stochastic):
    """One step of every active segment of a float32 bucket with int8 block-quantized state."""
    key = (int(flavor) if int(flavor) in (PADDLE, KERAS) else TORCH, bool(stochastic))
    kernel = _INT8_KERNELS.get(key)
    if kernel is None:
        kernel = _INT8_KERNELS[key] = _make_int8_kernel(*key)
    kernel(params, grads, mq, uq, m_scale, u_scale, chunks, hyper, flags, steps)


def update_flat_int8(ops, flavor):
    int8_update(ops.params, ops.grads, ops.moment, ops.inf_norm, ops.scales[0], ops.scales[1],
                ops.chunks, ops.hyper, ops.flags, flavor, ops.steps, ops.stochastic)


def sumsq_flat_int8(ops, flags):
    return sumsq_flat(ops, flags)
