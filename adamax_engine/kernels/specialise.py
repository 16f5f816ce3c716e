"""``njit`` for the loops and kernels a factory builds once per specialisation (a flavor, a
rounding, a 16-bit type), under a name that says which.

Why: numba names a compiled function by its module, qualified name, argument types and a
counter that every process starts at 1. All closures of one factory share the qualified
name, so a process that loads a kernel from numba's disk cache (``cache=True``) can meet,
under the same symbol, another specialisation it compiled itself; the JIT linker keeps one
body for both, and the cached kernel calls the other flavor's loop (results an ulp or more
off, or a crash: numba/numba#10486, reproduced in tests/test_kernel_cache.py). With the
specialisation in the name, equal symbols mean equal code in every process.
"""
import re

import numpy as np
from numba import njit


def _tag(value):
    """A free variable's value as a name: numbers as they are, functions by their own name
    (a specialised one's includes its specialisation)."""
    if isinstance(value, (bool, int, np.integer)):
        return str(int(value))
    func = getattr(value, "py_func", value)  # a numba dispatcher: its Python function
    if callable(func) and hasattr(func, "__qualname__"):
        return func.__qualname__
    raise TypeError(f"specialised: cannot name a free variable of type {type(value).__name__}"
                    " (expected a number or a function)")


def specialised(**options):
    """``njit(**options)`` on a factory's inner function, its qualified name extended with
    each free variable: ``loop`` of ``_make_loop(flavor=1, generic=True)`` compiles as
    ``loop__flavor_1__generic_1``."""
    def wrap(func):
        cells = func.__closure__ or ()
        parts = [f"{name}_{_tag(cell.cell_contents)}"
                 for name, cell in zip(func.__code__.co_freevars, cells)]
        func.__qualname__ = re.sub(r"\W", "_", "__".join([func.__qualname__, *parts]))
        return njit(**options)(func)
    return wrap
