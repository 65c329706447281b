"""The float datapath against its Fraction reference, plus hand-derived cases and error messages."""
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from fxsim.datapath import Accumulator, Datapath, Order
from fxsim.engines.floating import float_gemm
from fxsim.formats import (BF16, E2M1, E2M3, E3M2, E4M3, E5M2, E8M13, FP4_E3M0, FP4_E3M0_R4, FP16, FP32,
                           INT4, INT8, Fixed, Float)
from fxsim.modes import Overflow, Rounding
from fxsim.quantize import quantize
from tests.reference_float_datapath import ref_float_gemm, ref_kulisch_dot


def same(x, y):
    """Bitwise-meaningful equality of float64 arrays (NaN equals NaN; -0 equals +0)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return bool(np.all((x == y) | (np.isnan(x) & np.isnan(y))))


OPERANDS = [E4M3, E5M2, E2M1, E3M2, E2M3, FP4_E3M0, FP4_E3M0_R4, FP16, BF16, INT4, INT8]
ACCUMULATORS = [FP32, E8M13, FP16, BF16, E5M2, Float(5, 4), Float(4, 3), Float(5, 6, subnormals=False), E4M3,
                E2M3, Float(6, 9)]
PRODUCTS = [None, FP16, BF16, E5M2, Float(6, 5)]
ORDERS = [Order(), Order("tree"), Order("chunked", lanes=2), Order("chunked", lanes=3, combine="tree"),
          Order("chunked", lanes=4)]


def operand_data(rng, fmt, shape, spread, scale=None):
    """Values on fmt's grid spanning ``spread`` binades (so that sums cancel, underflow and overflow),
    around ``scale`` (default: a quarter of the format's range)."""
    x = rng.normal(size=shape) * np.exp2(rng.integers(-spread, spread + 1, size=shape))
    if scale is None:
        scale = fmt.max / 4 if isinstance(fmt, Float) else fmt.max / 3
    x = x * scale
    x = np.where(rng.random(shape) < 0.1, 0.0, x)
    return quantize(x, fmt, overflow="saturate")


def _min_nonzero(fmt):
    return fmt.min_subnormal if isinstance(fmt, Float) else fmt.resolution


@st.composite
def float_cases(draw):
    a = draw(st.sampled_from(OPERANDS))
    b = draw(st.sampled_from(OPERANDS))
    acc = draw(st.sampled_from(ACCUMULATORS))
    prod = draw(st.sampled_from(PRODUCTS))
    rounding = draw(st.sampled_from(list(Rounding)))
    overflow = draw(st.sampled_from([Overflow.IEEE, Overflow.SATURATE]))
    order = draw(st.sampled_from(ORDERS))
    ftz = draw(st.booleans())
    limit = 50 - min(acc.man, prod.man if prod is not None else 0)
    rbits = draw(st.sampled_from([None, 1, 3, min(12, limit)]))
    prod_rounding = draw(st.sampled_from([Rounding.HALF_EVEN, Rounding.TOWARD_ZERO, Rounding.STOCHASTIC]))
    seed = draw(st.integers(0, 2 ** 40))
    # random bits and the seed go to the registers that round stochastically (elsewhere they are errors);
    # a product's stochastic rounding draws from the same generator (one seed) in its own stream
    sr = lambda mode: {"random_bits": rbits, "seed": seed} if mode == Rounding.STOCHASTIC else {}
    prod_kw = {} if prod is None else {"product_rounding": prod_rounding,
                                       **{f"product_{k}": v for k, v in sr(prod_rounding).items()}}
    dp = Datapath(a=a, b=b, product=prod, **prod_kw,
                  accumulator=Accumulator(acc, rounding=rounding, overflow=overflow, **sr(rounding),
                                          flush_subnormals=ftz),
                  order=order, bias_preload=draw(st.booleans()))
    M, K, N = draw(st.integers(1, 3)), draw(st.integers(0, 11)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32)))
    spread = draw(st.sampled_from([0, 3, 12]))
    tiny = draw(st.booleans())   # products near the accumulator's smallest normal: subnormal sums
    sa = sb = None
    if tiny:
        sa = max(np.sqrt(acc.min_normal) * 2, _min_nonzero(a) * 4)
        sb = max(acc.min_normal * 2 / sa, _min_nonzero(b) * 4)
    A = operand_data(rng, a, (M, K), spread, sa)
    B = operand_data(rng, b, (K, N), spread, sb)
    bias = None
    if draw(st.booleans()):
        bias = quantize(rng.normal(size=(M, N)) * acc.max / 8, acc, overflow="saturate")
    return dp, A, B, bias


