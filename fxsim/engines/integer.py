"""The integer / fixed-point GEMM engine: plan -> choose -> execute.

1. **Plan.** ``plan_integer(datapath)`` resolves and validates an integer Datapath into an
   ``IntegerPlan`` (a frozen value: register ranges, alignment shifts, the typed kernel configuration).
   ``gemm_plan`` adds the operands' facts as ``Bounds`` (also frozen): the proven bounds on |a|, |b|,
   |init| and on every partial sum, read from the formats first (free) and from the data only where the
   formats' bounds prove too little.
2. **Choose.** ``choose_path(plan)`` is a pure function of that plan. It names one ``IntPath``; each member
   is one proof (``fxsim.engines.shortcuts`` holds the shortcuts' proofs) that its executor gives the
   bits of the cycle-accurate datapath.
3. **Execute.** One small executor per path writes the accumulators (and what else it knows) into the
   result planes. An executor whose proof needs a fact only the data can give (the |A| @ |B| test, the
   block enclosure) may hand over to a narrower one; the result's ``path`` names the one that produced
   the values.

Exactness: every intermediate is an int64 code. The plan bounds every product and every exact partial
sum and rejects, with a clear error, any datapath whose exact values could leave int64.
"""
from __future__ import annotations

import enum
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import numba as nb
import numpy as np

from fxsim._kernels import int_gemm as K

from fxsim.runtime.threads import row_parallel
from fxsim.datapath import Datapath, Order
from fxsim.errors import InvalidArgument
from fxsim.formats import Fixed, ints_to_values
from fxsim.modes import Overflow, Rounding
from fxsim.engines.shortcuts import (BLOCK, exact_products, float_dtype, scan_operands,
                                       sequential_block_test)
from fxsim.engines.output_stage import output_stage, register_overflow
from fxsim.quantize import operand_codes, operand_codes_range
from fxsim.result import GemmResult, bits_needed
from fxsim.runtime.compiling import notice_first_use
from fxsim.runtime.scratch import release, scratch, zeros
from fxsim.validate import check_stats, check_trace, kernel_array

__all__ = ["IntPath", "IntegerPlan", "Bounds", "GemmPlan", "Operands", "plan_integer", "gemm_plan",
           "choose_path", "run_integer_gemm", "register_range", "compact_int_dtype"]

_I63 = 2 ** 63
_F53 = 2 ** 53


def register_range(bits: int, signed: bool, symmetric: bool = False) -> tuple[int, int]:
    """(lo, hi) of a ``bits``-wide register as Python ints (``kernels.int_gemm.register_range``, the one
    definition the kernels use too)."""
    lo, hi = K.register_range(int(bits), bool(signed), bool(symmetric))
    return int(lo), int(hi)


def compact_int_dtype(lo: int, hi: int) -> np.dtype:
    """The narrowest NumPy integer dtype holding every integer in [lo, hi] (int64 when none does)."""
    for dt in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


# --------------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------------
class IntPath(enum.Enum):
    """How the engine computes a GEMM; each member is one proof that its results are the datapath's bits."""

    EXACT_BLAS = "exact-blas"
    """Shortcuts 1 + 2/3 for every output at once: K * max|a| * max|b| < 2**53 makes BLAS exact (float32
    when <= 2**24); with a wrapping accumulator (every tree level at least as wide) the register is the
    exact sum mod 2**W (ring homomorphism); otherwise |init| + (K * max|a| * max|b| << L) <= the range
    proves that no addition overflows, so the register is the exact sum."""

    CAUCHY_SCHWARZ = "cauchy-schwarz"
    """Shortcut 3 with the Cauchy-Schwarz bound for every output at once: every partial sum is a sum over
    a subset of the products, so |partial| <= ||a_i|| * ||b_j|| <= max ||a_i|| * max ||b_j||; if that
    (aligned, plus |init|) fits the range, no addition overflows and BLAS's exact sum is the register."""

    PER_OUTPUT_BOUND = "per-output-bound"
    """Shortcuts 1 + 3 output by output: T = |A| @ |B| in float64 is exact while below 2**53 (non-negative
    terms, monotone rounding), so "computed T < 2**53" proves A @ B exact; outputs with |init| + (T << L)
    inside the range cannot overflow; only the others run the cycle-accurate kernel (when they are most
    outputs, in the tree order the vectorised tree of STATS_TREE on every output instead, in the chunked
    order STATS_CHUNKED's lanes)."""

    BLOCK_ENCLOSURE = "block-enclosure"
    """Shortcut 4 (sequential order): with the exact partial sums c0, c1 at both ends of each 64-wide
    block of K, every partial sum inside lies in (c0 + c1 +- ||a_blk|| * ||b_blk||) / 2; outputs whose
    every block is enclosed in the range equal the exact sum, the few others resume the cycle-accurate
    kernel at their first unproven block, from the exact partial sum there."""

    RAIL_BLOCKS = "rail-blocks"
    """Shortcut 4, then most outputs left unproven (they really saturate): a sequential saturating
    register simulated by 16-wide blocks of K, vectorised over columns, skipping each block in which the
    register provably stays on its rail: at hi with every product of the block >= 1 (interval product of
    the block's operand ranges), every addition saturates back to hi and counts one overflow; likewise at
    lo with every product <= -1. Every other block runs addition by addition."""

    KERNEL = "cycle-accurate"
    """No shortcut: the cycle-accurate kernel runs every output (the reference arithmetic itself)."""

    STATS_SEQUENTIAL = "stats-sequential"
    """Statistics for a sequential wrap or saturating register below 64 bits: the cycle-accurate
    arithmetic vectorised across output columns (the same per-addition steps as the per-output kernel).
    A saturate or saturate_symmetric register runs in float32 lanes where every aligned product, exact
    partial sum and register input |acc| + |p| is at most 2**24 (binary32 holds each such integer, so
    every product, sum and clamp is exact), in int32 lanes below 2**31, else in int64. A wrapping register
    runs in float32 lanes where also |acc| + |p| + 2**(W-1) <= 2**24: acc = s - 2**W * floor((s + 2**(W-1))
    / 2**W) is then exact at every step."""

    STATS_NO_OVERFLOW = "stats-no-overflow"
    """Statistics where a bound proves that no addition overflows (sequential order, exact products):
    B = |init| + (K * max|a| * max|b| << L) <= the range, so the register always holds the exact partial
    sum, every overflow count is 0 and the accumulator is the exact sum. Only the exact running sum and
    its extremes remain, vectorised over columns in float32 lanes when B <= 2**24 (every aligned product
    and partial sum is then an integer of magnitude <= 2**24, which binary32 holds exactly, so each
    addition and multiplication is exact), int32 when B < 2**31, else int64. For a signed register the
    largest |partial sum| m alone gives both statistics: the width is bit_length(m) + 1 where the sum
    reaches +m, bit_length(m - 1) + 1 where only -m; the lanes run 4 * e + 1 (whose largest magnitude is
    4m + 1 or 4m - 1) when 4 * B + 1 fits them, else e, and the outputs whose m is a power of two (the
    only ones where the two widths differ) scan their sums again for +m
    (``kernels.int_gemm.running_absmax_dense``)."""

    STATS_CHUNKED = "stats-chunked"
    """Statistics for the chunked order with a signed wrap or saturating register below 64 bits and exact
    products (chunks of at least 16 and 2**15 MACs or more; else STATS_KERNEL): lane l accumulates its
    contiguous chunk of K sequentially, from init (lane 0) or 0, in the accumulator's register,
    independently of the other lanes, so each lane is a sequential GEMM of its
    slice of A and B and runs STATS_NO_OVERFLOW or STATS_SEQUENTIAL (register, counts, exact sum,
    statistics of its partial sums, 0 and init included). The lanes' registers are then combined by the
    same adders (``kernels.int_gemm.add``) in the same order (sequential, or the pairwise tree with odd
    terms passing through) for every output, each combine adder counting its overflow and its exact sum
    joining the statistics. For a signed register max_partial and bits_needed of a union of sets of
    partial sums are the maxima of theirs (bits_needed is max(bit_length(max), bit_length(-min - 1)) + 1,
    monotone in the set)."""

    STATS_TREE = "stats-tree"
    """Statistics for the tree order with exact products and every register (levels and accumulator)
    below 64 bits, wrap or saturating: the adder tree built as the products stream in, vectorised across
    output columns (``kernels.int_gemm.tree_stats_dense``): two subtrees of equal level l are added by
    a level-l adder as soon as both exist, and the subtrees left at the end are folded from the newest,
    each pair by the adder of the older one's level. These are the adders of the level-by-level tree,
    with the same operands, in an order that changes nothing (each adder's inputs are complete before it
    runs): the level-l adders pair the level-l subtrees from the left, and an odd last one passes through
    until it meets, at the level of the older subtree, the sum of everything after it."""

    STATS_KERNEL = "stats-kernel"
    """Statistics from the cycle-accurate per-output kernel (other orders, product registers, ...)."""

    @property
    def statistics(self) -> bool:
        return self in (IntPath.STATS_SEQUENTIAL, IntPath.STATS_NO_OVERFLOW, IntPath.STATS_CHUNKED,
                        IntPath.STATS_TREE, IntPath.STATS_KERNEL)


