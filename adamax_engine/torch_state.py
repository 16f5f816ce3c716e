"""The torch front's state in torch's format: tensors over the engine's buffers, the checks
a loaded state dict passes before anything is written, and the dtypes torch's load changes."""
import numpy as np
import torch

from .kernels.lowbit_reference import BLOCK, INT8_MAPS, INT8_V2, INT8_V3, SCHEMES


def as_given(state_dict, groups):
    """{param: its saved state entry} as handed to load_state_dict, paired by position as
    torch pairs them (empty when the dict is malformed: torch's own load reports that)."""
    try:
        saved = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in groups for p in g["params"]]
        return {p: state_dict["state"][i] for i, p in zip(saved, params)
                if isinstance(state_dict["state"].get(i), dict)}
    except (KeyError, TypeError, AttributeError):
        return {}


def precise(loaded, given):
    """torch's load casts every floating state tensor to its parameter's dtype: float32
    masters and int8 scales of float16 parameters would lose bits. Where the tensor given
    casts to exactly the one torch made, take the given one."""
    out = {}
    for p, s in loaded.items():
        raw = given.get(p, {})
        if isinstance(s, dict):
            s = dict(s)
            for key, value in s.items():
                r = raw.get(key)
                if isinstance(r, torch.Tensor) and isinstance(value, torch.Tensor) and \
                        r.dtype != value.dtype and r.is_floating_point() and \
                        r.shape == value.shape and \
                        torch.equal(r.to(device=value.device, dtype=value.dtype), value):
                    s[key] = r.to(device=value.device)
        out[p] = s
    return out


def check_state(loaded, groups):
    """Every loaded entry: a dict with exp_avg/exp_inf of the parameter's shape and a step
    count that is a whole number >= 0 (ValueError naming the parameter's index otherwise)."""
    position = {id(p): i for i, p in enumerate(p for g in groups for p in g["params"])}
    for p, s in loaded.items():
        where = f"state[{position.get(id(p), '?')}]"
        if not isinstance(s, dict):
            raise ValueError(f"{where}: expected a dict, got {type(s).__name__}")
        if not s:
            continue
        for key in ("step", "exp_avg", "exp_inf"):
            if key not in s:
                raise ValueError(f"{where}: missing {key!r}")
        for key in ("exp_avg", "exp_inf"):
            value = s[key]
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(p.shape):
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else \
                    type(value).__name__
                raise ValueError(f"{where}['{key}']: expected a tensor of shape "
                                 f"{tuple(p.shape)}, got {got}")
        step = float(s["step"])
        if not (step >= 0 and step == int(step)):
            raise ValueError(f"{where}['step']: expected a whole number >= 0, got {step}")
        if "exp_avg_scale" in s or "exp_inf_scale" in s:
            check_codes(s, p, where)


#: an int8 entry's ``code_scheme``: the version of lowbit_reference's scheme its codes follow,
#: a 0-d tensor (torch's load mangles strings, and casts it to the parameter's dtype, as it
#: does the codes; state dicts before v3 had none)
CODE_SCHEME, INT8_SCHEMES = 4, {2: INT8_V2, 3: INT8_V3, 4: SCHEMES["int8"]}


def code_scheme(s):
    """The int8 scheme (its name in lowbit_reference.SCHEMES / INT8_MAPS) of an entry's
    codes: None for a ``code_scheme`` this version does not know."""
    version = s.get("code_scheme")
    if version is None:
        return INT8_V2
    if not (isinstance(version, torch.Tensor) and version.numel() == 1):
        return None
    return INT8_SCHEMES.get(float(version))  # (3.0 finds 3; nan and inf find nothing)


def check_codes(s, p, where):
    """An int8-state entry: a scheme this version reads, integral codes in range and one
    finite scale >= 0 per block."""
    if code_scheme(s) not in INT8_MAPS:
        raise ValueError(f"{where}['code_scheme']: expected a one-element tensor, one of "
                         f"{sorted(INT8_SCHEMES)} (the int8 scheme's version), got "
                         f"{s['code_scheme']!r}")
    blocks = (p.numel() + BLOCK - 1) // BLOCK
    for key in ("exp_avg_scale", "exp_inf_scale"):
        value = s.get(key)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != (blocks,):
            raise ValueError(f"{where}['{key}']: expected a tensor of shape ({blocks},) (one "
                             f"scale per {BLOCK} elements)")
        if not (bool(torch.isfinite(value).all()) and bool((value >= 0).all())):
            raise ValueError(f"{where}['{key}']: expected finite scales >= 0")
    for key, lo, hi in (("exp_avg", -127, 127), ("exp_inf", 0, 255)):
        codes = s[key].double()
        if not (bool((codes == codes.round()).all()) and bool((codes >= lo).all())
                and bool((codes <= hi).all())):
            raise ValueError(f"{where}['{key}']: int8-state codes must be whole numbers in "
                             f"[{lo}, {hi}]")


def tensor_over(view):
    """A torch tensor over an engine buffer (no copy): numpy on the host, CUDA arrays via
    ``__cuda_array_interface__``."""
    if isinstance(view, np.ndarray):
        if view.dtype.kind == "V":  # ml_dtypes' bfloat16
            return torch.from_numpy(view.view("int16")).view(torch.bfloat16)
        return torch.from_numpy(view)
    return torch.as_tensor(view, device="cuda")


def bfloat16_over(bits):
    """A torch.bfloat16 tensor over bfloat16 bits held as uint16 (no copy; host or device)."""
    return tensor_over(bits.view(np.int16)).view(torch.bfloat16)


def host_array(value):
    """A loaded state tensor as a host numpy array (float32 for bfloat16 masters' dtype)."""
    value = value.detach()
    if value.dtype == torch.bfloat16:
        value = value.float()
    return value.cpu().numpy()
