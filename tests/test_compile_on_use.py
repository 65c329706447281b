"""Compile only what a datapath uses, one signature per kernel, and the first-use notice."""
import io

import numba as nb
import numpy as np

from fxsim._kernels import float_accum as FK
from fxsim._kernels import float_codes as FC
from fxsim._kernels import float_vec as FV
from fxsim.datapath import Accumulator, Datapath, Order
from fxsim.engines.floating import choose_float_path, float_gemm
from fxsim.formats import E4M3, FP16, FP32, Fixed
from fxsim.quantize import quantize
from fxsim.runtime import compiling


def _signatures(kernel):
    return len(kernel.signatures)


def test_a_datapath_compiles_its_orders_kernels_once_for_every_input_layout():
    rng = np.random.default_rng(0)
    A = quantize(rng.normal(size=(6, 9)) * 4, E4M3)
    B = quantize(rng.normal(size=(9, 5)) * 4, E4M3)
    dp = Datapath(a=E4M3, b=E4M3, accumulator=Accumulator(FP16, rounding="toward_zero"))
    assert choose_float_path(dp) == "general-vector"
    others = {k: _signatures(k) for k in (FV.gen_chunked, FV.gen_tree, FK.outputs_chunked, FK.outputs_tree)}
    ref = float_gemm(A, B, dp, trace=(1, 2))
    ro = A.copy()
    ro.flags.writeable = False
    strided = np.asfortranarray(B)
    bias = quantize(rng.normal(size=(6, 5)), FP16)
    bias.flags.writeable = False
    again = float_gemm(ro, strided, dp, trace=[(0, 0)])
    float_gemm(A, B, dp, bias=bias)
    float_gemm(A, B, Datapath(a=E4M3, b=E4M3, bias_preload=True, accumulator=Accumulator(FP16, rounding="toward_zero")),
               bias=bias)
    assert np.array_equal(ref.values.view(np.int64), again.values.view(np.int64))
    assert _signatures(FV.gen_seq) == 1 and _signatures(FK.outputs_seq) == 1 and _signatures(FC.float_codes) == 1
    assert {k: _signatures(k) for k in others} == others       # the other orders were not compiled


def test_the_notice_is_one_line_once_and_only_when_switched_on(monkeypatch):
    @nb.njit
    def fresh(x):
        return x + 1

    assert compiling.will_compile(fresh)
    monkeypatch.setattr(compiling, "_stream", None)
    monkeypatch.setattr(compiling, "_said", False)
    assert compiling.notice_first_use(fresh) is fresh          # library use: silent
    buf = io.StringIO()
    compiling.announce_compiles(buf)
    compiling.notice_first_use(fresh)
    compiling.notice_first_use(fresh)
    assert buf.getvalue() == compiling.MESSAGE + "\n"
    fresh(1)
    assert not compiling.will_compile(fresh)                    # compiled now: nothing to announce


def test_a_cached_kernel_is_not_announced(monkeypatch):
    float_gemm(np.ones((2, 2)), np.ones((2, 2)), Datapath(a=E4M3, b=E4M3, accumulator=Accumulator(FP16)))
    assert not compiling.will_compile(FC.float_codes)


def test_the_compiled_fixed_grid_check_vouches_only_for_values_encode_accepts():
    from fxsim.engines.floating import _on_fixed_grid
    from fxsim.formats import Fixed
    rng = np.random.default_rng(3)
    fmts = [Fixed(4, 0, False), Fixed(8, 3), Fixed(8, -2), Fixed(12, 14), Fixed(53, 0), Fixed(16, 8, False)]
    specials = [-0.0, 0.5, np.nan, np.inf, -np.inf, -1.0, 7.0, 8.0, 1e-320, 2.0 ** -1074, 2.0 ** 60]
    for fmt in fmts:
        codes = rng.integers(fmt.min_code, fmt.max_code, size=50, endpoint=True)
        on = codes * fmt.resolution
        assert _on_fixed_grid(on, fmt)                         # every code's value is vouched for
        for v in specials + list(on[:5] + fmt.resolution / 2):
            arr = np.array([v], dtype=np.float64)
            if _on_fixed_grid(arr, fmt):
                fmt.encode(arr)                                # never vouches for a value encode rejects


def test_an_integer_datapath_compiles_only_its_orders_kernels():
    """The cycle-accurate integer kernels come one per order (``kernels.int_gemm.GEMM_KERNELS``,
    ``SUBSET_KERNELS``, ``TRACE_KERNELS``): each runs for its order's datapath, agrees with the reference,
    and compiles once; the other orders' kernels are not compiled by it."""
    from fxsim._kernels import int_gemm as IK
    from fxsim.engines.integer import IntPath
    from fxsim.ops.gemm import gemm
    from tests import reference_int_datapath as ref
    rng = np.random.default_rng(5)
    A = rng.integers(-8, 8, (3, 13))
    B = rng.integers(-8, 8, (13, 4))
    tables = (IK.GEMM_KERNELS, IK.SUBSET_KERNELS, IK.TRACE_KERNELS)
    product = Fixed(6, 0)          # a product register: not the dense sequential kernel's datapath
    cases = [("sequential", IK.SEQUENTIAL, Order("sequential")), ("chunked", IK.CHUNKED, Order("chunked", lanes=3)),
             ("tree", IK.TREE, Order("tree"))]
    for name, code, order in cases:
        dp = Datapath(a="int4", b="int4", product=product, order=order,
                      accumulator=Accumulator("int7", overflow="saturate"))
        before = {k: _signatures(k) for t in tables for o, k in t.items() if o != code}
        with_stats = gemm(A, B, dp, trace=(1, 2))
        without = gemm(A, B, dp, stats=False)
        assert with_stats.path == IntPath.STATS_KERNEL.value and without.path == IntPath.KERNEL.value, name
        want = ref.gemm_ref(A.tolist(), B.tolist(), dp, None, N=B.shape[1])
        for res in (with_stats, without):
            assert [[int(v) for v in row] for row in res.acc] == [[w[0] for w in row] for row in want], name
        assert [[int(v) for v in row] for row in with_stats.overflow_count] == [[w[1] for w in row] for row in want]
        assert int(with_stats.traces[(1, 2)][-1]) == want[1][2][0], name
        for t in tables:
            assert _signatures(t[code]) == 1, (name, t[code])
        assert {k: _signatures(k) for t in tables for o, k in t.items() if o != code} == before, name


