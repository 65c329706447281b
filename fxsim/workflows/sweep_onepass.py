"""One pass for a whole accumulator sweep: the results of ``gemm(A, B, dp)`` for many integer datapaths
that differ only in the accumulator's width and overflow mode and in the order of additions, with the
products formed once per order (``kernels.multiwidth``; why it is exact is proved there).

:func:`gemm_widths` is the engine; :func:`sweep_rows` answers a sweep's fixed-point configurations with
it (fxsim.workflows.sweep.run_sweep calls it when the layer and the configurations allow, see :func:`eligible`).
"""
from __future__ import annotations

from dataclasses import fields

import numpy as np

from fxsim._kernels import int_gemm as K
from fxsim._kernels import multiwidth as MW

from fxsim.datapath import Datapath
from fxsim.runtime.compiling import notice_first_use
from fxsim.errors import InvalidArgument
from fxsim.formats import Fixed, ints_to_values
from fxsim.modes import Overflow
from fxsim.engines.integer import _absmax, _bias_codes, _integer_operand, plan_integer
from fxsim.ops.gemm import _as_2d, operand_codes_range
from fxsim.engines.output_stage import output_stage
from fxsim.result import GemmResult, bits_needed
from fxsim.ops.conv import _slice_channels
from fxsim.ops.lowering import flatten_weights, unfold

__all__ = ["gemm_widths", "eligible", "sweep_rows", "ENGINE"]

ENGINE = "one-pass"
_I63 = 2 ** 63
_ORDER_CODE = {"sequential": K.SEQUENTIAL, "tree": K.TREE, "chunked": K.CHUNKED}
_MODES = (Overflow.WRAP, Overflow.SATURATE, Overflow.SATURATE_SYMMETRIC, Overflow.SATURATE_ZERO)
_BLOCK_BYTES = 64 << 20        # lane registers of a chunked tree combine kept per block, at most


def _same_but_accumulator(dp: Datapath, base: Datapath) -> bool:
    """dp equals base except for the accumulator's width, overflow mode and the order (fields that hold
    arrays, a per-channel requant, compare by identity or by value)."""
    a, b = dp.accumulator, base.accumulator
    if not (isinstance(a.fmt, Fixed) and isinstance(b.fmt, Fixed)):
        return False
    if (a.fmt.frac, a.fmt.signed, a.rounding) != (b.fmt.frac, b.fmt.signed, b.rounding):
        return False
    for f in fields(Datapath):
        if f.name in ("accumulator", "order"):
            continue
        x, y = getattr(dp, f.name), getattr(base, f.name)
        if x is y:
            continue
        try:
            if not bool(x == y):
                return False
        except (ValueError, TypeError):   # arrays inside (per-channel requant) that are not the same object
            return False
    return True


def gemm_widths(A, B, datapaths, *, bias=None) -> list:
    """``[gemm(A, B, dp, bias=bias) for dp in datapaths]`` (stats=True: overflow counts, exact sums,
    largest partial sums and bits needed), bit for bit, in one pass over the products per order.

    The datapaths must be integer ones that differ from the first only in the accumulator's width and
    overflow mode (wrap, saturate, saturate_symmetric, saturate_zero) and in the order (tree orders
    without level_bits). Traces are not recorded."""
    datapaths = list(datapaths)
    if not datapaths:
        return []
    base = datapaths[0]
    for n, dp in enumerate(datapaths):
        if not isinstance(dp, Datapath) or not dp.is_integer:
            raise InvalidArgument(f"datapaths[{n}] must be an integer Datapath")
        if not _same_but_accumulator(dp, base):
            raise InvalidArgument(f"datapaths[{n}] differs from datapaths[0] in more than the accumulator's width, "
                                  "overflow mode and the order")
        if dp.accumulator.overflow not in _MODES:
            raise InvalidArgument(f"datapaths[{n}]: overflow {dp.accumulator.overflow.name.lower()} is not swept in "
                                  "one pass (wrap, saturate, saturate_symmetric, saturate_zero)")
        if dp.order.level_bits:
            raise InvalidArgument(f"datapaths[{n}]: tree level_bits are not swept in one pass")
    A = _as_2d(A, "A")
    B = _as_2d(B, "B")
    if A.shape[1] != B.shape[0]:
        raise InvalidArgument(f"A is {A.shape} and B is {B.shape}: inner dimensions must match")
    Ac, _, _ = operand_codes_range(A, base.a, "A")
    Bc, _, _ = operand_codes_range(B, base.b, "B")
    return _gemm_widths(Ac, Bc, datapaths, bias)


