"""TOML layer specs: every table and key, data sources, and errors that name key, value, allowed and line."""
import glob
import os

import numpy as np
import pytest

from fxsim.datapath import Datapath
from fxsim.formats import Fixed, Float, parse_format
from fxsim.workflows.spec import SpecError, load_spec, make_data, parse_spec, run_layer
from tests.workflow_specs import E4M3_GEMM, INT8_GEMM

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)


def test_int8_spec_builds_the_datapath_it_describes():
    spec = parse_spec(INT8_GEMM)
    dp = spec.datapath
    assert isinstance(dp, Datapath) and spec.op == "gemm"
    assert dp.a == Fixed(8) and dp.b == Fixed(8) and dp.accumulator.fmt == Fixed(14)
    assert dp.accumulator.overflow.name == "SATURATE" and dp.order.kind == "sequential"
    assert dp.output.fmt == Fixed(8) and dp.output.requant.multiplier == 3 and dp.output.requant.shift == 7
    A, B, bias = make_data(spec)
    assert A.shape == (3, 20) and B.shape == (20, 4) and bias.shape == (4,)
    for x in (A, B):      # integer codes in int8's range
        assert np.array_equal(x, np.rint(x)) and x.min() >= -128 and x.max() <= 127
    A2, B2, bias2 = make_data(parse_spec(INT8_GEMM))
    assert np.array_equal(A, A2) and np.array_equal(B, B2) and np.array_equal(bias, bias2)   # seeded


@pytest.mark.parametrize("edit,pattern", [
    (('overflow = "saturate"', 'overflow = "clampy"'),
     r"<spec>:18: datapath.accumulator.overflow: overflow must be .*got 'clampy'"),
    (('op = "gemm"', 'op = "matmul"'), r"<spec>:3: layer.op = 'matmul' is not allowed; expected one of"),
    (("K = 20", "K = -3"), r"<spec>:6: shape.K = -3 is not allowed; expected a positive integer"),
    (("K = 20", "K = 2.5"), r"shape.K = 2.5 is not allowed; expected a positive integer"),
    (("M = 3", "M = 3\nQ = 1"), r"<spec>:6: shape.Q = 1 is not allowed; expected one of the keys \["),
    (('format = "int14"', 'format = "int14"\nwidth = 3'), r"<spec>:18: datapath.accumulator.width = 3 is not"),
    (('a = "int8"', 'a = "int99"'), r"<spec>:14: datapath.a: .*int99"),
    (('distribution = "normal"', 'distribution = "cauchy"'), r"data.distribution = 'cauchy' .*'uniform' or 'normal'"),
    (('[output]', '[outputs]'), r"outputs = .* is not allowed; expected one of the tables"),
    (('multiplier = 3', 'multiplier = 3\nbias = 1'), r"output.requant.bias = 1 is not allowed"),
])
def test_spec_errors_name_key_value_allowed_and_line(edit, pattern):
    with pytest.raises(SpecError, match=pattern):
        parse_spec(INT8_GEMM.replace(*edit))


def test_invalid_toml_and_missing_files_are_spec_errors(tmp_path):
    with pytest.raises(SpecError, match="not valid TOML"):
        parse_spec("[layer\nop=1")
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")
    spec = tmp_path / "s.toml"
    spec.write_text('[data]\nnpz = "missing.npz"\n')
    with pytest.raises(SpecError, match=r"data.npz = 'missing.npz'.*does not exist"):
        make_data(load_spec(spec))
    assert isinstance(SpecError("x"), ValueError)


