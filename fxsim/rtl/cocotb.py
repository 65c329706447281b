"""Golden vectors for cocotb testbenches: stimuli and a scoreboard read from an ``fxsim export`` directory.

    from fxsim.rtl.cocotb import GoldenVectors
    gv = GoldenVectors("golden")                  # the directory written by `fxsim export`
    sb = gv.scoreboard()
    for index in gv.outputs():                    # (i, j) for gemm, (n, o, oh, ow) for conv2d
        a, b, init = gv.operands(index)           # the K operand codes in reduction order, the preload
        ...drive your DUT, read its result...
        sb.check("acc", index, got_acc)           # and "out" for the output register
        sb.check_trace(index, t, got, cycle=c)    # the t-th traced register value (traced outputs only)
    sb.assert_clean()                             # AssertionError listing the first mismatches

Nothing here imports cocotb: the module only reads files (numpy and the standard library), so the same
stimuli and expectations serve any Python testbench. ``rtl_parameters(dir)`` gives the parameters of the
reference RTL's ``fxsim_core`` for the directory; ``cocotb/test_fxsim_core.py`` of ``fxsim examples DIR`` is a complete test.
Values are signed Python ints (two's complement codes of signed formats, plain codes of unsigned ones).
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["GoldenVectors", "Scoreboard", "Mismatch", "rtl_parameters", "pack", "to_signed", "RTL_SOURCES"]


def _rtl_sources():
    from fxsim.rtl.testbench import RTL_DIR
    return [os.path.join(RTL_DIR, "fxsim_ref.v")]


RTL_SOURCES = _rtl_sources()


def pack(values, bits: int) -> int:
    """A bus value: element k at bits [k*bits +: bits], two's complement."""
    mask = (1 << bits) - 1
    out = 0
    for k, v in enumerate(values):
        out |= (int(v) & mask) << (k * bits)
    return out


def to_signed(value: int, bits: int) -> int:
    """The signed value of a ``bits``-wide two's complement word."""
    value = int(value) & ((1 << bits) - 1)
    return value - (1 << bits) if value >> (bits - 1) else value


class Mismatch:
    """One word that differs: tensor, output index, position (trace entry or None), cycle, expected, got."""

    def __init__(self, tensor, index, position, cycle, expected, got):
        self.tensor, self.index, self.position = tensor, index, position
        self.cycle, self.expected, self.got = cycle, expected, got

    def __str__(self):
        pos = f" entry={self.position}" if self.position is not None else ""
        cyc = f" cycle={self.cycle}" if self.cycle is not None else ""
        return f"MISMATCH tensor={self.tensor} index={self.index}{pos}{cyc} expected={self.expected} got={self.got}"


class Scoreboard:
    """Expected words per output and per cycle; counts what was checked and keeps every mismatch."""

    def __init__(self, golden: "GoldenVectors"):
        self.golden = golden
        self.checked = 0
        self.mismatches: list[Mismatch] = []
        self._trace_seen = {}

    def check(self, tensor: str, index, got, cycle=None) -> bool:
        """Compare the word of ``tensor`` ("acc" or "out") at output ``index`` with ``got``."""
        want = self.golden.expected(tensor, index)
        return self._record(tensor, index, None, cycle, want, int(got))

    def check_trace(self, index, position: int, got, cycle=None) -> bool:
        """Compare the ``position``-th traced value of output ``index`` (its trace order: see
        docs/golden-vectors.md) with ``got``."""
        tr = self.golden.trace(index)
        if tr is None:
            raise KeyError(f"output {index} has no trace in {self.golden.directory}; export it with --trace")
        want = int(tr[position]) if position < len(tr) else None
        self._trace_seen[tuple(index)] = max(self._trace_seen.get(tuple(index), 0), position + 1)
        return self._record("trace", index, position, cycle, want, int(got))

    def end_trace(self, index, produced: int) -> bool:
        """Check that the DUT produced exactly as many traced values as the trace holds."""
        tr = self.golden.trace(index)
        return self._record("trace_length", index, None, None, len(tr), int(produced))

    def _record(self, tensor, index, position, cycle, want, got):
        self.checked += 1
        if want != got:
            self.mismatches.append(Mismatch(tensor, tuple(index), position, cycle, want, got))
            return False
        return True

    def report(self, first: int = 10) -> str:
        lines = [str(m) for m in self.mismatches[:first]]
        lines.append(f"RESULT checked={self.checked} mismatches={len(self.mismatches)}")
        return "\n".join(lines)

    def assert_clean(self, first: int = 10):
        """Raise AssertionError with the first mismatches unless every checked word matched (and something
        was checked)."""
        if self.mismatches or not self.checked:
            raise AssertionError(self.report(first))


