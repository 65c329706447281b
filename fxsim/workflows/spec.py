"""Layer specs: one TOML file describes one layer, its data, its datapath and its output stage.

The tables and keys a spec accepts, their types, defaults and allowed values are the table in
``fxsim.workflows.spec_keys`` (rendered as the key reference of docs/workflows.md); this module reads a
spec against it and builds the layer's ``Datapath``. Every error names the key, the value, what is
allowed, and the line of the file where it can.

A spec's other jobs live beside it: its operands (``fxsim.workflows.data.make_data``), simulating it
(``fxsim.workflows.run.run_layer``), its arrays' shapes and memory (``fxsim.workflows.shapes``) and the
batch-norm experiment (``fxsim.workflows.batch_norm.run_batch_norm``); the names are importable from here
too.
"""
from __future__ import annotations

import os

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from fxsim.datapath import Accumulator, Datapath, Order, OutputStage, Requant
from fxsim.errors import BadFile
from fxsim.formats import parse_format
from fxsim.ops.norm import BatchNormConfig
from fxsim.runtime.inputs import read_text_file
from fxsim.workflows import spec_keys
from fxsim.workflows.batch_norm import run_batch_norm
from fxsim.workflows.data import make_data
from fxsim.workflows.run import run_layer
from fxsim.workflows.shapes import check_layer_size, layer_bytes, operand_shapes, second_operand_matrix
from fxsim.workflows.spec_base import LayerSpec, SpecError, SpecFileError, SpecText
from fxsim.workflows.spec_keys import default, get

__all__ = ["SpecError", "SpecFileError", "LayerSpec",
           "load_spec", "parse_spec", "spec_from_dict", "build_datapath", "make_data",
           "run_layer", "operand_shapes",
           # also here for existing importers: the modules beside this one hold them
           "run_batch_norm", "check_layer_size", "layer_bytes", "second_operand_matrix"]

_Ctx = SpecText                     # the name fxsim.model.hardware knows it by
_TOP = tuple(t for t in spec_keys.TABLES if "." not in t)
_OPS = ("gemm", "conv2d", "batch_norm")
_NEED = {"gemm": ("M", "K", "N"), "conv2d": ("batch", "in_channels", "height", "width", "out_channels", "kernel"),
         "batch_norm": ("batch", "in_channels", "height", "width")}


def load_spec(path) -> LayerSpec:
    """Read a TOML layer spec from ``path``."""
    path = os.fspath(path)
    try:
        text = read_text_file(path, "spec file")     # a regular, readable UTF-8 file of a sane size
    except BadFile as exc:
        raise SpecFileError(str(exc)) from None
    return parse_spec(text, path=path)


