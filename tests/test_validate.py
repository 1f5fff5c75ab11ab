import re

import numpy as np
import pytest

from prunefl_lite import validate


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: validate.check_int("n", 2.5, 1), TypeError,
         "n must be an integer >= 1, got 2.5"),
        (lambda: validate.check_int("n", True, 1), TypeError,
         "n must be an integer >= 1, got True"),
        (lambda: validate.check_int("n", 0, 1), ValueError, "n must be an integer >= 1, got 0"),
        (lambda: validate.check_int("n", 9, 1, 8), ValueError,
         "n must be an integer in [1, 8], got 9"),
        (lambda: validate.check_int("n", 9, high=8), ValueError,
         "n must be an integer <= 8, got 9"),
        (lambda: validate.check_number("x", "1", 0), TypeError,
         "x must be a number in [0, inf), got '1'"),
        (lambda: validate.check_number("x", False, 0), TypeError, "x must be a number in [0, inf)"),
        (lambda: validate.check_number("x", float("nan"), 0), ValueError, "got nan"),
        (lambda: validate.check_number("x", float("inf")), ValueError,
         "x must be a number in (-inf, inf), got inf"),
        (lambda: validate.check_number("x", 0, 0, low_open=True), ValueError,
         "x must be a number in (0, inf), got 0"),
        (lambda: validate.check_number("x", 1, 0, 1, high_open=True), ValueError,
         "x must be a number in [0, 1), got 1"),
        (lambda: validate.check_fraction("s", -0.1), ValueError, "s must be a number in [0, 1)"),
        (lambda: validate.check_choice("c", "z", ("a", "b")), ValueError,
         "c must be one of 'a', 'b', got 'z'"),
        (lambda: validate.check_choice("c", [1], {"a"}), ValueError, "c must be one of 'a'"),
        (lambda: validate.check_pairs("clients", []), ValueError,
         "clients must be a non-empty list"),
        (lambda: validate.check_pairs("clients", [[1, 2, 3]]), ValueError,
         "clients[0] must be an (x, y) pair, got list"),
        (lambda: validate.check_pairs("clients", [([1], [])]), ValueError,
         "clients[0] must hold at least one example"),
    ],
)
def test_each_rule_names_the_argument_and_what_it_got(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


@pytest.mark.parametrize(
    "call, expected",
    [
        (lambda: validate.check_int("n", 3, 1, 3), 3),
        (lambda: validate.check_number("x", 1, 0, 1), 1.0),
        (lambda: validate.check_fraction("s", 0.0), 0.0),
        (lambda: validate.check_choice("c", "a", ("a",)), "a"),
    ],
)
def test_valid_values_pass_through(call, expected):
    assert call() == expected


# One parametrized test per rule with NumPy rows: NumPy scalars pass and come back as plain
# Python values; bools (Python's and NumPy's) are refused with a TypeError naming the argument.
@pytest.mark.parametrize(
    "value, expected",
    [(3, 3), (np.int64(3), 3), (np.int32(3), 3), (np.uint8(3), 3), (np.int64(2**40), 2**40)],
    ids=["int", "np.int64", "np.int32", "np.uint8", "np.int64-large"],
)
def test_check_int_accepts_numpy_integers_and_returns_a_plain_int(value, expected):
    result = validate.check_int("n", value, 1)
    assert result == expected and type(result) is int


@pytest.mark.parametrize(
    "value, error, message",
    [(True, TypeError, "n must be an integer in [1, 8], got True"),
     (np.True_, TypeError, "n must be an integer in [1, 8], got np.True_"),
     (np.float64(3.0), TypeError, "n must be an integer in [1, 8], got np.float64(3.0)"),
     (np.float32(3), TypeError, "n must be an integer in [1, 8], got np.float32(3.0)"),
     (3.0, TypeError, "n must be an integer in [1, 8], got 3.0"),
     (np.array([3]), TypeError, "n must be an integer in [1, 8], got array([3])"),
     (np.int64(0), ValueError, "n must be an integer in [1, 8], got np.int64(0)"),
     (np.int32(9), ValueError, "n must be an integer in [1, 8], got np.int32(9)")],
    ids=["bool", "np.bool_", "np.float64", "np.float32", "float", "array", "np.int64-low",
         "np.int32-high"],
)
def test_check_int_refuses_bools_floats_and_out_of_range_numpy(value, error, message):
    with pytest.raises(error, match=re.escape(message)):
        validate.check_int("n", value, 1, 8)


@pytest.mark.parametrize(
    "value, expected",
    [(0.5, 0.5), (np.float64(0.5), 0.5), (np.float32(0.5), 0.5), (np.int64(1), 1.0),
     (np.int32(1), 1.0), (np.float32(0.1), 0.1)],  # as typed, not 0.10000000149011612
    ids=["float", "np.float64", "np.float32", "np.int64", "np.int32", "np.float32-inexact"],
)
def test_check_number_accepts_numpy_scalars_and_returns_a_plain_float(value, expected):
    result = validate.check_number("x", value, 0, 1)
    assert result == expected and type(result) is float


@pytest.mark.parametrize(
    "value, error, message",
    [(True, TypeError, "x must be a number in [0, 1], got True"),
     (np.False_, TypeError, "x must be a number in [0, 1], got np.False_"),
     (np.array(0.5), TypeError, "x must be a number in [0, 1], got array(0.5)"),
     (np.float64("nan"), ValueError, "x must be a number in [0, 1], got np.float64(nan)"),
     (np.float32(np.inf), ValueError, "x must be a number in [0, 1], got np.float32(inf)"),
     (np.float32(1.5), ValueError, "x must be a number in [0, 1], got np.float32(1.5)"),
     (np.int64(-1), ValueError, "x must be a number in [0, 1], got np.int64(-1)")],
    ids=["bool", "np.bool_", "0-d array", "np.nan", "np.inf", "np.float32-high", "np.int64-low"],
)
def test_check_number_refuses_bools_and_out_of_range_numpy(value, error, message):
    with pytest.raises(error, match=re.escape(message)):
        validate.check_number("x", value, 0, 1)


@pytest.mark.parametrize(
    "value, error, message",
    [(np.float32(0.25), None, 0.25), (np.float64(0.0), None, 0.0), (np.int64(0), None, 0.0),
     (True, TypeError, "s must be a number in [0, 1), got True"),
     (np.True_, TypeError, "s must be a number in [0, 1), got np.True_"),
     (np.float64(1.0), ValueError, "s must be a number in [0, 1), got np.float64(1.0)"),
     (np.int32(1), ValueError, "s must be a number in [0, 1), got np.int32(1)")],
    ids=["np.float32", "np.float64", "np.int64", "bool", "np.bool_", "np.float64-one",
         "np.int32-one"],
)
def test_check_fraction_with_numpy_scalars(value, error, message):
    if error is None:
        result = validate.check_fraction("s", value)
        assert result == message and type(result) is float
    else:
        with pytest.raises(error, match=re.escape(message)):
            validate.check_fraction("s", value)

