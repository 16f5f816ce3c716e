"""numba.cuda kernels: dense.py (update, norm reduction, device buffers), borrow.py (address
tables), mixed.py (16-bit params, float32 masters), rows.py (row-sparse); runtime.py (device
present? simulator? grid sizes). Built on first use, never at import."""
from .dense import BY_GLOBAL_NORM, BY_NORM, NO_NORM_CLIP, divide, fill, kernels, zeros
from .runtime import SIM_THREADS, THREADS, available, grid_for, simulated

__all__ = ["BY_GLOBAL_NORM", "BY_NORM", "NO_NORM_CLIP", "SIM_THREADS", "THREADS", "available",
           "divide", "fill", "grid_for", "kernels", "simulated", "zeros"]
