"""Width sub-models for devices that differ: HeteroFL, FjORD and Federated Dropout.

The package trains one architecture per run. A width sub-model is that model with the hidden
units beyond a client's width masked out: the kernel columns and biases of those units, and
the next layer's kernel rows that read them, are False in the client's masks
(`width_masks`). A client trains under its masks (`masked = True`, `client_masks`), so what
it uploads is zero outside its slice, and the server averages each weight over the clients
whose slice holds it (`slice_average`), keeping the global value where nobody's slice does.

* `HeteroFL` (Diao et al., ICLR 2021): fixed width classes, nested (a width-1/4 client trains
  the first quarter of every hidden layer's units).
* `FjORD` (Horvath et al., NeurIPS 2021): ordered dropout; each round a client trains one
  nested width up to its capacity, drawn from (seed, round, client).
* `FederatedDropout` (Caldas et al. 2018): a random subset of each hidden layer's units per
  client and round, drawn from (seed, round, client).

Which width a client has is a property of the device: both halves know the fleet description
(`capacities`, one width per client id, as a deployment's node configuration would give it),
so nothing about widths travels in the broadcast; the random draws come from (seed, round,
client), which both halves know too. `submodel` slices a model physically (a smaller
Sequential, through the structured-pruning code), for measuring what a device runs.

The runtime starts a client's local training from the global weights under the client's masks
and keeps the weights outside them at zero after every SGD step, so every step, the first
included, trains only the client's sub-model. A client's download is still counted as the
whole global model (the broadcast is one payload for all clients). Diao et al. also rescale a
sub-model's activations by 1 / width during training (their "scaler"); these simple versions
do not.
"""

import dataclasses
import functools
import math

import numpy as np
import tensorflow as tf  # the package __init__ has already selected Keras 2 (tf_keras)

from prunefl_lite.pruning.structured import _WEIGHTED, _check_structured, slice_units
from prunefl_lite.server import _check_updates
from prunefl_lite.strategy import NoPruning
from prunefl_lite.validate import check_int, check_number

__all__ = [
    "FederatedDropout", "FjORD", "HeteroFL", "WidthLayout", "slice_average", "submodel",
    "unit_masks", "width_layout", "width_masks",
]

_FJORD_SALT = 11  # separates a client's width draw from its other (seed, round, client) streams
_DROPOUT_SALT = 12


@dataclasses.dataclass(frozen=True)
class WidthLayout:
    """Where the units of a Sequential model sit in its federated weights (plain data).

    Attributes:
        shapes: The shape of every federated weight (the model's trainable variables).
        layers: One tuple per Dense/Conv2D layer, in order: (name, index of its kernel, index
            of its bias or None, number of units, spatial positions a Flatten put before it
            (1 if none)). The last one is the output layer, never sliced.
    """

    shapes: tuple
    layers: tuple

    @property
    def hidden_units(self):
        """Units of each hidden (sliceable) layer."""
        return tuple(layer[3] for layer in self.layers[:-1])


def width_layout(model):
    """The `WidthLayout` of a model the sub-models can slice, or of a list of its weights.

    From a model, every layer is checked and one the sub-models do not understand is refused
    by name. From the federated weights alone (what a strategy's hooks receive), the layout is
    read from the shapes: a chain of Dense/Conv2D kernels, each followed by its bias, each
    reading the units of the one before (a Dense after a Conv2D may read them through a
    Flatten: its rows a multiple of the filters).

    Args:
        model: A built tf.keras Sequential of InputLayer, Flatten, Dense, Dropout, Conv2D,
            MaxPooling2D and AveragePooling2D layers (channels last), all trainable; or its
            federated weights (a list of arrays).

    Returns:
        A `WidthLayout`.

    Raises:
        TypeError: If `model` is a Keras model but not a Sequential.
        ValueError: If it is unbuilt, or holds another layer (BatchNormalization needs
            statistics per width) or a frozen weighted layer, the message naming the layer;
            or, from weights, an array that is not a kernel or its bias, or a kernel that
            does not read the layer before it (the message names the weight's index).

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(8),
        ...                              tf.keras.layers.Dense(3)])
        >>> width_layout(model).hidden_units, width_layout(model).shapes
        ((8,), ((4, 8), (8,), (8, 3), (3,)))
        >>> width_layout(model.get_weights()).hidden_units
        (8,)
    """
    if not isinstance(model, tf.keras.Model):
        return _layout_from_shapes(tuple(tuple(int(d) for d in np.shape(w)) for w in model))
    try:
        layers = _check_structured(model)
    except ValueError as error:
        raise ValueError(f"width sub-models cannot slice this model: {error}") from None
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    entries, positions = [], 1
    for layer in layers:
        if isinstance(layer, tf.keras.layers.Flatten):
            shape = layer.input_shape
            positions = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
        elif isinstance(layer, _WEIGHTED):
            if not layer.trainable or id(layer.kernel) not in index:
                raise ValueError(f"layer {layer.name!r} must be trainable for width "
                                 f"sub-models, got trainable={layer.trainable}")
            bias = index[id(layer.bias)] if layer.use_bias else None
            entries.append((layer.name, index[id(layer.kernel)], bias,
                            int(layer.kernel.shape[-1]), positions))
            positions = 1
    if not entries:
        raise ValueError("model must hold at least one Dense or Conv2D layer, got none")
    shapes = tuple(tuple(int(d) for d in v.shape) for v in model.trainable_variables)
    return WidthLayout(shapes, tuple(entries))


