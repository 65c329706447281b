"""Execution: run one lowered ``Layer`` on its input arrays.

Integer MAC layers (conv, gemm, global average pool) run through fxsim's bit-exact engine with the
layer's ``Datapath``. The other quantized ops reproduce ONNX Runtime's CPU kernels operation by operation
in float32 (the order of every rounding is part of the result; each function says which kernel it
follows). Float nodes run in float32 with NumPy.
"""
from __future__ import annotations

import numpy as np

from fxsim._kernels.fma import fma_f32_into

from fxsim.ops.conv import _slice_channels, conv2d
from fxsim.ops.gemm import gemm
from fxsim.ops.lowering import flatten_weights, geometry, unfold
from fxsim.ops.prepared import PreparedB, gemm_prepared, prepared_proof
from fxsim.result import GemmResult
from fxsim.runtime.scratch import scratch
from fxsim.model.graph import ModelError
from fxsim.formats import parse_format
from fxsim.quantize import quantize

__all__ = ["run_layer", "fma_f32", "quantize_linear", "dequantize_linear"]

F32 = np.float32


def _range(q):
    info = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767),
            "int4": (-8, 7), "uint4": (0, 15), "int32": (-2 ** 31, 2 ** 31 - 1), "uint32": (0, 2 ** 32 - 1)}
    return info[q.fmt]


def _axis_view(v, axis, ndim):
    """A per-axis parameter vector shaped to broadcast along ``axis`` of an ndim array."""
    v = np.asarray(v)
    if v.ndim == 0 or v.size == 1:
        return v.reshape(())
    axis = axis if axis is not None else 1
    axis = axis + ndim if axis < 0 else axis
    shape = [1] * ndim
    shape[axis] = v.size
    return v.reshape(shape)


# ----------------------------------------------------------------------------------------- float helpers
def fma_f32(a, b, c):
    """float32 fused multiply-add a*b + c with one rounding (as _mm256_fmadd_ps), exactly
    (``kernels.fma``: the exact float64 product, a float64 sum rounded to odd, then to float32)."""
    a, b, c = np.broadcast_arrays(np.asarray(a, dtype=F32), np.asarray(b, dtype=F32), np.asarray(c, dtype=F32))
    out = np.empty(a.shape, dtype=F32)
    fma_f32_into(np.ascontiguousarray(a).ravel(), np.ascontiguousarray(b).ravel(), np.ascontiguousarray(c).ravel(),
                 out.reshape(-1))
    return out


def quantize_linear(x, q, saturate=1):
    """ONNX QuantizeLinear as ONNX Runtime computes it: x / scale in float32, clamped to the code range
    less the zero point (NaN -> the lowest code, as MAXPS/MINPS do), rounded half to even, plus the zero
    point. Float8: x / scale converted with round-to-nearest-even, saturating when ``saturate``."""
    x = np.asarray(x, dtype=F32)
    scale = _axis_view(q.scale, q.axis, x.ndim).astype(F32)
    v = (x / scale).astype(F32)
    if q.is_float8:
        fmt = "e4m3fn" if q.fmt == "e4m3fn" else "e5m2"
        vals = quantize(v, fmt, overflow="saturate" if saturate else "ieee",
                        convention="onnx" if saturate else "ml_dtypes")
        return vals.astype(q.dtype)
    lo, hi = _range(q)
    zp = _axis_view(q.zero_point, q.axis, x.ndim).astype(np.int64)
    lo_f = (lo - zp).astype(F32)
    hi_f = (hi - zp).astype(F32)
    v = np.where(np.isnan(v), lo_f, v)
    v = np.minimum(np.maximum(v, lo_f), hi_f)
    return (np.rint(v).astype(np.int64) + zp).astype(q.dtype)


def dequantize_linear(x, q):
    """(x - zero point) * scale, the difference exact in int32 and converted to float32 once."""
    x = np.asarray(x)
    scale = _axis_view(q.scale, q.axis, x.ndim).astype(F32)
    if q.is_float8:
        return (x.astype(F32) * scale).astype(F32)
    zp = _axis_view(q.zero_point, q.axis, x.ndim).astype(np.int64)
    return ((x.astype(np.int64) - zp).astype(F32) * scale).astype(F32)


def _saturate(v, q):
    lo, hi = _range(q)
    return np.clip(v, lo, hi).astype(q.dtype)


def _check_codes(x, q, layer, what="input"):
    x = np.asarray(x)
    if q.is_float8:
        return x
    if x.dtype.kind not in "iu":
        raise ModelError(f"layer {layer.name!r} ({layer.op}): {what} must hold {q.fmt} codes, got a {x.dtype} array")
    return x