def test_data_from_npy_and_npz_files_relative_to_the_spec(tmp_path):
    rng = np.random.default_rng(0)
    A = rng.integers(-8, 8, (5, 7)).astype(np.float64)
    B = rng.integers(-8, 8, (7, 3)).astype(np.float64)
    bias = np.array([5.0, -9.0, 100.0])
    np.save(tmp_path / "x.npy", A)
    np.save(tmp_path / "w.npy", B)
    np.save(tmp_path / "bias.npy", bias)
    np.savez(tmp_path / "layer.npz", a=A, b=B, bias=bias)
    tail = '[datapath]\na = "int4"\nb = "int4"\n[datapath.accumulator]\nformat = "int9"\noverflow = "wrap"\n'
    (tmp_path / "npy.toml").write_text('[data]\na = "x.npy"\nb = "w.npy"\nbias = "bias.npy"\n' + tail)
    (tmp_path / "npz.toml").write_text('[data]\nnpz = "layer.npz"\n' + tail)
    for name in ("npy.toml", "npz.toml"):
        spec = load_spec(tmp_path / name)
        res, (A2, B2, bias2) = run_layer(spec)
        assert np.array_equal(A2, A) and np.array_equal(B2, B) and np.array_equal(bias2, bias)
        # independent check: 9-bit wrap of the exact dot products in k order, bias preloaded
        for i in range(5):
            for j in range(3):
                acc = int(bias[j])
                for k in range(7):
                    acc = ((acc + int(A[i, k]) * int(B[k, j]) + 256) % 512) - 256
                assert res.acc[i, j] == acc
    (tmp_path / "half.toml").write_text('[data]\na = "x.npy"\n' + tail)
    with pytest.raises(SpecError, match="both a and b"):
        make_data(load_spec(tmp_path / "half.toml"))


def test_conv2d_spec_matches_a_literal_convolution():
    spec = parse_spec("""
[layer]
op = "conv2d"
[shape]
batch = 1
in_channels = 2
height = 5
width = 4
out_channels = 3
kernel = 3
padding = 1
stride = 2
[data]
seed = 4
[datapath]
a = "int4"
b = "int4"
[datapath.accumulator]
format = "int32"
""")
    res, (x, w, _) = run_layer(spec)
    assert x.shape == (1, 2, 5, 4) and w.shape == (3, 2, 3, 3)
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    Ho, Wo = (5 + 2 - 3) // 2 + 1, (4 + 2 - 3) // 2 + 1
    want = np.zeros((1, 3, Ho, Wo), dtype=np.int64)
    for o in range(3):
        for y in range(Ho):
            for z in range(Wo):
                want[0, o, y, z] = int(np.sum(xp[0, :, 2 * y:2 * y + 3, 2 * z:2 * z + 3] * w[o].astype(np.int64)))
    assert np.array_equal(np.asarray(res.acc).reshape(want.shape), want)


def test_float_spec_draws_operands_on_the_format_grids():
    spec = parse_spec(E4M3_GEMM)
    dp = spec.datapath
    assert isinstance(dp.a, Float) and isinstance(dp.accumulator.fmt, Float)
    assert dp.accumulator.rounding.name == "HALF_EVEN" and dp.accumulator.overflow.name == "IEEE"
    A, B, bias = make_data(spec)
    for x, fmt in ((A, dp.a), (B, dp.b), (bias, dp.accumulator.fmt)):
        assert np.array_equal(fmt.decode(fmt.encode(x)), x)     # every value representable
    assert len(np.unique(A)) > 10


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "fxsim", "examples", "*.toml")))
                         + [os.path.join(ROOT, "fxsim", "data", "digits_fc.toml")])
def test_every_shipped_spec_runs(path):
    spec = load_spec(path)
    if spec.op == "batch_norm":
        from fxsim.workflows.spec import run_batch_norm
        assert run_batch_norm(spec)["y_sqnr_db_vs_float64"] > 40
        return
    res, _ = run_layer(spec)
    assert res.values.size > 0
    assert str(parse_format(str(spec.datapath.accumulator.fmt))) == str(spec.datapath.accumulator.fmt)


CONV_BACKWARD = """
[layer]
op = "conv2d"
pass = "{pass_}"
[shape]
batch = 2
in_channels = 3
height = 6
width = 5
out_channels = 4
kernel = 3
padding = 1
stride = 2
[data]
seed = 3
[datapath]
a = "int8"
b = "int4"
[datapath.accumulator]
format = "int32"
"""