# --------------------------------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IntegerPlan:
    """A Datapath resolved to numbers for the kernels (validated by ``plan_integer``)."""

    dp: Datapath
    bits: int
    signed: bool
    lo: int
    hi: int
    overflow: Overflow
    align_shift: int           # product binary point - accumulator binary point (> 0: bits are cut)
    config: K.IntConfig
    level_bits: tuple
    limit: int                 # the largest |partial sum| no register on the path can overflow on

    @property
    def acc_fmt(self) -> Fixed:
        return self.dp.accumulator.fmt

    @property
    def cfg(self) -> K.IntConfig:
        return self.config

    @cached_property
    def levels(self) -> np.ndarray:
        return np.asarray(self.level_bits, dtype=np.int64)

    @property
    def L(self) -> int:
        """The left shift aligning exact products to the accumulator (simple datapaths)."""
        return -self.align_shift

    @property
    def simple(self) -> bool:
        """Exact products, aligned by a left shift: the shortcuts' premise."""
        return self.dp.product is None and self.align_shift <= 0

    @property
    def sequential(self) -> bool:
        return self.dp.order.kind == "sequential"

    @property
    def wraps_exactly(self) -> bool:
        """A wrapping accumulator whose every register (tree levels) is at least as wide: shortcut 2."""
        return self.overflow == Overflow.WRAP and all(lb >= self.bits for lb in self.level_bits)

    @property
    def clamps(self) -> bool:
        return self.overflow in (Overflow.SATURATE, Overflow.SATURATE_SYMMETRIC)

    @cached_property
    def register(self) -> K.Register:
        """The specialised sequential kernels' configuration."""
        return K.Register(self.L, self.bits, int(self.signed), self.lo, self.hi, int(self.overflow))

    def operand_bound(self, which: str) -> int:
        """The largest |code - zero point| operand ``which`` ("a" or "b") can present to the multiplier."""
        fmt, zp = (self.dp.a, self.dp.a_zero_point) if which == "a" else (self.dp.b, self.dp.b_zero_point)
        bound = max(abs(fmt.min_code - int(zp)), abs(fmt.max_code - int(zp)))
        if self.dp.zero_point_bits is not None:   # the wrapping subtractor: never beyond its range
            bound = min(bound, 1 << (self.dp.zero_point_bits - 1))
        return bound

    def product_bound(self, amax: int, bmax: int) -> int:
        """The largest aligned-product magnitude (in accumulator LSBs) these operands can produce;
        raises if any stage's exact value could leave int64."""
        p = amax * bmax
        if p >= _I63:
            raise InvalidArgument(f"products of {self.dp.a} and {self.dp.b} operands reach {p.bit_length()} bits, "
                                  "beyond the int64 engine; narrow an operand (at most 63-bit exact products)")
        c = self.config
        if c.p_bits:
            s = int(c.p_shift)
            if s < 0:
                p <<= -s
                if p >= _I63:
                    raise InvalidArgument("left-aligning products into the product register exceeds int64")
            elif s > 0:
                p = (p >> s) + 1
            p = min(p, max(-int(c.p_lo), int(c.p_hi)))
        s = self.align_shift
        if s < 0:
            p <<= -s
            if p >= _I63:
                raise InvalidArgument(f"aligning products to the accumulator's {self.acc_fmt.frac} fractional bits "
                                      f"exceeds int64 (shift {-s})")
        elif s > 0:
            p = (p >> s) + 1
        return p

    def zero_point_adjust(self, codes, zp: int, fmt: Fixed, argument: str):
        """codes - zero point, in a signed subtractor of ``zero_point_bits`` (default: exact) width."""
        if not fmt.min_code <= int(zp) <= fmt.max_code:
            raise InvalidArgument(f"{argument}_zero_point={zp} is outside {fmt}'s codes "
                                  f"[{fmt.min_code}, {fmt.max_code}]")
        if zp == 0 and self.dp.zero_point_bits is None:
            return codes
        if fmt.bits == 64:
            raise InvalidArgument(f"zero points on a 64-bit operand ({argument}) do not fit the int64 engine")
        zp = int(zp)   # a dtype holding the codes, the zero point and every difference
        dt = compact_int_dtype(min(fmt.min_code, fmt.min_code - zp), max(fmt.max_code, fmt.max_code - zp))
        d = np.asarray(codes).astype(dt) - dt.type(zp)
        if self.dp.zero_point_bits is not None:
            d = register_overflow(d, self.dp.zero_point_bits, True, Overflow.WRAP)
        return d

    def proves_all(self, bound: int, imax: int) -> bool:
        """Whether ``bound`` (on every |partial sum| before alignment) proves shortcut 1 plus 2 or 3 for
        every output at once."""
        return bound < _F53 and (self.wraps_exactly or (bound << self.L) + imax <= self.limit)


