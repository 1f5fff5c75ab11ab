"""Flower 1.42 bridge: a ClientApp and a ServerApp running the package's strategies, and a
localhost deployment (one SuperLink, one SuperNode per client) that starts and stops them.

One adapter, not a second implementation: the ServerApp's `PackageStrategy` is a Flower
`Strategy` whose methods call the package strategy's hooks (`start`, `round_masks`,
`aggregate`, `finish_round`) and `server.server_update`; the ClientApp does the package's local
update (`client.ClientTrainer` under the strategy's `wrap_model`, `masked`, `pruning_steps` and
`client_upload`). Any `strategy.NoPruning` subclass works, so do later rules (DP, robust).

Both directions carry `compress.encode` payloads inside the Flower messages (one uint8 array in
an `ArrayRecord`), so the savings of sparse payloads are on the wire; `message_bytes` measures
the serialised size of each message Flower pushes, which the history records beside the
payload lengths.

Importing this module imports `flwr` (the package's `__init__` does not import it).

Example (a deployment takes tens of seconds, so it is not run as a doctest)::

    with LocalDeployment(clients) as federation:          # SuperLink + one SuperNode each
        history = federation.run(model_fn, test, config, pruning=GlobalPruning(0.9))
"""

import atexit
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.serverapp.strategy import Strategy

from prunefl_lite import compress
from prunefl_lite.client import ClientTrainer, check_model, classify_variables, plan_local_steps
from prunefl_lite.config import FedConfig
from prunefl_lite.fedavg import client_seeds, kernel_sparsity, sample_round
from prunefl_lite.history import History
from prunefl_lite.server import server_update
from prunefl_lite.strategy import NoPruning
from prunefl_lite.validate import check_choice, check_pairs

__all__ = [
    "HOOKS_TO_FLOWER", "LocalDeployment", "PackageStrategy", "alive", "client_app",
    "config_to_run_config", "group_members", "message_bytes", "run_config_to_config",
    "server_app",
]

FEDERATION = "localhost"  # the SuperLink connection name in FLWR_HOME/config.toml
APP_MODULE = "prunefl_lite.flower"

# Where each hook of the package's strategy protocol runs inside Flower (the chapter's table).
HOOKS_TO_FLOWER = {
    "start": "ServerApp main, before Strategy.start (initial weights)",
    "round_masks": "PackageStrategy.configure_train (masks sent with the model)",
    "wrap_model": "ClientApp train (the model the client trains)",
    "model_key": "not needed (each ClientApp process builds its own model)",
    "pruning_steps": "ClientApp train (tfmot step counter of this client)",
    "client_upload": "ClientApp train (what the node uploads)",
    "aggregate": "PackageStrategy.aggregate_train",
    "finish_round": "PackageStrategy.aggregate_train, after server_update",
}


# --- configuration: FedConfig <-> Flower run config, the job file --------------------------


def config_to_run_config(config):
    """A `FedConfig` as Flower run-config entries (kebab-case keys, TOML scalars).

    Example:
        >>> config_to_run_config(FedConfig(num_rounds=3))["num-rounds"]
        3
    """
    if not isinstance(config, FedConfig):
        raise ValueError(f"config must be a FedConfig, got {type(config).__name__}")
    return {f.name.replace("_", "-"): getattr(config, f.name) for f in dataclasses.fields(config)}


def run_config_to_config(run_config):
    """The `FedConfig` stored in a Flower run config by `config_to_run_config`.

    Example:
        >>> c = FedConfig(num_rounds=3, learning_rate=0.1)
        >>> run_config_to_config({**config_to_run_config(c), "job": "x"}) == c
        True
    """
    values = {}
    for f in dataclasses.fields(FedConfig):
        value = run_config[f.name.replace("_", "-")]
        kind = type(f.default)  # TOML keeps ints, floats, strings, booleans apart
        values[f.name] = kind(value) if kind in (bool, int, float, str) else value
    return FedConfig(**values)


def _write_job(path, model_fn, strategy, test):
    """Write what the apps need besides the run config: model_fn, strategy, test data."""
    import cloudpickle  # pickles lambdas and classes defined in a notebook, by value

    with open(path, "wb") as f:
        cloudpickle.dump({"model_fn": model_fn, "strategy": strategy,
                          "test": (np.asarray(test[0], np.float32),
                                   np.asarray(test[1]).astype(np.int64))}, f)


