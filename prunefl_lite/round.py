"""The one copy of a federated round, called by `run_fedavg` and by the Flower apps.

A round, in the order both runtimes run it:

1. server: `plan_round` samples the clients (`sample_round`) and asks the strategy for the
   round's masks and client instructions; `Downloads` encodes what each client receives and
   remembers which masks each client holds;
2. client: `local_update` trains from the global weights (a client's batches and random
   layers depend only on (seed, round, client), so a client that trains alone in its own
   process gets the same batches as in `run_fedavg`'s stacked call), then runs the
   strategy's client hooks (`client_upload`, `client_report`) and returns `Upload`s; a hook
   that raises becomes a `Failure` with the client's traceback;
3. server: `check_failures` raises them (or records them when the run accepts failures),
   `accept` drops non-finite uploads, `server_step` runs the strategy's `receive`,
   `aggregate`, the server learning rate and `finish_round`, and `round_record` /
   `evaluate_round` write the round's history record.

Bytes: `upload_bytes` and `Downloads` return the lengths of real `compress.encode` payloads;
a report travels as its own payload (its names as JSON beside it) and is counted in
`bytes_up` and, separately, in `bytes_report`; instructions travel as JSON and are counted in
`bytes_down`.
"""

import dataclasses
import json
import time
import traceback

import numpy as np
import tensorflow as tf

from prunefl_lite import compress
from prunefl_lite.client import ClientTrainer, check_model, classify_variables, plan_local_steps
from prunefl_lite.pruning.masks import kernel_sparsity
from prunefl_lite.server import server_update

__all__ = [
    "ClientFailure", "ClientRound", "Downloads", "Failure", "RoundPlan", "Upload", "accept",
    "build_trainer", "check_failures", "client_rngs", "client_seeds", "evaluate_round",
    "decode_upload", "encode_upload", "local_update", "plan_round", "report_payload",
    "round_record", "sample_round", "server_step", "upload_bytes",
]

_TRAINERS = {}  # compiled trainers, reused by every run with the same architecture
_SHUFFLE_SALT = 1  # separates a client's batch-order stream from its random-layer seed
_QUANTISE_SALT = 2  # and from its stochastic rounding of a quantised upload


# --- what travels, and what happens to it ---------------------------------------------------


@dataclasses.dataclass
class RoundPlan:
    """The server's plan of one round: who is sampled, who answers, masks and instructions."""

    round_num: int
    sampled: np.ndarray
    answered: np.ndarray
    masks: list | None
    instructions: dict


@dataclasses.dataclass
class ClientRound:
    """What a client's hooks know in one round: the broadcast and its own data's gradients.

    `gradients(weights)` is the gradient of the mean loss over this client's own examples
    at `weights` (one array per federated weight; None for BatchNorm statistics). `state` is
    the client's own dict (name -> array) that persists across the rounds it takes part in
    (e.g. an error-feedback residual); the runtime keeps it on the client side.
    """

    round_num: int
    client_id: int
    global_weights: list
    masks: list | None
    instructions: dict
    num_examples: int
    gradients: object
    state: dict = dataclasses.field(default_factory=dict)
    seed: int = 0


@dataclasses.dataclass
class Upload:
    """One client's upload: its weights, example count and optional report (name -> array).

    `payload` and `report_payload` (with `report_names`, JSON) are the bytes that travel;
    `weights` are what the server decodes from `payload` (for a lossy value width, the
    quantised values, not the client's exact ones).
    """

    client_id: int
    weights: list
    num_examples: int
    report: dict | None = None
    payload: bytes = b""
    report_names: bytes = b""
    report_payload: bytes = b""


@dataclasses.dataclass
class Failure:
    """A client whose hooks or local update raised: its id and traceback (text)."""

    client_id: int
    details: str
    error: BaseException | None = None


