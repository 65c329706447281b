"""A cocotb test of fxsim's reference RTL (fxsim_core) against a golden-vector directory.

Point FXSIM_GOLDEN at a directory written by `fxsim export`, build fxsim_core with the parameters
fxsim.rtl.cocotb.rtl_parameters(FXSIM_GOLDEN) gives, and run this module (run.py next to it does both with
cocotb's runner, on Icarus or Verilator). For your own design, keep the GoldenVectors / scoreboard lines
and replace the signal names.
"""
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer

from fxsim.rtl.cocotb import GoldenVectors, pack, to_signed

W = 72                                   # the reference RTL's value width


@cocotb.test()
async def every_output_matches_the_golden_vectors(dut):
    gv = GoldenVectors(os.environ["FXSIM_GOLDEN"])
    sb = gv.scoreboard()
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.start.value = 0
    cycle = 0
    for index in gv.outputs():
        a, b, init = gv.operands(index)
        bias, mult, shift = gv.output_stage_inputs(index)
        dut.a_vec.value = pack(a, gv.a_bits)
        dut.b_vec.value = pack(b, gv.b_bits)
        dut.init.value = init & ((1 << W) - 1)
        dut.bias.value = bias & ((1 << W) - 1)
        dut.mult.value = mult & ((1 << W) - 1)
        dut.shift.value = shift & 0xFFFFFFFF
        await FallingEdge(dut.clk)
        dut.start.value = 1
        await FallingEdge(dut.clk)
        dut.start.value = 0
        cycle += 1
        traced = gv.trace(index) is not None
        produced = 0
        while True:                      # every clock: the register values it produced, in trace order
            n = int(dut.tr_n.value)
            if traced and n:
                nodes = int(dut.nodes.value)
                for q in range(n):
                    sb.check_trace(index, produced + q, to_signed(nodes >> (W * q), W), cycle=cycle)
            produced += n
            if not int(dut.busy.value):
                break
            await FallingEdge(dut.clk)
            cycle += 1
        if traced:
            sb.end_trace(index, produced)
        sb.check("acc", index, to_signed(int(dut.acc.value), W), cycle=cycle)
        if "out" in gv.tensors:
            await Timer(1, unit="ns")
            sb.check("out", index, to_signed(int(dut.out.value), W), cycle=cycle)
    dut._log.info(sb.report())
    sb.assert_clean()
