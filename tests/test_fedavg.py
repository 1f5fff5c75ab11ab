import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from fl_setup import CLIENTS, CONFIG, DS, TEST, mlp, without_seconds

import prunefl_lite as pfl
from prunefl_lite import compress, fedavg
from prunefl_lite import round as fl_round
from prunefl_lite.client import plan_local_steps


def test_same_seed_gives_identical_history_and_weights():
    a = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG)
    b = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG)
    c = pfl.run_fedavg(mlp, CLIENTS, TEST, dataclasses.replace(CONFIG, seed=1))
    assert without_seconds(a) == without_seconds(b)
    assert all(np.array_equal(x, y) for x, y in zip(a.final_weights, b.final_weights))
    assert without_seconds(a) != without_seconds(c)


@pytest.mark.parametrize("n, batch_size", [(40, 40), (20, 32)], ids=["full-batch", "padded"])
def test_one_client_equals_centralised_sgd(n, batch_size):
    """One client, R rounds of E epochs = R*E steps of plain (full-batch) SGD on its data."""
    x, y = DS.x_train[:n], DS.y_train[:n]
    config = pfl.FedConfig(num_rounds=2, clients_per_round=1, local_epochs=2,
                           batch_size=batch_size, learning_rate=0.1, seed=3)
    history = pfl.run_fedavg(mlp, [(x, y)], TEST, config)
    tf.keras.utils.set_random_seed(3)
    model = mlp()
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=n, epochs=4, shuffle=False, verbose=0)
    for ours, keras in zip(history.final_weights, model.get_weights()):
        assert np.allclose(ours, keras, atol=1e-5)


def test_training_improves_accuracy_and_reports_metrics():
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, dataclasses.replace(CONFIG, num_rounds=8))
    accuracy = history.metric("accuracy")
    assert accuracy[-1] > accuracy[0] + 0.2
    assert history.metric("clients_completed") == [4] * 8
    assert history.metric("sparsity")[-1] == 0.0


def test_byte_counts_are_lengths_of_real_payloads(monkeypatch):
    produced, encode = [], compress.encode

    def recording_encode(arrays, known_masks=None, **kwargs):
        payload = encode(arrays, known_masks=known_masks, **kwargs)
        produced.append(len(payload))
        return payload

    monkeypatch.setattr(fedavg.compress, "encode", recording_encode)
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, dataclasses.replace(CONFIG, num_rounds=1))
    download, uploads = produced[0], produced[1:]
    assert len(uploads) == 4
    assert history.metric("bytes_down") == [4 * download]
    assert history.metric("bytes_up") == [sum(uploads)]
    raw = sum(w.nbytes for w in history.final_weights)
    assert all(0.5 * raw < n < 1.01 * raw for n in uploads)


def test_non_finite_client_is_rejected_and_global_model_stays_finite():
    poisoned = list(CLIENTS)
    x, y = poisoned[0]
    poisoned[0] = (np.full_like(x, np.nan), y)
    config = dataclasses.replace(CONFIG, clients_per_round=8, num_rounds=6)
    history = pfl.run_fedavg(mlp, poisoned, TEST, config)
    assert history.metric("clients_rejected") == [1] * 6
    assert history.metric("clients_completed") == [7] * 6
    assert all(np.all(np.isfinite(w)) for w in history.final_weights)
    assert history.metric("accuracy")[-1] > history.metric("accuracy")[0] + 0.1


@pytest.mark.parametrize("clients_per_round, rate", [(50, 0.58), (3, 0.3), (4, 0.2), (10, 0.0)])
def test_each_sampled_client_fails_independently_at_the_dropout_rate(clients_per_round, rate):
    rng = np.random.default_rng(0)
    rounds = [fedavg.sample_round(rng, 100, clients_per_round, rate) for _ in range(4000)]
    failed = np.array([len(sampled) - len(answered) for sampled, answered in rounds])
    assert all(len(sampled) == clients_per_round and set(answered) <= set(sampled)
               for sampled, answered in rounds)
    # Binomial(m, rate): mean m * rate (29 of 50 at 0.58); 4000 rounds pin it to +-0.3 %
    assert failed.mean() / clients_per_round == pytest.approx(rate, abs=0.01)
    assert (failed.min() < failed.max()) == (rate > 0)  # a count that varies, not a floor


