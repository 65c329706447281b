"""Quantization throughput on 10 million float64 values, against ml_dtypes casts and plain NumPy.

Prints one row per target: fxsim's time and elements/s, and the ratios to ml_dtypes' ``astype`` (where
it has the format; its float64 casts go through float32) and to ``np.clip(np.rint(x * s), lo, hi)``, all
measured in the same run (best of 3, after a warm-up call that includes Numba's compilation).

    python benchmarks/bench_quantize.py [--n 10000000]
"""
import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from fxsim.quantize import quantize  # noqa: E402


def best(fn, repeat=3):
    fn()
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return min(t)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=10_000_000)
    args = p.parse_args()
    n = args.n
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n) * 50
    try:
        import ml_dtypes
    except ImportError:
        ml_dtypes = None
    numpy_t = best(lambda: np.clip(np.rint(x * 16.0), -128, 127))
    cases = [
        ("E4M3, half even, ieee (NaN)", lambda: quantize(x, "e4m3"), "float8_e4m3fn"),
        ("E4M3, half even, saturate", lambda: quantize(x, "e4m3", overflow="saturate"), None),
        ("E5M2, half even", lambda: quantize(x, "e5m2"), "float8_e5m2"),
        ("FP4 [1,3,0], stochastic", lambda: quantize(x, "fp4_e3m0", rounding="stochastic", seed=1), None),
        ("INT8 Q3.4, half even, saturate", lambda: quantize(x, "Q3.4", overflow="saturate"), None),
    ]
    print(f"quantize {n:,} float64 values; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"numpy {np.__version__}")
    print(f"{'target':<34}{'fxsim s':>9}{'Melem/s':>10}{'ml_dtypes s':>13}{'vs ml_dtypes':>14}{'vs numpy clip/rint':>20}")
    for name, fn, md in cases:
        t = best(fn)
        md_t = None
        if md and ml_dtypes is not None:
            dt = getattr(ml_dtypes, md)
            md_t = best(lambda: x.astype(dt))
        ratio = f"{md_t / t:>13.2f}x" if md_t else f"{'-':>14}"
        md_s = f"{md_t:>13.3f}" if md_t else f"{'-':>13}"
        print(f"{name:<34}{t:>9.3f}{n / t / 1e6:>10.1f}{md_s}{ratio}{numpy_t / t:>19.2f}x")
    print("ratios > 1 mean fxsim is faster; numpy clip(rint(x*s)) took "
          f"{numpy_t:.3f} s ({n / numpy_t / 1e6:.0f} Melem/s)")


if __name__ == "__main__":
    main()
