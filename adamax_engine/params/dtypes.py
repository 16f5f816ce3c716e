"""The dtypes a parameter may have (one list for the checks of every adapter)."""
import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: 16-bit dtypes, stepped with float32 master weights (``Adamax(multi_precision=True)``);
#: bfloat16 arrays are ml_dtypes' (numpy has none of its own).
LOW_PRECISION = ("float16", "bfloat16")
DTYPE_NAMES = "float32, float64, float16 or bfloat16"


def supported(dtype):
    return dtype in SUPPORTED_DTYPES or getattr(dtype, "name", None) in LOW_PRECISION


STATE_DTYPES = ("float32", "bfloat16", "int8")


def check_state_dtype(state_dtype, rounding, mode, multi_precision, lazy_mode, entries):
    """Low-bit state takes float32/float64 parameters (adopted or borrowed) and float16/bfloat16
    ones with multi_precision (adopted), on the CPU and on a GPU: anything else is refused here
    or by the registry, naming what to change."""
    if state_dtype not in STATE_DTYPES:
        raise ValueError(f"state_dtype: expected one of {STATE_DTYPES}, got {state_dtype!r}")
    if rounding not in ("stochastic", "nearest"):
        raise ValueError("state_rounding: expected 'stochastic' or 'nearest', got "
                         f"{rounding!r}")
    if state_dtype == "float32":
        return
    if lazy_mode:
        raise ValueError(f"lazy_mode=True with state_dtype={state_dtype!r}: low-bit state steps "
                         "a row-sparse grad as the dense grad it stands for (its blocks span "
                         "rows), which is lazy_mode=False's result; pass lazy_mode=False")
    if multi_precision and mode == "borrow":
        raise ValueError(f"state_dtype={state_dtype!r} with multi_precision runs with "
                         "mode='adopt' (the float32 masters are the engine's own buffers)")
    for e in entries:
        if e.dtype.name not in ("float32", "float64") + (LOW_PRECISION if multi_precision
                                                          else ()):
            kind = type(e.param).__module__.split(".")[0].replace("adamax_engine", "numpy")
            raise ValueError(f"state_dtype={state_dtype!r}: {e.name!r} is a {e.dtype.name} "
                             f"{kind} parameter; low-bit state takes float32 or float64 "
                             "parameters (float16/bfloat16 with multi_precision=True)")
