"""The exact shortcuts of the integer GEMM engine (``gemm(..., stats=False)``) and their proofs.

The cycle-accurate kernel applies the accumulator's overflow after every addition. These shortcuts give
the same bits faster wherever a proof allows; ``fxsim.engines.integer.choose_path`` picks them, cheapest
first (each is one member of ``IntPath``).

1. *Exact sums by BLAS.* Let T = |A_eff| @ |B_eff|. All terms are non-negative integers, so as long as every
   true partial sum of T is <= 2**53 each float64 partial sum equals it exactly (integers up to 2**53 are
   float64 values), and once a true partial sum exceeds 2**53 the computed one is >= 2**53 by monotonicity
   of rounding, whatever order or blocking the BLAS uses. Hence "computed T < 2**53" proves the true
   T < 2**53; then every partial sum of A_eff @ B_eff (in any order) has magnitude <= T < 2**53, so the
   float64 BLAS product is the exact integer dot product. The same argument with 2**24 makes float32 BLAS
   exact when K * max|a| * max|b| <= 2**24 (INT8 x INT8 up to K = 1024), at twice the speed.
2. *Wrap is the exact sum mod 2**W.* Reduction mod 2**W is a ring homomorphism from the integers onto the
   W-bit register, so wrapping after every addition, in any order, equals wrapping once at the end -- as
   long as every register on the path is at least W bits wide (tree level widths >= W).
3. *Saturation only where a partial sum can leave the range.* Every partial sum, in every order, is a sum
   over a subset of the K products, so its magnitude is at most T and, by Cauchy-Schwarz, at most
   ||a_i|| * ||b_j||. If |init| + (bound << L) <= min(hi, -lo), no addition saturates and the result is
   the exact sum. Tried in order of cost: K * max|a| * max|b| for all outputs at once (from the formats'
   ranges, then from the data), max ||a_i|| * max ||b_j|| for all outputs at once, then T per output;
   only the outputs left unproven run the cycle-accurate kernel.
4. *Sequential order, blocked midpoint enclosure.* For the sequential order K is cut into blocks of 64
   whose exact sums come from BLAS; with the exact partial sums c0, c1 at both ends of a block, every
   partial sum inside lies within (c0 + c1 +- ||a_blk|| * ||b_blk||) / 2 (``kernels.int_gemm.
   prefix_block_check`` gives the proof). Outputs whose every block is enclosed equal the exact sum; the
   others resume the cycle-accurate kernel at their first unproven block, from the exact partial sum there.
5. *Saturating registers on a rail.* A saturating register at hi that adds p >= 1 computes hi + p > hi and
   saturates back to hi (one overflow); at lo adding p <= -1 likewise stays at lo. If every product of a
   block of K is >= 1 (the interval product [min a, max a] x [min b, max b] of the block's codes, aligned
   by a left shift, which keeps the sign) and the register enters the block at hi, it leaves it at hi
   with the block's length added to its overflow count, whatever the products' values; so the block need
   not be simulated (``kernels.int_gemm.saturate_rail_blocks``, 16-wide blocks). Used where shortcut 4
   leaves most outputs unproven.
6. *Statistics without overflow.* With statistics asked for, the bound of 3 (|init| + K * max|a| * max|b|
   aligned, within the range) proves that no addition of any order overflows: the register equals the
   exact partial sum at every cycle, every overflow count is 0 and the accumulator is the exact sum; only
   the running sums' extremes remain to be computed (``kernels.int_gemm.running_absmax_dense`` for
   signed registers, from the largest magnitude alone; ``running_extremes_dense`` otherwise), exactly in
   float32 lanes while every |value| <= 2**24.

Speed without loss of exactness: the BLAS calls and the passes over their results run by row slabs, one
thread each, with single-threaded BLAS (``fxsim.runtime.threads``); large temporaries come from per-thread
scratch buffers (``fxsim.runtime.scratch``); operands stay in the integer dtype they arrive in.

"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fxsim._kernels import int_gemm as K

from fxsim.runtime.threads import row_parallel
from fxsim.runtime.scratch import scratch

__all__ = ["BLOCK", "Scan", "scan_operands", "float_dtype", "exact_products", "sequential_block_test"]

_I63 = 2 ** 63
BLOCK = 64


def float_dtype(bound: int):
    """Shortcut 1's arithmetic: BLAS on integers is exact when ``bound`` (a proven bound on every |entry|
    of both operands and on the sum of |x * y| of every output) is < 2**53: every product and every partial
    sum, in whatever order and blocking (FMA included) the BLAS uses, is then an integer the float format
    holds exactly. float32 when ``bound`` <= 2**24 (single precision GEMM runs twice as fast), else
    float64."""
    return np.float32 if bound <= 2 ** 24 else np.float64


def _as_float(X, dt, name):
    """X converted to ``dt`` in the scratch buffer ``name`` (exact: |entries| are bounded as above)."""
    Xf = scratch(name, X.shape, dt)
    np.copyto(Xf, X, casting="unsafe")
    return Xf


class Scan(NamedTuple):
    """One pass over both operands (``scan_operands``): their code ranges, exact float copies and sums
    of squares per 64-wide block of K."""
    a_lo: int
    a_hi: int
    b_lo: int
    b_hi: int
    Af: np.ndarray
    Bf: np.ndarray
    sqa: np.ndarray
    sqb: np.ndarray


def scan_operands(Ae, Be, a_bound: int, b_bound: int):
    """Read each operand once (kernels.int_gemm.scan_operand) for everything the shortcuts need: min and
    max codes, float copies for BLAS and block sums of squares for the Cauchy-Schwarz tests. The float
    dtype follows shortcut 1 on the bounds ``a_bound``/``b_bound`` the caller vouches for (the formats',
    or the data's); None when they are too wide (floats or squares could be inexact). The copies live in
    this thread's scratch buffers."""
    M, Kd = Ae.shape
    N = Be.shape[1]
    big = max(a_bound, b_bound)
    if Kd == 0 or Kd * a_bound * b_bound >= 2 ** 53 or big >= 2 ** 53 or Kd * big * big >= _I63:
        return None
    dt = float_dtype(max(Kd * a_bound * b_bound, big))
    Af, Bf = scratch("gemm A float", (M, Kd), dt), scratch("gemm B float", (Kd, N), dt)
    Q = -(-Kd // BLOCK)
    sqa, sqb = np.empty((Q, M), dtype=np.int64), np.empty((Q, N), dtype=np.int64)
    a_lo, a_hi = K.scan_operand(Ae, BLOCK, 1, Af, sqa)
    b_lo, b_hi = K.scan_operand(Be, BLOCK, 0, Bf, sqb)
    return Scan(int(a_lo), int(a_hi), int(b_lo), int(b_hi), Af, Bf, sqa, sqb)


def exact_products(Ae, Be, dt, init, L, bits, signed, wrap_it, exact, acc, T=None, Af=None, Bf=None):
    """Shortcuts 1 and 2 by row slabs (fxsim.runtime.threads): exact = A @ B (BLAS in ``dt`` on exact float
    copies) aligned by L plus init; acc = exact, wrapped to ``bits`` when ``wrap_it``. With T (an output
    array), also T = |A| @ |B|. Af, Bf: float copies made already (``scan_operands``); without them each
    slab converts its own rows of A, in parallel."""
    if Bf is None:
        Bf = _as_float(Be, dt, "gemm B float")
    Bfa = None if T is None else np.abs(Bf, out=scratch("gemm |B| float", Bf.shape, dt))

    def slab(r):
        m = r.stop - r.start
        Ar = Af[r] if Af is not None else _as_float(Ae[r], dt, "gemm A float slab")
        S = np.matmul(Ar, Bf, out=scratch("gemm A@B", (m, Bf.shape[1]), dt))
        K.exact_from_blas(S, L, init[r], bits, signed, wrap_it, exact[r], acc[r])
        if T is not None:
            np.matmul(np.abs(Ar, out=scratch("gemm |A| float", (m, Ar.shape[1]), dt)), Bfa, out=T[r])

    row_parallel(slab, Ae.shape[0], work=Ae.size * Be.shape[1])


def sequential_block_test(Af, Bf, init, imax, L, limit, amax, bmax, sqa, sqb, cum):
    """Shortcut 4 (sequential order): split K into blocks of 64; the exact running sums before and after
    each block (from BLAS block sums on the exact float copies Af, Bf: exact by shortcut 1) and the
    Cauchy-Schwarz norms of the block (from the exact block sums of squares ``sqa`` (Q, M), ``sqb``
    (Q, N); ``imax`` bounds |init|) enclose every partial sum the sequential accumulator sees (kernels.int_gemm.
    prefix_block_check). Where no enclosure leaves [-limit, limit], no addition overflows and the result
    is the exact sum; only the flagged outputs need the cycle-accurate kernel, and only from their first
    flagged block on, where the register still holds the exact partial sum. Writes the exact sums
    (accumulator LSBs) into ``cum``; returns the flagged rows, cols, the cycle and the register value to
    resume them from."""
    M, Kd = Af.shape
    N = Bf.shape[1]
    Q = sqa.shape[0]
    dt = Af.dtype
    na = np.sqrt(sqa.astype(np.float64))      # sums of squares < 2**53: exact; sqrt correctly rounded
    nbn = np.sqrt(sqb.astype(np.float64))
    inflate = 2.0 ** -40
    if dt == np.float32 and (Kd * amax * bmax << L) + imax <= 2 ** 23 and limit <= 2 ** 23:
        na, nbn = _float32_up(na), _float32_up(nbn)   # the test's arithmetic in float32 (see the kernel)
        inflate = 2.0 ** -20

    def slab(rs):
        m = rs.stop - rs.start
        flagged = scratch("gemm flagged", (4, m * N), np.int64)    # pages are touched only as used
        count = np.zeros(1, dtype=np.int64)
        step = max(1, (1 << 23) // max(1, Q * N))                   # rows per pass: <= 8 M block sums
        S = scratch("gemm block sums", (Q, min(step, m), N), dt)
        for r0 in range(0, m, step):
            r = slice(r0, min(r0 + step, m))
            g = slice(rs.start + r.start, rs.start + r.stop)        # the same rows, in the whole output
            for q in range(Q):                                      # exact block sums, one BLAS call each
                k = slice(q * BLOCK, min(Kd, (q + 1) * BLOCK))
                np.matmul(Af[g, k], Bf[k], out=S[q, :r.stop - r.start])
            K.prefix_block_check(init[g], S[:, :r.stop - r.start], np.ascontiguousarray(na[:, g]), nbn, L,
                                 limit, inflate, BLOCK, g.start, cum[g], flagged, count)
        return flagged[:, :count[0]].copy()

    parts = row_parallel(slab, M, work=Af.size * N)
    flagged = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)   # one slab: no second copy
    rows, cols, start_k, start_acc = flagged
    return rows, cols, start_k, start_acc


def _float32_up(x):
    """float64 -> float32 values at or above them (upper bounds survive the narrowing): raising x by
    2**-22 relative first outweighs float32's rounding error of at most 2**-24 relative."""
    return (x * (1.0 + 2.0 ** -22)).astype(np.float32)
