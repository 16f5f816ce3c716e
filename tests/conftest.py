import os
import shutil
import zlib

# No GPU here: the CUDA tests run in numba's simulator. Set before anything imports numba.
if "NUMBA_ENABLE_CUDASIM" not in os.environ and not (
        shutil.which("nvidia-smi") or os.path.exists("/dev/nvidiactl")):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """Fresh random inputs per test, reproducible from the test's name."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)
