"""Every accumulator addition against MPFR (gmpy2) with the format's exponent range and subnormals
emulated (``subnormalize``), on random sequences with cancellation, subnormal sums and overflow.

Modes MPFR has (half even, toward zero, up, down, away) are rounded by MPFR directly. For the other
modes MPFR gives the two neighbours (round down / round up in the target format) and the exact distances
decide, from the rule's definition. Stochastic rounding with r random bits u is, by definition,
round-toward-zero of |v| + u * ulp / 2**r; MPFR adds and rounds it.
"""
import math

import gmpy2
import numpy as np
from gmpy2 import mpfr
from hypothesis import given, settings, strategies as st

from fxsim.datapath import Accumulator, Datapath
from fxsim.engines.floating import float_gemm, max_random_bits
from fxsim.formats import BF16, E2M1, E5M2, E8M13, FP16, FP32, Float
from fxsim.modes import Rounding
from fxsim._kernels.random import random_bits

R = Rounding
EXACT = gmpy2.context(precision=4000, emin=-100000, emax=100000)
MPFR_MODES = {R.HALF_EVEN: gmpy2.RoundToNearest, R.TOWARD_ZERO: gmpy2.RoundToZero, R.CEIL: gmpy2.RoundUp,
              R.FLOOR: gmpy2.RoundDown, R.AWAY_FROM_ZERO: gmpy2.RoundAwayZero}
OPERAND = Float(10, 23)   # 24-bit significands over a wider exponent range than any accumulator here
ACCUMULATORS = [FP16, BF16, E8M13, FP32, E5M2, Float(5, 4), Float(4, 6), Float(6, 3)]


def exact(x):
    with gmpy2.context(EXACT):
        return mpfr(x)


def target(fmt: Float, mode, emax_unbounded=False):
    """An MPFR context that rounds to ``fmt`` (precision man + 1, subnormals emulated)."""
    emax_f = (1 << fmt.exp) - 2 - fmt.bias
    return gmpy2.context(precision=fmt.man + 1, emin=fmt.emin - fmt.man + 1,
                         emax=100000 if emax_unbounded else emax_f + 1, subnormalize=True, round=mode)


def ulp_at(v, fmt: Float):
    """The spacing of fmt's grid at the exact value v (an mpfr)."""
    e = int(gmpy2.floor(gmpy2.log2(abs(v)))) if v != 0 else fmt.emin
    return exact(2.0) ** (max(e, fmt.emin) - fmt.man)


def mpfr_add(acc, p, fmt: Float, mode: Rounding, u=None, r=None):
    """acc + p rounded to fmt by MPFR (overflow to inf, or the largest finite value when the mode
    rounds toward zero for that sign): returns (float, overflowed)."""
    with gmpy2.context(EXACT):
        v = mpfr(acc) + mpfr(p)       # exact at 4000 bits
    if v == 0:
        return 0.0, False
    if mode in MPFR_MODES:
        y = target(fmt, MPFR_MODES[mode], emax_unbounded=True).plus(v)
    else:
        down = target(fmt, gmpy2.RoundDown, True).plus(v)
        up = target(fmt, gmpy2.RoundUp, True).plus(v)
        if down == up:
            y = down
        elif mode == R.STOCHASTIC:
            with gmpy2.context(EXACT):
                w = abs(v) + ulp_at(v, fmt) * u / exact(2.0) ** r
            y = target(fmt, gmpy2.RoundToZero, True).plus(w)
            y = y if v > 0 else -y
        else:
            q = ulp_at(v, fmt)
            with gmpy2.context(EXACT):
                n = int(down / q)
                d_lo, d_hi = v - down, up - v
            if mode == R.JAM:
                y = down if n % 2 else up
            elif d_lo != d_hi:
                y = down if d_lo < d_hi else up
            else:
                y = {R.HALF_UP: up, R.HALF_DOWN: down, R.HALF_AWAY: up if v > 0 else down,
                     R.HALF_TOWARD_ZERO: down if v > 0 else up,
                     R.HALF_ODD: down if n % 2 else up}[mode]
    over = abs(y) > fmt.max
    if over:
        neg = v < 0
        toward_zero = mode in (R.TOWARD_ZERO, R.JAM) or (mode == R.FLOOR and not neg) or (mode == R.CEIL and neg)
        return (math.copysign(fmt.max, -1 if neg else 1) if toward_zero else (-math.inf if neg else math.inf)), True
    return float(y), False


