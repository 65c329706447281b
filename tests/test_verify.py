"""fxsim verify: every change to a golden directory is found, it reads nothing outside the directory and
never blocks, and it answers 0 (identical to the recomputation) / 1 (mismatch) / 2 (malformed)."""
import hashlib
import json
import os
import shutil
import stat
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fxsim.cli.main import EXIT_INPUT, EXIT_MISMATCH, EXIT_OK, main
from fxsim.rtl.export import export_layer
from fxsim.workflows.spec import parse_spec
from fxsim.rtl.verify import MalformedFile, parse_strict, verify_directory
from tests.workflow_specs import E4M3_GEMM, INT8_GEMM

FORMATS = ("hex", "coe", "mif", "npy", "bin")


@pytest.fixture(scope="module")
def goldens(tmp_path_factory):
    """One pristine golden directory per file format (int8 GEMM with bias, output stage and a trace)."""
    root = tmp_path_factory.mktemp("goldens")
    for f in FORMATS:
        export_layer(parse_spec(INT8_GEMM), root / f, file_format=f, traces=[(1, 2)])
    export_layer(parse_spec(E4M3_GEMM), root / "float", traces=[(0, 0)])
    return root


@pytest.fixture
def golden(goldens, tmp_path):
    def copy(fmt="hex"):
        d = tmp_path / f"g-{fmt}"
        shutil.copytree(goldens / fmt, d, symlinks=True)
        return d
    return copy


def _manifest(d):
    if (d / "manifest.json").is_symlink():     # a mutation linked it (perhaps to /dev/zero)
        raise FileNotFoundError(d / "manifest.json")
    return json.loads((d / "manifest.json").read_text())


def _write_manifest(d, m):
    (d / "manifest.json").write_text(json.dumps(m, indent=2))


