"""The norm half of a CPU step: one reduction pass, then the norm clippers' grad scales.

ClipGradByNorm and ClipGradByGlobalNorm need every clipped grad's sum of squares before any
update; ``skip_nonfinite`` needs the non-finite flag of every grad. Both come from the same
reduction pass (kernels.cpu.segment_sumsq, or the distributed twin's), after which each clipper
turns the sums into the GRAD_SCALE / SCALE_GRAD columns that the update kernel reads.
(The CUDA step does all of this on the device: step/cuda.py.)
"""
import numpy as np

from ..transforms.clip import ClipGradByGlobalNorm
from .tables import global_norm_scales


class NormClips:
    """Built from the static tables (``b.norm_clipped``); ``apply`` runs once per step."""

    def __init__(self, groups, buckets, skip_nonfinite):
        self.groups, self.skip = groups, skip_nonfinite
        self.needed = skip_nonfinite or any(b.norm_clipped.any() for b in buckets)
        self._plan = (None, None)

    def apply(self, buckets, kernels, sparse_rows, sparse_grads):
        """Reduce, then set the clip scales. True when ``skip_nonfinite`` is on and some grad is
        inf/nan: the step must skip the update. ``kernels``: the HostStepper (or its MPI
        twin), whose ``sumsq`` runs the reduction; ``sparse_rows``: sparse.SparseRows; ``sparse_grads``: this step's row-sparse
        grads by id(entry)."""
        if not self.needed:
            return False
        reduce, groups = self.plan(buckets)
        sums = {}
        for b, flags, sparse in reduce:
            sums[id(b)], nonfinite = kernels.sumsq(b, flags)
            for k in sparse:  # row-sparse grads: the squares of their rows
                sums[id(b)][k], nonfinite[k] = sparse_rows.sumsq(sparse_grads[id(b.entries[k])])
            if self.skip and nonfinite.any():
                return True
        for clip, members, mask in groups:
            if mask is not None and type(clip) is ClipGradByGlobalNorm:  # the usual case
                b = members[0][0]
                global_norm_scales(sums[id(b)], mask, clip.clip_norm, clip.auto_skip_clip,
                                   b.hyper, b.flags)
                continue
            scales = clip.norm_scales([sums[id(b)][idx] for b, idx in members])
            for (b, idx), (scale, apply) in zip(members, scales):
                b.set_grad_scale(idx, scale, apply)
        return False

    def plan(self, buckets):
        """What ``apply`` does, worked out from the masks: per bucket (bucket, reduction flags,
        row-sparse segments), per norm clipper (clipper, [(bucket, its segments)], and those
        segments as a mask when they are all in one bucket, else None).

        Masks rarely change between steps, so the plan is kept until they do (at 2000 tensors
        rebuilding it every step cost ~5% of a step).
        """
        skip = self.skip
        key = (tuple(id(g["grad_clip"]) for g in self.groups),
               tuple((id(b), b.active.tobytes(), b.sparse.tobytes()) for b in buckets))
        if self._plan[0] == key:
            return self._plan[1]
        wanted = [b for b in buckets if skip or (b.norm_clipped & b.active).any()]
        reduce = []
        for b in wanted:
            mask = b.active if skip else b.norm_clipped & b.active
            reduce.append((b, (mask & ~b.sparse).astype(np.int64).reshape(-1, 1),
                           np.flatnonzero(mask & b.sparse)))
        groups = []
        for gi, g in enumerate(self.groups):
            if g["grad_clip"] is None or not g["grad_clip"].needs_norms:
                continue
            members = [(b, np.flatnonzero((b.groups == gi) & b.norm_clipped & b.active))
                       for b in wanted]
            members = [(b, slice(None) if len(idx) == len(b.entries) else idx)
                       for b, idx in members if len(idx)]  # (a slice: no fancy-index copies)
            if members:
                b = members[0][0]
                mask = (b.groups == gi) & b.norm_clipped & b.active if len(members) == 1 else None
                groups.append((g["grad_clip"], members, mask))
        self._plan = (key, (reduce, groups))
        return reduce, groups
