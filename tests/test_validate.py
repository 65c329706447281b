"""The central validators: each row is one value a careless user or script passes, and what it gets."""
import math

import numpy as np
import pytest

from fxsim.errors import FxsimError, InvalidArgument, InvalidType
from fxsim.validate import as_array, check_bool, check_choice, check_int, check_real


@pytest.mark.parametrize("value, lo, hi, expected", [
    (4, 1, None, 4), (np.int16(7), 0, 7, 7), (-3, None, None, -3), (2 ** 70, None, None, 2 ** 70)])
def test_check_int_accepts_integers_in_range(value, lo, hi, expected):
    got = check_int("n", value, lo=lo, hi=hi)
    assert got == expected and type(got) is int


@pytest.mark.parametrize("value, lo, hi, err, text", [
    (True, 1, None, InvalidType, "n must be an integer >= 1, got True"),
    (1.7, None, None, InvalidType, "got 1.7"),
    (2.0, None, None, InvalidType, "got 2.0"),
    ("24", None, None, InvalidType, "got '24'"),
    (0, 1, 64, InvalidArgument, "n must be an integer in 1..64, got 0"),
    (65, 1, 64, InvalidArgument, "in 1..64, got 65"),
])
def test_check_int_refuses_with_the_argument_the_value_and_the_range(value, lo, hi, err, text):
    with pytest.raises(err, match=text.replace(".", r"\.").replace("(", r"\(")):
        check_int("n", value, lo=lo, hi=hi)


@pytest.mark.parametrize("value", ["false", "no", 0, 1, None, "true"])
def test_check_bool_refuses_strings_and_numbers(value):
    with pytest.raises(InvalidType, match="flag must be true or false"):
        check_bool("flag", value)


def test_check_bool_accepts_python_and_numpy_bools():
    assert check_bool("flag", np.bool_(False)) is False and check_bool("flag", True) is True


@pytest.mark.parametrize("value, kw, text", [
    (math.nan, {}, "finite"), (math.inf, {}, "finite"), (0.0, {"lo": 0, "lo_open": True}, "> 0"),
    (-1, {"lo": 0}, ">= 0"), (True, {}, "real number")])
def test_check_real_refuses(value, kw, text):
    with pytest.raises(FxsimError, match=text):
        check_real("scale", value, **kw)


def test_check_choice_lists_what_is_allowed():
    assert check_choice("order", "tree", ("sequential", "tree")) == "tree"
    with pytest.raises(InvalidArgument, match="order must be one of sequential, tree, got 'sideways'"):
        check_choice("order", "sideways", ("sequential", "tree"))


class _DLPackOnly:
    """An array that speaks only DLPack (as a PyTorch CPU tensor does to NumPy)."""
    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


class _ArrayOnly:
    def __init__(self, a):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


@pytest.mark.parametrize("wrap", [lambda a: a, _DLPackOnly, _ArrayOnly, lambda a: a.tolist()])
def test_as_array_reads_every_array_protocol(wrap):
    a = np.arange(6, dtype=np.int16).reshape(2, 3)
    got = as_array("x", wrap(a))
    assert isinstance(got, np.ndarray) and got.shape == (2, 3) and np.array_equal(got, a)


@pytest.mark.parametrize("bad", [np.array(["a"]), np.array([1 + 2j]), np.array([None], dtype=object)])
def test_as_array_refuses_non_numeric(bad):
    with pytest.raises(InvalidType, match="x must be a numeric array"):
        as_array("x", bad)
