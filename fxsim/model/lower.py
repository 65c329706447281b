"""Lowering: a ``Graph`` -> a list of ``Layer``s, each one unit of hardware work in execution order.

QOperator nodes (QLinearConv, QLinearMatMul, QGemm, QLinearAdd ...) lower one to one. QDQ patterns are
fused the way ONNX Runtime fuses them before it runs a model (DequantizeLinear on every input ->
Conv/MatMul/Gemm/Add/AveragePool/GlobalAveragePool/Concat -> QuantizeLinear), so the layer computes
what ONNX Runtime computes: the integer op. Data movement between equal Q/DQ parameters (MaxPool,
Reshape, Flatten, Transpose, Squeeze, Unsqueeze) runs on the integer codes. Everything else runs as the
node it is: QuantizeLinear / DequantizeLinear on their own, and float nodes in float32 (``Layer.float``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fxsim.model.graph import Graph, ModelError

__all__ = ["QParams", "Layer", "lower", "SUPPORTED"]

# what fxsim runs, by domain; the error for anything else lists these
QOPERATOR_OPS = ("QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "QuantizeLinear",
                 "DequantizeLinear")
MS_OPS = ("QLinearAdd", "QLinearMul", "QLinearLeakyRelu", "QLinearSigmoid", "QLinearGlobalAveragePool",
          "QLinearAveragePool", "QLinearConcat", "QGemm")
MOVE_OPS = ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity")
FLOAT_OPS = ("Conv", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Relu", "Clip", "LeakyRelu", "Sigmoid",
             "Tanh", "Softmax", "MaxPool", "AveragePool", "GlobalAveragePool", "Concat") + MOVE_OPS
SUPPORTED = {"": tuple(sorted(set(QOPERATOR_OPS + FLOAT_OPS))), "com.microsoft": MS_OPS}
from fxsim.model.qonnx import QONNX_DOMAINS, QONNX_OPS  # noqa: E402
from fxsim.ops.gemm import compact_int_dtype
SUPPORTED.update({d: QONNX_OPS for d in QONNX_DOMAINS})
QDQ_FUSED = ("Conv", "MatMul", "Gemm", "Add", "Mul", "LeakyRelu", "AveragePool", "GlobalAveragePool", "Concat")
QDQ_MOVES = ("MaxPool",) + MOVE_OPS

_INT_FMT = {np.dtype(np.uint8): "uint8", np.dtype(np.int8): "int8", np.dtype(np.uint16): "uint16",
            np.dtype(np.int16): "int16", np.dtype(np.int32): "int32", np.dtype(np.uint32): "uint32"}


def _fmt_of(dtype):
    """(fxsim format name, NumPy storage dtype) for an ONNX quantized element type."""
    dt = np.dtype(dtype)
    if dt in _INT_FMT:
        return _INT_FMT[dt], dt
    name = dt.name
    if name in ("int4", "uint4"):
        return name, np.dtype(np.int8 if name == "int4" else np.uint8)
    if name in ("float8_e4m3fn", "float8_e5m2"):
        return ("e4m3fn" if "e4m3" in name else "e5m2"), dt
    raise ModelError(f"quantized type {name} is not supported (int8, uint8, int16, uint16, int32, int4, uint4, "
                     "float8_e4m3fn, float8_e5m2 are)")


@dataclass
class QParams:
    """One tensor's quantization: float32 ``scale`` and integer ``zero_point`` (scalars, or 1-D along
    ``axis``), the element format name and the NumPy dtype its codes are stored in."""
    scale: np.ndarray
    zero_point: np.ndarray
    fmt: str
    dtype: np.dtype
    axis: int | None = None

    @property
    def per_tensor(self):
        return self.scale.size == 1 and self.zero_point.size == 1

    @property
    def is_float8(self):
        return self.fmt in ("e4m3fn", "e5m2")

    def same_as(self, other):
        return (other is not None and self.fmt == other.fmt and self.scale.shape == other.scale.shape
                and np.array_equal(self.scale, other.scale) and np.array_equal(self.zero_point, other.zero_point))

    def describe(self):
        s = f"{float(self.scale.ravel()[0]):.6g}" if self.scale.size == 1 else f"{self.scale.size} per-channel"
        z = int(self.zero_point.ravel()[0]) if self.zero_point.size == 1 else "per-channel"
        return f"{self.fmt} (scale {s}, zero point {z})"


@dataclass
class Layer:
    """One unit of work. ``kind``: conv, gemm (integer MAC layers, with ``datapath``), add, gap, avgpool,
    maxpool, concat, quantize, dequantize, move, float. ``inputs``/``outputs``: runtime tensor names.
    Shapes and MACs are filled in by the first run (``Model.layers`` runs once on zeros when needed)."""
    name: str
    op: str
    kind: str
    inputs: list
    outputs: list
    params: dict = field(default_factory=dict)
    datapath: object = None
    float: bool = False
    in_shapes: list | None = None
    out_shapes: list | None = None
    macs: int = 0
    # what the executor derives from the parameters alone (datapaths per option set, prepared weights);
    # not an init field, so dataclasses.replace gives a changed layer an empty one
    cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def is_compute(self):
        return self.kind in ("conv", "gemm")

    def formats(self):
        p = self.params
        parts = []
        for key in ("x_q", "a_q", "w_q", "b_q", "y_q"):
            q = p.get(key)
            if q is not None:
                parts.append(f"{key[0]}: {q.describe()}")
        if self.float:
            parts.append("float32")
        return "; ".join(parts)


class _Ctx:
    def __init__(self, g: Graph, plan: str = "onnxruntime"):
        self.g = g
        self.plan = plan
        self.producers = g.producers()
        self.consumers = g.consumers()
        self.outputs = {o.name for o in g.outputs}
        self.fused_q = set()
        self.u8 = self._s8_to_u8()

    def _s8_to_u8(self):
        """Tensors of int8 Q -> DQ pairs that ONNX Runtime's x86 CPU optimizer re-types as uint8 (zero point
        + 128, the same real values) before fusing: a Q whose only consumer is one DQ with the same scalar
        int8 zero point, that DQ having at most one consumer (ORT first gives every consumer its own DQ).
        The re-typing decides which patterns fuse: a fused op needs the same type in and out."""
        out = set()
        for n in self.g.nodes:
            if n.op != "QuantizeLinear" or n.domain != "" or len(n.inputs) < 3:
                continue
            zq = self.g.consts.get(n.inputs[2])
            cons = self.consumers.get(n.outputs[0], [])
            if zq is None or zq.dtype != np.int8 or zq.size != 1 or len(cons) != 1 or n.outputs[0] in self.outputs:
                continue
            dq = cons[0]
            if dq.op != "DequantizeLinear" or dq.domain != "":
                continue
            zd = self.g.consts.get(dq.inputs[2]) if len(dq.inputs) > 2 and dq.inputs[2] else np.zeros(1, np.int8)
            if zd is None or zd.dtype != np.int8 or zd.size != 1 or int(zd.ravel()[0]) != int(zq.ravel()[0]):
                continue
            if len(self.consumers.get(dq.outputs[0], [])) > 1:
                continue
            out.update((n.outputs[0], dq.outputs[0]))
        return out

    def runtime_type(self, q: "QParams", tensor):
        """The element type ONNX Runtime's fusion sees for a Q/DQ tensor (see _s8_to_u8)."""
        return "uint8" if (q.fmt == "int8" and tensor in self.u8) else q.fmt

    def where(self, node):
        return f"{self.g.source}: node {node.name!r} ({node.op}, domain {node.domain or 'ai.onnx'!r}, opset " \
               f"{self.g.opsets.get(node.domain, '?')})"

    def const(self, node, idx, what, required=True):
        if idx >= len(node.inputs) or not node.inputs[idx]:
            if required:
                raise ModelError(f"{self.where(node)}: input {idx} ({what}) is missing")
            return None
        name = node.inputs[idx]
        if name not in self.g.consts:
            raise ModelError(f"{self.where(node)}: {what} {name!r} is computed at run time; fxsim needs it to be a "
                             "constant (an initializer or Constant node)")
        return self.g.consts[name]

    def qparams(self, node, scale_idx, zp_idx, dtype=None, axis=None):
        scale = np.asarray(self.const(node, scale_idx, "scale"))
        if scale.dtype != np.float32:
            raise ModelError(f"{self.where(node)}: scale {node.inputs[scale_idx]!r} is {scale.dtype}; fxsim reads "
                             "float32 scales")
        zp = self.const(node, zp_idx, "zero point", required=False)
        if zp is None:
            if dtype is None:
                dtype = np.uint8
            zp = np.zeros(1, dtype=dtype)
        zp = np.asarray(zp)
        fmt, store = _fmt_of(zp.dtype)
        if np.any(scale <= 0) or not np.all(np.isfinite(scale)):
            raise ModelError(f"{self.where(node)}: scale {node.inputs[scale_idx]!r} must be positive and finite, "
                             f"got {scale.ravel()[:4]}")
        zcodes = zp.astype(np.float32 if fmt in ("e4m3fn", "e5m2") else np.int64)
        if fmt in ("e4m3fn", "e5m2") and np.any(zcodes != 0):
            raise ModelError(f"{self.where(node)}: float8 zero points must be 0")
        if scale.size > 1 or zcodes.size > 1:
            if scale.ndim > 1:
                raise ModelError(f"{self.where(node)}: blocked quantization (a {scale.ndim}-D scale) is not supported")
        return QParams(scale.astype(np.float32).ravel() if scale.size > 1 else scale.astype(np.float32).reshape(()),
                       zcodes.ravel() if zcodes.size > 1 else zcodes.reshape(()), fmt, store, axis)

    def single_consumer(self, tensor):
        cons = self.consumers.get(tensor, [])
        if len(cons) != 1 or tensor in self.outputs:
            return None
        return cons[0]