def _rehash(d, key):
    m = _manifest(d)
    p = d / m["files"][key]["file"]
    if p.is_symlink():
        raise FileNotFoundError(p)
    m["files"][key]["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
    _write_manifest(d, m)


def _edit_manifest(path, value):
    def edit(d):
        m = _manifest(d)
        t = m
        for k in path[:-1]:
            t = t[k]
        if value is _DELETE:
            del t[path[-1]]
        else:
            t[path[-1]] = value(t[path[-1]]) if callable(value) else value
        _write_manifest(d, m)
    return edit


_DELETE = object()


def _replace_file(name, text, rehash_key=None):
    def edit(d):
        (d / name).write_text(text(d / name) if callable(text) else text)
        if rehash_key:
            _rehash(d, rehash_key)
    return edit


def _lines(edit_line, name="acc.hex", key="acc"):
    def text(p):
        lines = p.read_text().split("\n")
        lines[0] = edit_line(lines[0])
        return "\n".join(lines)
    return _replace_file(name, text, key)


def _delete_with_entry(key, name):
    def edit(d):
        (d / name).unlink()
        m = _manifest(d)
        del m["files"][key]
        if key.startswith("trace_"):
            pass                  # the manifest's traces still name it
        _write_manifest(d, m)
    return edit


def _symlink(name, target):
    def edit(d):
        if os.path.lexists(d / name):
            os.unlink(d / name)
        os.symlink(target, d / name)
    return edit


def _fifo(d):
    (d / "acc.hex").unlink()
    os.mkfifo(d / "acc.hex")


# (name, format, edit, exit code, a phrase of the report)
CASES = [
    ("pristine", "hex", lambda d: None, EXIT_OK, "OK"),
    ("one word changed, checksum updated", "hex", _lines(lambda s: "3fff" if s != "3fff" else "0000"),
     EXIT_MISMATCH, "acc.hex: 1 word(s) differ from the recomputation, first at index 0"),
    ("one word changed", "hex", _replace_file("acc.hex", lambda p: ("0001" if p.read_text()[:4] != "0001" else "0002")
                                              + p.read_text()[4:]), EXIT_MISMATCH, "sha256 differs"),
    ("a word wider than its width", "hex", _lines(lambda s: "f" + s[1:]), EXIT_INPUT, "wider than the declared 14 bits"),
    ("a word with an extra digit", "hex", _lines(lambda s: "0" + s), EXIT_INPUT, "has 5 hex digit(s)"),
    ("a 0x prefix", "hex", _lines(lambda s: "0x" + s[2:]), EXIT_INPUT, "0x prefix, which $readmemh rejects"),
    ("a word that is not hex", "hex", _lines(lambda s: "zz" + s[2:]), EXIT_INPUT, "not a hex word"),
    ("a missing word", "hex", _replace_file("acc.hex", lambda p: p.read_text().split("\n", 1)[1], "acc"),
     EXIT_INPUT, "11 words; the declared shape [3, 4] needs 12"),
    ("coe without its header", "coe", _replace_file("acc.coe", lambda p: p.read_text().split("\n", 2)[2], "acc"),
     EXIT_INPUT, "lacks the COE header"),
    ("mif without its header", "mif", _replace_file("acc.mif", lambda p: "\n".join(p.read_text().split("\n")[5:]), "acc"),
     EXIT_INPUT, "lacks the MIF header"),
    ("mif with another width", "mif", _replace_file("acc.mif", lambda p: p.read_text().replace("WIDTH = 14;", "WIDTH = 16;"),
                                                    "acc"), EXIT_INPUT,
     "'WIDTH = 16;'; the declared shape and width give 'WIDTH = 14;'"),
    ("bin word wider than its width", "bin",
     lambda d: (d / "acc.bin").write_bytes(b"\xff\xff" + (d / "acc.bin").read_bytes()[2:]), EXIT_INPUT,
     "wider than the declared 14 bits"),
    ("npy of another dtype", "npy", lambda d: (np.save(d / "acc.npy", np.load(d / "acc.npy").astype(np.int32)),
                                               _rehash(d, "acc")), EXIT_INPUT, "fxsim writes C-ordered little-endian int64"),
    ("npy code outside the width", "npy", lambda d: (np.save(d / "acc.npy", np.load(d / "acc.npy") + 2 ** 20),
                                                     _rehash(d, "acc")), EXIT_INPUT,
     "outside the declared signed 14-bit range"),
    ("an unlisted file", "hex", lambda d: (d / "extra.hex").write_text("00\n"), EXIT_INPUT, "extra.hex: a file not listed"),
    ("an unlisted hidden file", "hex", lambda d: (d / ".x").write_text(""), EXIT_INPUT, ".x: a file not listed"),
    ("an unlisted directory", "hex", lambda d: (d / "sub").mkdir(), EXIT_INPUT, "sub: a directory not listed"),
    ("a listed file missing", "hex", lambda d: (d / "out.hex").unlink(), EXIT_INPUT,
     "out.hex: listed in the manifest but missing"),
    ("the output deleted with its entry", "hex", _delete_with_entry("out", "out.hex"), EXIT_MISMATCH,
     "out.hex: the spec implies this file"),
    ("the bias deleted with its entry", "hex", _delete_with_entry("bias", "bias.hex"), EXIT_MISMATCH,
     "bias.hex: the spec implies this file"),
    ("a trace deleted with its entry", "hex", _delete_with_entry("trace_1_2", "trace_1_2.hex"), EXIT_MISMATCH,
     "trace_1_2.hex: the spec implies this file"),
    ("a trace claimed that is not there", "hex", _edit_manifest(["traces"], [[0, 0], [1, 2]]), EXIT_MISMATCH,
     "trace_0_0.hex: the spec implies this file"),
    ("bits that lie", "hex", _edit_manifest(["files", "acc", "bits"], 16), EXIT_MISMATCH,
     "acc.hex: the manifest says bits = 16; the spec implies 14"),
    ("signedness that lies", "hex", _edit_manifest(["files", "acc", "signed"], False), EXIT_MISMATCH,
     "the manifest says signed = False"),
    ("a format name that lies", "hex", _edit_manifest(["files", "out", "format"], "uint8"), EXIT_MISMATCH,
     "the manifest says format = 'uint8'"),
    ("a shape that lies", "hex", _edit_manifest(["files", "acc", "shape"], [4, 3]), EXIT_MISMATCH, "shape = [4, 3]"),
    ("an order that lies", "hex", _edit_manifest(["files", "acc", "order"], "column-major"), EXIT_MISMATCH, "order"),
    ("a summary that lies", "hex", _edit_manifest(["summary", "overflow_events"], lambda v: v + 1), EXIT_MISMATCH,
     "summary is"),
    ("a datapath that lies", "hex", _edit_manifest(["datapath"], "int32 acc"), EXIT_MISMATCH, "datapath is"),
    ("a spec edited", "hex", _edit_manifest(["spec", "data", "seed"], 6), EXIT_MISMATCH, "differ from the recomputation"),
    ("a spec that is not valid", "hex", _edit_manifest(["spec", "shape", "M"], 0), EXIT_INPUT, "not a valid layer spec"),
    ("a trace outside the output", "hex", _edit_manifest(["traces"], [[1, 2], [9, 9]]), EXIT_INPUT, "cannot be simulated"),
    ("a manifest key missing", "hex", _edit_manifest(["files", "acc", "sha256"], _DELETE), EXIT_INPUT,
     "files.acc: missing key(s) sha256"),
    ("a manifest top-level key missing", "hex", _edit_manifest(["spec"], _DELETE), EXIT_INPUT, "missing key(s) spec"),
    ("an unknown manifest key", "hex", _edit_manifest(["comment"], "hi"), EXIT_INPUT, "unknown key(s) comment"),
    ("files as a list", "hex", _edit_manifest(["files"], []), EXIT_INPUT, "files must be a JSON dict"),
    ("a manifest that is a list", "hex", lambda d: (d / "manifest.json").write_text("[]"), EXIT_INPUT,
     "must be a JSON object, got list"),
    ("a manifest that is not JSON", "hex", lambda d: (d / "manifest.json").write_text("{"), EXIT_INPUT, "not valid JSON"),
    ("no manifest", "hex", lambda d: (d / "manifest.json").unlink(), EXIT_INPUT,
     "manifest.json: listed in the manifest but missing"),
    ("bits of the wrong type", "hex", _edit_manifest(["files", "acc", "bits"], "14"), EXIT_INPUT, "bits must be a JSON int"),
    ("a path with ..", "hex", _edit_manifest(["files", "acc", "file"], "../acc.hex"), EXIT_INPUT,
     "names a path outside the directory"),
    ("an absolute path", "hex", _edit_manifest(["files", "acc", "file"], "/etc/passwd"), EXIT_INPUT,
     "names a path outside the directory"),
    ("a file name fxsim does not write", "hex", _edit_manifest(["files", "acc", "file"], "out.hex"), EXIT_INPUT,
     "fxsim names it acc.hex"),
    ("an entry name fxsim does not write", "hex", _edit_manifest(["files", "zzz"], {}), EXIT_INPUT,
     "files.zzz: not a name fxsim writes"),
    ("a listed file replaced by a symlink to a copy", "hex",
     lambda d: (shutil.copy(d / "acc.hex", d.parent / "copy.hex"), _symlink("acc.hex", d.parent / "copy.hex")(d)),
     EXIT_INPUT, "acc.hex: a symbolic link"),
    ("a listed file that is a symlink to /dev/zero", "hex", _symlink("acc.hex", "/dev/zero"), EXIT_INPUT,
     "acc.hex: a symbolic link"),
    ("an unlisted symlink out", "hex", _symlink("passwd", "/etc/passwd"), EXIT_INPUT, "passwd: a symbolic link"),
    ("a listed file that is a FIFO", "hex", _fifo, EXIT_INPUT, "acc.hex: a FIFO, not a regular file"),
    ("a listed file that is a directory", "hex", lambda d: ((d / "acc.hex").unlink(), (d / "acc.hex").mkdir()),
     EXIT_INPUT, "acc.hex: a directory, not a regular file"),
    ("a listed file far larger than its shape allows", "hex",
     lambda d: (d / "acc.hex").write_bytes(b"0" * (1 << 20)), EXIT_INPUT, "more than its declared shape"),
    ("float accumulator pristine", "float", lambda d: None, EXIT_OK, "OK"),
    ("float bits pattern changed", "float", _lines(lambda s: "7c00" if s != "7c00" else "0000"), EXIT_MISMATCH,
     "acc.hex: 1 word(s) differ"),
]


@pytest.mark.parametrize("name,fmt,edit,code,phrase", CASES, ids=[c[0] for c in CASES])
def test_verify_answers(golden, capsys, name, fmt, edit, code, phrase):
    d = golden(fmt)
    edit(d)
    result = [None]

    def run():
        result[0] = main(["verify", str(d)])
    t = threading.Thread(target=run, daemon=True)    # a FIFO or /dev/zero must not hang it
    t.start()
    t.join(120)
    assert not t.is_alive(), "verify hung"
    out, err = capsys.readouterr()
    assert result[0] == code, out + err
    assert phrase in out + err, out + err
    if code == EXIT_INPUT:
        assert "MALFORMED" in out and "Traceback" not in err
    if code == EXIT_MISMATCH:
        assert "MISMATCH" in out and "MALFORMED" not in out


def test_verify_of_what_is_not_a_directory(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "missing")]) == EXIT_INPUT
    assert "does not exist" in capsys.readouterr().out
    (tmp_path / "f").write_text("")
    assert main(["verify", str(tmp_path / "f")]) == EXIT_INPUT
    assert "is not a directory" in capsys.readouterr().out


