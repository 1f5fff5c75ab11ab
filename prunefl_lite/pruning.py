"""Pruning: from-scratch NumPy magnitude masks, tfmot wrappers, schedules, structured pruning."""

import dataclasses
import numbers

import numpy as np
import tensorflow as tf  # the package __init__ has already selected Keras 2 (tf_keras)

from prunefl_lite.fedavg import kernel_sparsity
from prunefl_lite.strategy import NoPruning
from prunefl_lite.server import keepers_average, weighted_average

# --- Validation helpers -------------------------------------------------------------------------


def _check_fraction(value, name):
    """Raise unless `value` is a real number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float in [0, 1), got {value!r}")
    if not 0 <= value < 1:  # also refuses NaN
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def _check_int(value, name, minimum):
    """Raise unless `value` is an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def _check_choice(value, name, choices):
    """Raise unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _check_weights(weights, name="weights", finite=True):
    """Return `weights` as a list after checking it is a non-empty list of numeric arrays."""
    if not isinstance(weights, (list, tuple)) or not weights:
        raise (ValueError if isinstance(weights, (list, tuple)) else TypeError)(
            f"{name} must be a non-empty list of NumPy arrays, got {weights!r:.60}"
        )
    for i, w in enumerate(weights):
        if not isinstance(w, np.ndarray) or w.dtype.kind not in "biuf":
            kind = w.dtype if isinstance(w, np.ndarray) else type(w).__name__
            raise TypeError(f"{name}[{i}] must be a numeric NumPy array, got {kind}")
        if finite and not np.isfinite(w).all():
            bad = int(w.size - np.isfinite(w).sum())
            raise ValueError(f"{name}[{i}] must be finite, got {bad} NaN/inf values")
    return list(weights)


def _check_prunable(prunable, weights):
    """Return one bool per array: `prunable` checked, or kernels (ndim >= 2) by default."""
    if prunable is None:
        return [w.ndim >= 2 for w in weights]
    if not isinstance(prunable, (list, tuple)) or len(prunable) != len(weights):
        got = len(prunable) if isinstance(prunable, (list, tuple)) else repr(prunable)
        raise ValueError(
            f"prunable must have one entry per array of weights ({len(weights)}), got {got}"
        )
    for i, p in enumerate(prunable):
        if not isinstance(p, (bool, np.bool_)):
            raise TypeError(f"prunable[{i}] must be a bool, got {p!r}")
    return [bool(p) for p in prunable]


# --- Unstructured magnitude pruning from scratch (NumPy) ------------------------------------------


def _prune_smallest(arrays, fraction):
    """Masks (True = keep) pruning the round(fraction * n) smallest |w| of `arrays` ranked together.

    A stable sort ranks the magnitudes, so among equal magnitudes the lower flat index (arrays in
    order, each in C order) is pruned first: ties are deterministic.
    """
    flat = np.concatenate([np.abs(a).ravel() for a in arrays]) if arrays else np.zeros(0)
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argsort(flat, kind="stable")[: round(fraction * flat.size)]] = False
    pieces = np.split(keep, np.cumsum([a.size for a in arrays])[:-1])
    return [piece.reshape(a.shape) for piece, a in zip(pieces, arrays, strict=True)]


def magnitude_masks(weights, sparsity, scope="global", prunable=None):
    """Magnitude-pruning masks (True = keep) that prune exactly round(sparsity * n) weights.

    Weights are ranked by ABSOLUTE value, so -5 outranks 0.1 (the articles' rule
    ``weights * (weights > threshold)`` deletes every negative weight). Ties are broken by a
    stable sort: among equal magnitudes the lower flat index is pruned first. Already-zero weights
    have the smallest magnitude, so they go first and masks are nested as sparsity grows.

    Args:
        weights: List of NumPy arrays, e.g. ``model.get_weights()``.
        sparsity: Fraction of the prunable weights to prune, in [0, 1).
        scope: "global" ranks all prunable weights together (n = their total count);
            "layer" prunes round(sparsity * size) weights of each prunable array separately.
        prunable: One bool per array saying which may be pruned; default: arrays with
            ndim >= 2 (kernels), so biases are left alone. Other arrays get all-True masks.

    Returns:
        A list of boolean arrays shaped like `weights`.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If `sparsity`, `scope`, `prunable` or the weights' values are invalid.

    Example:
        >>> kernel, bias = np.array([[-5.0, 0.1], [0.3, -0.2]]), np.array([0.0, 1.0])
        >>> magnitude_masks([kernel, bias], 0.5)
        [array([[ True, False], [ True, False]]), array([ True,  True])]
    """
    weights = _check_weights(weights)
    _check_fraction(sparsity, "sparsity")
    _check_choice(scope, "scope", ("global", "layer"))
    prunable = _check_prunable(prunable, weights)
    if scope == "layer":
        return [
            _prune_smallest([w], sparsity)[0] if p else np.ones(w.shape, dtype=bool)
            for w, p in zip(weights, prunable, strict=True)
        ]
    pruned = iter(
        _prune_smallest([w for w, p in zip(weights, prunable, strict=True) if p], sparsity)
    )
    return [
        next(pruned) if p else np.ones(w.shape, dtype=bool)
        for w, p in zip(weights, prunable, strict=True)
    ]


def apply_masks(weights, masks):
    """Zero the weights whose mask entry is False (or 0); return new arrays of the same dtypes.

    Args:
        weights: List of NumPy arrays.
        masks: One array per weight array with the same shape; nonzero/True means keep.

    Returns:
        A list of new arrays; pruned entries are +0.0.

    Example:
        >>> apply_masks([np.array([-5.0, 0.1])], [np.array([True, False])])
        [array([-5.,  0.])]
    """
    weights = _check_weights(weights, finite=False)
    masks = _check_masks(masks, weights)
    return [np.where(m, w, np.zeros_like(w)) for w, m in zip(weights, masks, strict=True)]


def _check_masks(masks, weights):
    """Return `masks` as bool arrays after checking there is one per array, with its shape."""
    if not isinstance(masks, (list, tuple)) or len(masks) != len(weights):
        got = len(masks) if isinstance(masks, (list, tuple)) else repr(masks)
        raise ValueError(
            f"masks must have one entry per array of weights ({len(weights)}), got {got}"
        )
    masks = [np.asarray(m) != 0 for m in masks]
    for i, (w, m) in enumerate(zip(weights, masks, strict=True)):
        if m.shape != w.shape:
            raise ValueError(
                f"masks[{i}] must have shape {w.shape} like weights[{i}], got {m.shape}"
            )
    return masks


def sparsity(weights):
    """Fraction of exact zeros over all entries of a list of arrays.

    Example:
        >>> sparsity([np.array([0.0, 1.0]), np.array([[0.0, 0.0], [2.0, 3.0]])])
        0.5
    """
    weights = _check_weights(weights, finite=False)
    total = sum(w.size for w in weights)
    if total == 0:
        raise ValueError("weights must hold at least one entry, got only empty arrays")
    return float(sum(w.size - np.count_nonzero(w) for w in weights) / total)


# --- Reports -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ReportRow:
    """Sparsity of one weight array (a row of `sparsity_report`)."""

    name: str
    shape: tuple
    nonzeros: int
    total: int
    sparsity: float


class SparsityReport(list):
    """A list of `ReportRow` that prints as a table (``pandas.DataFrame(report)`` also works)."""

    def __str__(self):
        return format_report(self)


def _row(name, array):
    """The `ReportRow` of one array."""
    nonzeros = int(np.count_nonzero(array))
    return ReportRow(
        name,
        tuple(array.shape),
        nonzeros,
        int(array.size),
        1 - nonzeros / array.size if array.size else 0.0,
    )


def sparsity_report(model_or_weights):
    """Per-array sparsity of a model (kernels and biases by name) or of a list of arrays.

    For a model wrapped by tfmot, its bookkeeping variables (mask, threshold, pruning_step) are
    left out: only the model's own weights are reported.

    Args:
        model_or_weights: A `tf.keras.Model` or a list of NumPy arrays.

    Returns:
        A `SparsityReport`: a list of `ReportRow(name, shape, nonzeros, total, sparsity)`;
        ``print`` it for a table.

    Example:
        >>> report = sparsity_report([np.array([[0.0, 1.0], [0.0, 2.0]]), np.ones(2)])
        >>> report[0]
        ReportRow(name='weights[0]', shape=(2, 2), nonzeros=2, total=4, sparsity=0.5)
        >>> print(report)
        name         shape   nonzeros  total  sparsity
        weights[0]   (2, 2)         2      4     0.500
        weights[1]   (2,)           2      2     0.000
        total                       4      6     0.333
    """
    if isinstance(model_or_weights, tf.keras.Model):
        model = model_or_weights
        return SparsityReport(
            _row(v.name, model.weights[v.index].numpy())
            for v in pruning_variables(model)
            if not v.is_bookkeeping
        )
    weights = _check_weights(model_or_weights, "model_or_weights", finite=False)
    return SparsityReport(_row(f"weights[{i}]", w) for i, w in enumerate(weights))


def format_report(rows):
    """Format `sparsity_report` rows as a fixed-width table with a total line.

    Example:
        >>> print(format_report([ReportRow("dense/kernel", (4, 2), 2, 8, 0.75)]))
        name           shape   nonzeros  total  sparsity
        dense/kernel   (4, 2)         2      8     0.750
        total                         2      8     0.750
    """
    nonzeros, total = sum(r.nonzeros for r in rows), sum(r.total for r in rows)
    lines = [(r.name, str(r.shape), r.nonzeros, r.total, r.sparsity) for r in rows]
    lines.append(("total", "", nonzeros, total, 1 - nonzeros / total if total else 0.0))
    width = max(len(line[0]) for line in lines) + 2
    shape_width = max(len(line[1]) for line in lines) + 2
    out = [f"{'name':<{width}} {'shape':<{shape_width}}nonzeros  total  sparsity"]
    row = "{:<%d} {:<%d}{:>8} {:>6} {:>9.3f}" % (width, shape_width)
    out += [row.format(*line) for line in lines]
    return "\n".join(out)


# --- Schedules -----------------------------------------------------------------------------------


def _check_schedule_steps(begin_step, end_step):
    """Raise unless 0 <= begin_step < end_step are integers."""
    _check_int(begin_step, "begin_step", 0)
    _check_int(end_step, "end_step", begin_step + 1)


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
    _check_fraction(target_sparsity, "target_sparsity")
    _check_fraction(initial_sparsity, "initial_sparsity")
    if initial_sparsity > target_sparsity:
        raise ValueError(
            f"initial_sparsity must be <= target_sparsity ({target_sparsity!r}), "
            f"got {initial_sparsity!r}"
        )
    _check_schedule_steps(begin_step, end_step)
    if isinstance(power, bool) or not isinstance(power, numbers.Real) or not power > 0:
        raise ValueError(f"power must be a number > 0, got {power!r}")
    progress = np.clip((np.asarray(step, dtype=float) - begin_step) / (end_step - begin_step), 0, 1)
    s = target_sparsity + (initial_sparsity - target_sparsity) * (1 - progress) ** power
    return float(s) if s.ndim == 0 else s


# --- tfmot: pruning a single Keras model (outside FL) ---------------------------------------------


def _tfmot():
    """Import tensorflow-model-optimization on first use (it takes about 3 s)."""
    import tensorflow_model_optimization as tfmot

    return tfmot


def _tfmot_schedule(target_sparsity, begin_step, end_step, frequency, initial_sparsity, schedule):
    """Build tfmot's `PolynomialDecay` or `ConstantSparsity` after checking the arguments."""
    _check_choice(schedule, "schedule", ("polynomial", "constant"))
    _check_fraction(target_sparsity, "target_sparsity")
    _check_int(frequency, "frequency", 1)
    keras_sparsity = _tfmot().sparsity.keras
    if schedule == "constant":
        if initial_sparsity != 0:
            raise ValueError(
                f"initial_sparsity must be 0 with schedule='constant' (only "
                f"'polynomial' uses it), got {initial_sparsity!r}"
            )
        _check_int(begin_step, "begin_step", 0)
        end_step = -1 if end_step is None else end_step
        if end_step != -1:
            _check_int(end_step, "end_step", begin_step)
        return keras_sparsity.ConstantSparsity(target_sparsity, begin_step, end_step, frequency)
    if end_step is None:
        raise ValueError("end_step is required with schedule='polynomial', got None")
    polynomial_sparsity(begin_step, target_sparsity, begin_step, end_step, initial_sparsity)
    if (end_step - begin_step) % frequency:
        raise ValueError(
            f"end_step - begin_step must be a multiple of frequency ({frequency}), "
            f"got {end_step - begin_step}: tfmot updates masks only at begin_step + "
            f"k * frequency, so the target sparsity would never be applied"
        )
    return keras_sparsity.PolynomialDecay(
        initial_sparsity, target_sparsity, begin_step, end_step, frequency=frequency
    )


