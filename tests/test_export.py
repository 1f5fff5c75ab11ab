"""Unit tests of prunefl_lite.export: LiteRT round trips, quantisation margin, validation rules."""

import re

import numpy as np
import pytest
import tensorflow as tf

import prunefl_lite as pfl
from prunefl_lite import export

QUANTISED_MARGIN = 0.03  # int8 PTQ may cost at most 3 accuracy points on digits (stated margin)


@pytest.fixture(scope="module")
def digits():
    return pfl.data.load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    """A 2NN (hidden 64) trained briefly on digits, with logits out."""
    tf.keras.utils.set_random_seed(0)
    model = pfl.models.mlp_2nn(digits.input_shape, digits.num_classes, hidden_units=64)
    model.compile(tf.keras.optimizers.Adam(1e-2),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(digits.x_train, digits.y_train, batch_size=64, epochs=8, verbose=0)
    return model


@pytest.fixture(scope="module")
def float_bytes(trained):
    return export.to_litert(trained)


def accuracy(outputs, y):
    return float(np.mean(np.argmax(outputs, axis=1) == y))


def test_float_model_round_trip_matches_keras(trained, float_bytes, digits):
    keras_out = trained(digits.x_test, training=False).numpy()
    litert_out = export.LiteRTRunner(float_bytes).predict(digits.x_test, batch_size=37)
    np.testing.assert_allclose(litert_out, keras_out, rtol=1e-4, atol=1e-4)


def test_batch_one_and_batch_many_agree(float_bytes, digits):
    runner = export.LiteRTRunner(float_bytes)
    one = np.concatenate([runner(digits.x_test[i:i + 1]) for i in range(10)])
    np.testing.assert_allclose(one, runner(digits.x_test[:10]), rtol=1e-5, atol=1e-5)


def test_int8_model_is_smaller_and_within_margin(trained, float_bytes, digits):
    quantised = export.to_litert(trained, quantize="int8",
                                 representative_data=digits.x_train[:100])
    assert len(quantised) < 0.5 * len(float_bytes)  # 1-byte weights instead of 4
    keras_acc = accuracy(trained(digits.x_test, training=False).numpy(), digits.y_test)
    int8_acc = accuracy(export.LiteRTRunner(quantised).predict(digits.x_test), digits.y_test)
    assert keras_acc > 0.9
    assert int8_acc >= keras_acc - QUANTISED_MARGIN


def test_pruned_zeros_compress_but_do_not_shrink_the_raw_file(trained, float_bytes):
    weights = trained.get_weights()
    pruned = tf.keras.models.clone_model(trained)
    pruned.set_weights(pfl.pruning.apply_masks(weights, pfl.pruning.magnitude_masks(weights, 0.8)))
    sparse_bytes = export.to_litert(pruned)
    assert abs(len(sparse_bytes) - len(float_bytes)) < 0.02 * len(float_bytes)
    assert export.gzip_size(sparse_bytes) < 0.6 * export.gzip_size(float_bytes)


def test_conversion_writes_nothing_to_stdout_or_stderr(trained, digits, capfd, caplog):
    caplog.set_level("INFO")
    export.to_litert(trained, quantize="int8", representative_data=digits.x_train[:10])
    export.LiteRTRunner(export.to_litert(trained))
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert not [r for r in caplog.records if r.name == "tensorflow" and r.levelname == "INFO"]


@pytest.mark.parametrize("invoke_only", [False, True])
def test_median_latencies_returns_one_positive_median_per_model(float_bytes, digits,
                                                                invoke_only):
    latencies = export.median_latencies({"a": float_bytes, "b": float_bytes}, digits.x_test,
                                        batch_size=4, repeats=20, invoke_only=invoke_only)
    assert set(latencies) == {"a", "b"} and all(0 < t < 1 for t in latencies.values())


def test_gzip_size_of_repetitive_bytes_is_small():
    assert export.gzip_size(bytes(10_000)) < 100 < export.gzip_size(np.random.default_rng(0)
                                                                      .bytes(1000))


def small_model():
    return tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])


@pytest.mark.parametrize(
    "kwargs, match",
    [({"model": "not a model"}, "model must be a tf.keras.Model"),
     ({"model": tf.keras.Sequential([tf.keras.layers.Dense(2)])}, "model must be a built"),
     ({"quantize": "int4"}, "quantize must be one of None, 'int8', got 'int4'"),
     ({"quantize": "int8"}, "representative_data must be a non-empty"),
     ({"quantize": "int8", "representative_data": np.zeros((0, 4))},
      "representative_data must be a non-empty"),
     ({"quantize": "int8", "representative_data": np.zeros((3, 5))},
      r"representative_data must hold examples of shape \(4,\)")],
)
def test_to_litert_validation(kwargs, match):
    kwargs = {"model": small_model(), **kwargs}
    with pytest.raises(ValueError, match=match):
        export.to_litert(**kwargs)


def test_to_litert_refuses_tfmot_wrappers():
    wrapped = pfl.pruning.prune_with_tfmot(small_model(), 0.5, end_step=20)
    with pytest.raises(ValueError, match="model must be stripped of tfmot wrappers"):
        export.to_litert(wrapped)


def three_output_model():
    features = tf.keras.Input((4,), name="features")
    hidden = tf.keras.layers.Dense(8, activation="relu")(features)
    outputs = [tf.keras.layers.Dense(k, name=name)(hidden)
               for k, name in [(3, "digit"), (1, "score"), (2, "flag")]]
    return tf.keras.Model(features, outputs)


