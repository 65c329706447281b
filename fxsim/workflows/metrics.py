"""What a layer run reports: the raw accumulator and the output register against the exact sums (errors, SQNR,
overflow), and how a summary is shown to people."""
from __future__ import annotations

import numpy as np
from fxsim.datapath import Accumulator
from fxsim.engines.exact import exact_gemm as _exact
from fxsim.errors import InvalidArgument
from fxsim.formats import Fixed, Float

__all__ = ["summarize", "show", "print_summary", "exact_gemm", "compare", "sqnr_db"]


def summarize(result, A, B, bias, spec) -> dict:
    """Both registers, each labelled by its prefix: ``acc_`` the raw accumulator (overflow counts, max abs
    error and SQNR against the exact sum, i.e. an unbounded accumulator, and against a float64 reference,
    NumPy's matmul) and ``out_`` the output register after the output stage (against the output stage
    applied to the exact sums). A Float accumulator is its own output register."""
    dp = spec.datapath
    acc_fmt = dp.accumulator.fmt
    base = result.summary()
    out = {"outputs": base["outputs"], "acc_format": str(acc_fmt),
           "acc_overflow_mode": dp.accumulator.overflow.name.lower(),
           "acc_overflow_events": base["overflow_events"], "acc_outputs_with_overflow": base["outputs_with_overflow"],
           "acc_outputs_differing_from_exact": base["outputs_differing_from_exact"],
           "acc_max_bits_needed": base["max_bits_needed"]}
    got = result.acc_values if result.acc_values is not None else np.asarray(result.acc, dtype=np.float64)
    exact_vals = None
    if result.exact is not None:
        exact_vals = np.ldexp(result.exact.astype(np.float64), -acc_fmt.frac)
    elif isinstance(acc_fmt, Float) and (bias is None or dp.bias_preload):
        from fxsim.workflows.sweep import kulisch_exact
        try:                  # the exact sums at kernel speed
            exact_vals = kulisch_exact(spec, (A, B, bias))
        except InvalidArgument:
            exact_vals = None
    if exact_vals is None and spec.op == "gemm" and spec.pass_ == "forward":
        exact_vals = exact_gemm(A, B, bias if dp.bias_preload else None, dp.a_zero_point, dp.b_zero_point)
    if exact_vals is not None:
        err = got - exact_vals
        if out["acc_outputs_differing_from_exact"] is None:
            out["acc_outputs_differing_from_exact"] = int(np.count_nonzero(got != exact_vals))
        out["acc_max_abs_error_vs_exact"] = float(np.max(np.abs(err))) if err.size else 0.0
        out["acc_sqnr_db_vs_exact"] = sqnr_db(exact_vals, got)
    if spec.op == "gemm" and spec.pass_ == "forward":
        Az = np.asarray(A, dtype=np.float64) - _zp_value(dp.a, dp.a_zero_point)
        Bz = np.asarray(B, dtype=np.float64) - _zp_value(dp.b, dp.b_zero_point)
        ref = Az @ Bz
        if bias is not None and dp.bias_preload:
            ref = ref + bias
        out["acc_max_abs_error_vs_float64"] = float(np.max(np.abs(got - ref))) if ref.size else 0.0
        out["acc_sqnr_db_vs_float64"] = sqnr_db(ref, got)
    if isinstance(acc_fmt, Float):
        out["out_register"] = "the accumulator (a float accumulator is its own output register)"
        return out
    out["out_register"] = str(dp.output)
    out["out_format"] = str(dp.output.fmt or acc_fmt)
    ref_out = _exact_output(spec, (A, B, bias))
    if ref_out is None:
        out["out_exact_reference"] = "not available: the exact sums of this layer exceed 62 bits"
        return out
    ref_codes, ref_values = ref_out
    out["out_outputs_differing_from_exact"] = int(np.count_nonzero(result.codes != ref_codes))
    err = result.values - ref_values
    out["out_max_abs_error_vs_exact"] = float(np.max(np.abs(err))) if err.size else 0.0
    out["out_sqnr_db_vs_exact"] = sqnr_db(ref_values, result.values)
    return out


def _exact_output(spec, data):
    """The output stage applied to the exact sums: the same datapath and order with a 62-bit accumulator
    at the same binary point that no partial sum overflows; None where the sums do not fit it."""
    from fxsim.workflows.run import run_layer
    dp = spec.datapath
    acc = dp.accumulator.fmt
    wide = dp.replace(accumulator=Accumulator(Fixed(62, acc.frac, True), overflow="wrap",
                                              rounding=dp.accumulator.rounding))
    try:
        ref, _ = run_layer(spec, wide, data=data)
    except InvalidArgument:
        return None
    return ref.codes, ref.values


def show(value, key="") -> str:
    """A summary value for people: integers as they are, floats to 6 significant digits, an infinite SQNR
    (a ``key`` naming an SQNR) as "inf (bit-exact)", dicts as "key: value; ..." and lists comma-separated."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if np.isnan(v):
            return "n/a"
        if np.isinf(v):
            return ("inf (bit-exact)" if "sqnr" in key else "inf") if v > 0 else "-inf"
        return f"{v:.6g}"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {show(v, k)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(show(v) for v in value)
    return str(value)


def print_summary(summary: dict, file=None):
    """``key: value`` lines, the raw accumulator's and the output register's under their own headings;
    keys without a value (None) are left out."""
    groups = (("", lambda k: not k.startswith(("acc_", "out_"))), ("raw accumulator:", lambda k: k.startswith("acc_")),
              ("output register:", lambda k: k.startswith("out_")))
    for head, member in groups:
        keys = [k for k in summary if member(k) and summary[k] is not None]
        if not keys:
            continue
        if head:
            print(head, file=file)
        for k in keys:
            print(f"  {k}: {show(summary[k], k)}", file=file)


def _zp_value(fmt, zero_point):
    return float(np.ldexp(float(zero_point), -fmt.frac)) if zero_point else 0.0


def exact_gemm(A, B, bias=None, a_zero_point=0, b_zero_point=0) -> np.ndarray:
    """The exact sums of a GEMM on float operands, each rounded once to float64 (every product and partial
    sum exact; at kernel speed, see fxsim.engines.exact)."""
    return _exact(A, B, bias, a_zero_point, b_zero_point)


def compare(ref, got):
    """(share of elements that differ, max abs error, SQNR in dB) of ``got`` against ``ref``: equal elements
    (NaN where both are NaN included) are no error; the SQNR is inf when bit-exact, -inf when the noise is
    not finite or there is no signal."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    with np.errstate(all="ignore"):
        differ = ~((got == ref) | (np.isnan(got) & np.isnan(ref)))
        err = np.where(differ, got - ref, 0.0)
        sig = float(np.sum(ref ** 2))
        noise = float(np.sum(err ** 2))
        if not differ.any():
            sqnr = float("inf")
        elif not np.isfinite(noise) or not sig > 0:
            sqnr = float("-inf")
        else:
            sqnr = float(10 * np.log10(sig / noise))
    maxerr = float(np.max(np.abs(err))) if err.size else 0.0
    return (float(np.mean(differ)) if differ.size else 0.0), maxerr, sqnr


def sqnr_db(ref, got):
    """10 log10(signal / noise) in dB (:func:`compare`'s); inf when bit-exact."""
    return compare(ref, got)[2]
