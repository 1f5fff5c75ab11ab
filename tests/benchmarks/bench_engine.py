"""Benchmark: run_fedavg vs the naive per-client compile/fit loop vs a raw compiled-step floor.

Workload (issue 3): digits, 20 IID clients, all 20 sampled per round, 20 rounds, 1 local epoch,
batch 32, SGD 0.05, McMahan's 2NN. Three ways, timed side by side in one process, interleaved,
several repetitions, medians:

* engine: `prunefl_lite.run_fedavg` (includes building the model with model_fn, encoding every
  payload both ways, aggregation, and a test evaluation after every round);
* naive: what the source articles and many tutorials do, per round and client:
  `clone_model` + `compile` + `set_weights` + `fit`, then a NumPy average. It is so slow that it
  runs `NAIVE_ROUNDS` rounds; its time is compared per round;
* floor: the same local SGD steps (same batch count and shape) through one compiled train step
  called from a Python loop, with no FL around it (no weight swaps, no aggregation, no evaluation).

Where the engine's time beyond the floor goes (measured by wrapping the calls, loaded machine):
the local training itself is at or below the floor (one compiled call runs all of a round's
steps); the rest is encoding the 21 payloads per round (about 10 % of a run), the evaluation
after every round (about 10 %), building the model (3-5 %) and aggregation in float64.

The machine may be shared: the load average is printed, and besides the ratio of the medians
the median of the per-repetition ratios (each pair run back to back) is shown.

Run: python tests/benchmarks/bench_engine.py
"""

import os
import statistics
import time

import numpy as np
import tensorflow as tf

import prunefl_lite as pfl
from prunefl_lite.client import plan_local_steps

REPETITIONS = 9  # engine and floor; the naive loop runs in the first NAIVE_REPETITIONS
NAIVE_REPETITIONS = 3
NAIVE_ROUNDS = 2
CONFIG = pfl.FedConfig(num_rounds=20, clients_per_round=20, local_epochs=1, batch_size=32,
                       learning_rate=0.05, seed=0)


def workload():
    """The digits data split over 20 IID clients."""
    ds = pfl.data.load_dataset("digits")
    parts = pfl.data.partition_iid(ds.y_train, 20, seed=0)
    return ds, pfl.data.split_clients(ds.x_train, ds.y_train, parts)


def engine_seconds(model_fn, clients, test):
    """Wall time of one run_fedavg run, and its final accuracy."""
    start = time.perf_counter()
    history = pfl.run_fedavg(model_fn, clients, test, CONFIG)
    return time.perf_counter() - start, history.metric("accuracy")[-1]


def naive_seconds_per_round(model_fn, clients):
    """Per-round wall time of the clone/compile/fit-per-client loop."""
    global_model = model_fn()
    weights = global_model.get_weights()
    start = time.perf_counter()
    for _ in range(NAIVE_ROUNDS):
        updates, counts = [], []
        for x, y in clients:
            local = tf.keras.models.clone_model(global_model)
            local.compile(optimizer=tf.keras.optimizers.SGD(CONFIG.learning_rate),
                          loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            local.set_weights(weights)
            local.fit(x, y, batch_size=CONFIG.batch_size, epochs=CONFIG.local_epochs, verbose=0)
            updates.append(local.get_weights())
            counts.append(len(y))
        weights = pfl.server.weighted_average(updates, counts)
    return (time.perf_counter() - start) / NAIVE_ROUNDS


def make_floor(model_fn, clients):
    """A compiled SGD step and the exact batches the engine trains on, with no FL around."""
    model = model_fn()
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x_all = tf.constant(np.concatenate([c[0] for c in clients]))
    y_all = tf.constant(np.concatenate([c[1] for c in clients]))
    bounds = np.cumsum([0] + [len(c[1]) for c in clients])
    rows = [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    @tf.function
    def step(idx):
        with tf.GradientTape() as tape:
            loss = loss_fn(tf.gather(y_all, idx), model(tf.gather(x_all, idx), training=True))
        for v, g in zip(model.trainable_variables, tape.gradient(loss, model.trainable_variables)):
            v.assign_sub(CONFIG.learning_rate * g)

    rng = np.random.default_rng(0)
    plans = [plan_local_steps(rows, 1, CONFIG.batch_size, rng) for _ in range(CONFIG.num_rounds)]
    batches = [tf.constant(idx) for plan in plans for idx in plan["rows"]]

    def run():
        start = time.perf_counter()
        for idx in batches:
            step(idx)
        return time.perf_counter() - start

    run()  # trace
    return run, len(batches)


def main():
    """Time the three loops interleaved and print the two ratios."""
    ds, clients = workload()
    test = (ds.x_test, ds.y_test)

    def model_fn():
        return pfl.models.mlp_2nn(ds.input_shape, ds.num_classes)

    steps_per_round = sum(-(-len(c[1]) // CONFIG.batch_size) for c in clients)
    floor, floor_steps = make_floor(model_fn, clients)
    assert floor_steps == steps_per_round * CONFIG.num_rounds, (floor_steps, steps_per_round)
    print(f"load average (1, 5, 15 min) at the start: {os.getloadavg()} on {os.cpu_count()} cores")
    engine_seconds(model_fn, clients, test)  # warm-up: traces the round function once
    engine, naive, raw, accuracy = [], [], [], None
    for rep in range(REPETITIONS):
        seconds, accuracy = engine_seconds(model_fn, clients, test)
        engine.append(seconds)
        raw.append(floor())
        if rep < NAIVE_REPETITIONS:
            naive.append(naive_seconds_per_round(model_fn, clients) * CONFIG.num_rounds)
        print(f"repetition {rep + 1}: engine {engine[-1]:.3f} s, floor {raw[-1]:.3f} s"
              + (f", naive {naive[-1]:.1f} s (from {NAIVE_ROUNDS} rounds)"
                 if rep < NAIVE_REPETITIONS else ""))
    e, n, f = (statistics.median(v) for v in (engine, naive, raw))
    print(f"\nworkload: 20 clients x 20 rounds, {steps_per_round} local steps per round, "
          f"final accuracy {accuracy:.3f}")
    print(f"median seconds for 20 rounds: engine {e:.3f}, naive {n:.1f}, raw-step floor {f:.3f}")
    paired = statistics.median(a / b for a, b in zip(engine, raw))
    print(f"naive / engine = {n / e:.0f}x   (target >= 100x)")
    print(f"engine / floor = {e / f:.2f}x  (target <= 1.2x); median of the per-repetition "
          f"ratios {paired:.2f}x, of the fastest runs {min(engine) / min(raw):.2f}x")
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
