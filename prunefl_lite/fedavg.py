"""The FedAvg round loop: sample, broadcast, train locally, upload, aggregate, evaluate."""

import dataclasses
import sys
import time

import numpy as np
import tensorflow as tf

from prunefl_lite import compress
from prunefl_lite import round as fl_round
from prunefl_lite.history import History
from prunefl_lite.pruning.masks import kernel_sparsity
from prunefl_lite.round import client_seeds, sample_round
from prunefl_lite.server import weighted_average
from prunefl_lite.strategy import NoPruning
from prunefl_lite.validate import check_pairs

__all__ = ["NoPruning", "client_seeds", "kernel_sparsity", "run_fedavg", "sample_round",
           "weighted_average"]


def run_fedavg(model_fn, clients, test, config, pruning=None, progress=False,
               stop_at_accuracy=None, initial_weights=None, on_round=None,
               accept_failures=False):
    """Run federated averaging (McMahan et al. 2017), optionally with pruning.

    Each round the server samples `config.clients_per_round` clients (without replacement);
    each sampled client fails independently with probability `config.dropout_rate` (it has
    downloaded the model, it uploads nothing); the rest train `config.local_epochs` epochs of
    SGD from the global weights and upload their weights. Non-finite updates are rejected (and
    counted). The server takes the weighted average of the rest (sum_k n_k w_k / sum_k n_k),
    applies its learning rate, lets the strategy post-process it, and evaluates the result.

    What is federated: the trainable weights and the moving statistics of BatchNormalization
    layers (averaged like weights, as averaging all of ``get_weights()`` does in Flower; with
    ``config.batch_norm="local"`` every BatchNorm variable stays on its client instead:
    FedBN, Li et al. 2021). Frozen weights (non-trainable variables of other layers) come from
    this run's `model_fn`; every client holds them and never uploads them. Random layers draw
    from a seed derived from (config.seed, round, client).

    Bytes: every count is the length of a payload really produced by `compress.encode`.
    Downloads are counted per client: a client receives the frozen weights the first time it is
    sampled, and the masks (positions) of a masked strategy unless it already holds exactly
    those masks from an earlier round; otherwise only the kept values.

    Args:
        model_fn: Returns a fresh, uncompiled `tf.keras` model (logits or softmax output),
            computing in float32.
        clients: A list of `(x, y)` pairs, one per client, with integer labels.
        test: An `(x, y)` pair on which the global model is evaluated each round.
        config: A `FedConfig`.
        pruning: None (dense FedAvg) or a strategy such as `pruning.GlobalPruning(0.9)`.
        progress: Show a progress bar (on stdout).
        stop_at_accuracy: Stop after the first evaluated round whose test accuracy reaches
            this value (a fraction in [0, 1]); None runs all rounds.
        initial_weights: None (start from `model_fn`'s initialisation under `config.seed`),
            or the federated weights to start from (e.g. an earlier run's `final_weights`):
            a list of arrays of the model's shapes, handed to the strategy's `start`.
        on_round: None, or an observer called after every round as
            `on_round(round_num, record, weights)` with the round's record (the dict appended
            to `history.rounds`) and the new global weights; its return value is ignored.
        accept_failures: False: an exception in a client (in a strategy's client hook) stops
            the run with a `round.ClientFailure` carrying the client's traceback. True: the
            round goes on without that client and the record lists it under "failures"
            (as Flower's `accept_failures`); a round in which clients failed and none
            completed is an error either way.

    Returns:
        A `History`; `final_weights` is the federated weight list (trainable weights, then
        BatchNorm statistics), `client_weights` the clients' own BatchNorm values under FedBN.

    Raises:
        ValueError: On invalid clients or test data, a `model_fn` that does not return a
            `tf.keras.Model`, a model computing in a dtype other than float32 (mixed precision
            is refused, naming the layer and policy), or a model whose local training changes
            a non-trainable variable other than BatchNorm statistics (naming it).

    Example:
        >>> import prunefl_lite as pfl
        >>> ds = pfl.data.load_dataset("digits")
        >>> parts = pfl.data.partition_iid(ds.y_train, 4, seed=0)
        >>> clients = pfl.data.split_clients(ds.x_train, ds.y_train, parts)
        >>> config = pfl.FedConfig(num_rounds=3, clients_per_round=2, seed=0)
        >>> model_fn = lambda: pfl.models.mlp_2nn(ds.input_shape, ds.num_classes)
        >>> history = run_fedavg(model_fn, clients, (ds.x_test, ds.y_test), config)
        >>> len(history.metric("accuracy")), history.metric("clients_completed")
        (3, [2, 2, 2])
    """
    strategy = pruning if pruning is not None else NoPruning()
    x_all, y_all, client_rows = _check_clients(clients, config)
    test = _check_test(test, x_all)
    trainer, weights = fl_round.build_trainer(model_fn, strategy, config)
    if initial_weights is not None:
        weights = _check_initial_weights(initial_weights, weights)
    weights = strategy.start(weights, config)
    trainer.set_data(x_all, y_all)
    run = _RunState(trainer, weights, config)
    rng = np.random.default_rng(config.seed)
    history = History(config=_config_dict(config, strategy))
    for round_num in _progress_bar(range(1, config.num_rounds + 1), progress):
        started = time.perf_counter()
        record, weights = _run_round(round_num, trainer, strategy, weights, run, client_rows,
                                     config, rng, accept_failures)
        fl_round.evaluate_round(record, trainer, weights, test, round_num, config, started)
        history.rounds.append(record)
        if on_round is not None:
            on_round(round_num, record, weights)
        if stop_at_accuracy is not None and (record["accuracy"] or 0.0) >= stop_at_accuracy:
            break
    history.final_weights = weights
    history.client_weights = {k: v for k, v in sorted(run.local.items())}
    return history


