"""The strategy protocol: `NoPruning` (plain FedAvg) and the hooks the round loop calls."""

import numpy as np

from prunefl_lite.server import weighted_average

__all__ = ["NoPruning"]


class NoPruning:
    """Plain FedAvg, and the hooks a pruning strategy for `run_fedavg` overrides.

    `run_fedavg` calls, in this order: `start` once per run; `wrap_model` once per architecture
    and `model_key`; then each round `round_masks` (the masks clients train under, or None),
    `pruning_steps` (where each client's tfmot step counter starts), `client_upload` for each
    client that answered, `aggregate` on the accepted client updates, and `finish_round` on the
    new global weights (e.g. to re-prune them).
    """

    masked = False  # True: clients train under the masks of `round_masks`

    def model_key(self):
        """What about the model this strategy changes (part of the compiled-trainer cache key)."""
        return None

    def wrap_model(self, model):
        """Return the model the clients train (e.g. wrapped by tfmot); here unchanged."""
        return model

    def start(self, weights, config):
        """Prepare a run; return the initial global weights."""
        return weights

    def round_masks(self, round_num, weights):
        """Masks (True = keep; None for an unmasked array) clients train under, or None."""
        return None

    def pruning_steps(self, round_num, local_steps):
        """Per client, the value its tfmot pruning step counter starts from this round."""
        return np.zeros(len(local_steps), np.int64)

    def client_upload(self, round_num, client_id, weights, global_weights):
        """What client `client_id` uploads after local training; here its trained weights.

        Override to model client-side behaviour (an attacker's update, client-side clipping).
        `weights` and `global_weights` are lists of arrays; return a list of the same shapes.
        """
        return weights

    def aggregate(self, updates, num_examples):
        """Combine the accepted client weights: FedAvg's weighted average."""
        return weighted_average(updates, num_examples)

    def finish_round(self, round_num, weights):
        """Post-process the new global weights; here unchanged."""
        return weights