@settings(max_examples=1500)
@given(float_cases())
def test_every_addition_matches_the_fraction_reference(case):
    dp, A, B, bias = case
    res = float_gemm(A, B, dp, bias=bias, trace=(0, 0))
    acc, nov, traces = ref_float_gemm(A.tolist(), B.tolist(), dp, bias=None if bias is None else bias.tolist(),
                                      seed=dp.random_seed, n_cols=B.shape[1])
    assert same(res.acc, acc), (dp, res.acc, acc)
    assert np.array_equal(res.overflow_count, np.array(nov)), (res.overflow_count, nov)
    assert same(res.traces[(0, 0)], traces[(0, 0)]), (res.traces[(0, 0)], traces[(0, 0)])
    assert res.values.shape == (A.shape[0], B.shape[1])


@settings(max_examples=300)
@given(a=st.sampled_from([E4M3, E5M2, E2M1, INT8]), order=st.sampled_from(ORDERS),
       ovf=st.sampled_from([Overflow.WRAP, Overflow.SATURATE, Overflow.SATURATE_ZERO]),
       align=st.sampled_from([Rounding.FLOOR, Rounding.HALF_EVEN, Rounding.TOWARD_ZERO]),
       bits=st.integers(8, 40), frac=st.integers(0, 20), seed=st.integers(0, 2 ** 32), K=st.integers(0, 12))
def test_kulisch_accumulator_aligns_exact_products_and_overflows_after_every_add(a, order, ovf, align, bits, frac,
                                                                                 seed, K):
    rng = np.random.default_rng(seed)
    A = operand_data(rng, a, (2, K), 6)
    B = operand_data(rng, a, (K, 2), 6)
    acc_fmt = Fixed(bits, frac)
    dp = Datapath(a=a, b=a, accumulator=Accumulator(acc_fmt, overflow=ovf, rounding=align), order=order)
    res = float_gemm(A, B, dp)
    if order.kind == "sequential":
        for i in range(2):
            for j in range(2):
                code, nov = ref_kulisch_dot(A[i], B[:, j], acc_fmt, ovf, align)
                assert res.acc[i, j] == code
                assert res.overflow_count[i, j] == nov
    else:
        # same aligned products through the integer datapath's order machinery: the exact sum agrees
        for i in range(2):
            for j in range(2):
                exact = sum(ref_kulisch_dot([x], [y], Fixed(63, frac), Overflow.WRAP, align)[0]
                            for x, y in zip(A[i], B[:, j]))
                assert res.exact[i, j] == exact


# ---- hand-derived cases --------------------------------------------------------------------------
def _dp(acc, **kw):
    acc_kw = {k: kw.pop(k) for k in ("rounding", "overflow", "random_bits", "seed", "flush_subnormals") if k in kw}
    return Datapath(a=kw.pop("a", FP16), b=kw.pop("b", FP16), accumulator=Accumulator(acc, **acc_kw), **kw)


