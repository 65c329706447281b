"""``fxsim verify``: a golden-vector directory is exactly what fxsim would write for its spec and inputs.

What is checked (:func:`verify_directory`):

- The directory: ``manifest.json`` and the files it lists, nothing else -- no unlisted file, no
  sub-directory, no symbolic link, no FIFO or device. Files are opened relative to the directory without
  following links (a manifest cannot name ``../x``, ``/etc/passwd`` or a sub-path: each entry's file is
  ``<key>.<encoding>``), must be regular files, and are read only up to the size their declared shape,
  width and encoding allow.
- The manifest: a JSON object with exactly the keys fxsim writes, each of its type.
- Each file, strictly against its declared width and encoding: ``hex`` one word per line of exactly
  ceil(bits/4) hex digits (a ``0x`` prefix, which ``$readmemh`` rejects, a short or long word, or a word
  wider than ``bits`` is an error -- nothing is masked); ``coe`` and ``mif`` with their headers (the MIF
  ``DEPTH``/``WIDTH`` must be the declared ones, addresses in order); ``bin`` exactly ``count`` words of
  the declared size below 2**bits; ``npy`` an int64 array of the declared shape within the declared range.
- The content: each file's sha256 against the manifest, then the whole directory recomputed from the
  spec stored in the manifest (and, when the spec's data came from files, from the input files ``a``,
  ``b`` and ``bias`` in the directory; random data is regenerated from the spec's seed and compared too):
  every file the spec implies must be listed (an output, a bias or a requested trace deleted together
  with its manifest entry is found), every listed file must be implied, each entry's shape, order, format,
  bits, signedness and encoding must be what the spec implies, every word must equal the recomputed
  word, and the manifest's op, datapath, traces, file format and summary must be the recomputed ones.

What it cannot know: the manifest's ``spec`` is the claim everything else is checked against, and the
version string records who wrote the directory (it must be a string; another fxsim version may verify).

Results: :class:`Report` with ``malformed`` (the directory or a file cannot be read as a golden-vector
directory: exit 2) and ``mismatches`` (it reads, but differs from the recomputation: exit 1).
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import stat
from dataclasses import dataclass, field

import numpy as np

from fxsim.errors import FxsimError

__all__ = ["Report", "verify_directory", "parse_strict", "entry_elements", "entry_codes", "MalformedFile"]

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20
MAX_WORDS = 1 << 31
_MAX_SHOWN = 20

_TOP_KEYS = {"fxsim_output": str, "fxsim_version": str, "manifest_version": int, "op": str, "datapath": str,
             "datapath_repr": str, "spec": dict, "file_format": str, "traces": list, "export_options": dict,
             "files": dict, "summary": dict}
_OPTIONAL_TOP = {"package": dict}
_ENTRY_KEYS = {"file": str, "shape": list, "order": str, "format": str, "bits": int, "signed": bool,
               "encoding": str, "sha256": str}
_SHAPED_KEYS = {"logical": str, "layout": str}
_PACKED_KEYS = {"word_bits": int, "elements_per_word": int, "pack": str, "words": int}
_IDX = r"(0|[1-9][0-9]{0,9})"
_KEY_RE = re.compile(rf"^(a|b|bias|acc|out|requant_multiplier|requant_shift|trace_{_IDX}_{_IDX}|"
                     rf"trace_{_IDX}_{_IDX}_{_IDX}_{_IDX})$")
_PKG_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}_pkg\.sv$")
MAX_WORD_BITS = 1 << 16
MAX_PACKAGE_BYTES = 16 << 20
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_ENCODINGS = ("hex", "coe", "mif", "npy", "bin", "memb")


class MalformedFile(FxsimError, ValueError):
    """A file that cannot be read as words of its declared width and encoding."""


@dataclass
class Report:
    malformed: list = field(default_factory=list)
    mismatches: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.malformed and not self.mismatches

    def problems(self) -> list:
        return list(self.malformed) + list(self.mismatches)


class _Stop(Exception):
    pass


# ---------------------------------------------------------------------------------------------------
# strict word parsing

_HEXVAL = np.full(256, 255, dtype=np.uint8)
for _c in b"0123456789":
    _HEXVAL[_c] = _c - 48
for _c in b"abcdef":
    _HEXVAL[_c] = _c - 87
for _c in b"ABCDEF":
    _HEXVAL[_c] = _c - 55


def _digits(bits):
    return max(1, -(-bits // 4))


def _check_token(tok: str, bits: int, where: str) -> int:
    digits = _digits(bits)
    if tok[:2] in ("0x", "0X"):
        raise MalformedFile(f"{where}: {tok!r} has a 0x prefix, which $readmemh rejects")
    if not tok or any(c not in "0123456789abcdefABCDEF" for c in tok):
        raise MalformedFile(f"{where}: {tok!r} is not a hex word")
    if len(tok) != digits:
        raise MalformedFile(f"{where}: {tok!r} has {len(tok)} hex digit(s); a {bits}-bit word is written "
                            f"with {digits}")
    v = int(tok, 16)
    if v >> bits:
        raise MalformedFile(f"{where}: {tok!r} is wider than the declared {bits} bits")
    return v


def _hex_tokens_fast(tokens_blob: bytes, bits: int, count: int):
    """Words of ``count`` lines of exactly ``digits`` hex digits each, or None if the blob is not that."""
    digits = _digits(bits)
    if bits > 64 or len(tokens_blob) != count * (digits + 1):
        return None
    arr = np.frombuffer(tokens_blob, dtype=np.uint8).reshape(count, digits + 1)
    if count and not np.all(arr[:, -1] == 10):
        return None
    vals = _HEXVAL[arr[:, :-1]]
    if np.any(vals == 255):
        return None
    words = np.zeros(count, dtype=np.uint64)
    for k in range(digits):
        words = (words << np.uint64(4)) | vals[:, k].astype(np.uint64)
    if bits < 64 and count and np.any(words >> np.uint64(bits)):
        return None
    return words


def _word_array(n, bits):
    """Room for ``n`` words: uint64, or Python ints (object) for words wider than 64 bits."""
    return np.empty(n, dtype=np.uint64 if bits <= 64 else object)


def _hex_lines(lines, bits, name, first_line):
    out = _word_array(len(lines), bits)
    for i, tok in enumerate(lines):
        out[i] = _check_token(tok, bits, f"{name}:{first_line + i}")
    return out


def parse_strict(content: bytes, bits: int, encoding: str, shape, signed: bool, name: str = "file") -> np.ndarray:
    """The unsigned words of a file, read strictly: exactly what fxsim writes for ``shape`` words of
    ``bits`` bits in ``encoding``, or :class:`MalformedFile` saying where and what is wrong."""
    count = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    if encoding == "bin":
        nbytes = next(n for n in (1, 2, 4, 8) if bits <= 8 * n)
        if len(content) != count * nbytes:
            raise MalformedFile(f"{name}: {len(content)} bytes; {count} words of {nbytes} byte(s) are "
                                f"{count * nbytes}")
        words = np.frombuffer(content, dtype=f"<u{nbytes}").astype(np.uint64)
        if bits < 64 and words.size and np.any(words >> np.uint64(bits)):
            i = int(np.flatnonzero(words >> np.uint64(bits))[0])
            raise MalformedFile(f"{name}: word {i} ({int(words[i]):#x}) is wider than the declared {bits} bits")
        return words
    if encoding == "npy":
        return _parse_npy(content, bits, shape, signed, name)
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedFile(f"{name}: not ASCII text") from None
    if encoding == "hex":
        if count == 0:
            if content != b"\n":
                raise MalformedFile(f"{name}: holds words; its declared shape {list(shape)} has none")
            return np.zeros(0, dtype=np.uint64)
        fast = _hex_tokens_fast(content, bits, count)
        if fast is not None:
            return fast
        if not text.endswith("\n"):
            raise MalformedFile(f"{name}: does not end with a newline")
        lines = text[:-1].split("\n")
        words = _hex_lines(lines, bits, name, 1)
        if len(lines) != count:
            raise MalformedFile(f"{name}: {len(lines)} words; the declared shape {list(shape)} needs {count}")
        return words
    if encoding == "memb":
        if count == 0:
            if content != b"\n":
                raise MalformedFile(f"{name}: holds words; its declared shape {list(shape)} has none")
            return np.zeros(0, dtype=np.uint64)
        if not text.endswith("\n"):
            raise MalformedFile(f"{name}: does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) != count:
            raise MalformedFile(f"{name}: {len(lines)} words; the declared shape {list(shape)} needs {count}")
        out = _word_array(count, bits)
        for i, tok in enumerate(lines):
            if len(tok) != bits or tok.strip("01"):
                raise MalformedFile(f"{name}:{i + 1}: {tok[:80]!r} is not a word of exactly {bits} binary digits "
                                    f"($readmemb, as fxsim writes it)")
            out[i] = int(tok, 2)
        return out
    if encoding == "coe":
        header = "memory_initialization_radix=16;\nmemory_initialization_vector=\n"
        if not text.startswith(header):
            raise MalformedFile(f"{name}: lacks the COE header 'memory_initialization_radix=16;' / "
                                f"'memory_initialization_vector='")
        body = text[len(header):]
        if not body.endswith(";\n"):
            raise MalformedFile(f"{name}: the vector does not end with ';' and a newline")
        inner = body[:-2]
        if count == 0:
            if inner:
                raise MalformedFile(f"{name}: holds words; its declared shape {list(shape)} has none")
            return np.zeros(0, dtype=np.uint64)
        toks = inner.split(",\n")
        if len(toks) != count:
            raise MalformedFile(f"{name}: {len(toks)} words (one per line, comma-separated); the declared "
                                f"shape {list(shape)} needs {count}")
        fast = _hex_tokens_fast(("\n".join(toks) + "\n").encode(), bits, count)
        return fast if fast is not None else _hex_lines(toks, bits, name, 3)
    if encoding == "mif":
        lines = text.split("\n")
        if lines[-1] != "":
            raise MalformedFile(f"{name}: does not end with a newline")
        head = [f"DEPTH = {count};", f"WIDTH = {bits};", "ADDRESS_RADIX = HEX;", "DATA_RADIX = HEX;",
                "CONTENT BEGIN"]
        for n, want in enumerate(head):
            got = lines[n] if n < len(lines) else "(end of file)"
            if got != want:
                if n == 0 and not got.startswith("DEPTH"):
                    raise MalformedFile(f"{name}: lacks the MIF header (DEPTH, WIDTH, ADDRESS_RADIX, DATA_RADIX, "
                                        f"CONTENT BEGIN)")
                raise MalformedFile(f"{name}:{n + 1}: {got!r}; the declared shape and width give {want!r}")
        data = lines[len(head):-1]
        if len(data) != count + 1 or data[-1] != "END;":
            raise MalformedFile(f"{name}: {max(len(data) - 1, 0)} content lines and "
                                f"{'END;' if data and data[-1] == 'END;' else 'no END;'}; the declared shape "
                                f"{list(shape)} needs {count} lines and END;")
        adigits = max(1, -(-max(count - 1, 1).bit_length() // 4))
        out = _word_array(count, bits)
        pat = re.compile(r"^    ([0-9A-F]+) : ([^;]*);$")
        for i, line in enumerate(data[:-1]):
            where = f"{name}:{len(head) + i + 1}"
            m = pat.match(line)
            if not m:
                raise MalformedFile(f"{where}: {line!r} is not an 'address : word;' line")
            if m.group(1) != f"{i:0{adigits}X}":
                raise MalformedFile(f"{where}: address {m.group(1)} where {i:0{adigits}X} is expected")
            out[i] = _check_token(m.group(2), bits, where)
        return out
    raise MalformedFile(f"{name}: unknown encoding {encoding!r}")


def _parse_npy(content, bits, shape, signed, name):
    from numpy.lib import format as npf
    fh = io.BytesIO(content)
    try:
        version = npf.read_magic(fh)
        if version == (1, 0):
            shp, fortran, dtype = npf.read_array_header_1_0(fh)
        elif version == (2, 0):
            shp, fortran, dtype = npf.read_array_header_2_0(fh)
        else:
            raise ValueError(f"npy version {version}")
    except ValueError as exc:
        raise MalformedFile(f"{name}: not a NumPy .npy file ({exc})") from None
    if dtype != np.dtype("<i8") or fortran:
        raise MalformedFile(f"{name}: a {'Fortran-ordered ' if fortran else ''}{dtype} array; fxsim writes "
                            f"C-ordered little-endian int64 codes")
    if list(shp) != list(shape):
        raise MalformedFile(f"{name}: an array of shape {list(shp)}; the declared shape is {list(shape)}")
    count = int(np.prod(shp, dtype=np.int64)) if len(shp) else 1
    data = content[fh.tell():]
    if len(data) != 8 * count:
        raise MalformedFile(f"{name}: {len(data)} bytes of data; {count} int64 codes are {8 * count}")
    codes = np.frombuffer(data, dtype="<i8")
    lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1))
    if bits < 64 or signed:
        bad = (codes < max(lo, -(1 << 63))) | (codes > min(hi, (1 << 63) - 1))
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise MalformedFile(f"{name}: code {int(codes[i])} at {i} is outside the declared "
                                f"{'signed' if signed else 'unsigned'} {bits}-bit range {lo}..{hi}")
    c = codes.astype(np.uint64)
    if bits < 64:
        c &= np.uint64((1 << bits) - 1)          # two's complement words of in-range codes
    return c


def _count(shape) -> int:
    n = 1
    for v in shape:
        n *= int(v)
    return n


def entry_elements(content: bytes, entry, name=None) -> np.ndarray:
    """The elements of a manifest entry's file as unsigned ``bits``-wide words (uint64), in the stored
    order, read strictly. A packed file (``word_bits`` in the entry) must hold exactly ``words`` words of
    exactly ``word_bits`` bits, ``elements_per_word`` = word_bits // bits elements each in ``pack`` order,
    and every unused bit (above the last slot, and the slots after the last element) 0."""
    from fxsim.rtl.layout import pack_words
    name = name or entry["file"]
    bits, count = entry["bits"], _count(entry["shape"])
    if "word_bits" not in entry:
        from fxsim.rtl.layout import stored_shape
        return parse_strict(content, bits, entry["encoding"], stored_shape(entry), entry["signed"], name)
    wb, per, pack, nwords = entry["word_bits"], entry["elements_per_word"], entry["pack"], entry["words"]
    if per != wb // bits or pack not in ("little", "big") or nwords != -(-count // per):
        raise MalformedFile(f"{name}: word_bits {wb}, elements_per_word {per}, pack {pack!r} and words {nwords} do "
                            f"not describe {count} elements of {bits} bits (elements_per_word must be "
                            f"{wb // bits}, words {-(-count // max(wb // bits, 1))}, pack little or big)")
    words = [int(w) for w in parse_strict(content, wb, entry["encoding"], [nwords], False, name)]
    mask = (1 << bits) - 1
    elems = np.empty(count, dtype=np.uint64)
    for e in range(count):
        s = e % per
        slot = s if pack == "little" else per - 1 - s
        elems[e] = (words[e // per] >> (slot * bits)) & mask
    again = pack_words(elems, bits, wb, pack)
    for i, (w, v) in enumerate(zip(words, again)):
        if w != v:
            raise MalformedFile(f"{name}: word {i} has bits set outside its {per} element slot(s) of {bits} bits "
                                f"(unused bits and the slots after the last element are 0)")
    return elems


def entry_codes(content: bytes, entry, name=None) -> np.ndarray:
    """The int64 codes of a manifest entry's file in the tensor's logical order (see ``entry_elements``)."""
    from fxsim.rtl.export import from_words
    from fxsim.rtl.layout import from_layout, stored_shape
    elems = entry_elements(content, entry, name)
    codes = from_words(elems, entry["bits"], entry["signed"])
    codes = codes.reshape(stored_shape(entry))
    logical, layout = entry.get("logical"), entry.get("layout")
    if logical and layout and layout != logical:
        return from_layout(codes, logical, layout)
    return codes


def _max_bytes(bits, encoding, count):
    digits = _digits(bits)
    per = {"hex": digits + 1, "memb": bits + 1, "coe": digits + 2, "mif": digits + 2 * 16 + 8, "npy": 8,
           "bin": next((n for n in (1, 2, 4, 8) if bits <= 8 * n), 8)}[encoding]
    return 4096 + per * count


# ---------------------------------------------------------------------------------------------------
# reading inside the directory


def _open_dir(directory):
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        raise _Malformed(f"{directory} does not exist") from None
    except OSError as exc:
        raise _Malformed(f"{directory}: cannot read it: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise _Malformed(f"{directory} is not a directory")
    try:
        return os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise _Malformed(f"{directory}: cannot open it: {exc.strerror}") from None


class _Malformed(Exception):
    pass


def _read_member(dfd, name, limit):
    """Bytes of the regular file ``name`` directly inside the directory ``dfd``, not following links,
    never blocking on a FIFO, refusing more than ``limit`` bytes."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(name, flags, dir_fd=dfd)
    except FileNotFoundError:
        raise _Malformed(f"{name}: listed in the manifest but missing") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Malformed(f"{name}: a symbolic link (verify reads only regular files inside the directory)") \
                from None
        raise _Malformed(f"{name}: cannot open it: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a special file")
            raise _Malformed(f"{name}: {kind}, not a regular file")
        if st.st_size > limit:
            raise _Malformed(f"{name}: {st.st_size} bytes, more than its declared shape, width and encoding "
                             f"allow ({limit})")
        chunks, total = [], 0
        while True:
            b = os.read(fd, min(1 << 24, limit + 1 - total))
            if not b:
                break
            chunks.append(b)
            total += len(b)
            if total > limit:
                raise _Malformed(f"{name}: more than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _check_manifest_schema(m):
    if not isinstance(m, dict):
        raise _Malformed(f"{MANIFEST}: must be a JSON object, got {type(m).__name__}")
    if m.get("fxsim_output") == "model-golden-vectors":
        return
    missing = sorted(set(_TOP_KEYS) - set(m))
    extra = sorted(set(m) - set(_TOP_KEYS) - set(_OPTIONAL_TOP))
    if missing:
        if "manifest_version" in missing and "files" in m:
            raise _Malformed(f"{MANIFEST}: no manifest_version: written by an fxsim before golden-vector manifest "
                             f"version 2; export the layer again")
        raise _Malformed(f"{MANIFEST}: missing key(s) {', '.join(missing)}")
    if extra:
        raise _Malformed(f"{MANIFEST}: unknown key(s) {', '.join(extra)}")
    for k, t in list(_TOP_KEYS.items()) + [(k, t) for k, t in _OPTIONAL_TOP.items() if k in m]:
        if not isinstance(m[k], t) or (t is int and isinstance(m[k], bool)):
            raise _Malformed(f"{MANIFEST}: {k} must be a JSON {t.__name__}, got {m[k]!r:.80}")
    if m["fxsim_output"] != "golden-vectors":
        raise _Malformed(f"{MANIFEST}: fxsim_output is {m['fxsim_output']!r}, not 'golden-vectors'")
    from fxsim.rtl.export import MANIFEST_VERSION
    if m["manifest_version"] != MANIFEST_VERSION:
        raise _Malformed(f"{MANIFEST}: manifest_version {m['manifest_version']}; this fxsim verifies version "
                         f"{MANIFEST_VERSION}")
    if m["file_format"] not in _ENCODINGS:
        raise _Malformed(f"{MANIFEST}: file_format {m['file_format']!r} is not one of {_ENCODINGS}")
    for t in m["traces"]:
        if not (isinstance(t, list) and len(t) in (2, 4) and all(type(x) is int and x >= 0 for x in t)):
            raise _Malformed(f"{MANIFEST}: traces must be [row, column] or [n, o, oh, ow] lists, got {t!r:.80}")
    o = m["export_options"]
    if set(o) != {"layouts", "word_bits", "pack", "constants"} or not isinstance(o["layouts"], dict) \
            or not all(isinstance(v, str) for v in o["layouts"].values()) or not isinstance(o["word_bits"], dict) \
            or not all(type(v) is int and 1 <= v <= MAX_WORD_BITS for v in o["word_bits"].values()) \
            or not isinstance(o["pack"], str) or not isinstance(o["constants"], bool):
        raise _Malformed(f"{MANIFEST}: export_options must be {{layouts: {{tensor: layout}}, word_bits: {{tensor: "
                         f"1..{MAX_WORD_BITS}}}, pack, constants: true|false}}, got {json.dumps(o)[:120]}")
    if "package" in m:
        pk = m["package"]
        if set(pk) != {"file", "sha256"} or not isinstance(pk["file"], str) or not isinstance(pk["sha256"], str) \
                or not _PKG_RE.match(pk["file"]) or not _SHA_RE.match(pk["sha256"]):
            raise _Malformed(f"{MANIFEST}: package must be {{file: NAME_pkg.sv, sha256: 64 hex digits}}, got "
                             f"{json.dumps(pk)[:120]}")
    for key, e in m["files"].items():
        where = f"{MANIFEST}: files.{key}"
        if not _KEY_RE.match(key):
            raise _Malformed(f"{where}: not a name fxsim writes (a, b, bias, acc, out, trace_I_J, trace_N_O_OH_OW, "
                             f"requant_multiplier, requant_shift)")
        if not isinstance(e, dict):
            raise _Malformed(f"{where}: must be a JSON object, got {type(e).__name__}")
        allowed = dict(_ENTRY_KEYS)
        if "logical" in e or "layout" in e:
            allowed.update(_SHAPED_KEYS)
        if any(k in e for k in _PACKED_KEYS):
            allowed.update(_PACKED_KEYS)
        if set(e) != set(allowed):
            miss, ext = sorted(set(allowed) - set(e)), sorted(set(e) - set(allowed))
            raise _Malformed(f"{where}: " + "; ".join(s for s in (
                f"missing key(s) {', '.join(miss)}" if miss else "", f"unknown key(s) {', '.join(ext)}" if ext else "")
                if s))
        for k, t in allowed.items():
            if not isinstance(e[k], t) or (t is int and isinstance(e[k], bool)):
                raise _Malformed(f"{where}.{k} must be a JSON {t.__name__}, got {e[k]!r:.80}")
        if not 1 <= e["bits"] <= 64:
            raise _Malformed(f"{where}.bits must be in 1..64, got {e['bits']}")
        if e["encoding"] not in _ENCODINGS:
            raise _Malformed(f"{where}.encoding {e['encoding']!r} is not one of {_ENCODINGS}")
        if not all(type(s) is int and s >= 0 for s in e["shape"]):
            raise _Malformed(f"{where}.shape must be a list of sizes, got {e['shape']!r:.80}")
        count = _count(e["shape"])
        if count > MAX_WORDS:
            raise _Malformed(f"{where}.shape {e['shape']} is more than {MAX_WORDS} words")
        if "logical" in e:
            lg, ly = e["logical"], e["layout"]
            if len(lg) != len(e["shape"]) or len(set(lg)) != len(lg) or sorted(ly) != sorted(lg):
                raise _Malformed(f"{where}: layout {ly!r} is not a permutation of the logical axes {lg!r} of a "
                                 f"tensor of shape {e['shape']}")
        if "word_bits" in e:
            if e["encoding"] not in ("hex", "memb", "coe", "mif"):
                raise _Malformed(f"{where}: packed words in a {e['encoding']!r} file (packing applies to hex, memb, "
                                 f"coe and mif)")
            if not e["bits"] <= e["word_bits"] <= MAX_WORD_BITS:
                raise _Malformed(f"{where}.word_bits must be in {e['bits']}..{MAX_WORD_BITS}, got {e['word_bits']}")
            if e["words"] > MAX_WORDS:
                raise _Malformed(f"{where}.words {e['words']} is more than {MAX_WORDS}")
        if not _SHA_RE.match(e["sha256"]):
            raise _Malformed(f"{where}.sha256 is not 64 lowercase hex digits")
        f = e["file"]
        if "/" in f or "\\" in f or f.startswith(".") or "\0" in f or os.path.isabs(f):
            raise _Malformed(f"{where}.file {f!r} names a path outside the directory (verify reads only files "
                             f"directly inside it)")
        if f != f"{key}.{e['encoding']}":
            raise _Malformed(f"{where}.file is {f!r}; fxsim names it {key}.{e['encoding']}")


def _entry_limit(e):
    if "word_bits" in e:
        return _max_bytes(e["word_bits"], e["encoding"], e["words"])
    return _max_bytes(e["bits"], e["encoding"], _count(e["shape"]))


# ---------------------------------------------------------------------------------------------------


def verify_directory(directory) -> Report:
    """Check a golden-vector directory, or a model export's directory of them (see the module's doc);
    never raises for what is in it."""
    rep = Report()
    directory = os.fspath(directory)
    try:
        dfd = _open_dir(directory)
    except _Malformed as exc:
        rep.malformed.append(str(exc))
        return rep
    try:
        m = _load_manifest(dfd)
        if isinstance(m, dict) and m.get("fxsim_output") == "model-golden-vectors":
            _verify_model(dfd, m, rep)
        else:
            _verify(dfd, m, rep)
    except _Malformed as exc:
        rep.malformed.append(str(exc))
    finally:
        os.close(dfd)
    return rep


def _load_manifest(dfd):
    raw = _read_member(dfd, MANIFEST, MAX_MANIFEST_BYTES)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Malformed(f"{MANIFEST}: not valid JSON ({exc})") from None


_MODEL_KEYS = {"fxsim_output": str, "fxsim_version": str, "model": str, "layers": dict, "files": list, "note": str}
_SUBDIR_RE = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,200}$")


