"""The numbers a learner types: NumPy scalars work end to end, and History.save is atomic."""

import json
import os
import re

import numpy as np
import pytest
from fl_setup import CLIENTS, TEST, mlp

import prunefl_lite as pfl
from prunefl_lite import history as history_module
from prunefl_lite.history import History


def numpy_history():
    rounds = [{"accuracy": np.float32(0.5), "loss": np.float64(1.25), "bytes_up": np.int64(70),
               "clients_completed": np.int32(3), "clients_sampled": np.array([0, 2, 5]),
               "bytes_down_each": [np.int64(10), np.int64(11), np.int64(12)],
               "flag": np.True_, "none": None}]
    config = {"seed": np.int64(3), "learning_rate": np.float32(0.25), "pruning": "NoPruning",
              "per_client": {np.int64(4): np.float64(0.5)}}
    return History(rounds=rounds, config=config, final_weights=[np.arange(6.0).reshape(2, 3)],
                   client_weights={np.int64(1): [np.ones(2, np.float32)]})


def test_save_writes_numpy_scalars_as_plain_values(tmp_path):
    path = tmp_path / "run.json"
    numpy_history().save(path)
    loaded = History.load(path)
    assert loaded.rounds == [{"accuracy": 0.5, "loss": 1.25, "bytes_up": 70,
                              "clients_completed": 3, "clients_sampled": [0, 2, 5],
                              "bytes_down_each": [10, 11, 12], "flag": True, "none": None}]
    assert loaded.config == {"seed": 3, "learning_rate": 0.25, "pruning": "NoPruning",
                             "per_client": {"4": 0.5}}
    assert type(loaded.config["seed"]) is int and type(loaded.rounds[0]["bytes_up"]) is int
    assert np.array_equal(loaded.final_weights[0], np.arange(6.0).reshape(2, 3))
    assert list(loaded.client_weights) == [1]
    assert loaded.client_weights[1][0].dtype == np.float32


@pytest.mark.parametrize(
    "bad, where",
    [({"accuracy": object()}, "rounds[0]['accuracy']"),
     ({"when": np.datetime64("2026-01-01")}, "rounds[0]['when']"),
     ({"nested": [1, {2, 3}]}, "rounds[0]['nested'][1]")],
    ids=["object", "np.datetime64", "set"],
)
def test_a_failed_save_leaves_the_previous_file_and_no_temporary(tmp_path, bad, where):
    path = tmp_path / "run.json"
    numpy_history().save(path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match=re.escape(where)):
        History(rounds=[bad]).save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["run.json"]


def test_a_failed_first_save_leaves_no_file(tmp_path):
    with pytest.raises(TypeError, match="must hold numbers"):
        History(rounds=[{"accuracy": object()}]).save(tmp_path / "run.json")
    assert os.listdir(tmp_path) == []


def test_a_save_that_fails_while_writing_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    History(rounds=[{"accuracy": 0.25}]).save(path)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(history_module.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        numpy_history().save(path)
    assert json.loads(path.read_text())["rounds"] == [{"accuracy": 0.25}]
    assert sorted(os.listdir(tmp_path)) == ["run.json"]


def test_save_respects_the_umask_and_overwrites(tmp_path):
    path = tmp_path / "run.json"
    History(rounds=[{"accuracy": 0.25}]).save(str(path))
    History(rounds=[{"accuracy": 0.75}]).save(path)
    assert History.load(path).rounds == [{"accuracy": 0.75}]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_run_configured_with_numpy_scalars_saves_and_loads(tmp_path):
    # the values a loop over np.arange / np.linspace gives
    seed, rounds, rate = np.arange(3)[2], np.int64(2), np.linspace(0.01, 0.05, 3)[2]
    config = pfl.FedConfig(num_rounds=rounds, clients_per_round=np.int32(2),
                           batch_size=np.int64(16), learning_rate=rate, seed=seed,
                           dropout_rate=np.float32(0.0))
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, config)
    plain = pfl.run_fedavg(mlp, CLIENTS, TEST, pfl.FedConfig(
        num_rounds=2, clients_per_round=2, batch_size=16, learning_rate=0.05, seed=2))
    assert history.metric("accuracy") == plain.metric("accuracy")
    path = tmp_path / "run.json"
    history.save(path)
    loaded = History.load(path)
    assert loaded.config["seed"] == 2 and type(loaded.config["seed"]) is int
    assert loaded.metric("accuracy") == pytest.approx(history.metric("accuracy"))
    assert len(loaded.rounds) == 2


@pytest.mark.parametrize(
    "args, error, message",
    [((True, 100, 10, 10), TypeError, "noise_multiplier must be a number in (0, inf), got True"),
     ((np.True_, 100, 10, 10), TypeError,
      "noise_multiplier must be a number in (0, inf), got np.True_"),
     ((np.float32(0), 100, 10, 10), ValueError,
      "noise_multiplier must be a number in (0, inf), got np.float32(0.0)"),
     ((1.0, True, 10, 10), TypeError, "num_clients must be an integer >= 1, got True"),
     ((1.0, np.float64(100), 10, 10), TypeError,
      "num_clients must be an integer >= 1, got np.float64(100.0)"),
     ((1.0, 100, np.int64(101), 10), ValueError,
      "clients_per_round must be an integer in [1, 100], got np.int64(101)"),
     ((1.0, 100, 10, np.False_), TypeError, "num_rounds must be an integer >= 1, got np.False_")],
)
def test_epsilon_refuses_bools_and_names_numpy_values(args, error, message):
    with pytest.raises(error, match=re.escape(message)):
        pfl.privacy.epsilon(*args)


def test_epsilon_accepts_numpy_scalars_and_delta():
    plain = pfl.privacy.epsilon(1.5, 100, 10, 20, delta=1e-5)
    numpy = pfl.privacy.epsilon(np.float64(1.5), np.int64(100), np.int32(10), np.int64(20),
                                delta=np.float64(1e-5))
    assert numpy == plain and type(numpy) is float
    with pytest.raises(TypeError, match=re.escape("delta must be a number in (0, 1), got True")):
        pfl.privacy.epsilon(1.5, 100, 10, 20, delta=True)


def test_a_numpy_config_makes_a_valid_flower_run_config():
    import tomllib

    from prunefl_lite.flower import records

    config = pfl.FedConfig(num_rounds=np.int64(3), learning_rate=np.float32(0.5),
                           seed=np.arange(5)[4], dropout_rate=np.float64(0.25))
    run_config = records.config_to_run_config(config)
    text = "\n".join(f"{key} = {records.toml_value(value)}" for key, value in run_config.items())
    parsed = tomllib.loads(text)
    assert parsed["num-rounds"] == 3 and parsed["seed"] == 4 and parsed["learning-rate"] == 0.5
    assert records.run_config_to_config(parsed) == config


def test_history_save_into_a_missing_folder_names_the_path(tmp_path):
    target = tmp_path / "nope" / "run.json"
    with pytest.raises(FileNotFoundError, match="run.json"):
        pfl.History(rounds=[{"accuracy": 0.5}]).save(target)
    assert not (tmp_path / "nope").exists()
