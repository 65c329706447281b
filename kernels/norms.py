"""Exact squared Euclidean norms of integer-valued rows: the Cauchy-Schwarz bound on every partial sum of
a dot product (sum_k |a_k b_k| <= ||a|| ||b||) that proves a float32 BLAS sum exact."""
import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def max_row_sumsq(X):
    """max over rows i of sum_k X[i, k]**2, in int64, for X (M, K) float32 holding integers (the caller's
    promise, as is K * max|X|**2 < 2**63: then every partial sum is exact, in any order)."""
    M, K = X.shape
    best = np.int64(0)
    for i in range(M):
        s = np.int64(0)
        for k in range(K):
            v = np.int64(X[i, k])
            s += v * v
        if s > best:
            best = s
    return best


@nb.njit(cache=True, nogil=True)
def abs_row_sums_max(X):
    """(max |X|, max over rows i of sum_k |X[i, k]|) for X (M, K) float64, the sums in float64 in the order
    of k (K < 2**20 terms: a relative error below K * 2**-53, which the caller's margin covers); (nan, nan)
    when X holds a NaN."""
    M, K = X.shape
    amax = 0.0
    best = 0.0
    for i in range(M):
        s = 0.0
        for k in range(K):
            v = abs(X[i, k])
            s += v
            amax = max(amax, v)
        if s != s:
            return np.nan, np.nan
        best = max(best, s)
    return amax, best


@nb.njit(cache=True, nogil=True)
def abs_col_sums_max(X):
    """(max |X|, max over columns j of sum_k |X[k, j]|) for X (K, N) float64, as ``abs_row_sums_max``
    (nan, nan with a NaN)."""
    K, N = X.shape
    sums = np.zeros(N)
    amax = 0.0
    for k in range(K):
        for j in range(N):
            v = abs(X[k, j])
            sums[j] += v
            amax = max(amax, v)
    best = 0.0
    for j in range(N):
        if sums[j] != sums[j]:
            return np.nan, np.nan
        best = max(best, sums[j])
    return amax, best
