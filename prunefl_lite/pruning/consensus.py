"""Mask consensus: how much the clients' kept sets agree with each other and with the global mask.

A client's *kept set* is the set of kernel positions it keeps (for an upload: its non-zero
kernel entries). Agreement is measured by the Jaccard overlap |A & B| / |A | B| (1 for equal
sets, 0 for disjoint ones):

* `pairwise`: the mean over all pairs of clients of the overlap of their kept sets;
* `with_global`: the mean over clients of the overlap of their kept set with the global mask.

`mask_consensus` computes both from masks; `kept_set` turns a list of arrays into one kept set;
`RecordConsensus` wraps a strategy and records both per round from the uploads the server
receives (server side: it sees only what the clients upload).
"""

import dataclasses
import itertools

import numpy as np

from prunefl_lite.strategy import StrategyWrapper

__all__ = ["Consensus", "RecordConsensus", "jaccard", "kept_set", "mask_consensus"]


def jaccard(a, b):
    """Jaccard overlap |a & b| / |a | b| of two boolean arrays of one shape (1.0 if both empty).

    Example:
        >>> jaccard(np.array([1, 1, 0, 0], bool), np.array([0, 1, 1, 0], bool))
        0.3333333333333333
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"b must have a's shape {a.shape}, got {b.shape}")
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else float(np.count_nonzero(a & b) / union)


def kept_set(arrays, kernels_only=True):
    """One flat boolean array: the non-zero (or True) entries of `arrays`, concatenated.

    Args:
        arrays: A list of arrays (weights, or masks with None for unmasked arrays).
        kernels_only: Use only arrays with >= 2 dimensions (the prunable kernels).

    Example:
        >>> kept_set([np.array([[0.0, 2.0]]), np.ones(3), None]).tolist()
        [False, True]
    """
    parts = [np.asarray(a).ravel() != 0 for a in arrays
             if a is not None and (not kernels_only or np.ndim(a) >= 2)]
    return np.concatenate(parts) if parts else np.zeros(0, bool)


@dataclasses.dataclass(frozen=True)
class Consensus:
    """Mask agreement of one round: mean pairwise and mean with-global Jaccard overlaps."""

    pairwise: float
    with_global: float | None
    num_clients: int


def mask_consensus(client_sets, global_set=None):
    """Mean pairwise Jaccard overlap of the clients' kept sets, and their mean overlap with global.

    Args:
        client_sets: One flat boolean kept set per client (see `kept_set`), all of one shape.
        global_set: The global mask's kept set, or None.

    Returns:
        A `Consensus` (`pairwise` is 1.0 for a single client; `with_global` None without
        `global_set`).

    Raises:
        ValueError: If `client_sets` is empty or the shapes differ.

    Example:
        >>> a, b = np.array([1, 1, 0, 0], bool), np.array([0, 1, 1, 0], bool)
        >>> c = mask_consensus([a, b], global_set=a)
        >>> round(c.pairwise, 3), round(c.with_global, 3)
        (0.333, 0.667)
    """
    if len(client_sets) == 0:
        raise ValueError("client_sets must hold at least one kept set, got none")
    pairs = [jaccard(a, b) for a, b in itertools.combinations(client_sets, 2)]
    pairwise = float(np.mean(pairs)) if pairs else 1.0
    with_global = None
    if global_set is not None:
        with_global = float(np.mean([jaccard(s, global_set) for s in client_sets]))
    return Consensus(pairwise, with_global, len(client_sets))


class RecordConsensus(StrategyWrapper):
    """Wrap a strategy; record the mask consensus of the uploads the server receives, per round.

    A client's kept set is the non-zero pattern of its uploaded kernels; the global set is
    the round's broadcast masks (or, without masks, the non-zero pattern of the global kernels
    the round started from). `per_round` maps each round to its `Consensus`.

    Args:
        inner: The strategy to observe (it must not override `client_step`).

    Example:
        >>> from prunefl_lite.pruning import GlobalPruning
        >>> RecordConsensus(GlobalPruning(0.9)).per_round
        {}
    """

    def __init__(self, inner=None):
        super().__init__(inner)
        self.per_round = {}

    def start(self, weights, config):
        """The inner strategy's start; forget earlier rounds."""
        self.per_round = {}
        return super().start(weights, config)

    def round_masks(self, round_num, weights):
        """The inner strategy's masks, remembered as this round's global set."""
        masks = super().round_masks(round_num, weights)
        if masks is None:
            self._global = kept_set(weights)
        else:  # an unmasked kernel (None) keeps everything
            self._global = kept_set([np.ones(np.shape(w), bool) if m is None else m
                                     for m, w in zip(masks, weights)])
        return masks

    def receive(self, round_num, uploads):
        """Record the consensus of the uploads' kept sets, then pass them on."""
        sets = [kept_set(u.weights) for u in uploads]
        if sets:
            self.per_round[round_num] = mask_consensus(sets, self._global)
        super().receive(round_num, uploads)
