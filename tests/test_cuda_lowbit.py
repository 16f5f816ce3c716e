"""Low-bit state on device="cuda" (kernels/cuda/lowbit.py), beyond tests/test_parity.py's table
(which runs every feature against the numpy oracle, bit for bit, with NaN/inf/subnormal grads,
both roundings, float64, float16 masters and borrow mode): borrowed device arrays are the ones
stepped, checkpoints move between the GPU and the CPU exactly, row-sparse grads step as their
dense grad. In CI this runs in numba's CUDA simulator; on a GPU NVVM's FMA contraction may move
a code where a value sits within an ulp of a rounding boundary (docs/cuda.md)."""
import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine.kernels import cuda as K
from test_lowbit import FEATURES  # named grad features (weight decay, clips)

pytestmark = pytest.mark.skipif(not K.available(), reason="no CUDA GPU and no simulator")

SIZES = (1, 7, 33, 300, 513) if K.simulated() else (1, 7, 1000, 65537, 300001)


def cuda():
    from numba import cuda as c
    return c


def build(device, state_dtype, feature, flavor, rounding, groups=False, dtype="float32",
          mode="adopt"):
    """A float16 ``dtype``: float32 masters (multi_precision)."""
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal(n).astype(dtype) for n in SIZES]
    if device == "cuda":
        arrays = [cuda().to_device(a) for a in arrays]
    params = [ae.Parameter(a, name=f"p{i}") for i, a in enumerate(arrays)]
    spec = [{"params": params[:2], "beta1": 0.8, "learning_rate": 2.0},
            {"params": params[2:], "beta2": 0.99}] if groups else params
    backend = None if device == "cuda" else "reference"
    return params, ae.Adamax(0.01, parameters=spec, device=device, backend=backend,
                             flavor=flavor, state_dtype=state_dtype, state_rounding=rounding,
                             mode=mode, multi_precision=np.dtype(dtype).itemsize == 2,
                             **FEATURES[feature])


def run(params, device, steps=3, special=False):
    for step in range(steps):
        rng = np.random.default_rng(100 + step)
        for p in params:
            g = (rng.standard_normal(p.shape) * 10.0 ** rng.integers(-3, 2)).astype(p.dtype)
            if special and g.size > 8:
                g[:4] = [np.nan, np.inf, -np.inf, 1e-41]
            p.grad = cuda().to_device(g) if device == "cuda" else g
        yield


def host(a):
    return a if isinstance(a, np.ndarray) else a.copy_to_host()


def held(opt):
    """The state as held: codes (and int8 scales), and the float32 masters if any."""
    b = opt.registry.buckets[0]
    masters = (b.master,) if b.master is not None else ()
    return [host(x) for x in (b.moment, b.inf_norm, *(b.scales or ()), *masters)]


def _same_bits(dev_params, dev, ref_params, ref):
    for a, b in zip(dev_params, ref_params):
        np.testing.assert_array_equal(host(a.data).view(np.uint8), host(b.data).view(np.uint8))
    for x, y in zip(held(dev), held(ref)):
        np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8))


@pytest.mark.parametrize("state_dtype,feature", [("int8", "L1")])
def test_borrowed_parameters_equal_adopted_ones_and_the_oracle(state_dtype, feature):
    """mode="borrow" on the GPU: the caller's device arrays stepped in place (address tables on
    a GPU, staging in the simulator), the same bits as adopt mode and (simulator) the oracle."""
    borrowed, dev = build("cuda", state_dtype, feature, "paddle", "stochastic", mode="borrow")
    adopted, ada = build("cuda", state_dtype, feature, "paddle", "stochastic")
    ref_params, ref = build("cpu", state_dtype, feature, "paddle", "stochastic")
    arrays = [p.data for p in borrowed]
    special = feature == "plain"
    for _ in zip(run(borrowed, "cuda", special=special), run(adopted, "cuda", special=special),
                 run(ref_params, "cpu", special=special)):
        dev.step()
        ada.step()
        ref.step()
    assert dev.registry.buckets[0].mode == "borrow"
    assert all(p.data is a for p, a in zip(borrowed, arrays))
    _same_bits(borrowed, dev, adopted, ada)  # the same kernel code either way
    if K.simulated():
        _same_bits(borrowed, dev, ref_params, ref)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the simulator's
