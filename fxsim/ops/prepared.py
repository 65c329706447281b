"""Integer GEMMs whose operands are prepared once and reused: the weights of a layer that runs many times.

``PreparedB`` holds what depends only on the B operand (a layer's weights) and its zero point: the codes
less the zero point, their exact float32 copy for BLAS, their largest magnitude and their column sums (for
folding the other operand's zero point into the bias). ``gemm_prepared`` takes the A operand already as
exact float32 values (codes less their zero point, e.g. written straight into a patch matrix by
``fxsim.ops.lowering.unfold``) with a bound on their magnitude, and returns the same ``GemmResult`` as
``fxsim.ops.gemm.run_integer_gemm(..., stats=False)`` where the exact shortcuts prove the result:

- *Exact sums by float32 BLAS in K chunks* (shortcut 1 of ``fxsim.engines.shortcuts`` applied to each
  chunk): K is cut into chunks of k terms with k * max|a| * max|b| <= 2**24, so every partial sum of a
  chunk is an integer float32 holds and each chunk's sgemm is exact, in any order and blocking; the chunk
  sums are added in float64, exactly, since the whole sum is bounded by K * max|a| * max|b| < 2**53.
  One chunk of all K terms where the Cauchy-Schwarz bound allows it: every partial sum of output (i, j)
  is at most sum_k |a_ik b_kj| <= ||a_i|| ||b_j||, so max_i ||a_i||**2 * max_j ||b_j||**2 <= 2**48 proves
  every sum of one sgemm exact (the squared norms are exact integers: ``fxsim._kernels.norms``).
- the accumulator then holds the exact sum wrapped to its width (shortcut 2: a wrapping register of any
  order, tree levels at least as wide), or the exact sum itself when K * max|a| * max|b| plus the largest
  preloaded bias cannot leave its range (shortcut 3, the global bound).

Elsewhere (a product register, a wider product alignment, a subtractor width, a saturating register the
bound does not clear) it returns None and the caller runs the general engine. The rows are split into
one slab per thread, each with its own single-threaded BLAS call (``fxsim.runtime.threads``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fxsim._kernels import int_gemm as K
from fxsim._kernels import norms

from fxsim.datapath import Datapath
from fxsim.formats import Fixed, ints_to_values
from fxsim.validate import kernel_array
from fxsim.modes import Overflow
from fxsim.engines.output_stage import output_stage
from fxsim.result import GemmResult
from fxsim.runtime.scratch import scratch, zeros
from fxsim.runtime.threads import row_parallel
from fxsim.engines.integer import IntegerPlan, plan_integer
from fxsim.ops.gemm import operand_codes

__all__ = ["PreparedB", "Proof", "prepared_proof", "gemm_prepared", "chunk_size", "blas_chunk"]

_F32_EXACT = 2 ** 24
_F64_EXACT = 2 ** 53


class PreparedB:
    """The B operand (K, N) of integer GEMMs that reuse it: ``codes`` (integers on the datapath's B format)
    less ``zero_point``, as int64 and as an exact float32 copy (None where some |code - zero point| exceeds
    2**24), their largest magnitude ``bmax``, their column sums ``colsum`` (int64) and the largest squared
    column norm ``colsq`` (a Python int; None where it could overflow int64)."""

    def __init__(self, codes, zero_point: int = 0):
        c = np.asarray(codes)
        if c.ndim != 2 or c.dtype.kind not in "iu":
            raise TypeError(f"PreparedB takes a 2-D integer code array, got {c.dtype} {c.shape}")
        self.zero_point = int(zero_point)
        self.codes = c
        e = c.astype(np.int64) - self.zero_point
        self.lo, self.hi = (int(c.min()), int(c.max())) if c.size else (0, 0)
        self.bmax = int(np.abs(e).max()) if e.size else 0
        self.colsum = e.sum(axis=0)
        self.colsq = (int((e * e).sum(axis=0).max()) if e.size and c.shape[0] * self.bmax ** 2 < 2 ** 63
                      else None)
        self.f32 = np.ascontiguousarray(e, dtype=np.float32) if self.bmax <= _F32_EXACT else None
        self.shape = c.shape


def chunk_size(amax: int, bmax: int) -> int:
    """The most terms k with k * amax * bmax <= 2**24 (float32 sums exact); 0 when one product is over."""
    p = amax * bmax
    return _F32_EXACT // p if p else 1 << 62


def blas_chunk(Af, amax: int, B: PreparedB, chunk: int) -> int:
    """The terms per exact float32 sgemm for A (M, K) against ``B``: all K where the Cauchy-Schwarz bound
    proves every partial sum of every output at most 2**24 (max_i ||a_i||**2 * max_j ||b_j||**2 <= 2**48,
    squared norms exact in int64 when K * amax**2 < 2**63), else ``chunk`` (from max|a| * max|b|). Asked only
    where K spans more than two chunks."""
    Kd = Af.shape[1]
    if Kd <= 2 * chunk or B.colsq is None or Kd * amax ** 2 >= 2 ** 63:
        return chunk    # (two chunks cost less than the pass over A that the bound needs)
    return Kd if int(norms.max_row_sumsq(Af)) * B.colsq <= _F32_EXACT ** 2 else chunk


class Proof(NamedTuple):
    """What ``prepared_proof`` established: the datapath's plan, the alignment shift L, the K chunk of
    exact float32 sums, and whether the register wraps (else no partial sum can reach its limits)."""
    plan: IntegerPlan
    L: int
    chunk: int
    wrap_all: bool


def prepared_proof(dp: Datapath, Kd: int, amax: int, B: PreparedB, bias_max: int = 0) -> Proof | None:
    """Whether ``gemm_prepared`` computes the datapath's result for K = ``Kd`` terms of |a| <= ``amax``
    against ``B`` with a preloaded bias of magnitude <= ``bias_max`` (the shortcuts in the module
    docstring); None where it does not. Cheap: callers ask before building the A operand."""
    if not dp.is_integer or dp.product is not None or dp.zero_point_bits is not None:
        return None
    if B.f32 is None or B.zero_point != int(dp.b_zero_point) or B.shape[0] != Kd:
        return None
    plan = plan_integer(dp)
    if plan.align_shift > 0:
        return None
    L = -plan.align_shift
    imax = bias_max if dp.bias_preload else 0
    bound = Kd * amax * B.bmax
    chunk = chunk_size(amax, B.bmax)
    if bound >= _F64_EXACT or chunk == 0 or (bound << L) + imax >= 2 ** 63:
        return None
    limit = min(plan.hi, -plan.lo)
    levels_ok = plan.levels.size == 0 or bool(np.all(plan.levels >= plan.bits))
    if dp.order.kind == "tree":
        for lb in plan.levels:
            limit = min(limit, (1 << (int(lb) - 1)) - 1 if plan.signed else (1 << int(lb)) - 1)
    wrap_all = dp.accumulator.overflow == Overflow.WRAP and levels_ok
    if not (wrap_all or (bound << L) + imax <= limit):
        return None
    return Proof(plan, L, chunk, wrap_all)


def gemm_prepared(Af, amax: int, B: PreparedB, dp: Datapath, *, bias=None) -> GemmResult | None:
    """The integer engine's result with ``stats=False`` for A (M, K) given as exact float32 values (the
    codes less the datapath's A zero point, every |value| <= ``amax``: the caller's promise) and B prepared
    with the datapath's B zero point; None where the shortcuts above do not prove it (run
    ``run_integer_gemm`` instead). ``bias``: (N,) or (M, N) codes on the accumulator's grid."""
    if Af.dtype != np.float32 or Af.ndim != 2:
        return None
    M, Kd = Af.shape
    if B.shape[0] != Kd:
        raise ValueError(f"A has {Kd} columns but B has {B.shape[0]} rows")
    N = B.shape[1]
    if not dp.is_integer or M * N == 0:
        return None
    if not (dp.b.min_code <= B.lo and B.hi <= dp.b.max_code):
        operand_codes(B.codes, dp.b, "B")   # reports the offending element
    acc_fmt = dp.accumulator.fmt
    init = zeros((M, N), np.int64)
    imax = 0
    out_bias = None
    if bias is not None:
        if dp.bias_preload:
            init = kernel_array(np.broadcast_to(operand_codes(bias, acc_fmt, "bias"), (M, N)), np.int64)
            imax = max(-int(init.min()), int(init.max()))
        else:
            bb = dp.output.bias_bits or acc_fmt.bits
            out_bias = kernel_array(np.broadcast_to(operand_codes(bias, Fixed(bb, acc_fmt.frac, True), "bias"),
                                                    (M, N)), np.int64)
    proof = prepared_proof(dp, Kd, amax, B, imax)
    if proof is None:
        return None
    plan, L, _, wrap_all = proof
    chunk = blas_chunk(Af, amax, B, proof.chunk)

    planes = np.empty((3, M, N), dtype=np.int64)
    exact, acc = planes[0], planes[1]
    Bf = B.f32

    def slab(r):
        m = r.stop - r.start
        if Kd <= chunk:
            S = np.matmul(Af[r], Bf, out=scratch("prepared A@B", (m, N), np.float32))
        else:
            S = scratch("prepared sum", (m, N), np.float64)
            part = scratch("prepared A@B", (m, N), np.float32)
            for k0 in range(0, Kd, chunk):
                k1 = min(Kd, k0 + chunk)
                np.matmul(Af[r, k0:k1], Bf[k0:k1], out=part)
                if k0 == 0:
                    S[...] = part
                else:
                    S += part
        K.exact_from_blas(S, L, init[r], plan.bits, plan.signed, wrap_all, exact[r], acc[r])

    row_parallel(slab, M, work=M * Kd * N)
    codes, values = output_stage(acc, dp.output, acc_fmt, dp.accumulator.overflow, out_bias,
                                 values_out=planes[2].view(np.float64))
    acc_values = values if codes is acc else ints_to_values(acc, acc_fmt.frac)
    return GemmResult(values=values, codes=codes, acc=acc, overflow_count=None, acc_values=acc_values,
                      exact=exact, max_partial=None, bits_needed=None, datapath=dp, traces={})
