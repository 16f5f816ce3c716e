"""kernels.cpu vs kernels.reference on fresh random inputs: fp32 bit-exact, fp64 bit-exact."""
import numba
import numpy as np
import pytest

from adamax_engine.kernels import cpu
from adamax_engine.kernels import layout as L
from adamax_engine.kernels import reference as ref

SIZES = [1, 7, 0, 1023, 65537, 8, 16385, 3]


def make_problem(rng, dtype, sizes, flags_for=None):
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    n = int(sum(sizes))
    chunks = L.build_chunk_table(offsets, sizes)
    hyper, flags = L.empty_tables(len(sizes), dtype)
    T = np.dtype(dtype).type
    for s in range(len(sizes)):
        b1, b2, eps = ref.paddle_hyper(dtype, rng.uniform(0, 0.99), rng.uniform(0.5, 0.9999),
                                       10 ** rng.uniform(-9, -3))
        hyper[s, L.LR_T] = T(rng.uniform(1e-4, 0.1))
        hyper[s, [L.BETA1, L.ONE_MINUS_BETA1, L.BETA2, L.EPS]] = [b1, T(1) - b1, b2, eps]
        hyper[s, L.DECAY] = T(rng.uniform(0, 0.1))
        hyper[s, L.GRAD_SCALE] = T(rng.uniform(0.1, 1.0))
        hyper[s, L.CLIP_MIN], hyper[s, L.CLIP_MAX] = T(-rng.uniform(0.1, 1)), T(rng.uniform(0.1, 1))
        flags[s] = flags_for(s) if flags_for else [1, s % 3, s % 2, (s // 2) % 2]
    arrays = [rng.standard_normal(n).astype(dtype),                 # param
              rng.standard_normal(n).astype(dtype),                 # grad
              (0.1 * rng.standard_normal(n)).astype(dtype),         # moment
              np.abs(rng.standard_normal(n)).astype(dtype)]         # inf_norm
    return offsets, chunks, hyper, flags, arrays


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("flavor", sorted(L.FLAVORS.values()))
def test_fused_update_bit_exact(rng, dtype, flavor):
    _, chunks, hyper, flags, arrays = make_problem(rng, dtype, SIZES)
    expect = [a.copy() for a in arrays]
    got = [a.copy() for a in arrays]
    ref.fused_update(*expect, chunks, hyper, flags, flavor)
    cpu.fused_update(*got, chunks, hyper, flags, flavor)
    for name, e, g in zip(["param", "grad", "moment", "inf_norm"], expect, got):
        np.testing.assert_array_equal(g, e, err_msg=name)
    assert not np.array_equal(got[0], arrays[0])  # it really stepped
    np.testing.assert_array_equal(got[1], arrays[1])  # grads are never written


CASES = [(clip, scale, decay) for clip in (0, 1) for scale in (0, 1)
         for decay in (L.NO_DECAY, L.L2_DECAY, L.L1_DECAY)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("flavor", sorted(L.FLAVORS.values()))
def test_every_flag_case_bit_exact_with_special_values(rng, dtype, flavor):
    """Each (value clip, norm scale, decay) case of a segment runs its own loop in the kernel
    (the common ones are specialised): every one against the reference, on odd sizes,
    with NaN, inf, -0.0 and subnormals in grads and params."""
    sizes = list(rng.integers(1, 300, len(CASES)) * 2 + 1)
    _, chunks, hyper, flags, arrays = make_problem(rng, dtype, sizes,
                                                   lambda s: [1, CASES[s][2], *CASES[s][:2]])
    tiny = np.finfo(dtype).smallest_subnormal
    for a in arrays[:2]:
        where = rng.choice(a.size, 40, replace=False)
        a[where] = rng.choice(np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, tiny, -tiny], dtype),
                              40)
    expect = [a.copy() for a in arrays]
    got = [a.copy() for a in arrays]
    ref.fused_update(*expect, chunks, hyper, flags, flavor)
    cpu.fused_update(*got, chunks, hyper, flags, flavor)
    for name, e, g in zip(["param", "grad", "moment", "inf_norm"], expect, got):
        np.testing.assert_array_equal(g.view(f"u{g.itemsize}"), e.view(f"u{e.itemsize}"),
                                      err_msg=name)  # bits, so -0.0 and NaN payloads count
    assert not np.array_equal(got[0], arrays[0], equal_nan=True)


def test_segment_offsets_are_aligned():
    offsets, total = L.segment_offsets([5, 0, 32, 33, 1])
    np.testing.assert_array_equal(offsets, [0, 32, 32, 64, 128])
    assert total == 129
    assert L.segment_offsets([])[1] == 0


def test_inactive_segments_untouched(rng):
    sizes = [5, 100, 17]
    _, chunks, hyper, flags, arrays = make_problem(rng, np.float32, sizes,
                                                   lambda s: [s != 1, 1, 0, 1])
    got = [a.copy() for a in arrays]
    cpu.fused_update(*got, chunks, hyper, flags, L.PADDLE)
    sl = slice(5, 105)
    for a, g in zip(arrays, got):
        np.testing.assert_array_equal(g[sl], a[sl])
    assert not np.array_equal(got[0][:5], arrays[0][:5])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_borrowed_update_matches_flat(rng, dtype):
    offsets, chunks, hyper, flags, arrays = make_problem(rng, dtype, SIZES)
    p, g, m, u = arrays
    shapes = [(s,) if s % 7 else (1, s) for s in SIZES]
    p_list = [p[o:o + s].reshape(sh).copy() for o, s, sh in zip(offsets, SIZES, shapes)]
    g_list = [g[o:o + s].reshape(sh).copy() for o, s, sh in zip(offsets, SIZES, shapes)]
    flat = [a.copy() for a in arrays]
    cpu.fused_update(*flat, chunks, hyper, flags, L.PADDLE)
    m2, u2 = m.copy(), u.copy()
    paddrs = np.array([a.ctypes.data for a in p_list], dtype=np.int64)
    gaddrs = np.array([a.ctypes.data for a in g_list], dtype=np.int64)
    cpu.borrowed_update(paddrs, gaddrs, m2, u2, offsets, chunks, hyper, flags, L.PADDLE)
    np.testing.assert_array_equal(np.concatenate([a.reshape(-1) for a in p_list]), flat[0])
    np.testing.assert_array_equal(m2, flat[2])
    np.testing.assert_array_equal(u2, flat[3])
    # and the reference borrow oracle agrees
    p_ref = [a.reshape(sh).copy() for a, sh in
             zip(np.split(p.copy(), np.cumsum(SIZES)[:-1]), shapes)]
    m3, u3 = m.copy(), u.copy()
    ref.borrowed_update(p_ref, g_list, m3, u3, offsets, chunks, hyper, flags, L.PADDLE)
    np.testing.assert_array_equal(np.concatenate([a.reshape(-1) for a in p_ref]), flat[0])
    sq_b = cpu.borrowed_sumsq(gaddrs, offsets, chunks, flags, m)
    sq_f = cpu.segment_sumsq(g, chunks, flags)
    np.testing.assert_array_equal(sq_b[0], sq_f[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sumsq_matches_reference_and_numpy(rng, dtype):
    sizes = [1, 7, 9, 100003, 16384, 16385, 0]
    _, chunks, hyper, flags, (p, g, m, u) = make_problem(rng, dtype, sizes, lambda s: [1, 0, 0, 0])
    expect, bad_e = ref.segment_sumsq(g, chunks, flags)
    got, bad_g = cpu.segment_sumsq(g, chunks, flags)
    np.testing.assert_array_equal(got, expect)
    assert not bad_g.any() and not bad_e.any()
    starts = np.concatenate([[0], np.cumsum(sizes)])
    for s in range(len(sizes)):
        exact = np.sum(g[starts[s]:starts[s + 1]].astype(np.float64) ** 2)
        assert got[s] == pytest.approx(exact, rel=1e-5 if dtype == np.float32 else 1e-12)


def test_nonfinite_flag_only_for_real_nonfinite(rng):
    sizes = [10, 40000, 5]
    _, chunks, _, flags, (_, g, _, _) = make_problem(rng, np.float32, sizes, lambda s: [1, 0, 0, 0])
    g[12 + 30000] = np.inf      # segment 1, second chunk
    g[40012] = 1e30             # segment 2: g*g overflows, but the grad itself is finite
    sq, bad = cpu.segment_sumsq(g, chunks, flags)
    assert bad.tolist() == [False, True, False]
    assert np.isinf(sq[1]) and np.isinf(sq[2])
    g[3] = np.nan
    assert cpu.segment_sumsq(g, chunks, flags)[1].tolist() == [True, True, False]
    with np.errstate(over="ignore", invalid="ignore"):  # the overflow is the point of the test
        assert ref.segment_sumsq(g, chunks, flags)[1].tolist() == [True, True, False]


def test_results_independent_of_thread_count(rng):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 numba threads")
    _, chunks, hyper, flags, arrays = make_problem(rng, np.float32, [70001, 33, 40000])
    out = []
    before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            a = [x.copy() for x in arrays]
            sq = cpu.segment_sumsq(a[1], chunks, flags)[0]
            cpu.fused_update(*a, chunks, hyper, flags, L.PADDLE)
            out.append((sq, a))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(out[0][0], out[1][0])
    for x, y in zip(out[0][1], out[1][1]):
        np.testing.assert_array_equal(x, y)


def test_chunk_table_covers_every_element_once():
    sizes = [0, 1, L.CHUNK, L.CHUNK + 1, 3 * L.CHUNK - 1]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    table = L.build_chunk_table(offsets, sizes)
    hits = np.zeros(sum(sizes), dtype=int)
    for seg, start, end in table:
        assert offsets[seg] <= start < end <= offsets[seg] + sizes[seg]
        assert end - start <= L.CHUNK
        hits[start:end] += 1
    assert (hits == 1).all()
    assert table[:, 0].tolist() == [1, 2, 3, 3, 4, 4, 4]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("auto_skip", [False, True])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_compiled_global_norm_scales_equal_the_clipper(rng, dtype, auto_skip):
    """steptables.global_norm_scales (the one-bucket fast path) gives the bits of
    ClipGradByGlobalNorm.norm_scales, including zero, inf and NaN norms and clip_norm <= 0."""
    from adamax_engine import ClipGradByGlobalNorm
    from adamax_engine.step.tables import global_norm_scales
    n = 37
    cases = [rng.random(n).astype(dtype) * 10 ** rng.uniform(-6, 3) for _ in range(20)]
    cases += [np.zeros(n, dtype), np.full(n, np.inf, dtype), np.full(n, np.nan, dtype)]
    for sums in cases:
        members = rng.random(n) < 0.7
        for clip_norm in (0.5, 3.0, 1e6, 0.0, -2.0):
            clip = ClipGradByGlobalNorm(clip_norm, auto_skip_clip=auto_skip)
            (scale, apply), = clip.norm_scales([sums[members]])
            hyper, flags = L.empty_tables(n, dtype)
            hyper[:, L.GRAD_SCALE] = 7  # untouched outside the members
            global_norm_scales(sums, members, clip_norm, auto_skip, hyper, flags)
            got, want = hyper[members, L.GRAD_SCALE], np.full(members.sum(), scale, dtype)
            assert got.tobytes() == want.tobytes(), (sums, clip_norm)  # the same bits
            assert (flags[members, L.SCALE_GRAD] == int(apply)).all()
            assert (hyper[~members, L.GRAD_SCALE] == 7).all()
            assert (flags[~members, L.SCALE_GRAD] == 0).all()
