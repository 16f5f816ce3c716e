"""The step on the host: the numba CPU kernels, or the numpy reference on request.

Per step: [the reduction pass + norm-clip scales when a norm clip or skip_nonfinite needs the
grads' norms (step/normclip.py)], then one fused update call per bucket, then the row-sparse
rows. Each bucket's kernels come from ``KERNELS``, keyed by (backend, variant): the variant is
the bucket's layout (flat adopted buffers or borrowed address tables, 32/64-bit or 16-bit with
float32 masters), fixed when the registry is built. parallel/mpi.ShardedHostStepper overrides
``prepare``/``sumsq``/``update``/``finish`` for ZeRO-1.
"""
from .base import StepperBase
from .normclip import NormClips


def variant(bucket):
    """A bucket's kernel variant: flat|borrow, mixed_ for 16-bit params with masters, _bf16 /
    _int8 for low-bit optimizer state."""
    return ("mixed_" if bucket.store is not None else "") + \
        ("flat" if bucket.mode == "adopt" else "borrow") + \
        {"bfloat16": "_bf16", "int8": "_int8"}.get(bucket.state_dtype, "")


#: (backend, variant) -> (kernel module, entry suffix). Every host kernel module names its entry
#: points ``sumsq_<suffix>(ops, flags)`` and ``update_<suffix>(ops, flavor)``, one signature per
#: operation (kernels.layout.Operands)
KERNELS = {("cpu", "flat"): ("cpu", "flat"), ("cpu", "borrow"): ("cpu", "borrow"),
           ("cpu", "mixed_flat"): ("mixed", "mixed_flat"),
           ("cpu", "mixed_borrow"): ("mixed", "mixed_borrow"),
           ("cpu", "flat_bf16"): ("lowbit", "flat_bf16"),
           ("reference", "flat_bf16"): ("lowbit_reference", "flat_bf16"),
           ("cpu", "flat_int8"): ("lowbit", "flat_int8"),
           ("reference", "flat_int8"): ("lowbit_reference", "flat_int8"),
           ("cpu", "borrow_bf16"): ("lowbit", "borrow_bf16"),
           ("reference", "borrow_bf16"): ("lowbit_reference", "borrow_bf16"),
           ("cpu", "borrow_int8"): ("lowbit", "borrow_int8"),
           ("reference", "borrow_int8"): ("lowbit_reference", "borrow_int8"),
           **{(backend, f"mixed_flat_{s}"): (module, f"mixed_flat_{s}") for s in ("bf16", "int8")
              for backend, module in (("cpu", "lowbit"), ("reference", "lowbit_reference"))},
           **{("reference", v): ("reference", v)
              for v in ("flat", "borrow", "mixed_flat", "mixed_borrow")}}


def module_for(name):
    """A host kernel module by name (imported on first use: numba compiles lazily)."""
    if name == "reference":
        from ..kernels import reference as k
    elif name == "mixed":
        from ..kernels import mixed as k
    elif name == "lowbit":
        from ..kernels import lowbit as k
    elif name == "lowbit_reference":
        from ..kernels import lowbit_reference as k
    else:
        from ..kernels import cpu as k
    return k


def kernels_for(backend, bucket):
    """(sumsq, update) of ``bucket`` on ``backend``: one table lookup."""
    name, suffix = KERNELS[backend, variant(bucket)]
    module = module_for(name)
    return getattr(module, f"sumsq_{suffix}"), getattr(module, f"update_{suffix}")


class HostStepper(StepperBase):
    """numba CPU kernels (``backend="cpu"``) or the numpy oracle (``"reference"``)."""

    def __init__(self, registry, options, fence):
        super().__init__(registry, options, fence)
        self._kernels = {id(b): kernels_for(options.backend, b) for b in registry.buckets}
        self._lists = options.backend == "reference"  # its borrow kernels take arrays
        self._operands = {}  # id(bucket) -> Operands of an adopted bucket (its arrays stay)
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
        return self._kernels[id(bucket)][0](self._ops(bucket), flags)

    def update(self, bucket):
        self._kernels[id(bucket)][1](self._ops(bucket), self.options.flavor)

    def _ops(self, bucket):
        """The bucket's kernel operands: kept for adopted buckets (the same arrays every step,
        unless a state buffer was swapped), rebuilt for borrowed ones (new address tables)."""
        ops = self._operands.get(id(bucket))
        if ops is None or ops.moment is not bucket.moment or bucket.mode != "adopt":
            ops = self.registry.operands(bucket, self._lists)
            if bucket.mode == "adopt":
                self._operands[id(bucket)] = ops
        return ops

    def finish(self, buckets):
        """After the updates (the sharded twin all-gathers the params here)."""

    @property
    def skipped_steps(self):
        return self._skipped

    def set_skipped(self, count):
        self._skipped = int(count)