def _conv_attrs(ctx, node, w_shape, x_rank=4):
    a = node.attrs
    k = a.get("kernel_shape", list(w_shape[2:]))
    if len(w_shape) != 4 or len(k) != 2:
        raise ModelError(f"{ctx.where(node)}: only 2-D convolutions (4-D NCHW tensors) are supported, got weights "
                         f"of shape {tuple(w_shape)}")
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise ModelError(f"{ctx.where(node)}: auto_pad={a['auto_pad']!r} is not supported; give explicit pads")
    return {"strides": a.get("strides", [1, 1]), "pads": a.get("pads", [0, 0, 0, 0]),
            "dilations": a.get("dilations", [1, 1]), "group": a.get("group", 1), "kernel": k}


def _pool_attrs(ctx, node):
    a = node.attrs
    k = a.get("kernel_shape")
    if k is None or len(k) != 2:
        raise ModelError(f"{ctx.where(node)}: only 2-D pooling is supported, got kernel_shape={k}")
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise ModelError(f"{ctx.where(node)}: auto_pad={a['auto_pad']!r} is not supported; give explicit pads")
    if a.get("storage_order", 0):
        raise ModelError(f"{ctx.where(node)}: storage_order=1 is not supported")
    return {"kernel": k, "strides": a.get("strides", [1, 1]), "pads": a.get("pads", [0, 0, 0, 0]),
            "dilations": a.get("dilations", [1, 1]), "ceil_mode": a.get("ceil_mode", 0),
            "count_include_pad": a.get("count_include_pad", 0)}


