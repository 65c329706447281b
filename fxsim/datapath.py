"""A datapath is a value: the hardware that computes a dot product, described part by part.

    Datapath(a="int8", b="int8", accumulator=Accumulator("int24", overflow="saturate"),
             order=Order("chunked", lanes=4), output=OutputStage(requant=Requant.dyadic(1234, 20), fmt="int8"))

Operands -> (zero points subtracted) -> multiplier -> product register -> alignment to the accumulator's
binary point -> accumulator (overflow applied after every addition, in the stated order) -> output stage
(bias add, requantization, activation clamp, output register).

Registers come in two kinds, each a type of its own with only the options that kind has:

- fixed point (integers): :class:`IntAccumulator`, :class:`IntProduct` -- ``overflow`` after every
  addition (wrap, saturate, ...) and ``rounding`` of the product LSBs dropped to reach the register's
  binary point (alignment);
- floating point: :class:`FloatAccumulator`, :class:`FloatProduct` -- ``rounding`` of every addition (or
  of the product), ``overflow`` ieee/saturate/error, stochastic rounding's ``random_bits``/``seed``.

``Accumulator(fmt, ...)`` and ``Product(fmt, ...)`` build the type that fits the format.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fxsim.errors import InvalidArgument, InvalidType
from fxsim.formats import Fixed, Float, parse_format
from fxsim.modes import Overflow, Rounding
from fxsim.formats import check_format
from fxsim.validate import check_bool, check_choice, check_int, check_real

__all__ = ["Accumulator", "IntAccumulator", "FloatAccumulator", "Product", "IntProduct", "FloatProduct",
           "Register", "Order", "Requant", "OutputStage", "Datapath", "register_defaults"]

#: The modes a register has unless told otherwise, by kind of register (the one place that decides).
#: Fixed point: dropped LSBs are cut (floor, as hardware that just drops wires) and overflow wraps (two's
#: complement adders). Floating point: IEEE 754's default, round to nearest even and overflow to
#: infinity (NaN in formats without infinity).
_REGISTER_DEFAULTS = {"fixed": (Rounding.FLOOR, Overflow.WRAP), "float": (Rounding.HALF_EVEN, Overflow.IEEE)}

#: The modes each kind of register allows.
_OVERFLOWS = {"float": (Overflow.IEEE, Overflow.SATURATE, Overflow.ERROR),
              "fixed": (Overflow.WRAP, Overflow.SATURATE, Overflow.SATURATE_SYMMETRIC, Overflow.SATURATE_ZERO)}
_ROUNDINGS = {"float": tuple(Rounding),
              "fixed": tuple(r for r in Rounding if r != Rounding.STOCHASTIC)}
_KIND_NAMES = {"fixed": "fixed-point", "float": "floating-point"}
_MAX_SEED = 2 ** 63 - 1


def _kind(fmt) -> str:
    return "float" if isinstance(fmt, Float) else "fixed"


def _names(modes) -> str:
    names = [m.name.lower() for m in modes]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def register_defaults(fmt) -> tuple:
    """``(rounding, overflow)`` a register of format ``fmt`` has unless told otherwise: ``(floor, wrap)``
    for fixed point, ``(half_even, ieee)`` for floating point."""
    return _REGISTER_DEFAULTS[_kind(parse_format(fmt))]


def register_modes(fmt, rounding, overflow, argument: str) -> tuple:
    """``rounding``/``overflow`` for a register of ``fmt`` (None = the kind's default), checked: a float
    register takes any rounding and ieee, saturate or error; a fixed-point one a deterministic rounding
    and wrap or a saturation."""
    kind = _kind(fmt)
    d_round, d_ovf = _REGISTER_DEFAULTS[kind]
    r = d_round if rounding is None else Rounding.parse(rounding, argument=f"{argument} rounding")
    ov = d_ovf if overflow is None else Overflow.parse(overflow, argument=f"{argument} overflow")
    if ov not in _OVERFLOWS[kind]:
        raise InvalidArgument(f"{argument} overflow must be {_names(_OVERFLOWS[kind])} for a {_KIND_NAMES[kind]} "
                              f"register ({fmt}), got {ov.name.lower()}")
    if r not in _ROUNDINGS[kind]:
        raise InvalidArgument(f"{argument} rounding='{r.name.lower()}' is not supported by the integer engine: a "
                              f"{_KIND_NAMES[kind]} register ({fmt}) rounds deterministically here; use "
                              f"{_names(_ROUNDINGS[kind])}")
    return r, ov


def _fixed(value, argument):
    return check_format(argument, value)


def _register_format(value, argument: str, kind: str, cls_name: str, other: str, base: str):
    """``value`` as a format of ``kind``; a format of the other kind names the type that holds it."""
    fmt = check_format(argument, value)
    if _kind(fmt) != kind:
        raise InvalidArgument(f"{argument} {fmt} is {_KIND_NAMES[_kind(fmt)]}; {cls_name} holds a "
                              f"{_KIND_NAMES[kind]} format: use {other}, or {base}(...), which picks the type "
                              "from the format")
    return fmt


def _show(value) -> str:
    return repr(value.name.lower()) if isinstance(value, (Rounding, Overflow)) else repr(value)


def _int_overflow(value, argument):
    ov = Overflow.parse(value, argument=argument)
    if ov in (Overflow.IEEE, Overflow.ERROR):
        raise InvalidArgument(f"{argument} must be wrap, saturate, saturate_symmetric or saturate_zero for a "
                         f"fixed-point register, got {ov.name.lower()}")
    return ov


def _stochastic_options(reg, argument: str):
    """``random_bits``/``seed`` of a float register: checked, and only with stochastic rounding."""
    check_int(f"{argument} random_bits", reg.random_bits, lo=1, hi=62, allow_none=True)
    check_int(f"{argument} seed", reg.seed, lo=0, hi=_MAX_SEED, allow_none=True)
    if reg.rounding != Rounding.STOCHASTIC:
        for name in ("random_bits", "seed"):
            if getattr(reg, name) is not None:
                raise InvalidArgument(f"{argument} {name}={getattr(reg, name)!r} applies to stochastic rounding "
                                      f"only, and this {reg.fmt} register rounds {reg.rounding.name.lower()}; give "
                                      f"rounding='stochastic' or drop {name}")


class _ByFormat(type):
    """Calling a register's base class (``Accumulator``, ``Product``) builds the type for the format's kind;
    calling a concrete type builds that type."""

    def __call__(cls, *args, **kwargs):
        build = cls.__dict__.get("_build")
        if build is not None:
            return build.__func__(*args, **kwargs)
        return super().__call__(*args, **kwargs)


class Register(metaclass=_ByFormat):
    """What every register type has: ``fmt``, ``rounding``, ``overflow``, and its ``kind`` ("fixed" or
    "float") with that kind's defaults (:func:`register_defaults`)."""

    kind = ""

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @classmethod
    def defaults(cls) -> tuple:
        """``(rounding, overflow)`` this type has unless told otherwise."""
        return _REGISTER_DEFAULTS[cls.kind]


class Accumulator(Register):
    """The accumulator register. ``Accumulator(fmt, overflow=None, rounding=None, random_bits=None,
    seed=None, flush_subnormals=False)`` builds the type for the format's kind:

    - :class:`IntAccumulator` for fixed point: ``overflow`` wrap (default), saturate, saturate_symmetric
      or saturate_zero after every addition; ``rounding`` of the products' dropped LSBs (alignment),
      default floor (dropping wires).
    - :class:`FloatAccumulator` for floating point: ``rounding`` rounds every addition, default half_even;
      ``overflow`` ieee (default: inf, or NaN for formats without inf), saturate or error;
      ``random_bits``/``seed`` drive stochastic rounding, ``flush_subnormals`` flushes subnormal sums.

    Options of the other kind are errors. ``isinstance(x, Accumulator)`` holds for both types.
    """

    @staticmethod
    def _build(fmt="int32", overflow=None, rounding=None, random_bits=None, seed=None, flush_subnormals=False):
        check_int("accumulator random_bits", random_bits, lo=1, hi=62, allow_none=True)
        check_int("accumulator seed", seed, lo=0, hi=_MAX_SEED, allow_none=True)
        flush_subnormals = check_bool("accumulator flush_subnormals", flush_subnormals)
        fmt = check_format("accumulator format", fmt)
        if isinstance(fmt, Float):
            return FloatAccumulator(fmt, overflow, rounding, random_bits, seed, flush_subnormals)
        for name, value, unset in (("random_bits", random_bits, None), ("seed", seed, None),
                                   ("flush_subnormals", flush_subnormals, False)):
            if value != unset:
                raise InvalidArgument(f"accumulator {name}={value!r} does not apply to a fixed-point accumulator "
                                      f"({fmt}); it is for float accumulators")
        return IntAccumulator(fmt, overflow, rounding)


@dataclass(frozen=True)
class IntAccumulator(Accumulator):
    """A fixed-point/integer accumulator: ``fmt`` (a ``Fixed``: bits, frac, signed), ``overflow`` applied
    after every addition (wrap, default; saturate, saturate_symmetric, saturate_zero) and ``rounding`` of
    the LSBs a product drops when it has more fractional bits than the accumulator (default floor).

        IntAccumulator("int24", overflow="saturate")
    """

    fmt: Fixed | str = "int32"
    overflow: Overflow | str | None = None
    rounding: Rounding | str | None = None

    kind = "fixed"
    random_bits = None          # float-only options, absent here (read as unset)
    seed = None
    flush_subnormals = False

    def __post_init__(self):
        fmt = _register_format(self.fmt, "accumulator format", "fixed", "IntAccumulator", "FloatAccumulator", "Accumulator")
        object.__setattr__(self, "fmt", fmt)
        rounding, overflow = register_modes(fmt, self.rounding, self.overflow, "accumulator")
        object.__setattr__(self, "rounding", rounding)
        object.__setattr__(self, "overflow", overflow)

    @property
    def bits(self) -> int:
        return self.fmt.bits

    @property
    def frac(self) -> int:
        return self.fmt.frac

    @property
    def signed(self) -> bool:
        return self.fmt.signed

    def __str__(self):
        return f"{self.fmt} acc, {self.overflow.name.lower()} after every add, align {self.rounding.name.lower()}"


@dataclass(frozen=True)
class FloatAccumulator(Accumulator):
    """A floating-point accumulator: ``fmt`` (a ``Float``), ``rounding`` of every addition (default
    half_even; any mode), ``overflow`` of an addition that leaves the range (ieee, default: inf, or NaN
    for formats without inf; saturate; error). ``random_bits`` (1..62) and ``seed`` drive stochastic
    rounding and are errors with any other rounding; ``flush_subnormals`` flushes subnormal adder inputs
    and sums to zero.

        FloatAccumulator("fp32")
        FloatAccumulator("bf16", rounding="stochastic", random_bits=12, seed=7)
    """

    fmt: Float | str = "fp32"
    overflow: Overflow | str | None = None
    rounding: Rounding | str | None = None
    random_bits: int | None = None
    seed: int | None = None
    flush_subnormals: bool = False

    kind = "float"

    def __post_init__(self):
        fmt = _register_format(self.fmt, "accumulator format", "float", "FloatAccumulator", "IntAccumulator", "Accumulator")
        object.__setattr__(self, "fmt", fmt)
        object.__setattr__(self, "flush_subnormals", check_bool("accumulator flush_subnormals",
                                                                self.flush_subnormals))
        rounding, overflow = register_modes(fmt, self.rounding, self.overflow, "accumulator")
        object.__setattr__(self, "rounding", rounding)
        object.__setattr__(self, "overflow", overflow)
        _stochastic_options(self, "accumulator")

    def __str__(self):
        extra = f", {self.random_bits} random bits" if self.random_bits else ""
        extra += ", flush subnormals" if self.flush_subnormals else ""
        return f"{self.fmt} acc, every add rounded {self.rounding.name.lower()}{extra}, overflow {self.overflow.name.lower()}"


class Product(Register):
    """The product register: the exact product of the two operands cut to ``fmt``. ``Product(fmt,
    overflow=None, rounding=None, random_bits=None, seed=None)`` builds :class:`IntProduct` (fixed point:
    floor and wrap unless told otherwise) or :class:`FloatProduct` (floating point: half_even and ieee).
    ``Datapath(product=...)`` takes one, or a format with ``product_rounding``/``product_overflow``.
    """

    @staticmethod
    def _build(fmt, overflow=None, rounding=None, random_bits=None, seed=None):
        fmt = check_format("product format", fmt)
        if isinstance(fmt, Float):
            return FloatProduct(fmt, overflow, rounding, random_bits, seed)
        for name, value in (("random_bits", random_bits), ("seed", seed)):
            if value is not None:
                raise InvalidArgument(f"product {name}={value!r} does not apply to a fixed-point product register "
                                      f"({fmt}); it is for float product registers with stochastic rounding")
        return IntProduct(fmt, overflow, rounding)


@dataclass(frozen=True)
class IntProduct(Product):
    """A fixed-point product register: the exact product's dropped LSBs rounded with ``rounding``
    (default floor) to ``fmt``'s binary point, then ``overflow`` (default wrap; saturate,
    saturate_symmetric, saturate_zero).

        IntProduct("int<12>", rounding="half_even", overflow="saturate")
    """

    fmt: Fixed | str = "int32"
    overflow: Overflow | str | None = None
    rounding: Rounding | str | None = None

    kind = "fixed"
    random_bits = None
    seed = None

    def __post_init__(self):
        fmt = _register_format(self.fmt, "product format", "fixed", "IntProduct", "FloatProduct", "Product")
        object.__setattr__(self, "fmt", fmt)
        rounding, overflow = register_modes(fmt, self.rounding, self.overflow, "product")
        object.__setattr__(self, "rounding", rounding)
        object.__setattr__(self, "overflow", overflow)

    def __str__(self):
        return f"product {self.fmt} ({self.rounding.name.lower()}, {self.overflow.name.lower()})"


@dataclass(frozen=True)
class FloatProduct(Product):
    """A floating-point product register (an unfused multiplier): the exact product rounded to ``fmt``
    with ``rounding`` (default half_even), ``overflow`` ieee (default), saturate or error (wrap is an
    error). ``random_bits``/``seed`` drive stochastic rounding and are errors with any other rounding.

        FloatProduct("fp16")
    """

    fmt: Float | str = "fp32"
    overflow: Overflow | str | None = None
    rounding: Rounding | str | None = None
    random_bits: int | None = None
    seed: int | None = None

    kind = "float"

    def __post_init__(self):
        fmt = _register_format(self.fmt, "product format", "float", "FloatProduct", "IntProduct", "Product")
        object.__setattr__(self, "fmt", fmt)
        rounding, overflow = register_modes(fmt, self.rounding, self.overflow, "product")
        object.__setattr__(self, "rounding", rounding)
        object.__setattr__(self, "overflow", overflow)
        _stochastic_options(self, "product")

    def __str__(self):
        extra = f", {self.random_bits} random bits" if self.random_bits else ""
        return f"product {self.fmt} ({self.rounding.name.lower()}{extra}, {self.overflow.name.lower()})"


_ORDERS = ("sequential", "tree", "chunked")
MAX_LANES = 4096     # wider than any systolic array or DSP cascade; each lane is a register per output


@dataclass(frozen=True)
class Order:
    """The order of additions, which is part of the result once a register saturates.

    - ``sequential``: acc += p[0], p[1], ..., p[K-1] (one MAC unit).
    - ``tree``: a pairwise adder tree: level 1 adds (p0+p1), (p2+p3), ...; an odd last term passes
      through; ``level_bits`` optionally gives each level's register width (default: the accumulator's);
      the preloaded bias is added after the root.
    - ``chunked``: K split into ``lanes`` contiguous chunks (DSP cascades, systolic columns), each lane
      accumulating sequentially in the accumulator register; the lanes are then combined sequentially
      (lane 0 + lane 1 + ...) or by a tree (``combine="tree"``). The preloaded bias starts lane 0.
    """

    kind: str = "sequential"
    lanes: int = 1
    combine: str = "sequential"
    level_bits: tuple | None = None

    def __post_init__(self):
        check_choice("order", self.kind, _ORDERS)
        object.__setattr__(self, "lanes", check_int("lanes", self.lanes, lo=1, hi=MAX_LANES))
        if self.kind == "chunked" and self.lanes < 2:
            raise InvalidArgument(f"order='chunked' needs lanes >= 2 (at most {MAX_LANES}), got {self.lanes}")
        if self.kind != "chunked" and self.lanes != 1:
            raise InvalidArgument(f"lanes={self.lanes} applies to order='chunked' only; order={self.kind!r} "
                                  "has one accumulator (lanes=1)")
        check_choice("combine", self.combine, ("sequential", "tree"))
        if self.combine != "sequential" and self.kind != "chunked":
            raise InvalidArgument(f"combine={self.combine!r} applies to order='chunked' only")
        if self.level_bits is not None:
            if self.kind != "tree":
                raise InvalidArgument(f"level_bits applies to order='tree' only, got order={self.kind!r}")
            if isinstance(self.level_bits, (str, bytes)) or not isinstance(self.level_bits, (list, tuple, np.ndarray)):
                raise InvalidType(f"level_bits must be a list of register widths (integers in 2..64), got "
                                  f"{self.level_bits!r} ({type(self.level_bits).__name__})")
            lb = tuple(check_int(f"level_bits[{i}]", b, lo=2, hi=64) for i, b in enumerate(self.level_bits))
            object.__setattr__(self, "level_bits", lb)

    def __str__(self):
        if self.kind == "chunked":
            return f"chunked over {self.lanes} lanes, {self.combine} combine"
        if self.kind == "tree" and self.level_bits:
            return f"adder tree, level widths {list(self.level_bits)}"
        return "adder tree" if self.kind == "tree" else "sequential"


_REQUANT_KINDS = ("dyadic", "gemmlowp", "gemmlowp_single", "float32", "shift")
ZERO_POINT_LIMIT = 2 ** 31     # output zero points are int32 in TFLite, ONNX and gemmlowp
#: The kinds whose rounding is part of their definition (the others take ``rounding``), with the label
#: their ``rounding`` field carries (informational: the kind's arithmetic decides).
_REQUANT_FIXED_ROUNDING = {"gemmlowp": Rounding.HALF_AWAY, "gemmlowp_single": Rounding.HALF_AWAY,
                           "float32": Rounding.HALF_EVEN}


def _per_channel(name, value, *, real=False):
    """A scalar or a 1-D per-output-channel array of integers (``real``: of finite-checked numbers),
    as an int64 (float64) array; strings, bools, floats where integers are due and 2-D arrays are refused."""
    if isinstance(value, (str, bytes)) or value is None:
        raise InvalidType(f"{name} must be a number or a 1-D array of them (one per output channel), got {value!r}")
    if np.ndim(value) == 0:
        if isinstance(value, np.ndarray):      # a 0-d array (an ONNX scalar initializer): its element
            value = value[()]
        return np.asarray(check_real(name, value, finite=False) if real else check_int(name, value), dtype=np.float64 if real else object)
    arr = np.asarray(value)
    if arr.size == 0:
        raise InvalidArgument(f"{name} must be a scalar or a non-empty array (one per output channel, or any "
                              f"shape that broadcasts to the outputs), got shape {arr.shape}")
    if real:
        if arr.dtype.kind not in "iuf":
            raise InvalidType(f"{name} must hold real numbers, got dtype {arr.dtype}")
        return arr.astype(np.float64)
    flat = arr.ravel().tolist()
    if arr.dtype.kind not in "iuO" or (arr.dtype.kind == "O" and not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in flat)):
        raise InvalidType(f"{name} must hold integers, got dtype {arr.dtype} ({flat[:4]!r}...)")
    return np.array([int(v) for v in flat], dtype=object).reshape(arr.shape)


