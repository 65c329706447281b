"""Whole-model import: ONNX Runtime is the oracle. Every output of the default lowering must equal ONNX
Runtime's, element for element, on models quantized by ONNX Runtime's own quantizer (QDQ and QOperator,
per-tensor and per-channel, uint8 and int8 activations) and on single-op models built with onnx.helper."""
from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import fxsim
from fxsim.model import ModelError, load_model

from . import onnx_models as om
from .reference_int_datapath import gemm_ref, output_stage_one

RNG = np.random.default_rng(1234)
X = RNG.normal(0, 1, (3, 1, 8, 8)).astype(np.float32)


def _assert_same(ours, ort):
    assert set(ours) == set(ort)
    for k in ort:
        assert ours[k].dtype == ort[k].dtype, k
        assert ours[k].shape == ort[k].shape, k
        bad = np.flatnonzero(ours[k].ravel() != ort[k].ravel())
        assert bad.size == 0, f"{k}: {bad.size} of {ort[k].size} elements differ, first at {bad[0]}"


_CACHE = {}


def _quantized(fmt, act, pc, residual=True, weight="int8"):
    key = (fmt, act, pc, residual, weight)
    if key not in _CACHE:
        _CACHE[key] = om.quantize(om.small_cnn(residual=residual), fmt=fmt, activation=act, per_channel=pc,
                                  shape=(3, 1, 8, 8), weight=weight)
    return _CACHE[key]


@pytest.mark.parametrize("pc", [False, True], ids=["per-tensor", "per-channel"])
@pytest.mark.parametrize("act", ["uint8", "int8"])
def test_qoperator_models_equal_onnxruntime(act, pc):
    q = _quantized("qop", act, pc)
    m = load_model(q)
    kinds = {layer.kind for layer in m.layers}
    assert {"conv", "gemm", "add", "gap", "avgpool", "maxpool"} <= kinds
    for seed in range(3):
        x = np.random.default_rng(seed).normal(0, 1.5, (3, 1, 8, 8)).astype(np.float32)
        _assert_same(m.run({"x": x}), om.ort_run(q, {"x": x}))


@pytest.mark.parametrize("pc,weight", [(False, "int8"), (True, "int8"), (False, "uint8")],
                         ids=["per-tensor", "per-channel", "uint8-weights"])
def test_qdq_uint8_models_equal_onnxruntime(pc, weight):
    q = _quantized("qdq", "uint8", pc, weight=weight)
    m = load_model(q)
    assert not any(layer.float for layer in m.layers)
    for seed in range(3):
        x = np.random.default_rng(seed).normal(0, 1.5, (3, 1, 8, 8)).astype(np.float32)
        _assert_same(m.run(x), om.ort_run(q, {"x": x}))


@pytest.mark.parametrize("pc", [False, True], ids=["per-tensor", "per-channel"])
def test_qdq_int8_models_equal_onnxruntime(pc):
    q = _quantized("qdq", "int8", pc, residual=False)
    m = load_model(q)
    assert not any(layer.float for layer in m.layers)
    for seed in range(3):
        x = np.random.default_rng(seed).normal(0, 1.5, (3, 1, 8, 8)).astype(np.float32)
        _assert_same(m.run(x), om.ort_run(q, {"x": x}))


@pytest.mark.parametrize("fmt", ["qdq", "qop"])
@pytest.mark.parametrize("act", ["uint8", "int8"])
def test_branchy_models_equal_onnxruntime(fmt, act):
    """Mul, Concat, Transpose, Reshape, Unsqueeze, Squeeze and MatMul, quantized by ONNX Runtime."""
    q = om.quantize(om.branchy(), fmt=fmt, activation=act, per_channel=fmt == "qop", shape=(2, 2, 6, 6))
    m = load_model(q)
    if not (fmt == "qdq" and act == "int8"):   # there ONNX Runtime leaves most nodes in float (see below)
        assert {"conv", "mul", "concat", "move", "gemm", "lut"} <= {layer.kind for layer in m.layers}
    for seed in range(2):
        x = np.random.default_rng(seed).normal(0, 1.5, (2, 2, 6, 6)).astype(np.float32)
        _assert_same(m.run(x), om.ort_run(q, {"x": x}))
    if fmt == "qdq":
        fused = {layer.name for layer in m.layers if layer.kind in ("conv", "gemm", "mul", "concat", "lut")}
        assert fused == _ort_fused_names(q)


