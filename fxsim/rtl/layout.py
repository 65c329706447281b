"""Hardware-shaped memory files: tensor layouts, several elements per memory word, ``$readmemb`` text.

A tensor has fxsim's *logical* axes (gemm: a ``MK``, b ``KN``, acc/out ``MN``; conv2d: x ``NCHW``, w
``OIHW``, acc/out ``NCHW``; bias and per-channel constants ``N`` or ``O``; traces ``T``). Its file may store
it in another *layout*, a permutation of those letters (``NHWC``; ``OHWI`` or ``HWIO``; ``NK``), row-major
in that order. Packing puts ``word_bits // bits`` elements into each memory word of ``word_bits`` bits:
element ``e`` of the stored order goes to word ``e // E``, slot ``e % E``; ``pack="little"`` places slot 0
in the least significant bits (bits ``[bits-1:0]``), ``"big"`` in the most significant used bits (slot s
at bits ``[(E-s)*bits-1 : (E-s-1)*bits]``); unused high bits and the slots after the last element are 0.

Encodings of words: ``hex`` (``$readmemh``), ``memb`` (``$readmemb``: one word per line, ``word_bits``
binary digits), ``coe`` and ``mif`` (hex words of ``word_bits``); packing does not apply to ``npy`` and
``bin``.
"""
from __future__ import annotations

import hashlib

import numpy as np

from fxsim.errors import InvalidArgument

__all__ = ["LOGICAL", "LAYOUTS", "PACKABLE", "logical_axes", "check_layout", "to_layout", "from_layout",
           "pack_words", "unpack_words", "render_words", "parse_words", "tensor_bytes", "read_tensor",
           "stored_shape"]

# logical axes of each tensor of a layer, and the layouts a file may store it in
LOGICAL = {"gemm": {"a": "MK", "b": "KN", "acc": "MN", "out": "MN", "bias": "N"},
           "conv2d": {"a": "NCHW", "b": "OIHW", "acc": "NCHW", "out": "NCHW", "bias": "O"}}
LAYOUTS = {"MK": ("MK", "KM"), "KN": ("KN", "NK"), "MN": ("MN", "NM"), "NCHW": ("NCHW", "NHWC"),
           "OIHW": ("OIHW", "OHWI", "HWIO")}
PACKABLE = ("hex", "memb", "coe", "mif")
TEXT_ENCODINGS = ("hex", "memb", "coe", "mif")


def logical_axes(op: str, key: str) -> str:
    """The logical axes of tensor ``key`` of an ``op`` layer (traces: ``T``, constants: per channel)."""
    if key.startswith("trace_"):
        return "T"
    if key.startswith("requant_"):
        return LOGICAL[op]["bias"]
    return LOGICAL[op][key]


def check_layout(op: str, key: str, layout: str | None, shape) -> str:
    """The layout letters for tensor ``key`` (default: its logical axes); a ValueError names what is
    allowed when ``layout`` is not a permutation fxsim supports or does not match ``shape``."""
    logical = logical_axes(op, key)
    if layout is None:
        return logical
    allowed = LAYOUTS.get(logical, (logical,))
    if layout.upper() not in allowed:
        raise InvalidArgument(f"layout {key}={layout!r} does not apply to the {op} tensor {key!r} (logical axes "
                         f"{logical}); allowed: {', '.join(allowed)}")
    if len(shape) != len(logical):
        raise InvalidArgument(f"layout {key}={layout} has {len(logical)} axes but the tensor has shape {list(shape)}")
    return layout.upper()


def to_layout(codes: np.ndarray, logical: str, layout: str) -> np.ndarray:
    """Transpose a tensor from its logical axes to ``layout`` (contiguous)."""
    return np.ascontiguousarray(np.transpose(codes, [logical.index(c) for c in layout]))


def from_layout(stored: np.ndarray, logical: str, layout: str) -> np.ndarray:
    """Inverse of ``to_layout``."""
    return np.ascontiguousarray(np.transpose(stored, [layout.index(c) for c in logical]))


def pack_words(words, bits: int, word_bits: int, pack: str) -> list:
    """Unsigned ``bits``-wide words (one element each) -> Python ints of ``word_bits`` bits."""
    if word_bits < bits:
        raise InvalidArgument(f"word width {word_bits} bits is smaller than one {bits}-bit element")
    if pack not in ("little", "big"):
        raise InvalidArgument(f"pack must be 'little' or 'big', got {pack!r}")
    E = word_bits // bits
    flat = [int(w) for w in np.asarray(words).ravel()]
    out = []
    for start in range(0, len(flat), E):
        w = 0
        for s, v in enumerate(flat[start:start + E]):
            slot = s if pack == "little" else E - 1 - s
            w |= v << (slot * bits)
        out.append(w)
    return out


def unpack_words(words, bits: int, word_bits: int, pack: str, count: int) -> np.ndarray:
    """Inverse of ``pack_words``: the first ``count`` elements as uint64 words."""
    E = word_bits // bits
    mask = (1 << bits) - 1
    out = []
    for w in words:
        for s in range(E):
            slot = s if pack == "little" else E - 1 - s
            out.append((int(w) >> (slot * bits)) & mask)
    if len(out) < count:
        raise InvalidArgument(f"{len(words)} words of {E} elements hold {len(out)} elements; {count} expected")
    return np.array(out[:count], dtype=np.uint64)


