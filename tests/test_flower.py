"""Tests of prunefl_lite.flower: config and payload records, validation, and real localhost
deployments (a SuperLink and 3 SuperNodes as processes): every strategy agrees with
run_fedavg, a client's failure is raised, a bare PATH works, nothing is left running."""

import dataclasses
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from fl_setup import every_strategy

import prunefl_lite as pfl
from prunefl_lite import round as fl_round

flower = pytest.importorskip("prunefl_lite.flower")
from prunefl_lite.flower import processes, records  # noqa: E402

STRATEGIES = list(every_strategy())


@pytest.fixture(scope="module")
def task():
    """Digits over 3 IID clients, the 2NN, 3 rounds, 2 of 3 clients sampled each round."""
    ds = pfl.data.load_dataset("digits")
    parts = pfl.data.partition_iid(ds.y_train, 3, seed=0)
    clients = pfl.data.split_clients(ds.x_train, ds.y_train, parts)
    config = pfl.FedConfig(num_rounds=3, clients_per_round=2, local_epochs=2, batch_size=16,
                           learning_rate=0.1, seed=3)
    model_fn = lambda: pfl.models.mlp_2nn(ds.input_shape, ds.num_classes)  # noqa: E731
    return clients, (ds.x_test, ds.y_test), config, model_fn


# --- records and validation (no processes) ---------------------------------------------------
@pytest.mark.parametrize("config", [
    pfl.FedConfig(),
    pfl.FedConfig(num_rounds=3, learning_rate=0.2, server_learning_rate=0.5, seed=7),
    pfl.FedConfig(dropout_rate=0.25, eval_every=2),
    pfl.FedConfig(num_rounds=np.int64(3), learning_rate=np.float32(0.5), seed=np.int32(2)),
])
def test_run_config_round_trip_with_plain_toml_values(config):
    run_config = {**flower.config_to_run_config(config), "job": "x", "history-path": "y"}
    assert all("_" not in key for key in run_config)  # Flower's kebab-case keys
    assert flower.run_config_to_config(run_config) == config
    text = "\n".join(f"{k} = {records.toml_value(v)}" for k, v in run_config.items())
    import tomllib

    assert tomllib.loads(text) == run_config  # valid TOML, plain values


@pytest.mark.parametrize("bad", [None, {"num_rounds": 3}, "FedConfig()"])
def test_config_to_run_config_refuses_non_config(bad):
    with pytest.raises(ValueError, match="config must be a FedConfig"):
        flower.config_to_run_config(bad)


@pytest.mark.parametrize("clients, message", [
    ([], "clients must be a non-empty list"),
    ("abc", "clients must be a non-empty list"),
    ([(np.zeros((2, 3)), np.zeros(3))],
     r"clients\[0\] must hold at least one example .*, got 2 examples and 3 labels"),
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


def test_a_temporary_workdir_is_removed_by_stop_and_a_given_one_kept(task, tmp_path):
    own = flower.LocalDeployment(task[0])
    assert own.workdir.is_dir()
    own.stop()
    assert not own.workdir.exists()
    given = flower.LocalDeployment(task[0], workdir=tmp_path)
    given.stop()
    assert tmp_path.is_dir()


def test_run_requires_a_started_deployment(task, tmp_path):
    clients, test, config, model_fn = task
    with pytest.raises(RuntimeError, match="not started"):
        flower.LocalDeployment(clients, workdir=tmp_path).run(model_fn, test, config)


def test_message_bytes_dense_record_vs_sparse_payload():
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(64, 200)).astype(np.float32), np.zeros(200, np.float32)]
    pruned = pfl.pruning.apply_masks(weights, pfl.pruning.magnitude_masks(weights, 0.9))
    dense_record = flower.message_bytes(records.ArrayRecord(weights))
    pruned_record = flower.message_bytes(records.ArrayRecord(pruned))
    payload_record = flower.message_bytes(records.payload_record(pfl.compress.encode(pruned)))
    assert dense_record >= 4 * sum(w.size for w in weights)  # Flower sends arrays dense
    assert pruned_record == dense_record  # zeros cost as much as any float there
    assert payload_record < 0.3 * dense_record  # the package's payload carries the savings


