"""Every Python entry point refuses what it cannot honour with a typed error naming the argument, the value
and what is allowed, and computes exactly what it accepts (no wrapped shifts, no clipped requantization,
no negative labels counted from the end). One row per bad input."""
from fractions import Fraction

import numpy as np
import pytest

from fxsim.bounds import data_bits, l1_bits, symmetric_bits, worst_case_bits
from fxsim.datapath import Accumulator, Datapath, Order, OutputStage, Requant
from fxsim.errors import FxsimError, InvalidArgument, InvalidType
from fxsim.formats import Fixed
from fxsim.ops.conv import conv2d
from fxsim.ops.gemm import gemm

NAN, INF = float("nan"), float("inf")


def _gemm_dp(requant=None, fmt="int8", overflow="saturate"):
    return Datapath(accumulator=Accumulator("int32", overflow="wrap", rounding="floor"),
                    output=OutputStage(requant=requant, fmt=fmt, overflow=overflow if fmt is not None else None))


def _conv():
    x = np.zeros((1, 2, 4, 4))
    w = np.zeros((4, 2, 3, 3))
    return x, w, _gemm_dp(fmt=None)


BAD = [
    # requantization
    pytest.param(lambda: Requant.dyadic(1, -63), InvalidArgument, r"requant shift must lie in -62\.\.62.*got -63",
                 id="dyadic-shift-63"),
    pytest.param(lambda: Requant("shift", shift=-100), InvalidArgument, r"shift must lie in -62\.\.62", id="shift-100"),
    pytest.param(lambda: Requant.dyadic(1, 0, zero_point=2 ** 70), InvalidArgument, r"requant zero_point must be an "
                 r"integer in -2147483648\.\.2147483647, got 1180591620717411303424", id="huge-zero-point"),
    pytest.param(lambda: Requant.dyadic(1, 0, zero_point=1.0), InvalidType, r"requant zero_point must be an integer",
                 id="float-zero-point"),
    pytest.param(lambda: Requant.float32(NAN), InvalidArgument, r"requant scale must be finite and > 0, got nan",
                 id="nan-scale"),
    pytest.param(lambda: Requant.float32(INF), InvalidArgument, r"requant scale must be finite and > 0, got inf",
                 id="inf-scale"),
    pytest.param(lambda: Requant.float32(-0.5), InvalidArgument, r"requant scale must be finite and > 0", id="neg-scale"),
    pytest.param(lambda: Requant.float32(1e-60), InvalidArgument, r"leaves float32's range", id="tiny-scale"),
    pytest.param(lambda: Requant.float32([0.5, NAN]), InvalidArgument, r"finite and > 0, got nan",
                 id="nan-per-channel-scale"),
    pytest.param(lambda: Requant.dyadic(1.5, 3), InvalidType, r"requant multiplier must be an integer, got 1\.5",
                 id="float-multiplier"),
    pytest.param(lambda: Requant.dyadic(3, "7"), InvalidType, r"requant shift must be a number", id="string-shift"),
    pytest.param(lambda: Requant.dyadic([1, 2], [3, 4, 5]), InvalidArgument, r"multiplier \(2 entries, shape \(2,\)\) "
                 r"and shift \(3 entries, shape \(3,\)\) must have the same shape", id="per-channel-lengths"),
    pytest.param(lambda: Requant.dyadic([], 3), InvalidArgument, r"scalar or a non-empty array", id="empty-multiplier"),
    pytest.param(lambda: gemm(np.ones((2, 3)), np.ones((3, 4)), _gemm_dp(Requant.dyadic([[1, 2, 3, 4]] * 3, 4))),
                 InvalidArgument, r"requant multiplier of shape \(3, 4\) does not broadcast to the output shape "
                 r"\(2, 4\)", id="per-channel-2d-wrong"),
    pytest.param(lambda: Requant("dyadik"), InvalidArgument, r"requant kind must be one of dyadic", id="kind"),
    pytest.param(lambda: Requant("dyadic", 1, 3, scale=0.5), InvalidArgument, r"scale applies to kind 'float32' only",
                 id="scale-on-dyadic"),
    pytest.param(lambda: Requant.from_scale(NAN), InvalidArgument, r"scale must be > 0, got nan|scale must be a finite",
                 id="from-scale-nan"),
    pytest.param(lambda: gemm(np.ones((2, 3)), np.ones((3, 4)), _gemm_dp(Requant.dyadic([1, 2, 3], 4))),
                 InvalidArgument, r"per-channel requant multiplier has 3 entries for 4 output channels",
                 id="per-channel-wrong-length"),
    # strings and numbers taken as booleans, strings taken as lists
    pytest.param(lambda: Datapath(bias_preload="false"), InvalidType, r"bias_preload must be true or false.*'false'",
                 id="bias-preload-string"),
    pytest.param(lambda: Datapath(fused="no"), InvalidType, r"fused must be true or false.*'no'", id="fused-string"),
    pytest.param(lambda: Datapath(fused=1), InvalidType, r"fused must be true or false", id="fused-int"),
    pytest.param(lambda: Accumulator("fp32", overflow="ieee", rounding="half_even", flush_subnormals="yes"),
                 InvalidType, r"flush_subnormals must be true or false", id="flush-string"),
    pytest.param(lambda: Order("tree", level_bits="24"), InvalidType, r"level_bits must be a list of register widths.*"
                 r"'24'", id="level-bits-string"),
    pytest.param(lambda: Order("tree", level_bits=(20.5,)), InvalidType, r"level_bits\[0\] must be an integer",
                 id="level-bits-float"),
    pytest.param(lambda: Accumulator("fp32", overflow="ieee", rounding="half_even", seed=1.7), InvalidType,
                 r"accumulator seed must be an integer", id="acc-seed-float"),
    # options that do not apply, sizes that cannot be honoured
    pytest.param(lambda: Order("sequential", lanes=4), InvalidArgument, r"lanes=4 applies to order='chunked' only",
                 id="lanes-sequential"),
    pytest.param(lambda: Order("tree", combine="tree"), InvalidArgument, r"combine='tree' applies to order='chunked'",
                 id="combine-tree-order"),
    pytest.param(lambda: Order("sequential", level_bits=(20,)), InvalidArgument, r"level_bits applies to "
                 r"order='tree' only", id="level-bits-sequential"),
    pytest.param(lambda: Order("chunked", lanes=10 ** 9), InvalidArgument, r"lanes must be an integer in 1\.\.4096, "
                 r"got 1000000000", id="lanes-1e9"),
    pytest.param(lambda: Order("chunked", lanes=True), InvalidType, r"lanes must be an integer", id="lanes-bool"),
    pytest.param(lambda: OutputStage(activation=(0.5, 3)), InvalidArgument, r"activation must be None, 'relu' or a "
                 r"\(lo, hi\) pair of integer output codes", id="activation-float"),
    pytest.param(lambda: OutputStage(bias_bits=True), InvalidType, r"bias_bits must be an integer", id="bias-bits-bool"),
    pytest.param(lambda: OutputStage(requant="dyadic"), InvalidType, r"requant must be an fxsim Requant",
                 id="requant-string"),
    pytest.param(lambda: Datapath(order={"kind": "tree"}), InvalidType, r"order must be an fxsim Order",
                 id="order-dict"),
    # accumulator bounds
    pytest.param(lambda: worst_case_bits("int8", "int8", 0), InvalidArgument, r"K \(terms per dot product\) must be "
                 r"an integer >= 1, got 0", id="bounds-k0"),
    pytest.param(lambda: worst_case_bits("int8", "int8", 2.0), InvalidType, r"K .* must be an integer", id="bounds-kf"),
    pytest.param(lambda: worst_case_bits("e4m3", "int8", 4), InvalidArgument, r"a must be a fixed-point or integer "
                 r"format.*e4m3", id="bounds-float-format"),
    pytest.param(lambda: worst_case_bits("int99", "int8", 4), InvalidArgument, r"int99", id="bounds-unknown-format"),
    pytest.param(lambda: Datapath(a="int99"), InvalidArgument, r"int99", id="datapath-unknown-format"),
    pytest.param(lambda: Datapath(a=8), InvalidType, r"a must be a format", id="datapath-format-int"),
    # traces
    pytest.param(lambda: gemm(np.ones((2, 3)), np.ones((3, 4)), _gemm_dp(fmt=None), trace="0,0"), InvalidType,
                 r"trace must be an index tuple \(i, j\) or a list of them, got the string '0,0'", id="gemm-trace-str"),
    pytest.param(lambda: gemm(np.ones((2, 3)), np.ones((3, 4)), _gemm_dp(fmt=None), trace=(2, 0)), InvalidArgument,
                 r"trace index \(2, 0\) is outside the output shape \(2, 4\)", id="gemm-trace-range"),
    pytest.param(lambda: conv2d(*_conv(), trace=(0, 9, 0, 0)), InvalidArgument,
                 r"trace index \(0, 9, 0, 0\) is outside the output shape \(1, 4, 2, 2\)", id="conv-trace-channel"),
    pytest.param(lambda: conv2d(*_conv(), trace=(0, -1, 0, 0)), InvalidArgument,
                 r"trace index \(0, -1, 0, 0\) is outside", id="conv-trace-negative"),
    pytest.param(lambda: conv2d(*_conv(), trace="0,0,0,0"), InvalidType, r"got the string", id="conv-trace-str"),
    pytest.param(lambda: conv2d(*_conv(), groups=0), InvalidArgument, r"groups must be", id="conv-groups0"),
    pytest.param(lambda: conv2d(*_conv(), stride=0), InvalidArgument, r"stride must be an integer >= 1, got 0", id="conv-stride0"),
    # NaN and out-of-range values
    pytest.param(lambda: gemm(np.array([[1.0, NAN]]), np.ones((2, 1)), _gemm_dp(fmt=None)), InvalidArgument,
                 r"A\[0, 1\] = nan is not on the grid of int8", id="gemm-nan"),
]