def prune_with_tfmot(
    model,
    target_sparsity,
    begin_step=0,
    end_step=None,
    frequency=10,
    initial_sparsity=0.0,
    schedule="polynomial",
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
        begin_step: Step at which pruning starts.
        end_step: Step at which the target is reached; required for "polynomial", and
            end_step - begin_step must be a multiple of `frequency`. For "constant", None means
            prune until training ends.
        frequency: Masks are recomputed every `frequency` steps between begin and end.
        initial_sparsity: Sparsity at `begin_step` ("polynomial" only).
        schedule: "polynomial" (Zhu & Gupta; tfmot's `PolynomialDecay`) or "constant"
            (`ConstantSparsity`: the target at once, from `begin_step`).

    Returns:
        A new model whose layers are `PruneLowMagnitude` wrappers; compile and fit it.

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
        >>> pruned = prune_with_tfmot(model, 0.5, end_step=20)
        >>> [layer.name for layer in pruned.layers]
        ['prune_low_magnitude_dense...']
    """
    schedule = _tfmot_schedule(
        target_sparsity, begin_step, end_step, frequency, initial_sparsity, schedule
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


# --- Structured pruning: remove whole units / filters ---------------------------------------------

_WEIGHTED = (tf.keras.layers.Dense, tf.keras.layers.Conv2D)
_PASSTHROUGH = (
    tf.keras.layers.InputLayer,
    tf.keras.layers.Flatten,
    tf.keras.layers.Dropout,
    tf.keras.layers.MaxPooling2D,
    tf.keras.layers.AveragePooling2D,
)


def unit_norms(kernel, ord=2):
    """Norm of each output unit: a column of a Dense kernel, a filter of a Conv2D kernel.

    Args:
        kernel: Dense kernel (inputs, units) or Conv2D kernel (height, width, in, filters).
        ord: 1, 2 or ``np.inf``: the vector norm over each unit's incoming weights.

    Returns:
        A float array with one norm per output unit.

    Example:
        >>> unit_norms(np.array([[3.0, 0.0], [4.0, -1.0]]))
        array([5., 1.])
    """
    kernel = np.asarray(kernel)
    if kernel.ndim not in (2, 4):
        raise ValueError(
            f"kernel must be a Dense (2-D) or Conv2D (4-D) kernel, got shape {kernel.shape}"
        )
    _check_choice(ord, "ord", (1, 2, np.inf))
    return np.linalg.norm(kernel.reshape(-1, kernel.shape[-1]), ord=ord, axis=0)


def _check_structured(model):
    """Return the layers of a built Sequential model made only of supported layers."""
    if not isinstance(model, tf.keras.Sequential):
        raise TypeError(f"model must be a tf.keras.Sequential, got {type(model).__name__}")
    if not model.built:
        raise ValueError("model must be built (give it an Input or an input_shape), got unbuilt")
    for layer in model.layers:
        if not isinstance(layer, _WEIGHTED + _PASSTHROUGH):
            names = ", ".join(cls.__name__ for cls in _WEIGHTED + _PASSTHROUGH)
            raise ValueError(
                f"prune_units supports only {names}; got layer {layer.name!r} of "
                f"type {type(layer).__name__}"
            )
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise ValueError(
                f"layer {layer.name!r} must use data_format='channels_last', "
                f"got {layer.data_format!r}"
            )
        if getattr(layer, "groups", 1) != 1:
            raise ValueError(f"layer {layer.name!r} must have groups=1, got {layer.groups}")
    return model.layers


def kept_units(model, fraction, ord=2):
    """Indices of the units `prune_units` keeps in each hidden Dense/Conv2D layer (by norm).

    Each hidden layer keeps its round((1 - fraction) * units) units (at least 1) of largest norm;
    a stable sort breaks ties (the lower index goes first). The output layer is not pruned.

    Returns:
        A dict from layer name to the sorted indices of the kept units.

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(2),
        ...                              tf.keras.layers.Dense(1)])
        >>> model.layers[0].set_weights([np.array([[3.0, 0.0], [4.0, -1.0]]), np.zeros(2)])
        >>> kept_units(model, 0.5)
        {'dense...': array([0])}
    """
    _check_fraction(fraction, "fraction")
    weighted = [layer for layer in _check_structured(model) if isinstance(layer, _WEIGHTED)]
    kept = {}
    for layer in weighted[:-1]:
        norms = unit_norms(layer.get_weights()[0], ord=ord)
        keep = max(1, round((1 - fraction) * norms.size))
        kept[layer.name] = np.sort(np.argsort(norms, kind="stable")[norms.size - keep :])
    return kept


def _flattened(channels, input_shape):
    """Indices of a channels-last Flatten's outputs that carry `channels`: (h*W + w)*C + c."""
    positions = int(np.prod(input_shape[1:-1]))
    return (np.arange(positions)[:, None] * input_shape[-1] + channels[None, :]).ravel()


