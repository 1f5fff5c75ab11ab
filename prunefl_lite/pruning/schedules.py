"""Sparsity schedules (Zhu & Gupta) and tensorflow-model-optimization: wrap, read masks, strip."""

import dataclasses

import numpy as np
import tensorflow as tf  # the package __init__ has already selected Keras 2 (tf_keras)

from prunefl_lite.validate import check_choice, check_fraction, check_int, check_number

__all__ = ["VariableInfo", "polynomial_sparsity", "prune_with_tfmot", "pruning_variables",
           "strip", "tfmot_masks"]


def _check_schedule_steps(begin_step, end_step):
    """Raise unless 0 <= begin_step < end_step are integers."""
    check_int("begin_step", begin_step, 0)
    check_int("end_step", end_step, begin_step + 1)


def polynomial_sparsity(step, target_sparsity, begin_step, end_step, initial_sparsity=0.0, power=3):
    """Zhu & Gupta (2017) schedule: sparsity rises fast at first, then levels off at the target.

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t_end - t0)) ** power for t0 <= t <= t_end,
    s_i before t0 and s_f after t_end. tfmot's `PolynomialDecay` uses the same formula.

    Args:
        step: Step (or round) t: a number or a NumPy array of them (e.g. for a plot).
        target_sparsity: Final sparsity s_f, in [0, 1).
        begin_step: First step t0 of pruning, an integer >= 0.
        end_step: Step t_end at which the target is reached, an integer > begin_step.
        initial_sparsity: Sparsity s_i at t0, in [0, 1) and <= target_sparsity.
        power: Exponent of the decay, > 0 (3 in the paper).

    Returns:
        A float for a scalar `step`, otherwise a float array shaped like `step`.

    Example:
        >>> polynomial_sparsity(5, 0.8, begin_step=0, end_step=10)
        0.7
        >>> polynomial_sparsity(np.array([-1, 0, 10, 20]), 0.8, 0, 10)
        array([0. , 0. , 0.8, 0.8])
    """
    check_fraction("target_sparsity", target_sparsity)
    check_fraction("initial_sparsity", initial_sparsity)
    if initial_sparsity > target_sparsity:
        raise ValueError(
            f"initial_sparsity must be <= target_sparsity ({target_sparsity!r}), "
            f"got {initial_sparsity!r}"
        )
    _check_schedule_steps(begin_step, end_step)
    check_number("power", power, 0, low_open=True)
    progress = np.clip((np.asarray(step, dtype=float) - begin_step) / (end_step - begin_step), 0, 1)
    s = target_sparsity + (initial_sparsity - target_sparsity) * (1 - progress) ** power
    return float(s) if s.ndim == 0 else s


def _tfmot():
    """Import tensorflow-model-optimization on first use (it takes about 3 s)."""
    import tensorflow_model_optimization as tfmot

    return tfmot


def _tfmot_schedule(target_sparsity, begin_step, end_step, frequency, initial_sparsity, schedule,
                    train_steps=None):
    """Build tfmot's `PolynomialDecay` or `ConstantSparsity` after checking the arguments.

    tfmot counts steps from 1 (its wrapper adds one to the counter before it may update the
    masks) and updates them only at steps t with t >= begin_step and
    (t - begin_step) % frequency == 0. A constant schedule asked to start at step 0 therefore
    starts at step 1 (else its first update would wait `frequency` steps, or never come).
    """
    check_choice("schedule", schedule, ("polynomial", "constant"))
    check_fraction("target_sparsity", target_sparsity)
    check_int("frequency", frequency, 1)
    if train_steps is not None:
        check_int("train_steps", train_steps, 1)
    keras_sparsity = _tfmot().sparsity.keras
    if schedule == "constant":
        if initial_sparsity != 0:
            raise ValueError(
                f"initial_sparsity must be 0 with schedule='constant' (only "
                f"'polynomial' uses it), got {initial_sparsity!r}"
            )
        check_int("begin_step", begin_step, 0)
        first = max(begin_step, 1)
        end_step = -1 if end_step is None else check_int("end_step", end_step, first)
        _check_fires(first, train_steps, "begin_step")
        return keras_sparsity.ConstantSparsity(target_sparsity, first, end_step, frequency)
    if end_step is None:
        raise ValueError("end_step is required with schedule='polynomial', got None")
    polynomial_sparsity(begin_step, target_sparsity, begin_step, end_step, initial_sparsity)
    if (end_step - begin_step) % frequency:
        raise ValueError(
            f"end_step - begin_step must be a multiple of frequency ({frequency}), "
            f"got {end_step - begin_step}: tfmot updates masks only at begin_step + "
            f"k * frequency, so the target sparsity would never be applied"
        )
    _check_fires(end_step, train_steps, "end_step")
    return keras_sparsity.PolynomialDecay(
        initial_sparsity, target_sparsity, begin_step, end_step, frequency=frequency
    )


