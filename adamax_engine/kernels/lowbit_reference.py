"""The numpy oracle of low-bit optimizer state (bfloat16 and int8), importing no fast code.

``state_dtype="bfloat16"`` keeps moment and inf_norm as bfloat16 bits (uint16), computes each
step in float32 exactly as the float32 path does (``reference.prepare_grad`` and
``reference.adamax_update``) and writes the new moments back rounded to bfloat16:

* stochastic rounding (default): ``(bits(x) + r) >> 16`` with r a 16-bit random number, so a
  value rounds up with a probability equal to how far it is past the lower neighbour and the
  rounding is unbiased. Without it, ``u <- max(b2*u + eps, |g|)`` with b2 = 0.999 moves u by
  0.1% a step, less than half a bfloat16 step (0.4%): round-to-nearest gives u back unchanged
  and the inf-norm never decays. inf and NaN are rounded to nearest (NaN stays NaN).
* r is counter-based (random_bits: the element's index under the step's key); its low half
  rounds the moment, its high half the inf-norm. Whatever thread runs an element, it gets the
  same r: results are reproducible and independent of the thread count.
* ``rounding="nearest"``: round to nearest even (ml_dtypes' ``astype(bfloat16)``).

``state_dtype="int8"``: block codes on log maps, the same rounding (int8_update, below).
"""
import numpy as np

from . import layout as L
from .reference import adamax_update, borrowed_sumsq, prepare_grad, sumsq_flat, sumsq_mixed_flat

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


def scramble32(x):
    """x * M ^ (x * M) >> 16 (mod 2^32), elementwise: one multiply and a shift-xor, the
    per-element scramble of the rounding's counter (the step's key is a full hash32). Four
    vector operations where hash32 takes nine: the int8 step is compute-bound."""
    with np.errstate(over="ignore"):
        x = np.asarray(x, np.uint32) * _MUL1
    return x ^ (x >> np.uint32(16))


