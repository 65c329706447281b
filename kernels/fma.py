"""float32 fused multiply-add with one rounding, as the FMA instruction computes it."""
import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def fma_f32_into(a, b, c, out):
    """out = float32(a*b + c) rounded once, half to even, for 1-D float32 arrays of one length.

    The float64 product of two float32 is exact (48 significant bits). The float64 sum s = p + c is rounded
    once; its TwoSum error e says whether it was exact. Where it was not, s is moved to its float64
    neighbour on the side of the true sum when its last bit is even (rounding to odd: s then keeps which
    side of a float32 tie the true value lies on), and rounding that float64 to float32 (24 bits; 53 >=
    24 + 2) is the correct rounding of the true sum (double rounding through round-to-odd, Boldo and
    Melquiond). Non-finite sums are converted as they are."""
    buf = np.empty(1, dtype=np.float64)
    ibuf = buf.view(np.int64)
    for k in range(out.size):
        p = np.float64(a[k]) * np.float64(b[k])
        cc = np.float64(c[k])
        s = p + cc
        if np.isfinite(s):
            bb = s - p
            e = (p - (s - bb)) + (cc - bb)
            if e != 0.0:
                buf[0] = s
                if ibuf[0] & 1 == 0:
                    s = np.nextafter(s, np.inf if e > 0.0 else -np.inf)
        out[k] = np.float32(s)
