"""First-use cost: each case runs in a fresh process with an empty Numba cache (NUMBA_CACHE_DIR pointed
at a new temporary directory), then again with that cache filled (warm), so the difference is Numba's
compilation of what that case uses.

    python benchmarks/bench_cold_start.py [--only TEXT] [--examples]

``--examples`` adds ``fxsim run`` on every shipped example spec. Times are wall-clock seconds of the whole
process (interpreter start and imports included), measured on whatever else the machine runs.
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

_FLOAT = """
import numpy as np
from fxsim.datapath import Accumulator, Datapath, Order
from fxsim.engines.floating import float_gemm
from fxsim.formats import E4M3, FP16, FP32, BF16, INT4
from fxsim.quantize import quantize
rng = np.random.default_rng(0)
A = quantize(rng.normal(size=(64, 64)) * 4, E4M3)
B = quantize(rng.normal(size=(64, 64)) * 4, E4M3)
"""

CASES = [
    ("import fxsim", "import fxsim"),
    ("float GEMM, FP32 half even (fp32-vector)",
     _FLOAT + "float_gemm(A, B, Datapath(a=E4M3, b=E4M3, accumulator=Accumulator(FP32, rounding='half_even')))"),
    ("float GEMM, FP16 half even (narrow-vector)",
     _FLOAT + "float_gemm(A, B, Datapath(a=E4M3, b=E4M3, accumulator=Accumulator(FP16, rounding='half_even')))"),
    ("float GEMM, FP16 stochastic (stochastic-vector)",
     _FLOAT + "float_gemm(A, B, Datapath(a=E4M3, b=E4M3, accumulator=Accumulator(FP16, rounding='stochastic', "
              "random_bits=16, seed=1)))"),
    ("float GEMM, FP16 toward zero (general-vector)",
     _FLOAT + "float_gemm(A, B, Datapath(a=E4M3, b=E4M3, accumulator=Accumulator(FP16, rounding='toward_zero')))"),
    ("float GEMM, FP16 half even, tree order",
     _FLOAT + "float_gemm(A, B, Datapath(a=E4M3, b=E4M3, order=Order('tree'), "
              "accumulator=Accumulator(FP16, rounding='half_even')))"),
    ("INT8 GEMM, stats=True",
     "import numpy as np\nfrom fxsim.datapath import Accumulator, Datapath\nfrom fxsim.ops.gemm import gemm\n"
     "A = np.random.default_rng(0).integers(-128, 128, (64, 64))\n"
     "gemm(A, A, Datapath(a='int8', b='int8', accumulator=Accumulator('int32')))"),
]


def timed(cmd, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{cmd!r} failed:\n{proc.stderr[-2000:]}")
    return dt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="run only cases whose name contains this text")
    ap.add_argument("--examples", action="store_true", help="also `fxsim run` every shipped example")
    args = ap.parse_args(argv)
    cases = [(name, [sys.executable, "-c", code]) for name, code in CASES]
    if args.examples:
        for spec in sorted(glob.glob(os.path.join(ROOT, "fxsim", "examples", "*.toml"))):
            cases.append((f"fxsim run {os.path.basename(spec)}",
                          [sys.executable, "-m", "fxsim.cli.main", "run", spec]))
    print("Wall-clock seconds of a fresh process: empty Numba cache (cold), then the filled cache (warm).")
    print(f"{'case':52s} {'cold s':>8s} {'warm s':>8s} {'compile s':>10s}")
    for name, cmd in cases:
        if args.only and args.only not in name:
            continue
        with tempfile.TemporaryDirectory(prefix="fxsim-numba-cache-") as cache:
            cold = timed(cmd, cache)
            warm = timed(cmd, cache)
        print(f"{name:52s} {cold:8.1f} {warm:8.1f} {cold - warm:10.1f}", flush=True)


if __name__ == "__main__":
    main()
