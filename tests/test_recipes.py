"""Recipes: each names its paper and builds its datapaths; the LUQ and two-phase gradient quantizers put
values on the stated level sets, unbiasedly, with the stated α rules."""
import numpy as np
import pytest

from fxsim.formats import Float, parse_format
from fxsim.training.recipes import RECIPES, LogQuantizer, TensorQuantizer, get_recipe


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_names_its_paper_and_builds_its_datapaths(name):
    r = get_recipe(name)
    assert r.paper and r.note
    for which in ("forward", "dx", "dw"):
        dp = r.datapath(which)
        assert dp is None or dp.accumulator is not None


def test_hfp8_forward_is_e4m3_bias_11_and_backward_e5m2():
    r = get_recipe("hfp8")
    assert r.datapath("forward").a == parse_format("e4m3b11fnuz")
    assert r.datapath("dx").a == parse_format("e5m2") and r.datapath("dw").b == parse_format("e5m2")


def test_unknown_recipe_and_bad_parameters_are_named():
    with pytest.raises(ValueError, match="recipe must be one of"):
        get_recipe("int3")
    with pytest.raises(ValueError, match="alpha"):
        LogQuantizer(alpha="median")
    with pytest.raises(ValueError, match="levels"):
        LogQuantizer(levels=0)
    with pytest.raises(ValueError, match="scale_rule"):
        TensorQuantizer("int8", scale_rule="mean")


def test_luq_preset_is_seven_levels_with_the_maximum_on_top():
    q = get_recipe("luq").gradients
    assert isinstance(q, LogQuantizer) and (q.levels, q.alpha) == (7, "top")
    assert q.fmt == parse_format("fp4_e3m0")                     # 0, ±0.25 .. ±16: 15 codes, 4 bits
    g = np.full(200_000, 0.001)
    g[0] = 1.6                                  # α = 1.6/64 = 0.025 is the level 0.25: scale 0.1
    v, scale, under = q(g, seed=3)
    assert scale == pytest.approx(0.1) and v[0] == 16.0
    small = v[1:] * scale
    assert set(np.unique(v[1:])) <= {0.0, 0.25}
    # unbiased stochastic underflow: P(α) = 0.001/0.025 = 0.04; the mean is 0.001 within 5 sigma
    assert abs(small.mean() - 0.001) < 5 * 0.025 * np.sqrt(0.04 * 0.96 / len(small))
    assert under > 0


@pytest.mark.parametrize("levels,alpha,amax,want_alpha", [
    (7, "top", 6.4, 0.1), (7, "paper", 2.56, 0.01), (8, "code", 1.28, 0.01), (3, "top", 4.0, 1.0)])
def test_alpha_rules_and_level_sets(levels, alpha, amax, want_alpha):
    q = LogQuantizer(levels=levels, alpha=alpha)
    x = np.linspace(-amax, amax, 2001)
    v, scale, _ = q(x, seed=1)
    a = min(q.fmt.values()[q.fmt.values() > 0])
    assert scale * a == pytest.approx(want_alpha)
    mags = set(np.unique(np.abs(v)).tolist())
    allowed = {0.0} | {a * 2.0 ** k for k in range(levels)}
    assert mags <= allowed and len(mags) > 1
    assert np.max(np.abs(v)) <= a * 2.0 ** (levels - 1)       # saturation above the top level ("paper")


def test_stochastic_rounding_between_levels_is_unbiased():
    q = LogQuantizer()
    x = np.full(100_000, 0.3)
    x[0] = 1.6                                   # scale 0.1: 0.3 -> 3.0 lies between levels 2 and 4
    v, _, _ = q(x, seed=9)
    assert set(np.unique(v[1:])) == {2.0, 4.0}
    p = np.mean(v[1:] == 4.0)                    # P(up) = (3 - 2)/(4 - 2) = 0.5
    assert abs(p - 0.5) < 5 * np.sqrt(0.25 / len(v))


