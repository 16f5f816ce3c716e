"""Mixed precision on the CPU: float16/bfloat16 params and grads, float32 master weights.

Same arguments as kernels/cpu.py plus ``master`` (the float32 master weights, segment layout of
the state buffers) and ``store`` (halfbits.FLOAT16 / BFLOAT16); 16-bit arrays are passed as
their uint16 bits. Per element: widen the grad (exact), do the very same float32 arithmetic as
kernels/cpu.py on the master weight (so the bits equal the fp32 reference's), write the master
and its rounded (nearest even) low-precision copy. The reduction widens
the same way and sums in float32. Bytes per element and step: the grad (2) and master, moment,
inf_norm (3 x 4) read, the param (2) and the same three written: 28 B, as in plain fp32 (whose
param is read and written at 4 B); the 16-bit param itself is never read.
"""
from numba import njit, prange
import numpy as np

from .cpu import (adamax_element, borrowed_view, chunk_stats, combine_partials, prepared_grad,
                  slp_vectorizer)
from .halfbits import BFLOAT16, FLOAT16, from_f32, store_code, to_f32
from .specialise import specialised
from .layout import (ACTIVE, BETA1, BETA2, CLIP_MAX, CLIP_MIN, CLIP_VALUE, DECAY, DECAY_MODE, EPS,
                     GRAD_SCALE, L1_DECAY, L2_DECAY, LR_T, ONE_MINUS_BETA1,
                     SCALE_GRAD)


@njit(inline="always")
def _widen(bits, store):
    out = np.empty(bits.shape[0], np.float32)
    for i in range(bits.shape[0]):
        out[i] = to_f32(bits[i], store)
    return out


@njit(inline="always")
def _step_element(p16, master, m, u, i, gi, lr_t, b1, omb1, b2, eps, flavor, store):
    """Element i's Adamax step on the master weight (cpu.adamax_element), given its prepared
    grad ``gi``; the 16-bit param gets the rounded master."""
    out, mi, ui = adamax_element(master[i], gi, m[i], u[i], lr_t, b1, omb1, b2, eps, flavor)
    m[i] = mi
    u[i] = ui
    master[i] = out
    p16[i] = from_f32(out, store)


@njit(inline="always")
def _update_mixed(p16, g16, master, m, u, h, f, flavor, store):
    """cpu.update_slices' arithmetic, one pass: widen g, step the master, narrow into p16."""
    lr_t, b1, omb1, b2, eps = h[LR_T], h[BETA1], h[ONE_MINUS_BETA1], h[BETA2], h[EPS]
    lo, hi, scale, decay = h[CLIP_MIN], h[CLIP_MAX], h[GRAD_SCALE], h[DECAY]
    clip_value, scale_grad, decay_mode = f[CLIP_VALUE] != 0, f[SCALE_GRAD] != 0, f[DECAY_MODE]
    for i in range(p16.shape[0]):
        gi = prepared_grad(to_f32(g16[i], store), master[i], lo, hi, scale, decay, clip_value,
                            scale_grad, decay_mode)
        _step_element(p16, master, m, u, i, gi, lr_t, b1, omb1, b2, eps, flavor, store)


def _make_loop(store):
    """_update_mixed for one 16-bit type, with value clip and L1 ruled out, the norm scale
    applied always (1 when off: x * 1 == x) and L2 one loop-invariant select: the same
    specialisation as kernels.cpu._make_loop (there the reasons), here also sparing every
    element the other type's conversion (a step on 2000 small fp16 tensors: 0.87 -> 0.89-0.92
    of the memory ceiling). The flavor stays a run-time (loop-invariant) choice: a loop per
    flavor and type (~0.95 in a kernel-only test) would cost ~1 s of compile each. Called,
    not inlined (numba's IR inliner is slow to compile)."""

    @specialised(error_model="numpy")  # x/0 -> inf as numpy (a raise would stop vectorising)
    def loop(p16, g16, master, m, u, lr_t, b1, omb1, b2, eps, scale, decay, l2_decay, flavor):
        for i in range(p16.shape[0]):
            gi = to_f32(g16[i], store) * scale
            if l2_decay:
                gi = gi + decay * master[i]
            _step_element(p16, master, m, u, i, gi, lr_t, b1, omb1, b2, eps, flavor, store)
    return loop


_FLOAT16_LOOP, _BFLOAT16_LOOP = _make_loop(FLOAT16), _make_loop(BFLOAT16)


