"""What a simulated layer returns: outputs, raw accumulators, per-output statistics and traces."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class GemmResult:
    """Result of ``gemm`` / ``conv2d``.

    - ``values``: float64 outputs (the output register's values, or the accumulator's without one)
    - ``codes``: int64 output codes (the output register's stored integers)
    - ``acc``: raw accumulators before the output stage (bias preload included): int64 codes for a Fixed
      accumulator, float64 values for a Float one
    - ``overflow_count``: per output, how many additions wrapped, saturated or went to inf
    - ``acc_values``: ``acc`` as real values (codes * 2**-frac); the very array ``values`` is where the two are
      equal (no output stage, or a float accumulator)
    - ``exact``: int64 exact sums (unbounded accumulator, same alignment), in accumulator LSBs
    - ``max_partial``: per output, the largest exact partial-sum magnitude (accumulator LSBs)
    - ``bits_needed``: per output, the accumulator width that would have held every partial sum
      (the last three are None where the engine does not track them, e.g. float accumulators)
    - ``traces``: {(i, j): per-cycle register values} for the outputs asked for
    - ``path``: how the engine computed the result (an ``fxsim.engines.integer.IntPath`` value such as
      "exact-blas" or "stats-sequential"; the float engine's path name; None where not recorded)

    One shape whatever the flags: every field is always there. The statistics (``overflow_count``,
    ``max_partial``, ``bits_needed``) are arrays when computed (``stats=True``, the default) and None when
    not (``stats=False``; ``has_stats`` says which; ``stats="overflow"``: the counts only); ``summary()``
    has the same keys either way, None for what was not computed.
    """

    values: np.ndarray
    codes: np.ndarray
    acc: np.ndarray
    overflow_count: np.ndarray | None
    acc_values: np.ndarray | None = None
    exact: np.ndarray | None = None
    max_partial: np.ndarray | None = None
    bits_needed: np.ndarray | None = None
    datapath: object = None
    traces: dict = field(default_factory=dict)
    path: str | None = None

    @property
    def has_stats(self) -> bool:
        """Whether the per-output overflow counts were computed (``stats=True`` or ``"overflow"``)."""
        return self.overflow_count is not None

    @property
    def overflowed(self) -> np.ndarray | None:
        """Per output, whether any addition overflowed (None without statistics)."""
        return None if self.overflow_count is None else self.overflow_count > 0

    def summary(self) -> dict:
        """Counts over all outputs; the same keys with or without statistics (None where not computed)."""
        counts = self.overflow_count
        return {
            "outputs": int(self.values.size),
            "outputs_with_overflow": None if counts is None else int(np.count_nonzero(counts)),
            "overflow_events": None if counts is None else int(counts.sum()),
            "outputs_differing_from_exact": None if self.exact is None else int(np.count_nonzero(self.acc != self.exact)),
            "max_bits_needed": None if self.bits_needed is None else (int(self.bits_needed.max()) if self.bits_needed.size else 0),
        }


def bits_needed(max_pos, min_neg, signed: bool) -> np.ndarray:
    """Smallest register width holding every value in [min_neg, max_pos] (two's complement if signed or
    if any value is negative)."""
    max_pos = np.asarray(max_pos, dtype=np.int64)
    min_neg = np.asarray(min_neg, dtype=np.int64)
    pos_bits = _bit_length(max_pos)
    neg_bits = _bit_length(-(min_neg + 1))
    signed_bits = np.maximum(pos_bits, neg_bits) + 1
    if signed:
        return signed_bits
    return np.where(min_neg < 0, signed_bits, np.maximum(pos_bits, 1))


def _bit_length(x):
    x = np.asarray(x, dtype=np.int64)
    out = np.zeros(x.shape, dtype=np.int64)
    nz = x > 0
    # exact for int64: frexp of the float is off only when rounding crosses a power of two; correct it
    e = np.frexp(x.astype(np.float64))[1].astype(np.int64)
    e = np.where(nz & ((np.int64(1) << np.minimum(e - 1, 62)) > x), e - 1, e)
    out[nz] = e[nz]
    return out