def _bias_int32(ctx, node, arr, what):
    b = np.asarray(arr)
    if b.dtype != np.int32:
        raise ModelError(f"{ctx.where(node)}: {what} must be int32, got {b.dtype}")
    return b.astype(np.int64)


def _weight_codes(ctx, node, arr, q: QParams, what="weight"):
    """Constant weight codes, kept in their narrow integer dtype (the engine scans and copies them on every
    run: int8 is 8x less to read than int64)."""
    w = np.asarray(arr)
    if q.is_float8:
        raise ModelError(f"{ctx.where(node)}: float8 weights in a MAC layer are not supported yet")
    return _compact(w)


def _compact(codes):
    c = np.asarray(codes)
    if c.dtype.kind not in "iu":
        c = c.astype(np.int64)
    lo, hi = (int(c.min()), int(c.max())) if c.size else (0, 0)
    return np.ascontiguousarray(c.astype(compact_int_dtype(lo, hi), copy=False))


# ---------------------------------------------------------------------------------------------- QOperator
def _qlinearconv(ctx, n):
    x_q = ctx.qparams(n, 1, 2)
    w = ctx.const(n, 3, "weight")
    w_q = ctx.qparams(n, 4, 5, axis=0)
    y_q = ctx.qparams(n, 6, 7)
    bias = ctx.const(n, 8, "bias", required=False)
    p = _conv_attrs(ctx, n, w.shape)
    p.update(x_q=x_q, w_q=w_q, y_q=y_q, w=_weight_codes(ctx, n, w, w_q),
             bias=None if bias is None else _bias_int32(ctx, n, bias, "bias"))
    return Layer(n.name, n.op, "conv", [n.inputs[0]], n.outputs[:1], p)


