"""Slow, obviously correct float datapath: exact Fractions, every addition rounded by a plain-Python
rounding of a Fraction to the format, literal loops in the documented schedules.

This is what ``fxsim.engines.floating`` answers to. Only the random bits (the shared counter-based source,
``kernels.random.random_bits``) come from the package: they are the definition of the random stream.
"""
from fractions import Fraction
import math

from fxsim.formats import Fixed, Float
from fxsim.modes import Overflow, Rounding
from fxsim._kernels.random import random_bits

R = Rounding
PRODUCT_STREAM = 1 << 40
BIAS_COUNTER = 1 << 40


def floor_log2(a: Fraction) -> int:
    """floor(log2(a)) for a positive Fraction, exactly."""
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    return e


def round_to_integer(x: Fraction, mode: Rounding, u=None, r=None) -> int:
    """Round x to an integer. Deterministic modes act on the signed value; stochastic on the magnitude
    with an r-bit random integer u: floor(|x| + u / 2**r)."""
    fl = math.floor(x)
    frac = x - fl
    if mode == R.STOCHASTIC:
        a = abs(x)
        n = math.floor(a + Fraction(u, 1 << r))
        return n if x >= 0 else -n
    if frac == 0:
        return fl
    half = Fraction(1, 2)
    if mode == R.FLOOR:
        return fl
    if mode == R.CEIL:
        return fl + 1
    if mode == R.TOWARD_ZERO:
        return fl if x > 0 else fl + 1
    if mode == R.AWAY_FROM_ZERO:
        return fl + 1 if x > 0 else fl
    if mode == R.JAM:
        return fl | 1
    if frac != half:
        return fl + 1 if frac > half else fl
    tie_up = {R.HALF_UP: True, R.HALF_DOWN: False, R.HALF_AWAY: x > 0, R.HALF_TOWARD_ZERO: x < 0,
              R.HALF_EVEN: fl % 2 == 1, R.HALF_ODD: fl % 2 == 0}[mode]
    return fl + 1 if tie_up else fl


def overflow_kind(fmt: Float, overflow: Overflow) -> str:
    """'inf', 'nan', 'saturate' or 'keep': what the register does beyond its largest finite value."""
    if overflow in (Overflow.SATURATE,):
        return "saturate"
    if overflow == Overflow.ERROR:
        return "keep"
    if fmt.specials == "ieee":
        return "inf"
    if fmt.specials == "none":
        return "saturate"
    return "nan"


def round_fraction(v: Fraction, fmt: Float, mode: Rounding, overflow: Overflow, *, u=None, r=None,
                   ftz=False):
    """Round the exact value v to fmt: returns (float value, overflowed). The value is rounded on an
    unbounded exponent grid first; overflow is decided on the rounded value."""
    if v == 0:
        return 0.0, False
    neg = v < 0
    e = floor_log2(abs(v))
    emin = fmt.emin
    if e < emin:
        qe = emin - fmt.man if fmt.subnormals else emin
    else:
        qe = e - fmt.man
    q = Fraction(2) ** qe
    n = round_to_integer(v / q, mode, u, r)
    y = n * q
    over = abs(y) > Fraction(fmt.max)
    if over:
        kind = overflow_kind(fmt, overflow)
        toward_zero = mode in (R.TOWARD_ZERO, R.JAM) or (mode == R.FLOOR and not neg) or (mode == R.CEIL and neg)
        if kind == "saturate" or (kind != "keep" and toward_zero):
            y = Fraction(-fmt.max if neg else fmt.max)
        elif kind == "inf":
            return (-math.inf if neg else math.inf), True
        elif kind == "nan":
            return math.nan, True
    if ftz and y != 0 and abs(y) < Fraction(fmt.min_normal):
        y = Fraction(0)
    out = float(y)
    assert Fraction(out) == y
    if n == 0 and neg:
        out = -0.0
    return out, over


