"""conv2d: against the GEMM on explicitly unfolded patches (literal loops, both reduction orders) and
against a float64 reference when nothing overflows."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fxsim.datapath import Accumulator, Datapath, Order, OutputStage, Requant
from fxsim.ops.conv import conv2d
from fxsim.ops.gemm import gemm


def unfold_literally(x, KH, KW, stride, pad, dil, pad_value, order):
    """Patch matrix by plain loops: rows (n, oh, ow), columns (c, kh, kw) or (kh, kw, c)."""
    N, C, H, W = x.shape
    OH = (H + 2 * pad - dil * (KH - 1) - 1) // stride + 1
    OW = (W + 2 * pad - dil * (KW - 1) - 1) // stride + 1
    rows = []
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                def at(c, kh, kw):
                    h, w_ = oh * stride + kh * dil - pad, ow * stride + kw * dil - pad
                    return x[n, c, h, w_] if 0 <= h < H and 0 <= w_ < W else pad_value
                if order == "ckk":
                    rows.append([at(c, kh, kw) for c in range(C) for kh in range(KH) for kw in range(KW)])
                else:
                    rows.append([at(c, kh, kw) for kh in range(KH) for kw in range(KW) for c in range(C)])
    return np.array(rows, dtype=np.int64).reshape(N * OH * OW, -1), OH, OW


def weights_literally(w, order):
    O, C, KH, KW = w.shape
    if order == "ckk":
        cols = [[w[o, c, kh, kw] for c in range(C) for kh in range(KH) for kw in range(KW)] for o in range(O)]
    else:
        cols = [[w[o, c, kh, kw] for kh in range(KH) for kw in range(KW) for c in range(C)] for o in range(O)]
    return np.array(cols, dtype=np.int64).reshape(O, -1).T


@settings(max_examples=60)
@given(N=st.integers(1, 2), groups=st.integers(1, 3), cpg=st.integers(1, 3), opg=st.integers(1, 2),
       H=st.integers(1, 6), W=st.integers(1, 6), KH=st.integers(1, 3), KW=st.integers(1, 3),
       stride=st.integers(1, 2), pad=st.integers(0, 2), dil=st.integers(1, 2),
       order=st.sampled_from(["ckk", "kkc"]), zp=st.integers(-3, 3), seed=st.integers(0, 2 ** 32 - 1),
       dorder=st.sampled_from([Order(), Order("tree"), Order("chunked", lanes=3)]))
def test_conv_equals_gemm_on_explicitly_unfolded_patches(N, groups, cpg, opg, H, W, KH, KW, stride, pad, dil,
                                                         order, zp, seed, dorder):
    if H + 2 * pad < dil * (KH - 1) + 1 or W + 2 * pad < dil * (KW - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    C, O = groups * cpg, groups * opg
    x = rng.integers(-128, 128, (N, C, H, W))
    w = rng.integers(60, 128, (O, cpg, KH, KW)) * rng.choice([-1, 1])   # one sign: partial sums run away
    bias = rng.integers(-500, 500, O)
    dp = Datapath(a_zero_point=zp, accumulator=Accumulator("int14", overflow="saturate"), order=dorder,
                  output=OutputStage(requant=Requant.dyadic(np.arange(1, O + 1), 6, "half_even"), fmt="int8"))
    r = conv2d(x, w, dp, stride=stride, padding=pad, dilation=dil, groups=groups, bias=bias,
               reduction_order=order, trace=[(N - 1, O - 1, 0, 0)])
    for g in range(groups):
        patches, OH, OW = unfold_literally(x[:, g * cpg:(g + 1) * cpg], KH, KW, stride, pad, dil, zp, order)
        wg = weights_literally(w[g * opg:(g + 1) * opg], order)
        chans = slice(g * opg, (g + 1) * opg)
        dpg = dp.replace(output=OutputStage(requant=Requant.dyadic(np.arange(1, O + 1)[chans], 6, "half_even"),
                                            fmt="int8"))
        want = gemm(patches, wg, dpg, bias=bias[chans])
        to_nchw = lambda a: a.reshape(N, OH, OW, opg).transpose(0, 3, 1, 2)
        np.testing.assert_array_equal(r.acc[:, chans], to_nchw(want.acc))
        np.testing.assert_array_equal(r.codes[:, chans], to_nchw(want.codes))
        np.testing.assert_array_equal(r.overflow_count[:, chans], to_nchw(want.overflow_count))
        np.testing.assert_array_equal(r.max_partial[:, chans], to_nchw(want.max_partial))
    assert r.traces[(N - 1, O - 1, 0, 0)][-1] == r.acc[N - 1, O - 1, 0, 0]
    fast = conv2d(x, w, dp, stride=stride, padding=pad, dilation=dil, groups=groups, bias=bias,
                  reduction_order=order, stats=False)
    np.testing.assert_array_equal(fast.codes, r.codes)


def conv_float64(x, w, stride, pad, dil, groups):
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    OH = (H + 2 * pad - dil * (KH - 1) - 1) // stride + 1
    OW = (W + 2 * pad - dil * (KW - 1) - 1) // stride + 1
    y = np.zeros((N, O, OH, OW))
    Og = O // groups
    for o in range(O):
        g = o // Og
        for kh in range(KH):
            for kw in range(KW):
                patch = xp[:, g * Cg:(g + 1) * Cg, kh * dil:kh * dil + stride * (OH - 1) + 1:stride,
                           kw * dil:kw * dil + stride * (OW - 1) + 1:stride]
                y[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, kh, kw].astype(np.float64))
    return y


@pytest.mark.parametrize("groups,cin,cout,k,stride,pad,dil", [
    (1, 3, 4, 3, 1, 1, 1), (1, 5, 2, 1, 1, 0, 1),      # 3x3 and 1x1
    (4, 4, 4, 3, 2, 1, 1), (2, 4, 6, 3, 1, 2, 2),      # depthwise, grouped + dilated
])
def test_conv_matches_float64_when_nothing_overflows(groups, cin, cout, k, stride, pad, dil):
    rng = np.random.default_rng(7)
    x = rng.integers(-8, 8, (2, cin, 7, 6)) * 0.25          # Fixed(6, 2) values
    w = rng.integers(-32, 32, (cout, cin // groups, k, k)) * 0.125
    dp = Datapath(a="Q3.2", b="Q3.3", accumulator=Accumulator("Q18.5", overflow="saturate"))
    r = conv2d(x, w, dp, stride=stride, padding=pad, dilation=dil, groups=groups)
    assert not r.overflow_count.any()
    np.testing.assert_array_equal(r.acc_values, conv_float64(x, w, stride, pad, dil, groups))


def test_reduction_order_changes_the_result_under_saturation():
    # one output, C=2, 1x2 kernel. ckk: (c0,k0)=+100, (c0,k1)=+100, (c1,k0)=-100, (c1,k1)=-100
    # int8 acc saturating: ckk: 100 -> 127 -> 27 -> -73;  kkc: (k0,c0)=+100, (k0,c1)=-100, +100, -100 -> 0
    x = np.array([[[[10, 10]], [[10, 10]]]])
    w = np.array([[[[10, 10]], [[-10, -10]]]])
    dp = Datapath(accumulator=Accumulator("int8", overflow="saturate"))
    assert conv2d(x, w, dp, reduction_order="ckk").acc.ravel().tolist() == [-73]
    assert conv2d(x, w, dp, reduction_order="kkc").acc.ravel().tolist() == [0]
    r = conv2d(x, w, dp, reduction_order="ckk", trace=(0, 0, 0, 0))
    assert r.traces[(0, 0, 0, 0)].tolist() == [0, 100, 127, 27, -73]


def test_conv_argument_errors():
    dp = Datapath()
    x = np.zeros((1, 4, 5, 5))
    with pytest.raises(ValueError, match="groups=3 must divide the input channels"):
        conv2d(x, np.zeros((3, 1, 3, 3)), dp, groups=3)
    with pytest.raises(ValueError, match="w has 3 input channels per group"):
        conv2d(x, np.zeros((4, 3, 3, 3)), dp)
    with pytest.raises(ValueError, match="x must be NCHW"):
        conv2d(x[0], np.zeros((4, 4, 3, 3)), dp)
    with pytest.raises(ValueError, match="does not fit the padded 5x5 input"):
        conv2d(x, np.zeros((4, 4, 7, 7)), dp)
    with pytest.raises(ValueError, match="reduction_order must be one of"):
        conv2d(x, np.zeros((4, 4, 3, 3)), dp, reduction_order="hwc")


def test_float_datapath_conv_goes_through_the_float_engine():
    # e4m3 operands holding small integers, fp32 accumulator: every sum is exact, so it equals float64
    rng = np.random.default_rng(3)
    x = rng.integers(-8, 9, (1, 2, 5, 5)).astype(np.float64)
    w = rng.integers(-8, 9, (3, 2, 3, 3)).astype(np.float64)
    dp = Datapath(a="e4m3", b="e4m3", accumulator=Accumulator("fp32", overflow="ieee", rounding="half_even"))
    r = conv2d(x, w, dp, padding=1)
    np.testing.assert_array_equal(r.values, conv_float64(x, w, 1, 1, 1, 1))


def test_float_accumulator_padding_is_the_zero_points_real_zero():
    """A float datapath with an INT8 zero point: padding is code zp (the real 0), as in the integer
    engine; an exact FP32 accumulator then gives the integer engine's outputs bit for bit."""
    rng = np.random.default_rng(11)
    x = rng.integers(-100, 100, (2, 3, 5, 4)).astype(float)
    w = rng.integers(-100, 100, (4, 3, 3, 2)).astype(float)
    kw = dict(padding=(2, 1), stride=(1, 2), dilation=(2, 1))
    exact = conv2d(x, w, Datapath(a="int8", b="int8", accumulator=Accumulator("int40"), a_zero_point=5), **kw)
    fp32 = Accumulator("fp32", rounding="half_even", overflow="ieee")   # sums < 2**24: every add exact
    got = conv2d(x, w, Datapath(a="int8", b="int8", accumulator=fp32, a_zero_point=5), **kw)
    assert np.array_equal(got.values, exact.values)
