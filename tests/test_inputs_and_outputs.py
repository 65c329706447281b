"""What users hand in and get back: scalars stay scalars, shapes are kept, arrays from other libraries
(``__array__``, DLPack) are read, integers beyond 2**53 are refused rather than rounded, and quantize
returns float64 values, integer codes or ml_dtypes arrays on request."""
import ml_dtypes
import numpy as np
import pytest

from fxsim.datapath import Accumulator, Datapath
from fxsim.errors import InvalidArgument
from fxsim.engines.floating import float_gemm
from fxsim.formats import parse_format
from fxsim.engines.block import block_quantize, mx_gemm
from fxsim.ops.conv import conv2d
from fxsim.ops.gemm import gemm
from fxsim.quantize import quantize, quantize_to_codes, to_dtype


class DLPackOnly:
    """An array that offers nothing but the DLPack protocol (as a CPU PyTorch tensor or JAX array does)."""

    def __init__(self, a):
        self._a = np.ascontiguousarray(a)

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


class ArrayLike:
    """An object that converts itself with ``__array__`` only."""

    def __init__(self, a):
        self._a = np.asarray(a)

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


WRAPPERS = [DLPackOnly, ArrayLike]
try:
    import torch
    WRAPPERS.append(lambda a: torch.from_numpy(np.ascontiguousarray(a)))
except ImportError:   # torch is no dependency; the wrappers above exercise the same protocols
    pass


# ---- scalars and shapes ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["int8", "Q3.4", "e4m3", "fp4_e3m0_r4", "e8m0", "int64"])
def test_scalar_in_scalar_out_and_shapes_kept(fmt):
    s = quantize(1.3, fmt)
    assert np.ndim(s) == 0 and isinstance(s, np.float64)
    assert np.ndim(quantize(np.float32(1.3), fmt)) == 0
    assert np.ndim(quantize(np.array(1.3), fmt)) == 0
    for shape in [(0,), (1,), (2, 3), (2, 0, 4), (1, 1, 1)]:
        assert quantize(np.ones(shape), fmt).shape == shape
        assert quantize(np.ones(shape), fmt, returns="codes").shape == shape
    assert quantize([[1.0, 2.0]], fmt).shape == (1, 2)


def test_quantize_to_codes_keeps_scalars_and_shapes():
    c = quantize_to_codes(1.3, "Q3.4")
    assert np.ndim(c) == 0 and c == 21
    assert quantize_to_codes(np.ones((2, 3)), "int8").shape == (2, 3)


@pytest.mark.parametrize("big", [2 ** 53 + 1, -(2 ** 53) - 1, 2 ** 62, 2 ** 63 - 1])
def test_integers_beyond_2_53_are_refused_not_rounded(big):
    for dtype in (np.int64, np.uint64) if big > 0 else (np.int64,):
        x = np.array([3, big], dtype=dtype)
        with pytest.raises(InvalidArgument, match=f"64-bit integer {big} .flat index 1."):
            quantize_to_codes(x, "int64")
        with pytest.raises(InvalidArgument, match="beyond 2\\*\\*53"):
            quantize(x, "fp32")
    # 2**53 itself and everything below are exact
    assert quantize_to_codes(np.array([2 ** 53, -(2 ** 53)]), "int64").tolist() == [2 ** 53, -(2 ** 53)]


# ---- overflow="error" on every kind of float grid ------------------------------------------------
@pytest.mark.parametrize("fmt,x", [(f, x) for f in ["fp4_e3m0_r4", "e2m1", "e4m3", "e3m2"]
                                   for x in (np.inf, -np.inf, 1e300, -1e300)]
                         + [("e8m0", np.inf), ("e8m0", 1e300)])   # unsigned: negatives are NaN, not overflow
def test_overflow_error_covers_infinities_the_format_cannot_hold(fmt, x):
    with pytest.raises(OverflowError, match=f"overflow {fmt}"):
        quantize(np.array([1.0, x]), fmt, overflow="error")


@pytest.mark.parametrize("rounding", ["toward_zero", "floor", "jam", "half_even", "ceil"])
@pytest.mark.parametrize("x", [2000.0, 1e300, 4096.0])
def test_radix4_overflow_error_whatever_the_rounding(rounding, x):
    # beyond max * 4 every rounding leaves the range, as on radix-2 grids (e2m1: 100 toward zero raises)
    with pytest.raises(OverflowError, match="overflow fp4_e3m0_r4"):
        quantize(np.array([x]), "fp4_e3m0_r4", rounding=rounding, overflow="error")
    with pytest.raises(OverflowError):
        quantize(np.array([x / 20]), "e2m1", rounding=rounding, overflow="error")
    assert quantize(np.array([x, -x]), "fp4_e3m0_r4", rounding=rounding, overflow="saturate").tolist() == [256, -256]


