"""The model executor's prepared convolutions (weights prepared at the first run, patch matrices written as
exact float32, ``fxsim.ops.prepared``) against the general engine: a plain run and a recorded run (every
output through the cycle-accurate kernel) must agree in every element, for every hardware option the
prepared path accepts, and the path must really be taken."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from fxsim.model import load_model

from . import onnx_models as om

X = np.random.default_rng(99).normal(0, 1, (2, 1, 8, 8)).astype(np.float32)


def _prepared_layers(model):
    return sum(any(k[0] == "weights" for k in layer.cache) for layer in model.layers if layer.kind == "conv")


def _same(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("options", [
    {},
    dict(zero_points="fold"),
    dict(accumulator="int16", overflow="wrap", order="chunked", lanes=3),
    dict(accumulator="int20", overflow="wrap", zero_points="fold", bias="output"),
    dict(accumulator="int32", requant="dyadic", multiplier_bits=14),
    dict(accumulator="int32", overflow="saturate", requant="gemmlowp"),
])
def test_prepared_convolutions_equal_the_cycle_accurate_engine(options):
    q = om.quantize(om.small_cnn(), fmt="qop", activation="uint8", per_channel=True, shape=(2, 1, 8, 8))
    m = load_model(q).configure(**options)
    fast = m.run(X)
    assert _prepared_layers(m) > 0
    _same(fast, m.run(X, record=True))


def test_saturating_registers_the_bound_does_not_clear_run_the_engine():
    q = om.quantize(om.small_cnn(), fmt="qop", activation="uint8", per_channel=True, shape=(2, 1, 8, 8))
    m = load_model(q).configure(accumulator="int14", overflow="saturate")
    fast = m.run(X)
    _same(fast, m.run(X, record=True))


@pytest.mark.parametrize("geom", [
    dict(group=1, strides=[1, 1], pads=[0, 1, 2, 1], dilations=[1, 1]),
    dict(group=1, strides=[2, 1], pads=[1, 1, 1, 1], dilations=[2, 1]),
    dict(group=6, strides=[1, 2], pads=[1, 0, 0, 1], dilations=[1, 1]),
    dict(group=2, strides=[1, 1], pads=[3, 0, 0, 2], dilations=[1, 2]),
], ids=["asym-pads", "stride-dilation", "depthwise", "grouped"])
@pytest.mark.parametrize("fold", [False, True])
def test_prepared_qlinearconv_geometries(geom, fold):
    rng = np.random.default_rng(5)
    C, O, G = 6, 6, geom["group"]
    w = rng.integers(-128, 128, (O, C // G, 3, 3)).astype(np.int8)
    inits = [nh.from_array(np.array(0.037, np.float32), "xs"), nh.from_array(np.array(100, np.uint8), "xz"),
             nh.from_array(w, "w"), nh.from_array(rng.uniform(0.002, 0.02, O).astype(np.float32), "ws"),
             nh.from_array(np.zeros(O, np.int8), "wz"),
             nh.from_array(np.array(0.21, np.float32), "ys"), nh.from_array(np.array(90, np.uint8), "yz"),
             nh.from_array(rng.integers(-3000, 3000, O).astype(np.int32), "b")]
    node = h.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], name="qconv",
                       kernel_shape=[3, 3], **geom)
    g = h.make_graph([node], "g", [h.make_tensor_value_info("x", T.UINT8, [2, C, 9, 8])],
                     [h.make_tensor_value_info("y", T.UINT8, None)], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    x = rng.integers(0, 256, (2, C, 9, 8)).astype(np.uint8)
    model = load_model(m, zero_points="fold") if fold else load_model(m)
    fast = model.run({"x": x})
    assert _prepared_layers(model) == 1
    _same(fast, model.run({"x": x}, record=True))
    if not fold:
        _same(fast, om.ort_run(m, {"x": x}))


@pytest.mark.parametrize("dt,et", [(np.uint8, T.UINT8), (np.int8, T.INT8)])
@pytest.mark.parametrize("scales", [(0.043, 1 / 256), (0.11, 0.0021), (0.0007, 0.004),
                                    (0.0813213586807251, 0.0027183275669813156), (0.06852000206708908, 1 / 256)])
def test_qlinearsigmoid_equals_onnxruntime(dt, et, scales):
    """com.microsoft.QLinearSigmoid: ONNX Runtime's table over every input code (MLAS's logistic). With the
    last two scale pairs one table entry differs between MLAS's rational approximation and a correctly
    rounded sigmoid (float32 or float64), so only the former passes."""
    info = np.iinfo(dt)
    inits = [nh.from_array(np.array(scales[0], np.float32), "xs"), nh.from_array(np.array(info.min + 120, dt), "xz"),
             nh.from_array(np.array(scales[1], np.float32), "ys"), nh.from_array(np.array(info.min, dt), "yz")]
    node = h.make_node("QLinearSigmoid", ["x", "xs", "xz", "ys", "yz"], ["y"], domain="com.microsoft")
    g = h.make_graph([node], "g", [h.make_tensor_value_info("x", et, [2, 256])],
                     [h.make_tensor_value_info("y", et, None)], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    x = np.stack([np.arange(info.min, info.max + 1), np.arange(info.max, info.min - 1, -1)]).astype(dt)
    _same(load_model(m).run({"x": x}), om.ort_run(m, {"x": x}))


def test_float_sigmoid_equals_onnxruntime():
    """A float Sigmoid node runs MLAS's logistic as ONNX Runtime does: bit for bit, on inputs across and
    beyond the clamped range (a correctly rounded sigmoid differs from it in most elements)."""
    node = h.make_node("Sigmoid", ["x"], ["y"])
    g = h.make_graph([node], "g", [h.make_tensor_value_info("x", T.FLOAT, [5010])],
                     [h.make_tensor_value_info("y", T.FLOAT, None)])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.normal(0, 6, 5000), [0.0, -0.0, 18, -18, 19, -19, 1e-30, 60, -60, 3.5]]).astype(np.float32)
    ours, ort = load_model(m).run({"x": x}), om.ort_run(m, {"x": x})
    np.testing.assert_array_equal(ours["y"].view(np.uint32), ort["y"].view(np.uint32))