def _ort_fused_names(model):
    import onnxruntime as ort
    import os
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.optimized_model_filepath = os.path.join(d, "opt.onnx")
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        opt = onnx.load(so.optimized_model_filepath)
    return {re.sub(r"_token_\d+$", "", n.name) for n in opt.graph.node
            if n.op_type.startswith("QLinear") or n.op_type == "QGemm"}


@pytest.mark.parametrize("act,residual", [("uint8", True), ("int8", False)])
def test_qdq_fusions_are_onnxruntimes(act, residual):
    """The QDQ patterns fxsim lowers to integer layers are the ones ONNX Runtime fuses."""
    q = _quantized("qdq", act, False, residual)
    ours = {layer.name for layer in load_model(q).layers if layer.kind in ("conv", "gemm", "add", "gap", "avgpool")}
    assert ours == _ort_fused_names(q)


@pytest.mark.parametrize("dedicated", [False, True])
def test_int8_residual_model_marks_the_nodes_onnxruntime_leaves_in_float(dedicated):
    """With int8 activations, ONNX Runtime's x86 optimizer re-types single-consumer Q/DQ pairs to uint8 and
    fuses only uint8 patterns; at a fan-out the pairs stay int8 and the convolutions around them run in
    float. fxsim makes the same plan and marks those layers float."""
    q = om.quantize(om.small_cnn(), activation="int8", shape=(3, 1, 8, 8), dedicated=dedicated)
    m = load_model(q)
    floats = {layer.name for layer in m.layers if layer.float}
    assert {"conv1", "dwconv", "residual"} <= floats
    fused = {layer.name for layer in m.layers if layer.kind in ("conv", "gemm", "add", "gap", "avgpool")}
    assert fused == _ort_fused_names(q)


# ----------------------------------------------------------------------------------- single-op models
def _model(nodes, inputs, outputs, inits, opset=17, ms=False):
    ops = [h.make_opsetid("", opset)] + ([h.make_opsetid("com.microsoft", 1)] if ms else [])
    g = h.make_graph(nodes, "t", inputs, outputs, inits)
    m = h.make_model(g, opset_imports=ops)
    m.ir_version = 8 if opset < 21 else 10
    return m


def _vi(name, dt, shape):
    return h.make_tensor_value_info(name, dt, shape)


@pytest.mark.parametrize("xdt,wdt", [(np.uint8, np.int8), (np.int8, np.int8), (np.uint8, np.uint8)])
@pytest.mark.parametrize("geom", [
    dict(group=1, strides=[1, 1], pads=[0, 1, 2, 1], dilations=[1, 1]),
    dict(group=1, strides=[2, 1], pads=[1, 1, 1, 1], dilations=[2, 1]),
    dict(group=6, strides=[1, 2], pads=[1, 0, 0, 1], dilations=[1, 1]),
    dict(group=2, strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 2]),
], ids=["asym-pads", "stride-dilation", "depthwise", "grouped"])
def test_qlinearconv_equals_onnxruntime(xdt, wdt, geom):
    rng = np.random.default_rng(7)
    C, O, G = 6, 6, geom["group"]
    xi, wi = np.iinfo(xdt), np.iinfo(wdt)
    w = rng.integers(wi.min, wi.max + 1, (O, C // G, 3, 3)).astype(wdt)
    per_channel = G > 1
    ws = (rng.uniform(0.002, 0.02, O) if per_channel else np.array(0.01)).astype(np.float32)
    wz = np.array(0 if wdt == np.int8 else 120, dtype=wdt)
    inits = [nh.from_array(np.array(0.037, np.float32), "xs"), nh.from_array(np.array(xi.min + 100, xdt), "xz"),
             nh.from_array(w, "w"), nh.from_array(ws, "ws"), nh.from_array(wz, "wz"),
             nh.from_array(np.array(0.21, np.float32), "ys"), nh.from_array(np.array(xi.min + 90, xdt), "yz"),
             nh.from_array(rng.integers(-3000, 3000, O).astype(np.int32), "b")]
    node = h.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], name="qconv",
                       kernel_shape=[3, 3], **geom)
    etype = T.UINT8 if xdt == np.uint8 else T.INT8
    m = _model([node], [_vi("x", etype, [2, C, 9, 8])], [_vi("y", etype, None)], inits)
    x = rng.integers(xi.min, xi.max + 1, (2, C, 9, 8)).astype(xdt)
    _assert_same(load_model(m).run({"x": x}), om.ort_run(m, {"x": x}))


