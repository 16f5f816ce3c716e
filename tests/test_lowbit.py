"""Low-bit optimizer state (``state_dtype="bfloat16"`` and ``"int8"``): the numba kernels equal
the numpy oracle bit for bit (here every flavor with both roundings, float64 and 16-bit
parameters, borrow mode, any thread count; tests/test_parity.py's table has every feature);
stochastic rounding is unbiased and keeps the inf-norm decaying where round-to-nearest leaves
it stuck; state bytes halve; state dicts and checkpoints round-trip; what is not supported is
refused with one clear line."""
import numba
import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine import cli
from adamax_engine.io import archive
from adamax_engine.kernels import lowbit_reference as R

SIZES = (1, 7, 33, 1000, 16385, 40001)
FEATURES = {
    "plain": {},
    "L2": {"weight_decay": 0.01},
    "L1": {"weight_decay": ae.L1Decay(0.001)},
    "value clip": {"grad_clip": ae.ClipGradByValue(0.5)},
    "global norm": {"grad_clip": ae.ClipGradByGlobalNorm(1.0)},
    "groups": {"groups": True},
}


def build(backend, state_dtype="bfloat16", flavor="paddle", feature="plain", rounding="stochastic",
          seed=0, mode="adopt", dtype=np.float32):
    rng = np.random.default_rng(seed)
    params = [ae.Parameter(rng.standard_normal(n).astype(dtype), name=f"p{i}")
              for i, n in enumerate(SIZES)]
    kw = dict(FEATURES[feature])
    if kw.pop("groups", False):
        params_arg = [{"params": params[:3], "beta1": 0.8, "learning_rate": 2.0},
                      {"params": params[3:], "beta2": 0.99, "epsilon": 1e-4}]
    else:
        params_arg = params
    opt = ae.Adamax(0.01, parameters=params_arg, flavor=flavor, backend=backend, mode=mode,
                    state_dtype=state_dtype, state_rounding=rounding, **kw)
    return params, opt


def grads(step, params, special=False):
    rng = np.random.default_rng(1000 + step)
    out = []
    for p in params:
        g = (rng.standard_normal(p.data.shape) * 10.0 ** rng.integers(-3, 2)).astype(p.data.dtype)
        if special and g.size > 8:
            g[:4] = [np.nan, np.inf, -np.inf, 1e-41]  # NaN, infinities, a subnormal
        out.append(g)
    return out


def run(params, opt, steps, special=False):
    for step in range(steps):
        for p, g in zip(params, grads(step, params, special)):
            p.grad = g
        opt.step()


def bits(params, opt):
    b = opt.registry.buckets[0]
    scales = [s.copy() for s in b.scales] if b.scales is not None else []
    return [p.data.copy() for p in params], [(b.moment.copy(), b.inf_norm.copy(), *scales)]


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
@pytest.mark.parametrize("flavor", ["paddle", "torch", "keras"])
@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_every_flavor_and_rounding_equals_the_oracle(state_dtype, flavor, rounding):
    """Each flavor with each rounding, on NaN/inf/subnormal grads and sizes crossing chunks,
    over six steps (tests/test_parity.py's table has every feature, path and dtype)."""
    feature = "plain"
    fast = build(None, state_dtype, flavor=flavor, feature=feature, rounding=rounding)
    oracle = build("reference", state_dtype, flavor=flavor, feature=feature, rounding=rounding)
    for params, opt in (fast, oracle):
        run(params, opt, 6, special=feature == "plain")
    (pa, sa), (pb, sb) = bits(*fast), bits(*oracle)
    for a, b in zip(pa, pb):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    for state_a, state_b in zip(sa, sb):
        for x, y in zip(state_a, state_b):  # codes (and int8 scales), every bit
            np.testing.assert_array_equal(np.asarray(x).view(np.uint8),
                                          np.asarray(y).view(np.uint8))


