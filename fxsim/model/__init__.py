"""Whole quantized networks: import ONNX (QOperator and QDQ) models and simulate them layer by layer.

    m = fxsim.load_model("net.onnx")                   # ONNX Runtime's integer arithmetic
    y = m.run({"x": x})                                # {output name: array}, as InferenceSession.run
    m16 = m.configure(accumulator="int16", overflow="saturate")

Modules: graph (import), lower (layers), hardware (options -> datapaths), execute (one layer),
model (Model), report (tables), cli (the ``fxsim model`` command).
"""
from fxsim.model.graph import ModelError  # noqa: F401
from fxsim.model.hardware import Hardware, load_hardware  # noqa: F401
from fxsim.model.model import Model, load_model  # noqa: F401

__all__ = ["ModelError", "Hardware", "load_hardware", "Model", "load_model"]
