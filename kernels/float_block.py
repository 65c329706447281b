"""Block-scaled (MX / NVFP4 / block floating point) dot products.

Operands arrive as integer significands and exponents (element = sig * 2**exp, scale = ssig * 2**sexp),
so a block's dot product is summed exactly in a two-limb integer (limbs of 2**40), scaled by the two
block scales exactly, converted to an exact float64 pair (x, tail) and added to the float accumulator
with one correctly rounded addition per block: per-block dot products, then scaling, then accumulation.
"""
import math

import numba as nb
import numpy as np

from .float_accum import round_step, two_sum

LIMB = 40
_MASK = (np.int64(1) << LIMB) - 1
EPILOGUE_COUNTER = np.int64(1) << 41   # the tensor-scale multiply draws counter 2**41


@nb.njit(cache=True, inline="always")
def exact_pair(H, L):
    """The integer H * 2**40 + L (0 <= L < 2**40, |H| < 2**62) as float64 x = RN(value) and the exact
    residual tail = value - x."""
    neg = H < 0
    if neg:                                   # magnitude, still as (H, L) with 0 <= L < 2**40
        if L == 0:
            H = -H
        else:
            H = -H - 1
            L = (np.int64(1) << LIMB) - L
    if H == 0:
        x, t = float(L), 0.0
    else:
        nb_ = LIMB + 64 - _clz(H)
        if nb_ <= 53:
            x, t = float((H << LIMB) | L), 0.0
        else:
            sh = nb_ - 53
            if sh <= LIMB:
                top = (H << (LIMB - sh)) | (L >> sh)
                rem = L & ((np.int64(1) << sh) - 1)
            else:
                top = H >> (sh - LIMB)
                rem = ((H & ((np.int64(1) << (sh - LIMB)) - 1)) << LIMB) | L
            x, t = two_sum(math.ldexp(float(top), sh), float(rem))
    if neg:
        return -x, -t
    return x, t


@nb.njit(cache=True, inline="always")
def _clz(h):
    """Leading zero bits of a positive int64 (as a 64-bit word)."""
    n = 0
    while n < 64 and (h >> (63 - n)) & 1 == 0:
        n += 1
    return n


@nb.njit(cache=True)
def add3(acc, x, t, reg, stream, ctr):
    """acc + (x + t) correctly rounded to the accumulator ``reg`` (a ``FloatReg``; x + t an exact pair):
    (value, overflowed)."""
    if reg.flush and abs(acc) < reg.min_normal:
        acc = math.copysign(0.0, acc)
    s, e = two_sum(acc, x)
    if s - s == 0.0:
        u, f = two_sum(e, t)
        s2, g = two_sum(s, u)
        tail = g + f
    else:                       # inf or NaN: nothing left to round
        s2, tail = s, 0.0
    y, of = round_step(s2, tail, reg, stream, ctr)
    if not (acc - acc == 0.0):
        of = 0
    elif not (y - y == 0.0):
        of = 1
    return y, of


@nb.njit(cache=True)
def block_dot(asig, aexp, bsig, bexp, k0, k1, e0):
    """Exact sum of asig[k] * bsig[k] * 2**(aexp[k] + bexp[k] - e0) over k0 <= k < k1 as (H, L)."""
    hi = np.int64(0)
    lo = np.int64(0)
    for k in range(k0, k1):
        P = asig[k] * bsig[k]
        if P == 0:
            continue
        d = aexp[k] + bexp[k] - e0
        if d >= LIMB:
            hi += P << (d - LIMB)
        else:
            v = P << d
            hi += v >> LIMB
            lo += v & _MASK
    return hi, lo


@nb.njit(cache=True, parallel=True)
def block_gemm_kernel(asig, aexp, assig, asexp, bsig, bexp, bssig, bsexp, block, e0, reg, acc_out, nov_out):
    """All outputs of a block-scaled GEMM. a* are (M, Kp), as* (M, nb); b* are given transposed (N, Kp),
    bs* (N, nb); ``reg`` the accumulator (a ``FloatReg``). One correctly rounded accumulator addition per
    block, in block order."""
    M = asig.shape[0]
    N = bsig.shape[0]
    nblk = assig.shape[1]
    for idx in nb.prange(M * N):
        i = idx // N
        j = idx % N
        acc = 0.0
        nov = 0
        for q in range(nblk):
            H, L = block_dot(asig[i], aexp[i], bsig[j], bexp[j], q * block, (q + 1) * block, e0)
            S = assig[i, q] * bssig[j, q]
            H *= S
            L *= S
            H += L >> LIMB
            L &= _MASK
            x, t = exact_pair(H, L)
            sc = e0 + asexp[i, q] + bsexp[j, q]
            x = math.ldexp(x, sc)
            t = math.ldexp(t, sc)
            acc, of = add3(acc, x, t, reg, np.int64(idx), np.int64(q))
            nov += of
        acc_out[i, j] = acc
        nov_out[i, j] = nov


@nb.njit(cache=True, inline="always")
def _split(a):
    """Veltkamp split of a float64 into two 26-bit halves (a == hi + lo)."""
    c = 134217729.0 * a          # 2**27 + 1
    hi = c - (c - a)
    return hi, a - hi


@nb.njit(cache=True, inline="always")
def two_prod(a, b):
    """Dekker's TwoProduct: p = fl(a * b) and the exact error e (no overflow or underflow)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


@nb.njit(cache=True, parallel=True)
def scale_epilogue_kernel(acc, factor, reg, out, nov):
    """out = acc * factor rounded once to the accumulator ``reg`` (the per-tensor scale multiply)."""
    M, N = acc.shape
    for idx in nb.prange(M * N):
        i = idx // N
        j = idx % N
        p, e = two_prod(acc[i, j], factor)
        if not (p - p == 0.0):
            e = 0.0
        y, of = round_step(p, e, reg, np.int64(idx), EPILOGUE_COUNTER)
        out[i, j] = y
        nov[i, j] += of if (acc[i, j] - acc[i, j] == 0.0) else 0
