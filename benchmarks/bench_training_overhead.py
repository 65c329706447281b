"""Per-call overhead of training on small tensors: the demo's training (``fxsim.training.demo.train``) for
a few recipes with a warm Numba cache, as seconds (best of 5, the recipes interleaved) and as the ratio to
the float64 recipe in the same run.

    python benchmarks/bench_training_overhead.py [RECIPE ...]      (default: float64 int8 luq)
"""
from __future__ import annotations

import sys
import time

from fxsim.training.demo import load_data, train

REPEAT = 5


def main(argv=None):
    names = list(argv if argv is not None else sys.argv[1:]) or ["float64", "int8", "luq"]
    if "float64" not in names:
        names.insert(0, "float64")
    data = load_data()
    for name in names:                          # compile (or load) every kernel first
        train(name, data=data, epochs=1, n_train=100)
    secs, outcome = {}, {}
    for _ in range(REPEAT):          # interleaved, best of REPEAT: a stray process slows one run, not the ratio
        for name in names:
            t = time.perf_counter()
            acc, losses, _, _ = train(name, data=data, epochs=5)
            secs[name] = min(secs.get(name, float("inf")), time.perf_counter() - t)
            outcome[name] = (acc, losses[-1])
    for name in names:
        acc, loss = outcome[name]
        print(f"{name:10s} {secs[name]:7.3f} s (best of {REPEAT})  test accuracy {acc:.3f}  final loss {loss:.6f}",
              flush=True)
    for name in names:
        print(f"{name:10s} {secs[name] / secs['float64']:6.2f}x float64")


if __name__ == "__main__":
    main()
