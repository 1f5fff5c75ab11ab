"""Tests of prunefl_lite.flower: config round trip, validation, message sizes, and a real
localhost deployment (SuperLink + 3 SuperNodes) agreeing with run_fedavg."""

import dataclasses
import subprocess
import sys
import time

import numpy as np
import pytest

import prunefl_lite as pfl

flower = pytest.importorskip("prunefl_lite.flower")


@pytest.fixture(scope="module")
def task():
    """Digits over 3 IID clients, the 2NN, and a config whose accuracy is stable over seeds."""
    ds = pfl.data.load_dataset("digits")
    parts = pfl.data.partition_iid(ds.y_train, 3, seed=0)
    clients = pfl.data.split_clients(ds.x_train, ds.y_train, parts)
    config = pfl.FedConfig(num_rounds=3, clients_per_round=3, local_epochs=3, batch_size=16,
                           learning_rate=0.1, seed=0)
    model_fn = lambda: pfl.models.mlp_2nn(ds.input_shape, ds.num_classes)  # noqa: E731
    return clients, (ds.x_test, ds.y_test), config, model_fn


@pytest.mark.parametrize("config", [
    pfl.FedConfig(),
    pfl.FedConfig(num_rounds=3, learning_rate=0.2, server_learning_rate=0.5, seed=7),
    pfl.FedConfig(dropout_rate=0.25, eval_every=2),
])
def test_run_config_round_trip(config):
    run_config = {**flower.config_to_run_config(config), "job": "x", "history-path": "y"}
    assert all("_" not in key for key in run_config)  # Flower's kebab-case keys
    assert flower.run_config_to_config(run_config) == config


@pytest.mark.parametrize("bad", [None, {"num_rounds": 3}, "FedConfig()"])
def test_config_to_run_config_refuses_non_config(bad):
    with pytest.raises(ValueError, match="config must be a FedConfig"):
        flower.config_to_run_config(bad)


@pytest.mark.parametrize("clients, message", [
    ([], "clients must be a non-empty list"),
    ("abc", "clients must be a non-empty list"),
    ([(np.zeros((2, 3)), np.zeros(3))],
     r"clients\[0\] must hold at least one example .*, got 2 examples and 3 labels"),
    ([(np.zeros((2, 3)), np.zeros(2)), (np.zeros((0, 3)), np.zeros(0))],
     r"clients\[1\] must hold at least one example .*, got 0 examples and 0 labels"),
])
def test_deployment_refuses_bad_clients(clients, message):
    with pytest.raises(ValueError, match=message):
        flower.LocalDeployment(clients)


@pytest.mark.parametrize("change, message", [
    ({"clients_per_round": 4}, "clients_per_round must be in"),
    ({"batch_norm": "local"}, "config.batch_norm must be 'average'"),
])
def test_run_refuses_configs_it_cannot_honour(task, tmp_path, change, message):
    clients, test, config, model_fn = task
    deployment = flower.LocalDeployment(clients, workdir=tmp_path)  # not started: no process
    with pytest.raises(ValueError, match=message):
        deployment.run(model_fn, test, dataclasses.replace(config, **change))
    assert deployment.processes == {}


def test_run_requires_a_started_deployment(task, tmp_path):
    clients, test, config, model_fn = task
    with pytest.raises(RuntimeError, match="not started"):
        flower.LocalDeployment(clients, workdir=tmp_path).run(model_fn, test, config)


@pytest.mark.parametrize("bad", [None, "GlobalPruning", object()])
def test_package_strategy_refuses_non_strategies(task, bad):
    with pytest.raises(ValueError, match="strategy must be a NoPruning instance"):
        flower.PackageStrategy(bad, task[2], trainer=None, test=None, num_nodes=3)


