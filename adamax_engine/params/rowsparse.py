"""``RowSparseGrad``: a gradient that names some rows of a parameter (embedding tables).

The registry checks it (``check``) and hands the stepper (unique rows, summed values); the
update itself is step/rows.py's. With low-bit state the registry steps the dense grad it
stands for instead (``dense``).
"""
import numpy as np


class RowSparseGrad:
    """A gradient for rows ``rows`` (int array, k) of a parameter of shape (R, ...):
    ``values`` has shape (k, ...) and the parameter's dtype. Duplicate rows are summed."""

    def __init__(self, rows, values):
        self.rows = np.asarray(rows)
        self.values = values

    def zero_(self):
        """clear_grad(): no rows left (the parameter still counts as having a grad)."""
        self.rows = self.rows[:0]
        self.values = self.values[:0]

    def check(self, name, shape, dtype):
        """(unique rows, summed values as (u, row_len)) or TypeError/ValueError naming ``name``."""
        what = f"{name}.grad"
        if len(shape) < 1:
            raise ValueError(f"{what}: a row-sparse grad needs a parameter with rows, got shape ()")
        if self.rows.ndim != 1 or self.rows.dtype.kind not in "iu":
            raise TypeError(f"{what}.rows: expected a 1-D integer array, got {self.rows.dtype} "
                            f"with shape {self.rows.shape}")
        values = self.values
        if not isinstance(values, np.ndarray):
            raise TypeError(f"{what}.values: expected a numpy.ndarray, got "
                            f"{type(values).__name__}")
        if values.dtype != dtype:
            raise TypeError(f"{what}.values: expected dtype {dtype} (the parameter's), got "
                            f"{values.dtype}")
        if values.shape != (len(self.rows),) + tuple(shape[1:]):
            raise ValueError(f"{what}.values: expected shape {(len(self.rows),) + tuple(shape[1:])}"
                             f" (one row per index), got {values.shape}")
        if len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= shape[0]):
            raise ValueError(f"{what}.rows: expected indices in [0, {shape[0]}), got "
                             f"[{self.rows.min()}, {self.rows.max()}]")
        unique, inverse = np.unique(self.rows.astype(np.int64), return_inverse=True)
        flat = values.reshape(len(self.rows), int(np.prod(shape[1:], dtype=np.int64)))
        if len(unique) == len(self.rows):
            summed = np.ascontiguousarray(flat[np.argsort(self.rows, kind="stable")])
        else:
            summed = np.zeros((len(unique), flat.shape[1]), dtype)
            np.add.at(summed, inverse, flat)
        return unique, summed

    def dense(self, name, shape, dtype):
        """The dense grad this one stands for: zeros in the other rows, duplicates summed in the
        order given (``check``'s sums). Low-bit state steps it so: its blocks span rows."""
        rows, summed = self.check(name, shape, dtype)
        out = np.zeros((shape[0], summed.shape[1]), dtype)
        out[rows] = summed
        return out.reshape(shape)


def write_dense(view, grad):
    """A dense host grad into an adopted grad view (a host array or a device array)."""
    if hasattr(view, "copy_to_device"):
        view.copy_to_device(np.ascontiguousarray(grad.reshape(view.shape)))
    else:
        view[...] = grad.reshape(view.shape)
