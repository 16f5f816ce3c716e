"""What paddle's own machinery reads from an optimizer, beyond its public API.

paddle's hapi ``Model`` and ``paddle.amp.GradScaler`` reach into ``paddle.optimizer.Optimizer``
attributes: ``_name`` (hapi's ``Model.load`` renames accumulator keys with it),
``_set_auxiliary_var("found_inf", ...)`` (the GradScaler's verdict before it calls step()),
``_parameter_list`` and ``_param_groups`` (the GradScaler unscales and checks those grads),
``_learning_rate`` (hapi's LRScheduler callback steps it when it is a
``paddle.optimizer.lr.LRScheduler``). ``Adamax`` takes this mixin so that it plugs in where a
paddle optimizer does. hapi cannot step an ``adamax_engine.lr`` scheduler (it checks for
paddle's class): ``minimize`` (hapi's call) warns once when one has been left unstepped.
"""
import warnings

from .lr import is_scheduler

#: minimize() calls after which a never-stepped adamax_engine.lr scheduler is reported
UNSTEPPED_AFTER = 100


class PaddleOptimizerProtocol:
    """Attributes of paddle.optimizer.Optimizer that paddle's hapi and GradScaler read."""

    @property
    def _name(self):
        return self.settings.name

    @property
    def _parameter_list(self):
        return [e.param for e in self.registry.entries]

    @property
    def _param_groups(self):
        groups = self.settings.groups
        if len(groups) == 1 and groups[0]["learning_rate"] is None:
            return self._parameter_list  # paddle: the parameter list when no groups were given
        return [{"params": list(g["params"])} for g in groups]

    def _set_auxiliary_var(self, key, value):
        """paddle.amp.GradScaler hands the optimizer its ``found_inf`` flag this way, and then
        calls step(): with an inf found, the step is skipped as paddle's kernels skip it."""
        self._auxiliary_vars[key] = value

    def _get_auxiliary_var(self, key):
        return self._auxiliary_vars.get(key)

    def _found_inf(self):
        flag = self._auxiliary_vars.get("found_inf")
        return flag is not None and bool(flag)

    def _watch_scheduler(self, watch):
        """``watch``: [minimize() calls, scheduler's last_epoch at the first] (the front's)."""
        sched = self.lr_scheduler
        if sched is None or type(sched).__module__.split(".")[0] != "adamax_engine" or \
                watch[0] < 0:
            return
        if watch[0] == 0:
            watch[1] = sched.last_epoch
        watch[0] += 1
        if sched.last_epoch != watch[1]:
            watch[0] = -1  # stepped: nothing to say, ever
        elif watch[0] >= UNSTEPPED_AFTER:
            warnings.warn(
                f"adamax_engine.lr.{type(sched).__name__} has not been stepped in "
                f"{UNSTEPPED_AFTER} minimize() calls, so the learning rate stays "
                f"{sched():.6g}: call its step() yourself, or (under paddle's hapi Model.fit, "
                "which steps only paddle.optimizer.lr schedulers) pass a "
                "paddle.optimizer.lr scheduler as learning_rate", UserWarning, stacklevel=3)
            watch[0] = -1