def _convinteger(ctx, n):
    w = ctx.const(n, 1, "weight")
    xz = ctx.const(n, 2, "x_zero_point", required=False)
    wz = ctx.const(n, 3, "w_zero_point", required=False)
    x_dt = xz.dtype if xz is not None else np.uint8
    x_q = QParams(np.float32(1).reshape(()), np.asarray(0 if xz is None else xz, dtype=np.int64).reshape(()),
                  _fmt_of(x_dt)[0], np.dtype(x_dt))
    wzz = np.asarray(0 if wz is None else wz, dtype=np.int64)
    w_q = QParams(np.float32(1).reshape(()), wzz.ravel() if wzz.size > 1 else wzz.reshape(()), _fmt_of(w.dtype)[0],
                  w.dtype, 0)
    p = _conv_attrs(ctx, n, w.shape)
    p.update(x_q=x_q, w_q=w_q, y_q=None, w=_compact(w), bias=None)
    return Layer(n.name, n.op, "conv", [n.inputs[0]], n.outputs[:1], p)


def _qlinearmatmul(ctx, n):
    a_q = ctx.qparams(n, 1, 2)
    b_q = ctx.qparams(n, 4, 5, axis=-1)
    y_q = ctx.qparams(n, 6, 7)
    return _matmul_layer(ctx, n, n.inputs[0], n.inputs[3], a_q, b_q, y_q, None, n.outputs[:1], n.op)


def _matmulinteger(ctx, n):
    az = ctx.const(n, 2, "a_zero_point", required=False)
    bz = ctx.const(n, 3, "b_zero_point", required=False)
    a_dt = az.dtype if az is not None else np.uint8
    b_const = ctx.g.consts.get(n.inputs[1])
    b_dt = bz.dtype if bz is not None else (b_const.dtype if b_const is not None else np.uint8)
    a_q = QParams(np.float32(1).reshape(()), np.asarray(0 if az is None else az, dtype=np.int64).reshape(()),
                  _fmt_of(a_dt)[0], np.dtype(a_dt))
    bzz = np.asarray(0 if bz is None else bz, dtype=np.int64)
    b_q = QParams(np.float32(1).reshape(()), bzz.ravel() if bzz.size > 1 else bzz.reshape(()), _fmt_of(b_dt)[0],
                  np.dtype(b_dt), -1)
    return _matmul_layer(ctx, n, n.inputs[0], n.inputs[1], a_q, b_q, None, None, n.outputs[:1], n.op)


def _matmul_layer(ctx, n, a_name, b_name, a_q, b_q, y_q, bias, outputs, op, trans_a=0, trans_b=0, alpha=1.0):
    b = ctx.g.consts.get(b_name)
    p = dict(a_q=a_q, b_q=b_q, y_q=y_q, bias=bias, trans_a=trans_a, alpha=alpha)
    inputs = [a_name]
    if b is None:
        if trans_b:
            raise ModelError(f"{ctx.where(n)}: a run-time B with transB is not supported")
        p["b"] = None
        inputs.append(b_name)
    else:
        b = np.asarray(b)
        if b.ndim != 2:
            raise ModelError(f"{ctx.where(n)}: constant B must be 2-D, got shape {b.shape}")
        p["b"] = _compact(b.T if trans_b else b)
    return Layer(n.name, op, "gemm", inputs, outputs, p)


