"""The Datapath description: string and alias acceptance, validation errors that name the argument,
readable printing, and dispatch of float datapaths to the float engine."""
import numpy as np
import pytest

from fxsim.datapath import Accumulator, Datapath, Order, OutputStage, Requant
from fxsim.formats import Fixed
from fxsim.modes import Overflow, Rounding
from fxsim.result import bits_needed


def test_strings_and_aliases_are_parsed():
    dp = Datapath(a="int8", b="uint8", accumulator=Accumulator("Q19.4", overflow="saturate", rounding="half_even"),
                  order="tree", product="int<12>")
    assert dp.a == Fixed(8, 0, True) and dp.b == Fixed(8, 0, False)
    assert dp.accumulator.fmt == Fixed(24, 4) and dp.accumulator.overflow is Overflow.SATURATE
    assert dp.accumulator.rounding is Rounding.HALF_EVEN
    assert dp.order == Order("tree") and dp.product == Fixed(12, 0)
    assert Datapath(accumulator="int16").accumulator == Accumulator("int16")
    assert dp.is_integer


def test_printing_reads_like_the_hardware():
    dp = Datapath(a="int8", b="int8", a_zero_point=3, accumulator=Accumulator("int24", overflow="saturate"),
                  order=Order("chunked", lanes=4),
                  output=OutputStage(requant=Requant.dyadic(1234, 20), activation="relu", fmt="int8"))
    assert str(dp) == ("Datapath: int8 x int8 (zero points 3, 0) -> exact product -> int24 acc, saturate after every "
                       "add, align floor, chunked over 4 lanes, sequential combine -> bias preloaded -> requant "
                       "dyadic x1234 >> 20 (half_even), zero point 0, clamp relu, out int8 (saturate)")
    assert "adder tree, level widths [20, 24]" in str(Order("tree", level_bits=(20, 24)))


def test_frozen_and_replace():
    dp = Datapath()
    with pytest.raises(Exception):
        dp.a = "int4"
    assert dp.replace(a="int4").a == Fixed(4, 0)
    assert dp == Datapath()


