"""Numba CPU kernels for low-bit optimizer state (kernels/lowbit_reference.py is the oracle and
documents the schemes): bfloat16 moments, one fused pass per chunk with the float32 path's
element code (20 B an element instead of 28), and int8 block codes below. No fastmath:
bit-identical to the oracle whatever the thread count (the random bits depend on the step and
the element only)."""
import functools

import numba
import numpy as np
from numba import njit, prange

from .cpu import adamax_element, borrowed_sumsq, borrowed_view, prepared_grad, sumsq_flat
from .halfbits import (bf16_quiet, bf16_to_f32, f32_bits, f32_from_bits, f32_is_nan,
                       f32_to_bf16, from_f32, store_code, widen)
from .mixed import sumsq_mixed_flat
from .specialise import specialised
from .lowbit_reference import (LOG_BIAS, LOG_SHIFT, MOMENT_BIAS, MOMENT_MIN, MOMENT_MIN_STEPS,
                               MOMENT_SHIFT)
from .layout import (ACTIVE, BETA1, BETA2, CLIP_MAX, CLIP_MIN, CLIP_VALUE, DECAY, DECAY_MODE,
                     EPS, GRAD_SCALE, KERAS, L1_DECAY, L2_DECAY, LR_T, ONE_MINUS_BETA1, PADDLE,
                     SCALE_GRAD, TORCH)

_MUL1, _MUL2 = np.uint32(0x7FEB352D), np.uint32(0x846CA68B)
_S15, _S16 = np.uint32(15), np.uint32(16)
_LOW16 = np.uint32(0xFFFF)


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
def scramble32(x):
    """lowbit_reference.scramble32, in 32-bit lanes."""
    x = np.uint32(np.uint32(x) * _MUL1)
    return np.uint32(x ^ (x >> _S16))


@njit(inline="always")
def bf16_round(x, r, stochastic):
    """float32 -> bfloat16 bits: stochastic with the 16 random bits ``r``, or to nearest even;
    inf/NaN as to nearest (lowbit_reference.bf16_stochastic). Adding r < 2^16 leaves an inf's
    top half as it is, so only NaN needs its own select; all in 32-bit lanes."""
    if not stochastic:
        return f32_to_bf16(x)
    bits = f32_bits(x)
    up = np.uint32(np.uint32(bits + np.uint32(r)) >> _S16)
    return np.uint16(bf16_quiet(bits) if f32_is_nan(bits) else up)


@njit(inline="always")
def loop_grad(g, p, lo, hi, scale, decay, clip_value, scale_grad, decay_mode, generic):
    """The prepared grad in a hoisted-flag loop: the generic rules, or (no value clip, no L1)
    the norm scale always (x * 1 == x) and L2 as one select: the same bits either way
    (kernels.cpu._make_loop). ``generic`` is a constant of the loop it is inlined into."""
    if generic:
        return prepared_grad(g, p, lo, hi, scale, decay, clip_value, scale_grad, decay_mode)
    out = g * scale
    if decay_mode == L2_DECAY:
        out = out + decay * p
    return out


@njit(inline="always")
def flat_chunk(params, grads, offsets, seg, start, end, like):
    """A chunk's params and grads in adopted flat buffers."""
    return params[start:end], grads[start:end]


@njit(inline="always")
def borrowed_chunk(params, grads, offsets, seg, start, end, like):
    """A chunk's params and grads in caller-owned arrays, given by address (borrow mode);
    ``like``: an array of the bucket's dtype (float32)."""
    return (borrowed_view(params, offsets, seg, start, end, like),
            borrowed_view(grads, offsets, seg, start, end, like))


@functools.cache  # one compiled loop, shared by the flat and the borrow kernels
def _make_loop(flavor, stochastic, generic):
    """One chunk's element loop, its own small compiled function (as kernels.cpu._make_loop:
    a loop the flags are hoisted out of, which LLVM vectorises). ``base``: the chunk's first
    index in the flat buffer (the random bits' counter)."""

    @specialised(error_model="numpy")
    def loop(p, g, mq, uq, base, lr_t, b1, omb1, b2, eps, lo, hi, scale, decay, clip_value,
             scale_grad, decay_mode, key):
        for j in range(p.shape[0]):
            gj = loop_grad(g[j], p[j], lo, hi, scale, decay, clip_value, scale_grad,
                           decay_mode, generic)
            pj, m, u = adamax_element(p[j], gj, bf16_to_f32(mq[j]), bf16_to_f32(uq[j]), lr_t,
                                      b1, omb1, b2, eps, flavor)
            p[j] = pj
            h = scramble32(np.uint32(base + j) ^ key) if stochastic else np.uint32(0)
            mq[j] = bf16_round(m, h & _LOW16, stochastic)
            uq[j] = bf16_round(u, h >> _S16, stochastic)
    return loop


