"""Constructor validation, lr API, state_dict, minimize and clear_grad: paddle's behaviour (spec §2-§7)."""
import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine.kernels import reference as ref


def params(rng, n=2, dtype=np.float32):
    return [ae.Parameter(rng.standard_normal(3 + i).astype(dtype), name=f"p{i}") for i in range(n)]


CONSTRUCTOR_ERRORS = [
    (dict(learning_rate=None), AssertionError, "^$"),
    (dict(beta1=None), AssertionError, "^$"),
    (dict(epsilon=None), AssertionError, "^$"),
    (dict(learning_rate=1), TypeError, "learning rate should be float or LRScheduler, got <class 'int'> here"),
    (dict(learning_rate=np.float32(0.1)), TypeError, "learning rate should be float or LRScheduler"),
    (dict(beta1=1.0), ValueError, r"Invalid value of beta1, expect beta1 in \[0,1\)."),
    (dict(beta1=-0.1), ValueError, r"Invalid value of beta1, expect beta1 in \[0,1\)."),
    (dict(beta1=float("nan")), ValueError, r"Invalid value of beta1"),
    (dict(beta1=True), ValueError, r"Invalid value of beta1"),
    (dict(beta2=1), ValueError, r"Invalid value of beta2, expect beta2 in \[0,1\)."),
    (dict(epsilon=-1e-8), ValueError, "Invalid value of epsilon, expect epsilon >= 0."),
    (dict(beta1="a"), TypeError, "'<=' not supported between instances of 'int' and 'str'"),
    (dict(parameters=None), AttributeError, "parameters argument given to the Optimizer should not be None"),
    (dict(parameters={"params": []}), TypeError, "`parameters` argument should not get dict type"),
    (dict(grad_clip=1.0), TypeError, "'grad_clip' should be an instance of GradientClipBase's derived class"),
    (dict(weight_decay="x"), TypeError, "weight_decay: expected a float, L1Decay, L2Decay or None"),
    (dict(flavor="adam"), ValueError, "flavor: expected one of"),
    (dict(mode="lend"), ValueError, "mode: expected one of"),
    (dict(backend="gpu"), ValueError, "backend: expected one of"),
]


@pytest.mark.parametrize("kwargs, exc, msg", CONSTRUCTOR_ERRORS, ids=lambda x: str(x)[:30])
def test_constructor_errors(rng, kwargs, exc, msg):
    args = {"learning_rate": 0.01, "parameters": params(rng), **kwargs}
    with pytest.raises(exc, match=msg):
        ae.Adamax(**args)


def test_single_parameter_is_not_an_iterable(rng):
    with pytest.raises(TypeError, match="should be an iterable of paddle Tensors"):
        ae.Adamax(0.1, parameters=params(rng)[0])


def test_accepted_edge_values(rng):
    for kw in (dict(learning_rate=-0.1), dict(learning_rate=0.0), dict(epsilon=0.0), dict(beta1=0.0),
               dict(learning_rate=np.float64(0.1)), dict(weight_decay=1), dict(weight_decay=-0.5)):
        ae.Adamax(parameters=params(rng), **kw)
    p = params(rng, 1)
    before = p[0].data.copy()
    opt = ae.Adamax(learning_rate=-0.1, parameters=p)
    p[0].grad = np.ones_like(before)
    opt.step()
    np.testing.assert_allclose(p[0].data, before + 0.1, rtol=1e-6)  # negative lr reverses


GROUP_ERRORS = [
    (lambda ps: [{"params": ps[:1]}, {"weight_decay": 0.1}], AssertionError,
     "params should be set in parameters if parameter groups are optimized in different options"),
    (lambda ps: [{"params": ps}, {"params": ps[:1]}], ValueError,
     "some parameters appear in more than one parameter group"),
    (lambda ps: [{"params": set(ps)}], TypeError, "optimizer parameters should be in ordered collections"),
    (lambda ps: [{"params": ps, "momentum": 0.9}], ValueError, "parameters\\[0\\]: unknown group key 'momentum'"),
    (lambda ps: [{"params": ps[:1]}, {"params": ps[1:], "beta2": 1.5}], ValueError,
     r"Invalid value of beta2, expect beta2 in \[0,1\). \(parameters\[1\]\)"),
    (lambda ps: [{"params": ps, "weight_decay": "x"}], TypeError, r"parameters\[0\]\['weight_decay'\]"),
    (lambda ps: [{"params": ps, "learning_rate": "x"}], TypeError, r"parameters\[0\]\['learning_rate'\]"),
    (lambda ps: [{"params": ps, "grad_clip": 3}], TypeError, r"parameters\[0\]\['grad_clip'\]"),
    (lambda ps: [ps[0], ps[0]], ValueError, "'p0' is given twice"),
    (lambda ps: [np.ones(3, np.float32)], TypeError, "parameters: expected adamax_engine.Parameter"),
]


