"""Run under mpiexec by tests/test_distributed.py: train a small model data-parallel.

argv: out.npz shard(0|1) dtype clip(none|global|norm) steps [resume.npz]
env: ADAMAX_WORKER_DEVICE (cpu|cuda), ADAMAX_WORKER_STATE_DTYPE (float32|bfloat16|int8)
Every rank's grad is exactly representable and small, so the MPI sums are exact in any order
and the result can be compared bit for bit with one process stepping the averaged gradient.
"""
import os
import sys

import numpy as np

import adamax_engine as ae
from adamax_engine.parallel.mpi import DistributedAdamax

SHAPES = [(7, 5), (33,), (1,), (300,), (2, 3, 4), (1000,)]


def initial(dtype):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def grad(step, rank, size, i, dtype):
    """base + (rank - (size-1)/2) * delta: the ranks' sum is size * base exactly, so the
    averaged grad is exactly ``base`` (both k/256 with |k| <= 512)."""
    rng = np.random.default_rng([step, i])
    base, delta = rng.integers(-512, 512, (2,) + SHAPES[i]) / 256.0
    return (base + (rank - (size - 1) / 2) * delta).astype(dtype)


def make_optimizer(params, clip, device="cpu", state_dtype="float32"):
    grad_clip = {"none": None, "global": ae.ClipGradByGlobalNorm(2.0),
                 "norm": ae.ClipGradByNorm(1.0)}[clip]
    groups = [{"params": params[:3], "beta1": 0.8},
              {"params": params[3:], "weight_decay": ae.L1Decay(0.01), "learning_rate": 0.5}]
    return ae.Adamax(0.02, parameters=groups, grad_clip=grad_clip, weight_decay=0.001,
                     device=device, state_dtype=state_dtype)


def main():
    out, shard, dtype, clip, steps = sys.argv[1:6]
    resume = sys.argv[6] if len(sys.argv) > 6 else None
    dtype, steps = np.dtype(dtype), int(steps)
    device = os.environ.get("ADAMAX_WORKER_DEVICE", "cpu")  # "cuda": device arrays
    if device == "cuda":
        from numba import cuda
    put = (lambda a: a) if device == "cpu" else cuda.to_device
    params = [ae.Parameter(put(v), name=f"p{i}") for i, v in enumerate(initial(dtype))]
    state_dtype = os.environ.get("ADAMAX_WORKER_STATE_DTYPE", "float32")
    opt = DistributedAdamax(make_optimizer(params, clip, device, state_dtype),
                            shard_state=shard == "1")
    rank, size = opt.rank, opt.size
    start = 0
    if resume:
        start = opt.restore(resume)["step"]
    opt.broadcast_parameters()
    for step in range(start, steps):
        for i, p in enumerate(params):
            p.grad = put(grad(step, rank, size, i, dtype))
        opt.step()
    sizes = opt.comm.gather(opt.state_bytes())
    opt.save(out, extra={"step": steps, "state_bytes": sizes})


if __name__ == "__main__":
    main()
