"""optax.chain(clip_by_global_norm, adamax_engine.optax.adamax(schedule)) under jax.jit, next to
the same chain with optax.adamax: same numbers.

    python scripts/examples/fronts/optax_chain_jit.py
"""
import jax
import jax.numpy as jnp
import optax

import adamax_engine.optax as ae_optax


def train(adamax):
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (128, 4))
    y = x @ jnp.array([1.0, -2.0, 0.5, 3.0])
    params = {"w": jnp.zeros(4), "b": jnp.zeros(())}
    tx = optax.chain(optax.clip_by_global_norm(1.0),
                     adamax(optax.warmup_cosine_decay_schedule(0.0, 0.1, 10, 200)))
    state = tx.init(params)

    def loss_fn(p):
        return jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss
    for _ in range(200):
        params, state, loss = step(params, state)
    return params, float(loss)


if __name__ == "__main__":
    ours, loss = train(ae_optax.adamax)
    theirs, their_loss = train(optax.adamax)
    diff = float(jnp.max(jnp.abs(ours["w"] - theirs["w"])))
    print(f"final loss {loss:.6f} (optax.adamax: {their_loss:.6f}); max param diff {diff:.2e}")
    assert diff < 1e-4 and loss < 0.05, (diff, loss)
    print("OK: adamax_engine.optax.adamax trains like optax.adamax under jit")
