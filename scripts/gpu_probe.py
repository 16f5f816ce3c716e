"""Where does the CUDA update lose bandwidth? Times variants at 256M fp32 (CUDA events)."""
import os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import torch
from numba import cuda
import adamax_engine as ae
from adamax_engine.kernels import cuda as K
from adamax_engine.kernels import layout as L

N = 256 * 1024 * 1024

@cuda.jit
def same_traffic(p, g, m, u):
    i = cuda.grid(1)
    while i < p.shape[0]:
        gi = g[i]
        m[i] = m[i] + gi
        u[i] = u[i] + gi
        p[i] = p[i] + gi
        i += cuda.gridsize(1)

@cuda.jit
def flat_adamax(p, g, m, u, lr_t, b1, omb1, b2, eps):
    i = cuda.grid(1)
    while i < p.shape[0]:
        gi = g[i]
        mi = b1 * m[i] + omb1 * gi
        a = abs(gi)
        b = b2 * u[i] + eps
        ui = b if a < b else a
        m[i] = mi
        u[i] = ui
        p[i] = p[i] - lr_t * (mi / ui)
        i += cuda.gridsize(1)

def t(fn, reps=15):
    for _ in range(3): fn()
    cuda.synchronize()
    out = []
    for _ in range(reps):
        s, e = cuda.event(), cuda.event()
        s.record(); fn(); e.record(); e.synchronize()
        out.append(cuda.event_elapsed_time(s, e) / 1e3)
    return float(np.median(out))

arrs = [cuda.as_cuda_array(torch.rand(N, device="cuda") + 0.5) for _ in range(4)]
src = torch.empty(N * 14 // 4, device="cuda"); dst = torch.empty_like(src); src.normal_()
sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
res = {"copy": t(lambda: dst.copy_(src))}
for blocks in (sms * 8, sms * 32):
    res[f"same-traffic grid={blocks}"] = t(lambda: same_traffic[blocks, 256](*arrs))
    f32 = np.float32
    res[f"flat adamax grid={blocks}"] = t(lambda: flat_adamax[blocks, 256](*arrs, f32(1e-3), f32(.9), f32(.1), f32(.999), f32(1e-8)))
p = ae.Parameter(arrs[0]); 
opt = ae.Adamax(1e-3, parameters=[p], device="cuda"); p.grad = arrs[1]; opt.step()
b = opt.registry.buckets[0]; tb = opt._cuda.tables[id(b)]
for threads, mult in ((256, 16), (256, 4), (512, 8), (128, 16)):
    K.THREADS = threads; K.kernels.cache_clear()
    k = K.kernels(np.float32)
    grid = min(len(b.chunks), sms * mult)
    launch = k.update[grid, threads]
    res[f"table update threads={threads} grid={grid}"] = t(lambda: launch(
        b.params, b.grads, b.moment, b.inf_norm, tb.chunks, tb.hyper, tb.flags, 0, opt._cuda.skip,
        1e-3, tb.lr_mult, tb.beta1_pow, tb.beta1_f64, tb.steps))
for k_, v in res.items():
    print(f"{k_:45s} {v * 1e3:8.3f} ms  {28 * N / v / 1e9:7.0f} GB/s  {res['copy'] / v:5.2f} of copy")
