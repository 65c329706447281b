"""Format names mean what they mean in the tools users come from: hls4ml, Vitis HLS ap_fixed, Catapult
ac_fixed, ml_dtypes and NumPy dtypes. Hand-worked examples in the vendors' style, a Python-integer
reference for every ap_/ac_ mode, and refusals for what is not modelled."""
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, strategies as st

from fxsim.errors import InvalidArgument, InvalidType
from fxsim.formats import ML_DTYPES_NAMES, Fixed, Float, parse_format
from fxsim.modes import Overflow, Rounding
from fxsim.quantize import quantize
from tests.reference_quantize import quantize_fixed


# ---- hls4ml: fixed<W,I> is ap_fixed<W,I> (I integer bits including the sign) ------------------------
@pytest.mark.parametrize("hls4ml,vitis", [
    ("fixed<16,6>", "ap_fixed<16,6>"), ("ufixed<8,0>", "ap_ufixed<8,0>"), ("fixed<8,12>", "ap_fixed<8,12>"),
    ("fixed<16,6,RND_CONV,SAT>", "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"),
    ("fixed<10,3,RND,SAT_SYM>", "ap_fixed<10,3,AP_RND,AP_SAT_SYM>"),
    ("ufixed<6,2,TRN_ZERO,SAT_ZERO>", "ap_ufixed<6,2,AP_TRN_ZERO,AP_SAT_ZERO>"),
    ("int<8>", "ap_int<8>"), ("uint<4>", "ap_uint<4>"),
])
def test_hls4ml_spellings_are_the_vitis_types(hls4ml, vitis):
    assert parse_format(hls4ml) == parse_format(vitis)


def test_hls4ml_fixed_16_6_has_six_integer_bits():
    f = parse_format("fixed<16,6>")
    assert (f.bits, f.frac, f.signed) == (16, 10, True)
    assert f.max == 32 - 2 ** -10 and f.min == -32 and f.resolution == 2 ** -10
    assert (f.rounding, f.overflow) == (Rounding.FLOOR, Overflow.WRAP)     # ap_fixed's AP_TRN, AP_WRAP
    # fxsim's own fraction-based spellings stay: Fixed(bits, frac) and Q notation
    assert parse_format("Q5.10") == Fixed(16, 10) == parse_format("Fixed(16, 10)")
    assert str(Fixed(16, 10)) == "Q5.10" and str(Fixed(8, 9)) == "Fixed(8,9)"
    assert parse_format(str(Fixed(8, -3, signed=False))) == Fixed(8, -3, signed=False)


# ---- Vitis HLS (UG1399 "Quantization Modes", "Overflow Modes") examples, worked by hand ------------
@pytest.mark.parametrize("fmt,x,want", [
    # ap_fixed<3,2>: one fractional bit, range [-2, 1.5]
    ("ap_fixed<3,2,AP_RND,AP_SAT>", [1.25, -1.25], [1.5, -1.0]),          # ties toward +inf
    ("ap_fixed<3,2,AP_RND_ZERO,AP_SAT>", [1.25, -1.25], [1.0, -1.0]),     # ties toward zero
    ("ap_fixed<3,2,AP_RND_MIN_INF,AP_SAT>", [1.25, -1.25], [1.0, -1.5]),  # ties toward -inf
    ("ap_fixed<3,2,AP_RND_INF,AP_SAT>", [1.25, -1.25], [1.5, -1.5]),      # ties away from zero
    ("ap_fixed<3,2,AP_RND_CONV,AP_SAT>", [0.75, -0.75, 0.25], [1.0, -1.0, 0.0]),   # ties to even code
    ("ap_fixed<3,2,AP_TRN,AP_SAT>", [1.25, -1.25], [1.0, -1.5]),          # floor
    ("ap_fixed<3,2,AP_TRN_ZERO,AP_SAT>", [1.25, -1.25], [1.0, -1.0]),     # toward zero
    ("ap_fixed<3,2>", [1.25, -1.25], [1.0, -1.5]),                        # defaults AP_TRN, AP_WRAP
    # ap_fixed<4,4>: integers in [-8, 7]
    ("ap_fixed<4,4,AP_RND,AP_SAT>", [19.0, -19.0], [7.0, -8.0]),
    ("ap_fixed<4,4,AP_RND,AP_SAT_ZERO>", [19.0, -19.0], [0.0, 0.0]),
    ("ap_fixed<4,4,AP_RND,AP_SAT_SYM>", [19.0, -19.0], [7.0, -7.0]),
    ("ap_fixed<4,4,AP_RND,AP_WRAP>", [19.0, -19.0, 31.5], [3.0, -3.0, 0.0]),   # 19 = 0b10011 -> 0011
    ("ap_fixed<4,4,AP_TRN,AP_WRAP>", [31.5], [-1.0]),                    # 31 = 0b11111 -> 1111 = -1
    ("ap_ufixed<4,4,AP_RND,AP_WRAP>", [19.0], [3.0]),
    ("ap_ufixed<4,4,AP_RND,AP_SAT>", [19.0, -3.0], [15.0, 0.0]),
    # Catapult ac_fixed: the third parameter is signedness
    ("ac_fixed<4,4,false,AC_RND,AC_SAT>", [19.0, -3.0], [15.0, 0.0]),
    ("ac_fixed<4,4,true,AC_RND,AC_WRAP>", [19.0], [3.0]),
    ("ac_fixed<3,2,true,AC_RND_CONV,AC_SAT>", [0.75, -0.75], [1.0, -1.0]),
    ("ac_fixed<3,2,true,AC_RND_CONV_ODD,AC_SAT>", [0.75, -0.75], [0.5, -0.5]),
    ("ac_fixed<3,2>", [1.25, 2.0], [1.0, -2.0]),                          # defaults AC_TRN, AC_WRAP, signed
])
def test_vendor_examples_worked_by_hand(fmt, x, want):
    assert list(quantize(np.array(x), fmt)) == want


