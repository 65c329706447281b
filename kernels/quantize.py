"""Quantization kernels: round float64 values onto a fixed-point or radix-2 floating-point grid.

Inputs are decomposed exactly as x = M * 2**E (M a 53-bit integer) and rounded with the integer rounder
``kernels.rounding.shift_round``, so no step is computed inexactly in floating point.
"""
import math

import numba as nb
import numpy as np

from .random import random_bits
from .rounding import CEIL, FLOOR, HALF_EVEN, JAM, STOCHASTIC, TOWARD_ZERO, overflow, shift_round, wrap

# What a float format does with a finite value beyond its largest finite value.
OVF_INF = 0        # ±inf (IEEE formats)
OVF_NAN = 1        # NaN (formats with NaN but no inf: OCP E4M3 "fn", "fnuz", E8M0)
OVF_SATURATE = 2   # ±max finite (OCP "satfinite", formats without specials)
OVF_KEEP = 3       # leave the value on the unbounded grid (the caller counts/raises)


@nb.njit(cache=True, inline="always")
def _decompose(x):
    """x (finite, nonzero) -> (M, E) with x == M * 2**E exactly and |M| < 2**53."""
    m, e = math.frexp(x)
    return np.int64(m * 9007199254740992.0), e - 53


@nb.njit(cache=True)
def round_integer(M, s, mode, rnd, r):
    """Round M / 2**s (int64 M, any s >= 0) to an integer with ``mode``.

    For STOCHASTIC, ``rnd`` is an r-bit uniform integer (1 <= r <= 62) added r bits below the kept LSB
    before truncation (two's complement, as an LFSR-fed rounder does). Shifts beyond 62 are reduced
    exactly: for deterministic modes only the sign and non-zeroness of a value below 1/4 LSB matter; for
    STOCHASTIC floor((x + c*2**d)/2**s) == floor((floor(x/2**d) + c)/2**(s-d)).
    """
    if s <= 0:
        return M
    if mode == STOCHASTIC:
        if s > 62:
            d = s - 62
            M = M >> d if d < 63 else (np.int64(-1) if M < 0 else np.int64(0))
            s = 62
        add = rnd << (s - r) if r <= s else rnd >> (r - s)
        return shift_round(M, s, mode, add)
    if s > 60:
        if M == 0:
            return np.int64(0)
        M = np.int64(1) if M > 0 else np.int64(-1)
        s = 58
    return shift_round(M, s, mode, np.int64(0))


@nb.njit(cache=True)
def round_to_float(x, tail, man, emin, max_finite, subnormals, has_zero, mode, ovf, rnd, r):
    """Round the exact value x + tail to a radix-2 float format; returns the float64 result.

    Format as numbers: ``man`` mantissa bits, ``emin`` exponent of the smallest normal, ``max_finite``,
    ``subnormals`` (False: the gap below the smallest normal is one step of size 2**emin), ``has_zero``
    (False: E8M0-like, values below 2**emin become 2**emin). ``tail`` is 0 or an error-free residual with
    |tail| <= ulp(x)/2 (from TwoSum); it acts as a sticky bit, so x + tail rounds exactly as the exact
    value for every deterministic mode (for STOCHASTIC its weight is below 2**-53 of one step).
    Magnitudes are rounded sign-magnitude, as a floating-point significand rounder does: STOCHASTIC adds
    ``rnd`` (r random bits) below the kept LSB of |x|. The value is first rounded on an unbounded
    exponent grid and overflow is decided on the rounded value (as ml_dtypes does); ``ovf`` then gives
    inf / NaN / ±max / the unbounded value. Under OVF_INF and OVF_NAN, modes that round toward zero for
    that sign give ±max instead (IEEE 754 §7.4).
    """
    if x != x:
        return x
    if math.isinf(x):
        if ovf == OVF_INF or ovf == OVF_KEEP:
            return x
        if ovf == OVF_NAN:
            return math.copysign(np.nan, x)   # NaN keeps the sign (ml_dtypes writes 0xFF for -inf in E4M3)
        return max_finite if x > 0 else -max_finite
    if x == 0.0 and tail == 0.0:
        return x if has_zero else (2.0 ** emin)
    if x == 0.0:
        x, tail = tail, 0.0
    neg = x < 0
    M, E = _decompose(x)
    t = 0
    if tail > 0:
        t = 1
    elif tail < 0:
        t = -1
    # binade of the exact value (a power-of-two x with a tail toward zero lies in the binade below)
    e = E + 52
    if (M == 4503599627370496 or M == -4503599627370496) and ((t < 0 and not neg) or (t > 0 and neg)):
        e -= 1
    if e < emin:
        if not has_zero:
            return 2.0 ** emin
        qe = emin - man if subnormals else emin
    else:
        qe = e - man
    M4 = M * 4 + t
    s = qe - (E - 2)
    if s <= 2 and t == 0:
        return x
    if mode == STOCHASTIC:
        mag = M4 if M4 > 0 else -M4
        n = round_integer(mag, s, mode, rnd, r)
        if neg:
            n = -n
    else:
        n = round_integer(M4, s, mode, rnd, r)
    y = math.ldexp(float(n), qe)
    if n == 0 and neg:
        y = -0.0          # the sign bit survives underflow to zero
    if not has_zero and y == 0.0:
        y = 2.0 ** emin
    if abs(y) > max_finite and ovf != OVF_KEEP:
        if ovf == OVF_SATURATE:
            return -max_finite if neg else max_finite
        toward_zero = mode == TOWARD_ZERO or mode == JAM or (mode == FLOOR and not neg) or \
            (mode == CEIL and neg)
        if toward_zero:
            return -max_finite if neg else max_finite
        if ovf == OVF_NAN:
            return math.copysign(np.nan, x)
        return -np.inf if neg else np.inf
    return y


