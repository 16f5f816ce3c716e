"""numba.cuda kernels: dense.py (update, norm reduction), borrow.py (address tables),
mixed.py (16-bit params, float32 masters), rows.py (row-sparse). Built on first use, never at
import; the names below are the runtime helpers and the per-dtype kernel builder."""
from .dense import (BY_GLOBAL_NORM, BY_NORM, NO_NORM_CLIP, SIM_THREADS, THREADS, available,
                    divide, fill, grid_for, kernels, simulated, zeros)

__all__ = ["BY_GLOBAL_NORM", "BY_NORM", "NO_NORM_CLIP", "SIM_THREADS", "THREADS", "available",
           "divide", "fill", "grid_for", "kernels", "simulated", "zeros"]
