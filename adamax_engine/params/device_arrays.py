"""CUDA device arrays as parameters hold them: recognise, view (no copy), check, locate.

numba is imported only when such an array is actually seen; anything with
``__cuda_array_interface__`` (cupy, torch.cuda) is viewed through ``numba.cuda.as_cuda_array``.
"""
import numpy as np

from .dtypes import SUPPORTED_DTYPES


def is_device_array(value):
    """A numba device array, the simulator's stand-in for one, or a CUDA Array Interface object."""
    if hasattr(value, "__cuda_array_interface__"):
        return True
    if type(value).__name__ != "FakeCUDAArray":
        return False
    from ..kernels.cuda.runtime import simulated
    return simulated()


def as_device_array(value):
    """A numba device array over ``value``'s memory (no copy)."""
    from numba import cuda
    if type(value).__name__ in ("DeviceNDArray", "FakeCUDAArray"):
        return value
    return cuda.as_cuda_array(value)


def check_device_array(value, what, *, dtype=None, shape=None, writeable=True):
    """check_array's rules (parameter.check_array) for device arrays; returns the numba view."""
    supported = SUPPORTED_DTYPES + (np.dtype(np.float16),)
    if not is_device_array(value):
        raise TypeError(f"{what}: expected a CUDA device array (numba, cupy, torch.cuda), got "
                        f"{type(value).__name__}")
    value = as_device_array(value)
    if value.dtype not in supported:
        raise TypeError(f"{what}: expected dtype float32, float64 or float16, got {value.dtype}")
    if dtype is not None and value.dtype != dtype:
        raise TypeError(f"{what}: expected dtype {dtype} (the parameter's), got {value.dtype}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise ValueError(f"{what}: expected shape {tuple(shape)} (the parameter's), got "
                         f"{tuple(value.shape)}")
    if not value.is_c_contiguous():
        raise ValueError(f"{what}: expected a C-contiguous device array")
    return value


def extent(a):
    """(first byte, one past the last byte) of a device array."""
    from ..kernels.cuda.runtime import simulated
    a = as_device_array(a)
    if simulated():
        start = a._ary.__array_interface__["data"][0]  # private-ok: the simulator has no CAI
    else:
        start = a.__cuda_array_interface__["data"][0]
    return start, start + a.size * a.dtype.itemsize
