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
import shutil
import tempfile

import numpy as np

from .formats import Fixed, Float

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


def atomic_dir(out_dir, force: bool):
    """A context manager yielding a temporary directory renamed to ``out_dir`` on success."""
    return _AtomicDir(out_dir, force)


class _AtomicDir:
    def __init__(self, out_dir, force):
        self.out = os.path.abspath(os.fspath(out_dir))
        self.force = force

    def __enter__(self):
        if os.path.exists(self.out) and not self.force:
            raise FileExistsError(f"output directory {self.out!r} exists; pass --force to replace it")
        parent = os.path.dirname(self.out)
        os.makedirs(parent, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(self.out)}.tmp-", dir=parent)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        old = None
        if os.path.exists(self.out):
            old = self.out + ".old-" + os.path.basename(self.tmp)
            os.rename(self.out, old)
        os.rename(self.tmp, self.out)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        return False


def write_words(directory, name, codes, bits, signed, fmt, *, fmt_name, order="row-major"):
    """Write one tensor; returns its manifest entry."""
    codes = np.asarray(codes, dtype=np.int64)
    ext = {"hex": "hex", "coe": "coe", "mif": "mif", "npy": "npy", "bin": "bin", "memb": "memb"}[fmt]
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
    """The int64 codes of one manifest entry (in the tensor's logical order)."""
    from . import layout as _layout
    if _layout.is_shaped(entry):
        return _layout.read_tensor(directory, entry)
    path = os.path.join(directory, entry["file"])
    if entry["encoding"] == "npy":
        return np.load(path).astype(np.int64)
    with open(path, "rb") as fh:
        content = fh.read()
    count = int(np.prod(entry["shape"])) if entry["shape"] else 1
    words = parse(content, entry["bits"], entry["encoding"], count)
    if words.size != count:
        raise ValueError(f"{entry['file']}: {words.size} words, manifest says {count}")
    return from_words(words, entry["bits"], entry["signed"]).reshape(entry["shape"])


def _codes_of(values, fmt):
    """Fixed: the stored integers; Float: the bit patterns (the values must lie on the format's grid)."""
    if isinstance(fmt, Float):
        return fmt.encode(values).astype(np.int64)
    return np.rint(np.ldexp(np.asarray(values, dtype=np.float64), fmt.frac)).astype(np.int64)


def _values_of(codes, fmt):
    """Inverse of ``_codes_of``: real values of stored integers or bit patterns."""
    if isinstance(fmt, Float):
        return fmt.decode(np.asarray(codes, dtype=np.int64).astype(np.uint64))
    return np.ldexp(np.asarray(codes, dtype=np.int64).astype(np.float64), -fmt.frac)


def _signed(fmt):
    """Words of a Float are raw bit patterns (unsigned); Fixed words are two's complement if signed."""
    return bool(fmt.signed) if isinstance(fmt, Fixed) else False


