import prunefl_lite  # noqa: F401, I001  (first: selects Keras 2 before TensorFlow loads)

import numpy as np
import pytest
import tensorflow as tf

from prunefl_lite import pruning
from prunefl_lite.data import load_dataset
from prunefl_lite.models import mlp_2nn

W = [np.ones((2, 2)), np.ones(2)]


def _fit_loss():
    return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    return ds.x_train, ds.y_train


@pytest.fixture(scope="module")
def update_step():
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras.UpdatePruningStep


def _model(hidden=32, seed=0):
    tf.keras.utils.set_random_seed(seed)
    return mlp_2nn((8, 8, 1), 10, hidden_units=hidden)


# --- validation: one case per rule; the message names the parameter ------------------------------

VALIDATION = {
    "weights not a list": (lambda: pruning.magnitude_masks(np.ones(3), 0.5), TypeError, "weights"),
    "weights empty": (lambda: pruning.magnitude_masks([], 0.5), ValueError, "weights"),
    "weights entry not array": (
        lambda: pruning.magnitude_masks([[1.0, 2.0]], 0.5),
        TypeError,
        "weights[0]",
    ),
    "weights not numeric": (
        lambda: pruning.magnitude_masks([np.array(["a"])], 0.5),
        TypeError,
        "weights[0]",
    ),
    "weights not finite": (
        lambda: pruning.magnitude_masks([np.ones(2), np.array([[np.nan]])], 0.5),
        ValueError,
        "weights[1] must be finite",
    ),
    "sparsity too large": (
        lambda: pruning.magnitude_masks(W, 1.2),
        ValueError,
        "sparsity must be a number in [0, 1), got 1.2",
    ),
    "sparsity one": (lambda: pruning.magnitude_masks(W, 1.0), ValueError, "sparsity"),
    "sparsity negative": (lambda: pruning.magnitude_masks(W, -0.1), ValueError, "sparsity"),
    "sparsity nan": (lambda: pruning.magnitude_masks(W, float("nan")), ValueError, "sparsity"),
    "sparsity not a number": (lambda: pruning.magnitude_masks(W, "0.5"), TypeError, "sparsity"),
    "sparsity bool": (lambda: pruning.magnitude_masks(W, True), TypeError, "sparsity"),
    "scope unknown": (
        lambda: pruning.magnitude_masks(W, 0.5, scope="local"),
        ValueError,
        "scope must be one of 'global', 'layer', got 'local'",
    ),
    "prunable wrong length": (
        lambda: pruning.magnitude_masks(W, 0.5, prunable=[True]),
        ValueError,
        "prunable must have one entry per array of weights (2), got 1",
    ),
    "prunable not bools": (
        lambda: pruning.magnitude_masks(W, 0.5, prunable=[1, 0]),
        TypeError,
        "prunable[0]",
    ),
    "masks wrong length": (
        lambda: pruning.apply_masks(W, [np.ones((2, 2))]),
        ValueError,
        "masks must have one entry",
    ),
    "mask wrong shape": (
        lambda: pruning.apply_masks(W, [np.ones((2, 2)), np.ones(3)]),
        ValueError,
        "masks[1] must have shape (2,)",
    ),
    "sparsity of nothing": (lambda: pruning.sparsity([]), ValueError, "weights"),
    "sparsity of empty arrays": (lambda: pruning.sparsity([np.ones(0)]), ValueError, "weights"),
    "report of non-arrays": (lambda: pruning.sparsity_report(3), TypeError, "model_or_weights"),
    "schedule target": (
        lambda: pruning.polynomial_sparsity(0, 1.0, 0, 10),
        ValueError,
        "target_sparsity must be a number in [0, 1), got 1.0",
    ),
    "schedule initial": (
        lambda: pruning.polynomial_sparsity(0, 0.5, 0, 10, initial_sparsity=-0.1),
        ValueError,
        "initial_sparsity",
    ),
    "schedule initial above target": (
        lambda: pruning.polynomial_sparsity(0, 0.5, 0, 10, initial_sparsity=0.6),
        ValueError,
        "initial_sparsity must be <= target_sparsity",
    ),
    "schedule begin negative": (
        lambda: pruning.polynomial_sparsity(0, 0.5, -1, 10),
        ValueError,
        "begin_step must be an integer >= 0, got -1",
    ),
    "schedule begin not int": (
        lambda: pruning.polynomial_sparsity(0, 0.5, 1.5, 10),
        TypeError,
        "begin_step",
    ),
    "schedule end not after begin": (
        lambda: pruning.polynomial_sparsity(0, 0.5, 10, 10),
        ValueError,
        "end_step must be an integer >= 11, got 10",
    ),
    "schedule power": (
        lambda: pruning.polynomial_sparsity(0, 0.5, 0, 10, power=0),
        ValueError,
        "power must be a number in (0, inf), got 0",
    ),
    "tfmot schedule name": (
        lambda: pruning.prune_with_tfmot(_model(), 0.5, end_step=10, schedule="cubic"),
        ValueError,
        "schedule must be one of 'polynomial', 'constant', got 'cubic'",
    ),
    "tfmot target": (
        lambda: pruning.prune_with_tfmot(_model(), 1.5, end_step=10),
        ValueError,
        "target_sparsity",
    ),
    "tfmot frequency": (
        lambda: pruning.prune_with_tfmot(_model(), 0.5, end_step=10, frequency=0),
        ValueError,
        "frequency must be an integer >= 1, got 0",
    ),
    "tfmot end_step missing": (
        lambda: pruning.prune_with_tfmot(_model(), 0.5),
        ValueError,
        "end_step is required",
    ),
    "tfmot end_step off the frequency grid": (
        lambda: pruning.prune_with_tfmot(_model(), 0.5, end_step=95, frequency=10),
        ValueError,
        "end_step - begin_step must be a multiple of frequency (10), got 95",
    ),
    "tfmot constant with initial": (
        lambda: pruning.prune_with_tfmot(_model(), 0.5, schedule="constant", initial_sparsity=0.1),
        ValueError,
        "initial_sparsity must be 0",
    ),
    "tfmot model type": (
        lambda: pruning.prune_with_tfmot("model", 0.5, end_step=10),
        TypeError,
        "model must be a tf.keras.Model",
    ),
    "unit_norms kernel rank": (lambda: pruning.unit_norms(np.ones(3)), ValueError, "kernel"),
    "unit_norms ord": (lambda: pruning.unit_norms(np.ones((2, 2)), ord=3), ValueError, "ord"),
    "prune_units fraction": (
        lambda: pruning.prune_units(_model(), 1.0),
        ValueError,
        "fraction must be a number in [0, 1), got 1.0",
    ),
    "prune_units functional model": (
        lambda: pruning.prune_units(tf.keras.Model(*[tf.keras.Input((3,))] * 2), 0.5),
        TypeError,
        "model must be a tf.keras.Sequential",
    ),
    "prune_units unbuilt model": (
        lambda: pruning.prune_units(tf.keras.Sequential([tf.keras.layers.Dense(2)]), 0.5),
        ValueError,
        "model must be built",
    ),
    "prune_units unsupported layer": (
        lambda: pruning.prune_units(
            tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.BatchNormalization()]), 0.5
        ),
        ValueError,
        "got layer 'batch_normalization",
    ),
    "prune_units channels_first": (
        lambda: pruning.prune_units(
            tf.keras.Sequential(
                [tf.keras.Input((1, 4, 4)), tf.keras.layers.Flatten(data_format="channels_first")]
            ),
            0.5,
        ),
        ValueError,
        "data_format='channels_last'",
    ),
}