class ClientFailure(RuntimeError):
    """A client failed in a round (an exception, not a simulated dropout).

    Attributes:
        round_num: The round.
        client_id: The client.
        details: The client's traceback, as text (from another process on a deployment).
    """

    def __init__(self, round_num, client_id, details):
        super().__init__(f"client {client_id} failed in round {round_num} (pass "
                         f"accept_failures=True to record failures and go on):\n{details}")
        self.round_num, self.client_id, self.details = round_num, client_id, details


# --- seeds: what a client derives from (seed, round, its id) ---------------------------------


def sample_round(rng, num_clients, clients_per_round, dropout_rate):
    """Which clients a round samples and which of them answer.

    The rule of deployed FL (Bonawitz et al. 2019): the server samples `clients_per_round`
    distinct clients uniformly; each fails independently with probability `dropout_rate`, so
    the number that fails is Binomial(clients_per_round, dropout_rate), its mean
    `dropout_rate * clients_per_round` (29 of 50 at 0.58), and small rounds are not rounded
    down to no failures at all.

    Args:
        rng: The run's `np.random.Generator`.
        num_clients: How many clients there are (K).
        clients_per_round: How many are sampled (m <= K).
        dropout_rate: Probability in [0, 1) that a sampled client fails.

    Returns:
        `(sampled, answered)`: int arrays of client ids, both sorted; `answered` is a subset.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> dropped = [50 - len(sample_round(rng, 100, 50, 0.58)[1]) for _ in range(2000)]
        >>> round(float(np.mean(dropped)))
        29
    """
    sampled = rng.choice(num_clients, size=clients_per_round, replace=False)
    order = rng.permutation(sampled)  # kept from earlier versions: chapter 4 replays this stream
    if dropout_rate > 0:
        order = order[rng.random(len(order)) >= dropout_rate]
    return np.sort(sampled), np.sort(order)


def client_seeds(seed, round_num, client_ids):
    """The seed of each client's random layers in one round, derived from (seed, round, client).

    NumPy's `SeedSequence` hashes the three numbers, so neighbouring clients and rounds get
    unrelated streams, and a client's stream does not depend on who else was sampled.

    Args:
        seed: The run's `config.seed`.
        round_num: The round, from 1.
        client_ids: The clients' indices into `run_fedavg`'s `clients`.

    Returns:
        An int64 array with one non-negative seed per client.

    Example:
        >>> a = client_seeds(0, 1, [3, 5]); b = client_seeds(0, 1, [3, 5])
        >>> bool((a == b).all()), a.dtype.name, bool(a[0] != a[1])
        (True, 'int64', True)
    """
    return np.array([np.random.SeedSequence([seed, round_num, int(k)]).generate_state(
        1, np.uint64)[0] >> np.uint64(1) for k in client_ids], dtype=np.int64)


def client_rngs(seed, round_num, client_ids):
    """One generator per client for its batch order this round, from (seed, round, client).

    Example:
        >>> a, = client_rngs(0, 2, [7]); b, = client_rngs(0, 2, [7])
        >>> a.permutation(5).tolist() == b.permutation(5).tolist()
        True
    """
    return [np.random.default_rng([seed, round_num, int(k), _SHUFFLE_SALT]) for k in client_ids]


# --- the model: one compiled trainer per architecture ------------------------------------------


def build_trainer(model_fn, strategy, config):
    """Build `model_fn`'s model under the run's seed; return a trainer and its initial weights.

    The compiled trainer is cached per architecture and strategy; the weights, and the frozen
    (non-trainable) values, always come from this call of `model_fn`, so a model_fn that loads
    or sets weights is respected. The server passes the weights to `strategy.start`; a client
    uses only the trainer (and the frozen values, which every client holds).

    Returns:
        `(trainer, weights)`: a `client.ClientTrainer` and the federated weights (trainable
        weights, then BatchNorm statistics) as NumPy arrays.

    Raises:
        ValueError: If `model_fn` does not return a `tf.keras.Model`, or as `check_model`.
    """
    strategy.configure(config)
    _seed_keras_initialisers(config.seed)
    model = model_fn()
    if not isinstance(model, tf.keras.Model):
        raise ValueError(f"model_fn must return a tf.keras.Model, got {type(model).__name__}")
    check_model(model)
    parts = classify_variables(model)
    key = (_architecture_key(model), strategy.model_key(), strategy.masked)
    if key not in _TRAINERS:
        _TRAINERS[key] = ClientTrainer(strategy.wrap_model(model), masked=strategy.masked)
    trainer = _TRAINERS[key]
    trainer.load_frozen([v.numpy() for v in parts["frozen"]])
    return trainer, [v.numpy() for v in parts["trainable"] + parts["statistics"]]


