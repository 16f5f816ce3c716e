"""The dtypes a parameter may have (one list for the checks of every adapter)."""
import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: 16-bit dtypes, stepped with float32 master weights (``Adamax(multi_precision=True)``);
#: bfloat16 arrays are ml_dtypes' (numpy has none of its own).
LOW_PRECISION = ("float16", "bfloat16")
DTYPE_NAMES = "float32, float64, float16 or bfloat16"


def supported(dtype):
    return dtype in SUPPORTED_DTYPES or getattr(dtype, "name", None) in LOW_PRECISION
