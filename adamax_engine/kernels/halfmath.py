"""float16 / bfloat16 <-> float32 with exact arithmetic only (frexp, ldexp, floor): no bitcasts.

For the CUDA kernels: numba.cuda has no scalar bitcast (numba issue #6026) and its simulator runs
device functions as plain Python, so these are written once, in Python that both numba.cuda and
the simulator run (kernels/cuda/mixed.py compiles them as device functions). Every step is exact
(scaling by powers of two, floor, a difference of nearby floats), so the results are the same
as kernels/halfbits.py's: exact widening, round-to-nearest-even narrowing, inf/overflow -> inf,
NaN -> the quiet NaN of its sign (no payload: default NaNs have none). The tests run both
over every 16-bit input and ~10^5 float32 values.
``store``: halfbits.FLOAT16 (0) or BFLOAT16 (1). Values are uint16 bit patterns.
"""
import math


def widen(h, store):
    """16-bit pattern -> its float32 value (exact)."""
    h = int(h)  # (a numpy uint16 in the simulator would wrap around below)
    if store == 1:
        e, m, mbits, emax, bias = (h >> 7) & 0xFF, h & 0x7F, 7, 0xFF, 127
    else:
        e, m, mbits, emax, bias = (h >> 10) & 0x1F, h & 0x3FF, 10, 0x1F, 15
    if e == emax:
        v = math.inf if m == 0 else math.nan
    elif e == 0:
        v = math.ldexp(1.0 * m, 1 - bias - mbits)
    else:
        v = math.ldexp(1.0 * (m + (1 << mbits)), e - bias - mbits)
    return -v if (h >> 15) & 1 else v


def narrow(x, store):
    """float32 value -> 16-bit pattern, rounded to nearest, ties to even."""
    if store == 1:
        mbits, emax, bias, quiet = 7, 0xFF, 127, 0x7FC0
    else:
        mbits, emax, bias, quiet = 10, 0x1F, 15, 0x7E00
    sign = 0x8000 if math.copysign(1.0, x) < 0 else 0  # (NaN too: its sign bit)
    if x != x:
        return sign | quiet
    a = abs(x)
    if a == 0:
        return sign
    if a == math.inf:
        return sign | (emax << mbits)
    mant, exp = math.frexp(a)  # a = mant * 2**exp, 0.5 <= mant < 1
    top = 1 << mbits
    e = exp - 1 + bias
    if e >= 1:
        s = math.ldexp(mant, mbits + 1)      # in [2**mbits, 2**(mbits+1)): the kept bits
    else:
        s = math.ldexp(a, bias - 1 + mbits)  # subnormal: units of the smallest subnormal
    f = math.floor(s)
    d = s - f
    r = int(f)
    if d > 0.5 or (d == 0.5 and (r & 1) == 1):
        r += 1
    if e < 1:
        return sign | r  # r == top rounds up into the smallest normal: the same bits
    if r == 2 * top:
        r = top
        e += 1
    if e >= emax:
        return sign | (emax << mbits)
    return sign | (e << mbits) | (r - top)
