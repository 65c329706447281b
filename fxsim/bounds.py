"""Accumulator width analysis, in Python integers (never float: FINN issue 1517 lost a bit that way).

- ``worst_case_bits``: from the operand formats and K alone (the exact range of every partial sum).
- ``symmetric_bits``: the textbook rule, smallest W with 2**(W-1) - 1 >= K * max|product|.
- ``data_bits``: from known weights, over every input in the operand range (FINN-style): exact.
- ``l1_bits``: the accumulator-aware-quantization bound (A2Q, Colbert et al. 2023): ||w||_1 * max|x|.
"""
from __future__ import annotations

import numbers

import numpy as np

from fxsim.errors import InvalidArgument
from fxsim.formats import Fixed
from fxsim.formats import check_format
from fxsim.validate import check_int

__all__ = ["signed_bits_for_range", "worst_case_bits", "symmetric_bits", "data_bits", "l1_bits"]


def signed_bits_for_range(lo: int, hi: int) -> int:
    """Smallest W such that a W-bit two's complement register holds every integer in [lo, hi]."""
    lo, hi = int(lo), int(hi)
    w = 1
    while not (-(1 << (w - 1)) <= lo and hi <= (1 << (w - 1)) - 1):
        w += 1
    return w


def _fixed(fmt, argument):
    """A Fixed format from a Fixed or any name ``parse_format`` takes ("int8", "Q3.4", ...)."""
    f = check_format(argument, fmt)
    if not isinstance(f, Fixed):
        raise InvalidArgument(f"{argument} must be a fixed-point or integer format (accumulator bounds count "
                              f"integer codes), got {f}")
    return f


def _code_range(fmt, zero_point: int = 0, argument="a"):
    fmt = _fixed(fmt, argument)
    zero_point = check_int(f"{argument}_zero_point", zero_point)
    return fmt.min_code - zero_point, fmt.max_code - zero_point


def worst_case_bits(a: Fixed | str, b: Fixed | str, K: int, *, a_zero_point=0, b_zero_point=0, bias_range=(0, 0)) -> int:
    """Signed accumulator width that holds every partial sum of any K-term dot product of a and b codes."""
    _check_k(K)
    alo, ahi = _code_range(a, a_zero_point, "a")
    blo, bhi = _code_range(b, b_zero_point, "b")
    corners = [alo * blo, alo * bhi, ahi * blo, ahi * bhi]
    pmin, pmax = min(corners), max(corners)
    lo = K * min(pmin, 0) + min(int(bias_range[0]), 0)
    hi = K * max(pmax, 0) + max(int(bias_range[1]), 0)
    return signed_bits_for_range(lo, hi)


def symmetric_bits(a: Fixed | str, b: Fixed | str, K: int, *, a_zero_point=0, b_zero_point=0) -> int:
    """Smallest W with 2**(W-1) - 1 >= K * max|a*b| (a symmetric register sized for the largest product
    magnitude; at most one bit wider than ``worst_case_bits``)."""
    _check_k(K)
    alo, ahi = _code_range(a, a_zero_point, "a")
    blo, bhi = _code_range(b, b_zero_point, "b")
    pmax = max(abs(alo), abs(ahi)) * max(abs(blo), abs(bhi))
    need = K * pmax
    w = 1
    while (1 << (w - 1)) - 1 < need:
        w += 1
    return w


def _check_k(K):
    check_int("K (terms per dot product)", K, lo=1)


def _column_extremes(W, alo, ahi):
    """Per column j of the integer matrix W: (sum_k min(w*alo, w*ahi, 0), sum_k max(w*alo, w*ahi, 0)) as
    Python ints; in int64 when max|w| * max|a| * K provably fits (checked in Python ints), else in Python
    ints term by term."""
    W = np.asarray(W)
    if W.ndim != 2:
        raise InvalidArgument(f"weights must be a (K, N) matrix of integer codes, got shape {W.shape}")
    if W.dtype.kind == "f":
        if not (np.all(np.isfinite(W)) and np.array_equal(W, np.rint(W))):
            raise InvalidArgument("weights must hold integer codes; got non-integral or non-finite floats")
        if W.size and np.max(np.abs(W)) >= 2.0 ** 53:
            raise InvalidArgument("weights as floats must stay below 2**53 in magnitude to be exact integers; "
                                  "pass an integer array")
        W = W.astype(np.int64)
    elif W.dtype.kind not in "iubO" or (W.dtype.kind == "O" and not all(
            isinstance(w, (numbers.Integral, np.integer)) for w in W.ravel().tolist())):
        raise InvalidArgument(f"weights must hold integer codes, got dtype {W.dtype}")
    K, N = W.shape
    big = W.dtype.kind == "O" or W.dtype == np.uint64
    wmax = int(np.max(np.abs(W.astype(np.int64)))) if (W.size and not big) else 0
    if big or K * wmax * max(abs(alo), abs(ahi), 1) >= 2 ** 62:
        lo, hi = [], []
        for j in range(N):
            l = h = 0
            for w in W[:, j].tolist():
                w = int(w)
                l += min(w * alo, w * ahi, 0)
                h += max(w * alo, w * ahi, 0)
            lo.append(l)
            hi.append(h)
        return lo, hi
    Wi = W.astype(np.int64)
    p, q = Wi * alo, Wi * ahi
    lo = np.minimum(np.minimum(p, q), 0).sum(axis=0)
    hi = np.maximum(np.maximum(p, q), 0).sum(axis=0)
    return lo.tolist(), hi.tolist()


def data_bits(weights, a: Fixed, *, a_zero_point=0) -> np.ndarray:
    """Per output column of ``weights`` (K, N) integer codes: the exact width every partial sum of
    sum_k w_k x_k needs over all inputs x in a's code range (each partial sum's extremes, in any order
    of k, are bounded by the sums of the per-term extremes, which are attained)."""
    alo, ahi = _code_range(a, a_zero_point)
    lo, hi = _column_extremes(weights, alo, ahi)
    return np.array([signed_bits_for_range(l, h) for l, h in zip(lo, hi)], dtype=np.int64)


def l1_bits(weights, a: Fixed, *, a_zero_point=0) -> np.ndarray:
    """Per output column: the A2Q bound, ||w||_1 * max|x| as a signed range."""
    alo, ahi = _code_range(a, a_zero_point)
    amax = max(abs(alo), abs(ahi))
    lo, hi = _column_extremes(weights, -amax, amax)     # sum_k |w_k| * amax, negated for lo
    return np.array([signed_bits_for_range(l, h) for l, h in zip(lo, hi)], dtype=np.int64)
