"""Width sub-models: masks per width, slice-wise averaging, physical slicing, the strategies."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from fl_setup import CLIENTS, CONFIG, TEST, mlp, without_seconds

import prunefl_lite as pfl
from prunefl_lite.pruning import (
    FederatedDropout,
    FjORD,
    HeteroFL,
    slice_average,
    submodel,
    unit_masks,
    width_layout,
    width_masks,
)

CONFIG3 = dataclasses.replace(CONFIG, num_rounds=3, clients_per_round=3)
FLEET = [0.25, 0.5, 1.0, 0.25, 0.5, 1.0, 0.25, 1.0]  # one width per client of fl_setup


def small_cnn():
    return tf.keras.Sequential([
        tf.keras.Input((6, 6, 1)),
        tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        tf.keras.layers.MaxPooling2D(2),
        tf.keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dropout(0.1),
        tf.keras.layers.Dense(6, activation="relu"),
        tf.keras.layers.Dense(3),
    ])


# --- slice-wise averaging ---------------------------------------------------------------------


def test_slice_average_equals_a_hand_computation():
    w = [[np.array([1.0, 2.0, 3.0, 4.0], np.float32)],
         [np.array([5.0, 6.0, 0.0, 0.0], np.float32)],
         [np.array([9.0, 0.0, 0.0, 0.0], np.float32)]]
    m = [[np.array([1, 1, 1, 1], bool)], [np.array([1, 1, 0, 0], bool)],
         [np.array([1, 0, 0, 0], bool)]]
    n = [2, 1, 1]
    avg = slice_average(w, n, m, [np.array([-1.0, -1.0, -1.0, -1.0], np.float32)])
    # entry 0: all three hold it (2*1 + 5 + 9) / 4; entry 1: clients 0, 1 (2*2 + 6) / 3;
    # entries 2, 3: only client 0 holds them, so they keep client 0's values
    assert avg[0].tolist() == pytest.approx([16 / 4, 10 / 3, 3.0, 4.0])
    assert avg[0].dtype == np.float32


def test_slice_average_keeps_the_global_value_where_no_slice_holds_and_counts_held_zeros():
    w = [[np.array([0.0, 0.0])], [np.array([4.0, 0.0])]]
    m = [[np.array([True, False])], [np.array([True, False])]]
    avg = slice_average(w, [1, 1], m, [np.array([7.0, 7.0])])
    assert avg[0].tolist() == [2.0, 7.0]  # the held zero counts; entry 1 keeps 7
    # keepers averaging decides by non-zero values and gives 4 for entry 0
    assert pfl.server.keepers_average(w, [1, 1])[0].tolist() == [4.0, 0.0]


def test_slice_average_with_full_masks_is_fedavg():
    rng = np.random.default_rng(0)
    w = [[rng.normal(size=(3, 2)), rng.normal(size=2)] for _ in range(3)]
    avg = slice_average(w, [1, 2, 3], [None] * 3, [np.zeros((3, 2)), np.zeros(2)])
    ref = pfl.fedavg.weighted_average(w, [1, 2, 3])
    assert all(np.allclose(a, b) for a, b in zip(avg, ref))


@pytest.mark.parametrize("masks, fallback, message", [
    ([[np.ones(2, bool)]], [np.zeros(2)], "one mask list per client"),
    ([[np.ones(2, bool)], [np.ones(3, bool)]], [np.zeros(2)], "mask shape"),
    ([[np.ones(2, bool)], [np.ones(2, bool)]], [], "fallback must hold one array"),
])
def test_slice_average_refuses_mismatches(masks, fallback, message):
    w = [[np.zeros(2)], [np.zeros(2)]]
    with pytest.raises(ValueError, match=message):
        slice_average(w, [1, 1], masks, fallback)


# --- masks per width and physical slicing -----------------------------------------------------


@pytest.mark.parametrize("width, kept", [(0.25, 8), (0.5, 16), (0.3, 10), (1.0, 32)])
def test_width_masks_of_the_2nn_keep_the_first_units(width, kept):
    masks = width_masks(mlp(), width)  # 64 -> 32 -> 32 -> 10
    assert [int(m.sum()) for m in masks] == [64 * kept, kept, kept * kept, kept, kept * 10, 10]
    assert masks[0][:, :kept].all() and not masks[0][:, kept:].any()
    assert masks[4][:kept].all() and not masks[4][kept:].any()


@pytest.mark.parametrize("width", [0.25, 0.5, 1.0])
def test_submodel_computes_the_masked_model(width):
    model = small_cnn()
    x = np.random.default_rng(1).normal(size=(5, 6, 6, 1)).astype(np.float32)
    masked = tf.keras.models.clone_model(model)
    masked.set_weights([w * m for w, m in zip(model.get_weights(), width_masks(model, width))])
    small = submodel(model, width)
    np.testing.assert_allclose(small(x).numpy(), masked(x).numpy(), rtol=1e-5, atol=1e-5)
    assert width == 1.0 or small.count_params() < model.count_params()


def test_submodel_with_random_units_computes_the_masked_model():
    model = small_cnn()
    kept = [np.array([1, 0, 1, 1, 0, 0, 1, 0], bool), np.array([0, 1, 1, 0], bool),
            np.array([1, 1, 0, 0, 1, 0], bool)]
    masked = tf.keras.models.clone_model(model)
    masked.set_weights([w * m for w, m in zip(model.get_weights(), unit_masks(model, kept))])
    x = np.random.default_rng(2).normal(size=(4, 6, 6, 1)).astype(np.float32)
    np.testing.assert_allclose(submodel(model, kept=kept)(x).numpy(), masked(x).numpy(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [small_cnn, mlp])
def test_the_layout_read_from_the_weights_gives_the_models_masks(make):
    model = make()
    for width in (0.25, 0.5, 1.0):
        from_model = width_masks(model, width)
        from_weights = width_masks(model.get_weights(), width)
        assert all(np.array_equal(a, b) for a, b in zip(from_model, from_weights))


@pytest.mark.parametrize("weights, message", [
    ([np.zeros(3)], r"weight 0 must be a Dense \(2-D\) or Conv2D \(4-D\) kernel"),
    ([np.zeros((4, 3)), np.zeros(3), np.zeros(3), np.zeros((3, 2))], "weight 2 must be"),
    ([np.zeros((4, 3)), np.zeros(3), np.zeros((5, 2))], "weight 2 .* must read the 3 units"),
])
def test_weights_the_sub_models_cannot_read_are_refused_by_index(weights, message):
    with pytest.raises(ValueError, match=message):
        HeteroFL([1.0]).masks_for(weights, 1, 0, seed=0)


def test_flatten_rows_follow_their_channel():
    masks = width_masks(small_cnn(), 0.5)  # conv_2: 4 filters -> keeps 2; 3x3 positions
    dense_kernel = masks[4]  # (36, 6): row (h*3 + w)*4 + c
    rows = dense_kernel.any(axis=1)
    assert rows.tolist() == [c < 2 for _ in range(9) for c in range(4)]


# --- validation --------------------------------------------------------------------------------


def with_layer(layer):
    return tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(4), layer,
                                tf.keras.layers.Dense(2)])


@pytest.mark.parametrize("model, error, message", [
    (with_layer(tf.keras.layers.BatchNormalization(name="bn")), ValueError, "'bn'"),
    (with_layer(tf.keras.layers.LayerNormalization(name="ln")), ValueError, "'ln'"),
    (with_layer(tf.keras.layers.Dense(3, name="frozen", trainable=False)), ValueError,
     "'frozen' must be trainable"),
    (tf.keras.Model(*(lambda i: (i, tf.keras.layers.Dense(2)(i)))(tf.keras.Input((3,)))),
     TypeError, "tf.keras.Sequential"),
])
def test_models_the_sub_models_cannot_slice_are_refused_by_layer(model, error, message):
    with pytest.raises(error, match=message):
        width_layout(model)
    with pytest.raises(error, match=message):
        HeteroFL([0.5], model=model)


@pytest.mark.parametrize("make, error, message", [
    (lambda: HeteroFL([]), ValueError, "capacities must be a non-empty sequence"),
    (lambda: HeteroFL(0.5), ValueError, "capacities must be a non-empty sequence"),
    (lambda: HeteroFL([0.5, 0.0]), ValueError, r"capacities\[1\] must be a number in "
     r"\(0, 1\], got 0.0"),
    (lambda: HeteroFL([1.5]), ValueError, r"capacities\[0\] .* got 1.5"),
    (lambda: HeteroFL([True]), TypeError, r"capacities\[0\] .* got True"),
    (lambda: FjORD([0.1], widths=(0.25, 1.0)), ValueError,
     r"capacities\[0\] must be >= the smallest width 0.25, got 0.1"),
    (lambda: FjORD([1.0], widths=()), ValueError, "widths must be a non-empty"),
    (lambda: FjORD([1.0], widths=(0.5, 2)), ValueError, r"widths\[1\] .* got 2"),
    (lambda: FederatedDropout(0), ValueError, r"keep_fraction must be a number in "
     r"\(0, 1\], got 0"),
    (lambda: width_masks(mlp, 0.0), ValueError, r"width must be a number in \(0, 1\]"),
    (lambda: unit_masks(mlp, [np.ones(32, bool)]), ValueError, "one array per hidden layer"),
    (lambda: unit_masks(mlp, [np.ones(32, bool), np.ones(5, bool)]), ValueError,
     r"kept\[1\] \(layer 'hidden_2'\) must have 32 entries"),
    (lambda: submodel(mlp(), 0.5, kept=[]), ValueError, "exactly one of width and kept"),
    (lambda: HeteroFL([0.5]).width_of(3), ValueError,
     "client_id must be < 1 .* got 3"),
])
def test_arguments_are_validated(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_a_strategy_without_a_model_serves_any_2nn():
    for hidden in (16, 32):
        weights = pfl.models.mlp_2nn((8, 8, 1), 10, hidden).get_weights()
        masks = HeteroFL(FLEET).masks_for(weights, 1, 0, seed=0)  # client 0: width 1/4
        assert int(masks[1].sum()) == hidden // 4


def test_a_run_with_another_model_is_refused():
    def other():
        return pfl.models.mlp_2nn(pfl.data.load_dataset("digits").input_shape, 10, 16)

    with pytest.raises(ValueError, match="the run's model must be the one"):
        pfl.run_fedavg(other, CLIENTS, TEST, CONFIG3, pruning=HeteroFL(FLEET, model=mlp))


# --- the strategies in a run --------------------------------------------------------------------


class Recording(HeteroFL):
    """HeteroFL that keeps what the server saw, to check the aggregate by hand."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def receive(self, round_num, uploads):
        super().receive(round_num, uploads)
        self.seen.append((round_num, [np.copy(g) for g in self._global], uploads))


