"""The step on ``device="cuda"``: launches only, nothing read back, no per-step upload.

Per bucket and step: [sumsq_partials + finish_clip when a norm clip or skip_nonfinite needs the
grads' norms], then ``update``, then ``end_step`` (beta1_pow and step counts advance on the
device exactly as the host mirror does in step/tables.end, so both stay bit-equal and
state_dict reads the host side). The lr reaches the kernel as a launch argument; lr_t is formed
per chunk from the device beta1_pow. The tables go up again only when the set of active
segments or their accumulators changed (new grads, a loaded state dict): the rare case.

Every bucket's norms and the non-finite flag are computed before any bucket is updated (the
flag stays 0 when skip_nonfinite is off, so it needs no reset launch), so
``skip_nonfinite`` skips all buckets together, like paddle's found_inf. Launches go to numba's
default stream, in order.
"""
import numpy as np

from ..kernels import layout as L
from ..kernels.cuda import dense as K
from ..kernels.cuda import mixed as KM
from ..kernels.halfbits import store_code
from .base import StepperBase

_NORM_KINDS = {"ClipGradByNorm": K.BY_NORM, "ClipGradByGlobalNorm": K.BY_GLOBAL_NORM}


def clip_tables(buckets, groups):
    """Per bucket: (n, 2) int64 (norm-clip kind, global group index) and (n,) clip_norm in T.

    Also the per-global-group auto_skip_clip flags and the number of global groups. A ClipGradByGlobalNorm group must lie in
    one bucket (one dtype): its norm is finished on the device in one block.
    """
    global_ids, auto_skip, out = {}, [], []
    for b in buckets:
        table = np.zeros((len(b.entries), 2), np.int64)
        norms = np.zeros(len(b.entries), b.dtype)
        for k, e in enumerate(b.entries):
            clip = groups[e.group]["grad_clip"]
            if clip is None or not clip.needs_norms or not e.need_clip:
                continue
            kind = _NORM_KINDS.get(type(clip).__name__)
            if kind is None:
                raise TypeError(f"grad_clip: {type(clip).__name__} has no CUDA implementation "
                                "(use ClipGradByValue, ClipGradByNorm or ClipGradByGlobalNorm)")
            table[k, 0], norms[k] = kind, b.dtype.type(clip.clip_norm)
            if kind == K.BY_GLOBAL_NORM:
                if e.group not in global_ids:
                    global_ids[e.group] = (len(auto_skip), b)
                    auto_skip.append(int(clip.auto_skip_clip))
                gi, home = global_ids[e.group]
                if home is not b:
                    raise ValueError(f"parameters: on device='cuda' a ClipGradByGlobalNorm group "
                                     f"must hold one dtype; {e.name!r} is {b.dtype}, the group "
                                     f"also has {home.dtype}")
                table[k, 1] = gi
        out.append((table, norms))
    return out, np.array(auto_skip or [0], np.int32), len(auto_skip)


def _bits(bucket, params, grads):
    """A mixed-precision bucket's 16-bit params and grads as uint16, and its store code."""
    return params.view(np.uint16), grads.view(np.uint16), store_code(bucket.store)


