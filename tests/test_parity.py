"""The parity table: every (backend, mode) x dtype x feature the engine supports, against the
numpy oracle (kernels.reference.group_step), params and every state entry, bit for bit.

Rows are built from one table (``SUPPORTED`` says which combinations exist, as torch's
``optim_db`` does); CUDA rows run in numba's simulator in CI, where the kernels are bit-identical
to the reference except for the norm clips, whose squares the device sums in another order (and
a real GPU contracts a*b+c into FMAs): those compare to the last few ulps of the dtype.
Inputs are fresh random values (never zeros), odd sizes, a 0-d tensor and one longer than a
chunk. 16-bit rows: the oracle steps float32 masters on the widened values, then rounds.
Low-bit state rows (``state_dtype`` bfloat16 / int8): the oracle is kernels/lowbit_reference.py
(the ``reference`` backend, which imports no fast code) run on the same inputs; params, codes,
scales and masters bit for bit; two more features there: round-to-nearest, and NaN / inf /
subnormal grads. The CUDA low-bit rows are a sample (the simulator is slow).
"""
import itertools

import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine.kernels import cuda as K
from adamax_engine.kernels import layout as L
from adamax_engine.kernels import reference as ref

PATHS = [("cpu", "adopt"), ("cpu", "borrow"), ("reference", "adopt"), ("reference", "borrow"),
         ("cuda", "adopt"), ("cuda", "borrow")]
DTYPES = ["float32", "float64", "float16", "bfloat16"]
FEATURES = ["plain", "value_clip", "norm_clip", "global_clip", "l1", "l2", "groups",
            "param_attrs", "skip_nonfinite", "row_sparse", "torch_flavor", "keras_flavor"]
#: features with a norm clip (the CUDA rows of these compare to a few ulps, see the docstring)
NORM_CLIPPED = ("norm_clip", "global_clip", "param_attrs", "torch_flavor")
HOST_SHAPES = [(3, 5), (1,), (), (7,), (2, 3, 4), (129,), (L.CHUNK + 3,)]
CUDA_SHAPES = [(3, 5), (1,), (), (7,), (2, 3, 4), (37,)]  # the simulator is slow
STEPS, CUDA_STEPS = 4, 3
LR = 0.03
GROUP1 = {"beta1": 0.8, "beta2": 0.99, "epsilon": 1e-6, "learning_rate": 0.5}


STATES = ["float32", "bfloat16", "int8"]
LOW_BIT_FEATURES = ["nearest", "special"]  # low-bit rows only: the rounding, NaN/inf/subnormal
#: the CUDA low-bit rows that run (the simulator is slow): on float32 adopt every feature with
#: one state dtype or the other (both for these), and a sample elsewhere
CUDA_BOTH_STATES = ("plain", "special", "global_clip", "nearest")
CUDA_LOW_BIT_SAMPLE = {("borrow", "float32"): ("plain", "global_clip", "l1", "special"),
                       ("adopt", "float64"): ("plain", "special"),
                       ("adopt", "float16"): ("plain", "l2", "value_clip")}


def supported(path, dtype, feature, state="float32"):
    """Which combinations the engine offers (anything else is refused, tested elsewhere)."""
    backend, mode = path
    low = dtype in ("float16", "bfloat16")
    if backend == "cuda" and (dtype == "bfloat16" or (low and mode == "borrow")):
        return False  # device arrays are fp32/fp64/fp16; borrowed 16-bit needs adopt on a GPU
    if feature == "row_sparse" and (low or (backend == "cuda" and mode == "borrow")):
        return False
    if state == "float32":
        return feature not in LOW_BIT_FEATURES
    # low-bit state: multi_precision adopts (row-sparse grads step densified); the reference
    # backend is these rows' oracle
    return not ((low and mode == "borrow") or backend == "reference")