def test_heterofl_uploads_stay_in_their_slice_and_the_server_averages_slice_wise():
    strategy = Recording(FLEET)
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3, pruning=strategy)
    round_num, global_weights, uploads = strategy.seen[-1]
    masks = []
    for u in uploads:
        m = width_masks(mlp, FLEET[u.client_id])
        assert all(not np.any(w[~mk]) for w, mk in zip(u.weights, m))  # zero outside
        masks.append(m)
    hand = slice_average([u.weights for u in uploads], [u.num_examples for u in uploads],
                         masks, global_weights)
    assert all(np.array_equal(a, b) for a, b in zip(hand, history.final_weights))
    widest = max(FLEET[u.client_id] for u in uploads)
    beyond = ~width_masks(mlp, widest)[0]  # held by no upload of the last round
    assert np.array_equal(history.final_weights[0][beyond], global_weights[0][beyond])


def recording(base):
    """`base` with a server that keeps what it saw (global weights and uploads per round)."""

    class Recorded(base):
        def receive(self, round_num, uploads):
            super().receive(round_num, uploads)
            self.seen = [np.copy(g) for g in self._global], uploads

    return Recorded


def fjord_masks(strategy, round_num, k):
    return width_masks(mlp, strategy.round_width(round_num, k, CONFIG3.seed))


