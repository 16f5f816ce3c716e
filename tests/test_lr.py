"""Every scheduler vs paddle (200 steps, exact floats) when paddle is installed, and vs the
spec's example sequences (section 5.2) always."""
import math

import numpy as np
import pytest

from adamax_engine import lr

CASES = {  # name: (args, kwargs)
    "NoamDecay": ((2, 3), {}),
    "PiecewiseDecay": (([3, 6, 50], [0.1, 0.05, 0.01, 0.001]), {}),
    "NaturalExpDecay": ((0.5, 0.1), {}),
    "InverseTimeDecay": ((0.5, 0.1), {}),
    "PolynomialDecay": ((0.5, 4, 0.1), {}),
    "PolynomialDecay-cycle": ((0.5, 4, 0.1), {"power": 2.0, "cycle": True}),
    "ExponentialDecay": ((0.5, 0.9), {}),
    "MultiStepDecay": ((0.5, [2, 4, 100]), {}),
    "StepDecay": ((0.5, 2, 0.1), {}),
    "LambdaDecay": ((0.5, lambda e: 0.95 ** e), {}),
    "CosineAnnealingDecay": ((0.5, 4), {"eta_min": 0.01}),
    "CosineAnnealingDecay-long": ((0.5, 37), {}),
    "MultiplicativeDecay": ((0.5, lambda e: 0.9), {}),
    "OneCycleLR": ((1.0, 200), {}),
    "OneCycleLR-3phase-linear": ((1.0, 200), {"three_phase": True, "anneal_strategy": "linear",
                                              "phase_pct": 0.25}),
    "CyclicLR": ((0.1, 1.0, 2), {}),
    "CyclicLR-triangular2": ((0.1, 1.0, 3), {"step_size_down": 5, "mode": "triangular2"}),
    "CyclicLR-exp_range": ((0.1, 1.0, 4), {"mode": "exp_range", "exp_gamma": 0.99}),
    "LinearLR": ((0.5, 4), {}),
    "LinearLR-long": ((0.5, 150), {"start_factor": 0.1, "end_factor": 0.9}),
    "CosineAnnealingWarmRestarts": ((0.5, 3, 2), {}),
    "CosineAnnealingWarmRestarts-T1": ((0.5, 7), {"eta_min": 0.05}),
    "LinearWarmup": ((0.5, 3, 0.0, 0.5), {}),
}


def build(module, name):
    args, kwargs = CASES[name]
    return getattr(module, name.split("-")[0])(*args, **kwargs)


def sequence(sched, n=200):
    """n values, one scheduler.step() between consecutive reads."""
    out = [sched()]
    for _ in range(n - 1):
        sched.step()
        out.append(sched())
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_200_steps_equal_paddle(name):
    paddle_lr = pytest.importorskip("paddle.optimizer.lr")
    assert sequence(build(lr, name)) == sequence(build(paddle_lr, name))


def test_linear_warmup_wrapping_a_scheduler_equals_paddle():
    paddle_lr = pytest.importorskip("paddle.optimizer.lr")
    ours = lr.LinearWarmup(lr.StepDecay(0.5, 2), 3, 0.0, 0.5)
    theirs = paddle_lr.LinearWarmup(paddle_lr.StepDecay(0.5, 2), 3, 0.0, 0.5)
    assert sequence(ours) == sequence(theirs)


def test_reduce_on_plateau_equals_paddle(rng):
    paddle_lr = pytest.importorskip("paddle.optimizer.lr")
    metrics = np.cumsum(rng.standard_normal(200)) + 50  # a random walk: plateaus and drops
    for kw in ({"patience": 2, "factor": 0.5}, {"mode": "max", "threshold_mode": "abs",
                                                 "cooldown": 3, "patience": 1, "min_lr": 0.01}):
        ours, theirs = lr.ReduceOnPlateau(1.0, **kw), paddle_lr.ReduceOnPlateau(1.0, **kw)
        a, b = [], []
        for m in metrics:
            ours.step(float(m))
            theirs.step(float(m))
            a.append(ours())
            b.append(theirs())
        assert a == b
        assert len(set(a)) > 1  # it really reduced


@pytest.mark.parametrize("name", ["CosineAnnealingDecay", "PolynomialDecay", "OneCycleLR",
                                  "CosineAnnealingWarmRestarts", "CyclicLR", "NoamDecay"])
def test_step_to_epoch_equals_paddle(name):
    paddle_lr = pytest.importorskip("paddle.optimizer.lr")
    ours, theirs = build(lr, name), build(paddle_lr, name)
    for epoch in (5, 17, 3, 120, 0, 64):
        ours.step(epoch)
        theirs.step(epoch)
        assert ours() == theirs(), epoch
        assert ours.last_epoch == theirs.last_epoch


SPEC = {  # spec section 5.2, "example sequence" (4 decimals)
    "NoamDecay": [0, .1361, .2722, .4082, .3536, .3162],
    "PiecewiseDecay": [.1, .1, .1, .05, .05, .05, .01],
    "NaturalExpDecay": [.5, .4524, .4094],
    "InverseTimeDecay": [.5, .4545, .4167],
    "PolynomialDecay": [.5, .4, .3, .2, .1, .1],
    "ExponentialDecay": [.5, .45, .405],
    "MultiStepDecay": [.5, .5, .05, .05, .005],
    "StepDecay": [.5, .5, .05, .05, .005, .005, .0005],
    "CosineAnnealingDecay": [.5, .4268, .25, .0732, 0, .0732, .25, .4268, .5],
    "MultiplicativeDecay": [.5, .45, .405],
    "OneCycleLR": [.04, .52, 1.0, .9505, .8118, .6113, .3888, .1883, .0496, 1e-4, .0496],
    "CyclicLR": [.1, .55, 1, .55, .1],
    "LinearLR": [.1667, .25, .3333, .4167, .5, .5],
    "CosineAnnealingWarmRestarts": [.5, .375, .125, .5, .4665, .375, .25, .125, .0335, .5],
    "LinearWarmup": [0, .1667, .3333, .5, .5],
}
SPEC_ARGS = {"PiecewiseDecay": (([3, 6], [.1, .05, .01]), {}), "MultiStepDecay": ((.5, [2, 4]), {}),
             "CosineAnnealingDecay": ((.5, 4), {}), "OneCycleLR": ((1.0, 10), {}),
             "PolynomialDecay": ((.5, 4, .1), {}), "MultiplicativeDecay": ((.5, lambda e: .9), {})}


