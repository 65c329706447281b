"""Block-scaled formats: the OCP MX scale rule (integers and ml_dtypes casts as oracles), NVFP4's two-level
scale, block floating point, and MX GEMM against a Fraction reference."""
from fractions import Fraction
import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fxsim.datapath import Accumulator
from fxsim.formats import BF16, E4M3, FP16, FP32, Float
from fxsim.modes import Overflow, Rounding
from fxsim.engines.block import (MXFP4, MXFP6_E2M3, MXFP6_E3M2, MXFP8_E4M3, MXFP8_E5M2, MXINT8, NVFP4, BlockFormat,
                      block_quantize, bfp, mx_gemm)
from fxsim._kernels.random import random_bits
from tests.reference_float_datapath import floor_log2, round_fraction, round_to_integer

ML_DTYPES = {"mxfp8_e4m3": ml_dtypes.float8_e4m3fn, "mxfp8_e5m2": ml_dtypes.float8_e5m2,
             "mxfp6_e2m3": ml_dtypes.float6_e2m3fn, "mxfp6_e3m2": ml_dtypes.float6_e3m2fn,
             "mxfp4": ml_dtypes.float4_e2m1fn}
EMAX = {"mxfp8_e4m3": 8, "mxfp8_e5m2": 15, "mxfp6_e2m3": 2, "mxfp6_e3m2": 4, "mxfp4": 2, "mxint8": 0}


def ocp_reference(block_values, name):
    """OCP MX v1.0 6.3 for one block, with Python integers and ml_dtypes' cast: (scale, elements)."""
    amax = max(abs(Fraction(v)) for v in block_values)
    e = -127 if amax == 0 else max(-127, min(127, floor_log2(amax) - EMAX[name]))
    scale = Fraction(2) ** e
    out = []
    for v in block_values:
        q = Fraction(v) / scale
        if name == "mxint8":
            n = round_to_integer(q * 64, Rounding.HALF_EVEN)
            out.append(max(-127, min(127, n)) / 64)
        else:
            dt = ML_DTYPES[name]
            mx = float(ml_dtypes.finfo(dt).max)
            qf = float(q)
            assert Fraction(qf) == q
            out.append(float(np.array(min(max(qf, -mx), mx)).astype(dt).astype(np.float64)))
    return float(scale), out


@settings(max_examples=60)
@given(fmt=st.sampled_from([MXFP8_E4M3, MXFP8_E5M2, MXFP6_E2M3, MXFP6_E3M2, MXFP4, MXINT8]),
       rows=st.integers(1, 3), K=st.integers(1, 70), seed=st.integers(0, 2 ** 32),
       spread=st.sampled_from([0, 4, 40]), axis=st.sampled_from([0, 1]))