def test_broadcast_and_upload_records_round_trip():
    weights = [np.array([[0.0, 1.5], [2.0, 0.0]], np.float32), np.ones(2, np.float32)]
    masks = [np.array([[False, True], [True, True]]), None]  # a kept weight that is zero
    plan = fl_round.RoundPlan(4, np.array([0]), np.array([0]), masks, {"report_counts": [1, 0]})
    payload, known, mask_payload = fl_round.Downloads().payloads(0, weights, masks)
    assert not known and mask_payload  # the mask cannot be read off the zeros: sent too
    content = records.broadcast_records(2, plan, payload, known, mask_payload)
    got, arrays = records.read_broadcast(content, 2, held=None)
    assert got.round_num == 4 and got.instructions == plan.instructions
    assert np.array_equal(got.masks[0], masks[0]) and got.masks[1] is None
    assert all(np.array_equal(a, b) for a, b in zip(arrays, weights))
    strategy = pfl.strategy.NoPruning()
    client = fl_round.ClientRound(4, 0, weights, masks, {}, 7, None)
    upload = fl_round.encode_upload(strategy, client, weights,
                                    {"k0": np.arange(4.0).reshape(2, 2)})
    content = records.upload_records(2, upload)
    back, up, report = records.read_upload(content, 2, strategy, masks, weights)
    assert (back.client_id, back.num_examples) == (0, 7) and report > 0
    weights_bytes, report_bytes = fl_round.upload_bytes(upload)
    assert (up, report) == (weights_bytes + report_bytes, report_bytes)
    assert np.array_equal(back.report["k0"], upload.report["k0"])
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, weights))


@pytest.mark.parametrize("bits", [16, 8])
def test_a_quantised_upload_is_decoded_to_what_the_client_sent(bits):
    class Quantised(pfl.strategy.NoPruning):
        upload_value_bits = bits

    rng = np.random.default_rng(0)
    start = [rng.normal(size=(20, 5)).astype(np.float32), np.zeros(5, np.float32)]
    trained = [w + 0.01 * rng.normal(size=w.shape).astype(np.float32) for w in start]
    client = fl_round.ClientRound(3, 1, start, None, {}, 10, None, seed=5)
    upload = fl_round.encode_upload(Quantised(), client, trained, None)
    content = records.upload_records(0, upload)
    back = records.read_upload(content, 0, Quantised(), None, start)[0]
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, upload.weights))
    error = max(float(np.max(np.abs(a - b))) for a, b in zip(upload.weights, trained))
    assert 0 < error < 0.1  # lossy: the update's grid, not the weights'
    assert len(upload.payload) < 0.6 * len(pfl.compress.encode(trained))


