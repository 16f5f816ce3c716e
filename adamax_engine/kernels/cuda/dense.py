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

Kernels are built on first use (``kernels(dtype)``), never at import, so importing the package
works on machines without a GPU; under ``NUMBA_ENABLE_CUDASIM=1`` they run in numba's simulator
(which has no warp intrinsics, so the reductions use shared memory only).
NVVM contracts a*b+c into FMAs, so on a real GPU fp32 results can differ from the reference by
an ulp or so per operation (paddle's own CUDA kernel is compiled the same way); in the
simulator they are bit-identical.
"""
import functools
import math
from types import SimpleNamespace

import numpy as np

from ..layout import (ACTIVE, BETA1, BETA2, CLIP_MAX, CLIP_MIN, CLIP_VALUE, DECAY, DECAY_MODE,
                     EPS, GRAD_SCALE, KERAS, L1_DECAY, L2_DECAY, ONE_MINUS_BETA1, PADDLE,
                     SCALE_GRAD)
from .runtime import SIM_THREADS, THREADS, grid_for, simulated  # noqa: F401 (K.simulated)

# clip kinds of the per-segment clip table (column 0); column 1 is the global-norm group index
NO_NORM_CLIP, BY_NORM, BY_GLOBAL_NORM = 0, 1, 2


def zeros(n, dtype):
    """A zero-filled device buffer, set on the device (no host array of n elements).
    16-bit floats are filled as their uint16 bits (no float16 kernel needed)."""
    from numba import cuda
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize == 2:
        return zeros(n, np.uint16).view(dtype)
    out = cuda.device_array(n, dtype)
    fill(out, 0)
    return out


def fill(x, value):
    """x[:] = value for a 1-D device array."""
    if x.shape[0]:
        k = kernels(x.dtype)
        k.fill[grid_for((x.shape[0] + k.threads - 1) // k.threads), k.threads](x, x.dtype.type(value))


def divide(x, value):
    """x[:] /= value for a 1-D device array."""
    if x.shape[0]:
        k = kernels(x.dtype)
        k.divide[grid_for((x.shape[0] + k.threads - 1) // k.threads), k.threads](
            x, x.dtype.type(value))


cuda = None  # numba.cuda, bound on first use; a module global, which the simulator swaps


def _bind_cuda():
    global cuda
    if cuda is None:
        from numba import cuda as module
        cuda = module


@functools.lru_cache(maxsize=None)
def kernels(dtype):
    """The compiled kernels for one dtype (float32/float64), built once per process."""
    import numba
    _bind_cuda()
    nbt = numba.from_dtype(np.dtype(dtype))
    nthreads = SIM_THREADS if simulated() else THREADS

    @cuda.jit(device=True, inline=True)
    def element(p, g, m, u, lr_t, b1, omb1, b2, eps, lo, hi, scale, decay, clip_value,
                scale_grad, decay_mode, flavor):
        if clip_value:
            g = lo if g < lo else (hi if g > hi else g)
        if scale_grad:
            g = g * scale
        if decay_mode == L2_DECAY:
            g = g + decay * p
        elif decay_mode == L1_DECAY:
            g = g + (decay if p > 0 else (-decay if p < 0 else decay * p))
        m = b1 * m + omb1 * g
        if flavor == PADDLE:
            a = abs(g)
            b = b2 * u + eps
            u = b if a < b else a
            p = p - lr_t * (m / u)
        elif flavor == KERAS:
            a = b2 * u
            b = abs(g)
            u = b if a < b else a
            p = p - lr_t * (m / (u + eps))
        else:
            a = b2 * u
            b = abs(g) + eps
            u = b if a < b else a
            p = p - lr_t * (m / u)
        return p, m, u

    @cuda.jit(device=True, inline=True)
    def step_lr(lr, seg, flavor, lr_mult, beta1_pow, beta1_f64, steps):
        """steptables.begin_step's LR_T, computed where beta1_pow lives (no upload per step)."""
        if flavor == PADDLE:
            return (nbt(lr) * lr_mult[seg]) / (nbt(1) - beta1_pow[seg])
        correction = 1.0 - beta1_f64[seg] ** numba.float64(steps[seg] + 1)
        return nbt(lr * numba.float64(lr_mult[seg]) / correction)

    @cuda.jit(device=True, inline=True)
    def segment_scalars(hyper, flags, seg):
        """A segment's scalars, read once per chunk (the arguments of ``element`` after lr_t)."""
        return (hyper[seg, BETA1], hyper[seg, ONE_MINUS_BETA1], hyper[seg, BETA2],
                hyper[seg, EPS], hyper[seg, DECAY], hyper[seg, CLIP_MIN], hyper[seg, CLIP_MAX],
                hyper[seg, GRAD_SCALE], flags[seg, CLIP_VALUE] != 0,
                flags[seg, SCALE_GRAD] != 0, flags[seg, DECAY_MODE])

    def make_update(load_param, load_grad, store):
        """The update kernel reading params and grads through ``load_*(arr, seg, i, where)``
        and writing params through ``store(arr, seg, i, where, value)``; ``where`` is what they
        need besides the array and the flat index i: nothing for the flat buffers, the segment
        offsets for kernels/cuda/borrow.py's address tables, the 16-bit params and their format
        for kernels/cuda/mixed.py (``params`` are then the float32 master weights)."""
        @cuda.jit
        def update(params, grads, moment, inf_norm, chunks, hyper, flags, flavor, skip, lr,
                   lr_mult, beta1_pow, beta1_f64, steps, where):
            """One step over every active chunk; nothing at all when ``skip[0]`` is set."""
            if skip[0] != 0:
                return
            c = cuda.blockIdx.x
            while c < chunks.shape[0]:
                seg = chunks[c, 0]
                if flags[seg, ACTIVE] == 1:  # (ACTIVE_SPARSE rows are cuda_sparse's)
                    h = (step_lr(lr, seg, flavor, lr_mult, beta1_pow, beta1_f64, steps),) + \
                        segment_scalars(hyper, flags, seg) + (flavor,)
                    step = cuda.blockDim.x
                    i = chunks[c, 1] + cuda.threadIdx.x
                    end = chunks[c, 2]
                    # four elements per thread and pass, all loads issued before any store:
                    # enough bytes in flight per SM to approach HBM bandwidth (one at a time
                    # reached ~half)
                    while i + 3 * step < end:
                        i1, i2, i3 = i + step, i + 2 * step, i + 3 * step
                        p0, g0 = load_param(params, seg, i, where), load_grad(grads, seg, i, where)
                        p1, g1 = load_param(params, seg, i1, where), load_grad(grads, seg, i1, where)
                        p2, g2 = load_param(params, seg, i2, where), load_grad(grads, seg, i2, where)
                        p3, g3 = load_param(params, seg, i3, where), load_grad(grads, seg, i3, where)
                        m0, u0, m1, u1 = moment[i], inf_norm[i], moment[i1], inf_norm[i1]
                        m2, u2, m3, u3 = moment[i2], inf_norm[i2], moment[i3], inf_norm[i3]
                        p0, m0, u0 = step_element(p0, g0, m0, u0, h)
                        p1, m1, u1 = step_element(p1, g1, m1, u1, h)
                        p2, m2, u2 = step_element(p2, g2, m2, u2, h)
                        p3, m3, u3 = step_element(p3, g3, m3, u3, h)
                        store(params, seg, i, where, p0)
                        store(params, seg, i1, where, p1)
                        store(params, seg, i2, where, p2)
                        store(params, seg, i3, where, p3)
                        moment[i], inf_norm[i], moment[i1], inf_norm[i1] = m0, u0, m1, u1
                        moment[i2], inf_norm[i2], moment[i3], inf_norm[i3] = m2, u2, m3, u3
                        i += 4 * step
                    while i < end:
                        p, m, u = step_element(load_param(params, seg, i, where),
                                               load_grad(grads, seg, i, where), moment[i],
                                               inf_norm[i], h)
                        store(params, seg, i, where, p)
                        moment[i], inf_norm[i] = m, u
                        i += step
                c += cuda.gridDim.x
        return update

    @cuda.jit(device=True, inline=True)
    def step_element(p, g, m, u, h):
        """element() with a segment's (lr_t, segment_scalars..., flavor) as one tuple."""
        return element(p, g, m, u, h[0], h[1], h[2], h[3], h[4], h[6], h[7], h[8], h[5], h[9],
                       h[10], h[11], h[12])

    @cuda.jit(device=True, inline=True)
    def flat_load(arr, seg, i, where):
        return arr[i]

    @cuda.jit(device=True, inline=True)
    def flat_store(arr, seg, i, where, value):
        arr[i] = value

    update = make_update(flat_load, flat_load, flat_store)

    @cuda.jit
    def end_step(flags, beta1_pow, beta1_mult, steps):
        """steptables.end_step on the device copy (the same T multiply, so the same bits)."""
        k = cuda.grid(1)
        while k < flags.shape[0]:
            if flags[k, ACTIVE] != 0:
                beta1_pow[k] = beta1_pow[k] * beta1_mult[k]
                steps[k] += 1
            k += cuda.gridsize(1)

    def make_sumsq(load):
        """The sumsq_partials kernel reading grads through ``load(grads, seg, i, store)``."""
        @cuda.jit
        def sumsq_partials(grads, chunks, flags, clip_table, all_active, partial, bad, store):
            """partial[c] = sum of g^2 over chunk c (a fixed tree), bad[c] = any non-finite g.

            A chunk counts when its segment is active and norm-clipped, or every active chunk
            when ``all_active`` (the non-finite check of skip_nonfinite needs every grad).
            ``store`` is for ``load``: the 16-bit format of the mixed-precision kernels, the
            segment offsets of the borrowed ones (kernels/cuda/borrow.py), else unused.
            """
            acc = cuda.shared.array(nthreads, nbt)
            flag = cuda.shared.array(nthreads, numba.int32)
            t = cuda.threadIdx.x
            c = cuda.blockIdx.x
            while c < chunks.shape[0]:
                seg = chunks[c, 0]
                wanted = flags[seg, ACTIVE] == 1 and (all_active
                                                      or clip_table[seg, 0] != NO_NORM_CLIP)
                s = nbt(0)
                nonfinite = 0
                if wanted:
                    i = chunks[c, 1] + t
                    while i < chunks[c, 2]:
                        g = load(grads, seg, i, store)
                        s += g * g
                        if not math.isfinite(g):
                            nonfinite = 1
                        i += nthreads
                acc[t] = s
                flag[t] = nonfinite
                cuda.syncthreads()
                width = nthreads // 2
                while width > 0:
                    if t < width:
                        acc[t] = acc[t] + acc[t + width]
                        flag[t] = flag[t] | flag[t + width]
                    cuda.syncthreads()
                    width //= 2
                if t == 0:
                    partial[c] = acc[0]
                    bad[c] = flag[0]
                cuda.syncthreads()
                c += cuda.gridDim.x
        return sumsq_partials

    sumsq_partials = make_sumsq(flat_load)

    @cuda.jit
    def finish_clip(partial, bad, seg_chunks, flags, clip_table, clip_norm, group_skip,
                    hyper, seg_sumsq, skip, skip_nonfinite, first, n_groups, extra_sumsq,
                    extra_bad):
        """One block: per-segment sums (chunk order), clip scales into ``hyper``, skip flag.

        seg_chunks[k]:seg_chunks[k+1] are segment k's chunks; clip_table[k] = (kind, global
        group index); clip_norm[k] = its clipper's clip_norm in T; group_skip[gi] =
        auto_skip_clip of global group gi. With ``skip_nonfinite``, skip[0] (read by update())
        becomes "a grad is inf/nan": assigned by the step's ``first`` bucket, OR-ed by the rest.
        Formulas: clip.ClipGradByNorm / ClipGradByGlobalNorm. ``extra_sumsq``/``extra_bad``
        start each segment's sum and flag (a row-sparse grad's, computed on the host; else 0).
        """
        t = cuda.threadIdx.x
        n = seg_chunks.shape[0] - 1
        acc = cuda.shared.array(nthreads, nbt)
        flag = cuda.shared.array(nthreads, numba.int32)
        nonfinite = 0
        k = t
        while k < n:
            s = extra_sumsq[k]
            nonfinite |= extra_bad[k]
            for c in range(seg_chunks[k], seg_chunks[k + 1]):
                s += partial[c]
                nonfinite |= bad[c]
            seg_sumsq[k] = s
            if flags[k, ACTIVE] != 0 and clip_table[k, 0] == BY_NORM:
                norm = math.sqrt(s)
                max_norm = clip_norm[k]
                tiny = nbt(1e-6) if norm <= nbt(1e-30) else nbt(0)
                apply = not (norm <= max_norm)
                hyper[k, GRAD_SCALE] = max_norm / (norm + tiny) if apply else nbt(1)
                flags[k, SCALE_GRAD] = 1 if apply else 0
            k += nthreads
        flag[t] = nonfinite
        cuda.syncthreads()
        width = nthreads // 2
        while width > 0:
            if t < width:
                flag[t] = flag[t] | flag[t + width]
            cuda.syncthreads()
            width //= 2
        if t == 0 and skip_nonfinite:
            skip[0] = 1 if flag[0] != 0 else (0 if first else skip[0])
        for gi in range(n_groups):
            s = nbt(0)
            k = t
            while k < n:
                if flags[k, ACTIVE] != 0 and clip_table[k, 0] == BY_GLOBAL_NORM \
                        and clip_table[k, 1] == gi:
                    s += seg_sumsq[k]
                k += nthreads
            acc[t] = s
            cuda.syncthreads()
            width = nthreads // 2
            while width > 0:
                if t < width:
                    acc[t] = acc[t] + acc[t + width]
                cuda.syncthreads()
                width //= 2
            gnorm = math.sqrt(acc[0])
            k = t
            while k < n:
                if flags[k, ACTIVE] != 0 and clip_table[k, 0] == BY_GLOBAL_NORM \
                        and clip_table[k, 1] == gi:
                    max_norm = clip_norm[k]
                    if group_skip[gi] == 0:  # max_norm / maximum(gnorm, max_norm), NaN kept
                        big = gnorm > max_norm or gnorm != gnorm
                        hyper[k, GRAD_SCALE] = max_norm / (gnorm if big else max_norm)
                        flags[k, SCALE_GRAD] = 1
                    else:
                        apply = gnorm > max_norm
                        hyper[k, GRAD_SCALE] = max_norm / gnorm if apply else nbt(1)
                        flags[k, SCALE_GRAD] = 1 if apply else 0
                k += nthreads
            cuda.syncthreads()

    @cuda.jit
    def count_skip(skip):
        """skip[1] counts the steps that skip[0] (a non-finite grad) skipped."""
        if cuda.grid(1) == 0 and skip[0] != 0:
            skip[1] += 1

    @cuda.jit
    def fill(x, value):
        i = cuda.grid(1)
        while i < x.shape[0]:
            x[i] = value
            i += cuda.gridsize(1)

    @cuda.jit
    def divide(x, value):
        """x[:] /= value (the average of an all-reduced grad, as numpy's divide rounds it)."""
        i = cuda.grid(1)
        while i < x.shape[0]:
            x[i] = x[i] / value
            i += cuda.gridsize(1)

    return SimpleNamespace(fill=fill, divide=divide, count_skip=count_skip, update=update, end_step=end_step,
                           sumsq_partials=sumsq_partials, finish_clip=finish_clip,
                           threads=nthreads, element=element, step_lr=step_lr,
                           segment_scalars=segment_scalars, make_sumsq=make_sumsq,
                           make_update=make_update, flat_load=flat_load)
