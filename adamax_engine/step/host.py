"""The step on the host: the numba CPU kernels, or the numpy reference on request.

Per step: [the reduction pass + norm-clip scales when a norm clip or skip_nonfinite needs the
grads' norms (step/normclip.py)], then one fused update call per bucket, then the row-sparse
rows. Each bucket's kernels come from ``KERNELS``, keyed by (backend, variant): the variant is
the bucket's layout (flat adopted buffers or borrowed address tables, 32/64-bit or 16-bit with
float32 masters), fixed when the registry is built. parallel/mpi.ShardedHostStepper overrides
``prepare``/``sumsq``/``update``/``finish`` for ZeRO-1.
"""
import numpy as np

from .normclip import NormClips
from .base import StepperBase

_BITS = np.empty(0, np.uint16)


def variant(bucket):
    """A bucket's kernel variant: flat|borrow, and mixed_ for 16-bit params with masters."""
    return ("mixed_" if bucket.store is not None else "") + \
        ("flat" if bucket.mode == "adopt" else "borrow")


# --- the table: (backend, variant) -> (sumsq(reg, bucket, flags), update(reg, bucket, flavor)) -
def _module(backend, mixed):
    if backend == "reference":
        from ..kernels import reference as k
    elif mixed:
        from ..kernels import mixed as k
    else:
        from ..kernels import cpu as k
    return k


def module_for(backend):
    """The flat fp32/fp64 kernel module of ``backend`` (the sharded twin calls it on slices)."""
    return _module(backend, False)


def _store(b):
    from ..kernels.halfbits import store_code
    return store_code(b.store)


def _cpu_flat(k):
    return (lambda reg, b, flags: k.segment_sumsq(b.grads, b.chunks, flags),
            lambda reg, b, flavor: k.fused_update(b.params, b.grads, b.moment, b.inf_norm,
                                                  b.chunks, b.hyper, b.flags, flavor))


def _cpu_borrow(k):
    def sumsq(reg, b, flags):
        return k.borrowed_sumsq(b.grad_addrs, b.offsets, b.chunks, flags, b.moment)

    def update(reg, b, flavor):
        k.borrowed_update(b.param_addrs, b.grad_addrs, b.moment, b.inf_norm, b.offsets,
                          b.chunks, b.hyper, b.flags, flavor)
    return sumsq, update


def _ref_borrow(k):
    def sumsq(reg, b, flags):
        _, grads = reg.borrowed_arrays(b)
        return k.borrowed_sumsq(grads, b.offsets, b.chunks, flags, b.moment)

    def update(reg, b, flavor):
        params, grads = reg.borrowed_arrays(b)
        k.borrowed_update(params, grads, b.moment, b.inf_norm, b.offsets, b.chunks, b.hyper,
                          b.flags, flavor)
    return sumsq, update


def _mixed_flat(k):
    def sumsq(reg, b, flags):
        return k.segment_sumsq(b.grads.view(np.uint16), b.chunks, flags, _store(b))

    def update(reg, b, flavor):
        k.fused_update(b.params.view(np.uint16), b.grads.view(np.uint16), b.master, b.moment,
                       b.inf_norm, b.chunks, b.hyper, b.flags, flavor, _store(b))
    return sumsq, update


def _mixed_borrow(k):
    def sumsq(reg, b, flags):
        return k.borrowed_sumsq(b.grad_addrs, b.offsets, b.chunks, flags, _store(b), _BITS)

    def update(reg, b, flavor):
        k.borrowed_update(b.param_addrs, b.grad_addrs, b.master, b.moment, b.inf_norm,
                          b.offsets, b.chunks, b.hyper, b.flags, flavor, _store(b), _BITS)
    return sumsq, update


def _ref_mixed_flat(k):
    def sumsq(reg, b, flags):
        return k.segment_sumsq(b.grads.astype(np.float32), b.chunks, flags)

    def update(reg, b, flavor):
        k.mixed_update(b.params, b.grads, b.master, b.moment, b.inf_norm, b.chunks, b.hyper,
                       b.flags, flavor)
    return sumsq, update


def _ref_mixed_borrow(k):
    def sumsq(reg, b, flags):
        _, grads = reg.borrowed_arrays(b)
        return k.borrowed_sumsq([g.astype(np.float32) for g in grads], b.offsets, b.chunks,
                                flags, b.moment)

    def update(reg, b, flavor):
        params, grads = reg.borrowed_arrays(b)
        k.mixed_borrowed_update(params, grads, b.master, b.moment, b.inf_norm, b.offsets,
                                b.chunks, b.hyper, b.flags, flavor)
    return sumsq, update


KERNELS = {
    ("cpu", "flat"): _cpu_flat, ("cpu", "borrow"): _cpu_borrow,
    ("cpu", "mixed_flat"): _mixed_flat, ("cpu", "mixed_borrow"): _mixed_borrow,
    ("reference", "flat"): _cpu_flat, ("reference", "borrow"): _ref_borrow,
    ("reference", "mixed_flat"): _ref_mixed_flat, ("reference", "mixed_borrow"): _ref_mixed_borrow,
}


def kernels_for(backend, bucket):
    """(sumsq, update) of ``bucket`` on ``backend``: one table lookup (modules load lazily,
    numba compiles on first call)."""
    kind = variant(bucket)
    return KERNELS[backend, kind](_module(backend, kind.startswith("mixed")))


class HostStepper(StepperBase):
    """numba CPU kernels (``backend="cpu"``) or the numpy oracle (``"reference"``)."""

    def __init__(self, registry, options, fence=None):
        import contextlib
        super().__init__(registry, options, fence or contextlib.nullcontext())
        self._kernels = {id(b): kernels_for(options.backend, b) for b in registry.buckets}
        self._skipped = 0
        self.reconfigure()

    def reconfigure(self):
        self._norms = NormClips(self.options.groups, self.registry.buckets,
                                self.options.skip_nonfinite)

    def dense_step(self, buckets, changed, lr, sparse):
        self.prepare(buckets)
        if self._norms.apply(buckets, self, self.rows, sparse):
            self._skipped += 1
            return True
        for b in buckets:
            self.update(b)
        self.sparse_updates(sparse)
        self.finish(buckets)
        return False

    # --- the four parts a sharded twin overrides ------------------------------------------------
    def prepare(self, buckets):
        """Before any reduction or update (the sharded twin reduce-scatters the grads here)."""

    def sumsq(self, bucket, flags):
        """Per-segment (sum of grad^2, non-finite) for the segments with flags[:, 0] set."""
        return self._kernels[id(bucket)][0](self.registry, bucket, flags)

    def update(self, bucket):
        self._kernels[id(bucket)][1](self.registry, bucket, self.options.flavor)

    def finish(self, buckets):
        """After the updates (the sharded twin all-gathers the params here)."""

    @property
    def skipped_steps(self):
        return self._skipped

    def set_skipped(self, count):
        self._skipped = int(count)
