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
