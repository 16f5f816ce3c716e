"""The step interface, and the one place a backend is chosen.

``make_stepper`` resolves (backend, device) once, as torch.optim's
``_default_to_fused_or_foreach`` does: ``backend=None`` follows where the buffers live (host
memory -> numba CPU kernels, a CUDA device -> the numba.cuda kernels), ``"reference"`` forces the
numpy oracle; an explicit backend that cannot run raises, never falls back quietly. The stepper
then picks each bucket's kernels (dtype, adopt/borrow, mixed precision) from a table.

A stepper owns everything a step does after the registry has gathered the grads: the per-step
tables, norm clipping and skip_nonfinite, the fused update, row-sparse rows (step/rows.py) and,
on a GPU, the stream fence (step/streams.py). The front (optimizer.Adamax) makes one call,
``stepper.step(lr)``. ZeRO-1 (parallel/mpi.py) plugs in a sharded stepper through
``Adamax.use_stepper``.
"""
import contextlib
from typing import NamedTuple, Protocol

from ..kernels import layout as L
from . import tables
from .rows import SparseRows

BACKENDS = ("cpu", "reference", "cuda")


class StepOptions(NamedTuple):
    """What a stepper needs to know besides the registry (fixed at construction)."""
    backend: str           # resolved: "cpu", "reference" or "cuda"
    flavor: int            # layout.PADDLE / TORCH / OPTAX / KERAS
    groups: list           # the optimizer's normalised group dicts (params/groups.py)
    skip_nonfinite: bool
    lazy_mode: bool
    stream: object = None  # device="cuda": the trainer's stream (step/streams.py), or None


class Stepper(Protocol):
    """What the front calls. ``step`` runs one step over the registry's active segments."""

    def step(self, lr: float) -> None: ...
    def fenced(self): ...                    # context manager ordering work with the trainer
    def catch_up(self, entry, rows) -> None: ...
    def flush(self) -> None: ...             # row-sparse lag: every row up to date
    def forget_lag(self) -> None: ...        # a loaded state is whole: no row lags
    def reconfigure(self) -> None: ...       # the static tables changed
    @property
    def skipped_steps(self) -> int: ...
    def set_skipped(self, count: int) -> None: ...


def resolve(backend, device):
    """The backend that runs on ``device`` (see module docstring)."""
    if backend is None:
        return "cpu" if device == "cpu" else device
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS} or None, got {backend!r}")
    if (backend == "cuda") != (device == "cuda"):
        raise ValueError(f"backend: {backend!r} cannot run on device={device!r}")
    if backend == "cuda":
        from ..kernels.cuda import available
        if not available():
            raise RuntimeError("device='cuda': no CUDA GPU (and NUMBA_ENABLE_CUDASIM is not set)")
    return backend


def check_stream(stream, device):
    """The fence for ``stream`` (checked before anything is built: a bad value changes nothing)."""
    if stream is None:
        return contextlib.nullcontext()
    if device != "cuda":
        raise ValueError(f"stream: only for device='cuda', got device={device!r}")
    from .streams import StreamFence, stream_source
    return StreamFence(stream_source(stream))


def make_stepper(registry, options, fence):
    """The stepper of ``options.backend`` over ``registry`` (``fence``: check_stream's)."""
    if options.backend == "cuda":
        from .cuda import CudaStepper
        return CudaStepper(registry, options, fence)
    from .host import HostStepper
    return HostStepper(registry, options, fence)


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
        return 0 if st is None else st["n"]


def flavor_code(flavor):
    if flavor not in L.FLAVORS:
        raise ValueError(f"flavor: expected one of {sorted(L.FLAVORS)}, got {flavor!r}")
    return L.FLAVORS[flavor]
