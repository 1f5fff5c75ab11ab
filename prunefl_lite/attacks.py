"""Poisoning by a fixed set of malicious clients: sign-flipped or scaled updates, flipped labels.

Model poisoning changes what a malicious client uploads (through the strategy hook
`client_upload`); data poisoning (label flipping) changes the data it trains on, so it needs no
strategy at all. Both act on a fixed set of client ids drawn once from a seed, as in the
threat model of Blanchard et al. (2017) and Fang et al. (2020): the same clients are malicious in
every round they are sampled, and they number `fraction * num_clients`.
"""

import numpy as np

from prunefl_lite.strategy import StrategyWrapper
from prunefl_lite.validate import check_choice, check_int, check_number

__all__ = ["ATTACKS", "ModelPoisoning", "choose_malicious", "flip_labels"]

ATTACKS = ("sign_flip", "scale")


def choose_malicious(num_clients, fraction, seed=0):
    """The ids of the malicious clients: `round(fraction * num_clients)` of them, seeded.

    Args:
        num_clients: How many clients there are (ids 0 .. num_clients - 1), >= 1.
        fraction: The fraction of malicious clients, in [0, 1).
        seed: Seed of the draw.

    Returns:
        A sorted int64 array of distinct client ids.

    Raises:
        TypeError: On a non-integer `num_clients` or a non-number `fraction` (bools refused).
        ValueError: On a `num_clients` below 1 or a `fraction` outside [0, 1).

    Example:
        >>> len(choose_malicious(20, 0.2, seed=0))
        4
        >>> choose_malicious(20, 0.0).tolist()
        []
    """
    num_clients = check_int("num_clients", num_clients, 1)
    fraction = check_number("fraction", fraction, 0, 1, high_open=True)
    count = int(round(fraction * num_clients))
    chosen = np.random.default_rng(seed).choice(num_clients, size=count, replace=False)
    return np.sort(chosen).astype(np.int64)


def flip_labels(clients, malicious, num_classes):
    """Label flipping: the malicious clients' labels y become `num_classes - 1 - y`.

    Every example of a malicious client is mislabelled (Fang et al. 2020 use the same map);
    honest clients are returned unchanged (the same array objects).

    Args:
        clients: A list of `(x, y)` pairs with integer labels in [0, num_classes).
        malicious: The ids (indices into `clients`) of the malicious clients.
        num_classes: The number of classes, >= 2.

    Returns:
        A new list of `(x, y)` pairs.

    Raises:
        ValueError: On a `num_classes` below 2, a malicious id outside the clients, or labels
            outside [0, num_classes).

    Example:
        >>> clients = [(np.zeros((2, 1)), np.array([0, 3])), (np.zeros((1, 1)), np.array([1]))]
        >>> [y.tolist() for _, y in flip_labels(clients, [0], num_classes=4)]
        [[3, 0], [1]]
    """
    num_classes = check_int("num_classes", num_classes, 2)
    bad = sorted(int(k) for k in malicious if not 0 <= k < len(clients))
    if bad:
        raise ValueError(f"malicious must hold client ids in [0, {len(clients) - 1}], got {bad}")
    flipped = list(clients)
    for k in set(int(k) for k in malicious):
        x, y = clients[k]
        y = np.asarray(y)
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"labels of client {k} must be in [0, {num_classes - 1}], "
                             f"got values in [{y.min()}, {y.max()}]")
        flipped[k] = (x, (num_classes - 1 - y).astype(y.dtype))
    return flipped


class ModelPoisoning(StrategyWrapper):
    """A strategy wrapper whose malicious clients upload a poisoned model (a client hook).

    With the global model g and the model w a malicious client trained honestly, it uploads

    - `"sign_flip"`: g - scale * (w - g), its update reversed (and scaled; scale = 1 is the
      plain sign flip of Li et al. 2019 (RSA));
    - `"scale"`: g + scale * (w - g), its honest update boosted so that it dominates an average
      (the "explicit boosting" of Bhagoji et al. 2019, the scaling of Bagdasaryan et al. 2020).

    Honest clients upload what the wrapped strategy makes them upload. Every other hook comes
    from `pruning` (`StrategyWrapper`), so an attack combines with any aggregation or pruning
    strategy (including `robust.RobustAggregation`), on both runtimes. A poisoned upload keeps
    the zeros of a masked model. The attack is a client hook, so it keeps no log of its own;
    `uploads` is the experimenter's log, kept on the server side from the malicious set (which
    the simulation knows; a real server would not).

    Args:
        malicious: The ids of the malicious clients (e.g. from `choose_malicious`).
        attack: "sign_flip" or "scale".
        scale: The factor, a number > 0 (default 1 for "sign_flip", 10 for "scale").
        pruning: The wrapped strategy (default: plain FedAvg).

    Raises:
        TypeError: On a non-number scale or a non-integer client id (bools refused).
        ValueError: On an unknown attack, a non-positive or infinite scale or a negative
            client id.

    Example:
        >>> attack = ModelPoisoning([1], attack="sign_flip", scale=2.0)
        >>> g, w = [np.array([1.0, 1.0])], [np.array([2.0, 0.0])]
        >>> attack.client_upload(1, 1, w, g)[0].tolist()  # client 1 is malicious
        [-1.0, 3.0]
        >>> attack.client_upload(1, 0, w, g)[0].tolist()  # client 0 is honest
        [2.0, 0.0]
    """

    def __init__(self, malicious, attack="sign_flip", scale=None, pruning=None):
        check_choice("attack", attack, ATTACKS)
        if scale is None:
            scale = 1.0 if attack == "sign_flip" else 10.0
        scale = check_number("scale", scale, 0, low_open=True)
        ids = [check_int("malicious", k, 0) for k in malicious]
        self.malicious, self.attack, self.scale = frozenset(ids), attack, float(scale)
        super().__init__(pruning)
        self.uploads = []

    def __repr__(self):
        return (f"ModelPoisoning({sorted(self.malicious)}, attack={self.attack!r}, "
                f"scale={self.scale}, pruning={self.inner!r})")

    def start(self, weights, config):
        """Forget the previous run's log; then the inner strategy's start."""
        self.uploads = []
        return self.inner.start(weights, config)

    def receive(self, round_num, uploads):
        """Log (round, client id) of the accepted uploads from malicious clients."""
        self.uploads += [(round_num, u.client_id) for u in uploads
                         if u.client_id in self.malicious]
        self.inner.receive(round_num, uploads)

    def client_upload(self, round_num, client_id, weights, global_weights):
        """The inner strategy's upload, poisoned if `client_id` is malicious."""
        weights = self.inner.client_upload(round_num, client_id, weights, global_weights)
        if client_id not in self.malicious:
            return weights
        factor = -self.scale if self.attack == "sign_flip" else self.scale
        return [(g + factor * (np.asarray(w, np.float64) - g)).astype(np.asarray(w).dtype)
                for w, g in zip(weights, global_weights)]
