#!/usr/bin/env python3
"""CPU benchmark of the two workloads the core issue names, every ratio from this one run.

  python3 scripts/bootstrap.py python scripts/bench_cpu.py [--tiny] [--reps N] [--parts P,..]

(a) a transformer-shaped model (73 tensors, 23M fp32 params) and (b) 2000 tensors of 16-4096
elements: the engine's step (adopt/flat, borrow, global-norm clip + L2 + scheduler), its
fraction of a same-traffic memory ceiling (28 B per fp32 element), the speed-up over
torch.optim.Adamax (default, foreach) and paddle.optimizer.Adamax, and the engine stepping
those frameworks' own parameters. ``adamax-engine bench`` runs the wider sweep (sizes 1e3-1e8,
thread counts, numpy reference, optax) with the same code (adamax_engine/bench/).

Round-robin loops per workload (``--parts``): the engine's float32 variants against the
ceiling; its low-bit states against the float32 step and their own ceilings; both alone (so
that a framework's thread pool still spinning after its call, e.g. paddle's Intel OpenMP for
200 ms, cannot slow whichever of them runs next); then the engine against the frameworks, all
in one loop, and against optax in its own. Every ratio is the median over rounds of the two
times in the same round (load that comes and goes cancels); a loop of few implementations
keeps a round short, so its pairs are timed close together. Speed-ups come from the
frameworks' loop, which also times the ceiling: no implementation can beat it, so peer /
ceiling bounds any speed-up. The read ceiling (one pass over the grads) bounds the clip
pipeline.
"""
import argparse
import functools
import os
import sys

import numba
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from adamax_engine.bench import peers  # noqa: E402
from adamax_engine.bench.startup import cold_start, describe  # noqa: E402
from adamax_engine.bench.timing import (machine_info, paired_ratio, summary,  # noqa: E402
                                        timeit_rounds)

OWN = ["engine", "engine_borrow", "engine_full", "ceiling", "read_ceiling"]
LOWBIT = ["engine", "engine_bf16", "ceiling_bf16", "engine_int8", "ceiling_int8"]
PEERS = ["engine", "ceiling", "torch", "torch_foreach", "paddle", "engine_on_torch",
         "engine_on_paddle", "torch_front"]
JAX = ["optax_jit", "optax_front_jit", "optax_train_jit", "optax_front_train_jit",
       "ceiling"]  # their own loop: XLA's thread pool
LABELS = {"engine": "engine flat (adopt)", "ceiling": "same-traffic ceiling",
          "engine_borrow": "engine borrow", "engine_full": "engine clip+L2+sched+update",
          "read_ceiling": "read ceiling (grads once)",
          "engine_bf16": "engine, bfloat16 state", "ceiling_bf16": "ceiling at 20 B/element",
          "engine_int8": "engine, int8 state", "ceiling_int8": "ceiling at 16 B/element",
          "torch": "torch.optim.Adamax default", "torch_foreach": "torch.optim.Adamax foreach",
          "paddle": "paddle.optimizer.Adamax", "engine_on_torch": "engine on torch params",
          "engine_on_paddle": "engine on paddle params",
          "torch_front": "adamax_engine.torch.Adamax", "optax_jit": "optax.adamax under jit",
          "optax_front_jit": "adamax_engine.optax under jit",
          "optax_train_jit": "optax train step (jax.grad)",
          "optax_front_train_jit": "front train step (jax.grad)"}


def _build(impls, shapes, rng):
    """({impl: step callable} of those that can run here, {impl: why not} of the others)."""
    fns, skipped = {}, {}
    for impl in impls:
        try:
            fns[impl] = peers.CPU_IMPLEMENTATIONS[impl](shapes, rng)
        except peers.Skip as why:
            skipped[impl] = str(why)
    return fns, skipped


def fmt(t, why="not installed"):
    return f"skipped ({why})" if t is None else f"{t[0] * 1e3:9.3f} ms (±{t[1] * 1e3:.3f})"


def _loop(title, impls, shapes, rng, reps):
    """One round-robin loop, its medians printed under ``title``: (rounds, medians, ratio of
    two implementations' same-round times)."""
    if title:
        print(title)
    fns, skipped = _build(impls, shapes, rng)
    rounds = timeit_rounds(fns, reps)
    res = summary(rounds)
    for impl in impls:
        print(f"{LABELS[impl]:30s} {fmt(res.get(impl), skipped.get(impl))}")
    return rounds, res, functools.partial(paired_ratio, rounds)