def plan_integer(dp: Datapath) -> IntegerPlan:
    """The kernel configuration of an integer datapath (validates it). Made once per Datapath object and
    kept on it (a datapath is frozen; training runs the same few on every step); an invalid datapath
    raises on every call."""
    plan = dp.__dict__.get("_integer_plan")
    if plan is None:
        plan = dp.__dict__["_integer_plan"] = _plan_integer(dp)
    return plan


def _plan_integer(dp: Datapath) -> IntegerPlan:
    a, b, acc = dp.a, dp.b, dp.accumulator
    for name, r in (("product_rounding", dp.product_rounding), ("accumulator rounding", acc.rounding)):
        if r == Rounding.STOCHASTIC:
            raise InvalidArgument(f"{name}='stochastic' is not supported by the integer engine; "
                                  "use a deterministic rounding mode")
    f = acc.fmt
    if f.bits == 64 and not f.signed:
        raise InvalidArgument("an unsigned 64-bit accumulator does not fit the int64 engine; use int64 or <= 63 bits")
    symmetric = acc.overflow == Overflow.SATURATE_SYMMETRIC
    lo, hi = register_range(f.bits, f.signed, symmetric)
    prod_frac = a.frac + b.frac
    product = (0, 0, 0, 0, 0, 0, 0)
    if dp.product is not None:
        p = dp.product
        if p.bits == 64 and not p.signed:
            raise InvalidArgument("an unsigned 64-bit product register does not fit the int64 engine")
        plo, phi = register_range(p.bits, p.signed, dp.product_overflow == Overflow.SATURATE_SYMMETRIC)
        product = (prod_frac - p.frac, p.bits, int(p.signed), plo, phi, int(dp.product_rounding),
                   int(dp.product_overflow))
        if dp.product_overflow in (Overflow.ERROR, Overflow.IEEE):
            raise InvalidArgument("product_overflow must be wrap, saturate, saturate_symmetric or saturate_zero")
        prod_frac = p.frac
    align_shift = prod_frac - f.frac
    order = dp.order
    kind = {"sequential": K.SEQUENTIAL, "tree": K.TREE, "chunked": K.CHUNKED}[order.kind]
    config = K.IntConfig(*product, align_shift, int(acc.rounding), f.bits, int(f.signed), lo, hi,
                         int(acc.overflow), kind, order.lanes, 0 if order.combine == "sequential" else 1)
    level_bits = tuple(int(v) for v in (order.level_bits or ()))
    if order.kind == "tree" and not f.signed and 64 in level_bits:
        raise InvalidArgument("unsigned 64-bit tree levels do not fit the int64 engine")
    for s, what in ((config.p_shift, "product register"), (align_shift, "accumulator")):
        if abs(int(s)) > 62:
            raise InvalidArgument(f"the {what} binary point is {abs(int(s))} bits from the product's; at most 62")
    limit = min(hi, -lo)
    if order.kind == "tree":   # narrower adder-tree levels bound the safe range too
        for lb in level_bits:
            llo, lhi = register_range(lb, f.signed, symmetric)
            limit = min(limit, lhi, -llo)
    return IntegerPlan(dp=dp, bits=f.bits, signed=f.signed, lo=lo, hi=hi, overflow=acc.overflow,
                       align_shift=align_shift, config=config, level_bits=level_bits, limit=limit)


# --------------------------------------------------------------------------------------------------
# Operands
# --------------------------------------------------------------------------------------------------
def _absmax(x) -> int:
    return max(-int(x.min()), int(x.max())) if x.size else 0


def _integer_operand(codes) -> np.ndarray:
    """Operand codes as a C-contiguous integer array the kernels take (uint64 codes become int64: the
    format checks have bounded them below 2**63)."""
    x = np.asarray(codes)
    if x.dtype.kind not in "iu" or x.dtype == np.uint64:
        x = x.astype(np.int64)
    return kernel_array(x, x.dtype)


class Operands:
    """The effective operands (codes minus zero points) A (M, K), B (K, N) in the integer dtype they came
    in, with their conversions made once, when a path first needs them."""

    def __init__(self, A, B):
        self.A, self.B = A, B
        self.M, self.K = A.shape
        self.N = B.shape[1]

    @cached_property
    def a64(self) -> np.ndarray:
        return kernel_array(self.A, np.int64)

    @cached_property
    def b64(self) -> np.ndarray:
        return kernel_array(self.B, np.int64)

    @cached_property
    def bt64(self) -> np.ndarray:
        """B transposed (N, K), int64, contiguous, for the per-output kernels (a scratch buffer)."""
        bt = scratch("gemm B.T", (self.N, self.K), np.int64)
        K.transpose_into(self.B, bt)
        return bt

    def lanes(self, dtype, shift: int) -> tuple[np.ndarray, np.ndarray]:
        """A << shift and B as ``dtype`` (scratch buffers; the caller has proved every value exact in it)."""
        if np.dtype(dtype) == np.int64:
            return (self.a64 << shift if shift else self.a64), self.b64
        if self.A.size + self.B.size < 1 << 16:   # small: fresh arrays cost less than the scratch lookups
            A, B = self.A.astype(dtype), self.B.astype(dtype)
        else:
            A = scratch("gemm A lanes", self.A.shape, dtype)
            np.copyto(A, self.A, casting="unsafe")
            B = scratch("gemm B lanes", self.B.shape, dtype)
            np.copyto(B, self.B, casting="unsafe")
        if shift:   # exact: |a| << shift is within the proven bound
            A *= np.dtype(dtype).type(2 ** shift)
        return A, B

    @property
    def narrow(self) -> tuple[np.ndarray, np.ndarray]:
        """A and B for kernels that multiply in int64 whatever signed integers they read (Numba widens
        signed integers to int64 before arithmetic): the operands as they are when signed, int64 copies
        otherwise (unsigned ones widen to uint64, which would mix with int64 into float64)."""
        ok = all(x.dtype.kind == "i" for x in (self.A, self.B))
        return (self.A, self.B) if ok else (self.a64, self.b64)

    @cached_property
    def absmax(self) -> tuple[int, int]:
        return _absmax(self.A), _absmax(self.B)


# --------------------------------------------------------------------------------------------------
# Bounds
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bounds:
    """What the operands prove: |a| <= amax, |b| <= bmax (from the formats, or the data when ``data``),
    |init| <= imax, and the scan of shortcut 3/4 when one was made (None otherwise)."""

    M: int
    K: int
    N: int
    amax: int
    bmax: int
    imax: int
    data: bool
    scan: object = None

    @property
    def global_bound(self) -> int:
        """K * max|a| * max|b|: a bound on every |partial sum| of every order (before alignment)."""
        return self.K * self.amax * self.bmax