def _qgemm(ctx, n):
    if n.attrs.get("transA", 0):
        raise ModelError(f"{ctx.where(n)}: transA=1 is not supported")
    a_q = ctx.qparams(n, 1, 2)
    b_q = ctx.qparams(n, 4, 5, axis=-1)
    bias = ctx.const(n, 6, "C (bias)", required=False)
    if len(n.inputs) < 8 or not n.inputs[7]:
        raise ModelError(f"{ctx.where(n)}: QGemm with a float output (no y_scale) is not supported")
    y_q = ctx.qparams(n, 7, 8)
    return _matmul_layer(ctx, n, n.inputs[0], n.inputs[3], a_q, b_q, y_q,
                         None if bias is None else _bias_int32(ctx, n, bias, "C"), n.outputs[:1], n.op,
                         trans_b=n.attrs.get("transB", 0), alpha=n.attrs.get("alpha", 1.0))


def _qlinearadd(ctx, n):
    p = dict(a_q=ctx.qparams(n, 1, 2), b_q=ctx.qparams(n, 4, 5), y_q=ctx.qparams(n, 6, 7))
    ins = [n.inputs[0], n.inputs[3]]
    for q in (p["a_q"], p["b_q"], p["y_q"]):
        if not q.per_tensor:
            raise ModelError(f"{ctx.where(n)}: per-channel parameters are not supported here")
    consts = {i: ctx.g.consts[t] for i, t in enumerate(ins) if t in ctx.g.consts}
    p["consts"] = consts
    kind = "mul" if n.op == "QLinearMul" else "add"
    return Layer(n.name, n.op, kind, [t for i, t in enumerate(ins) if i not in consts], n.outputs[:1], p)


def _qlinearleakyrelu(ctx, n):
    p = dict(x_q=ctx.qparams(n, 1, 2), y_q=ctx.qparams(n, 3, 4), alpha=float(n.attrs.get("alpha", 0.01)))
    if not (p["x_q"].per_tensor and p["y_q"].per_tensor):
        raise ModelError(f"{ctx.where(n)}: per-channel parameters are not supported here")
    return Layer(n.name, n.op, "lut", [n.inputs[0]], n.outputs[:1], p)


def _qlinearsigmoid(ctx, n):
    p = dict(x_q=ctx.qparams(n, 1, 2), y_q=ctx.qparams(n, 3, 4), fn="sigmoid")
    if not (p["x_q"].per_tensor and p["y_q"].per_tensor):
        raise ModelError(f"{ctx.where(n)}: per-channel parameters are not supported here")
    return Layer(n.name, n.op, "lut", [n.inputs[0]], n.outputs[:1], p)


def _qlineargap(ctx, n):
    if n.attrs.get("channels_last", 0):
        raise ModelError(f"{ctx.where(n)}: channels_last=1 is not supported")
    return Layer(n.name, n.op, "gap", [n.inputs[0]], n.outputs[:1],
                 dict(x_q=ctx.qparams(n, 1, 2), y_q=ctx.qparams(n, 3, 4)))


def _qlinearavgpool(ctx, n):
    if n.attrs.get("channels_last", 0):
        raise ModelError(f"{ctx.where(n)}: channels_last=1 is not supported")
    p = _pool_attrs(ctx, n)
    p.update(x_q=ctx.qparams(n, 1, 2), y_q=ctx.qparams(n, 3, 4))
    return Layer(n.name, n.op, "avgpool", [n.inputs[0]], n.outputs[:1], p)


def _qlinearconcat(ctx, n):
    y_q = ctx.qparams(n, 0, 1)
    ins, qs = [], []
    for k in range(2, len(n.inputs), 3):
        ins.append(n.inputs[k])
        qs.append(ctx.qparams(n, k + 1, k + 2))
    return Layer(n.name, n.op, "concat", ins, n.outputs[:1], dict(axis=n.attrs.get("axis", 1), ins_q=qs, y_q=y_q))


