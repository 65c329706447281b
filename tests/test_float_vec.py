"""The column-vectorised float kernels and the exact-sum shortcut: each path is chosen where intended
(``choose_float_path``) and gives, bit for bit, the registers of the Fraction reference, of MPFR, and of
the per-output scalar kernels (``kernels.float_accum.outputs_*``)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fxsim.datapath import Accumulator, Datapath
from fxsim.engines.floating import choose_float_path, float_config, float_gemm, sum_bound
from fxsim.formats import (BF16, E2M1, E2M3, E3M2, E4M3, E5M2, E8M13, FP4_E3M0, FP4_E3M0_R4, FP16, FP32,
                           INT4, INT8, Float)
from fxsim.modes import Overflow, Rounding
from fxsim._kernels import float_accum as FK
from tests.reference_float_datapath import ref_float_gemm
from tests.test_float_gemm import ORDERS, operand_data, same
from tests.test_float_mpfr import mpfr_add


def scalar_kernel(A, B, dp, bias=None):
    """The per-output reference kernel (one dependent chain per output), called directly."""
    cfg = float_config(dp)
    Av = np.ascontiguousarray(A, dtype=np.float64)
    Bt = np.ascontiguousarray(np.asarray(B, dtype=np.float64).T)
    M, N = Av.shape[0], Bt.shape[0]
    init = np.zeros((M, N))
    post = init
    if bias is not None:
        b = np.broadcast_to(np.asarray(bias, dtype=np.float64), (M, N)).copy()   # writable, as the engine's
        if dp.bias_preload:
            init = b
        post = init if dp.bias_preload else b
    acc = np.empty((M, N))
    nov = np.zeros((M, N), dtype=np.int64)
    rows, cols = (g.ravel().astype(np.int64) for g in np.indices((M, N)))
    FK.OUTPUT_KERNELS[cfg.options.order](Av, Bt, init, post, bias is not None and not dp.bias_preload, *cfg,
                                         rows, cols, acc, nov, np.empty(1))
    return acc, nov


def bits_equal(x, y):
    """Identical float64 bit patterns (the sign of zero and NaN included)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    nan = np.isnan(x) & np.isnan(y)
    return bool(np.all(nan | (x.view(np.int64) == y.view(np.int64))))


def stochastic(rounding, **options):
    """``options`` (random_bits, seed) where ``rounding`` is stochastic; none otherwise (they are errors)."""
    return options if Rounding.parse(rounding) == Rounding.STOCHASTIC else {}


def dp_for(a, b, acc, **kw):
    acc_kw = {k: kw.pop(k) for k in ("rounding", "overflow", "random_bits", "seed", "flush_subnormals") if k in kw}
    acc_kw.setdefault("rounding", "half_even")
    if Rounding.parse(acc_kw["rounding"]) != Rounding.STOCHASTIC:    # random bits are for stochastic rounding
        acc_kw.pop("random_bits", None)
        acc_kw.pop("seed", None)
    return Datapath(a=a, b=b, accumulator=Accumulator(acc, **acc_kw), **kw)


# ---- the chooser ----------------------------------------------------------------------------------
def test_chooser_picks_the_fast_paths_the_formats_allow():
    assert choose_float_path(dp_for(E4M3, E4M3, FP32)) == "fp32-vector"
    assert choose_float_path(dp_for(FP16, FP16, FP32)) == "fp32-vector"          # 11 + 11 <= 24 bits
    assert choose_float_path(dp_for(INT8, INT8, FP32)) == "fp32-vector"
    assert choose_float_path(dp_for(BF16, BF16, FP32)) == "general-vector"        # 2**-133 squared < 2**-149
    assert choose_float_path(dp_for(E4M3, E4M3, FP16)) == "narrow-vector"         # 8 <= 11 bits, 2**-18 >= 2**-24
    assert choose_float_path(dp_for(E4M3, E4M3, BF16)) == "narrow-vector"         # 8 <= 8 bits
    assert choose_float_path(dp_for(FP4_E3M0, E2M1, E5M2)) == "narrow-vector"      # 1 + 2 <= 3 bits
    assert choose_float_path(dp_for(E2M1, E2M1, E5M2)) == "general-vector"        # 2 + 2 > 3 bits
    assert choose_float_path(dp_for(E5M2, E5M2, FP16)) == "general-vector"        # grid 2**-32 < 2**-24
    assert choose_float_path(dp_for(E4M3, E5M2, BF16)) == "narrow-vector"         # 4 + 3 bits, grid 2**-25
    assert choose_float_path(dp_for(E4M3, E4M3, E8M13)) == "general-vector"       # 2p + 2 = 30 > 24
    assert choose_float_path(dp_for(E4M3, E4M3, E4M3)) == "general-vector"        # overflow is NaN, not inf
    assert choose_float_path(dp_for(FP4_E3M0_R4, E4M3, FP32)) == "general-vector"  # radix 4
    for kw in ({"rounding": "stochastic"}, {"rounding": "toward_zero"}, {"overflow": "saturate"},
               {"flush_subnormals": True}, {"product": FP16}):
        expected = "stochastic-vector" if kw.get("rounding") == "stochastic" else "general-vector"
        assert choose_float_path(dp_for(E4M3, E4M3, FP16, **kw)) == expected, kw
        assert choose_float_path(dp_for(E4M3, E4M3, FP32, **kw)) == "general-vector", kw


