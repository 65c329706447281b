"""Batch norm: folded inference against integer arithmetic, the 1/sqrt units against plain-integer
references, and training forward/backward against their formulas."""
from fractions import Fraction
import math

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from fxsim.datapath import Order
from fxsim.ops.norm import (BatchNormConfig, batchnorm_backward, batchnorm_error_bound, batchnorm_inference,
                            batchnorm_train_forward, fold_batchnorm, rsqrt)
from fxsim.ops.norm import _depth
from fxsim.quantize import quantize
from fxsim.formats import parse_format
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


@pytest.mark.parametrize("stat,out,grad,method,more", [
    ("fp16", "bf16", "bf16", "newton", {}), ("bf16", "fp16", "fp16", "lut", {}),
    ("fp32", "fp16", "e5m2", "newton", {}),
    ("fp16", "bf16", "bf16", "newton", dict(stat_acc="fp16", grad_acc="bf16", order="sequential")),
    ("fp32", "fp16", "fp16", "lut", dict(stat_acc="bf16", grad_acc="fp16", order=Order("chunked", lanes=4))),
    ("bf16", "fp16", "bf16", "newton", dict(stat_acc="e5m2", grad_acc="e4m3", order="tree"))])
def test_low_precision_batch_norm_is_bit_exact_against_a_fraction_reference(stat, out, grad, method, more):
    from tests.reference_training import batchnorm_ref
    rng = np.random.default_rng(3)
    x = quantize(rng.normal(0.5, 3, (3, 2, 5, 3)), "Q7.8")           # n = 45: 1/n is not a power of two
    g, b = quantize(np.array([0.8, -1.3]), "bf16"), quantize(np.array([0.1, -0.7]), "bf16")
    dy = rng.normal(0, 1, x.shape)
    cfg = BatchNormConfig(x_fmt="Q7.8", acc="int40", stat_fmt=stat, rsqrt_method=method, rsqrt_frac=12,
                          out_fmt=out, grad_fmt=grad, **more)
    y, cache, _ = batchnorm_train_forward(x, g, b, cfg)
    dx, dg, db = batchnorm_backward(dy, cache, cfg)
    unit = (lambda v: newton_ref(v, 12, 3)) if method == "newton" else (lambda v: lut_ref(v, 12, 4))
    ry, rdx, rdg, rdb = batchnorm_ref(x, g, b, dy, cfg, unit)
    assert np.array_equal(y, ry) and np.array_equal(dx, rdx)
    assert np.array_equal(dg, rdg) and np.array_equal(db, rdb)


# ------------------------------------------------------------------ realistic sizes: the cases
def _pm_one(n, shape):
    return np.where(np.arange(n) % 2 == 0, 1.0, -1.0).reshape(shape)


@pytest.mark.parametrize("stat,shape", [("fp16", (1, 1, 64, 64)), ("bf16", (2, 1, 128, 128))])
def test_the_variance_is_accumulated_in_the_reduction_accumulator_not_the_statistics_format(stat, shape):
    """±1 over n values has variance 1. Summed in FP16 the squares stall at 2048 (variance 0.5 at
    n = 4096); in BF16 at 256 (1/8 at n = 32768). The FP32 reduction accumulator holds every sum."""
    x = _pm_one(int(np.prod(shape)), shape)
    _, _, st = batchnorm_train_forward(x, np.ones(1), np.zeros(1), BatchNormConfig(stat_fmt=stat))
    assert st["var"].tolist() == [1.0] and st["mean"].tolist() == [0.0]


def test_parameter_gradients_are_accumulated_in_the_gradient_accumulator():
    """dβ of dy = 0.5 over 4096 values is 2048; a BF16 running sum stalls at 256 (the issue saw 255)."""
    x = _pm_one(4096, (1, 1, 64, 64))
    cfg = BatchNormConfig(grad_fmt="bf16")
    _, cache, _ = batchnorm_train_forward(x, np.ones(1), np.zeros(1), cfg)
    dx, dg, db = batchnorm_backward(np.full(x.shape, 0.5), cache, cfg)
    assert db.tolist() == [2048.0] and dg.tolist() == [0.0]
    assert np.all(dx == 0.0)           # a constant gradient has no component through the normalisation


