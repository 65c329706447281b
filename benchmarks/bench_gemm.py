"""Integer GEMM / conv throughput: fxsim's bit-exact engine vs numpy float64 matmul (the BLAS limit) and
APyTypes' fixed-point matmul under an accumulator context, measured in the same run.

    python benchmarks/bench_gemm.py [--quick] [--threads 1]

Every fxsim row runs with stats=False (the exact shortcuts of fxsim.engines.integer) unless it says
"+ stats": those also return per-output overflow counts and partial-sum maxima. Times are the best of 25
runs after a warm-up (5 for the "+ stats" rows); 'x f64 BLAS' = our time / numpy's float64 matmul time
of the same shape, measured just before each row in the same run and with the same thread count
(--threads, default 1: Numba's and BLAS's); lower is better. 'path' = the engine's path
(``result.path``); 'vs APyTypes' = APyTypes' time / ours (higher: fxsim faster). Rows with a target
print it and whether it is met.
"""
import argparse
import os
import sys
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from fxsim.datapath import Accumulator, Datapath, Order  # noqa: E402
from fxsim.ops.conv import conv2d, unfold  # noqa: E402
from fxsim.ops.gemm import gemm  # noqa: E402

try:
    import apytypes as apy
except ImportError:   # optional comparison
    apy = None


def paired(f, ref, repeat):
    """Best times of f and of the reference ref, measured back to back so both see the same machine state
    (a 2-core virtual machine drifts by 10-30% between minutes). A pause separates them: OpenBLAS's
    threads keep spinning for a while after a call and would slow whatever runs next."""
    t_ref, _ = best_of(ref, repeat)
    time.sleep(0.2)
    t, out = best_of(f, repeat)
    return t, t_ref, out


def best_of(f, repeat):
    f()   # warm-up (Numba compile, caches)
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t)
    return min(ts), out


def apy_matmul(A, B, bits, overflow):
    a = apy.APyFixedArray.from_float(A, int_bits=8, frac_bits=0)
    b = apy.APyFixedArray.from_float(B, int_bits=8, frac_bits=0)
    mode = apy.OverflowMode.WRAP if overflow == "wrap" else apy.OverflowMode.SAT

    def run():
        with apy.APyFixedAccumulatorContext(int_bits=bits, frac_bits=0, overflow=mode):
            return a @ b
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller shapes, one repeat")
    ap.add_argument("--threads", type=int, default=1, help="Numba and BLAS threads (default 1)")
    args = ap.parse_args()
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    with threadpool_limits(limits=args.threads, user_api="blas"):
        run(args)


