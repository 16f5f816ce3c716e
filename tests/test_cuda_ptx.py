"""Every CUDA kernel compiles for a real GPU (sm_90), without one: scripts/ptx_check.py.

The simulator (the other CUDA tests in CI) runs kernels as Python and never meets NVVM or
ptxas; this records each kernel's launch signatures in the simulator, then compiles them with
the CUDA toolkit's libNVVM and ptxas. Skipped where no CUDA toolkit is installed.
"""
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
KERNELS = {"cuda.update", "cuda.sumsq_partials", "cuda.finish_clip", "cuda.end_step",
           "cuda.count_skip", "cuda.fill", "cuda.divide", "cuda_mixed.update",
           "cuda_mixed.sumsq_partials", "cuda_mixed.widen_into", "cuda_sparse.rows_update",
           "cuda_sparse.rows_catch_up", "cuda_sparse.raise_rows", "cuda_borrow.update",
           "cuda_borrow.sumsq_partials", "cuda_lowbit.bf16_update", "cuda_lowbit.int8_update",
           "cuda_borrow.bf16_update", "cuda_borrow.int8_update", "cuda_mixed.bf16_update",
           "cuda_mixed.int8_update"}


@pytest.mark.parametrize("index", ["int64", "uint64"])  # kernels/cuda/runtime.py's Index
def test_every_cuda_kernel_compiles_for_sm90(tmp_path, index):
    env = dict(os.environ, ADAMAX_ENGINE_CUDA_INDEX=index)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "ptx_check.py"),
                          "--cc", "9.0", "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=600, env=env)
    if out.returncode == 3:
        pytest.skip("no CUDA toolkit (libNVVM) on this machine")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "ptx_report.json").read_text())
    results = report["results"]
    assert {r["kernel"] for r in results} == KERNELS  # the scenarios reach every kernel
    assert {r["dtype"] for r in results if r["kernel"] == "cuda.update"} == {"float32", "float64"}
    assert {r["dtype"] for r in results if r["kernel"] == "cuda_lowbit.int8_update"} == \
        {"float32", "float64"}
    for r in results:
        assert r["ok"], r
        if report["ptxas"]:  # SASS too: no register spills in any kernel
            assert r["registers"] and r["spill_bytes"] == 0, r
    assert len(list(tmp_path.glob("*.ptx"))) == len(results)
    # a wrapped signed index costs a 64-bit ``shr.s64 ..., 63`` (and an and and an add) per
    # access: 12 in the float32 update with signed indices; with unsigned ones the loop wraps
    # none and what is left is the chunk's table reads
    ptx = next(tmp_path.glob("cuda.update.float32.*.ptx")).read_text()
    wraps = len(re.findall(r"shr\.s64\s+%rd\d+, %rd\d+, 63;", ptx))
    assert wraps <= 2 if index == "uint64" else wraps >= 10, wraps
    assert ptx.count("ld.global.f32") >= 16  # the four-wide loop's p, g, m, u loads are there