def test_run_records_who_dropped_and_aggregates_whoever_answered():
    config = dataclasses.replace(CONFIG, dropout_rate=0.5, num_rounds=6)
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, config)
    rng = np.random.default_rng(config.seed)  # the run's stream draws the sampling only
    dropped = []
    for _ in range(config.num_rounds):
        sampled, answered = fedavg.sample_round(rng, len(CLIENTS), 4, 0.5)
        dropped.append(len(sampled) - len(answered))
    assert history.metric("clients_dropped") == dropped
    assert [d + c for d, c in zip(dropped, history.metric("clients_completed"))] == [4] * 6
    assert len(set(dropped)) > 1


def test_round_function_is_traced_once_across_runs_and_settings():
    pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG)
    trainer = next(t for k, t in fl_round._TRAINERS.items()
                   if t.model.layers[1].units == 32 and not t.masked)
    for change in [dict(seed=5), dict(batch_size=7), dict(learning_rate=0.2, local_epochs=2),
                   dict(clients_per_round=3)]:
        pfl.run_fedavg(mlp, CLIENTS, TEST, dataclasses.replace(CONFIG, **change))
    assert trainer.traces == 1


def test_softmax_output_models_are_trained_with_the_right_loss():
    def softmax_mlp():
        return tf.keras.Sequential([
            tf.keras.layers.InputLayer(input_shape=DS.input_shape),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(32, activation="relu"),
            tf.keras.layers.Dense(10, activation="softmax")])

    history = pfl.run_fedavg(softmax_mlp, CLIENTS, TEST, dataclasses.replace(CONFIG, num_rounds=6))
    model = softmax_mlp()
    model.set_weights(history.final_weights)
    model.compile(loss="sparse_categorical_crossentropy")
    assert history.metric("loss")[-1] == pytest.approx(model.evaluate(*TEST, verbose=0), rel=1e-4)


def test_history_save_and_load_round_trip(tmp_path):
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, dataclasses.replace(CONFIG, num_rounds=1))
    history.save(tmp_path / "h.json")
    loaded = pfl.History.load(tmp_path / "h.json")
    assert loaded.rounds == history.rounds and loaded.config == history.config
    assert all(np.array_equal(a, b) for a, b in zip(loaded.final_weights, history.final_weights))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(clients=[]), "clients must be a non-empty list"),
        (dict(clients=[(DS.x_train[:3], DS.y_train[:2])]), "clients[0] must hold"),
        (dict(clients=[DS.x_train]), "clients[0] must be an (x, y) pair"),
        (dict(config=dataclasses.replace(CONFIG, clients_per_round=9)),
         "clients_per_round must be in [1, 8]"),
        (dict(test=(DS.x_test[:, :4], DS.y_test)), "test examples have shape"),
        (dict(model_fn=lambda: "not a model"), "model_fn must return a tf.keras.Model"),
    ],
)
def test_run_fedavg_validates_its_input(kwargs, message):
    args = dict(model_fn=mlp, clients=CLIENTS, test=TEST, config=CONFIG) | kwargs
    with pytest.raises(ValueError) as error:
        pfl.run_fedavg(**args)
    assert message in str(error.value)


def test_plan_pads_partial_batches_with_zero_weight():
    plan = plan_local_steps([np.arange(5)], local_epochs=2, batch_size=4,
                            rng=np.random.default_rng(0))
    assert plan["rows"].shape == (4, 4)
    assert plan["weights"].sum() == 10
    assert plan["start"].tolist() == [0] and plan["stop"].tolist() == [4]
    epoch = plan["rows"][:2].ravel()[plan["weights"][:2].ravel() == 1]
    assert sorted(epoch.tolist()) == list(range(5))
    other = plan_local_steps([np.arange(3), np.arange(3, 5)], 1, 4, np.random.default_rng(0))
    assert set(other["rows"][1].tolist()) == {3, 4}  # padding stays inside the client's own rows