def run(args):
    n = 128 if args.quick else 512
    repeat = 1 if args.quick else 25
    rng = np.random.default_rng(0)
    A = rng.integers(-128, 128, (n, n))
    B = rng.integers(-128, 128, (n, n))
    Af, Bf = A.astype(np.float64), B.astype(np.float64)
    t_blas, _ = best_of(lambda: Af @ Bf, repeat)
    macs = n ** 3
    print(f"INT8 x INT8 GEMM {n}x{n}x{n} ({macs / 1e6:.0f} MMAC); numpy float64 matmul: {t_blas * 1e3:.2f} ms; "
          f"threads: {numba.get_num_threads()} (Numba and BLAS)")
    hdr = (f"{'case':<34}{'ms':>9}{'GMAC/s':>9}{'x f64 BLAS':>12}{'APyTypes ms':>13}{'vs APyTypes':>13}"
           f"{'APy same':>10}{'outputs !exact':>16}  {'path':<18}{'target':>8}")
    print(hdr)
    print("-" * len(hdr))

    def row(name, t, t_ref, t_apy=None, frac_sat=None, agree=None, path=None, target=None):
        apy_s = (f"{t_apy * 1e3:>13.1f}{t_apy / t:>12.0f}x{agree:>10.1%}" if t_apy
                 else f"{'-':>13}{'-':>13}{'-':>10}")
        sat = f"{frac_sat:>15.0%}" if frac_sat is not None else f"{'-':>16}"
        goal = "" if target is None else f"{'<= %gx' % target:>8} {'met' if t / t_ref <= target else 'MISSED'}"
        print(f"{name:<34}{t * 1e3:>9.2f}{macs / t / 1e9:>9.2f}{t / t_ref:>12.2f}{apy_s} {sat}  {path or '-':<18}{goal}")

    blas = lambda: Af @ Bf   # noqa: E731

    cases = [(bits, ov) for bits in (16, 20, 24, 32) for ov in ("wrap", "saturate")]
    for bits, ov in cases:
        dp = Datapath(a="int8", b="int8", accumulator=Accumulator(f"int{bits}", overflow=ov))
        t, t_ref, r = paired(lambda: gemm(A, B, dp, stats=False), blas, repeat)
        t_apy = agree = None
        if apy is not None and not args.quick:
            t_apy, c = best_of(apy_matmul(A, B, bits, ov), 1)
            agree = float(np.mean(np.asarray(c.to_numpy()).astype(np.int64) == r.acc))
        sat = float(np.mean(r.acc != r.exact)) if r.exact is not None else None
        row(f"int{bits} acc, {ov}", t, t_ref, t_apy, sat, agree, r.path)
    if apy is not None and not args.quick:
        print(f"APy same: outputs where APyTypes {apy.__version__} (matmul under APyFixedAccumulatorContext) equals "
              "the per-addition overflow result")
    # every output saturates: all-positive operands, 16-bit saturating accumulator
    P = rng.integers(64, 128, (n, n))
    Q = rng.integers(64, 128, (n, n))
    dp = Datapath(a="int8", b="int8", accumulator=Accumulator("int16", overflow="saturate"))
    t, t_ref, r = paired(lambda: gemm(P, Q, dp, stats=False), blas, repeat)
    row("int16 saturate, every output sat.", t, t_ref, None, float(np.mean(r.acc != r.exact)), path=r.path,
        target=5)
    t, t_ref, r = paired(lambda: gemm(A, B, dp, stats=True), blas, 5)
    row("int16 saturate + stats", t, t_ref, None, float(np.mean(r.overflow_count > 0)), path=r.path)
    dp = Datapath(a="int8", b="int8", accumulator=Accumulator("int16", overflow="wrap"))
    t, t_ref, r = paired(lambda: gemm(A, B, dp, stats=True), blas, 5)
    row("int16 wrap + stats", t, t_ref, None, float(np.mean(r.overflow_count > 0)), path=r.path)
    dp = Datapath(a="int8", b="int8", accumulator=Accumulator("int32", overflow="wrap"))
    t, t_ref, r = paired(lambda: gemm(A, B, dp, stats=True), blas, 5)
    row("int32 wrap + stats", t, t_ref, None, float(np.mean(r.overflow_count > 0)), path=r.path, target=3)
    for ov in ("saturate", "wrap"):   # 4 chunked lanes (a DSP cascade), combined sequentially
        dp = Datapath(a="int8", b="int8", accumulator=Accumulator("int16", overflow=ov), order=Order("chunked", lanes=4))
        t, t_ref, r = paired(lambda: gemm(A, B, dp, stats=True), blas, 5)
        row(f"int16 {ov} chunked(4) + stats", t, t_ref, None, float(np.mean(r.overflow_count > 0)), path=r.path)
    for ov in ("saturate", "wrap"):   # a pairwise adder tree
        dp = Datapath(a="int8", b="int8", accumulator=Accumulator("int16", overflow=ov), order=Order("tree"))
        t, t_ref, r = paired(lambda: gemm(A, B, dp, stats=True), blas, 5)
        row(f"int16 {ov} tree + stats", t, t_ref, None, float(np.mean(r.overflow_count > 0)), path=r.path)

    # ResNet-style 3x3 conv, 64 -> 64 channels, 56x56, batch 1
    C, HW = (16, 28) if args.quick else (64, 56)
    x = rng.integers(-128, 128, (1, C, HW, HW))
    w = rng.integers(-128, 128, (C, C, 3, 3))
    macs = C * C * 9 * HW * HW
    cols, _, _ = unfold(x, (3, 3), padding=1)
    Wf = w.reshape(C, -1).T.astype(np.float64)
    colsf = cols.astype(np.float64)
    blas = lambda: colsf @ Wf   # noqa: E731
    t_blas, _ = best_of(blas, repeat)
    print(f"\n3x3 conv {C}->{C} channels, {HW}x{HW}, batch 1 ({macs / 1e6:.0f} MMAC); numpy float64 matmul "
          f"of the unfolded patches: {t_blas * 1e3:.2f} ms; APyTypes: its matmul on the same patches")
    print(hdr)
    print("-" * len(hdr))
    Wc = w.reshape(C, -1).T          # (C*9, C): the unfolded weights, (c, kh, kw) order like the patches
    for bits, ov in [(16, "wrap"), (16, "saturate"), (32, "saturate")]:
        dp = Datapath(a="int8", b="int8", accumulator=Accumulator(f"int{bits}", overflow=ov))
        t, t_ref, r = paired(lambda: conv2d(x, w, dp, padding=1, stats=False), blas, repeat)
        t_apy = agree = None
        if apy is not None and not args.quick:   # APyTypes has no conv: its matmul on the same patches
            t_apy, c = best_of(apy_matmul(cols, Wc, bits, ov), 1)
            ours = r.acc.transpose(0, 2, 3, 1).reshape(-1, C)          # NCHW -> rows (n, oh, ow)
            agree = float(np.mean(np.asarray(c.to_numpy()).astype(np.int64) == ours))
        row(f"conv int{bits} acc, {ov}", t, t_ref, t_apy, float(np.mean(r.acc != r.exact)), agree, r.path)


if __name__ == "__main__":
    main()
