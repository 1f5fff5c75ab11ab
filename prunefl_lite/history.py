"""History: the per-round record of a federated run, with JSON save and load."""

import dataclasses
import json

import numpy as np

METRICS = (
    "accuracy", "loss", "bytes_up", "bytes_down", "sparsity", "seconds",
    "clients_completed", "clients_rejected", "clients_dropped", "clients_sampled",
    "bytes_down_each",
)


@dataclasses.dataclass
class History:
    """What happened in each round of `run_fedavg`.

    Attributes:
        rounds: One dict per round with the keys in `METRICS` (accuracy and loss of the global
            model on the test data after the round; bytes_up / bytes_down: lengths of the real
            encoded payloads sent that round; sparsity: fraction of zeros in the global model's
            kernels; seconds: wall time of the round; client counts; clients_sampled: the
            sampled client ids, sorted; bytes_down_each: what each of them downloaded, in
            the same order, in bytes).
        config: The run's `FedConfig` as a dict.
        final_weights: The global model's federated weights after the last round (trainable
            weights, then BatchNorm moving statistics), a list of NumPy arrays.
        client_weights: Under FedBN (``batch_norm="local"``): client id -> that client's own
            BatchNorm arrays; empty otherwise.

    Example:
        >>> h = History(rounds=[{"accuracy": 0.5}, {"accuracy": 0.75}])
        >>> h.metric("accuracy")
        [0.5, 0.75]
    """

    rounds: list = dataclasses.field(default_factory=list)
    config: dict = dataclasses.field(default_factory=dict)
    final_weights: list = dataclasses.field(default_factory=list)
    client_weights: dict = dataclasses.field(default_factory=dict)

    def metric(self, name):
        """The values of one metric, one per round (see `METRICS`).

        Raises:
            ValueError: If `name` is not in `METRICS`.
        """
        if name not in METRICS:
            raise ValueError(f"name must be one of {METRICS}, got {name!r}")
        return [r.get(name) for r in self.rounds]

    def total(self, name):
        """Sum of a metric over all rounds, e.g. `total("bytes_up")` (bytes), as a float."""
        return float(np.sum(self.metric(name)))

    def tail_mean(self, name, last=5):
        """Mean of a metric over the last `last` rounds (a steadier figure than the final one)."""
        return float(np.mean(self.metric(name)[-last:]))

    def rounds_to_reach(self, accuracy):
        """First round (1-based) whose accuracy (a fraction) is >= `accuracy`, or None."""
        for i, value in enumerate(self.metric("accuracy"), start=1):
            if value is not None and value >= accuracy:
                return i
        return None

    def save(self, path):
        """Write the history, weights included, to a JSON file."""
        data = {"rounds": self.rounds, "config": self.config,
                "final_weights": _arrays_to_json(self.final_weights),
                "client_weights": {str(k): _arrays_to_json(v)
                                   for k, v in self.client_weights.items()}}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)

    @classmethod
    def load(cls, path):
        """Read a history written by `save`."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        clients = {int(k): _arrays_from_json(v)
                   for k, v in data.get("client_weights", {}).items()}
        return cls(rounds=data["rounds"], config=data["config"],
                   final_weights=_arrays_from_json(data["final_weights"]), client_weights=clients)


def _arrays_to_json(arrays):
    return [{"dtype": str(w.dtype), "shape": list(w.shape), "values": w.ravel().tolist()}
            for w in arrays]


def _arrays_from_json(items):
    return [np.array(w["values"], dtype=w["dtype"]).reshape(w["shape"]) for w in items]
