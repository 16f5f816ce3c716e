"""Data parallelism over MPI (mpi4py, extra ``[mpi]``): averaged grads, or ZeRO-1 sharded state.

``DistributedAdamax(opt, comm=None, shard_state=False)`` wraps an ``Adamax`` whose parameters are
replicas on every rank (``broadcast_parameters()`` makes them equal). Each rank computes grads
on its own data; ``step()`` then

* ``shard_state=False``: one in-place ``Allreduce`` per run of consecutive active segments of
  each flat grad buffer (cut into ``bucket_bytes`` pieces), divided by the world size, then the
  ordinary fused step on every rank;
* ``shard_state=True`` (ZeRO-1): every flat buffer is cut into one contiguous slice per rank
  (128-byte aligned). Grads are ``Reduce_scatter``-ed (each rank gets the averaged grad of its
  slice), each rank updates only its slice with the same kernel over a clipped chunk table,
  and the params are ``Allgatherv``-ed back. Moments and inf-norms exist only for the slice:
  optimizer state per rank is 1/N of the single-process state. Norm clipping sums per-segment
  partial squares across ranks (``Allreduce``), the inf/nan check of skip_nonfinite too.
  Low-bit state shards on int8 block edges with its scales, the rounding's element counter
  offset by the slice's start (``Operands.origin`` on the host, ``origin`` on the GPU).

The averaged grad is the MPI sum divided by N; the sum's order is MPI's, so results equal a
single process stepping the averaged gradient exactly when those sums are exact (the tests use
such grads), and within an ulp of each sum otherwise. A sharded run's norms are summed in
another order than a single process's (also within ulps). Checkpoints (``save``/``restore``/
``state_dict``) gather the full state: a sharded run's checkpoint is a single-process one and
vice versa. Parameters must be in adopt mode (flat grad buffers; on device="cuda" the grads go
through MPI directly when it is CUDA-aware, staged through the host otherwise, and ZeRO-1
stages through the host: ShardedCudaStepper); a parameter must have a grad on all ranks or on
none (checked every step, RuntimeError otherwise).
"""
from contextlib import contextmanager

import numpy as np

from ..kernels import layout as L
from ..kernels.lowbit_reference import BLOCK
from ..params.bucket import Shard
from ..step.host import HostStepper


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("distributed: needs mpi4py (pip install adamax-engine[mpi])") from None
    return MPI


def shard_bounds(total, size, align=L.SEGMENT_ALIGN):
    """Edges [0, ..., total] of ``size`` near-equal slices, inner edges multiples of ``align``."""
    edges = [min(total, int(round(total * r / size / align)) * align) for r in range(size + 1)]
    edges[-1] = total
    return np.maximum.accumulate(np.array(edges, np.int64))


def shard_chunks(chunks, lo, hi):
    """The chunk table clipped to [lo, hi) and shifted to slice coordinates."""
    start, end = np.maximum(chunks[:, 1], lo), np.minimum(chunks[:, 2], hi)
    keep = start < end
    return np.ascontiguousarray(np.stack([chunks[keep, 0], start[keep] - lo, end[keep] - lo],
                                         axis=1).reshape(-1, 3))


def _shard_of(b, rank, size):
    """This rank's Shard of bucket ``b`` (params/bucket.py); int8 state: on block edges."""
    edges = shard_bounds(len(b.moment), size, BLOCK if b.scales is not None else
                         L.SEGMENT_ALIGN)
    lo, hi = int(edges[rank]), int(edges[rank + 1])
    return Shard(lo, hi, np.diff(edges), edges[:-1], shard_chunks(b.chunks, lo, hi))