def engine_part(shapes, rng, reps):
    rounds, _, r = _loop(None, OWN, shapes, rng, reps)
    floor = (rounds["ceiling"] + rounds["read_ceiling"]) / rounds["ceiling"]
    print(f"ratios (medians of same-round ratios): flat/ceiling = {r('ceiling', 'engine'):.2f}"
          f" of ceiling (target >= 0.9); borrow/flat = {r('engine_borrow', 'engine'):.2f}x "
          f"(target <= 1.3); clip+L2+sched/bare = {r('engine_full', 'engine'):.2f}x (target "
          f"<= 1.25; floor here {np.median(floor):.2f}x: the norm pass's read of the grads)")


def lowbit_part(shapes, rng, reps):
    _, _, r = _loop("low-bit state, in its own loop:", LOWBIT, shapes, rng, reps)
    for state, impl, target in (("bfloat16", "bf16", 0.80), ("int8", "int8", 0.70)):
        print(f"{state} state: {r(f'engine_{impl}', 'engine'):.2f}x the float32 step's time "
              f"(target <= {target:.2f}), {r(f'ceiling_{impl}', f'engine_{impl}'):.2f} of its "
              f"own ceiling (target >= 0.85)")


def peers_part(shapes, rng, reps):
    _, res, r = _loop("with the frameworks, in one loop:", PEERS, shapes, rng, reps)
    for peer in ("torch", "torch_foreach", "paddle"):
        if peer in res:
            print(f"speed-up vs {LABELS[peer]}: {r(peer, 'engine'):.1f}x (the memory "
                  f"ceiling itself: {r(peer, 'ceiling'):.1f}x)")
    for mine, theirs in (("engine_on_torch", "torch"), ("engine_on_torch", "torch_foreach"),
                         ("engine_on_paddle", "paddle")):
        if mine in res and theirs in res:
            print(f"same model: {LABELS[mine]} {r(theirs, mine):.1f}x faster "
                  f"than {LABELS[theirs]}")
    if "torch_front" in res:
        for theirs in ("torch", "torch_foreach"):
            print(f"torch front: {r(theirs, 'torch_front'):.1f}x faster than {LABELS[theirs]}")
        print(f"torch front / engine on torch params: "
              f"{r('torch_front', 'engine_on_torch'):.2f} (target <= 1.10)")


def jax_part(shapes, rng, reps):
    try:
        import jax  # noqa: F401
    except ImportError:
        return  # no jax here: nothing to print
    rounds, res, _ = _loop("jax, in their own loop:", JAX, shapes, rng, reps)
    if "optax_jit" in res:
        print(f"optax front under jit: {paired_ratio(rounds, 'optax_jit', 'optax_front_jit'):.2f}x"
              " the speed of optax.adamax under jit (>1: faster)")
    if "optax_train_jit" in res:
        print("training step with grads from jax.grad (XLA holds them in buffers, as a model's "
              f"backward pass does): the front at "
              f"{paired_ratio(rounds, 'optax_train_jit', 'optax_front_train_jit'):.2f}x the speed"
              " of optax.adamax")


PARTS = {"engine": engine_part, "lowbit": lowbit_part, "peers": peers_part, "jax": jax_part}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes, for a smoke test")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--parts", default=",".join(PARTS),
                    help=f"which loops to run, comma-separated (default: all of {','.join(PARTS)})")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        ap.error(f"--parts: expected names from {','.join(PARTS)}, got {args.parts!r}")
    rng = np.random.default_rng(0)
    workloads = {"(a) transformer 73 tensors": peers.transformer_shapes(),
                 "(b) 2000 small tensors": peers.small_shapes()}
    if args.tiny:
        workloads = {"(a) tiny transformer": peers.transformer_shapes(1, 16, 32, 50),
                     "(b) 50 small tensors": peers.small_shapes(50)}
    m = machine_info()
    print(f"# adamax-engine CPU benchmark  {m['date']}  {m['cpu']}  numba threads="
          f"{numba.get_num_threads()}  numpy {m['numpy']} numba {m['numba']}")
    for title, shapes in workloads.items():
        n = int(sum(np.prod(s) for s in shapes))
        print(f"\n## {title}: {len(shapes)} tensors, {n / 1e6:.2f}M fp32 params, 28 B/element")
        for part in parts:
            PARTS[part](shapes, rng, args.reps)
    print("\n" + describe(cold_start(warm_only=True)))


if __name__ == "__main__":
    main()