@pytest.mark.parametrize("feature", ["plain", "value clip", "global norm"])
@pytest.mark.parametrize("store", ["float16", "bfloat16"])
@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_mixed_precision_masters_equal_the_oracle(state_dtype, store, feature):
    """float16/bfloat16 params on float32 masters (multi_precision) with low-bit state: params,
    masters, codes and scales bit for bit as the oracle's."""
    if store == "bfloat16":
        store = pytest.importorskip("ml_dtypes").bfloat16
    runs = []
    for backend in (None, "reference"):
        rng = np.random.default_rng(5)
        params = [ae.Parameter(rng.standard_normal(n).astype(store), name=f"p{i}")
                  for i, n in enumerate(SIZES)]
        opt = ae.Adamax(0.01, parameters=params, backend=backend, multi_precision=True,
                        state_dtype=state_dtype, **FEATURES[feature])
        run(params, opt, 4, special=feature == "plain")
        runs.append((params, opt))
    (pa, oa), (pb, ob) = runs
    for a, b in zip(pa, pb):
        np.testing.assert_array_equal(a.data.view(np.uint16), b.data.view(np.uint16))
    ba, bb = oa.registry.buckets[0], ob.registry.buckets[0]
    assert ba.store is not None and ba.state_dtype == state_dtype
    for x, y in zip((ba.master, ba.moment, ba.inf_norm, *(ba.scales or ())),
                    (bb.master, bb.moment, bb.inf_norm, *(bb.scales or ()))):
        np.testing.assert_array_equal(np.asarray(x).view(np.uint8), np.asarray(y).view(np.uint8))
    np.testing.assert_array_equal(pa[3].data.astype(np.float32),  # params = rounded masters
                                  ba.master[ba.offsets[3]:ba.offsets[3] + SIZES[3]]
                                  .astype(store).astype(np.float32))


def test_mixed_precision_low_bit_checkpoint_resumes_exactly(tmp_path):
    rng = np.random.default_rng(5)
    params = [ae.Parameter(rng.standard_normal(n).astype(np.float16), name=f"p{i}")
              for i, n in enumerate(SIZES)]
    opt = ae.Adamax(0.01, parameters=params, multi_precision=True, state_dtype="int8")
    run(params, opt, 2)
    opt.save(tmp_path / "ckpt.npz")
    fresh = [ae.Parameter(np.zeros(n, np.float16), name=f"p{i}") for i, n in enumerate(SIZES)]
    loaded = ae.Adamax.load(tmp_path / "ckpt.npz", fresh)
    assert loaded.settings.multi_precision and loaded.settings.state_dtype == "int8"
    run(params, opt, 2)
    run(fresh, loaded, 2)
    for a, b in zip(params, fresh):
        np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("mode", ["adopt", "borrow"])
@pytest.mark.parametrize("feature", ["plain", "L1", "global norm"])
@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_float64_parameters_equal_the_oracle(state_dtype, feature, mode):
    """float64 parameters step in float64; the moments are rounded to float32, then coded."""
    runs = [build(backend, state_dtype, feature=feature, mode=mode, dtype=np.float64)
            for backend in (None, "reference")]
    for params, opt in runs:
        run(params, opt, 4, special=feature == "plain")
    (pa, sa), (pb, sb) = (bits(*r) for r in runs)
    assert pa[3].dtype == np.float64
    for a, b in zip(pa, pb):
        np.testing.assert_array_equal(a.view(np.uint64), b.view(np.uint64))
    for x, y in zip(sa[0], sb[0]):
        np.testing.assert_array_equal(np.asarray(x).view(np.uint8), np.asarray(y).view(np.uint8))
    sd = runs[0][1].state_dict()
    assert sd["p3_moment_0"].dtype == np.float64  # the parameters' dtype, exact values


@pytest.mark.parametrize("feature", ["plain", "value clip", "global norm"])
@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_borrow_mode_equals_the_oracle_and_adopt_mode(state_dtype, feature):
    """Borrowed params and grads (the caller's arrays, by address): the same bits as the
    oracle's borrow path and as adopt mode."""
    runs = [build(backend, state_dtype, feature=feature, mode=mode)
            for backend, mode in ((None, "borrow"), ("reference", "borrow"), (None, "adopt"))]
    for params, opt in runs:
        run(params, opt, 4, special=feature == "plain")
    (pa, sa), (pb, sb), (pc, sc) = (bits(*r) for r in runs)
    for a, b, c in zip(pa, pb, pc):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
        np.testing.assert_array_equal(a.view(np.uint32), c.view(np.uint32))
    for x, y, z in zip(sa[0], sb[0], sc[0]):
        np.testing.assert_array_equal(np.asarray(x).view(np.uint8), np.asarray(y).view(np.uint8))
        np.testing.assert_array_equal(np.asarray(x).view(np.uint8), np.asarray(z).view(np.uint8))
    assert runs[0][1].registry.buckets[0].mode == "borrow"


