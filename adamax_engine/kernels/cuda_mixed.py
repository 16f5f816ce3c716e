"""numba.cuda kernels for mixed precision: float16/bfloat16 params and grads, float32 masters.

The same step as kernels/cuda.py's ``update`` (its ``element`` and ``step_lr`` device functions,
so the same float32 arithmetic) on the master weights, with the 16-bit grads widened and the
16-bit params written rounded to nearest even by kernels/halfmath.py's exact conversions
(compiled here as device functions; the simulator runs them as Python). 16-bit arrays are passed
as uint16 bits, ``store`` says which format (halfbits.FLOAT16 / BFLOAT16). The norm reduction is
kernels/cuda.py's, reading the grads through ``widen``. One element per thread and pass (no
4-wide unrolling yet: the plain kernel's ILP trick is not measured here).
"""
import functools
from types import SimpleNamespace

import numpy as np

from . import cuda as K
from . import halfmath
from .layout import ACTIVE


cuda = None  # numba.cuda, bound on first use: a module global, which the simulator swaps


@functools.lru_cache(maxsize=None)
def kernels():
    """The compiled mixed-precision kernels (float32 compute), built once per process."""
    global cuda
    base = K.kernels(np.float32)
    cuda = K.cuda
    element, step_lr, segment_scalars = base.element, base.step_lr, base.segment_scalars
    widen = cuda.jit(device=True, inline=True)(halfmath.widen)
    narrow = cuda.jit(device=True, inline=True)(halfmath.narrow)

    @cuda.jit(device=True, inline=True)
    def load(grads, seg, i, store):
        return np.float32(widen(grads[i], store))

    @cuda.jit
    def update(params, grads, master, moment, inf_norm, chunks, hyper, flags, flavor, skip, lr,
               lr_mult, beta1_pow, beta1_f64, steps, store):
        """kernels.cuda.update with 16-bit params/grads (uint16 bits) and float32 ``master``."""
        if skip[0] != 0:
            return
        c = cuda.blockIdx.x
        while c < chunks.shape[0]:
            seg = chunks[c, 0]
            if flags[seg, ACTIVE] == 1:
                lr_t = step_lr(lr, seg, flavor, lr_mult, beta1_pow, beta1_f64, steps)
                (b1, omb1, b2, eps, decay, lo, hi, scale, clip_value, scale_grad,
                 decay_mode) = segment_scalars(hyper, flags, seg)
                i = chunks[c, 1] + cuda.threadIdx.x
                while i < chunks[c, 2]:
                    p, m, u = element(master[i], load(grads, seg, i, store), moment[i], inf_norm[i],
                                      lr_t, b1, omb1, b2, eps, lo, hi, scale, decay, clip_value,
                                      scale_grad, decay_mode, flavor)
                    master[i], moment[i], inf_norm[i] = p, m, u
                    params[i] = narrow(p, store)
                    i += cuda.blockDim.x
            c += cuda.gridDim.x

    @cuda.jit
    def widen_into(bits, out, store):
        """out[i] = the float32 value of bits[i] (a master weight from its 16-bit param)."""
        i = cuda.grid(1)
        while i < bits.shape[0]:
            out[i] = widen(bits[i], store)
            i += cuda.gridsize(1)

    return SimpleNamespace(update=update, sumsq_partials=base.make_sumsq(load),
                           widen_into=widen_into, threads=base.threads)


def widen_on_device(bits, out, store):
    """A master segment from its 16-bit segment, on the device (both 1-D device arrays)."""
    if bits.shape[0]:
        k = kernels()
        k.widen_into[K.grid_for((bits.shape[0] + k.threads - 1) // k.threads), k.threads](
            bits, out, store)
