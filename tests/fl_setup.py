"""Shared federated test setup: digits over 8 Dirichlet clients, a small 2NN, a short config."""

import prunefl_lite as pfl

DS = pfl.data.load_dataset("digits")
TEST = (DS.x_test, DS.y_test)
CLIENTS = pfl.data.split_clients(
    DS.x_train, DS.y_train, pfl.data.partition_dirichlet(DS.y_train, 8, alpha=0.5, seed=0))
CONFIG = pfl.FedConfig(num_rounds=3, clients_per_round=4, local_epochs=1, batch_size=16,
                       learning_rate=0.05, seed=0)


def mlp():
    """A 2NN with 32 hidden units: small enough for fast tests."""
    return pfl.models.mlp_2nn(DS.input_shape, DS.num_classes, hidden_units=32)


def without_seconds(history):
    """The rounds of a history without wall times (which differ between identical runs)."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history.rounds]
