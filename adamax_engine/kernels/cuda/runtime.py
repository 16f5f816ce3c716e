"""What every CUDA launch needs besides its kernel: is there a device, is it the simulator,
how many threads and blocks, the type of flat indices. Importing this module imports no
numba.cuda."""
import os

import numba

#: the type of the update's and the norm pass's flat element indices. numba wraps a negative
#: signed index (a shift, an and and an add, each 64-bit, before every array access in the
#: PTX); an unsigned one it uses as it is, and NVVM then walks pointers (one add per access)
#: but keeps more of them live (float32 update: 80 registers against 60, 3 blocks of 256
#: threads per SM against 4). Which is faster is for a GPU to say, so the default stays the
#: signed one, the variant measured on an H200; ADAMAX_ENGINE_CUDA_INDEX=uint64, read at
#: import, builds the other (scripts/gpu_check.sh times both). Every operand of an index's
#: arithmetic must be of this type too: numba types uint64 with int64 as float64.
INDEX_TYPES = {"int64": numba.int64, "uint64": numba.uint64}
INDEX_NAME = os.environ.get("ADAMAX_ENGINE_CUDA_INDEX", "int64")
if INDEX_NAME not in INDEX_TYPES:
    raise ValueError(f"ADAMAX_ENGINE_CUDA_INDEX: expected one of {sorted(INDEX_TYPES)}, "
                     f"got {INDEX_NAME!r}")
Index = INDEX_TYPES[INDEX_NAME]

#: threads per block of every kernel, on a GPU and in the simulator (which runs each thread as a
#: Python thread); powers of two, as the tree reductions assume
THREADS, SIM_THREADS = 256, 16


def simulated():
    """True when numba's CUDA simulator stands in for a GPU (NUMBA_ENABLE_CUDASIM=1)."""
    from numba import config
    return bool(config.ENABLE_CUDASIM)


def available():
    """A real GPU or the simulator can run these kernels (never raises)."""
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver install means "not available"
        return False


def grid_for(n_chunks):
    """Blocks for a grid-stride launch over ``n_chunks`` chunks: enough to fill the GPU."""
    if simulated():
        return max(1, min(n_chunks, 4))
    from numba import cuda
    sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
    return max(1, min(n_chunks, sms * 16))


#: threads per block of this process's launches, a compile-time constant of the reductions
NTHREADS = SIM_THREADS if simulated() else THREADS