@functools.lru_cache(maxsize=64)
def _layout_from_shapes(shapes):
    """A `WidthLayout` read from the shapes of a Dense/Conv2D chain's weights (cached)."""
    entries, i, before, conv_before = [], 0, None, False
    while i < len(shapes):
        shape = shapes[i]
        if len(shape) not in (2, 4):
            raise ValueError(f"weight {i} must be a Dense (2-D) or Conv2D (4-D) kernel or its "
                             f"bias, got shape {shape}: pass the model to name its layer")
        units, rows, positions = shape[-1], shape[-2], 1
        bias = i + 1 if i + 1 < len(shapes) and shapes[i + 1] == (units,) else None
        if before is not None and rows != before:
            if not (len(shape) == 2 and conv_before and rows % before == 0):
                raise ValueError(f"weight {i} (shape {shape}) must read the {before} units "
                                 f"of the layer before it, got {rows} rows")
            positions = rows // before
        entries.append((f"weight {i}", i, bias, units, positions))
        before, conv_before = units, len(shape) == 4
        i += 1 if bias is None else 2
    if not entries:
        raise ValueError("weights must hold at least one kernel, got none")
    return WidthLayout(tuple(shapes), tuple(entries))


def _layout(model_or_layout):
    """A `WidthLayout` from a layout, a built model, a model function, or a weight list."""
    if isinstance(model_or_layout, WidthLayout):
        return model_or_layout
    if callable(model_or_layout) and not isinstance(model_or_layout, tf.keras.Model):
        model_or_layout = model_or_layout()
    return width_layout(model_or_layout)


def _width_units(units, width):
    """How many units a layer of `units` keeps at `width`: ceil(width * units), at least 1."""
    return max(1, math.ceil(width * units - 1e-9))


def _check_width(name, width):
    return check_number(name, width, 0, 1, low_open=True)


def unit_masks(model_or_layout, kept):
    """Masks (True = keep) of the sub-model that keeps the given units of each hidden layer.

    A hidden unit that is not kept loses its kernel column (its filter), its bias, and its
    rows in the next layer's kernel (for a Flatten in between: every spatial position of
    that channel). The output layer keeps all its units.

    Args:
        model_or_layout: A `WidthLayout`, a built model, or a function returning one.
        kept: One boolean array per hidden layer (length: that layer's units).

    Returns:
        One boolean array per federated weight, of its shape.

    Raises:
        ValueError: If `kept` does not hold one boolean array of the right length per
            hidden layer.

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(3),
        ...                              tf.keras.layers.Dense(1)])
        >>> masks = unit_masks(model, [np.array([True, False, True])])
        >>> masks[0].astype(int).tolist(), masks[2].ravel().tolist()
        ([[1, 0, 1], [1, 0, 1]], [True, False, True])
    """
    layout = _layout(model_or_layout)
    units = layout.hidden_units
    if len(kept) != len(units):
        raise ValueError(f"kept must hold one array per hidden layer ({len(units)}), "
                         f"got {len(kept)}")
    masks, incoming = [None] * len(layout.shapes), None
    for i, (name, k, b, n, positions) in enumerate(layout.layers):
        out = np.asarray(kept[i], bool) if i < len(units) else np.ones(n, bool)
        if out.shape != (n,):
            raise ValueError(f"kept[{i}] (layer {name!r}) must have {n} entries, "
                             f"got shape {out.shape}")
        shape = layout.shapes[k]
        rows = np.ones(shape[-2], bool) if incoming is None else np.tile(incoming, positions)
        if rows.size != shape[-2]:
            raise ValueError(f"layer {name!r} reads {shape[-2]} inputs, but the layer "
                             f"before it gives {rows.size}: cannot slice this model")
        masks[k] = np.broadcast_to(rows[:, None] & out[None, :], shape).copy()
        if b is not None:
            masks[b] = out.copy()
        incoming = out
    return masks


