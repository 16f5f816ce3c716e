"""The optax front's step as an XLA FFI handler: a numba ``cfunc`` that XLA calls on its own
buffers, and the fused kernel behind it. adamax_engine/optax.py registers the handler's
address with jax; this module imports no jax.

Why: ``jax.pure_callback`` copies every operand out of XLA's buffers and every result back
(~106 ms for one 92 MB array on the 2-core machine: 10x the step). Here XLA hands over its
buffers as they are and the step runs in place (input/output aliasing; XLA copies an operand
first only when the caller still holds it).

The call (every buffer C-contiguous, XLA's default layout; T the state dtype):
  operands  0: [lr, b1, b2, eps], float32 (or float64 under jax_enable_x64)
            1: count, int32: the steps taken before this one
            2: chunks, int32 (n_chunks, 3): rows (leaf, start, end), at most layout.CHUNK
               elements each, fixed when the call is traced
            3 .. 3+3n: the n grads, then the n ``mu``, then the n ``nu`` (T)
  results   the n updates, then the n new ``mu`` and the n new ``nu``, each aliased to its
            operand (the grad's buffer receives the update): the step runs in place
The call frame is read by the offsets of XLA's C API (xla/ffi/api/c_api.h, API 0.x, 64-bit).
"""
import functools

import numba
import numpy as np
from numba import njit, prange, types

from .cpu import adamax_element, as_pointer
from .layout import KERAS, PADDLE, TORCH
from .specialise import specialised

#: XLA_FFI_Error* handler(XLA_FFI_CallFrame*); a null pointer (0) means success
SIGNATURE = types.int64(types.CPointer(types.int64))
# XLA_FFI_CallFrame in 8-byte words: extension_start, stage, args.{size, args}, rets.{size, rets}
_EXTENSION, _STAGE, _N_ARGS, _ARGS, _N_RETS, _RETS, _FRAME_WORDS = 1, 4, 7, 9, 12, 14, 15
_DATA, _DIMS, _DTYPE = 3, 5, 2  # XLA_FFI_Buffer: data, dims (int64*), dtype (an int)
_EXECUTE, _METADATA, _F64 = 3, 1, 12  # ExecutionStage, Extension_Type, DataType codes
_LOW32 = 0xFFFFFFFF
_API_MAJOR, _API_MINOR = 0, 1  # what the handler is written against
_I32, _I64, _F32, _F64_LIKE = (np.empty(0, np.int32), np.empty(0, np.int64),
                               np.empty(0, np.float32), np.empty(0, np.float64))


@njit(inline="always")
def _words(address, n):
    return numba.carray(as_pointer(address, _I64), (n,))


@njit(inline="always")
def _data(buffer):
    """An XLA_FFI_Buffer*'s data address."""
    return _words(buffer, 6)[_DATA]


@njit(inline="always")
def _leaf(addresses, leaf, start, end, like):
    return numba.carray(as_pointer(addresses[leaf] + start * like.itemsize, like), (end - start,))


@njit(cache=True, error_model="numpy")
def front_hyper(lr, b1, b2, eps, count, flavor, like):
    """(lr_t, b1, 1 - b1, b2, eps) in T for step ``count + 1``, as the engine's begin_step
    makes them for one segment with lr multiplier 1. paddle: its betas and eps pass through
    float32; beta1_pow = T(b1) ** t (from the count: the front's state has no beta1_pow) and
    lr_t = T(lr) / (1 - beta1_pow), in T. Others: lr / (1 - b1 ** t) in float64, rounded
    to T once."""
    T = like.dtype.type
    if flavor == PADDLE:
        tb1, tb2, teps = T(np.float32(b1)), T(np.float32(b2)), T(np.float32(eps))
        beta1_pow = np.power(tb1, T(count + 1))
        lr_t = T(lr) / (T(1) - beta1_pow)
    else:
        tb1, tb2, teps = T(b1), T(b2), T(eps)
        lr_t = T(lr / (1.0 - b1 ** float(count + 1)))
    return lr_t, tb1, T(1) - tb1, tb2, teps


@functools.cache
def _make_loop(flavor):
    """One chunk of one leaf, in place: ``x`` holds the grad and receives the update. The
    engine's element code on a zero parameter, so what it writes as the parameter is the
    update, -lr_t * m / u (the grad times 1, as the engine's fast loop: the same bits)."""

    @specialised(error_model="numpy")
    def loop(x, m, u, lr_t, b1, omb1, b2, eps):
        zero, one = x.dtype.type(0), x.dtype.type(1)
        for j in range(x.shape[0]):
            p, mj, uj = adamax_element(zero, x[j] * one, m[j], u[j], lr_t, b1, omb1, b2, eps,
                                       flavor)
            m[j] = mj
            u[j] = uj
            x[j] = p
    return loop


