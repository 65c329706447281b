"""QONNX (the dialect Brevitas exports and FINN / hls4ml read): Quant / IntQuant, BipolarQuant, Trunc and
FloatQuant, and the integer lowering of the float Conv / MatMul / Gemm nodes they surround.

The quantizers are elementwise float32 arithmetic, computed in the order the QONNX operator definitions
give (scale, add the zero point, clamp, round, remove the zero point, rescale). A Conv / MatMul / Gemm
whose activation and (constant) weights both come from IntQuant nodes with power-of-two scales and zero
zero points is lowered to an integer MAC layer: the codes are exact, the float result of the original
node equals (integer accumulator) x (scale product) + bias exactly while the accumulator stays below
2**24, and the hardware options then apply to it like to any other MAC layer.
"""
from __future__ import annotations

import numpy as np

from fxsim.model.graph import ModelError

__all__ = ["QONNX_DOMAINS", "QONNX_OPS", "run_qonnx", "int_range"]

QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")
QONNX_OPS = ("Quant", "IntQuant", "BipolarQuant", "Trunc", "FloatQuant")
F32 = np.float32


def int_range(signed, narrow, bits):
    bits = int(bits)
    if signed:
        return (-(2 ** (bits - 1)) + (1 if narrow else 0)), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1 - (1 if narrow else 0)


def _round(x, mode):
    m = str(mode).upper()
    if m in ("ROUND", "HALF_EVEN"):
        return np.round(x)
    if m == "CEIL":
        return np.ceil(x)
    if m == "FLOOR":
        return np.floor(x)
    if m == "UP":
        return np.sign(x) * np.ceil(np.abs(x))
    if m == "DOWN":
        return np.fix(x)
    if m == "HALF_UP":
        return np.sign(x) * np.floor(np.abs(x) + F32(0.5))
    if m == "HALF_DOWN":
        return np.sign(x) * np.ceil(np.abs(x) - F32(0.5))
    raise ModelError(f"rounding_mode {mode!r} is not one of ROUND, HALF_EVEN, CEIL, FLOOR, UP, DOWN, HALF_UP, "
                     "HALF_DOWN")


def _f(v):
    return np.asarray(v, dtype=F32)


def int_quant(x, scale, zeropt, bits, signed, narrow, rounding_mode):
    x, scale, zeropt = _f(x), _f(scale), _f(zeropt)
    y = (x / scale).astype(F32)
    y = (y + zeropt).astype(F32)
    if int(np.asarray(bits).ravel()[0]) == 1 and signed:
        y = np.where(y >= 0, F32(1), F32(-1)).astype(F32)
    else:
        lo, hi = int_range(signed, narrow, np.asarray(bits).ravel()[0])
        y = np.where(y > hi, F32(hi), y)
        y = np.where(y < lo, F32(lo), y)
        y = _round(y, rounding_mode).astype(F32)
    return ((y - zeropt).astype(F32) * scale).astype(F32)


def bipolar_quant(x, scale):
    x = _f(x)
    return (np.where(x >= 0, F32(1), F32(-1)) * _f(scale)).astype(F32)


def trunc(x, scale, zeropt, in_bits, out_bits_or_scale, rest, attrs):
    """Trunc v1 (x, scale, zeropt, input_bit_width, output_bit_width) and v2 (..., output_scale,
    output_bit_width; signed and narrow attributes)."""
    x, scale, zeropt = _f(x), _f(scale), _f(zeropt)
    mode = attrs.get("rounding_mode", "FLOOR")
    y = np.round((x / scale).astype(F32) + zeropt).astype(F32)
    if rest is None:   # v1
        ts = F32(2.0) ** (_f(in_bits) - _f(out_bits_or_scale))
        y = _round((y / ts).astype(F32), mode).astype(F32)
        return ((y - zeropt).astype(F32) * scale).astype(F32)
    out_scale, out_bits = _f(out_bits_or_scale), rest
    ts = (F32(2) ** np.round(np.log2((out_scale / scale).astype(F32)))).astype(F32)
    y = (y / ts).astype(F32)
    lo, hi = int_range(attrs.get("signed", 1), attrs.get("narrow", 0), np.asarray(out_bits).ravel()[0])
    y = np.where(y > hi, F32(hi), y)
    y = np.where(y < lo, F32(lo), y)
    y = _round(y, mode).astype(F32)
    return ((y - (zeropt / ts).astype(F32)).astype(F32) * out_scale).astype(F32)