def _smaller_copy(layer, inputs, outputs):
    """A fresh layer like `layer` with only `outputs` units, and its sliced weights.

    `inputs`/`outputs` are index arrays, or None to keep all inputs/outputs.
    """
    config = {key: val for key, val in layer.get_config().items() if key != "batch_input_shape"}
    if not isinstance(layer, _WEIGHTED):
        return type(layer).from_config(config), None
    kernel, *bias = layer.get_weights()
    if inputs is not None:
        kernel = np.take(kernel, inputs, axis=-2)
    if outputs is not None:
        kernel, bias = kernel[..., outputs], [b[outputs] for b in bias]
        config["units" if "units" in config else "filters"] = len(outputs)
    return type(layer).from_config(config), [kernel, *bias]


def prune_units(model, fraction, ord=2):
    """Structured pruning: a NEW, smaller Sequential model without the lowest-norm hidden units.

    Every hidden Dense layer keeps its round((1 - fraction) * units) units of largest norm (whole
    filters for Conv2D); the matching input rows of the next Dense (for a Conv2D before a Flatten:
    the rows (h*W + w)*C + c of every kept channel c) or input channels of the next Conv2D are
    removed too. Unlike zeroing weights, this shrinks ``count_params()`` and the matrix products.
    The result computes the same function as `model` with the pruned units removed (their
    outgoing weights zeroed), is uncompiled, and keeps the layer names.

    Args:
        model: A built tf.keras Sequential of InputLayer, Flatten, Dense, Dropout, Conv2D,
            MaxPooling2D and AveragePooling2D layers (channels last).
        fraction: Fraction of each hidden layer's units to remove, in [0, 1).
        ord: Norm used to rank units: 1, 2 or ``np.inf``.

    Returns:
        A new `tf.keras.Sequential` with fewer parameters.

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(6),
        ...                              tf.keras.layers.Dense(3)])
        >>> model.count_params(), prune_units(model, 0.5).count_params()
        (75, 39)
    """
    keep = kept_units(model, fraction, ord=ord)
    layers, weights, carried = [], [], None
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        if isinstance(layer, tf.keras.layers.Flatten) and carried is not None:
            carried = _flattened(carried, layer.input_shape)
        new_layer, new_weights = _smaller_copy(layer, carried, keep.get(layer.name))
        if isinstance(layer, _WEIGHTED):
            carried = keep.get(layer.name)
        layers.append(new_layer)
        weights.append(new_weights)
    smaller = tf.keras.Sequential([tf.keras.Input(model.input_shape[1:]), *layers], name=model.name)
    for layer, w in zip(layers, weights, strict=True):
        if w is not None:
            layer.set_weights(w)
    return smaller


