"""The shipped whole-network example (fxsim/data/digits_cnn_*.onnx): ONNX Runtime and the qonnx executor
agree with fxsim on it, and the demo step runs."""
from __future__ import annotations

import os

import numpy as np
import onnx

from fxsim.model import load_model

from . import onnx_models as om

DATA = os.path.join(os.path.dirname(__file__), "..", "fxsim", "data")


def test_shipped_qdq_model_equals_onnxruntime():
    z = np.load(os.path.join(DATA, "digits_test.npz"))
    path = os.path.join(DATA, "digits_cnn_qdq.onnx")
    m = load_model(path)
    assert [layer.kind for layer in m.layers if layer.kind in ("conv", "gemm")] == ["conv", "gemm"]
    ours = m.run({"x": z["x"]})
    ort = om.ort_run(onnx.load(path), {"x": z["x"]})
    np.testing.assert_array_equal(ours["logits"], ort["logits"])
    assert np.mean(np.argmax(ours["logits"], axis=1) == z["labels"]) > 0.85


def test_shipped_qonnx_model_equals_qonnx_executor():
    z = np.load(os.path.join(DATA, "digits_test.npz"))
    proto = onnx.load(os.path.join(DATA, "digits_cnn_qonnx.onnx"))
    m = load_model(proto)
    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    for v in list(fixed.graph.input) + list(fixed.graph.output):
        v.type.tensor_type.shape.dim[0].dim_value = 1     # the qonnx executor wants static shapes
    for i in range(6):
        x = z["x"][i:i + 1]
        np.testing.assert_array_equal(m.run(x)["logits"], om.qonnx_run(fixed, {"x": x})["logits"])


def test_model_demo_step(tmp_path, capsys):
    from fxsim.workflows.demo import run_model_demo
    from fxsim.rtl.export import verify_dir
    rep = run_model_demo(str(tmp_path))
    assert rep["onnxruntime_agreement"]["logits"]["equal"] == 640
    assert set(rep["narrowest_bits"]) == {"conv", "fc"}
    assert verify_dir(tmp_path / "model_golden") == []
    assert "equal to ONNX Runtime" in capsys.readouterr().out
