"""Plain-Python references for rounding and quantization: Fractions and Python ints, no NumPy maths.

These state each mode's definition literally; the kernels answer to them.
"""
from fractions import Fraction
import math

from fxsim.modes import Overflow, Rounding


def round_fraction(q: Fraction, mode: Rounding, *, rnd: int = 0, r: int = 62, magnitude: bool = False) -> int:
    """Round the rational ``q`` to an integer.

    STOCHASTIC: an r-bit integer ``rnd`` is added r bits below the LSB, then floor. With ``magnitude``
    that happens on |q| and the sign is put back (a float significand rounder).
    """
    if mode == Rounding.STOCHASTIC and magnitude:
        n = round_fraction(abs(q), mode, rnd=rnd, r=r)
        return -n if q < 0 else n
    fl = math.floor(q)
    f = q - fl
    half = Fraction(1, 2)
    if f == 0:
        return fl
    if mode == Rounding.FLOOR:
        return fl
    if mode == Rounding.CEIL:
        return fl + 1
    if mode == Rounding.TOWARD_ZERO:
        return fl + 1 if q < 0 else fl
    if mode == Rounding.AWAY_FROM_ZERO:
        return fl if q < 0 else fl + 1
    if mode == Rounding.JAM:
        return fl | 1
    if mode == Rounding.STOCHASTIC:
        return math.floor(q + Fraction(rnd, 2 ** r))
    if f != half:
        return fl + 1 if f > half else fl
    tie_up = {Rounding.HALF_UP: True, Rounding.HALF_DOWN: False, Rounding.HALF_AWAY: q > 0,
              Rounding.HALF_TOWARD_ZERO: q < 0, Rounding.HALF_EVEN: fl % 2 == 1,
              Rounding.HALF_ODD: fl % 2 == 0}[mode]
    return fl + 1 if tie_up else fl


def overflow_int(n: int, bits: int, signed: bool, mode: Overflow) -> int:
    lo = -(1 << (bits - 1)) if signed else 0
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    if mode == Overflow.SATURATE_SYMMETRIC and signed:
        lo = -hi
    if lo <= n <= hi:
        return n
    if mode == Overflow.WRAP:
        n %= 1 << bits
        return n - (1 << bits) if signed and n > hi else n
    if mode in (Overflow.SATURATE, Overflow.SATURATE_SYMMETRIC):
        return hi if n > hi else lo
    if mode == Overflow.SATURATE_ZERO:
        return 0
    raise OverflowError(n)


def quantize_fixed(x: float, bits: int, frac: int, signed: bool, mode, ovf, rnd=0, r=62) -> int:
    """Code of the Fixed(bits, frac, signed) register that x goes to."""
    return overflow_int(round_fraction(Fraction(x) * Fraction(2) ** frac, mode, rnd=rnd, r=r), bits, signed, ovf)


def float_grid_round(x: float, man: int, emin: int, maxf: Fraction, subnormals: bool, mode, rnd=0, r=62):
    """Round x to a radix-2 format with unbounded exponent range above; returns a Fraction."""
    q = Fraction(x)
    if q == 0:
        return q
    a = abs(q)
    e = 0
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    if e < emin:
        step_e = emin - man if subnormals else emin
    else:
        step_e = e - man
    step = Fraction(2) ** step_e
    n = round_fraction(q / step, mode, rnd=rnd, r=r, magnitude=True)
    return n * step


def quantize_float(x: float, fmt, mode, overflow_kind: str, rnd=0, r=62):
    """Value (Fraction, or 'inf'/'-inf'/'nan') of a radix-2 Float ``fmt`` that finite x goes to.

    ``overflow_kind``: 'inf', 'nan', 'saturate' — the behaviour beyond the largest finite value; IEEE
    754 §7.4: modes rounding toward zero for that sign give ±max instead of inf/NaN.
    """
    maxf = Fraction(fmt.max)
    emin = fmt.emin
    if not fmt.zero and abs(Fraction(x)) < Fraction(2) ** emin:
        return Fraction(2) ** emin
    y = float_grid_round(x, fmt.man, emin, maxf, fmt.subnormals, mode, rnd, r)
    if not fmt.zero and y == 0:
        y = Fraction(2) ** emin
    if abs(y) <= maxf:
        return y
    neg = x < 0
    sat = -maxf if neg else maxf
    if overflow_kind == "saturate":
        return sat
    toward_zero = mode in (Rounding.TOWARD_ZERO, Rounding.JAM) or (mode == Rounding.FLOOR and not neg) or \
        (mode == Rounding.CEIL and neg)
    if toward_zero:
        return sat
    if overflow_kind == "nan":
        return "nan"
    return "-inf" if neg else "inf"