@functools.cache
def _make_kernel(flavor):
    """Every chunk of every leaf in parallel; ``addresses``: int64 (3, n) rows of the n
    leaves' results, updates, mu and nu, which XLA hands over holding the grads, mu and nu
    (each aliases its operand). In place, not from operand to result: two addresses of one
    buffer would make LLVM's overlap check pick the scalar loop."""

    @specialised({"loop": _make_loop(flavor)}, parallel=True, error_model="numpy", cache=True)
    def kernel(addresses, chunks, lr_t, b1, omb1, b2, eps, like):
        for c in prange(chunks.shape[0]):
            leaf, start, end = np.int64(chunks[c, 0]), np.int64(chunks[c, 1]), \
                np.int64(chunks[c, 2])
            loop(_leaf(addresses[0], leaf, start, end, like),
                 _leaf(addresses[1], leaf, start, end, like),
                 _leaf(addresses[2], leaf, start, end, like), lr_t, b1, omb1, b2, eps)
    return kernel


def element_flavor(flavor):
    """The flavor whose element code a flavor runs (optax places eps as torch does)."""
    return flavor if flavor in (PADDLE, KERAS) else TORCH


@functools.cache
def handler(flavor, state_dtype):
    """The compiled handler (a numba ``cfunc``: ``.address``, ``.ctypes``) for one flavor and
    state dtype (np.float32 or np.float64), loaded from numba's cache when there."""
    step = _make_kernel(element_flavor(flavor))
    like, zero = np.empty(0, state_dtype), state_dtype(0)
    # load the kernel (and numba's thread pool) in this process now: a handler loaded from
    # numba's cache carries the kernel's code but starts no threads (it crashed)
    step(np.zeros((3, 0), np.int64), np.zeros((0, 3), np.int32), zero, zero, zero, zero, zero,
         like)
    calls = {"kernel": step}  # a global of the handler, not a closure cell (the cache key)

    @specialised(calls, compile_with=lambda **o: numba.cfunc(SIGNATURE, **o), cache=True,
                 error_model="numpy")
    def xla_adamax(frame):
        f = numba.carray(frame, (_FRAME_WORDS,))
        if f[_EXTENSION] != 0:  # XLA's first call asks which API version the handler speaks
            extension = _words(f[_EXTENSION], 4)
            if extension[1] & _LOW32 == _METADATA:
                version = numba.carray(as_pointer(extension[3], _I32), (9,))
                version[6], version[7], version[8] = _API_MAJOR, _API_MINOR, 0  # no traits
                return 0
        if f[_STAGE] & _LOW32 != _EXECUTE:
            return 0
        args, rets = _words(f[_ARGS], f[_N_ARGS]), _words(f[_RETS], f[_N_RETS])
        n = f[_N_RETS] // 3
        like = np.empty(0, state_dtype)
        if _words(args[0], 6)[_DTYPE] & _LOW32 == _F64:
            s = numba.carray(as_pointer(_data(args[0]), _F64_LIKE), (4,))
            lr, b1, b2, eps = s[0], s[1], s[2], s[3]
        else:
            s32 = numba.carray(as_pointer(_data(args[0]), _F32), (4,))
            lr, b1, b2, eps = (np.float64(s32[0]), np.float64(s32[1]), np.float64(s32[2]),
                               np.float64(s32[3]))
        count = numba.carray(as_pointer(_data(args[1]), _I32), (1,))[0]
        n_chunks = _words(_words(args[2], 6)[_DIMS], 1)[0]
        chunks = numba.carray(as_pointer(_data(args[2]), _I32), (n_chunks, 3))
        addresses = np.empty((3, n), np.int64)
        for k in range(3):
            for i in range(n):
                addresses[k, i] = _data(rets[k * n + i])
        lr_t, tb1, omb1, tb2, teps = front_hyper(lr, b1, b2, eps, count, flavor, like)
        kernel(addresses, chunks, lr_t, tb1, omb1, tb2, teps, like)
        return 0
    return xla_adamax


def chunk_rows(sizes, chunk):
    """int32 (n_chunks, 3) rows (leaf, start, end) covering leaves of ``sizes`` elements."""
    rows = [(leaf, lo, min(lo + chunk, size)) for leaf, size in enumerate(sizes)
            for lo in range(0, size, chunk)]
    return np.array(rows, np.int32).reshape(-1, 3)
