"""One step: the stepper per backend (host, CUDA), norm clipping, row-sparse rows, stream fences."""
