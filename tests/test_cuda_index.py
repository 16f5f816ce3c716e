"""The CUDA kernels' flat index type (kernels/cuda/runtime.py ``Index``): signed by default,
unsigned (no wraparound code per array access) under ADAMAX_ENGINE_CUDA_INDEX=uint64, the
variant a GPU run times against it. Both must give the same bits: each runs in its own process
(the type is read at import), in the simulator without a GPU, on the GPU with one."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from adamax_engine.kernels import cuda as K

pytestmark = pytest.mark.skipif(not K.available(), reason="no CUDA GPU and no simulator")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# three steps with a global-norm clip (the norm pass) and L2 decay, paddle flavor, float32 and
# float64 buckets; prints the index type in use and every param's values after the steps
SCRIPT = """
import json, sys
import numpy as np
import adamax_engine as ae
from adamax_engine.kernels.cuda import runtime
from numba import cuda
rng = np.random.default_rng(7)
out = {"index": runtime.INDEX_NAME}
for dtype in ("float32", "float64"):
    sizes = (7, 165, 33, 1)
    weights = [rng.standard_normal(n).astype(dtype) for n in sizes]
    params = [ae.Parameter(cuda.to_device(w)) for w in weights]
    opt = ae.Adamax(0.01, parameters=params, device="cuda", weight_decay=ae.L2Decay(1e-3),
                    grad_clip=ae.ClipGradByGlobalNorm(0.5))
    for _ in range(3):
        for p, n in zip(params, sizes):
            p.grad = cuda.to_device(rng.standard_normal(n).astype(dtype))
        opt.step()
    out[dtype] = [np.asarray(p.data.copy_to_host()).tolist() for p in params]
    out[dtype + " before"] = [w.tolist() for w in weights]
print(json.dumps(out))
"""


def _run(index=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("ADAMAX_ENGINE_CUDA_INDEX", None)
    if index is not None:
        env["ADAMAX_ENGINE_CUDA_INDEX"] = index
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=600)


def test_signed_and_unsigned_indices_give_the_same_bits():
    runs = {}
    for index in (None, "uint64"):
        out = _run(index)
        assert out.returncode == 0, out.stderr[-3000:]
        runs[index] = json.loads(out.stdout.strip().splitlines()[-1])
    assert runs[None]["index"] == "int64" and runs["uint64"]["index"] == "uint64"
    for dtype in ("float32", "float64"):
        for a, b in zip(runs[None][dtype], runs["uint64"][dtype]):
            np.testing.assert_array_equal(np.array(a, dtype), np.array(b, dtype))
        # and the steps moved every param (two runs that stepped nothing would agree too)
        for after, before in zip(runs[None][dtype], runs[None][dtype + " before"]):
            assert np.all(np.array(after, dtype) != np.array(before, dtype))


def test_an_unknown_index_type_is_one_clear_error():
    out = _run("int32")
    assert out.returncode != 0
    assert "ADAMAX_ENGINE_CUDA_INDEX: expected one of ['int64', 'uint64'], got 'int32'" \
        in out.stderr