@pytest.mark.parametrize("case", VALIDATION.values(), ids=VALIDATION.keys())
def test_validation(case):
    call, error, message = case
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


# --- from-scratch magnitude masks -----------------------------------------------------------------


def test_sign_rule_negative_weights_outrank_small_positive_ones():
    kernel = np.array([[-5.0, 0.1], [-3.0, 0.2]])
    (mask,) = pruning.magnitude_masks([kernel], 0.5)
    np.testing.assert_array_equal(mask, [[True, False], [True, False]])
    articles = kernel * (kernel > 0.15)  # the articles' rule: every negative weight is deleted
    np.testing.assert_array_equal(articles != 0, [[False, False], [False, True]])


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("target", [0.0, 0.1, 0.33, 0.5, 0.9, 0.999])
def test_exact_k_pruned_and_biases_untouched(scope, target):
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=(7, 5)), rng.normal(size=5), rng.normal(size=(5, 3)), np.ones(3)]
    masks = pruning.magnitude_masks(weights, target, scope=scope)
    assert [m.dtype for m in masks] == [np.bool_] * 4
    assert masks[1].all() and masks[3].all()
    kernels = [masks[0], masks[2]]
    if scope == "global":
        assert sum((~m).sum() for m in kernels) == round(target * 50)
    else:
        assert [(~m).sum() for m in kernels] == [round(target * 35), round(target * 15)]


