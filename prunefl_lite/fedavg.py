"""The FedAvg round loop: sample, broadcast, train locally, upload, aggregate, evaluate."""

import dataclasses
import json
import sys
import time

import numpy as np
import tensorflow as tf

from prunefl_lite import compress
from prunefl_lite.client import (
    ClientTrainer,
    check_model,
    classify_variables,
    plan_local_steps,
)
from prunefl_lite.history import History
from prunefl_lite.pruning.masks import kernel_sparsity
from prunefl_lite.server import server_update, weighted_average
from prunefl_lite.strategy import NoPruning
from prunefl_lite.validate import check_pairs

__all__ = ["NoPruning", "client_seeds", "kernel_sparsity", "run_fedavg", "sample_round",
           "weighted_average"]

_TRAINERS = {}  # compiled trainers, reused by every run with the same architecture


def run_fedavg(model_fn, clients, test, config, pruning=None, progress=False,
               stop_at_accuracy=None, initial_weights=None, on_round=None):
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
    test_x, test_y = _check_test(test, x_all)
    trainer, weights = _trainer_and_initial_weights(model_fn, strategy, config, initial_weights)
    trainer.set_data(x_all, y_all)
    run = _RunState(trainer, weights, config)
    rng = np.random.default_rng(config.seed)
    history = History(config=_config_dict(config, strategy))
    rounds = range(1, config.num_rounds + 1)
    for round_num in _progress_bar(rounds, progress):
        start = time.perf_counter()
        record, weights = _run_round(round_num, trainer, strategy, weights, run, client_rows,
                                     config, rng)
        if round_num % config.eval_every == 0 or round_num == config.num_rounds:
            record["loss"], record["accuracy"] = trainer.evaluate(weights, test_x, test_y)
        else:
            record["loss"] = record["accuracy"] = None
        record["sparsity"] = kernel_sparsity(weights)
        record["seconds"] = time.perf_counter() - start
        history.rounds.append(record)
        if on_round is not None:
            on_round(round_num, record, weights)
        if stop_at_accuracy is not None and (record["accuracy"] or 0.0) >= stop_at_accuracy:
            break
    history.final_weights = weights
    history.client_weights = {k: v for k, v in sorted(run.local.items())}
    return history


class _RunState:
    """What the clients hold between rounds: masks, frozen weights, FedBN's local values."""

    def __init__(self, trainer, weights, config):
        self.local_mode = config.batch_norm == "local"
        self.local_index = trainer.batch_norm_index if self.local_mode else []
        self.shared_index = [i for i in range(len(weights)) if i not in set(self.local_index)]
        self.initial_local = [weights[i] for i in self.local_index]
        self.local = {}  # client -> its own BatchNorm values (FedBN)
        self.held_masks = {}  # client -> the masks it received last
        self.has_frozen = set()  # clients that received the frozen weights
        frozen = [v.numpy() for v in trainer.frozen_variables]
        self.frozen_bytes = len(compress.encode(frozen)) if frozen else 0

    def shared(self, arrays):
        """The entries of a weight (or mask) list that travel (all but FedBN's local ones)."""
        return [arrays[i] for i in self.shared_index] if arrays is not None else None


def sample_round(rng, num_clients, clients_per_round, dropout_rate):
    """Which clients a round samples and which of them answer.

    The rule of deployed FL (Bonawitz et al. 2019): the server samples `clients_per_round`
    distinct clients uniformly; each fails independently with probability `dropout_rate`, so
    the number that fails is Binomial(clients_per_round, dropout_rate), its mean
    `dropout_rate * clients_per_round` (29 of 50 at 0.58), and small rounds are not rounded
    down to no failures at all.

    Args:
        rng: The run's `np.random.Generator`.
        num_clients: How many clients there are (K).
        clients_per_round: How many are sampled (m <= K).
        dropout_rate: Probability in [0, 1) that a sampled client fails.

    Returns:
        `(sampled, answered)`: int arrays of client ids, both sorted; `answered` is a subset.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> dropped = [50 - len(sample_round(rng, 100, 50, 0.58)[1]) for _ in range(2000)]
        >>> round(float(np.mean(dropped)))
        29
    """
    sampled = rng.choice(num_clients, size=clients_per_round, replace=False)
    order = rng.permutation(sampled)  # kept from earlier versions: chapter 4 replays this stream
    if dropout_rate > 0:
        order = order[rng.random(len(order)) >= dropout_rate]
    return np.sort(sampled), np.sort(order)