@pytest.mark.parametrize("shape", [(1, 1, 128, 128), (2, 1, 128, 128)])
def test_a_constant_gradient_gives_a_zero_finite_input_gradient(shape):
    """The default configuration, dY = 4 everywhere: the exact dX is 0. Forming n·g in FP16 gave inf
    (n·4 = 65536 > 65504); the centred form gives 0 where Σx̂ is exactly 0 and a finite value within the
    error bound otherwise."""
    n = int(np.prod(shape))
    x = _pm_one(n, shape) * 1.5
    _, cache, _ = batchnorm_train_forward(x, np.ones(1), np.zeros(1))
    dx, _, db = batchnorm_backward(np.full(shape, 4.0), cache)
    assert np.all(dx == 0.0) and db.tolist() == [4.0 * n]
    rng = np.random.default_rng(4)
    x = quantize(rng.normal(0.3, 2, shape), "Q7.8")
    _, cache, _ = batchnorm_train_forward(x, np.ones(1), np.zeros(1))
    dy = np.full(shape, 4.0)
    dx, _, _ = batchnorm_backward(dy, cache)
    assert np.all(np.isfinite(dx))
    assert np.all(np.abs(dx) <= batchnorm_error_bound(x, np.ones(1), np.zeros(1), dy)["dx"])


def _referee(x, gamma, beta, dy, eps):
    """Exact batch norm of Q7.8 inputs x and dy on a 2**-10 grid: exact integer channel sums, the
    irrational 1/sqrt(var + eps) and the per-channel constants in 256-bit MPFR (gmpy2), then per element
    y = A·x + B and dx = P·dy - Q - x̂·S in float64 with their evaluation error returned as a slack (8
    float64 roundings of the terms' magnitudes; far below the bounds under test)."""
    gmpy2 = pytest.importorskip("gmpy2")
    ctx = gmpy2.get_context()
    ctx.precision = 256
    N, C, H, W = x.shape
    n = N * H * W
    xc = np.rint(x * 256).astype(np.int64)
    gc = np.rint(dy * 1024).astype(np.int64)
    assert np.array_equal(xc / 256.0, x) and np.array_equal(gc / 1024.0, dy)
    out = {k: np.zeros(x.shape) for k in ("y", "dx", "y_slack", "dx_slack")}
    out["dgamma"], out["dbeta"] = np.zeros(C), np.zeros(C)
    u = 2.0 ** -53
    for c in range(C):
        xs, gs = xc[:, c].ravel(), gc[:, c].ravel()
        S1, S2 = int(xs.sum()), int((xs * xs).sum())                  # |S2| < 2**50: exact in int64
        G1, GX = int(gs.sum()), int((gs * xs).sum())
        mu = Fraction(S1, 256 * n)
        var = Fraction(n * S2 - S1 * S1, 256 * 256 * n * n)
        r = gmpy2.rec_sqrt(gmpy2.mpfr(var + Fraction(eps)))
        g, b = gmpy2.mpfr(Fraction(float(gamma[c]))), gmpy2.mpfr(Fraction(float(beta[c])))
        dbeta = gmpy2.mpfr(Fraction(G1, 1024))
        dgamma = r * (gmpy2.mpfr(Fraction(GX, 1024 * 256)) - gmpy2.mpfr(mu) * dbeta)
        mean_g, mean_gx = g * dbeta / n, g * dgamma / n
        A, B = float(g * r), float(b - g * gmpy2.mpfr(mu) * r)
        xv, dv = x[:, c], dy[:, c]
        out["y"][:, c] = A * xv + B
        out["y_slack"][:, c] = 8 * u * (np.abs(A * xv) + abs(B))
        rr, rm = float(r), float(r * gmpy2.mpfr(mu))
        xh = rr * xv - rm
        xh_slack = 8 * u * (np.abs(rr * xv) + abs(rm))
        P, Q, S = float(r * g), float(r * mean_g), float(r * mean_gx)
        out["dx"][:, c] = P * dv - Q - xh * S
        out["dx_slack"][:, c] = 8 * u * (np.abs(P * dv) + abs(Q) + np.abs(xh * S)) + xh_slack * abs(S)
        out["dgamma"][c], out["dbeta"][c] = float(dgamma), float(dbeta)
    return out


BOUND_CFGS = {
    "default": BatchNormConfig(),
    "fp16 stats, bf16 out and grads": BatchNormConfig(stat_fmt="fp16", rsqrt_fmt="fp16", out_fmt="bf16",
                                                      grad_fmt="bf16"),
    "fp32 throughout, sequential": BatchNormConfig(stat_fmt="fp32", rsqrt_fmt="fp32", out_fmt="fp32",
                                                   grad_fmt="fp32", order="sequential"),
    "bf16 stats, fp16 grads, chunked": BatchNormConfig(stat_fmt="bf16", rsqrt_fmt="bf16", grad_fmt="fp16",
                                                       order=Order("chunked", lanes=16)),
}


