"""kernels.cuda and Adamax(device="cuda") vs the numpy reference.

Without a GPU these run in numba's simulator (conftest sets NUMBA_ENABLE_CUDASIM=1) at tiny
sizes, where results are bit-identical to the reference. On a GPU the same tests run at real
sizes; NVVM contracts a*b+c into FMAs there, so elementwise results may differ by a few ulp.
"""
import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine.kernels import cuda as K
from adamax_engine.kernels import layout as L
from adamax_engine.kernels import reference as ref
from adamax_engine.step import tables as steptables

pytestmark = pytest.mark.skipif(not K.available(), reason="no CUDA GPU and no simulator")
SIM = K.simulated()
# simulator: tiny tensors and tiny chunks (each simulated thread is a Python thread)
SIZES = [1, 7, 0, 33, 8, 165, 3] if SIM else [1, 7, 0, 1023, 65537, 8, 16385, 3, 2_000_003]
CHUNK = 100 if SIM else L.CHUNK  # sim: 16 threads, so chunks of 100 use the 4-wide loop


def cuda():
    from numba import cuda as c
    return c


def assert_close(got, expect, what, ulps=None):
    """Bit-exact in the simulator; on a GPU, within a few ulp (FMA contraction)."""
    if SIM and ulps is None:
        np.testing.assert_array_equal(got, expect, err_msg=what)
        return
    tol = np.finfo(expect.dtype).eps * (ulps or 8)
    np.testing.assert_allclose(got, expect, rtol=tol, atol=tol * max(1.0, np.abs(expect).max()),
                               err_msg=what)


