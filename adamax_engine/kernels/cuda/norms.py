"""The norm half of a CUDA step: per-chunk sums of squares, then one block that turns them into
per-segment sums, the norm-clip scales and the non-finite flag (see dense.py's docstring).

Fixed partition and fixed trees: the result is the same on every run. Nothing is read back:
the scales go into the device hyper table that dense.update reads.
"""
import math
from typing import NamedTuple

import numba
from numba import cuda

from ..layout import ACTIVE, GRAD_SCALE, SCALE_GRAD
from .runtime import NTHREADS, Index

# clip kinds of the per-segment clip table (column 0); column 1 is the global-norm group index
NO_NORM_CLIP, BY_NORM, BY_GLOBAL_NORM = 0, 1, 2


class NormInputs(NamedTuple):
    """What finish_clip sums: per-chunk partials and non-finite flags (sumsq_partials),
    ``seg_chunks[k]:seg_chunks[k+1]`` the chunks of segment k, and per-segment sums/flags to
    start from (row-sparse grads', from the host; zeros otherwise)."""
    partial: object
    bad: object
    seg_chunks: object
    extra_sumsq: object
    extra_bad: object


class ClipTables(NamedTuple):
    """The norm clippers: clip_table[k] = (kind, global group index), clip_norm[k] in T,
    group_skip[gi] = auto_skip_clip of global group gi."""
    clip_table: object
    clip_norm: object
    group_skip: object


def make_sumsq(load):
    """The sumsq_partials kernel reading grads through ``load(grads, seg, i, store)``."""
    @cuda.jit
    def sumsq_partials(grads, chunks, flags, clip_table, all_active, partial, bad, store):
        """partial[c] = sum of g^2 over chunk c (a fixed tree), bad[c] = any non-finite g.

        A chunk counts when its segment is active and norm-clipped, or every active chunk when
        ``all_active`` (the non-finite check of skip_nonfinite needs every grad). ``store`` is
        for ``load``: the 16-bit format of the mixed-precision kernels, the segment offsets of
        the borrowed ones (borrow.py), else unused. Sums in partial's dtype."""
        acc = cuda.shared.array(NTHREADS, partial.dtype)
        flag = cuda.shared.array(NTHREADS, numba.int32)
        t = cuda.threadIdx.x
        c = cuda.blockIdx.x
        while c < chunks.shape[0]:
            seg = chunks[c, 0]
            wanted = flags[seg, ACTIVE] == 1 and (all_active
                                                  or clip_table[seg, 0] != NO_NORM_CLIP)
            s = partial.dtype.type(0)
            nonfinite = 0
            if wanted:  # flat indices of runtime.Index's type (see there)
                i, end, step = Index(chunks[c, 1]) + Index(t), Index(chunks[c, 2]), Index(NTHREADS)
                while i < end:
                    g = load(grads, seg, i, store)
                    s += g * g
                    if not math.isfinite(g):
                        nonfinite = 1
                    i += step
            acc[t] = s
            flag[t] = nonfinite
            cuda.syncthreads()
            width = NTHREADS // 2
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


@cuda.jit(device=True, inline=True)
def _or_reduce(flag, t):
    width = NTHREADS // 2
    while width > 0:
        if t < width:
            flag[t] = flag[t] | flag[t + width]
        cuda.syncthreads()
        width //= 2


@cuda.jit(device=True, inline=True)
def _sum_reduce(acc, t):
    width = NTHREADS // 2
    while width > 0:
        if t < width:
            acc[t] = acc[t] + acc[t + width]
        cuda.syncthreads()
        width //= 2


@cuda.jit
def finish_clip(norms, clips, hyper, flags, seg_sumsq, skip, skip_nonfinite, first, n_groups):
    """One block: per-segment sums (chunk order), clip scales into ``hyper``, the skip flag.

    norms: NormInputs; clips: ClipTables; seg_sumsq: per-segment sums (out); skip: [this step
    skipped, count]. With ``skip_nonfinite``, skip[0] (read by update()) becomes "a grad is
    inf/nan": assigned by the step's ``first`` bucket, OR-ed by the rest. n_groups: how many
    global-norm groups. Formulas: kernels.reference.norm_scale / global_norm_scale."""
    T = hyper.dtype.type
    t = cuda.threadIdx.x
    n = norms.seg_chunks.shape[0] - 1
    acc = cuda.shared.array(NTHREADS, seg_sumsq.dtype)
    flag = cuda.shared.array(NTHREADS, numba.int32)
    nonfinite = 0
    k = t
    while k < n:
        s = norms.extra_sumsq[k]
        nonfinite |= norms.extra_bad[k]
        for c in range(norms.seg_chunks[k], norms.seg_chunks[k + 1]):
            s += norms.partial[c]
            nonfinite |= norms.bad[c]
        seg_sumsq[k] = s
        if flags[k, ACTIVE] != 0 and clips.clip_table[k, 0] == BY_NORM:
            norm = math.sqrt(s)
            max_norm = clips.clip_norm[k]
            tiny = T(1e-6) if norm <= T(1e-30) else T(0)
            apply = not (norm <= max_norm)
            hyper[k, GRAD_SCALE] = max_norm / (norm + tiny) if apply else T(1)
            flags[k, SCALE_GRAD] = 1 if apply else 0
        k += NTHREADS
    flag[t] = nonfinite
    cuda.syncthreads()
    _or_reduce(flag, t)
    if t == 0 and skip_nonfinite:
        skip[0] = 1 if flag[0] != 0 else (0 if first else skip[0])
    for gi in range(n_groups):
        s = T(0)
        k = t
        while k < n:
            if flags[k, ACTIVE] != 0 and clips.clip_table[k, 0] == BY_GLOBAL_NORM \
                    and clips.clip_table[k, 1] == gi:
                s += seg_sumsq[k]
            k += NTHREADS
        acc[t] = s
        cuda.syncthreads()
        _sum_reduce(acc, t)
        gnorm = math.sqrt(acc[0])
        k = t
        while k < n:
            if flags[k, ACTIVE] != 0 and clips.clip_table[k, 0] == BY_GLOBAL_NORM \
                    and clips.clip_table[k, 1] == gi:
                max_norm = clips.clip_norm[k]
                if clips.group_skip[gi] == 0:  # max_norm / maximum(gnorm, max_norm), NaN kept
                    big = gnorm > max_norm or gnorm != gnorm
                    hyper[k, GRAD_SCALE] = max_norm / (gnorm if big else max_norm)
                    flags[k, SCALE_GRAD] = 1
                else:
                    apply = gnorm > max_norm
                    hyper[k, GRAD_SCALE] = max_norm / gnorm if apply else T(1)
                    flags[k, SCALE_GRAD] = 1 if apply else 0
            k += NTHREADS
        cuda.syncthreads()
