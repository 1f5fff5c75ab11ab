import re

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