def decode_float(code: int, exp: int, man: int, bias: int, signed: bool, specials: str, subnormals: bool,
                 zero: bool, radix: int):
    """Literal decoding of a bit pattern (a Fraction, or 'nan'/'inf'/'-inf')."""
    m = code & ((1 << man) - 1)
    e = (code >> man) & ((1 << exp) - 1)
    s = (code >> (exp + man)) & 1 if signed else 0
    top = (1 << exp) - 1
    if specials == "ieee" and e == top:
        return "nan" if m else ("-inf" if s else "inf")
    if specials == "fn" and e == top and m == (1 << man) - 1:
        return "nan"
    if specials == "fnuz" and s == 1 and e == 0 and m == 0:
        return "nan"
    if zero and e == 0:
        mag = Fraction(m, 1 << man) * Fraction(radix) ** (1 - bias) if subnormals else Fraction(0)
    else:
        mag = (1 + Fraction(m, 1 << man)) * Fraction(radix) ** (e - bias)
    return -mag if s else mag


def grid_levels(fmt):
    """The non-negative finite values of ``fmt`` as sorted Fractions, by literal decoding of every code."""
    vals = set()
    for code in range(1 << fmt.bits):
        v = decode_float(code, fmt.exp, fmt.man, fmt.bias, fmt.signed, fmt.specials, fmt.subnormals, fmt.zero,
                         fmt.radix)
        if not isinstance(v, str) and v >= 0:
            vals.add(v)
    return sorted(vals)


def quantize_on_grid(x: float, levels, radix: int, mode, overflow_kind: str, rnd=0, r=62):
    """Round finite x onto a sign-symmetric grid given by its sorted non-negative ``levels`` (any radix).

    Between the neighbouring levels lo <= |x| < hi (above the top level the grid continues at
    top * radix): nearest modes compare |x| - lo with hi - |x|, ties go by the parity of lo's index (even
    = the level whose code ends in 0); directed modes act on the signed value; stochastic rounds the
    magnitude up when rnd < (|x| - lo) / (hi - lo) * 2**r. Overflow as ``quantize_float``.
    """
    q = Fraction(x)
    a = abs(q)
    neg = q < 0
    idx = max(i for i, v in enumerate(levels) if v <= a)
    lo = levels[idx]
    hi = levels[idx + 1] if idx + 1 < len(levels) else lo * radix
    if a == lo:
        mag = lo
    else:
        d_lo, d_hi = a - lo, hi - a
        lo_even = idx % 2 == 0
        R = Rounding
        if mode == R.STOCHASTIC:
            up = rnd < (a - lo) / (hi - lo) * 2 ** r
        elif mode in (R.HALF_EVEN, R.HALF_ODD, R.HALF_UP, R.HALF_DOWN, R.HALF_AWAY, R.HALF_TOWARD_ZERO):
            if d_lo != d_hi:
                up = d_hi < d_lo
            else:
                up = {R.HALF_EVEN: not lo_even, R.HALF_ODD: lo_even, R.HALF_AWAY: True,
                      R.HALF_TOWARD_ZERO: False, R.HALF_UP: not neg, R.HALF_DOWN: neg}[mode]
        elif mode == R.AWAY_FROM_ZERO:
            up = True
        elif mode == R.JAM:
            up = lo_even
        elif mode == R.CEIL:
            up = not neg
        elif mode == R.FLOOR:
            up = neg
        else:
            up = False
        mag = hi if up else lo
    if mag <= levels[-1]:
        return -mag if neg else mag
    sat = -levels[-1] if neg else levels[-1]
    toward_zero = mode in (Rounding.TOWARD_ZERO, Rounding.JAM) or (mode == Rounding.FLOOR and not neg) or \
        (mode == Rounding.CEIL and neg)
    if overflow_kind == "saturate" or toward_zero:
        return sat
    if overflow_kind == "nan":
        return "nan"
    return "-inf" if neg else "inf"
