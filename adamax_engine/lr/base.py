"""``LRScheduler``: paddle.optimizer.lr's base class (spec section 5.1).

``last_epoch`` starts at -1 and the constructor calls ``step()`` once, so a fresh scheduler is at
epoch 0. The optimizer reads ``scheduler()`` (= ``last_lr``) at every ``opt.step()``; the user
calls ``scheduler.step()`` after it. ``step(epoch)`` uses a subclass's closed form when it has one.
"""
import math
import numbers
import warnings


class LRScheduler:
    """paddle.optimizer.lr.LRScheduler. Raises TypeError / ValueError like paddle for a bad lr."""

    def __init__(self, learning_rate=0.1, last_epoch=-1, verbose=False):
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, (float, int)):
            raise TypeError("The type of learning rate must be float, but received "
                            f"{type(learning_rate)}")
        if learning_rate < 0:
            raise ValueError(f"Invalid learning rate: {learning_rate}")
        self.base_lr = float(learning_rate)
        self.last_lr = float(learning_rate)
        self.last_epoch = last_epoch
        self.verbose = verbose
        self.step()

    def __call__(self):
        return self.last_lr

    def step(self, epoch=None):
        if epoch is None:
            self.last_epoch += 1
            self.last_lr = self.get_lr()
        else:
            self.last_epoch = epoch
            closed = getattr(self, "_get_closed_form_lr", None)
            self.last_lr = closed() if closed else self.get_lr()
        if self.verbose:
            print(f"Epoch {self.last_epoch}: {type(self).__name__} set learning rate to "
                  f"{self.last_lr}.")

    def get_lr(self):
        raise NotImplementedError

    def state_keys(self):
        self.keys = ["last_epoch", "last_lr"]

    def state_dict(self):
        """Plain numbers only (checkpoints are JSON/npz, never pickle)."""
        self.state_keys()
        return {key: self.__dict__[key] for key in self.keys if key in self.__dict__}

    def check_state_dict(self, state_dict, label="state_dict"):
        """Every value of the kind this scheduler holds (a number for a number, finite for
        last_lr), or TypeError/ValueError naming ``label[key]``: nothing is set on error."""
        self.state_keys()
        for key in self.keys:
            if key not in state_dict or key not in self.__dict__:
                continue
            new, old = state_dict[key], self.__dict__[key]
            number = isinstance(old, numbers.Real) and not isinstance(old, bool)
            if number and (isinstance(new, bool) or not isinstance(new, numbers.Real)):
                raise TypeError(f"{label}[{key!r}]: expected a number, got {new!r}")
            if isinstance(old, int) and number and not isinstance(new, numbers.Integral):
                raise TypeError(f"{label}[{key!r}]: expected an int, got {new!r}")
            if key == "last_lr" and not math.isfinite(new):
                raise ValueError(f"{label}[{key!r}]: expected a finite number, got {new!r}")

    def set_state_dict(self, state_dict):
        self.state_keys()
        for key in self.keys:
            if key not in state_dict:
                raise RuntimeError("Please check whether state_dict is correct for optimizer. "
                                   f"Can't find [ {key} ] in state_dict")
        self.check_state_dict(state_dict)
        for key in self.keys:
            self.__dict__[key] = state_dict[key]
        if len(state_dict) > len(self.keys):
            warnings.warn("There are some unused values in state_dict. Maybe the optimizer have "
                          "different 'LearningRateDecay' when invoking state_dict and set_dict")

    set_dict = set_state_dict


def is_scheduler(obj):
    """One of ours, or any object with paddle's LRScheduler interface (paddle.optimizer.lr.*):
    the optimizer only calls it, reads its state_dict and loads one into it."""
    return isinstance(obj, LRScheduler) or (
        callable(obj) and not isinstance(obj, type)
        and all(hasattr(obj, a) for a in ("step", "state_dict", "set_state_dict", "last_epoch")))
