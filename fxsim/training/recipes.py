"""Low-precision training recipes from the literature, as presets of formats, roundings and datapaths.

A recipe states, for each tensor class, its format and rounding, and the accumulators of the forward and
the two gradient GEMMs. Per-tensor scales are chosen by the recipe's rule and applied outside the MAC
datapath (in float64, as a separate scaling step); every GEMM itself runs bit-exactly through fxsim.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from fxsim.errors import InvalidArgument
from fxsim.datapath import Accumulator, Datapath
from fxsim.formats import Fixed, Float, parse_format
from fxsim.quantize import quantize
from fxsim.validate import check_bool

__all__ = ["TensorQuantizer", "LogQuantizer", "Recipe", "RECIPES", "get_recipe"]


def _finite_amax(x) -> float:
    """max|x| of a tensor entering a quantized layer, which must be finite (``_check_finite`` raises with the
    first offending element): two reductions and no temporary array."""
    xa = np.asarray(x)
    if not xa.size:
        return 0.0
    hi, lo = float(xa.max()), float(xa.min())
    if not (np.isfinite(hi) and np.isfinite(lo)):      # NaN propagates through max and min
        _check_finite(xa)
    return max(hi, -lo)


def _check_finite(x):
    """A tensor entering a quantized layer must be finite: its scale is chosen from max|x|, which a NaN or
    an infinity would make meaningless for every other element."""
    xa = np.asarray(x)
    if xa.dtype.kind == "f" and not np.all(np.isfinite(xa)):
        bad = np.flatnonzero(~np.isfinite(xa.ravel()))
        idx = np.unravel_index(int(bad[0]), xa.shape)
        raise InvalidArgument(f"a tensor entering a quantized layer holds {bad.size} non-finite value(s), "
                              f"first {float(xa[idx])!r} at index {tuple(int(i) for i in idx)}; the per-tensor "
                              "scale is taken from max|x| (a diverged training step, or unscaled data?)")


@dataclass(frozen=True)
class TensorQuantizer:
    """Per-tensor quantization: x ≈ scale * q with q on ``fmt``'s grid.

    ``scale_rule``: "pow2" — the smallest power of two with max|x| / scale <= fmt.max (values then round
    onto the grid without overflow); "max" — scale = max|x| / fmt.max exactly (LUQ: the largest magnitude
    lands on the top level). ``rounding``: any Rounding; stochastic draws from ``seed`` + a call counter.
    ``phase``: the scale is multiplied by 2**phase — phase 1 on a radix-4 format gives the odd powers of
    two of two-phase rounding (Sun et al. 2020).
    """

    fmt: object
    rounding: str = "half_even"
    scale_rule: str = "pow2"
    phase: int = 0

    def __post_init__(self):
        if self.scale_rule not in ("pow2", "max"):
            raise InvalidArgument(f"scale_rule must be 'pow2' or 'max', got {self.scale_rule!r}")

    @cached_property
    def _format(self):
        """``fmt`` parsed (once: the quantizer is frozen and runs on every step)."""
        return parse_format(self.fmt)

    @cached_property
    def top(self) -> float:
        """The largest magnitude q can take; |x| / scale beyond it saturates."""
        return float(self._format.max)

    @cached_property
    def is_integer(self) -> bool:
        """The format is an integer one (Fixed without fraction bits): its codes are its values."""
        return isinstance(self._format, Fixed) and self._format.frac == 0

    def __call__(self, x, *, seed=0, integer_codes=False):
        """Returns (q, scale, underflows to zero); x ≈ scale * q. ``integer_codes=True`` (integer formats
        only): q as the integer codes themselves, in the narrowest integer dtype (the same numbers; a GEMM
        takes them as they are, without turning float values back into codes)."""
        fmt = self._format
        if check_bool("integer_codes", integer_codes) and not self.is_integer:
            raise InvalidArgument(f"integer_codes=True needs an integer format (no fraction bits), got {fmt}")
        returns = "codes" if integer_codes else "values"
        amax = _finite_amax(x)
        if amax == 0.0:
            return quantize(np.zeros(np.shape(x)), fmt, returns=returns), 1.0, 0
        if self.scale_rule == "max":
            scale = amax / fmt.max
        else:
            scale = 2.0 ** int(np.ceil(np.log2(amax / fmt.max)))
        scale *= 2.0 ** self.phase
        q = quantize(np.asarray(x, dtype=np.float64) / scale, fmt, rounding=self.rounding, overflow="saturate",
                     seed=seed, returns=returns)
        underflow = int(np.count_nonzero((q == 0) & (np.asarray(x) != 0)))
        return q, scale, underflow


@dataclass(frozen=True)
class LogQuantizer:
    """LUQ's logarithmic gradient quantizer (Chmiel et al., arXiv 2112.10769): levels 0 and ±α·2^k,
    k = 0..levels-1; between levels stochastic rounding (unbiased), below α unbiased stochastic underflow
    (|x| < α -> sign(x)·α with probability |x|/α, else 0), above the top level saturation.

    ``alpha`` names the rule for α from m = max|x|: "top" — α = m / 2^(levels-1), the maximum lands on the
    top level (the fxsim preset, 7 levels: a 4-bit code); "paper" — α = m / 2^(2^(bits-1)) (eq. 10-11 of
    the paper); "code" — α = m / 128 (the published code, with levels=8 that needs 5 bits).
    The GEMM operand format is a radix-2 E?M0 float holding exactly those levels (``fmt``); the scaled
    tensor is rounded onto it by fxsim.quantize, so the random bits are the library's reproducible stream.
    """

    levels: int = 7
    alpha: str = "top"
    bits: int = 4
    rounding: str = "stochastic"

    def __post_init__(self):
        if not isinstance(self.levels, int) or not 1 <= self.levels <= 1023:
            raise InvalidArgument(f"levels must be an integer in 1..1023, got {self.levels!r}")
        if self.alpha not in ("top", "paper", "code"):
            raise InvalidArgument(f"alpha must be 'top', 'paper' or 'code', got {self.alpha!r}")

    @cached_property
    def fmt(self) -> Float:
        """(Built once: the quantizer is frozen and runs on every step.)"""
        e = int(np.ceil(np.log2(self.levels + 1)))
        return Float(max(e, 1), 0, specials="none")

    @cached_property
    def top(self) -> float:
        """The top level α·2^(levels-1) on ``fmt``'s grid; larger magnitudes saturate there."""
        return self.fmt.min_subnormal * 2.0 ** (self.levels - 1)

    def alpha_of(self, amax: float) -> float:
        if self.alpha == "top":
            return amax / 2.0 ** (self.levels - 1)
        if self.alpha == "paper":
            return amax / 2.0 ** (2 ** (self.bits - 1))
        return amax / 128.0

    def __call__(self, x, *, seed=0):
        """Returns (q on ``fmt``'s grid, scale, underflows to zero); x ≈ scale * q."""
        fmt = self.fmt
        x = np.asarray(x, dtype=np.float64)
        amax = _finite_amax(x)
        if amax == 0.0:
            return np.zeros_like(x), 1.0, 0
        low = fmt.min_subnormal                               # the level α on the grid
        scale = self.alpha_of(amax) / low
        top = self.top
        y = x / scale
        if top < fmt.max:                                     # saturation above the top level (at fmt.max the
            y = np.clip(y, -top, top)                         # quantizer's own saturation gives the same bits)
        q = quantize(y, fmt, rounding=self.rounding, overflow="saturate", seed=seed)
        underflow = int(np.count_nonzero((q == 0) & (x != 0)))
        return q, scale, underflow