def parse_spec(text: str, *, path=None) -> LayerSpec:
    """A spec from TOML text (``path``, when given, names the file in errors and anchors data files)."""
    ctx = SpecText(text, path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{ctx.path}: not valid TOML: {exc}") from None
    return spec_from_dict(raw, ctx=ctx)


def _known(table):
    return [k.name for k in spec_keys.keys_of(table)] + list(spec_keys.subtables(table))


def _check_keys(raw, ctx):
    """Every table and key is one the reference lists."""
    for name in raw:
        if name not in _TOP:
            ctx.fail(name, raw[name], f"one of the tables {sorted(_TOP)}")
        if not isinstance(raw[name], dict):
            ctx.fail(name, raw[name], f"a table [{name}]")
    for table in spec_keys.TABLES:
        t = raw
        for part in table.split("."):
            t = t.get(part, {}) if isinstance(t, dict) else {}
        if not isinstance(t, dict):
            ctx.fail(table, t, f"a table [{table}]")
        allowed = _known(table)
        for k, v in t.items():
            if k not in allowed:
                ctx.fail(f"{table}.{k}", v, f"one of the keys {sorted(allowed)}")


def _check_applies(table_name, table, ctx):
    """Keys of ``table`` that apply only with another key's value (``lanes`` with ``kind = "chunked"``)."""
    for k in spec_keys.keys_of(table_name):
        if k.only and k.name in table:
            other = get(table, f"{table_name}.{k.only[0]}")
            if other != k.only[1]:
                ctx.fail(k.path, table[k.name], f"nothing: {k.name} applies to {k.only[0]} = \"{k.only[1]}\" "
                         f"only, and this order is {k.only[0]} = {other!r}")


def _check_values(table_name, table, ctx):
    """The values of the keys of ``table`` that the reference gives a check, in the reference's order."""
    for k in spec_keys.keys_of(table_name):
        if k.check is None or k.name not in table:
            continue
        if k.report == "expected":
            if not k.accepts(table[k.name]):
                ctx.fail(k.path, table[k.name], k.allowed)
        else:
            try:
                k.check(table[k.name])
            except (ValueError, TypeError) as exc:
                ctx.reraise(k.path, exc)


def spec_from_dict(raw: dict, *, ctx=None) -> LayerSpec:
    """A spec from already-parsed tables (as stored in a golden-vector manifest)."""
    ctx = ctx or SpecText("", None)
    _check_keys(raw, ctx)
    layer = raw.get("layer", {})
    _check_values("layer", layer, ctx)
    op = get(layer, "layer.op")
    pass_ = get(layer, "layer.pass")
    if pass_ != "forward" and op == "conv2d":
        for k in ("dilation", "groups"):
            if get(raw.get("shape", {}), f"shape.{k}") != 1:
                ctx.fail(f"shape.{k}", raw["shape"][k], f"1 (backward convolutions have {k} 1)")
    if pass_ != "forward" and raw.get("data", {}).get("bias"):
        ctx.fail("data.bias", raw["data"]["bias"], "no bias in a backward pass (gradients have none)")
    shape = dict(raw.get("shape", {}))
    if op == "batch_norm" and pass_ == "backward_weight":
        ctx.fail("layer.pass", pass_, "'forward' or 'backward_input' for batch_norm (its backward gives dx, "
                 "dgamma and dbeta together)")
    need = _NEED[op]
    files = raw.get("data", {}).get("npz") or raw.get("data", {}).get("a")
    for k in need:
        if k not in shape and not files:
            ctx.fail(f"shape.{k}", None, spec_keys.key(f"shape.{k}").allowed)
    _check_values("shape", shape, ctx)
    if op == "conv2d":
        _check_conv_shape(shape, ctx)
    data = dict(raw.get("data", {}))
    _check_values("data", data, ctx)
    _check_data_sources(data, ctx)
    dp = build_datapath(raw.get("datapath", {}), raw.get("output", {}), ctx=ctx)
    bn = _batch_norm_config(raw.get("batch_norm", {}), ctx) if op == "batch_norm" else None
    spec = LayerSpec(op=op, shape=shape, data=data, datapath=dp, raw=raw,
                     path=ctx.path if ctx.path != "<spec>" else None, pass_=pass_, batch_norm=bn)
    if op != "batch_norm" and all(k in shape for k in need):
        check_layer_size(spec)
    return spec


def _check_data_sources(data, ctx):
    """Random data or files, and the keys that go with each."""
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


def _check_conv_shape(shape, ctx):
    """Groups divide the channels; the (dilated) kernel fits the padded input."""
    g = get(shape, "shape.groups")
    for k in ("in_channels", "out_channels"):
        if k in shape and shape[k] % g:
            ctx.fail("shape.groups", g, f"a divisor of shape.{k} = {shape[k]}")
    k = shape.get("kernel")
    pad, dil = get(shape, "shape.padding"), get(shape, "shape.dilation")
    for side in ("height", "width"):
        if k is not None and side in shape and shape[side] + 2 * pad < dil * (k - 1) + 1:
            ctx.fail("shape.kernel", k, f"a kernel that fits the padded input: {side} {shape[side]} + 2 x padding "
                     f"{pad} is less than the dilated kernel's {dil * (k - 1) + 1}")


def _batch_norm_config(table, ctx):
    _check_values("batch_norm", table, ctx)
    return BatchNormConfig(**table)


def build_datapath(dp_table: dict, out_table: dict, *, ctx=None) -> Datapath:
    """A Datapath from the [datapath] and [output] tables of a spec."""
    ctx = ctx or SpecText("", None)
    allowed = _known("datapath")
    for k in dp_table:
        if k not in allowed:
            ctx.fail(f"datapath.{k}", dp_table[k], f"one of the keys {sorted(allowed)}")
    acc_t = dp_table.get("accumulator", {})
    ord_t = dp_table.get("order", {})
    rq_t = out_table.get("requant")

    def attempt(key, fn, table=None):
        """``fn()``, its error reported at ``key``, or at the key of ``table`` the error names as its argument."""
        try:
            return fn()
        except (ValueError, TypeError) as exc:
            named = getattr(exc, "argument", None)
            if table is not None and named in table:
                key = f"{key.rsplit('.', 1)[0]}.{named}"
            ctx.reraise(key, exc)

    _check_applies("datapath.order", ord_t, ctx)      # keys that do not apply to this order, before any value
    for table_name, table in (("datapath.accumulator", acc_t), ("datapath", dp_table), ("output", out_table),
                              ("datapath.order", ord_t), ("output.requant", rq_t)):
        if table is not None:
            _check_values(table_name, table, ctx)

    acc_fmt = attempt("datapath.accumulator.format", lambda: parse_format(
        get(acc_t, "datapath.accumulator.format"), argument="format"))
    # absent keys are not passed: the register type (integer or float) holds its defaults
    acc = attempt("datapath.accumulator.format", lambda: Accumulator(
        acc_fmt, **{k: acc_t[k] for k in ("overflow", "rounding", "random_bits", "seed", "flush_subnormals")
                    if k in acc_t}))
    kind = get(ord_t, "datapath.order.kind")
    order = attempt("datapath.order.kind", lambda: Order(
        kind, lanes=ord_t.get("lanes", default("datapath.order.lanes") if kind == "chunked" else 1),
        combine=get(ord_t, "datapath.order.combine"), level_bits=get(ord_t, "datapath.order.level_bits")))
    requant = None
    if rq_t is not None:
        requant = attempt("output.requant.kind", lambda: Requant(*(get(rq_t, f"output.requant.{k}") for k in (
            "kind", "multiplier", "shift", "scale", "rounding", "zero_point"))))
    act = get(out_table, "output.activation")
    if isinstance(act, list):
        act = tuple(act)
    output = attempt("output.format", lambda: OutputStage(
        bias_bits=get(out_table, "output.bias_bits"), requant=requant, activation=act,
        fmt=get(out_table, "output.format"), overflow=get(out_table, "output.overflow")), out_table)
    return attempt("datapath.a", lambda: Datapath(
        accumulator=acc, order=order, output=output,
        **{k: get(dp_table, f"datapath.{k}") for k in ("a", "b", "a_zero_point", "b_zero_point", "zero_point_bits",
                                                       "product", "product_rounding", "product_overflow",
                                                       "product_random_bits", "product_seed", "bias_preload",
                                                       "fused")}), table=dp_table)
