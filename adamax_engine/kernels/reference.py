"""Plain-numpy Adamax: the oracle every fast path is tested against.

Reads like paddle's phi kernel (paddle/phi/kernels/impl/adamax_kernel_impl.h), line by line, in
the parameter dtype T with no fused multiply-add (numpy ufuncs round after every operation):

    moment   = beta1 * moment + (1 - beta1) * grad
    inf_norm = max(|grad|, beta2 * inf_norm + epsilon)         # paddle: eps on the decayed branch
    lr_t     = lr / (1 - beta1_pow)
    param    = param - lr_t * (moment / inf_norm)

The table-driven functions at the bottom take exactly the arguments of kernels.cpu / kernels.cuda.
"""
import numpy as np

from . import layout as L


def paddle_max(a, b):
    """Eigen/std::max as paddle uses it: ``b if a < b else a`` (a NaN ``a`` wins, a NaN ``b`` loses)."""
    return np.where(a < b, b, a)


def adamax_update(param, grad, moment, inf_norm, *, lr_t, beta1, beta2, epsilon, flavor=L.PADDLE,
                  moment_factor=None, inf_norm_factor=None):
    """One Adamax step on one tensor, in place. Scalars must already be of the param dtype.

    ``grad`` is the final gradient (after clipping and decay). ``lr_t`` already holds the bias
    correction lr / (1 - beta1^t). ``flavor`` decides where epsilon goes (see layout.FLAVORS).
    ``moment_factor``/``inf_norm_factor``: what the held moment and inf-norm are multiplied by
    (beta1, beta2 by default; int8 state holds its codes' map values and folds each block's
    scale into them: lowbit_reference.int8_update).
    """
    one_minus_beta1 = param.dtype.type(1) - beta1
    moment[...] = (beta1 if moment_factor is None else moment_factor) * moment \
        + one_minus_beta1 * grad
    decayed = (beta2 if inf_norm_factor is None else inf_norm_factor) * inf_norm
    if flavor == L.PADDLE:
        inf_norm[...] = paddle_max(np.abs(grad), decayed + epsilon)
    elif flavor in (L.TORCH, L.OPTAX):
        inf_norm[...] = paddle_max(decayed, np.abs(grad) + epsilon)
    elif flavor == L.KERAS:
        inf_norm[...] = paddle_max(decayed, np.abs(grad))
    else:
        raise ValueError(f"flavor: unknown code {flavor}")
    denom = inf_norm + epsilon if flavor == L.KERAS else inf_norm
    param[...] = param - lr_t * (moment / denom)


def clip_by_value(grad, lo, hi):
    """paddle.clip's functor: ``x < min ? min : (x > max ? max : x)`` (NaN passes through)."""
    return np.where(grad < lo, lo, np.where(grad > hi, hi, grad))


def l2_term(param, coeff):
    """L2Decay: the gradient of 0.5*c*||w||^2, i.e. c*w (coupled, added to the grad)."""
    return param.dtype.type(coeff) * param


def l1_term(param, coeff):
    """L1Decay: c*sign(w), sign(0) = 0."""
    return param.dtype.type(coeff) * np.sign(param)


def chunk_sumsq(values):
    """Sum of squares of one chunk in the fixed order every kernel uses (see layout.SUMSQ_LANES).

    Element k goes to lane k % 8; each lane is a sequential sum; lanes combine pairwise.
    Zero padding does not change a sum of squares, so the tail is padded to a full row.
    """
    sq = values * values
    pad = (-len(sq)) % L.SUMSQ_LANES
    rows = np.concatenate([sq, np.zeros(pad, sq.dtype)]).reshape(-1, L.SUMSQ_LANES)
    lanes = np.cumsum(rows, axis=0, dtype=sq.dtype)[-1] if len(rows) else np.zeros(8, sq.dtype)
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))