@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_thread_count_does_not_change_the_bits(state_dtype):
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            params, opt = build(None, state_dtype)
            run(params, opt, 4)
            results.append(bits(params, opt))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(results[0][1][0][0], results[1][1][0][0])


def test_stochastic_rounding_is_unbiased_and_nearest_is_numpys():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(50_000).astype(np.float32) * np.float32(3.7)
    np.testing.assert_array_equal(R.bf16_nearest(x).view(ml_dtypes.bfloat16),
                                  x.astype(ml_dtypes.bfloat16))
    value = np.float32(1.0 + 2.0 ** -10)  # a quarter of the way from 1 to the next bfloat16
    r = R.random_bits(7, np.arange(200_000)) & np.uint32(0xFFFF)
    draws = R.bf16_value(R.bf16_stochastic(np.full(200_000, value), r))
    assert set(np.unique(draws)) == {np.float32(1.0), np.float32(1.0 + 2.0 ** -7)}
    assert abs(draws.astype(np.float64).mean() - float(value)) < 2e-5  # unbiased
    assert abs((draws > 1).mean() - 0.125) < 0.005  # up with probability 2^-10 / 2^-7
    special = R.bf16_stochastic(np.array([np.inf, -np.inf, np.nan], np.float32), [65535] * 3)
    assert np.isinf(R.bf16_value(special[:2])).all() and np.isnan(R.bf16_value(special[2]))


def test_the_moment_log_map_and_codes():
    """A sign and 127 log-spaced magnitudes: 8 codes an octave from the block max down to
    1.25 * 2^-16 of it. Every code round-trips, nearest lands on the nearer neighbour,
    stochastic rounding is unbiased (above and below code 1), and the largest products the
    scale's rounding allows (1 + 2^-23) still code to +-127 without a clamp."""
    codes = np.arange(-127, 128).astype(np.int8)
    values = R.int8_moment_value(codes, np.float32(1.0))
    assert values[127] == 0 and values[-1] == 1.0 and values[0] == -1.0
    np.testing.assert_array_equal(values[:127], -values[128:][::-1])  # sign and magnitude
    assert np.all(np.diff(values) > 0)
    mags = values[128:].astype(np.float64)  # codes 1..127
    assert mags[0] == 1.25 * 2.0 ** -16 and mags[119 - 1] == 0.5
    np.testing.assert_array_equal(mags[8:], 2 * mags[:-8])  # 8 codes an octave
    np.testing.assert_array_equal(R.moment_code(values, None, False), codes)
    scaled = R.int8_moment_value(codes, np.float32(3.7))  # one multiply by the scale
    np.testing.assert_array_equal(scaled, values * np.float32(3.7))
    lo, hi = values[129:-1], values[130:]  # neighbours 2..127 (linear within an octave)
    near_hi = (np.float32(0.4) * lo + np.float32(0.6) * hi).astype(np.float32)
    near_lo = (np.float32(0.6) * lo + np.float32(0.4) * hi).astype(np.float32)
    np.testing.assert_array_equal(R.moment_code(near_hi, None, False), codes[130:])
    np.testing.assert_array_equal(R.moment_code(-near_lo, None, False), -codes[129:-1])
    edge = np.array([np.nextafter(np.float32(1), np.float32(2)),
                     np.nextafter(np.float32(-1), np.float32(-2))], np.float32)
    r = np.array([0xFFFF, 0xFFFF], np.uint32)  # the largest random bits
    np.testing.assert_array_equal(R.moment_code(edge, r, True), [127, -127])
    np.testing.assert_array_equal(R.moment_code(edge, None, False), [127, -127])
    for value in (np.float32(-0.3), np.float32(1e-3), np.float32(0.97), np.float32(-1e-6)):
        r = R.random_bits(9, np.arange(200_000))
        draws = R.int8_moment_value(R.moment_code(np.full(200_000, value), r, True),
                                    np.float32(1)).astype(np.float64)
        below, above = values[values <= value].max(), values[values > value].min()
        assert set(np.unique(draws)) == {below, above}  # the two neighbours, and unbiased:
        assert abs(draws.mean() - float(value)) < 4 * draws.std() / np.sqrt(2e5)  # 4 s.e.


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
def test_blocks_their_scale_cannot_code_get_zero_codes(rounding):
    """A block whose scale is 0, or so small that 1 / scale overflows, is
    stored as zero codes (with that scale), by the kernel as by the oracle: no NaN or inf
    garbage in the codes, and the other blocks are unaffected."""
    sizes = {"tiny": 256, "small_m": 256, "zero": 256, "normal": 300}
    fills = {"tiny": 1e-40, "small_m": 5e-39, "zero": 0.0}
    out = []
    for backend in (None, "reference"):
        params = [ae.Parameter(np.ones(n, np.float32), name=k) for k, n in sizes.items()]
        opt = ae.Adamax(0.01, parameters=params, flavor="keras", backend=backend,
                        state_dtype="int8", state_rounding=rounding)  # eps off u
        rng = np.random.default_rng(4)
        for _ in range(2):
            for p in params:
                g = rng.standard_normal(p.data.size).astype(np.float32)
                p.grad = g * np.float32(fills.get(p.name, 1.0))
            opt.step()
        out.append((bits(params, opt), opt.state_dict()))
    (fast, fast_sd), (oracle, oracle_sd) = out
    for a, b in zip(fast[0] + list(fast[1][0]), oracle[0] + list(oracle[1][0])):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
    moment, inf_norm, m_scale, u_scale = fast[1][0]
    assert not moment[:512].any() and not inf_norm[:256].any()  # tiny: neither codes
    assert inf_norm[256:512].any()  # 5e-39: the inf-norm codes, the moment (~0.2x) cannot
    assert m_scale[1] > 0 and u_scale[1] > 0 and m_scale[2] == 0 and u_scale[2] == 0
    assert not moment[512:768].any() and moment[768:].any() and inf_norm[768:].any()
    for name in ("normal_moment_0", "normal_inf_norm_0"):
        assert np.isfinite(fast_sd[name]).all()