def test_chooser_takes_the_exact_shortcut_only_when_the_bound_proves_every_sum_exact():
    dp = dp_for(E4M3, E4M3, FP32, rounding="stochastic", random_bits=8, seed=1)
    L = 2.0 ** -18                    # E4M3's grid 2**-9, squared
    assert choose_float_path(dp, bound=2.0 ** 24 * L * 0.99) == "exact-blas"
    assert choose_float_path(dp, bound=2.0 ** 24 * L) == "general-vector"
    assert choose_float_path(dp, bound=1.0, has_bias=True) == "general-vector"
    assert choose_float_path(dp_for(E4M3, E4M3, FP16), bound=2.0 ** -10) == "exact-blas"
    # FP16's quantum is 2**-24 <= 2**-18: fine; flushed subnormals need L >= min_normal (2**-14)
    assert choose_float_path(dp_for(E4M3, E4M3, FP16, flush_subnormals=True), bound=2.0 ** -10) == "general-vector"
    assert choose_float_path(dp_for(INT8, INT8, FP16, flush_subnormals=True), bound=2000.0) == "exact-blas"
    assert choose_float_path(dp_for(INT8, INT8, FP16), bound=2048.0) == "general-vector"    # 2**11 needs 12 bits
    assert choose_float_path(dp_for(INT4, INT4, FP16), bound=2048.0) == "narrow-vector"     # products of 4 + 4 bits
    assert choose_float_path(dp_for(INT8, INT8, FP16, product=FP16), bound=10.0) == "general-vector"


def test_sum_bound_covers_every_partial_sum():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(5, 7))
    B = rng.normal(size=(7, 4))
    bound = sum_bound(A, B)
    assert bound >= (np.abs(A) @ np.abs(B)).max()
    assert sum_bound(A[:, :0], B[:0]) == 0.0
    A[1, 2] = np.inf
    assert sum_bound(A, B) is None
    A[1, 2] = np.nan                     # a NaN in either operand, in any row or column: no bound
    assert sum_bound(A, B) is None and sum_bound(B.T, A.T) is None
    A[1, 2] = 0.0
    B[6, 3] = np.nan
    assert sum_bound(A, B) is None and sum_bound(B.T, A.T) is None


# ---- every path against the references ------------------------------------------------------------
FP32_OPERANDS = [E4M3, E5M2, E2M1, E3M2, E2M3, FP4_E3M0, FP16, INT4, INT8]
NARROW = [(FP16, [E4M3, E2M1, E3M2, E2M3, FP4_E3M0, INT4]), (BF16, [E4M3, E2M1, E3M2, E2M3, INT4]),
          (E5M2, [E2M1, FP4_E3M0]), (Float(5, 4), [E2M1, E3M2, FP4_E3M0]), (Float(6, 9), [E4M3, E2M1, INT4])]
NARROW = [(acc, [(a, b) for a in ops for b in ops
                 if choose_float_path(dp_for(a, b, acc)) == "narrow-vector"])
          for acc, ops in NARROW]


