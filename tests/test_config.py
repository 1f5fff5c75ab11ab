import dataclasses
import re

import numpy as np
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


INT_FIELDS = ("num_rounds", "clients_per_round", "local_epochs", "batch_size", "seed", "eval_every")
FLOAT_FIELDS = ("learning_rate", "server_learning_rate", "dropout_rate")


@pytest.mark.parametrize("field", INT_FIELDS)
@pytest.mark.parametrize("value", [np.int64(2), np.int32(2), np.uint16(2)],
                         ids=["np.int64", "np.int32", "np.uint16"])
def test_integer_fields_accept_numpy_integers_and_store_plain_ints(field, value):
    config = FedConfig(**{field: value})
    assert getattr(config, field) == 2 and type(getattr(config, field)) is int
    assert type(dataclasses.asdict(config)[field]) is int


@pytest.mark.parametrize("field", FLOAT_FIELDS)
@pytest.mark.parametrize("value, expected",
                         [(np.float64(0.5), 0.5), (np.float32(0.5), 0.5), (0.5, 0.5)],
                         ids=["np.float64", "np.float32", "float"])
def test_float_fields_accept_numpy_floats_and_store_plain_floats(field, value, expected):
    config = FedConfig(**{field: value})
    assert getattr(config, field) == expected and type(getattr(config, field)) is float


@pytest.mark.parametrize("field", INT_FIELDS + FLOAT_FIELDS)
@pytest.mark.parametrize("value", [True, False, np.True_, np.False_],
                         ids=["True", "False", "np.True_", "np.False_"])
def test_every_numeric_field_refuses_bools(field, value):
    with pytest.raises(TypeError, match=re.escape(f"{field} must be ")) as info:
        FedConfig(**{field: value})
    assert str(info.value).endswith(f"got {value!r}")


@pytest.mark.parametrize(
    "field, value, error, expected",
    [("seed", np.int64(-1), ValueError,
      "seed must be an integer in [0, 4294967295], got np.int64(-1)"),
     ("num_rounds", np.float64(3.0), TypeError,
      "num_rounds must be an integer >= 1, got np.float64(3.0)"),
     ("learning_rate", np.float32(0), ValueError,
      "learning_rate must be a number in (0, inf), got np.float32(0.0)"),
     ("dropout_rate", np.float64(1.0), ValueError,
      "dropout_rate must be a number in [0, 1), got np.float64(1.0)")],
)
def test_numpy_values_out_of_range_are_named(field, value, error, expected):
    with pytest.raises(error, match=re.escape(expected)):
        FedConfig(**{field: value})


def test_replace_with_numpy_values_stores_plain_values():
    config = dataclasses.replace(FedConfig(), seed=np.int64(7), learning_rate=np.float32(0.25))
    assert (config.seed, config.learning_rate) == (7, 0.25)
    assert type(config.seed) is int and type(config.learning_rate) is float
