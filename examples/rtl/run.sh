#!/usr/bin/env bash
# Simulate examples/rtl/mac_gemm_tb.v on a golden-vector directory written by
#   fxsim export SPEC --out DIR --trace I,J
# Usage: run.sh DIR M K N A_BITS B_BITS ACC_BITS SAT HAS_BIAS TI TJ [A_SIGNED B_SIGNED]
#   SAT: 1 saturating accumulator, 0 wrapping; HAS_BIAS: 1 when DIR has bias.hex (preloaded);
#   (TI, TJ): the traced output (DIR/trace_TI_TJ.hex); A_SIGNED/B_SIGNED: 1 (default) two's complement, 0 unsigned
set -euo pipefail
dir=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
read -r M K N AB BB ACC SAT HB TI TJ AS BS <<<"$*"
AS=${AS:-1}; BS=${BS:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$dir"/*.hex "$work"/
cp "$dir/trace_${TI}_${TJ}.hex" "$work/trace.hex"
iverilog -g2012 -o "$work/sim" -P mac_gemm_tb.M=$M -P mac_gemm_tb.K=$K -P mac_gemm_tb.N=$N \
  -P mac_gemm_tb.A_BITS=$AB -P mac_gemm_tb.B_BITS=$BB -P mac_gemm_tb.ACC_BITS=$ACC -P mac_gemm_tb.SAT=$SAT \
  -P mac_gemm_tb.HAS_BIAS=$HB -P mac_gemm_tb.TI=$TI -P mac_gemm_tb.TJ=$TJ \
  -P mac_gemm_tb.A_SIGNED=$AS -P mac_gemm_tb.B_SIGNED=$BS "$here/mac_gemm_tb.v"
cd "$work" && vvp -n sim
