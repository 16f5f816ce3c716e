"""The numpy oracle of low-bit optimizer state (bfloat16 moments), importing no fast code.

``state_dtype="bfloat16"`` keeps moment and inf_norm as bfloat16 bits (uint16), computes each
step in float32 exactly as the float32 path does (``reference.prepare_grad`` and
``reference.adamax_update``) and writes the new moments back rounded to bfloat16:

* stochastic rounding (default): ``(bits(x) + r) >> 16`` with r a 16-bit random number, so a
  value rounds up with a probability equal to how far it is past the lower neighbour and the
  rounding is unbiased. Without it, ``u <- max(b2*u + eps, |g|)`` with b2 = 0.999 moves u by
  0.1% a step, less than half a bfloat16 step (0.4%): round-to-nearest gives u back unchanged
  and the inf-norm never decays. inf and NaN are rounded to nearest (NaN stays NaN).
* r is counter-based: one 32-bit hash of the element's index in the flat buffer and of the
  segment's step count per element and step; its low half rounds the moment, its high half
  the inf-norm. The same step and
  element get the same r whatever thread runs them, so results are reproducible and
  independent of the thread count.
* ``rounding="nearest"``: round to nearest even (ml_dtypes' ``astype(bfloat16)``).
"""
import numpy as np

from . import layout as L
from .reference import adamax_update, prepare_grad

_MUL1, _MUL2 = np.uint32(0x7FEB352D), np.uint32(0x846CA68B)


