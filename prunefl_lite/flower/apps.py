"""The ClientApp and the ServerApp: thin adapters around `prunefl_lite.round`.

The ClientApp is a client of `run_fedavg`'s round: it decodes the broadcast, runs
`round.local_update` for itself (the strategy's client hooks on its own copy of the
strategy, its own data) and encodes the upload. The ServerApp's `PackageStrategy` is a Flower
`Strategy` whose `configure_train` / `aggregate_train` / `evaluate` call `round.plan_round`,
`round.server_step` and the round record. Several package strategies can run in one job, in
lockstep: each keeps its own global model, sampling and history, and every node gets one
message per round carrying the broadcasts of all the strategies that sampled it (fewer
messages: Flower starts a process per message).
"""

import dataclasses
import time
import traceback

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from prunefl_lite import compress
from prunefl_lite import round as fl_round
from prunefl_lite.flower import records
from prunefl_lite.history import History

__all__ = ["HOOKS_TO_FLOWER", "FastPollGrid", "PackageStrategy", "client_app", "server_app"]

# Where each hook of the strategy protocol runs inside Flower (the chapter's table).
HOOKS_TO_FLOWER = {
    "start": "ServerApp: PackageStrategy.__init__ (initial weights)",
    "round_masks": "ServerApp: PackageStrategy.configure_train (masks go in the broadcast)",
    "client_instructions": "ServerApp: PackageStrategy.configure_train (in the broadcast)",
    "wrap_model": "ClientApp train and ServerApp (the model each side builds)",
    "model_key": "both sides (which compiled trainer a process reuses)",
    "pruning_steps": "ClientApp train (tfmot step counter of this client)",
    "client_upload": "ClientApp train (what the node uploads)",
    "client_report": "ClientApp train (extra arrays in the upload)",
    "receive": "ServerApp: PackageStrategy.aggregate_train",
    "aggregate": "ServerApp: PackageStrategy.aggregate_train",
    "finish_round": "ServerApp: PackageStrategy.aggregate_train, after server_update",
}


# --- the ClientApp ----------------------------------------------------------------------------

client_app = ClientApp()


@client_app.train()
def _client_train(msg, context):
    """Run every job entry in the message for this node's client; reply with the uploads."""
    job = records.read_job(context.run_config["job"])
    config = records.run_config_to_config(context.run_config)
    client_id = int(context.node_config["partition-id"])
    data = np.load(_data_path(context))
    out = {}
    for index in records.entries(msg.content, "config"):
        out.update(_train_entry(index, job, config, client_id, data, msg.content, context))
    return Message(RecordDict(out), reply_to=msg)


@client_app.query()
def _client_query(msg, context):
    """Tell the server which client (partition) this node holds."""
    return Message(RecordDict({"client": ConfigRecord(
        {"client": int(context.node_config["partition-id"])})}), reply_to=msg)


def _train_entry(index, job, config, client_id, data, content, context):
    """One strategy's local update on this node; a raised error becomes a failure record."""
    try:
        strategy = job["strategies"][index]
        plan, weights = records.read_broadcast(content, index, _held_masks(context, index))
        _hold_masks(context, index, plan.masks)
        trainer = fl_round.build_trainer(job["model_fn"], strategy, config)[0]
        trainer.set_data(data["x"], data["y"])
        states = {client_id: _client_state(context, index)}
        uploads, failures = fl_round.local_update(
            trainer, strategy, plan, [client_id], [np.arange(len(data["y"]))], weights, config,
            states=states)
        if failures:
            return records.failure_records(index, client_id, failures[0].details)
        _keep_client_state(context, index, states[client_id])
        return records.upload_records(index, uploads[0])
    except Exception:  # reported to the server with the traceback, never swallowed
        return records.failure_records(index, client_id, traceback.format_exc())


