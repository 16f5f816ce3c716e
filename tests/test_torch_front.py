"""adamax_engine.torch.Adamax against torch.optim.Adamax: the contract of torch's own optimizer
tests (test_optim.py driven by common_optimizers' Adamax entry) with the class swapped: the
for-loop and foreach implementations match it on params and every state entry, per-group
options, schedulers, state_dict round trips both ways, hooks, closures, errors, GradScaler."""
import io
import math

import pytest

torch = pytest.importorskip("torch")
from adamax_engine.torch import Adamax  # noqa: E402

# torch's own tolerance between its for-loop and foreach paths is of this order
TOL = dict(rtol=2e-6, atol=2e-7)


def model(seed=0, bias=True):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 9, bias=bias), torch.nn.Tanh(),
                               torch.nn.Linear(9, 3, bias=bias))


def data(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(24, 6, generator=g), torch.randn(24, 3, generator=g)


def train(make_opt, steps=15, sched=None, set_to_none=True, seed=0, closure=False,
          freeze=None):
    m = model(seed)
    if freeze is not None:
        m[freeze].weight.requires_grad_(False)
    opt = make_opt(m)
    s = sched(opt) if sched else None
    x, y = data()
    for _ in range(steps):
        def loss_fn():
            opt.zero_grad(set_to_none=set_to_none)
            loss = torch.nn.functional.mse_loss(m(x), y)
            loss.backward()
            return loss
        if closure:
            loss = opt.step(loss_fn)
            assert isinstance(loss, torch.Tensor)
        else:
            loss_fn()
            opt.step()
        if s is not None:
            s.step()
    return m, opt


def assert_same(ours, theirs):
    (m1, o1), (m2, o2) = ours, theirs
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, **TOL)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        s1, s2 = o1.state.get(p1, {}), o2.state.get(p2, {})
        assert bool(s1) == bool(s2)
        if s2:
            assert int(s1["step"]) == int(s2["step"])
            torch.testing.assert_close(s1["exp_avg"], s2["exp_avg"], **TOL)
            torch.testing.assert_close(s1["exp_inf"], s2["exp_inf"], **TOL)


# the Adamax entry of torch's common_optimizers, plus this package's per-group cases
CONFIGS = {
    "default": {},
    "non-default lr": {"lr": 0.001},
    "nonzero weight_decay": {"weight_decay": 0.9},
    "maximize": {"weight_decay": 0.9, "maximize": True},
    "betas and eps": {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-3},
    "tensor lr": {"lr": torch.tensor(0.01)},
}


@pytest.mark.parametrize("mode", ["adopt", "borrow"])
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_torch_forloop_and_foreach(name, foreach, mode):
    kwargs = CONFIGS[name]
    if foreach and isinstance(kwargs.get("lr"), torch.Tensor):
        pytest.skip("torch refuses a tensor lr with foreach=True")
    ours = train(lambda m: Adamax(m.parameters(), mode=mode, **kwargs))
    theirs = train(lambda m: torch.optim.Adamax(m.parameters(), foreach=foreach, **kwargs))
    assert_same(ours, theirs)


def test_per_group_options_and_frozen_parameters():
    def groups(m):
        return [{"params": m[0].parameters(), "lr": 0.03, "betas": (0.7, 0.9)},
                {"params": m[2].parameters(), "weight_decay": 0.1, "eps": 1e-4}]
    ours = train(lambda m: Adamax(groups(m), lr=0.01), freeze=2)
    theirs = train(lambda m: torch.optim.Adamax(groups(m), lr=0.01), freeze=2)
    assert_same(ours, theirs)
    m, opt = ours
    assert m[2].weight not in opt.state and m[2].bias in opt.state  # no grad, no step


def test_a_parameter_without_grad_is_skipped_not_stepped_with_zeros():
    m = model()
    opt = Adamax(m.parameters(), lr=0.1)
    x, y = data()
    torch.nn.functional.mse_loss(m(x), y).backward()
    opt.step()
    before = m[0].weight.detach().clone()
    opt.zero_grad()  # set_to_none=True: torch's default
    m[2](torch.tanh(m[0](x).detach())).sum().backward()  # only the last layer gets grads
    opt.step()
    assert m[0].weight.grad is None and torch.equal(m[0].weight, before)
    assert int(opt.state[m[0].weight]["step"]) == 1 and int(opt.state[m[2].weight]["step"]) == 2


