"""Layer specs, golden-vector files, the fxsim command and sweeps."""
import json
import os

import numpy as np
import pytest

from fxsim.cli import main
from fxsim.export import export_layer, parse, read_words, render, to_words, verify_dir
from fxsim.spec import SpecError, parse_spec, run_layer
from fxsim.sweep import run_sweep, sweep_configs

SPEC = """
[layer]
op = "gemm"
[shape]
M = 3
K = 20
N = 4
[data]
seed = 5
distribution = "normal"
std = 60
bias = true
[datapath]
a = "int8"
b = "int8"
[datapath.accumulator]
format = "int14"
overflow = "saturate"
[output]
format = "int8"
[output.requant]
kind = "dyadic"
multiplier = 3
shift = 7
"""


def test_spec_errors_name_key_value_allowed_and_line():
    bad = SPEC.replace('overflow = "saturate"', 'overflow = "clampy"')
    with pytest.raises(SpecError, match=r"<spec>:18: datapath.accumulator.overflow: overflow must be .*got 'clampy'"):
        parse_spec(bad)
    with pytest.raises(SpecError, match=r"layer.op = 'matmul' is not allowed; expected one of \('gemm', 'conv2d'\)"):
        parse_spec(SPEC.replace('op = "gemm"', 'op = "matmul"'))
    with pytest.raises(SpecError, match=r"shape.K = -3 is not allowed; expected a positive integer"):
        parse_spec(SPEC.replace("K = 20", "K = -3"))
    with pytest.raises(SpecError, match="not valid TOML"):
        parse_spec("[layer\nop=1")


@pytest.mark.parametrize("fmt", ["hex", "coe", "mif", "bin", "npy"])
def test_every_file_format_round_trips_and_verifies(tmp_path, fmt):
    spec = parse_spec(SPEC)
    out = tmp_path / fmt
    manifest = export_layer(spec, out, file_format=fmt, traces=[(1, 2)])
    for entry in manifest["files"].values():
        assert (out / entry["file"]).exists()
    res, (A, B, bias) = run_layer(spec, trace=[(1, 2)])
    assert np.array_equal(read_words(str(out), manifest["files"]["acc"]), res.acc)
    assert np.array_equal(read_words(str(out), manifest["files"]["trace_1_2"]), res.traces[(1, 2)])
    assert verify_dir(str(out)) == []


def test_hex_words_are_twos_complement_zero_padded():
    words = to_words(np.array([-1, 5, -4096]), 13)
    assert render(words, 13, "hex").decode().split() == ["1fff", "0005", "1000"]
    coe = render(words, 13, "coe").decode()
    assert coe.startswith("memory_initialization_radix=16;\nmemory_initialization_vector=\n")
    assert coe.rstrip().endswith("1000;")
    mif = render(words, 13, "mif").decode()
    assert "DEPTH = 3;" in mif and "WIDTH = 13;" in mif and "2 : 1000;" in mif and mif.rstrip().endswith("END;")
    for f in ("hex", "coe", "mif", "bin"):
        assert np.array_equal(parse(render(words, 13, f), 13, f, 3), words)


def test_verify_reports_tampering_and_checksums(tmp_path):
    out = tmp_path / "g"
    export_layer(parse_spec(SPEC), out)
    (out / "out.hex").write_text((out / "out.hex").read_text().replace("0", "1", 1))
    assert any("sha256" in p for p in verify_dir(str(out)))
    # a consistent-looking manifest whose data no longer matches the recomputation
    m = json.loads((out / "manifest.json").read_text())
    import hashlib
    m["files"]["out"]["sha256"] = hashlib.sha256((out / "out.hex").read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(m))
    probs = verify_dir(str(out))
    assert probs and "differ from the recomputation" in probs[0]
    assert main(["verify", str(out)]) == 1


def test_cli_exit_codes_atomic_output_and_force(tmp_path, capsys):
    spec = tmp_path / "layer.toml"
    spec.write_text(SPEC)
    out = tmp_path / "golden"
    assert main(["export", str(spec), "--out", str(out), "--trace", "0,0"]) == 0
    before = (out / "acc.hex").read_text()
    assert main(["export", str(spec), "--out", str(out)]) == 2          # exists, no --force: untouched
    assert "pass --force" in capsys.readouterr().err
    assert (out / "trace_0_0.hex").exists() and (out / "acc.hex").read_text() == before
    assert main(["export", str(spec), "--out", str(out), "--force", "--format", "mif"]) == 0
    assert (out / "acc.mif").exists() and not (out / "acc.hex").exists()
    assert main(["verify", str(out)]) == 0
    assert main(["run", str(spec)]) == 0
    assert "acc_sqnr_db_vs_float64" in capsys.readouterr().out
    assert main(["formats"]) == 0
    assert "e4m3" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC.replace('a = "int8"', 'a = "int99"'))
    assert main(["run", str(bad)]) == 2
    assert "layer.toml" not in (err := capsys.readouterr().err) and "bad.toml:14: datapath.a" in err and "int99" in err
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]   # no temporary directories left


def test_sweep_finds_the_narrowest_exact_accumulator_and_matches_bounds(tmp_path):
    spec = parse_spec(SPEC.replace("bias = true", "bias = false"))
    res = run_sweep(spec, sweep_configs(range(10, 22), ("saturate", "wrap")), workers=1, progress=False)
    sim, _ = run_layer(spec)
    need = int(sim.bits_needed.max())
    assert res["narrowest_exact"]["sequential/saturate"] <= need
    sat_rows = {r["acc_bits"]: r for r in res["rows"] if r["overflow"] == "saturate"}
    assert sat_rows[need]["overflow_events"] == 0 and sat_rows[need]["share_differing"] == 0
    assert sat_rows[need - 1]["overflow_events"] > 0
    assert res["bounds"]["worst_case_bits"] >= res["bounds"]["data_dependent_bits"] >= need


def test_sweep_in_processes_and_on_a_local_dask_cluster_equals_serial():
    from distributed import LocalCluster
    spec = parse_spec(SPEC)
    configs = sweep_configs(range(12, 17), ("saturate", "wrap"), ("sequential", "chunked"), lanes=3)
    serial = run_sweep(spec, configs, workers=1, progress=False)
    pooled = run_sweep(spec, configs, workers=2, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        dask = run_sweep(spec, configs, scheduler=cluster.scheduler_address, progress=False)
    assert json.dumps(serial, sort_keys=True, default=str) == json.dumps(pooled, sort_keys=True, default=str)
    assert json.dumps(serial, sort_keys=True, default=str) == json.dumps(dask, sort_keys=True, default=str)


def test_demo_writes_every_artifact(tmp_path):
    from fxsim.demo import run_demo
    report = run_demo(tmp_path / "demo", quick=True)
    for f in ("sweep.csv", "sweep.json", "sweep.png", "report.json", "golden/manifest.json", "golden/trace_0_0.hex"):
        assert (tmp_path / "demo" / f).exists(), f
    assert report["sweep"]["narrowest_exact"]
    assert verify_dir(str(tmp_path / "demo" / "golden")) == []
