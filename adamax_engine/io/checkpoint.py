"""Checkpoints of an optimizer: what is saved (``collect``), loading one all-or-nothing
(``restore``: every array's presence, dtype, shape and values checked before anything is
written) and a new optimizer from one (``build``, i.e. ``Adamax.load``). The file format, its
atomic writes and its checksums: io/archive.py.
"""
import os

import numpy as np

from .archive import (FORMAT, VERSION, CheckpointError, Unencodable, decode,  # noqa: F401
                      encode, read, write)
from ..kernels.lowbit_reference import (BLOCK, CODE_DTYPES, INT8_MAPS, SCHEMES, check_codes,
                                        decode_codes)
from .state import check_values

#: array kinds of low-bit state in a checkpoint, as ``Bucket.code_views`` gives them
CODE_KINDS = ("moment_codes", "inf_norm_codes", "moment_scale", "inf_norm_scale")


# --- writing ------------------------------------------------------------------------------------
def _host(array):
    return array if isinstance(array, np.ndarray) else array.copy_to_host()


def _config(opt):
    s = opt.settings
    try:
        lr = encode(s.learning_rate)
    except Unencodable as exc:  # a lambda scheduler, or a foreign (paddle) scheduler object
        lr = {"__unencodable__": str(exc)}
    groups = [{"beta1": g["beta1"], "beta2": g["beta2"], "epsilon": g["epsilon"],
               "learning_rate": g["learning_rate"], "weight_decay": encode(g["weight_decay"]),
               "grad_clip": encode(g["grad_clip"])} for g in s.groups]
    return {"learning_rate": lr, "beta1": s.beta1, "beta2": s.beta2,
            "epsilon": s.epsilon, "weight_decay": encode(s.weight_decay),
            "grad_clip": encode(s.grad_clip), "name": s.name, "groups": groups,
            "skip_nonfinite": s.skip_nonfinite, "lazy_mode": s.lazy_mode,
            "state_dtype": s.state_dtype, "state_rounding": s.state_rounding}


def collect(opt):
    """(meta, arrays) describing ``opt`` and its parameters' current values."""
    arrays, params = {}, []
    for e in opt.registry.entries:
        b, k = e.bucket, e.index
        stepped = bool(b.has_state[k])
        arrays[f"param/{e.name}"] = opt.registry.host_param(e)
        if b.master is not None:
            arrays[f"master/{e.name}"] = _host(b.segment(b.master, k)).copy()
        if stepped and b.low_bit:  # the state as held: bfloat16 bits, int8 codes + scales
            for kind, value in zip(CODE_KINDS, b.code_views(k)):
                if value is not None:
                    arrays[f"{kind}/{e.name}"] = _host(value).copy()
        elif stepped:
            moment, inf_norm = b.state_views(k)[:2]
            arrays[f"moment/{e.name}"] = _host(moment).copy()
            arrays[f"inf_norm/{e.name}"] = _host(inf_norm).copy()
        if stepped:
            arrays[f"beta1_pow/{e.name}"] = b.beta1_pow[k:k + 1].copy()
            arrays[f"steps/{e.name}"] = b.steps[k:k + 1].copy()
        params.append({"name": e.name, "shape": list(e.shape), "dtype": str(e.dtype),
                       "group": e.group, "lr_mult": e.lr_mult,
                       "regularizer": encode(e.regularizer), "need_clip": e.need_clip,
                       "has_state": stepped})
    if len({p["name"] for p in params}) != len(params):
        raise CheckpointError("parameters: two parameters share a name; give them distinct "
                              "names (e.g. pass model.named_parameters())")
    sched = opt.settings.learning_rate
    meta = {"format": FORMAT, "version": VERSION, "flavor": opt.flavor,
            "multi_precision": opt.settings.multi_precision,
            "state_dtype": opt.settings.state_dtype,
            "state_scheme": SCHEMES.get(opt.settings.state_dtype),
            "config": _config(opt), "parameters": params,
            "scheduler": encode(sched.state_dict()) if not isinstance(sched, float) else None,
            "skipped_steps": int(opt.skipped_steps)}
    return meta, arrays


