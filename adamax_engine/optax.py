"""``adamax_engine.optax.adamax``: a real ``optax.GradientTransformation`` stepped by the engine.

    tx = optax.chain(optax.clip_by_global_norm(1.0), adamax_engine.optax.adamax(1e-3))
    state = tx.init(params)
    updates, state = jax.jit(tx.update)(grads, state, params)
    params = optax.apply_updates(params, updates)

``init``/``update`` are optax's pair; the state (``ScaleByAdamaxState``: ``count``, ``mu``,
``nu``, pytrees shaped like the params) is what optax's tree utilities, ``inject_hyperparams``,
``MultiSteps`` and ``apply_if_finite`` expect. On the CPU the step is XLA FFI calls (per
state dtype, layout.FFI_LEAVES leaves each) into a fused numba kernel (kernels/xla_ffi.py)
that works in place on XLA's own buffers; on other platforms a ``jax.pure_callback`` (copies
to the host and back). The kernel steps a zero parameter, so the update it writes is exactly
``-lr_t * m / u``, optax.adamax's update (flavor "optax": u = max(b2*u, |g| + eps),
lr_t = lr / (1 - b1**t)). float16/bfloat16 leaves are widened to float32 (exact), stepped
there with float32 ``mu``/``nu``, and their updates rounded back. ``learning_rate`` may be a
float or an optax schedule (a callable of the step count).
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .kernels import cpu, xla_ffi
from .kernels import layout as L
from .kernels.reference import paddle_hyper
from .step.tables import begin_step

__all__ = ["adamax", "ScaleByAdamaxState"]
LOW = ("float16", "bfloat16")


class ScaleByAdamaxState(NamedTuple):
    """optax's own Adamax state layout: the step count (int32), first moment, infinity norm."""
    count: jnp.ndarray
    mu: optax.Updates
    nu: optax.Updates


def _state_dtype(dtype):
    return jnp.float32 if jnp.dtype(dtype).name in LOW else jnp.dtype(dtype)


def _check(learning_rate, b1, b2, eps):
    """Range checks on concrete numbers (traced ones, e.g. under inject_hyperparams, pass)."""
    def concrete(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool)
    if concrete(learning_rate) and not learning_rate >= 0:
        raise ValueError(f"learning_rate: expected >= 0, got {learning_rate}")
    for name, value in (("b1", b1), ("b2", b2)):
        if concrete(value) and not 0 <= value < 1:
            raise ValueError(f"{name}: expected a value in [0, 1), got {value}")
    if concrete(eps) and not eps >= 0:
        raise ValueError(f"eps: expected >= 0, got {eps}")


def adamax(learning_rate, b1=0.9, b2=0.999, eps=1e-8, *, flavor="optax"):
    """optax.adamax's signature and numbers (``flavor="optax"``; "paddle", "torch", "keras"
    place eps as those frameworks do), stepped by the engine's fused kernel."""
    _check(learning_rate, b1, b2, eps)
    if flavor not in L.FLAVORS:
        raise ValueError(f"flavor: expected one of {sorted(L.FLAVORS)}, got {flavor!r}")
    code = L.FLAVORS[flavor]
    host_step = _HostStep(code)  # one per transformation: its layouts are cached

    def init_fn(params):
        zeros = lambda p: jnp.zeros(jnp.shape(p), _state_dtype(p.dtype))  # noqa: E731
        return ScaleByAdamaxState(count=jnp.zeros([], jnp.int32),
                                  mu=jax.tree.map(zeros, params),
                                  nu=jax.tree.map(zeros, params))

    def update_fn(updates, state, params=None):
        del params  # Adamax needs none (no weight decay here: chain optax.add_decayed_weights)
        leaves, treedef = jax.tree.flatten(updates)
        mu, nu = treedef.flatten_up_to(state.mu), treedef.flatten_up_to(state.nu)
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        scalars = jnp.asarray([lr, b1, b2, eps], jnp.float64 if jax.config.jax_enable_x64
                              else jnp.float32)
        count = jnp.asarray(state.count, jnp.int32)
        groups = {}  # state dtype -> leaf indices: one call each
        for i, m in enumerate(mu):
            groups.setdefault(jnp.dtype(m.dtype), []).append(i)
        out = [[None] * len(leaves) for _ in range(3)]
        for dt, idx in groups.items():
            grads = [jnp.asarray(leaves[i]).astype(dt) for i in idx]
            new = jax.lax.platform_dependent(
                scalars, count, grads, [mu[i] for i in idx], [nu[i] for i in idx],
                cpu=functools.partial(_ffi_step, code, dt),
                default=functools.partial(_callback_step, host_step, dt))
            for k, i in enumerate(idx):
                out[0][i] = new[0][k].astype(leaves[i].dtype)
                out[1][i], out[2][i] = new[1][k], new[2][k]
        count = optax.safe_int32_increment(state.count)
        return (treedef.unflatten(out[0]),
                ScaleByAdamaxState(count, treedef.unflatten(out[1]), treedef.unflatten(out[2])))

    return optax.GradientTransformation(init_fn, update_fn)


