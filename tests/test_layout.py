"""Hardware-shaped export: layouts, several elements per word, $readmemb text, constants files, the
manifest and verify; against independent statements (NumPy transposes of the conventions' axis orders,
words built from binary strings)."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fxsim.rtl.export import export_layer, read_words, verify_dir
from fxsim.rtl.layout import pack_words, parse_words, render_words, unpack_words
from fxsim.workflows.spec import parse_spec, run_layer
from tests.workflow_specs import INT8_GEMM


def _bits_string_word(elems, bits, word_bits, pack):
    """Independent: the word as a string of binary digits, most significant first."""
    E = word_bits // bits
    slots = [format(e, f"0{bits}b") for e in elems] + ["0" * bits] * (E - len(elems))
    if pack == "little":
        slots = slots[::-1]                      # slot 0 ends up at the least significant end
    return int("0" * (word_bits - E * bits) + "".join(slots), 2)


@settings(max_examples=60)
@given(bits=st.integers(1, 24), extra=st.integers(0, 40), pack=st.sampled_from(["little", "big"]), data=st.data())
def test_packing_against_binary_strings(bits, extra, pack, data):
    word_bits = bits + extra
    elems = data.draw(st.lists(st.integers(0, (1 << bits) - 1), min_size=1, max_size=30))
    words = pack_words(np.array(elems, dtype=np.uint64), bits, word_bits, pack)
    E = word_bits // bits
    assert words == [_bits_string_word(elems[i:i + E], bits, word_bits, pack) for i in range(0, len(elems), E)]
    assert unpack_words(words, bits, word_bits, pack, len(elems)).tolist() == elems
    for enc in ("hex", "memb", "coe", "mif"):
        assert parse_words(render_words(words, word_bits, enc), enc) == words


def test_small_packing_and_readmemb_examples():
    assert pack_words(np.array([1, 2, 3]), 4, 8, "little") == [0x21, 0x03]
    assert pack_words(np.array([1, 2, 3]), 4, 8, "big") == [0x12, 0x30]
    assert render_words([0x21, 0x03], 8, "memb") == b"00100001\n00000011\n"
    assert render_words([0x1FFF], 13, "memb") == b"1111111111111\n"
    with pytest.raises(ValueError, match="smaller than one 8-bit element"):
        pack_words(np.array([1]), 8, 7, "little")


def test_gemm_layouts_and_packing_round_trip_and_verify(tmp_path):
    spec = parse_spec(INT8_GEMM)
    res, (A, B, bias) = run_layer(spec, trace=[(1, 2)])
    out = tmp_path / "g"
    m = export_layer(spec, out, file_format="memb", traces=[(1, 2)], layouts={"b": "NK", "acc": "NM"},
                     word_bits={"b": 64, "acc": 32, "trace": 16}, pack="big", constants=True)
    f = m["files"]
    assert m["manifest_version"] == 2 and f["b"]["layout"] == "NK" and f["b"]["logical"] == "KN"
    assert f["b"]["word_bits"] == 64 and f["b"]["elements_per_word"] == 8 and f["b"]["pack"] == "big"
    assert f["b"]["shape"] == [20, 4] and f["b"]["words"] == 10
    # the file holds B^T row-major, 8 elements per word, the first in the most significant byte
    lines = (out / "b.memb").read_text().split()
    stored = (np.ascontiguousarray(B.T).astype(np.int64).ravel() & 0xFF).tolist()
    assert [int(x, 2) for x in lines] == [_bits_string_word(stored[i:i + 8], 8, 64, "big") for i in range(0, 80, 8)]
    assert all(len(x) == 64 for x in lines)
    # unpacked $readmemb: one element per line, its width in binary digits
    assert (out / "a.memb").read_text().split()[0] == format(int(A[0, 0]) & 0xFF, "08b")
    assert np.array_equal(read_words(str(out), f["b"]), B.astype(np.int64))
    assert np.array_equal(read_words(str(out), f["acc"]), res.acc)
    assert np.array_equal(read_words(str(out), f["trace_1_2"]), res.traces[(1, 2)])
    assert read_words(str(out), f["requant_multiplier"]).tolist() == [3] * 4
    assert read_words(str(out), f["requant_shift"]).tolist() == [7] * 4
    assert verify_dir(str(out)) == []
    # a tampered packed word (manifest updated to agree) is found by the recomputation
    import hashlib
    lines = (out / "acc.memb").read_text().split()
    lines[0] = lines[0][:-1] + ("1" if lines[0][-1] == "0" else "0")
    (out / "acc.memb").write_text("\n".join(lines) + "\n")
    mj = json.loads((out / "manifest.json").read_text())
    mj["files"]["acc"]["sha256"] = hashlib.sha256((out / "acc.memb").read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(mj))
    probs = verify_dir(str(out))
    assert len(probs) == 1 and "acc.memb: 1 word(s) differ" in probs[0]


CONV = """
[layer]
op = "conv2d"
[shape]
batch = 2
in_channels = 3
height = 4
width = 5
out_channels = 4
kernel = 3
padding = 1
[data]
seed = 1
[datapath.accumulator]
format = "int16"
overflow = "saturate"
"""


@pytest.mark.parametrize("x_layout,w_layout,perm_x,perm_w", [
    ("NHWC", "OHWI", (0, 2, 3, 1), (0, 2, 3, 1)),
    ("NCHW", "HWIO", (0, 1, 2, 3), (2, 3, 1, 0)),
])
def test_conv_layouts_are_the_conventions_axis_orders(tmp_path, x_layout, w_layout, perm_x, perm_w):
    spec = parse_spec(CONV)
    res, (x, w, _) = run_layer(spec, trace=[(1, 2, 3, 4)])
    out = tmp_path / "c"
    m = export_layer(spec, out, layouts={"a": x_layout, "b": w_layout, "acc": "NHWC"}, traces=[(1, 2, 3, 4)])
    hexes = lambda name: [int(t, 16) for t in (out / name).read_text().split()]
    assert hexes("a.hex") == (np.transpose(x, perm_x).astype(np.int64).ravel() & 0xFF).tolist()
    assert hexes("b.hex") == (np.transpose(w, perm_w).astype(np.int64).ravel() & 0xFF).tolist()
    assert hexes("acc.hex") == (np.transpose(res.acc, (0, 2, 3, 1)).ravel() & 0xFFFF).tolist()
    assert m["files"]["trace_1_2_3_4"]["shape"] == [3 * 9 + 1]
    assert np.array_equal(read_words(str(out), m["files"]["trace_1_2_3_4"]), res.traces[(1, 2, 3, 4)])
    assert verify_dir(str(out)) == []
    pkg = (out / m["package"]["file"]).read_text()
    assert "localparam A_LAYOUT = \"%s\";" % x_layout in pkg and "localparam int OUT_CHANNELS = 4;" in pkg


@pytest.mark.parametrize("fmt", ["hex", "memb", "coe", "mif", "npy", "bin"])
def test_every_encoding_reads_back_a_transposed_layout(tmp_path, fmt):
    spec = parse_spec(CONV)
    res, (x, w, _) = run_layer(spec)
    out = tmp_path / fmt
    m = export_layer(spec, out, file_format=fmt, layouts={"a": "NHWC", "b": "HWIO", "acc": "NHWC"})
    assert np.array_equal(read_words(str(out), m["files"]["a"]), x.astype(np.int64))
    assert np.array_equal(read_words(str(out), m["files"]["b"]), w.astype(np.int64))
    assert np.array_equal(read_words(str(out), m["files"]["acc"]), res.acc)
    assert verify_dir(str(out)) == []
    if fmt == "npy":                        # the array is stored in the layout's shape
        assert np.load(out / "a.npy").shape == (2, 4, 5, 3)
