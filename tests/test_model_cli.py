"""The ``fxsim model`` command: info, run (with ONNX Runtime's agreement), sweep, export + verify, and exit
code 2 with a one-line error for bad input."""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest

from fxsim.cli.main import main

from . import onnx_models as om


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    q = om.quantize(om.small_cnn(), fmt="qdq", shape=(1, 1, 8, 8))
    onnx.save(q, d / "m.onnx")
    np.save(d / "x.npy", np.random.default_rng(0).normal(0, 1, (2, 1, 8, 8)).astype(np.float32))
    (d / "hw.toml").write_text('[layers."conv*"]\naccumulator = "int16"\noverflow = "saturate"\n')
    return d


def test_info_and_run(files, tmp_path, capsys):
    assert main(["model", "info", str(files / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "QDQ Conv" in out and "5576 MACs" in out
    rc = main(["model", "run", str(files / "m.onnx"), "--input", str(files / "x.npy"), "--hw", str(files / "hw.toml"),
               "--out", str(tmp_path / "r")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "default lowering vs ONNX Runtime, output 'y': 10 of 10 elements equal" in out
    rows = json.loads((tmp_path / "r" / "layers.json").read_text())
    assert {r["layer"] for r in rows} >= {"conv1", "dwconv", "conv3", "fc"}
    assert np.load(tmp_path / "r" / "outputs.npz")["y"].shape == (2, 5)
    assert main(["model", "run", str(files / "m.onnx"), "--input", str(files / "x.npy"), "--out",
                 str(tmp_path / "r")]) == 2   # exists, no --force


def test_sweep_and_export_verify(files, tmp_path, capsys):
    assert main(["model", "sweep", str(files / "m.onnx"), "--input", str(files / "x.npy"), "--acc-bits", "14:17",
                 "--out", str(tmp_path / "s")]) == 0
    narrow = json.loads((tmp_path / "s" / "narrowest.json").read_text())
    assert set(narrow) == {"conv1", "dwconv", "conv3", "gap", "fc"}
    assert os.path.exists(tmp_path / "s" / "sweep.png")
    assert main(["model", "export", str(files / "m.onnx"), "--input", str(files / "x.npy"), "--hw",
                 str(files / "hw.toml"), "--layers", "*conv*", "--out", str(tmp_path / "g")]) == 0
    top = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert set(top["layers"]) == {"conv1", "dwconv", "conv3"}
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "g")]) == 0
    word = tmp_path / "g" / "conv3" / "out.hex"
    lines = word.read_text().splitlines()
    lines[0] = "ff" if lines[0] != "ff" else "00"
    word.write_text("\n".join(lines) + "\n")
    assert main(["verify", str(tmp_path / "g")]) == 1


def test_bad_input_exits_2(files, tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    assert main(["model", "info", str(bad)]) == 2
    assert "not an ONNX model" in capsys.readouterr().err
    assert main(["model", "run", str(files / "m.onnx"), "--input", str(tmp_path / "none.npy"), "--out",
                 str(tmp_path / "o")]) == 2
    np.save(tmp_path / "wrong.npy", np.zeros((1, 3, 8, 8), np.float32))
    assert main(["model", "run", str(files / "m.onnx"), "--input", str(tmp_path / "wrong.npy"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "shape" in capsys.readouterr().err
    (tmp_path / "hw.toml").write_text('overflow = "clip"\n')
    assert main(["model", "info", str(files / "m.onnx"), "--hw", str(tmp_path / "hw.toml")]) == 2
    assert ":1:" in capsys.readouterr().err


def test_model_sweep_on_dask_equals_serial():
    from distributed import Client, LocalCluster
    from fxsim.model import load_model
    from fxsim.model.report import sweep_model
    m = load_model(om.quantize(om.small_cnn(), fmt="qop", shape=(1, 1, 8, 8)))
    x = {"x": np.random.default_rng(3).normal(0, 1, (2, 1, 8, 8)).astype(np.float32)}
    serial = sweep_model(m, x, [13, 15], workers=1)
    assert any(r["share_equal"] < 1 for r in serial["rows"])
    with LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster):
        assert sweep_model(m, x, [13, 15], scheduler=cluster.scheduler_address) == serial


def test_fxsim_load_model_without_importing_onnx_at_import():
    import subprocess
    import sys
    code = "import sys, fxsim; assert callable(fxsim.load_model); assert 'onnx' not in sys.modules"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


@pytest.mark.parametrize("command, extra", [("run", []), ("sweep", ["--acc-bits", "16:17"])])
def test_force_replaces_only_a_previous_model_output_of_the_same_kind(files, tmp_path, command, extra):
    args = ["model", command, str(files / "m.onnx"), "--input", str(files / "x.npy")] + extra
    out = tmp_path / "o"
    assert main(args + ["--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["fxsim_output"] == f"model-{command}"
    assert main(args + ["--out", str(out), "--force"]) == 0          # its own previous output: replaced
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(args + ["--out", str(other), "--force"]) == 2        # someone else's directory: refused
    assert (other / "notes.txt").read_text() == "keep me"
