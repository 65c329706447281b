"""QONNX import: the ``qonnx`` package's own executor is the oracle (its numpy quantizers, and ONNX Runtime
for the float nodes between them)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from fxsim.model import load_model

from . import onnx_models as om

D = om.QONNX_DOMAIN


@pytest.mark.parametrize("per_channel", [True, False])
def test_qonnx_network_equals_qonnx_executor(per_channel):
    q = om.qonnx_cnn(per_channel=per_channel)
    m = load_model(q)
    kinds = {layer.name: layer.kind for layer in m.layers}
    assert kinds["conv"] == "conv" and kinds["fc"] == "gemm"     # lowered to integer MAC layers
    conv = [layer for layer in m.layers if layer.name == "conv"][0]
    assert str(conv.datapath.a) == "int8" and str(conv.datapath.b) == "int4"
    for seed in range(3):
        x = np.random.default_rng(seed).normal(0, 2, (2, 2, 6, 6)).astype(np.float32)
        np.testing.assert_array_equal(m.run(x)["y"], om.qonnx_run(q, {"x": x})["y"])


def _single(node, inits, shape=(3, 17)):
    g = h.make_graph([node], "q", [h.make_tensor_value_info("x", T.FLOAT, list(shape))],
                     [h.make_tensor_value_info("y", T.FLOAT, list(shape))], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13), h.make_opsetid(D, 1)])
    m.ir_version = 8
    return m


def _f(name, v):
    return nh.from_array(np.asarray(v, dtype=np.float32), name)


@pytest.mark.parametrize("mode", ["ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN"])
@pytest.mark.parametrize("signed,narrow,bits,zp", [(1, 0, 8, 0.0), (1, 1, 4, 0.0), (0, 0, 3, 2.0), (0, 1, 8, 5.0),
                                                    (1, 0, 1, 0.0)])
def test_quant_elementwise_equals_qonnx(mode, signed, narrow, bits, zp):
    rng = np.random.default_rng(bits * 7 + int(zp))
    x = (rng.normal(0, 1, (3, 17)) * 3).astype(np.float32)
    x[0, :6] = [0.5, -0.5, 1.5, -2.5, 0.0, 100.0]
    node = h.make_node("Quant", ["x", "s", "z", "b"], ["y"], domain=D, signed=signed, narrow=narrow,
                       rounding_mode=mode)
    m = _single(node, [_f("s", 0.37), _f("z", zp), _f("b", bits)])
    x = x * np.float32(0.37) if mode in ("HALF_UP", "HALF_DOWN", "ROUND") else x
    np.testing.assert_array_equal(load_model(m).run(x)["y"], om.qonnx_run(m, {"x": x})["y"])


def test_bipolar_and_trunc_equal_qonnx():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (3, 17)).astype(np.float32)
    x[0, 0] = 0.0
    m = _single(h.make_node("BipolarQuant", ["x", "s"], ["y"], domain=D), [_f("s", [0.75])])
    np.testing.assert_array_equal(load_model(m).run(x)["y"], om.qonnx_run(m, {"x": x})["y"])
    xg = (rng.integers(-500, 500, (3, 17)) * 0.125).astype(np.float32)
    for mode in ("FLOOR", "ROUND"):
        m = _single(h.make_node("Trunc", ["x", "s", "z", "ib", "ob"], ["y"], domain=D, rounding_mode=mode),
                    [_f("s", 0.125), _f("z", 0.0), _f("ib", 10.0), _f("ob", 6.0)])
        np.testing.assert_array_equal(load_model(m).run(xg)["y"], om.qonnx_run(m, {"x": xg})["y"])


def test_qonnx_layer_takes_hardware_options():
    m = load_model(om.qonnx_cnn(), accumulator="int12", overflow="saturate")
    x = np.random.default_rng(0).normal(0, 4, (2, 2, 6, 6)).astype(np.float32)
    rec = m.run(x, record=True).records
    assert rec["conv"].layer.datapath.accumulator.fmt.bits == 12
    exact = load_model(om.qonnx_cnn(), accumulator="int32").run(x, record=True).records
    need = int(exact["conv"].result.summary()["max_bits_needed"])
    events = int(np.sum(rec["conv"].result.overflow_count))
    assert (events > 0) == (need > 12)


@pytest.mark.parametrize("e,m,bias,max_val,attrs", [
    (4, 3, 7.0, 448.0, dict(rounding_mode="ROUND")),
    (5, 2, 15.0, 57344.0, dict(rounding_mode="ROUND")),
    (3, 2, 3.0, 100.0, dict(rounding_mode="FLOOR")),
    (4, 3, 7.0, 448.0, dict(rounding_mode="ROUND", saturation=0, has_inf=1)),
    (4, 3, 7.0, 240.0, dict(rounding_mode="CEIL", saturation=0, has_nan=1)),
])
def test_floatquant_equals_qonnx(e, m, bias, max_val, attrs):
    rng = np.random.default_rng(e * 10 + m)
    x = (rng.normal(0, 1, (4, 33)) * rng.choice([1e-3, 1, 30, 300], (4, 33))).astype(np.float32)
    x[0, :5] = [0.0, 1e-8, -1e6, 2.0, -0.375]
    full = dict(has_inf=0, has_nan=0, has_subnormal=1, saturation=1)
    full.update(attrs)
    node = h.make_node("FloatQuant", ["x", "s", "eb", "mb", "bias", "mv"], ["y"], domain=D, **full)
    mdl = _single(node, [_f("s", 0.5), _f("eb", e), _f("mb", m), _f("bias", bias), _f("mv", max_val)], shape=(4, 33))
    np.testing.assert_array_equal(load_model(mdl).run(x)["y"], om.qonnx_run(mdl, {"x": x})["y"])