def test_verify_reads_input_files_from_the_directory_when_the_spec_took_them_from_files(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.integers(-128, 128, size=(3, 5)).astype(np.float64))
    np.save(tmp_path / "w.npy", rng.integers(-128, 128, size=(5, 2)).astype(np.float64))
    (tmp_path / "l.toml").write_text('[data]\na = "x.npy"\nb = "w.npy"\n[datapath.accumulator]\nformat = "int20"\n')
    from fxsim.workflows.spec import load_spec
    export_layer(load_spec(tmp_path / "l.toml"), tmp_path / "g")
    os.unlink(tmp_path / "x.npy")              # verify needs only the directory
    assert verify_directory(tmp_path / "g").ok
    text = (tmp_path / "g" / "a.hex").read_text()
    (tmp_path / "g" / "a.hex").write_text(("01" if text[:2] != "01" else "02") + text[2:])
    _rehash(tmp_path / "g", "a")
    rep = verify_directory(tmp_path / "g")
    assert not rep.malformed and any("acc.hex" in p for p in rep.mismatches), rep


# --------------------------------------------------------------------------------------------------
# random mutations of a golden directory are always found

def _mutations():
    hexdigit = st.sampled_from("0123456789abcdef")
    keys = st.sampled_from(["a", "b", "bias", "acc", "out", "trace_1_2"])
    field = st.sampled_from(["shape", "order", "format", "bits", "signed", "encoding", "file"])
    flip = st.tuples(st.just("flip"), keys, st.integers(0, 10 ** 6), hexdigit, st.booleans())
    widen = st.tuples(st.just("widen"), keys, st.integers(0, 10 ** 6), hexdigit, st.booleans())
    delete = st.tuples(st.just("delete"), keys, st.booleans())
    add = st.tuples(st.just("add"), st.text("abcdefghij._-0123456789", min_size=1, max_size=12), st.binary(max_size=20))
    edit = st.tuples(st.just("edit"), keys, field, st.integers(-3, 3))
    top = st.tuples(st.just("top"), st.sampled_from(["op", "datapath", "datapath_repr", "file_format", "traces",
                                                      "summary", "fxsim_output", "spec"]), st.integers(0, 5))
    link = st.tuples(st.just("link"), st.sampled_from(["acc.hex", "new.hex", "manifest.json"]),
                     st.sampled_from(["/etc/passwd", "/dev/zero", "a.hex", "../x"]))
    return st.one_of(flip, widen, delete, add, edit, top, link)


