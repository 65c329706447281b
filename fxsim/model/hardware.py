"""Hardware choices for a model's layers: the accumulator (width, overflow, order, lanes), where the
input zero point goes (subtracted in the datapath, or folded into the bias), and how requantization is
done (ONNX Runtime's float32 multiply, a dyadic multiplier+shift of a stated width, or TFLite/gemmlowp's
int32 multiplier). Given in Python or in a TOML file:

    accumulator = "int32"          # top level: every compute layer
    [layers."conv*"]               # fnmatch pattern on the layer name; later tables win
    accumulator = "int18"
    overflow = "saturate"
    requant = "dyadic"
    multiplier_bits = 16

The default (no options) is ONNX Runtime's integer arithmetic: int32 wrapping accumulator, zero points
subtracted, float32 requantization rounding half to even, saturating output.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field

import numpy as np

from fxsim.datapath import Accumulator, Datapath, Order, OutputStage, Requant
from fxsim.formats import Fixed, parse_format
from fxsim.model.graph import ModelError

__all__ = ["Hardware", "OPTIONS", "load_hardware", "layer_datapath"]

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

OPTIONS = {
    "accumulator": "an integer format such as \"int32\", \"int24\", \"int18\" (intN, 2 <= N <= 64)",
    "overflow": "one of \"wrap\", \"saturate\", \"saturate_symmetric\", \"saturate_zero\"",
    "order": "one of \"sequential\", \"tree\", \"chunked\"",
    "lanes": "an integer >= 2 (with order = \"chunked\")",
    "zero_points": "\"hardware\" (subtracted before the multiplier) or \"fold\" (input zero point folded into "
                   "the bias)",
    "requant": "one of \"float32\" (ONNX Runtime), \"dyadic\" (multiplier and shift), \"gemmlowp\" (TFLite int32 "
               "multiplier)",
    "multiplier_bits": "an integer in 2..31 (the dyadic multiplier's width)",
    "bias": "\"preload\" (loaded into the accumulator before the first addition) or \"output\" (added after "
            "accumulation in a 32-bit register)",
    "requant_rounding": "one of \"half_up\", \"half_even\", \"half_away\", \"floor\" (the dyadic shift's rounding)",
}
_ROUNDINGS = ("half_up", "half_even", "half_away", "floor")


class _NoCtx:
    path = "<hardware>"

    def fail(self, key, value, allowed):
        raise ModelError(f"hardware option {key} = {value!r} is not allowed; expected {allowed}")


def _check(key, value, ctx, prefix=""):
    """Validate one option; returns its normalised value (errors name key, value, what is allowed, line)."""
    full = f"{prefix}{key}"
    if key not in OPTIONS:
        ctx.fail(full, value, f"one of the keys {sorted(OPTIONS)}")
    allowed = OPTIONS[key]
    try:
        if key == "accumulator":
            f = parse_format(value, argument="accumulator") if isinstance(value, str) else None
            if not isinstance(f, Fixed) or f.frac != 0 or not 2 <= f.bits <= 64:
                raise ValueError
            return f
        if key == "overflow":
            if value not in ("wrap", "saturate", "saturate_symmetric", "saturate_zero"):
                raise ValueError
        if key == "order" and value not in ("sequential", "tree", "chunked"):
            raise ValueError
        if key == "lanes" and (isinstance(value, bool) or not isinstance(value, int) or value < 2):
            raise ValueError
        if key == "zero_points" and value not in ("hardware", "fold"):
            raise ValueError
        if key == "requant" and value not in ("float32", "dyadic", "gemmlowp"):
            raise ValueError
        if key == "multiplier_bits" and (isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 31):
            raise ValueError
        if key == "bias" and value not in ("preload", "output"):
            raise ValueError
        if key == "requant_rounding" and value not in _ROUNDINGS:
            raise ValueError
    except (ValueError, TypeError):
        ctx.fail(full, value, allowed)
    return value


@dataclass
class Hardware:
    """Global options plus per-layer tables ({fnmatch pattern: options}, applied in order)."""
    options: dict = field(default_factory=dict)
    layers: list = field(default_factory=list)       # [(pattern, options)]
    source: str = "<python>"

    @classmethod
    def make(cls, hardware=None, **options):
        """From None, a Hardware, a TOML path, or a dict ({..., "layers": {pattern: {...}}}), plus keyword
        options that override the global ones."""
        if isinstance(hardware, Hardware):
            hw = Hardware(dict(hardware.options), list(hardware.layers), hardware.source)
        elif hardware is None:
            hw = Hardware()
        elif isinstance(hardware, (str, os.PathLike)):
            hw = load_hardware(hardware)
        elif isinstance(hardware, dict):
            hw = _from_dict(hardware, _NoCtx())
        else:
            raise TypeError(f"hardware must be a Hardware, a dict or a TOML path, got {type(hardware).__name__}")
        layers = options.pop("layers", None)
        ctx = _NoCtx()
        for k, v in options.items():
            hw.options[k] = _check(k, v, ctx)
        if layers:
            hw.layers += _from_dict({"layers": layers}, ctx).layers
        return hw

    def for_layer(self, name: str) -> dict:
        out = dict(self.options)
        for pattern, opts in self.layers:
            if fnmatch.fnmatchcase(name, pattern):
                out.update(opts)
        return out

    def __bool__(self):
        return bool(self.options or self.layers)


def _from_dict(raw, ctx):
    hw = Hardware(source=getattr(ctx, "path", "<python>"))
    for k, v in raw.items():
        if k == "layers":
            if not isinstance(v, dict):
                ctx.fail("layers", v, "a table of [layers.\"pattern\"] tables")
            for pattern, opts in v.items():
                if not isinstance(opts, dict):
                    ctx.fail(f"layers.\"{pattern}\"", opts, "a table of options")
                checked = {kk: _check(kk, vv, ctx, f'layers."{pattern}".') for kk, vv in opts.items()}
                hw.layers.append((pattern, checked))
        else:
            hw.options[k] = _check(k, v, ctx)
    return hw


def load_hardware(path) -> Hardware:
    """A hardware description from a TOML file; errors name the key, value, what is allowed and the line."""
    from fxsim.workflows.spec_base import SpecText as _Ctx
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8")
    except FileNotFoundError:
        raise ModelError(f"hardware file {path!r} does not exist") from None
    ctx = _Ctx(text, path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{path}: not valid TOML: {exc}") from None
    try:
        return _from_dict(raw, ctx)
    except ValueError as exc:   # SpecError from the shared line-numbering reporter
        raise ModelError(str(exc)) from None


# -------------------------------------------------------------------------------------- datapath per layer
def _scalar_zp(q, what, layer):
    z = np.asarray(q.zero_point).ravel()
    if z.size > 1 and np.any(z != z[0]):
        raise ModelError(f"layer {layer.name!r}: per-channel {what} zero points that differ are not supported "
                         "(the datapath subtracts one zero point per operand)")
    return int(z[0])


def requant_scale(layer) -> np.ndarray:
    """The float32 scale ONNX Runtime multiplies the int32 accumulator by (per output channel or scalar)."""
    p = layer.params
    f32 = np.float32
    if layer.kind == "gap":
        return np.asarray(f32(p["x_q"].scale) / (f32(p["y_q"].scale) * f32(p["hw"])), dtype=f32)
    a = p["x_q"] if layer.kind == "conv" else p["a_q"]
    b = p["w_q"] if layer.kind == "conv" else p["b_q"]
    s = (f32(a.scale) * np.asarray(b.scale, dtype=f32)) / f32(p["y_q"].scale)
    if layer.kind == "gemm" and p.get("alpha", 1.0) != 1.0:
        s = (f32(p["alpha"]) * f32(a.scale) * np.asarray(b.scale, dtype=f32)) / f32(p["y_q"].scale)
    return np.asarray(s, dtype=f32)


def _dyadic(scale, bits):
    mult, shift = [], []
    for s in np.atleast_1d(scale).astype(np.float64):
        m, e = np.frexp(s)
        q = int(round(m * 2 ** bits))
        sh = bits - int(e)
        if q == 2 ** bits:
            q //= 2
            sh -= 1
        if sh < 0 or sh > 62:
            raise ModelError(f"requantization scale {s!r} needs a shift of {sh}; dyadic shifts lie in 0..62")
        mult.append(q)
        shift.append(sh)
    if np.ndim(scale) == 0:
        return mult[0], shift[0]
    return np.array(mult, dtype=np.int64), np.array(shift, dtype=np.int64)


def _gemmlowp(scale):
    mult, shift = [], []
    for s in np.atleast_1d(scale).astype(np.float64):
        m, e = np.frexp(s)
        q = int(round(m * 2 ** 31))
        if q == 2 ** 31:
            q //= 2
            e += 1
        if e < -31:
            q, e = 0, 0
        if e > 30:
            raise ModelError(f"requantization scale {s!r} is too large for a gemmlowp multiplier")
        mult.append(q)
        shift.append(int(e))
    if np.ndim(scale) == 0:
        return mult[0], shift[0]
    return np.array(mult, dtype=np.int64), np.array(shift, dtype=np.int64)


def layer_datapath(layer, options: dict) -> tuple:
    """(Datapath, bias adjustment or None) for a compute layer under ``options``."""
    p = layer.params
    a = p["x_q"] if layer.kind in ("conv", "gap") else p["a_q"]
    b = p["w_q"] if layer.kind == "conv" else (p["b_q"] if layer.kind == "gemm" else None)
    wide = max(parse_format(q.fmt).bits for q in (a, b) if q is not None) > 8
    acc = options.get("accumulator", parse_format("int64" if wide else "int32"))   # 16-bit operands: int64
    overflow = options.get("overflow", "wrap")
    order_kind = options.get("order", "sequential")
    lanes = options.get("lanes")
    if lanes is not None and order_kind != "chunked":
        raise ModelError(f"layer {layer.name!r}: lanes = {lanes} applies to order = \"chunked\" only, "
                         f"the order is {order_kind!r}")
    order = Order(order_kind, lanes=lanes or (4 if order_kind == "chunked" else 1))
    a_zp = _scalar_zp(a, "input", layer)
    b_zp = 0 if b is None else _scalar_zp(b, "weight", layer)
    fold = options.get("zero_points", "hardware") == "fold"
    y_q = p.get("y_q")
    requant = None
    kind = options.get("requant", "float32")
    for key in ("multiplier_bits", "requant_rounding"):
        if key in options and kind != "dyadic":
            raise ModelError(f"layer {layer.name!r}: {key} applies to requant = \"dyadic\" only, the requant is "
                             f"{kind!r}")
    if y_q is not None:
        zp = int(np.asarray(y_q.zero_point).ravel()[0])
        scale = requant_scale(layer)
        if kind == "float32":
            requant = Requant.float32(scale, zero_point=zp)
        elif kind == "dyadic":
            m, s = _dyadic(scale, options.get("multiplier_bits", 31))
            requant = Requant.dyadic(m, s, rounding=options.get("requant_rounding", "half_up"), zero_point=zp)
        else:
            m, s = _gemmlowp(scale)
            requant = Requant.gemmlowp(m, s, zero_point=zp)
    elif kind != "float32":
        raise ModelError(f"layer {layer.name!r} has no requantization (its output is the int32 accumulator); "
                         f"requant = {kind!r} does not apply")
    preload = options.get("bias", "preload") == "preload"
    output = OutputStage(requant=requant, fmt=None if y_q is None else y_q.fmt,
                         bias_bits=None if preload else max(32, acc.bits))
    dp = Datapath(a=a.fmt, b="int8" if b is None else b.fmt,
                  accumulator=Accumulator(acc, overflow=overflow), order=order, output=output,
                  a_zero_point=0 if fold else a_zp, b_zero_point=b_zp, bias_preload=preload)
    return dp, (a_zp if fold and a_zp else None)