def sampled(path, dtype, feature, state):
    """The rows that run: all of them but CUDA low-bit ones outside the sample."""
    if path[0] != "cuda" or state == "float32":
        return True
    if (path[1], dtype) == ("adopt", "float32"):
        every = FEATURES + LOW_BIT_FEATURES
        return feature in CUDA_BOTH_STATES or every.index(feature) % 2 == STATES.index(state) % 2
    return feature in CUDA_LOW_BIT_SAMPLE.get((path[1], dtype), ())


CASES = [pytest.param(p, d, f, s, id=f"{p[0]}-{p[1]}-{d}-{f}" + ("" if s == "float32" else
                                                                    f"-{s}"))
         for p, d, f, s in itertools.product(PATHS, DTYPES, FEATURES + LOW_BIT_FEATURES, STATES)
         if supported(p, d, f, s) and sampled(p, d, f, s)]


def np_dtype(name):
    if name == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def settings(feature, n):
    """(Adamax kwargs, the oracle's clip, each param's decay, group and ParamAttr-like
    (lr multiplier, need_clip))."""
    opt_kw, clip, decays, groups, attrs = {}, None, [None] * n, [0] * n, [(1.0, True)] * n
    if feature == "value_clip":
        opt_kw["grad_clip"], clip = ae.ClipGradByValue(0.5, -0.3), ("value", -0.3, 0.5)
    elif feature == "norm_clip":
        opt_kw["grad_clip"], clip = ae.ClipGradByNorm(1.5), ("norm", 1.5)
    elif feature == "global_clip":
        opt_kw["grad_clip"], clip = ae.ClipGradByGlobalNorm(2.0), ("global", 2.0, False)
    elif feature == "l1":
        decays = [("l1", 0.003)] * n
        opt_kw["weight_decay"] = ae.L1Decay(0.003)
    elif feature == "l2":
        decays = [("l2", 0.01)] * n
        opt_kw["weight_decay"] = 0.01
    elif feature == "groups":
        groups = [i % 2 for i in range(n)]
    elif feature == "param_attrs":  # per-parameter lr multiplier, regularizer and need_clip
        opt_kw["grad_clip"], clip = ae.ClipGradByGlobalNorm(1.0), ("global", 1.0, False)
        decays = [("l2", 0.02), None, ("l1", 0.01)] * n
        attrs = [(2.0, True), (1.0, False), (0.5, True)] * n
        decays, attrs = decays[:n], attrs[:n]
    elif feature == "skip_nonfinite":
        opt_kw["skip_nonfinite"] = True
    elif feature == "torch_flavor":
        opt_kw["flavor"] = "torch"
        opt_kw["grad_clip"], clip = ae.ClipGradByGlobalNorm(3.0), ("global", 3.0, False)
    elif feature == "keras_flavor":
        opt_kw["flavor"] = "keras"
    return opt_kw, clip, decays, groups, attrs


def decay(spec):
    return None if spec is None else (ae.L2Decay if spec[0] == "l2" else ae.L1Decay)(spec[1])


