"""Central argument validators: one place decides what each kind of argument accepts.

Each ``check_*`` returns the value normalised to a plain Python type, or raises an
:mod:`fxsim.errors` error whose message names the argument, the value and what is allowed::

    >>> check_int("lanes", 4, lo=1)
    4
    >>> check_int("lanes", True, lo=1)
    Traceback (most recent call last):
    ...
    fxsim.errors.InvalidType: lanes must be an integer >= 1, got True (bool)
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from fxsim.errors import InvalidArgument, InvalidType

__all__ = ["check_int", "check_bool", "check_real", "check_choice", "as_array", "describe_range",
           "check_trace"]


def describe_range(lo=None, hi=None) -> str:
    """``"in 1..64"``, ``">= 1"``, ``"<= 7"`` or ``""`` (inclusive bounds)."""
    if lo is not None and hi is not None:
        return f"in {lo}..{hi}"
    if lo is not None:
        return f">= {lo}"
    if hi is not None:
        return f"<= {hi}"
    return ""


def _what(kind, lo=None, hi=None):
    rng = describe_range(lo, hi)
    return f"{kind} {rng}" if rng else kind


def check_int(name: str, value, *, lo=None, hi=None, allow_none=False):
    """An integer (Python or NumPy, never bool, never a float such as 1.7 or 2.0) in ``lo..hi``."""
    if value is None and allow_none:
        return None
    suffix = " or None" if allow_none else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise InvalidType(f"{name} must be an integer {describe_range(lo, hi)}{suffix}".rstrip()
                          + f", got {value!r} ({type(value).__name__})")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InvalidArgument(f"{name} must be an integer {describe_range(lo, hi)}{suffix}, got {value}")
    return value


def check_bool(name: str, value) -> bool:
    """``True`` or ``False`` (or NumPy's bool): never a string such as ``"false"``, never 0/1."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InvalidType(f"{name} must be true or false (a boolean), got {value!r} ({type(value).__name__})")


def check_real(name: str, value, *, lo=None, hi=None, finite=True, lo_open=False, hi_open=False,
               allow_none=False):
    """A real number (int or float, not bool), finite unless ``finite=False``, within the bounds
    (inclusive unless ``lo_open``/``hi_open``)."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        raise InvalidType(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    v = float(value) if not isinstance(value, (numbers.Integral, np.integer)) else value
    if finite and isinstance(v, float) and not math.isfinite(v):
        raise InvalidArgument(f"{name} must be a finite number, got {value!r}")
    bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
    bad_hi = hi is not None and (v >= hi if hi_open else v > hi)
    if bad_lo or bad_hi:
        lo_s = "" if lo is None else (f"> {lo}" if lo_open else f">= {lo}")
        hi_s = "" if hi is None else (f"< {hi}" if hi_open else f"<= {hi}")
        allowed = " and ".join(s for s in (lo_s, hi_s) if s)
        raise InvalidArgument(f"{name} must be {allowed}, got {value!r}")
    return v


def check_stats(stats):
    """``stats`` of gemm / conv2d: True (every statistic), False (none; the exact shortcuts) or "overflow"
    (the overflow counts only: zero without a kernel where a bound proves that no addition overflows)."""
    if isinstance(stats, (bool, np.bool_)):
        return bool(stats)
    if isinstance(stats, str) and stats == "overflow":
        return stats
    raise InvalidArgument(f"stats must be True, False or \"overflow\", got {stats!r}")


def check_choice(name: str, value, choices):
    """One of ``choices`` (compared with ==); the message lists them."""
    if isinstance(value, str) and value in choices:
        return value
    for c in choices:
        if type(value) is type(c) and value == c:
            return value
    listed = ", ".join(repr(c) if not isinstance(c, str) else c for c in choices)
    raise InvalidArgument(f"{name} must be one of {listed}, got {value!r}")


def as_array(name: str, x, *, kinds: str = "biuf") -> np.ndarray:
    """``x`` as a NumPy array: NumPy arrays, anything with ``__array__`` (JAX, lists via NumPy) or the
    DLPack protocol (PyTorch tensors on the CPU). Complex, object and string data are refused; ``kinds``
    lists the NumPy dtype kinds allowed."""
    if isinstance(x, np.ndarray):
        a = x
    elif hasattr(x, "__dlpack__") and not hasattr(x, "__array_interface__"):
        try:
            a = np.from_dlpack(x)
        except (BufferError, TypeError, RuntimeError) as exc:
            if not hasattr(x, "__array__"):
                raise InvalidType(f"{name}: cannot read this {type(x).__name__} through DLPack ({exc}); "
                                  "move it to the CPU first") from None
            a = np.asarray(x)
    else:
        try:
            a = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise InvalidType(f"{name} must be an array of numbers, got {type(x).__name__} ({exc})") from None
    if a.dtype.kind not in kinds:
        allowed = {"b": "bool", "i": "int", "u": "uint", "f": "float"}
        names = ", ".join(allowed.get(k, k) for k in kinds)
        raise InvalidType(f"{name} must be a numeric array ({names}), got dtype {a.dtype}")
    return a


def check_trace(name: str, trace, shape) -> list:
    """Output indices to trace: one index tuple (as long as ``shape`` has dimensions) or a list of them,
    each within ``shape``; returns a list of int tuples. Strings such as ``"0,0"`` are refused (the command
    line parses its ``--trace I,J``; the Python API takes tuples)."""
    if trace is None:
        return []
    nd = len(shape)
    dims = "(" + ", ".join("ijkl"[:nd]) + ")" if nd <= 4 else f"{nd}-tuple"

    def is_index(t):
        return isinstance(t, (int, np.integer)) and not isinstance(t, (bool, np.bool_))

    if isinstance(trace, (str, bytes)):
        raise InvalidType(f"{name} must be an index tuple {dims} or a list of them, got the string {trace!r}; "
                          f"write it as a tuple, e.g. {name}=({', '.join('0' * nd)})")
    if isinstance(trace, tuple) and len(trace) == nd and all(is_index(t) for t in trace):
        trace = [trace]
    try:
        items = list(trace)
    except TypeError:
        raise InvalidType(f"{name} must be an index tuple {dims} or a list of them, got {trace!r}") from None
    out = []
    for t in items:
        if isinstance(t, (str, bytes)) or not hasattr(t, "__len__") or len(t) != nd or not all(is_index(v) for v in t):
            raise InvalidType(f"{name}: each entry must be an index tuple {dims} of {nd} integers, got {t!r}")
        t = tuple(int(v) for v in t)
        if not all(0 <= v < s for v, s in zip(t, shape)):
            raise InvalidArgument(f"{name} index {t} is outside the output shape {tuple(shape)}")
        out.append(t)
    return out


def kernel_array(x, dtype=np.float64) -> np.ndarray:
    """``x`` as a C-contiguous, writable array of ``dtype``: the one array type the Numba kernels are compiled
    for (a read-only view, such as a broadcast that is already contiguous, or a strided array would compile
    them a second time)."""
    out = np.ascontiguousarray(x, dtype=dtype)
    return out if out.flags.writeable else out.copy()
