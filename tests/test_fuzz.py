"""Property tests (hypothesis): random layouts, dtypes, groups, hyper-parameters and clippers.

* the numba kernels always equal the numpy reference, bit for bit;
* a whole optimizer step always equals the paddle-order oracle (kernels.reference.group_step);
* every invalid input raises a clear error and leaves every buffer bit-identical;
* aliasing (a grad that is a parameter, two parameters sharing memory) is refused.
"""
import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine.kernels import cpu
from adamax_engine.kernels import layout as L
from adamax_engine.kernels import reference as ref

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# derandomize: CI sees the same examples every run (a new failure is a code change, not luck);
# set derandomize=False locally to explore new examples
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DTYPES = st.sampled_from([np.float32, np.float64])
FLAVOR = st.sampled_from(sorted(L.FLAVORS))
SHAPE = st.lists(st.integers(1, 9), min_size=0, max_size=3).map(tuple)


def random_array(seed, shape, dtype, scale=1.0):
    rng = np.random.default_rng(seed)
    return np.asarray(rng.standard_normal(shape) * scale, dtype=dtype)


@SETTINGS
@given(sizes=st.lists(st.integers(0, 700), min_size=1, max_size=6), dtype=DTYPES,
       flavor=FLAVOR, chunk=st.sampled_from([8, 31, 256, L.CHUNK]), seed=st.integers(0, 2 ** 31))
def test_kernels_equal_reference(sizes, dtype, flavor, chunk, seed):
    rng = np.random.default_rng(seed)
    offsets, total = L.segment_offsets(sizes)
    chunks = L.build_chunk_table(offsets, sizes, chunk)
    hyper, flags = L.empty_tables(len(sizes), dtype)
    for s in range(len(sizes)):
        b1, b2, eps = ref.paddle_hyper(dtype, rng.uniform(0, 0.999), rng.uniform(0, 0.9999),
                                       10 ** rng.uniform(-10, -1))
        hyper[s, [L.BETA1, L.ONE_MINUS_BETA1, L.BETA2, L.EPS]] = [b1, 1 - b1, b2, eps]
        hyper[s, [L.LR_T, L.DECAY, L.GRAD_SCALE]] = rng.uniform(1e-4, 1, 3)
        hyper[s, L.CLIP_MIN], hyper[s, L.CLIP_MAX] = sorted(rng.uniform(-2, 2, 2))
        flags[s] = [rng.integers(0, 2), rng.integers(0, 3), rng.integers(0, 2), rng.integers(0, 2)]
    arrays = [random_array(seed + k, total, dtype, scale) for k, scale in
              enumerate([1, 3, 0.1, 1])]
    arrays[3] = np.abs(arrays[3])
    code = L.FLAVORS[flavor]
    want = [a.copy() for a in arrays]
    ref.fused_update(*want, chunks, hyper, flags, code)
    got = [a.copy() for a in arrays]
    cpu.fused_update(*got, chunks, hyper, flags, code)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    ps = [arrays[0][o:o + n].copy() for o, n in zip(offsets, sizes)]
    gs = [arrays[1][o:o + n].copy() for o, n in zip(offsets, sizes)]
    m, u = arrays[2].copy(), arrays[3].copy()
    addrs = [np.array([a.ctypes.data for a in x], np.int64) for x in (ps, gs)]
    cpu.borrowed_update(*addrs, m, u, offsets, chunks, hyper, flags, code)
    for k, (o, n) in enumerate(zip(offsets, sizes)):
        np.testing.assert_array_equal(ps[k], want[0][o:o + n])
    np.testing.assert_array_equal(m, want[2])
    sums, bad = cpu.segment_sumsq(arrays[1], chunks, flags)
    rsums, rbad = ref.segment_sumsq(arrays[1], chunks, flags)
    np.testing.assert_array_equal(sums, rsums)
    np.testing.assert_array_equal(bad, rbad)


