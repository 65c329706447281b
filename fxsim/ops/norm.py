"""Batch norm as an FPGA computes it.

- Inference: folded into the preceding integer layer's output stage as a per-channel dyadic scale and an
  accumulator-grid bias (``fold_batchnorm``), applied by ``batchnorm_inference``.
- Training: every per-channel reduction (Σx, Σ(x−μ)², and backward Σdy, Σdy·x̂) through a MAC datapath
  in the accumulator the configuration names (rounding or overflow after every addition, in its stated
  order), the mean and variance rounded to a stated statistics format, 1/sqrt(var + eps) by a stated
  hardware method (``rsqrt``: a float unit, Newton-Raphson in fixed point, or a lookup table with linear
  interpolation), and every elementwise step rounded once to its stated format. Range batch norm (Banner
  et al., NeurIPS 2018) replaces the standard deviation by C(n)·(max − min), C(n) = 1/sqrt(2 ln n) (for
  Gaussian data the paper bounds this between 0.325σ and 2σ).
- Backward: dx = r·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·γ (never scaled by n), dγ = Σ dy·x̂, dβ = Σ dy.
- ``batchnorm_error_bound``: a rigorous bound on the distance from exact batch norm (docs/training.md).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fxsim.errors import InvalidArgument
from fxsim.datapath import Accumulator, Datapath, Order, Requant
from fxsim.formats import Fixed, Float, parse_format
from fxsim.modes import Overflow, Rounding
from fxsim.quantize import quantize, quantize_to_codes
from fxsim.engines.integer import plan_integer
from fxsim.engines.output_stage import register_overflow, requantize
from fxsim.ops.gemm import gemm

__all__ = ["fold_batchnorm", "batchnorm_inference", "rsqrt", "BatchNormConfig", "batchnorm_train_forward",
           "batchnorm_backward", "batchnorm_error_bound"]


# ---------------------------------------------------------------------------------------------- inference
def fold_batchnorm(gamma, beta, mean, var, eps, *, in_scale, out_scale, multiplier_bits=15):
    """Fold y = γ(x − μ)/sqrt(σ² + ε) + β, with x = acc·in_scale and y = code·out_scale, into
    code = round((acc + b_c) · M_c / 2**n_c) per channel c. Returns (Requant per channel, b_c)."""
    gamma, beta, mean, var = (np.asarray(v, dtype=np.float64) for v in (gamma, beta, mean, var))
    std = np.sqrt(var + eps)
    scale = gamma * in_scale / (std * out_scale)
    if np.any(scale <= 0):
        raise InvalidArgument("folding needs gamma > 0 (a negative gamma flips the sign: fold it into the weights)")
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
        raise InvalidArgument("rsqrt needs v > 0")
    if method == "float":
        return quantize(1.0 / np.sqrt(v), fmt)
    if not 4 <= frac <= 24:
        raise InvalidArgument(f"frac must be in 4..24 for the integer rsqrt units, got {frac}")
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
        raise InvalidArgument(f"method must be 'float', 'newton' or 'lut', got {method!r}")
    return np.ldexp(y.astype(np.float64), -frac) * 2.0 ** (-e).astype(np.float64)


# ---------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class BatchNormConfig:
    """Formats of a training batch norm. The defaults, in this one place, are what training hardware uses
    for realistic n (thousands to millions of values per channel):

    - ``x_fmt`` (inputs, ``"Q7.8"``) and ``acc`` (``"int40"``): the channel sum Σx in a wide fixed-point
      register with x's binary point (exact up to 2**24 values of 16 bits);
    - ``stat_acc`` (``"fp32"``): the accumulator of Σ(x−μ)²; ``grad_acc`` (``"fp32"``): the accumulator
      of dβ = Σdy and dγ = Σdy·x̂ -- FP32 accumulators, as GPU and accelerator batch-norm units use with
      FP16/BF16 data, whatever the narrow formats below;
    - ``order`` (``"tree"``): the order of every reduction's additions (a pairwise adder tree, depth
      ⌈log2 n⌉; any ``fxsim.datapath.Order``);
    - ``stat_fmt`` (mean, variance, 1/n and the backward's per-channel means), ``rsqrt_method`` (+ its
      fmt/frac), ``out_fmt`` (every product on the way to y), ``grad_fmt`` (dy and the backward's
      per-element arithmetic), ``range_bn``, ``eps``.

    An accumulator given as a format gets its register type's defaults (``fxsim.datapath.register_defaults``,
    what hardware does): a Float one rounds every addition to nearest even and overflows to inf; a Fixed one
    wraps (floor alignment). Pass an ``fxsim.datapath.Accumulator`` to state other modes (e.g.
    ``Accumulator("int40", overflow="saturate")``).
    """

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
    stat_acc: object = "fp32"
    grad_acc: object = "fp32"
    order: object = "tree"

    def __post_init__(self):
        for name in ("acc", "stat_acc", "grad_acc"):
            _accumulator(getattr(self, name), name)
        if not isinstance(self.order, (str, Order)):
            raise InvalidArgument(f"order must be an fxsim.datapath.Order or one of 'sequential', 'tree', "
                             f"got {self.order!r}")
        if isinstance(self.order, str):
            object.__setattr__(self, "order", Order(self.order))
        if self.rsqrt_method not in ("float", "newton", "lut"):
            raise InvalidArgument(f"rsqrt_method must be 'float', 'newton' or 'lut', got {self.rsqrt_method!r}")


def _accumulator(spec, name="acc") -> Accumulator:
    """An Accumulator as stated, or the hardware behaviour of a bare format (class docstring)."""
    if isinstance(spec, Accumulator):
        return spec
    return Accumulator(parse_format(spec, argument=name))     # the register type's defaults


# exact rounding of one float64 operation: float64 gives the nearest double f of the exact result v and an
# exactly representable residual v - f (TwoSum, Dekker's TwoProduct); rounding f to the target is then the
# correct rounding of v, except where f is a midpoint of the target's grid and v is not, when v's side wins
def _two_sum(a, b):
    """(fl(a + b), its exact error); where the sum is not finite (an overflowed register upstream) the
    error term is NaN and ``_rn`` ignores it, so that arithmetic raises no warning."""
    with np.errstate(invalid="ignore", over="ignore"):
        s = a + b
        bb = s - a
        return s, (a - (s - bb)) + (b - bb)


def _split(a):
    c = 134217729.0 * a                     # 2**27 + 1
    hi = c - (c - a)
    return hi, a - hi


def _two_prod(a, b):
    """(fl(a * b), its exact error), as ``_two_sum`` for non-finite products."""
    with np.errstate(invalid="ignore", over="ignore"):
        p = a * b
        ah, al = _split(a)
        bh, bl = _split(b)
        return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _rn(f, err, fmt):
    """The exact value f + err rounded (half-even) to ``fmt``, for float64 f = fl(f + err)."""
    f, err = np.broadcast_arrays(np.asarray(f, dtype=np.float64), np.asarray(err, dtype=np.float64))
    q = np.array(quantize(f, fmt, rounding="half_even"), dtype=np.float64)
    fix = (err != 0) & np.isfinite(f)
    if fix.any():
        fi = f[fix]
        lo, hi = quantize(fi, fmt, rounding="floor"), quantize(fi, fmt, rounding="ceil")
        mid = (lo != hi) & (fi - lo == hi - fi)
        if mid.any():
            idx = np.flatnonzero(fix)[mid]
            toward = np.where(err.flat[idx] > 0, np.inf, -np.inf)
            q.flat[idx] = quantize(np.nextafter(f.flat[idx], toward), fmt, rounding="half_even")
    return q


def _mul(a, b, fmt):
    return _rn(*_two_prod(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)), fmt)


def _add(a, b, fmt):
    return _rn(*_two_sum(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)), fmt)


def _inv(n, fmt):
    """1/n rounded to fmt: the residual's sign is that of 1 - f*n, computed exactly."""
    f = 1.0 / n
    p, e = _two_prod(np.float64(f), np.float64(n))
    return _rn(f, (1.0 - p) - e, fmt)