def _read_job(path):
    """Read a job file written by `_write_job` (only ever one this module wrote)."""
    import pickle

    with open(path, "rb") as f:
        return pickle.load(f)


# --- messages: payloads inside records, and their size ------------------------------------


def _payload_record(payload):
    """An ArrayRecord carrying one `compress.encode` payload as a uint8 array."""
    return ArrayRecord({"payload": Array(np.frombuffer(payload, dtype=np.uint8))})


def _payload_of(record):
    """The payload bytes carried by `_payload_record`."""
    return record["payload"].numpy().tobytes()


def message_bytes(message):
    """Serialised size of a Flower message (or record): the bytes of every object it sends.

    Flower 1.42 splits a message into objects (the message, its records, arrays and array
    chunks) and sends each one's serialised body; this sums their lengths. The transport's own
    framing (HTTP headers) and the polling requests are not included. A download is measured
    before the grid stamps its 64-character message id (in the header object).

    Example:
        >>> dense = ArrayRecord([np.zeros((100, 10), np.float32)])
        >>> message_bytes(dense) > 4000  # Flower sends arrays dense: 4 bytes per weight
        True
    """
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    return sum(len(obj.deflate()) for obj in get_all_nested_objects(message).values())


def _same_masks(a, b):
    """Whether two mask lists (None entries allowed) are equal."""
    if a is None or b is None:
        return False
    return all((x is None and y is None) or (x is not None and y is not None
               and np.array_equal(x, y)) for x, y in zip(a, b, strict=True))


def _masks_match_zeros(masks, weights):
    """Whether every mask equals its array's non-zero pattern (then the payload carries it)."""
    return all(m is None or np.array_equal(m, w != 0) for m, w in zip(masks, weights))


# --- the ClientApp: the package's local update ----------------------------------------------

client_app = ClientApp()


@client_app.train()
def _client_train(msg, context):
    """Decode the global model, train it locally as run_fedavg's clients do, upload."""
    config = run_config_to_config(context.run_config)
    job = _read_job(context.run_config["job"])
    strategy, settings = job["strategy"], msg.content["config"]
    data = np.load(_data_path(context))
    x, y = data["x"], data["y"]
    round_num, partition = int(settings["server-round"]), int(context.node_config["partition-id"])
    weights, masks = _received_weights(msg, settings, context)
    trainer = _build_trainer(job["model_fn"], strategy, config)[0]
    trainer.set_data(x, y)
    if strategy.masked:
        trainer.set_masks([np.ones(w.shape, bool) if m is None else m
                           for w, m in zip(weights, masks or [None] * len(weights))])
    rng = np.random.default_rng([config.seed, round_num, partition])
    plan = plan_local_steps([np.arange(len(y))], config.local_epochs, config.batch_size, rng)
    steps = strategy.pruning_steps(round_num, plan["stop"] - plan["start"])
    seeds = client_seeds(config.seed, round_num, [partition])
    trained = [s[0] for s in trainer.train(weights, plan, config.learning_rate, steps, seeds)]
    trained = strategy.client_upload(round_num, partition, trained, weights)
    upload = compress.encode(trained, known_masks=masks)
    metrics = MetricRecord({"num-examples": len(y), "partition-id": partition})
    return Message(RecordDict({"arrays": _payload_record(upload), "metrics": metrics}),
                   reply_to=msg)


def _data_path(context):
    """Path of this node's data file: its node config's `data-path`, else from `data-dir`.

    SuperNodes of a deployment name their own file; the virtual nodes of Flower's simulation
    engine have only a partition id, so they read `client_<id>.npz` in the run config's
    `data-dir`.
    """
    if "data-path" in context.node_config:
        return context.node_config["data-path"]
    partition = int(context.node_config["partition-id"])
    return str(Path(context.run_config["data-dir"]) / f"client_{partition}.npz")


