"""Backward ops: lossless datapaths give exactly the gradients of the definitions; narrow integer and float
datapaths match a literal per-addition reference in the stated order, bit for bit."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from fxsim.datapath import Accumulator, Datapath, Order
from fxsim.formats import parse_format
from fxsim.ops.backward import conv2d_backward, conv2d_lowered, linear_backward, relu_backward
from fxsim.ops.pool import avgpool2d, avgpool2d_backward, maxpool2d, maxpool2d_backward
from tests.reference_float_datapath import RefFloatDatapath
from tests.reference_int_datapath import dot as int_dot
from tests.reference_training import (conv_dw_pairs, conv_dw_terms, conv_dx_pairs, conv_dx_terms,
                                      conv_forward_pairs, conv_gradients_einsum, evaluate, maxpool_backward_ref)

WIDE = Datapath(a="int8", b="int8", accumulator=Accumulator("int40"))
ORDERS = st.sampled_from([Order("sequential"), Order("chunked", lanes=2), Order("chunked", lanes=3), Order("tree")])


def exact_dot(a, b):
    return float(sum(int(p) * int(q) for p, q in zip(a, b)))


def int_ref(dp):
    return lambda a, b: float(int_dot([int(v) for v in a], [int(v) for v in b], 0, dp)[0])


def float_ref(dp):
    ref = RefFloatDatapath(dp)
    return lambda a, b: ref.dot(a, b, 0.0, 0)[0]


shapes = dict(N=st.integers(1, 2), C=st.integers(1, 3), O=st.integers(1, 3), H=st.integers(3, 6),
              K=st.sampled_from([1, 2, 3]), stride=st.integers(1, 2), pad=st.integers(0, 1), seed=st.integers(0, 2**16))


def _case(N, C, O, H, K, stride, pad, seed, lo=-128, hi=128):
    pad = min(pad, K - 1)
    rng = np.random.default_rng(seed)
    x = rng.integers(lo, hi, (N, C, H, H)).astype(float)
    w = rng.integers(lo, hi, (O, C, K, K)).astype(float)
    return x, w, pad, rng


@settings(max_examples=30)
@given(**shapes)
def test_lossless_conv_gradients_equal_their_definition(N, C, O, H, K, stride, pad, seed):
    x, w, pad, rng = _case(N, C, O, H, K, stride, pad, seed)
    y, _ = conv2d_lowered(x, w, WIDE, stride=stride, padding=pad)
    pairs, shape = conv_forward_pairs(x, w, stride, pad)
    assert np.array_equal(y, evaluate(pairs, shape, exact_dot))
    dy = rng.integers(-128, 128, y.shape).astype(float)
    dx, dw, _ = conv2d_backward(x, w, dy, stride=stride, padding=pad, dx_datapath=WIDE, dw_datapath=WIDE)
    # dX, dW of L = sum(y * dy) by their definition (independent of the transposed-convolution order)
    rdx, rdw = np.zeros(x.shape), np.zeros(w.shape)
    for (n, o, i, j), (xs, ws) in pairs.items():
        for t, (c, kh, kw) in enumerate(np.ndindex(C, K, K)):
            h, v = i * stride + kh - pad, j * stride + kw - pad
            if 0 <= h < H and 0 <= v < H:
                rdx[n, c, h, v] += dy[n, o, i, j] * ws[t]
                rdw[o, c, kh, kw] += dy[n, o, i, j] * xs[t]
    assert np.array_equal(dx, rdx) and np.array_equal(dw, rdw)


@settings(max_examples=60)
@given(**shapes, bits=st.integers(9, 18), overflow=st.sampled_from(["wrap", "saturate"]), order=ORDERS)
def test_narrow_integer_conv_gradients_match_per_addition_reference(N, C, O, H, K, stride, pad, seed, bits,
                                                                    overflow, order):
    x, w, pad, rng = _case(N, C, O, H, K, stride, pad, seed)
    OH = (H + 2 * pad - K) // stride + 1
    dy = rng.integers(-128, 128, (N, O, OH, OH)).astype(float)
    dp = Datapath(a="int8", b="int8", accumulator=Accumulator(f"int{bits}", overflow=overflow), order=order)
    dx, dw, stats = conv2d_backward(x, w, dy, stride=stride, padding=pad, dx_datapath=dp, dw_datapath=dp)
    assert np.array_equal(dx, evaluate(conv_dx_pairs(w, dy, x.shape, stride, pad), x.shape, int_ref(dp)))
    dw_ref = evaluate(conv_dw_pairs(x, dy, w.shape, stride, pad), w.shape, int_ref(dp))
    assert np.array_equal(dw, dw_ref)


@settings(max_examples=40)
@given(**shapes, acc=st.sampled_from(["fp16", "bf16", "e5m2"]), order=ORDERS,
       rounding=st.sampled_from(["half_even", "toward_zero"]))
def test_luq_style_float_conv_gradients_match_per_addition_reference(N, C, O, H, K, stride, pad, seed, acc, order,
                                                                     rounding):
    """FP4 [1,3,0] gradients x INT4 weights / UINT4 activations into a narrow float accumulator."""
    x, w, pad, rng = _case(N, C, O, H, K, stride, pad, seed, lo=-8, hi=8)
    x = np.abs(x)
    levels = parse_format("fp4_e3m0").values()
    OH = (H + 2 * pad - K) // stride + 1
    dy = rng.choice(levels[np.isfinite(levels)], (N, O, OH, OH))
    acc_kw = dict(overflow="ieee", rounding=rounding)
    dxp = Datapath(a="fp4_e3m0", b="int4", accumulator=Accumulator(acc, **acc_kw), order=order)
    dwp = Datapath(a="uint4", b="fp4_e3m0", accumulator=Accumulator(acc, **acc_kw), order=order)
    dx, dw, _ = conv2d_backward(x, w, dy, stride=stride, padding=pad, dx_datapath=dxp, dw_datapath=dwp)
    want_dx = evaluate(conv_dx_pairs(w, dy, x.shape, stride, pad), x.shape, float_ref(dxp))
    want_dw = evaluate(conv_dw_pairs(x, dy, w.shape, stride, pad), w.shape, float_ref(dwp))
    assert np.array_equal(dx, want_dx) and np.array_equal(dw, want_dw)


@settings(max_examples=50)
@given(M=st.integers(1, 4), K=st.integers(1, 40), N=st.integers(1, 4), bits=st.integers(9, 16),
       overflow=st.sampled_from(["wrap", "saturate"]), order=ORDERS, seed=st.integers(0, 2**16))
def test_linear_gradient_gemms_match_per_addition_reference(M, K, N, bits, overflow, order, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (M, K)).astype(float)
    w = rng.integers(-128, 128, (K, N)).astype(float)
    dy = rng.integers(-128, 128, (M, N)).astype(float)
    dp = Datapath(a="int8", b="int8", accumulator=Accumulator(f"int{bits}", overflow=overflow), order=order)
    dx, dw, st_ = linear_backward(x, w, dy, dx_datapath=dp, dw_datapath=dp)
    ref = int_ref(dp)
    assert dx.tolist() == [[ref(dy[i], w[k]) for k in range(K)] for i in range(M)]
    assert dw.tolist() == [[ref(x[:, k], dy[:, j]) for j in range(N)] for k in range(K)]
    n_ov = sum(int_dot([int(v) for v in dy[i]], [int(v) for v in w[k]], 0, dp)[1] for i in range(M) for k in range(K))
    assert int(st_["dx"].overflow_count.sum()) == n_ov


def test_lossless_linear_gradients_equal_float64():
    rng = np.random.default_rng(0)
    x, w, dy = (rng.integers(-128, 128, s).astype(float) for s in [(5, 7), (7, 3), (5, 3)])
    dx, dw, _ = linear_backward(x, w, dy, dx_datapath=WIDE, dw_datapath=WIDE)
    assert np.array_equal(dx, dy @ w.T) and np.array_equal(dw, x.T @ dy)


def test_a_12_bit_saturating_gradient_accumulator_really_saturates():
    rng = np.random.default_rng(2)
    dy = rng.integers(-128, 128, (3, 40)).astype(float)
    w = rng.integers(-128, 128, (6, 40)).astype(float)
    dp = Datapath(a="int8", b="int8", accumulator=Accumulator("int12", overflow="saturate"))
    dx, _, st_ = linear_backward(np.zeros((3, 6)), w, dy, dx_datapath=dp, dw_datapath=WIDE)
    assert st_["dx"].overflow_count.sum() > 0 and dx.min() >= -2048 and dx.max() <= 2047
    assert np.isin(dx, [-2048.0, 2047.0]).any()


@settings(max_examples=30)
@given(N=st.integers(1, 2), C=st.integers(1, 2), h=st.integers(1, 3), k=st.sampled_from([1, 2, 4]),
       seed=st.integers(0, 2**16))
def test_pooling_and_relu_backward_match_literal_routing(N, C, h, k, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, (N, C, h * k, h * k)).astype(float)        # small range: ties are frequent
    dy = rng.integers(-50, 50, (N, C, h, h)).astype(float)
    y, idx = maxpool2d(x, k)
    assert np.array_equal(y, x.reshape(N, C, h, k, h, k).max(axis=(3, 5)))
    assert np.array_equal(maxpool2d_backward(dy, idx, k, x.shape), maxpool_backward_ref(x, dy, k))
    g = avgpool2d_backward(dy, k, x.shape)
    for a in range(k):
        for b in range(k):
            assert np.array_equal(g[:, :, a::k, b::k], dy / (k * k))
    assert np.array_equal(avgpool2d(x, k), x.reshape(N, C, h, k, h, k).sum(axis=(3, 5)) / (k * k))
    assert np.array_equal(relu_backward(x, x + 100), np.where(x > 0, x + 100, 0.0))


def test_relu_and_pooling_backward_by_hand():
    x = np.array([[[[1.0, -2.0], [3.0, 0.5]]]])
    dy = np.array([[[[10.0]]]])
    y, idx = maxpool2d(x, 2)
    assert y[0, 0, 0, 0] == 3.0
    assert maxpool2d_backward(dy, idx, 2, x.shape).tolist() == [[[[0, 0], [10.0, 0]]]]
    assert relu_backward(x, np.ones_like(x)).tolist() == [[[[1, 0], [1, 1]]]]
    assert avgpool2d(x, 2)[0, 0, 0, 0] == 0.625
    assert avgpool2d_backward(dy, 2, x.shape).tolist() == [[[[2.5, 2.5], [2.5, 2.5]]]]


@settings(max_examples=20)
@given(**shapes, acc=st.sampled_from(["int12", "int20", "fp16", "e5m2"]), order=ORDERS)
def test_the_training_lowering_agrees_with_the_conv2d_op(N, C, O, H, K, stride, pad, seed, acc, order):
    """fxsim.ops.backward's im2col lowering and fxsim.ops.conv.conv2d add the same products in the same
    (c, kh, kw) order, so their outputs and overflow counts agree bit for bit."""
    from fxsim.ops.conv import conv2d
    x, w, pad, _ = _case(N, C, O, H, K, stride, pad, seed, lo=-8, hi=8)
    kw = dict(overflow="ieee", rounding="half_even") if acc[0] in "fe" else dict(overflow="saturate")
    dp = Datapath(a="int4", b="int4", accumulator=Accumulator(acc, **kw), order=order)
    y, res = conv2d_lowered(x, w, dp, stride=stride, padding=pad)
    ref = conv2d(x, w, dp, stride=stride, padding=pad)
    assert np.array_equal(y, ref.values)
    assert int(res.overflow_count.sum()) == int(ref.overflow_count.sum())


# ------------------------------------------------------------------ every forward geometry, backward
@st.composite
def geometries(draw, max_groups=3):
    """A convolution the forward conv2d accepts: non-square kernels, strides, paddings (up to beyond the
    kernel) and dilations, groups (depthwise when one channel per group)."""
    groups = draw(st.integers(1, max_groups))
    Cg, Og = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    KH, KW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = (draw(st.integers(0, 4)), draw(st.integers(0, 4)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    H, W = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    OH = (H + 2 * pad[0] - dil[0] * (KH - 1) - 1) // stride[0] + 1
    OW = (W + 2 * pad[1] - dil[1] * (KW - 1) - 1) // stride[1] + 1
    assume(OH >= 1 and OW >= 1)
    N = draw(st.integers(1, 2))
    return dict(x_shape=(N, groups * Cg, H, W), w_shape=(groups * Og, Cg, KH, KW), dy_shape=(N, groups * Og, OH, OW),
                stride=stride, padding=pad, dilation=dil, groups=groups)


def _kw(g):
    return dict(stride=g["stride"], padding=g["padding"], dilation=g["dilation"], groups=g["groups"])


def _ref_args(g):
    return g["stride"], g["padding"], g["dilation"], g["groups"]


def _codes(rng, shape, lo=-128, hi=128):
    return rng.integers(lo, hi, shape).astype(float)


def _as_lists(a):
    return [[[[int(v) for v in r] for r in ch] for ch in img] for img in a]


@settings(max_examples=120)
@given(g=geometries(), seed=st.integers(0, 2**16), bits=st.integers(9, 24),
       overflow=st.sampled_from(["wrap", "saturate"]), order=ORDERS,
       zx=st.integers(-6, 6), zg=st.integers(-6, 6), zw=st.integers(-6, 6), red=st.sampled_from(["ckk", "kkc"]))
def test_integer_conv_gradients_of_every_geometry_match_the_definition(g, seed, bits, overflow, order, zx, zg, zw,
                                                                        red):
    """dX and dW against plain-integer loops over the convolution's definition, for every geometry the
    forward pass takes and nonzero zero points (padding and the stride dilation hold the zero point's
    code: the real value 0)."""
    rng = np.random.default_rng(seed)
    x, w, dy = _codes(rng, g["x_shape"]), _codes(rng, g["w_shape"]), _codes(rng, g["dy_shape"])
    acc = Accumulator(f"int{bits}", overflow=overflow)
    dxp = Datapath(a="int8", b="int8", accumulator=acc, order=order, a_zero_point=zg, b_zero_point=zw)
    dwp = Datapath(a="int8", b="int8", accumulator=acc, order=order, a_zero_point=zx, b_zero_point=zg)
    dx, dw, st_ = conv2d_backward(x, w, dy, dx_datapath=dxp, dw_datapath=dwp, reduction_order=red, **_kw(g))
    X, Wl, G = _as_lists(x), _as_lists(w), _as_lists(dy)
    want_dx = np.zeros(x.shape)
    n_ov = 0
    for key, (a, b) in conv_dx_terms(Wl, G, x.shape, *_ref_args(g), fill=zg, order=red).items():
        want_dx[key], o = int_dot(a, b, 0, dxp)[:2]
        n_ov += o
    assert np.array_equal(dx, want_dx)
    assert int(st_["dx"].overflow_count.sum()) == n_ov
    want_dw = np.zeros(w.shape)
    n_ov = 0
    for key, (a, b) in conv_dw_terms(X, G, w.shape, *_ref_args(g), fill=zx).items():
        want_dw[key], o = int_dot(a, b, 0, dwp)[:2]
        n_ov += o
    assert np.array_equal(dw, want_dw)
    assert int(st_["dw"].overflow_count.sum()) == n_ov


@settings(max_examples=40)
@given(g=geometries(), seed=st.integers(0, 2**16), acc=st.sampled_from(["fp16", "bf16", "e5m2"]), order=ORDERS,
       rounding=st.sampled_from(["half_even", "toward_zero"]), red=st.sampled_from(["ckk", "kkc"]))
def test_float_conv_gradients_of_every_geometry_match_the_definition(g, seed, acc, order, rounding, red):
    """FP4 gradients x INT4 weights / UINT4 activations into narrow float accumulators."""
    rng = np.random.default_rng(seed)
    levels = parse_format("fp4_e3m0").values()
    x, w = np.abs(_codes(rng, g["x_shape"], -8, 8)), _codes(rng, g["w_shape"], -8, 8)
    dy = rng.choice(levels[np.isfinite(levels)], g["dy_shape"])
    a_kw = Accumulator(acc, overflow="ieee", rounding=rounding)
    dxp = Datapath(a="fp4_e3m0", b="int4", accumulator=a_kw, order=order)
    dwp = Datapath(a="uint4", b="fp4_e3m0", accumulator=a_kw, order=order)
    dx, dw, _ = conv2d_backward(x, w, dy, dx_datapath=dxp, dw_datapath=dwp, reduction_order=red, **_kw(g))
    lists = lambda a: [[[[float(v) for v in r] for r in ch] for ch in img] for img in a]   # noqa: E731
    want_dx = evaluate(conv_dx_terms(lists(w), lists(dy), x.shape, *_ref_args(g), fill=0.0, order=red), x.shape,
                       float_ref(dxp))
    want_dw = evaluate(conv_dw_terms(lists(x), lists(dy), w.shape, *_ref_args(g), fill=0.0), w.shape, float_ref(dwp))
    assert np.array_equal(dx, want_dx) and np.array_equal(dw, want_dw)


@settings(max_examples=60)
@given(g=geometries(max_groups=4), seed=st.integers(0, 2**16), zx=st.integers(-20, 20), zg=st.integers(-20, 20),
       zw=st.integers(-20, 20), acc=st.sampled_from(["int40", "fp32"]))
def test_exact_conv_gradients_equal_an_independent_float64_einsum(g, seed, zx, zg, zw, acc):
    """Wide accumulators are exact: both gradients equal the gradient of sum(y * dY) computed by numpy
    einsum on the real values (code - zero point), exact in float64 (|terms| < 2**16, fewer than 2**8 of
    them; an FP32 accumulator is exact too: every partial sum is an integer below 2**24)."""
    rng = np.random.default_rng(seed)
    x, w, dy = _codes(rng, g["x_shape"]), _codes(rng, g["w_shape"]), _codes(rng, g["dy_shape"])
    a = Accumulator("int40") if acc == "int40" else Accumulator("fp32", rounding="half_even", overflow="ieee")
    dxp = Datapath(a="int8", b="int8", accumulator=a, a_zero_point=zg, b_zero_point=zw)
    dwp = Datapath(a="int8", b="int8", accumulator=a, a_zero_point=zx, b_zero_point=zg)
    dx, dw, _ = conv2d_backward(x, w, dy, dx_datapath=dxp, dw_datapath=dwp, **_kw(g))
    want_dx, want_dw = conv_gradients_einsum(x - zx, w - zw, dy - zg, *_ref_args(g))
    assert np.array_equal(dx, want_dx) and np.array_equal(dw, want_dw)


def test_non_square_kernel_gradients_by_the_einsum_definition():
    """A 1x3 kernel with padding (0, 1): the transposed convolution pads each axis by its own kernel."""
    rng = np.random.default_rng(5)
    x, w = _codes(rng, (1, 2, 4, 5)), _codes(rng, (3, 2, 1, 3))
    dy = _codes(rng, (1, 3, 4, 5))
    dx, dw, _ = conv2d_backward(x, w, dy, padding=(0, 1), dx_datapath=WIDE, dw_datapath=WIDE)
    want_dx, want_dw = conv_gradients_einsum(x, w, dy, (1, 1), (0, 1), (1, 1), 1)
    assert dx.shape == x.shape and np.array_equal(dx, want_dx) and np.array_equal(dw, want_dw)
    # the 3x1 kernel with no padding: output 2x5 from a 4x5 input
    w = _codes(rng, (3, 2, 3, 1))
    dy = _codes(rng, (1, 3, 2, 5))
    dx, dw, _ = conv2d_backward(x, w, dy, dx_datapath=WIDE, dw_datapath=WIDE)
    want_dx, want_dw = conv_gradients_einsum(x, w, dy, (1, 1), (0, 0), (1, 1), 1)
    assert np.array_equal(dx, want_dx) and np.array_equal(dw, want_dw)


def test_zero_points_fill_padding_and_stride_holes_with_the_real_value_zero():
    """With a zero point z, code z is the real 0: padding of x (dW) and the stride dilation and padding of
    dY (dX) insert z, so shifting every code and the zero point together changes nothing."""
    rng = np.random.default_rng(6)
    x, w = _codes(rng, (1, 2, 5, 5), -100, 100), _codes(rng, (2, 2, 3, 3), -100, 100)
    dy = _codes(rng, (1, 2, 3, 3), -100, 100)
    kw = dict(stride=2, padding=1)
    base = conv2d_backward(x, w, dy, dx_datapath=WIDE, dw_datapath=WIDE, **kw)
    dxp = Datapath(a="int8", b="int8", accumulator=Accumulator("int40"), a_zero_point=7, b_zero_point=-5)
    dwp = Datapath(a="int8", b="int8", accumulator=Accumulator("int40"), a_zero_point=-3, b_zero_point=7)
    shifted = conv2d_backward(x - 3, w - 5, dy + 7, dx_datapath=dxp, dw_datapath=dwp, **kw)
    assert np.array_equal(shifted[0], base[0]) and np.array_equal(shifted[1], base[1])


@pytest.mark.parametrize("kw", [dict(groups=2), dict(groups=4), dict(dilation=2, padding=2), dict(padding=3),
                                dict(stride=(2, 1), padding=(1, 0))])
def test_grouped_depthwise_dilated_and_widely_padded_layers_run_backward(kw):
    """Every layer the forward conv2d runs, conv2d_backward runs too (depthwise: groups = channels)."""
    from fxsim.ops.conv import conv2d
    rng = np.random.default_rng(7)
    groups = kw.get("groups", 1)
    x, w = _codes(rng, (2, 4, 6, 5)), _codes(rng, (4, 4 // groups, 3, 3))
    y = conv2d(x, w, WIDE, **kw).values
    dy = _codes(rng, y.shape)
    dx, dw, _ = conv2d_backward(x, w, dy, dx_datapath=WIDE, dw_datapath=WIDE, **kw)
    full = dict(stride=1, padding=0, dilation=1, groups=1)
    full.update(kw)
    s = lambda v: v if isinstance(v, tuple) else (v, v)   # noqa: E731
    want_dx, want_dw = conv_gradients_einsum(x, w, dy, s(full["stride"]), s(full["padding"]), s(full["dilation"]),
                                             full["groups"])
    assert np.array_equal(dx, want_dx) and np.array_equal(dw, want_dw)


def _onnx_conv_transpose(dy, w, g):
    """dX by ONNX Runtime's ConvTranspose (an independent implementation of the transposed convolution),
    in float32: exact here, every partial sum is an integer below 2**24."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper
    N, C, H, W = g["x_shape"]
    O, Cg, KH, KW = g["w_shape"]
    OH, OW = g["dy_shape"][2:]
    (sh, sw), (ph, pw), (dh, dw) = g["stride"], g["padding"], g["dilation"]
    out_pad = [H - ((OH - 1) * sh + (KH - 1) * dh + 1 - 2 * ph), W - ((OW - 1) * sw + (KW - 1) * dw + 1 - 2 * pw)]
    node = helper.make_node("ConvTranspose", ["dy", "w"], ["dx"], strides=[sh, sw], pads=[ph, pw, ph, pw],
                            dilations=[dh, dw], group=g["groups"], output_padding=out_pad)
    graph = helper.make_graph([node], "dx", [helper.make_tensor_value_info("dy", TensorProto.FLOAT, list(dy.shape)),
                                             helper.make_tensor_value_info("w", TensorProto.FLOAT, list(w.shape))],
                              [helper.make_tensor_value_info("dx", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"dy": dy.astype(np.float32), "w": w.astype(np.float32)})[0].astype(np.float64)


@settings(max_examples=40)
@given(g=geometries(max_groups=4), seed=st.integers(0, 2**16), zg=st.integers(-20, 20), zw=st.integers(-20, 20))
def test_exact_input_gradients_equal_onnx_runtime_conv_transpose(g, seed, zg, zw):
    """The input gradient is ONNX's ConvTranspose of dY with the forward weights (same strides, pads,
    dilations, group), applied to the real values code - zero point."""
    rng = np.random.default_rng(seed)
    x, w, dy = _codes(rng, g["x_shape"]), _codes(rng, g["w_shape"]), _codes(rng, g["dy_shape"])
    dxp = Datapath(a="int8", b="int8", accumulator=Accumulator("int40"), a_zero_point=zg, b_zero_point=zw)
    dx, _, _ = conv2d_backward(x, w, dy, dx_datapath=dxp, dw_datapath=WIDE, need_dx=True, **_kw(g))
    want = _onnx_conv_transpose(dy - zg, w - zw, g)
    assert want.shape == dx.shape and np.array_equal(dx, want)


def test_the_training_lowering_pads_with_the_zero_point():
    from fxsim.ops.conv import conv2d
    rng = np.random.default_rng(8)
    x, w = _codes(rng, (2, 3, 5, 5)), _codes(rng, (4, 3, 3, 3))
    dp = Datapath(a="int8", b="int8", accumulator=Accumulator("int40"), a_zero_point=-9, b_zero_point=4)
    y, _ = conv2d_lowered(x, w, dp, stride=2, padding=1)
    assert np.array_equal(y, conv2d(x, w, dp, stride=2, padding=1).values)
