import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """Fresh random inputs per test, reproducible from the test's name."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)
