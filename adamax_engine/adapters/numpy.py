"""The numpy adapter: ``adamax_engine.Parameter`` (an ndarray ``.data`` and ``.grad``)."""
import numpy as np

from ..params.parameter import Parameter, check_array
from .protocol import AdapterBase


class NumpyAdapter(AdapterBase):
    """Reads/re-points Parameter.data and .grad. Adopt and borrow both work for numpy."""
    default_mode = "adopt"
    device = "cpu"

    @staticmethod
    def accepts(param):
        return isinstance(param, Parameter) and isinstance(param.data, np.ndarray)

    @staticmethod
    def same(value, view, view_address=None):
        """Is ``value`` the registry's own view? (identity: any assignment is a new object)"""
        return value is view

    @staticmethod
    def address(value):
        return value.ctypes.data

    @staticmethod
    def numpy(value):
        return value

    @staticmethod
    def zero_grad(param):
        if hasattr(param.grad, "zero_"):  # a RowSparseGrad: no rows left
            param.grad.zero_()
        else:
            param.grad[...] = 0

    @staticmethod
    def meta(param):
        return tuple(param.data.shape), param.data.dtype

    @staticmethod
    def copy_into(view, value):
        view[...] = value

    @staticmethod
    def attributes(param):
        """(name, lr multiplier, regularizer, need_clip) as paddle's ParamAttr would give them."""
        return (param.name, param.optimize_attr["learning_rate"], param.regularizer,
                param.need_clip)

    @staticmethod
    def trainable(param):
        return not param.stop_gradient

    @staticmethod
    def data(param):
        return param.data

    @staticmethod
    def grad(param):
        return param.grad

    @staticmethod
    def point(param, data=None, grad=None):
        """Re-point .data/.grad at registry views without counting it as a user mutation."""
        param.repoint(data, grad)

    @staticmethod
    def clear_grad(param):
        param.grad = None

    @staticmethod
    def mutation_count():
        """Changes whenever any Parameter's .data/.grad/trainable is assigned (cheap rescan test)."""
        return Parameter.mutations

    check = staticmethod(check_array)
