"""The adapter contract: how the registry reads and re-points one framework's parameters.

An adapter is a class of static/class methods (never instantiated): the registry keeps the class
per entry and is its only caller (params/registry.py); everything else reaches a parameter's
arrays through the registry. ``AdapterBase`` gives the optional capabilities their "absent"
value, so the registry asks ``adapter.snapshot is not None`` instead of probing with hasattr.
"""
from typing import Callable, ClassVar, Optional, Protocol, runtime_checkable


@runtime_checkable
class Adapter(Protocol):
    device: ClassVar[str]        # "cpu" | "cuda": where its tensors live
    default_mode: ClassVar[str]  # "adopt" | "borrow" (adopt needs a re-pointable .data)
    #: optional: (params) -> (trainable, data addresses, grad addresses) as arrays, or None when
    #: some grad has no address; lets the registry see "nothing moved" in one vectorised look
    snapshot: ClassVar[Optional[Callable]]
    #: optional: (grad) -> RowSparseGrad or None, the framework's own sparse grad as ours
    row_sparse: ClassVar[Optional[Callable]]

    def accepts(param) -> bool: ...                  # is ``param`` this framework's parameter?
    def attributes(param) -> tuple: ...              # (name, lr multiplier, regularizer, need_clip)
    def meta(param) -> tuple: ...                    # (shape, numpy dtype)
    def trainable(param) -> bool: ...
    def data(param): ...                             # the value as the framework holds it
    def grad(param): ...                             # the grad, or None
    def check(value, what, *, dtype=None, shape=None, writeable=True): ...  # raise naming what
    def same(value, view, view_address=None) -> bool: ...  # is value backed by our view?
    def address(value) -> int: ...
    def numpy(value): ...                            # a writeable host view, no copy
    def copy_into(view, value) -> None: ...
    def point(param, data=None, grad=None) -> None: ...    # adopt: re-point at our views
    def zero_grad(param) -> None: ...
    def clear_grad(param) -> None: ...
    def mutation_count(): ...                        # a counter bumped by every assignment, or None


class AdapterBase:
    """Defaults of the optional capabilities: absent."""
    snapshot = None
    row_sparse = None
