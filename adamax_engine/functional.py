"""A functional Adamax for immutable arrays (JAX pytrees, or plain numpy), optax-style:

    import adamax_engine.functional as F
    opt = F.adamax(learning_rate=1e-3, flavor="optax")
    state = opt.init(params)                              # any pytree of float arrays
    params, state = opt.step(grads, state, params)        # new arrays; inputs never written

The leaves are copied into flat buffers per dtype, stepped by the same fused kernel as
``Adamax`` (kernels.cpu.fused_update, one call per dtype) and handed back as new arrays of the
input's kind (``jax.numpy`` arrays for JAX leaves). The state is a pytree of numpy arrays
(moment, inf_norm, beta1_pow, count), so it can be checkpointed with numpy.
``flavor`` and the hyper-parameters mean what they mean for ``adamax_engine.Adamax``;
``learning_rate`` may be a float or a callable of the step count (an optax schedule).
"""
from typing import NamedTuple

import numpy as np

from .kernels import cpu
from .kernels import layout as L
from .kernels.reference import paddle_hyper
from .step.tables import begin_step, end_step


class AdamaxState(NamedTuple):
    count: np.ndarray      # int64, steps taken
    beta1_pow: np.ndarray  # per dtype bucket, in that dtype (paddle's accumulator)
    moment: tuple          # flat buffer per dtype bucket
    inf_norm: tuple


def _tree():
    """(flatten, unflatten) from jax.tree_util when JAX is imported, else for lists/tuples/dicts."""
    import sys
    if "jax" in sys.modules:
        import jax
        return jax.tree_util.tree_flatten, jax.tree_util.tree_unflatten
    return _flatten, _unflatten


def _flatten(tree):
    if isinstance(tree, dict):
        keys = sorted(tree)
        parts = [_flatten(tree[k]) for k in keys]
        return [x for leaves, _ in parts for x in leaves], ("dict", keys, [d for _, d in parts])
    if isinstance(tree, (list, tuple)):
        parts = [_flatten(t) for t in tree]
        return [x for leaves, _ in parts for x in leaves], (type(tree), None, [d for _, d in parts])
    return [tree], None


def _unflatten(treedef, leaves):
    it = iter(leaves)

    def build(d):
        if d is None:
            return next(it)
        kind, keys, subs = d
        values = [build(s) for s in subs]
        return dict(zip(keys, values)) if kind == "dict" else kind(values)
    return build(treedef)


class _Layout:
    """Leaves grouped by dtype: offsets, chunk tables and the static hyper/flag tables."""

    def __init__(self, leaves, hyper_args, flavor, decay):
        arrays = [np.asarray(x) for x in leaves]
        for i, a in enumerate(arrays):
            if a.dtype not in (np.float32, np.float64):
                raise TypeError(f"params leaf {i}: expected float32 or float64, got {a.dtype}")
        self.dtypes = sorted({a.dtype for a in arrays}, key=str)
        self.members = [[i for i, a in enumerate(arrays) if a.dtype == dt] for dt in self.dtypes]
        self.shapes = [a.shape for a in arrays]
        self.buckets = []
        for dt, idx in zip(self.dtypes, self.members):
            lengths = np.array([arrays[i].size for i in idx], np.int64)
            offsets, total = L.segment_offsets(lengths)
            hyper, flags = L.empty_tables(len(idx), dt)
            b1, b2, eps = paddle_hyper(dt, *hyper_args) if flavor == L.PADDLE else \
                tuple(dt.type(v) for v in hyper_args)
            hyper[:, [L.BETA1, L.ONE_MINUS_BETA1, L.BETA2, L.EPS]] = [b1, dt.type(1) - b1, b2, eps]
            if decay:
                hyper[:, L.DECAY], flags[:, L.DECAY_MODE] = dt.type(decay), L.L2_DECAY
            self.buckets.append((dt, idx, offsets, total, L.build_chunk_table(offsets, lengths),
                                 hyper, flags))

    def pack(self, arrays, k):
        dt, idx, offsets, total, *_ = self.buckets[k]
        flat = np.zeros(total, dt)
        for i, off in zip(idx, offsets):
            flat[off:off + arrays[i].size] = np.asarray(arrays[i]).reshape(-1)
        return flat


