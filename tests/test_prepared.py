"""GEMMs on prepared operands (fxsim.ops.prepared) against the integer engine, and the model executor's
float32 FMA against exact rationals."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fxsim.datapath import Accumulator, Datapath, Order, OutputStage, Requant
from fxsim.ops.gemm import run_integer_gemm
from fxsim.ops.prepared import PreparedB, blas_chunk, chunk_size, gemm_prepared


# ---------------------------------------------------------------------------------- prepared operands
def test_chunk_size():
    assert chunk_size(255, 127) == 2 ** 24 // (255 * 127)
    assert chunk_size(2 ** 13, 2 ** 12) == 0
    assert chunk_size(0, 5) > 2 ** 60


_DATAPATHS = [
    Datapath(a="uint8", b="int8", a_zero_point=3),                               # int32, wrap
    Datapath(a="uint8", b="int8", a_zero_point=128, accumulator=Accumulator("int16", overflow="wrap")),
    Datapath(a="uint8", b="int8", accumulator=Accumulator("int24", overflow="wrap"), order=Order("tree")),
    Datapath(a="int8", b="int8", accumulator=Accumulator("int32", overflow="saturate"),
             output=OutputStage(requant=Requant.float32(np.float32(0.0123), zero_point=5), fmt="uint8")),
    Datapath(a="uint8", b="int8", a_zero_point=7, bias_preload=False,
             accumulator=Accumulator("int20", overflow="wrap"),
             output=OutputStage(requant=Requant.dyadic(77, 12, "half_even"), fmt="int8", bias_bits=32)),
    Datapath(a="int16", b="int16", accumulator=Accumulator("int48", overflow="wrap")),   # chunks of 1
]


@settings(max_examples=60)
@given(case=st.integers(0, len(_DATAPATHS) - 1), M=st.integers(1, 9), K=st.sampled_from([1, 5, 64, 700, 1100, 2500]),
       N=st.integers(1, 7), bias=st.booleans(), seed=st.integers(0, 2 ** 31))
def test_gemm_prepared_equals_the_engine(case, M, K, N, bias, seed):
    dp = _DATAPATHS[case]
    rng = np.random.default_rng(seed)
    a = rng.integers(dp.a.min_code, dp.a.max_code + 1, (M, K))
    b = rng.integers(dp.b.min_code, dp.b.max_code + 1, (K, N))
    if case == 5:
        a, b = a // 8, b // 8
    bias_v = rng.integers(-3000, 3000, N) if bias else None
    want = run_integer_gemm(a, b, dp, bias=bias_v, stats=False)
    full = run_integer_gemm(a, b, dp, bias=bias_v, stats=True)
    zp = int(dp.a_zero_point)
    amax = max(abs(dp.a.min_code - zp), abs(dp.a.max_code - zp))
    if case == 5:   # the data's bound (any true bound will do): |a|, |b| <= 2**12, one term per chunk
        amax = max(1, int(np.abs(a - zp).max()))
    got = gemm_prepared((a - zp).astype(np.float32), amax, PreparedB(b, int(dp.b_zero_point)), dp, bias=bias_v)
    if case == 3 and K * amax * 128 > 2 ** 31 - 1 - 3000:
        assert got is None          # a saturating register the global bound does not clear: not proven here
        return
    assert got is not None
    for name in ("acc", "codes", "values", "exact"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    np.testing.assert_array_equal(got.codes, full.codes)
    assert got.overflow_count is None and got.bits_needed is None


def test_blas_chunk_takes_every_term_only_where_cauchy_schwarz_proves_the_sums_exact():
    """One sgemm over all K when max ||a_i||**2 * max ||b_j||**2 <= 2**48 (then no partial sum of any output
    exceeds 2**24); otherwise the chunk from max|a| * max|b|. At the edge: K = 1600 terms of 255 against 127
    have sums up to 51.8 M > 2**24 and keep the chunk; rows of 50 prove one chunk, rows of 82 just so."""
    K = 1600
    B = PreparedB(np.full((K, 3), 127))
    chunk = chunk_size(255, 127)
    assert 2 * chunk < K
    assert blas_chunk(np.full((4, K), 255, dtype=np.float32), 255, B, chunk) == chunk
    assert blas_chunk(np.full((4, K), 50, dtype=np.float32), 255, B, chunk) == K
    # the edge: 82**2 * K * K * 127**2 <= 2**48 < 83**2 * K * K * 127**2
    assert 82 ** 2 * K * K * 127 ** 2 <= 2 ** 48 < 83 ** 2 * K * K * 127 ** 2
    assert blas_chunk(np.full((2, K), 82, dtype=np.float32), 255, B, chunk) == K
    assert blas_chunk(np.full((2, K), 83, dtype=np.float32), 255, B, chunk) == chunk
    assert blas_chunk(np.full((4, 2 * chunk), 50, dtype=np.float32), 255, B, chunk) == chunk   # two chunks: kept
    a = np.full((3, K), 255)
    dp = Datapath(a="uint8", b="int8")
    got = gemm_prepared(a.astype(np.float32), 255, B, dp)     # sums of 51.8 M: chunked, still exact
    assert np.array_equal(got.acc, run_integer_gemm(a, np.full((K, 3), 127), dp, stats=False).acc)
    assert int(got.acc[0, 0]) == K * 255 * 127 > 2 ** 24


def test_gemm_prepared_declines_what_it_cannot_prove():
    b = np.ones((4, 2), dtype=np.int8)
    a = np.ones((3, 4), dtype=np.float32)
    B = PreparedB(b)
    assert gemm_prepared(a, 1, B, Datapath(product="int12")) is None
    assert gemm_prepared(a, 1, B, Datapath(zero_point_bits=9)) is None
    assert gemm_prepared(a, 1, B, Datapath(b_zero_point=1)) is None           # B prepared for another zero point
    assert gemm_prepared(a.astype(np.float64), 1, B, Datapath()) is None
    assert gemm_prepared(a, 1, B, Datapath()) is not None
    with pytest.raises(TypeError, match="2-D integer"):
        PreparedB(np.ones((2, 2)))


# ------------------------------------------------------------------------------------------ float32 FMA
def _fma_fractions(a, b, c):
    """float32(a*b + c) rounded once, half to even, through exact rationals."""
    out = np.empty(a.shape, dtype=np.float32)
    for i, (x, y, z) in enumerate(zip(a.tolist(), b.tolist(), c.tolist())):
        exact = Fraction(x) * Fraction(y) + Fraction(z)
        f = np.float32(float(exact))
        cands = (np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf)))
        out[i] = min(cands, key=lambda v: (abs(Fraction(float(v)) - exact),
                                           int(np.array(v, dtype=np.float32).view(np.uint32)) & 1))
    return out


@settings(max_examples=30)
@given(seed=st.integers(0, 2 ** 31), kind=st.sampled_from(["normal", "codes", "near_cancel", "ties"]))
def test_fma_f32_rounds_once(seed, kind):
    from fxsim.model.execute import fma_f32
    rng = np.random.default_rng(seed)
    n = 300
    a = rng.normal(0, 10, n).astype(np.float32)
    b = rng.normal(0, 1, n).astype(np.float32)
    c = rng.normal(0, 100, n).astype(np.float32)
    if kind == "codes":
        a = rng.integers(-128, 256, n).astype(np.float32)
        b = np.full(n, np.float32(rng.random()), dtype=np.float32)
    elif kind == "near_cancel":
        c = (-(a.astype(np.float64) * b)).astype(np.float32) * np.float32(1 + 2.0 ** -23 * rng.integers(-3, 4, n))
    elif kind == "ties":   # a*b + c exactly halfway between two float32 (a few units in the last place)
        a = rng.integers(1, 2 ** 12, n).astype(np.float32)
        b = rng.integers(1, 2 ** 12, n).astype(np.float32) + np.float32(0.5)
        c = (rng.integers(2 ** 24, 2 ** 25, n) * 2).astype(np.float32)
    got = fma_f32(a, b, c)
    want = _fma_fractions(a, b, c)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@settings(max_examples=60)
@given(M=st.integers(1, 6), K=st.integers(0, 40), seed=st.integers(0, 2 ** 31), big=st.booleans())
def test_the_norm_kernels_equal_python_sums(M, K, seed, big):
    """kernels/norms.py against plain Python: the largest exact squared row norm (integers up to 2**24,
    whose squares overflow float32 and whose sums pass 2**53 in float64), and the largest |x| with the
    largest row and column sum of |x| of float64 data (columns in the order of k, as that kernel adds; rows
    in any order, within their error bound)."""
    from fxsim._kernels.norms import abs_col_sums_max, abs_row_sums_max, max_row_sumsq
    rng = np.random.default_rng(seed)
    hi = 2 ** 24 if big else 300
    X = rng.integers(-hi, hi + 1, (M, K)).astype(np.float32)
    rows = [sum(int(v) ** 2 for v in row) for row in X.tolist()]
    assert int(max_row_sumsq(X)) == max(rows)
    Y = rng.normal(size=(M, K)) * np.exp2(rng.integers(-20, 20, (M, K)))
    absy = [[abs(v) for v in row] for row in Y.tolist()]
    amax = max((v for row in absy for v in row), default=0.0)

    def ordered_sum(vals):
        s = 0.0
        for v in vals:
            s += v
        return s

    # rows: summed in any order (they vectorise); non-negative terms then have a relative error of at
    # most (K - 1) * 2**-53 against the exact sum, the bound the float engine's margin covers
    from fractions import Fraction
    got_max, got_row = abs_row_sums_max(Y)
    assert got_max == amax
    exact = max(sum(Fraction(v) for v in row) for row in absy)
    assert abs(Fraction(got_row) - exact) <= Fraction(max(K - 1, 0), 2 ** 53) * exact * (1 + Fraction(1, 2 ** 40))
    assert abs_col_sums_max(Y) == (amax, max(ordered_sum(col) for col in zip(*absy)) if K else 0.0)
    if K:
        Y[M - 1, K - 1] = np.nan
        assert np.isnan(abs_row_sums_max(Y)[1]) and np.isnan(abs_col_sums_max(Y)[1])
