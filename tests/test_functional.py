"""adamax_engine.functional: the immutable-array (JAX / optax-style) path."""
import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine import functional as F


def tree(rng, dtype=np.float32):
    return {"dense": {"w": rng.standard_normal((5, 3)).astype(dtype),
                      "b": rng.standard_normal(3).astype(dtype)},
            "emb": [rng.standard_normal((7, 2)).astype(dtype), rng.standard_normal(1).astype(dtype)]}


def leaves(t):
    return [t["dense"]["b"], t["dense"]["w"], t["emb"][0], t["emb"][1]]


def test_numpy_tree_matches_the_optimizer_bit_for_bit(rng):
    """Same kernel, same tables: the functional path equals Adamax on Parameters exactly."""
    params = tree(rng)
    ps = [ae.Parameter(x.copy()) for x in leaves(params)]
    opt = ae.Adamax(0.01, parameters=ps, weight_decay=0.001)
    fn = F.adamax(0.01, weight_decay=0.001)
    state = fn.init(params)
    for _ in range(5):
        grads = tree(rng)
        before = [x.copy() for x in leaves(params)]
        for p, g in zip(ps, leaves(grads)):
            p.grad = g
        opt.step()
        new, state = fn.step(grads, state, params)
        for x, b in zip(leaves(params), before):
            np.testing.assert_array_equal(x, b)  # the inputs were not touched
        params = new
    for x, p in zip(leaves(params), ps):
        np.testing.assert_array_equal(x, p.data)
    np.testing.assert_array_equal(state.beta1_pow[0], np.float32(0.9) ** 6)


def test_jax_pytree_flavor_optax_matches_optax_adamax(rng):
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    jnp = jax.numpy
    params = jax.tree_util.tree_map(jnp.asarray, tree(rng))
    theirs, tx = params, optax.adamax(0.02)
    tstate = tx.init(theirs)
    fn = F.adamax(0.02, flavor="optax")
    state = fn.init(params)
    for _ in range(20):
        grads = jax.tree_util.tree_map(jnp.asarray, tree(rng))
        updates, tstate = tx.update(grads, tstate, theirs)
        theirs = optax.apply_updates(theirs, updates)
        new, state = fn.step(grads, state, params)
        state = jax.tree_util.tree_map(jnp.asarray, state)  # state held as (read-only) jax arrays
        assert all(isinstance(x, jax.Array) for x in jax.tree_util.tree_leaves(new))
        params = new
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(theirs)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6,
                                   atol=1e-6 * float(np.abs(np.asarray(b)).max()))


def test_schedule_callable_and_mixed_dtypes(rng):
    params = {"a": rng.standard_normal(4).astype(np.float32),
              "b": rng.standard_normal(3).astype(np.float64)}
    seen = []
    fn = F.adamax(lambda count: seen.append(count) or 0.1 / (1 + count))
    state = fn.init(params)
    for _ in range(3):
        params, state = fn.step({"a": np.ones(4, np.float32), "b": np.ones(3)}, state, params)
    assert seen == [0, 1, 2] and int(state.count) == 3
    assert params["a"].dtype == np.float32 and params["b"].dtype == np.float64


def test_bad_input():
    fn = F.adamax(0.1)
    params = {"a": np.ones(3, np.float32)}
    state = fn.init(params)
    with pytest.raises(ValueError, match=r"grads leaf 0: expected shape \(3,\)"):
        fn.step({"a": np.ones(4, np.float32)}, state, params)
    with pytest.raises(ValueError, match="grads: expected the structure of params"):
        fn.step({"a": np.ones(3, np.float32), "b": np.ones(1, np.float32)}, state, params)
    with pytest.raises(TypeError, match="params leaf 0: expected float32 or float64, got int64"):
        fn.init([np.ones(3, np.int64)])
    with pytest.raises(ValueError, match="flavor"):
        F.adamax(0.1, flavor="adam")


def test_adamax_class_flavor_optax_matches_optax(rng):
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    values = leaves(tree(rng))
    ps = [ae.Parameter(v.copy()) for v in values]
    opt = ae.Adamax(0.01, parameters=ps, flavor="optax")
    theirs = [jax.numpy.asarray(v) for v in values]
    tx = optax.adamax(0.01)
    tstate = tx.init(theirs)
    for _ in range(15):
        grads = [rng.standard_normal(v.shape).astype(np.float32) for v in values]
        for p, g in zip(ps, grads):
            p.grad = g
        opt.step()
        updates, tstate = tx.update([jax.numpy.asarray(g) for g in grads], tstate, theirs)
        theirs = optax.apply_updates(theirs, updates)
    for p, t in zip(ps, theirs):
        np.testing.assert_allclose(p.data, np.asarray(t), rtol=1e-6,
                                   atol=1e-6 * float(np.abs(np.asarray(t)).max()))