def test_to_litert_refuses_several_outputs_by_name():
    with pytest.raises(ValueError, match=re.escape(
            "one input and one output (LiteRT export here), got inputs ['features'] and "
            "outputs ['digit', 'score', 'flag']")):
        export.to_litert(three_output_model())


def test_to_litert_refuses_several_inputs_by_name():
    a, b = tf.keras.Input((4,), name="left"), tf.keras.Input((2,), name="right")
    model = tf.keras.Model([a, b], tf.keras.layers.Dense(1, name="out")(
        tf.keras.layers.Concatenate()([a, b])))
    with pytest.raises(ValueError, match=re.escape(
            "got inputs ['left', 'right'] and outputs ['out']")):
        export.to_litert(model)


def test_runner_refuses_a_flatbuffer_with_several_outputs():
    # converted outside to_litert: the interpreter lists the outputs out of Keras' order
    model = three_output_model()
    spec = tf.TensorSpec((None, 4), tf.float32)
    function = tf.function(lambda x: model(x)).get_concrete_function(spec)
    with export._quiet_stderr():
        flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions([function], model).convert()
    with pytest.raises(ValueError, match=r"model_bytes must hold a model with one input and one "
                                         r"output, got inputs \[.*\] and outputs \[.*, .*, .*\]"):
        export.LiteRTRunner(flatbuffer)


@pytest.mark.parametrize(
    "model_bytes, num_threads, error, message",
    [(b"not a flatbuffer", 1, ValueError,
      "model_bytes must be LiteRT flatbuffer bytes (from to_litert), got bytes"),
     ("text", 1, ValueError,
      "model_bytes must be LiteRT flatbuffer bytes (from to_litert), got str"),
     (None, 0, ValueError, "num_threads must be an integer >= 1, got 0"),
     (None, np.int64(0), ValueError, "num_threads must be an integer >= 1, got np.int64(0)"),
     (None, 1.5, TypeError, "num_threads must be an integer >= 1, got 1.5"),
     (None, np.float64(1.0), TypeError, "num_threads must be an integer >= 1, got np.float64(1.0)"),
     (None, True, TypeError, "num_threads must be an integer >= 1, got True"),
     (None, np.True_, TypeError, "num_threads must be an integer >= 1, got np.True_")],
)
def test_runner_validation(float_bytes, model_bytes, num_threads, error, message):
    with pytest.raises(error, match=re.escape(message)):
        export.LiteRTRunner(float_bytes if model_bytes is None else model_bytes, num_threads)


@pytest.mark.parametrize("num_threads", [np.int64(2), np.int32(1)])
def test_runner_accepts_numpy_thread_counts(float_bytes, digits, num_threads):
    runner = export.LiteRTRunner(float_bytes, num_threads)
    assert runner.predict(digits.x_test[:5], batch_size=np.int64(2)).shape == (5, 10)


@pytest.mark.parametrize(
    "batch_size, error, message",
    [(0, ValueError, "batch_size must be an integer >= 1, got 0"),
     (np.int32(0), ValueError, "batch_size must be an integer >= 1, got np.int32(0)"),
     (1.5, TypeError, "batch_size must be an integer >= 1, got 1.5"),
     (np.float32(2), TypeError, "batch_size must be an integer >= 1, got np.float32(2.0)"),
     (True, TypeError, "batch_size must be an integer >= 1, got True")],
)
def test_predict_batch_size_validation(float_bytes, digits, batch_size, error, message):
    with pytest.raises(error, match=re.escape(message)):
        export.LiteRTRunner(float_bytes).predict(digits.x_test[:3], batch_size=batch_size)


@pytest.mark.parametrize(
    "models, kwargs, error, message",
    [({}, {}, ValueError, "models must be a non-empty dict"),
     (["x"], {}, ValueError, "models must be a non-empty dict"),
     (None, {"repeats": 0}, ValueError, "repeats must be an integer >= 1, got 0"),
     (None, {"repeats": np.float64(5)}, TypeError,
      "repeats must be an integer >= 1, got np.float64(5.0)"),
     (None, {"repeats": True}, TypeError, "repeats must be an integer >= 1, got True"),
     (None, {"warmup": -1}, ValueError, "warmup must be an integer >= 0, got -1"),
     (None, {"batch_size": 0}, ValueError, "batch_size must be an integer in [1, 5], got 0"),
     (None, {"batch_size": np.int64(6)}, ValueError,
      "batch_size must be an integer in [1, 5], got np.int64(6)"),
     (None, {"batch_size": False}, TypeError,
      "batch_size must be an integer in [1, 5], got False")],
)
def test_median_latencies_validation(float_bytes, digits, models, kwargs, error, message):
    models = {"m": float_bytes} if models is None else models
    with pytest.raises(error, match=re.escape(message)):
        export.median_latencies(models, digits.x_test[:5], **kwargs)


def test_median_latencies_accepts_numpy_counts(float_bytes, digits):
    times = export.median_latencies({"m": float_bytes}, digits.x_test[:5],
                                    batch_size=np.int64(2), repeats=np.int32(3), warmup=np.int64(1))
    assert list(times) == ["m"] and isinstance(times["m"], float) and times["m"] > 0


@pytest.mark.parametrize("data", ["text", None, [1, 2]])
def test_gzip_size_validation(data):
    with pytest.raises(ValueError, match="data must be bytes"):
        export.gzip_size(data)