def _build_trainer(model_fn, strategy, config):
    """Build the model as run_fedavg does (seeded), start the strategy, return a trainer.

    Returns the trainer and the initial federated weights (trainable weights, then BatchNorm
    statistics); frozen weights come from `model_fn` on every node, as in run_fedavg.
    """
    import tensorflow as tf

    tf.keras.utils.set_random_seed(config.seed)  # the initial weights of run_fedavg's seed
    model = model_fn()
    check_model(model)
    parts = classify_variables(model)
    weights = strategy.start([v.numpy() for v in parts["trainable"] + parts["statistics"]],
                             config)
    trainer = ClientTrainer(strategy.wrap_model(model), masked=strategy.masked)
    trainer.load_frozen([v.numpy() for v in parts["frozen"]])
    return trainer, weights


def _received_weights(msg, settings, context):
    """Decode the download; return the weights and the masks this node now holds.

    A node keeps the masks it was sent in its `context.state` (Flower keeps it across the
    rounds of a run). When the server says the node already holds them, the payload carries
    only the kept values; otherwise the masks travel as the payload's non-zero pattern (or,
    when they differ from it, as an extra "masks" payload).
    """
    held = _held_masks(context)
    known = held if settings["known"] else None
    weights = compress.decode(_payload_of(msg.content["arrays"]), known_masks=known)
    flags = list(settings["masked"])
    if not any(flags):
        masks = None
    elif known is not None:
        masks = known
    elif "masks" in msg.content.array_records:
        explicit = iter(compress.decode(_payload_of(msg.content["masks"])))
        masks = [next(explicit) if flag else None for flag in flags]
    else:
        masks = [w != 0 if flag else None for w, flag in zip(weights, flags)]
    _hold_masks(context, masks)
    return weights, masks


def _held_masks(context):
    """The masks stored by `_hold_masks` in this node's state, or None."""
    if "pfl-masks" not in context.state.array_records:
        return None
    stored = iter(compress.decode(_payload_of(context.state["pfl-masks"])))
    flags = context.state["pfl-mask-flags"]["flags"]
    return [next(stored) if flag else None for flag in flags]


def _hold_masks(context, masks):
    """Keep `masks` (None: no masks) in this node's state for the next round."""
    if masks is None:
        return
    kept = [np.asarray(m, bool) for m in masks if m is not None]
    context.state["pfl-masks"] = _payload_record(compress.encode(kept))
    context.state["pfl-mask-flags"] = ConfigRecord({"flags": [m is not None for m in masks]})


# --- the ServerApp: a Flower Strategy around the package's strategy ------------------------