@dataclass(frozen=True)
class GemmPlan:
    """One GEMM: the datapath's plan, the operands' bounds and whether statistics are asked for."""

    config: IntegerPlan
    bounds: Bounds
    stats: bool

    @property
    def shortcut(self) -> bool:
        """The exact shortcuts apply: no statistics, exact products, a non-empty output."""
        return not self.stats and self.config.simple and self.bounds.M * self.bounds.N > 0

    @property
    def no_overflow(self) -> bool:
        """The global bound proves that no register on the path ever overflows (any overflow mode)."""
        b = self.bounds
        return (b.global_bound << self.config.L) + b.imax <= self.config.limit

    @property
    def cauchy_schwarz(self) -> bool:
        """max ||a_i|| * max ||b_j|| (aligned, plus |init|) proves every output free of overflow."""
        c, b = self.config, self.bounds
        if b.scan is None or b.imax > c.limit:
            return False
        return int(b.scan.sqa.sum(0).max()) * int(b.scan.sqb.sum(0).max()) << (2 * c.L) <= (c.limit - b.imax) ** 2

    @property
    def block_test(self) -> bool:
        """Shortcut 4's arithmetic is exact for these bounds (sequential order)."""
        c, b = self.config, self.bounds
        return (c.sequential and b.scan is not None and BLOCK * max(b.amax, b.bmax) ** 2 < _F53
                and c.limit < 2 ** 52 and (b.global_bound << c.L) + b.imax < 2 ** 52)

    @property
    def stats_no_overflow(self) -> bool:
        c = self.config
        return self.stats and c.sequential and c.simple and self.no_overflow

    @property
    def reach(self) -> int:
        """|init| + (K * max|a| * max|b| << L): a bound on every aligned product and exact partial sum."""
        b = self.bounds
        return (b.global_bound << self.config.L) + b.imax

    @property
    def lane_dtype(self):
        """The narrowest lanes that hold every aligned product and partial sum exactly (STATS_NO_OVERFLOW)."""
        reach = self.reach
        return np.float32 if reach <= 2 ** 24 else np.int32 if reach < 2 ** 31 else np.int64

    @property
    def clamp_lane_dtype(self):
        """STATS_SEQUENTIAL with a saturate or saturate_symmetric register: float32 where every aligned
        product, exact partial sum and register input (|acc| + |p|) is at most 2**24, int32 below 2**31,
        else None (the int64 kernel)."""
        c, b = self.config, self.bounds
        if c.overflow not in (Overflow.SATURATE, Overflow.SATURATE_SYMMETRIC) or not c.simple:
            return None
        need = max(self.reach, max(b.imax, -c.lo, c.hi) + (b.amax * b.bmax << c.L))
        return np.float32 if need <= 2 ** 24 else np.int32 if need < 2 ** 31 else None

    @property
    def wrap_lane_dtype(self):
        """STATS_SEQUENTIAL with a wrapping register: float32 where every aligned product, exact partial
        sum and |acc| + |p| + 2**(W-1) is at most 2**24, else None (the int64 kernel)."""
        c, b = self.config, self.bounds
        if c.overflow != Overflow.WRAP or not c.simple:
            return None
        half = c.hi + 1 if c.signed else 0
        need = max(self.reach, max(b.imax, -c.lo, c.hi) + half + (b.amax * b.bmax << c.L))
        return np.float32 if need <= 2 ** 24 else None

    @property
    def lane_offset(self) -> int:
        """1 where ``lane_dtype`` also holds 4 * reach + 1 exactly, so that the signed register's kernel
        (``kernels.int_gemm.running_absmax_dense``) can run the lanes as 4 * e + 1; else 0."""
        f = 4 * self.reach + 1
        lane = self.lane_dtype
        return int(f <= 2 ** 24 if lane is np.float32 else f < 2 ** 31 if lane is np.int32 else f < _I63)


# the overflow modes the vectorised register kernels (sequential, chunked lanes, tree) run branch-free
DENSE_MODES = (Overflow.WRAP, Overflow.SATURATE, Overflow.SATURATE_SYMMETRIC, Overflow.SATURATE_ZERO)


def _tree_dense(c: IntegerPlan) -> bool:
    """``kernels.int_gemm.tree_stats_dense`` runs this datapath: tree order, exact products, wrap or
    saturating registers below 64 bits at every level."""
    return (c.dp.order.kind == "tree" and c.simple and c.bits < 64 and all(lb < 64 for lb in c.level_bits)
            and c.overflow in DENSE_MODES)


def _chunked_dense(c: IntegerPlan, b) -> bool:
    """STATS_CHUNKED's lanes run this datapath on these bounds (chunked order, exact products, a wrap or
    saturating register below 64 bits, chunks long enough to beat the per-output kernel)."""
    return (c.dp.order.kind == "chunked" and c.simple and c.bits < 64 and c.overflow in DENSE_MODES
            and b.K >= _MIN_CHUNK * c.dp.order.lanes and b.M * b.N * b.K >= _MIN_CHUNKED_WORK)


def choose_path(plan: GemmPlan) -> IntPath:
    """The path for ``plan``: the cheapest proof its facts support (pure; see ``IntPath``)."""
    c, b = plan.config, plan.bounds
    if plan.stats:
        if plan.stats_no_overflow:
            return IntPath.STATS_NO_OVERFLOW
        if c.sequential and c.simple and c.bits < 64 and c.overflow in DENSE_MODES:
            return IntPath.STATS_SEQUENTIAL
        if c.signed and _chunked_dense(c, b):
            return IntPath.STATS_CHUNKED
        if _tree_dense(c):
            return IntPath.STATS_TREE
        return IntPath.STATS_KERNEL
    if not plan.shortcut:
        return IntPath.KERNEL
    if b.global_bound >= _F53:
        return IntPath.PER_OUTPUT_BOUND
    if c.proves_all(b.global_bound, b.imax):
        return IntPath.EXACT_BLAS
    if plan.cauchy_schwarz:
        return IntPath.CAUCHY_SCHWARZ
    if plan.block_test:
        return IntPath.BLOCK_ENCLOSURE
    return IntPath.PER_OUTPUT_BOUND


