"""First-use cost: each case runs in a fresh process with an empty Numba cache (NUMBA_CACHE_DIR pointed
at a new temporary directory), then again with that cache filled (warm), so the difference is Numba's
compilation of what that case uses.

    python benchmarks/bench_cold_start.py [--only TEXT] [--examples]

``--examples`` adds ``fxsim run`` on every shipped example spec; ``--demo`` adds ``fxsim demo`` (``--demo quick``:
``fxsim demo --quick``).
Times are seconds of the whole process (interpreter start and imports included): wall clock, and CPU (user +
system, all threads) -- on a shared machine the CPU seconds are the steadier number; wall clock on an idle
machine with two cores is about CPU / (threads that compile in parallel, usually 1). ``load`` is the
machine's one-minute load average when the cold run starts (what else was running: on two cores, a load
above 2 means the case shared a core).
"""
from __future__ import annotations

import argparse
import glob
import os
import resource
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
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd!r} failed:\n{proc.stderr[-2000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return dt, cpu


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="run only cases whose name contains this text")
    ap.add_argument("--examples", action="store_true", help="also `fxsim run` every shipped example")
    ap.add_argument("--demo", nargs="?", const="full", choices=("full", "quick"), default=None,
                    help="also `fxsim demo` (or `fxsim demo --quick`)")
    args = ap.parse_args(argv)
    cases = [(name, [sys.executable, "-c", code]) for name, code in CASES]
    if args.examples:
        for spec in sorted(glob.glob(os.path.join(ROOT, "fxsim", "examples", "*.toml"))):
            cases.append((f"fxsim run {os.path.basename(spec)}",
                          [sys.executable, "-m", "fxsim.cli.main", "run", spec]))
    if args.demo:
        out = tempfile.mkdtemp(prefix="fxsim-demo-")
        quick = ["--quick"] if args.demo == "quick" else []
        cases.append((" ".join(["fxsim demo"] + quick),
                      [sys.executable, "-m", "fxsim.cli.main", "demo", *quick, "--force", "--out", os.path.join(out, "demo")]))
    print("Seconds of a fresh process: empty Numba cache (cold), then the filled cache (warm); wall / CPU.")
    print(f"{'case':52s} {'cold wall':>9s} {'cold CPU':>9s} {'warm wall':>9s} {'warm CPU':>9s} {'compile CPU':>11s}"
          f" {'load':>5s}")
    for name, cmd in cases:
        if args.only and args.only not in name:
            continue
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="fxsim-numba-cache-") as cache:
            (cw, cc), (ww, wc) = timed(cmd, cache), timed(cmd, cache)
        print(f"{name:52s} {cw:9.1f} {cc:9.1f} {ww:9.1f} {wc:9.1f} {cc - wc:11.1f} {load:5.1f}", flush=True)


if __name__ == "__main__":
    main()
