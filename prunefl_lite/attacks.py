"""Poisoning by a fixed set of malicious clients: sign-flipped or scaled updates, flipped labels.

Model poisoning changes what a malicious client uploads (through the strategy hook
`client_upload`); data poisoning (label flipping) changes the data it trains on, so it needs no
strategy at all. Both act on a fixed set of client ids drawn once from a seed, as in the
threat model of Blanchard et al. (2017) and Fang et al. (2020): the same clients are malicious in
every round they are sampled, and they number `fraction * num_clients`.
"""

import numpy as np

from prunefl_lite.strategy import NoPruning

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
        ValueError: On a `num_clients` below 1 or a `fraction` outside [0, 1).

    Example:
        >>> len(choose_malicious(20, 0.2, seed=0))
        4
        >>> choose_malicious(20, 0.0).tolist()
        []
    """
    if isinstance(num_clients, bool) or not isinstance(num_clients, (int, np.integer)) or (
            num_clients < 1):
        raise ValueError(f"num_clients must be an integer >= 1, got {num_clients!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
            0 <= fraction < 1):
        raise ValueError(f"fraction must be a number in [0, 1), got {fraction!r}")
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
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or (
            num_classes < 2):
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
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


class ModelPoisoning:
    """A strategy wrapper for `run_fedavg` whose malicious clients upload a poisoned model.

    With the global model g and the model w a malicious client trained honestly, it uploads

    - `"sign_flip"`: g - scale * (w - g), its update reversed (and scaled; scale = 1 is the
      plain sign flip of Li et al. 2019 (RSA));
    - `"scale"`: g + scale * (w - g), its honest update boosted so that it dominates an average
      (the "explicit boosting" of Bhagoji et al. 2019, the scaling of Bagdasaryan et al. 2020).

    Honest clients upload what the wrapped strategy makes them upload. Every other hook comes
    from `pruning`, so an attack combines with any aggregation or pruning strategy (including
    `robust.RobustAggregation`). A poisoned upload keeps the zeros of a masked model.

    Args:
        malicious: The ids of the malicious clients (e.g. from `choose_malicious`).
        attack: "sign_flip" or "scale".
        scale: The factor, a number > 0 (default 1 for "sign_flip", 10 for "scale").
        pruning: The wrapped strategy (default: plain FedAvg).

    Raises:
        ValueError: On an unknown attack, a non-positive scale or a negative client id.

    Example:
        >>> attack = ModelPoisoning([1], attack="sign_flip", scale=2.0)
        >>> g, w = [np.array([1.0, 1.0])], [np.array([2.0, 0.0])]
        >>> attack.client_upload(1, 1, w, g)[0].tolist()  # client 1 is malicious
        [-1.0, 3.0]
        >>> attack.client_upload(1, 0, w, g)[0].tolist()  # client 0 is honest
        [2.0, 0.0]
        >>> attack.uploads  # (round, client id) of each poisoned upload so far
        [(1, 1)]
    """

    def __init__(self, malicious, attack="sign_flip", scale=None, pruning=None):
        if attack not in ATTACKS:
            raise ValueError(f"attack must be one of {list(ATTACKS)}, got {attack!r}")
        if scale is None:
            scale = 1.0 if attack == "sign_flip" else 10.0
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (
                np.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        ids = [int(k) for k in malicious]
        if any(k < 0 for k in ids):
            raise ValueError(f"malicious must hold client ids >= 0, got {sorted(ids)}")
        self.malicious, self.attack, self.scale = frozenset(ids), attack, float(scale)
        self.inner = pruning if pruning is not None else NoPruning()
        self.uploads = []

    def __repr__(self):
        return (f"ModelPoisoning({sorted(self.malicious)}, attack={self.attack!r}, "
                f"scale={self.scale}, pruning={self.inner!r})")

    def __getattr__(self, name):
        """Every other hook and attribute (masks, aggregation, re-pruning) comes from `inner`."""
        if name == "inner":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def start(self, weights, config):
        """Forget the previous run's poisoned uploads; then the inner strategy's start."""
        self.uploads = []
        return self.inner.start(weights, config)

    def client_upload(self, round_num, client_id, weights, global_weights):
        """The inner strategy's upload, poisoned if `client_id` is malicious."""
        weights = self.inner.client_upload(round_num, client_id, weights, global_weights)
        if client_id not in self.malicious:
            return weights
        self.uploads.append((round_num, client_id))
        factor = -self.scale if self.attack == "sign_flip" else self.scale
        return [(g + factor * (np.asarray(w, np.float64) - g)).astype(np.asarray(w).dtype)
                for w, g in zip(weights, global_weights)]