def _quantize(ctx, n):
    out_dt = n.attrs.get("output_dtype", 0)
    y_q = ctx.qparams(n, 1, 2, axis=n.attrs.get("axis", 1))
    if out_dt and len(n.inputs) < 3:
        from fxsim.model.graph import _dtype
        y_q = ctx.qparams(n, 1, 2, dtype=_dtype(out_dt), axis=n.attrs.get("axis", 1))
    if n.attrs.get("block_size", 0):
        raise ModelError(f"{ctx.where(n)}: blocked quantization (block_size) is not supported")
    return Layer(n.name, n.op, "quantize", [n.inputs[0]], n.outputs[:1],
                 dict(y_q=y_q, saturate=n.attrs.get("saturate", 1)))


def _dequantize(ctx, n):
    x_q = ctx.qparams(n, 1, 2, axis=n.attrs.get("axis", 1))
    if n.attrs.get("block_size", 0):
        raise ModelError(f"{ctx.where(n)}: blocked quantization (block_size) is not supported")
    return Layer(n.name, n.op, "dequantize", [n.inputs[0]], n.outputs[:1], dict(x_q=x_q))


def _plain(ctx, n, kind="float"):
    """A node that runs as it is (float32, or data movement on whatever it is given)."""
    consts = {i: ctx.g.consts[t] for i, t in enumerate(n.inputs) if t in ctx.g.consts}
    runtime = [t for t in n.inputs if t and t not in ctx.g.consts]
    p = dict(attrs=dict(n.attrs), consts=consts, n_inputs=len(n.inputs))
    if n.op in ("MaxPool", "AveragePool"):
        p.update(_pool_attrs(ctx, n))
    if n.op == "Conv":
        w = consts.get(1)
        p.update(_conv_attrs(ctx, n, w.shape if w is not None else (0, 0, 0, 0)))
    if n.op in MOVE_OPS:
        kind = "move"
    if n.op == "MaxPool":
        kind = "maxpool"
    if n.op == "MaxPool" and len(n.outputs) > 1 and n.outputs[1]:
        raise ModelError(f"{ctx.where(n)}: MaxPool's Indices output is not supported")
    return Layer(n.name, n.op, kind, runtime, n.outputs[:1], p, float=(kind == "float"))


_QOP = {("", "QLinearConv"): _qlinearconv, ("", "ConvInteger"): _convinteger,
        ("", "QLinearMatMul"): _qlinearmatmul, ("", "MatMulInteger"): _matmulinteger,
        ("", "QuantizeLinear"): _quantize, ("", "DequantizeLinear"): _dequantize,
        ("com.microsoft", "QGemm"): _qgemm, ("com.microsoft", "QLinearAdd"): _qlinearadd,
        ("com.microsoft", "QLinearMul"): _qlinearadd,
        ("com.microsoft", "QLinearLeakyRelu"): _qlinearleakyrelu,
        ("com.microsoft", "QLinearSigmoid"): _qlinearsigmoid,
        ("com.microsoft", "QLinearGlobalAveragePool"): _qlineargap,
        ("com.microsoft", "QLinearAveragePool"): _qlinearavgpool,
        ("com.microsoft", "QLinearConcat"): _qlinearconcat}


# ---------------------------------------------------------------------------------------------- QDQ fusion
def _dq_of(ctx, tensor):
    """The DequantizeLinear node producing ``tensor`` (None if another op produces it)."""
    p = ctx.producers.get(tensor)
    if p is not None and p.op == "DequantizeLinear" and p.domain == "":
        return p
    return None


def _is_8bit(q):
    return q.fmt in ("uint8", "int8")


def _fuse(ctx, n):
    """The fused integer layer for DQ -> n -> Q, as ONNX Runtime's QDQ transformer builds it; None when
    the pattern does not match (the nodes then run one by one)."""
    if n.domain != "" or n.op not in QDQ_FUSED + QDQ_MOVES:
        return None
    q = ctx.single_consumer(n.outputs[0]) if n.outputs else None
    if q is None or q.op != "QuantizeLinear":
        return None
    layer = _fuse_with(ctx, n, q)
    if layer is not None:
        ctx.fused_q.add(id(q))
    return layer


