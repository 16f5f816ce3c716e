"""The core shapes: ``Entry`` (one parameter) and ``Bucket`` (one flat buffer per role and dtype).

Every field is declared here (slotted dataclasses: nothing can be added from outside) and the
fields that change after construction change through the methods below.

  Entry    one parameter: its name, shape, group, lr multiplier, regularizer, need_clip, where it
           lives (bucket, segment index) and, in adopt mode, the views handed to its framework.
  Bucket   one (device, dtype): flat ``moment`` and ``inf_norm`` (+ ``params`` and ``grads`` in
           adopt mode, + ``master`` for float16/bfloat16), per-segment ``beta1_pow``/``steps``/
           ``has_state``, the chunk table and the hyper/flag tables the kernels read. Segment k
           is [offsets[k], +lengths[k]); offsets are multiples of layout.SEGMENT_ALIGN.
  Shard    ZeRO-1 (parallel/): the slice [lo, hi) of the flat buffers this rank steps.
"""
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..kernels import layout as L
from ..kernels.lowbit_reference import BLOCK, bf16_nearest, decode_codes, int8_encode
from ..kernels.reference import paddle_hyper


@dataclass(slots=True, eq=False)
class Entry:
    param: object
    adapter: type
    name: str
    shape: tuple
    dtype: np.dtype
    group: int
    lr_mult: float
    regularizer: object
    need_clip: bool
    bucket: "Bucket" = None
    index: int = -1
    data_view: object = None
    grad_view: object = None
    checked: tuple = None  # (data, grad) addresses validated last step (framework tensors)
    view_addrs: tuple = (None, None)  # addresses of data_view/grad_view (adopt mode)

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    def place(self, bucket, index, data_view=None, grad_view=None, view_addrs=(None, None)):
        """Registry: where this parameter lives (called once, by Bucket.allocate)."""
        self.bucket, self.index = bucket, index
        self.data_view, self.grad_view, self.view_addrs = data_view, grad_view, view_addrs

    def mark_checked(self, addresses):
        """Registry: the (data, grad) addresses validated this step."""
        self.checked = addresses

    def configure(self, lr_mult, regularizer, need_clip):
        """Per-parameter settings (a checkpoint's); Registry.configure must run after."""
        self.lr_mult, self.regularizer, self.need_clip = float(lr_mult), regularizer, \
            bool(need_clip)


class Shard(NamedTuple):
    """ZeRO-1: this rank's slice [lo, hi) of a bucket, every rank's counts/displacements and the
    chunk table clipped to the slice (in slice coordinates)."""
    lo: int
    hi: int
    counts: np.ndarray
    displs: np.ndarray
    chunks: np.ndarray