@pytest.mark.parametrize("make, exc, msg", GROUP_ERRORS)
def test_group_errors(rng, make, exc, msg):
    with pytest.raises(exc, match=msg):
        ae.Adamax(0.01, parameters=make(params(rng)))


def test_empty_parameters_fail_at_step(rng):
    opt = ae.Adamax(0.01, parameters=[])
    with pytest.raises(IndexError, match="no parameters"):
        opt.step()


def test_clipper_and_regularizer_validation():
    with pytest.raises(AssertionError):
        ae.ClipGradByValue(-1.0)
    with pytest.raises(ValueError, match="max should be greater than or equal to min. But received "
                                         "min = 2.000000, max = 1.000000"):
        ae.ClipGradByValue(1.0, 2.0)
    with pytest.raises(ValueError, match="max_norm should be greater than 0. Received max_norm is 0.000000."):
        ae.ClipGradByNorm(0.0)
    with pytest.raises(AssertionError):
        ae.ClipGradByGlobalNorm(1.0, auto_skip_clip=1)
    with pytest.raises(TypeError, match="clip_norm: expected a float"):
        ae.ClipGradByGlobalNorm("1")
    with pytest.raises(ValueError, match="coeff: expected a finite float"):
        ae.L2Decay(float("nan"))


def test_lr_api(rng):
    opt = ae.Adamax(0.1, parameters=params(rng))
    got = []
    for lr in [0.2, 0.3, 0.4, 0.5, 0.6]:  # paddle's set_lr docstring example
        opt.set_lr(lr)
        got.append(opt.get_lr())
    assert got == [0.2, 0.3, 0.4, 0.5, 0.6]
    with pytest.raises(TypeError, match="The type of 'value' in optimizer.set_lr must be float, but "
                                        "received <class 'str'>."):
        opt.set_lr("0.1")
    with pytest.raises(TypeError, match="must be LRScheduler, but received <class 'float'>"):
        opt.set_lr_scheduler(0.1)
    opt.set_lr_scheduler(ae.lr.StepDecay(0.5, 2))
    assert opt.get_lr() == 0.5
    with pytest.raises(RuntimeError, match="optimizer's learning rate can't be LRScheduler"):
        opt.set_lr(0.1)


def test_get_lr_with_step_decay_follows_real_paddle(rng):
    # spec §7: the seed doc's [0.2, 0.2, 0.4, ...] is wrong; real paddle gives these
    sched = ae.lr.StepDecay(learning_rate=0.5, step_size=2, gamma=0.1)
    p = params(rng, 1)
    opt = ae.Adamax(learning_rate=sched, parameters=p)
    got = []
    for _ in range(10):
        got.append(opt.get_lr())
        p[0].grad = np.ones_like(p[0].data)
        opt.step()
        sched.step()
    assert got == [0.5, 0.5, 0.05, 0.05, 0.005000000000000001, 0.005000000000000001,
                   0.0005000000000000001, 0.0005000000000000001, 5.000000000000001e-05,
                   5.000000000000001e-05]
    assert ae.lr.StepDecay(0.5, 2, last_epoch=5).last_epoch == 6
    with pytest.raises(TypeError, match="The type of 'step_size' must be 'int'"):
        ae.lr.StepDecay(0.5, 2.0)
    with pytest.raises(ValueError, match="gamma should be < 1.0."):
        ae.lr.StepDecay(0.5, 2, gamma=1.5)


def stepped(rng, name=None, sched=None, steps=3, seed_grads=None):
    ps = [ae.Parameter(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), name="w"),
          ae.Parameter(np.arange(4, dtype=np.float32), name="b")]
    opt = ae.Adamax(sched or 0.05, parameters=ps, name=name, weight_decay=0.01)
    for k in range(steps):
        for p in ps:
            p.grad = np.sin(np.arange(p.data.size, dtype=np.float32) + k).reshape(p.data.shape)
        opt.step()
        if sched:
            sched.step()
    return ps, opt


