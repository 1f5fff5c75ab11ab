"""FedDST (Bibikar et al. 2022): clients readjust their own masks; the server merges them by votes.

Federated dynamic sparse training, with both halves of the strategy protocol:

* server: draws a random mask at the target sparsity before round 1 (ERK per-kernel densities,
  as `DynamicPruning`), broadcasts the sparse model and its mask; in a readjustment round it
  tells each client how many positions of each kernel to swap (`readjust_counts`);
* client (`client_masks`, before local training): drops the n kept positions of smallest
  |global weight| and regrows the n pruned positions of largest |gradient of its own loss| at
  the global weights, then trains under its own mask; the upload carries its weights, whose
  non-zero pattern is its mask (entries off the broadcast mask travel with their positions);
* server (`aggregate`): each kernel weight is averaged over the clients that kept it (their
  non-zero entries, weighted by example counts) if at least `min_votes` clients kept it, and
  is zero otherwise; biases are plain FedAvg; `finish_round` then re-prunes each kernel by
  magnitude to its density, which gives the next global mask.

Deviations from the paper, stated: the paper readjusts after E local epochs and trains E' more
under the new mask; here a client readjusts from the global weights and its gradient there,
then trains its `local_epochs` under the new mask (the protocol has one local training per
round). The number swapped decays on RigL's cosine and stops after `end_fraction` of the rounds.
"""

import numpy as np

from prunefl_lite.pruning.consensus import kept_set, mask_consensus
from prunefl_lite.pruning.dynamic import cosine_fraction, erk_densities
from prunefl_lite.strategy import NoPruning
from prunefl_lite.validate import check_choice, check_fraction, check_int, check_number

__all__ = ["FedDST", "readjusted_mask", "vote_average"]

_MASK_SALT = 23  # the initial mask's stream, from the run's seed


def readjusted_mask(mask, weights, gradients, count):
    """A client's readjusted mask of one kernel: drop `count` kept, regrow `count` pruned.

    The kept positions of smallest |weights| are dropped; the pruned positions (of `mask`,
    before dropping) of largest |gradients| are regrown; ties go to the earlier position.

    Args:
        mask: Boolean array, True = kept.
        weights: The kernel's weights (magnitude decides what is dropped).
        gradients: The client's gradient of its loss (magnitude decides what regrows).
        count: How many to swap (limited by the kept and the pruned counts).

    Returns:
        A new boolean array with as many True entries as `mask`.

    Example:
        >>> m = np.array([True, True, False, False])
        >>> readjusted_mask(m, np.array([0.1, 2.0, 0, 0]), np.array([9, 9, 0.5, 3.0]), 1)
        array([False,  True, False,  True])
    """
    flat = np.asarray(mask, bool).ravel()
    kept, pruned = np.flatnonzero(flat), np.flatnonzero(~flat)
    count = min(int(count), kept.size, pruned.size)
    out = flat.copy()
    if count > 0:
        w, g = np.abs(np.ravel(weights)), np.abs(np.ravel(gradients))
        out[kept[np.argsort(w[kept], kind="stable")[:count]]] = False
        out[pruned[np.argsort(-g[pruned], kind="stable")[:count]]] = True
    return out.reshape(np.shape(mask))


def vote_average(arrays, num_examples, min_votes=1):
    """Each entry averaged over the arrays where it is non-zero, if at least `min_votes` are.

    The weighted mean sum_k n_k w_k / sum_k n_k over the clients k whose entry is non-zero
    (kept); an entry kept by fewer than `min_votes` clients is 0.

    Returns:
        `(average, votes)`: the float64 average and the int count of clients keeping each entry.

    Example:
        >>> a, b = np.array([1.0, 0.0, 4.0]), np.array([3.0, 2.0, 0.0])
        >>> avg, votes = vote_average([a, b], [1, 3], min_votes=1)
        >>> avg.tolist(), votes.tolist()
        ([2.5, 2.0, 4.0], [2, 1, 1])
        >>> vote_average([a, b], [1, 3], min_votes=2)[0].tolist()
        [2.5, 0.0, 0.0]
    """
    stack = np.stack([np.asarray(a, np.float64) for a in arrays])
    weights = np.asarray(num_examples, np.float64).reshape((-1,) + (1,) * (stack.ndim - 1))
    kept = stack != 0
    votes = kept.sum(axis=0)
    mass = (weights * kept).sum(axis=0)
    total = (weights * stack).sum(axis=0)
    average = np.where(votes >= min_votes, total / np.where(mass > 0, mass, 1.0), 0.0)
    return average, votes


