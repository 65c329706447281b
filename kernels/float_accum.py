"""Floating-point MAC kernels: exact (or rounded) products and an accumulator that rounds every addition.

Every addition acc + p is split exactly into s + t by TwoSum (s = fl(acc + p), t the error-free
residual), and ``kernels.quantize.round_to_float(s, t, ...)`` rounds the exact sum to the accumulator's
format, so each addition is correctly rounded for every rounding mode. Overflow is decided on the value
rounded onto an unbounded exponent grid, then replaced by inf / NaN / the largest finite value.

Configuration travels as an int64 array ``cfg`` and a float64 array ``fv`` (indices below): kernels see
numbers only. Random bits for stochastic rounding come from ``kernels.random.random_bits`` with
stream = output index (i * N + j) and counter = the addition's position in that output's schedule, so a
result does not depend on thread scheduling.
"""
import math

import numba as nb
import numpy as np

from .int_gemm import config_from_array, dot as int_dot
from .quantize import OVF_KEEP, OVF_NAN, OVF_SATURATE, round_integer, round_to_float
from .random import random_bits
from .rounding import CEIL, FLOOR, JAM, STOCHASTIC, TOWARD_ZERO

# cfg layout (int64)
ACC_MAN, ACC_EMIN, ACC_SUB, ACC_MODE, ACC_OVF, ACC_FTZ, ACC_R = 0, 1, 2, 3, 4, 5, 6
PROD_ON, PROD_MAN, PROD_EMIN, PROD_SUB, PROD_MODE, PROD_OVF, PROD_R = 7, 8, 9, 10, 11, 12, 13
ORDER, LANES, COMBINE, SEED = 14, 15, 16, 17
ACC_FP32_RNE = 18   # 1: the accumulator is IEEE binary32, half even, inf on overflow, no FTZ (fast path)
CFG_SIZE = 19
# fv layout (float64)
ACC_MAX, ACC_MIN_NORMAL, PROD_MAX = 0, 1, 2
FV_SIZE = 3

SEQUENTIAL, TREE, CHUNKED = 0, 1, 2
PRODUCT_STREAM = np.int64(1) << 40   # product roundings draw from stream + 2**40
BIAS_COUNTER = np.int64(1) << 40     # a bias added after the reduction draws counter 2**40


@nb.njit(cache=True, inline="always")
def two_sum(a, b):
    """Knuth's TwoSum: s = fl(a + b) and the exact residual e with a + b == s + e (no overflow)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


@nb.njit(cache=True, inline="always")
def overflow_action(y, neg, max_finite, mode, ovf):
    """What a float register stores for a rounded value beyond its largest finite value (IEEE 754 §7.4:
    modes rounding toward zero for that sign give the largest finite value)."""
    if ovf == OVF_SATURATE:
        return -max_finite if neg else max_finite
    toward_zero = mode == TOWARD_ZERO or mode == JAM or (mode == FLOOR and not neg) or (mode == CEIL and neg)
    if toward_zero:
        return -max_finite if neg else max_finite
    if ovf == OVF_NAN:
        return np.nan
    return -np.inf if neg else np.inf


@nb.njit(cache=True, inline="always")
def round_exact(x, tail, man, emin, sub, max_finite, min_normal, mode, ovf, ftz, rnd, r):
    """Round the exact value x + tail (|tail| <= ulp(x)/2) to a float register: returns (value,
    1 if this rounding overflowed else 0). ``ftz`` flushes results below the smallest normal to zero."""
    if not (x - x == 0.0):          # inf or NaN comes through as the format stores it
        return round_to_float(x, 0.0, man, emin, max_finite, sub != 0, True, mode, ovf, rnd, r), 0
    y = round_to_float(x, tail, man, emin, max_finite, sub != 0, True, mode, OVF_KEEP, rnd, r)
    of = 0
    if abs(y) > max_finite:
        of = 1
        if ovf != OVF_KEEP:
            y = overflow_action(y, y < 0, max_finite, mode, ovf)
    if ftz != 0 and y != 0.0 and abs(y) < min_normal:
        y = math.copysign(0.0, y)
    return y, of


@nb.njit(cache=True, inline="always")
def fadd(acc, p, cfg, fv, stream, ctr):
    """One accumulator addition acc + p, correctly rounded: returns (register value, overflowed)."""
    if cfg[ACC_FTZ] != 0:
        if abs(acc) < fv[ACC_MIN_NORMAL]:
            acc = math.copysign(0.0, acc)
        if abs(p) < fv[ACC_MIN_NORMAL]:
            p = math.copysign(0.0, p)
    s, t = two_sum(acc, p)
    if not (s - s == 0.0):
        t = 0.0
    elif t == 0.0 and cfg[ACC_FP32_RNE] != 0:
        # the exact sum is a float64: the CPU's own binary32 conversion rounds it correctly (half even,
        # subnormals, overflow to inf)
        y = np.float64(np.float32(s))
        return y, (1 if (y - y != 0.0) else 0)
    mode = cfg[ACC_MODE]
    rnd = np.int64(0)
    r = cfg[ACC_R]
    if mode == STOCHASTIC:
        rnd = random_bits(cfg[SEED], stream, ctr, r)
    y, of = round_exact(s, t, cfg[ACC_MAN], cfg[ACC_EMIN], cfg[ACC_SUB], fv[ACC_MAX], fv[ACC_MIN_NORMAL],
                        mode, cfg[ACC_OVF], cfg[ACC_FTZ], rnd, r)
    if not (acc - acc == 0.0) or not (p - p == 0.0):
        of = 0                      # an inf/NaN operand is not an overflow of this adder
    elif not (y - y == 0.0):
        of = 1
    return y, of


@nb.njit(cache=True, inline="always")
def fproduct(a, b, cfg, fv, stream, k):
    """The multiplier: the exact product (the caller proved it fits float64), or that product rounded
    to the product register's format (an unfused multiply-add)."""
    p = a * b
    if cfg[PROD_ON] != 0:
        mode = cfg[PROD_MODE]
        r = cfg[PROD_R]
        rnd = np.int64(0)
        if mode == STOCHASTIC:
            rnd = random_bits(cfg[SEED], stream + PRODUCT_STREAM, k, r)
        p, _ = round_exact(p, 0.0, cfg[PROD_MAN], cfg[PROD_EMIN], cfg[PROD_SUB], fv[PROD_MAX], 0.0,
                           mode, cfg[PROD_OVF], 0, rnd, r)
    return p