def _nested_kept(layout, width):
    """The first ceil(width * units) units of each hidden layer."""
    return [np.arange(n) < _width_units(n, width) for n in layout.hidden_units]


def width_masks(model_or_layout, width):
    """Masks of the nested width sub-model: the first ceil(width * units) units of every layer.

    Args:
        model_or_layout: A `WidthLayout`, a built model, or a function returning one.
        width: Fraction of each hidden layer's units kept, in (0, 1].

    Returns:
        One boolean array per federated weight (True = in the sub-model).

    Raises:
        TypeError, ValueError: If `width` is not a number in (0, 1], or as `width_layout`.

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(4),
        ...                              tf.keras.layers.Dense(1)])
        >>> [int(m.sum()) for m in width_masks(model, 0.5)]  # kernel, bias, kernel, bias
        [4, 2, 2, 1]
    """
    width = _check_width("width", width)
    layout = _layout(model_or_layout)
    return unit_masks(layout, _nested_kept(layout, width))


def slice_average(weight_lists, num_examples, masks, fallback):
    """Slice-wise averaging (HeteroFL): each weight averaged over the clients whose slice holds it.

    Entry by entry, sum_k n_k [m_k] w_k / sum_k n_k [m_k], where m_k is client k's mask; an
    entry that no client's slice holds keeps its `fallback` (the global) value. Unlike
    `server.keepers_average` it decides membership by the masks, not by non-zero values (a
    weight a client trained to exactly zero still counts), and unlike FedAvg it does not pull
    the weights only the wide clients hold towards the zeros the narrow clients upload.

    Args:
        weight_lists: One list of arrays per client (its upload).
        num_examples: The clients' example counts n_k (>= 0, positive sum).
        masks: One list of boolean arrays (or None for "holds everything") per client.
        fallback: The global weights, for entries no client holds.

    Returns:
        A list of arrays with the dtypes of `fallback`.

    Raises:
        ValueError: On empty input, mismatched counts or shapes, non-finite values, or masks
            that do not match the weights.

    Example:
        >>> w = [[np.array([2.0, 4.0])], [np.array([6.0, 0.0])]]
        >>> m = [[np.array([True, True])], [np.array([True, False])]]
        >>> slice_average(w, [1, 1], m, [np.array([9.0, 9.0])])[0].tolist()
        [4.0, 4.0]
    """
    counts = _check_updates(weight_lists, num_examples)
    if len(masks) != len(weight_lists):
        raise ValueError(f"masks must hold one mask list per client ({len(weight_lists)}), "
                         f"got {len(masks)}")
    if len(fallback) != len(weight_lists[0]):
        raise ValueError(f"fallback must hold one array per weight ({len(weight_lists[0])}), "
                         f"got {len(fallback)}")
    averaged = []
    for i, base in enumerate(fallback):
        base = np.asarray(base)
        total = np.zeros(base.shape, np.float64)
        held = np.zeros(base.shape, np.float64)
        for k, (ws, n) in enumerate(zip(weight_lists, counts)):
            m = np.ones(base.shape, bool) if masks[k] is None or masks[k][i] is None \
                else np.asarray(masks[k][i], bool)
            if m.shape != base.shape or np.shape(ws[i]) != base.shape:
                raise ValueError(f"client {k} weight {i}: mask shape {m.shape} and weight "
                                 f"shape {np.shape(ws[i])} must equal {base.shape}")
            total += np.where(m, np.asarray(ws[i], np.float64), 0.0) * n
            held += m * n
        mean = np.where(held > 0, total / np.where(held > 0, held, 1.0), base)
        averaged.append(mean.astype(base.dtype))
    return averaged