def test_qlinearmatmul_matmulinteger_convinteger_equal_onnxruntime():
    rng = np.random.default_rng(3)
    b = rng.integers(-128, 128, (16, 5)).astype(np.int8)
    w = rng.integers(0, 256, (4, 3, 2, 2)).astype(np.uint8)
    inits = [nh.from_array(np.array(0.05, np.float32), "as"), nh.from_array(np.array(131, np.uint8), "az"),
             nh.from_array(b, "b"), nh.from_array(rng.uniform(0.001, 0.01, 5).astype(np.float32), "bs"),
             nh.from_array(np.zeros(5, np.int8), "bz"), nh.from_array(np.array(0.09, np.float32), "ys"),
             nh.from_array(np.array(7, np.uint8), "yz"), nh.from_array(w, "w"),
             nh.from_array(np.array(3, np.uint8), "xz"), nh.from_array(np.array(100, np.uint8), "wz")]
    nodes = [h.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"], name="qmm"),
             h.make_node("MatMulInteger", ["a", "b", "az"], ["yi"], name="mmi"),
             h.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["yc"], name="convi", pads=[1, 0, 0, 1])]
    m = _model(nodes, [_vi("a", T.UINT8, [2, 3, 16]), _vi("x", T.UINT8, [1, 3, 5, 5])],
               [_vi("y", T.UINT8, None), _vi("yi", T.INT32, None), _vi("yc", T.INT32, None)], inits)
    feeds = {"a": rng.integers(0, 256, (2, 3, 16)).astype(np.uint8),
             "x": rng.integers(0, 256, (1, 3, 5, 5)).astype(np.uint8)}
    _assert_same(load_model(m).run(feeds), om.ort_run(m, feeds))


def test_per_channel_weight_zero_points_that_differ_equal_onnxruntime():
    rng = np.random.default_rng(21)
    w = rng.integers(0, 256, (5, 3, 3, 3)).astype(np.uint8)
    b = rng.integers(0, 256, (12, 4)).astype(np.uint8)
    inits = [nh.from_array(np.array(0.02, np.float32), "xs"), nh.from_array(np.array(128, np.uint8), "xz"),
             nh.from_array(w, "w"), nh.from_array(rng.uniform(0.002, 0.01, 5).astype(np.float32), "ws"),
             nh.from_array(np.array([120, 131, 120, 90, 131], np.uint8), "wz"),
             nh.from_array(np.array(0.3, np.float32), "ys"), nh.from_array(np.array(100, np.uint8), "yz"),
             nh.from_array(rng.integers(-900, 900, 5).astype(np.int32), "bias"),
             nh.from_array(b, "b"), nh.from_array(rng.uniform(0.001, 0.01, 4).astype(np.float32), "bs"),
             nh.from_array(np.array([128, 3, 200, 128], np.uint8), "bz")]
    nodes = [h.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "bias"], ["y"], name="conv",
                         pads=[1, 0, 1, 2], strides=[1, 2]),
             h.make_node("QLinearMatMul", ["a", "xs", "xz", "b", "bs", "bz", "ys", "yz"], ["y2"], name="mm")]
    m = _model(nodes, [_vi("x", T.UINT8, [2, 3, 6, 7]), _vi("a", T.UINT8, [3, 12])],
               [_vi("y", T.UINT8, None), _vi("y2", T.UINT8, None)], inits)
    feeds = {"x": rng.integers(0, 256, (2, 3, 6, 7)).astype(np.uint8),
             "a": rng.integers(0, 256, (3, 12)).astype(np.uint8)}
    model = load_model(m)
    _assert_same(model.run(feeds), om.ort_run(m, feeds))
    rec = model.run(feeds, record=True).records
    assert rec["conv"].result.bits_needed.shape == (2, 5, 6, 4)
    narrow = load_model(m, accumulator="int17", overflow="saturate").run(feeds, record=True).records
    layer = narrow["conv"].layer
    assert layer.params["split_zero_points"]


