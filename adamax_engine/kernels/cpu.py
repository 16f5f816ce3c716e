"""Numba CPU kernels: the table-driven Adamax step, its borrow twin, and the norm reduction.

Same arguments and results as kernels/reference.py (the formula is documented there and in
optimizer.Adamax). ``parallel=True`` spreads chunks over threads; each chunk is independent,
so the update is thread-count independent by construction, and the reduction is made so by
summing in a fixed order (layout.SUMSQ_LANES lanes per chunk, chunk partials in chunk order).

No ``fastmath``: LLVM may then neither contract a*b+c into an FMA nor reorder sums, which is
what keeps fp32 results bit-identical to the numpy reference (and to paddle).
Scalars come from the hyper table, already in the buffer dtype, so no float64 literal ever
promotes an fp32 expression.
"""
import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from .specialise import specialised
from .layout import (ACTIVE, BETA1, BETA2, CLIP_MAX, CLIP_MIN, CLIP_VALUE, DECAY, DECAY_MODE,
                     EPS, GRAD_SCALE, KERAS, L1_DECAY, L2_DECAY, LR_T, ONE_MINUS_BETA1,
                     PADDLE, SCALE_GRAD, TORCH)


@intrinsic
def as_pointer(typingctx, address, like):
    """Reinterpret an integer address as a pointer to ``like``'s dtype (for the borrow table)."""
    if not isinstance(address, types.Integer) or not isinstance(like, types.Array):
        return None
    sig = types.CPointer(like.dtype)(address, like)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return sig, codegen


@njit(inline="always")
def prepared_grad(g, p, lo, hi, scale, decay, clip_value, scale_grad, decay_mode):
    """Paddle's order: ClipGradByValue, then a norm-clip scale, then L2/L1 decay (never clipped)."""
    if clip_value:
        g = lo if g < lo else (hi if g > hi else g)
    if scale_grad:
        g = g * scale
    if decay_mode == L2_DECAY:
        g = g + decay * p
    elif decay_mode == L1_DECAY:
        g = g + (decay if p > 0 else (-decay if p < 0 else decay * p))
    return g


@njit(inline="always")
def adamax_element(p, g, m, u, lr_t, b1, omb1, b2, eps, flavor):
    """One element's step given its prepared grad ``g``: (p, m, u) after it. The formula of
    kernels/reference.adamax_update, written once for every numba loop (fp32/fp64, the
    mixed-precision masters, the row-sparse rows); ``flavor`` is a constant where it is
    inlined, so only its branch is compiled."""
    mi = b1 * m + omb1 * g
    if flavor == PADDLE:
        a = abs(g)
        b = b2 * u + eps
    elif flavor == KERAS:
        a = b2 * u
        b = abs(g)
    else:  # TORCH, OPTAX: eps on the gradient branch
        a = b2 * u
        b = abs(g) + eps
    ui = b if a < b else a
    if flavor == KERAS:
        return p - lr_t * (mi / (ui + eps)), mi, ui
    return p - lr_t * (mi / ui), mi, ui


def _make_loop(flavor, generic):
    """The element loop of one chunk for one flavor, as its own small compiled function.

    ``generic``: every flag read at run time (value clip, norm scale, L1/L2 decay). Otherwise
    value clip and L1 are ruled out, the norm scale is applied always (1 when not clipping:
    x * 1 == x, bit for bit) and L2 is one loop-invariant select: LLVM left to a loop of every
    case neither unswitches nor hoists the tests, and vectorises them as selects (~60
    instructions per 8 elements, with spills), which keeps fewer loads in flight (0.85-0.9
    of the memory ceiling on 2000 small tensors, against ~1.0 for this one). Same operations
    per element either way, so the same bits. Called, not inlined: numba's IR inliner, not
    LLVM, is what makes a kernel slow to compile.
    """

    @specialised(error_model="numpy")  # x/0 -> inf as numpy (a raise would stop vectorising)
    def loop(p, g, m, u, lr_t, b1, omb1, b2, eps, lo, hi, scale, decay, clip_value, scale_grad,
             decay_mode):
        for i in range(p.shape[0]):
            if generic:
                gi = prepared_grad(g[i], p[i], lo, hi, scale, decay, clip_value, scale_grad,
                                    decay_mode)
            else:
                gi = g[i] * scale
                if decay_mode == L2_DECAY:
                    gi = gi + decay * p[i]
            pi, mi, ui = adamax_element(p[i], gi, m[i], u[i], lr_t, b1, omb1, b2, eps, flavor)
            m[i] = mi
            u[i] = ui
            p[i] = pi
    return loop


