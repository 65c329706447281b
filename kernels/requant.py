"""Output-stage kernels: the shared hardware rounder applied element-wise with per-element shifts."""
import numba as nb
import numpy as np

from .rounding import SATURATE_SYMMETRIC, SATURATE_ZERO, WRAP, shift_round


@nb.njit(cache=True)
def shift_round_array(x, s, mode, out):
    """out[i] = round(x[i] / 2**s[i]) with ``mode`` (s[i] in 0..62), or x[i] << -s[i] for s[i] < 0."""
    for i in range(x.size):
        if s[i] >= 0:
            out[i] = shift_round(x[i], s[i], mode, np.int64(0))
        else:
            out[i] = x[i] << (-s[i])


@nb.njit(cache=True, nogil=True)
def requant_f32_into(acc, scale, zp, act_lo, act_hi, lo, hi, bits, signed, mode, frac_scale, codes, values):
    """The float32 requantizing output stage, fused: for acc (M, N) int64 and ``scale`` (N,) float32 (one
    per output column), y = rint(float32(acc) * scale) (float32 product, half even), then code = y + zp,
    the activation clamp to [act_lo, act_hi] (ReLU: [zp, max]; none: the whole int64 range), and the output
    register [lo, hi] of ``bits`` bits with overflow ``mode`` (WRAP, SATURATE, SATURATE_SYMMETRIC or
    SATURATE_ZERO); values = code * frac_scale (a power of two, exact for registers of <= 53 bits).
    Straight-line per element so that it vectorises. Returns 0, or 1 when some y is not finite or reaches
    2**62 (the caller then runs the general stage, which raises or carries exact integers)."""
    M, N = acc.shape
    big = np.float32(2.0 ** 62)
    sat_lo = -hi if (mode == SATURATE_SYMMETRIC and signed) else lo
    mask = (np.int64(1) << bits) - 1
    bad = False
    for i in range(M):
        for j in range(N):
            y = np.rint(np.float32(acc[i, j]) * scale[j])
            ok = abs(y) < big            # False for inf and NaN too
            bad |= not ok
            x = np.int64(y if ok else np.float32(0.0)) + zp
            x = min(max(x, act_lo), act_hi)
            if mode == WRAP:
                x = ((x - lo) & mask) + lo
            elif mode == SATURATE_ZERO:
                x = x if lo <= x <= hi else 0
            else:
                x = min(max(x, sat_lo), hi)
            codes[i, j] = x
            values[i, j] = x * frac_scale
    return 1 if bad else 0
