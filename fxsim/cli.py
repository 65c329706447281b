"""The ``fxsim`` command: formats, run, sweep, export, verify, testbench, demo.

Exit codes: 0 success; 1 a verification found mismatches or checksum failures; 2 bad input (spec,
arguments, missing files, an output directory that exists without --force).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

EXIT_OK, EXIT_MISMATCH, EXIT_INPUT = 0, 1, 2


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
        idx = tuple(int(t) for t in text.split(","))
        if len(idx) not in (2, 4):
            raise ValueError
        return idx
    except ValueError:
        raise argparse.ArgumentTypeError(f"--trace must be I,J (gemm output row and column) or N,O,OH,OW (conv2d "
                                         f"output), got {text!r}")


def build_parser():
    p = argparse.ArgumentParser(prog="fxsim", description="Bit-accurate simulation of accelerator datapaths.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("formats", help="table of known formats")
    r = sub.add_parser("run", help="simulate a layer spec and summarise")
    r.add_argument("spec")
    s = sub.add_parser("sweep", help="sweep accumulator widths")
    s.add_argument("spec")
    s.add_argument("--acc-bits", type=_bits_range, default=list(range(8, 33)))
    s.add_argument("--overflow", default="saturate,wrap")
    s.add_argument("--order", default="sequential", help="comma list of sequential, tree, chunked")
    s.add_argument("--lanes", type=int, default=4)
    s.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://host:port)")
    s.add_argument("--workers", type=int, default=None)
    s.add_argument("--out", default=None, help="directory for sweep.csv/json/png")
    s.add_argument("--force", action="store_true")
    e = sub.add_parser("export", help="write golden vectors")
    e.add_argument("spec")
    e.add_argument("--out", required=True)
    e.add_argument("--format", default="hex", choices=["hex", "coe", "mif", "npy", "bin", "memb"])
    e.add_argument("--trace", type=_trace, action="append", default=[],
                   help="an output to trace cycle by cycle: I,J (gemm) or N,O,OH,OW (conv2d)")
    e.add_argument("--force", action="store_true")
    from .testbench_cli import add_export_options, add_testbench_parser
    add_export_options(e)
    add_testbench_parser(sub)
    v = sub.add_parser("verify", help="recompute a golden-vector directory")
    v.add_argument("dir")
    d = sub.add_parser("demo", help="the main job on shipped data")
    d.add_argument("--out", default="fxsim-demo")
    d.add_argument("--force", action="store_true")
    d.add_argument("--quick", action="store_true")
    return p


def cmd_formats(args):
    from .formats import format_table
    print(f"{'name':<14}{'bits':>5}{'min':>14}{'max':>14}{'resolution':>14}  specials")
    for row in format_table():
        print(f"{row['name']:<14}{row['bits']:>5}{row['min']:>14.6g}{row['max']:>14.6g}{row['resolution']:>14.6g}  "
              f"{row['specials']}")
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
    """The exact sums of a GEMM on float operands, each rounded once to float64 (Fractions: every
    product and partial sum exact)."""
    from fractions import Fraction
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    M, K = A.shape
    N = B.shape[1]
    Af = [[Fraction(float(x)) - a_zero_point for x in row] for row in A.tolist()]
    Bf = [[Fraction(float(x)) - b_zero_point for x in col] for col in B.T.tolist()]
    out = np.empty((M, N))
    for i in range(M):
        for j in range(N):
            s = Fraction(float(bias[j])) if bias is not None else Fraction(0)
            for x, w in zip(Af[i], Bf[j]):
                s += x * w
            out[i, j] = float(s)
    return out


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
    from .export import atomic_dir
    spec = load_spec(args.spec)
    if spec.op != "gemm" and spec.op != "conv2d":
        raise ValueError(f"sweep supports gemm and conv2d layers, got {spec.op}")
    overflows = [o.strip() for o in args.overflow.split(",") if o.strip()]
    orders = [o.strip() for o in args.order.split(",") if o.strip()]
    configs = sweep_configs(args.acc_bits, overflows, orders, args.lanes)
    result = run_sweep(spec, configs, scheduler=args.scheduler, workers=args.workers)
    print(format_table(result))
    if args.out:
        with atomic_dir(args.out, args.force) as tmp:
            write_sweep(result, tmp)
        print(f"wrote {os.path.join(args.out, 'sweep.csv')}, sweep.json, sweep.png")
    return EXIT_OK


def cmd_export(args):
    from .export import export_layer
    from .spec import load_spec
    spec = load_spec(args.spec)
    from .testbench_cli import export_options
    manifest = export_layer(spec, args.out, file_format=args.format, traces=args.trace, force=args.force,
                            **export_options(args))
    print(f"wrote {len(manifest['files'])} files and manifest.json to {args.out}")
    return EXIT_OK


def cmd_verify(args):
    from .export import verify_dir
    problems = verify_dir(args.dir)
    if problems:
        for p in problems:
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
    from .spec import SpecError
    from .testbench_cli import cmd_testbench
    handlers = {"formats": cmd_formats, "run": cmd_run, "sweep": cmd_sweep, "export": cmd_export,
                "verify": cmd_verify, "demo": cmd_demo, "testbench": cmd_testbench}
    try:
        return handlers[args.command](args)
    except (SpecError, ValueError, TypeError, FileExistsError, FileNotFoundError, OverflowError) as exc:
        print(f"fxsim {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:           # output piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
