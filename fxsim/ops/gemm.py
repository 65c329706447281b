"""Bit-exact integer / fixed-point GEMM through an explicit MAC datapath.

``gemm(A, B, datapath)`` computes every output C[i, j] the way the described hardware does: zero points
subtracted, products formed (and optionally cut to a product register), aligned to the accumulator's binary
point, and accumulated in the stated order with the accumulator's overflow mode applied after every single
addition; then the output stage (bias add, requantization, activation clamp, output register).

Exactness: every intermediate is an int64 code. Before running, the engine bounds every product and every
exact partial sum from the actual operands and rejects, with a ValueError, any datapath whose exact values
could leave int64 (e.g. 64 x 64-bit products); it never computes a wrong value silently.

Shortcuts (``stats=False``), each exact and proved in ``fxsim.engines.shortcuts``: exact sums by BLAS
(float32 or float64), wrap as the exact sum mod 2**W, saturation only where a bound (K * max|a| * max|b|,
Cauchy-Schwarz, |A| @ |B|, or the blocked midpoint enclosure of the sequential order) cannot rule it out;
the outputs left unproven run the cycle-accurate kernel.

With ``stats=True`` (the default) every output runs the cycle-accurate kernel, which also records the exact
statistics (overflow count, largest partial sum, bits needed).
"""
from __future__ import annotations

from contextlib import contextmanager

import numba as nb
import numpy as np

from fxsim._kernels import int_gemm as K

from fxsim.errors import InvalidArgument, InvalidType
from fxsim.runtime.threads import row_parallel
from fxsim.datapath import Datapath
from fxsim.formats import Fixed, ints_to_values
from fxsim.modes import Overflow, Rounding
from fxsim.engines.output_stage import output_stage, register_overflow
from fxsim.result import GemmResult, bits_needed
from fxsim.runtime.scratch import scratch, zeros
from fxsim.validate import as_array
from fxsim.engines.shortcuts import BLOCK, exact_products, float_dtype, scan_operands, sequential_block_test

__all__ = ["gemm", "operand_codes", "IntegerPlan", "plan_integer", "run_integer_gemm"]

_I63 = 2 ** 63


def operand_codes(x, fmt: Fixed, argument: str) -> np.ndarray:
    """Real values on ``fmt``'s grid -> int64 codes (a clear error for anything off the grid)."""
    return operand_codes_range(x, fmt, argument)[0]


def operand_codes_range(x, fmt: Fixed, argument: str):
    """operand_codes, plus the smallest and largest code (Python ints; 0, 0 for an empty array)."""
    arr = as_array(argument, x, kinds="iuf")
    if arr.dtype.kind in "iu" and fmt.frac == 0:
        lo = hi = 0
        if arr.size:   # one min/max pass; the offending element is located only on error
            lo, hi = int(arr.min()), int(arr.max())
            if lo < fmt.min_code or hi > fmt.max_code:
                flat = int(arr.argmin()) if lo < fmt.min_code else int(arr.argmax())
                idx = np.unravel_index(flat, arr.shape)
                raise InvalidArgument(f"{argument}[{', '.join(map(str, idx))}] = {arr[idx]} is outside {fmt} "
                                 f"[{fmt.min_code}, {fmt.max_code}]; quantize it first (fxsim.quantize.quantize)")
        return arr.astype(np.int64, copy=False), lo, hi
    v = arr.astype(np.float64)
    scaled = np.ldexp(v, fmt.frac)
    off = ~np.isfinite(scaled) | (scaled != np.floor(scaled))
    if np.any(off):
        idx = np.unravel_index(int(np.flatnonzero(off)[0]), arr.shape)
        raise InvalidArgument(f"{argument}[{', '.join(map(str, idx))}] = {float(v[idx])!r} is not on the grid of {fmt}; "
                         "quantize it first (fxsim.quantize.quantize)")
    bad = (scaled < float(fmt.min_code)) | (scaled > float(fmt.max_code)) | (np.abs(scaled) >= 2.0 ** 63)
    if np.any(bad):
        idx = np.unravel_index(int(np.flatnonzero(bad)[0]), arr.shape)
        raise InvalidArgument(f"{argument}[{', '.join(map(str, idx))}] = {float(v[idx])!r} is outside {fmt} [{fmt.min}, {fmt.max}]; "
                         "quantize it first (fxsim.quantize.quantize)")
    codes = scaled.astype(np.int64)
    return codes, (int(codes.min()) if codes.size else 0), (int(codes.max()) if codes.size else 0)


