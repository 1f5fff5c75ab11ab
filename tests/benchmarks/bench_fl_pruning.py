"""Benchmark: accuracy vs sparsity vs uploaded bytes of the federated pruning strategies.

Issue 4's setting: digits, 20 Dirichlet(0.5) clients, 10 per round, 40 rounds, 2 local epochs,
batch 16, SGD 0.05, the 2NN; seeds 0, 1, 2. Accuracy is the mean of the last 5 rounds, averaged
over the seeds. Upload ratio: dense bytes per round / pruned bytes per round, in the last round.

Run: python tests/benchmarks/bench_fl_pruning.py
"""

import numpy as np

import prunefl_lite as pfl
from prunefl_lite.pruning import ClientPruning, GlobalPruning

SEEDS = (0, 1, 2)
STRATEGIES = {
    "dense FedAvg": lambda: None,
    "GlobalPruning(0.9) defaults (linear, 75 %)": lambda: GlobalPruning(0.9),
    "GlobalPruning(0.9) cubic over 50 %": lambda: GlobalPruning(0.9, end_fraction=0.5, power=3),
    "ClientPruning(0.8) keepers": lambda: ClientPruning(0.8),
    "ClientPruning(0.8) mean": lambda: ClientPruning(0.8, aggregation="mean"),
}


def run(seed, make_strategy):
    """One run of the issue's setting; returns its History."""
    ds = pfl.data.load_dataset("digits")
    parts = pfl.data.partition_dirichlet(ds.y_train, 20, alpha=0.5, seed=seed)
    clients = pfl.data.split_clients(ds.x_train, ds.y_train, parts)
    config = pfl.FedConfig(num_rounds=40, clients_per_round=10, local_epochs=2, batch_size=16,
                           learning_rate=0.05, seed=seed)
    return pfl.run_fedavg(lambda: pfl.models.mlp_2nn(ds.input_shape, ds.num_classes), clients,
                          (ds.x_test, ds.y_test), config, pruning=make_strategy())


def main():
    """Run every strategy on every seed and print the table."""
    results = {name: [run(seed, make) for seed in SEEDS] for name, make in STRATEGIES.items()}
    dense = results["dense FedAvg"]
    dense_acc = np.mean([h.tail_mean("accuracy") for h in dense])
    dense_up = np.mean([h.metric("bytes_up")[-1] / h.metric("clients_completed")[-1]
                        for h in dense])
    print(f"{'strategy':44s} {'acc (last 5)':>12s} {'vs dense':>9s} {'sparsity':>9s} "
          f"{'KB up/client':>12s} {'dense/this':>10s}")
    for name, histories in results.items():
        acc = np.mean([h.tail_mean("accuracy") for h in histories])
        up = np.mean([h.metric("bytes_up")[-1] / h.metric("clients_completed")[-1]
                      for h in histories])
        sparsity = np.mean([h.metric("sparsity")[-1] for h in histories])
        print(f"{name:44s} {acc:12.4f} {100 * (acc - dense_acc):+8.2f}p {sparsity:9.3f} "
              f"{up / 1e3:12.1f} {dense_up / up:9.1f}x")
    print("\ntargets: GlobalPruning(0.9) within 1.0 point of dense and >= 8x fewer upload bytes; "
          "ClientPruning(0.8) at 80 % sparsity above 0.85 accuracy")


if __name__ == "__main__":
    main()
