"""Benchmark of structured pruning on the device runtime: LiteRT latency and FL training time.

Run as ``python tests/benchmarks/bench_structured.py``. It trains McMahan's 2NN (hidden 200-200)
on scikit-learn's digits (seed 0), removes half of each hidden layer's units with
``prune_units(model, 0.5)`` (structured: a 100-100 model), fine-tunes it briefly, and zeroes 50 %
of a copy's kernels by magnitude (unstructured). Each model is converted to LiteRT with
``pfl.export.to_litert`` and run by the LiteRT interpreter (one thread, as on a small device).
It prints, side by side in one run (repetitions interleaved across the models):

1. the median latency of a whole call (copy in, invoke, copy out) at batch 1 and batch 64, and
   the median of ``invoke()`` alone (the runtime's work without the Python binding's copies),
   with a "call floor" row: a model that only flattens its input, the per-call cost that
   pruning cannot remove;
2. test accuracy through the interpreter, before and after fine-tuning (up to 30 epochs, the
   epoch with the best validation accuracy kept), mean and range over seeds 0-2;
3. the time per round inside ``run_fedavg`` (local training plus encoding and evaluation;
   20 Dirichlet(0.5) clients, 10 per round, 2 local epochs), dense against the narrow model,
   median over interleaved runs.

Targets (issue 16, goal 2): the structured model >= 1.8x faster than the dense one at batch 1
and at batch 64 (whole calls), and fine-tuned accuracy within 1 point. Ratios, never bare
absolute times, are what carry over to another machine. Exits with status 1 if a target is
missed; the numbers are printed either way.
"""

import prunefl_lite as pfl  # noqa: I001  (first: selects Keras 2 before TensorFlow loads)

import statistics
import sys

import numpy as np
import tensorflow as tf

FRACTION = 0.5
LATENCY_TARGET = 1.8
ACCURACY_TOLERANCE = 0.01
REPEATS = {1: 5000, 64: 1000}
FL_REPETITIONS = 5
FINE_TUNE_EPOCHS = 30
SEEDS = (0, 1, 2)


