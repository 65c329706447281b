"""Float datapath throughput: E4M3 x E4M3 GEMM (256 x 256 x 256) with FP32 / FP16 accumulators (every
addition rounded half even), with stochastic rounding, and an MXFP8 GEMM of the same size.

Reported: time, GMAC/s, and ratios to NumPy's float64 matmul (no per-add rounding: the speed of light)
and to APyTypes' float matmul under an accumulator context, both measured in the same run.

    python benchmarks/bench_float_gemm.py [--size 256] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from fxsim.datapath import Accumulator, Datapath  # noqa: E402
from fxsim.float_engine import float_gemm  # noqa: E402
from fxsim.formats import E4M3, FP16, FP32  # noqa: E402
from fxsim.mx import MXFP8_E4M3, block_quantize, mx_gemm  # noqa: E402
from fxsim.quantize import quantize  # noqa: E402


def best_of(fn, repeat):
    fn()   # warm-up (Numba compile / caches)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def apytypes_matmul(A, B, acc_exp, acc_man, mode_name):
    try:
        import apytypes as apy
    except ImportError:
        return None
    a = apy.APyFloatArray.from_float(A, exp_bits=4, man_bits=3, bias=7)
    b = apy.APyFloatArray.from_float(B, exp_bits=4, man_bits=3, bias=7)
    mode = getattr(apy.QuantizationMode, mode_name)

    def run():
        with apy.APyFloatAccumulatorContext(exp_bits=acc_exp, man_bits=acc_man, quantization=mode):
            return a @ b
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    n = args.size
    rng = np.random.default_rng(0)
    A = quantize(rng.normal(size=(n, n)) * 4, E4M3)
    B = quantize(rng.normal(size=(n, n)) * 4, E4M3)
    macs = n ** 3

    t_np = best_of(lambda: A @ B, args.repeat)
    cases = [
        ("E4M3 x E4M3, FP32 acc, half even", FP32, "half_even", None, (8, 23, "TIES_EVEN")),
        ("E4M3 x E4M3, FP16 acc, half even", FP16, "half_even", None, (5, 10, "TIES_EVEN")),
        ("E4M3 x E4M3, FP32 acc, stochastic (16 bits)", FP32, "stochastic", 16, (8, 23, "STOCH_WEIGHTED")),
        ("E4M3 x E4M3, FP16 acc, stochastic (16 bits)", FP16, "stochastic", 16, (5, 10, "STOCH_WEIGHTED")),
    ]
    rows = []
    for name, acc, rounding, rbits, apy_cfg in cases:
        dp = Datapath(a=E4M3, b=E4M3, accumulator=Accumulator(acc, rounding=rounding, random_bits=rbits, seed=1))
        t = best_of(lambda: float_gemm(A, B, dp), args.repeat)
        run_apy = apytypes_matmul(A, B, *apy_cfg)
        t_apy = best_of(run_apy, args.repeat) if run_apy is not None else None
        rows.append((name, t, t_apy))
    qa = block_quantize(A, MXFP8_E4M3, axis=1)
    qb = block_quantize(B, MXFP8_E4M3, axis=0)
    acc = Accumulator(FP32, rounding="half_even")
    t_mx = best_of(lambda: mx_gemm(qa, qb, MXFP8_E4M3, accumulator=acc), args.repeat)
    rows.append(("MXFP8 E4M3 (block 32), FP32 acc per block", t_mx, None))

    print(f"float GEMM {n}x{n}x{n} ({macs / 1e6:.1f} M MACs), best of {args.repeat}; "
          f"numpy float64 matmul: {t_np * 1e3:.2f} ms")
    print(f"{'case':48s} {'time ms':>9s} {'GMAC/s':>8s} {'x numpy f64':>12s} {'APyTypes ms':>12s} {'vs APyTypes':>12s}")
    for name, t, t_apy in rows:
        apy_ms = f"{t_apy * 1e3:12.1f}" if t_apy else f"{'n/a':>12s}"
        ratio = f"{t_apy / t:11.2f}x" if t_apy else f"{'n/a':>12s}"
        print(f"{name:48s} {t * 1e3:9.1f} {macs / t / 1e9:8.3f} {t / t_np:11.0f}x {apy_ms} {ratio}")
    print("'x numpy f64' = our time / numpy's (slowdown); 'vs APyTypes' = APyTypes' time / ours (>1: we are faster).")


if __name__ == "__main__":
    main()
