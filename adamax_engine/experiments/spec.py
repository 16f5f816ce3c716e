"""The experiment file: validated whole before anything runs.

    experiment: {name: demo, steps: 200, seed: 0, log_every: 20, checkpoint_every: 50}
    problem:    {name: softmax_blobs, samples: 2048}      # options: experiments/problems.py
    model:      {framework: numpy}                         # numpy (built-in backward) | torch
    optimizer:  {...}                                      # adamax_engine/config.py
    sweep:      {grid: {optimizer.learning_rate: [0.01, 0.1], optimizer.flavor: [paddle, torch]}}
    distributed: {backend: mpi, shard_state: true, bucket_mb: 32}  # under mpiexec (parallel/mpi.py)
"""
import copy
import importlib.util
import itertools
import os
import re

import yaml

from .. import config as C
from . import problems

TOP_KEYS = {"experiment", "problem", "model", "optimizer", "sweep", "distributed"}
DISTRIBUTED = {"backend": "mpi", "shard_state": False, "bucket_mb": 32}
EXPERIMENT = {"name": None, "steps": 200, "seed": 0, "log_every": 0, "checkpoint_every": 0,
              "max_loss": None, "max_loss_ratio": 1e6}
FRAMEWORKS = ["numpy", "torch"]


def set_path(data, dotted, value, src=C.Source(), what="--set"):
    """data[a][b][c] = value for 'a.b.c', creating mappings on the way."""
    keys = dotted.split(".")
    if not all(keys):
        raise src.error(dotted, f"{what}: expected a dotted key like optimizer.learning_rate")
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise src.error(".".join(keys[:i + 1]), f"{what}: is a {C.kind_of(child)}, not a mapping")
        node = child
    node[keys[-1]] = value


