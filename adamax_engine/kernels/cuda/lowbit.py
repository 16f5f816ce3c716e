"""numba.cuda kernels for low-bit optimizer state: bfloat16 moments and int8 block codes.

The same scheme as the CPU kernels (kernels/lowbit.py; kernels/lowbit_reference.py is the
oracle and documents it), arranged for a GPU:

* ``bf16_update``: dense.py's layout (a block per chunk, grid-stride over the chunk table, its
  threads striding over the chunk), each element widened from its bfloat16 bits, stepped by
  dense.py's ``element`` and rounded back with the counter-based random bits.
* ``int8_update``: a thread block walks its chunk one 256-element quantization block at a
  time: pass 1 dequantizes and steps, keeping the new moments in shared memory and each
  thread's max |.| bits; a shared-memory tree turns those into the block's maxima (an integer
  max: exact in any order); pass 2 writes the codes from those fresh scales.

Both come from a factory over how params and grads are reached (as dense.make_update): flat
buffers here, address tables in borrow.py, float32 masters with 16-bit params in mixed.py.

Float bits: on a GPU through an LLVM bitcast (kernels/halfbits.py's intrinsic, which NVVM
compiles); in numba's simulator, which runs device functions as Python, through numpy views.
Every integer step is masked to 32 bits, so Python ints (the simulator) and 64-bit machine
ints (a GPU) give the same bits. In the simulator the kernels equal the oracle bit for bit; on
a GPU NVVM contracts a*b+c into FMAs, as for dense.py, so a code can differ where a value sits
within an ulp of a rounding boundary.
"""
import math
from types import SimpleNamespace

import numba
import numpy as np
from numba import cuda

from ..layout import ACTIVE
from ..lowbit_reference import (BLOCK, LOG_BIAS, LOG_SHIFT, MOMENT_BIAS, MOMENT_MIN,
                                MOMENT_MIN_STEPS, MOMENT_SHIFT)
from . import dense as K
from .runtime import NTHREADS, simulated

_INF = np.float32(math.inf)
_MASK = 0xFFFFFFFF

if simulated():
    def _bits_of(x):
        return int(np.float32(x).view(np.uint32))

    def _from_bits(u):
        return np.uint32(int(u) & _MASK).view(np.float32)
else:
    from ..halfbits import bitcast

    def _bits_of(x):
        return bitcast(np.float32(x), np.uint32)

    def _from_bits(u):
        return bitcast(np.uint32(u), np.float32)

f32_bits = cuda.jit(device=True, inline=True)(_bits_of)
f32_from_bits = cuda.jit(device=True, inline=True)(_from_bits)


@cuda.jit(device=True, inline=True)
def hash32(x):
    """lowbias32 (lowbit_reference.hash32), every product cut back to 32 bits."""
    x = int(x) & _MASK
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK
    return x ^ (x >> 16)


@cuda.jit(device=True, inline=True)
def scramble32(x):
    """lowbit_reference.scramble32, the product cut back to 32 bits."""
    x = ((int(x) & _MASK) * 0x7FEB352D) & _MASK
    return x ^ (x >> 16)


@cuda.jit(device=True, inline=True)
def bf16_value(h):
    return f32_from_bits((int(h) & 0xFFFF) << 16)


@cuda.jit(device=True, inline=True)
def bf16_round(x, r, stochastic):
    """float32 -> bfloat16 bits: + r (16 random bits) then truncate, or to nearest even; NaN
    to its quiet top half (lowbit_reference.bf16_stochastic / bf16_nearest)."""
    u = int(f32_bits(x))
    if (u & 0x7FFFFFFF) > 0x7F800000:
        return (u >> 16) | 0x40
    if stochastic:
        return ((u + r) & _MASK) >> 16
    return ((u + 0x7FFF + ((u >> 16) & 1)) & _MASK) >> 16


@cuda.jit(device=True, inline=True)
def abs_bits(x):
    return int(f32_bits(x)) & 0x7FFFFFFF


@cuda.jit(device=True, inline=True)
def scale_from_bits(bits):
    """A block's scale from its max |x| bits: that value, or NaN if any was NaN."""
    if bits > 0x7F800000:
        return np.float32(math.nan)
    return f32_from_bits(bits)


@cuda.jit(device=True, inline=True)
def encodable(scale, factor):
    """lowbit_reference.encodable: a finite scale > 0 whose factor did not overflow."""
    return np.float32(0) < scale < _INF and factor < _INF


@cuda.jit(device=True, inline=True)
def inf_norm_value(c):
    """An inf-norm code's map value F(c) (lowbit_reference.int8_inf_norm_value, scale 1)."""
    return f32_from_bits((int(c) + LOG_BIAS) << LOG_SHIFT)


