"""Low-precision training recipes from the literature, as presets of formats, roundings and datapaths.

A recipe states, for each tensor class, its format and rounding, and the accumulators of the forward and
the two gradient GEMMs. Per-tensor scales are chosen by the recipe's rule and applied outside the MAC
datapath (in float64, as a separate scaling step); every GEMM itself runs bit-exactly through fxsim.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .datapath import Accumulator, Datapath
from .formats import Fixed, Float, parse_format
from .quantize import quantize

__all__ = ["TensorQuantizer", "Recipe", "RECIPES", "get_recipe"]


@dataclass(frozen=True)
class TensorQuantizer:
    """Per-tensor quantization: x ≈ scale * q with q on ``fmt``'s grid.

    ``scale_rule``: "pow2" — the smallest power of two with max|x| / scale <= fmt.max (values then round
    onto the grid without overflow); "max" — scale = max|x| / fmt.max exactly (LUQ: the largest magnitude
    lands on the top level). ``rounding``: any Rounding; stochastic draws from ``seed`` + a call counter.
    """

    fmt: object
    rounding: str = "half_even"
    scale_rule: str = "pow2"

    def __call__(self, x, *, seed=0):
        fmt = parse_format(self.fmt)
        amax = float(np.max(np.abs(x))) if np.size(x) else 0.0
        if amax == 0.0:
            return np.zeros_like(x, dtype=np.float64), 1.0, 0
        if self.scale_rule == "max":
            scale = amax / fmt.max
        else:
            scale = 2.0 ** int(np.ceil(np.log2(amax / fmt.max)))
        q = quantize(np.asarray(x, dtype=np.float64) / scale, fmt, rounding=self.rounding, overflow="saturate",
                     seed=seed)
        underflow = int(np.count_nonzero((q == 0) & (np.asarray(x) != 0)))
        return q, scale, underflow


@dataclass(frozen=True)
class Recipe:
    """Formats and datapaths of one training scheme. ``None`` formats mean float64 (no quantization)."""

    name: str
    paper: str
    note: str
    weights: TensorQuantizer | None = None
    activations: TensorQuantizer | None = None
    gradients: TensorQuantizer | None = None
    forward_acc: object = "int32"
    backward_acc: object = "fp32"
    master: object = "fp32"

    def _acc(self, fmt_like, a, b):
        acc = parse_format(fmt_like)
        if isinstance(a, Float) or isinstance(b, Float):
            if isinstance(acc, Fixed):
                acc = parse_format("fp32")
        return Accumulator(acc, overflow="ieee" if isinstance(acc, Float) else "saturate",
                           rounding="half_even" if isinstance(acc, Float) else "floor")

    def datapath(self, which: str):
        """The Datapath of GEMM ``which``: "forward" (act x weight), "dx" (grad x weight), "dw" (act x grad)."""
        w = parse_format(self.weights.fmt) if self.weights else None
        a = parse_format(self.activations.fmt) if self.activations else None
        g = parse_format(self.gradients.fmt) if self.gradients else None
        if which == "forward":
            ops = (a, w, self.forward_acc)
        elif which == "dx":
            ops = (g, w, self.backward_acc)
        else:
            ops = (a, g, self.backward_acc)
        if ops[0] is None or ops[1] is None:
            return None
        return Datapath(a=ops[0], b=ops[1], accumulator=self._acc(ops[2], ops[0], ops[1]))


RECIPES = {
    "float64": Recipe("float64", "-", "Reference: float64 everywhere, no quantization."),
    "int8": Recipe(
        "int8", "Zhu et al., Towards unified INT8 training, arXiv 1912.12607 (simplified)",
        "INT8 weights, activations and gradients with power-of-two per-tensor scales, int32 accumulators, "
        "stochastic rounding of gradients. Models the INT8 GEMMs; approximates the paper's direction-"
        "sensitive gradient clipping and deviation-counteractive learning-rate scaling (not modelled).",
        weights=TensorQuantizer("int8"), activations=TensorQuantizer("int8"),
        gradients=TensorQuantizer("int8", rounding="stochastic"), forward_acc="int32", backward_acc="int32"),
    "luq": Recipe(
        "luq", "Chmiel et al., Logarithmic unbiased quantization, arXiv 2112.10769",
        "INT4 forward (weights, activations; power-of-two scales, int32 accumulator). Gradients in radix-2 "
        "FP4 [1,3,0] (levels 0, ±α·2^k, k = 0..6, α = max|g|/16 so the maximum is the top level), with "
        "stochastic rounding between levels and unbiased stochastic underflow below α (both are stochastic "
        "rounding on the fp4_e3m0 grid). Backward GEMMs FP4 x INT4 with an FP32 accumulator. Not modelled: "
        "the paper's SMP (multiple samples) and the high-precision fine-tuning phase.",
        weights=TensorQuantizer("int4"), activations=TensorQuantizer("uint4"),
        gradients=TensorQuantizer("fp4_e3m0", rounding="stochastic", scale_rule="max"),
        forward_acc="int32", backward_acc="fp32"),
    "hfp8": Recipe(
        "hfp8", "Sun et al., Hybrid 8-bit floating point training, NeurIPS 2019",
        "E4M3 (bias 11, fnuz) weights and activations forward, E5M2 gradients backward, power-of-two "
        "per-tensor scales, FP32 accumulators (the paper used FP16 chunked accumulation: set "
        "backward_acc/forward_acc to 'fp16' with Order('chunked') to model it).",
        weights=TensorQuantizer("e4m3b11fnuz"), activations=TensorQuantizer("e4m3b11fnuz"),
        gradients=TensorQuantizer("e5m2", rounding="half_even"), forward_acc="fp32", backward_acc="fp32"),
    "sun2020": Recipe(
        "sun2020", "Sun et al., Ultra-low precision 4-bit training, NeurIPS 2020 (partial)",
        "Radix-4 FP4 [1,3,0] gradients (levels spaced by 4) with stochastic rounding and a max-based "
        "per-tensor scale; 4-bit INT forward. Not modelled: two-phase rounding (two gradient copies with "
        "even and odd powers of two) and trainable GradScale.",
        weights=TensorQuantizer("int4"), activations=TensorQuantizer("uint4"),
        gradients=TensorQuantizer("fp4_e3m0_r4", rounding="stochastic", scale_rule="max"),
        forward_acc="int32", backward_acc="fp32"),
    "int8_inference": Recipe(
        "int8_inference", "QAT-style INT8 inference (Jacob et al., CVPR 2018)",
        "INT8 forward only (fake-quantized weights and activations, int32 accumulator); float64 backward "
        "(straight-through), for comparison with the fully quantized recipes.",
        weights=TensorQuantizer("int8"), activations=TensorQuantizer("uint8"), forward_acc="int32"),
}


def get_recipe(name) -> Recipe:
    if isinstance(name, Recipe):
        return name
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {name!r}")
    return RECIPES[name]
