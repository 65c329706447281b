"""Simulating a spec's layer: its forward GEMM or convolution, or one gradient GEMM of its backward pass."""
from __future__ import annotations

import numpy as np

from fxsim.datapath import Datapath
from fxsim.errors import InvalidArgument
from fxsim.ops.backward import conv2d_backward
from fxsim.ops.conv import conv2d
from fxsim.ops.gemm import gemm
from fxsim.workflows.data import make_data
from fxsim.workflows.spec_base import LayerSpec
from fxsim.workflows.spec_keys import get

__all__ = ["run_layer"]


def run_layer(spec: LayerSpec, datapath: Datapath | None = None, *, trace=None, data=None):
    """Simulate the spec's layer (optionally with another datapath); returns (result, (A, B, bias))."""
    if spec.op == "batch_norm":
        raise InvalidArgument("a batch_norm layer is not one GEMM: simulate it with run_batch_norm (fxsim run); "
                         "sweep and export take gemm and conv2d layers")
    dp = datapath or spec.datapath
    A, B, bias = data if data is not None else make_data(spec)
    if spec.pass_ != "forward":
        return _run_backward(spec, dp, A, B, trace), (A, B, bias)
    if spec.op == "gemm":
        return gemm(A, B, dp, bias=bias, trace=trace), (A, B, bias)
    s = spec.shape
    return conv2d(A, B, dp, stride=get(s, "shape.stride"), padding=get(s, "shape.padding"),
                  dilation=get(s, "shape.dilation"), groups=get(s, "shape.groups"), bias=bias, trace=trace), (A, B, bias)


def _run_backward(spec, dp, A, B, trace):
    """The gradient GEMM of a backward pass through ``dp`` (a GemmResult, in the lowered GEMM's shape)."""
    if spec.op == "gemm":
        if spec.pass_ == "backward_input":            # dX (M, K) = dY (M, N) . W^T (N, K)
            return gemm(A, np.ascontiguousarray(np.asarray(B).T), dp, trace=trace)
        return gemm(np.ascontiguousarray(np.asarray(A).T), B, dp, trace=trace)    # dW (K, N) = X^T . dY
    if trace:
        raise InvalidArgument("per-cycle traces are recorded for gemm layers, not for conv2d backward passes")
    s = spec.shape
    kw = dict(stride=get(s, "shape.stride"), padding=get(s, "shape.padding"), dx_datapath=dp, dw_datapath=dp)
    if spec.pass_ == "backward_input":               # A = dY (N, O, OH, OW), B = W (O, C, k, k)
        x_shape = (A.shape[0], B.shape[1], s["height"], s["width"])
        kw["dw_datapath"] = dp.replace(b=dp.a, product=None)   # the unused dW GEMM of zeros: any lossless one
        return conv2d_backward(np.zeros(x_shape), B, A, **kw)[2]["dx"]
    w_shape = (B.shape[1], A.shape[1], s["kernel"], s["kernel"])      # A = X, B = dY
    return conv2d_backward(A, np.zeros(w_shape), B, need_dx=False, **kw)[2]["dw"]
