"""The Adamax front against the reference oracle (kernels.reference.group_step), on every path."""
import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine.kernels import layout as L
from adamax_engine.kernels import reference as ref

SHAPES = [(3, 5), (1,), (), (7,), (2, 3, 4), (129,), (65537,)]
PATHS = [dict(mode="adopt"), dict(mode="borrow"), dict(mode="adopt", backend="reference"),
         dict(mode="borrow", backend="reference")]


def clipper(spec):
    if spec is None:
        return None
    kind = spec[0]
    return {"value": lambda: ae.ClipGradByValue(spec[2], spec[1]),
            "norm": lambda: ae.ClipGradByNorm(spec[1]),
            "global": lambda: ae.ClipGradByGlobalNorm(spec[1], auto_skip_clip=spec[2])}[kind]()


def decay_obj(spec):
    return None if spec is None else (ae.L2Decay if spec[0] == "l2" else ae.L1Decay)(spec[1])


def compare_with_oracle(rng, dtype, *, clip=None, decays=None, flavor="paddle", steps=6,
                        lr_mults=None, need_clip=None, path=PATHS[0], beta1=0.9, missing=()):
    n = len(SHAPES)
    decays = decays or [None] * n
    lr_mults = lr_mults or [1.0] * n
    need_clip = need_clip or [True] * n
    init = [np.asarray(rng.standard_normal(s), dtype=dtype) for s in SHAPES]
    params = [ae.Parameter(x.copy(), learning_rate=m, regularizer=decay_obj(d), need_clip=c)
              for x, m, d, c in zip(init, lr_mults, decays, need_clip)]
    opt = ae.Adamax(0.03, beta1=beta1, parameters=params, grad_clip=clipper(clip), flavor=flavor,
                    **path)
    oracle_p, oracle_state = [x.copy() for x in init], {}
    for step in range(steps):
        grads = [np.asarray(rng.standard_normal(s) * rng.uniform(0.01, 4), dtype=dtype)
                 for s in SHAPES]
        grads = [None if (step, i) in missing else g for i, g in enumerate(grads)]
        for p, g in zip(params, grads):
            p.grad = None if g is None else g.copy()
        opt.step()
        ref.group_step(oracle_p, grads, oracle_state, lr=0.03, beta1=beta1, clip=clip,
                       decays=decays, lr_mults=lr_mults, need_clip=need_clip,
                       flavor=L.FLAVORS[flavor])
        for i, (p, want) in enumerate(zip(params, oracle_p)):
            np.testing.assert_array_equal(p.data, want, err_msg=f"step {step} param {i}")
    sd = opt.state_dict()
    for i, p in enumerate(params):
        if oracle_state["moment"][i] is None:
            assert f"{p.name}_moment_0" not in sd
            continue
        np.testing.assert_array_equal(sd[f"{p.name}_moment_0"], oracle_state["moment"][i])
        np.testing.assert_array_equal(sd[f"{p.name}_inf_norm_0"], oracle_state["inf_norm"][i])
        np.testing.assert_array_equal(sd[f"{p.name}_beta1_pow_acc_0"],
                                      oracle_state["beta1_pow"][i].reshape(1))
    return params, opt


