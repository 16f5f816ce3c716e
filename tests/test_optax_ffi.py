"""The optax front's XLA FFI step (kernels/xla_ffi.py) against its pure_callback twin (the
engine's host kernel on packed buffers, what other platforms run): the same bits for every
flavor, state dtype and leaf shape, under jit and not; the step really is an FFI call; the
handler loads from numba's cache in a new process; beta1_pow for the paddle flavor."""
import os
import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("optax")
import jax.numpy as jnp  # noqa: E402

from adamax_engine import optax as front  # noqa: E402
from adamax_engine.kernels import layout as L  # noqa: E402
from adamax_engine.kernels import reference  # noqa: E402
from adamax_engine.kernels import xla_ffi  # noqa: E402

SHAPES = [(), (1,), (7,), (33, 17), (L.CHUNK + 3,), (0,), (2, 3, 5)]


def leaves(rng, dtype, specials=False):
    out = [jnp.asarray(rng.standard_normal(s) * rng.uniform(0.01, 10), dtype) for s in SHAPES]
    if specials:  # non-finite grads and subnormals, as the engine's parity table has them
        x = np.array(out[3], np.float32)
        x[0, :4] = [np.nan, np.inf, -np.inf, 1e-40]
        out[3] = jnp.asarray(x, dtype)
    return out


def bits(x):
    a = np.asarray(x)
    return a.view(np.dtype(f"u{a.dtype.itemsize}")) if a.size else a


def run(step, flavor, dt, steps, jit, seed, specials, scalars):
    rng = np.random.default_rng(seed)
    mu = [jnp.zeros(s, dt) for s in SHAPES]
    nu = [jnp.zeros(s, dt) for s in SHAPES]
    fn = jax.jit(step, static_argnums=(0, 1)) if jit else step
    history = []
    for t in range(steps):
        grads = leaves(rng, dt, specials and t == 1)
        upd, mu, nu = fn(flavor, dt, scalars, jnp.asarray(t, jnp.int32), grads, mu, nu)
        history.append([bits(x) for x in (*upd, *mu, *nu)])
    return history


def callback_step(flavor, dt, scalars, count, grads, mu, nu):
    return front._callback_step(front._HostStep(flavor), dt, scalars, count, grads, mu, nu)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("flavor", sorted(L.FLAVORS))
@pytest.mark.parametrize("specials", [False, True], ids=["finite", "nan-inf-subnormal"])
def test_ffi_step_equals_the_callback_step_bit_for_bit(flavor, jit, specials):
    dt = jnp.dtype("float32")
    scalars = jnp.asarray([0.013, 0.87, 0.995, 1e-6], jnp.float32)
    code = L.FLAVORS[flavor]
    ours = run(front._ffi_step, code, dt, 4, jit, 5, specials, scalars)
    theirs = run(callback_step, code, dt, 4, jit, 5, specials, scalars)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        for k, (x, y) in enumerate(zip(a, b)):
            assert np.array_equal(x, y), f"step {t}, output {k}: not bit-identical"


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the oracle on NaN grads
@pytest.mark.parametrize("flavor", ["optax", "torch", "keras"])
def test_float64_state_under_x64_equals_the_numpy_oracle(flavor):
    """Against kernels/reference.py (the callback's host thread would not see the x64 context
    this test sets): a zero parameter stepped with the carried state each step."""
    lr, b1, b2, eps = 0.02, 0.9, 0.999, 1e-8
    rng = np.random.default_rng(9)
    with jax.enable_x64(True):
        scalars = jnp.asarray([lr, b1, b2, eps], jnp.float64)
        dt = jnp.dtype("float64")
        mu = [jnp.zeros(s, dt) for s in SHAPES]
        nu = [jnp.zeros(s, dt) for s in SHAPES]
        state = {}
        for t in range(3):
            grads = leaves(rng, dt, t == 1)
            upd, mu, nu = jax.jit(front._ffi_step, static_argnums=(0, 1))(
                L.FLAVORS[flavor], dt, scalars, jnp.asarray(t, jnp.int32), grads, mu, nu)
            params = [np.zeros(s) for s in SHAPES]
            reference.group_step(params, [np.asarray(g) for g in grads], state, lr=lr,
                                 beta1=b1, beta2=b2, epsilon=eps, flavor=L.FLAVORS[flavor])
            for ours, theirs in zip((upd, mu, nu), (params, state["moment"],
                                                    state["inf_norm"])):
                for x, y in zip(ours, theirs):
                    assert np.array_equal(bits(x), bits(np.asarray(y))), f"step {t}"


