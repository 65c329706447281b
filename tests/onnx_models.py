"""Tiny float ONNX models built with onnx.helper, and their ONNX Runtime quantizations, for the model
import tests. Everything is generated here from seeds; nothing is read from disk."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def small_cnn(seed=0, channels=4, size=8, classes=5, opset=17, residual=True):
    """Conv3x3-Relu, depthwise Conv3x3 (stride 1, pad 1)-Relu, residual Add, MaxPool 2, Conv1x1 with
    stride 2 and asymmetric pads, AveragePool, GlobalAveragePool, Flatten, Gemm."""
    rng = np.random.default_rng(seed)
    C = channels
    inits = [
        _init("w1", rng.normal(0, 0.5, (C, 1, 3, 3))), _init("b1", rng.normal(0, 0.1, C)),
        _init("w2", rng.normal(0, 0.5, (C, 1, 3, 3))), _init("b2", rng.normal(0, 0.1, C)),
        _init("w3", rng.normal(0, 0.4, (2 * C, C, 1, 1))), _init("b3", rng.normal(0, 0.1, 2 * C)),
        _init("wf", rng.normal(0, 0.4, (classes, 2 * C))), _init("bf", rng.normal(0, 0.1, classes)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="dwconv", pads=[1, 1, 1, 1], group=C),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Add", ["r1", "r2"], ["s"], name="residual") if residual else
        helper.make_node("Relu", ["r2"], ["s"], name="relu3"),
        helper.make_node("MaxPool", ["s"], ["p"], name="maxpool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p", "w3", "b3"], ["c3"], name="conv3", strides=[1, 1], pads=[0, 0, 1, 1],
                         kernel_shape=[1, 1]),
        helper.make_node("AveragePool", ["c3"], ["ap"], name="avgpool", kernel_shape=[2, 2], strides=[1, 1]),
        helper.make_node("GlobalAveragePool", ["ap"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "small_cnn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


class _Reader:
    def __init__(self, name, batches):
        self.name = name
        self.it = iter(batches)

    def get_next(self):
        x = next(self.it, None)
        return None if x is None else {self.name: x}


def quantize(model, *, fmt="qdq", activation="uint8", weight="int8", per_channel=False, seed=1, n=8,
             shape=(1, 1, 8, 8), dedicated=False):
    """ONNX Runtime's quantize_static on ``model`` with random calibration data; returns a ModelProto."""
    import tempfile
    import os
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    rng = np.random.default_rng(seed)
    batches = [rng.normal(0, 1, shape).astype(np.float32) for _ in range(n)]
    qt = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8, "uint16": QuantType.QUInt16, "int16": QuantType.QInt16}
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "f.onnx"), os.path.join(d, "q.onnx")
        onnx.save(model, src)
        quantize_static(src, dst, _Reader(model.graph.input[0].name, batches),
                        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                        activation_type=qt[activation], weight_type=qt[weight], per_channel=per_channel,
                        extra_options={"DedicatedQDQPair": dedicated})
        return onnx.load(dst)


