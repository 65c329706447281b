"""Golden-vector files: word encodings against independent formulas and ml_dtypes, file syntax, manifest,
round trips for every file format, and verify catching tampering."""
import hashlib
import json

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fxsim.rtl.export import FILE_FORMATS, export_layer, parse, read_words, render, to_words, verify_dir
from fxsim.workflows.spec import parse_spec, run_layer
from tests.workflow_specs import E4M3_GEMM, INT8_GEMM


def _twos_complement_hex(x, bits):
    """Independent: Python's unbounded ints, masked, formatted."""
    return format(x & ((1 << bits) - 1), "0{}x".format((bits + 3) // 4))


@settings(max_examples=60)
@given(bits=st.integers(1, 64), data=st.data())
def test_words_are_twos_complement_zero_padded_and_every_format_round_trips(bits, data):
    signed = data.draw(st.booleans()) if bits < 64 else True
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    codes = data.draw(st.lists(st.integers(lo, min(hi, 2 ** 63 - 1)), min_size=1, max_size=20))
    words = to_words(np.array(codes, dtype=np.int64), bits)
    assert render(words, bits, "hex").decode().split("\n")[:-1] == [_twos_complement_hex(c, bits) for c in codes]
    for f in ("hex", "coe", "mif", "bin"):
        assert np.array_equal(parse(render(words, bits, f), bits, f, len(codes)), words)


def test_coe_and_mif_follow_their_tools_syntax():
    words = to_words(np.array([-1, 5, -4096]), 13)
    assert render(words, 13, "hex").decode() == "1fff\n0005\n1000\n"
    assert render(words, 13, "coe").decode() == ("memory_initialization_radix=16;\nmemory_initialization_vector=\n"
                                                 "1fff,\n0005,\n1000;\n")
    assert render(words, 13, "mif").decode() == ("DEPTH = 3;\nWIDTH = 13;\nADDRESS_RADIX = HEX;\nDATA_RADIX = HEX;\n"
                                                 "CONTENT BEGIN\n    0 : 1FFF;\n    1 : 0005;\n    2 : 1000;\nEND;\n")
    assert render(to_words(np.array([-2, 300]), 12), 12, "bin") == bytes([0xFE, 0x0F, 0x2C, 0x01])   # <u2


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_every_file_format_round_trips_and_verifies(tmp_path, fmt):
    spec = parse_spec(INT8_GEMM)
    out = tmp_path / fmt
    manifest = export_layer(spec, out, file_format=fmt, traces=[(1, 2)])
    res, (A, B, bias) = run_layer(spec, trace=[(1, 2)])
    files = manifest["files"]
    assert set(files) == {"a", "b", "bias", "acc", "out", "trace_1_2"}
    assert np.array_equal(read_words(str(out), files["a"]), A.astype(np.int64))
    assert np.array_equal(read_words(str(out), files["bias"]), bias.astype(np.int64))
    assert np.array_equal(read_words(str(out), files["acc"]), res.acc)
    assert np.array_equal(read_words(str(out), files["out"]), res.codes)
    assert np.array_equal(read_words(str(out), files["trace_1_2"]), res.traces[(1, 2)])
    # the trace ends on the accumulator it belongs to; it has the preload and one value per addition
    assert res.traces[(1, 2)][-1] == res.acc[1, 2] and len(res.traces[(1, 2)]) == 21
    for entry in files.values():
        assert hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
    assert files["acc"]["bits"] == 14 and files["acc"]["shape"] == [3, 4] and files["acc"]["order"] == "row-major"
    m = json.loads((out / "manifest.json").read_text())
    assert m["spec"]["datapath"]["accumulator"]["format"] == "int14" and "int14" in m["datapath"]
    assert m["fxsim_version"]
    assert verify_dir(str(out)) == []


def test_float_operands_are_exported_as_their_bit_patterns(tmp_path):
    spec = parse_spec(E4M3_GEMM)
    manifest = export_layer(spec, tmp_path / "g", traces=[(0, 0)])
    res, (A, B, bias) = run_layer(spec, trace=[(0, 0)])
    hex_a = (tmp_path / "g" / "a.hex").read_text().split()
    hex_b = (tmp_path / "g" / "b.hex").read_text().split()
    hex_acc = (tmp_path / "g" / "acc.hex").read_text().split()
    # independent encoders: ml_dtypes' casts and NumPy's float16
    assert hex_a == [format(int(v), "02x") for v in A.astype(ml_dtypes.float8_e4m3fn).view(np.uint8).ravel()]
    assert hex_b == [format(int(v), "02x") for v in B.astype(ml_dtypes.float8_e5m2).view(np.uint8).ravel()]
    assert hex_acc == [format(int(v), "04x") for v in res.acc.astype(np.float16).view(np.uint16).ravel()]
    assert manifest["files"]["acc"]["bits"] == 16 and not manifest["files"]["acc"]["signed"]
    assert verify_dir(str(tmp_path / "g")) == []


def test_verify_reports_checksum_failures_and_recomputation_mismatches(tmp_path):
    out = tmp_path / "g"
    export_layer(parse_spec(INT8_GEMM), out)
    (out / "out.hex").write_text((out / "out.hex").read_text().replace("0", "1", 1))
    assert any("out.hex: sha256 differs" in p for p in verify_dir(str(out)))
    m = json.loads((out / "manifest.json").read_text())      # a manifest that agrees with the tampered file
    m["files"]["out"]["sha256"] = hashlib.sha256((out / "out.hex").read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(m))
    probs = verify_dir(str(out))
    assert len(probs) == 1 and "out.hex: 1 word(s) differ from the recomputation" in probs[0]
    (out / "acc.hex").unlink()
    assert "acc.hex: listed in the manifest but missing" in verify_dir(str(out))
    assert "does not exist" in verify_dir(str(tmp_path / "nothing"))[0]


def test_output_directory_is_atomic_and_never_overwritten_without_force(tmp_path):
    out = tmp_path / "g"
    export_layer(parse_spec(INT8_GEMM), out)
    before = (out / "acc.hex").read_text()
    with pytest.raises(FileExistsError, match="--force"):
        export_layer(parse_spec(INT8_GEMM), out)
    with pytest.raises(ValueError, match="file format must be one of"):
        export_layer(parse_spec(INT8_GEMM), out, file_format="xls", force=True)
    with pytest.raises(ValueError):          # a failure inside the simulation: nothing replaced, no temp left
        export_layer(parse_spec(INT8_GEMM), out, traces=[(99, 0)], force=True)
    assert (out / "acc.hex").read_text() == before
    export_layer(parse_spec(INT8_GEMM), out, file_format="coe", force=True)
    assert (out / "acc.coe").exists() and not (out / "acc.hex").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]


def test_a_failure_while_writing_leaves_the_old_directory_and_no_temporary(tmp_path):
    from fxsim.rtl.export import atomic_dir
    out = tmp_path / "d"
    with atomic_dir(out, False, kind="sweep") as tmp:
        (tmp_path / tmp / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(out, True, kind="sweep") as tmp:
            (tmp_path / tmp / "half.txt").write_text("new")
            raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"] and (out / "old.txt").read_text() == "old"
    with atomic_dir(out, True, kind="sweep") as tmp:
        (tmp_path / tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "new.txt"]
    (out / "mine.txt").write_text("a file fxsim did not write")
    with pytest.raises(FileExistsError, match="did not write"):      # --force never deletes it
        with atomic_dir(out, True, kind="sweep"):
            pass
    assert (out / "mine.txt").exists()
