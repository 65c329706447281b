"""Formats: parsing, naming, ranges, and every code of every small format against a literal decoder."""
import numpy as np
import pytest
from fractions import Fraction
from hypothesis import given, settings, strategies as st

from fxsim.formats import PRESETS, Fixed, Float, parse_format
from fxsim.modes import Overflow, Rounding
from fxsim.quantize import quantize
from tests.reference_quantize import decode_float

PARSE_CASES = {
    "int8": Fixed(8, 0, True), "uint4": Fixed(4, 0, False), "int24": Fixed(24, 0, True),
    "Q1.15": Fixed(17, 15, True), "Q0.15": Fixed(16, 15, True), "UQ0.8": Fixed(8, 8, False),
    "ap_fixed<16,6,AP_RND_CONV,AP_SAT>": Fixed(16, 10, True, Rounding.HALF_EVEN, Overflow.SATURATE),
    "ap_ufixed<8,0>": Fixed(8, 8, False, Rounding.FLOOR, Overflow.WRAP),
    "ap_fixed<8,12>": Fixed(8, -4, True, Rounding.FLOOR, Overflow.WRAP),
    "ap_int<12>": Fixed(12, 0, True), "fixdt(1,16,15)": Fixed(16, 15, True, Rounding.HALF_UP, Overflow.SATURATE),
    "e4m3": Float(4, 3, specials="fn"), "fp8_e5m2": Float(5, 2), "e2m1": Float(2, 1, specials="none"),
    "fp4_e3m0": Float(3, 0, bias=3, specials="none"), "fp16": Float(5, 10), "bf16": Float(8, 7),
    "fp32": Float(8, 23), "e8m0": Float(8, 0, signed=False, specials="fn", zero=False),
    "e4m3fnuz": Float(4, 3, bias=8, specials="fnuz"), "e5m10_b20_ftz": Float(5, 10, bias=20, subnormals=False),
}


@pytest.mark.parametrize("text,fmt", list(PARSE_CASES.items()))
def test_parse_and_str_round_trip(text, fmt):
    assert parse_format(text) == fmt
    assert parse_format(str(fmt)) == fmt


@pytest.mark.parametrize("text,match", [("int0", "bits must be an integer in 1..64"), ("int65", "1..64"),
                                        ("e9m60", "man must be"), ("float7", "unknown format 'float7'"),
                                        ("ap_fixed<8,4,AP_FOO>", "rounding must be"), ("e4m3_xyz", "unknown suffix")])
def test_bad_format_names_are_explained(text, match):
    with pytest.raises(ValueError, match=match):
        parse_format(text)


@pytest.mark.parametrize("name,mx,mn_sub", [("e4m3", 448, 2 ** -9), ("e5m2", 57344, 2 ** -16), ("e4m3fnuz", 240, 2 ** -10),
                                            ("e2m1", 6, 0.5), ("e2m3", 7.5, 0.125), ("e3m2", 28, 0.0625),
                                            ("e8m0", 2.0 ** 127, 2.0 ** -127), ("fp16", 65504, 2 ** -24)])
def test_ranges_match_the_specifications(name, mx, mn_sub):
    f = parse_format(name)
    assert f.max == mx and f.min_subnormal == mn_sub


def _literal(f, code):
    return decode_float(code, f.exp, f.man, f.bias, f.signed, f.specials, f.subnormals, f.zero, f.radix)


def _check_every_code(f):
    codes = np.arange(f.num_codes)
    got = f.decode(codes)
    for c, g in zip(codes, got):
        want = _literal(f, int(c))
        if want == "nan":
            assert np.isnan(g)
        else:
            assert (g == float(want)) if isinstance(want, str) else Fraction(g) == want
    ok = ~np.isnan(got)
    back = f.decode(f.encode(got[ok]))
    assert np.array_equal(back, got[ok])


@pytest.mark.parametrize("name", [n for n, f in PRESETS.items() if f.bits <= 16])
def test_every_code_of_every_small_preset_decodes_literally_and_round_trips(name):
    f = PRESETS[name]
    if isinstance(f, Fixed):
        codes = np.arange(f.num_codes, dtype=np.uint64)
        vals = f.decode(codes)
        assert np.array_equal(f.encode(vals), codes)
        assert vals.min() == f.min and vals.max() == f.max
    else:
        _check_every_code(f)