def float_quant(x, scale, e_bits, m_bits, bias, max_val, attrs):
    """FloatQuant as the QONNX definition computes it, in float32: x / scale; the element's exponent
    floor(log2(|x| + tiny)) - mantissa bits, raised to the subnormal minimum 1 - bias - mantissa bits;
    rounding of x / 2**exponent by ``rounding_mode``; a saturating clamp to +-min(max normal, max_val);
    without ``saturation``, out-of-range values become inf (``has_inf``) or NaN (``has_nan``); times scale.
    (The exponent comes from float32 log2, as in the definition: a value a few ulps below a power of two
    may take the exponent above it.)"""
    x, scale = _f(x), _f(scale)
    e_bits, m_bits = _f(e_bits), _f(m_bits)
    bias = F32(2.0) ** (e_bits - F32(1)) - F32(1) if bias is None else _f(bias)
    X = (x / scale).astype(F32)
    eps = np.finfo(F32).tiny
    smin = (F32(1.0) - bias - m_bits).astype(F32)
    internal = (np.floor(np.log2((np.abs(X) + eps).astype(F32))) - m_bits).astype(F32)
    internal = np.exp2(np.maximum(internal, smin)).astype(F32)
    xq = (internal * _round((X / internal).astype(F32), attrs.get("rounding_mode", "ROUND"))).astype(F32)
    max_exp = (F32(2.0) ** e_bits - F32(1.0) - bias)
    max_mant = np.sum(F32(2.0) ** np.arange(0, -1.0 * float(np.asarray(m_bits).ravel()[0]) - 1.0, -1.0))
    max_value = max_mant * (2 ** max_exp)
    if max_val is not None:
        max_value = np.minimum(max_value, max_val)
    min_value = -max_value
    inf_mask = np.isinf(xq)
    pmask, nmask = xq > max_value, xq < min_value
    xq = np.clip(xq, min_value, max_value)
    if not attrs.get("saturation", 1):
        if attrs.get("has_inf", 0):
            xq = np.where(pmask, np.inf, np.where(nmask, -np.inf, xq))
        elif attrs.get("has_nan", 0):
            xq = np.where(pmask | nmask | inf_mask, np.nan, xq)
        else:
            raise ModelError("FloatQuant with saturation = 0 needs has_inf or has_nan")
    return np.asarray(xq * scale).astype(F32)


def run_qonnx(layer, ins):
    """Run one QONNX quantizer layer (inputs in ONNX order, constants merged)."""
    op = layer.op
    a = layer.params["attrs"]
    if op in ("Quant", "IntQuant"):
        if a.get("rounding_mode", "ROUND") is None:
            raise ModelError(f"layer {layer.name!r}: rounding_mode is missing")
        return int_quant(ins[0], ins[1], ins[2], ins[3], a.get("signed", 1), a.get("narrow", 0),
                         a.get("rounding_mode", "ROUND"))
    if op == "BipolarQuant":
        return bipolar_quant(ins[0], ins[1])
    if op == "Trunc":
        if len(ins) == 5:
            return trunc(ins[0], ins[1], ins[2], ins[3], ins[4], None, a)
        return trunc(ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], a)
    if op == "FloatQuant":
        ins = list(ins) + [None] * (6 - len(ins))
        return float_quant(ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], a)
    raise ModelError(f"layer {layer.name!r}: QONNX op {op} is not supported (Quant, IntQuant, BipolarQuant, Trunc, "
                     "FloatQuant are)")


def _po2(s):
    s = np.asarray(s, dtype=np.float64).ravel()
    if not np.all(s > 0):
        return False
    m, _ = np.frexp(s)
    return bool(np.all(m == 0.5))