@pytest.mark.parametrize("call,kind,pattern", BAD)
def test_bad_input_is_a_typed_error_naming_argument_value_and_allowed(call, kind, pattern):
    with pytest.raises(kind, match=pattern) as info:
        call()
    assert isinstance(info.value, FxsimError)                 # the CLI maps exactly these to exit 2
    assert isinstance(info.value, (ValueError, TypeError))    # `except ValueError` keeps working


def _quantized_layer_inputs():
    from fxsim.training.recipes import LogQuantizer, TensorQuantizer
    return [pytest.param(lambda: TensorQuantizer("e4m3")(np.array([1.0, NAN])), id="tensor-quantizer-nan"),
            pytest.param(lambda: TensorQuantizer("int8")(np.array([[INF, 1.0]])), id="tensor-quantizer-inf"),
            pytest.param(lambda: LogQuantizer()(np.array([0.5, -INF])), id="log-quantizer-inf")]


@pytest.mark.parametrize("call", _quantized_layer_inputs())
def test_nan_or_inf_into_a_quantized_layer_is_refused(call):
    with pytest.raises(InvalidArgument, match=r"tensor entering a quantized layer holds 1 non-finite value"):
        call()


def test_nan_into_a_training_layer_names_the_problem():
    from fxsim.training.layers import Linear
    from fxsim.training.recipes import get_recipe
    layer = Linear(3, 2)
    layer.configure(get_recipe("int8"), seed=0)
    with pytest.raises(InvalidArgument, match="non-finite"):
        layer.forward(np.array([[1.0, NAN, 0.0]]))


