"""The conv lowering (fxsim.ops.lowering) against plain loops."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fxsim.ops.lowering import dilate_for_transpose, flatten_weights, fold_add, geometry, output_size, unfold


def unfold_loops(x, KH, KW, stride, pads, dil, pad_value, order, offset):
    """Patches by plain loops with (top, left, bottom, right) padding; entries x - offset."""
    (sh, sw), (t, left, b, r), (dh, dw) = stride, pads, dil
    N, C, H, W = x.shape
    # the output size by counting the window positions that fit the padded input
    OH = sum(1 for oh in range(H + t + b) if oh * sh + dh * (KH - 1) < H + t + b)
    OW = sum(1 for ow in range(W + left + r) if ow * sw + dw * (KW - 1) < W + left + r)
    rows = []
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                def at(c, i, j):
                    h, w_ = oh * sh + i * dh - t, ow * sw + j * dw - left
                    return int(x[n, c, h, w_]) - offset if 0 <= h < H and 0 <= w_ < W else pad_value
                terms = ([(c, i, j) for c in range(C) for i in range(KH) for j in range(KW)] if order == "ckk"
                         else [(c, i, j) for i in range(KH) for j in range(KW) for c in range(C)])
                rows.append([at(*k) for k in terms])
    return np.array(rows, dtype=np.int64).reshape(N * OH * OW, C * KH * KW), OH, OW


@settings(max_examples=80)
@given(N=st.integers(1, 2), C=st.integers(1, 3), H=st.integers(1, 7), W=st.integers(1, 7),
       KH=st.integers(1, 3), KW=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3),
       pads=st.tuples(*[st.integers(0, 3)] * 4), dh=st.integers(1, 2), dw=st.integers(1, 2),
       order=st.sampled_from(["ckk", "kkc"]), offset=st.integers(0, 9), pad=st.integers(-5, 5),
       dtype=st.sampled_from([np.int16, np.int64, np.float32, np.float64]), seed=st.integers(0, 2 ** 31))
def test_unfold_equals_plain_loops(N, C, H, W, KH, KW, sh, sw, pads, dh, dw, order, offset, pad, dtype, seed):
    t, left, b, r = pads
    if H + t + b < dh * (KH - 1) + 1 or W + left + r < dw * (KW - 1) + 1:
        with pytest.raises(ValueError, match="does not fit"):
            geometry(H, W, (KH, KW), stride=(sh, sw), padding=pads, dilation=(dh, dw))
        return
    x = np.random.default_rng(seed).integers(0, 256, (N, C, H, W)).astype(np.uint8)
    want, OH, OW = unfold_loops(x, KH, KW, (sh, sw), pads, (dh, dw), pad, order, offset)
    got, oh, ow = unfold(x, (KH, KW), stride=(sh, sw), padding=pads, dilation=(dh, dw), pad_value=pad,
                         reduction_order=order, offset=offset, dtype=dtype)
    assert (oh, ow) == (OH, OW) == (output_size(H, KH, sh, t, b, dh), output_size(W, KW, sw, left, r, dw))
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)
    # symmetric padding as an (h, w) pair gives the same as the four-sided form
    if (t, left) == (b, r):
        again, _, _ = unfold(x, (KH, KW), stride=(sh, sw), padding=(t, left), dilation=(dh, dw), pad_value=pad,
                             reduction_order=order, offset=offset, dtype=dtype)
        np.testing.assert_array_equal(again, got)


def test_unfold_checks_out_and_order():
    x = np.zeros((1, 2, 4, 4), dtype=np.int8)
    with pytest.raises(ValueError, match="reduction_order"):
        unfold(x, (3, 3), reduction_order="kck")
    with pytest.raises(ValueError, match="C-contiguous float32 array of shape"):
        unfold(x, (3, 3), dtype=np.float32, out=np.empty((4, 18), dtype=np.float64))
    with pytest.raises(ValueError, match="padding\\[2\\]"):
        unfold(x, (3, 3), padding=(1, 1, -1, 1))


def test_flatten_weights_follows_the_patch_columns():
    rng = np.random.default_rng(0)
    x = rng.integers(-5, 6, (2, 3, 5, 6))
    w = rng.integers(-5, 6, (4, 3, 2, 3))
    for order in ("ckk", "kkc"):
        p, OH, OW = unfold(x, (2, 3), reduction_order=order)
        y = (p @ flatten_weights(w, order)).reshape(2, OH, OW, 4).transpose(0, 3, 1, 2)
        want = np.zeros_like(y)
        for o in range(4):
            for oh in range(OH):
                for ow in range(OW):
                    want[:, o, oh, ow] = (x[:, :, oh:oh + 2, ow:ow + 3] * w[o]).sum(axis=(1, 2, 3))
        np.testing.assert_array_equal(y, want)


@settings(max_examples=40)
@given(H=st.integers(2, 7), W=st.integers(2, 7), K=st.integers(1, 3), s=st.integers(1, 3), p=st.integers(0, 2),
       seed=st.integers(0, 2 ** 31))
def test_fold_add_is_the_adjoint_of_unfold(H, W, K, s, p, seed):
    """<unfold(x), G> == <x, fold_add(G)> exactly (small integers)."""
    if H + 2 * p < K or W + 2 * p < K:
        return
    rng = np.random.default_rng(seed)
    x = rng.integers(-9, 10, (2, 3, H, W)).astype(np.float64)
    g = geometry(H, W, (K, K), stride=s, padding=p)
    G = rng.integers(-9, 10, (2 * g.OH * g.OW, 3 * K * K)).astype(np.float64)
    cols, _, _ = unfold(x, (K, K), stride=s, padding=p)
    assert np.sum(cols * G) == np.sum(x * fold_add(G, x.shape, g))


def test_dilate_for_transpose_places_the_gradient():
    dy = np.arange(1, 7, dtype=np.int64).reshape(1, 1, 2, 3)
    g = geometry(4, 6, (2, 2), stride=2, padding=0)
    P = dilate_for_transpose(dy, 4, 6, g, -1)
    assert P.shape == (1, 1, 5, 7)
    want = np.full((5, 7), -1)
    for i in range(2):
        for j in range(3):
            want[1 + 2 * i, 1 + 2 * j] = dy[0, 0, i, j]
    np.testing.assert_array_equal(P[0, 0], want)
