"""Backward passes through their own datapaths: the gradient GEMMs of linear and convolution layers, and
the exact (routing-only) backward of ReLU and pooling.

A training accelerator computes dX = dY·Wᵀ and dW = Xᵀ·dY on MAC arrays with their own operand formats
and accumulators; each function here takes the datapath of each gradient GEMM separately. Convolutions
are lowered to GEMM with im2col in the (c, kh, kw) reduction order; the input gradient is the transposed
convolution, computed as one dot product per input element (dY dilated by the stride and padded, with the
kernel flipped), so each input gradient is a single accumulation in the datapath's order.
"""
from __future__ import annotations

import numpy as np

from ..datapath import Datapath
from .gemm import gemm

__all__ = ["im2col", "conv2d_lowered", "linear_backward", "conv2d_backward", "relu_backward"]


def im2col(x, kernel, *, stride=1, padding=0):
    """Patches of x (N, C, H, W) as rows (N*OH*OW, C*KH*KW), columns in (c, kh, kw) order; zero padding."""
    N, C, H, W = x.shape
    KH, KW = kernel
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    OH = (H + 2 * padding - KH) // stride + 1
    OW = (W + 2 * padding - KW) // stride + 1
    cols = np.empty((N, OH, OW, C, KH, KW), dtype=x.dtype)
    for kh in range(KH):
        for kw in range(KW):
            cols[:, :, :, :, kh, kw] = xp[:, :, kh:kh + stride * OH:stride, kw:kw + stride * OW:stride].transpose(0, 2, 3, 1)
    return cols.reshape(N * OH * OW, C * KH * KW), (OH, OW)


def conv2d_lowered(x, w, dp: Datapath, *, stride=1, padding=0):
    """conv2d (groups=1) as one GEMM of im2col patches, for integer and float datapaths alike.
    Returns (y (N, O, OH, OW) values, GemmResult)."""
    N = x.shape[0]
    O, C, KH, KW = w.shape
    cols, (OH, OW) = im2col(x, (KH, KW), stride=stride, padding=padding)
    res = gemm(cols, w.reshape(O, -1).T, dp)
    y = res.values.reshape(N, OH, OW, O).transpose(0, 3, 1, 2)
    return y, res


def linear_backward(x, w, dy, *, dx_datapath: Datapath, dw_datapath: Datapath, need_dx=True, dy_for_dx=None):
    """dX = dY @ Wᵀ and dW = Xᵀ @ dY for y = x @ w; each GEMM through its own datapath.
    ``dy_for_dx``: a second copy of the gradient for the dX GEMM (two-phase rounding); default ``dy``.
    Returns (dX values or None, dW values, {"dx": GemmResult, "dw": GemmResult})."""
    stats = {}
    dx = None
    if need_dx:
        r = gemm(dy if dy_for_dx is None else dy_for_dx, np.ascontiguousarray(w.T), dx_datapath)
        dx, stats["dx"] = r.values, r
    r = gemm(np.ascontiguousarray(x.T), dy, dw_datapath)
    stats["dw"] = r
    return dx, r.values, stats


def conv2d_backward(x, w, dy, *, stride=1, padding=0, dx_datapath: Datapath, dw_datapath: Datapath, need_dx=True,
                    dy_for_dx=None):
    """Gradients of y = conv2d(x, w) (groups=1, dilation=1); ``dy_for_dx`` as in linear_backward.

    - dW[o, c, kh, kw] = sum over (n, oh, ow) of x_patch * dY[n, o, oh, ow]: one GEMM im2col(x)ᵀ @ dY.
    - dX = transposed convolution: dY dilated by ``stride`` (zeros inserted), padded by K-1-padding, then a
      stride-1 convolution with the kernel flipped and its in/out channels swapped.
    """
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    OH, OW = dy.shape[2], dy.shape[3]
    stats = {}
    cols, _ = im2col(x, (KH, KW), stride=stride, padding=padding)
    dy_mat = dy.transpose(0, 2, 3, 1).reshape(N * OH * OW, O)
    r = gemm(np.ascontiguousarray(cols.T), dy_mat, dw_datapath)     # (C*KH*KW, O): activations x gradients
    dw = r.values.T.reshape(O, C, KH, KW)
    stats["dw"] = r
    dx = None
    if need_dx:
        dil = np.zeros((N, O, (OH - 1) * stride + 1, (OW - 1) * stride + 1), dtype=dy.dtype)
        dil[:, :, ::stride, ::stride] = dy if dy_for_dx is None else dy_for_dx
        # rows/cols of x that no output window reaches get no gradient: pad the far side to restore H, W
        extra_h = H + 2 * padding - ((OH - 1) * stride + KH)
        extra_w = W + 2 * padding - ((OW - 1) * stride + KW)
        dil = np.pad(dil, ((0, 0), (0, 0), (0, extra_h), (0, extra_w)))
        wf = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))   # (C, O, KH, KW)
        pad = KH - 1 - padding
        if pad < 0:
            raise ValueError("conv2d_backward needs padding <= kernel - 1")
        dx, r = conv2d_lowered(dil, wf, dx_datapath, stride=1, padding=pad)
        stats["dx"] = r
    return dx, dw, stats


def relu_backward(x, dy):
    """ReLU passes the gradient where the input was positive (no arithmetic: exact in any format)."""
    return np.where(x > 0, dy, 0.0)