@pytest.mark.parametrize("labels,pattern", [
    (np.array([0, -1]), r"labels\[1\] = -1 is not a class index in 0\.\.2"),
    (np.array([0, 3]), r"labels\[1\] = 3 is not a class index in 0\.\.2"),
    (np.array([0.0, 1.0]), r"labels must be integer class indices"),
    (np.array([0, 1, 2]), r"labels must have shape \(2,\)"),
])
def test_cross_entropy_refuses_labels_that_are_not_classes(labels, pattern):
    from fxsim.training.layers import softmax_cross_entropy
    with pytest.raises(FxsimError, match=pattern):
        softmax_cross_entropy(np.zeros((2, 3)), labels)


def test_cross_entropy_of_valid_labels_is_unchanged():
    from fxsim.training.layers import softmax_cross_entropy
    logits = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    loss, g = softmax_cross_entropy(logits, np.array([1, 2]))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-(np.log(p[0, 1]) + np.log(p[1, 2])) / 2, rel=1e-15)
    p[0, 1] -= 1
    p[1, 2] -= 1
    assert np.allclose(g, p / 2, rtol=0, atol=1e-17)


@pytest.mark.parametrize("big", [1e308, 1e42, -1e300])
def test_nvfp4_refuses_a_tensor_scale_beyond_float32(big):
    from fxsim.engines.block import block_quantize
    x = np.array([big] + [1.0] * 15)
    with pytest.raises(InvalidArgument, match=r"per-tensor scale .* outside float32's range"):
        block_quantize(x, "nvfp4")


