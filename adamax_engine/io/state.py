"""state_dict / set_state_dict in paddle's layout, over the registry's flat buffers.

Keys: ``<param>_[<optimizer name>_]moment_0``, ``..._inf_norm_0``, ``..._beta1_pow_acc_0`` (shape
[1]), all moments first, then inf_norms, then beta1_pows, then ``master_weights`` ({param name:
float32 master}, multi_precision only; the accumulators then hang off the master, named
``<param>_fp32_master_0_moment_0`` etc., as in paddle), then ``LR_Scheduler``. Non-paddle
flavors add ``..._step_0`` (their bias correction counts steps). Values are live numpy views
(paddle also hands out its live tensors); on device="cuda", host copies. Only parameters that have been stepped have state.
Unlike paddle the suffix is always ``_0``: a state dict loads into another optimizer in the same
process (paddle's process-global name counter makes that fail).
"""
import numpy as np

from ..kernels import layout as L
from ..lr import is_scheduler

ACCUMULATORS = ("moment", "inf_norm", "beta1_pow_acc")


def _key(opt, entry, acc):
    prefix = f"{opt._name}_" if opt._name else ""
    owner = f"{entry.name}_fp32_master_0" if entry.bucket.master is not None else entry.name
    return f"{owner}_{prefix}{acc}_0"


def _master(entry):
    b = entry.bucket
    return None if b.master is None else b.segment(b.master, entry.index)


def _accumulators(opt):
    return ACCUMULATORS + (("step",) if opt._flavor_code != L.PADDLE else ())


def _view(entry, acc):
    b, k = entry.bucket, entry.index
    if acc in ("moment", "inf_norm"):
        return b.segment(getattr(b, acc), k)
    return (b.beta1_pow if acc == "beta1_pow_acc" else b.steps)[k:k + 1]


def state_dict_of(opt):
    out = {}
    live = [e for e in opt._registry.entries if e.bucket.has_state[e.index]]
    for acc in _accumulators(opt):
        for e in live:
            view = _view(e, acc)
            out[_key(opt, e, acc)] = view if isinstance(view, np.ndarray) else view.copy_to_host()
    masters = {e.name: _master(e) for e in live if _master(e) is not None}
    masters = {k: v if isinstance(v, np.ndarray) else v.copy_to_host() for k, v in masters.items()}
    if masters:
        out["master_weights"] = masters
    if is_scheduler(opt._learning_rate):
        out["LR_Scheduler"] = opt._learning_rate.state_dict()
    return out


def _check_value(label, value, target):
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{label}: expected a numpy.ndarray, got {type(value).__name__}")
    if value.dtype != target.dtype:
        raise TypeError(f"{label}: expected dtype {target.dtype}, got {value.dtype}")
    if value.shape != target.shape:
        raise ValueError(f"{label}: expected shape {target.shape}, got {value.shape}")


def load_state(opt, state_dict):
    """Validate everything, then copy. ValueError/TypeError name the offending key."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
    sched = opt._learning_rate
    if is_scheduler(sched) and type(sched).__name__ != "LambdaDecay":
        assert "LR_Scheduler" in state_dict, \
            "LR_Scheduler state must be included in the state dict except LambdaDecay"
    accs = _accumulators(opt)
    known = {_key(opt, e, acc): (e, acc) for e in opt._registry.entries for acc in accs}
    for key in state_dict:
        if key not in known and key not in ("LR_Scheduler", "master_weights"):
            raise ValueError(f"state_dict[{key!r}]: no parameter of this optimizer has that state "
                             "(check the parameter names and the optimizer's name)")
    plan = []
    for e in opt._registry.entries:
        keys = [_key(opt, e, acc) for acc in accs]
        present = [k in state_dict for k in keys]
        if not any(present):
            if e.bucket.has_state[e.index]:
                raise AssertionError(f"optimizer Tensor {keys[0]} not found")
            continue
        if not all(present):
            missing = keys[present.index(False)]
            raise AssertionError(f"optimizer Tensor {missing} not found")
        for key, acc in zip(keys, accs):
            target = _view(e, acc)
            value = state_dict[key]
            _check_value(f"state_dict[{key!r}]", value, target)
            plan.append((target, value))
        plan.append((e.bucket.has_state[e.index:e.index + 1], np.ones(1, np.bool_)))
    masters = state_dict.get("master_weights", {})
    by_name = {e.name: e for e in opt._registry.entries}
    for name, value in masters.items():
        e = by_name.get(name)
        if e is None or _master(e) is None:
            raise ValueError(f"state_dict['master_weights'][{name!r}]: no multi_precision "
                             "parameter of this optimizer has that name")
        _check_value(f"state_dict['master_weights'][{name!r}]", value, _master(e))
        plan.append((_master(e), value))
    if "LR_Scheduler" in state_dict and is_scheduler(sched):
        sched_state = state_dict["LR_Scheduler"]
        sched.state_keys()
        for key in sched.keys:
            if key not in sched_state:
                raise RuntimeError("Please check whether state_dict is correct for optimizer. "
                                   f"Can't find [ {key} ] in state_dict")
    for target, value in plan:
        if not isinstance(target, np.ndarray):
            target.copy_to_device(np.ascontiguousarray(value))
        elif target is not value:
            target[...] = value
    for b in opt._registry.buckets:
        b.dirty = True  # device copies of beta1_pow / steps must be refreshed
    if "LR_Scheduler" in state_dict and is_scheduler(sched):
        sched.set_state_dict(state_dict["LR_Scheduler"])


def host_param(entry):
    """A host copy of a parameter's current value (whatever framework or device holds it)."""
    a = entry.adapter
    data = a.data(entry.param)
    if a.device == "cuda":
        from ..adapters.device import as_device_array
        return as_device_array(data).copy_to_host()
    return np.array(a.numpy(data), copy=True)


def write_param(entry, value):
    """Write ``value`` (host array of the parameter's shape and dtype) into the parameter."""
    a = entry.adapter
    data = a.data(entry.param)
    if a.device == "cuda":
        from ..adapters.device import as_device_array
        as_device_array(data).copy_to_device(np.ascontiguousarray(value))
    else:
        a.numpy(data)[...] = value
