"""One process of tests/test_kernel_cache.py (numba's cache dir comes from the environment).

  write        compile kernels.cpu.fused_update (float32) into the cache; print each flavor
               loop's numba uid
  probe N      numba's uid counter set to N, compile the torch loop alone: print its uid
  load N       counter set to N, compile the torch loop alone, then run the cached
               fused_update in paddle's flavor: print the loop's uid and signature, whether
               the cache was hit and
               whether params and state equal the oracle's bit for bit
  lowbit DTYPE three steps with bfloat16 or int8 state: print a digest of the params and
               the state, and how many kernels came from the cache
"""
import hashlib
import itertools
import json
import sys

import numpy as np
from numba.core.bytecode import FunctionIdentity

from adamax_engine.kernels import cpu
from adamax_engine.kernels import layout as L
from adamax_engine.kernels import reference as ref

LOOPS = {"paddle": cpu._PADDLE_FAST, "torch": cpu._TORCH_FAST, "keras": cpu._KERAS_FAST}


def problem():
    """Two segments, no clip, no decay (the fast loops), fresh random values."""
    rng = np.random.default_rng(7)
    sizes = [300, 17]
    offsets = np.array([0, sizes[0]], np.int64)
    hyper, flags = L.empty_tables(len(sizes), np.float32)
    b1, b2, eps = ref.paddle_hyper(np.float32, 0.9, 0.999, 1e-3)  # eps large: flavors differ
    for s in range(len(sizes)):
        hyper[s, [L.LR_T, L.BETA1, L.ONE_MINUS_BETA1, L.BETA2, L.EPS, L.GRAD_SCALE]] = \
            [0.01, b1, np.float32(1) - b1, b2, eps, 1]
        flags[s] = [1, 0, 0, L.NO_DECAY]
    n = sum(sizes)
    arrays = [rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32),
              (0.1 * rng.standard_normal(n)).astype(np.float32),
              np.abs(rng.standard_normal(n)).astype(np.float32)]
    return L.build_chunk_table(offsets, sizes), hyper, flags, arrays


def loop_uids(loop):
    return [result.fndesc.uid for result in loop.overloads.values()]


def loop_signatures(loop):
    return [str(sig) for sig in loop.signatures]


def compile_torch_loop_alone():
    one = np.ones(8, np.float32)
    half = np.float32(0.5)
    LOOPS["torch"](one, one.copy(), one.copy(), one.copy(), *[half] * 9, False, False,
                   np.int64(L.NO_DECAY))
    return loop_uids(LOOPS["torch"])


def lowbit_steps(state_dtype):
    import adamax_engine as ae
    from adamax_engine.kernels import lowbit
    rng = np.random.default_rng(11)
    params = [ae.Parameter(rng.standard_normal(n).astype(np.float32), name=f"p{i}")
              for i, n in enumerate([300, 1000, 17])]
    opt = ae.Adamax(learning_rate=0.01, parameters=params, state_dtype=state_dtype,
                    grad_clip=ae.ClipGradByGlobalNorm(1.0))
    for _ in range(3):
        for p in params:
            p.grad = rng.standard_normal(p.shape).astype(np.float32)
        opt.step()
    digest = hashlib.sha256()
    for value in [p.data for p in params] + list(opt.state_dict().values()):
        if isinstance(value, np.ndarray):
            digest.update(value.tobytes())
    make = lowbit._make_int8_kernel if state_dtype == "int8" else lowbit._make_kernel
    kernels = [make(lowbit.PADDLE, True, lowbit.flat_chunk)]  # the one the step ran (cached)
    print(json.dumps({"digest": digest.hexdigest(), "kernels": len(kernels),
                      "cache_hits": sum(sum(k.stats.cache_hits.values()) for k in kernels)}))


def main(mode, start=None):
    if mode == "lowbit":
        lowbit_steps(start)
        return
    chunks, hyper, flags, arrays = problem()
    if mode == "write":
        cpu.fused_update(*[a.copy() for a in arrays], chunks, hyper, flags, L.PADDLE)
        print(json.dumps({"uids": {name: loop_uids(loop) for name, loop in LOOPS.items()},
                          "paddle_signatures": loop_signatures(LOOPS["paddle"])}))
        return
    FunctionIdentity._unique_ids = itertools.count(int(start))
    torch_uids = compile_torch_loop_alone()
    if mode == "probe":
        print(json.dumps(torch_uids))
        return
    expect, got = [a.copy() for a in arrays], [a.copy() for a in arrays]
    ref.fused_update(*expect, chunks, hyper, flags, L.PADDLE)
    cpu.fused_update(*got, chunks, hyper, flags, L.PADDLE)
    print(json.dumps({"torch_uids": torch_uids,
                      "torch_signatures": loop_signatures(LOOPS["torch"]),
                      "cache_hits": sum(cpu.fused_update.stats.cache_hits.values()),
                      "exact": all(np.array_equal(e, g) for e, g in zip(expect, got))}))


if __name__ == "__main__":
    main(*sys.argv[1:])