class PackageStrategy(Strategy):
    """A Flower `Strategy` whose rounds are those of `run_fedavg`, by the package's hooks.

    `configure_train` samples nodes with `run_fedavg`'s rule (`fedavg.sample_round`; nodes
    drawn to drop out are not contacted), asks the package strategy for the round's masks and
    sends each node a `compress.encode` payload (values only when the node already holds the
    masks); `aggregate_train` decodes the uploads in partition order, rejects non-finite ones,
    and calls the strategy's `aggregate`, `server_update` and `finish_round`. Evaluation is
    central (the ServerApp's test data), as in `run_fedavg`.

    Args:
        strategy: A `NoPruning` instance or subclass (the same object `run_fedavg` takes).
        config: The run's `FedConfig`.
        trainer: A `ClientTrainer` holding the test data, used to evaluate the global model.
        test: The `(x, y)` test pair.
        num_nodes: How many SuperNodes the run waits for before round 1.
    """

    def __init__(self, strategy, config, trainer, test, num_nodes, node_timeout=300.0):
        if not isinstance(strategy, NoPruning):
            raise ValueError(
                f"strategy must be a NoPruning instance, got {type(strategy).__name__}")
        self.strategy, self.config, self.trainer, self.test = strategy, config, trainer, test
        self.num_nodes, self.node_timeout = num_nodes, node_timeout
        self.rng = np.random.default_rng(config.seed)
        self.held = {}  # node id -> the masks that node holds
        self.history = History(config={**dataclasses.asdict(config),
                                        "pruning": type(strategy).__name__, "runtime": "flower"})
        self._round, self._current_weights = {}, None

    def summary(self):
        """Flower logs this at the start of a run."""
        from flwr.supercore import log

        log(20, "PackageStrategy wrapping prunefl_lite.%s", type(self.strategy).__name__)

    def _nodes(self, grid):
        """The connected node ids (sorted), after waiting for `num_nodes` of them."""
        deadline = time.monotonic() + self.node_timeout
        while len(nodes := sorted(grid.get_node_ids())) < self.num_nodes:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(nodes)} of {self.num_nodes} SuperNodes connected")
            time.sleep(0.5)
        return nodes

    def configure_train(self, server_round, arrays, config, grid):
        """Sample nodes, encode the global model (and masks) for each, build the messages."""
        start = time.perf_counter()
        weights = self._current_weights = arrays.to_numpy_ndarrays()
        nodes = self._nodes(grid)
        sampled, answering = sample_round(self.rng, len(nodes), self.config.clients_per_round,
                                          self.config.dropout_rate)
        dropped = len(sampled) - len(answering)  # not contacted: they would not answer
        masks = self.strategy.round_masks(server_round, weights)
        messages = [self._train_message(server_round, nodes[i], weights, masks) for i in answering]
        self._round = {"start": start, "masks": masks, "dropped": dropped,
                       "bytes_down": sum(m[1] for m in messages),
                       "message_bytes_down": sum(message_bytes(m[0]) for m in messages)}
        return [m[0] for m in messages]

    def _train_message(self, server_round, node, weights, masks):
        """One node's train message and the length of its payload."""
        known = masks if _same_masks(masks, self.held.get(node)) else None
        payload = compress.encode(weights, known_masks=known)
        flags = [m is not None for m in masks] if masks is not None else [False] * len(weights)
        content = {"arrays": _payload_record(payload), "config": ConfigRecord(
            {"server-round": server_round, "known": known is not None, "masked": flags})}
        size = len(payload)
        if masks is not None and known is None and not _masks_match_zeros(masks, weights):
            extra = compress.encode([np.asarray(m, bool) for m in masks if m is not None])
            content["masks"], size = _payload_record(extra), size + len(extra)
        self.held[node] = masks
        message = Message(RecordDict(content), int(node), "train", group_id=str(server_round))
        return message, size

    def aggregate_train(self, server_round, replies):
        """Decode uploads, reject non-finite ones, aggregate with the package's hooks."""
        weights = self._current_weights
        masks, updates, counts, up, wire_up, failed = self._round["masks"], [], [], 0, 0, 0
        replies = [r for r in replies]
        ok = sorted((r for r in replies if not r.has_error()),
                    key=lambda r: r.content["metrics"]["partition-id"])
        for reply in ok:
            payload = _payload_of(reply.content["arrays"])
            up, wire_up = up + len(payload), wire_up + message_bytes(reply)
            received = compress.decode(payload, known_masks=masks)
            if all(np.all(np.isfinite(w)) for w in received):
                updates.append(received)
                counts.append(int(reply.content["metrics"]["num-examples"]))
        failed = len(replies) - len(ok)
        if updates:
            average = self.strategy.aggregate(updates, counts)
            weights = server_update(weights, average, self.config.server_learning_rate)
        weights = self.strategy.finish_round(server_round, weights)
        self._round.update(bytes_up=up, message_bytes_up=wire_up, clients_completed=len(updates),
                           clients_rejected=len(ok) - len(updates), clients_failed=failed)
        return ArrayRecord(weights), MetricRecord({"clients-completed": len(updates)})

    def configure_evaluate(self, server_round, arrays, config, grid):
        """No federated evaluation: the ServerApp evaluates centrally, as run_fedavg does."""
        return []

    def aggregate_evaluate(self, server_round, replies):
        """Nothing to aggregate (see `configure_evaluate`)."""
        return None

    def evaluate(self, server_round, arrays):
        """Flower's `evaluate_fn`: test the global model, close the round's history record."""
        if server_round == 0:
            return None
        weights = arrays.to_numpy_ndarrays()
        record = {key: self._round[key] for key in (
            "bytes_down", "bytes_up", "message_bytes_down", "message_bytes_up",
            "clients_completed", "clients_rejected", "clients_failed")}
        record["clients_dropped"] = self._round["dropped"]
        if server_round % self.config.eval_every == 0 or server_round == self.config.num_rounds:
            record["loss"], record["accuracy"] = self.trainer.evaluate(weights, *self.test)
        else:
            record["loss"] = record["accuracy"] = None
        record["sparsity"] = kernel_sparsity(weights)
        record["seconds"] = time.perf_counter() - self._round["start"]
        self.history.rounds.append(record)
        self.history.final_weights = weights
        return MetricRecord({"accuracy": record["accuracy"] or 0.0})


