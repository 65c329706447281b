"""The one-pass sweep engine against per-width simulation (fxsim.ops.gemm) and the plain-Python reference:
every width, overflow mode and order, values, overflow counts, exact sums and bits needed; and run_sweep
taking that path with the same rows as the per-width one."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fxsim.datapath import Accumulator, Datapath, Order
from fxsim.formats import Fixed
from fxsim.modes import Overflow
from fxsim.ops.gemm import gemm
from fxsim.workflows.spec import parse_spec
from fxsim.workflows.sweep import run_sweep, sweep_configs
from fxsim.workflows.sweep_onepass import gemm_widths
from tests import reference_int_datapath as ref
from tests.workflow_specs import INT8_GEMM

MODES = [Overflow.WRAP, Overflow.SATURATE, Overflow.SATURATE_SYMMETRIC, Overflow.SATURATE_ZERO]
FIELDS = ("acc", "overflow_count", "exact", "max_partial", "bits_needed", "codes", "values", "acc_values")


@st.composite
def sweeps(draw):
    """A base datapath (operands, zero points, an optional product register, the accumulator's binary
    point and sign), an order, and a list of (width, overflow mode) accumulators."""
    a = Fixed(draw(st.integers(2, 10)), draw(st.integers(-1, 3)), draw(st.booleans()))
    b = Fixed(draw(st.integers(2, 10)), draw(st.integers(-1, 3)), draw(st.booleans()))
    signed = draw(st.booleans())
    frac = a.frac + b.frac - draw(st.integers(-2, 0))        # products left-aligned (or not shifted)
    product = None
    if draw(st.integers(0, 4)) == 0:                          # a product register: the per-output kernel
        product = Fixed(draw(st.integers(2, a.bits + b.bits + 1)), a.frac + b.frac - draw(st.integers(0, 3)), True)
        frac = product.frac - draw(st.integers(-2, 2))
    kind = draw(st.sampled_from(["sequential", "tree", "chunked"]))
    order = Order(kind, lanes=draw(st.integers(2, 5)) if kind == "chunked" else 1,
                  combine=draw(st.sampled_from(["sequential", "tree"])) if kind == "chunked" else "sequential")
    base = Datapath(a=a, b=b, product=product, order=order,
                    a_zero_point=draw(st.integers(a.min_code, a.max_code)) if draw(st.booleans()) else 0,
                    b_zero_point=draw(st.integers(b.min_code, b.max_code)) if draw(st.booleans()) else 0,
                    accumulator=Accumulator(Fixed(32, frac, signed), overflow="wrap"))
    widths = draw(st.lists(st.integers(2, 64 if signed else 63), min_size=1, max_size=6))
    modes = draw(st.lists(st.sampled_from(MODES), min_size=len(widths), max_size=len(widths)))
    dps = [base.replace(accumulator=Accumulator(Fixed(w, frac, signed), overflow=m)) for w, m in zip(widths, modes)]
    return dps


def _codes(draw, fmt, shape, biased):
    lo, hi = fmt.min_code, fmt.max_code
    if biased:          # push the codes to one end so that partial sums run away and registers overflow
        edge = draw(st.sampled_from([lo, hi]))
        lo, hi = min(edge, (lo + hi) // 2), max(edge, (lo + hi) // 2)
    n = int(np.prod(shape))
    return np.array(draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)), dtype=np.int64).reshape(shape)


@settings(max_examples=150)
@given(dps=sweeps(), M=st.integers(1, 6), K=st.integers(0, 30), N=st.integers(1, 6), biased=st.booleans(),
       preload=st.booleans(), data=st.data())
def test_one_pass_equals_per_width_gemm_and_the_python_reference(dps, M, K, N, biased, preload, data):
    base = dps[0]
    Ac = _codes(data.draw, base.a, (M, K), biased)
    Bc = _codes(data.draw, base.b, (K, N), biased)
    A = np.ldexp(Ac.astype(float), -base.a.frac)
    B = np.ldexp(Bc.astype(float), -base.b.frac)
    bias_codes = None
    if preload:         # a bias every swept width holds
        narrow = min(dps, key=lambda dp: dp.accumulator.fmt.bits).accumulator.fmt
        bias_codes = np.array(data.draw(st.lists(st.integers(max(narrow.min_code, -2 ** 40),
                                                             min(narrow.max_code, 2 ** 40)),
                                                 min_size=N, max_size=N)))
    frac = base.accumulator.fmt.frac
    bias = None if bias_codes is None else np.ldexp(bias_codes.astype(float), -frac)
    got = gemm_widths(A, B, dps, bias=bias)
    init = None if bias_codes is None else [[int(bias_codes[j]) for j in range(N)] for _ in range(M)]
    for dp, r in zip(dps, got):
        want = gemm(A, B, dp, bias=bias)                       # per-width simulation, stats=True
        for f in FIELDS:
            assert np.array_equal(getattr(r, f), getattr(want, f)), (f, str(dp))
        py = ref.gemm_ref(Ac.tolist(), Bc.tolist(), dp, init, N=N)
        for i in range(M):
            for j in range(N):
                accv, nov, exact, mx, mn = py[i][j]
                assert (r.acc[i, j], r.overflow_count[i, j], r.exact[i, j]) == (accv, nov, exact), (i, j, str(dp))
                assert r.max_partial[i, j] == max(mx, -mn)
                assert r.bits_needed[i, j] == ref_bits(mx, mn, dp.accumulator.fmt.signed)


def ref_bits(mx, mn, signed):
    """The narrowest register holding every value in [mn, mx] (two's complement when signed or when
    a value is negative), in Python ints."""
    if signed or mn < 0:
        return max(mx.bit_length(), max(0, -mn - 1).bit_length()) + 1
    return max(mx.bit_length(), 1)


@pytest.mark.parametrize("order", [Order("sequential"), Order("chunked", lanes=3),
                                   Order("chunked", lanes=6, combine="tree"), Order("tree")])
def test_one_pass_across_blocks_of_rows_and_columns(order):
    """Shapes that cross the vectorised kernel's row and column blocks, INT8 data whose partial sums leave
    the narrow widths in some blocks only (one column range of large weights)."""
    rng = np.random.default_rng(7)
    A = rng.integers(-128, 128, (11, 150))
    B = rng.integers(-6, 7, (150, 300))
    B[:, 200:230] = rng.integers(100, 128, (150, 30))
    dps = [Datapath(accumulator=Accumulator(Fixed(w), overflow=m), order=order)
           for w in (10, 14, 18, 22, 26) for m in MODES]
    bias = rng.integers(-300, 300, 300)
    for dp, r in zip(dps, gemm_widths(A, B, dps, bias=bias)):
        want = gemm(A, B, dp, bias=bias)
        for f in FIELDS:
            assert np.array_equal(getattr(r, f), getattr(want, f)), (f, str(dp))


def test_one_pass_rejects_what_it_does_not_sweep():
    base = Datapath()
    with pytest.raises(ValueError, match="differs from datapaths"):
        gemm_widths(np.zeros((1, 1)), np.zeros((1, 1)), [base, base.replace(a="int4")])
    with pytest.raises(ValueError, match="level_bits"):
        gemm_widths(np.zeros((1, 1)), np.zeros((1, 1)), [base.replace(order=Order("tree", level_bits=(8,)))])


def _key(res):
    return json.dumps({k: v for k, v in res.items() if k != "engine"}, sort_keys=True, default=str)


def _sweep(spec, configs, **kw):
    """run_sweep's result and the engine that ran."""
    info = {}
    res = run_sweep(spec, configs, progress=False, info=info, **kw)
    res["engine"] = info["engine"]
    return res


