"""Float datapath throughput: E4M3 x E4M3 GEMMs (256^3 and 512^3) with FP32 / FP16 / BF16 accumulators
(every addition rounded), the three orders, stochastic rounding, an exact-sum case, and MXFP8.

Every row is timed against NumPy's float64 matmul of the same shape measured in the same run just before
it ('x f64' = our time / numpy's; lower is better), with 1 and with 2 threads (Numba and BLAS both
limited). The 'path' column is the kernel ``fxsim.engines.floating.choose_float_path`` picked.

    python benchmarks/bench_float_gemm.py [--sizes 256 512] [--threads 1 2] [--repeat 3] [--apytypes]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from fxsim.datapath import Accumulator, Datapath, Order  # noqa: E402
from fxsim.engines.floating import choose_float_path, float_gemm, sum_bound  # noqa: E402
from fxsim.formats import BF16, E4M3, FP16, FP32, INT4  # noqa: E402
from fxsim.engines.block import MXFP8_E4M3, block_quantize, mx_gemm  # noqa: E402
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
    import apytypes as apy
    a = apy.APyFloatArray.from_float(A, exp_bits=4, man_bits=3, bias=7)
    b = apy.APyFloatArray.from_float(B, exp_bits=4, man_bits=3, bias=7)
    mode = getattr(apy.QuantizationMode, mode_name)

    def run():
        with apy.APyFloatAccumulatorContext(exp_bits=acc_exp, man_bits=acc_man, quantization=mode):
            return a @ b
    return run


CASES = [
    # name, accumulator, rounding, random bits, order, operand format, APyTypes (exp, man, mode)
    ("FP32 acc, half even", FP32, "half_even", None, Order(), E4M3, (8, 23, "TIES_EVEN")),
    ("FP32 acc, half even, tree", FP32, "half_even", None, Order("tree"), E4M3, None),
    ("FP32 acc, half even, chunked 4", FP32, "half_even", None, Order("chunked", lanes=4), E4M3, None),
    ("FP16 acc, half even", FP16, "half_even", None, Order(), E4M3, (5, 10, "TIES_EVEN")),
    ("FP16 acc, half even, tree", FP16, "half_even", None, Order("tree"), E4M3, None),
    ("FP16 acc, half even, chunked 4", FP16, "half_even", None, Order("chunked", lanes=4), E4M3, None),
    ("BF16 acc, half even", BF16, "half_even", None, Order(), E4M3, (8, 7, "TIES_EVEN")),
    ("FP16 acc, stochastic (16 bits)", FP16, "stochastic", 16, Order(), E4M3, (5, 10, "STOCH_WEIGHTED")),
    ("FP32 acc, stochastic (16 bits)", FP32, "stochastic", 16, Order(), E4M3, (8, 23, "STOCH_WEIGHTED")),
    ("FP16 acc, toward zero", FP16, "toward_zero", None, Order(), E4M3, None),
    ("INT4 x INT4, FP32 acc, stochastic (exact)", FP32, "stochastic", 16, Order(), INT4, None),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--apytypes", action="store_true", help="also time APyTypes (slow)")
    ap.add_argument("--only", default=None, help="run only cases whose name contains this text")
    args = ap.parse_args(argv)
    print("Times measured on whatever else the machine runs: compare the ratios, not the milliseconds.")
    for n in args.sizes:
        rng = np.random.default_rng(0)
        data = {E4M3: (quantize(rng.normal(size=(n, n)) * 4, E4M3), quantize(rng.normal(size=(n, n)) * 4, E4M3)),
                INT4: (rng.integers(-8, 8, size=(n, n)).astype(np.float64),
                       rng.integers(-8, 8, size=(n, n)).astype(np.float64))}
        for threads in args.threads:
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            with threadpool_limits(threads):
                A, B = data[E4M3]
                print(f"\nGEMM {n}x{n}x{n} ({n ** 3 / 1e6:.1f} M MACs), {threads} thread(s), best of {args.repeat}")
                hdr = f"{'case':44s} {'path':>15s} {'ms':>9s} {'GMAC/s':>8s} {'f64 ms':>8s} {'x f64':>8s}"
                if args.apytypes:
                    hdr += f" {'APy ms':>9s}"
                print(hdr)
                for name, acc, rounding, rbits, order, op, apy_cfg in CASES:
                    if args.only and args.only not in name:
                        continue
                    A, B = data[op]
                    dp = Datapath(a=op, b=op, order=order,
                                  accumulator=Accumulator(acc, rounding=rounding, **(
                                      {"random_bits": rbits, "seed": 1} if rounding == "stochastic" else {})))
                    path = choose_float_path(dp, bound=sum_bound(A, B))
                    t_np = best_of(lambda: A @ B, args.repeat)
                    time.sleep(0.1)
                    t = best_of(lambda: float_gemm(A, B, dp), args.repeat)
                    line = (f"{name:44s} {path:>15s} {t * 1e3:9.1f} {n ** 3 / t / 1e9:8.3f} {t_np * 1e3:8.2f} "
                            f"{t / t_np:7.1f}x")
                    if args.apytypes and apy_cfg is not None:
                        line += f" {best_of(apytypes_matmul(A, B, *apy_cfg), args.repeat) * 1e3:9.1f}"
                    print(line, flush=True)
                if not args.only or "MX" in args.only:
                    A, B = data[E4M3]
                    qa = block_quantize(A, MXFP8_E4M3, axis=1)
                    qb = block_quantize(B, MXFP8_E4M3, axis=0)
                    acc = Accumulator(FP32, rounding="half_even")
                    t_np = best_of(lambda: A @ B, args.repeat)
                    t = best_of(lambda: mx_gemm(qa, qb, MXFP8_E4M3, accumulator=acc), args.repeat)
                    print(f"{'MXFP8 E4M3 (block 32), FP32 acc per block':44s} {'block':>15s} {t * 1e3:9.1f} "
                          f"{n ** 3 / t / 1e9:8.3f} {t_np * 1e3:8.2f} {t / t_np:7.1f}x", flush=True)


if __name__ == "__main__":
    main()