@functools.cache
def _make_kernel(flavor, stochastic, views):
    """The fused bfloat16-state update for one flavor and rounding, compiled on first use or
    loaded from numba's cache; ``views``: flat_chunk or borrowed_chunk. Chunks without value
    clip or L1 decay take the fast loop (the norm scale always applied, x * 1 == x; L2 as one
    select), the others the generic one: the same bits either way."""
    calls = {"chunk_views": views, "fast": _make_loop(flavor, stochastic, False),
             "generic": _make_loop(flavor, stochastic, True)}  # globals of the kernel

    @specialised(calls, parallel=True, error_model="numpy", cache=True)
    def kernel(params, grads, mq, uq, offsets, chunks, hyper, flags, steps, origin):
        for c in prange(chunks.shape[0]):
            seg, start, end = chunks[c, 0], chunks[c, 1], chunks[c, 2]
            f = flags[seg]
            if f[ACTIVE] == 0:
                continue
            h = hyper[seg]
            clip_value, scale_grad, decay_mode = f[CLIP_VALUE] != 0, f[SCALE_GRAD] != 0, \
                f[DECAY_MODE]
            scale = h[GRAD_SCALE] if scale_grad else h.dtype.type(1)
            args = (start + origin, h[LR_T], h[BETA1], h[ONE_MINUS_BETA1], h[BETA2], h[EPS],
                    h[CLIP_MIN], h[CLIP_MAX], scale, h[DECAY], clip_value, scale_grad,
                    decay_mode, hash32(np.uint32(steps[seg] & 0xFFFFFFFF)))
            sl = slice(start, end)
            p, g = chunk_views(params, grads, offsets, seg, start, end, hyper)
            if clip_value or decay_mode == L1_DECAY:
                generic(p, g, mq[sl], uq[sl], *args)
            else:
                fast(p, g, mq[sl], uq[sl], *args)
    return kernel


def _flavor(flavor):
    return int(flavor) if int(flavor) in (PADDLE, KERAS) else TORCH


def bf16_update(params, grads, mq, uq, chunks, hyper, flags, flavor, steps, stochastic,
                offsets=None, origin=0):
    """One step of every active segment of a float32 bucket whose state is bfloat16 bits;
    with ``offsets``, params and grads are borrow mode's address tables."""
    kernel = _make_kernel(_flavor(flavor), bool(stochastic),
                          flat_chunk if offsets is None else borrowed_chunk)
    kernel(params, grads, mq, uq, offsets if offsets is not None else chunks[:0, 0], chunks,
           hyper, flags, steps, origin)
# --- the host stepper's entry points (step/host.py KERNELS), one signature per operation ------
def update_flat_bf16(ops, flavor):
    bf16_update(ops.params, ops.grads, ops.moment, ops.inf_norm, ops.chunks, ops.hyper,
                ops.flags, flavor, ops.steps, ops.stochastic, origin=ops.origin)


def update_borrow_bf16(ops, flavor):
    bf16_update(ops.params, ops.grads, ops.moment, ops.inf_norm, ops.chunks, ops.hyper,
                ops.flags, flavor, ops.steps, ops.stochastic, ops.offsets)


def sumsq_borrow_bf16(ops, flags):
    """The norm pass over borrowed grads (float32: the hyper table gives the dtype)."""
    return borrowed_sumsq(ops.grads, ops.offsets, ops.chunks, flags, ops.hyper)


sumsq_flat_bf16 = sumsq_flat  # the norm pass reads the grads only: the float32 one