def test_prunable_overrides_the_default():
    weights = [np.array([[3.0, -1.0]]), np.array([0.5, -2.0])]
    masks = pruning.magnitude_masks(weights, 0.5, prunable=[True, True])
    np.testing.assert_array_equal(np.concatenate([m.ravel() for m in masks]), [1, 0, 0, 1])


def test_ties_are_broken_by_lower_flat_index_first():
    weights = [np.array([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]]), np.full((2, 2), -1.0)]
    masks = pruning.magnitude_masks(weights, 0.3)  # 3 of the 10 tied weights
    np.testing.assert_array_equal(masks[0], [[False] * 3, [True] * 3])
    np.testing.assert_array_equal(masks[1], np.ones((2, 2), bool))
    again = pruning.magnitude_masks([w.copy() for w in weights], 0.3)
    assert all((a == b).all() for a, b in zip(masks, again, strict=True))


def test_masks_are_nested_as_sparsity_grows():
    rng = np.random.default_rng(2)
    weights = [rng.normal(size=(20, 10)), rng.normal(size=10), rng.normal(size=(10, 4))]
    weights[0][:1] = 0.0  # 10 already-zero weights: pruned first
    previous = [np.ones(w.shape, bool) for w in weights]
    for target in [0.05, 0.2, 0.5, 0.8, 0.95]:
        masks = pruning.magnitude_masks(weights, target)
        assert all((~p <= ~m).all() for p, m in zip(previous, masks, strict=True))
        assert not masks[0][:1].any()
        iterative = pruning.magnitude_masks(pruning.apply_masks(weights, previous), target)
        assert all((a == b).all() for a, b in zip(iterative, masks, strict=True))
        previous = masks


def test_global_and_layer_scope_differ_on_layers_of_different_scales():
    rng = np.random.default_rng(3)
    weights = [10 * rng.normal(size=(10, 10)), 0.1 * rng.normal(size=(10, 10))]
    by_layer = pruning.magnitude_masks(weights, 0.5, scope="layer")
    assert [m.sum() for m in by_layer] == [50, 50]
    big, small = pruning.magnitude_masks(weights, 0.5, scope="global")
    assert big.sum() + small.sum() == 100
    assert small.sum() < 10 < 90 < big.sum()  # global ranking empties the small-scale layer


def test_apply_masks_returns_new_arrays_with_dtype_kept():
    weights = [np.array([[-1.5, 2.0]], dtype=np.float32), np.array([3, 4], dtype=np.int64)]
    masked = pruning.apply_masks(weights, [np.array([[0, 1]]), np.array([True, False])])
    assert [m.dtype for m in masked] == [np.float32, np.int64]
    np.testing.assert_array_equal(masked[0], [[0.0, 2.0]])
    assert not np.signbit(masked[0][0, 0])  # +0.0, not -0.0
    np.testing.assert_array_equal(weights[0], [[-1.5, 2.0]])  # input untouched
    assert pruning.sparsity(masked) == 0.5