def render_words(words, word_bits: int, encoding: str) -> bytes:
    """File contents for Python-int words of ``word_bits`` bits (text encodings only)."""
    digits = max(1, -(-word_bits // 4))
    if encoding == "memb":
        return ("".join(format(int(w), f"0{word_bits}b") + "\n" for w in words) or "\n").encode()
    lines = [format(int(w), f"0{digits}x") for w in words]
    if encoding == "hex":
        return ("".join(line + "\n" for line in lines) or "\n").encode()
    if encoding == "coe":
        body = ",\n".join(lines) + ";\n" if lines else ";\n"
        return ("memory_initialization_radix=16;\nmemory_initialization_vector=\n" + body).encode()
    if encoding == "mif":
        adigits = max(1, -(-max(len(lines) - 1, 1).bit_length() // 4))
        out = [f"DEPTH = {len(lines)};", f"WIDTH = {word_bits};", "ADDRESS_RADIX = HEX;", "DATA_RADIX = HEX;",
               "CONTENT BEGIN"]
        out += [f"    {i:0{adigits}X} : {w.upper()};" for i, w in enumerate(lines)]
        out.append("END;")
        return ("\n".join(out) + "\n").encode()
    raise InvalidArgument(f"word packing applies to the text encodings {PACKABLE}, got {encoding!r}")


def parse_words(content: bytes, encoding: str) -> list:
    """Python-int words back from a text file (inverse of ``render_words``)."""
    text = content.decode()
    if encoding in ("hex", "memb"):
        toks = [t for line in text.splitlines() for t in line.split("//")[0].split() if not t.startswith("@")]
        return [int(t, 2 if encoding == "memb" else 16) for t in toks]
    if encoding == "coe":
        body = text.split("memory_initialization_vector=", 1)[1]
        return [int(t.strip(), 16) for t in body.replace(";", "").replace("\n", "").split(",") if t.strip()]
    if encoding == "mif":
        body = text.split("CONTENT BEGIN", 1)[1].split("END;")[0]
        return [int(line.split(":")[1].strip().rstrip(";"), 16) for line in body.splitlines() if ":" in line]
    raise InvalidArgument(f"cannot parse encoding {encoding!r}")


_EXT = {"hex": "hex", "memb": "memb", "coe": "coe", "mif": "mif", "npy": "npy", "bin": "bin"}


def tensor_bytes(name, codes, bits, signed, encoding, *, fmt_name, logical, layout=None, word_bits=None,
                 pack="little", order=None):
    """One tensor's file, computed and not written: (file name, bytes, manifest entry). The tensor is
    stored in ``layout`` (default: logical), packed into ``word_bits``-bit words when given; with neither
    (and not ``memb``) the bytes are those of ``fxsim.rtl.export.file_bytes``."""
    from fxsim.rtl.export import file_bytes, to_words
    codes = np.asarray(codes, dtype=np.int64)
    layout = layout or logical
    if word_bits is not None and encoding not in PACKABLE:
        raise InvalidArgument(f"--word-bits packs text memory files ({', '.join(PACKABLE)}); encoding "
                              f"{encoding!r} stores one element per word")
    stored = to_layout(codes, logical, layout) if layout != logical else codes
    fname = f"{name}.{_EXT[encoding]}"
    entry = {"file": fname, "shape": list(codes.shape), "order": order or "row-major", "format": fmt_name,
             "bits": int(bits), "signed": bool(signed), "encoding": encoding}
    if word_bits is None and encoding != "memb":
        content = file_bytes(stored, bits, encoding)
    else:
        wb = int(word_bits) if word_bits is not None else int(bits)
        elems = to_words(stored, bits)
        words = pack_words(elems, bits, wb, pack) if word_bits is not None else [int(w) for w in elems.ravel()]
        content = render_words(words, wb, encoding)
        if word_bits is not None:
            entry.update(word_bits=wb, elements_per_word=wb // int(bits), pack=pack, words=len(words))
    entry["sha256"] = hashlib.sha256(content).hexdigest()
    entry["logical"] = logical
    entry["layout"] = layout
    if layout != logical:
        entry["order"] = f"row-major in layout {layout}"
    return fname, content, entry


def stored_shape(entry) -> list:
    """The shape of the tensor in its stored layout."""
    shape, logical, layout = entry["shape"], entry.get("logical"), entry.get("layout")
    if logical and layout and layout != logical:
        return [shape[logical.index(c)] for c in layout]
    return list(shape)


def read_tensor(directory, entry) -> np.ndarray:
    """The int64 codes of a manifest entry, in logical order (read strictly, unpacked, transposed back)."""
    from fxsim.rtl.export import read_words
    return read_words(directory, entry)


def stored_strides(entry) -> list:
    """For each logical axis, the step in the stored element order (for address generators)."""
    shape = entry["shape"]
    logical, layout = entry.get("logical") or "", entry.get("layout") or ""
    if not logical:
        logical = layout = "".join(chr(ord("a") + i) for i in range(len(shape)))
    stored_shape = [shape[logical.index(c)] for c in layout]
    strides = {}
    step = 1
    for c, n in zip(reversed(layout), reversed(stored_shape)):
        strides[c] = step
        step *= n
    return [strides[c] for c in logical]
