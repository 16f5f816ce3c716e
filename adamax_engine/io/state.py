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
from ..lr.base import LRScheduler

ACCUMULATORS = ("moment", "inf_norm", "beta1_pow_acc")


def _key(opt, entry, acc):
    name = opt.settings.name
    prefix = f"{name}_" if name else ""
    owner = f"{entry.name}_fp32_master_0" if entry.bucket.master is not None else entry.name
    return f"{owner}_{prefix}{acc}_0"


def _master(entry):
    b = entry.bucket
    return None if b.master is None else b.segment(b.master, entry.index)


def _accumulators(opt):
    return ACCUMULATORS + (("step",) if opt.flavor_code != L.PADDLE else ())


def _view(entry, acc):
    return entry.bucket.state_views(entry.index)[ACCUMULATORS.index(acc) if acc != "step" else 3]


def state_dict_of(opt):
    out = {}
    live = [e for e in opt.registry.entries if e.bucket.has_state[e.index]]
    for acc in _accumulators(opt):
        for e in live:
            view = _view(e, acc)
            out[_key(opt, e, acc)] = view if isinstance(view, np.ndarray) else view.copy_to_host()
    masters = {e.name: _master(e) for e in live if _master(e) is not None}
    masters = {k: v if isinstance(v, np.ndarray) else v.copy_to_host() for k, v in masters.items()}
    if masters:
        out["master_weights"] = masters
    sched = opt.settings.learning_rate
    if is_scheduler(sched):
        out["LR_Scheduler"] = sched.state_dict()
    return out


def _check_value(label, value, target):
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{label}: expected a numpy.ndarray, got {type(value).__name__}")
    if value.dtype != target.dtype:
        raise TypeError(f"{label}: expected dtype {target.dtype}, got {value.dtype}")
    if value.shape != target.shape:
        raise ValueError(f"{label}: expected shape {target.shape}, got {value.shape}")


def check_values(label, moment, inf_norm, beta1_pow, steps=None):
    """Values no run can produce (ValueError naming ``label(accumulator)``): a non-finite
    moment, an inf_norm that is negative or not finite, beta1_pow outside [0, 1) (the next step
    divides by 1 - beta1_pow), a negative step count."""
    if not np.isfinite(moment).all():
        raise ValueError(f"{label('moment')}: expected finite values, got {_first_bad(moment)}")
    if not (np.isfinite(inf_norm) & (inf_norm >= 0)).all():
        raise ValueError(f"{label('inf_norm')}: expected finite values >= 0, got "
                         f"{_first_bad(inf_norm, nonnegative=True)}")
    b = np.asarray(beta1_pow).reshape(-1)[0].item()
    if not 0 <= b < 1:
        raise ValueError(f"{label('beta1_pow_acc')}: expected a value in [0, 1), got {b!r}")
    if steps is not None and np.asarray(steps).reshape(-1)[0] < 0:
        raise ValueError(f"{label('step')}: expected a count >= 0, got "
                         f"{np.asarray(steps).reshape(-1)[0]!r}")


def _host_values(value):
    """A framework tensor (paddle's Model.save stores paddle Tensors) as a numpy array; dicts
    (master_weights) value by value; anything else as it is, for the checks to judge."""
    if isinstance(value, dict):
        return {k: _host_values(v) for k, v in value.items()}
    if not isinstance(value, np.ndarray) and hasattr(value, "numpy") and \
            type(value).__module__.split(".")[0] in ("paddle", "torch"):
        return np.asarray((value.detach().cpu() if hasattr(value, "detach") else value).numpy())
    return value


def _counter_zero(key, known, state_dict):
    """paddle numbers an optimizer's accumulators with a process-wide counter (``_moment_1``
    for the second optimizer of a process); ours always end in ``_0``. A key that differs from
    one of ours only in that number is read as ours, unless ours is there too."""
    if key in known or not isinstance(key, str):
        return key
    stem, _, number = key.rpartition("_")
    ours = f"{stem}_0"
    return ours if number.isdigit() and ours in known and ours not in state_dict else key


def _alias(key, opt, accs):
    """paddle's hapi ``Model.load`` adds a second, mangled name for each accumulator key,
    ``<param>_<optimizer name>_<accumulator name less a character or with a '_'>_0`` (e.g.
    ``linear_0.w_0__eta1_pow_acc_0``), which paddle's set_state_dict ignores; so do we (the key
    we own, which hapi keeps, is the one loaded)."""
    if not key.endswith("_0"):
        return False
    tails = {acc for acc in accs} | {acc[1:] for acc in accs}
    name = opt.settings.name or ""
    for e in opt.registry.entries:
        prefix = f"{e.name}_{name}_"
        if key.startswith(prefix) and key[len(prefix):-2].lstrip("_") in tails:
            return True
    return False


