"""numba.cuda kernels for borrow mode on the GPU: params and grads stay in the caller's memory.

kernels/cuda/dense.py's ``update`` and ``sumsq_partials`` and lowbit.py's two updates (the
same code, built by their factories) with params and grads read and written through a device
table of addresses, one per segment: element i of segment ``seg`` (flat index i, as in the
state buffers) is at ``addresses[seg]`` + (i - ``offsets[seg]``) elements. So a model of many
separately allocated tensors (torch or cupy arrays the engine cannot re-point) is still one
launch per bucket, like kernels.cpu.borrowed_update on the host.

Raw addresses do not exist in numba's simulator: there step/cuda.py stages the borrowed arrays
through flat buffers instead (the plain kernels, so the same numbers); these kernels are
compiled for a real GPU by scripts/ptx_check.py and run by the GPU tests.
"""
import functools
from types import SimpleNamespace

import numba
import numpy as np
from numba import cuda, types
from numba.extending import intrinsic

from . import dense as K
from . import lowbit as KL
from .runtime import Index


@intrinsic
def _pointer(typingctx, address, like):
    """An integer address as a pointer to ``like``'s (a scalar's) type."""
    if not isinstance(address, types.Integer) or not isinstance(like, types.Float):
        return None
    sig = types.CPointer(like)(address, like)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))
    return sig, codegen


@functools.lru_cache(maxsize=None)
def kernels(dtype):
    """The borrow-mode update and reduction for one dtype (float32/float64): the address tables
    hold plain integers, so the element type of the pointers is fixed here, per dtype."""
    zero = numba.from_dtype(np.dtype(dtype))(0)

    @cuda.jit(device=True, inline=True)
    def load(addresses, seg, i, offsets):
        return _pointer(addresses[seg], zero)[Index(i) - Index(offsets[seg])]

    @cuda.jit(device=True, inline=True)
    def store(addresses, seg, i, offsets, value):
        _pointer(addresses[seg], zero)[Index(i) - Index(offsets[seg])] = value

    return SimpleNamespace(update=K.make_update(load, load, store),
                           sumsq_partials=K.make_sumsq(load),
                           bf16_update=KL.make_bf16_update(load, load, store),
                           int8_update=KL.make_int8_update(load, load, store),
                           threads=K.NTHREADS)
