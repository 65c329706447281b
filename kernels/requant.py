"""Output-stage kernels: the shared hardware rounder applied element-wise with per-element shifts."""
import numba as nb
import numpy as np

from .rounding import shift_round


@nb.njit(cache=True)
def shift_round_array(x, s, mode, out):
    """out[i] = round(x[i] / 2**s[i]) with ``mode`` (s[i] in 0..62), or x[i] << -s[i] for s[i] < 0."""
    for i in range(x.size):
        if s[i] >= 0:
            out[i] = shift_round(x[i], s[i], mode, np.int64(0))
        else:
            out[i] = x[i] << (-s[i])
