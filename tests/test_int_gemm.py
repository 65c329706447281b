"""The integer GEMM engine against the plain-Python reference: shapes, widths 2..64, signedness, zero
points, product registers, orders and overflow modes, with inputs biased so saturation really happens."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fxsim.datapath import Accumulator, Datapath, Order, OutputStage
from fxsim.formats import Fixed
from fxsim.modes import Overflow, Rounding
from fxsim.ops.gemm import gemm
from tests import reference_int_datapath as ref

ACC_OVF = [Overflow.WRAP, Overflow.SATURATE, Overflow.SATURATE_SYMMETRIC, Overflow.SATURATE_ZERO]


@st.composite
def datapaths(draw):
    wide = draw(st.booleans())   # wide operands (products up to 52 bits) or narrow ones (more overflow)
    abits = draw(st.integers(2, 36 if wide else 12))
    bbits = draw(st.integers(2, max(2, 52 - abits) if wide else 12))
    a = Fixed(abits, draw(st.integers(-2, 6)), draw(st.booleans()))
    b = Fixed(bbits, draw(st.integers(-2, 6)), draw(st.booleans()))
    pbits = abits + bbits
    acc_bits = draw(st.one_of(st.integers(2, pbits + 6), st.integers(2, 64)))
    acc_signed = draw(st.booleans()) if acc_bits < 64 else True
    acc_frac = a.frac + b.frac - draw(st.integers(-2, 4))
    product = None
    if draw(st.booleans()):
        product = Fixed(draw(st.integers(2, pbits + 2)), a.frac + b.frac - draw(st.integers(0, 4)), True)
        acc_frac = product.frac - draw(st.integers(-2, 3))
    kind = draw(st.sampled_from(["sequential", "tree", "chunked"]))
    order = Order(kind, lanes=draw(st.integers(2, 5)) if kind == "chunked" else 1,
                  combine=draw(st.sampled_from(["sequential", "tree"])) if kind == "chunked" else "sequential",
                  level_bits=tuple(draw(st.lists(st.integers(2, 40), max_size=4))) if kind == "tree" and draw(st.booleans()) else None)
    zpa = draw(st.integers(a.min_code, a.max_code)) if draw(st.booleans()) else 0
    zpb = draw(st.integers(b.min_code, b.max_code)) if draw(st.booleans()) else 0
    p_rounding = draw(st.sampled_from([Rounding.FLOOR, Rounding.HALF_EVEN, Rounding.TOWARD_ZERO]))
    p_overflow = draw(st.sampled_from([Overflow.WRAP, Overflow.SATURATE]))
    # the product register's modes only with a product register (without one they are errors)
    return Datapath(a=a, b=b, a_zero_point=zpa, b_zero_point=zpb, product=product,
                    product_rounding=None if product is None else p_rounding,
                    product_overflow=None if product is None else p_overflow,
                    accumulator=Accumulator(Fixed(acc_bits, acc_frac, acc_signed), overflow=draw(st.sampled_from(ACC_OVF)),
                                            rounding=draw(st.sampled_from(list(Rounding)[:11]))),
                    order=order)


def _codes(draw, fmt, shape, biased):
    lo, hi = fmt.min_code, fmt.max_code
    if biased:   # push values to one end so partial sums run away and registers saturate
        edge = draw(st.sampled_from([lo, hi]))
        return np.array(draw(st.lists(st.integers(min(edge, (lo + hi) // 2), max(edge, (lo + hi) // 2)),
                                      min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))).reshape(shape)
    return np.array(draw(st.lists(st.integers(lo, hi), min_size=int(np.prod(shape)),
                                  max_size=int(np.prod(shape))))).reshape(shape)


@settings(max_examples=400)
@given(dp=datapaths(), M=st.integers(1, 3), K=st.integers(0, 12), N=st.integers(1, 3), biased=st.booleans(),
       preload=st.booleans(), data=st.data())
def test_gemm_matches_python_reference(dp, M, K, N, biased, preload, data):
    Ac = _codes(data.draw, dp.a, (M, K), biased)
    Bc = _codes(data.draw, dp.b, (K, N), biased)
    A = np.ldexp(Ac.astype(float), -dp.a.frac)
    B = np.ldexp(Bc.astype(float), -dp.b.frac)
    acc = dp.accumulator.fmt
    bias_codes = None
    if preload:
        lo, hi = max(acc.min_code, -2 ** 50), min(acc.max_code, 2 ** 50)   # keep exact partial sums in int64
        bias_codes = np.array(data.draw(st.lists(st.integers(lo, hi), min_size=N, max_size=N)))
    bias = None if bias_codes is None else np.ldexp(bias_codes.astype(float), -acc.frac)
    res = gemm(A, B, dp, bias=bias)
    fast = gemm(A, B, dp, bias=bias, stats=False)
    init = None if bias_codes is None else [[int(bias_codes[j]) for j in range(N)] for _ in range(M)]
    want = ref.gemm_ref(Ac.tolist(), Bc.tolist(), dp, init, N=N)
    for i in range(M):
        for j in range(N):
            accv, nov, exact, mx, mn = want[i][j]
            assert res.acc[i, j] == accv, (i, j, str(dp))
            assert fast.acc[i, j] == accv, (i, j, str(dp))
            assert res.overflow_count[i, j] == nov
            assert res.exact[i, j] == exact
            assert res.max_partial[i, j] == max(mx, -mn)


def test_saturation_order_matters_worked_example():
    # 100*100 + 100*100 - 100*100 with a 12-bit saturating accumulator: 10000 saturates to 2047 at once,
    # 2047 + 10000 stays 2047, then 2047 - 10000 = -7953 saturates to -2048 (per-add semantics).
    A = np.array([[100, 100, -100]])
    B = np.array([[100], [100], [100]])
    dp = Datapath(a="int8", b="int8", accumulator=Accumulator("int12", overflow="saturate"))
    r = gemm(A, B, dp, trace=(0, 0))
    assert r.acc[0, 0] == -2048
    assert r.traces[(0, 0)].tolist() == [0, 2047, 2047, -2048]
    assert r.overflow_count[0, 0] == 3 and r.exact[0, 0] == 10000
    wrap = gemm(A, B, dp.replace(accumulator=Accumulator("int12", overflow="wrap")))
    assert wrap.acc[0, 0] == 10000 - 4096 * 2   # 10000 mod 4096 in two's complement: 1808
    assert r.bits_needed[0, 0] == 16             # 20000 needs 16 signed bits


def test_trace_matches_the_batch_result_for_every_order():
    rng = np.random.default_rng(1)
    A = rng.integers(-128, 128, (3, 37))
    B = rng.integers(-128, 128, (37, 2))
    for order in [Order(), Order("tree"), Order("chunked", lanes=4), Order("chunked", lanes=3, combine="tree")]:
        dp = Datapath(accumulator=Accumulator("int16", overflow="saturate"), order=order)
        r = gemm(A, B, dp, trace=[(2, 1)])
        t = r.traces[(2, 1)]
        assert t[-1] == r.acc[2, 1]


def test_output_stage_requant_relu_and_output_register():
    A = np.array([[10, -20, 30]])
    B = np.array([[3], [4], [5]])
    # acc = 30 - 80 + 150 = 100, bias 7 added in the output stage -> 107; dyadic x3 >> 2 = 80.25 -> 80
    from fxsim.datapath import Requant
    dp = Datapath(accumulator=Accumulator("int32"), bias_preload=False,
                  output=OutputStage(requant=Requant.dyadic(3, 2), activation="relu", fmt="int8"))
    r = gemm(A, B, dp, bias=np.array([7]))
    assert r.acc[0, 0] == 100 and r.codes[0, 0] == 80
    r2 = gemm(-A, B, dp, bias=np.array([7]))    # -93 * 3 / 4 = -69.75 -> -70 -> relu -> 0
    assert r2.codes[0, 0] == 0
    r3 = gemm(A * 4, B, dp.replace(output=OutputStage(requant=Requant.dyadic(3, 2), fmt="int8")), bias=np.array([7]))
    assert r3.codes[0, 0] == 127                # 407 * 3 / 4 = 305.25 saturates in int8


def test_inputs_off_the_grid_or_out_of_range_are_rejected_clearly():
    dp = Datapath()
    with pytest.raises(ValueError, match=r"A\[0, 1\] = 0.5 is not on the grid of int8; quantize it first"):
        gemm(np.array([[1, 0.5]]), np.ones((2, 1)), dp)
    with pytest.raises(ValueError, match=r"B\[1, 0\] = 300 is outside int8"):
        gemm(np.ones((1, 2), dtype=np.int64), np.array([[1], [300]]), dp)
    with pytest.raises(ValueError, match=r"B\[1, 0\] = 300.0 is outside int8"):
        gemm(np.ones((1, 2)), np.array([[1.0], [300.0]]), dp)
    with pytest.raises(TypeError, match="datapath must be an fxsim Datapath"):
        gemm(np.ones((1, 2)), np.ones((2, 1)), "int8")
    with pytest.raises(ValueError, match="inner dimensions must match"):
        gemm(np.ones((1, 2)), np.ones((3, 1)), dp)


def test_widths_beyond_the_kernels_are_refused():
    dp = Datapath(a="int40", b="int40", accumulator=Accumulator("int64"))
    with pytest.raises(ValueError, match="products of int40 and int40 operands reach 79 bits"):
        gemm(np.full((1, 2), -2.0 ** 39), np.full((2, 1), -2.0 ** 39), dp)
    dp = Datapath(a="int32", b="int32", accumulator=Accumulator("int64"))
    with pytest.raises(ValueError, match="exact partial sums could reach 66 bits"):
        gemm(np.full((1, 8), -2.0 ** 31), np.full((8, 1), -2.0 ** 31), dp)


def test_64_bit_accumulator_wraps_and_saturates_like_int64():
    big = 2 ** 30
    A = np.full((1, 3), float(big))
    B = np.full((3, 1), float(2 ** 31 - 1))
    dp = Datapath(a="int32", b="int32", accumulator=Accumulator("int64", overflow="saturate"))
    r = gemm(A, B, dp)
    assert r.acc[0, 0] == 3 * big * (2 ** 31 - 1) and r.overflow_count[0, 0] == 0
    dp = Datapath(a="int32", b="int32", accumulator=Accumulator(Fixed(62, 0), overflow="saturate"))
    r = gemm(A, B, dp)
    assert r.acc[0, 0] == 2 ** 61 - 1 and r.overflow_count[0, 0] >= 1


@settings(max_examples=40)
@given(M=st.integers(1, 6), K=st.integers(0, 300), N=st.integers(1, 6), bits=st.integers(8, 24),
       ovf=st.sampled_from(ACC_OVF), order=st.sampled_from([Order(), Order("tree"), Order("chunked", lanes=3)]),
       drift=st.integers(-40, 40), seed=st.integers(0, 2 ** 32 - 1), preload=st.booleans())
def test_shortcuts_agree_with_the_cycle_accurate_kernel_over_long_k(M, K, N, bits, ovf, order, drift, seed, preload):
    # long K crosses many 64-wide blocks of the sequential enclosure test; a drift makes some outputs
    # creep to the rails late in the sum and others stay inside (the kernel itself is checked above)
    rng = np.random.default_rng(seed)
    A = np.clip(rng.integers(-128, 128, (M, K)) + drift, -128, 127)
    B = np.clip(rng.integers(-128, 128, (K, N)) + drift, -128, 127)
    dp = Datapath(accumulator=Accumulator(f"int{bits}", overflow=ovf), order=order)
    lim = 2 ** (bits - 1) - 1
    bias = rng.integers(-lim, lim + 1, N) if preload else None
    slow = gemm(A, B, dp, bias=bias)
    fast = gemm(A, B, dp, bias=bias, stats=False)
    np.testing.assert_array_equal(fast.acc, slow.acc)
    np.testing.assert_array_equal(fast.exact, slow.exact)
    i, j = M - 1, N - 1
    ref_acc = ref.gemm_ref(A[i:i + 1].tolist(), B[:, j:j + 1].tolist(), dp,
                           None if bias is None else [[int(bias[j])]], N=1)[0][0][0]
    assert slow.acc[i, j] == ref_acc


def test_64_bit_operand_with_small_values_matches_reference():
    A = np.array([[2 ** 40, -2 ** 41 + 3, 7]], dtype=np.int64)
    B = np.array([[100], [-128], [127]], dtype=np.int64)
    for ovf in ("wrap", "saturate"):
        dp = Datapath(a="int64", b="int8", accumulator=Accumulator("int48", overflow=ovf))
        want = ref.gemm_ref(A.tolist(), B.tolist(), dp)[0][0]
        r = gemm(A, B, dp)
        assert (r.acc[0, 0], r.overflow_count[0, 0], r.exact[0, 0]) == want[:3]


@st.composite
def output_stages(draw, N):
    from fxsim.datapath import Requant
    kind = draw(st.sampled_from(["none", "dyadic", "shift", "gemmlowp", "gemmlowp_single", "float32"]))
    per = draw(st.booleans())
    vec = (lambda s: np.array(draw(st.lists(s, min_size=N, max_size=N)))) if per else draw
    zp = draw(st.integers(-20, 20))
    rq = None
    if kind == "dyadic":
        rq = Requant.dyadic(vec(st.integers(1, 2 ** 20)), vec(st.integers(0, 30)),
                            draw(st.sampled_from([r for r in Rounding if r != Rounding.STOCHASTIC])), zp)
    elif kind == "shift":
        rq = Requant("shift", shift=vec(st.integers(0, 12)),
                     rounding=draw(st.sampled_from([r for r in Rounding if r != Rounding.STOCHASTIC])), zero_point=zp)
    elif kind in ("gemmlowp", "gemmlowp_single"):
        rq = Requant.gemmlowp(vec(st.integers(2 ** 30, 2 ** 31 - 1)), vec(st.integers(-31, 4)), zp,
                              single_rounding=kind == "gemmlowp_single")
    elif kind == "float32":
        rq = Requant.float32(vec(st.floats(1e-4, 4.0)), zp)
    act = draw(st.sampled_from([None, "relu", (-10, 60)]))
    fmt = draw(st.sampled_from([None, "int8", "uint8", "int4"])) if rq is not None else None
    ovf = draw(st.sampled_from([Overflow.SATURATE, Overflow.WRAP, Overflow.SATURATE_SYMMETRIC]))
    return OutputStage(bias_bits=draw(st.sampled_from([None, 12, 20])), requant=rq, activation=act, fmt=fmt,
                       overflow=ovf if fmt is not None else None)


@settings(max_examples=100)
@given(M=st.integers(1, 3), K=st.integers(0, 10), N=st.integers(1, 3), acc_bits=st.integers(10, 32),
       acc_ovf=st.sampled_from(ACC_OVF), preload=st.booleans(), seed=st.integers(0, 2 ** 32 - 1), data=st.data())
def test_output_stage_matches_python_reference(M, K, N, acc_bits, acc_ovf, preload, seed, data):
    stage = data.draw(output_stages(N))
    dp = Datapath(accumulator=Accumulator(f"int{acc_bits}", overflow=acc_ovf), bias_preload=preload, output=stage)
    rng = np.random.default_rng(seed)
    A = rng.integers(-128, 128, (M, K))
    B = rng.integers(-128, 128, (K, N))
    bits = acc_bits if preload else min(acc_bits, stage.bias_bits or acc_bits)
    bias = rng.integers(-2 ** (bits - 1), 2 ** (bits - 1), N)
    r = gemm(A, B, dp, bias=bias)
    init = [[int(bias[j]) for j in range(N)] for _ in range(M)] if preload else None
    want = ref.gemm_ref(A.tolist(), B.tolist(), dp, init, N=N)
    for i in range(M):
        for j in range(N):
            acc = want[i][j][0]
            assert r.acc[i, j] == acc
            assert r.codes[i, j] == ref.output_stage_one(acc, None if preload else int(bias[j]), dp, j), (str(dp), i, j)
