"""Integer rounding and overflow primitives: the hardware rounder and the overflow stage.

Every kernel in fxsim that drops LSBs or narrows a register goes through these two functions, so that a
rounding mode means the same thing in quantization, product alignment, accumulation and requantization.
Modes are plain integers here (fxsim.modes maps its enums onto them); kernels stay free of Python objects.
"""
import numba as nb
import numpy as np

# Rounding modes (see fxsim.modes.Rounding for names, aliases and definitions).
FLOOR = 0            # toward -inf: keep the upper bits (two's complement truncation)
CEIL = 1             # toward +inf
TOWARD_ZERO = 2      # magnitude truncation
AWAY_FROM_ZERO = 3   # magnitude rounded up
HALF_UP = 4          # nearest, ties toward +inf ("add half, truncate")
HALF_DOWN = 5        # nearest, ties toward -inf
HALF_AWAY = 6        # nearest, ties away from zero
HALF_TOWARD_ZERO = 7 # nearest, ties toward zero
HALF_EVEN = 8        # nearest, ties to even (convergent)
HALF_ODD = 9         # nearest, ties to odd
JAM = 10             # von Neumann jamming: truncate, then OR the sticky bit into the LSB
STOCHASTIC = 11      # add a uniform random integer below the LSB, then truncate

# Overflow modes (see fxsim.modes.Overflow).
WRAP = 0             # two's complement wrap-around: keep the low `bits` bits
SATURATE = 1         # clamp to [min, max]
SATURATE_SYMMETRIC = 2  # clamp to [-max, max]
SATURATE_ZERO = 3    # an overflowing value becomes zero
ERROR = 4            # leave the value; the caller counts and raises
IEEE = 5             # floats only: overflow to inf (or NaN where the format has no inf)

MAX_SHIFT = 62


@nb.njit(cache=True, inline="always")
def shift_round(x, s, mode, addend):
    """Round the int64 ``x / 2**s`` to an integer with rounding ``mode`` (0 <= s <= 62).

    ``addend`` is used by STOCHASTIC only: an integer in [0, 2**s) added below the kept LSB before
    truncation, exactly as an LFSR-fed hardware rounder does. No intermediate exceeds int64.
    """
    if s <= 0:
        return x
    q = x >> s
    rem = x - (q << s)           # discarded bits, in [0, 2**s)
    half = np.int64(1) << (s - 1)
    inc = 0
    if mode == FLOOR:
        inc = 0
    elif mode == CEIL:
        inc = 1 if rem != 0 else 0
    elif mode == TOWARD_ZERO:
        inc = 1 if (rem != 0 and x < 0) else 0
    elif mode == AWAY_FROM_ZERO:
        inc = 1 if (rem != 0 and x >= 0) else 0
    elif mode == HALF_UP:
        inc = 1 if rem >= half else 0
    elif mode == HALF_DOWN:
        inc = 1 if rem > half else 0
    elif mode == HALF_AWAY:
        inc = 1 if (rem > half or (rem == half and x >= 0)) else 0
    elif mode == HALF_TOWARD_ZERO:
        inc = 1 if (rem > half or (rem == half and x < 0)) else 0
    elif mode == HALF_EVEN:
        inc = 1 if (rem > half or (rem == half and (q & 1) == 1)) else 0
    elif mode == HALF_ODD:
        inc = 1 if (rem > half or (rem == half and (q & 1) == 0)) else 0
    elif mode == JAM:
        if rem != 0:
            return q | 1
        return q
    elif mode == STOCHASTIC:
        inc = 1 if rem >= (np.int64(1) << s) - addend else 0
    return q + inc


@nb.njit(cache=True, inline="always")
def wrap(x, bits, signed):
    """Keep the low ``bits`` bits of int64 ``x`` (1 <= bits <= 64), as a register of that width does."""
    if bits >= 64:
        return x
    mask = (np.int64(1) << bits) - 1
    y = x & mask
    if signed and y >= (np.int64(1) << (bits - 1)):
        y -= np.int64(1) << bits
    return y


@nb.njit(cache=True, inline="always")
def overflow(x, lo, hi, bits, signed, mode):
    """Apply the overflow stage of a ``bits``-wide register with range [lo, hi] to int64 ``x``."""
    if lo <= x <= hi:
        if mode == SATURATE_SYMMETRIC and signed and x < -hi:
            return -hi
        return x
    if mode == WRAP:
        return wrap(x, bits, signed)
    if mode == SATURATE:
        return hi if x > hi else lo
    if mode == SATURATE_SYMMETRIC:
        if x > hi:
            return hi
        return -hi if signed else lo
    if mode == SATURATE_ZERO:
        return 0
    return x  # ERROR: the caller detects x outside [lo, hi]
