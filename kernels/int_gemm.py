"""Integer MAC-array kernels: one output element = a dot product through the product register, the
alignment shifter and an accumulator that applies its overflow mode after every single addition.

Configuration travels as an int64 array ``cfg`` (indices below) so kernels see numbers only.
Every exact partial sum is tracked too (the caller has proved it fits int64), for the statistics.
"""
import numba as nb
import numpy as np

from .rounding import SATURATE_ZERO, WRAP, overflow, shift_round, wrap

# cfg layout
P_SHIFT, P_BITS, P_SIGNED, P_LO, P_HI, P_MODE, P_OVF = 0, 1, 2, 3, 4, 5, 6
A_SHIFT, A_MODE = 7, 8
BITS, SIGNED, LO, HI, OVF = 9, 10, 11, 12, 13
ORDER, LANES, COMBINE = 14, 15, 16
CFG_SIZE = 17
SEQUENTIAL, TREE, CHUNKED = 0, 1, 2


@nb.njit(cache=True, inline="always")
def product(a, b, cfg):
    """Multiplier -> optional product register (cut with rounding, then overflow) -> alignment shifter."""
    p = a * b
    if cfg[P_BITS] > 0:
        s = cfg[P_SHIFT]
        if s > 0:
            p = shift_round(p, s, cfg[P_MODE], 0)
        elif s < 0:
            p = p << (-s)
        if p < cfg[P_LO] or p > cfg[P_HI]:
            p = overflow(p, cfg[P_LO], cfg[P_HI], cfg[P_BITS], cfg[P_SIGNED] != 0, cfg[P_OVF])
    s = cfg[A_SHIFT]
    if s > 0:
        p = shift_round(p, s, cfg[A_MODE], 0)
    elif s < 0:
        p = p << (-s)
    return p


@nb.njit(cache=True, inline="always")
def add(acc, p, bits, signed, lo, hi, ovf):
    """One adder of a ``bits``-wide register with range [lo, hi]: returns (register value, overflowed)."""
    if bits >= 64:
        s = acc + p   # wraps modulo 2**64 in int64
        if (acc >= 0 and p >= 0 and s < 0) or (acc < 0 and p < 0 and s >= 0):
            if ovf == WRAP:
                return s, 1
            if ovf == SATURATE_ZERO:
                return np.int64(0), 1
            return (hi if p > 0 else lo), 1
        if s < lo or s > hi:
            return overflow(s, lo, hi, bits, signed, ovf), 1
        return s, 0
    s = acc + p
    if s < lo or s > hi:
        return overflow(s, lo, hi, bits, signed, ovf), 1
    return s, 0


@nb.njit(cache=True, inline="always")
def _range(bits, signed, ovf_sym):
    if signed:
        hi = (np.int64(1) << (bits - 1)) - 1 if bits < 64 else np.int64(9223372036854775807)
        lo = -hi - 1
        if ovf_sym:
            lo = -hi
    else:
        lo = np.int64(0)
        hi = (np.int64(1) << bits) - 1
    return lo, hi


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
            llo, lhi = _range(lb, signed, lo == -hi and signed)
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
def dot(a, b, init, cfg, levels, trace, record, stats):
    """One output: returns (accumulator, overflow count); stats = (max exact partial sum, min exact
    partial sum, exact final sum).

    Orders: SEQUENTIAL acc = init, acc += p[k]; CHUNKED lanes over contiguous chunks (lane 0 starts at
    init), then a sequential or tree combine; TREE pairwise levels (odd last term passes through), the
    root added to init at the accumulator's width. ``trace`` receives register values in cycle order.
    """
    K = a.shape[0]
    bits, signed, lo, hi, ovf = cfg[BITS], cfg[SIGNED] != 0, cfg[LO], cfg[HI], cfg[OVF]
    order = cfg[ORDER]
    nov = 0
    mx = init if init > 0 else np.int64(0)
    mn = init if init < 0 else np.int64(0)
    if order == SEQUENTIAL:
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
    if order == CHUNKED:
        P = cfg[LANES]
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
        if cfg[COMBINE] == 0:
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
    # TREE
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
    of, t, mx, mn = _pairwise(reg, ex, K, levels, bits, signed, lo, hi, ovf, trace, record, 0, mx, mn)
    nov += of
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


