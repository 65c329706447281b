"""The output stage's integer arithmetic: register overflow and requantization, vectorised over outputs.

Each requantizer reproduces one hardware/library convention exactly, in int64 arithmetic.
"""
from __future__ import annotations

import numpy as np

from fxsim._kernels.int_gemm import register_range
from fxsim._kernels.requant import requant_f32_into, shift_round_array

from fxsim.errors import InvalidArgument, RegisterOverflow
from fxsim.formats import Fixed, ints_to_values
from fxsim.validate import kernel_array
from fxsim.modes import Overflow, Rounding

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


def register_overflow(x, bits: int, signed: bool, mode: Overflow) -> np.ndarray:
    """Apply a ``bits``-wide register's overflow mode to int64 values ``x``."""
    x = np.asarray(x, dtype=np.int64)
    if bits >= 64:
        return x
    lo, hi = (int(v) for v in register_range(bits, signed, False))
    if mode == Overflow.WRAP:
        y = x & np.int64((1 << bits) - 1)
        if not signed:
            return y
        sb = np.int64(1 << (bits - 1))
        return (y ^ sb) - sb                       # sign-extend without forming 2**bits (bits may be 63)
    if mode == Overflow.SATURATE:
        return np.clip(x, lo, hi)
    if mode == Overflow.SATURATE_SYMMETRIC:
        return np.clip(x, -hi if signed else lo, hi)
    if mode == Overflow.SATURATE_ZERO:
        return np.where((x < lo) | (x > hi), 0, x)
    if mode == Overflow.ERROR:
        bad = (x < lo) | (x > hi)
        if np.any(bad):
            raise RegisterOverflow(f"{int(bad.sum())} value(s) overflow a {bits}-bit register; first at flat index "
                                f"{int(np.flatnonzero(bad)[0])}")
        return x
    raise InvalidArgument(f"overflow mode {mode!r} does not apply to an integer register")


def rounding_shift(x, shift, rounding: Rounding) -> np.ndarray:
    """round(x / 2**shift) per element (shift may broadcast; negative = exact left shift)."""
    x = kernel_array(x, np.int64)
    s = kernel_array(np.broadcast_to(np.asarray(shift, dtype=np.int64), x.shape), np.int64)
    if np.any(s > 62):
        raise InvalidArgument(f"shift must be at most 62, got {int(s.max())}")
    out = np.empty_like(x)
    shift_round_array(x.ravel(), s.ravel(), int(rounding), out.ravel())
    return out


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values (INT32_MIN * INT32_MIN -> INT32_MAX)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    t = ab + nudge
    high = np.where(t >= 0, t >> 31, -((-t) >> 31))   # C division: truncation toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, high)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: round half away from zero, by masks and an arithmetic shift."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def _wrap32(x):
    return ((np.asarray(x, dtype=np.int64) + 2 ** 31) & 0xFFFFFFFF) - 2 ** 31


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLite/gemmlowp MultiplyByQuantizedMultiplier (double rounding): left shift in int32, SRDHM, then
    RoundingDivideByPOT. ``shift`` > 0 shifts left first, < 0 divides by 2**-shift."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    xl = _wrap32(np.asarray(x, dtype=np.int64) << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(xl, multiplier), right)


def multiply_by_quantized_multiplier_single_rounding(x, multiplier, shift) -> np.ndarray:
    """TFLite's TFLITE_SINGLE_ROUNDING variant (as TOSA): (x*M + 2**(30-shift)) >> (31-shift)."""
    total = 31 - np.asarray(shift, dtype=np.int64)
    rnd = np.int64(1) << (total - 1)
    return (np.asarray(x, dtype=np.int64) * np.asarray(multiplier, dtype=np.int64) + rnd) >> total


_BIG = 2 ** 62        # values beyond this leave the int64 path and are carried as exact Python integers


def _check_channels(requant, out_shape):
    """Per-channel parameters must broadcast to the outputs: a 1-D array has one entry per output column."""
    for name in ("multiplier", "shift", "scale"):
        v = getattr(requant, name)
        if v is None or np.ndim(v) == 0:
            continue
        try:
            ok = np.broadcast_shapes(np.shape(v), out_shape) == tuple(out_shape)
        except ValueError:
            ok = False
        if not ok:
            if np.ndim(v) == 1:
                raise InvalidArgument(f"per-channel requant {name} has {np.shape(v)[-1]} entries for "
                                      f"{out_shape[-1]} output channels; give one per output channel, or a scalar")
            raise InvalidArgument(f"requant {name} of shape {np.shape(v)} does not broadcast to the output shape "
                                  f"{tuple(out_shape)}")