@pytest.mark.parametrize("sched", [
    lambda o: torch.optim.lr_scheduler.StepLR(o, 4, gamma=0.5),
    lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=15),
    lambda o: torch.optim.lr_scheduler.CyclicLR(o, 0.001, 0.05, step_size_up=3,
                                                cycle_momentum=True, base_momentum=0.8,
                                                max_momentum=0.95),
    lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda k: 1.0 / (1 + k)),
    lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=5),
    lambda o: torch.optim.lr_scheduler.SequentialLR(
        o, [torch.optim.lr_scheduler.LinearLR(o, 0.1, total_iters=5),
            torch.optim.lr_scheduler.ExponentialLR(o, 0.9)], milestones=[5]),
], ids=["StepLR", "OneCycleLR", "CyclicLR-momentum", "LambdaLR", "WarmRestarts", "Sequential"])
def test_torch_lr_schedulers_drive_it(sched):
    ours = train(lambda m: Adamax(m.parameters(), lr=0.02), sched=sched)
    theirs = train(lambda m: torch.optim.Adamax(m.parameters(), lr=0.02), sched=sched)
    assert_same(ours, theirs)
    assert ours[1].param_groups[0]["lr"] == theirs[1].param_groups[0]["lr"]


def test_one_cycle_momentum_really_moves_beta1():
    _, opt = train(lambda m: Adamax(m.parameters(), lr=0.02), steps=5,
                   sched=lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.05, total_steps=15))
    assert opt.param_groups[0]["betas"][0] < 0.95  # cycled down from max_momentum
    assert opt.engine.settings.groups[0]["beta1"] != 0.9  # the core follows the cycle
    m2, o2 = train(lambda m: Adamax(m.parameters(), lr=0.02), steps=5)
    m1 = train(lambda m: Adamax(m.parameters(), lr=0.02), steps=5,
               sched=lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.05, total_steps=15))[0]
    assert not torch.equal(m1[0].weight, m2[0].weight)


def test_reduce_on_plateau_with_a_tensor_metric():
    m = model()
    opt = Adamax(m.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    for _ in range(3):
        sched.step(torch.tensor(1.0))  # no improvement
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)


def test_closure_returns_the_loss_and_hooks_run():
    calls = []
    m = model()
    opt = Adamax(m.parameters())
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    opt.register_state_dict_pre_hook(lambda o: calls.append("sd-pre"))
    opt.register_state_dict_post_hook(lambda o, sd: sd.update(extra=1))
    opt.register_load_state_dict_pre_hook(lambda o, sd: calls.append("load-pre"))
    opt.register_load_state_dict_post_hook(lambda o: calls.append("load-post"))
    x, y = data()

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(m(x), y)
        loss.backward()
        return loss
    loss = opt.step(closure)
    assert loss.item() > 0 and calls == ["pre", "post"]
    sd = opt.state_dict()
    assert sd["extra"] == 1 and calls[-1] == "sd-pre"
    del sd["extra"]
    opt.load_state_dict(sd)
    assert calls[-2:] == ["load-pre", "load-post"]


def test_state_holds_live_views_of_the_engine_buffers():
    m, opt = train(lambda m: Adamax(m.parameters(), lr=0.01), steps=2)
    p = m[0].weight
    s = opt.state[p]
    moment, inf_norm, _, steps, _ = opt.engine.parameter_state(p)[0]
    assert s["exp_avg"].data_ptr() == moment.ctypes.data
    assert s["exp_inf"].data_ptr() == inf_norm.ctypes.data
    assert s["step"].dim() == 0 and int(s["step"]) == 2
    x, y = data()
    opt.zero_grad()
    torch.nn.functional.mse_loss(m(x), y).backward()
    before = s["exp_avg"].clone()
    opt.step()
    assert int(s["step"]) == 3 and not torch.equal(before, s["exp_avg"])  # the same tensors


def _roundtrip(sd):
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _continue(m, opt, steps=5):
    x, y = data(7)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(m(x), y).backward()
        opt.step()
    return m


