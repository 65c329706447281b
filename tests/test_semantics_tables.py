"""One table per semantics, every implementation a row.

Each table holds worked cases whose expected values are written out by hand from the definition of the mode
(docs/formats.md, docs/datapath.md), not copied from fxsim's output. Every place in fxsim that implements the
semantics is a row, so a new implementation is one more row and a drifting one fails on its own line.
"""
from fractions import Fraction

import numpy as np
import pytest

import fxsim
from fxsim import Accumulator, Datapath, Fixed, Order, OutputStage, Overflow, Requant, Rounding
from fxsim.engines.output_stage import _register_overflow_exact, register_overflow, rounding_shift
from tests import reference_int_datapath as ref_int
from tests import reference_quantize as ref_q

# --------------------------------------------------------------------------------------------------------
# Rounding x / 4 to an integer: x = -6 .. 6 (halves and quarters, both signs), every deterministic mode.
X = [-6, -5, -3, -2, -1, 0, 1, 2, 3, 5, 6]          # x / 4 = -1.5 -1.25 -0.75 -0.5 -0.25 0 .25 .5 .75 1.25 1.5
ROUNDED = {
    Rounding.FLOOR:            [-2, -2, -1, -1, -1, 0, 0, 0, 0, 1, 1],
    Rounding.CEIL:             [-1, -1, 0, 0, 0, 0, 1, 1, 1, 2, 2],
    Rounding.TOWARD_ZERO:      [-1, -1, 0, 0, 0, 0, 0, 0, 0, 1, 1],
    Rounding.AWAY_FROM_ZERO:   [-2, -2, -1, -1, -1, 0, 1, 1, 1, 2, 2],
    Rounding.HALF_UP:          [-1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 2],
    Rounding.HALF_DOWN:        [-2, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1],
    Rounding.HALF_AWAY:        [-2, -1, -1, -1, 0, 0, 0, 1, 1, 1, 2],
    Rounding.HALF_TOWARD_ZERO: [-1, -1, -1, 0, 0, 0, 0, 0, 1, 1, 1],
    Rounding.HALF_EVEN:        [-2, -1, -1, 0, 0, 0, 0, 0, 1, 1, 2],
    Rounding.HALF_ODD:         [-1, -1, -1, -1, 0, 0, 0, 1, 1, 1, 1],
    Rounding.JAM:              [-1, -1, -1, -1, -1, 0, 1, 1, 1, 1, 1],   # floor, then OR the sticky bit in
}


def _shift_kernel(x, mode):
    return rounding_shift(np.array(x, dtype=np.int64), 2, mode)


def _quantize(x, mode):
    return fxsim.quantize(np.array(x, dtype=np.float64) / 4, Fixed(8, 0), rounding=mode)


def _product_alignment(x, mode):
    """Products with 2 fraction bits aligned into an accumulator with none (the fixed register's rounding)."""
    dp = Datapath(a=Fixed(8, 2), b="int8", accumulator=Accumulator(Fixed(16, 0), rounding=mode))
    A = np.array(x, dtype=np.float64).reshape(-1, 1) / 4
    return fxsim.gemm(A, np.ones((1, 1)), dp).acc.ravel()


def _requant_shift(x, mode):
    """A dyadic output stage: multiplier 1, shift 2, the mode's rounding."""
    dp = Datapath(a="int8", b="int8", output=OutputStage(requant=Requant(multiplier=1, shift=2, rounding=mode),
                                                         fmt="int8"))
    return fxsim.gemm(np.array(x, dtype=np.int64).reshape(-1, 1), np.ones((1, 1), np.int64), dp).codes.ravel()


def _reference_fraction(x, mode):
    return [ref_q.round_fraction(Fraction(v, 4), mode) for v in x]


def _reference_shift(x, mode):
    return [ref_int.shift(v, 2, mode) for v in x]


ROUNDERS = {"kernel shift_round": _shift_kernel, "quantize to Fixed": _quantize,
            "product alignment in gemm": _product_alignment, "dyadic requantization": _requant_shift,
            "reference round_fraction": _reference_fraction, "reference shift": _reference_shift}


@pytest.mark.parametrize("mode", list(ROUNDED), ids=lambda m: m.name.lower())
@pytest.mark.parametrize("implementation", list(ROUNDERS))
def test_every_rounder_rounds_the_worked_quarters_as_defined(implementation, mode):
    got = [int(v) for v in np.asarray(ROUNDERS[implementation](X, mode)).ravel()]
    assert got == ROUNDED[mode], f"{implementation}, {mode.name}: x/4 for x = {X}"


