"""``Parameter``: a numpy array plus paddle's per-parameter attributes, so plain-numpy trainers work."""
import math

import numpy as np

from .device_arrays import check_device_array, is_device_array
from .dtypes import DTYPE_NAMES, supported



def check_array(value, what, *, dtype=None, shape=None, writeable=True):
    """Refuse, with a message naming ``what``, anything the kernels could not use as-is.

    Nothing is cast or copied here: a wrong dtype, a non-contiguous or read-only array is an error.
    """
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{what}: expected a numpy.ndarray, got {type(value).__name__}")
    if not supported(value.dtype):
        raise TypeError(f"{what}: expected dtype {DTYPE_NAMES}, got {value.dtype}")
    if dtype is not None and value.dtype != dtype:
        raise TypeError(f"{what}: expected dtype {dtype} (the parameter's), got {value.dtype}")
    if shape is not None and value.shape != tuple(shape):
        raise ValueError(f"{what}: expected shape {tuple(shape)} (the parameter's), got {value.shape}")
    if not value.flags.c_contiguous:
        raise ValueError(f"{what}: expected a C-contiguous array (use np.ascontiguousarray)")
    if writeable and not value.flags.writeable:
        raise ValueError(f"{what}: expected a writeable array, got a read-only one")
    return value


def host_view(value):
    """A numpy view (no copy) of anything exposing DLPack or ``__array_interface__``; other
    values are returned as they are (for check_array to refuse)."""
    if isinstance(value, np.ndarray):
        return value
    try:
        if hasattr(value, "__dlpack__"):
            return np.from_dlpack(value)
        if hasattr(value, "__array_interface__"):
            return np.asarray(value)
    except (BufferError, TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"array: cannot view {type(value).__name__} as a host array ({exc})") \
            from None
    return value


class Parameter:
    """A trainable numpy array: ``.data`` (ndarray) and ``.grad`` (ndarray or None).

    ``array`` may also be any host array exposing DLPack or ``__array_interface__`` (viewed,
    never copied: a read-only one such as a JAX array is refused), or a CUDA device array (numba's, or any ``__cuda_array_interface__``
    object, viewed without a copy) for ``Adamax(device="cuda")``; ``.grad`` is then one too.

    Mirrors paddle's ``ParamAttr``: ``learning_rate`` multiplies the optimizer's lr,
    ``regularizer`` (L1Decay/L2Decay) overrides the optimizer's weight_decay, ``need_clip=False``
    exempts the grad from every clipper, ``trainable=False`` (paddle's stop_gradient) skips it.

    Once an optimizer adopts the parameter, ``.data`` and ``.grad`` are views into its flat
    buffers: in-place updates (``p.grad += g``) cost nothing; assigning a new array is fine too
    (it is copied in at the next step and the attribute re-pointed at the view).

    Raises TypeError / ValueError (naming ``array``) for a non-ndarray, a dtype other than
    float32/float64/float16/bfloat16, a non-contiguous or a read-only array.
    """

    # bumped on every assignment of .data/.grad, so a step can skip re-scanning when nothing moved
    mutations = 0

    def __init__(self, array, name=None, learning_rate=1.0, regularizer=None, need_clip=True,
                 trainable=True):
        if is_device_array(array):
            array = check_device_array(array, "array")
        else:
            check_array(host_view(array), "array")
            array = host_view(array)
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)):
            raise TypeError(f"learning_rate: expected a float, got {type(learning_rate).__name__}")
        if not math.isfinite(learning_rate):
            raise ValueError(f"learning_rate: expected a finite number, got {learning_rate!r}")
        self._data = array
        self._grad = None
        # unnamed: the optimizer names it by its position (param_<k>), so a checkpoint of
        # unnamed parameters loads into fresh ones built the same way, in any process
        self.name = None if name is None else str(name)
        self.optimize_attr = {"learning_rate": float(learning_rate)}
        self.regularizer = regularizer
        self.need_clip = bool(need_clip)
        self._stop_gradient = not trainable

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        Parameter.mutations += 1
        self._data = value

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        Parameter.mutations += 1
        self._grad = value

    def repoint(self, data=None, grad=None):
        """The registry re-points .data/.grad at its views (adopt mode): not a user assignment,
        so the mutation counter is not bumped."""
        if data is not None:
            self._data = data
        if grad is not None:
            self._grad = grad

    @property
    def stop_gradient(self):
        return self._stop_gradient

    @stop_gradient.setter
    def stop_gradient(self, value):
        Parameter.mutations += 1
        self._stop_gradient = bool(value)

    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    def numpy(self):
        """A copy of the values on the host (paddle's Tensor.numpy())."""
        if isinstance(self._data, np.ndarray):
            return self._data.copy()
        return self._data.copy_to_host()

    def __repr__(self):
        return f"Parameter(name={self.name!r}, shape={self.shape}, dtype={self.dtype})"