# --- Pruning strategies for run_fedavg: added by the engine ---


class _ScheduledPruning(NoPruning):
    """Shared parts of the federated pruning strategies: validation and the round schedule."""

    def __init__(self, target_sparsity, begin_round, end_round, end_fraction, power, scope):
        _check_fraction(target_sparsity, "target_sparsity")
        _check_int(begin_round, "begin_round", 1)
        if end_round is not None:
            _check_int(end_round, "end_round", begin_round)
        if not (isinstance(end_fraction, (int, float)) and 0 < end_fraction <= 1):
            raise ValueError(f"end_fraction must be in (0, 1], got {end_fraction!r}")
        _check_int(power, "power", 1)
        _check_choice(scope, "scope", ("global", "layer"))
        self.target_sparsity, self.begin_round, self.end_round = (
            target_sparsity, begin_round, end_round)
        self.end_fraction, self.power, self.scope = end_fraction, power, scope
        self.end = end_round

    def start(self, weights, config):
        """Fix the schedule's last round for this run; reset the per-run log."""
        default_end = max(self.begin_round, round(self.end_fraction * config.num_rounds))
        self.end = self.end_round or default_end
        self.aggregate_sparsity = []  # kernel sparsity of each round's aggregate, before re-pruning
        return weights

    def scheduled_sparsity(self, round_num):
        """Kernel sparsity the global model has after round `round_num` (Zhu & Gupta 2017)."""
        if round_num < self.begin_round:
            return 0.0
        return float(polynomial_sparsity(round_num, self.target_sparsity, self.begin_round - 1,
                                         self.end, power=self.power))

    def _reprune(self, round_num, weights):
        """Log the aggregate's sparsity, then prune it by magnitude to the scheduled sparsity."""
        self.aggregate_sparsity.append(kernel_sparsity(weights))
        masks = magnitude_masks(weights, self.scheduled_sparsity(round_num), scope=self.scope)
        return apply_masks(weights, masks), masks


