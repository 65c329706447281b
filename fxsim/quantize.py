"""Quantization: map real values onto a format's grid with a rounding mode and an overflow mode.

``quantize`` returns float64 values on the grid (exact: every Float format here fits float64, and
Fixed formats up to 53 bits do; wider ones are answered by ``quantize_to_codes`` as integers).
"""
from __future__ import annotations

import numpy as np

from fxsim._kernels import quantize as _kq
from fxsim._kernels.random import fill_random_bits
from fxsim._kernels.threads import serial_below

from fxsim.errors import InvalidArgument, InvalidType
from fxsim.formats import ML_DTYPES_NAMES, NUMPY_DTYPE_NAMES, Fixed, Float, parse_format
from fxsim.modes import Overflow, Rounding
from fxsim.validate import as_array, check_bool, check_choice, check_int

__all__ = ["quantize", "quantize_to_codes", "operand_codes", "operand_codes_range", "CONVENTIONS", "RETURNS",
           "float_kernel_params", "to_dtype"]

#: What ``quantize`` can return: float64 values, integer codes, or an array of the format's own dtype.
RETURNS = ("values", "codes", "ml_dtypes")

#: Named conventions for float casts; each reproduces one library's behaviour on the corners.
CONVENTIONS = ("ml_dtypes", "torch", "ocp_saturate", "onnx")

_MAX_RANDOM_BITS = 62


def _random_bits_arg(random_bits):
    if random_bits is None:
        return _MAX_RANDOM_BITS
    return check_int("random_bits", random_bits, lo=1, hi=_MAX_RANDOM_BITS, allow_none=True)


def _seed_arg(seed, rounding):
    if rounding != Rounding.STOCHASTIC:
        return 0
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return check_int("seed", seed, lo=0, hi=2 ** 63 - 1, allow_none=True)


def _as_float64(x, argument="x"):
    """``x`` (NumPy array, anything with ``__array__`` or DLPack, scalar) as float64 of the same shape
    (0-d for a scalar); integers beyond 2**53 in magnitude, which float64 would round, are refused."""
    a = as_array(argument, x)
    if a.dtype.kind in "iu" and a.dtype.itemsize == 8 and a.size:
        # compare as integers: 2**53 + 1 converted to float64 first would read as 2**53 and pass
        if a.dtype.kind == "i":
            big = (a > (1 << 53)) | (a < -(1 << 53))
        else:
            big = a > np.uint64(1 << 53)
        if np.any(big):
            i = int(np.flatnonzero(big.ravel())[0])
            raise InvalidArgument(f"{argument} holds the 64-bit integer {int(a.ravel()[i])} (flat index {i}), beyond "
                                  "2**53 where float64 cannot hold every integer exactly; pass it as codes to "
                                  "the integer datapath instead")
    out = np.asarray(a, dtype=np.float64, order="C")
    # a read-only array would be a second kernel signature (compiled again on first use): copy it
    return out if out.flags.writeable else out.copy()


def _like_input(result, x_shape):
    """A result of the input's shape; a 0-d input gives a NumPy scalar, as NumPy's functions do."""
    result = result.reshape(x_shape)
    return result[()] if result.ndim == 0 else result


def _smallest_int_dtype(bits, signed):
    for width in (8, 16, 32, 64):
        if bits <= width:
            return np.dtype(f"{'' if signed else 'u'}int{width}")
    raise InvalidArgument(f"no integer dtype holds {bits} bits")


def to_dtype(fmt):
    """The NumPy or ml_dtypes dtype whose values are exactly ``fmt``'s (``int8`` -> ``np.int8``, ``e4m3`` ->
    ``ml_dtypes.float8_e4m3fn``, ...); raises for formats that have none (fixed point with fraction bits,
    custom minifloats)."""
    fmt = parse_format(fmt)
    for name, key in list(ML_DTYPES_NAMES.items()) + list(NUMPY_DTYPE_NAMES.items()):
        if parse_format(key) == fmt:
            if name in NUMPY_DTYPE_NAMES:
                return np.dtype(name)
            import ml_dtypes
            return np.dtype(getattr(ml_dtypes, name))
    raise InvalidArgument(f"{fmt} has no NumPy or ml_dtypes dtype; formats with one: "
                          f"{', '.join(sorted(set(ML_DTYPES_NAMES) | set(NUMPY_DTYPE_NAMES)))}. "
                          "Use returns='values' or returns='codes'")