def test_ocp_scale_and_elements_match_the_spec_rule_and_ml_dtypes(fmt, rows, K, seed, spread, axis):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, K)) * np.exp2(rng.integers(-spread, spread + 1, size=(rows, K)))
    x[rng.random((rows, K)) < 0.1] = 0.0
    xin = x if axis == 1 else x.T
    q = block_quantize(xin, fmt, axis=axis)
    el = q.elements if axis == 1 else q.elements.T
    sc = q.scales if axis == 1 else q.scales.T
    for r in range(rows):
        for b in range(-(-K // 32)):
            blk = x[r, 32 * b:32 * (b + 1)]
            scale, elems = ocp_reference(blk, fmt.name)
            assert sc[r, b] == scale
            assert np.array_equal(el[r, 32 * b:32 * (b + 1)], elems)
    assert np.array_equal(q.dequantize(), xin * 0 + q.dequantize())   # shape preserved
    assert q.dequantize().shape == xin.shape


def test_ocp_scale_hand_values():
    # amax 1.0 in E4M3: 2**(0 - 8); elements 1.0 / 2**-8 = 256 (representable)
    q = block_quantize(np.array([1.0, -0.5, 0.0]), MXFP8_E4M3)
    assert q.scales.tolist() == [2.0 ** -8]
    assert q.elements.tolist() == [256.0, -128.0, 0.0]
    # amax 500: floor(log2 500) = 8 -> scale 1; 500 saturates to 448 (the spec clamps normals)
    q = block_quantize(np.array([500.0, 1.0]), MXFP8_E4M3)
    assert q.scales.tolist() == [1.0] and q.elements.tolist() == [448.0, 1.0]
    # E2M1: amax 7 -> scale 2**(2 - 2) = 1, 7 saturates to 6; 0.25 ties to 0 (even)
    q = block_quantize(np.array([7.0, 0.25, 0.75]), MXFP4)
    assert q.elements.tolist() == [6.0, 0.0, 1.0]
    # an all-zero block gets the smallest scale 2**-127; a block with inf gets the NaN scale (0xFF)
    q = block_quantize(np.array([0.0] * 32 + [np.inf] + [1.0] * 31), MXFP8_E4M3)
    assert q.scales[0] == 2.0 ** -127 and math.isnan(q.scales[1])
    assert q.scale_codes().tolist() == [0, 0xFF]
    # MXINT8: 1.6 fixed point: amax 3 -> scale 2**1, 3 / 2 = 1.5 = 96/64
    q = block_quantize(np.array([3.0, -3.0, 0.01]), MXINT8)
    assert q.scales.tolist() == [2.0] and q.elements.tolist() == [1.5, -1.5, 0.0]
    assert q.element_codes().tolist() == [96, 256 - 96, 0]


def test_nvfp4_two_level_scale_hand_values():
    # tensor amax 2688 = 6 * 448 -> tensor scale 1; block amax 2688 -> block scale 448 (E4M3 max)
    x = np.array([2688.0, 1344.0, 0.0, -448.0] + [0.0] * 12 + [6.0, 3.0] + [0.0] * 14)
    q = block_quantize(x, NVFP4)
    assert q.tensor_scale == 1.0
    assert q.scales.tolist() == [448.0, 1.0]
    assert q.elements[:4].tolist() == [6.0, 3.0, 0.0, -1.0]
    assert q.elements[16:18].tolist() == [6.0, 3.0]
    # tensor scale halves when the tensor amax halves
    assert block_quantize(x / 2, NVFP4).tensor_scale == 0.5


def test_block_floating_point_is_the_same_mechanism():
    f = bfp(4, block=4)    # 4-bit mantissas 1.2 fixed point, shared exponent per 4 values
    q = block_quantize(np.array([1.0, 0.3, -0.8, 0.1]), f)
    assert q.scales.tolist() == [1.0]
    assert q.elements.tolist() == [1.0, 0.25, -0.75, 0.0]
    assert bfp(8, 32).element == MXINT8.element
    with pytest.raises(ValueError, match="mantissa_bits"):
        bfp(1)
    with pytest.raises(ValueError, match="block must be"):
        BlockFormat(E4M3, 0)
    with pytest.raises(ValueError, match="power of two"):
        BlockFormat(E4M3, 32, scale=E4M3)


# ---- MX GEMM against Fractions ---------------------------------------------------------------------
def ref_mx_gemm(qa, qb, acc: Accumulator, seed):
    fmt = acc.fmt
    mode = acc.rounding
    r = acc.random_bits if acc.random_bits is not None else 50 - fmt.man
    ovf = Overflow.IEEE if acc.overflow == Overflow.WRAP else acc.overflow
    M, K = qa.elements.shape
    N = qb.elements.shape[1]
    blk = qa.fmt.block
    out = np.zeros((M, N))
    for i in range(M):
        for j in range(N):
            a = 0.0
            for q in range(qa.scales.shape[1]):
                dot = sum((Fraction(qa.elements[i, k]) * Fraction(qb.elements[k, j])
                           for k in range(q * blk, min((q + 1) * blk, K))), Fraction(0))
                v = dot * Fraction(qa.scales[i, q]) * Fraction(qb.scales[q, j])
                u = int(random_bits(seed, i * N + j, q, r)) if mode == Rounding.STOCHASTIC else None
                if math.isfinite(a):
                    a, _ = round_fraction(Fraction(a) + v, fmt, mode, ovf, u=u, r=r)
            t = Fraction(qa.tensor_scale) * Fraction(qb.tensor_scale)
            if t != 1 and math.isfinite(a):
                u = int(random_bits(seed, i * N + j, 1 << 41, r)) if mode == Rounding.STOCHASTIC else None
                a, _ = round_fraction(Fraction(a) * t, fmt, mode, ovf, u=u, r=r)
            out[i, j] = a
    return out


@settings(max_examples=100)
@given(fmt=st.sampled_from([MXFP8_E4M3, MXFP8_E5M2, MXFP6_E3M2, MXFP4, MXINT8, NVFP4, bfp(6, 8)]),
       acc=st.sampled_from([FP32, BF16, FP16, Float(5, 4)]),
       mode=st.sampled_from([Rounding.HALF_EVEN, Rounding.TOWARD_ZERO, Rounding.CEIL, Rounding.STOCHASTIC]),
       M=st.integers(1, 3), K=st.integers(1, 80), N=st.integers(1, 3), seed=st.integers(0, 2 ** 32),
       spread=st.sampled_from([0, 6, 30]))
def test_mx_gemm_matches_exact_block_dots_then_one_rounding_per_block(fmt, acc, mode, M, K, N, seed, spread):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(M, K)) * np.exp2(rng.integers(-spread, spread + 1, size=(M, K)))
    B = rng.normal(size=(K, N)) * np.exp2(rng.integers(-spread, spread + 1, size=(K, N)))
    sr = {"seed": seed % 1000, "random_bits": 8} if mode == Rounding.STOCHASTIC else {}   # errors otherwise
    accumulator = Accumulator(acc, rounding=mode, **sr)
    qa = block_quantize(A, fmt, axis=1)
    qb = block_quantize(B, fmt, axis=0)
    res = mx_gemm(qa, qb, fmt, accumulator=accumulator)
    ref = ref_mx_gemm(qa, qb, accumulator, seed % 1000)
    same = (res.values == ref) | (np.isnan(res.values) & np.isnan(ref))
    assert np.all(same), (res.values, ref)
    # from real arrays: quantized here the same way
    res2 = mx_gemm(A, B, fmt, accumulator=accumulator)
    assert np.array_equal(res2.values, res.values, equal_nan=True)


def test_mx_gemm_exact_block_dot_survives_e5m2_extremes():
    # E5M2 products span 2**-32 .. 2**31.8: an exact block dot needs the two-limb sum (float64 would lose it)
    a = np.array([[57344.0, 2.0 ** -16, -57344.0]])
    b = np.array([[57344.0], [2.0 ** -16], [57344.0]])
    qa = block_quantize(a, MXFP8_E5M2, axis=1)
    qb = block_quantize(b, MXFP8_E5M2, axis=0)
    assert qa.scales.tolist() == [[1.0]] and qb.scales.tolist() == [[1.0]]
    res = mx_gemm(qa, qb, MXFP8_E5M2, accumulator=Accumulator(FP32, rounding="half_even"))
    assert res.values[0, 0] == 2.0 ** -32      # the big products cancel exactly inside the block


def test_mx_gemm_errors():
    with pytest.raises(ValueError, match="BlockFormat or one of"):
        mx_gemm(np.ones((1, 4)), np.ones((4, 1)), "mxfp9")
    with pytest.raises(ValueError, match="inner dimensions"):
        mx_gemm(np.ones((1, 4)), np.ones((5, 1)))
    with pytest.raises(ValueError, match="Float format"):
        mx_gemm(np.ones((1, 4)), np.ones((4, 1)), accumulator=Accumulator("int32"))
    with pytest.raises(ValueError, match="share the block size"):
        mx_gemm(np.ones((1, 40)), np.ones((40, 1)), MXFP4, NVFP4)
