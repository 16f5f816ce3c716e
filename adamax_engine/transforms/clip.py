"""Gradient clippers with paddle.nn.clip's semantics, split into what the fused step needs.

A clipper never touches memory itself: ``ClipGradByValue`` hands the kernel its bounds (the clamp
is fused into the update), the norm clippers turn per-segment sums of squares (one reduction
pass, kernels.*.segment_sumsq) into per-segment grad scales. Parameters with ``need_clip=False``
are left out of both by the optimizer. Clipping happens before weight decay.
"""

import math

import numpy as np

from ..kernels.reference import global_norm_scale, norm_scale


def _number(value, what):
    """A finite float, else TypeError (not a number) or ValueError (NaN, inf) naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{what}: expected a float, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{what}: expected a finite number, got {float(value)!r}")
    return float(value)


class GradientClipBase:
    """Base class (paddle.nn.ClipGradBase). ``needs_norms`` says whether a reduction pass is due."""
    needs_norms = False

    def value_bounds(self, dtype):
        """(lo, hi) in ``dtype`` for a fused clamp, or None."""
        return None

    def norm_scales(self, sumsqs):
        """Per-bucket sums of squares of the group's clipped segments -> per-bucket (scale, apply):
        arrays with one value per segment, or scalars that hold for all of them."""
        raise NotImplementedError


class ClipGradByValue(GradientClipBase):
    """Clamp every grad element to [min, max]; ``min`` defaults to ``-max``. NaN passes through.

    Raises AssertionError when ``min`` is None and ``max <= 0`` (paddle's check), ValueError
    when ``min > max`` (paddle raises that at step time; we raise it here, before any step).
    """

    def __init__(self, max, min=None):  # noqa: A002 - paddle's argument names
        max_ = _number(max, "max")
        if min is None:
            assert max_ > 0.0, f"max: expected > 0 when min is None, got {max_}"
            min_ = -max_
        else:
            min_ = _number(min, "min")
        if not min_ <= max_:
            raise ValueError("(InvalidArgument) max should be greater than or equal to min. "
                             f"But received min = {min_:f}, max = {max_:f}")
        self.max, self.min = max_, min_

    def value_bounds(self, dtype):
        T = np.dtype(dtype).type
        return T(self.min), T(self.max)

    def __repr__(self):
        return f"ClipGradByValue(max={self.max}, min={self.min})"


class ClipGradByNorm(GradientClipBase):
    """Per tensor: g * clip_norm / ||g|| when ||g|| > clip_norm, else g (norm in the grad dtype).

    Raises ValueError for ``clip_norm <= 0`` (paddle's message; paddle raises it at step time).
    Unlike paddle's CPU kernel (float32 only), float64 grads are supported.
    """
    needs_norms = True

    def __init__(self, clip_norm):
        self.clip_norm = _number(clip_norm, "clip_norm")
        if not self.clip_norm > 0:
            raise ValueError("(InvalidArgument) max_norm should be greater than 0. "
                             f"Received max_norm is {self.clip_norm:f}.")

    def norm_scales(self, sumsqs):
        return [norm_scale(sq, self.clip_norm) for sq in sumsqs]

    def __repr__(self):
        return f"ClipGradByNorm(clip_norm={self.clip_norm})"


class ClipGradByGlobalNorm(GradientClipBase):
    """All clipped grads of the group times clip_norm / max(global_norm, clip_norm).

    The global norm sums per-tensor squares in float32 (float64 if any grad is float64).
    ``auto_skip_clip=True`` multiplies only when global_norm > clip_norm. Like paddle, a negative
    clip_norm is accepted (it flips the grads' sign) and ``group_name`` has no effect in dygraph.
    Raises AssertionError when ``auto_skip_clip`` is not a bool (paddle's check).
    """
    needs_norms = True

    def __init__(self, clip_norm, group_name="default_group", auto_skip_clip=False):
        self.clip_norm = _number(clip_norm, "clip_norm")
        if not isinstance(group_name, str):
            raise TypeError(f"group_name: expected a str, got {type(group_name).__name__}")
        assert isinstance(auto_skip_clip, bool), "auto_skip_clip: expected a bool"
        self.group_name, self.auto_skip_clip = group_name, auto_skip_clip

    def global_norm(self, sumsqs):
        sum_dtype = np.float64 if any(sq.dtype == np.float64 for sq in sumsqs) else np.float32
        total = sum_dtype(0)
        for sq in sorted(sumsqs, key=lambda a: a.dtype.itemsize):  # paddle: fp32 bucket, then fp64
            if len(sq):
                total = total + sum_dtype(np.cumsum(sq)[-1])  # sequential, in param order
        return np.sqrt(total)

    def norm_scales(self, sumsqs):
        """One (scale, apply) pair of scalars for every bucket: the same factor for all."""
        scale, apply = global_norm_scale(self.global_norm(sumsqs), self.clip_norm,
                                         self.auto_skip_clip)
        return [(sq.dtype.type(scale), apply) for sq in sumsqs]

    def __repr__(self):
        return (f"ClipGradByGlobalNorm(clip_norm={self.clip_norm}, "
                f"auto_skip_clip={self.auto_skip_clip})")


# paddle's public alias
ClipGradBase = GradientClipBase
__all__ = ["GradientClipBase", "ClipGradBase", "ClipGradByValue", "ClipGradByNorm",
           "ClipGradByGlobalNorm"]