def test_nvfp4_still_quantizes_the_largest_tensor_float32_can_scale():
    from fxsim.engines.block import block_quantize
    x = np.array([1e41] + [0.0] * 15)           # 1e41 / (6 * 448) = 3.7e37 < float32 max
    r = block_quantize(x, "nvfp4")
    assert np.all(np.isfinite(r.dequantize()))


# ---- exact results where the old code wrapped or clipped -------------------------------------------------

def _register(v: int, bits: int, mode: str) -> int:
    """A signed ``bits``-wide register on a Python integer (the reference)."""
    hi, lo = (1 << (bits - 1)) - 1, -(1 << (bits - 1))
    if mode == "saturate":
        return min(max(v, lo), hi)
    v &= (1 << bits) - 1
    return v - (1 << bits) if v > hi else v


def _round_half_even(q: Fraction) -> int:
    f = q.numerator // q.denominator
    r = q - f
    return f + (1 if r > Fraction(1, 2) or (r == Fraction(1, 2) and f % 2) else 0)


@pytest.mark.parametrize("mult,shift,zp,fmt,mode", [
    (1, -62, 0, "int8", "saturate"),        # was: the left shift wrapped to 0 / -128
    (1, -62, 0, "int8", "wrap"),
    (3, -61, 5, "int64", "saturate"),       # 3 * 2**61 * acc leaves int64: saturates at 2**63 - 1
    (3, -61, 0, "int64", "wrap"),
    (-5, -60, 0, "int16", "saturate"),
    (7, -40, -3, "int32", "wrap"),
    (1234, 20, 0, "int8", "saturate"),      # an ordinary right shift stays what it was
])
def test_dyadic_left_shifts_are_exact_then_the_output_register_applies(mult, shift, zp, fmt, mode):
    acc = np.array([[1, -1, 2, 3, -7, 0, 100, 12345]])
    dp = Datapath(a="int16", accumulator=Accumulator("int32", overflow="wrap", rounding="floor"),
                  output=OutputStage(requant=Requant.dyadic(mult, shift, zero_point=zp), fmt=fmt, overflow=mode))
    got = gemm(acc.astype(np.float64).reshape(-1, 1), np.ones((1, 1)), dp).codes.ravel()
    bits = int(fmt[3:])
    want = [_register(_round_half_even(Fraction(a * mult) / Fraction(2) ** shift) + zp, bits, mode)
            for a in acc.ravel().tolist()]
    assert got.tolist() == want