def _fuse_with(ctx, n, q):
    data_inputs = [t for t in n.inputs if t]
    if n.op in ("Reshape", "Squeeze", "Unsqueeze"):
        data_inputs = data_inputs[:1]
    dqs = [_dq_of(ctx, t) for t in data_inputs]
    if n.op in ("Conv", "Gemm") and len(dqs) == 3 and dqs[2] is None:
        return None
    if any(d is None for d in dqs):
        return None
    for d in dqs:
        if d.attrs.get("block_size", 0):
            return None
    qdq = [ctx.qparams(d, 1, 2, axis=d.attrs.get("axis", 1)) for d in dqs]
    y_q = ctx.qparams(q, 1, 2, axis=q.attrs.get("axis", 1))
    if not y_q.per_tensor or q.attrs.get("block_size", 0):
        return None
    src = [d.inputs[0] for d in dqs]
    name, op = n.name, f"QDQ {n.op}"
    outs = q.outputs[:1]
    if n.op in QDQ_MOVES:
        if not (qdq[0].same_as(y_q) and qdq[0].per_tensor):
            return None
        layer = _plain(ctx, n)
        layer.inputs = [src[0]] + layer.inputs[1:]
        layer.outputs = outs
        layer.op = op
        layer.float = False
        layer.kind = "maxpool" if n.op == "MaxPool" else "move"
        return layer
    # ONNX Runtime fuses only when the activation types agree in and out (after its int8 -> uint8 re-typing),
    # and computes the float formulas of a fused op on the re-typed codes (zero point + 128)
    y_type = ctx.runtime_type(y_q, q.outputs[0])
    n_act = 2 if n.op in ("Add", "Mul") else (len(qdq) if n.op == "Concat" else 1)
    agree = all(ctx.runtime_type(qdq[i], dqs[i].outputs[0]) == y_type for i in range(n_act))
    as_uint8 = agree and y_type != y_q.fmt
    if ctx.plan == "onnxruntime":
        if not all(_is_8bit(x) for x in qdq[:2] + [y_q]) or not agree:
            return None
        if y_type != "uint8":   # ORT's x86-64 CPU optimizer fuses only uint8 activations (int8 is not allowed)
            return None
    elif any(x.is_float8 or x.fmt in ("int32", "uint32") for x in qdq[:2] + [y_q]):
        return None   # the integer plan: every integer Q/DQ pattern becomes its integer op
    if not all(x.per_tensor for x in qdq[:1]):
        return None
    if n.op == "Conv":
        w = ctx.g.consts.get(src[1])
        if w is None:
            return None
        p = _conv_attrs(ctx, n, w.shape)
        bias = None
        if len(src) == 3:
            b = ctx.g.consts.get(src[2])
            if b is None or b.dtype != np.int32:
                return None
            bias = b.astype(np.int64)
        p.update(x_q=qdq[0], w_q=qdq[1], y_q=y_q, w=_compact(w), bias=bias)
        return Layer(name, op, "conv", [src[0]], outs, p)
    if n.op in ("MatMul", "Gemm"):
        if n.op == "Gemm" and (n.attrs.get("transA", 0) or n.attrs.get("beta", 1.0) != 1.0):
            return None
        bias = None
        if n.op == "Gemm" and len(src) == 3:
            b = ctx.g.consts.get(src[2])
            if b is None or b.dtype != np.int32:
                return None
            bias = b.astype(np.int64)
        trans_b = n.attrs.get("transB", 0) if n.op == "Gemm" else 0
        return _matmul_layer(ctx, n, src[0], src[1], qdq[0], qdq[1], y_q, bias, outs, op,
                             trans_b=trans_b, alpha=n.attrs.get("alpha", 1.0))
    if n.op in ("Add", "Mul"):
        if not all(x.per_tensor for x in qdq) or qdq[0].fmt != y_q.fmt or qdq[1].fmt != y_q.fmt:
            return None
        consts = {i: ctx.g.consts[t] for i, t in enumerate(src) if t in ctx.g.consts}
        return Layer(name, op, n.op.lower(), [t for i, t in enumerate(src) if i not in consts], outs,
                     dict(a_q=qdq[0], b_q=qdq[1], y_q=y_q, consts=consts, as_uint8=as_uint8))
    if n.op == "GlobalAveragePool":
        return Layer(name, op, "gap", src, outs, dict(x_q=qdq[0], y_q=y_q))
    if n.op == "LeakyRelu":
        return Layer(name, op, "lut", src, outs, dict(x_q=qdq[0], y_q=y_q, alpha=float(n.attrs.get("alpha", 0.01)),
                                                      as_uint8=as_uint8))
    if n.op == "AveragePool":
        p = _pool_attrs(ctx, n)
        p.update(x_q=qdq[0], y_q=y_q, as_uint8=as_uint8)
        return Layer(name, op, "avgpool", src, outs, p)
    if n.op == "Concat":
        if not all(x.per_tensor for x in qdq):
            return None
        return Layer(name, op, "concat", src, outs, dict(axis=n.attrs.get("axis"), ins_q=qdq, y_q=y_q))
    return None


