"""The ``fxsim`` command: formats, run, sweep, export, verify, testbench, demo, examples, model.

Exit codes: 0 success; 1 a verification found mismatches or checksum failures; 2 bad input (spec,
arguments, missing or unreadable files, an output that exists without --force or that --force may not
replace, a directory verify cannot read as golden vectors); 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from fxsim.workflows.metrics import exact_gemm, print_summary, show, summarize  # noqa: F401
from fxsim._version import __version__
from fxsim.errors import FxsimError, InvalidArgument
from fxsim.formats import exact_number, Float, ML_DTYPES_NAMES
from fxsim.formats import format_table as format_listing
from fxsim.rtl.export import export_layer
from fxsim.rtl.verify import verify_directory
from fxsim.runtime.compiling import announce_compiles
from fxsim.runtime.interrupts import immediate_interrupts
from fxsim.runtime.outputs import output_dir
from fxsim.workflows.batch_norm import run_batch_norm
from fxsim.workflows.data import make_data
from fxsim.workflows.demo import run_demo
from fxsim.workflows.examples import write_examples
from fxsim.workflows.run import run_layer
from fxsim.workflows.spec import load_spec
from fxsim.workflows.sweep import (float_formats, format_table, json_safe, layer_name, run_sweep, sweep_configs,
    write_sweep)

EXIT_OK, EXIT_MISMATCH, EXIT_INPUT = 0, 1, 2
EXIT_INTERRUPTED = 130          # 128 + SIGINT, what shells report for a command stopped by Ctrl-C

LISTS = ("Options that take several values take a comma-separated list and may also be repeated "
         "(--order sequential --order tree = --order sequential,tree); LO:HI ranges include both ends.")


def _comma(text):
    """A comma-separated list of names (one option occurrence)."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of names, got {text!r}")
    return items


def _int_list(option, lo, hi):
    """LO:HI (inclusive) or a comma list of integers, each in lo..hi."""
    def parse(text):
        try:
            if ":" in text:
                a, b = (int(t) for t in text.split(":"))
                if not lo <= a <= b <= hi:
                    raise ValueError
                return list(range(a, b + 1))
            vals = [int(t) for t in text.split(",")]
            if any(not lo <= v <= hi for v in vals):
                raise ValueError
            return vals
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} must be LO:HI with {lo} <= LO <= HI <= {hi} (both ends "
                                             f"included), or a comma list of integers in {lo}..{hi}; got {text!r}") \
                from None
    return parse


_bits_range = _int_list("--acc-bits", 2, 62)


def _trace(text):
    try:
        idx = tuple(int(t) for t in text.split(","))
        if len(idx) not in (2, 4) or any(v < 0 for v in idx):
            raise ValueError
        return idx
    except ValueError:
        raise argparse.ArgumentTypeError(f"--trace must be I,J (gemm output row and column) or N,O,OH,OW (conv2d "
                                         f"output), integers >= 0, got {text!r}") from None