@pytest.mark.parametrize("alpha,trans_b", [(1.0, 0), (0.37, 1), (2.5, 0)])
def test_qgemm_alpha_transb_bias_equal_onnxruntime(alpha, trans_b):
    rng = np.random.default_rng(int(alpha * 100) + trans_b)
    b = rng.integers(-128, 128, (7, 16) if trans_b else (16, 7)).astype(np.int8)
    inits = [nh.from_array(np.array(0.05, np.float32), "as"), nh.from_array(np.array(131, np.uint8), "az"),
             nh.from_array(b, "b"), nh.from_array(rng.uniform(0.001, 0.01, 7).astype(np.float32), "bs"),
             nh.from_array(np.zeros(7, np.int8), "bz"),
             nh.from_array(rng.integers(-2000, 2000, 7).astype(np.int32), "c"),
             nh.from_array(np.array(0.09, np.float32), "ys"), nh.from_array(np.array(7, np.uint8), "yz")]
    node = h.make_node("QGemm", ["a", "as", "az", "b", "bs", "bz", "c", "ys", "yz"], ["y"], domain="com.microsoft",
                       alpha=alpha, transB=trans_b)
    m = _model([node], [_vi("a", T.UINT8, [5, 16])], [_vi("y", T.UINT8, None)], inits, ms=True)
    a = rng.integers(0, 256, (5, 16)).astype(np.uint8)
    _assert_same(load_model(m).run({"a": a}), om.ort_run(m, {"a": a}))


@pytest.mark.parametrize("etype,dt,opset", [(T.INT8, np.int8, 17), (T.UINT16, np.uint16, 21), (T.INT16, np.int16, 21),
                                            (T.INT4, None, 21), (T.UINT4, None, 21)])
def test_quantize_dequantize_linear_equal_onnxruntime(etype, dt, opset):
    rng = np.random.default_rng(5)
    x = (rng.normal(0, 3, (2, 4, 5)) * rng.choice([1, 100], (2, 4, 5))).astype(np.float32)
    x.flat[:6] = [np.nan, np.inf, -np.inf, 0.5, -0.5, 2.5]
    zp = h.make_tensor("z", etype, [4], [1, 0, 3, 2] if etype in (T.UINT4, T.UINT16) else [-1, 0, 3, -2])
    inits = [nh.from_array(np.array([0.1, 0.02, 0.5, 0.013], np.float32), "s"), zp]
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1, name="q"),
             h.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1, name="dq")]
    four = dt is None   # onnxruntime's Python API cannot return int4 arrays: compare the dequantized values
    outs = [_vi("y", T.FLOAT, None)] + ([] if four else [_vi("q", etype, None)])
    m = _model(nodes, [_vi("x", T.FLOAT, [2, 4, 5])], outs, inits, opset)
    ours, ort = load_model(m).run({"x": x}), om.ort_run(m, {"x": x})
    assert np.array_equal(ours["y"], ort["y"])
    if not four:
        assert ours["q"].dtype == ort["q"].dtype and np.array_equal(ours["q"], ort["q"])