def test_ac_int_and_ac_fixed_signedness():
    assert parse_format("ac_int<7,false>") == Fixed(7, 0, signed=False)
    assert parse_format("ac_int<7>") == Fixed(7, 0, signed=True) == parse_format("ac_int<7,true>")
    f = parse_format("ac_fixed<8,4,false>")
    assert (f.bits, f.frac, f.signed, f.rounding, f.overflow) == (8, 4, False, Rounding.FLOOR, Overflow.WRAP)
    assert parse_format("ac_fixed<8,4>").signed


VENDOR_Q = ["TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV"]
VENDOR_O = ["WRAP", "SAT", "SAT_ZERO", "SAT_SYM"]
Q_MODES = {"TRN": Rounding.FLOOR, "TRN_ZERO": Rounding.TOWARD_ZERO, "RND": Rounding.HALF_UP,
           "RND_ZERO": Rounding.HALF_TOWARD_ZERO, "RND_MIN_INF": Rounding.HALF_DOWN, "RND_INF": Rounding.HALF_AWAY,
           "RND_CONV": Rounding.HALF_EVEN}


def _vendor_reference(x, w, i, signed, q, o):
    """ap_fixed/ac_fixed assignment from a double, written from the vendors' definitions with Python ints."""
    scaled = Fraction(x) * Fraction(2) ** (w - i)
    fl = scaled.numerator // scaled.denominator
    rem = scaled - fl
    half = Fraction(1, 2)
    up = {"TRN": False, "TRN_ZERO": rem > 0 and scaled < 0, "RND": rem >= half,
          "RND_ZERO": rem > half or (rem == half and scaled < 0), "RND_MIN_INF": rem > half,
          "RND_INF": rem > half or (rem == half and scaled > 0), "RND_CONV": rem > half or (rem == half and fl % 2)}[q]
    n = fl + int(bool(up))
    lo, hi = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if signed else (0, (1 << w) - 1)
    if lo <= n <= hi and not (o == "SAT_SYM" and signed and n == lo):
        return n
    if o == "WRAP":
        n &= (1 << w) - 1
        return n - (1 << w) if signed and n >> (w - 1) else n
    if o == "SAT_ZERO":
        return 0
    if o == "SAT_SYM" and signed:
        return -hi if n < 0 else hi
    return lo if n < lo else hi


@given(w=st.integers(2, 20), i=st.integers(-4, 24), signed=st.booleans(), q=st.sampled_from(VENDOR_Q),
       o=st.sampled_from(VENDOR_O), ac=st.booleans(),
       x=st.floats(-2.0 ** 26, 2.0 ** 26, allow_nan=False, allow_infinity=False))
def test_ap_and_ac_spellings_against_a_python_integer_reference(w, i, signed, q, o, ac, x):
    if ac:
        name = f"ac_fixed<{w},{i},{'true' if signed else 'false'},AC_{q},AC_{o}>"
    else:
        name = f"ap_{'' if signed else 'u'}fixed<{w},{i},AP_{q},AP_{o}>"
    fmt = parse_format(name)
    want = _vendor_reference(x, w, i, signed, q, o)
    got = quantize(np.array([x]), fmt)[0]
    assert Fraction(got) == want * Fraction(2) ** (i - w)
    # and the existing Python reference, through the mode table
    assert want == quantize_fixed(x, w, w - i, signed, Q_MODES[q], fmt.overflow)