# --- int8 block-quantized state (lowbit_reference.int8_update documents it) -------------------
BLOCK = 256
_ABS, _FINITE_MAX = np.uint32(0x7FFFFFFF), np.uint32(0x7F7FFFFF)
_INF, _INF_BITS, _NAN = np.float32(np.inf), np.uint32(0x7F800000), np.float32(np.nan)
_BYTE, _SIGN, _SIGN_BIT = np.uint32(0xFF), np.uint32(31), np.uint32(0x80000000)
_NEAREST = np.float32(32767.5)
#: (shift, bias, the random bits' shift, nearest's half) of the inf-norm's and the moment's
#: maps (lowbit_reference)
_U_MAP = (np.uint32(LOG_SHIFT), np.int32(LOG_BIAS), np.uint32(LOG_SHIFT - 16),
          np.uint32(1 << (LOG_SHIFT - 1)))
_M_MAP = (np.uint32(MOMENT_SHIFT), np.uint32(MOMENT_BIAS), np.uint32(MOMENT_SHIFT - 16),
          np.uint32(1 << (MOMENT_SHIFT - 1)))


@njit(inline="always")
def abs_bits(x):
    """|x|'s bits as uint32: for |x| (or NaN) the integer order is the float order, with every
    NaN above inf. An integer max reduction vectorises without fastmath; a float one does not
    (and a scalar compare-select chain over 256 elements cost more than the whole step)."""
    return np.uint32(f32_bits(x) & _ABS)


@njit(inline="always")
def encodable(bits, factor):
    """lowbit_reference.encodable from the scale's bits (a max of |x| bits, NaN above inf):
    a finite scale > 0 whose factor (1 / scale) did not overflow."""
    return np.uint32(bits - np.uint32(1)) < _FINITE_MAX and factor < _INF


@njit(inline="always")
def inf_norm_value(k):
    """An inf-norm code's map value F(k) (lowbit_reference.int8_inf_norm_value, scale 1): integer
    work, no test (code 0 is the map's floor)."""
    return f32_from_bits(np.uint32(np.uint32(np.uint32(k) + np.uint32(_U_MAP[1])) << _U_MAP[0]))


@njit(inline="always")
def moment_value(c):
    """An int8 moment code's map value, sign(c) * G(|c|) (lowbit_reference.int8_moment_value,
    scale 1), in 32-bit lanes: the code's sign put on G's bits."""
    c32 = np.int32(c)
    k = np.uint32(np.int32(-c32) if c32 < 0 else c32)
    g = np.uint32(np.uint32(np.uint32(k + _M_MAP[1]) << _M_MAP[0])
                  | np.uint32(np.uint32(c32) & _SIGN_BIT))
    return f32_from_bits(g if k != 0 else np.uint32(0))


@njit(inline="always")
def log_code(x, r, stochastic):
    """x in [0, 1] -> its magnitude code of the moment's map (lowbit_reference.log_code), all in
    32-bit lanes; ``r``: 16 random bits."""
    if stochastic:
        add, below = np.uint32(r << _M_MAP[2]), np.float32(np.int32(r))
    else:
        add, below = _M_MAP[3], _NEAREST
    big = np.uint32(np.uint32(np.uint32(f32_bits(x) + add) >> _M_MAP[0]) - _M_MAP[1])
    # x * min_steps > below, as the sign of their difference (+0 when equal): 2 ops
    small = np.uint32(f32_bits(below - x * MOMENT_MIN_STEPS) >> _SIGN)
    return big if x >= MOMENT_MIN else small


@njit(inline="always")
def floor_code(x, r, stochastic):
    """x in [0, 1] -> its inf-norm code (lowbit_reference.floor_code): the bit rounding, then a
    signed max with 0; ``r``: 16 random bits."""
    add = np.uint32(r << _U_MAP[2]) if stochastic else _U_MAP[3]
    k = np.int32(np.int32(np.uint32(f32_bits(x) + add) >> _U_MAP[0]) - _U_MAP[1])
    return np.uint8(np.uint32(k if k > 0 else np.int32(0)) & _BYTE)


@njit(inline="always")
def moment_code(x, r, stochastic):
    """x = m * (1 / scale) -> its int8 code (lowbit_reference.moment_code): the sign of x and
    the moment map's code of |x|, all in 32-bit lanes."""
    bits = f32_bits(x)
    k = log_code(f32_from_bits(np.uint32(bits & _ABS)), np.uint32(r & _LOW16), stochastic)
    return np.int8(np.uint8(np.uint32(np.uint32(0) - k) & _BYTE if bits >> _SIGN else k))


