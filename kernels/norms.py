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


@nb.njit(cache=True, nogil=True, fastmath={"reassoc"})
def abs_row_sums_max(X):
    """(max |X|, max over rows i of sum_k |X[i, k]|) for X (M, K) float64, the sums in float64 in any order
    (reassociated so that they vectorise: K < 2**20 non-negative terms summed in any order have a relative
    error below K * 2**-53, which the caller's margin covers); (nan, nan) when X holds a NaN (a NaN term
    makes its row's sum NaN in any order)."""
    M, K = X.shape
    bits = X.view(np.int64)     # |x| as the bit pattern without its sign: ordered as the values are
    top = np.int64(0)
    best = 0.0
    for i in range(M):
        s = 0.0
        m = np.int64(0)
        for k in range(K):
            s += abs(X[i, k])
            m = max(m, bits[i, k] & 0x7FFFFFFFFFFFFFFF)
        if s != s:
            return np.nan, np.nan
        best = max(best, s)
        top = max(top, m)
    return np.array([top]).view(np.float64)[0], best


@nb.njit(cache=True, nogil=True)
def abs_col_sums_max(X):
    """(max |X|, max over columns j of sum_k |X[k, j]|) for X (K, N) float64, the sums in the order of k
    (they vectorise across columns as they are), as ``abs_row_sums_max`` otherwise (nan, nan with a NaN)."""
    K, N = X.shape
    bits = X.view(np.int64)     # as in abs_row_sums_max: max |x| on the bit patterns
    sums = np.zeros(N)
    tops = np.zeros(N, dtype=np.int64)
    for k in range(K):
        for j in range(N):
            sums[j] += abs(X[k, j])
            tops[j] = max(tops[j], bits[k, j] & 0x7FFFFFFFFFFFFFFF)
    best = 0.0
    top = np.int64(0)
    for j in range(N):
        if sums[j] != sums[j]:
            return np.nan, np.nan
        best = max(best, sums[j])
        top = max(top, tops[j])
    return np.array([top]).view(np.float64)[0], best
