"""Server-side aggregation rules: FedAvg's weighted average, "keepers" averaging, server step."""

import numpy as np


def _check_updates(weight_lists, num_examples):
    """Validate client updates; raise ValueError naming what is wrong."""
    if len(weight_lists) == 0:
        raise ValueError("weight_lists must hold at least one client's weights, got none")
    if len(num_examples) != len(weight_lists):
        raise ValueError(
            f"num_examples must have one count per client ({len(weight_lists)}), "
            f"got {len(num_examples)}"
        )
    counts = np.asarray(num_examples, dtype=np.float64)
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or counts.sum() <= 0:
        raise ValueError(f"num_examples must be >= 0 with a positive sum, got {list(num_examples)}")
    shapes = [np.shape(w) for w in weight_lists[0]]
    for k, weights in enumerate(weight_lists):
        if [np.shape(w) for w in weights] != shapes:
            raise ValueError(
                f"client {k} has weight shapes {[np.shape(w) for w in weights]}, "
                f"client 0 has {shapes}: shapes must match"
            )
        for i, w in enumerate(weights):
            if not np.all(np.isfinite(w)):
                raise ValueError(f"client {k} weight {i} has non-finite values (NaN or inf)")
    return counts


def weighted_average(weight_lists, num_examples):
    """FedAvg's aggregation rule: sum_k n_k w_k / sum_k n_k, accumulated in float64.

    Args:
        weight_lists: One list of NumPy arrays per client, all with the same shapes.
        num_examples: The clients' example counts n_k (>= 0, positive sum).

    Returns:
        A list of arrays (dtype of the first client's arrays) with the weighted average.

    Raises:
        ValueError: On empty input, mismatched counts or shapes, or non-finite values.

    Example:
        >>> avg = weighted_average([[np.array([0.0, 2.0])], [np.array([4.0, 2.0])]], [1, 3])
        >>> avg[0].tolist()
        [3.0, 2.0]
    """
    counts = _check_updates(weight_lists, num_examples)
    share = counts / counts.sum()
    averaged = []
    for i, first in enumerate(weight_lists[0]):
        total = np.zeros(np.shape(first), np.float64)
        for s, ws in zip(share, weight_lists):
            total += ws[i] * s  # s is a float64 scalar: the product is float64, in one pass
        averaged.append(total.astype(np.asarray(first).dtype))
    return averaged


def keepers_average(weight_lists, num_examples):
    """Average each weight over the clients that kept it (non-zero), weighted by n_k.

    With sparse client models a plain average divides a weight kept by one client by the total
    count, shrinking it towards zero, and the union of the clients' masks makes the average
    denser than any client. Averaging over the keepers only (as in LotteryFL and FedDST) keeps
    the magnitudes; a weight no client kept stays zero.

    Args:
        weight_lists: One list of NumPy arrays per client, all with the same shapes.
        num_examples: The clients' example counts n_k (>= 0, positive sum).

    Returns:
        A list of arrays (dtype of the first client's arrays): per entry,
        sum_k n_k [w_k != 0] w_k / sum_k n_k [w_k != 0], or 0 where no client kept it.

    Raises:
        ValueError: On empty input, mismatched counts or shapes, or non-finite values.

    Example:
        >>> avg = keepers_average([[np.array([2.0, 0.0])], [np.array([4.0, 0.0])]], [1, 1])
        >>> avg[0].tolist()
        [3.0, 0.0]
        >>> weighted_average([[np.array([2.0, 0.0])], [np.array([0.0, 6.0])]], [1, 1])[0].tolist()
        [1.0, 3.0]
        >>> keepers_average([[np.array([2.0, 0.0])], [np.array([0.0, 6.0])]], [1, 1])[0].tolist()
        [2.0, 6.0]
    """
    counts = _check_updates(weight_lists, num_examples)
    averaged = []
    for i in range(len(weight_lists[0])):
        stacked = np.stack([np.asarray(ws[i], np.float64) for ws in weight_lists])
        kept = (stacked != 0) * counts.reshape(-1, *[1] * (stacked.ndim - 1))
        total = kept.sum(axis=0)
        mean = (stacked * kept).sum(axis=0) / np.where(total > 0, total, 1.0)
        averaged.append(mean.astype(np.asarray(weight_lists[0][i]).dtype))
    return averaged


def server_update(global_weights, average, server_learning_rate=1.0):
    """The server step w + alpha * (average - w); alpha = 1 returns the average (plain FedAvg).

    The source articles write theta + alpha (theta' - theta) without saying what theta' is: it
    is this rule only when theta' is the weighted average of the client models. With
    alpha != 1 it is the server learning rate of FedOpt with SGD (Reddi et al., ICLR 2021).

    Args:
        global_weights: The global model before the round, a list of arrays.
        average: The aggregate of the clients (same shapes).
        server_learning_rate: alpha > 0.

    Returns:
        A new list of arrays with the dtypes of `global_weights` (computed in float64).

    Example:
        >>> server_update([np.array([1.0])], [np.array([3.0])], 0.5)[0].tolist()
        [2.0]
    """
    if server_learning_rate == 1.0:
        return [np.array(a, copy=True) for a in average]
    return [
        (g + server_learning_rate * (np.asarray(a, np.float64) - g)).astype(np.asarray(g).dtype)
        for g, a in zip(global_weights, average)
    ]
