"""Layer specs: one TOML file describes one layer, its data, its datapath and its output stage.

    [layer]      op = "gemm" | "conv2d"
    [shape]      gemm: M, K, N      conv2d: batch, in_channels, height, width, out_channels, kernel,
                                    stride, padding, dilation, groups
    [data]       seed, distribution = "uniform" | "normal", std (normal, in codes), or files:
                 a = "x.npy", b = "w.npy", bias = "b.npy" (paths relative to the spec), or npz = "f.npz"
    [datapath]   a, b, a_zero_point, b_zero_point, zero_point_bits, product, product_rounding,
                 product_overflow, product_random_bits, product_seed, bias_preload, fused
    [datapath.accumulator]  format, overflow, rounding, random_bits, seed, flush_subnormals
    [datapath.order]        kind, lanes, combine, level_bits
    [output]     format, overflow, activation, bias_bits
    [output.requant]        kind, multiplier, shift, scale, rounding, zero_point

Every error names the key, the value, what is allowed, and the line of the file where it can.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from .errors import BadFile, InvalidArgument, InvalidType
from .datapath import MAX_LANES, Accumulator, Datapath, Order, OutputStage, Requant
from .formats import Float, parse_format
from .validate import check_bool, check_choice, check_int, check_real

__all__ = ["SpecError", "SpecFileError", "LayerSpec",
           "load_spec", "parse_spec", "spec_from_dict", "build_datapath", "make_data",
           "run_layer", "operand_shapes"]

_TOP = {"layer", "shape", "data", "datapath", "output", "batch_norm"}
_OPS = ("gemm", "conv2d", "batch_norm")
_PASSES = ("forward", "backward_input", "backward_weight")
_KEYS = {
    "layer": {"op", "pass", "name", "description"},
    "shape": {"M", "K", "N", "batch", "in_channels", "height", "width", "out_channels", "kernel", "stride",
              "padding", "dilation", "groups"},
    "data": {"seed", "distribution", "std", "bias", "a", "b", "npz"},
    "datapath": {"a", "b", "a_zero_point", "b_zero_point", "zero_point_bits", "product", "product_rounding",
                 "product_overflow", "product_random_bits", "product_seed", "bias_preload", "fused", "accumulator",
                 "order"},
    "datapath.accumulator": {"format", "overflow", "rounding", "random_bits", "seed", "flush_subnormals"},
    "datapath.order": {"kind", "lanes", "combine", "level_bits"},
    "output": {"format", "overflow", "activation", "bias_bits", "requant"},
    "batch_norm": {"x_fmt", "acc", "stat_acc", "grad_acc", "order", "stat_fmt", "rsqrt_method", "rsqrt_fmt", "rsqrt_frac", "out_fmt", "grad_fmt",
                   "range_bn", "eps"},
    "output.requant": {"kind", "multiplier", "shift", "scale", "rounding", "zero_point"},
}


class SpecError(InvalidArgument):
    """A layer spec that cannot be used; the message names the key, value, allowed values and line."""


class SpecFileError(SpecError, BadFile):
    """A spec or data file that cannot be read (missing, not a regular file, too large, not UTF-8, not
    NumPy): both a ``SpecError`` (a ``ValueError``) and a ``BadFile`` (an ``OSError``)."""


@dataclass
class LayerSpec:
    """A parsed spec. ``pass_`` is "forward", or one gradient GEMM of training: "backward_input"
    (dX = dY . W^T; operands a = dY, b = W) or "backward_weight" (dW = X^T . dY; operands a = X, b = dY)."""
    op: str
    shape: dict
    data: dict
    datapath: Datapath
    raw: dict
    path: str | None = None
    pass_: str = "forward"
    batch_norm: object = None       # fxsim.ops.norm.BatchNormConfig for op = "batch_norm"


class _Ctx:
    def __init__(self, text, path):
        self.text = text or ""
        self.path = path or "<spec>"

    def line(self, key):
        """Line of ``table.key`` in the TOML text (None when it is not written there)."""
        table, _, last = key.rpartition(".")
        current = ""
        for n, line in enumerate(self.text.splitlines(), 1):
            m = re.match(r"^\s*\[([^\]]+)\]", line)
            if m:
                current = m.group(1).strip()
                continue
            if current == table and re.match(rf"^\s*{re.escape(last)}\s*=", line):
                return n
        return None

    def fail(self, key, value, allowed):
        ln = self.line(key)
        where = f"{self.path}:{ln}: " if ln else f"{self.path}: "
        raise SpecError(f"{where}{key} = {value!r} is not allowed; expected {allowed}")


def load_spec(path) -> LayerSpec:
    """Read a TOML layer spec from ``path``."""
    from .inputs import read_text_file
    path = os.fspath(path)
    try:
        text = read_text_file(path, "spec file")     # a regular, readable UTF-8 file of a sane size
    except BadFile as exc:
        raise SpecFileError(str(exc)) from None
    return parse_spec(text, path=path)


def parse_spec(text: str, *, path=None) -> LayerSpec:
    """A spec from TOML text (``path``, when given, names the file in errors and anchors data files)."""
    ctx = _Ctx(text, path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{ctx.path}: not valid TOML: {exc}") from None
    return spec_from_dict(raw, ctx=ctx)


def spec_from_dict(raw: dict, *, ctx=None) -> LayerSpec:
    """A spec from already-parsed tables (as stored in a golden-vector manifest)."""
    ctx = ctx or _Ctx("", None)
    for key in raw:
        if key not in _TOP:
            ctx.fail(key, raw[key], f"one of the tables {sorted(_TOP)}")
        if not isinstance(raw[key], dict):
            ctx.fail(key, raw[key], f"a table [{key}]")
    for table, allowed in _KEYS.items():
        t = raw
        for part in table.split("."):
            t = t.get(part, {}) if isinstance(t, dict) else {}
        if not isinstance(t, dict):
            ctx.fail(table, t, f"a table [{table}]")
        for k, v in t.items():
            if k not in allowed and not (isinstance(v, dict) and f"{table}.{k}" in _KEYS):
                ctx.fail(f"{table}.{k}", v, f"one of the keys {sorted(allowed)}")
    layer = raw.get("layer", {})
    op = layer.get("op", "gemm")
    if op not in _OPS:
        ctx.fail("layer.op", op, f"one of {_OPS}")
    pass_ = layer.get("pass", "forward")
    if pass_ not in _PASSES:
        ctx.fail("layer.pass", pass_, f"one of {_PASSES}")
    if pass_ != "forward" and op == "conv2d":
        for k in ("dilation", "groups"):
            if raw.get("shape", {}).get(k, 1) != 1:
                ctx.fail(f"shape.{k}", raw["shape"][k], f"1 (backward convolutions have {k} 1)")
    if pass_ != "forward" and raw.get("data", {}).get("bias"):
        ctx.fail("data.bias", raw["data"]["bias"], "no bias in a backward pass (gradients have none)")
    shape = dict(raw.get("shape", {}))
    if op == "batch_norm" and pass_ == "backward_weight":
        ctx.fail("layer.pass", pass_, "'forward' or 'backward_input' for batch_norm (its backward gives dx, "
                 "dgamma and dbeta together)")
    need = {"gemm": ("M", "K", "N"), "batch_norm": ("batch", "in_channels", "height", "width")}.get(
        op, ("batch", "in_channels", "height", "width", "out_channels", "kernel"))
    for k in need:
        if k not in shape and not raw.get("data", {}).get("npz") and not raw.get("data", {}).get("a"):
            ctx.fail(f"shape.{k}", None, "a positive integer")
        if k in shape and not _valid(check_int, k, shape[k], lo=1):
            ctx.fail(f"shape.{k}", shape[k], "a positive integer")
    for k, lo in (("stride", 1), ("dilation", 1), ("groups", 1), ("padding", 0)):
        if k in shape and not _valid(check_int, k, shape[k], lo=lo):
            ctx.fail(f"shape.{k}", shape[k], "a positive integer" if lo else "an integer >= 0")
    if op == "conv2d":
        _check_conv_shape(shape, ctx)
    data = dict(raw.get("data", {}))
    dist = data.get("distribution", "uniform")
    if dist not in ("uniform", "normal"):
        ctx.fail("data.distribution", dist, "'uniform' or 'normal'")
    if "seed" in data and not _valid(check_int, "seed", data["seed"], lo=0):
        ctx.fail("data.seed", data["seed"], "an integer >= 0")
    if "std" in data and not _valid(check_real, "std", data["std"], lo=0, lo_open=True):
        ctx.fail("data.std", data["std"], "a finite number > 0")
    files = any(k in data for k in ("a", "b", "npz"))
    if "bias" in data:
        b = data["bias"]
        if files and "npz" in data:
            ctx.fail("data.bias", b, "nothing: with data.npz the bias is the array 'bias' inside the npz file")
        if files and not isinstance(b, str):
            ctx.fail("data.bias", b, "a file name (bias = \"b.npy\") when a and b are files; true draws a "
                     "random bias only for random data")
        if not files and not isinstance(b, bool):
            ctx.fail("data.bias", b, "true or false for random data (a bias file needs a and b files too)")
    for k in ("seed", "distribution", "std"):
        if files and k in data:
            ctx.fail(f"data.{k}", data[k], "nothing: the data come from files, which are not drawn at random")
    dp = build_datapath(raw.get("datapath", {}), raw.get("output", {}), ctx=ctx)
    bn = _batch_norm_config(raw.get("batch_norm", {}), ctx) if op == "batch_norm" else None
    spec = LayerSpec(op=op, shape=shape, data=data, datapath=dp, raw=raw,
                     path=ctx.path if ctx.path != "<spec>" else None, pass_=pass_, batch_norm=bn)
    if op != "batch_norm" and all(k in shape for k in need):
        check_layer_size(spec)
    return spec


def _valid(check, name, value, **limits) -> bool:
    """Whether a central validator accepts ``value`` (the caller reports it with the key and line)."""
    try:
        check(name, value, **limits)
        return True
    except (InvalidArgument, InvalidType):
        return False


def _check_conv_shape(shape, ctx):
    """Groups divide the channels; the (dilated) kernel fits the padded input."""
    g = shape.get("groups", 1)
    for k in ("in_channels", "out_channels"):
        if k in shape and shape[k] % g:
            ctx.fail("shape.groups", g, f"a divisor of shape.{k} = {shape[k]}")
    k, pad, dil = shape.get("kernel"), shape.get("padding", 0), shape.get("dilation", 1)
    for side in ("height", "width"):
        if k is not None and side in shape and shape[side] + 2 * pad < dil * (k - 1) + 1:
            ctx.fail("shape.kernel", k, f"a kernel that fits the padded input: {side} {shape[side]} + 2 x padding "
                     f"{pad} is less than the dilated kernel's {dil * (k - 1) + 1}")


def _memory_bytes():
    """Physical memory of this machine in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _human(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024


def layer_bytes(spec) -> dict:
    """The largest arrays simulating the spec's layer allocates, in bytes (int64/float64 words):
    the two operands, the lowered patch matrix of a convolution, and the output planes."""
    A_shape, B_shape, _ = operand_shapes(spec)
    out = {"operand a": 8 * _prod(A_shape), "operand b": 8 * _prod(B_shape)}
    s = spec.shape
    if spec.op == "gemm":
        M, K, N = s["M"], s["K"], s["N"]
        outputs = {"forward": M * N, "backward_input": M * K, "backward_weight": K * N}[spec.pass_]
    else:
        n, c, o, k = s["batch"], s["in_channels"], s["out_channels"], s["kernel"]
        oh, ow = _conv_out(s, "height"), _conv_out(s, "width")
        g = s.get("groups", 1)
        outputs = {"forward": n * o * oh * ow, "backward_input": n * c * s["height"] * s["width"],
                   "backward_weight": o * (c // g) * k * k}[spec.pass_]
        out["patch matrix"] = 8 * n * oh * ow * (c // g) * k * k if spec.pass_ == "forward" else \
            8 * max(n * oh * ow * (c // g) * k * k, n * s["height"] * s["width"] * o * k * k)
    out["outputs"] = 8 * 4 * outputs          # accumulators, exact sums, codes and values
    return out


def _prod(shape):
    r = 1
    for d in shape:
        r *= int(d)
    return r


def _conv_out(s, side):
    return (s[side] + 2 * s.get("padding", 0) - s.get("dilation", 1) * (s["kernel"] - 1) - 1) // s.get("stride", 1) + 1


def check_layer_size(spec, memory=None):
    """Refuse, before anything is allocated, a layer whose arrays exceed this machine's memory."""
    memory = _memory_bytes() if memory is None else memory
    if not memory:
        return
    parts = layer_bytes(spec)
    total = sum(parts.values())
    if total > memory:
        where = f"{spec.path}: " if spec.path else ""
        big = max(parts, key=parts.get)
        shape = ", ".join(f"{k} = {v}" for k, v in spec.shape.items())
        raise SpecError(f"{where}[shape] {shape}: simulating this layer needs about {_human(total)} "
                        f"({big} {_human(parts[big])}), more than this machine's {_human(memory)} of memory; "
                        "simulate a smaller layer (the same datapath on fewer rows gives the same per-output "
                        "results)")


def _batch_norm_config(table, ctx):
    from .ops.norm import BatchNormConfig
    for key in ("x_fmt", "acc", "stat_acc", "grad_acc", "stat_fmt", "rsqrt_fmt", "out_fmt", "grad_fmt"):
        if key in table:
            try:
                parse_format(table[key], argument=key)
            except (ValueError, TypeError) as exc:
                ln = ctx.line(f"batch_norm.{key}")
                raise SpecError(f"{ctx.path}:{ln}: batch_norm.{key}: {exc}" if ln else
                                f"{ctx.path}: batch_norm.{key}: {exc}") from None
    method = table.get("rsqrt_method", "float")
    if method not in ("float", "newton", "lut"):
        ctx.fail("batch_norm.rsqrt_method", method, "'float', 'newton' or 'lut'")
    order = table.get("order", "tree")
    if order not in ("sequential", "tree"):
        ctx.fail("batch_norm.order", order, "'sequential' or 'tree'")
    for key, check in (("rsqrt_frac", lambda v: check_int("rsqrt_frac", v, lo=4, hi=24)),
                       ("eps", lambda v: check_real("eps", v, lo=0, lo_open=True)),
                       ("range_bn", lambda v: check_bool("range_bn", v))):
        if key in table and not _valid(lambda n, v: check(v), key, table[key]):
            ctx.fail(f"batch_norm.{key}", table[key], {"rsqrt_frac": "an integer in 4..24",
                                                       "eps": "a finite number > 0",
                                                       "range_bn": "true or false"}[key])
    return BatchNormConfig(**table)


def build_datapath(dp_table: dict, out_table: dict, *, ctx=None) -> Datapath:
    """A Datapath from the [datapath] and [output] tables of a spec."""
    ctx = ctx or _Ctx("", None)
    for k in dp_table:
        if k not in _KEYS["datapath"]:
            ctx.fail(f"datapath.{k}", dp_table[k], f"one of the keys {sorted(_KEYS['datapath'])}")
    acc_t = dp_table.get("accumulator", {})
    ord_t = dp_table.get("order", {})
    rq_t = out_table.get("requant")

    def attempt(key, fn):
        try:
            return fn()
        except (ValueError, TypeError) as exc:
            ln = ctx.line(key)
            where = f"{ctx.path}:{ln}: " if ln else f"{ctx.path}: "
            raise SpecError(f"{where}{key}: {exc}") from None

    from .modes import Overflow, Rounding
    checks = [("datapath.accumulator", acc_t, "format", lambda v: parse_format(v, argument="format")),
              ("datapath.accumulator", acc_t, "overflow", lambda v: Overflow.parse(v, argument="overflow")),
              ("datapath.accumulator", acc_t, "rounding", lambda v: Rounding.parse(v, argument="rounding")),
              ("datapath", dp_table, "a", lambda v: parse_format(v, argument="a")),
              ("datapath", dp_table, "b", lambda v: parse_format(v, argument="b")),
              ("datapath", dp_table, "product_rounding", lambda v: Rounding.parse(v, argument="product_rounding")),
              ("output", out_table, "format", lambda v: parse_format(v, argument="format")),
              ("output", out_table, "overflow", lambda v: Overflow.parse(v, argument="overflow")),
              ("datapath", dp_table, "bias_preload", lambda v: check_bool("bias_preload", v)),
              ("datapath", dp_table, "fused", lambda v: check_bool("fused", v)),
              ("datapath", dp_table, "a_zero_point", lambda v: check_int("a_zero_point", v)),
              ("datapath", dp_table, "b_zero_point", lambda v: check_int("b_zero_point", v)),
              ("datapath", dp_table, "zero_point_bits", lambda v: check_int("zero_point_bits", v, lo=2, hi=64)),
              ("datapath.accumulator", acc_t, "flush_subnormals", lambda v: check_bool("flush_subnormals", v)),
              ("datapath.accumulator", acc_t, "random_bits", lambda v: check_int("random_bits", v, lo=1, hi=62)),
              ("datapath.accumulator", acc_t, "seed", lambda v: check_int("seed", v, lo=0, hi=2 ** 63 - 1)),
              ("datapath", dp_table, "product_random_bits",
               lambda v: check_int("product_random_bits", v, lo=1, hi=62)),
              ("datapath", dp_table, "product_seed", lambda v: check_int("product_seed", v, lo=0, hi=2 ** 63 - 1)),
              ("datapath.order", ord_t, "kind", lambda v: check_choice("kind", v, ("sequential", "tree", "chunked"))),
              ("datapath.order", ord_t, "lanes", lambda v: check_int("lanes", v, lo=2, hi=MAX_LANES)),
              ("datapath.order", ord_t, "combine", lambda v: check_choice("combine", v, ("sequential", "tree"))),
              ("datapath.order", ord_t, "level_bits", lambda v: Order("tree", level_bits=v)),
              ("output", out_table, "bias_bits", lambda v: check_int("bias_bits", v, lo=2, hi=64))]
    if rq_t is not None:
        checks += [("output.requant", rq_t, "zero_point", lambda v: check_int("zero_point", v, lo=-2 ** 31,
                                                                                 hi=2 ** 31 - 1))]
    kind = ord_t.get("kind", "sequential")
    for key, only in (("lanes", "chunked"), ("combine", "chunked"), ("level_bits", "tree")):
        if key in ord_t and kind != only:
            ctx.fail(f"datapath.order.{key}", ord_t[key], f"nothing: {key} applies to kind = \"{only}\" only, "
                     f"and this order is kind = {kind!r}")
    for prefix, table, key, check in checks:
        if key in table:
            attempt(f"{prefix}.{key}", lambda: check(table[key]))
    acc_fmt = attempt("datapath.accumulator.format", lambda: parse_format(acc_t.get("format", "int32"),
                                                                          argument="format"))
    # absent keys are not passed: the register type holds its defaults
    acc = attempt("datapath.accumulator.format", lambda: Accumulator(
        acc_fmt, **{k: acc_t[k] for k in ("overflow", "rounding", "random_bits", "seed", "flush_subnormals")
                    if k in acc_t}))
    order = attempt("datapath.order.kind", lambda: Order(
        ord_t.get("kind", "sequential"), lanes=ord_t.get("lanes", 2 if ord_t.get("kind") == "chunked" else 1),
        combine=ord_t.get("combine", "sequential"), level_bits=ord_t.get("level_bits")))
    requant = None
    if rq_t is not None:
        requant = attempt("output.requant.kind", lambda: Requant(
            rq_t.get("kind", "dyadic"), rq_t.get("multiplier", 1), rq_t.get("shift", 0), rq_t.get("scale"),
            rq_t.get("rounding"), rq_t.get("zero_point", 0)))
    act = out_table.get("activation")
    if isinstance(act, list):
        act = tuple(act)
    output = attempt("output.format", lambda: OutputStage(
        bias_bits=out_table.get("bias_bits"), requant=requant, activation=act, fmt=out_table.get("format"),
        overflow=out_table.get("overflow", "saturate")))
    return attempt("datapath.a", lambda: Datapath(
        a=dp_table.get("a", "int8"), b=dp_table.get("b", "int8"), accumulator=acc, order=order, output=output,
        a_zero_point=dp_table.get("a_zero_point", 0), b_zero_point=dp_table.get("b_zero_point", 0),
        zero_point_bits=dp_table.get("zero_point_bits"), product=dp_table.get("product"),
        product_rounding=dp_table.get("product_rounding"), product_overflow=dp_table.get("product_overflow"),
        product_random_bits=dp_table.get("product_random_bits"), product_seed=dp_table.get("product_seed"),
        bias_preload=dp_table.get("bias_preload", True),
        fused=dp_table.get("fused", False)))


def _random_codes(rng, fmt, shape, dist, std):
    """Random operands on ``fmt``'s grid. Fixed: integer codes (std in codes). Float: values drawn in
    units of the format's largest finite value (std as a fraction of it, default 1/4), then rounded
    to the format (half-even, saturating)."""
    if isinstance(fmt, Float):
        from .quantize import quantize
        scale = fmt.max
        if dist == "normal":
            x = rng.normal(0.0, (std if std else 0.25) * scale, size=shape)
        else:
            x = rng.uniform(fmt.min if fmt.signed else 0.0, scale, size=shape)
        return quantize(x, fmt, rounding="half_even", overflow="saturate")
    if dist == "normal":
        c = np.rint(rng.normal(0.0, std if std else (fmt.max_code - fmt.min_code) / 6, size=shape))
        c = np.clip(c, fmt.min_code, fmt.max_code).astype(np.int64)
    else:
        c = rng.integers(fmt.min_code, fmt.max_code, size=shape, endpoint=True)
    return np.ldexp(c.astype(np.float64), -fmt.frac)


def _load_array(spec: LayerSpec, name):
    base = os.path.dirname(spec.path) if spec.path else "."
    from .inputs import load_array_file
    value = spec.data[name]
    if not isinstance(value, str) or not value:
        raise SpecError(f"data.{name} = {value!r} is not allowed; expected a file name (a string)")
    p = os.path.join(base, value)
    try:
        arr = load_array_file(p, f"data.{name} = {value!r}: file")
    except BadFile as exc:
        raise SpecFileError(str(exc)) from None
    if name == "npz":
        if not isinstance(arr, dict):
            raise SpecError(f"data.npz = {value!r}: file {p!r} is a .npy array; expected a .npz archive "
                            f"holding arrays a, b (and optionally bias)")
        missing = [k for k in ("a", "b") if k not in arr]
        if missing:
            raise SpecError(f"data.npz = {value!r}: file {p!r} holds {sorted(arr)}; it needs arrays a and b "
                            f"(and optionally bias)")
    elif isinstance(arr, dict):
        raise SpecError(f"data.{name} = {value!r}: file {p!r} is a .npz archive; expected a .npy array")
    return arr


def make_data(spec: LayerSpec):
    """The layer's operands (A, B, bias) as real values on the operand grids."""
    if spec.op == "batch_norm":
        raise InvalidArgument("a batch_norm layer is not one GEMM: simulate it with run_batch_norm (fxsim run); "
                         "sweep and export take gemm and conv2d layers")
    d = spec.data
    dp = spec.datapath
    if "npz" in d:
        z = _load_array(spec, "npz")
        A, B = z["a"], z["b"]
        bias = z.get("bias")
        return _check_file_shapes(spec, A, B, bias)
    if "a" in d or "b" in d:
        if not ("a" in d and "b" in d):
            raise SpecError("data: give both a and b files, or neither")
        A, B = _load_array(spec, "a"), _load_array(spec, "b")
        bias = _load_array(spec, "bias") if isinstance(d.get("bias"), str) else None
        return _check_file_shapes(spec, A, B, bias)
    rng = np.random.default_rng(d.get("seed", 0))
    dist = d.get("distribution", "uniform")
    std = d.get("std")
    A_shape, B_shape, n_bias = operand_shapes(spec)
    A = _random_codes(rng, dp.a, A_shape, dist, std)
    B = _random_codes(rng, dp.b, B_shape, dist, std)
    bias = None
    if d.get("bias", False) is True and isinstance(dp.accumulator.fmt, Float):
        bias = _random_codes(rng, dp.accumulator.fmt, n_bias, "normal", 2.0 ** -8)
    elif d.get("bias", False) is True:
        acc = dp.accumulator.fmt
        span = 1 << max(1, min(acc.bits - 4, 16))
        bias = np.ldexp(rng.integers(-span, span, size=n_bias).astype(np.float64), -acc.frac)
    return A, B, bias


_FILE_DIMS = {   # the spec's [shape] key of each operand dimension (None: implied by the others)
    ("gemm", "forward"): (("M", "K"), ("K", "N"), "N"),
    ("gemm", "backward_input"): (("M", "N"), ("K", "N"), None),
    ("gemm", "backward_weight"): (("M", "K"), ("M", "N"), None),
    ("conv2d", "forward"): (("batch", "in_channels", "height", "width"), ("out_channels", None, "kernel", "kernel"),
                            "out_channels"),
    ("conv2d", "backward_input"): (("batch", "out_channels", None, None), ("out_channels", None, "kernel", "kernel"),
                                   None),
    ("conv2d", "backward_weight"): (("batch", "in_channels", "height", "width"), ("batch", "out_channels", None, None),
                                    None),
}


def _check_file_shapes(spec, A, B, bias):
    """Data files must agree with every [shape] key the spec gives (and with each other's rank)."""
    dims_a, dims_b, bias_dim = _FILE_DIMS[(spec.op, spec.pass_)]
    where = f"{spec.path}: " if spec.path else ""
    names = ("npz 'a'", "npz 'b'") if "npz" in spec.data else (f"data.a = {spec.data.get('a')!r}",
                                                                  f"data.b = {spec.data.get('b')!r}")
    for name, arr, dims in ((names[0], A, dims_a), (names[1], B, dims_b)):
        arr = np.asarray(arr)
        if arr.ndim != len(dims):
            raise SpecError(f"{where}{name}: a {spec.op} {spec.pass_} operand has {len(dims)} dimensions, this "
                            f"file's array has shape {arr.shape}")
        for axis, key in enumerate(dims):
            if key is not None and key in spec.shape and arr.shape[axis] != spec.shape[key]:
                raise SpecError(f"{where}shape.{key} = {spec.shape[key]} contradicts the data: {name} has shape "
                                f"{arr.shape} (axis {axis} is {key})")
    if bias is not None:
        b = np.asarray(bias)
        want = None if bias_dim is None else (np.shape(B)[1] if spec.op == "gemm" else np.shape(B)[0])
        if bias_dim is None or b.ndim != 1 or b.shape[0] != want:
            raise SpecError(f"{where}the bias file has shape {b.shape}; the bias is one value per output "
                            f"{'column' if spec.op == 'gemm' else 'channel'} ({bias_dim} = {want})")
    return A, B, bias


def operand_shapes(spec: LayerSpec):
    """Shapes of the two operands the spec's pass multiplies, and the bias length."""
    s = spec.shape
    if spec.op == "gemm":
        M, K, N = s["M"], s["K"], s["N"]
        return {"forward": ((M, K), (K, N)), "backward_input": ((M, N), (K, N)),
                "backward_weight": ((M, K), (M, N))}[spec.pass_] + (N,)
    k, st, pad = s["kernel"], s.get("stride", 1), s.get("padding", 0)
    dil, g = s.get("dilation", 1), s.get("groups", 1)
    n, c, h, w, o = s["batch"], s["in_channels"], s["height"], s["width"], s["out_channels"]
    oh = (h + 2 * pad - dil * (k - 1) - 1) // st + 1
    ow = (w + 2 * pad - dil * (k - 1) - 1) // st + 1
    x, wt, dy = (n, c, h, w), (o, c // g, k, k), (n, o, oh, ow)
    return {"forward": (x, wt), "backward_input": (dy, wt), "backward_weight": (x, dy)}[spec.pass_] + (o,)


def run_layer(spec: LayerSpec, datapath: Datapath | None = None, *, trace=None, data=None):
    """Simulate the spec's layer (optionally with another datapath); returns (result, (A, B, bias))."""
    if spec.op == "batch_norm":
        raise InvalidArgument("a batch_norm layer is not one GEMM: simulate it with run_batch_norm (fxsim run); "
                         "sweep and export take gemm and conv2d layers")
    dp = datapath or spec.datapath
    A, B, bias = data if data is not None else make_data(spec)
    if spec.pass_ != "forward":
        return _run_backward(spec, dp, A, B, trace), (A, B, bias)
    if spec.op == "gemm":
        from .ops.gemm import gemm
        return gemm(A, B, dp, bias=bias, trace=trace), (A, B, bias)
    from .ops.conv import conv2d
    s = spec.shape
    return conv2d(A, B, dp, stride=s.get("stride", 1), padding=s.get("padding", 0), dilation=s.get("dilation", 1),
                  groups=s.get("groups", 1), bias=bias, trace=trace), (A, B, bias)


def _run_backward(spec, dp, A, B, trace):
    """The gradient GEMM of a backward pass through ``dp`` (a GemmResult, in the lowered GEMM's shape)."""
    from .ops.gemm import gemm
    if spec.op == "gemm":
        if spec.pass_ == "backward_input":            # dX (M, K) = dY (M, N) . W^T (N, K)
            return gemm(A, np.ascontiguousarray(np.asarray(B).T), dp, trace=trace)
        return gemm(np.ascontiguousarray(np.asarray(A).T), B, dp, trace=trace)    # dW (K, N) = X^T . dY
    from .ops.backward import conv2d_backward
    if trace:
        raise InvalidArgument("per-cycle traces are recorded for gemm layers, not for conv2d backward passes")
    s = spec.shape
    kw = dict(stride=s.get("stride", 1), padding=s.get("padding", 0), dx_datapath=dp, dw_datapath=dp)
    if spec.pass_ == "backward_input":               # A = dY (N, O, OH, OW), B = W (O, C, k, k)
        x_shape = (A.shape[0], B.shape[1], s["height"], s["width"])
        kw["dw_datapath"] = dp.replace(b=dp.a, product=None)   # the unused dW GEMM of zeros: any lossless one
        return conv2d_backward(np.zeros(x_shape), B, A, **kw)[2]["dx"]
    w_shape = (B.shape[1], A.shape[1], s["kernel"], s["kernel"])      # A = X, B = dY
    return conv2d_backward(A, np.zeros(w_shape), B, need_dx=False, **kw)[2]["dw"]


def second_operand_matrix(spec: LayerSpec, A, B) -> np.ndarray:
    """The lowered GEMM's second operand (K, N) as real values: what every output's dot product
    multiplies the first operand's values with (used for data-dependent accumulator bounds)."""
    A, B = np.asarray(A), np.asarray(B)
    if spec.op == "gemm":
        return B.T if spec.pass_ == "backward_input" else B
    if spec.pass_ == "forward":
        return B.reshape(B.shape[0], -1).T
    if spec.pass_ == "backward_weight":
        return B.transpose(0, 2, 3, 1).reshape(-1, B.shape[1])
    wf = B[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    return wf.reshape(wf.shape[0], -1).T


def run_batch_norm(spec: LayerSpec) -> dict:
    """Simulate a batch_norm spec (training mode, fxsim.ops.norm) on its random data and compare with a
    float64 batch norm: max abs error and SQNR of y (forward) or of dx, dgamma, dbeta (backward_input)."""
    from .ops.norm import batchnorm_backward, batchnorm_train_forward
    cfg = spec.batch_norm
    s, d = spec.shape, spec.data
    rng = np.random.default_rng(int(d.get("seed", 0)))
    x_fmt = parse_format(cfg.x_fmt)
    C = s["in_channels"]
    x = _random_codes(rng, x_fmt, (s["batch"], C, s["height"], s["width"]), d.get("distribution", "normal"),
                      d.get("std"))
    gamma = 1.0 + 0.25 * rng.standard_normal(C)
    beta = 0.1 * rng.standard_normal(C)
    y, cache, stats = batchnorm_train_forward(x, gamma, beta, cfg)
    axes = (0, 2, 3)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    xhat = (x - mean) / np.sqrt(var + cfg.eps)
    g4 = gamma.reshape(1, -1, 1, 1)
    out = {"op": "batch_norm", "pass": spec.pass_, "elements": int(x.size),
           "reduction_overflow_events": int(stats["overflows"])}

    def compare(name, got, ref):
        err = np.asarray(got, dtype=np.float64) - ref
        out[f"{name}_max_abs_error_vs_float64"] = float(np.max(np.abs(err)))
        with np.errstate(all="ignore"):
            noise, sig = float(np.sum(err ** 2)), float(np.sum(ref ** 2))
        out[f"{name}_sqnr_db_vs_float64"] = float("inf") if noise == 0 else float(10 * np.log10(sig / noise))

    if spec.pass_ == "forward":
        compare("y", y, g4 * xhat + beta.reshape(1, -1, 1, 1))
        return out
    dy = rng.standard_normal(x.shape)
    dx, dgamma, dbeta = batchnorm_backward(dy, cache, cfg)
    n = x.size // C
    g = dy * g4
    ref_dx = (n * g - g.sum(axis=axes, keepdims=True) - xhat * (g * xhat).sum(axis=axes, keepdims=True)) \
        / (n * np.sqrt(var + cfg.eps))
    compare("dx", dx, ref_dx)
    compare("dgamma", dgamma, (dy * xhat).sum(axis=axes))
    compare("dbeta", dbeta, dy.sum(axis=axes))
    return out
