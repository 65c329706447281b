"""A spec's operands: drawn at random on the operand grids (seeded), or read from the files it names."""
from __future__ import annotations

import os

import numpy as np

from fxsim.errors import BadFile, InvalidArgument
from fxsim.formats import Float
from fxsim.quantize import quantize
from fxsim.runtime.inputs import load_array_file
from fxsim.workflows.shapes import operand_shapes
from fxsim.workflows.spec_base import LayerSpec, SpecError, SpecFileError
from fxsim.workflows.spec_keys import get

__all__ = ["make_data", "random_codes"]


def random_codes(rng, fmt, shape, dist, std):
    """Random operands on ``fmt``'s grid. Fixed: integer codes (std in codes). Float: values drawn in
    units of the format's largest finite value (std as a fraction of it, default 1/4), then rounded
    to the format (half-even, saturating)."""
    if isinstance(fmt, Float):
        scale = fmt.max
        if dist == "normal":
            x = rng.normal(0.0, (std if std else 0.25) * scale, size=shape)
        else:
            x = rng.uniform(fmt.min if fmt.signed else 0.0, scale, size=shape)
        return quantize(x, fmt, rounding="half_even", overflow="saturate")
    if dist == "normal":
        c = np.rint(rng.normal(0.0, std if std else (fmt.max_code - fmt.min_code) / 6, size=shape))
        c = np.clip(c, fmt.min_code, fmt.max_code).astype(np.int64)
    else:
        c = rng.integers(fmt.min_code, fmt.max_code, size=shape, endpoint=True)
    return np.ldexp(c.astype(np.float64), -fmt.frac)


def _load_array(spec: LayerSpec, name):
    base = os.path.dirname(spec.path) if spec.path else "."
    value = spec.data[name]
    if not isinstance(value, str) or not value:
        raise SpecError(f"data.{name} = {value!r} is not allowed; expected a file name (a string)")
    p = os.path.join(base, value)
    try:
        arr = load_array_file(p, f"data.{name} = {value!r}: file")
    except BadFile as exc:
        raise SpecFileError(str(exc)) from None
    if name == "npz":
        if not isinstance(arr, dict):
            raise SpecError(f"data.npz = {value!r}: file {p!r} is a .npy array; expected a .npz archive "
                            f"holding arrays a, b (and optionally bias)")
        missing = [k for k in ("a", "b") if k not in arr]
        if missing:
            raise SpecError(f"data.npz = {value!r}: file {p!r} holds {sorted(arr)}; it needs arrays a and b "
                            f"(and optionally bias)")
    elif isinstance(arr, dict):
        raise SpecError(f"data.{name} = {value!r}: file {p!r} is a .npz archive; expected a .npy array")
    return arr


def make_data(spec: LayerSpec):
    """The layer's operands (A, B, bias) as real values on the operand grids."""
    if spec.op == "batch_norm":
        raise InvalidArgument("a batch_norm layer is not one GEMM: simulate it with run_batch_norm (fxsim run); "
                         "sweep and export take gemm and conv2d layers")
    d = spec.data
    dp = spec.datapath
    if "npz" in d:
        z = _load_array(spec, "npz")
        A, B = z["a"], z["b"]
        bias = z.get("bias")
        return _check_file_shapes(spec, A, B, bias)
    if "a" in d or "b" in d:
        if not ("a" in d and "b" in d):
            raise SpecError("data: give both a and b files, or neither")
        A, B = _load_array(spec, "a"), _load_array(spec, "b")
        bias = _load_array(spec, "bias") if isinstance(d.get("bias"), str) else None
        return _check_file_shapes(spec, A, B, bias)
    rng = np.random.default_rng(get(d, "data.seed"))
    dist = get(d, "data.distribution")
    std = d.get("std")
    A_shape, B_shape, n_bias = operand_shapes(spec)
    A = random_codes(rng, dp.a, A_shape, dist, std)
    B = random_codes(rng, dp.b, B_shape, dist, std)
    bias = None
    if get(d, "data.bias") is True and isinstance(dp.accumulator.fmt, Float):
        bias = random_codes(rng, dp.accumulator.fmt, n_bias, "normal", 2.0 ** -8)
    elif get(d, "data.bias") is True:
        acc = dp.accumulator.fmt
        span = 1 << max(1, min(acc.bits - 4, 16))
        bias = np.ldexp(rng.integers(-span, span, size=n_bias).astype(np.float64), -acc.frac)
    return A, B, bias


_FILE_DIMS = {   # the spec's [shape] key of each operand dimension (None: implied by the others)
    ("gemm", "forward"): (("M", "K"), ("K", "N"), "N"),
    ("gemm", "backward_input"): (("M", "N"), ("K", "N"), None),
    ("gemm", "backward_weight"): (("M", "K"), ("M", "N"), None),
    ("conv2d", "forward"): (("batch", "in_channels", "height", "width"), ("out_channels", None, "kernel", "kernel"),
                            "out_channels"),
    ("conv2d", "backward_input"): (("batch", "out_channels", None, None), ("out_channels", None, "kernel", "kernel"),
                                   None),
    ("conv2d", "backward_weight"): (("batch", "in_channels", "height", "width"), ("batch", "out_channels", None, None),
                                    None),
}


def _check_file_shapes(spec, A, B, bias):
    """Data files must agree with every [shape] key the spec gives (and with each other's rank)."""
    dims_a, dims_b, bias_dim = _FILE_DIMS[(spec.op, spec.pass_)]
    where = f"{spec.path}: " if spec.path else ""
    names = ("npz 'a'", "npz 'b'") if "npz" in spec.data else (f"data.a = {spec.data.get('a')!r}",
                                                                  f"data.b = {spec.data.get('b')!r}")
    for name, arr, dims in ((names[0], A, dims_a), (names[1], B, dims_b)):
        arr = np.asarray(arr)
        if arr.ndim != len(dims):
            raise SpecError(f"{where}{name}: a {spec.op} {spec.pass_} operand has {len(dims)} dimensions, this "
                            f"file's array has shape {arr.shape}")
        for axis, key in enumerate(dims):
            if key is not None and key in spec.shape and arr.shape[axis] != spec.shape[key]:
                raise SpecError(f"{where}shape.{key} = {spec.shape[key]} contradicts the data: {name} has shape "
                                f"{arr.shape} (axis {axis} is {key})")
    if bias is not None:
        b = np.asarray(bias)
        want = None if bias_dim is None else (np.shape(B)[1] if spec.op == "gemm" else np.shape(B)[0])
        if bias_dim is None or b.ndim != 1 or b.shape[0] != want:
            raise SpecError(f"{where}the bias file has shape {b.shape}; the bias is one value per output "
                            f"{'column' if spec.op == 'gemm' else 'channel'} ({bias_dim} = {want})")
    return A, B, bias
