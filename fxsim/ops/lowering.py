"""Convolution lowered to GEMM: the one place that knows the geometry of a 2-D convolution.

Layouts: x is NCHW, w is OIHW (I = C / groups) (PyTorch's and ONNX's conventions). Every output element
y[n, o, oh, ow] is one dot product over (c, kh, kw) of o's group; ``reduction_order`` orders its terms:

- ``"ckk"``: c outermost, then kh, then kw -- PyTorch's OIHW weight flattening / im2col order;
- ``"kkc"``: kh, then kw, then c innermost -- the NHWC / HWIO order of channel-parallel accelerators.

``unfold`` builds the patch matrix (one row per output pixel (n, oh, ow), one column per term) and
``flatten_weights`` the matching (K, O) weight matrix, so that conv2d(x, w)[n, o, oh, ow] ==
(patches @ weights)[(n, oh, ow), o] with the terms in the same order. Padding inserts ``pad_value``: the
zero point's code (the real value 0) for integer codes. The forward convolution (``fxsim.ops.conv``), its
backward passes (``fxsim.ops.backward``), the training layers and the model executor all lower through
these functions; ``output_size`` is the output-size formula, written once.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fxsim._kernels.im2col import unfold_into

from fxsim.errors import InvalidArgument, InvalidType
from fxsim.validate import check_int

__all__ = ["ORDERS", "pair", "pads4", "output_size", "Geometry", "geometry", "unfold", "flatten_weights",
           "dilate_for_transpose", "fold_add"]

ORDERS = ("ckk", "kkc")


def pair(v, name, lo=None, forms="an int or a pair of ints"):
    """An int or a pair of ints (each >= ``lo``) as a pair of Python ints; ``forms`` says in an error what
    the caller accepts."""
    if np.ndim(v) == 0 and not isinstance(v, (str, bytes)):
        a = check_int(name, v, lo=lo)
        return a, a
    if isinstance(v, (str, bytes)) or not hasattr(v, "__len__") or len(v) != 2:
        raise InvalidType(f"{name} must be {forms}, got {v!r}")
    return check_int(f"{name}[0]", v[0], lo=lo), check_int(f"{name}[1]", v[1], lo=lo)


def pads4(padding, name="padding"):
    """Padding as (top, left, bottom, right): from an int (all sides), an (h, w) pair (both sides of each
    axis) or ONNX's four ``pads`` (top, left, bottom, right); each >= 0."""
    if np.ndim(padding) == 1 and not isinstance(padding, (str, bytes)) and len(padding) == 4:
        return tuple(check_int(f"{name}[{i}]", v, lo=0) for i, v in enumerate(padding))
    ph, pw = pair(padding, name, lo=0, forms="an int, an (h, w) pair or four ints (top, left, bottom, right)")
    return ph, pw, ph, pw


def output_size(n: int, k: int, stride: int = 1, pad_lo: int = 0, pad_hi: int | None = None,
                dilation: int = 1) -> int:
    """Outputs along one axis of length ``n`` for a kernel of ``k`` taps ``dilation`` apart moved by
    ``stride``, with ``pad_lo`` and ``pad_hi`` (default: ``pad_lo``) padding elements before and after."""
    pad_hi = pad_lo if pad_hi is None else pad_hi
    return (n + pad_lo + pad_hi - dilation * (k - 1) - 1) // stride + 1


class Geometry(NamedTuple):
    """A convolution's geometry, checked: kernel, stride, padding (top, left, bottom, right), dilation and
    the output size."""
    kh: int
    kw: int
    sh: int
    sw: int
    pt: int
    pl: int
    pb: int
    pr: int
    dh: int
    dw: int
    OH: int
    OW: int


def geometry(H, W, kernel, *, stride=1, padding=0, dilation=1) -> Geometry:
    """The checked geometry of a (KH, KW) kernel over an H x W input (errors name the argument)."""
    kh, kw = kernel
    sh, sw = pair(stride, "stride", lo=1)
    pt, pl, pb, pr = pads4(padding)
    dh, dw = pair(dilation, "dilation", lo=1)
    OH, OW = output_size(H, kh, sh, pt, pb, dh), output_size(W, kw, sw, pl, pr, dw)
    if OH < 1 or OW < 1:
        raise InvalidArgument(f"the {kh}x{kw} kernel (dilation {dilation}) does not fit the padded {H}x{W} input")
    return Geometry(kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, OH, OW)