@st.composite
def fast_cases(draw):
    if draw(st.booleans()):
        acc = FP32
        a = draw(st.sampled_from(FP32_OPERANDS))
        b = draw(st.sampled_from(FP32_OPERANDS))
    else:
        acc, pairs = draw(st.sampled_from(NARROW))
        a, b = draw(st.sampled_from(pairs))
    dp = Datapath(a=a, b=b, accumulator=Accumulator(acc, rounding="half_even", overflow="ieee"),
                  order=draw(st.sampled_from(ORDERS)), bias_preload=draw(st.booleans()))
    M, K, N = draw(st.integers(1, 3)), draw(st.integers(0, 12)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32)))
    spread = draw(st.sampled_from([0, 3, 12]))
    big = draw(st.sampled_from([None, 1.0, 4.0]))    # None: around a quarter of the range -> overflow
    A = operand_data(rng, a, (M, K), spread, None if big is None else a.max / big)
    B = operand_data(rng, b, (K, N), spread, None if big is None else b.max / big)
    bias = None
    if draw(st.booleans()):
        bias = operand_data(rng, acc, (M, N), spread, acc.max / 8)
    return dp, A, B, bias


@settings(max_examples=80)
@given(fast_cases())
def test_vector_fast_paths_match_the_fraction_reference_and_the_scalar_kernel(case):
    dp, A, B, bias = case
    path = choose_float_path(dp, has_bias=bias is not None)
    assert path in ("fp32-vector", "narrow-vector")
    res = float_gemm(A, B, dp, bias=bias)
    acc, nov, _ = ref_float_gemm(A.tolist(), B.tolist(), dp, bias=None if bias is None else bias.tolist(),
                                 seed=0, n_cols=B.shape[1])
    assert same(res.acc, acc), (dp, res.acc, acc)
    assert np.array_equal(res.overflow_count, np.array(nov))
    sacc, snov = scalar_kernel(A, B, dp, bias)
    assert bits_equal(res.acc, sacc)
    assert np.array_equal(res.overflow_count, snov)


@settings(max_examples=60)
@given(fast_cases(), st.sampled_from(list(Rounding)), st.sampled_from([Overflow.IEEE, Overflow.SATURATE]),
       st.booleans(), st.integers(0, 2 ** 40))
def test_general_vector_path_matches_the_scalar_kernel(case, rounding, overflow, ftz, seed):
    dp, A, B, bias = case
    acc_fmt = dp.accumulator.fmt
    dp = Datapath(a=dp.a, b=dp.b, order=dp.order, bias_preload=dp.bias_preload,
                  accumulator=Accumulator(acc_fmt, rounding=rounding, overflow=overflow, flush_subnormals=ftz,
                                          **stochastic(rounding, random_bits=min(12, 50 - acc_fmt.man), seed=seed)))
    res = float_gemm(A, B, dp, bias=bias)
    if ftz:                                      # float_gemm flushes subnormal operands and bias (DAZ)
        A, B = _flushed(A, dp.a, acc_fmt), _flushed(B, dp.b, acc_fmt)
        bias = None if bias is None else _flushed(bias, acc_fmt, acc_fmt)
    sacc, snov = scalar_kernel(A, B, dp, bias)
    assert bits_equal(res.acc, sacc)
    assert np.array_equal(res.overflow_count, snov)


def _flushed(x, fmt, acc_fmt):
    x = np.asarray(x, dtype=np.float64)
    if isinstance(fmt, Float):
        return np.where(np.abs(x) < fmt.min_normal, np.copysign(0.0, x), x)
    return x


@settings(max_examples=40)
@given(st.sampled_from([(FP32, E4M3), (FP32, FP16), (FP16, E4M3), (BF16, E4M3), (Float(5, 4), E2M1)]),
       st.integers(1, 20), st.integers(1, 6), st.integers(0, 2 ** 32), st.sampled_from([0, 4, 10]))
def test_vector_fast_paths_match_mpfr_on_every_output(fmts, K, N, seed, spread):
    acc_fmt, op = fmts
    rng = np.random.default_rng(seed)
    A = operand_data(rng, op, (2, K), spread)
    B = operand_data(rng, op, (K, N), spread)
    dp = dp_for(op, op, acc_fmt)
    assert choose_float_path(dp) in ("fp32-vector", "narrow-vector")
    res = float_gemm(A, B, dp)
    for i in range(2):
        for j in range(N):
            acc, over = 0.0, 0
            for k in range(K):
                p = float(A[i, k]) * float(B[k, j])            # exact: the chooser proved it
                if math.isinf(acc) or math.isnan(acc):
                    acc = acc + p
                else:
                    acc, o = mpfr_add(acc, p, acc_fmt, Rounding.HALF_EVEN)
                    over += o
            assert res.acc[i, j] == acc or (math.isnan(acc) and math.isnan(res.acc[i, j])), (i, j, res.acc[i, j], acc)
            assert res.overflow_count[i, j] == over