@pytest.mark.parametrize("text,match", [
    ("ap_fixed<16,6,AP_RND,AP_WRAP_SM>", "AP_WRAP_SM .* not modelled"),
    ("fixed<16,6,RND,WRAP_SM>", "AP_WRAP_SM .* not modelled"),
    ("ap_fixed<16,6,AP_RND,AP_WRAP,2>", "N=2 saturation bits is not modelled"),
    ("ap_fixed<16,6,AP_RND,AP_SAT,1>", "apply to the AP_WRAP modes only"),
    ("ac_ufixed<8,4>", "no ac_ufixed.*ac_fixed<W,I,false>"),
    ("ac_fixed<8,4,maybe>", "S \\(signedness\\) must be true or false"),
    ("ac_fixed<8,4,true,AC_RND,AC_SAT,3>", "6 parameters"),
    ("ap_int<8,3>", "2 parameters"),
    ("fixed<a,4>", "W must be an integer"),
    ("ap_fixed<8,4,AP_RND,AP_FOO>", "overflow must be one of AP_SAT"),
])
def test_vendor_spellings_not_modelled_are_refused_clearly(text, match):
    with pytest.raises(InvalidArgument, match=match):
        parse_format(text)


def test_ap_fixed_fifth_parameter_zero_is_plain_wrap():
    assert parse_format("ap_fixed<8,4,AP_RND,AP_WRAP,0>") == parse_format("ap_fixed<8,4,AP_RND,AP_WRAP>")


# ---- ml_dtypes names and dtype objects --------------------------------------------------------------
ML_TYPES = ["float8_e4m3fn", "float8_e4m3", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e4m3b11fnuz",
            "float8_e3m4", "float8_e8m0fnu", "float6_e2m3fn", "float6_e3m2fn", "float4_e2m1fn", "int4", "uint4",
            "int2", "uint2", "bfloat16"]


@pytest.mark.parametrize("name", ML_TYPES)
def test_ml_dtypes_names_and_types_name_the_same_format_as_ml_dtypes(name):
    t = getattr(ml_dtypes, name)
    fmt = parse_format(name)
    assert parse_format(t) == fmt == parse_format(np.dtype(t))
    assert fmt.bits == (ml_dtypes.iinfo(t).bits if "int" in name else ml_dtypes.finfo(t).bits)
    if isinstance(fmt, Float):
        fi = ml_dtypes.finfo(t)
        assert fmt.max == float(fi.max)
        assert fmt.min_subnormal == float(fi.smallest_subnormal)
        assert fmt.has_inf == bool(np.isinf(np.array(np.inf, dtype=np.float32).astype(t)))
    else:
        ii = ml_dtypes.iinfo(t)
        assert (fmt.min_code, fmt.max_code) == (int(ii.min), int(ii.max))


def test_bare_e4m3_is_ocp_not_ml_dtypes_float8_e4m3():
    assert parse_format("e4m3") == parse_format("float8_e4m3fn") and parse_format("e4m3").max == 448
    ieee = parse_format("float8_e4m3")
    assert ieee.max == 240 and ieee.has_inf and str(ieee) == "e4m3_ieee"
    assert parse_format(str(ieee)) == ieee and parse_format("e4m3_ieee") == ieee
    assert ML_DTYPES_NAMES["float8_e4m3fn"] == "e4m3"


@pytest.mark.parametrize("dtype,name", [(np.int8, "int8"), (np.uint16, "uint16"), (np.int32, "int32"),
                                        (np.float16, "fp16"), (np.float32, "fp32"), (np.dtype("int64"), "int64")])
def test_numpy_dtypes_are_formats(dtype, name):
    assert parse_format(dtype) == parse_format(name)
    assert np.array_equal(quantize(np.array([1.4, 300.0]), dtype), quantize(np.array([1.4, 300.0]), name))


@pytest.mark.parametrize("bad,err,match", [(np.float64, InvalidArgument, "dtype float64 is not a format"),
                                           (np.bool_, InvalidArgument, "dtype bool is not a format"),
                                           (3, InvalidType, "format must be a format, a format name or a dtype")])
def test_dtypes_that_are_not_formats_are_refused(bad, err, match):
    with pytest.raises(err, match=match):
        parse_format(bad)


def test_every_vendor_type_prints_a_name_that_reads_back():
    for text in ("ac_fixed<3,2,true,AC_RND_CONV_ODD,AC_SAT>", "ac_fixed<8,4,false,AC_RND,AC_SAT_SYM>",
                 "fixed<16,6,RND_CONV,SAT>", "ap_ufixed<8,0>", "ac_int<5,false>", "uint<7>"):
        fmt = parse_format(text)
        assert parse_format(str(fmt)) == fmt, text


def test_accumulator_bounds_take_format_names_and_dtypes():
    from fxsim.bounds import symmetric_bits, worst_case_bits
    want = worst_case_bits(Fixed(8, 0), Fixed(8, 0), 256)
    assert worst_case_bits("int8", np.int8, 256) == want == worst_case_bits("ap_int<8>", "int<8>", 256)
    assert symmetric_bits("int4", ml_dtypes.int4, 16) == symmetric_bits(Fixed(4, 0), Fixed(4, 0), 16)
    with pytest.raises(InvalidArgument, match=r"^a must be a fixed-point or integer format .*got e4m3"):
        worst_case_bits("e4m3", "int8", 16)
