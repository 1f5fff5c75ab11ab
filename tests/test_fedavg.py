import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from fl_setup import CLIENTS, CONFIG, DS, TEST, mlp, without_seconds

import prunefl_lite as pfl
from prunefl_lite import compress, fedavg
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

    def recording_encode(arrays, known_masks=None):
        payload = encode(arrays, known_masks=known_masks)
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


def test_dropout_fails_that_fraction_of_sampled_clients():
    config = dataclasses.replace(CONFIG, dropout_rate=0.5)
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, config)
    assert history.metric("clients_dropped") == [2, 2, 2]
    assert history.metric("clients_completed") == [2, 2, 2]


def test_round_function_is_traced_once_across_runs_and_settings():
    pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG)
    trainer = next(t for k, t in fedavg._TRAINERS.items()
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


def test_models_with_non_trainable_state_are_refused():
    def with_batchnorm():
        return tf.keras.Sequential([tf.keras.layers.InputLayer(input_shape=DS.input_shape),
                                    tf.keras.layers.Flatten(), tf.keras.layers.BatchNormalization(),
                                    tf.keras.layers.Dense(10)])

    with pytest.raises(ValueError, match="non-trainable variable"):
        pfl.run_fedavg(with_batchnorm, CLIENTS, TEST, CONFIG)


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
    pfl.fedavg._seed_keras_initialisers(CONFIG.seed)
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