class adamax:  # noqa: N801 - named like optax's transformations
    """See the module docstring. ValueError for hyper-parameters out of paddle's ranges."""

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, *,
                 flavor="paddle", weight_decay=0.0):
        if not 0 <= beta1 < 1 or not 0 <= beta2 < 1:
            raise ValueError("beta1, beta2: expected values in [0, 1)")
        if not epsilon >= 0:
            raise ValueError(f"epsilon: expected >= 0, got {epsilon}")
        if flavor not in L.FLAVORS:
            raise ValueError(f"flavor: expected one of {sorted(L.FLAVORS)}, got {flavor!r}")
        self.learning_rate, self.hyper = learning_rate, (beta1, beta2, epsilon)
        self.flavor, self.weight_decay = L.FLAVORS[flavor], float(weight_decay)
        self._layouts = {}

    def _layout(self, leaves, treedef):
        key = (str(treedef), tuple((np.shape(x), str(np.asarray(x).dtype)) for x in leaves))
        if key not in self._layouts:
            self._layouts[key] = _Layout(leaves, self.hyper, self.flavor, self.weight_decay)
        return self._layouts[key]

    def init(self, params):
        flatten, _ = _tree()
        leaves, treedef = flatten(params)
        lay = self._layout(leaves, treedef)
        zeros = tuple(np.zeros(b[3], b[0]) for b in lay.buckets)
        beta1_pow = tuple(np.full(len(b[1]), b[0].type(self.hyper[0]), b[0]) for b in lay.buckets)
        return AdamaxState(np.zeros((), np.int64), beta1_pow, zeros,
                           tuple(z.copy() for z in zeros))

    def step(self, grads, state, params):
        """(new params, new state); nothing passed in is modified."""
        flatten, unflatten = _tree()
        leaves, treedef = flatten(params)
        gleaves, gdef = flatten(grads)
        if len(gleaves) != len(leaves):
            raise ValueError(f"grads: expected the structure of params ({len(leaves)} leaves), "
                             f"got {len(gleaves)} leaves")
        for i, (p, g) in enumerate(zip(leaves, gleaves)):
            if np.shape(p) != np.shape(g) or np.asarray(g).dtype != np.asarray(p).dtype:
                raise ValueError(f"grads leaf {i}: expected shape {np.shape(p)} and dtype "
                                 f"{np.asarray(p).dtype}, got {np.shape(g)} {np.asarray(g).dtype}")
        lay = self._layout(leaves, treedef)
        count = int(state.count)
        lr = self.learning_rate(count) if callable(self.learning_rate) else self.learning_rate
        out = [None] * len(leaves)
        new_pow, new_m, new_u = [], [], []
        for k, (dt, idx, offsets, total, chunks, hyper, flags) in enumerate(lay.buckets):
            p, g = lay.pack(leaves, k), lay.pack(gleaves, k)
            # np.array: writeable host copies whatever holds the state (numpy, or JAX arrays
            # after a tree_map, which are read-only buffers to numba)
            m, u, b1pow = (np.array(state.moment[k]), np.array(state.inf_norm[k]),
                           np.array(state.beta1_pow[k]))
            n = len(idx)
            begin_step(float(lr), self.flavor, np.ones(n, np.bool_), np.ones(n, np.bool_), b1pow,
                       np.full(n, dt.type(self.hyper[0]), dt), np.full(n, self.hyper[0]),
                       np.full(n, count, np.int64), np.ones(n, dt), hyper, flags)
            cpu.fused_update(p, g, m, u, chunks, hyper, flags, self.flavor)
            end_step(np.ones(n, np.bool_), b1pow, np.full(n, dt.type(self.hyper[0]), dt),
                     np.zeros(n, np.int64))
            for i, off in zip(idx, offsets):
                out[i] = _like(leaves[i], p[off:off + int(np.prod(lay.shapes[i], dtype=np.int64))]
                               .reshape(lay.shapes[i]))
            new_pow.append(b1pow)
            new_m.append(m)
            new_u.append(u)
        return unflatten(treedef, out), AdamaxState(np.asarray(count + 1, np.int64),
                                                    tuple(new_pow), tuple(new_m), tuple(new_u))


def _like(original, values):
    """A new array of the original's kind holding ``values`` (jax.numpy for JAX arrays)."""
    if type(original).__module__.split(".")[0] in ("jax", "jaxlib"):
        import jax.numpy as jnp
        return jnp.asarray(values.copy())
    return values.copy()
