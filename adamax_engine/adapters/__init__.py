"""Adapters: how the registry reads and re-points a framework's parameters and grads.

Each adapter is a handful of small functions over one framework's parameter objects. numpy,
device (CUDA arrays), torch and paddle; frameworks are imported lazily, never by
``import adamax_engine``.
"""
from .device import DeviceAdapter
from .numpy import NumpyAdapter
from .paddle import PaddleAdapter
from .torch import TorchAdapter, TorchCudaAdapter

ADAPTERS = (NumpyAdapter, DeviceAdapter, TorchAdapter, TorchCudaAdapter, PaddleAdapter)


def adapter_for(param):
    """The adapter that understands ``param``; TypeError naming the type when none does."""
    for adapter in ADAPTERS:
        if adapter.accepts(param):
            return adapter
    raise TypeError("parameters: expected adamax_engine.Parameter objects, torch or paddle "
                    f"parameters, got {type(param).__module__}.{type(param).__name__}")
