"""The device-array adapter: ``adamax_engine.Parameter`` holding numba CUDA device arrays.

``Parameter(cuda.to_device(x))`` (or any ``__cuda_array_interface__`` object, viewed zero-copy
through ``numba.cuda.as_cuda_array``) makes a parameter that ``Adamax(device="cuda")`` adopts
into its flat device buffers, exactly as the numpy adapter does on the host. numba is imported
only when such an array is actually seen.
"""
from ..params.device_arrays import (as_device_array, check_device_array,  # noqa: F401
                                     extent, is_device_array)
from .numpy import NumpyAdapter


class DeviceAdapter(NumpyAdapter):
    """Parameter.data/.grad on a CUDA device; the registry keeps its buffers there too."""
    device = "cuda"

    @staticmethod
    def accepts(param):
        from ..params.parameter import Parameter
        return isinstance(param, Parameter) and is_device_array(param.data)

    @staticmethod
    def address(value):
        return extent(value)[0]

    @staticmethod
    def zero_grad(param):
        from ..kernels.cuda.dense import fill
        fill(as_device_array(param.grad).reshape(-1), 0)

    @staticmethod
    def copy_into(view, value):
        view.copy_to_device(as_device_array(value) if is_device_array(value) else value)

    check = staticmethod(check_device_array)
