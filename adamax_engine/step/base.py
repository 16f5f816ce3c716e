"""What every stepper shares: the per-step tables, row-sparse bookkeeping, the stream fence.

Subclasses (host.py, cuda.py, parallel/mpi.py's sharded twins) provide ``dense_step``.
"""
from . import tables
from .rows import SparseRows


class StepperBase:
    """The backend-independent half of a step; subclasses provide ``dense_step``.

    One step: the per-step table columns of every active bucket (step/tables.py), row-sparse
    segments taken out of the dense kernels, the dense step (norms, clip, update), then
    beta1_pow and step counts advance (paddle advances beta1_pow on a skipped step too).
    """
    #: flag value that keeps a row-sparse segment out of the dense kernels
    SPARSE_FLAG = 0

    def __init__(self, registry, options, fence):
        self.registry, self.options = registry, options
        self.rows = SparseRows(options.lazy_mode)
        self._fence = fence

    def fenced(self):
        return self._fence

    def step(self, lr):
        """One step over the segments the registry's gather() marked active (the front calls
        it inside ``fenced()``, with the gather)."""
        reg, flavor = self.registry, self.options.flavor
        buckets = [b for b in reg.buckets if b.active.any()]
        changed = {id(b): tables.begin(b, lr, flavor) for b in buckets}
        sparse, densified = reg.sparse, []
        for e in reg.entries if sparse or self.rows.state else ():
            if id(e) in sparse:  # stepped, but the dense kernels skip it
                e.bucket.set_segment_active(e.index, self.SPARSE_FLAG)
            elif id(e) in self.rows.state and e.bucket.active[e.index]:
                self.rows.flush_entry(e, reg.param_array(e), flavor)
                densified.append(e)  # a dense grad now: every row must be up to date
        if self.dense_step(buckets, changed, lr, sparse):
            densified = []
        for b in buckets:
            tables.end(b)
        for e in densified:
            self.rows.dense_step_done(e)

    def skip(self, lr):
        """A step skipped from outside (paddle's GradScaler found an inf and says so through
        ``found_inf``): no parameter or moment changes, while beta1_pow and the step counts of
        the segments with a grad advance, as paddle's kernels do on a found_inf step."""
        reg, flavor = self.registry, self.options.flavor
        buckets = [b for b in reg.buckets if b.active.any()]
        changed = {id(b): tables.begin(b, lr, flavor) for b in buckets}
        self.advance_only(buckets, changed)
        for b in buckets:
            tables.end(b)

    def advance_only(self, buckets, changed):
        """The device side of ``skip`` (cuda.py: the end_step launches); nothing on the host."""

    def dense_step(self, buckets, changed, lr, sparse):
        """Norms, clip scales, the fused update and the row-sparse rows; True when the step
        is known (on the host) to have been skipped for a non-finite grad."""
        raise NotImplementedError

    def sparse_updates(self, sparse, device_rows=None):
        reg = self.registry
        for e in reg.entries if sparse else ():
            if id(e) in sparse:
                rows = None if device_rows is None else device_rows(e.bucket, e.index)
                self.rows.update(e, reg.param_array(e), sparse[id(e)], self.options.flavor, rows)

    def hyper_changed(self):
        """A group's lr multiplier/betas/epsilon/decay changed in the buckets' tables: the host
        kernels read them there at every step; a device copy must be refreshed (cuda.py)."""

    # --- row-sparse lag -------------------------------------------------------------------------
    def catch_up(self, entry, rows):
        with self._fence:
            self.rows.catch_up_rows(entry, self.registry.param_array(entry), rows,
                                    self.options.flavor)

    def flush(self):
        with self._fence:
            for e in self.registry.entries if self.rows.state else ():
                self.rows.flush_entry(e, self.registry.param_array(e), self.options.flavor)

    def forget_lag(self):
        self.rows.state.clear()

    def lag_of(self, entry):
        """Row-sparse history rows an entry holds (0 when none lag; tests bound it)."""
        st = self.rows.state.get(id(entry))
        return 0 if st is None else st.n