def _range(bits: int, signed: bool, symmetric: bool = False):
    if signed:
        hi = (1 << (bits - 1)) - 1
        return (-hi if symmetric else -hi - 1), hi
    return 0, (1 << bits) - 1


class IntegerPlan:
    """A Datapath resolved to numbers for the kernels, plus the bounds that prove int64 suffices."""

    def __init__(self, dp: Datapath):
        self.dp = dp
        a, b, acc = dp.a, dp.b, dp.accumulator
        for name, r in (("product_rounding", dp.product_rounding), ("accumulator rounding", acc.rounding)):
            if r == Rounding.STOCHASTIC:
                raise InvalidArgument(f"{name}='stochastic' is not supported by the integer engine; "
                                 "use a deterministic rounding mode")
        self.acc_fmt = f = acc.fmt
        if f.bits == 64 and not f.signed:
            raise InvalidArgument("an unsigned 64-bit accumulator does not fit the int64 engine; use int64 or <= 63 bits")
        self.bits, self.signed = f.bits, f.signed
        self.lo, self.hi = _range(f.bits, f.signed, acc.overflow == Overflow.SATURATE_SYMMETRIC)
        self.ovf = int(acc.overflow)
        prod_frac = a.frac + b.frac
        cfg = np.zeros(K.CFG_SIZE, dtype=np.int64)
        if dp.product is not None:
            p = dp.product
            if p.bits == 64 and not p.signed:
                raise InvalidArgument("an unsigned 64-bit product register does not fit the int64 engine")
            plo, phi = _range(p.bits, p.signed, dp.product_overflow == Overflow.SATURATE_SYMMETRIC)
            cfg[K.P_SHIFT] = prod_frac - p.frac
            cfg[K.P_BITS], cfg[K.P_SIGNED], cfg[K.P_LO], cfg[K.P_HI] = p.bits, int(p.signed), plo, phi
            cfg[K.P_MODE], cfg[K.P_OVF] = int(dp.product_rounding), int(dp.product_overflow)
            if dp.product_overflow in (Overflow.ERROR, Overflow.IEEE):
                raise InvalidArgument("product_overflow must be wrap, saturate, saturate_symmetric or saturate_zero")
            prod_frac = p.frac
        self.align_shift = prod_frac - f.frac
        cfg[K.A_SHIFT], cfg[K.A_MODE] = self.align_shift, int(acc.rounding)
        cfg[K.BITS], cfg[K.SIGNED], cfg[K.LO], cfg[K.HI], cfg[K.OVF] = f.bits, int(f.signed), self.lo, self.hi, self.ovf
        order = dp.order
        cfg[K.ORDER] = {"sequential": K.SEQUENTIAL, "tree": K.TREE, "chunked": K.CHUNKED}[order.kind]
        cfg[K.LANES] = order.lanes
        cfg[K.COMBINE] = 0 if order.combine == "sequential" else 1
        self.cfg = cfg
        self.levels = np.asarray(order.level_bits or (), dtype=np.int64)
        if order.kind == "tree" and not f.signed and np.any(self.levels == 64):
            raise InvalidArgument("unsigned 64-bit tree levels do not fit the int64 engine")
        for s, what in ((cfg[K.P_SHIFT], "product register"), (self.align_shift, "accumulator")):
            if abs(int(s)) > 62:
                raise InvalidArgument(f"the {what} binary point is {abs(int(s))} bits from the product's; at most 62")

    def zero_point_adjust(self, codes, zp: int, fmt: Fixed, argument: str):
        """codes - zero point, in a signed subtractor of ``zero_point_bits`` (default: exact) width."""
        if not fmt.min_code <= int(zp) <= fmt.max_code:
            raise InvalidArgument(f"{argument}_zero_point={zp} is outside {fmt}'s codes [{fmt.min_code}, {fmt.max_code}]")
        if zp == 0 and self.dp.zero_point_bits is None:
            return codes
        if fmt.bits == 64:
            raise InvalidArgument(f"zero points on a 64-bit operand ({argument}) do not fit the int64 engine")
        zp = int(zp)   # a dtype holding the codes, the zero point and every difference
        dt = compact_int_dtype(min(fmt.min_code, fmt.min_code - zp), max(fmt.max_code, fmt.max_code - zp))
        d = np.asarray(codes).astype(dt) - dt.type(zp)
        if self.dp.zero_point_bits is not None:
            d = register_overflow(d, self.dp.zero_point_bits, True, Overflow.WRAP)
        return d

    def operand_bound(self, which: str) -> int:
        """The largest |code - zero point| operand ``which`` ("a" or "b") can present to the multiplier."""
        fmt, zp = (self.dp.a, self.dp.a_zero_point) if which == "a" else (self.dp.b, self.dp.b_zero_point)
        bound = max(abs(fmt.min_code - int(zp)), abs(fmt.max_code - int(zp)))
        if self.dp.zero_point_bits is not None:   # the wrapping subtractor: never beyond its range
            bound = min(bound, 1 << (self.dp.zero_point_bits - 1))
        return bound

    def product_bound(self, amax: int, bmax: int) -> int:
        """The largest aligned-product magnitude (in accumulator LSBs) these operands can produce;
        raises if any stage's exact value could leave int64."""
        p = amax * bmax
        if p >= _I63:
            raise InvalidArgument(f"products of {self.dp.a} and {self.dp.b} operands reach {p.bit_length()} bits, "
                             "beyond the int64 engine; narrow an operand (at most 63-bit exact products)")
        cfg = self.cfg
        if cfg[K.P_BITS]:
            s = int(cfg[K.P_SHIFT])
            if s < 0:
                p <<= -s
                if p >= _I63:
                    raise InvalidArgument("left-aligning products into the product register exceeds int64")
            elif s > 0:
                p = (p >> s) + 1
            p = min(p, max(-int(cfg[K.P_LO]), int(cfg[K.P_HI])))
        s = self.align_shift
        if s < 0:
            p <<= -s
            if p >= _I63:
                raise InvalidArgument(f"aligning products to the accumulator's {self.acc_fmt.frac} fractional bits "
                                 f"exceeds int64 (shift {-s})")
        elif s > 0:
            p = (p >> s) + 1
        return p


