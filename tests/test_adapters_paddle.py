"""paddle adapter: adamax_engine.Adamax stepping paddle nn.Layer parameters in place (borrow)
against paddle.optimizer.Adamax on an identical copy, 30 steps of real forward/backward."""
import itertools

import numpy as np
import pytest

import adamax_engine as ae

paddle = pytest.importorskip("paddle")
paddle.set_device("cpu")
_uid = itertools.count()


def mlp(init, attrs):
    """Linear(6, 16) -> tanh -> Linear(16, 3), weights from ``init``, ParamAttrs from ``attrs``."""
    run = next(_uid)
    layers = []
    for i, (fan_in, fan_out) in enumerate([(6, 16), (16, 3)]):
        kw = attrs(i)
        lin = paddle.nn.Linear(fan_in, fan_out,
                               weight_attr=paddle.ParamAttr(name=f"m{run}_w{i}", **kw),
                               bias_attr=paddle.ParamAttr(name=f"m{run}_b{i}"))
        lin.weight.set_value(init[2 * i])
        lin.bias.set_value(init[2 * i + 1])
        layers += [lin, paddle.nn.Tanh()] if i == 0 else [lin]
    return paddle.nn.Sequential(*layers)


def train_both(rng, make_opts, attrs=lambda i: {}, steps=30, set_to_zero=True, sched=None):
    init = [rng.standard_normal(s).astype(np.float32) * 0.5
            for s in [(6, 16), (16,), (16, 3), (3,)]]
    ref, ours = mlp(init, attrs), mlp(init, attrs)
    ref_opt, our_opt = make_opts(ref, ours)
    worst = 0.0
    for step in range(steps):
        x = paddle.to_tensor(rng.standard_normal((32, 6)).astype(np.float32))
        y = paddle.to_tensor(rng.standard_normal((32, 3)).astype(np.float32))
        for model, opt in ((ref, ref_opt), (ours, our_opt)):
            loss = paddle.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            opt.clear_grad(set_to_zero=set_to_zero)
        for s in sched or []:
            s.step()
        for a, b in zip(ref.parameters(), ours.parameters()):
            a, b = a.numpy(), b.numpy()
            worst = max(worst, float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1.0))))
    return worst, ref, ours


def pd_ae_decay(kind, coeff):
    if kind == "float":
        return coeff, coeff
    return (getattr(paddle.regularizer, kind)(coeff), getattr(ae, kind)(coeff))


@pytest.mark.parametrize("decay", [None, ("L2Decay", 0.01), ("L1Decay", 0.005), ("float", 0.02)])
@pytest.mark.parametrize("set_to_zero", [True, False])
def test_bit_exact_float_lr_and_decays(rng, decay, set_to_zero):
    def make(ref, ours):
        pd_wd, ae_wd = pd_ae_decay(*decay) if decay else (None, None)
        return (paddle.optimizer.Adamax(0.01, parameters=ref.parameters(), weight_decay=pd_wd),
                ae.Adamax(0.01, parameters=ours.parameters(), weight_decay=ae_wd))
    worst, _, _ = train_both(rng, make, set_to_zero=set_to_zero)
    assert worst == 0.0


def test_bit_exact_scheduler_paramattr_value_clip(rng):
    pd_s, ae_s = paddle.optimizer.lr.StepDecay(0.02, 5, 0.5), ae.lr.StepDecay(0.02, 5, 0.5)

    def attrs(i):  # ParamAttr on the first weight: lr multiplier 0.3, own L1 decay, no clip
        return {"learning_rate": 0.3, "regularizer": paddle.regularizer.L1Decay(0.01),
                "need_clip": False} if i == 0 else {}

    def make(ref, ours):
        return (paddle.optimizer.Adamax(pd_s, parameters=ref.parameters(), weight_decay=0.001,
                                        grad_clip=paddle.nn.ClipGradByValue(0.05)),
                ae.Adamax(ae_s, parameters=ours.parameters(), weight_decay=0.001,
                          grad_clip=ae.ClipGradByValue(0.05)))
    worst, _, _ = train_both(rng, make, attrs=attrs, sched=[pd_s, ae_s])
    assert worst == 0.0


def test_bit_exact_param_groups(rng):
    """(Groups without a ParamAttr lr: there paddle overwrites the multiplier with the group's,
    a documented difference.)"""
    def make(ref, ours):
        def groups(model):
            ps = model.parameters()
            return [{"params": ps[:2], "beta1": 0.8, "weight_decay": 0.001},
                    {"params": ps[2:], "learning_rate": 0.5, "epsilon": 1e-6, "beta2": 0.99}]
        return (paddle.optimizer.Adamax(0.01, parameters=groups(ref)),
                ae.Adamax(0.01, parameters=groups(ours)))
    worst, _, _ = train_both(rng, make)
    assert worst == 0.0


@pytest.mark.parametrize("clip", ["norm", "global"])
def test_norm_clips_within_documented_drift(rng, clip):
    def make(ref, ours):
        pd_c = paddle.nn.ClipGradByNorm(0.1) if clip == "norm" else \
            paddle.nn.ClipGradByGlobalNorm(0.1)
        ae_c = ae.ClipGradByNorm(0.1) if clip == "norm" else ae.ClipGradByGlobalNorm(0.1)
        return (paddle.optimizer.Adamax(0.01, parameters=ref.parameters(), grad_clip=pd_c,
                                        weight_decay=0.01),
                ae.Adamax(0.01, parameters=ours.parameters(), grad_clip=ae_c, weight_decay=0.01))
    worst, _, _ = train_both(rng, make)
    assert worst <= 1e-6


def test_state_dict_keys_and_values_match_paddle(rng):
    opts = {}

    def make(ref, ours):
        opts["pd"] = paddle.optimizer.Adamax(0.01, parameters=ref.parameters())
        opts["ae"] = ae.Adamax(0.01, parameters=ours.parameters())
        return opts["pd"], opts["ae"]
    _, ref, ours = train_both(rng, make, steps=3)
    pd_state, ae_state = opts["pd"].state_dict(), opts["ae"].state_dict()
    rename = {p.name: q.name for p, q in zip(ref.parameters(), ours.parameters())}
    for key, value in pd_state.items():
        name = next(n for n in rename if key.startswith(n + "_"))
        np.testing.assert_array_equal(ae_state[rename[name] + key[len(name):]], value.numpy(),
                                      err_msg=key)


def test_paddle_parameters_are_stepped_in_place_and_not_adoptable(rng):
    model = mlp([rng.standard_normal(s).astype(np.float32) for s in [(6, 16), (16,), (16, 3), (3,)]],
                lambda i: {})
    ptrs = [p.data_ptr() for p in model.parameters()]
    opt = ae.Adamax(0.1, parameters=model.parameters())
    paddle.nn.functional.mse_loss(model(paddle.ones([2, 6])), paddle.zeros([2, 3])).backward()
    opt.step()
    assert [p.data_ptr() for p in model.parameters()] == ptrs
    with pytest.raises(ValueError, match="cannot be adopted; use mode='borrow'"):
        ae.Adamax(0.1, parameters=model.parameters(), mode="adopt")