def test_gemm_backward_passes_are_the_gradient_gemms():
    base = INT8_GEMM.replace("bias = true", "bias = false").replace("[output]\nformat = \"int8\"", "[output]")
    base = base.split("[output.requant]")[0]
    for pass_, want in (("backward_input", lambda A, B: A @ B.T), ("backward_weight", lambda A, B: A.T @ B)):
        spec = parse_spec(base.replace('op = "gemm"', f'op = "gemm"\npass = "{pass_}"'))
        res, (A, B, _) = run_layer(spec, trace=[(0, 0)])
        Ai, Bi = A.astype(np.int64), B.astype(np.int64)
        # int14 saturating: replay the literal sequential saturating sum of one output
        exact = want(Ai, Bi)
        assert np.array_equal(res.exact, exact)
        a_row, b_col = (Ai[0], Bi[0]) if pass_ == "backward_input" else (Ai[:, 0], Bi[:, 0])
        acc = 0
        for x, w in zip(a_row.tolist(), b_col.tolist()):
            acc = max(-8192, min(8191, acc + x * w))
        assert res.acc[0, 0] == acc and res.traces[(0, 0)][-1] == acc


def test_conv2d_backward_passes_match_literal_gradients():
    spec = parse_spec(CONV_BACKWARD.format(pass_="backward_weight"))
    res, (x, dy, _) = run_layer(spec)
    assert x.shape == (2, 3, 6, 5) and dy.shape == (2, 4, 3, 3)
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    dw = np.zeros((4, 3, 3, 3), dtype=np.int64)
    for o in range(4):
        for c in range(3):
            for kh in range(3):
                for kw in range(3):
                    dw[o, c, kh, kw] = sum(int(xp[n, c, oh * 2 + kh, ow * 2 + kw]) * int(dy[n, o, oh, ow])
                                           for n in range(2) for oh in range(3) for ow in range(3))
    assert np.array_equal(np.asarray(res.acc).T.reshape(4, 3, 3, 3), dw)

    spec = parse_spec(CONV_BACKWARD.format(pass_="backward_input"))
    res, (dy, w, _) = run_layer(spec)
    assert dy.shape == (2, 4, 3, 3) and w.shape == (4, 3, 3, 3)
    dxp = np.zeros((2, 3, 8, 7), dtype=np.int64)
    for n in range(2):
        for o in range(4):
            for oh in range(3):
                for ow in range(3):
                    dxp[n, :, oh * 2:oh * 2 + 3, ow * 2:ow * 2 + 3] += int(dy[n, o, oh, ow]) * w[o].astype(np.int64)
    dx = dxp[:, :, 1:7, 1:6]
    assert np.array_equal(np.asarray(res.acc).reshape(2, 6, 5, 3).transpose(0, 3, 1, 2), dx)


def test_backward_spec_errors():
    with pytest.raises(SpecError, match=r"layer.pass = 'sideways' is not allowed; expected one of"):
        parse_spec(CONV_BACKWARD.format(pass_="sideways"))
    with pytest.raises(SpecError, match=r"data.bias = True is not allowed; expected no bias in a backward pass"):
        parse_spec(CONV_BACKWARD.format(pass_="backward_input").replace("seed = 3", "seed = 3\nbias = true"))
    with pytest.raises(SpecError, match=r"shape.groups = 2 .*backward convolutions have groups 1"):
        parse_spec(CONV_BACKWARD.format(pass_="backward_input").replace("kernel = 3", "kernel = 3\ngroups = 2"))