class Oracle:
    """The reference, one group_step per parameter group; fp32 masters for 16-bit params."""

    def __init__(self, init, compute, groups, clip, decays, attrs, flavor):
        self.values = [x.astype(compute) for x in init]
        self.groups, self.clip, self.decays, self.flavor = groups, clip, decays, flavor
        self.attrs = attrs
        self.state = {g: {} for g in set(groups)}

    def step(self, grads, skip_nonfinite):
        if skip_nonfinite and any(g is not None and not np.isfinite(g).all() for g in grads):
            for g in set(self.groups):  # paddle's found_inf: beta1_pow advances, nothing else
                st = self.state[g]
                idx = [i for i in range(len(grads)) if self.groups[i] == g]
                for k, i in enumerate(idx):
                    if grads[i] is None:
                        continue
                    beta1 = GROUP1["beta1"] if g else 0.9
                    for key in ("moment", "inf_norm", "beta1_pow", "step"):
                        st.setdefault(key, [None] * len(idx))
                    if st["moment"][k] is None:
                        T = self.values[i].dtype.type
                        st["moment"][k] = np.zeros_like(self.values[i])
                        st["inf_norm"][k] = np.zeros_like(self.values[i])
                        st["beta1_pow"][k] = np.array(T(beta1))
                        st["step"][k] = 0
                    st["beta1_pow"][k][()] = st["beta1_pow"][k][()] * \
                        self.values[i].dtype.type(beta1)
            return
        for g in set(self.groups):
            idx = [i for i in range(len(grads)) if self.groups[i] == g]
            kw = {"beta1": GROUP1["beta1"], "beta2": GROUP1["beta2"],
                  "epsilon": GROUP1["epsilon"],
                  "lr_mults": [GROUP1["learning_rate"]] * len(idx)} if g else \
                {"lr_mults": [self.attrs[i][0] for i in idx]}
            ref.group_step([self.values[i] for i in idx],
                           [None if grads[i] is None else grads[i].astype(self.values[i].dtype)
                            for i in idx], self.state[g], lr=LR, clip=self.clip,
                           decays=[self.decays[i] for i in idx], flavor=self.flavor,
                           need_clip=[self.attrs[i][1] for i in idx], **kw)

    def entry(self, i, key):
        g = self.groups[i]
        k = [j for j in range(len(self.groups)) if self.groups[j] == g].index(i)
        return self.state[g].get(key, [None] * (k + 1))[k]


def host(array):
    return array if isinstance(array, np.ndarray) else array.copy_to_host()


@pytest.mark.parametrize("path,dtype,feature,state", CASES)
def test_parity_with_the_oracle(rng, path, dtype, feature, state):
    backend, mode = path
    if backend == "cuda" and not K.available():
        pytest.skip("no CUDA GPU and no simulator")
    if state != "float32":
        return low_bit_parity(int(rng.integers(2 ** 31)), path, dtype, feature, state)
    dt = np_dtype(dtype)
    low = dtype in ("float16", "bfloat16")
    compute = np.dtype(np.float32) if low else dt
    shapes = CUDA_SHAPES if backend == "cuda" else HOST_SHAPES
    n = len(shapes)
    opt_kw, clip, decays, groups, attrs = settings(feature, n)
    init = [np.asarray(rng.standard_normal(s), dtype=dt) for s in shapes]
    if backend == "cuda":
        from numba import cuda
        to_dev = cuda.to_device
    else:
        def to_dev(x):
            return x
    own = feature == "param_attrs"
    params = [ae.Parameter(to_dev(x.copy()), name=f"p{i}", learning_rate=attrs[i][0],
                           need_clip=attrs[i][1], regularizer=decay(decays[i]) if own else None)
              for i, x in enumerate(init)]
    if feature == "groups":
        parameters = [{"params": [p for p, g in zip(params, groups) if g == 0]},
                      {"params": [p for p, g in zip(params, groups) if g == 1], **GROUP1}]
        order = [i for g in (0, 1) for i in range(n) if groups[i] == g]
    else:
        parameters, order = params, list(range(n))
    opt = ae.Adamax(LR, parameters=parameters, backend=backend if backend != "cuda" else None,
                    device="cuda" if backend == "cuda" else "cpu", mode=mode,
                    multi_precision=low, **opt_kw)
    oracle = Oracle(init, compute, groups, clip, decays, attrs,
                    L.FLAVORS[opt_kw.get("flavor", "paddle")])
    for step in range(CUDA_STEPS if backend == "cuda" else STEPS):
        grads = [np.asarray(rng.standard_normal(s) * rng.uniform(0.05, 3), dtype=dt)
                 for s in shapes]
        if step == 1:
            grads[3] = None  # a parameter without a grad this step: untouched
        if feature == "skip_nonfinite" and step == 2:
            grads[0].reshape(-1)[1] = np.inf
        for i, (p, g) in enumerate(zip(params, grads)):
            if feature == "row_sparse" and i == 0:
                rows = rng.integers(0, shapes[0][0], 4)  # duplicates summed
                values = rng.standard_normal((4,) + shapes[0][1:]).astype(dt)
                dense = np.zeros(shapes[0], dt)
                np.add.at(dense, rows, values)
                grads[0] = dense
                p.grad = ae.RowSparseGrad(rows, values)
            else:
                p.grad = None if g is None else to_dev(g.copy())
        opt.step()
        oracle.step(grads, opt_kw.get("skip_nonfinite", False))
    sd = opt.state_dict()  # (flushes lagging row-sparse rows first)
    # bit for bit, but on a GPU (FMA) and for CUDA norm clips (the device sums the squares in
    # a tree, not in the host's lane order): to the last few ulps of the dtype
    exact = backend != "cuda" or (K.simulated() and feature not in NORM_CLIPPED)
    tol = {"float64": 1e-12, "float32": 1e-5}.get(dtype, 4e-3)

    def check(got, want, err_msg):
        if exact:
            np.testing.assert_array_equal(got, want, err_msg=err_msg)
        else:
            np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                                       rtol=tol, atol=tol, err_msg=err_msg)
    for i, p in enumerate(params):
        want = oracle.values[i].astype(dt) if low else oracle.values[i]
        check(host(p.data), want, err_msg=f"param {i}")
        owner = f"p{i}_fp32_master_0" if low else f"p{i}"
        for key, acc in (("moment", "moment"), ("inf_norm", "inf_norm"),
                         ("beta1_pow", "beta1_pow_acc")):
            expected = oracle.entry(i, key)
            if expected is None:
                assert f"{owner}_{acc}_0" not in sd
                continue
            check(sd[f"{owner}_{acc}_0"], np.asarray(expected).reshape(sd[f"{owner}_{acc}_0"].shape),
                  err_msg=f"{acc} {i}")
        if low:
            check(sd["master_weights"][f"p{i}"], oracle.values[i], err_msg=f"master {i}")
    assert opt.skipped_steps == (1 if feature == "skip_nonfinite" else 0)
    assert sorted(order) == list(range(n))