def _sig_bits(fmt) -> int:
    return fmt.man + 1 if isinstance(fmt, Float) else fmt.bits


def _fused(a_fmt, b_fmt) -> bool:
    """Whether the reduction's products are exact (a fused multiply-add): operands whose significands
    total at most 53 bits (every pair of formats up to FP32)."""
    return _sig_bits(a_fmt) + _sig_bits(b_fmt) <= 53


def _never_overflows(dp: Datapath, n: int) -> bool:
    """Whether the formats alone prove that no register of integer datapath ``dp`` overflows on any
    n-term sum (exact products aligned by a left shift; n * max|a| * max|b| within every register's
    range, tree levels included): then its overflow counts are all 0, without the per-output kernel."""
    if not dp.is_integer:
        return False
    plan = plan_integer(dp)
    return plan.simple and (n * plan.operand_bound("a") * plan.operand_bound("b") << plan.L) <= plan.limit


def _reduce(a, b, a_fmt, b_fmt, acc: Accumulator, order):
    """Per-column dot products Σ a[:, c]·b[:, c] through a MAC datapath (b None: the constant 1, an int2
    operand): exact products, the accumulator's rounding and overflow after every addition, in ``order``.
    Operands too wide for exact products (``_fused``) go through a multiplier that rounds each product to
    the accumulator's format (half-even). Returns (values (C,), overflow events)."""
    n, C = a.shape
    if b is not None and not _fused(a_fmt, b_fmt):
        if not isinstance(acc.fmt, Float) or acc.rounding != Rounding.HALF_EVEN:
            raise InvalidArgument(f"products of {a_fmt} x {b_fmt} operands are rounded to the accumulator's format "
                             f"before the addition: that needs a Float accumulator rounding half_even, got {acc}")
        a, a_fmt, b = _mul(a, b, acc.fmt), acc.fmt, None
    if b is None:
        dp = Datapath(a=a_fmt, b="int2", accumulator=acc, order=order)
        if _never_overflows(dp, n):   # the exact shortcuts give the values; no kernel (nor its compilation)
            return gemm(np.ascontiguousarray(a.T), np.ones((n, 1)), dp, stats=False).values[:, 0], 0
        r = gemm(np.ascontiguousarray(a.T), np.ones((n, 1)), dp)
        return r.values[:, 0], int(r.overflow_count.sum())
    dp = Datapath(a=a_fmt, b=b_fmt, accumulator=acc, order=order)
    out, ovf = np.empty(C), 0
    for c in range(C):
        r = gemm(np.ascontiguousarray(a[:, c][None, :]), np.ascontiguousarray(b[:, c][:, None]), dp)
        out[c] = r.values[0, 0]
        ovf += int(r.overflow_count.sum())
    return out, ovf


