"""Number formats, described once, as data.

A format is a small frozen value that states its bit layout; range, resolution, codes and the numbers
handed to kernels are all derived from it. ``Fixed`` covers integers and fixed point, ``Float`` covers
IEEE-like and mini-float formats. ``parse_format`` reads the names this field writes (``int8``, ``Q1.15``,
``ap_fixed<16,6>``, ``fixdt(1,16,15)``, ``e4m3``, ``bf16`` ...) and ``str(fmt)`` writes one back.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from fxsim.errors import FxsimError, InvalidArgument, InvalidType
from fxsim.modes import Overflow, Rounding
from fxsim.validate import check_bool, check_choice, check_int

__all__ = ["Fixed", "Int", "Float", "parse_format", "PRESETS", "ML_DTYPES_NAMES", "format_table", "exact_number", "check_format"]


# --------------------------------------------------------------------------------------------------
# Fixed point and integers
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fixed:
    """Two's complement (or unsigned) fixed point: a ``bits``-wide integer code c meaning c * 2**-frac.

    - encoding: ``bits`` wide (1..64), the sign bit included when ``signed``
    - ``frac``: fractional bits; may be negative or exceed ``bits`` (ap_fixed's I = bits - frac)
    - specials: none; NaN and inf are not representable
    - ``rounding`` / ``overflow``: the modes the type carries, as ap_fixed<W,I,Q,O> and MATLAB fixdt do;
      None means "use quantize()'s defaults"
    """

    bits: int
    frac: int = 0
    signed: bool = True
    rounding: Rounding | None = field(default=None, compare=True)
    overflow: Overflow | None = field(default=None, compare=True)

    def __post_init__(self):
        object.__setattr__(self, "bits", check_int("bits", self.bits, lo=1, hi=64))
        object.__setattr__(self, "frac", check_int("frac", self.frac, lo=-1000, hi=1000))
        object.__setattr__(self, "signed", check_bool("signed", self.signed))
        if self.rounding is not None:
            object.__setattr__(self, "rounding", Rounding.parse(self.rounding, argument="rounding"))
        if self.overflow is not None:
            ov = Overflow.parse(self.overflow, argument="overflow")
            if ov == Overflow.IEEE:
                raise InvalidArgument("overflow=IEEE is for Float formats; Fixed allows wrap, saturate, "
                                 "saturate_symmetric, saturate_zero, error")
            object.__setattr__(self, "overflow", ov)

    kind = "fixed"

    @property
    def is_integer(self) -> bool:
        return self.frac == 0

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
        """Value of one LSB, 2**-frac."""
        return 2.0 ** -self.frac

    @property
    def min(self) -> float:
        return float(self.min_code) * 2.0 ** -self.frac

    @property
    def max(self) -> float:
        return float(self.max_code) * 2.0 ** -self.frac

    @property
    def num_codes(self) -> int:
        return 1 << self.bits

    @property
    def exact_in_float64(self) -> bool:
        """Whether every value of the format is a float64 (codes need at most 53 significant bits)."""
        return self.bits <= 53

    def decode(self, codes) -> np.ndarray:
        """Bit patterns (unsigned, ``bits`` wide) -> float64 values. Exact when the format fits float64."""
        ints = self.codes_to_ints(codes)
        if not self.exact_in_float64:
            big = np.abs(ints.astype(np.float64)) > 2.0 ** 53
            if np.any(big):
                raise InvalidArgument(f"{self}: codes wider than 53 bits have no exact float64 value; "
                                 "use codes_to_ints() for the integers")
        return ints_to_values(ints, self.frac)

    def codes_to_ints(self, codes) -> np.ndarray:
        """Bit patterns -> the stored two's complement integers (int64)."""
        c = np.asarray(codes)
        if c.dtype.kind not in "iu":
            raise InvalidType(f"codes must be an integer array, got dtype {c.dtype}")
        u = c.astype(np.uint64)
        if self.bits < 64:
            if np.any(u >> np.uint64(self.bits)):
                raise InvalidArgument(f"codes must fit in {self.bits} bits for {self}")
        ints = u.astype(np.int64)
        if self.signed and self.bits < 64:
            # sign-extend by shifting the sign bit to bit 63 and back (no intermediate leaves int64)
            sh = np.int64(64 - self.bits)
            ints = (ints << sh) >> sh
        elif not self.signed and self.bits == 64:
            raise InvalidArgument("unsigned 64-bit codes do not fit int64; use 63 bits or fewer")
        return ints

    def encode(self, values) -> np.ndarray:
        """Exactly representable values -> unsigned bit patterns (uint64). Raises on anything else."""
        v = np.asarray(values)
        if v.dtype.kind in "iu":
            ints = v.astype(np.int64) if self.frac == 0 else None
            if ints is None:
                v = v.astype(np.float64)
        if v.dtype.kind == "f" or v.dtype.kind not in "iu":
            v = np.asarray(v, dtype=np.float64)
            if not np.all(np.isfinite(v)):
                raise InvalidArgument(f"{self} cannot encode NaN or inf")
            scaled = np.ldexp(v, self.frac)
            if np.any(scaled != np.floor(scaled)) or np.any(np.abs(scaled) >= 2.0 ** 63):
                bad = np.flatnonzero((scaled != np.floor(scaled)) | (np.abs(scaled) >= 2.0 ** 63))[0]
                raise InvalidArgument(f"value {float(v.flat[bad])!r} (index {bad}) is not representable in {self}; "
                                 "quantize it first (fxsim.quantize)")
            ints = scaled.astype(np.int64)
        out_of_range = (ints < self.min_code) | (ints > self.max_code) if self.bits < 64 or self.signed else ints < 0
        if np.any(out_of_range):
            bad = np.flatnonzero(out_of_range)[0]
            raise InvalidArgument(f"value at index {bad} is outside the range of {self} "
                             f"[{self.min}, {self.max}]; quantize it first (fxsim.quantize)")
        u = ints.astype(np.uint64)
        if self.bits < 64:
            u &= np.uint64((1 << self.bits) - 1)
        return u

    def values(self) -> np.ndarray:
        """Every value of the format, ascending (formats with at most 2**16 codes)."""
        if self.bits > 16:
            raise InvalidArgument(f"{self} has 2**{self.bits} codes; values() lists at most 2**16")
        return np.ldexp(np.arange(self.min_code, self.max_code + 1, dtype=np.float64), -self.frac)

    def __str__(self):
        if self.rounding is not None or self.overflow is not None:
            r = Rounding.FLOOR if self.rounding is None else self.rounding
            o = Overflow.WRAP if self.overflow is None else self.overflow
            w, i = self.bits, self.bits - self.frac
            if r in _AP_ROUNDING_NAME and o in _AP_OVERFLOW_NAME:
                return f"ap_{'' if self.signed else 'u'}fixed<{w},{i},{_AP_ROUNDING_NAME[r]},{_AP_OVERFLOW_NAME[o]}>"
            if r == Rounding.HALF_ODD and o in _AP_OVERFLOW_NAME:   # Catapult only
                return (f"ac_fixed<{w},{i},{'true' if self.signed else 'false'},AC_RND_CONV_ODD,"
                        f"{_AP_OVERFLOW_NAME[o].replace('AP_', 'AC_')}>")
            return repr(self)   # modes no vendor type spells
        if self.frac == 0:
            return f"{'' if self.signed else 'u'}int{self.bits}"
        if self.signed and 0 < self.frac <= self.bits - 1:
            return f"Q{self.bits - 1 - self.frac}.{self.frac}"
        if not self.signed and 0 < self.frac <= self.bits:
            return f"UQ{self.bits - self.frac}.{self.frac}"
        return f"Fixed({self.bits},{self.frac}{'' if self.signed else ',signed=False'})"

    def __repr__(self):
        return f"Fixed({self.bits}, {self.frac}, signed={self.signed})" if self.rounding is None and \
            self.overflow is None else (f"Fixed({self.bits}, {self.frac}, signed={self.signed}, "
                                        f"rounding={None if self.rounding is None else self.rounding.name}, "
                                        f"overflow={None if self.overflow is None else self.overflow.name})")


def ints_to_values(ints, frac: int, out=None) -> np.ndarray:
    """Stored integers of a fixed-point register with ``frac`` fractional bits -> float64 values
    (ints * 2**-frac; integers beyond 2**53 round to nearest, as float64 does), into ``out`` when given.
    Multiplying by a power of two is exact while the result stays normal, and is several times faster
    than np.ldexp; any other ``frac`` takes np.ldexp."""
    if out is None:
        v = np.asarray(ints).astype(np.float64)
    else:
        v = out
        np.copyto(v, ints, casting="unsafe")
    if frac == 0:
        return v
    if -960 <= frac <= 1022:   # |ints| < 2**64: results neither overflow nor go subnormal
        v *= 2.0 ** -frac
        return v
    return np.ldexp(v, -frac, out=v)


def Int(bits: int, signed: bool = True) -> Fixed:
    """A ``bits``-wide integer: ``Fixed(bits, 0, signed)``."""
    return Fixed(bits, 0, signed)


# --------------------------------------------------------------------------------------------------
# Floating point
# --------------------------------------------------------------------------------------------------
_SPECIALS = ("ieee", "fn", "fnuz", "none")


@dataclass(frozen=True)
class Float:
    """A binary floating-point format with ``exp`` exponent and ``man`` stored mantissa bits.

    - encoding: [sign] | exponent field e (``exp`` bits) | mantissa field m (``man`` bits)
    - value: (1 + m/2**man) * radix**(e - bias) for normals; (m/2**man) * radix**(1 - bias) for e == 0
      (subnormals), or 0 there when ``subnormals`` is False (flush to zero)
    - ``bias``: default 2**(exp-1) - 1
    - ``specials``: "ieee" (e all ones: inf when m == 0, NaN otherwise), "fn" (no inf; NaN only at
      S.1..1.1..1), "fnuz" (no inf, no -0; NaN at the negative-zero code 1.0..0.0..0), "none"
    - ``zero``: False for formats whose e == 0 is an ordinary binade (E8M0: no zero code at all)
    - ``radix``: 2, or 4 for the radix-4 FP4 [1,3,0] of Sun et al. (NeurIPS 2020; needs man == 0)
    """

    exp: int
    man: int
    bias: int | None = None
    signed: bool = True
    specials: str = "ieee"
    subnormals: bool = True
    zero: bool = True
    radix: int = 2
    name: str | None = field(default=None, compare=False)

    kind = "float"

    def __post_init__(self):
        object.__setattr__(self, "exp", check_int("exp", self.exp, lo=1, hi=11))
        if isinstance(self.man, (int, np.integer)) and not isinstance(self.man, bool) and not 0 <= self.man <= 51:
            raise InvalidArgument(f"man must be an integer in 0..51 (values and roundings stay exact in "
                                  f"float64), got {self.man!r}")
        object.__setattr__(self, "man", check_int("man", self.man, lo=0, hi=51))
        if self.bias is None:
            object.__setattr__(self, "bias", (1 << (self.exp - 1)) - 1)
        object.__setattr__(self, "bias", check_int("bias", self.bias, lo=-2000, hi=2000))
        for name in ("signed", "subnormals", "zero"):
            object.__setattr__(self, name, check_bool(name, getattr(self, name)))
        check_choice("specials", self.specials, _SPECIALS)
        object.__setattr__(self, "radix", check_int("radix", self.radix, lo=2, hi=4))
        if self.radix not in (2, 4):
            raise InvalidArgument(f"radix must be 2 or 4, got {self.radix!r}")
        if self.radix == 4 and self.man != 0:
            raise InvalidArgument("radix-4 formats need man == 0 (levels spaced by factors of 4)")
        if self.specials == "fnuz" and not self.signed:
            raise InvalidArgument("specials='fnuz' needs a signed format (NaN sits at the negative-zero code)")
        if self.specials == "ieee" and self.exp < 2:
            raise InvalidArgument("specials='ieee' needs exp >= 2")
        # exact, in integers: the largest value is below 2**(top exponent + 1) and the smallest positive
        # value is 2**(lowest exponent); float64 holds both iff top <= 1023 and lowest >= -1074
        r = 1 if self.radix == 2 else 2
        top, _ = self._top_fields()
        top_exp = r * (top - self.bias)
        low_exp = r * self.emin - (self.man if self.zero and self.subnormals and self.man > 0 else 0)
        if low_exp < -1074 or top_exp > 1023:
            raise InvalidArgument(f"Float(exp={self.exp}, man={self.man}, bias={self.bias}) leaves float64's range "
                                  f"(its values span 2**{low_exp} .. below 2**{top_exp + 1}; float64 holds "
                                  "2**-1074 .. below 2**1024)")

    # ---- layout ---------------------------------------------------------------------------------
    @property
    def bits(self) -> int:
        return int(self.signed) + self.exp + self.man

    @property
    def num_codes(self) -> int:
        return 1 << self.bits

    @property
    def has_inf(self) -> bool:
        return self.specials == "ieee"

    @property
    def has_nan(self) -> bool:
        return self.specials != "none"

    @property
    def _emax_field(self) -> int:
        return (1 << self.exp) - 1

    @property
    def emin(self) -> int:
        """Exponent (in radix units) of the smallest normal value."""
        return (1 if self.zero else 0) - self.bias

    def _top_fields(self):
        """(exponent field, mantissa field) of the largest finite value."""
        top, mtop = self._emax_field, (1 << self.man) - 1
        if self.specials == "ieee":
            top -= 1
        elif self.specials == "fn":
            if self.man == 0:
                top -= 1
            else:
                mtop -= 1
        return top, mtop

    @cached_property
    def max(self) -> float:
        """Largest finite value (computed once: the format is frozen, and every quantize and GEMM asks)."""
        return float(self._magnitude(*self._top_fields()))

    @property
    def min(self) -> float:
        """Smallest finite value (most negative, or the smallest positive one for unsigned formats)."""
        if self.signed:
            return -self.max
        return 0.0 if self.zero else self.min_normal

    @property
    def min_normal(self) -> float:
        return float(self.radix) ** self.emin

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value."""
        if self.zero and self.subnormals and self.man > 0:
            return self.min_normal * 2.0 ** -self.man
        return self.min_normal

    @property
    def resolution(self) -> float:
        """Spacing of the grid just above zero (the smallest positive value)."""
        return self.min_subnormal

    def _magnitude(self, e, m):
        e = np.asarray(e, dtype=np.int64)
        m = np.asarray(m, dtype=np.float64)
        frac = m * 2.0 ** -self.man
        if self.radix == 2:
            normal = np.ldexp(1.0 + frac, e - self.bias)
            sub = np.ldexp(frac, self.emin) if self.subnormals else np.zeros_like(frac)
        else:
            normal = np.ldexp(1.0 + frac, 2 * (e - self.bias))
            sub = np.zeros_like(frac)
        if self.zero:
            return np.where(e == 0, sub, normal)
        return normal

    # ---- codes <-> values -----------------------------------------------------------------------
    def decode(self, codes) -> np.ndarray:
        """Bit patterns -> float64 values (exact). NaN codes give NaN, inf codes ±inf."""
        c = np.asarray(codes)
        if c.dtype.kind not in "iu":
            raise InvalidType(f"codes must be an integer array, got dtype {c.dtype}")
        c = c.astype(np.int64)
        if np.any((c < 0) | (c >= self.num_codes)):
            raise InvalidArgument(f"codes must lie in 0..{self.num_codes - 1} for {self}")
        m = c & ((1 << self.man) - 1)
        e = (c >> self.man) & self._emax_field
        s = (c >> (self.exp + self.man)) & 1 if self.signed else np.zeros_like(c)
        with np.errstate(over="ignore"):    # the inf/NaN codes' exponent field may overflow: replaced below
            mag = self._magnitude(e, m)
        val = np.where(s == 1, -mag, mag)
        nan = self._is_nan_code(s, e, m)
        if self.specials == "ieee":
            inf = (e == self._emax_field) & (m == 0)
            val = np.where(inf, np.where(s == 1, -np.inf, np.inf), val)
        return np.where(nan, np.nan, val)

    def _is_nan_code(self, s, e, m):
        if self.specials == "ieee":
            return (e == self._emax_field) & (m != 0)
        if self.specials == "fn":
            return (e == self._emax_field) & (m == (1 << self.man) - 1)
        if self.specials == "fnuz":
            return (s == 1) & (e == 0) & (m == 0)
        return np.zeros(np.shape(e), dtype=bool)

    def nan_code(self, negative: bool = False) -> int:
        """The canonical NaN bit pattern (ml_dtypes' choice); raises for formats without NaN."""
        if not self.has_nan:
            raise InvalidArgument(f"{self} has no NaN")
        sign = (1 << (self.exp + self.man)) if (negative and self.signed) else 0
        if self.specials == "fnuz":
            return 1 << (self.exp + self.man)
        if self.specials == "fn":
            return sign | (self._emax_field << self.man) | ((1 << self.man) - 1)
        return sign | (self._emax_field << self.man) | (1 << (self.man - 1) if self.man else 0)

    def encode(self, values) -> np.ndarray:
        """Representable values (NaN and ±inf where the format has them) -> uint64 bit patterns."""
        v = np.asarray(values, dtype=np.float64)
        flat = v.ravel()
        neg = np.signbit(flat)
        a = np.abs(flat)
        finite = np.isfinite(flat)
        with np.errstate(divide="ignore", invalid="ignore"):
            mant, ex = np.frexp(np.where(finite, a, 1.0))
            e2 = ex.astype(np.int64) - 1            # floor(log2 a)
            if self.radix == 2:
                e_unb = np.maximum(e2, self.emin)
                e_field = np.where(a >= self.min_normal, e_unb + self.bias, 0 if self.zero else e_unb + self.bias)
                m_field = np.ldexp(a, -e_unb + self.man) - np.where(a >= self.min_normal, 2.0 ** self.man, 0.0)
            else:
                e4 = np.floor_divide(e2, 2)
                e_field = np.where(a >= self.min_normal, e4 + self.bias, 0)
                m_field = np.zeros_like(a)
        e_field = np.where(finite & (a > 0), e_field, 0).astype(np.int64)
        m_field = np.where(finite & (a > 0), m_field, 0.0)
        mi = m_field.astype(np.int64)
        codes = (e_field << self.man) | mi
        if self.signed:
            codes = codes | (neg.astype(np.int64) << (self.exp + self.man))
        if self.specials == "fnuz":
            codes = np.where(finite & (a == 0), 0, codes)   # no negative zero: -0 encodes as +0
        nan = np.isnan(flat)
        posinf = np.isposinf(flat)
        neginf = np.isneginf(flat)
        if np.any(nan):
            if not self.has_nan:
                raise InvalidArgument(f"{self} has no NaN code")
            codes = np.where(nan, np.where(neg, self.nan_code(True), self.nan_code(False)), codes)
        if np.any(posinf | neginf):
            if not self.has_inf:
                raise InvalidArgument(f"{self} has no infinity")
            inf_code = self._emax_field << self.man
            sign_bit = 1 << (self.exp + self.man)
            codes = np.where(posinf, inf_code, np.where(neginf, inf_code | sign_bit, codes))
        ok = (~finite) | ((m_field == mi) & (mi >= 0) & (mi < (1 << self.man)) & (e_field >= 0)
                          & (e_field <= self._emax_field) & (codes >= 0) & (codes < self.num_codes))
        if not self.signed:
            ok &= ~(neg & (a > 0))
        if not self.zero:
            ok &= ~(finite & (a == 0))
        safe = np.where(ok, codes, 0)
        back = self.decode(safe)
        ok &= (back == flat) | (~finite) | ((a == 0) & (back == 0))
        if not np.all(ok):
            bad = int(np.flatnonzero(~ok)[0])
            raise InvalidArgument(f"value {float(flat[bad])!r} (index {bad}) is not representable in {self}; "
                             "quantize it first (fxsim.quantize)")
        return codes.astype(np.uint64).reshape(v.shape)

    def values(self) -> np.ndarray:
        """Every distinct non-NaN value, ascending (formats with at most 2**16 codes)."""
        if self.bits > 16:
            raise InvalidArgument(f"{self} has 2**{self.bits} codes; values() lists at most 2**16")
        vals = self.decode(np.arange(self.num_codes))
        vals = vals[~np.isnan(vals)]
        return np.unique(vals)   # unique also merges +0 and -0

    # ---- naming ---------------------------------------------------------------------------------
    def __str__(self):
        for key, preset in _FLOAT_PRESET_ITEMS():
            if preset == self:
                return key
        parts = [f"e{self.exp}m{self.man}"]
        if self.bias != (1 << (self.exp - 1)) - 1:
            parts.append(f"b{self.bias}")
        if self.specials != "ieee":
            parts.append(self.specials)
        if not self.subnormals:
            parts.append("ftz")
        if not self.signed:
            parts.append("u")
        if not self.zero:
            parts.append("nz")
        if self.radix != 2:
            parts.append(f"r{self.radix}")
        name = "_".join(parts)
        if name in PRESETS or name in _ALIASES:   # e.g. IEEE-like E4M3: bare "e4m3" is OCP's E4M3 ("fn")
            name = f"{parts[0]}_ieee" + name[len(parts[0]):]
        return name

    def __repr__(self):
        return (f"Float(exp={self.exp}, man={self.man}, bias={self.bias}, signed={self.signed}, "
                f"specials={self.specials!r}, subnormals={self.subnormals}, zero={self.zero}, "
                f"radix={self.radix})")


# --------------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------------
INT4, INT8, UINT4, UINT8 = Int(4), Int(8), Int(4, False), Int(8, False)
INT16, INT32 = Int(16), Int(32)

E4M3 = Float(4, 3, specials="fn")                 # OCP OFP8 E4M3 ("fn"), ml_dtypes float8_e4m3fn
E5M2 = Float(5, 2)                                # OCP OFP8 E5M2, IEEE-like
E4M3FNUZ = Float(4, 3, bias=8, specials="fnuz")   # ml_dtypes float8_e4m3fnuz
E5M2FNUZ = Float(5, 2, bias=16, specials="fnuz")  # ml_dtypes float8_e5m2fnuz
E4M3B11FNUZ = Float(4, 3, bias=11, specials="fnuz")  # HFP8 forward format, ml_dtypes float8_e4m3b11fnuz
E2M1 = Float(2, 1, specials="none")               # OCP MX FP4
E2M3 = Float(2, 3, specials="none")               # OCP MX FP6
E3M2 = Float(3, 2, specials="none")               # OCP MX FP6
E8M0 = Float(8, 0, bias=127, signed=False, specials="fn", zero=False)  # OCP MX scale
FP4_E3M0 = Float(3, 0, bias=3, specials="none")   # FP4 [1,3,0], radix 2 (LUQ grid, before scaling)
FP4_E3M0_R4 = Float(3, 0, bias=3, specials="none", radix=4)  # FP4 [1,3,0], radix 4 (Sun et al. 2020)
FP16 = Float(5, 10)
BF16 = Float(8, 7)
FP32 = Float(8, 23)
E8M13 = Float(8, 13)                              # FP32 with a shortened mantissa (accumulators)
E6M9 = Float(6, 9)

PRESETS = {
    "int4": INT4, "int8": INT8, "uint4": UINT4, "uint8": UINT8, "int16": INT16, "int32": INT32,
    "e4m3": E4M3, "e5m2": E5M2, "e4m3fnuz": E4M3FNUZ, "e5m2fnuz": E5M2FNUZ, "e4m3b11fnuz": E4M3B11FNUZ,
    "e2m1": E2M1, "e2m3": E2M3, "e3m2": E3M2, "e8m0": E8M0,
    "fp4_e3m0": FP4_E3M0, "fp4_e3m0_r4": FP4_E3M0_R4,
    "fp16": FP16, "bf16": BF16, "fp32": FP32, "e8m13": E8M13,
}

_ALIASES = {
    "fp8_e4m3": "e4m3", "float8_e4m3fn": "e4m3", "e4m3fn": "e4m3", "fp8_e5m2": "e5m2", "float8_e5m2": "e5m2",
    "float8_e4m3fnuz": "e4m3fnuz", "float8_e5m2fnuz": "e5m2fnuz", "float8_e4m3b11fnuz": "e4m3b11fnuz",
    "fp4": "e2m1", "fp4_e2m1": "e2m1", "float4_e2m1fn": "e2m1", "mxfp4": "e2m1",
    "fp6_e2m3": "e2m3", "float6_e2m3fn": "e2m3", "fp6_e3m2": "e3m2", "float6_e3m2fn": "e3m2",
    "float8_e8m0fnu": "e8m0", "e8m0fnu": "e8m0", "fp4_130": "fp4_e3m0", "luq_fp4": "fp4_e3m0",
    "fp4_e3m0_radix4": "fp4_e3m0_r4", "float16": "fp16", "half": "fp16", "bfloat16": "bf16",
    "float32": "fp32", "single": "fp32", "fp22": "e8m13",
}


def _FLOAT_PRESET_ITEMS():
    return [(k, v) for k, v in PRESETS.items() if isinstance(v, Float)]


_AP_ROUNDING_NAME = {Rounding.FLOOR: "AP_TRN", Rounding.TOWARD_ZERO: "AP_TRN_ZERO", Rounding.HALF_UP: "AP_RND",
                     Rounding.HALF_TOWARD_ZERO: "AP_RND_ZERO", Rounding.HALF_DOWN: "AP_RND_MIN_INF",
                     Rounding.HALF_AWAY: "AP_RND_INF", Rounding.HALF_EVEN: "AP_RND_CONV"}
_AP_OVERFLOW_NAME = {Overflow.WRAP: "AP_WRAP", Overflow.SATURATE: "AP_SAT", Overflow.SATURATE_ZERO: "AP_SAT_ZERO",
                     Overflow.SATURATE_SYMMETRIC: "AP_SAT_SYM"}

#: ml_dtypes' type names -> the fxsim format each is (bare fxsim names follow OCP: ``e4m3`` is
#: ``float8_e4m3fn``, not ml_dtypes' IEEE-like ``float8_e4m3``, which fxsim spells ``e4m3_ieee``).
ML_DTYPES_NAMES = {
    "float8_e4m3fn": "e4m3", "float8_e4m3": "e4m3_ieee", "float8_e5m2": "e5m2", "float8_e4m3fnuz": "e4m3fnuz",
    "float8_e5m2fnuz": "e5m2fnuz", "float8_e4m3b11fnuz": "e4m3b11fnuz", "float8_e3m4": "e3m4",
    "float8_e8m0fnu": "e8m0", "float6_e2m3fn": "e2m3", "float6_e3m2fn": "e3m2", "float4_e2m1fn": "e2m1",
    "bfloat16": "bf16", "int2": "int2", "uint2": "uint2", "int4": "int4", "uint4": "uint4",
}
#: NumPy's own dtypes that are formats here (float64 is not: its 52 mantissa bits leave the exact range).
NUMPY_DTYPE_NAMES = {"float16": "fp16", "float32": "fp32", "int8": "int8", "int16": "int16", "int32": "int32",
                     "int64": "int64", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32",
                     "uint64": "uint64"}
for _k, _v in ML_DTYPES_NAMES.items():
    if _k != _v and _k not in PRESETS:
        _ALIASES.setdefault(_k, _v)

_RE_INT = re.compile(r"^(u?)int(\d+)$")
_RE_Q = re.compile(r"^(u?)q(\d+)\.(\d+)$")
_RE_VENDOR = re.compile(r"^(ap|ac)_(u?)(fixed|int)<(.*)>$")
_RE_HLS4ML = re.compile(r"^(u?)(fixed|int)<(.*)>$")
_RE_FIXED_CALL = re.compile(r"^fixed\((\d+),(-?\d+)(?:,signed=(true|false))?\)$")
_RE_FIXDT = re.compile(r"^fixdt\(\s*([01]|true|false)\s*,\s*(\d+)\s*,\s*(-?\d+)\s*\)$")
_RE_EM = re.compile(r"^(?:fp\d+_)?e(\d+)m(\d+)((?:_[a-z0-9]+)*)$")

_NAMES_HELP = ("intN, uintN, Qm.n, UQm.n, Fixed(W,F), fixed<W,I[,Q,O]>, ufixed<W,I>, int<N>, uint<N> (hls4ml), "
               "ap_fixed<W,I[,Q,O,N]>, ap_ufixed, ap_int<W>, ap_uint<W>, ac_fixed<W,I[,S,Q,O]>, ac_int<W[,S]>, "
               "fixdt(s,w,f), eXmY[_suffixes], ml_dtypes names (float8_e4m3fn, ...), NumPy/ml_dtypes dtypes")


def _dtype_name(spec):
    """The dtype name of a NumPy dtype, a scalar type (np.int8) or an ml_dtypes type; None otherwise."""
    if isinstance(spec, np.dtype):
        return spec.name
    if isinstance(spec, type):
        try:
            return np.dtype(spec).name
        except TypeError:
            return None
    return None


def parse_format(spec, *, argument: str = "format"):
    """Return the format named by ``spec`` (a format object is returned as is).

    Accepted (names case-insensitive):

    - presets (``int8``, ``e4m3``, ``fp8_e5m2``, ``bf16`` ...) and ``intN``/``uintN``;
    - ml_dtypes names (``float8_e4m3fn``, ``float8_e4m3``, ``float4_e2m1fn``, ``int4`` ...) and dtype
      objects: ``np.int8``, ``np.dtype("float16")``, ``ml_dtypes.float8_e4m3fn``;
    - ``Qm.n``/``UQm.n`` (m integer bits *excluding* the sign bit, TI/ARM convention: Q1.15 is 17 bits,
      Q0.15 is int16 with 15 fractional bits; UQm.n has m + n bits) and ``Fixed(W,F)`` (F fractional bits);
    - hls4ml: ``fixed<W,I[,Q,O]>``, ``ufixed<W,I>``, ``int<N>``, ``uint<N>`` (W total bits, I integer bits
      counting the sign; the same types as ``ap_fixed<W,I,...>``, ``ap_int<N>``);
    - Vitis HLS: ``ap_fixed<W,I[,Q[,O[,N]]]>``/``ap_ufixed``/``ap_int<W>``/``ap_uint<W>``; the type's Q/O
      modes are carried, defaulting to AP_TRN/AP_WRAP as in Vitis HLS. AP_WRAP with N > 0 saturation bits
      and AP_WRAP_SM are refused (not modelled);
    - Catapult: ``ac_fixed<W,I[,S[,Q[,O]]]>`` (S: signed, default true; defaults AC_TRN, AC_WRAP) and
      ``ac_int<W[,S]>``;
    - MATLAB ``fixdt(signed, word, frac)`` (carries fi's defaults Nearest/Saturate);
    - ``eXmY[_bB][_ieee|_fn|_fnuz|_none][_ftz][_u][_nz][_r4]``.
    """
    if isinstance(spec, (Fixed, Float)):
        return spec
    dname = _dtype_name(spec)
    if dname is not None:
        key = ML_DTYPES_NAMES.get(dname) or NUMPY_DTYPE_NAMES.get(dname)
        if key is None:
            raise InvalidArgument(f"{argument}: dtype {dname} is not a format fxsim models; dtypes accepted: "
                                  f"{', '.join(list(NUMPY_DTYPE_NAMES) + list(ML_DTYPES_NAMES))}")
        return parse_format(key, argument=argument)
    if not isinstance(spec, str):
        raise InvalidType(f"{argument} must be a format, a format name or a dtype, got {type(spec).__name__} "
                          f"{spec!r}")
    text = spec.strip()
    key = text.lower().replace(" ", "")
    key = _ALIASES.get(key, key)
    if key in PRESETS:
        return PRESETS[key]
    m = _RE_INT.match(key)
    if m:
        return _fixed_or_error(spec, argument, int(m.group(2)), 0, not m.group(1))
    m = _RE_Q.match(key)
    if m:
        unsigned, ib, fb = bool(m.group(1)), int(m.group(2)), int(m.group(3))
        return _fixed_or_error(spec, argument, ib + fb + (0 if unsigned else 1), fb, not unsigned)
    m = _RE_FIXED_CALL.match(key)
    if m:
        return _fixed_or_error(spec, argument, int(m.group(1)), int(m.group(2)), m.group(3) != "false")
    m = _RE_FIXDT.match(key)
    if m:
        signed = m.group(1) in ("1", "true")
        return _fixed_or_error(spec, argument, int(m.group(2)), int(m.group(3)), signed,
                               Rounding.HALF_UP, Overflow.SATURATE)
    m = _RE_VENDOR.match(key)
    if m:
        return _parse_vendor(spec, argument, m.group(1), bool(m.group(2)), m.group(3),
                             [a.strip() for a in m.group(4).split(",")])
    m = _RE_HLS4ML.match(key)
    if m:   # hls4ml writes ap_fixed<...> as fixed<...> and its modes without the AP_ prefix
        return _parse_vendor(spec, argument, "ap", bool(m.group(1)), m.group(2),
                             [a.strip() for a in m.group(3).split(",")], style="hls4ml")
    m = _RE_EM.match(key)
    if m:
        return _parse_em(spec, argument, int(m.group(1)), int(m.group(2)), m.group(3))
    raise InvalidArgument(f"{argument}: unknown format {spec!r}; known names: {', '.join(PRESETS)}, or "
                          f"{_NAMES_HELP} (run `fxsim formats` for the list)")


def _vendor_mode(enum, token, prefix, spec, argument, what):
    t = token.lower()
    for cand in ((t if t.startswith(prefix + "_") else f"{prefix}_{t}"), t):
        try:
            return enum.parse(cand)
        except ValueError:
            pass
    raise InvalidArgument(f"{argument} {spec!r}: {what} must be one of "
                          f"{', '.join(sorted({a.upper() for m in enum for a in m.aliases if a.startswith(prefix + '_')}))}"
                          f", got {token!r}")


def _parse_vendor(spec, argument, family, unsigned, kind, args, *, style=None):
    """ap_/ac_/hls4ml spellings -> Fixed, with the vendor's defaults and parameter order."""
    name = style or family
    usage = {"ap": "ap_fixed<W,I[,Q[,O[,N]]]>, ap_ufixed<W,I[,Q[,O[,N]]]>, ap_int<W>, ap_uint<W>",
             "ac": "ac_fixed<W,I[,S[,Q[,O]]]>, ac_int<W[,S]>",
             "hls4ml": "fixed<W,I[,Q[,O[,N]]]>, ufixed<W,I[,Q[,O[,N]]]>, int<W>, uint<W>"}[name]

    def bad(why):
        return InvalidArgument(f"{argument}: cannot read {spec!r} ({why}); expected {usage}")

    def integer(text, what):
        if not re.fullmatch(r"-?\d+", text or ""):
            raise bad(f"{what} must be an integer, got {text!r}")
        return int(text)

    def boolean(text):
        t = text.lower()
        if t in ("true", "1"):
            return True
        if t in ("false", "0"):
            return False
        raise bad(f"S (signedness) must be true or false, got {text!r}")

    if family == "ac" and unsigned:
        raise bad(f"Catapult has no ac_u{kind}; unsigned is the S parameter: "
                  + ("ac_fixed<W,I,false>" if kind == "fixed" else "ac_int<W,false>"))
    signed = not unsigned
    if kind == "int":
        if family == "ac":
            if not 1 <= len(args) <= 2:
                raise bad(f"{len(args)} parameters")
            if len(args) == 2:
                signed = boolean(args[1])
        elif len(args) != 1:
            raise bad(f"{len(args)} parameters")
        return _fixed_or_error(spec, argument, integer(args[0], "W"), 0, signed)
    if family == "ac":
        if not 2 <= len(args) <= 5:
            raise bad(f"{len(args)} parameters")
        if len(args) > 2:
            signed = boolean(args[2])
        modes = args[3:]
        n_bits = 0
    else:
        if not 2 <= len(args) <= 5:
            raise bad(f"{len(args)} parameters")
        modes = args[2:4]
        n_bits = integer(args[4], "N") if len(args) > 4 else 0
    w, i = integer(args[0], "W"), integer(args[1], "I")
    prefix = "ac" if family == "ac" else "ap"
    q = _vendor_mode(Rounding, modes[0], prefix, spec, argument, "rounding") if len(modes) > 0 else Rounding.FLOOR
    o_tok = modes[1].lower() if len(modes) > 1 else ""
    if o_tok in ("ap_wrap_sm", "wrap_sm"):
        raise InvalidArgument(f"{argument} {spec!r}: AP_WRAP_SM (sign-magnitude wrap) is not modelled; "
                              "use AP_WRAP, AP_SAT, AP_SAT_ZERO or AP_SAT_SYM")
    o = _vendor_mode(Overflow, modes[1], prefix, spec, argument, "overflow") if len(modes) > 1 else Overflow.WRAP
    if o not in (Overflow.WRAP, Overflow.SATURATE, Overflow.SATURATE_ZERO, Overflow.SATURATE_SYMMETRIC):
        raise bad(f"overflow {modes[1]!r} is not a {prefix}_fixed mode")
    if n_bits < 0:
        raise bad(f"N must be >= 0, got {n_bits}")
    if n_bits and o != Overflow.WRAP:
        raise InvalidArgument(f"{argument} {spec!r}: N={n_bits} saturation bits apply to the AP_WRAP modes "
                              f"only, not {_AP_OVERFLOW_NAME[o]}")
    if n_bits:
        raise InvalidArgument(f"{argument} {spec!r}: AP_WRAP with N={n_bits} saturation bits is not modelled; "
                              "only N=0 (plain two's complement wrap) is")
    return _fixed_or_error(spec, argument, w, w - i, signed, q, o)


def _fixed_or_error(spec, argument, bits, frac, signed, rounding=None, overflow=None):
    try:
        return Fixed(bits, frac, signed, rounding, overflow)
    except ValueError as exc:
        raise InvalidArgument(f"{argument} {spec!r}: {exc}") from None


def _parse_em(spec, argument, e, m, suffix):
    kw = {}
    for part in [p for p in suffix.split("_") if p]:
        if part.startswith("b") and part[1:].lstrip("-").isdigit():
            kw["bias"] = int(part[1:])
        elif part in _SPECIALS:
            kw["specials"] = part
        elif part == "ftz":
            kw["subnormals"] = False
        elif part == "u":
            kw["signed"] = False
        elif part == "nz":
            kw["zero"] = False
        elif part == "r4":
            kw["radix"] = 4
        else:
            raise InvalidArgument(f"{argument} {spec!r}: unknown suffix {part!r}; allowed: bN, fn, fnuz, none, "
                                  "ieee, ftz, u, nz, r4")
    try:
        return Float(e, m, **kw)
    except ValueError as exc:
        raise InvalidArgument(f"{argument} {spec!r}: {exc}") from None


def exact_number(v) -> str:
    """A format's min/max/resolution written exactly: integers in full (int32's min is -2147483648),
    powers of two as 2**k, short exact decimals as such (31.9990234375), anything else as m*2**k with m
    an odd integer (FP32's max is 16777215*2**104). Every value of a format here is a float64."""
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if v == int(v) and abs(v) < 2.0 ** 64:
        return str(int(v))
    sign = "-" if v < 0 else ""
    m, e = np.frexp(abs(v))
    if m == 0.5:
        return f"{sign}2**{int(e) - 1}"
    from decimal import Decimal
    dec = format(Decimal(v), "f")
    if len(dec) <= 20:
        return dec
    num, den = abs(v).as_integer_ratio()   # den is a power of two; num odd when den > 1
    k = -(den.bit_length() - 1)
    while num % 2 == 0:
        num //= 2
        k += 1
    return f"{sign}{num}*2**{k}"


def _aliases_of(key):
    return sorted(a for a, k in _ALIASES.items() if k == key)


def format_table(filter: str | None = None):
    """Rows describing every named format: name, bits, min, max, resolution (Python ints for integer
    formats, else float64), specials, the ml_dtypes/NumPy dtype it is (if any) and its aliases.

    ``filter``: keep rows whose name or an alias contains it (case-insensitive); a filter that is itself
    a format spelling (``ap_fixed<16,6>``, ``float8_e4m3``) gives that format's row."""
    names = dict(PRESETS)
    for key in list(ML_DTYPES_NAMES.values()):
        names.setdefault(key, parse_format(key))
    dtype_of = {}
    for dname, key in list(ML_DTYPES_NAMES.items()) + list(NUMPY_DTYPE_NAMES.items()):
        dtype_of.setdefault(parse_format(key), dname)
    items = list(names.items())
    if filter:
        f = filter.strip().lower()
        chosen = [(k, v) for k, v in items if f in k or any(f in a for a in _aliases_of(k))]
        if not chosen:
            try:
                fmt = parse_format(filter, argument="filter")
            except (ValueError, TypeError):
                fmt = None
            if fmt is not None:
                chosen = [(k, v) for k, v in items if v == fmt] or [(filter.strip(), fmt)]
        items = chosen
    rows = []
    for name, f in items:
        if isinstance(f, Fixed):
            specials = "none"
            if f.frac == 0:
                lo, hi, res = f.min_code, f.max_code, 1
            else:
                lo, hi, res = f.min, f.max, f.resolution
        else:
            specials = {"ieee": "inf, NaN", "fn": "NaN (all-ones code)", "fnuz": "NaN (negative-zero code)",
                        "none": "none"}[f.specials]
            if not f.zero:
                specials += "; no zero"
            lo, hi, res = f.min, f.max, f.resolution
        rows.append({"name": name, "bits": f.bits, "min": lo, "max": hi, "resolution": res, "specials": specials,
                     "dtype": dtype_of.get(f, ""), "aliases": _aliases_of(name), "format": f})
    return rows


def check_format(name: str, value):
    """A number format (``Fixed``/``Float`` or any name ``parse_format`` takes); errors are typed."""
    if isinstance(value, (Fixed, Float)):
        return value
    if not isinstance(value, str):
        try:
            fmt = parse_format(value, argument=name)
        except FxsimError:
            raise
        except (ValueError, TypeError):
            raise InvalidType(f"{name} must be a format (a name such as 'int8', 'e4m3', 'Q3.4', or a Fixed/Float), "
                              f"got {value!r} ({type(value).__name__})") from None
    else:
        try:
            fmt = parse_format(value, argument=name)
        except FxsimError:
            raise
        except (ValueError, TypeError) as exc:
            raise InvalidArgument(str(exc)) from None
    if not isinstance(fmt, (Fixed, Float)):
        raise InvalidType(f"{name} must be a format, got {value!r}")
    return fmt
