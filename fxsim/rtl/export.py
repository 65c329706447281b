"""Golden vectors for RTL testbenches: every tensor of a simulated layer as a memory file, plus a manifest.

Formats (one word per element, row-major):
- ``hex``: ``$readmemh``-ready: one word per line, two's complement (or the float bit pattern), zero-padded
  to ceil(bits/4) hex digits.
- ``coe``: Xilinx: ``memory_initialization_radix=16;`` / ``memory_initialization_vector=`` words, comma
  separated, the last followed by ``;``.
- ``mif``: Intel/Altera: ``DEPTH``, ``WIDTH``, ``ADDRESS_RADIX = HEX``, ``DATA_RADIX = HEX``, ``CONTENT BEGIN``,
  ``addr : data;`` lines, ``END;``.
- ``npy``: the integer codes as a NumPy array; ``bin``: little-endian words of 1, 2, 4 or 8 bytes.
``manifest.json`` records each file's shape, element order, format, word width and sha256, plus the
datapath, the spec and the fxsim version. Directories are written atomically and never overwritten
without ``force``.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from fxsim.formats import Fixed, Float
from fxsim._version import __version__
from fxsim.errors import InvalidArgument
from fxsim.ops.gemm import operand_codes
from fxsim.runtime.outputs import output_dir

__all__ = ["FILE_FORMATS", "to_words", "write_words", "read_words", "export_layer", "verify_dir", "atomic_dir"]

FILE_FORMATS = ("hex", "coe", "mif", "npy", "bin", "memb")
MANIFEST_VERSION = 2   # 2: layouts, word packing, constants files, the SystemVerilog package, conv traces


def to_words(codes, bits: int) -> np.ndarray:
    """Signed or unsigned int64 codes -> unsigned ``bits``-wide words (two's complement)."""
    c = np.asarray(codes, dtype=np.int64).astype(np.uint64)
    if bits < 64:
        c &= np.uint64((1 << bits) - 1)
    return c


def from_words(words, bits: int, signed: bool) -> np.ndarray:
    w = np.asarray(words, dtype=np.uint64)
    v = w.astype(np.int64)
    if signed and bits < 64:
        v = np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)
    return v


