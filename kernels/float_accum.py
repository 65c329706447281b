"""Floating-point MAC kernels: exact (or rounded) products and an accumulator that rounds every addition.

Every addition acc + p is split exactly into s + t by TwoSum (s = fl(acc + p), t the error-free
residual), and ``round_step`` rounds the exact sum to the register's format, so each addition is
correctly rounded for every rounding mode. Overflow is decided on the value rounded onto an unbounded
exponent grid, then replaced by inf / NaN / the largest finite value.

Configuration travels as typed NamedTuples (``FloatReg`` for one float register's rounding step,
``FloatConfig`` for a whole datapath); kernels see numbers only. Random bits for stochastic rounding come
from ``kernels.random.random_bits`` with stream = output index (i * N + j) and counter = the addition's
position in that output's schedule, so a result does not depend on thread scheduling.

Each order has its own kernels (``*_seq``, ``*_chunked``, ``*_tree``), so a datapath compiles only the
schedule it uses; the caller dispatches on ``FloatConfig.order``.
"""
import math
from typing import NamedTuple

import numba as nb
import numpy as np

from .int_gemm import config_from_array, dot as int_dot
from .quantize import OVF_KEEP, OVF_NAN, OVF_SATURATE, round_integer, round_to_float
from .random import random_bits
from .rounding import CEIL, FLOOR, JAM, STOCHASTIC, TOWARD_ZERO

SEQUENTIAL, TREE, CHUNKED = 0, 1, 2
PRODUCT_STREAM = np.int64(1) << 40   # product roundings draw from stream + 2**40
BIAS_COUNTER = np.int64(1) << 40     # a bias added after the reduction draws counter 2**40


class FloatReg(NamedTuple):
    """One float register's rounding step, as numbers (build it with ``float_reg``, which fixes the types
    so that every datapath compiles the same signature)."""
    man: int            # mantissa (fraction) bits
    emin: int           # exponent of the smallest normal
    subnormals: bool
    mode: int           # kernels.rounding mode number
    overflow: int       # kernels.quantize OVF_* code
    flush: bool         # flush subnormal inputs and results to zero (sign kept)
    random_bits: int    # r, for STOCHASTIC (1 otherwise)
    seed: int           # of the counter-based random bits (0 unless stochastic)
    max_finite: float
    min_normal: float


class FloatOptions(NamedTuple):
    """What is not a register: the order, and two facts the caller established."""
    order: int              # SEQUENTIAL, TREE or CHUNKED
    lanes: int              # CHUNKED: number of lanes
    tree_combine: bool      # CHUNKED: lanes combined by the adder tree (else sequentially)
    rounded_product: bool   # False: exact products (the product register is unused)
    fp32_rne: bool          # the accumulator is IEEE binary32, half even, inf on overflow, no FTZ


class FloatConfig(NamedTuple):
    """A float datapath for the kernels. Parallel kernels take its three parts as separate arguments
    (Numba's parallel loops take flat tuples only) and rebuild it inside the loop:
    ``kernel(..., *cfg, ...)``."""
    acc: FloatReg
    product: FloatReg
    options: FloatOptions


def float_reg(man, emin, subnormals, mode, overflow, flush, random_bits, seed, max_finite, min_normal):
    """A ``FloatReg`` with every field of its one kernel type (int64, bool, float64)."""
    return FloatReg(int(man), int(emin), bool(subnormals), int(mode), int(overflow), bool(flush),
                    int(random_bits), int(seed), float(max_finite), float(min_normal))


NO_REG = float_reg(0, 0, False, 0, OVF_KEEP, False, 1, 0, 0.0, 0.0)   # the unused product register


def float_config(acc, product=None, order=SEQUENTIAL, lanes=1, tree_combine=False, fp32_rne=False):
    """A ``FloatConfig`` with every field of its one kernel type."""
    options = FloatOptions(int(order), int(lanes), bool(tree_combine), product is not None, bool(fp32_rne))
    return FloatConfig(acc, NO_REG if product is None else product, options)


