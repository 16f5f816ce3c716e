"""numba.cuda kernels: the table-driven Adamax step, its borrow twin, the norm reduction.

Same tables and formulas as kernels.cpu (see kernels.reference for the oracle), arranged for a
GPU and for a step that never waits on the device:

* ``update``: one launch for a whole bucket; a block takes a chunk (grid-stride over the chunk
  table), its threads stride over the chunk, so loads are coalesced and the per-segment scalars
  are read once per block. It reads the norm-clip scale from the device-side hyper table and
  the non-finite decision from a device flag, so no value ever goes back to the host.
* ``sumsq_partials`` + ``finish_clip``: per-chunk sums of squares (a fixed shared-memory tree
  in each block), then ONE block turns them into per-segment sums in chunk order, the norm-clip
  scales (ClipGradByNorm per tensor, ClipGradByGlobalNorm per group) and the non-finite flag.
  Fixed partition, fixed order: the result is the same on every run.

Every kernel and device function is defined here at module level; ``cuda.jit`` compiles on
first launch, per argument types (float32 and float64 buckets get their own machine code), so
importing this module needs no GPU (``import adamax_engine`` does not import it at all). Under
``NUMBA_ENABLE_CUDASIM=1`` they run in numba's simulator (which has no warp intrinsics, so the
reductions use shared memory only).
NVVM contracts a*b+c into FMAs, so on a real GPU fp32 results can differ from the reference by
an ulp or so per operation (paddle's own CUDA kernel is compiled the same way); in the
simulator they are bit-identical.
"""
from types import SimpleNamespace
from typing import NamedTuple

import numba
import numpy as np
from numba import cuda

from ..layout import (ACTIVE, BETA1, BETA2, CLIP_MAX, CLIP_MIN, CLIP_VALUE, DECAY, DECAY_MODE,
                      EPS, GRAD_SCALE, KERAS, L1_DECAY, L2_DECAY, ONE_MINUS_BETA1, PADDLE,
                      SCALE_GRAD)
from .runtime import NTHREADS, Index, grid_for, simulated  # noqa: F401 (K.simulated)

from .norms import (BY_GLOBAL_NORM, BY_NORM, NO_NORM_CLIP, ClipTables, NormInputs,  # noqa: F401
                    finish_clip, make_sumsq)


class SegmentScalars(NamedTuple):
    """One segment's scalars for one step, read once per chunk (kernels.layout's hyper and
    flag columns, plus this step's lr_t); all floats in the bucket dtype T."""
    lr_t: float
    beta1: float
    one_minus_beta1: float
    beta2: float
    eps: float
    decay: float
    clip_min: float
    clip_max: float
    grad_scale: float
    clip_value: bool
    scale_grad: bool
    decay_mode: int
    flavor: int


# --- device functions: the element step, written once for every CUDA kernel --------------------
@cuda.jit(device=True, inline=True)
def prepared_grad(g, p, s):
    """paddle's order: ClipGradByValue, then the norm-clip scale, then L2/L1 decay."""
    if s.clip_value:
        g = s.clip_min if g < s.clip_min else (s.clip_max if g > s.clip_max else g)
    if s.scale_grad:
        g = g * s.grad_scale
    if s.decay_mode == L2_DECAY:
        g = g + s.decay * p
    elif s.decay_mode == L1_DECAY:
        g = g + (s.decay if p > 0 else (-s.decay if p < 0 else s.decay * p))
    return g


@cuda.jit(device=True, inline=True)
def element(p, g, m, u, s):
    """One element's step from its raw grad: (p, m, u) after it (kernels.cpu.adamax_element's
    formula, after prepared_grad)."""
    g = prepared_grad(g, p, s)
    m = s.beta1 * m + s.one_minus_beta1 * g
    if s.flavor == PADDLE:
        a = abs(g)
        b = s.beta2 * u + s.eps
        u = b if a < b else a
        p = p - s.lr_t * (m / u)
    elif s.flavor == KERAS:
        a = s.beta2 * u
        b = abs(g)
        u = b if a < b else a
        p = p - s.lr_t * (m / (u + s.eps))
    else:
        a = s.beta2 * u
        b = abs(g) + s.eps
        u = b if a < b else a
        p = p - s.lr_t * (m / u)
    return p, m, u