@st.composite
def exact_cases(draw):
    a = draw(st.sampled_from([E4M3, E2M1, INT4, INT8, E3M2]))
    b = draw(st.sampled_from([E4M3, E2M1, INT4, INT8, E3M2]))
    acc = draw(st.sampled_from([FP32, FP16, BF16, E8M13, Float(6, 9)]))
    order = draw(st.sampled_from(ORDERS))
    rounding = draw(st.sampled_from(list(Rounding)))
    dp = Datapath(a=a, b=b, order=order,
                  accumulator=Accumulator(acc, rounding=rounding,
                                          overflow=draw(st.sampled_from([Overflow.IEEE, Overflow.SATURATE,
                                                                         Overflow.ERROR])),
                                          flush_subnormals=draw(st.booleans()),
                                          **stochastic(rounding, random_bits=3, seed=draw(st.integers(0, 2 ** 40)))))
    M, K, N = draw(st.integers(1, 3)), draw(st.integers(0, 10)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32)))
    A = operand_data(rng, a, (M, K), draw(st.sampled_from([0, 3])), a.max / draw(st.sampled_from([4, 64])))
    B = operand_data(rng, b, (K, N), 0, b.max / draw(st.sampled_from([4, 64])))
    return dp, A, B


@settings(max_examples=80)
@given(exact_cases())
def test_exact_shortcut_matches_the_references_whenever_it_is_chosen(case):
    dp, A, B = case
    res = float_gemm(A, B, dp)
    if dp.accumulator.flush_subnormals:          # float_gemm flushes subnormal operands (DAZ)
        A = _flushed(A, dp.a, dp.accumulator.fmt)
        B = _flushed(B, dp.b, dp.accumulator.fmt)
    path = choose_float_path(dp, bound=sum_bound(A, B))
    sacc, snov = scalar_kernel(A, B, dp)
    assert bits_equal(res.acc, sacc), (path, res.acc, sacc)
    assert np.array_equal(res.overflow_count, snov)
    if path == "exact-blas":
        acc, nov, _ = ref_float_gemm(A.tolist(), B.tolist(), dp, seed=dp.random_seed, n_cols=B.shape[1])
        assert same(res.acc, acc)
        assert not np.any(nov)
        assert np.array_equal(res.codes, dp.accumulator.fmt.encode(res.acc).astype(np.int64))   # binary32: bit patterns


def test_exact_shortcut_is_taken_for_small_integer_gemms_and_gives_the_sums():
    rng = np.random.default_rng(0)
    A = rng.integers(-8, 8, size=(20, 30)).astype(float)
    B = rng.integers(-8, 8, size=(30, 10)).astype(float)
    dp = dp_for(INT4, INT4, FP16, rounding="stochastic", random_bits=4, seed=9)
    assert choose_float_path(dp, bound=sum_bound(A, B)) == "exact-blas"
    res = float_gemm(A, B, dp)
    assert np.array_equal(res.acc, A @ B)
    assert bits_equal(res.acc, scalar_kernel(A, B, dp)[0])


