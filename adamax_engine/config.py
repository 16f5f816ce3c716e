"""The YAML pipeline: one file describes the optimizer, its LR schedule, clipper, regularizer and
parameter groups; ``from_config(path_or_dict, parameters)`` builds the ``Adamax``.

    optimizer:
      learning_rate: 0.01
      flavor: paddle                 # paddle | torch | optax | keras
      weight_decay: 1.0e-4           # a float (L2) or {type: L1|L2, coeff: ...}
      grad_clip: {type: global_norm, clip_norm: 1.0}   # value (max, min) | norm | global_norm
      lr_scheduler:
        type: CosineAnnealingDecay   # any of adamax_engine.lr's 17 schedulers, with its arguments
        T_max: 200
        warmup: {steps: 20, start_lr: 0.0}   # wraps it in LinearWarmup up to learning_rate
      groups:                        # first matching group wins; fnmatch patterns on names
        - {match: ["*.bias"], weight_decay: 0.0}
        - {match: ["embedding.*"], learning_rate: 0.5}   # an lr multiplier, as in paddle

Validation is strict: an unknown key (with a "did you mean"), a wrong type, a value out of range
or a missing field raises ConfigError with the YAML path and, when read from a file, its line:
``exp.yaml:7: optimizer.lr_scheduler.gamma: must be < 1.0, got 1.5``. Files are read with
YAML through ``SafeLoader`` only (``Loader`` below: PyYAML's safe loader with YAML 1.2's float
rule, so ``1e-3`` is a number as users write it; line numbers come from yaml.compose with the
same loader).
"""
import difflib
import fnmatch
import inspect
import math
import numbers
import re

import yaml

from . import lr as lr_module
from .transforms.clip import ClipGradByGlobalNorm, ClipGradByNorm, ClipGradByValue
from .kernels.layout import FLAVORS
from .transforms.regularizer import L1Decay, L2Decay


class ConfigError(ValueError):
    """One config problem: ``[file:line: ]path: what was expected, got what``."""


class Source:
    """Where values came from, to put line numbers into messages."""

    def __init__(self, name=None, lines=None):
        self.name, self.lines = name, lines or {}
        self.overrides = {}  # dotted key -> the --set argument that set it

    def override(self, key, argument):
        """Values under ``key`` came from ``--set argument``: errors there name it."""
        self.overrides[key] = argument

    def error(self, path, message):
        parts = path.split(".")
        for n in range(len(parts), 0, -1):  # a --set value: name the argument, not a line
            arg = self.overrides.get(".".join(parts[:n]))
            if arg is not None:
                return ConfigError(f"--set {arg}: {path}: {message}")
        line = None
        while parts and line is None:  # the field's own line, else its parent's
            line = self.lines.get(".".join(parts))
            parts.pop()
        where = f"{self.name}:{line}: " if self.name and line else ""
        return ConfigError(f"{where}{path}: {message}")


class Loader(yaml.SafeLoader):
    """yaml.SafeLoader (no tags that build objects) with YAML 1.2's float rule: PyYAML follows
    YAML 1.1, where ``1e-3`` and ``1.0e30`` without a sign in the exponent or a dot are
    strings."""


Loader.yaml_implicit_resolvers = {  # a deep copy: SafeLoader's own lists stay as they are
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"""^(?:
     [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X), list("-+0123456789."))


def parse(text):
    """A YAML document (or one --set value) with ``Loader``."""
    return yaml.load(text, Loader=Loader)  # noqa: S506 - Loader is a SafeLoader


def _line_map(text):
    """{'a.b.0.c': line} for every key and list item of a YAML document (1-based lines).

    Each node is walked once: an alias (``*x``) points at a node already seen, whose keys are
    not listed again under the alias's path (a "billion laughs" document of nested aliases
    would otherwise take exponential time and memory)."""
    root = yaml.compose(text, Loader=Loader)
    lines, seen = {}, set()

    def walk(node, path):
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = f"{path}.{key.value}" if path else str(key.value)
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                sub = f"{path}.{i}"
                lines[sub] = item.start_mark.line + 1
                walk(item, sub)
    if root is not None:
        walk(root, "")
    return lines


#: the largest config file read (a config is a page of settings; /dev/zero is not one)
MAX_CONFIG_BYTES = 1 << 20


def load_yaml(path):
    """(dict, Source) from a YAML file; ConfigError for unreadable or non-mapping content."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB: not a config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {raw[exc.start]:#04x}); "
                          "save the file as UTF-8") from None
    try:
        data = parse(text)
        lines = _line_map(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got "
                          f"{type(data).__name__}")
    return data, Source(str(path), lines)