def test_the_inf_norm_log_map_and_its_floor():
    """255 log-spaced codes above a floor: 16 codes an octave from the block max down to
    1.0625 * 2^-16 of it, code 0 that floor (no zero). Every code round-trips, nearest lands
    next to any value in range, stochastic rounding is unbiased down to the floor, and a value
    below the floor (or 0) codes as the floor: rounded up, never down."""
    codes = np.arange(256, dtype=np.uint8)
    values = R.int8_inf_norm_value(codes, np.float32(3.0)).astype(np.float64)
    assert values[255] == 3.0 and np.all(np.diff(values) > 0)
    assert values[0] == 3 * 1.0625 / 2**16 and values[1] == 3 * 1.125 / 2**16
    ratios = values[1:] / values[:-1]  # 16 linear codes an octave: steps of 1/32 to 1/16
    assert ratios.max() <= 1 + 1 / 16 + 1e-9 and ratios.min() >= 1 + 1 / 32 - 1e-9
    np.testing.assert_array_equal(values[16:], 2 * values[:-16])
    # nearest round-trips every code, and lands next to any value in range
    x = values / 3.0
    np.testing.assert_array_equal(R.floor_code(x.astype(np.float32), None, False), codes)
    rng = np.random.default_rng(1)
    y = np.exp(rng.uniform(np.log(2.0 ** -15), 0, 20_000)).astype(np.float32)
    back = R.int8_inf_norm_value(R.floor_code(y, None, False), np.float32(1)) / y
    assert np.abs(back - 1).max() <= 1 / 32 + 1e-6
    floor = np.float32(values[0] / 3)
    for value in (np.float32(0.3), np.float32(floor * 1.03), np.float32(1e-3)):
        r = R.random_bits(5, np.arange(200_000)) >> np.uint32(16)
        draws = R.int8_inf_norm_value(R.floor_code(np.full(200_000, value), r, True), 1)
        assert len(np.unique(draws)) == 2 and draws.min() <= value < draws.max()
        draws = draws.astype(np.float64)  # unbiased: within 4 standard errors
        assert abs(draws.mean() - float(value)) < 4 * draws.std() / np.sqrt(draws.size)
    for value in (np.float32(0), np.float32(1e-30), np.float32(floor * 0.99)):
        r = R.random_bits(6, np.arange(1000)) >> np.uint32(16)
        assert not R.floor_code(np.full(1000, value), r, True).any()  # the floor, up
        assert R.floor_code(np.array([value]), None, False)[0] == 0
    assert R.floor_code(np.array([np.nan], np.float32), None, False)[0] == 0
    v3 = R.int8_inf_norm_value_v3(codes, np.float32(3.0))  # the earlier schemes' map: 0 at 0
    assert v3[0] == 0 and np.array_equal(v3[1:], values[1:].astype(np.float32))


