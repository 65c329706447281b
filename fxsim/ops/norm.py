"""Batch norm as an FPGA computes it.

- Inference: folded into the preceding integer layer's output stage as a per-channel dyadic scale and an
  accumulator-grid bias (``fold_batchnorm``), applied by ``batchnorm_inference``.
- Training: per-channel sums accumulated through a stated datapath (overflow after every addition), the
  mean and variance rounded to a stated statistics format, 1/sqrt(var + eps) by a stated hardware method
  (``rsqrt``: a float unit, Newton-Raphson in fixed point, or a lookup table with linear interpolation),
  and every product rounded to the stated output format. Range batch norm (Banner et al., NeurIPS 2018)
  replaces the standard deviation by C(n)·(max − min), C(n) = 1/sqrt(2 ln n) (for Gaussian data the
  paper bounds this between 0.325σ and 2σ).
- Backward: dx = rstd/n · (n·g − Σg − x̂·Σ(g·x̂)) with g = dy·γ, dγ = Σ dy·x̂, dβ = Σ dy, each reduction
  through the same accumulator datapath and each product rounded to the gradient format.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..datapath import Accumulator, Datapath, Requant
from ..formats import Fixed, Float, parse_format
from ..modes import Overflow
from ..quantize import quantize, quantize_to_codes
from ..requant import register_overflow, requantize
from .gemm import gemm

__all__ = ["fold_batchnorm", "batchnorm_inference", "rsqrt", "BatchNormConfig", "batchnorm_train_forward",
           "batchnorm_backward"]


# ---------------------------------------------------------------------------------------------- inference
def fold_batchnorm(gamma, beta, mean, var, eps, *, in_scale, out_scale, multiplier_bits=15):
    """Fold y = γ(x − μ)/sqrt(σ² + ε) + β, with x = acc·in_scale and y = code·out_scale, into
    code = round((acc + b_c) · M_c / 2**n_c) per channel c. Returns (Requant per channel, b_c)."""
    gamma, beta, mean, var = (np.asarray(v, dtype=np.float64) for v in (gamma, beta, mean, var))
    std = np.sqrt(var + eps)
    scale = gamma * in_scale / (std * out_scale)
    if np.any(scale <= 0):
        raise ValueError("folding needs gamma > 0 (a negative gamma flips the sign: fold it into the weights)")
    mult, shift = [], []
    for s in scale:
        r = Requant.from_scale(float(s), bits=multiplier_bits)
        mult.append(r.multiplier)
        shift.append(r.shift)
    bias = np.rint((beta - gamma * mean / std) / (gamma * in_scale / std)).astype(np.int64)
    return Requant.dyadic(np.array(mult), np.array(shift)), bias


def batchnorm_inference(acc, requant: Requant, bias, out_fmt="int8", *, acc_bits=32):
    """Apply a folded batch norm to int64 accumulators (N, C, H, W): bias add in an ``acc_bits`` register
    (saturating), per-channel dyadic requantization, saturation to ``out_fmt``. Returns output codes."""
    out_fmt = parse_format(out_fmt)
    acc = np.asarray(acc, dtype=np.int64)
    C = acc.shape[1]
    shape = (1, C) + (1,) * (acc.ndim - 2)
    v = register_overflow(acc + np.asarray(bias, dtype=np.int64).reshape(shape), acc_bits, True, Overflow.SATURATE)
    rq = Requant.dyadic(np.asarray(requant.multiplier).reshape(shape), np.asarray(requant.shift).reshape(shape),
                        requant.rounding)
    q = requantize(v, rq, acc_bits)
    return register_overflow(q, out_fmt.bits, out_fmt.signed, Overflow.SATURATE)


# ---------------------------------------------------------------------------------------------- 1/sqrt
def rsqrt(v, *, method="float", fmt="fp16", frac=16, iterations=3, lut_bits=4):
    """1/sqrt(v) for v > 0 as a hardware unit computes it.

    - ``float``: a float unit: float64 sqrt and divide (each correctly rounded), then rounded to ``fmt``.
    - ``newton``: fixed point with ``frac`` fractional bits: v = m·4**e with m in [1, 4) truncated to the
      grid; the seed is 1/sqrt of the midpoint of m's quarter of [1, 4) (a 4-entry table, half-even to
      ``frac`` bits), then y ← y·(3 − m·y²)/2 ``iterations`` times, every product truncated (floor) to
      ``frac`` bits, in exact integer arithmetic; the result is y·2**-e.
    - ``lut``: v = m·4**e with m in [1, 4); 1/sqrt(m) from a table of 2**lut_bits + 1 entries (rounded to
      ``frac`` bits) with linear interpolation (floor), times 2**-e.
    """
    v = np.asarray(v, dtype=np.float64)
    if np.any(~(v > 0)):
        raise ValueError("rsqrt needs v > 0")
    if method == "float":
        return quantize(1.0 / np.sqrt(v), fmt)
    if not 4 <= frac <= 24:
        raise ValueError(f"frac must be in 4..24 for the integer rsqrt units, got {frac}")
    e = np.floor(np.log2(v) / 2).astype(np.int64)       # v = m * 4**e, m in [1, 4)
    m = v / 4.0 ** e
    m_codes = quantize_to_codes(m, Fixed(frac + 3, frac, False), rounding="floor")
    one = 1 << frac
    if method == "newton":
        seeds = quantize_to_codes(1.0 / np.sqrt(1.0 + 0.75 * (np.arange(4) + 0.5)), Fixed(frac + 2, frac, False))
        y = seeds[np.minimum(((m_codes - one) * 4) // (3 * one), 3)]
        for _ in range(iterations):
            y2 = (y * y) >> frac
            t = (m_codes * y2) >> frac
            y = (y * (3 * one - t)) >> (frac + 1)
    elif method == "lut":
        n = 1 << lut_bits
        grid = 1.0 + 3.0 * np.arange(n + 1) / n
        table = quantize_to_codes(1.0 / np.sqrt(grid), Fixed(frac + 2, frac, False), rounding="half_even")
        pos = (m_codes - one) * n                          # position in table units, frac bits
        idx = np.minimum(pos // (3 * one), n - 1)
        rem = pos - idx * 3 * one                          # in [0, 3*one)
        y = table[idx] + ((table[idx + 1] - table[idx]) * rem) // (3 * one)
    else:
        raise ValueError(f"method must be 'float', 'newton' or 'lut', got {method!r}")
    return np.ldexp(y.astype(np.float64), -frac) * 2.0 ** (-e).astype(np.float64)


# ---------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class BatchNormConfig:
    """Formats of a training batch norm: ``x_fmt`` (inputs), ``acc`` (the reduction accumulator),
    ``stat_fmt`` (mean, variance, 1/n), ``rsqrt_method`` (+ its fmt/frac), ``out_fmt`` (every product on
    the way to y), ``grad_fmt`` (backward products), ``range_bn``."""

    x_fmt: object = "Q7.8"
    acc: object = "int40"
    stat_fmt: object = "fp32"
    rsqrt_method: str = "float"
    rsqrt_fmt: object = "fp16"
    rsqrt_frac: int = 16
    out_fmt: object = "fp16"
    grad_fmt: object = "fp16"
    range_bn: bool = False
    eps: float = 1e-5


def _channel_sums(xmat, x_fmt, acc):
    """Per-column sums of xmat (n, C) through a MAC datapath: x times the constant 1 (an int2 operand)."""
    acc_fmt = parse_format(acc)
    if isinstance(acc_fmt, Fixed) and isinstance(x_fmt, Fixed) and acc_fmt.frac != x_fmt.frac:
        acc_fmt = Fixed(acc_fmt.bits, x_fmt.frac, acc_fmt.signed)
    dp = Datapath(a=x_fmt, b="int2", accumulator=Accumulator(acc_fmt, overflow="saturate" if isinstance(acc_fmt, Fixed) else "ieee",
                                                             rounding="floor" if isinstance(acc_fmt, Fixed) else "half_even"))
    r = gemm(np.ascontiguousarray(xmat.T), np.ones((xmat.shape[0], 1)), dp)
    return r.values[:, 0], int(r.overflow_count.sum())


def _to_rows(x):
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])


def _from_rows(m, shape):
    N, C, H, W = shape
    return m.reshape(N, H, W, C).transpose(0, 3, 1, 2)


def batchnorm_train_forward(x, gamma, beta, cfg: BatchNormConfig = BatchNormConfig()):
    """Training-mode batch norm of x (N, C, H, W) (values on cfg.x_fmt's grid). Returns (y, cache, stats)."""
    x_fmt, stat, out = parse_format(cfg.x_fmt), parse_format(cfg.stat_fmt), parse_format(cfg.out_fmt)
    xm = _to_rows(np.asarray(x, dtype=np.float64))
    n = xm.shape[0]
    inv_n = quantize(np.array(1.0 / n), stat)
    s, ovf = _channel_sums(xm, x_fmt, cfg.acc)
    mean = quantize(s * inv_n, stat)
    d = quantize(xm - mean, stat)                          # centred values in the statistics format
    if cfg.range_bn:
        c_n = quantize(np.array(1.0 / np.sqrt(2.0 * np.log(n))), stat)
        sigma = quantize(c_n * quantize(xm.max(axis=0) - xm.min(axis=0), stat), stat)
        var = quantize(sigma * sigma, stat)
    else:
        sq = quantize(d * d, stat)
        sq_fmt = stat
        s2, ovf2 = _channel_sums(sq, sq_fmt, stat if isinstance(stat, Float) else cfg.acc)
        ovf += ovf2
        var = quantize(s2 * inv_n, stat)
    rstd = rsqrt(var + cfg.eps, method=cfg.rsqrt_method, fmt=cfg.rsqrt_fmt, frac=cfg.rsqrt_frac)
    xhat = quantize(d * rstd, out)
    y = quantize(quantize(xhat * gamma, out) + beta, out)
    cache = (xhat, rstd, gamma, x.shape)
    return _from_rows(y, x.shape), cache, {"mean": mean, "var": var, "rstd": rstd, "overflows": ovf}


def batchnorm_backward(dy, cache, cfg: BatchNormConfig = BatchNormConfig()):
    """dx, dgamma, dbeta of batchnorm_train_forward, every product rounded to cfg.grad_fmt and every
    reduction through the accumulator datapath (in the gradient format when it is a float)."""
    xhat, rstd, gamma, shape = cache
    gf = parse_format(cfg.grad_fmt)
    dym = _to_rows(np.asarray(dy, dtype=np.float64))
    n = dym.shape[0]
    red_acc = gf if isinstance(gf, Float) else cfg.acc
    dy_q = quantize(dym, gf)
    dbeta, _ = _channel_sums(dy_q, gf, red_acc)
    dyx = quantize(dy_q * xhat, gf)
    dgamma, _ = _channel_sums(dyx, gf, red_acc)
    g = quantize(dy_q * gamma, gf)
    sum_g = quantize(dbeta * gamma, gf)
    sum_gx = quantize(dgamma * gamma, gf)
    inner = quantize(quantize(n * g, gf) - sum_g, gf)
    inner = quantize(inner - quantize(xhat * sum_gx, gf), gf)
    dx = quantize(inner * quantize(rstd / n, gf), gf)
    return _from_rows(dx, shape), dgamma, dbeta