server_app = ServerApp()


@server_app.main()
def _server_main(grid, context):
    """Build the initial model as run_fedavg does, run the rounds, write the History JSON."""
    run_config = context.run_config
    config = run_config_to_config(run_config)
    job = _read_job(run_config["job"])
    strategy, test = job["strategy"], job["test"]
    trainer, weights = _build_trainer(job["model_fn"], strategy, config)
    trainer.set_data(*test)
    flower_strategy = PackageStrategy(strategy, config, trainer, test,
                                        int(run_config["num-nodes"]))
    flower_strategy.start(grid, ArrayRecord(weights), num_rounds=config.num_rounds,
                          timeout=float(run_config["round-timeout"]),
                          evaluate_fn=flower_strategy.evaluate)
    flower_strategy.history.save(run_config["history-path"])


# --- a localhost deployment: processes, ports, FLWR_HOME, the app project -------------------


def _free_port(host="127.0.0.1"):
    """A TCP port that is free now (the OS picks it; another process could take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _executable(name):
    """Path of a Flower command installed beside this Python interpreter."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{name} not found beside {sys.executable}: pip install flwr")
    return str(path)


_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "prunefl-flower"
version = "1.0.0"
description = "prunefl_lite strategies on Flower (generated by prunefl_lite.flower)"
license = "MIT"
dependencies = ["prunefl_lite"]

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "prunefl"

[tool.flwr.app.components]
serverapp = "{module}:server_app"
clientapp = "{module}:client_app"

[tool.flwr.app.config]
{config}
"""


def _toml_value(value):
    """A Python scalar as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