def _as_uint8(q):
    """The same quantization re-typed from int8 to uint8 (zero point + 128), as ORT's x86 optimizer does."""
    from dataclasses import replace
    return replace(q, fmt="uint8", dtype=np.dtype(np.uint8),
                   zero_point=(np.asarray(q.zero_point, dtype=np.int64) + 128))


def _retyped(fn):
    """Run ``fn(layer, *codes)`` on uint8 codes (int8 + 128) when ORT re-typed the layer's tensors."""
    def run(layer, *xs):
        if not layer.params.get("as_uint8"):
            return fn(layer, *xs)
        from dataclasses import replace
        p = dict(layer.params)
        for key in ("a_q", "b_q", "x_q", "y_q"):
            if p.get(key) is not None:
                p[key] = _as_uint8(p[key])
        shifted = [(np.asarray(x).astype(np.int16) + 128).astype(np.uint8) for x in xs]
        y = fn(replace(layer, params=p), *shifted)
        return (y.astype(np.int16) - 128).astype(np.int8)
    return run


# ---------------------------------------------------------------------------------------------- MAC layers
def _codes_from_values(layer, x, q):
    """Float values on a power-of-two grid -> integer codes (exactly, or a clear error)."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        return x
    c = x.astype(np.float64) / np.float64(q.scale)
    lo, hi = _range_any(q.fmt)
    if not np.all(np.isfinite(c)) or np.any(c != np.rint(c)) or c.min(initial=0) < lo or c.max(initial=0) > hi:
        raise ModelError(f"layer {layer.name!r}: its input is not on the {q.fmt} grid of scale {float(q.scale)!r}")
    return c.astype(np.int64)


def _range_any(fmt):
    f = parse_format(fmt)
    return f.min_code, f.max_code


def _float_out(layer, acc, channel_axis):
    """acc x (activation scale x weight scale) + bias, rounded once to float32 (exact products: scales are
    powers of two)."""
    scale, bias = layer.params["float_out"]
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    s = np.asarray(scale, dtype=np.float64)
    y = np.asarray(acc, dtype=np.float64) * (s.reshape(shape) if s.size > 1 else s.reshape(()))
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64).reshape(shape)
    return y.astype(F32)


def _conv(layer, x, dp, fold_zp, record, trace):
    p = layer.params
    if "float_out" in p:
        x = _codes_from_values(layer, x, p["x_q"])
    x = _check_codes(x, p["x_q"], layer)
    if x.ndim != 4:
        raise ModelError(f"layer {layer.name!r} ({layer.op}): input must be NCHW (4-D), got shape {x.shape}")
    w = p["w"]
    xzp = int(np.asarray(p["x_q"].zero_point).ravel()[0])
    res = None
    if not record and trace is None and dp.is_integer:
        res = _conv_prepared(layer, x, dp, fold_zp, xzp)
    if res is None:
        t, left, b, r = p["pads"]
        if t or left or b or r:   # the hardware pads with the input zero point's code (the real value 0)
            x = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)), constant_values=xzp)
        bias = p["bias"]
        if fold_zp is not None:
            adj = -fold_zp * _prepared_weights(layer, dp, None).colsum
            bias = adj if bias is None else bias + adj
        res = conv2d(x, w, dp, stride=tuple(p["strides"]), padding=0, dilation=tuple(p["dilations"]),
                     groups=p["group"], bias=bias, stats=record, trace=trace)
    layer.macs = int(res.codes.size * w[0].size)
    if "float_out" in p:
        return _float_out(layer, res.codes, 1), res
    if p["y_q"] is None:
        return np.asarray(res.codes).astype(np.int32), res
    return np.asarray(res.codes).astype(p["y_q"].dtype), res


def _prepared_weights(layer, dp, g):
    """Group ``g``'s weights (None: all output channels) as the (K, O/groups) matrix of the lowering,
    prepared once per weight zero point (``fxsim.ops.prepared.PreparedB``: codes less the zero point, exact
    float32 copy, column sums)."""
    w = layer.params["w"]
    G = layer.params["group"]
    if G == 1:
        g = None
    key = ("weights", int(dp.b_zero_point), g)
    prep = layer.cache.get(key)
    if prep is None:
        Og = w.shape[0] // G
        wg = w if g is None else w[g * Og:(g + 1) * Og]
        prep = layer.cache[key] = PreparedB(flatten_weights(wg), int(dp.b_zero_point))
    return prep


def _conv_prepared(layer, x, dp, fold_zp, xzp):
    """The convolution by ``fxsim.ops.prepared.gemm_prepared``: the patch matrix written once, straight as
    exact float32 (codes less the datapath's zero point; the padding the input zero point's code, less the
    same), against weights prepared at the first run. None where its proofs do not apply."""
    p = layer.params
    w = p["w"]
    G = p["group"]
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    if C != Cg * G:
        return None   # conv2d reports the mismatch
    fa = dp.a
    if x.dtype.kind not in "iu" or x.dtype == np.uint64:
        return None
    if np.iinfo(x.dtype).min < fa.min_code or np.iinfo(x.dtype).max > fa.max_code:
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
        if lo < fa.min_code or hi > fa.max_code:
            return None   # conv2d reports the offending element
    azp = int(dp.a_zero_point)
    amax = max(abs(fa.min_code - azp), abs(fa.max_code - azp), abs(xzp - azp))
    bias = p["bias"]
    if fold_zp is not None:
        adj = -fold_zp * _prepared_weights(layer, dp, None).colsum
        bias = adj if bias is None else bias + adj
    Og = O // G
    bias_max = 0 if bias is None or not np.size(bias) else int(np.abs(np.asarray(bias, dtype=np.int64)).max())
    preps = [_prepared_weights(layer, dp, g if G > 1 else None) for g in range(G)]
    if any(prepared_proof(dp, Cg * KH * KW, amax, B, bias_max) is None for B in preps):
        return None   # decided before any patch matrix is built
    parts = []
    for g, B in enumerate(preps):
        xg = x if G == 1 else x[:, g * Cg:(g + 1) * Cg]
        geo = geometry(H, W, (KH, KW), stride=tuple(p["strides"]), padding=tuple(p["pads"]),
                       dilation=tuple(p["dilations"]))
        patches = scratch("model patches", (N * geo.OH * geo.OW, Cg * KH * KW), np.float32)
        unfold(xg, (KH, KW), stride=tuple(p["strides"]), padding=tuple(p["pads"]),
               dilation=tuple(p["dilations"]), pad_value=xzp - azp, offset=azp, dtype=np.float32, out=patches)
        dp_g = dp if G == 1 else _slice_channels(dp, g * Og, (g + 1) * Og, O)
        r = gemm_prepared(patches, amax, B, dp_g, bias=None if bias is None else bias[g * Og:(g + 1) * Og])
        if r is None:
            return None
        parts.append(r)
    if G == 1:
        r = parts[0]
    else:
        def cat(name):
            first = getattr(parts[0], name)
            return None if first is None else np.concatenate([getattr(q, name) for q in parts], axis=1)
        r = GemmResult(values=cat("values"), codes=cat("codes"), acc=cat("acc"), overflow_count=None,
                       acc_values=cat("acc_values"), exact=cat("exact"), max_partial=None, bits_needed=None,
                       datapath=dp, traces={})

    def nchw(a):
        return None if a is None else a.reshape(N, geo.OH, geo.OW, O).transpose(0, 3, 1, 2)

    return GemmResult(values=nchw(r.values), codes=nchw(r.codes), acc=nchw(r.acc), overflow_count=None,
                      acc_values=nchw(r.acc_values), exact=nchw(r.exact), max_partial=None, bits_needed=None,
                      datapath=dp, traces={})


def _gemm(layer, a, b_rt, dp, fold_zp, record, trace):
    p = layer.params
    if "float_out" in p:
        a = _codes_from_values(layer, a, p["a_q"])
    a = _check_codes(a, p["a_q"], layer)
    b = p["b"] if p["b"] is None or b_rt is None else None
    b = p["b"] if b_rt is None else np.asarray(b_rt).astype(np.int64)
    if a.ndim < 1 or a.shape[-1] != b.shape[0]:
        raise ModelError(f"layer {layer.name!r} ({layer.op}): A has shape {a.shape} but B has {b.shape[0]} rows")
    lead = a.shape[:-1]
    A = a.reshape(-1, a.shape[-1])
    bias = p["bias"]
    if fold_zp is not None:
        adj = -fold_zp * (b.astype(np.int64) - int(dp.b_zero_point)).sum(axis=0)
        bias = adj if bias is None else bias + adj
    res = gemm(A, b, dp, bias=bias, stats=record, trace=trace)
    layer.macs = int(A.shape[0] * A.shape[1] * b.shape[1])
    out = np.asarray(res.codes).reshape(lead + (b.shape[1],))
    if "float_out" in p:
        return _float_out(layer, out, out.ndim - 1), res
    return out.astype(np.int32 if p["y_q"] is None else p["y_q"].dtype), res


def _gap(layer, x, dp, fold_zp, record, trace):
    """QLinearGlobalAveragePool (MLAS): the int32 sum of (x - zero point) over the image, times the float32
    scale x_scale / (y_scale * float(H*W)), rounded half to even, plus the zero point, saturated."""
    p = layer.params
    x = _check_codes(x, p["x_q"], layer)
    if x.ndim < 3:
        raise ModelError(f"layer {layer.name!r}: GlobalAveragePool needs an (N, C, ...) input, got {x.shape}")
    N, C = x.shape[:2]
    hw = int(np.prod(x.shape[2:]))
    A = x.reshape(N * C, hw)
    ones = np.ones((hw, 1), dtype=np.int8)
    bias = None
    if fold_zp is not None:
        bias = np.array([-fold_zp * hw], dtype=np.int64)
    res = gemm(A, ones, dp, bias=bias, stats=record, trace=trace)
    layer.macs = int(A.size)
    return np.asarray(res.codes).reshape((N, C) + (1,) * (x.ndim - 2)).astype(p["y_q"].dtype), res


# ----------------------------------------------------------------------------------- other quantized ops
@_retyped
def _add(layer, a, b):
    """QLinearAdd as MLAS's AVX2 kernel computes it: ratios rA = sA/sC, rB = sB/sC (float32), a fixed part
    float(zC) - (rA*zA + rB*zB), then fma(a, rA, fma(b, rB, fixed)) on the raw codes; a scalar operand is
    folded into the fixed part first (fixed + b*rB, two roundings); round half even; saturate."""
    p = layer.params
    qa, qb, qc = p["a_q"], p["b_q"], p["y_q"]
    sa, sb, sc = F32(qa.scale), F32(qb.scale), F32(qc.scale)
    za, zb, zc = (int(np.asarray(q.zero_point).ravel()[0]) for q in (qa, qb, qc))
    ra, rb = F32(sa / sc), F32(sb / sc)
    fixed = F32(F32(zc) - F32(F32(ra * F32(za)) + F32(rb * F32(zb))))
    a = np.asarray(a)
    b = np.asarray(b)
    af = a.astype(F32)
    bf = b.astype(F32)
    if b.size == 1 and a.size > 1:
        fx = F32(fixed + F32(bf.ravel()[0] * rb))
        v = fma_f32(af, ra, fx)
        shape = np.broadcast_shapes(a.shape, b.shape)
    elif a.size == 1 and b.size > 1:
        fx = F32(fixed + F32(af.ravel()[0] * ra))
        v = fma_f32(bf, rb, fx)
        shape = np.broadcast_shapes(a.shape, b.shape)
    else:
        if a.shape != b.shape:
            raise ModelError(f"layer {layer.name!r} ({layer.op}): inputs of shapes {a.shape} and {b.shape}; "
                             "broadcasting other than a scalar operand is not supported")
        v = fma_f32(af, ra, fma_f32(bf, rb, fixed))
        shape = a.shape
    lo, hi = _range(qc)
    r = np.rint(np.clip(v, -2.0 ** 31, 2.0 ** 31 - 1)).astype(np.int64)
    return np.clip(r, lo, hi).astype(qc.dtype).reshape(shape)


@_retyped
def _mul(layer, a, b):
    """QLinearMul as MLAS's SSE2 kernel computes it: the exact int32 product (a - zA)(b - zB) converted to
    float32, times the float32 ratio sA * sB / sC, rounded half even, plus zC, saturated."""
    p = layer.params
    qa, qb, qc = p["a_q"], p["b_q"], p["y_q"]
    za, zb, zc = (int(np.asarray(q.zero_point).ravel()[0]) for q in (qa, qb, qc))
    ratio = F32(F32(F32(qa.scale) * F32(qb.scale)) / F32(qc.scale))
    prod = (np.asarray(a).astype(np.int64) - za) * (np.asarray(b).astype(np.int64) - zb)
    v = (prod.astype(F32) * ratio).astype(F32)
    r = np.rint(np.clip(v, -2.0 ** 31, 2.0 ** 31 - 1)).astype(np.int64) + zc
    lo, hi = _range(qc)
    return np.clip(r, lo, hi).astype(qc.dtype)


@_retyped
def _lut(layer, x):
    """QLinearLeakyRelu and QLinearSigmoid: a table over every input code, entry i =
    QuantizeLinear(f(DequantizeLinear(i))) with f(v) = v if v >= 0 else alpha * v in float32 (LeakyRelu)
    or MLAS's float32 logistic (``logistic_f32``); the output is the table lookup."""
    p = layer.params
    xq, yq = p["x_q"], p["y_q"]
    lo, hi = _range(xq)
    codes = np.arange(lo, hi + 1, dtype=np.int64).astype(xq.dtype)
    v = dequantize_linear(codes, xq)
    if p.get("fn") == "sigmoid":
        f = logistic_f32(v)
    else:
        f = np.where(v >= 0, v, (F32(p["alpha"]) * v).astype(F32)).astype(F32)
    table = quantize_linear(f, yq)
    return table[np.asarray(x).astype(np.int64) - lo]


