"""Whole-network speed: a ResNet-18-shaped int8 network (random weights, quantized by ONNX Runtime's
quantize_static, QDQ, uint8 activations / int8 weights, per-channel) at 112x112, one image at a time.

Reported: time per image of ``Model.run`` with the default datapath (int32 accumulators: ONNX Runtime's
arithmetic; the exact shortcuts apply), and with 16-bit saturating accumulators (the bias added in the
output stage, since a 16-bit register cannot hold it), against ONNX Runtime's own time for the same model
in the same run (its default session options and threads). Every fxsim output of the default datapath is
checked equal to ONNX Runtime's.

    python benchmarks/bench_model.py [--size 112] [--repeat 5] [--threads N]

``--threads N`` gives both runners N threads (ONNX Runtime's intra-op threads, fxsim's Numba threads and
row slabs); without it each uses its default.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fxsim.model import load_model  # noqa: E402


def resnet18(size, classes=1000, seed=0):
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    k = [0]

    def name(p):
        k[0] += 1
        return f"{p}{k[0]}"

    def conv(x, cin, cout, ks, stride, relu=True):
        w, b, y = name("w"), name("b"), name("conv")
        wv = rng.normal(0, np.sqrt(2 / (cin * ks * ks)), (cout, cin, ks, ks)).astype(np.float32)
        inits.append(numpy_helper.from_array(wv, w))
        inits.append(numpy_helper.from_array(rng.normal(0, 0.05, cout).astype(np.float32), b))
        nodes.append(helper.make_node("Conv", [x, w, b], [y], name=y, strides=[stride, stride], pads=[ks // 2] * 4))
        if relu:
            r = name("relu")
            nodes.append(helper.make_node("Relu", [y], [r], name=r))
            return r
        return y

    def block(x, cin, cout, stride):
        h = conv(x, cin, cout, 3, stride)
        h = conv(h, cout, cout, 3, 1, relu=False)
        sc = x if stride == 1 and cin == cout else conv(x, cin, cout, 1, stride, relu=False)
        s, r = name("add"), name("relu")
        nodes.append(helper.make_node("Add", [h, sc], [s], name=s))
        nodes.append(helper.make_node("Relu", [s], [r], name=r))
        return r
    x = conv("x", 3, 64, 7, 2)
    p = name("pool")
    nodes.append(helper.make_node("MaxPool", [x], [p], name=p, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x, cin = p, 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        x = block(x, cin, cout, stride)
        x = block(x, cout, cout, 1)
        cin = cout
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"))
    inits.append(numpy_helper.from_array(rng.normal(0, 0.05, (classes, 512)).astype(np.float32), "fc_w"))
    inits.append(numpy_helper.from_array(np.zeros(classes, np.float32), "fc_b"))
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1))
    g = helper.make_graph(nodes, "resnet18",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


class _Reader:
    def __init__(self, xs):
        self.it = iter(xs)

    def get_next(self):
        x = next(self.it, None)
        return None if x is None else {"x": x}


def quantized(size):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "f.onnx"), os.path.join(d, "q.onnx")
        onnx.save(resnet18(size), src)
        quantize_static(src, dst, _Reader([rng.normal(0, 1, (1, 3, size, size)).astype(np.float32) for _ in range(4)]),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True)
        return onnx.load(dst)


def best(fn, repeat):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:   # fxsim's Numba threads and row slabs, and the BLAS it calls
        import numba
        from threadpoolctl import threadpool_limits
        numba.set_num_threads(args.threads)
        threadpool_limits(args.threads, user_api="blas")
    import logging
    logging.getLogger().setLevel(logging.ERROR)
    import onnxruntime as ort
    q = quantized(args.size)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if args.threads:
        so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(q.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).normal(0, 1, (1, 3, args.size, args.size)).astype(np.float32)
    m32 = load_model(q)
    macs = None
    ref = sess.run(None, {"x": x})[0]
    got = m32.run(x)["logits"]
    assert np.array_equal(ref, got), "the default datapath differs from ONNX Runtime"
    macs = sum(layer.macs for layer in m32.layers)
    m16 = m32.configure(accumulator="int16", overflow="saturate", bias="output")
    m16.run(x)   # compile
    rec = m16.run(x, record=True).records
    events = sum(int(np.sum(r.result.overflow_count)) for r in rec.values() if r.result is not None)
    t_ort = best(lambda: sess.run(None, {"x": x}), args.repeat)
    t32 = best(lambda: m32.run(x), args.repeat)
    t16 = best(lambda: m16.run(x), max(2, args.repeat // 2))
    print(f"ResNet-18-shaped int8 network, {args.size}x{args.size}, {macs / 1e9:.2f} G MACs per image, "
          f"{len([layer for layer in m32.layers if layer.kind in ('conv', 'gemm')])} MAC layers; "
          f"{os.cpu_count()} cores, {args.threads or 'default'} threads")
    print(f"| runner | ms / image | x ONNX Runtime |\n|---|---:|---:|")
    print(f"| ONNX Runtime {ort.__version__} | {1e3 * t_ort:.1f} | 1.0 |")
    print(f"| fxsim, int32 accumulators (bit-exact with ONNX Runtime) | {1e3 * t32:.1f} | {t32 / t_ort:.1f} |")
    print(f"| fxsim, 16-bit saturating accumulators ({events} saturation events) | {1e3 * t16:.1f} | "
          f"{t16 / t_ort:.1f} |")


if __name__ == "__main__":
    main()