def client_seeds(seed, round_num, client_ids):
    """The seed of each client's random layers in one round, derived from (seed, round, client).

    NumPy's `SeedSequence` hashes the three numbers, so neighbouring clients and rounds get
    unrelated streams, and a client's stream does not depend on who else was sampled.

    Args:
        seed: The run's `config.seed`.
        round_num: The round, from 1.
        client_ids: The clients' indices into `run_fedavg`'s `clients`.

    Returns:
        An int64 array with one non-negative seed per client.

    Example:
        >>> a = client_seeds(0, 1, [3, 5]); b = client_seeds(0, 1, [3, 5])
        >>> bool((a == b).all()), a.dtype.name, bool(a[0] != a[1])
        (True, 'int64', True)
    """
    return np.array([np.random.SeedSequence([seed, round_num, int(k)]).generate_state(
        1, np.uint64)[0] >> np.uint64(1) for k in client_ids], dtype=np.int64)


def _run_round(round_num, trainer, strategy, weights, run, client_rows, config, rng):
    """One round: returns the round's record (without evaluation) and the new global weights."""
    sampled, answered = sample_round(rng, len(client_rows), config.clients_per_round,
                                     config.dropout_rate)
    masks = strategy.round_masks(round_num, weights)
    download_each = _downloads(sampled, weights, masks, run)
    updates, counts, bytes_up = [], [], 0
    if len(answered) > 0:  # a round in which every sampled client failed trains nobody
        updates, counts, bytes_up = _train_and_upload(
            round_num, trainer, strategy, weights, masks, run, client_rows, config, rng, answered)
    if updates:
        average = strategy.aggregate(updates, counts)
        weights = server_update(weights, average, config.server_learning_rate)
        if run.local_mode:
            weights = _with_local_average(weights, run, client_rows)
    weights = strategy.finish_round(round_num, weights)
    record = {
        "bytes_down": int(sum(download_each)),
        "bytes_up": bytes_up,
        "clients_completed": len(updates),
        "clients_rejected": len(answered) - len(updates),
        "clients_dropped": len(sampled) - len(answered),
        "clients_sampled": [int(k) for k in sampled],
        "bytes_down_each": download_each,
    }
    return record, weights


def _train_and_upload(round_num, trainer, strategy, weights, masks, run, client_rows, config, rng,
                      answered):
    """Train the clients that answered; return accepted updates, their counts, bytes uploaded."""
    start_weights = weights
    updates, counts, bytes_up = [], [], 0
    if strategy.masked:
        trainer.set_masks([np.ones(w.shape, bool) if m is None else m
                           for w, m in zip(weights, masks or [None] * len(weights))])
    plan = plan_local_steps([client_rows[k] for k in answered], config.local_epochs,
                            config.batch_size, rng)
    local_steps = plan["stop"] - plan["start"]
    local_start = None
    if run.local_mode:
        local_start = [np.stack([run.local.get(int(k), run.initial_local)[j] for k in answered])
                       for j in range(len(run.local_index))]
    stacked = trainer.train(start_weights, plan, config.learning_rate,
                            strategy.pruning_steps(round_num, local_steps),
                            seeds=client_seeds(config.seed, round_num, answered),
                            local_weights=local_start)
    trainer.check_frozen()
    for slot, k in enumerate(answered):
        trained = strategy.client_upload(round_num, int(k), [s[slot] for s in stacked],
                                         start_weights)
        # the real payload's length is what is sent; decoding it would return `trained` bit
        # for bit (compress's round trip is exact and tested), so the server uses `trained`
        bytes_up += len(compress.encode(run.shared(trained), known_masks=run.shared(masks)))
        if all(np.all(np.isfinite(w)) for w in trained):
            updates.append(trained)
            counts.append(len(client_rows[k]))
            if run.local_mode:
                run.local[int(k)] = [trained[i] for i in run.local_index]
    return updates, counts, bytes_up


