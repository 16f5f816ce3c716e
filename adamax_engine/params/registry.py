"""The registry: flat buffers per (device, dtype), the segment table, views handed to frameworks.

Layout (the core shapes every other module imports from here or kernels/layout.py):
  Bucket   one (device, dtype): flat ``moment`` and ``inf_norm`` (+ ``params`` and ``grads`` in
           adopt mode), per-segment ``beta1_pow``/``steps``/``has_state``, the chunk table and the
           hyper/flag tables the kernels read. Segment k of a bucket is [offsets[k], +lengths[k]);
           offsets are multiples of layout.SEGMENT_ALIGN (zero-filled gaps between segments).
  Entry    one parameter: its name, shape, group, lr multiplier, regularizer, need_clip, and
           where it lives (bucket, segment index).

Modes:
  adopt    the registry owns param and grad memory; the caller's ``.data``/``.grad`` are re-pointed
           at views of the flat buffers, so a step is one kernel call and moves no extra bytes. A
           grad (or data) the caller *assigned* since is validated and copied in at the next step,
           then re-pointed: a gradient is never lost.
  borrow   the caller keeps its memory; the registry owns only optimizer state and hands the
           kernel a table of addresses (kernels.cpu.borrowed_update; on the GPU
           kernels/cuda/borrow.py, float32/float64 only).
Assumed, not checked per step: nobody resizes a parameter after registration (data of another
shape is refused), and adopted views are not written concurrently with a step.
Mixed precision: a float16/bfloat16 bucket computes in float32 on its own ``master`` copy; the
master is (re)set from the 16-bit value at registration and when a new array is assigned, and
is otherwise the truth (paddle's master weights: writing the 16-bit memory in place is
overwritten by the next step).
"""
import numpy as np

from ..kernels.layout import Operands
from .bucket import Bucket
from .dtypes import LOW_PRECISION
from .parameter import Parameter
from .rowsparse import RowSparseGrad, write_dense

MODES = ("adopt", "borrow")
DEVICES = ("cpu", "cuda")