def compact_int_dtype(lo: int, hi: int) -> np.dtype:
    """The narrowest NumPy integer dtype holding every integer in [lo, hi] (int64 when none does)."""
    for dt in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def _as_2d(x, name):
    arr = as_array(name, x)
    if arr.ndim != 2:
        raise InvalidArgument(f"{name} must be a 2-D array, got shape {arr.shape}")
    return arr


def _bias_codes(bias, fmt: Fixed, shape, argument="bias"):
    codes = operand_codes(bias, fmt, argument)
    try:
        return np.ascontiguousarray(np.broadcast_to(codes, shape), dtype=np.int64)
    except ValueError:
        raise InvalidArgument(f"{argument} of shape {np.shape(bias)} does not broadcast to the output shape {shape} "
                         "(give one value per output column, or a full (M, N) array)") from None


def _absmax(x) -> int:
    return max(-int(x.min()), int(x.max())) if x.size else 0


def _integer_operand(codes) -> np.ndarray:
    """Operand codes as a C-contiguous integer array the kernels take (uint64 codes become int64: the
    format checks have bounded them below 2**63)."""
    x = np.asarray(codes)
    if x.dtype.kind not in "iu" or x.dtype == np.uint64:
        x = x.astype(np.int64)
    return np.ascontiguousarray(x)