class LocalDeployment:
    """One SuperLink and one SuperNode per client on localhost, as separate processes.

    Each SuperNode gets its client's data as a file named in its node config (`data-path`,
    `partition-id`), as a real node holds its own data. Processes run in their own process
    groups with logs in files under `workdir`; ports are chosen free at start; `stop` (called
    on leaving the `with` block, on errors, and at interpreter exit) terminates every group.

    With `engine="simulation"` the SuperLink runs Flower's simulation engine instead (Ray,
    from `flwr[simulation]`): no SuperNode processes; virtual nodes run the same ClientApp in
    long-lived Ray workers, and read their data from the same files. Ray starts its own
    processes in their own session; they exit by themselves seconds after the run ends.

    Args:
        clients: A list of `(x, y)` pairs, one per SuperNode.
        workdir: Directory for logs, FLWR_HOME, partitions and the app; default a new
            temporary directory.
        start_timeout: Seconds to wait for the SuperLink to accept connections.
        engine: "deployment" (SuperLink + SuperNode processes) or "simulation".

    Raises:
        ValueError: If `clients` is empty or malformed.
        RuntimeError: If a process exits early or a run fails (the log's tail is included).
    """

    def __init__(self, clients, workdir=None, start_timeout=120.0, engine="deployment"):
        check_choice("engine", engine, ("deployment", "simulation"))
        self.clients = check_pairs("clients", clients)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="pfl-flower-"))
        self.start_timeout, self.engine = start_timeout, engine
        self.processes = {}  # name -> Popen
        self.stopped_pids = set()  # every process `stop` stopped (group leaders and others)
        self.commands = []  # the command lines started, in order (for display)
        self.port = None
        self._runs = 0

    @property
    def env(self):
        """Environment of every Flower process: private FLWR_HOME, no telemetry or updates."""
        return {**os.environ, "FLWR_HOME": str(self.workdir / "flwr_home"),
                "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
                "PYTHONUNBUFFERED": "1"}

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def start(self):
        """Start the SuperLink, wait for its port, start the SuperNodes, write the configs.

        On any failure every process started so far is stopped before the error propagates;
        `stop` also runs at interpreter exit, so a notebook that starts a deployment in one
        cell and fails in a later one leaves nothing running.
        """
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self):
        (self.workdir / "flwr_home").mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        simulation = ["--simulation"] if self.engine == "simulation" else []
        self._spawn("superlink", [_executable("flower-superlink"), "--insecure",
                                  "--port", str(self.port),
                                  "--disable-runtime-dependency-installation", *simulation])
        self._wait_for_port()
        for k, (x, y) in enumerate(self.clients):
            path = self.workdir / f"client_{k}.npz"
            np.savez(path, x=np.asarray(x, np.float32), y=np.asarray(y).astype(np.int64))
            if simulation:
                continue
            node_config = (f'partition-id={k} num-partitions={len(self.clients)} '
                           f'data-path="{path}"')
            self._spawn(f"supernode_{k}", [
                _executable("flower-supernode"), "--insecure",
                "--superlink", f"127.0.0.1:{self.port}", "--port", str(_free_port()),
                "--node-config", node_config])
        self._write_flower_config()
        self._write_app()
        self._spawn("watchdog", [sys.executable, "-c", _WATCHDOG, str(os.getpid()),
                                 *map(str, self.process_groups)])

    def _spawn(self, name, command):
        """Start one process in its own process group, logging to `workdir/name.log`."""
        if name != "watchdog":  # the commands an operator would type
            self.commands.append(" ".join(
                [Path(command[0]).name] + [f"'{c}'" if " " in c else c for c in command[1:]]))
        with open(self.workdir / f"{name}.log", "wb") as log:
            self.processes[name] = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, env=self.env, start_new_session=True)

    def _wait_for_port(self):
        """Block until the SuperLink accepts TCP connections (or fail with its log)."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.processes["superlink"].poll() is not None:
                raise RuntimeError("the SuperLink exited early:\n" + self.log_tail("superlink"))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the SuperLink did not open its port:\n" + self.log_tail("superlink"))

    def _write_flower_config(self):
        """FLWR_HOME/config.toml: one SuperLink connection, insecure, on localhost."""
        (self.workdir / "flwr_home" / "config.toml").write_text(
            f'[superlink]\ndefault = "{FEDERATION}"\n\n[superlink.{FEDERATION}]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n' + self._simulation_options(),
            encoding="utf-8")

    def _simulation_options(self):
        """The simulation engine's options: one virtual node per client, 1 CPU each."""
        if self.engine != "simulation":
            return ""
        return (f"\n[superlink.{FEDERATION}.options]\nnum-supernodes = {len(self.clients)}\n"
                f"\n[superlink.{FEDERATION}.options.backend.client-resources]\nnum-cpus = 1\n")

    def _write_app(self):
        """The Flower app project: a pyproject.toml pointing at this module's apps."""
        defaults = {**config_to_run_config(FedConfig()), "job": "", "history-path": "",
                    "data-dir": str(self.workdir),
                    "num-nodes": len(self.clients), "round-timeout": 600.0}
        lines = "\n".join(f"{k} = {_toml_value(v)}" for k, v in defaults.items())
        (self.workdir / "app").mkdir(exist_ok=True)
        (self.app_dir / "pyproject.toml").write_text(
            _PYPROJECT.format(module=APP_MODULE, config=lines), encoding="utf-8")

    @property
    def app_dir(self):
        """The generated Flower app project (what `flwr run` packages and submits)."""
        return self.workdir / "app"

    def run(self, model_fn, test, config, pruning=None, timeout=900.0):
        """Run one federated job on the deployment with `flwr run`; return its `History`.

        Args:
            model_fn: As for `run_fedavg` (pickled with cloudpickle, so a lambda works).
            test: The `(x, y)` pair the ServerApp evaluates on.
            config: A `FedConfig`; `clients_per_round` at most the number of SuperNodes.
            pruning: None or a strategy object, as for `run_fedavg`.
            timeout: Seconds before `flwr run` is stopped and a RuntimeError raised.
        """
        if getattr(config, "batch_norm", "average") != "average":
            raise ValueError("config.batch_norm must be 'average' on Flower (FedBN's local "
                             f"statistics are not bridged), got {config.batch_norm!r}")
        if config.clients_per_round > len(self.clients):
            raise ValueError(f"clients_per_round must be in [1, {len(self.clients)}] (the "
                             f"number of SuperNodes), got {config.clients_per_round}")
        if self.port is None:
            raise RuntimeError("the deployment is not started: use it in a with block")
        self._runs += 1
        job = self.workdir / f"job_{self._runs}.pkl"
        out = self.workdir / f"history_{self._runs}.json"
        _write_job(job, model_fn, pruning if pruning is not None else NoPruning(), test)
        overrides = {**config_to_run_config(config), "job": str(job), "history-path": str(out)}
        run_config = self.workdir / f"run_{self._runs}.toml"
        run_config.write_text("\n".join(f"{k} = {_toml_value(v)}" for k, v in overrides.items()),
                              encoding="utf-8")
        self._flwr_run(run_config, timeout)
        if not out.exists():
            raise RuntimeError("the run wrote no history:\n" + self.log_tail(f"run_{self._runs}"))
        return History.load(out)

    def _flwr_run(self, run_config, timeout):
        """`flwr run <app> localhost --stream --run-config <file>`, logging to a file."""
        name = f"run_{self._runs}"
        self._spawn(name, [_executable("flwr"), "run", str(self.app_dir), FEDERATION,
                           "--stream", "--run-config", str(run_config)])
        try:
            code = self.processes[name].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._stop_one(name)
            raise RuntimeError(f"flwr run took over {timeout} s:\n" + self.log_tail(name)) from None
        if code != 0:
            raise RuntimeError(f"flwr run exited with {code}:\n" + self.log_tail(name))

    def log_tail(self, name, lines=30):
        """The last lines of a process's log file (for error messages)."""
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    @property
    def process_groups(self):
        """Process group ids of every process started (each is its own group leader)."""
        return [p.pid for p in self.processes.values()]

    def stop(self):
        """Terminate every process group (SIGTERM, then SIGKILL after 10 s); idempotent.

        Descendants that left their group (Flower's SuperExec and Ray start their own
        sessions) are recorded first and stopped too; `self.stopped_pids` lists every process
        this stopped, for checks that nothing is left (`alive`).
        """
        for name in [n for n in self.processes if n != "watchdog"] + ["watchdog"]:
            if name in self.processes:
                self._stop_one(name)
        atexit.unregister(self.stop)

    def _stop_one(self, name):
        """Stop one process, its process group and its descendants in other groups."""
        process = self.processes[name]
        others = [pid for pid in _descendants(process.pid) if _pgid(pid) != process.pid]
        self.stopped_pids.update([process.pid, *others])
        _terminate(lambda sig: _signal_group(process.pid, sig),
                   lambda: process.poll() is not None and not _group_alive(process.pid))
        _terminate(lambda sig: [_signal_pid(pid, sig) for pid in others],
                   lambda: not alive(others))


