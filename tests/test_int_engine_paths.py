"""The integer engine's paths (fxsim.engines.integer.IntPath): each one driven on purpose, the path it
took read from ``result.path``, and its results compared with the plain-Python reference
(tests/reference_int_datapath.py) on every output."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fxsim.runtime import scratch as scratch_module
from fxsim.datapath import Accumulator, Datapath, Order
from fxsim.engines.integer import IntPath, choose_path, gemm_plan, Operands, plan_integer
from fxsim.formats import Fixed
from fxsim.ops.gemm import gemm
from tests import reference_int_datapath as ref


def _bit_length_signed(mx, mn):
    """The narrowest two's complement width holding every integer in [mn, mx], by search."""
    w = 1
    while not -(2 ** (w - 1)) <= mn <= mx <= 2 ** (w - 1) - 1:
        w += 1
    return w


def check_against_reference(res, A, B, dp, init=None, stats=True):
    M, N = res.acc.shape
    want = ref.gemm_ref(A.tolist(), B.tolist(), dp, init, N=N)
    for i in range(M):
        for j in range(N):
            acc, nov, exact, mx, mn = want[i][j]
            assert res.acc[i, j] == acc, (i, j)
            if res.exact is not None:
                assert res.exact[i, j] == exact, (i, j)
            if stats:
                assert res.overflow_count[i, j] == nov, (i, j)
                assert res.max_partial[i, j] == max(mx, -mn), (i, j)
                if dp.accumulator.fmt.signed:
                    assert res.bits_needed[i, j] == _bit_length_signed(mx, mn), (i, j)


def _codes(rng, bits, shape, lo_frac=-1.0, hi_frac=1.0):
    top = 2 ** (bits - 1)
    return rng.integers(int(lo_frac * top), int(hi_frac * (top - 1)) + 1, shape)