CLIPS = st.one_of(
    st.none(),
    st.tuples(st.just("value"), st.floats(-2, -0.01), st.floats(0.01, 2)),
    st.tuples(st.just("norm"), st.floats(0.01, 10)),
    st.tuples(st.just("global"), st.floats(0.01, 10), st.booleans()))
DECAY = st.one_of(st.none(), st.tuples(st.sampled_from(["l1", "l2"]), st.floats(0, 0.1)))


def clip_object(spec):
    if spec is None:
        return None
    if spec[0] == "value":
        return ae.ClipGradByValue(spec[2], spec[1])
    if spec[0] == "norm":
        return ae.ClipGradByNorm(spec[1])
    return ae.ClipGradByGlobalNorm(spec[1], auto_skip_clip=spec[2])


@SETTINGS
@given(shapes=st.lists(SHAPE, min_size=1, max_size=6), dtype=DTYPES, flavor=FLAVOR,
       mode=st.sampled_from(["adopt", "borrow"]), clips=st.tuples(CLIPS, CLIPS), data=st.data(),
       beta1=st.tuples(st.floats(0, 0.999), st.floats(0, 0.999)), beta2=st.floats(0, 0.9999),
       eps=st.floats(1e-10, 1e-2), lr=st.floats(1e-4, 1.0), seed=st.integers(0, 2 ** 31))
def test_optimizer_equals_oracle(shapes, dtype, flavor, mode, clips, data, beta1, beta2, eps, lr,
                                 seed):
    """Two parameter groups (the second with its own beta1, lr multiplier and clipper) against
    the oracle run once per group."""
    n = len(shapes)
    split = data.draw(st.integers(0, n))
    group_lr = data.draw(st.sampled_from([0.5, 1.0, 3.0]))
    decays = data.draw(st.lists(DECAY, min_size=n, max_size=n))
    lr_mults = data.draw(st.lists(st.sampled_from([1.0, 0.5, 2.0]), min_size=n, max_size=n))
    need_clip = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    init = [random_array(seed + i, s, dtype) for i, s in enumerate(shapes)]
    params = [ae.Parameter(x.copy(), learning_rate=m, need_clip=c,
                           regularizer=None if d is None else
                           (ae.L2Decay if d[0] == "l2" else ae.L1Decay)(d[1]))
              for x, m, d, c in zip(init, lr_mults, decays, need_clip)]
    groups = [{"params": params[:split]},
              {"params": params[split:], "beta1": beta1[1], "learning_rate": group_lr,
               "grad_clip": clip_object(clips[1])}]
    opt = ae.Adamax(lr, beta1=beta1[0], beta2=beta2, epsilon=eps, parameters=groups,
                    grad_clip=clip_object(clips[0]), flavor=flavor, mode=mode)
    oracle, states = [x.copy() for x in init], ({}, {})
    parts = [(slice(0, split), beta1[0], clips[0], lr_mults[:split]),
             (slice(split, n), beta1[1], clips[1], [group_lr] * (n - split))]
    for step in range(3):
        present = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
        grads = [random_array(seed + 100 * step + i, s, dtype, 2.0) if keep else None
                 for i, (s, keep) in enumerate(zip(shapes, present))]
        for p, g in zip(params, grads):
            p.grad = None if g is None else g.copy()
        opt.step()
        for (sl, b1, clip, mults), state in zip(parts, states):
            ref.group_step(oracle[sl], grads[sl], state, lr=lr, beta1=b1, beta2=beta2,
                           epsilon=eps, lr_mults=mults, decays=decays[sl],
                           need_clip=need_clip[sl], clip=clip, flavor=L.FLAVORS[flavor])
        for p, want in zip(params, oracle):
            np.testing.assert_array_equal(p.data, want)


