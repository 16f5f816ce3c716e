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

BACKENDS = ("cpu", "reference", "cuda")


class StepOptions(NamedTuple):
    """What a stepper needs to know besides the registry (fixed at construction)."""
    backend: str           # resolved: "cpu", "reference" or "cuda"
    flavor: int            # layout.PADDLE / TORCH / OPTAX / KERAS
    groups: list           # the optimizer's normalised group dicts (params/groups.py)
    skip_nonfinite: bool
    lazy_mode: bool


class Stepper(Protocol):
    """What the front calls. ``step`` runs one step over the registry's active segments."""

    def step(self, lr: float) -> None: ...
    def skip(self, lr: float) -> None: ...   # a step skipped from outside (found_inf)
    def fenced(self): ...                    # context manager ordering work with the trainer
    def catch_up(self, entry, rows) -> None: ...
    def flush(self) -> None: ...             # row-sparse lag: every row up to date
    def forget_lag(self) -> None: ...        # a loaded state is whole: no row lags
    def reconfigure(self) -> None: ...       # the static tables changed
    def hyper_changed(self) -> None: ...     # a group's lr multiplier / betas / decay changed
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
        from ..kernels.cuda.runtime import available
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


def flavor_code(flavor):
    if flavor not in L.FLAVORS:
        raise ValueError(f"flavor: expected one of {sorted(L.FLAVORS)}, got {flavor!r}")
    return L.FLAVORS[flavor]