@nb.njit(cache=True, inline="always")
def _pairwise(reg, n, cfg, fv, stream, ctr, trace, record, t):
    """A pairwise adder tree over reg[:n]: each level adds neighbours with rounded additions (counters
    ctr, ctr + 1, ...); an odd last term passes through to the next level unrounded. The root ends in
    reg[0]; each adder's output goes to trace[t...]. Returns (overflow count, next ctr, next t)."""
    nov = 0
    while n > 1:
        for q in range(n // 2):
            y, of = fadd(reg[2 * q], reg[2 * q + 1], cfg, fv, stream, ctr)
            ctr += 1
            nov += of
            reg[q] = y
            if record:
                trace[t] = y
            t += 1
        if n % 2 == 1:
            reg[n // 2] = reg[n - 1]
        n = (n + 1) // 2
    return nov, ctr, t


@nb.njit(cache=True)
def float_dot(a, b, init, cfg, fv, stream, trace, record, out):
    """One output: returns the accumulator register; out[0] = additions that overflowed, out[1] = the
    number of trace entries. Orders (as the integer datapath): SEQUENTIAL acc = init, acc += p[k];
    CHUNKED lanes over contiguous chunks of ceil(K / lanes) (lane 0 starts at init), stepped cycle by
    cycle, then a sequential or tree combine; TREE pairwise levels (an odd last term passes through
    unrounded), then init + root."""
    K = a.shape[0]
    order = cfg[ORDER]
    nov = 0
    ctr = 0
    if order == SEQUENTIAL:
        acc = init
        if record:
            trace[0] = acc
        for k in range(K):
            p = fproduct(a[k], b[k], cfg, fv, stream, k)
            acc, of = fadd(acc, p, cfg, fv, stream, ctr)
            ctr += 1
            nov += of
            if record:
                trace[k + 1] = acc
        out[0] = nov
        out[1] = K + 1
        return acc
    if order == CHUNKED:
        P = cfg[LANES]
        C = (K + P - 1) // P
        reg = np.zeros(P, dtype=np.float64)
        reg[0] = init
        t = 0
        for c in range(C):
            for l in range(P):
                k = l * C + c
                if k < K:
                    p = fproduct(a[k], b[k], cfg, fv, stream, k)
                    y, of = fadd(reg[l], p, cfg, fv, stream, ctr)
                    ctr += 1
                    reg[l] = y
                    nov += of
                if record:
                    trace[t] = reg[l]
                t += 1
        if cfg[COMBINE] == 0:
            acc = reg[0]
            for l in range(1, P):
                acc, of = fadd(acc, reg[l], cfg, fv, stream, ctr)
                ctr += 1
                nov += of
                if record:
                    trace[t] = acc
                t += 1
        else:
            of, ctr, t = _pairwise(reg, P, cfg, fv, stream, ctr, trace, record, t)
            nov += of
            acc = reg[0]
        out[0] = nov
        out[1] = t
        return acc
    # TREE
    reg = np.zeros(max(K, 1), dtype=np.float64)
    for k in range(K):
        reg[k] = fproduct(a[k], b[k], cfg, fv, stream, k)
    of, ctr, t = _pairwise(reg, K, cfg, fv, stream, ctr, trace, record, 0)
    nov += of
    acc, of = fadd(init, reg[0], cfg, fv, stream, ctr)
    nov += of
    if record:
        trace[t] = acc
    out[0] = nov
    out[1] = t + 1
    return acc


@nb.njit(cache=True, parallel=True)
def float_gemm_kernel(A, Bt, init, post, has_post, cfg, fv, acc_out, nov_out):
    """All outputs of A (M, K) @ B (K, N), B given transposed (N, K); parallel over outputs.
    With ``has_post`` the bias ``post`` is added after the reduction by one more rounded addition."""
    M = A.shape[0]
    N = Bt.shape[0]
    dummy = np.empty(1, dtype=np.float64)
    for idx in nb.prange(M * N):
        i = idx // N
        j = idx % N
        st = np.zeros(2, dtype=np.int64)
        acc = float_dot(A[i], Bt[j], init[i, j], cfg, fv, np.int64(idx), dummy, False, st)
        if has_post:
            acc, of = fadd(acc, post[i, j], cfg, fv, np.int64(idx), BIAS_COUNTER)
            st[0] += of
        acc_out[i, j] = acc
        nov_out[i, j] = st[0]


@nb.njit(cache=True)
def float_trace_one(a, b, init, cfg, fv, stream, trace):
    """Per-cycle register values of one output (same arithmetic as float_gemm_kernel); returns the
    number of entries written."""
    st = np.zeros(2, dtype=np.int64)
    float_dot(a, b, init, cfg, fv, stream, trace, True, st)
    return st[1]


# --------------------------------------------------------------------------------------------------
# Wide fixed-point (Kulisch) accumulation of exact float products
# --------------------------------------------------------------------------------------------------
@nb.njit(cache=True, inline="always")
def align_product(p, frac, mode):
    """The exact float64 product p as an integer number of accumulator LSBs (2**-frac), the dropped
    bits rounded with ``mode`` (the alignment shifter). The caller proved |p| * 2**frac < 2**62."""
    if p == 0.0:
        return np.int64(0)
    m, e = math.frexp(p)
    M = np.int64(m * 9007199254740992.0)     # p == M * 2**(e - 53) exactly
    sh = -(e - 53 + frac)                    # bits to drop
    if sh <= 0:
        return M << (-sh)
    return round_integer(M, sh, mode, np.int64(0), 62)


@nb.njit(cache=True, parallel=True)
def kulisch_gemm_kernel(A, Bt, init, frac, align_mode, icfg, levels, acc_out, nov_out, max_out, min_out,
                        exact_out):
    """Float operands, exact products aligned to a wide fixed-point accumulator, then the integer
    datapath's own order/overflow machinery (``kernels.int_gemm.dot``) on the aligned products."""
    M = A.shape[0]
    N = Bt.shape[0]
    K = A.shape[1]
    dummy = np.empty(1, dtype=np.int64)
    for idx in nb.prange(M * N):
        i = idx // N
        j = idx % N
        pc = np.empty(K, dtype=np.int64)
        ones = np.ones(K, dtype=np.int64)
        for k in range(K):
            pc[k] = align_product(A[i, k] * Bt[j, k], frac, align_mode)
        st = np.empty(4, dtype=np.int64)
        acc, nov = int_dot(pc, ones, init[i, j], config_from_array(icfg), levels, dummy, False, st)
        acc_out[i, j] = acc
        nov_out[i, j] = nov
        max_out[i, j] = st[0]
        min_out[i, j] = st[1]
        exact_out[i, j] = st[2]


@nb.njit(cache=True)
def kulisch_trace_one(a, b, init, frac, align_mode, icfg, levels, trace):
    K = a.shape[0]
    pc = np.empty(K, dtype=np.int64)
    for k in range(K):
        pc[k] = align_product(a[k] * b[k], frac, align_mode)
    st = np.empty(4, dtype=np.int64)
    int_dot(pc, np.ones(K, dtype=np.int64), init, config_from_array(icfg), levels, trace, True, st)
    return st[3]
