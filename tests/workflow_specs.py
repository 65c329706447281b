"""Layer specs shared by the workflow tests (spec, export, CLI, sweep)."""

INT8_GEMM = """
[layer]
op = "gemm"
[shape]
M = 3
K = 20
N = 4
[data]
seed = 5
distribution = "normal"
std = 60
bias = true
[datapath]
a = "int8"
b = "int8"
[datapath.accumulator]
format = "int14"
overflow = "saturate"
[output]
format = "int8"
[output.requant]
kind = "dyadic"
multiplier = 3
shift = 7
"""

E4M3_GEMM = """
[shape]
M = 3
K = 24
N = 4
[data]
seed = 2
distribution = "normal"
std = 0.02
bias = true
[datapath]
a = "e4m3"
b = "e5m2"
[datapath.accumulator]
format = "fp16"
"""
