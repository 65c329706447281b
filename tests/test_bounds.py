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