def test_state_dict_roundtrip_resumes_bit_identically():
    full_m, full_o = train(lambda m: Adamax(m.parameters(), lr=0.01, weight_decay=0.01),
                           steps=10)
    _continue(full_m, full_o)
    m, o = train(lambda m: Adamax(m.parameters(), lr=0.01, weight_decay=0.01), steps=10)
    sd = _roundtrip(o.state_dict())
    assert sd["state"][0]["step"].dtype == torch.float32 and sd["state"][0]["step"].dim() == 0
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_inf"}
    fresh_m = model()
    fresh_m.load_state_dict(m.state_dict())
    fresh_o = Adamax(fresh_m.parameters(), lr=0.5)
    fresh_o.load_state_dict(sd)
    assert fresh_o.param_groups[0]["lr"] == 0.01  # the groups come back too
    _continue(fresh_m, fresh_o)
    for a, b in zip(fresh_m.parameters(), full_m.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("direction", ["ours->torch", "torch->ours"])
def test_state_dicts_load_across_torch_optim_adamax(direction):
    make_ours = lambda m: Adamax(m.parameters(), lr=0.01)  # noqa: E731
    make_torch = lambda m: torch.optim.Adamax(m.parameters(), lr=0.01)  # noqa: E731
    first, second = (make_ours, make_torch) if direction == "ours->torch" else \
        (make_torch, make_ours)
    m, o = train(first, steps=8)
    sd = _roundtrip(o.state_dict())
    m2 = model()
    m2.load_state_dict(m.state_dict())
    o2 = second(m2)
    o2.load_state_dict(sd)
    ref_m, ref_o = train(make_torch, steps=8)
    _continue(m2, o2)
    _continue(ref_m, ref_o)
    for a, b in zip(m2.parameters(), ref_m.parameters()):
        torch.testing.assert_close(a, b, **TOL)


def test_a_bad_state_dict_changes_nothing():
    m, opt = train(lambda m: Adamax(m.parameters(), lr=0.01), steps=3)
    sd = opt.state_dict()
    good = {k: v.clone() for k, v in opt.state[m[0].weight].items()}
    bad = {"state": {**sd["state"], 0: {**sd["state"][0], "exp_avg": torch.zeros(2, 2)}},
           "param_groups": sd["param_groups"]}
    with pytest.raises(ValueError, match=r"state\[0\]\['exp_avg'\]: expected a tensor of shape"):
        opt.load_state_dict(bad)
    bad["state"][0] = {**sd["state"][0], "step": torch.tensor(-1.0)}
    with pytest.raises(ValueError, match=r"state\[0\]\['step'\]: expected a whole number"):
        opt.load_state_dict(bad)
    for k, v in good.items():
        assert torch.equal(opt.state[m[0].weight][k], v)
    assert opt.param_groups[0]["lr"] == 0.01


def test_add_param_group_keeps_the_state_of_the_others():
    m = model()
    opt = Adamax(m[0].parameters(), lr=0.01)
    m_ref = model()
    ref = torch.optim.Adamax(m_ref[0].parameters(), lr=0.01)
    x, y = data()
    for step in range(6):
        if step == 3:
            opt.add_param_group({"params": m[2].parameters(), "lr": 0.02})
            ref.add_param_group({"params": m_ref[2].parameters(), "lr": 0.02})
        for mm, oo in ((m, opt), (m_ref, ref)):
            oo.zero_grad()
            torch.nn.functional.mse_loss(mm(x), y).backward()
            oo.step()
    assert_same((m, opt), (m_ref, ref))
    assert int(opt.state[m[0].weight]["step"]) == 6 and int(opt.state[m[2].weight]["step"]) == 3


def test_clip_grad_norm_and_grad_scaler():
    def scaled(make):
        m = model()
        opt = make(m)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, enabled=True)
        x, y = data()
        skipped = 0
        for step in range(8):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(m(x), y)
            if step == 3:
                loss = loss * float("inf")  # an overflowing step: the scaler skips it
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5)
            scale = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
            skipped += scaler.get_scale() < scale
        return m, opt, skipped
    m1, o1, s1 = scaled(lambda m: Adamax(m.parameters(), lr=0.01))
    m2, o2, s2 = scaled(lambda m: torch.optim.Adamax(m.parameters(), lr=0.01))
    assert s1 == s2 == 1
    assert_same((m1, o1), (m2, o2))
    assert int(o1.state[m1[0].weight]["step"]) == 7  # the skipped step is not counted


def test_non_contiguous_and_named_parameters():
    w = torch.nn.Parameter(torch.randn(5, 4).t())  # a transposed view: not contiguous
    assert not w.is_contiguous()
    w_ref = torch.nn.Parameter(w.detach().clone())
    opt = Adamax([("w", w)], lr=0.1)
    ref = torch.optim.Adamax([w_ref], lr=0.1)
    for _ in range(3):
        for p, o in ((w, opt), (w_ref, ref)):
            o.zero_grad()
            (p * torch.arange(20.0).reshape(4, 5)).sum().backward()
            o.step()
    torch.testing.assert_close(w, w_ref, **TOL)
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["w"]
    assert opt.engine.registry.entries[0].name == "w"