def test_stop_at_accuracy_ends_the_run_at_the_first_round_reaching_it():
    full = pfl.run_fedavg(mlp, CLIENTS, TEST, dataclasses.replace(CONFIG, num_rounds=8))
    target = sorted(full.metric("accuracy"))[4]  # reached somewhere inside the run
    stopped = pfl.run_fedavg(mlp, CLIENTS, TEST, dataclasses.replace(CONFIG, num_rounds=8),
                             stop_at_accuracy=target)
    assert len(stopped.rounds) == full.rounds_to_reach(target) < 8
    assert without_seconds(stopped) == without_seconds(full)[: len(stopped.rounds)]


def test_batches_wider_than_every_client_are_capped_without_changing_gradients():
    plan = plan_local_steps([np.arange(5), np.arange(5, 8)], 1, 1000, np.random.default_rng(0))
    assert plan["rows"].shape == (2, 5) and plan["weights"].sum() == 8
    config = dataclasses.replace(CONFIG, num_rounds=2)
    largest = max(len(c[1]) for c in CLIENTS)
    a = pfl.run_fedavg(mlp, CLIENTS, TEST, dataclasses.replace(config, batch_size=largest))
    b = pfl.run_fedavg(mlp, CLIENTS, TEST, dataclasses.replace(config, batch_size=10_000))
    for x, y in zip(a.final_weights, b.final_weights):
        assert np.allclose(x, y, atol=1e-6)


def test_runs_do_not_reset_tensorflows_global_seed(monkeypatch):
    calls = []
    monkeypatch.setattr(fedavg.tf.keras.utils, "set_random_seed", lambda s: calls.append(s))
    monkeypatch.setattr(fedavg.tf.random, "set_seed", lambda s: calls.append(s))
    a = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG)
    b = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG)
    assert calls == [] and without_seconds(a) == without_seconds(b)


def test_initial_weights_are_those_of_the_seeded_keras_model():
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, dataclasses.replace(CONFIG, num_rounds=1))
    tf.keras.utils.set_random_seed(CONFIG.seed)
    expected = mlp().get_weights()
    fl_round._seed_keras_initialisers(CONFIG.seed)
    assert all(np.array_equal(a, b) for a, b in zip(expected, mlp().get_weights()))
    assert history.final_weights[0].shape == expected[0].shape


def test_weights_set_by_model_fn_are_respected():
    """A model_fn that returns trained weights (e.g. to fine-tune) must start from them."""
    trained = pfl.run_fedavg(mlp, CLIENTS, TEST, dataclasses.replace(CONFIG, num_rounds=6))

    def trained_mlp():
        model = mlp()
        model.set_weights(trained.final_weights)
        return model

    tiny_steps = dataclasses.replace(CONFIG, num_rounds=1, learning_rate=1e-9)
    resumed = pfl.run_fedavg(trained_mlp, CLIENTS, TEST, tiny_steps)
    assert resumed.metric("accuracy")[0] == pytest.approx(trained.metric("accuracy")[-1], abs=0.01)


# --- issue 9: random layers, non-trainable state, mixed precision, downloads ----------------------

IID = pfl.data.split_clients(DS.x_train, DS.y_train, pfl.data.partition_iid(DS.y_train, 4, seed=0))
ISSUE_CONFIG = pfl.FedConfig(num_rounds=3, clients_per_round=4, batch_size=16, learning_rate=0.1,
                             seed=0)


def _with(layer_fn):
    def model_fn():
        return tf.keras.Sequential([
            tf.keras.Input((8, 8, 1)), *layer_fn(), tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(64, activation="relu"), tf.keras.layers.Dense(10)])
    return model_fn


RANDOM_LAYERS = {
    "Dropout": lambda: [tf.keras.layers.Flatten(), tf.keras.layers.Dropout(0.5),
                        tf.keras.layers.Reshape((8, 8, 1))],
    "GaussianNoise": lambda: [tf.keras.layers.GaussianNoise(0.5)],
    "GaussianDropout": lambda: [tf.keras.layers.GaussianDropout(0.3)],
    "SpatialDropout2D": lambda: [tf.keras.layers.Conv2D(4, 3, padding="same"),
                                 tf.keras.layers.SpatialDropout2D(0.5)],
    "RandomTranslation": lambda: [tf.keras.layers.RandomTranslation(0.2, 0.2)],
}


