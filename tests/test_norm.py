"""Batch norm: folded inference against integer arithmetic, the 1/sqrt units against plain-integer
references, and training forward/backward against their formulas."""
from fractions import Fraction
import math

import numpy as np
import pytest

from fxsim.ops.norm import (BatchNormConfig, batchnorm_backward, batchnorm_inference, batchnorm_train_forward,
                            fold_batchnorm, rsqrt)
from fxsim.quantize import quantize
from tests.reference_quantize import round_fraction
from fxsim.modes import Rounding


def _split(v):
    e = math.floor(math.log2(v) / 2)
    return v / 4.0 ** e, e


def newton_ref(v, frac, iterations):
    m, e = _split(v)
    one = 1 << frac
    mc = math.floor(Fraction(m) * one)
    seeds = [round_fraction(Fraction(1 / math.sqrt(1 + 0.75 * (i + 0.5))) * one, Rounding.HALF_EVEN) for i in range(4)]
    y = seeds[min(((mc - one) * 4) // (3 * one), 3)]
    for _ in range(iterations):
        y2 = (y * y) >> frac
        t = (mc * y2) >> frac
        y = (y * (3 * one - t)) >> (frac + 1)
    return Fraction(y, one) * Fraction(2) ** -e


def lut_ref(v, frac, lut_bits):
    m, e = _split(v)
    one, n = 1 << frac, 1 << lut_bits
    mc = math.floor(Fraction(m) * one)
    table = [round_fraction(Fraction(1 / math.sqrt(1.0 + 3.0 * i / n)) * one, Rounding.HALF_EVEN) for i in range(n + 1)]
    pos = (mc - one) * n
    idx = min(pos // (3 * one), n - 1)
    rem = pos - idx * 3 * one
    y = table[idx] + ((table[idx + 1] - table[idx]) * rem) // (3 * one)
    return Fraction(y, one) * Fraction(2) ** -e


V = [0.013, 0.25, 0.5, 1.0, 1.7, 2.0, 3.7, 3.999, 17.0, 1000.0]


@pytest.mark.parametrize("frac,iters", [(12, 2), (16, 3), (20, 4)])
def test_newton_rsqrt_is_the_integer_algorithm_and_converges(frac, iters):
    got = rsqrt(np.array(V), method="newton", frac=frac, iterations=iters)
    for v, g in zip(V, got):
        assert Fraction(g) == newton_ref(v, frac, iters)
        if iters >= 3:
            assert abs(g * math.sqrt(v) - 1) < 2.0 ** -(frac - 4)


@pytest.mark.parametrize("frac,bits", [(12, 3), (16, 5)])
def test_lut_rsqrt_is_the_integer_algorithm(frac, bits):
    got = rsqrt(np.array(V), method="lut", frac=frac, lut_bits=bits)
    for v, g in zip(V, got):
        assert Fraction(g) == lut_ref(v, frac, bits)
        assert abs(g * math.sqrt(v) - 1) < 0.02


def test_float_rsqrt_rounds_to_the_stated_format():
    got = rsqrt(np.array(V), method="float", fmt="bf16")
    assert np.array_equal(got, quantize(1 / np.sqrt(np.array(V)), "bf16"))


def test_folded_inference_batch_norm_is_integer_requantization():
    rng = np.random.default_rng(0)
    acc = rng.integers(-20000, 20000, (2, 3, 4, 4))
    gamma, beta = np.array([1.0, 0.5, 2.0]), np.array([0.1, -0.2, 0.0])
    mean, var = np.array([0.3, -0.1, 0.05]), np.array([0.5, 1.5, 0.2])
    rq, bias = fold_batchnorm(gamma, beta, mean, var, 1e-5, in_scale=2 ** -12, out_scale=2 ** -4)
    out = batchnorm_inference(acc, rq, bias, "int8")
    for c in range(3):
        M, n = int(rq.multiplier[c]), int(rq.shift[c])
        for v, o in zip(acc[:, c].ravel(), out[:, c].ravel()):
            want = round_fraction(Fraction((int(v) + int(bias[c])) * M, 2 ** n), Rounding.HALF_EVEN)
            assert o == max(-128, min(127, want))
    real = (gamma[None, :, None, None] * (acc * 2 ** -12 - mean[None, :, None, None]) /
            np.sqrt(var[None, :, None, None] + 1e-5) + beta[None, :, None, None]) / 2 ** -4
    inside = np.abs(real) < 120
    assert np.max(np.abs(out[inside] - real[inside])) <= 1.0


CFG = BatchNormConfig(x_fmt="Q7.8", acc="int40", stat_fmt="fp32", rsqrt_fmt="fp32", out_fmt="fp32", grad_fmt="fp32")


def _formula(x, g, b, dy):
    mu = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    xh = (x - mu) / np.sqrt(var + 1e-5)
    y = xh * g[None, :, None, None] + b[None, :, None, None]
    n = x.size / x.shape[1]
    dyg = dy * g[None, :, None, None]
    dx = 1 / np.sqrt(var + 1e-5) / n * (n * dyg - dyg.sum(axis=(0, 2, 3), keepdims=True)
                                       - xh * (dyg * xh).sum(axis=(0, 2, 3), keepdims=True))
    return y, dx, (dy * xh).sum(axis=(0, 2, 3)), dy.sum(axis=(0, 2, 3))


def test_training_batch_norm_forward_and_backward_match_the_formula():
    rng = np.random.default_rng(1)
    x = quantize(rng.normal(1, 2, (4, 3, 5, 5)), "Q7.8")
    g, b = np.array([1.0, 0.5, 2.0]), np.array([0.0, 1.0, -1.0])
    dy = rng.normal(0, 1, x.shape)
    y, cache, st = batchnorm_train_forward(x, g, b, CFG)
    dx, dg, db = batchnorm_backward(dy, cache, CFG)
    ry, rdx, rdg, rdb = _formula(x, g, b, dy)
    assert np.max(np.abs(y - ry)) < 1e-5 and np.max(np.abs(dx - rdx)) < 1e-5
    assert np.max(np.abs(dg - rdg)) < 1e-4 and np.max(np.abs(db - rdb)) < 1e-4
    # the channel sums are exact: Q7.8 inputs into a 40-bit accumulator
    assert np.array_equal(st["mean"], quantize(x.sum(axis=(0, 2, 3)) * quantize(np.array(1 / 100), "fp32"), "fp32"))


def test_low_precision_batch_norm_stays_close_and_range_bn_approximates_std():
    rng = np.random.default_rng(2)
    x = quantize(rng.normal(0, 3, (8, 2, 6, 6)), "Q7.8")
    g, b = np.ones(2), np.zeros(2)
    low = BatchNormConfig(stat_fmt="fp16", rsqrt_method="newton", rsqrt_frac=12, out_fmt="bf16", grad_fmt="bf16")
    y, _, _ = batchnorm_train_forward(x, g, b, low)
    ry = _formula(x, g, b, np.zeros_like(x))[0]
    assert np.max(np.abs(y - ry)) < 0.05
    yr, _, st = batchnorm_train_forward(x, g, b, BatchNormConfig(range_bn=True))
    # Banner et al. 2018: for Gaussian data 0.325·sigma <= C(n)·range <= 2·sigma, C(n) = 1/sqrt(2 ln n)
    ratio = np.sqrt(st["var"]) / x.std(axis=(0, 2, 3))
    assert np.all((ratio >= 0.325) & (ratio <= 2.0))


@pytest.mark.parametrize("stat,out,grad,method", [("fp16", "bf16", "bf16", "newton"), ("bf16", "fp16", "fp16", "lut"),
                                                  ("fp32", "fp16", "e5m2", "newton")])
def test_low_precision_batch_norm_is_bit_exact_against_a_fraction_reference(stat, out, grad, method):
    from tests.reference_training import batchnorm_ref
    rng = np.random.default_rng(3)
    x = quantize(rng.normal(0.5, 3, (3, 2, 5, 3)), "Q7.8")           # n = 45: 1/n is not a power of two
    g, b = quantize(np.array([0.8, -1.3]), "bf16"), quantize(np.array([0.1, -0.7]), "bf16")
    dy = rng.normal(0, 1, x.shape)
    cfg = BatchNormConfig(x_fmt="Q7.8", acc="int40", stat_fmt=stat, rsqrt_method=method, rsqrt_frac=12,
                          out_fmt=out, grad_fmt=grad)
    y, cache, _ = batchnorm_train_forward(x, g, b, cfg)
    dx, dg, db = batchnorm_backward(dy, cache, cfg)
    unit = (lambda v: newton_ref(v, 12, 3)) if method == "newton" else (lambda v: lut_ref(v, 12, 4))
    ry, rdx, rdg, rdb = batchnorm_ref(x, g, b, dy, cfg, unit)
    assert np.array_equal(y, ry) and np.array_equal(dx, rdx)
    assert np.array_equal(dg, rdg) and np.array_equal(db, rdb)