@dataclass(frozen=True)
class Requant:
    """Requantization of the accumulator to the output scale.

    - ``dyadic``: round(acc * multiplier / 2**shift) with ``rounding`` (per tensor, or per output channel
      when multiplier/shift are arrays).
    - ``gemmlowp``: TFLite/gemmlowp MultiplyByQuantizedMultiplier(acc, multiplier, shift): int32 multiplier
      in [2**30, 2**31), SaturatingRoundingDoublingHighMul then RoundingDivideByPOT (two roundings);
      ``shift`` is TFLite's signed exponent (>0: left shift first, <0: rounding right shift).
    - ``gemmlowp_single``: TFLite's single-rounding variant (TFLITE_SINGLE_ROUNDING, as TOSA):
      (acc * multiplier + 2**(30-shift)) >> (31 - shift).
    - ``float32``: ONNX Runtime QLinear: float32(acc) * float32(scale), round half even (then zero point,
      saturate).
    - ``shift``: acc / 2**shift with ``rounding``.
    The output ``zero_point`` is added after scaling. ``rounding`` (default half_even) applies to
    ``dyadic`` and ``shift``; the other kinds round as their definition says (above; their ``rounding``
    field reads half_away for gemmlowp, half_even for float32), and another mode given for them is an
    error.
    """

    kind: str = "dyadic"
    multiplier: object = 1
    shift: object = 0
    scale: object = None
    rounding: Rounding | str | None = None
    zero_point: int = 0

    def __post_init__(self):
        check_choice("requant kind", self.kind, _REQUANT_KINDS)
        fixed = _REQUANT_FIXED_ROUNDING.get(self.kind)
        rounding = (fixed or Rounding.HALF_EVEN) if self.rounding is None else \
            Rounding.parse(self.rounding, argument="requant rounding")
        if fixed is not None and rounding != fixed:
            raise InvalidArgument(f"requant rounding={rounding.name.lower()!r} does not apply to kind {self.kind!r}, "
                                  "which rounds as its definition says; rounding applies to kinds 'dyadic' and "
                                  "'shift'")
        object.__setattr__(self, "rounding", rounding)
        object.__setattr__(self, "zero_point", check_int("requant zero_point", self.zero_point,
                                                         lo=-ZERO_POINT_LIMIT, hi=ZERO_POINT_LIMIT - 1))
        if self.kind == "float32":
            if self.scale is None:
                raise InvalidArgument("requant kind 'float32' needs scale=")
            sc = _per_channel("requant scale", self.scale, real=True)
            if np.any(~np.isfinite(sc)) or np.any(sc <= 0):
                bad = sc.ravel()[np.flatnonzero(~np.isfinite(sc.ravel()) | (sc.ravel() <= 0))[0]]
                raise InvalidArgument(f"requant scale must be finite and > 0, got {float(bad)!r}")
            if np.any(np.float32(sc) == 0) or np.any(~np.isfinite(np.float32(sc))):
                raise InvalidArgument(f"requant scale {self.scale!r} leaves float32's range (the scale is a "
                                      "float32 register)")
            return
        if self.scale is not None:
            raise InvalidArgument(f"requant scale applies to kind 'float32' only, got kind {self.kind!r}; "
                                  "give multiplier and shift")
        m = _per_channel("requant multiplier", self.multiplier)
        s = _per_channel("requant shift", self.shift)
        if m.ndim and s.ndim and m.shape != s.shape:
            raise InvalidArgument(f"per-channel requant multiplier ({m.size} entries, shape {m.shape}) and shift "
                                  f"({s.size} entries, shape {s.shape}) must have the same shape")
        if self.kind in ("gemmlowp", "gemmlowp_single"):
            if np.any((m < 0) | (m >= 2 ** 31)):
                raise InvalidArgument(f"gemmlowp multiplier must be int32 in [0, 2**31), got {self.multiplier!r}")
            if np.any((s < -31) | (s > 30)):
                raise InvalidArgument(f"gemmlowp shift must lie in -31..30, got {self.shift!r}")
            return
        if np.any((s < -62) | (s > 62)):
            raise InvalidArgument(f"requant shift must lie in -62..62 (negative: an exact left shift), got "
                                  f"{self.shift!r}")
        if np.any(np.abs(m) >= 2 ** 62):
            raise InvalidArgument(f"requant multiplier must lie in -(2**62-1)..2**62-1, got {self.multiplier!r}")

    @classmethod
    def dyadic(cls, multiplier, shift, rounding="half_even", zero_point=0):
        return cls("dyadic", multiplier, shift, None, rounding, zero_point)

    @classmethod
    def gemmlowp(cls, multiplier, shift, zero_point=0, single_rounding=False):
        return cls("gemmlowp_single" if single_rounding else "gemmlowp", multiplier, shift, None, None, zero_point)

    @classmethod
    def float32(cls, scale, zero_point=0):
        return cls("float32", 1, 0, scale, None, zero_point)

    @classmethod
    def from_scale(cls, scale: float, *, bits: int = 31, rounding="half_even", zero_point=0):
        """A dyadic multiplier/shift approximating a real ``scale`` with a ``bits``-bit multiplier."""
        scale = check_real("scale", scale, lo=0, lo_open=True)
        bits = check_int("bits", bits, lo=1, hi=61)
        m, e = np.frexp(scale)          # scale = m * 2**e, m in [0.5, 1)
        mult = int(round(m * 2 ** bits))
        shift = bits - int(e)
        if mult == 2 ** bits:
            mult //= 2
            shift -= 1
        return cls.dyadic(mult, shift, rounding, zero_point)

    def __str__(self):
        mult = np.asarray(self.multiplier)
        per = " per channel" if mult.ndim or np.ndim(self.shift) or np.ndim(self.scale) else ""
        if self.kind == "float32":
            return f"float32 scale {self.scale}{per}, zero point {self.zero_point}"
        if self.kind == "shift":
            return f">> {self.shift} ({self.rounding.name.lower()}), zero point {self.zero_point}"
        return (f"{self.kind} x{self.multiplier} >> {self.shift}{per}"
                f"{'' if self.kind != 'dyadic' else ' (' + self.rounding.name.lower() + ')'}, zero point {self.zero_point}")


