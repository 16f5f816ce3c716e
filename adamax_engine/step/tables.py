"""The per-step columns of the segment table, filled in one compiled call per bucket.

Host-side bookkeeping shared by every backend (the CUDA backend uploads the table it fills).
In numpy this was ~8 small array operations per step, ~0.2 ms for 2000 tensors, which is 5% of
a 4M-parameter step; compiled it is a few microseconds. The arithmetic and its dtype rules are
the ones of kernels.reference.group_step (tests compare every path with that oracle).
"""
import numpy as np
from numba import njit

from ..kernels.layout import ACTIVE, GRAD_SCALE, LR_T, PADDLE, SCALE_GRAD


@njit(cache=True, error_model="numpy")
def begin_step(lr, flavor, active, has_state, beta1_pow, beta1_T, beta1_py, steps, lr_mult,
               hyper, flags):
    """Start accumulators of fresh segments and fill the ACTIVE, SCALE_GRAD and LR_T columns.

    paddle: lr_t = (T(lr) * T(lr_mult)) / (1 - beta1_pow), all in T (x * 1 is exact), and a new
    accumulator starts with beta1_pow = T(beta1). Other flavors: lr * mult / (1 - beta1**step) in
    float64, rounded to T once. Returns whether any segment became active or inactive or
    started its accumulators: only then does a device copy of the tables need refreshing.
    """
    T = hyper.dtype.type
    lr_T = T(lr)
    changed = False
    for k in range(active.shape[0]):
        now = 1 if active[k] else 0
        changed = changed or flags[k, ACTIVE] != now
        flags[k, ACTIVE] = now
        flags[k, SCALE_GRAD] = 0
        if not active[k]:
            continue
        if not has_state[k]:
            beta1_pow[k] = beta1_T[k]
            has_state[k] = True
            changed = True
        if flavor == PADDLE:
            hyper[k, LR_T] = (lr_T * lr_mult[k]) / (T(1) - beta1_pow[k])
        else:
            correction = 1.0 - beta1_py[k] ** float(steps[k] + 1)
            hyper[k, LR_T] = T(lr * float(lr_mult[k]) / correction)
    return changed


@njit(cache=True)
def end_step(active, beta1_pow, beta1_T, steps):
    """Advance beta1_pow (in T) and the step count of the segments that were updated."""
    for k in range(active.shape[0]):
        if active[k]:
            beta1_pow[k] = beta1_pow[k] * beta1_T[k]
            steps[k] += 1


@njit(cache=True, error_model="numpy")
def global_norm_scales(sumsq, members, clip_norm, auto_skip, hyper, flags):
    """ClipGradByGlobalNorm over one bucket, after the reduction: the global norm of the member
    segments and their GRAD_SCALE/SCALE_GRAD columns, in one call instead of a dozen numpy
    operations (they ran from a cold cache right after the reduction pass: ~0.15 ms at 2000
    tensors). Same arithmetic as clip.ClipGradByGlobalNorm.norm_scales: the squares summed
    sequentially in segment order in the bucket dtype T, sqrt in T, the scale in T."""
    T = hyper.dtype.type
    total = T(0)
    for k in range(sumsq.shape[0]):
        if members[k]:
            total = total + sumsq[k]
    gnorm = np.sqrt(total)
    max_norm = T(clip_norm)
    if not auto_skip:
        apply = True
        if gnorm != gnorm:  # NaN propagates, as np.maximum does
            scale = gnorm
        else:
            scale = max_norm / (gnorm if gnorm > max_norm else max_norm)
    else:
        apply = gnorm > max_norm
        scale = max_norm / gnorm if apply else max_norm
    for k in range(sumsq.shape[0]):
        if members[k]:
            hyper[k, GRAD_SCALE] = scale
            flags[k, SCALE_GRAD] = 1 if apply else 0


def begin(bucket, lr, flavor):
    """``begin_step`` over a bucket's tables; True when a device copy must be refreshed."""
    b = bucket
    return begin_step(lr, flavor, b.active, b.has_state, b.beta1_pow, b.beta1_T, b.beta1_py,
                      b.steps, b.lr_mult, b.hyper, b.flags)


def end(bucket):
    """``end_step`` over a bucket's tables."""
    end_step(bucket.active, bucket.beta1_pow, bucket.beta1_T, bucket.steps)
