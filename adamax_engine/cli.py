"""``adamax-engine``: ``run CONFIG.yaml`` trains (or sweeps), ``validate CONFIG.yaml`` checks.

  adamax-engine run CONFIG.yaml [--set key=value ...] [--out DIR] [--resume DIR] [--no-progress]
  adamax-engine validate CONFIG.yaml [--set key=value ...]
  adamax-engine bench [--device cpu|cuda] [--sizes 1e3,1e6] [--out DIR] [--reps N] [--tiny]

Exit codes: 0 success, 2 invalid config or arguments (one message, no traceback), 1 runtime failure
(one message; ``--debug`` anywhere on the line shows the traceback).
Outputs go to ``runs/<experiment name>`` unless ``--out`` (or ``--resume``) names a folder.
"""
import argparse
import math
import os
import sys

from .config import ConfigError, load_yaml
from .experiments import runner, spec as S
from .experiments.sweep import run_sweep


def load_spec(path, overrides=()):
    data, src = load_yaml(path)
    if overrides:
        S.apply_overrides(data, overrides, src)
    name = os.path.splitext(os.path.basename(path))[0]
    return S.validate(data, src, name)


def _parser():
    parser = argparse.ArgumentParser(
        prog="adamax-engine", description="Train, validate and benchmark with the "
        "adamax-engine optimizer: run CONFIG.yaml trains (or sweeps), validate CONFIG.yaml checks.",
        epilog="--debug (anywhere): show the traceback of a failure. Exit codes: 0 done, "
        "2 bad input, 1 the run failed.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"adamax-engine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train the experiment (or sweep) of CONFIG.yaml")
    p_val = sub.add_parser("validate", help="check CONFIG.yaml without running it")
    for p in (p_run, p_val):
        p.add_argument("config", help="an experiment YAML file (see configs/)")
        p.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="override a config value (dotted key)")
    p_run.add_argument("--out", help="output folder (default runs/<experiment name>)")
    p_run.add_argument("--resume", metavar="DIR", help="continue from DIR's last checkpoint")
    p_run.add_argument("--no-progress", action="store_true", help="log lines, no progress bar")
    p_bench = sub.add_parser("bench", help="time the engine against every installed peer")
    p_bench.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                         help="where the engine runs (cuda: scripts/bench_cuda.py's benchmark)")
    p_bench.add_argument("--sizes", help="comma-separated single-tensor sizes (default 1e3..1e8); "
                                         "the transformer and 2000-small-tensor workloads always "
                                         "run too")
    p_bench.add_argument("--out", default="bench_out", help="folder for bench.json/md/png")
    p_bench.add_argument("--reps", type=int, default=30, help="timed rounds per workload")
    p_bench.add_argument("--threads", help="comma-separated thread counts (default 1 and all)")
    p_bench.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke run")
    p_bench.add_argument("--no-cold", action="store_true",
                         help="skip the empty-JIT-cache cold start (it recompiles: ~1 min)")
    p_bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _bench(args):
    def numbers(text, what):
        """Comma-separated positive whole numbers (1e6 allowed), or ConfigError naming --what."""
        if not text:
            return None
        out = []
        for item in text.split(","):
            try:
                value = float(item)
            except ValueError:
                value = math.nan
            if not (math.isfinite(value) and value >= 1 and value == int(value)):
                raise ConfigError(f"--{what}: expected comma-separated whole numbers >= 1, got "
                                  f"{item.strip()!r} in {text!r}")
            out.append(int(value))
        return out
    if args.reps < 1:
        raise ConfigError(f"--reps: expected a whole number >= 1, got {args.reps}")
    sizes, threads = numbers(args.sizes, "sizes"), numbers(args.threads, "threads")
    if args.device == "cuda":
        from .bench import cuda
        return cuda.main(["--reps", str(args.reps)] + (["--tiny"] if args.tiny else [])
                         + (["--sizes", args.sizes] if args.sizes else []))
    from .bench import run
    run.run(sizes=sizes, out_dir=args.out, reps=args.reps, threads=threads, tiny=args.tiny,
            cold=not args.no_cold, progress=not args.no_progress)
    return 0


def main(argv=None):
    """Exit 0 (done), 2 (bad input: one line naming it) or 1 (the run failed: one line); a
    traceback only with ``--debug``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("adamax-engine: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, unless the user asks for the traceback
        if debug:
            raise
        print(f"adamax-engine: internal error: {type(exc).__name__}: {exc} (rerun with --debug "
              "for the traceback, and please report it)".replace("\n", " "), file=sys.stderr)
        return 1


def _main(argv):
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its message
        return 0 if exc.code == 0 else 2
    if args.command == "bench":
        try:
            return _bench(args)
        except ConfigError as exc:
            print(f"adamax-engine: invalid arguments: {exc}", file=sys.stderr)
            return 2
    try:
        spec = load_spec(args.config, args.overrides)
    except ConfigError as exc:
        print(f"adamax-engine: invalid config: {exc}", file=sys.stderr)
        return 2
    if args.command == "validate":
        points = len(spec["sweep"]) if spec["sweep"] else 1
        print(f"{args.config}: valid ({spec['problem']['name']}, {spec['experiment']['steps']} "
              f"steps, {points} run{'s' if points > 1 else ''})")
        for line in S.defaults_applied(args.config):
            print(f"  {line}")
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
            if s.pop("root"):
                print(f"{s['name']}: loss {s['first_loss']:.6g} -> {s['final_loss']:.6g} in "
                      f"{s['steps']} steps{acc}; outputs in {out}")
    except runner.Stopped as exc:
        print(f"adamax-engine: {exc}", file=sys.stderr)
        return 143 if exc.signal_name == "SIGTERM" else 130
    except (RuntimeError, ValueError, TypeError, OSError) as exc:
        print(f"adamax-engine: run failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
