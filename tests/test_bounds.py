"""Accumulator bounds against brute force over every input of small cases (Python ints)."""
import itertools

import numpy as np
from hypothesis import given, settings, strategies as st

from fxsim.bounds import data_bits, l1_bits, signed_bits_for_range, worst_case_bits
from fxsim.formats import Fixed


def _need(values):
    return signed_bits_for_range(min(values + [0]), max(values + [0]))


@settings(max_examples=40)
@given(abits=st.integers(2, 3), bbits=st.integers(2, 3), asg=st.booleans(), bsg=st.booleans(), K=st.integers(1, 3))
def test_worst_case_equals_brute_force(abits, bbits, asg, bsg, K):
    a, b = Fixed(abits, 0, asg), Fixed(bbits, 0, bsg)
    avals = range(a.min_code, a.max_code + 1)
    bvals = range(b.min_code, b.max_code + 1)
    partials = []
    for xs in itertools.product(avals, repeat=K):
        for ws in itertools.product(bvals, repeat=K):
            s = 0
            for x, w in zip(xs, ws):
                s += x * w
                partials.append(s)
    assert worst_case_bits(a, b, K) == _need(partials)


def test_worst_case_textbook_value():
    # 2**(W-1) - 1 >= K * 2**14 for int8 x int8: K = 512 -> 2**23 -> W = 25 (the -128*-128 products)
    assert worst_case_bits(Fixed(8), Fixed(8), 512) == 25
    assert worst_case_bits(Fixed(8), Fixed(8), 1) == 16


@settings(max_examples=40)
@given(st.lists(st.integers(-8, 7), min_size=1, max_size=3), st.booleans())
def test_data_bound_is_exact_over_all_inputs(ws, signed_a):
    a = Fixed(3, 0, signed_a)
    partials = []
    for xs in itertools.product(range(a.min_code, a.max_code + 1), repeat=len(ws)):
        s = 0
        for x, w in zip(xs, ws):
            s += x * w
            partials.append(s)
    W = np.array(ws).reshape(-1, 1)
    assert data_bits(W, a)[0] == _need(partials)
    assert l1_bits(W, a)[0] >= data_bits(W, a)[0]


@settings(max_examples=40)
@given(abits=st.integers(2, 3), bbits=st.integers(2, 3), asg=st.booleans(), bsg=st.booleans(), K=st.integers(1, 3),
       azp=st.integers(-2, 2), bzp=st.integers(-2, 2))
def test_zero_points_and_the_textbook_rule_against_brute_force(abits, bbits, asg, bsg, K, azp, bzp):
    from fxsim.bounds import symmetric_bits
    a, b = Fixed(abits, 0, asg), Fixed(bbits, 0, bsg)
    avals = [x - azp for x in range(a.min_code, a.max_code + 1)]
    bvals = [w - bzp for w in range(b.min_code, b.max_code + 1)]
    worst = K * max(abs(x * w) for x in avals for w in bvals)
    W = 1
    while 2 ** (W - 1) - 1 < worst:       # the textbook rule, literally
        W += 1
    assert symmetric_bits(a, b, K, a_zero_point=azp, b_zero_point=bzp) == W
    lo = K * min(min(x * w for x in avals for w in bvals), 0)
    hi = K * max(max(x * w for x in avals for w in bvals), 0)
    assert worst_case_bits(a, b, K, a_zero_point=azp, b_zero_point=bzp) == _need([lo, hi])
    assert worst_case_bits(a, b, K, a_zero_point=azp, b_zero_point=bzp) <= W


def test_hand_derived_bounds():
    # weights (3, -5) and int4 inputs (-8..7): partial sums reach 3*-8 + -5*7 = -59 and 3*7 + -5*-8 = 61 -> 7 bits;
    # the l1 bound (3 + 5) * 8 = 64 needs 8 bits; the worst case for int4 x int4, K = 2: 2 * 64 = 128 -> 9 bits
    W = np.array([[3], [-5]])
    assert data_bits(W, Fixed(4))[0] == 7
    assert l1_bits(W, Fixed(4))[0] == 8
    assert worst_case_bits(Fixed(4), Fixed(4), 2) == 9
    # uint8 activations x int8 weights, K = 64: products in [-32640, 32385] -> [-2088960, 2072640] -> 22 bits
    assert worst_case_bits(Fixed(8, 0, False), Fixed(8), 64) == 22
    assert signed_bits_for_range(-1, 0) == 1 and signed_bits_for_range(0, 1) == 2
    import pytest
    with pytest.raises(ValueError, match=r"K \(terms per dot product\) must be an integer >= 1"):
        worst_case_bits(Fixed(8), Fixed(8), 0)


@settings(max_examples=30)
@given(st.lists(st.lists(st.integers(-2 ** 50, 2 ** 50), min_size=3, max_size=3), min_size=1, max_size=5),
       st.integers(2, 24), st.booleans())
def test_column_bounds_in_int64_and_python_ints_agree_with_plain_sums(rows, abits, signed_a):
    # small weights take the int64 path, huge ones (K * max|w| * max|a| >= 2**62) the Python-int path
    a = Fixed(abits, 0, signed_a)
    for scale in (1, None):
        ws = [[w if scale is None else w % 1000 - 500 for w in r] for r in rows]
        W = np.array(ws, dtype=np.int64)
        for j in range(3):
            lo = sum(min(r[j] * a.min_code, r[j] * a.max_code, 0) for r in ws)
            hi = sum(max(r[j] * a.min_code, r[j] * a.max_code, 0) for r in ws)
            amax = max(-a.min_code, a.max_code)
            l1 = sum(abs(r[j]) for r in ws) * amax
            assert data_bits(W, a)[j] == signed_bits_for_range(lo, hi)
            assert l1_bits(W, a)[j] == signed_bits_for_range(-l1, l1)
        assert data_bits(W.astype(np.float64), a).tolist() == data_bits(W, a).tolist()   # |w| < 2**53: exact


def test_bounds_reject_non_integral_weights():
    import pytest
    from fxsim.errors import InvalidArgument
    with pytest.raises(InvalidArgument, match="integer codes"):
        data_bits(np.array([[1.5], [2.0]]), Fixed(8))
    with pytest.raises(InvalidArgument, match=r"\(K, N\)"):
        l1_bits(np.array([1, 2]), Fixed(8))
    for bad in (np.array([["a"], ["b"]], dtype=object), np.array([[1.5]], dtype=object), np.array([["1"]]),
                np.array([[np.nan]]), np.array([[2.0 ** 60]])):
        with pytest.raises(InvalidArgument, match="weights"):
            data_bits(bad, Fixed(8))
    assert data_bits(np.array([[2 ** 70], [-3]], dtype=object), Fixed(8)).tolist() == \
        [signed_bits_for_range(-(2 ** 70) * 128 - 3 * 127, 2 ** 70 * 127 + 3 * 128)]
