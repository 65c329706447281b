"""Rounding and overflow modes: one enum each, with the names every tool uses for them.

A mode is accepted as the enum member or as any alias string (case-insensitive): the fxsim name,
ap_fixed/ac_fixed (``AP_RND_CONV``), MATLAB fimath (``Convergent``) and IEEE 754 (``roundTiesToEven``).
The integer value of each member is the mode number the kernels in ``kernels.rounding`` implement.
"""
from __future__ import annotations

import enum

from fxsim._kernels import rounding as _k

from fxsim.errors import InvalidArgument


class _AliasedEnum(enum.IntEnum):
    """IntEnum whose members are also found by any of their aliases."""

    @classmethod
    def parse(cls, value, *, argument: str = "mode"):
        """Return the member named by ``value`` (member, name or alias); raise ValueError otherwise."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            table = cls._alias_table()
            member = table.get(value)          # the common case: an exact lower-case name
            if member is None:
                member = table.get(value.strip().lower().replace("-", "_").replace(" ", "_"))
            if member is not None:
                return member
        allowed = ", ".join(m.name.lower() for m in cls)
        raise InvalidArgument(
            f"{argument} must be one of {allowed} (or an alias from ap_fixed, MATLAB or IEEE 754), "
            f"got {value!r}")

    @classmethod
    def _alias_table(cls):
        """{normalised name or alias: member}, built once per enum."""
        table = _TABLES.get(cls)
        if table is None:
            table = {}
            for m in cls:
                table[m.name.lower()] = m
                for a in _ALIASES[cls].get(m.name, ()):
                    table[a.lower().replace("-", "_").replace(" ", "_")] = m
            _TABLES[cls] = table
        return table

    @property
    def aliases(self) -> tuple:
        return tuple(_ALIASES[type(self)].get(self.name, ()))


class Rounding(_AliasedEnum):
    """How dropped LSBs change the kept value. q = floor(x), f = x - q (the discarded fraction)."""

    FLOOR = _k.FLOOR                        # q. Two's complement truncation (the HLS default).
    CEIL = _k.CEIL                          # q + (f > 0).
    TOWARD_ZERO = _k.TOWARD_ZERO            # truncate the magnitude.
    AWAY_FROM_ZERO = _k.AWAY_FROM_ZERO      # round the magnitude up.
    HALF_UP = _k.HALF_UP                    # nearest; ties toward +inf ("add half, truncate").
    HALF_DOWN = _k.HALF_DOWN                # nearest; ties toward -inf.
    HALF_AWAY = _k.HALF_AWAY                # nearest; ties away from zero.
    HALF_TOWARD_ZERO = _k.HALF_TOWARD_ZERO  # nearest; ties toward zero.
    HALF_EVEN = _k.HALF_EVEN                # nearest; ties to the even neighbour (convergent).
    HALF_ODD = _k.HALF_ODD                  # nearest; ties to the odd neighbour.
    JAM = _k.JAM                            # von Neumann: truncate, LSB |= (f > 0).
    STOCHASTIC = _k.STOCHASTIC              # q + (u < f), u uniform (or r hardware random bits).



class Overflow(_AliasedEnum):
    """What a register does with a value outside its range."""

    WRAP = _k.WRAP                              # keep the low bits (two's complement).
    SATURATE = _k.SATURATE                      # clamp to [min, max]; floats: largest finite.
    SATURATE_SYMMETRIC = _k.SATURATE_SYMMETRIC  # clamp to [-max, max].
    SATURATE_ZERO = _k.SATURATE_ZERO            # an overflowing value becomes 0.
    ERROR = _k.ERROR                            # raise, naming the count and the first index.
    IEEE = _k.IEEE                              # floats: inf, or NaN where the format has no inf.


_ROUNDING_ALIASES = {
    "FLOOR": ("trn", "ap_trn", "ac_trn", "sc_trn", "floor", "roundTowardNegative", "toward_negative",
              "rtn", "down_directed", "truncate"),
    "CEIL": ("ceiling", "roundTowardPositive", "toward_positive", "rtp", "up"),
    "TOWARD_ZERO": ("zero", "trunc", "ap_trn_zero", "ac_trn_zero", "sc_trn_zero", "fix",
                    "roundTowardZero", "rtz", "chop"),
    "AWAY_FROM_ZERO": ("away", "roundAwayFromZero", "rna_directed"),
    "HALF_UP": ("nearest", "rnd", "ap_rnd", "ac_rnd", "sc_rnd", "round_half_up", "half_plus_inf"),
    "HALF_DOWN": ("ap_rnd_min_inf", "ac_rnd_min_inf", "sc_rnd_min_inf", "round_half_down",
                  "half_minus_inf"),
    "HALF_AWAY": ("round", "ap_rnd_inf", "ac_rnd_inf", "sc_rnd_inf", "roundTiesToAway", "rna",
                  "round_half_away"),
    "HALF_TOWARD_ZERO": ("ap_rnd_zero", "ac_rnd_zero", "sc_rnd_zero", "round_half_toward_zero",
                         "half_zero"),
    "HALF_EVEN": ("convergent", "ap_rnd_conv", "ac_rnd_conv", "sc_rnd_conv", "roundTiesToEven", "rne",
                  "round_half_even", "bankers", "even", "rn"),
    "HALF_ODD": ("ac_rnd_conv_odd", "round_half_odd", "odd_ties"),
    "JAM": ("von_neumann", "jamming", "sticky"),
    "STOCHASTIC": ("sr", "stochastic_rounding", "random"),
}

_OVERFLOW_ALIASES = {
    "WRAP": ("ap_wrap", "ac_wrap", "sc_wrap", "wrap_around", "modular", "twos_complement"),
    "SATURATE": ("sat", "ap_sat", "ac_sat", "sc_sat", "saturate", "satfinite", "clip", "clamp"),
    "SATURATE_SYMMETRIC": ("sat_sym", "ap_sat_sym", "ac_sat_sym", "sc_sat_sym", "symmetric"),
    "SATURATE_ZERO": ("sat_zero", "ap_sat_zero", "ac_sat_zero", "sc_sat_zero"),
    "ERROR": ("raise", "error", "check"),
    "IEEE": ("inf", "infinity", "nonsaturating", "non_saturating", "nan"),
}

_ALIASES = {Rounding: _ROUNDING_ALIASES, Overflow: _OVERFLOW_ALIASES}
_TABLES = {}          # enum -> its alias table (``_AliasedEnum._alias_table``)
