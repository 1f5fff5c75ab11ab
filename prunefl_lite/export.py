"""Export a Keras model to LiteRT (.tflite bytes), then run and time it with the LiteRT interpreter.

TensorFlow's converter turns a (stripped) `tf.keras` model into a LiteRT flatbuffer, optionally
with int8 post-training quantisation calibrated on a representative dataset; the interpreter of
the `ai-edge-litert` package runs it as a phone or microcontroller would (one thread by default).
The converter and the interpreter write log lines straight to file descriptor 2 (stderr); they
are silenced here, as the package silences TensorFlow's import, because a strict book build fails
on stderr output. Errors still raise.

Reference for the sizes to expect: tfmot's "Pruning in Keras" example
(https://www.tensorflow.org/model_optimization/guide/pruning/pruning_with_keras) reports a
gzip-compressed file about 3x smaller from pruning and about 10x smaller from pruning plus
post-training quantisation, on an MNIST model.
"""

import contextlib
import gzip
import io
import logging
import os
import statistics
import sys
import time
import warnings

import numpy as np
import tensorflow as tf

from prunefl_lite.validate import check_choice, check_int

QUANTIZE = (None, "int8")


@contextlib.contextmanager
def _quiet_stderr():
    """Silence fd 2, Python's stdout/stderr, warnings and TensorFlow's INFO logs in the block.

    The converter saves a temporary SavedModel and logs "Assets written to ..." through the
    "tensorflow" logger; the C++ parts write to fd 2. Exceptions still propagate.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    logger = logging.getLogger("tensorflow")
    level = logger.level
    try:
        os.dup2(devnull, 2)
        logger.setLevel(logging.ERROR)
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(
            io.StringIO()
        ), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def _check_model(model):
    """Raise unless `model` is a built tf.keras model with one input and one output.

    A model with several inputs or outputs is refused by name: the interpreter lists a
    converted model's tensors in an order of its own (not the Keras model's), and the course's
    runner feeds one batch and reads one result.
    """
    if not isinstance(model, tf.keras.Model):
        raise ValueError(f"model must be a tf.keras.Model, got {type(model).__name__}")
    if not model.built or not model.inputs:
        raise ValueError("model must be a built tf.keras model with one input and one output, "
                         "got an unbuilt model (give it a tf.keras.Input or call build)")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError("model must be a built tf.keras model with one input and one output "
                         f"(LiteRT export here), got inputs {list(model.input_names)} and "
                         f"outputs {list(model.output_names)}")
    wrapped = [layer.name for layer in model.layers if hasattr(layer, "pruning_step")]
    if wrapped:
        raise ValueError(f"model must be stripped of tfmot wrappers (pfl.pruning.strip), "
                         f"got wrapped layers {wrapped}")


def _check_representative(quantize, representative_data, input_shape):
    """Return the calibration inputs as float32 (None for a float model), validated."""
    check_choice("quantize", quantize, QUANTIZE)
    if quantize is None:
        return None
    if representative_data is None or len(representative_data) == 0:
        raise ValueError("representative_data must be a non-empty array of example inputs "
                         f"with quantize='int8', got {representative_data!r:.40}")
    data = np.asarray(representative_data, dtype=np.float32)
    if data.shape[1:] != tuple(input_shape):
        raise ValueError(f"representative_data must hold examples of shape {tuple(input_shape)}, "
                         f"got {data.shape[1:]}")
    return data


def to_litert(model, quantize=None, representative_data=None):
    """Convert a Keras model to LiteRT flatbuffer bytes (a ``.tflite`` file's content).

    The model is traced as a `tf.function` with a free batch dimension and converted with
    TensorFlow's `TFLiteConverter.from_concrete_functions` (which goes through a temporary
    SavedModel; the route works for tf-keras models, whatever Keras TensorFlow defaults to).
    Zeros of a pruned model are stored as zeros: the file has the dense model's size, and only
    compression (gzip) or a sparse format profits from them.

    Args:
        model: A built `tf.keras` model with one input and one output, without tfmot
            wrappers (strip first).
        quantize: None for float32, or "int8": post-training full-integer quantisation of
            weights (per channel) and activations, calibrated on `representative_data`; the
            input and output stay float32, so the model is called exactly like the float one.
        representative_data: Example inputs (e.g. 100 training rows), shape
            ``(n, *input_shape)``; required with ``quantize="int8"``.

    Returns:
        The LiteRT model as `bytes`.

    Raises:
        ValueError: If the model is not a built Keras model with one input and one output (the
            message names its inputs and outputs), still holds tfmot wrappers, `quantize` is
            unknown, or the representative data are missing or misshaped.

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
        >>> tflite = to_litert(model)
        >>> tflite[4:8]  # the flatbuffer identifier of LiteRT / TFLite files
        b'TFL3'
    """
    _check_model(model)
    input_shape = tuple(model.inputs[0].shape[1:])
    data = _check_representative(quantize, representative_data, input_shape)
    spec = tf.TensorSpec((None, *input_shape), tf.float32)
    with _quiet_stderr():
        function = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
        if data is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([row[None]] for row in data)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return converter.convert()


def gzip_size(data):
    """Length in bytes of `data` compressed with gzip at level 9 (as tfmot's guide measures).

    Example:
        >>> gzip_size(bytes(10_000)) < 100
        True
    """
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"data must be bytes, got {type(data).__name__}")
    return len(gzip.compress(bytes(data), compresslevel=9, mtime=0))


class LiteRTRunner:
    """A LiteRT interpreter for one model, called on NumPy batches like a Keras model.

    Args:
        model_bytes: The output of `to_litert` (a model with one input and one output).
        num_threads: CPU threads of the interpreter, an integer >= 1 (1 is a fair stand-in for
            a small device, and keeps timings steady on a shared machine).

    Raises:
        ValueError: If `model_bytes` is not a LiteRT flatbuffer, or its model has several
            inputs or outputs (named in the message), or `num_threads` < 1.
        TypeError: If `num_threads` is not an integer (bools are refused).

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
        >>> runner = LiteRTRunner(to_litert(model))
        >>> x = np.ones((3, 4), np.float32)
        >>> bool(np.allclose(runner(x), model(x).numpy(), atol=1e-5))
        True
    """

    def __init__(self, model_bytes, num_threads=1):
        if not isinstance(model_bytes, (bytes, bytearray)) or bytes(model_bytes[4:8]) != b"TFL3":
            raise ValueError("model_bytes must be LiteRT flatbuffer bytes (from to_litert), got "
                             f"{type(model_bytes).__name__}")
        num_threads = check_int("num_threads", num_threads, 1)
        from ai_edge_litert.interpreter import Interpreter

        with _quiet_stderr():  # it announces its XNNPACK delegate on fd 2
            self.interpreter = Interpreter(model_content=bytes(model_bytes),
                                           num_threads=num_threads)
            self.interpreter.allocate_tensors()
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError("model_bytes must hold a model with one input and one output, got "
                             f"inputs {[d['name'] for d in inputs]} and outputs "
                             f"{[d['name'] for d in outputs]}")
        self.input = inputs[0]
        self.output = outputs[0]["index"]
        self.batch_size = int(self.input["shape"][0])

    def _resize(self, batch_size):
        """Give the input tensor a batch dimension of `batch_size` (only when it changes)."""
        if batch_size != self.batch_size:
            self.interpreter.resize_tensor_input(self.input["index"],
                                                 [batch_size, *self.input["shape"][1:]])
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
            self.batch_size = batch_size

    def __call__(self, x):
        """Outputs for one batch `x` (float32, shape ``(batch, *input_shape)``), one invoke."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        self._resize(len(x))
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output)

    def predict(self, x, batch_size=64):
        """Outputs for all rows of `x`, computed in batches of `batch_size` (an integer >= 1)."""
        batch_size = check_int("batch_size", batch_size, 1)
        x = np.asarray(x, dtype=np.float32)
        return np.concatenate([self(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def _bound_call(runner, batch):
    """A function doing one whole call on `batch` (copy in, invoke, copy out), no checks.

    The interpreter's methods are bound once, so the timing holds what an application pays
    per request and not the validation of `LiteRTRunner.__call__`.
    """
    runner._resize(len(batch))
    interpreter, index, output = runner.interpreter, runner.input["index"], runner.output
    set_tensor, invoke, get_tensor = (interpreter.set_tensor, interpreter.invoke,
                                      interpreter.get_tensor)

    def call():
        set_tensor(index, batch)
        invoke()
        return get_tensor(output)

    return call


def median_latencies(models, x, batch_size=1, repeats=500, num_threads=1, warmup=20,
                     invoke_only=False):
    """Median seconds per call of each LiteRT model on one batch, timed side by side.

    A call is what a Python application pays per request: copy the batch in, invoke, read the
    output. With `invoke_only` the batch is copied in once and only ``invoke()`` is timed: the
    runtime's own work, without the Python binding's copies (about a microsecond each), which a
    C++ app on a device does not pay. The repetitions are interleaved across the models (the
    order alternates), so that a burst of load on the machine hits all of them alike.

    Args:
        models: A dict from a name to LiteRT bytes (from `to_litert`).
        x: Inputs; the first `batch_size` rows are the timed batch.
        batch_size: Rows per call, >= 1 and <= len(x).
        repeats: Timed calls per model, >= 1.
        num_threads: Interpreter threads (see `LiteRTRunner`).
        warmup: Untimed calls per model first, >= 0.
        invoke_only: Time ``invoke()`` alone instead of the whole call.

    Returns:
        A dict from each name to its median seconds per call (divide by `batch_size` for the
        time per example).

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
        >>> t = median_latencies({"tiny": to_litert(model)}, np.ones((8, 4)), repeats=5)
        >>> 0 < t["tiny"] < 1
        True
    """
    if not isinstance(models, dict) or not models:
        raise ValueError(
            f"models must be a non-empty dict of name -> LiteRT bytes, got {models!r:.40}")
    repeats = check_int("repeats", repeats, 1)
    warmup = check_int("warmup", warmup, 0)
    batch_size = check_int("batch_size", batch_size, 1, len(x))
    batch = np.ascontiguousarray(np.asarray(x, dtype=np.float32)[:batch_size])
    runners = {name: LiteRTRunner(m, num_threads=num_threads) for name, m in models.items()}
    for runner in runners.values():
        for _ in range(warmup):
            runner(batch)
    calls = {name: (r.interpreter.invoke if invoke_only else _bound_call(r, batch))
             for name, r in runners.items()}
    times = {name: [] for name in runners}
    names = list(runners)
    for repetition in range(repeats):
        for name in names if repetition % 2 else names[::-1]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
