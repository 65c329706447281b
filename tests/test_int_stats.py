"""The statistics path without overflow (``stats-no-overflow``) for signed registers: the running sum's
largest magnitude alone gives ``max_partial`` and ``bits_needed`` (kernels.int_gemm.running_absmax_dense).
Each lane regime is driven on purpose -- the plan says which lanes and whether they run 4e + 1 -- and
every output is compared with the plain-Python reference (tests/reference_int_datapath.py), including
the outputs whose largest magnitude is a power of two (reached as +m, or only as -m), where the two
candidate widths differ."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fxsim.datapath import Accumulator, Datapath, Order
from fxsim.engines import integer as integer_engine
from fxsim.engines.integer import IntPath, Operands, choose_path, gemm_plan, plan_integer
from fxsim.formats import Fixed
from fxsim.ops.gemm import gemm
from fxsim.result import bits_needed
from tests import reference_int_datapath as ref


def _plan(A, B, dp, imax=0):
    ranges = ((int(A.min()), int(A.max())), (int(B.min()), int(B.max())))
    return gemm_plan(plan_integer(dp), Operands(A, B), imax, stats=True, code_ranges=ranges)


def _check(res, A, B, dp, init=None):
    """Every output against the reference: acc, exact, overflow counts, max_partial, bits_needed
    (bits from the reference's own extremes, fxsim.result.bits_needed's formula)."""
    M, N = res.acc.shape
    want = ref.gemm_ref(A.tolist(), B.tolist(), dp, init, N=N)
    signed = dp.accumulator.fmt.signed
    for i in range(M):
        for j in range(N):
            acc, nov, exact, mx, mn = want[i][j]
            assert (res.acc[i, j], res.exact[i, j], res.overflow_count[i, j]) == (acc, exact, nov), (i, j)
            assert res.max_partial[i, j] == max(mx, -mn), (i, j)
            assert res.bits_needed[i, j] == int(bits_needed(mx, mn, signed)), (i, j)


def _powers(rng, shape):
    """Signed powers of two (and zeros): running sums whose largest magnitude is a power of two."""
    return rng.choice([-64, -32, -16, -8, -4, -2, -1, 0, 1, 2, 4, 8, 16, 32, 64], shape)


def _spike(rng, M, K, N, head):
    """int8 codes with |a| = |b| = 128 somewhere (so the bound is K * 2**14: beyond 2**22 for K > 256)
    but partial sums that stop moving after the first product: A[:, 0] = 64, B[0] = ``head``; A's other
    columns are 0 except one -128 in the last row, which meets B's last row (random)."""
    A = np.zeros((M, K), dtype=np.int64)
    A[:, 0] = 64
    A[M - 1, K - 1] = -128
    B = rng.integers(-128, 128, (K, N))
    B[0] = head
    B[K - 1, 0] = -128
    return A, B


@pytest.mark.parametrize("case", ["small-offset", "ties-rescan", "ties-tile", "int32-offset", "int32-ties",
                                  "int64-ties"])
