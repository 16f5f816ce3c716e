"""Weight decay as paddle does it: a term added to the gradient after clipping (coupled, never clipped)."""
import math

from ..kernels.layout import L1_DECAY, L2_DECAY


class WeightDecayRegularizer:
    """Base: ``coeff`` and the kernel's decay mode. Raises TypeError for a non-number coeff,
    ValueError for NaN/inf (the rule of every real-valued setting)."""
    mode = None

    def __init__(self, coeff=0.0):
        if isinstance(coeff, bool) or not isinstance(coeff, (int, float)):
            raise TypeError(f"coeff: expected a finite float, got {coeff!r}")
        if not math.isfinite(coeff):  # a ValueError, as for every non-finite setting
            raise ValueError(f"coeff: expected a finite float, got {coeff!r}")
        self.coeff = float(coeff)

    def __repr__(self):
        return f"{type(self).__name__}(coeff={self.coeff})"


class L2Decay(WeightDecayRegularizer):
    """grad += coeff * param (the gradient of 0.5*coeff*||w||^2; not 2*coeff, not decoupled)."""
    mode = L2_DECAY


class L1Decay(WeightDecayRegularizer):
    """grad += coeff * sign(param), sign(0) = 0."""
    mode = L1_DECAY
