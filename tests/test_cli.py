"""The fxsim command: every subcommand, its output and its exit codes."""
import os

import pytest

from fxsim.cli.main import EXIT_INPUT, EXIT_MISMATCH, EXIT_OK, main
from tests.workflow_specs import E4M3_GEMM, INT8_GEMM


@pytest.fixture
def spec(tmp_path):
    p = tmp_path / "layer.toml"
    p.write_text(INT8_GEMM)
    return p


def test_formats_lists_the_presets(capsys):
    assert main(["formats"]) == EXIT_OK
    out = capsys.readouterr().out
    for name in ("int8", "e4m3", "e5m2", "e2m1"):
        assert name in out


def test_run_prints_overflow_counts_and_errors_against_exact_and_float64(spec, capsys):
    assert main(["run", str(spec)]) == EXIT_OK
    out = capsys.readouterr().out
    for key in ("overflow_events", "overflow_mode: saturate", "acc_max_abs_error_vs_exact", "acc_sqnr_db_vs_exact",
                "acc_max_abs_error_vs_float64", "acc_sqnr_db_vs_float64"):
        assert key in out


def test_run_on_a_float_datapath(tmp_path, capsys):
    p = tmp_path / "f.toml"
    p.write_text(E4M3_GEMM)
    assert main(["run", str(p)]) == EXIT_OK
    assert "acc_sqnr_db_vs_exact" in capsys.readouterr().out


def test_export_verify_exit_codes_and_force(spec, tmp_path, capsys):
    out = tmp_path / "golden"
    assert main(["export", str(spec), "--out", str(out), "--trace", "0,0", "--trace", "2,3"]) == EXIT_OK
    assert (out / "trace_0_0.hex").exists() and (out / "trace_2_3.hex").exists()
    before = (out / "acc.hex").read_text()
    assert main(["export", str(spec), "--out", str(out)]) == EXIT_INPUT
    assert "pass --force" in capsys.readouterr().err
    assert (out / "acc.hex").read_text() == before
    assert main(["export", str(spec), "--out", str(out), "--force", "--format", "mif"]) == EXIT_OK
    assert (out / "acc.mif").exists() and not (out / "acc.hex").exists()
    assert main(["verify", str(out)]) == EXIT_OK
    lines = (out / "acc.mif").read_text().splitlines()
    i = next(n for n, line in enumerate(lines) if line.strip().startswith("0 :"))
    lines[i] = "    0 : " + ("0001;" if "0000;" not in lines[i] else "0002;")
    (out / "acc.mif").write_text("\n".join(lines) + "\n")
    assert main(["verify", str(out)]) == EXIT_MISMATCH
    assert "MISMATCH acc.mif: sha256" in capsys.readouterr().out
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


@pytest.mark.parametrize("argv,message", [
    (["run", "missing.toml"], "does not exist"),
    (["export", "SPEC", "--out", "X", "--trace", "1;2"], "--trace must be I,J"),
    (["sweep", "SPEC", "--acc-bits", "40:8"], "--acc-bits must be LO:HI"),
    (["sweep", "SPEC", "--overflow", "explode", "--acc-bits", "12:13"], "explode"),
    (["export", "SPEC", "--out", "X", "--format", "xls"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_exits_2_with_a_message(spec, tmp_path, capsys, argv, message):
    argv = [str(spec) if a == "SPEC" else str(tmp_path / a) if a == "X" else a for a in argv]
    assert main(argv) == EXIT_INPUT
    assert message in capsys.readouterr().err


def test_spec_errors_point_at_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(INT8_GEMM.replace('a = "int8"', 'a = "int99"'))
    assert main(["run", str(bad)]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "bad.toml:14: datapath.a" in err and "int99" in err


def test_help_exits_0(capsys):
    assert main(["--help"]) == EXIT_OK
    assert "sweep" in capsys.readouterr().out


def test_sweep_writes_csv_json_png_and_prints_the_narrowest_width(spec, tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["sweep", str(spec), "--acc-bits", "12:20", "--overflow", "saturate,wrap", "--workers", "1",
                 "--out", str(out)]) == EXIT_OK
    text = capsys.readouterr().out
    assert "narrowest bit-exact accumulator on this data" in text and "analytical bounds (K=20)" in text
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "sweep.csv", "sweep.json", "sweep.png"]
    assert main(["sweep", str(spec), "--acc-bits", "12,14", "--workers", "1", "--out", str(out)]) == EXIT_INPUT
    assert main(["sweep", str(spec), "--acc-bits", "12,14", "--workers", "1", "--out", str(out), "--force"]) == EXIT_OK
    assert len((out / "sweep.csv").read_text().splitlines()) == 1 + 4


def test_batch_norm_run(tmp_path, capsys):
    import glob
    path = glob.glob(os.path.join(os.path.dirname(__file__), os.pardir, "fxsim", "examples", "batch_norm_training.toml"))[0]
    assert main(["run", path]) == EXIT_OK
    assert "y_sqnr_db_vs_float64" in capsys.readouterr().out
    assert main(["export", path, "--out", str(tmp_path / "x")]) == EXIT_INPUT
    assert "not one GEMM" in capsys.readouterr().err