@pytest.mark.parametrize("scale,fmt,mode", [
    (2.0 ** 62, "int64", "saturate"),       # was: clipped at 2**62
    (2.0 ** 61 * 1.5, "int64", "saturate"),
    (2.0 ** 62, "int64", "wrap"),
    (2.0 ** 40, "int8", "saturate"),
    (0.37, "int8", "saturate"),
])
def test_float32_requantization_into_wide_outputs_is_exact(scale, fmt, mode):
    acc = np.array([1, -1, 2, 3, -7, 0, 100, 12345], dtype=np.int64)
    dp = Datapath(a="int16", accumulator=Accumulator("int32", overflow="wrap", rounding="floor"),
                  output=OutputStage(requant=Requant.float32(scale), fmt=fmt, overflow=mode))
    got = gemm(acc.astype(np.float64).reshape(-1, 1), np.ones((1, 1)), dp).codes.ravel()
    bits = int(fmt[3:])
    want = []
    for a in acc.tolist():
        y = np.float32(a) * np.float32(scale)        # float32 arithmetic, then round half even
        want.append(_register(_round_half_even(Fraction(float(y))), bits, mode))
    assert got.tolist() == want


def test_float32_requantization_beyond_int64_without_an_output_register_is_an_error():
    dp = Datapath(accumulator=Accumulator("int32", overflow="wrap", rounding="floor"),
                  output=OutputStage(requant=Requant.float32(2.0 ** 62)))
    with pytest.raises(InvalidArgument, match="exceed int64 and there is no output register"):
        gemm(np.array([[3.0]]), np.ones((1, 1)), dp)


def test_accumulator_bounds_take_format_names():
    W = np.array([[3, -4], [127, 1], [-128, 0]])
    assert worst_case_bits("int8", "int4", 100) == worst_case_bits(Fixed(8), Fixed(4), 100)
    assert symmetric_bits("uint8", "int8", 9) == symmetric_bits(Fixed(8, 0, False), Fixed(8), 9)
    assert data_bits(W, "int8").tolist() == data_bits(W, Fixed(8)).tolist()
    assert l1_bits(W, "int8").tolist() == l1_bits(W, Fixed(8)).tolist()
    # independent: int8 x int4 over K = 100 spans [-100*128*7 - ..., 100*128*8] -> Python ints
    lo, hi = 100 * min(-128 * 7, 127 * -8), 100 * (-128 * -8)
    w = next(w for w in range(2, 64) if -(1 << (w - 1)) <= lo and hi < (1 << (w - 1)))
    assert worst_case_bits("int8", "int4", 100) == w


def test_conv2d_traces_every_valid_index_in_every_group():
    rng = np.random.default_rng(1)
    x = rng.integers(-8, 8, (1, 4, 5, 5)).astype(np.float64)
    w = rng.integers(-8, 8, (4, 2, 3, 3)).astype(np.float64)
    dp = _gemm_dp(fmt=None)
    want = [(0, 0, 0, 0), (0, 3, 2, 1), (0, 2, 1, 2)]
    r = conv2d(x, w, dp, groups=2, trace=want)
    assert sorted(r.traces) == sorted(want)
    for t in want:
        assert r.traces[t][-1] == r.acc[t]


# ---- specs: every key checked with the key, the value, what is allowed and the line -------------------

from fxsim.workflows.spec import SpecError, check_layer_size, layer_bytes, load_spec, make_data, parse_spec  # noqa: E402
from tests.workflow_specs import INT8_GEMM  # noqa: E402

CONV = """
[layer]
op = "conv2d"
[shape]
batch = 1
in_channels = 8
height = 10
width = 10
out_channels = 8
kernel = 3
padding = 1
[data]
seed = 3
[datapath.accumulator]
format = "int18"
overflow = "saturate"
"""


