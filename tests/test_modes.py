"""Rounding/overflow enums and the integer rounder against the literal definitions."""
import numba as nb
import pytest
from fractions import Fraction
from hypothesis import given, settings, strategies as st

from fxsim.modes import Overflow, Rounding
from fxsim._kernels import rounding as kr
from tests.reference_quantize import overflow_int, round_fraction

ALIASES = {
    "AP_TRN": Rounding.FLOOR, "AP_TRN_ZERO": Rounding.TOWARD_ZERO, "AP_RND": Rounding.HALF_UP,
    "AP_RND_ZERO": Rounding.HALF_TOWARD_ZERO, "AP_RND_MIN_INF": Rounding.HALF_DOWN,
    "AP_RND_INF": Rounding.HALF_AWAY, "AP_RND_CONV": Rounding.HALF_EVEN, "Floor": Rounding.FLOOR,
    "Ceiling": Rounding.CEIL, "Zero": Rounding.TOWARD_ZERO, "Nearest": Rounding.HALF_UP,
    "Round": Rounding.HALF_AWAY, "Convergent": Rounding.HALF_EVEN, "roundTiesToEven": Rounding.HALF_EVEN,
    "roundTiesToAway": Rounding.HALF_AWAY, "roundTowardZero": Rounding.TOWARD_ZERO,
    "roundTowardPositive": Rounding.CEIL, "roundTowardNegative": Rounding.FLOOR,
    "AC_RND_CONV_ODD": Rounding.HALF_ODD, "von_neumann": Rounding.JAM, "stochastic": Rounding.STOCHASTIC,
}


@pytest.mark.parametrize("alias,member", sorted(ALIASES.items()))
def test_rounding_aliases_name_the_documented_mode(alias, member):
    assert Rounding.parse(alias) is member


@pytest.mark.parametrize("alias,member", [("AP_SAT", Overflow.SATURATE), ("AP_WRAP", Overflow.WRAP),
                                          ("AP_SAT_SYM", Overflow.SATURATE_SYMMETRIC),
                                          ("AP_SAT_ZERO", Overflow.SATURATE_ZERO), ("Saturate", Overflow.SATURATE),
                                          ("Wrap", Overflow.WRAP), ("satfinite", Overflow.SATURATE)])
def test_overflow_aliases(alias, member):
    assert Overflow.parse(alias) is member


def test_unknown_mode_error_names_argument_value_and_choices():
    with pytest.raises(ValueError, match=r"rounding must be .*half_even.*got 'nearest_even_please'"):
        Rounding.parse("nearest_even_please", argument="rounding")


@nb.njit
def _shift_round(x, s, mode, add):
    return kr.shift_round(x, s, mode, add)


@nb.njit
def _overflow(x, lo, hi, bits, signed, mode):
    return kr.overflow(x, lo, hi, bits, signed, mode)


@settings(max_examples=600)
@given(x=st.integers(-(2 ** 62), 2 ** 62 - 1), s=st.integers(0, 62), mode=st.sampled_from(list(Rounding)),
       data=st.data())
def test_shift_round_equals_the_definition(x, s, mode, data):
    add = data.draw(st.integers(0, 2 ** s - 1)) if s else 0
    got = _shift_round(x, s, int(mode), add)
    want = round_fraction(Fraction(x, 2 ** s), mode, rnd=add, r=s) if s else x
    assert got == want


@settings(max_examples=400)
@given(bits=st.integers(1, 64), signed=st.booleans(), mode=st.sampled_from(
    [Overflow.WRAP, Overflow.SATURATE, Overflow.SATURATE_SYMMETRIC, Overflow.SATURATE_ZERO]), data=st.data())
def test_overflow_stage_equals_the_definition(bits, signed, mode, data):
    if not signed and bits == 64:
        bits = 63
    x = data.draw(st.integers(-(2 ** 63), 2 ** 63 - 1))
    lo = -(1 << (bits - 1)) if signed else 0
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    got = _overflow(x, lo, hi, bits, signed, int(mode))
    assert got == overflow_int(x, bits, signed, mode)