def _apply(d, mut):
    m = _manifest(d)
    kind = mut[0]
    if kind in ("flip", "widen"):
        _, key, pos, digit, rehash = mut
        p = d / m["files"][key]["file"]
        if p.is_symlink():            # an earlier mutation linked it (perhaps to /dev/zero): stop here
            raise FileNotFoundError(p)
        text = p.read_text()
        idx = [i for i, c in enumerate(text) if c in "0123456789abcdef"]
        i = idx[pos % len(idx)]
        if kind == "flip":
            if text[i] == digit:
                digit = "0123456789abcdef"[("0123456789abcdef".index(digit) + 1) % 16]
            text = text[:i] + digit + text[i + 1:]
        else:
            start = text.rfind("\n", 0, i) + 1
            text = text[:start] + digit + text[start:]
        p.write_text(text)
        if rehash:
            _rehash(d, key)
    elif kind == "delete":
        _, key, with_entry = mut
        (d / m["files"][key]["file"]).unlink()
        if with_entry:
            del m["files"][key]
            _write_manifest(d, m)
    elif kind == "add":
        _, name, content = mut
        if name in (".", "..") or os.path.lexists(d / name):
            name = name + "_new"
        (d / name).write_bytes(content)
    elif kind == "edit":
        _, key, f, delta = mut
        e = m["files"][key]
        v = e[f]
        if isinstance(v, bool):
            e[f] = not v
        elif isinstance(v, int):
            e[f] = v + (delta or 1)
        elif isinstance(v, list):
            e[f] = v[::-1] if v != v[::-1] else v + [1]
        else:
            e[f] = v + "x" if delta % 2 else v.upper() + "!"
        _write_manifest(d, m)
    elif kind == "top":
        _, f, n = mut
        v = m[f]
        if f == "traces":
            m[f] = [] if v else [[0, 0]]
        elif f == "summary":
            k = sorted(v)[n % len(v)]
            m[f][k] = (v[k] + 1) if isinstance(v[k], (int, float)) and not isinstance(v[k], bool) else "x"
        elif f == "spec":
            m[f].setdefault("data", {})["seed"] = m[f].get("data", {}).get("seed", 0) + 1 + n
        elif f == "file_format":
            m[f] = "coe" if v != "coe" else "hex"
        else:
            m[f] = v + " " if n % 2 else ""
        _write_manifest(d, m)
    elif kind == "link":
        _, name, target = mut
        if os.path.lexists(d / name):
            os.unlink(d / name)
        os.symlink(target, d / name)