def _check_listing(dfd, listed, rep, *, layer_dirs=False):
    """The directory (open as ``dfd``) holds exactly the names in ``listed``: a link, an unlisted entry or
    a missing one is malformed. ``layer_dirs``: every listed name but the manifest must be a directory (a
    model export's layer directories)."""
    with os.scandir(dfd) as it:
        entries = {e.name: e for e in it}
    for name in sorted(entries):
        e = entries[name]
        if e.is_symlink():
            rep.malformed.append(f"{name}: a symbolic link (verify reads only regular files inside the directory)")
        elif name not in listed:
            what = "a directory" if e.is_dir(follow_symlinks=False) else "a file"
            rep.malformed.append(f"{name}: {what} not listed in the manifest")
        elif layer_dirs and name != MANIFEST and not e.is_dir(follow_symlinks=False):
            rep.malformed.append(f"{name}: listed as a layer's directory but not a directory")
    for name in sorted(listed - set(entries)):
        rep.malformed.append(f"{name}: listed in the manifest but missing")


def _verify_model(dfd, m, rep):
    """A model export: manifest.json naming each layer's sub-directory (``layers``: {layer: directory}) and
    every file under them (``files``); each sub-directory is a golden-vector directory verified strictly,
    and nothing else may be there."""
    if set(m) != set(_MODEL_KEYS) or any(not isinstance(m[k], t) for k, t in _MODEL_KEYS.items()):
        raise _Malformed(f"{MANIFEST}: a model export's manifest has exactly the keys "
                         f"{', '.join(sorted(_MODEL_KEYS))}, got {', '.join(sorted(m))}")
    subs = m["layers"]
    for layer, sub in subs.items():
        if not isinstance(sub, str) or not _SUBDIR_RE.match(sub) or sub.startswith("."):
            raise _Malformed(f"{MANIFEST}: layers.{layer} = {sub!r} is not a sub-directory name fxsim writes")
    if len(set(subs.values())) != len(subs):
        raise _Malformed(f"{MANIFEST}: two layers share a sub-directory")
    listed = set(subs.values()) | {MANIFEST}
    _check_listing(dfd, listed, rep, layer_dirs=True)
    if rep.malformed:
        return
    every = set()
    for layer, sub in sorted(subs.items(), key=lambda kv: kv[1]):
        try:
            sfd = os.open(sub, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0),
                          dir_fd=dfd)
        except OSError as exc:
            rep.malformed.append(f"{sub}: cannot open it: {exc.strerror}")
            continue
        sub_rep = Report()
        try:
            sm = _load_manifest(sfd)
            _verify(sfd, sm, sub_rep)
            if isinstance(sm.get("spec"), dict) and sm["spec"].get("layer", {}).get("name") != layer:
                sub_rep.mismatches.append(f"{MANIFEST}: its spec names layer "
                                          f"{sm['spec'].get('layer', {}).get('name')!r}; the model's manifest "
                                          f"lists it for {layer!r}")
            every |= {f"{sub}/{e['file']}" for e in sm["files"].values()} | {f"{sub}/{MANIFEST}"}
            if "package" in sm:
                every.add(f"{sub}/{sm['package']['file']}")
        except _Malformed as exc:
            sub_rep.malformed.append(str(exc))
        finally:
            os.close(sfd)
        rep.malformed += [f"{sub}/{p}" for p in sub_rep.malformed]
        rep.mismatches += [f"{sub}/{p}" for p in sub_rep.mismatches]
    if not rep.malformed and sorted(m["files"]) != sorted(every):
        rep.mismatches.append(f"{MANIFEST}: files lists {len(m['files'])} paths; the layers' directories hold "
                              f"{len(every)} (" + ", ".join(sorted(set(m["files"]) ^ every)[:5]) + ")")