def _decay_run(state_dtype, rounding, steps=10_000):
    """A grad that drops to zero after 50 steps: u must decay by b2 each step from then on."""
    rng = np.random.default_rng(3)
    p = ae.Parameter(rng.standard_normal(256).astype(np.float32), name="w")
    opt = ae.Adamax(1e-3, parameters=[p], state_dtype=state_dtype, state_rounding=rounding)
    g = rng.standard_normal(256).astype(np.float32)
    zero = np.zeros(256, np.float32)
    for step in range(steps):
        p.grad = g if step < 50 else zero
        opt.step()
    return opt.state_dict()["w_inf_norm_0"].astype(np.float64)


def test_the_inf_norm_keeps_decaying_with_stochastic_rounding():
    exact = _decay_run("float32", "stochastic")
    sr = _decay_run("bfloat16", "stochastic")
    rtn = _decay_run("bfloat16", "nearest")
    int8 = _decay_run("int8", "stochastic") / exact  # the block scale decays with the block
    assert abs(int8.mean() - 1) < 0.05 and np.median(np.abs(np.log(int8))) < 0.3
    assert np.median(exact) < 1e-3  # 0.999 ** 9950: the fp32 run really decayed
    ratio = sr / exact
    # stochastic rounding is unbiased: each element does a multiplicative random walk around
    # the exact decay (~0.2% noise a step for 10^4 steps), and their mean tracks it closely
    assert abs(ratio.mean() - 1) < 0.05 and np.median(np.abs(np.log(ratio))) < 0.3
    assert np.median(rtn / exact) > 100  # round-to-nearest: stuck near its value at step 50


@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_skip_nonfinite_leaves_codes_and_params_untouched(state_dtype):
    params, opt = build(None, state_dtype)
    opt = ae.Adamax(0.01, parameters=params, state_dtype=state_dtype, skip_nonfinite=True)
    run(params, opt, 2)
    before = bits(params, opt)
    steps = opt.registry.buckets[0].steps.copy()
    run(params, opt, 1, special=True)  # a NaN grad: the whole step is skipped
    after = bits(params, opt)
    for a, b in zip(before[0], after[0]):
        np.testing.assert_array_equal(a, b)
    for x, y in zip(before[1][0], after[1][0]):
        np.testing.assert_array_equal(x, y)
    assert opt.skipped_steps == 1
    np.testing.assert_array_equal(opt.registry.buckets[0].steps, steps + 1)  # as paddle: counts
    run(params, opt, 1)  # a finite grad steps again
    assert not np.array_equal(bits(params, opt)[0][3], after[0][3])


def test_state_bytes_per_parameter():
    _, fp32 = build(None, state_dtype="float32")
    _, bf16 = build(None)
    _, int8 = build(None, state_dtype="int8")
    n = sum(SIZES)
    assert fp32.state_nbytes <= 8.1 * n and bf16.state_nbytes <= 4.1 * n
    assert int8.state_nbytes <= 2.1 * n  # codes + a float32 scale per 256 (+ block padding)
    assert bf16.state_nbytes < 0.52 * fp32.state_nbytes and bf16.master_nbytes == 0