@pytest.mark.parametrize("etype", [T.FLOAT8E4M3FN, T.FLOAT8E5M2])
@pytest.mark.parametrize("saturate", [0, 1])
def test_float8_quantize_equals_onnxruntime(etype, saturate):
    rng = np.random.default_rng(9)
    x = (rng.normal(0, 1, 64) * rng.choice([1, 1e3, 1e-4], 64)).astype(np.float32)
    x[:3] = [np.inf, -np.inf, 1e9]
    inits = [nh.from_array(np.array(0.25, np.float32), "s"), h.make_tensor("z", etype, [], [0])]
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], saturate=saturate, name="q"),
             h.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")]
    m = _model(nodes, [_vi("x", T.FLOAT, [64])], [_vi("y", T.FLOAT, None)], inits, 19)
    ours, ort = load_model(m).run({"x": x}), om.ort_run(m, {"x": x})
    np.testing.assert_array_equal(ours["y"], ort["y"])   # NaN in the same places, every other value equal


def test_qlinearadd_broadcast_scalar_equals_onnxruntime():
    rng = np.random.default_rng(11)
    inits = [nh.from_array(np.array(s, np.float32), n) for n, s in (("as", 0.031), ("bs", 0.07), ("cs", 0.05))]
    inits += [nh.from_array(np.array(z, np.uint8), n) for n, z in (("az", 128), ("bz", 3), ("cz", 140))]
    inits.append(nh.from_array(np.array([77], np.uint8), "k"))
    nodes = [h.make_node("QLinearAdd", ["a", "as", "az", "b", "bs", "bz", "cs", "cz"], ["y"], domain="com.microsoft"),
             h.make_node("QLinearAdd", ["a", "as", "az", "k", "bs", "bz", "cs", "cz"], ["y2"], domain="com.microsoft")]
    m = _model(nodes, [_vi("a", T.UINT8, [3, 37]), _vi("b", T.UINT8, [3, 37])],
               [_vi("y", T.UINT8, None), _vi("y2", T.UINT8, None)], inits, ms=True)
    feeds = {"a": rng.integers(0, 256, (3, 37)).astype(np.uint8), "b": rng.integers(0, 256, (3, 37)).astype(np.uint8)}
    _assert_same(load_model(m).run(feeds), om.ort_run(m, feeds))


@pytest.mark.parametrize("dt,et", [(np.uint8, T.UINT8), (np.int8, T.INT8)])
def test_qlinearleakyrelu_equals_onnxruntime(dt, et):
    info = np.iinfo(dt)
    inits = [nh.from_array(np.array(0.043, np.float32), "xs"), nh.from_array(np.array(info.min + 120, dt), "xz"),
             nh.from_array(np.array(0.031, np.float32), "ys"), nh.from_array(np.array(info.min + 30, dt), "yz")]
    node = h.make_node("QLinearLeakyRelu", ["x", "xs", "xz", "ys", "yz"], ["y"], domain="com.microsoft", alpha=0.13)
    m = _model([node], [_vi("x", et, [2, 300])], [_vi("y", et, None)], inits, ms=True)
    x = np.random.default_rng(4).integers(info.min, info.max + 1, (2, 300)).astype(dt)
    _assert_same(load_model(m).run({"x": x}), om.ort_run(m, {"x": x}))


# --------------------------------------------------------------------------------------- narrow hardware
def _conv_reference(layer, x_codes, dp):
    """The slow reference: patches built by loops, every dot product and output stage in Python ints."""
    p = layer.params
    t, left, b, r = p["pads"]
    xzp = int(np.asarray(p["x_q"].zero_point).ravel()[0])
    x = np.pad(x_codes.astype(np.int64), ((0, 0), (0, 0), (t, b), (left, r)), constant_values=xzp)
    w = p["w"]
    O, Cg, KH, KW = w.shape
    G = p["group"]
    (sh, sw), (dh, dw) = p["strides"], p["dilations"]
    N, C, H, W = x.shape
    OH, OW = (H - dh * (KH - 1) - 1) // sh + 1, (W - dw * (KW - 1) - 1) // sw + 1
    out = np.zeros((N, O, OH, OW), dtype=np.int64)
    Og = O // G
    for o in range(O):
        g = o // Og
        col = [[int(v)] for v in w[o].reshape(-1)]
        for n in range(N):
            for i in range(OH):
                for j in range(OW):
                    patch = [int(x[n, g * Cg + c, i * sh + kh * dh, j * sw + kw * dw])
                             for c in range(Cg) for kh in range(KH) for kw in range(KW)]
                    b = int(p["bias"][o]) if p["bias"] is not None else 0
                    init = [[b if dp.bias_preload else 0]]
                    acc = gemm_ref([patch], col, dp, init=init)[0][0][0]
                    out[n, o, i, j] = output_stage_one(acc, None if dp.bias_preload else b, dp, o)
    return out


