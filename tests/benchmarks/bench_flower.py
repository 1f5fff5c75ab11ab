"""Benchmark: the same federated jobs through run_fedavg and through a Flower 1.42 deployment.

The job: digits over 3 IID clients (one SuperNode each), all 3 per round, 3 rounds (2 local
epochs, batch 16, SGD 0.1), the 2NN, seed 0, for the strategies of `tests/fl_setup.py`'s
`every_strategy()`. Measured side by side in this process:

- wall time per round, deployment / run_fedavg, for one strategy per job and for all the
  strategies in one lockstep job (one message per node and round carries them all);
- where a deployed round's time goes: a fresh Python process importing the package (and so
  TensorFlow), as every ClientApp message does; building and tracing the client's trainer;
  the local training itself; the rest (Flower's polling and messaging);
- the accuracy gap and the payload bytes against run_fedavg's.

Run: python tests/benchmarks/bench_flower.py  (a few minutes)
"""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import prunefl_lite as pfl
from prunefl_lite import flower
from prunefl_lite import round as fl_round

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fl_setup import every_strategy  # noqa: E402

ROUNDS = 3


def job():
    """Clients, test pair, config and model function of the benchmark job."""
    ds = pfl.data.load_dataset("digits")
    parts = pfl.data.partition_iid(ds.y_train, 3, seed=0)
    clients = pfl.data.split_clients(ds.x_train, ds.y_train, parts)
    config = pfl.FedConfig(num_rounds=ROUNDS, clients_per_round=3, local_epochs=2,
                           batch_size=16, learning_rate=0.1, seed=0)
    model_fn = lambda: pfl.models.mlp_2nn(ds.input_shape, ds.num_classes)  # noqa: E731
    return clients, (ds.x_test, ds.y_test), config, model_fn


def import_seconds(repeats=3):
    """Median wall time of a fresh interpreter importing prunefl_lite (TensorFlow included)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import prunefl_lite"], check=True)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def client_seconds(model_fn, clients, config, strategy):
    """(build + trace, train) seconds of one client's first local update in this process."""
    fl_round._TRAINERS.clear()  # as in a fresh ClientApp process
    start = time.perf_counter()
    trainer, weights = fl_round.build_trainer(model_fn, strategy, config)
    x, y = clients[0]
    trainer.set_data(x, y)
    plan = fl_round.RoundPlan(1, np.array([0]), np.array([0]), None, {})
    built = time.perf_counter() - start
    fl_round.local_update(trainer, strategy, plan, [0], [np.arange(len(y))], weights, config)
    return built, time.perf_counter() - start - built


def main():
    clients, test, config, model_fn = job()
    names = list(every_strategy())
    pfl.run_fedavg(model_fn, clients, test, config)  # warm-up: trace once
    sims, sim_round = {}, []
    for name, strategy in every_strategy().items():
        sims[name] = pfl.run_fedavg(model_fn, clients, test, config, pruning=strategy)
        sim_round.append(np.mean(sims[name].metric("seconds")))
    built, trained = client_seconds(model_fn, clients, config, pfl.strategy.NoPruning())
    imported = import_seconds()
    with flower.LocalDeployment(clients) as federation:
        start = time.perf_counter()
        single = federation.run(model_fn, test, config)
        single_job = time.perf_counter() - start
        start = time.perf_counter()
        many = federation.run_many(model_fn, test, config, list(every_strategy().values()))
        many_job = time.perf_counter() - start
    sim_mean = float(np.mean(sim_round))
    single_round = float(np.mean(single.metric("seconds")))
    many_round = float(np.mean(many[0].metric("seconds")))
    print(f"job: {ROUNDS} rounds, 3 SuperNodes, all sampled; {len(names)} strategies")
    print(f"wall per round, one strategy per job: deployment / run_fedavg = "
          f"{single_round / sim_mean:7.1f}  ({single_round:.2f} s vs {sim_mean:.4f} s)")
    print(f"wall per round, {len(names)} strategies in one job: deployment / run_fedavg "
          f"({len(names)} runs) = {many_round / (len(names) * sim_mean):7.1f}  "
          f"({many_round:.2f} s vs {len(names) * sim_mean:.3f} s)")
    print(f"whole job: one strategy {single_job:.1f} s, {len(names)} strategies "
          f"{many_job:.1f} s (ratio {many_job / single_job:.2f} for {len(names)}x the work)")
    other = single_round - imported - built - trained
    print("where a deployed round's time goes (one strategy, seconds and share):")
    for label, value in (("new process + import (TensorFlow)", imported),
                         ("build model + trace trainer", built), ("local training", trained),
                         ("Flower messaging and polling (the rest)", other)):
        print(f"  {label:<42}{value:7.2f} s  {100 * value / single_round:5.1f} %")
    gaps = [100 * abs(h.metric("accuracy")[-1] - sims[n].metric("accuracy")[-1])
            for n, h in zip(names, many)]
    same_bytes = all(np.allclose(h.metric(k), sims[n].metric(k), rtol=1e-3)
                     for n, h in zip(names, many) for k in ("bytes_up", "bytes_down"))
    print(f"accuracy after round {ROUNDS}: largest gap to run_fedavg {max(gaps):.2f} points; "
          f"payload bytes equal to run_fedavg's within 0.1 %: {same_bytes}")


if __name__ == "__main__":
    main()