def quant_params(ctx, node):
    """(QParams, signed, narrow) of an IntQuant node whose scale, zero point and width are constants and
    that an integer datapath can take exactly (power-of-two scales, zero zero point); None otherwise."""
    from fxsim.model.lower import QParams
    if node.op not in ("Quant", "IntQuant") or node.domain not in QONNX_DOMAINS:
        return None
    c = ctx.g.consts
    if not all(t in c for t in node.inputs[1:4]):
        return None
    scale, zp, bits = c[node.inputs[1]], c[node.inputs[2]], c[node.inputs[3]]
    if np.any(np.asarray(zp) != 0) or not _po2(scale) or np.asarray(bits).size != 1:
        return None
    b = int(np.asarray(bits).ravel()[0])
    signed = bool(node.attrs.get("signed", 1))
    if not 2 <= b <= 16 or b != np.asarray(bits).ravel()[0]:
        return None
    s = np.asarray(scale, dtype=F32)
    q = QParams(s.ravel() if s.size > 1 else s.reshape(()), np.zeros(()), ("int" if signed else "uint") + str(b),
                np.dtype(np.int64))
    return q


def fuse_qonnx(ctx, n):
    """A float Conv / MatMul / Gemm between IntQuant nodes -> an integer MAC layer with a float output
    (see the module docstring); None when the pattern does not apply."""
    from fxsim.model.lower import Layer, _conv_attrs
    if n.domain != "" or n.op not in ("Conv", "MatMul", "Gemm"):
        return None
    prod = ctx.producers
    qa = prod.get(n.inputs[0])
    while qa is not None and qa.domain == "" and qa.op in ("Flatten", "Reshape", "MaxPool", "Transpose", "Squeeze",
                                                           "Unsqueeze", "Identity"):
        qa = prod.get(qa.inputs[0])   # data movement keeps the values on the quantizer's grid
    qw = prod.get(n.inputs[1]) if len(n.inputs) > 1 else None
    if qa is None or qw is None:
        return None
    aq, wq = quant_params(ctx, qa), quant_params(ctx, qw)
    if aq is None or wq is None or qw.inputs[0] not in ctx.g.consts or aq.scale.size != 1:
        return None
    w_float = np.asarray(ctx.g.consts[qw.inputs[0]], dtype=F32)
    from fxsim.model.qonnx import int_quant as _iq
    wv = _iq(w_float, ctx.g.consts[qw.inputs[1]], ctx.g.consts[qw.inputs[2]], ctx.g.consts[qw.inputs[3]],
             qw.attrs.get("signed", 1), qw.attrs.get("narrow", 0), qw.attrs.get("rounding_mode", "ROUND"))
    ws = np.asarray(wq.scale, dtype=np.float64)
    bias = None
    if len(n.inputs) > 2 and n.inputs[2]:
        if n.inputs[2] not in ctx.g.consts:
            return None
        bias = np.asarray(ctx.g.consts[n.inputs[2]], dtype=F32)
    if n.op == "Conv":
        if ws.size > 1:
            ws_b = ws.reshape(-1, 1, 1, 1)
        else:
            ws_b = ws
        codes = np.asarray(wv, dtype=np.float64) / ws_b
        p = _conv_attrs(ctx, n, codes.shape)
        out_scale = float(aq.scale) * ws.ravel()
        from fxsim.model.lower import _compact
        p.update(x_q=aq, w_q=wq, y_q=None, w=_compact(np.rint(codes).astype(np.int64)), bias=None,
                 float_out=(out_scale, bias))
        kind = "conv"
    else:
        a = n.attrs
        if n.op == "Gemm" and (a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0):
            return None
        if bias is not None:   # ONNX Runtime's float Gemm accumulates onto the bias: not a single rounding
            return None
        wmat = np.asarray(wv, dtype=np.float64)
        if wmat.ndim != 2:
            return None
        if n.op == "Gemm" and a.get("transB", 0):
            wmat = wmat.T
            ws = ws.ravel()
        codes = wmat / (ws.reshape(1, -1) if ws.size > 1 else ws)
        from fxsim.model.lower import _compact
        p = dict(a_q=aq, b_q=wq, y_q=None, b=_compact(np.rint(codes).astype(np.int64)), bias=None, trans_a=0,
                 alpha=1.0,
                 float_out=(float(aq.scale) * ws.ravel(), bias))
        kind = "gemm"
    if not np.array_equal(np.rint(codes), codes):
        return None
    return Layer(n.name, f"QONNX {n.op}", kind, [n.inputs[0]], n.outputs[:1], p)
