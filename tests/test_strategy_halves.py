"""The strategy protocol's two halves: client hooks work on a copy of the strategy object.

On a deployment each client unpickles its own copy of the strategy as it was before the
server's `start`, and runs the client hooks on it. Here every strategy's client hooks run on
such a copy (no processes), so a strategy that passes state from a server hook to a client
hook through `self` fails in seconds, not in a deployment test.
"""

import dataclasses

import cloudpickle
import numpy as np
import pytest
from fl_setup import CLIENTS, CONFIG, TEST, every_strategy, mlp, without_seconds

import prunefl_lite as pfl
from prunefl_lite import round as fl_round
from prunefl_lite.strategy import (
    CLIENT_HOOKS,
    MODEL_HOOKS,
    SERVER_HOOKS,
    NoPruning,
    StrategyWrapper,
)

CONFIG3 = dataclasses.replace(CONFIG, num_rounds=3, clients_per_round=3)
NAMES = list(every_strategy())


def test_a_schedule_that_depends_on_the_config_runs_on_a_pre_start_copy(monkeypatch):
    """ClientPruning's tfmot schedule ends at a fraction of config.num_rounds: both halves
    derive it from the config (`configure`), not from the server's `start`."""
    shared = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3, pruning=pfl.pruning.ClientPruning(0.5))
    strategy = pfl.pruning.ClientPruning(0.5)
    on_client_copies(monkeypatch, strategy)
    copied = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3, pruning=strategy)
    assert without_seconds(copied) == without_seconds(shared)
    assert shared.metric("sparsity")[-1] > 0.4


def on_client_copies(monkeypatch, strategy):
    """Make `run_fedavg` run the client hooks on a fresh unpickled pre-start copy."""
    blob = cloudpickle.dumps(strategy)  # what a deployment's job file carries
    local_update = fl_round.local_update

    def isolated(trainer, _strategy, *args, **kwargs):
        return local_update(trainer, cloudpickle.loads(blob), *args, **kwargs)

    monkeypatch.setattr(fl_round, "local_update", isolated)


@pytest.mark.parametrize("name", NAMES)
def test_client_hooks_on_a_copy_give_the_same_run(name, monkeypatch):
    shared = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3, pruning=every_strategy()[name])
    strategy = every_strategy()[name]
    on_client_copies(monkeypatch, strategy)
    copied = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3, pruning=strategy)
    assert without_seconds(copied) == without_seconds(shared)
    assert all(np.array_equal(a, b) for a, b in zip(copied.final_weights, shared.final_weights))


def test_a_stateful_shortcut_fails_on_a_copy(monkeypatch):
    class Shortcut(NoPruning):  # a server hook leaves state that a client hook reads
        def round_masks(self, round_num, weights):
            self.scale = 0.5
            return None

        def client_upload(self, round_num, client_id, weights, global_weights):
            return [g + self.scale * (w - g) for w, g in zip(weights, global_weights)]

    pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3, pruning=Shortcut())  # in-process: "works"
    on_client_copies(monkeypatch, Shortcut())
    with pytest.raises(fl_round.ClientFailure, match="has no attribute 'scale'"):
        pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3, pruning=Shortcut())


@pytest.mark.parametrize("name", NAMES)
def test_wrappers_derive_from_one_base_and_delegate_every_hook(name):
    strategy = every_strategy()[name]
    assert isinstance(strategy, NoPruning)
    if isinstance(strategy, StrategyWrapper):
        assert isinstance(strategy.inner, NoPruning)
    for hook in MODEL_HOOKS + SERVER_HOOKS + CLIENT_HOOKS:
        assert callable(getattr(strategy, hook))


class Raising(NoPruning):
    """Client 1's upload raises; the others are plain FedAvg."""

    def client_upload(self, round_num, client_id, weights, global_weights):
        if client_id == 1:
            raise RuntimeError("client 1 cannot upload")
        return weights


def test_a_client_hook_that_raises_stops_the_run_with_its_traceback():
    config = dataclasses.replace(CONFIG3, clients_per_round=len(CLIENTS))
    with pytest.raises(fl_round.ClientFailure, match="client 1 failed in round 1") as info:
        pfl.run_fedavg(mlp, CLIENTS, TEST, config, pruning=Raising())
    assert "client 1 cannot upload" in info.value.details  # the client's traceback
    assert isinstance(info.value.__cause__, RuntimeError)


def test_accepted_failures_are_recorded_and_the_round_goes_on():
    config = dataclasses.replace(CONFIG3, clients_per_round=len(CLIENTS))
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, config, pruning=Raising(),
                             accept_failures=True)
    assert history.metric("clients_failed") == [1, 1, 1]
    assert history.metric("clients_completed") == [len(CLIENTS) - 1] * 3
    assert all(f[0]["client"] == 1 and "cannot upload" in f[0]["details"]
               for f in history.metric("failures"))


def test_a_round_in_which_every_client_failed_is_an_error_even_when_accepted():
    class AllFail(NoPruning):
        def client_upload(self, round_num, client_id, weights, global_weights):
            raise ValueError("nobody uploads")

    with pytest.raises(fl_round.ClientFailure, match="nobody uploads"):
        pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG3, pruning=AllFail(), accept_failures=True)


def test_a_clients_batches_do_not_depend_on_who_else_trains():
    rows = [np.arange(10), np.arange(10, 30)]
    together = fl_round.client_rngs(0, 3, [4, 7])
    alone = fl_round.client_rngs(0, 3, [7])
    plan = pfl.client.plan_local_steps(rows, 2, 4, together)
    single = pfl.client.plan_local_steps(rows[1:], 2, 4, alone)
    assert np.array_equal(plan["rows"][plan["start"][1]:plan["stop"][1]], single["rows"])
