"""The exact shortcuts of the integer engine (stats=False), each driven on purpose and checked against the
cycle-accurate kernel and the plain-Python reference: float32 BLAS at its 2**24 limit, the Cauchy-Schwarz
proof, the blocked midpoint enclosure with flagged outputs resumed mid-K, narrow operand dtypes with zero
points, and concurrent calls from several threads."""
import threading

import numpy as np
import pytest
import threadpoolctl
from hypothesis import given, settings, strategies as st

from fxsim.datapath import Accumulator, Datapath, Order
from fxsim.formats import Fixed
from fxsim.engines import integer as engine
from fxsim.engines.integer import IntPath
from fxsim.ops.gemm import gemm
from tests import reference_int_datapath as ref


def reference_acc(A, B, dp, i, j, init=0):
    return ref.dot([int(v) for v in A[i]], [int(v) for v in B[:, j]], init, dp)[0]


def test_float32_blas_is_exact_up_to_two_to_the_24_and_float64_beyond(monkeypatch):
    # every product 2**12 * 2**12 = 2**24 / K: partial sums climb to exactly 2**24, the float32 limit; one
    # more unit of K and the engine must move to float64 (float32 would drop the odd low bits)
    real = engine.exact_products
    dtypes = []
    monkeypatch.setattr(engine, "exact_products",
                        lambda Ae, Be, dt, *a, **k: dtypes.append(np.dtype(dt)) or real(Ae, Be, dt, *a, **k))
    for K, want_dtype in ((1, np.float32), (3, np.float64)):
        dtypes.clear()
        A = np.full((2, K), 2 ** 12 - 1, dtype=np.int64)
        A[1, :] = -(2 ** 12)
        B = np.full((K, 3), -(2 ** 12), dtype=np.int64)
        B[:, 1] = 2 ** 12 - 1
        B[0, 2] = 1                                        # an odd product keeps the low bit significant
        dp = Datapath(a="int13", b="int13", accumulator=Accumulator("int40", overflow="wrap"))
        r = gemm(A, B, dp, stats=False)
        assert r.path == IntPath.EXACT_BLAS.value
        assert set(dtypes) == {np.dtype(want_dtype)}
        for i in range(2):
            for j in range(3):
                assert r.acc[i, j] == sum(int(A[i, k]) * int(B[k, j]) for k in range(K))


def test_cauchy_schwarz_proves_no_saturation_without_a_kernel():
    rng = np.random.default_rng(1)
    A = rng.integers(-128, 128, (40, 512))
    B = rng.integers(-128, 128, (512, 30))
    dp = Datapath(accumulator=Accumulator("int24", overflow="saturate"))   # K*128*128 = 2**23 > its range
    fast = gemm(A, B, dp, stats=False)
    assert fast.path == IntPath.CAUCHY_SCHWARZ.value             # proven for every output at once
    np.testing.assert_array_equal(fast.acc, A @ B)
    np.testing.assert_array_equal(fast.acc, gemm(A, B, dp).acc)


@pytest.mark.parametrize("seed,bits,acc_bits", [(0, 8, 20), (1, 8, 20), (2, 12, 28), (3, 12, 28)])
def test_block_enclosure_flags_outputs_and_resumes_them_mid_k(monkeypatch, seed, bits, acc_bits):
    # INT8 runs the test's arithmetic in float32, 12-bit operands in float64
    rng = np.random.default_rng(seed)
    top = 2 ** (bits - 1)
    A = rng.integers(-top, top, (24, 512))
    B = rng.integers(-top, top, (512, 20))
    # a few outputs drift to the rails late in K: their first flagged block is well past the start
    A[:4, 300:] = np.abs(A[:4, 300:]) // 2 + top // 2 - 1
    B[300:, :3] = np.abs(B[300:, :3]) // 2 + top // 2 - 1
    dp = Datapath(a=f"int{bits}", b=f"int{bits}", accumulator=Accumulator(f"int{acc_bits}", overflow="saturate"))
    flagged = []
    real = engine._run_unproven

    def spy_unproven(plan, ops, out, rows, cols, start_k=None, *args, **kwargs):
        flagged.append((rows.size, None if start_k is None else int(np.max(start_k, initial=0))))
        return real(plan, ops, out, rows, cols, start_k, *args, **kwargs)
    monkeypatch.setattr(engine, "_run_unproven", spy_unproven)   # what the resumed kernel is handed
    fast = gemm(A, B, dp, stats=False)
    slow = gemm(A, B, dp)
    assert fast.path == IntPath.BLOCK_ENCLOSURE.value
    assert flagged and 0 < flagged[0][0] < A.shape[0] * B.shape[1] and flagged[0][1] >= 256
    assert np.any(slow.overflow_count > 0)                       # the drift really saturates
    np.testing.assert_array_equal(fast.acc, slow.acc)
    np.testing.assert_array_equal(fast.exact, slow.exact)
    for i, j in [(0, 0), (3, 2), (10, 10)]:
        assert fast.acc[i, j] == reference_acc(A, B, dp, i, j)


