"""numba.cuda twins of kernels/rows.py: row-sparse steps on device parameters.

Same arguments and meaning (param/moment/inf_norm viewed as (rows, row_len) device arrays,
``hist`` the hyper rows of the updates base.., ``last`` per-row last update), one thread per
(touched row, column) element; ``last`` is written by a second launch so that no thread reads
a row's ``last`` after another thread of that row changed it. The arithmetic is kernels/cuda/dense.py's
``element`` (so the GPU's dense and sparse results agree); a replayed step has a zero grad and
no grad scale, as in kernels/rows.py.
"""
from types import SimpleNamespace

import numpy as np
from numba import cuda

from . import dense as K
from ..layout import (BETA1, BETA2, CLIP_MAX, CLIP_MIN, CLIP_VALUE, DECAY, DECAY_MODE, EPS,
                     GRAD_SCALE, LR_T, ONE_MINUS_BETA1, SCALE_GRAD)

@cuda.jit(device=True, inline=True)
def row_scalars(h, f, scale_grad, flavor):
    """dense.SegmentScalars from a hyper row ``h`` (its LR_T included) and a flag row ``f``."""
    return K.SegmentScalars(h[LR_T], h[BETA1], h[ONE_MINUS_BETA1], h[BETA2], h[EPS], h[DECAY],
                            h[CLIP_MIN], h[CLIP_MAX], h[GRAD_SCALE], f[CLIP_VALUE] != 0,
                            scale_grad, f[DECAY_MODE], flavor)


@cuda.jit(device=True, inline=True)
def replay(p, m, u, first, upto, hist, base, flags, flavor):
    """Updates first..upto with a zero grad and no grad scale (what a dense step does)."""
    zero = hist.dtype.type(0)
    for s in range(first, upto + 1):
        p, m, u = K.element(p, zero, m, u, row_scalars(hist[s - base], flags, False, flavor))
    return p, m, u


@cuda.jit
def rows_update(param, moment, inf_norm, rows, values, last, hist, base, now, flags, cur_h,
                cur_f, flavor, replay_missed):
    """Replays use ``hist`` and the static ``flags``; this step uses ``cur_h``/``cur_f``
    (the device table rows: they hold the clip scale finish_clip computed there)."""
    cols = param.shape[1]
    i = cuda.grid(1)
    while i < rows.shape[0] * cols:
        k, j = i // cols, i % cols
        r = rows[k]
        p, m, u = param[r, j], moment[r, j], inf_norm[r, j]
        if replay_missed:
            p, m, u = replay(p, m, u, last[r] + 1, now - 1, hist, base, flags, flavor)
        p, m, u = K.element(p, values[k, j], m, u,
                            row_scalars(cur_h, cur_f, cur_f[SCALE_GRAD] != 0, flavor))
        param[r, j], moment[r, j], inf_norm[r, j] = p, m, u
        i += cuda.gridsize(1)


@cuda.jit
def rows_catch_up(param, moment, inf_norm, rows, last, hist, base, upto, flags, flavor):
    cols = param.shape[1]
    i = cuda.grid(1)
    while i < rows.shape[0] * cols:
        k, j = i // cols, i % cols
        r = rows[k]
        p, m, u = replay(param[r, j], moment[r, j], inf_norm[r, j], last[r] + 1, upto, hist,
                         base, flags, flavor)
        param[r, j], moment[r, j], inf_norm[r, j] = p, m, u
        i += cuda.gridsize(1)


@cuda.jit
def raise_rows(last, rows, upto):
    """last[r] = max(last[r], upto) for r in rows (after the element kernels read it)."""
    k = cuda.grid(1)
    while k < rows.shape[0]:
        if last[rows[k]] < upto:
            last[rows[k]] = upto
        k += cuda.gridsize(1)


_KERNELS = SimpleNamespace(rows_update=rows_update, rows_catch_up=rows_catch_up,
                           raise_rows=raise_rows, threads=K.NTHREADS)


def kernels(dtype=None):
    """The row-sparse kernels, by name (one object for every dtype, as in dense.kernels)."""
    return _KERNELS


def _grid(n, k):
    return K.grid_for(max(1, (n + k.threads - 1) // k.threads)), k.threads


def rows_update(param, moment, inf_norm, rows, values, last, hist, base, now, flags, flavor,
                replay, cur=None):
    """kernels.sparse.rows_update on the device (rows, values, hist, flags: host arrays;
    ``cur``: this step's (hyper row, flag row) on the device, else taken from hist/flags)."""
    from numba import cuda as c
    k = kernels(param.dtype)
    d_rows = c.to_device(rows)
    n = rows.shape[0] * param.shape[1]
    if n:
        d_flags = c.to_device(np.ascontiguousarray(flags))
        cur_h, cur_f = cur if cur is not None else (c.to_device(hist[now - base]), d_flags)
        k.rows_update[_grid(n, k)](param, moment, inf_norm, d_rows, c.to_device(values), last,
                                   c.to_device(hist[:now - base + 1]), base, now, d_flags,
                                   cur_h, cur_f, flavor, replay)
        k.raise_rows[_grid(rows.shape[0], k)](last, d_rows, now)


def rows_catch_up(param, moment, inf_norm, rows, last, hist, base, upto, flags, flavor):
    from numba import cuda as c
    k = kernels(param.dtype)
    n = rows.shape[0] * param.shape[1]
    if n:
        d_rows = c.to_device(rows)
        k.rows_catch_up[_grid(n, k)](param, moment, inf_norm, d_rows, last,
                                     c.to_device(hist[:upto - base + 1]), base, upto,
                                     c.to_device(np.ascontiguousarray(flags)), flavor)
        k.raise_rows[_grid(rows.shape[0], k)](last, d_rows, upto)


def catch_up(param, moment, inf_norm, last, hist, base, upto, flags, flavor):
    """Every row (opt.flush())."""
    rows_catch_up(param, moment, inf_norm, np.arange(param.shape[0], dtype=np.int64), last, hist,
                  base, upto, flags, flavor)