def _data_path(context):
    """Path of this node's data file: its node config's `data-path`, else from `data-dir`.

    SuperNodes of a deployment name their own file; the virtual nodes of Flower's simulation
    engine have only a partition id, so they read `client_<id>.npz` in the run config's
    `data-dir`.
    """
    if "data-path" in context.node_config:
        return context.node_config["data-path"]
    partition = int(context.node_config["partition-id"])
    return f"{context.run_config['data-dir']}/client_{partition}.npz"


def _client_state(context, index):
    """This client's persistent state for job entry `index` (name -> array), from its node."""
    if f"{index}.state" not in context.state.array_records:
        return {}
    names = context.state[f"{index}.state-names"]["names"]
    arrays = compress.decode(records.payload_of(context.state[f"{index}.state"]))
    return dict(zip(names, arrays, strict=True))


def _keep_client_state(context, index, state):
    """Keep the client's state in the node's `context.state` for its next round."""
    if state:
        context.state[f"{index}.state"] = records.payload_record(
            compress.encode([np.asarray(v) for v in state.values()]))
        context.state[f"{index}.state-names"] = ConfigRecord({"names": list(state)})


def _held_masks(context, index):
    """The masks this node kept for job entry `index` (Flower keeps `context.state`)."""
    if f"{index}.masks" not in context.state.array_records:
        return None
    stored = iter(compress.decode(records.payload_of(context.state[f"{index}.masks"])))
    flags = context.state[f"{index}.mask-flags"]["flags"]
    return [next(stored) if flag else None for flag in flags]


def _hold_masks(context, index, masks):
    """Keep `masks` (None: no masks) in this node's state for the next round."""
    if masks is None:
        return
    kept = [np.asarray(m, bool) for m in masks if m is not None]
    context.state[f"{index}.masks"] = records.payload_record(compress.encode(kept))
    context.state[f"{index}.mask-flags"] = ConfigRecord({"flags": [m is not None for m in masks]})


# --- the ServerApp ----------------------------------------------------------------------------


class FastPollGrid(Grid):
    """Flower's grid, with a `send_and_receive` that polls for replies every `interval` s.

    Flower 1.42's deployment grid sleeps 3 s between polls, which sets the pace of a short
    round; this uses only the grid's public `push_messages` / `pull_messages`.
    """

    def __init__(self, grid, interval=0.1):
        self.grid, self.interval = grid, interval

    def set_run(self, run):  # noqa: D102 (delegated)
        self.grid.set_run(run)

    @property
    def run(self):  # noqa: D102
        return self.grid.run

    def create_message(self, *args, **kwargs):  # noqa: D102
        return self.grid.create_message(*args, **kwargs)

    def get_node_ids(self):  # noqa: D102
        return self.grid.get_node_ids()

    def push_messages(self, messages):  # noqa: D102
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids):  # noqa: D102
        return self.grid.pull_messages(message_ids)

    def send_and_receive(self, messages, *, timeout=None):
        """Push, then pull every `interval` s until all replies are in or `timeout` passes."""
        waiting = set(self.grid.push_messages(messages))
        end = None if timeout is None else time.monotonic() + timeout
        replies = []
        while waiting and (end is None or time.monotonic() < end):
            got = list(self.grid.pull_messages(waiting))
            replies += got
            waiting -= {m.metadata.reply_to_message_id for m in got}
            if waiting:
                time.sleep(self.interval)
        return replies


@dataclasses.dataclass
class _Run:
    """One package strategy's run inside a job: its model, sampling, downloads, history."""

    strategy: object
    trainer: object
    weights: list
    rng: np.random.Generator
    downloads: fl_round.Downloads
    history: History
    round: dict = dataclasses.field(default_factory=dict)