def _check_bound(shape, cfg, seed, mean=0.7, std=2.5):
    rng = np.random.default_rng(seed)
    x = quantize(rng.normal(mean, std, shape), "Q7.8")
    dy = np.clip(np.rint(rng.normal(0, 1, shape) * 1024), -8000, 8000) / 1024
    C = shape[1]
    gamma = quantize(rng.uniform(0.5, 1.5, C) * rng.choice([-1, 1], C), "bf16")
    beta = quantize(rng.normal(0, 0.5, C), "bf16")
    y, cache, _ = batchnorm_train_forward(x, gamma, beta, cfg)
    dx, dg, db = batchnorm_backward(dy, cache, cfg)
    bound = batchnorm_error_bound(x, gamma, beta, dy, cfg)
    ref = _referee(x, gamma, beta, dy, cfg.eps)
    err_y, err_dx = np.abs(y - ref["y"]), np.abs(dx - ref["dx"])
    assert np.all(err_y <= bound["y"] + ref["y_slack"])
    assert np.all(err_dx <= bound["dx"] + ref["dx_slack"])
    assert np.all(np.abs(dg - ref["dgamma"]) <= bound["dgamma"] * (1 + 2.0 ** -40))
    assert np.all(np.abs(db - ref["dbeta"]) <= bound["dbeta"] * (1 + 2.0 ** -40))
    return y, dx, bound, ref


