"""Benchmark of structured vs unstructured pruning: parameters, accuracy and CPU latency.

Run as ``python tests/benchmarks/bench_structured.py``. It trains McMahan's 2NN (hidden 200-200)
on scikit-learn's digits (stratified 80/20 split, seed 0), removes half of each hidden layer's
units with ``prune_units(model, 0.5)``, fine-tunes the smaller model briefly, and zeroes 50 % of
the kernels of a copy with ``magnitude_masks`` (unstructured). It prints parameter counts,
test accuracies, and the median latency of a ``tf.function`` forward pass at batch 1024 of each
model over the unpruned one (warm-up first, repetitions interleaved so that machine noise hits
all models alike). Targets: structured latency ratio >= 1.8 and fine-tuned accuracy within 1
point of the unpruned model. The same models at batch 8192 and a wider MLP (hidden 1000-1000,
untrained: latency does not depend on the values) are timed too, labelled as extras. Each table
has a "call floor" row: a tf.function that only sums its input, the per-call cost that pruning
cannot remove. Exits with status 1 if a target is missed.
"""

import prunefl_lite  # noqa: F401, I001  (first: selects Keras 2 before TensorFlow loads)

import statistics
import sys
import time

import numpy as np
import tensorflow as tf

from prunefl_lite import pruning
from prunefl_lite.data import load_dataset
from prunefl_lite.models import mlp_2nn

BATCH = 1024
REPETITIONS = 300
FRACTION = 0.5
LATENCY_TARGET = 1.8
ACCURACY_TOLERANCE = 0.01


def compiled(model, learning_rate):
    """Compile `model` for integer labels and logits."""
    model.compile(
        tf.keras.optimizers.Adam(learning_rate),
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def accuracy(model, ds):
    """Test accuracy of a model producing logits."""
    return float((np.argmax(model(ds.x_test, training=False), axis=1) == ds.y_test).mean())


def unstructured_copy(model, sparsity):
    """A copy of `model` with `sparsity` of its kernels zeroed by global magnitude."""
    copy = tf.keras.models.clone_model(model)
    weights = model.get_weights()
    copy.set_weights(pruning.apply_masks(weights, pruning.magnitude_masks(weights, sparsity)))
    return copy


def median_latencies(models, x):
    """Median seconds of one forward pass per model (and of the call floor), interleaved."""
    forwards = {
        name: tf.function(lambda v, m=m: m(v, training=False)) for name, m in models.items()
    }
    forwards["call floor (sum of the input)"] = tf.function(tf.reduce_sum)
    for forward in forwards.values():  # warm-up: trace and let the thread pools settle
        for _ in range(20):
            forward(x).numpy()
    times = {name: [] for name in forwards}
    for repetition in range(REPETITIONS):
        order = list(forwards) if repetition % 2 else list(reversed(forwards))
        for name in order:
            start = time.perf_counter()
            forwards[name](x).numpy()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def train_models(ds):
    """Trained 2NN, its structured pruning (accuracy before fine-tuning), 50 % sparse copy."""
    tf.keras.utils.set_random_seed(0)
    model = compiled(mlp_2nn(ds.input_shape, ds.num_classes), 1e-3)
    model.fit(ds.x_train, ds.y_train, batch_size=32, epochs=40, verbose=0)
    smaller = pruning.prune_units(model, FRACTION)
    before = accuracy(smaller, ds)
    compiled(smaller, 5e-4).fit(ds.x_train, ds.y_train, batch_size=32, epochs=10, verbose=0)
    return model, smaller, before, unstructured_copy(model, FRACTION)


def print_latency(title, latencies):
    """Print each model's median latency and its ratio to the first (unpruned) model."""
    reference = next(iter(latencies.values()))
    print(f"\n{title}")
    for name, seconds in latencies.items():
        print(f"  {name:<34} {seconds * 1e3:7.3f} ms   unpruned/this = {reference / seconds:4.2f}x")


def print_models(ds, model, smaller, before, sparse):
    """Print parameters, non-zeros and test accuracy of each model; return the unpruned accuracy."""
    rows = [
        ("unpruned 2NN 200-200", model, accuracy(model, ds)),
        ("unstructured 50 % zeros", sparse, accuracy(sparse, ds)),
        ("structured 100-100, no fine-tune", smaller, before),
        ("structured 100-100, fine-tuned", smaller, accuracy(smaller, ds)),
    ]
    print(f"2NN on digits ({len(ds.y_train)} train / {len(ds.y_test)} test), tf {tf.__version__}")
    print(f"  {'model':<34} {'params':>7} {'nonzeros':>9} {'test acc':>9}")
    for name, m, acc in rows:
        nonzeros = sum(int(np.count_nonzero(w)) for w in m.get_weights())
        print(f"  {name:<34} {m.count_params():>7} {nonzeros:>9} {acc:>9.4f}")
    return rows[0][2]


def batch_of(ds, size):
    """A constant batch of `size` test images (repeated as needed)."""
    return tf.constant(np.resize(ds.x_test, (size, *ds.input_shape)).astype(np.float32))


def extra_latencies(ds, models):
    """Labelled extras: the 2NN at batch 8192, and an untrained MLP 1000-1000 at batch 1024."""
    latency = median_latencies(models, batch_of(ds, 8 * BATCH))
    print_latency(f"Extra, same 2NN models at batch {8 * BATCH}", latency)
    tf.keras.utils.set_random_seed(1)
    wide = mlp_2nn(ds.input_shape, ds.num_classes, hidden_units=1000)
    wide_models = {
        "unpruned MLP 1000-1000": wide,
        "unstructured 50 % zeros": unstructured_copy(wide, FRACTION),
        "structured 500-500": pruning.prune_units(wide, FRACTION),
    }
    latency = median_latencies(wide_models, batch_of(ds, BATCH))
    print_latency(f"Extra, wider MLP (untrained; latency only), batch {BATCH}", latency)


def main():
    """Run the benchmark; return the process exit status (1 if a target is missed)."""
    ds = load_dataset("digits")
    model, smaller, before, sparse = train_models(ds)
    base = print_models(ds, model, smaller, before, sparse)
    models = {
        "unpruned 2NN 200-200": model,
        "unstructured 50 % zeros": sparse,
        "structured 100-100": smaller,
    }
    latency = median_latencies(models, batch_of(ds, BATCH))
    print_latency(f"CPU latency, batch {BATCH}, median of {REPETITIONS} (2NN on digits)", latency)
    extra_latencies(ds, models)
    ratio = latency["unpruned 2NN 200-200"] / latency["structured 100-100"]
    gap = base - accuracy(smaller, ds)
    print(
        f"\nstructured speed-up, 2NN at batch {BATCH}: {ratio:.2f}x (target >= {LATENCY_TARGET}x)"
    )
    print(f"fine-tuned accuracy gap: {gap * 100:+.2f} points (target <= 1 point)")
    if ratio < LATENCY_TARGET:
        print("latency target MISSED: the per-call floor above is a large share of the 2NN's time")
    return int(ratio < LATENCY_TARGET or gap > ACCURACY_TOLERANCE)


if __name__ == "__main__":
    sys.exit(main())