def _check_fires(step, train_steps, name):
    """Raise if the mask update that matters (at `step`) falls after the last training step."""
    if train_steps is not None and step > train_steps:
        raise ValueError(
            f"{name} must be <= train_steps ({train_steps}) so that tfmot's mask update at step "
            f"{step} happens during training, got {step}"
        )


def prune_with_tfmot(
    model,
    target_sparsity,
    begin_step=0,
    end_step=None,
    frequency=10,
    initial_sparsity=0.0,
    schedule="polynomial",
    train_steps=None,
):
    """Wrap a copy of `model` with tfmot's `prune_low_magnitude` and a sparsity schedule.

    Train the result with ``callbacks=[tfmot.sparsity.keras.UpdatePruningStep()]`` in ``fit``:
    the callback advances each wrapper's step counter and re-applies the masks after every epoch;
    without it ``fit`` fails with "Prune() wrapper requires the UpdatePruningStep callback".
    Steps are optimizer steps (batches), counted from 1. tfmot's default ``frequency=100`` is
    larger than an epoch of a small dataset (digits: 1,437 examples / 32 = 45 steps), hence 10
    here. tfmot ranks magnitudes per layer (each layer reaches the target), keeps every weight
    tied with its threshold, and also prunes the output layer. `model` itself is not changed
    (tfmot alone would wrap, and so share, its layer objects).

    Args:
        model: A built `tf.keras` Sequential or functional model.
        target_sparsity: Final sparsity of every kernel, in [0, 1).
        begin_step: Step at which pruning starts, an integer >= 0. Steps are training
            batches counted from 1, as tfmot counts them; the masks are recomputed at steps
            begin_step + k * frequency (k = 0, 1, ...) that are >= 1 (so with "polynomial"
            and begin_step=0 the first update is at step `frequency`).
        end_step: Step at which the target is reached; required for "polynomial", and
            end_step - begin_step must be a multiple of `frequency`. For "constant", None means
            prune until training ends.
        frequency: Masks are recomputed every `frequency` steps between begin and end.
        initial_sparsity: Sparsity at `begin_step` ("polynomial" only).
        schedule: "polynomial" (Zhu & Gupta; tfmot's `PolynomialDecay`) or "constant"
            (`ConstantSparsity`: the target at once from `begin_step`, and from the first
            batch when begin_step=0, then re-applied every `frequency` steps).
        train_steps: Optional number of training steps you will run. Given, a schedule whose
            first update ("constant") or final update ("polynomial", at end_step) would come
            after the last step is refused instead of silently leaving the model dense.

    Returns:
        A new model whose layers are `PruneLowMagnitude` wrappers; compile and fit it.

    Raises:
        TypeError: If `model` is not a `tf.keras.Model` or an argument has the wrong type.
        ValueError: If an argument is out of range, the polynomial schedule's end_step is
            missing or not begin_step + a multiple of `frequency`, or (with `train_steps`) the
            schedule's decisive mask update would fall after the last training step.

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
        >>> pruned = prune_with_tfmot(model, 0.5, end_step=20)
        >>> [layer.name for layer in pruned.layers]
        ['prune_low_magnitude_dense...']
    """
    schedule = _tfmot_schedule(
        target_sparsity, begin_step, end_step, frequency, initial_sparsity, schedule, train_steps
    )
    if not isinstance(model, tf.keras.Model):
        raise TypeError(f"model must be a tf.keras.Model, got {type(model).__name__}")
    copy = tf.keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return _tfmot().sparsity.keras.prune_low_magnitude(copy, pruning_schedule=schedule)


