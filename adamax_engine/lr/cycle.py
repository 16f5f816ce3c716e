"""Annealing and cyclic schedules (spec section 5.2), some recursive exactly as paddle's are.

CosineAnnealingDecay and LinearLR compute each lr from the previous one in ``step()`` (their
closed forms differ in the last bits), so they reproduce paddle only when stepped the same way.
"""
import math

from .base import LRScheduler


class CosineAnnealingDecay(LRScheduler):
    """Recursive cosine annealing between base lr and eta_min over T_max; closed form on step(e)."""

    def __init__(self, learning_rate, T_max, eta_min=0, last_epoch=-1, verbose=False):  # noqa: N803
        if not isinstance(T_max, int) or isinstance(T_max, bool):
            raise TypeError("The type of 'T_max' in 'CosineAnnealingDecay' must be 'int', but "
                            f"received {type(T_max)}.")
        if not isinstance(eta_min, (float, int)):
            raise TypeError("The type of 'eta_min' in 'CosineAnnealingDecay' must be 'float, int', "
                            f"but received {type(eta_min)}.")
        assert T_max > 0, " 'T_max' must be a positive integer."
        self.T_max, self.eta_min = T_max, float(eta_min)
        super().__init__(learning_rate, last_epoch, verbose)

    def get_lr(self):
        e, t = self.last_epoch, self.T_max
        if e == 0:
            return self.base_lr
        if (e - 1 - t) % (2 * t) == 0:
            return self.last_lr + (self.base_lr - self.eta_min) * (1 - math.cos(math.pi / t)) / 2
        return (1 + math.cos(math.pi * e / t)) / (1 + math.cos(math.pi * (e - 1) / t)) * (
            self.last_lr - self.eta_min) + self.eta_min

    def _get_closed_form_lr(self):
        return self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2


class OneCycleLR(LRScheduler):
    """initial = max/divide_factor -> max over phase_pct of the steps -> end (or three phases)."""

    def __init__(self, max_learning_rate, total_steps, divide_factor=25.0,
                 end_learning_rate=0.0001, phase_pct=0.3, anneal_strategy="cos",
                 three_phase=False, last_epoch=-1, verbose=False):
        for name, value in (("max_learning_rate", max_learning_rate),
                            ("end_learning_rate", end_learning_rate)):
            if not isinstance(value, (float, int)):
                raise TypeError(f"'{name}' must be 'float' or 'int', but received {type(value)}")
            if value < 0:
                raise ValueError(f"'{name}' must be a positive integer.")
        if not isinstance(total_steps, int):
            raise TypeError(f"'total_step' must be 'int', but received {type(total_steps)}")
        if total_steps <= 0:
            raise ValueError("'total_step' must be a positive integer.")
        if not isinstance(phase_pct, float):
            raise TypeError(f"'phase_pct' must be 'float', but received {type(phase_pct)}")
        if phase_pct < 0 or phase_pct > 1:
            raise ValueError(f"'phase_pct' must be between 0 and 1, but received {phase_pct}")
        if not isinstance(divide_factor, (float, int)):
            raise TypeError("'divide_factor' must be 'float' or 'int', but received "
                            f"{type(divide_factor)}")
        self.total_steps = total_steps
        initial, low, top = max_learning_rate / float(divide_factor), float(end_learning_rate), \
            max_learning_rate
        if three_phase:
            if phase_pct >= 0.5:
                raise ValueError("When three_phase is True, 'phase_pct' must be less than 0.5")
            ends = [0, phase_pct * total_steps - 1, 2 * phase_pct * total_steps - 2,
                    total_steps - 1, total_steps - 1]
            sizes = [ends[1] - ends[0], ends[2] - ends[1], ends[3] - ends[2], ends[3] - ends[2]]
            lrs = [initial, top, initial, low]
        else:
            ends = [0, phase_pct * total_steps - 1, total_steps - 1, total_steps - 1]
            sizes = [ends[1] - ends[0], ends[2] - ends[1], ends[2] - ends[1]]
            lrs = [initial, top, low]
        self._step_config, self._steps_size, self._lr_config = ends, sizes, lrs
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError("'anneal_strategy' must by one of 'cos' or 'linear', but received "
                             f"{anneal_strategy}")
        self.anneal_strategy = anneal_strategy
        super().__init__(initial, last_epoch, verbose)

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"Tried to step {step} times. However the number of total steps is "
                             f"{self.total_steps}")
        for i, (end, size) in enumerate(zip(self._step_config[1:], self._steps_size)):
            if step <= end or i == len(self._lr_config) - 2:
                pct = (step - self._step_config[i]) / size
                return self._anneal(self._lr_config[i], self._lr_config[i + 1], pct)