@cuda.jit(device=True, inline=True)
def step_lr(lr, seg, flavor, lr_mult, beta1_pow, beta1_f64, steps):
    """step/tables.begin_step's LR_T, computed where beta1_pow lives (no upload per step)."""
    T = beta1_pow.dtype.type
    if flavor == PADDLE:
        return (T(lr) * lr_mult[seg]) / (T(1) - beta1_pow[seg])
    correction = 1.0 - beta1_f64[seg] ** numba.float64(steps[seg] + 1)
    return T(lr * numba.float64(lr_mult[seg]) / correction)


@cuda.jit(device=True, inline=True)
def segment_scalars(lr_t, hyper, flags, seg, flavor):
    """Segment ``seg``'s SegmentScalars from the device tables."""
    return SegmentScalars(lr_t, hyper[seg, BETA1], hyper[seg, ONE_MINUS_BETA1],
                          hyper[seg, BETA2], hyper[seg, EPS], hyper[seg, DECAY],
                          hyper[seg, CLIP_MIN], hyper[seg, CLIP_MAX], hyper[seg, GRAD_SCALE],
                          flags[seg, CLIP_VALUE] != 0, flags[seg, SCALE_GRAD] != 0,
                          flags[seg, DECAY_MODE], flavor)


@cuda.jit(device=True, inline=True)
def flat_load(arr, seg, i, where):
    return arr[i]


@cuda.jit(device=True, inline=True)
def flat_store(arr, seg, i, where, value):
    arr[i] = value


# --- the update and the reduction, generic over how params and grads are reached ---------------
def make_update(load_param, load_grad, store):
    """The update kernel reading params and grads through ``load_*(arr, seg, i, where)`` and
    writing params through ``store(arr, seg, i, where, value)``; ``where`` is what they need
    besides the array and the flat index i: nothing for the flat buffers, the segment offsets
    for borrow.py's address tables, the 16-bit params and their format for mixed.py (``params``
    are then the float32 master weights)."""
    @cuda.jit
    def update(params, grads, moment, inf_norm, chunks, hyper, flags, flavor, skip, lr,
               lr_mult, beta1_pow, beta1_f64, steps, where):
        """One step over every active chunk; nothing at all when ``skip[0]`` is set.

        params, grads, moment, inf_norm: flat buffers (params/grads as load/store reach them);
        chunks: (segment, start, end) rows; hyper, flags: the segment tables; flavor: layout
        flavor code; skip: [this step skipped, count]; lr: the base lr (float); lr_mult,
        beta1_pow, beta1_f64, steps: per segment (lr_t is formed here, see step_lr)."""
        if skip[0] != 0:
            return
        c = cuda.blockIdx.x
        while c < chunks.shape[0]:
            seg = chunks[c, 0]
            if flags[seg, ACTIVE] == 1:  # (ACTIVE_SPARSE rows are rows.py's)
                s = segment_scalars(step_lr(lr, seg, flavor, lr_mult, beta1_pow, beta1_f64,
                                            steps), hyper, flags, seg, flavor)
                # flat indices of runtime.Index's type (unsigned: no wraparound code per access)
                step = Index(cuda.blockDim.x)
                step2 = step + step
                step3, step4 = step2 + step, step2 + step2
                i = Index(chunks[c, 1]) + Index(cuda.threadIdx.x)
                end = Index(chunks[c, 2])
                # four elements per thread and pass, all loads issued before any store: enough
                # bytes in flight per SM to approach HBM bandwidth (one at a time reached ~half)
                while i + step3 < end:
                    i1, i2, i3 = i + step, i + step2, i + step3
                    p0, g0 = load_param(params, seg, i, where), load_grad(grads, seg, i, where)
                    p1, g1 = load_param(params, seg, i1, where), load_grad(grads, seg, i1, where)
                    p2, g2 = load_param(params, seg, i2, where), load_grad(grads, seg, i2, where)
                    p3, g3 = load_param(params, seg, i3, where), load_grad(grads, seg, i3, where)
                    m0, u0, m1, u1 = moment[i], inf_norm[i], moment[i1], inf_norm[i1]
                    m2, u2, m3, u3 = moment[i2], inf_norm[i2], moment[i3], inf_norm[i3]
                    p0, m0, u0 = element(p0, g0, m0, u0, s)
                    p1, m1, u1 = element(p1, g1, m1, u1, s)
                    p2, m2, u2 = element(p2, g2, m2, u2, s)
                    p3, m3, u3 = element(p3, g3, m3, u3, s)
                    store(params, seg, i, where, p0)
                    store(params, seg, i1, where, p1)
                    store(params, seg, i2, where, p2)
                    store(params, seg, i3, where, p3)
                    moment[i], inf_norm[i], moment[i1], inf_norm[i1] = m0, u0, m1, u1
                    moment[i2], inf_norm[i2], moment[i3], inf_norm[i3] = m2, u2, m3, u3
                    i += step4
                while i < end:
                    p, m, u = element(load_param(params, seg, i, where),
                                      load_grad(grads, seg, i, where), moment[i], inf_norm[i],
                                      s)
                    store(params, seg, i, where, p)
                    moment[i], inf_norm[i] = m, u
                    i += step
            c += cuda.gridDim.x
    return update


