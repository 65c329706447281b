"""Integer MAC-array kernels: one output element = a dot product through the product register, the
alignment shifter and an accumulator that applies its overflow mode after every single addition.

Configuration travels as typed named tuples of int64 scalars (``IntConfig`` for the general kernel,
``Register`` for the specialised sequential ones), so kernels see numbers only and read them by name.
Every exact partial sum is tracked too (the caller has proved it fits int64), for the statistics.
"""
from typing import NamedTuple

import numba as nb
import numpy as np

from .rounding import SATURATE_ZERO, WRAP, overflow, shift_round, wrap

SEQUENTIAL, TREE, CHUNKED = 0, 1, 2


class IntConfig(NamedTuple):
    """The MAC datapath of one output, as the general kernel ``dot`` reads it (all int64).

    Product register (``p_bits`` = 0: none): cut by ``p_shift`` bits with rounding ``p_mode``, range
    [p_lo, p_hi], overflow ``p_ovf``. Alignment to the accumulator: ``a_shift`` bits, rounding ``a_mode``.
    Accumulator: ``bits`` wide, ``signed`` (0/1), range [lo, hi], overflow ``ovf``. Order: ``order``
    (SEQUENTIAL, TREE, CHUNKED), ``lanes`` and ``combine`` (0 sequential, 1 tree) for CHUNKED."""
    p_shift: int
    p_bits: int
    p_signed: int
    p_lo: int
    p_hi: int
    p_mode: int
    p_ovf: int
    a_shift: int
    a_mode: int
    bits: int
    signed: int
    lo: int
    hi: int
    ovf: int
    order: int
    lanes: int
    combine: int


class Register(NamedTuple):
    """The specialised sequential kernels' datapath (all int64): exact products aligned by a left
    ``shift``, one accumulator ``bits`` (< 64) wide, ``signed`` (0/1), range [lo, hi], overflow ``ovf``."""
    shift: int
    bits: int
    signed: int
    lo: int
    hi: int
    ovf: int


# the index layout of the int64 array form of IntConfig (``config_from_array``), for callers that keep one
P_SHIFT, P_BITS, P_SIGNED, P_LO, P_HI, P_MODE, P_OVF = 0, 1, 2, 3, 4, 5, 6
A_SHIFT, A_MODE = 7, 8
BITS, SIGNED, LO, HI, OVF = 9, 10, 11, 12, 13
ORDER, LANES, COMBINE = 14, 15, 16
CFG_SIZE = 17


@nb.njit(cache=True)
def config_from_array(c):
    """IntConfig from its int64 array form (indices above)."""
    return IntConfig(c[P_SHIFT], c[P_BITS], c[P_SIGNED], c[P_LO], c[P_HI], c[P_MODE], c[P_OVF], c[A_SHIFT],
                     c[A_MODE], c[BITS], c[SIGNED], c[LO], c[HI], c[OVF], c[ORDER], c[LANES], c[COMBINE])


@nb.njit(cache=True)
def register_range(bits, signed, symmetric):
    """(lo, hi) of a ``bits``-wide register (bits <= 64 signed, <= 63 unsigned): two's complement when
    ``signed``, [-hi, hi] when also ``symmetric`` (a saturate_symmetric register), [0, 2**bits - 1]
    unsigned. The one definition of a register's range on the integer side."""
    if signed:
        hi = (np.int64(1) << (bits - 1)) - 1 if bits < 64 else np.int64(9223372036854775807)
        lo = -hi if symmetric else -hi - 1
    else:
        lo = np.int64(0)
        hi = (np.int64(1) << bits) - 1
    return lo, hi


_range = register_range   # the former name, still imported by the float engine's Kulisch path


@nb.njit(cache=True, inline="always")
def product(a, b, cfg):
    """Multiplier -> optional product register (cut with rounding, then overflow) -> alignment shifter."""
    p = a * b
    if cfg.p_bits > 0:
        s = cfg.p_shift
        if s > 0:
            p = shift_round(p, s, cfg.p_mode, 0)
        elif s < 0:
            p = p << (-s)
        if p < cfg.p_lo or p > cfg.p_hi:
            p = overflow(p, cfg.p_lo, cfg.p_hi, cfg.p_bits, cfg.p_signed != 0, cfg.p_ovf)
    s = cfg.a_shift
    if s > 0:
        p = shift_round(p, s, cfg.a_mode, 0)
    elif s < 0:
        p = p << (-s)
    return p


@nb.njit(cache=True, inline="always")
def add(acc, p, bits, signed, lo, hi, ovf):
    """One adder of a ``bits``-wide register with range [lo, hi]: returns (register value, overflowed)."""
    s = acc + p   # 64 bits wide: wraps modulo 2**64 in int64
    if bits >= 64 and ((acc >= 0 and p >= 0 and s < 0) or (acc < 0 and p < 0 and s >= 0)):
        if ovf == WRAP:
            return s, 1
        if ovf == SATURATE_ZERO:
            return np.int64(0), 1
        return (hi if p > 0 else lo), 1
    if s < lo or s > hi:      # one overflow stage (inlined once per adder, not once per width case)
        return overflow(s, lo, hi, bits, signed, ovf), 1
    return s, 0


