"""``Adamax``: paddle.optimizer.Adamax's API and numbers, one fused kernel call per bucket per step.

The update (paddle 3.3.1, ``flavor="paddle"``), per parameter, in its dtype T::

    g        = clip(grad)                      # ClipGradByValue / ByNorm / ByGlobalNorm, per group
    g        = g + decay(param)                # L2: c*p, L1: c*sign(p); after clipping, never clipped
    moment   = beta1 * moment + (1 - beta1) * g
    inf_norm = max(|g|, beta2 * inf_norm + epsilon)
    param    = param - (lr / (1 - beta1_pow)) * (moment / inf_norm)
    beta1_pow = beta1_pow * beta1              # only for params that had a grad this step

beta1/beta2/epsilon reach the kernel rounded to float32 (paddle's fp32 attributes), then cast to
T; beta1_pow starts at T(beta1) and is kept in T; lr is T(lr), times T(lr multiplier) when that
is not 1. Other flavors: ``"torch"``/``"optax"`` u = max(beta2*u, |g| + eps), ``"keras"``
u = max(beta2*u, |g|) and eps in the denominator; their bias correction is 1 - beta1**step.
"""
import contextlib

import numpy as np

from .step import dispatch
from .params import groups as G
from .adapters import adapter_for
from .transforms.clip import GradientClipBase
from .kernels import layout as L
from .kernels.reference import paddle_hyper
from .step.tables import begin_step, end_step
from .lr import is_scheduler
from .step.normclip import NormClips
from .params.parameter import LOW_PRECISION
from .params.registry import Entry, Registry
from .step.rows import SparseRows
from .io.state import load_state, state_dict_of


_unfenced = contextlib.nullcontext