def test_run_sweep_takes_one_pass_with_the_per_width_rows():
    """Same rows as simulating each width (bias rows that fail at narrow widths included), and the
    result says which engine ran."""
    spec = parse_spec(INT8_GEMM)
    configs = sweep_configs(range(6, 20, 3), ("saturate", "wrap", "saturate_zero", "saturate_symmetric"),
                            ("sequential", "chunked", "tree"), lanes=3)
    fast = _sweep(spec, configs)
    slow = _sweep(spec, configs, workers=1, engine="per-width")
    assert fast["engine"] == "one-pass" and slow["engine"] == "per-width"
    assert _key(fast) == _key(slow)
    assert any(r["error"] for r in fast["rows"]) and any(not r["error"] for r in fast["rows"])
    assert len({r["overflow_events"] for r in fast["rows"]}) > 2


def test_per_width_sweep_in_processes_and_on_dask_equals_one_pass():
    """The per-width engine (the operands shipped once per worker as codes) in a process pool and on a
    local Dask cluster gives the one-pass rows."""
    from distributed import LocalCluster
    spec = parse_spec(INT8_GEMM)
    configs = sweep_configs(range(12, 17), ("saturate", "wrap"), ("sequential", "chunked"), lanes=3)
    one = _sweep(spec, configs)
    pooled = _sweep(spec, configs, workers=2)          # asked for processes: per width
    assert one["engine"] == "one-pass" and pooled["engine"] == "per-width"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        dask = _sweep(spec, configs, scheduler=cluster.scheduler_address, engine="per-width")
    assert _key(one) == _key(pooled) == _key(dask)
    with pytest.raises(ValueError, match="engine"):
        _sweep(spec, configs, engine="fastest")
    with pytest.raises(ValueError, match="workers > 1 and a scheduler apply to engine='per-width'"):
        _sweep(spec, configs, workers=2, engine="one-pass")


def test_sweeps_the_pass_does_not_take_fall_back_to_per_width():
    back = parse_spec(INT8_GEMM.replace('op = "gemm"', 'op = "gemm"\npass = "backward_input"').replace("bias = true",
                                                                                                     "bias = false"))
    res = _sweep(back, sweep_configs([12, 16]))
    assert res["engine"] == "per-width" and len(res["rows"]) == 4
    with pytest.raises(ValueError, match="one-pass"):
        _sweep(back, sweep_configs([12, 16]), engine="one-pass")


