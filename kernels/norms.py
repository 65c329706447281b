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