@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])              # 1 / 2e-39
def test_blocks_their_scale_cannot_code_get_zero_codes(rounding):
    """As tests/test_lowbit.py's case on the CPU: blocks of grads ~1e-40 (neither state codes),
    ~5e-39 (1 / moment scale overflows) and 0 get zero codes, the same bits as the oracle."""
    fills = (1e-40, 5e-39, 0.0, 1.0)
    out = []
    for device in ("cuda", "cpu"):
        arrays = [np.ones(256 if f != 1.0 else 300, np.float32) for f in fills]
        if device == "cuda":
            arrays = [cuda().to_device(a) for a in arrays]
        params = [ae.Parameter(a, name=f"p{i}") for i, a in enumerate(arrays)]
        opt = ae.Adamax(0.01, parameters=params, device=device, flavor="keras",
                        backend=None if device == "cuda" else "reference", state_dtype="int8",
                        state_rounding=rounding)
        rng = np.random.default_rng(4)
        for _ in range(2):
            for p, f in zip(params, fills):
                g = (rng.standard_normal(p.shape) * f).astype(np.float32)
                p.grad = cuda().to_device(g) if device == "cuda" else g
            opt.step()
        out.append((params, opt))
    if K.simulated():
        _same_bits(*out[0], *out[1])
    moment, inf_norm = held(out[0][1])[:2]
    assert not moment[:768].any() and not inf_norm[:256].any() and inf_norm[256:512].any()
    assert moment[768:].any()


@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_checkpoints_move_between_gpu_and_cpu_exactly(tmp_path, state_dtype):
    dev_params, dev = build("cuda", state_dtype, "plain", "paddle", "stochastic")
    for _ in run(dev_params, "cuda", steps=2):
        dev.step()
    dev.save(tmp_path / "gpu.npz")
    cpu_params = [ae.Parameter(np.zeros(n, np.float32), name=f"p{i}")
                  for i, n in enumerate(SIZES)]
    cpu = ae.Adamax.load(tmp_path / "gpu.npz", cpu_params)
    for x, y in zip(held(dev), held(cpu)):
        np.testing.assert_array_equal(x, y)
    sd = dev.state_dict()  # decoded on the host: the same values the CPU optimizer holds
    np.testing.assert_array_equal(sd["p3_inf_norm_0"], cpu.state_dict()["p3_inf_norm_0"])
    cpu.save(tmp_path / "cpu.npz")
    back_params = [ae.Parameter(cuda().to_device(np.zeros(n, np.float32)), name=f"p{i}")
                   for i, n in enumerate(SIZES)]
    back = ae.Adamax.load(tmp_path / "cpu.npz", back_params)
    for x, y in zip(held(back), held(dev)):
        np.testing.assert_array_equal(x, y)
    for _ in zip(run(dev_params, "cuda", steps=1), run(back_params, "cuda", steps=1)):
        dev.step()
        back.step()
    for a, b in zip(dev_params, back_params):  # resumed on the GPU bit for bit
        np.testing.assert_array_equal(host(a.data), host(b.data))


@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_row_sparse_grads_step_as_their_dense_grad(state_dtype):
    """A RowSparseGrad on a device parameter with low-bit state: the dense grad it stands for
    is written into the device grad buffer (tests/test_lowbit_rows.py has the CPU cases)."""
    rng = np.random.default_rng(4)
    value = rng.standard_normal((70, 5)).astype(np.float32)
    runs = []
    for as_sparse in (True, False):
        p = ae.Parameter(cuda().to_device(value), name="emb")
        opt = ae.Adamax(0.01, parameters=[p], device="cuda", state_dtype=state_dtype)
        for step in range(2):
            g = np.random.default_rng(step)
            rows = np.array([3, 3, 69, 0, 17])
            values = g.standard_normal((5, 5)).astype(np.float32)
            dense = np.zeros((70, 5), np.float32)
            np.add.at(dense, rows, values)
            p.grad = ae.RowSparseGrad(rows, values) if as_sparse else cuda().to_device(dense)
            opt.step()
        runs.append((p, opt))
    assert isinstance(runs[0][0].grad, ae.RowSparseGrad)
    _same_bits([runs[0][0]], runs[0][1], [runs[1][0]], runs[1][1])