def export_layer(spec, out_dir, *, file_format="hex", traces=(), force=False, layouts=None, word_bits=None,
                 pack="little", constants=False) -> dict:
    """Simulate ``spec`` and write its golden vectors to ``out_dir``; returns the manifest.

    ``traces``: (i, j) outputs of a gemm, (n, o, oh, ow) outputs of a conv2d. Hardware shapes
    (``fxsim.layout``): ``layouts`` {tensor: layout} (e.g. {"a": "NHWC", "b": "OHWI"}); ``word_bits`` packs
    several elements per memory word (an int for every tensor, or {tensor: bits}; tensor names a, b, bias,
    acc, out, trace, requant); ``pack`` "little" (first element in the low bits) or "big";
    ``constants`` writes the output stage's per-channel multipliers and shifts as memory files.
    A SystemVerilog package ``<layer>_pkg.sv`` with the layer's constants is written with every export."""
    from . import __version__
    from . import layout as _layout
    from .spec import run_layer
    from .testbench import check_export_options, requant_constants, trace_order_text, write_sv_package
    if file_format not in FILE_FORMATS:
        raise ValueError(f"file format must be one of {FILE_FORMATS}, got {file_format!r}")
    layouts, word_bits = check_export_options(spec, file_format, layouts, word_bits, pack, constants, traces)
    result, (A, B, bias) = run_layer(spec, trace=list(traces) or None)
    dp = spec.datapath
    acc = dp.accumulator.fmt
    out_fmt = dp.output.fmt
    float_acc = isinstance(acc, Float)
    acc_codes = _codes_of(result.acc, acc) if float_acc else result.acc
    bias_fmt = acc if float_acc else Fixed(64, acc.frac)
    with atomic_dir(out_dir, force) as tmp:
        files = {}

        def put(key, codes, bits, signed, fmt_name, order=None, group=None):
            group = group or key
            files[key] = _layout.write_tensor(
                tmp, key, codes, bits, signed, file_format, fmt_name=fmt_name,
                logical=_layout.logical_axes(spec.op, key), layout=layouts.get(key), word_bits=word_bits.get(group),
                pack=pack, order=order)

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
        manifest = {"fxsim_version": __version__, "manifest_version": MANIFEST_VERSION, "op": spec.op,
                    "datapath": str(dp), "datapath_repr": repr(dp), "spec": spec.raw,
                    "files": files, "summary": result.summary()}
        manifest["package"] = write_sv_package(manifest, tmp)
        with open(os.path.join(tmp, "manifest.json"), "w") as fh:
            json.dump(manifest, fh, indent=2, default=_json_default)
    return manifest


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def verify_dir(directory) -> list:
    """Recompute a golden-vector directory from its manifest and input files; returns a list of problems
    (empty when every checksum and every recomputed word matches)."""
    from .spec import run_layer, spec_from_dict
    problems = []
    mpath = os.path.join(directory, "manifest.json")
    try:
        with open(mpath) as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        return [f"{mpath} does not exist"]
    files = manifest["files"]
    for key, entry in files.items():
        path = os.path.join(directory, entry["file"])
        if not os.path.exists(path):
            problems.append(f"{entry['file']}: missing")
            continue
        with open(path, "rb") as fh:
            if hashlib.sha256(fh.read()).hexdigest() != entry["sha256"]:
                problems.append(f"{entry['file']}: sha256 differs from the manifest")
    if problems:
        return problems
    spec = spec_from_dict(manifest["spec"])
    dp = spec.datapath
    acc = dp.accumulator.fmt
    A = _values_of(read_words(directory, files["a"]), dp.a)
    B = _values_of(read_words(directory, files["b"]), dp.b)
    bias = None
    if "bias" in files:
        bias = _values_of(read_words(directory, files["bias"]), acc)
    if "package" in manifest:
        pkg = os.path.join(directory, manifest["package"]["file"])
        if not os.path.exists(pkg):
            problems.append(f"{manifest['package']['file']}: missing")
        else:
            with open(pkg, "rb") as fh:
                if hashlib.sha256(fh.read()).hexdigest() != manifest["package"]["sha256"]:
                    problems.append(f"{manifest['package']['file']}: sha256 differs from the manifest")
    traces = [tuple(int(x) for x in k.split("_")[1:]) for k in files if k.startswith("trace_")]
    result, _ = run_layer(spec, trace=traces or None, data=(A, B, bias))
    float_acc = isinstance(acc, Float)
    checks = {"acc": _codes_of(result.acc, acc) if float_acc else result.acc}
    if "out" in files:
        checks["out"] = result.codes
    for k in files:
        if k.startswith("trace_"):
            tr = np.ravel(result.traces[tuple(int(x) for x in k.split("_")[1:])])
            checks[k] = _codes_of(tr, acc) if float_acc else tr
    if any(k.startswith("requant_") for k in files):
        from .testbench import requant_constants
        for key, (codes, _bits) in requant_constants(spec, files["acc"]["shape"][1]).items():
            if key in files:
                checks[key] = codes
    for key, want in checks.items():
        if want is None:
            continue
        got = read_words(directory, files[key])
        entry = files[key]
        want_w = to_words(want, entry["bits"])
        got_w = to_words(got, entry["bits"])
        bad = np.flatnonzero(want_w.ravel() != got_w.ravel())
        if want_w.shape != got_w.shape or bad.size:
            problems.append(f"{entry['file']}: {bad.size} word(s) differ from the recomputation, first at index "
                            f"{int(bad[0]) if bad.size else 'shape'}")
    return problems