# MLAS's logistic constants (Eigen's rational approximation), float32
_LOGISTIC = {k: F32(v) for k, v in dict(
    lower=-18.0, upper=18.0, alpha_9=4.37031012579801e-11, alpha_7=1.15627324459942e-07,
    alpha_5=6.08574864600143e-05, alpha_3=8.51377133304701e-03, alpha_1=2.48287947061529e-01,
    beta_10=6.10247389755681e-13, beta_8=5.76102136993427e-09, beta_6=6.29106785017040e-06,
    beta_4=1.70198817374094e-03, beta_2=1.16817656904453e-01, beta_0=9.93151921023180e-01).items()}


def logistic_f32(x):
    """The logistic function as MLAS's x86-64 FMA3 kernel computes it (ONNX Runtime's Sigmoid and the
    table of QLinearSigmoid): v = x clamped to [-18, 18]; v2 = v*v; p = v * (((a9 v2 + a7) v2 + a5) v2 + a3)
    v2 + a1) and q = ((((b10 v2 + b8) v2 + b6) v2 + b4) v2 + b2) v2 + b0, each step one fused multiply-add;
    p / q + 0.5, then max(0, .). Every operation in float32 with one rounding."""
    c = _LOGISTIC
    v = np.minimum(c["upper"], np.maximum(c["lower"], np.asarray(x, dtype=F32))).astype(F32)
    v2 = (v * v).astype(F32)
    pp = fma_f32(v2, c["alpha_9"], c["alpha_7"])
    for k in ("alpha_5", "alpha_3", "alpha_1"):
        pp = fma_f32(v2, pp, c[k])
    q = fma_f32(v2, c["beta_10"], c["beta_8"])
    for k in ("beta_6", "beta_4", "beta_2", "beta_0"):
        q = fma_f32(v2, q, c[k])
    pp = (v * pp).astype(F32)
    r = ((pp / q).astype(F32) + F32(0.5)).astype(F32)
    return np.maximum(F32(0), r).astype(F32)