@pytest.mark.parametrize("clip", [("value", -0.3, 0.5), ("norm", 1.5), ("global", 2.0, False),
                                  ("global", 2.0, True), ("global", 1e6, True), ("global", -1.0, False)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clippers_equal_oracle(rng, dtype, clip):
    compare_with_oracle(rng, dtype, clip=clip, decays=[("l2", 0.05)] * len(SHAPES),
                        need_clip=[True, False, True, True, True, False, True])


def test_beta1_zero_and_borrowed_global_clip(rng):
    compare_with_oracle(rng, np.float32, beta1=0.0, clip=("global", 0.5, False), path=PATHS[1])


def test_param_without_grad_is_untouched_and_its_beta1_pow_not_advanced(rng):
    a = ae.Parameter(rng.standard_normal(4).astype(np.float32), name="a")
    b = ae.Parameter(rng.standard_normal(4).astype(np.float32), name="b")
    b0 = b.data.copy()
    opt = ae.Adamax(0.1, parameters=[a, b])
    assert opt.state_dict() == {}
    for _ in range(3):
        a.grad = rng.standard_normal(4).astype(np.float32)
        opt.step()
    np.testing.assert_array_equal(b.data, b0)
    sd = opt.state_dict()
    assert "b_moment_0" not in sd
    assert sd["a_beta1_pow_acc_0"][0] == np.float32(np.float32(np.float32(0.9) * np.float32(0.9))
                                                    * np.float32(0.9)) * np.float32(0.9)
    b.grad = np.ones(4, np.float32)
    opt.step()
    assert opt.state_dict()["b_beta1_pow_acc_0"][0] == np.float32(0.9) * np.float32(0.9)
    np.testing.assert_allclose(b.data, b0 - 0.1, rtol=1e-6)


def test_trainable_false_is_skipped(rng):
    a = ae.Parameter(np.ones(3, np.float32), trainable=False)
    opt = ae.Adamax(0.1, parameters=[a])
    a.grad = np.ones(3, np.float32)
    opt.step()
    np.testing.assert_array_equal(a.data, np.ones(3))
    a.stop_gradient = False
    opt.step()
    np.testing.assert_allclose(a.data, np.full(3, 0.9), rtol=1e-6)


def test_adopted_views_and_in_place_grads(rng):
    w = ae.Parameter(rng.standard_normal((4, 3)).astype(np.float32), name="w")
    v = ae.Parameter(rng.standard_normal(5).astype(np.float32), name="v")
    before = w.data.copy()
    opt = ae.Adamax(0.1, parameters=[w, v])
    bucket = opt.registry.buckets[0]
    assert np.shares_memory(w.data, bucket.params) and np.shares_memory(v.data, bucket.params)
    np.testing.assert_array_equal(w.data, before)
    w.grad = np.ones((4, 3), np.float32)
    v.grad = -np.ones(5, np.float32)
    opt.step()
    assert np.shares_memory(w.grad, bucket.grads)
    opt.clear_grad()  # zeroes in place, grads stay views
    assert np.shares_memory(w.grad, bucket.grads) and not w.grad.any()
    w.grad += 2.0     # accumulate in place: no assignment, the fast path must still see it
    v.grad += 1.0
    opt.step()
    oracle, state = [before.copy()], {}
    for g in (1.0, 2.0):
        ref.group_step(oracle, [np.full((4, 3), g, np.float32)], state, lr=0.1)
    np.testing.assert_array_equal(w.data, oracle[0])
    opt.clear_grad(set_to_zero=False)
    assert w.grad is None and v.grad is None
    w.data = np.zeros((4, 3), np.float32)   # a new array: copied in at the next step
    w.grad = np.ones((4, 3), np.float32)
    opt.step()
    assert np.shares_memory(w.data, bucket.params)
    assert np.all(w.data < 0)


BAD_GRADS = [
    (lambda: np.ones((4, 3), np.float64), TypeError, "w.grad: expected dtype float32"),
    (lambda: np.ones((3, 4), np.float32), ValueError, r"w.grad: expected shape \(4, 3\)"),
    (lambda: np.ones((3, 4), np.float32).T, ValueError, "w.grad: expected a C-contiguous"),
    (lambda: [[1.0] * 3] * 4, TypeError, "w.grad: expected a numpy.ndarray"),
    (lambda: np.ones((4, 3), np.int32), TypeError, "w.grad: expected dtype float32, float64, float16 or bfloat16"),
]


@pytest.mark.parametrize("mode", ["adopt", "borrow"])
@pytest.mark.parametrize("make, exc, msg", BAD_GRADS)
def test_bad_grad_raises_and_changes_nothing(rng, mode, make, exc, msg):
    w = ae.Parameter(rng.standard_normal((4, 3)).astype(np.float32), name="w")
    v = ae.Parameter(rng.standard_normal(5).astype(np.float32), name="v")
    opt = ae.Adamax(0.1, parameters=[v, w], mode=mode, grad_clip=ae.ClipGradByGlobalNorm(1.0))
    v.grad = rng.standard_normal(5).astype(np.float32)
    w.grad = rng.standard_normal((4, 3)).astype(np.float32)
    opt.step()
    snap = [w.data.copy(), v.data.copy()] + [np.copy(x) for x in opt.state_dict().values()]
    bucket = opt.registry.buckets[0]
    flat = [bucket.moment.copy(), bucket.inf_norm.copy(), bucket.beta1_pow.copy()]
    v.grad = rng.standard_normal(5).astype(np.float32)
    w.grad = make()
    with pytest.raises(exc, match=msg):
        opt.step()
    after = [w.data, v.data] + list(opt.state_dict().values())
    for x, y in zip(snap, after):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(flat, [bucket.moment, bucket.inf_norm, bucket.beta1_pow]):
        np.testing.assert_array_equal(x, y)


def test_grad_present_at_construction_is_validated_at_first_step(rng):
    w = ae.Parameter(rng.standard_normal(6).astype(np.float32), name="w")
    w.grad = np.ones(5, np.float32)
    opt = ae.Adamax(0.1, parameters=[w])
    before = w.data.copy()
    with pytest.raises(ValueError, match=r"w.grad: expected shape \(6,\)"):
        opt.step()
    np.testing.assert_array_equal(w.data, before)
    w.grad = np.ones(6, np.float32)
    opt.step()
    np.testing.assert_allclose(w.data, before - 0.1, rtol=1e-6)


def test_grad_aliasing_param_is_refused(rng):
    w = ae.Parameter(rng.standard_normal(6).astype(np.float32), name="w")
    opt = ae.Adamax(0.1, parameters=[w], mode="borrow")
    w.grad = w.data
    with pytest.raises(ValueError, match="w.grad: shares memory with the parameter"):
        opt.step()


def test_bad_parameter_arrays():
    with pytest.raises(TypeError, match="array: expected dtype float32, float64, float16 or bfloat16, got int64"):
        ae.Parameter(np.ones(3, np.int64))
    with pytest.raises(ValueError, match="array: expected a C-contiguous"):
        ae.Parameter(np.ones((3, 4), np.float32)[:, ::2])
    ro = np.ones(3, np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="array: expected a writeable"):
        ae.Parameter(ro)
    with pytest.raises(TypeError, match="array: expected a numpy.ndarray"):
        ae.Parameter([1.0, 2.0])