def _codes_of_values(values, fmt):
    """Integer codes of on-grid float64 values: a Float's bit patterns (unsigned, the narrowest of uint8..64),
    a Fixed format's stored integers (the narrowest int8..int64 / uint8..uint64)."""
    if isinstance(fmt, Float):
        return fmt.encode(values).astype(_smallest_int_dtype(fmt.bits, False))
    ints = np.ldexp(values, fmt.frac).astype(np.int64)
    return ints.astype(_smallest_int_dtype(fmt.bits, fmt.signed))


def _as_returned(values, codes, fmt, returns, shape):
    """Package a result as ``returns`` asks (see ``quantize``)."""
    if returns == "values":
        return _like_input(values, shape)
    if returns == "codes":
        if codes is None:
            codes = _codes_of_values(values, fmt)
        else:
            codes = codes.astype(_smallest_int_dtype(fmt.bits, fmt.signed))
        return _like_input(codes, shape)
    dt = to_dtype(fmt)
    if isinstance(fmt, Float):
        # the bit patterns viewed as the dtype (4- and 6-bit types sit in the low bits of a byte, as
        # ml_dtypes stores them): no second rounding anywhere
        pat = fmt.encode(values).astype(np.dtype(f"uint{dt.itemsize * 8}"))
        return _like_input(pat.view(dt), shape)
    ints = codes if codes is not None else np.ldexp(values, fmt.frac).astype(np.int64)
    return _like_input(ints.astype(dt), shape)


def float_kernel_params(fmt: Float):
    """The numbers ``kernels.quantize.round_to_float`` takes for ``fmt`` (man, emin, max, subnormals, zero)."""
    if fmt.radix != 2:
        raise InvalidArgument(f"{fmt}: only radix-2 formats have a rounding kernel")
    return fmt.man, fmt.emin, fmt.max, fmt.subnormals, fmt.zero


def float_overflow_code(fmt: Float, overflow: Overflow, convention: str) -> int:
    """Kernel overflow behaviour for finite values beyond ``fmt.max``."""
    if overflow == Overflow.SATURATE:
        return _kq.OVF_SATURATE
    if overflow == Overflow.ERROR:
        return _kq.OVF_KEEP
    if overflow != Overflow.IEEE:
        raise InvalidArgument(f"overflow for a Float format must be ieee, saturate or error, got {overflow.name.lower()}")
    if fmt.specials == "ieee":
        return _kq.OVF_INF
    if fmt.specials == "none":
        return _kq.OVF_SATURATE
    if convention == "torch" and fmt.specials == "fn":
        return _kq.OVF_SATURATE
    return _kq.OVF_NAN