def random_bits(step, index):
    """The rounding's random bits for one step: scramble32(index ^ hash32(step)) (uint32),
    ``step`` the segment's step count and ``index`` the element's place in the flat buffer
    (modulo 2^32); its low 16 bits round the moment, its high 16 bits the inf-norm. A new
    step is a new key, so an element's bits are fresh each step; within a step, consecutive
    elements' bits are consecutive multiples of M (a low-discrepancy sequence, as dithering
    wants)."""
    key = hash32(np.uint32(int(step) % (1 << 32)))
    index = (np.asarray(index, np.uint64) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return scramble32(index ^ key)


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


def bf16_update(params, grads, mq, uq, chunks, hyper, flags, flavor, steps, stochastic=True,
                origin=0):
    """One step of every active segment of a flat float32 (or float64) bucket with bfloat16
    state bits ``mq``/``uq`` (uint16, updated in place), chunk by chunk as kernels/lowbit.py
    does it. The step runs in the parameters' precision; the new moments are rounded to
    float32 first (float64 parameters), then to bfloat16."""
    for seg, start, end in chunks:
        if flags[seg, L.ACTIVE] == 0:
            continue
        sl = slice(start, end)
        h = hyper[seg]
        g = prepare_grad(grads[sl], params[sl], h, flags[seg])
        m, u = bf16_value(mq[sl]).astype(params.dtype), bf16_value(uq[sl]).astype(params.dtype)
        adamax_update(params[sl], g, m, u, lr_t=h[L.LR_T], beta1=h[L.BETA1], beta2=h[L.BETA2],
                      epsilon=h[L.EPS], flavor=flavor)
        if stochastic:
            h = random_bits(steps[seg], np.arange(start, end, dtype=np.uint64) + origin)
            mq[sl] = bf16_stochastic(m, h & np.uint32(0xFFFF))
            uq[sl] = bf16_stochastic(u, h >> np.uint32(16))
        else:
            mq[sl], uq[sl] = bf16_nearest(m), bf16_nearest(u)


# --- the host stepper's entry points (step/host.py KERNELS) -----------------------------------
def update_flat_bf16(ops, flavor):
    bf16_update(ops.params, ops.grads, ops.moment, ops.inf_norm, ops.chunks, ops.hyper,
                ops.flags, flavor, ops.steps, ops.stochastic, ops.origin)


sumsq_flat_bf16 = sumsq_flat  # the norm pass reads the grads only


# --- int8 block-quantized state -----------------------------------------------------------------
#: elements per quantization block; segments of an int8-state bucket start on block boundaries,
#: so a block never holds two parameters (and a chunk of layout.CHUNK starts on one)
BLOCK = 256
_NAN = np.float32(np.nan)


#: the inf-norm's uint8 log map: code c stands for scale * F(c), F(c) the float32 with bits
#: (c + LOG_BIAS) << 19, i.e. 16 codes per octave (4 mantissa bits) over the 16 octaves below
#: the block's max: F(255) = 1.0, F(0) = 1.0625 * 2^-16, the map's floor (floor_code)
LOG_SHIFT, LOG_BIAS = 19, (0x3F800000 >> 19) - 255
#: the moment's map: a sign and 127 magnitudes, k >= 1 standing for scale * G(k), G(k) the
#: float32 with bits (k + MOMENT_BIAS) << 20, i.e. 8 codes per octave (3 mantissa bits) over
#: the ~16 octaves below the block's max: G(127) = 1.0, G(1) = 1.25 * 2^-16; code 0 is 0
MOMENT_SHIFT, MOMENT_BIAS = 20, (0x3F800000 >> 20) - 127
MOMENT_MIN = np.uint32((1 + MOMENT_BIAS) << MOMENT_SHIFT).view(np.float32)  # G(1)
#: x / G(1) in units of 2^-16 is x * MOMENT_MIN_STEPS (below G(1): the linear codes' rounding)
MOMENT_MIN_STEPS = np.float32(65536) / MOMENT_MIN


def map_value(codes, shift, bias):
    """Magnitude codes -> the float32 with bits (code + bias) << shift."""
    c = np.asarray(codes, np.uint32)
    return ((c + np.uint32(bias)) << np.uint32(shift)).view(np.float32)


def log_value(codes, shift, bias):
    """Magnitude codes -> their map's float32 values: map_value, and 0 for code 0."""
    return np.where(np.asarray(codes) == 0, np.float32(0), map_value(codes, shift, bias))


def int8_moment_value(codes, scale):
    """int8 codes of one block -> float32: sign(code) * (scale * G(|code|)), G the moment map
    above (relative steps of 9-12.5% from the block max down to 2^-16 of it: a block's small
    entries keep their size, where 127 linear steps of its max left them rounding noise)."""
    c = np.asarray(codes, np.int32)
    v = np.float32(scale) * log_value(np.abs(c), MOMENT_SHIFT, MOMENT_BIAS)
    return np.where(c < 0, -v, v)


def int8_moment_value_v2(codes, scale):
    """The moment map of scheme "int8 v2" (checkpoints written before v3): code * (scale/127)."""
    return np.asarray(codes, np.float32) * (np.float32(scale) / np.float32(127))


def int8_inf_norm_value(codes, scale):
    """uint8 codes of one block -> float32: scale * F(code), F the log map above (relative
    steps of 3.1-6.25% from the block max down to 2^-16 of it, where linear codes would have
    none left; decoding is integer work and one multiply, with no test for code 0)."""
    return np.float32(scale) * map_value(codes, LOG_SHIFT, LOG_BIAS)


def int8_inf_norm_value_v3(codes, scale):
    """The inf-norm map of schemes "int8 v2" and "int8 v3": F(code), but code 0 is 0."""
    return np.float32(scale) * log_value(codes, LOG_SHIFT, LOG_BIAS)


def bit_rounding(x, r, stochastic, shift):
    """(bits(x) + r * 2^(shift - 16)) >> shift, or + 2^(shift - 1) (nearest), as int64: the
    rounding of a map with 2^(23 - shift) codes an octave in the float's own bit pattern, as
    for bfloat16 (unbiased within an octave, where the map is linear). r: 16 random bits."""
    add = np.asarray(r, np.uint32) << np.uint32(shift - 16) if stochastic \
        else np.uint32(1 << (shift - 1))
    with np.errstate(over="ignore"):
        return ((np.asarray(x, np.float32).view(np.uint32) + add)
                >> np.uint32(shift)).astype(np.int64)


def log_code(x, r, stochastic):
    """x in [0, 1] -> magnitude codes of the moment's map. At or above G(1): bit_rounding;
    below: linear between 0 and G(1), 1 where x * MOMENT_MIN_STEPS > r (so with probability
    x / G(1)), or > 2^15 - 1/2 (nearest). r: 16 random bits. NaN -> 0."""
    x = np.asarray(x, np.float32)
    below = np.asarray(r, np.uint32).astype(np.float32) if stochastic else np.float32(32767.5)
    big = bit_rounding(x, r, stochastic, MOMENT_SHIFT) - MOMENT_BIAS
    with np.errstate(over="ignore", invalid="ignore"):
        small = x * MOMENT_MIN_STEPS > below
    code = np.where(x >= MOMENT_MIN, big, small)
    return np.where(x != x, 0, code).astype(np.uint8)


def floor_code(x, r, stochastic):
    """x in [0, 1] -> inf-norm codes: bit_rounding all the way down to F(0) (F(0) and F(1)
    share an octave, so it is unbiased there too) and code 0 below it: the map's floor,
    rounding up. u divides the step, so rounding a small u up only shortens its element's
    step; a map with no zero decodes with no test, and this code needs none either (two
    selects and four operations less an element in the compute-bound CPU loop). NaN -> 0."""
    x = np.asarray(x, np.float32)
    code = np.maximum(bit_rounding(x, r, stochastic, LOG_SHIFT) - LOG_BIAS, 0)
    return np.where(x != x, 0, code).astype(np.uint8)


def moment_code(x, r, stochastic):
    """x = m * (1 / scale) in [-1, 1] (float32) -> int8 codes: the sign of x and log_code of
    |x| under the moment map, with r's low 16 bits. No clamp: |x| <= 1 + 2^-23, the most the
    scale's rounding allows, still rounds to 127."""
    x = np.asarray(x, np.float32)
    r = np.asarray(r, np.uint32) & np.uint32(0xFFFF) if stochastic else None
    k = log_code(np.abs(x), r, stochastic).astype(np.int16)
    return np.where(x < 0, -k, k).astype(np.int8)


def encodable(scale, factor):
    """Whether a block's values can be coded against ``scale``: it is finite and > 0, and the
    factor they are multiplied by (1 / scale) is finite. Otherwise (a zero, inf or
    NaN scale, or one so small its reciprocal overflows) every code of the block is 0."""
    return bool(np.float32(0) < scale < np.float32(np.inf) and factor < np.float32(np.inf))


def int8_quantize(m, u, rand, stochastic):
    """One block's fresh (moment codes, moment scale, inf-norm codes, inf-norm scale).

    moment: scale = max |m|, code = moment_code(m * (1 / scale)) in [-127, 127] with the low
    16 random bits; inf-norm: scale = max |u| (u >= +0 by construction), code =
    floor_code(u * (1 / scale)) with the high 16 random bits. Scales that are not ``encodable``
    give zero codes; a non-finite value makes its block's scale non-finite."""
    m, u = np.asarray(m, np.float32), np.asarray(u, np.float32)
    sm, su = np.float32(np.max(np.abs(m))), np.float32(np.max(np.abs(u)))
    sm = _NAN if sm != sm else sm  # one NaN for a block holding any (its sign and payload
    su = _NAN if su != su else su  # would depend on which element came first)
    ru = rand >> np.uint32(16) if stochastic else None
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        tm, tu = np.float32(1) / sm, np.float32(1) / su
        cm = moment_code(m * tm, rand, stochastic) if encodable(sm, tm) \
            else np.zeros(m.shape, np.int8)
        cu = floor_code(u * tu, ru, stochastic) if encodable(su, tu) \
            else np.zeros(u.shape, np.uint8)
    return cm, sm, cu, su


def int8_update(params, grads, mq, uq, m_scale, u_scale, chunks, hyper, flags, flavor, steps,
                stochastic=True, origin=0):
    """One step of every active segment of a float32 (or float64) bucket with int8
    block-quantized state: per block, dequantize, step in the parameters' precision, requantize
    (from float32) with fresh scales (kernels/lowbit.py). The held values enter the step as
    (beta1 * scale) * G(code), not beta1 * (scale * G(code)): a rounding apart from the
    values decode_codes gives."""
    for seg, start, end in chunks:
        if flags[seg, L.ACTIVE] == 0:
            continue
        h = hyper[seg]
        for b0 in range(start, end, BLOCK):
            b1 = min(b0 + BLOCK, end)
            blk, sl = b0 // BLOCK, slice(b0, b1)
            g = prepare_grad(grads[sl], params[sl], h, flags[seg])
            # the maps' values; each block's scale goes into its betas, one multiply an
            # element less than scaling the values (the step is compute-bound on a CPU)
            m = int8_moment_value(mq[sl], 1).astype(params.dtype)
            u = int8_inf_norm_value(uq[sl], 1).astype(params.dtype)
            dt = params.dtype.type
            adamax_update(params[sl], g, m, u, lr_t=h[L.LR_T], beta1=h[L.BETA1],
                          beta2=h[L.BETA2], epsilon=h[L.EPS], flavor=flavor,
                          moment_factor=h[L.BETA1] * dt(m_scale[blk]),
                          inf_norm_factor=h[L.BETA2] * dt(u_scale[blk]))
            rand = random_bits(steps[seg], np.arange(b0, b1, dtype=np.uint64) + origin)
            mq[sl], m_scale[blk], uq[sl], u_scale[blk] = int8_quantize(m, u, rand, stochastic)


def update_flat_int8(ops, flavor):
    int8_update(ops.params, ops.grads, ops.moment, ops.inf_norm, ops.scales[0], ops.scales[1],
                ops.chunks, ops.hyper, ops.flags, flavor, ops.steps, ops.stochastic, ops.origin)


sumsq_flat_int8 = sumsq_flat


def int8_decode(codes, scales, offset, kind, scheme=None):
    """A segment's float32 values from its codes (the segment starts at ``offset``, a block
    boundary) and the bucket's per-block scales; ``kind``: "moment" or "inf_norm";
    ``scheme``: the int8 scheme that wrote the codes (None: this version's)."""
    codes = np.asarray(codes).reshape(-1)
    out = np.empty(codes.shape[0], np.float32)
    value = INT8_MAPS[scheme or SCHEMES["int8"]][0 if kind == "moment" else 1]
    for b0 in range(0, codes.shape[0], BLOCK):
        sl, blk = slice(b0, b0 + BLOCK), (offset + b0) // BLOCK
        out[sl] = value(codes[sl], scales[blk])
    return out


#: the name a checkpoint records for how its low-bit state codes are to be read; a reader
#: decodes codes written under an older int8 scheme it knows (INT8_MAPS) to values and
#: refuses any other
SCHEMES = {"bfloat16": "bfloat16 bits",
           "int8": "int8 v4: blocks of 256; moment sign + uint7 log map (8 codes an octave, 16 "
                   "octaves); inf_norm uint8 log map (16 codes an octave, 16 octaves, code 0 "
                   "its floor)"}
INT8_V3 = ("int8 v3: blocks of 256; moment sign + uint7 log map (8 codes an octave, 16 "
           "octaves); inf_norm uint8 log map (16 codes an octave, 16 octaves)")
INT8_V2 = ("int8 v2: blocks of 256; moment int8 * max|m|/127; inf_norm uint8 log map (16 codes "
           "an octave, 16 octaves)")
#: the int8 schemes this version reads: their (moment, inf-norm) maps
INT8_MAPS = {SCHEMES["int8"]: (int8_moment_value, int8_inf_norm_value),
             INT8_V3: (int8_moment_value, int8_inf_norm_value_v3),
             INT8_V2: (int8_moment_value_v2, int8_inf_norm_value_v3)}
#: the dtypes a state dtype's (moment, inf_norm) codes are held in
CODE_DTYPES = {"bfloat16": (np.uint16, np.uint16), "int8": (np.int8, np.uint8)}


def decode_codes(state_dtype, moment, inf_norm, moment_scale=None, inf_norm_scale=None,
                 scheme=None):
    """One parameter's held state -> its float32 (moment, inf_norm) values, exactly
    (``scheme``: an int8 scheme of INT8_MAPS, None for this version's)."""
    if state_dtype == "bfloat16":
        return bf16_value(moment).reshape(np.shape(moment)), \
            bf16_value(inf_norm).reshape(np.shape(inf_norm))
    return (int8_decode(moment, moment_scale, 0, "moment", scheme).reshape(np.shape(moment)),
            int8_decode(inf_norm, inf_norm_scale, 0, "inf_norm", scheme).reshape(
                np.shape(inf_norm)))


def check_codes(moment, inf_norm):
    """int8 codes as this scheme writes them: the moment never -128 (ValueError otherwise)."""
    if np.asarray(moment).size and int(np.min(moment)) < -127:
        raise ValueError("moment codes: expected values in [-127, 127], got -128")


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


# --- borrow mode: params and grads in the caller's arrays (host views, one per segment) --------
def _gathered(ops):
    """Flat params and grads (the bucket's dtype) assembled from borrow mode's per-segment
    arrays."""
    params = np.zeros(ops.moment.shape[0], ops.hyper.dtype)
    grads = np.zeros(ops.moment.shape[0], ops.hyper.dtype)
    for k, (p, g) in enumerate(zip(ops.params, ops.grads)):
        off = int(ops.offsets[k])
        params[off:off + p.size], grads[off:off + g.size] = p.reshape(-1), g.reshape(-1)
    return params, grads


def _borrowed(update):
    """The flat oracle ``update`` on gathered copies, the new params written back."""
    def run(ops, flavor):
        params, grads = _gathered(ops)
        update(ops._replace(params=params, grads=grads), flavor)
        for k, p in enumerate(ops.params):
            off = int(ops.offsets[k])
            p.reshape(-1)[...] = params[off:off + p.size]
    return run


update_borrow_bf16 = _borrowed(update_flat_bf16)
update_borrow_int8 = _borrowed(update_flat_int8)


def sumsq_borrow_bf16(ops, flags):
    return borrowed_sumsq(ops.grads, ops.offsets, ops.chunks, flags,
                          np.zeros(ops.moment.shape[0], ops.hyper.dtype))


sumsq_borrow_int8 = sumsq_borrow_bf16


# --- mixed precision: float16/bfloat16 params and grads, float32 masters --------------------------
def _mixed(update):
    """The float32 low-bit step on the masters with the widened grads; then every active
    chunk's 16-bit params = its masters rounded to nearest even (numpy's / ml_dtypes' astype)."""
    def run(ops, flavor):
        update(ops._replace(params=ops.master, grads=ops.grads.astype(np.float32)), flavor)
        for seg, start, end in ops.chunks:
            if ops.flags[seg, L.ACTIVE]:
                ops.params[start:end] = ops.master[start:end].astype(ops.params.dtype)
    return run


update_mixed_flat_bf16 = _mixed(update_flat_bf16)
update_mixed_flat_int8 = _mixed(update_flat_int8)


sumsq_mixed_flat_bf16 = sumsq_mixed_flat_int8 = sumsq_mixed_flat