@dataclass(frozen=True)
class Recipe:
    """Formats and datapaths of one training scheme. ``None`` formats mean float64 (no quantization).

    ``gradients`` quantizes the output gradient for the weight-gradient GEMM and, unless
    ``gradients_dx`` is given (two-phase rounding: a second copy of the gradient on another grid), for
    the input-gradient GEMM too. ``order`` (an fxsim.datapath.Order, default sequential) is the
    accumulation order of every GEMM. ``forward_acc``/``backward_acc``: a format (the register type's
    defaults: fixed point wraps, float rounds to nearest even) or an ``fxsim.datapath.Accumulator``."""

    name: str
    paper: str
    note: str
    weights: TensorQuantizer | None = None
    activations: TensorQuantizer | None = None
    gradients: TensorQuantizer | None = None
    gradients_dx: TensorQuantizer | None = None
    forward_acc: object = "int32"
    backward_acc: object = "fp32"
    master: object = "fp32"
    order: object = None

    def _acc(self, acc_like, a, b):
        """The accumulator of a GEMM of ``a`` x ``b``: ``acc_like`` as given (an ``Accumulator``), or a format
        with its register type's defaults (``fxsim.datapath.register_defaults``: wrap/floor, half_even/ieee);
        float operands take FP32 in place of a fixed-point accumulator."""
        acc = acc_like if isinstance(acc_like, Accumulator) else Accumulator(parse_format(acc_like))
        if (isinstance(a, Float) or isinstance(b, Float)) and not acc.is_float:
            acc = Accumulator("fp32")
        return acc

    def datapath(self, which: str):
        """The Datapath of GEMM ``which``: "forward" (act x weight), "dx" (grad x weight), "dw" (act x grad).
        Built once per recipe and GEMM (a recipe is frozen; training asks for each on every step)."""
        cache = self.__dict__.setdefault("_datapaths", {})
        if which not in cache:
            cache[which] = self._build_datapath(which)
        return cache[which]

    def _build_datapath(self, which: str):
        w = parse_format(self.weights.fmt) if self.weights else None
        a = parse_format(self.activations.fmt) if self.activations else None
        g = parse_format(self.gradients.fmt) if self.gradients else None
        gdx = parse_format(self.gradients_dx.fmt) if self.gradients_dx else g
        if which == "forward":
            ops = (a, w, self.forward_acc)
        elif which == "dx":
            ops = (gdx, w, self.backward_acc)
        else:
            ops = (a, g, self.backward_acc)
        if ops[0] is None or ops[1] is None:
            return None
        extra = {} if self.order is None else {"order": self.order}
        return Datapath(a=ops[0], b=ops[1], accumulator=self._acc(ops[2], ops[0], ops[1]), **extra)


