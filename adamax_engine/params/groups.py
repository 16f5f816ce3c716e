"""Parameter groups: paddle's ``parameters=[{"params": ..., "beta1": ...}, ...]``, parsed and checked.

A group's own ``learning_rate`` is a multiplier on the base lr; ``beta1``/``beta2``/``epsilon``/
``grad_clip`` default to the optimizer's; ``weight_decay`` (a float means L2Decay) overrides a
parameter's own regularizer. Errors use paddle's types and messages where paddle has one.
"""
import math
import numbers

import numpy as np

from ..transforms.clip import GradientClipBase
from ..transforms.regularizer import L2Decay, WeightDecayRegularizer

GROUP_KEYS = {"params", "learning_rate", "weight_decay", "grad_clip", "beta1", "beta2", "epsilon"}


#: "leave this setting as it is" (None has a meaning of its own for weight_decay)
KEEP = object()

#: the largest |lr| or lr multiplier accepted: a step's lr reaches float32 buckets as float32
LR_LIMIT = float(np.finfo(np.float32).max) / 1e3


def finite(value, what, limit=None):
    """The one rule for every real-valued setting: a finite number (and |value| <= ``limit``
    when given), else ValueError naming ``what``. A NaN or inf setting would turn every
    parameter into NaN at the first step."""
    if not math.isfinite(value) or (limit is not None and abs(value) > limit):
        bound = "" if limit is None else f" with |value| <= {limit:.3g}"
        raise ValueError(f"{what}: expected a finite number{bound}, got {value!r}")
    return value


def check_hyper(beta1, beta2, epsilon, where=""):
    """paddle's range checks and messages (adamax.py:181-186), and epsilon finite."""
    if not 0 <= beta1 < 1:
        raise ValueError(f"Invalid value of beta1, expect beta1 in [0,1).{where}")
    if not 0 <= beta2 < 1:
        raise ValueError(f"Invalid value of beta2, expect beta2 in [0,1).{where}")
    if not epsilon >= 0:
        raise ValueError(f"Invalid value of epsilon, expect epsilon >= 0.{where}")
    finite(epsilon, f"epsilon{where}")


def hyper(value, what):
    """A float, or a one-element tensor/array (paddle's docs pass beta1 as a [1] Tensor)."""
    if not (hasattr(value, "numpy") or hasattr(value, "__array__")) or \
            isinstance(value, (bool, numbers.Real)):
        return value  # floats, and anything else for paddle's own checks to refuse
    try:
        flat = np.asarray(value.numpy() if hasattr(value, "numpy") else value).reshape(-1)
    except (TypeError, ValueError):
        flat = None
    if flat is None or flat.size != 1 or flat.dtype.kind not in "fiu":
        raise TypeError(f"{what}: expected a float or a one-element tensor, got {value!r}")
    return float(flat[0])


def regularizer(value, what):
    """float/int -> L2Decay (paddle), a regularizer as is, None -> None; anything else: TypeError."""
    if value is None or isinstance(value, WeightDecayRegularizer):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return L2Decay(float(value))
    raise TypeError(f"{what}: expected a float, L1Decay, L2Decay or None, got {value!r}")


def unpair(items, names):
    """``model.named_parameters()`` support: (name, param) pairs -> params, names kept."""
    out = []
    for item in items:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            names[id(item[1])] = item[0]
            item = item[1]
        elif isinstance(item, dict) and "params" in item and \
                isinstance(item["params"], (list, tuple)):
            item = {**item, "params": unpair(list(item["params"]), names)}
        out.append(item)
    return out


def _describe(param, position):
    """A parameter as an error message names it: its name, else its position and shape."""
    name = getattr(param, "name", None)
    if isinstance(name, str) and name:
        return repr(name)
    shape = getattr(param, "shape", None)
    return f"the parameter at position {position}" + \
        (f" (shape {list(shape)})" if shape is not None else "")


def parse_groups(parameters, defaults):
    """A list of params or of group dicts -> normalised group dicts (every key filled)."""
    if parameters and all(isinstance(p, dict) for p in parameters):
        raw = parameters
    elif any(isinstance(p, dict) for p in parameters):
        raise TypeError("parameters: expected all parameters or all group dicts, got a mix")
    else:
        raw = [{"params": parameters}]
    groups, seen = [], set()
    for gi, group in enumerate(raw):
        where = f" (parameters[{gi}])" if raw is parameters else ""
        assert "params" in group, ("params should be set in parameters if parameter groups "
                                   "are optimized in different options")
        unknown = set(group) - GROUP_KEYS
        if unknown:
            raise ValueError(f"parameters[{gi}]: unknown group key {sorted(unknown)[0]!r} "
                             f"(known: {', '.join(sorted(GROUP_KEYS))})")
        params = group["params"]
        if not isinstance(params, (list, tuple)):
            raise TypeError("optimizer parameters should be in ordered collections,but "
                            f"received {type(params).__name__}, please use list instead.")
        for pi, p in enumerate(params):
            if id(p) in seen:
                raise ValueError("some parameters appear in more than one parameter group"
                                 if len(raw) > 1 else
                                 f"parameters: {_describe(p, pi)} is given twice")
            seen.add(id(p))
        b1 = hyper(group.get("beta1", defaults["beta1"]), f"parameters[{gi}]['beta1']")
        b2 = hyper(group.get("beta2", defaults["beta2"]), f"parameters[{gi}]['beta2']")
        eps = hyper(group.get("epsilon", defaults["epsilon"]), f"parameters[{gi}]['epsilon']")
        check_hyper(b1, b2, eps, where)
        clip = group.get("grad_clip", defaults["grad_clip"])
        if clip is not None and not isinstance(clip, GradientClipBase):
            raise TypeError(f"parameters[{gi}]['grad_clip']: 'grad_clip' should be an "
                            "instance of GradientClipBase's derived class")
        lr_mult = group.get("learning_rate")
        if lr_mult is not None and (isinstance(lr_mult, bool)
                                    or not isinstance(lr_mult, numbers.Real)):
            raise TypeError(f"parameters[{gi}]['learning_rate']: expected a float multiplier, "
                            f"got {lr_mult!r}")
        if lr_mult is not None:
            finite(lr_mult, f"parameters[{gi}]['learning_rate']", LR_LIMIT)
        groups.append({"params": list(params), "beta1": b1, "beta2": b2, "epsilon": eps,
                       "grad_clip": clip, "learning_rate": lr_mult,
                       "weight_decay": regularizer(group.get("weight_decay"),
                                                    f"parameters[{gi}]['weight_decay']")})
    return groups