def _merge_duplicate_qdq(g: Graph) -> Graph:
    """Merge identical QuantizeLinear/DequantizeLinear nodes (same inputs and attributes), as ONNX Runtime's
    common-subexpression elimination does before its QDQ passes count consumers."""
    from dataclasses import replace
    seen, rename, nodes = {}, {}, []
    for n in g.nodes:
        ins = [rename.get(i, i) for i in n.inputs]
        if n.op in ("QuantizeLinear", "DequantizeLinear") and n.domain == "":
            key = (n.op, tuple(ins), tuple(sorted((k, repr(v)) for k, v in n.attrs.items())))
            if key in seen and not any(o in {x.name for x in g.outputs} for o in n.outputs):
                rename[n.outputs[0]] = seen[key].outputs[0]
                continue
            seen[key] = n
        nodes.append(replace(n, inputs=ins))
    return replace(g, nodes=nodes)


PLANS = ("onnxruntime", "integer")


def lower(g: Graph, plan: str = "onnxruntime") -> list:
    """The graph's layers in execution order (fused QDQ patterns, then every other node one by one);
    nodes whose results nothing uses are dropped. ``plan``: "onnxruntime" fuses the QDQ patterns ONNX
    Runtime's x86-64 CPU provider fuses (so that every output equals its own); "integer" fuses every
    integer Q/DQ pattern (int8 activations at a fan-out, 16-bit tensors), as an accelerator runs them."""
    if plan not in PLANS:
        raise ModelError(f"plan must be one of {PLANS}, got {plan!r}")
    g = _merge_duplicate_qdq(g)
    ctx = _Ctx(g, plan)
    for n in g.nodes:
        if n.domain not in SUPPORTED or (n.op not in SUPPORTED[n.domain]):
            allowed = "; ".join(f"{d or 'ai.onnx'}: {', '.join(ops)}" for d, ops in SUPPORTED.items())
            raise ModelError(f"{ctx.where(n)}: unsupported operator. fxsim supports {allowed}; plus QDQ patterns "
                             f"around {', '.join(QDQ_FUSED + QDQ_MOVES)}")
        if n.domain == "":
            v = g.opsets.get("", 0)
            if not 10 <= v <= 21 and n.op in QOPERATOR_OPS:
                raise ModelError(f"{ctx.where(n)}: opset {v} is not supported (ai.onnx opsets 10 to 21 are)")
    layers = []
    for n in g.nodes:
        if id(n) in ctx.fused_q:
            continue
        fused = _fuse(ctx, n)
        if fused is not None:
            layers.append(fused)
            continue
        if n.domain in QONNX_DOMAINS:
            layer = _plain(ctx, n, kind="qonnx")
            layer.float = False
            layers.append(layer)
            continue
        from fxsim.model.qonnx import fuse_qonnx
        q = fuse_qonnx(ctx, n)
        if q is not None:
            layers.append(q)
            continue
        fn = _QOP.get((n.domain, n.op))
        layers.append(fn(ctx, n) if fn is not None else _plain(ctx, n))
    # dead-code elimination from the graph outputs back
    needed = {o.name for o in g.outputs}
    keep = []
    for layer in reversed(layers):
        if any(o in needed for o in layer.outputs):
            keep.append(layer)
            needed.update(layer.inputs)
    keep.reverse()
    names = {}
    for layer in keep:   # unique layer names (an unnamed model gets op_index names)
        if layer.name in names:
            names[layer.name] += 1
            layer.name = f"{layer.name}_{names[layer.name]}"
        else:
            names[layer.name] = 0
    return keep
