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
from typing import NamedTuple

from .io.state import load_state, state_dict_of
from .lr import is_scheduler
from .paddle_protocol import PaddleOptimizerProtocol
from .params import groups as G
from .params.dtypes import check_state_dtype
from .params.entries import make_entry
from .params.registry import Registry
from .step.stepper import StepOptions, check_stream, flavor_code, make_stepper, resolve
from .transforms.clip import GradientClipBase


class Settings(NamedTuple):
    """An optimizer's configuration as constructed (read by io/ and experiments/)."""
    learning_rate: object   # a float or a scheduler (what get_lr() reads)
    beta1: float
    beta2: float
    epsilon: float
    weight_decay: object    # the optimizer-wide regularizer, or None
    grad_clip: object
    name: object
    flavor: str
    groups: list            # normalised group dicts (params/groups.py)
    skip_nonfinite: bool
    lazy_mode: bool
    multi_precision: bool
    state_dtype: str = "float32"          # how moment/inf_norm are held (kernels/lowbit*.py)
    state_rounding: str = "stochastic"    # bfloat16 state: stochastic | nearest


class Adamax(PaddleOptimizerProtocol):
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
                 lazy_mode=False, stream=None, state_dtype="float32",
                 state_rounding="stochastic"):
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
        if isinstance(learning_rate, float):
            G.finite(learning_rate, "learning_rate", G.LR_LIMIT)
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
        code = flavor_code(flavor)
        self._learning_rate = learning_rate
        self.regularization = G.regularizer(weight_decay, "weight_decay")
        self.flavor = flavor
        names = {}  # id(param) -> name, from (name, param) pairs (named_parameters())
        defaults = {"beta1": beta1, "beta2": beta2, "epsilon": epsilon, "grad_clip": grad_clip}
        groups = G.parse_groups(G.unpair(list(parameters), names), defaults)
        pairs = [(p, gi, g) for gi, g in enumerate(groups) for p in g["params"]]
        entries = [make_entry(p, gi, g, i, names, self.regularization, multi_precision)
                   for i, (p, gi, g) in enumerate(pairs)]
        if mode is None:
            mode = entries[0].adapter.default_mode if entries else "adopt"
        if not isinstance(skip_nonfinite, bool):
            raise TypeError(f"skip_nonfinite: expected a bool, got {skip_nonfinite!r}")
        if not isinstance(lazy_mode, bool):
            raise TypeError(f"lazy_mode: expected a bool, got {lazy_mode!r}")
        check_state_dtype(state_dtype, state_rounding, mode, multi_precision, lazy_mode, entries)
        self._fixed = dict(beta1=beta1, beta2=beta2, epsilon=epsilon, grad_clip=grad_clip,
                           name=name, groups=groups, skip_nonfinite=skip_nonfinite,
                           lazy_mode=lazy_mode, multi_precision=multi_precision,
                           state_dtype=state_dtype, state_rounding=state_rounding)
        backend = resolve(backend, device)
        fence = check_stream(stream, device)  # checked before anything is built
        self._registry = Registry(entries, mode=mode, device=device, state_dtype=state_dtype,
                                  stochastic=state_rounding == "stochastic")
        self._registry.configure(groups, code)
        self._options = StepOptions(backend, code, groups, skip_nonfinite, lazy_mode)
        self._stepper = make_stepper(self._registry, self._options, fence)
        self._registry.name_parameters()
        self._scheduler_watch = [0, None]  # minimize() calls, the scheduler's first last_epoch
        self._auxiliary_vars = {}  # paddle's: GradScaler's found_inf (paddle_protocol.py)

    # --- the step -------------------------------------------------------------------------------
    def step(self):
        """One Adamax step for every trainable parameter that has a grad (see module docstring).

        Raises IndexError when the optimizer has no parameters; TypeError / ValueError naming
        ``<param>.grad`` for a grad of the wrong dtype/shape/layout, with nothing changed.
        """
        self._step()

    def _step(self, only=None):
        """Gather (the registry), then one call (the stepper), fenced against the trainer's
        CUDA stream when one is set."""
        if not self._registry.entries:
            raise IndexError("parameters: the optimizer has no parameters "
                             "(paddle: list index out of range)")
        with self._stepper.fenced():
            self._registry.gather(only)
            if self._found_inf():  # paddle's GradScaler: found an inf, skip as paddle does
                self._stepper.skip(float(self.get_lr()))
            else:
                self._stepper.step(float(self.get_lr()))

    def catch_up(self, param, rows):
        """Row-sparse parameter ``param`` (lazy_mode=False): bring ``rows`` up to date before a
        forward pass reads them (a lagging row holds its value at its last update)."""
        for e in self._registry.entries:
            if e.param is param:
                self._stepper.catch_up(e, rows)
                return
        raise ValueError("param: not a parameter of this optimizer")

    def flush(self):
        """Row-sparse parameters (lazy_mode=False): bring every lagging row up to date, so that
        parameters and state equal the dense run's (state_dict and save do it themselves)."""
        self._stepper.flush()

    @property
    def skipped_steps(self):
        """Steps that ``skip_nonfinite`` skipped for an inf/nan grad (on CUDA: a device read)."""
        return self._stepper.skipped_steps

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
        self._watch_scheduler(self._scheduler_watch)
        return [], self._registry.grads_of(chosen)

    def clear_grad(self, set_to_zero=True):
        """Zero every existing grad (default) or set them all to None (``set_to_zero=False``)."""
        if set_to_zero:
            with self._stepper.fenced():
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
        self._learning_rate = G.finite(float(value), "value", G.LR_LIMIT)

    @property
    def lr_scheduler(self):
        """The LRScheduler this optimizer reads its lr from (the one ``from_config`` built, for
        your loop to ``.step()``), or None when the lr is a float."""
        lr = self._learning_rate
        return lr if is_scheduler(lr) else None

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

    def set_state_dict(self, state_dict, check_values=True):
        """Load a state_dict; validates names, shapes, dtypes and values (finite moments,
        inf_norm >= 0, beta1_pow in [0, 1)) first and changes nothing if off.
        ``check_values=False`` loads values no healthy run produces (a diverged run's)."""
        load_state(self, state_dict, check_values)
        self._stepper.forget_lag()  # the loaded state is whole: no row lags

    load_state_dict = set_state_dict

    # --- checkpoints (io/checkpoint.py) ---------------------------------------------------------
    def save(self, path, extra=None, extra_arrays=None):
        """Write params, state, scheduler, clipper and config to ``path`` (.npz), atomically."""
        from .io.checkpoint import save
        self.flush()
        save(self, path, extra, extra_arrays)

    def restore(self, path, match="name", params=True, check_values=True):
        """Load a checkpoint into this optimizer (and the parameters' values unless
        ``params=False``); CheckpointError, with nothing changed, if it does not fit
        (``check_values=False``: also one whose state no healthy run produces)."""
        from .io.checkpoint import restore
        extra = restore(self, path, match=match, params=params, check_values=check_values)
        self._stepper.forget_lag()
        return extra

    @classmethod
    def load(cls, path, parameters, match="name", **overrides):
        """A new optimizer over ``parameters`` (any framework/device), configured and filled
        from the checkpoint at ``path``; ``match="order"`` pairs parameters by position."""
        from .io.checkpoint import build
        return build(cls, path, parameters, match=match, **overrides)

    # --- what io/, parallel/ and experiments/ use (public, documented in docs/design.md) -------
    @property
    def settings(self):
        """The configuration (a ``Settings`` record; the lr is the current float or scheduler)."""
        return Settings(self._learning_rate, weight_decay=self.regularization,
                        flavor=self.flavor, **self._fixed)

    @property
    def flavor_code(self):
        return self._options.flavor

    @property
    def registry(self):
        """The registry of flat buffers (params/registry.py)."""
        return self._registry

    @property
    def stepper(self):
        """The stepper that runs each step (step/stepper.py)."""
        return self._stepper

    def use_stepper(self, factory):
        """Replace the stepper by ``factory(registry, options, fence)`` (ZeRO-1 plugs in its
        sharded stepper this way); the skipped-step count carries over."""
        skipped = self._stepper.skipped_steps
        stepper = factory(self._registry, self._options, self._stepper.fenced())
        stepper.set_skipped(skipped)
        self._stepper = stepper

    def configure_parameters(self, settings):
        """New per-parameter settings {name: (lr multiplier, regularizer, need_clip)} (a
        checkpoint's): the entries, then the static tables, then the stepper's copies."""
        for e in self._registry.entries:
            if e.name in settings:
                e.configure(*settings[e.name])
        self._registry.configure(self._fixed["groups"], self._options.flavor)
        self._stepper.reconfigure()

    def set_group_hyper(self, index, *, lr_mult=None, beta1=None, beta2=None, epsilon=None,
                        weight_decay=G.KEEP):
        """Change group ``index``'s settings between steps, without rebuilding any table (a
        torch front reads its param_groups at every step: schedulers move lr and betas).
        ``lr_mult``: the group's lr multiplier; ``weight_decay``: a float (L2), a regularizer,
        or None/0 for no decay term at all. Validated first; nothing changes on error."""
        group = self._fixed["groups"][index]
        new = dict(group)
        for key, value in (("beta1", beta1), ("beta2", beta2), ("epsilon", epsilon)):
            if value is not None:
                new[key] = G.hyper(value, key)
        G.check_hyper(new["beta1"], new["beta2"], new["epsilon"], f" (group {index})")
        if lr_mult is not None:
            new["learning_rate"] = G.finite(float(lr_mult), "lr_mult", G.LR_LIMIT)
        if weight_decay is not G.KEEP:
            reg = G.regularizer(weight_decay, "weight_decay")
            new["weight_decay"] = reg if reg is not None and reg.coeff != 0 else None
        group.update(new)
        if lr_mult is not None or weight_decay is not G.KEEP:  # per-parameter settings too
            for e in self._registry.entries:
                if e.group == index:
                    e.configure(e.lr_mult if lr_mult is None else new["learning_rate"],
                                new["weight_decay"], e.need_clip)
        for b in self._registry.buckets:
            b.set_group_hyper(index, new, self._options.flavor,
                              None if lr_mult is None else new["learning_rate"])
        self._stepper.hyper_changed()

    @property
    def state_nbytes(self):
        """Bytes of optimizer state held: moments, inf-norms, beta1_pow (float32 master weights
        of multi_precision are not state: ``master_nbytes``)."""
        return sum(b.state_nbytes() for b in self._registry.buckets)

    @property
    def master_nbytes(self):
        return sum(int(b.master.nbytes) for b in self._registry.buckets if b.master is not None)

    @property
    def stepped_parameters(self):
        """How many parameters have state (have been stepped, or had state loaded)."""
        return sum(int(b.has_state.sum()) for b in self._registry.buckets)

    def parameter_state(self, param):
        """Live views of ``param``'s state: (moment, inf_norm, beta1_pow [1], steps [1],
        master or None); numpy on the host, device arrays on a GPU. ``has_state`` tells
        whether it has been stepped (else they hold zeros)."""
        e = self._registry.entry_of(param)
        b = e.bucket
        master = None if b.master is None else b.segment(b.master, e.index)
        return (*b.state_views(e.index), master), bool(b.has_state[e.index])

    def load_parameter_state(self, param, moment=None, inf_norm=None, beta1_pow=0, steps=0,
                             master=None):
        """Write ``param``'s state (all None: back to never stepped). The caller validates;
        shapes must be the parameter's."""
        e = self._registry.entry_of(param)
        self.flush()  # no row lags behind the state written next
        e.bucket.load_segment_state(e.index, moment is not None, moment, inf_norm, beta1_pow,
                                    steps)
        if master is not None:
            e.bucket.load_master(e.index, master)

    def parameter_codes(self, param):
        """``param``'s state as held, live: (moment, inf_norm, moment scales, inf_norm scales):
        values, bfloat16 bits (uint16) or int8/uint8 codes with per-block float32 scales (None
        unless int8; kernels/lowbit_reference.py decodes them)."""
        e = self._registry.entry_of(param)
        return e.bucket.code_views(e.index)

    def load_parameter_codes(self, param, moment, inf_norm, moment_scale=None,
                             inf_norm_scale=None, beta1_pow=0, steps=0, master=None):
        """Write ``param``'s state as held (checked by the caller), exactly."""
        e = self._registry.entry_of(param)
        self.flush()
        e.bucket.load_segment_codes(e.index, moment, inf_norm, moment_scale, inf_norm_scale,
                                    beta1_pow, steps)
        if master is not None:
            e.bucket.load_master(e.index, master)

    def set_skipped_steps(self, count):
        """The skipped-step count (a restored checkpoint's)."""
        self._stepper.set_skipped(count)

    def __repr__(self):
        return (f"Adamax(lr={self._learning_rate!r}, flavor={self.flavor!r}, "
                f"params={len(self._registry.entries)}, mode={self._registry.mode!r})")
