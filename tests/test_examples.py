"""The examples ship inside the package and `fxsim examples DIR` writes them out; a wheel built from this
tree carries them, the reference Verilog and the kernels (as fxsim._kernels, no top-level kernels)."""
import os
import shutil
import stat
import subprocess
import sys
import zipfile

import pytest

from fxsim.cli.main import main
from fxsim.errors import OutputExists
from fxsim.workflows.examples import EXAMPLES, example_files, write_examples

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_examples_live_in_the_package_and_nothing_is_left_at_the_top():
    assert os.path.dirname(EXAMPLES) == os.path.join(ROOT, "fxsim")
    assert not os.path.exists(os.path.join(ROOT, "examples"))
    files = example_files()
    assert "rtl/run.sh" in files and "cocotb/test_fxsim_core.py" in files and "cocotb/run.py" in files
    assert "int8_gemm_saturating.toml" in files and sum(f.endswith(".toml") for f in files) >= 8


def test_write_examples_copies_every_file_byte_for_byte_and_keeps_run_sh_executable(tmp_path):
    out = tmp_path / "ex"
    written = write_examples(out)
    assert written == example_files()
    for rel in written:
        a = open(os.path.join(EXAMPLES, *rel.split("/")), "rb").read()
        assert open(out / rel, "rb").read() == a, rel
    assert os.stat(out / "rtl" / "run.sh").st_mode & stat.S_IXUSR
    listed = sorted(os.path.relpath(os.path.join(r, f), out).replace(os.sep, "/")
                    for r, _, fs in os.walk(out) for f in fs)
    assert listed == sorted(written + ["manifest.json"])


def test_existing_output_is_refused_without_force_and_only_an_examples_output_is_replaced(tmp_path):
    out = tmp_path / "ex"
    write_examples(out)
    with pytest.raises(OutputExists, match="exists"):
        write_examples(out)
    (out / "int8_gemm_saturating.toml").write_text("# edited\n")
    write_examples(out, force=True)                  # a previous examples output: replaced
    assert (out / "int8_gemm_saturating.toml").read_text() != "# edited\n"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExists, match="not a previous fxsim examples output"):
        write_examples(mine, force=True)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_fxsim_examples_command(tmp_path, capsys):
    out = tmp_path / "ex"
    assert main(["examples", str(out)]) == 0
    assert "rtl/run.sh" in capsys.readouterr().out
    assert main(["examples", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["examples", str(out), "--force"]) == 0
    assert main(["run", str(out / "int8_gemm_saturating.toml"), "--json"]) == 0


@pytest.mark.slow     # builds a wheel in an isolated environment (about 10 s; setuptools comes from the index)
def test_a_wheel_built_from_this_tree_carries_examples_verilog_and_kernels(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "build", "dist", "__pycache__", "*.egg-info",
                                                             ".hypothesis", ".pytest_cache", ".venv"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-w", str(tmp_path / "w"),
                           "-q"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = os.listdir(tmp_path / "w")
    names = set(zipfile.ZipFile(tmp_path / "w" / wheel).namelist())
    for rel in example_files():
        assert f"fxsim/examples/{rel}" in names, rel
    for f in os.listdir(os.path.join(ROOT, "fxsim", "rtl", "verilog")):
        assert f"fxsim/rtl/verilog/{f}" in names, f
    kernels = {f for f in os.listdir(os.path.join(ROOT, "kernels")) if f.endswith(".py")}
    assert kernels and {f"fxsim/_kernels/{f}" for f in kernels} <= names
    assert not any(n.startswith("kernels/") for n in names)
    assert "fxsim/data/digits_fc.toml" in names and "fxsim/workflows/spec_keys.py" in names
