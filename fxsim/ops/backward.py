"""Backward passes through their own datapaths: the gradient GEMMs of linear and convolution layers, and
the exact (routing-only) backward of ReLU and pooling.

A training accelerator computes dX = dY·Wᵀ and dW = Xᵀ·dY on MAC arrays with their own operand formats
and accumulators; each function here takes the datapath of each gradient GEMM separately. Convolutions
are lowered to GEMM with im2col in the (c, kh, kw) reduction order; the input gradient is the transposed
convolution, computed as one dot product per input element (dY dilated by the stride and padded, with the
kernel flipped), so each input gradient is a single accumulation in the datapath's order. Every stride,
padding, dilation, kernel shape and group count the forward ``fxsim.ops.conv.conv2d`` takes runs backward;
the elements the lowering inserts (padding, the holes of the stride dilation) are the zero point's code,
the real value 0, as in the forward pass.
"""
from __future__ import annotations

import numpy as np

from fxsim.errors import InvalidArgument
from fxsim.datapath import Datapath
from fxsim.formats import Fixed
from fxsim.result import GemmResult
from fxsim.ops.gemm import compact_int_dtype, gemm, operand_codes_range, run_integer_gemm
from fxsim.validate import check_int, check_stats
from fxsim.ops.lowering import ORDERS, dilate_for_transpose, flatten_weights, geometry, unfold

__all__ = ["im2col", "conv2d_lowered", "linear_backward", "conv2d_backward", "relu_backward"]


def im2col(x, kernel, *, stride=1, padding=0, pad_value=0.0):
    """Patches of x (N, C, H, W) as rows (N*OH*OW, C*KH*KW), columns in (c, kh, kw) order; padded with
    ``pad_value``; returns (patches, (OH, OW)) (``fxsim.ops.lowering.unfold``)."""
    cols, OH, OW = unfold(x, kernel, stride=stride, padding=padding, pad_value=pad_value)
    return cols, (OH, OW)


def conv2d_lowered(x, w, dp: Datapath, *, stride=1, padding=0, stats=True):
    """conv2d (groups=1) as one GEMM of im2col patches, for integer and float datapaths alike; padding is
    the real value 0 (code ``dp.a_zero_point``); ``stats`` as in ``gemm``. Returns (y (N, O, OH, OW)
    values, GemmResult)."""
    N = x.shape[0]
    O, C, KH, KW = w.shape
    zp = int(dp.a_zero_point)
    cols, (OH, OW) = im2col(x, (KH, KW), stride=stride, padding=padding,
                            pad_value=zp * dp.a.resolution if isinstance(dp.a, Fixed) and zp else 0.0)
    res = gemm(cols, flatten_weights(w), dp, stats=stats)
    y = res.values.reshape(N, OH, OW, O).transpose(0, 3, 1, 2)
    return y, res


def linear_backward(x, w, dy, *, dx_datapath: Datapath, dw_datapath: Datapath, need_dx=True, dy_for_dx=None,
                    stats=True):
    """dX = dY @ Wᵀ and dW = Xᵀ @ dY for y = x @ w; each GEMM through its own datapath.
    ``dy_for_dx``: a second copy of the gradient for the dX GEMM (two-phase rounding); default ``dy``.
    ``stats`` as in ``gemm`` (True, False or "overflow").
    Returns (dX values or None, dW values, {"dx": GemmResult, "dw": GemmResult})."""
    results = {}
    dx = None
    if need_dx:
        r = gemm(dy if dy_for_dx is None else dy_for_dx, np.ascontiguousarray(w.T), dx_datapath, stats=stats)
        dx, results["dx"] = r.values, r
    r = gemm(np.ascontiguousarray(x.T), dy, dw_datapath, stats=stats)
    results["dw"] = r
    return dx, r.values, results


def _check_int(v, name, lo):
    check_int(name, v, lo=lo)


def _operand(arr, dp: Datapath, which: str, name: str):
    """One GEMM operand as the engine takes it, the filler that means the real value 0 (padding and the
    holes of the stride dilation) and the range of codes both span: integer datapaths work on codes
    (filler: the zero point's code), others on values (filler: the zero point's value, 0.0 without one)."""
    fmt, zp = (dp.a, int(dp.a_zero_point)) if which == "a" else (dp.b, int(dp.b_zero_point))
    if dp.is_integer:
        codes, lo, hi = operand_codes_range(arr, fmt, name)
        return codes.astype(compact_int_dtype(min(lo, zp), max(hi, zp))), zp, (min(lo, zp), max(hi, zp))
    vals = np.asarray(arr, dtype=np.float64)
    return vals, (zp * fmt.resolution if isinstance(fmt, Fixed) and zp else 0.0), None


def _run(A, B, dp: Datapath, ranges, stats):
    if dp.is_integer:
        return run_integer_gemm(np.ascontiguousarray(A), np.ascontiguousarray(B), dp, code_ranges=ranges,
                                stats=stats)
    return gemm(np.ascontiguousarray(A), np.ascontiguousarray(B), dp, stats=stats)


def _join(parts, dp: Datapath) -> GemmResult:
    """The per-group GemmResults side by side (columns: the groups' output channels in order)."""
    if len(parts) == 1:
        return parts[0]

    def cat(name):
        first = getattr(parts[0], name)
        return None if first is None else np.concatenate([getattr(p, name) for p in parts], axis=1)

    return GemmResult(values=cat("values"), codes=cat("codes"), acc=cat("acc"), overflow_count=cat("overflow_count"),
                      acc_values=cat("acc_values"), exact=cat("exact"), max_partial=cat("max_partial"),
                      bits_needed=cat("bits_needed"), datapath=dp)


