"""What an RTL testbench consumes: golden-vector export and its file layout, verification, testbench generation,
cocotb helpers and the Verilog reference model (``verilog/``)."""