class Registry:
    """Owns every bucket; ``gather()`` decides, once per step, which segments are active."""

    def __init__(self, entries, mode="adopt", device="cpu", state_dtype="float32",
                 stochastic=True):
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if device not in DEVICES:
            raise ValueError(f"device: expected one of {DEVICES}, got {device!r}")
        self.mode, self.device, self.entries = mode, device, list(entries)
        for e in self.entries:
            if e.adapter.device != device:
                raise ValueError(f"parameters: {e.name!r} is a {e.adapter.device} array but "
                                 f"device={device!r} (move it, or pass device={e.adapter.device!r})")
        self._params = [e.param for e in self.entries]
        kinds = {e.adapter for e in self.entries}
        batch = kinds.pop() if len(kinds) == 1 else None
        self._batch = batch if batch is not None and batch.snapshot is not None else None
        self._nbytes = np.array([e.size * e.dtype.itemsize for e in self.entries], np.int64)
        self._position = {id(e): i for i, e in enumerate(self.entries)}
        self._by_param = {id(e.param): i for i, e in enumerate(self.entries)}
        self.check_aliasing()
        self.buckets = []
        by_key = {}
        for e in self.entries:
            key = (device, e.dtype)
            if key not in by_key:
                low = e.dtype.name in LOW_PRECISION
                by_key[key] = Bucket(device, np.dtype(np.float32) if low else e.dtype, mode,
                                     store=e.dtype if low else None, state_dtype=state_dtype,
                                     stochastic=stochastic)
                self.buckets.append(by_key[key])
            by_key[key].entries.append(e)
        if device == "cuda" and mode == "borrow" and any(b.store for b in self.buckets):
            raise ValueError("mode: 'borrow' on device='cuda' takes float32/float64 parameters "
                             "(float16 with multi_precision needs mode='adopt')")
        zeros, address_of = _host_zeros, _host_address
        if device == "cuda":
            from ..kernels.cuda import zeros
            from .device_arrays import extent
            address_of = lambda view: extent(view)[0]  # noqa: E731
        for b in self.buckets:
            b.allocate(zeros, address_of)
        if mode == "adopt":
            for e in self.entries:  # copy the values in, then hand the caller our views
                e.adapter.copy_into(e.data_view, e.adapter.data(e.param))
                e.adapter.point(e.param, data=e.data_view)
            # a grad that is already there is validated and copied in by the first gather()
        for e in self.entries:
            self.refresh_master(e)
        self._seen = None
        self._last_ok = False
        self.sparse = {}  # id(entry) -> (unique rows, summed values) of this step's sparse grads
        self.dense_grads = {}  # id(entry) -> the dense grad of a row-sparse one (low-bit state)

    def gather(self, only=None):
        """Mark active segments (trainable, grad present) and bring assigned arrays in.

        Everything is validated before anything is copied, so a bad grad raises (TypeError /
        ValueError naming ``<param name>.grad``) with every buffer untouched. ``only``: a set of
        ids of the parameters a ``minimize(parameters=...)`` call restricts the step to.
        Framework tensors (no mutation counter) are re-validated only when their memory moved:
        a param whose (data, grad) addresses are the ones checked last step costs two reads.
        """
        stamp = self.entries[0].adapter.mutation_count() if self.entries else None
        again = self.sparse or self.dense_grads  # row-sparse grads: read anew every step
        if only is None and stamp is not None and stamp == self._seen and not again:
            return  # nothing assigned since the last step: the active masks still hold
        if only is None and not again and self._unchanged():
            return  # every tensor where it was: masks, views and address tables still hold
        copies, live, foreign, sparse, dense = [], {}, [], {}, {}
        masks = {id(b): np.zeros(len(b.entries), np.bool_) for b in self.buckets}
        sparse_masks = {id(b): np.zeros(len(b.entries), np.bool_) for b in self.buckets}
        for e in self.entries:
            a = e.adapter
            if not a.trainable(e.param) or (only is not None and id(e.param) not in only):
                continue
            data, grad = a.data(e.param), a.grad(e.param)
            key = None
            if stamp is None and grad is not None and a.row_sparse is not None:
                grad = a.row_sparse(grad) or grad  # a framework's sparse grad, as ours
            if stamp is None and grad is not None and not isinstance(grad, RowSparseGrad):
                key = (a.address(data), a.address(grad))
                if key == e.checked:
                    masks[id(e.bucket)][e.index] = True
                    live[id(e)] = (e, data, grad, key)
                    continue
            data_ours = e.data_view is not None and a.same(data, e.data_view, e.view_addrs[0])
            if not data_ours:
                a.check(data, f"{e.name}.data", dtype=e.dtype, shape=e.shape)
            if grad is None:
                continue
            if isinstance(grad, RowSparseGrad) and self.device == "cuda" and self.mode == "borrow":
                raise TypeError(f"{e.name}.grad: row-sparse grads borrowed on device='cuda' are "
                                "not supported yet (use mode='adopt')")
            if isinstance(grad, RowSparseGrad) and e.bucket.low_bit:
                # low-bit state's blocks span rows: stepped as the dense grad it stands for
                dense[id(e)] = grad = grad.dense(e.name, e.shape, e.dtype)
                if self.mode == "adopt" and not data_ours:
                    copies.append((e, data, None))
                masks[id(e.bucket)][e.index] = True
                live[id(e)] = (e, data, grad, None)
                continue
            if isinstance(grad, RowSparseGrad):
                if e.bucket.store is not None:
                    raise TypeError(f"{e.name}.grad: row-sparse grads with multi_precision are "
                                    "not supported yet")
                sparse[id(e)] = grad.check(e.name, e.shape, e.dtype)
                if self.mode == "adopt" and not data_ours:
                    copies.append((e, data, None))
                masks[id(e.bucket)][e.index] = sparse_masks[id(e.bucket)][e.index] = True
                continue
            grad_ours = e.grad_view is not None and a.same(grad, e.grad_view, e.view_addrs[1])
            if not grad_ours:
                a.check(grad, f"{e.name}.grad", dtype=e.dtype, shape=e.shape, writeable=False)
                foreign.append((e, a.address(grad)))
            if self.mode == "adopt" and not (data_ours and grad_ours):
                copies.append((e, None if data_ours else data, None if grad_ours else grad))
            masks[id(e.bucket)][e.index] = True
            live[id(e)] = (e, data, grad, key)
        if foreign or self.mode == "borrow":
            self.check_aliasing(foreign)
        for e, data, grad in copies:  # all valid: now copy in and re-point
            a = e.adapter
            if data is not None:
                a.copy_into(e.data_view, data)
                self.refresh_master(e)
            if grad is not None:
                a.copy_into(e.grad_view, grad)
            a.point(e.param, data=None if data is None else e.data_view,
                    grad=None if grad is None else e.grad_view)
            live[id(e)] = (e, a.data(e.param), a.grad(e.param), None)
        for key, grad in dense.items():
            e = live[key][0]
            data = e.adapter.data(e.param)  # (our view now, if it was copied in)
            live[key] = (e, data, grad, (e.adapter.address(data), grad.ctypes.data))
            if self.mode == "adopt":  # the caller's grad stays the row-sparse one it set
                write_dense(e.grad_view, grad)
        for e, data, grad, key in live.values():
            if stamp is None and (key is None or key != e.checked):
                e.mark_checked(key or (e.adapter.address(data), e.adapter.address(grad)))
        self.sparse, self.dense_grads = sparse, dense
        for b in self.buckets:
            b.set_active(masks[id(b)], sparse_masks[id(b)])
            if b.mode == "borrow":
                b.set_addresses(*self._address_tables(b, live))
        self._seen = stamp if only is None else None
        if self._batch is not None:
            self._checked = np.array([e.checked if id(e) in live else (0, 0)
                                      for e in self.entries], np.int64).reshape(-1, 2)
            self._last_ok = only is None

    @staticmethod
    def _address_tables(b, live):
        """Borrow mode: the address tables of the active dense segments' params and grads.

        ``live`` maps id(entry) -> (entry, data, grad, addresses or None) for this step's
        active entries; the arrays are kept referenced (``alive``) until the next step.
        """
        param_addrs = np.zeros(len(b.entries), np.int64)
        grad_addrs = np.zeros(len(b.entries), np.int64)
        alive = []
        for k, e in enumerate(b.entries):
            if b.active[k] and not b.sparse[k]:
                _, data, grad, key = live[id(e)]
                key = key or (e.adapter.address(data), e.adapter.address(grad))
                param_addrs[k], grad_addrs[k] = key
                alive += [data, grad]
        return param_addrs, grad_addrs, alive

    def entry_of(self, param):
        """The entry of ``param`` (ValueError when it is not one of this registry's)."""
        i = self._by_param.get(id(param))
        if i is None:
            raise ValueError("param: not a parameter of this optimizer")
        return self.entries[i]

    def configure(self, groups, flavor):
        """Fill every bucket's static tables (construction, or new per-parameter settings)."""
        for b in self.buckets:
            b.configure(groups, flavor)

    # --- the parameters' arrays, for the stepper and io/ (the adapters' only other caller) ------
    def arrays(self, e):
        """(data, grad) of entry ``e`` as its framework holds them now."""
        return e.adapter.data(e.param), e.adapter.grad(e.param)

    def param_array(self, e):
        """The parameter's memory as an array (our view when adopted, else the caller's)."""
        return e.data_view if e.data_view is not None else e.adapter.numpy(e.adapter.data(e.param))

    def operands(self, b, lists=False):
        """What a host kernel reads and writes for bucket ``b`` (kernels.layout.Operands).

        Borrow mode: the address tables of this step, or with ``lists`` (the numpy reference)
        host views of the params and grads (empty for inactive segments)."""
        params, grads = b.params, b.grads
        if b.mode == "borrow" and not lists:
            params, grads = b.param_addrs, b.grad_addrs
        elif b.mode == "borrow":
            empty = b.moment[:0]
            params = [e.adapter.numpy(e.adapter.data(e.param)) if b.active[i] else empty
                      for i, e in enumerate(b.entries)]
            grads = [(self.dense_grads[id(e)] if id(e) in self.dense_grads
                      else e.adapter.numpy(e.adapter.grad(e.param))) if b.active[i] else empty
                     for i, e in enumerate(b.entries)]
        return Operands(params, grads, b.moment, b.inf_norm, b.master, b.offsets, b.chunks,
                        b.hyper, b.flags, b.store, b.steps, b.stochastic, b.scales)

    def host_param(self, e):
        """A host copy of a parameter's current value (whatever framework or device holds it)."""
        a = e.adapter
        data = a.data(e.param)
        if a.device == "cuda":
            from .device_arrays import as_device_array
            return as_device_array(data).copy_to_host()
        return np.array(a.numpy(data), copy=True)

    def write_param(self, e, value):
        """Write ``value`` (host array of the parameter's shape and dtype) into the parameter."""
        a = e.adapter
        data = a.data(e.param)
        if a.device == "cuda":
            from .device_arrays import as_device_array
            as_device_array(data).copy_to_device(np.ascontiguousarray(value))
        else:
            a.numpy(data)[...] = value

    def name_parameters(self):
        """Unnamed ``Parameter``s take their entry's name (``param_<position>``), as paddle names
        a parameter once; called when the optimizer is built, so a failed build names none."""
        for e in self.entries:
            if isinstance(e.param, Parameter) and e.param.name is None:
                e.param.name = e.name

    def grads_of(self, params):
        """(param, grad) of each of ``params`` that is trainable and has a grad (minimize())."""
        by_id = {id(e.param): e for e in self.entries}
        out = []
        for p in params:
            a = by_id[id(p)].adapter
            grad = a.grad(p)
            if grad is not None and a.trainable(p):
                out.append((p, grad))
        return out

    def check_aliasing(self, grads=()):
        """Refuse parameters whose memory overlaps, and grads overlapping any parameter.

        ``grads``: (entry, grad address) pairs. Overlaps would make the result depend on the
        order the kernel visits elements (or silently untie "tied" weights in adopt mode).
        ValueError names both sides. Sorted spans, one vectorised search: O(n log n).
        """
        snap = self._batch.snapshot(self._params) if self._batch is not None else None
        if snap is not None:
            starts = np.asarray(snap[1], np.int64)
        else:
            starts = np.array([e.adapter.address(e.adapter.data(e.param)) for e in self.entries],
                              np.int64)
        keep = self._nbytes > 0
        order = np.flatnonzero(keep)[np.argsort(starts[keep], kind="stable")]
        lo, hi = starts[order], starts[order] + self._nbytes[order]
        clash = np.flatnonzero(lo[1:] < hi[:-1])
        if len(clash):
            a, b = (self.entries[order[clash[0]]].name, self.entries[order[clash[0] + 1]].name)
            raise ValueError(f"parameters: {a!r} and {b!r} share memory (tie weights by passing "
                             "one parameter, not two views of one array)")
        if not len(grads):
            return
        which = np.fromiter((self._position[id(e)] for e, _ in grads), np.int64, len(grads))
        start = np.fromiter((address for _, address in grads), np.int64, len(grads))
        size = self._nbytes[which]
        k = np.searchsorted(lo, start + size, "left") - 1  # the last span starting before the end
        hit = (size > 0) & (k >= 0) & (hi[np.maximum(k, 0)] > start)
        if hit.any():
            i = int(np.flatnonzero(hit)[0])
            e, other = grads[i][0], self.entries[order[k[i]]]
            what = "the parameter itself" if other is e else f"parameter {other.name!r}"
            raise ValueError(f"{e.name}.grad: shares memory with {what}")

    @staticmethod
    def refresh_master(e):
        """Mixed precision: the master weight starts as the (exactly widened) 16-bit value."""
        b = e.bucket
        if b.master is None:
            return
        master = b.segment(b.master, e.index)
        if b.device == "cuda":  # adopt only: the 16-bit value is in our view
            from ..kernels.cuda.mixed import widen_on_device
            from ..kernels.halfbits import store_code
            widen_on_device(e.data_view.reshape(-1).view(np.uint16), master.reshape(-1),
                            store_code(b.store))
            return
        value = e.data_view if e.data_view is not None else \
            e.adapter.numpy(e.adapter.data(e.param))
        master[...] = value.astype(np.float32)

    def _unchanged(self):
        """Framework tensors: one vectorised look at every (trainable, data, grad) address."""
        if self._batch is None or not self._last_ok:
            return False
        snap = self._batch.snapshot(self._params)
        if snap is None:
            return False
        train, daddr, gaddr = snap
        now = np.array([daddr, gaddr], np.int64).T
        now[~np.asarray(train, np.bool_) | (now[:, 1] == 0)] = 0  # not stepped: as recorded
        return np.array_equal(now, self._checked)

    def zero_grads(self):
        """clear_grad(set_to_zero=True): zero every existing grad (one memset per adopted bucket)."""
        for e in self.entries:
            grad = e.adapter.grad(e.param)
            if grad is not None and not (e.grad_view is not None
                                         and e.adapter.same(grad, e.grad_view, e.view_addrs[1])):
                e.adapter.zero_grad(e.param)
        for b in self.buckets:
            if b.mode == "adopt" and b.device == "cuda":
                from ..kernels.cuda.dense import fill
                fill(b.grads, 0)
            elif b.mode == "adopt":
                b.grads[...] = 0

    def clear_grads(self):
        """clear_grad(set_to_zero=False): every grad becomes None."""
        for e in self.entries:
            e.adapter.clear_grad(e.param)


#: host flat buffers start on this boundary (bytes), as torch's allocator's do: numpy's own
#: start is only 16-byte aligned, and BLAS kernels pick their code path (hence their rounding)
#: by alignment, so adopted parameters would otherwise give run-to-run last-bit differences
HOST_ALIGN = 64


def _host_zeros(n, dtype):
    dtype = np.dtype(dtype)
    raw = np.zeros(n * dtype.itemsize + HOST_ALIGN, np.uint8)
    start = -raw.ctypes.data % HOST_ALIGN
    return raw[start:start + n * dtype.itemsize].view(dtype)


def _host_address(view):
    return view.ctypes.data
