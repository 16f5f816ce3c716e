"""numba.cuda kernels for mixed precision: float16/bfloat16 params and grads, float32 masters.

The update is kernels/cuda/dense.py's own (built by its ``make_update``: the same float32 arithmetic,
four elements per thread and pass) on the master weights, with the 16-bit grads widened on
load and the 16-bit params written, rounded to nearest even, next to each master, by
kernels/halfmath.py's exact conversions (compiled here as device functions; the simulator runs
them as Python). lowbit.py's updates are built the same way, for low-bit state on masters.
16-bit arrays are passed as uint16 bits, ``store`` says which format
(halfbits.FLOAT16 / BFLOAT16). The norm reduction is kernels/cuda/dense.py's, reading the grads
through ``widen``.
"""
from types import SimpleNamespace

import numpy as np
from numba import cuda

from . import dense as K
from . import lowbit as KL
from .. import halfmath


widen = cuda.jit(device=True, inline=True)(halfmath.widen)
narrow = cuda.jit(device=True, inline=True)(halfmath.narrow)


@cuda.jit(device=True, inline=True)
def load(grads, seg, i, store):
    """A 16-bit grad (uint16 bits) widened to float32; ``store``: its format."""
    return np.float32(widen(grads[i], store))


@cuda.jit(device=True, inline=True)
def load_grad(grads, seg, i, where):
    return load(grads, seg, i, where[1])


@cuda.jit(device=True, inline=True)
def store_both(master, seg, i, where, value):
    """The float32 master, and the 16-bit param rounded to nearest even."""
    master[i] = value
    where[0][i] = narrow(value, where[1])


# update(master, grad bits, moment, inf_norm, ..., steps, (param bits, format)): the plain
# kernel's code (four elements per thread and pass) on the master weights
update = K.make_update(K.flat_load, load_grad, store_both)
sumsq_partials = K.make_sumsq(load)


@cuda.jit
def widen_into(bits, out, store):
    """out[i] = the float32 value of bits[i] (a master weight from its 16-bit param)."""
    i = cuda.grid(1)
    while i < bits.shape[0]:
        out[i] = widen(bits[i], store)
        i += cuda.gridsize(1)


_KERNELS = SimpleNamespace(update=update, sumsq_partials=sumsq_partials, widen_into=widen_into,
                           bf16_update=KL.make_bf16_update(K.flat_load, load_grad, store_both),
                           int8_update=KL.make_int8_update(K.flat_load, load_grad, store_both),
                           threads=K.NTHREADS)


def kernels():
    """The mixed-precision kernels (float32 compute), by name."""
    return _KERNELS


def widen_on_device(bits, out, store):
    """A master segment from its 16-bit segment, on the device (both 1-D device arrays)."""
    if bits.shape[0]:
        k = kernels()
        k.widen_into[K.grid_for((bits.shape[0] + k.threads - 1) // k.threads), k.threads](
            bits, out, store)
