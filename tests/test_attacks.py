"""Poisoning attacks: malicious client choice, label flipping, poisoned uploads in the loop."""

import dataclasses

import numpy as np
import pytest
from fl_setup import CLIENTS, CONFIG, DS, TEST, mlp

import prunefl_lite as pfl
from prunefl_lite import attacks


@pytest.mark.parametrize("num_clients,fraction,count", [(20, 0.1, 2), (20, 0.3, 6), (10, 0.25, 2),
                                                       (7, 0.0, 0), (1, 0.5, 0)])
def test_choose_malicious_count_and_range(num_clients, fraction, count):
    chosen = attacks.choose_malicious(num_clients, fraction, seed=3)
    assert len(chosen) == count == len(set(chosen.tolist()))
    assert np.all((0 <= chosen) & (chosen < num_clients)) and np.all(np.diff(chosen) > 0)


def test_choose_malicious_is_seeded():
    assert attacks.choose_malicious(50, 0.2, seed=1).tolist() == \
        attacks.choose_malicious(50, 0.2, seed=1).tolist()
    assert attacks.choose_malicious(50, 0.2, seed=1).tolist() != \
        attacks.choose_malicious(50, 0.2, seed=2).tolist()


def test_flip_labels_maps_only_the_malicious_clients():
    flipped = attacks.flip_labels(CLIENTS, [1, 3], DS.num_classes)
    for k, ((x, y), (fx, fy)) in enumerate(zip(CLIENTS, flipped)):
        assert fx is x
        if k in (1, 3):
            assert np.array_equal(fy, DS.num_classes - 1 - y) and fy.dtype == y.dtype
        else:
            assert fy is y


def test_poisoned_uploads():
    g = [np.array([1.0, 0.0], np.float32), np.array([2.0], np.float32)]
    w = [np.array([3.0, 0.0], np.float32), np.array([1.0], np.float32)]
    flip = attacks.ModelPoisoning([0], "sign_flip", scale=1.0)
    boost = attacks.ModelPoisoning([0], "scale", scale=10.0)
    assert [a.tolist() for a in flip.client_upload(1, 0, w, g)] == [[-1.0, 0.0], [3.0]]
    assert [a.tolist() for a in boost.client_upload(1, 0, w, g)] == [[21.0, 0.0], [-8.0]]
    assert flip.client_upload(1, 0, w, g)[0].dtype == np.float32
    assert flip.client_upload(1, 5, w, g) is w  # honest client: untouched


@pytest.mark.parametrize("call,error,message", [
    (lambda: attacks.choose_malicious(0, 0.1), ValueError, "num_clients must be an integer >= 1"),
    (lambda: attacks.choose_malicious(2.5, 0.1), TypeError, "num_clients must be an integer"),
    (lambda: attacks.choose_malicious(True, 0.1), TypeError, "num_clients must be an integer"),
    (lambda: attacks.choose_malicious(10, 1.0), ValueError, "fraction must be a number in"),
    (lambda: attacks.choose_malicious(10, -0.1), ValueError, "fraction must be a number in"),
    (lambda: attacks.choose_malicious(10, True), TypeError, "fraction must be a number in"),
    (lambda: attacks.flip_labels(CLIENTS, [0], 1), ValueError,
     "num_classes must be an integer >= 2"),
    (lambda: attacks.flip_labels(CLIENTS, [len(CLIENTS)], 10), ValueError,
     "malicious must hold client ids"),
    (lambda: attacks.flip_labels(CLIENTS, [0], 5), ValueError, "labels of client 0 must be in"),
    (lambda: attacks.ModelPoisoning([0], "noise"), ValueError, "attack must be one of"),
    (lambda: attacks.ModelPoisoning([0], scale=0.0), ValueError, r"scale must be a number in \(0"),
    (lambda: attacks.ModelPoisoning([0], scale=float("inf")), ValueError, "scale must be a"),
    (lambda: attacks.ModelPoisoning([0], scale=True), TypeError, "scale must be a number"),
    (lambda: attacks.ModelPoisoning([-1]), ValueError, "malicious must be an integer >= 0"),
])
def test_validation(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("value", [np.int64(20), np.int32(20)])
def test_numpy_integers_are_plain_values(value):
    chosen = attacks.choose_malicious(value, np.float64(0.2), seed=np.int64(0))
    assert chosen.tolist() == attacks.choose_malicious(20, 0.2, seed=0).tolist()
    attack = attacks.ModelPoisoning(np.array([3, 4]), scale=np.float32(2.0))
    assert attack.malicious == {3, 4} and type(attack.scale) is float
    assert all(type(k) is int for k in attack.malicious)


def test_attack_in_the_round_loop_poisons_only_sampled_malicious_clients():
    # every client, each round; a learning rate at which the clean model trains in 3 rounds
    config = dataclasses.replace(CONFIG, clients_per_round=len(CLIENTS), learning_rate=0.3)
    attack = attacks.ModelPoisoning([2, 5], "scale", scale=50.0)
    poisoned = pfl.run_fedavg(mlp, CLIENTS, TEST, config, pruning=attack)
    assert attack.uploads == [(r, k) for r in (1, 2, 3) for k in (2, 5)]
    clean = pfl.run_fedavg(mlp, CLIENTS, TEST, config)
    assert clean.metric("accuracy")[-1] > 0.6  # the clean run learns...
    assert poisoned.metric("accuracy")[-1] < clean.metric("accuracy")[-1] - 0.3  # ...poisoned not
    again = pfl.run_fedavg(mlp, CLIENTS, TEST, config, pruning=attack)  # start() resets the log
    assert len(attack.uploads) == 6 and again.metric("accuracy") == poisoned.metric("accuracy")


def test_attack_wraps_robust_aggregation_and_keeps_masked_zeros():
    inner = pfl.robust.RobustAggregation("median", pruning=pfl.pruning.GlobalPruning(0.5))
    attack = attacks.ModelPoisoning([0, 1, 2], "sign_flip", scale=3.0, pruning=inner)
    assert attack.masked and attack.inner is inner
    assert attack.aggregate([[np.array([1.0])], [np.array([5.0])], [np.array([2.0])]],
                            [1, 1, 1])[0].tolist() == [2.0]  # the inner rule: the median
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=attack)
    assert history.metric("sparsity")[-1] == pytest.approx(0.5, abs=0.01)
