"""Requantization: gemmlowp/TFLite edge cases derived by hand from the reference C code, and every
requantizer against literal Python-int transcriptions over random inputs."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fxsim.datapath import Accumulator, Datapath, OutputStage, Requant
from fxsim.modes import Overflow, Rounding
from fxsim.ops.gemm import gemm
from fxsim.engines.output_stage import (multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_single_rounding,
                           register_overflow, requantize, rounding_divide_by_pot,
                           saturating_rounding_doubling_high_mul)
from tests.reference_quantize import round_fraction

I32_MIN, I32_MAX = -2 ** 31, 2 ** 31 - 1
int32s = st.integers(I32_MIN, I32_MAX)


# --- literal transcriptions of gemmlowp/fixedpoint.h and TFLite common.h, in Python ints ---------------
def srdhm_ref(a, b):
    if a == b == I32_MIN:
        return I32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    t = ab + nudge
    q = abs(t) // (1 << 31)          # C integer division truncates toward zero
    return q if t >= 0 else -q


def rdbpot_ref(x, e):
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


def mbqm_ref(x, m, shift):
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    xl = ((x << left) + 2 ** 31) % 2 ** 32 - 2 ** 31     # int32 multiply by 1 << left wraps
    return rdbpot_ref(srdhm_ref(xl, m), right)


def mbqm_single_ref(x, m, shift):
    total = 31 - shift
    return (x * m + (1 << (total - 1))) >> total


# --- hand-derived edge cases -------------------------------------------------------------------------
def test_srdhm_edge_cases_by_hand():
    # INT32_MIN * INT32_MIN is the one product whose doubled high half overflows: saturates to INT32_MAX
    assert saturating_rounding_doubling_high_mul(I32_MIN, I32_MIN) == I32_MAX
    # (2a*b) / 2**32 with a=1, b=2**30 is exactly +0.5: the nudge rounds it away from zero -> 1
    assert saturating_rounding_doubling_high_mul(1, 2 ** 30) == 1
    # a=-1: exactly -0.5; nudge 1-2**30 gives (-2**31+1)/2**31 truncated -> 0 (negative ties go up)
    assert saturating_rounding_doubling_high_mul(-1, 2 ** 30) == 0
    # -1.5 * ... : a=-3, b=2**30 -> -1.5; (-3*2**30 + 1 - 2**30) / 2**31 = -1.99.. -> -1
    assert saturating_rounding_doubling_high_mul(-3, 2 ** 30) == -1
    assert saturating_rounding_doubling_high_mul(I32_MIN, I32_MAX) == -I32_MAX   # -(2**31-1) exactly


def test_rounding_divide_by_pot_ties_away_from_zero():
    assert rounding_divide_by_pot(5, 1) == 3      # 2.5 -> 3
    assert rounding_divide_by_pot(-5, 1) == -3    # -2.5 -> -3
    assert rounding_divide_by_pot(-3, 1) == -2    # -1.5 -> -2
    assert rounding_divide_by_pot(-4, 1) == -2    # exact
    assert rounding_divide_by_pot(7, 0) == 7      # exponent 0 is the identity


def test_multiply_by_quantized_multiplier_shift_0_and_31():
    m = 2 ** 31 - 1
    assert multiply_by_quantized_multiplier(1000, 2 ** 30, 0) == 500          # x * 0.5 exactly
    assert multiply_by_quantized_multiplier(I32_MIN, I32_MIN, 0) == I32_MAX    # the saturating case
    # shift -31: 2**30 * (2**31-1) / 2**31 -> SRDHM gives 2**30, then 2**30 / 2**31 = 0.5 rounds away -> 1
    assert multiply_by_quantized_multiplier(2 ** 30, m, -31) == 1
    # -2**30: SRDHM truncates (-2**61+1)/2**31 to -2**30+1; that / 2**31 = -0.49.. -> 0
    assert multiply_by_quantized_multiplier(-2 ** 30, m, -31) == 0
    # left shift 1 first: 3 << 1 = 6, times 0.5 -> 3
    assert multiply_by_quantized_multiplier(3, 2 ** 30, 1) == 3
    # double rounding differs from single rounding: x=3, M=2**30 (0.5), shift -1: 3*0.25 = 0.75
    # double: SRDHM(3, 2**30) = 1.5 -> 2, then 2/2 = 1;  single: (3*2**30 + 2**31) >> 32 = 1
    assert multiply_by_quantized_multiplier(3, 2 ** 30, -1) == 1
    # x=5: 1.25; double: SRDHM = 2.5 -> 3, 3/2 = 1.5 -> 2; single: (5*2**30 + 2**31) >> 32 = 1
    assert multiply_by_quantized_multiplier(5, 2 ** 30, -1) == 2
    assert multiply_by_quantized_multiplier_single_rounding(5, 2 ** 30, -1) == 1
    # single rounding ties go up (toward +inf): -3 * 0.5 = -1.5 -> -1
    assert multiply_by_quantized_multiplier_single_rounding(-3, 2 ** 30, 0) == -1


@settings(max_examples=300)
@given(x=int32s, m=st.integers(2 ** 30, I32_MAX), shift=st.integers(-31, 30))
def test_gemmlowp_requantizers_match_the_c_transcription(x, m, shift):
    assert int(multiply_by_quantized_multiplier(x, m, shift)) == mbqm_ref(x, m, shift)
    assert int(multiply_by_quantized_multiplier_single_rounding(x, m, shift)) == mbqm_single_ref(x, m, shift)


@settings(max_examples=200)
@given(acc=st.lists(st.integers(-2 ** 31, 2 ** 31 - 1), min_size=1, max_size=6), m=st.integers(1, 2 ** 31 - 1),
       shift=st.integers(0, 62), rounding=st.sampled_from([r for r in Rounding if r != Rounding.STOCHASTIC]))
def test_dyadic_matches_fractions(acc, m, shift, rounding):
    got = requantize(np.array(acc), Requant.dyadic(m, shift, rounding), 32)
    for a, g in zip(acc, got):
        assert int(g) == round_fraction(Fraction(a * m, 2 ** shift), rounding)


@settings(max_examples=200)
@given(acc=st.lists(st.integers(-2 ** 40, 2 ** 40), min_size=1, max_size=6),
       scale=st.floats(1e-6, 10.0, allow_nan=False))
def test_float32_scale_is_float32_multiply_then_half_even(acc, scale):
    got = requantize(np.array(acc), Requant.float32(scale), 48)
    s32 = float(np.float32(scale))
    for a, g in zip(acc, got):
        prod = float(np.float32(float(np.float32(a)) * s32))   # exact in float64 (24x24 bits), rounded once
        assert int(g) == round(prod)                             # Python round(): ties to even


def test_per_channel_requant_and_relu6_in_gemm():
    A = np.array([[10, 20], [-30, 40]])
    B = np.array([[1, 2], [3, 4]])
    # acc = [[70, 100], [90, 100]]; channel 0 x 1/2, channel 1 x 3/8; zero point 5; relu6 = clamp to [5, 5+60]
    dp = Datapath(output=OutputStage(requant=Requant.dyadic(np.array([1, 3]), np.array([1, 3]), "half_up", zero_point=5),
                                     activation=(5, 65), fmt="int8"))
    r = gemm(A, B, dp)
    assert r.acc.tolist() == [[70, 100], [90, 100]]
    assert r.codes.tolist() == [[40, 43], [50, 43]]      # 35+5, 37.5->38 +5, 45+5, 38+5
    r = gemm(-A, B, dp)
    assert r.codes.tolist() == [[5, 5], [5, 5]]          # negative -> clamped at the zero point


def test_gemmlowp_requant_in_gemm_rejects_wide_accumulators():
    dp = Datapath(accumulator=Accumulator("int40"), output=OutputStage(requant=Requant.gemmlowp(2 ** 30, 0), fmt="int8"))
    with pytest.raises(ValueError, match="int32 accumulator; this one has 40 bits"):
        gemm(np.ones((1, 1)), np.ones((1, 1)), dp)


def test_bias_add_in_a_narrow_register_wraps_or_saturates():
    A = np.array([[100]])
    B = np.array([[100]])
    dp = Datapath(accumulator=Accumulator("int16", overflow="saturate"), bias_preload=False,
                  output=OutputStage(bias_bits=14))
    assert gemm(A, B, dp, bias=np.array([1000])).codes[0, 0] == 8191      # 11000 saturates at 2**13-1
    dp = dp.replace(accumulator=Accumulator("int16", overflow="wrap"))
    assert gemm(A, B, dp, bias=np.array([1000])).codes[0, 0] == 11000 - 16384


def test_register_overflow_modes_by_hand():
    x = np.array([130, -130, 127, -128])
    assert register_overflow(x, 8, True, Overflow.WRAP).tolist() == [-126, 126, 127, -128]
    assert register_overflow(x, 8, True, Overflow.SATURATE).tolist() == [127, -128, 127, -128]
    assert register_overflow(x, 8, True, Overflow.SATURATE_SYMMETRIC).tolist() == [127, -127, 127, -127]
    assert register_overflow(x, 8, True, Overflow.SATURATE_ZERO).tolist() == [0, 0, 127, -128]


def test_requant_validation():
    with pytest.raises(ValueError, match="requant kind must be one of"):
        Requant("nope")
    with pytest.raises(ValueError, match="gemmlowp shift must lie in -31..30"):
        Requant.gemmlowp(2 ** 30, 31)
    with pytest.raises(ValueError, match="float32' needs scale="):
        Requant("float32")
    r = Requant.from_scale(0.1)
    assert abs(r.multiplier / 2 ** r.shift - 0.1) < 1e-9


# --- the fused float32 output stage against a Python-int transcription -------------------------------------
def _register_ref(v, bits, signed, mode):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if lo <= v <= hi:
        return -hi if mode == Overflow.SATURATE_SYMMETRIC and signed and v < -hi else v
    if mode == Overflow.WRAP:
        return (v - lo) % (1 << bits) + lo
    if mode == Overflow.SATURATE:
        return min(max(v, lo), hi)
    if mode == Overflow.SATURATE_SYMMETRIC:
        return min(max(v, -hi if signed else lo), hi)
    return 0   # SATURATE_ZERO


@settings(max_examples=150)
@given(M=st.integers(1, 4), N=st.integers(1, 5), seed=st.integers(0, 2 ** 32), per_channel=st.booleans(),
       fmt=st.sampled_from(["int8", "uint8", "int16", "uint4", "int32", (12, 3)]),
       mode=st.sampled_from(["wrap", "saturate", "saturate_symmetric", "saturate_zero"]),
       act=st.sampled_from([None, "relu", "clip"]), zp=st.integers(-20, 20), wide=st.booleans())
def test_fused_float32_output_stage_matches_the_python_transcription(M, N, seed, per_channel, fmt, mode, act, zp,
                                                                     wide):
    """The one-pass float32 stage (float32 product, half even, zero point, activation, output register):
    every code and value as the literal transcription."""
    from fxsim.engines import output_stage as OS
    from fxsim.formats import Fixed
    rng = np.random.default_rng(seed)
    acc = rng.integers(-2 ** 40 if wide else -3000, 2 ** 40 if wide else 3000, (M, N))
    scale = np.asarray(rng.uniform(1e-4, 0.5, N) if per_channel else rng.uniform(1e-4, 0.5), dtype=np.float32)
    clip = (zp, zp + int(rng.integers(0, 100))) if act == "clip" else act
    f = Fixed(fmt[0], fmt[1]) if isinstance(fmt, tuple) else fmt
    stage = OutputStage(requant=Requant.float32(scale, zero_point=zp), activation=clip, fmt=f, overflow=mode)
    calls = []
    real = OS.requant_f32_into
    fx = stage.fmt
    want_codes = np.zeros((M, N), dtype=object)
    for i in range(M):
        for j in range(N):
            s = scale[j] if per_channel else scale
            v = round(float(np.float32(float(np.float32(acc[i, j])) * float(s)))) + zp
            if act == "relu":
                v = max(v, zp)
            elif act == "clip":
                v = min(max(v, clip[0]), clip[1])
            want_codes[i, j] = _register_ref(v, fx.bits, fx.signed, Overflow.parse(mode))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(OS, "requant_f32_into", lambda *a: calls.append(1) or real(*a))
        codes, values = OS.output_stage(acc, stage, Fixed(64, 0), Overflow.WRAP)
    assert calls, "the fused stage did not run"
    assert codes.tolist() == want_codes.tolist()
    assert values.tolist() == [[c * 2.0 ** -fx.frac for c in row] for row in want_codes.tolist()]