def quantize(x, fmt, *, rounding=None, overflow=None, seed=None, random_bits=None,
             convention="ml_dtypes", via_float32=False, returns="values"):
    """Round ``x`` onto ``fmt``'s grid; returns an array of the same shape (a NumPy scalar for a scalar).

    - ``x``: a NumPy array, a scalar, a list, or anything with ``__array__`` or DLPack (PyTorch, JAX);
      the result is NumPy.
    - ``fmt``: a format, a format name, or a dtype (``np.int8``, ``ml_dtypes.float8_e4m3fn``).
    - ``returns``: ``"values"`` (default: float64 values), ``"codes"`` (integers: a Float format's bit
      patterns, unsigned, in the narrowest of uint8..uint64; a Fixed format's stored integers in the
      narrowest of int8..int64 or uint8..uint64), or ``"ml_dtypes"`` (an array of the format's own NumPy
      or ml_dtypes dtype, e.g. ``float8_e4m3fn``; formats without one raise).

    - ``rounding``: a ``Rounding`` or alias; default the format's own mode (ap_fixed/fixdt strings carry
      one), else half-even.
    - ``overflow``: Fixed: wrap, saturate (default), saturate_symmetric, saturate_zero, error.
      Float: ieee (default: inf, or NaN for formats without inf, saturation for formats without
      specials — as ml_dtypes), saturate (OCP satfinite), error.
    - ``seed`` / ``random_bits``: stochastic rounding. With ``random_bits=r`` an r-bit uniform integer is
      added below the kept LSB before truncation (the hardware model); without it the probability of
      rounding up equals the discarded fraction (62 random bits: exact whenever at most 62 bits are
      discarded). The same seed gives the same result.
    - ``convention`` (floats): "ml_dtypes" (default), "torch" (E4M3 saturates finite overflow and ±inf),
      "ocp_saturate" (everything saturates), "onnx" (NaN becomes +max in formats without NaN).
    - ``via_float32``: round through float32 first, reproducing the double rounding of float64 arrays by
      torch and by ml_dtypes before 0.7, bit for bit.
    """
    fmt = parse_format(fmt)
    returns = check_choice("returns", returns, RETURNS)
    via_float32 = check_bool("via_float32", via_float32)
    if isinstance(fmt, Fixed):
        xa = _as_float64(x)
        if via_float32:
            xa = xa.astype(np.float32).astype(np.float64)
        codes, values = _quantize_fixed(xa, fmt, rounding, overflow, seed, random_bits,
                                        want_values=returns == "values")
        if returns != "values":
            return _as_returned(None, codes, fmt, returns, xa.shape)
        if values is None:
            big = np.abs(codes) > (1 << 53)
            if np.any(big):
                raise InvalidArgument(f"{fmt}: results wider than 53 bits have no exact float64 value; "
                                      "use returns='codes' or quantize_to_codes()")
            values = np.ldexp(codes.astype(np.float64), -fmt.frac)
        return _like_input(values, xa.shape)
    check_choice("convention", convention, CONVENTIONS)
    rounding = Rounding.HALF_EVEN if rounding is None else Rounding.parse(rounding, argument="rounding")
    if overflow is None:
        overflow = Overflow.SATURATE if convention == "ocp_saturate" else Overflow.IEEE
    overflow = Overflow.parse(overflow, argument="overflow")
    r = _random_bits_arg(random_bits)
    seed_i = _seed_arg(seed, rounding)
    xa = _as_float64(x)
    if via_float32:
        xa = xa.astype(np.float32).astype(np.float64)
    ovf = float_overflow_code(fmt, overflow, convention)
    flat = xa.ravel()
    if fmt.radix == 2:
        out = np.empty_like(flat)
        man, emin, mx, sub, zero = float_kernel_params(fmt)
        nan_mode = _kq.NAN_KEEP if fmt.has_nan else (_kq.NAN_TO_MAX if convention == "onnx" else _kq.NAN_TO_ZERO)
        with serial_below(flat.size):
            _kq.quantize_float_array(flat, out, man, emin, mx, sub, zero, int(rounding), ovf, seed_i, r, nan_mode,
                                     fmt.specials == "fnuz", flat.view(np.uint64), out.view(np.uint64))
        if not fmt.signed:
            out = _float_specials(flat, out, fmt, overflow, convention)
    else:
        out = _quantize_sparse_grid(flat, fmt, rounding, ovf, seed_i, r)
        out = _float_specials(flat, out, fmt, overflow, convention)
    if overflow == Overflow.ERROR:
        # finite values beyond the range, and infinities the format cannot hold (they would otherwise
        # saturate or become NaN as in the ieee mode)
        bad = (np.isfinite(flat) & (np.abs(out) > fmt.max)) | (np.isinf(flat) & (not fmt.has_inf))
        _raise_overflow(bad, fmt)
    return _as_returned(out, None, fmt, returns, xa.shape)


def _float_specials(x, out, fmt: Float, overflow, convention):
    """Inputs and results the grid does not cover: NaN, ±inf, zero/negatives in unsigned formats."""
    nan_in = np.isnan(x)
    inf_in = np.isinf(x)
    if fmt.specials == "none":
        if np.any(nan_in):
            # ml_dtypes: NaN of either sign -> zero of the opposite sign; ONNX: +max
            sign_neg = np.signbit(x)
            repl = np.where(sign_neg, 0.0, -0.0) if convention != "onnx" else fmt.max
            out = np.where(nan_in, repl, out)
        if np.any(inf_in):
            out = np.where(inf_in, np.where(x > 0, fmt.max, fmt.min if fmt.signed else fmt.max), out)
    elif overflow == Overflow.SATURATE or convention == "ocp_saturate" or \
            (convention == "torch" and fmt.specials == "fn"):
        out = np.where(inf_in, np.copysign(fmt.max, x), out)
    if not fmt.signed:
        # unsigned scale formats (E8M0): zero (when it has none) and negatives have no code -> NaN
        invalid = (x < 0) | ((x == 0) & (not fmt.zero)) | nan_in | inf_in
        if fmt.has_nan:
            out = np.where(invalid, np.nan, out)
        else:
            out = np.where(x < 0, 0.0, out)
    if fmt.specials == "fnuz":
        out = np.where(out == 0, 0.0, out)  # no negative zero
    return out


