#!/usr/bin/env python3
"""Training quality with low-bit optimizer state: float32 vs bfloat16 vs int8 state.

  python3 scripts/bootstrap.py python scripts/lowbit_quality.py [--steps N] [--out DIR]

(a) Every shipped config in configs/ run three times, ``optimizer.state_dtype`` float32,
bfloat16 and int8 (a config with float64 parameters is reported as not applicable: low-bit
state takes float32 parameters); (b) a small torch transformer trained for ``--steps`` steps
(default 1500) with ``adamax_engine.torch.Adamax`` and each state dtype, the three loss curves
on one plot (``<out>/lowbit_quality.png``). Prints each final loss and its difference from the
float32-state run; the issue's bar is within 2%. The same seeds and data order in every run:
the runs differ only by the state's rounding.
"""
import argparse
import contextlib
import glob
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from adamax_engine import cli  # noqa: E402

STATE_DTYPES = ("float32", "bfloat16", "int8")


def configs(out):
    """(config, {state dtype: final loss or the reason there is none})."""
    rows = []
    for path in sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs",
                                              "*.yaml"))):
        name = os.path.splitext(os.path.basename(path))[0]
        losses = {}
        for sd in STATE_DTYPES:
            run_dir = os.path.join(out, f"{name}-{sd}")
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), \
                    contextlib.redirect_stderr(sink):  # the runs' logs (they are in run_dir)
                code = cli.main(["run", path, "--set", f"optimizer.state_dtype={sd}",
                                 "--out", run_dir, "--no-progress"])
            if code != 0:
                losses[sd] = "n/a (float64 parameters)"
                continue
            sweep = os.path.join(run_dir, "sweep.json")
            if os.path.exists(sweep):  # a sweep: every point's final loss
                with open(sweep) as f:
                    losses[sd] = [r["final_loss"] for r in json.load(f)]
            else:
                with open(os.path.join(run_dir, "summary.json")) as f:
                    losses[sd] = json.load(f)["final_loss"]
        rows.append((name, losses))
    return rows


def _model(torch, vocab, d, length):
    layer = torch.nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True)
    return torch.nn.ModuleDict({"embed": torch.nn.Embedding(vocab, d),
                                "pos": torch.nn.Embedding(length, d),
                                "body": torch.nn.TransformerEncoder(layer, 2,
                                                                    enable_nested_tensor=False),
                                "head": torch.nn.Linear(d, vocab)})


def torch_run(state_dtype, steps, seed=0, vocab=16, d=64, length=12, batch=64):
    """A 2-layer transformer learning to sort its input tokens; the loss per step."""
    import torch
    from adamax_engine.torch import Adamax
    torch.manual_seed(seed)
    model = _model(torch, vocab, d, length)
    opt = Adamax(model.parameters(), lr=2e-3, state_dtype=state_dtype)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    data = torch.Generator().manual_seed(seed + 1)
    positions = torch.arange(length)
    losses = []
    for _ in range(steps):
        x = torch.randint(0, vocab, (batch, length), generator=data)
        h = model["embed"](x) + model["pos"](positions)
        logits = model["head"](model["body"](h))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab),
                                                 x.sort(dim=1).values.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return np.array(losses)


def _final(losses, window=50):
    return float(np.mean(losses[-window:]))


def _diff(value, base):
    return f"{100 * (value - base) / base:+.1f}%"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "lowbit_quality"))
    parser.add_argument("--skip-configs", action="store_true")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; runs under {args.out}")
    if not args.skip_configs:
        print("shipped configs, final loss (difference from float32 state):")
        for name, losses in configs(args.out):
            base = losses["float32"]
            cells = []
            for sd in STATE_DTYPES:
                v = losses[sd]
                if isinstance(v, str):
                    cells.append(f"{sd} {v}")
                elif isinstance(v, list):
                    cells.append(f"{sd} [" + ", ".join(
                        f"{x:.4g} ({_diff(x, b)})" for x, b in zip(v, base)) + "]")
                else:
                    cells.append(f"{sd} {v:.4g}" + ("" if sd == "float32"
                                                     else f" ({_diff(v, base)})"))
            print(f"  {name:18s} " + "; ".join(cells))
    curves = {}
    for sd in STATE_DTYPES:
        t = time.perf_counter()
        curves[sd] = torch_run(sd, args.steps)
        print(f"torch transformer, state {sd:8s}: final loss (mean of the last 50 steps) "
              f"{_final(curves[sd]):.4f}"
              + ("" if sd == "float32" else f" ({_diff(_final(curves[sd]), _final(curves['float32']))})")
              + f", {time.perf_counter() - t:.0f} s")
    from adamax_engine.experiments.plots import pyplot
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for sd, style in zip(STATE_DTYPES, ("-", "--", ":")):
        smooth = np.convolve(curves[sd], np.ones(20) / 20, mode="valid")
        ax.plot(np.arange(len(smooth)) + 20, smooth, style, label=f"{sd} state "
                f"(final {_final(curves[sd]):.4f})")
    ax.set(yscale="log", xlabel="step", ylabel="training loss (20-step mean)",
           title=f"torch transformer, adamax_engine.torch.Adamax, {args.steps} steps")
    ax.legend()
    fig.tight_layout()
    path = os.path.join(args.out, "lowbit_quality.png")
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
