"""Flower 1.42 bridge: the package's strategies on a real FL runtime, by concern.

- `records`: what travels in the messages (payloads inside records, the run config, the job);
- `apps`: the ClientApp and the ServerApp (`PackageStrategy`), thin adapters around
  `prunefl_lite.round`, the same round that `run_fedavg` runs;
- `deployment`: `LocalDeployment`, a SuperLink and one SuperNode per client on localhost;
- `processes`: starting and stopping those processes on any operating system (psutil).

Every strategy (`NoPruning`, the pruning strategies, DP, robust rules, poisoning, and any
combination through `strategy.StrategyWrapper`) runs here exactly as in `run_fedavg`: the
client hooks in the ClientApp on each node's own copy of the strategy, the server hooks in
the ServerApp, nothing shared but the messages.

Importing this subpackage imports `flwr` (the package's `__init__` does not import it).
"""

from prunefl_lite.flower.apps import HOOKS_TO_FLOWER, PackageStrategy, client_app, server_app
from prunefl_lite.flower.deployment import FEDERATION, LocalDeployment
from prunefl_lite.flower.processes import alive
from prunefl_lite.flower.records import (
    config_to_run_config,
    message_bytes,
    run_config_to_config,
)

__all__ = [
    "FEDERATION", "HOOKS_TO_FLOWER", "LocalDeployment", "PackageStrategy", "alive",
    "client_app", "config_to_run_config", "message_bytes", "run_config_to_config",
    "server_app",
]
