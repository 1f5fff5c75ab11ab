"""The FedAvg round loop: sample, broadcast, train locally, upload, aggregate, evaluate."""

import dataclasses
import json
import sys
import time

import numpy as np
import tensorflow as tf

from prunefl_lite import compress
from prunefl_lite.client import ClientTrainer, plan_local_steps
from prunefl_lite.history import History
from prunefl_lite.pruning.masks import kernel_sparsity
from prunefl_lite.server import server_update, weighted_average
from prunefl_lite.strategy import NoPruning

__all__ = ["NoPruning", "kernel_sparsity", "run_fedavg", "weighted_average"]

_TRAINERS = {}  # compiled trainers, reused by every run with the same architecture


def run_fedavg(model_fn, clients, test, config, pruning=None, progress=False,
               stop_at_accuracy=None):
    """Run federated averaging (McMahan et al. 2017), optionally with pruning.

    Each round the server samples `config.clients_per_round` clients, a `config.dropout_rate`
    fraction of them fails, the rest train `config.local_epochs` epochs of SGD from the global
    weights and upload their weights. Non-finite updates are rejected (and counted). The server
    takes the weighted average of the rest, applies its learning rate, and evaluates the result.
    Every byte count is the length of a payload really produced by `compress.encode`.

    Args:
        model_fn: Returns a fresh, uncompiled `tf.keras` model (logits or softmax output).
        clients: A list of `(x, y)` pairs, one per client, with integer labels.
        test: An `(x, y)` pair on which the global model is evaluated each round.
        config: A `FedConfig`.
        pruning: None (dense FedAvg) or a strategy such as `pruning.GlobalPruning(0.9)`.
        progress: Show a progress bar (on stdout).
        stop_at_accuracy: Stop after the first evaluated round whose test accuracy reaches
            this value (for rounds-to-target experiments); None runs all rounds.

    Returns:
        A `History`.

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
    trainer, weights = _trainer_and_initial_weights(model_fn, strategy, config)
    trainer.set_data(x_all, y_all)
    rng = np.random.default_rng(config.seed)
    history = History(config=_config_dict(config, strategy))
    held_masks = None  # the masks the clients already hold (sent in an earlier round)
    rounds = range(1, config.num_rounds + 1)
    for round_num in _progress_bar(rounds, progress):
        start = time.perf_counter()
        masks = strategy.round_masks(round_num, weights)
        known = masks if _same_masks(masks, held_masks) else None
        record, weights = _run_round(
            round_num, trainer, strategy, weights, masks, known, client_rows, config, rng
        )
        held_masks = masks
        if round_num % config.eval_every == 0 or round_num == config.num_rounds:
            record["loss"], record["accuracy"] = trainer.evaluate(weights, test_x, test_y)
        else:
            record["loss"] = record["accuracy"] = None
        record["sparsity"] = kernel_sparsity(weights)
        record["seconds"] = time.perf_counter() - start
        history.rounds.append(record)
        if stop_at_accuracy is not None and (record["accuracy"] or 0.0) >= stop_at_accuracy:
            break
    history.final_weights = weights
    return history


def _run_round(round_num, trainer, strategy, weights, masks, known, client_rows, config, rng):
    """One round: returns the round's record (without evaluation) and the new global weights."""
    sampled = rng.choice(len(client_rows), size=config.clients_per_round, replace=False)
    num_failed = int(config.dropout_rate * len(sampled))
    answered = np.sort(rng.permutation(sampled)[num_failed:])
    download = compress.encode(weights, known_masks=known)
    start_weights = compress.decode(download, known_masks=known)
    if strategy.masked:
        trainer.set_masks([np.ones(w.shape, bool) if m is None else m
                           for w, m in zip(weights, masks or [None] * len(weights))])
    plan = plan_local_steps([client_rows[k] for k in answered], config.local_epochs,
                            config.batch_size, rng)
    local_steps = plan["stop"] - plan["start"]
    stacked = trainer.train(start_weights, plan, config.learning_rate,
                            strategy.pruning_steps(round_num, local_steps))
    updates, counts, bytes_up = [], [], 0
    for slot, k in enumerate(answered):
        trained = strategy.client_upload(round_num, int(k), [s[slot] for s in stacked],
                                         start_weights)
        upload = compress.encode(trained, known_masks=masks)
        bytes_up += len(upload)
        received = compress.decode(upload, known_masks=masks)
        if all(np.all(np.isfinite(w)) for w in received):
            updates.append(received)
            counts.append(len(client_rows[k]))
    if updates:
        average = strategy.aggregate(updates, counts)
        weights = server_update(weights, average, config.server_learning_rate)
    weights = strategy.finish_round(round_num, weights)
    record = {
        "bytes_down": len(download) * len(sampled),
        "bytes_up": bytes_up,
        "clients_completed": len(updates),
        "clients_rejected": len(answered) - len(updates),
        "clients_dropped": num_failed,
    }
    return record, weights


def _trainer_and_initial_weights(model_fn, strategy, config):
    """The run's initial weights (whatever model_fn returns under the run's seed) and a trainer.

    The compiled trainer is cached per architecture and strategy; the weights always come from
    this call of `model_fn`, so a model_fn that loads or sets weights is respected.
    """
    _seed_keras_initialisers(config.seed)
    model = model_fn()
    if not isinstance(model, tf.keras.Model):
        raise ValueError(f"model_fn must return a tf.keras.Model, got {type(model).__name__}")
    weights = strategy.start([v.numpy() for v in model.trainable_variables], config)
    key = (_architecture_key(model), strategy.model_key(), strategy.masked)
    if key not in _TRAINERS:
        _TRAINERS[key] = ClientTrainer(strategy.wrap_model(model), masked=strategy.masked)
    return _TRAINERS[key], weights


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
    if not isinstance(clients, (list, tuple)) or len(clients) == 0:
        raise ValueError("clients must be a non-empty list of (x, y) pairs")
    for k, client in enumerate(clients):
        if not (isinstance(client, (list, tuple)) and len(client) == 2):
            raise ValueError(f"clients[{k}] must be an (x, y) pair, got {type(client).__name__}")
        if len(client[0]) == 0 or len(client[0]) != len(client[1]):
            raise ValueError(
                f"clients[{k}] must hold at least one example and as many labels as examples, "
                f"got {len(client[0])} examples and {len(client[1])} labels"
            )
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
    return x, y


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