def test_fp16_accumulator_loses_ones_added_to_2048_but_not_in_a_tree():
    # FP16 has 11 significant bits: above 2048 the spacing is 2, so 2048 + 1 is a tie -> 2048 (even).
    a = np.array([[2048.0, 1.0, 1.0, 1.0]])
    b = np.ones((4, 1))
    seq = float_gemm(a, b, _dp(FP16, rounding="half_even"))
    assert seq.acc[0, 0] == 2048.0
    assert list(seq.traces) == []
    # tree: (2048 + 1) -> 2048, (1 + 1) = 2, 2048 + 2 = 2050 exactly
    tree = float_gemm(a, b, _dp(FP16, rounding="half_even", order=Order("tree")), trace=(0, 0))
    assert tree.acc[0, 0] == 2050.0
    assert list(tree.traces[(0, 0)]) == [2048.0, 2.0, 2050.0, 2050.0]
    # toward +inf every 2048 + 1 rounds up: 2050, 2052, 2054
    up = float_gemm(a, b, _dp(FP16, rounding="ceil"), trace=(0, 0))
    assert list(up.traces[(0, 0)]) == [0.0, 2048.0, 2050.0, 2052.0, 2054.0]


def test_fp16_overflow_goes_to_inf_or_saturates_and_is_counted():
    a = np.array([[65504.0, 16.0, 1.0]])
    b = np.ones((3, 1))
    # 65504 + 16 = 65520: the tie between 65504 and 65536 (unbounded grid) goes to even 65536 -> inf
    r = float_gemm(a, b, _dp(FP16, rounding="half_even"))
    assert r.acc[0, 0] == math.inf and r.overflow_count[0, 0] == 1
    assert r.codes[0, 0] == 0x7C00
    s = float_gemm(a, b, _dp(FP16, rounding="half_even", overflow="saturate"))
    assert s.acc[0, 0] == 65504.0 and s.overflow_count[0, 0] == 1   # 65504 + 1 stays 65504 (half even)
    z = float_gemm(a, b, _dp(FP16, rounding="toward_zero"))
    assert z.acc[0, 0] == 65504.0 and z.overflow_count[0, 0] == 0   # 65520 truncates to 65504: no overflow
    with pytest.raises(OverflowError, match="1 output"):
        float_gemm(a, b, _dp(FP16, rounding="half_even", overflow="error"))


def test_e4m3_squares_overflow_an_e4m3_accumulator_to_nan():
    a = np.array([[448.0]])
    r = float_gemm(a, a, _dp(E4M3, a=E4M3, b=E4M3, rounding="half_even"))
    assert math.isnan(r.acc[0, 0]) and r.overflow_count[0, 0] == 1
    assert r.codes[0, 0] == 0x7F


def test_fp32_accumulator_of_e4m3_products_is_exact_for_small_k():
    rng = np.random.default_rng(1)
    A = quantize(rng.normal(size=(5, 16)), E4M3)
    B = quantize(rng.normal(size=(16, 4)), E4M3)
    r = float_gemm(A, B, _dp(FP32, a=E4M3, b=E4M3, rounding="half_even"))
    assert np.array_equal(r.values, A @ B)   # 16 products of 8-bit significands fit 24 bits here


def test_subnormal_sums_and_flush_to_zero():
    # FP16 smallest subnormal 2**-24; 2**-24 + 2**-24 = 2**-23 exactly; with FTZ both are flushed to 0
    t = 2.0 ** -24
    a = np.array([[t, t]])
    b = np.ones((2, 1))
    assert float_gemm(a, b, _dp(FP16, rounding="half_even")).acc[0, 0] == 2.0 ** -23
    assert float_gemm(a, b, _dp(FP16, rounding="half_even", flush_subnormals=True)).acc[0, 0] == 0.0
    # 2**-14 (min normal) - 2**-24: a subnormal result, flushed with FTZ
    a2 = np.array([[2.0 ** -14, -t]])
    assert float_gemm(a2, b, _dp(FP16, rounding="half_even")).acc[0, 0] == 2.0 ** -14 - t
    assert float_gemm(a2, b, _dp(FP16, rounding="half_even", flush_subnormals=True)).acc[0, 0] == 2.0 ** -14