def _blocks(lo, hi):
    """The int8 scales' slice of the state slice [lo, hi) (lo on a block edge)."""
    return slice(lo // BLOCK, -(-hi // BLOCK))


def _take_shards(registry, comm, own):
    """Every bucket keeps only this rank's slice of its state; ``own(view)`` makes the slice's
    own buffer (a host copy, or a new device array)."""
    rank, size = comm.Get_rank(), comm.Get_size()
    for b in registry.buckets:
        shard = _shard_of(b, rank, size)
        scales = None if b.scales is None else \
            tuple(own(x[_blocks(shard.lo, shard.hi)]) for x in b.scales)
        b.take_shard(shard, own(b.moment[shard.lo:shard.hi]), own(b.inf_norm[shard.lo:shard.hi]),
                     scales)


class ShardedHostStepper(HostStepper):
    """The host stepper for ZeRO-1: reduce-scatter, update one slice, all-gather."""

    def __init__(self, registry, options, fence, comm):
        super().__init__(registry, options, fence)
        self.MPI, self.comm = _mpi(), comm
        _take_shards(registry, comm, np.copy)

    def prepare(self, buckets):
        size = self.comm.Get_size()
        for b in buckets:
            lo, hi = b.shard.lo, b.shard.hi
            mine = np.empty(hi - lo, b.dtype)
            self.comm.Reduce_scatter(b.grads, mine, recvcounts=b.shard.counts, op=self.MPI.SUM)
            np.divide(mine, b.dtype.type(size), out=b.grads[lo:hi])

    def sumsq(self, bucket, flags):
        sums, bad = self._kernels[id(bucket)][0](self._slice(bucket), flags)
        bad = bad.astype(np.uint8)
        self.comm.Allreduce(self.MPI.IN_PLACE, sums, op=self.MPI.SUM)
        self.comm.Allreduce(self.MPI.IN_PLACE, bad, op=self.MPI.MAX)
        return sums, bad.astype(np.bool_)

    def update(self, bucket):
        self._kernels[id(bucket)][1](self._slice(bucket), self.options.flavor)

    def _slice(self, bucket):
        """This rank's slice of the bucket, in slice coordinates (its state is the slice; the
        flat kernels of the bucket's variant step it, ``origin`` keeping the low-bit rounding's
        element count global)."""
        lo, hi = bucket.shard.lo, bucket.shard.hi
        return self.registry.operands(bucket)._replace(
            params=bucket.params[lo:hi], grads=bucket.grads[lo:hi], chunks=bucket.shard.chunks,
            origin=lo)

    def finish(self, buckets):
        for b in buckets:
            self.comm.Allgatherv(self.MPI.IN_PLACE, [b.params, (b.shard.counts, b.shard.displs)])


def _sharded_cuda_stepper():
    """ShardedCudaStepper, defined on first use (step/cuda.py imports numba's CUDA support)."""
    from ..step.cuda import CudaStepper

    class ShardedCudaStepper(CudaStepper):
        """ZeRO-1 on device="cuda": each rank steps its slice of every flat device buffer.

        Grads are reduce-scattered and params all-gathered through host memory (one copy of
        each buffer per step; CUDA-aware transfers are not built for sharding). The norms:
        per-chunk partials on the device, summed per segment on the host in chunk order,
        all-reduced, then handed to finish_clip as its per-segment ``extra`` sums (with no chunk
        partials of its own), so the clip scales and the skip flag are global.
        """

        def __init__(self, registry, options, fence, comm):
            super().__init__(registry, options, fence)
            from numba import cuda
            self.MPI, self.comm = _mpi(), comm
            _take_shards(registry, comm, lambda view: cuda.to_device(view.copy_to_host()))
            for b in registry.buckets:
                self.tables[id(b)].use_shard(b)

        def reconfigure(self):
            super().reconfigure()
            for b in self.registry.buckets:
                if b.shard is not None:
                    self.tables[id(b)].use_shard(b)

        def launch(self, buckets, changed, lr, extra=None):
            size = self.comm.Get_size()
            for b in buckets:  # reduce-scatter: each rank gets the averaged grads of its slice
                lo, hi = b.shard.lo, b.shard.hi
                mine = np.empty(hi - lo, b.dtype)
                self.comm.Reduce_scatter(b.grads.copy_to_host(), mine,
                                         recvcounts=b.shard.counts, op=self.MPI.SUM)
                b.grads[lo:hi].copy_to_device(mine / b.dtype.type(size))
            super().launch(buckets, changed, lr, extra)
            for b in buckets:  # all-gather the stepped slices
                lo, hi = b.shard.lo, b.shard.hi
                full = np.empty(len(b.params), b.dtype)
                self.comm.Allgatherv(b.params[lo:hi].copy_to_host(),
                                     [full, (b.shard.counts, b.shard.displs)])
                b.params.copy_to_device(full)

        @staticmethod
        def origin(b):
            return b.shard.lo  # low-bit state: the rounding counts from the bucket's start

        def _views(self, b, t):
            lo, hi = b.shard.lo, b.shard.hi
            return (b.params[lo:hi], b.grads[lo:hi], b.moment, b.inf_norm, t.shard_chunks,
                    len(b.shard.chunks))

        def _norms(self, b, t, skip_nonfinite, first):
            self._partials(b, t, skip_nonfinite)
            n = len(b.entries)
            sums, bad = np.zeros(n, b.dtype), np.zeros(n, np.int32)
            if len(b.shard.chunks):
                np.add.at(sums, b.shard.chunks[:, 0], t.norms.partial.copy_to_host())
                np.maximum.at(bad, b.shard.chunks[:, 0], t.norms.bad.copy_to_host())
            self.comm.Allreduce(self.MPI.IN_PLACE, sums, op=self.MPI.SUM)
            self.comm.Allreduce(self.MPI.IN_PLACE, bad, op=self.MPI.MAX)
            self._set_extra(t, (sums, bad))
            self._finish(b, t, skip_nonfinite, first)

    return ShardedCudaStepper


class DistributedAdamax:
    """An Adamax whose step averages grads over MPI ranks (see the module docstring).

    ``cuda_aware`` (device="cuda"): hand MPI the device buffers (True), stage through the host
    (False), or ask MPI (None: ``MPI.Query_cuda_support()`` where mpi4py has it, else False).
    Everything else (clear_grad, get_lr, set_lr, ...) is the wrapped optimizer's. Raises
    ValueError for parameters not adopted, or ZeRO-1 with multi_precision.
    """

    def __init__(self, optimizer, comm=None, shard_state=False, bucket_bytes=1 << 25,
                 cuda_aware=None):
        self.MPI = _mpi()
        self.opt, self.comm = optimizer, comm if comm is not None else self.MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        reg = optimizer.registry
        if reg.mode != "adopt":
            raise ValueError("distributed: needs parameters in adopt mode (flat grad buffers), "
                             f"got mode={reg.mode!r}")
        self.cuda = reg.device == "cuda"
        if cuda_aware not in (None, True, False):
            raise ValueError(f"cuda_aware: expected None, True or False, got {cuda_aware!r}")
        if cuda_aware is None:  # MPIX_Query_cuda_support where mpi4py exposes it, else stage
            query = getattr(self.MPI, "Query_cuda_support", None)
            from ..kernels.cuda.runtime import simulated
            cuda_aware = bool(query is not None and not simulated() and query())
        self.cuda_aware = self.cuda and cuda_aware
        if shard_state and any(b.store is not None for b in reg.buckets):
            raise ValueError("distributed: shard_state=True with multi_precision is not "
                             "supported yet")
        if not isinstance(bucket_bytes, int) or bucket_bytes < 1024:
            raise ValueError(f"bucket_bytes: expected an int >= 1024, got {bucket_bytes!r}")
        self.shard_state, self.bucket_bytes = bool(shard_state), bucket_bytes
        if self.shard_state:
            sharded = _sharded_cuda_stepper() if self.cuda else ShardedHostStepper
            optimizer.use_stepper(
                lambda registry, options, fence: sharded(registry, options, fence, self.comm))

    def __getattr__(self, name):
        return getattr(self.opt, name)

    def broadcast_parameters(self, root=0):
        """Make every rank's parameters equal to ``root``'s (call once, before training)."""
        for b in self.opt.registry.buckets:
            self._collective(b.params, lambda buf: self.comm.Bcast(buf, root=root))
        for e in self.opt.registry.entries:
            self.opt.registry.refresh_master(e)

    def step(self):
        """Average the grads over the ranks, then one Adamax step (collective: every rank)."""
        reg = self.opt.registry
        reg.gather()
        if reg.sparse:
            raise TypeError("distributed: row-sparse grads are not supported yet (densify them)")
        self._check_same_grads(reg)
        if not self.shard_state:
            for b in reg.buckets:
                self._allreduce(b)
        self.opt.step()

    def _check_same_grads(self, reg):
        mask = np.concatenate([b.active for b in reg.buckets]).astype(np.uint8)
        lo, hi = mask.copy(), mask.copy()
        self.comm.Allreduce(self.MPI.IN_PLACE, lo, op=self.MPI.MIN)
        self.comm.Allreduce(self.MPI.IN_PLACE, hi, op=self.MPI.MAX)
        if not np.array_equal(lo, hi):
            entries = [e for b in reg.buckets for e in b.entries]
            name = entries[int(np.flatnonzero(lo != hi)[0])].name
            raise RuntimeError(f"distributed: parameter {name!r} has a grad on some ranks and "
                               "not on others (every rank must step the same parameters)")

    def _allreduce(self, b):
        """Sum then divide each run of consecutive active segments of b.grads, in pieces."""
        k, n = 0, len(b.entries)
        step = max(1, self.bucket_bytes // b.dtype.itemsize)
        while k < n:
            if not b.active[k]:
                k += 1
                continue
            j = k
            while j + 1 < n and b.active[j + 1]:
                j += 1
            lo, hi = int(b.offsets[k]), int(b.offsets[j] + b.lengths[j])
            for a in range(lo, hi, step):
                piece = b.grads[a:min(hi, a + step)]
                self._collective(piece, lambda buf: self.comm.Allreduce(
                    self.MPI.IN_PLACE, buf, op=self.MPI.SUM))
                if self.cuda:
                    from ..kernels.cuda.dense import divide
                    divide(piece, self.size)
                else:
                    np.divide(piece, b.dtype.type(self.size), out=piece)
            k = j + 1

    def _collective(self, buf, op):
        """Run ``op`` on a host buffer, or on a device one: directly when MPI is CUDA-aware
        (``__cuda_array_interface__``), else staged through host memory."""
        if not self.cuda or self.cuda_aware:
            op(buf)
            return
        host = buf.copy_to_host()
        op(host)
        buf.copy_to_device(host)

    # --- state: gathered whole, so checkpoints are single-process ones --------------------------
    @contextmanager
    def _full_state(self, write_back=False):
        buckets = self.opt.registry.buckets if self.shard_state else []
        saved = [b.swap_state(*self._gathered(b)) for b in buckets]
        ok = False
        try:
            yield
            ok = True
        finally:
            for b, (m, u, scales) in zip(buckets, saved):
                if ok and write_back:
                    lo, hi = b.shard.lo, b.shard.hi
                    pairs = [(m, b.moment[lo:hi]), (u, b.inf_norm[lo:hi])]
                    if scales is not None:
                        pairs += [(mine, whole[_blocks(lo, hi)])
                                  for mine, whole in zip(scales, b.scales)]
                    for dst, src in pairs:
                        if isinstance(dst, np.ndarray):
                            dst[...] = src
                        else:
                            dst.copy_to_device(np.ascontiguousarray(src))
                b.swap_state(m, u, scales)

    def _gathered(self, b):
        """The whole (moment, inf_norm, scales or None) of a sharded bucket, on every rank (on
        the GPU assembled in host memory); low-bit state as held, codes and scales."""
        def gather(part, counts, displs):
            whole = np.empty(int(counts.sum()), part.dtype)
            host = part if isinstance(part, np.ndarray) else part.copy_to_host()
            self.comm.Allgatherv(host, [whole, (counts, displs)])
            return whole
        counts, displs = b.shard.counts, b.shard.displs
        full = [gather(part, counts, displs) for part in (b.moment, b.inf_norm)]
        if b.scales is None:
            return full[0], full[1], None
        edges = np.append(displs, displs[-1] + counts[-1])
        first, last = edges[:-1] // BLOCK, -(-edges[1:] // BLOCK)
        return full[0], full[1], tuple(gather(x, last - first, first) for x in b.scales)

    def state_dict(self):
        """The full (gathered) state dict, as a single process would return it (copies)."""
        with self._full_state():
            return {k: (dict(v) if isinstance(v, dict) else np.array(v, copy=True))
                    for k, v in self.opt.state_dict().items()}

    def set_state_dict(self, state_dict, check_values=True):
        with self._full_state(write_back=True):
            self.opt.set_state_dict(state_dict, check_values)

    def save(self, path, extra=None, extra_arrays=None):
        """Rank 0 writes a single-process checkpoint (collective: every rank calls it)."""
        with self._full_state():
            if self.rank == 0:
                self.opt.save(path, extra, extra_arrays)
        self.comm.Barrier()

    def restore(self, path, match="name", params=True, check_values=True):
        """Every rank reads the same (single-process or sharded-run) checkpoint."""
        with self._full_state(write_back=True):
            return self.opt.restore(path, match=match, params=params, check_values=check_values)

    def state_bytes(self):
        """Bytes of optimizer state (moments, inf-norms, int8 scales) this rank holds."""
        return sum(b.moment.nbytes + b.inf_norm.nbytes + sum(x.nbytes for x in b.scales or ())
                   for b in self.opt.registry.buckets)
