"""``adamax_engine.torch.Adamax``: a real ``torch.optim.Optimizer`` whose step is the engine's.

Everything torch's machinery expects is torch's own (the base class): ``param_groups`` with
absolute ``lr``/``betas``/``eps``/``weight_decay``, ``add_param_group``, ``zero_grad``, step
pre/post hooks, state-dict hooks, named parameters. So LR schedulers (OneCycleLR's momentum
cycling included), ``torch.amp.GradScaler``, Lightning and the HF Trainer work unchanged.

Behind it, one engine core (``adamax_engine.Adamax``, adopt mode by default: the parameters'
``.data``/``.grad`` become views of flat buffers, one fused kernel call per step). At every step
the groups' settings are read and handed to the core only when they changed
(``Adamax.set_group_hyper``, vectorised, no table rebuilt). The core's lr is the first non-zero
group lr and each group's lr is a multiplier on it, so one group (the usual case) gets exactly
torch's ``lr / (1 - beta1**step)``.

``state[p]`` holds ``step`` (int64, 0-d), ``exp_avg`` and ``exp_inf``: tensors viewing the
engine's buffers (live, no copy per step); ``state_dict()`` is torch's format (``step`` a float32
0-d tensor, loads with ``torch.load(weights_only=True)``, into ``torch.optim.Adamax`` too) and
``load_state_dict`` takes torch.optim.Adamax's. ``maximize`` negates the grads around the step
(exactly torch's ``-grad``) and restores them. Not claimed: complex parameters,
``differentiable=True``, ``capturable=True`` (CUDA graphs): each raises at construction.
"""
import math
import numbers

import numpy as np
import torch

from . import torch_state as S
from .kernels.lowbit_reference import SCHEMES, int8_decode
from .optimizer import Adamax as EngineAdamax
from .params.groups import KEEP

__all__ = ["Adamax"]


def _number(value, what):
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"Tensor {what} must be 1-element")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"Invalid {what}: {value}")
    return float(value)


def _check(lr, betas, eps, weight_decay, where=""):
    """torch.optim.Adamax's checks and messages."""
    if isinstance(lr, torch.Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= _number(lr, "learning rate"):
        raise ValueError(f"Invalid learning rate: {lr}{where}")
    if not 0.0 <= _number(eps, "epsilon value"):
        raise ValueError(f"Invalid epsilon value: {eps}{where}")
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"Invalid betas: expected a pair (beta1, beta2), got {betas!r}{where}")
    for i, beta in enumerate(betas):
        if not 0.0 <= _number(beta, f"beta parameter at index {i}") < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}{where}")
    if not 0.0 <= _number(weight_decay, "weight_decay value"):
        raise ValueError(f"Invalid weight_decay value: {weight_decay}{where}")


