"""One frozen dataclass, FedConfig, holding every federated-learning hyperparameter, validated."""

import dataclasses
import math


def _check_int(name, value, low, high=None):
    """Raise ValueError unless `value` is an int in [low, high] (high=None: no upper bound)."""
    upper = "inf)" if high is None else f"{high}]"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer in [{low}, {upper}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer in [{low}, {upper}, got {value!r}")


def _check_float(name, value, low, high, low_open=False, high_open=False):
    """Raise ValueError unless `value` is a finite number in the given interval."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    interval = f"{left}{low}, inf)" if high is None else f"{left}{low}, {high}{right}"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            high is None or (value < high if high_open else value <= high)
        )
    if not ok:
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class FedConfig:
    """Hyperparameters of one federated run (FedAvg, McMahan et al. 2017).

    Attributes:
        num_rounds: Number of federated rounds (broadcast, local training, upload, aggregation).
        clients_per_round: Clients sampled each round (McMahan's C times K), at most the number
            of clients passed to `run_fedavg`.
        local_epochs: Passes of each sampled client over its own data per round (E).
        batch_size: Local mini-batch size (B).
        learning_rate: Local SGD step size.
        seed: Seed of client sampling, shuffling, dropout and model initialisation.
        server_learning_rate: Step alpha of the server update w + alpha * (average - w);
            1.0 is plain FedAvg.
        dropout_rate: Fraction of the sampled clients that fail each round, in [0, 1).
        eval_every: Evaluate the global model every this many rounds (and after the last).

    Example:
        >>> config = FedConfig(num_rounds=5, clients_per_round=3)
        >>> config.local_epochs
        1
        >>> import dataclasses
        >>> dataclasses.replace(config, batch_size=8).batch_size
        8
        >>> FedConfig(num_rounds=0)
        Traceback (most recent call last):
        ...
        ValueError: num_rounds must be an integer in [1, inf), got 0
    """

    num_rounds: int = 20
    clients_per_round: int = 10
    local_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.05
    seed: int = 0
    server_learning_rate: float = 1.0
    dropout_rate: float = 0.0
    eval_every: int = 1

    def __post_init__(self):
        _check_int("num_rounds", self.num_rounds, 1)
        _check_int("clients_per_round", self.clients_per_round, 1)
        _check_int("local_epochs", self.local_epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_float("learning_rate", self.learning_rate, 0, None, low_open=True)
        _check_int("seed", self.seed, 0, 2**32 - 1)
        _check_float("server_learning_rate", self.server_learning_rate, 0, None, low_open=True)
        _check_float("dropout_rate", self.dropout_rate, 0, 1, high_open=True)
        _check_int("eval_every", self.eval_every, 1)