def _sum_accumulator(cfg, x_fmt) -> Accumulator:
    """``cfg.acc``; a Fixed one given as a format takes the inputs' binary point ("int40" on Q7.8 inputs
    is a 40-bit register with 8 fractional bits)."""
    acc = _accumulator(cfg.acc, "acc")
    if (not isinstance(cfg.acc, Accumulator) and isinstance(acc.fmt, Fixed) and isinstance(x_fmt, Fixed)
            and acc.fmt.frac != x_fmt.frac):
        acc = replace(acc, fmt=Fixed(acc.fmt.bits, x_fmt.frac, acc.fmt.signed))
    return acc


def _to_rows(x):
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])


def _from_rows(m, shape):
    N, C, H, W = shape
    return m.reshape(N, H, W, C).transpose(0, 3, 1, 2)


def batchnorm_train_forward(x, gamma, beta, cfg: BatchNormConfig = BatchNormConfig()):
    """Training-mode batch norm of x (N, C, H, W) (values on cfg.x_fmt's grid). Returns (y, cache, stats).

    Per channel, n = N·H·W values; R_f(v) is v rounded once, half-even, to format f (every elementwise
    operation is rounded exactly once from its exact result):
    s = Σx in ``acc``; 1/n → R_stat; μ = R_stat(s·(1/n)); d = R_stat(x − μ); S = Σd·d in ``stat_acc``
    (exact products); σ² = R_stat(S·(1/n)); r = rsqrt(σ² + ε) by the stated unit; x̂ = R_out(d·r);
    y = R_out(R_out(x̂·γ) + β). Range batch norm replaces σ by R_stat(C(n)·R_stat(max − min))."""
    x_fmt, stat, out = parse_format(cfg.x_fmt), parse_format(cfg.stat_fmt), parse_format(cfg.out_fmt)
    xm = _to_rows(np.asarray(x, dtype=np.float64))
    n, C = xm.shape
    gamma = np.broadcast_to(np.asarray(gamma, dtype=np.float64), (C,))
    beta = np.broadcast_to(np.asarray(beta, dtype=np.float64), (C,))
    inv_n = _inv(n, stat)
    s, ovf = _reduce(xm, None, x_fmt, None, _sum_accumulator(cfg, x_fmt), cfg.order)
    mean = _mul(s, inv_n, stat)
    d = _add(xm, -mean, stat)                              # centred values in the statistics format
    if cfg.range_bn:
        c_n = quantize(np.array(1.0 / np.sqrt(2.0 * np.log(n))), stat)
        sigma = _mul(c_n, _add(xm.max(axis=0), -xm.min(axis=0), stat), stat)
        var = _mul(sigma, sigma, stat)
    else:
        s2, ovf2 = _reduce(d, d, stat, stat, _accumulator(cfg.stat_acc, "stat_acc"), cfg.order)
        ovf += ovf2
        var = _mul(s2, inv_n, stat)
    rstd = rsqrt(var + cfg.eps, method=cfg.rsqrt_method, fmt=cfg.rsqrt_fmt, frac=cfg.rsqrt_frac)
    xhat = _mul(d, rstd, out)
    y = _add(_mul(xhat, gamma, out), beta, out)
    cache = (xhat, rstd, gamma, x.shape)
    return _from_rows(y, x.shape), cache, {"mean": mean, "var": var, "rstd": rstd, "overflows": ovf}


