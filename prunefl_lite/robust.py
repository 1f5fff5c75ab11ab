"""Byzantine-robust aggregation rules (median, trimmed mean, Krum, Multi-Krum) and their strategy.

Every rule takes what FedAvg's `weighted_average` takes, one list of NumPy arrays per client and
the clients' example counts, and returns one list of arrays of the same shapes. The rules treat
the arrays as one flat vector per client; since they are translation-equivariant they give the
same result on client weights as on client updates (weights minus the global model).

Conventions, checked against Flower 1.42 (`flwr.server.strategy.aggregate`) in the tests:

- `coordinate_median` and `trimmed_mean` ignore the example counts, as Yin et al. (2018) and
  Flower do; `trimmed_mean` removes `int(trim_fraction * n)` values at each end of every
  coordinate (Flower's `aggregate_trimmed_avg`, scipy's `trim_mean`).
- `krum_scores` sums the squared distances to the `n - f - 2` nearest other clients (Blanchard
  et al. 2017), floored at 1 neighbour as Flower does when `n <= f + 2`; Blanchard's guarantee
  needs `n > 2 f + 2`, which the function does not demand (a round may lose clients).
- `multi_krum` averages the `num_selected` best-scored clients; Blanchard et al. take the plain
  mean, Flower the example-weighted mean: `weighted=True` gives Flower's convention.
"""

import inspect

import numpy as np

from prunefl_lite.server import _check_updates, weighted_average
from prunefl_lite.strategy import StrategyWrapper
from prunefl_lite.validate import check_int, check_number

__all__ = ["RULES", "RobustAggregation", "coordinate_median", "krum", "krum_scores",
           "multi_krum", "trimmed_mean"]


def _stack(weight_lists, index):
    """The clients' arrays number `index`, stacked along a new first axis, in float64."""
    return np.stack([np.asarray(ws[index], np.float64) for ws in weight_lists])


def _dtype(weight_lists, index):
    """The dtype of the first client's array number `index` (the output's dtype)."""
    return np.asarray(weight_lists[0][index]).dtype


def coordinate_median(weight_lists, num_examples):
    """Coordinate-wise median of the clients' arrays (Yin et al. 2018), counts ignored.

    Args:
        weight_lists: One list of NumPy arrays per client, all with the same shapes.
        num_examples: The clients' example counts (validated, not used: the median of Yin et
            al. and Flower's `FedMedian` are unweighted).

    Returns:
        A list of arrays, for each coordinate the median over clients (the mean of the two
        middle values for an even number of clients), in the first client's dtypes.

    Raises:
        ValueError: On empty input, mismatched counts or shapes, or non-finite values.

    Example:
        >>> ws = [[np.array([1.0, 5.0])], [np.array([2.0, -9.0])], [np.array([100.0, 6.0])]]
        >>> coordinate_median(ws, [1, 1, 1])[0].tolist()
        [2.0, 5.0]
    """
    _check_updates(weight_lists, num_examples)
    return [np.median(_stack(weight_lists, i), axis=0).astype(_dtype(weight_lists, i))
            for i in range(len(weight_lists[0]))]


def trimmed_mean(weight_lists, num_examples, trim_fraction=0.1):
    """Coordinate-wise trimmed mean (Yin et al. 2018), counts ignored.

    For each coordinate, sorts the n client values, drops the `int(trim_fraction * n)` smallest
    and as many largest, and averages the rest (unweighted, as Yin et al. and Flower's
    `FedTrimmedAvg`). `trim_fraction=0` is the plain (unweighted) mean.

    Args:
        weight_lists: One list of NumPy arrays per client, all with the same shapes.
        num_examples: The clients' example counts (validated, not used).
        trim_fraction: Fraction beta cut at each end, in [0, 0.5).

    Returns:
        A list of arrays in the first client's dtypes.

    Raises:
        ValueError: On a `trim_fraction` outside [0, 0.5), empty input, mismatched counts or
            shapes, or non-finite values.

    Example:
        >>> ws = [[np.array([v])] for v in (1.0, 2.0, 3.0, 4.0, 100.0)]
        >>> trimmed_mean(ws, [1] * 5, trim_fraction=0.2)[0].tolist()
        [3.0]
    """
    trim_fraction = check_number("trim_fraction", trim_fraction, 0, 0.5, high_open=True)
    _check_updates(weight_lists, num_examples)
    n = len(weight_lists)
    cut = int(trim_fraction * n)
    result = []
    for i in range(len(weight_lists[0])):
        ordered = np.sort(_stack(weight_lists, i), axis=0)
        result.append(ordered[cut:n - cut].mean(axis=0).astype(_dtype(weight_lists, i)))
    return result


