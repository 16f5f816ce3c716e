"""parallel/mpi.py under ``mpiexec -n 2`` and ``-n 3`` (uneven shards) vs one process.

The workers' grads average exactly (tests/mpi_worker.py), so params and state after 20 steps
must equal, bit for bit, one process stepping the averaged gradient; with norm clipping in
float64 too (the squares' sums are exact there, whatever the order).
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine.io import checkpoint
from adamax_engine.kernels import cuda as cuda_kernels

pytest.importorskip("mpi4py")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mpi_worker as W  # noqa: E402

MPIEXEC = shutil.which("mpiexec") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
pytestmark = pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec")


def run_mpi(n, *args, state_dtype="float32"):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               ADAMAX_WORKER_STATE_DTYPE=state_dtype)
    proc = subprocess.run([MPIEXEC, "-n", str(n), "--oversubscribe", sys.executable,
                           os.path.join(HERE, "mpi_worker.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env,
                          cwd=os.path.dirname(HERE))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def single_process(dtype, clip, size, steps, save_at=None, path=None, state_dtype="float32"):
    params = [ae.Parameter(v, name=f"p{i}") for i, v in enumerate(W.initial(dtype))]
    opt = W.make_optimizer(params, clip, state_dtype=state_dtype)
    for step in range(steps):
        if step == save_at:
            opt.save(path, extra={"step": step})
        for i, p in enumerate(params):
            total = sum(W.grad(step, r, size, i, dtype) for r in range(size))
            p.grad = (total / dtype.type(size)).astype(dtype)
        opt.step()
    return params, opt


def assert_checkpoint_equals(path, params, opt):
    meta, arrays = checkpoint.read(path)
    for p in params:
        np.testing.assert_array_equal(arrays[f"param/{p.name}"], p.data, err_msg=p.name)
    for key, value in opt.state_dict().items():
        if key.endswith("_moment_0"):
            np.testing.assert_array_equal(arrays[f"moment/{key[:-9]}"], value, err_msg=key)
        elif key.endswith("_inf_norm_0"):
            np.testing.assert_array_equal(arrays[f"inf_norm/{key[:-11]}"], value, err_msg=key)
        elif key.endswith("_beta1_pow_acc_0"):
            np.testing.assert_array_equal(arrays[f"beta1_pow/{key[:-16]}"], value, err_msg=key)
    return meta


CASES = [(2, 0, "float32", "none"), (2, 1, "float64", "global"), (3, 1, "float32", "none"),
         (3, 0, "float64", "norm"), (3, 1, "float64", "global")]


@pytest.mark.parametrize("n,shard,dtype,clip", CASES, ids=lambda c: str(c))
def test_ranks_equal_one_process_with_averaged_grads(tmp_path, n, shard, dtype, clip):
    out = tmp_path / "dist.npz"
    run_mpi(n, out, shard, dtype, clip, 20)
    params, opt = single_process(np.dtype(dtype), clip, n, 20)
    meta = assert_checkpoint_equals(out, params, opt)
    per_rank = meta["extra"]["state_bytes"]
    whole = sum(b.moment.nbytes + b.inf_norm.nbytes for b in opt.registry.buckets)
    if shard:  # ZeRO-1: state split across ranks, nothing duplicated
        assert sum(per_rank) == whole
        assert max(per_rank) <= whole / n + 2 * 32 * np.dtype(dtype).itemsize
    else:
        assert per_rank == [whole] * n
    loaded = ae.Adamax.load(out, [ae.Parameter(np.zeros(s, dtype), name=f"p{i}")
                                  for i, s in enumerate(W.SHAPES)])  # sharded -> one process
    for key, value in opt.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[key], value, err_msg=key)


@pytest.mark.parametrize("state_dtype,n,clip", [("int8", 3, "none"), ("bfloat16", 2, "none")])
def test_low_bit_state_sharded_equals_one_process(tmp_path, state_dtype, n, clip):
    """ZeRO-1 with low-bit state: shards on block edges, the rounding's counter global, the
    gathered codes and scales (the checkpoint) those of one process, bit for bit. (float32
    params without a norm clip: the sums are exact, as in the float32 cases above; a norm clip
    sums per-rank partials in another order, within an ulp.)"""
    out = tmp_path / "dist.npz"
    run_mpi(n, out, 1, "float32", clip, 12, state_dtype=state_dtype)
    params, opt = single_process(np.dtype("float32"), clip, n, 12, state_dtype=state_dtype)
    meta, arrays = checkpoint.read(out)
    assert meta["state_dtype"] == state_dtype
    for p in params:
        np.testing.assert_array_equal(arrays[f"param/{p.name}"], p.data, err_msg=p.name)
        held = opt.parameter_codes(p)
        for kind, value in zip(("moment_codes", "inf_norm_codes", "moment_scale",
                                "inf_norm_scale"), held):
            if value is not None:
                np.testing.assert_array_equal(arrays[f"{kind}/{p.name}"], value,
                                              err_msg=f"{kind}/{p.name}")
    per_rank, whole = meta["extra"]["state_bytes"], opt.state_nbytes
    assert max(per_rank) < whole * 0.75  # each rank holds its slice of the codes


def test_single_process_checkpoint_resumes_sharded(tmp_path):
    start = tmp_path / "single.npz"
    params, opt = single_process(np.dtype("float64"), "global", 3, 20, save_at=10, path=start)
    out = tmp_path / "resumed.npz"
    run_mpi(3, out, 1, "float64", "global", 20, start)
    assert_checkpoint_equals(out, params, opt)


def test_wrapper_refuses_what_it_cannot_do():
    from adamax_engine.parallel.mpi import DistributedAdamax, shard_bounds, shard_chunks
    p = ae.Parameter(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="adopt mode"):
        DistributedAdamax(ae.Adamax(0.1, parameters=[p], mode="borrow"))
    with pytest.raises(ValueError, match="cuda_aware: expected None, True or False"):
        DistributedAdamax(ae.Adamax(0.1, parameters=[p]), cuda_aware="yes")
    with pytest.raises(ValueError, match="bucket_bytes"):
        DistributedAdamax(ae.Adamax(0.1, parameters=[p]), bucket_bytes=10)
    edges = shard_bounds(1000, 3)
    assert edges[0] == 0 and edges[-1] == 1000 and all(e % 32 == 0 for e in edges[1:-1])
    chunks = np.array([[0, 0, 100], [1, 128, 900], [2, 928, 1000]], np.int64)
    np.testing.assert_array_equal(shard_chunks(chunks, 320, 672), [[1, 0, 352]])


def test_cli_run_under_mpiexec_matches_single_process(tmp_path):
    from adamax_engine import cli
    root = os.path.dirname(HERE)
    config = os.path.join(root, "configs", "default.yaml")
    common = ["--no-progress", "--set", "experiment.steps=30",
              "--set", "experiment.checkpoint_every=10"]
    single = tmp_path / "single"
    assert cli.main(["run", config, "--out", str(single), *common]) == 0
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    dist = tmp_path / "dist"
    proc = subprocess.run(
        [MPIEXEC, "-n", "2", "--oversubscribe", sys.executable, "-m", "adamax_engine.cli", "run",
         config, "--out", str(dist), *common, "--set",
         "distributed={backend: mpi, shard_state: true}"],
        capture_output=True, text=True, timeout=300, env=env, cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("outputs in") == 1  # only rank 0 prints
    a = np.genfromtxt(single / "metrics.csv", delimiter=",", names=True)
    b = np.genfromtxt(dist / "metrics.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(a["lr"], b["lr"])
    # the same full-batch grads on both ranks: only the sharded norm's summation order differs
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5)
    import json
    summary = json.loads((dist / "summary.json").read_text())
    assert summary["ranks"] == 2 and len(summary["state_bytes_per_rank"]) == 2
    meta, _ = checkpoint.read(dist / "checkpoint" / "checkpoint.npz")
    assert meta["extra"]["step"] == 30


def test_one_rank_in_process_equals_plain_and_refuses_sparse(rng):
    from mpi4py import MPI
    from adamax_engine.parallel.mpi import DistributedAdamax
    values = [rng.standard_normal(s).astype(np.float32) for s in W.SHAPES]
    a = [ae.Parameter(v.copy(), name=f"p{i}") for i, v in enumerate(values)]
    b = [ae.Parameter(v.copy(), name=f"p{i}") for i, v in enumerate(values)]
    plain = W.make_optimizer(a, "global")
    dist = DistributedAdamax(W.make_optimizer(b, "global"), comm=MPI.COMM_SELF, shard_state=True)
    for step in range(3):
        for p, q in zip(a, b):
            p.grad = rng.standard_normal(p.shape).astype(np.float32)
            q.grad = p.grad.copy()
        plain.step()
        dist.step()
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.data, q.data)
    b[0].grad = ae.RowSparseGrad([0, 1], np.ones((2, 5), np.float32))
    with pytest.raises(TypeError, match="row-sparse grads are not supported"):
        dist.step()


@pytest.mark.skipif(not cuda_kernels.available(), reason="no CUDA GPU and no simulator")
def test_cuda_parameters_two_ranks(tmp_path, monkeypatch):
    """device='cuda': grads all-reduced (host-staged in the simulator), and ZeRO-1 on the
    device, each == one process."""
    monkeypatch.setenv("ADAMAX_WORKER_DEVICE", "cuda")
    out = tmp_path / "cuda.npz"
    run_mpi(2, out, 0, "float32", "none", 4)
    params, opt = single_process(np.dtype("float32"), "none", 2, 4)
    assert_checkpoint_equals(out, params, opt)
    # ZeRO-1 on the device, with the global norm summed across ranks
    run_mpi(2, out, 1, "float64", "global", 4)
    params, opt = single_process(np.dtype("float64"), "global", 2, 4)
    meta = assert_checkpoint_equals(out, params, opt)
    whole = sum(b.moment.nbytes + b.inf_norm.nbytes for b in opt.registry.buckets)
    assert sum(meta["extra"]["state_bytes"]) == whole


@pytest.mark.skipif(not cuda_kernels.available(), reason="no CUDA GPU and no simulator")
@pytest.mark.parametrize("state_dtype,n", [("int8", 3), ("bfloat16", 2)])
def test_cuda_low_bit_state_sharded_equals_one_process(tmp_path, monkeypatch, state_dtype, n):
    """ZeRO-1 on the device with low-bit state: each rank's slice of the codes (int8: on block
    edges, with its scales), the rounding counting from the bucket's start; the gathered
    checkpoint is one process's, bit for bit (the simulator; a GPU contracts FMAs)."""
    monkeypatch.setenv("ADAMAX_WORKER_DEVICE", "cuda")
    out = tmp_path / "cuda.npz"
    run_mpi(n, out, 1, "float32", "none", 4, state_dtype=state_dtype)
    params, opt = single_process(np.dtype("float32"), "none", n, 4, state_dtype=state_dtype)
    meta, arrays = checkpoint.read(out)
    assert meta["state_dtype"] == state_dtype
    for p in params:
        held = [arrays[f"param/{p.name}"]] + [arrays[f"{kind}/{p.name}"] for kind in (
            "moment_codes", "inf_norm_codes", "moment_scale", "inf_norm_scale")
            if f"{kind}/{p.name}" in arrays]
        want = [p.data] + [v for v in opt.parameter_codes(p) if v is not None]
        assert len(held) == len(want) == (5 if state_dtype == "int8" else 3)
        if not cuda_kernels.simulated():  # a GPU: FMA contraction can move a code
            np.testing.assert_allclose(held[0], want[0], rtol=1e-5, atol=1e-6, err_msg=p.name)
            continue
        for x, y in zip(held, want):
            np.testing.assert_array_equal(x, y, err_msg=p.name)
    assert max(meta["extra"]["state_bytes"]) < opt.state_nbytes * 0.75
