"""Seed statistics, one convention for the whole course: mean with the min-max range over seeds.

Every comparison a chapter draws a conclusion from runs over several seeds. This module is the
one place that turns per-seed values into the text and the decisions the prose uses:

- `spread`: "mean (range min-max)", the course's one way to report a spread over seeds;
- `overlap` / `versus`: whether two sets of per-seed values are within noise of each other
  (their min-max ranges overlap) and, if not, which is higher;
- `paired_interval`: where seeds pair (the same seed, data split and clients for both arms),
  the paired t interval of the mean difference (standard deviation with ddof = 1).
"""

import ast
from dataclasses import dataclass

import numpy as np

__all__ = ["Phrase", "Spread", "overlap", "paired_interval", "spread", "versus"]


class Phrase(str):
    """Text that displays without quotes, so that a glued phrase reads as prose.

    myst-nb reads a glued value's text as a Python literal before showing it, so text that
    parses as a different value ("1, 4, 15" is a tuple, "0.200" the float 0.2) keeps its quotes
    in the repr: `{glue:text}` then shows it exactly as written, not as "(1, 4, 15)".

    Example:
        >>> Phrase("within noise of"), Phrase("95.6")
        (within noise of, 95.6)
        >>> Phrase("1, 4, 15"), Phrase("0.200")
        ('1, 4, 15', '0.200')
    """

    def __repr__(self):
        text = str(self)
        try:
            shown = str(ast.literal_eval(text))
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return text  # not a literal: myst-nb shows the text as it is
        return text if shown == text else repr(text)


def _values(name, values):
    """Per-seed values as a float64 vector; refuses empty or non-finite input."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must hold at least one finite value, got {values!r}")
    return v


@dataclass(frozen=True)
class Spread:
    """Mean and min-max range of per-seed values (plain Python floats)."""

    mean: float
    low: float
    high: float
    n: int

    def text(self, unit="", fmt=".1f"):
        """'mean unit (range low-high)', e.g. '91.2 % (range 90.8-91.7)'.

        With a negative bound the range reads 'low to high' ('-8.0 to -0.1'): a hyphen
        before a minus sign would read as a double dash (and typeset as one).
        """
        sep = " to " if min(self.low, self.high) < 0 else "-"
        return Phrase(f"{self.mean:{fmt}}{unit} (range {self.low:{fmt}}{sep}{self.high:{fmt}})")


def spread(values, unit="", fmt=".1f", scale=1.0):
    """The course's spread over seeds: the mean and the min-max range, as a phrase.

    Args:
        values: One number per seed (any sequence or array; at least one, all finite).
        unit: Text after the mean, e.g. " %" or " points".
        fmt: Format of the three numbers.
        scale: Multiplier applied first (100 shows fractions in %).

    Returns:
        A `Phrase` "mean unit (range low-high)".

    Raises:
        ValueError: If `values` is empty or holds a non-finite value.

    Example:
        >>> spread([0.91, 0.93, 0.92], unit=" %", scale=100)
        92.0 % (range 91.0-93.0)
        >>> spread([-8.0, -0.1, -4.0], unit=" points")
        -4.0 points (range -8.0 to -0.1)
    """
    v = _values("values", values) * scale
    return Spread(float(v.mean()), float(v.min()), float(v.max()), int(v.size)).text(unit, fmt)


def overlap(a, b):
    """Whether the min-max ranges of two sets of per-seed values overlap (within noise).

    Example:
        >>> overlap([1, 2, 3], [2.5, 4]), overlap([1, 2], [3, 4])
        (True, False)
    """
    a, b = _values("a", a), _values("b", b)
    return bool(max(a.min(), b.min()) <= min(a.max(), b.max()))


def versus(a, b, same="within noise of", higher="above", lower="below"):
    """A phrase comparing per-seed values `a` with `b`: `same` if their ranges overlap.

    Example:
        >>> versus([90, 91], [80, 82]), versus([90, 91], [90.5, 92])
        (above, within noise of)
    """
    if overlap(a, b):
        return Phrase(same)
    return Phrase(higher if np.mean(a) > np.mean(b) else lower)


def paired_interval(a, b, confidence=0.95):
    """Mean of the paired differences a - b and its t interval (ddof = 1).

    Use it where seeds pair: seed s of `a` and seed s of `b` share data split, clients and
    initialisation, so their difference removes what the seed changes in both.

    Args:
        a: Per-seed values of the first arm (>= 2).
        b: Per-seed values of the second arm, in the same seed order.
        confidence: Two-sided confidence level, in (0, 1).

    Returns:
        `(mean, low, high)` as plain floats.

    Raises:
        ValueError: On fewer than 2 pairs, unequal lengths or a confidence outside (0, 1).

    Example:
        >>> m, lo, hi = paired_interval([91.0, 92.0, 93.0], [90.0, 90.5, 92.5])
        >>> round(m, 2), round(lo, 2), round(hi, 2)
        (1.0, -0.24, 2.24)
    """
    from scipy import stats

    a, b = _values("a", a), _values("b", b)
    if a.size != b.size or a.size < 2:
        raise ValueError(f"a and b must hold the same number (>= 2) of paired values, "
                         f"got {a.size} and {b.size}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    d = a - b
    half = stats.t.ppf((1 + confidence) / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
