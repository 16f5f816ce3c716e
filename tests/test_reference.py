"""The oracle itself against paddle 3.3.1's measured numbers (spec §1.8) and edge cases (§1.6)."""
import numpy as np
import pytest

from adamax_engine.kernels import layout as L
from adamax_engine.kernels import reference as ref

P0, G = [1.0, -2.0, 0.5, 0.0], [0.1, -0.3, 0.0, 2.0]


def run(dtype, steps, **kw):
    p, g, st = [np.array(P0, dtype)], [np.array(G, dtype)], {}
    out = []
    for _ in range(steps):
        ref.group_step(p, g, st, lr=0.01, **kw)
        out.append((p[0].copy(), st["moment"][0].copy(), st["inf_norm"][0].copy(),
                    st["beta1_pow"][0][()]))
    return out


def test_example_a_fp32_bit_exact():
    (p1, m1, u1, b1), (p2, m2, u2, b2) = run(np.float32, 2)
    assert p1.tolist() == [0.9900000095367432, -1.9900000095367432, 0.5, -0.009999999776482582]
    assert m1.tolist() == [0.010000002570450306, -0.030000008642673492, 0.0, 0.20000004768371582]
    assert u1.tolist() == [0.10000000149011612, 0.30000001192092896, 9.99999993922529e-09, 2.0]
    assert float(b1) == 0.809999942779541
    assert p2.tolist() == [0.9800000190734863, -1.9800000190734863, 0.5, -0.019999999552965164]
    assert m2.tolist() == [0.01900000497698784, -0.057000014930963516, 0.0, 0.3800000846385956]
    assert u2.tolist() == [0.10000000149011612, 0.30000001192092896, 1.9990000765801597e-08, 2.0]
    assert float(b2) == 0.7289999127388


def test_example_b_fp64_uses_fp32_rounded_betas():
    (p1, *_, b1), (p2, *_, b2) = run(np.float64, 2)
    assert p1.tolist() == [0.9899999976158143, -1.9899999976158143, 0.5, -0.010000002384185793]
    assert p2.tolist() == [0.9799999953571119, -1.979999995357112, 0.5, -0.020000004642888095]
    assert (b1, b2) == (0.81, 0.7290000000000001)


def test_first_step_moves_by_lr_or_g_over_eps():
    p, g, st = [np.array([1.0, 1.0, 1.0, 1.0])], [np.array([5.0, -1e-3, 1e-9, 0.0])], {}
    ref.group_step(p, g, st, lr=0.1, epsilon=1e-8)
    eps = float(np.float32(1e-8))
    np.testing.assert_allclose(p[0], [0.9, 1.1, 1 - 0.1 * 1e-9 / eps, 1.0], rtol=1e-6)


def test_epsilon_zero_zero_grad_gives_nan_and_inf_grad_gives_nan():
    p, g, st = [np.array([1.0, 2.0], np.float32)], [np.array([0.0, np.inf], np.float32)], {}
    with np.errstate(invalid="ignore"):  # 0/0 and inf/inf are the point of the test
        ref.group_step(p, g, st, lr=0.1, epsilon=0.0)
    assert np.isnan(p[0]).all()


def test_flavors_put_epsilon_where_their_frameworks_do():
    # spec §8 numeric illustration, eps = 1e-3, two steps
    grads = [[.1, -.3, 0, 2], [1e-4, .3, 0, -1]]
    expected = {L.PADDLE: [0.98530018, -1.99052513, 0.5, -0.01210632],
                L.TORCH: [0.98539919, -1.99055779, 0.5, -0.01210132],
                L.OPTAX: [0.98539919, -1.99055779, 0.5, -0.01210132],
                L.KERAS: [0.98539919, -1.99055779, 0.5, -0.01210132]}
    for flavor, want in expected.items():
        p, st = [np.array(P0, np.float32)], {}
        for g in grads:
            ref.group_step(p, [np.array(g, np.float32)], st, lr=0.01, epsilon=1e-3, flavor=flavor)
        np.testing.assert_allclose(p[0], want, rtol=2e-7, atol=2e-8, err_msg=str(flavor))


def test_clip_before_decay_spec_example():
    # spec §3: ClipGradByValue(0.1) + weight_decay=1.0, g = [5, -5, .05], p = [1, -2, 3]
    # effective grad [1.1, -2.1, 3.05]; first-step moment = 0.1 * effective grad
    p, st = [np.array([1.0, -2.0, 3.0])], {}
    ref.group_step(p, [np.array([5.0, -5.0, 0.05])], st, lr=0.01, clip=("value", -0.1, 0.1),
                   decays=[("l2", 1.0)])
    omb1 = 1 - float(np.float32(0.9))
    np.testing.assert_allclose(st["moment"][0], np.array([1.1, -2.1, 3.05]) * omb1, rtol=1e-12)


def test_chunk_sumsq_order_and_value(rng):
    x = rng.standard_normal(1000).astype(np.float32)
    assert ref.chunk_sumsq(x) == pytest.approx(float(np.sum(x.astype(np.float64) ** 2)), rel=1e-6)
    lanes = [np.float32(0)] * 8
    for k, v in enumerate(x):
        lanes[k % 8] = np.float32(lanes[k % 8] + v * v)
    want = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
    assert ref.chunk_sumsq(x) == want
    assert ref.chunk_sumsq(x[:0]) == 0