def _downloads(sampled, weights, masks, run):
    """Bytes each sampled client downloads; updates what each client holds.

    A client gets the kept values only if it holds exactly `masks` already, otherwise the
    payload that carries the positions too; plus the frozen weights the first time.
    """
    payloads = {}
    each = []
    for k in (int(k) for k in sampled):
        known = masks is not None and _same_masks(masks, run.held_masks.get(k))
        if known not in payloads:
            payloads[known] = len(compress.encode(
                run.shared(weights), known_masks=run.shared(masks) if known else None))
        each.append(payloads[known] + (0 if k in run.has_frozen else run.frozen_bytes))
        run.has_frozen.add(k)
        if masks is not None:
            run.held_masks[k] = masks
    return each


def _with_local_average(weights, run, client_rows):
    """FedBN: the global model's BatchNorm entries are the n_k-weighted mean of the clients' own."""
    holders = sorted(run.local)
    local = weighted_average([run.local[k] for k in holders],
                             [len(client_rows[k]) for k in holders])
    weights = list(weights)
    for i, value in zip(run.local_index, local):
        weights[i] = value
    return weights


def _trainer_and_initial_weights(model_fn, strategy, config, initial_weights=None):
    """The run's initial weights (whatever model_fn returns under the run's seed) and a trainer.

    The compiled trainer is cached per architecture and strategy; the weights, and the frozen
    (non-trainable) values, always come from this call of `model_fn`, so a model_fn that loads
    or sets weights is respected.
    """
    _seed_keras_initialisers(config.seed)
    model = model_fn()
    if not isinstance(model, tf.keras.Model):
        raise ValueError(f"model_fn must return a tf.keras.Model, got {type(model).__name__}")
    check_model(model)
    parts = classify_variables(model)
    weights = [v.numpy() for v in parts["trainable"] + parts["statistics"]]
    if initial_weights is not None:
        weights = _check_initial_weights(initial_weights, weights)
    weights = strategy.start(weights, config)
    key = (_architecture_key(model), strategy.model_key(), strategy.masked)
    if key not in _TRAINERS:
        _TRAINERS[key] = ClientTrainer(strategy.wrap_model(model), masked=strategy.masked)
    trainer = _TRAINERS[key]
    trainer.load_frozen([v.numpy() for v in parts["frozen"]])
    return trainer, weights


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


def _seed_keras_initialisers(seed):
    """Seed Python, NumPy and Keras' initialiser seeds, as `tf.keras.utils.set_random_seed` does.

    Unlike `set_random_seed` it leaves TensorFlow's global seed alone, because setting that
    clears TensorFlow's runtime caches and costs the next compiled round about 0.3 s. Keras'
    initialisers draw their seeds from Keras' own generator, so the weights are the same.
    """
    import random

    random.seed(seed)
    np.random.seed(seed)
    try:
        from tf_keras.src import backend as keras_backend

        keras_backend._SEED_GENERATOR.generator = random.Random(seed)
    except (ImportError, AttributeError):  # a Keras without that generator: the slow, sure way
        tf.keras.utils.set_random_seed(seed)


def _architecture_key(model):
    """The model's configuration without layer names (which Keras numbers on every build)."""

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "name"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    try:
        return json.dumps(strip(model.get_config()), sort_keys=True, default=str)
    except (NotImplementedError, TypeError):  # a subclassed model without get_config
        return f"unkeyed-{id(model)}"


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


def _same_masks(masks, held):
    """Whether the clients already hold exactly these masks."""
    if masks is None or held is None:
        return False
    return all((m is None and h is None) or (m is not None and h is not None
               and np.array_equal(m, h)) for m, h in zip(masks, held))


def _config_dict(config, strategy):
    """The config and the strategy's name, for the history."""
    return {**dataclasses.asdict(config), "pruning": type(strategy).__name__}


def _progress_bar(rounds, show):
    """Rounds wrapped in a tqdm bar on stdout (stderr would fail a strict book build)."""
    if not show:
        return rounds
    from tqdm.auto import tqdm

    return tqdm(rounds, desc="rounds", file=sys.stdout, leave=False)