@functools.cache
def _target(flavor, dtype_name):
    """The XLA FFI target of one flavor and state dtype, registered on first use (the
    handler compiles then, or loads from numba's cache)."""
    name = f"adamax_engine_{flavor}_{dtype_name}"
    handler = xla_ffi.handler(flavor, getattr(np, dtype_name))
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(handler.ctypes), platform="cpu")
    return name


def _ffi_step(flavor, dt, scalars, count, grads, mu, nu):
    """One dtype's step as XLA FFI calls of up to layout.FFI_LEAVES leaves each
    (kernels/xla_ffi.py has the operands' layout), in place: each grad, ``mu`` and ``nu``
    aliases its result. Inside a training step the grads are XLA's own temporaries, so no
    buffer is copied; a caller that keeps its grads (an optimizer-only jit) gets them copied
    by XLA first."""
    sizes = [int(np.size(g)) for g in grads]
    if max(sizes) >= 2 ** 31:
        raise ValueError(f"updates: a leaf of {max(sizes)} elements; the optax front steps "
                         "leaves of fewer than 2**31")
    target, out = _target(flavor, dt.name), ([], [], [])
    for lo in range(0, len(grads), L.FFI_LEAVES):
        part = slice(lo, lo + L.FFI_LEAVES)
        n = len(sizes[part])
        shapes = [jax.ShapeDtypeStruct(jnp.shape(g), dt) for g in grads[part]] * 3
        call = jax.ffi.ffi_call(target, shapes, vmap_method="sequential",
                                input_output_aliases={3 + k: k for k in range(3 * n)})
        new = call(scalars, count, jnp.asarray(xla_ffi.chunk_rows(sizes[part], L.CHUNK)),
                   *grads[part], *mu[part], *nu[part])
        for role in range(3):
            out[role].extend(new[role * n:(role + 1) * n])
    return out


def _callback_step(host_step, dt, scalars, count, grads, mu, nu):
    """One dtype's step through ``jax.pure_callback``, where no FFI handler is registered (not
    the CPU): XLA packs each role's leaves into one flat buffer and unpacks the results."""
    lengths = tuple(int(np.size(g)) for g in grads)
    flats = [jnp.concatenate([jnp.ravel(x) for x in xs]) for xs in (grads, mu, nu)]
    shapes = [jax.ShapeDtypeStruct(flats[0].shape, dt)] * 3
    new = jax.pure_callback(functools.partial(host_step, lengths=lengths), shapes, *flats,
                            count, scalars, vmap_method="sequential")
    bounds = np.cumsum(lengths)[:-1].tolist()
    return tuple([part.reshape(jnp.shape(g)) for part, g in zip(jnp.split(flat, bounds), grads)]
                 for flat in new)


class _HostStep:
    """The host side of ``_callback_step``: one fused kernel call over the flat buffers that
    XLA packed (chunk tables cached per layout)."""

    def __init__(self, flavor):
        self.flavor = flavor
        self.chunk_tables = {}

    def __call__(self, g, m, u, count, scalars, lengths):
        lr, b1, b2, eps = (float(x) for x in np.asarray(scalars))
        g, m, u = np.asarray(g), np.array(m), np.array(u)  # state: fresh, writeable copies
        chunks = self.chunk_tables.get(lengths)
        if chunks is None:
            lens_arr = np.array(lengths, np.int64)
            offsets, _ = L.segment_offsets(lens_arr, align=1)
            chunks = self.chunk_tables[lengths] = L.build_chunk_table(offsets, lens_arr)
        p = np.zeros(len(g), m.dtype)  # a zero parameter: the kernel writes -lr_t * m / u
        self._step(p, g, m, u, chunks, len(lengths), m.dtype, lr, b1, b2, eps, int(count))
        return p, m, u

    def _step(self, p, g, m, u, chunks, n, dt, lr, b1, b2, eps, step):
        T = dt.type
        hyper, flags = L.empty_tables(n, dt)
        pb1, pb2, peps = paddle_hyper(dt, b1, b2, eps) if self.flavor == L.PADDLE else \
            (T(b1), T(b2), T(eps))
        hyper[:, [L.BETA1, L.ONE_MINUS_BETA1, L.BETA2, L.EPS]] = [pb1, T(1) - pb1, pb2, peps]
        # paddle's beta1_pow after ``step`` steps is beta1**(step+1) (it starts at beta1)
        beta1_pow = np.full(n, T(pb1) ** (step + 1) if self.flavor == L.PADDLE else 0, dt)
        ones = np.ones(n, np.bool_)
        begin_step(lr, self.flavor, ones, ones, beta1_pow, np.full(n, pb1, dt),
                   np.full(n, b1), np.full(n, step, np.int64), np.ones(n, dt), hyper, flags)
        cpu.fused_update(p, g, m, u, chunks, hyper, flags, self.flavor)
