import prunefl_lite  # noqa: F401, I001  (first: selects Keras 2 before TensorFlow loads)

import numpy as np
import pytest
import tensorflow as tf

from prunefl_lite import client, pruning


def _frozen_named_mask():
    return tf.keras.Sequential([
        tf.keras.Input((4,)), tf.keras.layers.Dense(3, name="mask_proj", trainable=False),
        tf.keras.layers.BatchNormalization(), tf.keras.layers.Dense(2, name="threshold_head")])


def test_variables_are_classified_by_role_not_by_name():
    parts = client.classify_variables(_frozen_named_mask())
    names = {k: [v.name.split("/")[0] for v in vs] for k, vs in parts.items()}
    assert names["frozen"] == ["mask_proj", "mask_proj"]
    assert [v.name.split("/")[-1] for v in parts["statistics"]] == [
        "moving_mean:0", "moving_variance:0"]
    assert names["bookkeeping"] == []
    assert len(parts["trainable"]) == 4  # BatchNorm gamma, beta; threshold_head kernel, bias


def test_tfmot_bookkeeping_is_recognised_by_identity():
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3, name="plain")])
    wrapped = pruning.prune_with_tfmot(model, 0.5, end_step=10)
    parts = client.classify_variables(wrapped)
    wrapper = wrapped.layers[0]
    expected = {id(wrapper.pruning_step)} | {id(v) for _, m, t in wrapper.pruning_vars
                                             for v in (m, t)}
    assert {id(v) for v in parts["bookkeeping"]} == expected
    assert parts["frozen"] == [] and parts["statistics"] == []


def test_a_frozen_batch_norm_layer_has_frozen_statistics():
    model = tf.keras.Sequential([tf.keras.Input((4,)),
                                 tf.keras.layers.BatchNormalization(trainable=False)])
    parts = client.classify_variables(model)
    assert len(parts["frozen"]) == 4 and parts["statistics"] == []


def test_trainer_loads_frozen_values_and_refuses_wrong_shapes():
    trainer = client.ClientTrainer(_frozen_named_mask())
    values = [np.full((4, 3), 2.0, np.float32), np.zeros(3, np.float32)]
    trainer.load_frozen(values)
    assert np.array_equal(trainer.frozen_variables[0].numpy(), values[0])
    with pytest.raises(ValueError, match="must have shape"):
        trainer.load_frozen([np.zeros((3, 3)), np.zeros(3)])
    with pytest.raises(ValueError, match="values must hold 2 frozen arrays, got 1"):
        trainer.load_frozen(values[:1])


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16", "float64"])
def test_models_that_do_not_compute_in_float32_are_refused_by_policy_name(policy):
    tf.keras.mixed_precision.set_global_policy(policy)
    try:
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    with pytest.raises(ValueError, match=policy):
        client.check_model(model)


def test_seeds_drive_the_random_layers():
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dropout(0.5),
                                 tf.keras.layers.Dense(2)])
    trainer = client.ClientTrainer(model)
    trainer.set_data(np.ones((8, 4), np.float32), np.zeros(8, np.int64))
    plan = client.plan_local_steps([np.arange(8)] * 2, 1, 8, np.random.default_rng(0))
    start = trainer.get_weights()
    a = trainer.train(start, plan, 0.5, seeds=[1, 2])
    b = trainer.train(start, plan, 0.5, seeds=[1, 2])
    c = trainer.train(start, plan, 0.5, seeds=[1, 1])
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0][0], a[0][1])  # two clients, two seeds: two dropout masks
    assert np.array_equal(c[0][0], c[0][1]) and trainer.traces == 1
