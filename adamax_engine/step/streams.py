"""Ordering the engine's GPU work with a framework's CUDA stream: ``Adamax(stream=...)``.

The engine launches its kernels and copies on numba's default stream. That is right for a
trainer on torch's or cupy's default stream (the legacy default stream, which orders with ours).
A trainer whose forward/backward runs on another stream (``with torch.cuda.stream(s):``, a cupy
``Stream``) would race with it: those streams are non-blocking, they do not wait for the
default stream nor it for them. With ``stream=`` set, every step is fenced on the device:

    enter: an event recorded on the trainer's stream; numba's default stream waits for it
    exit:  an event recorded on numba's default stream; the trainer's stream waits for it

so the step sees the grads the backward wrote, and the next forward sees the step's params.
Two event records and two waits per step, nothing waits on the host (no sync).

``stream`` is one of: ``"torch"`` / ``"cupy"`` (that framework's *current* stream, looked up at
every step, so ``with torch.cuda.stream(s):`` around the step is followed), a
``torch.cuda.Stream`` (``.cuda_stream``), a ``cupy.cuda.Stream`` (``.ptr``), a raw
``cudaStream_t`` int, or a numba stream. A handle of 0 is the legacy default stream: no fence.
"""

_FRAMEWORKS = ("torch", "cupy")


def stream_source(value):
    """A callable giving the trainer's numba stream at each step (None: nothing to fence).

    Raises TypeError naming ``stream`` for anything else than the kinds above.
    """
    if isinstance(value, str) and value in _FRAMEWORKS:
        return _current(value)
    if isinstance(value, bool) or not (isinstance(value, int) or _is_numba_stream(value)
                                       or hasattr(value, "cuda_stream") or hasattr(value, "ptr")):
        raise TypeError(f"stream: expected 'torch', 'cupy', a torch.cuda.Stream, a cupy Stream, "
                        f"a numba stream or a cudaStream_t int, got {value!r}")
    fixed = value if _is_numba_stream(value) else _external(_handle(value))
    return lambda: fixed


def _is_numba_stream(value):
    return type(value).__module__.startswith("numba") and hasattr(value, "synchronize")


def _handle(value):
    """The cudaStream_t of a torch / cupy stream object or an int."""
    if hasattr(value, "cuda_stream"):
        return int(value.cuda_stream)
    if hasattr(value, "ptr"):
        return int(value.ptr)
    return int(value)


def _current(framework):
    """The framework's current stream, asked at every step (the framework is imported then)."""
    def torch_stream():
        import torch
        return _external(torch.cuda.current_stream().cuda_stream)

    def cupy_stream():
        import cupy
        return _external(cupy.cuda.get_current_stream().ptr)
    return torch_stream if framework == "torch" else cupy_stream


_EXTERNAL = {}


def _external(handle):
    """numba's wrapper of a foreign stream (cached per handle); None for the default stream."""
    if not handle:
        return None
    if handle not in _EXTERNAL:
        from numba import cuda
        if not hasattr(cuda, "external_stream"):
            raise ValueError("stream: a framework's CUDA stream needs a real GPU (numba's CUDA "
                             "simulator has none); pass a numba.cuda.stream() there")
        _EXTERNAL[handle] = cuda.external_stream(handle)
    return _EXTERNAL[handle]


class StreamFence:
    """``with fence:`` around a step's GPU work (see the module docstring)."""

    def __init__(self, source):
        from numba import cuda
        self._source = source
        from ..kernels.cuda.runtime import simulated
        event = cuda.event if simulated() else lambda: cuda.event(timing=False)  # (sim: no args)
        self._ready, self._done = event(), event()
        self._ours = cuda.default_stream() if hasattr(cuda, "default_stream") else 0
        self._theirs = None

    def __enter__(self):
        self._theirs = self._source()
        if self._theirs is not None:
            self._ready.record(self._theirs)
            self._ready.wait(self._ours)
        return self

    def __exit__(self, *exc):
        if self._theirs is not None:
            self._done.record(self._ours)
            self._done.wait(self._theirs)
        self._theirs = None