def test_sparsity_report_of_weights_and_of_a_model():
    report = pruning.sparsity_report([np.zeros((2, 3)), np.ones(3)])
    assert [(r.name, r.shape, r.nonzeros, r.total, r.sparsity) for r in report] == [
        ("weights[0]", (2, 3), 0, 6, 1.0),
        ("weights[1]", (3,), 3, 3, 0.0),
    ]
    assert "total" in str(report).splitlines()[-1]
    model = _model(hidden=8)
    model.set_weights(
        pruning.apply_masks(model.get_weights(), [np.zeros(w.shape) for w in model.get_weights()])
    )
    names = [r.name for r in pruning.sparsity_report(model)]
    assert names == [
        f"{layer}/{kind}"
        for layer in ("hidden_1", "hidden_2", "logits")
        for kind in ("kernel", "bias")
    ]
    assert all(r.sparsity == 1.0 for r in pruning.sparsity_report(model))


# --- polynomial schedule --------------------------------------------------------------------------


def test_polynomial_schedule_endpoints_monotone_and_arrays():
    steps = np.arange(-5, 120)
    s = pruning.polynomial_sparsity(steps, 0.9, begin_step=10, end_step=100, initial_sparsity=0.2)
    assert s.shape == steps.shape
    assert pruning.polynomial_sparsity(10, 0.9, 10, 100, initial_sparsity=0.2) == pytest.approx(0.2)
    assert pruning.polynomial_sparsity(100, 0.9, 10, 100, initial_sparsity=0.2) == pytest.approx(
        0.9
    )
    assert np.allclose(s[steps <= 10], 0.2) and np.allclose(s[steps >= 100], 0.9)
    assert (np.diff(s) >= 0).all()
    assert isinstance(pruning.polynomial_sparsity(50, 0.9, 10, 100), float)


def test_polynomial_schedule_matches_tfmot():
    import tensorflow_model_optimization as tfmot

    schedule = tfmot.sparsity.keras.PolynomialDecay(0.1, 0.8, 20, 220, power=3, frequency=10)
    for step in [0, 20, 57, 120, 219, 220, 400]:
        ours = pruning.polynomial_sparsity(step, 0.8, 20, 220, initial_sparsity=0.1)
        assert float(schedule(tf.constant(step, tf.int64))[1]) == pytest.approx(ours, abs=1e-6)


# --- tfmot ----------------------------------------------------------------------------------------


def _compiled(model, run_eagerly=False):
    model.compile(tf.keras.optimizers.Adam(0.01), _fit_loss(), run_eagerly=run_eagerly)
    return model


def test_tfmot_reaches_target_keeps_the_mask_and_strips(digits, update_step):
    x, y = digits
    model = _model()
    original = [w.copy() for w in model.get_weights()]
    steps = -(-len(x) // 32)  # one epoch; the last mask update (end_step) falls inside it
    end_step = steps // 10 * 10
    pruned = _compiled(pruning.prune_with_tfmot(model, 0.75, end_step=end_step, frequency=10))
    pruned.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[update_step()])
    masks = pruning.tfmot_masks(pruned)
    pruned.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[update_step()])
    kernels = [v for v in pruning.pruning_variables(pruned) if v.kind == "kernel"]
    values = [pruned.weights[v.index].numpy() for v in kernels]
    assert [pruning.sparsity([k]) for k in values] == pytest.approx([0.75] * 3, abs=0.01)
    assert all((m == (k != 0)).all() for m, k in zip(masks, values, strict=True))
    assert all((a == b).all() for a, b in zip(masks, pruning.tfmot_masks(pruned), strict=True))
    assert all((a == b).all() for a, b in zip(original, model.get_weights(), strict=True))
    kernel = pruned.weights[kernels[0].index]
    kernel.assign_add(tf.fill(kernel.shape, 0.01))  # as a custom loop's last optimizer step would
    stripped = pruning.strip(pruned)
    assert (stripped.layers[1].kernel.numpy() != 0).sum() == masks[0].sum()  # masks re-applied
    assert not any(hasattr(layer, "pruning_step") for layer in stripped.layers)
    assert len(stripped.get_weights()) == 6 < len(pruned.get_weights())
    np.testing.assert_array_equal(stripped(x[:300]).numpy(), pruned(x[:300]).numpy())
    assert stripped.count_params() == model.count_params()  # zeros are still parameters