_PADDLE_ANY, _PADDLE_FAST = _make_loop(PADDLE, True), _make_loop(PADDLE, False)
_TORCH_ANY, _TORCH_FAST = _make_loop(TORCH, True), _make_loop(TORCH, False)
_KERAS_ANY, _KERAS_FAST = _make_loop(KERAS, True), _make_loop(KERAS, False)


@njit(inline="always")
def update_slices(p, g, m, u, h, f, flavor, fast=False):
    """One chunk: p, g, m, u are equal-length 1-D views; h/f the segment's hyper/flag rows.

    ``fast`` (the dense kernels) sends chunks without value clip or L1 decay to the flavor's
    specialised loop; the sparse kernels' short rows take the generic one.
    """
    # every scalar is read here, once: a load from ``h`` inside the loop could alias the stores
    # to p/m/u, which would stop LLVM from hoisting it and vectorising.
    clip_value, scale_grad, decay_mode = f[CLIP_VALUE] != 0, f[SCALE_GRAD] != 0, f[DECAY_MODE]
    scale = h[GRAD_SCALE] if scale_grad else h.dtype.type(1)
    args = (h[LR_T], h[BETA1], h[ONE_MINUS_BETA1], h[BETA2], h[EPS], h[CLIP_MIN], h[CLIP_MAX],
            scale, h[DECAY], clip_value, scale_grad, decay_mode)
    if fast and not clip_value and decay_mode != L1_DECAY:
        if flavor == PADDLE:
            _PADDLE_FAST(p, g, m, u, *args)
        elif flavor == KERAS:
            _KERAS_FAST(p, g, m, u, *args)
        else:
            _TORCH_FAST(p, g, m, u, *args)
    elif flavor == PADDLE:
        _PADDLE_ANY(p, g, m, u, *args)
    elif flavor == KERAS:
        _KERAS_ANY(p, g, m, u, *args)
    else:
        _TORCH_ANY(p, g, m, u, *args)


@njit(parallel=True, cache=True)
def fused_update(params, grads, moment, inf_norm, chunks, hyper, flags, flavor):
    """One Adamax step for every active segment of one flat bucket, in a single call."""
    for c in prange(chunks.shape[0]):
        seg, start, end = chunks[c, 0], chunks[c, 1], chunks[c, 2]
        if flags[seg, ACTIVE] != 0:
            update_slices(params[start:end], grads[start:end], moment[start:end],
                           inf_norm[start:end], hyper[seg], flags[seg], flavor, True)


@njit(inline="always")
def borrowed_view(addresses, offsets, seg, start, end, like):
    """The [start, end) slice (state coordinates) of a borrowed array given by its address."""
    base = as_pointer(addresses[seg] + (start - offsets[seg]) * like.itemsize, like)
    return numba.carray(base, (end - start,))


@njit(parallel=True, cache=True)
def borrowed_update(param_addrs, grad_addrs, moment, inf_norm, offsets, chunks, hyper, flags, flavor):
    """Like fused_update, but params/grads live in caller-owned arrays given by address.

    Segment ``s`` of the state buffers starts at ``offsets[s]``; its param and grad are
    C-contiguous arrays of the state dtype at ``param_addrs[s]`` / ``grad_addrs[s]``.
    The caller keeps those arrays alive for the duration of the call.
    """
    for c in prange(chunks.shape[0]):
        seg, start, end = chunks[c, 0], chunks[c, 1], chunks[c, 2]
        if flags[seg, ACTIVE] != 0:
            p = borrowed_view(param_addrs, offsets, seg, start, end, moment)
            g = borrowed_view(grad_addrs, offsets, seg, start, end, moment)
            update_slices(p, g, moment[start:end], inf_norm[start:end], hyper[seg], flags[seg],
                           flavor, True)


@njit(inline="always")
def _chunk_sumsq(x):
    """Sum of x^2 with 8 interleaved sequential lanes, combined pairwise (reference.chunk_sumsq)."""
    zero = x.dtype.type(0)
    l0 = l1 = l2 = l3 = l4 = l5 = l6 = l7 = zero
    n = x.shape[0]
    full = n - n % 8
    for i in range(0, full, 8):
        l0 += x[i] * x[i]
        l1 += x[i + 1] * x[i + 1]
        l2 += x[i + 2] * x[i + 2]
        l3 += x[i + 3] * x[i + 3]
        l4 += x[i + 4] * x[i + 4]
        l5 += x[i + 5] * x[i + 5]
        l6 += x[i + 6] * x[i + 6]
        l7 += x[i + 7] * x[i + 7]
    tail = n - full  # element full + k goes to lane k, as in the zero-padded reference
    if tail > 0:
        l0 += x[full] * x[full]
    if tail > 1:
        l1 += x[full + 1] * x[full + 1]
    if tail > 2:
        l2 += x[full + 2] * x[full + 2]
    if tail > 3:
        l3 += x[full + 3] * x[full + 3]
    if tail > 4:
        l4 += x[full + 4] * x[full + 4]
    if tail > 5:
        l5 += x[full + 5] * x[full + 5]
    if tail > 6:
        l6 += x[full + 6] * x[full + 6]
    return ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))