def test_two_phase_rounding_copies_lie_on_even_and_odd_powers_of_two():
    r = get_recipe("sun2020")
    g = np.random.default_rng(0).normal(0, 1, 5000)
    even, se, _ = r.gradients(g, seed=1)
    odd, so, _ = r.gradients_dx(g, seed=2)
    assert so == 2 * se
    fmt = parse_format("fp4_e3m0_r4")
    assert isinstance(fmt, Float) and fmt.radix == 4
    levels = set(np.abs(fmt.values()[np.isfinite(fmt.values())]).tolist())
    assert set(np.abs(even).tolist()) <= levels and set(np.abs(odd).tolist()) <= levels
    # in real units (levels 4^k times the scale) the two copies use exponents of opposite parity
    pe = {int(np.round(np.log2(abs(v) * se))) % 2 for v in even if v}
    po = {int(np.round(np.log2(abs(v) * so))) % 2 for v in odd if v}
    assert len(pe) == 1 and len(po) == 1 and pe != po
    assert r.datapath("dx").a == fmt and r.datapath("dw").b == fmt


def test_hfp8_with_chunked_fp16_accumulation_as_the_paper_ran_it():
    import dataclasses
    from fxsim.datapath import Order
    r = dataclasses.replace(get_recipe("hfp8"), forward_acc="fp16", backward_acc="fp16",
                            order=Order("chunked", lanes=64))
    for which in ("forward", "dx", "dw"):
        dp = r.datapath(which)
        assert dp.accumulator.fmt == parse_format("fp16") and dp.order == Order("chunked", lanes=64)


@pytest.mark.parametrize("levels,alpha", [(7, "top"), (7, "paper"), (8, "code"), (3, "top"), (5, "top")])
def test_log_quantizer_is_its_docstring_formula(levels, alpha):
    """q = R_stochastic(clip(x / scale, ±top)) on the E?M0 grid with the library's random bits, whether the
    top level is the format's max (the quantizer's own saturation then clips) or below it."""
    from fxsim.quantize import quantize
    q = LogQuantizer(levels=levels, alpha=alpha)
    x = np.random.default_rng(levels).standard_cauchy(4000)        # heavy tails: many saturate
    v, scale, under = q(x, seed=3)
    assert scale == q.alpha_of(np.max(np.abs(x))) / q.fmt.min_subnormal
    want = quantize(np.clip(x / scale, -q.top, q.top), q.fmt, rounding="stochastic", overflow="saturate", seed=3)
    assert np.array_equal(v, want, equal_nan=False)
    assert under == int(np.count_nonzero((want == 0) & (x != 0)))


@pytest.mark.parametrize("fmt", ["int8", "uint4", "int4"])
def test_integer_codes_are_the_values_of_integer_formats(fmt):
    """integer_codes=True gives the same numbers as the values, as integers, from the same rounding."""
    x = np.random.default_rng(1).normal(0, 3, (40, 7))
    q = TensorQuantizer(fmt, rounding="stochastic")
    v, sv, uv = q(x, seed=4)
    c, sc, uc = q(x, seed=4, integer_codes=True)
    assert c.dtype.kind in "iu" and v.dtype == np.float64
    assert np.array_equal(c.astype(np.float64), v) and (sc, uc) == (sv, uv)
    z, _, _ = q(np.zeros(3), integer_codes=True)
    assert z.dtype.kind in "iu" and not z.any()


def test_integer_codes_of_a_non_integer_format_are_an_error():
    from fxsim.errors import InvalidArgument
    for fmt in ("e4m3", "Q3.4"):
        with pytest.raises(InvalidArgument, match="integer_codes=True needs an integer format"):
            TensorQuantizer(fmt)(np.ones(3), integer_codes=True)
    from fxsim.errors import InvalidType
    for bad in ("yes", 1, None):
        with pytest.raises(InvalidType, match="integer_codes must be true or false"):
            TensorQuantizer("int8")(np.ones(3), integer_codes=bad)