@cuda.jit(device=True, inline=True)
def moment_value(c):
    """An int8 moment code's map value (lowbit_reference.int8_moment_value, scale 1)."""
    c = int(c)
    if c == 0:
        return np.float32(0)
    v = f32_from_bits(((-c if c < 0 else c) + MOMENT_BIAS) << MOMENT_SHIFT)
    return -v if c < 0 else v


@cuda.jit(device=True, inline=True)
def bit_rounding(x, r, stochastic, shift):
    """lowbit_reference.bit_rounding: x's bits, plus r's or nearest's offset, >> shift."""
    add = (int(r) << (shift - 16)) if stochastic else (1 << (shift - 1))
    return ((int(f32_bits(x)) + add) & _MASK) >> shift


@cuda.jit(device=True, inline=True)
def moment_code(x, r, stochastic):
    """x = m * (1 / scale) -> its int8 code (lowbit_reference.moment_code): the sign of x and
    the moment map's code of |x| (lowbit_reference.log_code), rounded with r's low 16 bits."""
    a, r = abs(x), int(r) & 0xFFFF
    if a >= MOMENT_MIN:
        k = (bit_rounding(a, r, stochastic, MOMENT_SHIFT) - MOMENT_BIAS) & 0xFF
    else:
        below = np.float32(r) if stochastic else np.float32(32767.5)
        k = 1 if a * MOMENT_MIN_STEPS > below else 0
    return -k if x < 0 else k


@cuda.jit(device=True, inline=True)
def floor_code(x, r, stochastic):
    """x in [0, 1] -> its inf-norm code (lowbit_reference.floor_code)."""
    k = bit_rounding(x, r, stochastic, LOG_SHIFT) - LOG_BIAS
    return k if k > 0 else 0


@cuda.jit(device=True, inline=True)
def folded(s, ms, us):
    """``s`` with a block's scales folded into its betas (lowbit_reference.int8_update)."""
    return K.SegmentScalars(s.lr_t, s.beta1 * ms, s.one_minus_beta1, s.beta2 * us, s.eps,
                            s.decay, s.clip_min, s.clip_max, s.grad_scale, s.clip_value,
                            s.scale_grad, s.decay_mode, s.flavor)


@cuda.jit(device=True, inline=True)
def bf16_element(i, p, g, mbits, ubits, s, key, stochastic):
    """Element i's step from its loaded values: (new param, moment bits, inf-norm bits); ``i``
    counts from the bucket's start (the rounding's counter)."""
    p, m, u = K.element(p, g, bf16_value(mbits), bf16_value(ubits), s)
    h = scramble32((int(i) & _MASK) ^ key) if stochastic else 0
    return p, bf16_round(m, h & 0xFFFF, stochastic), bf16_round(u, h >> 16, stochastic)


@cuda.jit(device=True, inline=True)
def chunk_setup(lr, seg, flavor, hyper, flags, lr_mult, beta1_pow, beta1_f64, steps):
    """A chunk's SegmentScalars (dense.py's) and its segment's rounding key for this step."""
    s = K.segment_scalars(K.step_lr(lr, seg, flavor, lr_mult, beta1_pow, beta1_f64, steps),
                          hyper, flags, seg, flavor)
    return s, hash32(steps[seg])


# --- the updates, generic over how params and grads are reached (as dense.make_update) ---------
def make_bf16_update(load_param, load_grad, store):
    """The bfloat16-state update reading params and grads through ``load_*(arr, seg, i,
    where)`` and writing params through ``store``: dense.py's flat buffers, borrow.py's address
    tables, or mixed.py's float32 masters with their 16-bit params (``where`` as there)."""
    @cuda.jit
    def bf16_update(params, grads, mq, uq, chunks, hyper, flags, flavor, skip, lr, lr_mult,
                    beta1_pow, beta1_f64, steps, stochastic, origin, where):
        """One step over every active chunk of a bucket whose state is bfloat16 bits (uint16
        ``mq``/``uq``); dense.update's other arguments. ``origin``: the first element's index
        in the whole bucket (ZeRO-1 steps a slice; the rounding counts from the bucket's start)."""
        if skip[0] != 0:
            return
        c = cuda.blockIdx.x
        while c < chunks.shape[0]:
            seg = chunks[c, 0]
            if flags[seg, ACTIVE] == 1:
                s, key = chunk_setup(lr, seg, flavor, hyper, flags, lr_mult, beta1_pow,
                                     beta1_f64, steps)
                step = cuda.blockDim.x
                i = chunks[c, 1] + cuda.threadIdx.x
                end = chunks[c, 2]
                # two elements per thread and pass, both loaded before either is stored (more
                # bytes in flight, as dense.update's four; 16-bit state halves the bytes)
                while i + step < end:
                    i1 = i + step
                    p0, g0 = load_param(params, seg, i, where), load_grad(grads, seg, i, where)
                    p1 = load_param(params, seg, i1, where)
                    g1 = load_grad(grads, seg, i1, where)
                    m0, u0, m1, u1 = mq[i], uq[i], mq[i1], uq[i1]
                    p0, m0, u0 = bf16_element(i + origin, p0, g0, m0, u0, s, key, stochastic)
                    p1, m1, u1 = bf16_element(i1 + origin, p1, g1, m1, u1, s, key, stochastic)
                    store(params, seg, i, where, p0)
                    store(params, seg, i1, where, p1)
                    mq[i], uq[i], mq[i1], uq[i1] = m0, u0, m1, u1
                    i += 2 * step
                while i < end:
                    p, m, u = bf16_element(i + origin, load_param(params, seg, i, where),
                                           load_grad(grads, seg, i, where), mq[i], uq[i], s,
                                           key, stochastic)
                    store(params, seg, i, where, p)
                    mq[i], uq[i] = m, u
                    i += step
            c += cuda.gridDim.x
    return bf16_update


