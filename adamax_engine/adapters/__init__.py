"""Adapters: how the registry reads and re-points a framework's parameters and grads.

Each adapter is a handful of small functions over one framework's parameter objects. The numpy
and device-array adapters exist so far; frameworks are imported lazily, never by ``import adamax_engine``.
"""
from .device import DeviceAdapter
from .numpy import NumpyAdapter


def adapter_for(param):
    """The adapter that understands ``param``; TypeError naming the type when none does."""
    for adapter in (NumpyAdapter, DeviceAdapter):
        if adapter.accepts(param):
            return adapter
    raise TypeError("parameters: expected adamax_engine.Parameter objects, got "
                    f"{type(param).__module__}.{type(param).__name__}")
