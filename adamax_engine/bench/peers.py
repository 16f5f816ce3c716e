"""The implementations a CPU benchmark compares, each built for a list of tensor shapes.

Every builder returns a zero-argument step callable, or raises ``Skip`` with the reason (a
framework that is not installed). Bytes moved per fp32 element, for the ratios: the fused
step reads p, g, m, u and writes p, m, u (28 B); the full pipeline reads g once more for the
global norm (32 B); the ceiling moves the same 28 B with trivial arithmetic, and the read
ceiling reads 4 B (one pass over the grads, as the norm pass must), which is how much slower
than the ceiling the clip pipeline must be at best: (ceiling + read ceiling) / ceiling.
"""
import numba
import numpy as np
from numba import njit, prange

from .. import Adamax, ClipGradByGlobalNorm, Parameter, lr

BYTES = {"engine": 28, "engine_borrow": 28, "engine_full": 32, "ceiling": 28,
         "read_ceiling": 4, "engine_bf16": 20, "ceiling_bf16": 20, "engine_int8": 16.03,
         "ceiling_int8": 16.03}


class Skip(Exception):
    """This implementation cannot run here (the reason is reported, not raised)."""


@njit(parallel=True, cache=True)
def same_traffic(p, g, m, u):
    """The ceiling: the fused step's memory traffic with trivial arithmetic."""
    for i in prange(p.shape[0]):
        gi = g[i]
        m[i] = m[i] + gi
        u[i] = u[i] + gi
        p[i] = p[i] + gi


@njit(parallel=True, cache=True)
def same_traffic_bf16(p, g, m, u):
    """The bfloat16-state step's ceiling: 20 B per element (read p, g, 16-bit m, u; write p, m,
    u) with trivial arithmetic."""
    for i in prange(p.shape[0]):
        gi = g[i]
        m[i] = m[i] ^ np.uint16(1)
        u[i] = u[i] ^ np.uint16(1)
        p[i] = p[i] + gi


@njit(parallel=True, cache=True)
def same_traffic_int8(p, g, mq, uq, ms, us):
    """The int8-state step's ceiling: 16 B per element and 16 per 256-element block (read p,
    g, the int8 and uint8 codes and two float32 scales; write them all) with trivial
    arithmetic, block by block as the kernel goes."""
    for b in prange(ms.shape[0]):
        lo, hi = b * 256, min(p.shape[0], (b + 1) * 256)
        pb, gb, mb, ub = p[lo:hi], g[lo:hi], mq[lo:hi], uq[lo:hi]  # indices >= 0: vectorises
        for i in range(hi - lo):
            mb[i] = np.int8(mb[i] ^ np.int8(1))
            ub[i] = np.uint8(ub[i] ^ np.uint8(1))
            pb[i] = pb[i] + gb[i]
        ms[b] = ms[b] + np.float32(1)
        us[b] = us[b] + np.float32(1)


@njit(parallel=True, cache=True)
def read_once(words, out):
    """The read ceiling: one pass over ``words`` (uint32) with an OR per chunk, which
    vectorises freely (integer OR is associative), unlike a float sum without fastmath."""
    chunk = 16384
    for c in prange(out.shape[0]):
        acc = np.uint32(0)
        for i in range(c * chunk, min(words.shape[0], (c + 1) * chunk)):
            acc |= words[i]
        out[c] = acc


def transformer_shapes(layers=6, d=512, ff=2048, vocab=8000):
    """73 tensors, 23M parameters: an embedding and six encoder layers."""
    shapes = [(vocab, d)]
    for _ in range(layers):
        shapes += [(d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, ff), (ff,), (ff, d), (d,),
                   (d,), (d,)]
    return shapes


