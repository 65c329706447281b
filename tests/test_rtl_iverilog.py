"""Golden vectors checked by a real simulator: Icarus Verilog runs the reference RTL (fxsim testbench) on
exported vectors and must find zero mismatches, for every output and every cycle of a traced output.

Icarus Verilog is installed from the system package manager when missing; if it cannot be, the test
fails (it is the oracle for exported vectors and is never skipped).
"""
import os
import shutil

import numpy as np
import pytest

from fxsim.rtl.export import export_layer
from fxsim.workflows.spec import parse_spec
from fxsim.rtl.testbench import generate_testbench, run_testbench
from tests.rtl_tools import require_icarus


@pytest.fixture(scope="module")
def iverilog():
    require_icarus()
    return shutil.which("iverilog")


def _run(dirs, tmp_path):
    generate_testbench(dirs, tmp_path / "tb")
    return run_testbench(tmp_path / "tb", "icarus")


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


def test_icarus_verilog_mac_agrees_with_exported_vectors(iverilog, tmp_path):
    """INT8 and INT4 operands, signed and unsigned, saturating and wrapping accumulators of 9, 13, 16 and 18
    bits on data that really overflows; all cases in one simulation."""
    from fxsim.workflows.spec import run_layer
    dirs = []
    for n, (a, b, acc_bits, ovf, M, K, N, std, bias) in enumerate(CASES):
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
        # trace the output with the most overflow events, so the cycle-by-cycle check sees them
        res, _ = run_layer(spec)
        ti, tj = np.unravel_index(int(np.argmax(res.overflow_count)), res.overflow_count.shape)
        assert res.overflow_count.sum() > 0, "this case must really overflow"
        export_layer(spec, tmp_path / f"case{n}", traces=[(int(ti), int(tj))])
        dirs.append(tmp_path / f"case{n}")
    status, mism, result, log = _run(dirs, tmp_path)
    checked = sum(M * N + K + 1 for (_, _, _, _, M, K, N, _, _) in CASES)
    assert status == 0 and result == f"RESULT checked={checked} mismatches=0", log[-3000:]


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
    status, mism, result, log = _run(out, tmp_path)
    assert status == 1 and result.endswith("mismatches=1") and len(mism) == 1 and "tensor=acc index=1 " in mism[0], log


def test_the_shipped_demo_layer_runs_bit_exact_in_verilog(iverilog, tmp_path):
    """uint8 pixels x int8 weights, 16-bit saturating accumulator with the bias preloaded: the layer the
    demo exports, including the one output that saturates."""
    from fxsim.workflows.demo import DEMO_SPEC
    from fxsim.workflows.spec import load_spec, run_layer
    spec = load_spec(DEMO_SPEC)
    res, (A, B, _) = run_layer(spec)
    ti, tj = (int(x) for x in np.unravel_index(int(np.argmax(res.overflow_count)), res.overflow_count.shape))
    assert res.overflow_count[ti, tj] > 0
    out = tmp_path / "golden"
    export_layer(spec, out, traces=[(ti, tj)])
    (M, K), N = A.shape, B.shape[1]
    status, mism, result, log = _run(out, tmp_path)
    # every accumulator, every output register word and every cycle of the traced output
    assert status == 0 and result == f"RESULT checked={2 * M * N + K + 1} mismatches=0", log[-3000:]
    assert sorted(os.listdir(out)) == sorted(["a.hex", "b.hex", "bias.hex", "acc.hex", "out.hex", "layer_pkg.sv",
                                              f"trace_{ti}_{tj}.hex", "manifest.json"])   # nothing left behind
