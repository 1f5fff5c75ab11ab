import dataclasses
import re

import pytest

from prunefl_lite.config import FedConfig


@pytest.mark.parametrize(
    "field, value, error, expected",
    [
        ("num_rounds", 0, ValueError, "num_rounds must be an integer >= 1, got 0"),
        ("num_rounds", 2.5, TypeError, "num_rounds must be an integer >= 1, got 2.5"),
        ("clients_per_round", 0, ValueError, "clients_per_round must be an integer >= 1, got 0"),
        ("local_epochs", -1, ValueError, "local_epochs must be an integer >= 1, got -1"),
        ("batch_size", True, TypeError, "batch_size must be an integer >= 1, got True"),
        ("learning_rate", 0.0, ValueError, "learning_rate must be a number in (0, inf), got 0.0"),
        ("learning_rate", float("nan"), ValueError, "learning_rate must be a number in (0, inf)"),
        ("learning_rate", "0.1", TypeError, "learning_rate must be a number in (0, inf)"),
        ("seed", -1, ValueError, "seed must be an integer in [0, 4294967295], got -1"),
        ("server_learning_rate", -0.5, ValueError,
         "server_learning_rate must be a number in (0, inf)"),
        ("dropout_rate", 1.0, ValueError, "dropout_rate must be a number in [0, 1), got 1.0"),
        ("dropout_rate", -0.1, ValueError, "dropout_rate must be a number in [0, 1)"),
        ("eval_every", 0, ValueError, "eval_every must be an integer >= 1, got 0"),
    ],
)
def test_each_field_is_validated(field, value, error, expected):
    with pytest.raises(error, match=re.escape(expected)):
        FedConfig(**{field: value})


def test_defaults_are_valid_and_replace_works():
    config = dataclasses.replace(FedConfig(), learning_rate=0.1)
    assert config.learning_rate == 0.1 and config.server_learning_rate == 1.0


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FedConfig().num_rounds = 3