@contextmanager
def _threads_for(work: int):
    """One thread for kernel calls below 2**22 MACs. Besides the start-up cost, a parallel region leaves
    its OpenMP workers spinning for a while, and they then slow the next call's BLAS slabs (measured: a
    512^3 saturating GEMM alternating between 4.0 and 5.9 ms with a parallel 0.5 M MAC kernel, steady at
    4.1 ms with a serial one)."""
    if work >= 1 << 22:
        yield
        return
    n = nb.get_num_threads()
    nb.set_num_threads(1)
    try:
        yield
    finally:
        nb.set_num_threads(n)


def _saturating_kernel(dp, plan, A64, B64, Bt, init, L, rows, cols, acc, nov, start_k=None, start_acc=None,
                       Bt_exact_floats=None):
    """Run the cycle-accurate kernel on the outputs (rows[t], cols[t]) only (A64(), B64(): int64 operands,
    Bt(): B transposed); with start_k/start_acc, output t resumes at cycle start_k[t] holding start_acc[t]
    (sequential order). Bt_exact_floats(), when given, is B transposed as exact floats, which the
    sequential saturating kernel may read instead of Bt()."""
    if not rows.size:
        return
    clamp = dp.accumulator.overflow in (Overflow.SATURATE, Overflow.SATURATE_SYMMETRIC)
    sequential = dp.order.kind == "sequential" and clamp and plan.bits < 64
    work = rows.size * A64().shape[1]
    if sequential and 2 * rows.size < acc.size:   # serial nogil kernel, the outputs split across threads
        if start_k is None:
            start_k, start_acc = np.zeros(rows.size, dtype=np.int64), init[rows, cols]
        Aw, Bw = A64(), (Bt_exact_floats or Bt)()

        def part(t):   # outputs t of the list, on one thread
            K.saturate_sequential_kernel(Aw, Bw, start_k[t], start_acc[t], L, plan.lo, plan.hi, rows[t],
                                         cols[t], acc, nov)

        row_parallel(part, rows.size, work=work, min_work=1 << 21)   # below: a thread hand-off costs more
        return
    with _threads_for(work):
        if sequential:   # most outputs: the column-vectorised kernel over all of them
            K.saturate_sequential_dense(A64(), B64(), init, L, plan.lo, plan.hi, acc, nov)
        else:
            K.gemm_subset_kernel(A64(), Bt(), init, plan.cfg, plan.levels, rows, cols, acc, nov)