def _seed_keras_initialisers(seed):
    """Seed Python, NumPy and Keras' initialiser seeds, as `tf.keras.utils.set_random_seed` does.

    Unlike `set_random_seed` it leaves TensorFlow's global seed alone, because setting that
    clears TensorFlow's runtime caches and costs the next compiled round about 0.3 s. Keras'
    initialisers draw their seeds from Keras' own generator, so the weights are the same.
    """
    import random

    random.seed(seed)
    np.random.seed(seed)
    try:
        from tf_keras.src import backend as keras_backend

        keras_backend._SEED_GENERATOR.generator = random.Random(seed)
    except (ImportError, AttributeError):  # a Keras without that generator: the slow, sure way
        tf.keras.utils.set_random_seed(seed)


def _architecture_key(model):
    """The model's configuration without layer names (which Keras numbers on every build)."""

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "name"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    try:
        return json.dumps(strip(model.get_config()), sort_keys=True, default=str)
    except (NotImplementedError, TypeError):  # a subclassed model without get_config
        return f"unkeyed-{id(model)}"


# --- 1. server: plan and broadcast ---------------------------------------------------------------


def plan_round(strategy, round_num, weights, rng, num_clients, config):
    """Sample the round's clients and ask the strategy for its masks and instructions."""
    sampled, answered = sample_round(rng, num_clients, config.clients_per_round,
                                     config.dropout_rate)
    masks = strategy.round_masks(round_num, weights)
    instructions = strategy.client_instructions(round_num) or {}
    if not isinstance(instructions, dict):
        raise TypeError(f"client_instructions must return a dict, got "
                        f"{type(instructions).__name__}")
    return RoundPlan(round_num, sampled, answered, masks, instructions)


def instructions_text(instructions):
    """The instructions as the JSON text that travels (empty when there are none)."""
    return json.dumps(instructions, sort_keys=True, separators=(",", ":")) if instructions else ""


class Downloads:
    """What each client downloads: the payloads, and which masks each client already holds.

    A client gets only the kept values if it holds exactly the round's masks already,
    otherwise the payload that carries the positions too (as the non-zero pattern, plus an
    explicit mask payload where a kept weight is exactly zero); plus the frozen weights the
    first time it is sampled (`frozen_bytes`), and the instructions' JSON.

    Args:
        frozen_bytes: Length of the payload of the model's frozen weights (0 if none).
        shared: A function selecting the entries that travel (FedBN keeps some local).
    """

    def __init__(self, frozen_bytes=0, shared=None):
        self.frozen_bytes, self.shared = frozen_bytes, shared or (lambda arrays: arrays)
        self.held_masks = {}  # client -> the masks it received last
        self.has_frozen = set()

    def payloads(self, client_id, weights, masks):
        """What client `client_id` receives: `(payload, known, mask_payload)`.

        With `known` the client held `masks` already and `payload` carries values only;
        `mask_payload` (b"" when not needed) carries the masks explicitly when they differ
        from the non-zero pattern of the weights. Records that the client now holds `masks`.
        """
        known = masks is not None and same_masks(masks, self.held_masks.get(client_id))
        payload = compress.encode(self.shared(weights),
                                  known_masks=self.shared(masks) if known else None)
        mask_payload = b""
        if masks is not None and not known and not _masks_match_zeros(masks, weights):
            mask_payload = compress.encode([np.asarray(m, bool) for m in self.shared(masks)
                                            if m is not None])
        if masks is not None:
            self.held_masks[client_id] = masks
        return payload, known, mask_payload

    def extra_bytes(self, client_id, plan):
        """Bytes beyond the weights: frozen weights the first time, the instructions' JSON."""
        first = client_id not in self.has_frozen
        self.has_frozen.add(client_id)
        return (self.frozen_bytes if first else 0) + len(instructions_text(plan.instructions))

    def each(self, plan, weights):
        """Bytes each sampled client downloads, in `plan.sampled` order (nothing is sent).

        Payloads of equal content are encoded once.
        """
        sizes, out = {}, []
        for k in (int(k) for k in plan.sampled):
            known = plan.masks is not None and same_masks(plan.masks, self.held_masks.get(k))
            if known not in sizes:
                payload, _, mask_payload = self.payloads(k, weights, plan.masks)
                sizes[known] = len(payload) + len(mask_payload)
            elif plan.masks is not None:
                self.held_masks[k] = plan.masks
            out.append(sizes[known] + self.extra_bytes(k, plan))
        return out


