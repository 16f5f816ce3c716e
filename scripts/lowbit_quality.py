#!/usr/bin/env python3
"""Training quality with low-bit optimizer state: float32 vs bfloat16 vs int8 state.

  python3 scripts/bootstrap.py python scripts/lowbit_quality.py [--steps N] [--out DIR]

(a) Every shipped config in configs/ run three times, ``optimizer.state_dtype`` float32,
bfloat16 and int8 (a config with float64 parameters is reported as not applicable: low-bit
state takes float32 parameters); (b) a small torch transformer trained for ``--steps`` steps
(default 1500) with ``adamax_engine.torch.Adamax`` and each state dtype, the three loss curves
on one plot (``<out>/lowbit_quality.png``). Prints each final loss and its difference from the
float32-state run; the issue's bar is within 2%. The same seeds and data order in every run:
the runs differ only by the state's rounding. (c) configs/rosenbrock.yaml's,
configs/teacher_student.yaml's and configs/quadratic.yaml's runs over ``--streams`` rounding
streams: a 2-D valley, a plateau-driven learning rate and an ill-conditioned quadratic, whose
end points one rounding stream cannot tell.
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


def rosenbrock_run(state_dtype, offset=0, steps=3000):
    """configs/rosenbrock.yaml's run (lr 0.1, StepDecay(2500, 0.3), paddle flavor) through the
    engine, with ``x`` placed ``offset`` elements into the flat buffer (an idle parameter
    before it): the element index is the stochastic rounding's counter, so each offset is
    another rounding stream; the final loss."""
    from adamax_engine import lr
    from adamax_engine.experiments.problems import make_rosenbrock
    sched = lr.StepDecay(0.1, step_size=2500, gamma=0.3)
    return _stream_run(make_rosenbrock(0, 2), sched, {}, state_dtype, offset, steps)


def teacher_student_run(state_dtype, offset=0, steps=800):
    """configs/teacher_student.yaml's run (lr 0.01, L2 1e-5, ReduceOnPlateau(20, 0.5)) in
    the rounding stream ``offset`` (as rosenbrock_run); the final loss."""
    import adamax_engine as ae
    from adamax_engine import lr
    from adamax_engine.experiments.problems import make_teacher_student
    sched = lr.ReduceOnPlateau(0.01, patience=20, factor=0.5)
    return _stream_run(make_teacher_student(1, 1024, 8, 16, 0.01), sched,
                       {"weight_decay": ae.L2Decay(1e-5)}, state_dtype, offset, steps)


def quadratic_run(state_dtype, offset=0, steps=1000):
    """configs/quadratic.yaml's run (dim 100, condition 1e4, float64 parameters; lr 0.2,
    ExponentialDecay(0.998)) in the rounding stream ``offset``; the final loss."""
    from adamax_engine import lr
    from adamax_engine.experiments.problems import make_quadratic
    sched = lr.ExponentialDecay(0.2, gamma=0.998)
    return _stream_run(make_quadratic(0, 100, 10000.0), sched, {}, state_dtype, offset, steps)


def _stream_run(problem, sched, options, state_dtype, offset, steps):
    import adamax_engine as ae
    from adamax_engine import lr
    dtype = problem.params[0].data.dtype
    pad = [ae.Parameter(np.zeros(offset, dtype), name="pad")] if offset else []
    opt = ae.Adamax(sched, parameters=pad + problem.params, state_dtype=state_dtype, **options)
    for _ in range(steps):
        loss = problem.loss_and_grads()
        opt.step()
        if isinstance(sched, lr.ReduceOnPlateau):
            sched.step(loss)
        else:
            sched.step()
    return problem.loss_and_grads()


#: the runs whose end point one rounding stream cannot tell, run over --streams streams
STREAM_RUNS = {"rosenbrock": rosenbrock_run, "teacher_student": teacher_student_run,
               "quadratic": quadratic_run}


def rounding_streams(state_dtype, n, steps=None, run=rosenbrock_run):
    """The final losses of ``n`` rounding streams (offsets 0, 256, 512, ...)."""
    kw = {} if steps is None else {"steps": steps}
    return np.array([run(state_dtype, 256 * k, **kw) for k in range(n)])


def _final(losses, window=50):
    return float(np.mean(losses[-window:]))


def _diff(value, base):
    return f"{100 * (value - base) / base:+.1f}%"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "lowbit_quality"))
    parser.add_argument("--skip-configs", action="store_true")
    parser.add_argument("--streams", type=int, default=20,
                        help="rosenbrock's, teacher_student's and quadratic's final loss "
                             "over N rounding streams (0: skip)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps: expected an int >= 1, got {args.steps}")
    if args.streams < 0:
        parser.error(f"--streams: expected an int >= 0, got {args.streams}")
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
    for name, run in STREAM_RUNS.items() if args.streams else ():
        base = run("float32")
        print(f"{name} over {args.streams} rounding streams (the params at offsets 0, 256, ... "
              f"of the flat buffer), final loss; float32 state {base:.4g}:")
        for sd in STATE_DTYPES[1:]:
            v = rounding_streams(sd, args.streams, run=run)
            print(f"  {sd:8s} mean {v.mean():.4g} ({_diff(v.mean(), base)}), median "
                  f"{np.median(v):.4g} ({_diff(np.median(v), base)}), range "
                  f"{v.min():.4g} .. {v.max():.4g}; within 2%: "
                  f"{int(np.sum(np.abs(v - base) <= 0.02 * abs(base)))} of {len(v)}")
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