@njit(inline="always")
def _has_nonfinite(x):
    for i in range(x.shape[0]):
        if not np.isfinite(x[i]):
            return True
    return False


@njit(inline="always")
def combine_partials(partial, bad, chunks, n_segments):
    """Chunk partials -> per-segment sums, sequentially in chunk order (thread-count independent)."""
    sumsq = np.zeros(n_segments, dtype=partial.dtype)
    nonfinite = np.zeros(n_segments, dtype=np.bool_)
    for c in range(chunks.shape[0]):
        seg = chunks[c, 0]
        sumsq[seg] = sumsq[seg] + partial[c]
        nonfinite[seg] = nonfinite[seg] or bad[c]
    return sumsq, nonfinite


@njit(inline="always")
def chunk_stats(x, partial, bad, c):
    s = _chunk_sumsq(x)
    partial[c] = s
    # a finite grad can still overflow g*g, so a non-finite sum only triggers a real scan
    bad[c] = (not np.isfinite(s)) and _has_nonfinite(x)


class slp_vectorizer:
    """Compile with LLVM's SLP vectorizer on (numba keeps it off by default) while inside.

    It packs the 8 independent lane accumulators of _chunk_sumsq into one vector register:
    the same additions in the same order per lane, so the same bits (the tests compare them
    with the reference), at about twice the speed. Only a compile that happens inside (the
    first call for a signature; the cached result keeps it) is affected.
    """

    def __enter__(self):
        self.saved = numba.config.SLP_VECTORIZE
        numba.config.SLP_VECTORIZE = 1

    def __exit__(self, *exc):
        numba.config.SLP_VECTORIZE = self.saved


def segment_sumsq(grads, chunks, flags):
    """Per-segment sum of grad^2 (grad dtype) and non-finite flag; inactive segments give 0."""
    with slp_vectorizer():
        return _segment_sumsq(grads, chunks, flags)


def borrowed_sumsq(grad_addrs, offsets, chunks, flags, like):
    """segment_sumsq for borrowed grads (addresses, see borrowed_update); ``like`` gives the dtype."""
    with slp_vectorizer():
        return _borrowed_sumsq(grad_addrs, offsets, chunks, flags, like)


@njit(parallel=True, cache=True)
def _segment_sumsq(grads, chunks, flags):
    partial = np.zeros(chunks.shape[0], dtype=grads.dtype)
    bad = np.zeros(chunks.shape[0], dtype=np.bool_)
    for c in prange(chunks.shape[0]):
        seg, start, end = chunks[c, 0], chunks[c, 1], chunks[c, 2]
        if flags[seg, ACTIVE] != 0:
            chunk_stats(grads[start:end], partial, bad, c)
    return combine_partials(partial, bad, chunks, flags.shape[0])


@njit(parallel=True, cache=True)
def _borrowed_sumsq(grad_addrs, offsets, chunks, flags, like):
    partial = np.zeros(chunks.shape[0], dtype=like.dtype)
    bad = np.zeros(chunks.shape[0], dtype=np.bool_)
    for c in prange(chunks.shape[0]):
        seg, start, end = chunks[c, 0], chunks[c, 1], chunks[c, 2]
        if flags[seg, ACTIVE] != 0:
            chunk_stats(borrowed_view(grad_addrs, offsets, seg, start, end, like), partial, bad, c)
    return combine_partials(partial, bad, chunks, flags.shape[0])


# --- entry points, one signature per operation (layout.Operands) ------------------------------
def update_flat(ops, flavor):
    fused_update(ops.params, ops.grads, ops.moment, ops.inf_norm, ops.chunks, ops.hyper,
                 ops.flags, flavor)


def update_borrow(ops, flavor):
    borrowed_update(ops.params, ops.grads, ops.moment, ops.inf_norm, ops.offsets, ops.chunks,
                    ops.hyper, ops.flags, flavor)


def sumsq_flat(ops, flags):
    return segment_sumsq(ops.grads, ops.chunks, flags)


def sumsq_borrow(ops, flags):
    return borrowed_sumsq(ops.grads, ops.offsets, ops.chunks, flags, ops.moment)