class GlobalPruning(_ScheduledPruning):
    """Server-side gradual magnitude pruning with one global mask that clients train under.

    After aggregating round r the server prunes the global model by magnitude to the sparsity
    of a polynomial schedule over rounds (Zhu & Gupta 2017), from 0 after round
    `begin_round - 1` to `target_sparsity` at round `end_round`, then keeps it there, so the
    remaining rounds recover accuracy under a fixed mask. The mask goes out with the model;
    clients train under it (pruned weights stay exactly zero), and once they hold it both
    directions send only the kept values.

    The defaults (a linear ramp over the first 75 % of the rounds) were chosen by measurement:
    on digits with 20 Dirichlet(0.5) clients, 40 rounds and 90 % sparsity, Zhu & Gupta's cubic
    ramp over the first half of the rounds ended about 4 accuracy points below dense FedAvg,
    this one about 2 (tests/benchmarks/bench_fl_pruning.py prints the comparison).

    Args:
        target_sparsity: Final fraction of zeros in the kernels, in [0, 1).
        begin_round: First round after which the server prunes, >= 1.
        end_round: Round at which the target is reached; default `end_fraction` of the rounds.
        end_fraction: Used when `end_round` is None, in (0, 1].
        power: Exponent of the polynomial schedule (3 in Zhu & Gupta; 1 is a linear ramp).
        scope: "global" (one magnitude ranking over all kernels) or "layer".

    Example:
        >>> strategy = GlobalPruning(target_sparsity=0.9, end_round=4)
        >>> [round(strategy.scheduled_sparsity(r), 3) for r in range(1, 6)]
        [0.225, 0.45, 0.675, 0.9, 0.9]
        >>> cubic = GlobalPruning(target_sparsity=0.9, end_round=4, power=3)
        >>> [round(cubic.scheduled_sparsity(r), 3) for r in range(1, 6)]
        [0.52, 0.787, 0.886, 0.9, 0.9]
    """

    masked = True

    def __init__(self, target_sparsity, begin_round=1, end_round=None, end_fraction=0.75,
                 power=1, scope="global"):
        super().__init__(target_sparsity, begin_round, end_round, end_fraction, power, scope)
        self.masks = None

    def start(self, weights, config):
        """Start a run with no mask."""
        self.masks = None
        return super().start(weights, config)

    def round_masks(self, round_num, weights):
        """The server's current mask (None for biases; None before pruning begins)."""
        return self.masks

    def finish_round(self, round_num, weights):
        """Re-prune the new global model to the scheduled sparsity and keep its mask."""
        if round_num < self.begin_round:
            return weights
        weights, masks = self._reprune(round_num, weights)
        self.masks = [m if w.ndim >= 2 else None for m, w in zip(masks, weights)]
        return weights