class Adamax:
    """Adamax with paddle.optimizer.Adamax's signature, validation, order and state layout.

    ``parameters``: a list of ``Parameter`` or a list of group dicts with ``params`` and optional
    ``learning_rate`` (a multiplier on the base lr), ``beta1``, ``beta2``, ``epsilon``,
    ``weight_decay``, ``grad_clip``. Keyword-only extras: ``flavor`` (paddle|torch|optax|keras),
    ``mode`` (adopt|borrow, see registry), ``backend`` (None|"cpu"|"reference"|"cuda"),
    ``device`` ("cpu"|"cuda": where the flat buffers live; "cuda" wants Parameters holding CUDA
    device arrays), ``skip_nonfinite`` (a step whose grads hold inf/nan changes no parameter or
    moment; beta1_pow and step counts still advance, as paddle's found_inf skip does),
    ``lazy_mode`` (row-sparse grads, adamax_engine.step.rows: False = exactly the dense result,
    True = only the touched rows move), ``multi_precision`` (paddle's ``_multi_precision``:
    float16/bfloat16 parameters are stepped in float32 on master weights, with float32
    moments, and written back rounded to nearest even; required for such parameters, no
    effect on float32/float64 ones), ``stream`` (device="cuda": the trainer's CUDA stream,
    "torch"/"cupy" for that framework's current one; each step is fenced against it on the
    device, see step/streams.py).

    Errors (paddle's types and messages where paddle has one): AssertionError for a None lr,
    beta1, beta2 or epsilon; TypeError for an lr that is not a float or LRScheduler; ValueError for
    beta1/beta2 outside [0, 1) or epsilon < 0 (also per group); AttributeError for
    parameters=None; TypeError for a single parameter or a dict as ``parameters``; AssertionError
    for a group without ``params``; ValueError for a parameter given twice or an unknown group
    key; TypeError for a bad grad_clip, weight_decay, flavor or parameter type.
    Differences from paddle are listed in the README ("Where we differ from paddle").
    """

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-08, parameters=None,
                 weight_decay=None, grad_clip=None, name=None, *, flavor="paddle", mode=None,
                 backend=None, device="cpu", skip_nonfinite=False, multi_precision=False,
                 lazy_mode=False, stream=None):
        assert learning_rate is not None
        assert beta1 is not None
        assert beta2 is not None
        assert epsilon is not None
        beta1, beta2, epsilon = (G.hyper(beta1, "beta1"), G.hyper(beta2, "beta2"),
                                 G.hyper(epsilon, "epsilon"))
        G.check_hyper(beta1, beta2, epsilon)
        if not isinstance(learning_rate, float) and not is_scheduler(learning_rate):
            raise TypeError("learning rate should be float or LRScheduler, got "
                            f"{type(learning_rate)} here")
        if parameters is None:
            raise AttributeError("parameters argument given to the Optimizer should not be None "
                                 "in dygraph mode.")
        if isinstance(parameters, dict):
            raise TypeError("`parameters` argument should not get dict type, if parameter groups "
                            "is needed, please set `parameters` as list of dict")
        if not isinstance(parameters, (list, tuple)) and not hasattr(parameters, "__next__"):
            raise TypeError("`parameters` argument given to the optimizer should be an iterable "
                            f"of paddle Tensors, but got argument type is `{type(parameters)}`.")
        if grad_clip is not None and not isinstance(grad_clip, GradientClipBase):
            raise TypeError("'grad_clip' should be an instance of GradientClipBase's derived class")
        if not isinstance(multi_precision, bool):
            raise TypeError(f"multi_precision: expected a bool, got {multi_precision!r}")
        self._multi_precision = multi_precision
        if flavor not in L.FLAVORS:
            raise ValueError(f"flavor: expected one of {sorted(L.FLAVORS)}, got {flavor!r}")
        self._learning_rate = learning_rate
        self._beta1, self._beta2, self._epsilon = beta1, beta2, epsilon
        self.regularization = G.regularizer(weight_decay, "weight_decay")
        self._grad_clip = grad_clip
        self._name = name
        self.flavor = flavor
        self._flavor_code = L.FLAVORS[flavor]
        self._names = {}  # id(param) -> name, from (name, param) pairs (named_parameters())
        defaults = {"beta1": beta1, "beta2": beta2, "epsilon": epsilon, "grad_clip": grad_clip}
        self._groups = G.parse_groups(G.unpair(list(parameters), self._names), defaults)
        pairs = [(p, gi, g) for gi, g in enumerate(self._groups) for p in g["params"]]
        entries = [self._entry(p, gi, g, i) for i, (p, gi, g) in enumerate(pairs)]
        if mode is None:
            mode = entries[0].adapter.default_mode if entries else "adopt"
        if not isinstance(skip_nonfinite, bool):
            raise TypeError(f"skip_nonfinite: expected a bool, got {skip_nonfinite!r}")
        self._skip_nonfinite = skip_nonfinite
        self._skipped = 0
        self._backend = dispatch.resolve(backend, device)
        self._fence = _unfenced()
        if stream is not None:  # checked before anything is built: a bad value changes nothing
            if device != "cuda":
                raise ValueError(f"stream: only for device='cuda', got device={device!r}")
            from .step.streams import StreamFence, stream_source
            self._fence = StreamFence(stream_source(stream))
        self._kernels = dispatch.LocalStep(self._backend)
        self._sparse = SparseRows(lazy_mode)
        self._registry = Registry(entries, mode=mode, device=device)
        self._fill_static_tables()
        self._cuda = None
        if self._backend == "cuda":
            from .step.cuda import CudaStep
            self._cuda = CudaStep(self._registry.buckets, self._groups)

    # --- construction -------------------------------------------------------------------------
    def _entry(self, param, gi, group, index):
        adapter = adapter_for(param)
        name, own_lr, own_reg, need_clip = adapter.attributes(param)
        name = self._names.get(id(param), name) or f"param_{index}"
        adapter.check(adapter.data(param), f"{name}.data")
        shape, dtype = adapter.meta(param)
        if dtype.name in LOW_PRECISION and not self._multi_precision:
            raise TypeError(f"{name}.data: {dtype.name} parameters need multi_precision=True "
                            "(float32 master weights and moments; numba has no CPU float16 "
                            "arithmetic, and paddle has no CPU float16 Adamax either)")
        # a group's explicit setting wins (paddle), else the parameter's own, else the optimizer's
        lr_mult = group["learning_rate"] if group["learning_rate"] is not None else own_lr
        reg = group["weight_decay"] or own_reg or self.regularization
        return Entry(param, adapter, name, shape, dtype, gi, float(lr_mult), reg, bool(need_clip))

    def _fill_static_tables(self):
        """Everything in the hyper/flag tables that does not change from step to step."""
        for b in self._registry.buckets:
            T = b.dtype.type
            n = len(b.entries)
            b.lr_mult = np.array([e.lr_mult for e in b.entries], dtype=b.dtype)
            b.beta1_py = np.array([self._groups[e.group]["beta1"] for e in b.entries], np.float64)
            b.beta1_T = b.beta1_py.astype(b.dtype)  # beta1_pow's init value and multiplier
            b.norm_clipped = np.zeros(n, np.bool_)
            for k, e in enumerate(b.entries):
                g = self._groups[e.group]
                if self._flavor_code == L.PADDLE:
                    b1, b2, eps = paddle_hyper(b.dtype, g["beta1"], g["beta2"], g["epsilon"])
                else:
                    b1, b2, eps = T(g["beta1"]), T(g["beta2"]), T(g["epsilon"])
                b.hyper[k, [L.BETA1, L.ONE_MINUS_BETA1, L.BETA2, L.EPS]] = [b1, T(1) - b1, b2, eps]
                b.hyper[k, [L.DECAY, L.CLIP_MIN, L.CLIP_MAX]] = 0
                b.flags[k, [L.DECAY_MODE, L.CLIP_VALUE]] = 0
                if e.regularizer is not None:
                    b.hyper[k, L.DECAY] = T(e.regularizer.coeff)
                    b.flags[k, L.DECAY_MODE] = e.regularizer.mode
                clip = g["grad_clip"]
                if clip is not None and e.need_clip:
                    bounds = clip.value_bounds(b.dtype)
                    if bounds is not None:
                        b.hyper[k, [L.CLIP_MIN, L.CLIP_MAX]] = bounds
                        b.flags[k, L.CLIP_VALUE] = 1
                    b.norm_clipped[k] = clip.needs_norms
        self._norms = NormClips(self._groups, self._registry.buckets, self._skip_nonfinite)

    # --- the step -------------------------------------------------------------------------------
    def step(self):
        """One Adamax step for every trainable parameter that has a grad (see module docstring).

        Raises IndexError when the optimizer has no parameters; TypeError / ValueError naming
        ``<param>.grad`` for a grad of the wrong dtype/shape/layout, with nothing changed.
        """
        self._step()

    def _step(self, only=None):
        if not self._registry.entries:
            raise IndexError("parameters: the optimizer has no parameters "
                             "(paddle: list index out of range)")
        with self._fence:
            self._run_step(only)

    def _run_step(self, only):
        self._registry.gather(only)
        lr = float(self.get_lr())
        buckets = [b for b in self._registry.buckets if b.active.any()]
        changed = {id(b): begin_step(lr, self._flavor_code, b.active, b.has_state, b.beta1_pow,
                                     b.beta1_T, b.beta1_py, b.steps, b.lr_mult, b.hyper, b.flags)
                   for b in buckets}
        sparse, densified = self._registry.sparse, []
        for e in self._registry.entries if sparse or self._sparse.state else ():
            if id(e) in sparse:  # stepped, but the dense kernels skip it
                e.bucket.flags[e.index, L.ACTIVE] = 0 if self._cuda is None else L.ACTIVE_SPARSE
                e.bucket.dirty = True  # (a device copy of the flags must see that)
            elif id(e) in self._sparse.state and e.bucket.active[e.index]:
                self._sparse.flush_entry(e, self._param_view(e), self._flavor_code)
                densified.append(e)  # a dense grad now: every row must be up to date
        if self._cuda is not None:
            self._cuda.step(buckets, changed, lr, self._flavor_code, self._skip_nonfinite,
                            self._sparse_sums(sparse))
            if sparse and self._skip_nonfinite and self._cuda.this_step_skipped():
                densified = []  # (a device read, only with row-sparse grads and skipping)
            else:
                self._sparse_updates(sparse)
        else:
            self._kernels.prepare(buckets)
            if not self._norms.apply(buckets, self._kernels, self._sparse, self._registry.sparse):
                for b in buckets:
                    self._kernels.update(b, self._flavor_code)
                self._sparse_updates(sparse)
                self._kernels.finish(buckets)
            else:
                self._skipped += 1
                densified = []
        for b in buckets:  # paddle advances beta1_pow on a skipped (found_inf) step too
            end_step(b.active, b.beta1_pow, b.beta1_T, b.steps)
        for e in densified:
            self._sparse.dense_step_done(e)

    def _sparse_updates(self, sparse):
        rows = None if self._cuda is None else self._cuda.rows
        self._sparse.updates(self._registry.entries, sparse, self._flavor_code, rows)

    def _sparse_sums(self, sparse):
        return self._sparse.sums(self._registry.entries, sparse, self._skip_nonfinite)

    _param_view = staticmethod(SparseRows.param_view)

    def catch_up(self, param, rows):
        """Row-sparse parameter ``param`` (lazy_mode=False): bring ``rows`` up to date before a
        forward pass reads them (a lagging row holds its value at its last update)."""
        for e in self._registry.entries:
            if e.param is param:
                with self._fence:
                    self._sparse.catch_up_rows(e, self._param_view(e), rows, self._flavor_code)
                return
        raise ValueError("param: not a parameter of this optimizer")

    def flush(self):
        """Row-sparse parameters (lazy_mode=False): bring every lagging row up to date, so that
        parameters and state equal the dense run's (state_dict and save do it themselves)."""
        with self._fence:
            for e in self._registry.entries if self._sparse.state else ():
                self._sparse.flush_entry(e, self._param_view(e), self._flavor_code)

    @property
    def skipped_steps(self):
        """Steps that ``skip_nonfinite`` skipped for an inf/nan grad (on CUDA: a device read)."""
        return self._cuda.skipped_steps() if self._cuda is not None else self._skipped

    def minimize(self, loss, startup_program=None, parameters=None, no_grad_set=None):
        """paddle's dygraph minimize: does NOT run backward; steps on the grads already there.

        ``parameters`` restricts the update to that subset; ``startup_program`` and
        ``no_grad_set`` are ignored, as in paddle's dygraph mode. Returns ``([], params_grads)``.
        """
        pool = [e.param for e in self._registry.entries]
        chosen = pool if parameters is None else list(parameters)
        only = None if parameters is None else {id(p) for p in chosen}
        if only is not None and not only <= {id(p) for p in pool}:
            raise ValueError("parameters: minimize() got a parameter this optimizer was not "
                             "constructed with")
        self._step(only)
        pairs = []
        for p in chosen:
            grad = adapter_for(p).grad(p)
            if grad is not None and adapter_for(p).trainable(p):
                pairs.append((p, grad))
        return [], pairs

    def clear_grad(self, set_to_zero=True):
        """Zero every existing grad (default) or set them all to None (``set_to_zero=False``)."""
        if set_to_zero:
            with self._fence:
                self._registry.zero_grads()
        else:
            self._registry.clear_grads()

    clear_gradients = clear_grad

    def zero_grad(self, set_to_none=False):
        """torch-style spelling of clear_grad."""
        self.clear_grad(set_to_zero=not set_to_none)

    # --- learning rate --------------------------------------------------------------------------
    def get_lr(self):
        """The lr the next step uses: the float, or the scheduler's current ``last_lr``."""
        lr = self._learning_rate
        return lr if isinstance(lr, float) else lr()

    def set_lr(self, value):
        """Set a float lr. TypeError for a non-number, RuntimeError when an LRScheduler is in use."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("The type of 'value' in optimizer.set_lr must be float, but received "
                            f"{type(value)}.")
        if is_scheduler(self._learning_rate):
            raise RuntimeError("optimizer's learning rate can't be LRScheduler when invoke this "
                               "API, because this will lead to conflict.")
        self._learning_rate = float(value)

    def set_lr_scheduler(self, scheduler):
        """Replace the lr by an LRScheduler (TypeError otherwise)."""
        if not is_scheduler(scheduler):
            raise TypeError("The type of 'scheduler' in optimizer.set_lr_scheduler must be "
                            f"LRScheduler, but received {type(scheduler)}.")
        self._learning_rate = scheduler

    # --- state ----------------------------------------------------------------------------------
    def state_dict(self):
        """paddle's layout: ``<param>_[<name>_]moment_0`` ..., then ``LR_Scheduler``; live views."""
        self.flush()
        return state_dict_of(self)

    def set_state_dict(self, state_dict):
        """Load a state_dict; validates names, shapes and dtypes first and changes nothing if off."""
        load_state(self, state_dict)
        self._sparse.state.clear()  # the loaded state is whole: no row lags

    load_state_dict = set_state_dict

    # --- checkpoints (adamax_engine.io.checkpoint) ---------------------------------------------------
    def save(self, path, extra=None, extra_arrays=None):
        """Write params, state, scheduler, clipper and config to ``path`` (.npz), atomically."""
        from .io.checkpoint import save
        self.flush()
        save(self, path, extra, extra_arrays)

    def restore(self, path, match="name", params=True):
        """Load a checkpoint into this optimizer (and the parameters' values unless
        ``params=False``); CheckpointError, with nothing changed, if it does not fit."""
        from .io.checkpoint import restore
        extra = restore(self, path, match=match, params=params)
        self._sparse.state.clear()
        return extra

    @classmethod
    def load(cls, path, parameters, match="name", **overrides):
        """A new optimizer over ``parameters`` (any framework/device), configured and filled
        from the checkpoint at ``path``; ``match="order"`` pairs parameters by position."""
        from .io.checkpoint import build
        return build(cls, path, parameters, match=match, **overrides)

    def _reconfigure(self):
        """Entries' lr multipliers / regularizers / need_clip changed: rebuild the tables."""
        self._fill_static_tables()
        for b in self._registry.buckets:
            b.dirty = True
        if self._cuda is not None:
            from .step.cuda import CudaStep
            skipped = self.skipped_steps
            self._cuda = CudaStep(self._registry.buckets, self._groups)
            self._set_skipped(skipped)

    def _set_skipped(self, count):
        if self._cuda is not None:
            self._cuda.set_skipped(count)
        else:
            self._skipped = int(count)

    @property
    def registry(self):
        return self._registry

    def __repr__(self):
        return (f"Adamax(lr={self._learning_rate!r}, flavor={self.flavor!r}, "
                f"params={len(self._registry.entries)}, mode={self._registry.mode!r})")
