"""Framework tensors on the GPU: torch CUDA tensors and modules, cupy arrays.

These need a real GPU with torch (CUDA build) or cupy: numba's simulator has no CUDA Array
Interface, so in CI they skip; scripts/gpu_check.sh runs them on a lent GPU.
"""
import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine.kernels import cuda as K

pytestmark = pytest.mark.skipif(not K.available(), reason="no CUDA GPU and no simulator")
SIM = K.simulated()
SHAPES = [(512, 1024), (1024,), (3, 77, 5), (1,), (70001,)]  # (test_cuda.py's, on a GPU)


def test_torch_cuda_tensors_flavor_torch(rng):
    """Parameters made from torch CUDA tensors (zero-copy through __cuda_array_interface__),
    flavor="torch", against torch.optim.Adamax on the same CUDA tensors: within 1e-6."""
    torch = pytest.importorskip("torch")
    if SIM or not torch.cuda.is_available():
        pytest.skip("needs torch with a real CUDA GPU (the simulator has no CUDA Array Interface)")
    values = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    theirs = [torch.nn.Parameter(torch.tensor(v, device="cuda")) for v in values]
    ours = [ae.Parameter(torch.tensor(v, device="cuda")) for v in values]
    opt_t = torch.optim.Adamax(theirs, lr=0.01, weight_decay=0.01, foreach=True)
    opt_e = ae.Adamax(0.01, parameters=ours, weight_decay=0.01, flavor="torch", device="cuda")
    for _ in range(10):
        for t, e in zip(theirs, ours):
            g = torch.randn_like(t)
            t.grad = g.clone()
            e.grad = g
        opt_t.step()
        opt_e.step()
    for t, e in zip(theirs, ours):
        expect = t.detach().cpu().numpy()
        np.testing.assert_allclose(e.numpy(), expect, rtol=1e-6, atol=1e-6 * np.abs(expect).max())


@pytest.mark.parametrize("mode", ["adopt", "borrow"])
def test_torch_cuda_module(rng, mode):
    """Adamax(model.parameters(), device="cuda") on a torch CUDA model. adopt: params and grads
    become views of the flat device buffers (backward accumulates into them), new grad tensors
    after zero_grad(set_to_none=True) are copied in; borrow: torch's own memory is stepped
    through address tables. Numbers equal torch.optim.Adamax (flavor torch)."""
    torch = pytest.importorskip("torch")
    if SIM or not torch.cuda.is_available():
        pytest.skip("needs torch with a real CUDA GPU (the simulator has no CUDA Array Interface)")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(33, 65), torch.nn.Tanh(), torch.nn.Linear(65, 7))
    twin = torch.nn.Sequential(torch.nn.Linear(33, 65), torch.nn.Tanh(), torch.nn.Linear(65, 7))
    twin.load_state_dict(model.state_dict())
    model, twin = model.cuda(), twin.cuda()
    before = [p.data_ptr() for p in model.parameters()]
    opt = ae.Adamax(0.01, parameters=model.parameters(), device="cuda", flavor="torch",
                    weight_decay=0.01, mode=mode)
    ref = torch.optim.Adamax(twin.parameters(), lr=0.01, weight_decay=0.01)
    b = opt.registry.buckets[0]
    if mode == "adopt":  # the module's own tensors are our flat buffer now
        start = b.params.__cuda_array_interface__["data"][0]
        for p in model.parameters():
            assert start <= p.data_ptr() < start + b.params.size * 4
    else:  # borrowed: stepped where they are
        assert [p.data_ptr() for p in model.parameters()] == before
    x = torch.randn(128, 33, device="cuda")
    y = torch.randint(0, 7, (128,), device="cuda")
    for step in range(12):
        for m, o in ((model, opt), (twin, ref)):
            o.zero_grad(set_to_none=step % 2 == 0)  # new grad tensors every other step
            torch.nn.functional.cross_entropy(m(x), y).backward()
            o.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        expect = q.detach().cpu().numpy()
        np.testing.assert_allclose(p.detach().cpu().numpy(), expect, rtol=1e-5,
                                   atol=1e-6 * np.abs(expect).max())
    with pytest.raises(ValueError, match="is a cuda array but device='cpu'"):
        ae.Adamax(0.01, parameters=twin.parameters())


def test_cupy_arrays_on_cupys_stream(rng):
    """cupy arrays as Parameters (zero-copy through __cuda_array_interface__), cupy's current
    stream fenced (stream="cupy"), against the same optimizer on the host."""
    cupy = pytest.importorskip("cupy")
    if SIM:
        pytest.skip("needs a real CUDA GPU (the simulator has no CUDA Array Interface)")
    values = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    kw = dict(weight_decay=ae.L2Decay(0.01), grad_clip=ae.ClipGradByGlobalNorm(1.0))
    dev = [ae.Parameter(cupy.asarray(v)) for v in values]
    host = [ae.Parameter(v.copy()) for v in values]
    opt_d = ae.Adamax(0.01, parameters=dev, device="cuda", stream="cupy", **kw)
    opt_h = ae.Adamax(0.01, parameters=host, **kw)
    with cupy.cuda.Stream(non_blocking=True):
        for _ in range(5):
            for d, h in zip(dev, host):
                g = rng.standard_normal(h.data.shape).astype(np.float32)
                d.grad, h.grad = cupy.asarray(g) * 1, g  # (made on cupy's side stream)
            opt_d.step()
            opt_h.step()
    for d, h in zip(dev, host):
        np.testing.assert_allclose(d.numpy(), h.data, rtol=1e-5, atol=1e-6)