@njit(inline="always")
def _mixed_chunk(p16, g16, master, m, u, h, f, flavor, store):
    """One chunk: a specialised loop when the chunk has no value clip and no L1 decay."""
    if f[CLIP_VALUE] != 0 or f[DECAY_MODE] == L1_DECAY:
        _update_mixed(p16, g16, master, m, u, h, f, flavor, store)
        return
    scale = h[GRAD_SCALE] if f[SCALE_GRAD] != 0 else np.float32(1)
    args = (h[LR_T], h[BETA1], h[ONE_MINUS_BETA1], h[BETA2], h[EPS], scale, h[DECAY],
            f[DECAY_MODE] == L2_DECAY, flavor)
    if store == BFLOAT16:
        _BFLOAT16_LOOP(p16, g16, master, m, u, *args)
    else:
        _FLOAT16_LOOP(p16, g16, master, m, u, *args)


@njit(parallel=True, cache=True)
def fused_update(params, grads, master, moment, inf_norm, chunks, hyper, flags, flavor, store):
    """kernels.cpu.fused_update for a mixed-precision bucket (params/grads: uint16 bits)."""
    for c in prange(chunks.shape[0]):
        seg, start, end = chunks[c, 0], chunks[c, 1], chunks[c, 2]
        if flags[seg, ACTIVE] != 0:
            _mixed_chunk(params[start:end], grads[start:end], master[start:end],
                         moment[start:end], inf_norm[start:end], hyper[seg], flags[seg],
                         flavor, store)


@njit(parallel=True, cache=True)
def borrowed_update(param_addrs, grad_addrs, master, moment, inf_norm, offsets, chunks, hyper,
                    flags, flavor, store, like):
    """kernels.cpu.borrowed_update with 16-bit caller arrays (``like``: any uint16 array)."""
    for c in prange(chunks.shape[0]):
        seg, start, end = chunks[c, 0], chunks[c, 1], chunks[c, 2]
        if flags[seg, ACTIVE] != 0:
            p16 = borrowed_view(param_addrs, offsets, seg, start, end, like)
            g16 = borrowed_view(grad_addrs, offsets, seg, start, end, like)
            _mixed_chunk(p16, g16, master[start:end], moment[start:end], inf_norm[start:end],
                         hyper[seg], flags[seg], flavor, store)


@njit(parallel=True, cache=True)
def _segment_sumsq(grads, chunks, flags, store):
    partial = np.zeros(chunks.shape[0], dtype=np.float32)
    bad = np.zeros(chunks.shape[0], dtype=np.bool_)
    for c in prange(chunks.shape[0]):
        seg, start, end = chunks[c, 0], chunks[c, 1], chunks[c, 2]
        if flags[seg, ACTIVE] != 0:
            chunk_stats(_widen(grads[start:end], store), partial, bad, c)
    return combine_partials(partial, bad, chunks, flags.shape[0])


@njit(parallel=True, cache=True)
def _borrowed_sumsq(grad_addrs, offsets, chunks, flags, store, like):
    partial = np.zeros(chunks.shape[0], dtype=np.float32)
    bad = np.zeros(chunks.shape[0], dtype=np.bool_)
    for c in prange(chunks.shape[0]):
        seg, start, end = chunks[c, 0], chunks[c, 1], chunks[c, 2]
        if flags[seg, ACTIVE] != 0:
            g16 = borrowed_view(grad_addrs, offsets, seg, start, end, like)
            chunk_stats(_widen(g16, store), partial, bad, c)
    return combine_partials(partial, bad, chunks, flags.shape[0])


def segment_sumsq(grads, chunks, flags, store):
    """Per-segment float32 sum of squares of the widened 16-bit grads, and non-finite flags."""
    with slp_vectorizer():
        return _segment_sumsq(grads, chunks, flags, store)


def borrowed_sumsq(grad_addrs, offsets, chunks, flags, store, like):
    with slp_vectorizer():
        return _borrowed_sumsq(grad_addrs, offsets, chunks, flags, store, like)


# --- entry points, one signature per operation (layout.Operands) ------------------------------
_BITS = np.empty(0, np.uint16)


def update_mixed_flat(ops, flavor):
    fused_update(ops.params.view(np.uint16), ops.grads.view(np.uint16), ops.master, ops.moment,
                 ops.inf_norm, ops.chunks, ops.hyper, ops.flags, flavor, store_code(ops.store))


def update_mixed_borrow(ops, flavor):
    borrowed_update(ops.params, ops.grads, ops.master, ops.moment, ops.inf_norm, ops.offsets,
                    ops.chunks, ops.hyper, ops.flags, flavor, store_code(ops.store), _BITS)


def sumsq_mixed_flat(ops, flags):
    return segment_sumsq(ops.grads.view(np.uint16), ops.chunks, flags, store_code(ops.store))


def sumsq_mixed_borrow(ops, flags):
    return borrowed_sumsq(ops.grads, ops.offsets, ops.chunks, flags, store_code(ops.store), _BITS)
