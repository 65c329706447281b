"""Builds the shipped whole-network example: the demo's digits CNN (Conv 1->8 3x3 pad 1, ReLU, MaxPool 2,
Flatten, Linear 128->10; see fxsim/training/demo.py), trained in float64 on scikit-learn's 8x8 digits,
exported to ONNX and quantized two ways:

- digits_cnn_qdq.onnx: ONNX Runtime's quantize_static, QDQ format, int8 activations and weights,
  per-tensor, calibrated on 200 training images;
- digits_cnn_qonnx.onnx: the same weights as a QONNX (Brevitas-style) graph: 8-bit IntQuant nodes with
  power-of-two scales around the float Conv and MatMul (+ bias Add);
- digits_test.npz: 64 test images (float32, NCHW) and their labels.

Run from the repository root: python fxsim/data/make_model_demo.py   (needs onnx and onnxruntime)
"""
import os
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def float_model(conv_w, conv_b, fc_w, fc_b):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def init(name, a):
        return numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)
    nodes = [helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc")]
    g = helper.make_graph(nodes, "digits_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
                          [init("conv_w", conv_w), init("conv_b", conv_b), init("fc_w", fc_w), init("fc_b", fc_b)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="fxsim make_model_demo")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def po2(x):
    """The smallest power of two >= x."""
    return float(2.0 ** np.ceil(np.log2(x)))


def qonnx_model(conv_w, conv_b, fc_w, fc_b, relu_max):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    D = "qonnx.custom_op.general"
    inits, nodes = [], []

    def init(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a, dtype=np.float32), name))

    def quant(name, x, scale, bits, signed):
        for k, v in (("s", scale), ("z", 0.0), ("b", bits)):
            init(f"{name}_{k}", v)
        nodes.append(helper.make_node("Quant", [x, f"{name}_s", f"{name}_z", f"{name}_b"], [name], name=name, domain=D,
                                      signed=signed, narrow=0, rounding_mode="ROUND"))
    init("conv_w", conv_w)
    init("conv_b", conv_b)
    init("fc_w", fc_w)
    init("fc_b", fc_b)
    quant("x_q", "x", 2.0 ** -8, 8, 0)                                 # pixels in [0, 1)
    quant("conv_w_q", "conv_w", po2(np.abs(conv_w).max() / 127), 8, 1)
    nodes.append(helper.make_node("Conv", ["x_q", "conv_w_q", "conv_b"], ["c"], name="conv", pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Relu", ["c"], ["r"], name="relu"))
    quant("r_q", "r", po2(relu_max / 255), 8, 0)
    nodes.append(helper.make_node("MaxPool", ["r_q"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]))
    nodes.append(helper.make_node("Flatten", ["p"], ["f"], name="flatten"))
    quant("fc_w_q", "fc_w", po2(np.abs(fc_w).max() / 127), 8, 1)
    nodes.append(helper.make_node("MatMul", ["f", "fc_w_q"], ["mm"], name="fc"))
    nodes.append(helper.make_node("Add", ["mm", "fc_b"], ["logits"], name="fc_bias"))
    g = helper.make_graph(nodes, "digits_cnn_qonnx",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(D, 1)],
                          producer_name="fxsim make_model_demo")
    m.ir_version = 8
    return m


class _Reader:
    def __init__(self, X):
        self.it = iter(X[i:i + 1] for i in range(len(X)))

    def get_next(self):
        x = next(self.it, None)
        return None if x is None else {"x": x}


def main():
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from fxsim.training.demo import build_model, load_data
    data = load_data()
    Xtr, ytr, Xte, yte = data
    from fxsim.training.layers import SGD, softmax_cross_entropy
    from fxsim.training.recipes import get_recipe
    model = build_model(0).configure(get_recipe("float64"), seed=0)   # as train_demo.train("float64")
    opt = SGD(model, lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    for _ in range(5):
        order = rng.permutation(len(Xtr))
        for s in range(0, len(order), 50):
            idx = order[s:s + 50]
            loss, g = softmax_cross_entropy(model.forward(Xtr[idx]), ytr[idx])
            model.backward(g)
            opt.step()
    print(f"float64 test accuracy {np.mean(np.argmax(model.forward(Xte), axis=1) == yte):.3f}")
    conv, fc = model.layers[0], model.layers[4]
    fm = float_model(conv.W, conv.b, fc.W, fc.b)
    calib = Xtr[:200].astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "f.onnx"), os.path.join(d, "q.onnx")
        onnx.save(fm, src)
        quantize_static(src, dst, _Reader(calib), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, per_channel=False)
        q = onnx.load(dst)
    q.producer_name = "fxsim make_model_demo (onnxruntime.quantization.quantize_static)"
    onnx.save(q, os.path.join(HERE, "digits_cnn_qdq.onnx"))
    relu_max = float(np.maximum(model.layers[0].forward(calib.astype(np.float64)), 0).max())
    onnx.save(qonnx_model(conv.W, conv.b, fc.W, fc.b, relu_max), os.path.join(HERE, "digits_cnn_qonnx.onnx"))
    np.savez(os.path.join(HERE, "digits_test.npz"), x=Xte[:64].astype(np.float32), labels=yte[:64])
    print("wrote digits_cnn_qdq.onnx, digits_cnn_qonnx.onnx, digits_test.npz")


if __name__ == "__main__":
    main()