def compiled(model, learning_rate):
    """Compile `model` for integer labels and logits."""
    model.compile(tf.keras.optimizers.Adam(learning_rate),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def litert_accuracy(model_bytes, ds):
    """Test accuracy through the LiteRT interpreter."""
    outputs = pfl.export.LiteRTRunner(model_bytes).predict(ds.x_test)
    return float(np.mean(np.argmax(outputs, axis=1) == ds.y_test))


def fine_tune(model, ds):
    """Fine-tune `model` up to FINE_TUNE_EPOCHS epochs; keep the epoch best on validation."""
    compiled(model, 5e-4)
    best, best_weights = -1.0, model.get_weights()
    for _ in range(FINE_TUNE_EPOCHS):
        model.fit(ds.x_train, ds.y_train, batch_size=32, epochs=1, verbose=0)
        val = float(np.mean(np.argmax(model(ds.x_val), axis=1) == ds.y_val))
        if val > best:
            best, best_weights = val, model.get_weights()
    model.set_weights(best_weights)
    return model


def train_models(ds, seed=0):
    """Trained 2NN, its structured cut before and after fine-tuning, a 50 % sparse copy."""
    tf.keras.utils.set_random_seed(seed)
    model = compiled(pfl.models.mlp_2nn(ds.input_shape, ds.num_classes), 1e-3)
    model.fit(ds.x_train, ds.y_train, batch_size=32, epochs=40, verbose=0)
    cut = pfl.pruning.prune_units(model, FRACTION)
    before = pfl.export.to_litert(cut)
    fine_tune(cut, ds)
    sparse = tf.keras.models.clone_model(model)
    weights = model.get_weights()
    sparse.set_weights(pfl.pruning.apply_masks(weights,
                                               pfl.pruning.magnitude_masks(weights, FRACTION)))
    floor = tf.keras.Sequential([tf.keras.Input(ds.input_shape), tf.keras.layers.Flatten()])
    models = {"dense 2NN 200-200": model, "unstructured 50 % zeros": sparse,
              "structured 100-100": cut, "call floor (flatten only)": floor}
    return {name: pfl.export.to_litert(m) for name, m in models.items()}, before


def accuracy_rows(ds, tflite, before):
    """Test accuracy through LiteRT of each model of one seed, and its file size."""
    rows = {"dense 2NN 200-200": tflite["dense 2NN 200-200"],
            "unstructured 50 % zeros": tflite["unstructured 50 % zeros"],
            "structured 100-100, no fine-tune": before,
            "structured 100-100, fine-tuned": tflite["structured 100-100"]}
    return {name: (litert_accuracy(b, ds), len(b)) for name, b in rows.items()}


def print_accuracy(ds, per_seed):
    """Print mean/min/max accuracy over seeds; return the mean fine-tuned gap to dense."""
    print(f"2NN on digits ({len(ds.y_train)} train / {len(ds.y_val)} validation / "
          f"{len(ds.y_test)} test), tf {tf.__version__}, seeds {SEEDS}; fine-tuning up to "
          f"{FINE_TUNE_EPOCHS} epochs, epoch chosen on validation")
    print(f"  {'model (LiteRT, float32)':<36} {'file bytes':>10} {'test acc mean [min, max]':>26}")
    for name in per_seed[0]:
        acc = [rows[name][0] for rows in per_seed]
        print(f"  {name:<36} {per_seed[0][name][1]:>10,d} {np.mean(acc):>9.4f} "
              f"[{min(acc):.4f}, {max(acc):.4f}]")
    gaps = [rows["dense 2NN 200-200"][0] - rows["structured 100-100, fine-tuned"][0]
            for rows in per_seed]
    return float(np.mean(gaps)), min(gaps), max(gaps)


def print_latencies(ds, tflite):
    """Print LiteRT medians at batch 1 and 64; return the structured speed-ups (whole calls)."""
    speedups = {}
    for batch, repeats in REPEATS.items():
        calls = pfl.export.median_latencies(tflite, ds.x_test, batch, repeats)
        invokes = pfl.export.median_latencies(tflite, ds.x_test, batch, repeats,
                                              invoke_only=True)
        dense_call, dense_invoke = calls["dense 2NN 200-200"], invokes["dense 2NN 200-200"]
        print(f"\nLiteRT interpreter, 1 thread, batch {batch}, median of {repeats} interleaved")
        print(f"  {'model':<28} {'call us':>8} {'dense/this':>10} {'invoke us':>10} "
              f"{'dense/this':>10}")
        for name in tflite:
            print(f"  {name:<28} {calls[name] * 1e6:8.2f} {dense_call / calls[name]:9.2f}x "
                  f"{invokes[name] * 1e6:10.2f} {dense_invoke / invokes[name]:9.2f}x")
        speedups[batch] = dense_call / calls["structured 100-100"]
        speedups[f"{batch} invoke"] = dense_invoke / invokes["structured 100-100"]
    return speedups


def fl_round_seconds(ds):
    """Median seconds per round of run_fedavg, dense and narrow, runs interleaved."""
    parts = pfl.data.partition_dirichlet(ds.y_train, 20, alpha=0.5, seed=0)
    clients = pfl.data.split_clients(ds.x_train, ds.y_train, parts)
    config = pfl.FedConfig(num_rounds=10, clients_per_round=10, local_epochs=2, batch_size=16,
                           learning_rate=0.05, seed=0)
    widths = {"dense 200-200": 200, "narrow 100-100": 100}
    seconds = {name: [] for name in widths}
    for repetition in range(FL_REPETITIONS + 1):  # the first repetition compiles: discarded
        for name, width in widths.items() if repetition % 2 else reversed(widths.items()):
            history = pfl.run_fedavg(lambda w=width: pfl.models.mlp_2nn(
                ds.input_shape, ds.num_classes, w), clients, (ds.x_test, ds.y_test), config)
            if repetition:
                seconds[name] += history.metric("seconds")
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    print(f"\nrun_fedavg, seconds per round (20 clients, 10 per round, 2 local epochs), median "
          f"of {FL_REPETITIONS} interleaved 10-round runs")
    for name, value in medians.items():
        print(f"  {name:<16} {value * 1e3:8.2f} ms   dense/this = "
              f"{medians['dense 200-200'] / value:4.2f}x")
    return medians["dense 200-200"] / medians["narrow 100-100"]


def main():
    """Run the benchmark; return the process exit status (1 if a target is missed)."""
    ds = pfl.data.load_dataset("digits")
    per_seed, tflite = [], None
    for seed in SEEDS:
        models, before = train_models(ds, seed)
        per_seed.append(accuracy_rows(ds, models, before))
        tflite = tflite or models  # latency: the seed-0 models (it does not depend on values)
    gap, gap_min, gap_max = print_accuracy(ds, per_seed)
    speedups = print_latencies(ds, tflite)
    fl_ratio = fl_round_seconds(ds)
    print("\nstructured (half-width) speed-up over dense, LiteRT whole calls: "
          f"batch 1 {speedups[1]:.2f}x, batch 64 {speedups[64]:.2f}x (target >= "
          f"{LATENCY_TARGET}x); invoke() alone: batch 1 {speedups['1 invoke']:.2f}x, "
          f"batch 64 {speedups['64 invoke']:.2f}x")
    print(f"fine-tuned accuracy gap, mean over seeds: {gap * 100:+.2f} points "
          f"[{gap_min * 100:+.2f}, {gap_max * 100:+.2f}] (target <= 1 point)")
    print(f"local training time per FL round, dense/narrow: {fl_ratio:.2f}x")
    missed = min(speedups[1], speedups[64]) < LATENCY_TARGET or gap > ACCURACY_TOLERANCE
    if missed:
        print("target MISSED: compare the call floor row with the models' times above")
    return int(missed)


if __name__ == "__main__":
    sys.exit(main())