# -- statistics without a kernel: a bound proves that no addition overflows -------------------------
@settings(max_examples=60)
@given(bits=st.sampled_from([4, 8, 12, 20, 24]), M=st.integers(1, 9), K=st.integers(0, 140),
       N=st.integers(1, 40), frac=st.integers(0, 3), preload=st.booleans(),
       ovf=st.sampled_from(["wrap", "saturate", "saturate_symmetric", "saturate_zero"]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_stats_no_overflow_matches_the_reference(bits, M, K, N, frac, preload, ovf, seed):
    # the accumulator has room for K * max|a| * max|b| (shifted left by frac) and any preloaded bias;
    # lanes: float32 (INT4/INT8), int32 (INT12) or int64 (INT20, INT24) by the bound's size
    rng = np.random.default_rng(seed)
    A, B = _codes(rng, bits, (M, K)), _codes(rng, bits, (K, N))
    reach = (max(K, 1) * 4 ** (bits - 1) << frac) + 1000
    acc = Fixed(reach.bit_length() + 2, frac)
    dp = Datapath(a=f"int{bits}", b=f"int{bits}", accumulator=Accumulator(acc, overflow=ovf), bias_preload=True)
    bias_codes = rng.integers(-1000, 1000, N) if preload else None
    bias = None if bias_codes is None else np.ldexp(bias_codes.astype(float), -frac)
    res = gemm(A, B, dp, bias=bias)
    assert res.path == IntPath.STATS_NO_OVERFLOW.value
    init = None if bias_codes is None else [[int(v) for v in bias_codes] for _ in range(M)]
    check_against_reference(res, A, B, dp, init)
    assert not res.overflow_count.any()


def test_stats_no_overflow_picks_its_lanes_from_the_bound():
    rng = np.random.default_rng(0)
    for bits, K, want in [(8, 512, np.float32), (8, 1025, np.int32), (16, 512, np.int64),
                          (28, 512, np.int64)]:
        A, B = _codes(rng, bits, (3, K)), _codes(rng, bits, (K, 5))
        dp = Datapath(a=f"int{bits}", b=f"int{bits}", accumulator=Accumulator("int64", overflow="wrap"))
        plan = gemm_plan(plan_integer(dp), Operands(A, B), 0, stats=True)
        assert choose_path(plan) == IntPath.STATS_NO_OVERFLOW and plan.lane_dtype == want
        res = gemm(A, B, dp)
        np.testing.assert_array_equal(res.acc, A @ B)
        check_against_reference(res, A, B, dp)


def test_stats_that_could_overflow_still_run_the_kernel():
    rng = np.random.default_rng(1)
    A, B = _codes(rng, 8, (6, 300)), _codes(rng, 8, (300, 7))
    dp = Datapath(accumulator=Accumulator("int16", overflow="saturate"))
    res = gemm(A, B, dp)
    assert res.path == IntPath.STATS_SEQUENTIAL.value and res.overflow_count.any()
    check_against_reference(res, A, B, dp)
    tree = gemm(A, B, dp.replace(order=Order("tree")))
    assert tree.path == IntPath.STATS_TREE.value
    check_against_reference(tree, A, B, dp.replace(order=Order("tree")))
    product = dp.replace(order=Order("tree"), product="int12", product_overflow="saturate")   # a cut product
    cut = gemm(A, B, product)
    assert cut.path == IntPath.STATS_KERNEL.value
    check_against_reference(cut, A, B, product)


# -- saturating registers that really saturate: blocks on the rail are skipped ------------------------
@settings(max_examples=60)
@given(M=st.integers(1, 6), K=st.integers(1, 300), N=st.integers(1, 80), acc_bits=st.integers(10, 18),
       symmetric=st.booleans(), sign=st.sampled_from([1, -1, 0]), frac=st.integers(0, 2),
       preload=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_rail_blocks_match_the_reference(M, K, N, acc_bits, symmetric, sign, frac, preload, seed):
    # products mostly of one sign (sign=0: a few rows and columns of each sign, and zeros), so most
    # outputs run into a rail and stay there, some leave it again
    rng = np.random.default_rng(seed)
    if sign:
        A = rng.integers(0, 128, (M, K)) * sign
        B = rng.integers(1, 128, (K, N))
    else:
        A = rng.integers(-128, 128, (M, K)) // 2 + 60 * rng.choice([-1, 1], (M, 1))
        B = rng.integers(-128, 128, (K, N)) // 2 + 60 * rng.choice([-1, 1], (1, N))
        B[rng.random((K, N)) < 0.05] = 0
    overflow = "saturate_symmetric" if symmetric else "saturate"
    dp = Datapath(accumulator=Accumulator(Fixed(acc_bits, frac), overflow=overflow), bias_preload=True)
    bias_codes = rng.integers(-300, 300, N) if preload else None
    bias = None if bias_codes is None else np.ldexp(bias_codes.astype(float), -frac)
    res = gemm(A, B, dp, bias=bias, stats=False)
    assert res.path in (IntPath.RAIL_BLOCKS.value, IntPath.BLOCK_ENCLOSURE.value, IntPath.PER_OUTPUT_BOUND.value,
                        IntPath.CAUCHY_SCHWARZ.value, IntPath.EXACT_BLAS.value)
    init = None if bias_codes is None else [[int(v) for v in bias_codes] for _ in range(M)]
    check_against_reference(res, A, B, dp, init, stats=False)


def test_rail_blocks_run_where_every_output_saturates():
    rng = np.random.default_rng(2)
    P, Q = rng.integers(64, 128, (20, 700)), rng.integers(64, 128, (700, 30))
    for overflow, sign in [("saturate", 1), ("saturate", -1), ("saturate_symmetric", -1)]:
        dp = Datapath(accumulator=Accumulator("int16", overflow=overflow))
        res = gemm(sign * P, Q, dp, stats=False)
        assert res.path == IntPath.RAIL_BLOCKS.value
        lo, hi = (-32767 if overflow == "saturate_symmetric" else -32768), 32767
        assert np.all(res.acc == (hi if sign > 0 else lo))
        check_against_reference(res, sign * P, Q, dp, stats=False)
        np.testing.assert_array_equal(res.acc, gemm(sign * P, Q, dp).acc)   # the per-addition kernel


# -- every path, named ------------------------------------------------------------------------------
def _path_cases():
    rng = np.random.default_rng(3)
    A8, B8 = _codes(rng, 8, (12, 512)), _codes(rng, 8, (512, 10))
    seq = Datapath(accumulator=Accumulator("int32", overflow="saturate"))
    drift = A8.copy()
    drift[:2, 300:] = 120
    Bd = B8.copy()
    Bd[300:, :2] = 120
    # K * max|a| * max|b| beyond 2**53: only |A| @ |B| output by output can prove the sums exact
    wide = Datapath(a="int24", b="int24", accumulator=Accumulator("int60", overflow="saturate"))
    A24, B24 = _codes(rng, 24, (3, 200)), _codes(rng, 24, (200, 4))
    product = Datapath(product=Fixed(12, 0), accumulator=Accumulator("int32", overflow="wrap"))
    return [
        ("exact-blas", A8, B8, seq, False, IntPath.EXACT_BLAS),
        ("cauchy-schwarz", A8, B8, seq.replace(accumulator=Accumulator("int24", overflow="saturate")), False,
         IntPath.CAUCHY_SCHWARZ),
        ("block-enclosure", drift, Bd, seq.replace(accumulator=Accumulator("int20", overflow="saturate")), False,
         IntPath.BLOCK_ENCLOSURE),
        ("per-output-bound", A24, B24, wide, False, IntPath.PER_OUTPUT_BOUND),
        ("cycle-accurate", A8[:3, :50], B8[:50, :4], product, False, IntPath.KERNEL),
        ("stats-sequential", A8, B8, seq.replace(accumulator=Accumulator("int16", overflow="wrap")), True,
         IntPath.STATS_SEQUENTIAL),
        ("stats-no-overflow", A8, B8, seq, True, IntPath.STATS_NO_OVERFLOW),
        ("stats-kernel", A8[:3, :50], B8[:50, :4], product, True, IntPath.STATS_KERNEL),
    ]


@pytest.mark.parametrize("name,A,B,dp,stats,want", _path_cases(), ids=[c[0] for c in _path_cases()])
def test_each_path_is_chosen_where_its_proof_applies_and_matches_the_reference(name, A, B, dp, stats, want):
    res = gemm(A, B, dp, stats=stats)
    assert res.path == want.value
    rows = slice(0, 3)
    sub = type(res)(values=res.values[rows], codes=res.codes[rows], acc=res.acc[rows],
                    overflow_count=None if res.overflow_count is None else res.overflow_count[rows],
                    exact=None if res.exact is None else res.exact[rows],
                    max_partial=None if res.max_partial is None else res.max_partial[rows],
                    bits_needed=None if res.bits_needed is None else res.bits_needed[rows])
    check_against_reference(sub, A[rows], B, dp, stats=stats)
    if not stats:   # the same bits as the cycle-accurate run
        np.testing.assert_array_equal(res.acc, gemm(A, B, dp).acc)


# -- one result shape --------------------------------------------------------------------------------
def test_results_have_one_shape_with_and_without_statistics():
    rng = np.random.default_rng(4)
    A, B = _codes(rng, 8, (4, 64)), _codes(rng, 8, (64, 5))
    dp = Datapath(accumulator=Accumulator("int16", overflow="saturate"))
    full, fast = gemm(A, B, dp), gemm(A, B, dp, stats=False)
    assert full.has_stats and not fast.has_stats
    assert fast.overflow_count is None and fast.overflowed is None
    s_full, s_fast = full.summary(), fast.summary()
    assert s_full.keys() == s_fast.keys()
    assert s_fast["overflow_events"] is None and s_fast["outputs_with_overflow"] is None
    assert s_full["overflow_events"] == int(full.overflow_count.sum())
    assert s_fast["outputs_differing_from_exact"] == s_full["outputs_differing_from_exact"]


def test_large_scratch_is_released_after_the_call():
    rng = np.random.default_rng(5)
    A, B = _codes(rng, 8, (1500, 64)), _codes(rng, 8, (64, 1500))   # 18 MB planes
    gemm(A, B, Datapath(accumulator=Accumulator("int16", overflow="saturate")), stats=False)
    with scratch_module._registry_lock:
        kept = [buf.nbytes for bufs in scratch_module._registry for buf in bufs.values()]
    assert kept and max(kept) <= scratch_module._KEEP_BYTES


def test_stats_no_overflow_tiles_wide_outputs():
    # more columns than one tile of the kernel (EXTREMES_COLS): tile edges and the last partial tile
    from fxsim._kernels.int_gemm import EXTREMES_COLS
    rng = np.random.default_rng(6)
    N = 2 * EXTREMES_COLS + 77
    A, B = _codes(rng, 8, (6, 70)), _codes(rng, 8, (70, N))
    dp = Datapath(accumulator=Accumulator("int32", overflow="saturate"))
    res = gemm(A, B, dp)
    assert res.path == IntPath.STATS_NO_OVERFLOW.value
    np.testing.assert_array_equal(res.acc, A @ B)
    cols = [0, EXTREMES_COLS - 1, EXTREMES_COLS, 2 * EXTREMES_COLS, N - 1]
    sub = type(res)(values=res.values[:, cols], codes=res.codes[:, cols], acc=res.acc[:, cols],
                    overflow_count=res.overflow_count[:, cols], exact=res.exact[:, cols],
                    max_partial=res.max_partial[:, cols], bits_needed=res.bits_needed[:, cols])
    check_against_reference(sub, A, B[:, cols], dp)


def test_plan_integer_is_made_once_per_datapath_and_errors_every_time():
    """The plan is kept on the (frozen) Datapath object: the same object gives the same plan, an equal
    datapath built anew gets an equal plan of its own, and an invalid datapath raises on every call."""
    from fxsim.errors import InvalidArgument
    dp = Datapath(a="int8", b="int8", accumulator=Accumulator("int32", overflow="saturate"))
    p = plan_integer(dp)
    assert plan_integer(dp) is p
    twin = Datapath(a="int8", b="int8", accumulator=Accumulator("int32", overflow="saturate"))
    q = plan_integer(twin)
    assert q is not p and q.dp is twin and q.config == p.config and q.limit == p.limit
    bad = Datapath(a="int8", b="int8", accumulator=Accumulator("uint64"))
    for _ in range(2):
        with pytest.raises(InvalidArgument, match="unsigned 64-bit"):
            plan_integer(bad)