def test_a_strategy_class_from_the_learners_own_module_travels_by_value(tmp_path):
    wrapped = pfl.robust.RobustAggregation("median", pruning=RaisingUpload())
    assert records._own_modules([wrapped, lambda: None]) == {sys.modules[__name__]}
    assert records._own_modules([pfl.pruning.GlobalPruning(0.5)]) == set()
    records.write_job(tmp_path / "job.pkl", lambda: None, [wrapped], (np.zeros((1, 2)), [0]))
    code = ("import pickle, sys; job = pickle.load(open(sys.argv[1], 'rb')); "
            "print(type(job['strategies'][0].inner).__name__)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "job.pkl")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "RaisingUpload", done.stderr[-2000:]


def test_the_package_has_no_linux_only_process_code():
    package = pathlib.Path(pfl.__file__).parent
    text = "\n".join(p.read_text(encoding="utf-8") for p in package.rglob("*.py"))
    assert "/proc" not in text and "killpg" not in text and "getpgid" not in text


# --- real deployments ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def agreement(task, tmp_path_factory):
    """Every strategy through one deployment job (lockstep) and through run_fedavg."""
    clients, test, config, model_fn = task
    with flower.LocalDeployment(clients, workdir=tmp_path_factory.mktemp("fl")) as federation:
        pids = federation.pids
        assert processes.alive(pids) == pids  # SuperLink, SuperNodes, watchdog all run
        deployed = federation.run_many(model_fn, test, config, list(every_strategy().values()))
    simulated = [pfl.run_fedavg(model_fn, clients, test, config, pruning=s)
                 for s in every_strategy().values()]
    return dict(zip(STRATEGIES, zip(deployed, simulated))), federation, pids


@pytest.mark.slow
@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_on_a_deployment_agrees_with_run_fedavg(agreement, name):
    deployed, simulated = agreement[0][name]
    gaps = [100 * abs(a - b) for a, b in zip(deployed.metric("accuracy"),
                                              simulated.metric("accuracy"))]
    assert max(gaps) <= 1.5, gaps
    assert deployed.metric("sparsity")[-1] == pytest.approx(simulated.metric("sparsity")[-1],
                                                            abs=0.01)
    for key in ("bytes_up", "bytes_down", "bytes_report"):
        assert np.allclose(deployed.metric(key), simulated.metric(key), rtol=1e-3), key
    assert deployed.metric("clients_completed") == simulated.metric("clients_completed")
    assert deployed.metric("clients_sampled") == simulated.metric("clients_sampled")


@pytest.mark.slow
def test_the_deployment_stopped_every_process(agreement):
    _, federation, pids = agreement
    assert set(pids) <= federation.stopped_pids  # + descendants (SuperExec, ClientApps)
    assert len(federation.stopped_pids) > len(pids)
    assert processes.alive(federation.stopped_pids) == []


class RaisingUpload(pfl.strategy.NoPruning):
    """Client 1's upload raises (in the ClientApp, on the node)."""

    def client_upload(self, round_num, client_id, weights, global_weights):
        if client_id == 1:
            raise RuntimeError("client 1 cannot upload")
        return weights


@pytest.mark.slow
def test_a_client_failure_is_raised_or_recorded(task, tmp_path):
    clients, test, config, model_fn = task
    config = dataclasses.replace(config, num_rounds=1, clients_per_round=3)
    with flower.LocalDeployment(clients, workdir=tmp_path) as federation:
        with pytest.raises(fl_round.ClientFailure, match="client 1 failed in round 1") as info:
            federation.run(model_fn, test, config, pruning=RaisingUpload())
        assert "client 1 cannot upload" in info.value.details  # the node's traceback
        history = federation.run(model_fn, test, config, pruning=RaisingUpload(),
                                 accept_failures=True)
    assert history.metric("clients_failed") == [1]
    assert history.metric("clients_completed") == [2]
    assert "cannot upload" in history.metric("failures")[0][0]["details"]


@pytest.mark.slow
def test_a_deployment_starts_with_a_bare_path_outside_the_repository(task, tmp_path):
    """As from a kernel that was started without the virtual environment on PATH."""
    script = tmp_path / "bare.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        import prunefl_lite as pfl
        from prunefl_lite import flower
        ds = pfl.data.load_dataset("digits")
        parts = pfl.data.partition_iid(ds.y_train, 2, seed=0)
        clients = pfl.data.split_clients(ds.x_train, ds.y_train, parts)
        config = pfl.FedConfig(num_rounds=1, clients_per_round=2, seed=0)
        model_fn = lambda: pfl.models.mlp_2nn(ds.input_shape, ds.num_classes)
        with flower.LocalDeployment(clients, workdir="work") as federation:
            history = federation.run(model_fn, (ds.x_test, ds.y_test), config)
        print("completed", history.metric("clients_completed"))
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/bin:/bin"
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "completed [2]" in done.stdout


@pytest.mark.slow
def test_deployment_stops_every_process_on_error(task, tmp_path):
    with pytest.raises(KeyError, match="boom"):
        with flower.LocalDeployment(task[0], workdir=tmp_path) as federation:
            pids = federation.pids
            raise KeyError("boom")
    assert pids and processes.alive(federation.stopped_pids) == []
    assert (tmp_path / "superlink.log").exists()  # logs went to files


@pytest.mark.slow
def test_watchdog_stops_the_deployment_when_its_owner_is_killed(tmp_path):
    """A kernel killed by a signal runs no atexit handler: the watchdog stops the processes."""
    script = tmp_path / "owner.py"
    script.write_text(
        "import time\nimport numpy as np\nfrom prunefl_lite import flower\n"
        "clients = [(np.zeros((4, 3), np.float32), np.zeros(4, np.int64))] * 2\n"
        f"d = flower.LocalDeployment(clients, workdir={str(tmp_path / 'work')!r}).start()\n"
        "time.sleep(5)\n"  # the SuperNodes start their SuperExec children
        "print(' '.join(map(str, d.pids)), flush=True)\ntime.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in owner.stdout.readline().split()]
        import psutil

        tree = [q.pid for p in pids for q in [psutil.Process(p),
                                              *psutil.Process(p).children(recursive=True)]]
        assert len(pids) == 4 and processes.alive(pids) == pids
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 60
    while processes.alive(tree) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes.alive(tree) == []