@dataclass(slots=True, eq=False)
class Bucket:
    device: str
    dtype: np.dtype           # the compute dtype: moments, hyper table (float32 if ``store``)
    mode: str
    store: np.dtype = None    # float16/bfloat16 params and grads (mixed precision), else None
    state_dtype: str = "float32"  # "bfloat16": moment/inf_norm held as bfloat16 bits (uint16);
    #                               "int8": int8 / uint8 codes with a float32 scale per block
    stochastic: bool = True   # bfloat16 state: stochastic rounding, else to nearest even
    entries: list = field(default_factory=list)
    # --- buffers and tables, made by allocate() ------------------------------------------------
    lengths: np.ndarray = None
    offsets: np.ndarray = None
    chunks: np.ndarray = None
    groups: np.ndarray = None       # group index per segment
    moment: object = None           # flat state (this rank's slice under ZeRO-1)
    inf_norm: object = None
    master: object = None           # float32 master weights (mixed precision only)
    params: object = None           # adopt mode: flat params and grads
    grads: object = None
    beta1_pow: np.ndarray = None    # per segment, in the bucket dtype
    steps: np.ndarray = None
    has_state: np.ndarray = None
    active: np.ndarray = None       # this step: a grad is there and the param is trainable
    sparse: np.ndarray = None       # this step's grad is row-sparse (step/rows.py)
    hyper: np.ndarray = None        # layout.N_HYPER columns
    flags: np.ndarray = None        # layout.N_FLAGS columns
    # --- static tables, made by configure() ---------------------------------------------------
    lr_mult: np.ndarray = None
    beta1_py: np.ndarray = None     # float64 beta1 (non-paddle bias correction)
    beta1_T: np.ndarray = None      # beta1 in T: beta1_pow's start value and multiplier
    norm_clipped: np.ndarray = None
    # --- borrow mode: this step's address tables and the arrays they point into ---------------
    param_addrs: np.ndarray = None
    grad_addrs: np.ndarray = None
    alive: list = None
    shard: Shard = None             # ZeRO-1 (take_shard)
    dirty: bool = True              # a device copy of the tables must be refreshed
    scales: tuple = None            # int8 state: (moment scales, inf-norm scales) per block

    def allocate(self, zeros, address_of):
        """Buffers for the entries; ``zeros(n, dtype)`` makes a buffer where the bucket lives,
        ``address_of(view)`` gives a view's address (adopt mode compares grads by it)."""
        n = len(self.entries)
        self.lengths = np.array([e.size for e in self.entries], dtype=np.int64)
        int8 = self.state_dtype == "int8"
        self.offsets, total = L.segment_offsets(self.lengths, align=BLOCK) if int8 else \
            L.segment_offsets(self.lengths)
        held = {"bfloat16": (np.uint16, np.uint16), "int8": (np.int8, np.uint8)}.get(
            self.state_dtype, (self.dtype, self.dtype))
        self.moment = zeros(total, np.dtype(held[0]))
        self.inf_norm = zeros(total, np.dtype(held[1]))
        if int8:
            blocks = (total + BLOCK - 1) // BLOCK
            self.scales = (zeros(blocks, np.dtype(np.float32)),
                           zeros(blocks, np.dtype(np.float32)))
        self.beta1_pow = np.zeros(n, self.dtype)
        self.steps = np.zeros(n, np.int64)
        self.has_state = np.zeros(n, np.bool_)
        self.active = np.zeros(n, np.bool_)
        self.sparse = np.zeros(n, np.bool_)
        self.chunks = L.build_chunk_table(self.offsets, self.lengths)
        self.groups = np.array([e.group for e in self.entries], dtype=np.int64)
        self.hyper, self.flags = L.empty_tables(n, self.dtype)
        if self.mode == "adopt":
            self.params = zeros(total, self.store or self.dtype)
            self.grads = zeros(total, self.store or self.dtype)
        if self.store is not None:
            self.master = zeros(total, self.dtype)
        for k, e in enumerate(self.entries):
            if self.mode == "adopt":
                data, grad = self.segment(self.params, k), self.segment(self.grads, k)
                e.place(self, k, data, grad, (address_of(data), address_of(grad)))
            else:
                e.place(self, k)

    def configure(self, groups, flavor):
        """Everything in the hyper/flag tables that does not change from step to step."""
        T = self.dtype.type
        n = len(self.entries)
        self.lr_mult = np.array([e.lr_mult for e in self.entries], dtype=self.dtype)
        self.beta1_py = np.array([groups[e.group]["beta1"] for e in self.entries], np.float64)
        self.beta1_T = self.beta1_py.astype(self.dtype)
        self.norm_clipped = np.zeros(n, np.bool_)
        for k, e in enumerate(self.entries):
            g = groups[e.group]
            if flavor == L.PADDLE:
                b1, b2, eps = paddle_hyper(self.dtype, g["beta1"], g["beta2"], g["epsilon"])
            else:
                b1, b2, eps = T(g["beta1"]), T(g["beta2"]), T(g["epsilon"])
            self.hyper[k, [L.BETA1, L.ONE_MINUS_BETA1, L.BETA2, L.EPS]] = [b1, T(1) - b1, b2, eps]
            self.hyper[k, [L.DECAY, L.CLIP_MIN, L.CLIP_MAX]] = 0
            self.flags[k, [L.DECAY_MODE, L.CLIP_VALUE]] = 0
            if e.regularizer is not None:
                self.hyper[k, L.DECAY] = T(e.regularizer.coeff)
                self.flags[k, L.DECAY_MODE] = e.regularizer.mode
            clip = g["grad_clip"]
            if clip is not None and e.need_clip:
                bounds = clip.value_bounds(self.dtype)
                if bounds is not None:
                    self.hyper[k, [L.CLIP_MIN, L.CLIP_MAX]] = bounds
                    self.flags[k, L.CLIP_VALUE] = 1
                self.norm_clipped[k] = clip.needs_norms
        self.dirty = True

    def set_group_hyper(self, gi, group, flavor, lr_mult=None):
        """Group ``gi``'s settings changed between steps (a torch front reads param_groups at
        every step): its segments' static columns, vectorised, as ``configure`` fills them.
        ``group["weight_decay"]`` None means no decay term at all (torch's weight_decay=0)."""
        rows = np.flatnonzero(self.groups == gi)
        if not len(rows):
            return
        T = self.dtype.type
        if lr_mult is not None:
            self.lr_mult[rows] = lr_mult
        self.beta1_py[rows] = group["beta1"]
        self.beta1_T[rows] = self.beta1_py[rows].astype(self.dtype)
        if flavor == L.PADDLE:
            b1, b2, eps = paddle_hyper(self.dtype, group["beta1"], group["beta2"],
                                       group["epsilon"])
        else:
            b1, b2, eps = T(group["beta1"]), T(group["beta2"]), T(group["epsilon"])
        cols = [L.BETA1, L.ONE_MINUS_BETA1, L.BETA2, L.EPS]
        self.hyper[np.ix_(rows, cols)] = np.array([b1, T(1) - b1, b2, eps], self.dtype)
        reg = group["weight_decay"]
        self.hyper[rows, L.DECAY] = 0 if reg is None else T(reg.coeff)
        self.flags[rows, L.DECAY_MODE] = 0 if reg is None else reg.mode
        self.dirty = True

    @property
    def low_bit(self):
        return self.state_dtype != "float32"

    def state_nbytes(self):
        """Bytes of optimizer state this bucket holds (moments, beta1_pow; masters apart)."""
        scales = sum(int(x.nbytes) for x in self.scales) if self.scales is not None else 0
        return int(self.moment.nbytes + self.inf_norm.nbytes + self.beta1_pow.nbytes) + scales

    def segment(self, flat, k):
        """Segment k of a flat buffer, shaped like its parameter (a view, never a copy)."""
        start = self.offsets[k]
        return flat[start:start + self.lengths[k]].reshape(self.entries[k].shape)

    # --- per step ---------------------------------------------------------------------------------
    def set_active(self, active, sparse):
        self.active[:] = active
        self.sparse[:] = sparse

    def set_addresses(self, param_addrs, grad_addrs, alive):
        """Borrow mode: this step's address tables; ``alive`` keeps their arrays referenced."""
        self.param_addrs, self.grad_addrs, self.alive = param_addrs, grad_addrs, alive

    def addresses(self):
        """Borrow mode: (param addresses, grad addresses, arrays they point into)."""
        return self.param_addrs, self.grad_addrs, self.alive

    def set_segment_active(self, k, value):
        """Row-sparse segments: the dense kernels skip them (flag 0, or ACTIVE_SPARSE on a GPU)."""
        self.flags[k, L.ACTIVE] = value
        self.dirty = True

    def set_grad_scale(self, idx, scale, apply):
        """A norm clipper's scale for segments ``idx`` (an index array or a slice)."""
        self.hyper[idx, L.GRAD_SCALE] = scale
        self.flags[idx, L.SCALE_GRAD] = apply

    def tables_uploaded(self):
        self.dirty = False

    # --- state ------------------------------------------------------------------------------------
    def state_views(self, k):
        """Segment k's (moment, inf_norm, beta1_pow [1], steps [1]) views (low-bit state:
        host copies of the moments' values, exact, in the bucket's dtype)."""
        m, u = self.segment(self.moment, k), self.segment(self.inf_norm, k)
        if self.low_bit:  # decoded on the host (device codes copied down first)
            m, u, sm, su = (None if a is None else _host(a) for a in self.code_views(k))
            m, u = (np.asarray(x, self.dtype).reshape(m.shape)  # (a 0-d one: an array too)
                    for x in decode_codes(self.state_dtype, m, u, sm, su))
        return m, u, self.beta1_pow[k:k + 1], self.steps[k:k + 1]

    def block_range(self, k):
        """int8 state: segment k's slice of the per-block scale arrays."""
        first = int(self.offsets[k]) // BLOCK
        return slice(first, first + (int(self.lengths[k]) + BLOCK - 1) // BLOCK)

    def code_views(self, k):
        """Segment k's state as held: (moment, inf_norm) in their stored dtype (float32,
        bfloat16 bits as uint16, int8/uint8 codes), shaped like the parameter, and the int8
        scales' (moment, inf_norm) views for its blocks (None otherwise). Live views."""
        m, u = self.segment(self.moment, k), self.segment(self.inf_norm, k)
        if self.state_dtype != "int8":
            return m, u, None, None
        blocks = self.block_range(k)
        return m, u, self.scales[0][blocks], self.scales[1][blocks]

    def load_segment_codes(self, k, moment, inf_norm, moment_scale, inf_norm_scale, beta1_pow,
                           steps):
        """Write segment k's state as held (this bucket's codes and scales, checked by the
        caller): an int8 state dict loads into an int8 optimizer exactly, not requantized."""
        m, u, sm, su = self.code_views(k)
        _write(m, np.asarray(moment).reshape(m.shape))
        _write(u, np.asarray(inf_norm).reshape(u.shape))
        if sm is not None:
            _write(sm, np.asarray(moment_scale, np.float32))
            _write(su, np.asarray(inf_norm_scale, np.float32))
        self.beta1_pow[k], self.has_state[k], self.steps[k] = beta1_pow, True, steps
        self.dirty = True

    def load_segment_state(self, k, has_state, moment=None, inf_norm=None, beta1_pow=0,
                           steps=0):
        """Write segment k's state from host values (zeros when ``has_state`` is False;
        ``steps=None`` keeps the count, which paddle's state dict does not hold)."""
        m, u = self.segment(self.moment, k), self.segment(self.inf_norm, k)
        if not has_state:
            moment, inf_norm = np.zeros(m.shape, self.dtype), np.zeros(u.shape, self.dtype)
            beta1_pow, steps = 0, 0
        if self.state_dtype == "bfloat16":  # rounded to nearest (exact for bfloat16 values)
            moment = bf16_nearest(moment).reshape(m.shape)
            inf_norm = bf16_nearest(inf_norm).reshape(u.shape)
        elif self.state_dtype == "int8":  # the segment's blocks, requantized to nearest
            moment, sm, inf_norm, su = int8_encode(moment, inf_norm)
            moment, inf_norm = moment.reshape(m.shape), inf_norm.reshape(u.shape)
            blocks = self.block_range(k)
            _write(self.scales[0][blocks], sm)
            _write(self.scales[1][blocks], su)
        _write(m, moment)
        _write(u, inf_norm)
        self.beta1_pow[k], self.has_state[k] = beta1_pow, has_state
        if steps is not None:
            self.steps[k] = steps
        self.dirty = True  # device copies of beta1_pow / steps must be refreshed

    def load_master(self, k, value):
        """Mixed precision: segment k's float32 master weight."""
        _write(self.segment(self.master, k), value)

    def swap_state(self, moment, inf_norm, scales=None):
        """Replace the flat state buffers (ZeRO-1 gathers/scatters them; int8 state: and the
        block scales); returns the old (moment, inf_norm, scales)."""
        old = self.moment, self.inf_norm, self.scales
        self.moment, self.inf_norm = moment, inf_norm
        if scales is not None:
            self.scales = scales
        return old

    def take_shard(self, shard, moment, inf_norm, scales=None):
        """ZeRO-1: from now on this rank holds only ``shard``'s slice of the state."""
        self.shard = shard
        self.swap_state(moment, inf_norm, scales)


def _host(array):
    return array if isinstance(array, np.ndarray) else array.copy_to_host()


def _write(target, value):
    if isinstance(target, np.ndarray):
        if target is not value:
            target[...] = value
    else:  # a device array
        target.copy_to_device(np.ascontiguousarray(value))