@settings(max_examples=60)
@given(exp=st.integers(2, 6), man=st.integers(0, 6), specials=st.sampled_from(["ieee", "fn", "fnuz", "none"]),
       sub=st.booleans(), dbias=st.integers(-3, 3))
def test_every_code_of_random_float_formats(exp, man, specials, sub, dbias):
    _check_every_code(Float(exp, man, bias=(1 << (exp - 1)) - 1 + dbias, specials=specials, subnormals=sub))


@settings(max_examples=60)
@given(bits=st.integers(1, 14), frac=st.integers(-6, 20), signed=st.booleans())
def test_every_code_of_random_fixed_formats(bits, frac, signed):
    f = Fixed(bits, frac, signed)
    codes = np.arange(f.num_codes, dtype=np.uint64)
    vals = f.decode(codes)
    assert np.array_equal(f.encode(vals), codes)
    for c, v in zip(codes[:50], vals[:50]):
        n = int(c) - (1 << bits) if signed and int(c) >= 1 << (bits - 1) else int(c)
        assert Fraction(v) == Fraction(n) * Fraction(2) ** -frac


def test_encode_rejects_values_off_the_grid():
    with pytest.raises(ValueError, match=r"value 0.3 \(index 1\) is not representable in e4m3"):
        parse_format("e4m3").encode([1.0, 0.3])
    with pytest.raises(ValueError, match="outside the range"):
        parse_format("int8").encode([200])


@pytest.mark.parametrize("bits", [53, 62, 63, 64])
def test_wide_codes_sign_extend_exactly(bits):
    f = Fixed(bits, 0, True)
    codes = np.array([0, 1, (1 << (bits - 1)) - 1, 1 << (bits - 1), (1 << bits) - 1], dtype=np.uint64)
    want = [0, 1, (1 << (bits - 1)) - 1, -(1 << (bits - 1)), -1]
    assert [int(v) for v in f.codes_to_ints(codes)] == want


# ---- arguments checked by type; range checks exact ----------------------------------------------
@pytest.mark.parametrize("m", [43, 44, 47, 51])
def test_float_with_eleven_exponent_bits_and_long_mantissas_fits_float64(m):
    f = Float(11, m)   # log2(max) rounds to 1024 in float64 for m >= 44, yet max < 2**1024
    assert Fraction(f.max) == (2 - Fraction(1, 2 ** m)) * Fraction(2) ** 1023
    assert f.min_subnormal == 2.0 ** (-1022 - m)
    assert quantize(np.array([f.max, 1e308, -np.inf]), f).tolist() == [f.max, quantize(np.array([1e308]), f)[0],
                                                                       -np.inf]
    assert quantize(np.array([1.7976931348623157e308]), f, overflow="saturate")[0] == f.max


@pytest.mark.parametrize("make,err,match", [
    (lambda: Float(11, 51, bias=1022), ValueError, "leaves float64's range .*2\\*\\*1025"),
    (lambda: Float(11, 40, bias=1040), ValueError, "leaves float64's range .*2\\*\\*-1079"),
    (lambda: Float(5, 2, bias=1.5), TypeError, "bias must be an integer .* got 1.5"),
    (lambda: Float(5, 2, signed="false"), TypeError, "signed must be true or false"),
    (lambda: Float(5, 2, subnormals=0), TypeError, "subnormals must be true or false"),
    (lambda: Float(5, 2, specials="FN"), ValueError, "specials must be one of"),
    (lambda: Float(5.0, 2), TypeError, "exp must be an integer"),
    (lambda: Fixed(8, 0, signed="false"), TypeError, "signed must be true or false .*'false'"),
    (lambda: Fixed(8, 0, signed=0), TypeError, "signed must be true or false"),
    (lambda: Fixed(8.0, 0), TypeError, "bits must be an integer"),
    (lambda: Fixed(8, 1.5), TypeError, "frac must be an integer"),
])
def test_format_arguments_are_checked_by_type(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_numpy_integers_and_bools_are_still_accepted():
    assert Fixed(np.int64(8), np.int32(3), np.bool_(False)) == Fixed(8, 3, False)
    assert Float(np.int64(5), np.int64(2)) == Float(5, 2)
