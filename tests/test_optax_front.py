"""adamax_engine.optax.adamax against optax.adamax: the contract of optax's alias_test (the
optimizers converge on a parabola and on Rosenbrock, keep dtypes, work under jit and inside
optax's wrappers), with updates equal to optax's on random pytrees of odd sizes."""
import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
import jax.numpy as jnp  # noqa: E402

from adamax_engine.optax import ScaleByAdamaxState, adamax  # noqa: E402

TOL = dict(rtol=2e-6, atol=2e-7)  # optax forms (m / c) / u * lr, the kernel lr_t * (m / u)


def tree(seed, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return {"dense": {"w": jnp.asarray(rng.standard_normal((7, 13)), dtype),
                      "b": jnp.asarray(rng.standard_normal(13), dtype)},
            "list": [jnp.asarray(rng.standard_normal(1), dtype),
                     jnp.asarray(rng.standard_normal((3, 1, 5)), dtype)],
            "scalar": jnp.asarray(rng.standard_normal(()), dtype)}


def train(tx, steps=12, jit=True, seed=0, dtype=jnp.float32, grad_hook=None):
    params = tree(seed, dtype)
    state = tx.init(params)
    update = jax.jit(tx.update) if jit else tx.update
    noise = tree(seed + 100, dtype)
    for i in range(steps):  # grads that do not amplify rounding differences between runs
        grads = jax.tree.map(lambda p, n: (0.5 * p + n * (i % 3 - 1)).astype(dtype),
                             params, noise)
        if grad_hook is not None:
            grads = grad_hook(i, grads)
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def close(a, b, **tol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                   **(tol or TOL))


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("kwargs", [{}, {"b1": 0.8, "b2": 0.95, "eps": 1e-3},
                                    {"b1": 0.0}], ids=["default", "betas-eps", "b1=0"])
@pytest.mark.parametrize("lr", [1e-3, 0.05])
def test_updates_and_state_match_optax(lr, kwargs, jit):
    ours, ours_state = train(adamax(lr, **kwargs), jit=jit)
    theirs, their_state = train(optax.adamax(lr, **kwargs), jit=jit)
    close(ours, theirs)
    assert isinstance(ours_state, ScaleByAdamaxState) and int(ours_state.count) == 12
    adam_state = their_state[0]  # optax: (ScaleByAdamState, ScaleByLearningRate's EmptyState)
    close(ours_state.mu, adam_state.mu)
    close(ours_state.nu, adam_state.nu)


def test_it_is_a_gradient_transformation_and_its_state_a_pytree():
    tx = adamax(0.01)
    assert isinstance(tx, optax.GradientTransformation)
    state = tx.init(tree(0))
    assert jax.tree.structure(state.mu) == jax.tree.structure(tree(0))
    assert optax.tree_utils.tree_get(state, "count") == 0
    leaves = jax.tree.leaves(state)
    assert all(isinstance(x, jax.Array) for x in leaves)


def test_chain_with_clipping_and_a_schedule_under_jit():
    sched = optax.linear_schedule(0.1, 0.01, 10)
    ours, _ = train(optax.chain(optax.clip_by_global_norm(0.5), adamax(sched)))
    theirs, _ = train(optax.chain(optax.clip_by_global_norm(0.5), optax.adamax(sched)))
    close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_inject_hyperparams_changes_the_lr_mid_run():
    def run(make):
        tx = optax.inject_hyperparams(make)(learning_rate=0.02)
        params = tree(1)
        state = tx.init(params)
        update = jax.jit(tx.update)
        for i in range(8):
            if i == 4:
                state.hyperparams["learning_rate"] = jnp.asarray(0.2)
            grads = jax.tree.map(lambda p: jnp.cos(p * (i + 2)), params)
            updates, state = update(grads, state, params)
            params = optax.apply_updates(params, updates)
        return params
    close(run(adamax), run(optax.adamax))
    assert not np.allclose(run(adamax)["dense"]["w"], train(adamax(0.02), 8, seed=1)[0]
                           ["dense"]["w"])


def test_multi_steps_and_apply_if_finite():
    ours, _ = train(optax.MultiSteps(adamax(0.05), every_k_schedule=3))
    theirs, _ = train(optax.MultiSteps(optax.adamax(0.05), every_k_schedule=3))
    close(ours, theirs)

    def poison(i, grads):  # step 2 has a NaN: apply_if_finite drops the whole update
        return jax.tree.map(lambda g: g.at[...].set(jnp.nan), grads) if i == 2 else grads
    ours, state = train(optax.apply_if_finite(adamax(0.05), 3), grad_hook=poison)
    theirs, _ = train(optax.apply_if_finite(optax.adamax(0.05), 3), grad_hook=poison)
    close(ours, theirs)
    assert int(state.total_notfinite) == 1 and all(
        np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(ours))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_16_bit_params_keep_their_dtype(dtype):
    ours, state = train(adamax(0.01), steps=6, dtype=dtype)
    assert all(x.dtype == dtype for x in jax.tree.leaves(ours))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.mu))
    theirs, _ = train(optax.adamax(0.01), steps=6, dtype=dtype)
    close(ours, theirs, rtol=2e-2, atol=2e-2)  # both round to 16 bits; optax also computes there


@pytest.mark.parametrize("target", ["parabola", "rosenbrock"])
def test_converges(target):
    """optax alias_test's two problems: the minimum is reached."""
    if target == "parabola":
        loss = lambda p: jnp.sum((p - 1.0) ** 2)  # noqa: E731
        params, steps, lr = jnp.zeros(2), 1000, 0.05
    else:
        loss = lambda p: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2  # noqa: E731
        params, steps, lr = jnp.array([-1.0, 1.5]), 10000, 0.01
    tx = adamax(lr)
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state
    for _ in range(steps):
        params, state = step(params, state)
    np.testing.assert_allclose(np.asarray(params), [1.0, 1.0], atol=5e-2)


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match=r"b1: expected a value in \[0, 1\), got 1.0"):
        adamax(0.1, b1=1.0)
    with pytest.raises(ValueError, match="learning_rate: expected >= 0"):
        adamax(-0.1)
    with pytest.raises(ValueError, match="flavor: expected one of"):
        adamax(0.1, flavor="jax")
