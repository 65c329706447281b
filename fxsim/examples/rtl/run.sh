#!/usr/bin/env bash
# Check fxsim's reference RTL against a golden-vector directory written by `fxsim export`:
#   bash examples/rtl/run.sh DIR [icarus|verilator]      (`fxsim examples examples` writes this file out)
# Everything (shapes, widths, orders, layouts, packing) comes from DIR/manifest.json; this is
#   fxsim testbench DIR --run --simulator SIM --out <temporary directory>
# Exit status: 0 every word matches, 1 a mismatch, 2 bad input.
set -euo pipefail
dir=$1
sim=${2:-icarus}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
${FXSIM:-fxsim} testbench "$dir" --run --simulator "$sim" --out "$work/tb"
