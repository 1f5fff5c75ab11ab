"""The strategy protocol: its client half and server half, `NoPruning` and `StrategyWrapper`.

A strategy tells one federated round what to do beyond plain FedAvg. Its hooks come in two
halves that share nothing but the messages of the round:

* **server hooks** run on the server, which holds the global model and never any client's data:
  `start`, `round_masks`, `client_instructions`, `receive`, `aggregate`, `finish_round`. They
  may keep state in `self` from one round to the next.
* **client hooks** run where the data is: `client_masks`, `pruning_steps`, `client_step` (by
  default `client_upload`, then `client_report`).
  On a real deployment each client runs them in its own process, on its own copy of the
  strategy object, so they must be pure functions of their arguments and of the constructor's
  parameters: nothing a server hook stored in `self` reaches them, and nothing they store in
  `self` reaches the server. What a client needs from the server travels in the broadcast
  (the global weights, the masks, `client_instructions`); what the server needs from a client
  travels in the upload (the uploaded weights and the optional `client_report`), and both are
  counted in the round's bytes.
* **model hooks** (`configure`, `masked`, `model_key`, `wrap_model`) depend on the
  constructor's parameters and the run's config only, and are used on both sides.

`prunefl_lite.round` calls the hooks in this order each round: on the server
`round_masks` and `client_instructions`; on each client `pruning_steps`, local training,
`client_upload` and `client_report`; on the server `receive` (the accepted uploads with their
reports), `aggregate`, the server learning-rate step and `finish_round`.
"""

import numpy as np

from prunefl_lite.server import weighted_average

__all__ = ["CLIENT_HOOKS", "MODEL_HOOKS", "SERVER_HOOKS", "NoPruning", "StrategyWrapper"]

MODEL_HOOKS = ("configure", "model_key", "wrap_model")
SERVER_HOOKS = ("start", "round_masks", "client_instructions", "receive", "aggregate",
                "finish_round")
CLIENT_HOOKS = ("client_masks", "pruning_steps", "client_step", "client_upload", "client_report")


class NoPruning:
    """Plain FedAvg, and every hook of the strategy protocol with its default.

    Example:
        >>> strategy = NoPruning()
        >>> w = [np.ones(2)]
        >>> strategy.client_upload(1, 0, w, w) is w, strategy.client_instructions(1)
        (True, {})
    """

    masked = False  # True: clients train under masks (`round_masks`, or `client_masks`)
    upload_value_bits = 32  # value width of the uploads (16, 8: quantised updates)
    upload_update = False  # True: uploads carry the update (weights - global), e.g. top-k

    # --- model hooks (both halves; constructor parameters and the run's config only) -------
    def configure(self, config):
        """Derive settings from the run's `FedConfig` (e.g. a schedule's last round).

        Both halves call it before building the model (`round.build_trainer`): it may set
        attributes that `model_key`, `wrap_model` and the client hooks read, from the
        constructor's parameters and `config` only.
        """

    def model_key(self):
        """What about the model this strategy changes (part of the compiled-trainer cache key)."""
        return None

    def wrap_model(self, model):
        """Return the model the clients train (e.g. wrapped by tfmot); here unchanged."""
        return model

    # --- server hooks -------------------------------------------------------------------------
    def start(self, weights, config):
        """Prepare a run on the server; return the initial global weights."""
        return weights

    def round_masks(self, round_num, weights):
        """Masks (True = keep; None for an unmasked array) clients train under, or None.

        They travel in the broadcast (as positions, unless a client already holds them).
        """
        return None

    def client_instructions(self, round_num):
        """What else the clients need this round: a dict of JSON scalars and lists, or {}.

        It travels in the broadcast (counted in the download bytes) and reaches the client
        hooks as `instructions`.
        """
        return {}

    def receive(self, round_num, uploads):
        """See the accepted uploads (`round.Upload`: client id, weights, examples, report)."""

    def aggregate(self, updates, num_examples):
        """Combine the accepted client weights: FedAvg's weighted average."""
        return weighted_average(updates, num_examples)

    def finish_round(self, round_num, weights):
        """Post-process the new global weights; here unchanged."""
        return weights

    # --- client hooks (pure: no state through self) -----------------------------------------
    def client_masks(self, client):
        """The masks this client trains under (a `round.ClientRound`); default the broadcast's."""
        return client.masks

    def client_step(self, client, weights):
        """After local training: `(upload, report)` of this client.

        The default uploads `client_upload(...)` and reports `client_report(...)`. A strategy
        that keeps state on the client across rounds (an error-feedback residual) overrides
        this and uses `client.state`, a dict the runtime keeps for this client.
        """
        upload = self.client_upload(client.round_num, client.client_id, weights,
                                    client.global_weights)
        return upload, self.client_report(client, weights, upload)

    def pruning_steps(self, round_num, local_steps):
        """Per client, the value its tfmot pruning step counter starts from this round."""
        return np.zeros(len(local_steps), np.int64)

    def client_upload(self, round_num, client_id, weights, global_weights):
        """What client `client_id` uploads after local training; here its trained weights.

        `weights` and `global_weights` are lists of arrays; return a list of the same shapes.
        """
        return weights

    def client_report(self, client, weights, upload):
        """Extra arrays the client sends besides its weights (a dict name -> array), or None.

        Args:
            client: A `round.ClientRound` (round, client id, global weights, masks,
                instructions, number of examples, and `gradients(weights)` on its own data).
            weights: The client's trained weights.
            upload: What `client_upload` returned.
        """
        return None


