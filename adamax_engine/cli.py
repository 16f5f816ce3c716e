"""``adamax-engine``: ``run CONFIG.yaml`` trains (or sweeps), ``validate CONFIG.yaml`` checks.

  adamax-engine run CONFIG.yaml [--set key=value ...] [--out DIR] [--resume DIR] [--no-progress]
  adamax-engine validate CONFIG.yaml [--set key=value ...]

Exit codes: 0 success, 2 invalid config or arguments (one message, no traceback), 1 runtime failure.
Outputs go to ``runs/<experiment name>`` unless ``--out`` (or ``--resume``) names a folder.
"""
import argparse
import os
import sys

from .config import ConfigError, load_yaml
from .experiments import runner, spec as S
from .experiments.sweep import run_sweep


def load_spec(path, overrides=()):
    data, src = load_yaml(path)
    if overrides:
        S.apply_overrides(data, overrides)
    name = os.path.splitext(os.path.basename(path))[0]
    return S.validate(data, src, name)


def _parser():
    parser = argparse.ArgumentParser(prog="adamax-engine", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train the experiment (or sweep) of CONFIG.yaml")
    p_val = sub.add_parser("validate", help="check CONFIG.yaml without running it")
    for p in (p_run, p_val):
        p.add_argument("config")
        p.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="override a config value (dotted key)")
    p_run.add_argument("--out", help="output folder (default runs/<experiment name>)")
    p_run.add_argument("--resume", metavar="DIR", help="continue from DIR's last checkpoint")
    p_run.add_argument("--no-progress", action="store_true", help="log lines, no progress bar")
    return parser


def main(argv=None):
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its message
        return 0 if exc.code == 0 else 2
    try:
        spec = load_spec(args.config, args.overrides)
    except ConfigError as exc:
        print(f"adamax-engine: invalid config: {exc}", file=sys.stderr)
        return 2
    if args.command == "validate":
        points = len(spec["sweep"]) if spec["sweep"] else 1
        print(f"{args.config}: valid ({spec['problem']['name']}, {spec['experiment']['steps']} "
              f"steps, {points} run{'s' if points > 1 else ''})")
        return 0
    if args.resume and args.out and os.path.abspath(args.resume) != os.path.abspath(args.out):
        print("adamax-engine: --resume continues in its own folder; drop --out", file=sys.stderr)
        return 2
    if args.resume and spec["sweep"]:
        print("adamax-engine: --resume is for single runs, not sweeps", file=sys.stderr)
        return 2
    out = args.resume or args.out or os.path.join("runs", spec["experiment"]["name"])
    try:
        if spec["sweep"]:
            run_sweep(spec, out, progress=not args.no_progress)
        else:
            s = runner.run(spec, out, resume=bool(args.resume), progress=not args.no_progress)
            acc = f", accuracy {s['accuracy']:.3f}" if "accuracy" in s else ""
            print(f"{s['name']}: loss {s['first_loss']:.6g} -> {s['final_loss']:.6g} in "
                  f"{s['steps']} steps{acc}; outputs in {out}")
    except (RuntimeError, ValueError, TypeError, OSError) as exc:
        print(f"adamax-engine: run failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
