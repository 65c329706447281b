"""Output directories (export, sweep --out, demo): --force replaces only fxsim's own output of the same
kind, nothing that appears meanwhile is replaced, the location is checked before the work, stale
temporaries are cleaned, the umask is respected, and unwritable locations are clear errors."""
import errno
import json
import os
import subprocess
import sys
import threading

import pytest

from fxsim.cli.main import EXIT_INPUT, EXIT_OK, main
from fxsim.errors import OutputExists
from fxsim.rtl.export import export_layer, verify_dir
from fxsim.runtime.outputs import (OutputNotWritable, check_output_location, clean_stale_temporaries, output_dir,
                           rename_noreplace)
from fxsim.workflows.spec import parse_spec
from tests.workflow_specs import INT8_GEMM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def snapshot(root):
    """Every path under ``root`` with its kind and content (links not followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir",)
            else:
                with open(p, "rb") as fh:
                    out[rel] = ("file", fh.read())
    return out


@pytest.fixture
def spec_file(tmp_path):
    p = tmp_path / "layer.toml"
    p.write_text(INT8_GEMM)
    return p


def _golden(path):
    export_layer(parse_spec(INT8_GEMM), path)


def _sweep_out(path):
    with output_dir(path, "sweep") as tmp:
        with open(os.path.join(tmp, "sweep.csv"), "w") as fh:
            fh.write("x\n")


# (name, how to build what lies at --out, the message expected)
REFUSED_WITH_FORCE = [
    ("a regular file", lambda p: p.write_text("notes"), "it is a regular file"),
    ("a symlink to a golden directory", lambda p: (_golden(p.parent / "real"), p.symlink_to(p.parent / "real")),
     "it is a symbolic link"),
    ("a dangling symlink", lambda p: p.symlink_to(p.parent / "nowhere"), "it is a symbolic link"),
    ("a directory fxsim did not write", lambda p: (p.mkdir(), (p / "thesis.tex").write_text("years")),
     "not a previous fxsim golden-vectors output"),
    ("an empty directory", lambda p: p.mkdir(), "not a previous fxsim golden-vectors output"),
    ("a sweep output", _sweep_out, "it is an fxsim sweep output, not a golden-vectors output"),
    ("a golden directory with a file added", lambda p: (_golden(p), (p / "notes.txt").write_text("mine")),
     "files fxsim did not write there: 'notes.txt'"),
    ("a golden directory with a sub-directory added", lambda p: (_golden(p), (p / "sub").mkdir()),
     "a directory fxsim did not write there: 'sub'"),
    ("a golden directory with a symlink added", lambda p: (_golden(p), (p / "ln").symlink_to("/etc")),
     "'ln', a symbolic link"),
    ("a manifest that is not JSON", lambda p: (p.mkdir(), (p / "manifest.json").write_text("{")),
     "not valid JSON"),
    ("a manifest that is a list", lambda p: (p.mkdir(), (p / "manifest.json").write_text("[]")),
     "must hold a JSON object"),
]


@pytest.mark.parametrize("name,build,message", REFUSED_WITH_FORCE, ids=[c[0] for c in REFUSED_WITH_FORCE])
def test_force_refuses_what_fxsim_did_not_write(tmp_path, spec_file, capsys, name, build, message):
    out = tmp_path / "area" / "out"
    out.parent.mkdir()
    build(out)
    before = snapshot(tmp_path)
    assert main(["export", str(spec_file), "--out", str(out), "--force"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert message in err and "--force will not replace" in err, err
    assert snapshot(tmp_path) == before                         # nothing changed, nothing left behind
    assert main(["export", str(spec_file), "--out", str(out)]) == EXIT_INPUT      # nor without --force
    assert "exists" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("where", [".", "..", "../.."])
def test_force_refuses_the_current_directory_and_its_parents(tmp_path, spec_file, capsys, monkeypatch, where):
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    # even one that looks like a golden directory
    export_layer(parse_spec(INT8_GEMM), tmp_path / "g")
    before = snapshot(tmp_path)
    assert main(["export", str(spec_file), "--out", where, "--force"]) == EXIT_INPUT
    assert "current directory" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_force_replaces_a_previous_output_of_the_same_kind(tmp_path, spec_file, capsys):
    out = tmp_path / "g"
    assert main(["export", str(spec_file), "--out", str(out), "--trace", "0,0"]) == EXIT_OK
    assert main(["export", str(spec_file), "--out", str(out), "--force", "--format", "coe"]) == EXIT_OK
    # the SystemVerilog package comes with every export
    assert sorted(os.listdir(out)) == ["a.coe", "acc.coe", "b.coe", "bias.coe", "layer_pkg.sv", "manifest.json",
                                       "out.coe"]
    assert verify_dir(str(out)) == []
    assert sorted(os.listdir(tmp_path)) == ["g", "layer.toml"]
    # a directory written by an fxsim that did not name its kind in the manifest is still recognised
    m = json.loads((out / "manifest.json").read_text())
    del m["fxsim_output"]
    (out / "manifest.json").write_text(json.dumps(m))
    assert main(["export", str(spec_file), "--out", str(out), "--force"]) == EXIT_OK


def test_sweep_and_demo_outputs_are_recognised_by_their_manifests(tmp_path):
    out = tmp_path / "s"
    _sweep_out(out)
    m = json.loads((out / "manifest.json").read_text())
    assert m["fxsim_output"] == "sweep" and m["files"] == ["sweep.csv"]
    with output_dir(out, "sweep", force=True) as tmp:
        with open(os.path.join(tmp, "sweep.json"), "w") as fh:
            fh.write("{}")
    assert sorted(os.listdir(out)) == ["manifest.json", "sweep.json"]
    with pytest.raises(OutputExists, match="sweep output, not a demo output"):
        check_output_location(out, "demo", force=True)
    d = tmp_path / "d"
    with output_dir(d, "demo") as tmp:
        os.mkdir(os.path.join(tmp, "golden"))
        with open(os.path.join(tmp, "golden", "x.hex"), "w") as fh:
            fh.write("00\n")
    assert json.loads((d / "manifest.json").read_text())["files"] == ["golden/x.hex"]
    check_output_location(d, "demo", force=True)
    (d / "golden" / "y.hex").write_text("01\n")
    with pytest.raises(OutputExists, match="golden/y.hex"):
        check_output_location(d, "demo", force=True)


def test_the_location_is_checked_before_any_work(tmp_path, spec_file, monkeypatch, capsys):
    import fxsim.rtl.export
    import fxsim.workflows.sweep
    out = tmp_path / "x"
    out.mkdir()
    (out / "mine").write_text("")

    def boom(*a, **k):
        raise AssertionError("the work ran although the output location is refused")
    monkeypatch.setattr(fxsim.rtl.export, "golden_contents", boom)
    monkeypatch.setattr(fxsim.workflows.sweep, "run_sweep", boom)
    assert main(["export", str(spec_file), "--out", str(out)]) == EXIT_INPUT
    assert main(["sweep", str(spec_file), "--acc-bits", "12", "--workers", "1", "--out", str(out)]) == EXIT_INPUT
    assert main(["sweep", str(spec_file), "--acc-bits", "12", "--workers", "1", "--out", str(out),
                 "--force"]) == EXIT_INPUT
    assert main(["demo", "--out", str(out), "--quick"]) == EXIT_INPUT
    assert capsys.readouterr().err.count("error:") == 4


@pytest.mark.parametrize("kind", ["absent", "empty dir", "full dir", "file", "symlink", "dangling symlink"])
def test_rename_noreplace_never_replaces(tmp_path, kind):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("new")
    dst = tmp_path / "dst"
    if kind == "empty dir":
        dst.mkdir()
    elif kind == "full dir":
        dst.mkdir()
        (dst / "g").write_text("old")
    elif kind == "file":
        dst.write_text("old")
    elif kind == "symlink":
        (tmp_path / "t").mkdir()
        dst.symlink_to(tmp_path / "t")
    elif kind == "dangling symlink":
        dst.symlink_to(tmp_path / "nowhere")
    before = snapshot(tmp_path)
    if kind == "absent":
        rename_noreplace(src, dst)
        assert (dst / "f").read_text() == "new" and not src.exists()
        return
    with pytest.raises(FileExistsError):
        rename_noreplace(src, dst)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("appears", ["an empty directory", "a directory with a file", "a file", "a symlink"])
def test_what_appears_while_writing_is_never_replaced(tmp_path, appears):
    out = tmp_path / "g"
    with pytest.raises(OutputExists, match="appeared while fxsim was writing"):
        with output_dir(out, "golden-vectors", manifest_files=False) as tmp:
            with open(os.path.join(tmp, "manifest.json"), "w") as fh:
                fh.write("{}")
            if appears == "an empty directory":
                out.mkdir()
            elif appears == "a directory with a file":
                out.mkdir()
                (out / "precious").write_text("keep")
            elif appears == "a file":
                out.write_text("keep")
            else:
                out.symlink_to(tmp_path)
            before = snapshot(tmp_path / "g") if out.is_dir() and not out.is_symlink() else None
    assert os.path.lexists(out)
    if before is not None:
        assert snapshot(out) == before
    assert [p for p in os.listdir(tmp_path) if "fxsim-tmp" in p] == []


def test_concurrent_exports_into_one_directory_one_succeeds(tmp_path, monkeypatch):
    """Threads that all pass the early check, then race to the final rename: exactly one wins."""
    import fxsim.rtl.export
    real = fxsim.rtl.export.golden_contents
    n = 4
    barrier = threading.Barrier(n)

    def slow(*a, **k):
        barrier.wait(timeout=60)            # every export has checked the location and made its temporary
        return real(*a, **k)
    monkeypatch.setattr(fxsim.rtl.export, "golden_contents", slow)
    out = tmp_path / "g"
    results = [None] * n

    def one(i):
        try:
            export_layer(parse_spec(INT8_GEMM), out, file_format=["hex", "coe", "mif", "bin"][i])
            results[i] = "ok"
        except OutputExists as exc:
            results[i] = str(exc)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results.count("ok") == 1, results
    assert all("appeared while fxsim was writing" in r for r in results if r != "ok")
    monkeypatch.setattr(fxsim.rtl.export, "golden_contents", real)
    assert verify_dir(str(out)) == []
    assert sorted(os.listdir(tmp_path)) == ["g"]


@pytest.mark.slow     # starts several fxsim processes at once (about 14 s)
def test_concurrent_export_processes(tmp_path, spec_file):
    """Separate fxsim processes started together into one --out: one exit 0, the others exit 2."""
    out = tmp_path / "g"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-m", "fxsim.cli.main", "export", str(spec_file), "--out", str(out)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    codes = [p.wait(timeout=300) for p in procs]
    errs = [p.stderr.read() for p in procs]
    assert sorted(codes) == [0, 2, 2], (codes, errs)
    assert all("exists" in e or "appeared" in e for c, e in zip(codes, errs) if c == 2)
    assert verify_dir(str(out)) == []
    assert sorted(os.listdir(tmp_path)) == ["g", "layer.toml"]


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _fake_temporary(parent, base, pid, marker=True, kind="golden-vectors", token="0123456789ab"):
    d = parent / f".{base}.fxsim-tmp-{pid}-{token}"
    d.mkdir()
    (d / "half.hex").write_text("00\n")
    if marker:
        import socket
        (d / ".fxsim-temporary").write_text(json.dumps({"fxsim_temporary": kind, "pid": pid,
                                                        "host": socket.gethostname(), "created": 0}))
    return d


def test_stale_temporaries_of_fxsim_are_cleaned_and_nothing_else(tmp_path):
    dead = _dead_pid()
    stale = _fake_temporary(tmp_path, "g", dead)
    live = _fake_temporary(tmp_path, "g", os.getppid())          # a process that runs: kept
    unmarked = _fake_temporary(tmp_path, "g", dead, marker=False, token="ba9876543210")  # not provably ours
    other_kind = _fake_temporary(tmp_path, "h", dead)            # beside another output: not now
    lookalike = tmp_path / f".g.fxsim-tmp-{dead}-xyz"
    lookalike.mkdir()
    export_layer(parse_spec(INT8_GEMM), tmp_path / "g")
    assert not stale.exists()
    for p in (live, unmarked, other_kind, lookalike):
        assert p.exists(), p


def test_a_previous_output_left_aside_by_a_killed_force_run_is_restored(tmp_path):
    _golden(tmp_path / "keep")
    dead = _dead_pid()
    aside = tmp_path / f".g.fxsim-old-{dead}-0123456789ab"
    (tmp_path / "keep").rename(aside)
    assert clean_stale_temporaries(str(tmp_path), "g", "golden-vectors") == [f"restored {tmp_path / 'g'}"]
    assert verify_dir(str(tmp_path / "g")) == []


@pytest.mark.parametrize("umask,mode", [(0o022, 0o755), (0o077, 0o700), (0o002, 0o775)])
def test_output_directories_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        export_layer(parse_spec(INT8_GEMM), tmp_path / "g")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "g").st_mode & 0o777 == mode
    assert os.stat(tmp_path / "g" / "acc.hex").st_mode & 0o777 == mode & 0o666


def test_unwritable_locations_are_clear_errors(tmp_path, spec_file, capsys, monkeypatch):
    if os.path.isdir("/sys/kernel"):
        assert main(["export", str(spec_file), "--out", "/sys/fxsim-out"]) == EXIT_INPUT
        assert "cannot" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["export", str(spec_file), "--out", str(blocker / "sub" / "g")]) == EXIT_INPUT
    assert "part of the path is a file" in capsys.readouterr().err
    import fxsim.rtl.export
    real = fxsim.rtl.export.golden_contents

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", "acc.hex")
    monkeypatch.setattr(fxsim.rtl.export, "golden_contents", full)
    with pytest.raises(OutputNotWritable, match="No space left on device"):
        export_layer(parse_spec(INT8_GEMM), tmp_path / "g")
    assert main(["export", str(spec_file), "--out", str(tmp_path / "g")]) == EXIT_INPUT
    assert "No space left" in capsys.readouterr().err
    monkeypatch.setattr(fxsim.rtl.export, "golden_contents", real)
    assert sorted(os.listdir(tmp_path)) == ["file", "layer.toml"]


@pytest.mark.parametrize("kind", ["full dir", "file"])
def test_the_portable_rename_never_replaces_either(tmp_path, monkeypatch, kind):
    """Without renameat2/renamex_np: rename(2), which replaces only an empty directory."""
    import fxsim.runtime.outputs
    monkeypatch.setattr(fxsim.runtime.outputs, "_LIBC", None)
    src = tmp_path / "src"
    src.mkdir()
    dst = tmp_path / "dst"
    if kind == "full dir":
        dst.mkdir()
        (dst / "g").write_text("old")
    else:
        dst.write_text("old")
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError):
        rename_noreplace(src, dst)
    assert snapshot(tmp_path) == before
    rename_noreplace(src, tmp_path / "new")
    assert (tmp_path / "new").is_dir()
