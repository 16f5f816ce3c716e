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
import hashlib
import re
import types

import numpy as np
from numba import njit

MAX_NAME = 64


def _tag(value):
    """A free variable's value as a name: numbers as they are, functions by their own name
    (a specialised one's includes its specialisation)."""
    if isinstance(value, (bool, int, np.integer)):
        return str(int(value))
    func = getattr(value, "py_func", value)  # a numba dispatcher: its Python function
    if callable(func) and hasattr(func, "__name__"):
        return func.__name__
    raise TypeError(f"specialised: cannot name a free variable of type {type(value).__name__}"
                    " (expected a number or a function)")


def specialised(calls=None, compile_with=njit, **options):
    """``njit(**options)`` on a factory's inner function, its name extended with each free
    variable: ``loop`` of ``_make_loop(flavor=1, generic=True)`` compiles as
    ``loop__flavor_1__generic_1`` (a name longer than MAX_NAME: the function's own name and
    a digest of the long one).

    ``calls``: {name: function} that the function calls by those (global) names, bound in a
    copy of its globals rather than in its closure. For ``cache=True``: numba's cache key
    hashes a closure's cells, and a dispatcher there pickles differently in every process
    (a random id), so a kernel that closed over its loops would never be found again.
    ``compile_with``: the decorator factory, ``njit`` or e.g. a ``numba.cfunc`` of a signature.
    """
    def wrap(func):
        bound = {**dict(zip(func.__code__.co_freevars,
                            (c.cell_contents for c in func.__closure__ or ()))),
                 **(calls or {})}
        if calls:
            func = types.FunctionType(func.__code__, {**func.__globals__, **calls},
                                      func.__name__, func.__defaults__, func.__closure__)
        name = re.sub(r"\W", "_", "__".join([func.__name__, *(f"{k}_{_tag(v)}"
                                                              for k, v in bound.items())]))
        if len(name) > MAX_NAME:  # numba's cache file names hold it (Windows: 260-char paths)
            name = f"{func.__name__}__{hashlib.sha1(name.encode()).hexdigest()[:16]}"
        prefix = func.__qualname__.rpartition(".")[0]
        func.__name__, func.__qualname__ = name, f"{prefix}.{name}" if prefix else name
        return compile_with(**options)(func)
    return wrap