def _quantize_sparse_grid(x, fmt: Float, rounding, ovf, seed, r):
    """Rounding onto a grid that is not uniform within a binade (radix 4): between the two neighbouring
    levels lo < |x| < hi, decided by exact comparisons (|x|/lo and |x|/hi are exact power-of-two scalings).
    """
    levels = fmt.values()
    levels = np.abs(levels[np.isfinite(levels) & (levels >= 0)])   # values() may list zero as -0.0
    a = np.abs(x)
    neg = np.signbit(x)
    idx = np.clip(np.searchsorted(levels, a, side="right") - 1, 0, len(levels) - 1)
    lo = levels[idx]
    hi = levels[np.minimum(idx + 1, len(levels) - 1)]
    beyond = a > levels[-1]
    hi = np.where(beyond, lo * fmt.radix, hi)   # the unbounded grid continues one level up
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):   # the branch not taken may overflow
        num = np.where(lo > 0, a / np.where(lo > 0, lo, 1.0) - 1.0, a / hi)   # exact
        den = np.where(lo > 0, hi / np.where(lo > 0, lo, 1.0) - 1.0, 1.0)     # 3 for radix 4, 1 below min
    exact = num == 0
    with np.errstate(over="ignore"):   # 2 * num may overflow to inf for huge |x|: still "above half"
        tie = 2 * num == den
        above_half = 2 * num > den
    lo_code_even = (idx % 2) == 0
    mag_up = np.zeros(a.shape, dtype=bool)
    R = Rounding
    if rounding == R.STOCHASTIC:
        rnd = np.empty(a.shape, dtype=np.int64)
        fill_random_bits(seed, 0, r, rnd)
        # up iff rnd * den < num * 2**r, compared exactly as unsigned integers (a float64 product of a
        # 62-bit rnd would round): rnd * den < 3 * 2**62 fits uint64, and ceil(num * 2**r) is capped at
        # 2**64 - 2048 (beyond the largest left side; NaN/inf inputs are replaced below)
        with np.errstate(over="ignore"):
            bound = np.fmin(np.ceil(np.ldexp(num, r)), 18446744073709549568.0).astype(np.uint64)
        mag_up = rnd.astype(np.uint64) * den.astype(np.uint64) < bound
    elif rounding in (R.HALF_EVEN, R.HALF_ODD, R.HALF_UP, R.HALF_DOWN, R.HALF_AWAY, R.HALF_TOWARD_ZERO):
        tie_up = {R.HALF_EVEN: ~lo_code_even, R.HALF_ODD: lo_code_even, R.HALF_AWAY: True,
                  R.HALF_TOWARD_ZERO: False, R.HALF_UP: ~neg, R.HALF_DOWN: neg}[rounding]
        mag_up = above_half | (tie & tie_up)
    elif rounding in (R.AWAY_FROM_ZERO, R.JAM):
        mag_up = ~exact if rounding == R.AWAY_FROM_ZERO else (~exact & lo_code_even)
    elif rounding == R.CEIL:
        mag_up = ~exact & ~neg
    elif rounding == R.FLOOR:
        mag_up = ~exact & neg
    mag = np.where(mag_up & ~exact, hi, lo)
    # the unbounded grid continues max*radix, max*radix**2, ...: from max*radix on, every mode (toward
    # zero too) rounds beyond the range, which the one extra level above cannot show; keep |x| there so
    # that overflow is seen (and raised under overflow="error", as on radix-2 grids)
    mag = np.where(a >= levels[-1] * fmt.radix, a, mag)
    res = np.where(neg, -mag, mag)
    over = np.abs(res) > fmt.max
    if np.any(over) and ovf != _kq.OVF_KEEP:
        toward_zero = (rounding in (R.TOWARD_ZERO, R.JAM)) | ((rounding == R.FLOOR) & ~neg) | \
            ((rounding == R.CEIL) & neg)
        sat = np.copysign(fmt.max, x)
        if ovf == _kq.OVF_SATURATE:
            repl = sat
        else:
            special = np.nan if ovf == _kq.OVF_NAN else np.copysign(np.inf, x)
            repl = np.where(toward_zero, sat, special)
        res = np.where(over, repl, res)
    return np.where(np.isnan(x), np.nan, res)