# Kills the deployment's process groups if the Python process that started it dies without
# calling `stop` (a kernel killed by a signal skips atexit), then exits.
_WATCHDOG = """
import os, signal, sys, time
parent, groups = int(sys.argv[1]), [int(g) for g in sys.argv[2:]]
while os.getppid() == parent:
    time.sleep(1.0)
for sig in (signal.SIGTERM, signal.SIGKILL):
    for group in groups:
        try:
            os.killpg(group, sig)
        except OSError:
            pass
    time.sleep(10.0)
"""


def _terminate(send, done, waits=(10.0, 5.0)):
    """Send SIGTERM, wait until `done()`, then SIGKILL and wait again."""
    for sig, wait in zip((signal.SIGTERM, signal.SIGKILL), waits):
        send(sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if done():
                return
            time.sleep(0.1)


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _signal_pid(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _proc_stat(pid):
    """(state, ppid, pgid) of a process from /proc, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2])


def _pgid(pid):
    stat = _proc_stat(pid)
    return stat[2] if stat else None


def _descendants(pid):
    """PIDs of every live descendant of `pid` (Linux: from /proc; empty elsewhere)."""
    children = {}
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else []:
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))):
            children.setdefault(stat[1], []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pids):
    """The PIDs among `pids` whose processes still run (zombies excluded)."""
    return [pid for pid in pids if (stat := _proc_stat(pid)) and stat[0] != "Z"]


def group_members(pgid):
    """PIDs of the live (not zombie) processes in process group `pgid` (Linux: from /proc)."""
    members = []
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process exited meanwhile
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _group_alive(pgid):
    """Whether any live process is left in process group `pgid`."""
    if Path("/proc/self/stat").exists():
        return bool(group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
