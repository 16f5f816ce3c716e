"""Mixed precision on device="cuda" (kernels/cuda/mixed.py) vs the numpy reference and the CPU.

In CI this runs in numba's CUDA simulator, where results are bit-identical to the reference;
on a GPU, FMA contraction allows a few ulp on the float32 master (see test_cuda.py).
"""
import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine.kernels import cuda as K
from adamax_engine.kernels import halfmath
from adamax_engine.kernels import layout as L
from adamax_engine.kernels import reference as ref
from adamax_engine.step import tables as steptables
from adamax_engine.kernels.halfbits import BFLOAT16, FLOAT16

try:  # bfloat16 cases need ml_dtypes (numpy has no bfloat16); float16 ones run anyway
    import ml_dtypes
    BF16 = np.dtype(ml_dtypes.bfloat16)
    LOW = [(np.dtype(np.float16), FLOAT16), (BF16, BFLOAT16)]
except ImportError:
    BF16 = None
    LOW = [(np.dtype(np.float16), FLOAT16)]
IDS = ["fp16", "bf16"][:len(LOW)]


@pytest.mark.parametrize("dtype,code", LOW, ids=IDS)
def test_exact_arithmetic_conversions_on_every_input(dtype, code):
    """halfmath (what the CUDA kernels run) == numpy / ml_dtypes, without any bitcast."""
    bits = np.arange(65536, dtype=np.uint16)
    expect = bits.view(dtype).astype(np.float32)
    got = np.array([halfmath.widen(int(h), code) for h in bits], np.float32)
    nan = np.isnan(expect)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), expect[~nan].view(np.uint32))
    assert np.isnan(got[nan]).all()
    rng = np.random.default_rng(2)
    finite = np.sort(expect[np.isfinite(expect)])
    x = np.concatenate([
        rng.integers(0, 2 ** 32, 50_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
        finite[::7], ((finite[:-1] + np.diff(finite) / 2).astype(np.float32))[::7],
        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65520, 3.4e38, 1e-45], np.float32)])
    with np.errstate(all="ignore"):
        want = x.astype(dtype).view(np.uint16)
    down = np.array([halfmath.narrow(v, code) for v in x], np.uint16)
    nan = np.isnan(x)
    np.testing.assert_array_equal(down[~nan], want[~nan])
    assert np.isnan(down[nan].view(dtype).astype(np.float32)).all()
    np.testing.assert_array_equal(down[nan] >> 15, want[nan] >> 15)  # a NaN keeps its sign
    assert (down[nan] >> 15).any() and not (down[nan] >> 15).all()  # (random bits: both)


pytestmark = pytest.mark.skipif(not K.available(), reason="no CUDA GPU and no simulator")


def cuda():
    from numba import cuda as c
    return c


SIM = K.simulated()
SIZES = [1, 7, 0, 33, 8, 165, 3] if SIM else [1, 7, 0, 1023, 65537, 8, 16385, 3, 2_000_003]
CHUNK = 100 if SIM else L.CHUNK


