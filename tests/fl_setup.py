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


def every_strategy():
    """A fresh instance of every exported strategy and wrapper combination, by name.

    Sized for 3 clients and 3 rounds: ClientPruning reaches its target in round 2,
    DynamicPruning regrows in rounds 1 and 2 with FedAdam, Krum tolerates one attacker of 3.
    """
    robust, pruning, privacy = pfl.robust, pfl.pruning, pfl.privacy
    return {
        "NoPruning": pfl.strategy.NoPruning(),
        "GlobalPruning": pruning.GlobalPruning(0.8, end_round=2),
        "ClientPruning": pruning.ClientPruning(0.6, end_round=2),
        "DynamicPruning": pruning.DynamicPruning(
            0.8, regrow_every=1, end_fraction=1.0,
            server_optimizer=pruning.ServerOptimizer("adam", learning_rate=0.03)),
        "DPFedAvg": privacy.DPFedAvg(0.1, 2.0, report_norms=True),
        "DPFedAvg+GlobalPruning": privacy.DPFedAvg(
            0.1, 2.0, inner=pruning.GlobalPruning(0.8, end_round=2)),
        "median": robust.RobustAggregation("median"),
        "trimmed_mean": robust.RobustAggregation("trimmed_mean", trim_fraction=0.34),
        "krum": robust.RobustAggregation("krum", num_malicious=0),
        "multi_krum": robust.RobustAggregation("multi_krum", num_malicious=0, num_selected=2),
        "median+GlobalPruning": robust.RobustAggregation(
            "median", pruning=pruning.GlobalPruning(0.8, end_round=2)),
        "ModelPoisoning": pfl.attacks.ModelPoisoning(
            [1], "scale", 3.0, pruning=robust.RobustAggregation("median")),
        "HeteroFL": pruning.HeteroFL(FLEET),
        "FjORD": pruning.FjORD(FLEET, widths=(0.25, 0.5, 1.0)),
        "FederatedDropout": pruning.FederatedDropout(keep_fraction=0.5),
        "TopKUpdates": pruning.TopKUpdates(0.9),
        "RandomKUpdates": pruning.RandomKUpdates(0.9, unbiased=True),
        "STC": pruning.STC(0.9),
        "FedDST": pruning.FedDST(0.8, readjust_every=1, end_fraction=1.0),
    }


FLEET = (0.25, 0.5, 1.0, 0.25, 0.5, 1.0, 0.25, 1.0)  # width sub-models: one width per client
