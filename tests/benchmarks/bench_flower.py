"""Benchmark: the same federated job through run_fedavg and through a Flower 1.42 deployment.

The job: digits over 3 IID clients (one SuperNode each), all 3 per round, 5 rounds of FedAvg
with GlobalPruning(0.8) (3 local epochs, batch 16, SGD 0.1), the 2NN, seed 0. Both runs happen
side by side in this process; the script prints ratios (Flower / run_fedavg) of the wall time
per round and of the whole job, the start-up time of the deployment (SuperLink and SuperNodes
until the first run is accepted is part of the job's time), the bytes per round of Flower's
messages against the package's payloads, and the accuracy gap.

Flower's simulation engine (Ray) is timed too when `ray` is importable (`flwr[simulation]`);
otherwise the script says so. Ray is not part of the course's pinned stack.

Run: python tests/benchmarks/bench_flower.py  (a few minutes: every round starts a ClientApp
process per node, each importing TensorFlow)
"""

import importlib.util
import time

import numpy as np

import prunefl_lite as pfl
from prunefl_lite import flower

ROUNDS = 5


def job():
    """Clients, test pair, config, model function and strategy maker of the benchmark job."""
    ds = pfl.data.load_dataset("digits")
    parts = pfl.data.partition_iid(ds.y_train, 3, seed=0)
    clients = pfl.data.split_clients(ds.x_train, ds.y_train, parts)
    config = pfl.FedConfig(num_rounds=ROUNDS, clients_per_round=3, local_epochs=3,
                           batch_size=16, learning_rate=0.1, seed=0)
    model_fn = lambda: pfl.models.mlp_2nn(ds.input_shape, ds.num_classes)  # noqa: E731
    return clients, (ds.x_test, ds.y_test), config, model_fn, lambda: pfl.pruning.GlobalPruning(0.8)


def main():
    clients, test, config, model_fn, make = job()
    pfl.run_fedavg(model_fn, clients, test, config, pruning=make())  # warm-up: trace once
    start = time.perf_counter()
    sim = pfl.run_fedavg(model_fn, clients, test, config, pruning=make())
    sim_job = time.perf_counter() - start

    start = time.perf_counter()
    with flower.LocalDeployment(clients) as federation:
        started = time.perf_counter() - start
        run_start = time.perf_counter()
        deployed = federation.run(model_fn, test, config, pruning=make())
        flower_job = time.perf_counter() - run_start
    total = time.perf_counter() - start

    sim_round = float(np.mean(sim.metric("seconds")))
    flower_round = float(np.mean(deployed.metric("seconds")))
    print(f"job: {ROUNDS} rounds, 3 clients, GlobalPruning(0.8); seed 0")
    print(f"wall per round   Flower / run_fedavg = {flower_round / sim_round:8.1f}  "
          f"({flower_round:.2f} s vs {sim_round:.4f} s)")
    print(f"wall per job     Flower / run_fedavg = {flower_job / sim_job:8.1f}  "
          f"(flwr run to History: {flower_job:.1f} s vs {sim_job:.3f} s)")
    print(f"deployment start-up + stop / run_fedavg job = {(total - flower_job) / sim_job:8.1f}  "
          f"(start {started:.1f} s)")
    gap = 100 * (deployed.metric("accuracy")[-1] - sim.metric("accuracy")[-1])
    print(f"final test accuracy: Flower {100 * deployed.metric('accuracy')[-1]:.1f} %, "
          f"run_fedavg {100 * sim.metric('accuracy')[-1]:.1f} % (gap {gap:+.1f} points)")
    print("round  payload down  message down  payload up  message up  (all 3 clients)")
    for r, rec in enumerate(deployed.rounds, 1):
        print(f"{r:>5}{rec['bytes_down']:>14,}{rec['message_bytes_down']:>14,}"
              f"{rec['bytes_up']:>12,}{rec['message_bytes_up']:>12,}")
    first, last = deployed.rounds[0], deployed.rounds[-1]
    wire = (last["message_bytes_down"] + last["message_bytes_up"]) / (
        first["message_bytes_down"] + first["message_bytes_up"])
    print(f"message bytes, last round / first (dense) round = {wire:.3f}")
    if importlib.util.find_spec("ray") is None:
        print("Flower simulation engine: not timed (ray is not installed; it comes with "
              "flwr[simulation], outside the course's pinned stack)")
        return
    start = time.perf_counter()
    with flower.LocalDeployment(clients, engine="simulation") as engine:
        run_start = time.perf_counter()
        simulated = engine.run(model_fn, test, config, pruning=make())
        engine_job = time.perf_counter() - run_start
    engine_total = time.perf_counter() - start
    engine_round = float(np.mean(simulated.metric("seconds")))
    print(f"Flower simulation engine (Ray): wall per round / run_fedavg = "
          f"{engine_round / sim_round:8.1f}; per job = {engine_job / sim_job:8.1f}; "
          f"deployment / simulation engine per round = {flower_round / engine_round:6.2f}")
    print(f"  (simulation engine: {engine_round:.2f} s per round, {engine_job:.1f} s per job, "
          f"{engine_total:.1f} s with start and stop; final accuracy "
          f"{100 * simulated.metric('accuracy')[-1]:.1f} %)")


if __name__ == "__main__":
    main()
