"""Row-sparse Adamax kernels (numba, CPU): update only the rows a gradient touches.

A row-sparse parameter is viewed as 2-D (rows, row_len); its moment and inf-norm likewise.
``hist[s - base]`` is the hyper-table row (lr_t, betas, eps, decay, clip bounds, grad scale) of
the parameter's step ``s``; ``last[r]`` is the last step applied to row r (-1: none).

Exact mode (``replay=True``, lazy_mode=False): before row r takes step ``now`` with its grad, the
steps last[r]+1 .. now-1 that it missed are replayed with a zero grad, with the same
kernels.cpu.update_slices arithmetic and each step's own lr_t. That is exactly what a dense
step with a zero grad row does, so the row ends bit-identical to the dense run; a row that is
never touched is caught up by ``catch_up`` (opt.flush()). The moments alone have closed forms
(m decays by beta1^k; u follows u -> beta2*u + eps with a zero grad), but the parameter's
increments sum_k lr_t_k * m_k / u_k do not, so exactness needs the replay: O(missed steps) per
touched row, paid only for rows that are touched again (or flushed).
Lazy mode (``replay=False``): touched rows take this step, other rows do nothing at all.

Cached on disk like kernels.cpu's: a cached rows kernel once loaded one ulp off, because
numba gave another flavor's loop the same symbol in the loading process; the loops now carry
their specialisation in their names (kernels/specialise.py).
"""
import numpy as np
from numba import njit, prange

from .cpu import update_slices
from .layout import SCALE_GRAD


@njit(parallel=True, cache=True)
def rows_update(param, moment, inf_norm, rows, values, last, hist, base, now, flags, flavor,
                replay):
    """Step ``now`` for each (unique) row in ``rows`` with ``values[i]`` as its grad."""
    zero = np.zeros(param.shape[1], param.dtype)
    quiet = flags.copy()
    quiet[SCALE_GRAD] = 0  # a zero grad times any finite scale is the same zero
    for i in prange(rows.shape[0]):
        r = rows[i]
        if replay:
            for s in range(last[r] + 1, now):
                update_slices(param[r], zero, moment[r], inf_norm[r], hist[s - base], quiet,
                               flavor)
        update_slices(param[r], values[i], moment[r], inf_norm[r], hist[now - base], flags,
                       flavor)
        last[r] = now


@njit(parallel=True, cache=True)
def rows_catch_up(param, moment, inf_norm, rows, last, hist, base, upto, flags, flavor):
    """catch_up for the (unique) rows ``rows`` only: before a forward pass reads them."""
    zero = np.zeros(param.shape[1], param.dtype)
    quiet = flags.copy()
    quiet[SCALE_GRAD] = 0
    for i in prange(rows.shape[0]):
        r = rows[i]
        for s in range(last[r] + 1, upto + 1):
            update_slices(param[r], zero, moment[r], inf_norm[r], hist[s - base], quiet, flavor)
        if last[r] < upto:
            last[r] = upto


@njit(parallel=True, cache=True)
def catch_up(param, moment, inf_norm, last, hist, base, upto, flags, flavor):
    """Replay, with zero grads, every step up to ``upto`` that a row missed (exact mode)."""
    zero = np.zeros(param.shape[1], param.dtype)
    quiet = flags.copy()
    quiet[SCALE_GRAD] = 0
    for r in prange(param.shape[0]):
        for s in range(last[r] + 1, upto + 1):
            update_slices(param[r], zero, moment[r], inf_norm[r], hist[s - base], quiet, flavor)
        if last[r] < upto:
            last[r] = upto