def _flat(weight_lists):
    """One float64 row per client: its arrays flattened and concatenated."""
    return np.stack([np.concatenate([np.asarray(w, np.float64).ravel() for w in ws])
                     for ws in weight_lists])


def krum_scores(weight_lists, num_malicious):
    """Krum's score of each client (Blanchard et al. 2017): lower is more central.

    A client's score is the sum of squared Euclidean distances from its flattened weights to
    its `max(1, n - num_malicious - 2)` nearest other clients.

    Args:
        weight_lists: One list of NumPy arrays per client (at least 2 clients).
        num_malicious: The number f of Byzantine clients the rule should tolerate, in
            [0, n - 1].

    Returns:
        A float64 array of shape (n,).

    Raises:
        ValueError: On fewer than 2 clients, a `num_malicious` outside [0, n - 1], mismatched
            shapes or non-finite values.

    Example:
        >>> ws = [[np.array([0.0])], [np.array([1.0])], [np.array([2.0])], [np.array([9.0])]]
        >>> krum_scores(ws, num_malicious=1).tolist()  # n - f - 2 = 1 nearest neighbour
        [1.0, 1.0, 1.0, 49.0]
    """
    _check_updates(weight_lists, [1] * len(weight_lists))
    n = len(weight_lists)
    if n < 2:
        raise ValueError(f"weight_lists must hold at least 2 clients for Krum, got {n}")
    check_int("num_malicious", num_malicious, 0, n - 1)
    flat = _flat(weight_lists)
    num_closest = max(1, n - num_malicious - 2)
    scores = np.empty(n)
    for i in range(n):
        others = np.delete(np.sum((flat - flat[i]) ** 2, axis=1), i)
        scores[i] = np.sum(np.sort(others)[:num_closest])
    return scores


def krum(weight_lists, num_examples, num_malicious):
    """Krum (Blanchard et al. 2017): the weights of the client with the lowest Krum score.

    Args:
        weight_lists: One list of NumPy arrays per client (at least 2 clients).
        num_examples: The clients' example counts (validated, not used).
        num_malicious: The number f of Byzantine clients to tolerate, in [0, n - 1].

    Returns:
        A copy of the selected client's list of arrays.

    Raises:
        ValueError: As `krum_scores`, and on mismatched counts.

    Example:
        >>> ws = [[np.array([0.0])], [np.array([1.0])], [np.array([2.0])], [np.array([9.0])]]
        >>> krum(ws, [1] * 4, num_malicious=1)[0].tolist()  # ties: the first client
        [0.0]
    """
    _check_updates(weight_lists, num_examples)
    best = int(np.argmin(krum_scores(weight_lists, num_malicious)))
    return [np.array(w, copy=True) for w in weight_lists[best]]