def submodel(model, width=None, kept=None):
    """A NEW, smaller Sequential: `model` with only the kept hidden units (weights copied).

    What a device of that width actually runs: the same function as `model` under
    `width_masks(model, width)` (or `unit_masks(model, kept)`), with smaller matrices.

    Args:
        model: A built Sequential that `width_layout` accepts.
        width: Fraction of each hidden layer's units kept (the first ones), in (0, 1].
        kept: Instead of `width`: one boolean array per hidden layer.

    Returns:
        An uncompiled `tf.keras.Sequential` with the layer names of `model`.

    Raises:
        ValueError: If neither or both of `width` and `kept` are given, or as `unit_masks`.

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(6),
        ...                              tf.keras.layers.Dense(3)])
        >>> submodel(model, 0.5).count_params()  # 8*3+3 + 3*3+3
        39
    """
    if (width is None) == (kept is None):
        raise ValueError(f"give exactly one of width and kept, got width={width!r} and "
                         f"kept={'None' if kept is None else 'arrays'}")
    layout = width_layout(model)
    if kept is None:
        kept = _nested_kept(layout, _check_width("width", width))
    unit_masks(layout, kept)  # validates kept
    keep = {entry[0]: np.flatnonzero(k) for entry, k in zip(layout.layers, kept)}
    return slice_units(model, keep)


def _check_capacities(capacities):
    if isinstance(capacities, (str, bytes)) or not hasattr(capacities, "__len__") \
            or len(capacities) == 0:
        raise ValueError(f"capacities must be a non-empty sequence of widths in (0, 1], one "
                         f"per client id, got {capacities!r:.60}")
    return tuple(_check_width(f"capacities[{k}]", c) for k, c in enumerate(capacities))


class _SubModels(NoPruning):
    """Shared machinery: client masks from (round, client, seed), slice-wise averaging.

    With `model` the layout comes from the model (layers checked by name) and a run with
    another model is refused; without, it is read from the shapes of the weights each hook
    receives, so one strategy object serves any Dense/Conv2D chain.
    """

    masked = True

    def __init__(self, model=None):
        self.layout = None if model is None else _layout(model)
        self._seed, self._global, self._masks = 0, None, []

    def client_kept(self, layout, round_num, client_id, seed):
        """The units client `client_id` keeps in round `round_num` (one bool array per layer)."""
        raise NotImplementedError

    def layout_of(self, weights):
        """The layout of the run's weights: the model's (checked against them) or inferred."""
        shapes = tuple(tuple(int(d) for d in np.shape(w)) for w in weights)
        if self.layout is None:
            return _layout_from_shapes(shapes)
        if shapes != self.layout.shapes:
            raise ValueError(f"the run's model must be the one the strategy was built for: "
                             f"weight shapes {list(self.layout.shapes)}, got {list(shapes)}")
        return self.layout

    def masks_for(self, weights, round_num, client_id, seed):
        """The masks client `client_id` trains under in round `round_num` (both halves)."""
        layout = self.layout_of(weights)
        return unit_masks(layout, self.client_kept(layout, round_num, client_id, seed))

    # server half
    def start(self, weights, config):
        """Check the run's model against the layout and remember the run's seed."""
        self.layout_of(weights)
        self._seed = config.seed
        return weights

    def round_masks(self, round_num, weights):
        """No common masks (each client derives its own); keep the global weights."""
        self._global = [np.asarray(w) for w in weights]
        return None

    def receive(self, round_num, uploads):
        """Each accepted upload's slice, from the fleet description and (seed, round, client)."""
        self._masks = [self.masks_for(self._global, round_num, u.client_id, self._seed)
                       for u in uploads]

    def aggregate(self, updates, num_examples):
        """`slice_average` of the uploads over their slices; the global value elsewhere."""
        return slice_average(updates, num_examples, self._masks, self._global)

    # client half
    def client_masks(self, client):
        """The masks of this client's sub-model this round."""
        return self.masks_for(client.global_weights, client.round_num, client.client_id,
                              client.seed)


