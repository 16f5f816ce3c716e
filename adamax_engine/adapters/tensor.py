"""What the torch and paddle adapters share: tensors reached by pointer, never copied to check.

The registry asks an adapter for a parameter's value and grad as the framework's own tensors,
validates them through ``check``, compares them with its views by address (``same``), reads
addresses for the borrow table (``address``) and zero-copy numpy views (``numpy``) where it
must copy or where the numpy reference backend runs. Only the adapter imports its framework,
and only when such a tensor is actually passed (``accepts`` looks at the type's module first).
"""
from operator import attrgetter

import numpy as np

from ..params.dtypes import DTYPE_NAMES, supported
from .protocol import AdapterBase


class TensorAdapter(AdapterBase):
    framework = ""            # the module name that owns the tensor type
    trainable_attr = ""       # the attribute only that framework's parameters have
    default_mode = "borrow"
    device = "cpu"

    @classmethod
    def accepts(cls, param):
        return cls.is_tensor(param) and hasattr(param, cls.trainable_attr)

    @staticmethod
    def grad(param):
        return param.grad

    @staticmethod
    def address(value):
        return value.data_ptr()

    # --- what subclasses provide --------------------------------------------------------------
    @staticmethod
    def numpy(value):
        """A writeable numpy view of a CPU tensor's memory (no copy)."""
        raise NotImplementedError

    @staticmethod
    def describe(value):
        """(shape tuple, numpy dtype or None, contiguous, on the adapter's device)."""
        raise NotImplementedError

    # --- shared --------------------------------------------------------------------------------
    @classmethod
    def is_tensor(cls, value):
        return type(value).__module__.split(".")[0] == cls.framework

    @classmethod
    def snapshot(cls, params):
        """(trainable, data address, grad address or 0) of every parameter as bool/int64
        arrays, or None when some grad has no address (a sparse grad: then every step rescans).

        This runs every step over every parameter, so it is C-level ``map`` passes with the
        framework's unbound methods (no Python frame per tensor): about a third of the cost
        of the equivalent list comprehensions.
        """
        grad_of, address_of, flag_of = cls._accessors()
        n = len(params)
        grads = list(map(grad_of, params))
        try:
            data = np.fromiter(map(address_of, params), np.int64, n)
            try:
                grad = np.fromiter(map(address_of, grads), np.int64, n)
            except TypeError:  # some grads are None
                grad = np.fromiter((0 if g is None else address_of(g) for g in grads),
                                   np.int64, n)
        except RuntimeError:
            return None
        flag = np.fromiter(map(flag_of, params), np.bool_, n)
        return (flag if cls.trainable_attr == "requires_grad" else ~flag), data, grad

    @classmethod
    def _accessors(cls):
        """(grad getter, unbound data_ptr, getter of ``trainable_attr``), built on first use
        (the framework is imported only once one of its tensors is here)."""
        if "_cached_accessors" not in cls.__dict__:
            cls._cached_accessors = (attrgetter("grad"), cls.tensor_type().data_ptr,
                                     attrgetter(cls.trainable_attr))
        return cls._cached_accessors

    @staticmethod
    def tensor_type():
        """The framework's tensor class (its ``data_ptr`` is called unbound)."""
        raise NotImplementedError

    @staticmethod
    def mutation_count():
        """Frameworks assign grads behind our back (backward, zero_grad): rescan every step."""
        return None

    @classmethod
    def same(cls, value, view, view_address=None):
        """Whether ``value`` (a tensor) is backed by exactly our view's memory (its address,
        when the caller has it cached: ``view.ctypes`` builds an object on every call)."""
        if view_address is None:
            view_address = view.ctypes.data
        return value is not None and cls.address(value) == view_address

    @classmethod
    def copy_into(cls, view, value):
        view[...] = cls.numpy(value)

    @staticmethod
    def zero_grad(param):
        param.grad.zero_()

    @classmethod
    def check(cls, value, what, *, dtype=None, shape=None, writeable=True):
        """parameter.check_array's rules for a tensor; nothing is cast or copied."""
        del writeable  # framework tensors are always writeable
        if not cls.is_tensor(value):
            raise TypeError(f"{what}: expected a {cls.framework} tensor, got "
                            f"{type(value).__module__}.{type(value).__name__}")
        tshape, tdtype, contiguous, on_device = cls.describe(value)
        if not on_device:
            raise ValueError(f"{what}: expected a {cls.device.upper()} tensor (the parameter's "
                             "device; CUDA parameters need Adamax(device='cuda'))")
        if not supported(tdtype) or (cls.device == "cuda" and tdtype.name == "bfloat16"):
            raise TypeError(f"{what}: expected dtype {DTYPE_NAMES}, got {tdtype}")
        if dtype is not None and tdtype != dtype:
            raise TypeError(f"{what}: expected dtype {dtype} (the parameter's), got {tdtype}")
        if shape is not None and tshape != tuple(shape):
            raise ValueError(f"{what}: expected shape {tuple(shape)} (the parameter's), got "
                             f"{tshape}")
        if not contiguous:
            raise ValueError(f"{what}: expected a contiguous tensor")
        return value

    @classmethod
    def meta(cls, param):
        shape, dtype, _, _ = cls.describe(cls.data(param))
        return shape, dtype


def numpy_dtype(name):
    """'torch.float32' / 'paddle.float32' -> np.dtype('float32'), bfloat16 -> ml_dtypes'; other
    dtypes keep their name (which then fails the dtype check with that name in the message)."""
    short = str(name).rsplit(".", 1)[-1]
    if short == "bfloat16":
        return bfloat16()
    return np.dtype(short) if short in ("float32", "float64", "float16") else short


def bfloat16():
    """numpy's bfloat16 dtype, from ml_dtypes (``pip install adamax-engine[bf16]``)."""
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError("bfloat16 tensors need the ml_dtypes package (pip install "
                        "adamax-engine[bf16])") from None
    return np.dtype(ml_dtypes.bfloat16)