def test_torch_compiled_model_trains():
    m = model()
    compiled = torch.compile(m, backend="aot_eager")
    opt = Adamax(m.parameters(), lr=0.05)
    x, y = data()
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(compiled(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("kwargs,error,match", [
    ({"lr": -1.0}, ValueError, "Invalid learning rate: -1.0"),
    ({"eps": -1e-8}, ValueError, "Invalid epsilon value: -1e-08"),
    ({"betas": (1.0, 0.9)}, ValueError, "Invalid beta parameter at index 0: 1.0"),
    ({"lr": 1e-2, "betas": (0.0, 1.0)}, ValueError, "Invalid beta parameter at index 1: 1.0"),
    ({"weight_decay": -1}, ValueError, "Invalid weight_decay value: -1"),
    ({"lr": torch.tensor([0.1, 0.2])}, ValueError, "Tensor lr must be 1-element"),
    ({"capturable": True}, ValueError, "capturable=True .* not supported"),
    ({"differentiable": True}, ValueError, "differentiable=True is not supported"),
])
def test_invalid_arguments_raise_torchs_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        Adamax(model().parameters(), **kwargs)


def test_invalid_parameters():
    p = torch.nn.Parameter(torch.randn(3))
    with pytest.raises(TypeError, match="params argument given to the optimizer should be an "
                                        "iterable of Tensors or dicts"):
        Adamax(p)
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter "
                                         "group"):
        Adamax([{"params": [p]}, {"params": [p]}])
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        Adamax([])
    with pytest.raises(TypeError, match="complex parameters are not supported"):
        Adamax([torch.nn.Parameter(torch.zeros(2, dtype=torch.cfloat))])
    opt = Adamax([p])
    opt.param_groups[0]["betas"] = (1.5, 0.9)  # a bad value set later is refused at the step
    p.grad = torch.ones(3)
    before = p.detach().clone()
    with pytest.raises(ValueError, match="beta1"):
        opt.step()
    assert torch.equal(p, before)


def test_goes_downhill_on_rosenbrock_like_torch():
    def run(cls):
        xy = torch.nn.Parameter(torch.tensor([-1.5, 2.0]))
        opt = cls([xy], lr=0.02)
        losses = []
        for _ in range(1000):
            opt.zero_grad()
            loss = (1 - xy[0]) ** 2 + 100 * (xy[1] - xy[0] ** 2) ** 2
            losses.append(loss.item())
            loss.backward()
            opt.step()
        return xy.detach(), losses
    ours, ours_losses = run(Adamax)
    theirs, _ = run(torch.optim.Adamax)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    assert ours_losses[-1] < 0.5 * ours_losses[0] and math.isfinite(ours_losses[-1])


def test_bfloat16_parameters_on_float32_masters():
    torch.manual_seed(0)
    w16 = torch.nn.Parameter(torch.randn(33).to(torch.bfloat16))
    w32 = torch.nn.Parameter(w16.detach().float())  # the master starts from the 16-bit value
    opt = Adamax([w16], lr=0.01, multi_precision=True)
    ref = torch.optim.Adamax([w32], lr=0.01)
    g = torch.randn(33)
    for _ in range(5):
        w16.grad = g.to(torch.bfloat16)
        w32.grad = g.to(torch.bfloat16).float()  # the same (widened) grad
        opt.step()
        ref.step()
    master = opt.state[w16]["master"]
    assert master.dtype == torch.float32 and w16.dtype == torch.bfloat16
    torch.testing.assert_close(master, w32.detach(), **TOL)
    assert torch.equal(w16.detach(), master.to(torch.bfloat16))  # rounded to nearest even


def test_paddle_flavor_in_the_torch_front_keeps_beta1_pow():
    m, opt = train(lambda m: Adamax(m.parameters(), lr=0.01, flavor="paddle"), steps=4)
    s = opt.state[m[0].weight]
    assert float(s["beta1_pow"][0]) == pytest.approx(0.9 ** 5, rel=1e-6)  # paddle's T+1 power
    sd = opt.state_dict()
    m2 = model()
    m2.load_state_dict(m.state_dict())
    o2 = Adamax(m2.parameters(), lr=0.01, flavor="paddle")
    o2.load_state_dict(sd)
    _continue(m, opt)
    _continue(m2, o2)
    for a, b in zip(m.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_pickling_says_to_use_the_state_dict():
    import copy
    opt = Adamax(model().parameters())
    with pytest.raises(TypeError, match="save opt.state_dict"):
        copy.deepcopy(opt)


def test_a_refused_param_group_leaves_the_optimizer_as_it_was():
    m = model()
    opt = Adamax(m[0].parameters(), lr=0.01)
    x, y = data()
    torch.nn.functional.mse_loss(m(x), y).backward()
    opt.step()
    before = {k: v.clone() for k, v in opt.state[m[0].weight].items()}
    with pytest.raises(TypeError, match="complex parameters"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.cfloat))]})
    assert len(opt.param_groups) == 1
    opt.step()  # still steps, with its state
    assert int(opt.state[m[0].weight]["step"]) == 2 and not torch.equal(
        before["exp_avg"], opt.state[m[0].weight]["exp_avg"])