@pytest.mark.parametrize("text,edit,pattern", [
    pytest.param(INT8_GEMM, ('b = "int8"', 'b = "int8"\nbias_preload = "false"'),
                 r"<spec>:16: datapath.bias_preload: bias_preload must be true or false .*'false'", id="bias-preload"),
    pytest.param(INT8_GEMM, ('b = "int8"', 'b = "int8"\nfused = "no"'),
                 r"<spec>:16: datapath.fused: fused must be true or false .*'no'", id="fused"),
    pytest.param(INT8_GEMM, ('overflow = "saturate"', 'overflow = "saturate"\n[datapath.order]\nkind = "tree"\n'
                                                      'level_bits = "24"'),
                 r"<spec>:21: datapath.order.level_bits: level_bits must be a list of register widths", id="level-bits"),
    pytest.param(INT8_GEMM, ("seed = 5", "seed = 1.7"), r"<spec>:9: data.seed = 1.7 is not allowed; expected an "
                 r"integer >= 0", id="seed-float"),
    pytest.param(INT8_GEMM, ("seed = 5", "seed = -1"), r"data.seed = -1 is not allowed", id="seed-negative"),
    pytest.param(INT8_GEMM, ("std = 60", "std = -2"), r"data.std = -2 is not allowed; expected a finite number > 0",
                 id="std-negative"),
    pytest.param(INT8_GEMM, ("bias = true", 'bias = "yes"'), r"data.bias = 'yes' is not allowed; expected true or "
                 r"false for random data", id="bias-string-random"),
    pytest.param(INT8_GEMM, ('overflow = "saturate"', 'overflow = "saturate"\n[datapath.order]\nlanes = 4'),
                 r"<spec>:20: datapath.order.lanes = 4 is not allowed; expected nothing: lanes applies to kind = "
                 r"\"chunked\" only", id="lanes-sequential"),
    pytest.param(INT8_GEMM, ('overflow = "saturate"', 'overflow = "saturate"\n[datapath.order]\nkind = "tree"\n'
                                                      'combine = "tree"'),
                 r"datapath.order.combine = 'tree' is not allowed; expected nothing: combine applies", id="combine"),
    pytest.param(INT8_GEMM, ('overflow = "saturate"', 'overflow = "saturate"\n[datapath.order]\nkind = "chunked"\n'
                                                      'lanes = 1000000000'),
                 r"datapath.order.lanes: lanes must be an integer in 2\.\.4096, got 1000000000", id="lanes-1e9"),
    pytest.param(INT8_GEMM, ('b = "int8"', 'b = "int8"\na_zero_point = 1.5'),
                 r"datapath.a_zero_point: a_zero_point must be an integer", id="zero-point-float"),
    pytest.param(INT8_GEMM, ("shift = 7", "shift = 7\nzero_point = 3000000000"),
                 r"output.requant.zero_point: zero_point must be an integer in -2147483648\.\.2147483647",
                 id="requant-zero-point"),
    pytest.param(INT8_GEMM, ("shift = 7", "shift = -63"), r"output.requant.kind: requant shift must lie in -62\.\.62",
                 id="requant-shift"),
    pytest.param(CONV, ("padding = 1", "padding = 1\nstride = 0"), r"<spec>:12: shape.stride = 0 is not allowed; "
                 r"expected a positive integer", id="stride-0"),
    pytest.param(CONV, ("padding = 1", "padding = 1\ngroups = 0"), r"<spec>:12: shape.groups = 0 is not allowed",
                 id="groups-0"),
    pytest.param(CONV, ("padding = 1", "padding = 1\ngroups = 3"), r"shape.groups = 3 is not allowed; expected a "
                 r"divisor of shape.in_channels = 8", id="groups-3"),
    pytest.param(CONV, ("padding = 1", "padding = -1"), r"shape.padding = -1 is not allowed; expected an integer >= 0",
                 id="padding-negative"),
    pytest.param(CONV, ("kernel = 3", "kernel = 30"), r"shape.kernel = 30 is not allowed; expected a kernel that fits",
                 id="kernel-too-big"),
    pytest.param(CONV, ("height = 10\nwidth = 10", "height = 100000\nwidth = 100000"), r"\[shape\] .*needs about [0-9.]+ [TP]iB "
                 r"\(patch matrix [0-9.]+ [TP]iB\), more than this machine's", id="absurd-conv"),
    pytest.param(INT8_GEMM, ("M = 3\nK = 20", "M = 10000000\nK = 10000000"), r"needs about .*more than this machine's", id="absurd-gemm"),
])
def test_spec_values_are_checked_with_key_value_allowed_and_line(text, edit, pattern):
    assert edit[0] in text
    with pytest.raises(SpecError, match=pattern) as info:
        parse_spec(text.replace(*edit, 1))
    assert isinstance(info.value, FxsimError)


