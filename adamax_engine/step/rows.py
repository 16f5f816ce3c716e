"""Row-sparse gradients for embedding tables: ``p.grad = RowSparseGrad(rows, values)``.

paddle's Adamax does not support sparse parameters (its docs say so) and no peer does. Here a
parameter of shape (R, ...) may receive a gradient that names some rows (duplicates summed, in
the order given) and their values; ``step()`` updates only those rows in one fused kernel
(kernels/rows.py). ``Adamax(lazy_mode=False)`` (default) gives exactly the dense result, a
dense grad with zeros in the other rows: rows that are not touched lag behind and are replayed
exactly when next touched, or by ``opt.flush()`` (which ``state_dict``, ``save`` and a dense
grad on that parameter call first). A lagging row holds its value at its last update, so a
forward pass must not read it stale: ``opt.catch_up(param, rows)`` brings the rows a batch is
about to look up up to date (for torch, ``adapters.torch.keep_rows_current(embedding, opt)``
does it in a forward pre-hook); without that, the training is exact only when the grads do not
depend on the lagging rows. ``lazy_mode=True`` updates only the touched rows and leaves the
others (value and moments) as they are: cheaper, not the dense result.
Norm clipping sums the touched rows' squares (the dense grad's other entries are zero) in row
order: the same sum as a dense grad up to its summation order (last-bit differences).
History: one hyper-table row per step since the most lagging row's last update; when that
exceeds ``max_lag`` steps the whole parameter is flushed (the dense cost, amortised).
"""
from dataclasses import dataclass

import numpy as np

from ..kernels import layout as L
from ..kernels import rows as K


@dataclass(slots=True, eq=False)
class RowLag:
    """One row-sparse parameter's replay state. Counts updates, not steps (a skipped step is
    no update): ``clock`` updates so far, ``last`` each row's last update (-1: none),
    ``hist[:n]`` the hyper rows of updates ``base``, ``base + 1``, ...; rows whose ``last`` is
    behind are replayed from it."""
    last: object              # int64 per row (a device array on the GPU)
    hist: np.ndarray          # (capacity, layout.N_HYPER) in the bucket dtype
    clock: int = 0
    n: int = 0
    base: int = 0

    def record(self, hyper_row):
        """This update's hyper row (the history doubles when full); returns its update index."""
        if self.n == len(self.hist):
            self.hist = np.concatenate([self.hist, np.empty_like(self.hist)])
        self.hist[self.n] = hyper_row
        self.n += 1
        now = self.clock
        self.clock += 1
        return now

    def caught_up(self, upto):
        """Every row is up to date through update ``upto``: the history restarts after it."""
        self.n, self.base = 0, upto + 1


class SparseRows:
    """Per-parameter state of the exact (replay) mode, and the sparse part of a step."""

    def __init__(self, lazy_mode, max_lag=1000):
        if not isinstance(lazy_mode, bool):
            raise TypeError(f"lazy_mode: expected a bool, got {lazy_mode!r}")
        self.lazy, self.max_lag = lazy_mode, max_lag
        self.state = {}  # id(entry) -> RowLag

    def sums(self, entries, sparse, skip_nonfinite):
        """On the GPU: {id(bucket): (squares, inf/nan flags)} of the row-sparse grads that a
        norm clip or skip_nonfinite needs (step.cuda adds them in finish_clip)."""
        out = {}
        for e in entries if sparse else ():
            b, k = e.bucket, e.index
            if id(e) in sparse and (skip_nonfinite or b.norm_clipped[k]):
                if id(b) not in out:
                    out[id(b)] = (np.zeros(len(b.entries), b.dtype),
                                  np.zeros(len(b.entries), np.bool_))
                out[id(b)][0][k], out[id(b)][1][k] = self.sumsq(sparse[id(e)])
        return out

    def _views(self, e, param):
        b, k = e.bucket, e.index
        shape = (e.shape[0], int(np.prod(e.shape[1:], dtype=np.int64)))
        return (param.reshape(shape), b.segment(b.moment, k).reshape(shape),
                b.segment(b.inf_norm, k).reshape(shape))

    @staticmethod
    def _kernels(e):
        if e.bucket.device == "cuda":
            from ..kernels.cuda import rows as cuda_sparse
            return cuda_sparse
        return K

    def _state(self, e):
        """The entry's RowLag, made on its first row-sparse grad."""
        if id(e) not in self.state:
            last = np.full(e.shape[0], -1, np.int64)
            if e.bucket.device == "cuda":
                from numba import cuda
                last = cuda.to_device(last)
            self.state[id(e)] = RowLag(last, np.empty((8, L.N_HYPER), e.bucket.dtype))
        return self.state[id(e)]

    def update(self, e, param, grad, flavor, device_rows=None):
        """The step of one row-sparse entry (its tables are filled: lr_t, grad scale; on the
        GPU ``device_rows`` are its device table rows, which hold the clip scale)."""
        b, k = e.bucket, e.index
        rows, values = grad
        st = self._state(e)
        now = st.record(b.hyper[k])
        extra = () if device_rows is None else (device_rows,)
        self._kernels(e).rows_update(*self._views(e, param), rows, values, st.last, st.hist,
                                     st.base, now, b.flags[k], flavor, not self.lazy, *extra)
        if self.lazy:
            st.caught_up(now)
        elif st.n > self.max_lag:
            self.flush_entry(e, param, flavor)

    def flush_entry(self, e, param, flavor):
        """Bring every row of ``e`` up to its last step (exact mode; lazy mode has no lag)."""
        st = self.state.get(id(e))
        if st is None or not st.n:
            return
        upto = st.base + st.n - 1
        if not self.lazy:
            self._kernels(e).catch_up(*self._views(e, param), st.last, st.hist, st.base,
                                      upto, e.bucket.flags[e.index], flavor)
        st.caught_up(upto)

    def catch_up_rows(self, e, param, rows, flavor):
        """Bring ``rows`` of ``e`` up to its last update (exact mode): call before reading them."""
        rows = np.unique(np.asarray(rows, np.int64).reshape(-1))
        if len(rows) and (rows[0] < 0 or rows[-1] >= e.shape[0]):
            raise ValueError(f"rows: expected indices in [0, {e.shape[0]}) of {e.name!r}, got "
                             f"[{rows[0]}, {rows[-1]}]")
        st = self.state.get(id(e))
        if st is None or not st.n or self.lazy:
            return
        upto = st.base + st.n - 1
        self._kernels(e).rows_catch_up(*self._views(e, param), rows, st.last, st.hist,
                                       st.base, upto, e.bucket.flags[e.index], flavor)

    def dense_step_done(self, e):
        """A dense update moved every row (after a flush): no row lags any more."""
        st = self.state[id(e)]
        if e.bucket.device == "cuda":
            from ..kernels.cuda.dense import fill
            fill(st.last, st.clock)
        else:
            st.last[:] = st.clock
        st.clock += 1
        st.caught_up(st.clock - 1)

    def sumsq(self, grad):
        """(sum of squares, non-finite) of a checked sparse grad's summed values."""
        from ..kernels.cpu import segment_sumsq
        flat = grad[1].reshape(-1)
        chunks = L.build_chunk_table([0], [flat.size])
        sums, bad = segment_sumsq(flat, chunks, np.ones((1, L.N_FLAGS), np.int64))
        return sums[0], bad[0]