def test_the_table_covers_every_feature_on_every_path():
    """Each feature runs on every path that has it, for every state dtype; the refused ones
    are the documented few (the reference backend is the low-bit rows' oracle)."""
    for state in STATES:
        for feature in FEATURES + LOW_BIT_FEATURES:
            rows = {p for p, d, f, s in itertools.product(PATHS, DTYPES, [feature], [state])
                    if supported(p, d, f, s)}
            if state == "float32" and feature in LOW_BIT_FEATURES:
                assert not rows
                continue
            missing = set(PATHS) - rows
            expected = {("cuda", "borrow")} if feature == "row_sparse" else set()
            if state != "float32":
                expected |= {("reference", "adopt"), ("reference", "borrow")}
            assert missing == expected, (state, feature)
    every = list(itertools.product(PATHS, DTYPES, FEATURES + LOW_BIT_FEATURES, STATES))
    run = [c for c in every if supported(*c) and sampled(*c)]
    assert len(run) == len(CASES) and len(set(run)) == len(run)
    assert sum(1 for c in run if c[3] != "float32") > 100  # the low-bit rows are there
    gpu = {f for p, d, f, s in run if p[0] == "cuda" and s != "float32"}
    assert gpu == set(FEATURES + LOW_BIT_FEATURES)  # every feature runs on a GPU


# --- low-bit state rows --------------------------------------------------------------------------
SUBNORMAL = {"float16": 1e-7, "bfloat16": 1e-39}  # (float32/float64: 1e-41)


