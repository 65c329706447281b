"""Quantization throughput on 10 million float64 values, against ml_dtypes casts and plain NumPy.

Prints one row per target: fxsim's time and elements/s, and the ratios to ml_dtypes' ``astype`` (where
it has the format; its float64 casts go through float32) and to ``np.clip(np.rint(x * s), lo, hi)``, all
measured in the same run (best of 3, after a warm-up call that includes Numba's compilation). A second table measures the bias of
stochastic rounding with r random bits against its model.

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
    print()
    stochastic_bias()


def stochastic_bias(n=1_000_000):
    """Measured bias of stochastic rounding with r random bits, in units of one grid step.

    (a) E4M3 at x = 1.03 (step 1/8, discarded fraction f = 0.24): the r-bit rounder rounds up with
    probability floor(f * 2**r) / 2**r, so the model bias is that minus f. (b) x uniform in [1, 2): the
    bias averaged over every discarded fraction, E[floor(f * 2**r) / 2**r - f] = -2**-(r+1) steps.
    """
    step = 0.125
    x = np.full(n, 1.03)
    f = (1.03 - 1.0) / step
    u = np.random.default_rng(1).uniform(1.0, 2.0, n)
    exact_u = u.mean()
    print(f"stochastic rounding bias to E4M3 (step {step}), {n:,} draws; bias in steps "
          f"(1-sigma sampling error {np.sqrt(f * (1 - f) / n):.5f} at 1.03, "
          f"about {np.sqrt(1 / 6 / n):.5f} uniform)")
    print(f"{'random_bits':>11}{'at 1.03 measured':>18}{'model':>10}{'uniform [1,2) measured':>24}{'model':>10}")
    for r in (1, 2, 3, 4, 6, 8, 12, 16, 62):
        q = quantize(x, "e4m3", rounding="stochastic", seed=7, random_bits=r)
        model = np.floor(f * 2.0 ** r) / 2.0 ** r - f
        qu = quantize(u, "e4m3", rounding="stochastic", seed=8, random_bits=r)
        model_u = -2.0 ** -(r + 1)
        print(f"{r:>11}{(q.mean() - 1.03) / step:>18.5f}{model:>10.5f}"
              f"{(qu.mean() - exact_u) / step:>24.5f}{model_u:>10.5f}")


if __name__ == "__main__":
    main()
