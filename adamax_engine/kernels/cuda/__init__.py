"""numba.cuda kernels: dense.py (the element step, update, device buffers), norms.py (sums of
squares, norm-clip scales), borrow.py (address tables), mixed.py (16-bit params, float32
masters), rows.py (row-sparse); runtime.py (device present? simulator? grid sizes).

Importing this package imports no numba.cuda: runtime.py's helpers are here at once, the
kernels' names load dense.py (and numba.cuda) on first use.
"""
from .runtime import NTHREADS, SIM_THREADS, THREADS, available, grid_for, simulated

_FROM_DENSE = ("BY_GLOBAL_NORM", "BY_NORM", "NO_NORM_CLIP", "ClipTables", "NormInputs",
               "SegmentScalars", "divide", "fill", "kernels", "zeros")


def __getattr__(name):
    if name in _FROM_DENSE:
        from . import dense
        return getattr(dense, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["NTHREADS", "SIM_THREADS", "THREADS", "available", "grid_for", "simulated",
           *_FROM_DENSE]