@nb.njit(cache=True, inline="always")
def _pairwise(reg, ex, n, levels, bits, signed, lo, hi, ovf, trace, record, t, mx, mn):
    """A pairwise adder tree over reg[:n] (their exact values in ex[:n]): level l adds neighbours in a
    register of levels[l] bits (the accumulator's width beyond the given levels); an odd last term passes
    through to the next level. The root ends in reg[0] / ex[0]; each adder's output goes to trace[t...].
    Returns (overflow count, next t, max and min exact partial sums)."""
    nov = 0
    level = 0
    while n > 1:
        lb = bits
        llo, lhi = lo, hi
        if level < levels.shape[0]:
            lb = levels[level]
            llo, lhi = register_range(lb, signed, lo == -hi and signed)
        for q in range(n // 2):
            r, of = add(reg[2 * q], reg[2 * q + 1], lb, signed, llo, lhi, ovf)
            nov += of
            e = ex[2 * q] + ex[2 * q + 1]
            reg[q] = r
            ex[q] = e
            mx, mn = max(mx, e), min(mn, e)
            if record:
                trace[t] = r
            t += 1
        if n % 2 == 1:
            reg[n // 2] = reg[n - 1]
            ex[n // 2] = ex[n - 1]
        n = (n + 1) // 2
        level += 1
    return nov, t, mx, mn


@nb.njit(cache=True)
def dot_seq(a, b, init, cfg, levels, trace, record, stats):
    """One output in the SEQUENTIAL order (acc = init, acc += p[k]): returns (accumulator, overflow count);
    stats = (max exact partial sum, min exact partial sum, exact final sum, cycles). ``trace`` receives the
    register values in cycle order when ``record``. ``levels`` is unused (one signature for all orders)."""
    K = a.shape[0]
    bits, signed, lo, hi, ovf = cfg.bits, cfg.signed != 0, cfg.lo, cfg.hi, cfg.ovf
    nov = 0
    mx = init if init > 0 else np.int64(0)
    mn = init if init < 0 else np.int64(0)
    acc = init
    exact = init
    if record:
        trace[0] = acc
    for k in range(K):
        p = product(a[k], b[k], cfg)
        acc, of = add(acc, p, bits, signed, lo, hi, ovf)
        nov += of
        exact += p
        mx, mn = max(mx, exact), min(mn, exact)
        if record:
            trace[k + 1] = acc
    stats[0] = mx
    stats[1] = mn
    stats[2] = exact
    stats[3] = K + 1
    return acc, nov


@nb.njit(cache=True)
def dot_chunked(a, b, init, cfg, levels, trace, record, stats):
    """dot_seq for the CHUNKED order: ``cfg.lanes`` lanes over contiguous chunks (lane 0 starts at init),
    then a sequential (``cfg.combine`` 0) or tree (1) combine of the lanes at the accumulator's width."""
    K = a.shape[0]
    bits, signed, lo, hi, ovf = cfg.bits, cfg.signed != 0, cfg.lo, cfg.hi, cfg.ovf
    nov = 0
    mx = init if init > 0 else np.int64(0)
    mn = init if init < 0 else np.int64(0)
    P = cfg.lanes
    C = (K + P - 1) // P
    reg = np.zeros(P, dtype=np.int64)
    ex = np.zeros(P, dtype=np.int64)
    reg[0] = init
    ex[0] = init
    t = 0
    for c in range(C):
        for l in range(P):
            k = l * C + c
            if k < K and c < C:
                p = product(a[k], b[k], cfg)
                r, of = add(reg[l], p, bits, signed, lo, hi, ovf)
                reg[l] = r
                nov += of
                ex[l] += p
                mx, mn = max(mx, ex[l]), min(mn, ex[l])
            if record:
                trace[t] = reg[l]
            t += 1
    if cfg.combine == 0:
        acc = reg[0]
        exact = ex[0]
        for l in range(1, P):
            acc, of = add(acc, reg[l], bits, signed, lo, hi, ovf)
            nov += of
            exact += ex[l]
            mx, mn = max(mx, exact), min(mn, exact)
            if record:
                trace[t] = acc
            t += 1
    else:
        of, t, mx, mn = _pairwise(reg, ex, P, levels[:0], bits, signed, lo, hi, ovf, trace, record, t, mx, mn)
        nov += of
        acc = reg[0]
        exact = ex[0]
    stats[0] = mx
    stats[1] = mn
    stats[2] = exact
    stats[3] = t
    return acc, nov


@nb.njit(cache=True)
def dot_tree(a, b, init, cfg, levels, trace, record, stats):
    """dot_seq for the TREE order: pairwise levels over the products (level l ``levels[l]`` bits wide, the
    accumulator's width beyond; an odd last term passes through), the root added to init at the
    accumulator's width."""
    K = a.shape[0]
    bits, signed, lo, hi, ovf = cfg.bits, cfg.signed != 0, cfg.lo, cfg.hi, cfg.ovf
    mx = init if init > 0 else np.int64(0)
    mn = init if init < 0 else np.int64(0)
    reg = np.empty(max(K, 1), dtype=np.int64)
    ex = np.empty(max(K, 1), dtype=np.int64)
    for k in range(K):
        p = product(a[k], b[k], cfg)
        reg[k] = p
        ex[k] = p
        mx, mn = max(mx, p), min(mn, p)
    if K == 0:
        reg[0] = 0
        ex[0] = 0
    nov, t, mx, mn = _pairwise(reg, ex, K, levels, bits, signed, lo, hi, ovf, trace, record, 0, mx, mn)
    acc, of = add(init, reg[0], bits, signed, lo, hi, ovf)
    nov += of
    e = init + ex[0]
    mx, mn = max(mx, e), min(mn, e)
    if record:
        trace[t] = acc
    stats[0] = mx
    stats[1] = mn
    stats[2] = e
    stats[3] = t + 1
    return acc, nov


@nb.njit(cache=True)
def dot(a, b, init, cfg, levels, trace, record, stats):
    """One output in any order (``cfg.order``: dot_seq, dot_chunked or dot_tree). Compiles all three; the
    GEMM kernels below call their own order's only."""
    if cfg.order == SEQUENTIAL:
        return dot_seq(a, b, init, cfg, levels, trace, record, stats)
    if cfg.order == CHUNKED:
        return dot_chunked(a, b, init, cfg, levels, trace, record, stats)
    return dot_tree(a, b, init, cfg, levels, trace, record, stats)


# The GEMM kernels, one per order, each compiling only its order's dot; the engine picks one from the
# dictionaries after them by IntConfig.order.
@nb.njit(cache=True, parallel=True)
def gemm_seq(A, Bt, init, cfg, levels, acc_out, nov_out, max_out, min_out, exact_out):
    """All outputs of A (M,K) @ B (K,N), B given transposed (N,K), with their statistics; parallel over
    outputs. The SEQUENTIAL order (``gemm_chunked`` and ``gemm_tree`` likewise for theirs)."""
    N = Bt.shape[0]
    dummy = np.empty(1, dtype=np.int64)
    for idx in nb.prange(A.shape[0] * N):
        i, j = idx // N, idx % N
        st = np.empty(4, dtype=np.int64)
        acc_out[i, j], nov_out[i, j] = dot_seq(A[i], Bt[j], init[i, j], cfg, levels, dummy, False, st)
        max_out[i, j], min_out[i, j], exact_out[i, j] = st[0], st[1], st[2]


@nb.njit(cache=True, parallel=True)
def gemm_chunked(A, Bt, init, cfg, levels, acc_out, nov_out, max_out, min_out, exact_out):
    N = Bt.shape[0]
    dummy = np.empty(1, dtype=np.int64)
    for idx in nb.prange(A.shape[0] * N):
        i, j = idx // N, idx % N
        st = np.empty(4, dtype=np.int64)
        acc_out[i, j], nov_out[i, j] = dot_chunked(A[i], Bt[j], init[i, j], cfg, levels, dummy, False, st)
        max_out[i, j], min_out[i, j], exact_out[i, j] = st[0], st[1], st[2]


@nb.njit(cache=True, parallel=True)
def gemm_tree(A, Bt, init, cfg, levels, acc_out, nov_out, max_out, min_out, exact_out):
    N = Bt.shape[0]
    dummy = np.empty(1, dtype=np.int64)
    for idx in nb.prange(A.shape[0] * N):
        i, j = idx // N, idx % N
        st = np.empty(4, dtype=np.int64)
        acc_out[i, j], nov_out[i, j] = dot_tree(A[i], Bt[j], init[i, j], cfg, levels, dummy, False, st)
        max_out[i, j], min_out[i, j], exact_out[i, j] = st[0], st[1], st[2]


@nb.njit(cache=True, parallel=True)
def subset_seq(A, Bt, init, cfg, levels, rows, cols, acc_out, nov_out):
    """Only the outputs (rows[t], cols[t]) -- those a bound could not prove overflow-free -- without
    statistics. The SEQUENTIAL order (``subset_chunked`` and ``subset_tree`` likewise for theirs)."""
    dummy = np.empty(1, dtype=np.int64)
    for t in nb.prange(rows.shape[0]):
        i, j = rows[t], cols[t]
        st = np.empty(4, dtype=np.int64)
        acc_out[i, j], nov_out[i, j] = dot_seq(A[i], Bt[j], init[i, j], cfg, levels, dummy, False, st)


@nb.njit(cache=True, parallel=True)
def subset_chunked(A, Bt, init, cfg, levels, rows, cols, acc_out, nov_out):
    dummy = np.empty(1, dtype=np.int64)
    for t in nb.prange(rows.shape[0]):
        i, j = rows[t], cols[t]
        st = np.empty(4, dtype=np.int64)
        acc_out[i, j], nov_out[i, j] = dot_chunked(A[i], Bt[j], init[i, j], cfg, levels, dummy, False, st)


@nb.njit(cache=True, parallel=True)
def subset_tree(A, Bt, init, cfg, levels, rows, cols, acc_out, nov_out):
    dummy = np.empty(1, dtype=np.int64)
    for t in nb.prange(rows.shape[0]):
        i, j = rows[t], cols[t]
        st = np.empty(4, dtype=np.int64)
        acc_out[i, j], nov_out[i, j] = dot_tree(A[i], Bt[j], init[i, j], cfg, levels, dummy, False, st)


@nb.njit(cache=True)
def trace_seq(a, b, init, cfg, levels, trace):
    """The per-cycle register values of one output (same arithmetic as gemm_seq); returns the number of
    cycles written to ``trace``. The SEQUENTIAL order (``trace_chunked`` and ``trace_tree`` for theirs)."""
    st = np.empty(4, dtype=np.int64)
    dot_seq(a, b, init, cfg, levels, trace, True, st)
    return st[3]


@nb.njit(cache=True)
def trace_chunked(a, b, init, cfg, levels, trace):
    st = np.empty(4, dtype=np.int64)
    dot_chunked(a, b, init, cfg, levels, trace, True, st)
    return st[3]


@nb.njit(cache=True)
def trace_tree(a, b, init, cfg, levels, trace):
    st = np.empty(4, dtype=np.int64)
    dot_tree(a, b, init, cfg, levels, trace, True, st)
    return st[3]


@nb.njit(cache=True)
def trace_seq_simple(a, b, init, reg, levels, trace):
    """trace_seq for the common datapath, a fraction of its compilation: exact products aligned by a left
    ``reg.shift`` (a ``Register``), the sequential order, the same adder. ``levels`` is unused."""
    acc = init
    trace[0] = acc
    for k in range(a.shape[0]):
        acc, _ = add(acc, (a[k] * b[k]) << reg.shift, reg.bits, reg.signed != 0, reg.lo, reg.hi, reg.ovf)
        trace[k + 1] = acc
    return a.shape[0] + 1


# by IntConfig.order: every output with statistics / a subset without them / one output's trace
GEMM_KERNELS = {SEQUENTIAL: gemm_seq, CHUNKED: gemm_chunked, TREE: gemm_tree}
SUBSET_KERNELS = {SEQUENTIAL: subset_seq, CHUNKED: subset_chunked, TREE: subset_tree}
TRACE_KERNELS = {SEQUENTIAL: trace_seq, CHUNKED: trace_chunked, TREE: trace_tree}


@nb.njit(cache=True, nogil=True)
def saturate_sequential_kernel(A, Bt, start_k, start_acc, reg, rows, cols, acc_out, nov_out):
    """The common case, specialised: exact products aligned by a left ``reg.shift``, one sequential
    saturating accumulator in [reg.lo, reg.hi] (reg.bits < 64). Output t = (rows[t], cols[t]) starts at cycle
    start_k[t] with the register holding start_acc[t] (cycle 0 and the initial value for a full run; a
    later cycle and the exact partial sum there when the cycles before are proven free of overflow).
    Bt may hold B's codes as floats (exact integers, |b| <= 2**24 in float32). Same results as gemm_seq
    for that datapath. Serial and nogil: callers split the outputs across
    threads (fxsim.blas_threads), so no OpenMP team is left spinning next to the BLAS calls."""
    K = A.shape[1]
    shift, lo, hi = reg.shift, reg.lo, reg.hi
    for t in range(rows.shape[0]):
        i = rows[t]
        j = cols[t]
        a = A[i]
        b = Bt[j]
        acc = start_acc[t]
        n = 0
        for k in range(start_k[t], K):
            s = acc + ((a[k] * np.int64(b[k])) << shift)
            if s > hi:
                s = hi
                n += 1
            elif s < lo:
                s = lo
                n += 1
            acc = s
        acc_out[i, j] = acc
        nov_out[i, j] = n


@nb.njit(cache=True)
def add_registers(x, y, ex, ey, bits, signed, lo, hi, ovf, nov, max_p, nbits):
    """One adder of a lane combine for every output (flat C arrays): x[i] = add(x[i], y[i]) as the
    per-output kernels add two registers (``add``), nov[i] += 1 where it overflowed; the exact values
    ex[i] += ey[i], and max_p / nbits take in the new exact partial sum (|e| and the signed width of
    {0, e}, ``bits_for``)."""
    for i in range(x.size):
        r, of = add(x[i], y[i], bits, signed, lo, hi, ovf)
        x[i] = r
        nov[i] += of
        e = ex[i] + ey[i]
        ex[i] = e
        m = e if e >= 0 else -e
        if m >= max_p[i]:     # |e| < max_p: e needs no more bits than the sum that reached max_p
            max_p[i] = m
            nbits[i] = max(nbits[i], bits_for(max(e, 0), min(e, 0), True))


@nb.njit(cache=True)
def transpose_into(B, out):
    """out = B.T (contiguous), in 32 x 32 tiles: 2.5x faster than numpy's strided copy for 512 x 512."""
    K, N = B.shape
    T = 32
    for k0 in range(0, K, T):
        for j0 in range(0, N, T):
            for j in range(j0, min(j0 + T, N)):
                for k in range(k0, min(k0 + T, K)):
                    out[j, k] = B[k, j]


@nb.njit(cache=True)
def scan_operand(X, blk, axis, xf, sq):
    """One pass over an operand's integer codes: returns (min, max), writes the codes as floats into xf
    (same shape; exact, the caller has bounded them) and their exact int64 sums of squares per block of
    ``blk`` along K into sq (axis=1: X is A (M, K), sq (Q, M); axis=0: X is B (K, N), sq (Q, N); the caller
    has proved K * max|x|**2 < 2**63). One read of X instead of four (min, max, squares, conversion)."""
    R, C = X.shape
    lo = np.int64(X[0, 0]) if X.size else np.int64(0)
    hi = lo
    sq[:] = 0
    Q = sq.shape[0]
    for r in range(R):
        if axis == 1:                 # blocks run along the row
            for q in range(Q):
                s = np.int64(0)
                for c in range(q * blk, min(C, (q + 1) * blk)):
                    v = np.int64(X[r, c])
                    lo = min(lo, v)
                    hi = max(hi, v)
                    xf[r, c] = v
                    s += v * v
                sq[q, r] = s
        else:                         # row r of B belongs to block r // blk
            acc = sq[r // blk]
            for c in range(C):
                v = np.int64(X[r, c])
                lo = min(lo, v)
                hi = max(hi, v)
                xf[r, c] = v
                acc[c] += v * v
    return lo, hi


@nb.njit(cache=True, nogil=True)
def prefix_block_check(init, S, na, nbn, L, limit, inflate, blk, row0, cum, flagged, count):
    """The sequential-order saturation test of fxsim.ops.gemm (shortcut 4) on a slab of rows.

    S[q] holds the exact sums of block q (``blk`` wide) of K (float32/float64 from BLAS, exact integers),
    na[q]/nbn[q] the row/column norms of block q. With c0, c1 the exact partial sums before and after
    block q (init included, products aligned by a left shift L) and CS = na[q, i] * nbn[q, j] * 2**L,
    every partial sum P inside the block satisfies P <= c0 + x and P <= c1 + y, where x, y are the
    Cauchy-Schwarz bounds of the block's prefix and suffix and x + y <= CS (Cauchy-Schwarz again, on the
    2-vectors of the prefix and suffix norms); hence P <= (c0 + c1 + CS) / 2 and, symmetrically,
    P >= (c0 + c1 - CS) / 2. ``cum`` receives the exact sums. An output is flagged at the first block
    where CS > 2 * limit - |c0 + c1|; before it no addition can overflow, so the register still holds
    the exact c0 there. Flagged outputs are appended to ``flagged`` (rows: row0 + i, cols, first cycle of
    that block, c0) at position count[0], which is advanced.

    Arithmetic in na's dtype, exactly. float64: the caller guarantees that every |partial sum| and
    2 * limit are below 2**52, so c0, c1, c0 + c1 and 2 * limit - |c0 + c1| are exact integers; the computed
    CS carries at most five roundings of 2**-53 relative and is inflated by ``inflate`` = 2**-40, so it is >= the
    true CS. float32 (twice the vector width): every |partial sum| <= 2**23 and 2 * limit <= 2**24, so the same
    integers are exact in float32; na and nbn are float32 values rounded up, and the two float32
    roundings of na * scale * nbn (2**-23 relative at most) are covered by ``inflate`` = 2**-20.
    Serial and nogil: the callers run one slab of rows per thread (fxsim.blas_threads)."""
    Q, M, N = S.shape
    k = np.empty(4, dtype=na.dtype)             # constants in the arithmetic's dtype
    k[0] = 2.0 ** L * (1.0 + inflate)
    k[1] = 2.0 ** L
    k[2] = 2.0 * limit
    scale, shift, lim2 = k[0], k[1], k[2]
    c = np.empty(N, dtype=na.dtype)
    bad = np.empty(N, dtype=np.bool_)
    n = count[0]
    for i in range(M):
        for j in range(N):
            c[j] = init[i, j]
            bad[j] = False
        for q in range(Q):
            a = na[q, i] * scale
            s = S[q, i]
            nq = nbn[q]
            for j in range(N):                  # no branches: the loop vectorises
                c0 = c[j]
                c1 = c0 + s[j] * shift
                bad[j] |= a * nq[j] > lim2 - abs(c0 + c1)
                c[j] = c1
        for j in range(N):
            cum[i, j] = np.int64(c[j])
            if bad[j]:                          # rare: find the first flagged block and the sum before it
                c[j] = init[i, j]
                for q in range(Q):
                    c0 = c[j]
                    c1 = c0 + S[q, i, j] * shift
                    if na[q, i] * scale * nbn[q, j] > lim2 - abs(c0 + c1):
                        flagged[0, n] = row0 + i
                        flagged[1, n] = j
                        flagged[2, n] = q * blk
                        flagged[3, n] = np.int64(c0)
                        n += 1
                        break
                    c[j] = c1
                else:                           # not reached (same arithmetic as above); stay safe
                    flagged[0, n] = row0 + i
                    flagged[1, n] = j
                    flagged[2, n] = 0
                    flagged[3, n] = init[i, j]
                    n += 1
    count[0] = n


@nb.njit(cache=True, nogil=True)
def exact_from_blas(S, L, init, bits, signed, wrap_it, exact_out, acc_out):
    """exact = (S << L) + init from the exact BLAS sums S (float32 or float64, exact integers); acc = exact
    wrapped to a ``bits``-wide register when ``wrap_it`` (shortcut 2), else exact. One fused pass over a
    slab of rows, serial and nogil: the callers run one slab per thread (fxsim.blas_threads)."""
    M, N = S.shape
    for i in range(M):
        for j in range(N):
            e = (np.int64(S[i, j]) << L) + init[i, j]
            exact_out[i, j] = e
            acc_out[i, j] = wrap(e, bits, signed) if wrap_it else e


@nb.njit(cache=True)
def _tree_adder(SR, SE, u, v, rows, N, lb, signed, llo, lhi, mode, cnt, mx, mn):
    """One adder level for a row block: SR[u] = SR[u] + SR[v] in an ``lb``-bit register (< 64 bits) with
    range [llo, lhi] and overflow ``mode``, branch-free per mode as ``sequential_stats_dense``; the exact
    values SE[u] += SE[v] join the extremes. One loop per mode, written out as there: a shared helper with
    the mode test inside the loop measured 10% slower."""
    mask = (np.int64(1) << lb) - 1
    half = np.int64(1) << (lb - 1)
    for r in range(rows):
        x, y, ex, ey, c, hi_, lo_ = SR[u, r], SR[v, r], SE[u, r], SE[v, r], cnt[r], mx[r], mn[r]
        if mode == WRAP:
            for j in range(N):
                e = ex[j] + ey[j]
                ex[j] = e
                hi_[j] = max(hi_[j], e)
                lo_[j] = min(lo_[j], e)
                s = x[j] + y[j]
                w = s & mask
                if signed:
                    w = ((w + half) & mask) - half
                c[j] += w != s
                x[j] = w
        elif mode == SATURATE_ZERO:
            for j in range(N):
                e = ex[j] + ey[j]
                ex[j] = e
                hi_[j] = max(hi_[j], e)
                lo_[j] = min(lo_[j], e)
                s = x[j] + y[j]
                out = (s < llo) | (s > lhi)
                c[j] += out
                x[j] = 0 if out else s
        else:                                # SATURATE, SATURATE_SYMMETRIC: llo, lhi say which
            for j in range(N):
                e = ex[j] + ey[j]
                ex[j] = e
                hi_[j] = max(hi_[j], e)
                lo_[j] = min(lo_[j], e)
                s = x[j] + y[j]
                w = min(max(s, llo), lhi)
                c[j] += w != s
                x[j] = w


@nb.njit(cache=True)
def _tree_leaf_pair(A, B, i0, k, rows, N, shift, SR, SE, d, lb, signed, llo, lhi, mode, cnt, mx, mn):
    """Products k and k + 1 of a row block and their level-0 adder, into stack slot d (a subtree of level
    1): both products and their exact sum join the extremes; the adder as ``_tree_adder``'s."""
    mask = (np.int64(1) << lb) - 1
    half = np.int64(1) << (lb - 1)
    b0, b1 = B[k], B[k + 1]
    for r in range(rows):
        a0, a1 = A[i0 + r, k], A[i0 + r, k + 1]
        x, ex, c, hi_, lo_ = SR[d, r], SE[d, r], cnt[r], mx[r], mn[r]
        if mode == WRAP:
            for j in range(N):
                p0 = (a0 * b0[j]) << shift
                p1 = (a1 * b1[j]) << shift
                s = p0 + p1
                ex[j] = s
                hi_[j] = max(hi_[j], max(max(p0, p1), s))
                lo_[j] = min(lo_[j], min(min(p0, p1), s))
                w = s & mask
                if signed:
                    w = ((w + half) & mask) - half
                c[j] += w != s
                x[j] = w
        elif mode == SATURATE_ZERO:
            for j in range(N):
                p0 = (a0 * b0[j]) << shift
                p1 = (a1 * b1[j]) << shift
                s = p0 + p1
                ex[j] = s
                hi_[j] = max(hi_[j], max(max(p0, p1), s))
                lo_[j] = min(lo_[j], min(min(p0, p1), s))
                out = (s < llo) | (s > lhi)
                c[j] += out
                x[j] = 0 if out else s
        else:
            for j in range(N):
                p0 = (a0 * b0[j]) << shift
                p1 = (a1 * b1[j]) << shift
                s = p0 + p1
                ex[j] = s
                hi_[j] = max(hi_[j], max(max(p0, p1), s))
                lo_[j] = min(lo_[j], min(min(p0, p1), s))
                w = min(max(s, llo), lhi)
                c[j] += w != s
                x[j] = w


@nb.njit(cache=True, parallel=True)
def tree_stats_dense(A, B, init, shift, bits, signed, lo, hi, mode, levels, acc_out, nov_out, max_out, min_out,
                     exact_out):
    """gemm_tree for exact products aligned by a left ``shift``, every register (the levels' ``levels[l]``
    bits, the accumulator's ``bits`` beyond, all < 64) wrap or saturating, vectorised across output
    columns. ``_pairwise`` adds level by level, an odd last term passing through; the same adders come
    from a stack of subtrees built as the products stream in: a new product is a subtree of level 0, two
    subtrees of equal level l are added by an adder of level l into one of level l + 1, and at the end
    the stack is folded from its top (the two newest first, by an adder of the older one's level), which
    is where the level-by-level tree meets its passed-through terms. Every product and every adder's
    exact sum join the extremes; the root is then added to init in the accumulator, as ``dot_tree`` does.
    Products 2m and 2m + 1 go straight through their level-0 adder (``_tree_leaf_pair``). B is (K, N)."""
    M, K = A.shape
    N = B.shape[1]
    RB = 4
    nblk = (M + RB - 1) // RB
    symmetric = signed and lo == -hi
    depth = 2
    while (np.int64(1) << (depth - 2)) <= K:
        depth += 1
    for blk in nb.prange(nblk):
        i0 = blk * RB
        rows = min(i0 + RB, M) - i0
        SR = np.zeros((depth, RB, N), dtype=np.int64)
        SE = np.zeros((depth, RB, N), dtype=np.int64)
        lvl = np.zeros(depth, dtype=np.int64)
        cnt = np.zeros((RB, N), dtype=np.int64)
        mx = np.empty((RB, N), dtype=np.int64)
        mn = np.empty((RB, N), dtype=np.int64)
        for r in range(rows):
            for j in range(N):
                v = init[i0 + r, j]
                mx[r, j] = max(v, 0)
                mn[r, j] = min(v, 0)
        d = 0
        lb0 = levels[0] if levels.shape[0] > 0 else bits
        lo0, hi0 = register_range(lb0, signed, symmetric)
        for k in range(0, K, 2):
            if k + 1 < K:                       # two products and their level-0 adder: a level-1 subtree
                _tree_leaf_pair(A, B, i0, k, rows, N, shift, SR, SE, d, lb0, signed, lo0, hi0, mode, cnt, mx, mn)
                lvl[d] = 1
            else:                               # the last product of an odd K: a leaf
                b = B[k]
                for r in range(rows):
                    a = A[i0 + r, k]
                    sr, se, hi_, lo_ = SR[d, r], SE[d, r], mx[r], mn[r]
                    for j in range(N):
                        p = (a * b[j]) << shift
                        sr[j] = p
                        se[j] = p
                        hi_[j] = max(hi_[j], p)
                        lo_[j] = min(lo_[j], p)
                lvl[d] = 0
            d += 1
            while d >= 2 and lvl[d - 1] == lvl[d - 2]:
                l = lvl[d - 2]
                lb = levels[l] if l < levels.shape[0] else bits
                llo, lhi = register_range(lb, signed, symmetric)
                _tree_adder(SR, SE, d - 2, d - 1, rows, N, lb, signed, llo, lhi, mode, cnt, mx, mn)
                lvl[d - 2] = l + 1
                d -= 1
        while d >= 2:                           # the fold of the passed-through subtrees
            l = lvl[d - 2]
            lb = levels[l] if l < levels.shape[0] else bits
            llo, lhi = register_range(lb, signed, symmetric)
            _tree_adder(SR, SE, d - 2, d - 1, rows, N, lb, signed, llo, lhi, mode, cnt, mx, mn)
            lvl[d - 2] = l + 1
            d -= 1
        # the root (0 for K = 0: SR[0] is zeros) added to init at the accumulator's width
        for r in range(rows):
            i = i0 + r
            for j in range(N):
                v = init[i, j]
                acc, of = add(v, SR[0, r, j], bits, signed, lo, hi, mode)
                e = v + SE[0, r, j]
                acc_out[i, j] = acc
                nov_out[i, j] = cnt[r, j] + of
                exact_out[i, j] = e
                max_out[i, j] = max(mx[r, j], e)
                min_out[i, j] = min(mn[r, j], e)


@nb.njit(cache=True, parallel=True)
def sequential_stats_dense(A, B, init, reg, acc_out, nov_out, max_out, min_out, exact_out):
    """gemm_seq for the common datapath, vectorised across output columns: exact products aligned by a
    left ``reg.shift``, one sequential accumulator of ``reg.bits`` < 64 bits in [reg.lo, reg.hi] whose
    overflow ``reg.ovf`` (WRAP, SATURATE, SATURATE_SYMMETRIC or SATURATE_ZERO) applies after every
    addition. For each k every column j of a row block takes the addition, while the exact running sum,
    its extremes (starting from init and 0, as ``dot`` does) and the overflow count are kept per output.
    B is (K, N)."""
    M, K = A.shape
    N = B.shape[1]
    shift, bits, signed, lo, hi, mode = reg.shift, reg.bits, reg.signed != 0, reg.lo, reg.hi, reg.ovf
    RB = 4
    nblk = (M + RB - 1) // RB
    mask = (np.int64(1) << bits) - 1
    half = np.int64(1) << (bits - 1)
    for blk in nb.prange(nblk):
        i0 = blk * RB
        rows = min(i0 + RB, M) - i0
        acc = np.empty((RB, N), dtype=np.int64)
        cnt = np.zeros((RB, N), dtype=np.int64)
        ex = np.empty((RB, N), dtype=np.int64)
        mx = np.empty((RB, N), dtype=np.int64)
        mn = np.empty((RB, N), dtype=np.int64)
        for r in range(rows):
            for j in range(N):
                v = init[i0 + r, j]
                acc[r, j] = v
                ex[r, j] = v
                mx[r, j] = max(v, 0)
                mn[r, j] = min(v, 0)
        p = np.empty(N, dtype=np.int64)
        for k in range(K):
            b = B[k]
            for r in range(rows):
                a = A[i0 + r, k]
                accr, cntr, exr, mxr, mnr = acc[r], cnt[r], ex[r], mx[r], mn[r]
                for j in range(N):               # the aligned product and the exact running sum
                    p[j] = (a * b[j]) << shift
                    e = exr[j] + p[j]
                    exr[j] = e
                    mxr[j] = max(mxr[j], e)
                    mnr[j] = min(mnr[j], e)
                if mode == WRAP:                 # the register: one branch-free loop per mode
                    for j in range(N):
                        s = accr[j] + p[j]
                        w = s & mask
                        if signed:
                            w = ((w + half) & mask) - half
                        cntr[j] += w != s
                        accr[j] = w
                elif mode == SATURATE_ZERO:
                    for j in range(N):
                        s = accr[j] + p[j]
                        out = (s < lo) | (s > hi)
                        cntr[j] += out
                        accr[j] = 0 if out else s
                else:                            # SATURATE, SATURATE_SYMMETRIC: lo, hi say which
                    for j in range(N):
                        s = accr[j] + p[j]
                        c = min(max(s, lo), hi)
                        cntr[j] += c != s
                        accr[j] = c
        for r in range(rows):
            for j in range(N):
                acc_out[i0 + r, j] = acc[r, j]
                nov_out[i0 + r, j] = cnt[r, j]
                max_out[i0 + r, j] = mx[r, j]
                min_out[i0 + r, j] = mn[r, j]
                exact_out[i0 + r, j] = ex[r, j]


EXTREMES_ROWS = 4     # the tile of running_extremes_dense: its ``proto`` is (EXTREMES_ROWS, EXTREMES_COLS)
EXTREMES_COLS = 512


@nb.njit(cache=True, inline="always")
def bit_length(x):
    """Python's int.bit_length for 0 <= x < 2**63 (0 for x <= 0), by halving."""
    n = np.int64(0)
    if x <= 0:
        return n
    for s in (32, 16, 8, 4, 2, 1):
        if x >> s:
            x >>= s
            n += s
    return n + x


@nb.njit(cache=True, inline="always")
def bits_for(max_pos, min_neg, signed):
    """The smallest register width holding every value in [min_neg, max_pos] (max_pos >= 0 >= min_neg):
    two's complement if ``signed`` or if min_neg < 0, else unsigned (at least 1 bit); the per-output
    formula of ``fxsim.result.bits_needed``."""
    pos = bit_length(max_pos)
    neg = bit_length(-(min_neg + 1))
    both = max(pos, neg) + 1
    if signed or min_neg < 0:
        return both
    return max(pos, np.int64(1))


@nb.njit(cache=True, parallel=True)
def running_extremes_dense(A, B, init, proto, signed, exact_out, maxp_out, bits_out):
    """The statistics of a sequential accumulator that provably never overflows (the caller's bound):
    per output the exact running sum init + sum_k A[i, k] * B[k, j] and, from its largest and smallest
    value (starting from init and 0, as ``dot`` does), the largest magnitude and the register width that
    holds them (``bits_for``), vectorised across columns. The register equals the running sum at every
    cycle, so this is all the cycle-accurate kernel would record besides zero overflow counts. A holds
    the products' aligned left factor (a << L). The lanes have ``proto``'s dtype (EXTREMES_ROWS,
    EXTREMES_COLS), as A and B do; the caller proves that every |product| and |partial sum| is exact in
    it (float32: <= 2**24, integers all exact in binary32; else int32 or int64), so every lane value is
    the exact integer. Tiles of EXTREMES_ROWS rows x EXTREMES_COLS columns keep their running sums in
    the first-level cache whatever N; four steps of k at a time load and store them once per four
    additions."""
    M, K = A.shape
    N = B.shape[1]
    RB, JT = proto.shape
    nrb = (M + RB - 1) // RB
    njt = (N + JT - 1) // JT
    for t in nb.prange(nrb * njt):
        i0 = (t // njt) * RB
        j0 = (t % njt) * JT
        rows = min(i0 + RB, M) - i0
        cols = min(j0 + JT, N) - j0
        ex = np.empty_like(proto)
        mx = np.empty_like(proto)
        mn = np.empty_like(proto)
        for r in range(rows):
            for j in range(cols):
                v = init[i0 + r, j0 + j]
                ex[r, j] = v
                mx[r, j] = max(v, 0)
                mn[r, j] = min(v, 0)
        _tile_extremes(A, B, i0, j0, rows, cols, ex, mx, mn)
        for r in range(rows):
            for j in range(cols):
                hi, lo = np.int64(mx[r, j]), np.int64(mn[r, j])
                exact_out[i0 + r, j0 + j] = np.int64(ex[r, j])
                maxp_out[i0 + r, j0 + j] = max(hi, -lo)
                bits_out[i0 + r, j0 + j] = bits_for(hi, lo, signed)


ABSMAX_ROWS = 4      # the tile of running_absmax_dense: about ABSMAX_ROWS x ABSMAX_COLS outputs
ABSMAX_COLS = 512


@nb.njit(cache=True, fastmath={"contract"})
def _tile_absmax(A, B, i0, j0, rows, cols, ex, mx):
    """running_absmax_dense's sweep of one tile: ex[r, j] (holding the start) runs the sum of output
    (i0 + r, j0 + j) on, mx[r, j] (holding the start's magnitude) its largest magnitude. Per addition one
    multiply-add, one |x| and one max; eight steps of k per load and store of the running sums.
    ``contract`` lets the multiply and the add fuse: both are exact (the caller's bound), so the fused
    operation rounds nothing either."""
    K = A.shape[1]
    K8 = K - K % 8
    for k in range(0, K8, 8):
        b0, b1 = B[k, j0:j0 + cols], B[k + 1, j0:j0 + cols]
        b2, b3 = B[k + 2, j0:j0 + cols], B[k + 3, j0:j0 + cols]
        b4, b5 = B[k + 4, j0:j0 + cols], B[k + 5, j0:j0 + cols]
        b6, b7 = B[k + 6, j0:j0 + cols], B[k + 7, j0:j0 + cols]
        for r in range(rows):
            a = A[i0 + r]
            a0, a1, a2, a3 = a[k], a[k + 1], a[k + 2], a[k + 3]
            a4, a5, a6, a7 = a[k + 4], a[k + 5], a[k + 6], a[k + 7]
            exr, mxr = ex[r], mx[r]
            for j in range(cols):
                e1 = exr[j] + a0 * b0[j]
                e2 = e1 + a1 * b1[j]
                e3 = e2 + a2 * b2[j]
                e4 = e3 + a3 * b3[j]
                e5 = e4 + a4 * b4[j]
                e6 = e5 + a5 * b5[j]
                e7 = e6 + a6 * b6[j]
                e8 = e7 + a7 * b7[j]
                exr[j] = e8
                m1 = max(max(mxr[j], abs(e1)), max(abs(e2), abs(e3)))
                m2 = max(max(abs(e4), abs(e5)), max(abs(e6), abs(e7)))
                mxr[j] = max(max(m1, m2), abs(e8))
    for k in range(K8, K):
        b = B[k, j0:j0 + cols]
        for r in range(rows):
            a = A[i0 + r, k]
            exr, mxr = ex[r], mx[r]
            for j in range(cols):
                e = exr[j] + a * b[j]
                exr[j] = e
                mxr[j] = max(mxr[j], abs(e))


@nb.njit(cache=True, fastmath={"contract"})
def _tile_extremes(A, B, i0, j0, rows, cols, ex, mx, mn):
    """One tile of the running sums' largest and smallest value (running_extremes_dense's arithmetic);
    ex, mx, mn hold the start."""
    K = A.shape[1]
    K4 = K - K % 4
    for k in range(0, K4, 4):
        b0, b1 = B[k, j0:j0 + cols], B[k + 1, j0:j0 + cols]
        b2, b3 = B[k + 2, j0:j0 + cols], B[k + 3, j0:j0 + cols]
        for r in range(rows):
            a = A[i0 + r]
            a0, a1, a2, a3 = a[k], a[k + 1], a[k + 2], a[k + 3]
            exr, mxr, mnr = ex[r], mx[r], mn[r]
            for j in range(cols):
                e1 = exr[j] + a0 * b0[j]
                e2 = e1 + a1 * b1[j]
                e3 = e2 + a2 * b2[j]
                e4 = e3 + a3 * b3[j]
                exr[j] = e4
                mxr[j] = max(max(mxr[j], e1), max(max(e2, e3), e4))
                mnr[j] = min(min(mnr[j], e1), min(min(e2, e3), e4))
    for k in range(K4, K):
        b = B[k, j0:j0 + cols]
        for r in range(rows):
            a = A[i0 + r, k]
            exr, mxr, mnr = ex[r], mx[r], mn[r]
            for j in range(cols):
                e = exr[j] + a * b[j]
                exr[j] = e
                mxr[j] = max(mxr[j], e)
                mnr[j] = min(mnr[j], e)


@nb.njit(cache=True)
def _reaches(A, B, e, i, j, m):
    """Whether the running sum of output (i, j) from e ever equals m, in int64 (the lanes hold exact
    integers)."""
    hit = e == m
    for k in range(A.shape[1]):
        e += np.int64(A[i, k]) * np.int64(B[k, j])
        hit |= e == m
    return hit


@nb.njit(cache=True)
def _widths(x, w, tmp):
    """w[j] = bit_length(x[j]) + 1 for 0 <= x[j] < 2**63: from the exponent of float64(x[j]) (the
    conversion is exact below 2**53, and a binary64 in [2**(e-1), 2**e) has biased exponent e + 1022),
    by halving above. The first two loops have no branches and vectorise."""
    n = x.shape[0]
    bits = tmp.view(np.int64)
    for j in range(n):
        tmp[j] = np.float64(x[j])
    for j in range(n):
        e = ((bits[j] >> 52) & 2047) - 1022
        w[j] = (e if x[j] > 0 else 0) + 1
    for j in range(n):
        if x[j] >= 9007199254740992:   # 2**53
            w[j] = bit_length(x[j]) + 1


@nb.njit(cache=True)
def _load_start(init, flip, i0, j0, rows, cols, S):
    """S[r, j] = the initial value of output (i0 + r, j0 + j): init[i0 + r, j0 + j], or init[j0 + j, i0 + r]
    where the problem is transposed (read along init's rows either way)."""
    if flip:
        for j in range(cols):
            for r in range(rows):
                S[r, j] = init[j0 + j, i0 + r]
    else:
        for r in range(rows):
            for j in range(cols):
                S[r, j] = init[i0 + r, j0 + j]


@nb.njit(cache=True)
def _store(flip, i0, j0, rows, cols, E, P, W, acc_out, exact_out, maxp_out, bits_out):
    """The tile's exact sums (into both the accumulator and the exact planes: no addition overflows),
    largest magnitudes and widths into the planes, at [i, j] or, where the problem is transposed, at
    [j, i] (written along the planes' rows either way)."""
    if flip:
        for j in range(cols):
            for r in range(rows):
                acc_out[j0 + j, i0 + r] = E[r, j]
                exact_out[j0 + j, i0 + r] = E[r, j]
                maxp_out[j0 + j, i0 + r] = P[r, j]
                bits_out[j0 + j, i0 + r] = W[r, j]
    else:
        for r in range(rows):
            for j in range(cols):
                acc_out[i0 + r, j0 + j] = E[r, j]
                exact_out[i0 + r, j0 + j] = E[r, j]
                maxp_out[i0 + r, j0 + j] = P[r, j]
                bits_out[i0 + r, j0 + j] = W[r, j]


@nb.njit(cache=True, nogil=True)
def running_absmax_dense(A, B, init, proto, offset, flip, row0, row1, acc_out, exact_out, maxp_out, bits_out):
    """running_extremes_dense for a signed register with one statistic fewer per addition: the
    statistics of a sequential accumulator that provably never overflows (the caller's bound) from a
    running sum and its largest magnitude alone. With hi and lo the largest and smallest exact partial
    sum (starting from init and 0, as ``dot`` does) and m = max(hi, -lo) (``max_partial``), the two's
    complement width max(bit_length(hi), bit_length(-lo - 1)) + 1 is bit_length(m) + 1 if some partial
    sum is +m (then -lo - 1 < m), else bit_length(m - 1) + 1 (then -lo = m and hi <= m - 1).

    ``offset`` = 1: A holds 4 * (a << L) and the lanes run f = 4 * e + 1 from 4 * init + 1 (and the
    partial sum 0 as f = 1), whose largest magnitude F tells both: e >= 0 gives |f| = 4e + 1, e < 0 gives
    4|e| - 1, so F = 4m + 1 where +m is reached and 4m - 1 where only -m is. The caller proves every
    |f| exact in the lanes (float32: 4 * bound + 1 <= 2**24).

    ``offset`` = 0: A holds a << L, the lanes run e itself and give m; bit_length(m) and
    bit_length(m - 1) differ only where m is a power of two, and only those outputs scan their running
    sum again, in int64, for +m. A tile where more than one output in 16 would need it runs the
    two-extremes sweep instead (the rescans would cost more than the |x| saves). The caller proves
    every |e| exact in the lanes (float32: bound <= 2**24, binary32 holds every such integer).

    Rows row0 <= i < row1 of A (M, K) @ B (K, N), in ``proto``'s dtype; ``flip``: the caller passes the
    transposed problem (B.T @ A.T, the same products summed in the same order), and output (i, j) is
    read from init[j, i] and written to the planes at [j, i]; the exact sums go to ``acc_out`` too (the
    register never overflows, so it holds them). ``proto``'s shape is the tile of outputs
    whose running sums stay in the first-level cache. Serial and nogil: callers split the rows across
    threads (fxsim.runtime.threads.row_parallel)."""
    N = B.shape[1]
    RB, JT = proto.shape
    nrb = (row1 - row0 + RB - 1) // RB
    njt = (N + JT - 1) // JT
    ex = np.empty_like(proto)
    mx = np.empty_like(proto)
    mn = np.empty_like(proto)
    S = np.empty((RB, JT), dtype=np.int64)     # starts, then the exact sums
    P = np.empty((RB, JT), dtype=np.int64)     # largest magnitudes
    W = np.empty((RB, JT), dtype=np.int64)     # widths
    X = np.empty((RB, JT), dtype=np.int64)     # the widths' arguments
    tmp = np.empty(JT, dtype=np.float64)
    for t in range(nrb * njt):
        i0 = row0 + (t // njt) * RB
        j0 = (t % njt) * JT
        rows = min(i0 + RB, row1) - i0
        cols = min(j0 + JT, N) - j0
        _load_start(init, flip, i0, j0, rows, cols, S)
        for r in range(rows):
            for j in range(cols):
                v = S[r, j] * (1 + 3 * offset) + offset
                ex[r, j] = v
                mx[r, j] = max(abs(v), offset)
        _tile_absmax(A, B, i0, j0, rows, cols, ex, mx)
        if offset:
            for r in range(rows):
                for j in range(cols):
                    F = np.int64(mx[r, j])
                    P[r, j] = (F + 1) >> 2                   # F = 4m + 1 or 4m - 1
                    X[r, j] = P[r, j] - ((F & 3) >> 1)       # m where +m is reached, else m - 1
                    S[r, j] = (np.int64(ex[r, j]) - 1) >> 2
                _widths(X[r, :cols], W[r, :cols], tmp)
            _store(flip, i0, j0, rows, cols, S, P, W, acc_out, exact_out, maxp_out, bits_out)
            continue
        ties = 0
        for r in range(rows):
            for j in range(cols):
                m = np.int64(mx[r, j])
                ties += m > 0 and (m & (m - 1)) == 0
        if ties * 16 > rows * cols:
            for r in range(rows):
                for j in range(cols):
                    v = S[r, j]
                    ex[r, j] = v
                    mx[r, j] = max(v, 0)
                    mn[r, j] = min(v, 0)
            _tile_extremes(A, B, i0, j0, rows, cols, ex, mx, mn)
            for r in range(rows):
                for j in range(cols):
                    hi, lo = np.int64(mx[r, j]), np.int64(mn[r, j])
                    S[r, j] = np.int64(ex[r, j])
                    P[r, j] = max(hi, -lo)
                    W[r, j] = bits_for(hi, lo, True)
            _store(flip, i0, j0, rows, cols, S, P, W, acc_out, exact_out, maxp_out, bits_out)
            continue
        for r in range(rows):
            for j in range(cols):
                P[r, j] = np.int64(mx[r, j])
            _widths(P[r, :cols], W[r, :cols], tmp)
            if ties:
                for j in range(cols):
                    m = P[r, j]
                    if m > 0 and (m & (m - 1)) == 0 and not _reaches(A, B, S[r, j], i0 + r, j0 + j, m):
                        W[r, j] = bit_length(m - 1) + 1
            for j in range(cols):
                S[r, j] = np.int64(ex[r, j])
        _store(flip, i0, j0, rows, cols, S, P, W, acc_out, exact_out, maxp_out, bits_out)


@nb.njit(cache=True, inline="always")
def _start_register_tile(init, i0, j0, rows, cols, ex, ac, mx, mn, ct):
    """clamp_stats_dense's and wrap_stats_dense's tile at the start: the exact sum and the register at
    init, its extremes at (max(init, 0), min(init, 0)), as ``dot`` starts them, and no overflow yet."""
    for r in range(rows):
        for j in range(cols):
            v = init[i0 + r, j0 + j]
            ex[r, j] = v
            ac[r, j] = v
            mx[r, j] = max(v, 0)
            mn[r, j] = min(v, 0)
            ct[r, j] = 0


@nb.njit(cache=True, inline="always")
def _store_register_tile(i0, j0, rows, cols, ex, ac, mx, mn, ct, signed, acc_out, nov_out, exact_out, maxp_out,
                         bits_out):
    """The tile's register, overflow counts, exact sums, largest magnitudes and widths into the planes."""
    for r in range(rows):
        for j in range(cols):
            h, l = np.int64(mx[r, j]), np.int64(mn[r, j])
            acc_out[i0 + r, j0 + j] = np.int64(ac[r, j])
            nov_out[i0 + r, j0 + j] = np.int64(ct[r, j])
            exact_out[i0 + r, j0 + j] = np.int64(ex[r, j])
            maxp_out[i0 + r, j0 + j] = max(h, -l)
            bits_out[i0 + r, j0 + j] = bits_for(h, l, signed)


@nb.njit(cache=True, nogil=True, fastmath={"contract"})
def clamp_stats_dense(A, B, init, proto, lo, hi, signed, row0, row1, acc_out, nov_out, exact_out, maxp_out,
                      bits_out):
    """sequential_stats_dense for a saturating register (saturate or saturate_symmetric: [lo, hi]) in
    narrow lanes: rows row0 <= i < row1 of A (M, K) @ B (K, N), A holding the products' aligned left
    factor (a << L), A, B, lo and hi in ``proto``'s dtype (float32 or int32), a tile of ``proto``'s shape
    at a time, vectorised over its columns. Per addition: the exact running sum e += p and its largest
    and smallest value (from init and 0, as ``dot`` does), the register s = acc + p, acc = min(max(s,
    lo), hi), one overflow counted where acc != s. The caller proves every |p|, |e| and |acc| + |p| exact
    in the lanes (float32: <= 2**24, so each product, sum and clamp is the exact integer, fused or not;
    int32: < 2**31), so every lane value is the int64 kernel's. Four steps of k per load and store of the
    tile's five running arrays. Serial and nogil: callers split the rows across threads."""
    K = A.shape[1]
    N = B.shape[1]
    RB, JT = proto.shape
    nrb = (row1 - row0 + RB - 1) // RB
    njt = (N + JT - 1) // JT
    K4 = K - K % 4
    ex = np.empty_like(proto)
    mx = np.empty_like(proto)
    mn = np.empty_like(proto)
    ac = np.empty_like(proto)
    ct = np.empty_like(proto)
    for t in range(nrb * njt):
        i0 = row0 + (t // njt) * RB
        j0 = (t % njt) * JT
        rows = min(i0 + RB, row1) - i0
        cols = min(j0 + JT, N) - j0
        _start_register_tile(init, i0, j0, rows, cols, ex, ac, mx, mn, ct)
        for k in range(0, K4, 4):
            b0, b1 = B[k, j0:j0 + cols], B[k + 1, j0:j0 + cols]
            b2, b3 = B[k + 2, j0:j0 + cols], B[k + 3, j0:j0 + cols]
            for r in range(rows):
                a = A[i0 + r]
                a0, a1, a2, a3 = a[k], a[k + 1], a[k + 2], a[k + 3]
                exr, mxr, mnr, acr, ctr = ex[r], mx[r], mn[r], ac[r], ct[r]
                for j in range(cols):
                    p0, p1, p2, p3 = a0 * b0[j], a1 * b1[j], a2 * b2[j], a3 * b3[j]
                    e1 = exr[j] + p0
                    e2 = e1 + p1
                    e3 = e2 + p2
                    e4 = e3 + p3
                    exr[j] = e4
                    mxr[j] = max(max(mxr[j], e1), max(max(e2, e3), e4))
                    mnr[j] = min(min(mnr[j], e1), min(min(e2, e3), e4))
                    s1 = acr[j] + p0
                    c1 = min(max(s1, lo), hi)
                    s2 = c1 + p1
                    c2 = min(max(s2, lo), hi)
                    s3 = c2 + p2
                    c3 = min(max(s3, lo), hi)
                    s4 = c3 + p3
                    c4 = min(max(s4, lo), hi)
                    acr[j] = c4
                    ctr[j] += (c1 != s1) + (c2 != s2) + (c3 != s3) + (c4 != s4)
        for k in range(K4, K):
            b = B[k, j0:j0 + cols]
            for r in range(rows):
                a = A[i0 + r, k]
                exr, mxr, mnr, acr, ctr = ex[r], mx[r], mn[r], ac[r], ct[r]
                for j in range(cols):
                    p = a * b[j]
                    e = exr[j] + p
                    exr[j] = e
                    mxr[j] = max(mxr[j], e)
                    mnr[j] = min(mnr[j], e)
                    s = acr[j] + p
                    c = min(max(s, lo), hi)
                    ctr[j] += c != s
                    acr[j] = c
        _store_register_tile(i0, j0, rows, cols, ex, ac, mx, mn, ct, signed, acc_out, nov_out, exact_out, maxp_out,
                             bits_out)


@nb.njit(cache=True, nogil=True, fastmath={"contract"})
def wrap_stats_dense(A, B, init, proto, half, modulus, signed, row0, row1, acc_out, nov_out, exact_out, maxp_out,
                     bits_out):
    """clamp_stats_dense for a wrapping register of W bits in float32 lanes: ``modulus`` = 2**W, ``half`` =
    2**(W-1) when signed, else 0. Per addition s = acc + p, q = floor((s + half) / 2**W), acc = s - q * 2**W
    (the value of s modulo 2**W in [-half, 2**W - half)), one overflow counted where acc != s. The caller
    proves |p|, |e| and |acc| + |p| + half at most 2**24: every value is then an integer that binary32
    holds, and s / 2**W + half / 2**W = (s + half) / 2**W such an integer scaled by a power of two, which
    binary32 holds too, so each step is exact, fused or not, and every lane value is the int64 kernel's."""
    K = A.shape[1]
    N = B.shape[1]
    RB, JT = proto.shape
    nrb = (row1 - row0 + RB - 1) // RB
    njt = (N + JT - 1) // JT
    K2 = K - K % 2
    inv = np.float32(1.0) / modulus
    hinv = half * inv              # 1/2 (signed) or 0: q = floor((s + half) / 2**W), one fused step
    ex = np.empty_like(proto)
    mx = np.empty_like(proto)
    mn = np.empty_like(proto)
    ac = np.empty_like(proto)
    ct = np.empty_like(proto)
    for t in range(nrb * njt):
        i0 = row0 + (t // njt) * RB
        j0 = (t % njt) * JT
        rows = min(i0 + RB, row1) - i0
        cols = min(j0 + JT, N) - j0
        _start_register_tile(init, i0, j0, rows, cols, ex, ac, mx, mn, ct)
        for k in range(0, K2, 2):
            b0, b1 = B[k, j0:j0 + cols], B[k + 1, j0:j0 + cols]
            for r in range(rows):
                a0, a1 = A[i0 + r, k], A[i0 + r, k + 1]
                exr, mxr, mnr, acr, ctr = ex[r], mx[r], mn[r], ac[r], ct[r]
                for j in range(cols):
                    p0, p1 = a0 * b0[j], a1 * b1[j]
                    e1 = exr[j] + p0
                    e2 = e1 + p1
                    exr[j] = e2
                    mxr[j] = max(max(mxr[j], e1), e2)
                    mnr[j] = min(min(mnr[j], e1), e2)
                    s1 = acr[j] + p0
                    w1 = s1 - np.floor(s1 * inv + hinv) * modulus
                    s2 = w1 + p1
                    w2 = s2 - np.floor(s2 * inv + hinv) * modulus
                    acr[j] = w2
                    ctr[j] += (w1 != s1) + (w2 != s2)
        for k in range(K2, K):
            b = B[k, j0:j0 + cols]
            for r in range(rows):
                a = A[i0 + r, k]
                exr, mxr, mnr, acr, ctr = ex[r], mx[r], mn[r], ac[r], ct[r]
                for j in range(cols):
                    p = a * b[j]
                    e = exr[j] + p
                    exr[j] = e
                    mxr[j] = max(mxr[j], e)
                    mnr[j] = min(mnr[j], e)
                    s = acr[j] + p
                    w = s - np.floor(s * inv + hinv) * modulus
                    ctr[j] += w != s
                    acr[j] = w
        _store_register_tile(i0, j0, rows, cols, ex, ac, mx, mn, ct, signed, acc_out, nov_out, exact_out, maxp_out,
                             bits_out)


@nb.njit(cache=True)
def block_code_ranges(A, B, blk, amin, amax, bmin, bmax):
    """Per block q of ``blk`` along K: the smallest and largest code of each row of A (into amin/amax
    (Q, M)) and of each column of B (bmin/bmax (Q, N))."""
    M, K = A.shape
    N = B.shape[1]
    Q = amin.shape[0]
    for q in range(Q):
        k0, k1 = q * blk, min(K, (q + 1) * blk)
        for i in range(M):
            lo = np.int64(A[i, k0])
            hi = lo
            for k in range(k0 + 1, k1):
                v = np.int64(A[i, k])
                lo = min(lo, v)
                hi = max(hi, v)
            amin[q, i] = lo
            amax[q, i] = hi
        for j in range(N):
            bmin[q, j] = B[k0, j]
            bmax[q, j] = B[k0, j]
        for k in range(k0 + 1, k1):
            for j in range(N):
                v = np.int64(B[k, j])
                bmin[q, j] = min(bmin[q, j], v)
                bmax[q, j] = max(bmax[q, j], v)


@nb.njit(cache=True, parallel=True)
def saturate_rail_blocks(A, B, init, reg, blk, amin, amax, bmin, bmax, acc_out, nov_out):
    """Every output of the sequential saturating accumulator (saturate or saturate_symmetric: [reg.lo,
    reg.hi], reg.bits < 64, exact products aligned by a left ``reg.shift``) by blocks of ``blk`` along K,
    for a tile of rows x columns at a time, vectorised over the columns. Before each block the tile is
    tested: where every register sits on hi and every product of the block is >= 1 (the interval product
    of the row's and the column's code ranges in that block, amin/amax (Q, M), bmin/bmax (Q, N)), each
    addition exceeds hi and saturates back to it, so the block only adds its length to the overflow
    counts; likewise on lo with every product <= -1. Such a tile skips the block; any other runs it
    addition by addition (acc = clamp(acc + p), as saturate_sequential_kernel). Same results, per output,
    as the per-addition kernel. Whether the whole tile sits on a rail is found after each block it runs
    (one pass over the tile); the products' test is first tried on the tile's extreme codes (all
    operands >= 1, or all <= -1: every product has one sign), per output only when their signs mix."""
    M, K = A.shape
    N = B.shape[1]
    shift, lo, hi = reg.shift, reg.lo, reg.hi
    RB = 4
    JT = 256
    Q = amin.shape[0]
    nrb = (M + RB - 1) // RB
    njt = (N + JT - 1) // JT
    for t in nb.prange(nrb * njt):
        i0 = (t // njt) * RB
        j0 = (t % njt) * JT
        rows = min(i0 + RB, M) - i0
        cols = min(j0 + JT, N) - j0
        acc = np.empty((RB, JT), dtype=np.int64)
        cnt = np.zeros((RB, JT), dtype=np.int64)
        for r in range(rows):
            for j in range(cols):
                acc[r, j] = init[i0 + r, j0 + j]
        rail = 0                      # 1: every register of the tile on hi, -1: on lo, 0: neither
        for q in range(Q):
            k0, k1 = q * blk, min(K, (q + 1) * blk)
            if rail != 0:
                a_lo, a_hi = amin[q, i0], amax[q, i0]
                for r in range(1, rows):
                    a_lo = min(a_lo, amin[q, i0 + r])
                    a_hi = max(a_hi, amax[q, i0 + r])
                b_lo, b_hi = bmin[q, j0], bmax[q, j0]
                for j in range(1, cols):
                    b_lo = min(b_lo, bmin[q, j0 + j])
                    b_hi = max(b_hi, bmax[q, j0 + j])
                same = (a_lo >= 1 and b_lo >= 1) or (a_hi <= -1 and b_hi <= -1)     # every product >= 1
                opposite = (a_lo >= 1 and b_hi <= -1) or (a_hi <= -1 and b_lo >= 1)  # every product <= -1
                skip = (rail == 1 and same) or (rail == -1 and opposite)
                if not skip and not same and not opposite:   # mixed signs: the products output by output
                    skip = True
                    for r in range(rows):
                        ra_lo, ra_hi = amin[q, i0 + r], amax[q, i0 + r]
                        for j in range(cols):
                            rb_lo, rb_hi = bmin[q, j0 + j], bmax[q, j0 + j]
                            p1, p2, p3, p4 = ra_lo * rb_lo, ra_lo * rb_hi, ra_hi * rb_lo, ra_hi * rb_hi
                            if rail == 1:
                                if min(min(p1, p2), min(p3, p4)) < 1:
                                    skip = False
                            elif max(max(p1, p2), max(p3, p4)) > -1:
                                skip = False
                        if not skip:
                            break
                if skip:
                    for r in range(rows):
                        for j in range(cols):
                            cnt[r, j] += k1 - k0
                    continue
            for k in range(k0, k1):
                b = B[k, j0:j0 + cols]
                for r in range(rows):
                    a = A[i0 + r, k]
                    accr = acc[r]
                    cntr = cnt[r]
                    for j in range(cols):
                        s = accr[j] + ((a * b[j]) << shift)
                        c = min(max(s, lo), hi)
                        cntr[j] += c != s
                        accr[j] = c
            on_hi = True
            on_lo = True
            for r in range(rows):
                for j in range(cols):
                    v = acc[r, j]
                    on_hi &= v == hi
                    on_lo &= v == lo
            rail = 1 if on_hi else -1 if on_lo else 0
        for r in range(rows):
            for j in range(cols):
                acc_out[i0 + r, j0 + j] = acc[r, j]
                nov_out[i0 + r, j0 + j] = cnt[r, j]
