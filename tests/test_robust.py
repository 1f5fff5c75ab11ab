"""Robust aggregation rules against Flower 1.42's implementations, validation, and the strategy."""

import fl_setup
import numpy as np
import pytest
from flwr.server.strategy.aggregate import (
    aggregate_krum,
    aggregate_median,
    aggregate_trimmed_avg,
)

import prunefl_lite as pfl
from prunefl_lite import robust

SHAPES = [(5, 3), (3,), (3, 2), (2,)]


def random_clients(num_clients, seed, outliers=0, shift=20.0):
    """Random weight lists (float32) and counts; the first `outliers` clients shifted far off."""
    rng = np.random.default_rng(seed)
    lists = [[rng.normal(size=s).astype(np.float32) for s in SHAPES] for _ in range(num_clients)]
    for k in range(outliers):
        lists[k] = [w + np.float32(shift) for w in lists[k]]
    counts = rng.integers(1, 50, size=num_clients).tolist()
    return lists, counts


def close(ours, theirs):
    """Same shapes and values (float32 outputs against Flower's float64/float32 arithmetic)."""
    return len(ours) == len(theirs) and all(
        a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=1e-6)
        for a, b in zip(ours, theirs))


@pytest.mark.parametrize("num_clients", [1, 2, 5, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_median_equals_flower(num_clients, seed):
    lists, counts = random_clients(num_clients, seed)
    expected = aggregate_median(list(zip(lists, counts)))
    assert close(robust.coordinate_median(lists, counts), expected)


@pytest.mark.parametrize("num_clients", [3, 7, 10])
@pytest.mark.parametrize("trim_fraction", [0.0, 0.1, 0.2, 0.3, 0.45])
def test_trimmed_mean_equals_flower(num_clients, trim_fraction):
    lists, counts = random_clients(num_clients, seed=num_clients)
    expected = aggregate_trimmed_avg(list(zip(lists, counts)), trim_fraction)
    assert close(robust.trimmed_mean(lists, counts, trim_fraction), expected)


@pytest.mark.parametrize("num_clients,num_malicious", [(4, 0), (6, 1), (10, 3), (5, 3), (3, 2)])
@pytest.mark.parametrize("seed", [0, 1])
def test_krum_equals_flower(num_clients, num_malicious, seed):
    lists, counts = random_clients(num_clients, seed, outliers=num_malicious)
    expected = aggregate_krum(list(zip(lists, counts)), num_malicious, to_keep=0)
    assert close(robust.krum(lists, counts, num_malicious), expected)


@pytest.mark.parametrize("num_clients,num_malicious,num_selected",
                         [(6, 1, 2), (10, 2, 5), (10, 3, 7), (5, 0, 5)])
def test_weighted_multi_krum_equals_flower(num_clients, num_malicious, num_selected):
    lists, counts = random_clients(num_clients, seed=num_selected, outliers=num_malicious)
    expected = aggregate_krum(list(zip(lists, counts)), num_malicious, to_keep=num_selected)
    ours = robust.multi_krum(lists, counts, num_malicious, num_selected, weighted=True)
    assert close(ours, expected)


def test_unweighted_multi_krum_is_flowers_with_equal_counts():
    # Blanchard et al.'s plain mean of the selected clients is Flower's rule with equal counts.
    lists, counts = random_clients(10, seed=3, outliers=2)
    expected = aggregate_krum([(w, 1) for w in lists], 2, to_keep=5)
    assert close(robust.multi_krum(lists, counts, 2, 5), expected)
    weighted = robust.multi_krum(lists, counts, 2, 5, weighted=True)
    assert not close(robust.multi_krum(lists, counts, 2, 5), weighted)


def test_krum_score_definition():
    # Points on a line: each score sums the squared distances to the n - f - 2 nearest others.
    lists = [[np.array([x])] for x in (0.0, 1.0, 3.0, 10.0, 11.0)]
    assert robust.krum_scores(lists, num_malicious=1).tolist() == [1 + 9, 1 + 4, 4 + 9, 1 + 49,
                                                                   1 + 64]
    assert robust.krum_scores(lists, num_malicious=3).tolist() == [1, 1, 4, 1, 1]  # floor of 1


def test_robust_rules_resist_outliers_the_mean_does_not():
    lists, counts = random_clients(10, seed=4, outliers=2, shift=100.0)  # 2 far-off clients
    honest_mean = pfl.server.weighted_average(lists[2:], counts[2:])
    rules = {
        "median": robust.coordinate_median(lists, counts),
        "trimmed": robust.trimmed_mean(lists, counts, 0.2),
        "krum": robust.krum(lists, counts, 2),
        "multi_krum": robust.multi_krum(lists, counts, 2, 5),
    }
    gap = {k: max(np.max(np.abs(a - b)) for a, b in zip(v, honest_mean)) for k, v in rules.items()}
    mean_gap = max(np.max(np.abs(a - b)) for a, b in
                   zip(pfl.server.weighted_average(lists, counts), honest_mean))
    assert mean_gap > 10.0  # FedAvg is dragged by at least 10 % of the shift
    assert all(g < 5.0 for g in gap.values()), gap  # the robust rules stay with the honest


def test_outputs_keep_the_first_clients_dtype():
    lists, counts = random_clients(6, seed=5)
    for out in (robust.coordinate_median(lists, counts), robust.trimmed_mean(lists, counts),
                robust.krum(lists, counts, 1), robust.multi_krum(lists, counts, 1, 3)):
        assert [w.dtype for w in out] == [np.float32] * len(SHAPES)


def test_krum_returns_a_copy():
    lists, counts = random_clients(4, seed=6)
    out = robust.krum(lists, counts, 0)
    out[0][...] = 123.0
    assert not any(np.any(ws[0] == 123.0) for ws in lists)


ONE = [np.zeros(2)]


@pytest.mark.parametrize("call,message", [
    (lambda: robust.coordinate_median([], []), "weight_lists must hold at least one"),
    (lambda: robust.coordinate_median([ONE, ONE], [1]), "num_examples must have one count"),
    (lambda: robust.coordinate_median([ONE, [np.zeros(3)]], [1, 1]), "shapes must match"),
    (lambda: robust.trimmed_mean([ONE, [np.array([np.nan, 0])]], [1, 1]), "non-finite"),
    (lambda: robust.trimmed_mean([ONE], [1], trim_fraction=0.5), "trim_fraction must be"),
    (lambda: robust.trimmed_mean([ONE], [1], trim_fraction=-0.1), "trim_fraction must be"),
    (lambda: robust.trimmed_mean([ONE], [1], trim_fraction=np.float32(0.5)),
     "trim_fraction must be"),
    (lambda: robust.krum_scores([ONE], 0), "at least 2 clients"),
    (lambda: robust.krum_scores([ONE, ONE], 2), "num_malicious must be an integer in"),
    (lambda: robust.krum_scores([ONE, ONE], -1), "num_malicious must be an integer in"),
    (lambda: robust.multi_krum([ONE, ONE], [1, 1], 0, 3), "num_selected must be an integer in"),
    (lambda: robust.multi_krum([ONE, ONE], [1, 1], 0, 0), "num_selected must be an integer in"),
    (lambda: robust.multi_krum([ONE, ONE], [0, 1], 0, 1, weighted=True),
     "selected clients must have a positive sum"),
    (lambda: robust.RobustAggregation("mean"), "rule must be one of"),
    (lambda: robust.RobustAggregation("median", trim_fraction=0.1), "params must be among"),
    (lambda: robust.RobustAggregation("trimmed_mean", trim_fraction=0.6), "trim_fraction must"),
    (lambda: robust.RobustAggregation("krum", num_malicious=-1), "num_malicious must be"),
    (lambda: robust.RobustAggregation("multi_krum", num_selected=0), "num_selected must be"),
])
def test_validation(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_fractional_attacker_count_is_a_type_error():  # the package's rule: wrong type
    with pytest.raises(TypeError, match=r"num_malicious must be an integer in \[0, 1\], got 0.5"):
        robust.krum_scores([ONE, ONE], 0.5)


def test_strategy_caps_krum_parameters_when_clients_drop_out():
    strategy = robust.RobustAggregation("multi_krum", num_malicious=4, num_selected=6)
    lists, counts = random_clients(3, seed=7)
    assert close(strategy.aggregate(lists, counts), robust.multi_krum(lists, counts, 2, 3))
    assert close(strategy.aggregate(lists[:1], counts[:1]), lists[0])


def test_strategy_delegates_every_other_hook_to_the_pruning_strategy():
    inner = pfl.pruning.GlobalPruning(0.5)
    strategy = robust.RobustAggregation("median", pruning=inner)
    assert strategy.masked is inner.masked and strategy.inner is inner
    config = pfl.FedConfig(num_rounds=4)
    weights = [np.arange(1.0, 13.0).reshape(6, 2), np.ones(2)]
    assert strategy.start(weights, config) is weights
    pruned = strategy.finish_round(2, weights)  # the inner strategy re-prunes the kernel
    assert float(np.mean(pruned[0] == 0)) == inner.scheduled_sparsity(2) > 0
    assert all(np.array_equal(a, b) for a, b in zip(strategy.round_masks(3, pruned),
                                                     inner.round_masks(3, pruned)))


@pytest.mark.parametrize("rule,params", [("median", {}), ("trimmed_mean", {"trim_fraction": 0.25}),
                                         ("krum", {"num_malicious": 1}),
                                         ("multi_krum", {"num_malicious": 1, "num_selected": 2})])
def test_strategy_runs_in_the_round_loop(rule, params):
    strategy = robust.RobustAggregation(rule, **params)
    history = pfl.run_fedavg(fl_setup.mlp, fl_setup.CLIENTS, fl_setup.TEST, fl_setup.CONFIG,
                             pruning=strategy)
    assert history.metric("clients_completed") == [fl_setup.CONFIG.clients_per_round] * 3
    assert all(np.all(np.isfinite(w)) for w in history.final_weights)
    assert history.config["pruning"] == "RobustAggregation"


def test_krum_rule_with_global_pruning_keeps_the_mask():
    strategy = robust.RobustAggregation("krum", pruning=pfl.pruning.GlobalPruning(0.5),
                                        num_malicious=1)
    history = pfl.run_fedavg(fl_setup.mlp, fl_setup.CLIENTS, fl_setup.TEST, fl_setup.CONFIG,
                             pruning=strategy)
    assert history.metric("sparsity")[-1] == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("trim_fraction, error", [(True, TypeError), ("0.2", TypeError)])
def test_trim_fraction_must_be_a_number(trim_fraction, error):
    with pytest.raises(error, match=r"trim_fraction must be a number in \[0, 0.5\)"):
        robust.trimmed_mean([ONE], [1], trim_fraction=trim_fraction)


def test_numpy_trim_fraction_is_accepted():
    strategy = robust.RobustAggregation("trimmed_mean", trim_fraction=np.float32(0.34))
    ws = [[np.array([v])] for v in (1.0, 2.0, 3.0)]
    assert strategy.aggregate(ws, [1] * 3)[0].tolist() == [2.0]
