"""Plain-Python reference of the integer datapath: Python ints, literal loops in the stated order."""
from fractions import Fraction

from fxsim.modes import Overflow
from tests.reference_quantize import overflow_int, round_fraction


def shift(p: int, s: int, mode) -> int:
    if s > 0:
        return round_fraction(Fraction(p, 2 ** s), mode)
    return p * 2 ** (-s)


def register(v: int, bits: int, signed: bool, mode) -> (int, bool):
    """(register value, overflowed) of a bits-wide register receiving v."""
    hi = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
    lo = -hi - 1 if signed else 0
    if mode == Overflow.SATURATE_SYMMETRIC and signed:
        lo = -hi
    if lo <= v <= hi:
        return v, False
    return overflow_int(v, bits, signed, mode), True


def products(a_row, b_col, dp):
    out = []
    pf = dp.a.frac + dp.b.frac
    for a, b in zip(a_row, b_col):
        p = (a - dp.a_zero_point) * (b - dp.b_zero_point)
        f = pf
        if dp.product is not None:
            p = shift(p, pf - dp.product.frac, dp.product_rounding)
            p, _ = register(p, dp.product.bits, dp.product.signed, dp.product_overflow)
            f = dp.product.frac
        out.append(shift(p, f - dp.accumulator.fmt.frac, dp.accumulator.rounding))
    return out


def tree(regs, exs, level_bits, W, sg, ov, partials):
    """Pairwise adder tree: level l adds neighbours in a register of level_bits[l] bits (W beyond the
    given levels); an odd last term passes through to the next level. Appends each adder's exact sum to
    partials; returns (registers, exact values, overflow count) after the last level."""
    n_ov = 0
    level = 0
    while len(regs) > 1:
        lb = level_bits[level] if level < len(level_bits) else W
        nr, ne = [], []
        for q in range(len(regs) // 2):
            r, o = register(regs[2 * q] + regs[2 * q + 1], lb, sg, ov)
            n_ov += o
            nr.append(r)
            ne.append(exs[2 * q] + exs[2 * q + 1])
            partials.append(ne[-1])
        if len(regs) % 2:
            nr.append(regs[-1])
            ne.append(exs[-1])
        regs, exs = nr, ne
        level += 1
    return regs, exs, n_ov


def dot(a_row, b_col, init, dp):
    """Returns (accumulator, overflow count, exact sum, max exact partial, min exact partial)."""
    acc_fmt = dp.accumulator.fmt
    W, sg, ov = acc_fmt.bits, acc_fmt.signed, dp.accumulator.overflow
    ps = products(a_row, b_col, dp)
    partials = [init]
    n_ov = 0
    kind = dp.order.kind
    if kind == "sequential":
        acc, exact = init, init
        for p in ps:
            acc, o = register(acc + p, W, sg, ov)
            n_ov += o
            exact += p
            partials.append(exact)
    elif kind == "chunked":
        P = dp.order.lanes
        C = -(-len(ps) // P)
        regs, exs = [], []
        for lane in range(P):
            r = init if lane == 0 else 0
            e = r
            for p in ps[lane * C:(lane + 1) * C]:
                r, o = register(r + p, W, sg, ov)
                n_ov += o
                e += p
                partials.append(e)
            regs.append(r)
            exs.append(e)
        if dp.order.combine == "sequential":
            acc, exact = regs[0], exs[0]
            for r, e in zip(regs[1:], exs[1:]):
                acc, o = register(acc + r, W, sg, ov)
                n_ov += o
                exact += e
                partials.append(exact)
        else:
            regs, exs, o = tree(regs, exs, (), W, sg, ov, partials)
            n_ov += o
            acc, exact = regs[0], exs[0]
    else:  # tree
        regs, exs = list(ps), list(ps)
        partials += ps
        regs, exs, o = tree(regs, exs, dp.order.level_bits or (), W, sg, ov, partials)
        n_ov += o
        root, eroot = (regs[0], exs[0]) if regs else (0, 0)
        acc, o = register(init + root, W, sg, ov)
        n_ov += o
        exact = init + eroot
        partials.append(exact)
    return acc, n_ov, exact, max(max(partials), 0), min(min(partials), 0)


def gemm_ref(A_codes, B_codes, dp, init=None, N=None):
    M, K = len(A_codes), len(A_codes[0]) if A_codes else 0
    N = len(B_codes[0]) if N is None else N
    out = []
    for i in range(M):
        row = []
        for j in range(N):
            col = [B_codes[k][j] for k in range(K)]
            row.append(dot(A_codes[i], col, init[i][j] if init else 0, dp))
        out.append(row)
    return out


def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul, transcribed in Python ints."""
    if a == b == -2 ** 31:
        return 2 ** 31 - 1
    ab = a * b
    t = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    q = abs(t) // (1 << 31)
    return q if t >= 0 else -q


def rdbpot(x, e):
    """gemmlowp RoundingDivideByPOT, transcribed."""
    mask = (1 << e) - 1
    return (x >> e) + (1 if (x & mask) > (mask >> 1) + (1 if x < 0 else 0) else 0)


def requant_one(x: int, rq, ch: int) -> int:
    """One accumulator through a Requant, literally (``ch`` picks per-channel parameters)."""
    import numpy as np
    pick = lambda v: int(np.asarray(v).ravel()[ch]) if np.ndim(v) else v
    if rq.kind == "dyadic":
        return round_fraction(Fraction(x * pick(rq.multiplier), 2 ** pick(rq.shift)), rq.rounding)
    if rq.kind == "shift":
        return round_fraction(Fraction(x, 2 ** pick(rq.shift)), rq.rounding)
    if rq.kind == "gemmlowp":
        m, s = pick(rq.multiplier), pick(rq.shift)
        xl = ((x << max(s, 0)) + 2 ** 31) % 2 ** 32 - 2 ** 31
        return rdbpot(srdhm(xl, m), max(-s, 0))
    if rq.kind == "gemmlowp_single":
        m, s = pick(rq.multiplier), pick(rq.shift)
        return (x * m + (1 << (30 - s))) >> (31 - s)
    # float32: float32(x) * float32(scale) rounded once to float32 (the float64 product of two float32 is
    # exact), then round half even
    scale = float(np.float32(float(rq.scale) if not np.ndim(rq.scale) else np.asarray(rq.scale).ravel()[ch]))
    return round(float(np.float32(float(np.float32(x)) * scale)))


def output_stage_one(acc: int, bias_out, dp, ch: int) -> int:
    """The output stage of one element: bias add, requant (+ zero point), clamp, output register."""
    st, af = dp.output, dp.accumulator.fmt
    x = acc
    if bias_out is not None:
        x, _ = register(x + bias_out, st.bias_bits or af.bits, af.signed, dp.accumulator.overflow)
    zp = 0
    if st.requant is not None:
        x = requant_one(x, st.requant, ch) + st.requant.zero_point
        zp = st.requant.zero_point
    if st.activation == "relu":
        x = max(x, zp)
    elif st.activation is not None:
        x = min(max(x, st.activation[0]), st.activation[1])
    if st.fmt is not None:   # a symmetric register has no most-negative code: register() knows
        x, _ = register(x, st.fmt.bits, st.fmt.signed, st.overflow)
    return x
