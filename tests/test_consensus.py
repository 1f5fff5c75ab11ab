"""Mask consensus: Jaccard overlaps of kept sets, and the per-round recorder; a rule per test."""

import dataclasses

import numpy as np
import pytest
from fl_setup import CLIENTS, CONFIG, TEST, mlp

import prunefl_lite as pfl
from prunefl_lite.pruning.consensus import RecordConsensus, jaccard, kept_set, mask_consensus

CONFIG3 = dataclasses.replace(CONFIG, num_rounds=3, clients_per_round=3)


def test_jaccard_is_intersection_over_union():
    a = np.array([1, 1, 1, 0, 0], bool)
    b = np.array([0, 1, 1, 1, 0], bool)
    assert jaccard(a, b) == 2 / 4
    assert jaccard(a, a) == 1.0 and jaccard(a, ~a) == 0.0
    assert jaccard(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


def test_jaccard_refuses_different_shapes():
    with pytest.raises(ValueError, match=r"b must have a's shape \(3,\), got \(4,\)"):
        jaccard(np.ones(3, bool), np.ones(4, bool))


def test_kept_set_concatenates_the_kernels_non_zeros():
    arrays = [np.array([[0.0, 1.0], [2.0, 0.0]]), np.array([0.0, 3.0]), None,
              np.array([[5.0]])]
    assert kept_set(arrays).tolist() == [False, True, True, False, True]
    assert kept_set(arrays, kernels_only=False).tolist() == [False, True, True, False,
                                                              False, True, True]


def test_mask_consensus_against_a_hand_computation():
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([1, 0, 1, 0], bool)
    c = np.array([1, 1, 0, 0], bool)
    result = mask_consensus([a, b, c], global_set=a)
    # pairs: (a, b) 1/3, (a, c) 1, (b, c) 1/3; with global: 1, 1/3, 1
    assert result.pairwise == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)
    assert result.with_global == pytest.approx((1 + 1 / 3 + 1) / 3)
    assert result.num_clients == 3
    assert mask_consensus([a]).pairwise == 1.0 and mask_consensus([a]).with_global is None


def test_mask_consensus_refuses_no_clients():
    with pytest.raises(ValueError, match="client_sets must hold at least one kept set, got none"):
        mask_consensus([])


def test_clients_under_one_global_mask_agree_and_tfmot_clients_do_not():
    shared = RecordConsensus(pfl.pruning.GlobalPruning(0.8, end_round=2))
    pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3, pruning=shared)
    assert sorted(shared.per_round) == [1, 2, 3]
    assert all(c.pairwise == 1.0 and c.with_global == 1.0 for c in shared.per_round.values())
    own = RecordConsensus(pfl.pruning.ClientPruning(0.6, end_round=2))
    pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3, pruning=own)
    # while the schedule ramps, each client prunes by its own magnitudes
    assert min(c.pairwise for c in own.per_round.values()) < 1.0