def run_integer_gemm(Ac, Bc, dp: Datapath, *, bias=None, trace=None, stats=True, code_ranges=None,
                     unchecked=()) -> GemmResult:
    """The engine on integer operand codes Ac (M, K), Bc (K, N) (conv2d lowers to this). ``code_ranges``
    ((a_lo, a_hi), (b_lo, b_hi)), when the caller knows them, bound the codes and spare a pass over the
    data (they must hold every code; they need not be attained). ``unchecked``: (key "a"/"b", argument
    name, array, format) for operands whose codes the caller has not range-checked; the engine checks
    them in its own pass (only for operands without a zero point, whose codes reach it unchanged)."""
    plan = IntegerPlan(dp)
    # operands stay in the integer dtype they come in (conv2d passes int8 patches for int8 formats): the
    # BLAS shortcuts read them directly; int64 copies are made only when a per-output kernel runs
    Ae = _integer_operand(plan.zero_point_adjust(Ac, dp.a_zero_point, dp.a, "a"))
    Be = _integer_operand(plan.zero_point_adjust(Bc, dp.b_zero_point, dp.b, "b"))
    M, Kd = Ae.shape
    N = Be.shape[1]
    lazy = {}

    def A64():
        if "a" not in lazy:
            lazy["a"] = np.ascontiguousarray(Ae, dtype=np.int64)
        return lazy["a"]

    def B64():
        if "b" not in lazy:
            lazy["b"] = np.ascontiguousarray(Be, dtype=np.int64)
        return lazy["b"]

    def Bt():
        """B transposed (N, K), int64, contiguous, for the per-output kernels: built once, when one runs."""
        if "bt" not in lazy:
            lazy["bt"] = scratch("gemm B.T", (N, Kd), np.int64)
            K.transpose_into(Be, lazy["bt"])
        return lazy["bt"]

    acc_fmt = plan.acc_fmt
    # bias: preloaded into the accumulator, or added in the output stage
    init = zeros((M, N), np.int64)   # the kernels only read it; never returned
    imax = 0
    out_bias = None
    if bias is not None:
        if dp.bias_preload:
            init = _bias_codes(bias, acc_fmt, (M, N))
            imax = _absmax(init)
        else:
            bb = dp.output.bias_bits or acc_fmt.bits
            out_bias = _bias_codes(bias, Fixed(bb, acc_fmt.frac, True), (M, N))
    simple = dp.product is None and plan.align_shift <= 0
    shortcut = not stats and simple and M * N > 0
    L = -plan.align_shift
    limit = min(plan.hi, -plan.lo)
    if dp.order.kind == "tree":   # narrower adder-tree levels bound the safe range too
        for lb in plan.levels:
            llo, lhi = _range(int(lb), plan.signed, dp.accumulator.overflow == Overflow.SATURATE_SYMMETRIC)
            limit = min(limit, lhi, -llo)
    levels_ok = plan.levels.size == 0 or bool(np.all(plan.levels >= plan.bits))
    wrap_all = dp.accumulator.overflow == Overflow.WRAP and levels_ok
    fmt_bound = Kd * plan.operand_bound("a") * plan.operand_bound("b")
    formats_decide = shortcut and fmt_bound < 2 ** 53 and (wrap_all or (fmt_bound << L) + imax <= limit)
    # where the formats alone do not prove shortcut 1 + 2 or 3, the data must: read each operand once for
    # its range, float copy and block sums of squares
    scan = None
    if shortcut and not formats_decide:
        scan = scan_operands(Ae, Be, plan.operand_bound("a"), plan.operand_bound("b"))
    for key, name, x, fmt in unchecked:   # codes the caller left to be range-checked here
        lo, hi = (None, None) if scan is None else (scan.a_lo, scan.a_hi) if key == "a" else (scan.b_lo, scan.b_hi)
        if lo is None or lo < fmt.min_code or hi > fmt.max_code:
            operand_codes_range(x, fmt, name)   # locates and reports an offending element
    # bounds on |a| and |b|: first from the formats (free), from the data where the format's bound is too
    # loose to prove what is needed (the scan's range, the caller's, or one pass each)
    amax, bmax = plan.operand_bound("a"), plan.operand_bound("b")
    data_bounds = False

    def use_data_bounds():
        nonlocal amax, bmax, data_bounds
        if not data_bounds:
            if scan is not None:
                amax = min(amax, max(-scan.a_lo, scan.a_hi))
                bmax = min(bmax, max(-scan.b_lo, scan.b_hi))
            elif code_ranges is not None and dp.zero_point_bits is None:
                (alo, ahi), (blo, bhi) = code_ranges
                za, zb = int(dp.a_zero_point), int(dp.b_zero_point)
                amax = min(amax, max(abs(alo - za), abs(ahi - za)))
                bmax = min(bmax, max(abs(blo - zb), abs(bhi - zb)))
            else:
                amax, bmax = min(amax, _absmax(Ae)), min(bmax, _absmax(Be))
            data_bounds = True

    try:
        pmax = plan.product_bound(amax, bmax)
    except ValueError:
        use_data_bounds()
        pmax = plan.product_bound(amax, bmax)
    if Kd * pmax + imax >= _I63:
        use_data_bounds()
        pmax = plan.product_bound(amax, bmax)
    if Kd * pmax + imax >= _I63:
        raise InvalidArgument(f"exact partial sums could reach {(Kd * pmax + imax).bit_length()} bits (K={Kd}); the "
                         "engine tracks them in int64: use narrower operands or split K")

    exact = max_p = nbits = None
    # overflow counts are returned only with stats; without, the kernels write them into scratch
    nov = np.zeros((M, N), dtype=np.int64) if stats else scratch("gemm overflow counts", (M, N), np.int64)
    # the exact sums, the accumulators and the values share one allocation: a fresh multi-megabyte array
    # per result costs a page fault per 4 KiB on first write (0.9 ms of 1.1 for 512x512), while numpy
    # backs allocations of 4 MiB and more with huge pages
    planes = np.empty((3, M, N), dtype=np.int64)
    acc = planes[1]
    # the global bound K * max|a| * max|b| (Python ints) often proves everything at once, sparing |A|@|B|
    global_bound = Kd * amax * bmax
    path = None
    if shortcut and not (global_bound < 2 ** 53 and (wrap_all or (global_bound << L) + imax <= limit)):
        use_data_bounds()                     # the formats' bound decides nothing: tighten it from the data
        global_bound = Kd * amax * bmax
    if shortcut:
        if global_bound >= 2 ** 53:
            path = "T"
        elif wrap_all or (global_bound << L) + imax <= limit:
            path = "all"                      # shortcut 1 (+2 or 3) for every output at once
        else:
            if scan is None:                  # the formats were too wide to scan by; the data may not be
                scan = scan_operands(Ae, Be, amax, bmax)
            if (scan is not None and imax <= limit and
                    int(scan.sqa.sum(0).max()) * int(scan.sqb.sum(0).max()) << (2 * L) <= (limit - imax) ** 2):
                path = "all"                  # shortcut 3 with the Cauchy-Schwarz bound, every output
            elif (dp.order.kind == "sequential" and scan is not None and BLOCK * max(amax, bmax) ** 2 < 2 ** 53
                  and limit < 2 ** 52 and (global_bound << L) + imax < 2 ** 52):
                path = "blocks"               # shortcut 4
            else:
                path = "T"
    if path == "blocks":
        exact = planes[0]
        Bf = scan.Bf
        rows, cols, start_k, start_acc = sequential_block_test(scan.Af, Bf, init, imax, L, limit, amax, bmax,
                                                                 scan.sqa, scan.sqb, exact)
        acc[...] = exact

        def Bft():   # the test's float copy of B, still in cache, transposed: half the bytes of int64
            if "bft" not in lazy:
                lazy["bft"] = scratch("gemm B.T float", (N, Kd), Bf.dtype)
                K.transpose_into(Bf, lazy["bft"])
            return lazy["bft"]

        _saturating_kernel(dp, plan, A64, B64, Bt, init, L, rows, cols, acc, nov, start_k, start_acc, Bft)
    elif path is not None:
        exact = planes[0]
        T = None
        if path == "T":
            T = np.empty((M, N), dtype=float_dtype(global_bound))
        # the scan's copies are exact: their dtype was chosen for the formats' bounds, which hold the data's
        copies = {} if scan is None else {"Af": scan.Af, "Bf": scan.Bf}
        dt = scan.Af.dtype if scan is not None else float_dtype(min(global_bound, 2 ** 53 - 1))
        exact_products(Ae, Be, dt, init, L, plan.bits, plan.signed, wrap_all, exact, acc, T, **copies)
        if path == "T" and not T.max(initial=0.0) < 2.0 ** 53:   # shortcut 1's test failed: run the kernel
            path = None
            exact = None
        elif path == "T" and not wrap_all:
            reach = np.abs(init) + (T.astype(np.int64) << L)   # integers; < 2**63 by the bound checked above
            rows, cols = (v.astype(np.int64) for v in np.nonzero(reach > limit))
            _saturating_kernel(dp, plan, A64, B64, Bt, init, L, rows, cols, acc, nov)
    if path is None and not stats:
        rows, cols = (a.ravel().astype(np.int64) for a in np.indices((M, N)))
        K.gemm_subset_kernel(A64(), Bt(), init, plan.cfg, plan.levels, rows, cols, acc, nov)
    elif path is None:
        exact = planes[0]
        mx = np.empty((M, N), dtype=np.int64)
        mn = np.empty((M, N), dtype=np.int64)
        dense_modes = (Overflow.WRAP, Overflow.SATURATE, Overflow.SATURATE_SYMMETRIC, Overflow.SATURATE_ZERO)
        if dp.order.kind == "sequential" and simple and plan.bits < 64 and dp.accumulator.overflow in dense_modes:
            # the common datapath, vectorised across columns (several times the per-output kernel's speed)
            K.sequential_stats_dense(A64(), B64(), init, L, plan.bits, plan.signed, plan.lo, plan.hi, plan.ovf,
                                     acc, nov, mx, mn, exact)
        else:
            K.gemm_kernel(A64(), Bt(), init, plan.cfg, plan.levels, acc, nov, mx, mn, exact)
        max_p = np.maximum(mx, -mn)
        nbits = bits_needed(mx, mn, plan.signed)
    if not stats:
        nov = None

    traces = {}
    if trace is not None:
        from fxsim.validate import check_trace
        buf = np.empty(2 * Kd + 2 * dp.order.lanes + 4, dtype=np.int64)
        for i, j in check_trace("trace", trace, (M, N)):
            n = K.trace_one(A64()[i], np.ascontiguousarray(Be[:, j], dtype=np.int64), init[i, j], plan.cfg,
                            plan.levels, buf)
            traces[(i, j)] = buf[:n].copy()

    codes, values = output_stage(acc, dp.output, acc_fmt, dp.accumulator.overflow, out_bias,
                                 values_out=planes[2].view(np.float64))
    acc_values = values if codes is acc else ints_to_values(acc, acc_fmt.frac)
    return GemmResult(values=values, codes=codes, acc=acc, overflow_count=nov, acc_values=acc_values,
                      exact=exact, max_partial=max_p, bits_needed=nbits, datapath=dp, traces=traces)


