"""The ``fxsim testbench`` command and ``fxsim export``'s hardware-shape options (kept apart from cli.py)."""
from __future__ import annotations

import argparse
import os
import sys

from fxsim.errors import InvalidArgument
from fxsim.rtl.testbench import generate_testbench, run_testbench, simulator_command


def _key_value(option, allow_bare=False):
    def parse(text):
        if "=" not in text:
            if allow_bare:
                return (None, text)
            raise argparse.ArgumentTypeError(f"{option} must be TENSOR=VALUE, got {text!r}")
        k, v = text.split("=", 1)
        return (k.strip(), v.strip())
    return parse


def add_export_options(e):
    e.add_argument("--layout", type=_key_value("--layout"), action="append", default=[],
                   help="a tensor's layout in its file: a=NHWC, b=OHWI|HWIO, b=NK, acc=NHWC, out=NHWC ...")
    e.add_argument("--word-bits", type=_key_value("--word-bits", allow_bare=True), action="append", default=[],
                   help="pack elements into memory words of this many bits: 64 (every tensor) or a=512 ...")
    e.add_argument("--pack", default=None, choices=["little", "big"],
                   help="first element of a word in its least (little, default) or most (big) significant bits")
    e.add_argument("--constants", action="store_true",
                   help="write the output stage's per-channel multipliers and shifts as memory files")


def export_options(args) -> dict:
    layouts = {}
    for k, v in args.layout:
        if k in layouts:
            raise InvalidArgument(f"--layout {k}= given twice")
        layouts[k] = v
    word_bits = None
    for k, v in args.word_bits:
        try:
            bits = int(v)
        except ValueError:
            raise InvalidArgument(f"--word-bits must be a number of bits (or TENSOR=BITS), got {v!r}") from None
        if k is None:
            if word_bits is not None:
                raise InvalidArgument("--word-bits BITS for every tensor cannot be combined with other --word-bits")
            word_bits = bits
        else:
            if isinstance(word_bits, int):
                raise InvalidArgument("--word-bits BITS for every tensor cannot be combined with other --word-bits")
            word_bits = dict(word_bits or {})
            word_bits[k] = bits
    if args.pack is not None and word_bits is None:
        raise InvalidArgument("--pack applies to packed words; give --word-bits as well")
    return {"layouts": layouts, "word_bits": word_bits, "pack": args.pack or "little", "constants": args.constants}


def add_testbench_parser(sub):
    t = sub.add_parser("testbench", help="generate (and run) a self-checking testbench for the reference RTL")
    t.add_argument("dir", help="a golden-vector directory written by fxsim export")
    t.add_argument("--out", default=None, help="testbench directory (default: DIR-tb)")
    t.add_argument("--run", action="store_true", help="compile and run it")
    t.add_argument("--simulator", default=None, choices=["icarus", "verilator"],
                   help="with --run: icarus (default) or verilator")
    t.add_argument("--force", action="store_true", help="replace an existing testbench directory")


def cmd_testbench(args):
    if args.simulator is not None and not args.run:
        raise InvalidArgument("--simulator applies to --run; add --run")
    out = args.out or os.path.normpath(os.fspath(args.dir)) + "-tb"
    simulator = args.simulator or "icarus"
    if args.run:
        simulator_command(simulator)      # a missing simulator: say how to install it before writing anything
    info = generate_testbench(args.dir, out, force=args.force)
    print(f"wrote {os.path.join(out, 'fxsim_tb.v')}: {info['outputs']} outputs, {info['traces']} traced")
    if not args.run:
        return 0
    try:
        status, mism, result, _log = run_testbench(out, simulator)
    except RuntimeError as exc:
        print(f"fxsim testbench: error: {exc}", file=sys.stderr)
        return 2
    for line in mism:
        print(line)
    print(f"{simulator}: {result}")
    return status
