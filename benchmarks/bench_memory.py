"""Peak memory of a large INT8 GEMM against numpy's float64 matmul of the same shape.

    python benchmarks/bench_memory.py [--n 2048]

Each case runs in a fresh process: the inputs are made, the resident set is read, the call runs, and the
peak resident set (VmHWM, reset just before the call) above that baseline is printed. numpy's case is
what a float64 user pays: A.astype(float64) @ B.astype(float64) from the same INT8 codes. The second
number is what the process still holds (above the baseline) after the call, the result deleted.
"""
import argparse
import os
import subprocess
import sys

CASES = {
    "numpy float64 matmul": "C = A.astype(np.float64) @ B.astype(np.float64)",
    "fxsim int32 wrap, stats=False": "C = gemm(A, B, Datapath(accumulator=Accumulator('int32', overflow='wrap')), stats=False)",
    "fxsim int32 wrap, stats=True": "C = gemm(A, B, Datapath(accumulator=Accumulator('int32', overflow='wrap')))",
    "fxsim int16 saturate, stats=False": "C = gemm(A, B, Datapath(accumulator=Accumulator('int16', overflow='saturate')), stats=False)",
}

CHILD = r'''
import os, sys, numpy as np
sys.path.insert(0, {root!r})
from fxsim.datapath import Accumulator, Datapath
from fxsim.ops.gemm import gemm
n = {n}
rng = np.random.default_rng(0)
A = rng.integers(-128, 128, (n, n), dtype=np.int8)
B = rng.integers(-128, 128, (n, n), dtype=np.int8)
A, A_big = A[:64, :64].copy(), A      # compile and warm up on a small call of the same kind
B, B_big = B[:64, :64].copy(), B
{stmt}
del C
A, B = A_big, B_big
def rss(field):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
base = rss('VmRSS:')
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')            # reset the peak (VmHWM) to the current resident set
{stmt}
peak = rss('VmHWM:')
del C
print(peak - base, rss('VmRSS:') - base)
'''


def run(stmt, n):
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    code = CHILD.format(root=root, n=n, stmt=stmt)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return tuple(float(v) for v in out.stdout.split()[-2:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2048)
    args = ap.parse_args()
    print(f"INT8 GEMM {args.n}^3, 1 thread: peak resident memory above the inputs (MiB), and what stays "
          "after the call (the result deleted); each after a small warm-up call of the same kind")
    ref = None
    for name, stmt in CASES.items():
        peak, kept = run(stmt, args.n)
        ref = ref or peak
        print(f"{name:<36}{peak:>9.0f} MiB peak{peak / ref:>7.2f}x numpy{kept:>9.0f} MiB kept")


if __name__ == "__main__":
    main()