def test_each_lane_regime_runs_and_matches_the_reference(case):
    rng = np.random.default_rng(11)
    dp = Datapath(accumulator=Accumulator("int32", overflow="wrap"))
    if case == "small-offset":       # |e| small: float32 lanes carry 4e + 1 exactly
        A, B = _powers(rng, (7, 90)) // 8, _powers(rng, (90, 40)) // 8
        want = (np.float32, 1)
    elif case == "ties-rescan":      # bound 300 * 2**14 > 2**22: lanes carry e; a few m are powers of two
        head = 2 * rng.integers(-60, 60, 600) + 1      # odd: m = 64 * |head| a power of two only for +-1
        head[::50] = _powers(rng, 12)
        A, B = _spike(rng, 6, 300, 600, head)
        want = (np.float32, 0)
    elif case == "ties-tile":        # every m a power of two: the tiles run both extremes instead
        A, B = _spike(rng, 6, 300, 600, _powers(rng, 600))
        want = (np.float32, 0)
    elif case == "int32-offset":     # bound 1100 * 2**14 > 2**24: int32 lanes, 4e + 1 fits
        A, B = rng.integers(-128, 128, (3, 1100)), rng.integers(-128, 128, (1100, 9))
        B[0, 0] = A[0, 0] = -128
        want = (np.int32, 1)
    elif case == "int32-ties":       # INT12: 200 * 2**22 > 2**29: int32 lanes carry e
        dp = Datapath(a="int12", b="int12", accumulator=Accumulator("int32", overflow="saturate"))
        A, B = 16 * _powers(rng, (5, 200)), 16 * _powers(rng, (200, 30))
        A[0, 0] = B[0, 0] = -2048
        want = (np.int32, 0)
    else:                            # INT32 x INT32, K = 1: 2**62, int64 lanes carry e
        dp = Datapath(a="int32", b="int32", accumulator=Accumulator("int64", overflow="wrap"))
        A = np.array([[-2 ** 31], [2 ** 30], [-2 ** 31 + 1], [0]], dtype=np.int64)
        B = np.array([[-2 ** 31, 2 ** 31 - 1, 4, -2 ** 30, 1]], dtype=np.int64)
        want = (np.int64, 0)
    plan = _plan(A, B, dp)
    assert choose_path(plan) == IntPath.STATS_NO_OVERFLOW
    assert (plan.lane_dtype, plan.lane_offset) == want
    res = gemm(A, B, dp)
    assert res.path == IntPath.STATS_NO_OVERFLOW.value
    _check(res, A, B, dp)


@pytest.mark.parametrize("K", [9, 300])
def test_few_columns_run_transposed_and_match_the_reference(K):
    # N < 64 < M: the kernel vectorises over the rows (B.T @ A.T, the same sums in the same order of k),
    # reading the preloaded bias and writing the planes transposed; K = 300: lanes carry e, rescans/tiles
    rng = np.random.default_rng(12)
    M, N = 150, 7
    dp = Datapath(accumulator=Accumulator("int32", overflow="saturate"), bias_preload=True)
    A, B = _spike(rng, M, K, N, _powers(rng, N)) if K > 256 else (_powers(rng, (M, K)), _powers(rng, (K, N)))
    A[::3, 0] = rng.integers(-128, 128, len(A[::3]))      # some rows off the powers of two
    bias = rng.integers(-500, 500, N)
    assert _plan(A, B, dp, imax=500).lane_offset == (K < 256)
    res = gemm(A, B, dp, bias=bias)
    assert res.path == IntPath.STATS_NO_OVERFLOW.value
    _check(res, A, B, dp, [[int(v) for v in bias] for _ in range(M)])


def test_powers_of_two_reached_only_below_zero_need_one_bit_less():
    # rows: the sum reaches +64 (7 bits) / only -64 (also 7 bits: -64 fits 7) / +64 then -64 / -1 only
    dp = Datapath(accumulator=Accumulator("int32", overflow="wrap"))
    A = np.array([[64, 0, 0], [-64, 0, 0], [64, -128, 0], [-1, 0, 0]], dtype=np.int64)
    B = np.array([[1], [1], [0]], dtype=np.int64)
    res = gemm(A, B, dp)
    assert res.path == IntPath.STATS_NO_OVERFLOW.value
    assert res.max_partial[:, 0].tolist() == [64, 64, 64, 1]
    assert res.bits_needed[:, 0].tolist() == [8, 7, 8, 1]
    _check(res, A, B, dp)
    for K in (260, 400):   # the same outputs with a bound beyond 2**22 (lanes carry e; rescans decide)
        A2 = np.zeros((5, K), dtype=np.int64)
        A2[:4, :3] = A
        A2[4, 0] = -128
        B2 = np.zeros((K, 40), dtype=np.int64)   # columns 1.. keep m off the powers of two: few rescans
        B2[:3, 0] = B[:, 0]
        B2[:2, 1:] = 3
        B2[K - 1, 0] = -128
        assert _plan(A2, B2, dp).lane_offset == 0
        res = gemm(A2, B2, dp)
        assert res.bits_needed[:4, 0].tolist() == [8, 7, 8, 1]
        _check(res, A2, B2, dp)


