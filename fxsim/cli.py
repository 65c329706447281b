"""The ``fxsim`` command: formats, run, sweep, export, verify, demo.

Exit codes: 0 success; 1 a verification found mismatches or checksum failures; 2 bad input (spec,
arguments, missing or unreadable files, an output that exists without --force or that --force may not
replace, a directory verify cannot read as golden vectors); 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

EXIT_OK, EXIT_MISMATCH, EXIT_INPUT = 0, 1, 2
EXIT_INTERRUPTED = 130          # 128 + SIGINT, what shells report for a command stopped by Ctrl-C


def _bits_range(text):
    try:
        if ":" in text:
            lo, hi = (int(t) for t in text.split(":"))
            if not 2 <= lo <= hi <= 62:
                raise ValueError
            return list(range(lo, hi + 1))
        return [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--acc-bits must be LO:HI with 2 <= LO <= HI <= 62, or a comma list; got {text!r}")


def _trace(text):
    try:
        i, j = (int(t) for t in text.split(","))
        return (i, j)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--trace must be I,J (output row and column), got {text!r}")


def _seconds(text):
    try:
        v = float(text)
        if not 0 < v <= 3600:
            raise ValueError
        return v
    except ValueError:
        raise argparse.ArgumentTypeError(f"--connect-timeout must be a number of seconds in (0, 3600], "
                                         f"got {text!r}") from None


def build_parser():
    p = argparse.ArgumentParser(prog="fxsim", description="Bit-accurate simulation of accelerator datapaths.")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("formats", help="table of known formats, their ml_dtypes names and aliases",
                       description="Every named format with its exact range and resolution, the ml_dtypes or "
                       "NumPy dtype it is, and the other names it answers to.")
    f.add_argument("filter", nargs="?", default=None,
                   help="show only formats whose name or an alias contains this text (case-insensitive), or "
                        "the format this spelling names (e.g. 'fixed<16,6>', float8_e4m3)")
    r = sub.add_parser("run", help="simulate a layer spec and summarise")
    r.add_argument("spec")
    s = sub.add_parser("sweep", help="sweep accumulator widths")
    s.add_argument("spec")
    s.add_argument("--acc-bits", type=_bits_range, default=list(range(8, 33)))
    s.add_argument("--overflow", default="saturate,wrap")
    s.add_argument("--order", default="sequential", help="comma list of sequential, tree, chunked")
    s.add_argument("--lanes", type=int, default=4)
    s.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://host:port)")
    s.add_argument("--connect-timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="give up on --scheduler when it does not answer as a Dask scheduler within this "
                        "time (default 10)")
    s.add_argument("--workers", type=int, default=None)
    s.add_argument("--out", default=None, help="directory for sweep.csv/json/png")
    s.add_argument("--force", action="store_true")
    e = sub.add_parser("export", help="write golden vectors")
    e.add_argument("spec")
    e.add_argument("--out", required=True)
    e.add_argument("--format", default="hex", choices=["hex", "coe", "mif", "npy", "bin"])
    e.add_argument("--trace", type=_trace, action="append", default=[])
    e.add_argument("--force", action="store_true")
    v = sub.add_parser("verify", help="recompute a golden-vector directory")
    v.add_argument("dir")
    d = sub.add_parser("demo", help="the main job on shipped data")
    d.add_argument("--out", default="fxsim-demo")
    d.add_argument("--force", action="store_true")
    d.add_argument("--quick", action="store_true")
    return p


def cmd_formats(args):
    from .formats import ML_DTYPES_NAMES, exact_number, format_table
    rows = format_table(args.filter)
    if not rows:
        print(f"fxsim formats: no format matches {args.filter!r}", file=sys.stderr)
        return EXIT_INPUT
    table = [("name", "bits", "min", "max", "resolution", "specials", "dtype", "aliases")]
    for row in rows:
        table.append((row["name"], str(row["bits"]), exact_number(row["min"]), exact_number(row["max"]),
                      exact_number(row["resolution"]), row["specials"], row["dtype"] or "-",
                      ", ".join(row["aliases"]) or "-"))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("  ".join(c.rjust(w) if i in (1, 2, 3, 4) else c.ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    if not args.filter:
        print()
        print("ml_dtypes names -> fxsim names (bare names follow OCP: e4m3 is float8_e4m3fn, not float8_e4m3):")
        for dname, key in ML_DTYPES_NAMES.items():
            print(f"  {dname:<20} {key}")
        print()
        print("Also: intN, uintN, Qm.n, UQm.n, Fixed(W,F), hls4ml fixed<W,I[,Q,O]> / ufixed<W,I> / int<N> / uint<N>,")
        print("ap_fixed<W,I[,Q,O]>, ap_ufixed, ap_int<W>, ac_fixed<W,I[,S,Q,O]>, ac_int<W[,S]>, fixdt(s,w,f), eXmY[_suffixes].")
        print("min, max and resolution are exact: integers in full, 2**k, or the float64 value's shortest decimal.")
    return EXIT_OK


def summarize(result, A, B, bias, spec) -> dict:
    """Overflow (wrap or saturation) counts, and max abs error and SQNR of the raw accumulators against
    the exact sum (an unbounded accumulator) and against a float64 reference (NumPy's matmul)."""
    dp = spec.datapath
    acc_fmt = dp.accumulator.fmt
    out = dict(result.summary())
    out["overflow_mode"] = dp.accumulator.overflow.name.lower()
    got = result.acc_values if result.acc_values is not None else np.asarray(result.acc, dtype=np.float64)
    if result.exact is not None:
        exact_vals = np.ldexp(result.exact.astype(np.float64), -acc_fmt.frac)
    elif spec.op == "gemm" and spec.pass_ == "forward":
        exact_vals = exact_gemm(A, B, bias if dp.bias_preload else None, dp.a_zero_point, dp.b_zero_point)
    else:
        exact_vals = None
    if exact_vals is not None:
        err = got - exact_vals
        out["acc_max_abs_error_vs_exact"] = float(np.max(np.abs(err))) if err.size else 0.0
        out["acc_sqnr_db_vs_exact"] = _sqnr(exact_vals, got)
    if spec.op == "gemm" and spec.pass_ == "forward":
        Az = np.asarray(A, dtype=np.float64) - _zp_value(dp.a, dp.a_zero_point)
        Bz = np.asarray(B, dtype=np.float64) - _zp_value(dp.b, dp.b_zero_point)
        ref = Az @ Bz
        if bias is not None and dp.bias_preload:
            ref = ref + bias
        out["acc_max_abs_error_vs_float64"] = float(np.max(np.abs(got - ref))) if ref.size else 0.0
        out["acc_sqnr_db_vs_float64"] = _sqnr(ref, got)
    return out


def _zp_value(fmt, zero_point):
    return float(np.ldexp(float(zero_point), -fmt.frac)) if zero_point else 0.0


def exact_gemm(A, B, bias=None, a_zero_point=0, b_zero_point=0) -> np.ndarray:
    """The exact sums of a GEMM on float operands, each rounded once to float64 (every product and partial
    sum exact; at kernel speed, see fxsim.exact)."""
    from .exact import exact_gemm as _exact
    return _exact(A, B, bias, a_zero_point, b_zero_point)


def _sqnr(ref, got):
    """10 log10(signal / noise) in dB; inf when bit-exact."""
    with np.errstate(all="ignore"):
        noise = float(np.sum((np.asarray(got) - ref) ** 2))
        sig = float(np.sum(np.asarray(ref) ** 2))
        if noise == 0:
            return float("inf")
        if not np.isfinite(noise):
            return float("-inf")
        return float(10 * np.log10(sig / noise)) if sig else float("-inf")


def cmd_run(args):
    from .spec import load_spec, make_data, run_layer
    spec = load_spec(args.spec)
    if spec.op == "batch_norm":
        from .spec import run_batch_norm
        print(spec.batch_norm)
        for k, v in run_batch_norm(spec).items():
            print(f"  {k}: {v}")
        return EXIT_OK
    data = make_data(spec)
    result, (A, B, bias) = run_layer(spec, data=data)
    print(spec.datapath)
    for k, v in summarize(result, A, B, bias, spec).items():
        print(f"  {k}: {v}")
    return EXIT_OK


def cmd_sweep(args):
    from .spec import load_spec
    from .sweep import format_table, run_sweep, sweep_configs, write_sweep
    from .outputs import output_dir
    spec = load_spec(args.spec)
    out = output_dir(args.out, "sweep", force=args.force) if args.out else None   # checked before the work
    if spec.op != "gemm" and spec.op != "conv2d":
        raise ValueError(f"sweep supports gemm and conv2d layers, got {spec.op}")
    overflows = [o.strip() for o in args.overflow.split(",") if o.strip()]
    orders = [o.strip() for o in args.order.split(",") if o.strip()]
    configs = sweep_configs(args.acc_bits, overflows, orders, args.lanes)
    if args.connect_timeout is not None and not args.scheduler:
        raise ValueError("--connect-timeout applies to --scheduler only")
    result = run_sweep(spec, configs, scheduler=args.scheduler, workers=args.workers,
                       connect_timeout=args.connect_timeout or 10.0)
    print(format_table(result))
    if args.out:
        with out as tmp:
            write_sweep(result, tmp)
        print(f"wrote {os.path.join(args.out, 'sweep.csv')}, sweep.json, sweep.png")
    return EXIT_OK


def cmd_export(args):
    from .export import export_layer
    from .spec import load_spec
    spec = load_spec(args.spec)
    manifest = export_layer(spec, args.out, file_format=args.format, traces=args.trace, force=args.force)
    print(f"wrote {len(manifest['files'])} files and manifest.json to {args.out}")
    return EXIT_OK


def cmd_verify(args):
    from .verify import verify_directory
    report = verify_directory(args.dir)
    if report.malformed:
        for p in report.malformed:
            print(f"MALFORMED {p}")
        print(f"fxsim verify: error: {args.dir} is not a golden-vector directory fxsim can check", file=sys.stderr)
        return EXIT_INPUT
    if report.mismatches:
        for p in report.mismatches:
            print(f"MISMATCH {p}")
        return EXIT_MISMATCH
    print(f"OK: every file in {args.dir} matches its checksum and the recomputation")
    return EXIT_OK


def cmd_demo(args):
    from .demo import run_demo
    run_demo(args.out, force=args.force, quick=args.quick)
    return EXIT_OK


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:          # --help (0) or a usage error (2), already printed by argparse
        return int(exc.code or 0)
    from .errors import FxsimError
    from .spec import SpecError
    handlers = {"formats": cmd_formats, "run": cmd_run, "sweep": cmd_sweep, "export": cmd_export,
                "verify": cmd_verify, "demo": cmd_demo}
    from .interrupts import immediate_interrupts
    try:
        with immediate_interrupts():    # Ctrl-C stops at once, even inside a kernel: exit 130, one line
            return handlers[args.command](args)
    except (FxsimError, SpecError, ValueError, TypeError, FileExistsError, FileNotFoundError, OverflowError) as exc:
        print(f"fxsim {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:          # Ctrl-C where the native handler is not available: the same line
        print("fxsim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:           # output piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