def save(opt, path, extra=None, extra_arrays=None):
    """Write ``opt`` (state, config) and its parameters to ``path`` atomically (archive.write)."""
    meta, arrays = collect(opt)
    meta["extra"] = encode(extra or {})
    for key, value in (extra_arrays or {}).items():
        arrays[f"extra/{key}"] = np.asarray(value)
    write(meta, arrays, path)


# --- loading into an optimizer --------------------------------------------------------------------
def _pair(names, records, match, path):
    """Index of the checkpoint record for each of ``names`` (by name, or by position)."""
    if match == "order":
        if len(names) != len(records):
            raise CheckpointError(f"{path}: holds {len(records)} parameters, the optimizer has "
                                  f"{len(names)}")
        return list(range(len(names)))
    if match != "name":
        raise ValueError(f"match: expected 'name' or 'order', got {match!r}")
    where = {r["name"]: i for i, r in enumerate(records)}
    missing = [n for n in names if n not in where]
    if missing:
        raise CheckpointError(f"{path}: no parameter named {missing[0]!r} in the checkpoint (it "
                              f"has {', '.join(sorted(where)[:5])}...); pass match='order' to "
                              "pair parameters by position")
    extra = sorted(set(where) - set(names))
    if extra:
        raise CheckpointError(f"{path}: the optimizer has no parameter named {extra[0]!r}")
    return [where[n] for n in names]


def restore(opt, path, match="name", params=True, check_values=True):
    """Load a checkpoint into ``opt`` (and its parameters' values unless ``params=False``).

    Everything is read and checked (checksums, names, every array's presence, dtype and shape,
    the state's values, flavor, scheduler) before anything changes: on CheckpointError the
    optimizer and the parameters are as they were. ``check_values=False`` loads state no
    healthy run produces (a diverged run's). Returns the checkpoint's ``extra`` dict plus its
    ``extra/`` arrays under ``arrays``.
    """
    from ..lr import is_scheduler
    from ..lr.base import LRScheduler
    meta, arrays = path if isinstance(path, tuple) else read(path)
    where = "checkpoint" if isinstance(path, tuple) else os.fspath(path)
    if meta["flavor"] != opt.flavor:
        raise CheckpointError(f"{where}: flavor {meta['flavor']!r}, the optimizer's is "
                              f"{opt.flavor!r}")
    if meta["multi_precision"] != opt.settings.multi_precision:
        raise CheckpointError(f"{where}: multi_precision={meta['multi_precision']}, the "
                              "optimizer's differs")
    # how the file holds the state: codes under a named scheme, or (older files) values
    # (an older int8 scheme's codes are read as their values, then quantized anew)
    held, scheme = meta.get("state_dtype", "float32"), meta.get("state_scheme")
    held = held if scheme else "float32"
    readable = list(INT8_MAPS) if held == "int8" else [SCHEMES.get(held)]
    if held in SCHEMES and scheme not in readable:
        raise CheckpointError(f"{where}: its {held} state codes follow the scheme "
                              f"{scheme!r}; this version reads "
                              f"{' or '.join(repr(k) for k in readable)}")
    entries, records = opt.registry.entries, meta["parameters"]
    index = _pair([e.name for e in entries], records, match, where)
    plan = []
    for e, i in zip(entries, index):
        r = records[i]
        if tuple(r["shape"]) != tuple(e.shape) or r["dtype"] != str(e.dtype):
            raise CheckpointError(f"{where}: parameter {r['name']!r} is {r['dtype']}{r['shape']}, "
                                  f"the optimizer's {e.name!r} is {e.dtype}{list(e.shape)}")
        plan.append((e, r, _arrays_of(e, r, arrays, params, where, check_values, held,
                                      scheme)))
    sched, saved = opt.settings.learning_rate, meta["scheduler"]
    if (saved is None) != isinstance(sched, float):
        raise CheckpointError(f"{where}: saved with a {'float' if saved is None else 'scheduler'}"
                              " learning rate, the optimizer has the other kind")
    if saved is not None and is_scheduler(sched):
        if not isinstance(saved, dict):
            raise CheckpointError(f"{where}: scheduler state must be a mapping, got {saved!r}")
        sched.state_keys() if hasattr(sched, "state_keys") else None
        missing = [k for k in getattr(sched, "keys", []) if k not in saved]
        if missing:
            raise CheckpointError(f"{where}: scheduler state lacks {missing[0]!r} (saved by a "
                                  f"different scheduler than {type(sched).__name__}?)")
        saved = decode(saved, where)
        if isinstance(sched, LRScheduler):
            try:
                sched.check_state_dict(saved, f"{where}: scheduler")
            except (TypeError, ValueError) as exc:
                raise CheckpointError(str(exc)) from None
    # --- all checked: apply -----------------------------------------------------------------
    for e, r, got in plan:
        b, k = e.bucket, e.index
        if params:
            opt.registry.write_param(e, got["param"])
        if b.master is not None:
            b.load_master(k, got["master"])
        if r["has_state"] and got.get("exact") and b.state_dtype == held:  # as saved
            b.load_segment_codes(k, *got["codes"], got["beta1_pow"][0], got["steps"][0])
        elif r["has_state"]:
            b.load_segment_state(k, True, got["moment"], got["inf_norm"], got["beta1_pow"][0],
                                 got["steps"][0])
        else:
            b.load_segment_state(k, False)
    if saved is not None:
        sched.set_state_dict(saved)
    opt.set_skipped_steps(meta["skipped_steps"])
    extra = dict(meta.get("extra") or {})
    extra["arrays"] = {k[6:]: v for k, v in arrays.items() if k.startswith("extra/")}
    return extra


