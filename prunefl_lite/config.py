"""One frozen dataclass, FedConfig, holding every federated-learning hyperparameter, validated."""

import dataclasses

from prunefl_lite.validate import check_choice, check_fraction, check_int, check_number


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
        dropout_rate: Probability in [0, 1) that a sampled client fails in a round: each
            sampled client fails independently (seeded), so on average
            ``dropout_rate * clients_per_round`` fail (29 of 50 at 0.58), the count varies
            from round to round, and a round may lose all its clients (then the global model
            is kept). A failed client has downloaded the model; it uploads nothing.
        eval_every: Evaluate the global model every this many rounds (and after the last).
        batch_norm: What happens to BatchNormalization layers: "average" (default: their
            moving mean and variance are averaged weighted by n_k like every weight, as
            averaging all of Keras' ``get_weights()`` does in Flower) or "local" (FedBN, Li et
            al., ICLR 2021: every BatchNorm variable, scale, offset and statistics, stays on
            its client and is never sent; the global model is evaluated with the n_k-weighted
            mean of the clients' own values).

    Example:
        >>> config = FedConfig(num_rounds=5, clients_per_round=3)
        >>> config.local_epochs
        1
        >>> import dataclasses
        >>> dataclasses.replace(config, batch_size=8).batch_size
        8
        >>> import numpy as np
        >>> FedConfig(seed=np.int64(3), learning_rate=np.float32(0.5)).seed
        3
        >>> FedConfig(num_rounds=0)
        Traceback (most recent call last):
        ...
        ValueError: num_rounds must be an integer >= 1, got 0
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
    batch_norm: str = "average"

    def __post_init__(self):
        # Every field is checked and stored back as a plain Python value: a NumPy scalar from
        # a loop over np.arange becomes an int or a float, so the config serialises (History,
        # a Flower run config) and prints as the learner typed it.
        plain = {
            "num_rounds": check_int("num_rounds", self.num_rounds, 1),
            "clients_per_round": check_int("clients_per_round", self.clients_per_round, 1),
            "local_epochs": check_int("local_epochs", self.local_epochs, 1),
            "batch_size": check_int("batch_size", self.batch_size, 1),
            "learning_rate": check_number("learning_rate", self.learning_rate, 0, low_open=True),
            "seed": check_int("seed", self.seed, 0, 2**32 - 1),
            "server_learning_rate": check_number(
                "server_learning_rate", self.server_learning_rate, 0, low_open=True),
            "dropout_rate": check_fraction("dropout_rate", self.dropout_rate),
            "eval_every": check_int("eval_every", self.eval_every, 1),
            "batch_norm": check_choice("batch_norm", self.batch_norm, ("average", "local")),
        }
        for name, value in plain.items():
            object.__setattr__(self, name, value)  # frozen: the one place a field is set
