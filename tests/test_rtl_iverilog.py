"""Golden vectors checked by a real simulator: Icarus Verilog runs examples/rtl/mac_gemm_tb.v on exported
vectors and must find zero mismatches, for every output and every cycle of a traced output.

Icarus Verilog is installed from the system package manager when missing; if it cannot be, the test
fails (it is the oracle for exported vectors and is never skipped).
"""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from fxsim.export import export_layer
from fxsim.spec import parse_spec

RTL = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "rtl")


@pytest.fixture(scope="module")
def iverilog():
    if shutil.which("iverilog") is None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmds = [["apt-get", "install", "-y", "-qq", "iverilog"], ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "iverilog"]]
        for cmd in cmds:
            subprocess.run(cmd, env=env, capture_output=True)
            if shutil.which("iverilog"):
                break
    if shutil.which("iverilog") is None:
        pytest.fail("Icarus Verilog is required for the RTL oracle and could not be installed with apt-get")
    return shutil.which("iverilog")


CASES = [
    # (a, b, acc bits, overflow, M, K, N, std, bias)
    ("int8", "int8", 16, "saturate", 4, 64, 5, 90, True),
    ("int8", "int8", 16, "wrap", 4, 64, 5, 90, False),
    ("int4", "int4", 9, "saturate", 3, 80, 4, 7, True),
    ("int4", "int4", 9, "wrap", 3, 80, 4, 7, False),
    ("int8", "int8", 13, "saturate", 3, 40, 3, 60, True),
    ("int8", "int4", 13, "wrap", 3, 50, 3, 50, False),
    ("int8", "int8", 18, "saturate", 2, 200, 3, 120, True),
    ("int8", "int8", 18, "wrap", 2, 200, 3, 120, False),
    ("uint8", "int8", 16, "saturate", 3, 64, 4, 90, True),
    ("uint4", "int4", 9, "wrap", 3, 80, 4, 7, False),
]


@pytest.mark.parametrize("a,b,acc_bits,ovf,M,K,N,std,bias", CASES)
def test_icarus_verilog_mac_agrees_with_exported_vectors(iverilog, tmp_path, a, b, acc_bits, ovf, M, K, N, std, bias):
    spec = parse_spec(f"""
[layer]
op = "gemm"
[shape]
M = {M}
K = {K}
N = {N}
[data]
seed = {acc_bits * 7 + K}
distribution = "normal"
std = {std}
bias = {'true' if bias else 'false'}
[datapath]
a = "{a}"
b = "{b}"
[datapath.accumulator]
format = "int{acc_bits}"
overflow = "{ovf}"
""")
    out = tmp_path / "golden"
    # trace the output with the most overflow events, so the cycle-by-cycle check sees them
    from fxsim.spec import run_layer
    res, _ = run_layer(spec)
    ti, tj = np.unravel_index(int(np.argmax(res.overflow_count)), res.overflow_count.shape)
    assert res.overflow_count.sum() > 0, "this case must really overflow"
    manifest = export_layer(spec, out, traces=[(int(ti), int(tj))])
    abits, bbits = manifest["files"]["a"]["bits"], manifest["files"]["b"]["bits"]
    proc = subprocess.run(["bash", os.path.join(RTL, "run.sh"), str(out), str(M), str(K), str(N), str(abits),
                           str(bbits), str(acc_bits), "1" if ovf == "saturate" else "0", "1" if bias else "0",
                           str(ti), str(tj), str(int(spec.datapath.a.signed)), str(int(spec.datapath.b.signed))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"RESULT checked=(\d+) mismatches=(\d+) trace_mismatches=(\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    assert int(m.group(1)) == M * N
    assert int(m.group(2)) == 0 and int(m.group(3)) == 0, proc.stdout


def test_the_testbench_catches_a_corrupted_golden_word(iverilog, tmp_path):
    spec = parse_spec("""
[shape]
M = 2
K = 8
N = 2
[datapath.accumulator]
format = "int12"
overflow = "saturate"
""")
    out = tmp_path / "g"
    export_layer(spec, out, traces=[(0, 0)])
    lines = (out / "acc.hex").read_text().split()
    lines[1] = format((int(lines[1], 16) + 1) % 4096, "03x")
    (out / "acc.hex").write_text("\n".join(lines) + "\n")
    proc = subprocess.run(["bash", os.path.join(RTL, "run.sh"), str(out), "2", "8", "2", "8", "8", "12", "1", "0",
                           "0", "0"], capture_output=True, text=True, timeout=300)
    assert "mismatches=1 " in proc.stdout, proc.stdout


def test_the_shipped_demo_layer_runs_bit_exact_in_verilog(iverilog, tmp_path):
    """uint8 pixels x int8 weights, 16-bit saturating accumulator with the bias preloaded: the layer the
    demo exports, including the one output that saturates."""
    from fxsim.demo import DEMO_SPEC
    from fxsim.spec import load_spec, run_layer
    spec = load_spec(DEMO_SPEC)
    res, (A, B, _) = run_layer(spec)
    ti, tj = (int(x) for x in np.unravel_index(int(np.argmax(res.overflow_count)), res.overflow_count.shape))
    assert res.overflow_count[ti, tj] > 0
    out = tmp_path / "golden"
    export_layer(spec, out, traces=[(ti, tj)])
    (M, K), N = A.shape, B.shape[1]
    proc = subprocess.run(["bash", os.path.join(RTL, "run.sh"), str(out), str(M), str(K), str(N), "8", "8", "16",
                           "1", "1", str(ti), str(tj), "0", "1"], capture_output=True, text=True, timeout=300)
    assert f"RESULT checked={M * N} mismatches=0 trace_mismatches=0" in proc.stdout, proc.stdout + proc.stderr
    assert sorted(os.listdir(out)) == sorted(["a.hex", "b.hex", "bias.hex", "acc.hex", "out.hex",
                                              f"trace_{ti}_{tj}.hex", "manifest.json"])   # nothing left behind