@dataclass(frozen=True)
class OutputStage:
    """After accumulation: bias add in a ``bias_bits``-wide register (default: the accumulator's width),
    requantization, activation clamp (``"relu"`` clamps at the output zero point, or a (lo, hi) pair of
    output codes for ReLU6 and friends), and the output register (``fmt``, ``overflow``: saturate unless
    given). With no ``fmt`` the accumulator value is the output, and ``overflow`` (then None) is an error.
    """

    bias_bits: int | None = None
    requant: Requant | None = None
    activation: object = None
    fmt: Fixed | str | None = None
    overflow: Overflow | str | None = None

    def __post_init__(self):
        if self.fmt is not None:
            f = _fixed(self.fmt, "output format")
            if not isinstance(f, Fixed):
                raise InvalidArgument(f"output format must be a fixed-point/integer format, got {f}")
            object.__setattr__(self, "fmt", f)
            ovf = Overflow.SATURATE if self.overflow is None else self.overflow
            object.__setattr__(self, "overflow", _int_overflow(ovf, "output overflow"))
        elif self.overflow is not None:
            raise InvalidArgument(f"output overflow {self.overflow!r} applies to an output register, and this "
                                  "stage has none (fmt=None: the accumulator is the output); give fmt=... or "
                                  "leave overflow unset", argument="overflow")
        check_int("bias_bits", self.bias_bits, lo=2, hi=64, allow_none=True)
        if self.requant is not None and not isinstance(self.requant, Requant):
            raise InvalidType(f"requant must be an fxsim Requant or None, got {type(self.requant).__name__}")
        a = self.activation
        if isinstance(a, list):
            a = tuple(a)
        ok = a is None or (isinstance(a, str) and a == "relu") or (
            isinstance(a, tuple) and len(a) == 2 and all(
                isinstance(t, (int, np.integer)) and not isinstance(t, (bool, np.bool_)) and abs(int(t)) < 2 ** 61
                for t in a) and a[0] <= a[1])
        if not ok:
            raise InvalidArgument(f"activation must be None, 'relu' or a (lo, hi) pair of integer output codes "
                                  f"with lo <= hi, got {self.activation!r}")
        object.__setattr__(self, "activation", a)

    def __str__(self):
        parts = []
        if self.requant is not None:
            parts.append(f"requant {self.requant}")
        if self.activation is not None:
            parts.append(f"clamp {self.activation}")
        if self.fmt is not None:
            parts.append(f"out {self.fmt} ({self.overflow.name.lower()})")
        return ", ".join(parts) or "raw accumulator"