_CONV = ('[layer]\nop = "conv2d"\n[shape]\nbatch = 2\nin_channels = 4\nheight = 6\nwidth = 5\nout_channels = 6\n'
         'kernel = 3\ngroups = {g}\npadding = 1\nstride = {s}\n[data]\nseed = 1\ndistribution = "normal"\n'
         'std = {std}\nbias = {bias}\n[datapath]\na = "{a}"\nb = "e4m3"\n{zp}[datapath.accumulator]\n'
         'format = "e5m10"\noverflow = "ieee"\nrounding = "half_even"\n')


@pytest.mark.parametrize("text", [
    _CONV.format(g=1, s=1, std=0.01, bias="true", a="e4m3", zp=""),
    _CONV.format(g=2, s=2, std=0.01, bias="false", a="e4m3", zp=""),
    _CONV.format(g=2, s=1, std=20, bias="true", a="int8", zp="a_zero_point = 3\n"),
    INT8_GEMM.replace('a = "int8"', 'a = "e4m3"').replace("std = 60", "std = 0.02").replace(
        'format = "int14"', 'format = "e5m10"').replace('overflow = "saturate"', 'overflow = "ieee"'),
], ids=["conv", "conv-groups-stride", "conv-int8-zero-point", "gemm"])
def test_float_sweep_exact_sums_equal_a_kulisch_accumulator_through_the_layer(text):
    """The float sweeps' exact reference (fxsim.engines.exact on the lowered GEMM) equals the layer run through a
    63-bit fixed-point (Kulisch) accumulator of the float engine, bit for bit and in the same layout."""
    from fxsim.formats import Float
    from fxsim.workflows.spec import make_data, run_layer
    from fxsim.workflows.sweep import kulisch_exact
    spec = parse_spec(text)
    data = make_data(spec)
    base = spec.datapath
    frac = sum(-int(np.log2(f.min_subnormal)) if isinstance(f, Float) else f.frac for f in (base.a, base.b))
    frac = max(frac, -int(np.log2(base.accumulator.fmt.min_subnormal)))
    wide = base.replace(accumulator=Accumulator(Fixed(63, frac, True), overflow="wrap", rounding="floor"),
                        product=None, fused=False)
    want = run_layer(spec, wide, data=data)[0].acc_values
    got = kulisch_exact(spec, data)
    assert np.array_equal(got, want) and got.strides == want.strides


_INT_CONV = ('[layer]\nop = "conv2d"\n[shape]\nbatch = 2\nin_channels = 3\nheight = 7\nwidth = 6\nout_channels = 5\n'
             'kernel = 3\ngroups = {g}\npadding = 1\nstride = {s}\n[data]\nseed = 3\ndistribution = "normal"\n'
             'std = 50\nbias = true\n[datapath]\na = "uint8"\nb = "int8"\na_zero_point = 7\n[datapath.accumulator]\n'
             'format = "int16"\noverflow = "saturate"\n[output]\nformat = "int8"\n[output.requant]\n'
             'kind = "dyadic"\nmultiplier = 5\nshift = 9\n')


def test_conv_sweeps_take_one_pass_with_the_per_width_rows():
    """A conv2d layer (zero point, padding, stride, bias, requant): the one pass on its patch matrix,
    laid out as conv2d lays out its results, gives the per-width rows; grouped convolutions run per width."""
    spec = parse_spec(_INT_CONV.format(g=1, s=2))
    configs = sweep_configs(range(8, 22, 2), ("saturate", "wrap"), ("sequential", "chunked", "tree"), lanes=4)
    fast = _sweep(spec, configs)
    slow = _sweep(spec, configs, workers=1, engine="per-width")
    assert fast["engine"] == "one-pass" and _key(fast) == _key(slow)
    assert len({r["overflow_events"] for r in fast["rows"]}) > 2
    grouped = parse_spec(_INT_CONV.format(g=1, s=1).replace("in_channels = 3", "in_channels = 4").replace(
        "out_channels = 5", "out_channels = 6").replace("groups = 1", "groups = 2"))
    assert _sweep(grouped, sweep_configs([12, 16]))["engine"] == "per-width"


def test_per_channel_requant_sweeps_take_one_pass():
    spec = parse_spec(INT8_GEMM.replace("multiplier = 3", "multiplier = [3, 5, 7, 2]"))
    configs = sweep_configs(range(10, 18, 2), ("saturate", "wrap"), ("sequential", "chunked"), lanes=3)
    fast = _sweep(spec, configs)
    slow = _sweep(spec, configs, workers=1, engine="per-width")
    assert fast["engine"] == "one-pass" and _key(fast) == _key(slow)


def test_per_channel_requant_conv_sweeps_take_one_pass():
    spec = parse_spec(_INT_CONV.format(g=1, s=1).replace("multiplier = 5", "multiplier = [5, 3, 9, 4, 6]"))
    configs = sweep_configs(range(10, 18, 3), ("saturate", "wrap"), ("sequential", "tree"))
    fast = _sweep(spec, configs)
    slow = _sweep(spec, configs, workers=1, engine="per-width")
    assert fast["engine"] == "one-pass" and _key(fast) == _key(slow)
