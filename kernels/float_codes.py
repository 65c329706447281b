"""Validating float64 values against a radix-2 float format and computing their bit patterns in one pass
(the fast path of ``fxsim.formats.Float.encode`` for finite values; anything it cannot vouch for is left
to ``encode``, which raises the user-facing error or handles inf and NaN)."""
import math

import numba as nb
import numpy as np


@nb.njit(cache=True, parallel=True)
def float_codes(x, man, exp, bias, emin, min_normal, max_finite, signed, zero, subnormals, fnuz, codes):
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
