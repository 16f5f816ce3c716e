"""Low-bit state through the torch front (``adamax_engine.torch.Adamax(state_dtype=...)``): the
same bits as the engine core with the same settings; ``state`` holds the state as held
(bfloat16 tensors, or int8/uint8 codes with per-block scales); state dicts reload exactly,
load across state dtypes (and from / into torch.optim.Adamax) by value; bad codes are refused
with one line and nothing changed."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import adamax_engine as ae  # noqa: E402
from adamax_engine.kernels import lowbit_reference as R  # noqa: E402
from adamax_engine.torch import Adamax  # noqa: E402

SHAPES = [(33, 17), (700,), (3, 5, 7), (1,)]


def make(state_dtype, seed=0, lr=0.01, **kw):
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in SHAPES]
    return params, Adamax(params, lr=lr, state_dtype=state_dtype, **kw)


def run(params, opt, steps, first=0, scheduler=None):
    for step in range(first, first + steps):
        g = torch.Generator().manual_seed(100 + step)
        for p in params:
            p.grad = torch.randn(p.shape, generator=g) * 10.0 ** (step % 3 - 1)
        opt.step()
        if scheduler is not None:
            scheduler.step()


@pytest.mark.parametrize("mode,rounding", [("adopt", "stochastic"), ("adopt", "nearest"),
                                           ("borrow", "stochastic")])
@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_front_equals_the_engine_core_bit_for_bit(state_dtype, mode, rounding):
    params, opt = make(state_dtype, state_rounding=rounding, weight_decay=0.01, mode=mode)
    assert opt.engine.registry.buckets[0].mode == mode
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    mine = [ae.Parameter(p.detach().numpy().copy(), name=f"p{i}") for i, p in enumerate(params)]
    core = ae.Adamax(0.01, parameters=mine, flavor="torch", weight_decay=0.01,
                     state_dtype=state_dtype, state_rounding=rounding)
    for step in range(5):
        g = torch.Generator().manual_seed(100 + step)
        for p, q in zip(params, mine):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.numpy().copy()
        opt.step()
        sched.step()
        core.step()
        core.set_lr(sched.get_last_lr()[0])
    for p, q in zip(params, mine):
        np.testing.assert_array_equal(p.detach().numpy(), q.data)
    for p, q in zip(params, mine):
        held = [c.copy() if c is not None else None for c in core.parameter_codes(q)]
        s = opt.state[p]
        if state_dtype == "bfloat16":
            assert s["exp_avg"].dtype == torch.bfloat16
            np.testing.assert_array_equal(s["exp_avg"].view(torch.int16).numpy().view(np.uint16),
                                          held[0])
            np.testing.assert_array_equal(s["exp_inf"].view(torch.int16).numpy().view(np.uint16),
                                          held[1])
        else:
            assert (s["exp_avg"].dtype, s["exp_inf"].dtype) == (torch.int8, torch.uint8)
            for key, h in zip(("exp_avg", "exp_inf", "exp_avg_scale", "exp_inf_scale"), held):
                np.testing.assert_array_equal(s[key].numpy(), h)
        assert int(s["step"]) == 5


def test_state_is_live_and_state_dicts_reload_exactly(tmp_path):
    for state_dtype in ("bfloat16", "int8"):
        params, opt = make(state_dtype)
        run(params, opt, 3)
        before = {k: v.clone() for k, v in opt.state[params[0]].items()}
        run(params, opt, 1, first=3)
        assert not torch.equal(opt.state[params[0]]["exp_avg"], before["exp_avg"])  # live
        torch.save(opt.state_dict(), tmp_path / "opt.pt")
        run(params, opt, 2, first=4)
        want = [p.detach().clone() for p in params]
        params2, opt2 = make(state_dtype)  # the same run up to the save point, then resumed
        run(params2, opt2, 4)              # in a new optimizer from the saved state dict
        resumed = Adamax(params2, lr=0.01, state_dtype=state_dtype)
        resumed.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
        run(params2, resumed, 2, first=4)
        for a, b in zip(want, params2):  # resumed bit-identically: codes loaded, not requantized
            assert torch.equal(a, b)


def test_loads_across_state_dtypes_and_torch_optim():
    params, opt = make("int8")
    run(params, opt, 3)
    sd = opt.state_dict()
    s = opt.state[params[0]]
    values = R.int8_decode(s["exp_inf"].numpy(), s["exp_inf_scale"].numpy(), 0, "inf_norm")
    _, fp32 = make("float32")
    fp32.load_state_dict(sd)  # dequantized
    np.testing.assert_array_equal(fp32.state[fp32.param_groups[0]["params"][0]]["exp_inf"]
                                  .numpy().ravel(), values)
    reference = torch.optim.Adamax(params, lr=0.01)
    reference.load_state_dict(fp32.state_dict())  # torch's own optimizer takes those values
    _, back = make("int8")
    back.load_state_dict(reference.state_dict())  # float32 values quantized to nearest
    p0 = back.param_groups[0]["params"][0]
    np.testing.assert_array_equal(back.state[p0]["exp_inf"].numpy(), s["exp_inf"].numpy())
    params_b, bf16 = make("bfloat16")
    run(params_b, bf16, 2)
    reference = torch.optim.Adamax(params_b, lr=0.01)
    reference.load_state_dict(bf16.state_dict())  # bfloat16 moments cast to float32 exactly
    assert torch.equal(reference.state[params_b[1]]["exp_avg"],
                       bf16.state[params_b[1]]["exp_avg"].float())


@pytest.mark.parametrize("key,value,match", [
    ("exp_inf", 300.0, r"state\[0\]\['exp_inf'\]: int8-state codes must be whole numbers in "
                       r"\[0, 255\]"),
    ("exp_avg", -128.0, r"\[-127, 127\]"),
    ("exp_avg", 0.5, "whole numbers"),
    ("exp_avg_scale", float("nan"), r"state\[0\]\['exp_avg_scale'\]: expected finite scales"),
    ("exp_inf_scale", "shape", r"expected a tensor of shape \(3,\)"),
    ("code_scheme", 1, r"state\[0\]\['code_scheme'\]: expected a one-element tensor, one of "
                       r"\[2, 3, 4\]"),
])
def test_bad_int8_state_is_refused_and_nothing_changes(key, value, match):
    params, opt = make("int8")
    run(params, opt, 2)
    sd = opt.state_dict()
    entry = {k: v.clone() if isinstance(v, torch.Tensor) else v
             for k, v in sd["state"][0].items()}
    if key == "code_scheme":
        entry[key] = torch.tensor(value)
    elif value == "shape":
        entry[key] = torch.zeros(4)
    else:
        entry[key] = entry[key].float()
        entry[key].view(-1)[0] = value
    bad = {"state": {**sd["state"], 0: entry}, "param_groups": sd["param_groups"]}
    before = {k: v.clone() for k, v in opt.state[params[0]].items()}
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(bad)
    for k, v in opt.state[params[0]].items():
        assert torch.equal(v, before[k])


def test_codes_of_the_earlier_int8_schemes_load_as_their_values():
    """State dicts of int8 v2 (linear moment codes, no ``code_scheme``) and v3 (inf-norm code 0
    is 0) load as the values they stand for: quantized anew into an int8-state optimizer, as
    they are into a float32 one."""
    params, opt = make("int8")
    run(params, opt, 3)
    sd = opt.state_dict()
    assert int(sd["state"][0]["code_scheme"]) == 4  # R.SCHEMES["int8"]
    old = {i: {k: v for k, v in e.items() if k != "code_scheme"} for i, e in sd["state"].items()}
    rng = np.random.default_rng(3)
    for e in old.values():  # v2 codes: any int8 in [-127, 127] stands for code * scale / 127
        e["exp_avg"] = torch.from_numpy(rng.integers(-127, 128, e["exp_avg"].shape, np.int8))
    v2 = {"state": old, "param_groups": sd["param_groups"]}
    p0 = params[0]
    want = R.int8_moment_value_v2(old[0]["exp_avg"].numpy(), old[0]["exp_avg_scale"][0].item())
    want = want.reshape(-1)[:256]
    _, fp32 = make("float32")
    fp32.load_state_dict(v2)
    np.testing.assert_array_equal(
        fp32.state[fp32.param_groups[0]["params"][0]]["exp_avg"].numpy().reshape(-1)[:256], want)
    _, requantized = make("int8")
    requantized.load_state_dict(v2)
    codes = requantized.state[requantized.param_groups[0]["params"][0]]
    moment = R.int8_decode(codes["exp_avg"].numpy(), codes["exp_avg_scale"].numpy(), 0, "moment")
    np.testing.assert_array_equal(
        codes["exp_avg"].numpy().reshape(-1),
        R.int8_encode(R.int8_decode(old[0]["exp_avg"].numpy(), old[0]["exp_avg_scale"].numpy(),
                                    0, "moment", R.INT8_V2),
                      np.ones(p0.numel(), np.float32))[0])
    assert np.all(np.abs(moment[:256] - want) <= 0.07 * np.abs(want))  # 8 codes an octave
    assert not np.array_equal(codes["exp_avg"].numpy().reshape(-1)[:256],
                              old[0]["exp_avg"].numpy().reshape(-1)[:256])  # not taken as is
    v3 = {i: dict(e, code_scheme=torch.tensor(3)) for i, e in sd["state"].items()}
    v3[0]["exp_inf"] = v3[0]["exp_inf"].clone()
    v3[0]["exp_inf"].view(-1)[:3] = 0
    for state_dtype in ("float32", "int8"):
        _, loaded = make(state_dtype)
        loaded.load_state_dict({"state": v3, "param_groups": sd["param_groups"]})
        entry = loaded.state[loaded.param_groups[0]["params"][0]]
        if state_dtype == "int8":
            u = R.int8_decode(entry["exp_inf"].numpy(), entry["exp_inf_scale"].numpy(), 0,
                              "inf_norm")
            assert (u[:3] == u[:3].min()).all() and 0 < u[0] < 1e-4 * u.max()  # the floor
        else:
            u = entry["exp_inf"].numpy().reshape(-1)
            np.testing.assert_array_equal(u, R.int8_decode(
                v3[0]["exp_inf"].numpy(), v3[0]["exp_inf_scale"].numpy(), 0, "inf_norm",
                R.INT8_V3))
            assert not u[:3].any() and u[3:].all()


def test_unsupported_combinations_are_refused():
    with pytest.raises(ValueError, match="state_dtype: expected one of"):
        make("int4")
    p = torch.nn.Parameter(torch.ones(4, dtype=torch.float16))
    with pytest.raises(ValueError, match="with multi_precision runs with mode='adopt'"):
        Adamax([p], state_dtype="int8", multi_precision=True, mode="borrow")


@pytest.mark.parametrize("state_dtype", ["float32", "int8"])
def test_float16_parameters_on_masters_reload_exactly(state_dtype):
    """torch's load casts floating state to the parameter's dtype (float16 here): the float32
    masters, moments and int8 scales must come back with every bit, not through float16."""
    torch.manual_seed(0)
    model = torch.nn.Linear(300, 5).half()
    opt = Adamax(model.parameters(), lr=0.01, multi_precision=True, state_dtype=state_dtype)
    x = torch.randn(8, 300).half()
    for _ in range(3):
        opt.zero_grad()
        model(x).float().pow(2).mean().backward()
        opt.step()
    again = Adamax(model.parameters(), lr=0.01, multi_precision=True, state_dtype=state_dtype)
    again.load_state_dict(opt.state_dict())
    s, t = opt.state[model.weight], again.state[model.weight]
    assert s["master"].dtype == torch.float32 and set(s) == set(t)
    for key in s:
        assert torch.equal(s[key], t[key]), key
