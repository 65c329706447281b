"""Files a user names: specs and operand data that are directories, devices, FIFOs, too large, not UTF-8
or not NumPy files are refused with exit 2 and a message naming the argument and the path, never read
forever, never a traceback."""
import os
import threading
import zipfile

import numpy as np
import pytest

from fxsim.cli.main import EXIT_INPUT, EXIT_OK, main
from fxsim.errors import BadFile
from fxsim.runtime.inputs import load_array_file, read_text_file
from tests.workflow_specs import INT8_GEMM

FILE_SPEC = """
[data]
a = "A"
b = "B"
[datapath.accumulator]
format = "int20"
"""


def _run(argv, timeout=120):
    res = [None]
    t = threading.Thread(target=lambda: res.__setitem__(0, main(argv)), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"fxsim {' '.join(argv)} did not return"
    return res[0]


def _spec_dir(p):
    p.mkdir()


def _fifo(p):
    os.mkfifo(p)


SPECS = [
    ("a directory", _spec_dir, "is a directory"),
    ("a FIFO", _fifo, "is a FIFO (named pipe); fxsim reads only regular files"),
    ("not UTF-8", lambda p: p.write_bytes(INT8_GEMM.encode() + b"# caf\xe9\n"),
     f":{INT8_GEMM.count(chr(10)) + 1}: not UTF-8 text (byte 0xe9"),
    ("too large", lambda p: p.write_bytes(b"#" * ((16 << 20) + 1)), "more than the 16777216 bytes allowed"),
    ("missing", lambda p: None, "does not exist"),
    ("a symlink to /dev/zero", lambda p: p.symlink_to("/dev/zero"), "is a device"),
]


@pytest.mark.parametrize("command", ["run", "export", "sweep"])
@pytest.mark.parametrize("name,build,message", SPECS, ids=[c[0] for c in SPECS])
def test_bad_spec_files(tmp_path, capsys, command, name, build, message):
    p = tmp_path / "layer.toml"
    build(p)
    argv = [command, str(p)] + (["--out", str(tmp_path / "o")] if command == "export" else [])
    assert _run(argv) == EXIT_INPUT
    err = capsys.readouterr().err
    assert message in err and "spec file" in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()


def test_dev_zero_is_refused_at_once(capsys):
    assert _run(["run", "/dev/zero"], timeout=30) == EXIT_INPUT
    assert "spec file '/dev/zero' is a device" in capsys.readouterr().err


def _npy(p, arr):
    with open(p, "wb") as fh:
        np.save(fh, arr)


DATA = [
    ("a directory", lambda d: (d / "A").mkdir(), "data.a = 'A': file", "is a directory"),
    ("a FIFO", lambda d: os.mkfifo(d / "A"), "data.a = 'A': file", "is a FIFO"),
    ("a device", lambda d: (d / "A").symlink_to("/dev/zero"), "data.a = 'A': file", "is a device"),
    ("a text file", lambda d: (d / "A").write_text("1 2 3\n"), "data.a = 'A': file", "is not a NumPy .npy or .npz file"),
    ("a truncated npy", lambda d: (d / "A").write_bytes(b"\x93NUMPY\x01\x00"), "data.a = 'A': file",
     "is not a readable NumPy file"),
    ("pickled objects", lambda d: _npy(d / "A", np.array([{"x": 1}], dtype=object)), "data.a = 'A': file",
     "is not a readable NumPy file"),
    ("an npz where an npy is expected", lambda d: np.savez(d / "A.npz", a=np.zeros(2)) or (d / "A.npz").rename(d / "A"),
     "data.a = 'A'", "is a .npz archive; expected a .npy array"),
    ("missing", lambda d: None, "data.a = 'A': file", "does not exist"),
]


@pytest.mark.parametrize("name,build,where,message", DATA, ids=[c[0] for c in DATA])
def test_bad_data_files(tmp_path, capsys, name, build, where, message):
    _npy(tmp_path / "B", np.zeros((4, 2)))
    build(tmp_path)
    (tmp_path / "l.toml").write_text(FILE_SPEC)
    assert _run(["run", str(tmp_path / "l.toml")]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert where in err and message in err and "Traceback" not in err, err


def test_npz_archives(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "l.toml"
    spec.write_text('[data]\nnpz = "d.npz"\n[datapath.accumulator]\nformat = "int20"\n')
    np.savez(tmp_path / "d.npz", a=np.ones((2, 3)), w=np.ones((3, 2)))
    assert _run(["run", str(spec)]) == EXIT_INPUT
    assert "holds ['a', 'w']; it needs arrays a and b" in capsys.readouterr().err
    np.savez(tmp_path / "d.npz", a=np.ones((2, 3)), b=np.ones((3, 2)))
    assert _run(["run", str(spec)]) == EXIT_OK
    capsys.readouterr()
    # an archive that unpacks to more than allowed is refused before it is unpacked
    monkeypatch.setenv("FXSIM_MAX_DATA_BYTES", "1000")
    np.savez_compressed(tmp_path / "d.npz", a=np.zeros((100, 100)), b=np.zeros((100, 100)))
    assert _run(["run", str(spec)]) == EXIT_INPUT
    assert "unpacks to" in capsys.readouterr().err
    (tmp_path / "d.npz").write_bytes(b"PK\x03\x04garbage")
    monkeypatch.delenv("FXSIM_MAX_DATA_BYTES")
    assert _run(["run", str(spec)]) == EXIT_INPUT
    assert "is not a NumPy .npz file" in capsys.readouterr().err


def test_size_limits_apply_before_reading(tmp_path):
    p = tmp_path / "big.npy"
    _npy(p, np.zeros(1000))
    with pytest.raises(BadFile, match="more than the 100 bytes allowed"):
        load_array_file(p, "data.a", limit=100)
    with pytest.raises(BadFile, match="more than the 10 bytes allowed"):
        read_text_file(p, "spec file", limit=10)
    assert np.array_equal(load_array_file(p, "data.a"), np.zeros(1000))
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as zf:
        zf.writestr("a.npy", b"")
    with pytest.raises(BadFile, match="member 'a' of|member 'a' is not a .npy array"):
        load_array_file(tmp_path / "z.npz", "data.npz")


def test_an_unreadable_spec_is_a_clear_error(tmp_path, capsys, monkeypatch):
    p = tmp_path / "layer.toml"
    p.write_text(INT8_GEMM)
    real_open = os.open

    def denied(path, *a, **k):        # as for a user without read permission (the suite may run as root)
        if os.fspath(path) == str(p):
            raise PermissionError(13, "Permission denied", str(p))
        return real_open(path, *a, **k)
    monkeypatch.setattr(os, "open", denied)
    assert _run(["run", str(p)]) == EXIT_INPUT
    assert "spec file" in (err := capsys.readouterr().err) and "cannot be read: permission denied" in err
