"""The exact float GEMM reference of `fxsim run`: the kernel (fxsim.engines.exact) against Python fractions.

    PYTHONPATH=. python benchmarks/bench_exact_reference.py [SIZE ...]

Operands are e4m3 x e5m2 values (the float spec of the README); both give identical results (checked).
"""
import sys
import time

import numpy as np

sys.path.insert(0, ".")
from fxsim.engines.exact import exact_gemm, exact_gemm_fractions  # noqa: E402
from fxsim.formats import parse_format  # noqa: E402
from fxsim.quantize import quantize  # noqa: E402


def operands(n, seed=0):
    rng = np.random.default_rng(seed)
    a, b = parse_format("e4m3"), parse_format("e5m2")
    A = quantize(rng.normal(0, 0.02 * a.max, (n, n)), a, rounding="half_even", overflow="saturate")
    B = quantize(rng.normal(0, 0.02 * b.max, (n, n)), b, rounding="half_even", overflow="saturate")
    return A, B, rng.normal(0, 1, n)


def main(sizes):
    exact_gemm(*operands(4))                      # compile (cached afterwards)
    for n in sizes:
        A, B, bias = operands(n)
        t = time.perf_counter()
        fast = exact_gemm(A, B, bias)
        t_fast = time.perf_counter() - t
        t = time.perf_counter()
        slow = exact_gemm_fractions(A, B, bias)
        t_slow = time.perf_counter() - t
        assert np.array_equal(fast, slow)
        print(f"{n}^3: kernel {t_fast:.3f} s, fractions {t_slow:.1f} s ({t_slow / t_fast:.0f}x), identical")


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [64, 128, 256])