def conv2d_backward(x, w, dy, *, stride=1, padding=0, dilation=1, groups=1, dx_datapath: Datapath,
                    dw_datapath: Datapath, need_dx=True, dy_for_dx=None, reduction_order="ckk", stats=True):
    """Gradients of y = conv2d(x, w, stride, padding, dilation, groups) (``fxsim.ops.conv.conv2d``'s
    conventions: NCHW, OIHW with I = C/groups; ``stride``, ``padding``, ``dilation`` an int or an (h, w)
    pair); ``dy_for_dx`` as in linear_backward. Returns (dX values or None, dW values, {"dx", "dw"}).

    - dW[o, c, kh, kw] = sum over (n, oh, ow), in that order, of x[n, c', oh*sh + kh*dh - ph, ...] *
      dY[n, o, oh, ow] (c' the channel c of o's group): per group one GEMM patches(x)ᵀ @ dY, the patches
      padded with the zero point's code of ``dw_datapath.a``. The operands are a = x, b = dY.
    - dX = the transposed convolution: dY dilated by the stride, padded by (K-1)*d - p on each side (a
      crop where that is negative), then a stride-1 convolution with the kernel flipped, dilated by d, and
      its in/out channels swapped within each group; every inserted element is the zero point's code of
      ``dx_datapath.a``. dX[n, c, h, w] is one dot product over (o in c's group, kh', kw') in that order
      (``reduction_order="ckk"``; ``"kkc"``: kh', kw', then o innermost, as conv2d's channels-last order),
      with the weight W[o, c, KH-1-kh', KW-1-kw']. The operands are a = dY, b = W.

    ``stats`` as in ``gemm`` (True, False or "overflow"). The third value's "dx" / "dw" are the lowered
    GEMMs' results: (N*H*W, C) rows (n, h, w) and (C/groups*KH*KW, O) rows (c, kh, kw), the groups'
    columns side by side.
    """
    from fxsim.ops.conv import _slice_channels
    stats = check_stats(stats)
    if reduction_order not in ORDERS:
        raise InvalidArgument(f"reduction_order must be one of {ORDERS}, got {reduction_order!r}")
    x, w, dy = np.asarray(x), np.asarray(w), np.asarray(dy)
    for name, a in (("x", x), ("w", w), ("dy", dy)):
        if a.ndim != 4:
            raise InvalidArgument(f"{name} must be 4-D ({'OIHW' if name == 'w' else 'NCHW'}), got shape {a.shape}")
    _check_int(groups, "groups", 1)
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    if C % groups or O % groups or Cg != C // groups:
        raise InvalidArgument(f"groups={groups}: x has {C} channels and w is {w.shape}; groups must divide both "
                         f"channel counts and w must have C/groups = {C // groups if C % groups == 0 else '?'} "
                         "input channels")
    Og = O // groups
    geo = geometry(H, W, (KH, KW), stride=stride, padding=padding, dilation=dilation)
    OH, OW = geo.OH, geo.OW
    if dy.shape != (N, O, OH, OW):
        raise InvalidArgument(f"dy must have the forward output's shape {(N, O, OH, OW)}, got {dy.shape}")
    if dy_for_dx is not None and np.shape(dy_for_dx) != dy.shape:
        raise InvalidArgument(f"dy_for_dx must have dy's shape {dy.shape}, got {np.shape(dy_for_dx)}")
    results = {}

    # weight gradient: a = x patches, b = dY
    xo, xpad, xr = _operand(x, dw_datapath, "a", "x")
    go, _, gr = _operand(dy, dw_datapath, "b", "dy")
    g_rows = go.transpose(0, 2, 3, 1).reshape(N * OH * OW, O)
    parts = []
    for g in range(groups):
        patches, _, _ = unfold(xo[:, g * Cg:(g + 1) * Cg], (KH, KW), stride=stride, padding=padding,
                               dilation=dilation, pad_value=xpad)
        dp_g = dw_datapath if groups == 1 else _slice_channels(dw_datapath, g * Og, (g + 1) * Og, O)
        parts.append(_run(patches.T, g_rows[:, g * Og:(g + 1) * Og], dp_g, None if xr is None else (xr, gr), stats))
    r = results["dw"] = _join(parts, dw_datapath)
    dw = r.values.T.reshape(O, Cg, KH, KW) if groups == 1 else \
        np.concatenate([p.values.T.reshape(Og, Cg, KH, KW) for p in parts], axis=0)

    dx = None
    if need_dx:
        go, gpad, gr = _operand(dy if dy_for_dx is None else dy_for_dx, dx_datapath, "a", "dy")
        wo, _, wr = _operand(w, dx_datapath, "b", "w")
        P = dilate_for_transpose(go, H, W, geo, gpad)
        parts = []
        for g in range(groups):
            patches, _, _ = unfold(P[:, g * Og:(g + 1) * Og], (KH, KW), stride=1, padding=0,
                                   dilation=(geo.dh, geo.dw), pad_value=gpad, reduction_order=reduction_order)
            wg = wo[g * Og:(g + 1) * Og, :, ::-1, ::-1]                     # (Og, Cg, KH, KW), flipped
            wf = (wg.transpose(0, 2, 3, 1) if reduction_order == "ckk" else wg.transpose(2, 3, 0, 1)).reshape(-1, Cg)
            dp_g = dx_datapath if groups == 1 else _slice_channels(dx_datapath, g * Cg, (g + 1) * Cg, C)
            parts.append(_run(patches, wf, dp_g, None if gr is None else (gr, wr), stats))
        r = results["dx"] = _join(parts, dx_datapath)
        dx = r.values.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return dx, dw, results


def relu_backward(x, dy):
    """ReLU passes the gradient where the input was positive (no arithmetic: exact in any format)."""
    return np.where(x > 0, dy, 0.0)
