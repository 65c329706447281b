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
    SEQ_ROWS x SEQ_TILE tile of outputs held in a small scratch tile across the whole k loop; each loaded
    stretch of a row of B serves SEQ_ROWS rows of A. Fused multiply-add is allowed (``fastmath={"contract"}``,
    no reassociation): the caller proved every product a * b exact in binary32, so
    fma(a, b, acc) = round(a * b + acc) = round(round(a * b) + acc), the very addition of the datapath;
    the additions of each output stay in the order of k. A narrower target (sh > 0) runs ``narrow_seq``."""
    M, K = A.shape
    N = B.shape[1]
    ntile = (N + SEQ_TILE - 1) // SEQ_TILE
    nblk = (M + SEQ_ROWS - 1) // SEQ_ROWS
    for t in nb.prange(nblk * ntile):
        i0 = (t // ntile) * SEQ_ROWS
        j0 = (t % ntile) * SEQ_TILE
        i1, j1 = min(i0 + SEQ_ROWS, M), min(j0 + SEQ_TILE, N)
        nr, w = i1 - i0, j1 - j0
        acc = np.zeros((SEQ_ROWS, SEQ_TILE), dtype=np.float32)
        accu = acc.view(np.uint32)
        for r in range(nr):
            for j in range(w):
                acc[r, j] = init[i0 + r, j0 + j]
        if nr == SEQ_ROWS and w == SEQ_TILE:
            _seq_tile_8x16(A, B, acc, i0, j0)
        else:
            _seq_tile(A, B, acc, accu, i0, j0, nr, w, sh, maxbits)
        _tile_finish(acc, accu, init, post, has_post, i0, i1, j0, j1, sh, maxbits, out)


SEQ_ROWS = 8    # the sequential FP32 kernel's tile: 8 rows x 16 columns, four steps of k per pass over it
SEQ_TILE = 16


@nb.njit(cache=True, inline="always")
def _seq_tile_8x16(A, B, acc, i0, j0):
    """acc[r, j] = round(acc[r, j] + A[i0 + r, k] * B[k, j0 + j]) for k = 0..K-1 on a full 8 x 16 tile,
    four values of k per load and store of the tile: each line is ((((acc + p0) + p1) + p2) + p3), Python's
    left-to-right order, the very additions of the sequential order (only FMA contraction, no
    reassociation). The 32 multipliers of a step are scalars and the four loaded values of B serve all
    eight rows, so the inner loop is register-bound, not load-and-store bound."""
    K = A.shape[1]
    K4 = K - K % 4
    for k in range(0, K4, 4):
        a00 = A[i0, k]; a01 = A[i0, k + 1]; a02 = A[i0, k + 2]; a03 = A[i0, k + 3]
        a10 = A[i0 + 1, k]; a11 = A[i0 + 1, k + 1]; a12 = A[i0 + 1, k + 2]; a13 = A[i0 + 1, k + 3]
        a20 = A[i0 + 2, k]; a21 = A[i0 + 2, k + 1]; a22 = A[i0 + 2, k + 2]; a23 = A[i0 + 2, k + 3]
        a30 = A[i0 + 3, k]; a31 = A[i0 + 3, k + 1]; a32 = A[i0 + 3, k + 2]; a33 = A[i0 + 3, k + 3]
        a40 = A[i0 + 4, k]; a41 = A[i0 + 4, k + 1]; a42 = A[i0 + 4, k + 2]; a43 = A[i0 + 4, k + 3]
        a50 = A[i0 + 5, k]; a51 = A[i0 + 5, k + 1]; a52 = A[i0 + 5, k + 2]; a53 = A[i0 + 5, k + 3]
        a60 = A[i0 + 6, k]; a61 = A[i0 + 6, k + 1]; a62 = A[i0 + 6, k + 2]; a63 = A[i0 + 6, k + 3]
        a70 = A[i0 + 7, k]; a71 = A[i0 + 7, k + 1]; a72 = A[i0 + 7, k + 2]; a73 = A[i0 + 7, k + 3]
        for j in range(SEQ_TILE):
            b0 = B[k, j0 + j]; b1 = B[k + 1, j0 + j]; b2 = B[k + 2, j0 + j]; b3 = B[k + 3, j0 + j]
            acc[0, j] = acc[0, j] + a00 * b0 + a01 * b1 + a02 * b2 + a03 * b3
            acc[1, j] = acc[1, j] + a10 * b0 + a11 * b1 + a12 * b2 + a13 * b3
            acc[2, j] = acc[2, j] + a20 * b0 + a21 * b1 + a22 * b2 + a23 * b3
            acc[3, j] = acc[3, j] + a30 * b0 + a31 * b1 + a32 * b2 + a33 * b3
            acc[4, j] = acc[4, j] + a40 * b0 + a41 * b1 + a42 * b2 + a43 * b3
            acc[5, j] = acc[5, j] + a50 * b0 + a51 * b1 + a52 * b2 + a53 * b3
            acc[6, j] = acc[6, j] + a60 * b0 + a61 * b1 + a62 * b2 + a63 * b3
            acc[7, j] = acc[7, j] + a70 * b0 + a71 * b1 + a72 * b2 + a73 * b3
    for k in range(K4, K):
        for r in range(SEQ_ROWS):
            a = A[i0 + r, k]
            for j in range(SEQ_TILE):
                acc[r, j] = acc[r, j] + a * B[k, j0 + j]


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
def _tree_tiles(A, B, stack, stacku, i0, j0, nr, w, sh, maxbits, q0, top):
    """Push the sums of the product pairs (k = 2q, 2q + 1, q >= q0) onto the stack (``top`` entries
    already there), adding complete sibling blocks (while bit t of q is set), then an odd last product;
    returns the stack height."""
    K = A.shape[1]
    for q in range(q0, K // 2):
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


@nb.njit(cache=True, inline="always")
def _tree_octets(A, B, stack, i0, j0):
    """The first levels of the adder tree on a full ROWS x TILE tile, eight products at a time in
    registers: for every aligned block k = 8m..8m+7 the level-3 node ((p0 + p1) + (p2 + p3)) + ((p4 + p5) +
    (p6 + p7)), each + one binary32 rounding (p0 + p1 as one FMA: p0 is exact), pushed onto the stack and
    added to complete sibling blocks while bit t of m is set, as ``_tree_tiles`` does for pairs. Returns
    (pairs done, stack height); the at most three pairs and odd product left join no pushed block."""
    K = A.shape[1]
    top = 0
    for m in range(K // 8):
        k = 8 * m
        a00 = A[i0, k]; a01 = A[i0, k + 1]; a02 = A[i0, k + 2]; a03 = A[i0, k + 3]
        a04 = A[i0, k + 4]; a05 = A[i0, k + 5]; a06 = A[i0, k + 6]; a07 = A[i0, k + 7]
        a10 = A[i0 + 1, k]; a11 = A[i0 + 1, k + 1]; a12 = A[i0 + 1, k + 2]; a13 = A[i0 + 1, k + 3]
        a14 = A[i0 + 1, k + 4]; a15 = A[i0 + 1, k + 5]; a16 = A[i0 + 1, k + 6]; a17 = A[i0 + 1, k + 7]
        a20 = A[i0 + 2, k]; a21 = A[i0 + 2, k + 1]; a22 = A[i0 + 2, k + 2]; a23 = A[i0 + 2, k + 3]
        a24 = A[i0 + 2, k + 4]; a25 = A[i0 + 2, k + 5]; a26 = A[i0 + 2, k + 6]; a27 = A[i0 + 2, k + 7]
        a30 = A[i0 + 3, k]; a31 = A[i0 + 3, k + 1]; a32 = A[i0 + 3, k + 2]; a33 = A[i0 + 3, k + 3]
        a34 = A[i0 + 3, k + 4]; a35 = A[i0 + 3, k + 5]; a36 = A[i0 + 3, k + 6]; a37 = A[i0 + 3, k + 7]
        for j in range(TILE):
            b0 = B[k, j0 + j]; b1 = B[k + 1, j0 + j]; b2 = B[k + 2, j0 + j]; b3 = B[k + 3, j0 + j]
            b4 = B[k + 4, j0 + j]; b5 = B[k + 5, j0 + j]; b6 = B[k + 6, j0 + j]; b7 = B[k + 7, j0 + j]
            stack[top, 0, j] = ((a00 * b0 + a01 * b1) + (a02 * b2 + a03 * b3)) + ((a04 * b4 + a05 * b5)
                                 + (a06 * b6 + a07 * b7))
            stack[top, 1, j] = ((a10 * b0 + a11 * b1) + (a12 * b2 + a13 * b3)) + ((a14 * b4 + a15 * b5)
                                 + (a16 * b6 + a17 * b7))
            stack[top, 2, j] = ((a20 * b0 + a21 * b1) + (a22 * b2 + a23 * b3)) + ((a24 * b4 + a25 * b5)
                                 + (a26 * b6 + a27 * b7))
            stack[top, 3, j] = ((a30 * b0 + a31 * b1) + (a32 * b2 + a33 * b3)) + ((a34 * b4 + a35 * b5)
                                 + (a36 * b6 + a37 * b7))
        top += 1
        c = m
        while c & 1:
            _stack_add(stack, stack.view(np.uint32), top - 2, ROWS, TILE, 0, np.uint32(0))
            top -= 1
            c >>= 1
    return 4 * (K // 8), top


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
            q0, top = _tree_octets(A, B, stack, i0, j0)
            top = _tree_tiles(A, B, stack, stacku, i0, j0, ROWS, TILE, 0, maxbits, q0, top)
        else:
            top = _tree_tiles(A, B, stack, stacku, i0, j0, nr, w, sh, maxbits, 0, 0)
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
