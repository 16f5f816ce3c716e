"""flavor="torch" against real torch.optim.Adamax (skipped when torch is not installed)."""
import numpy as np
import pytest

import adamax_engine as ae

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("foreach", [False, True])
def test_torch_flavor_matches_torch_adamax(rng, weight_decay, foreach):
    shapes = [(4, 5), (1,), (33,), (2, 3, 2)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    tparams = [torch.tensor(x.copy(), requires_grad=True) for x in init]
    aparams = [ae.Parameter(x.copy()) for x in init]
    topt = torch.optim.Adamax(tparams, lr=0.01, betas=(0.8, 0.99), eps=1e-3,
                              weight_decay=weight_decay, foreach=foreach)
    aopt = ae.Adamax(0.01, beta1=0.8, beta2=0.99, epsilon=1e-3, parameters=aparams,
                     weight_decay=weight_decay or None, flavor="torch")
    for _ in range(30):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        for t, a, g in zip(tparams, aparams, grads):
            t.grad = torch.from_numpy(g.copy())
            a.grad = g
        topt.step()
        aopt.step()
    for t, a in zip(tparams, aparams):
        np.testing.assert_allclose(a.data, t.detach().numpy(), rtol=1e-6, atol=1e-7)
