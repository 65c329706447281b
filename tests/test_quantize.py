"""quantize / quantize_to_codes against the Fraction reference, and the grid properties."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fxsim.formats import Fixed, Float, parse_format
from fxsim.modes import Overflow, Rounding
from fxsim.quantize import quantize, quantize_to_codes
from fxsim._kernels.random import fill_random_bits
from tests import reference_quantize as ref

DET_MODES = [m for m in Rounding if m != Rounding.STOCHASTIC]
FIXED_OVF = [Overflow.WRAP, Overflow.SATURATE, Overflow.SATURATE_SYMMETRIC, Overflow.SATURATE_ZERO]

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def _draws(seed, n, r):
    out = np.empty(n, dtype=np.int64)
    fill_random_bits(seed, 0, r, out)
    return out


@st.composite
def fixed_formats(draw):
    bits = draw(st.integers(1, 64))
    signed = draw(st.booleans())
    if not signed and bits == 64:
        bits = 63
    return Fixed(bits, draw(st.integers(-40, 80)), signed)


@st.composite
def values_near(draw, scale):
    """Floats around the scale of a format: ties, tiny values, huge values, random bits."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(finite)
    k = draw(st.integers(-60, 60))
    if kind == 1:
        return float(draw(st.integers(-2 ** 12, 2 ** 12))) * 2.0 ** (k // 4) * scale / 2.0 ** 6
    return draw(st.floats(-1e6, 1e6, allow_nan=False)) * scale * 2.0 ** (k // 8)


@settings(max_examples=500)
@given(fmt=fixed_formats(), mode=st.sampled_from(list(Rounding)), ovf=st.sampled_from(FIXED_OVF),
       r=st.integers(1, 62), seed=st.integers(0, 2 ** 40), data=st.data())
def test_fixed_quantize_matches_fraction_reference(fmt, mode, ovf, r, seed, data):
    xs = data.draw(st.lists(values_near(fmt.resolution), min_size=1, max_size=8))
    got = quantize_to_codes(np.array(xs), fmt, rounding=mode, overflow=ovf, seed=seed, random_bits=r)
    rnd = _draws(seed, len(xs), r)
    want = [ref.quantize_fixed(x, fmt.bits, fmt.frac, fmt.signed, mode, ovf, int(R), r) for x, R in zip(xs, rnd)]
    assert list(got) == want, (xs, fmt)
    if fmt.bits <= 53:   # quantize() writes the values in the same pass; they must equal code * 2**-frac
        vals = quantize(np.array(xs), fmt, rounding=mode, overflow=ovf, seed=seed, random_bits=r)
        assert [Fraction(v) for v in vals] == [Fraction(c) / Fraction(2) ** fmt.frac for c in want], (xs, fmt)


@pytest.mark.parametrize("mode", [Rounding.HALF_EVEN, Rounding.FLOOR, Rounding.CEIL, Rounding.TOWARD_ZERO,
                                  Rounding.HALF_AWAY])
@pytest.mark.parametrize("frac", [-1000, -999, -60, 0, 7, 52, 999, 1000])
def test_fixed_fast_path_edges_follow_the_reference(mode, frac):
    """Where x * 2**frac stops being exact (subnormal, beyond 2**52) or 2**frac is not a normal float."""
    big = 2.0 ** 52
    cands = [big, big - 0.5, big - 1, big + 2, big * 2 - 1, 0.5, 1.5, 2.5, -0.5, -2.5, 2.0 ** -1030,
             3 * 2.0 ** -1074, 2.0 ** -1022, 2.0 ** -1022 * 1.5, 1.0 + 2.0 ** -52]
    xs = []
    for c in cands:
        for sign in (1.0, -1.0):
            v = sign * c * 2.0 ** -frac if abs(frac) < 1000 else sign * c
            if np.isfinite(v):
                xs.append(v)
    xs.append(5e-324)
    xs.append(-5e-324)
    for bits, signed in [(8, True), (53, True), (63, True), (16, False)]:
        fmt = Fixed(bits, frac, signed)
        got = quantize_to_codes(np.array(xs), fmt, rounding=mode, overflow="wrap")
        want = [ref.quantize_fixed(x, bits, frac, signed, mode, Overflow.WRAP, 0, 62) for x in xs]
        assert list(got) == want, (fmt, mode)
        if bits <= 53:
            vals = quantize(np.array(xs), fmt, rounding=mode, overflow="wrap")
            assert [Fraction(v) for v in vals] == [Fraction(c) / Fraction(2) ** frac for c in want]


@st.composite
def float_formats(draw):
    exp = draw(st.integers(2, 8))
    man = draw(st.integers(0, 10))
    specials = draw(st.sampled_from(["ieee", "fn", "fnuz", "none"]))
    bias = draw(st.integers((1 << (exp - 1)) - 4, (1 << (exp - 1)) + 3))
    return Float(exp, man, bias=bias, specials=specials, subnormals=draw(st.booleans()))


@settings(max_examples=500)
@given(fmt=float_formats(), mode=st.sampled_from(list(Rounding)),
       ovf=st.sampled_from([Overflow.IEEE, Overflow.SATURATE]), r=st.integers(1, 62),
       seed=st.integers(0, 2 ** 40), data=st.data())
def test_float_quantize_matches_fraction_reference(fmt, mode, ovf, r, seed, data):
    xs = data.draw(st.lists(values_near(fmt.max / 2 ** data.draw(st.integers(0, 40))), min_size=1, max_size=8))
    got = quantize(np.array(xs), fmt, rounding=mode, overflow=ovf, seed=seed, random_bits=r)
    rnd = _draws(seed, len(xs), r)
    kind = "saturate" if ovf == Overflow.SATURATE or fmt.specials == "none" else \
        ("inf" if fmt.specials == "ieee" else "nan")
    for x, g, R in zip(xs, got, rnd):
        want = ref.quantize_float(x, fmt, mode, kind, int(R), r)
        if want == "nan":
            assert np.isnan(g), (x, g)
        elif isinstance(want, str):
            assert g == float(want), (x, g, want)
        else:
            assert Fraction(g) == want, (x, fmt, mode, g, want)


@settings(max_examples=200)
@given(fmt=float_formats(), ovf=st.sampled_from([Overflow.IEEE, Overflow.SATURATE]),
       r=st.one_of(st.none(), st.integers(1, 62)), seed=st.integers(0, 2 ** 40), data=st.data())
def test_stochastic_bit_pattern_path_matches_fraction_reference(fmt, ovf, r, seed, data):
    """Stochastic rounding of normal-range values runs on the float64 bit pattern (random bits aligned
    below the kept LSB, r below, at or above 52 - man): 64 values per case against the reference."""
    scale = fmt.max / 2 ** data.draw(st.integers(0, 12))
    xs = data.draw(st.lists(values_near(scale), min_size=64, max_size=64))
    got = quantize(np.array(xs), fmt, rounding="stochastic", overflow=ovf, seed=seed, random_bits=r)
    bits = 62 if r is None else r
    rnd = _draws(seed, len(xs), bits)
    kind = "saturate" if ovf == Overflow.SATURATE or fmt.specials == "none" else \
        ("inf" if fmt.specials == "ieee" else "nan")
    for x, g, R in zip(xs, got, rnd):
        want = ref.quantize_float(x, fmt, Rounding.STOCHASTIC, kind, int(R), bits)
        if want == "nan":
            assert np.isnan(g), (x, g)
        elif isinstance(want, str):
            assert g == float(want), (x, g, want)
        else:
            assert Fraction(g) == want, (x, fmt, g, want)


@st.composite
def radix4_formats(draw):
    exp = draw(st.integers(1, 4))   # radix-4 formats have no mantissa bits
    bias = draw(st.integers(max(0, (1 << (exp - 1)) - 2), (1 << (exp - 1)) + 2))
    return Float(exp, 0, bias=bias, specials="none", subnormals=draw(st.booleans()), radix=4)


@settings(max_examples=150)
@given(fmt=radix4_formats(), mode=st.sampled_from(list(Rounding)), r=st.integers(1, 62),
       seed=st.integers(0, 2 ** 40), data=st.data())
def test_radix4_quantize_matches_the_literal_grid_reference(fmt, mode, r, seed, data):
    """Radix-4 grids (FP4 [1,3,0] of Sun et al. and relatives) against a search over every decoded code."""
    levels = ref.grid_levels(fmt)
    scale = float(levels[-1]) / 4.0 ** data.draw(st.integers(0, 2 ** fmt.exp))
    xs = data.draw(st.lists(values_near(scale), min_size=1, max_size=8))
    ovf = data.draw(st.sampled_from([Overflow.IEEE, Overflow.SATURATE]))
    got = quantize(np.array(xs), fmt, rounding=mode, overflow=ovf, seed=seed, random_bits=r)
    rnd = _draws(seed, len(xs), r)
    for x, g, R in zip(xs, got, rnd):
        assert Fraction(g) == ref.quantize_on_grid(x, levels, 4, mode, "saturate", int(R), r), (x, fmt, mode)
        assert np.signbit(g) == np.signbit(x), (x, g)   # sign-magnitude: zero keeps the sign too


@pytest.mark.parametrize("name", ["fp4_e3m0", "e2m1", "e3m2"])
@pytest.mark.parametrize("mode", DET_MODES)
def test_grid_reference_agrees_with_the_radix2_reference(name, mode):
    """The two references (binade arithmetic and grid search) agree, so neither hides a shared mistake.

    Except the modes that look at the kept LSB (ties to even/odd, jam) with no mantissa bits: a
    significand rounder sees the implicit 1 as that LSB, so radix-2 E?M0 ties go to the larger magnitude
    (as ml_dtypes' E8M0 does) and jam truncates; the grid search takes the parity of the code, the rule
    fxsim uses on radix-4 grids.
    """
    fmt = parse_format(name)
    if fmt.man == 0 and mode in (Rounding.HALF_EVEN, Rounding.HALF_ODD, Rounding.JAM):
        return
    levels = ref.grid_levels(fmt)
    vals = [float(v) for v in levels]
    xs = [v * k for v in vals for k in (1.0, 0.75, 1.25, 0.875, 1.5)] + [(a + b) / 2 for a, b in zip(vals, vals[1:])]
    xs += [-x for x in xs]
    for x in xs:
        assert ref.quantize_on_grid(x, levels, 2, mode, "saturate") == \
            ref.quantize_float(x, fmt, mode, "saturate"), (x, mode)


@pytest.mark.parametrize("name", ["int8", "Q1.14", "e4m3", "e5m2", "e2m1", "e3m2", "fp4_e3m0", "fp4_e3m0_r4",
                                  "bf16", "fp16"])
@pytest.mark.parametrize("mode", DET_MODES)
def test_results_lie_on_the_grid_and_are_idempotent_and_monotone(name, mode):
    fmt = parse_format(name)
    rng = np.random.default_rng(7)
    x = np.sort(np.concatenate([rng.standard_normal(4000) * fmt.max / 4, rng.standard_normal(2000) * fmt.resolution * 8]))
    kw = dict(rounding=mode, overflow="saturate")
    y = quantize(x, fmt, **kw)
    fmt.encode(y)                                   # on the grid, or this raises
    assert np.array_equal(quantize(y, fmt, **kw), y)  # idempotent
    if mode != Rounding.JAM:
        assert np.all(np.diff(y) >= 0)               # monotone


@pytest.mark.parametrize("name", ["int8", "Q3.12", "e4m3", "e5m2", "e2m3", "bf16", "fp4_e3m0_r4"])
def test_nearest_within_half_step_and_directed_modes_bound_from_the_right_side(name):
    fmt = parse_format(name)
    grid = fmt.values() if fmt.bits <= 16 else None
    rng = np.random.default_rng(3)
    x = rng.uniform(-fmt.max, fmt.max, 5000) * rng.choice([1, 1e-2, 1e-4], 5000)
    down = quantize(x, fmt, rounding="floor", overflow="saturate")
    up = quantize(x, fmt, rounding="ceil", overflow="saturate")
    near = quantize(x, fmt, rounding="half_even", overflow="saturate")
    assert np.all(down <= x) and np.all(up >= x)
    assert np.all((near == down) | (near == up))
    assert np.all(np.abs(near - x) <= np.abs(up - down) / 2)
    if grid is not None:  # floor and ceil are the neighbouring grid points
        i = np.searchsorted(grid, x)
        assert np.array_equal(up, grid[i])


@pytest.mark.parametrize("name,x", [("e4m3", 1.03), ("int8", 0.3), ("fp4_e3m0", 2.9), ("fp4_e3m0_r4", 7.0)])
def test_stochastic_rounding_is_unbiased_and_reproducible(name, x):
    n = 200_000
    y = quantize(np.full(n, x), name, rounding="stochastic", seed=11)
    fmt = parse_format(name)
    lo = quantize(np.array([x]), fmt, rounding="floor")[0]
    hi = quantize(np.array([x]), fmt, rounding="ceil")[0]
    p = (x - lo) / (hi - lo)
    sigma = (hi - lo) * np.sqrt(p * (1 - p) / n)
    assert abs(y.mean() - x) < 5 * sigma          # 5 sigma: fails by chance with probability < 1e-6
    assert np.array_equal(y, quantize(np.full(n, x), name, rounding="stochastic", seed=11))


def test_hardware_stochastic_rounding_with_few_bits_is_biased_as_modelled():
    # E4M3 at 1.03: step 0.125, discarded fraction 0.24; with r = 3 bits the rounder rounds up when the
    # top 3 discarded bits (0b001 = 1/8) plus R reach 8: P = 1/8 instead of 0.24.
    y = quantize(np.full(100_000, 1.03), "e4m3", rounding="stochastic", seed=5, random_bits=3)
    assert abs(np.mean(y == 1.125) - 1 / 8) < 0.005


def test_overflow_error_names_count_and_first_index():
    with pytest.raises(OverflowError, match=r"2 element\(s\) overflow int8.*first at flat index 1"):
        quantize(np.array([1.0, 300.0, -400.0]), "int8", overflow="error")
    with pytest.raises(OverflowError, match="1 element"):
        quantize(np.array([1.0, 1e4]), "e4m3", overflow="error")


def test_integer_formats_reject_nan_and_inf():
    with pytest.raises(ValueError, match=r"int8 has no code for nan \(index 1\)"):
        quantize(np.array([1.0, np.nan]), "int8")


def test_wide_fixed_codes_are_exact_integers():
    x = np.array([2.0 ** 62 + 2.0 ** 40, -2.0 ** 63, 1e30])
    c = quantize_to_codes(x, "int64", overflow="saturate")
    assert [int(v) for v in c] == [2 ** 62 + 2 ** 40, -2 ** 63, 2 ** 63 - 1]
    with pytest.raises(ValueError, match="53 bits"):
        quantize(x, "int64")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="random_bits must be an integer in 1..62"):
        quantize(np.ones(2), "e4m3", rounding="sr", random_bits=0)
    with pytest.raises(ValueError, match="overflow for a Float format"):
        quantize(np.ones(2), "e4m3", overflow="wrap")
    with pytest.raises(ValueError, match="convention must be one of"):
        quantize(np.ones(2), "e4m3", convention="numpy")


@pytest.mark.parametrize("name", ["fp4_e3m0", "e8m0", "e4m3", "e2m1", "bf16", "e5m10_ftz"])
def test_every_tie_between_neighbours_follows_the_reference(name):
    """Exact midpoints are where half-even implementations go wrong (e.g. with no mantissa bits the kept
    significand is the implicit 1, so every tie rounds up)."""
    fmt = parse_format(name)
    v = fmt.values() if fmt.bits <= 16 else np.ldexp(np.arange(1, 300, dtype=float), -3)
    v = v[np.isfinite(v)]
    if fmt.signed:
        v = v[v >= 0]
    mids = (v[1:] + v[:-1]) / 2
    kind = "saturate" if fmt.specials == "none" else ("inf" if fmt.specials == "ieee" else "nan")
    for mode in (Rounding.HALF_EVEN, Rounding.HALF_ODD, Rounding.HALF_UP):
        got = quantize(mids, fmt, rounding=mode)
        for x, g in zip(mids, got):
            want = ref.quantize_float(float(x), fmt, mode, kind)
            assert Fraction(g) == want, (name, mode, x, g, want)


def _operand_codes_reference(values, fmt):
    """Plain Python: each value as an exact Fraction times 2**frac must be an integer code in range; the
    first element off the grid is reported before any element out of range."""
    scaled = [None if not np.isfinite(v) else Fraction(float(v)) * 2 ** fmt.frac for v in values]
    for i, s in enumerate(scaled):
        if s is None or s.denominator != 1:
            return ("grid", i)
    for i, s in enumerate(scaled):
        if not fmt.min_code <= s <= fmt.max_code:
            return ("range", i)
    codes = [int(s) for s in scaled]
    return codes, (min(codes) if codes else 0), (max(codes) if codes else 0)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([Fixed(8, 0, True), Fixed(4, 0, False), Fixed(8, 3, True), Fixed(16, 15, True)]),
       st.lists(st.integers(-300, 300), max_size=12), st.sampled_from([None, np.nan, np.inf, 0.25, 1e6]),
       st.integers(0, 11))
def test_operand_codes_range_of_values_matches_reference(fmt, codes, extra, pos):
    """Float operands to codes: the few-pass common case and the element-by-element error path agree with
    a plain-Python reference on codes, ranges and which element an error names."""
    from fxsim.errors import InvalidArgument
    from fxsim.quantize import operand_codes_range
    values = [c * 2.0 ** -fmt.frac for c in codes]
    if extra is not None:
        values.insert(min(pos, len(values)), extra)
    expect = _operand_codes_reference(values, fmt)
    x = np.asarray(values, dtype=np.float64)
    if isinstance(expect[0], str):
        with pytest.raises(InvalidArgument) as e:
            operand_codes_range(x, fmt, "A")
        assert f"A[{expect[1]}]" in str(e.value)
        assert ("not on the grid" in str(e.value)) == (expect[0] == "grid")
    else:
        got, lo, hi = operand_codes_range(x, fmt, "A")
        assert got.dtype == np.int64 and got.tolist() == expect[0] and (lo, hi) == expect[1:]
