"""torch adapter: Adamax(parameters=model.parameters()) on CPU torch modules, adopt and borrow,
against torch.optim.Adamax (flavor="torch", within 1e-6) and against the engine on numpy."""
import numpy as np
import pytest

import adamax_engine as ae

torch = pytest.importorskip("torch")


def mlp(seed, dtype=torch.float32):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(7, 33), torch.nn.Tanh(), torch.nn.Linear(33, 5)
                               ).to(dtype)


def batch(step, dtype=torch.float32):
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(64, 7, generator=g, dtype=dtype), torch.randint(0, 5, (64,), generator=g)


def train(model, opt_step, zero, steps=30, dtype=torch.float32):
    for step in range(steps):
        x, y = batch(step, dtype)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt_step()
        zero()
    return [p.detach().numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("mode", ["adopt", "borrow"])
@pytest.mark.parametrize("set_to_none", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_matches_torch_optim_adamax(mode, set_to_none, weight_decay):
    ref_model, model = mlp(0), mlp(0)
    ref = torch.optim.Adamax(ref_model.parameters(), lr=0.01, weight_decay=weight_decay)
    opt = ae.Adamax(0.01, parameters=model.parameters(), flavor="torch", mode=mode,
                    weight_decay=weight_decay or None)
    expect = train(ref_model, ref.step, lambda: ref.zero_grad(set_to_none=set_to_none))
    got = train(model, opt.step, lambda: opt.zero_grad(set_to_none=set_to_none))
    for e, g in zip(expect, got):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6 * np.abs(e).max())


def test_adopt_repoints_storage_and_the_model_still_trains():
    model = mlp(1)
    opt = ae.Adamax(0.01, parameters=model.named_parameters())
    x, y = batch(0)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    b = opt.registry.buckets[0]
    for k, p in enumerate(model.parameters()):  # param and grad live in the flat buffers
        assert p.data_ptr() == b.params.ctypes.data + b.offsets[k] * 4
        assert p.grad.data_ptr() == b.grads.ctypes.data + b.offsets[k] * 4
    assert "0.weight_moment_0" in opt.state_dict()  # the names of named_parameters()
    ptrs = [p.grad.data_ptr() for p in model.parameters()]
    opt.clear_grad()  # set_to_zero: grads stay in place, zeroed
    assert [p.grad.data_ptr() for p in model.parameters()] == ptrs
    assert all(float(p.grad.abs().sum()) == 0 for p in model.parameters())


def test_same_numbers_as_numpy_parameters():
    """The adapter changes where memory lives, not the arithmetic: paddle flavor, bit-exact."""
    model = mlp(2)
    nps = [ae.Parameter(p.detach().numpy().copy()) for p in model.parameters()]
    opt_t = ae.Adamax(0.02, parameters=model.parameters(), weight_decay=0.01,
                      grad_clip=ae.ClipGradByValue(0.05))
    opt_n = ae.Adamax(0.02, parameters=nps, weight_decay=0.01, grad_clip=ae.ClipGradByValue(0.05))
    for step in range(5):
        x, y = batch(step)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        for p, q in zip(model.parameters(), nps):
            q.grad = p.grad.numpy().copy()
        opt_t.step()
        opt_n.step()
        opt_t.clear_grad()
    for p, q in zip(model.parameters(), nps):
        np.testing.assert_array_equal(p.detach().numpy(), q.data)


def test_bad_torch_input_names_the_parameter():
    model = mlp(3)
    opt = ae.Adamax(0.01, parameters=model.named_parameters())
    w = model[0].weight  # (torch itself refuses a grad of another shape or dtype)
    before = w.detach().clone()
    w.grad = torch.ones(7, 33).t()
    with pytest.raises(ValueError, match="0.weight.grad: expected a contiguous tensor"):
        opt.step()
    assert torch.equal(w.detach(), before)
    with pytest.raises(TypeError, match="param_0.data: bfloat16 parameters need "
                                        "multi_precision=True"):
        ae.Adamax(0.01, parameters=[torch.nn.Parameter(torch.zeros(3, dtype=torch.bfloat16))])
    with pytest.raises(TypeError, match="expected dtype float32, float64, float16 or bfloat16, "
                                        "got int32"):
        ae.Adamax(0.01, parameters=[torch.zeros(3, dtype=torch.int32).requires_grad_(False)])


def test_frozen_parameters_are_skipped():
    model = mlp(4)
    model[0].weight.requires_grad_(False)
    before = model[0].weight.detach().clone()
    opt = ae.Adamax(0.1, parameters=model.parameters())
    x, y = batch(0)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert torch.equal(model[0].weight.detach(), before)
    assert not torch.equal(model[2].weight.detach(), mlp(4)[2].weight.detach())


def test_changes_between_steps_are_noticed():
    """The per-step address snapshot must see: a frozen param, a grad set to None, new data."""
    model = mlp(5)
    opt = ae.Adamax(0.1, parameters=model.parameters())

    def step():
        x, y = batch(0)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    w = model[0].weight
    w.requires_grad_(False)
    w.grad = None
    frozen = w.detach().clone()
    step()
    assert torch.equal(w.detach(), frozen)
    w.requires_grad_(True)
    with torch.no_grad():
        w.data = torch.full_like(w, 0.5)  # a new tensor: copied into the flat buffer at the step
    opt.zero_grad(set_to_none=True)
    step()
    b = opt.registry.buckets[0]
    assert w.data_ptr() == b.params.ctypes.data + b.offsets[0] * 4
    assert not torch.equal(w.detach(), torch.full_like(w, 0.5))
    assert float((w.detach() - 0.5).abs().max()) <= 0.1 + 1e-6  # one step of at most lr


def test_a_parameter_without_grad_keeps_the_fast_path_correct():
    model = mlp(6)
    opt = ae.Adamax(0.1, parameters=model.parameters())
    last = model[2].bias
    for step in range(3):
        x, y = batch(step)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        last.grad = None  # this one never has a grad: skipped every step
        before = last.detach().clone()
        w_before = model[0].weight.detach().clone()
        opt.step()
        assert torch.equal(last.detach(), before)
        assert not torch.equal(model[0].weight.detach(), w_before)
    # grads stay where they are and the bias stays without one: the next step's look at the
    # addresses finds nothing moved (the fast path), which must not lose the skip
    assert opt.registry._unchanged()