@pytest.mark.parametrize("acc_fmt", [FP32, FP16, BF16])
@pytest.mark.parametrize("order", ORDERS)
def test_vector_paths_on_wider_rows_match_the_scalar_kernel(acc_fmt, order):
    """Rows of 67 columns (SIMD tails), products that overflow FP16 and cancel, a post-added bias."""
    rng = np.random.default_rng(7)
    A = operand_data(rng, E4M3, (5, 37), 6)
    B = operand_data(rng, E4M3, (37, 67), 6)
    bias = operand_data(rng, acc_fmt, (5, 67), 6, 1000.0)
    for rounding in ("half_even", "stochastic", "half_away"):
        dp = dp_for(E4M3, E4M3, acc_fmt, rounding=rounding, order=order, random_bits=10, seed=5)
        res = float_gemm(A, B, dp, bias=bias)
        sacc, snov = scalar_kernel(A, B, dp, bias)
        assert bits_equal(res.acc, sacc), (acc_fmt, order, rounding)
        assert np.array_equal(res.overflow_count, snov)
        if acc_fmt == FP16 and rounding == "half_even":
            assert snov.any() and np.isfinite(sacc).any()     # the overflow recount is exercised


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("K", [0, 1, 4, 7, 8, 23, 70])
def test_fp32_tiles_match_the_scalar_kernel(K, order):
    """The FP32 kernels' full tiles (sequential: 8 x 16, four steps of k per pass; tree: 4 x 64, the first
    three levels of eight products in registers; FMA contraction), their partial tiles and their k tails:
    17 x 70 outputs, operands over E4M3's whole range so that additions round; the path taken is reported
    and every output equals the per-output kernel."""
    rng = np.random.default_rng(K)
    A = operand_data(rng, E4M3, (17, K), 8)
    B = operand_data(rng, E4M3, (K, 70), 8)
    dp = dp_for(E4M3, E4M3, FP32, order=order)
    res = float_gemm(A, B, dp)
    assert res.path == choose_float_path(dp, bound=sum_bound(A, B))
    assert K < 70 or res.path == "fp32-vector"
    assert bits_equal(res.acc, scalar_kernel(A, B, dp)[0])
    assert np.array_equal(res.codes, FP32.encode(res.acc).astype(np.int64))


def test_chooser_takes_the_stochastic_vector_path_where_sums_are_exact_in_float64():
    sr = {"rounding": "stochastic", "random_bits": 16, "seed": 3}
    assert choose_float_path(dp_for(E4M3, E4M3, FP16, **sr)) == "stochastic-vector"
    assert choose_float_path(dp_for(E2M1, E4M3, E5M2, **sr)) == "stochastic-vector"
    assert choose_float_path(dp_for(E4M3, E4M3, FP32, **sr)) == "general-vector"     # 2**129 / 2**-149
    assert choose_float_path(dp_for(E4M3, E4M3, BF16, **sr)) == "general-vector"
    assert choose_float_path(dp_for(E5M2, E5M2, FP16, **sr)) == "general-vector"     # grid 2**-32 < 2**-24
    assert choose_float_path(dp_for(E4M3, E4M3, FP16, overflow="saturate", **sr)) == "general-vector"


SR_ACCS = [(FP16, [E4M3, E2M1, E3M2, E2M3, FP4_E3M0, INT4, INT8]), (E5M2, [E2M1, FP4_E3M0, E3M2]),
           (Float(5, 4), [E2M1, E3M2, FP4_E3M0, E4M3]), (Float(5, 6), [E4M3, E2M1, INT4])]
SR_ACCS = [(acc, [(a, b) for a in ops for b in ops
                  if choose_float_path(dp_for(a, b, acc, rounding="stochastic")) == "stochastic-vector"])
           for acc, ops in SR_ACCS]
SR_ACCS = [(acc, pairs) for acc, pairs in SR_ACCS if pairs]
assert len(SR_ACCS) >= 3


@settings(max_examples=80)
@given(st.sampled_from(SR_ACCS), st.data())
def test_stochastic_vector_path_matches_the_fraction_reference_and_the_scalar_kernel(accs, data):
    acc_fmt, pairs = accs
    a, b = data.draw(st.sampled_from(pairs))
    rbits = data.draw(st.sampled_from([None, 1, 5, 16, 50 - acc_fmt.man]))
    dp = Datapath(a=a, b=b, order=data.draw(st.sampled_from(ORDERS)), bias_preload=data.draw(st.booleans()),
                  accumulator=Accumulator(acc_fmt, rounding="stochastic", overflow="ieee", random_bits=rbits,
                                          seed=data.draw(st.integers(0, 2 ** 63 - 1))))
    assert choose_float_path(dp) == "stochastic-vector"
    M, K, N = data.draw(st.integers(1, 3)), data.draw(st.integers(0, 12)), data.draw(st.integers(1, 5))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32)))
    spread = data.draw(st.sampled_from([0, 3, 12]))
    big = data.draw(st.sampled_from([None, 1.0, 4.0]))
    A = operand_data(rng, a, (M, K), spread, None if big is None else a.max / big)
    B = operand_data(rng, b, (K, N), spread, None if big is None else b.max / big)
    bias = operand_data(rng, acc_fmt, (M, N), spread, acc_fmt.max / 8) if data.draw(st.booleans()) else None
    res = float_gemm(A, B, dp, bias=bias)
    acc, nov, _ = ref_float_gemm(A.tolist(), B.tolist(), dp, bias=None if bias is None else bias.tolist(),
                                 seed=dp.random_seed, n_cols=B.shape[1])
    assert same(res.acc, acc), (dp, res.acc, acc)
    assert np.array_equal(res.overflow_count, np.array(nov))
    sacc, snov = scalar_kernel(A, B, dp, bias)
    assert bits_equal(res.acc, sacc)
    assert np.array_equal(res.overflow_count, snov)


