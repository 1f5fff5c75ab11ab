"""Benchmark: validation and test accuracy, sparsity and bytes of the federated pruning strategies.

Issue 16's setting: digits, 20 Dirichlet(0.5) clients, 10 per round, 40 rounds, 2 local epochs,
batch 16, SGD 0.05, the 2NN; seeds 0, 1, 2 (each seed draws its own partition, sampling,
shuffles and initial weights). Accuracy is the mean over the last 5 rounds, on the VALIDATION
split (what a choice may be based on) and on the TEST split (reported only); each table shows
the mean, min and max over the seeds. Bytes are totals over all rounds and all clients, both
directions, as produced by the package's encoder (everything sent).

The second table compares GlobalPruning(0.9) schedules (cubic / linear ramp ending at 50, 75 or
90 % of the rounds) on validation accuracy: the candidate with the best seed-mean validation
accuracy is the one a default should use.

Run: python tests/benchmarks/bench_fl_pruning.py  (about 60 runs of 40 rounds)
"""

import numpy as np

import prunefl_lite as pfl
from prunefl_lite.pruning import ClientPruning, GlobalPruning
from prunefl_lite.strategy import NoPruning

SEEDS = (0, 1, 2)
TAIL = 5
STRATEGIES = {
    "dense FedAvg": NoPruning,
    "GlobalPruning(0.9) defaults": lambda: GlobalPruning(0.9),
    "GlobalPruning(0.8) defaults": lambda: GlobalPruning(0.8),
    "ClientPruning(0.8) keepers": lambda: ClientPruning(0.8),
    "ClientPruning(0.8) mean": lambda: ClientPruning(0.8, aggregation="mean"),
}
SCHEDULES = {
    f"{'linear' if power == 1 else 'cubic'}, ramp ends at {end:.0%}": (power, end)
    for power in (1, 3) for end in (0.5, 0.75, 0.9)
}


def tracked(strategy):
    """Make `strategy` keep a copy of the global weights after every round (`.per_round`)."""
    inner = strategy.finish_round
    strategy.per_round = []

    def finish_round(round_num, weights):
        weights = inner(round_num, weights)
        strategy.per_round.append([w.copy() for w in weights])
        return weights

    strategy.finish_round = finish_round
    return strategy


def accuracy(model, weights, x, y):
    """Accuracy (fraction) of `model` with `weights` on (x, y)."""
    model.set_weights(weights)
    return float(np.mean(np.argmax(model(x, training=False), axis=1) == y))


def run(seed, make_strategy):
    """One run of the setting; returns a dict of its figures."""
    ds = pfl.data.load_dataset("digits")
    parts = pfl.data.partition_dirichlet(ds.y_train, 20, alpha=0.5, seed=seed)
    clients = pfl.data.split_clients(ds.x_train, ds.y_train, parts)
    config = pfl.FedConfig(num_rounds=40, clients_per_round=10, local_epochs=2, batch_size=16,
                           learning_rate=0.05, seed=seed)
    model_fn = lambda: pfl.models.mlp_2nn(ds.input_shape, ds.num_classes)  # noqa: E731
    strategy = tracked(make_strategy())
    # the history's per-round "accuracy" is validation accuracy: the engine evaluates on it
    history = pfl.run_fedavg(model_fn, clients, (ds.x_val, ds.y_val), config, pruning=strategy)
    model = model_fn()
    test = [accuracy(model, w, ds.x_test, ds.y_test) for w in strategy.per_round[-TAIL:]]
    return {
        "val": 100 * history.tail_mean("accuracy", TAIL),
        "test": 100 * float(np.mean(test)),
        "sparsity": 100 * history.metric("sparsity")[-1],
        "up": history.total("bytes_up") / 1e6,
        "down": history.total("bytes_down") / 1e6,
    }


def spread(results, key):
    """'mean [min, max]' of one figure over the seeds."""
    values = [r[key] for r in results]
    return f"{np.mean(values):6.2f} [{min(values):6.2f},{max(values):6.2f}]"


def table(rows, title):
    """Print one row per strategy: accuracies (%), sparsity (%), total MB up and down."""
    print(f"\n{title}\n{'':34s} {'validation acc %':>22s} {'test acc %':>22s} "
          f"{'sparsity %':>10s} {'MB up':>7s} {'MB down':>8s}")
    for name, results in rows.items():
        print(f"{name:34s} {spread(results, 'val'):>22s} {spread(results, 'test'):>22s} "
              f"{np.mean([r['sparsity'] for r in results]):10.1f} "
              f"{np.mean([r['up'] for r in results]):7.2f} "
              f"{np.mean([r['down'] for r in results]):8.2f}")


def main():
    """Run every strategy and every schedule candidate on every seed; print both tables."""
    rows = {name: [run(s, make) for s in SEEDS] for name, make in STRATEGIES.items()}
    table(rows, f"Strategies (seeds {SEEDS}; accuracy: mean of the last {TAIL} rounds, "
                "mean [min, max] over seeds; MB: totals over 40 rounds, mean over seeds)")
    candidates = {
        name: [run(s, lambda p=p, e=e: GlobalPruning(0.9, power=p, end_fraction=e))
               for s in SEEDS]
        for name, (p, e) in SCHEDULES.items()
    }
    table(candidates, "GlobalPruning(0.9) schedule candidates (choose on VALIDATION)")
    best = max(candidates, key=lambda n: np.mean([r["val"] for r in candidates[n]]))
    print(f"\nbest seed-mean validation accuracy: {best}; the current default is "
          f"linear, ramp ends at 75%")


if __name__ == "__main__":
    main()