def test_binary32_and_narrower_targets_compile_their_own_sequential_kernel():
    """fp32-vector runs ``f32_seq`` (binary32 tiles), narrow-vector ``narrow_seq`` (rows rounded to the
    target): each compiles without the other, and both give the reference kernel's bits."""
    rng = np.random.default_rng(2)
    A = quantize(rng.normal(size=(5, 7)) * 4, E4M3)
    B = quantize(rng.normal(size=(7, 6)) * 4, E4M3)
    for fmt, path, runs, other in ((FP32, "fp32-vector", FV.f32_seq, FV.narrow_seq),
                                   (FP16, "narrow-vector", FV.narrow_seq, FV.f32_seq)):
        dp = Datapath(a=E4M3, b=E4M3, accumulator=Accumulator(fmt, rounding="half_even"))
        assert choose_float_path(dp) == path
        n_other = _signatures(other)
        got = float_gemm(A, B, dp)
        assert _signatures(runs) == 1 and _signatures(other) == n_other, path
        traced = float_gemm(A, B, dp, trace=[(i, j) for i in range(5) for j in range(6)])   # per-output kernel
        ref = np.array([[traced.traces[(i, j)][-1] for j in range(6)] for i in range(5)])
        assert np.array_equal(got.values.view(np.int64), ref.view(np.int64)), path


def test_the_common_sequential_datapath_traces_through_its_small_kernel():
    """Exact products, sequential order: ``trace_seq_simple``, not the general ``trace_seq`` (whose product
    stage compiles every rounding mode); the same register values as the reference's."""
    from fxsim._kernels import int_gemm as IK
    from fxsim.ops.gemm import gemm
    from tests import reference_int_datapath as ref
    rng = np.random.default_rng(8)
    A = rng.integers(-128, 128, (2, 40))
    B = rng.integers(-128, 128, (40, 3))
    dp = Datapath(a="int8", b="int8", accumulator=Accumulator("int14", overflow="saturate"))
    general = _signatures(IK.trace_seq)
    res = gemm(A, B, dp, trace=[(0, 0), (1, 2)])
    assert _signatures(IK.trace_seq_simple) == 1 and _signatures(IK.trace_seq) == general
    for i, j in ((0, 0), (1, 2)):
        acc = 0
        want = [0]
        for p in ref.products(A[i].tolist(), B[:, j].tolist(), dp):
            acc, _ = ref.register(acc + p, 14, True, dp.accumulator.overflow)
            want.append(acc)
        assert res.traces[(i, j)].tolist() == want


def test_read_only_and_broadcast_inputs_compile_no_second_signature():
    """A bias that is already (M, N) (its broadcast a read-only view), read-only operand codes and a read-only
    per-channel requant scale reach the kernels as the same writable C arrays as any other input."""
    from fxsim._kernels import int_gemm as IK
    from fxsim._kernels import requant as RQ
    from fxsim.datapath import Accumulator, Datapath, OutputStage, Requant
    from fxsim.ops.gemm import gemm
    rng = np.random.default_rng(9)
    A = rng.integers(-8, 8, (4, 6))
    B = rng.integers(-8, 8, (6, 3))
    scale = np.array([0.5, 0.25, 0.125], dtype=np.float32)
    dp = Datapath(a="int4", b="int4", product="int6", accumulator=Accumulator("int7", overflow="saturate"),
                  output=OutputStage(requant=Requant.float32(scale), fmt="int8"))
    gemm(A, B, dp, bias=np.ones(3, dtype=np.int64))
    seq, rq = _signatures(IK.gemm_seq), _signatures(RQ.requant_f32_into)
    full_bias = np.ones((4, 3), dtype=np.int64)
    full_bias.flags.writeable = False
    ro_a, ro_b, ro_scale = A.copy(), B.copy(), scale.copy()
    for x in (ro_a, ro_b, ro_scale):
        x.flags.writeable = False
    ro_dp = dp.replace(output=OutputStage(requant=Requant.float32(ro_scale), fmt="int8"))
    gemm(ro_a, ro_b, ro_dp, bias=full_bias)
    gemm(A[:1], B, dp, bias=np.ones(3, dtype=np.int64))        # (1, N): the broadcast is contiguous already
    assert (_signatures(IK.gemm_seq), _signatures(RQ.requant_f32_into)) == (seq, rq)