def _flat_layers(model):
    """All layers of `model`, nested models expanded, in order."""
    for layer in model.layers:
        yield from (_flat_layers(layer) if isinstance(layer, tf.keras.Model) else [layer])


def _wrappers(model):
    """The tfmot `PruneLowMagnitude` wrappers in `model` (recognised by their step counter)."""
    return [layer for layer in _flat_layers(model) if hasattr(layer, "pruning_step")]


def tfmot_masks(pruned_model):
    """Read tfmot's masks back from the wrapper layers, in the order of the wrapped kernels.

    Args:
        pruned_model: A model wrapped by `prune_with_tfmot` (or tfmot's `prune_low_magnitude`).

    Returns:
        A list of boolean arrays (True = kept), one per wrapped kernel, shaped like it.

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
        >>> [m.shape for m in tfmot_masks(prune_with_tfmot(model, 0.5, end_step=20))]
        [(4, 2)]
    """
    return [
        mask.numpy() != 0 for layer in _wrappers(pruned_model) for _, mask, _ in layer.pruning_vars
    ]


def strip(pruned_model):
    """Remove tfmot's wrappers: a plain model with the pruned zeros kept (tfmot's `strip_pruning`).

    The masks are re-applied first (as the wrappers do on each forward pass), so the zeros are
    exact even after a custom training loop whose last optimizer step moved masked weights.
    They are written as +0.0 (tfmot masks by multiplying, which leaves -0.0 where a negative
    weight was pruned, and a bit-exact encoder sends -0.0 as a value).
    The stripped model shares its layers (and so its weights) with `pruned_model`.

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
        >>> stripped = strip(prune_with_tfmot(model, 0.5, end_step=20))
        >>> [type(layer).__name__ for layer in stripped.layers]
        ['Dense']
    """
    for layer in _wrappers(pruned_model):
        for weight, mask, _ in layer.pruning_vars:
            weight.assign(tf.where(mask > 0, weight, tf.zeros_like(weight)))
    return _tfmot().sparsity.keras.strip_pruning(pruned_model)


@dataclasses.dataclass(frozen=True)
class VariableInfo:
    """One variable of a model: its index in ``model.get_weights()``, name, shape and kind."""

    index: int
    name: str
    shape: tuple
    kind: str  # "kernel", "bias", "mask", "threshold", "pruning_step" or "other"

    @property
    def is_bookkeeping(self):
        """Whether this is tfmot state (mask, threshold, step counter) rather than a weight."""
        return self.kind in ("mask", "threshold", "pruning_step")


def pruning_variables(model):
    """Tell tfmot's bookkeeping variables apart from the model's kernels and biases.

    `prune_low_magnitude` adds a mask and a threshold per kernel and a `pruning_step` counter per
    wrapped layer (even for Flatten or Dropout); they appear in ``model.get_weights()`` between
    the real weights. FL code must average only kernels and biases: an averaged mask is no longer
    0/1 (tfmot multiplies weights by it, so it scales them), an averaged threshold means nothing,
    and averaged step counters break the schedule. Masks are handled explicitly instead.

    Returns:
        A list of `VariableInfo`, one per entry of ``model.get_weights()``, in that order.

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
        >>> [v.kind for v in pruning_variables(prune_with_tfmot(model, 0.5, end_step=20))]
        ['kernel', 'bias', 'mask', 'threshold', 'pruning_step']
    """
    kinds = {}
    for layer in _wrappers(model):
        kinds[id(layer.pruning_step)] = "pruning_step"
        for _, mask, threshold in layer.pruning_vars:
            kinds[id(mask)], kinds[id(threshold)] = "mask", "threshold"
    infos = []
    for i, v in enumerate(model.weights):
        name = v.name.split(":")[0]
        default = name.rsplit("/", 1)[-1] if name.endswith(("kernel", "bias")) else "other"
        infos.append(VariableInfo(i, name, tuple(v.shape), kinds.get(id(v), default)))
    return infos