def snapshot(opt, params):
    """Every byte the optimizer owns or steps: flat buffers, tables, the parameters' memory."""
    out = [np.array(p.data, copy=True) for p in params]
    out += [None if p.grad is None else np.array(p.grad, copy=True) for p in params]
    for b in opt.registry.buckets:
        for name in ("moment", "inf_norm", "beta1_pow", "steps", "has_state", "params", "grads",
                     "hyper", "flags"):
            if getattr(b, name) is not None:  # (borrow mode has no flat params/grads)
                out.append(np.array(getattr(b, name), copy=True))
    return out


def same(a, b):
    return len(a) == len(b) and all(
        (x is None and y is None) or (x is not None and y is not None and x.dtype == y.dtype
                                      and np.array_equal(x.view(np.uint8), y.view(np.uint8)))
        for x, y in zip(a, b))


BAD_GRADS = {
    "dtype": (lambda p: p.data.astype(np.float16 if p.data.dtype == np.float64 else np.float64),
              TypeError, "grad: expected dtype"),
    "int": (lambda p: np.ones(p.shape, np.int32), TypeError, "grad: expected dtype"),
    "shape": (lambda p: np.ones(p.shape + (2,), p.dtype), ValueError, "grad: expected shape"),
    "strided": (lambda p: np.ones(p.shape + (2,), p.dtype)[..., 0], ValueError, "contiguous"),
    "list": (lambda p: p.data.tolist(), TypeError, "grad: expected a numpy.ndarray"),
    "itself": (lambda p: p.data, ValueError, "grad: shares memory with the parameter itself"),
}


@SETTINGS
@given(shapes=st.lists(st.lists(st.integers(2, 6), min_size=1, max_size=2).map(tuple),
                       min_size=2, max_size=4),
       dtype=DTYPES, mode=st.sampled_from(["adopt", "borrow"]),
       bad=st.sampled_from(sorted(BAD_GRADS) + ["other param", "state", "state dtype"]),
       victim=st.integers(0, 3), seed=st.integers(0, 2 ** 31))
def test_invalid_input_changes_nothing(shapes, dtype, mode, bad, victim, seed):
    params = [ae.Parameter(random_array(seed + i, s, dtype), name=f"w{i}")
              for i, s in enumerate(shapes)]
    opt = ae.Adamax(0.1, parameters=params, mode=mode, grad_clip=ae.ClipGradByGlobalNorm(1.0),
                    weight_decay=0.01)
    for i, p in enumerate(params):
        p.grad = random_array(seed + 50 + i, p.shape, dtype)
    opt.step()
    for i, p in enumerate(params):
        p.grad = random_array(seed + 90 + i, p.shape, dtype)
    v = params[victim % len(params)]
    if bad in BAD_GRADS:
        make, error, message = BAD_GRADS[bad]
        v.grad = make(v)
        action = opt.step
    elif bad == "other param":
        other = params[(victim + 1) % len(params)]
        v.grad = other.data if other.shape == v.shape else other.data.reshape(-1)[:0]
        if other.shape != v.shape:  # (shape is checked first)
            error, message = ValueError, "grad: expected shape"
        else:
            error, message = ValueError, f"shares memory with parameter '{other.name}'"
        action = opt.step
    else:
        state = {k: (v_.copy() if isinstance(v_, np.ndarray) else v_)
                 for k, v_ in opt.state_dict().items()}
        key = sorted(state)[victim % len(state)]
        if bad == "state":
            state[key] = np.zeros(state[key].shape + (1,), state[key].dtype)
            error, message = ValueError, "expected shape"
        else:
            state[key] = state[key].astype(np.float16)
            error, message = TypeError, "expected dtype"
        action = lambda: opt.set_state_dict(state)  # noqa: E731
    before = snapshot(opt, params)
    with pytest.raises(error, match=message):
        action()
    assert same(snapshot(opt, params), before)


