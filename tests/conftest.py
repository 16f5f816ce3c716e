import os
import shutil
import tempfile
import zlib

# No GPU here: the CUDA tests run in numba's simulator. Set before anything imports numba.
if "NUMBA_ENABLE_CUDASIM" not in os.environ and not (
        shutil.which("nvidia-smi") or os.path.exists("/dev/nvidiactl")):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

# pytest-xdist: a numba disk cache per worker (subprocesses inherit it). Two processes saving
# new signatures of one kernel at the same moment can leave numba's index naming the other's
# file (numba.core.caching takes no lock and checks no key on load).
if "PYTEST_XDIST_WORKER" in os.environ and "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(
        tempfile.gettempdir(), f"adamax-engine-numba-{os.environ['PYTEST_XDIST_WORKER']}")

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """Fresh random inputs per test, reproducible from the test's name."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)