def apply_overrides(data, overrides, src=None):
    """``--set key=value`` pairs; values are parsed as YAML (numbers, bools, lists); ``src``
    (config.Source) records them, so that an error in one names its ``--set`` argument."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise C.ConfigError(f"--set {item!r}: expected key=value")
        try:
            value = C.parse(raw)
        except yaml.YAMLError:
            raise C.ConfigError(f"--set {item!r}: the value is not valid YAML") from None
        set_path(data, key.strip(), value)
        if src is not None:
            src.override(key.strip(), item)
    return data


RUN_NAME = re.compile(r"[A-Za-z0-9._-]+")


def validate(data, src, name="experiment"):
    """A normalised spec dict, or ConfigError naming the first bad field."""
    C.check_keys(data, "", TOP_KEYS, src)
    exp = data.get("experiment") or {}
    C.check_keys(exp, "experiment", set(EXPERIMENT), src)
    out = {"experiment": {**EXPERIMENT, "name": name}}
    for key in ("steps", "seed", "log_every", "checkpoint_every"):
        if key in exp:
            lo = 1 if key == "steps" else 0
            out["experiment"][key] = C.number(exp[key], f"experiment.{key}", src, lo=lo,
                                              integer=True)
    for key in ("max_loss", "max_loss_ratio"):  # divergence rules (runner.check_divergence)
        if exp.get(key) is not None:
            out["experiment"][key] = C.number(exp[key], f"experiment.{key}", src, lo=0)
    if "name" in exp:
        if not isinstance(exp["name"], str) or not RUN_NAME.fullmatch(exp["name"]) \
                or exp["name"] in (".", ".."):
            raise src.error("experiment.name", "expected a plain name (letters, digits, '.', "
                                                f"'_', '-'; it names a folder), got {exp['name']!r}")
        out["experiment"]["name"] = exp["name"]
    prob = data.get("problem") or {"name": "softmax_blobs"}
    if isinstance(prob, str):
        prob = {"name": prob}
    if not isinstance(prob, dict):
        raise src.error("problem", f"expected a problem name or a mapping, got {C.kind_of(prob)}")
    pname = C.choice(prob.get("name"), "problem.name", src, sorted(problems.OPTIONS))
    if pname == "digits" and importlib.util.find_spec("sklearn") is None:
        raise src.error("problem.name", "digits needs scikit-learn, which is not installed "
                                        "(pip install scikit-learn)")
    spec = problems.OPTIONS[pname]
    C.check_keys(prob, "problem", set(spec) | {"name"}, src)
    opts = {}
    for key, (default, kind, lo) in spec.items():
        if key in prob:
            opts[key] = C.number(prob[key], f"problem.{key}", src, lo=lo, integer=kind is int)
    out["problem"] = {"name": pname, **opts}
    need, have = problems.estimate_bytes(pname, opts), _memory()
    if need > have // 2:
        raise src.error("problem", f"{pname} of this size needs about {need / 2**30:.3g} GiB, "
                                   f"more than half this machine's {have / 2**30:.3g} GiB")
    model = data.get("model") or {}
    C.check_keys(model, "model", {"framework"}, src)
    out["model"] = {"framework": C.choice(model.get("framework", "numpy"), "model.framework", src,
                                          FRAMEWORKS)}
    C.optimizer_kwargs(data.get("optimizer"), src)  # validate now; built again per run
    _check_schedule_length(data.get("optimizer"), out["experiment"]["steps"], src)
    out["optimizer"] = copy.deepcopy(data.get("optimizer") or {})
    out["distributed"] = _distributed(data.get("distributed"), src)
    out["sweep"] = _sweep(data, src, name) if data.get("sweep") is not None else None
    if out["sweep"] and out["distributed"]:
        raise src.error("distributed", "a sweep runs its points one process at a time; drop "
                                       "distributed or the sweep")
    return out


def defaults_applied(path):
    """Lines saying which blocks a config leaves out, and what applies instead."""
    data, _ = C.load_yaml(path)
    out = []
    if not data.get("problem"):
        out.append("no problem block: softmax_blobs with its defaults (samples 2048, features "
                   "16, classes 4)")
    if not data.get("experiment"):
        out.append(f"no experiment block: {EXPERIMENT['steps']} steps, seed 0, no checkpoints")
    if not data.get("optimizer"):
        out.append("no optimizer block: Adamax's defaults (learning_rate 0.001, beta1 0.9, "
                   "beta2 0.999, epsilon 1e-08, paddle flavor, no clip, no decay)")
    return out


def _check_schedule_length(block, steps, src):
    """A schedule that ends (OneCycleLR's total_steps) must last the run: paddle's raises when
    stepped past its end, which would stop the run there."""
    sched = (block or {}).get("lr_scheduler") if isinstance(block, dict) else None
    if not isinstance(sched, dict) or sched.get("type") != "OneCycleLR":
        return
    warmup = sched.get("warmup") or {}
    needed = steps - (warmup.get("steps", 0) if isinstance(warmup, dict) else 0)
    if sched.get("total_steps", needed) < needed:
        raise src.error("experiment.steps", f"{steps} steps, but optimizer.lr_scheduler "
                                            f"(OneCycleLR) has total_steps: "
                                            f"{sched['total_steps']}; raise total_steps to "
                                            f"{needed} or lower experiment.steps")


def _memory():
    """This machine's physical memory in bytes (64 GiB where it cannot be asked)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 64 << 30


def _distributed(block, src):
    if block is None:
        return None
    C.check_keys(block, "distributed", set(DISTRIBUTED), src)
    out = dict(DISTRIBUTED)
    C.choice(block.get("backend", "mpi"), "distributed.backend", src, ["mpi"])
    if "shard_state" in block:
        if not isinstance(block["shard_state"], bool):
            raise src.error("distributed.shard_state",
                            f"expected true or false, got {block['shard_state']!r}")
        out["shard_state"] = block["shard_state"]
    if "bucket_mb" in block:
        out["bucket_mb"] = C.number(block["bucket_mb"], "distributed.bucket_mb", src, lo=1)
    return out


def _sweep(data, src, name):
    block = data["sweep"]
    C.check_keys(block, "sweep", {"grid"}, src, required=("grid",))
    grid = block["grid"]
    if not isinstance(grid, dict) or not grid:
        raise src.error("sweep.grid", "expected a mapping of dotted keys to lists of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise src.error(f"sweep.grid.{key}", f"expected a non-empty list, got {values!r}")
        if str(key).split(".")[0] == "sweep":
            raise src.error(f"sweep.grid.{key}", "a sweep cannot change the sweep")
    points = []
    base = {k: v for k, v in data.items() if k != "sweep"}
    for combo in itertools.product(*grid.values()):
        point = copy.deepcopy(base)
        for key, value in zip(grid, combo):
            set_path(point, str(key), value, src, what=f"sweep.grid.{key}")
        label = ", ".join(f"{k}={v}" for k, v in zip(grid, combo))
        try:
            spec = validate(point, C.Source(), name)
        except C.ConfigError as exc:
            raise src.error("sweep.grid", f"point [{label}]: {exc}") from None
        points.append((dict(zip(grid, combo)), spec))
    return points