def test_unfused_product_rounding_differs_from_fused():
    # (1 + 2**-10)**2 = 1 + 2**-9 + 2**-20: FP16 product rounds off the 2**-20 term
    x = 1.0 + 2.0 ** -10
    a = np.array([[x, -1.0]])
    b = np.array([[x], [1.0 + 2.0 ** -9]])
    fused = float_gemm(a, b, _dp(FP32, rounding="half_even"))
    unfused = float_gemm(a, b, _dp(FP32, rounding="half_even", product=FP16, product_rounding="half_even"))
    assert fused.acc[0, 0] == 2.0 ** -20
    assert unfused.acc[0, 0] == 0.0


def test_stochastic_rounding_is_reproducible_and_unbiased():
    # 2048 + 1 in FP16 rounds up with probability 1/2: over 4000 outputs about half become 2050
    a = np.tile(np.array([[2048.0, 1.0]]), (4000, 1))
    b = np.ones((2, 1))
    dp = _dp(FP16, rounding="stochastic", seed=7, random_bits=8)
    r1 = float_gemm(a, b, dp).acc
    r2 = float_gemm(a, b, dp).acc
    assert np.array_equal(r1, r2)
    assert set(np.unique(r1)) == {2048.0, 2050.0}
    up = np.mean(r1 == 2050.0)
    assert 0.45 < up < 0.55
    r3 = float_gemm(a, b, _dp(FP16, rounding="stochastic", seed=8, random_bits=8)).acc
    assert not np.array_equal(r1, r3)


def test_int_operands_with_zero_point_mix_with_float_accumulator():
    a = np.array([[3, -8, 7]])
    b = np.array([[1.5], [0.25], [-2.0]])
    dp = Datapath(a=INT4, b=E4M3, a_zero_point=-1, accumulator=Accumulator(FP32, rounding="half_even"))
    r = float_gemm(a, b, dp)
    assert r.acc[0, 0] == (4 * 1.5) + (-7 * 0.25) + (8 * -2.0)


def test_gemm_hands_float_datapaths_to_the_float_engine():
    from fxsim.ops.gemm import gemm
    rng = np.random.default_rng(3)
    A = quantize(rng.normal(size=(3, 7)), E5M2)
    B = quantize(rng.normal(size=(7, 2)), E2M1)
    dp = _dp(BF16, a=E5M2, b=E2M1, rounding="toward_zero")
    assert same(gemm(A, B, dp).values, float_gemm(A, B, dp).values)


def test_clear_errors():
    A = np.array([[1.0, 2.0]])
    B = np.ones((2, 1))
    with pytest.raises(ValueError, match="not representable in e4m3"):
        float_gemm(np.array([[0.3, 1.0]]), B, _dp(FP32, a=E4M3, b=E4M3))
    with pytest.raises(ValueError, match="fused=True"):
        float_gemm(A, B, _dp(FP32, product=FP16, fused=True))
    with pytest.raises(ValueError, match="random_bits must be in 1..27"):
        float_gemm(A, B, _dp(FP32, rounding="stochastic", random_bits=40))
    with pytest.raises(ValueError, match="level_bits"):
        float_gemm(A, B, _dp(FP32, order=Order("tree", level_bits=(16,))))
    with pytest.raises(ValueError, match="significand bits"):
        float_gemm(A, B, Datapath(a=FP32, b=Fixed(32, 0), accumulator=Accumulator(FP32)))
    with pytest.raises(ValueError, match="inner dimensions"):
        float_gemm(A, np.ones((3, 1)), _dp(FP32))
    with pytest.raises(ValueError, match="int64"):
        float_gemm(A, B, _dp(Fixed(60, 58)))