class ClientPruning(_ScheduledPruning):
    """Clients prune locally with tfmot; the server aggregates (mean or keepers) and re-prunes.

    Every client starts from the global model's zeros and, halfway through its local steps,
    tfmot re-ranks its kernels by magnitude and prunes each layer to the scheduled sparsity;
    the rest of its training keeps that mask. Clients' masks differ (their data differ), so the
    server's `aggregation` rule matters: "mean" (naive FedAvg: a weight kept by one client is
    divided by everybody's count, and the union of masks makes the average denser) or "keepers"
    (each weight averaged over the clients that kept it). The server then re-prunes the
    aggregate per layer to the scheduled sparsity. `aggregate_sparsity` records how dense each
    round's aggregate was before that.

    The schedule counts rounds; tfmot counts steps. Each client's step counter is set so that
    tfmot's step `round * STEPS_PER_ROUND` falls halfway through its local steps, and tfmot's
    `frequency` is `STEPS_PER_ROUND`: one mask update per client per round.

    Args:
        target_sparsity: Final fraction of zeros in the kernels, in [0, 1).
        aggregation: "keepers" or "mean".
        begin_round, end_round, end_fraction, power: As in `GlobalPruning` (here the defaults
            are a cubic ramp over the first half of the rounds).

    Example:
        >>> ClientPruning(0.8, aggregation="median")
        Traceback (most recent call last):
        ...
        ValueError: aggregation must be one of 'keepers', 'mean', got 'median'
    """

    STEPS_PER_ROUND = 1_000_000  # more local steps than any client takes in a round

    def __init__(self, target_sparsity, aggregation="keepers", begin_round=1, end_round=None,
                 end_fraction=0.5, power=3):
        super().__init__(target_sparsity, begin_round, end_round, end_fraction, power, "layer")
        _check_choice(aggregation, "aggregation", ("keepers", "mean"))
        self.aggregation = aggregation

    def model_key(self):
        """The tfmot schedule is part of the compiled model."""
        return ("tfmot", self.target_sparsity, self.begin_round, self.end, self.power)

    def wrap_model(self, model):
        """Wrap every Dense/Conv layer with `prune_low_magnitude` on this run's schedule."""
        schedule = _tfmot().sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=self.target_sparsity,
            begin_step=(self.begin_round - 1) * self.STEPS_PER_ROUND,
            end_step=self.end * self.STEPS_PER_ROUND, power=self.power,
            frequency=self.STEPS_PER_ROUND)
        return _tfmot().sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)

    def pruning_steps(self, round_num, local_steps):
        """Start each counter so that tfmot's mask update falls halfway through local training."""
        halfway = np.maximum(np.asarray(local_steps, np.int64) // 2, 1)
        return round_num * self.STEPS_PER_ROUND - halfway

    def aggregate(self, updates, num_examples):
        """Average with the chosen rule."""
        rule = keepers_average if self.aggregation == "keepers" else weighted_average
        return rule(updates, num_examples)

    def finish_round(self, round_num, weights):
        """Re-prune the aggregate per layer to the scheduled sparsity."""
        return self._reprune(round_num, weights)[0]
