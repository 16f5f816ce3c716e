"""The segment table and chunk table shared by every kernel (reference, cpu, cuda).

A bucket is one contiguous flat buffer per role (param, grad, moment, inf_norm) of one dtype.
Each tensor is a *segment* (offset, length) of it. Like apex's multi_tensor_apply, the work is
cut into *chunks* of at most CHUNK elements that never straddle a segment, so one kernel call
covers every tensor of a model and per-segment scalars are looked up once per chunk.

Chunk boundaries also fix the summation order of the norm reduction (see SUMSQ_LANES), which is
why the reduction result does not depend on the thread count.
"""
from typing import NamedTuple

import numpy as np

#: elements per chunk; also the block size of the deterministic sum-of-squares reduction.
CHUNK = 16384
#: leaves per XLA FFI call of the optax front: XLA's compile time grows faster than linearly
#: in one call's aliased operands (2000 leaves in one call: 393 s; 1000: 67 s, and 22 s in
#: calls of 100 or 25, where optax.adamax takes 31 s)
FFI_LEAVES = 64
#: every segment starts at a multiple of this many elements (128 B in fp32): a warp's accesses
#: then fall on whole cache lines. Unaligned starts cost a GPU about a third of its bandwidth
#: (H200, 64 tensors of 15.6M fp32: 0.55 of a copy's bandwidth; 64 x 4.19M aligned: 0.82).
SEGMENT_ALIGN = 32
#: the reduction keeps this many interleaved accumulators per chunk (element k of a chunk goes
#: to lane k % SUMSQ_LANES), combined pairwise: ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)).
SUMSQ_LANES = 8

# flavors: where epsilon goes (see optimizer.Adamax docstring)
PADDLE, TORCH, OPTAX, KERAS = 0, 1, 2, 3
FLAVORS = {"paddle": PADDLE, "torch": TORCH, "optax": OPTAX, "keras": KERAS}

# columns of the per-segment hyper-parameter table (dtype of the bucket)
LR_T, BETA1, ONE_MINUS_BETA1, BETA2, EPS, DECAY, GRAD_SCALE, CLIP_MIN, CLIP_MAX = range(9)
N_HYPER = 9
# columns of the per-segment flag table (int64)
ACTIVE, DECAY_MODE, CLIP_VALUE, SCALE_GRAD = range(4)
#: ACTIVE on the GPU for a row-sparse segment: stepped (beta1_pow, norms from ``extra``), but the
#: dense update and reduction kernels skip it (kernels/cuda/rows.py updates its rows)
ACTIVE_SPARSE = 2
N_FLAGS = 4
# DECAY_MODE values
NO_DECAY, L2_DECAY, L1_DECAY = 0, 1, 2


def segment_offsets(lengths, align=SEGMENT_ALIGN):
    """(offsets, total): segments laid out in order, each start rounded up to ``align``.

    The gaps hold zeros and belong to no segment and no chunk, so no kernel ever touches them.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    padded = (lengths + align - 1) // align * align
    offsets = np.concatenate([[0], np.cumsum(padded)[:-1]]).astype(np.int64)
    total = int(offsets[-1] + lengths[-1]) if len(lengths) else 0
    return offsets, total


def build_chunk_table(offsets, lengths, chunk=CHUNK):
    """Rows (segment, start, end) with absolute [start, end) indices into the flat buffer.

    Segments of length 0 get no chunk. Built once per registry layout, not per step.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if chunk <= 0:
        raise ValueError(f"chunk: expected a positive int, got {chunk}")
    counts = (lengths + chunk - 1) // chunk
    seg = np.repeat(np.arange(len(lengths), dtype=np.int64), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    k = np.arange(len(seg), dtype=np.int64) - first
    start = offsets[seg] + k * chunk
    end = np.minimum(start + chunk, offsets[seg] + lengths[seg])
    return np.ascontiguousarray(np.stack([seg, start, end], axis=1).reshape(-1, 3))


def empty_tables(n_segments, dtype):
    """A hyper table (inactive segments, grad scale 1) and a flag table, ready to fill."""
    hyper = np.zeros((n_segments, N_HYPER), dtype=dtype)
    hyper[:, GRAD_SCALE] = 1
    flags = np.zeros((n_segments, N_FLAGS), dtype=np.int64)
    return hyper, flags


class Operands(NamedTuple):
    """One bucket's worth of what a host kernel reads and writes: the single argument of every
    host kernel module's entry points (``update_<variant>(ops, flavor)``,
    ``sumsq_<variant>(ops, flags)``, variant flat | borrow | mixed_flat | mixed_borrow), so the
    stepper picks an implementation by name from a table and calls them all the same way.

    params, grads: flat buffers (adopt), int64 address tables (numba borrow) or lists of arrays
    (the reference's borrow); 16-bit ones as stored (float16 / ml_dtypes bfloat16).
    """
    params: object
    grads: object
    moment: np.ndarray
    inf_norm: np.ndarray
    master: object          # float32 master weights (mixed precision), else None
    offsets: np.ndarray     # segment starts in the state buffers (borrow)
    chunks: np.ndarray
    hyper: np.ndarray
    flags: np.ndarray
    store: object           # the 16-bit dtype of params/grads (mixed precision), else None
    steps: object = None    # per-segment step counts (low-bit state: the rounding's counter)
    stochastic: bool = True  # low-bit state: stochastic rounding (else to nearest even)
    scales: object = None   # int8 state: (moment scales, inf-norm scales), one per block
    origin: int = 0         # the flat index of element 0 (a ZeRO-1 slice's start): the
    #                         low-bit rounding counts elements from the bucket's start