# ---- an independent implementation: APyTypes' float accumulator context ---------------------------
APY_MODES = {Rounding.HALF_EVEN: "TIES_EVEN", Rounding.TOWARD_ZERO: "TO_ZERO", Rounding.FLOOR: "TO_NEG",
             Rounding.CEIL: "TO_POS", Rounding.HALF_AWAY: "TIES_AWAY", Rounding.HALF_TOWARD_ZERO: "TIES_ZERO",
             Rounding.HALF_UP: "TIES_POS", Rounding.HALF_DOWN: "TIES_NEG", Rounding.HALF_ODD: "TIES_ODD",
             Rounding.AWAY_FROM_ZERO: "TO_AWAY"}


@settings(max_examples=40)
@given(exp=st.integers(4, 8), man=st.integers(2, 12), mode=st.sampled_from(sorted(APY_MODES)),
       M=st.integers(1, 4), K=st.integers(1, 40), N=st.integers(1, 4), seed=st.integers(0, 2 ** 32))
def test_agrees_with_apytypes_accumulator_context(exp, man, mode, M, K, N, seed):
    # APyTypes rounds each product to the accumulator format, then each addition: an unfused MAC
    import apytypes as apy   # a test dependency: the oracle must not be skipped silently
    rng = np.random.default_rng(seed)
    A = quantize(rng.normal(size=(M, K)) * 8, E4M3)
    B = quantize(rng.normal(size=(K, N)) * 8, E4M3)
    acc = Float(exp, man)
    # overflow is where the two differ by design (APyTypes does not give the largest finite value for
    # modes rounding toward zero, IEEE 754 7.4): compare where no partial sum can reach the range's end
    assume(np.abs(A).max(initial=0) * np.abs(B).max(initial=0) * K < acc.max / 2)
    dp = Datapath(a=E4M3, b=E4M3, product=acc, product_rounding=mode, accumulator=Accumulator(acc, rounding=mode))
    ours = float_gemm(A, B, dp).values
    a = apy.APyFloatArray.from_float(A, exp_bits=4, man_bits=3, bias=7)
    b = apy.APyFloatArray.from_float(B, exp_bits=4, man_bits=3, bias=7)
    with apy.APyFloatAccumulatorContext(exp_bits=exp, man_bits=man,
                                        quantization=getattr(apy.QuantizationMode, APY_MODES[mode])):
        theirs = (a @ b).to_numpy()
    assert same(ours, theirs), (ours, theirs)


@settings(max_examples=25)
@given(seed=st.integers(0, 2 ** 32), stride=st.integers(1, 2), padding=st.integers(0, 1), groups=st.sampled_from([1, 2]),
       order=st.sampled_from(ORDERS), acc=st.sampled_from([FP16, BF16, Float(5, 4)]))