def _state(d):
    """What the directory holds: each entry's kind and content (the manifest as parsed JSON)."""
    out = {}
    for name in os.listdir(d):
        p = d / name
        if p.is_symlink():
            out[name] = ("link", os.readlink(p))
        elif p.is_dir():
            out[name] = ("dir",)
        elif name == "manifest.json":
            try:
                out[name] = ("json", json.dumps(json.loads(p.read_text()), sort_keys=True))
            except ValueError:
                out[name] = ("file", p.read_bytes())
        else:
            out[name] = ("file", p.read_bytes())
    return out


@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(muts=st.lists(_mutations(), min_size=1, max_size=3), fmt=st.sampled_from(["hex", "coe", "mif"]))
def test_every_random_mutation_is_detected(goldens, tmp_path_factory, muts, fmt):
    d = tmp_path_factory.mktemp("mut") / "g"
    shutil.copytree(goldens / fmt, d)
    applied = 0
    for mut in muts:
        try:
            _apply(d, mut)
            applied += 1
        except (KeyError, FileNotFoundError, IsADirectoryError, ValueError, UnicodeDecodeError, IndexError,
                json.JSONDecodeError, NotADirectoryError, OSError):
            break                     # an earlier mutation removed what this one edits: the directory changed
    if applied == 0 or _state(d) == _state(goldens / fmt):     # nothing, or mutations that cancel out
        return
    rep = verify_directory(d)
    assert not rep.ok, (muts, rep)