def test_the_update_is_one_ffi_call_per_state_dtype_and_in_place():
    params = {"w": jnp.ones((5, 3), jnp.float32), "h": jnp.ones(4, jnp.bfloat16),
              "b": jnp.ones(3, jnp.float32)}
    tx = front.adamax(1e-3)
    hlo = jax.jit(tx.update).lower(params, tx.init(params)).compile().as_text()
    assert hlo.count('custom_call_target="adamax_engine_2_float32"') == 1  # both dtypes:
    assert "callback" not in hlo  # bfloat16 leaves are stepped in float32
    # every grad, mu and nu aliases its result (3 leaves, 9 pairs)
    assert hlo.count("output_to_operand_aliasing={") == 1 and hlo.count(": (") >= 9


def test_many_leaves_take_calls_of_ffi_leaves_each_with_the_same_bits():
    n = 2 * L.FFI_LEAVES + 5
    rng = np.random.default_rng(2)
    grads = [jnp.asarray(rng.standard_normal(int(k)), jnp.float32)
             for k in rng.integers(1, 300, n)]
    mu = [jnp.asarray(rng.standard_normal(g.shape), jnp.float32) for g in grads]
    nu = [jnp.abs(m) + 0.5 for m in mu]
    args = (jnp.asarray([0.01, 0.9, 0.999, 1e-8], jnp.float32), jnp.asarray(3, jnp.int32),
            grads, mu, nu)
    ffi = jax.jit(front._ffi_step, static_argnums=(0, 1))
    dt = jnp.dtype("float32")
    assert ffi.lower(L.OPTAX, dt, *args).as_text().count("custom_call @adamax_engine_2_") == 3
    ours, theirs = ffi(L.OPTAX, dt, *args), callback_step(L.OPTAX, dt, *args)
    for a, b in zip(ours, theirs):
        assert len(a) == n and all(np.array_equal(bits(x), bits(y)) for x, y in zip(a, b))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_paddle_beta1_pow_and_lr_t_follow_numpy_in_the_state_dtype(dtype):
    """front_hyper (numba) against the formula in numpy scalars, over 4000 steps."""
    T, like = dtype, np.empty(0, dtype)
    lr, b1 = 0.0123, 0.875
    for count in list(range(0, 40)) + list(range(40, 4000, 37)):
        tb1 = T(np.float32(b1))
        beta1_pow = tb1 ** (count + 1)
        want = T(lr) / (T(1) - beta1_pow)
        got = tuple(T(x) for x in xla_ffi.front_hyper(lr, b1, 0.999, 1e-8, count, L.PADDLE,
                                                      like))  # numba boxes T as a float
        assert bits(got[0]) == bits(want), count
        assert got[1:] == (tb1, T(1) - tb1, T(np.float32(0.999)), T(np.float32(1e-8)))
        other = T(xla_ffi.front_hyper(lr, b1, 0.999, 1e-8, count, L.OPTAX, like)[0])
        assert bits(other) == bits(T(lr / (1.0 - b1 ** float(count + 1)))), count