class GoldenVectors:
    """A golden-vector directory, in logical order (whatever layout and packing its files use)."""

    def __init__(self, directory):
        from fxsim.rtl.export import read_words
        from fxsim.workflows.spec import spec_from_dict
        from fxsim.rtl.testbench import load_manifest
        self.directory = os.fspath(directory)
        self.manifest = load_manifest(self.directory)
        self.spec = spec_from_dict(self.manifest["spec"])
        self.op = self.manifest["op"]
        self.datapath = self.spec.datapath
        files = self.manifest["files"]
        self.files = files
        self.tensors = {k: read_words(self.directory, e) for k, e in files.items()}
        self.shape = tuple(files["acc"]["shape"])
        self.a_bits, self.b_bits = files["a"]["bits"], files["b"]["bits"]
        self.acc_bits = files["acc"]["bits"]
        self.out_bits = files["out"]["bits"] if "out" in files else None
        self._traces = {tuple(int(v) for v in k.split("_")[1:]): self.tensors[k]
                        for k in files if k.startswith("trace_")}
        nch = self.shape[1]
        from fxsim.rtl.testbench import requant_constants
        consts = requant_constants(self.spec, nch)
        self.multipliers = [int(v) for v in (self.tensors["requant_multiplier"] if "requant_multiplier" in files
                                             else consts.get("requant_multiplier", ([0] * nch, 0))[0])]
        self.shifts = [int(v) for v in (self.tensors["requant_shift"] if "requant_shift" in files
                                        else consts.get("requant_shift", ([0] * nch, 0))[0])]

    def outputs(self):
        """Every output index, row-major over the logical output shape."""
        return [tuple(int(v) for v in ix) for ix in np.ndindex(*self.shape)]

    @property
    def traced(self):
        return sorted(self._traces)

    def channel(self, index) -> int:
        """The output channel of an output: j of a gemm, o of a conv2d."""
        return int(index[1])

    def operands(self, index):
        """(a codes, b codes, preload) of one output: the K operand pairs in the datapath's reduction
        order (conv2d: the exported patch order (c, kh, kw), padding = the input zero point) and the
        accumulator's initial value (the bias when it is preloaded, else 0)."""
        A, B = self.tensors["a"], self.tensors["b"]
        ch = self.channel(index)
        if self.op == "gemm":
            a, b = A[index[0], :], B[:, ch]
        else:
            n, o, oh, ow = index
            s = self.spec.shape
            stride, pad, dil, groups = s.get("stride", 1), s.get("padding", 0), s.get("dilation", 1), s.get("groups", 1)
            _, C, H, W = A.shape
            O, CG, KH, KW = B.shape
            g = o // (O // groups)
            zp = int(self.datapath.a_zero_point)
            a, b = [], []
            for c in range(CG):
                for kh in range(KH):
                    for kw in range(KW):
                        ih, iw = oh * stride - pad + kh * dil, ow * stride - pad + kw * dil
                        a.append(int(A[n, g * CG + c, ih, iw]) if 0 <= ih < H and 0 <= iw < W else zp)
                        b.append(int(B[o, c, kh, kw]))
        init = int(self.tensors["bias"][ch]) if "bias" in self.tensors and self.datapath.bias_preload else 0
        return [int(v) for v in a], [int(v) for v in b], init

    def output_stage_inputs(self, index):
        """(bias added in the output stage or 0, multiplier, shift) of an output's channel."""
        ch = self.channel(index)
        bias = int(self.tensors["bias"][ch]) if "bias" in self.tensors and not self.datapath.bias_preload else 0
        return bias, self.multipliers[ch], self.shifts[ch]

    def expected(self, tensor: str, index) -> int:
        """The golden word of ``tensor`` ("acc", "out") at an output index, as a signed int."""
        if tensor not in self.tensors:
            raise KeyError(f"{self.directory} has no {tensor!r} tensor (it has {', '.join(self.tensors)})")
        return int(self.tensors[tensor][tuple(index)])

    def trace(self, index):
        """The traced register values of an output (None when it was not traced)."""
        tr = self._traces.get(tuple(int(v) for v in index))
        return None if tr is None else [int(v) for v in tr]

    def scoreboard(self) -> Scoreboard:
        return Scoreboard(self)


def rtl_parameters(directory) -> dict:
    """The parameters of the reference RTL's ``fxsim_core`` for a golden directory (integers)."""
    from fxsim.workflows.spec import spec_from_dict
    from fxsim.rtl.testbench import _rtl_params, load_manifest
    m = load_manifest(directory)
    spec = spec_from_dict(m["spec"])
    p, o = _rtl_params(spec)
    files = m["files"]
    if m["op"] == "gemm":
        K = files["a"]["shape"][1]
    else:
        _, CG, KH, KW = files["b"]["shape"]
        K = CG * KH * KW
    p["K"] = K
    p["LEVEL_BITS"] = sum(b << (8 * i) for i, b in enumerate(spec.datapath.order.level_bits or ()))
    if p["LEVEL_BITS"] >= 2 ** 31:
        raise ValueError("more than 3 tree level widths do not pass as a simulator's integer parameter")
    o["BIAS_ADD"] = int("bias" in files and not spec.datapath.bias_preload)
    return {**p, **o}