NAN_KEEP = 0            # NaN stays NaN
NAN_TO_ZERO = 1         # formats without NaN, ml_dtypes: NaN -> zero of the opposite sign
NAN_TO_MAX = 2          # formats without NaN, ONNX: NaN -> +max


@nb.njit(cache=True, parallel=True)
def quantize_float_array(x, out, man, emin, max_finite, subnormals, has_zero, mode, ovf, seed, r, nan_mode,
                         no_negative_zero, xbits, obits):
    """Round every element of float64 ``x`` into ``out`` (flattened views). ``nan_mode`` says what a NaN
    input becomes in a format without NaN; ``no_negative_zero`` (fnuz formats) turns -0 into +0.
    ``xbits``/``obits`` are uint64 views of ``x``/``out``: for HALF_EVEN and STOCHASTIC, on values in the
    target's normal range the significand is rounded on the bit pattern (add 2**(d-1) - 1 + LSB, or the
    random bits aligned r bits below the kept LSB, then clear d bits; a carry moves into the exponent as
    it should), which is exactly round_to_float's result there. Its STOCHASTIC step is
    floor((4|M| + a) / 2**(d+2)) for the float64 significand M (shift s = d + 2 with two guard bits) and
    a = rnd << (d + 2 - r), or rnd >> (r - d - 2) where r > d + 2; as 4|M| is a multiple of 4, this
    equals floor((|M| + floor(a / 4)) / 2**d) with floor(a / 4) = (rnd >> max(r - d, 0)) << max(d - r, 0).
    """
    n = x.size
    d = 52 - man
    half_m1 = np.uint64((1 << (d - 1)) - 1)
    keep = ~np.uint64((1 << d) - 1)
    low = 2.0 ** emin
    absmask = np.uint64(0x7FFFFFFFFFFFFFFF)
    bitwise = mode == HALF_EVEN or mode == STOCHASTIC
    lshift = np.uint64(max(d - r, 0))
    rshift = np.uint64(max(r - d, 0))
    if bitwise:
        # pass 1, branch-free (it vectorises): every element rounded on its bit pattern as if it were in
        # the normal range; pass 2 keeps those that are and redoes the others
        for i in nb.prange(n):
            u = xbits[i]
            mag = u & absmask
            if mode == STOCHASTIC:
                add = (np.uint64(random_bits(seed, 0, i, r)) >> rshift) << lshift
            else:
                # the kept significand's LSB: a mantissa bit, or the implicit 1 when man == 0 (ties round up)
                add = half_m1 + (np.uint64(1) if man == 0 else (mag >> np.uint64(d)) & np.uint64(1))
            obits[i] = (u & ~absmask) | ((mag + add) & keep)
    for i in nb.prange(n):
        v = x[i]
        if bitwise and abs(v) >= low and abs(v) <= 1.7976931348623157e308:
            y = out[i]
            if abs(y) > max_finite:
                if ovf == OVF_SATURATE:
                    out[i] = math.copysign(max_finite, v)
                elif ovf == OVF_NAN:
                    out[i] = math.copysign(np.nan, v)
                elif ovf == OVF_INF:
                    out[i] = math.copysign(np.inf, v)
            continue
        if v != v and nan_mode != NAN_KEEP:
            if nan_mode == NAN_TO_MAX:
                out[i] = max_finite
            else:
                out[i] = 0.0 if math.copysign(1.0, v) < 0 else -0.0
            continue
        rnd = np.int64(0)
        if mode == STOCHASTIC:
            rnd = random_bits(seed, 0, i, r)
        y = round_to_float(v, 0.0, man, emin, max_finite, subnormals, has_zero, mode, ovf, rnd, r)
        if no_negative_zero and y == 0.0:
            y = 0.0
        out[i] = y