BATCH_NORM = """
[layer]
op = "batch_norm"
pass = "{pass_}"
[shape]
batch = 4
in_channels = 3
height = 5
width = 5
[data]
seed = 9
std = 300
[batch_norm]
x_fmt = "Q7.8"
acc = "int48"
stat_fmt = "e10m48"
rsqrt_fmt = "e10m48"
out_fmt = "{out}"
grad_fmt = "{out}"
stat_acc = "e10m48"
grad_acc = "e10m48"
"""


@pytest.mark.parametrize("pass_", ["forward", "backward_input"])
def test_batch_norm_spec_in_float64_formats_matches_the_float64_definition(pass_):
    from fxsim.workflows.spec import run_batch_norm
    wide = run_batch_norm(parse_spec(BATCH_NORM.format(pass_=pass_, out="e10m48")))
    narrow = run_batch_norm(parse_spec(BATCH_NORM.format(pass_=pass_, out="fp16")))
    keys = [k for k in wide if k.endswith("max_abs_error_vs_float64")]
    assert keys == (["y_max_abs_error_vs_float64"] if pass_ == "forward" else
                    ["dx_max_abs_error_vs_float64", "dgamma_max_abs_error_vs_float64", "dbeta_max_abs_error_vs_float64"])
    for k in keys:
        assert wide[k] < 1e-9             # every register ~float64 (48-bit mantissas): rounding noise only
        assert narrow[k] > 1e-5           # fp16 products: visibly rounded
    assert wide["reduction_overflow_events"] == 0


def test_batch_norm_spec_errors():
    text = BATCH_NORM.format(pass_="forward", out="fp16")
    with pytest.raises(SpecError, match=r"<spec>:18: batch_norm.out_fmt: .*fp99"):
        parse_spec(text.replace('out_fmt = "fp16"', 'out_fmt = "fp99"'))
    with pytest.raises(SpecError, match=r"batch_norm.rsqrt_method = 'magic' is not allowed"):
        parse_spec(text.replace('out_fmt = "fp16"', 'out_fmt = "fp16"\nrsqrt_method = "magic"'))
    with pytest.raises(SpecError, match=r"batch_norm.momentum = 0.9 is not allowed; expected one of the keys"):
        parse_spec(text.replace('out_fmt = "fp16"', 'out_fmt = "fp16"\nmomentum = 0.9'))
    with pytest.raises(SpecError, match=r"layer.pass = 'backward_weight' .*batch_norm"):
        parse_spec(BATCH_NORM.format(pass_="backward_weight", out="fp16"))
    with pytest.raises(ValueError, match="not one GEMM"):
        run_layer(parse_spec(text))


@pytest.mark.parametrize("spec,key,value", [
    (E4M3_GEMM, "product_random_bits", "8"),        # a product option without a product register
    (E4M3_GEMM, "product_seed", "3"),
    (INT8_GEMM, "fused", "true"),                   # fused with a fixed-point accumulator
])
def test_a_combination_the_datapath_refuses_points_at_the_key_that_set_it(spec, key, value):
    text = spec.replace("[datapath]\n", f"[datapath]\n{key} = {value}\n", 1)
    line = text.split("\n").index(f"{key} = {value}") + 1
    with pytest.raises(SpecError) as e:
        parse_spec(text)
    assert f":{line}: datapath.{key}: " in str(e.value)


def test_an_output_overflow_without_an_output_register_points_at_its_key():
    """``output.overflow`` is the output register's; with no ``output.format`` it applies to nothing."""
    text = INT8_GEMM.replace('[output]\nformat = "int8"\n', '[output]\noverflow = "wrap"\n', 1)
    assert 'overflow = "wrap"' in text
    line = text.split("\n").index('overflow = "wrap"') + 1
    with pytest.raises(SpecError) as e:
        parse_spec(text)
    assert f":{line}: output.overflow: " in str(e.value)
    assert "applies to an output register" in str(e.value)
    assert parse_spec(INT8_GEMM.replace('format = "int8"\n[output.requant]',
                                        'format = "int8"\noverflow = "wrap"\n[output.requant]')).datapath.output.overflow.name == "WRAP"