def gemm(A, B, datapath: Datapath, *, bias=None, trace=None, stats: bool = True) -> GemmResult:
    """C = A @ B through ``datapath``, bit for bit.

    ``A`` (M, K) and ``B`` (K, N) hold real values on the operand formats' grids (integer arrays are taken
    as codes of integer formats). ``bias`` (N,) or (M, N) holds real values on the accumulator's grid.
    ``trace``: an (i, j) pair or a list of them; their per-cycle register values land in ``result.traces``.
    ``stats=False`` skips the per-output statistics and uses the exact shortcuts (module docstring).
    Float operands or accumulators are handed to the float engine (``fxsim.engines.floating.float_gemm``).
    """
    if not isinstance(datapath, Datapath):
        raise InvalidType(f"datapath must be an fxsim Datapath, got {type(datapath).__name__}")
    if not datapath.is_integer:
        from fxsim.engines.floating import float_gemm   # the float datapath lives in its own engine
        return float_gemm(A, B, datapath, bias=bias, trace=trace)
    A = _as_2d(A, "A")
    B = _as_2d(B, "B")
    if A.shape[1] != B.shape[0]:
        raise InvalidArgument(f"A is {A.shape} and B is {B.shape}: inner dimensions must match")
    codes, ranges, unchecked = [], [], []
    for key, name, x, fmt, zp in (("a", "A", A, datapath.a, datapath.a_zero_point),
                                  ("b", "B", B, datapath.b, datapath.b_zero_point)):
        if (not stats and x.dtype.kind in "iu" and x.dtype != np.uint64 and fmt.frac == 0 and int(zp) == 0
                and datapath.zero_point_bits is None):
            codes.append(x)   # integer codes as they are: the engine range-checks them in its one pass
            unchecked.append((key, name, x, fmt))
        else:
            c, lo, hi = operand_codes_range(x, fmt, name)
            codes.append(c)
            ranges.append((lo, hi))
    return run_integer_gemm(codes[0], codes[1], datapath, bias=bias, trace=trace, stats=stats,
                            code_ranges=tuple(ranges) if len(ranges) == 2 else None, unchecked=tuple(unchecked))


def plan_integer(datapath: Datapath) -> IntegerPlan:
    """The kernel configuration of an integer datapath (validates it)."""
    return IntegerPlan(datapath)