def test_overflow_error_leaves_representable_infinities_alone():
    assert quantize(np.array([np.inf]), "e5m2", overflow="error")[0] == np.inf
    with pytest.raises(OverflowError):
        quantize(np.array([1e6]), "e5m2", overflow="error")
    with pytest.raises(OverflowError):   # radix 4: 300 rounds up to the next level, 1024, beyond the max
        quantize(np.array([300.0]), "fp4_e3m0_r4", rounding="ceil", overflow="error")
    assert quantize(np.array([300.0]), "fp4_e3m0_r4", overflow="error")[0] == 256.0


# ---- returns= --------------------------------------------------------------------------------------
def test_returns_codes_and_ml_dtypes():
    x = np.array([1.3, -500.0, 0.1, 2.0 ** -12])
    v = quantize(x, "e4m3")
    codes = quantize(x, "e4m3", returns="codes")
    assert codes.dtype == np.uint8 and np.array_equal(codes, parse_format("e4m3").encode(v))
    m = quantize(x, "e4m3", returns="ml_dtypes")
    assert m.dtype == ml_dtypes.float8_e4m3fn
    assert np.array_equal(m.view(np.uint8), codes)
    ints = quantize(np.array([1.3, -500.0, 7.7]), "int8", returns="codes")
    assert ints.dtype == np.int8 and ints.tolist() == [1, -128, 8]
    assert quantize(np.array([1.3, 1.9]), "Q3.4", returns="codes").tolist() == [21, 30]
    assert quantize(np.array([-9.0, 3.4]), "int4", returns="ml_dtypes").dtype == ml_dtypes.int4
    assert quantize(np.array([-9.0, 3.4]), "int4", returns="ml_dtypes").astype(int).tolist() == [-8, 3]
    assert quantize(np.array([1.0]), np.float16, returns="ml_dtypes").dtype == np.float16
    assert np.ndim(quantize(1.3, "e4m3", returns="ml_dtypes")) == 0
    assert to_dtype("e4m3_ieee") == np.dtype(ml_dtypes.float8_e4m3) and to_dtype("bf16") == np.dtype(ml_dtypes.bfloat16)


@pytest.mark.parametrize("fmt,returns,match", [("Q3.4", "ml_dtypes", "Q3.4 has no NumPy or ml_dtypes dtype"),
                                               ("e6m9", "ml_dtypes", "no NumPy or ml_dtypes dtype"),
                                               ("int8", "floats", "returns must be one of values, codes, ml_dtypes")])
def test_returns_refusals(fmt, returns, match):
    with pytest.raises(InvalidArgument, match=match):
        quantize(np.array([1.0]), fmt, returns=returns)


# ---- arrays from other libraries -----------------------------------------------------------------
@pytest.mark.parametrize("wrap", WRAPPERS)
def test_foreign_arrays_are_read_everywhere_and_results_are_numpy(wrap):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5))
    want = quantize(x, "e4m3")
    got = quantize(wrap(x), "e4m3")
    assert type(got) is np.ndarray and np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(quantize_to_codes(wrap(x), "Q3.4"), quantize_to_codes(x, "Q3.4"))

    A = rng.integers(-8, 8, (3, 4)).astype(np.int8)
    B = rng.integers(-8, 8, (4, 2)).astype(np.int8)
    r = gemm(wrap(A), wrap(B), Datapath())
    assert type(r.values) is np.ndarray and np.array_equal(r.values, gemm(A, B, Datapath()).values)

    Af = quantize(rng.standard_normal((2, 4)), "e4m3")
    Bf = quantize(rng.standard_normal((4, 3)), "e4m3")
    fdp = Datapath(a="e4m3", b="e4m3", accumulator="fp32")
    assert np.array_equal(float_gemm(wrap(Af), wrap(Bf), fdp).values, float_gemm(Af, Bf, fdp).values)

    xs = rng.integers(-8, 8, (1, 2, 4, 4)).astype(np.int8)
    ws = rng.integers(-8, 8, (3, 2, 2, 2)).astype(np.int8)
    assert np.array_equal(conv2d(wrap(xs), wrap(ws), Datapath()).values, conv2d(xs, ws, Datapath()).values)

    m = rng.standard_normal((2, 64))
    assert np.array_equal(block_quantize(wrap(m), "mxfp8_e4m3").dequantize(),
                          block_quantize(m, "mxfp8_e4m3").dequantize())
    assert np.array_equal(mx_gemm(wrap(m), wrap(m.T.copy())).values, mx_gemm(m, m.T.copy()).values)


def test_nn_layers_read_foreign_arrays():
    from fxsim.training.layers import Linear, Sequential
    from fxsim.training.recipes import get_recipe
    x = np.random.default_rng(1).standard_normal((4, 6))
    outs = []
    for inp in (x, DLPackOnly(x)):
        model = Sequential([Linear(6, 3, rng=np.random.default_rng(2))])
        model.configure(get_recipe("luq"), seed=0)
        outs.append(model.forward(inp))
    assert type(outs[1]) is np.ndarray and np.array_equal(outs[0], outs[1])