class HeteroFL(_SubModels):
    """HeteroFL (Diao et al., ICLR 2021): fixed, nested width classes, slice-wise averaging.

    Client k always trains the width sub-model `width_masks(weights, capacities[k])`; the
    server averages each weight over the clients whose slice holds it (`slice_average`).

    Args:
        capacities: One width in (0, 1] per client id (the fleet description).
        model: Optional: the run's model (a built Sequential, a `model_fn` or a
            `WidthLayout`), to refuse by name a layer the sub-models cannot slice; without
            it the layout is read from the weights' shapes.

    Raises:
        TypeError, ValueError: If a capacity is not a number in (0, 1] (the message names
            its index), or as `width_layout` for a model it cannot slice.

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(4),
        ...                              tf.keras.layers.Dense(1)])
        >>> int(HeteroFL([0.25, 1.0]).masks_for(model.get_weights(), 1, 0, seed=0)[0].sum())
        2
    """

    def __init__(self, capacities, model=None):
        self.capacities = _check_capacities(capacities)
        super().__init__(model)

    def width_of(self, client_id):
        """Client `client_id`'s width (its capacity)."""
        client_id = check_int("client_id", client_id, 0)
        if client_id >= len(self.capacities):
            raise ValueError(f"client_id must be < {len(self.capacities)} (capacities has one "
                             f"width per client), got {client_id}")
        return self.capacities[client_id]

    def client_kept(self, layout, round_num, client_id, seed):
        """The first ceil(capacity * units) units of every hidden layer."""
        return _nested_kept(layout, self.width_of(client_id))


class FjORD(HeteroFL):
    """FjORD's ordered dropout (Horvath et al., NeurIPS 2021), one width per client and round.

    Each round client k trains one nested width drawn uniformly from the `widths` that do not
    exceed its capacity, from (seed, round, client): both halves derive it, so nothing
    travels. (The paper samples a width per local batch; one per round is the simple
    version.) The server averages slice-wise, as `HeteroFL`.

    Args:
        capacities: One width in (0, 1] per client id (its largest width).
        widths: The nested widths to draw from, each in (0, 1].
        model: Optional, as for `HeteroFL`.

    Raises:
        TypeError, ValueError: As `HeteroFL`, or if a capacity is below the smallest width.

    Example:
        >>> s = FjORD([0.5, 1.0], widths=(0.25, 0.5, 1.0))
        >>> sorted({s.round_width(r, 0, seed=0) for r in range(1, 30)})
        [0.25, 0.5]
    """

    def __init__(self, capacities, widths=(0.25, 0.5, 0.75, 1.0), model=None):
        super().__init__(capacities, model)
        if isinstance(widths, (str, bytes)) or not hasattr(widths, "__len__") or not widths:
            raise ValueError(f"widths must be a non-empty sequence of numbers in (0, 1], "
                             f"got {widths!r:.60}")
        self.widths = tuple(sorted(_check_width(f"widths[{i}]", w)
                                   for i, w in enumerate(widths)))
        for k, c in enumerate(self.capacities):
            if c < self.widths[0]:
                raise ValueError(f"capacities[{k}] must be >= the smallest width "
                                 f"{self.widths[0]}, got {c}")

    def round_width(self, round_num, client_id, seed):
        """The width client `client_id` trains in round `round_num`."""
        allowed = [w for w in self.widths if w <= self.width_of(client_id)]
        rng = np.random.default_rng([int(seed), int(round_num), int(client_id), _FJORD_SALT])
        return allowed[int(rng.integers(len(allowed)))]

    def client_kept(self, layout, round_num, client_id, seed):
        """The first units up to this round's drawn width."""
        return _nested_kept(layout, self.round_width(round_num, client_id, seed))


class FederatedDropout(_SubModels):
    """Federated Dropout (Caldas et al. 2018): a random sub-model per client and round.

    Each round client k keeps a random ceil(keep_fraction * units) of each hidden layer's
    units, drawn from (seed, round, client), which both halves know; the server averages
    slice-wise. The global model keeps every unit and is evaluated whole.

    Args:
        keep_fraction: Fraction of each hidden layer's units in a sub-model, in (0, 1].
        model: Optional, as for `HeteroFL`.

    Raises:
        TypeError, ValueError: If `keep_fraction` is not a number in (0, 1], or as
            `width_layout`.

    Example:
        >>> layout = width_layout([np.zeros((2, 8)), np.zeros(8), np.zeros((8, 1)), np.zeros(1)])
        >>> [int(k.sum()) for k in FederatedDropout(0.5).client_kept(layout, 1, 3, seed=0)]
        [4]
    """

    def __init__(self, keep_fraction=0.75, model=None):
        self.keep_fraction = _check_width("keep_fraction", keep_fraction)
        super().__init__(model)

    def client_kept(self, layout, round_num, client_id, seed):
        """A random subset of each hidden layer's units, from (seed, round, client)."""
        rng = np.random.default_rng([int(seed), int(round_num), int(client_id), _DROPOUT_SALT])
        kept = []
        for n in layout.hidden_units:
            k = np.zeros(n, bool)
            k[rng.choice(n, size=_width_units(n, self.keep_fraction), replace=False)] = True
            kept.append(k)
        return kept
