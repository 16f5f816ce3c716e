"""A parameter's registry entry (its name and effective settings), and what any framework's
parameter is called and where it lives, read through its adapter."""
from ..adapters import adapter_for
from .bucket import Entry
from .dtypes import LOW_PRECISION


def make_entry(param, gi, group, index, names, default_reg, multi_precision):
    """The registry entry of one parameter: its name and effective settings (a group's explicit
    setting wins, as in paddle, else the parameter's own, else the optimizer's)."""
    adapter = adapter_for(param)
    name, own_lr, own_reg, need_clip = adapter.attributes(param)
    name = names.get(id(param), name) or f"param_{index}"
    adapter.check(adapter.data(param), f"{name}.data")
    shape, dtype = adapter.meta(param)
    if dtype.name in LOW_PRECISION and not multi_precision:
        raise TypeError(f"{name}.data: {dtype.name} parameters need multi_precision=True "
                        "(float32 master weights and moments; numba has no CPU float16 "
                        "arithmetic, and paddle has no CPU float16 Adamax either)")
    lr_mult = group["learning_rate"] if group["learning_rate"] is not None else own_lr
    reg = group["weight_decay"] or own_reg or default_reg
    return Entry(param, adapter, name, shape, dtype, gi, float(lr_mult), reg, bool(need_clip))


def identify(param):
    """(own name or None, device) of any framework's parameter (io/checkpoint.build names
    parameters before an optimizer exists)."""
    adapter = adapter_for(param)
    return adapter.attributes(param)[0], adapter.device
