"""Checkpoints: one ``.npz`` file, readable with numpy alone, written atomically, checksummed.

Format (version 1) -- ``np.load(path, allow_pickle=False)`` opens it:
  ``__meta__``          0-d unicode array: JSON with ``format``, ``version``, ``flavor``,
                        ``multi_precision``, ``config`` (lr or scheduler, betas, epsilon, weight
                        decay, clipper, groups, name, skip_nonfinite, lazy_mode), ``parameters``
                        (name, shape, dtype, group, lr multiplier, regularizer, need_clip,
                        has_state, in order),
                        ``scheduler`` (its state_dict), ``skipped_steps``, ``extra`` (the caller's
                        JSON) and ``checksums`` {array name: sha256 of dtype, shape and bytes}.
  ``__meta_sha256__``   sha256 of the ``__meta__`` text.
  ``param/<name>``      the parameter's value (its own dtype and shape);
  ``master/<name>``     the fp32 master weight (multi_precision only);
  ``moment/<name>``, ``inf_norm/<name>``, ``beta1_pow/<name>`` ([1]), ``steps/<name>`` ([1],
                        int64): optimizer state, only for parameters that have been stepped;
  ``extra/<key>``       arrays the caller adds (the CLI stores its metrics there).
bfloat16 arrays (npy has no such type) are stored as their uint16 bits; ``meta["bfloat16"]``
lists them.
Objects (schedulers, clippers, regularizers) are stored as {"__class__", "__dict__"} and rebuilt
only from this package's own classes: a checkpoint cannot name code to run.

Writes go to a temporary file in the same directory, are fsync'ed, then renamed over the target
(and the directory fsync'ed): a crash leaves the previous or the new checkpoint, never a mix.
Reading checks every checksum before anything is changed; a truncated, tampered or foreign file
raises ``CheckpointError`` naming the file and what is wrong.
"""
import hashlib
import importlib
import json
import os
import zipfile

import numpy as np

FORMAT, VERSION = "adamax-engine-checkpoint", 1
_REBUILDABLE = ("adamax_engine.lr.", "adamax_engine.transforms.clip",
                "adamax_engine.transforms.regularizer")
#: where those classes lived before the package was split into layers: older checkpoints name them
_MOVED = {"adamax_engine.clip": "adamax_engine.transforms.clip",
          "adamax_engine.regularizer": "adamax_engine.transforms.regularizer"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not fit the optimizer it is loaded into."""


# --- JSON encoding of the optimizer's configuration --------------------------------------------
class _Unencodable(Exception):
    pass


def encode(value):
    """Plain JSON for numbers/strings/lists/dicts and this package's schedulers/clippers."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    cls = type(value)
    if cls.__module__.startswith(_REBUILDABLE):
        return {"__class__": f"{cls.__module__}.{cls.__qualname__}",
                "__dict__": {k: encode(v) for k, v in vars(value).items()}}
    raise _Unencodable(f"{cls.__module__}.{cls.__qualname__}")


def decode(value):
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__class__" not in value:
        return {k: decode(v) for k, v in value.items()}
    module, _, name = value["__class__"].rpartition(".")
    module = _MOVED.get(module, module)
    if not (module + ".").startswith(_REBUILDABLE) and module not in _REBUILDABLE:
        raise CheckpointError(f"checkpoint: refusing to build {value['__class__']!r} "
                              "(only adamax_engine schedulers, clippers and regularizers)")
    cls = getattr(importlib.import_module(module), name)
    obj = object.__new__(cls)
    obj.__dict__.update({k: decode(v) for k, v in value["__dict__"].items()})
    return obj


def _digest(array):
    h = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    h.update(np.ascontiguousarray(array).view(np.uint8).reshape(-1).data)
    return h.hexdigest()


# --- writing ------------------------------------------------------------------------------------
def _host(array):
    return array if isinstance(array, np.ndarray) else array.copy_to_host()


def _config(opt):
    s = opt.settings
    try:
        lr = encode(s.learning_rate)
    except _Unencodable as exc:  # a lambda scheduler, or a foreign (paddle) scheduler object
        lr = {"__unencodable__": str(exc)}
    groups = [{"beta1": g["beta1"], "beta2": g["beta2"], "epsilon": g["epsilon"],
               "learning_rate": g["learning_rate"], "weight_decay": encode(g["weight_decay"]),
               "grad_clip": encode(g["grad_clip"])} for g in s.groups]
    return {"learning_rate": lr, "beta1": s.beta1, "beta2": s.beta2,
            "epsilon": s.epsilon, "weight_decay": encode(s.weight_decay),
            "grad_clip": encode(s.grad_clip), "name": s.name, "groups": groups,
            "skip_nonfinite": s.skip_nonfinite, "lazy_mode": s.lazy_mode}


def collect(opt):
    """(meta, arrays) describing ``opt`` and its parameters' current values."""
    arrays, params = {}, []
    for e in opt.registry.entries:
        b, k = e.bucket, e.index
        stepped = bool(b.has_state[k])
        arrays[f"param/{e.name}"] = opt.registry.host_param(e)
        if b.master is not None:
            arrays[f"master/{e.name}"] = _host(b.segment(b.master, k)).copy()
        if stepped:
            arrays[f"moment/{e.name}"] = _host(b.segment(b.moment, k)).copy()
            arrays[f"inf_norm/{e.name}"] = _host(b.segment(b.inf_norm, k)).copy()
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
            "config": _config(opt), "parameters": params,
            "scheduler": encode(sched.state_dict()) if not isinstance(sched, float) else None,
            "skipped_steps": int(opt.skipped_steps)}
    return meta, arrays