@st.composite
def sequences(draw):
    fmt = draw(st.sampled_from(ACCUMULATORS))
    mode = draw(st.sampled_from(list(Rounding)))
    n = draw(st.integers(1, 24))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32)))
    emax_f = (1 << fmt.exp) - 2 - fmt.bias
    lo_e, hi_e = max(fmt.emin - fmt.man - 3, -140), min(emax_f + 1, 126)
    center = draw(st.sampled_from(["wide", "subnormal", "overflow"]))
    vals = []
    for _ in range(n):
        kind = rng.random()
        if center == "subnormal":
            e = rng.integers(lo_e, fmt.emin + 2)
        elif center == "overflow":
            e = rng.integers(max(emax_f - 3, lo_e), hi_e + 1)
        else:
            e = rng.integers(lo_e, hi_e + 1)
        m = rng.integers(1 << 23, 1 << 24) * (-1 if rng.random() < 0.5 else 1)
        v = math.ldexp(float(m), int(e) - 23)
        if kind < 0.25 and vals:
            # cancellation: minus the running exact sum, cut to FP32, plus a tiny remainder
            with np.errstate(over="ignore"):
                s = float(np.float32(sum(vals)))
            if math.isfinite(s) and abs(s) < 2.0 ** 127:
                v = -s
        vals.append(v)
    rbits = draw(st.integers(1, min(16, max_random_bits(fmt))))
    return fmt, mode, vals, rbits, draw(st.integers(0, 2 ** 40))


@settings(max_examples=600)
@given(sequences())
def test_every_addition_is_the_mpfr_rounded_sum(case):
    fmt, mode, vals, rbits, seed = case
    A = np.array([vals])                  # products v_k * 1.0 are the sequence itself
    B = np.ones((len(vals), 1))
    sr = {"random_bits": rbits, "seed": seed} if mode == R.STOCHASTIC else {}   # errors with other modes
    dp = Datapath(a=OPERAND, b=E2M1, accumulator=Accumulator(fmt, rounding=mode, overflow="ieee", **sr))
    res = float_gemm(A, B, dp, trace=(0, 0))
    trace = res.traces[(0, 0)]
    acc = 0.0
    expected = [acc]
    n_over = 0
    for k, v in enumerate(vals):
        if math.isinf(acc) or math.isnan(acc):
            acc = acc + v                 # inf + finite stays inf
        else:
            u = int(random_bits(seed, 0, k, rbits)) if mode == R.STOCHASTIC else None
            acc, over = mpfr_add(acc, v, fmt, mode, u, rbits)
            n_over += over
        expected.append(acc)
    got = np.asarray(trace)
    exp = np.asarray(expected)
    assert np.all((got == exp) | (np.isnan(got) & np.isnan(exp))), (fmt, mode, vals, list(got), expected)
    assert res.overflow_count[0, 0] == n_over


def test_mpfr_oracle_agrees_with_hand_values():
    # FP16: 2048 + 1 is a tie (spacing 2): even -> 2048, away -> 2050; 65504 + 16 -> inf under half even
    assert mpfr_add(2048.0, 1.0, FP16, R.HALF_EVEN) == (2048.0, False)
    assert mpfr_add(2048.0, 1.0, FP16, R.HALF_AWAY) == (2050.0, False)
    assert mpfr_add(-2048.0, -1.0, FP16, R.HALF_UP) == (-2048.0, False)
    assert mpfr_add(65504.0, 16.0, FP16, R.HALF_EVEN) == (math.inf, True)
    assert mpfr_add(65504.0, 16.0, FP16, R.TOWARD_ZERO) == (65504.0, False)
    assert mpfr_add(2.0 ** -25, 2.0 ** -26, FP16, R.HALF_EVEN) == (2.0 ** -24, False)   # subnormal
    # stochastic with r = 1: u = 1 adds half a step: 2048 + 1 + 1 -> 2050 (toward zero of 2050)
    assert mpfr_add(2048.0, 1.0, FP16, R.STOCHASTIC, u=1, r=1) == (2050.0, False)
    assert mpfr_add(2048.0, 1.0, FP16, R.STOCHASTIC, u=0, r=1) == (2048.0, False)