@njit(inline="always")
def encode_block(mbuf, ubuf, mb, ub, n, tm, tu, counter, key, stochastic, code_m, code_u):
    """A block's codes from its new moments (float32, in L1) and the fresh scales' factors;
    ``code_m``/``code_u`` False: that state's codes are 0 (not encodable). Inlined with both
    True for the common case: a loop of bit work that vectorises, no per-element test."""
    for j in range(n):
        r = scramble32(counter ^ key) if stochastic else np.uint32(0)
        counter = np.uint32(counter + np.uint32(1))  # 32-bit lanes (counter + j: 64-bit)
        mb[j] = moment_code(mbuf[j] * tm, r, stochastic) if code_m else np.int8(0)
        ub[j] = floor_code(ubuf[j] * tu, np.uint32(r >> _S16), stochastic) if code_u \
            else np.uint8(0)


@functools.cache  # shared by the flat and the borrow kernels, compiled once
def _make_int8_chunk(flavor, stochastic, generic):
    """One chunk, block by block, as its own compiled function with the flags hoisted (as the
    float32 loops): pass 1 dequantizes, steps in float32 with the float32 element code and keeps
    the new moments in two block buffers (in L1) while reducing their max |.|; pass 2 writes
    the codes from those fresh scales. p, g and the codes are read and written once."""

    @specialised(error_model="numpy")
    def chunk(pc, gc, mq, uq, m_scale, u_scale, mbuf, ubuf, start, end, origin, key, lr_t, b1,
              omb1, b2, eps, lo, hi, scale, decay, clip_value, scale_grad, decay_mode):
        for b0 in range(start, end, BLOCK):
            n = min(BLOCK, end - b0)
            blk = b0 // BLOCK
            # the scales folded into the betas (lowbit_reference.int8_update)
            b1s, b2s = b1 * m_scale[blk], b2 * u_scale[blk]
            mmax, umax = np.uint32(0), np.uint32(0)
            # block views (pc, gc start at the chunk's first element): indices known >= 0 (an
            # offset index would need numba's negative-index wrap, which stops vectorisation)
            pb, gb = pc[b0 - start:b0 - start + n], gc[b0 - start:b0 - start + n]
            mb, ub = mq[b0:b0 + n], uq[b0:b0 + n]
            for j in range(n):
                gj = loop_grad(gb[j], pb[j], lo, hi, scale, decay, clip_value, scale_grad,
                               decay_mode, generic)
                pj, m, u = adamax_element(pb[j], gj, moment_value(mb[j]),
                                          inf_norm_value(ub[j]), lr_t, b1s, omb1, b2s, eps,
                                          flavor)
                pb[j] = pj
                mbuf[j] = m
                ubuf[j] = u
                # the maxima in the same loop: an integer max reduction vectorises alongside.
                # u is +0 or more, or NaN (eps >= 0, u >= |g|): its bits need no mask
                am, au = abs_bits(m), f32_bits(u)
                mmax = am if am > mmax else mmax
                umax = au if au > umax else umax
            sm = _NAN if mmax > _INF_BITS else f32_from_bits(mmax)  # any NaN: the one NaN
            su = _NAN if umax > _INF_BITS else f32_from_bits(umax)
            tm, tu = np.float32(1) / sm, np.float32(1) / su
            code_m, code_u = encodable(mmax, tm), encodable(umax, tu)
            counter = np.uint32(b0 + origin)
            if code_m and code_u:
                encode_block(mbuf, ubuf, mb, ub, n, tm, tu, counter, key, stochastic, True,
                             True)
            else:
                encode_block(mbuf, ubuf, mb, ub, n, tm, tu, counter, key, stochastic, code_m,
                             code_u)
            m_scale[blk], u_scale[blk] = sm, su
    return chunk