_WORKER = """
import sys, numpy as np, jax, jax.numpy as jnp
from adamax_engine import optax as front
from adamax_engine.kernels import xla_ffi
tx = front.adamax(0.01)
rng = np.random.default_rng(3)
params = [jnp.asarray(rng.standard_normal(n), jnp.float32) for n in (5, 20000)]
state = tx.init(params)
for _ in range(3):
    grads = [jnp.asarray(rng.standard_normal(p.shape), jnp.float32) for p in params]
    updates, state = jax.jit(tx.update)(grads, state)
h = xla_ffi.handler(2, np.float32)
print(sum(h.cache_hits.values()) if hasattr(h.cache_hits, "values") else h.cache_hits)
print(np.concatenate([np.asarray(u) for u in updates]).view(np.uint32).tobytes().hex())
"""


def test_handler_loads_from_numbas_cache_in_a_new_process(tmp_path):
    """A handler loaded from the cache once crashed (its kernel's thread pool unstarted)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    first, second = (subprocess.run([sys.executable, "-c", _WORKER], env=env, text=True,
                                    capture_output=True, timeout=600) for _ in range(2))
    assert first.returncode == 0, first.stderr[-2000:]
    assert second.returncode == 0, second.stderr[-2000:]
    hits_first, out_first = first.stdout.split()
    hits_second, out_second = second.stdout.split()
    assert int(hits_first) == 0 and int(hits_second) >= 1
    assert out_first == out_second


def test_a_leaf_of_2_31_elements_is_refused_by_name():
    big = jax.ShapeDtypeStruct((2 ** 31,), jnp.float32)
    tx = front.adamax(1e-3)
    with pytest.raises(ValueError, match="updates: a leaf of 2147483648 elements"):
        jax.eval_shape(tx.update, [big], jax.eval_shape(tx.init, [big]))


_PMAP = """
import numpy as np, jax, jax.numpy as jnp, numba, optax
from adamax_engine.optax import adamax
assert jax.device_count() == 2
tx, ref = adamax(1e-2), optax.adamax(1e-2)
rng = np.random.default_rng(0)
params = {"w": jnp.asarray(rng.standard_normal((2, 70000)), jnp.float32)}
ours, theirs = jax.pmap(tx.init)(params), jax.pmap(ref.init)(params)
for _ in range(5):
    g = {"w": jnp.asarray(rng.standard_normal((2, 70000)), jnp.float32)}
    u, ours = jax.pmap(tx.update)(g, ours)
    v, theirs = jax.pmap(ref.update)(g, theirs)
np.testing.assert_allclose(np.asarray(u["w"]), np.asarray(v["w"]), rtol=2e-6, atol=2e-7)
print(numba.threading_layer())
"""


def test_two_cpu_devices_step_at_once_under_pmap():
    """XLA runs each device's call on its own thread: numba's OpenMP and TBB layers take
    concurrent kernel launches (its workqueue layer aborts: docs/frameworks.md)."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, "-c", _PMAP], env=env, text=True,
                          capture_output=True, timeout=600)
    if done.returncode != 0 and "workqueue threading layer" in done.stderr:
        pytest.skip("numba's workqueue threading layer: no concurrent kernel launches")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] in ("omp", "tbb")


def test_vmap_over_a_batch_of_states_matches_optax():
    """vmap_method="sequential": one FFI call per batch element, each in place."""
    optax = pytest.importorskip("optax")
    tx, ref = front.adamax(1e-2), optax.adamax(1e-2)
    rng = np.random.default_rng(4)
    params = {"w": jnp.asarray(rng.standard_normal((3, 50)), jnp.float32),
              "b": jnp.asarray(rng.standard_normal(3), jnp.float32)}
    ours, theirs = jax.vmap(tx.init)(params), jax.vmap(ref.init)(params)
    for _ in range(4):
        g = jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), p.dtype), params)
        u, ours = jax.jit(jax.vmap(tx.update))(g, ours)
        v, theirs = jax.vmap(ref.update)(g, theirs)
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(v)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-6, atol=2e-7)
    assert np.array_equal(np.asarray(ours.count), [4, 4, 4])