def test_state_dict_and_checkpoint_round_trip(tmp_path):
    params, opt = build(None)
    run(params, opt, 3)
    sd = opt.state_dict()
    key = "p3_moment_0"
    assert sd[key].dtype == np.float32
    np.testing.assert_array_equal(R.bf16_value(R.bf16_nearest(sd[key])), sd[key])  # exact
    fp32_params, fp32 = build(None, state_dtype="float32")
    fp32.set_state_dict(sd)  # a float32-state optimizer takes the (exact) values
    np.testing.assert_array_equal(fp32.state_dict()[key], sd[key])
    opt.save(tmp_path / "ckpt.npz")
    meta, arrays = archive.read(tmp_path / "ckpt.npz")  # the bfloat16 bits themselves
    assert meta["state_scheme"] == "bfloat16 bits" and arrays["moment_codes/p3"].dtype == np.uint16
    run(params, opt, 2)
    fresh = [ae.Parameter(np.zeros(n, np.float32), name=f"p{i}") for i, n in enumerate(SIZES)]
    loaded = ae.Adamax.load(tmp_path / "ckpt.npz", fresh)
    assert loaded.settings.state_dtype == "bfloat16"
    run(fresh, loaded, 2)
    for a, b in zip(params, fresh):  # resumed bit-identically (the rounding counts steps)
        np.testing.assert_array_equal(a.data, b.data)
    meta["state_scheme"] = "bfloat16 bits v0"  # bits of another scheme: refused, naming both
    archive.write(meta, arrays, tmp_path / "other.npz")
    with pytest.raises(archive.CheckpointError,
                       match="'bfloat16 bits v0'; this version reads 'bfloat16 bits'$"):
        ae.Adamax.load(tmp_path / "other.npz", fresh)


@pytest.mark.parametrize("kwargs,match", [
    ({"state_dtype": "int4"}, "state_dtype: expected one of"),
    ({"state_dtype": "int8", "multi_precision": True, "mode": "borrow"},
     "with multi_precision runs with mode='adopt'"),
    ({"state_dtype": "float16"}, "state_dtype: expected one of"),
    ({"state_dtype": "bfloat16", "state_rounding": "up"}, "state_rounding: expected"),
])
def test_what_is_not_supported_is_refused(kwargs, match):
    p = ae.Parameter(np.ones(4, np.float32))
    with pytest.raises(ValueError, match=match):
        ae.Adamax(0.1, parameters=[p], **kwargs)


def test_float16_parameters_without_masters_are_refused():
    with pytest.raises(TypeError, match="float16 parameters need multi_precision=True"):
        ae.Adamax(0.1, parameters=[ae.Parameter(np.ones(4, np.float16), name="w")],
                  state_dtype="bfloat16")


