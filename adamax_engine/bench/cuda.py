"""GPU benchmark of Adamax(device="cuda"), every ratio measured within this one run.

  adamax-engine bench --device cuda [--tiny] [--reps N] [--sizes 10e6,100e6,1e9]
  python3 scripts/bench_cuda.py ...   (the same)

For models of 10M, 100M and 1B fp32 params (64 equal tensors) and for 2000 tensors of 16-4096
elements it prints the engine's step time, its bytes moved (28 B/element: read p, g, m, u,
write p, m, u) over time against a same-run device-to-device copy of the same bytes, and the
speed-up over torch.optim.Adamax(foreach=True) on CUDA and optax.adamax under jax.jit when
those are installed. Then the host time of one step (launches only, no sync) against the number
of tensors. Times are CUDA-event medians, round-robin over the implementations. No figure is
asserted. Needs a CUDA GPU and numba-cuda; the engine and the copy use numba device arrays, so
torch (with CUDA) is only needed for its peer column. Under ``NUMBA_ENABLE_CUDASIM=1`` ``--tiny``
runs a few thousand elements end to end: a smoke test of every launch (CI runs it), no figures.
"""
import argparse
import os
import time

import numpy as np

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # jax must share the card
import adamax_engine as ae  # noqa: E402
from adamax_engine.kernels import cuda as K  # noqa: E402  (runtime helpers: import nothing GPU)
from adamax_engine.kernels.cuda import runtime  # noqa: E402


def device_randn(shape, rng):
    from numba import cuda
    return cuda.to_device(rng.standard_normal(shape).astype(np.float32))


def timeit_all(fns, reps, warmup=3, seed=0):
    """CUDA-event median (and 10-90% spread) per callable, round-robin in shuffled order."""
    from numba import cuda
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    cuda.synchronize()
    times = {k: [] for k in fns}
    order = np.random.default_rng(seed)
    for _ in range(reps):
        for name in order.permutation(list(fns)):
            start, end = cuda.event(), cuda.event()
            wall = time.perf_counter()
            start.record()
            fns[name]()
            end.record()
            end.synchronize()
            if K.simulated():  # the simulator's events keep no time: wall time, for the smoke run
                times[name].append(time.perf_counter() - wall)
            else:
                times[name].append(start.elapsed_time(end) / 1e3)
    return {k: (float(np.median(v)), float(np.percentile(v, 90) - np.percentile(v, 10)))
            for k, v in times.items()}


def engine(shapes, rng, **kw):
    params = [ae.Parameter(device_randn(s, rng)) for s in shapes]
    opt = ae.Adamax(1e-3, parameters=params, device="cuda", **kw)
    for p in params:
        p.grad = device_randn(p.shape, rng)
    opt.step()  # adopt the grads, compile
    return opt.step, opt