def gemm_plan(config: IntegerPlan, ops: Operands, imax: int, *, stats: bool, code_ranges=None,
              unchecked=()) -> GemmPlan:
    """The plan of one GEMM: bounds from the formats, tightened from the data only where the formats'
    prove too little for the int64 limits or for a shortcut (the caller's ``code_ranges``, the shortcuts'
    scan, or one pass over each operand). Range-checks the ``unchecked`` operands on the way."""
    dp = config.dp
    M, Kd, N = ops.M, ops.K, ops.N
    fa, fb = config.operand_bound("a"), config.operand_bound("b")
    formats = Bounds(M, Kd, N, fa, fb, imax, False)
    shortcut = GemmPlan(config, formats, stats).shortcut
    # where the formats alone do not prove shortcut 1 + 2 or 3, the data must: read each operand once for
    # its range, float copy and block sums of squares
    scan = None
    if shortcut and not config.proves_all(formats.global_bound, imax):
        scan = scan_operands(ops.A, ops.B, fa, fb)
    for key, name, x, fmt in unchecked:   # codes the caller left to be range-checked here
        lo, hi = (None, None) if scan is None else (scan.a_lo, scan.a_hi) if key == "a" else (scan.b_lo, scan.b_hi)
        if lo is None or lo < fmt.min_code or hi > fmt.max_code:
            operand_codes_range(x, fmt, name)   # locates and reports an offending element

    def from_data() -> Bounds:
        if scan is not None:
            amax, bmax = min(fa, max(-scan.a_lo, scan.a_hi)), min(fb, max(-scan.b_lo, scan.b_hi))
        elif code_ranges is not None and dp.zero_point_bits is None:
            (alo, ahi), (blo, bhi) = code_ranges
            za, zb = int(dp.a_zero_point), int(dp.b_zero_point)
            amax = min(fa, max(abs(alo - za), abs(ahi - za)))
            bmax = min(fb, max(abs(blo - zb), abs(bhi - zb)))
        else:
            amax, bmax = min(fa, ops.absmax[0]), min(fb, ops.absmax[1])
        return Bounds(M, Kd, N, amax, bmax, imax, True, scan)

    bounds = Bounds(M, Kd, N, fa, fb, imax, False, scan)
    try:
        pmax = config.product_bound(bounds.amax, bounds.bmax)
    except ValueError:
        bounds = from_data()
        pmax = config.product_bound(bounds.amax, bounds.bmax)
    if Kd * pmax + imax >= _I63 and not bounds.data:
        bounds = from_data()
        pmax = config.product_bound(bounds.amax, bounds.bmax)
    if Kd * pmax + imax >= _I63:
        raise InvalidArgument(f"exact partial sums could reach {(Kd * pmax + imax).bit_length()} bits (K={Kd}); the "
                              "engine tracks them in int64: use narrower operands or split K")
    plan = GemmPlan(config, bounds, stats)
    if not bounds.data and ((shortcut and not config.proves_all(bounds.global_bound, imax)) or
                            (stats and config.sequential and config.simple and not plan.no_overflow)):
        plan = GemmPlan(config, from_data(), stats)   # the formats' bound decides nothing: the data's may
    if (stats and config.sequential and config.simple and not plan.bounds.data and code_ranges is not None
            and dp.zero_point_bits is None):   # free: the caller's code ranges may allow narrower lanes
        plan = GemmPlan(config, from_data(), stats)
    b = plan.bounds
    if (shortcut and b.scan is None and b.global_bound < _F53 and not config.proves_all(b.global_bound, imax)):
        # the formats were too wide to scan by; the data may not be
        plan = GemmPlan(config, Bounds(M, Kd, N, b.amax, b.bmax, imax, b.data,
                                       scan_operands(ops.A, ops.B, b.amax, b.bmax)), stats)
    return plan


# --------------------------------------------------------------------------------------------------
# Execute
# --------------------------------------------------------------------------------------------------
@dataclass
class Planes:
    """Where the executors write: ``init`` (read only), ``acc``; ``exact``, ``nov`` (overflow counts),
    ``max_p``/``nbits`` where the path computes them (``stats_buf``: two planes for them, allocated
    with the others when statistics are asked for)."""

    init: np.ndarray
    acc: np.ndarray
    exact_buf: np.ndarray
    nov: np.ndarray
    exact: np.ndarray | None = None
    max_p: np.ndarray | None = None
    nbits: np.ndarray | None = None
    stats_buf: np.ndarray | None = None

    def stat_planes(self):
        """Two (M, N) int64 planes for max_p and nbits."""
        return self.stats_buf if self.stats_buf is not None else np.empty((2,) + self.acc.shape, dtype=np.int64)


@contextmanager
def _threads_for(work: int):
    """One thread for kernel calls below 2**22 MACs. Besides the start-up cost, a parallel region leaves
    its OpenMP workers spinning for a while, and they then slow the next call's BLAS slabs (measured: a
    512^3 saturating GEMM alternating between 4.0 and 5.9 ms with a parallel 0.5 M MAC kernel, steady at
    4.1 ms with a serial one)."""
    if work >= 1 << 22:
        yield
        return
    n = nb.get_num_threads()
    nb.set_num_threads(1)
    try:
        yield
    finally:
        nb.set_num_threads(n)


def _run_unproven(plan: GemmPlan, ops: Operands, out: Planes, rows, cols, start_k=None, start_acc=None,
                  bt_floats=None) -> bool:
    """The cycle-accurate kernel on the outputs (rows[t], cols[t]) only; with start_k/start_acc output t
    resumes at cycle start_k[t] holding start_acc[t] (sequential order). ``bt_floats``, when given, is B
    transposed as exact floats, which the sequential saturating kernel may read instead of int64.
    Returns whether the rail-skipping block kernel ran (most outputs unproven)."""
    c = plan.config
    if not rows.size:
        return False
    sequential = c.sequential and c.clamps and c.bits < 64
    work = rows.size * ops.K
    if sequential and 2 * rows.size < out.acc.size:   # serial nogil kernel, the outputs split across threads
        if start_k is None:
            start_k, start_acc = np.zeros(rows.size, dtype=np.int64), out.init[rows, cols]
        Aw, Bw = ops.a64, (bt_floats if bt_floats is not None else ops.bt64)

        def part(t):   # outputs t of the list, on one thread
            kernel = notice_first_use(K.saturate_sequential_kernel)
            kernel(Aw, Bw, start_k[t], start_acc[t], c.register, rows[t], cols[t], out.acc, out.nov)

        row_parallel(part, rows.size, work=work, min_work=1 << 21)   # below: a thread hand-off costs more
        return False
    if _chunked_dense(c, plan.bounds) and 2 * rows.size >= out.acc.size:   # most outputs: the lanes on all
        M, N = out.acc.shape
        planes = np.empty((3, M, N), dtype=np.int64)
        out.nov[...] = 0
        execute_stats_chunked(plan, ops, Planes(init=out.init, acc=out.acc, exact_buf=planes[0], nov=out.nov,
                                                stats_buf=planes[1:]), IntPath.STATS_CHUNKED)
        return False
    if _tree_dense(c) and 2 * rows.size >= out.acc.size:   # most outputs: the vectorised tree on all of them
        _run_tree(c, ops, out, *np.empty((3,) + out.acc.shape, dtype=np.int64))   # (the proven ones: as they are)
        return False
    with _threads_for(work):
        if sequential:   # most outputs: by blocks of K, vectorised over columns, skipping rail blocks
            A, B = ops.narrow
            ranges = _block_ranges(A, B, RAIL_BLOCK)
            notice_first_use(K.saturate_rail_blocks)(A, B, out.init, c.register, RAIL_BLOCK, *ranges, out.acc, out.nov)
            return True
        kernel = notice_first_use(K.SUBSET_KERNELS[c.config.order])   # the order's kernel only
        kernel(ops.a64, ops.bt64, out.init, c.config, c.levels, rows, cols, out.acc, out.nov)
    return False


RAIL_BLOCK = 16   # K per block of the rail test: after a few products a saturating output is on its rail


