"""The batch-norm experiment of a ``op = "batch_norm"`` spec: fxsim's training-mode batch norm
(``fxsim.ops.norm``) on random data against a float64 batch norm."""
from __future__ import annotations

import numpy as np

from fxsim.formats import parse_format
from fxsim.ops.norm import batchnorm_backward, batchnorm_train_forward
from fxsim.workflows import metrics
from fxsim.workflows.data import random_codes
from fxsim.workflows.spec_base import LayerSpec
from fxsim.workflows.spec_keys import get

__all__ = ["run_batch_norm"]


def run_batch_norm(spec: LayerSpec) -> dict:
    """Simulate a batch_norm spec (training mode, fxsim.ops.norm) on its random data and compare with a
    float64 batch norm: max abs error and SQNR of y (forward) or of dx, dgamma, dbeta (backward_input)."""
    cfg = spec.batch_norm
    s, d = spec.shape, spec.data
    rng = np.random.default_rng(int(get(d, "data.seed")))
    x_fmt = parse_format(cfg.x_fmt)
    C = s["in_channels"]
    x = random_codes(rng, x_fmt, (s["batch"], C, s["height"], s["width"]), get(d, "data.distribution", op="batch_norm"),
                      d.get("std"))
    gamma = 1.0 + 0.25 * rng.standard_normal(C)
    beta = 0.1 * rng.standard_normal(C)
    y, cache, stats = batchnorm_train_forward(x, gamma, beta, cfg)
    axes = (0, 2, 3)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    xhat = (x - mean) / np.sqrt(var + cfg.eps)
    g4 = gamma.reshape(1, -1, 1, 1)
    out = {"op": "batch_norm", "pass": spec.pass_, "elements": int(x.size),
           "reduction_overflow_events": int(stats["overflows"])}

    def compare(name, got, ref):
        _, out[f"{name}_max_abs_error_vs_float64"], out[f"{name}_sqnr_db_vs_float64"] = metrics.compare(ref, got)

    if spec.pass_ == "forward":
        compare("y", y, g4 * xhat + beta.reshape(1, -1, 1, 1))
        return out
    dy = rng.standard_normal(x.shape)
    dx, dgamma, dbeta = batchnorm_backward(dy, cache, cfg)
    n = x.size // C
    g = dy * g4
    ref_dx = (n * g - g.sum(axis=axes, keepdims=True) - xhat * (g * xhat).sum(axis=axes, keepdims=True)) \
        / (n * np.sqrt(var + cfg.eps))
    compare("dx", dx, ref_dx)
    compare("dgamma", dgamma, (dy * xhat).sum(axis=axes))
    compare("dbeta", dbeta, dy.sum(axis=axes))
    return out
