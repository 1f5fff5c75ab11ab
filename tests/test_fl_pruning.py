"""The federated pruning strategies inside run_fedavg: GlobalPruning and ClientPruning."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from fl_setup import CLIENTS, CONFIG, TEST, mlp, without_seconds

import prunefl_lite as pfl
from prunefl_lite import compress, fedavg
from prunefl_lite.pruning import ClientPruning, GlobalPruning

CONFIG = dataclasses.replace(CONFIG, num_rounds=6)


def kernels(weights):
    return [w for w in weights if w.ndim >= 2]


def record_uploads(monkeypatch):
    """Capture each (arrays, known_masks) the engine encodes; a round starts with its download."""
    calls, encode = [], compress.encode

    def recording_encode(arrays, known_masks=None, **kwargs):
        calls.append(([np.array(a) for a in arrays], known_masks))
        return encode(arrays, known_masks=known_masks, **kwargs)

    monkeypatch.setattr(fedavg.compress, "encode", recording_encode)
    return calls


def test_global_pruning_follows_its_schedule_every_round():
    strategy = GlobalPruning(0.8, end_round=4)
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=strategy)
    n = sum(w.size for w in kernels(history.final_weights))
    expected = [round(strategy.scheduled_sparsity(r) * n) / n for r in range(1, 7)]
    assert history.metric("sparsity") == pytest.approx(expected, abs=2 / n)
    assert history.metric("sparsity")[-1] >= 0.8 - 1 / n


def test_clients_train_under_the_global_mask_and_masked_weights_stay_zero(monkeypatch):
    calls = record_uploads(monkeypatch)
    pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=GlobalPruning(0.8, end_round=3))
    uploads = [(arrays, masks) for arrays, masks in calls if masks is not None]
    assert len(uploads) >= 4 * 4  # rounds 3..6 at least carry the mask
    for arrays, masks in uploads:
        for array, mask in zip(arrays, masks):
            if mask is not None:
                assert np.all(array[~mask] == 0)  # trained, yet exactly zero where pruned
                assert np.count_nonzero(array[mask]) > 0.9 * mask.sum()  # kept weights trained


def test_global_pruning_uploads_far_fewer_bytes_once_at_target():
    dense = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG)
    pruned = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=GlobalPruning(0.9, end_round=3))
    assert dense.metric("bytes_up")[-1] / pruned.metric("bytes_up")[-1] > 5
    assert dense.metric("bytes_down")[-1] / pruned.metric("bytes_down")[-1] > 5


@pytest.mark.parametrize("make", [lambda: GlobalPruning(0.7, end_round=3),
                                  lambda: ClientPruning(0.7, end_round=3)],
                         ids=["global", "client"])
def test_pruned_runs_reproduce(make):
    a = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=make())
    b = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=make())
    assert without_seconds(a) == without_seconds(b)
    assert all(np.array_equal(x, y) for x, y in zip(a.final_weights, b.final_weights))


@pytest.mark.parametrize("aggregation", ["keepers", "mean"])
def test_client_pruning_reaches_its_target_and_learns(aggregation):
    strategy = ClientPruning(0.7, aggregation=aggregation, end_round=3)
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, dataclasses.replace(CONFIG, num_rounds=8),
                             pruning=strategy)
    for kernel in kernels(history.final_weights):  # tfmot and the server prune per layer
        assert np.mean(kernel == 0) == pytest.approx(0.7, abs=0.01)
    assert history.metric("accuracy")[-1] > history.metric("accuracy")[0]
    # clients' masks differ while the schedule runs, so the aggregate is denser than the target
    scheduled = [strategy.scheduled_sparsity(r) for r in range(1, 4)]
    assert all(a < s for a, s in zip(strategy.aggregate_sparsity[:3], scheduled))


def test_client_pruning_masks_are_applied_by_tfmot_inside_each_client(monkeypatch):
    calls = record_uploads(monkeypatch)
    strategy = ClientPruning(0.6, end_round=2)
    pfl.run_fedavg(mlp, CLIENTS, TEST, dataclasses.replace(CONFIG, num_rounds=2), pruning=strategy)
    uploads = [arrays for i, (arrays, _) in enumerate(calls) if i % 5 != 0]  # 1 down + 4 up
    round_two = uploads[4:]
    for arrays in round_two:
        for kernel in kernels(arrays):  # each client pruned its own layers to the schedule
            assert np.mean(kernel == 0) == pytest.approx(0.6, abs=0.01)
    masks = [tuple((k == 0).ravel()) for k in (kernels(a)[0] for a in round_two)]
    assert len(set(masks)) > 1  # different data, different masks


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: GlobalPruning(1.0), "target_sparsity must be a number in [0, 1)"),
        (lambda: GlobalPruning(-0.1), "target_sparsity must be a number in [0, 1)"),
        (lambda: GlobalPruning(0.5, begin_round=0), "begin_round"),
        (lambda: GlobalPruning(0.5, begin_round=5, end_round=3), "end_round"),
        (lambda: GlobalPruning(0.5, end_fraction=0), "end_fraction must be a number in (0, 1]"),
        (lambda: GlobalPruning(0.5, power=0), "power"),
        (lambda: GlobalPruning(0.5, scope="model"), "scope"),
        (lambda: ClientPruning(0.5, aggregation="median"), "aggregation must be one of"),
    ],
)
def test_strategy_arguments_are_validated(make, message):
    with pytest.raises(ValueError) as error:
        make()
    assert message in str(error.value)


def _cnn_with_batch_norm():
    return tf.keras.Sequential([
        tf.keras.Input((8, 8, 1)), tf.keras.layers.Conv2D(4, 3, padding="same"),
        tf.keras.layers.BatchNormalization(), tf.keras.layers.ReLU(), tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(32, activation="relu"), tf.keras.layers.BatchNormalization(),
        tf.keras.layers.Dense(10)])


@pytest.mark.parametrize("batch_norm", ["average", "local"])
@pytest.mark.parametrize("make", [lambda: GlobalPruning(0.5, end_round=2),
                                  lambda: ClientPruning(0.5, end_round=2)],
                         ids=["GlobalPruning", "ClientPruning"])
def test_pruning_strategies_train_batch_norm_models(make, batch_norm):
    config = dataclasses.replace(CONFIG, num_rounds=3, batch_norm=batch_norm)
    history = pfl.run_fedavg(_cnn_with_batch_norm, CLIENTS, TEST, config, pruning=make())
    assert history.metric("sparsity")[-1] == pytest.approx(0.5, abs=0.01)
    statistics = history.final_weights[-4:]  # two moving means and variances: never pruned
    assert all(np.count_nonzero(s) == s.size for s in statistics[1::2])  # variances > 0
    sampled = {k for r in history.rounds for k in r["clients_sampled"]}
    assert set(history.client_weights) == (sampled if batch_norm == "local" else set())
    assert history.metric("accuracy")[-1] > 0.3