@nb.njit(cache=True, inline="always")
def two_sum(a, b):
    """Knuth's TwoSum: s = fl(a + b) and the exact residual e with a + b == s + e (no overflow)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


@nb.njit(cache=True)
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


@nb.njit(cache=True)
def round_step(x, tail, reg, stream, ctr):
    """The float rounding step every float register shares (accumulator additions, product registers,
    block additions, the tensor-scale epilogue): the exact value x + tail (|tail| <= ulp(x)/2) rounded
    to ``reg`` with ``reg.mode`` (STOCHASTIC draws r bits at (reg.seed, stream, ctr)); returns (value,
    1 if this rounding overflowed else 0). ``reg.flush`` flushes results below the smallest normal."""
    rnd = np.int64(0)
    if reg.mode == STOCHASTIC:
        rnd = random_bits(reg.seed, stream, ctr, reg.random_bits)
    finite = x - x == 0.0
    # one call with run-time (not literal) arguments: round_to_float compiles once, for the signature the
    # quantizer uses too, instead of once per constant passed here
    ovf = np.int64(OVF_KEEP) if finite else reg.overflow
    y = round_to_float(x, tail if finite else 0.0, reg.man, reg.emin, reg.max_finite, reg.subnormals,
                       np.bool_(True), reg.mode, ovf, rnd, reg.random_bits)
    if not finite:                  # inf or NaN comes through as the format stores it
        return y, 0
    of = 0
    if abs(y) > reg.max_finite:
        of = 1
        if reg.overflow != OVF_KEEP:
            y = overflow_action(y, y < 0, reg.max_finite, reg.mode, reg.overflow)
    if reg.flush and y != 0.0 and abs(y) < reg.min_normal:
        y = math.copysign(0.0, y)
    return y, of


@nb.njit(cache=True)
def fadd(acc, p, cfg, stream, ctr):
    """One accumulator addition acc + p, correctly rounded: returns (register value, overflowed)."""
    reg = cfg.acc
    if reg.flush:
        if abs(acc) < reg.min_normal:
            acc = math.copysign(0.0, acc)
        if abs(p) < reg.min_normal:
            p = math.copysign(0.0, p)
    s, t = two_sum(acc, p)
    if not (s - s == 0.0):
        t = 0.0
    elif t == 0.0 and cfg.options.fp32_rne:
        # the exact sum is a float64: the CPU's own binary32 conversion rounds it correctly (half even,
        # subnormals, overflow to inf)
        y = np.float64(np.float32(s))
        return y, (1 if (y - y != 0.0) else 0)
    y, of = round_step(s, t, reg, stream, ctr)
    if not (acc - acc == 0.0) or not (p - p == 0.0):
        of = 0                      # an inf/NaN operand is not an overflow of this adder
    elif not (y - y == 0.0):
        of = 1
    return y, of


@nb.njit(cache=True)
def fproduct(a, b, cfg, stream, k):
    """The multiplier: the exact product (the caller proved it fits float64), or that product rounded
    to the product register's format (an unfused multiply-add)."""
    p = a * b
    if cfg.options.rounded_product:
        p, _ = round_step(p, 0.0, cfg.product, stream + PRODUCT_STREAM, k)
    return p