@functools.cache
def _make_int8_kernel(flavor, stochastic, views):
    """Every active chunk of the bucket in parallel; the generic loop only for chunks with value
    clip or L1 decay (the fast one applies the norm scale always, x * 1 == x: the same bits)."""
    calls = {"chunk_views": views, "fast": _make_int8_chunk(flavor, stochastic, False),
             "generic": _make_int8_chunk(flavor, stochastic, True)}  # globals of the kernel

    @specialised(calls, parallel=True, error_model="numpy", cache=True)
    def kernel(params, grads, mq, uq, m_scale, u_scale, offsets, chunks, hyper, flags, steps,
               origin, scratch):
        for c in prange(chunks.shape[0]):
            seg, start, end = chunks[c, 0], chunks[c, 1], chunks[c, 2]
            f = flags[seg]
            if f[ACTIVE] == 0:
                continue
            h = hyper[seg]
            clip_value, scale_grad, decay_mode = f[CLIP_VALUE] != 0, f[SCALE_GRAD] != 0, \
                f[DECAY_MODE]
            scale = h[GRAD_SCALE] if scale_grad else h.dtype.type(1)
            args = (start, end, origin, hash32(np.uint32(steps[seg] & 0xFFFFFFFF)), h[LR_T],
                    h[BETA1], h[ONE_MINUS_BETA1], h[BETA2], h[EPS], h[CLIP_MIN], h[CLIP_MAX],
                    scale, h[DECAY], clip_value, scale_grad, decay_mode)
            p, g = chunk_views(params, grads, offsets, seg, start, end, hyper)
            own = scratch[numba.get_thread_id()]  # this thread's two block buffers (no
            if clip_value or decay_mode == L1_DECAY:  # allocation per chunk)
                generic(p, g, mq, uq, m_scale, u_scale, own[0], own[1], *args)
            else:
                fast(p, g, mq, uq, m_scale, u_scale, own[0], own[1], *args)
    return kernel


def int8_update(params, grads, mq, uq, m_scale, u_scale, chunks, hyper, flags, flavor, steps,
                stochastic, offsets=None, origin=0):
    """One step of every active segment of a float32 bucket with int8 block-quantized state;
    with ``offsets``, params and grads are borrow mode's address tables."""
    kernel = _make_int8_kernel(_flavor(flavor), bool(stochastic),
                               flat_chunk if offsets is None else borrowed_chunk)
    scratch = np.empty((numba.config.NUMBA_NUM_THREADS, 2, BLOCK), np.float32)
    kernel(params, grads, mq, uq, m_scale, u_scale, offsets if offsets is not None else
           chunks[:0, 0], chunks, hyper, flags, steps, origin, scratch)


def update_flat_int8(ops, flavor):
    int8_update(ops.params, ops.grads, ops.moment, ops.inf_norm, ops.scales[0], ops.scales[1],
                ops.chunks, ops.hyper, ops.flags, flavor, ops.steps, ops.stochastic,
                origin=ops.origin)


def update_borrow_int8(ops, flavor):
    int8_update(ops.params, ops.grads, ops.moment, ops.inf_norm, ops.scales[0], ops.scales[1],
                ops.chunks, ops.hyper, ops.flags, flavor, ops.steps, ops.stochastic, ops.offsets)


sumsq_flat_int8, sumsq_borrow_int8 = sumsq_flat_bf16, sumsq_borrow_bf16


# --- mixed precision: float16/bfloat16 params and grads, float32 masters --------------------------
@njit(parallel=True, cache=True)
def narrow_active(master, bits, chunks, flags, store):
    """The 16-bit params of every active chunk: their master rounded to nearest even."""
    for c in prange(chunks.shape[0]):
        seg, start, end = chunks[c, 0], chunks[c, 1], chunks[c, 2]
        if flags[seg, ACTIVE] != 0:
            for i in range(start, end):
                bits[i] = from_f32(master[i], store)


def _mixed(update):
    """Low-bit state under float16/bfloat16 params: the grads widened into a float32 buffer,
    the float32 low-bit step on the masters, the params narrowed from them. Three passes, not
    one fused loop: correct, not tuned (kernels/mixed.py fuses the float32-state case)."""
    def run(ops, flavor):
        store = store_code(ops.store)
        grads = widen(ops.grads.view(np.uint16), store)
        update(ops._replace(params=ops.master, grads=grads), flavor)
        narrow_active(ops.master, ops.params.view(np.uint16), ops.chunks, ops.flags, store)
    return run


update_mixed_flat_bf16 = _mixed(update_flat_bf16)
update_mixed_flat_int8 = _mixed(update_flat_int8)
sumsq_mixed_flat_bf16 = sumsq_mixed_flat_int8 = sumsq_mixed_flat
