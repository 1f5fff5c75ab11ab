"""Argument checks shared by the whole package, with one message form: NAME must be ..., got VALUE.

A wrong type raises `TypeError`, a value of the right type outside its range raises `ValueError`;
either way the message names the argument, says what it must be and repeats what it got.
Python and NumPy scalars are accepted alike (a value from ``np.arange`` or an array's ``.max()``)
and come back as plain Python ``int`` / ``float``, so that what a caller stores serialises to JSON
or TOML. Booleans (``True``, ``np.True_``) are refused where a number is expected: ``True`` is an
``int`` to Python, not to us.

Example:
    >>> check_fraction("sparsity", 1.2)
    Traceback (most recent call last):
    ...
    ValueError: sparsity must be a number in [0, 1), got 1.2
"""

import math
import numbers

import numpy as np

__all__ = ["check_choice", "check_fraction", "check_int", "check_number", "check_pairs"]


def _is_real(value):
    """True for Python and NumPy ints and floats; False for bools (NumPy's are not Real)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name, value, low=None, high=None):
    """Return `value` as a plain int after checking it is an integer in [low, high].

    Python ints and NumPy integers (``np.int64``, ``np.int32``, ...) pass; floats, even whole
    ones like ``2.0``, and bools do not.

    Args:
        name: The argument's name, for the message.
        value: What the caller passed.
        low: Inclusive lower bound; None for no bound.
        high: Inclusive upper bound; None for no bound.

    Raises:
        TypeError: If `value` is not an integer (bools are refused).
        ValueError: If it is outside [low, high].

    Example:
        >>> check_int("num_rounds", 3, low=1)
        3
        >>> import numpy as np
        >>> type(check_int("seed", np.int64(7), low=0))
        <class 'int'>
        >>> check_int("num_rounds", 0, low=1)
        Traceback (most recent call last):
        ...
        ValueError: num_rounds must be an integer >= 1, got 0
    """
    if low is not None and high is not None:
        wanted = f"an integer in [{low}, {high}]"
    elif low is not None:
        wanted = f"an integer >= {low}"
    elif high is not None:
        wanted = f"an integer <= {high}"
    else:
        wanted = "an integer"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {wanted}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return int(value)


def check_number(name, value, low=None, high=None, low_open=False, high_open=False):
    """Return `value` as a plain float after checking it is a finite number in the interval.

    Python and NumPy ints and floats pass (``np.float32(0.1)`` comes back as the float nearest
    to the float32 value, 0.10000000149011612); bools and strings do not.

    Args:
        name: The argument's name, for the message.
        value: What the caller passed.
        low: Lower bound (None: unbounded below).
        high: Upper bound (None: unbounded above).
        low_open: Whether `low` itself is excluded.
        high_open: Whether `high` itself is excluded.

    Raises:
        TypeError: If `value` is not a real number (bools are refused).
        ValueError: If it is NaN, infinite or outside the interval.

    Example:
        >>> check_number("learning_rate", 1, low=0, low_open=True)
        1.0
        >>> check_number("learning_rate", 0.0, low=0, low_open=True)
        Traceback (most recent call last):
        ...
        ValueError: learning_rate must be a number in (0, inf), got 0.0
    """
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    if not _is_real(value):
        raise TypeError(f"{name} must be a number in {interval}, got {value!r}")
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
        return float(str(value))  # np.float32(0.1) -> 0.1, as typed, not 0.10000000149...
    return float(value)


def check_fraction(name, value):
    """Return `value` as a plain float after checking it is in [0, 1) (a sparsity, a dropout rate).

    Example:
        >>> check_fraction("dropout_rate", 0.5)
        0.5
        >>> check_fraction("dropout_rate", True)
        Traceback (most recent call last):
        ...
        TypeError: dropout_rate must be a number in [0, 1), got True
    """
    return check_number(name, value, 0, 1, high_open=True)


def check_choice(name, value, choices):
    """Return `value` after checking it is one of `choices`.

    Raises:
        ValueError: Otherwise, listing the choices.

    Example:
        >>> check_choice("scope", "local", ("global", "layer"))
        Traceback (most recent call last):
        ...
        ValueError: scope must be one of 'global', 'layer', got 'local'
    """
    try:
        ok = value in choices
    except TypeError:  # an unhashable value tested against a set
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_pairs(name, value):
    """Return `value` as a list after checking it is a non-empty list of (x, y) pairs.

    Raises:
        ValueError: If it is not a non-empty list or tuple of 2-element lists or tuples whose
            parts have equal, non-zero lengths.

    Example:
        >>> check_pairs("clients", [([1, 2], [0, 1])])
        [([1, 2], [0, 1])]
    """
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        raise ValueError(f"{name} must be a non-empty list of (x, y) pairs, got {value!r:.60}")
    for k, pair in enumerate(value):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise ValueError(f"{name}[{k}] must be an (x, y) pair, got {type(pair).__name__}")
        if len(pair[0]) == 0 or len(pair[0]) != len(pair[1]):
            raise ValueError(
                f"{name}[{k}] must hold at least one example and as many labels as examples, "
                f"got {len(pair[0])} examples and {len(pair[1])} labels"
            )
    return list(value)