class RefFloatDatapath:
    """One output's MAC schedule, written out literally."""

    def __init__(self, dp, seed=0):
        self.dp = dp
        acc = dp.accumulator
        self.fmt = acc.fmt
        self.mode = acc.rounding
        self.overflow = Overflow.IEEE if acc.overflow == Overflow.WRAP else acc.overflow
        self.ftz = acc.flush_subnormals
        lim = 50 - self.fmt.man
        self.r = acc.random_bits if acc.random_bits is not None else lim
        self.seed = seed
        self.pr = dp.product_random_bits if dp.product_random_bits is not None else \
            (50 - dp.product.man if dp.product else 1)

    def _bits(self, stream, ctr, r):
        return int(random_bits(self.seed, stream, ctr, r))

    def add(self, x, y, stream, ctr):
        """x + y, both finite or not, rounded to the accumulator: returns (value, overflowed)."""
        fmt = self.fmt
        if self.ftz:
            x = x if abs(x) >= fmt.min_normal or math.isnan(x) else 0.0
            y = y if abs(y) >= fmt.min_normal or math.isnan(y) else 0.0
        if not (math.isfinite(x) and math.isfinite(y)):
            s = x + y
            if math.isnan(s):
                return math.nan, False
            kind = overflow_kind(fmt, self.overflow)
            if kind == "saturate":
                return math.copysign(fmt.max, s), False
            return (math.nan if kind == "nan" else s), False
        u = self._bits(stream, ctr, self.r) if self.mode == R.STOCHASTIC else None
        v, over = round_fraction(Fraction(x) + Fraction(y), fmt, self.mode, self.overflow, u=u, r=self.r,
                                 ftz=self.ftz)
        return v, over

    def product(self, a, b, stream, k):
        dp = self.dp
        if self.ftz:   # DAZ on the multiplier inputs: subnormal operands read as zero
            a = 0.0 if isinstance(dp.a, Float) and abs(a) < dp.a.min_normal else a
            b = 0.0 if isinstance(dp.b, Float) and abs(b) < dp.b.min_normal else b
        p = Fraction(a) * Fraction(b)
        if dp.product is None:
            out = float(p)
            assert Fraction(out) == p, "product not exact in float64"
            return out
        ov = Overflow.IEEE if dp.product_overflow == Overflow.WRAP else dp.product_overflow
        u = self._bits(stream + PRODUCT_STREAM, k, self.pr) if dp.product_rounding == R.STOCHASTIC else None
        return round_fraction(p, dp.product, dp.product_rounding, ov, u=u, r=self.pr)[0]

    def dot(self, a, b, init, stream):
        """Returns (accumulator, overflow count, trace)."""
        order = self.dp.order
        K = len(a)
        nov = 0
        ctr = 0
        trace = []
        if order.kind == "sequential":
            acc = init
            trace.append(acc)
            for k in range(K):
                acc, o = self.add(acc, self.product(a[k], b[k], stream, k), stream, ctr)
                ctr += 1
                nov += o
                trace.append(acc)
            return acc, nov, trace
        if order.kind == "chunked":
            P = order.lanes
            C = -(-K // P)
            reg = [0.0] * P
            reg[0] = init
            for c in range(C):
                for lane in range(P):
                    k = lane * C + c
                    if k < K:
                        reg[lane], o = self.add(reg[lane], self.product(a[k], b[k], stream, k), stream, ctr)
                        ctr += 1
                        nov += o
                    trace.append(reg[lane])
            if order.combine == "sequential":
                acc = reg[0]
                for lane in range(1, P):
                    acc, o = self.add(acc, reg[lane], stream, ctr)
                    ctr += 1
                    nov += o
                    trace.append(acc)
                return acc, nov, trace
            vals = reg
        else:
            vals = [self.product(a[k], b[k], stream, k) for k in range(K)] or [0.0]
        while len(vals) > 1:
            nxt = []
            for q in range(len(vals) // 2):
                y, o = self.add(vals[2 * q], vals[2 * q + 1], stream, ctr)
                ctr += 1
                nov += o
                nxt.append(y)
                trace.append(y)
            if len(vals) % 2:
                nxt.append(vals[-1])
            vals = nxt
        if order.kind == "chunked":
            return vals[0], nov, trace
        acc, o = self.add(init, vals[0], stream, ctr)
        trace.append(acc)
        return acc, nov + o, trace


def ref_float_gemm(A, B, dp, *, bias=None, seed=0, n_cols=None):
    """Reference of fxsim.engines.floating.float_gemm for a Float accumulator: (acc, overflow counts,
    traces) as nested lists. ``A``, ``B`` hold operand values (zero points already subtracted)."""
    ref = RefFloatDatapath(dp, seed)
    M, K = len(A), len(A[0]) if len(A) else 0
    N = n_cols if n_cols is not None else len(B[0])
    acc = [[0.0] * N for _ in range(M)]
    nov = [[0] * N for _ in range(M)]
    traces = {}
    for i in range(M):
        for j in range(N):
            bij = 0.0 if bias is None else float(bias[i][j])
            if ref.ftz and abs(bij) < ref.fmt.min_normal:
                bij = 0.0    # the bias register is read through the same DAZ input
            init = bij if (bias is not None and dp.bias_preload) else 0.0
            col = [B[k][j] for k in range(K)]
            v, n, tr = ref.dot(list(A[i]), col, init, i * N + j)
            if bias is not None and not dp.bias_preload:
                v, o = ref.add(v, bij, i * N + j, BIAS_COUNTER)
                n += o
                tr.append(v)
            acc[i][j] = v
            nov[i][j] = n
            traces[(i, j)] = tr
    return acc, nov, traces


def ref_kulisch_dot(a, b, acc_fmt: Fixed, overflow: Overflow, align: Rounding, init_code=0):
    """Sequential Kulisch accumulation: each exact product aligned to the LSB 2**-frac (dropped bits
    rounded with ``align``), then added with the overflow stage after every addition."""
    lo, hi = acc_fmt.min_code, acc_fmt.max_code
    acc = init_code
    nov = 0
    for x, y in zip(a, b):
        p = Fraction(x) * Fraction(y) * Fraction(2) ** acc_fmt.frac
        code = round_to_integer(p, align)
        s = acc + code
        if s < lo or s > hi:
            nov += 1
            if overflow == Overflow.WRAP:
                s = (s - lo) % (1 << acc_fmt.bits) + lo
            elif overflow == Overflow.SATURATE:
                s = hi if s > hi else lo
            elif overflow == Overflow.SATURATE_ZERO:
                s = 0
            else:
                raise NotImplementedError(overflow)
        acc = s
    return acc, nov