def _positive(option):
    def parse(text):
        try:
            v = int(text)
            if v < 1:
                raise ValueError
            return v
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} must be an integer >= 1, got {text!r}") from None
    return parse


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
    p = argparse.ArgumentParser(prog="fxsim", description="Bit-accurate simulation of accelerator datapaths. "
                                "Exit codes: 0 success, 1 a verification found mismatches, 2 bad input.",
                                epilog=LISTS)
    p.add_argument("--version", action="version", version=f"fxsim {__version__}",
                   help="print fxsim's version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                         help="one of the commands below; `fxsim COMMAND --help` describes its options")
    f = sub.add_parser("formats", help="table of known formats, their ml_dtypes names and aliases",
                       description="Every named format with its exact range and resolution, the ml_dtypes or "
                       "NumPy dtype it is, and the other names it answers to.")
    f.add_argument("filter", nargs="?", default=None, metavar="FILTER",
                   help="show only formats whose name or an alias contains this text (case-insensitive), or "
                        "the format this spelling names (e.g. 'fixed<16,6>', float8_e4m3)")
    r = sub.add_parser("run", help="simulate a layer spec and summarise both registers",
                       description="Simulate the layer a spec describes and summarise the raw accumulator and "
                       "the output register, each against the exact result.")
    r.add_argument("spec", metavar="SPEC", help="layer spec (TOML; see docs/workflows.md)")
    r.add_argument("--json", action="store_true", help="print the summary as one JSON object (standard JSON: "
                   "an infinite SQNR is the string \"inf\")")
    s = sub.add_parser("sweep", help="sweep accumulator widths or float accumulator formats",
                       description="Simulate the layer once per accumulator configuration and compare each with "
                       "the exact result. Fixed accumulators: --acc-bits. Float accumulators: --acc-formats, "
                       "or --acc-man-bits/--acc-exp-bits (the spec's exponent/mantissa width where one is not "
                       "given); a spec with a Float accumulator and none of these sweeps mantissa widths "
                       "1..(its own + 2).", epilog=LISTS)
    s.add_argument("spec", metavar="SPEC", help="layer spec (TOML), gemm or conv2d")
    s.add_argument("--acc-bits", type=_bits_range, action="extend", metavar="LO:HI|N,N,...",
                   help="Fixed accumulator widths, 2..62 (default 8:32; the binary point stays the spec's)")
    s.add_argument("--acc-formats", type=_comma, action="extend", metavar="FMT,FMT,...",
                   help="Float accumulator formats to sweep, e.g. e5m10,e6m9,bf16")
    s.add_argument("--acc-man-bits", type=_int_list("--acc-man-bits", 1, 51), action="extend",
                   metavar="LO:HI|N,N,...", help="Float accumulator mantissa widths, 1..51 (IEEE-style formats)")
    s.add_argument("--acc-exp-bits", type=_int_list("--acc-exp-bits", 2, 11), action="extend",
                   metavar="LO:HI|N,N,...", help="Float accumulator exponent widths, 2..11 (IEEE-style formats)")
    s.add_argument("--overflow", type=_comma, action="extend", metavar="MODE,MODE,...",
                   help="accumulator overflow modes (default: saturate,wrap for Fixed sweeps, the spec's mode "
                   "for Float sweeps)")
    s.add_argument("--order", type=_comma, action="extend", metavar="ORDER,ORDER,...",
                   help="orders of additions: sequential, tree, chunked (default sequential)")
    s.add_argument("--lanes", type=_positive("--lanes"), default=None, metavar="N",
                   help="lanes of the chunked order, 2..4096 (default 4; only with --order chunked)")
    s.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask distributed scheduler address (tcp://host:port); default: local processes")
    s.add_argument("--connect-timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="give up on --scheduler when it does not answer as a Dask scheduler within this "
                        "time (default 10)")
    s.add_argument("--workers", type=_positive("--workers"), default=None, metavar="N",
                   help="local worker processes (default one per core; 1 runs in this process)")
    s.add_argument("--engine", choices=("auto", "one-pass", "per-width"), default="auto",
                   help="one-pass: every configuration from one pass over the layer's products (integer forward "
                        "gemm or one-group conv2d); per-width: each configuration simulated on its own (in "
                        "--workers processes or on --scheduler); auto (default): one pass where it applies")
    s.add_argument("--out", default=None, metavar="DIR", help="directory for sweep.csv, sweep.json and sweep.png")
    s.add_argument("--force", action="store_true", help="replace a previous sweep output in --out")
    e = sub.add_parser("export", help="write golden vectors for an RTL testbench",
                       description="Simulate the layer and write every tensor as a memory file plus manifest.json.")
    e.add_argument("spec", metavar="SPEC", help="layer spec (TOML), gemm or conv2d")
    e.add_argument("--out", required=True, metavar="DIR", help="output directory (must not exist unless --force)")
    e.add_argument("--format", default="hex", choices=["hex", "memb", "coe", "mif", "npy", "bin"],
                   help="memory file format (default hex: $readmemh; memb: $readmemb)")
    e.add_argument("--trace", type=_trace, action="append", default=[], metavar="I,J|N,O,OH,OW",
                   help="also write the per-cycle accumulator trace of output (I, J) of a gemm layer or "
                   "(N, O, OH, OW) of a conv2d layer; repeat the option for more outputs")
    e.add_argument("--force", action="store_true", help="replace a previous export in --out")
    from fxsim.cli.testbench import add_export_options, add_testbench_parser
    add_export_options(e)
    v = sub.add_parser("verify", help="recompute a golden-vector directory",
                       description="Recompute a golden-vector directory from its manifest and inputs. Exit 0 when "
                       "everything matches, 1 on a mismatch.")
    v.add_argument("dir", metavar="DIR", help="a directory written by fxsim export or fxsim model export")
    add_testbench_parser(sub)
    d = sub.add_parser("demo", help="the main job on shipped data", description="Run, sweep and export the shipped "
                       "demo layer.")
    d.add_argument("--out", default="fxsim-demo", metavar="DIR", help="output directory (default fxsim-demo)")
    d.add_argument("--force", action="store_true", help="replace a previous demo output in --out")
    d.add_argument("--quick", action="store_true", help="a shorter sweep, no training run")
    x = sub.add_parser("examples", help="write the shipped example specs and scripts into a directory",
                       description="Write the examples shipped with fxsim (layer specs, the RTL check script, the "
                       "cocotb test) into a new directory.")
    x.add_argument("dir", metavar="DIR", help="output directory (must not exist unless --force)")
    x.add_argument("--force", action="store_true", help="replace a previous fxsim examples output in DIR")
    from fxsim.cli.model import add_parser as add_model_parser
    add_model_parser(sub, _bits_range)
    return p


def cmd_formats(args):
    rows = format_listing(args.filter)
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


def cmd_run(args):
    spec = load_spec(args.spec)
    if spec.op == "batch_norm":
        import dataclasses
        summary = run_batch_norm(spec)
        config = {f.name: getattr(spec.batch_norm, f.name) for f in dataclasses.fields(spec.batch_norm)}
        if args.json:
            print(json.dumps(json_safe({"layer": "batch_norm", "batch_norm": {k: str(v) if not isinstance(
                v, (int, float, bool, type(None))) else v for k, v in config.items()}, "summary": summary}),
                allow_nan=False, indent=2))
            return EXIT_OK
        print("batch norm: " + ", ".join(f"{k} {show(v)}" for k, v in config.items()))
        print_summary(summary)
        return EXIT_OK
    data = make_data(spec)
    result, (A, B, bias) = run_layer(spec, data=data)
    summary = summarize(result, A, B, bias, spec)
    if args.json:
        print(json.dumps(json_safe({"layer": layer_name(spec), "datapath": str(spec.datapath), "summary": summary}),
                         allow_nan=False, indent=2))
        return EXIT_OK
    print(spec.datapath)
    print(f"layer: {layer_name(spec)}")
    print_summary(summary)
    return EXIT_OK


def cmd_sweep(args):
    spec = load_spec(args.spec)
    out = output_dir(args.out, "sweep", force=args.force) if args.out else None   # checked before the work
    if spec.op != "gemm" and spec.op != "conv2d":
        raise InvalidArgument(f"sweep supports gemm and conv2d layers, got {spec.op}")
    acc = spec.datapath.accumulator
    float_sweep = bool(args.acc_formats or args.acc_man_bits or args.acc_exp_bits)
    if float_sweep and args.acc_bits:
        raise InvalidArgument("--acc-bits sweeps Fixed accumulator widths; --acc-formats/--acc-man-bits/"
                              "--acc-exp-bits sweep Float accumulators: give one kind per sweep")
    formats = list(args.acc_formats or [])
    if args.acc_man_bits or args.acc_exp_bits:
        spec_float = acc.fmt if isinstance(acc.fmt, Float) else None
        if spec_float is None and not (args.acc_man_bits and args.acc_exp_bits):
            raise InvalidArgument(f"the spec's accumulator {acc.fmt} is not a Float: give both --acc-exp-bits and "
                                  "--acc-man-bits")
        exps = args.acc_exp_bits or [spec_float.exp]
        mans = args.acc_man_bits or [spec_float.man]
        formats += float_formats(exps, mans)
    if not float_sweep and not args.acc_bits and isinstance(acc.fmt, Float):
        float_sweep = True      # a Float spec's default: mantissa widths 1..(the spec's + 2)
        formats = float_formats([acc.fmt.exp], range(1, min(acc.fmt.man + 2, 51) + 1))
    overflows = args.overflow or ([acc.overflow.name.lower()] if float_sweep else ["saturate", "wrap"])
    orders = args.order or ["sequential"]
    if args.lanes is not None and "chunked" not in orders:
        raise InvalidArgument(f"--lanes {args.lanes} applies to --order chunked only; the orders swept are "
                              f"{', '.join(orders)}")
    if args.scheduler and args.workers is not None:
        raise InvalidArgument("--workers sets local processes; with --scheduler the Dask cluster's workers run "
                              "the sweep: give one of the two")
    if args.connect_timeout is not None and not args.scheduler:
        raise InvalidArgument("--connect-timeout applies to --scheduler only")
    args.lanes = 4 if args.lanes is None else args.lanes
    if float_sweep:
        configs = sweep_configs(overflows=overflows, orders=orders, lanes=args.lanes, acc_formats=formats)
    else:
        configs = sweep_configs(args.acc_bits or list(range(8, 33)), overflows, orders, args.lanes)
    result = run_sweep(spec, configs, scheduler=args.scheduler, workers=args.workers,
                       connect_timeout=args.connect_timeout or 10.0, engine=args.engine)
    print(format_table(result))
    if args.out:
        with out as tmp:
            write_sweep(result, tmp)
        print(f"wrote {os.path.join(args.out, 'sweep.csv')}, sweep.json, sweep.png")
    return EXIT_OK


def cmd_export(args):
    spec = load_spec(args.spec)
    from fxsim.cli.testbench import export_options
    manifest = export_layer(spec, args.out, file_format=args.format, traces=args.trace, force=args.force,
                            **export_options(args))
    print(f"wrote {len(manifest['files'])} files and manifest.json to {args.out}")
    return EXIT_OK


def cmd_verify(args):
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
    run_demo(args.out, force=args.force, quick=args.quick)
    return EXIT_OK


def cmd_examples(args):
    files = write_examples(args.dir, force=args.force)
    print(f"wrote {len(files)} example files to {args.dir}:")
    for f in files:
        print(f"  {f}")
    print(f"Try: fxsim run {os.path.join(args.dir, 'int8_gemm_saturating.toml')}")
    return EXIT_OK


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:          # --help (0) or a usage error (2), already printed by argparse
        return int(exc.code or 0)
    from fxsim.cli.model import cmd_model
    from fxsim.cli.testbench import cmd_testbench
    handlers = {"formats": cmd_formats, "run": cmd_run, "sweep": cmd_sweep, "export": cmd_export,
                "verify": cmd_verify, "demo": cmd_demo, "examples": cmd_examples, "model": cmd_model, "testbench": cmd_testbench}
    # one line on stderr when a first use compiles kernels; commands that make data quantize it first
    from fxsim._kernels import quantize as _kq
    announce_compiles(first=(_kq.quantize_fixed_array, _kq.quantize_float_array)
                      if args.command in ("run", "sweep", "export", "demo") else ())
    try:
        with immediate_interrupts():    # Ctrl-C stops at once, even inside a kernel: exit 130, one line
            return handlers[args.command](args)
    except KeyboardInterrupt:          # Ctrl-C where the native handler is not available: the same line
        print("fxsim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:           # output piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    # bad input: fxsim's typed errors (SpecError among them) and the OS errors of the files a user named;
    # anything else is a bug in fxsim and shows its traceback
    except (FxsimError, FileExistsError, FileNotFoundError, PermissionError, IsADirectoryError,
            NotADirectoryError) as exc:
        print(f"fxsim {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