@dataclass(frozen=True)
class Datapath:
    """The whole MAC datapath of one output element.

    - ``a``, ``b``: operand formats; ``a_zero_point``/``b_zero_point`` are subtracted (in codes) before the
      multiply, in a ``zero_point_bits``-wide subtractor (default: wide enough to be exact).
    - ``product``: None (exact product) or a product register: an :class:`IntProduct`/:class:`FloatProduct`,
      or its format with ``product_rounding``, ``product_overflow`` and (float, stochastic rounding only)
      ``product_random_bits``/``product_seed``; unset modes are the kind's defaults
      (:func:`register_defaults`: floor and wrap for fixed point, half_even and ieee for floating point).
      The product register is of the accumulator's kind. The product options without a product register
      are errors. ``datapath.product`` reads back the format, ``datapath.product_register`` the register.
    - ``accumulator``, ``order``, ``output``: see their classes. ``bias_preload``: True loads the bias
      into the accumulator before the first addition; False adds it in the output stage.
    - ``fused`` (float accumulators without a product register): the product is not rounded before the
      addition (an FMA).

    Stochastic rounding draws its bits from one counter-based generator per datapath (a stream per
    register): its seed is the accumulator's ``seed`` or ``product_seed`` (:attr:`random_seed`).
    """

    a: Fixed | Float | str = "int8"
    b: Fixed | Float | str = "int8"
    accumulator: Accumulator = field(default_factory=Accumulator)
    order: Order = field(default_factory=Order)
    output: OutputStage = field(default_factory=OutputStage)
    a_zero_point: int = 0
    b_zero_point: int = 0
    zero_point_bits: int | None = None
    product: Fixed | Float | Product | str | None = None
    product_rounding: Rounding | str | None = None
    product_overflow: Overflow | str | None = None
    bias_preload: bool = True
    fused: bool = False
    product_random_bits: int | None = None
    product_seed: int | None = None

    _PRODUCT_OPTIONS = ("product_rounding", "product_overflow", "product_random_bits", "product_seed")

    def __post_init__(self):
        object.__setattr__(self, "a", _fixed(self.a, "a"))
        object.__setattr__(self, "b", _fixed(self.b, "b"))
        if isinstance(self.accumulator, (str, Fixed, Float)):
            object.__setattr__(self, "accumulator", Accumulator(self.accumulator))
        if isinstance(self.order, str):
            object.__setattr__(self, "order", Order(self.order))
        for name, cls in (("accumulator", Accumulator), ("order", Order), ("output", OutputStage)):
            if not isinstance(getattr(self, name), cls):
                raise InvalidType(f"{name} must be an fxsim {cls.__name__}, got {getattr(self, name)!r}")
        acc = self.accumulator
        given = {name: getattr(self, name) for name in self._PRODUCT_OPTIONS if getattr(self, name) is not None}
        if isinstance(self.product, Product):
            reg = self.product
            if given:
                name, value = next(iter(given.items()))
                raise InvalidArgument(f"{name}={_show(value)} given with the product register {reg}; state the "
                                      f"register's options in it ({type(reg).__name__}(...)), not both",
                                      argument=name)
        elif self.product is not None:
            reg = Product(_fixed(self.product, "product"), overflow=self.product_overflow,
                          rounding=self.product_rounding, random_bits=self.product_random_bits,
                          seed=self.product_seed)
        else:
            reg = None
            if given:
                name, value = next(iter(given.items()))
                raise InvalidArgument(f"{name}={_show(value)} applies to a product register, and this datapath "
                                      f"has none (product=None: exact products); give product= or drop {name}",
                                      argument=name)
        if reg is not None:
            if reg.kind != acc.kind:
                raise InvalidArgument(f"product register {reg.fmt} is {_KIND_NAMES[reg.kind]} and the accumulator "
                                      f"{acc.fmt} {_KIND_NAMES[acc.kind]}; a product register is of the "
                                      f"accumulator's kind (or give product=None: exact products)", argument="product")
            if reg.kind == "fixed" and not (isinstance(self.a, Fixed) and isinstance(self.b, Fixed)):
                raise InvalidArgument(f"a fixed-point product register ({reg.fmt}) takes fixed-point operands, got "
                                      f"a={self.a}, b={self.b}; a Kulisch (fixed-point) accumulator takes exact "
                                      "float products: give product=None", argument="product")
        object.__setattr__(self, "product", None if reg is None else reg.fmt)
        for name, attr in zip(self._PRODUCT_OPTIONS, ("rounding", "overflow", "random_bits", "seed")):
            object.__setattr__(self, name, None if reg is None else getattr(reg, attr))
        object.__setattr__(self, "fused", check_bool("fused", self.fused))
        if self.fused and not acc.is_float:
            raise InvalidArgument(f"fused=True applies to float accumulators (the product is not rounded "
                                  f"before the addition); the accumulator {acc.fmt} is fixed point "
                                  "and adds exact products anyway", argument="fused")
        if self.fused and reg is not None:
            raise InvalidArgument(f"fused=True means the product is not rounded, but product={reg.fmt} was given; "
                                  "drop one of them", argument="fused")
        if acc.is_float and reg is not None and reg.rounding == Rounding.STOCHASTIC and \
                acc.rounding == Rounding.STOCHASTIC and None not in (acc.seed, reg.seed) and acc.seed != reg.seed:
            raise InvalidArgument(f"accumulator seed={acc.seed} and product_seed={reg.seed} differ; the datapath "
                                  "has one generator of random bits (a stream per register): give one seed",
                                  argument="product_seed")
        if acc.is_float and self.order.level_bits:
            raise InvalidArgument("order level_bits set register widths of a fixed-point adder tree; a float "
                                  f"accumulator's ({acc.fmt}) tree uses its own format at every level")
        for name in ("a_zero_point", "b_zero_point"):
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise InvalidType(f"{name} must be an integer code, got {v!r}")
        check_int("zero_point_bits", self.zero_point_bits, lo=2, hi=64, allow_none=True)
        object.__setattr__(self, "bias_preload", check_bool("bias_preload", self.bias_preload))

    @property
    def product_register(self) -> Product | None:
        """The product register (:class:`IntProduct`/:class:`FloatProduct`), or None for exact products."""
        if self.product is None:
            return None
        return Product(self.product, overflow=self.product_overflow, rounding=self.product_rounding,
                       random_bits=self.product_random_bits, seed=self.product_seed)

    @property
    def random_seed(self) -> int | None:
        """The seed of the datapath's stochastic rounding bits: the accumulator's ``seed`` where it rounds
        stochastically and has one, else ``product_seed``; None (a fresh seed per run) when neither."""
        acc = self.accumulator
        if acc.rounding == Rounding.STOCHASTIC and acc.seed is not None:
            return acc.seed
        return self.product_seed

    @property
    def is_integer(self) -> bool:
        """True when every register is fixed point (the integer engine runs it)."""
        parts = [self.a, self.b, self.accumulator.fmt] + ([self.product] if self.product is not None else [])
        return all(isinstance(p, Fixed) for p in parts)

    def replace(self, **changes) -> "Datapath":
        """A copy with ``changes``; a new ``product`` starts from its kind's defaults (the old register's
        options are dropped unless given again)."""
        if "product" in changes:
            for name in self._PRODUCT_OPTIONS:
                changes.setdefault(name, None)
        return replace(self, **changes)

    def __str__(self):
        zp = ""
        if self.a_zero_point or self.b_zero_point:
            zp = f" (zero points {self.a_zero_point}, {self.b_zero_point})"
        prod = "exact product" if self.product is None else str(self.product_register)
        return (f"Datapath: {self.a} x {self.b}{zp} -> {prod} -> {self.accumulator}, {self.order} "
                f"-> {'bias preloaded' if self.bias_preload else 'bias in output stage'} -> {self.output}")