def ort_run(model, feeds):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def branchy(seed=0, opset=17):
    """Conv-Clip(0, 6), Conv-LeakyRelu branches joined by Concat and Mul, then Transpose, Reshape, Unsqueeze,
    Squeeze, Sigmoid-free MatMul with a constant, and a final Relu."""
    rng = np.random.default_rng(seed)
    inits = [_init("wa", rng.normal(0, 0.5, (3, 2, 3, 3))), _init("ba", rng.normal(0, 0.1, 3)),
             _init("wb", rng.normal(0, 0.5, (3, 2, 1, 1))), _init("bb", rng.normal(0, 0.1, 3)),
             _init("lo", 0.0), _init("hi", 6.0), _init("wm", rng.normal(0, 0.3, (6, 4))),
             numpy_helper.from_array(np.array([0, 36, 6], dtype=np.int64), "shape"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1")]
    nodes = [
        helper.make_node("Conv", ["x", "wa", "ba"], ["ca"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["ca", "lo", "hi"], ["ra"], name="relu6"),
        helper.make_node("Conv", ["x", "wb", "bb"], ["cb0"], name="conv_b"),
        helper.make_node("LeakyRelu", ["cb0"], ["cb"], name="leaky", alpha=0.2),
        helper.make_node("Mul", ["ra", "cb"], ["mu"], name="gate"),
        helper.make_node("Concat", ["ra", "mu"], ["cat"], name="concat", axis=1),
        helper.make_node("Transpose", ["cat"], ["tr"], name="to_nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["tr", "shape"], ["rs"], name="reshape"),
        helper.make_node("Unsqueeze", ["rs", "ax1"], ["us"], name="unsq"),
        helper.make_node("Squeeze", ["us", "ax1"], ["sq"], name="sq"),
        helper.make_node("MatMul", ["sq", "wm"], ["mm"], name="matmul"),
        helper.make_node("Relu", ["mm"], ["y"], name="relu_out"),
    ]
    graph = helper.make_graph(nodes, "branchy",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 36, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


QONNX_DOMAIN = "qonnx.custom_op.general"


def _quant(name, x, scale, bits, signed=1, narrow=0, mode="ROUND", zp=0.0):
    inits = [_init(f"{name}_s", scale), _init(f"{name}_z", zp), _init(f"{name}_b", bits)]
    node = helper.make_node("Quant", [x, f"{name}_s", f"{name}_z", f"{name}_b"], [name], name=name,
                            domain=QONNX_DOMAIN, signed=signed, narrow=narrow, rounding_mode=mode)
    return node, inits


def qonnx_cnn(seed=0, act_bits=8, w_bits=4, per_channel=True):
    """A Brevitas-style QONNX network: Quant(x) -> Conv(Quant(w)) + bias -> Relu -> Quant (unsigned) ->
    MaxPool -> Flatten -> MatMul(Quant(w2)) -> Quant -> Trunc; power-of-two scales."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def add(pair):
        nodes.append(pair[0])
        inits.extend(pair[1])
    add(_quant("xq", "x", 2.0 ** -4, act_bits))
    inits.append(_init("w", rng.normal(0, 0.3, (4, 2, 3, 3))))
    ws = 2.0 ** rng.integers(-5, -2, (4, 1, 1, 1)) if per_channel else 2.0 ** -4
    add(_quant("wq", "w", ws, w_bits, narrow=1))
    inits.append(_init("b", rng.normal(0, 0.1, 4)))
    nodes.append(helper.make_node("Conv", ["xq", "wq", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Relu", ["c"], ["r"], name="relu"))
    add(_quant("rq", "r", 2.0 ** -3, act_bits, signed=0, mode="FLOOR"))
    nodes.append(helper.make_node("MaxPool", ["rq"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]))
    nodes.append(helper.make_node("Flatten", ["p"], ["f"], name="flatten"))
    inits.append(_init("w2", rng.normal(0, 0.2, (36, 5))))
    add(_quant("w2q", "w2", 2.0 ** -5, w_bits))
    nodes.append(helper.make_node("MatMul", ["f", "w2q"], ["m"], name="fc"))
    add(_quant("mq", "m", 2.0 ** -2, 10, mode="HALF_UP"))
    inits += [_init("t_s", 2.0 ** -2), _init("t_z", 0.0), _init("t_ib", 10.0), _init("t_ob", 6.0)]
    nodes.append(helper.make_node("Trunc", ["mq", "t_s", "t_z", "t_ib", "t_ob"], ["y"], name="trunc",
                                  domain=QONNX_DOMAIN, rounding_mode="FLOOR"))
    graph = helper.make_graph(nodes, "qonnx_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 1)])
    model.ir_version = 8
    return model


def qonnx_run(model, feeds):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes
    w = ModelWrapper(model).transform(InferShapes())
    return execute_onnx(w, feeds)
