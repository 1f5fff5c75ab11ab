"""Update compression strategies: top-k, random-k, STC, error feedback; a rule per test."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from fl_setup import CLIENTS, CONFIG, TEST, mlp

import prunefl_lite as pfl
from prunefl_lite import round as fl_round
from prunefl_lite.pruning.compression import (
    STC,
    RandomKUpdates,
    TopKUpdates,
    kept_count,
    random_k,
    ternary,
    top_k,
)

CONFIG3 = dataclasses.replace(CONFIG, num_rounds=3, clients_per_round=3)


def fake_client(global_weights, client_id=0, round_num=1, state=None):
    """What `client_step` reads of a `round.ClientRound`."""
    return SimpleNamespace(global_weights=global_weights, client_id=client_id,
                           round_num=round_num, seed=0, state={} if state is None else state)


def test_top_k_keeps_the_k_largest_magnitudes():
    update = np.random.default_rng(0).normal(size=(20, 30)).astype(np.float32)
    out = top_k(update, 0.9)
    k = kept_count(update.size, 0.9)
    assert np.count_nonzero(out) == k == 60
    threshold = np.sort(np.abs(update).ravel())[-k]
    assert np.array_equal(out != 0, np.abs(update) >= threshold)
    assert np.array_equal(out[out != 0], update[out != 0])
    assert out.dtype == update.dtype and out.shape == update.shape


def test_kept_count_keeps_at_least_one():
    assert kept_count(5, 0.99) == 1
    assert kept_count(200, 0.95) == 10


def test_error_feedback_residual_is_exactly_what_was_not_sent():
    rng = np.random.default_rng(1)
    strategy = TopKUpdates(0.8, error_feedback=True)
    state, g = {}, [rng.normal(size=(5, 4)).astype(np.float32)]
    sent_total = np.zeros((5, 4), np.float32)
    update_total = np.zeros((5, 4), np.float32)
    for round_num in range(1, 4):
        old = state.get("residual0", np.zeros((5, 4), np.float32)).copy()
        update = rng.normal(size=(5, 4)).astype(np.float32)
        upload, report = strategy.client_step(fake_client(g, round_num=round_num, state=state),
                                              [g[0] + update])
        sent = upload[0] - g[0]
        assert report is None
        assert np.count_nonzero(sent) == kept_count(20, 0.8)
        assert np.array_equal(state["residual0"], (g[0] + update - g[0]) + old - sent)
        sent_total += sent
        update_total += g[0] + update - g[0]
    np.testing.assert_allclose(sent_total + state["residual0"], update_total, atol=1e-5)


def test_without_error_feedback_nothing_is_kept_and_small_entries_never_travel():
    strategy = TopKUpdates(0.5, error_feedback=False)
    state, g = {}, [np.zeros(4, np.float32)]
    for _ in range(3):
        upload, _ = strategy.client_step(fake_client(g, state=state),
                                         [np.array([0.1, -3.0, 2.0, 0.5], np.float32)])
        assert upload[0].tolist() == [0.0, -3.0, 2.0, 0.0]
    assert state == {}


def test_error_feedback_sends_a_small_entry_once_its_residual_has_grown():
    strategy = TopKUpdates(0.5, error_feedback=True)
    state, g = {}, [np.zeros(4)]
    update = np.array([1.0, 0.4, 0.9, 0.1])
    sent = [strategy.client_step(fake_client(g, state=state), [update])[0][0]
            for _ in range(3)]
    # residual of entry 1: 0.4, 0.8, then 1.2 beats 0.9 (hand computation)
    np.testing.assert_allclose(sent, [[1.0, 0.0, 0.9, 0.0], [1.0, 0.0, 0.9, 0.0],
                                      [1.0, 1.2, 0.0, 0.0]])
    np.testing.assert_allclose(state["residual0"], [0.0, 0.0, 0.9, 0.3])


def test_random_k_with_scaling_is_unbiased():
    update = np.linspace(0.5, 2, 10) * np.resize([1, -1], 10)  # no zero entry
    rng = np.random.default_rng(3)
    draws = np.array([random_k(update, 0.7, rng, unbiased=True) for _ in range(20000)])
    assert set(np.count_nonzero(draws, axis=1)) == {3}
    # each entry is size/k * u with probability k/size: standard error of the mean below
    sem = np.abs(update) * np.sqrt(10 / 3 - 1) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - update) <= 5 * sem + 1e-12)
    unscaled = np.array([random_k(update, 0.7, rng) for _ in range(2000)]).mean(axis=0)
    np.testing.assert_allclose(unscaled, 0.3 * update, atol=0.1)


def test_random_k_positions_come_from_seed_round_and_client():
    strategy = RandomKUpdates(0.9, error_feedback=False)
    g = [np.zeros(100, np.float32)]
    w = [np.arange(1, 101, dtype=np.float32)]

    def positions(client_id, round_num):
        upload, _ = strategy.client_step(fake_client(g, client_id, round_num), w)
        return tuple(np.flatnonzero(upload[0]))

    assert positions(1, 1) == positions(1, 1)
    assert len({positions(1, 1), positions(2, 1), positions(1, 2)}) == 3


def test_stc_sends_two_values_plus_minus_the_mean_kept_magnitude():
    update = np.random.default_rng(4).normal(size=300)
    out = ternary(update, 0.9)
    kept = top_k(update, 0.9)
    mu = np.abs(kept[kept != 0]).mean()
    assert np.count_nonzero(out) == 30
    assert set(np.round(out[out != 0], 12)) == {round(mu, 12), round(-mu, 12)}
    assert np.array_equal(np.sign(out), np.sign(kept))


@pytest.mark.parametrize("make, error, message", [
    (lambda: TopKUpdates(1.0), ValueError, r"sparsity must be a number in \[0, 1\), got 1.0"),
    (lambda: TopKUpdates(-0.1), ValueError, r"sparsity must be a number in \[0, 1\), got -0.1"),
    (lambda: RandomKUpdates(True), TypeError, r"sparsity must be a number in \[0, 1\), got True"),
    (lambda: STC(0.9, value_bits=12), ValueError, r"value_bits must be one of 32, 16, 8, got 12"),
    (lambda: TopKUpdates(0.9, value_bits=16.0), TypeError,
     r"value_bits must be an integer, got 16.0"),
])
def test_validation_names_the_parameter_range_and_value(make, error, message):
    with pytest.raises(error, match=message):
        make()


def uploads_of(strategy):
    """The uploads of round 1 (3 clients), as the round encodes them."""
    trainer, weights = fl_round.build_trainer(mlp, strategy, CONFIG3)
    rows = np.arange(len(CLIENTS[0][1]))
    trainer.set_data(*CLIENTS[0])
    plan = fl_round.RoundPlan(1, np.array([0]), np.array([0]), None, {})
    uploads, failures = fl_round.local_update(trainer, strategy, plan, [0], [rows], weights,
                                              CONFIG3)
    assert not failures
    return weights, uploads[0]


@pytest.mark.parametrize("bits", [32, 16])
def test_a_top_k_upload_travels_as_a_sparse_update(bits):
    weights, dense = uploads_of(pfl.strategy.NoPruning())
    _, upload = uploads_of(TopKUpdates(0.9, value_bits=bits))
    for w, g in zip(upload.weights, weights):
        assert np.count_nonzero(w - g) <= kept_count(g.size, 0.9)
    # positions + values of 10 % of the entries: well under a third of the dense payload
    assert len(upload.payload) < len(dense.payload) / 3


@pytest.mark.parametrize("strategy", [
    pytest.param(TopKUpdates(0.9), id="topk-ef"),
    pytest.param(RandomKUpdates(0.9, unbiased=True), id="randk-ef"),
    pytest.param(STC(0.9), id="stc"),
    pytest.param(TopKUpdates(0.9, error_feedback=False, value_bits=16), id="topk-16")])
def test_a_compressed_round_moves_few_entries_and_sends_fewer_bytes(strategy):
    config = dataclasses.replace(CONFIG3, num_rounds=1)
    dense = pfl.run_fedavg(mlp, CLIENTS, TEST, config)
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, config, pruning=strategy)
    assert history.total("bytes_up") < dense.total("bytes_up") / 3
    # the broadcast stays dense (only biases that no upload has touched yet are zeros)
    assert history.total("bytes_down") > 0.9 * dense.total("bytes_down")
    _, initial = fl_round.build_trainer(mlp, strategy, config)
    for w, g in zip(history.final_weights, initial):
        changed = np.count_nonzero(w != g)  # 3 clients, each moves at most its k entries
        assert 0 < changed <= 3 * kept_count(g.size, 0.9)