def _block_ranges(A, B, blk):
    """Per ``blk``-wide block q of K: the smallest and largest code of each row of A (Q, M) and column of B."""
    Q = -(-A.shape[1] // blk)
    amin, amax = np.empty((Q, A.shape[0]), np.int64), np.empty((Q, A.shape[0]), np.int64)
    bmin, bmax = np.empty((Q, B.shape[1]), np.int64), np.empty((Q, B.shape[1]), np.int64)
    K.block_code_ranges(A, B, blk, amin, amax, bmin, bmax)
    return amin, amax, bmin, bmax


def _all_outputs(M, N):
    return tuple(a.ravel().astype(np.int64) for a in np.indices((M, N)))


def execute_exact_blas(plan: GemmPlan, ops: Operands, out: Planes, path: IntPath) -> IntPath:
    """EXACT_BLAS and CAUCHY_SCHWARZ: one exact BLAS product for every output."""
    c, b = plan.config, plan.bounds
    out.exact = out.exact_buf
    # the scan's copies are exact: their dtype was chosen for the formats' bounds, which hold the data's
    copies = {} if b.scan is None else {"Af": b.scan.Af, "Bf": b.scan.Bf}
    dt = b.scan.Af.dtype if b.scan is not None else float_dtype(min(b.global_bound, _F53 - 1))
    exact_products(ops.A, ops.B, dt, out.init, c.L, c.bits, c.signed, c.wraps_exactly, out.exact, out.acc,
                   None, **copies)
    return path


def execute_per_output_bound(plan: GemmPlan, ops: Operands, out: Planes, path: IntPath) -> IntPath:
    """PER_OUTPUT_BOUND: BLAS for A @ B and T = |A| @ |B|; the kernel for the outputs T does not clear
    (every output, through KERNEL, when T itself is not exact)."""
    c, b = plan.config, plan.bounds
    exact = out.exact_buf
    T = np.empty((b.M, b.N), dtype=float_dtype(b.global_bound))
    copies = {} if b.scan is None else {"Af": b.scan.Af, "Bf": b.scan.Bf}
    dt = b.scan.Af.dtype if b.scan is not None else float_dtype(min(b.global_bound, _F53 - 1))
    exact_products(ops.A, ops.B, dt, out.init, c.L, c.bits, c.signed, c.wraps_exactly, exact, out.acc, T,
                   **copies)
    if not T.max(initial=0.0) < 2.0 ** 53:   # shortcut 1's test failed: run the kernel
        return execute_kernel(plan, ops, out, IntPath.KERNEL)
    out.exact = exact
    if not c.wraps_exactly:
        reach = np.abs(out.init) + (T.astype(np.int64) << c.L)   # integers; < 2**63 by the plan's bound
        rows, cols = (v.astype(np.int64) for v in np.nonzero(reach > c.limit))
        _run_unproven(plan, ops, out, rows, cols)
    return path


def execute_block_enclosure(plan: GemmPlan, ops: Operands, out: Planes, path: IntPath) -> IntPath:
    """BLOCK_ENCLOSURE: the blocked midpoint test; unproven outputs resume the kernel (RAIL_BLOCKS when
    most are unproven)."""
    c, b = plan.config, plan.bounds
    out.exact = out.exact_buf
    rows, cols, start_k, start_acc = sequential_block_test(b.scan.Af, b.scan.Bf, out.init, b.imax, c.L, c.limit,
                                                           b.amax, b.bmax, b.scan.sqa, b.scan.sqb, out.exact)
    out.acc[...] = out.exact
    # the test's float copy of B, still in cache, transposed: half the bytes of int64
    Bf = b.scan.Bf
    bft = scratch("gemm B.T float", (ops.N, ops.K), Bf.dtype)
    if rows.size and 2 * rows.size < out.acc.size and c.clamps and c.bits < 64:
        K.transpose_into(Bf, bft)
    rail = _run_unproven(plan, ops, out, rows, cols, start_k, start_acc, bft)
    return IntPath.RAIL_BLOCKS if rail else path


def execute_kernel(plan: GemmPlan, ops: Operands, out: Planes, path: IntPath) -> IntPath:
    """KERNEL: the cycle-accurate kernel on every output, without statistics."""
    c, b = plan.config, plan.bounds
    out.exact = None
    rows, cols = _all_outputs(b.M, b.N)
    with _threads_for(b.M * b.N * b.K):
        kernel = notice_first_use(K.SUBSET_KERNELS[c.config.order])   # the order's kernel only
        kernel(ops.a64, ops.bt64, out.init, c.config, c.levels, rows, cols, out.acc, out.nov)
    return path


def _by_rows(part, M: int, work: int):
    """part(rows) for slabs of range(M), one per thread (``row_parallel``); small calls directly, without
    asking how many threads there are."""
    if work < 1 << 22:
        part(slice(0, M))
    else:
        row_parallel(part, M, work=work)


def _extremes(out: Planes, mx, mn, signed: bool):
    out.max_p = np.maximum(mx, -mn)
    out.nbits = bits_needed(mx, mn, signed)


def execute_stats_sequential(plan: GemmPlan, ops: Operands, out: Planes, path: IntPath) -> IntPath:
    c, b = plan.config, plan.bounds
    out.exact = out.exact_buf
    lane = plan.clamp_lane_dtype
    if lane is not None:   # a saturating register in float32 or int32 lanes (twice as many as int64)
        out.max_p, out.nbits = out.stat_planes()
        A, B = ops.lanes(lane, c.L)
        cols = min(b.N, K.ABSMAX_COLS) or 1
        proto = np.empty((max(K.ABSMAX_ROWS, K.ABSMAX_ROWS * K.ABSMAX_COLS // cols), cols), dtype=lane)
        lo, hi = lane(c.lo), lane(c.hi)
        kernel = notice_first_use(K.clamp_stats_dense)

        def part(rows):   # a slab of rows on one thread (serial nogil kernel)
            kernel(A, B, out.init, proto, lo, hi, c.signed, rows.start, rows.stop, out.acc, out.nov, out.exact,
                   out.max_p, out.nbits)

        _by_rows(part, b.M, b.M * b.N * b.K)
        return path
    if plan.wrap_lane_dtype is not None:   # a wrapping register in float32 lanes
        out.max_p, out.nbits = out.stat_planes()
        A, B = ops.lanes(np.float32, c.L)
        cols = min(b.N, K.ABSMAX_COLS) or 1
        proto = np.empty((max(K.ABSMAX_ROWS, K.ABSMAX_ROWS * K.ABSMAX_COLS // cols), cols), dtype=np.float32)
        half, modulus = np.float32(c.hi + 1 if c.signed else 0), np.float32(2.0 ** c.bits)
        wrap_kernel = notice_first_use(K.wrap_stats_dense)

        def part_wrap(rows):   # a slab of rows on one thread (serial nogil kernel)
            wrap_kernel(A, B, out.init, proto, half, modulus, c.signed, rows.start, rows.stop, out.acc, out.nov,
                        out.exact, out.max_p, out.nbits)

        _by_rows(part_wrap, b.M, b.M * b.N * b.K)
        return path
    mx, mn = np.empty((b.M, b.N), dtype=np.int64), np.empty((b.M, b.N), dtype=np.int64)
    with _threads_for(ops.a64.shape[0] * ops.a64.shape[1] * ops.b64.shape[1]):
        notice_first_use(K.sequential_stats_dense)(ops.a64, ops.b64, out.init, c.register, out.acc, out.nov, mx, mn,
                                                   out.exact)
    _extremes(out, mx, mn, c.signed)
    return path


def execute_stats_no_overflow(plan: GemmPlan, ops: Operands, out: Planes, path: IntPath) -> IntPath:
    c, b = plan.config, plan.bounds
    out.exact = out.exact_buf
    out.max_p, out.nbits = out.stat_planes()
    lane = plan.lane_dtype
    if c.signed:   # the running sum's magnitude alone gives both statistics (one operation fewer per MAC)
        offset = plan.lane_offset
        A, B = ops.lanes(lane, c.L + 2 * offset)
        M, N = b.M, b.N
        flip = 0 < N < 64 and M > N   # few columns: vectorise over the rows instead, as C.T = B.T @ A.T (the
        if flip:                  # same products, summed in the same order of k)
            A, B = np.ascontiguousarray(B.T), np.ascontiguousarray(A.T)
            M, N = N, M
        tile = K.ABSMAX_ROWS * K.ABSMAX_COLS   # outputs per tile (their running sums stay in cache)
        if flip:   # every row (< 64) in one tile: the planes are then written along their rows
            rows, cols = M, min(N, max(64, tile // M))
        else:
            cols = min(N, K.ABSMAX_COLS) or 1
            rows = max(K.ABSMAX_ROWS, tile // cols)
        proto = np.empty((rows, cols), dtype=lane)
        kernel = notice_first_use(K.running_absmax_dense)

        def part(rows):   # a slab of rows on one thread (serial nogil kernel)
            kernel(A, B, out.init, proto, offset, flip, rows.start, rows.stop, out.acc, out.exact, out.max_p,
                   out.nbits)   # acc = exact: no overflow, the register is the exact sum; the counts stay 0

        _by_rows(part, M, M * N * b.K)
        return path
    A, B = ops.lanes(lane, c.L)
    proto = np.empty((K.EXTREMES_ROWS, min(b.N, K.EXTREMES_COLS) or 1), dtype=lane)
    with _threads_for(b.M * b.N * b.K):
        notice_first_use(K.running_extremes_dense)(A, B, out.init, proto, c.signed, out.exact, out.max_p, out.nbits)
    out.acc[...] = out.exact   # no overflow: the register is the exact sum; the counts stay 0
    return path


def execute_stats_kernel(plan: GemmPlan, ops: Operands, out: Planes, path: IntPath) -> IntPath:
    c, b = plan.config, plan.bounds
    out.exact = out.exact_buf
    mx, mn = np.empty((b.M, b.N), dtype=np.int64), np.empty((b.M, b.N), dtype=np.int64)
    with _threads_for(ops.a64.shape[0] * ops.a64.shape[1] * ops.bt64.shape[0]):
        kernel = notice_first_use(K.GEMM_KERNELS[c.config.order])   # the order's kernel only
        kernel(ops.a64, ops.bt64, out.init, c.config, c.levels, out.acc, out.nov, mx, mn, out.exact)
    _extremes(out, mx, mn, c.signed)
    return path


# STATS_CHUNKED costs about as much per output and lane (the lane's planes, one combine adder) as the
# per-output kernel costs for a dozen MACs: it runs where the chunks are at least 16 long (measured: 3.5x
# faster at 256^3 with 4 lanes, 3.4x slower with 64 lanes of 4), and not on calls too small to amortise
# its per-lane Python
_MIN_CHUNK = 16
_MIN_CHUNKED_WORK = 1 << 15


def _lane_config(config: IntegerPlan) -> IntegerPlan:
    """The sequential-order plan of a chunked datapath's lanes (same register), kept on the datapath."""
    dp = config.dp
    lane = dp.__dict__.get("_lane_plan")
    if lane is None:
        lane = dp.__dict__["_lane_plan"] = plan_integer(dp.replace(order=Order("sequential")))
    return lane


def execute_stats_chunked(plan: GemmPlan, ops: Operands, out: Planes, path: IntPath) -> IntPath:
    """STATS_CHUNKED: each lane's chunk through the sequential statistics paths, then the combine adders,
    as the lanes finish (a sequential combine keeps one running register; the tree keeps a stack of
    subtrees, combined as in ``tree_stats_dense``), so that at most log2(lanes) + 2 lanes' planes live."""
    c, b = plan.config, plan.bounds
    P = c.dp.order.lanes
    C = -(-b.K // P)                          # chunk length (the per-output kernel's)
    lane_cfg = _lane_config(c)
    MN = (b.M, b.N)
    zeros = np.zeros(MN, dtype=np.int64)
    max_p, nbits = out.stat_planes()
    max_p[...] = 0
    nbits[...] = 1
    lane_nov = np.empty(MN, dtype=np.int64)
    lane_stats = np.empty((2,) + MN, dtype=np.int64)
    add = notice_first_use(K.add_registers)
    args = (c.bits, c.signed, c.lo, c.hi, int(c.overflow))

    def combine(x, y):   # subtree x = x (+) y: register, exact sum, counts and statistics (flat C planes)
        add(x[1].reshape(-1), y[1].reshape(-1), x[2].reshape(-1), y[2].reshape(-1), *args, out.nov.reshape(-1),
            max_p.reshape(-1), nbits.reshape(-1))

    sequential = c.dp.order.combine == "sequential"
    stack = []                                # [level, register, exact sum] of the combine's subtrees
    for l in range(P):
        k0, k1 = min(l * C, b.K), min((l + 1) * C, b.K)
        init = out.init if l == 0 else zeros
        acc, ex = (out.acc, out.exact_buf) if l == 0 else (np.empty(MN, np.int64), np.empty(MN, np.int64))
        lane_nov[...] = 0
        lane = Planes(init=init, acc=acc, exact_buf=ex, nov=lane_nov, stats_buf=lane_stats)
        if k1 > k0:
            lops = Operands(ops.A[:, k0:k1], ops.B[k0:k1])
            # the whole operands' bounds hold every slice's codes
            lplan = GemmPlan(lane_cfg, Bounds(b.M, k1 - k0, b.N, b.amax, b.bmax, b.imax if l == 0 else 0, b.data),
                             True)
            lpath = choose_path(lplan)
            EXECUTORS[lpath](lplan, lops, lane, lpath)
        else:                                 # an empty chunk: the lane keeps its start value
            lane.acc[...] = init
            lane.exact = lane.exact_buf
            lane.exact[...] = init
            lane.max_p, lane.nbits = lane.stat_planes()
            lane.max_p[...] = np.abs(init)
            lane.nbits[...] = bits_needed(np.maximum(init, 0), np.minimum(init, 0), True)
        np.maximum(max_p, lane.max_p, out=max_p)
        np.maximum(nbits, lane.nbits, out=nbits)
        out.nov += lane_nov
        item = [0, lane.acc, lane.exact]
        if sequential and stack:              # lane 0 + lane 1 + ...
            combine(stack[0], item)
            continue
        stack.append(item)
        while len(stack) >= 2 and stack[-1][0] == stack[-2][0]:   # the pairwise tree (_pairwise's adders)
            combine(stack[-2], stack[-1])
            stack[-2][0] += 1
            stack.pop()
    while len(stack) >= 2:                    # its odd terms, passed through, meet the older subtrees
        combine(stack[-2], stack[-1])
        stack[-2][0] += 1
        stack.pop()
    # every adder writes into its left operand: the root is lane 0's planes, the results' own
    out.exact = out.exact_buf
    out.max_p, out.nbits = max_p, nbits
    return path


def _run_tree(c: IntegerPlan, ops: Operands, out: Planes, mx, mn, exact):
    """``kernels.int_gemm.tree_stats_dense`` on every output: registers and counts into out, the extremes
    and exact sums into mx, mn, exact."""
    M, N = out.acc.shape
    with _threads_for(M * N * ops.K):
        notice_first_use(K.tree_stats_dense)(ops.a64, ops.b64, out.init, c.L, c.bits, c.signed, c.lo, c.hi,
                                             int(c.overflow), c.levels, out.acc, out.nov, mx, mn, exact)


def execute_stats_tree(plan: GemmPlan, ops: Operands, out: Planes, path: IntPath) -> IntPath:
    """STATS_TREE: the streamed adder tree on every output (``kernels.int_gemm.tree_stats_dense``)."""
    c, b = plan.config, plan.bounds
    out.exact = out.exact_buf
    mx, mn = np.empty((b.M, b.N), dtype=np.int64), np.empty((b.M, b.N), dtype=np.int64)
    _run_tree(c, ops, out, mx, mn, out.exact)
    _extremes(out, mx, mn, c.signed)
    return path


EXECUTORS = {
    IntPath.EXACT_BLAS: execute_exact_blas,
    IntPath.CAUCHY_SCHWARZ: execute_exact_blas,
    IntPath.PER_OUTPUT_BOUND: execute_per_output_bound,
    IntPath.BLOCK_ENCLOSURE: execute_block_enclosure,
    IntPath.KERNEL: execute_kernel,
    IntPath.STATS_SEQUENTIAL: execute_stats_sequential,
    IntPath.STATS_NO_OVERFLOW: execute_stats_no_overflow,
    IntPath.STATS_CHUNKED: execute_stats_chunked,
    IntPath.STATS_TREE: execute_stats_tree,
    IntPath.STATS_KERNEL: execute_stats_kernel,
}


# --------------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------------
def _bias_codes(bias, fmt: Fixed, shape, argument="bias"):
    codes = operand_codes(bias, fmt, argument)
    try:
        return kernel_array(np.broadcast_to(codes, shape), np.int64)
    except ValueError:
        raise InvalidArgument(f"{argument} of shape {np.shape(bias)} does not broadcast to the output shape {shape} "
                              "(give one value per output column, or a full (M, N) array)") from None


def trace_outputs(config: IntegerPlan, ops: Operands, init, trace, shape) -> dict:
    """{(i, j): per-cycle register values} for the outputs ``trace`` names."""
    traces = {}
    buf = np.empty(2 * ops.K + 2 * config.dp.order.lanes + 4, dtype=np.int64)
    simple = config.simple and config.sequential     # the common datapath's small kernel
    kernel = K.trace_seq_simple if simple else K.TRACE_KERNELS[config.config.order]
    cfg = config.register if simple else config.config
    for i, j in check_trace("trace", trace, shape):
        n = notice_first_use(kernel)(ops.a64[i], np.ascontiguousarray(ops.B[:, j], dtype=np.int64), init[i, j], cfg,
                                     config.levels, buf)
        traces[(i, j)] = buf[:n].copy()
    return traces


def run_integer_gemm(Ac, Bc, dp: Datapath, *, bias=None, trace=None, stats=True, code_ranges=None,
                     unchecked=()) -> GemmResult:
    """The engine on integer operand codes Ac (M, K), Bc (K, N) (conv2d lowers to this). ``code_ranges``
    ((a_lo, a_hi), (b_lo, b_hi)), when the caller knows them, bound the codes and spare a pass over the
    data (they must hold every code; they need not be attained). ``unchecked``: (key "a"/"b", argument
    name, array, format) for operands whose codes the caller has not range-checked; the engine checks
    them in its own pass (only for operands without a zero point, whose codes reach it unchanged)."""
    stats = check_stats(stats)
    counts_only = stats == "overflow"
    config = plan_integer(dp)
    # operands stay in the integer dtype they come in (conv2d passes int8 patches for int8 formats): the
    # BLAS shortcuts read them directly; int64 copies are made only when a per-output kernel runs
    ops = Operands(_integer_operand(config.zero_point_adjust(Ac, dp.a_zero_point, dp.a, "a")),
                   _integer_operand(config.zero_point_adjust(Bc, dp.b_zero_point, dp.b, "b")))
    M, N = ops.M, ops.N
    acc_fmt = config.acc_fmt
    # bias: preloaded into the accumulator, or added in the output stage
    init = zeros((M, N), np.int64)   # the kernels only read it; never returned
    imax = 0
    out_bias = None
    if bias is not None:
        if dp.bias_preload:
            init = _bias_codes(bias, acc_fmt, (M, N))
            imax = _absmax(init)
        else:
            bb = dp.output.bias_bits or acc_fmt.bits
            out_bias = _bias_codes(bias, Fixed(bb, acc_fmt.frac, True), (M, N))
    plan = gemm_plan(config, ops, imax, stats=bool(stats), code_ranges=code_ranges, unchecked=unchecked)
    if counts_only:   # the counts alone: where the bound proves them all 0, the exact shortcuts give the rest
        plan = GemmPlan(config, plan.bounds, not (config.simple and plan.no_overflow))
    path = choose_path(plan)
    # overflow counts are returned only with stats; without, the kernels write them into scratch
    nov = np.zeros((M, N), dtype=np.int64) if stats else scratch("gemm overflow counts", (M, N), np.int64)
    # the exact sums, the accumulators and the values share one allocation: a fresh multi-megabyte array
    # per result costs a page fault per 4 KiB on first write (0.9 ms of 1.1 for 512x512), while numpy
    # backs allocations of 4 MiB and more with huge pages
    planes = np.empty((5 if plan.stats else 3, M, N), dtype=np.int64)   # with stats: max_p and nbits too
    out = Planes(init=init, acc=planes[1], exact_buf=planes[0], nov=nov, stats_buf=planes[3:] if plan.stats else None)
    path = EXECUTORS[path](plan, ops, out, path)
    traces = trace_outputs(config, ops, init, trace, (M, N)) if trace is not None else {}
    codes, values = output_stage(out.acc, dp.output, acc_fmt, dp.accumulator.overflow, out_bias,
                                 values_out=planes[2].view(np.float64))
    acc_values = values if codes is out.acc else ints_to_values(out.acc, acc_fmt.frac)
    release()
    return GemmResult(values=values, codes=codes, acc=out.acc, overflow_count=nov if stats else None,
                      acc_values=acc_values, exact=out.exact, max_partial=None if counts_only else out.max_p,
                      bits_needed=None if counts_only else out.nbits, datapath=dp, traces=traces, path=path.value)