def make_tables(rng, dtype, sizes, flags_for):
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    chunks = L.build_chunk_table(offsets, sizes, CHUNK)
    n_seg, T = len(sizes), np.dtype(dtype).type
    hyper, flags = L.empty_tables(n_seg, dtype)
    for s in range(n_seg):
        b1, b2, eps = ref.paddle_hyper(dtype, rng.uniform(0, 0.99), rng.uniform(0.5, 0.9999),
                                       10 ** rng.uniform(-9, -3))
        hyper[s, [L.BETA1, L.ONE_MINUS_BETA1, L.BETA2, L.EPS]] = [b1, T(1) - b1, b2, eps]
        hyper[s, L.DECAY] = T(rng.uniform(0, 0.1))
        hyper[s, L.GRAD_SCALE] = T(rng.uniform(0.1, 1.0))
        hyper[s, L.CLIP_MIN], hyper[s, L.CLIP_MAX] = T(-rng.uniform(0.1, 1)), T(rng.uniform(0.1, 1))
        flags[s] = flags_for(s)
    return offsets, chunks, hyper, flags


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("flavor", sorted(L.FLAVORS.values()))
def test_update_kernel_matches_reference(rng, dtype, flavor):
    sizes = SIZES
    _, chunks, hyper, flags = make_tables(rng, dtype, sizes,
                                          lambda s: [s != 3, s % 3, s % 2, (s // 2) % 2])
    n_seg, n = len(sizes), int(sum(sizes))
    lr = float(rng.uniform(1e-3, 0.1))
    lr_mult = rng.uniform(0.5, 2, n_seg).astype(dtype)
    beta1_pow = rng.uniform(0.1, 0.9, n_seg).astype(dtype)
    beta1_f64 = rng.uniform(0.5, 0.99, n_seg)
    steps = rng.integers(0, 50, n_seg)
    active = flags[:, L.ACTIVE].astype(bool)
    scale_grad = flags[:, L.SCALE_GRAD].copy()
    # the host fills LR_T exactly as the device forms it (steptables.begin_step)
    steptables.begin_step(lr, flavor, active, np.ones(n_seg, bool), beta1_pow.copy(), beta1_pow,
                          beta1_f64, steps, lr_mult, hyper, flags)
    flags[:, L.SCALE_GRAD] = scale_grad
    arrays = [rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype),
              (0.1 * rng.standard_normal(n)).astype(dtype),
              np.abs(rng.standard_normal(n)).astype(dtype)]
    expect = [a.copy() for a in arrays]
    ref.fused_update(*expect, chunks, hyper, flags, flavor)
    c = cuda()
    dev = [c.to_device(a) for a in arrays]
    k = K.kernels(dtype)
    skip = c.to_device(np.zeros(1, np.int32))
    k.update[K.grid_for(len(chunks)), k.threads](
        *dev, c.to_device(chunks), c.to_device(hyper), c.to_device(flags), flavor, skip, lr,
        c.to_device(lr_mult), c.to_device(beta1_pow), c.to_device(beta1_f64), c.to_device(steps),
        0)
    got = [d.copy_to_host() for d in dev]
    for name, e, g in zip(["param", "grad", "moment", "inf_norm"], expect, got):
        assert_close(g, e, name)
    inactive = slice(int(sum(sizes[:3])), int(sum(sizes[:4])))
    np.testing.assert_array_equal(got[0][inactive], arrays[0][inactive])
    assert not np.array_equal(got[0], arrays[0])
    # skip[0] set: nothing moves
    skip = c.to_device(np.ones(1, np.int32))
    k.update[K.grid_for(len(chunks)), k.threads](
        *dev, c.to_device(chunks), c.to_device(hyper), c.to_device(flags), flavor, skip, lr,
        c.to_device(lr_mult), c.to_device(beta1_pow), c.to_device(beta1_f64), c.to_device(steps),
        0)
    np.testing.assert_array_equal(dev[0].copy_to_host(), got[0])


def run_reduction(rng, dtype, sizes, grads, clip_kind, skip_nonfinite=False, auto_skip=0,
                  active=None):
    """sumsq_partials + finish_clip; returns (seg_sumsq, hyper, flags, skip) on the host."""
    n_seg = len(sizes)
    active = np.ones(n_seg, bool) if active is None else active
    _, chunks, hyper, flags = make_tables(rng, dtype, sizes,
                                          lambda s: [active[s], 0, 0, 0])
    clip_table = np.zeros((n_seg, 2), np.int64)
    clip_table[:, 0] = clip_kind
    clip_norm = np.full(n_seg, 1.5, dtype)
    counts = np.bincount(chunks[:, 0], minlength=n_seg)
    seg_chunks = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    c, k = cuda(), K.kernels(dtype)
    d_hyper, d_flags, d_skip = c.to_device(hyper), c.to_device(flags), c.to_device(np.zeros(1, np.int32))
    partial = c.device_array(max(len(chunks), 1), dtype)
    bad = c.device_array(max(len(chunks), 1), np.int32)
    seg_sumsq = c.device_array(n_seg, dtype)
    k.sumsq_partials[K.grid_for(len(chunks)), k.threads](
        c.to_device(grads), c.to_device(chunks), d_flags, c.to_device(clip_table), skip_nonfinite,
        partial, bad, 0)
    norms = K.NormInputs(partial, bad, c.to_device(seg_chunks),
                         c.to_device(np.zeros(n_seg, dtype)),  # no row-sparse sums
                         c.to_device(np.zeros(n_seg, np.int32)))
    clips = K.ClipTables(c.to_device(clip_table), c.to_device(clip_norm),
                         c.to_device(np.array([auto_skip], np.int32)))
    k.finish_clip[1, k.threads](norms, clips, d_hyper, d_flags, seg_sumsq, d_skip, skip_nonfinite,
                                True, 1)
    return (seg_sumsq.copy_to_host(), d_hyper.copy_to_host(), d_flags.copy_to_host(),
            int(d_skip.copy_to_host()[0]), chunks, flags)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reduction_and_norm_clips(rng, dtype):
    sizes = SIZES
    grads = rng.standard_normal(int(sum(sizes))).astype(dtype)
    active = np.array([s != 1 for s in range(len(sizes))])
    ref_flags = np.zeros((len(sizes), 1), np.int64)
    ref_flags[:, 0] = active
    _, chunks0, _, _ = make_tables(rng, dtype, sizes, lambda s: [1, 0, 0, 0])
    expect, _ = ref.segment_sumsq(grads, chunks0, ref_flags)
    # per-tensor clip
    sums, hyper, flags, skip, _, _ = run_reduction(rng, dtype, sizes, grads, K.BY_NORM,
                                                   active=active)
    assert_close(sums, expect, "sumsq", ulps=64)
    (scale, apply), = ae.ClipGradByNorm(1.5).norm_scales([expect.astype(dtype)])
    live = active & (np.array(sizes) > 0)
    assert_close(hyper[live, L.GRAD_SCALE], np.where(apply, scale, 1).astype(dtype)[live],
                 "by-norm scale", ulps=64)
    np.testing.assert_array_equal(flags[live, L.SCALE_GRAD], apply[live])
    assert skip == 0
    # global norm, with and without auto_skip_clip
    for auto in (False, True):
        clip = ae.ClipGradByGlobalNorm(1.5, auto_skip_clip=auto)
        (scale, apply), = clip.norm_scales([expect[active].astype(dtype)])
        sums, hyper, flags, _, _, _ = run_reduction(rng, dtype, sizes, grads, K.BY_GLOBAL_NORM,
                                                    auto_skip=int(auto), active=active)
        assert isinstance(apply, bool) and np.shape(scale) == ()  # one factor for all
        want = np.full(int(active.sum()), scale if apply else 1, dtype)
        assert_close(hyper[active, L.GRAD_SCALE], want, "global scale", ulps=64)
        np.testing.assert_array_equal(flags[active, L.SCALE_GRAD], apply)


@pytest.mark.filterwarnings("ignore:overflow")
def test_nonfinite_sets_skip_only_when_asked(rng):
    sizes = SIZES
    grads = rng.standard_normal(int(sum(sizes))).astype(np.float32)
    grads[int(sum(sizes[:5])) + 2] = np.inf
    for asked in (False, True):
        _, _, _, skip, _, _ = run_reduction(rng, np.float32, sizes, grads, K.NO_NORM_CLIP,
                                            skip_nonfinite=asked)
        assert skip == int(asked)
    # an overflowing square of a finite grad is not "non-finite"
    big = np.full(int(sum(sizes)), 3e38, np.float32)
    _, _, _, skip, _, _ = run_reduction(rng, np.float32, sizes, big, K.NO_NORM_CLIP,
                                        skip_nonfinite=True)
    assert skip == 0


SHAPES = [(3, 4), (5,), (2, 3, 2), (1,), (79,)] if SIM else [(512, 1024), (1024,), (3, 77, 5),
                                                            (1,), (70001,)]


def twin_optimizers(rng, dtype, **kw):
    """The same model twice: numpy Parameters (cpu) and device Parameters (cuda)."""
    values = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    host = [ae.Parameter(v.copy(), name=f"p{i}") for i, v in enumerate(values)]
    dev = [ae.Parameter(cuda().to_device(v), name=f"p{i}") for i, v in enumerate(values)]

    def groups(ps):
        return [{"params": ps[:2], "learning_rate": 0.5, "weight_decay": ae.L1Decay(0.01)},
                {"params": ps[2:], "beta1": 0.8}]
    return (host, ae.Adamax(0.01, parameters=groups(host), **kw),
            dev, ae.Adamax(0.01, parameters=groups(dev), device="cuda", **kw))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_skip_nonfinite(rng, device):
    values = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    put = (lambda a: cuda().to_device(a)) if device == "cuda" else (lambda a: a.copy())
    params = [ae.Parameter(put(v)) for v in values]
    opt = ae.Adamax(0.1, parameters=params, device=device, skip_nonfinite=True,
                    grad_clip=ae.ClipGradByGlobalNorm(1.0))
    host = lambda p: p.numpy()  # noqa: E731
    grads = [rng.standard_normal(v.shape).astype(np.float32) for v in values]
    grads[-1].reshape(-1)[-1] = np.nan
    for p, g in zip(params, grads):
        p.grad = put(g)
    opt.step()
    for p, v in zip(params, values):
        np.testing.assert_array_equal(host(p), v)  # nothing moved
    state = opt.state_dict()
    beta1_pow = state[f"{params[0].name}_beta1_pow_acc_0"]
    np.testing.assert_array_equal(beta1_pow, np.float32(0.9) * np.float32(0.9))  # advanced
    assert opt.skipped_steps == 1
    grads[-1].reshape(-1)[-1] = 0.5
    for p, g in zip(params, grads):
        p.grad = put(g)
    opt.step()
    assert not np.array_equal(host(params[0]), values[0])
    assert opt.skipped_steps == 1


def test_cuda_state_dict_round_trip(rng):
    host, opt_h, dev, opt_d = twin_optimizers(rng, np.float32)
    for p in dev:
        p.grad = cuda().to_device(rng.standard_normal(p.shape).astype(np.float32))
    opt_d.step()
    state = opt_d.state_dict()
    dev2 = [ae.Parameter(cuda().to_device(p.numpy()), name=p.name) for p in dev]
    opt2 = ae.Adamax(0.01, parameters=[{"params": dev2[:2], "learning_rate": 0.5,
                                        "weight_decay": ae.L1Decay(0.01)},
                                       {"params": dev2[2:], "beta1": 0.8}], device="cuda")
    opt2.set_state_dict(state)
    for p, q in zip(dev, dev2):
        g = rng.standard_normal(p.shape).astype(np.float32)
        p.grad.copy_to_device(g)  # in place, into the adopted view
        q.grad = cuda().to_device(g)
    opt_d.step()
    opt2.step()
    for p, q in zip(dev, dev2):
        np.testing.assert_array_equal(q.numpy(), p.numpy())


def test_checkpoint_gpu_to_cpu_and_back(rng, tmp_path):
    host, opt_h, dev, opt_d = twin_optimizers(rng, np.float32, skip_nonfinite=True,
                                              grad_clip=ae.ClipGradByValue(0.5))

    def feed(params, grads, to_dev):
        for p, g in zip(params, grads):
            p.grad = cuda().to_device(g) if to_dev else g.copy()
    for _ in range(2):
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in dev]
        feed(dev, grads, True)
        opt_d.step()
    grads[0].reshape(-1)[0] = np.inf
    feed(dev, grads, True)
    opt_d.step()  # skipped, counted on the device
    opt_d.save(tmp_path / "gpu.npz")
    cpu = [ae.Parameter(np.zeros(p.shape, np.float32), name=p.name) for p in dev]
    opt_c = ae.Adamax.load(tmp_path / "gpu.npz", cpu)
    assert opt_c.skipped_steps == 1
    grads = [rng.standard_normal(p.shape).astype(np.float32) for p in dev]
    feed(dev, grads, True)
    feed(cpu, grads, False)
    opt_d.step()
    opt_c.step()
    for p, q in zip(dev, cpu):
        assert_close(q.data, p.numpy(), p.name)
    opt_c.save(tmp_path / "cpu.npz")
    back = [ae.Parameter(cuda().to_device(np.zeros(p.shape, np.float32)), name=p.name)
            for p in dev]
    opt_b = ae.Adamax.load(tmp_path / "cpu.npz", back)  # device follows the parameters
    assert opt_b.skipped_steps == 1
    for p, q in zip(back, cpu):
        np.testing.assert_array_equal(p.numpy(), q.data)
    sb, sc = opt_b.state_dict(), opt_c.state_dict()
    for key in sc:
        np.testing.assert_array_equal(sb[key], sc[key], err_msg=key)


def test_cuda_bad_input(rng):
    host_param = ae.Parameter(np.ones(3, np.float32), name="h")
    with pytest.raises(ValueError, match="'h' is a cpu array but device='cuda'"):
        ae.Adamax(0.1, parameters=[host_param], device="cuda")
    d = ae.Parameter(cuda().to_device(np.ones(3, np.float32)), name="d")
    half = ae.Parameter(cuda().to_device(np.ones(3, np.float16)), name="f16")
    with pytest.raises(ValueError, match="mode: 'borrow' on device='cuda' takes float32/float64"):
        ae.Adamax(0.1, parameters=[half], device="cuda", mode="borrow", multi_precision=True)
    with pytest.raises(ValueError, match="'d' is a cuda array but device='cpu'"):
        ae.Adamax(0.1, parameters=[d])
    opt = ae.Adamax(0.1, parameters=[d], device="cuda")
    before = d.numpy()
    d.grad = cuda().to_device(np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"d.grad: expected shape \(3,\)"):
        opt.step()
    d.grad = cuda().to_device(np.ones(3, np.float64))
    with pytest.raises(TypeError, match="d.grad: expected dtype float32"):
        opt.step()
    np.testing.assert_array_equal(d.numpy(), before)
    with pytest.raises(TypeError, match="skip_nonfinite: expected a bool"):
        ae.Adamax(0.1, parameters=[d], device="cuda", skip_nonfinite=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_borrow_mode_on_device_equals_adopt(rng, dtype):
    """mode="borrow" on the GPU (the caller's arrays stepped in place: address tables on a GPU,
    staging in the simulator) gives adopt mode's numbers, with groups, norm clips, decay,
    skip_nonfinite, new grad arrays every step and a parameter without a grad."""
    values = [rng.standard_normal(s).astype(dtype) for s in SHAPES]

    def build(mode):
        ps = [ae.Parameter(cuda().to_device(v), name=f"p{i}") for i, v in enumerate(values)]
        groups = [{"params": ps[:2], "grad_clip": ae.ClipGradByGlobalNorm(1.0),
                   "weight_decay": ae.L2Decay(0.01)},
                  {"params": ps[2:], "grad_clip": ae.ClipGradByNorm(0.5), "beta1": 0.8,
                   "weight_decay": ae.L1Decay(0.01)}]
        return ps, ae.Adamax(0.05, parameters=groups, device="cuda", mode=mode,
                             skip_nonfinite=True)
    (pb, ob), (pa, oa) = build("borrow"), build("adopt")
    arrays = [p.data for p in pb]  # borrow: these very arrays are stepped
    for step in range(4):
        for k, (b, a) in enumerate(zip(pb, pa)):
            g = rng.standard_normal(b.shape).astype(dtype)
            if step == 2 and k == 1:
                g.reshape(-1)[0] = np.inf  # a skipped step
            b.grad, a.grad = (None, None) if k == 3 else (cuda().to_device(g),
                                                           cuda().to_device(g))
        ob.step()
        oa.step()
    assert ob.skipped_steps == oa.skipped_steps == 1
    for arr, b, a in zip(arrays, pb, pa):
        assert b.data is arr
        got, want = arr.copy_to_host(), a.numpy()
        assert_close(got, want, b.name, ulps=None if SIM else 8)
    sb, sa = ob.state_dict(), oa.state_dict()
    for key in sa:
        assert_close(sb[key], sa[key], key, ulps=None if SIM else 8)


def test_cuda_clear_grad(rng):
    values = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    params = [ae.Parameter(cuda().to_device(v)) for v in values]
    opt = ae.Adamax(0.1, parameters=params, device="cuda")
    for p in params:
        p.grad = cuda().to_device(rng.standard_normal(p.shape).astype(np.float32))
    opt.step()
    opt.clear_grad()  # set_to_zero=True: the adopted grads become zeros, in place
    for p in params:
        np.testing.assert_array_equal(p.grad.copy_to_host(), 0)
    opt.clear_grad(set_to_zero=False)
    assert all(p.grad is None for p in params)
    before = [p.numpy() for p in params]
    opt.step()  # no grads: nothing moves
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.numpy(), b)
