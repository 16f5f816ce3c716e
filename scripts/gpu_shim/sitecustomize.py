"""Only for scripts/gpu_check.sh: numba-cuda 0.30.4 registers an overload for np.row_stack,
which numpy 2.5 removed; the lent GPU image pairs the two. Restore the alias (np.vstack)."""
import numpy

if "row_stack" not in dir(numpy):
    numpy.row_stack = numpy.vstack