class _RunState:
    """What the clients hold between rounds (masks, frozen weights) and FedBN's local values."""

    def __init__(self, trainer, weights, config):
        self.local_mode = config.batch_norm == "local"
        self.local_index = trainer.batch_norm_index if self.local_mode else []
        self.shared_index = [i for i in range(len(weights)) if i not in set(self.local_index)]
        self.initial_local = [weights[i] for i in self.local_index]
        self.local = {}  # client -> its own BatchNorm values (FedBN)
        self.client_states = {}  # client -> its own state (kept on the client side)
        frozen = [v.numpy() for v in trainer.frozen_variables]
        self.downloads = fl_round.Downloads(len(compress.encode(frozen)) if frozen else 0,
                                            shared=self.shared)

    def shared(self, arrays):
        """The entries of a weight (or mask) list that travel (all but FedBN's local ones)."""
        return [arrays[i] for i in self.shared_index] if arrays is not None else None

    def local_start(self, client_ids):
        """FedBN: each client's own BatchNorm values, stacked (None when not FedBN)."""
        if not self.local_mode:
            return None
        return [np.stack([self.local.get(int(k), self.initial_local)[j] for k in client_ids])
                for j in range(len(self.local_index))]

    def keep_local(self, uploads):
        """FedBN: remember each client's own BatchNorm values."""
        for u in uploads if self.local_mode else []:
            self.local[u.client_id] = [u.weights[i] for i in self.local_index]


def _run_round(round_num, trainer, strategy, weights, run, client_rows, config, rng,
               accept_failures):
    """One round (`prunefl_lite.round`): returns its record (before evaluation), new weights."""
    plan = fl_round.plan_round(strategy, round_num, weights, rng, len(client_rows), config)
    download_each = run.downloads.each(plan, weights)
    uploads, failures = [], []
    if len(plan.answered) > 0:  # a round in which every sampled client failed trains nobody
        uploads, failures = fl_round.local_update(
            trainer, strategy, plan, plan.answered, [client_rows[k] for k in plan.answered],
            weights, config, local_weights=run.local_start(plan.answered),
            states=run.client_states, shared=run.shared)
    fl_round.check_failures(round_num, failures, len(uploads), accept_failures)
    # the payloads were encoded on the client side; `weights` are what decoding them gives
    sizes = [fl_round.upload_bytes(u) for u in uploads]
    accepted = fl_round.accept(uploads)
    run.keep_local(accepted)
    weights = fl_round.server_step(
        strategy, round_num, weights, accepted, config,
        after_update=(lambda w: _with_local_average(w, run, client_rows)) if run.local_mode
        else None)
    record = fl_round.round_record(plan, download_each, uploads, accepted, failures,
                                   sum(a + b for a, b in sizes), sum(b for _, b in sizes))
    return record, weights


def _with_local_average(weights, run, client_rows):
    """FedBN: the global model's BatchNorm entries are the n_k-weighted mean of the clients' own."""
    holders = sorted(run.local)
    local = weighted_average([run.local[k] for k in holders],
                             [len(client_rows[k]) for k in holders])
    weights = list(weights)
    for i, value in zip(run.local_index, local):
        weights[i] = value
    return weights


def _check_initial_weights(initial_weights, model_weights):
    """The given initial weights as arrays in the model's dtypes; refuses other shapes."""
    if not isinstance(initial_weights, (list, tuple)) or len(initial_weights) != len(
            model_weights):
        got = (f"a list of {len(initial_weights)}" if isinstance(initial_weights, (list, tuple))
               else type(initial_weights).__name__)
        raise ValueError(f"initial_weights must be a list of {len(model_weights)} arrays (the "
                         f"model's federated weights), got {got}")
    out = []
    for i, (w, m) in enumerate(zip(initial_weights, model_weights)):
        if np.shape(w) != m.shape:
            raise ValueError(f"initial_weights[{i}] must have shape {m.shape}, got {np.shape(w)}")
        out.append(np.array(w, dtype=m.dtype, copy=True))
    return out


def _check_clients(clients, config):
    """Validate the clients; return all their data concatenated and each client's rows."""
    clients = check_pairs("clients", clients)
    if config.clients_per_round > len(clients):
        raise ValueError(
            f"clients_per_round must be in [1, {len(clients)}] (the number of clients), "
            f"got {config.clients_per_round}"
        )
    x_all = np.concatenate([np.asarray(c[0], np.float32) for c in clients])
    y_all = np.concatenate([np.asarray(c[1]).astype(np.int64) for c in clients])
    bounds = np.cumsum([0] + [len(c[0]) for c in clients])
    rows = [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    return x_all, y_all, rows


def _check_test(test, x_all):
    """Validate the test pair against the clients' data."""
    if not (isinstance(test, (list, tuple)) and len(test) == 2) or len(test[0]) != len(test[1]):
        raise ValueError("test must be an (x, y) pair with as many labels as examples")
    x, y = np.asarray(test[0], np.float32), np.asarray(test[1]).astype(np.int64)
    if x.shape[1:] != x_all.shape[1:]:
        raise ValueError(f"test examples have shape {x.shape[1:]}, clients' {x_all.shape[1:]}")
    return tf.constant(x), tf.constant(y)  # converted once, evaluated every round


def _config_dict(config, strategy):
    """The config and the strategy's name, for the history."""
    return {**dataclasses.asdict(config), "pruning": type(strategy).__name__}


def _progress_bar(rounds, show):
    """Rounds wrapped in a tqdm bar on stdout (stderr would fail a strict book build)."""
    if not show:
        return rounds
    from tqdm.auto import tqdm

    return tqdm(rounds, desc="rounds", file=sys.stdout, leave=False)
