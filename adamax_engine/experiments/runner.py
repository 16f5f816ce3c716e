"""One training run: problem -> optimizer (from the config) -> loop, logs, checkpoints, plots.

Output directory: ``metrics.csv`` (step, loss, lr), ``summary.json``, ``config.json`` (the
validated spec), ``curves.png`` when matplotlib is installed, and ``checkpoint/`` every
``checkpoint_every`` steps: ``checkpoint.npz`` (adamax_engine.io.checkpoint's format: parameters,
optimizer state and config, LR scheduler state, the step and the metrics so far). ``resume`` continues
from it bit-identically: problems are full-batch and seeded, and every number is restored exactly.
"""
import contextlib
import csv
import json
import os
import signal
import sys
import threading
import time

import numpy as np

from .. import config as C
from ..lr import ReduceOnPlateau, is_scheduler
from . import plots, problems


def build(spec):
    """(problem, optimizer) for a validated spec."""
    make = problems.make
    if spec["model"]["framework"] == "torch":
        from .torch_models import make
    problem = make(spec["problem"]["name"], spec["experiment"]["seed"],
                   {k: v for k, v in spec["problem"].items() if k != "name"})
    kw, groups = C.optimizer_kwargs(spec["optimizer"], C.Source())
    kw.setdefault("mode", problem.mode)  # torch: borrow, so torch's own memory is stepped
    from ..optimizer import Adamax
    opt = Adamax(parameters=C.group_parameters(problem.params, groups), **kw)
    dist = spec.get("distributed")
    if dist:  # every rank computes the problem's (full-batch) grads; the step averages them
        from ..parallel.mpi import DistributedAdamax
        opt = DistributedAdamax(opt, shard_state=dist["shard_state"],
                                bucket_bytes=int(dist["bucket_mb"] * 2 ** 20))
        opt.broadcast_parameters()
    return problem, opt


def is_root(opt):
    """Only rank 0 of a distributed run prints and writes (checkpoints: opt.save decides)."""
    return getattr(opt, "rank", 0) == 0


def save_checkpoint(directory, step, problem, opt, losses, lrs):
    """One checkpoint.npz (adamax_engine.io.checkpoint: atomic, checksummed, no pickle)."""
    del problem  # its parameters are the optimizer's, saved by opt.save
    os.makedirs(directory, exist_ok=True)
    opt.save(os.path.join(directory, "checkpoint.npz"), extra={"step": step},
             extra_arrays={"loss": np.asarray(losses, np.float64),
                           "lr": np.asarray(lrs, np.float64)})


def load_checkpoint(directory, problem, opt):
    """Restore params and optimizer state in place; returns (step, losses, lrs)."""
    del problem
    from ..io.checkpoint import CheckpointError
    path = os.path.join(directory, "checkpoint", "checkpoint.npz")
    if not os.path.exists(path):
        raise RuntimeError(f"--resume {directory}: no checkpoint there ({path}); a run writes "
                           "one every experiment.checkpoint_every steps (add e.g. "
                           "'checkpoint_every: 100' to the experiment block, or --set "
                           "experiment.checkpoint_every=100) and when it is stopped")
    try:
        extra = opt.restore(path)
    except CheckpointError as exc:  # (the API's match='order' hint is not a CLI option)
        message = str(exc).split("; pass match='order'")[0]
        raise RuntimeError(f"--resume {directory}: {message}") from None
    arrays = extra["arrays"]
    if not isinstance(extra.get("step"), int) or "loss" not in arrays or "lr" not in arrays:
        raise RuntimeError(f"--resume {directory}: {path} was not written by "
                           "'adamax-engine run' (no step count and metrics in it); load it in "
                           "code with Adamax.load / opt.restore instead")
    return extra["step"], list(arrays["loss"]), list(arrays["lr"])


