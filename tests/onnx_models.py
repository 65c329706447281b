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
    qt = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
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
        helper.make_node("Conv", ["x", "wb", "bb"], ["cb"], name="conv_b"),
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
