"""Data parallelism over MPI: averaged grads or ZeRO-1 sharded state (``DistributedAdamax``)."""
from .mpi import DistributedAdamax

__all__ = ["DistributedAdamax"]