class CyclicLR(LRScheduler):
    """Triangular cycles between base and max lr; triangular2 halves, exp_range decays them."""

    def __init__(self, base_learning_rate, max_learning_rate, step_size_up, step_size_down=None,
                 mode="triangular", exp_gamma=1.0, scale_fn=None, scale_mode="cycle",
                 last_epoch=-1, verbose=False):
        if not isinstance(max_learning_rate, (float, int)):
            raise TypeError("'max_learning_rate' must be 'float' or 'int', but received "
                            f"{type(max_learning_rate)}")
        if max_learning_rate < 0:
            raise ValueError("'max_learning_rate' must be a positive integer, but received "
                             f"{max_learning_rate}")
        for name, value in (("step_size_up", step_size_up), ("step_size_down", step_size_down)):
            if value is None:
                continue
            if not isinstance(value, int):
                raise TypeError(f"The type of '{name}' must be int, but received {type(value)}")
            if value <= 0:
                raise ValueError(f"'{name}' must be a positive integer, but received {value}")
        if not isinstance(exp_gamma, float):
            raise TypeError(f"The type of 'exp_gamma' must be float, but received {type(exp_gamma)}")
        up = float(step_size_up)
        down = float(step_size_down) if step_size_down is not None else up
        self.cycle_size = up + down
        self.step_up_pct = up / self.cycle_size
        self.max_lr = float(max_learning_rate)
        self.amplitude = self.max_lr - base_learning_rate
        if mode not in ("triangular", "triangular2", "exp_range") and scale_fn is None:
            raise ValueError("'mode' is invalid and 'scale_fn' is not specified, make sure one of "
                             "'mode' or 'scale_fn' is valid")
        if scale_mode not in ("cycle", "iterations"):
            raise ValueError("'scale_mode' must be one of 'cycle' or 'iterations")
        self.mode, self.gamma = mode, exp_gamma
        if scale_fn is not None:
            self.scale_fn, self.scale_mode = scale_fn, scale_mode
        elif mode == "triangular":
            self.scale_fn, self.scale_mode = (lambda x: 1.0), "cycle"
        elif mode == "triangular2":
            self.scale_fn, self.scale_mode = (lambda x: 1 / (2.0 ** (x - 1))), "cycle"
        else:
            self.scale_fn, self.scale_mode = (lambda x: self.gamma ** x), "iterations"
        super().__init__(base_learning_rate, last_epoch, verbose)

    def get_lr(self):
        iterations = self.last_epoch
        cycle = 1 + iterations // self.cycle_size
        pct = 1.0 + iterations / self.cycle_size - cycle
        if pct <= self.step_up_pct:
            factor = pct / self.step_up_pct
        else:
            factor = (1 - pct) / (1 - self.step_up_pct)
        x = cycle if self.scale_mode == "cycle" else iterations
        return self.base_lr + self.amplitude * factor * self.scale_fn(x)


class LinearLR(LRScheduler):
    """From base*start_factor to base*end_factor over total_steps, recursively (as paddle)."""

    def __init__(self, learning_rate, total_steps, start_factor=1.0 / 3, end_factor=1.0,
                 last_epoch=-1, verbose=False):
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError("`start_factor` must be greater than 0 and less or equal to 1, but "
                             f"got {start_factor}")
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("`end_factor` must be greater than 0 and less than 1, but got "
                             f"{end_factor}")
        if total_steps <= 0:
            raise ValueError(f"`total_steps` must be greater than 0, but got {total_steps}")
        self.start_factor, self.end_factor, self.total_steps = start_factor, end_factor, total_steps
        super().__init__(learning_rate, last_epoch, verbose)

    def get_lr(self):
        if self.last_epoch == 0:
            return self.base_lr * self.start_factor
        if self.last_epoch > self.total_steps:
            return self.last_lr
        delta = self.end_factor - self.start_factor
        return self.last_lr * (1.0 + delta / (self.total_steps * self.start_factor
                                              + (self.last_epoch - 1) * delta))


class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine from base lr to eta_min over T_i steps, then restart with T_i *= T_mult.

    Unlike paddle, T_cur and T_i are part of the state dict: paddle drops them, so a reloaded
    scheduler restarts its cycle from the wrong place (README: differences from paddle).
    """

    def __init__(self, learning_rate, T_0, T_mult=1, eta_min=0, last_epoch=-1,  # noqa: N803
                 verbose=False):
        if not isinstance(T_0, int) or T_0 <= 0:
            raise ValueError(f"Expected positive integer T_0, but got {T_0}")
        if not isinstance(T_mult, int) or T_mult < 1:
            raise ValueError(f"Expected integer T_mult >= 1, but got {T_mult}")
        self.T_0 = self.T_i = T_0
        self.T_mult, self.eta_min, self.T_cur = T_mult, eta_min, last_epoch
        super().__init__(learning_rate, last_epoch, verbose)

    def get_lr(self):
        return self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2

    def _position(self, epoch):
        """(T_cur, T_i) at ``epoch`` in closed form (paddle's step(epoch) arithmetic)."""
        if epoch < 0:
            raise ValueError(f"Expected non-negative epoch, but got {epoch}")
        if epoch < self.T_0:
            return epoch, self.T_0
        if self.T_mult == 1:
            return epoch % self.T_0, self.T_0
        n = int(math.log((epoch / self.T_0 * (self.T_mult - 1) + 1), self.T_mult))
        return (epoch - self.T_0 * (self.T_mult ** n - 1) / (self.T_mult - 1),
                self.T_0 * self.T_mult ** n)

    def step(self, epoch=None):
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur - self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            self.T_cur, T_i = self._position(epoch)
            if epoch < self.T_0 or self.T_mult != 1:
                self.T_i = T_i  # (paddle leaves T_i alone when T_mult == 1: it is T_0 anyway)
        self.last_epoch = math.floor(epoch)
        self.last_lr = self.get_lr()
        if self.verbose:
            print(f"Epoch {self.last_epoch}: {type(self).__name__} set learning rate to "
                  f"{self.last_lr}.")

    def state_keys(self):
        self.keys = ["last_epoch", "last_lr", "T_cur", "T_i"]

    def set_state_dict(self, state_dict):
        """Also loads paddle's state dicts, which lack T_cur/T_i: they are then recomputed from
        last_epoch in closed form."""
        if "T_cur" in state_dict and "T_i" in state_dict:
            return super().set_state_dict(state_dict)
        for key in ("last_epoch", "last_lr"):
            if key not in state_dict:
                raise RuntimeError("Please check whether state_dict is correct for optimizer. "
                                   f"Can't find [ {key} ] in state_dict")
        self.last_epoch, self.last_lr = state_dict["last_epoch"], state_dict["last_lr"]
        self.T_cur, self.T_i = self._position(max(self.last_epoch, 0))

    set_dict = set_state_dict
