"""Small model builders: McMahan et al.'s 2NN and CNN, sized for the dataset's input shape."""

import tensorflow as tf


def mlp_2nn(input_shape, num_classes, hidden_units=200):
    """The "2NN" of McMahan et al. (2017): two hidden ReLU layers, logits out.

    Args:
        input_shape: Shape of one example, e.g. (8, 8, 1) or (30,); it is flattened.
        num_classes: Number of output logits.
        hidden_units: Width of each hidden layer (200 in the paper).

    Returns:
        An uncompiled `tf.keras.Sequential` whose output is logits (no softmax).

    Example:
        >>> model = mlp_2nn((8, 8, 1), 10)
        >>> model.count_params()  # 64*200+200 + 200*200+200 + 200*10+10
        55210
    """
    return tf.keras.Sequential(
        [
            tf.keras.layers.InputLayer(input_shape=tuple(input_shape)),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(hidden_units, activation="relu", name="hidden_1"),
            tf.keras.layers.Dense(hidden_units, activation="relu", name="hidden_2"),
            tf.keras.layers.Dense(num_classes, name="logits"),
        ],
        name="mlp_2nn",
    )


def cnn(input_shape, num_classes, filters=(32, 64), dense_units=512):
    """McMahan et al.'s CNN: two 5x5 conv + 2x2 max-pool blocks, a dense layer, logits out.

    "Same" padding keeps it valid on 8x8 digits; on 28x28 MNIST it is the paper's network.

    Args:
        input_shape: Image shape (height, width, channels).
        num_classes: Number of output logits.
        filters: Filters of the two convolutions (32, 64 in the paper).
        dense_units: Width of the dense layer (512 in the paper).

    Returns:
        An uncompiled `tf.keras.Sequential` whose output is logits.

    Example:
        >>> cnn((8, 8, 1), 10).count_params()
        188810
    """
    layers = [tf.keras.layers.InputLayer(input_shape=tuple(input_shape))]
    for i, f in enumerate(filters, start=1):
        layers += [
            tf.keras.layers.Conv2D(f, 5, padding="same", activation="relu", name=f"conv_{i}"),
            tf.keras.layers.MaxPooling2D(2, name=f"pool_{i}"),
        ]
    layers += [
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(dense_units, activation="relu", name="dense"),
        tf.keras.layers.Dense(num_classes, name="logits"),
    ]
    return tf.keras.Sequential(layers, name="cnn")


def outputs_probabilities(model):
    """Whether a model ends in a softmax (probabilities) rather than logits.

    The engine uses this to pick `from_logits` for the loss, so a learner's model with a
    softmax output is trained correctly instead of silently double-softmaxed.

    Example:
        >>> outputs_probabilities(mlp_2nn((4,), 3))
        False
    """
    last = model.layers[-1]
    if isinstance(last, tf.keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    return activation is tf.keras.activations.softmax