@pytest.mark.parametrize("name", RANDOM_LAYERS)
def test_random_layers_give_identical_histories_for_the_same_seed(name):
    model_fn = _with(RANDOM_LAYERS[name])
    a = pfl.run_fedavg(model_fn, IID, TEST, ISSUE_CONFIG)
    tf.random.uniform([3])  # whatever else the process draws in between must not matter
    b = pfl.run_fedavg(model_fn, IID, TEST, ISSUE_CONFIG)
    c = pfl.run_fedavg(model_fn, IID, TEST, dataclasses.replace(ISSUE_CONFIG, seed=1))
    assert without_seconds(a) == without_seconds(b)
    assert all(np.array_equal(x, y) for x, y in zip(a.final_weights, b.final_weights))
    assert without_seconds(a) != without_seconds(c)
    random = [t for t in fl_round._TRAINERS.values() if t._random_layers]
    assert random and all(t.traces == 1 for t in random)  # seeds are inputs: no retrace


def test_the_random_layers_are_really_random_across_clients_and_rounds():
    model_fn = _with(RANDOM_LAYERS["Dropout"])
    seeds = fedavg.client_seeds(0, 1, range(4))
    same = fedavg.client_seeds(0, 1, range(4))
    assert len(set(seeds.tolist())) == 4 and (seeds == same).all()
    assert (fedavg.client_seeds(0, 2, range(4)) != seeds).all()
    dropout_off = pfl.run_fedavg(_with(lambda: [tf.keras.layers.Flatten(),
                                                tf.keras.layers.Dropout(0.0),
                                                tf.keras.layers.Reshape((8, 8, 1))]),
                                 IID, TEST, ISSUE_CONFIG)
    dropout_on = pfl.run_fedavg(model_fn, IID, TEST, ISSUE_CONFIG)
    assert dropout_on.metric("loss") != dropout_off.metric("loss")


def _frozen_model_fn(kernel):
    def model_fn():
        model = tf.keras.Sequential([
            tf.keras.Input((8, 8, 1)), tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(32, activation="relu", name="mask_proj", trainable=False),
            tf.keras.layers.Dense(10)])
        model.layers[1].set_weights([kernel, np.zeros(32, np.float32)])
        return model
    return model_fn


def _keras_accuracy(model, trainable_weights):
    for v, w in zip(model.trainable_variables, trainable_weights, strict=True):
        v.assign(w)
    return float(np.mean(np.argmax(model.predict(TEST[0], verbose=0), -1) == TEST[1]))


def test_frozen_weights_come_from_each_runs_model_fn_and_are_never_uploaded():
    rng = np.random.default_rng(0)
    k1, k2 = (rng.normal(0, s, (64, 32)).astype(np.float32) for s in (0.3, 3.0))
    config = dataclasses.replace(ISSUE_CONFIG, clients_per_round=2, num_rounds=3)
    first = pfl.run_fedavg(_frozen_model_fn(k1), IID, TEST, config)
    second = pfl.run_fedavg(_frozen_model_fn(k2), IID, TEST, config)
    for run, kernel in ((first, k1), (second, k2)):
        expected = _keras_accuracy(_frozen_model_fn(kernel)(), run.final_weights)
        assert run.metric("accuracy")[-1] == pytest.approx(expected, abs=1e-9)
    assert first.metric("accuracy")[-1] != second.metric("accuracy")[-1]
    # the uploads carry the two trainable arrays only; the frozen ones go down once per client
    trainable = [w for w in first.final_weights]
    assert len(trainable) == 2 and trainable[0].shape == (32, 10)
    frozen_bytes = len(compress.encode([k1, np.zeros(32, np.float32)]))
    assert max(first.metric("bytes_up")) < frozen_bytes
    fl_round._seed_keras_initialisers(config.seed)
    initial = [v.numpy() for v in _frozen_model_fn(k1)().trainable_variables]
    seen, late = set(), 0
    for r, record in enumerate(first.rounds):
        new = [k not in seen for k in record["clients_sampled"]]
        late += sum(new) if r else 0
        seen.update(record["clients_sampled"])
        values = [d - frozen_bytes * n for d, n in zip(record["bytes_down_each"], new)]
        assert len(set(values)) == 1  # the same weights payload for everyone in a round
        if r == 0:
            assert values[0] == len(compress.encode(initial))
    assert late > 0  # a client first sampled after round 1 got the frozen weights then