def test_yaml_runs_and_sweeps_state_dtype(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("experiment: {steps: 30, seed: 0}\nproblem: {name: softmax_blobs}\n"
                   "optimizer: {learning_rate: 0.05}\n"
                   "sweep: {grid: {optimizer.state_dtype: [float32, bfloat16, int8]}}\n")
    assert cli.main(["run", str(cfg), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    import json
    rows = json.loads((tmp_path / "out" / "sweep.json").read_text())
    fp32, bf16, int8 = (r["final_loss"] for r in rows)
    assert abs(bf16 - fp32) / fp32 < 0.02 and abs(int8 - fp32) / fp32 < 0.02
    bad = tmp_path / "bad.yaml"
    bad.write_text("optimizer: {state_dtype: int4}\n")
    assert cli.main(["validate", str(bad)]) == 2


def test_int8_state_dict_and_checkpoint(tmp_path):
    params, opt = build(None, "int8")
    run(params, opt, 3)
    sd = opt.state_dict()
    fp32_params, fp32 = build(None, state_dtype="float32")
    fp32.set_state_dict(sd)  # the dequantized values, exactly
    np.testing.assert_array_equal(fp32.state_dict()["p3_inf_norm_0"], sd["p3_inf_norm_0"])
    b = opt.registry.buckets[0]
    codes, scales = b.moment.copy(), [s.copy() for s in b.scales]
    opt.set_state_dict(sd)  # requantized to nearest: the same codes back
    np.testing.assert_array_equal(b.moment, codes)
    np.testing.assert_allclose(b.scales[0], scales[0], rtol=1e-6)
    opt.save(tmp_path / "ckpt.npz")
    meta, arrays = archive.read(tmp_path / "ckpt.npz")  # stored quantized, the scheme named
    assert meta["state_scheme"] == R.SCHEMES["int8"] and "moment/p3" not in arrays
    assert arrays["moment_codes/p3"].dtype == np.int8 and arrays["inf_norm_scale/p3"].shape \
        == ((SIZES[3] + 255) // 256,)
    saved_codes = b.moment.copy()
    run(params, opt, 2)
    fresh = [ae.Parameter(np.zeros(n, np.float32), name=f"p{i}") for i, n in enumerate(SIZES)]
    loaded = ae.Adamax.load(tmp_path / "ckpt.npz", fresh)
    assert loaded.settings.state_dtype == "int8"
    np.testing.assert_array_equal(loaded.registry.buckets[0].moment, saved_codes)
    run(fresh, loaded, 2)
    for a, c in zip(params, fresh):  # codes and scales loaded as saved: resumed bit for bit
        np.testing.assert_array_equal(a.data, c.data)
    # into a float32-state optimizer: the codes' values; a float32 checkpoint into int8: quantized
    as_fp32 = ae.Adamax.load(tmp_path / "ckpt.npz", fresh, state_dtype="float32")
    values = R.decode_codes("int8", *(arrays[f"{k}/p3"] for k in (
        "moment_codes", "inf_norm_codes", "moment_scale", "inf_norm_scale")))
    np.testing.assert_array_equal(as_fp32.state_dict()["p3_moment_0"], values[0])
    as_fp32.save(tmp_path / "fp32.npz")
    back = ae.Adamax.load(tmp_path / "fp32.npz", fresh, state_dtype="int8")
    np.testing.assert_array_equal(back.registry.buckets[0].moment, saved_codes)
    # a file of values (as earlier versions wrote low-bit state) loads, quantized
    values_meta = {k: v for k, v in meta.items() if k != "state_scheme"}
    as_fp32.save(tmp_path / "values.npz")
    _, value_arrays = archive.read(tmp_path / "values.npz")
    archive.write(values_meta, value_arrays, tmp_path / "values_int8.npz")
    old = ae.Adamax.load(tmp_path / "values_int8.npz", fresh)
    assert old.settings.state_dtype == "int8"
    np.testing.assert_array_equal(old.registry.buckets[0].moment, saved_codes)
    # codes written under another scheme are refused, naming it
    meta["state_scheme"] = "int8 v1: power map"
    archive.write(meta, arrays, tmp_path / "old.npz")
    with pytest.raises(archive.CheckpointError,
                       match="int8 v1: power map.*this version reads 'int8 v4.* or 'int8 v3.* "
                             "or 'int8 v2"):
        ae.Adamax.load(tmp_path / "old.npz", fresh)
    # codes of the earlier int8 schemes (v2: linear moment codes; v2 and v3: inf-norm code 0
    # is 0, not the floor) load as their values, and are quantized anew
    earlier = dict(arrays, **{"inf_norm_codes/p3": arrays["inf_norm_codes/p3"].copy()})
    earlier["inf_norm_codes/p3"].reshape(-1)[:3] = 0
    now = R.decode_codes("int8", *(earlier[f"{k}/p3"] for k in (
        "moment_codes", "inf_norm_codes", "moment_scale", "inf_norm_scale")))
    for scheme in (R.INT8_V2, R.INT8_V3):
        meta["state_scheme"] = scheme
        archive.write(meta, earlier, tmp_path / "earlier.npz")
        old_values = R.decode_codes("int8", *(earlier[f"{k}/p3"] for k in (
            "moment_codes", "inf_norm_codes", "moment_scale", "inf_norm_scale")), scheme=scheme)
        assert not old_values[1].reshape(-1)[:3].any() and now[1].reshape(-1)[:3].all()
        assert not np.array_equal(old_values[0], now[0]) if scheme == R.INT8_V2 else \
            np.array_equal(old_values[0], now[0])
        old_fp32 = ae.Adamax.load(tmp_path / "earlier.npz", fresh, state_dtype="float32")
        np.testing.assert_array_equal(old_fp32.state_dict()["p3_moment_0"], old_values[0])
        np.testing.assert_array_equal(old_fp32.state_dict()["p3_inf_norm_0"], old_values[1])
        old_int8 = ae.Adamax.load(tmp_path / "earlier.npz", fresh)
        held_codes = old_int8.parameter_codes(fresh[3])
        np.testing.assert_array_equal(held_codes[0].reshape(-1), R.int8_encode(*old_values)[0])
        np.testing.assert_array_equal(held_codes[1].reshape(-1), R.int8_encode(*old_values)[2])
    meta["state_scheme"] = R.SCHEMES["int8"]
    arrays["moment_codes/p3"] = arrays["moment_codes/p3"].copy()
    arrays["moment_codes/p3"][0] = -128
    archive.write(meta, arrays, tmp_path / "bad.npz")
    with pytest.raises(archive.CheckpointError, match=r"'p3': moment codes: expected values in"):
        ae.Adamax.load(tmp_path / "bad.npz", fresh)