@settings(max_examples=30)
@given(st.integers(1, 20), st.integers(1, 5), st.integers(0, 2 ** 32), st.sampled_from([0, 4, 10]),
       st.integers(1, 40), st.integers(0, 2 ** 40))
def test_stochastic_vector_path_matches_mpfr(K, N, seed, spread, rbits, rseed):
    from fxsim._kernels.random import random_bits
    rng = np.random.default_rng(seed)
    A = operand_data(rng, E4M3, (2, K), spread)
    B = operand_data(rng, E4M3, (K, N), spread)
    dp = dp_for(E4M3, E4M3, FP16, rounding="stochastic", random_bits=rbits, seed=rseed)
    assert choose_float_path(dp) == "stochastic-vector"
    res = float_gemm(A, B, dp)
    for i in range(2):
        for j in range(N):
            acc, over = 0.0, 0
            for k in range(K):
                p = float(A[i, k]) * float(B[k, j])
                if math.isinf(acc) or math.isnan(acc):
                    acc = acc + p
                else:
                    u = int(random_bits(rseed, i * N + j, k, rbits))
                    acc, o = mpfr_add(acc, p, FP16, Rounding.STOCHASTIC, u, rbits)
                    over += o
            assert res.acc[i, j] == acc or (math.isnan(acc) and math.isnan(res.acc[i, j])), (i, j, res.acc[i, j], acc)
            assert res.overflow_count[i, j] == over


# ---- the compiled encoder -------------------------------------------------------------------------
from fxsim.engines.floating import fast_float_codes  # noqa: E402
from fxsim.formats import E4M3FNUZ, E5M2FNUZ, E8M0  # noqa: E402

SMALL_FORMATS = [E4M3, E5M2, E2M1, E2M3, E3M2, FP4_E3M0, FP16, BF16, E4M3FNUZ, E5M2FNUZ,
                 Float(5, 6, subnormals=False), Float(4, 3, signed=False, specials="none"), E8M0]


@pytest.mark.parametrize("fmt", SMALL_FORMATS, ids=str)
def test_fast_codes_equal_encode_on_every_finite_value(fmt):
    vals = fmt.values()
    vals = np.concatenate([vals, -vals[vals == 0]]) if fmt.signed else vals   # -0 too
    vals = vals[np.isfinite(vals)]
    codes = fast_float_codes(vals, fmt)
    assert codes is not None
    assert np.array_equal(codes, fmt.encode(vals).astype(np.int64))
    assert fast_float_codes(vals, fmt, store=False) is True     # the validation-only pass agrees
    off = np.nextafter(vals[vals != 0], np.inf)                   # one float64 ulp off every nonzero value
    assert all(fast_float_codes(off[i:i + 1], fmt, store=False) is None for i in range(0, off.size, 7))


@settings(max_examples=60)
@given(st.sampled_from(SMALL_FORMATS + [FP32, E8M13]), st.integers(0, 2 ** 32))
def test_fast_codes_refuse_what_encode_refuses(fmt, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=50) * np.exp2(rng.integers(-30, 30, size=50))
    try:
        expected = fmt.encode(x).astype(np.int64)
    except ValueError:
        expected = None
    got = fast_float_codes(x, fmt)
    assert (fast_float_codes(x, fmt, store=False) is True) == (got is not None)
    if expected is None:
        assert got is None
    elif got is not None:
        assert np.array_equal(got, expected)
    q = np.asarray(fmt.decode(rng.integers(0, fmt.num_codes, size=50)))
    q = q[np.isfinite(q)]
    got = fast_float_codes(q, fmt)
    assert got is not None and np.array_equal(got, fmt.encode(q).astype(np.int64))
    assert fast_float_codes(np.array([np.inf]), fmt) is None