class FedDST(NoPruning):
    """Federated dynamic sparse training as published (Bibikar et al. 2022), in both halves.

    See the module docstring for the round. Each kernel keeps a fixed number of weights (its
    ERK or uniform density times its size) throughout; biases stay dense. In readjustment
    round r (every `readjust_every` rounds before `end_fraction` of the run) each client swaps
    n = a(r) * kept positions of each kernel, a(r) decaying from `readjust_fraction` to 0 on a
    cosine. Clients with different masks train in separate trainer calls (slower rounds).
    `consensus` maps each round to the `consensus.Consensus` of the clients' kept sets (their
    non-zero kernel entries) with each other and with the round's global mask; `votes` holds
    the last round's vote counts per array (None for biases).

    Args:
        target_sparsity: Fraction of zeros in the kernels (arrays with >= 2 dims), in [0, 1).
        readjust_every: Rounds between readjustments, >= 1.
        readjust_fraction: Fraction of each kernel's kept weights a client swaps at first,
            in [0, 1); 0 trains under the initial mask throughout.
        end_fraction: Fraction of the rounds after which masks are fixed, in (0, 1].
        min_votes: A kernel weight survives aggregation only if >= `min_votes` clients kept it.
        distribution: "erk" or "uniform" per-kernel densities.
        rescale: Multiply the kept initial weights of each kernel by 1/sqrt(density).

    Raises:
        TypeError: On an argument of the wrong type.
        ValueError: On an argument out of range.

    Example:
        >>> strategy = FedDST(0.9)
        >>> weights = [np.ones((64, 200), np.float32), np.zeros(200, np.float32)]
        >>> class Config: num_rounds, seed, learning_rate = 10, 0, 0.05
        >>> masked = strategy.start(weights, Config)
        >>> round(float(np.mean(masked[0] == 0)), 3), strategy.client_instructions(5)
        (0.9, {'readjust_counts': [197, 0]})
    """

    masked = True

    def __init__(self, target_sparsity, readjust_every=5, readjust_fraction=0.5,
                 end_fraction=0.75, min_votes=1, distribution="erk", rescale=True):
        self.target_sparsity = check_fraction("target_sparsity", target_sparsity)
        self.readjust_every = check_int("readjust_every", readjust_every, 1)
        self.readjust_fraction = check_fraction("readjust_fraction", readjust_fraction)
        self.end_fraction = check_number("end_fraction", end_fraction, 0, 1, low_open=True)
        self.min_votes = check_int("min_votes", min_votes, 1)
        self.distribution = check_choice("distribution", distribution, ("erk", "uniform"))
        self.rescale = bool(rescale)

    # --- server half --------------------------------------------------------------------
    def start(self, weights, config):
        """Draw the initial mask (random positions at each kernel's density); mask the weights."""
        self.num_rounds = config.num_rounds
        self.end_round = max(1, round(self.end_fraction * config.num_rounds))
        self.consensus, self.votes = {}, None
        kernels = [i for i, w in enumerate(weights) if np.ndim(w) >= 2]
        shapes = [np.shape(weights[i]) for i in kernels]
        densities = (erk_densities(shapes, self.target_sparsity) if self.distribution == "erk"
                     else [1 - self.target_sparsity] * len(shapes))
        rng = np.random.default_rng([config.seed, _MASK_SALT])
        self.masks, self.kept = [None] * len(weights), [0] * len(weights)
        for i, density in zip(kernels, densities):
            size = np.size(weights[i])
            self.kept[i] = round(density * size)
            self.masks[i] = (rng.permutation(size) < self.kept[i]).reshape(np.shape(weights[i]))
        if self.rescale:
            weights = [w if m is None else (w / np.sqrt(m.mean())).astype(w.dtype)
                       for w, m in zip(weights, self.masks)]
        return self._apply(weights)

    def _apply(self, weights):
        """Weights with +0.0 wherever the global mask is False."""
        return [w if m is None else np.where(m, w, 0).astype(np.asarray(w).dtype)
                for w, m in zip(weights, self.masks)]

    def readjust_round(self, round_num):
        """Whether clients readjust their masks in this round."""
        return (self.readjust_fraction > 0 and round_num % self.readjust_every == 0
                and round_num < min(self.end_round, self.num_rounds))

    def round_masks(self, round_num, weights):
        """The current global mask (a copy of the list)."""
        return list(self.masks)

    def client_instructions(self, round_num):
        """In a readjustment round, how many positions of each array a client swaps."""
        if not self.readjust_round(round_num):
            return {}
        fraction = cosine_fraction(round_num, self.readjust_fraction, self.end_round)
        return {"readjust_counts": [int(fraction * k) for k in self.kept]}

    def receive(self, round_num, uploads):
        """Record the consensus of the clients' kept sets (their non-zero kernel entries)."""
        sets = [kept_set(u.weights) for u in uploads]
        self.consensus[round_num] = mask_consensus(sets, kept_set(self.masks))

    def aggregate(self, updates, num_examples):
        """Kernels: each weight over the clients that kept it (>= min_votes); biases: FedAvg."""
        out, self.votes = [], []
        for i, mask in enumerate(self.masks):
            arrays = [u[i] for u in updates]
            dtype = np.asarray(arrays[0]).dtype
            if mask is None:
                total = sum(n * np.asarray(a, np.float64) for a, n in zip(arrays, num_examples))
                out.append((total / float(sum(num_examples))).astype(dtype))
                self.votes.append(None)
                continue
            average, votes = vote_average(arrays, num_examples, self.min_votes)
            out.append(average.astype(dtype))
            self.votes.append(votes)
        return out

    def finish_round(self, round_num, weights):
        """After a readjustment round: re-prune each kernel by magnitude to its kept count."""
        if self.readjust_round(round_num):
            masks = list(self.masks)
            for i, k in enumerate(self.kept):
                if masks[i] is None:
                    continue
                flat = np.abs(np.ravel(weights[i]))
                # the largest magnitudes; at equal magnitude the old mask's positions first
                order = np.lexsort((~np.ravel(masks[i]), -flat))
                keep = np.zeros(flat.size, bool)
                keep[order[:k]] = True
                masks[i] = keep.reshape(np.shape(weights[i]))
            self.masks = masks
        return self._apply(weights)

    # --- client half --------------------------------------------------------------------
    def client_masks(self, client):
        """The mask this client trains under: the broadcast's, readjusted in a readjust round.

        Uses only the broadcast (global weights, masks, `readjust_counts`) and the client's
        own gradient at the global weights.
        """
        counts = client.instructions.get("readjust_counts")
        if not counts or not any(counts):
            return client.masks
        grads = client.gradients(client.global_weights)
        return [m if m is None or n <= 0 else readjusted_mask(m, w, g, n)
                for m, w, g, n in zip(client.masks, client.global_weights, grads, counts)]
