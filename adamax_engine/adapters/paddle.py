"""The paddle adapter: paddle parameters (``nn.Layer.parameters()``), borrowed.

paddle cannot re-point a parameter's storage, so the engine steps paddle's own memory through
an address table (``Tensor.data_ptr()``); zero-copy numpy views come from DLPack. Name,
``stop_gradient``, the ParamAttr learning-rate multiplier, its regularizer and ``need_clip``
are read from the parameter, as paddle's optimizer does. Grads are looked up every step:
paddle allocates a new grad tensor after ``clear_gradient``.
"""
from ..transforms.regularizer import L1Decay, L2Decay
from .tensor import TensorAdapter, numpy_dtype


class PaddleAdapter(TensorAdapter):
    framework = "paddle"
    trainable_attr = "stop_gradient"
    default_mode = "borrow"

    @staticmethod
    def attributes(param):
        reg = getattr(param, "regularizer", None)
        if reg is not None:
            kind = type(reg).__name__
            if kind not in ("L1Decay", "L2Decay"):
                raise TypeError(f"{param.name}.regularizer: expected paddle's L1Decay or "
                                f"L2Decay, got {kind}")
            coeff = reg._coeff  # private-ok: paddle's regularizers expose it no other way
            reg = (L1Decay if kind == "L1Decay" else L2Decay)(float(coeff))
        attr = getattr(param, "optimize_attr", None) or {}
        return (param.name, float(attr.get("learning_rate", 1.0)), reg,
                bool(getattr(param, "need_clip", True)))

    @staticmethod
    def trainable(param):
        return not param.stop_gradient

    @staticmethod
    def data(param):
        return param

    @staticmethod
    def tensor_type():
        import paddle
        return paddle.Tensor

    @staticmethod
    def numpy(value):
        import numpy as np
        import paddle
        if value.dtype == paddle.bfloat16:  # DLPack has no bfloat16 here: view the bits
            return np.from_dlpack(value.detach().view(paddle.int16)).view(
                numpy_dtype("bfloat16"))
        return np.from_dlpack(value.detach())

    @staticmethod
    def describe(value):
        return (tuple(value.shape), numpy_dtype(value.dtype), value.is_contiguous(),
                value.place.is_cpu_place())

    @staticmethod
    def point(param, data=None, grad=None):
        raise ValueError(f"mode: paddle parameters ({param.name}) cannot be adopted; use "
                         "mode='borrow' (the default for paddle)")

    @staticmethod
    def zero_grad(param):
        param.clear_gradient(True)

    @staticmethod
    def clear_grad(param):
        param.clear_gradient(False)
