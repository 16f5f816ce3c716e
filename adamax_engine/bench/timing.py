"""How the benchmarks measure: round-robin, shuffled, warm, medians with spreads; and what
machine they ran on. Shared by ``adamax-engine bench`` and scripts/bench_*.py."""
import os
import platform
import time

import numpy as np


def timeit_rounds(fns, reps, warmup=2, seed=0, on_rep=None):
    """{name: array of seconds, one per round} of each callable, timed round-robin.

    Every round runs every implementation once, in a freshly shuffled order, so drift on a
    shared machine (and a peer's thread pool still spinning after its call) hits all alike.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    order = np.random.default_rng(seed)
    names = list(fns)
    for _ in range(reps):
        for name in order.permutation(names):
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
        if on_rep is not None:
            on_rep()
    return {name: np.array(t) for name, t in times.items()}


def summary(rounds):
    """{name: (median s, 10-90% spread s)} of timeit_rounds' result."""
    return {name: (float(np.median(t)), float(np.percentile(t, 90) - np.percentile(t, 10)))
            for name, t in rounds.items()}


def timeit_all(fns, reps, warmup=2, seed=0, on_rep=None):
    """summary(timeit_rounds(...)): {name: (median s, 10-90% spread s)}."""
    return summary(timeit_rounds(fns, reps, warmup, seed, on_rep))


def paired_ratio(rounds, num, den):
    """Median over rounds of num's time / den's time in the same round: two implementations
    a few ms apart see the same machine, so load that comes and goes cancels out."""
    return float(np.median(rounds[num] / rounds[den]))


def rotating(make, copies):
    """A callable cycling over ``copies`` independent instances from ``make()``: each call
    touches other memory, so a small problem is not flattered by a warm cache."""
    fns = [make() for _ in range(copies)]
    for fn in fns:  # warm every copy (JIT compiles, lazy state), not only the first
        fn()
    state = {"i": 0}

    def call():
        fns[state["i"]]()
        state["i"] = (state["i"] + 1) % len(fns)
    return call


def machine_info():
    """CPU model, cores, library versions and numba's threading layer."""
    import numba
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh
                          if line.startswith("model name")), model)
    except OSError:
        pass
    info = {"cpu": model, "cores": os.cpu_count(), "numba_threads": numba.get_num_threads(),
            "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        info["threading_layer"] = numba.threading_layer()
    except ValueError:  # no parallel function has run yet
        info["threading_layer"] = None
    for name in ("torch", "paddle", "jax", "optax"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    return info


def fmt_ms(t):
    return "skipped" if t is None else f"{t[0] * 1e3:.3f} ms"
