"""DynamicPruning (sparse from round 1, server-side prune-and-regrow from client reports) and
ServerOptimizer."""

import dataclasses

import numpy as np
import pytest
from fl_setup import CLIENTS, CONFIG, TEST, mlp, without_seconds

import prunefl_lite as pfl
from prunefl_lite.pruning import DynamicPruning, ServerOptimizer, erk_densities

CONFIG = dataclasses.replace(CONFIG, num_rounds=6)


def regrowing(**kwargs):
    """A strategy that swaps masks in rounds 2 and 4 (end at round 5 of 6)."""
    return DynamicPruning(0.9, regrow_every=2, regrow_fraction=0.5, end_fraction=5 / 6,
                          **kwargs)


def traced(strategy):
    """Record, per round, the masks handed out and the global weights after finish_round."""
    strategy.log = []
    round_masks, finish_round = strategy.round_masks, strategy.finish_round

    def masks_hook(round_num, weights):
        masks = round_masks(round_num, weights)
        strategy.log.append({"masks": masks, "copy": [None if m is None else m.copy()
                                                      for m in masks]})
        return masks

    def finish_hook(round_num, weights):
        weights = finish_round(round_num, weights)
        strategy.log[-1]["weights"] = [w.copy() for w in weights]
        return weights

    strategy.round_masks, strategy.finish_round = masks_hook, finish_hook
    return strategy


@pytest.fixture(scope="module")
def regrow_run():
    strategy = traced(regrowing())
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=strategy)
    return strategy, history


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("kwargs, error, message", [
    ({"target_sparsity": 1.0}, ValueError, "target_sparsity must be"),
    ({"regrow_every": 0}, ValueError, "regrow_every must be an integer >= 1"),
    ({"regrow_fraction": 1.0}, ValueError, "regrow_fraction must be"),
    ({"end_fraction": 0.0}, ValueError, "end_fraction must be"),
    ({"report_factor": 0}, ValueError, "report_factor must be an integer >= 1"),
    ({"distribution": "random"}, ValueError, "distribution must be one of"),
    ({"density_scaling": 1.5}, ValueError, "density_scaling must be"),
    ({"server_optimizer": "adam"}, TypeError, "server_optimizer must be None or a"),
    ({"regrow_every": np.float64(2)}, TypeError, "regrow_every must be an integer"),
    ({"target_sparsity": True}, TypeError, "target_sparsity must be"),
])
def test_dynamic_pruning_refuses_bad_arguments(kwargs, error, message):
    arguments = {"target_sparsity": 0.9, **kwargs}
    with pytest.raises(error, match=message):
        DynamicPruning(**arguments)


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "rmsprop"}, "name must be one of"),
    ({"learning_rate": 0.0}, "learning_rate must be"),
    ({"momentum": 1.0}, "momentum must be"),
    ({"beta2": 1.0}, "beta2 must be"),
    ({"tau": 0.0}, "tau must be"),
])
def test_server_optimizer_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ServerOptimizer(**kwargs)


@pytest.mark.parametrize("shapes, sparsity, message", [
    ([], 0.5, "shapes must hold at least one"),
    ([(4, 4)], 1.0, "target_sparsity must be"),
])
def test_erk_densities_refuses_bad_arguments(shapes, sparsity, message):
    with pytest.raises(ValueError, match=message):
        erk_densities(shapes, sparsity)


# ------------------------------------------------------------------ ERK and the initial mask
def test_erk_keeps_the_target_share_and_favours_small_layers():
    shapes = [(64, 200), (200, 200), (200, 10)]
    densities = erk_densities(shapes, 0.9)
    sizes = [a * b for a, b in shapes]
    assert np.dot(densities, sizes) / sum(sizes) == pytest.approx(0.1)
    assert densities[2] > densities[0] > densities[1]


def test_erk_caps_a_layer_at_dense_and_rescales_the_rest():
    densities = erk_densities([(2, 2), (100, 100)], 0.5)
    assert densities[0] == 1.0
    assert (4 + densities[1] * 10_000) / 10_004 == pytest.approx(0.5)