class StrategyWrapper(NoPruning):
    """A strategy that wraps another (`inner`) and delegates every hook it does not change.

    DP over a pruning strategy, a robust rule over a strategy, poisoning over a strategy: each
    derives from this class and overrides only its own hooks, so both runtimes accept any
    combination. A wrapper that reports something of its own merges it with `inner`'s report
    (`_merged_report`; a key in both is refused).

    Args:
        inner: The wrapped strategy (default `NoPruning()`).

    Raises:
        TypeError: If `inner` is not a `NoPruning` (or subclass) instance.
    """

    def __init__(self, inner=None):
        inner = NoPruning() if inner is None else inner
        if not isinstance(inner, NoPruning):
            raise TypeError(f"inner must be a strategy (a NoPruning subclass instance), "
                            f"got {type(inner).__name__}")
        if type(inner).client_step is not NoPruning.client_step:
            raise TypeError(f"inner must not override client_step (a wrapper transforms "
                            f"client_upload), got {type(inner).__name__}")
        self.inner = inner

    @property
    def masked(self):
        """Whether clients train under masks: the inner strategy's answer."""
        return self.inner.masked

    def configure(self, config):
        """The inner strategy's configuration."""
        self.inner.configure(config)

    def model_key(self):
        """The inner strategy's key."""
        return self.inner.model_key()

    def wrap_model(self, model):
        """The inner strategy's model."""
        return self.inner.wrap_model(model)

    def start(self, weights, config):
        """The inner strategy's start."""
        return self.inner.start(weights, config)

    def round_masks(self, round_num, weights):
        """The inner strategy's masks."""
        return self.inner.round_masks(round_num, weights)

    def client_instructions(self, round_num):
        """The inner strategy's instructions."""
        return self.inner.client_instructions(round_num)

    def receive(self, round_num, uploads):
        """The inner strategy sees the uploads."""
        self.inner.receive(round_num, uploads)

    def aggregate(self, updates, num_examples):
        """The inner strategy's aggregation."""
        return self.inner.aggregate(updates, num_examples)

    def finish_round(self, round_num, weights):
        """The inner strategy's post-processing."""
        return self.inner.finish_round(round_num, weights)

    @property
    def upload_value_bits(self):
        """The inner strategy's upload value width."""
        return self.inner.upload_value_bits

    @property
    def upload_update(self):
        """Whether the inner strategy's uploads carry the update."""
        return self.inner.upload_update

    def client_masks(self, client):
        """The inner strategy's client masks."""
        return self.inner.client_masks(client)

    def pruning_steps(self, round_num, local_steps):
        """The inner strategy's tfmot step counters."""
        return self.inner.pruning_steps(round_num, local_steps)

    def client_upload(self, round_num, client_id, weights, global_weights):
        """The inner strategy's upload."""
        return self.inner.client_upload(round_num, client_id, weights, global_weights)

    def client_report(self, client, weights, upload):
        """The inner strategy's report."""
        return self.inner.client_report(client, weights, upload)

    def _merged_report(self, own, client, weights, upload):
        """This wrapper's report entries `own` merged with the inner strategy's."""
        inner = self.inner.client_report(client, weights, upload) or {}
        clash = sorted(set(own or {}) & set(inner))
        if clash:
            raise ValueError(f"report keys must differ between a wrapper and its inner "
                             f"strategy, got {clash} in both")
        merged = {**inner, **(own or {})}
        return merged or None
