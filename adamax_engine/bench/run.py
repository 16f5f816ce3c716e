"""``adamax-engine bench``: every implementation, every workload, one run; table, JSON, plot.

Workloads: one tensor of each size in ``sizes`` (1e3 ... 1e8 by default), a transformer-shaped
model (73 tensors, 23M) and 2000 small tensors, each at 1 thread and at all threads. Small
problems rotate over several copies of their buffers (at least ~64 MB touched per round) so
that no implementation is timed out of a warm cache. Implementations are timed round-robin
in two loops, except past MEMORY_BUDGET (1e8 elements, or the transformer with every peer)
where they take turns, one in memory at a time ("round_robin": false in bench.json). The engine's variants and the ceiling share one
loop and the frameworks another, which times the engine again ("engine_with_peers_s"): ratios
to the ceiling come from the first, speed-ups over the frameworks from the second.
Nothing is asserted: figures are reported.
"""
import json
import os

import numba
import numpy as np

from . import peers, plot
from .startup import cold_start, describe
from .timing import machine_info, rotating, timeit_all

SIZES = [1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000]
ROTATE_BYTES = 64 << 20
MEMORY_BUDGET = 6 << 30  # bytes all implementations of one workload may hold at once
#: timed in their own round-robin loop: a framework's thread pool still spinning after its call
#: (paddle's Intel OpenMP spins 200 ms by default) would slow whichever of them runs next
OWN = ("ceiling", "read_ceiling", "engine", "engine_borrow", "engine_full", "engine_bf16",
       "ceiling_bf16", "engine_int8", "ceiling_int8")


def workloads(sizes, tiny=False):
    out = [(f"1 tensor of {n:.0e}", [(int(n),)]) for n in sizes]
    if tiny:
        return out + [("transformer (tiny)", peers.transformer_shapes(1, 16, 32, 50)),
                      ("50 small tensors", peers.small_shapes(50))]
    return out + [("transformer 73 tensors", peers.transformer_shapes()),
                  ("2000 small tensors", peers.small_shapes())]


