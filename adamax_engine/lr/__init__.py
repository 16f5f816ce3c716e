"""paddle.optimizer.lr's schedulers (all 17 of paddle 3.3.1), same signatures and numbers.

base.py the base class; decay.py closed-form decays; cycle.py annealing and cyclic schedules;
wrap.py LinearWarmup and ReduceOnPlateau. Differences from paddle are listed in the README.
"""
from .base import LRScheduler, is_scheduler
from .cycle import (CosineAnnealingDecay, CosineAnnealingWarmRestarts, CyclicLR, LinearLR,
                    OneCycleLR)
from .decay import (ExponentialDecay, InverseTimeDecay, LambdaDecay, MultiplicativeDecay,
                    MultiStepDecay, NaturalExpDecay, NoamDecay, PiecewiseDecay, PolynomialDecay,
                    StepDecay)
from .wrap import LinearWarmup, ReduceOnPlateau

__all__ = ["LRScheduler", "is_scheduler", "NoamDecay", "PiecewiseDecay", "NaturalExpDecay", "InverseTimeDecay",
           "PolynomialDecay", "LinearWarmup", "ExponentialDecay", "MultiStepDecay", "StepDecay",
           "LambdaDecay", "ReduceOnPlateau", "CosineAnnealingDecay", "MultiplicativeDecay",
           "OneCycleLR", "CyclicLR", "LinearLR", "CosineAnnealingWarmRestarts"]