def make_int8_update(load_param, load_grad, store):
    """The int8-state update, params and grads reached as in make_bf16_update."""
    @cuda.jit
    def int8_update(params, grads, mq, uq, m_scale, u_scale, chunks, hyper, flags, flavor,
                    skip, lr, lr_mult, beta1_pow, beta1_f64, steps, stochastic, origin, where):
        """One step over every active chunk of a bucket with int8 block codes (int8 ``mq``,
        uint8 ``uq``, float32 scales per block); chunks start on block boundaries; ``origin``
        as in bf16_update."""
        mbuf = cuda.shared.array(BLOCK, numba.float32)
        ubuf = cuda.shared.array(BLOCK, numba.float32)
        top = cuda.shared.array((2, NTHREADS), numba.uint32)
        if skip[0] != 0:
            return
        t, nt = cuda.threadIdx.x, cuda.blockDim.x
        c = cuda.blockIdx.x
        while c < chunks.shape[0]:
            seg = chunks[c, 0]
            if flags[seg, ACTIVE] == 1:
                s, key = chunk_setup(lr, seg, flavor, hyper, flags, lr_mult, beta1_pow,
                                     beta1_f64, steps)
                b0, end = chunks[c, 1], chunks[c, 2]
                while b0 < end:
                    n = end - b0 if end - b0 < BLOCK else BLOCK
                    blk = b0 // BLOCK
                    sb = folded(s, m_scale[blk], u_scale[blk])
                    mmax, umax = 0, 0
                    j = t
                    while j < n:
                        i = b0 + j
                        p, m, u = K.element(load_param(params, seg, i, where),
                                            load_grad(grads, seg, i, where),
                                            moment_value(mq[i]), inf_norm_value(uq[i]), sb)
                        store(params, seg, i, where, p)
                        mbuf[j], ubuf[j] = m, u
                        am, au = abs_bits(m), abs_bits(u)
                        mmax = am if am > mmax else mmax  # (no min/max builtins: numba.cuda
                        umax = au if au > umax else umax  # fails to type some of their calls)
                        j += nt
                    top[0, t], top[1, t] = mmax, umax
                    cuda.syncthreads()
                    half = nt // 2
                    while half > 0:
                        if t < half:
                            if top[0, t + half] > top[0, t]:
                                top[0, t] = top[0, t + half]
                            if top[1, t + half] > top[1, t]:
                                top[1, t] = top[1, t + half]
                        cuda.syncthreads()
                        half //= 2
                    sm, su = scale_from_bits(top[0, 0]), scale_from_bits(top[1, 0])
                    tm = np.float32(1) / sm if sm > 0 else np.float32(0)  # (0: no code)
                    tu = np.float32(1) / su if su > 0 else np.float32(0)
                    code_m, code_u = encodable(sm, tm), encodable(su, tu)
                    j = t
                    while j < n:
                        i = b0 + j
                        r = scramble32((int(i + origin) & _MASK) ^ key) if stochastic else 0
                        mq[i] = moment_code(mbuf[j] * tm, r, stochastic) if code_m else 0
                        uq[i] = floor_code(ubuf[j] * tu, r >> 16, stochastic) if code_u else 0
                        j += nt
                    cuda.syncthreads()  # every thread has read top[.., 0] and the old scales
                    if t == 0:
                        m_scale[blk], u_scale[blk] = sm, su
                    b0 += BLOCK
            c += cuda.gridDim.x
    return int8_update


bf16_update = make_bf16_update(K.flat_load, K.flat_load, K.flat_store)
int8_update = make_int8_update(K.flat_load, K.flat_load, K.flat_store)
_KERNELS = SimpleNamespace(bf16_update=bf16_update, int8_update=int8_update,
                           threads=NTHREADS)


def kernels(dtype=None):
    """The low-bit state kernels over flat buffers, by name (the same objects for float32 and
    float64 buckets: numba compiles one machine code per argument types); borrow.py and
    mixed.py build their own with make_bf16_update / make_int8_update."""
    return _KERNELS