def _arrays_of(e, r, arrays, params, where, check, held="float32", scheme=None):
    """The arrays entry ``e`` takes from record ``r``: each present, of exactly the dtype and
    shape the optimizer holds (never cast), the state's values possible; else CheckpointError.
    Low-bit state (``held``: the checkpoint's state dtype, ``scheme`` its codes' scheme) comes
    as codes: ``got["codes"]`` holds them, ``got["moment"]``/``["inf_norm"]`` their float32
    values, ``got["exact"]`` whether this version writes such codes (they load as they are)."""
    b, name = e.bucket, r["name"]
    wanted = {}
    if params:
        wanted["param"] = (e.dtype, tuple(e.shape))
    if b.master is not None:
        wanted["master"] = (b.dtype, tuple(e.shape))
    if r["has_state"]:
        shape = tuple(e.shape)
        if held in CODE_DTYPES:
            wanted.update(moment_codes=(np.dtype(CODE_DTYPES[held][0]), shape),
                          inf_norm_codes=(np.dtype(CODE_DTYPES[held][1]), shape))
            if held == "int8":
                blocks = (int(np.prod(shape, dtype=np.int64)) + BLOCK - 1) // BLOCK
                wanted.update(moment_scale=(np.dtype(np.float32), (blocks,)),
                              inf_norm_scale=(np.dtype(np.float32), (blocks,)))
        else:
            wanted.update(moment=(b.dtype, shape), inf_norm=(b.dtype, shape))
        wanted.update(beta1_pow=(b.dtype, (1,)), steps=(np.dtype(np.int64), (1,)))
    got = {}
    for kind, (dtype, shape) in wanted.items():
        key = f"{kind}/{name}"
        value = arrays.get(key)
        if value is None:
            raise CheckpointError(f"{where}: array {key!r} is missing")
        if value.dtype != dtype or value.shape != shape:
            raise CheckpointError(f"{where}: array {key!r} is {value.dtype}{list(value.shape)}, "
                                  f"expected {dtype}{list(shape)}")
        got[kind] = value
    if r["has_state"] and held in CODE_DTYPES:
        got["codes"] = tuple(got.get(kind) for kind in CODE_KINDS)
        try:
            check_codes(*got["codes"][:2]) if held == "int8" else None
        except ValueError as exc:
            raise CheckpointError(f"{where}: {name!r}: {exc}") from None
        got["moment"], got["inf_norm"] = decode_codes(held, *got["codes"], scheme=scheme)
        got["exact"] = scheme == SCHEMES[held]
    if check and r["has_state"]:
        try:
            check_values(lambda acc: f"{where}: {acc} of {name!r}", got["moment"],
                         got["inf_norm"], got["beta1_pow"], got["steps"])
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
    return got