def hash32(x):
    """A 32-bit integer hash (C. Wellons' "lowbias32"), elementwise; uint32 in and out."""
    x = np.asarray(x, np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * _MUL1
        x = x ^ (x >> np.uint32(15))
        x = x * _MUL2
        return x ^ (x >> np.uint32(16))


def random_bits(step, index):
    """The rounding's random bits for one step: h = hash32(index ^ hash32(step)) (uint32),
    ``step`` the segment's step count and ``index`` the element's place in the flat buffer
    (modulo 2^32); its low 16 bits round the moment, its high 16 bits the inf-norm."""
    key = hash32(np.uint32(int(step) % (1 << 32)))
    index = (np.asarray(index, np.uint64) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return hash32(index ^ key)


def bf16_value(bits):
    """bfloat16 bits (uint16) -> float32 (exact)."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def bf16_nearest(x):
    """float32 -> bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN."""
    bits = np.asarray(x, np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) \
        >> np.uint32(16)
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = np.where(nan, (bits >> np.uint32(16)) | np.uint32(0x40), rounded)
    return rounded.astype(np.uint16)


def bf16_stochastic(x, r):
    """float32 -> bfloat16 bits, rounded up with probability (x - lower) / step (see above)."""
    bits = np.asarray(x, np.float32).view(np.uint32)
    special = (bits & np.uint32(0x7F800000)) == np.uint32(0x7F800000)
    with np.errstate(over="ignore"):
        up = ((bits + np.asarray(r, np.uint32)) >> np.uint32(16)).astype(np.uint16)
    return np.where(special, bf16_nearest(x), up)


def bf16_update(params, grads, mq, uq, chunks, hyper, flags, flavor, steps, stochastic=True):
    """One step of every active segment of a flat float32 bucket with bfloat16 state bits
    ``mq``/``uq`` (uint16, updated in place), chunk by chunk as kernels/lowbit.py does it."""
    for seg, start, end in chunks:
        if flags[seg, L.ACTIVE] == 0:
            continue
        sl = slice(start, end)
        h = hyper[seg]
        g = prepare_grad(grads[sl], params[sl], h, flags[seg])
        m, u = bf16_value(mq[sl]).copy(), bf16_value(uq[sl]).copy()
        adamax_update(params[sl], g, m, u, lr_t=h[L.LR_T], beta1=h[L.BETA1], beta2=h[L.BETA2],
                      epsilon=h[L.EPS], flavor=flavor)
        if stochastic:
            h = random_bits(steps[seg], np.arange(start, end, dtype=np.uint64))
            mq[sl] = bf16_stochastic(m, h & np.uint32(0xFFFF))
            uq[sl] = bf16_stochastic(u, h >> np.uint32(16))
        else:
            mq[sl], uq[sl] = bf16_nearest(m), bf16_nearest(u)


# --- the host stepper's entry points (step/host.py KERNELS) -----------------------------------
def update_flat_bf16(ops, flavor):
    bf16_update(ops.params, ops.grads, ops.moment, ops.inf_norm, ops.chunks, ops.hyper,
                ops.flags, flavor, ops.steps, ops.stochastic)


def sumsq_flat_bf16(ops, flags):
    from .reference import sumsq_flat
    return sumsq_flat(ops, flags)


# --- int8 block-quantized state -----------------------------------------------------------------
#: elements per quantization block; segments of an int8-state bucket start on block boundaries,
#: so a block never holds two parameters (and a chunk of layout.CHUNK starts on one)
BLOCK = 256
_UNIT = np.float32(2.0 ** -16)
_NAN = np.float32(np.nan)


def int8_moment_value(codes, scale):
    """int8 codes of one block -> float32: code * (scale / 127)."""
    return np.asarray(codes, np.float32) * (np.float32(scale) / np.float32(127))


def int8_inf_norm_value(codes, scale):
    """uint8 codes of one block -> float32: scale * (code / 255) ** 4 (a power map: relative
    resolution where the inf-norms are small, which linear codes lack)."""
    q = np.asarray(codes, np.float32) / np.float32(255)
    return np.float32(scale) * ((q * q) * (q * q))


def int8_quantize(m, u, rand, stochastic):
    """One block's fresh (moment codes, moment scale, inf-norm codes, inf-norm scale).

    moment: scale = max |m|, code = round(m * (127 / scale)) in [-127, 127]; inf-norm: scale =
    max |u| (u >= +0 by construction; |.| lets the kernels reduce float bits as integers),
    code = round(sqrt(sqrt(u / scale)) * 255) in [0, 255]. Rounding adds U = r * 2^-16
    (r: the low / high 16 random bits) and floors (stochastic), or adds 0.5 (nearest). A zero
    scale gives zero codes; a non-finite value makes its block's scale non-finite."""
    m, u = np.asarray(m, np.float32), np.asarray(u, np.float32)
    sm, su = np.float32(np.max(np.abs(m))), np.float32(np.max(np.abs(u)))
    sm = _NAN if sm != sm else sm  # one NaN for a block holding any (its sign and payload
    su = _NAN if su != su else su  # would depend on which element came first)
    if stochastic:
        um = (rand & np.uint32(0xFFFF)).astype(np.float32) * _UNIT
        uu = (rand >> np.uint32(16)).astype(np.float32) * _UNIT
    else:
        um = uu = np.full(m.shape, np.float32(0.5))
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = m * (np.float32(127) / sm) if sm > 0 else np.zeros_like(m)
        xu = np.sqrt(np.sqrt(u / su)) * np.float32(255) if su > 0 else np.zeros_like(u)
    cm = np.clip(np.floor(np.nan_to_num(xm + um, nan=0.0)), -127, 127).astype(np.int8)
    cu = np.clip(np.floor(np.nan_to_num(xu + uu, nan=0.0)), 0, 255).astype(np.uint8)
    return cm, sm, cu, su


def int8_update(params, grads, mq, uq, m_scale, u_scale, chunks, hyper, flags, flavor, steps,
                stochastic=True):
    """One step of every active segment of a float32 bucket with int8 block-quantized state:
    per block, dequantize, step in float32, requantize with fresh scales (kernels/lowbit.py)."""
    for seg, start, end in chunks:
        if flags[seg, L.ACTIVE] == 0:
            continue
        h = hyper[seg]
        for b0 in range(start, end, BLOCK):
            b1 = min(b0 + BLOCK, end)
            blk, sl = b0 // BLOCK, slice(b0, b1)
            g = prepare_grad(grads[sl], params[sl], h, flags[seg])
            m = int8_moment_value(mq[sl], m_scale[blk])
            u = int8_inf_norm_value(uq[sl], u_scale[blk])
            adamax_update(params[sl], g, m, u, lr_t=h[L.LR_T], beta1=h[L.BETA1],
                          beta2=h[L.BETA2], epsilon=h[L.EPS], flavor=flavor)
            rand = random_bits(steps[seg], np.arange(b0, b1, dtype=np.uint64))
            mq[sl], m_scale[blk], uq[sl], u_scale[blk] = int8_quantize(m, u, rand, stochastic)


def update_flat_int8(ops, flavor):
    int8_update(ops.params, ops.grads, ops.moment, ops.inf_norm, ops.scales[0], ops.scales[1],
                ops.chunks, ops.hyper, ops.flags, flavor, ops.steps, ops.stochastic)


def sumsq_flat_int8(ops, flags):
    from .reference import sumsq_flat
    return sumsq_flat(ops, flags)


def int8_decode(codes, scales, offset, kind):
    """A segment's float32 values from its codes (the segment starts at ``offset``, a block
    boundary) and the bucket's per-block scales; ``kind``: "moment" or "inf_norm"."""
    codes = np.asarray(codes).reshape(-1)
    out = np.empty(codes.shape[0], np.float32)
    for b0 in range(0, codes.shape[0], BLOCK):
        sl, blk = slice(b0, b0 + BLOCK), (offset + b0) // BLOCK
        value = int8_moment_value if kind == "moment" else int8_inf_norm_value
        out[sl] = value(codes[sl], scales[blk])
    return out


def int8_encode(moment, inf_norm):
    """A segment's float32 state -> (moment codes, moment scales, inf-norm codes, inf-norm
    scales) per block, rounded to nearest (loading a state dict or checkpoint)."""
    m, u = np.asarray(moment, np.float32).reshape(-1), np.asarray(inf_norm, np.float32).reshape(-1)
    parts = [int8_quantize(m[b0:b0 + BLOCK], u[b0:b0 + BLOCK], None, False)
             for b0 in range(0, m.shape[0], BLOCK)]
    if not parts:
        empty = np.zeros(0, np.float32)
        return np.zeros(0, np.int8), empty, np.zeros(0, np.uint8), empty
    return (np.concatenate([p[0] for p in parts]), np.array([p[1] for p in parts], np.float32),
            np.concatenate([p[2] for p in parts]), np.array([p[3] for p in parts], np.float32))