def copy_ceiling(n, nbytes=28):
    """A device-to-device copy of nbytes/2 per element each way: the same bytes as a step
    (28 with float32 state; 20 with bfloat16, ~16 with int8)."""
    from numba import cuda
    src = cuda.to_device(np.ones(max(1, int(nbytes * n) // 8), np.float32))
    dst = cuda.device_array_like(src)
    return lambda: dst.copy_to_device(src), (src, dst)


def torch_foreach(shapes, torch):
    """torch.optim.Adamax(foreach=True) on CUDA tensors; None without torch's CUDA."""
    if torch is None or not torch.cuda.is_available():
        return None, None
    ps = [torch.nn.Parameter(torch.randn(s, device="cuda")) for s in shapes]
    for p in ps:
        p.grad = torch.randn_like(p)
    opt = torch.optim.Adamax(ps, lr=1e-3, foreach=True)
    return opt.step, (ps, opt)


def optax_jit(shapes):
    """optax.adamax under jax.jit on the GPU (peers.optax_jit, when jax's backend is the GPU)."""
    from . import peers
    try:
        import jax
        if jax.default_backend() != "gpu":
            return None, None
        return peers.optax_jit(shapes, np.random.default_rng(0)), None
    except (ImportError, peers.Skip):
        return None, None


def kernel_only(opt):
    """The update launch alone, on the optimizer's own buffers (no host bookkeeping)."""
    launch = opt.stepper.update_launch(opt.registry.buckets[0])
    return lambda: launch(1e-3)


def free(torch):
    from numba import cuda
    import gc
    gc.collect()
    if not K.simulated():
        cuda.current_context().deallocations.clear()
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def fmt(t):
    return "skipped" if t is None else f"{t[0] * 1e3:9.3f} ms (±{t[1] * 1e3:.3f})"


def host_time_per_step(torch, counts, reps=50):
    rows = []
    from numba import cuda
    rng = np.random.default_rng(1)
    for count in counts:
        step, opt = engine([(256,)] * count, rng)
        for _ in range(5):
            step()
        cuda.synchronize()
        t = []
        for _ in range(reps):
            t0 = time.perf_counter()
            step()
            t.append(time.perf_counter() - t0)
            cuda.synchronize()
        rows.append((count, float(np.median(t))))
        del step, opt
        free(torch)
    return rows


def workload(title, shapes, rng, torch, sim, reps):
    """One model's round-robin loop and its printed figures."""
    n = int(sum(np.prod(s) for s in shapes))
    print(f"\n## {title}: {len(shapes)} tensors, {n / 1e6:.2f}M fp32 params, 28 B/element")
    fns, keep = {}, []
    fns["engine"], opt = engine(shapes, rng)
    fns["kernel only"] = kernel_only(opt)
    full, opt_full = engine(shapes, rng, weight_decay=1e-4,
                            grad_clip=ae.ClipGradByGlobalNorm(1.0))
    fns["engine clip+L2"] = full
    fns["copy"], k1 = copy_ceiling(n)
    low = {}
    for sd, nbytes in (("bfloat16", 20), ("int8", 16.03)):
        fns[f"engine {sd}"], low[sd] = engine(shapes, rng, state_dtype=sd)
        fns[f"copy {sd}"], low[f"copy {sd}"] = copy_ceiling(n, nbytes)
    run, k2 = torch_foreach(shapes, torch)
    if run is not None:
        fns["torch foreach"] = run
    if n <= 200_000_000 and len(shapes) <= 64 and not sim:  # jit of 2000 leaves: minutes
        run, k3 = optax_jit(shapes)
        if run is not None:
            fns["optax jit"] = run
            keep.append(k3)
    keep += [opt, opt_full, k1, k2, low]
    reps = max(5, reps // 2) if n > 500_000_000 else reps
    res = timeit_all(fns, reps)
    eng, roof = res["engine"], res["copy"]
    kern = res["kernel only"]
    print(f"engine (adopt, fused)         {fmt(eng)}   {28 * n / eng[0] / 1e9:8.1f} GB/s")
    print(f"  its update launch alone     {fmt(kern)}   {28 * n / kern[0] / 1e9:8.1f} GB/s")
    print(f"device-to-device copy, same B {fmt(roof)}   {28 * n / roof[0] / 1e9:8.1f} GB/s")
    print(f"engine global-norm clip + L2  {fmt(res['engine clip+L2'])}")
    print(f"torch.optim.Adamax foreach    {fmt(res.get('torch foreach'))}")
    print(f"optax.adamax + jax.jit        {fmt(res.get('optax jit'))}")
    print(f"ratios: engine/copy = {roof[0] / eng[0]:.2f} of the copy bandwidth (target >= 0.85 "
          f"at >= 100M), kernel alone {roof[0] / kern[0]:.2f}; "
          f"clip+L2/bare = {res['engine clip+L2'][0] / eng[0]:.2f}x")
    for sd in ("bfloat16", "int8"):
        t, c = res[f"engine {sd}"], res[f"copy {sd}"]
        print(f"engine, {sd} state{' ' * (12 - len(sd))}{fmt(t)}: {t[0] / eng[0]:.2f}x the "
              f"float32 step (target <= {0.8 if sd == 'bfloat16' else 0.7}), "
              f"{c[0] / t[0]:.2f} of its own copy ceiling (target >= 0.85)")
    for peer in ("torch foreach", "optax jit"):
        if peer in res:
            print(f"speed-up vs {peer}: {res[peer][0] / eng[0]:.1f}x (target >= 3x vs torch)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--sizes", default="10e6,100e6,1e9")
    args = ap.parse_args(argv)
    from numba import cuda
    if not K.available():
        raise SystemExit("bench --device cuda: no CUDA GPU (and NUMBA_ENABLE_CUDASIM is not set)")
    try:
        import torch
    except ImportError:
        torch = None
    sim = K.simulated()
    dev = "numba CUDA simulator" if sim else cuda.get_current_device().name
    dev = dev.decode() if isinstance(dev, bytes) else dev
    print(f"# adamax-engine CUDA benchmark  {time.strftime('%Y-%m-%d')}  {dev}"
          f"  torch {getattr(torch, '__version__', 'not installed')}  flat indices "
          f"{runtime.INDEX_NAME} (ADAMAX_ENGINE_CUDA_INDEX)")
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    small, tensors = 2000, 64
    if args.tiny:
        sizes, small = [1 << 20], 200
    if sim:  # the simulator runs every GPU thread as a Python thread: a few thousand elements
        sizes, small, tensors, args.reps = [2048], 6, 4, min(args.reps, 2)
    rng = np.random.default_rng(0)
    workloads = [(f"{n / 1e6:g}M params, {tensors} tensors", [(n // tensors,)] * tensors)
                 for n in sizes]
    workloads.append((f"{small} small tensors (16-4096)",
                      [(int(k),) for k in rng.integers(16, 4097 if not sim else 300, small)]))
    for title, shapes in workloads:
        try:
            workload(title, shapes, rng, torch, sim, args.reps)
        except Exception as exc:  # noqa: BLE001 - only running out of device memory is caught
            if "out of memory" not in str(exc).lower():
                raise
            print(f"skipped: out of device memory ({type(exc).__name__}: {str(exc)[:160]})")
        free(torch)
    counts = [10, 100, 1000] if args.tiny else [10, 100, 1000, 10000]
    counts = [4] if sim else counts
    print("\n## host time per step (launches only, 256-element tensors)")
    for count, t in host_time_per_step(torch, counts, reps=3 if sim else 50):
        print(f"{count:6d} tensors: {t * 1e6:8.1f} us")
    return 0


if __name__ == "__main__":
    main()
