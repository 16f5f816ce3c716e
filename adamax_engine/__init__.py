"""adamax-engine: paddle.optimizer.Adamax semantics, one fused numba kernel per step, any framework.

Layers (data flows one way): optimizer.py (the front) -> params/ (registry of flat buffers;
adapters/ read each framework's parameters) -> step/ (the stepper, chosen once per backend) ->
kernels/ (reference.py oracle, cpu.py numba, cuda/ numba.cuda). transforms/ and lr/ shape grads
and lr; io/ saves and loads; parallel/ adds MPI; config.py, experiments/ and cli.py run YAML
experiments. See docs/design.md.
"""
from . import lr
from .transforms.clip import ClipGradByGlobalNorm, ClipGradByNorm, ClipGradByValue, GradientClipBase
from .optimizer import Adamax
from .params.parameter import Parameter
from .transforms.regularizer import L1Decay, L2Decay
from .params.rowsparse import RowSparseGrad

__version__ = "0.1.0"


def __getattr__(name):
    """``from_config`` and ``ConfigError`` load config.py (and yaml) on first use, not at import:
    a trainer that never reads YAML does not pay for it at start-up."""
    if name in ("from_config", "ConfigError"):
        from . import config
        return getattr(config, name)
    raise AttributeError(f"module 'adamax_engine' has no attribute {name!r}")


__all__ = ["Adamax", "Parameter", "ClipGradByValue", "ClipGradByNorm", "ClipGradByGlobalNorm",
           "GradientClipBase", "L1Decay", "L2Decay", "lr", "from_config", "ConfigError",
           "RowSparseGrad"]