def save(opt, path, extra=None, extra_arrays=None):
    """Write ``opt`` (state, config) and its parameters to ``path`` atomically."""
    meta, arrays = collect(opt)
    meta["extra"] = encode(extra or {})
    for key, value in (extra_arrays or {}).items():
        arrays[f"extra/{key}"] = np.asarray(value)
    meta["bfloat16"] = sorted(k for k, v in arrays.items() if v.dtype.name == "bfloat16")
    for key in meta["bfloat16"]:  # npy has no bfloat16: its bits, listed in the meta
        arrays[key] = arrays[key].view(np.uint16)
    meta["checksums"] = {k: _digest(v) for k, v in arrays.items()}
    text = json.dumps(meta)
    arrays["__meta__"] = np.array(text)
    arrays["__meta_sha256__"] = np.array(hashlib.sha256(text.encode()).hexdigest())
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- reading ------------------------------------------------------------------------------------
def read(path):
    """(meta, arrays), every checksum verified; CheckpointError for anything unreadable."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupted?): "
                              f"{exc}") from None
    text, digest = arrays.pop("__meta__", None), arrays.pop("__meta_sha256__", None)
    if text is None or digest is None:
        raise CheckpointError(f"{path}: not an adamax-engine checkpoint (no __meta__)")
    text = str(text)
    if hashlib.sha256(text.encode()).hexdigest() != str(digest):
        raise CheckpointError(f"{path}: __meta__ does not match its checksum (tampered?)")
    meta = json.loads(text)
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: format {meta.get('format')!r} version "
                              f"{meta.get('version')!r}, expected {FORMAT!r} version {VERSION}")
    sums = meta["checksums"]
    if set(sums) != set(arrays):
        odd = sorted(set(sums) ^ set(arrays))[0]
        raise CheckpointError(f"{path}: array {odd!r} is missing or unexpected")
    for key, value in arrays.items():
        if _digest(value) != sums[key]:
            raise CheckpointError(f"{path}: array {key!r} does not match its checksum (tampered?)")
    if meta["bfloat16"]:
        from ..adapters.tensor import bfloat16
        for key in meta["bfloat16"]:
            arrays[key] = arrays[key].view(bfloat16())
    return meta, arrays


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


def restore(opt, path, match="name", params=True):
    """Load a checkpoint into ``opt`` (and its parameters' values unless ``params=False``).

    Everything is read and checked (checksums, names, shapes, dtypes, flavor, scheduler) before
    anything changes: on CheckpointError the optimizer and the parameters are as they were.
    Returns the checkpoint's ``extra`` dict plus its ``extra/`` arrays under ``arrays``.
    """
    from ..lr import is_scheduler
    meta, arrays = path if isinstance(path, tuple) else read(path)
    where = "checkpoint" if isinstance(path, tuple) else os.fspath(path)
    if meta["flavor"] != opt.flavor:
        raise CheckpointError(f"{where}: flavor {meta['flavor']!r}, the optimizer's is "
                              f"{opt.flavor!r}")
    if meta["multi_precision"] != opt.settings.multi_precision:
        raise CheckpointError(f"{where}: multi_precision={meta['multi_precision']}, the "
                              "optimizer's differs")
    entries, records = opt.registry.entries, meta["parameters"]
    index = _pair([e.name for e in entries], records, match, where)
    plan = []
    for e, i in zip(entries, index):
        r = records[i]
        if tuple(r["shape"]) != tuple(e.shape) or r["dtype"] != str(e.dtype):
            raise CheckpointError(f"{where}: parameter {r['name']!r} is {r['dtype']}{r['shape']}, "
                                  f"the optimizer's {e.name!r} is {e.dtype}{list(e.shape)}")
        plan.append((e, r))
    sched, saved = opt.settings.learning_rate, meta["scheduler"]
    if (saved is None) != isinstance(sched, float):
        raise CheckpointError(f"{where}: saved with a {'float' if saved is None else 'scheduler'}"
                              " learning rate, the optimizer has the other kind")
    if saved is not None and is_scheduler(sched):
        sched.state_keys() if hasattr(sched, "state_keys") else None
        missing = [k for k in getattr(sched, "keys", []) if k not in saved]
        if missing:
            raise CheckpointError(f"{where}: scheduler state lacks {missing[0]!r} (saved by a "
                                  f"different scheduler than {type(sched).__name__}?)")
    # --- all checked: apply -----------------------------------------------------------------
    for e, r in plan:
        b, k, name = e.bucket, e.index, r["name"]
        if params:
            opt.registry.write_param(e, arrays[f"param/{name}"])
        if b.master is not None:
            b.load_master(k, arrays[f"master/{name}"])
        if r["has_state"]:
            b.load_segment_state(k, True, arrays[f"moment/{name}"], arrays[f"inf_norm/{name}"],
                                 arrays[f"beta1_pow/{name}"][0], arrays[f"steps/{name}"][0])
        else:
            b.load_segment_state(k, False)
    if saved is not None:
        sched.set_state_dict(decode(saved))
    opt.set_skipped_steps(meta["skipped_steps"])
    extra = dict(meta.get("extra") or {})
    extra["arrays"] = {k[6:]: v for k, v in arrays.items() if k.startswith("extra/")}
    return extra


def _copy(target, value):
    if isinstance(target, np.ndarray):
        target[...] = value
    else:
        target.copy_to_device(np.ascontiguousarray(value))


def build(cls, path, parameters, match="name", **overrides):
    """Adamax.load: a new optimizer over ``parameters`` configured and filled from ``path``.

    ``parameters``: a list of parameters or of (name, parameter) pairs, from any framework or
    device; the checkpoint's groups and per-parameter settings (lr multiplier, regularizer,
    need_clip) are applied to them. ``overrides`` go to the constructor (mode, backend,
    learning_rate -- required when the saved one was a lambda or foreign scheduler). The device
    follows the parameters: CUDA device arrays load onto the GPU.
    """
    from ..params.registry import identify
    meta, arrays = read(path)
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
              "lazy_mode": cfg.get("lazy_mode", False)}
    if meta["multi_precision"]:
        kwargs["multi_precision"] = True
    kwargs["device"] = identify(named[0][1])[1] if named else "cpu"
    kwargs.update(overrides)
    opt = cls(parameters=groups, **kwargs)
    # the checkpoint's effective per-parameter settings
    opt.configure_parameters({r["name"]: (r["lr_mult"], decode(r["regularizer"]), r["need_clip"])
                              for r in records})
    restore(opt, (meta, arrays), match="name")
    return opt