def test_layer_size_is_counted_before_anything_is_allocated():
    spec = parse_spec(CONV)
    parts = layer_bytes(spec)
    # 1 x 8 x 10 x 10 input, 8 x 8 x 3 x 3 weights, 100 output pixels x 72 patch columns, 800 outputs
    assert parts == {"operand a": 8 * 800, "operand b": 8 * 576, "patch matrix": 8 * 100 * 72, "outputs": 32 * 800}
    check_layer_size(spec, memory=sum(parts.values()))
    with pytest.raises(SpecError, match="more than this machine's"):
        check_layer_size(spec, memory=sum(parts.values()) - 1)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.integers(-8, 8, (5, 7)).astype(np.float64))
    np.save(tmp_path / "w.npy", rng.integers(-8, 8, (7, 3)).astype(np.float64))
    np.save(tmp_path / "b.npy", np.array([1.0, 2.0, 3.0]))
    np.save(tmp_path / "b4.npy", np.array([1.0, 2.0, 3.0, 4.0]))
    return tmp_path


TAIL = '[datapath]\na = "int4"\nb = "int4"\n[datapath.accumulator]\nformat = "int12"\n'


@pytest.mark.parametrize("body,pattern", [
    pytest.param('[data]\na = "x.npy"\nb = "w.npy"\nbias = true\n',
                 r"data.bias = True is not allowed; expected a file name", id="bias-true-with-files"),
    pytest.param('[data]\na = "x.npy"\nb = "w.npy"\nseed = 4\n',
                 r"data.seed = 4 is not allowed; expected nothing: the data come from files", id="seed-with-files"),
    pytest.param('[shape]\nM = 5\nK = 8\nN = 3\n[data]\na = "x.npy"\nb = "w.npy"\n',
                 r"shape.K = 8 contradicts the data: data.a = 'x.npy' has shape \(5, 7\)", id="shape-contradicts"),
    pytest.param('[shape]\nN = 4\n[data]\na = "x.npy"\nb = "w.npy"\n',
                 r"shape.N = 4 contradicts the data: data.b = 'w.npy' has shape \(7, 3\)", id="shape-n"),
    pytest.param('[data]\na = "x.npy"\nb = "w.npy"\nbias = "b4.npy"\n',
                 r"the bias file has shape \(4,\); the bias is one value per output column", id="bias-length"),
])
def test_spec_keys_that_contradict_the_data_files_are_errors(files, body, pattern):
    p = files / "layer.toml"
    p.write_text(body + TAIL)
    with pytest.raises(SpecError, match=pattern):
        make_data(load_spec(p))


def test_spec_with_files_and_a_matching_shape_runs(files):
    p = files / "layer.toml"
    p.write_text('[shape]\nM = 5\nK = 7\nN = 3\n[data]\na = "x.npy"\nb = "w.npy"\nbias = "b.npy"\n' + TAIL)
    A, B, bias = make_data(load_spec(p))
    assert A.shape == (5, 7) and B.shape == (7, 3) and bias.tolist() == [1.0, 2.0, 3.0]
