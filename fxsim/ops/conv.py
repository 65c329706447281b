"""2-D convolution through a MAC datapath, lowered to the integer GEMM engine.

Layouts: x is NCHW, w is OIHW (I = C / groups), output NCHW (PyTorch's conventions). Every output
element y[n, o, oh, ow] is one dot product over (c, kh, kw) in the group of channel o; the order of its
additions is ``reduction_order``:

- ``"ckk"`` (default): c outermost, then kh, then kw -- PyTorch's OIHW weight flattening / im2col order;
- ``"kkc"``: kh, then kw, then c innermost -- the NHWC / HWIO order of channel-parallel accelerators.

The datapath's ``order`` (sequential, tree, chunked lanes) is then applied to that sequence of K = I*KH*KW
products exactly as in ``gemm``. Lowering builds the patch matrix in that order, so it never changes the
per-output sequence of additions: conv2d(x, w)[n, o, oh, ow] == gemm(patches, weights)[(n, oh, ow), o].
Padding inserts the input's zero-point code (the real value 0). The lowering itself (patch matrix, weight
matrix, output size) is ``fxsim.ops.lowering``'s.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from fxsim.errors import InvalidArgument, InvalidType
from fxsim.datapath import Datapath
from fxsim.formats import Fixed
from fxsim.result import GemmResult
from fxsim.validate import as_array, check_int, check_stats, check_trace
from fxsim.ops.gemm import compact_int_dtype, gemm, operand_codes_range, run_integer_gemm
from fxsim.ops.lowering import ORDERS as _ORDERS, flatten_weights, geometry, unfold

__all__ = ["conv2d", "unfold"]


def _slice_channels(dp: Datapath, lo: int, hi: int, O: int) -> Datapath:
    """The datapath of one group: per-output-channel requant parameters restricted to its channels."""
    rq = dp.output.requant
    if rq is None:
        return dp
    changes = {}
    for name in ("multiplier", "shift", "scale"):
        v = getattr(rq, name)
        if v is not None and np.ndim(v) >= 1:
            v = np.asarray(v)
            if v.shape[-1] != O:
                raise InvalidArgument(f"per-channel requant {name} has {v.shape[-1]} entries for {O} output channels")
            changes[name] = v[..., lo:hi]
    if not changes:
        return dp
    return dp.replace(output=replace(dp.output, requant=replace(rq, **changes)))


def conv2d(x, w, datapath: Datapath, *, stride=1, padding=0, dilation=1, groups=1, bias=None,
           reduction_order="ckk", trace=None, stats: bool | str = True) -> GemmResult:
    """Bit-exact conv2d: x (N, C, H, W) on ``datapath.a``'s grid, w (O, C/groups, KH, KW) on ``datapath.b``'s,
    bias (O,) on the accumulator's grid. ``padding``: an int, an (h, w) pair, or (top, left, bottom, right)
    as ONNX's ``pads``. Depthwise = ``groups=C``; 1x1 works as any kernel size.
    ``trace``: (n, o, oh, ow) tuples whose per-cycle register values land in ``result.traces``.
    The result's arrays are NCHW: (N, O, OH, OW). Float datapaths are lowered the same way and run by
    the float engine (which counts overflows and records no other statistics; padding is the real value 0
    there too). ``stats`` as in ``gemm`` (True, False or "overflow").
    """
    if not isinstance(datapath, Datapath):
        raise InvalidType(f"datapath must be an fxsim Datapath, got {type(datapath).__name__}")
    stats = check_stats(stats)
    if reduction_order not in _ORDERS:
        raise InvalidArgument(f"reduction_order must be one of {_ORDERS}, got {reduction_order!r}")
    x = as_array("x", x)
    w = as_array("w", w)
    if x.ndim != 4:
        raise InvalidArgument(f"x must be NCHW (4-D), got shape {x.shape}")
    if w.ndim != 4:
        raise InvalidArgument(f"w must be OIHW (4-D), got shape {w.shape}")
    groups = check_int("groups", groups, lo=1)
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    if C % groups or O % groups:
        raise InvalidArgument(f"groups={groups} must divide the input channels ({C}) and output channels ({O})")
    if Cg != C // groups:
        raise InvalidArgument(f"w has {Cg} input channels per group; x has {C} channels in {groups} groups "
                         f"(expected {C // groups})")
    geo = geometry(H, W, (KH, KW), stride=stride, padding=padding, dilation=dilation)
    integer = datapath.is_integer
    if integer:
        # codes in the narrowest dtype of their format: the patch matrix is 8x smaller for INT8
        xc, xlo, xhi = operand_codes_range(x, datapath.a, "x")
        wc, wlo, whi = operand_codes_range(w, datapath.b, "w")
        xc = xc.astype(compact_int_dtype(datapath.a.min_code, datapath.a.max_code))
        wc = wc.astype(compact_int_dtype(datapath.b.min_code, datapath.b.max_code))
        zpa = int(datapath.a_zero_point)   # padding inserts it: patch codes lie in the range below
        code_ranges = ((min(xlo, zpa), max(xhi, zpa)), (wlo, whi))
        pad_value = datapath.a_zero_point
    else:   # float datapaths: lower real values the same way and hand each group to gemm (float engine)
        xc = x.astype(np.float64)
        wc = w.astype(np.float64)
        # the float engine subtracts a Fixed operand's zero point from its values: pad with the zero
        # point's value, which it maps to the real 0
        zpa = int(datapath.a_zero_point)
        pad_value = zpa * datapath.a.resolution if isinstance(datapath.a, Fixed) and zpa else 0.0
    if bias is not None:
        bias = as_array("bias", bias)
        if bias.shape != (O,):
            raise InvalidArgument(f"bias must have shape ({O},) (one value per output channel), got {bias.shape}")
    Og = O // groups
    traces_by_group = {}
    if trace is not None:
        for n, o, oh, ow in check_trace("trace", trace, (N, O, geo.OH, geo.OW)):
            traces_by_group.setdefault(o // Og, []).append((n, o, oh, ow))
    parts = []
    traces = {}
    for g in range(groups):
        patches, OH, OW = unfold(xc[:, g * Cg:(g + 1) * Cg], (KH, KW), stride=stride, padding=padding,
                                 dilation=dilation, pad_value=pad_value, reduction_order=reduction_order)
        wg = flatten_weights(wc[g * Og:(g + 1) * Og], reduction_order)
        dp_g = _slice_channels(datapath, g * Og, (g + 1) * Og, O)
        want = traces_by_group.get(g, [])
        gtrace = [((n * OH + oh) * OW + ow, o - g * Og) for (n, o, oh, ow) in want]
        bias_g = None if bias is None else bias[g * Og:(g + 1) * Og]
        if integer:
            r = run_integer_gemm(patches, wg, dp_g, bias=bias_g, trace=gtrace or None, stats=stats,
                                 code_ranges=code_ranges)
        else:
            r = gemm(patches, wg, dp_g, bias=bias_g, trace=gtrace or None)
        for key, ij in zip(want, gtrace):
            traces[key] = r.traces[ij]
        parts.append(r)

    done = {}

    def nchw(name):
        """(N*OH*OW, O) rows -> NCHW; a transposed view for one group (no copy), arrays that are one
        object in the GEMM result (values and acc_values, say) stay one object."""
        first = getattr(parts[0], name)
        if first is None:
            return None
        if id(first) not in done:
            arr = first if len(parts) == 1 else np.concatenate([getattr(p, name) for p in parts], axis=1)
            done[id(first)] = arr.reshape(N, OH, OW, O).transpose(0, 3, 1, 2)
        return done[id(first)]

    return GemmResult(values=nchw("values"), codes=nchw("codes"), acc=nchw("acc"),
                      overflow_count=nchw("overflow_count"), acc_values=nchw("acc_values"), exact=nchw("exact"),
                      max_partial=nchw("max_partial"), bits_needed=nchw("bits_needed"), datapath=datapath,
                      traces=traces, path=parts[0].path if len({p.path for p in parts}) == 1 else None)