def _gemm_widths(Ac, Bc, datapaths, bias):
    """gemm_widths on the operands' integer codes (conv2d: the patch matrix and the flattened weights)."""
    base = datapaths[0]
    plans = [plan_integer(dp) for dp in datapaths]      # validates each datapath as gemm does
    plan = plans[0]
    Ae = np.ascontiguousarray(_integer_operand(plan.zero_point_adjust(Ac, base.a_zero_point, base.a, "a")),
                              dtype=np.int64)
    Be = np.ascontiguousarray(_integer_operand(plan.zero_point_adjust(Bc, base.b_zero_point, base.b, "b")),
                              dtype=np.int64)
    M, Kd = Ae.shape
    N = Be.shape[1]
    signed = base.accumulator.fmt.signed
    # bias: preloaded (one init for every width: same binary point, each width checks its range), or
    # added in each configuration's output stage
    init = np.zeros((M, N), dtype=np.int64)
    imax = 0
    if bias is not None and base.bias_preload:
        for dp in datapaths:
            init = _bias_codes(bias, dp.accumulator.fmt, (M, N))
        imax = _absmax(init)
    amax = min(plan.operand_bound("a"), _absmax(Ae))
    bmax = min(plan.operand_bound("b"), _absmax(Be))
    pmax = plan.product_bound(amax, bmax)
    if Kd * pmax + imax >= _I63:
        raise InvalidArgument(f"exact partial sums could reach {(Kd * pmax + imax).bit_length()} bits (K={Kd}); the "
                              "engine tracks them in int64: use narrower operands or split K")
    simple = base.product is None and plan.align_shift <= 0
    L = -plan.align_shift
    results = [None] * len(datapaths)
    groups = {}
    for n, dp in enumerate(datapaths):
        o = dp.order
        groups.setdefault((o.kind, o.lanes, o.combine), []).append(n)
    Bt = None
    for (kind, lanes, combine), idx in groups.items():
        cw = np.array([plans[n].bits for n in idx], dtype=np.int64)
        cm = np.array([int(plans[n].overflow) for n in idx], dtype=np.int64)
        clo = np.array([plans[n].lo for n in idx], dtype=np.int64)
        chi = np.array([plans[n].hi for n in idx], dtype=np.int64)
        nC = len(idx)
        acc = np.empty((nC, M, N), dtype=np.int64)
        nov = np.empty((nC, M, N), dtype=np.int64)
        exact = np.empty((M, N), dtype=np.int64)
        mx = np.empty((M, N), dtype=np.int64)
        mn = np.empty((M, N), dtype=np.int64)
        code, comb = _ORDER_CODE[kind], 0 if combine == "sequential" else 1
        tl = lanes if (kind == "chunked" and comb) else 1
        vector = (simple and kind in ("sequential", "chunked") and Kd * pmax + imax < 2 ** 62
                  and bool(np.all(cw < 63)) and tl * (nC + 1) * MW.RB * MW.NT * 8 <= _BLOCK_BYTES)
        if M * N:
            if vector:
                notice_first_use(MW.multi_gemm_blocks)(Ae, Be, init, L, code, lanes, comb, signed, cw, cm, clo,
                                                       chi, acc, nov, exact, mx, mn)
            else:
                if Bt is None:
                    Bt = np.ascontiguousarray(Be.T)
                notice_first_use(MW.multi_gemm_outputs)(Ae, Bt, init, plan.cfg, code, lanes, comb, signed, cw, cm,
                                                        clo, chi, acc, nov, exact, mx, mn)
        max_p = np.maximum(mx, -mn)
        nbits = bits_needed(mx, mn, signed)
        for c, n in enumerate(idx):
            results[n] = _finish(datapaths[n], acc[c], nov[c], exact, max_p, nbits, bias)
    return results


def _finish(dp, acc, nov, exact, max_p, nbits, bias) -> GemmResult:
    """The output stage of one configuration, as run_integer_gemm applies it."""
    acc_fmt = dp.accumulator.fmt
    out_bias = None
    if bias is not None and not dp.bias_preload:
        bb = dp.output.bias_bits or acc_fmt.bits
        out_bias = _bias_codes(bias, Fixed(bb, acc_fmt.frac, True), acc.shape)
    codes, values = output_stage(acc, dp.output, acc_fmt, dp.accumulator.overflow, out_bias)
    acc_values = values if codes is acc else ints_to_values(acc, acc_fmt.frac)
    return GemmResult(values=values, codes=codes, acc=acc, overflow_count=nov, acc_values=acc_values,
                      exact=exact, max_partial=max_p, bits_needed=nbits, datapath=dp, traces={})


def eligible(spec, configs) -> bool:
    """Whether one pass answers this sweep: a forward gemm or conv2d (one group) layer on an integer
    datapath, every configuration a Fixed accumulator width with an overflow mode the pass supports."""
    if spec.op not in ("gemm", "conv2d") or spec.pass_ != "forward" or not spec.datapath.is_integer:
        return False
    if spec.op == "conv2d" and spec.shape.get("groups", 1) != 1:
        return False
    if spec.datapath.order.level_bits:
        return False
    modes = {m.name.lower() for m in _MODES}
    return all("acc_float" not in c and Overflow.parse(c["overflow"], argument="overflow").name.lower() in modes
               for c in configs)