@pytest.mark.parametrize("options", [
    dict(accumulator="int17", overflow="saturate"),
    dict(accumulator="int16", overflow="wrap", order="chunked", lanes=2),
    dict(accumulator="int17", overflow="saturate", requant="dyadic", multiplier_bits=12),
    dict(accumulator="int32", requant="gemmlowp"),
    dict(accumulator="int12", overflow="saturate", bias="output"),
])
def test_narrow_hardware_equals_layer_reference(options):
    q = _quantized("qop", "uint8", True)
    m = load_model(q).configure(**options)
    rec = m.run({"x": X[:1]}, record=True).records
    checked = 0
    for layer in m.layers:
        if layer.kind != "conv":
            continue
        r = rec[layer.name]
        dp = layer.datapath
        assert str(dp.accumulator.fmt) == str(fxsim.parse_format(options["accumulator"]))
        assert dp.bias_preload == (options.get("bias", "preload") == "preload")
        if options.get("zero_points") == "fold":
            continue   # the folded bias is checked below against the unfolded hardware
        want = _conv_reference(layer, r.inputs[0], dp)
        np.testing.assert_array_equal(np.asarray(r.outputs[0]).astype(np.int64), want)
        checked += 1
    assert checked == 3 or options.get("zero_points") == "fold"


def test_zero_point_folding_is_exact_with_a_wide_accumulator():
    q = _quantized("qop", "uint8", False)
    base = load_model(q)
    folded = base.configure(zero_points="fold")
    _assert_same(folded.run(X), base.run(X))
    narrow = base.configure(accumulator="int16", overflow="saturate")
    rec = narrow.run(X, record=True).records
    assert sum(int(np.sum(r.result.overflow_count)) for r in rec.values() if r.result is not None) > 0


# ------------------------------------------------------------------------------------------ bad input
def test_bad_files_give_clear_errors(tmp_path):
    p = tmp_path / "x.onnx"
    p.write_bytes(b"this is not a model at all")
    with pytest.raises(ModelError, match="not an ONNX model"):
        load_model(p)
    good = _quantized("qop", "uint8", False).SerializeToString()
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelError, match="truncated|not an ONNX model|no node"):
        load_model(p)
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "missing.onnx")


def test_unsupported_op_names_node_domain_opset_and_lists_supported():
    m = _model([h.make_node("Hardmax", ["x"], ["y"], name="hm")], [_vi("x", T.FLOAT, [2, 3])],
               [_vi("y", T.FLOAT, None)], [])
    with pytest.raises(ModelError) as e:
        load_model(m)
    msg = str(e.value)
    assert "'hm'" in msg and "Hardmax" in msg and "ai.onnx" in msg and "opset 17" in msg and "QLinearConv" in msg


def test_feeds_and_scales_are_checked():
    q = _quantized("qop", "uint8", False)
    m = load_model(q)
    with pytest.raises(ModelError, match="'y' is not an input"):
        m.run({"y": X})
    with pytest.raises(ModelError, match="shape"):
        m.run({"x": X[:, :, :4]})
    with pytest.raises(ModelError, match="float32"):
        m.run({"x": X.astype(np.float64)})
    inits = [nh.from_array(np.array(1, np.uint8), "z")]
    node = h.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q")
    bad = _model([node], [_vi("x", T.FLOAT, [3]), _vi("s", T.FLOAT, [])], [_vi("q", T.UINT8, None)], inits)
    with pytest.raises(ModelError, match="constant"):
        load_model(bad)


