"""Every key a TOML layer spec accepts, as one table: its table, name, type, default, allowed values and
a one-line doc. Parsing (``fxsim.workflows.spec``) takes the known keys, their defaults and their value
checks from here, and the key reference in ``docs/workflows.md`` is rendered from here, so the two
cannot drift (``tests/test_spec_keys.py`` compares them). After changing the table, regenerate the
reference with ``python -m fxsim.workflows.spec_reference --update docs/workflows.md``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from fxsim.datapath import MAX_LANES, Order
from fxsim.errors import InvalidArgument, InvalidType
from fxsim.formats import parse_format
from fxsim.modes import Overflow, Rounding
from fxsim.ops.norm import BatchNormConfig
from fxsim.validate import check_bool, check_choice, check_int, check_real

__all__ = ["Key", "KEYS", "TABLES", "REQUIRED", "keys_of", "key", "default", "get", "subtables", "choice_words"]

REQUIRED = object()          # a default that does not exist: the key must be given (see the key's doc)


@dataclass(frozen=True)
class Key:
    """One key of a spec. ``check(value)`` raises (a ValueError or TypeError) when the value is not
    allowed. ``report`` says how parsing words that error: ``"expected"``: ``table.key = value is not
    allowed; expected <allowed>``; ``"validator"``: ``table.key: <the check's own message>``. A key
    with no check is checked by the object it builds (the datapath, the output stage). ``only``:
    (key, value) of the same table without which this key does not apply (it is then an error).
    ``default_doc``: the default in words where it is not one value."""
    table: str
    name: str
    type: str
    default: object
    allowed: str
    doc: str
    check: Callable | None = None
    report: str = "expected"
    only: tuple | None = None
    default_doc: str | None = None
    op_defaults: tuple = ()          # (op, value): another default for that [layer] op

    @property
    def path(self) -> str:
        return f"{self.table}.{self.name}"

    def accepts(self, value) -> bool:
        """Whether ``check`` accepts ``value`` (the caller reports it with the key and the line)."""
        try:
            self.check(value)
            return True
        except (InvalidArgument, InvalidType, ValueError, TypeError):
            return False


def choice_words(choices) -> str:
    """The allowed values of a closed set, as errors say them:

    >>> choice_words(("uniform", "normal"))
    "'uniform' or 'normal'"
    >>> choice_words(("float", "newton", "lut"))
    "one of 'float', 'newton', 'lut'"
    """
    words = [repr(c) for c in choices]
    return " or ".join(words) if len(words) <= 2 else "one of " + ", ".join(words)


def _choice(*choices):
    def check(v):
        if not (isinstance(v, str) and v in choices):
            raise InvalidArgument(f"expected {choice_words(choices)}, got {v!r}")
    return check, choice_words(choices)


def _int(lo=None, hi=None):
    return lambda v: check_int("value", v, lo=lo, hi=hi)


def _fmt(name):
    return lambda v: parse_format(v, argument=name)


_POSITIVE = "a positive integer"
_OPS = ("gemm", "conv2d", "batch_norm")
_PASSES = ("forward", "backward_input", "backward_weight")


def _layer_and_data():
    op_check, op_words = _choice(*_OPS)
    pass_check, pass_words = _choice(*_PASSES)
    dist_check, dist_words = _choice("uniform", "normal")
    keys = [
        Key("layer", "op", "string", "gemm", op_words,
            "the operation: a GEMM, a 2-D convolution, or a training-mode batch norm (see Batch norm)", op_check),
        Key("layer", "pass", "string", "forward", pass_words,
            "`forward`, or one gradient GEMM of training: `backward_input` (dX = dY . Wᵀ), `backward_weight` "
            "(dW = Xᵀ . dY); batch_norm: `forward` or `backward_input`", pass_check),
        Key("layer", "name", "string", None, "free text", "the layer's name in reports (default: the file name)"),
        Key("layer", "description", "string", None, "free text", "what the layer is, for the reader"),
    ]
    for name, doc in (("M", "gemm: rows of A (A is M x K)"), ("K", "gemm: the dot-product length (B is K x N)"),
                      ("N", "gemm: columns of B"),
                      ("batch", "conv2d, batch_norm: N of the NCHW input"), ("in_channels", "conv2d, batch_norm: C"),
                      ("height", "conv2d, batch_norm: H"), ("width", "conv2d, batch_norm: W"),
                      ("out_channels", "conv2d: O of the OIHW weights"), ("kernel", "conv2d: the square kernel's side")):
        keys.append(Key("shape", name, "integer", REQUIRED, _POSITIVE, doc, _int(lo=1),
                        default_doc="required for random data; with data files, checked against them"))
    for name, lo, default, doc in (
            ("stride", 1, 1, "conv2d: as in `fxsim.ops.conv.conv2d`"),
            ("padding", 0, 0, "conv2d: zeros on every side"),
            ("dilation", 1, 1, "conv2d: the dilated kernel must fit the padded input"),
            ("groups", 1, 1, "conv2d: a divisor of both channel counts")):
        keys.append(Key("shape", name, "integer", default, _POSITIVE if lo else "an integer >= 0", doc, _int(lo=lo)))
    keys += [
        Key("data", "seed", "integer", 0, "an integer >= 0", "random generator seed (NumPy PCG64)", _int(lo=0)),
        Key("data", "distribution", "string", "uniform", dist_words,
            "`uniform` over every code, or `normal` (clipped to the range)", dist_check,
            op_defaults=(("batch_norm", "normal"),)),
        Key("data", "std", "number", None, "a finite number > 0",
            "normal: Fixed operands in codes, Float operands as a fraction of the format's max",
            lambda v: check_real("std", v, lo=0, lo_open=True), default_doc="Fixed: range/6; Float: 1/4"),
        Key("data", "bias", "boolean or string", False,
            "true or false for random data; a file name (`\"b.npy\"`) when a and b are files",
            "a random bias on the accumulator grid, or a `.npy` file of one value per output column (channel); "
            "none in a backward pass or with `npz` (the npz holds it)"),
        Key("data", "a", "string", None, "a file name", "first operand: a `.npy` file of real values on the operand "
            "grid, relative to the spec (give `b` too)"),
        Key("data", "b", "string", None, "a file name", "second operand, as `a`"),
        Key("data", "npz", "string", None, "a file name", "one `.npz` holding arrays `a`, `b` and optionally `bias`"),
    ]
    return keys


def _datapath_and_output():
    v = "validator"
    keys = [
        Key("datapath", "a", "format", "int8", "any name `fxsim formats` lists (`int13`, `q4.12`, `e4m3`, ...)",
            "first operand's format", _fmt("a"), v),
        Key("datapath", "b", "format", "int8", "any format name", "second operand's format", _fmt("b"), v),
        Key("datapath", "a_zero_point", "integer", 0, "an integer (per tensor)",
            "subtracted from a's codes before the multiply", lambda x: check_int("a_zero_point", x), v),
        Key("datapath", "b_zero_point", "integer", 0, "an integer (per tensor)",
            "subtracted from b's codes before the multiply", lambda x: check_int("b_zero_point", x), v),
        Key("datapath", "zero_point_bits", "integer", None, "an integer in 2..64",
            "width of the zero-point subtractor's result", lambda x: check_int("zero_point_bits", x, lo=2, hi=64), v,
            default_doc="exact"),
        Key("datapath", "product", "format", None, "any format name", "a product register narrower than exact",
            default_doc="exact"),
        Key("datapath", "product_rounding", "string", None, "a rounding mode (`fxsim formats` lists the names)",
            "rounding into the product register", lambda x: Rounding.parse(x, argument="product_rounding"), v,
            default_doc="the product register's"),
        Key("datapath", "product_overflow", "string", None, "an overflow mode", "overflow of the product register",
            default_doc="the product register's"),
        Key("datapath", "product_random_bits", "integer", None, "an integer in 1..62",
            "Float product register: stochastic rounding with this many random bits",
            lambda x: check_int("product_random_bits", x, lo=1, hi=62), v, default_doc="none (deterministic)"),
        Key("datapath", "product_seed", "integer", None, "an integer in 0..2**63-1",
            "Float product register: seed of its stochastic rounding",
            lambda x: check_int("product_seed", x, lo=0, hi=2 ** 63 - 1), v),
        Key("datapath", "bias_preload", "boolean", True, "true or false (a TOML boolean; `\"false\"` is refused)",
            "`true`: bias loaded into the accumulator; `false`: added in the output stage",
            lambda x: check_bool("bias_preload", x), v),
        Key("datapath", "fused", "boolean", False, "true or false",
            "float datapaths: no rounding between multiply and add", lambda x: check_bool("fused", x), v),
        Key("datapath.accumulator", "format", "format", "int32", "any format name (`int18`, `q8.16`, `fp16`, ...)",
            "the accumulator register", _fmt("format"), v),
        Key("datapath.accumulator", "overflow", "string", None, "`wrap`, `saturate`, ... (Float: `ieee`, `saturate`)",
            "applied after every addition", lambda x: Overflow.parse(x, argument="overflow"), v,
            default_doc="`wrap` (Float: `ieee`)"),
        Key("datapath.accumulator", "rounding", "string", None, "a rounding mode",
            "Fixed: aligning products (`floor` drops LSBs); Float: every addition",
            lambda x: Rounding.parse(x, argument="rounding"), v, default_doc="`floor` (Float: `half_even`)"),
        Key("datapath.accumulator", "random_bits", "integer", None, "an integer in 1..62",
            "Float: stochastic rounding with this many random bits per addition",
            lambda x: check_int("random_bits", x, lo=1, hi=62), v, default_doc="none (deterministic)"),
        Key("datapath.accumulator", "seed", "integer", None, "an integer in 0..2**63-1",
            "Float: seed of the stochastic rounding", lambda x: check_int("seed", x, lo=0, hi=2 ** 63 - 1), v),
        Key("datapath.accumulator", "flush_subnormals", "boolean", False, "true or false",
            "Float: flush subnormal sums to zero", lambda x: check_bool("flush_subnormals", x), v),
        Key("datapath.order", "kind", "string", "sequential", "`sequential`, `tree`, `chunked`",
            "the order of the additions", lambda x: check_choice("kind", x, ("sequential", "tree", "chunked")), v),
        Key("datapath.order", "lanes", "integer", 2, f"an integer in 2..{MAX_LANES}",
            "chunked: parallel lanes, each its own register", lambda x: check_int("lanes", x, lo=2, hi=MAX_LANES), v,
            only=("kind", "chunked")),
        Key("datapath.order", "combine", "string", "sequential", "`sequential`, `tree`",
            "chunked: how the lanes' sums are combined", lambda x: check_choice("combine", x, ("sequential", "tree")),
            v, only=("kind", "chunked")),
        Key("datapath.order", "level_bits", "list of integers", None, "register widths, each 2..64 (`[20, 24]`, "
            "not `\"24\"`)", "tree: the register width of each level", lambda x: Order("tree", level_bits=x), v,
            only=("kind", "tree"), default_doc="the accumulator's"),
        Key("output", "format", "format", None, "any format name", "the output register",
            _fmt("format"), v, default_doc="the raw accumulator"),
        Key("output", "overflow", "string", None, "an overflow mode", "of the output register (with a `format` only)",
            lambda x: Overflow.parse(x, argument="overflow"), v, default_doc="saturate"),
        Key("output", "activation", "string or list", None, '`"relu"` or `[lo, hi]` (a clamp)',
            "applied after requantization", default_doc="none"),
        Key("output", "bias_bits", "integer", None, "an integer in 2..64", "width of the output-stage bias adder",
            lambda x: check_int("bias_bits", x, lo=2, hi=64), v, default_doc="exact"),
        Key("output.requant", "kind", "string", "dyadic", "`dyadic`, `gemmlowp`, `float32`, `shift`",
            "dyadic: multiplier * 2**-shift; see `fxsim.engines.output_stage`"),
        Key("output.requant", "multiplier", "integer or list", 1, "integers (per channel: one entry per output "
            "channel)", "the integer multiplier"),
        Key("output.requant", "shift", "integer or list", 0, "integers in -62..62",
            "right shift (negative: an exact left shift, then the output register saturates or wraps)"),
        Key("output.requant", "scale", "number or list", None, "finite numbers > 0", "float32: the scale"),
        Key("output.requant", "rounding", "string", None, "a rounding mode (kinds `dyadic` and `shift` only)",
            "rounding of the requantization", default_doc="`half_even`; `gemmlowp` and `float32` round as defined"),
        Key("output.requant", "zero_point", "integer", 0, "an int32", "added to the requantized value",
            lambda x: check_int("zero_point", x, lo=-2 ** 31, hi=2 ** 31 - 1), v),
    ]
    return keys


def _batch_norm():
    defaults = {f.name: f.default for f in dataclasses.fields(BatchNormConfig)}
    v = "validator"
    docs = {"x_fmt": "the inputs' format", "acc": "the accumulator of Σx", "stat_acc": "the accumulator of Σ(x−μ)²",
            "grad_acc": "the accumulator of dβ and dγ", "stat_fmt": "mean, variance, 1/n",
            "rsqrt_fmt": "the reciprocal square root's format", "out_fmt": "every product on the way to y",
            "grad_fmt": "dy and the backward's per-element arithmetic"}
    keys = [Key("batch_norm", name, "format", defaults[name], "any format name", doc,
                (lambda n: lambda x: parse_format(x, argument=n))(name), v) for name, doc in docs.items()]
    order_check, order_words = _choice("sequential", "tree")
    method_check, method_words = _choice("float", "newton", "lut")
    keys += [
        Key("batch_norm", "order", "string", defaults["order"], order_words, "the order of every reduction",
            order_check),
        Key("batch_norm", "rsqrt_method", "string", defaults["rsqrt_method"], method_words,
            "how 1/sqrt(var + eps) is computed", method_check),
        Key("batch_norm", "rsqrt_frac", "integer", defaults["rsqrt_frac"], "an integer in 4..24",
            "fractional bits of the newton and lut methods", _int(lo=4, hi=24)),
        Key("batch_norm", "range_bn", "boolean", defaults["range_bn"], "true or false",
            "range batch norm (the range of x in place of its standard deviation)", lambda x: check_bool("range_bn", x)),
        Key("batch_norm", "eps", "number", defaults["eps"], "a finite number > 0", "added to the variance",
            lambda x: check_real("eps", x, lo=0, lo_open=True)),
    ]
    return keys


KEYS: tuple = tuple(_layer_and_data() + _datapath_and_output() + _batch_norm())
TABLES: tuple = tuple(dict.fromkeys(k.table for k in KEYS))      # in the order the reference lists them
_BY_PATH = {k.path: k for k in KEYS}


def keys_of(table: str) -> tuple:
    """The keys of one table (``"datapath.accumulator"``), in the table's order."""
    return tuple(k for k in KEYS if k.table == table)


def key(path: str) -> Key:
    """The key ``"table.name"``."""
    return _BY_PATH[path]


def default(path: str, op: str | None = None):
    """The value parsing uses where ``path`` is not given (None: decided by the object built from it):

    >>> default("datapath.accumulator.format")
    'int32'
    >>> default("datapath.accumulator.overflow") is None      # the register's own: wrap, or ieee for a Float
    True
    """
    k = _BY_PATH[path]
    d = dict(k.op_defaults).get(op, k.default)
    return None if d is REQUIRED else d


def get(table: dict, path: str, op: str | None = None):
    """``table``'s value of the key ``path`` (``table`` is the dict of ``path``'s table), or its default:

    >>> get({"stride": 2}, "shape.stride"), get({}, "shape.stride"), get({}, "data.distribution", op="batch_norm")
    (2, 1, 'normal')
    """
    return table.get(path.rpartition(".")[2], default(path, op))


def subtables(table: str) -> tuple:
    """Names of the tables nested in ``table`` (``"accumulator"``, ``"order"`` in ``"datapath"``)."""
    return tuple(t.rpartition(".")[2] for t in TABLES if t.rpartition(".")[0] == table)