def _verify(dfd, m, rep):
    from fxsim.rtl.export import golden_contents
    from fxsim.rtl.layout import from_layout, stored_shape
    from fxsim.rtl.export import _values_of, from_words
    from fxsim.workflows.spec import spec_from_dict
    _check_manifest_schema(m)
    files = m["files"]
    pkg = m.get("package")
    # the directory holds the manifest, the listed files and the package, and nothing else
    listed = {e["file"] for e in files.values()} | {MANIFEST} | ({pkg["file"]} if pkg else set())
    _check_listing(dfd, listed, rep)
    if rep.malformed:
        return
    got_elems = {}
    for key, e in files.items():
        content = _read_member(dfd, e["file"], _entry_limit(e))
        if hashlib.sha256(content).hexdigest() != e["sha256"]:
            rep.mismatches.append(f"{e['file']}: sha256 differs from the manifest")
        try:
            got_elems[key] = entry_elements(content, e)
        except MalformedFile as exc:
            rep.malformed.append(str(exc))
    pkg_content = None
    if pkg:
        pkg_content = _read_member(dfd, pkg["file"], MAX_PACKAGE_BYTES)
        if hashlib.sha256(pkg_content).hexdigest() != pkg["sha256"]:
            rep.mismatches.append(f"{pkg['file']}: sha256 differs from the manifest")
    if rep.malformed:
        return
    try:
        spec = spec_from_dict(m["spec"])
    except (FxsimError, ValueError, TypeError) as exc:
        raise _Malformed(f"{MANIFEST}: its spec is not a valid layer spec: {exc}") from None
    dp = spec.datapath
    data = None
    if any(k in spec.data for k in ("a", "b", "npz")):      # inputs from files: the directory's copies
        try:
            acc = dp.accumulator.fmt

            def vals(key, fmt):
                e = files[key]
                codes = from_words(got_elems[key], e["bits"], e["signed"]).reshape(stored_shape(e))
                if e.get("layout", e.get("logical")) != e.get("logical"):
                    codes = from_layout(codes, e["logical"], e["layout"])
                return _values_of(codes, fmt)
            for k in ("a", "b"):
                if k not in files:
                    raise _Malformed(f"{MANIFEST}: the spec's data come from files, and the input {k} is not listed")
            data = (vals("a", dp.a), vals("b", dp.b), vals("bias", acc) if "bias" in files else None)
        except (ValueError, TypeError) as exc:
            raise _Malformed(f"the input files cannot be read as the spec's operands: {exc}") from None
    traces = [tuple(t) for t in m["traces"]]
    o = m["export_options"]
    try:
        want_contents, want = golden_contents(spec, file_format=m["file_format"], traces=traces, data=data,
                                              layouts=o["layouts"], word_bits=o["word_bits"] or None,
                                              pack=o["pack"], constants=o["constants"])
    except (FxsimError, ValueError, TypeError, OverflowError) as exc:
        raise _Malformed(f"{MANIFEST}: the spec, traces, export options and inputs it names cannot be "
                         f"simulated: {exc}") from None
    except OSError as exc:
        raise _Malformed(f"{MANIFEST}: the spec's data cannot be read here: {exc}") from None
    # manifest metadata against what the spec implies
    for k in ("manifest_version", "op", "datapath", "datapath_repr", "file_format", "traces", "export_options",
              "summary"):
        if json.dumps(m[k], sort_keys=True) != json.dumps(want[k], sort_keys=True):
            rep.mismatches.append(f"{MANIFEST}: {k} is {json.dumps(m[k])[:120]}; the spec implies "
                                  f"{json.dumps(want[k])[:120]}")
    if pkg != want.get("package"):
        if pkg is None or want.get("package") is None:
            rep.mismatches.append(f"{MANIFEST}: package is {json.dumps(pkg)}; the spec implies "
                                  f"{json.dumps(want.get('package'))}")
        elif pkg["file"] != want["package"]["file"]:
            rep.mismatches.append(f"{pkg['file']}: the spec implies the package {want['package']['file']}")
        elif pkg_content != want_contents[pkg["file"]]:
            rep.mismatches.append(f"{pkg['file']}: differs from the SystemVerilog package fxsim writes for this "
                                  f"manifest")
        else:
            rep.mismatches.append(f"{MANIFEST}: package.sha256 differs from the package's")
    for key in sorted(set(want["files"]) - set(files)):
        rep.mismatches.append(f"{want['files'][key]['file']}: the spec implies this file; the manifest does not "
                              f"list it and it is missing")
    for key in sorted(set(files) - set(want["files"])):
        rep.mismatches.append(f"{files[key]['file']}: listed in the manifest; the spec does not imply it")
    for key in sorted(set(files) & set(want["files"])):
        e, w = files[key], want["files"][key]
        fields = [f for f in dict.fromkeys(list(w) + list(e)) if f != "sha256"]
        for f in fields:
            if e.get(f) != w.get(f):
                rep.mismatches.append(f"{e['file']}: the manifest says {f} = {e.get(f)!r}; the spec implies "
                                      f"{w.get(f)!r}")
        if any(e.get(f) != w.get(f) for f in fields if f not in ("order", "format")):
            continue
        want_elems = entry_elements(want_contents[w["file"]], w)
        got = got_elems[key]
        bad = np.flatnonzero(got != want_elems)
        if bad.size:
            i = int(bad[0])
            d = _digits(w["bits"])
            rep.mismatches.append(
                f"{e['file']}: {bad.size} word(s) differ from the recomputation, first at index {i}: "
                f"{int(got[i]):0{d}x}, recomputed {int(want_elems[i]):0{d}x}")
        elif e["sha256"] != w["sha256"]:
            rep.mismatches.append(f"{e['file']}: the words agree but the bytes differ from what fxsim writes")