@pytest.mark.parametrize("distribution", ["erk", "uniform"])
def test_start_masks_each_kernel_at_its_density_and_rescales_it(distribution):
    model = mlp()
    weights = model.get_weights()
    strategy = DynamicPruning(0.9, regrow_fraction=0.0, distribution=distribution)
    masked = strategy.start(weights, CONFIG)
    kernels = [i for i, w in enumerate(weights) if w.ndim == 2]
    shapes = [weights[i].shape for i in kernels]
    expected = (erk_densities(shapes, 0.9) if distribution == "erk" else [0.1] * len(kernels))
    for i, density in zip(kernels, expected):
        kept = strategy.masks[i]
        assert kept.mean() == pytest.approx(density, abs=1 / kept.size)
        assert np.all(masked[i][~kept] == 0)
        np.testing.assert_allclose(masked[i][kept], weights[i][kept] / np.sqrt(kept.mean()),
                                   rtol=1e-6)
    for i in set(range(len(weights))) - set(kernels):  # biases: untouched, no mask
        assert strategy.masks[i] is None and np.array_equal(masked[i], weights[i])


# ------------------------------------------------------------------ inside run_fedavg
def test_every_round_is_at_the_target_sparsity(regrow_run):
    strategy, history = regrow_run
    assert min(history.metric("sparsity")) >= 0.9 - 1e-3
    for entry in strategy.log:  # each kernel keeps its own density through the swaps
        for m, first in zip(entry["masks"], strategy.log[0]["masks"]):
            if m is not None:
                assert m.sum() == first.sum()


def test_masked_weights_stay_exactly_zero_and_kept_ones_are_non_zero(regrow_run):
    # (inside a round, uploads are encoded against the round's masks, which refuses any
    # non-zero where a mask is False: the run itself checks local training)
    strategy, _ = regrow_run
    for index, entry in enumerate(strategy.log):
        following = (strategy.log[index + 1]["masks"] if index + 1 < len(strategy.log)
                     else strategy.masks)  # the mask in force after this round
        for w, m in zip(entry["weights"], following):
            if m is not None:  # regrown weights too: non-zero, so a payload carries them
                assert np.all(w[~m] == 0) and np.count_nonzero(w[m]) == m.sum()


def test_the_mask_changes_only_in_regrowth_rounds_and_handed_out_lists_stay_put(regrow_run):
    strategy, _ = regrow_run
    assert sorted(strategy.swapped) == [2, 4] and all(n > 0 for n in strategy.swapped.values())
    changed = []
    for r in range(1, len(strategy.log)):
        before, now = strategy.log[r - 1]["masks"], strategy.log[r]["masks"]
        changed.append(r if any(m is not None and not np.array_equal(m, n)
                                for m, n in zip(before, now)) else None)
        # what the round loop was given (and keeps as what clients hold) was never edited
        assert all(np.array_equal(a, b) for a, b in zip(strategy.log[r - 1]["masks"],
                                                        strategy.log[r - 1]["copy"])
                   if a is not None)
    assert [r + 1 for r in changed if r] == [3, 5]  # swapped after rounds 2 and 4


def test_reports_are_uploaded_and_counted_in_regrowth_rounds_only(regrow_run):
    strategy, history = regrow_run
    report_bytes = history.metric("bytes_report")
    assert [r for r, b in enumerate(report_bytes, 1) if b] == [2, 4]
    assert sorted(strategy.signal_bytes) == [2, 4]
    assert strategy.total_signal_bytes() == sum(report_bytes) > 0
    assert strategy.total_signal_bytes() < 0.5 * history.total("bytes_up")
    # the same run without regrowth uploads the same weights' bytes, minus the reports
    fixed = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=DynamicPruning(
        0.9, regrow_every=2, regrow_fraction=0.0, end_fraction=5 / 6))
    assert fixed.metric("bytes_report") == [0] * CONFIG.num_rounds
    assert history.metric("bytes_up")[0] == fixed.metric("bytes_up")[0]  # round 1: no report