def record_changes(out_dir, spec, step, log):
    """--resume with settings that differ from the run's config.json: the run goes on with the
    new ones (what the optimizer's state allows: restore refuses the rest, e.g. another flavor),
    and every change is logged and appended to ``resumed.json`` (config.json then holds the
    new settings)."""
    try:
        with open(os.path.join(out_dir, "config.json"), encoding="utf-8") as fh:
            before = json.load(fh)
    except (OSError, ValueError):
        return
    now = json.loads(json.dumps({k: v for k, v in spec.items() if k != "sweep"}, default=str))
    changes = {k: [a, b] for k, (a, b) in _diff(before, now).items()}
    if not changes:
        return
    path = os.path.join(out_dir, "resumed.json")
    try:
        with open(path, encoding="utf-8") as fh:
            history = json.load(fh)
    except (OSError, ValueError):
        history = []
    history.append({"at_step": step, "changes": changes})
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(history, fh, indent=2)
    listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
    log(f"resumed at step {step} with changed settings ({listed}); recorded in {path}")


def _diff(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = {}
        for key in sorted(set(a) | set(b)):
            out.update(_diff(a.get(key), b.get(key), f"{prefix}{key}."))
        return out
    return {} if a == b else {prefix[:-1]: (a, b)}


def _progress(total, initial, enabled):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


class Stopped(Exception):
    """SIGTERM/SIGINT during a run: its checkpoint, metrics and summary are written first."""

    def __init__(self, signal_name, step, out_dir):
        super().__init__(f"stopped by {signal_name} at step {step}; checkpoint, metrics and "
                         f"summary written to {out_dir}")
        self.signal_name = signal_name


class _Signal(BaseException):
    """A stop request, raised by the loop at the end of a step (so the checkpoint written then
    holds whole steps; a BaseException: no ``except Exception`` swallows it)."""


@contextlib.contextmanager
def _stop_requests():
    """SIGTERM and SIGINT set a flag the loop reads after each step (main thread only; a
    second SIGINT interrupts at once). Yields the list the signal's name goes into."""
    requested = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum, frame):
        requested.append(signal.Signals(signum).name)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield requested
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def run(spec, out_dir, resume=False, log=print, progress=True):
    """Train; returns the summary dict (also written to ``out_dir/summary.json``).

    ``metrics.csv`` is written as the run goes (flushed every ``log_every`` steps, or 100); a
    run that fails (divergence, a scheduler stepped past its end) or is stopped (SIGTERM,
    SIGINT: ``Stopped``) still writes its metrics, summary and plot, and a stopped one its
    checkpoint."""
    exp = spec["experiment"]
    problem, opt = build(spec)
    os.makedirs(out_dir, exist_ok=True)
    start, losses, lrs = 0, [], []
    if resume:
        start, losses, lrs = load_checkpoint(out_dir, problem, opt)
        if is_root(opt):
            record_changes(out_dir, spec, start, log)
    root = is_root(opt)
    this = _Run(spec, out_dir, problem, opt, losses, lrs, root)
    bar = _progress(exp["steps"], start, progress and root)
    try:
        with _stop_requests() as requested, np.errstate(all="ignore"):  # (divergence: below)
            this.loop(start, bar, log, requested)
    except _Signal as sig:
        this.finish(bar, stopped=str(sig))
        # whatever checkpoint_every says: a stopped run keeps its progress
        save_checkpoint(os.path.join(out_dir, "checkpoint"), len(losses), problem, opt, losses,
                        lrs)
        raise Stopped(str(sig), len(losses), out_dir) from None
    except Exception as exc:
        this.finish(bar, error=str(exc))
        raise
    return this.finish(bar)