def dropout_masks(strategy, round_num, k):
    layout = width_layout(mlp())
    return unit_masks(layout, strategy.client_kept(layout, round_num, k, CONFIG3.seed))


@pytest.mark.parametrize("base, args, expected_masks", [
    (FjORD, (FLEET,), fjord_masks),
    (FederatedDropout, (0.5,), dropout_masks),
])
def test_fjord_and_federated_dropout_average_over_their_round_slices(base, args,
                                                                    expected_masks):
    strategy = recording(base)(*args)
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3, pruning=strategy)
    global_weights, uploads = strategy.seen  # the last round's
    masks = [expected_masks(strategy, CONFIG3.num_rounds, u.client_id) for u in uploads]
    for u, m in zip(uploads, masks):
        assert all(not np.any(w[~mk]) for w, mk in zip(u.weights, m))  # zero outside
    hand = slice_average([u.weights for u in uploads], [u.num_examples for u in uploads],
                         masks, global_weights)
    assert all(np.array_equal(a, b) for a, b in zip(hand, history.final_weights))


def test_heterofl_with_every_client_at_full_width_is_fedavg():
    fedavg = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3)
    full = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3, pruning=HeteroFL([1.0] * 8))
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(full.final_weights,
                                                            fedavg.final_weights))
    assert full.metric("accuracy") == pytest.approx(fedavg.metric("accuracy"), abs=0.01)


