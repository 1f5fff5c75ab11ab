"""Sparsity reports: per-array zeros of a model (tfmot bookkeeping left out) or of a weight list."""

import dataclasses

import numpy as np
import tensorflow as tf  # the package __init__ has already selected Keras 2 (tf_keras)

from prunefl_lite.pruning.masks import _check_weights
from prunefl_lite.pruning.schedules import pruning_variables

__all__ = ["ReportRow", "SparsityReport", "format_report", "sparsity_report"]


@dataclasses.dataclass(frozen=True)
class ReportRow:
    """Sparsity of one weight array (a row of `sparsity_report`)."""

    name: str
    shape: tuple
    nonzeros: int
    total: int
    sparsity: float


class SparsityReport(list):
    """A list of `ReportRow` that prints as a table (``pandas.DataFrame(report)`` also works)."""

    def __str__(self):
        return format_report(self)


def _row(name, array):
    """The `ReportRow` of one array."""
    nonzeros = int(np.count_nonzero(array))
    return ReportRow(
        name,
        tuple(array.shape),
        nonzeros,
        int(array.size),
        1 - nonzeros / array.size if array.size else 0.0,
    )


def sparsity_report(model_or_weights):
    """Per-array sparsity of a model (kernels and biases by name) or of a list of arrays.

    For a model wrapped by tfmot, its bookkeeping variables (mask, threshold, pruning_step) are
    left out: only the model's own weights are reported.

    Args:
        model_or_weights: A `tf.keras.Model` or a list of NumPy arrays.

    Returns:
        A `SparsityReport`: a list of `ReportRow(name, shape, nonzeros, total, sparsity)`;
        ``print`` it for a table.

    Example:
        >>> report = sparsity_report([np.array([[0.0, 1.0], [0.0, 2.0]]), np.ones(2)])
        >>> report[0]
        ReportRow(name='weights[0]', shape=(2, 2), nonzeros=2, total=4, sparsity=0.5)
        >>> print(report)
        name         shape   nonzeros  total  sparsity
        weights[0]   (2, 2)         2      4     0.500
        weights[1]   (2,)           2      2     0.000
        total                       4      6     0.333
    """
    if isinstance(model_or_weights, tf.keras.Model):
        model = model_or_weights
        return SparsityReport(
            _row(v.name, model.weights[v.index].numpy())
            for v in pruning_variables(model)
            if not v.is_bookkeeping
        )
    weights = _check_weights(model_or_weights, "model_or_weights", finite=False)
    return SparsityReport(_row(f"weights[{i}]", w) for i, w in enumerate(weights))


def format_report(rows):
    """Format `sparsity_report` rows as a fixed-width table with a total line.

    Example:
        >>> print(format_report([ReportRow("dense/kernel", (4, 2), 2, 8, 0.75)]))
        name           shape   nonzeros  total  sparsity
        dense/kernel   (4, 2)         2      8     0.750
        total                         2      8     0.750
    """
    nonzeros, total = sum(r.nonzeros for r in rows), sum(r.total for r in rows)
    lines = [(r.name, str(r.shape), r.nonzeros, r.total, r.sparsity) for r in rows]
    lines.append(("total", "", nonzeros, total, 1 - nonzeros / total if total else 0.0))
    width = max(len(line[0]) for line in lines) + 2
    shape_width = max(len(line[1]) for line in lines) + 2
    out = [f"{'name':<{width}} {'shape':<{shape_width}}nonzeros  total  sparsity"]
    row = "{:<%d} {:<%d}{:>8} {:>6} {:>9.3f}" % (width, shape_width)
    out += [row.format(*line) for line in lines]
    return "\n".join(out)