@settings(max_examples=40)
@given(M=st.integers(1, 6), K=st.one_of(st.integers(0, 60), st.integers(257, 320)), N=st.integers(1, 40), scale=st.sampled_from([1, 8, 64]),
       frac=st.integers(0, 2), preload=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_statistics_without_overflow_match_the_reference(M, K, N, scale, frac, preload, seed):
    # powers of two times a scale, a -128 somewhere for a large bound: both lane forms, rescans, tiles
    rng = np.random.default_rng(seed)
    A = np.clip(_powers(rng, (M, K)) * scale // 4, -128, 127)
    B = np.clip(_powers(rng, (K, N)) * scale // 4, -128, 127)
    if K > 256 or (K and rng.random() < 0.5):   # beyond K = 256 the bound exceeds 2**22: lanes carry e
        A[rng.integers(M), rng.integers(K)] = -128
        B[rng.integers(K), rng.integers(N)] = -128
    dp = Datapath(accumulator=Accumulator(Fixed(30, frac), overflow="saturate"), bias_preload=True)
    bias_codes = rng.integers(-1000, 1000, N) if preload else None
    bias = None if bias_codes is None else np.ldexp(bias_codes.astype(float), -frac)
    res = gemm(A, B, dp, bias=bias)
    assert res.path == IntPath.STATS_NO_OVERFLOW.value
    init = None if bias_codes is None else [[int(v) for v in bias_codes] for _ in range(M)]
    _check(res, A, B, dp, init)


def test_narrow_integer_codes_are_taken_as_they_are_and_still_checked():
    # stats=True with int8 / int16 / uint8 arrays: no int64 copy of the operands, the same results as
    # int64 codes on every path (no overflow, the vectorised sequential and tree ones, the per-output kernel), and
    # a code outside the format is reported by position
    from fxsim.datapath import Order
    from fxsim.errors import InvalidArgument
    rng = np.random.default_rng(13)
    A, B = rng.integers(-128, 128, (9, 70)), rng.integers(-128, 128, (70, 11))
    for dp, want in [(Datapath(accumulator=Accumulator("int32", overflow="wrap")), IntPath.STATS_NO_OVERFLOW),
                     (Datapath(accumulator=Accumulator("int16", overflow="saturate")), IntPath.STATS_SEQUENTIAL),
                     (Datapath(accumulator=Accumulator("int16", overflow="wrap"), order=Order("tree")),
                      IntPath.STATS_TREE),
                     (Datapath(accumulator=Accumulator("int16", overflow="wrap"), order=Order("chunked", lanes=8)),
                      IntPath.STATS_KERNEL)]:
        full = gemm(A, B, dp)
        assert full.path == want.value
        for dt in (np.int8, np.int16):
            res = gemm(A.astype(dt), B.astype(dt), dp)
            assert res.path == want.value
            for field in ("acc", "exact", "overflow_count", "max_partial", "bits_needed", "values"):
                np.testing.assert_array_equal(getattr(res, field), getattr(full, field), err_msg=field)
    u = Datapath(a="uint8", b="int8", accumulator=Accumulator("int32", overflow="wrap"))
    Au = rng.integers(0, 256, (5, 40))
    res = gemm(Au.astype(np.uint8), B[:40], u)
    assert res.path == IntPath.STATS_NO_OVERFLOW.value
    _check(res, Au, B[:40], u)
    bad = (A // 32).astype(np.int8)   # within int4 but one
    bad[3, 5] = 9
    with pytest.raises(InvalidArgument, match=r"A\[3, 5\] = 9 is outside"):
        gemm(bad, B.astype(np.int8), Datapath(a="int4", accumulator=Accumulator("int32")))


# -- saturating registers with statistics, in narrow lanes (stats-sequential) ---------------------------
@settings(max_examples=60)
@given(M=st.integers(1, 6), K=st.integers(0, 200), N=st.integers(1, 40), acc_bits=st.integers(6, 20),
       a_bits=st.sampled_from([4, 8, 12]), overflow=st.sampled_from(["saturate", "saturate_symmetric", "wrap"]),
       signed=st.booleans(), frac=st.integers(0, 2), preload=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_register_statistics_in_narrow_lanes_match_the_reference(M, K, N, acc_bits, a_bits, overflow, signed,
                                                                 frac, preload, seed):
    rng = np.random.default_rng(seed)
    top = 2 ** (a_bits - 1)
    A, B = rng.integers(-top, top, (M, K)), rng.integers(-top, top, (K, N))
    if rng.random() < 0.5:   # mostly one sign: registers that sit on a rail
        A, B = np.abs(A).clip(0, top - 1), np.abs(B).clip(0, top - 1) * rng.choice([-1, 1])
    acc = Fixed(acc_bits, frac, signed)
    dp = Datapath(a=f"int{a_bits}", b=f"int{a_bits}", accumulator=Accumulator(acc, overflow=overflow),
                  bias_preload=True)
    bias_codes = None
    if preload:
        bias_codes = rng.integers(acc.min_code, acc.max_code + 1, N) // 2
    bias = None if bias_codes is None else np.ldexp(bias_codes.astype(float), -frac)
    res = gemm(A, B, dp, bias=bias)
    assert res.path in (IntPath.STATS_SEQUENTIAL.value, IntPath.STATS_NO_OVERFLOW.value)   # lanes: any
    init = None if bias_codes is None else [[int(v) for v in bias_codes] for _ in range(M)]
    _check(res, A, B, dp, init)


@pytest.mark.parametrize("a_bits,K,want", [(8, 300, np.float32), (12, 300, np.int32), (16, 300, None)])
def test_saturating_statistics_pick_their_lanes_from_the_bound(a_bits, K, want):
    rng = np.random.default_rng(14)
    top = 2 ** (a_bits - 1)
    A, B = rng.integers(-top, top, (5, K)), rng.integers(-top, top, (K, 9))
    A[0, 0] = B[0, 0] = -top
    for overflow in ("saturate", "saturate_symmetric"):
        dp = Datapath(a=f"int{a_bits}", b=f"int{a_bits}", accumulator=Accumulator("int16", overflow=overflow))
        assert _plan(A, B, dp).clamp_lane_dtype is want
        res = gemm(A, B, dp)
        assert res.path == IntPath.STATS_SEQUENTIAL.value and res.overflow_count.any()
        _check(res, A, B, dp)


@pytest.mark.parametrize("acc,a_bits,K,want", [("int16", 8, 300, np.float32), ("uint12", 8, 300, np.float32),
                                               ("int24", 8, 1200, None), ("int16", 12, 300, None)])
def test_wrapping_statistics_pick_their_lanes_from_the_bound(acc, a_bits, K, want):
    # float32 while |acc| + |p| + 2**(W-1) and every partial sum stay within 2**24, else int64; positive
    # products, so that the registers do wrap
    rng = np.random.default_rng(15)
    top = 2 ** (a_bits - 1)
    A, B = rng.integers(top // 2, top, (5, K)), rng.integers(top // 2, top, (K, 9))
    A[0, 0] = B[0, 0] = -top
    dp = Datapath(a=f"int{a_bits}", b=f"int{a_bits}", accumulator=Accumulator(acc, overflow="wrap"))
    assert _plan(A, B, dp).wrap_lane_dtype is want
    res = gemm(A, B, dp)
    assert res.path == IntPath.STATS_SEQUENTIAL.value and res.overflow_count.any()
    _check(res, A, B, dp)


@pytest.mark.parametrize("acc,overflow,want", [("int32", "wrap", IntPath.STATS_NO_OVERFLOW),
                                               ("int16", "saturate", IntPath.STATS_SEQUENTIAL),
                                               ("int16", "wrap", IntPath.STATS_SEQUENTIAL)])
def test_large_calls_split_over_threads_equal_the_int64_kernel(acc, overflow, want):
    # 2**22 MACs and more run as row slabs on every thread; every plane equals the int64 cycle-accurate
    # kernel's (sequential_stats_dense, vectorised over columns, run here directly)
    import numba
    from fxsim._kernels import int_gemm as K
    rng = np.random.default_rng(16)
    A, B = rng.integers(-128, 128, (70, 1024)), rng.integers(-128, 128, (1024, 66))
    dp = Datapath(accumulator=Accumulator(acc, overflow=overflow))
    threads = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    try:
        res = gemm(A, B, dp)
    finally:
        numba.set_num_threads(threads)
    assert res.path == want.value
    M, N = res.acc.shape
    planes = [np.empty((M, N), dtype=np.int64) for _ in range(5)]   # acc, nov, max, min, exact
    K.sequential_stats_dense(A, B, np.zeros((M, N), dtype=np.int64), plan_integer(dp).register, *planes)
    acc_, nov, mx, mn, exact = planes
    np.testing.assert_array_equal(res.acc, acc_)
    np.testing.assert_array_equal(res.overflow_count, nov)
    np.testing.assert_array_equal(res.exact, exact)
    np.testing.assert_array_equal(res.max_partial, np.maximum(mx, -mn))
    np.testing.assert_array_equal(res.bits_needed, bits_needed(mx, mn, True))


@settings(max_examples=60, deadline=None)
@given(M=st.integers(1, 6), K=st.integers(1, 40), N=st.integers(1, 6), bits=st.integers(4, 24),
       overflow=st.sampled_from(["wrap", "saturate", "saturate_symmetric"]),
       order=st.sampled_from(["sequential", "tree", "chunked"]), seed=st.integers(0, 2 ** 32 - 1),
       span=st.sampled_from([1, 4, 127]))
def test_overflow_counts_only_agree_with_the_reference(M, K, N, bits, overflow, order, seed, span):
    """stats="overflow": the same registers and counts as the plain-Python reference, no other
    statistics; where the bound proves that nothing overflows, an exact shortcut runs, not a kernel."""
    rng = np.random.default_rng(seed)
    A = rng.integers(-span - 1, span + 1, (M, K))
    B = rng.integers(-span - 1, span + 1, (K, N))
    dp = Datapath(a=Fixed(8), b=Fixed(8), accumulator=Accumulator(Fixed(bits), overflow=overflow),
                  order=Order(order, lanes=3 if order == "chunked" else 1))
    res = gemm(A, B, dp, stats="overflow")
    want = ref.gemm_ref(A.tolist(), B.tolist(), dp, None, N=N)
    for i in range(M):
        for j in range(N):
            acc, nov, _, _, _ = want[i][j]
            assert (res.acc[i, j], res.overflow_count[i, j]) == (acc, nov), (i, j)
    assert res.max_partial is None and res.bits_needed is None
    assert res.has_stats
    full = gemm(A, B, dp)
    assert np.array_equal(res.values, full.values) and np.array_equal(res.codes, full.codes)
    proven = K * 128 * 128 <= 2 ** (bits - 1) - 1 - (overflow == "saturate_symmetric")
    if proven:
        assert res.path in (IntPath.EXACT_BLAS.value,), res.path
        assert not res.overflow_count.any()


def test_stats_levels_are_checked():
    from fxsim.errors import InvalidArgument
    from fxsim.ops.conv import conv2d
    dp = Datapath(accumulator=Accumulator("int32"))
    for bad in ("counts", 2, None, "True"):
        with pytest.raises(InvalidArgument, match=r"stats must be True, False or \"overflow\", got"):
            gemm(np.ones((2, 2), dtype=np.int64), np.ones((2, 2), dtype=np.int64), dp, stats=bad)
    with pytest.raises(InvalidArgument, match="stats must be"):
        conv2d(np.ones((1, 1, 3, 3), dtype=np.int64), np.ones((1, 1, 1, 1), dtype=np.int64), dp, stats="x")
    r = conv2d(np.ones((1, 1, 3, 3), dtype=np.int64), np.ones((1, 1, 1, 1), dtype=np.int64), dp, stats="overflow")
    assert r.overflow_count.shape == (1, 1, 3, 3) and r.bits_needed is None


# -- the chunked order with statistics: lanes as sequential GEMMs, then the combine adders (stats-chunked)
@settings(max_examples=80, deadline=None)
@given(M=st.integers(1, 5), K=st.integers(0, 120), N=st.integers(1, 70), lanes=st.integers(2, 9),
       combine=st.sampled_from(["sequential", "tree"]), acc_bits=st.integers(6, 34),
       a_bits=st.sampled_from([4, 8, 12, 16]),
       overflow=st.sampled_from(["wrap", "saturate", "saturate_symmetric", "saturate_zero"]),
       frac=st.integers(0, 2), preload=st.booleans(), seed=st.integers(0, 2 ** 32 - 1), stats=st.booleans(),
       signed=st.booleans())
def test_chunked_statistics_match_the_reference(M, K, N, lanes, combine, acc_bits, a_bits, overflow, frac, preload,
                                                seed, stats, signed):
    """Every lane regime (float32 / int32 / int64 lanes, no-overflow lanes, empty chunks when lanes > K),
    both combines and every dense mode, against the plain-Python reference on every output; without
    statistics (signed or unsigned registers) the lanes run for the outputs the bound leaves, when they
    are most of them."""
    rng = np.random.default_rng(seed)
    top = 2 ** (a_bits - 1)
    A, B = rng.integers(-top, top, (M, K)), rng.integers(-top, top, (K, N))
    if not signed or rng.random() < 0.5:   # mostly one sign: lanes on a rail, combines that overflow
        A, B = np.abs(A).clip(0, top - 1), np.abs(B).clip(0, top - 1) * (rng.choice([-1, 1]) if signed else 1)
    acc = Fixed(acc_bits, frac, signed)
    dp = Datapath(a=f"int{a_bits}", b=f"int{a_bits}", accumulator=Accumulator(acc, overflow=overflow),
                  order=Order("chunked", lanes=lanes, combine=combine))
    bias_codes = rng.integers(acc.min_code, acc.max_code + 1, N) // 2 if preload else None
    bias = None if bias_codes is None else np.ldexp(bias_codes.astype(float), -frac)
    with pytest.MonkeyPatch.context() as mp:   # the path on every shape here, short chunks included
        mp.setattr(integer_engine, "_MIN_CHUNK", 0)
        mp.setattr(integer_engine, "_MIN_CHUNKED_WORK", 0)
        res = gemm(A, B, dp, bias=bias, stats=stats)
    init = None if bias_codes is None else [[int(v) for v in bias_codes] for _ in range(M)]
    if not stats:
        want = ref.gemm_ref(A.tolist(), B.tolist(), dp, init, N=N)
        assert [[int(v) for v in row] for row in res.acc] == [[w[0] for w in row] for row in want]
        return
    assert res.path == (IntPath.STATS_CHUNKED if signed else IntPath.STATS_KERNEL).value
    _check(res, A, B, dp, init)


def test_chunked_statistics_run_where_chunks_are_long_enough():
    """Chunks of 16 and more (and 2**15 MACs): the lanes' path; shorter chunks: the per-output kernel."""
    rng = np.random.default_rng(22)
    A, B = rng.integers(-128, 128, (4, 256)), rng.integers(-128, 128, (256, 40))
    for lanes, want in ((4, IntPath.STATS_CHUNKED), (16, IntPath.STATS_CHUNKED), (17, IntPath.STATS_KERNEL)):
        for combine in ("sequential", "tree"):
            dp = Datapath(accumulator=Accumulator("int16", overflow="saturate"),
                          order=Order("chunked", lanes=lanes, combine=combine))
            res = gemm(A, B, dp)
            assert res.path == want.value and res.overflow_count.any()
            _check(res, A, B, dp)


def test_chunked_statistics_keep_the_kernel_for_unsigned_registers_and_product_stages():
    rng = np.random.default_rng(21)
    A, B = rng.integers(0, 100, (3, 40)), rng.integers(0, 100, (40, 5))
    unsigned = Datapath(a="uint8", b="uint8", accumulator=Accumulator("uint12", overflow="saturate"),
                        order=Order("chunked", lanes=4))
    res = gemm(A, B, unsigned)
    assert res.path == IntPath.STATS_KERNEL.value
    _check(res, A, B, unsigned)


# -- the tree order with statistics: the adder tree built as the products stream in (stats-tree) --------
@settings(max_examples=80, deadline=None)
@given(M=st.integers(1, 5), K=st.integers(0, 70), N=st.integers(1, 40), acc_bits=st.integers(6, 30),
       a_bits=st.sampled_from([4, 8, 12]), signed=st.booleans(),
       overflow=st.sampled_from(["wrap", "saturate", "saturate_symmetric", "saturate_zero"]),
       levels=st.one_of(st.none(), st.lists(st.integers(5, 30), min_size=1, max_size=7)),
       preload=st.booleans(), stats=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_tree_statistics_match_the_reference(M, K, N, acc_bits, a_bits, signed, overflow, levels, preload, stats,
                                             seed):
    """Every K (odd terms passing through at several levels), narrower and wider level registers, signed
    and unsigned, every dense mode, against the plain-Python reference on every output; stats=False where
    most outputs overflow runs the same kernel on all of them."""
    rng = np.random.default_rng(seed)
    top = 2 ** (a_bits - 1)
    A, B = rng.integers(-top, top, (M, K)), rng.integers(-top, top, (K, N))
    if not signed or rng.random() < 0.5:
        A, B = np.abs(A).clip(0, top - 1), np.abs(B).clip(0, top - 1)
    acc = Fixed(acc_bits, 0, signed)
    dp = Datapath(a=f"int{a_bits}", b=f"int{a_bits}", accumulator=Accumulator(acc, overflow=overflow),
                  order=Order("tree", level_bits=None if levels is None else tuple(levels)))
    bias_codes = rng.integers(acc.min_code, acc.max_code + 1, N) // 2 if preload else None
    res = gemm(A, B, dp, bias=None if bias_codes is None else bias_codes.astype(float), stats=stats)
    if stats:
        assert res.path == IntPath.STATS_TREE.value
    init = None if bias_codes is None else [[int(v) for v in bias_codes] for _ in range(M)]
    want = ref.gemm_ref(A.tolist(), B.tolist(), dp, init, N=N)
    for i in range(M):
        for j in range(N):
            acc_, nov, exact, mx, mn = want[i][j]
            assert res.acc[i, j] == acc_, (i, j)
            if stats:
                assert (res.exact[i, j], res.overflow_count[i, j]) == (exact, nov), (i, j)
                assert res.max_partial[i, j] == max(mx, -mn), (i, j)
                assert res.bits_needed[i, j] == int(bits_needed(mx, mn, signed)), (i, j)


def test_tree_without_statistics_runs_the_vectorised_tree_where_most_outputs_overflow():
    rng = np.random.default_rng(23)
    A, B = rng.integers(0, 128, (6, 300)), rng.integers(0, 128, (300, 9))
    dp = Datapath(accumulator=Accumulator("int16", overflow="saturate"), order="tree")
    from fxsim._kernels import int_gemm as K
    before = len(K.tree_stats_dense.signatures)
    res = gemm(A, B, dp, stats=False)
    assert res.path == IntPath.PER_OUTPUT_BOUND.value
    assert len(K.tree_stats_dense.signatures) >= max(before, 1)
    _check(gemm(A, B, dp), A, B, dp)
    full = gemm(A, B, dp)
    assert np.array_equal(res.acc, full.acc)