def _masks_match_zeros(masks, weights):
    """Whether every mask equals its array's non-zero pattern (then the payload carries it)."""
    return all(m is None or np.array_equal(m, np.asarray(w) != 0) for m, w in zip(masks, weights))


def same_masks(masks, held):
    """Whether two mask lists (None entries allowed) are equal."""
    if masks is None or held is None:
        return False
    return all((m is None and h is None) or (m is not None and h is not None
               and np.array_equal(m, h)) for m, h in zip(masks, held, strict=True))


# --- 2. client: local update and the client hooks -------------------------------------------------


def local_update(trainer, strategy, plan, client_ids, client_rows, weights, config,
                 local_weights=None, states=None, shared=None):
    """Train the given clients from `weights` and run their client hooks.

    The clients train in one call of the compiled trainer per distinct mask set (`run_fedavg`
    passes every client that answered; a deployment's client passes itself). Each client's
    batches come from `client_rngs` and its random layers from `client_seeds`, so the result
    for a client does not depend on who else trains in the same call.

    Args:
        trainer: A `ClientTrainer` holding the data (`set_data`) the rows index.
        strategy: The run's strategy (its client hooks run here).
        plan: The `RoundPlan` (round, masks, instructions) as the clients received it.
        client_ids: The clients' ids.
        client_rows: One int array of row indices into the trainer's data per client.
        weights: The global weights the clients start from.
        config: The run's `FedConfig`.
        local_weights: FedBN's per-client BatchNorm values (see `ClientTrainer.train`).
        states: Client id -> that client's persistent state dict (updated in place); None
            for none kept.
        shared: A function selecting the entries that travel (FedBN keeps some local).

    Returns:
        `(uploads, failures)`: a list of `Upload` and a list of `Failure`, in client order.
    """
    states = {} if states is None else states
    clients = [ClientRound(plan.round_num, int(k), weights, plan.masks, plan.instructions,
                           len(rows), _gradients(trainer, rows), states.setdefault(int(k), {}),
                           config.seed)
               for k, rows in zip(client_ids, client_rows)]
    trained = _train(trainer, strategy, clients, client_rows, weights, config, local_weights)
    uploads, failures = [], []
    for client, own in zip(clients, trained):
        try:
            upload, report = strategy.client_step(client, own)
            uploads.append(encode_upload(strategy, client, list(upload), _check_report(report),
                                         shared))
        except Exception as error:  # a client's failure is reported, never swallowed
            failures.append(Failure(client.client_id, traceback.format_exc(), error))
    return uploads, failures


def _gradients(trainer, rows):
    """A client's `gradients(weights)` on its own rows."""
    return lambda w: trainer.gradients(w, rows)


