#!/usr/bin/env python3
"""CPU benchmark of the fused Adamax step, every ratio measured within this one run.

  python3 scripts/bootstrap.py python scripts/bench_cpu.py [--tiny] [--reps N]

Prints, for (a) a transformer-shaped model (73 tensors, 23M fp32 params) and (b) 2000 tensors of
16-4096 elements: the engine's step time (adopt/flat, borrow, and with global-norm clip + L2),
its fraction of a same-traffic memory ceiling (a numba parallel kernel reading p, g, m, u and
writing p, m, u: 28 bytes per fp32 element, exactly what the fused step moves), and the speed-up
over torch.optim.Adamax (default, and foreach) and paddle.optimizer.Adamax when installed.
Also: import + first step in a fresh process with a warm JIT cache. No figure is asserted.
"""
import argparse
import os
import platform
import subprocess
import sys
import time

import numba
import numpy as np
from numba import njit, prange

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import adamax_engine as ae  # noqa: E402


@njit(parallel=True, cache=True)
def _same_traffic(p, g, m, u):
    """The ceiling: the fused step's memory traffic with trivial arithmetic."""
    for i in prange(p.shape[0]):
        gi = g[i]
        m[i] = m[i] + gi
        u[i] = u[i] + gi
        p[i] = p[i] + gi


def transformer_shapes(layers=6, d=512, ff=2048, vocab=8000):
    shapes = [(vocab, d)]
    for _ in range(layers):
        shapes += [(d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, ff), (ff,), (ff, d), (d,),
                   (d,), (d,)]
    return shapes


def small_shapes(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return [(int(k),) for k in rng.integers(16, 4097, n)]


def timeit_all(fns, reps, warmup=2, seed=0):
    """Median and 10-90% spread of each callable, timed round-robin so that drift on a shared
    machine hits every implementation alike. The order is shuffled every round: a peer's thread
    pool that keeps spinning after its call (OpenMP) must not always slow down the same successor.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    order = np.random.default_rng(seed)
    names = list(fns)
    for _ in range(reps):
        for name in order.permutation(names):
            fn = fns[name]
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (float(np.median(t)), float(np.percentile(t, 90) - np.percentile(t, 10)))
            for name, t in times.items()}


def engine(shapes, rng, **kw):
    params = [ae.Parameter(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    opt = ae.Adamax(1e-3, parameters=params, **kw)
    for p in params:
        p.grad = rng.standard_normal(p.data.shape).astype(np.float32)
    opt.step()  # adopt/borrow settle, JIT warm
    return opt.step


def ceiling(n, rng):
    arrays = [rng.standard_normal(n).astype(np.float32) * 1e-3 for _ in range(4)]
    return lambda: _same_traffic(*arrays)


def torch_params(shapes, rng):
    import torch
    ps = [torch.nn.Parameter(torch.tensor(rng.standard_normal(s).astype(np.float32)))
          for s in shapes]
    for p in ps:
        p.grad = torch.randn_like(p)
    return ps


def paddle_params(shapes, rng):
    import paddle
    paddle.set_device("cpu")
    ps = [paddle.create_parameter(list(s), "float32") for s in shapes]
    loss = sum((p * paddle.to_tensor(rng.standard_normal(s).astype(np.float32))).sum()
               for p, s in zip(ps, shapes))
    loss.backward()
    return ps


def framework_steps(shapes, rng):
    """The peers, and the engine stepping the same frameworks' parameters (when installed)."""
    out = {}
    try:
        import torch
        torch.set_num_threads(numba.get_num_threads())
        for label, foreach in (("torch", False), ("torch_foreach", True)):
            out[label] = torch.optim.Adamax(torch_params(shapes, rng), lr=1e-3,
                                            foreach=foreach).step
        opt = ae.Adamax(1e-3, parameters=torch_params(shapes, rng), flavor="torch")
        opt.step()  # adopt
        out["engine_on_torch"] = opt.step
    except ImportError:
        pass
    try:
        import paddle  # noqa: F401
        out["paddle"] = paddle.optimizer.Adamax(1e-3, parameters=paddle_params(shapes, rng)).step
        out["engine_on_paddle"] = ae.Adamax(1e-3, parameters=paddle_params(shapes, rng)).step
    except ImportError:
        pass
    return out


def cold_start():
    code = ("import time; t0 = time.perf_counter(); import numpy as np, adamax_engine as ae; "
            "p = ae.Parameter(np.ones(1000, np.float32)); o = ae.Adamax(0.1, parameters=[p]); "
            "p.grad = np.ones(1000, np.float32); o.step(); print(time.perf_counter() - t0)")
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    env = {**os.environ, "PYTHONPATH": root}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)  # warm
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return float(out.stdout.decode().strip())


