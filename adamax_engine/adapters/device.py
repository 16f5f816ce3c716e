"""The device-array adapter: ``adamax_engine.Parameter`` holding numba CUDA device arrays.

``Parameter(cuda.to_device(x))`` (or any ``__cuda_array_interface__`` object, viewed zero-copy
through ``numba.cuda.as_cuda_array``) makes a parameter that ``Adamax(device="cuda")`` adopts
into its flat device buffers, exactly as the numpy adapter does on the host. numba is imported
only when such an array is actually seen.
"""
import numpy as np

from .numpy import NumpyAdapter


def is_device_array(value):
    """A numba device array, the simulator's stand-in for one, or a CUDA Array Interface object."""
    if hasattr(value, "__cuda_array_interface__"):
        return True
    if type(value).__name__ != "FakeCUDAArray":
        return False
    from ..kernels.cuda.dense import simulated
    return simulated()


def as_device_array(value):
    """A numba device array over ``value``'s memory (no copy)."""
    from numba import cuda
    if type(value).__name__ in ("DeviceNDArray", "FakeCUDAArray"):
        return value
    return cuda.as_cuda_array(value)


def check_device_array(value, what, *, dtype=None, shape=None, writeable=True):
    """check_array's rules (parameter.check_array) for device arrays; returns the numba view."""
    from ..params.parameter import SUPPORTED_DTYPES
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


def _extent(a):
    """(first byte, one past the last byte) of a device array."""
    from ..kernels.cuda.dense import simulated
    a = as_device_array(a)
    if simulated():
        start = a._ary.__array_interface__["data"][0]
    else:
        start = a.__cuda_array_interface__["data"][0]
    return start, start + a.size * a.dtype.itemsize


class DeviceAdapter(NumpyAdapter):
    """Parameter.data/.grad on a CUDA device; the registry keeps its buffers there too."""
    device = "cuda"

    @staticmethod
    def accepts(param):
        from ..params.parameter import Parameter
        return isinstance(param, Parameter) and is_device_array(param._data)

    @staticmethod
    def address(value):
        return _extent(value)[0]

    @staticmethod
    def zero_grad(param):
        from ..kernels.cuda.dense import fill
        fill(as_device_array(param._grad).reshape(-1), 0)

    @staticmethod
    def copy_into(view, value):
        view.copy_to_device(as_device_array(value) if is_device_array(value) else value)

    check = staticmethod(check_device_array)