@nb.njit(cache=True, parallel=True)
def gemm_kernel(A, Bt, init, cfg, levels, acc_out, nov_out, max_out, min_out, exact_out):
    """All outputs of A (M,K) @ B (K,N), B given transposed (N,K); parallel over outputs."""
    M = A.shape[0]
    N = Bt.shape[0]
    dummy = np.empty(1, dtype=np.int64)
    for idx in nb.prange(M * N):
        i = idx // N
        j = idx % N
        st = np.empty(4, dtype=np.int64)
        acc, nov = dot(A[i], Bt[j], init[i, j], cfg, levels, dummy, False, st)
        acc_out[i, j] = acc
        nov_out[i, j] = nov
        max_out[i, j] = st[0]
        min_out[i, j] = st[1]
        exact_out[i, j] = st[2]


@nb.njit(cache=True)
def trace_one(a, b, init, cfg, levels, trace):
    """The per-cycle register values of one output (same arithmetic as gemm_kernel); returns the number
    of cycles written to ``trace``."""
    st = np.empty(4, dtype=np.int64)
    dot(a, b, init, cfg, levels, trace, True, st)
    return st[3]


@nb.njit(cache=True, parallel=True)
def gemm_subset_kernel(A, Bt, init, cfg, levels, rows, cols, acc_out, nov_out):
    """Only the outputs (rows[t], cols[t]) -- those a bound could not prove overflow-free."""
    dummy = np.empty(1, dtype=np.int64)
    for t in nb.prange(rows.shape[0]):
        i = rows[t]
        j = cols[t]
        st = np.empty(4, dtype=np.int64)
        acc, nov = dot(A[i], Bt[j], init[i, j], cfg, levels, dummy, False, st)
        acc_out[i, j] = acc
        nov_out[i, j] = nov


@nb.njit(cache=True, nogil=True)
def saturate_sequential_kernel(A, Bt, start_k, start_acc, shift, lo, hi, rows, cols, acc_out, nov_out):
    """The common case, specialised: exact products aligned by a left ``shift``, one sequential
    saturating accumulator in [lo, hi] (bits < 64). Output t = (rows[t], cols[t]) starts at cycle
    start_k[t] with the register holding start_acc[t] (cycle 0 and the initial value for a full run; a
    later cycle and the exact partial sum there when the cycles before are proven free of overflow).
    Bt may hold B's codes as floats (exact integers, |b| <= 2**24 in float32). Same results as gemm_kernel
    for that datapath. Serial and nogil: callers split the outputs across
    threads (fxsim.blas_threads), so no OpenMP team is left spinning next to the BLAS calls."""
    K = A.shape[1]
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


@nb.njit(cache=True, parallel=True)
def sequential_stats_dense(A, B, init, shift, bits, signed, lo, hi, mode, acc_out, nov_out, max_out, min_out,
                           exact_out):
    """gemm_kernel for the common datapath, vectorised across output columns: exact products aligned by a
    left ``shift``, one sequential accumulator of ``bits`` < 64 bits in [lo, hi] whose overflow ``mode``
    (WRAP, SATURATE, SATURATE_SYMMETRIC or SATURATE_ZERO) applies after every addition. For each k every
    column j of a row block takes the addition, while the exact running sum, its extremes (starting from
    init and 0, as ``dot`` does) and the overflow count are kept per output. B is (K, N)."""
    M, K = A.shape
    N = B.shape[1]
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


@nb.njit(cache=True, parallel=True)
def saturate_sequential_dense(A, B, init, shift, lo, hi, acc_out, nov_out):
    """Every output of the sequential saturating accumulator (exact products aligned by a left ``shift``,
    range [lo, hi], bits < 64), vectorised across output columns: for each k the register of every
    column j of a row block takes acc = clamp(acc + a[i, k] * b[k, j]). Same arithmetic, per output and
    per addition, as saturate_sequential_kernel; B is (K, N) here."""
    M, K = A.shape
    N = B.shape[1]
    RB = 4
    nblk = (M + RB - 1) // RB
    for blk in nb.prange(nblk):
        i0 = blk * RB
        i1 = min(i0 + RB, M)
        acc = np.empty((RB, N), dtype=np.int64)
        cnt = np.zeros((RB, N), dtype=np.int64)
        for r in range(i1 - i0):
            for j in range(N):
                acc[r, j] = init[i0 + r, j]
        for k in range(K):
            b = B[k]
            for r in range(i1 - i0):
                a = A[i0 + r, k]
                accr = acc[r]
                cntr = cnt[r]
                for j in range(N):
                    s = accr[j] + ((a * b[j]) << shift)
                    c = min(max(s, lo), hi)
                    cntr[j] += c != s
                    accr[j] = c
        for r in range(i1 - i0):
            for j in range(N):
                acc_out[i0 + r, j] = acc[r, j]
                nov_out[i0 + r, j] = cnt[r, j]