def test_a_layer_that_changes_its_own_non_trainable_state_is_refused_by_name():
    class Counter(tf.keras.layers.Layer):
        def build(self, input_shape):
            self.calls = self.add_weight(name="calls", shape=(), trainable=False,
                                         initializer="zeros")

        def call(self, x, training=None):
            if training:
                self.calls.assign_add(1.0)
            return x

    def model_fn():
        return tf.keras.Sequential([tf.keras.Input((8, 8, 1)), tf.keras.layers.Flatten(),
                                    Counter(name="counter"), tf.keras.layers.Dense(10)])

    with pytest.raises(ValueError, match="counter"):
        pfl.run_fedavg(model_fn, IID, TEST, dataclasses.replace(ISSUE_CONFIG, num_rounds=1))


MOMENTUM = 0.5


def _batch_norm_setup():
    """Two clients of constant rows a (20 rows) and b (10 rows): batch means are a and b."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 64)).astype(np.float32)
    clients = [(np.tile(a, (20, 1)), np.arange(20) % 10), (np.tile(b, (10, 1)), np.arange(10))]

    def model_fn():
        return tf.keras.Sequential([tf.keras.Input((64,)),
                                    tf.keras.layers.BatchNormalization(momentum=MOMENTUM),
                                    tf.keras.layers.Dense(10)])

    test = (np.concatenate([c[0] for c in clients]), np.concatenate([c[1] for c in clients]))
    config = pfl.FedConfig(num_rounds=1, clients_per_round=2, batch_size=10,
                           learning_rate=0.1, seed=0)
    return a, b, clients, test, model_fn, config


def test_batch_norm_statistics_are_averaged_by_example_count():
    a, b, clients, test, model_fn, config = _batch_norm_setup()
    history = pfl.run_fedavg(model_fn, clients, test, config)
    m = MOMENTUM
    # client a: two steps from (mean 0, variance 1); client b: one step (variance of a batch: 0)
    mean_a, var_a = (1 - m**2) * a, m**2 * np.ones(64)
    mean_b, var_b = (1 - m) * b, m * np.ones(64)
    mean, var = history.final_weights[-2:]
    np.testing.assert_allclose(mean, (20 * mean_a + 10 * mean_b) / 30, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, (20 * var_a + 10 * var_b) / 30, rtol=1e-5, atol=1e-6)
    assert len(history.final_weights) == 6 and history.client_weights == {}


def test_fedbn_keeps_every_batch_norm_variable_on_its_client(tmp_path):
    a, b, clients, test, model_fn, config = _batch_norm_setup()
    config = dataclasses.replace(config, num_rounds=2, batch_norm="local")
    history = pfl.run_fedavg(model_fn, clients, test, config)
    m = MOMENTUM
    own = history.client_weights  # gamma, beta, moving mean, moving variance per client
    np.testing.assert_allclose(own[0][2], (1 - m**4) * a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(own[0][3], m**4 * np.ones(64), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(own[1][2], (1 - m**2) * b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(own[1][3], m**2 * np.ones(64), rtol=1e-5, atol=1e-6)
    assert not np.allclose(own[0][1], own[1][1])  # offsets trained apart, never averaged
    for i, j in zip((0, 1, 4, 5), range(4)):  # the global model: n_k-weighted mean of them
        np.testing.assert_allclose(history.final_weights[i], (20 * own[0][j] + 10 * own[1][j]) / 30,
                                   rtol=1e-5, atol=1e-6)
    history.save(tmp_path / "fedbn.json")
    loaded = pfl.History.load(tmp_path / "fedbn.json").client_weights
    assert sorted(loaded) == [0, 1] and all(
        np.array_equal(x, y) for k in own for x, y in zip(own[k], loaded[k], strict=True))
    dense = [w for i, w in enumerate(history.final_weights) if i in (2, 3)]
    assert max(history.metric("bytes_up")) < 2 * len(compress.encode(dense)) + 200


@pytest.mark.parametrize("pruning", [None, "client"], ids=["plain", "ClientPruning"])
def test_mixed_precision_is_refused_up_front_naming_the_policy(pruning):
    strategy = pfl.pruning.ClientPruning(0.5) if pruning else None
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with pytest.raises(ValueError, match="mixed_float16"):
            pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=strategy)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


def test_each_client_downloads_the_mask_unless_it_already_holds_it():
    config = pfl.FedConfig(num_rounds=3, clients_per_round=2, batch_size=16,
                           learning_rate=0.05, seed=2)
    strategy = pfl.pruning.GlobalPruning(0.8, end_round=1)  # one mask, from round 2 on
    clients = IID
    runs = [pfl.run_fedavg(mlp, clients, TEST, dataclasses.replace(config, num_rounds=r),
                           pruning=strategy) for r in (1, 2, 3)]
    history = runs[-1]
    start = [[w.numpy() for w in _initial(config)]] + [r.final_weights for r in runs[:2]]
    masks = [None] + [[w != 0 if w.ndim >= 2 else None for w in start[r]] for r in (1, 2)]
    assert all(np.array_equal(x, y) for x, y in zip(masks[1][0:1], masks[2][0:1]))
    holders, hand = set(), []
    for r, record in enumerate(history.rounds):
        row = []
        for k in record["clients_sampled"]:
            known = masks[r] if masks[r] is not None and k in holders else None
            row.append(len(compress.encode(start[r], known_masks=known)))
            if masks[r] is not None:
                holders.add(k)
        hand.append(row)
    assert history.metric("bytes_down_each") == hand
    assert history.metric("bytes_down") == [sum(row) for row in hand]
    round3 = history.rounds[2]["clients_sampled"]
    assert set(round3) & set(history.rounds[1]["clients_sampled"])  # one holds the mask
    assert set(round3) - set(history.rounds[1]["clients_sampled"])  # one does not


def _initial(config):
    fl_round._seed_keras_initialisers(config.seed)
    return mlp().trainable_variables


def test_a_round_in_which_every_sampled_client_fails_keeps_the_global_model():
    # regression: with per-client failures a round can lose everyone (it crashed in planning)
    config = dataclasses.replace(CONFIG, num_rounds=6, clients_per_round=2, dropout_rate=0.9)
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, config)
    completed = history.metric("clients_completed")
    empty = [r for r in range(1, len(completed)) if completed[r] == 0]
    assert empty, completed  # seed 0 draws at least one such round here
    accuracy, loss = history.metric("accuracy"), history.metric("loss")
    for r in empty:  # nobody trained: the model, hence its test loss and accuracy, is unchanged
        assert history.rounds[r]["bytes_up"] == 0
        assert (accuracy[r], loss[r]) == (accuracy[r - 1], loss[r - 1])


def test_initial_weights_and_on_round_observer():
    import prunefl_lite as pfl
    ds = pfl.data.load_dataset("digits")
    parts = pfl.data.partition_iid(ds.y_train, 4, seed=0)
    clients = pfl.data.split_clients(ds.x_train, ds.y_train, parts)
    config = pfl.FedConfig(num_rounds=2, clients_per_round=2, seed=0)
    model_fn = lambda: pfl.models.mlp_2nn(ds.input_shape, ds.num_classes)  # noqa: E731
    test = (ds.x_test, ds.y_test)
    first = pfl.run_fedavg(model_fn, clients, test, config)
    seen = []
    resumed = pfl.run_fedavg(model_fn, clients, test, config,
                             initial_weights=first.final_weights,
                             on_round=lambda r, rec, w: seen.append((r, rec["accuracy"], w)))
    assert [r for r, _, _ in seen] == [1, 2]
    assert [a for _, a, _ in seen] == resumed.metric("accuracy")
    assert all(np.array_equal(a, b) for a, b in zip(seen[-1][2], resumed.final_weights))
    # starting from trained weights: the first round is already far above a fresh start
    assert resumed.metric("accuracy")[0] > first.metric("accuracy")[0]
    with pytest.raises(ValueError, match=r"initial_weights\[0\] must have shape"):
        pfl.run_fedavg(model_fn, clients, test, config,
                       initial_weights=[w.T for w in first.final_weights])
    with pytest.raises(ValueError, match="initial_weights must be a list of"):
        pfl.run_fedavg(model_fn, clients, test, config, initial_weights=first.final_weights[:1])
