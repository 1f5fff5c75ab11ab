"""What travels in the Flower messages: payloads inside records, the run config, the job file.

Every array travels as one `compress.encode` payload (a uint8 array in an `ArrayRecord`), so
the savings of sparse payloads are on the wire and the payload lengths are exactly the bytes
`run_fedavg` counts. A message may carry the rounds of several package strategies at once
(one per job entry): each strategy's records are named `"<index>.<name>"`.

Broadcast records of entry i: `i.weights` (payload), `i.masks` (explicit mask payload, only
when needed), `i.config` (round, whether the client held the masks, which arrays are masked,
the instructions' JSON). Upload records: `i.weights`, `i.report` (payload) and `i.meta`
(client id, examples, report names JSON) or, for a client whose hooks raised, `i.failure`
(client id, traceback).
"""

import dataclasses
import json
import numbers

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord

from prunefl_lite import compress
from prunefl_lite.config import FedConfig
from prunefl_lite.round import (
    Failure,
    RoundPlan,
    Upload,
    decode_upload,
    instructions_text,
    report_from_payload,
)

__all__ = ["config_to_run_config", "message_bytes", "read_job", "run_config_to_config",
           "toml_value", "write_job"]


# --- configuration: FedConfig <-> Flower run config, the job file --------------------------


def config_to_run_config(config):
    """A `FedConfig` as Flower run-config entries (kebab-case keys, plain TOML scalars).

    Example:
        >>> config_to_run_config(FedConfig(num_rounds=3))["num-rounds"]
        3
    """
    if not isinstance(config, FedConfig):
        raise ValueError(f"config must be a FedConfig, got {type(config).__name__}")
    return {f.name.replace("_", "-"): _plain(getattr(config, f.name))
            for f in dataclasses.fields(config)}


def _plain(value):
    """A Python or NumPy scalar as a plain Python bool, int, float or str."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


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


def toml_value(value):
    """A Python or NumPy scalar as a TOML value.

    Example:
        >>> toml_value(np.int64(3)), toml_value(np.float32(0.5)), toml_value(True)
        ('3', '0.5', 'true')
    """
    value = _plain(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def write_job(path, model_fn, strategies, test):
    """Write what the apps need besides the run config: model_fn, strategies, test data.

    cloudpickle pickles lambdas and classes defined in a notebook by value; classes and
    functions from the learner's own modules (a test file, a `my_strategy.py` beside the
    notebook), which the apps' processes could not import, are pickled by value too. Each
    client unpickles its own copy of the strategies, as they were before the server's `start`.
    """
    import cloudpickle

    for module in _own_modules([model_fn, *strategies]):
        cloudpickle.register_pickle_by_value(module)
    with open(path, "wb") as f:
        cloudpickle.dump({"model_fn": model_fn, "strategies": list(strategies),
                          "test": (np.asarray(test[0], np.float32),
                                   np.asarray(test[1]).astype(np.int64))}, f)


def _own_modules(objects):
    """The modules of these objects' classes (and wrapped strategies) outside installed packages."""
    import sys
    import sysconfig

    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}
    found, todo = set(), list(objects)
    while todo:
        obj = todo.pop()
        todo += [obj.inner] if hasattr(obj, "inner") else []
        kinds = type(obj).__mro__ if not callable(obj) or hasattr(obj, "inner") else [obj]
        for kind in kinds:
            module = sys.modules.get(getattr(kind, "__module__", None) or "")
            path = getattr(module, "__file__", None)
            if module is None or path is None or module.__name__.split(".")[0] in (
                    "prunefl_lite", "builtins") or any(path.startswith(p) for p in installed):
                continue
            found.add(module)
    return found


def read_job(path):
    """Read a job file written by `write_job` (only ever one this package wrote)."""
    import pickle

    with open(path, "rb") as f:
        return pickle.load(f)


# --- payloads inside records, and their size -----------------------------------------------


def payload_record(payload):
    """An ArrayRecord carrying one payload (bytes) as a uint8 array."""
    return ArrayRecord({"payload": Array(np.frombuffer(payload, dtype=np.uint8))})


