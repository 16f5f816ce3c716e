"""adamax-engine: paddle.optimizer.Adamax semantics, one fused numba kernel per step, any framework.

Layers (data flows one way): adapters -> registry -> pipeline (optimizer.py, clip.py,
regularizer.py, lr.py) -> kernels (reference.py oracle, cpu.py numba, cuda.py numba.cuda).
"""
from . import lr
from .clip import ClipGradByGlobalNorm, ClipGradByNorm, ClipGradByValue, GradientClipBase
from .optimizer import Adamax
from .parameter import Parameter
from .regularizer import L1Decay, L2Decay

__version__ = "0.1.0"
__all__ = ["Adamax", "Parameter", "ClipGradByValue", "ClipGradByNorm", "ClipGradByGlobalNorm",
           "GradientClipBase", "L1Decay", "L2Decay", "lr"]
