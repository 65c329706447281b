"""Exact GEMM references for float operands: every product and every partial sum exact, each output
rounded once to float64.

:func:`exact_gemm` runs at kernel speed (``kernels.exact_sum``: products split without error, summed in a
fixed-point register covering the whole float64 range) when its preconditions hold, which it checks:
finite operands, zero points subtracted exactly in float64, nonzero magnitudes in [2**-450, 2**450] (so the
error-free product split neither overflows nor underflows) and fewer than 2**30 terms per output.
Otherwise it computes the same numbers with Python fractions (slow, obviously exact).
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from fxsim.validate import kernel_array

__all__ = ["exact_gemm", "exact_gemm_fractions"]

_LO, _HI = 2.0 ** -450, 2.0 ** 450


def exact_gemm_fractions(A, B, bias=None, a_zero_point=0, b_zero_point=0) -> np.ndarray:
    """The same sums with ``fractions.Fraction``: obviously exact, about a microsecond per product."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    M, K = A.shape
    N = B.shape[1]
    Af = [[Fraction(float(x)) - a_zero_point for x in row] for row in A.tolist()]
    Bf = [[Fraction(float(x)) - b_zero_point for x in col] for col in B.T.tolist()]
    bias2 = None if bias is None else np.broadcast_to(np.asarray(bias, dtype=np.float64), (M, N))
    out = np.empty((M, N))
    for i in range(M):
        for j in range(N):
            s = Fraction(float(bias2[i, j])) if bias2 is not None else Fraction(0)
            for x, w in zip(Af[i], Bf[j]):
                s += x * w
            out[i, j] = float(s)
    return out


def _sub_exact(x, zp):
    """x - zp in float64, or None when some difference is not exact."""
    if not zp:
        return x
    with np.errstate(all="ignore"):
        zp = float(zp)
        s = x - zp
        # TwoSum residual: (x - zp) - s exactly; zero everywhere means s is exact
        bb = s - x
        err = (x - (s - bb)) + (-zp - bb)
    return s if np.all(err == 0) and np.all(np.isfinite(s)) else None


def _in_range(x):
    a = np.abs(x)
    return bool(np.all(np.isfinite(x)) and np.all((a == 0) | ((a >= _LO) & (a <= _HI))))


def exact_gemm(A, B, bias=None, a_zero_point=0, b_zero_point=0) -> np.ndarray:
    """(A - a_zero_point) @ (B - b_zero_point) + bias, exactly, each output rounded once (half even) to
    float64. ``A`` (M, K), ``B`` (K, N) real values; ``bias`` (N,) or (M, N) or None."""
    from fxsim._kernels.exact_sum import exact_gemm_sums
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    M, K = A.shape
    N = B.shape[1]
    Az, Bz = _sub_exact(A, a_zero_point), _sub_exact(B, b_zero_point)
    b2 = None if bias is None else kernel_array(np.broadcast_to(np.asarray(bias, dtype=np.float64), (M, N)))
    fast = (Az is not None and Bz is not None and 2 * K + 1 < 2 ** 31 and _in_range(Az) and _in_range(Bz)
            and (b2 is None or bool(np.all(np.isfinite(b2)))))
    if not fast:
        return exact_gemm_fractions(A, B, bias, a_zero_point, b_zero_point)
    out = np.empty((M, N), dtype=np.float64)
    if M * N:
        exact_gemm_sums(kernel_array(Az), kernel_array(Bz.T),
                        b2 if b2 is not None else np.zeros((1, 1)), b2 is not None, out)
    return out
