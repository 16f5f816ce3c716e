"""The checkpoint file: one ``.npz``, readable with numpy alone, written atomically, checksummed.

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
import glob
import hashlib
import importlib
import inspect
import json
import math
import numbers
import os
import zipfile

import numpy as np

FORMAT, VERSION = "adamax-engine-checkpoint", 1
#: the modules whose classes a checkpoint may name (schedulers, clippers, regularizers)
_REBUILDABLE = ("adamax_engine.lr.base", "adamax_engine.lr.decay", "adamax_engine.lr.cycle",
                "adamax_engine.lr.wrap", "adamax_engine.transforms.clip",
                "adamax_engine.transforms.regularizer")
#: where those classes lived before the package was split into layers: older checkpoints name them
_MOVED = {"adamax_engine.clip": "adamax_engine.transforms.clip",
          "adamax_engine.regularizer": "adamax_engine.transforms.regularizer"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not fit the optimizer it is loaded into."""


# --- JSON encoding of the optimizer's configuration --------------------------------------------
class Unencodable(Exception):
    """An object a checkpoint cannot store (a lambda scheduler, a foreign framework's)."""


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
    if cls.__module__ in _REBUILDABLE:
        return {"__class__": f"{cls.__module__}.{cls.__qualname__}",
                "__dict__": {k: encode(v) for k, v in vars(value).items()}}
    raise Unencodable(f"{cls.__module__}.{cls.__qualname__}")


def decode(value, where="checkpoint"):
    """encode's inverse. Objects are rebuilt only from this package's own classes, and checked:
    clippers and regularizers through their constructors (so a clip_norm of "DROP TABLE" is
    refused as a constructor would refuse it), schedulers by their numbers. CheckpointError
    naming ``where`` for anything else."""
    if isinstance(value, list):
        return [decode(v, where) for v in value]
    if not isinstance(value, dict):
        return value
    if "__class__" not in value:
        return {k: decode(v, where) for k, v in value.items()}
    spec, fields = value.get("__class__"), value.get("__dict__")
    if not isinstance(spec, str) or not isinstance(fields, dict):
        raise CheckpointError(f"{where}: an object needs a '__class__' string and a '__dict__' "
                              f"mapping, got {str(value)[:80]}")
    module, _, name = spec.rpartition(".")
    module = _MOVED.get(module, module)
    if module not in _REBUILDABLE:
        raise CheckpointError(f"{where}: refusing to build {spec!r} (only adamax_engine "
                              "schedulers, clippers and regularizers)")
    from ..lr.base import LRScheduler
    from ..transforms.clip import GradientClipBase
    from ..transforms.regularizer import WeightDecayRegularizer
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(
            cls, (LRScheduler, GradientClipBase, WeightDecayRegularizer))):
        raise CheckpointError(f"{where}: refusing to build {spec!r} (not a scheduler, clipper "
                              "or regularizer class)")
    fields = {k: decode(v, where) for k, v in fields.items()}
    if issubclass(cls, LRScheduler):
        return _scheduler(cls, fields, f"{where}: {name}")
    return _rebuilt(cls, fields, f"{where}: {name}")


def _rebuilt(cls, fields, where):
    """A clipper or regularizer made by its own constructor from the stored fields, which must
    then be exactly what it holds."""
    names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    try:
        obj = cls(**{n: fields[n] for n in names if n in fields})
    except (TypeError, ValueError, AssertionError) as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if vars(obj) != fields:
        raise CheckpointError(f"{where}: stored fields {sorted(fields)} do not rebuild it "
                              f"(it holds {vars(obj)})")
    return obj


def _scheduler(cls, fields, where):
    """A scheduler with the stored fields; its epoch an int, its rates finite numbers."""
    for key, value in fields.items():
        if key == "last_epoch" and (isinstance(value, bool) or not isinstance(value, int)):
            raise CheckpointError(f"{where}.last_epoch: expected an int, got {value!r}")
        if key in ("base_lr", "last_lr") and (isinstance(value, bool) or not isinstance(
                value, numbers.Real) or not math.isfinite(value)):
            raise CheckpointError(f"{where}.{key}: expected a finite number, got {value!r}")
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


def digest(array):
    h = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    h.update(np.ascontiguousarray(array).view(np.uint8).reshape(-1).data)
    return h.hexdigest()


