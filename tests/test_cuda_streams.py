"""Adamax(device="cuda", stream=...): every step fenced against the trainer's stream.

In numba's simulator (CI) streams and events exist but do nothing, so these tests check the
plumbing: the fence's order around the step's work, the accepted values, the errors, and that
results do not change. The last test runs torch on a side stream on a real GPU.
"""
import sys
import types

import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine.step import streams
from adamax_engine.kernels import cuda as K

pytestmark = pytest.mark.skipif(not K.available(), reason="no CUDA GPU and no simulator")
SHAPES = [(3, 5), (7,), (2, 2, 3)]


def cuda():
    from numba import cuda as c
    return c


def make(rng, **kw):
    values = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    params = [ae.Parameter(cuda().to_device(v)) for v in values]
    return params, ae.Adamax(0.1, parameters=params, device="cuda", weight_decay=0.01,
                             grad_clip=ae.ClipGradByGlobalNorm(1.0), **kw)


class Spy:
    """Stands in for a numba event: logs record/wait with the stream's name."""

    def __init__(self, name, log, names):
        self.name, self.log, self.names = name, log, names

    def record(self, stream):
        self.log.append((self.name, "record", self.names[id(stream)]))

    def wait(self, stream):
        self.log.append((self.name, "wait", self.names[id(stream)]))


def spy_on(opt, theirs, log):
    fence = opt.stepper.fenced()
    names = {id(theirs): "theirs", id(fence._ours): "ours"}
    fence._ready, fence._done = Spy("ready", log, names), Spy("done", log, names)
    step = opt.stepper.dense_step

    def logged(*args, **kw):
        log.append("step")
        return step(*args, **kw)
    opt.stepper.dense_step = logged


def test_numba_stream_fences_each_step_and_changes_no_result(rng):
    params, opt = make(np.random.default_rng(7), stream=cuda().stream())
    twins, plain = make(np.random.default_rng(7))
    theirs, log = opt.stepper.fenced()._source(), []
    spy_on(opt, theirs, log)
    for _ in range(3):
        for p, t in zip(params, twins):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad, t.grad = cuda().to_device(g), cuda().to_device(g)
        opt.step()
        plain.step()
    fenced = [("ready", "record", "theirs"), ("ready", "wait", "ours"), "step",
              ("done", "record", "ours"), ("done", "wait", "theirs")]
    assert log == fenced * 3
    for p, t in zip(params, twins):
        np.testing.assert_array_equal(p.numpy(), t.numpy())
    log.clear()
    opt.clear_grad()  # its zero fill runs on our stream too: fenced
    assert log == [fenced[0], fenced[1], fenced[3], fenced[4]]


def test_framework_current_stream_is_asked_every_step(rng, monkeypatch):
    """stream="torch": torch.cuda.current_stream() at each step; handle 0 (the default
    stream) needs no fence, another handle is wrapped by numba.cuda.external_stream."""
    handles = [0]
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        current_stream=lambda: types.SimpleNamespace(cuda_stream=handles[0])))
    monkeypatch.setitem(sys.modules, "torch", fake)
    params, opt = make(rng, stream="torch")
    for p in params:
        p.grad = cuda().to_device(rng.standard_normal(p.shape).astype(np.float32))
    log = []
    spy_on(opt, None, log)
    opt.step()
    assert log == ["step"]  # the default stream: nothing to fence
    wrapped = object()
    monkeypatch.setattr(streams, "_EXTERNAL", {1234: wrapped})
    handles[0] = 1234
    opt.stepper.fenced()._ready.names[id(wrapped)] = "theirs"
    log.clear()
    opt.step()
    assert log == [("ready", "record", "theirs"), ("ready", "wait", "ours"), "step",
                   ("done", "record", "ours"), ("done", "wait", "theirs")]


def test_stream_errors_change_nothing(rng):
    values = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    host = [ae.Parameter(v.copy()) for v in values]
    with pytest.raises(ValueError, match="stream: only for device='cuda', got device='cpu'"):
        ae.Adamax(0.1, parameters=host, stream="torch")
    np.testing.assert_array_equal(host[0].data, values[0])
    dev = [ae.Parameter(cuda().to_device(v)) for v in values]
    for bad in ("tensorflow", 1.5, True, [1]):
        with pytest.raises(TypeError, match="stream: expected 'torch', 'cupy'"):
            ae.Adamax(0.1, parameters=dev, device="cuda", stream=bad)
    if K.simulated():  # no foreign streams in the simulator: said, not silently ignored
        with pytest.raises(ValueError, match="stream: a framework's CUDA stream needs a real GPU"):
            ae.Adamax(0.1, parameters=dev, device="cuda", stream=1234)
    np.testing.assert_array_equal(dev[0].numpy(), values[0])


def test_torch_side_stream_training_matches_the_default_stream(rng):
    """Real GPU: torch computes grads on a side stream (non-blocking: it does not order with
    numba's default stream); stream="torch" makes the engine's steps follow it."""
    torch = pytest.importorskip("torch")
    if K.simulated() or not torch.cuda.is_available():
        pytest.skip("needs torch with a real CUDA GPU")
    x = torch.tensor(rng.standard_normal((4096, 256)).astype(np.float32), device="cuda")
    w0 = rng.standard_normal((256, 256)).astype(np.float32) * 0.05

    def train(side):
        p = ae.Parameter(cuda().to_device(w0))
        opt = ae.Adamax(0.01, parameters=[p], device="cuda", stream="torch" if side else None)
        w = torch.as_tensor(p.data, device="cuda").requires_grad_()  # the engine's buffer
        s = torch.cuda.Stream() if side else torch.cuda.current_stream()
        with torch.cuda.stream(s):
            for _ in range(20):
                w.grad = None
                (x @ w).pow(2).mean().backward()
                p.grad = w.grad
                opt.step()
        torch.cuda.synchronize()
        return p.numpy()
    np.testing.assert_allclose(train(side=True), train(side=False), rtol=1e-6, atol=1e-7)
