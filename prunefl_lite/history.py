"""History: the per-round record of a federated run, with JSON save and load."""

import dataclasses
import json
import os
import uuid

import numpy as np

METRICS = (
    "accuracy", "loss", "bytes_up", "bytes_down", "sparsity", "seconds",
    "clients_completed", "clients_rejected", "clients_dropped", "clients_sampled",
    "bytes_down_each", "bytes_report", "clients_failed", "failures",
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
        """Write the history, weights included, to a JSON file, atomically.

        NumPy scalars and arrays anywhere in `rounds` and `config` are written as plain
        numbers and lists (read back as Python values by `load`). The JSON text is built first,
        written to a temporary file in the same folder and then renamed over `path`: a save
        that fails (a value JSON cannot hold, a full disk) leaves the previous file, or none,
        never a truncated one.

        Raises:
            TypeError: If a round or the config holds a value JSON cannot represent (the
                message names where); `path` is then left as it was.
            FileNotFoundError: If the folder of `path` does not exist (naming `path`).

        Example:
            >>> import os, tempfile
            >>> path = os.path.join(tempfile.mkdtemp(), "run.json")
            >>> History(rounds=[{"accuracy": np.float32(0.5), "bytes_up": np.int64(7)}]).save(path)
            >>> History.load(path).rounds
            [{'accuracy': 0.5, 'bytes_up': 7}]
        """
        data = {"rounds": _plain(self.rounds, "rounds"), "config": _plain(self.config, "config"),
                "final_weights": _arrays_to_json(self.final_weights),
                "client_weights": {str(k): _arrays_to_json(v)
                                   for k, v in self.client_weights.items()}}
        text = json.dumps(data)
        path = os.fspath(path)
        folder, name = os.path.split(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"path must be in an existing folder, got {path!r} "
                                    f"(no folder {folder!r})")
        temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            # os.open with mode 0o666 lets the umask decide the permissions, as open() does
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with open(handle, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise

    @classmethod
    def load(cls, path):
        """Read a history written by `save`."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        clients = {int(k): _arrays_from_json(v)
                   for k, v in data.get("client_weights", {}).items()}
        return cls(rounds=data["rounds"], config=data["config"],
                   final_weights=_arrays_from_json(data["final_weights"]), client_weights=clients)


def _plain(value, where):
    """`value` with NumPy scalars and arrays turned into Python numbers and lists, recursively.

    Dict keys become strings, as JSON writes them. Anything else JSON cannot hold raises a
    TypeError naming where it sits (``rounds[3]['seconds']``).
    """
    if isinstance(value, dict):
        return {_plain_key(k, where): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (np.generic, np.ndarray)):
        return _plain(value.tolist(), where)  # tolist turns NumPy scalars into Python ones
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"{where} must hold numbers, strings, lists or dicts to be saved as JSON, "
                    f"got {type(value).__name__} {value!r:.60}")


def _plain_key(key, where):
    """A dict key as JSON writes it: a string (NumPy scalar keys as their Python value's)."""
    if isinstance(key, np.generic):
        key = key.item()
    if key is None or isinstance(key, (str, bool, int, float)):
        return key if isinstance(key, str) else json.dumps(key)
    raise TypeError(f"{where} must have string or number keys to be saved as JSON, got {key!r}")


def _arrays_to_json(arrays):
    return [{"dtype": str(w.dtype), "shape": list(w.shape), "values": w.ravel().tolist()}
            for w in arrays]


def _arrays_from_json(items):
    return [np.array(w["values"], dtype=w["dtype"]).reshape(w["shape"]) for w in items]
