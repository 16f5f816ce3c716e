"""One training run: problem -> optimizer (from the config) -> loop, logs, checkpoints, plots.

Output directory: ``metrics.csv`` (step, loss, lr), ``summary.json``, ``config.json`` (the
validated spec), ``curves.png`` when matplotlib is installed, and ``checkpoint/`` every
``checkpoint_every`` steps: ``checkpoint.npz`` (adamax_engine.io.checkpoint's format: parameters,
optimizer state and config, LR scheduler state, the step and the metrics so far). ``resume`` continues
from it bit-identically: problems are full-batch and seeded, and every number is restored exactly.
"""
import csv
import json
import os
import time

import numpy as np

from .. import config as C
from ..lr import ReduceOnPlateau, is_scheduler
from . import problems


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
    try:
        extra = opt.restore(path)
    except CheckpointError as exc:
        raise RuntimeError(f"--resume {directory}: {exc}") from None
    arrays = extra["arrays"]
    if not isinstance(extra.get("step"), int) or "loss" not in arrays or "lr" not in arrays:
        raise RuntimeError(f"--resume {directory}: {path} was not written by "
                           "'adamax-engine run' (no step count and metrics in it); load it in "
                           "code with Adamax.load / opt.restore instead")
    return extra["step"], list(arrays["loss"]), list(arrays["lr"])


def _progress(total, initial, enabled):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def run(spec, out_dir, resume=False, log=print, progress=True):
    """Train; returns the summary dict (also written to ``out_dir/summary.json``)."""
    exp = spec["experiment"]
    problem, opt = build(spec)
    os.makedirs(out_dir, exist_ok=True)
    start, losses, lrs = 0, [], []
    if resume:
        start, losses, lrs = load_checkpoint(out_dir, problem, opt)
    sched = opt.settings.learning_rate
    sched = sched if is_scheduler(sched) else None
    steps, every = exp["steps"], exp["checkpoint_every"]
    root = is_root(opt)
    bar = _progress(steps, start, progress and root)
    t0 = time.perf_counter()
    for step in range(start, steps):
        loss = problem.loss_and_grads()
        lr = opt.get_lr()
        opt.step()
        opt.clear_grad()
        if isinstance(sched, ReduceOnPlateau):
            sched.step(loss)
        elif sched is not None:
            sched.step()
        losses.append(loss)
        lrs.append(lr)
        if not np.isfinite(loss):
            raise RuntimeError(f"step {step}: the loss is {loss} (diverged)")
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4g}", lr=f"{lr:.3g}", refresh=False)
            bar.update(1)
        elif root and exp["log_every"] and (step % exp["log_every"] == 0 or step == steps - 1):
            log(f"step {step:6d}  loss {loss:.6g}  lr {lr:.4g}")
        if every and (step + 1) % every == 0:
            save_checkpoint(os.path.join(out_dir, "checkpoint"), step + 1, problem, opt, losses,
                            lrs)
    if bar is not None:
        bar.close()
    summary = {"name": exp["name"], "problem": spec["problem"]["name"], "steps": len(losses),
               "first_loss": losses[0] if losses else None,
               "final_loss": losses[-1] if losses else None,
               "best_loss": min(losses) if losses else None,
               "final_lr": lrs[-1] if lrs else None, "skipped_steps": opt.skipped_steps,
               "seconds": time.perf_counter() - t0}
    accuracy = problem.accuracy() if problem.accuracy is not None else None
    if accuracy is not None:
        summary["accuracy"] = accuracy
    if getattr(opt, "size", 1) > 1:
        summary["ranks"] = opt.size
        summary["state_bytes_per_rank"] = opt.comm.allgather(opt.state_bytes())
    if root:
        write_outputs(out_dir, spec, losses, lrs, summary)
    summary["root"] = root
    return summary


def write_outputs(out_dir, spec, losses, lrs, summary):
    with open(os.path.join(out_dir, "metrics.csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "loss", "lr"])
        for i, (loss, lr) in enumerate(zip(losses, lrs)):
            w.writerow([i, repr(float(loss)), repr(float(lr))])
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as fh:
        json.dump({k: v for k, v in spec.items() if k != "sweep"}, fh, indent=2, default=str)
    plot_curves(os.path.join(out_dir, "curves.png"), {summary["name"]: (losses, lrs)})


def plot_curves(path, runs):
    """Loss (log scale) and lr per step for each run; skipped when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for label, (losses, lrs) in runs.items():
        ax1.plot(losses, label=label)
        ax2.plot(lrs, label=label)
    ax1.set(xlabel="step", ylabel="loss", yscale="log" if all(
        min(v[0], default=1) > 0 for v in runs.values()) else "linear", title="loss")
    ax2.set(xlabel="step", ylabel="lr", title="learning rate")
    if len(runs) > 1:
        ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
