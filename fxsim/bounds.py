"""Accumulator width analysis, in Python integers (never float: FINN issue 1517 lost a bit that way).

- ``worst_case_bits``: from the operand formats and K alone (the exact range of every partial sum).
- ``symmetric_bits``: the textbook rule, smallest W with 2**(W-1) - 1 >= K * max|product|.
- ``data_bits``: from known weights, over every input in the operand range (FINN-style): exact.
- ``l1_bits``: the accumulator-aware-quantization bound (A2Q, Colbert et al. 2023): ||w||_1 * max|x|.
"""
from __future__ import annotations

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


def data_bits(weights, a: Fixed, *, a_zero_point=0) -> np.ndarray:
    """Per output column of ``weights`` (K, N) integer codes: the exact width every partial sum of
    sum_k w_k x_k needs over all inputs x in a's code range (each partial sum's extremes, in any order
    of k, are bounded by the sums of the per-term extremes, which are attained)."""
    W = np.asarray(weights)
    alo, ahi = _code_range(a, a_zero_point)
    out = []
    for j in range(W.shape[1]):
        lo = hi = 0
        for w in W[:, j].tolist():
            w = int(w)
            lo += min(w * alo, w * ahi, 0)
            hi += max(w * alo, w * ahi, 0)
        out.append(signed_bits_for_range(lo, hi))
    return np.array(out, dtype=np.int64)


def l1_bits(weights, a: Fixed, *, a_zero_point=0) -> np.ndarray:
    """Per output column: the A2Q bound, ||w||_1 * max|x| as a signed range."""
    W = np.asarray(weights)
    alo, ahi = _code_range(a, a_zero_point)
    amax = max(abs(alo), abs(ahi))
    return np.array([signed_bits_for_range(-sum(abs(int(w)) for w in W[:, j].tolist()) * amax,
                                           sum(abs(int(w)) for w in W[:, j].tolist()) * amax)
                     for j in range(W.shape[1])], dtype=np.int64)