def test_hardware_file_errors_name_key_value_allowed_and_line(tmp_path):
    from fxsim.model import load_hardware
    p = tmp_path / "hw.toml"
    p.write_text('accumulator = "int32"\n\n[layers."conv*"]\noverflow = "saturate"\naccumulator = "float9"\n')
    with pytest.raises(ModelError) as e:
        load_hardware(p)
    assert ":5:" in str(e.value) and "float9" in str(e.value) and "intN" in str(e.value)
    p.write_text('[layers."nothing*"]\naccumulator = "int16"\n')
    with pytest.raises(ModelError, match="matches no layer"):
        load_model(_quantized("qop", "uint8", False), hardware=p)
    p.write_text('[layers."*conv*"]\naccumulator = "int16"\noverflow = "saturate"\nrequant = "dyadic"\n'
                 'multiplier_bits = 16\n')
    m = load_model(_quantized("qop", "uint8", False), hardware=p)
    dps = {layer.name: layer.datapath for layer in m.layers if layer.kind == "conv"}
    assert all(dp.accumulator.fmt.bits == 16 and dp.output.requant.kind == "dyadic" for dp in dps.values())
    gemm = [layer for layer in m.layers if layer.kind == "gemm"][0]
    assert gemm.datapath.accumulator.fmt.bits == 32 and gemm.datapath.output.requant.kind == "float32"


def test_layers_report_shapes_macs_and_formats():
    m = load_model(_quantized("qop", "uint8", False))
    convs = [layer for layer in m.layers if layer.kind == "conv"]
    c1 = convs[0]
    assert c1.in_shapes == [(1, 1, 8, 8)] and c1.out_shapes == [(1, 4, 8, 8)]
    assert c1.macs == 4 * 8 * 8 * 9
    assert "uint8" in c1.formats() and c1.datapath is not None


def test_export_of_narrow_folded_dyadic_hardware_verifies(tmp_path):
    from fxsim.rtl.export import verify_dir
    from fxsim.model.report import export_model
    m = load_model(_quantized("qop", "uint8", True)).configure(
        accumulator="int20", overflow="saturate", zero_points="fold", requant="dyadic", multiplier_bits=16)
    top = export_model(m, {"x": X[:1]}, tmp_path / "g")
    assert len(top["layers"]) == 5
    assert verify_dir(tmp_path / "g") == []


def test_model_export_is_a_directory_of_golden_vector_directories(tmp_path, capsys):
    """Each layer's directory is what `fxsim export` writes (inputs from inside the network as its own
    a/b/bias files), verified strictly; the top manifest lists them and nothing else may be there."""
    import json
    import shutil
    from fxsim.cli.main import EXIT_INPUT, EXIT_MISMATCH, EXIT_OK, main
    from fxsim.rtl.export import verify_dir
    from fxsim.model.report import export_model
    from fxsim.rtl.testbench import generate_testbench, run_testbench
    m = load_model(_quantized("qop", "uint8", False)).configure(requant="dyadic", multiplier_bits=16)
    g = tmp_path / "g"
    top = export_model(m, {"x": X[:1]}, g)
    man = json.loads((g / "manifest.json").read_text())
    assert man["fxsim_output"] == "model-golden-vectors" and man == json.loads(json.dumps(top))
    for layer, sub in top["layers"].items():
        lm = json.loads((g / sub / "manifest.json").read_text())
        assert lm["fxsim_output"] == "golden-vectors" and lm["manifest_version"] == 2
        assert lm["spec"]["layer"]["name"] == layer and lm["spec"]["data"]["a"] == "a.hex"
        assert (g / sub / lm["package"]["file"]).is_file()
    assert main(["verify", str(g)]) == EXIT_OK
    # --force replaces a previous model export, and only that
    export_model(m, {"x": X[:1]}, g, force=True)
    with pytest.raises(FileExistsError):
        export_model(m, {"x": X[:1]}, tmp_path / "g" / top["layers"][next(iter(top["layers"]))], force=True)
    sub = sorted(top["layers"].values())[0]
    # a flipped word inside a layer's directory: a mismatch named with its directory
    bad = tmp_path / "bad"
    shutil.copytree(g, bad)
    lm = json.loads((bad / sub / "manifest.json").read_text())
    p = bad / sub / lm["files"]["acc"]["file"]
    text = p.read_text()
    p.write_text(("1" if text[0] != "1" else "2") + text[1:])
    probs = verify_dir(bad)
    assert probs and all(q.startswith(f"{sub}/") for q in probs)
    assert main(["verify", str(bad)]) == EXIT_MISMATCH
    # anything unlisted, at the top or inside a layer's directory, is refused
    for extra in (tmp_path / "x1", tmp_path / "x2"):
        shutil.copytree(g, extra)
    (tmp_path / "x1" / "notes.txt").write_text("hi")
    (tmp_path / "x2" / sub / "notes.txt").write_text("hi")
    assert "notes.txt: a file not listed in the manifest" in verify_dir(tmp_path / "x1")
    assert f"{sub}/notes.txt: a file not listed in the manifest" in verify_dir(tmp_path / "x2")
    assert main(["verify", str(tmp_path / "x1")]) == EXIT_INPUT
    # a layer directory removed from the top manifest's listing is an unlisted directory
    x3 = tmp_path / "x3"
    shutil.copytree(g, x3)
    t3 = json.loads((x3 / "manifest.json").read_text())
    del t3["layers"][next(k for k, v in t3["layers"].items() if v == sub)]
    (x3 / "manifest.json").write_text(json.dumps(t3))
    assert f"{sub}: a directory not listed in the manifest" in verify_dir(x3)
    # a layer's directory is a golden directory for the reference RTL's testbench too
    gemm = next(v for k, v in top["layers"].items()
                if json.loads((g / v / "manifest.json").read_text())["op"] == "gemm")
    generate_testbench(g / gemm, tmp_path / "tb")
    status, mism, result, _log = run_testbench(tmp_path / "tb", "icarus")
    assert status == 0 and not mism, (result, mism)