@pytest.mark.parametrize("dtype", [d for d, _ in LOW], ids=IDS)
@pytest.mark.parametrize("flavor", [L.PADDLE, L.TORCH, L.KERAS])
def test_mixed_kernels_match_reference(rng, dtype, flavor):
    from adamax_engine.kernels.cuda import mixed as cuda_mixed
    sizes = SIZES
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    chunks = L.build_chunk_table(offsets, sizes, CHUNK)
    n_seg, n = len(sizes), int(sum(sizes))
    hyper, flags = L.empty_tables(n_seg, np.float32)
    for s in range(n_seg):
        b1, b2, eps = ref.paddle_hyper(np.float32, rng.uniform(0, 0.99), rng.uniform(0.5, 0.999),
                                       10 ** rng.uniform(-8, -3))
        hyper[s, [L.BETA1, L.ONE_MINUS_BETA1, L.BETA2, L.EPS]] = [b1, 1 - b1, b2, eps]
        hyper[s, [L.DECAY, L.GRAD_SCALE]] = rng.uniform(0.01, 0.5, 2)
        hyper[s, L.CLIP_MIN], hyper[s, L.CLIP_MAX] = -rng.uniform(0.1, 1), rng.uniform(0.1, 1)
        flags[s] = [s != 3, s % 3, s % 2, (s // 2) % 2]
    lr = 0.01
    lr_mult = rng.uniform(0.5, 2, n_seg).astype(np.float32)
    beta1_pow = rng.uniform(0.1, 0.9, n_seg).astype(np.float32)
    beta1_f64, steps = rng.uniform(0.5, 0.99, n_seg), rng.integers(0, 50, n_seg)
    scale_grad = flags[:, L.SCALE_GRAD].copy()
    steptables.begin_step(lr, flavor, flags[:, L.ACTIVE].astype(bool), np.ones(n_seg, bool),
                          beta1_pow.copy(), beta1_pow, beta1_f64, steps, lr_mult, hyper, flags)
    flags[:, L.SCALE_GRAD] = scale_grad
    params = rng.standard_normal(n).astype(dtype)
    grads = (2 * rng.standard_normal(n)).astype(dtype)
    master = params.astype(np.float32)
    m = (0.1 * rng.standard_normal(n)).astype(np.float32)
    u = np.abs(rng.standard_normal(n)).astype(np.float32)
    expect = [a.copy() for a in (params, grads, master, m, u)]
    ref.mixed_update(*expect, chunks, hyper, flags, flavor)
    c = cuda()
    dev = [c.to_device(a) for a in (params.view(np.uint16), grads.view(np.uint16), master, m, u)]
    k = cuda_mixed.kernels()
    k.update[K.grid_for(len(chunks)), k.threads](
        *dev[2:3], dev[1], *dev[3:], c.to_device(chunks), c.to_device(hyper), c.to_device(flags),
        flavor, c.to_device(np.zeros(1, np.int32)), lr, c.to_device(lr_mult),
        c.to_device(beta1_pow), c.to_device(beta1_f64), c.to_device(steps),
        (dev[0], BFLOAT16 if dtype == BF16 else FLOAT16))
    got = [d.copy_to_host() for d in dev]
    if SIM:
        np.testing.assert_array_equal(got[0], expect[0].view(np.uint16))
        for g, e, name in zip(got[2:], expect[2:], ["master", "moment", "inf_norm"]):
            np.testing.assert_array_equal(g, e, err_msg=name)
    else:
        np.testing.assert_allclose(got[2], expect[2], rtol=1e-6, atol=1e-6)
    # the reduction widens the same way
    partial = c.device_array(len(chunks), np.float32)
    bad = c.device_array(len(chunks), np.int32)
    clip_table = np.zeros((n_seg, 2), np.int64)
    k.sumsq_partials[K.grid_for(len(chunks)), k.threads](
        dev[1], c.to_device(chunks), c.to_device(flags), c.to_device(clip_table), True, partial,
        bad, BFLOAT16 if dtype == BF16 else FLOAT16)
    sums = np.zeros(n_seg, np.float32)
    np.add.at(sums, chunks[:, 0], partial.copy_to_host())
    want, _ = ref.segment_sumsq(grads.astype(np.float32), chunks, flags)
    np.testing.assert_allclose(sums, want, rtol=1e-5)


SHAPES = [(3, 4), (5,), (2, 3, 2), (1,), (79,)] if SIM else [(512, 1024), (1024,), (3, 77, 5),
                                                            (1,), (70001,)]


@pytest.mark.parametrize("clip", [None, "value", "global"])
def test_float16_device_parameters_match_cpu(rng, clip, tmp_path):
    grad_clip = {None: None, "value": ae.ClipGradByValue(0.5),
                 "global": ae.ClipGradByGlobalNorm(0.7)}[clip]
    values = [rng.standard_normal(s).astype(np.float16) for s in SHAPES]
    host = [ae.Parameter(v.copy(), name=f"p{i}") for i, v in enumerate(values)]
    dev = [ae.Parameter(cuda().to_device(v), name=f"p{i}") for i, v in enumerate(values)]
    kw = dict(multi_precision=True, grad_clip=grad_clip, weight_decay=0.01, skip_nonfinite=True)
    opt_h = ae.Adamax(0.05, parameters=host, **kw)
    opt_d = ae.Adamax(0.05, parameters=dev, device="cuda", **kw)
    for _ in range(3):
        for h, d in zip(host, dev):
            g = rng.standard_normal(h.shape).astype(np.float16)
            h.grad, d.grad = g, cuda().to_device(g)
        opt_h.step()
        opt_d.step()
    mh, md = opt_h.state_dict()["master_weights"], opt_d.state_dict()["master_weights"]
    for h, d in zip(host, dev):
        assert d.numpy().dtype == np.float16
        if SIM and clip != "global":
            np.testing.assert_array_equal(d.numpy(), h.data)
            np.testing.assert_array_equal(md[d.name], mh[h.name])
        else:  # the global norm's summation order differs (and FMA on a GPU)
            np.testing.assert_allclose(md[d.name], mh[h.name], rtol=1e-5, atol=1e-6)
    opt_d.save(tmp_path / "gpu16.npz")  # GPU fp16 -> CPU fp16
    cpu = [ae.Parameter(np.zeros(s, np.float16), name=f"p{i}") for i, s in enumerate(SHAPES)]
    opt_c = ae.Adamax.load(tmp_path / "gpu16.npz", cpu)
    for c_, d in zip(cpu, dev):
        np.testing.assert_array_equal(c_.data, d.numpy())
    np.testing.assert_array_equal(opt_c.state_dict()["master_weights"]["p0"], md["p0"])
