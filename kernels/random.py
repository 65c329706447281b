"""Counter-based random bits: reproducible and independent of thread scheduling.

Hardware stochastic rounders draw bits from an LFSR; here every (seed, stream, counter) triple maps to
64 random bits through splitmix64, so a kernel running in parallel gets the same bits as a serial run.
"""
import numba as nb
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@nb.njit(cache=True, inline="always")
def splitmix64(z):
    """The splitmix64 finaliser of a uint64 (Steele, Lea, Flood 2014)."""
    z = np.uint64(z) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@nb.njit(cache=True, inline="always")
def random_bits(seed, stream, counter, r):
    """An r-bit uniform integer (1 <= r <= 62) as int64, for position ``counter`` of ``stream``."""
    z = splitmix64(np.uint64(seed) ^ splitmix64(np.uint64(stream) * _GOLDEN + np.uint64(counter)))
    return np.int64(z >> np.uint64(64 - r))


@nb.njit(cache=True, parallel=True)
def fill_random_bits(seed, stream, r, out):
    """out[i] = random_bits(seed, stream, i, r) for every i (the same bits the kernels draw)."""
    for i in nb.prange(out.size):
        out[i] = random_bits(seed, stream, i, r)
