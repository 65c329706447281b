"""Block-scaled formats: OCP Microscaling (MX v1.0), NVFP4 and block floating point, as presets of one
mechanism -- blocks of ``block`` consecutive elements along one axis share one scale.

- ``BlockFormat(element, block, scale, scale_rule, tensor_scale)`` describes the mechanism.
- ``block_quantize(x, fmt, axis=...)`` -> ``BlockArray`` (element values, scales, optional tensor scale).
- ``mx_gemm(A, B, a_fmt, b_fmt, accumulator=...)``: per-block dot products (exact), then scaling by the two
  block scales, then one correctly rounded addition per block in the accumulator's format.

Scale rules:

- ``"ocp"`` (MX v1.0, section 6.3): X = 2**(floor(log2(amax)) - emax_elem), emax_elem the exponent of the
  element format's largest normal (E4M3 8, E5M2 15, E2M3 2, E3M2 4, E2M1 2, INT8 0), clamped to E8M0's
  range [2**-127, 2**127]; an all-zero block gets 2**-127; a block holding NaN or inf gets the NaN scale.
  Elements are V / X rounded (half even by default) with saturation to the element's largest value.
- ``"amax"`` (NVFP4): per-tensor FP32 scale ts = amax(tensor) / (element.max * scale.max); per-block
  scale s = amax(block) / (ts * element.max) rounded to the scale format (E4M3, saturating); elements
  x / (s * ts) rounded to the element format (the quotient computed in float64, then rounded).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fxsim._kernels import float_block as BK
from fxsim._kernels.threads import serial_below

from fxsim.errors import InvalidArgument
from fxsim.datapath import Accumulator, Datapath
from fxsim.engines.floating import float_config
from fxsim.formats import E2M1, E2M3, E3M2, E4M3, E5M2, E8M0, Fixed, Float, parse_format
from fxsim.modes import Rounding
from fxsim.quantize import quantize
from fxsim.validate import as_array
from fxsim.result import GemmResult
from fxsim.runtime.compiling import notice_first_use
from fxsim.validate import check_bool, check_choice, check_int

__all__ = ["BlockFormat", "BlockArray", "block_quantize", "mx_gemm", "bfp", "MXFP8_E4M3", "MXFP8_E5M2",
           "MXFP6_E2M3", "MXFP6_E3M2", "MXFP4", "MXINT8", "NVFP4", "BLOCK_PRESETS"]

_SCALE_RULES = ("ocp", "amax")


@dataclass(frozen=True)
class BlockFormat:
    """``block`` elements in ``element`` format sharing one ``scale``-format scale (chosen by
    ``scale_rule``), optionally times one FP32 scale per tensor (``tensor_scale``)."""

    element: Float | Fixed | str
    block: int = 32
    scale: Float | str = E8M0
    scale_rule: str = "ocp"
    tensor_scale: bool = False
    name: str | None = None

    def __post_init__(self):
        el = parse_format(self.element, argument="element")
        sc = parse_format(self.scale, argument="scale")
        if not isinstance(sc, Float):
            raise InvalidArgument(f"scale must be a Float format (e8m0, e4m3 ...), got {sc}")
        if isinstance(el, Float) and el.radix != 2:
            raise InvalidArgument(f"element format {el}: block formats need radix-2 elements")
        check_int("block", self.block, lo=1, hi=4096)
        check_bool("tensor_scale", self.tensor_scale)
        check_choice("scale_rule", self.scale_rule, _SCALE_RULES)
        if self.scale_rule == "ocp" and not (sc.man == 0 and sc.radix == 2):
            raise InvalidArgument(f"scale_rule='ocp' picks a power of two; scale {sc} must be an E8M0-like format (man=0)")
        object.__setattr__(self, "element", el)
        object.__setattr__(self, "scale", sc)
        object.__setattr__(self, "block", int(self.block))

    @property
    def emax_elem(self) -> int:
        """Exponent of the element format's largest normal (the OCP rule's emax_elem)."""
        return int(math.floor(math.log2(self.element.max)))

    def __str__(self):
        if self.name:
            return self.name
        ts = " x fp32 tensor scale" if self.tensor_scale else ""
        return f"block<{self.element}, {self.block}, {self.scale} scale ({self.scale_rule}){ts}>"


MXFP8_E4M3 = BlockFormat(E4M3, 32, E8M0, name="mxfp8_e4m3")
MXFP8_E5M2 = BlockFormat(E5M2, 32, E8M0, name="mxfp8_e5m2")
MXFP6_E2M3 = BlockFormat(E2M3, 32, E8M0, name="mxfp6_e2m3")
MXFP6_E3M2 = BlockFormat(E3M2, 32, E8M0, name="mxfp6_e3m2")
MXFP4 = BlockFormat(E2M1, 32, E8M0, name="mxfp4")
MXINT8 = BlockFormat(Fixed(8, 6), 32, E8M0, name="mxint8")   # two's complement 1.6, -128 unused
NVFP4 = BlockFormat(E2M1, 16, E4M3, scale_rule="amax", tensor_scale=True, name="nvfp4")


def bfp(mantissa_bits: int, block: int = 16) -> BlockFormat:
    """Block floating point: ``mantissa_bits``-bit two's complement mantissas (1.(bits-2) fixed point,
    symmetric) sharing an 8-bit exponent per block; ``bfp(8, 32)`` is MXINT8."""
    check_int("mantissa_bits", mantissa_bits, lo=2, hi=24)
    return BlockFormat(Fixed(int(mantissa_bits), int(mantissa_bits) - 2), block, E8M0,
                       name=f"bfp{mantissa_bits}_b{block}")


BLOCK_PRESETS = {f.name: f for f in (MXFP8_E4M3, MXFP8_E5M2, MXFP6_E2M3, MXFP6_E3M2, MXFP4, MXINT8, NVFP4)}


def _block_format(fmt, argument="fmt") -> BlockFormat:
    if isinstance(fmt, BlockFormat):
        return fmt
    if isinstance(fmt, str) and fmt.lower() in BLOCK_PRESETS:
        return BLOCK_PRESETS[fmt.lower()]
    raise InvalidArgument(f"{argument} must be a BlockFormat or one of {', '.join(BLOCK_PRESETS)}, got {fmt!r}")


@dataclass
class BlockArray:
    """A block-quantized tensor: ``elements`` (float64 element values, the input's shape), ``scales``
    (float64, the input's shape with ``axis`` replaced by the number of blocks), ``tensor_scale``
    (float, 1.0 without one). Value = element * its block's scale * tensor_scale."""

    elements: np.ndarray
    scales: np.ndarray
    tensor_scale: float
    fmt: BlockFormat
    axis: int

    def dequantize(self) -> np.ndarray:
        """The represented real values (exact in float64)."""
        el = np.moveaxis(self.elements, self.axis, -1)
        K = el.shape[-1]
        sc = np.repeat(np.moveaxis(self.scales, self.axis, -1), self.fmt.block, axis=-1)[..., :K]
        return np.moveaxis(el * sc * self.tensor_scale, -1, self.axis)

    def element_codes(self) -> np.ndarray:
        """Element bit patterns (uint64), e.g. for golden vectors."""
        return self.fmt.element.encode(self.elements)

    def scale_codes(self) -> np.ndarray:
        """Scale bit patterns (uint64; E8M0 NaN is 0xFF)."""
        return self.fmt.scale.encode(self.scales)


def block_quantize(x, fmt, *, axis: int = -1, rounding="half_even", seed=None, random_bits=None) -> BlockArray:
    """Quantize ``x`` to a block format, blocks of ``fmt.block`` consecutive elements along ``axis`` (the
    last block may be short). ``rounding`` rounds the elements (stochastic: ``seed``/``random_bits``)."""
    fmt = _block_format(fmt)
    rounding = Rounding.parse(rounding, argument="rounding")
    xa = as_array("x", x).astype(np.float64)
    if xa.ndim == 0:
        raise InvalidArgument("x must have at least one dimension")
    if not -xa.ndim <= axis < xa.ndim:
        raise InvalidArgument(f"axis {axis} is out of range for an array with {xa.ndim} dimensions")
    axis = axis % xa.ndim
    v = np.moveaxis(xa, axis, -1)
    K = v.shape[-1]
    B = fmt.block
    nblk = max(-(-K // B), 1) if K else 0
    pad = nblk * B - K
    vp = np.concatenate([v, np.zeros(v.shape[:-1] + (pad,))], axis=-1) if pad else v
    blocks = vp.reshape(v.shape[:-1] + (nblk, B))
    finite = np.all(np.isfinite(blocks), axis=-1)
    amax = np.max(np.abs(np.where(np.isfinite(blocks), blocks, 0.0)), axis=-1) if B else np.zeros(blocks.shape[:-1])
    ts = 1.0
    el_fmt = fmt.element
    el_ovf = "saturate_symmetric" if isinstance(el_fmt, Fixed) else "saturate"
    if fmt.scale_rule == "ocp":
        with np.errstate(divide="ignore"):
            e = np.floor(np.log2(np.where(amax > 0, amax, 1.0))) - fmt.emax_elem
        # log2 of a float64 is exact enough for floor(): correct the rare off-by-one at powers of two
        e = np.where(np.ldexp(1.0, (e + fmt.emax_elem).astype(np.int64)) > amax, e - 1, e)
        e = np.where(np.ldexp(1.0, (e + fmt.emax_elem + 1).astype(np.int64)) <= amax, e + 1, e)
        sc_min = math.log2(fmt.scale.min_normal)
        sc_max = math.log2(fmt.scale.max)
        e = np.where(amax > 0, np.clip(e, sc_min, sc_max), sc_min)
        scales = np.ldexp(1.0, e.astype(np.int64))
    else:
        el_max = el_fmt.max
        if fmt.tensor_scale:
            t = float(np.max(np.abs(v[np.isfinite(v)]), initial=0.0))
            with np.errstate(over="ignore", under="ignore"):
                ts = float(np.float32(t / (el_max * fmt.scale.max))) if t > 0 else 1.0
            if not 0 < ts < math.inf:
                lo = float(np.finfo(np.float32).smallest_subnormal) * el_max * fmt.scale.max
                hi = float(np.finfo(np.float32).max) * el_max * fmt.scale.max
                raise InvalidArgument(f"x's largest finite magnitude {t!r} needs a per-tensor scale "
                                      f"{t / (el_max * fmt.scale.max):.3g} outside float32's range (the tensor "
                                      f"scale is an FP32 register); {fmt} takes max|x| from {lo:.3g} to {hi:.3g}")
        scales = quantize(amax / (ts * el_max), fmt.scale, overflow="saturate")
    scales = np.where(finite, scales, np.nan)
    denom = np.repeat(scales, B, axis=-1) * ts
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(denom > 0, vp / np.where(denom > 0, denom, 1.0), 0.0)
    q = np.where(np.isnan(denom), 0.0, q)
    el = quantize(q, el_fmt, rounding=rounding, overflow=el_ovf, seed=seed, random_bits=random_bits)
    el = np.where(np.isnan(np.repeat(scales, B, axis=-1)), np.nan if _has_nan(el_fmt) else 0.0, el)
    el = el[..., :K]
    return BlockArray(elements=np.moveaxis(el, -1, axis), scales=np.moveaxis(scales, -1, axis), tensor_scale=ts,
                      fmt=fmt, axis=axis)


def _has_nan(fmt):
    return isinstance(fmt, Float) and fmt.has_nan


def _sig_exp(values, fmt):
    """Exact integer significands and exponents: values == sig * 2**exp (zeros: sig 0)."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    if isinstance(fmt, Fixed):
        return np.ldexp(v, fmt.frac).astype(np.int64), np.full(v.shape, -fmt.frac, dtype=np.int64)
    m, e = np.frexp(np.abs(v))
    e2 = e.astype(np.int64) - 1                      # floor(log2 |v|)
    lsb = np.maximum(e2, fmt.emin) - fmt.man
    lsb = np.where(v == 0, fmt.emin - fmt.man, lsb)
    sig = np.ldexp(v, -lsb).astype(np.int64)
    return sig, lsb


def _lsb_range(fmt):
    """(smallest, largest) LSB exponent of the format's values, and the significand bits."""
    if isinstance(fmt, Fixed):
        return -fmt.frac, -fmt.frac, fmt.bits
    return fmt.emin - fmt.man, int(math.floor(math.log2(fmt.max))) - fmt.man, fmt.man + 1


def mx_gemm(A, B, a_fmt=MXFP8_E4M3, b_fmt=None, *, accumulator=None, rounding="half_even",
            seed=None) -> GemmResult:
    """C = A @ B with both operands block-scaled along K: per-block exact dot products, scaled by the two
    block scales, added to the accumulator one correctly rounded addition per block (block order); a
    tensor scale (NVFP4) is applied at the end by one more rounding to the accumulator's format.

    ``A`` (M, K) and ``B`` (K, N) are real arrays (quantized here with ``rounding``; blocks along K) or
    ``BlockArray`` objects blocked along K. ``accumulator``: a ``FloatAccumulator`` (or a Float format,
    which gets its register type's defaults: half_even, ieee; default FP32). Returns a ``GemmResult`` (``values``/``acc`` float64, ``codes`` the
    accumulator's bit patterns, ``overflow_count`` per output).
    """
    a_fmt = _block_format(a_fmt, "a_fmt")
    b_fmt = a_fmt if b_fmt is None else _block_format(b_fmt, "b_fmt")
    if not isinstance(accumulator, Accumulator):      # a format: its register type's defaults (half_even, ieee)
        accumulator = Accumulator("fp32" if accumulator is None else accumulator)
    if not accumulator.is_float:
        raise InvalidArgument(f"mx_gemm accumulates in a Float format, got {accumulator.fmt}")
    qa = A if isinstance(A, BlockArray) else block_quantize(_as2d(A, "A"), a_fmt, axis=1, rounding=rounding, seed=seed)
    qb = B if isinstance(B, BlockArray) else block_quantize(_as2d(B, "B"), b_fmt, axis=0, rounding=rounding, seed=seed)
    if qa.elements.ndim != 2 or qa.axis != 1:
        raise InvalidArgument("A must be 2-D and blocked along axis 1 (K)")
    if qb.elements.ndim != 2 or qb.axis != 0:
        raise InvalidArgument("B must be 2-D and blocked along axis 0 (K)")
    if qa.fmt.block != qb.fmt.block:
        raise InvalidArgument(f"A and B must share the block size, got {qa.fmt.block} and {qb.fmt.block}")
    M, K = qa.elements.shape
    if qb.elements.shape[0] != K:
        raise InvalidArgument(f"A is {qa.elements.shape} and B is {qb.elements.shape}: inner dimensions must match")
    N = qb.elements.shape[1]
    blk = qa.fmt.block
    nblk = qa.scales.shape[1]
    Kp = nblk * blk
    ea, eb = qa.fmt.element, qb.fmt.element
    (alo, ahi, abits), (blo, bhi, bbits) = _lsb_range(ea), _lsb_range(eb)
    sbits = max(_lsb_range(qa.fmt.scale)[2], 1) + max(_lsb_range(qb.fmt.scale)[2], 1)
    e0 = alo + blo
    span = ahi + bhi - e0
    lg = max(blk, 1).bit_length()
    if abits + bbits + max(span - BK.LIMB, 0) + lg + sbits >= 62 or BK.LIMB + lg + sbits >= 62:
        raise InvalidArgument(f"block dot products of {ea} x {eb} span {span + abits + bbits} bits; the exact two-limb "
                         "sum handles MX element formats (E5M2, E4M3, E3M2, E2M3, E2M1, INT8) with 8-bit scales")
    asig, aexp = _pad(*_sig_exp(qa.elements, ea), Kp)
    bsig, bexp = _pad(*_sig_exp(qb.elements.T, eb), Kp)
    assig, asexp = _sig_exp(qa.scales, qa.fmt.scale)
    bssig, bsexp = _sig_exp(qb.scales.T, qb.fmt.scale)
    dp = Datapath(a=Float(8, 23), b=Float(8, 23), accumulator=accumulator)
    reg = float_config(dp).acc
    acc = np.zeros((M, N), dtype=np.float64)
    nov = np.zeros((M, N), dtype=np.int64)
    if M * N:
        with serial_below(M * N * Kp):
            notice_first_use(BK.block_gemm_kernel)(
                asig, aexp, np.ascontiguousarray(assig), np.ascontiguousarray(asexp), bsig, bexp,
                np.ascontiguousarray(bssig), np.ascontiguousarray(bsexp), np.int64(blk), np.int64(e0), reg, acc, nov)
    factor = qa.tensor_scale * qb.tensor_scale       # two FP32 values: exact in float64
    if factor != 1.0 and M * N:
        out = np.empty_like(acc)
        with serial_below(M * N):
            notice_first_use(BK.scale_epilogue_kernel)(acc, float(factor), reg, out, nov)
        acc = out
    nan_rows = np.any(np.isnan(qa.scales), axis=1)
    nan_cols = np.any(np.isnan(qb.scales), axis=0)
    acc[nan_rows, :] = np.nan
    acc[:, nan_cols] = np.nan
    fmt = accumulator.fmt
    codes = np.where(np.isnan(acc), -1, fmt.encode(np.nan_to_num(acc, nan=0.0)).astype(np.int64)) \
        if not fmt.has_nan else fmt.encode(acc).astype(np.int64)
    return GemmResult(values=acc.copy(), codes=codes, acc=acc, overflow_count=nov, acc_values=acc.copy(),
                      datapath=dp)


def _as2d(x, name):
    arr = as_array(name, x)
    if arr.ndim != 2:
        raise InvalidArgument(f"{name} must be a 2-D array, got shape {arr.shape}")
    return arr


def _pad(sig, exp, Kp):
    K = sig.shape[1]
    if K < Kp:
        sig = np.concatenate([sig, np.zeros((sig.shape[0], Kp - K), dtype=np.int64)], axis=1)
        exp = np.concatenate([exp, np.zeros((exp.shape[0], Kp - K), dtype=np.int64)], axis=1)
    return np.ascontiguousarray(sig), np.ascontiguousarray(exp)