def _train(trainer, strategy, clients, client_rows, weights, config, local_weights):
    """Each client's trained weights: one trainer call per group of clients with equal masks."""
    masks = [strategy.client_masks(c) if strategy.masked else None for c in clients]
    groups = []  # (mask list, slots)
    for slot, m in enumerate(masks):
        for group in groups:
            if (m is None and group[0] is None) or same_masks(m, group[0]):
                group[1].append(slot)
                break
        else:
            groups.append((m, [slot]))
    trained = [None] * len(clients)
    for group_masks, slots in groups:
        if strategy.masked:
            trainer.set_masks([np.ones(w.shape, bool) if m is None else m
                               for w, m in zip(weights, group_masks or [None] * len(weights))])
        ids = [clients[i].client_id for i in slots]
        steps = plan_local_steps([client_rows[i] for i in slots], config.local_epochs,
                                 config.batch_size,
                                 client_rngs(config.seed, clients[0].round_num, ids))
        stacked = trainer.train(
            weights, steps, config.learning_rate,
            strategy.pruning_steps(clients[0].round_num, steps["stop"] - steps["start"]),
            seeds=client_seeds(config.seed, clients[0].round_num, ids),
            local_weights=None if local_weights is None else [w[slots] for w in local_weights])
        trainer.check_frozen()
        for j, i in enumerate(slots):
            trained[i] = [s[j] for s in stacked]
    return trained


def encode_upload(strategy, client, weights, report, shared=None):
    """The `Upload` of one client, with the payloads that travel, encoded once.

    Arrays that keep the zeros of the broadcast mask are sent as values at the mask's
    positions; an array that does not (a client that changed its own mask) carries its
    positions. With `strategy.upload_update` (a sparse update: top-k) or
    `strategy.upload_value_bits` below 32 the payload carries the update (weights minus global
    weights), below 32 bits quantised with an unbiased stochastic rounding seeded by (seed,
    round, client); the server then uses exactly the decoded values (global + update).
    """
    shared = shared or (lambda arrays: arrays)
    bits = getattr(strategy, "upload_value_bits", 32)
    as_update = _sends_update(strategy)
    masks = shared(client.masks) if client.masks is not None else None
    sent = shared(weights)
    if as_update:
        sent = [np.asarray(w) - np.asarray(g) for w, g in zip(sent, shared(client.global_weights))]
    known = None if masks is None else [
        m if m is not None and not np.any(np.asarray(w)[~m]) else None
        for w, m in zip(sent, masks)]
    rng = (np.random.default_rng([client.seed, client.round_num, client.client_id,
                                  _QUANTISE_SALT]) if bits < 32 else None)
    payload = compress.encode(sent, known_masks=known, value_bits=bits, rng=rng)
    if as_update:
        weights = _with_shared(weights, decode_upload(payload, strategy, client.masks,
                                                      client.global_weights, shared), shared)
    names, report_bytes = report_payload(report)
    return Upload(client.client_id, weights, client.num_examples, report, payload, names,
                  report_bytes)


def decode_upload(payload, strategy, masks, global_weights, shared=None):
    """The weights an upload's payload carries (see `encode_upload`), as the server reads them."""
    shared = shared or (lambda arrays: arrays)
    info = compress.describe(payload)
    masks = shared(masks) if masks is not None else [None] * len(info)
    known = [m if i["masked"] else None for m, i in zip(masks, info)]
    arrays = compress.decode(payload, known_masks=known if any(i["masked"] for i in info)
                             else None)
    if _sends_update(strategy):
        arrays = [(np.asarray(g, np.float64) + a).astype(np.asarray(g).dtype)
                  for a, g in zip(arrays, shared(global_weights))]
    return arrays


def _sends_update(strategy):
    """Whether a strategy's uploads carry the update instead of the weights."""
    return getattr(strategy, "upload_value_bits", 32) < 32 or getattr(
        strategy, "upload_update", False)


