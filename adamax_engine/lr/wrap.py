"""Schedulers that wrap a value or react to a metric: LinearWarmup and ReduceOnPlateau."""
import numbers

import numpy as np

from .base import LRScheduler


class LinearWarmup(LRScheduler):
    """Linear from start_lr to end_lr over warmup_steps, then ``learning_rate`` (a float, or a
    scheduler stepped to e - warmup_steps, as paddle does)."""

    def __init__(self, learning_rate, warmup_steps, start_lr, end_lr, last_epoch=-1,
                 verbose=False):
        if not isinstance(learning_rate, (float, int, LRScheduler)) or \
                isinstance(learning_rate, bool):
            raise TypeError("the type of learning_rate should be [int, float or LRScheduler], the "
                            f"current type is {learning_rate}")
        assert isinstance(warmup_steps, int) and warmup_steps > 0, \
            " 'warmup_steps' must be a positive integer."
        assert end_lr > start_lr, f"end_lr {end_lr} must be greater than start_lr {start_lr}"
        self.learning_rate, self.warmup_steps = learning_rate, warmup_steps
        self.start_lr, self.end_lr = start_lr, end_lr
        super().__init__(start_lr, last_epoch, verbose)

    def state_dict(self):
        state = super().state_dict()
        if isinstance(self.learning_rate, LRScheduler):
            state["LinearWarmup_LR"] = self.learning_rate.state_dict()
        return state

    def set_state_dict(self, state_dict):
        inner = isinstance(self.learning_rate, LRScheduler)
        if inner and "LinearWarmup_LR" not in state_dict:
            raise RuntimeError("Please check whether state_dict is correct for optimizer. "
                               "Can't find [ LinearWarmup_LR ] in state_dict")
        super().set_state_dict({k: v for k, v in state_dict.items() if k != "LinearWarmup_LR"})
        if inner:
            self.learning_rate.set_state_dict(state_dict["LinearWarmup_LR"])

    set_dict = set_state_dict

    def get_lr(self):
        if self.last_epoch < self.warmup_steps:
            return (self.end_lr - self.start_lr) * float(self.last_epoch) / float(
                self.warmup_steps) + self.start_lr
        if isinstance(self.learning_rate, LRScheduler):
            self.learning_rate.step(self.last_epoch - self.warmup_steps)
            return self.learning_rate()
        return self.learning_rate


class ReduceOnPlateau(LRScheduler):
    """lr *= factor after more than ``patience`` epochs without improvement of ``metrics``.

    No initial step (last_epoch starts at 0, as in paddle); ``step(metrics, epoch=None)``.
    """

    def __init__(self, learning_rate, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0, epsilon=1e-8, verbose=False):
        mode = mode.lower()
        if mode not in ("min", "max"):
            raise ValueError("mode: " + mode + " is unknown!")
        if factor >= 1.0:
            raise ValueError("new_lr = origin_lr * gamma and gamma should be < 1.0.")
        threshold_mode = threshold_mode.lower()
        if threshold_mode not in ("rel", "abs"):
            raise ValueError("threshold mode: " + threshold_mode + " is unknown!")
        if not isinstance(learning_rate, (float, int)) or isinstance(learning_rate, bool):
            raise TypeError("The type of 'learning_rate' in 'ReduceOnPlateau' must be 'float', "
                            f"but received {type(learning_rate)}.")
        self.mode, self.factor, self.threshold_mode = mode, factor, threshold_mode
        self.patience, self.threshold, self.cooldown = patience, threshold, cooldown
        self.min_lr, self.epsilon = min_lr, epsilon
        self.cooldown_counter, self.best, self.num_bad_epochs = 0, None, 0
        self.base_lr = self.last_lr = float(learning_rate)
        self.last_epoch, self.verbose = 0, verbose

    def state_keys(self):
        self.keys = ["cooldown_counter", "best", "num_bad_epochs", "last_epoch", "last_lr"]

    def step(self, metrics, epoch=None):
        if not isinstance(metrics, np.ndarray) and hasattr(metrics, "numpy"):
            # a paddle.Tensor (or a torch one): its one value, as paddle accepts it
            metrics = np.asarray((metrics.detach() if hasattr(metrics, "detach")
                                  else metrics).numpy())
        if isinstance(metrics, np.ndarray):
            assert metrics.size == 1, ("the size of metrics must be 1, but the current "
                                       f"metrics.size is {metrics.size}. Maybe that you should "
                                       "call paddle.mean to process it first.")
            metrics = float(metrics.reshape(-1)[0])
        elif isinstance(metrics, bool) or not isinstance(metrics, numbers.Real):
            raise TypeError("metrics must be 'int', 'float', 'np.float64', 'numpy.ndarray' or "
                            f"'paddle.Tensor', but receive {type(metrics)}")
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            return
        if self.best is None or self._is_better(metrics, self.best):
            self.best, self.num_bad_epochs = metrics, 0
        else:
            self.num_bad_epochs += 1
        if self.num_bad_epochs > self.patience:
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
            new_lr = max(self.last_lr * self.factor, self.min_lr)
            if self.last_lr - new_lr > self.epsilon:
                self.last_lr = new_lr
                if self.verbose:
                    print(f"Epoch {self.last_epoch}: {type(self).__name__} set learning rate to "
                          f"{self.last_lr}.")

    def _is_better(self, current, best):
        if self.mode == "min":
            return current < (best - best * self.threshold if self.threshold_mode == "rel"
                              else best - self.threshold)
        return current > (best + best * self.threshold if self.threshold_mode == "rel"
                          else best + self.threshold)
