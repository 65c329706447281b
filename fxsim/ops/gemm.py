"""Bit-exact integer / fixed-point GEMM through an explicit MAC datapath.

``gemm(A, B, datapath)`` computes every output C[i, j] the way the described hardware does: zero points
subtracted, products formed (and optionally cut to a product register), aligned to the accumulator's binary
point, and accumulated in the stated order with the accumulator's overflow mode applied after every single
addition; then the output stage (bias add, requantization, activation clamp, output register).

Exactness: every intermediate is an int64 code. Before running, the engine bounds every product and every
exact partial sum from the actual operands and rejects, with a ValueError, any datapath whose exact values
could leave int64 (e.g. 64 x 64-bit products); it never computes a wrong value silently.

This module is the front door (operand checks and codes, shapes); the integer engine itself lives in
``fxsim.engines.integer`` (plan -> choose a proven path -> execute), the float engines in
``fxsim.engines.floating`` and ``fxsim.engines.block``. ``result.path`` names the path that produced a result.

Shortcuts (``stats=False``), each exact and proved in ``fxsim.engines.shortcuts``: exact sums by BLAS
(float32 or float64), wrap as the exact sum mod 2**W, saturation only where a bound (K * max|a| * max|b|,
Cauchy-Schwarz, |A| @ |B|, or the blocked midpoint enclosure of the sequential order) cannot rule it out;
the outputs left unproven run the cycle-accurate kernel.

With ``stats=True`` (the default) the engine also records the exact statistics (overflow count, largest
partial sum, bits needed): where a bound proves that no addition overflows, from the exact running sums
alone; otherwise by the cycle-accurate kernel on every output.
"""
from __future__ import annotations

import numpy as np

from fxsim.datapath import Datapath
from fxsim.engines.integer import IntegerPlan, compact_int_dtype, plan_integer, run_integer_gemm
from fxsim.errors import InvalidArgument, InvalidType
from fxsim.quantize import operand_codes, operand_codes_range
from fxsim.result import GemmResult
from fxsim.validate import as_array, check_stats
from fxsim.engines.floating import float_gemm

__all__ = ["gemm", "operand_codes", "operand_codes_range", "compact_int_dtype", "IntegerPlan", "plan_integer",
           "run_integer_gemm"]


def _as_2d(x, name):
    arr = as_array(name, x)
    if arr.ndim != 2:
        raise InvalidArgument(f"{name} must be a 2-D array, got shape {arr.shape}")
    return arr


def gemm(A, B, datapath: Datapath, *, bias=None, trace=None, stats: bool | str = True) -> GemmResult:
    """C = A @ B through ``datapath``, bit for bit.

    ``A`` (M, K) and ``B`` (K, N) hold real values on the operand formats' grids (integer arrays are taken
    as codes of integer formats). ``bias`` (N,) or (M, N) holds real values on the accumulator's grid.
    ``trace``: an (i, j) pair or a list of them; their per-cycle register values land in ``result.traces``.
    ``stats=False`` skips the per-output statistics and uses the exact shortcuts (module docstring);
    ``stats="overflow"`` records the overflow counts only (``max_partial`` and ``bits_needed`` are None):
    where a bound proves that no addition overflows they are 0 and the exact shortcuts run.
    Float operands or accumulators are handed to the float engine (``fxsim.engines.floating.float_gemm``),
    which always counts overflows and records no other statistics.
    """
    if not isinstance(datapath, Datapath):
        raise InvalidType(f"datapath must be an fxsim Datapath, got {type(datapath).__name__}")
    stats = check_stats(stats)
    if not datapath.is_integer:
        return float_gemm(A, B, datapath, bias=bias, trace=trace)
    A = _as_2d(A, "A")
    B = _as_2d(B, "B")
    if A.shape[1] != B.shape[0]:
        raise InvalidArgument(f"A is {A.shape} and B is {B.shape}: inner dimensions must match")
    codes, ranges, unchecked = [], [], []
    for key, name, x, fmt, zp in (("a", "A", A, datapath.a, datapath.a_zero_point),
                                  ("b", "B", B, datapath.b, datapath.b_zero_point)):
        if (not stats and x.dtype.kind in "iu" and x.dtype != np.uint64 and fmt.frac == 0 and int(zp) == 0
                and datapath.zero_point_bits is None):
            codes.append(x)   # integer codes as they are: the engine range-checks them in its one pass
            unchecked.append((key, name, x, fmt))
        elif x.dtype.kind in "iu" and x.dtype != np.uint64 and fmt.frac == 0:
            # integer codes as they are (no int64 copy: 8x the memory of int8 codes); range-checked here
            lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
            if lo < fmt.min_code or hi > fmt.max_code:
                operand_codes_range(x, fmt, name)   # names the offending element
            codes.append(x)
            ranges.append((lo, hi))
        else:
            c, lo, hi = operand_codes_range(x, fmt, name)
            codes.append(c)
            ranges.append((lo, hi))
    return run_integer_gemm(codes[0], codes[1], datapath, bias=bias, trace=trace, stats=stats,
                            code_ranges=tuple(ranges) if len(ranges) == 2 else None, unchecked=tuple(unchecked))