# ------------------------------------------------------------------------------------- the integer plan
def test_integer_plan_of_an_int8_qdq_model():
    """ONNX Runtime leaves the int8 residual network's convolutions in float; the integer plan lowers every
    pattern (each convolution checked against the layer reference). Where ONNX Runtime fuses everything
    (no fan-out) the two plans are the same and equal ONNX Runtime."""
    m = load_model(_quantized("qdq", "int8", False), plan="integer")
    assert not any(layer.float for layer in m.layers)
    assert {"conv1", "dwconv", "residual"} <= {layer.name for layer in m.layers if layer.kind in ("conv", "add")}
    rec = m.run(X[:1], record=True).records
    for name in ("conv1", "dwconv", "conv3"):
        layer = rec[name].layer
        want = _conv_reference(layer, rec[name].inputs[0], layer.datapath)
        np.testing.assert_array_equal(np.asarray(rec[name].outputs[0]).astype(np.int64), want)
    chain = _quantized("qdq", "int8", False, residual=False)
    m = load_model(chain, plan="integer")
    assert [layer.kind for layer in m.layers] == [layer.kind for layer in load_model(chain).layers]
    _assert_same(m.run(X), om.ort_run(chain, {"x": X}))


def test_integer_plan_lowers_16_bit_qdq_convolutions():
    q = om.quantize(om.small_cnn(residual=False), activation="uint16", shape=(3, 1, 8, 8))
    ort_plan = load_model(q)
    assert all(layer.float for layer in ort_plan.layers if layer.name in ("conv1", "dwconv", "conv3", "fc"))
    m = load_model(q, plan="integer")
    x = np.random.default_rng(0).normal(0, 1.5, (1, 1, 8, 8)).astype(np.float32)
    rec = m.run(x, record=True).records
    for name in ("conv1", "dwconv", "conv3"):
        layer = rec[name].layer
        assert layer.kind == "conv" and str(layer.datapath.a) == "uint16"
        assert layer.datapath.accumulator.fmt.bits == 64
        want = _conv_reference(layer, rec[name].inputs[0], layer.datapath)
        np.testing.assert_array_equal(np.asarray(rec[name].outputs[0]).astype(np.int64), want)
    # the integer plan and ONNX Runtime's float plan agree to the last code on this input
    _assert_same(m.run(x), ort_plan.run(x))