def test_parameters_sharing_memory_are_refused():
    base = np.arange(12, dtype=np.float32)
    a, b = ae.Parameter(base[:8], name="a"), ae.Parameter(base[4:], name="b")
    for mode in ("adopt", "borrow"):
        with pytest.raises(ValueError, match="'a' and 'b' share memory"):
            ae.Adamax(0.1, parameters=[a, b], mode=mode)
    c = ae.Parameter(base[8:], name="c")
    ae.Adamax(0.1, parameters=[ae.Parameter(base[:8], name="a2"), c], mode="borrow")  # disjoint


def test_torch_aliasing_is_refused():
    torch = pytest.importorskip("torch")
    w = torch.nn.Parameter(torch.randn(4, 3))
    v = torch.nn.Parameter(torch.randn(4, 3))
    opt = ae.Adamax(0.1, parameters=[("w", w), ("v", v)], mode="borrow")
    w.grad = v.detach()
    v.grad = torch.randn(4, 3)
    before = (w.detach().clone(), v.detach().clone())
    with pytest.raises(ValueError, match="w.grad: shares memory with parameter 'v'"):
        opt.step()
    assert torch.equal(w.detach(), before[0]) and torch.equal(v.detach(), before[1])


@pytest.mark.slow
def test_soak_1e5_steps_drift_against_float64():
    """10^5 fp32 steps stay within a small bound of the same run in fp64 (errors do not grow
    beyond a random walk of rounding errors)."""
    rng = np.random.default_rng(7)
    init = rng.standard_normal(1000)
    p32 = ae.Parameter(init.astype(np.float32))
    p64 = ae.Parameter(init.astype(np.float64))
    opt32 = ae.Adamax(1e-3, parameters=[p32], grad_clip=ae.ClipGradByGlobalNorm(10.0),
                      weight_decay=1e-4)
    opt64 = ae.Adamax(1e-3, parameters=[p64], grad_clip=ae.ClipGradByGlobalNorm(10.0),
                      weight_decay=1e-4)
    p32.grad, p64.grad = np.zeros(1000, np.float32), np.zeros(1000)
    worst = 0.0
    for step in range(100_000):
        g = rng.standard_normal(1000) + 0.1 * p64.data  # a noisy quadratic pull
        p32.grad[...] = g  # in place: after the first step, into the adopted views
        p64.grad[...] = g
        opt32.step()
        opt64.step()
        if step % 1000 == 0:
            worst = max(worst, float(np.max(np.abs(p32.data - p64.data))))
            assert np.all(np.isfinite(p32.data))
    print(f"soak: worst |fp32 - fp64| over 1e5 steps = {worst:.3g}")
    assert worst < 1e-3, worst


def test_default_nonfinite_behaviour_is_paddles():
    """Without skip_nonfinite: inf grad -> moment inf, inf_norm inf, param NaN; NaN -> NaN."""
    g = np.array([np.inf, -np.inf, np.nan, 0.5], np.float32)
    p = ae.Parameter(np.array([1.0, 2.0, 3.0, 4.0], np.float32), name="w")
    opt = ae.Adamax(0.1, parameters=[p])
    p.grad = g.copy()
    with np.errstate(invalid="ignore"):
        opt.step()
    sd = opt.state_dict()
    np.testing.assert_array_equal(sd["w_moment_0"][:2], [np.inf, -np.inf])
    np.testing.assert_array_equal(sd["w_inf_norm_0"][:2], [np.inf, np.inf])
    assert np.isnan(p.data[:3]).all() and np.isnan(sd["w_moment_0"][2])
    assert np.isnan(sd["w_inf_norm_0"][2]) and np.isfinite(p.data[3])
    paddle = pytest.importorskip("paddle")
    w = paddle.create_parameter([4], "float32")
    w.set_value(np.array([1.0, 2.0, 3.0, 4.0], np.float32))
    w.grad = paddle.to_tensor(g)
    popt = paddle.optimizer.Adamax(0.1, parameters=[w])
    popt.step()
    np.testing.assert_array_equal(w.numpy(), p.data)  # NaN == NaN here
