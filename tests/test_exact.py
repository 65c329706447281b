"""The kernel-speed exact GEMM reference (fxsim.engines.exact, kernels.exact_sum) against Python fractions: the
exact sum of exact products, rounded once by Python's correctly rounded Fraction -> float."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fxsim.engines.exact import exact_gemm
from fxsim.workflows import metrics


def fraction_reference(A, B, bias=None, azp=0, bzp=0):
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    M, K = A.shape
    N = B.shape[1]
    out = np.empty((M, N))
    for i in range(M):
        for j in range(N):
            s = Fraction(float(bias[j])) if bias is not None else Fraction(0)
            for k in range(K):
                s += (Fraction(float(A[i, k])) - azp) * (Fraction(float(B[k, j])) - bzp)
            out[i, j] = float(s)
    return out


def _floats(lo_exp, hi_exp):
    """Signed floats with significands of up to 53 bits across a range of exponents, zeros included."""
    return st.one_of(
        st.just(0.0),
        st.builds(lambda m, e, s: s * float(np.ldexp(float(m), e)), st.integers(1, 2 ** 53 - 1),
                  st.integers(lo_exp, hi_exp), st.sampled_from([1.0, -1.0])))


@settings(max_examples=200)
@given(data=st.data(), M=st.integers(1, 3), K=st.integers(0, 7), N=st.integers(1, 3), span=st.sampled_from(
    [(-40, 0), (-500, -450), (-480, 380), (-1074, -1000), (200, 300)]))
def test_exact_gemm_equals_the_fraction_reference(data, M, K, N, span):
    lo, hi = span
    elems = _floats(lo - 52, hi - 52)
    A = np.array(data.draw(st.lists(elems, min_size=M * K, max_size=M * K)), dtype=np.float64).reshape(M, K)
    B = np.array(data.draw(st.lists(elems, min_size=K * N, max_size=K * N)), dtype=np.float64).reshape(K, N)
    bias = None
    if data.draw(st.booleans()):
        bias = np.array(data.draw(st.lists(elems, min_size=N, max_size=N)), dtype=np.float64)
    if data.draw(st.booleans()) and K:            # cancellation: a row that cancels most of the sum
        A[0, -1] = -A[0, 0] if K > 1 else A[0, -1]
        B[-1, :] = B[0, :]
    try:
        ref = fraction_reference(A, B, bias)
    except OverflowError:                          # the exact sum is beyond float64
        return
    assert np.array_equal(exact_gemm(A, B, bias), ref)


@settings(max_examples=60)
@given(data=st.data(), azp=st.integers(-8, 8), bzp=st.integers(-8, 8))
def test_zero_points_are_subtracted_exactly(data, azp, bzp):
    codes = st.integers(-128, 127)
    A = np.array(data.draw(st.lists(codes, min_size=6, max_size=6)), dtype=np.float64).reshape(2, 3) / 16
    B = np.array(data.draw(st.lists(codes, min_size=6, max_size=6)), dtype=np.float64).reshape(3, 2) / 4
    assert np.array_equal(exact_gemm(A, B, None, azp, bzp), fraction_reference(A, B, None, azp, bzp))


@pytest.mark.parametrize("terms,expected", [
    ([1.0, 2.0 ** -53], 1.0),                                   # a tie: to even
    ([1.0, 2.0 ** -53, 2.0 ** -300], 1.0 + 2.0 ** -52),         # just above the tie
    ([1.0 + 2.0 ** -52, 2.0 ** -53], 1.0 + 2.0 ** -51),         # a tie from an odd significand: up
    ([1.0, -(2.0 ** -53)], 1.0 - 2.0 ** -53),                   # below 1: a finer grid, exact
    ([1.0, -(2.0 ** -54)], 1.0),                                # a tie on that grid: to even (1.0)
    ([2.0 ** 400, 1.0, -(2.0 ** 400)], 1.0),                    # catastrophic cancellation
    ([2.0 ** -449, 2.0 ** -449], 2.0 ** -448),
    ([-3.0, 3.0], 0.0),
])
def test_rounding_corner_cases(terms, expected):
    A = np.array([terms], dtype=np.float64)
    B = np.ones((len(terms), 1))
    assert exact_gemm(A, B)[0, 0] == expected == fraction_reference(A, B)[0, 0]


def test_subnormal_products_and_out_of_range_operands_fall_back_to_fractions_with_the_same_answer():
    A = np.array([[2.0 ** -600, 3.0, 2.0 ** 500]])
    B = np.array([[2.0 ** -500], [1.0], [2.0 ** -499]])
    assert exact_gemm(A, B)[0, 0] == fraction_reference(A, B)[0, 0]


def test_fxsim_run_of_a_float_spec_reports_against_the_exact_sums(tmp_path, capsys, monkeypatch):
    """The CLI's exact reference is the kernel, and its answer is the Fractions' one."""
    import fxsim.cli.main
    from fxsim.workflows.spec import make_data, parse_spec
    from tests.workflow_specs import E4M3_GEMM
    spec = parse_spec(E4M3_GEMM)
    A, B, bias = make_data(spec)
    assert np.array_equal(metrics.exact_gemm(A, B, bias), fraction_reference(A, B, bias))