class _Run:
    """One run's loop and its outputs."""

    def __init__(self, spec, out_dir, problem, opt, losses, lrs, root):
        self.spec, self.out_dir, self.problem, self.opt = spec, out_dir, problem, opt
        self.losses, self.lrs, self.root = losses, lrs, root
        self.t0 = time.perf_counter()
        self.metrics = _Metrics(os.path.join(out_dir, "metrics.csv"), losses, lrs) if root \
            else None

    def loop(self, start, bar, log, requested=()):
        exp, opt, problem = self.spec["experiment"], self.opt, self.problem
        sched = opt.settings.learning_rate
        sched = sched if is_scheduler(sched) else None
        steps, every = exp["steps"], exp["checkpoint_every"]
        flush_every = exp["log_every"] or 100
        for step in range(start, steps):
            if bar is not None and step == start:  # numba compiles the kernels on first use
                bar.set_description_str("compiling kernels (once, cached)", refresh=True)
            loss = problem.loss_and_grads()
            lr = opt.get_lr()
            opt.step()
            if bar is not None and step == start:
                bar.set_description_str("", refresh=False)
            opt.clear_grad()
            if isinstance(sched, ReduceOnPlateau):
                sched.step(loss)
            elif sched is not None:
                sched.step()
            self.losses.append(loss)
            self.lrs.append(lr)
            if self.metrics is not None:
                self.metrics.add(step, loss, lr, flush=(step + 1) % flush_every == 0)
            check_divergence(step, loss, self.losses[0], exp)
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.4g}", lr=f"{lr:.3g}", refresh=False)
                bar.update(1)
            elif self.root and exp["log_every"] and (step % exp["log_every"] == 0
                                                     or step == steps - 1):
                log(f"step {step:6d}  loss {loss:.6g}  lr {lr:.4g}")
            if every and (step + 1) % every == 0:
                save_checkpoint(os.path.join(self.out_dir, "checkpoint"), step + 1, problem, opt,
                                self.losses, self.lrs)
            if requested:
                raise _Signal(requested[0])

    def finish(self, bar, error=None, stopped=None):
        if bar is not None:
            bar.close()
        if self.metrics is not None:
            self.metrics.close()
        losses, lrs, opt = self.losses, self.lrs, self.opt
        summary = {"name": self.spec["experiment"]["name"],
                   "problem": self.spec["problem"]["name"], "steps": len(losses),
                   "first_loss": losses[0] if losses else None,
                   "final_loss": losses[-1] if losses else None,
                   "best_loss": min(losses) if losses else None,
                   "final_lr": lrs[-1] if lrs else None, "skipped_steps": opt.skipped_steps,
                   "seconds": time.perf_counter() - self.t0}
        if error is not None:
            summary["error"] = error
        if stopped is not None:
            summary["stopped"] = stopped
        accuracy = self.problem.accuracy() if self.problem.accuracy is not None and \
            error is None else None
        if accuracy is not None:
            summary["accuracy"] = accuracy
        if getattr(opt, "size", 1) > 1:
            summary["ranks"] = opt.size
            summary["state_bytes_per_rank"] = opt.comm.allgather(opt.state_bytes())
        if self.root:
            write_outputs(self.out_dir, self.spec, losses, lrs, summary)
        summary["root"] = self.root
        return summary


def check_divergence(step, loss, first, exp):
    """RuntimeError naming the rule when the loss is non-finite, above ``experiment.max_loss``,
    or more than ``experiment.max_loss_ratio`` times the first step's loss."""
    if not np.isfinite(loss):
        raise RuntimeError(f"step {step}: the loss is {loss} (diverged)")
    if exp.get("max_loss") is not None and loss > exp["max_loss"]:
        raise RuntimeError(f"step {step}: the loss {loss:.6g} is above experiment.max_loss "
                           f"{exp['max_loss']:g} (diverged)")
    ratio = exp.get("max_loss_ratio")
    if ratio and first > 0 and loss > ratio * first:
        raise RuntimeError(f"step {step}: the loss {loss:.6g} is more than "
                           f"experiment.max_loss_ratio ({ratio:g}) times the first "
                           f"({first:.6g}) (diverged)")


class _Metrics:
    """metrics.csv, written row by row (a killed run keeps what it logged)."""

    def __init__(self, path, losses, lrs):
        self.fh = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed below
        self.w = csv.writer(self.fh)
        self.w.writerow(["step", "loss", "lr"])
        for i, (loss, lr) in enumerate(zip(losses, lrs)):  # a resumed run's history first
            self.w.writerow([i, repr(float(loss)), repr(float(lr))])
        self.fh.flush()

    def add(self, step, loss, lr, flush):
        self.w.writerow([step, repr(float(loss)), repr(float(lr))])
        if flush:
            self.fh.flush()

    def close(self):
        if not self.fh.closed:
            self.fh.close()


def write_outputs(out_dir, spec, losses, lrs, summary):
    """summary.json, config.json and curves.png (metrics.csv is written as the run goes)."""
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as fh:
        json.dump({k: v for k, v in spec.items() if k != "sweep"}, fh, indent=2, default=str)
    figure = plots.curves_figure({summary["name"]: (losses, lrs)}, title=plots.run_title(summary))
    if not plots.save(figure, os.path.join(out_dir, "curves.png")):
        print("adamax-engine: curves.png not written: matplotlib is not installed (pip install "
              "matplotlib, or adamax-engine[plot])", file=sys.stderr)