def test_state_dict_layout_and_round_trip(rng):
    ps, opt = stepped(rng, name="myopt", sched=ae.lr.StepDecay(0.05, 2))
    sd = opt.state_dict()
    assert list(sd) == ["w_myopt_moment_0", "b_myopt_moment_0", "w_myopt_inf_norm_0",
                        "b_myopt_inf_norm_0", "w_myopt_beta1_pow_acc_0", "b_myopt_beta1_pow_acc_0",
                        "LR_Scheduler"]
    assert sd["w_myopt_beta1_pow_acc_0"].shape == (1,) and sd["LR_Scheduler"]["last_epoch"] == 3
    saved = {k: (np.copy(v) if isinstance(v, np.ndarray) else dict(v)) for k, v in sd.items()}
    # an uninterrupted run of 5 steps equals 3 steps + save + load into a fresh optimizer + 2 steps
    full, _ = stepped(rng, name="myopt", sched=ae.lr.StepDecay(0.05, 2), steps=5)
    fresh_ps = [ae.Parameter(p.data.copy(), name=p.name) for p in ps]
    sched2 = ae.lr.StepDecay(0.05, 2)
    opt2 = ae.Adamax(sched2, parameters=fresh_ps, name="myopt", weight_decay=0.01)
    opt2.set_state_dict(saved)
    for k in (3, 4):
        for p in fresh_ps:
            p.grad = np.sin(np.arange(p.data.size, dtype=np.float32) + k).reshape(p.data.shape)
        opt2.step()
        sched2.step()
    for a, b in zip(full, fresh_ps):
        np.testing.assert_array_equal(a.data, b.data)


STATE_ERRORS = [
    (lambda sd: {**sd, "zz_moment_0": sd["w_moment_0"]}, ValueError, r"state_dict\['zz_moment_0'\]"),
    (lambda sd: {**sd, "w_moment_0": sd["w_moment_0"].astype(np.float64)}, TypeError,
     r"state_dict\['w_moment_0'\]: expected dtype float32, got float64"),
    (lambda sd: {**sd, "w_inf_norm_0": sd["w_inf_norm_0"].reshape(3, 2)}, ValueError,
     r"state_dict\['w_inf_norm_0'\]: expected shape \(2, 3\), got \(3, 2\)"),
    (lambda sd: {**sd, "b_beta1_pow_acc_0": 0.5}, TypeError, "expected a numpy.ndarray, got float"),
    (lambda sd: {k: v for k, v in sd.items() if k != "b_inf_norm_0"}, AssertionError,
     "optimizer Tensor b_inf_norm_0 not found"),
    (lambda sd: [1], TypeError, "state_dict: expected a dict"),
]


@pytest.mark.parametrize("corrupt, exc, msg", STATE_ERRORS)
def test_set_state_dict_validates_and_changes_nothing(rng, corrupt, exc, msg):
    ps, opt = stepped(rng)
    good = {k: np.copy(v) * 2 for k, v in opt.state_dict().items()}
    before = {k: np.copy(v) for k, v in opt.state_dict().items()}
    with pytest.raises(exc, match=msg):
        opt.set_state_dict(corrupt(good))
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_scheduler_state_required(rng):
    ps, opt = stepped(rng, sched=ae.lr.StepDecay(0.05, 2))
    sd = {k: v for k, v in opt.state_dict().items() if k != "LR_Scheduler"}
    with pytest.raises(AssertionError, match="LR_Scheduler state must be included"):
        opt.set_state_dict(sd)


def test_minimize_does_not_run_backward_and_restricts_to_parameters(rng):
    w, b = params(rng)
    w0, b0 = w.data.copy(), b.data.copy()
    opt = ae.Adamax(0.1, parameters=[w, b])
    assert opt.minimize(loss=1.23) == ([], [])  # no grads yet: nothing happens
    np.testing.assert_array_equal(w.data, w0)
    w.grad, b.grad = np.ones_like(w0), np.ones_like(b0)
    ops, pairs = opt.minimize(1.23, parameters=[w], no_grad_set={b})
    assert ops == [] and [p for p, _ in pairs] == [w]
    np.testing.assert_allclose(w.data, w0 - 0.1, rtol=1e-6)
    np.testing.assert_array_equal(b.data, b0)
    assert "p1_moment_0" not in opt.state_dict()
    opt.minimize(1.23)
    np.testing.assert_allclose(b.data, b0 - 0.1, rtol=1e-6)
    with pytest.raises(ValueError, match="parameters: minimize.. got a parameter this optimizer"):
        opt.minimize(1.23, parameters=[ae.Parameter(np.ones(2, np.float32))])


