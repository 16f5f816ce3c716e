"""What every CUDA launch needs besides its kernel: is there a device, is it the simulator,
how many threads and blocks. Importing this module imports no numba.cuda."""

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
