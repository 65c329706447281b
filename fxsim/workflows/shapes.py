"""A spec's layer as arrays: the operands' shapes, the lowered GEMM's second operand, and the memory the
simulation needs (refused before anything is allocated when it exceeds the machine's)."""
from __future__ import annotations

import os

import numpy as np

from fxsim.ops.lowering import output_size
from fxsim.workflows.spec_base import LayerSpec, SpecError
from fxsim.workflows.spec_keys import get

__all__ = ["operand_shapes", "second_operand_matrix", "layer_bytes", "check_layer_size"]


def operand_shapes(spec: LayerSpec):
    """Shapes of the two operands the spec's pass multiplies, and the bias length."""
    s = spec.shape
    if spec.op == "gemm":
        M, K, N = s["M"], s["K"], s["N"]
        return {"forward": ((M, K), (K, N)), "backward_input": ((M, N), (K, N)),
                "backward_weight": ((M, K), (M, N))}[spec.pass_] + (N,)
    k, g = s["kernel"], get(s, "shape.groups")
    n, c, h, w, o = s["batch"], s["in_channels"], s["height"], s["width"], s["out_channels"]
    x, wt, dy = (n, c, h, w), (o, c // g, k, k), (n, o, _conv_out(s, "height"), _conv_out(s, "width"))
    return {"forward": (x, wt), "backward_input": (dy, wt), "backward_weight": (x, dy)}[spec.pass_] + (o,)


def second_operand_matrix(spec: LayerSpec, A, B) -> np.ndarray:
    """The lowered GEMM's second operand (K, N) as real values: what every output's dot product
    multiplies the first operand's values with (used for data-dependent accumulator bounds)."""
    A, B = np.asarray(A), np.asarray(B)
    if spec.op == "gemm":
        return B.T if spec.pass_ == "backward_input" else B
    if spec.pass_ == "forward":
        return B.reshape(B.shape[0], -1).T
    if spec.pass_ == "backward_weight":
        return B.transpose(0, 2, 3, 1).reshape(-1, B.shape[1])
    wf = B[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    return wf.reshape(wf.shape[0], -1).T


def _conv_out(s, side):
    pad, dil, stride = get(s, "shape.padding"), get(s, "shape.dilation"), get(s, "shape.stride")
    return output_size(s[side], s["kernel"], stride, pad, pad, dil)


def _prod(shape):
    r = 1
    for d in shape:
        r *= int(d)
    return r


def _memory_bytes():
    """Physical memory of this machine in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _human(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024


def layer_bytes(spec) -> dict:
    """The largest arrays simulating the spec's layer allocates, in bytes (int64/float64 words):
    the two operands, the lowered patch matrix of a convolution, and the output planes."""
    A_shape, B_shape, _ = operand_shapes(spec)
    out = {"operand a": 8 * _prod(A_shape), "operand b": 8 * _prod(B_shape)}
    s = spec.shape
    if spec.op == "gemm":
        M, K, N = s["M"], s["K"], s["N"]
        outputs = {"forward": M * N, "backward_input": M * K, "backward_weight": K * N}[spec.pass_]
    else:
        n, c, o, k = s["batch"], s["in_channels"], s["out_channels"], s["kernel"]
        oh, ow = _conv_out(s, "height"), _conv_out(s, "width")
        g = get(s, "shape.groups")
        outputs = {"forward": n * o * oh * ow, "backward_input": n * c * s["height"] * s["width"],
                   "backward_weight": o * (c // g) * k * k}[spec.pass_]
        out["patch matrix"] = 8 * n * oh * ow * (c // g) * k * k if spec.pass_ == "forward" else \
            8 * max(n * oh * ow * (c // g) * k * k, n * s["height"] * s["width"] * o * k * k)
    out["outputs"] = 8 * 4 * outputs          # accumulators, exact sums, codes and values
    return out


def check_layer_size(spec, memory=None):
    """Refuse, before anything is allocated, a layer whose arrays exceed this machine's memory."""
    memory = _memory_bytes() if memory is None else memory
    if not memory:
        return
    parts = layer_bytes(spec)
    total = sum(parts.values())
    if total > memory:
        where = f"{spec.path}: " if spec.path else ""
        big = max(parts, key=parts.get)
        shape = ", ".join(f"{k} = {v}" for k, v in spec.shape.items())
        raise SpecError(f"{where}[shape] {shape}: simulating this layer needs about {_human(total)} "
                        f"({big} {_human(parts[big])}), more than this machine's {_human(memory)} of memory; "
                        "simulate a smaller layer (the same datapath on fewer rows gives the same per-output "
                        "results)")
