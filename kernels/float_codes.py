"""Validating float64 values against a radix-2 float format and computing their bit patterns in one pass
(the fast path of ``fxsim.formats.Float.encode`` for finite values; anything it cannot vouch for is left
to ``encode``, which raises the user-facing error or handles inf and NaN)."""
import math

import numba as nb
import numpy as np


@nb.njit(cache=True, parallel=True)
def float_codes(x, xbits, man, exp, bias, emin, min_normal, max_finite, signed, zero, subnormals, fnuz, codes):
    """``float_codes_any`` for formats with ``man <= 52`` on the values that are zero or normal float64
    numbers, in straight-line integer arithmetic the compiler vectorises (``xbits`` is ``x`` viewed as
    int64). Returns (bad, slow): how many values are not representable (as ``float_codes_any`` counts
    them) and how many are inf, NaN or float64 subnormals, whose codes this kernel leaves undefined (the
    caller then runs ``float_codes_any``). An empty ``codes`` validates only (nothing stored)."""
    n = x.shape[0]
    store = codes.shape[0] == n
    bad = 0
    slow = 0
    sign_shift = exp + man
    low52 = np.int64(0xFFFFFFFFFFFFF)
    for i in nb.prange(n):
        bits = xbits[i]
        ebits = (bits >> 52) & 0x7FF
        mant = bits & low52
        neg = bits < 0
        is_zero = (ebits == 0) & (mant == 0)
        # a = sig * 2**(e - 52); on the grid when the low 52 - man + (e_unb - e) bits of sig are zero
        e = ebits - 1023
        sig = mant | (np.int64(1) << 52)
        e_unb = max(e, emin)
        s = min(52 - man + (e_unb - e), 63)
        normal = abs(x[i]) >= min_normal
        on_grid = (s <= 52) & ((sig & ((np.int64(1) << s) - 1)) == 0)
        mi = (sig >> min(s, 52)) - (np.int64(normal) << man)
        e_field = (e_unb + bias) if normal else 0
        code = (np.int64(e_field) << man) | mi
        bad_v = (not on_grid) | (abs(x[i]) > max_finite) | ((not subnormals) & (not normal)) | (neg & (not signed))
        bad_v = (bad_v & (not is_zero)) | (is_zero & (not zero))
        code = 0 if is_zero else code
        code |= np.int64(signed & neg & (not (fnuz & is_zero))) << sign_shift
        bad += bad_v
        slow += (ebits == 0x7FF) | ((ebits == 0) & (mant != 0))
        if store:
            codes[i] = code
    return bad, slow


@nb.njit(cache=True, parallel=True)
def float_codes_any(x, man, exp, bias, emin, min_normal, max_finite, signed, zero, subnormals, fnuz, codes):
    """codes[i] = the bit pattern of x[i] (flat float64) in the format; returns how many values are not
    finite representable values (their codes are left undefined: the caller falls back to ``encode``).
    A finite value is representable when |x| <= max_finite, it is a multiple of 2**(max(e, emin) - man)
    (e = floor(log2 |x|)), and it is not negative (unsigned formats), zero (formats without zero) or a
    nonzero value below the smallest normal (formats without subnormals)."""
    n = x.shape[0]
    bad = 0
    sign_shift = exp + man
    for i in nb.prange(n):
        v = x[i]
        if not (v - v == 0.0):
            bad += 1
            continue
        a = abs(v)
        neg = math.copysign(1.0, v) < 0.0
        if a == 0.0:
            code = np.int64(0)
            if not zero:
                bad += 1
        elif man <= 52 and a >= 2.2250738585072014e-308:
            # a normal float64: its significand bits sig (53 bits, the leading one included) and exponent
            # e (a = sig * 2**(e - 52)); a is a multiple of 2**(e_unb - man) exactly when the low
            # s = 52 - man + (e_unb - e) bits of sig are zero (s > 52 never: sig's leading bit is set)
            bits = np.int64(np.float64(a).view(np.int64))
            e = np.int64((bits >> 52) - 1023)
            sig = (bits & np.int64(0xFFFFFFFFFFFFF)) | (np.int64(1) << 52)
            e_unb = max(e, emin)
            s = 52 - man + (e_unb - e)
            normal = a >= min_normal
            on_grid = s <= 52 and (sig & ((np.int64(1) << min(s, 52)) - 1)) == 0
            mi = sig >> min(s, 52)
            if normal:
                mi -= np.int64(1) << man
            e_field = (e_unb + bias) if normal else 0
            code = (np.int64(e_field) << man) | mi
            if not on_grid or a > max_finite or (not subnormals and not normal) or (neg and not signed):
                bad += 1
        else:
            m, ex = math.frexp(a)
            e_unb = max(ex - 1, emin)
            mf = math.ldexp(a, man - e_unb)
            normal = a >= min_normal
            if normal:
                mf -= float(np.int64(1) << man)
            mi = np.int64(mf)
            e_field = (e_unb + bias) if normal else 0
            code = (np.int64(e_field) << man) | mi
            if (a > max_finite or float(mi) != mf or mi < 0 or (not subnormals and not normal)
                    or (neg and not signed)):
                bad += 1
        if signed and neg:
            code |= np.int64(1) << sign_shift
        if fnuz and a == 0.0:
            code = np.int64(0)
        codes[i] = code
    return bad


@nb.njit(cache=True)
def on_fixed_grid(x, scale, lo, hi):
    """True when every x[i] * scale is an integer in [lo, hi] (one pass, no branch in the loop; NaN and
    infinities fail). The caller proves each product exact (scale a power of two, codes below 2**53)."""
    ok = True
    for i in range(x.size):
        c = x[i] * scale
        ok &= (c == math.floor(c)) & (c >= lo) & (c <= hi)
    return ok


@nb.njit(cache=True, nogil=True)
def float_grid_check(x, xbits, man, emin, min_normal, max_finite, signed, zero, subnormals):
    """``float_codes`` without the codes: (bad, slow) for flat float64 ``x`` (``xbits`` its int64 view)
    against a radix-2 format with ``man <= 52``, the same tests in fewer operations (a validation pass
    over GEMM operands that stores nothing). A nonzero normal float64 a = sig * 2**(e - 52) is a value of
    the format when the low 52 - man + max(emin - e, 0) bits of sig are zero, |a| <= max_finite, and it is
    not negative in an unsigned format nor below the smallest normal without subnormals; zero needs a
    format with a zero. ``slow`` counts inf, NaN and float64 subnormals (left to ``float_codes_any``).
    Serial: it compiles in a fifth of the parallel loop's time (0.2 s against 1.0 s, on the first float
    GEMM of a process) and checks a 512x512 operand in 0.3 ms."""
    n = x.shape[0]
    bad = 0
    slow = 0
    low52 = np.int64(0xFFFFFFFFFFFFF)
    for i in range(n):
        bits = xbits[i]
        ebits = (bits >> 52) & 0x7FF
        mant = bits & low52
        is_zero = (ebits == 0) & (mant == 0)
        e = ebits - 1023
        s = min(52 - man + max(emin - e, 0), 63)
        a = abs(x[i])
        on_grid = (s <= 52) & ((mant & ((np.int64(1) << s) - 1)) == 0)
        bad_v = (not on_grid) | (a > max_finite) | ((not subnormals) & (a < min_normal)) | ((bits < 0) & (not signed))
        bad += (bad_v & (not is_zero)) | (is_zero & (not zero))
        slow += (ebits == 0x7FF) | ((ebits == 0) & (mant != 0))
    return bad, slow