@pytest.mark.parametrize("make,message", [
    (lambda: Accumulator("int16", overflow="ieee"), "accumulator overflow must be wrap, saturate"),
    (lambda: Accumulator("int16", overflow="bogus"), "accumulator overflow"),
    (lambda: Accumulator("int99"), "accumulator format"),
    (lambda: Order("zigzag"), "order must be one of"),
    (lambda: Order("chunked", lanes=1), "order='chunked' needs lanes >= 2"),
    (lambda: Order("tree", level_bits=(1,)), "level_bits\\[0\\] must be an integer in 2..64"),
    (lambda: OutputStage(activation="gelu"), "activation must be None, 'relu' or a \\(lo, hi\\) pair"),
    (lambda: OutputStage(fmt="e4m3"), "output format must be a fixed-point/integer format"),
    (lambda: Datapath(a_zero_point=1.5), "a_zero_point must be an integer code, got 1.5"),
    (lambda: Datapath(zero_point_bits=80), "zero_point_bits must be an integer in 2..64"),
    (lambda: Datapath(product_rounding="sideways"), "product_rounding"),
    (lambda: Accumulator("fp32", random_bits=99), "random_bits must be an integer in 1..62"),
])
def test_bad_descriptions_raise_clear_errors(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_engine_refusals_name_the_problem():
    from fxsim.ops.gemm import gemm
    with pytest.raises(ValueError, match="stochastic' is not supported by the integer engine"):
        gemm(np.ones((1, 1)), np.ones((1, 1)), Datapath(accumulator=Accumulator("int16", rounding="stochastic")))
    with pytest.raises(ValueError, match="unsigned 64-bit accumulator"):
        gemm(np.ones((1, 1)), np.ones((1, 1)), Datapath(accumulator=Accumulator("uint64")))
    with pytest.raises(ValueError, match="a_zero_point=200 is outside int8"):
        gemm(np.ones((1, 1)), np.ones((1, 1)), Datapath(a_zero_point=200))
    with pytest.raises(ValueError, match="output format Q5.2|output format .* has 2 fractional bits"):
        gemm(np.ones((1, 1)), np.ones((1, 1)), Datapath(output=OutputStage(fmt=Fixed(8, 2))))


def test_float_datapaths_are_representable_and_go_to_the_float_engine(monkeypatch):
    dp = Datapath(a="e4m3", b="e4m3", accumulator=Accumulator("fp32", overflow="ieee", rounding="stochastic",
                                                              random_bits=12, seed=7, flush_subnormals=True),
                  fused=True)
    assert not dp.is_integer
    assert "every add rounded stochastic, 12 random bits, flush subnormals" in str(dp)
    calls = {}
    import fxsim.ops.gemm
    monkeypatch.setattr(fxsim.ops.gemm, "float_gemm", lambda A, B, datapath, bias=None, trace=None:
                        calls.setdefault("args", (A, B, datapath, bias)))
    from fxsim.ops.gemm import gemm
    gemm(np.ones((1, 1)), np.ones((1, 1)), dp, bias=np.zeros(1))
    assert calls["args"][2] is dp


def test_bits_needed_by_hand():
    # [0, 127] fits 8 signed bits; [-129, 0] needs 9; 2**62 needs 64; unsigned [0, 255] needs 8
    assert bits_needed([127, 0, 2 ** 62], [0, -129, 0], True).tolist() == [8, 9, 64]
    assert bits_needed([255], [0], False).tolist() == [8]
    assert bits_needed([255], [-1], False).tolist() == [9]


# ---- one default per kind of register ------------------------------------------------------------
def test_float_accumulator_defaults_to_round_nearest_even_and_overflow_to_inf():
    from fxsim.datapath import register_defaults
    from fxsim.engines.floating import float_gemm
    acc = Accumulator("fp32")
    assert (acc.rounding, acc.overflow) == (Rounding.HALF_EVEN, Overflow.IEEE) == register_defaults("fp32")
    dp = Datapath(a="bf16", b="bf16", accumulator=acc)
    assert "every add rounded half_even" in str(dp) and "overflow ieee" in str(dp)
    # 1*1 + 2**-30*(-1): the exact sum 1 - 2**-30 rounds to nearest in FP32, which is 1.0 (floor would give
    # the next float32 below 1, 1 - 2**-24)
    r = float_gemm(np.array([[1.0, 2.0 ** -30]]), np.array([[1.0], [-1.0]]), dp)
    assert r.values[0, 0] == 1.0
    # FP16 overflows to inf, as IEEE adders do
    big = float_gemm(np.array([[60000.0, 60000.0]]), np.ones((2, 1)), Datapath(a="fp16", b="fp16",
                                                                             accumulator=Accumulator("fp16")))
    assert big.values[0, 0] == np.inf


def test_integer_registers_keep_their_defaults_and_spec_agrees():
    from fxsim.workflows.spec import build_datapath
    acc = Accumulator("int24")
    assert (acc.rounding, acc.overflow) == (Rounding.FLOOR, Overflow.WRAP)
    for fmt in ("fp32", "int24", "bf16"):
        assert build_datapath({"accumulator": {"format": fmt}}, {}).accumulator == Accumulator(fmt)
    dp = Datapath(a="e4m3", b="e4m3", product="fp16", accumulator="fp32")
    assert (dp.product_rounding, dp.product_overflow) == (Rounding.HALF_EVEN, Overflow.IEEE)
    dp = Datapath(product="int12")
    assert (dp.product_rounding, dp.product_overflow) == (Rounding.FLOOR, Overflow.WRAP)


@pytest.mark.parametrize("make,message", [
    (lambda: Accumulator("fp32", overflow="wrap"), "accumulator overflow must be ieee, saturate or error .* got wrap"),
    (lambda: Accumulator("bf16", overflow="saturate_zero"), "floating-point register"),
    (lambda: Datapath(a="e4m3", b="e4m3", product="fp16", product_overflow="wrap", accumulator="fp32"),
     "product overflow must be ieee, saturate or error"),
    (lambda: Accumulator("int32", random_bits=8), "random_bits=8 does not apply to a fixed-point accumulator"),
    (lambda: Accumulator("int32", seed=3), "seed=3 does not apply"),
    (lambda: Accumulator("int32", flush_subnormals=True), "flush_subnormals=True does not apply"),
    (lambda: Accumulator("fp32", flush_subnormals="false"), "flush_subnormals must be true or false"),
    (lambda: Datapath(fused=True), "fused=True applies to float accumulators"),
    (lambda: Datapath(a="e4m3", b="e4m3", accumulator="fp32", fused="no"), "fused must be true or false"),
])
def test_options_that_do_not_apply_to_a_register_are_errors(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()