def test_conv2d_through_the_float_engine_keeps_the_order_of_additions(seed, stride, padding, groups, order, acc):
    from fxsim.ops.conv import conv2d
    rng = np.random.default_rng(seed)
    x = quantize(rng.normal(size=(2, 4, 5, 4)) * 8, E4M3)
    w = quantize(rng.normal(size=(4, 4 // groups, 3, 2)) * 8, E5M2)
    bias = quantize(rng.normal(size=4), acc)
    dp = Datapath(a=E4M3, b=E5M2, accumulator=Accumulator(acc, rounding="half_even"), order=order)
    res = conv2d(x, w, dp, stride=stride, padding=padding, groups=groups, bias=bias, trace=[(1, 3, 0, 1)])
    Nn, O, OH, OW = res.values.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    Cg = 4 // groups
    for n in range(Nn):
        for o in range(O):
            g = o // (O // groups)
            for oh in range(OH):
                for ow in range(OW):
                    patch = xp[n, g * Cg:(g + 1) * Cg, oh * stride:oh * stride + 3, ow * stride:ow * stride + 2]
                    # (c, kh, kw) order: the flattening the integer datapath uses
                    a_row = [patch.ravel().tolist()]
                    b_col = [[v] for v in w[o].ravel().tolist()]
                    ref, _, tr = ref_float_gemm(a_row, b_col, dp, bias=[[bias[o]]], n_cols=1)
                    assert same(res.values[n, o, oh, ow], ref[0][0])
                    if (n, o, oh, ow) == (1, 3, 0, 1):
                        assert same(res.traces[(1, 3, 0, 1)], tr[(0, 0)])


def test_stochastic_results_do_not_depend_on_the_number_of_threads():
    import numba
    rng = np.random.default_rng(5)
    A = quantize(rng.normal(size=(9, 33)), E4M3)
    B = quantize(rng.normal(size=(33, 7)), E5M2)
    dp = _dp(BF16, a=E4M3, b=E5M2, rounding="stochastic", seed=11, random_bits=9, order=Order("chunked", lanes=3))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = float_gemm(A, B, dp).acc
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one, float_gemm(A, B, dp).acc)


def test_inf_and_nan_operands_propagate_as_ieee_and_are_not_counted_as_overflow():
    # E5M2 has inf and NaN: inf * 1 + 1 = inf; inf * 0 = NaN; -inf + inf = NaN; an FP16 register holds them
    a = np.array([[np.inf, 1.0], [np.inf, 0.0], [np.inf, -np.inf], [np.nan, 1.0]])
    b = np.array([[1.0], [1.0]])
    r = float_gemm(a, b, _dp(FP16, a=E5M2, b=E5M2, rounding="half_even"))
    assert r.acc[0, 0] == math.inf
    assert math.isnan(r.acc[2, 0]) and math.isnan(r.acc[3, 0])
    assert r.acc[1, 0] == math.inf          # inf * 1 + 0 * 1
    assert r.overflow_count.sum() == 0
    # a saturating register turns an inf operand's sum into the largest finite value
    s = float_gemm(a[:1], b, _dp(FP16, a=E5M2, b=E5M2, rounding="half_even", overflow="saturate"))
    assert s.acc[0, 0] == 65504.0


@settings(max_examples=80, deadline=None)
@given(st.sampled_from([Fixed(4, 0, True), Fixed(8, 0, False), Fixed(8, 5, True), Fixed(8, -3, True)]),
       st.lists(st.integers(-300, 300), min_size=1, max_size=8),
       st.sampled_from([None, 2.0 ** -1074, 2.0 ** -1010, 0.5, np.nan, np.inf]))
def test_on_fixed_grid_agrees_with_exact_reference(fmt, codes, extra):
    """The compiled grid check never claims a value is on the grid that is not (plain-Python Fractions),
    and proves every array of in-range codes times the resolution."""
    from fractions import Fraction
    from fxsim.engines.floating import _on_fixed_grid
    vals = [c * 2.0 ** -fmt.frac for c in codes] + ([] if extra is None else [extra])

    def on_grid(v):
        if not np.isfinite(v):
            return False
        s = Fraction(float(v)) * Fraction(2) ** fmt.frac
        return s.denominator == 1 and fmt.min_code <= s <= fmt.max_code

    expect = all(on_grid(v) for v in vals)
    got = _on_fixed_grid(np.asarray(vals, dtype=np.float64), fmt)
    assert not got or expect
    if extra is None and expect:
        assert got


def test_float_config_is_kept_on_the_datapath_unless_it_draws_a_seed():
    """A deterministic (or seeded) datapath's kernel configuration is made once; an unseeded stochastic
    one still draws a fresh seed on every call."""
    from fxsim.engines.floating import float_config
    dp = Datapath(a="e4m3", b="e4m3", accumulator=Accumulator("fp32"))
    assert float_config(dp) is float_config(dp)
    seeded = Datapath(a="e4m3", b="e4m3", accumulator=Accumulator("fp16", rounding="stochastic", seed=5))
    assert float_config(seeded) is float_config(seeded) and float_config(seeded).acc.seed == 5
    fresh = Datapath(a="e4m3", b="e4m3", accumulator=Accumulator("fp16", rounding="stochastic"))
    seeds = {float_config(fresh).acc.seed for _ in range(4)}
    assert len(seeds) > 1