def sweep_rows(spec, configs, data, config_datapath, row, fallback):
    """The sweep's rows through the one-pass engine: every configuration's result against the exact
    reference of its order (a 62-bit signed wrapping accumulator at the spec's binary point, as the
    per-configuration sweep uses). ``config_datapath(base, config)`` builds a configuration's datapath,
    ``row(config, result, reference)`` a row; ``fallback(config, reference)`` answers a configuration
    the engine cannot (a bias that does not fit that width: its row carries the reason)."""
    A, B, bias = data
    base = spec.datapath
    dps, refs, order_of = [], {}, []
    for c in configs:
        dp = config_datapath(base, c)
        key = (c["order"], c["lanes"] if c["order"] == "chunked" else 1)
        if key not in refs:
            refs[key] = base.replace(accumulator=type(base.accumulator)(
                Fixed(62, base.accumulator.fmt.frac, True), overflow="wrap", rounding=base.accumulator.rounding),
                order=dp.order)
        dps.append(dp)
        order_of.append(key)
    run = lambda dps_: gemm_widths(A, B, dps_, bias=bias)   # noqa: E731
    if spec.op == "conv2d":
        run, M, N = _conv_runner(spec, data)
    else:
        M, N = A.shape[0], B.shape[1]
    ok = []
    for n, dp in enumerate(dps):     # widths that cannot hold the preloaded bias fail as gemm fails
        try:
            if bias is not None:
                if dp.bias_preload:
                    _bias_codes(bias, dp.accumulator.fmt, (M, N))
                else:
                    _bias_codes(bias, Fixed(dp.output.bias_bits or dp.accumulator.fmt.bits,
                                            dp.accumulator.fmt.frac, True), (M, N))
            ok.append(n)
        except ValueError:
            pass
    keys = list(refs)
    res = {}
    # the references may differ in signedness from the swept registers: their own call (cheap: clean)
    same = [k for k in keys if refs[k].accumulator.fmt.signed == base.accumulator.fmt.signed]
    first = [refs[k] for k in same] + [dps[n] for n in ok]
    out = run(first)
    ref_res = dict(zip(same, out[:len(same)]))
    res.update(zip(ok, out[len(same):]))
    rest = [k for k in keys if k not in ref_res]
    if rest:
        ref_res.update(zip(rest, run([refs[k] for k in rest])))
    reference = {k: (r.values, r.codes, r.acc_values) for k, r in ref_res.items()}
    rows = []
    for n, c in enumerate(configs):
        if n in res:
            rows.append(row(c, res[n], reference[order_of[n]]))
        else:
            rows.append(fallback(c, reference[order_of[n]]))
    return rows


def _conv_runner(spec, data):
    """For a conv2d layer (one group): a function running datapaths through the one pass on the layer's
    patch matrix, returning results laid out as conv2d returns them (NCHW views of the GEMM's rows), and
    the lowered GEMM's output shape."""
    x, w, bias = data
    s = spec.shape
    dp0 = spec.datapath
    xc, _, _ = operand_codes_range(x, dp0.a, "x")
    wc, _, _ = operand_codes_range(w, dp0.b, "w")
    patches, OH, OW = unfold(xc, w.shape[2:], stride=s.get("stride", 1), padding=s.get("padding", 0),
                             dilation=s.get("dilation", 1), pad_value=dp0.a_zero_point, reduction_order="ckk")
    wg = flatten_weights(wc, "ckk")
    Nb, O = xc.shape[0], wc.shape[0]

    def nchw(r):
        done = {}

        def view(arr):
            if arr is None:
                return None
            if id(arr) not in done:
                done[id(arr)] = arr.reshape(Nb, OH, OW, O).transpose(0, 3, 1, 2)
            return done[id(arr)]
        return GemmResult(values=view(r.values), codes=view(r.codes), acc=view(r.acc),
                          overflow_count=view(r.overflow_count), acc_values=view(r.acc_values), exact=view(r.exact),
                          max_partial=view(r.max_partial), bits_needed=view(r.bits_needed), datapath=r.datapath,
                          traces={})

    def run(dps):
        stages = {}         # one sliced output stage per stage object: datapaths that shared it still do

        def sliced(dp):
            if id(dp.output) not in stages:
                stages[id(dp.output)] = _slice_channels(dp, 0, O, O).output
            return dp.replace(output=stages[id(dp.output)])
        return [nchw(r) for r in _gemm_widths(patches, wg, [sliced(dp) for dp in dps], bias)]
    return run, patches.shape[0], O
