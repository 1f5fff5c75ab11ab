"""Structured pruning: remove whole hidden units (Dense) or filters (Conv2D) to shrink a model."""

import numpy as np
import tensorflow as tf  # the package __init__ has already selected Keras 2 (tf_keras)

from prunefl_lite.validate import check_choice, check_fraction

__all__ = ["kept_units", "prune_units", "slice_units", "unit_norms"]

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
    check_choice("ord", ord, (1, 2, np.inf))
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
    Ranking units by weight norm is the filter-pruning rule of Li et al. (ICLR 2017).

    Args:
        model: A built tf.keras Sequential of the layers `prune_units` supports.
        fraction: Fraction of each hidden layer's units to remove, in [0, 1).
        ord: Norm used to rank units: 1, 2 or ``np.inf``.

    Returns:
        A dict from layer name to the sorted int64 indices of the kept units.

    Raises:
        TypeError: If `model` is not a Sequential, or `fraction` not a number.
        ValueError: If `fraction` or `ord` is out of range, the model is unbuilt, or it holds
            a layer other than InputLayer, Flatten, Dense, Dropout, Conv2D, MaxPooling2D,
            AveragePooling2D (the message names it).

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(2),
        ...                              tf.keras.layers.Dense(1)])
        >>> model.layers[0].set_weights([np.array([[3.0, 0.0], [4.0, -1.0]]), np.zeros(2)])
        >>> kept_units(model, 0.5)
        {'dense...': array([0])}
    """
    check_fraction("fraction", fraction)
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

    Raises:
        TypeError, ValueError: As `kept_units`.

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(6),
        ...                              tf.keras.layers.Dense(3)])
        >>> model.count_params(), prune_units(model, 0.5).count_params()
        (75, 39)
    """
    return slice_units(model, kept_units(model, fraction, ord=ord))


def slice_units(model, keep):
    """A NEW, smaller Sequential with only the given units of each hidden layer.

    Args:
        model: A built Sequential as for `prune_units`.
        keep: Layer name -> the int indices of the units (filters) that layer keeps; layers
            not named keep all their units (the output layer, always).

    Returns:
        An uncompiled `tf.keras.Sequential` with the layer names of `model`; the next layer's
        matching input rows (or channels, through a Flatten) are kept with them.

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(6),
        ...                              tf.keras.layers.Dense(3)])
        >>> slice_units(model, {model.layers[0].name: np.array([0, 2])}).count_params()
        27
    """
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