def batchnorm_backward(dy, cache, cfg: BatchNormConfig = BatchNormConfig()):
    """dx, dgamma, dbeta of batchnorm_train_forward: dx = r·(g − mean(g) − x̂·mean(g·x̂)), g = dy·γ, in the
    form that never scales by n (no n·g: nothing overflows where the exact gradient is finite).

    q = R_grad(dy); dβ = Σq and dγ = Σq·x̂ in ``grad_acc`` (exact products; returned as that register
    holds them); per channel in the statistics format m_g = R_stat(R_stat(γ·dβ)·(1/n)) and
    m_gx = R_stat(R_stat(γ·dγ)·(1/n)); per element in the gradient format g = R_grad(q·γ),
    t = R_grad(g − m_g), t = R_grad(t − R_grad(x̂·m_gx)), dx = R_grad(t·r). Returns (dx, dgamma, dbeta)."""
    xhat, rstd, gamma, shape = cache
    gf, stat, out = parse_format(cfg.grad_fmt), parse_format(cfg.stat_fmt), parse_format(cfg.out_fmt)
    dym = _to_rows(np.asarray(dy, dtype=np.float64))
    n = dym.shape[0]
    acc = _accumulator(cfg.grad_acc, "grad_acc")
    q = quantize(dym, gf, rounding="half_even")
    dbeta, _ = _reduce(q, None, gf, None, acc, cfg.order)
    dgamma, _ = _reduce(q, xhat, gf, out, acc, cfg.order)
    inv_n = _inv(n, stat)
    m_g = _mul(_mul(gamma, dbeta, stat), inv_n, stat)
    m_gx = _mul(_mul(gamma, dgamma, stat), inv_n, stat)
    g = _mul(q, gamma, gf)
    t = _add(g, -m_g, gf)
    t = _add(t, -_mul(xhat, m_gx, gf), gf)
    dx = _mul(t, rstd, gf)
    return _from_rows(dx, shape), dgamma, dbeta


# ---------------------------------------------------------------------------------------------- error bound
_NEAREST = {Rounding.HALF_EVEN, Rounding.HALF_UP, Rounding.HALF_DOWN, Rounding.HALF_AWAY, Rounding.HALF_TOWARD_ZERO,
            Rounding.HALF_ODD}


def _unit(fmt, rounding=Rounding.HALF_EVEN, flush=False):
    """(u, η): one rounding of v to ``fmt`` errs by at most u·|v| + η (no overflow)."""
    near = rounding in _NEAREST
    if isinstance(fmt, Fixed):
        return 0.0, fmt.resolution * (0.5 if near else 1.0)
    if fmt.radix != 2:
        raise InvalidArgument(f"the batch-norm error bound covers radix-2 formats, got {fmt}")
    u = 2.0 ** -(fmt.man + (1 if near else 0))
    if flush or not (fmt.subnormals and fmt.man > 0):
        return u, fmt.min_normal
    tiny = fmt.min_subnormal * (0.5 if near else 1.0)
    return u, tiny