@_retyped
def _avgpool_q(layer, x):
    """QLinearAveragePool: dequantize x_scale * (x - zp) in float32, sum each window row by row in float32,
    divide by the count, quantize as rint(y / y_scale + y_zero_point), saturate."""
    p = layer.params
    xq, yq = p["x_q"], p["y_q"]
    xf = (F32(xq.scale) * (np.asarray(x).astype(np.int64) - int(xq.zero_point)).astype(F32)).astype(F32)
    y = _avgpool_f32(layer, xf)
    lo, hi = _range(yq)
    v = (y / F32(yq.scale)).astype(F32) + F32(int(yq.zero_point))
    return np.clip(np.rint(v.astype(F32)), lo, hi).astype(yq.dtype)


def _pool_geometry(layer, H, W):
    p = layer.params
    kh, kw = p["kernel"]
    sh, sw = p["strides"]
    t, left, b, r = p["pads"]
    dh, dw = p.get("dilations", [1, 1])
    ceil = p.get("ceil_mode", 0)

    def size(n, k, s, p0, p1, d):
        span = n + p0 + p1 - d * (k - 1) - 1
        o = (-(-span // s) if ceil else span // s) + 1
        if ceil and (o - 1) * s >= n + p0:   # the last window must start inside the input or its left pad
            o -= 1
        return o
    OH, OW = size(H, kh, sh, t, b, dh), size(W, kw, sw, left, r, dw)
    if OH < 1 or OW < 1:
        raise ModelError(f"layer {layer.name!r}: the {kh}x{kw} window does not fit the {H}x{W} input")
    return kh, kw, sh, sw, t, left, b, r, dh, dw, OH, OW


def _avgpool_f32(layer, xf):
    p = layer.params
    N, C, H, W = xf.shape
    kh, kw, sh, sw, t, left, b, r, dh, dw, OH, OW = _pool_geometry(layer, H, W)
    if (dh, dw) != (1, 1):
        raise ModelError(f"layer {layer.name!r}: dilated average pooling is not supported")
    y = np.zeros((N, C, OH, OW), dtype=F32)
    cnt = np.zeros((OH, OW), dtype=np.int64)
    for oh in range(OH):
        hs = oh * sh - t
        he = min(hs + kh, H + b)
        hs0, he0 = max(hs, 0), min(he, H)
        for ow in range(OW):
            ws = ow * sw - left
            we = min(ws + kw, W + r)
            ws0, we0 = max(ws, 0), min(we, W)
            acc = np.zeros((N, C), dtype=F32)
            for h in range(hs0, he0):
                for w in range(ws0, we0):
                    acc = (acc + xf[:, :, h, w]).astype(F32)
            y[:, :, oh, ow] = acc
            cnt[oh, ow] = (he - hs) * (we - ws) if p.get("count_include_pad") else (he0 - hs0) * (we0 - ws0)
    return (y / cnt.astype(F32)).astype(F32)


def _maxpool(layer, x):
    x = np.asarray(x)
    N, C, H, W = x.shape
    kh, kw, sh, sw, t, left, b, r, dh, dw, OH, OW = _pool_geometry(layer, H, W)
    low = np.array(-np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min, dtype=x.dtype)
    extra_h = max(0, (OH - 1) * sh + dh * (kh - 1) + 1 - (H + t))
    extra_w = max(0, (OW - 1) * sw + dw * (kw - 1) + 1 - (W + left))
    xp = np.pad(x, ((0, 0), (0, 0), (t, extra_h), (left, extra_w)), constant_values=low)
    out = None
    for i in range(kh):
        for j in range(kw):
            win = xp[:, :, i * dh: i * dh + (OH - 1) * sh + 1: sh, j * dw: j * dw + (OW - 1) * sw + 1: sw]
            out = win.copy() if out is None else np.maximum(out, win)
    return out


def _concat(layer, xs):
    p = layer.params
    yq = p["y_q"]
    parts = []
    for x, q in zip(xs, p["ins_q"]):
        if q.same_as(yq):
            parts.append(np.asarray(x).astype(yq.dtype))
        else:   # requantize through float32 (dequantize, then QuantizeLinear)
            parts.append(quantize_linear(dequantize_linear(x, q), yq))
    return np.concatenate(parts, axis=p["axis"])


# -------------------------------------------------------------------------------- moves and float nodes
def _all_inputs(layer, rt):
    """The node's inputs in ONNX order, constants and run-time tensors merged."""
    p = layer.params
    out, it = [], iter(rt)
    for i in range(p["n_inputs"]):
        out.append(p["consts"][i] if i in p["consts"] else next(it, None))
    return out


def _move(layer, ins):
    op = layer.op.split()[-1]
    a = layer.params["attrs"]
    x = np.asarray(ins[0])
    if op == "Identity":
        return x
    if op == "Reshape":
        shape = [int(v) for v in np.asarray(ins[1]).ravel()]
        if not a.get("allowzero", 0):
            shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
        return x.reshape(shape)
    if op == "Flatten":
        ax = a.get("axis", 1)
        ax = ax + x.ndim if ax < 0 else ax
        return x.reshape(int(np.prod(x.shape[:ax])), -1)
    if op == "Transpose":
        return np.transpose(x, a.get("perm", list(range(x.ndim))[::-1]))
    if op in ("Squeeze", "Unsqueeze"):
        axes = a.get("axes")
        if axes is None and len(ins) > 1 and ins[1] is not None:
            axes = [int(v) for v in np.asarray(ins[1]).ravel()]
        if op == "Squeeze":
            return np.squeeze(x, axis=None if axes is None else tuple(axes))
        nd = x.ndim + len(axes)
        return np.expand_dims(x, tuple(v + nd if v < 0 else v for v in axes))
    raise ModelError(f"layer {layer.name!r}: {op} is not a data-movement op")


def _conv_f32(layer, x, w, bias):
    p = layer.params
    x = np.asarray(x, dtype=F32)
    N, C = x.shape[:2]
    O, Cg, KH, KW = w.shape
    g = p["group"]
    Og = O // g
    outs = []
    for k in range(g):   # the padding is the real value 0
        pat, OH, OW = unfold(x[:, k * Cg:(k + 1) * Cg], (KH, KW), stride=tuple(p["strides"]),
                             padding=tuple(p["pads"]), dilation=tuple(p["dilations"]))
        wk = w[k * Og:(k + 1) * Og].reshape(Og, -1).T.astype(F32)
        outs.append(pat @ wk)
    y = np.concatenate(outs, axis=1).reshape(N, OH, OW, O).transpose(0, 3, 1, 2)
    if bias is not None:
        y = y + np.asarray(bias, dtype=F32).reshape(1, -1, 1, 1)
    return y.astype(F32)


def _float(layer, ins):
    op = layer.op
    a = layer.params["attrs"]
    x = ins[0]
    if op in ("Add", "Sub", "Mul", "Div"):
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
        return f(np.asarray(ins[0], dtype=F32), np.asarray(ins[1], dtype=F32)).astype(F32)
    x = np.asarray(x, dtype=F32)
    if op == "Relu":
        return np.maximum(x, F32(0))
    if op == "Clip":
        lo = a.get("min", ins[1] if len(ins) > 1 and ins[1] is not None else -np.inf)
        hi = a.get("max", ins[2] if len(ins) > 2 and ins[2] is not None else np.inf)
        return np.minimum(np.maximum(x, F32(lo)), F32(hi)).astype(F32)
    if op == "LeakyRelu":
        return np.where(x >= 0, x, (x * F32(a.get("alpha", 0.01))).astype(F32)).astype(F32)
    if op == "Sigmoid":   # MLAS's logistic, as ONNX Runtime computes it (not a correctly rounded sigmoid)
        return logistic_f32(x)
    if op == "Tanh":
        return np.tanh(x)
    if op == "Softmax":
        ax = a.get("axis", -1)
        e = np.exp((x - x.max(axis=ax, keepdims=True)).astype(F32))
        return (e / e.sum(axis=ax, keepdims=True)).astype(F32)
    if op == "MatMul":
        return np.matmul(x, np.asarray(ins[1], dtype=F32)).astype(F32)
    if op == "Gemm":
        A = x.T if a.get("transA", 0) else x
        B = np.asarray(ins[1], dtype=F32)
        B = B.T if a.get("transB", 0) else B
        y = (F32(a.get("alpha", 1.0)) * (A @ B)).astype(F32)
        if len(ins) > 2 and ins[2] is not None:
            y = (y + F32(a.get("beta", 1.0)) * np.asarray(ins[2], dtype=F32)).astype(F32)
        return y
    if op == "Conv":
        return _conv_f32(layer, x, np.asarray(ins[1], dtype=F32), ins[2] if len(ins) > 2 else None)
    if op == "AveragePool":
        return _avgpool_f32(layer, x)
    if op == "GlobalAveragePool":
        return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=F32).astype(F32)
    if op == "Concat":
        return np.concatenate([np.asarray(v) for v in ins], axis=a.get("axis"))
    raise ModelError(f"layer {layer.name!r}: float op {op} has no implementation")


def _weight_zero_point_groups(layer):
    """For a conv/GEMM layer whose per-channel weight zero points differ: [(output channels, sub-layer
    with one zero point)], each sub-layer the same op on those channels; None when one zero point serves."""
    from dataclasses import replace
    p = layer.params
    key = "w_q" if layer.kind == "conv" else "b_q"
    q = p.get(key)
    if layer.kind not in ("conv", "gemm") or q is None:
        return None
    z = np.asarray(q.zero_point).ravel()
    if z.size <= 1 or np.all(z == z[0]):
        return None
    if layer.kind == "conv" and p["group"] != 1:
        raise ModelError(f"layer {layer.name!r}: per-channel weight zero points that differ are supported for "
                         "group = 1 convolutions only")
    if layer.kind == "gemm" and p.get("b") is None:
        raise ModelError(f"layer {layer.name!r}: per-column zero points need a constant B")
    out = []
    for value in np.unique(z):
        idx = np.flatnonzero(z == value)
        s = np.asarray(q.scale)
        sub_q = replace(q, zero_point=np.asarray(value).reshape(()), scale=s[idx] if s.size > 1 else s)
        sp = dict(p)
        sp[key] = sub_q
        if layer.kind == "conv":
            sp["w"] = np.ascontiguousarray(p["w"][idx])
        else:
            sp["b"] = np.ascontiguousarray(p["b"][:, idx])
        if p.get("bias") is not None:
            sp["bias"] = p["bias"][idx]
        if "float_out" in p:
            sc, fb = p["float_out"]
            sc = np.asarray(sc)
            sp["float_out"] = (sc[idx] if sc.size > 1 else sc, None if fb is None else np.asarray(fb)[idx])
        out.append((idx, replace(layer, params=sp)))
    return out


def _run_split(layer, groups, ins, hw_options, record, trace):
    """Run each zero-point group and put its output channels (and statistics) in place."""
    axis = 1 if layer.kind == "conv" else -1
    y = res = None
    fields = ("values", "codes", "acc", "overflow_count", "acc_values", "exact", "max_partial", "bits_needed")
    for idx, sub in groups:
        [ys], r = run_layer(sub, ins, hw_options, record=record)
        if y is None:
            shape = list(ys.shape)
            shape[axis] = sum(len(i) for i, _ in groups)
            y = np.empty(shape, dtype=ys.dtype)
            layer.datapath = sub.datapath
            arrays = {}
        np.moveaxis(y, axis, 0)[idx] = np.moveaxis(ys, axis, 0)
        for f in fields:
            a = getattr(r, f)
            if a is None:
                arrays[f] = None
                continue
            if f not in arrays:
                shp = list(a.shape)
                shp[axis] = y.shape[axis]
                arrays[f] = np.empty(shp, dtype=a.dtype)
            if arrays[f] is not None:
                np.moveaxis(arrays[f], axis, 0)[idx] = np.moveaxis(a, axis, 0)
        layer.macs += sub.macs
    res = GemmResult(datapath=layer.datapath, traces={}, **arrays)
    return [y], res


def run_layer(layer, ins, hw_options, *, record=False, trace=None):
    """Run ``layer`` on its run-time inputs ``ins`` (a list in ``layer.inputs`` order); returns
    (list of outputs, GemmResult or None)."""
    from fxsim.model.hardware import layer_datapath
    k = layer.kind
    groups = _weight_zero_point_groups(layer)
    if groups is not None:
        if trace:
            raise ModelError(f"layer {layer.name!r}: traces of a layer with several weight zero points are not "
                             "supported")
        layer.macs = 0
        layer.params["split_zero_points"] = True
        return _run_split(layer, groups, ins, hw_options, record, trace)
    if k in ("conv", "gemm", "gap"):
        if k == "gap":
            layer.params["hw"] = int(np.prod(np.shape(ins[0])[2:]))
        key = ("datapath", tuple(sorted(hw_options.items())), layer.params.get("hw"))
        if key not in layer.cache:
            layer.cache[key] = layer_datapath(layer, hw_options)
        dp, fold = layer.cache[key]
        layer.datapath = dp
        bias = layer.params.get("bias")
        if bias is not None and bias.size and dp.bias_preload:
            f = dp.accumulator.fmt
            lo, hi = int(bias.min()), int(bias.max())
            if lo < f.min_code or hi > f.max_code:
                raise ModelError(f"layer {layer.name!r} ({layer.op}): its int32 bias reaches "
                                 f"{lo if lo < f.min_code else hi}, which the {f} accumulator it is preloaded into "
                                 f"cannot hold (range [{f.min_code}, {f.max_code}]); use a wider accumulator, or "
                                 "bias = \"output\" to add it after accumulation")
        if k == "conv":
            y, res = _conv(layer, ins[0], dp, fold, record, trace)
        elif k == "gemm":
            y, res = _gemm(layer, ins[0], ins[1] if len(ins) > 1 else None, dp, fold, record, trace)
        else:
            y, res = _gap(layer, ins[0], dp, fold, record, trace)
        return [y], res
    if hw_options:
        pass   # non-MAC layers have no hardware options (Model checks that patterns name compute layers)
    if k == "quantize":
        return [quantize_linear(ins[0], layer.params["y_q"], layer.params["saturate"])], None
    if k == "dequantize":
        return [dequantize_linear(ins[0], layer.params["x_q"])], None
    if k == "add":
        merged = _all_add_inputs(layer, ins)
        return [_add(layer, *merged)], None
    if k == "mul":
        return [_mul(layer, *_all_add_inputs(layer, ins))], None
    if k == "avgpool":
        return [_avgpool_q(layer, ins[0])], None
    if k == "lut":
        return [_lut(layer, ins[0])], None
    if k == "concat":
        return [_concat(layer, ins)], None
    if k == "maxpool":
        return [_maxpool(layer, ins[0])], None
    if k == "move":
        return [_move(layer, _all_inputs(layer, ins))], None
    if k == "qonnx":
        from fxsim.model.qonnx import run_qonnx
        return [run_qonnx(layer, _all_inputs(layer, ins))], None
    return [_float(layer, _all_inputs(layer, ins))], None


def _all_add_inputs(layer, ins):
    consts = layer.params.get("consts", {})
    it = iter(ins)
    return [consts[i] if i in consts else next(it) for i in range(2)]
