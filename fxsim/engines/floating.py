"""The floating-point datapath: mini-float (or integer) operands, exact or rounded products, and a
float accumulator that rounds every single addition -- or a wide fixed-point (Kulisch) accumulator.

    dp = Datapath(a="e4m3", b="e4m3", accumulator=Accumulator("fp32"))   # half_even, overflow to inf
    res = float_gemm(A, B, dp)        # or fxsim.ops.gemm.gemm(A, B, dp), which hands over here

What each part of the ``Datapath`` means here:

- ``a``, ``b``: any ``Float`` (radix 2 or 4) or ``Fixed`` format; integer zero points are subtracted
  exactly. Products are exact in float64 (checked: significand bits and exponent range must fit).
- ``product``: None = exact product (a fused multiply-add: no product rounding); a ``Float`` format =
  an unfused multiplier whose output register rounds with ``product_rounding`` and ``product_overflow``
  (default half_even and ieee, as for every float register; ``wrap`` is refused; stochastic rounding
  draws ``product_random_bits`` bits, from the datapath's one seed ``Datapath.random_seed``).
  ``fused=True`` together with a product format is a contradiction and raises.
- ``accumulator``: a ``Float`` format: every addition correctly rounded with ``rounding`` (any
  ``Rounding``; stochastic draws ``random_bits`` counter-based bits from ``seed``), ``overflow``
  ``ieee`` (inf, or NaN for formats without inf) / ``saturate`` / ``error``; ``flush_subnormals``
  flushes subnormal adder inputs and results to zero (DAZ + FTZ, sign kept) and subnormal operands.
  A ``Fixed`` accumulator is a Kulisch-style wide register: each exact product is aligned to its LSB
  (dropped bits rounded with ``rounding``, default floor) and added with ``overflow`` after every add.
- ``order``: sequential, tree, chunked lanes -- the same schedules as the integer datapath.
- bias: real values on the accumulator's grid; preloaded (``bias_preload``) or, for a Float
  accumulator, added by one more rounded addition after the reduction.
"""
from __future__ import annotations

import numpy as np

from fxsim._kernels import float_accum as FK
from fxsim._kernels import float_codes as FC
from fxsim._kernels import norms as NORMS
from fxsim._kernels import float_vec as FV
from fxsim._kernels import int_gemm as IK
from fxsim._kernels.threads import serial_below
from fxsim._kernels.quantize import OVF_INF as _OVF_INF

from fxsim.errors import InvalidArgument, InvalidType, RegisterOverflow
from fxsim.datapath import Datapath
from fxsim.formats import Fixed, Float
from fxsim.modes import Overflow, Rounding
from fxsim.quantize import float_overflow_code
from fxsim.runtime.compiling import notice_first_use
from fxsim.engines.output_stage import output_stage
from fxsim.result import GemmResult, bits_needed
from fxsim.validate import as_array, check_int, check_trace, kernel_array

__all__ = ["choose_float_path", "float_gemm", "max_random_bits", "operand_values", "sum_bound"]

_FLOAT64_SAFE = 2.0 ** 1020   # sums of two values below this cannot overflow float64


def max_random_bits(fmt: Float) -> int:
    """The most random bits a stochastic float adder can take here and stay exact: TwoSum keeps the sum
    as a 53-bit value plus a sticky residual, which resolves 50 - man bits below the kept LSB."""
    return 50 - fmt.man


def _sig_bits(fmt) -> int:
    """Significand bits of the largest operand magnitude (the multiplier's input width)."""
    if isinstance(fmt, Float):
        return fmt.man + 1
    return max(abs(fmt.min_code), fmt.max_code).bit_length() + 1   # +1 leaves room for a zero point


def _min_nonzero(fmt) -> float:
    return fmt.min_subnormal if isinstance(fmt, Float) else fmt.resolution


def _max_abs(fmt) -> float:
    return max(abs(fmt.min), abs(fmt.max))


def _check_exact_products(a, b):
    if _sig_bits(a) + _sig_bits(b) > 53:
        raise InvalidArgument(f"products of {a} x {b} need {_sig_bits(a) + _sig_bits(b)} significand bits; "
                         "the float engine keeps products exact in float64 (53 bits)")
    lo = _min_nonzero(a) * _min_nonzero(b)
    hi = _max_abs(a) * _max_abs(b) * 2.0
    if not (lo >= 2.0 ** -1022 and hi < _FLOAT64_SAFE):
        raise InvalidArgument(f"products of {a} x {b} leave float64's normal range "
                         f"[2**-1022, 2**1020); the float engine keeps products exact in float64")


