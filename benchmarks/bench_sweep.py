"""Accumulator-width sweep: one pass over the products against one cycle-accurate GEMM.

A sweep of 24 widths (8..31 bits) x {wrap, saturate} x {sequential, chunked over 4 lanes} on an INT8 GEMM
(default 256 x 2048 x 256), timed three ways in the same run:

- ``gemm(..., stats=True)`` once, with the layer's 32-bit wrapping accumulator (the yardstick);
- the one-pass engine alone (``fxsim.workflows.sweep_onepass.gemm_widths``: every configuration's registers,
  overflow counts, exact sums and bits needed);
- the whole ``run_sweep`` (engine, output stages, errors against the exact reference, bounds).

With ``--per-width`` it also times the per-width simulation of every configuration (serially, slow) and
checks that its results are bit-identical to the one-pass ones. Target (issue 13): the whole sweep within
3x of the one GEMM.

    python benchmarks/bench_sweep.py [--m 256] [--k 2048] [--n 256] [--repeat 3] [--per-width]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from fxsim.ops.gemm import gemm  # noqa: E402
from fxsim.workflows.spec import make_data, parse_spec  # noqa: E402
from fxsim.workflows.sweep import _config_datapath, run_sweep, sweep_configs  # noqa: E402
from fxsim.workflows.sweep_onepass import gemm_widths  # noqa: E402

SPEC = """
[shape]
M = {m}
K = {k}
N = {n}
[data]
seed = 1
distribution = "normal"
std = 40
[datapath.accumulator]
format = "int32"
overflow = "wrap"
"""


def best(fn, repeat):
    t = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        t.append(time.perf_counter() - t0)
    return min(t), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=256)
    ap.add_argument("--k", type=int, default=2048)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--per-width", action="store_true", help="also time per-width simulation and compare")
    args = ap.parse_args()
    spec = parse_spec(SPEC.format(m=args.m, k=args.k, n=args.n))
    A, B, bias = make_data(spec)
    configs = sweep_configs(range(8, 32), ("wrap", "saturate"), ("sequential", "chunked"), lanes=4)
    dps = [_config_datapath(spec.datapath, c) for c in configs]
    # warm-up: Numba compiles (or loads its cache) outside the timings
    gemm(A[:4], B, spec.datapath, stats=True)
    gemm_widths(A[:4], B, dps)
    run_sweep(parse_spec(SPEC.format(m=4, k=args.k, n=args.n)), configs, progress=False)

    t_gemm, _ = best(lambda: gemm(A, B, spec.datapath, stats=True), args.repeat)
    t_engine, res = best(lambda: gemm_widths(A, B, dps), args.repeat)
    info = {}
    t_sweep, sw = best(lambda: run_sweep(spec, configs, progress=False, info=info), args.repeat)
    assert info["engine"] == "one-pass"
    macs = args.m * args.k * args.n
    print(f"INT8 GEMM {args.m}x{args.k}x{args.n}, sweep of {len(configs)} configurations "
          "(24 widths x wrap/saturate x sequential/chunked(4 lanes)), best of", args.repeat)
    print(f"{'what':<44}{'time (s)':>10}{'x one gemm':>12}")
    print(f"{'gemm(stats=True), int32 wrap':<44}{t_gemm:>10.3f}{1.0:>12.2f}   ({macs / t_gemm / 1e9:.2f} GMAC/s)")
    print(f"{'one-pass engine (gemm_widths)':<44}{t_engine:>10.3f}{t_engine / t_gemm:>12.2f}")
    print(f"{'run_sweep (one pass, rows, bounds)':<44}{t_sweep:>10.3f}{t_sweep / t_gemm:>12.2f}   (target <= 3)")
    if args.per_width:
        t0 = time.perf_counter()
        for dp, r in zip(dps, res):
            g = gemm(A, B, dp, stats=True)
            for f in ("acc", "overflow_count", "exact", "bits_needed", "codes"):
                if not np.array_equal(getattr(g, f), getattr(r, f)):
                    raise SystemExit(f"MISMATCH in {f} for {dp.accumulator} {dp.order}")
        t_pw = time.perf_counter() - t0
        print(f"{'per-width gemm(stats=True) x ' + str(len(dps)):<44}{t_pw:>10.3f}{t_pw / t_gemm:>12.2f}   "
              f"(one pass {t_pw / t_engine:.1f}x faster, bit-identical)")


if __name__ == "__main__":
    main()
