"""Float-accumulator GEMM kernels vectorised over output columns: one output row per task, the reduction
stepped k by k and every step applied to all N columns of the row at once (independent lanes, so the
compiler can use SIMD and the CPU is not stalled on one dependent chain per output).

Every kernel computes, for every output, exactly the additions of ``kernels.float_accum.dot_*`` in
the same order, so the registers are bit-identical; the fast kernels do so with cheaper arithmetic that
the caller has proved equivalent (see ``fxsim.engines.floating.choose_float_path``):

- ``f32_*``: the register and the products are binary32 numbers and each addition is one binary32
  addition (correctly rounded half even by the CPU), optionally followed by a round-half-even to a
  narrower target (``man`` < 23), which equals a single correct rounding of the exact sum when
  Figueroa's double-rounding condition holds (see the chooser). ``f32_seq`` and ``f32_tree`` are
  compiled with ``fastmath={"contract"}`` only (never reassociation: the order of the additions is the
  datapath), so LLVM may fuse ``acc + a * b`` into one FMA: the caller proved every product exact in
  binary32, where fma(a, b, acc) = round(a*b + acc) = round(round(a*b) + acc) = fl(acc + fl(a * b)).
  They work on ROWS x TILE tiles of outputs (register blocking: each loaded stretch of a row of B serves
  ROWS rows of A, and the tile stays in L1 across k); ``f32_chunked`` runs a row at a time without
  contraction.
- ``gen_*``: the general path: per column the very same scalar ``fproduct``/``fadd`` as the reference
  kernels (``kernels.float_accum.outputs_*``) (TwoSum + correct rounding, stochastic bits from the same (seed, stream, counter)), applied to
  a row of independent columns.

Overflow: the ``f32_*`` kernels do not count; the caller re-runs the scalar kernel on the (rare) outputs
whose register ended non-finite (under IEEE overflow an addition that overflows leaves inf or NaN, and
inf/NaN propagate through every later addition and adder-tree level to the output, so a finite output
proves zero overflows).
"""

import numba as nb
import numpy as np

from .float_accum import BIAS_COUNTER, CHUNKED, SEQUENTIAL, TREE, FloatConfig, fadd, fproduct
from .random import random_bits

_INF_BITS = np.uint32(0x7F800000)
_ABS = np.uint32(0x7FFFFFFF)
_SIGN = np.uint32(0x80000000)


@nb.njit(cache=True, inline="always")
def _round_row(xu, sh, maxbits):
    """In place on binary32 bit patterns: round half even to a significand of 24 - sh bits; magnitudes
    beyond ``maxbits`` (the target's largest finite value) become inf; NaN stays NaN."""
    if sh == 0:
        return
    one = np.uint32(1)
    half = (one << np.uint32(sh - 1)) - one
    mask = ~((one << np.uint32(sh)) - one)
    for j in range(xu.shape[0]):
        u = xu[j]
        mag = u & _ABS
        r = ((mag + half + ((mag >> np.uint32(sh)) & one)) & mask)
        if r > maxbits:
            r = _INF_BITS
        if mag > _INF_BITS:
            r = mag
        xu[j] = (u & _SIGN) | r


@nb.njit(cache=True, inline="always")
def _row_add(dst, src, tmp, tmpu, sh, maxbits):
    """dst = round(dst + src) elementwise (binary32 addition, then the target rounding)."""
    if sh == 0:
        for j in range(dst.shape[0]):
            dst[j] = dst[j] + src[j]
        return
    for j in range(dst.shape[0]):
        tmp[j] = dst[j] + src[j]
    _round_row(tmpu, sh, maxbits)
    for j in range(dst.shape[0]):
        dst[j] = tmp[j]