def _rerr(w, fmt):
    """Bound on |w - v| for w = R_fmt(v) (half-even), from w alone; inf where w may have overflowed (the
    format's extreme values, inf, NaN: saturated or special, v is unknown)."""
    u, eta = _unit(fmt)
    w = np.asarray(w, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = (w < fmt.max) & (w > fmt.min)
    return np.where(ok, (u * np.abs(w) + eta) / (1.0 - u), np.inf)


def _depth(order: Order, n: int) -> int:
    """Most roundings any term of an n-term reduction goes through in ``order`` (the first addition to
    the empty register rounds too: products are exact, not on the accumulator's grid)."""
    if order.kind == "sequential":
        return n
    if order.kind == "tree":
        return max(1, int(np.ceil(np.log2(max(n, 1))))) + 1
    L = order.lanes
    m = -(-n // L)
    return m + (L - 1 if order.combine == "sequential" else int(np.ceil(np.log2(L)))) + 1


def _reduction_error(total_abs, n, acc: Accumulator, order: Order, term_fmts, ovf):
    """Bound on |computed - exact| of an n-term reduction whose exact terms have Σ|t| = total_abs."""
    if ovf:
        return np.full(np.shape(total_abs), np.inf)
    f = acc.fmt
    rounded_products = len(term_fmts) == 2 and not _fused(*term_fmts)
    if isinstance(f, Fixed):     # Kulisch register: exact unless a product has bits below its LSB
        if all(isinstance(t, Fixed) for t in term_fmts) and sum(t.frac for t in term_fmts) <= f.frac:
            return np.zeros(np.shape(total_abs))
        return np.full(np.shape(total_abs), n * f.resolution)
    u, eta = _unit(f, acc.rounding, acc.flush_subnormals)
    D = _depth(order, n) + int(rounded_products)
    if D * u >= 0.5:
        return np.full(np.shape(total_abs), np.inf)
    g = D * u / (1.0 - D * u)
    return g * total_abs + n * eta * (1.0 + g)


def batchnorm_error_bound(x, gamma, beta, dy=None, cfg: BatchNormConfig = BatchNormConfig(), *, rsqrt_error=None):
    """A rigorous bound on the distance of ``batchnorm_train_forward`` / ``batchnorm_backward`` from exact
    batch norm (real arithmetic, r = 1/sqrt(σ² + ε) with the exact batch variance), evaluated a posteriori
    from the computed intermediates: a running error analysis of each step (docs/training.md). Returns
    {"y": (N, C, H, W), and with dy: "dx" (N, C, H, W), "dgamma" (C,), "dbeta" (C,)} of absolute bounds;
    inf where a register overflowed or the analysis does not close (e.g. a reduction too long for its
    accumulator). ``rsqrt_error``: the relative error of the 1/sqrt unit, needed for the "newton" and
    "lut" units (the "float" unit's is its format's rounding plus float64's). Range batch norm is not
    covered."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):   # inf/NaN stand for "no bound"
        return _batchnorm_error_bound(x, gamma, beta, dy, cfg, rsqrt_error)


def _batchnorm_error_bound(x, gamma, beta, dy, cfg, rsqrt_error):
    if cfg.range_bn:
        raise InvalidArgument("batchnorm_error_bound covers standard batch norm, not range_bn=True")
    x_fmt, stat, out = parse_format(cfg.x_fmt), parse_format(cfg.stat_fmt), parse_format(cfg.out_fmt)
    xm = _to_rows(np.asarray(x, dtype=np.float64))
    n, C = xm.shape
    gamma = np.broadcast_to(np.asarray(gamma, dtype=np.float64), (C,))
    beta = np.broadcast_to(np.asarray(beta, dtype=np.float64), (C,))
    a_x, a_s = _sum_accumulator(cfg, x_fmt), _accumulator(cfg.stat_acc, "stat_acc")
    # the forward pass, step by step, with each step's error bound
    inv_n = _inv(n, stat)
    e_inv = _rerr(inv_n, stat)
    s, ovf = _reduce(xm, None, x_fmt, None, a_x, cfg.order)
    e_s = _reduction_error(np.abs(xm).sum(axis=0), n, a_x, cfg.order, (x_fmt, parse_format("int2")), ovf)
    mean = _mul(s, inv_n, stat)
    e_mu = e_s * inv_n + (np.abs(s) + e_s) * e_inv + _rerr(mean, stat)
    d = _add(xm, -mean, stat)
    e_d = e_mu + _rerr(d, stat)
    s2, ovf2 = _reduce(d, d, stat, stat, a_s, cfg.order)
    e_s2 = (_reduction_error((d * d).sum(axis=0), n, a_s, cfg.order, (stat, stat), ovf2)
            + (e_d * (2 * np.abs(d) + 3 * e_d)).sum(axis=0))
    var = _mul(s2, inv_n, stat)
    e_v = _rerr(var, stat) + e_s2 * inv_n + (s2 + e_s2) * e_inv
    rstd = rsqrt(var + cfg.eps, method=cfg.rsqrt_method, fmt=cfg.rsqrt_fmt, frac=cfg.rsqrt_frac)
    if cfg.rsqrt_method == "float":
        rho, e_abs = 5 * 2.0 ** -53, _rerr(rstd, parse_format(cfg.rsqrt_fmt))
    elif rsqrt_error is None:
        raise InvalidArgument(f"rsqrt_method={cfg.rsqrt_method!r}: pass rsqrt_error, the unit's relative error bound")
    else:
        rho, e_abs = float(rsqrt_error) + 2.0 ** -52, 0.0
    r0 = (rstd + e_abs) / (1.0 - rho)                      # >= 1/sqrt(var + eps), the unit's exact target
    kappa = e_v / ((var + cfg.eps) * (1 - 2.0 ** -52))
    with np.errstate(invalid="ignore", divide="ignore"):
        grow = np.where(kappa < 1, 1.0 / np.sqrt(np.maximum(1.0 - kappa, 0.0)) - 1.0, np.inf)
    e_r = e_abs + rho * r0 + r0 * grow
    xhat = _mul(d, rstd, out)
    e_xh = _rerr(xhat, out) + e_d * rstd + (np.abs(d) + e_d) * e_r
    p = _mul(xhat, gamma, out)
    y = _add(p, beta, out)
    e_y = _rerr(y, out) + _rerr(p, out) + np.abs(gamma) * e_xh
    slack = 1.0 + 2.0 ** -40                                # the float64 evaluation of these bounds
    res = {"y": _from_rows(_inf_for_nan(e_y) * slack, x.shape)}
    if dy is None:
        return res
    gf = parse_format(cfg.grad_fmt)
    a_g = _accumulator(cfg.grad_acc, "grad_acc")
    dym = _to_rows(np.asarray(dy, dtype=np.float64))
    q = quantize(dym, gf, rounding="half_even")
    e_q = _rerr(q, gf)
    dbeta, o1 = _reduce(q, None, gf, None, a_g, cfg.order)
    dgamma, o2 = _reduce(q, xhat, gf, out, a_g, cfg.order)
    e_db = e_q.sum(axis=0) + _reduction_error(np.abs(q).sum(axis=0), n, a_g, cfg.order, (gf, parse_format("int2")), o1)
    e_dg = (_reduction_error(np.abs(q * xhat).sum(axis=0), n, a_g, cfg.order, (gf, out), o2)
            + (e_q * np.abs(xhat) + np.abs(dym) * e_xh).sum(axis=0))

    def channel_mean(total, e_total):
        sg = _mul(gamma, total, stat)
        m = _mul(sg, inv_n, stat)
        e_sg = _rerr(sg, stat) + np.abs(gamma) * e_total
        return m, _rerr(m, stat) + e_sg * inv_n + np.abs(gamma) * (np.abs(total) + e_total) * e_inv

    m_g, e_mg = channel_mean(dbeta, e_db)
    m_gx, e_mgx = channel_mean(dgamma, e_dg)
    g = _mul(q, gamma, gf)
    e_g = _rerr(g, gf) + np.abs(gamma) * e_q
    t1 = _add(g, -m_g, gf)
    e_t1 = _rerr(t1, gf) + e_g + e_mg
    w = _mul(xhat, m_gx, gf)
    e_w = _rerr(w, gf) + e_xh * np.abs(m_gx) + (np.abs(xhat) + e_xh) * e_mgx
    t2 = _add(t1, -w, gf)
    e_t2 = _rerr(t2, gf) + e_t1 + e_w
    dx = _mul(t2, rstd, gf)
    e_dx = _rerr(dx, gf) + e_t2 * rstd + (np.abs(t2) + e_t2) * e_r
    res.update(dx=_from_rows(_inf_for_nan(e_dx) * slack, x.shape), dgamma=_inf_for_nan(e_dg) * slack,
               dbeta=_inf_for_nan(e_db) * slack)
    return res


def _inf_for_nan(e):
    """A bound is NaN only where an infinite error term (an overflowed register: a statistic at inf) met
    a zero or an inf - inf in the float64 evaluation; no finite bound is proved there: inf."""
    return np.where(np.isnan(e), np.inf, e)