def payload_of(record):
    """The payload bytes carried by `payload_record`."""
    return record["payload"].numpy().tobytes()


def message_bytes(message):
    """Serialised size of a Flower message (or record): the bytes of every object it sends.

    Flower 1.42 splits a message into objects (the message, its records, arrays and array
    chunks) and sends each one's serialised body; this sums their lengths. The transport's own
    framing (HTTP headers) and the polling requests are not included.

    Example:
        >>> dense = ArrayRecord([np.zeros((100, 10), np.float32)])
        >>> message_bytes(dense) > 4000  # Flower sends arrays dense: 4 bytes per weight
        True
    """
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    return sum(len(obj.deflate()) for obj in get_all_nested_objects(message).values())


def entries(content, suffix):
    """The job-entry indices that have a record named `"<index>.<suffix>"` in `content`."""
    return sorted(int(name.split(".")[0]) for name in content.keys()
                  if name.endswith(f".{suffix}"))


# --- the broadcast ----------------------------------------------------------------------------


def broadcast_records(index, plan, payload, known, mask_payload):
    """Records of job entry `index` for one client: weights, explicit masks, config."""
    flags = [m is not None for m in plan.masks] if plan.masks is not None else []
    records = {f"{index}.weights": payload_record(payload), f"{index}.config": ConfigRecord({
        "round": int(plan.round_num), "known": bool(known), "masked": flags,
        "instructions": instructions_text(plan.instructions)})}
    if mask_payload:
        records[f"{index}.masks"] = payload_record(mask_payload)
    return records


def read_broadcast(content, index, held):
    """Decode entry `index` of a broadcast: `(plan, weights)`; the plan carries the masks.

    `held` is the mask list this client kept from an earlier round (or None).
    """
    settings = content[f"{index}.config"]
    known = held if settings["known"] else None
    weights = compress.decode(payload_of(content[f"{index}.weights"]), known_masks=known)
    flags = list(settings["masked"])
    if not any(flags):
        masks = None
    elif known is not None:
        masks = known
    elif f"{index}.masks" in content.keys():
        explicit = iter(compress.decode(payload_of(content[f"{index}.masks"])))
        masks = [next(explicit) if flag else None for flag in flags]
    else:
        masks = [np.asarray(w) != 0 if flag else None for w, flag in zip(weights, flags)]
    text = settings["instructions"]
    plan = RoundPlan(int(settings["round"]), np.array([]), np.array([]), masks,
                     json.loads(text) if text else {})
    return plan, weights


# --- the upload -------------------------------------------------------------------------------


def upload_records(index, upload):
    """Records of job entry `index` for one client's upload (weights, report, meta)."""
    return {
        f"{index}.weights": payload_record(upload.payload),
        f"{index}.report": payload_record(upload.report_payload),
        f"{index}.meta": ConfigRecord({"client": int(upload.client_id),
                                       "examples": int(upload.num_examples),
                                       "report-names": upload.report_names.decode()}),
    }


def failure_records(index, client_id, details):
    """Records of job entry `index` for a client whose local update or hooks raised."""
    return {f"{index}.failure": ConfigRecord({"client": int(client_id), "details": details})}


def read_upload(content, index, strategy, masks, global_weights):
    """`(upload, bytes_up, bytes_report)` of entry `index` of a reply.

    `upload` is an `Upload` (decoded as `round.decode_upload` reads it), a `Failure` (with
    zero bytes) or None (no such entry); the bytes are the lengths of the payloads that
    travelled (weights, report names, report).
    """
    if f"{index}.failure" in content.keys():
        failure = content[f"{index}.failure"]
        return Failure(int(failure["client"]), str(failure["details"])), 0, 0
    if f"{index}.meta" not in content.keys():
        return None, 0, 0
    meta = content[f"{index}.meta"]
    payload = payload_of(content[f"{index}.weights"])
    names, report = meta["report-names"].encode(), payload_of(content[f"{index}.report"])
    upload = Upload(int(meta["client"]), decode_upload(payload, strategy, masks, global_weights),
                    int(meta["examples"]), report_from_payload(names, report), payload, names,
                    report)
    return upload, len(payload) + len(names) + len(report), len(names) + len(report)