class PackageStrategy(Strategy):
    """A Flower `Strategy` whose rounds are `run_fedavg`'s, for one or several strategies.

    Args:
        strategies: A list of package strategies (`strategy.NoPruning` instances), run in
            lockstep, each with its own global model, sampling and `History`.
        model_fn: As for `run_fedavg`.
        test: The `(x, y)` test pair the server evaluates on (central evaluation).
        config: The run's `FedConfig`.
        num_nodes: How many SuperNodes the run waits for before round 1.
        accept_failures: As for `run_fedavg`.
        node_timeout: Seconds to wait for `num_nodes` SuperNodes.
    """

    def __init__(self, strategies, model_fn, test, config, num_nodes, accept_failures=False,
                 node_timeout=300.0):
        self.config, self.test, self.num_nodes = config, test, num_nodes
        self.accept_failures, self.node_timeout = accept_failures, node_timeout
        self.node_of = {}  # client id -> node id (learnt from replies, or asked)
        self.runs = [self._start_run(s, model_fn) for s in strategies]

    def _start_run(self, strategy, model_fn):
        """Build the model as `run_fedavg` does and start the strategy (a server hook)."""
        trainer, weights = fl_round.build_trainer(model_fn, strategy, self.config)
        trainer.set_data(*self.test)
        frozen = [v.numpy() for v in trainer.frozen_variables]
        return _Run(strategy, trainer, strategy.start(weights, self.config),
                    np.random.default_rng(self.config.seed),
                    fl_round.Downloads(len(compress.encode(frozen)) if frozen else 0),
                    History(config={**dataclasses.asdict(self.config),
                                    "pruning": type(strategy).__name__, "runtime": "flower"}))

    def summary(self):
        """Flower logs this at the start of a run."""
        from flwr.supercore import log

        names = ", ".join(type(r.strategy).__name__ for r in self.runs)
        log(20, "PackageStrategy running prunefl_lite strategies: %s", names)

    def _nodes(self, grid):
        """The connected node ids (sorted), after waiting for `num_nodes` of them."""
        deadline = time.monotonic() + self.node_timeout
        while len(nodes := sorted(grid.get_node_ids())) < self.num_nodes:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(nodes)} of {self.num_nodes} SuperNodes connected")
            time.sleep(0.5)
        return nodes

    def _learn_nodes(self, grid, nodes):
        """Ask every node which client it holds (one query message each)."""
        asks = [Message(RecordDict(), int(n), "query") for n in nodes]
        for reply in grid.send_and_receive(asks, timeout=self.node_timeout):
            if not reply.has_error():
                self.node_of[int(reply.content["client"]["client"])] = reply.metadata.src_node_id

    def configure_train(self, server_round, arrays, config, grid):
        """Plan each strategy's round; one message per node with every broadcast for it."""
        nodes = self._nodes(grid)
        plans = [fl_round.plan_round(r.strategy, server_round, r.weights, r.rng,
                                     self.num_nodes, self.config) for r in self.runs]
        wanted = {int(k) for p in plans for k in p.answered}
        everyone = wanted == set(range(self.num_nodes)) and not self.node_of
        if not everyone and not wanted <= set(self.node_of):
            self._learn_nodes(grid, nodes)
        contents = {}
        for index, (run, plan) in enumerate(zip(self.runs, plans)):
            run.round = {"start": time.perf_counter(), "plan": plan, "down": [], "wire": 0,
                         "weights": run.weights}
            for k in (int(k) for k in plan.sampled):
                payload, known, masks = run.downloads.payloads(k, run.weights, plan.masks)
                run.round["down"].append(len(payload) + len(masks)
                                         + run.downloads.extra_bytes(k, plan))
                if k in plan.answered:
                    entry = records.broadcast_records(index, plan, payload, known, masks)
                    run.round["wire"] += sum(records.message_bytes(r) for r in entry.values())
                    node = nodes[k] if everyone else self.node_of[k]
                    contents.setdefault(node, {}).update(entry)
        return [Message(RecordDict(c), int(node), "train", group_id=str(server_round))
                for node, c in contents.items()]

    def aggregate_train(self, server_round, replies):
        """Decode each strategy's uploads; failures, acceptance, server step, round record."""
        replies = list(replies)
        for reply in replies:
            if not reply.has_error():
                for index in records.entries(reply.content, "meta"):
                    meta = reply.content[f"{index}.meta"]
                    self.node_of[int(meta["client"])] = reply.metadata.src_node_id
        for index, run in enumerate(self.runs):
            self._aggregate_run(index, run, server_round, replies)
        return ArrayRecord(), MetricRecord({"strategies": len(self.runs)})

    def _aggregate_run(self, index, run, server_round, replies):
        """One strategy's server half of the round, as `run_fedavg`'s."""
        plan = run.round["plan"]
        uploads, failures, bytes_up, bytes_report, wire_up = [], [], 0, 0, 0
        for reply in replies:
            if reply.has_error():  # the ClientApp process itself failed
                client = next((k for k, n in self.node_of.items()
                               if n == reply.metadata.src_node_id), -1)
                failures.append(fl_round.Failure(client, str(reply.error.reason)))
                continue
            got, up, report = records.read_upload(reply.content, index, run.strategy,
                                                  plan.masks, run.round["weights"])
            if isinstance(got, fl_round.Failure):
                failures.append(got)
            elif got is not None:
                uploads.append(got)
                bytes_up, bytes_report = bytes_up + up, bytes_report + report
                wire_up += sum(records.message_bytes(reply.content[f"{index}.{name}"])
                               for name in ("weights", "report", "meta"))
        uploads.sort(key=lambda u: u.client_id)
        failures.sort(key=lambda f: f.client_id)
        fl_round.check_failures(server_round, failures, len(uploads), self.accept_failures)
        accepted = fl_round.accept(uploads)
        run.weights = fl_round.server_step(run.strategy, server_round, run.weights, accepted,
                                           self.config)
        run.round["record"] = fl_round.round_record(plan, run.round["down"], uploads, accepted,
                                                    failures, bytes_up, bytes_report)
        run.round["record"].update(message_bytes_down=run.round["wire"],
                                   message_bytes_up=wire_up)

    def configure_evaluate(self, server_round, arrays, config, grid):
        """No federated evaluation: the ServerApp evaluates centrally, as run_fedavg does."""
        return []

    def aggregate_evaluate(self, server_round, replies):
        """Nothing to aggregate (see `configure_evaluate`)."""
        return None

    def evaluate(self, server_round, arrays):
        """Flower's `evaluate_fn`: test each global model, close the rounds' records."""
        if server_round == 0:
            return None
        for run in self.runs:
            record = fl_round.evaluate_round(run.round["record"], run.trainer, run.weights,
                                             self.test, server_round, self.config,
                                             run.round["start"])
            run.history.rounds.append(record)
            run.history.final_weights = run.weights
        return MetricRecord({"round": server_round})


server_app = ServerApp()


@server_app.main()
def _server_main(grid, context):
    """Run the job's strategies in lockstep; write each History (or the client's failure)."""
    run_config = context.run_config
    config = records.run_config_to_config(run_config)
    job = records.read_job(run_config["job"])
    flower_strategy = PackageStrategy(job["strategies"], job["model_fn"], job["test"], config,
                                      int(run_config["num-nodes"]),
                                      accept_failures=bool(run_config["accept-failures"]))
    out = run_config["history-path"]
    try:
        flower_strategy.start(FastPollGrid(grid), ArrayRecord(), num_rounds=config.num_rounds,
                              timeout=float(run_config["round-timeout"]),
                              evaluate_fn=flower_strategy.evaluate)
    except fl_round.ClientFailure as error:
        import json

        with open(f"{out}.failure.json", "w", encoding="utf-8") as f:
            json.dump({"round": error.round_num, "client": error.client_id,
                       "details": error.details}, f)
        raise
    for index, run in enumerate(flower_strategy.runs):
        run.history.save(f"{out}.{index}.json")