# --------------------------------------------------------------------------------------------------
# the strict reader itself, against the writer

@settings(max_examples=80)
@given(bits=st.integers(1, 64), data=st.data())
def test_strict_reader_reads_back_what_the_writer_writes_and_refuses_wider_words(bits, data):
    from fxsim.rtl.export import render
    n = data.draw(st.integers(1, 12))
    words = np.array(data.draw(st.lists(st.integers(0, 2 ** bits - 1), min_size=n, max_size=n)), dtype=np.uint64)
    for enc in ("hex", "coe", "mif", "bin"):
        content = render(words, bits, enc)
        assert np.array_equal(parse_strict(content, bits, enc, [n], False), words)
    if bits < 64:
        for enc in ("hex", "coe", "mif"):
            wide = render(words, bits, enc).replace(render(words[:1], bits, "hex")[:-1],
                                                    format(int(words[0]) | (1 << bits), "x").encode(), 1) \
                if enc == "hex" else None
            if wide is not None and wide != render(words, bits, enc):
                with pytest.raises(MalformedFile):
                    parse_strict(wide, bits, enc, [n], False)


def test_fifo_and_device_are_refused_without_blocking(tmp_path):
    from fxsim.rtl.verify import _Malformed, _read_member
    os.mkfifo(tmp_path / "p")
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(_Malformed, match="FIFO"):
            _read_member(fd, "p", 100)
    finally:
        os.close(fd)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "p").st_mode)


# --------------------------------------------------------------------------------------------------
# the same for hardware-shaped exports: layouts, packed words, $readmemb, constants files, the package

SHAPED = {"hex-packed": dict(file_format="hex", layouts={"a": "KM", "b": "NK"}, word_bits=32, pack="big",
                             constants=True),
          "memb-packed": dict(file_format="memb", layouts={"acc": "NM"}, word_bits={"a": 24, "out": 16, "trace": 64},
                              constants=True),
          "memb": dict(file_format="memb", layouts={"b": "NK"}),
          "coe-packed": dict(file_format="coe", word_bits={"b": 40, "acc": 28}, pack="little"),
          "mif-packed": dict(file_format="mif", word_bits=72, constants=True)}


@pytest.fixture(scope="module")
def shaped_goldens(tmp_path_factory):
    root = tmp_path_factory.mktemp("shaped")
    for name, kw in SHAPED.items():
        export_layer(parse_spec(INT8_GEMM), root / name, traces=[(1, 2)], **kw)
    return root