def test_pruning_variables_separate_bookkeeping_from_weights():
    model = _model(hidden=8)
    pruned = pruning.prune_with_tfmot(model, 0.5, end_step=10)
    infos = pruning.pruning_variables(pruned)
    assert len(infos) == len(pruned.get_weights())
    kinds = [v.kind for v in infos]
    assert kinds.count("mask") == kinds.count("threshold") == 3
    assert kinds.count("pruning_step") == 4  # one per wrapped layer, Flatten included
    weights = [v for v in infos if not v.is_bookkeeping]
    assert [v.shape for v in weights] == [w.shape for w in model.get_weights()]
    assert [v.kind for v in weights] == ["kernel", "bias"] * 3
    assert [r.name for r in pruning.sparsity_report(pruned)] == [v.name for v in weights]


def test_zeros_regrow_when_fit_runs_without_a_mask(digits):
    """The articles' mistake 6: zero the weights, call fit() with no mask."""
    x, y = digits
    model = _compiled(_model())
    masks = pruning.magnitude_masks(model.get_weights(), 0.8)
    model.set_weights(pruning.apply_masks(model.get_weights(), masks))
    assert pruning.sparsity([w for w in model.get_weights() if w.ndim == 2]) == pytest.approx(
        0.8, abs=1e-3
    )
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    # Only weights fed by always-blank pixels stay zero (their gradient is 0).
    assert pruning.sparsity([w for w in model.get_weights() if w.ndim == 2]) < 0.25


def test_tfmot_fit_without_the_callback_fails(digits):
    x, y = digits
    pruned = _compiled(pruning.prune_with_tfmot(_model(hidden=8), 0.5, end_step=10), True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="UpdatePruningStep"):
        pruned.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)


# --- structured pruning ---------------------------------------------------------------------------


def test_unit_norms_dense_and_conv():
    np.testing.assert_allclose(pruning.unit_norms(np.array([[3.0, 1.0], [-4.0, 1.0]]), 1), [7, 2])
    conv = np.zeros((3, 3, 2, 4))
    conv[..., 2] = 1.0
    np.testing.assert_allclose(pruning.unit_norms(conv), [0, 0, np.sqrt(18), 0])


def _masked_original(model, keep):
    """The original model with pruned units' incoming and outgoing weights zeroed."""
    masked = tf.keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    weighted = [layer for layer in masked.layers if layer.weights]
    for layer, following in zip(weighted, weighted[1:], strict=False):
        drop = np.setdiff1d(np.arange(layer.weights[0].shape[-1]), keep[layer.name])
        kernel, bias = layer.get_weights()
        kernel[..., drop], bias[drop] = 0.0, 0.0
        layer.set_weights([kernel, bias])
        nxt, nxt_bias = following.get_weights()
        channels = layer.weights[0].shape[-1]
        if nxt.ndim == 2 and nxt.shape[0] != channels:  # Dense after Flatten: (H, W, C) rows
            rows = nxt.reshape(-1, channels, nxt.shape[-1])
            rows[:, drop, :] = 0.0
        else:
            np.moveaxis(nxt, -2, 0)[drop] = 0.0
        following.set_weights([nxt, nxt_bias])
    return masked