# --------------------------------------------------------------------------------------------------------
# Overflow of a 4-bit signed register (range -8..7).
V = [-10, -9, -8, -1, 0, 7, 8, 9, 23]
OVERFLOWED = {
    Overflow.WRAP:               [6, 7, -8, -1, 0, 7, -8, -7, 7],
    Overflow.SATURATE:           [-8, -8, -8, -1, 0, 7, 7, 7, 7],
    Overflow.SATURATE_SYMMETRIC: [-7, -7, -7, -1, 0, 7, 7, 7, 7],
    Overflow.SATURATE_ZERO:      [0, 0, -8, -1, 0, 7, 0, 0, 0],
}


def _accumulator_register(v, mode):
    dp = Datapath(a="int8", b="int8", accumulator=Accumulator(Fixed(4, 0), overflow=mode))
    return fxsim.gemm(np.array(v, dtype=np.int64).reshape(-1, 1), np.ones((1, 1), np.int64), dp).acc.ravel()


OVERFLOWS = {
    "register_overflow (arrays)": lambda v, m: register_overflow(np.array(v, dtype=np.int64), 4, True, m),
    "register overflow (Python ints)": lambda v, m: [_register_overflow_exact(x, 4, True, m) for x in v],
    "quantize to int4": lambda v, m: fxsim.quantize(np.array(v, dtype=np.float64), "int4", overflow=m),
    "accumulator register in gemm": _accumulator_register,
    "reference overflow_int": lambda v, m: [ref_q.overflow_int(x, 4, True, m) for x in v],
    "reference register": lambda v, m: [ref_int.register(x, 4, True, m)[0] for x in v],
}


@pytest.mark.parametrize("mode", list(OVERFLOWED), ids=lambda m: m.name.lower())
@pytest.mark.parametrize("implementation", list(OVERFLOWS))
def test_every_overflow_stage_narrows_the_worked_values_as_defined(implementation, mode):
    got = [int(v) for v in np.asarray(OVERFLOWS[implementation](V, mode)).ravel()]
    assert got == OVERFLOWED[mode], f"{implementation}, {mode.name}: {V} into int4"


# --------------------------------------------------------------------------------------------------------
# Sequential saturation: the register saturates after every single addition, so the order matters and the
# final value is not the saturated exact sum. (a, b, register bits, mode, final value, overflow events)
SATURATION_CASES = [
    # 10000 -> 2047 (1); 2047 + 10000 -> 2047 (2); 2047 - 10000 = -7953 -> -2048 (3). Exact sum 10000.
    ([100, 100, -100], [100, 100, 100], 12, Overflow.SATURATE, -2048, 3),
    # the mirror image: -2048, -2048, then -2048 + 10000 = 7952 -> 2047
    ([-100, -100, 100], [100, 100, 100], 12, Overflow.SATURATE, 2047, 3),
    # 2500 -> 2047 (1); 2047 + 2500 -> 2047 (2); 2047 - 2500 = -453 fits
    ([50, 50, -50], [50, 50, 50], 12, Overflow.SATURATE, -453, 2),
    # 100, 300, 0: never leaves the register
    ([10, 20, -30], [10, 10, 10], 12, Overflow.SATURATE, 0, 0),
    # 127, 254 -> 127 (1), 0, -127, -254 -> -128 (2)
    ([127, 127, -127, -127, -127], [1, 1, 1, 1, 1], 8, Overflow.SATURATE, -128, 2),
    # the same into a symmetric register: the last step clamps to -127
    ([127, 127, -127, -127, -127], [1, 1, 1, 1, 1], 8, Overflow.SATURATE_SYMMETRIC, -127, 2),
]


def _dp(bits, mode):
    return Datapath(a="int8", b="int8", accumulator=Accumulator(Fixed(bits, 0), overflow=mode),
                    order=Order("sequential"))


def _gemm_stats(a, b, bits, mode):
    r = fxsim.gemm(np.array([a], np.int64), np.array(b, np.int64).reshape(-1, 1), _dp(bits, mode))
    return int(r.acc[0, 0]), int(r.overflow_count[0, 0])


def _gemm_fast(a, b, bits, mode):
    r = fxsim.gemm(np.array([a], np.int64), np.array(b, np.int64).reshape(-1, 1), _dp(bits, mode), stats=False)
    return int(r.acc[0, 0]), None