def fmt(t):
    return "skipped (not installed)" if t is None else f"{t[0] * 1e3:9.3f} ms (±{t[1] * 1e3:.3f})"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes, for a smoke test")
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    workloads = {"(a) transformer 73 tensors": transformer_shapes(),
                 "(b) 2000 small tensors": small_shapes()}
    if args.tiny:
        workloads = {"(a) tiny transformer": transformer_shapes(1, 16, 32, 50),
                     "(b) 50 small tensors": small_shapes(50)}
    print(f"# adamax-engine CPU benchmark  {time.strftime('%Y-%m-%d')}  {platform.processor() or platform.machine()}"
          f"  numba threads={numba.get_num_threads()}"
          f"  numpy {np.__version__} numba {numba.__version__}")
    for title, shapes in workloads.items():
        n = int(sum(np.prod(s) for s in shapes))
        print(f"\n## {title}: {len(shapes)} tensors, {n / 1e6:.2f}M fp32 params, 28 B/element")
        fns = {"flat": engine(shapes, rng), "borrow": engine(shapes, rng, mode="borrow"),
               "full": engine(shapes, rng, weight_decay=1e-4,
                              grad_clip=ae.ClipGradByGlobalNorm(1.0)),
               "roof": ceiling(n, rng), **framework_steps(shapes, rng)}
        res = timeit_all(fns, args.reps)
        flat, borrow, full, roof = res["flat"], res["borrow"], res["full"], res["roof"]
        t_default, t_foreach, pd = res.get("torch"), res.get("torch_foreach"), res.get("paddle")
        gbs = 28 * n / flat[0] / 1e9
        print(f"engine flat (adopt)          {fmt(flat)}   {gbs:6.2f} GB/s")
        print(f"same-traffic ceiling         {fmt(roof)}   {28 * n / roof[0] / 1e9:6.2f} GB/s")
        print(f"engine borrow                {fmt(borrow)}")
        print(f"engine clip+L2+update        {fmt(full)}")
        print(f"torch.optim.Adamax default   {fmt(t_default)}")
        print(f"torch.optim.Adamax foreach   {fmt(t_foreach)}")
        print(f"paddle.optimizer.Adamax      {fmt(pd)}")
        on_torch, on_paddle = res.get("engine_on_torch"), res.get("engine_on_paddle")
        print(f"engine on torch params       {fmt(on_torch)}   (adopt, flavor=torch)")
        print(f"engine on paddle params      {fmt(on_paddle)}   (borrow)")
        print(f"ratios: flat/ceiling = {roof[0] / flat[0]:.2f} of ceiling (target >= 0.9); "
              f"borrow/flat = {borrow[0] / flat[0]:.2f}x (target <= 1.3); "
              f"clip+L2/bare = {full[0] / flat[0]:.2f}x (target <= 1.25)")
        for label, t in (("torch default", t_default), ("torch foreach", t_foreach), ("paddle", pd)):
            if t is not None:
                print(f"speed-up vs {label}: {t[0] / flat[0]:.1f}x")
        if on_torch and t_default:
            print(f"same torch model: engine {t_default[0] / on_torch[0]:.1f}x faster than "
                  f"torch.optim.Adamax default, {t_foreach[0] / on_torch[0]:.1f}x than foreach")
        if on_paddle and pd:
            print(f"same paddle model: engine {pd[0] / on_paddle[0]:.1f}x faster than "
                  "paddle.optimizer.Adamax")
    print(f"\nimport + first step, warm JIT cache, fresh process: {cold_start():.2f} s (target < 1 s)")


if __name__ == "__main__":
    main()