def _hex_lines(words, bits):
    digits = max(1, -(-bits // 4))
    return [format(int(w), f"0{digits}x") for w in words.ravel()]


def render(words: np.ndarray, bits: int, fmt: str) -> bytes:
    """File contents for unsigned words."""
    if fmt == "hex":
        return ("\n".join(_hex_lines(words, bits)) + "\n").encode()
    if fmt == "coe":
        lines = _hex_lines(words, bits)
        body = ",\n".join(lines) + ";\n" if lines else ";\n"
        return ("memory_initialization_radix=16;\nmemory_initialization_vector=\n" + body).encode()
    if fmt == "mif":
        lines = _hex_lines(words, bits)
        adigits = max(1, -(-max(len(lines) - 1, 1).bit_length() // 4))
        out = [f"DEPTH = {len(lines)};", f"WIDTH = {bits};", "ADDRESS_RADIX = HEX;", "DATA_RADIX = HEX;",
               "CONTENT BEGIN"]
        out += [f"    {i:0{adigits}X} : {w.upper()};" for i, w in enumerate(lines)]
        out.append("END;")
        return ("\n".join(out) + "\n").encode()
    if fmt == "bin":
        nbytes = next(n for n in (1, 2, 4, 8) if bits <= 8 * n)
        return words.ravel().astype(f"<u{nbytes}").tobytes()
    raise ValueError(f"file format must be one of {FILE_FORMATS}, got {fmt!r}")


def parse(content: bytes, bits: int, fmt: str, count: int) -> np.ndarray:
    """Unsigned words back from file contents (the inverse of ``render``)."""
    if fmt == "bin":
        nbytes = next(n for n in (1, 2, 4, 8) if bits <= 8 * n)
        return np.frombuffer(content, dtype=f"<u{nbytes}").astype(np.uint64)
    text = content.decode()
    if fmt == "hex":
        toks = [t for line in text.splitlines() for t in line.split("//")[0].split()]
    elif fmt == "coe":
        body = text.split("memory_initialization_vector=", 1)[1]
        toks = [t.strip() for t in body.replace(";", "").replace("\n", "").split(",") if t.strip()]
    elif fmt == "mif":
        body = text.split("CONTENT BEGIN", 1)[1].split("END;")[0]
        toks = [line.split(":")[1].strip().rstrip(";") for line in body.splitlines() if ":" in line]
    else:
        raise ValueError(f"cannot parse {fmt!r}")
    return np.array([int(t, 16) for t in toks], dtype=np.uint64)


def atomic_dir(out_dir, force: bool, kind: str = "golden-vectors"):
    """A context manager yielding a temporary directory renamed to ``out_dir`` on success (see
    :func:`fxsim.runtime.outputs.output_dir`: ``force`` replaces only a previous fxsim output of ``kind``)."""
    return output_dir(out_dir, kind, force=force, manifest_files=kind != "golden-vectors")


def write_words(directory, name, codes, bits, signed, fmt, *, fmt_name, order="row-major"):
    """Write one tensor; returns its manifest entry."""
    codes = np.asarray(codes, dtype=np.int64)
    ext = {"hex": "hex", "coe": "coe", "mif": "mif", "npy": "npy", "bin": "bin"}[fmt]
    fname = f"{name}.{ext}"
    path = os.path.join(directory, fname)
    if fmt == "npy":
        np.save(path, codes)
    else:
        with open(path, "wb") as fh:
            fh.write(render(to_words(codes, bits), bits, fmt))
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    return {"file": fname, "shape": list(codes.shape), "order": order, "format": fmt_name, "bits": int(bits),
            "signed": bool(signed), "encoding": fmt, "sha256": digest}


def read_words(directory, entry) -> np.ndarray:
    """The int64 codes of one manifest entry in the tensor's logical order, read strictly
    (``fxsim.rtl.verify.entry_elements``: every word exactly as fxsim writes it at the declared width, packed
    words unpacked, the layout transposed back; a malformed file raises ``MalformedFile``)."""
    from fxsim.rtl.verify import entry_codes
    path = os.path.join(directory, entry["file"])
    with open(path, "rb") as fh:
        content = fh.read()
    return entry_codes(content, entry)


def _codes_of(values, fmt):
    """Fixed: the stored integers; Float: the bit patterns (the values must lie on the format's grid)."""
    if isinstance(fmt, Float):
        return fmt.encode(values).astype(np.int64)
    return operand_codes(values, fmt, "exported value")     # off the grid or out of range: an error, not rint


def _values_of(codes, fmt):
    """Inverse of ``_codes_of``: real values of stored integers or bit patterns."""
    if isinstance(fmt, Float):
        return fmt.decode(np.asarray(codes, dtype=np.int64).astype(np.uint64))
    return np.ldexp(np.asarray(codes, dtype=np.int64).astype(np.float64), -fmt.frac)


def _signed(fmt):
    """Words of a Float are raw bit patterns (unsigned); Fixed words are two's complement if signed."""
    return bool(fmt.signed) if isinstance(fmt, Fixed) else False


_EXT = {"hex": "hex", "coe": "coe", "mif": "mif", "npy": "npy", "bin": "bin", "memb": "memb"}
_KEY_ORDER = "register values of the whole output, row-major"


def npy_bytes(codes) -> bytes:
    """The ``.npy`` file of int64 codes, as ``np.save`` writes it."""
    import io
    buf = io.BytesIO()
    np.save(buf, np.asarray(codes, dtype=np.int64))
    return buf.getvalue()


def file_bytes(codes, bits: int, encoding: str) -> bytes:
    """What fxsim writes for these codes in ``encoding`` (one of ``FILE_FORMATS``)."""
    if encoding == "npy":
        return npy_bytes(codes)
    return render(to_words(codes, bits), bits, encoding)


def export_options(spec, file_format="hex", traces=(), *, layouts=None, word_bits=None, pack="little",
                   constants=False) -> dict:
    """The hardware-shape options of an export, checked (``fxsim.rtl.testbench.check_export_options``) and in
    the form the manifest records them: layouts {tensor: layout}, word_bits {group: bits}, pack, constants."""
    from fxsim.rtl.testbench import check_export_options
    if file_format not in FILE_FORMATS:
        raise InvalidArgument(f"file format must be one of {FILE_FORMATS}, got {file_format!r}")
    if traces and spec.op not in ("gemm", "conv2d"):
        raise InvalidArgument(f"per-cycle traces are exported for gemm outputs (I,J) and conv2d outputs "
                              f"(N,O,OH,OW); this is a {spec.op} layer")
    layouts, wb = check_export_options(spec, file_format, layouts, word_bits, pack, constants, traces)
    return {"layouts": dict(sorted(layouts.items())), "word_bits": {k: int(v) for k, v in sorted(wb.items())},
            "pack": pack, "constants": bool(constants)}


def golden_contents(spec, *, file_format="hex", traces=(), data=None, layouts=None, word_bits=None, pack="little",
                    constants=False):
    """Everything a golden-vector directory holds, computed and not written: (contents, manifest) where
    ``contents`` maps file names to bytes (``manifest.json`` excluded) and ``manifest`` is its dict.
    ``export_layer`` writes exactly this; ``fxsim verify`` recomputes it and compares. The hardware-shape
    options (layouts, word_bits, pack, constants) are those of :func:`export_layer`."""
    from fxsim.rtl import layout as _layout
    from fxsim.workflows.run import run_layer
    from fxsim.rtl.testbench import requant_constants, sv_package, trace_order_text
    opts = export_options(spec, file_format, traces, layouts=layouts, word_bits=word_bits, pack=pack,
                          constants=constants)
    layouts, wb = opts["layouts"], opts["word_bits"]
    result, (A, B, bias) = run_layer(spec, trace=[tuple(t) for t in traces] or None, data=data)
    dp = spec.datapath
    acc = dp.accumulator.fmt
    out_fmt = dp.output.fmt
    float_acc = isinstance(acc, Float)
    acc_codes = _codes_of(result.acc, acc) if float_acc else result.acc
    bias_fmt = acc if float_acc else Fixed(64, acc.frac)
    contents, files = {}, {}
    shaped = spec.op in _layout.LOGICAL

    def put(key, codes, bits, signed, fmt_name, order=None, group=None):
        codes = np.asarray(codes, dtype=np.int64)
        if shaped:
            fname, content, entry = _layout.tensor_bytes(
                key, codes, bits, signed, file_format, fmt_name=fmt_name, logical=_layout.logical_axes(spec.op, key),
                layout=layouts.get(key), word_bits=wb.get(group or key), pack=pack, order=order)
        else:           # backward passes and other ops: one element per word, row-major
            fname = f"{key}.{_EXT[file_format]}"
            content = (file_bytes(codes, bits, file_format) if file_format != "memb"
                       else _layout.render_words([int(w) for w in to_words(codes, bits).ravel()], bits, "memb"))
            entry = {"file": fname, "shape": list(codes.shape), "order": order or "row-major", "format": fmt_name,
                     "bits": int(bits), "signed": bool(signed), "encoding": file_format,
                     "sha256": hashlib.sha256(content).hexdigest()}
        contents[fname] = content
        files[key] = entry

    put("a", _codes_of(A, dp.a), dp.a.bits, _signed(dp.a), str(dp.a))
    put("b", _codes_of(B, dp.b), dp.b.bits, _signed(dp.b), str(dp.b))
    if bias is not None:
        put("bias", _codes_of(bias, bias_fmt), acc.bits, _signed(acc), f"{acc} (accumulator grid)")
    put("acc", acc_codes, acc.bits, _signed(acc), str(acc))
    if out_fmt is not None:
        put("out", result.codes, out_fmt.bits, _signed(out_fmt), str(out_fmt))
    for idx, tr in sorted(result.traces.items()):
        tr = np.ravel(tr)
        put("trace_" + "_".join(str(int(v)) for v in idx), _codes_of(tr, acc) if float_acc else tr, acc.bits,
            _signed(acc), str(acc), order=trace_order_text(dp.order), group="trace")
    if constants:
        for key, (codes, bits) in requant_constants(spec, np.shape(result.acc)[1]).items():
            put(key, codes, bits, True, f"int{bits}", group="requant")
    manifest = {"fxsim_output": "golden-vectors", "fxsim_version": __version__, "manifest_version": MANIFEST_VERSION,
                "op": spec.op, "datapath": str(dp), "datapath_repr": repr(dp), "spec": spec.raw,
                "file_format": file_format, "traces": [[int(v) for v in idx] for idx in sorted(result.traces)],
                "export_options": opts, "files": files, "summary": result.summary()}
    # what json.load gives back (tuples as lists, NumPy scalars as numbers)
    manifest = json.loads(json.dumps(manifest, default=_json_default))
    if shaped:
        pkg_name, pkg = sv_package(manifest)
        contents[pkg_name] = pkg
        manifest["package"] = {"file": pkg_name, "sha256": hashlib.sha256(pkg).hexdigest()}
    return contents, manifest


def manifest_bytes(manifest) -> bytes:
    return (json.dumps(manifest, indent=2, default=_json_default) + "\n").encode()


def export_layer(spec, out_dir, *, file_format="hex", traces=(), force=False, layouts=None, word_bits=None,
                 pack="little", constants=False) -> dict:
    """Simulate ``spec`` and write its golden vectors to ``out_dir``; returns the manifest.

    ``traces``: (i, j) outputs of a gemm, (n, o, oh, ow) outputs of a conv2d. Hardware shapes
    (``fxsim.rtl.layout``): ``layouts`` {tensor: layout} (e.g. {"a": "NHWC", "b": "OHWI"}); ``word_bits`` packs
    several elements per memory word (an int for every tensor, or {tensor: bits}; tensor names a, b, bias,
    acc, out, trace, requant); ``pack`` "little" (first element in the low bits) or "big";
    ``constants`` writes the output stage's per-channel multipliers and shifts as memory files.
    A SystemVerilog package ``<layer>_pkg.sv`` with the layer's constants is written with every gemm or
    conv2d export. The options are checked and the output location too, before the simulation;
    ``force`` replaces only a previous golden-vector directory (see :mod:`fxsim.runtime.outputs`)."""
    kw = dict(layouts=layouts, word_bits=word_bits, pack=pack, constants=constants)
    export_options(spec, file_format, traces, **kw)
    with output_dir(out_dir, "golden-vectors", force=force, manifest_files=False) as tmp:
        contents, manifest = golden_contents(spec, file_format=file_format, traces=traces, **kw)
        write_contents(tmp, contents, manifest)
    return manifest


def write_contents(directory, contents, manifest) -> None:
    """Write ``golden_contents``' files and manifest into ``directory`` (a fresh temporary of
    :func:`fxsim.runtime.outputs.output_dir`)."""
    for fname, content in contents.items():
        with open(os.path.join(directory, fname), "wb") as fh:
            fh.write(content)
    with open(os.path.join(directory, "manifest.json"), "wb") as fh:
        fh.write(manifest_bytes(manifest))


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def verify_dir(directory) -> list:
    """Check a golden-vector directory against its manifest, its spec and inputs (see
    :mod:`fxsim.rtl.verify`); returns a list of problems, empty when everything matches."""
    from fxsim.rtl.verify import verify_directory
    return verify_directory(directory).problems()
