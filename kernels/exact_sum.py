"""Exact dot products of float64 operands, rounded once (half even) to float64.

Each product a * b is split without error into p + e (p = fl(a * b), e exact by Dekker's TwoProduct with
Veltkamp splitting; exact when |a|, |b| lie in [2**-450, 2**450] or are zero, which the caller checks).
Every p, e and the bias are float64 numbers, so each is an integer multiple of 2**-1074 below 2**1024; they
are added exactly into a fixed-point register of 32-bit limbs covering 2**-1126 .. 2**1178 (a Kulisch
accumulator wide enough for the whole float64 range). Each limb is an int64 that takes one value below
2**32 per addition, so up to 2**31 additions need no carry; the caller keeps 2K + 1 below that. At the end
the carries are propagated and the exact sum is rounded once to float64 (half even).
"""
import math

import numba as nb
import numpy as np

NLIMBS = 72
OFFSET = 1126          # limb bit 0 weighs 2**-1126 (the LSB of a 53-bit significand times 2**-1074)
SPLIT = 134217729.0    # 2**27 + 1 (Veltkamp)


@nb.njit(cache=True, inline="always")
def two_product_error(a, b, p):
    """e with a * b == p + e exactly, for p = fl(a * b) (no overflow or underflow in the split)."""
    c = SPLIT * a
    ah = c - (c - a)
    al = a - ah
    c = SPLIT * b
    bh = c - (c - b)
    bl = b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


@nb.njit(cache=True, inline="always")
def add_exact(limbs, x):
    """limbs += x exactly (x a finite float64)."""
    if x == 0.0:
        return
    m, e = math.frexp(x)
    M = np.int64(m * 9007199254740992.0)       # m * 2**53: an integer, |M| < 2**53
    q = e - 53 + OFFSET                         # bit position of M's LSB, >= 0
    sign = np.int64(1)
    if M < 0:
        sign = np.int64(-1)
        M = -M
    L = q >> 5
    sh = q & 31
    lo = (M & ((np.int64(1) << (32 - sh)) - 1)) << sh
    rest = M >> (32 - sh)
    limbs[L] += sign * lo
    limbs[L + 1] += sign * (rest & np.int64(0xFFFFFFFF))
    limbs[L + 2] += sign * (rest >> 32)


@nb.njit(cache=True, inline="always")
def _normalise(limbs):
    n = limbs.shape[0]
    for i in range(n - 1):
        c = limbs[i] >> 32
        limbs[i] -= c << 32
        limbs[i + 1] += c


@nb.njit(cache=True, inline="always")
def _bit_length(x):
    n = 0
    while x:
        x >>= 1
        n += 1
    return n


@nb.njit(cache=True)
def round_limbs(limbs):
    """The register's exact value rounded half-even to float64 (the limbs are consumed)."""
    n = limbs.shape[0]
    _normalise(limbs)
    neg = limbs[n - 1] < 0
    if neg:
        for i in range(n):
            limbs[i] = -limbs[i]
        _normalise(limbs)
    h = n - 1
    while h >= 0 and limbs[h] == 0:
        h -= 1
    if h < 0:
        return 0.0
    T = 32 * h + _bit_length(limbs[h])         # the integer has T bits
    shift = T - 62                             # W = the top 62 bits, value = W * 2**shift + rest
    W = np.int64(0)
    sticky = False
    for i in range(h + 1):
        base = 32 * i
        if base >= shift:
            W += limbs[i] << (base - shift)
        elif base + 32 > shift:
            W += limbs[i] >> (shift - base)
            if limbs[i] & ((np.int64(1) << (shift - base)) - 1):
                sticky = True
        elif limbs[i] != 0:
            sticky = True
    q = W >> 9                                 # 53 bits
    r = W & 511
    if r > 256 or (r == 256 and (sticky or (q & 1) == 1)):
        q += 1
    v = math.ldexp(float(q), shift + 9 - OFFSET)
    return -v if neg else v


@nb.njit(cache=True, parallel=True)
def exact_gemm_sums(A, Bt, bias, has_bias, out):
    """out[i, j] = round_to_float64(bias[i, j] + sum_k A[i, k] * Bt[j, k]) with every product and sum exact."""
    M, K = A.shape
    N = Bt.shape[0]
    for i in nb.prange(M):
        limbs = np.zeros(NLIMBS, dtype=np.int64)
        for j in range(N):
            limbs[:] = 0
            if has_bias:
                add_exact(limbs, bias[i, j])
            for k in range(K):
                a = A[i, k]
                b = Bt[j, k]
                p = a * b
                if p != 0.0:
                    add_exact(limbs, p)
                    add_exact(limbs, two_product_error(a, b, p))
            out[i, j] = round_limbs(limbs)