def _reps(n, base):
    """Fewer repetitions for big problems (each step of the slowest peer is seconds there)."""
    return max(3, base if n <= 1e6 else base // 3 if n <= 1e7 else base // 10)


def measure(name, shapes, threads, reps, impls, progress=None, max_copies=8):
    """One workload at one thread count: {impl: {median_s, spread_s, ...} or skipped}."""
    numba.set_num_threads(threads)
    n = int(sum(np.prod(s) for s in shapes))
    copies = int(min(max_copies, max(1, ROTATE_BYTES // max(1, 16 * n))))
    rng = np.random.default_rng(0)
    # every implementation holds ~16-32 B per element: past MEMORY_BUDGET they take turns
    together = n * 32 * len(impls) <= MEMORY_BUDGET
    rows, timed = {}, {}
    if together:  # the engine against the ceiling alone, then against the frameworks
        own = [i for i in impls if i in OWN]
        groups = [own, [i for i in impls if i not in OWN] + (["engine"] if "engine" in own else [])]
    else:
        groups = [[i] for i in impls]
    for group in groups:
        fns = {}
        for impl in group:
            build = peers.CPU_IMPLEMENTATIONS[impl]
            try:
                fns[impl] = rotating(lambda: build(shapes, rng), copies) if copies > 1 else \
                    build(shapes, rng)
            except peers.Skip as why:
                rows[impl] = {"status": "skipped", "note": str(why)}
        for impl, t in timeit_all(fns, _reps(n, reps), on_rep=progress).items():
            if impl in timed:  # the engine's second loop, with the frameworks
                rows["engine_with_peers_s"] = t[0]
            else:
                timed[impl] = t
        del fns
    for impl, (median, spread) in timed.items():
        rows[impl] = {"status": "ok", "median_s": median, "spread_s": spread,
                      "ns_per_element": median / n * 1e9,
                      "bytes_per_element": peers.BYTES.get(impl)}
    with_peers = rows.pop("engine_with_peers_s", None)
    return {"workload": name, "n_params": n, "n_tensors": len(shapes), "threads": threads,
            "copies": copies, "round_robin": together, "engine_with_peers_s": with_peers,
            "impls": rows}


def clip_floor(t):
    """The least clip+L2+update / bare update can be here: the norm pass must read the grads
    once more, at the read ceiling's speed, while the bare update runs at the ceiling."""
    return (t["ceiling"] + t["read_ceiling"]) / t["ceiling"]


def markdown(results):
    """One row per workload and thread count: ms per step, and the ratios the targets name."""
    impls = [i for i in peers.CPU_IMPLEMENTATIONS if any(
        r["impls"].get(i, {}).get("status") == "ok" for r in results)]
    head = ["workload", "threads"] + impls + ["engine/ceiling", "clip+L2/bare (floor)",
                                              "best peer / engine (at the ceiling)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    peer_names = ("torch", "torch_foreach", "paddle", "optax_jit")
    for r in results:
        t = {k: v["median_s"] for k, v in r["impls"].items() if v["status"] == "ok"}
        cells = [r["workload"], str(r["threads"])]
        cells += [f"{t[i] * 1e3:.3f}" if i in t else "-" for i in impls]
        frac = t["ceiling"] / t["engine"] if "ceiling" in t and "engine" in t else None
        best = min((t[p] for p in peer_names if p in t), default=None)
        mine = r.get("engine_with_peers_s") or t.get("engine")
        cells.append(f"{frac:.2f}" if frac else "-")
        cells.append(f"{t['engine_full'] / t['engine']:.2f}x ({clip_floor(t):.2f}x)"
                     if all(k in t for k in ("engine", "engine_full", "ceiling", "read_ceiling"))
                     else "-")
        cells.append(f"{best / mine:.1f}x (ceiling {best / t['ceiling']:.1f}x)"
                     if best and mine and "ceiling" in t else "-")
        lines.append("| " + " | ".join(cells) + " |")
    skipped = {k: v["note"] for r in results for k, v in r["impls"].items()
               if v["status"] == "skipped"}
    notes = [f"- {k}: skipped ({why})" for k, why in sorted(skipped.items())]
    return "\n".join(lines + ([""] + notes if notes else []))


def run(sizes=None, out_dir="bench_out", reps=30, threads=None, impls=None, tiny=False,
        cold=True, progress=True, log=print):
    """Run everything, write ``bench.json`` (+ ``bench.md``, ``bench.png``); returns the dict."""
    sizes = sizes or ([1_000, 20_000] if tiny else SIZES)
    threads = threads or sorted({1, numba.config.NUMBA_NUM_THREADS})
    impls = impls or list(peers.CPU_IMPLEMENTATIONS)
    loads = workloads(sizes, tiny)
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(loads) * len(threads), unit="workload", leave=False)
        except ImportError:
            bar = None
    results = []
    for name, shapes in loads:
        for t in threads:
            results.append(measure(name, shapes, t, reps, impls, max_copies=2 if tiny else 8))
            if bar is not None:
                bar.update(1)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    if bar is not None:
        bar.close()
    report = {"machine": machine_info(), "config": {"sizes": sizes, "threads": threads,
                                                     "reps": reps, "implementations": impls},
              "results": results,
              "cold_start": cold_start(warm_only=not cold, repeats=1 if tiny else 5)}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "bench.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    table = markdown(results)
    with open(os.path.join(out_dir, "bench.md"), "w", encoding="utf-8") as fh:
        fh.write(table + "\n")
    plot.save(results, os.path.join(out_dir, "bench.png"))
    m = report["machine"]
    log(f"# adamax-engine bench  {m['date']}  {m['cpu']}  {m['cores']} cores  numba "
        f"{m['numba']} ({m['threading_layer']})  numpy {m['numpy']}")
    log("ms per step (median); engine/ceiling = fraction of the same-traffic memory ceiling; "
        "best peer / engine = speed-up over the fastest installed framework optimizer\n")
    log(table)
    log("\n" + describe(report["cold_start"]))
    return report
