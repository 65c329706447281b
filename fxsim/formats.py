"""Number formats, described once, as data.

A format is a small frozen value: it states its bit layout and everything else (range, resolution,
codes) is derived from that. ``Fixed`` covers integers and fixed point; ``Float`` covers IEEE-like and
mini-float formats.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fixed:
    """Two's complement (or unsigned) fixed point: a ``bits``-wide integer code c meaning c * 2**-frac.

    Encoding: ``bits`` wide, sign bit included when ``signed``. ``frac`` may be negative or exceed
    ``bits`` (as ap_fixed's I = bits - frac allows). Integers are ``frac == 0``.
    """

    bits: int
    frac: int = 0
    signed: bool = True

    def __post_init__(self):
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 64:
            raise ValueError(f"bits must be an integer in 1..64, got {self.bits!r}")
        if not isinstance(self.frac, int):
            raise ValueError(f"frac must be an integer, got {self.frac!r}")

    @property
    def min_code(self) -> int:
        """Smallest stored integer."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max_code(self) -> int:
        """Largest stored integer."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def resolution(self) -> float:
        return 2.0 ** -self.frac


def Int(bits: int, signed: bool = True) -> Fixed:
    """A ``bits``-wide integer: ``Fixed(bits, 0, signed)``."""
    return Fixed(bits, 0, signed)


INT4, INT8, UINT4, UINT8 = Int(4), Int(8), Int(4, False), Int(8, False)