@nb.njit(cache=True, inline="always")
def _row_mac(acc, a, brow, tmp, tmpu, sh, maxbits):
    """acc = round(acc + a * brow) elementwise (the product is exact in binary32)."""
    if sh == 0:
        for j in range(acc.shape[0]):
            acc[j] = acc[j] + a * brow[j]
        return
    for j in range(acc.shape[0]):
        tmp[j] = acc[j] + a * brow[j]
    _round_row(tmpu, sh, maxbits)
    for j in range(acc.shape[0]):
        acc[j] = tmp[j]


@nb.njit(cache=True, inline="always")
def _row_pairwise(reg, n, tmp, tmpu, sh, maxbits):
    """The adder tree of ``float_accum._pairwise`` on rows: reg[q] = reg[2q] + reg[2q+1] per level, an
    odd last row passing through unrounded; the root ends in reg[0]."""
    while n > 1:
        for q in range(n // 2):
            for j in range(reg.shape[1]):
                tmp[j] = reg[2 * q, j] + reg[2 * q + 1, j]
            _round_row(tmpu, sh, maxbits)
            for j in range(reg.shape[1]):
                reg[q, j] = tmp[j]
        if n % 2 == 1:
            for j in range(reg.shape[1]):
                reg[n // 2, j] = reg[n - 1, j]
        n = (n + 1) // 2


ROWS = 4    # rows of A per task in the sequential and tree kernels: each loaded row of B serves ROWS rows
TILE = 64   # output columns per task: the ROWS x TILE register tile stays in L1 across the whole k loop


@nb.njit(cache=True, inline="always")
def _tile_bounds(t, ntile, M, N):
    i0 = (t // ntile) * ROWS
    j0 = (t % ntile) * TILE
    return i0, min(i0 + ROWS, M), j0, min(j0 + TILE, N)


@nb.njit(cache=True, inline="always")
def _round_tile(xu, nr, w, sh, maxbits):
    """``_round_row`` on the first ``w`` columns of the first ``nr`` rows of a (ROWS, TILE) bit tile."""
    for r in range(nr):
        _round_row(xu[r, :w], sh, maxbits)


@nb.njit(cache=True, inline="always")
def _tile_finish(acc, accu, init_root, post, has_post, i0, i1, j0, j1, sh, maxbits, out):
    """out = round(round(acc) + post) on the tile (``acc`` already holds the register)."""
    nr, w = i1 - i0, j1 - j0
    if has_post:
        for r in range(nr):
            for j in range(w):
                acc[r, j] = acc[r, j] + post[i0 + r, j0 + j]
        if sh:
            _round_tile(accu, nr, w, sh, maxbits)
    for r in range(nr):
        for j in range(w):
            out[i0 + r, j0 + j] = acc[r, j]


@nb.njit(cache=True, inline="always")
def _seq_tile(A, B, acc, accu, i0, j0, nr, w, sh, maxbits):
    """acc[r] = round(acc[r] + A[i0 + r, k] * B[k, j0:j0 + w]) for k = 0..K-1, r < nr."""
    for k in range(A.shape[1]):
        for r in range(nr):
            a = A[i0 + r, k]
            for j in range(w):
                acc[r, j] = acc[r, j] + a * B[k, j0 + j]
            if sh:
                _round_row(accu[r, :w], sh, maxbits)


@nb.njit(cache=True, parallel=True, fastmath={"contract"})
def f32_seq(A, B, init, post, has_post, sh, maxbits, out):
    """SEQUENTIAL order: acc = init; acc = round(acc + a[k] * b[k]) for k = 0..K-1 (then + post).
    A (M, K), B (K, N), init/post/out (M, N): binary32, C-contiguous. Register blocking: a task is a
    ROWS x TILE tile of outputs held in a small scratch tile across the whole k loop; each loaded
    stretch of a row of B serves ROWS rows of A. Fused multiply-add is allowed (``fastmath={"contract"}``,
    no reassociation): the caller proved every product a * b exact in binary32, so
    fma(a, b, acc) = round(a * b + acc) = round(round(a * b) + acc), the very addition of the datapath;
    the additions of each output stay in the order of k. A narrower target (sh > 0) runs ``narrow_seq``."""
    M, K = A.shape
    N = B.shape[1]
    ntile = (N + TILE - 1) // TILE
    nblk = (M + ROWS - 1) // ROWS
    for t in nb.prange(nblk * ntile):
        i0, i1, j0, j1 = _tile_bounds(t, ntile, M, N)
        nr, w = i1 - i0, j1 - j0
        acc = np.zeros((ROWS, TILE), dtype=np.float32)
        accu = acc.view(np.uint32)
        for r in range(nr):
            for j in range(w):
                acc[r, j] = init[i0 + r, j0 + j]
        if nr == ROWS and w == TILE:
            for k in range(K):
                a0 = A[i0, k]
                a1 = A[i0 + 1, k]
                a2 = A[i0 + 2, k]
                a3 = A[i0 + 3, k]
                for j in range(TILE):
                    b = B[k, j0 + j]
                    acc[0, j] = acc[0, j] + a0 * b
                    acc[1, j] = acc[1, j] + a1 * b
                    acc[2, j] = acc[2, j] + a2 * b
                    acc[3, j] = acc[3, j] + a3 * b
        else:
            _seq_tile(A, B, acc, accu, i0, j0, nr, w, sh, maxbits)
        _tile_finish(acc, accu, init, post, has_post, i0, i1, j0, j1, sh, maxbits, out)


@nb.njit(cache=True, parallel=True, fastmath={"contract"})
def narrow_seq(A, B, init, post, has_post, sh, maxbits, out):
    """f32_seq for a target narrower than binary32 (sh > 0), its own kernel so that each compiles only its
    path: blocks of ROWS whole rows, each addition followed by the target rounding of the row (which
    vectorises best over long rows)."""
    M, K = A.shape
    N = B.shape[1]
    nblk = (M + ROWS - 1) // ROWS
    for blk in nb.prange(nblk):
        i0 = blk * ROWS
        i1 = min(i0 + ROWS, M)
        racc = init[i0:i1].copy()
        tmp = np.empty(N, dtype=np.float32)
        tmpu = tmp.view(np.uint32)
        for k in range(K):
            brow = B[k]
            for r in range(i1 - i0):
                _row_mac(racc[r], A[i0 + r, k], brow, tmp, tmpu, sh, maxbits)
        for r in range(i1 - i0):
            if has_post:
                _row_add(racc[r], post[i0 + r], tmp, tmpu, sh, maxbits)
            out[i0 + r] = racc[r]


@nb.njit(cache=True, inline="always")
def _stack_add(stack, stacku, s, nr, w, sh, maxbits):
    """stack[s] = round(stack[s] + stack[s + 1]) on the tile."""
    for r in range(nr):
        for j in range(w):
            stack[s, r, j] = stack[s, r, j] + stack[s + 1, r, j]
    if sh:
        for r in range(nr):
            _round_row(stacku[s, r, :w], sh, maxbits)


@nb.njit(cache=True, inline="always")
def _tree_tiles(A, B, stack, stacku, i0, j0, nr, w, sh, maxbits):
    """Push the sums of the product pairs (k = 2q, 2q + 1) onto the stack, adding complete sibling
    blocks (while bit t of q is set), then an odd last product; returns the stack height."""
    K = A.shape[1]
    top = 0
    for q in range(K // 2):
        k = 2 * q
        for r in range(nr):
            a0 = A[i0 + r, k]
            a1 = A[i0 + r, k + 1]
            for j in range(w):
                stack[top, r, j] = a0 * B[k, j0 + j] + a1 * B[k + 1, j0 + j]
        if sh:
            for r in range(nr):
                _round_row(stacku[top, r, :w], sh, maxbits)
        top += 1
        c = q
        while c & 1:
            _stack_add(stack, stacku, top - 2, nr, w, sh, maxbits)
            top -= 1
            c >>= 1
    if K % 2 == 1:
        for r in range(nr):
            a = A[i0 + r, K - 1]
            for j in range(w):
                stack[top, r, j] = a * B[K - 1, j0 + j]
        top += 1
    return top


@nb.njit(cache=True, parallel=True, fastmath={"contract"})
def f32_tree(A, B, init, post, has_post, sh, maxbits, out):
    """TREE order: the products pairwise (odd last passes through), then init + root (then + post).

    The level-by-level tree of ``float_accum._pairwise`` adds, at level L, the aligned blocks
    [q 2^L, (q+1) 2^L) of k (the last one clipped at K); it is computed here in one pass over k with a
    stack of partial tiles (a binary counter): after product k is pushed, the two top entries are added
    while bit t of k is set (t = 0, 1, ...), each addition joining two complete sibling blocks; at the
    end the stack holds the blocks of K's binary digits, largest at the bottom, and the clipped nodes of
    the tree are exactly the right fold stack[0] + (stack[1] + (... + stack[top])). Additions are
    commutative (one rounding of the exact sum), so the operand order within an adder does not matter.
    Tiles of ROWS x TILE outputs as ``f32_seq``; products are exact in binary32 (no rounding at the leaves)."""
    M, K = A.shape
    N = B.shape[1]
    ntile = (N + TILE - 1) // TILE
    nblk = (M + ROWS - 1) // ROWS
    depth = 2
    while (1 << (depth - 2)) <= K:
        depth += 1
    for t in nb.prange(nblk * ntile):
        i0, i1, j0, j1 = _tile_bounds(t, ntile, M, N)
        nr, w = i1 - i0, j1 - j0
        stack = np.zeros((depth, ROWS, TILE), dtype=np.float32)
        stacku = stack.view(np.uint32)
        if sh == 0 and nr == ROWS and w == TILE:     # constant bounds: the compiler unrolls and vectorises
            top = _tree_tiles(A, B, stack, stacku, i0, j0, ROWS, TILE, 0, maxbits)
        else:
            top = _tree_tiles(A, B, stack, stacku, i0, j0, nr, w, sh, maxbits)
        for s in range(top - 2, -1, -1):
            _stack_add(stack, stacku, s, nr, w, sh, maxbits)
        # the root (+0 when K == 0) is stack[0]; the register: init + root
        for r in range(nr):
            for j in range(w):
                stack[1, r, j] = stack[0, r, j]
                stack[0, r, j] = init[i0 + r, j0 + j]
        _stack_add(stack, stacku, 0, nr, w, sh, maxbits)
        acc = stack[0]
        _tile_finish(acc, stacku[0], init, post, has_post, i0, i1, j0, j1, sh, maxbits, out)


@nb.njit(cache=True, parallel=True)
def f32_chunked(A, B, init, post, has_post, sh, maxbits, lanes, combine_tree, out):
    """CHUNKED order: lane l owns k in [l*C, (l+1)*C) (C = ceil(K / lanes)), lane 0 starts at init, the
    others at +0; then the lanes are combined sequentially or by the adder tree."""
    M, K = A.shape
    N = B.shape[1]
    P = lanes
    C = (K + P - 1) // P
    for i in nb.prange(M):
        reg = np.zeros((P, N), dtype=np.float32)
        reg[0] = init[i]
        tmp = np.empty(N, dtype=np.float32)
        tmpu = tmp.view(np.uint32)
        for c in range(C):
            for l in range(P):
                k = l * C + c
                if k < K:
                    _row_mac(reg[l], A[i, k], B[k], tmp, tmpu, sh, maxbits)
        if combine_tree:
            _row_pairwise(reg, P, tmp, tmpu, sh, maxbits)
        else:
            for l in range(1, P):
                _row_add(reg[0], reg[l], tmp, tmpu, sh, maxbits)
        acc = reg[0]
        if has_post:
            _row_add(acc, post[i], tmp, tmpu, sh, maxbits)
        out[i] = acc


# --------------------------------------------------------------------------------------------------
# The general path: the reference kernel's scalar arithmetic, one row of columns at a time
# --------------------------------------------------------------------------------------------------
@nb.njit(cache=True, inline="always")
def _gen_mac(acc, nov, a, brow, cfg, base, k, ctr):
    for j in range(acc.shape[0]):
        stream = base + j
        p = fproduct(a, brow[j], cfg, stream, k)
        y, of = fadd(acc[j], p, cfg, stream, ctr)
        acc[j] = y
        nov[j] += of


@nb.njit(cache=True, inline="always")
def _gen_add(dst, src, nov, cfg, base, ctr):
    for j in range(dst.shape[0]):
        y, of = fadd(dst[j], src[j], cfg, base + j, ctr)
        dst[j] = y
        nov[j] += of


@nb.njit(cache=True, inline="always")
def _gen_pairwise(reg, n, nov, cfg, base, ctr):
    while n > 1:
        for q in range(n // 2):
            for j in range(reg.shape[1]):
                y, of = fadd(reg[2 * q, j], reg[2 * q + 1, j], cfg, base + j, ctr)
                reg[q, j] = y
                nov[j] += of
            ctr += 1
        if n % 2 == 1:
            for j in range(reg.shape[1]):
                reg[n // 2, j] = reg[n - 1, j]
        n = (n + 1) // 2
    return ctr


@nb.njit(cache=True, inline="always")
def _gen_finish(acc, nov, post, has_post, cfg, i, base, acc_out, nov_out):
    if has_post:
        _gen_add(acc, post[i], nov, cfg, base, BIAS_COUNTER)
    acc_out[i] = acc
    nov_out[i] = nov


# The general path, one kernel per order: ``kernels.float_accum.outputs_*``'s arithmetic (every rounding
# mode and overflow behaviour) with the outputs of a row advanced together. A (M, K), B (K, N) float64;
# the configuration as a FloatConfig's three parts.
@nb.njit(cache=True, parallel=True)
def gen_seq(A, B, init, post, has_post, acc_reg, prod_reg, options, acc_out, nov_out):
    """SEQUENTIAL order, a row of outputs at a time."""
    M, K = A.shape
    N = B.shape[1]
    for i in nb.prange(M):
        cfg = FloatConfig(acc_reg, prod_reg, options)
        base = np.int64(i) * N
        nov = np.zeros(N, dtype=np.int64)
        acc = init[i].copy()
        for k in range(K):
            _gen_mac(acc, nov, A[i, k], B[k], cfg, base, k, k)
        _gen_finish(acc, nov, post, has_post, cfg, i, base, acc_out, nov_out)


@nb.njit(cache=True, parallel=True)
def gen_chunked(A, B, init, post, has_post, acc_reg, prod_reg, options, acc_out, nov_out):
    """CHUNKED order, a row of outputs at a time."""
    M, K = A.shape
    N = B.shape[1]
    P = options.lanes
    C = (K + P - 1) // P
    for i in nb.prange(M):
        cfg = FloatConfig(acc_reg, prod_reg, options)
        base = np.int64(i) * N
        nov = np.zeros(N, dtype=np.int64)
        reg = np.zeros((P, N), dtype=np.float64)
        reg[0] = init[i]
        ctr = 0
        for c in range(C):
            for l in range(P):
                k = l * C + c
                if k < K:
                    _gen_mac(reg[l], nov, A[i, k], B[k], cfg, base, k, ctr)
                    ctr += 1
        if not cfg.options.tree_combine:
            for l in range(1, P):
                _gen_add(reg[0], reg[l], nov, cfg, base, ctr)
                ctr += 1
        else:
            ctr = _gen_pairwise(reg, P, nov, cfg, base, ctr)
        _gen_finish(reg[0], nov, post, has_post, cfg, i, base, acc_out, nov_out)


@nb.njit(cache=True, parallel=True)
def gen_tree(A, B, init, post, has_post, acc_reg, prod_reg, options, acc_out, nov_out):
    """TREE order, a row of outputs at a time."""
    M, K = A.shape
    N = B.shape[1]
    for i in nb.prange(M):
        cfg = FloatConfig(acc_reg, prod_reg, options)
        base = np.int64(i) * N
        nov = np.zeros(N, dtype=np.int64)
        reg = np.zeros((max(K, 1), N), dtype=np.float64)
        for k in range(K):
            a = A[i, k]
            for j in range(N):
                reg[k, j] = fproduct(a, B[k, j], cfg, base + j, k)
        ctr = _gen_pairwise(reg, K, nov, cfg, base, np.int64(0))   # not a literal 0: one signature
        acc = init[i].copy()
        _gen_add(acc, reg[0], nov, cfg, base, ctr)
        _gen_finish(acc, nov, post, has_post, cfg, i, base, acc_out, nov_out)


GEN_KERNELS = {SEQUENTIAL: gen_seq, CHUNKED: gen_chunked, TREE: gen_tree}


# --------------------------------------------------------------------------------------------------
# Stochastic rounding where the sum of two addends is exact in float64
# --------------------------------------------------------------------------------------------------
@nb.njit(cache=True, inline="always")
def _sr_row(x, seed, base, ctr, r, man, emin, maxbits):
    """In place: round each exact float64 sum x[j] stochastically to the register: r random bits u from
    (seed, stream base + j, counter ctr) are added r bits below the kept LSB of |x|, then the magnitude
    is truncated there -- ``round_to_float``'s STOCHASTIC on an exact x. The caller proved every nonzero
    |x| >= 2**(emin - man) (a normal float64), so the kept LSB lies at bit s = 52 - man + max(0, emin - e)
    <= 52 of the float64 significand (e = floor(log2 |x|)), and s >= 52 - man >= r: adding u << (s - r)
    to the magnitude's bit pattern and clearing the bits below s is that rounding (a carry moves into
    the exponent field). Magnitudes beyond ``maxbits`` become inf (stochastic rounding never rounds
    toward zero on overflow); zeros, inf and NaN pass through."""
    xi = x.view(np.int64)
    for j in range(x.shape[0]):
        b = xi[j]
        mag = b & 0x7FFFFFFFFFFFFFFF
        eb = (mag >> 52) - 1023
        s = 52 - man + max(0, emin - eb)
        rb = (mag + (random_bits(seed, base + j, ctr, r) << (s - r))) & ~((np.int64(1) << s) - 1)
        if rb > maxbits:
            rb = _INF64
        if mag == 0 or mag >= _INF64:
            rb = mag
        xi[j] = (b & _SIGN64) | rb


_INF64 = np.int64(0x7FF0000000000000)
_SIGN64 = np.int64(-0x8000000000000000)


@nb.njit(cache=True, inline="always")
def _sr_mac(acc, a, brow, tmp, seed, base, ctr, r, man, emin, maxbits):
    for j in range(acc.shape[0]):
        tmp[j] = acc[j] + a * brow[j]
    _sr_row(tmp, seed, base, ctr, r, man, emin, maxbits)
    for j in range(acc.shape[0]):
        acc[j] = tmp[j]


@nb.njit(cache=True, inline="always")
def _sr_add(dst, src, tmp, seed, base, ctr, r, man, emin, maxbits):
    for j in range(dst.shape[0]):
        tmp[j] = dst[j] + src[j]
    _sr_row(tmp, seed, base, ctr, r, man, emin, maxbits)
    for j in range(dst.shape[0]):
        dst[j] = tmp[j]


@nb.njit(cache=True, parallel=True)
def sr_seq(A, B, init, post, has_post, seed, r, man, emin, maxbits, out):
    """SEQUENTIAL order with stochastic rounding of exact float64 sums (``_sr_row``); counter k. Blocks
    of ROWS rows share each row of B."""
    M, K = A.shape
    N = B.shape[1]
    nblk = (M + ROWS - 1) // ROWS
    for blk in nb.prange(nblk):
        i0 = blk * ROWS
        i1 = min(i0 + ROWS, M)
        acc = init[i0:i1].copy()
        tmp = np.empty(N, dtype=np.float64)
        for k in range(K):
            brow = B[k]
            for q in range(i1 - i0):
                _sr_mac(acc[q], A[i0 + q, k], brow, tmp, seed, np.int64(i0 + q) * N, np.int64(k), r, man, emin,
                        maxbits)
        for q in range(i1 - i0):
            if has_post:
                _sr_add(acc[q], post[i0 + q], tmp, seed, np.int64(i0 + q) * N, BIAS_COUNTER, r, man, emin, maxbits)
            out[i0 + q] = acc[q]


@nb.njit(cache=True, parallel=True)
def sr_chunked(A, B, init, post, has_post, seed, r, man, emin, maxbits, lanes, combine_tree, out):
    """CHUNKED order (``f32_chunked``'s schedule) with stochastic rounding; counters as the reference."""
    M, K = A.shape
    N = B.shape[1]
    P = lanes
    C = (K + P - 1) // P
    for i in nb.prange(M):
        base = np.int64(i) * N
        reg = np.zeros((P, N), dtype=np.float64)
        reg[0] = init[i]
        tmp = np.empty(N, dtype=np.float64)
        ctr = np.int64(0)
        for c in range(C):
            for l in range(P):
                k = l * C + c
                if k < K:
                    _sr_mac(reg[l], A[i, k], B[k], tmp, seed, base, ctr, r, man, emin, maxbits)
                    ctr += 1
        if combine_tree:
            n = P
            while n > 1:
                for q in range(n // 2):
                    for j in range(N):
                        tmp[j] = reg[2 * q, j] + reg[2 * q + 1, j]
                    _sr_row(tmp, seed, base, ctr, r, man, emin, maxbits)
                    ctr += 1
                    for j in range(N):
                        reg[q, j] = tmp[j]
                if n % 2 == 1:
                    for j in range(N):
                        reg[n // 2, j] = reg[n - 1, j]
                n = (n + 1) // 2
        else:
            for l in range(1, P):
                _sr_add(reg[0], reg[l], tmp, seed, base, ctr, r, man, emin, maxbits)
                ctr += 1
        acc = reg[0]
        if has_post:
            _sr_add(acc, post[i], tmp, seed, base, BIAS_COUNTER, r, man, emin, maxbits)
        out[i] = acc


@nb.njit(cache=True, parallel=True)
def sr_tree(A, B, init, post, has_post, seed, r, man, emin, maxbits, out):
    """TREE order with stochastic rounding: products pairwise (counters 0, 1, ... per adder), then
    init + root."""
    M, K = A.shape
    N = B.shape[1]
    for i in nb.prange(M):
        base = np.int64(i) * N
        reg = np.zeros((max(K, 1), N), dtype=np.float64)
        for k in range(K):
            a = A[i, k]
            for j in range(N):
                reg[k, j] = a * B[k, j]
        tmp = np.empty(N, dtype=np.float64)
        ctr = np.int64(0)
        n = K
        while n > 1:
            for q in range(n // 2):
                for j in range(N):
                    tmp[j] = reg[2 * q, j] + reg[2 * q + 1, j]
                _sr_row(tmp, seed, base, ctr, r, man, emin, maxbits)
                ctr += 1
                for j in range(N):
                    reg[q, j] = tmp[j]
            if n % 2 == 1:
                for j in range(N):
                    reg[n // 2, j] = reg[n - 1, j]
            n = (n + 1) // 2
        acc = init[i].copy()
        _sr_add(acc, reg[0], tmp, seed, base, ctr, r, man, emin, maxbits)
        if has_post:
            _sr_add(acc, post[i], tmp, seed, base, BIAS_COUNTER, r, man, emin, maxbits)
        out[i] = acc
