"""Run one of paddle's documentation examples twice, with paddle.optimizer.Adamax and with
adamax_engine.Adamax in its place, on paddle tensors from the same seed; compare every number."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def both(example):
    """{'paddle': results, 'engine': results}; results are lists of numbers/arrays/strings."""
    import paddle

    import adamax_engine
    paddle.set_device("cpu")
    out = {}
    for label, cls in (("paddle", paddle.optimizer.Adamax), ("engine", adamax_engine.Adamax)):
        paddle.seed(2024)
        out[label] = example(paddle, cls)
    return out


def assert_same(results):
    """Bit-equal outputs (paddle's CPU kernel and the engine's agree to the last bit here)."""
    ref, got = results["paddle"], results["engine"]
    assert len(ref) == len(got), (len(ref), len(got))
    for i, (a, b) in enumerate(zip(ref, got)):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(b, a, err_msg=f"result {i}")
        else:
            assert a == b, (i, a, b)


def main(example):
    results = both(example)
    assert_same(results)
    for line in results["engine"]:
        print(line if not isinstance(line, np.ndarray) else f"array{line.shape} sum={line.sum():.9g}")
    print("OK: adamax_engine.Adamax gives paddle.optimizer.Adamax's numbers")