@pytest.mark.parametrize("name", sorted(BOUND_CFGS))
@pytest.mark.parametrize("shape", [(1, 2, 4, 4), (5, 3, 3, 3), (4, 2, 16, 16), (16, 1, 16, 16), (2, 1, 128, 128)])
def test_batch_norm_stays_within_its_error_bound_of_exact_batch_norm(name, shape):
    """n = 16 .. 32768 per channel against a high-precision referee; the bound is useful, not vacuous:
    within a few units of the coarsest rounding involved (a format's, or the reduction's worst case),
    relative to the values' scale."""
    cfg = BOUND_CFGS[name]
    y, dx, bound, ref = _check_bound(shape, cfg, seed=sum(shape))
    # the worst case of an n-term reduction: depth x the accumulator's unit roundoff (FP32 here)
    u = max([2.0 ** -(parse_format(f).man + 1) for f in (cfg.stat_fmt, cfg.rsqrt_fmt, cfg.out_fmt, cfg.grad_fmt)]
            + [_depth(cfg.order, int(np.prod(shape)) // shape[1]) * 2.0 ** -24])
    assert np.max(bound["y"]) <= 16 * u * (np.max(np.abs(ref["y"])) + 1)
    assert np.max(bound["dx"]) <= 64 * u * (np.max(np.abs(ref["dx"])) + 1)


def test_batch_norm_error_bound_holds_for_a_million_values():
    """n = 10**6 in one channel, the default configuration (FP32 reduction accumulators, adder trees)."""
    y, dx, bound, ref = _check_bound((1, 1, 1000, 1000), BatchNormConfig(), seed=9)
    assert np.max(bound["y"]) <= 16 * 2.0 ** -11 * (np.max(np.abs(ref["y"])) + 1)
    assert np.all(np.isfinite(dx))


def test_the_error_bound_function_refuses_what_it_does_not_cover():
    x = quantize(np.random.default_rng(0).normal(0, 1, (2, 1, 4, 4)), "Q7.8")
    with pytest.raises(ValueError, match="range_bn"):
        batchnorm_error_bound(x, np.ones(1), np.zeros(1), cfg=BatchNormConfig(range_bn=True))
    with pytest.raises(ValueError, match="rsqrt_error"):
        batchnorm_error_bound(x, np.ones(1), np.zeros(1), cfg=BatchNormConfig(rsqrt_method="newton"))


def test_configuration_errors_name_the_field():
    with pytest.raises(ValueError, match="stat_acc"):
        BatchNormConfig(stat_acc="fp17")
    with pytest.raises(ValueError, match="order"):
        BatchNormConfig(order="zigzag")


FLOATS = st.sampled_from(["fp16", "bf16", "fp32", "e5m2", "e4m3"])


@settings(max_examples=30)
@given(N=st.integers(1, 4), C=st.integers(1, 2), H=st.integers(2, 6), W=st.integers(2, 6), seed=st.integers(0, 2**16),
       stat=st.sampled_from(["fp16", "bf16", "fp32"]), out=FLOATS, grad=FLOATS,
       stat_acc=st.sampled_from(["fp16", "bf16", "fp32"]), grad_acc=st.sampled_from(["fp16", "bf16", "fp32"]),
       order=st.sampled_from(["sequential", "tree", Order("chunked", lanes=3)]), mean=st.floats(-20, 20),
       std=st.floats(0.05, 30))
@example(N=4, C=1, H=5, W=5, seed=0, stat="fp16", out="fp16", grad="fp16", stat_acc="fp16", grad_acc="fp16",
         order="sequential", mean=0.0, std=27.0)      # the sum of squares overflows fp16: no finite bound, not NaN
def test_the_error_bound_holds_for_random_configurations(N, C, H, W, seed, stat, out, grad, stat_acc, grad_acc,
                                                         order, mean, std):
    cfg = BatchNormConfig(stat_fmt=stat, rsqrt_fmt=stat, out_fmt=out, grad_fmt=grad, stat_acc=stat_acc,
                          grad_acc=grad_acc, order=order)
    _check_bound((N, C, H, W), cfg, seed, mean=mean, std=std)


@settings(max_examples=100)
@given(fmt=st.sampled_from(["fp16", "bf16", "fp32", "e5m2"]), k=st.integers(-3000, 3000), e=st.integers(-8, 8),
       tiny=st.integers(-80, -56), sign=st.sampled_from([-1, 1]), b=st.floats(-1e6, 1e6, allow_subnormal=False))
def test_each_step_is_rounded_once_from_its_exact_result(fmt, k, e, tiny, sign, b):
    """The elementwise steps round the exact sum or product once, also where float64's own rounding lands
    on a midpoint of the target grid (a midpoint plus or minus a tiny amount): against Fractions."""
    from fxsim.ops.norm import _add, _mul
    from fxsim.modes import Overflow
    from tests.reference_float_datapath import round_fraction as round_float
    f = parse_format(fmt)
    mid = math.ldexp(2 * k + 1, e - f.man - 1) + math.ldexp(1.0, e)   # a midpoint of f's grid near 2**e
    d = sign * math.ldexp(1.0, tiny + e)
    want = round_float(Fraction(mid) + Fraction(d), f, Rounding.HALF_EVEN, Overflow.IEEE)[0]
    assert _add(np.array([mid]), np.array([d]), f)[0] == want
    want = round_float(Fraction(mid) * Fraction(b), f, Rounding.HALF_EVEN, Overflow.IEEE)[0]
    got = _mul(np.array([mid]), np.array([b]), f)[0]
    assert got == want or (math.isnan(got) and math.isnan(want))


def test_the_error_bound_is_infinite_where_a_register_saturates():
    """A Q3.4 output saturates at 7.9375: there the bound says nothing (inf), elsewhere it holds."""
    x = quantize(np.random.default_rng(3).normal(0, 1, (2, 1, 6, 6)), "Q7.8")
    beta = np.array([7.0])
    cfg = BatchNormConfig(out_fmt="Q3.4")
    y, _, _ = batchnorm_train_forward(x, np.ones(1), beta, cfg)
    b = batchnorm_error_bound(x, np.ones(1), beta, cfg=cfg)["y"]
    assert np.any(y == 7.9375) and np.all(np.isinf(b[y == 7.9375])) and np.all(np.isfinite(b[y < 7.9375]))


@pytest.mark.parametrize("acc, exact_path", [("int40", True), ("int14", False)])
def test_channel_sums_the_formats_prove_exact_skip_the_cycle_accurate_kernel(monkeypatch, acc, exact_path):
    """Σx in a register the formats prove wide enough (Q7.8 inputs, 288 per channel, int40): values from the
    exact shortcut and 0 overflows, no cycle-accurate kernel; a narrow one (int14) runs the kernel and
    counts. Either way the same values and counts as gemm with statistics."""
    from fxsim.datapath import Accumulator, Datapath
    from fxsim.ops import norm
    from fxsim.ops.gemm import gemm
    calls = []
    real = norm.gemm

    def spy(*args, **kwargs):
        r = real(*args, **kwargs)
        calls.append(r.path)
        return r

    monkeypatch.setattr(norm, "gemm", spy)
    x = quantize(np.random.default_rng(4).normal(0, 60, (8, 3, 6, 6)), "Q7.8")
    xm = norm._to_rows(x)
    a = norm._sum_accumulator(BatchNormConfig(acc=acc), parse_format("Q7.8"))
    s, ovf = norm._reduce(xm, None, parse_format("Q7.8"), None, a, Order("tree"))
    assert (calls == ["exact-blas"]) == exact_path and len(calls) == 1
    full = real(np.ascontiguousarray(xm.T), np.ones((xm.shape[0], 1)),
                Datapath(a="Q7.8", b="int2", accumulator=a, order=Order("tree")))
    assert np.array_equal(s, full.values[:, 0]) and ovf == int(full.overflow_count.sum())
    assert (ovf == 0) if exact_path else (ovf > 0)