def unfold(x, kernel, *, stride=1, padding=0, dilation=1, pad_value=0, reduction_order="ckk", offset=0,
           dtype=None, out=None):
    """im2col: x (N, C, H, W) -> patches (N*OH*OW, C*KH*KW), rows ordered (n, oh, ow), columns in
    ``reduction_order``; returns (patches, OH, OW). Each entry is x - ``offset`` (default 0: x itself),
    and ``pad_value`` in the padding; ``padding`` an int, an (h, w) pair or (top, left, bottom, right).
    The patches have ``dtype`` (default x's), which must hold every entry exactly (the caller's promise:
    integer codes in a narrower or wider integer dtype, or exact floats); ``out``, when given, is a
    C-contiguous array of that shape and dtype to fill."""
    if reduction_order not in ORDERS:
        raise InvalidArgument(f"reduction_order must be one of {ORDERS}, got {reduction_order!r}")
    N, C, H, W = x.shape
    g = geometry(H, W, kernel, stride=stride, padding=padding, dilation=dilation)
    shape = (N * g.OH * g.OW, C * g.kh * g.kw)
    dt = np.dtype(x.dtype if dtype is None else dtype)
    if out is None:
        out = np.empty(shape, dtype=dt)
    elif out.shape != shape or out.dtype != dt or not out.flags.c_contiguous:
        raise InvalidArgument(f"out must be a C-contiguous {dt} array of shape {shape}, got {out.dtype} {out.shape}")
    unfold_into(x, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, g.OH, g.OW, reduction_order == "kkc",
                dt.type(pad_value), offset, out)
    return out, g.OH, g.OW


def flatten_weights(w, reduction_order="ckk"):
    """Weights (O, I, KH, KW) as the (K, O) matrix whose rows follow ``unfold``'s columns."""
    O, C, kh, kw = w.shape
    w = w if reduction_order == "ckk" else w.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(w.reshape(O, C * kh * kw).T)


def dilate_for_transpose(dy, H, W, g: Geometry, pad_value):
    """The input of the transposed convolution (the gradient of a convolution of geometry ``g`` with
    respect to its H x W input): dy (N, O, OH, OW) dilated by the stride and padded by (K-1)*d - p on each
    side (a crop where that is negative), every inserted element ``pad_value``. A stride-1 convolution of
    it with the flipped kernel gives the H x W input gradient."""
    N, O = dy.shape[:2]
    P = np.full((N, O, H + (g.kh - 1) * g.dh, W + (g.kw - 1) * g.dw), pad_value, dtype=dy.dtype)
    # dY[i, j] sits at (i*sh + qh, j*sw + qw); outputs whose window lies wholly in the padding reach no
    # input and fall outside
    qh, qw = (g.kh - 1) * g.dh - g.pt, (g.kw - 1) * g.dw - g.pl
    rows, cols = np.arange(g.OH) * g.sh + qh, np.arange(g.OW) * g.sw + qw
    ri, ci = (rows >= 0) & (rows < P.shape[2]), (cols >= 0) & (cols < P.shape[3])
    P[:, :, rows[ri][:, None], cols[ci][None, :]] = dy[:, :, ri][:, :, :, ci]
    return P


def fold_add(cols, shape, g: Geometry):
    """col2im, the adjoint of ``unfold`` (order "ckk", dilation 1): the patch-shaped gradient ``cols``
    (N*OH*OW, C*KH*KW) summed back onto the (N, C, H, W) input it was read from, in float64, tap by tap
    (kh outer, kw inner)."""
    N, C, H, W = shape
    if (g.dh, g.dw) != (1, 1):
        raise InvalidArgument(f"fold_add supports dilation 1 only, got ({g.dh}, {g.dw})")
    d = cols.reshape(N, g.OH, g.OW, C, g.kh, g.kw)
    dx = np.zeros((N, C, H + g.pt + g.pb, W + g.pl + g.pr))
    for kh in range(g.kh):
        for kw in range(g.kw):
            dx[:, :, kh:kh + g.sh * g.OH:g.sh, kw:kw + g.sw * g.OW:g.sw] += d[:, :, :, :, kh, kw].transpose(0, 3, 1, 2)
    return dx[:, :, g.pt:g.pt + H, g.pl:g.pl + W]
