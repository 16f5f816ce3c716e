"""numba's disk cache across processes: a cached kernel loaded by another process calls the
loops it was compiled with (kernels/specialise.py says why that needs the loops' names)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from adamax_engine.kernels import cpu, lowbit, mixed
from adamax_engine.kernels.specialise import specialised

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cache_worker.py")


def _worker(tmp_path, *args):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba_cache"))
    out = subprocess.run([sys.executable, WORKER, *map(str, args)], capture_output=True,
                         text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_cached_kernel_keeps_its_flavor_when_the_loader_compiled_another(tmp_path):
    """Process 1 compiles fused_update into the cache; process 2 first compiles the torch loop
    under the uid that process 1 gave the paddle loop (numba counts uids per process from 1,
    so such meetings happen by themselves in any run of several processes; here the counter
    is set to force one), then loads fused_update from the cache and steps in paddle's
    flavor. Under one shared loop name the linker gave the cached kernel the torch loop (19
    of 317 params off); the kernel must equal the oracle bit for bit."""
    written = _worker(tmp_path, "write")
    uids = written["uids"]
    assert len(set(sum(uids.values(), []))) == 3  # three loops, one float32 signature each
    offset = _worker(tmp_path, "probe", 1000)[0] - 1000  # uids the compile takes before its own
    target = uids["paddle"][0]
    result = _worker(tmp_path, "load", target - offset)
    # the meeting happened: the same uid and argument types (the symbol's other parts)
    assert result["torch_uids"] == [target]
    assert result["torch_signatures"] == written["paddle_signatures"]
    assert result["cache_hits"] >= 1  # fused_update came from the cache
    assert result["exact"]


@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_low_bit_kernels_load_from_the_cache_and_step_the_same(tmp_path, state_dtype):
    """The low-bit kernels (closures of a factory) are found in numba's cache by the next
    process, whose steps equal the first process's bit for bit."""
    first = _worker(tmp_path, "lowbit", state_dtype)
    second = _worker(tmp_path, "lowbit", state_dtype)
    assert (first["kernels"], first["cache_hits"]) == (1, 0)
    assert (second["kernels"], second["cache_hits"]) == (1, 1)
    assert second["digest"] == first["digest"]


def _factory_functions():
    """Every specialised function the package builds, by (module, specialisation)."""
    yield from (cpu._PADDLE_FAST, cpu._PADDLE_ANY, cpu._TORCH_FAST, cpu._TORCH_ANY,
                cpu._KERAS_FAST, cpu._KERAS_ANY, mixed._FLOAT16_LOOP, mixed._BFLOAT16_LOOP)
    for flavor in (0, 1, 3):
        for stochastic in (False, True):
            for views in (lowbit.flat_chunk, lowbit.borrowed_chunk):
                yield lowbit._make_kernel(flavor, stochastic, views)
                yield lowbit._make_int8_kernel(flavor, stochastic, views)


def test_every_specialisation_compiles_under_its_own_name():
    names = [f.py_func.__qualname__ for f in _factory_functions()]
    assert len(set(names)) == len(names) == 32
    assert cpu._TORCH_FAST.py_func.__name__ == "loop__flavor_1__generic_0"
    assert max(len(f.py_func.__name__) for f in _factory_functions()) <= 64
    assert all(f.py_func.__name__.isidentifier() for f in _factory_functions())


def test_specialised_refuses_a_free_variable_it_cannot_name():
    table = np.zeros(3)

    def make():
        def f(x):
            return x + table[0]
        return f
    with pytest.raises(TypeError, match="cannot name a free variable of type ndarray"):
        specialised()(make())
