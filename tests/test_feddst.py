"""FedDST as published: client readjustment, vote-count averaging, re-pruning; a rule per test."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from fl_setup import CLIENTS, CONFIG, TEST, mlp

import prunefl_lite as pfl
from prunefl_lite.pruning.feddst import FedDST, readjusted_mask, vote_average

CONFIG3 = dataclasses.replace(CONFIG, num_rounds=3, clients_per_round=3)


def test_readjustment_drops_the_smallest_kept_and_regrows_the_largest_gradients():
    rng = np.random.default_rng(0)
    mask = rng.random((10, 12)) < 0.3
    w = np.where(mask, rng.normal(size=mask.shape), 0)
    g = rng.normal(size=mask.shape)
    out = readjusted_mask(mask, w, g, 5)
    assert out.sum() == mask.sum()
    dropped, grown = mask & ~out, out & ~mask
    assert dropped.sum() == grown.sum() == 5
    assert np.abs(w[dropped]).max() <= np.abs(w[mask & out]).min()
    assert np.abs(g[grown]).min() >= np.abs(g[~mask & ~out]).max()


def test_readjustment_swaps_no_more_than_there_is():
    mask = np.array([True, False, False])
    out = readjusted_mask(mask, np.array([1.0, 0, 0]), np.array([0, 2.0, 1.0]), 10)
    assert out.tolist() == [False, True, False]


def test_vote_average_against_a_hand_computation():
    a = np.array([2.0, 0.0, 1.0, 0.0])
    b = np.array([4.0, 3.0, 0.0, 0.0])
    c = np.array([0.0, 6.0, 0.0, 5.0])
    average, votes = vote_average([a, b, c], [1, 1, 2], min_votes=2)
    assert votes.tolist() == [2, 2, 1, 1]
    # entry 0: (1*2 + 1*4) / 2 = 3; entry 1: (1*3 + 2*6) / 3 = 5; entries 2, 3: one vote < 2
    assert average.tolist() == [3.0, 5.0, 0.0, 0.0]
    assert vote_average([a, b, c], [1, 1, 2])[0].tolist() == [3.0, 5.0, 1.0, 5.0]


class Config:
    num_rounds, seed, learning_rate = 10, 0, 0.05


def started(min_votes=1, **kwargs):
    strategy = FedDST(0.5, min_votes=min_votes, distribution="uniform", rescale=False, **kwargs)
    strategy.start([np.ones((2, 4), np.float32), np.ones(4, np.float32)], Config)
    return strategy


def test_the_server_averages_kernels_by_votes_and_biases_by_fedavg():
    strategy = started(min_votes=2)
    k = [np.array([[1.0, 0, 2, 0], [0, 0, 0, 4]], np.float32),
         np.array([[3.0, 0, 0, 0], [0, 0, 5, 8]], np.float32),
         np.array([[0.0, 7, 0, 0], [0, 0, 0, 2]], np.float32)]
    biases = [np.full(4, v, np.float32) for v in (1.0, 2.0, 4.0)]
    out = strategy.aggregate([[kk, b] for kk, b in zip(k, biases)], [1, 1, 2])
    # [0,0]: clients 0, 1 -> (1 + 3) / 2; [1,3]: all three -> (4 + 8 + 2*2) / 4; rest < 2 votes
    expected = np.zeros((2, 4))
    expected[0, 0], expected[1, 3] = 2.0, 4.0
    assert out[0].tolist() == expected.tolist()
    assert out[1].tolist() == [(1 + 2 + 8) / 4] * 4
    assert strategy.votes[0].tolist() == [[2, 1, 1, 0], [0, 0, 1, 3]]
    assert strategy.votes[1] is None


def test_after_a_readjustment_round_the_server_reprunes_to_each_kernels_count():
    strategy = started(readjust_every=5)
    merged = [np.array([[0.5, -3, 0, 0.1], [2, 0, 0, 1]], np.float32), np.ones(4, np.float32)]
    out = strategy.finish_round(5, merged)
    assert strategy.kept[0] == 4
    assert out[0].tolist() == [[0.5, -3, 0, 0], [2, 0, 0, 1]]
    assert strategy.masks[0].tolist() == (out[0] != 0).tolist()
    assert out[1].tolist() == [1.0] * 4
    outside = strategy.finish_round(6, merged)  # no readjustment: the mask stays
    assert outside[0].tolist() == out[0].tolist()


def test_a_client_readjusts_only_when_told_and_from_its_own_gradient():
    strategy = started()
    weights = [np.array([[1.0, 0, 2, 0], [0, 3, 0, 4]], np.float32), np.ones(4, np.float32)]
    masks = [weights[0] != 0, None]
    grad = [np.array([[9.0, 5, 0, 1], [7, 9, 0, 0]], np.float32), np.zeros(4, np.float32)]

    def client(instructions):
        return SimpleNamespace(instructions=instructions, masks=masks, global_weights=weights,
                               gradients=lambda w: grad)

    assert strategy.client_masks(client({})) is masks
    mine = strategy.client_masks(client({"readjust_counts": [1, 0]}))
    assert mine[0].tolist() == [[False, False, True, False], [True, True, False, True]]
    assert mine[1] is None


@pytest.mark.parametrize("kwargs, error, message", [
    ({"target_sparsity": 1.0}, ValueError,
     r"target_sparsity must be a number in \[0, 1\), got 1.0"),
    ({"readjust_every": 0}, ValueError, r"readjust_every must be an integer >= 1, got 0"),
    ({"readjust_fraction": 1.5}, ValueError,
     r"readjust_fraction must be a number in \[0, 1\), got 1.5"),
    ({"end_fraction": 0.0}, ValueError, r"end_fraction must be a number in \(0, 1\], got 0.0"),
    ({"min_votes": 0}, ValueError, r"min_votes must be an integer >= 1, got 0"),
    ({"min_votes": 1.0}, TypeError, r"min_votes must be an integer >= 1, got 1.0"),
    ({"distribution": "normal"}, ValueError,
     r"distribution must be one of 'erk', 'uniform', got 'normal'"),
])
def test_validation_names_the_parameter_range_and_value(kwargs, error, message):
    with pytest.raises(error, match=message):
        FedDST(**{"target_sparsity": 0.9, **kwargs})


def test_a_run_keeps_the_sparsity_and_clients_disagree_only_when_they_readjust():
    strategy = FedDST(0.8, readjust_every=2, end_fraction=1.0)
    config = dataclasses.replace(CONFIG3, num_rounds=4)
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, config, pruning=strategy)
    np.testing.assert_allclose(history.metric("sparsity"), 0.8, atol=0.01)
    assert sorted(strategy.consensus) == [1, 2, 3, 4]
    for round_num, c in strategy.consensus.items():
        if round_num == 2:  # the readjustment round (4 = num_rounds: no readjustment)
            assert c.pairwise < 1 and c.with_global < 1
        else:
            assert c.pairwise == c.with_global == 1.0
    # the readjusted uploads carry their positions: round 2 sends more than round 1 or 3
    up = history.metric("bytes_up")
    assert up[1] > max(up[0], up[2])
