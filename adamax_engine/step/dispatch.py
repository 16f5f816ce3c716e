"""The one place a backend is chosen (torch.optim's ``_default_to_fused_or_foreach`` idea).

``backend=None`` follows where the buffers live (host memory -> numba CPU kernels, a CUDA
device -> kernels.cuda, driven by step.cuda); ``"reference"`` forces the numpy oracle. An explicit backend that cannot run raises, never
falls back quietly.
"""
import numpy as np

BACKENDS = ("cpu", "reference", "cuda")


def resolve(backend, device):
    if backend is None:
        return "cpu" if device == "cpu" else device
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS} or None, got {backend!r}")
    if (backend == "cuda") != (device == "cuda"):
        raise ValueError(f"backend: {backend!r} cannot run on device={device!r}")
    if backend == "cuda":
        from ..kernels.cuda.dense import available
        if not available():
            raise RuntimeError("device='cuda': no CUDA GPU (and NUMBA_ENABLE_CUDASIM is not set)")
    return backend


class LocalStep:
    """The host kernels of one CPU step, as the optimizer calls them; distributed.ShardedStep
    is its MPI twin (ZeRO-1), swapped in without the optimizer knowing."""

    def __init__(self, backend):
        self.backend = backend

    def prepare(self, buckets):
        """Before any reduction or update (the sharded twin reduce-scatters the grads here)."""

    def sumsq(self, bucket, flags):
        return segment_sumsq(self.backend, bucket, flags)

    def update(self, bucket, flavor):
        fused_update(self.backend, bucket, flavor)

    def finish(self, buckets):
        """After the updates (the sharded twin all-gathers the params here)."""


_LOADED = {}


def _kernels(backend):
    """The host kernel module of ``backend`` (imported on first use: numba compiles lazily)."""
    k = _LOADED.get(backend)
    if k is None:
        if backend == "reference":
            from ..kernels import reference as k
        else:
            from ..kernels import cpu as k
        _LOADED[backend] = k
    return k


def _borrowed_arrays(bucket, backend):
    """Reference backend: the lists of arrays; cpu: the address tables (+ arrays to keep alive)."""
    if backend == "reference":
        empty = bucket.moment[:0]
        ps = [e.adapter.numpy(e.adapter.data(e.param)) if bucket.active[i] else empty
              for i, e in enumerate(bucket.entries)]
        gs = [e.adapter.numpy(e.adapter.grad(e.param)) if bucket.active[i] else empty
              for i, e in enumerate(bucket.entries)]
        return ps, gs, None
    return bucket.addresses()


def segment_sumsq(backend, bucket, flags):
    """Per-segment sum of grad^2 for the segments with flags[:, ACTIVE] set."""
    if bucket.store is not None:
        return _mixed_sumsq(backend, bucket, flags)
    k = _kernels(backend)
    if bucket.mode == "adopt":
        return k.segment_sumsq(bucket.grads, bucket.chunks, flags)
    _, grads, _alive = _borrowed_arrays(bucket, backend)
    return k.borrowed_sumsq(grads, bucket.offsets, bucket.chunks, flags, bucket.moment)


def fused_update(backend, bucket, flavor):
    """The whole bucket's Adamax step in one kernel call."""
    if bucket.store is not None:
        return _mixed_update(backend, bucket, flavor)
    k = _kernels(backend)
    if bucket.mode == "adopt":
        k.fused_update(bucket.params, bucket.grads, bucket.moment, bucket.inf_norm, bucket.chunks,
                       bucket.hyper, bucket.flags, flavor)
    else:
        params, grads, _alive = _borrowed_arrays(bucket, backend)
        k.borrowed_update(params, grads, bucket.moment, bucket.inf_norm, bucket.offsets,
                          bucket.chunks, bucket.hyper, bucket.flags, flavor)


# --- mixed precision (float16/bfloat16 params, float32 master weights): kernels/mixed.py ---------
_BITS = np.empty(0, np.uint16)


def _store_code(bucket):
    from ..kernels.halfbits import store_code
    return store_code(bucket.store)


def _mixed_sumsq(backend, bucket, flags):
    from ..kernels import reference
    if backend == "reference":
        if bucket.mode == "adopt":
            return reference.segment_sumsq(bucket.grads.astype(np.float32), bucket.chunks, flags)
        _, grads, _alive = _borrowed_arrays(bucket, backend)
        return reference.borrowed_sumsq([g.astype(np.float32) for g in grads], bucket.offsets,
                                        bucket.chunks, flags, bucket.moment)
    from ..kernels import mixed
    if bucket.mode == "adopt":
        return mixed.segment_sumsq(bucket.grads.view(np.uint16), bucket.chunks, flags,
                                   _store_code(bucket))
    _, grads, _alive = _borrowed_arrays(bucket, backend)
    return mixed.borrowed_sumsq(grads, bucket.offsets, bucket.chunks, flags, _store_code(bucket),
                                _BITS)


def _mixed_update(backend, bucket, flavor):
    b = bucket
    if backend == "reference":
        from ..kernels import reference
        if b.mode == "adopt":
            reference.mixed_update(b.params, b.grads, b.master, b.moment, b.inf_norm, b.chunks,
                                   b.hyper, b.flags, flavor)
        else:
            params, grads, _alive = _borrowed_arrays(b, backend)
            reference.mixed_borrowed_update(params, grads, b.master, b.moment, b.inf_norm,
                                            b.offsets, b.chunks, b.hyper, b.flags, flavor)
        return
    from ..kernels import mixed
    if b.mode == "adopt":
        mixed.fused_update(b.params.view(np.uint16), b.grads.view(np.uint16), b.master, b.moment,
                           b.inf_norm, b.chunks, b.hyper, b.flags, flavor, _store_code(b))
    else:
        params, grads, _alive = _borrowed_arrays(b, backend)
        mixed.borrowed_update(params, grads, b.master, b.moment, b.inf_norm, b.offsets, b.chunks,
                              b.hyper, b.flags, flavor, _store_code(b), _BITS)