@pytest.mark.parametrize("name", sorted(SHAPED))
def test_shaped_exports_verify_and_their_words_are_word_bits_wide(shaped_goldens, name):
    d = shaped_goldens / name
    assert verify_directory(d).ok
    m = _manifest(d)
    assert m["fxsim_output"] == "golden-vectors" and m["manifest_version"] == 2
    assert (d / m["package"]["file"]).is_file()
    for e in m["files"].values():
        if "word_bits" in e:
            text = (d / e["file"]).read_text()
            if e["encoding"] == "memb":
                assert {len(line) for line in text.splitlines()} == {e["word_bits"]}
            elif e["encoding"] == "hex":
                assert {len(line) for line in text.splitlines()} == {-(-e["word_bits"] // 4)}


def test_a_packed_word_with_a_bit_set_in_an_unused_slot_is_malformed(shaped_goldens, tmp_path):
    d = tmp_path / "g"
    shutil.copytree(shaped_goldens / "hex-packed", d)
    m = _manifest(d)
    e = m["files"]["acc"]           # 12 elements of 14 bits in 32-bit words: 2 per word, 4 bits unused
    lines = (d / e["file"]).read_text().splitlines()
    lines[0] = format(int(lines[0], 16) | (1 << 31), "08x")
    (d / e["file"]).write_text("\n".join(lines) + "\n")
    _rehash(d, "acc")
    rep = verify_directory(d)
    assert any("outside its 2 element slot(s)" in p for p in rep.malformed), rep


def _shaped_mutations():
    hexdigit = st.sampled_from("0123456789abcdef")
    keys = st.sampled_from(["a", "b", "bias", "acc", "out", "trace_1_2", "requant_multiplier", "requant_shift"])
    field = st.sampled_from(["shape", "order", "format", "bits", "signed", "encoding", "file", "logical", "layout",
                             "word_bits", "elements_per_word", "pack", "words"])
    flip = st.tuples(st.just("flip"), keys, st.integers(0, 10 ** 6), hexdigit, st.booleans())
    widen = st.tuples(st.just("widen"), keys, st.integers(0, 10 ** 6), hexdigit, st.booleans())
    delete = st.tuples(st.just("delete"), keys, st.booleans())
    edit = st.tuples(st.just("edit"), keys, field, st.integers(-3, 3))
    top = st.tuples(st.just("top"), st.sampled_from(["op", "datapath", "file_format", "traces", "summary", "spec",
                                                      "manifest_version", "export_options", "package"]),
                    st.integers(0, 5))
    pkg = st.tuples(st.just("pkg"), st.integers(0, 10 ** 6), st.sampled_from("0123456789_xZ"))
    return st.one_of(flip, widen, delete, edit, top, pkg)


def _apply_shaped(d, mut):
    m = _manifest(d)
    kind = mut[0]
    if kind == "edit":
        _, key, f, delta = mut
        e = m["files"][key]
        if f not in e:
            e[f] = 8 if f in ("word_bits", "elements_per_word", "words") else "KN" if f in ("logical", "layout") \
                else "little"
            _write_manifest(d, m)
            return
    if kind == "top" and mut[1] in ("manifest_version", "export_options", "package"):
        _, f, n = mut
        if f == "manifest_version":
            m[f] = [1, 3, "2", None][n % 4]
        elif f == "package":
            m[f]["file"] = ["x_pkg.sv", "layer.sv", "../layer_pkg.sv"][n % 3]
        else:
            o = m[f]
            if n % 3 == 0:
                o["pack"] = "big" if o["pack"] == "little" else "little"
            elif n % 3 == 1:
                o["constants"] = not o["constants"]
            else:
                o["word_bits"] = {} if o["word_bits"] else {"a": 32}
        _write_manifest(d, m)
        return
    if kind == "pkg":
        _, pos, ch = mut
        p = d / m["package"]["file"]
        text = p.read_text()
        i = pos % len(text)
        if text[i] == ch:
            ch = "Q"
        p.write_text(text[:i] + ch + text[i + 1:])
        return
    _apply(d, mut)


@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(muts=st.lists(_shaped_mutations(), min_size=1, max_size=3), name=st.sampled_from(sorted(SHAPED)))
def test_every_random_mutation_of_a_shaped_export_is_detected(shaped_goldens, tmp_path_factory, muts, name):
    d = tmp_path_factory.mktemp("mut") / "g"
    shutil.copytree(shaped_goldens / name, d)
    applied = 0
    for mut in muts:
        try:
            _apply_shaped(d, mut)
            applied += 1
        except (KeyError, FileNotFoundError, IsADirectoryError, ValueError, UnicodeDecodeError, IndexError,
                json.JSONDecodeError, NotADirectoryError, OSError, TypeError):
            break
    if applied == 0 or _state(d) == _state(shaped_goldens / name):
        return
    rep = verify_directory(d)
    assert not rep.ok, (muts, rep)