def multi_krum(weight_lists, num_examples, num_malicious, num_selected, weighted=False):
    """Multi-Krum (Blanchard et al. 2017): the mean of the `num_selected` best-scored clients.

    Args:
        weight_lists: One list of NumPy arrays per client (at least 2 clients).
        num_examples: The clients' example counts, used only when `weighted`.
        num_malicious: The number f of Byzantine clients to tolerate, in [0, n - 1].
        num_selected: How many clients m to average, in [1, n]; m = 1 is Krum.
        weighted: False: plain mean of the selected clients (Blanchard et al.); True:
            the example-weighted mean (FedAvg's rule, Flower's `MultiKrum`).

    Returns:
        A list of arrays in the first client's dtypes.

    Raises:
        ValueError: As `krum_scores`, on a `num_selected` outside [1, n], or mismatched counts.

    Example:
        >>> ws = [[np.array([0.0])], [np.array([1.0])], [np.array([2.0])], [np.array([9.0])]]
        >>> multi_krum(ws, [1, 1, 1, 5], num_malicious=1, num_selected=3)[0].tolist()
        [1.0]
    """
    counts = _check_updates(weight_lists, num_examples)
    check_int("num_selected", num_selected, 1, len(weight_lists))
    scores = krum_scores(weight_lists, num_malicious)
    chosen = np.argsort(scores, kind="stable")[:num_selected]
    share = counts[chosen] if weighted else np.ones(len(chosen))
    if share.sum() <= 0:
        raise ValueError(f"num_examples of the selected clients must have a positive sum, "
                         f"got {counts[chosen].tolist()}")
    return weighted_average([weight_lists[k] for k in chosen], share)


RULES = {
    "fedavg": weighted_average,
    "median": coordinate_median,
    "trimmed_mean": trimmed_mean,
    "krum": krum,
    "multi_krum": multi_krum,
}


class RobustAggregation(StrategyWrapper):
    """A strategy that aggregates with a robust rule instead of FedAvg's (a server hook only).

    Every other hook (masks, pruning steps, uploads, reports, re-pruning) is delegated to
    `pruning` (`StrategyWrapper`), so a robust rule combines with a pruning strategy, on
    `run_fedavg` and on a Flower deployment alike. The rule sees the accepted uploads only:
    clients that dropped out or sent non-finite values are already gone.

    Args:
        rule: One of "fedavg", "median", "trimmed_mean", "krum", "multi_krum".
        pruning: The strategy whose other hooks are used (default: plain FedAvg).
        **params: The rule's parameters, e.g. `trim_fraction=0.2`, `num_malicious=2`,
            `num_selected=5`, `weighted=True`.

    Raises:
        ValueError: On an unknown rule, parameters the rule does not take, a `trim_fraction`
            outside [0, 0.5), a negative `num_malicious` or a `num_selected` below 1.

    Example:
        >>> strategy = RobustAggregation("trimmed_mean", trim_fraction=0.25)
        >>> ws = [[np.array([v])] for v in (1.0, 2.0, 3.0, 50.0)]
        >>> strategy.aggregate(ws, [1] * 4)[0].tolist()
        [2.5]
    """

    def __init__(self, rule, pruning=None, **params):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
        allowed = list(inspect.signature(RULES[rule]).parameters)[2:]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(f"params must be among {list(allowed)} for rule {rule!r}, "
                             f"got {unknown}")
        self.rule, self.params = rule, dict(params)
        if rule == "trimmed_mean":  # validate now, not in the first round
            trimmed_mean([[np.zeros(1)]], [1], **params)
        if "num_malicious" in params:
            check_int("num_malicious", params["num_malicious"], low=0)
        if "num_selected" in params:
            check_int("num_selected", params["num_selected"], low=1)
        super().__init__(pruning)

    def __repr__(self):
        args = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"RobustAggregation({self.rule!r}{args})"

    def aggregate(self, updates, num_examples):
        """Combine the accepted uploads with the robust rule.

        When dropout leaves fewer clients than the Krum rules' parameters assume, `num_malicious`
        is capped at n - 1 and `num_selected` at n; a single upload is returned as it is.
        """
        params = dict(self.params)
        if self.rule in ("krum", "multi_krum"):
            n = len(updates)
            if n == 1:
                return [np.array(w, copy=True) for w in updates[0]]
            params["num_malicious"] = min(params.get("num_malicious", 0), n - 1)
            if self.rule == "multi_krum":
                params["num_selected"] = min(params.get("num_selected", n), n)
        return RULES[self.rule](updates, num_examples, **params)
