"""Probe 2: same kernel, same total size (256M fp32); data and tensor split varied."""
import os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import torch
from numba import cuda
import adamax_engine as ae
from adamax_engine.kernels import cuda as K

N = 256 * 1024 * 1024

def t(fn, reps=15):
    for _ in range(3): fn()
    cuda.synchronize()
    out = []
    for _ in range(reps):
        s, e = cuda.event(), cuda.event()
        s.record(); fn(); e.record(); e.synchronize()
        out.append(cuda.event_elapsed_time(s, e) / 1e3)
    return float(np.median(out))

def build(n_tensors, gen):
    ps = [ae.Parameter(gen(N // n_tensors)) for _ in range(n_tensors)]
    opt = ae.Adamax(1e-3, parameters=ps, device="cuda")
    for p in ps:
        p.grad = gen(N // n_tensors)
    opt.step()
    b = opt.registry.buckets[0]; tb = opt._cuda.tables[id(b)]
    k = K.kernels(np.float32)
    launch = k.update[K.grid_for(len(b.chunks)), k.threads]
    kern = lambda: launch(b.params, b.grads, b.moment, b.inf_norm, tb.chunks, tb.hyper, tb.flags, 0,
                          opt._cuda.skip, 1e-3, tb.lr_mult, tb.beta1_pow, tb.beta1_f64, tb.steps)
    return opt, kern

src = torch.empty(N * 14 // 4, device="cuda"); dst = torch.empty_like(src); src.normal_()
res = {"copy": t(lambda: dst.copy_(src))}
gens = {"rand+0.5": lambda n: torch.rand(n, device="cuda") + 0.5,
        "randn": lambda n: torch.randn(n, device="cuda")}
for gname, gen in gens.items():
    for n_t in (1, 64):
        opt, kern = build(n_t, gen)
        res[f"{gname} {n_t} tensors kernel"] = t(kern)
        res[f"{gname} {n_t} tensors step"] = t(opt.step)
        b = opt.registry.buckets[0]
        u = b.inf_norm[:1000000].copy_to_host(); m = b.moment[:1000000].copy_to_host()
        print(gname, n_t, "min|u|", np.abs(u).min(), "min|m|", np.abs(m).min(), "denormal m", int((np.abs(m) < 1.2e-38).sum()), flush=True)
        del opt, kern, b
        cuda.current_context().deallocations.clear(); torch.cuda.empty_cache()
for k_, v in res.items():
    print(f"{k_:35s} {v * 1e3:8.3f} ms  {28 * N / v / 1e9:7.0f} GB/s  {res['copy'] / v:5.2f} of copy")
