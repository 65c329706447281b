"""Accumulator sweeps: the narrowest exact width, the bounds beside it, files written, and identical
results serially, in a local process pool and on a real Dask cluster on loopback."""
import csv
import json

import numpy as np
import pytest

from fxsim.bounds import data_bits, worst_case_bits
from fxsim.rtl.export import verify_dir
from fxsim.formats import Fixed
from fxsim.workflows.spec import parse_spec, run_layer
from fxsim.workflows.sweep import format_table, run_sweep, sweep_configs, write_sweep
from tests.workflow_specs import E4M3_GEMM, INT8_GEMM


def test_sweep_finds_the_narrowest_exact_accumulator_and_the_bounds(tmp_path):
    spec = parse_spec(INT8_GEMM.replace("bias = true", "bias = false"))
    res = run_sweep(spec, sweep_configs(range(10, 22), ("saturate", "wrap")), workers=1, progress=False)
    sim, (A, B, _) = run_layer(spec)
    need = int(sim.bits_needed.max())          # from the exact partial sums of this data
    assert res["narrowest_exact"]["sequential/saturate"] <= need
    sat = {r["acc_bits"]: r for r in res["rows"] if r["overflow"] == "saturate"}
    assert sat[need]["overflow_events"] == 0 and sat[need]["share_differing"] == 0 and sat[need]["sqnr_db"] == float("inf")
    assert sat[need - 1]["overflow_events"] > 0
    assert all(sat[b]["share_differing"] == 0 for b in range(need, 22))
    b = res["bounds"]
    assert b["worst_case_bits"] == worst_case_bits(Fixed(8), Fixed(8), 20) == 20   # 20 * 2**14 < 2**19
    assert b["data_dependent_bits"] == int(data_bits(B.astype(np.int64), Fixed(8)).max())
    assert b["worst_case_bits"] >= b["data_dependent_bits"] >= need
    write_sweep(res, str(tmp_path))
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert len(rows) == 24 and {"acc_bits", "overflow", "share_differing", "overflow_events", "max_abs_error",
                                "sqnr_db"} <= set(rows[0])
    assert json.loads((tmp_path / "sweep.json").read_text())["narrowest_exact"] == res["narrowest_exact"]
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "narrowest bit-exact accumulator" in format_table(res)


def test_sweep_rejects_what_it_cannot_sweep():
    with pytest.raises(ValueError, match="Fixed accumulator"):
        run_sweep(parse_spec(E4M3_GEMM), sweep_configs([12]), workers=1, progress=False)
    with pytest.raises(ValueError, match="overflow"):
        sweep_configs([12], ("explode",))
    with pytest.raises(ValueError, match="order must be one of"):
        sweep_configs([12], orders=("zigzag",))
    with pytest.raises(ValueError, match="2..62"):
        sweep_configs([70])


@pytest.mark.slow     # starts worker processes and a local Dask cluster (about 30 s)
def test_sweep_in_processes_and_on_a_local_dask_cluster_equals_serial():
    from distributed import LocalCluster
    spec = parse_spec(INT8_GEMM)
    configs = sweep_configs(range(12, 17), ("saturate", "wrap"), ("sequential", "chunked"), lanes=3)
    serial = run_sweep(spec, configs, workers=1, progress=False)
    pooled = run_sweep(spec, configs, workers=2, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        dask = run_sweep(spec, configs, scheduler=cluster.scheduler_address, progress=False)
    key = lambda r: json.dumps(r, sort_keys=True, default=str)   # noqa: E731
    assert key(serial) == key(pooled) == key(dask)
    assert len({r["share_differing"] for r in serial["rows"]}) > 1    # the widths really differ


@pytest.mark.slow     # the whole demo, training included (about 50 s)
def test_demo_writes_every_artifact(tmp_path):
    from fxsim.workflows.demo import run_demo
    report = run_demo(tmp_path / "demo", quick=True)
    for f in ("sweep.csv", "sweep.json", "sweep.png", "report.json", "golden/manifest.json", "golden/acc.hex"):
        assert (tmp_path / "demo" / f).exists(), f
    assert report["sweep"]["narrowest_exact"]
    assert verify_dir(str(tmp_path / "demo" / "golden")) == []
    # the shipped layer saturates once in its int16 accumulator, and the demo traces that output
    assert report["layer"]["acc_overflow_events"] >= 1
    manifest = json.loads((tmp_path / "demo" / "golden" / "manifest.json").read_text())
    assert any(k.startswith("trace_") for k in manifest["files"])
    text = (tmp_path / "demo" / "report.json").read_text()
    assert ".tmp-" not in text                       # paths name the final directory
    if "training" in report:
        assert (tmp_path / "demo" / "training" / "loss.png").exists()
    with pytest.raises(FileExistsError):
        run_demo(tmp_path / "demo", quick=True)


def test_narrowest_exact_needs_every_wider_width_exact():
    from fxsim.workflows.sweep import narrowest_exact
    rows = [{"order": "sequential", "overflow": "wrap", "acc_bits": b, "share_differing": d}
            for b, d in ((14, 0.0), (15, 0.5), (16, 0.0), (17, 0.0))]      # exact at 14 by luck of the wrap
    rows += [{"order": "sequential", "overflow": "saturate", "acc_bits": b, "share_differing": 0.1} for b in (16, 17)]
    assert narrowest_exact(rows) == {"sequential/wrap": 16}


def test_rows_without_an_output_stage_compare_the_register_with_plain_python_sums():
    """No output stage: the accumulator columns equal the output columns, and both equal a comparison of
    the simulated registers with exact sums from Python integers."""
    from fxsim.ops.gemm import gemm
    from fxsim.workflows.metrics import compare
    from fxsim.workflows.sweep import _config_datapath
    spec = parse_spec(INT8_GEMM.replace("bias = true", "bias = false").split("[output]")[0])
    assert spec.datapath.output.fmt is None and spec.datapath.output.requant is None
    configs = sweep_configs(range(12, 20), ("saturate", "wrap"))
    res = run_sweep(spec, configs, workers=1, progress=False)
    _, (A, B, _) = run_layer(spec)
    ai, bt = np.rint(A).astype(int).tolist(), np.rint(B).astype(int).T.tolist()
    exact = np.array([[sum(x * w for x, w in zip(r, c)) for c in bt] for r in ai], dtype=float)
    for c, row in zip(configs, res["rows"]):
        acc = gemm(A, B, _config_datapath(spec.datapath, c)).acc_values
        share, maxerr, sqnr = compare(exact, acc)
        assert (row["acc_share_differing"], row["acc_max_abs_error"], row["acc_sqnr_db"]) == (share, maxerr, sqnr)
        assert (row["share_differing"], row["max_abs_error"], row["sqnr_db"]) == (share, maxerr, sqnr)
    assert any(r["acc_share_differing"] > 0 for r in res["rows"])