@settings(max_examples=60)
@given(st.sampled_from(SMALL_FORMATS + [FP32, E8M13, Float(11, 10)]), st.integers(0, 2 ** 32))
def test_fast_codes_agree_with_encode_near_every_boundary(fmt, seed):
    """Codes next to the values the straight-line pass must tell apart: the neighbours of representable
    values (one float64 ulp off the grid), signed zeros, float64 subnormals (the general pass's job),
    values beyond the format's max, and inf/NaN (refused)."""
    rng = np.random.default_rng(seed)
    q = np.asarray(fmt.decode(rng.integers(0, fmt.num_codes, size=40)), dtype=np.float64)
    q = q[np.isfinite(q)]
    pool = np.concatenate([q, np.nextafter(q, np.inf), np.nextafter(q, -np.inf), -q, [0.0, -0.0],
                           [5e-324, -5e-324, 2.0 ** -1030, 2.0 ** -1040, fmt.max * 2, fmt.min_normal / 2]])
    for x in (q, rng.choice(pool, size=30), np.append(q, np.nan), np.append(q, 2.0 ** -1032)):
        try:
            expected = fmt.encode(x).astype(np.int64)
            ok = bool(np.all(np.isfinite(x)))
        except ValueError:
            expected, ok = None, False
        got = fast_float_codes(x, fmt)
        checked = fast_float_codes(x, fmt, store=False)      # validation only: the same verdict
        if ok:
            assert got is not None and np.array_equal(got, expected), x
            assert checked is True
        else:
            assert got is None and checked is None, x
    # and value by value (one bad value hides another in an array), with midpoints between neighbours
    half_steps = (q[:-1] + q[1:]) / 2 if q.size > 1 else q
    for v in np.concatenate([pool, half_steps]):
        x = np.array([v])
        try:
            fmt.encode(x)
            ok = bool(np.isfinite(v))
        except ValueError:
            ok = False
        assert (fast_float_codes(x, fmt, store=False) is True) == ok, (fmt, v)
        assert (fast_float_codes(x, fmt) is not None) == ok, (fmt, v)


@settings(max_examples=25)
@given(st.booleans(), st.sampled_from(ORDERS), st.booleans(), st.integers(1, 19), st.integers(0, 70),
       st.sampled_from([1, 63, 64, 65, 130]), st.integers(0, 2 ** 32), st.sampled_from([0, 3, 12]),
       st.sampled_from([None, 1.0, 4.0]), st.booleans())
def test_vector_fast_paths_across_register_tiles(narrow, order, preload, M, K, N, seed, spread, big, with_bias):
    """Shapes that are not multiples of the kernels' ROWS x TILE register tiles (partial row blocks and
    column tiles, K odd and even, up to 7 levels of the adder tree): every output as the scalar kernel,
    and a slice of columns on both sides of the first tile edge as the Fraction reference."""
    acc_fmt, a = (BF16, E4M3) if narrow else (FP32, E4M3)
    dp = Datapath(a=a, b=a, accumulator=Accumulator(acc_fmt, rounding="half_even", overflow="ieee"),
                  order=order, bias_preload=preload)
    rng = np.random.default_rng(seed)
    A = operand_data(rng, a, (M, K), spread, None if big is None else a.max / big)
    B = operand_data(rng, a, (K, N), spread, None if big is None else a.max / big)
    bias = operand_data(rng, acc_fmt, (M, N), spread, acc_fmt.max / 8) if with_bias else None
    assert choose_float_path(dp, has_bias=with_bias) == ("narrow-vector" if narrow else "fp32-vector")
    res = float_gemm(A, B, dp, bias=bias)
    sacc, snov = scalar_kernel(A, B, dp, bias)
    assert bits_equal(res.acc, sacc)
    assert np.array_equal(res.overflow_count, snov)
    cols = sorted({0, min(62, N - 1), min(63, N - 1), min(64, N - 1), N - 1})
    acc, nov, _ = ref_float_gemm(A.tolist(), B[:, cols].tolist(), dp,
                                 bias=None if bias is None else bias[:, cols].tolist(), seed=0, n_cols=len(cols))
    assert same(res.acc[:, cols], acc)
    assert np.array_equal(res.overflow_count[:, cols], np.array(nov))