# --- small typed readers -------------------------------------------------------------------------
def check_keys(block, path, known, src, required=()):
    if not isinstance(block, dict):
        raise src.error(path, f"expected a mapping, got {kind_of(block)}")
    for key in block:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else \
                f" (known: {', '.join(sorted(known))})"
            raise src.error(f"{path}.{key}" if path else str(key), f"unknown key{hint}")
    for key in required:
        if key not in block:
            raise src.error(f"{path}.{key}" if path else key, "missing (required)")


def kind_of(value):
    return "null" if value is None else type(value).__name__


def number(value, path, src, *, lo=None, hi=None, lo_open=False, hi_open=False, integer=False,
           finite=True):
    """A real number (an int where ``integer``) within the given bounds; NaN and inf only
    where ``finite=False`` says a field means something by them."""
    if integer and isinstance(value, float) and value.is_integer():
        value = int(value)  # 1e6 for a size
    ok = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)
    if isinstance(value, bool) or not ok:
        raise src.error(path, f"expected {'an int' if integer else 'a number'}, got "
                              f"{kind_of(value)} {value!r}")
    if finite and not math.isfinite(value):
        raise src.error(path, f"expected a finite number, got {value}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise src.error(path, f"must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and (value >= hi if hi_open else value > hi):
        raise src.error(path, f"must be {'<' if hi_open else '<='} {hi}, got {value}")
    return value if integer else float(value)


def choice(value, path, src, options):
    if value not in options:
        close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise src.error(path, f"expected one of {', '.join(map(str, options))}, got "
                              f"{value!r}{hint}")
    return value


# --- the optimizer block ------------------------------------------------------------------------
OPTIMIZER_KEYS = {"learning_rate", "beta1", "beta2", "epsilon", "flavor", "device", "mode",
                  "skip_nonfinite", "multi_precision", "weight_decay", "grad_clip", "lr_scheduler",
                  "groups", "name", "state_dtype", "state_rounding"}
GROUP_KEYS = {"match", "learning_rate", "beta1", "beta2", "epsilon", "weight_decay", "grad_clip"}
SCHEDULERS = {name: getattr(lr_module, name) for name in lr_module.__all__
              if name not in ("LRScheduler", "is_scheduler")}
# range rules the schedulers' own checks state less clearly (field: (rule kwargs))
SCHEDULER_RULES = {
    "gamma": {"StepDecay": dict(lo=0, hi=1.0, hi_open=True),
              "MultiStepDecay": dict(lo=0, hi=1.0, hi_open=True),
              "ExponentialDecay": dict(lo=0, lo_open=True, hi=1.0, hi_open=True),
              "NaturalExpDecay": dict(lo=0, lo_open=True)},
    "factor": {"ReduceOnPlateau": dict(lo=0, hi=1.0, hi_open=True)},
}
# integer fields and their smallest allowed value
INT_FIELDS = {"step_size": 1, "decay_steps": 1, "T_max": 1, "T_0": 1, "T_mult": 1,
              "total_steps": 1, "warmup_steps": 1, "step_size_up": 1, "step_size_down": 1,
              "patience": 0, "cooldown": 0, "d_model": 1}
LR_ARGS = ("learning_rate", "base_learning_rate", "max_learning_rate")


def _scheduler(block, base_lr, path, src):
    if not isinstance(block, dict):
        raise src.error(path, f"expected a mapping with 'type', got {kind_of(block)}")
    if "type" not in block:
        raise src.error(f"{path}.type", f"missing (required; one of {', '.join(sorted(SCHEDULERS))})")
    name = choice(block["type"], f"{path}.type", src, sorted(SCHEDULERS))
    cls = SCHEDULERS[name]
    params = inspect.signature(cls).parameters
    known = {k for k in params if k not in ("verbose", "lr_lambda", "scale_fn")} | {"type", "warmup"}
    check_keys(block, path, known, src)
    kwargs = {k: v for k, v in block.items() if k not in ("type", "warmup")}
    if name in ("LambdaDecay", "MultiplicativeDecay"):
        raise src.error(f"{path}.type", f"{name} needs a Python callable; build it in code")
    for key, value in kwargs.items():
        rule = SCHEDULER_RULES.get(key, {}).get(name)
        default = params[key].default
        if key in INT_FIELDS:
            number(value, f"{path}.{key}", src, lo=INT_FIELDS[key], integer=True)
        elif rule is not None:
            number(value, f"{path}.{key}", src, **rule)
        elif isinstance(default, (str, bool)) and type(value) is not type(default):
            raise src.error(f"{path}.{key}", f"expected a {type(default).__name__}, got "
                                             f"{kind_of(value)} {value!r}")
        elif isinstance(value, list):  # boundaries, values, milestones: numbers, each finite
            for i, item in enumerate(value):
                number(item, f"{path}.{key}.{i}", src)
        elif not isinstance(default, (str, bool)) and value is not None:
            number(value, f"{path}.{key}", src)
    lr_arg = next((k for k in LR_ARGS if k in params), None)
    if lr_arg is not None and lr_arg not in kwargs:
        kwargs[lr_arg] = base_lr  # the optimizer's learning_rate is the schedule's base
    missing = [k for k, p in params.items() if p.default is inspect.Parameter.empty
               and k not in kwargs and k not in ("lr_lambda",)]
    if missing:
        raise src.error(f"{path}.{missing[0]}", f"missing (required by {name})")
    try:
        sched = cls(**kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise src.error(path, f"{name}: {str(exc).strip()}") from None
    warmup = block.get("warmup")
    if warmup is not None:
        wpath = f"{path}.warmup"
        check_keys(warmup, wpath, {"steps", "start_lr"}, src, required=("steps",))
        steps = number(warmup["steps"], f"{wpath}.steps", src, lo=1, integer=True)
        start = number(warmup.get("start_lr", 0.0), f"{wpath}.start_lr", src, lo=0,
                       hi=base_lr, hi_open=True)
        sched = lr_module.LinearWarmup(sched, steps, start, base_lr)
    return sched


def _clip(block, path, src):
    if block is None:
        return None
    check_keys(block, path, {"type", "max", "min", "clip_norm", "auto_skip_clip"}, src,
               required=("type",))
    kind = choice(block["type"], f"{path}.type", src, ["value", "norm", "global_norm"])
    if kind == "value":
        check_keys(block, path, {"type", "max", "min"}, src, required=("max",))
        hi = number(block["max"], f"{path}.max", src)
        lo = block.get("min")
        if lo is None:
            if hi <= 0:
                raise src.error(f"{path}.max", f"must be > 0 when min is not given, got {hi}")
            return ClipGradByValue(hi)
        lo = number(lo, f"{path}.min", src, hi=hi)
        return ClipGradByValue(hi, lo)
    allowed = {"type", "clip_norm"} | ({"auto_skip_clip"} if kind == "global_norm" else set())
    check_keys(block, path, allowed, src, required=("clip_norm",))
    norm = number(block["clip_norm"], f"{path}.clip_norm", src, lo=0, lo_open=True)
    if kind == "norm":
        return ClipGradByNorm(norm)
    skip = block.get("auto_skip_clip", False)
    if not isinstance(skip, bool):
        raise src.error(f"{path}.auto_skip_clip", f"expected true or false, got {skip!r}")
    return ClipGradByGlobalNorm(norm, auto_skip_clip=skip)


def _decay(value, path, src):
    if value is None:
        return None
    if isinstance(value, dict):
        check_keys(value, path, {"type", "coeff"}, src, required=("type", "coeff"))
        kind = choice(value["type"], f"{path}.type", src, ["L1", "L2"])
        coeff = number(value["coeff"], f"{path}.coeff", src, lo=0)
        return (L1Decay if kind == "L1" else L2Decay)(coeff)
    return L2Decay(number(value, path, src, lo=0))


def _betas(block, path, src):
    out = {}
    for key, rule in (("beta1", dict(lo=0, hi=1, hi_open=True)),
                      ("beta2", dict(lo=0, hi=1, hi_open=True)), ("epsilon", dict(lo=0))):
        if key in block:
            out[key] = number(block[key], f"{path}.{key}", src, **rule)
    return out


def optimizer_kwargs(block, src, path="optimizer"):
    """Validate an ``optimizer:`` block; the keyword arguments of Adamax minus ``parameters``,
    plus the raw group specs (resolved against names by ``from_config``)."""
    block = {} if block is None else block
    check_keys(block, path, OPTIMIZER_KEYS, src)
    base_lr = number(block.get("learning_rate", 0.001), f"{path}.learning_rate", src, lo=0,
                     lo_open=True)
    kw = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, **_betas(block, path, src)}
    kw["flavor"] = choice(block.get("flavor", "paddle"), f"{path}.flavor", src, sorted(FLAVORS))
    kw["device"] = choice(block.get("device", "cpu"), f"{path}.device", src, ["cpu", "cuda"])
    if "mode" in block:
        kw["mode"] = choice(block["mode"], f"{path}.mode", src, ["adopt", "borrow"])
    if "state_dtype" in block:
        kw["state_dtype"] = choice(block["state_dtype"], f"{path}.state_dtype", src,
                                   ["float32", "bfloat16", "int8"])
    if "state_rounding" in block:
        kw["state_rounding"] = choice(block["state_rounding"], f"{path}.state_rounding", src,
                                      ["stochastic", "nearest"])
    for flag in ("skip_nonfinite", "multi_precision"):
        if flag in block:
            if not isinstance(block[flag], bool):
                raise src.error(f"{path}.{flag}", f"expected true or false, got {block[flag]!r}")
            kw[flag] = block[flag]
    if "name" in block:
        if not isinstance(block["name"], str):
            raise src.error(f"{path}.name", f"expected a string, got {kind_of(block['name'])}")
        kw["name"] = block["name"]
    kw["weight_decay"] = _decay(block.get("weight_decay"), f"{path}.weight_decay", src)
    kw["grad_clip"] = _clip(block.get("grad_clip"), f"{path}.grad_clip", src)
    sched = block.get("lr_scheduler")
    kw["learning_rate"] = base_lr if sched is None else \
        _scheduler(sched, base_lr, f"{path}.lr_scheduler", src)
    groups = block.get("groups", [])
    if not isinstance(groups, list):
        raise src.error(f"{path}.groups", f"expected a list of mappings, got {kind_of(groups)}")
    specs = []
    for i, g in enumerate(groups):
        gpath = f"{path}.groups.{i}"
        check_keys(g, gpath, GROUP_KEYS, src, required=("match",))
        match = g["match"] if isinstance(g["match"], list) else [g["match"]]
        if not match or not all(isinstance(m, str) for m in match):
            raise src.error(f"{gpath}.match", "expected a name pattern or a list of them")
        spec = {"match": match, **_betas(g, gpath, src)}
        if "learning_rate" in g:
            spec["learning_rate"] = number(g["learning_rate"], f"{gpath}.learning_rate", src, lo=0)
        if "weight_decay" in g:
            spec["weight_decay"] = _decay(g["weight_decay"], f"{gpath}.weight_decay", src) \
                or L2Decay(0.0)
        if "grad_clip" in g:
            spec["grad_clip"] = _clip(g["grad_clip"], f"{gpath}.grad_clip", src)
        specs.append(spec)
    return kw, specs


def group_parameters(parameters, specs, name_of=lambda p: p.name):
    """Parameters -> paddle-style group dicts: each goes to the first spec whose pattern matches
    its name; the rest form a plain group. Empty groups are dropped."""
    if not specs:
        return list(parameters)
    buckets = [[] for _ in specs] + [[]]
    for p in parameters:
        name = name_of(p)
        k = next((i for i, s in enumerate(specs)
                  if any(fnmatch.fnmatchcase(name, pat) for pat in s["match"])), len(specs))
        buckets[k].append(p)
    groups = [{"params": ps, **{k: v for k, v in s.items() if k != "match"}}
              for s, ps in zip(specs, buckets) if ps]
    if buckets[-1]:
        groups.append({"params": buckets[-1]})
    return groups


def from_config(path_or_dict, parameters):
    """Build ``adamax_engine.Adamax`` from a YAML file (or a dict holding its content)."""
    from .optimizer import Adamax
    if isinstance(path_or_dict, dict):
        data, src = path_or_dict, Source()
    else:
        data, src = load_yaml(path_or_dict)
    block = data.get("optimizer", data) if isinstance(data, dict) else data
    kw, specs = optimizer_kwargs(block, src)
    return Adamax(parameters=group_parameters(list(parameters), specs), **kw)