def small_shapes(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return [(int(k),) for k in rng.integers(16, 4097, n)]


def _numpy_params(shapes, rng):
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def engine(shapes, rng, **kw):
    params = [Parameter(a) for a in _numpy_params(shapes, rng)]
    opt = Adamax(1e-3, parameters=params, **kw)
    for p in params:
        p.grad = rng.standard_normal(p.data.shape).astype(np.float32)
    opt.step()  # adopt/borrow settle, JIT warm
    return opt.step


def engine_full(shapes, rng):
    """Global-norm clip + L2 decay + an LR scheduler stepped every call: the whole pipeline."""
    sched = lr.StepDecay(1e-3, step_size=1000, gamma=0.5)
    params = [Parameter(a) for a in _numpy_params(shapes, rng)]
    opt = Adamax(sched, parameters=params, weight_decay=1e-4, grad_clip=ClipGradByGlobalNorm(1.0))
    for p in params:
        p.grad = rng.standard_normal(p.data.shape).astype(np.float32)
    opt.step()

    def call():
        opt.step()
        sched.step()
    return call


def ceiling(shapes, rng):
    n = int(sum(np.prod(s) for s in shapes))
    arrays = [rng.standard_normal(n).astype(np.float32) * 1e-3 for _ in range(4)]
    return lambda: same_traffic(*arrays)


def ceiling_bf16(shapes, rng):
    n = int(sum(np.prod(s) for s in shapes))
    p, g = (rng.standard_normal(n).astype(np.float32) * 1e-3 for _ in range(2))
    m, u = (np.zeros(n, np.uint16) for _ in range(2))
    return lambda: same_traffic_bf16(p, g, m, u)


def ceiling_int8(shapes, rng):
    n = int(sum(np.prod(s) for s in shapes))
    p, g = (rng.standard_normal(n).astype(np.float32) * 1e-3 for _ in range(2))
    blocks = (n + 255) // 256
    mq, uq = np.zeros(n, np.int8), np.zeros(n, np.uint8)
    ms, us = np.ones(blocks, np.float32), np.ones(blocks, np.float32)
    return lambda: same_traffic_int8(p, g, mq, uq, ms, us)


def read_ceiling(shapes, rng):
    n = int(sum(np.prod(s) for s in shapes))
    words = rng.standard_normal(n).astype(np.float32).view(np.uint32)
    out = np.zeros((n + 16383) // 16384, np.uint32)
    return lambda: read_once(words, out)


def _torch():
    try:
        import torch
    except ImportError:
        raise Skip("torch is not installed") from None
    torch.set_num_threads(numba.get_num_threads())
    return torch


def torch_params(shapes, rng):
    torch = _torch()
    ps = [torch.nn.Parameter(torch.from_numpy(a)) for a in _numpy_params(shapes, rng)]
    for p in ps:
        p.grad = torch.randn_like(p)
    return ps


def torch_adamax(shapes, rng, foreach):
    torch = _torch()
    return torch.optim.Adamax(torch_params(shapes, rng), lr=1e-3, foreach=foreach).step


def engine_on_torch(shapes, rng):
    opt = Adamax(1e-3, parameters=torch_params(shapes, rng), flavor="torch")
    opt.step()
    return opt.step


def paddle_params(shapes, rng):
    try:
        import paddle
    except ImportError:
        raise Skip("paddle is not installed") from None
    paddle.set_device("cpu")
    ps = [paddle.create_parameter(list(s), "float32") for s in shapes]
    loss = sum((p * paddle.to_tensor(rng.standard_normal(s).astype(np.float32))).sum()
               for p, s in zip(ps, shapes))
    loss.backward()
    return ps


def paddle_adamax(shapes, rng):
    import paddle  # paddle_params raised Skip already when missing
    ps = paddle_params(shapes, rng)
    return paddle.optimizer.Adamax(1e-3, parameters=ps).step


def engine_on_paddle(shapes, rng):
    return Adamax(1e-3, parameters=paddle_params(shapes, rng)).step


def torch_front(shapes, rng):
    """adamax_engine.torch.Adamax (a torch.optim.Optimizer) on torch parameters."""
    _torch()
    from ..torch import Adamax as TorchFront
    opt = TorchFront(torch_params(shapes, rng), lr=1e-3)
    opt.step()
    return opt.step


def _optax(front):
    """jax, optax and the transformation: optax.adamax, or (``front``) the engine's front."""
    try:
        import jax
        import optax
    except ImportError:
        raise Skip("jax/optax are not installed") from None
    if front:
        from ..optax import adamax as front_adamax
        return jax, optax, front_adamax(1e-3)
    return jax, optax, optax.adamax(1e-3)


def _jitted(jax, params, tx, step, *extra):
    """A call of ``step(p, s, *extra)`` under jax.jit, params and state donated."""
    box = {"p": params, "s": tx.init(params)}
    step = jax.jit(step, donate_argnums=(0, 1))

    def call():
        box["p"], box["s"] = step(box["p"], box["s"], *extra)
        jax.block_until_ready(box["p"])
    return call


def optax_jit(shapes, rng, front=False):
    """optax.adamax (or, ``front``, adamax_engine.optax.adamax) under jax.jit, the grads
    passed in: the optimizer's step alone."""
    jax, optax, tx = _optax(front)
    params = [jax.numpy.asarray(a) for a in _numpy_params(shapes, rng)]
    grads = [jax.numpy.asarray(a) for a in _numpy_params(shapes, rng)]

    def step(p, s, g):
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s
    return _jitted(jax, params, tx, step, grads)


def optax_train_jit(shapes, rng, front=False):
    """A training step under jax.jit, its grads from jax.grad of a small loss (each matrix
    times a fixed batch of 8 rows through tanh; vectors squared): XLA holds them in buffers,
    as a model's backward pass does. Grads computed by elementwise code would instead fuse
    with optax.adamax's own loop, which no opaque call can join."""
    if len(shapes) > 100:  # XLA compiles 2000 leaves' grads for minutes
        raise Skip("the training step is timed on models of at most 100 tensors")
    jax, optax, tx = _optax(front)
    jnp = jax.numpy
    params = [jnp.asarray(a * np.float32(0.02)) for a in _numpy_params(shapes, rng)]
    batch = {d: jnp.asarray(rng.standard_normal((8, d)).astype(np.float32))
             for d in {s[0] for s in shapes if len(s) == 2}}

    def loss(p):
        return sum(jnp.mean(jnp.tanh(batch[w.shape[0]] @ w) ** 2) if w.ndim == 2
                   else 1e-3 * jnp.sum(w ** 2) for w in p)

    def step(p, s):
        updates, s = tx.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, updates), s
    return _jitted(jax, params, tx, step)


def reference(shapes, rng):
    return engine(shapes, rng, backend="reference")


CPU_IMPLEMENTATIONS = {
    "ceiling": ceiling,
    "engine": engine,
    "engine_borrow": lambda s, r: engine(s, r, mode="borrow"),
    "engine_full": engine_full,
    "read_ceiling": read_ceiling,
    "engine_bf16": lambda s, r: engine(s, r, state_dtype="bfloat16"),
    "engine_int8": lambda s, r: engine(s, r, state_dtype="int8"),
    "ceiling_bf16": ceiling_bf16,
    "ceiling_int8": ceiling_int8,
    "numpy_reference": reference,
    "torch": lambda s, r: torch_adamax(s, r, foreach=False),
    "torch_foreach": lambda s, r: torch_adamax(s, r, foreach=True),
    "paddle": paddle_adamax,
    "optax_jit": optax_jit,
    "optax_front_jit": lambda s, r: optax_jit(s, r, front=True),
    "optax_train_jit": optax_train_jit,
    "optax_front_train_jit": lambda s, r: optax_train_jit(s, r, front=True),
    "torch_front": torch_front,
    "engine_on_torch": engine_on_torch,
    "engine_on_paddle": engine_on_paddle,
}