def segment_sumsq(grads, chunks, flags):
    """Per-segment sum of grad^2 (in the grad dtype) and a per-segment non-finite flag.

    Chunk partials are summed sequentially in chunk order; inactive segments give 0 / False.
    """
    n = len(flags)
    sumsq = np.zeros(n, dtype=grads.dtype)
    nonfinite = np.zeros(n, dtype=np.bool_)
    for seg, start, end in chunks:
        if flags[seg, L.ACTIVE]:
            block = grads[start:end]
            sumsq[seg] = sumsq[seg] + chunk_sumsq(block)
            nonfinite[seg] |= not np.all(np.isfinite(block))
    return sumsq, nonfinite


def prepare_grad(grad, param, hyper_row, flag_row):
    """Clip-by-value, then the clip scale, then decay: paddle's order (clip before decay)."""
    g = grad
    if flag_row[L.CLIP_VALUE]:
        g = clip_by_value(g, hyper_row[L.CLIP_MIN], hyper_row[L.CLIP_MAX])
    if flag_row[L.SCALE_GRAD]:
        g = g * hyper_row[L.GRAD_SCALE]
    if flag_row[L.DECAY_MODE] == L.L2_DECAY:
        g = g + hyper_row[L.DECAY] * param
    elif flag_row[L.DECAY_MODE] == L.L1_DECAY:
        g = g + hyper_row[L.DECAY] * np.sign(param)
    return g


def fused_update(params, grads, moment, inf_norm, chunks, hyper, flags, flavor):
    """Table-driven step over flat buffers: same arguments and results as kernels.cpu.fused_update."""
    for seg, start, end in chunks:
        if not flags[seg, L.ACTIVE]:
            continue
        h = hyper[seg]
        sl = slice(start, end)
        g = prepare_grad(grads[sl], params[sl], h, flags[seg])
        p, m, u = params[sl], moment[sl], inf_norm[sl]
        adamax_update(p, g, m, u, lr_t=h[L.LR_T], beta1=h[L.BETA1], beta2=h[L.BETA2],
                      epsilon=h[L.EPS], flavor=flavor)


def borrowed_update(param_list, grad_list, moment, inf_norm, offsets, chunks, hyper, flags, flavor):
    """The borrow path's oracle: params/grads are separate arrays, state is flat at ``offsets``."""
    for seg, (p, g) in enumerate(zip(param_list, grad_list)):
        if not flags[seg, L.ACTIVE]:
            continue
        sl = slice(offsets[seg], offsets[seg] + p.size)
        pf, gf = p.reshape(-1), g.reshape(-1)
        gg = prepare_grad(gf, pf, hyper[seg], flags[seg])
        adamax_update(pf, gg, moment[sl], inf_norm[sl], lr_t=hyper[seg, L.LR_T],
                      beta1=hyper[seg, L.BETA1], beta2=hyper[seg, L.BETA2],
                      epsilon=hyper[seg, L.EPS], flavor=flavor)


# --- one whole optimizer step, paddle's order, over plain lists (the oracle for optimizer tests) ---

def paddle_hyper(dtype, beta1, beta2, epsilon):
    """paddle passes beta1/beta2/epsilon to the kernel as fp32 attributes, then casts to T."""
    T, f32 = np.dtype(dtype).type, np.float32
    return T(f32(beta1)), T(f32(beta2)), T(f32(epsilon))