def quantize_to_codes(x, fmt, *, rounding=None, overflow=None, seed=None, random_bits=None) -> np.ndarray:
    """Round ``x`` to a Fixed format and return the stored integers (int64, exact for any width <= 64),
    of ``x``'s shape (an int64 scalar for a scalar).

    ``x`` may hold float16/32/64 or integers (integers up to 2**53 in magnitude; larger ones raise
    rather than being rounded by float64). NaN and inf have no fixed-point code and raise.
    """
    fmt = parse_format(fmt)
    if not isinstance(fmt, Fixed):
        raise InvalidType(f"quantize_to_codes needs a Fixed format, got {fmt}; use quantize() or fmt.encode()")
    xa = _as_float64(x)
    return _like_input(_quantize_fixed(xa, fmt, rounding, overflow, seed, random_bits, want_values=False)[0],
                       xa.shape)


def _quantize_fixed(x, fmt: Fixed, rounding, overflow, seed, random_bits, *, want_values):
    """(int64 codes, float64 values or None) of ``x`` rounded to ``fmt``, in one pass over the data."""
    if rounding is None:
        rounding = fmt.rounding if fmt.rounding is not None else Rounding.HALF_EVEN
    rounding = Rounding.parse(rounding, argument="rounding")
    if overflow is None:
        overflow = fmt.overflow if fmt.overflow is not None else Overflow.SATURATE
    overflow = Overflow.parse(overflow, argument="overflow")
    if overflow == Overflow.IEEE:
        raise InvalidArgument("overflow for a Fixed format must be wrap, saturate, saturate_symmetric, "
                         "saturate_zero or error, got ieee")
    if not fmt.signed and fmt.bits == 64:
        raise InvalidArgument("unsigned 64-bit formats do not fit the int64 kernels; use 63 bits or fewer")
    xa = _as_float64(x)
    flat = xa.ravel()
    if flat.size and not (np.isfinite(flat.max()) and np.isfinite(flat.min())):   # NaN propagates through both
        i = int(np.flatnonzero(~np.isfinite(flat))[0])
        raise InvalidArgument(f"{fmt} has no code for {float(flat[i])!r} (index {i}); NaN and inf cannot be quantized "
                         "to fixed point")
    r = _random_bits_arg(random_bits)
    seed_i = _seed_arg(seed, rounding)
    n = flat.size
    values_only = want_values and fmt.bits <= 53   # every code is then an exact float64 value
    codes = np.empty(0 if values_only else n, dtype=np.int64)
    flags = np.empty(n if overflow == Overflow.ERROR else 0, dtype=np.uint8)
    values = np.empty(n if values_only else 0, dtype=np.float64)
    with serial_below(n):
        _kq.quantize_fixed_array(flat, codes, fmt.frac, fmt.bits, fmt.signed, fmt.min_code, fmt.max_code,
                                 int(rounding), int(overflow), seed_i, r, flags, values)
    if overflow == Overflow.ERROR:
        _raise_overflow(flags.astype(bool), fmt)
    if values_only:
        return None, values.reshape(xa.shape)
    return codes.reshape(xa.shape), None


def _raise_overflow(mask, fmt):
    n = int(np.count_nonzero(mask))
    if n:
        first = int(np.flatnonzero(mask)[0])
        raise OverflowError(f"{n} element(s) overflow {fmt} (range [{fmt.min}, {fmt.max}]); "
                            f"first at flat index {first}")


def operand_codes(x, fmt: Fixed, argument: str) -> np.ndarray:
    """Real values already on ``fmt``'s grid -> int64 codes, exactly (a clear error naming the first element
    that is off the grid or out of range, instead of rounding it: operands of a datapath are codes)."""
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
    v = arr.astype(np.float64, copy=False)
    scaled = np.ldexp(v, fmt.frac) if fmt.frac else v   # ldexp by 0 is the identity
    if scaled.size:
        # the common case in a few passes: every value in range (which NaN fails) and an integer; anything
        # else takes the element-by-element checks below, which name the first offending element
        lo_f, hi_f = float(scaled.min()), float(scaled.max())
        if (lo_f >= float(fmt.min_code) and hi_f <= float(fmt.max_code) and -2.0 ** 63 < lo_f
                and hi_f < 2.0 ** 63):
            codes = scaled.astype(np.int64)
            if bool((codes == scaled).all()):
                return codes, int(lo_f), int(hi_f)
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
