"""prunefl_lite: FedAvg with Keras pruning, the helper package of the course.

Importing the package selects Keras 2 (``tf_keras``), which tensorflow-model-optimization needs,
and quiets TensorFlow's start-up logging. Import it before TensorFlow:

>>> import prunefl_lite as pfl
>>> import os
>>> os.environ["TF_USE_LEGACY_KERAS"]
'1'

Modules, one responsibility each: `config` (FedConfig), `data` (datasets, partitions), `models`
(2NN, CNN), `pruning` (a subpackage: masks, schedules and tfmot, reports, structured pruning,
FL pruning strategies), `strategy` (the protocol the round loop calls), `client` (local
updates), `server` (aggregation rules), `round` (the one copy of an FL round, shared by
`fedavg` and `flower`), `fedavg` (the round loop), `history` (per-round
record), `compress` (payload encoders), `plots` (figures), `stats` (spread over seeds, one
convention), `validate` (the argument checks
every module shares: ``NAME must be ..., got VALUE``), `export` (Keras -> LiteRT bytes, run and
timed with the LiteRT interpreter), `metrics` (ROC/PR AUC, sensitivity at a specificity, from
scikit-learn), `privacy` (the gradient leak, DP-FedAvg and its epsilon, a secure-sum toy),
`robust` (median, trimmed mean, Krum), `attacks` (poisoned clients), `flower` (the Flower 1.42
bridge; imported on demand, so `import prunefl_lite` does not import Flower), `setup_check` (the
workshop set-up check, run as a file).
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tfmot works only with Keras 2 (tf_keras)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ info/warning lines


def _import_tensorflow_quietly():
    """Import TensorFlow once with file descriptor 2 silenced.

    TensorFlow's C++ runtime writes start-up lines (oneDNN, CUDA probes) straight to the process's
    stderr before its logging is configured, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them; in a
    notebook they show up as red stderr output (and fail a strict book build). Devices are listed
    here, silenced, because the CUDA probe runs then. Python-level errors still raise as usual.
    """
    import sys

    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow

        tensorflow.config.list_logical_devices()  # initialise devices now (it logs a CUDA probe)
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


_import_tensorflow_quietly()

__version__ = "0.1.0"

from prunefl_lite import (  # noqa: E402  (TensorFlow must be configured first)
    attacks,
    client,
    compress,
    config,
    data,
    export,
    fedavg,
    history,
    metrics,
    models,
    plots,
    privacy,
    pruning,
    robust,
    round,
    server,
    stats,
    strategy,
    validate,
)
from prunefl_lite.config import FedConfig  # noqa: E402
from prunefl_lite.fedavg import run_fedavg  # noqa: E402
from prunefl_lite.history import History  # noqa: E402

__all__ = [
    "FedConfig", "History", "run_fedavg", "attacks", "client", "compress", "config", "data",
    "export", "fedavg", "history", "metrics", "models", "plots", "privacy", "pruning", "robust",
    "round", "server", "stats", "strategy", "validate",
]