@nb.njit(cache=True, parallel=True)
def quantize_fixed_array(x, codes, frac, bits, signed, lo, hi, mode, ovf_mode, seed, r, flags, values):
    """Round float64 ``x`` to integer codes of a ``bits``-wide fixed-point register with ``frac``
    fractional bits, then apply the overflow stage. ``flags[i]`` is set to 1 where the value overflowed
    (before the overflow stage), so the caller can count or raise. When ``values`` has the size of ``x``
    it also receives code * 2**-frac (exact for registers of at most 53 bits). ``codes`` and ``flags``
    may be empty arrays when the caller does not need them (fewer bytes written).

    Fast path: for half-even and the directed modes, y = x * 2**frac is exact when y is a normal number
    (a power-of-two scaling), and for |y| < 2**52 ``rint``/``floor``/``ceil``/``trunc`` of y are exact
    integers, equal to the integer rounder's result.
    """
    n = x.size
    want_values = values.size == n
    want_codes = codes.size == n
    want_flags = flags.size == n
    scale = math.ldexp(1.0, frac) if -1000 < frac < 1000 else 0.0
    inv_scale = math.ldexp(1.0, -frac) if -1000 < frac < 1000 else 0.0
    fast_mode = scale != 0.0 and (mode == HALF_EVEN or mode == FLOOR or mode == CEIL or mode == TOWARD_ZERO)
    for i in nb.prange(n):
        v = x[i]
        y = v * scale
        ay = abs(y)
        if fast_mode and ay < 4503599627370496.0 and (ay >= 2.2250738585072014e-308 or v == 0.0):
            if mode == HALF_EVEN:
                fq = np.rint(y)
            elif mode == FLOOR:
                fq = math.floor(y)
            elif mode == CEIL:
                fq = math.ceil(y)
            else:
                fq = math.trunc(y)
            q = np.int64(fq)
        elif v == 0.0:
            q = np.int64(0)
        else:
            M, E = _decompose(v)
            sh = E + frac
            rnd = np.int64(0)
            if mode == STOCHASTIC:
                rnd = random_bits(seed, 0, i, r)
            if sh >= 0 and sh > 10:
                # |v| * 2**frac >= 2**62: out of range for every register <= 64 bits except via wrap
                if want_flags:
                    flags[i] = 1
                if ovf_mode == 0:  # WRAP: the low bits of M << sh
                    if sh >= 64:
                        c = np.int64(0)
                    else:
                        c = np.int64(np.uint64(M) << np.uint64(sh))
                    c = wrap(c, bits, signed)
                elif ovf_mode == 3:
                    c = np.int64(0)
                elif ovf_mode == 2 and signed and v < 0:
                    c = -hi
                else:
                    c = hi if v > 0 else lo
                if want_codes:
                    codes[i] = c
                if want_values:
                    values[i] = float(c) * inv_scale if inv_scale != 0.0 else math.ldexp(float(c), -frac)
                continue
            elif sh >= 0:
                q = M << sh   # |M| < 2**53 and sh <= 10: fits int64
            else:
                q = round_integer(M, -sh, mode, rnd, r)
        if want_flags:
            flags[i] = 1 if (q < lo or q > hi) else 0
        c = overflow(q, lo, hi, bits, signed, ovf_mode)
        if want_codes:
            codes[i] = c
        if want_values:
            values[i] = float(c) * inv_scale if inv_scale != 0.0 else math.ldexp(float(c), -frac)