def _conv_model():
    tf.keras.utils.set_random_seed(4)
    layers = tf.keras.layers
    return tf.keras.Sequential(
        [
            tf.keras.Input((8, 8, 1)),
            layers.Conv2D(6, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(8, 3, activation="tanh", bias_initializer="glorot_uniform"),
            layers.AveragePooling2D(1),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(16, activation="sigmoid", bias_initializer="glorot_uniform"),
            layers.Dense(10),
        ]
    )


@pytest.mark.parametrize("build", [lambda: _model(hidden=40), _conv_model], ids=["mlp", "conv"])
@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.9])
def test_prune_units_equals_the_masked_original(build, fraction, digits):
    model = build()
    keep = pruning.kept_units(model, fraction)
    smaller = pruning.prune_units(model, fraction)
    assert smaller.count_params() < model.count_params()
    assert smaller is not model and smaller.optimizer is None
    assert [len(k) for k in keep.values()] == [
        max(1, round((1 - fraction) * layer.weights[0].shape[-1]))
        for layer in model.layers
        if layer.name in keep
    ]
    x = digits[0][:200]
    expected = _masked_original(model, keep)(x, training=False).numpy()
    np.testing.assert_allclose(smaller(x, training=False).numpy(), expected, atol=1e-5)


def test_prune_units_keeps_largest_norms_and_shrinks_count_params():
    model = _model(hidden=32)
    masked = pruning.apply_masks(
        model.get_weights(), pruning.magnitude_masks(model.get_weights(), 0.5)
    )
    model.set_weights(masked)
    assert model.count_params() == 64 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10  # unchanged
    norms = pruning.unit_norms(model.layers[1].get_weights()[0])
    keep = pruning.kept_units(model, 0.5)["hidden_1"]
    assert norms[keep].min() >= np.delete(norms, keep).max()
    smaller = pruning.prune_units(model, 0.5)
    assert smaller.count_params() == 64 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    assert [layer.name for layer in smaller.layers] == [layer.name for layer in model.layers]


# --- issue 9: every schedule fires within the steps it is given, or is refused ------------------


@pytest.mark.parametrize("frequency", [1, 10, 100])
def test_constant_schedule_reaches_its_target_in_six_steps(digits, update_step, frequency):
    x, y = digits
    pruned = _compiled(pruning.prune_with_tfmot(_model(), 0.5, schedule="constant",
                                                frequency=frequency))
    pruned.fit(x[:120], y[:120], batch_size=64, epochs=3, verbose=0,
               callbacks=[update_step()])  # 2 steps per epoch: 6 steps
    kernels = [w for w in pruning.strip(pruned).get_weights() if w.ndim == 2]
    assert [pruning.sparsity([k]) for k in kernels] == pytest.approx([0.5] * 3, abs=0.01)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(schedule="constant", begin_step=7, train_steps=6),
         "begin_step must be <= train_steps"),
        (dict(end_step=20, train_steps=6), "end_step must be <= train_steps"),
        (dict(end_step=20, train_steps=0), "train_steps must be an integer >= 1"),
    ],
)
def test_a_schedule_that_cannot_fire_within_train_steps_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pruning.prune_with_tfmot(_model(), 0.5, **kwargs)


@pytest.mark.parametrize("batch_size", [1000, 40, 9], ids=["1 step", "2 steps", "8 steps"])
def test_client_pruning_reaches_its_target_whatever_the_local_steps(batch_size):
    import prunefl_lite as pfl

    ds = load_dataset("digits")
    clients = [(ds.x_train[:70], ds.y_train[:70])]  # one client: the aggregate is its model
    config = pfl.FedConfig(num_rounds=2, clients_per_round=1, batch_size=batch_size, seed=0)
    strategy = pruning.ClientPruning(0.5, end_round=2)
    pfl.run_fedavg(lambda: mlp_2nn((8, 8, 1), 10, hidden_units=32), clients,
                   (ds.x_test, ds.y_test), config, pruning=strategy)
    # tfmot prunes each kernel (output layer too) to the scheduled sparsity during training
    assert strategy.aggregate_sparsity[-1] == pytest.approx(0.5, abs=0.01)
