"""multi_precision: float16/bfloat16 params with float32 master weights, bit-exact vs fp32 + round."""
import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine.kernels import halfbits as H
from adamax_engine.kernels import layout as L
from adamax_engine.kernels import mixed
from adamax_engine.kernels import reference as ref

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
LOW = [np.dtype(np.float16), BF16]
SHAPES = [(7, 5), (33,), (1,), (3, 1, 4), (20000,)]


def store_code(dtype):
    return H.BFLOAT16 if dtype == BF16 else H.FLOAT16


@pytest.mark.parametrize("dtype,code", [(np.float16, H.FLOAT16), (np.float16, 2),
                                        (BF16, H.BFLOAT16)], ids=["fp16", "fp16-soft", "bf16"])
def test_conversions_match_numpy_on_every_input(dtype, code):
    bits = np.arange(65536, dtype=np.uint16)
    up = H.widen(bits, code)
    expect = bits.view(dtype).astype(np.float32)
    nan = np.isnan(expect)
    np.testing.assert_array_equal(up[~nan].view(np.uint32), expect[~nan].view(np.uint32))
    assert np.isnan(up[nan]).all()
    rng = np.random.default_rng(1)
    finite = expect[~nan & np.isfinite(expect)]
    finite.sort()
    x = np.concatenate([
        rng.integers(0, 2 ** 32, 1_000_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
        finite, (finite[:-1] + np.diff(finite) / 2).astype(np.float32),  # exact ties
        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65520, 3.4e38, 1e-45], np.float32)])
    with np.errstate(all="ignore"):
        down = H.narrow(x, code)
        expect = x.astype(dtype).view(np.uint16)
    nan = np.isnan(x)
    np.testing.assert_array_equal(down[~nan], expect[~nan])
    assert np.isnan(down[nan].view(dtype).astype(np.float32)).all()