def test_message_bytes_dense_record_vs_sparse_payload():
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(64, 200)).astype(np.float32), np.zeros(200, np.float32)]
    pruned = pfl.pruning.apply_masks(weights, pfl.pruning.magnitude_masks(weights, 0.9))
    dense_record = flower.message_bytes(flower.ArrayRecord(weights))
    pruned_record = flower.message_bytes(flower.ArrayRecord(pruned))
    payload_record = flower.message_bytes(flower._payload_record(pfl.compress.encode(pruned)))
    assert dense_record >= 4 * sum(w.size for w in weights)  # Flower sends arrays dense
    assert pruned_record == dense_record  # zeros cost as much as any float there
    assert payload_record < 0.3 * dense_record  # the package's payload carries the savings


def test_deployment_agrees_with_run_fedavg_and_stops_every_process(task, tmp_path):
    clients, test, config, model_fn = task
    make = lambda: pfl.pruning.GlobalPruning(0.8)  # noqa: E731
    reference = pfl.run_fedavg(model_fn, clients, test, config, pruning=make())
    with flower.LocalDeployment(clients, workdir=tmp_path) as federation:
        groups = federation.process_groups
        assert all(flower.group_members(g) for g in groups)  # SuperLink + 3 SuperNodes live
        history = federation.run(model_fn, test, config, pruning=make())
    assert len(groups) == 2 + len(clients)  # SuperLink, SuperNodes, watchdog
    assert all(flower.group_members(g) == [] for g in groups)  # nothing left running
    assert set(groups) < federation.stopped_pids  # + processes in their own sessions
    assert flower.alive(federation.stopped_pids) == []
    assert all(p.poll() is not None for p in federation.processes.values())
    # agreement after the same rounds with the same seed (shuffles differ: see chapter 09)
    gap = 100 * abs(history.metric("accuracy")[-1] - reference.metric("accuracy")[-1])
    assert gap <= 2.0, gap
    assert history.metric("clients_completed") == [3] * config.num_rounds
    assert history.metric("sparsity")[-1] == pytest.approx(0.8, abs=1e-3)
    # the payloads are the package's: the same lengths as the simulation's, to 0.1 %
    for key in ("bytes_down", "bytes_up"):
        assert np.allclose(history.metric(key), reference.metric(key), rtol=1e-3), key
    # bytes saved on the wire: Flower's messages shrink once the model is pruned
    for key in ("message_bytes_down", "message_bytes_up"):
        sizes = [r[key] for r in history.rounds]
        assert sizes[-1] < 0.5 * sizes[0], (key, sizes)
    payload = [r["bytes_up"] for r in history.rounds]
    assert all(m > p for m, p in zip([r["message_bytes_up"] for r in history.rounds], payload))


def test_deployment_stops_every_process_on_error(task, tmp_path):
    clients = task[0]
    with pytest.raises(KeyError, match="boom"):
        with flower.LocalDeployment(clients, workdir=tmp_path) as federation:
            groups = federation.process_groups
            raise KeyError("boom")
    assert groups and all(flower.group_members(g) == [] for g in groups)
    assert flower.alive(federation.stopped_pids) == []
    assert (tmp_path / "superlink.log").exists()  # logs went to files


def test_watchdog_stops_the_deployment_when_its_owner_is_killed(tmp_path):
    """A kernel killed by a signal runs no atexit handler: the watchdog stops the processes."""
    script = tmp_path / "owner.py"
    script.write_text(
        "import time\nimport numpy as np\nfrom prunefl_lite import flower\n"
        "clients = [(np.zeros((4, 3), np.float32), np.zeros(4, np.int64))] * 2\n"
        f"d = flower.LocalDeployment(clients, workdir={str(tmp_path / 'work')!r}).start()\n"
        "print(' '.join(map(str, d.process_groups)), flush=True)\ntime.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        groups = [int(g) for g in owner.stdout.readline().split()]
        assert len(groups) == 4 and all(flower.group_members(g) for g in groups)
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 60
    while any(flower.group_members(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(flower.group_members(g) for g in groups)