def _gemm_trace(a, b, bits, mode):
    r = fxsim.gemm(np.array([a], np.int64), np.array(b, np.int64).reshape(-1, 1), _dp(bits, mode), trace=(0, 0))
    t = [int(v) for v in r.traces[(0, 0)]]          # the register before the first addition and after each
    clamped = sum(t[k] + x * y != t[k + 1] for k, (x, y) in enumerate(zip(a, b)))
    return t[-1], clamped


def _wide_rows(a, b, bits, mode):
    """The same dot product as one output among 64 random ones (the row-blocked kernels, several threads)."""
    rng = np.random.default_rng(7)
    A = rng.integers(-128, 128, (64, len(a)))
    A[37] = a
    r = fxsim.gemm(A, np.array(b, np.int64).reshape(-1, 1), _dp(bits, mode))
    return int(r.acc[37, 0]), int(r.overflow_count[37, 0])


def _reference(a, b, bits, mode):
    acc, n, *_ = ref_int.dot(list(a), list(b), 0, _dp(bits, mode))
    return acc, n


SATURATORS = {"gemm (statistics)": _gemm_stats, "gemm (stats=False)": _gemm_fast, "per-cycle trace": _gemm_trace,
              "gemm, one row of many": _wide_rows, "reference dot": _reference}


@pytest.mark.parametrize("case", SATURATION_CASES, ids=lambda c: f"{c[0]}x{c[1]}->{c[3].name.lower()}{c[2]}")
@pytest.mark.parametrize("implementation", list(SATURATORS))
def test_every_sequential_saturating_accumulator_saturates_after_each_addition(implementation, case):
    a, b, bits, mode, final, events = case
    value, count = SATURATORS[implementation](a, b, bits, mode)
    assert value == final
    if count is not None:
        assert count == events


# --------------------------------------------------------------------------------------------------------
# Round half to even into float formats: ties go to the even significand, everything else to nearest.
# (format, value, rounded value), each tie exactly halfway between two neighbours of the format.
HALF_EVEN_FLOAT = [
    ("bf16", 1 + 2 ** -8, 1.0),                      # between 1 and 1 + 2^-7: 1 has the even significand
    ("bf16", 1 + 3 * 2 ** -8, 1 + 2 ** -6),          # between 1 + 2^-7 (odd) and 1 + 2^-6 (even)
    ("fp16", 2049.0, 2048.0),                        # spacing 2 above 2048
    ("fp16", 2051.0, 2052.0),
    ("fp16", -2051.0, -2052.0),
    ("e4m3", 1.0625, 1.0),                           # spacing 1/8 in [1, 2)
    ("e4m3", 1.1875, 1.25),
    ("e5m2", 1.125, 1.0),                            # spacing 1/4 in [1, 2)
    ("e5m2", 1.375, 1.5),
    ("fp32", 1 + 2 ** -24, 1.0),
    ("fp32", 1 + 3 * 2 ** -24, 1 + 2 ** -22),
]


def _float_cast(fmt, x):
    return float(fxsim.quantize(np.array([x]), fmt)[0])


def _float_accumulator(fmt, x):
    """The value as the sum of two exact products (an integer part and a tie) in a float register that
    rounds after the addition: round-half-even is the register's default."""
    hi = float(np.trunc(x))
    dp = Datapath(a="fp32", b="fp32", accumulator=Accumulator(fmt))
    return float(fxsim.gemm(np.array([[hi, x - hi]]), np.ones((2, 1)), dp).values[0, 0])


def _ml_dtypes(fmt, x):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dtype = {"bf16": ml_dtypes.bfloat16, "fp16": np.float16, "e4m3": ml_dtypes.float8_e4m3fn,
             "e5m2": ml_dtypes.float8_e5m2, "fp32": np.float32}[fmt]
    return float(np.array([x]).astype(dtype)[0])


def _reference_float(fmt, x):
    return float(ref_q.quantize_float(x, fxsim.parse_format(fmt), Rounding.HALF_EVEN, "saturate"
                                      if fmt == "e4m3" else "ieee"))


FLOAT_ROUNDERS = {"quantize (cast)": _float_cast, "float accumulator": _float_accumulator,
                  "ml_dtypes (oracle)": _ml_dtypes, "reference quantize_float": _reference_float}


@pytest.mark.parametrize("case", HALF_EVEN_FLOAT, ids=lambda c: f"{c[0]}({c[1]!r})")
@pytest.mark.parametrize("implementation", list(FLOAT_ROUNDERS))
def test_every_float_rounding_takes_ties_to_the_even_significand(implementation, case):
    fmt, x, expected = case
    assert FLOAT_ROUNDERS[implementation](fmt, x) == expected
