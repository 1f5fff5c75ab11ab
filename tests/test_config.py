import dataclasses

import pytest

from prunefl_lite.config import FedConfig


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("num_rounds", 0, "num_rounds must be an integer in [1, inf), got 0"),
        ("num_rounds", 2.5, "num_rounds must be an integer"),
        ("clients_per_round", 0, "clients_per_round must be an integer in [1, inf)"),
        ("local_epochs", -1, "local_epochs must be an integer in [1, inf)"),
        ("batch_size", True, "batch_size must be an integer"),
        ("learning_rate", 0.0, "learning_rate must be a number in (0, inf), got 0.0"),
        ("learning_rate", float("nan"), "learning_rate must be a number in (0, inf)"),
        ("seed", -1, "seed must be an integer in [0, 4294967295]"),
        ("server_learning_rate", -0.5, "server_learning_rate must be a number in (0, inf)"),
        ("dropout_rate", 1.0, "dropout_rate must be a number in [0, 1), got 1.0"),
        ("dropout_rate", -0.1, "dropout_rate must be a number in [0, 1)"),
        ("eval_every", 0, "eval_every must be an integer in [1, inf)"),
    ],
)
def test_each_field_is_validated(field, value, expected):
    with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        FedConfig(**{field: value})


def test_defaults_are_valid_and_replace_works():
    config = dataclasses.replace(FedConfig(), learning_rate=0.1)
    assert config.learning_rate == 0.1 and config.server_learning_rate == 1.0


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FedConfig().num_rounds = 3