def _with_shared(weights, decoded, shared):
    """`weights` with its travelling entries replaced by `decoded` (FedBN keeps the rest)."""
    if shared(list(range(len(weights)))) == list(range(len(weights))):
        return decoded
    out, it = list(weights), iter(decoded)
    for i in shared(list(range(len(weights)))):
        out[i] = next(it)
    return out


def _check_report(report):
    """A report as a dict of arrays with string keys, sorted; None stays None."""
    if report is None:
        return None
    if not isinstance(report, dict) or not all(isinstance(k, str) for k in report):
        raise TypeError(f"client_report must return None or a dict with str keys, got "
                        f"{type(report).__name__}")
    return {k: np.asarray(report[k]) for k in sorted(report)}


def report_payload(report):
    """`(names_json, payload)` of a report, as they travel; (b"", b"") for no report."""
    if not report:
        return b"", b""
    return (json.dumps(list(report)).encode(), compress.encode(list(report.values())))


def report_from_payload(names_json, payload):
    """The report that `report_payload` encoded (None for empty input)."""
    if not names_json:
        return None
    return dict(zip(json.loads(names_json), compress.decode(payload), strict=True))


def upload_bytes(upload):
    """`(weights_bytes, report_bytes)` of an upload: lengths of the payloads that travel."""
    return len(upload.payload), len(upload.report_names) + len(upload.report_payload)


# --- 3. server: failures, acceptance, the server step, the record --------------------------------


def check_failures(round_num, failures, completed, accept_failures):
    """Raise a `ClientFailure` for the first failure unless the run accepts failures.

    With `accept_failures`, a round in which clients failed and none completed is still an
    error: the run would go on without anyone training.
    """
    if not failures:
        return
    first = failures[0]
    if not accept_failures or completed == 0:
        error = ClientFailure(round_num, first.client_id, first.details)
        if first.error is not None:
            raise error from first.error
        raise error


def accept(uploads):
    """The uploads whose every value is finite (the rest are rejected and counted)."""
    return [u for u in uploads
            if all(np.all(np.isfinite(w)) for w in u.weights)
            and all(np.all(np.isfinite(r)) for r in (u.report or {}).values())]


def server_step(strategy, round_num, weights, accepted, config, after_update=None):
    """The strategy's `receive` and `aggregate`, the server learning rate, `finish_round`.

    A round with no accepted upload keeps the global model (then only `finish_round` runs).
    `after_update(weights)` runs between the server step and `finish_round` (FedBN).
    """
    if accepted:
        strategy.receive(round_num, accepted)
        average = strategy.aggregate([u.weights for u in accepted],
                                     [u.num_examples for u in accepted])
        weights = server_update(weights, average, config.server_learning_rate)
        if after_update is not None:
            weights = after_update(weights)
    return strategy.finish_round(round_num, weights)


def round_record(plan, bytes_down_each, uploads, accepted, failures, bytes_up, bytes_report):
    """The round's history record, before evaluation."""
    return {
        "bytes_down": int(sum(bytes_down_each)),
        "bytes_up": int(bytes_up),
        "bytes_report": int(bytes_report),
        "clients_completed": len(accepted),
        "clients_rejected": len(uploads) - len(accepted),
        "clients_dropped": len(plan.sampled) - len(plan.answered),
        "clients_failed": len(failures),
        "failures": [{"client": f.client_id, "details": f.details} for f in failures],
        "clients_sampled": [int(k) for k in plan.sampled],
        "bytes_down_each": [int(b) for b in bytes_down_each],
    }


def evaluate_round(record, trainer, weights, test, round_num, config, started):
    """Add loss, accuracy (on rounds `eval_every` and the last), sparsity and seconds."""
    if round_num % config.eval_every == 0 or round_num == config.num_rounds:
        record["loss"], record["accuracy"] = trainer.evaluate(weights, *test)
    else:
        record["loss"] = record["accuracy"] = None
    record["sparsity"] = kernel_sparsity(weights)
    record["seconds"] = time.perf_counter() - started
    return record