def random_tables(rng, sizes):
    offsets, total = L.segment_offsets(sizes)
    chunks = L.build_chunk_table(offsets, sizes, chunk=1000)
    hyper, flags = L.empty_tables(len(sizes), np.float32)
    for s in range(len(sizes)):
        b1, b2, eps = ref.paddle_hyper(np.float32, rng.uniform(0, 0.99), rng.uniform(0.5, 0.999),
                                       10 ** rng.uniform(-8, -3))
        hyper[s, [L.BETA1, L.ONE_MINUS_BETA1, L.BETA2, L.EPS]] = [b1, 1 - b1, b2, eps]
        hyper[s, [L.LR_T, L.DECAY, L.GRAD_SCALE]] = rng.uniform(0.001, 0.1, 3)
        hyper[s, L.CLIP_MIN], hyper[s, L.CLIP_MAX] = -rng.uniform(0.1, 1), rng.uniform(0.1, 1)
        flags[s] = [s != 2, s % 3, s % 2, (s // 2) % 2]
    return offsets, total, chunks, hyper, flags


def assert_fused_equals_reference(arrays, chunks, hyper, flags, flavor, dtype):
    """mixed.fused_update on copies of (params, grads, master, m, u) equals the reference bit
    for bit; returns the reference's results."""
    want = [a.copy() for a in arrays]
    ref.mixed_update(*want, chunks, hyper, flags, flavor)
    got = [a.copy() for a in arrays]
    mixed.fused_update(got[0].view(np.uint16), got[1].view(np.uint16), *got[2:], chunks, hyper,
                       flags, flavor, store_code(dtype))
    for g, w, name in zip(got, want, ["param", "grad", "master", "moment", "inf_norm"]):
        np.testing.assert_array_equal(g.view(np.uint8), w.view(np.uint8), err_msg=name)
    return want


@pytest.mark.parametrize("dtype", LOW, ids=["fp16", "bf16"])
@pytest.mark.parametrize("flavor", sorted(L.FLAVORS.values()))
def test_kernels_equal_fp32_reference_then_rounded(rng, dtype, flavor):
    sizes = [7, 1, 33, 1000, 2501, 5]
    offsets, total, chunks, hyper, flags = random_tables(rng, sizes)
    params = rng.standard_normal(total).astype(dtype)
    grads = (rng.standard_normal(total) * 3).astype(dtype)
    master = params.astype(np.float32) + rng.standard_normal(total).astype(np.float32) * 1e-3
    m = rng.standard_normal(total).astype(np.float32)
    u = np.abs(rng.standard_normal(total)).astype(np.float32)
    want = assert_fused_equals_reference((params, grads, master, m, u), chunks, hyper, flags,
                                         flavor, dtype)
    # borrow twin: separate 16-bit arrays given by address
    pl = [params[o:o + n].copy() for o, n in zip(offsets, sizes)]
    gl = [grads[o:o + n].copy() for o, n in zip(offsets, sizes)]
    st = [a.copy() for a in (master, m, u)]
    addrs = [np.array([a.ctypes.data for a in arrs], np.int64) for arrs in (pl, gl)]
    mixed.borrowed_update(*addrs, *st, offsets, chunks, hyper, flags, flavor, store_code(dtype),
                          np.empty(0, np.uint16))
    for s, (o, n) in enumerate(zip(offsets, sizes)):
        np.testing.assert_array_equal(pl[s].view(np.uint16), want[0][o:o + n].view(np.uint16))
    for a, w in zip(st, want[2:]):
        np.testing.assert_array_equal(a, w)
    sums, bad = mixed.segment_sumsq(grads.view(np.uint16), chunks, flags, store_code(dtype))
    rsums, rbad = ref.segment_sumsq(grads.astype(np.float32), chunks, flags)
    np.testing.assert_array_equal(sums, rsums)
    np.testing.assert_array_equal(bad, rbad)


CASES = [(clip, scale, decay) for clip in (0, 1) for scale in (0, 1)
         for decay in (L.NO_DECAY, L.L2_DECAY, L.L1_DECAY)]


@pytest.mark.parametrize("dtype", LOW, ids=["fp16", "bf16"])
@pytest.mark.parametrize("flavor", sorted(L.FLAVORS.values()))
def test_every_flag_case_bit_exact_with_special_values(rng, dtype, flavor):
    """Each (value clip, norm scale, decay) case of a segment (the common ones run a loop
    specialised per 16-bit type) against the reference, with NaN, inf, -0.0 and values
    that are subnormal in fp16 among the 16-bit grads and the float32 master weights."""
    sizes = list(rng.integers(1, 300, len(CASES)) * 2 + 1)
    offsets, total, chunks, hyper, flags = random_tables(rng, sizes)
    for s, (clip, scale, decay) in enumerate(CASES):
        flags[s] = [1, decay, clip, scale]
    special = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-7, -1e-7]
    grads = (rng.standard_normal(total) * 3).astype(np.float32)
    master = rng.standard_normal(total).astype(np.float32)
    for a in (grads, master):
        a[rng.choice(total, 40, replace=False)] = rng.choice(special, 40)
    grads = grads.astype(dtype)
    params = master.astype(dtype)
    m = rng.standard_normal(total).astype(np.float32)
    u = np.abs(rng.standard_normal(total)).astype(np.float32)
    want = assert_fused_equals_reference((params, grads, master, m, u), chunks, hyper, flags,
                                         flavor, dtype)
    assert not np.array_equal(want[2], master, equal_nan=True)


def twins(rng, dtype, mode="adopt", **kw):
    values = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    low = [ae.Parameter(v.copy(), name=f"p{i}") for i, v in enumerate(values)]
    wide = [ae.Parameter(v.astype(np.float32), name=f"p{i}") for i, v in enumerate(values)]
    groups = lambda ps: [{"params": ps[:2], "beta1": 0.8, "learning_rate": 0.5},  # noqa: E731
                         {"params": ps[2:], "weight_decay": ae.L1Decay(0.01)}]
    return (low, ae.Adamax(0.05, parameters=groups(low), multi_precision=True, mode=mode, **kw),
            wide, ae.Adamax(0.05, parameters=groups(wide), mode=mode, **kw))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("mode", ["adopt", "borrow"])
def test_torch_low_precision_parameters(rng, dtype, mode):
    torch = pytest.importorskip("torch")
    np_dtype = np.dtype(np.float16) if dtype == "float16" else BF16
    tdtype = getattr(torch, dtype)
    values = [rng.standard_normal(s).astype(np_dtype) for s in SHAPES]
    tps = [torch.nn.Parameter(torch.from_numpy(v.view(np.int16).copy()).view(tdtype))
           for v in values]
    nps = [ae.Parameter(v.copy()) for v in values]
    opt_t = ae.Adamax(0.05, parameters=tps, multi_precision=True, mode=mode)
    opt_n = ae.Adamax(0.05, parameters=nps, multi_precision=True)
    for _ in range(3):
        for t, n in zip(tps, nps):
            g = rng.standard_normal(n.shape).astype(np_dtype)
            t.grad = torch.from_numpy(g.view(np.int16).copy()).view(tdtype)
            n.grad = g
        opt_t.step()
        opt_n.step()
    for t, n in zip(tps, nps):
        assert t.dtype == tdtype
        np.testing.assert_array_equal(t.detach().view(torch.int16).numpy().view(np.uint16),
                                      n.data.view(np.uint16))


def test_bad_input_is_refused_and_nothing_changes(rng):
    with pytest.raises(TypeError, match="w.data: float16 parameters need multi_precision=True"):
        ae.Adamax(0.1, parameters=[ae.Parameter(np.ones(3, np.float16), name="w")])
    p = ae.Parameter(rng.standard_normal(5).astype(np.float16), name="w")
    opt = ae.Adamax(0.1, parameters=[p], multi_precision=True)
    before = p.data.copy()
    p.grad = np.ones(5, np.float32)
    with pytest.raises(TypeError, match="w.grad: expected dtype float16"):
        opt.step()
    np.testing.assert_array_equal(p.data, before)
    assert opt.state_dict() == {}
    with pytest.raises(TypeError, match="multi_precision: expected a bool"):
        ae.Adamax(0.1, parameters=[p], multi_precision=1)


def test_new_data_resets_the_master_and_skip_nonfinite(rng):
    p = ae.Parameter(rng.standard_normal(6).astype(np.float16), name="w")
    opt = ae.Adamax(0.1, parameters=[p], multi_precision=True, skip_nonfinite=True)
    p.grad = np.ones(6, np.float16)
    opt.step()
    fresh = rng.standard_normal(6).astype(np.float16)
    p.data = fresh.copy()  # assigned: the master restarts from it
    p.grad = np.full(6, np.inf, np.float16)
    opt.step()  # inf grad: skipped, nothing moves
    assert opt.skipped_steps == 1
    np.testing.assert_array_equal(p.data, fresh)
    np.testing.assert_array_equal(opt.state_dict()["master_weights"]["w"], fresh.astype(np.float32))


@pytest.mark.parametrize("dtype", LOW, ids=["fp16", "bf16"])
def test_state_dict_and_checkpoint_round_trip(rng, dtype, tmp_path):
    low, opt, _, _ = twins(rng, dtype)
    for p in low:
        p.grad = rng.standard_normal(p.shape).astype(dtype)
    opt.step()
    opt.save(tmp_path / "mp.npz")
    state = {k: (dict(v) if isinstance(v, dict) else v.copy()) for k, v in opt.state_dict().items()}
    other = [ae.Parameter(np.zeros(p.shape, dtype), name=p.name) for p in low]
    loaded = ae.Adamax.load(tmp_path / "mp.npz", other)
    for p, q in zip(low, other):
        np.testing.assert_array_equal(q.data.view(np.uint16), p.data.view(np.uint16))
    again, opt2, _, _ = twins(rng, dtype)
    opt2.set_state_dict(state)
    bad = dict(state, master_weights={"p0": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"state_dict\['master_weights'\]\['p0'\]: expected shape"):
        opt2.set_state_dict(bad)
    for p, q, r in zip(low, other, again):
        g = rng.standard_normal(p.shape).astype(dtype)
        p.grad, q.grad, r.grad = g, g.copy(), g.copy()
        r.data = p.data.copy()
    opt.step()
    loaded.step()
    opt2.step()
    for p, q in zip(low, other):
        np.testing.assert_array_equal(q.data.view(np.uint16), p.data.view(np.uint16))
    # opt2 got the state but its master restarted from the 16-bit data: equal only to rounding
    for p, r in zip(low, again):
        np.testing.assert_allclose(r.data.astype(np.float32), p.data.astype(np.float32),
                                   rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_paddle_low_precision_parameters_borrowed(rng, dtype):
    paddle = pytest.importorskip("paddle")
    np_dtype = np.dtype(np.float16) if dtype == "float16" else BF16
    values = [rng.standard_normal(s).astype(np_dtype) for s in SHAPES[:3]]
    pps = []
    for v in values:
        p = paddle.create_parameter(list(v.shape), dtype,
                                    default_initializer=paddle.nn.initializer.Constant(0.0))
        p.set_value(paddle.to_tensor(v.astype(np.float32)).astype(dtype))  # exact: v is 16-bit
        pps.append(p)
    nps = [ae.Parameter(v.copy()) for v in values]
    opt_p = ae.Adamax(0.05, parameters=pps, multi_precision=True)
    opt_n = ae.Adamax(0.05, parameters=nps, multi_precision=True)
    for _ in range(3):
        for p, n in zip(pps, nps):
            g = rng.standard_normal(n.shape).astype(np_dtype)
            p.grad = paddle.to_tensor(g.astype(np.float32)).astype(dtype)
            n.grad = g
        opt_p.step()
        opt_n.step()
    for p, n in zip(pps, nps):
        assert str(p.dtype) == f"paddle.{dtype}"
        got = p.detach().view(paddle.int16).numpy().view(np.uint16)
        np.testing.assert_array_equal(got, n.data.view(np.uint16))