@pytest.mark.parametrize("name", sorted(SPEC))
def test_spec_example_sequences(name):
    args, kwargs = SPEC_ARGS.get(name, CASES.get(name))
    got = sequence(getattr(lr, name)(*args, **kwargs), len(SPEC[name]))
    np.testing.assert_allclose(got, SPEC[name], atol=6e-5)


def test_spec_polynomial_cycle_and_warmup_wrapping():
    got = sequence(lr.PolynomialDecay(.5, 4, .1, cycle=True), 10)
    np.testing.assert_allclose(got[4:10], [.1, .25, .2, .15, .1, .2], atol=6e-5)
    got = sequence(lr.LinearWarmup(lr.StepDecay(.5, 2), 3, 0, .5), 8)
    np.testing.assert_allclose(got, [0, .167, .333, .5, .5, .05, .05, .005], atol=6e-4)
    got = sequence(lr.CyclicLR(.1, 1.0, 2, mode="triangular2"), 9)
    np.testing.assert_allclose(got[4:9], [.1, .325, .55, .325, .1], atol=6e-5)


def test_reduce_on_plateau_spec_example():
    s = lr.ReduceOnPlateau(1.0, patience=1, factor=.5)
    seen = [s()]
    for m in [1, 1, 1, 1, .5, .5, .5]:
        s.step(m)
        seen.append(s())
    assert seen == [1, 1, 1, .5, .5, .5, .5, .25]


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_dict_resume_is_exact(name):
    a = build(lr, name)
    sequence(a, 37)
    a.step()
    b = build(lr, name)
    b.set_state_dict(a.state_dict())
    assert sequence(a, 60) == sequence(b, 60)


def test_warm_restarts_reload_keeps_its_cycle():
    a = lr.CosineAnnealingWarmRestarts(0.5, 3, 2)
    sequence(a, 12)
    state = a.state_dict()
    assert {"T_cur", "T_i"} <= set(state)
    b = lr.CosineAnnealingWarmRestarts(0.5, 3, 2)
    b.set_state_dict({"last_epoch": state["last_epoch"], "last_lr": state["last_lr"]})  # paddle's
    assert (b.T_cur, b.T_i) == (a.T_cur, a.T_i)
    assert sequence(a, 20) == sequence(b, 20)


@pytest.mark.parametrize("make, err, msg", [
    (lambda: lr.StepDecay(0.5, 2.0), TypeError, "The type of 'step_size' must be 'int'"),
    (lambda: lr.StepDecay(0.5, 2, gamma=1.5), ValueError, "gamma should be < 1.0."),
    (lambda: lr.MultiStepDecay(0.5, [4, 2]), ValueError, "milestones must be incremented"),
    (lambda: lr.MultiStepDecay(0.5, 3), TypeError, "'milestones' in 'MultiStepDecay'"),
    (lambda: lr.NoamDecay(0, 3), ValueError, "d_model should be grater than 0"),
    (lambda: lr.PiecewiseDecay([], [1.0]), ValueError, "The boundaries cannot be empty."),
    (lambda: lr.PiecewiseDecay([1, 2], [1.0, 2.0]), ValueError, "one more element"),
    (lambda: lr.ExponentialDecay(0.5, 1.0), AssertionError, "interval"),
    (lambda: lr.LinearLR(0.5, 4, start_factor=0), ValueError, "`start_factor` must be"),
    (lambda: lr.OneCycleLR(1.0, 10, phase_pct=1), TypeError, "'phase_pct' must be 'float'"),
    (lambda: lr.OneCycleLR(1.0, 10, anneal_strategy="x"), ValueError, "'anneal_strategy'"),
    (lambda: lr.CyclicLR(0.1, 1.0, 2, mode="x"), ValueError, "'mode' is invalid"),
    (lambda: lr.CosineAnnealingWarmRestarts(0.5, 0), ValueError, "positive integer T_0"),
    (lambda: lr.ReduceOnPlateau(1.0, mode="up"), ValueError, "mode: up is unknown!"),
    (lambda: lr.LinearWarmup("x", 3, 0, 1), TypeError, "the type of learning_rate should be"),
    (lambda: lr.LambdaDecay(0.5, 3), TypeError, "'lr_lambda' in 'LambdaDecay'"),
    (lambda: lr.StepDecay(-0.5, 2), ValueError, "Invalid learning rate: -0.5"),
])
def test_constructor_errors(make, err, msg):
    with pytest.raises(err, match=msg.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        make()


def test_one_cycle_past_the_end_raises():
    s = lr.OneCycleLR(1.0, 5)
    sequence(s, 6)  # reaches e == total_steps, which extrapolates, like paddle
    with pytest.raises(ValueError, match="Tried to step 6 times"):
        s.step()
    assert math.isfinite(s())