def build(cls, path, parameters, match="name", **overrides):
    """Adamax.load: a new optimizer over ``parameters`` configured and filled from ``path``.

    ``parameters``: a list of parameters or of (name, parameter) pairs, from any framework or
    device; the checkpoint's groups and per-parameter settings (lr multiplier, regularizer,
    need_clip) are applied to them. ``overrides`` go to the constructor (mode, backend,
    learning_rate -- required when the saved one was a lambda or foreign scheduler). The device
    follows the parameters: CUDA device arrays load onto the GPU.
    """
    meta, arrays = read(path)
    try:
        groups, kwargs = _settings(path, meta, parameters, match, overrides)
    except (KeyError, TypeError, AttributeError) as exc:  # a config no writer of ours makes
        raise CheckpointError(f"{os.fspath(path)}: __meta__.config is not one this version "
                              f"wrote ({type(exc).__name__}: {exc})") from None
    opt = cls(parameters=groups, **kwargs)
    # the checkpoint's effective per-parameter settings
    opt.configure_parameters({r["name"]: (r["lr_mult"], decode(r["regularizer"]), r["need_clip"])
                              for r in meta["parameters"]})
    restore(opt, (meta, arrays), match="name")
    return opt


def _settings(path, meta, parameters, match, overrides):
    """(groups, constructor kwargs) of the optimizer a checkpoint describes, over
    ``parameters``."""
    from ..params.entries import identify
    cfg, records = meta["config"], meta["parameters"]
    items = list(parameters)
    named = []
    for i, item in enumerate(items):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            named.append(item)
        else:
            named.append((identify(item)[0] or f"param_{i}", item))
    index = _pair([n for n, _ in named], records, match, os.fspath(path))
    by_record = {i: p for (_, p), i in zip(named, index)}
    groups = []
    for gi, g in enumerate(cfg["groups"]):
        group = {"params": [(r["name"], by_record[i]) for i, r in enumerate(records)
                            if r["group"] == gi],
                 "beta1": g["beta1"], "beta2": g["beta2"], "epsilon": g["epsilon"],
                 "grad_clip": decode(g["grad_clip"])}
        if g["learning_rate"] is not None:
            group["learning_rate"] = g["learning_rate"]
        if g["weight_decay"] is not None:
            group["weight_decay"] = decode(g["weight_decay"])
        groups.append(group)
    lr = cfg["learning_rate"]
    if isinstance(lr, dict) and "__unencodable__" in lr and "learning_rate" not in overrides:
        raise CheckpointError(f"{path}: the learning rate was a {lr['__unencodable__']}, which "
                              "a checkpoint cannot rebuild: pass learning_rate=<that scheduler>")
    kwargs = {"learning_rate": decode(lr), "beta1": cfg["beta1"], "beta2": cfg["beta2"],
              "epsilon": cfg["epsilon"], "weight_decay": decode(cfg["weight_decay"]),
              "grad_clip": decode(cfg["grad_clip"]), "name": cfg["name"],
              "flavor": meta["flavor"], "skip_nonfinite": cfg["skip_nonfinite"],
              "lazy_mode": cfg.get("lazy_mode", False),
              "state_dtype": cfg.get("state_dtype", "float32"),
              "state_rounding": cfg.get("state_rounding", "stochastic")}
    if meta["multi_precision"]:
        kwargs["multi_precision"] = True
    kwargs["device"] = identify(named[0][1])[1] if named else "cpu"
    kwargs.update(overrides)
    return groups, kwargs
