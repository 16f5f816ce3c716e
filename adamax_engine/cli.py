"""``adamax-engine`` command line: ``run CONFIG.yaml`` trains the built-in demo problem.

Exit codes: 0 success, 2 invalid config or arguments (one message, no traceback), 1 runtime failure.
"""
import argparse
import sys

import yaml

from . import demo

EXPERIMENT_KEYS = {"problem", "steps", "seed", "classes", "features", "samples"}
OPTIMIZER_KEYS = {"learning_rate", "beta1", "beta2", "epsilon", "weight_decay", "flavor"}


class ConfigError(ValueError):
    """A config problem, reported as one line naming the field."""


def load_config(path):
    """Read CONFIG.yaml with yaml.safe_load and check the keys the demo understands."""
    with open(path, encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    for section, allowed in (("experiment", EXPERIMENT_KEYS), ("optimizer", OPTIMIZER_KEYS)):
        block = cfg.get(section, {})
        if not isinstance(block, dict):
            raise ConfigError(f"{section}: expected a mapping, got {type(block).__name__}")
        for key in block:
            if key not in allowed:
                raise ConfigError(f"{section}.{key}: unknown key (known: {', '.join(sorted(allowed))})")
    unknown = set(cfg) - {"experiment", "optimizer"}
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown top-level key (known: experiment, optimizer)")
    exp = cfg.get("experiment", {})
    if exp.get("problem", "softmax_blobs") != "softmax_blobs":
        raise ConfigError(f"experiment.problem: expected 'softmax_blobs', got {exp['problem']!r}")
    return cfg


def run(cfg, log=print):
    """Train softmax regression with adamax_engine.Adamax; returns the list of losses."""
    from . import Adamax, Parameter

    exp = cfg.get("experiment", {})
    x, labels = demo.make_blobs(exp.get("samples", 2048), exp.get("features", 16),
                                exp.get("classes", 4), exp.get("seed", 0))
    w0, b0 = demo.init_params(exp.get("features", 16), exp.get("classes", 4), exp.get("seed", 0))
    w, b = Parameter(w0, name="w"), Parameter(b0, name="b")
    opt = Adamax(parameters=[w, b], **cfg.get("optimizer", {}))
    steps = int(exp.get("steps", 200))
    losses = []
    for step in range(steps):
        loss, w.grad, b.grad = demo.softmax_loss_and_grads(w.data, b.data, x, labels)
        opt.step()
        opt.clear_grad()
        losses.append(loss)
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            log(f"step {step:5d}  loss {loss:.6f}  lr {opt.get_lr():.6g}")
    return losses


def main(argv=None):
    parser = argparse.ArgumentParser(prog="adamax-engine")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train the experiment described by CONFIG.yaml")
    p_run.add_argument("config")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except (OSError, yaml.YAMLError, ConfigError) as exc:
        print(f"adamax-engine: invalid config: {exc}", file=sys.stderr)
        return 2
    try:
        losses = run(cfg)
    except (TypeError, ValueError) as exc:
        print(f"adamax-engine: invalid config: {exc}", file=sys.stderr)
        return 2
    print(f"loss {losses[0]:.6f} -> {losses[-1]:.6f} in {len(losses)} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