def test_a_report_is_computed_on_the_clients_own_data_at_pruned_positions():
    strategy = regrowing()
    weights = [w.numpy() for w in mlp().trainable_variables]
    weights = strategy.start(weights, dataclasses.replace(CONFIG, num_rounds=6))
    masks = strategy.round_masks(2, weights)
    instructions = strategy.client_instructions(2)
    grads = [np.full(w.shape, 0.5, np.float32) for w in weights]
    grads[0][~masks[0]] = np.arange(1, (~masks[0]).sum() + 1)  # ranked by |gradient|
    client = pfl.round.ClientRound(2, 0, weights, masks, instructions, 10, lambda w: grads)
    report = strategy.client_report(client, weights, weights)
    k = instructions["report_counts"][0]
    assert k > 0 and set(report) == {f"k{i}" for i, m in enumerate(masks) if m is not None}
    sent = report["k0"]
    assert np.count_nonzero(sent) == k and not np.any(sent[masks[0]])  # pruned positions only
    assert sorted(sent[sent != 0].tolist())[-1] == (~masks[0]).sum()  # the largest gradient
    assert strategy.client_instructions(1) == {}  # not a regrowth round: nothing asked


def test_sparse_from_round_one_sends_far_fewer_bytes_than_dense():
    dense = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG)
    sparse = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG,
                            pruning=DynamicPruning(0.9, regrow_fraction=0.0))
    for direction in ("bytes_up", "bytes_down"):
        assert dense.total(direction) / sparse.total(direction) > 4


def test_dynamic_runs_reproduce():
    a = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=regrowing())
    b = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=regrowing())
    assert without_seconds(a) == without_seconds(b)
    assert all(np.array_equal(x, y) for x, y in zip(a.final_weights, b.final_weights))


def test_nothing_pruned_and_no_optimiser_is_dense_fedavg():
    dense = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG)
    same = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG,
                          pruning=DynamicPruning(0.0, regrow_fraction=0.0))
    for x, y in zip(dense.final_weights, same.final_weights):
        np.testing.assert_allclose(x, y, atol=1e-6)


# ------------------------------------------------------------------ server optimisers
def test_fedavgm_without_momentum_and_unit_rate_is_the_average():
    opt = ServerOptimizer("sgd", learning_rate=1.0, momentum=0.0)
    g, avg = [np.array([1.0, 2.0])], [np.array([3.0, -1.0])]
    assert opt.step(g, avg, [None])[0].tolist() == [3.0, -1.0]


def test_fedadam_first_step_moves_each_weight_by_about_its_rate():
    opt = ServerOptimizer("adam", learning_rate=0.01, momentum=0.9, beta2=0.99, tau=1e-9)
    g, avg = [np.zeros(3)], [np.array([0.5, -2.0, 1e-3])]
    step = opt.step(g, avg, [None])[0]
    # m = 0.1 d, sqrt(s) = 0.1 |d|: the step is lr * sign(d), whatever |d|
    np.testing.assert_allclose(step, [0.01, -0.01, 0.01], rtol=1e-5)


def test_server_state_is_reset_where_the_mask_is_false():
    opt = ServerOptimizer("sgd", momentum=0.9)
    mask = np.array([True, False])
    g = opt.step([np.zeros(2)], [np.ones(2)], [mask])
    g = opt.step([np.zeros(2)], [np.zeros(2)], [np.ones(2, bool)])
    assert g[0].tolist() == [0.9, 0.0]  # only the kept weight carries momentum


def test_dense_with_fedavgm_differs_from_plain_fedavg_and_learns():
    plain = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG)
    momentum = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=DynamicPruning(
        0.0, regrow_fraction=0.0, server_optimizer=ServerOptimizer("sgd", momentum=0.9)))
    assert not np.allclose(plain.final_weights[0], momentum.final_weights[0])
    assert momentum.metric("accuracy")[-1] > momentum.metric("accuracy")[0]


def test_density_scaling_multiplies_each_kernels_server_step_by_a_power_of_its_density():
    weights = mlp().get_weights()
    strategy = DynamicPruning(0.9, regrow_fraction=0.0, density_scaling=1.0)
    start = strategy.start(weights, CONFIG)
    strategy.round_masks(1, start)
    update = [w + np.where(m, 0.01, 0.0) if m is not None else w + 0.01
              for w, m in zip(start, strategy.masks)]
    stepped = strategy.aggregate([update], [1])
    for s, w, m in zip(stepped, start, strategy.masks):
        factor = 1.0 if m is None else 1 / m.mean()
        np.testing.assert_allclose((s - w)[m if m is not None else ...], 0.01 * factor,
                                   rtol=1e-3)