@pytest.mark.parametrize("peak_over", [0, 1])
@pytest.mark.parametrize("v,bbits,acc_bits", [(2 ** 9, 12, 16), (2 ** 19, 21, 26)])   # float32 / float64 test
def test_midpoint_enclosure_never_misses_a_peak_inside_a_block(peak_over, v, bbits, acc_bits):
    # inside the first 64-block the partial sum climbs by 32 v and comes back: both block ends equal the
    # preloaded init, and with equal magnitudes the enclosure (c0 + c1 + CS) / 2 = init + 32 v is exactly
    # the peak. The peak sits at the accumulator's maximum (no saturation) or one above it (one addition
    # saturates, and the result ends one below init).
    a = np.ones((1, 128), dtype=np.int64)
    b = np.zeros((128, 1), dtype=np.int64)
    b[:32, 0], b[32:64, 0] = v, -v
    acc = Fixed(acc_bits, 0)
    init = acc.max_code - 32 * v + peak_over
    dp = Datapath(a="int8", b=f"int{bbits}", accumulator=Accumulator(acc, overflow="saturate"), bias_preload=True)
    fast = gemm(a, b, dp, bias=np.array([init]), stats=False)
    want = reference_acc(a, b, dp, 0, 0, init=init)
    assert want == init - peak_over
    assert fast.acc[0, 0] == want


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from([np.int8, np.uint8, np.int16, np.uint16, np.int32, np.int64]),
       zp_frac=st.floats(0, 1), M=st.integers(1, 5), K=st.integers(1, 200), N=st.integers(1, 5),
       acc_bits=st.integers(10, 32), ovf=st.sampled_from(["wrap", "saturate"]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_narrow_operand_dtypes_with_zero_points(dtype, zp_frac, M, K, N, acc_bits, ovf, seed):
    info = np.iinfo(dtype)
    bits = min(info.bits, 12)
    fmt = Fixed(bits, 0, info.min < 0)
    zp = int(fmt.min_code + zp_frac * (fmt.max_code - fmt.min_code))
    rng = np.random.default_rng(seed)
    A = rng.integers(fmt.min_code, fmt.max_code + 1, (M, K)).astype(dtype)
    B = rng.integers(fmt.min_code, fmt.max_code + 1, (K, N)).astype(dtype)
    dp = Datapath(a=fmt, b=fmt, a_zero_point=zp, b_zero_point=-(zp // 2) if info.min < 0 else zp // 2,
                  accumulator=Accumulator(f"int{acc_bits}", overflow=ovf))
    fast = gemm(A, B, dp, stats=False)
    slow = gemm(A.astype(np.int64), B.astype(np.int64), dp)
    np.testing.assert_array_equal(fast.acc, slow.acc)
    assert fast.acc[M - 1, N - 1] == reference_acc(A, B, dp, M - 1, N - 1)


def _blas_threads():
    return {m["filepath"]: m["num_threads"] for m in threadpoolctl.threadpool_info() if m["user_api"] == "blas"}


def test_concurrent_calls_from_threads_match_serial_calls():
    # ... and leave OpenBLAS's thread count as they found it, however their single-threaded spans overlap
    before = _blas_threads()
    rng = np.random.default_rng(5)
    jobs = []
    for t in range(6):
        A = rng.integers(-128, 128, (96, 512))
        B = rng.integers(-128, 128, (512, 64))
        bits, ovf = [(20, "saturate"), (16, "wrap"), (24, "saturate")][t % 3]
        jobs.append((A, B, Datapath(accumulator=Accumulator(f"int{bits}", overflow=ovf), order=Order())))
    want = [gemm(A, B, dp, stats=False).acc for A, B, dp in jobs]
    got = [None] * len(jobs)

    def run(t):
        for _ in range(3):
            got[t] = gemm(*jobs[t][:2], jobs[t][2], stats=False).acc

    threads = [threading.Thread(target=run, args=(t,)) for t in range(len(jobs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)
    after = _blas_threads()
    assert before and all(after[lib] == n for lib, n in before.items())


def test_overlapping_single_threaded_blas_spans_restore_the_users_setting():
    # two pipelines whose spans overlap (A starts, B starts, A ends, B ends), as concurrent calls do
    from fxsim.runtime.threads import _single_threaded_blas
    before = _blas_threads()
    a, b = _single_threaded_blas(), _single_threaded_blas()
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    assert all(_blas_threads()[lib] == 1 for lib in before)      # B still runs: still one thread
    b.__exit__(None, None, None)
    assert all(_blas_threads()[lib] == n for lib, n in before.items())


@pytest.mark.parametrize("dtype", [np.int16, np.int64])
@pytest.mark.parametrize("bad", [200, -129, 2 ** 40])
def test_codes_out_of_range_are_reported_on_the_fast_path_too(dtype, bad):
    # without statistics the engine range-checks integer codes in its single pass over each operand
    if np.iinfo(dtype).max < bad:
        return
    A = np.zeros((2, 3), dtype=dtype)
    B = np.ones((3, 2), dtype=dtype)
    dp = Datapath(accumulator=Accumulator("int20", overflow="saturate"))
    A[1, 2] = bad
    with pytest.raises(ValueError, match=rf"A\[1, 2\] = {bad} is outside int8"):
        gemm(A, B, dp, stats=False)
    A[1, 2] = 0
    B[2, 0] = bad
    with pytest.raises(ValueError, match=rf"B\[2, 0\] = {bad} is outside int8"):
        gemm(A, B, dp, stats=False)


def _gemm_in_child(conn, A, B, bits):
    dp = Datapath(accumulator=Accumulator(f"int{bits}", overflow="saturate"))
    conn.send(gemm(A, B, dp, stats=False).acc)
    conn.close()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="fork() is POSIX-only")
def test_a_forked_child_runs_the_row_parallel_shortcuts():
    # the parent's thread pool does not survive fork(): the child must build its own, not wait on it
    import multiprocessing
    rng = np.random.default_rng(9)
    A = rng.integers(-128, 128, (256, 512))
    B = rng.integers(-128, 128, (512, 256))
    want = gemm(A, B, Datapath(accumulator=Accumulator("int20", overflow="saturate")), stats=False).acc
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_gemm_in_child, args=(child, A, B, 20))
    proc.start()
    try:
        assert parent.poll(60), "the forked child did not finish"
        np.testing.assert_array_equal(parent.recv(), want)
    finally:
        proc.kill()
        proc.join(10)


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from([np.int8, np.uint8, np.int16, np.int32, np.int64]), R=st.integers(1, 7),
       C=st.integers(1, 150), blk=st.sampled_from([1, 3, 64]), axis=st.sampled_from([0, 1]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_scan_operand_matches_python(dtype, R, C, blk, axis, seed):
    # one pass: min, max, an exact float copy and sums of squares per block along K (K runs along the
    # rows of A, axis=1, or down the columns of B, axis=0), against Python integers
    from fxsim._kernels.int_gemm import scan_operand
    info = np.iinfo(dtype)
    X = np.random.default_rng(seed).integers(max(info.min, -2 ** 20), min(info.max, 2 ** 20) + 1, (R, C)).astype(dtype)
    rows = X.tolist()
    Kd = C if axis == 1 else R
    Q = -(-Kd // blk)
    xf = np.empty((R, C), dtype=np.float64)
    sq = np.empty((Q, R if axis == 1 else C), dtype=np.int64)
    lo, hi = scan_operand(X, blk, axis, xf, sq)
    flat = [v for row in rows for v in row]
    assert (lo, hi) == (min(flat), max(flat))
    assert xf.tolist() == [[float(v) for v in row] for row in rows]
    for q in range(Q):
        ks = range(q * blk, min(Kd, (q + 1) * blk))
        if axis == 1:
            want = [sum(rows[r][k] ** 2 for k in ks) for r in range(R)]
        else:
            want = [sum(rows[k][c] ** 2 for k in ks) for c in range(C)]
        assert sq[q].tolist() == want


@settings(max_examples=80, deadline=None)
@given(M=st.integers(1, 4), N=st.integers(1, 4), Q=st.integers(1, 5), blk=st.integers(1, 6),
       bits=st.integers(6, 14), drift=st.integers(0, 60), seed=st.integers(0, 2 ** 32 - 1),
       as_float32=st.booleans())
def test_block_check_never_clears_an_output_that_saturates(M, N, Q, blk, bits, drift, seed, as_float32):
    # the proof kernel against literal sequential sums: every output it clears stays inside
    # [-limit, limit] at every cycle; cum is the exact sum; a flagged output resumes at the start of a
    # block no later than its first out-of-range cycle, holding the exact partial sum there
    from fxsim._kernels.int_gemm import prefix_block_check
    rng = np.random.default_rng(seed)
    Kd = Q * blk
    A = np.clip(rng.integers(-20, 21, (M, Kd)) + drift // 3, -31, 31)
    B = np.clip(rng.integers(-20, 21, (Kd, N)) + drift // 3, -31, 31)
    limit = 2 ** (bits - 1) - 1
    init = rng.integers(-limit // 2, limit // 2 + 1, (M, N))
    S = np.stack([A[:, q * blk:(q + 1) * blk] @ B[q * blk:(q + 1) * blk] for q in range(Q)])
    na = np.sqrt(np.stack([(A[:, q * blk:(q + 1) * blk] ** 2).sum(1) for q in range(Q)]).astype(np.float64))
    nb_ = np.sqrt(np.stack([(B[q * blk:(q + 1) * blk] ** 2).sum(0) for q in range(Q)]).astype(np.float64))
    inflate = 2.0 ** -40
    if as_float32:   # the float32 variant needs every partial sum below 2**23: true at these sizes
        S, inflate = S.astype(np.float32), 2.0 ** -20
        na, nb_ = (na * (1 + 2.0 ** -22)).astype(np.float32), (nb_ * (1 + 2.0 ** -22)).astype(np.float32)
    else:
        S = S.astype(np.float64)
    cum = np.empty((M, N), dtype=np.int64)
    flagged = np.empty((4, M * N), dtype=np.int64)
    count = np.zeros(1, dtype=np.int64)
    prefix_block_check(init, S, np.ascontiguousarray(na), nb_, 0, limit, inflate, blk, 0, cum, flagged, count)
    resume = {(int(i), int(j)): (int(k0), int(c0)) for i, j, k0, c0 in flagged[:, :count[0]].T}
    for i in range(M):
        for j in range(N):
            partial = [int(init[i, j])]
            for k in range(Kd):
                partial.append(partial[-1] + int(A[i, k]) * int(B[k, j]))
            assert cum[i, j] == partial[-1]
            first_out = next((t for t, v in enumerate(partial) if abs(v) > limit), None)
            if (i, j) not in resume:
                assert first_out is None, (i, j, partial)
            else:
                k0, c0 = resume[(i, j)]
                assert k0 % blk == 0 and c0 == partial[k0]
                assert first_out is None or k0 < first_out