class Adamax(torch.optim.Optimizer):
    """torch.optim.Adamax's signature and contract, stepped by the engine's fused kernel.

    Extras (keyword-only): ``flavor`` ("torch" default: torch's numbers; "paddle", "optax",
    "keras"), ``grad_clip`` (an ``adamax_engine`` clipper, applied inside the step),
    ``skip_nonfinite`` (a step with an inf/nan grad changes nothing), ``multi_precision``
    (float16/bfloat16 parameters on float32 masters), ``mode`` ("adopt" | "borrow"),
    ``device`` (None: where the parameters are) and ``state_dtype`` ("float32" | "bfloat16" |
    "int8", with ``state_rounding``: low-bit state, docs/numerics.md).

    With low-bit state, ``state[p]`` holds the state as the engine holds it: ``exp_avg`` and
    ``exp_inf`` as torch.bfloat16 tensors, or (int8) as int8 / uint8 codes with
    ``exp_avg_scale`` / ``exp_inf_scale``, one float32 scale per 256-element block
    (``adamax_engine.kernels.lowbit_reference.int8_decode`` gives the values). Its state dict
    (whose int8 entries name their ``code_scheme``) loads back exactly; a float32 state dict
    (torch.optim.Adamax's) loads into it quantized, an int8 one into a float32-state optimizer
    dequantized, and one of codes an earlier scheme wrote as its values, quantized anew.
    """

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 foreach=None, *, maximize=False, capturable=False, differentiable=False,
                 flavor="torch", grad_clip=None, skip_nonfinite=False, multi_precision=False,
                 mode="adopt", device=None, state_dtype="float32",
                 state_rounding="stochastic"):
        _check(lr, betas, eps, weight_decay)
        if capturable:
            raise ValueError("capturable=True (CUDA graph capture) is not supported by "
                             "adamax_engine.torch.Adamax; use torch.optim.Adamax for it")
        if differentiable:
            raise ValueError("differentiable=True is not supported by "
                             "adamax_engine.torch.Adamax (its step runs outside autograd); use "
                             "torch.optim.Adamax for it")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "foreach": foreach, "maximize": maximize, "capturable": False,
                    "differentiable": False}
        self._engine_options = {"flavor": flavor, "grad_clip": grad_clip, "mode": mode,
                                "skip_nonfinite": skip_nonfinite,
                                "multi_precision": multi_precision, "device": device,
                                "state_dtype": state_dtype, "state_rounding": state_rounding}
        self._core = None
        self._synced = []       # per group: the (lr multiplier, b1, b2, eps, wd) the core holds
        self._unstarted = []    # parameters without state yet (not stepped)
        self._started = 0       # the core's count of stepped parameters when last looked
        self._loading = False   # load_state_dict is running (see __setstate__)
        self._uncast = {}       # during a load: {param: {key: tensor as given}} (S.precise)
        super().__init__(params, defaults)
        self._build()

    # --- construction ---------------------------------------------------------------------------
    def add_param_group(self, param_group):
        """torch's add_param_group; after construction the core is rebuilt over every group,
        the state of the parameters it had carried over."""
        super().add_param_group(param_group)
        if self._core is not None:
            saved = {p: {k: v.clone() for k, v in s.items()} for p, s in self.state.items()}
            core = self._core
            try:
                self._build()
            except Exception:  # the group is refused: the optimizer stays as it was
                self.param_groups.pop()
                self._core = core
                raise
            self._attach(saved)

    def _build(self):
        groups = []
        for g in self.param_groups:
            params = list(g["params"])
            for p in params:
                if torch.is_complex(p):
                    raise TypeError("params: complex parameters are not supported by "
                                    "adamax_engine.torch.Adamax (view them as real pairs)")
                if not p.is_contiguous():  # stepped through a contiguous copy of its memory
                    p.data = p.data.contiguous()
            names = g.get("param_names")
            groups.append({"params": list(zip(names, params)) if names else params})
        device = self._engine_options["device"]
        if device is None:
            first = groups[0]["params"][0] if groups[0]["params"] else None
            first = first[1] if isinstance(first, tuple) else first
            device = "cuda" if first is not None and first.is_cuda else "cpu"
        opts = {**self._engine_options, "device": device}
        self._core = EngineAdamax(1.0, parameters=groups, **opts)
        self._synced = [None] * len(self.param_groups)
        self._unstarted = [p for g in self.param_groups for p in g["params"]]
        self._started = 0
        self.state.clear()

    # --- the step -------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure=None):
        """One step for every parameter that has a grad; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._sync_groups()
        negated = self._negate_maximized()
        try:
            self._core.step()
        finally:
            for g in negated:
                g.neg_()
        self._refresh_state()
        return loss

    def _sync_groups(self):
        """Hand the core the groups' settings that changed since the last step."""
        lrs = [_number(g["lr"], "learning rate") for g in self.param_groups]
        base = next((lr for lr in lrs if lr != 0.0), 1.0)
        for i, (g, lr) in enumerate(zip(self.param_groups, lrs)):
            if lr < 0:
                raise ValueError(f"param_groups[{i}]['lr']: expected >= 0, got {lr}")
            b1, b2 = g["betas"]
            key = (lr / base, float(b1), float(b2), float(g["eps"]), float(g["weight_decay"]))
            old = self._synced[i]
            if key == old:
                continue
            self._core.set_group_hyper(
                i, lr_mult=key[0] if old is None or old[0] != key[0] else None,
                beta1=key[1], beta2=key[2], epsilon=key[3],
                weight_decay=key[4] if old is None or old[4] != key[4] else KEEP)
            self._synced[i] = key
        self._core.set_lr(base)

    def _negate_maximized(self):
        """Grads of ``maximize`` groups, negated in place (exact); the step restores them."""
        out = []
        for g in self.param_groups:
            if g["maximize"]:
                for p in g["params"]:
                    if p.grad is not None:
                        p.grad.neg_()
                        out.append(p.grad)
        return out

    def _refresh_state(self):
        """Parameters stepped for the first time get their ``state`` views."""
        if not self._unstarted:
            return
        started = self._core.stepped_parameters
        if started == self._started:
            return
        self._started, waiting = started, []
        for p in self._unstarted:
            if self._core.parameter_state(p)[1]:
                self.state[p] = self._views(p)
            else:
                waiting.append(p)
        self._unstarted = waiting

    def _views(self, p):
        """``state[p]``: live tensors over the engine's buffers (see the class docstring)."""
        (moment, inf_norm, beta1_pow, steps, master), _ = self._core.parameter_state(p)
        out = {"step": S.tensor_over(steps.reshape(()))}
        state_dtype = self._core.settings.state_dtype
        if state_dtype == "float32":
            out["exp_avg"], out["exp_inf"] = S.tensor_over(moment), S.tensor_over(inf_norm)
        else:
            codes = self._core.parameter_codes(p)
            if state_dtype == "bfloat16":
                out["exp_avg"], out["exp_inf"] = (S.bfloat16_over(c) for c in codes[:2])
            else:
                out["exp_avg"], out["exp_inf"], out["exp_avg_scale"], out["exp_inf_scale"] = \
                    (S.tensor_over(c) for c in codes)
        if self._engine_options["flavor"] == "paddle":
            out["beta1_pow"] = S.tensor_over(beta1_pow)
        if master is not None:
            out["master"] = S.tensor_over(master)
        return out

    # --- state ----------------------------------------------------------------------------------
    def state_dict(self):
        """torch's format: {"state": {index: {"step", "exp_avg", "exp_inf"}}, "param_groups"};
        moments are live views (as torch hands out its live state), ``step`` float32."""
        self._core.flush()
        for hook in self._optimizer_state_dict_pre_hooks.values():
            hook(self)
        index, groups = {}, []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            for p in g["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in g["params"]]
            groups.append(packed)
        state = {}
        for p, s in self.state.items():
            state[index[id(p)]] = {**s, "step": torch.tensor(float(s["step"]),
                                                             dtype=torch.float32)}
            if "exp_avg_scale" in s:  # int8 codes: how to read them
                state[index[id(p)]]["code_scheme"] = torch.tensor(S.CODE_SCHEME)
        out = {"state": state, "param_groups": groups}
        for hook in self._optimizer_state_dict_post_hooks.values():
            result = hook(self, out)
            if result is not None:
                out = result
        return out

    def load_state_dict(self, state_dict):
        """torch's load (hooks, group checks, casting), then the state checked whole and
        written into the engine; nothing changes when a check fails."""
        self._loading = True
        self._uncast = S.as_given(state_dict, self.param_groups)
        try:
            super().load_state_dict(state_dict)
        finally:
            self._loading, self._uncast = False, {}

    def __setstate__(self, state):
        """torch.optim.Optimizer.load_state_dict ends here with the cast state: check it all,
        then take it (in unpickling, just take it)."""
        if self.__dict__.get("_core") is None or not self.__dict__.get("_loading"):
            super().__setstate__(state)
            return
        loaded = S.precise(state["state"], self._uncast)
        S.check_state(loaded, state["param_groups"])
        super().__setstate__(state)
        for g in self.param_groups:
            for key, value in (("foreach", None), ("maximize", False),
                               ("differentiable", False), ("capturable", False)):
                g.setdefault(key, value)
        self._synced = [None] * len(self.param_groups)
        self._attach(loaded)

    def _attach(self, loaded):
        """Write ``loaded`` ({param: torch-format state}) into the core; every parameter not in
        it starts afresh. Then ``state`` holds the live views again."""
        loaded = dict(loaded)  # (it may be self.state itself, cleared next)
        self.state.clear()
        self._unstarted = []
        b1 = {id(p): float(g["betas"][0]) for g in self.param_groups for p in g["params"]}
        for g in self.param_groups:
            for p in g["params"]:
                s = loaded.get(p) or {}
                if "exp_avg" not in s:
                    self._core.load_parameter_state(p)
                    self._unstarted.append(p)
                    continue
                steps = int(float(s["step"]))
                pow_ = s.get("beta1_pow")
                pow_ = b1[id(p)] ** steps if pow_ is None else float(pow_.reshape(-1)[0])
                master = s.get("master")
                master = None if master is None else S.host_array(master)
                moment, inf_norm = S.host_array(s["exp_avg"]), S.host_array(s["exp_inf"])
                if "exp_avg_scale" in s:  # int8 codes (cast to float by torch's load)
                    scales = S.host_array(s["exp_avg_scale"]), S.host_array(s["exp_inf_scale"])
                    scheme = S.code_scheme(s)
                    if self._core.settings.state_dtype == "int8" and scheme == SCHEMES["int8"]:
                        self._core.load_parameter_codes(
                            p, moment.astype(np.int8), inf_norm.astype(np.uint8), *scales,
                            beta1_pow=pow_, steps=steps, master=master)
                        self.state[p] = self._views(p)
                        continue
                    moment = int8_decode(moment, scales[0], 0, "moment",
                                         scheme).reshape(p.shape)
                    inf_norm = int8_decode(inf_norm, scales[1], 0, "inf_norm",
                                           scheme).reshape(p.shape)
                self._core.load_parameter_state(p, moment, inf_norm, pow_, steps, master)
                self.state[p] = self._views(p)
        self._started = self._core.stepped_parameters

    def __reduce_ex__(self, protocol):
        raise TypeError("adamax_engine.torch.Adamax cannot be pickled or deep-copied (its state "
                        "lives in the engine's buffers): save opt.state_dict() and load it into "
                        "a new optimizer instead")

    @property
    def engine(self):
        """The engine core (``adamax_engine.Adamax``) this optimizer steps through."""
        return self._core
