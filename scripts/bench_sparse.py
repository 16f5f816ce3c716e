"""Row-sparse Adamax vs the dense step: an embedding table with a small fraction of rows touched.

    python3 scripts/bootstrap.py python scripts/bench_sparse.py [--rows 1000000] [--dim 64]
        [--frac 0.01] [--steps 300]

Three optimizers over the same table, each timed per step (median, 10-90% spread) after a
warm-up, in a round-robin so the machine's noise hits all of them alike:
  dense      the ordinary fused step on a dense grad (zeros except the touched rows);
  lazy       lazy_mode=True: only the touched rows move (not the dense result);
  exact      lazy_mode=False: opt.catch_up(rows) (what a forward pass needs) + step: touched
             rows replay the updates they missed, so the result is the dense one; timed in
             steady state (after --warmup steps, rows lag ~1/frac).
Prints each median and its ratio to the dense step.
"""
import argparse
import time

import numpy as np

import adamax_engine as ae
from adamax_engine.step.rows import RowSparseGrad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--frac", type=float, default=0.01)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per optimizer")
    ap.add_argument("--warmup", type=int, default=300, help="steps before timing (exact mode "
                    "needs ~3/frac to reach its steady-state lag)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    init = (0.01 * rng.standard_normal((args.rows, args.dim))).astype(np.float32)
    k = max(1, int(args.rows * args.frac))
    runs = {}
    for name, lazy in (("dense", None), ("lazy", True), ("exact", False)):
        p = ae.Parameter(init.copy(), name="emb")
        opt = ae.Adamax(1e-3, parameters=[p], lazy_mode=bool(lazy))
        runs[name] = (p, opt, lazy)
    dense_grad = np.zeros((args.rows, args.dim), np.float32)
    runs["dense"][0].grad = dense_grad
    times = {name: [] for name in runs}

    def one(name, rows, vals):
        p, opt, lazy = runs[name]
        if lazy is None:
            g = p.grad  # the adopted view: zero the last rows, write this step's
            g[one.last] = 0
            g[rows] = vals
        else:
            p.grad = RowSparseGrad(rows, vals)
        t = time.perf_counter()
        if lazy is False:  # exact training reads up-to-date rows: catch them up first
            opt.catch_up(p, rows)
        opt.step()
        return time.perf_counter() - t
    one.last = np.arange(0)
    total = args.warmup + args.steps
    for step in range(total):
        rows = np.sort(rng.choice(args.rows, k, replace=False))
        vals = rng.standard_normal((k, args.dim)).astype(np.float32)
        order = list(runs)
        rng.shuffle(order)
        for name in order:
            dt = one(name, rows, vals)
            if step >= args.warmup:
                times[name].append(dt)
        one.last = rows
        if step % 50 == 0:
            print(f"step {step}/{total}", flush=True)
    dense = np.median(times["dense"])
    print(f"\n{args.rows} x {args.dim} float32, {k} rows ({args.frac:.1%}) per step, "
          f"{args.steps} timed steps after {args.warmup}")
    for name, ts in times.items():
        lo, med, hi = np.percentile(ts, [10, 50, 90]) * 1e3
        print(f"  {name:6s} {med:9.2f} ms  [{lo:.2f}-{hi:.2f}]  {med * 1e-3 / dense:7.3f}x dense")


if __name__ == "__main__":
    main()