def test_heterofl_at_a_quarter_width_uploads_fewer_bytes():
    full = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3, pruning=HeteroFL([1.0] * 8))
    quarter = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3, pruning=HeteroFL([0.25] * 8))
    assert sum(quarter.metric("bytes_up")) < 0.3 * sum(full.metric("bytes_up"))
    assert not np.any(quarter.final_weights[0][:, 8:] != mlp_initial()[0][:, 8:])


def mlp_initial():
    from prunefl_lite import round as fl_round

    return fl_round.build_trainer(mlp, HeteroFL([1.0]), CONFIG3)[1]


def test_fjord_draws_nested_widths_within_capacity_from_seed_round_and_client():
    s = FjORD(FLEET, widths=(0.25, 0.5, 1.0))
    draws = {(k, r): s.round_width(r, k, seed=0) for k in range(8) for r in range(1, 40)}
    assert all(w <= FLEET[k] for (k, _), w in draws.items())
    assert {w for (k, _), w in draws.items() if FLEET[k] == 1.0} == {0.25, 0.5, 1.0}
    assert draws == {(k, r): FjORD(FLEET, widths=(0.25, 0.5, 1.0)).round_width(r, k, 0)
                     for k in range(8) for r in range(1, 40)}
    assert any(s.round_width(r, 2, 0) != s.round_width(r, 2, 1) for r in range(1, 40))


def test_federated_dropout_draws_a_subset_per_client_and_round():
    s = FederatedDropout(keep_fraction=0.5)
    layout = width_layout(mlp())
    a, b = s.client_kept(layout, 1, 0, seed=0), s.client_kept(layout, 1, 1, seed=0)
    assert [int(k.sum()) for k in a] == [16, 16]
    assert not all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(np.array_equal(x, y) for x, y in zip(a, s.client_kept(layout, 1, 0, seed=0)))
    assert not all(np.array_equal(x, y) for x, y in zip(a, s.client_kept(layout, 2, 0, seed=0)))


@pytest.mark.parametrize("make", [lambda: FjORD(FLEET), lambda: FederatedDropout(0.5)])
def test_runs_are_reproducible(make):
    a = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3, pruning=make())
    b = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3, pruning=make())
    assert without_seconds(a) == without_seconds(b)
    assert not np.array_equal(a.final_weights[0], mlp_initial()[0])  # it trained