@nb.njit(cache=True, inline="always")
def _pairwise(reg, n, cfg, stream, ctr, trace, record, t):
    """A pairwise adder tree over reg[:n]: each level adds neighbours with rounded additions (counters
    ctr, ctr + 1, ...); an odd last term passes through to the next level unrounded. The root ends in
    reg[0]; each adder's output goes to trace[t...]. Returns (overflow count, next ctr, next t)."""
    nov = 0
    while n > 1:
        for q in range(n // 2):
            y, of = fadd(reg[2 * q], reg[2 * q + 1], cfg, stream, ctr)
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
def dot_seq(a, b, init, cfg, stream, trace, record, out):
    """One output in SEQUENTIAL order: acc = init, acc += p[k]. Returns the accumulator register;
    out[0] = additions that overflowed, out[1] = the number of trace entries."""
    K = a.shape[0]
    nov = 0
    acc = init
    if record:
        trace[0] = acc
    for k in range(K):
        p = fproduct(a[k], b[k], cfg, stream, k)
        acc, of = fadd(acc, p, cfg, stream, k)
        nov += of
        if record:
            trace[k + 1] = acc
    out[0] = nov
    out[1] = K + 1
    return acc


@nb.njit(cache=True)
def dot_chunked(a, b, init, cfg, stream, trace, record, out):
    """One output in CHUNKED order: lanes over contiguous chunks of ceil(K / lanes) (lane 0 starts at
    init), stepped cycle by cycle, then a sequential or tree combine (as the integer datapath)."""
    K = a.shape[0]
    nov = 0
    ctr = 0
    P = cfg.options.lanes
    C = (K + P - 1) // P
    reg = np.zeros(P, dtype=np.float64)
    reg[0] = init
    t = 0
    for c in range(C):
        for l in range(P):
            k = l * C + c
            if k < K:
                p = fproduct(a[k], b[k], cfg, stream, k)
                y, of = fadd(reg[l], p, cfg, stream, ctr)
                ctr += 1
                reg[l] = y
                nov += of
            if record:
                trace[t] = reg[l]
            t += 1
    if not cfg.options.tree_combine:
        acc = reg[0]
        for l in range(1, P):
            acc, of = fadd(acc, reg[l], cfg, stream, ctr)
            ctr += 1
            nov += of
            if record:
                trace[t] = acc
            t += 1
    else:
        of, ctr, t = _pairwise(reg, P, cfg, stream, ctr, trace, record, t)
        nov += of
        acc = reg[0]
    out[0] = nov
    out[1] = t
    return acc


@nb.njit(cache=True)
def dot_tree(a, b, init, cfg, stream, trace, record, out):
    """One output in TREE order: pairwise levels over the products (an odd last term passes through
    unrounded), then init + root."""
    K = a.shape[0]
    reg = np.zeros(max(K, 1), dtype=np.float64)
    for k in range(K):
        reg[k] = fproduct(a[k], b[k], cfg, stream, k)
    nov, ctr, t = _pairwise(reg, K, cfg, stream, 0, trace, record, 0)
    acc, of = fadd(init, reg[0], cfg, stream, ctr)
    nov += of
    if record:
        trace[t] = acc
    out[0] = nov
    out[1] = t + 1
    return acc


# The per-output reference kernels, one per order: the listed outputs (rows[q], cols[q]) of
# A (M, K) @ B (K, N), B given transposed (N, K), one dependent chain per output, parallel over outputs;
# the configuration as a FloatConfig's three parts (acc_reg, prod_reg, options).
# With ``has_post`` the bias ``post`` is added after the reduction by one more rounded addition. With a
# trace buffer of more than one entry the (single) listed output's per-cycle register values are written
# there; the kernel returns the number of entries. Used for a GEMM's reference run (every output), to
# recount outputs the vector kernels left non-finite, and for traces.
@nb.njit(cache=True, inline="always")
def _finish(acc, st, post, has_post, cfg, i, j, idx, acc_out, nov_out):
    if has_post:
        acc, of = fadd(acc, post[i, j], cfg, idx, BIAS_COUNTER)
        st[0] += of
    acc_out[i, j] = acc
    nov_out[i, j] = st[0]


@nb.njit(cache=True, parallel=True)
def outputs_seq(A, Bt, init, post, has_post, acc_reg, prod_reg, options, rows, cols, acc_out, nov_out, trace):
    """SEQ order for the listed outputs (see above)."""
    N = Bt.shape[0]
    if trace.shape[0] > 1:
        i, j = rows[0], cols[0]
        idx = np.int64(i) * N + j
        st = np.zeros(2, dtype=np.int64)
        cfg = FloatConfig(acc_reg, prod_reg, options)
        acc = dot_seq(A[i], Bt[j], init[i, j], cfg, idx, trace, True, st)
        _finish(acc, st, post, has_post, cfg, i, j, idx, acc_out, nov_out)
        return st[1]
    for q in nb.prange(rows.shape[0]):
        i, j = rows[q], cols[q]
        idx = np.int64(i) * N + j
        st = np.zeros(2, dtype=np.int64)
        cfg = FloatConfig(acc_reg, prod_reg, options)
        acc = dot_seq(A[i], Bt[j], init[i, j], cfg, idx, trace, False, st)
        _finish(acc, st, post, has_post, cfg, i, j, idx, acc_out, nov_out)
    return np.int64(0)


@nb.njit(cache=True, parallel=True)
def outputs_chunked(A, Bt, init, post, has_post, acc_reg, prod_reg, options, rows, cols, acc_out, nov_out, trace):
    """CHUNKED order for the listed outputs (see above)."""
    N = Bt.shape[0]
    if trace.shape[0] > 1:
        i, j = rows[0], cols[0]
        idx = np.int64(i) * N + j
        st = np.zeros(2, dtype=np.int64)
        cfg = FloatConfig(acc_reg, prod_reg, options)
        acc = dot_chunked(A[i], Bt[j], init[i, j], cfg, idx, trace, True, st)
        _finish(acc, st, post, has_post, cfg, i, j, idx, acc_out, nov_out)
        return st[1]
    for q in nb.prange(rows.shape[0]):
        i, j = rows[q], cols[q]
        idx = np.int64(i) * N + j
        st = np.zeros(2, dtype=np.int64)
        cfg = FloatConfig(acc_reg, prod_reg, options)
        acc = dot_chunked(A[i], Bt[j], init[i, j], cfg, idx, trace, False, st)
        _finish(acc, st, post, has_post, cfg, i, j, idx, acc_out, nov_out)
    return np.int64(0)


@nb.njit(cache=True, parallel=True)
def outputs_tree(A, Bt, init, post, has_post, acc_reg, prod_reg, options, rows, cols, acc_out, nov_out, trace):
    """TREE order for the listed outputs (see above)."""
    N = Bt.shape[0]
    if trace.shape[0] > 1:
        i, j = rows[0], cols[0]
        idx = np.int64(i) * N + j
        st = np.zeros(2, dtype=np.int64)
        cfg = FloatConfig(acc_reg, prod_reg, options)
        acc = dot_tree(A[i], Bt[j], init[i, j], cfg, idx, trace, True, st)
        _finish(acc, st, post, has_post, cfg, i, j, idx, acc_out, nov_out)
        return st[1]
    for q in nb.prange(rows.shape[0]):
        i, j = rows[q], cols[q]
        idx = np.int64(i) * N + j
        st = np.zeros(2, dtype=np.int64)
        cfg = FloatConfig(acc_reg, prod_reg, options)
        acc = dot_tree(A[i], Bt[j], init[i, j], cfg, idx, trace, False, st)
        _finish(acc, st, post, has_post, cfg, i, j, idx, acc_out, nov_out)
    return np.int64(0)


OUTPUT_KERNELS = {SEQUENTIAL: outputs_seq, CHUNKED: outputs_chunked, TREE: outputs_tree}


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