def test_seed_doc_examples_with_numpy_parameters(rng):
    """paddle.optimizer.Adamax's doc examples (Linear(10, 10), param groups), written for numpy."""
    def linear(i, o, tag):
        return (ae.Parameter(rng.uniform(-0.3, 0.3, (i, o)).astype(np.float32), name=f"{tag}.w_0"),
                ae.Parameter(np.zeros(o, np.float32), name=f"{tag}.b_0"))

    def backward(x, w, b):  # out = mean(x @ w + b); d/dw = mean over rows/cols
        n, o = x.shape[0], w.data.shape[1]
        w.grad = np.repeat(x.sum(0, keepdims=True).T / (n * o), o, axis=1).astype(np.float32)
        b.grad = np.full(o, 1.0 / o, np.float32)

    x = rng.uniform(-0.1, 0.1, (10, 10)).astype(np.float32)
    w, b = linear(10, 10, "linear_0")
    w0, b0 = w.data.copy(), b.data.copy()
    opt = ae.Adamax(learning_rate=0.1, parameters=[w, b], beta1=0.9, beta2=0.99, weight_decay=0.01)
    backward(x, w, b)
    opt.step()
    opt.clear_grad()
    oracle, state = [w0, b0], {}
    backward(x, ae.Parameter(w0.copy()), ae.Parameter(b0.copy()))
    grads = [np.repeat(x.sum(0, keepdims=True).T / 100, 10, axis=1).astype(np.float32),
             np.full(10, 0.1, np.float32)]
    ref.group_step(oracle, grads, state, lr=0.1, beta1=0.9, beta2=0.99,
                   decays=[("l2", 0.01), ("l2", 0.01)])
    np.testing.assert_array_equal(w.data, oracle[0])
    np.testing.assert_array_equal(b.data, oracle[1])
    assert not w.grad.any()  # clear_grad zeroed it

    # parameter groups: linear_2 gets its own decay, lr multiplier and beta1
    (w1, b1), (w2, b2) = linear(10, 10, "linear_1"), linear(10, 10, "linear_2")
    init = [p.data.copy() for p in (w1, b1, w2, b2)]
    opt = ae.Adamax(learning_rate=0.1, weight_decay=0.01, parameters=[
        {"params": [w1, b1]},
        {"params": [w2, b2], "weight_decay": 0.001, "learning_rate": 0.1, "beta1": 0.8}])
    backward(x, w1, b1)
    backward(x, w2, b2)
    opt.step()
    o1, o2 = init[:2], init[2:]
    ref.group_step(o1, grads, {}, lr=0.1, decays=[("l2", 0.01)] * 2)
    ref.group_step(o2, grads, {}, lr=0.1, beta1=0.8, lr_mults=[0.1, 0.1], decays=[("l2", 0.001)] * 2)
    for got, want in zip((w1, b1, w2, b2), o1 + o2):
        np.testing.assert_array_equal(got.data, want)
    assert opt.state_dict()["linear_2.w_0_beta1_pow_acc_0"][0] == np.float32(0.8) * np.float32(0.8)


def test_import_pulls_in_no_framework():
    import subprocess
    import sys
    code = ("import sys, numpy as np, adamax_engine as ae; "
            "p = ae.Parameter(np.ones(3, np.float32)); o = ae.Adamax(0.1, parameters=[p]); "
            "p.grad = np.ones(3, np.float32); o.step(); "
            "print(sorted(m for m in ('torch', 'paddle', 'jax', 'optax', 'cupy', 'matplotlib', "
            "'numba.cuda') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_parameter_views_dlpack_and_array_interface_objects_without_copy():
    class Wrapped:
        def __init__(self, a):
            self.a = a
            self.__array_interface__ = a.__array_interface__
    base = np.arange(6, dtype=np.float32)
    p = ae.Parameter(Wrapped(base))
    opt = ae.Adamax(0.1, parameters=[p], mode="borrow")
    p.grad = np.ones(6, np.float32)
    opt.step()
    np.testing.assert_array_equal(base, np.arange(6, dtype=np.float32) - 0.1)  # stepped in place
    torch = pytest.importorskip("torch")
    t = torch.zeros(3)
    q = ae.Parameter(t.detach())  # DLPack
    q.data[0] = 5.0
    assert float(t[0]) == 5.0
    with pytest.raises(TypeError, match="array: expected a numpy.ndarray"):
        ae.Parameter([1.0, 2.0])