class DeviceTables:
    """A bucket's tables and scratch on the device."""

    def __init__(self, bucket, clip_table, clip_norm, group_skip):
        from numba import cuda
        n = len(bucket.entries)
        self.chunks = cuda.to_device(bucket.chunks)
        self.clips = K.ClipTables(cuda.to_device(clip_table), cuda.to_device(clip_norm),
                                  group_skip)
        counts = np.bincount(bucket.chunks[:, 0], minlength=n) if len(bucket.chunks) else \
            np.zeros(n, np.int64)
        seg_chunks = cuda.to_device(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        # finish_clip's inputs: chunk partials, flags, chunks per segment, row-sparse extras
        self.norms = K.NormInputs(cuda.device_array(max(len(bucket.chunks), 1), bucket.dtype),
                                  cuda.device_array(max(len(bucket.chunks), 1), np.int32),
                                  seg_chunks, K.zeros(max(n, 1), bucket.dtype),
                                  K.zeros(max(n, 1), np.int32))
        self.seg_sumsq = cuda.device_array(max(n, 1), bucket.dtype)
        self.has_extra = False
        self.shard_chunks = None  # ZeRO-1 (use_shard)
        self.beta1_f64 = cuda.to_device(bucket.beta1_py)
        self.beta1_mult = cuda.to_device(bucket.beta1_T)
        self.lr_mult = cuda.to_device(bucket.lr_mult)
        self.addresses = self.offsets = self.staging = None  # borrow mode (see access below)
        self.upload(bucket)

    def upload(self, bucket):
        """The tables that the host changes: hyper, flags, beta1_pow, steps (a rare, sync copy)."""
        from numba import cuda
        self.hyper = cuda.to_device(bucket.hyper)
        self.flags = cuda.to_device(bucket.flags)
        self.beta1_pow = cuda.to_device(bucket.beta1_pow)
        self.steps = cuda.to_device(bucket.steps)
        bucket.tables_uploaded()

    def use_shard(self, bucket):
        """ZeRO-1: walk only this rank's slice (bucket.shard); its norms come as ``extra``."""
        from numba import cuda
        chunks = bucket.shard.chunks
        self.shard_chunks = cuda.to_device(chunks)
        # partials over this rank's chunks; finish_clip sums none of them (no chunks per
        # segment): the all-reduced sums arrive as its extras
        self.norms = self.norms._replace(
            partial=cuda.device_array(max(len(chunks), 1), bucket.dtype),
            bad=cuda.device_array(max(len(chunks), 1), np.int32),
            seg_chunks=K.zeros(len(bucket.entries) + 1, np.int64))


class CudaStepper(StepperBase):
    """The numba.cuda kernels over device buffers; holds every bucket's device tables."""
    SPARSE_FLAG = L.ACTIVE_SPARSE  # stepped, but the dense kernels skip it (cuda/rows.py's)

    def __init__(self, registry, options, fence):
        super().__init__(registry, options, fence)
        self.skip = K.zeros(2, np.int32)  # [this step skipped, steps skipped so far]
        self.tables, self.group_skip, self.n_groups = {}, None, 0
        self.reconfigure()

    def reconfigure(self):
        """(Re)build the device tables from the buckets' static tables."""
        from numba import cuda
        buckets = self.registry.buckets
        tables, auto_skip, self.n_groups = clip_tables(buckets, self.options.groups)
        self.group_skip = cuda.to_device(auto_skip)
        self.tables = {id(b): DeviceTables(b, *t, self.group_skip) for b, t in zip(buckets, tables)}

    def hyper_changed(self):
        self.reconfigure()  # lr multipliers and betas live in the device tables

    def dense_step(self, buckets, changed, lr, sparse):
        skip = self.options.skip_nonfinite
        self.launch(buckets, changed, lr, self.rows.sums(self.registry.entries, sparse, skip))
        if sparse and skip and self.this_step_skipped():
            return True  # (a device read, only with row-sparse grads and skipping)
        self.sparse_updates(sparse, self.device_rows)
        return False

    def launch(self, buckets, changed, lr, extra=None):
        """Every launch of one step. ``extra``: {id(bucket): (per-segment sums of squares,
        non-finite flags)} of the row-sparse grads (host arrays), added by finish_clip."""
        flavor, skip_nonfinite = self.options.flavor, self.options.skip_nonfinite
        first = True
        for b in buckets:
            t = self.tables[id(b)]
            if changed[id(b)] or b.dirty:
                t.upload(b)
            if b.mode == "borrow" and K.simulated():
                self._stage(b, t, into=True)
            self._set_extra(t, None if not extra else extra.get(id(b)))
            if skip_nonfinite or (b.norm_clipped & b.active).any():
                self._norms(b, t, skip_nonfinite, first)
                first = False
        for b in buckets:
            t, k = self.tables[id(b)], K.kernels(b.dtype)
            params, grads, moment, inf_norm, chunks, n_chunks = self._views(b, t)
            kernels, where = access(b, t)
            if n_chunks and b.low_bit:
                low_bit_update(b, t, params, grads, chunks, n_chunks, flavor, self.skip, lr,
                               self.origin(b))
            elif n_chunks and b.store is not None:
                params, grads, store = _bits(b, params, grads)
                KM.kernels().update[K.grid_for(n_chunks), k.threads](
                    b.master, grads, moment, inf_norm, chunks, t.hyper, t.flags,
                    flavor, self.skip, float(lr), t.lr_mult, t.beta1_pow, t.beta1_f64, t.steps,
                    (params, store))
            elif n_chunks:
                kernels.update[K.grid_for(n_chunks), k.threads](
                    params, grads, moment, inf_norm, chunks, t.hyper, t.flags, flavor,
                    self.skip, float(lr), t.lr_mult, t.beta1_pow, t.beta1_f64, t.steps, where)
            if b.mode == "borrow" and K.simulated():
                self._stage(b, t, into=False)
            n = len(b.entries)
            k.end_step[K.grid_for((n + k.threads - 1) // k.threads), k.threads](
                t.flags, t.beta1_pow, t.beta1_mult, t.steps)
        if skip_nonfinite and buckets:
            K.kernels(buckets[0].dtype).count_skip[1, 1](self.skip)

    def advance_only(self, buckets, changed):
        for b in buckets:
            t, k = self.tables[id(b)], K.kernels(b.dtype)
            if changed[id(b)] or b.dirty:
                t.upload(b)
            n = len(b.entries)
            k.end_step[K.grid_for((n + k.threads - 1) // k.threads), k.threads](
                t.flags, t.beta1_pow, t.beta1_mult, t.steps)

    def update_launch(self, bucket):
        """The bare update launch of ``bucket`` with its current tables (benchmarks time it
        against a copy of the same bytes); a callable taking the lr."""
        t, k = self.tables[id(bucket)], K.kernels(bucket.dtype)
        params, grads, moment, inf_norm, chunks, n_chunks = self._views(bucket, t)
        if bucket.low_bit:
            return lambda lr: low_bit_update(bucket, t, params, grads, chunks,
                                             max(n_chunks, 1), self.options.flavor, self.skip,
                                             lr, self.origin(bucket))
        kernels, where = access(bucket, t)
        launch = kernels.update[K.grid_for(max(n_chunks, 1)), k.threads]
        flavor = self.options.flavor
        return lambda lr: launch(params, grads, moment, inf_norm, chunks, t.hyper, t.flags, flavor,
                                 self.skip, float(lr), t.lr_mult, t.beta1_pow, t.beta1_f64,
                                 t.steps, where)

    @staticmethod
    def origin(b):
        """The flat index of the first element a step walks (ZeRO-1: its slice's start)."""
        return 0

    def _views(self, b, t):
        """(params, grads, moment, inf_norm, device chunk table, chunk count) a step walks:
        the whole bucket here (parallel/mpi.ShardedCudaStepper: this rank's slice). Borrow mode:
        the address tables (a GPU) or the staging buffers (the simulator) for params/grads."""
        if b.mode == "borrow":
            params, grads = t.staging if K.simulated() else borrowed_addresses(b, t)
            return params, grads, b.moment, b.inf_norm, t.chunks, len(b.chunks)
        return b.params, b.grads, b.moment, b.inf_norm, t.chunks, len(b.chunks)

    @staticmethod
    def _set_extra(t, extra):
        if extra is not None:
            t.norms.extra_sumsq.copy_to_device(extra[0])
            t.norms.extra_bad.copy_to_device(extra[1].astype(np.int32))
            t.has_extra = True
        elif t.has_extra:
            K.fill(t.norms.extra_sumsq, 0)
            K.fill(t.norms.extra_bad, 0)
            t.has_extra = False

    def _partials(self, b, t, skip_nonfinite):
        """sumsq_partials over the chunks a step walks (into t.partial, t.bad)."""
        k = K.kernels(b.dtype)
        _, grads, _, _, chunks, n_chunks = self._views(b, t)
        if n_chunks:
            kernels, store = access(b, t)
            reduce = kernels.sumsq_partials
            if b.store is not None:
                reduce, (_, grads, store) = KM.kernels().sumsq_partials, _bits(b, grads, grads)
            reduce[K.grid_for(n_chunks), k.threads](grads, chunks, t.flags, t.clips.clip_table,
                                                    bool(skip_nonfinite), t.norms.partial,
                                                    t.norms.bad, store)

    def _norms(self, b, t, skip_nonfinite, first):
        """Per-segment sums, clip scales and the skip flag, on the device."""
        self._partials(b, t, skip_nonfinite)
        self._finish(b, t, skip_nonfinite, first)

    def _finish(self, b, t, skip_nonfinite, first):
        k = K.kernels(b.dtype)
        k.finish_clip[1, k.threads](t.norms, t.clips, t.hyper, t.flags, t.seg_sumsq, self.skip,
                                    bool(skip_nonfinite), first, self.n_groups)

    def device_rows(self, bucket, k):
        """Segment k's device hyper and flag rows (with this step's clip scale)."""
        t = self.tables[id(bucket)]
        return t.hyper[k], t.flags[k]

    def this_step_skipped(self):
        """Whether skip_nonfinite skipped this step (reads the device: a sync)."""
        return bool(self.skip.copy_to_host()[0])

    def set_skipped(self, count):
        self.skip.copy_to_device(np.array([0, count], np.int32))

    @property
    def skipped_steps(self):
        """How many steps a non-finite grad skipped (reads the device: a sync)."""
        return int(self.skip.copy_to_host()[1])

    def _stage(self, bucket, t, into):
        """The simulator's borrow mode (it has no raw addresses): the active params and grads
        are copied into flat staging buffers before the step (``into``) and the params back
        after, so the plain kernels run; the same numbers as the address-table kernels, which
        it cannot run."""
        from ..params.device_arrays import as_device_array
        if t.staging is None:
            t.staging = (K.zeros(len(bucket.moment), bucket.dtype),
                         K.zeros(len(bucket.moment), bucket.dtype))
        params, grads = t.staging
        for k, e in enumerate(bucket.entries):
            if not bucket.active[k] or bucket.sparse[k]:
                continue
            data, grad = self.registry.arrays(e)
            data = as_device_array(data)
            if into:
                bucket.segment(params, k).copy_to_device(data)
                bucket.segment(grads, k).copy_to_device(as_device_array(grad))
            else:
                data.copy_to_device(bucket.segment(params, k))


def low_bit_update(b, t, params, grads, chunks, n_chunks, flavor, skip, lr, origin=0):
    """The update launch of a bucket with bfloat16 or int8 state (kernels/cuda/lowbit.py's,
    or their borrow.py / mixed.py builds: float32 masters with the 16-bit params beside)."""
    from ..kernels.cuda import lowbit as KL
    if b.store is not None:
        kernels, (bits, grads, store) = KM.kernels(), _bits(b, params, grads)
        params, where = b.master, (bits, store)
    elif b.mode == "borrow" and not K.simulated():
        kernels, where = access(b, t)  # borrow.py's builds, through the address tables
    else:
        kernels, where = KL.kernels(), 0  # flat buffers (the simulator stages borrowed ones)
    args = (chunks, t.hyper, t.flags, flavor, skip, float(lr), t.lr_mult, t.beta1_pow,
            t.beta1_f64, t.steps, bool(b.stochastic), origin, where)
    if b.state_dtype == "bfloat16":
        kernels.bf16_update[K.grid_for(n_chunks), K.NTHREADS](params, grads, b.moment,
                                                              b.inf_norm, *args)
    else:
        kernels.int8_update[K.grid_for(n_chunks), K.NTHREADS](params, grads, b.moment,
                                                              b.inf_norm, *b.scales, *args)


# --- borrow mode: the caller's params and grads, wherever they are ------------------------------
def access(bucket, t):
    """(kernel namespace, ``where``) of a bucket's update and reduction: borrowed memory on a
    GPU goes through kernels/cuda/borrow.py's address tables, which need the segment offsets."""
    if bucket.mode == "borrow" and not K.simulated():
        from numba import cuda

        from ..kernels.cuda import borrow as KB
        if t.offsets is None:
            t.offsets = cuda.to_device(bucket.offsets)
        return KB.kernels(bucket.dtype), t.offsets
    return K.kernels(bucket.dtype), 0


def borrowed_addresses(bucket, t):
    """The device copies of the bucket's param and grad address tables (registry
    set_addresses), uploaded only when an address changed (a new grad tensor, say)."""
    from numba import cuda
    params, grads, _alive = bucket.addresses()
    if t.addresses is None or not (np.array_equal(params, t.addresses[0])
                                   and np.array_equal(grads, t.addresses[1])):
        t.addresses = (params.copy(), grads.copy(), cuda.to_device(params), cuda.to_device(grads))
    return t.addresses[2], t.addresses[3]