# --- writing ------------------------------------------------------------------------------------
def write(meta, arrays, path):
    """Write ``meta`` (JSON-able) and ``arrays`` to ``path`` atomically: a temporary file in the
    same directory, fsync'ed, renamed over the target, the directory fsync'ed. Temporary files
    that writers killed mid-save left behind (``<path>.tmp.<pid>`` of a dead pid) go first."""
    meta = dict(meta)
    meta["bfloat16"] = sorted(k for k, v in arrays.items() if v.dtype.name == "bfloat16")
    arrays = {k: (v.view(np.uint16) if k in meta["bfloat16"] else v) for k, v in arrays.items()}
    meta["checksums"] = {k: digest(v) for k, v in arrays.items()}
    text = json.dumps(meta)
    arrays["__meta__"] = np.array(text)
    arrays["__meta_sha256__"] = np.array(hashlib.sha256(text.encode()).hexdigest())
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    remove_stale_temps(path)
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


def remove_stale_temps(path):
    """Delete ``<path>.tmp.<pid>`` files whose writer is gone (only that pattern, only pids
    that no longer exist); returns how many."""
    removed = 0
    for tmp in glob.glob(glob.escape(os.fspath(path)) + ".tmp.*"):
        pid = tmp.rsplit(".", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            os.unlink(tmp)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process (or an odd pid): leave its file alone
    return True


# --- reading ------------------------------------------------------------------------------------
#: the metadata a reader relies on: field -> (type(s), what it is)
_META = {"format": (str, "a string"), "version": (int, "an int"), "flavor": (str, "a string"),
         "multi_precision": (bool, "a bool"), "config": (dict, "a mapping"),
         "parameters": (list, "a list"), "skipped_steps": (int, "an int"),
         "checksums": (dict, "a mapping"), "bfloat16": (list, "a list")}
_RECORD = {"name": (str, "a string"), "shape": (list, "a list of ints"),
           "dtype": (str, "a string"), "group": (int, "an int"),
           "lr_mult": ((int, float), "a number"), "need_clip": (bool, "a bool"),
           "has_state": (bool, "a bool")}


def read(path):
    """(meta, arrays), every checksum verified and the metadata's shape checked;
    CheckpointError naming the file for anything unreadable, never another exception."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except Exception as exc:  # noqa: BLE001 - zip/npy internals raise anything on a bad file
        if "allow_pickle" in str(exc):  # (numpy's advice to load it unsafely: not ours to give)
            if zipfile.is_zipfile(path):
                raise CheckpointError(f"{path}: holds pickled Python objects, which "
                                      "adamax-engine checkpoints never do: not loaded") from None
            raise CheckpointError(f"{path}: not a readable checkpoint (not an .npz file)") \
                from None
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated, corrupted or not "
                              f"an .npz?): {type(exc).__name__}: {exc}"[:300]) from None
    text, check = arrays.pop("__meta__", None), arrays.pop("__meta_sha256__", None)
    if text is None or check is None:
        raise CheckpointError(f"{path}: not an adamax-engine checkpoint (no __meta__)")
    text = str(text)
    if hashlib.sha256(text.encode()).hexdigest() != str(check):
        raise CheckpointError(f"{path}: __meta__ does not match its checksum (tampered?)")
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"{path}: __meta__ is not JSON: {exc}") from None
    _check_meta(meta, path)
    sums = meta["checksums"]
    if set(sums) != set(arrays):
        odd = sorted(set(sums) ^ set(arrays))[0]
        raise CheckpointError(f"{path}: array {odd!r} is missing or unexpected")
    for key, value in arrays.items():
        if digest(value) != sums[key]:
            raise CheckpointError(f"{path}: array {key!r} does not match its checksum (tampered?)")
    for key in meta["bfloat16"]:
        if key not in arrays or arrays[key].dtype != np.uint16:
            raise CheckpointError(f"{path}: bfloat16 array {key!r} is not stored as uint16 bits")
    if meta["bfloat16"]:
        from ..adapters.tensor import bfloat16
        for key in meta["bfloat16"]:
            arrays[key] = arrays[key].view(bfloat16())
    return meta, arrays


def _check_meta(meta, path):
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: __meta__ must be a JSON object, got "
                              f"{type(meta).__name__}")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: format {meta.get('format')!r} version "
                              f"{meta.get('version')!r}, expected {FORMAT!r} version {VERSION}")
    _fields(meta, _META, f"{path}: __meta__")
    for i, record in enumerate(meta["parameters"]):
        where = f"{path}: __meta__.parameters[{i}]"
        if not isinstance(record, dict):
            raise CheckpointError(f"{where}: expected a mapping, got {type(record).__name__}")
        _fields(record, _RECORD, where)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                   for n in record["shape"]):
            raise CheckpointError(f"{where}.shape: expected a list of ints >= 0, got "
                                  f"{record['shape']!r}")


def _fields(mapping, spec, where):
    for key, (kind, what) in spec.items():
        if key not in mapping:
            raise CheckpointError(f"{where}: '{key}' is missing")
        value = mapping[key]
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise CheckpointError(f"{where}.{key}: expected {what}, got {value!r}"[:200])
