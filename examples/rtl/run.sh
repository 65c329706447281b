#!/usr/bin/env bash
# Simulate examples/rtl/mac_gemm_tb.v on a golden-vector directory written by
#   fxsim export SPEC --out DIR --trace I,J
# Usage: run.sh DIR M K N A_BITS B_BITS ACC_BITS SAT HAS_BIAS TI TJ
set -euo pipefail
dir=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
read -r M K N AB BB ACC SAT HB TI TJ <<<"$*"
cp "$dir/trace_${TI}_${TJ}.hex" "$dir/trace.hex"
iverilog -g2012 -o "$dir/sim" -P mac_gemm_tb.M=$M -P mac_gemm_tb.K=$K -P mac_gemm_tb.N=$N \
  -P mac_gemm_tb.A_BITS=$AB -P mac_gemm_tb.B_BITS=$BB -P mac_gemm_tb.ACC_BITS=$ACC -P mac_gemm_tb.SAT=$SAT \
  -P mac_gemm_tb.HAS_BIAS=$HB -P mac_gemm_tb.TI=$TI -P mac_gemm_tb.TJ=$TJ "$here/mac_gemm_tb.v"
cd "$dir" && vvp -n sim