def _low_bit_run(seed, backend, mode, dtype, feature, state, shapes, steps):
    """One run of a low-bit row: params and optimizer after the steps; the same ``seed`` gives
    the same inputs whatever the backend."""
    rng = np.random.default_rng(seed)
    dt = np_dtype(dtype)
    n = len(shapes)
    opt_kw, _, decays, groups, attrs = settings(feature, n)
    if feature == "nearest":
        opt_kw["state_rounding"] = "nearest"
    put = np.copy
    if backend == "cuda":
        from numba import cuda
        put = cuda.to_device
    params = [ae.Parameter(put(np.asarray(rng.standard_normal(s), dtype=dt)), name=f"p{i}",
                           learning_rate=attrs[i][0], need_clip=attrs[i][1],
                           regularizer=decay(decays[i]) if feature == "param_attrs" else None)
              for i, s in enumerate(shapes)]
    parameters = params if feature != "groups" else [
        {"params": [p for p, g in zip(params, groups) if g == 0]},
        {"params": [p for p, g in zip(params, groups) if g == 1], **GROUP1}]
    opt = ae.Adamax(LR, parameters=parameters, backend=None if backend == "cuda" else backend,
                    device="cuda" if backend == "cuda" else "cpu", mode=mode,
                    multi_precision=dt.itemsize == 2, state_dtype=state, **opt_kw)
    for step in range(steps):
        grads = [np.asarray(rng.standard_normal(s) * rng.uniform(0.05, 3), dtype=dt)
                 for s in shapes]
        if step == 1:
            grads[3] = None
        if feature == "skip_nonfinite" and step == 2:
            grads[0].reshape(-1)[1] = np.inf
        if feature == "special":  # NaN, infinities, a subnormal: in the last (longest) tensor
            grads[-1].reshape(-1)[:4] = [np.nan, np.inf, -np.inf, SUBNORMAL.get(dtype, 1e-41)]
        for i, (p, g) in enumerate(zip(params, grads)):
            if feature == "row_sparse" and i == 0:
                rows = rng.integers(0, shapes[0][0], 4)  # duplicates summed
                p.grad = ae.RowSparseGrad(rows, rng.standard_normal((4,) + shapes[0][1:])
                                          .astype(dt))
            else:
                p.grad = None if g is None else put(g)
        opt.step()
    return params, opt


def _bytes(a):
    """Every bit of ``a`` (NaNs included), as bytes."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def low_bit_parity(seed, path, dtype, feature, state):
    """A low-bit row against lowbit_reference (the reference backend) on the same inputs."""
    backend, mode = path
    shapes, steps = (CUDA_SHAPES, CUDA_STEPS) if backend == "cuda" else (HOST_SHAPES, STEPS)
    params, opt = _low_bit_run(seed, backend, mode, dtype, feature, state, shapes, steps)
    ref_params, ref_opt = _low_bit_run(seed, "reference", mode if backend == "cpu" else "adopt",
                                       dtype, feature, state, shapes, steps)
    exact = backend != "cuda" or (K.simulated() and feature not in NORM_CLIPPED)
    low = dtype in ("float16", "bfloat16")
    sd, ref_sd = opt.state_dict(), ref_opt.state_dict()
    for i, (p, q) in enumerate(zip(params, ref_params)):
        held = [host(x) for x in opt.parameter_codes(p) if x is not None]
        want = [np.asarray(x) for x in ref_opt.parameter_codes(q) if x is not None]
        assert len(held) == len(want) == (4 if state == "int8" else 2)
        if low:
            held.append(np.asarray(sd["master_weights"][f"p{i}"]))
            want.append(np.asarray(ref_sd["master_weights"][f"p{i}"]))
        if exact:
            np.testing.assert_array_equal(_bytes(host(p.data)), _bytes(q.data),
                                          err_msg=f"param {i}")
            for k, (x, y) in enumerate(zip(held, want)):
                np.testing.assert_array_equal(_bytes(x), _bytes(y),
                                              err_msg=f"state {k} of param {i}")
            continue
        # a GPU's FMAs, or the device's norm sums in another order: the params to a few ulps
        # of the dtype, and only codes next to a rounding boundary move
        tol = {"float64": 1e-12, "float32": 1e-5}.get(dtype, 4e-3)
        np.testing.assert_allclose(host(p.data).astype(np.float64), q.data.astype(np.float64),
                                   rtol=tol, atol=tol, err_msg=f"param {i}")
        for x, y in zip(held[:2], want[:2]):
            assert np.mean(x.astype(np.int64) != y.astype(np.int64)) <= 0.05
    assert opt.skipped_steps == ref_opt.skipped_steps == (feature == "skip_nonfinite")
