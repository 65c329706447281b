"""Workflow throughput: an accumulator sweep simulated per width serially, in a local process pool and on
a local Dask cluster, and answered by the one-pass engine (same configurations, results checked
identical), and golden-vector export/verify. (benchmarks/bench_sweep.py times the one-pass sweep of a
large layer against one GEMM.)

Reported: wall time and the speed-up over the serial sweep measured in the same run; for export, the
time to write the `hex` words against NumPy's ``savetxt`` writing the same words (the reference writer).

    python benchmarks/bench_workflows.py [--size 64] [--k 256] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from fxsim.rtl.export import export_layer, render, to_words, verify_dir  # noqa: E402
from fxsim.workflows.spec import parse_spec  # noqa: E402
from fxsim.workflows.sweep import run_sweep, sweep_configs  # noqa: E402

SPEC = """
[shape]
M = {m}
K = {k}
N = {m}
[data]
seed = 1
distribution = "normal"
std = 60
[datapath.accumulator]
format = "int24"
overflow = "saturate"
"""


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    spec = parse_spec(SPEC.format(m=args.size, k=args.k))
    configs = sweep_configs(range(14, 26), ("saturate", "wrap"), ("sequential", "chunked"))
    per_width = dict(progress=False, engine="per-width")
    run_sweep(spec, configs[:2], workers=1, **per_width)            # warm-up: Numba caches
    run_sweep(spec, configs, progress=False)
    rows = []
    t_serial, serial = timed(lambda: run_sweep(spec, configs, workers=1, **per_width))
    rows.append(("sweep, serial", t_serial, 1.0))
    t_one, one = timed(lambda: run_sweep(spec, configs, progress=False))
    rows.append(("sweep, one pass", t_one, t_serial / t_one))
    t_pool, pooled = timed(lambda: run_sweep(spec, configs, workers=args.workers, **per_width))
    rows.append((f"sweep, {args.workers} processes", t_pool, t_serial / t_pool))
    from distributed import LocalCluster
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        run_sweep(spec, configs[:2], scheduler=cluster.scheduler_address, **per_width)   # warm workers
        t_dask, dask = timed(lambda: run_sweep(spec, configs, scheduler=cluster.scheduler_address, **per_width))
    rows.append((f"sweep, Dask {args.workers} workers", t_dask, t_serial / t_dask))
    key = lambda r: json.dumps(r, default=str)   # noqa: E731
    same = key(serial) == key(pooled) == key(dask) == key(one)
    print(f"Sweep of {len(configs)} configurations, {args.size}x{args.k}x{args.size} INT8 GEMM "
          f"(results identical: {same})")
    print(f"{'run':<28}{'seconds':>10}{'speed-up':>10}")
    for name, t, r in rows:
        print(f"{name:<28}{t:>10.2f}{r:>10.2f}")

    words = to_words(np.random.default_rng(0).integers(-2 ** 23, 2 ** 23, size=1_000_000), 24)
    with tempfile.TemporaryDirectory() as d:
        t_ours, _ = timed(lambda: open(os.path.join(d, "a.hex"), "wb").write(render(words, 24, "hex")))
        t_ref, _ = timed(lambda: np.savetxt(os.path.join(d, "b.hex"), words, fmt="%06x"))
        assert open(os.path.join(d, "a.hex")).read() == open(os.path.join(d, "b.hex")).read()
        export_layer(spec, os.path.join(d, "warm"), traces=[(0, 0)])   # warm-up: compiled kernels
        t_exp, _ = timed(lambda: export_layer(spec, os.path.join(d, "g"), traces=[(0, 0)]))
        t_ver, problems = timed(lambda: verify_dir(os.path.join(d, "g")))
        assert problems == []
    print(f"\n{'golden vectors':<28}{'seconds':>10}{'vs savetxt':>12}")
    print(f"{'hex, 1e6 words of 24 bits':<28}{t_ours:>10.3f}{t_ref / t_ours:>12.2f}")
    print(f"{'export (simulate + write)':<28}{t_exp:>10.3f}")
    print(f"{'verify (checksum + resim)':<28}{t_ver:>10.3f}")


if __name__ == "__main__":
    main()