RECIPES = {
    "float64": Recipe("float64", "-", "Reference: float64 everywhere, no quantization."),
    "int8": Recipe(
        "int8", "Zhu et al., Towards unified INT8 training, arXiv 1912.12607 (simplified)",
        "INT8 weights, activations and gradients with power-of-two per-tensor scales, int32 accumulators, "
        "stochastic rounding of gradients. Models the INT8 GEMMs; approximates the paper's direction-"
        "sensitive gradient clipping and deviation-counteractive learning-rate scaling (not modelled).",
        weights=TensorQuantizer("int8"), activations=TensorQuantizer("int8"),
        gradients=TensorQuantizer("int8", rounding="stochastic"),
        forward_acc=Accumulator("int32", overflow="saturate"), backward_acc=Accumulator("int32", overflow="saturate")),
    "luq": Recipe(
        "luq", "Chmiel et al., Logarithmic unbiased quantization, arXiv 2112.10769",
        "INT4 forward (weights, activations; power-of-two scales, int32 accumulator). Gradients by "
        "LogQuantizer(levels=7, alpha='top'): radix-2 FP4 [1,3,0] levels 0, ±α·2^k, k = 0..6, with "
        "α = max|g|/64 so the maximum is the top level (the 4-bit budget; the paper's α rule and the code's "
        "8 levels are the other options), stochastic rounding between levels and unbiased stochastic "
        "underflow below α. Backward GEMMs FP4 x INT4 with an FP32 accumulator. Not modelled: "
        "the paper's SMP (multiple samples) and the high-precision fine-tuning phase.",
        weights=TensorQuantizer("int4"), activations=TensorQuantizer("uint4"),
        gradients=LogQuantizer(levels=7, alpha="top"),
        forward_acc="int32", backward_acc="fp32"),
    "hfp8": Recipe(
        "hfp8", "Sun et al., Hybrid 8-bit floating point training, NeurIPS 2019",
        "E4M3 (bias 11, fnuz) weights and activations forward, E5M2 gradients backward, power-of-two "
        "per-tensor scales, FP32 accumulators (the paper used FP16 chunked accumulation: "
        "dataclasses.replace(recipe, forward_acc='fp16', backward_acc='fp16', order=Order('chunked', lanes=64)) "
        "models it).",
        weights=TensorQuantizer("e4m3b11fnuz"), activations=TensorQuantizer("e4m3b11fnuz"),
        gradients=TensorQuantizer("e5m2", rounding="half_even"), forward_acc="fp32", backward_acc="fp32"),
    "sun2020": Recipe(
        "sun2020", "Sun et al., Ultra-low precision 4-bit training, NeurIPS 2020 (partial)",
        "Radix-4 FP4 [1,3,0] gradients (levels spaced by 4) with a max-based per-tensor scale and two-phase "
        "rounding: the output gradient is quantized twice, on the even-power grid for the weight-gradient "
        "GEMM and on the grid shifted by 2 (odd powers) for the input-gradient GEMM; stochastic rounding "
        "in each (a parameter). 4-bit INT forward. Not modelled: trainable per-layer GradScale (the "
        "scale here is the tensor maximum) and the paper's 8-bit first/last layers.",
        weights=TensorQuantizer("int4"), activations=TensorQuantizer("uint4"),
        gradients=TensorQuantizer("fp4_e3m0_r4", rounding="stochastic", scale_rule="max"),
        gradients_dx=TensorQuantizer("fp4_e3m0_r4", rounding="stochastic", scale_rule="max", phase=1),
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
        raise InvalidArgument(f"recipe must be one of {sorted(RECIPES)}, got {name!r}")
    return RECIPES[name]