def _first_bad(values, nonnegative=False):
    bad = ~np.isfinite(values) | ((values < 0) if nonnegative else False)
    i = int(np.flatnonzero(np.asarray(bad).reshape(-1))[0])
    return f"{np.asarray(values).reshape(-1)[i].item()!r} at flat index {i}"


def load_state(opt, state_dict, check=True):
    """Validate everything, then copy. ValueError/TypeError name the offending key.

    ``check``: also refuse values no run can produce (check_values, non-finite masters) --
    False loads a diverged run's state as it is."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
    sched = opt.settings.learning_rate
    if is_scheduler(sched) and type(sched).__name__ != "LambdaDecay":
        assert "LR_Scheduler" in state_dict, \
            "LR_Scheduler state must be included in the state dict except LambdaDecay"
    accs = _accumulators(opt)
    known = {_key(opt, e, acc): (e, acc) for e in opt.registry.entries for acc in accs}
    state_dict = {_counter_zero(k, known, state_dict): _host_values(v)
                  for k, v in state_dict.items()}
    for key in state_dict:
        if key not in known and key not in ("LR_Scheduler", "master_weights") and \
                not _alias(key, opt, accs):
            raise ValueError(f"state_dict[{key!r}]: no parameter of this optimizer has that state "
                             "(check the parameter names and the optimizer's name)")
    plan = []
    for e in opt.registry.entries:
        keys = [_key(opt, e, acc) for acc in accs]
        present = [k in state_dict for k in keys]
        if not any(present):
            if e.bucket.has_state[e.index]:
                raise AssertionError(f"optimizer Tensor {keys[0]} not found")
            continue
        if not all(present):
            missing = keys[present.index(False)]
            raise AssertionError(f"optimizer Tensor {missing} not found")
        values = {}
        for key, acc in zip(keys, accs):
            _check_value(f"state_dict[{key!r}]", state_dict[key], _view(e, acc))
            values[acc] = state_dict[key]
        plan.append((e, values))
    masters, masters_plan = state_dict.get("master_weights", {}), []
    if not isinstance(masters, dict):
        raise TypeError("state_dict['master_weights']: expected a dict {parameter name: float32 "
                        f"array}}, got {type(masters).__name__}")
    by_name = {e.name: e for e in opt.registry.entries}
    for name, value in masters.items():
        e = by_name.get(name)
        if e is None or _master(e) is None:
            raise ValueError(f"state_dict['master_weights'][{name!r}]: no multi_precision "
                             "parameter of this optimizer has that name")
        _check_value(f"state_dict['master_weights'][{name!r}]", value, _master(e))
        masters_plan.append((e, value))
    if "LR_Scheduler" in state_dict and is_scheduler(sched):
        sched_state = state_dict["LR_Scheduler"]
        if not isinstance(sched_state, dict):
            raise TypeError("state_dict['LR_Scheduler']: expected a dict, got "
                            f"{type(sched_state).__name__}")
        sched.state_keys()
        for key in sched.keys:
            if key not in sched_state:
                raise RuntimeError("Please check whether state_dict is correct for optimizer. "
                                   f"Can't find [ {key} ] in state_dict")
        if isinstance(sched, LRScheduler):
            sched.check_state_dict(sched_state, "state_dict['LR_Scheduler']")
    for e, values in plan if check else ():  # values no run can produce, after every shape
        check_values(lambda acc, e=e: f"state_dict[{_key(opt, e, acc)!r}]", values["moment"],
                     values["inf_norm"], values["beta1_pow_acc"], values.get("step"))
    for e, value in masters_plan if check else ():
        if not np.isfinite(value).all():
            raise ValueError(f"state_dict['master_weights'][{e.name!r}]: expected finite "
                             f"values, got {_first_bad(value)}")
    for e, values in plan:  # all checked: write (the buckets mark their device copies stale)
        steps = values.get("step")
        e.bucket.load_segment_state(e.index, True, values["moment"], values["inf_norm"],
                                    values["beta1_pow_acc"][0],
                                    None if steps is None else steps[0])
    for e, value in masters_plan:
        e.bucket.load_master(e.index, value)
    if "LR_Scheduler" in state_dict and is_scheduler(sched):
        sched.set_state_dict(state_dict["LR_Scheduler"])