def group_step(params, grads, state, *, lr, beta1=0.9, beta2=0.999, epsilon=1e-8, lr_mults=None,
               decays=None, need_clip=None, clip=None, flavor=L.PADDLE):
    """One step of one parameter group, in place, exactly as paddle 3.3.1 orders it.

    params, grads: lists of arrays of one dtype (a grad of None skips that param entirely).
    state: dict with lists ``moment``, ``inf_norm``, ``beta1_pow`` (0-d arrays) and ``step``
    (ints), created lazily here like paddle's accumulators.
    decays: per param None | ("l2", c) | ("l1", c).  clip: None | ("value", lo, hi) |
    ("norm", c) | ("global", c, auto_skip).  lr_mults: per-param lr multipliers.
    """
    n = len(params)
    lr_mults = lr_mults or [1.0] * n
    decays = decays or [None] * n
    need_clip = need_clip or [True] * n
    live = [i for i in range(n) if grads[i] is not None]
    if not live:
        return
    dtype = params[live[0]].dtype
    T = dtype.type
    for key in ("moment", "inf_norm", "beta1_pow", "step"):
        state.setdefault(key, [None] * n)
    g = {i: grads[i].copy() for i in live}
    clipped = [i for i in live if need_clip[i]]
    if clip is not None and clip[0] == "value":
        for i in clipped:
            g[i] = clip_by_value(g[i], T(clip[1]), T(clip[2]))
    elif clip is not None and clip[0] == "norm":
        for i in clipped:
            scale, apply = norm_scale(_tensor_sumsq(g[i]), clip[1])
            if apply:
                g[i] = g[i] * scale
    elif clip is not None and clip[0] == "global" and clipped:
        sdt = np.float64 if any(g[i].dtype == np.float64 for i in clipped) else np.float32
        total = sdt(0)
        for i in clipped:
            total = total + sdt(_tensor_sumsq(g[i]))
        scale, apply = global_norm_scale(np.sqrt(total), clip[1], clip[2])
        if apply:
            for i in clipped:
                g[i] = g[i] * g[i].dtype.type(scale)
    for i in live:
        if decays[i] is not None:
            kind, c = decays[i]
            g[i] = g[i] + (l2_term(params[i], c) if kind == "l2" else l1_term(params[i], c))
    b1, b2, eps = paddle_hyper(dtype, beta1, beta2, epsilon) if flavor == L.PADDLE else (
        T(beta1), T(beta2), T(epsilon))
    lr_T = T(lr)
    for i in live:
        if state["moment"][i] is None:
            state["moment"][i] = np.zeros_like(params[i])
            state["inf_norm"][i] = np.zeros_like(params[i])
            state["beta1_pow"][i] = np.array(beta1, dtype=dtype)
            state["step"][i] = 0
        state["step"][i] += 1
        lr_i = lr_T if lr_mults[i] == 1.0 else lr_T * T(lr_mults[i])
        if flavor == L.PADDLE:
            lr_t = lr_i / (T(1) - state["beta1_pow"][i][()])
        else:
            # torch/optax/keras: python-float lr and bias correction, cast to T once at the end
            lr_t = T(lr * lr_mults[i] / (1.0 - float(beta1) ** state["step"][i]))
        adamax_update(params[i], g[i], state["moment"][i], state["inf_norm"][i], lr_t=lr_t,
                      beta1=b1, beta2=b2, epsilon=eps, flavor=flavor)
        state["beta1_pow"][i][()] = state["beta1_pow"][i][()] * T(beta1)


def norm_scale(sumsq, clip_norm):
    """ClipGradByNorm from a tensor's sum of squares (array or scalar, dtype T): (scale, apply).

    paddle: scale = max_norm / (norm + eps'), eps' = 1e-6 only when norm <= 1e-30, applied when
    not norm <= max_norm (so a NaN norm applies a NaN scale). The one numpy formulation: the
    clipper (transforms/clip.py) calls it too."""
    sumsq = np.asarray(sumsq)
    T = sumsq.dtype.type
    norm, max_norm = np.sqrt(sumsq), T(clip_norm)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = max_norm / (norm + np.where(norm <= T(1e-30), T(1e-6), T(0)))
    return scale.astype(sumsq.dtype), ~(norm <= max_norm)


def global_norm_scale(gnorm, clip_norm, auto_skip):
    """ClipGradByGlobalNorm from the global norm (dtype S): (scale, apply).

    Without auto_skip: max_norm / max(gnorm, max_norm), always applied (a NaN norm gives a NaN
    scale, np.maximum propagating it); with it: max_norm / gnorm only when gnorm > max_norm."""
    gnorm = np.asarray(gnorm)[()]
    max_norm = gnorm.dtype.type(clip_norm)
    with np.errstate(divide="ignore", invalid="ignore"):  # clip_norm <= 0 and a zero norm
        if not auto_skip:
            return max_norm / np.maximum(gnorm, max_norm), True
        apply = bool(gnorm > max_norm)
        return (max_norm / gnorm if apply else max_norm), apply