def _exact_where_big(out, exact_of, big):
    """``out`` with the elements flagged ``big`` replaced by exact Python integers (an object array)."""
    if not np.any(big):
        return out
    obj = out.astype(object)
    for idx in zip(*np.nonzero(big)):
        obj[idx] = exact_of(idx)
    return obj


def requantize(acc, requant, acc_bits: int) -> np.ndarray:
    """Scale int64 accumulators per ``requant`` (a datapath.Requant); returns the values before the zero
    point: int64, or an object array of exact Python integers where a value reaches 2**62 (a left shift or a
    large float32 scale); the output register then saturates or wraps them exactly."""
    acc = np.asarray(acc, dtype=np.int64)
    kind = requant.kind
    if acc.ndim:
        _check_channels(requant, acc.shape)
    if kind in ("gemmlowp", "gemmlowp_single"):
        if acc_bits > 32:
            raise InvalidArgument(f"{kind} requantization takes an int32 accumulator; this one has {acc_bits} bits")
        f = multiply_by_quantized_multiplier if kind == "gemmlowp" else multiply_by_quantized_multiplier_single_rounding
        return f(acc, requant.multiplier, requant.shift)
    if kind == "float32":
        scale = np.asarray(requant.scale, dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            y = np.rint(acc.astype(np.float32) * scale)   # float32(acc) * float32 scale in float32, half even
        if not np.all(np.isfinite(y)):
            raise InvalidArgument(f"float32 requantization overflows float32 (accumulator times scale "
                                  f"{requant.scale!r} exceeds 3.4e38)")
        y = np.broadcast_to(y, acc.shape)
        big = np.abs(y) >= _BIG
        return _exact_where_big(np.where(big, 0, y).astype(np.int64), lambda i: int(y[i]), big)
    if kind == "shift":
        shift = np.broadcast_to(np.asarray(requant.shift, dtype=np.int64), acc.shape)
        return _exact_where_big(rounding_shift(acc, shift, requant.rounding),
                                lambda i: int(acc[i]) << int(-shift[i]), _left_overflow(acc, shift))
    # dyadic
    m = np.asarray(requant.multiplier, dtype=object)
    mmax = max(abs(int(v)) for v in np.atleast_1d(m).ravel())
    amax = int(np.abs(acc).max()) if acc.size else 0
    if amax * mmax >= 2 ** 63:
        raise InvalidArgument(f"dyadic requantization: accumulator ({amax.bit_length()} bits) times multiplier "
                              f"({mmax.bit_length()} bits) exceeds 63 bits; use a narrower multiplier")
    prod = acc * np.asarray(requant.multiplier, dtype=np.int64)
    shift = np.broadcast_to(np.asarray(requant.shift, dtype=np.int64), prod.shape)
    return _exact_where_big(rounding_shift(prod, shift, requant.rounding),
                            lambda i: int(prod[i]) << int(-shift[i]), _left_overflow(prod, shift))


def _left_overflow(x, shift):
    """Where a left shift (negative ``shift``) of ``x`` reaches 2**62 in magnitude."""
    left = np.minimum(-shift, 62)
    with np.errstate(over="ignore"):
        return (shift < 0) & (np.abs(x) >= (np.int64(1) << (62 - np.maximum(left, 0))))


def _register_overflow_exact(v: int, bits: int, signed: bool, mode: Overflow) -> int:
    """``register_overflow`` on one Python integer of any size."""
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    lo = -hi - 1 if signed else 0
    if mode == Overflow.WRAP:
        y = v & ((1 << bits) - 1)
        return y - (1 << bits) if signed and y > hi else y
    if mode == Overflow.SATURATE:
        return min(max(v, lo), hi)
    if mode == Overflow.SATURATE_SYMMETRIC:
        return min(max(v, -hi if signed else lo), hi)
    if mode == Overflow.SATURATE_ZERO:
        return v if lo <= v <= hi else 0
    if not lo <= v <= hi:
        raise RegisterOverflow(f"a value overflows a {bits}-bit register")
    return v


def output_stage(acc, stage, acc_fmt, acc_overflow: Overflow, bias=None, values_out=None):
    """The output stage after accumulation, in hardware order; returns (int64 codes, float64 values), the
    values written into ``values_out`` when given.

    1. bias add (when the bias was not preloaded): acc + bias in a ``stage.bias_bits``-wide register
       (default: the accumulator's width) with the accumulator's overflow mode;
    2. requantization (``stage.requant``), then its output zero point is added;
    3. activation clamp on integer codes: ``"relu"`` = max(x, zero point), (lo, hi) = clip (ReLU6 = (zp, q(6)));
    4. the output register ``stage.fmt`` with ``stage.overflow``.
    Values are the output register's codes times its resolution (the accumulator's without a requant or
    output format; plain integers after a requant without an output format).
    """
    x = np.asarray(acc, dtype=np.int64)
    if bias is None:
        fused = _fused_float32_stage(x, stage, values_out)
        if fused is not None:
            return fused
    frac = acc_fmt.frac
    if bias is not None:
        bb = stage.bias_bits or acc_fmt.bits
        ovf = acc_overflow if acc_overflow != Overflow.ERROR else Overflow.WRAP
        s = x + bias
        carry = ((x >= 0) & (bias >= 0) & (s < 0)) | ((x < 0) & (bias < 0) & (s >= 0))
        if np.any(carry):
            raise InvalidArgument("bias add overflows int64; use a narrower accumulator or bias")
        x = register_overflow(s, bb, acc_fmt.signed or bb == 64, ovf)
    zp = 0
    if stage.requant is not None:
        width = (stage.bias_bits or acc_fmt.bits) if bias is not None else acc_fmt.bits
        x = requantize(x, stage.requant, width)
        zp = int(stage.requant.zero_point)
        x = x + zp
        frac = 0
    if stage.activation == "relu":
        x = np.maximum(x, zp)
    elif stage.activation is not None:
        x = np.clip(x, int(stage.activation[0]), int(stage.activation[1]))
    if stage.fmt is not None:
        if stage.requant is None and stage.fmt.frac != acc_fmt.frac:
            raise InvalidArgument(f"output format {stage.fmt} has {stage.fmt.frac} fractional bits but the "
                                  f"accumulator has {acc_fmt.frac}; move the binary point with "
                                  "requant=Requant('shift', shift=..., rounding=...)")
        if x.dtype == object:       # exact integers beyond 2**62 from the requantizer
            x = np.vectorize(lambda v: _register_overflow_exact(int(v), stage.fmt.bits, stage.fmt.signed,
                                                                stage.overflow), otypes=[object])(x)
            x = np.array(x.tolist(), dtype=np.int64).reshape(x.shape)
        else:
            x = register_overflow(x, stage.fmt.bits, stage.fmt.signed, stage.overflow)
        frac = stage.fmt.frac
    elif x.dtype == object:
        if any(not -2 ** 63 <= int(v) < 2 ** 63 for v in x.ravel()):
            raise InvalidArgument("requantized values exceed int64 and there is no output register to saturate "
                                  "them; give the output stage a format (fmt=...)")
        x = np.array(x.tolist(), dtype=np.int64).reshape(x.shape)
    return x, ints_to_values(x, frac, out=values_out)


def _fused_float32_stage(x, stage, values_out):
    """``output_stage`` in one compiled pass (``requant_f32_into``) for the common accelerator/ONNX output
    stage: float32 requantization (one scale, or one per output column), activation, and a Fixed output
    register of at most 53 bits that wraps or saturates; (codes, values), or None where it does not apply
    or the kernel hands the values back (non-finite or huge products): the general stage then computes,
    or raises, the same."""
    rq, fmt = stage.requant, stage.fmt
    if (rq is None or rq.kind != "float32" or not isinstance(fmt, Fixed) or fmt.bits > 53
            or not -960 <= fmt.frac <= 1022 or x.ndim != 2
            or stage.overflow not in (Overflow.WRAP, Overflow.SATURATE, Overflow.SATURATE_SYMMETRIC,
                                      Overflow.SATURATE_ZERO)):
        return None
    scale = np.asarray(rq.scale, dtype=np.float32)
    if scale.ndim > 1 or (scale.ndim == 1 and scale.shape[0] != x.shape[1]):
        return None
    act_lo, act_hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    if stage.activation == "relu":
        act_lo = int(rq.zero_point)
    elif stage.activation is not None:
        act_lo, act_hi = int(stage.activation[0]), int(stage.activation[1])
    if values_out is None or values_out.shape != x.shape or not values_out.flags.c_contiguous:
        values_out = np.empty(x.shape, dtype=np.float64)
    codes = np.empty(x.shape, dtype=np.int64)
    lo, hi = (int(v) for v in register_range(fmt.bits, fmt.signed, False))
    status = requant_f32_into(kernel_array(x, np.int64), kernel_array(np.broadcast_to(scale, x.shape[1:]), np.float32),
                              np.int64(rq.zero_point), np.int64(act_lo), np.int64(act_hi), np.int64(lo),
                              np.int64(hi), np.int64(fmt.bits), bool(fmt.signed), np.int64(int(stage.overflow)),
                              2.0 ** -fmt.frac, codes, values_out)
    return None if status else (codes, values_out)