def operand_values(x, fmt, zero_point: int, argument: str, flush: bool = False) -> np.ndarray:
    """Validate that ``x`` lies on ``fmt``'s grid; return the float64 values the multiplier sees
    (zero point subtracted for Fixed, subnormals flushed when ``flush``)."""
    arr = as_array(argument, x)
    if arr.ndim != 2:
        raise InvalidArgument(f"{argument} must be a 2-D array, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise InvalidType(f"{argument} must be a numeric array, got dtype {arr.dtype}")
    if isinstance(fmt, Fixed) and arr.dtype.kind in "iu" and fmt.frac == 0:
        vals = arr.astype(np.float64)
    else:
        vals = np.asarray(arr, dtype=np.float64)
    if not _on_fixed_grid(vals, fmt) and fast_float_codes(vals, fmt, store=False) is None:
        try:
            fmt.encode(vals)
        except ValueError as exc:
            raise InvalidArgument(f"{argument}: {exc}") from None
    if isinstance(fmt, Fixed) and zero_point:
        vals = vals - zero_point * fmt.resolution   # exact: codes and zero point are small integers
    if isinstance(fmt, Float) and flush and fmt.zero:
        vals = np.where(np.abs(vals) < fmt.min_normal, np.copysign(0.0, vals), vals)
    return kernel_array(vals)


def _on_fixed_grid(vals: np.ndarray, fmt) -> bool:
    """True when every value is a code of the Fixed format ``fmt`` times its resolution (one compiled pass;
    False means "not proved here": the caller runs ``encode``, which raises the user-facing error). Exact:
    for codes below 2**53 and resolutions that keep c * 2**-frac a normal float64, scaling by 2**frac is
    exact, and an integral result in [min_code, max_code] is exactly a code."""
    if not isinstance(fmt, Fixed) or fmt.bits > 53 or not -1000 < fmt.frac < 1000 or vals.size == 0:
        return False
    # a scaling by 2**frac, frac >= 0, never underflows (it is exact or overflows to inf, which fails the
    # range test), and a nonzero |v| < 2**-1000 then scales below 1, not an integer: the tiny-value test
    # only matters for frac < 0
    if fmt.frac < 0:
        with np.errstate(all="ignore"):
            if float(np.abs(vals[vals != 0]).min(initial=np.inf)) < 2.0 ** -1000:
                return False
    flat = kernel_array(vals).ravel()
    return bool(notice_first_use(FC.on_fixed_grid)(flat, 2.0 ** fmt.frac, float(fmt.min_code), float(fmt.max_code)))


def fast_float_codes(values, fmt, store: bool = True):
    """The bit patterns ``fmt.encode`` gives (as int64), computed in one compiled pass when every value
    is a finite value of a radix-2 Float format; None otherwise (the caller then runs ``encode``, which
    handles inf/NaN and raises for values off the grid). ``store=False`` only validates: True (every value
    is such a value) or None, without writing the codes."""
    if not isinstance(fmt, Float) or fmt.radix != 2 or fmt.bits > 62:
        return None
    flat = kernel_array(values).ravel()
    codes = np.empty(flat.shape if store else 0, dtype=np.int64)
    params = fmt.__dict__.get("_code_params")   # kept on the (frozen) format: training checks every step
    if params is None:
        params = fmt.__dict__["_code_params"] = (
            np.int64(fmt.man), np.int64(fmt.exp), np.int64(fmt.bias), np.int64(fmt.emin), float(fmt.min_normal),
            float(fmt.max), bool(fmt.signed), bool(fmt.zero), bool(fmt.subnormals), fmt.specials == "fnuz")
    with serial_below(flat.size):
        if fmt.man > 52:
            bad, slow = 0, 1
        elif store:
            bad, slow = notice_first_use(FC.float_codes)(flat, flat.view(np.int64), *params, codes)
        else:   # validation only: the same tests without forming the codes
            m, _, _, emin, mn, mx, sg, z, sub, _ = params
            bad, slow = notice_first_use(FC.float_grid_check)(flat, flat.view(np.int64), m, emin, mn, mx, sg, z, sub)
        if slow:   # inf, NaN or float64 subnormals: the general pass decides
            if not store:
                codes = np.empty(flat.shape, dtype=np.int64)
            bad = notice_first_use(FC.float_codes_any)(flat, *params, codes)
    if bad:
        return None
    return codes.reshape(np.shape(values)) if store else True


def _float_params(fmt: Float, argument: str):
    if not isinstance(fmt, Float):
        raise InvalidType(f"{argument} must be a Float format here, got {fmt}")
    if fmt.radix != 2 or not fmt.signed or not fmt.zero:
        raise InvalidArgument(f"{argument} {fmt}: a float register here must be radix 2, signed and have a zero")
    if fmt.max >= _FLOAT64_SAFE:
        raise InvalidArgument(f"{argument} {fmt}: its range must stay below 2**1020 (float64 sums)")
    return fmt.man, fmt.emin, int(fmt.subnormals)


def _random_bits(fmt: Float, random_bits, argument):
    limit = max_random_bits(fmt)
    if random_bits is None:
        if limit < 1:
            raise InvalidArgument(f"{argument}: stochastic rounding to {fmt} ({fmt.man} mantissa bits) is not "
                             "supported: at most 49 mantissa bits")
        return limit
    r = int(random_bits)
    if not 1 <= r <= limit:
        raise InvalidArgument(f"{argument} random_bits must be in 1..{limit} for {fmt} (the adder resolves "
                         f"50 - man bits below the kept LSB exactly), got {random_bits!r}")
    return r


def _seed(seed):
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return check_int("seed", seed, lo=0, hi=2 ** 63 - 1)


def _float_overflow(fmt: Float, overflow: Overflow, argument: str) -> int:
    if overflow not in (Overflow.IEEE, Overflow.SATURATE, Overflow.ERROR):
        raise InvalidArgument(f"{argument} for a Float register must be ieee, saturate or error, "
                         f"got {overflow.name.lower()}")
    return float_overflow_code(fmt, overflow, "ml_dtypes")


_ORDER_CODES = {"sequential": FK.SEQUENTIAL, "tree": FK.TREE, "chunked": FK.CHUNKED}


def _register(fmt: Float, rounding, overflow: int, flush: bool, r: int, seed: int):
    return FK.float_reg(fmt.man, fmt.emin, fmt.subnormals, int(rounding), overflow, flush, r, seed, fmt.max,
                        fmt.min_normal)


def float_config(dp: Datapath) -> "FK.FloatConfig":
    """The kernel configuration (a ``FloatConfig``) of a datapath with a Float accumulator. Kept on the
    (frozen) Datapath object; a stochastic datapath without ``random_seed`` draws a fresh seed on every
    call, so its configuration is made anew each time."""
    cfg = dp.__dict__.get("_float_config")
    if cfg is not None:
        return cfg
    acc = dp.accumulator
    fmt = acc.fmt
    _float_params(fmt, "accumulator format")
    acc_ovf = _float_overflow(fmt, acc.overflow, "accumulator overflow")
    stochastic = acc.rounding == Rounding.STOCHASTIC
    acc_r = _random_bits(fmt, acc.random_bits, "accumulator") if stochastic else 1
    fp32_rne = (fmt == _BINARY32 and acc.rounding == Rounding.HALF_EVEN and
                acc_ovf == float_overflow_code(fmt, Overflow.IEEE, "ml_dtypes") and not acc.flush_subnormals)
    prod = None
    if dp.product is not None:
        if dp.fused:
            raise InvalidArgument(f"fused=True means the product is not rounded, but product={dp.product} was given; "
                             "drop one of them")
        _float_params(dp.product, "product format")
        prod_ovf = _float_overflow(dp.product, dp.product_overflow, "product_overflow")
        prod_r = 1
        if dp.product_rounding == Rounding.STOCHASTIC:
            stochastic = True
            prod_r = _random_bits(dp.product, dp.product_random_bits, "product")
        prod = (dp.product, dp.product_rounding, prod_ovf, prod_r)
    if dp.order.level_bits:
        raise InvalidArgument("order level_bits set register widths of a fixed-point adder tree; a Float "
                         "accumulator's tree uses its own format at every level")
    seed = _seed(dp.random_seed) if stochastic else 0
    acc_reg = _register(fmt, acc.rounding, acc_ovf, bool(acc.flush_subnormals), acc_r, seed)
    prod_reg = None
    if prod is not None:
        pfmt, prounding, povf, pr = prod
        prod_reg = _register(pfmt, prounding, povf, False, pr, seed)   # a product register never flushes
    cfg = FK.float_config(acc_reg, prod_reg, _ORDER_CODES[dp.order.kind], dp.order.lanes,
                          dp.order.combine != "sequential", fp32_rne)
    if not stochastic or dp.random_seed is not None:
        dp.__dict__["_float_config"] = cfg
    return cfg


def _bias_values(bias, fmt, shape):
    vals = np.asarray(bias, dtype=np.float64)
    try:
        fmt.encode(vals)
    except ValueError as exc:
        raise InvalidArgument(f"bias: {exc} (the bias register holds accumulator-format values)") from None
    try:
        return kernel_array(np.broadcast_to(vals, shape))
    except ValueError:
        raise InvalidArgument(f"bias of shape {vals.shape} does not broadcast to the output shape {shape}") from None


def _trace_list(trace, shape):
    return check_trace("trace", trace, shape)


def float_gemm(A, B, datapath: Datapath, *, bias=None, trace=None) -> GemmResult:
    """C = A @ B through a floating-point datapath, every addition rounded as the hardware rounds it.

    ``A`` (M, K), ``B`` (K, N): real values on the operand formats' grids. ``bias`` (N,) or (M, N) on the
    accumulator's grid. ``trace``: (i, j) or a list of them -> per-cycle register values in
    ``result.traces``. Returns a ``GemmResult``: ``values``/``acc`` are the accumulator values (float64),
    ``codes`` its bit patterns, ``overflow_count`` the additions per output that overflowed (went to
    inf/NaN or saturated). A Fixed accumulator (Kulisch) fills the integer fields as the integer engine.
    """
    if not isinstance(datapath, Datapath):
        raise InvalidType(f"datapath must be an fxsim Datapath, got {type(datapath).__name__}")
    dp = datapath
    acc_fmt = dp.accumulator.fmt
    flush = isinstance(acc_fmt, Float) and dp.accumulator.flush_subnormals
    Av = operand_values(A, dp.a, dp.a_zero_point, "A", flush)
    Bv = operand_values(B, dp.b, dp.b_zero_point, "B", flush)
    if Av.shape[1] != Bv.shape[0]:
        raise InvalidArgument(f"A is {Av.shape} and B is {Bv.shape}: inner dimensions must match")
    for fmt, name in ((dp.a, "a"), (dp.b, "b")):
        if isinstance(fmt, Float) and fmt.radix not in (2, 4):
            raise InvalidArgument(f"operand {name}: radix {fmt.radix} is not supported")
    _check_exact_products(dp.a, dp.b)
    M, K = Av.shape
    N = Bv.shape[1]
    traces = _trace_list(trace, (M, N))
    if isinstance(acc_fmt, Fixed):
        return _kulisch_gemm(Av, kernel_array(Bv.T), dp, bias, traces)
    if dp.output.fmt is not None or dp.output.requant is not None or dp.output.activation is not None:
        raise InvalidArgument("a Float accumulator's output stage is its own register: output format, requant and "
                         "activation are not modelled here; quantize result.values with fxsim.quantize")
    cfg = float_config(dp)
    init = np.zeros((M, N), dtype=np.float64)
    post_bias = None
    if bias is not None:
        b = _bias_values(bias, acc_fmt, (M, N))
        if flush:
            b = np.where(np.abs(b) < acc_fmt.min_normal, np.copysign(0.0, b), b)
        if dp.bias_preload:
            init = kernel_array(b)
        else:
            post_bias = kernel_array(b)
    acc = np.empty((M, N), dtype=np.float64)
    nov = np.zeros((M, N), dtype=np.int64)
    path = codes = None
    if M * N:
        path = choose_float_path(dp, bound=_useful_bound(dp, Av, Bv) if bias is None else None,
                                 has_bias=bias is not None)
        post = post_bias if post_bias is not None else init
        codes = _run_float_path(path, Av, Bv, init, post, post_bias is not None, cfg, acc, nov,
                                zero_init=bias is None or not dp.bias_preload)
    out = {}
    if traces:
        Bt = kernel_array(Bv.T)
        buf = np.empty(2 * K + 2 * dp.order.lanes + 4, dtype=np.float64)
        scratch_acc = np.empty((M, N), dtype=np.float64)
        scratch_nov = np.zeros((M, N), dtype=np.int64)
        for (i, j) in traces:
            n = output_kernel(cfg)(Av, Bt, init, init, False, *cfg, np.array([i], dtype=np.int64),
                                   np.array([j], dtype=np.int64), scratch_acc, scratch_nov, buf)
            out[(i, j)] = buf[:n].copy()
    if post_bias is not None:
        for key in out:
            out[key] = np.append(out[key], acc[key])
    if dp.accumulator.overflow == Overflow.ERROR and np.any(nov):
        first = np.argwhere(nov)[0]
        raise RegisterOverflow(f"{int(np.count_nonzero(nov))} output(s) overflowed the {acc_fmt} accumulator; "
                            f"first at {tuple(int(v) for v in first)}")
    if codes is None and path == "exact-blas" and acc_fmt == _BINARY32:
        # proved binary32 values (every partial sum exact in the format): their bit patterns are the codes
        codes = acc.astype(np.float32).view(np.uint32).astype(np.int64)
    if codes is None:
        codes = _codes(acc, acc_fmt)
    values = acc.copy()       # the register's values: one array for values and acc_values, as the integer engine's
    return GemmResult(values=values, codes=codes, acc=acc, overflow_count=nov, acc_values=values,
                      datapath=dp, traces=out, path=path)


def _codes(values, fmt: Float) -> np.ndarray:
    """Bit patterns of the register values; -1 where the format has no code for the value (a NaN
    produced from inf operands in a format without NaN)."""
    fast = fast_float_codes(values, fmt)
    if fast is not None:
        return fast
    nan = np.isnan(values)
    if fmt.has_nan or not np.any(nan):
        return fmt.encode(values).astype(np.int64)
    codes = fmt.encode(np.where(nan, 0.0, values)).astype(np.int64)
    return np.where(nan, -1, codes)


def _kulisch_gemm(Av, Bt, dp: Datapath, bias, traces) -> GemmResult:
    acc_fmt: Fixed = dp.accumulator.fmt
    if dp.product is not None:
        raise InvalidArgument("a Kulisch (Fixed) accumulator takes exact float products; product= is not supported")
    if acc_fmt.bits > 63:
        raise InvalidArgument(f"accumulator {acc_fmt}: a Kulisch accumulator here is at most 63 bits wide")
    M, K = Av.shape
    N = Bt.shape[0]
    pmax = _max_abs(dp.a) * _max_abs(dp.b) * (2.0 ** acc_fmt.frac)
    init = np.zeros((M, N), dtype=np.int64)
    out_bias = None
    if bias is not None:
        vals = _bias_values(bias, acc_fmt, (M, N))
        codes = np.ldexp(vals, acc_fmt.frac).astype(np.int64)
        if dp.bias_preload:
            init = codes
        else:
            bb = dp.output.bias_bits or acc_fmt.bits
            out_bias = codes
            if bb < acc_fmt.bits:
                Fixed(bb, acc_fmt.frac).encode(vals)
    imax = float(np.abs(init).max(initial=0))
    if not (K * (pmax + 1) + imax < 2.0 ** 62):
        raise InvalidArgument(f"aligned products of {dp.a} x {dp.b} reach {pmax:.3g} LSBs of {acc_fmt}; with K={K} the "
                         "exact partial sums leave int64: use fewer fractional bits or split K")
    icfg = np.zeros(IK.CFG_SIZE, dtype=np.int64)
    bits, signed = acc_fmt.bits, acc_fmt.signed
    sym = dp.accumulator.overflow == Overflow.SATURATE_SYMMETRIC
    lo, hi = IK._range(bits, signed, sym)
    icfg[IK.BITS], icfg[IK.SIGNED], icfg[IK.LO], icfg[IK.HI] = bits, int(signed), lo, hi
    icfg[IK.OVF] = int(dp.accumulator.overflow)
    icfg[IK.ORDER] = {"sequential": IK.SEQUENTIAL, "tree": IK.TREE, "chunked": IK.CHUNKED}[dp.order.kind]
    icfg[IK.LANES] = dp.order.lanes
    icfg[IK.COMBINE] = 0 if dp.order.combine == "sequential" else 1
    levels = np.asarray(dp.order.level_bits or (), dtype=np.int64)
    mode = int(dp.accumulator.rounding)
    if dp.accumulator.rounding == Rounding.STOCHASTIC:
        raise InvalidArgument("stochastic alignment of products into a Kulisch accumulator is not modelled")
    acc = np.empty((M, N), dtype=np.int64)
    nov = np.zeros((M, N), dtype=np.int64)
    mx = np.zeros((M, N), dtype=np.int64)
    mn = np.zeros((M, N), dtype=np.int64)
    exact = np.zeros((M, N), dtype=np.int64)
    if M * N:
        FK.kulisch_gemm_kernel(Av, Bt, init, acc_fmt.frac, mode, icfg, levels, acc, nov, mx, mn, exact)
    out = {}
    if traces:
        buf = np.empty(2 * K + 2 * dp.order.lanes + 4, dtype=np.int64)
        for (i, j) in traces:
            n = FK.kulisch_trace_one(Av[i], Bt[j], init[i, j], acc_fmt.frac, mode, icfg, levels, buf)
            out[(i, j)] = buf[:n].copy()
    codes, values = output_stage(acc, dp.output, acc_fmt, dp.accumulator.overflow, out_bias)
    return GemmResult(values=values, codes=codes, acc=acc, overflow_count=nov,
                      acc_values=np.ldexp(acc.astype(np.float64), -acc_fmt.frac), exact=exact,
                      max_partial=np.maximum(mx, -mn), bits_needed=bits_needed(mx, mn, signed),
                      datapath=dp, traces=out)


# --------------------------------------------------------------------------------------------------
# Choosing the kernel: fast paths proved equivalent to the reference arithmetic
# --------------------------------------------------------------------------------------------------
FLOAT_PATHS = ("exact-blas", "fp32-vector", "narrow-vector", "stochastic-vector", "general-vector")
_F32_MAX = float(np.finfo(np.float32).max)
_F32_GRID = 2.0 ** -149          # binary32's smallest subnormal
_BINARY32 = Float(8, 23)


def _operand_grid(fmt, zero_point: int):
    """(significand bits, grid, largest magnitude) of the values the multiplier sees: every value is an
    integer of at most that many bits times ``grid`` (a power of two). None when not radix 2."""
    if isinstance(fmt, Float):
        if fmt.radix != 2:
            return None
        return fmt.man + 1, 2.0 ** (fmt.emin - fmt.man), _max_abs(fmt)
    imax = max(abs(fmt.min_code - zero_point), abs(fmt.max_code - zero_point))
    return max(imax.bit_length(), 1), fmt.resolution, imax * fmt.resolution


def _product_grid(dp: Datapath):
    """(significand bits, grid, largest magnitude) of the exact products, or None."""
    ga = _operand_grid(dp.a, dp.a_zero_point)
    gb = _operand_grid(dp.b, dp.b_zero_point)
    if ga is None or gb is None:
        return None
    return ga[0] + gb[0], ga[1] * gb[1], ga[2] * gb[2], ga, gb


def _abs_sums(Av: np.ndarray, Bv: np.ndarray):
    """(max|a|, max_i sum_k |a_ik|, max|b|, max_j sum_k |b_kj|): one compiled pass over each operand
    (nan where it holds a NaN)."""
    amax, arow = notice_first_use(NORMS.abs_row_sums_max)(kernel_array(Av))
    bmax, bcol = notice_first_use(NORMS.abs_col_sums_max)(kernel_array(Bv))
    return amax, arow, bmax, bcol


def _bound_from_sums(amax, arow, bmax, bcol):
    bound = min(arow * bmax, amax * bcol) * (1.0 + 2.0 ** -20)
    return bound if np.isfinite(bound) else None


def sum_bound(Av: np.ndarray, Bv: np.ndarray):
    """An upper bound on |every partial sum of products| of every output, in any order: sum_k |a_ik b_kj|
    <= min(max_i sum_k |a_ik| * max|b|, max|a| * max_j sum_k |b_kj|), inflated by 2**-20 to cover the
    float64 rounding of the row sums (K < 2**20). None when not finite or K too large."""
    K = Av.shape[1]
    if K == 0:
        return 0.0
    if K >= 2 ** 20:
        return None
    return _bound_from_sums(*_abs_sums(Av, Bv))


def _useful_bound(dp: Datapath, Av: np.ndarray, Bv: np.ndarray):
    """``sum_bound(Av, Bv)`` where it can still prove the sums exact; None (no bound) where the largest
    product alone already reaches the exact-sum limit of ``choose_float_path`` (the bound is at least
    max|a| * max|b|, so it could not prove exactness there). The maxima come from the same pass as the
    row and column sums."""
    pg = _product_grid(dp) if dp.product is None else None
    K = Av.shape[1]
    if pg is None or Av.size == 0 or Bv.size == 0 or K >= 2 ** 20:
        return sum_bound(Av, Bv)
    amax, arow, bmax, bcol = _abs_sums(Av, Bv)
    if amax * bmax >= _exact_sum_limit(dp.accumulator.fmt, pg[1]):
        return None
    return _bound_from_sums(amax, arow, bmax, bcol)


def _exact_sum_limit(fmt: Float, L: float) -> float:
    """The exact-sum shortcut's limit: partial sums n * L with |n| < 2**(man + 1) are values of ``fmt``."""
    return 2.0 ** (fmt.man + 1) * L


def choose_float_path(dp: Datapath, *, bound=None, has_bias: bool = False) -> str:
    """The kernel ``float_gemm`` runs for a Float accumulator (all give the same bits):

    - ``"exact-blas"``: every partial sum is proved exact in the accumulator, so no addition rounds (any
      order, rounding mode or random bits) and one float64 matmul gives the bits. Conditions: exact
      products (no product format), no bias, the products are integers times ``L = grid_a * grid_b``,
      every nonzero multiple of L is representable (``L >= 2**(emin - man)`` with subnormals and no
      flushing, or ``L >= min_normal``), and ``bound`` (an upper bound on every |partial sum|, see
      ``sum_bound``) < ``2**(man + 1) * L`` and <= the format's max: then every partial sum is n * L with
      |n| < 2**(man+1), a value of the format, and (man + 1 <= 53, L >= 2**-1022) a float64 that BLAS
      computes exactly whatever its order or FMA use. A zero sum is +0 both ways (the register starts at
      +0 and x + (-x) is +0 in round-half-even).
    - ``"fp32-vector"``: accumulator binary32 (Float(8, 23)), half even, IEEE overflow (inf), no
      flushing, exact products, and every operand and product exactly a binary32 number (significand
      bits: a + b <= 24; grids >= 2**-149; magnitudes <= binary32's max). Then each correctly rounded
      addition acc + p is the CPU's binary32 addition fl32(acc + p).
    - ``"narrow-vector"``: accumulator radix 2 with p = man + 1 bits where ``24 >= 2p + 2`` (man <= 10:
      FP16, BF16, E5M2, ...), subnormals, emin >= -126, max <= binary32's max, half even, IEEE overflow
      (inf), no flushing, exact products of at most p significant bits on the grid 2**(emin - man) (so
      every addend -- register value or product -- is a p-bit number on the format's quantum, and a
      binary32 number). Then RN_p(fl32(x + y)) == RN_p(x + y) (Figueroa 1995: double rounding is
      innocuous for + when the intermediate precision q >= 2p + 2; q = 24). Below 2**emin the sum of two
      multiples of the quantum is exact in binary32, so only one rounding happens there; above, an
      exact sum that overflows binary32 also rounds beyond the format's max (emax <= 127), and the
      overflow is decided on the value rounded on an unbounded exponent as the reference does.
    - ``"stochastic-vector"``: stochastic rounding, IEEE overflow (inf), no flushing, exact products, a
      radix-2 accumulator with subnormals, products on the format's quantum G = 2**(emin - man), and
      ``2 * max(format max, largest product) < 2**53 * G`` (FP16 with 8-bit float products, not FP32 or
      BF16). Every addend (register, product, bias) is then a multiple of G of at most half that
      magnitude, so each sum is exact in float64, and a nonzero sum is >= G, a normal float64 whose kept
      LSB lies within its 53-bit significand, at least r bits above its last (r <= 50 - man): the
      rounding is an integer add of the same random bits (same seed, stream, counter) on the bit
      pattern and a truncation (``kernels.float_vec._sr_row``).
    - ``"general-vector"``: everything else: the reference's TwoSum + correct rounding per addition
      (every mode, stochastic bits from the same (seed, stream, counter)), a row of outputs at a time.

    In both vector fast paths an addition that overflows leaves inf (or NaN), which reaches the output,
    so outputs that end finite had no overflow; the others are recomputed by the reference kernel.
    """
    acc = dp.accumulator
    fmt = acc.fmt
    pg = _product_grid(dp) if dp.product is None else None
    if pg is None:
        return "general-vector"
    sig, L, pmax, ga, gb = pg
    flush = bool(acc.flush_subnormals)
    quantum = 2.0 ** (fmt.emin - fmt.man)
    if bound is not None and not has_bias:
        fine = (fmt.subnormals and not flush and L >= quantum) or L >= fmt.min_normal
        if fine and bound < _exact_sum_limit(fmt, L) and bound <= fmt.max:
            return "exact-blas"
    ieee = not flush and _float_overflow(fmt, acc.overflow, "accumulator overflow") == _OVF_INF
    if ieee and acc.rounding == Rounding.STOCHASTIC:
        if fmt.subnormals and L >= quantum and 2.0 * max(fmt.max, pmax) < 2.0 ** 53 * quantum:
            return "stochastic-vector"
        return "general-vector"
    if not (ieee and acc.rounding == Rounding.HALF_EVEN):
        return "general-vector"
    f32_ops = all(g[0] <= 24 and g[1] >= _F32_GRID and g[2] <= _F32_MAX for g in (ga, gb))
    if not (f32_ops and L >= _F32_GRID and pmax <= _F32_MAX):
        return "general-vector"
    if fmt == _BINARY32 and sig <= 24:
        return "fp32-vector"
    p = fmt.man + 1
    if (24 >= 2 * p + 2 and fmt.subnormals and fmt.emin >= -126 and fmt.max <= _F32_MAX and sig <= p
            and L >= quantum):
        return "narrow-vector"
    return "general-vector"




def output_kernel(cfg):
    """The per-output reference kernel of the datapath's order (``kernels.float_accum.outputs_*``)."""
    return notice_first_use(FK.OUTPUT_KERNELS[cfg.options.order])


_NO_TRACE = np.empty(1, dtype=np.float64)


def _run_float_path(path, Av, Bv, init, post, has_post, cfg, acc, nov, zero_init=False):
    """Execute the chosen path; every kernel is picked by order (and path) here, so a datapath compiles only
    the kernels it runs, each for one argument signature (float64 / float32 C arrays, int64 scalars).
    Returns the register codes where the path has them at hand (binary32 bit patterns), else None.
    ``zero_init``: the caller's word that ``init`` is all +0 (no preloaded bias)."""
    if path == "exact-blas":
        np.matmul(Av, Bv, out=acc)
        acc += 0.0                   # a zero sum is +0, as the register's
        return None
    with serial_below(acc.size * max(Av.shape[1], 1)):
        if path in ("fp32-vector", "narrow-vector"):
            sh = 23 - cfg.acc.man
            maxbits = np.float32(cfg.acc.max_finite).view(np.uint32) if sh else np.uint32(0x7F800000)
            A32, B32 = Av.astype(np.float32), Bv.astype(np.float32)
            i32 = np.zeros(init.shape, dtype=np.float32) if zero_init else init.astype(np.float32)
            p32 = i32 if post is init else post.astype(np.float32)
            out = np.empty(acc.shape, dtype=np.float32)
            if cfg.options.order == FK.SEQUENTIAL:
                kernel = FV.f32_seq if sh == 0 else FV.narrow_seq   # binary32 tiles, or rows rounded to the target
                notice_first_use(kernel)(A32, B32, i32, p32, has_post, np.int64(sh), maxbits, out)
            elif cfg.options.order == FK.CHUNKED:
                notice_first_use(FV.f32_chunked)(A32, B32, i32, p32, has_post, np.int64(sh), maxbits,
                                                 np.int64(cfg.options.lanes), cfg.options.tree_combine, out)
            else:
                notice_first_use(FV.f32_tree)(A32, B32, i32, p32, has_post, np.int64(sh), maxbits, out)
            acc[...] = out
            if not _recount_nonfinite(Av, Bv, init, post, has_post, cfg, acc, nov) and sh == 0:
                return out.view(np.uint32).astype(np.int64)   # binary32 codes are its bit patterns
            return None
        if path == "stochastic-vector":
            reg = cfg.acc
            args = (Av, Bv, init, post, has_post, np.int64(reg.seed), np.int64(reg.random_bits), np.int64(reg.man),
                    np.int64(reg.emin), np.array([reg.max_finite]).view(np.int64)[0])
            if cfg.options.order == FK.SEQUENTIAL:
                notice_first_use(FV.sr_seq)(*args, acc)
            elif cfg.options.order == FK.CHUNKED:
                notice_first_use(FV.sr_chunked)(*args, np.int64(cfg.options.lanes), cfg.options.tree_combine, acc)
            else:
                notice_first_use(FV.sr_tree)(*args, acc)
            _recount_nonfinite(Av, Bv, init, post, has_post, cfg, acc, nov)
            return None
        notice_first_use(FV.GEN_KERNELS[cfg.options.order])(Av, Bv, init, post, has_post, *cfg, acc, nov)


def _recount_nonfinite(Av, Bv, init, post, has_post, cfg, acc, nov) -> bool:
    """Outputs that ended inf or NaN: the reference kernel recomputes them with their overflow counts.
    Returns whether there were any."""
    bad = ~np.isfinite(acc)
    if bad.any():
        Bt = kernel_array(Bv.T)
        rows, cols = np.nonzero(bad)
        with serial_below(rows.size * max(Av.shape[1], 1)):
            output_kernel(cfg)(Av, Bt, init, post, has_post, *cfg, rows.astype(np.int64), cols.astype(np.int64),
                               acc, nov, _NO_TRACE)
        return True
    return False