def _tensor_sumsq(g):
    """A tensor's sum of squares in the kernels' order: segment_sumsq over a one-segment table."""
    flat = g.reshape(-1)
    chunks = L.build_chunk_table([0], [flat.size])
    return segment_sumsq(flat, chunks, np.ones((1, L.N_FLAGS), np.int64))[0][0]


def borrowed_sumsq(grad_list, offsets, chunks, flags, like):
    """segment_sumsq for separate grad arrays (the borrow path's oracle); ``like`` gives the dtype."""
    flat = np.zeros(like.shape, like.dtype)
    for seg, g in enumerate(grad_list):
        if flags[seg, L.ACTIVE]:
            flat[offsets[seg]:offsets[seg] + g.size] = g.reshape(-1)
    return segment_sumsq(flat, chunks, flags)


# --- mixed precision: float16/bfloat16 params and grads, float32 master weights ----------------

def mixed_update(params16, grads16, master, moment, inf_norm, chunks, hyper, flags, flavor):
    """The fp32 step on the master weights with widened grads, then params = master rounded
    to the params' dtype (nearest even): what kernels.mixed.fused_update must equal, bit for bit."""
    fused_update(master, grads16.astype(np.float32), moment, inf_norm, chunks, hyper, flags,
                 flavor)
    for seg, start, end in chunks:
        if flags[seg, L.ACTIVE]:
            params16[start:end] = master[start:end].astype(params16.dtype)


def mixed_borrowed_update(param_list, grad_list, master, moment, inf_norm, offsets, chunks, hyper,
                          flags, flavor):
    """mixed_update for separate 16-bit arrays (the borrow path's oracle)."""
    masters = [master[offsets[s]:offsets[s] + p.size] for s, p in enumerate(param_list)]
    borrowed_update(masters, [g.astype(np.float32) for g in grad_list], moment, inf_norm, offsets,
                    chunks, hyper, flags, flavor)
    for s, (p, m) in enumerate(zip(param_list, masters)):
        if flags[s, L.ACTIVE]:
            p.reshape(-1)[...] = m.astype(p.dtype)


# --- entry points, one signature per operation (layout.Operands), as in kernels.cpu / mixed ----
def update_flat(ops, flavor):
    fused_update(ops.params, ops.grads, ops.moment, ops.inf_norm, ops.chunks, ops.hyper,
                 ops.flags, flavor)


def update_borrow(ops, flavor):
    borrowed_update(ops.params, ops.grads, ops.moment, ops.inf_norm, ops.offsets, ops.chunks,
                    ops.hyper, ops.flags, flavor)


def update_mixed_flat(ops, flavor):
    mixed_update(ops.params, ops.grads, ops.master, ops.moment, ops.inf_norm, ops.chunks,
                 ops.hyper, ops.flags, flavor)


def update_mixed_borrow(ops, flavor):
    mixed_borrowed_update(ops.params, ops.grads, ops.master, ops.moment, ops.inf_norm,
                          ops.offsets, ops.chunks, ops.hyper, ops.flags, flavor)


def sumsq_flat(ops, flags):
    return segment_sumsq(ops.grads, ops.chunks, flags)


def sumsq_borrow(ops, flags):
    return borrowed_sumsq(ops.grads, ops.offsets, ops.chunks, flags, ops.moment)


def sumsq_mixed_flat(ops, flags):
    return segment_sumsq(ops.grads.astype(np.float32), ops.chunks, flags)


def sumsq_mixed_borrow(ops, flags):
    return borrowed_sumsq([g.astype(np.float32) for g in ops.grads], ops.offsets, ops.chunks,
                          flags, ops.moment)
