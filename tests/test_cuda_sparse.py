"""Row-sparse grads on device="cuda" (kernels/cuda/rows.py) vs the dense GPU step.

Simulator in CI (bit-identical); on a GPU both paths use the same device arithmetic.
"""
import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine.kernels import cuda as K

pytestmark = pytest.mark.skipif(not K.available(), reason="no CUDA GPU and no simulator")
R, D = 12, 3


def cuda():
    from numba import cuda as c
    return c


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("extra", [{}, {"weight_decay": 0.01, "grad_clip": ae.ClipGradByValue(0.5)}],
                         ids=["plain", "decay+clip"])
def test_sparse_on_device_equals_dense_on_device(rng, lazy, extra):
    emb = rng.standard_normal((R, D)).astype(np.float32)
    sp = ae.Parameter(cuda().to_device(emb), name="emb")
    de = ae.Parameter(cuda().to_device(emb), name="emb")
    opt_s = ae.Adamax(0.05, parameters=[sp], device="cuda", lazy_mode=lazy, **extra)
    opt_d = ae.Adamax(0.05, parameters=[de], device="cuda", **extra)
    host = emb.copy()
    for step in range(5):
        rows = rng.integers(0, R // 2, 4) if step else np.arange(R)
        vals = rng.standard_normal((len(rows), D)).astype(np.float32)
        sp.grad = ae.RowSparseGrad(rows, vals)
        full = np.zeros((R, D), np.float32)
        np.add.at(full, rows, vals)
        de.grad = cuda().to_device(full)
        opt_s.step()
        if not lazy:
            opt_d.step()
        elif step == 0:
            opt_d.step()  # every row touched: lazy == dense
            host = de.numpy()
    if lazy:  # untouched rows (R//2..) never moved after step 0
        np.testing.assert_array_equal(sp.numpy()[R // 2:], host[R // 2:])
        return
    opt_s.flush()
    got, want = sp.numpy(), de.numpy()
    if K.simulated():
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    ss, sd = opt_s.state_dict(), opt_d.state_dict()
    for key in sd:
        np.testing.assert_allclose(ss[key], sd[key], rtol=1e-6, atol=1e-7, err_msg=key)


@pytest.mark.parametrize("clip", [ae.ClipGradByGlobalNorm(1.0), ae.ClipGradByNorm(0.5)])
def test_sparse_on_device_with_norm_clip_and_skip(rng, clip):
    emb = rng.standard_normal((R, D)).astype(np.float32)
    w = rng.standard_normal(4).astype(np.float32)
    sp = [ae.Parameter(cuda().to_device(emb), name="emb"), ae.Parameter(cuda().to_device(w), name="w")]
    de = [ae.Parameter(cuda().to_device(emb), name="emb"), ae.Parameter(cuda().to_device(w), name="w")]
    kw = dict(device="cuda", grad_clip=clip, skip_nonfinite=True)
    opt_s, opt_d = ae.Adamax(0.05, parameters=sp, **kw), ae.Adamax(0.05, parameters=de, **kw)
    for step in range(5):
        rows = rng.integers(0, R, 4)
        vals = (3 * rng.standard_normal((4, D))).astype(np.float32)
        if step == 2:
            vals[1, 1] = np.inf  # skipped on both, counted
        full = np.zeros((R, D), np.float32)
        np.add.at(full, rows, vals)
        g = rng.standard_normal(4).astype(np.float32)
        sp[0].grad, sp[1].grad = ae.RowSparseGrad(rows, vals), cuda().to_device(g)
        de[0].grad, de[1].grad = cuda().to_device(full), cuda().to_device(g)
        opt_s.step()
        opt_d.step()
    assert opt_s.skipped_steps == opt_d.skipped_steps == 1
    opt_s.flush()
    for p, q in zip(sp, de):  # the norms' summation orders differ: last bits
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-5, atol=1e-6)


def test_catch_up_rows_on_device(rng):
    emb = rng.standard_normal((R, D)).astype(np.float32)
    sp = ae.Parameter(cuda().to_device(emb), name="emb")
    de = ae.Parameter(cuda().to_device(emb), name="emb")
    opt_s = ae.Adamax(0.05, parameters=[sp], device="cuda", weight_decay=0.01)
    opt_d = ae.Adamax(0.05, parameters=[de], device="cuda", weight_decay=0.01)
    for step in range(4):
        rows = np.arange(R) if step == 0 else rng.integers(0, R, 3)
        opt_s.catch_up(sp, rows)
        np.testing.assert_allclose(sp.numpy()[rows], de.numpy()[rows], rtol=1e-6, atol=1e-7)
        vals = np.tanh(sp.numpy()[rows]) + np.float32(0.1)  # closed loop: grads from the rows
        full = np.zeros((R, D), np.float32)
        np.add.at(full, rows, vals)
        sp.grad = ae.RowSparseGrad(rows, vals)
        de.grad = cuda().to_device(full)
        opt_s.step()
        opt_d.step()
    opt_s.flush()
    np.testing.assert_allclose(sp.numpy(), de.numpy(), rtol=1e-6, atol=1e-7)
    if K.simulated():
        np.testing.assert_array_equal(sp.numpy(), de.numpy())