update = make_update(flat_load, flat_load, flat_store)


@cuda.jit
def end_step(flags, beta1_pow, beta1_mult, steps):
    """step/tables.end_step on the device copy (the same T multiply, so the same bits)."""
    k = cuda.grid(1)
    while k < flags.shape[0]:
        if flags[k, ACTIVE] != 0:
            beta1_pow[k] = beta1_pow[k] * beta1_mult[k]
            steps[k] += 1
        k += cuda.gridsize(1)


@cuda.jit
def count_skip(skip):
    """skip[1] counts the steps that skip[0] (a non-finite grad) skipped."""
    if cuda.grid(1) == 0 and skip[0] != 0:
        skip[1] += 1


@cuda.jit
def fill_kernel(x, value):
    i = cuda.grid(1)
    while i < x.shape[0]:
        x[i] = value
        i += cuda.gridsize(1)


@cuda.jit
def divide_kernel(x, value):
    """x[:] /= value (the average of an all-reduced grad, as numpy's divide rounds it)."""
    i = cuda.grid(1)
    while i < x.shape[0]:
        x[i] = x[i] / value
        i += cuda.gridsize(1)


sumsq_partials = make_sumsq(flat_load)
_KERNELS = SimpleNamespace(fill=fill_kernel, divide=divide_kernel, count_skip=count_skip,
                           update=update, end_step=end_step, sumsq_partials=sumsq_partials,
                           finish_clip=finish_clip, threads=NTHREADS)


def kernels(dtype=None):
    """The kernels, by name (the same objects for every dtype: numba compiles one machine
    code per argument types on first launch)."""
    return _KERNELS


# --- device buffers ------------------------------------------------------------------------------
def zeros(n, dtype):
    """A zero-filled device buffer, set on the device (no host array of n elements).
    16-bit floats are filled as their uint16 bits (no float16 kernel needed)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize == 2:
        return zeros(n, np.uint16).view(dtype)
    out = cuda.device_array(n, dtype)
    fill(out, 0)
    return out


def _blocks(n):
    return grid_for((n + NTHREADS - 1) // NTHREADS), NTHREADS


def fill(x, value):
    """x[:] = value for a 1-D device array."""
    if x.shape[0]:
        fill_kernel[_blocks(x.shape[0])](x, x.dtype.type(value))


def divide(x, value):
    """x[:] /= value for a 1-D device array."""
    if x.shape[0]:
        divide_kernel[_blocks(x.shape[0])](x, x.dtype.type(value))
