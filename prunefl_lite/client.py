"""Clients' local updates: local SGD from the global weights, all of a round's clients in one call.

Speed comes from design, not from small experiments: one model is built per architecture and
reused for every client and every run (the global weights are swapped in, plain SGD has no
optimizer state to reset), and one compiled function runs every local step of every client of a
round. Batches have a fixed shape: a client's last, partial batch is padded and the padding gets
weight zero, so the gradient is exactly that of the real examples and nothing retraces.
"""

import numpy as np
import tensorflow as tf

from prunefl_lite.models import outputs_probabilities


def plan_local_steps(client_rows, local_epochs, batch_size, rng):
    """Lay out every local SGD step of a round as rows of example indices.

    Args:
        client_rows: One int array per client: that client's row indices into the run's data.
        local_epochs: Passes of each client over its own data.
        batch_size: Mini-batch size; a client's last batch of an epoch is padded (to at most
            the largest client's size, so "B = all" as a large number costs nothing extra).
        rng: `np.random.Generator` for the per-epoch shuffles, or a list with one generator per
            client (then a client's batches depend only on its own generator, so a client
            that plans alone, as on a deployment, gets the same batches).

    Returns:
        A dict of NumPy arrays: "rows" (steps, batch_size) int32 indices and "weights"
        (steps, batch_size) float32 (1 real example, 0 padding), one row per step; "start" and
        "stop" (one entry per client): the client's steps are rows start[k] to stop[k] - 1.

    Example:
        >>> plan = plan_local_steps([np.arange(3), np.arange(3, 8)], 1, 2, np.random.default_rng(0))
        >>> plan["rows"].shape, float(plan["weights"].sum()), plan["stop"].tolist()
        ((5, 2), 8.0, [2, 5])
    """
    rngs = rng if isinstance(rng, (list, tuple)) else [rng] * len(client_rows)
    if len(rngs) != len(client_rows):
        raise ValueError(f"rng must be one generator or one per client ({len(client_rows)}), "
                         f"got {len(rngs)}")
    rows, weights, steps_per_client = [], [], []
    # padding beyond the largest client would only add zero-weight rows: cap the batch width
    batch_size = min(batch_size, max(len(own_rows) for own_rows in client_rows))
    for own_rows, own_rng in zip(client_rows, rngs):
        steps = -(-len(own_rows) // batch_size)  # ceil: the last batch may be partial
        for _ in range(local_epochs):
            # pad with the client's own first row: padding never touches another client's data
            order = np.full(steps * batch_size, own_rows[0], dtype=np.int32)
            order[: len(own_rows)] = own_rng.permutation(own_rows)
            rows.append(order.reshape(steps, batch_size))
            weights.append((np.arange(steps * batch_size) < len(own_rows)).reshape(steps, -1))
        steps_per_client.append(steps * local_epochs)
    stop = np.cumsum(steps_per_client).astype(np.int32)
    return {
        "rows": np.concatenate(rows),
        "weights": np.concatenate(weights).astype(np.float32),
        "start": stop - np.asarray(steps_per_client, np.int32),
        "stop": stop,
    }


class ClientTrainer:
    """One compiled model that performs the local updates of all clients of a round.

    The model's variables are sorted by what they are in federated learning:

    * federated weights (`variables`, the list `run_fedavg` broadcasts, averages and returns):
      the trainable variables, then the moving statistics (mean, variance) of every trainable
      `BatchNormalization` layer, which training updates and FedAvg averages like a weight;
    * frozen weights (`frozen_variables`): every other non-trainable variable, e.g. a layer
      built with ``trainable=False`` or a preprocessing layer's constants. Each client holds
      them, none uploads them; `load_frozen` sets them from a run's `model_fn`, and
      `check_frozen` refuses (ValueError naming the variable and its layer) a model whose
      training changes one, since FedAvg would silently ignore that change;
    * tensorflow-model-optimization's bookkeeping (each `PruneLowMagnitude` wrapper's mask,
      threshold and step counter), recognised by identity (the wrappers' own variables,
      never by name) and managed here, never sent.

    One caveat with BatchNormalization: batches have a fixed shape, so a client's last,
    partial batch is padded with copies of that client's first example. The padding has loss
    weight zero (gradients are exact), but it does enter that batch's BatchNorm statistics.
    Choose `batch_size` dividing the client sizes (or B >= the largest client) to avoid it.

    Random layers (Dropout, SpatialDropout, GaussianNoise, GaussianDropout, AlphaDropout and
    Keras' random augmentation layers: every layer drawing from a Keras `RandomGenerator`) are
    rewired to one `tf.random.Generator` that `train` resets for each client from that client's
    seed, so a round's randomness is a function of the seeds passed in, whatever ran before in
    the process, and the round function is traced once.

    Args:
        model: An uncompiled `tf.keras` model (built by the run's `model_fn`), whose layers
            compute in float32 (a mixed-precision policy is refused, see `check_model`).
        masked: Whether clients train under server-given masks (`set_masks`): after every
            SGD step masked-out weights are set back to exactly zero.

    Raises:
        ValueError: From `check_model`.

    Example:
        >>> from prunefl_lite.models import mlp_2nn
        >>> trainer = ClientTrainer(mlp_2nn((4,), 3))
        >>> x, y = np.ones((6, 4), np.float32), np.array([0, 1, 2, 0, 1, 2])
        >>> trainer.set_data(x, y)
        >>> plan = plan_local_steps([np.arange(3), np.arange(3, 6)], 1, 2, np.random.default_rng(0))
        >>> updated = trainer.train(trainer.get_weights(), plan, learning_rate=0.1)
        >>> [w.shape for w in updated][:2]  # one row per client
        [(2, 4, 200), (2, 200)]
    """

    def __init__(self, model, masked=False):
        check_model(model)
        self.model = model
        parts = classify_variables(model)
        self.num_trainable = len(parts["trainable"])
        self.variables = parts["trainable"] + parts["statistics"]
        self.frozen_variables = parts["frozen"]
        self.batch_norm_index = _batch_norm_index(model, self.variables)
        self.masked = masked
        self._masks = [tf.Variable(tf.ones(v.shape, tf.bool), trainable=False)
                       for v in self.variables]
        self._learning_rate = tf.Variable(0.0, trainable=False)
        self._step_vars = [layer.pruning_step for layer in _tfmot_wrappers(model)]
        self._tfmot_masks = self._find_tfmot_masks(model)
        self._rng = tf.random.Generator.from_seed(0, alg="philox")
        self._random_layers = _rewire_random_layers(model, self._rng)
        self._frozen_values = [v.numpy() for v in self.frozen_variables]
        self._loss = tf.keras.losses.SparseCategoricalCrossentropy(
            from_logits=not outputs_probabilities(model), reduction="none"
        )
        self._x = self._y = None
        self._round_fn = self._evaluate_fn = None
        self.traces = 0  # how many times the round function was traced (tests pin this)

    def _find_tfmot_masks(self, model):
        """Pairs (index of a kernel in `variables`, its tfmot mask variable), for wrapped layers."""
        index = {v.ref(): i for i, v in enumerate(self.variables)}
        return [(index[w.ref()], m) for layer in _tfmot_wrappers(model)
                for w, m, _ in layer.pruning_vars]

    def get_weights(self):
        """The current federated weights (trainable, then BatchNorm statistics), as NumPy arrays."""
        return [v.numpy() for v in self.variables]

    def set_weights(self, weights):
        """Load a list of arrays into the federated variables (the order of `get_weights`)."""
        for v, w in zip(self.variables, weights, strict=True):
            v.assign(w)

    def _weight_specs(self, leading=()):
        return [tf.TensorSpec([*leading, *v.shape], v.dtype) for v in self.variables]

    def load_frozen(self, values):
        """Set the frozen (non-trainable, non-statistics) variables, e.g. from a run's model_fn.

        Raises:
            ValueError: If `values` does not hold one array of the right shape per variable.
        """
        if len(values) != len(self.frozen_variables):
            raise ValueError(f"values must hold {len(self.frozen_variables)} frozen arrays, "
                             f"got {len(values)}")
        for v, value in zip(self.frozen_variables, values):
            if tuple(v.shape) != np.shape(value):
                raise ValueError(f"values for {v.name!r} must have shape {tuple(v.shape)}, "
                                 f"got {np.shape(value)}")
            v.assign(value)
        self._frozen_values = [np.array(value, copy=True) for value in values]

    def check_frozen(self):
        """Raise ValueError if training changed a frozen variable (naming it and its layer)."""
        for v, value in zip(self.frozen_variables, self._frozen_values):
            if not np.array_equal(v.numpy(), value, equal_nan=True):
                raise ValueError(
                    f"non-trainable variable {v.name!r} (layer {v.name.split('/')[0]!r}) changed "
                    "during local training; prunefl_lite federates trainable weights and "
                    "BatchNormalization moving statistics and holds every other non-trainable "
                    "variable fixed, so it cannot train this layer"
                )

    def set_masks(self, masks):
        """Set the masks (True = keep) that `train` enforces after every step."""
        for v, m in zip(self._masks, masks, strict=True):
            v.assign(np.asarray(m, dtype=bool))

    def set_data(self, x, y):
        """Hold the run's training data (all clients, concatenated) as tensors."""
        self._x = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
        self._y = tf.convert_to_tensor(np.asarray(y, dtype=np.int64))
        if self._round_fn is None:
            self._compile(self._x.shape[1:])

    def _compile(self, example_shape):
        """Trace-once signatures: any number of examples, steps, clients and any batch size."""
        spec = tf.TensorSpec
        x_spec = spec([None, *example_shape], tf.float32)
        local_specs = [spec([None, *self.variables[i].shape], self.variables[i].dtype)
                       for i in self.batch_norm_index]
        # concrete functions: calling them skips tf.function's per-call signature matching
        self._round_fn = tf.function(self._round).get_concrete_function(
            x_spec, spec([None], tf.int64), spec([None, None], tf.int32),
            spec([None, None], tf.float32), spec([None], tf.int32), spec([None], tf.int32),
            spec([None], tf.int64), spec([None], tf.int64), self._weight_specs(), local_specs)
        self._evaluate_fn = tf.function(self._evaluate).get_concrete_function(
            x_spec, spec([None], tf.int64), self._weight_specs())

    def train(self, global_weights, plan, learning_rate, pruning_steps=None, seeds=None,
              local_weights=None):
        """Run every client of `plan` from `global_weights`; return their final weights.

        Args:
            global_weights: The weights every client starts from (the order of `get_weights`).
            plan: The output of `plan_local_steps`.
            learning_rate: Local SGD step size.
            pruning_steps: For models wrapped by tensorflow-model-optimization: one value per
                client, the step its pruning step counter starts from (tfmot's wrapper adds one
                per training batch, and its schedule reads the counter). Default zeros.
            seeds: One int64 per client: the seed of its random layers (Dropout, noise,
                augmentation) this round. Default zeros.
            local_weights: For FedBN (Li et al. 2021): one array per entry of
                `batch_norm_index`, of shape (clients, *weight shape): each client's own
                BatchNorm values to start from. Default: the global ones.

        Returns:
            A list of arrays, one per weight, each with a leading axis of one row per client.
        """
        self._learning_rate.assign(learning_rate)
        num_clients = len(plan["start"])
        if pruning_steps is None:
            pruning_steps = np.zeros(num_clients, np.int64)
        if seeds is None:
            seeds = np.zeros(num_clients, np.int64)
        if local_weights is None:
            local_weights = [np.repeat(np.asarray(global_weights[i])[None], num_clients, 0)
                             for i in self.batch_norm_index]
        stacked = self._round_fn(
            self._x, self._y, plan["rows"], plan["weights"], plan["start"], plan["stop"],
            np.asarray(pruning_steps, np.int64), np.asarray(seeds, np.int64),
            [np.asarray(w, v.dtype.as_numpy_dtype) for w, v in zip(global_weights,
                                                                   self.variables, strict=True)],
            local_weights,
        )
        return [s.numpy() for s in stacked]

    def _round(self, x, y, rows, weights, start, stop, pruning_steps, seeds, global_weights,
               local_weights):
        self.traces += 1
        num_clients = tf.shape(start)[0]
        results = [tf.TensorArray(v.dtype, size=num_clients, element_shape=v.shape)
                   for v in self.variables]
        for k in tf.range(num_clients):
            self._start_client(global_weights, pruning_steps[k], seeds[k],
                               [w[k] for w in local_weights])
            for s in tf.range(start[k], stop[k]):
                self._sgd_step(tf.gather(x, rows[s]), tf.gather(y, rows[s]), weights[s])
            for i, mask in self._tfmot_masks:  # what UpdatePruningStep does at an epoch's end
                self.variables[i].assign(tf.where(mask > 0, self.variables[i], 0.0))
            results = [r.write(k, _plus_zero(v)) for r, v in zip(results, self.variables)]
        return [r.stack() for r in results]

    def _start_client(self, global_weights, pruning_step, seed, local_start):
        for v, g in zip(self.variables, global_weights):
            v.assign(g)
        if self.masked:  # a client's sub-model starts masked (its first step sees only it)
            for v, m in zip(self.variables[: self.num_trainable], self._masks):
                v.assign(tf.where(m, v, tf.zeros_like(v)))
        for i, value in zip(self.batch_norm_index, local_start):
            self.variables[i].assign(value)
        for step in self._step_vars:
            step.assign(pruning_step)
        for i, mask in self._tfmot_masks:  # a client starts from the global model's zeros
            mask.assign(tf.cast(tf.not_equal(global_weights[i], 0.0), mask.dtype))
        if self._random_layers:
            self._rng.reset(tf.stack([tf.constant(0, tf.int64), tf.constant(0, tf.int64), seed]))

    def _sgd_step(self, xb, yb, wb):
        trainable = self.variables[: self.num_trainable]
        with tf.GradientTape() as tape:
            per_example = self._loss(yb, self.model(xb, training=True))
            loss = tf.reduce_sum(per_example * wb) / tf.maximum(tf.reduce_sum(wb), 1.0)
        grads = tape.gradient(loss, trainable)
        for v, g in zip(trainable, grads):
            v.assign_sub(self._learning_rate * g)
        if self.masked:
            for v, m in zip(trainable, self._masks):  # exact zeros, even where v is NaN
                v.assign(tf.where(m, v, tf.zeros_like(v)))

    def gradients(self, weights, rows):
        """Gradient of the mean loss over the examples `rows` (of `set_data`) at `weights`.

        What a client computes on its own data when a strategy asks it for a report (e.g. the
        regrowth scores of `pruning.DynamicPruning`). Random layers run in inference mode.

        Args:
            weights: The federated weights (the order of `get_weights`).
            rows: Int indices into the data given to `set_data`.

        Returns:
            One float32 array per federated weight: the gradient for trainable weights, None
            for BatchNorm statistics (not trained by gradient).
        """
        self.set_weights(weights)
        x = tf.gather(self._x, np.asarray(rows, np.int64))
        y = tf.gather(self._y, np.asarray(rows, np.int64))
        trainable = self.variables[: self.num_trainable]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(self._loss(y, self.model(x, training=False)))
        grads = [g.numpy() for g in tape.gradient(loss, trainable)]
        return grads + [None] * (len(self.variables) - self.num_trainable)

    def evaluate(self, weights, x, y):
        """Mean loss and accuracy of `weights` on `(x, y)`.

        Args:
            weights: The federated weights (the order of `get_weights`).
            x: Examples: an array, or a float32 tensor that a caller evaluating every round
                converts once.
            y: Integer labels: an array or an int64 tensor.

        Returns:
            A `(loss, accuracy)` pair of floats (mean cross-entropy in nats; accuracy as a
            fraction in [0, 1]).
        """
        loss, correct = self._evaluate_fn(
            _as_tensor(x, tf.float32), _as_tensor(y, tf.int64),
            [np.asarray(w, v.dtype.as_numpy_dtype) for w, v in zip(weights, self.variables,
                                                                   strict=True)])
        return float(loss), float(correct) / len(y)

    def _evaluate(self, x, y, weights):
        for v, w in zip(self.variables, weights):
            v.assign(w)
        out = self.model(x, training=False)
        loss = tf.reduce_mean(self._loss(y, out))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(out, axis=-1), y), tf.int32))
        return loss, correct


def _all_layers(model):
    """Every layer inside `model` (nested models and tfmot wrappers' inner layers included)."""
    return [m for m in model._flatten_layers(include_self=False, recursive=True)]


def _tfmot_wrappers(model):
    """The PruneLowMagnitude wrappers of tfmot in `model` (each owns a step counter)."""
    return [layer for layer in _all_layers(model)
            if hasattr(layer, "pruning_step") and hasattr(layer, "pruning_vars")]


def check_model(model):
    """Refuse, up front, a model the trainer cannot train correctly.

    Raises:
        ValueError: If a layer computes in a dtype other than float32 (e.g. under the
            ``mixed_float16`` or ``mixed_bfloat16`` policy of
            `tf.keras.mixed_precision.set_global_policy`): the compiled SGD step and the
            payload encoder work in float32, and mixed precision without loss scaling would
            train wrongly. The message names the layer and the policy.

    Example:
        >>> from prunefl_lite.models import mlp_2nn
        >>> check_model(mlp_2nn((4,), 3))
    """
    for layer in [model, *_all_layers(model)]:
        policy = getattr(layer, "dtype_policy", None)
        compute = getattr(policy, "compute_dtype", "float32")
        if compute not in (None, "float32"):
            raise ValueError(
                f"layer {layer.name!r} must compute in float32, got dtype policy "
                f"{getattr(policy, 'name', compute)!r}: prunefl_lite trains in float32 only; "
                "call tf.keras.mixed_precision.set_global_policy('float32') before model_fn "
                "builds the model"
            )
    for v in model.trainable_variables:
        if v.dtype != tf.float32:
            raise ValueError(f"trainable variable {v.name!r} must be float32, got {v.dtype.name}")


def classify_variables(model):
    """Sort a model's variables into trainable, BatchNorm statistics, frozen and tfmot bookkeeping.

    Bookkeeping is recognised by identity: the masks, thresholds and step counters that
    tensorflow-model-optimization's wrappers own. Statistics are the moving mean and variance
    of each trainable `BatchNormalization` layer (a frozen BatchNorm layer runs in inference
    mode, so its statistics are frozen weights).

    Returns:
        A dict of lists of variables: "trainable", "statistics", "frozen", "bookkeeping",
        each in the model's order.

    Example:
        >>> model = tf.keras.Sequential([tf.keras.Input((3,)),
        ...                              tf.keras.layers.BatchNormalization(),
        ...                              tf.keras.layers.Dense(2, trainable=False)])
        >>> {k: len(v) for k, v in classify_variables(model).items()}
        {'trainable': 2, 'statistics': 2, 'frozen': 2, 'bookkeeping': 0}
    """
    bookkeeping = set()
    for layer in _tfmot_wrappers(model):
        bookkeeping.add(id(layer.pruning_step))
        for _, mask, threshold in layer.pruning_vars:
            bookkeeping.update((id(mask), id(threshold)))
    statistics = set()
    for layer in _all_layers(model):
        if _is_batch_norm(layer) and layer.trainable:
            statistics.update((id(layer.moving_mean), id(layer.moving_variance)))
    others = list(model.non_trainable_variables)
    return {
        "trainable": list(model.trainable_variables),
        "statistics": [v for v in others if id(v) in statistics],
        "frozen": [v for v in others if id(v) not in statistics | bookkeeping],
        "bookkeeping": [v for v in others if id(v) in bookkeeping],
    }


def _is_batch_norm(layer):
    return isinstance(layer, tf.keras.layers.BatchNormalization)


def _batch_norm_index(model, variables):
    """Indices in `variables` of every variable of a trainable BatchNormalization layer."""
    index = {id(v): i for i, v in enumerate(variables)}
    found = []
    for layer in _all_layers(model):
        if _is_batch_norm(layer) and layer.trainable:
            found += [index[id(v)] for v in layer.weights if id(v) in index]
    return sorted(found)


def _rewire_random_layers(model, generator):
    """Make every Keras random layer of `model` draw from `generator`; return those layers."""
    from tf_keras.src import backend as keras_backend

    rewired = []
    for layer in [model, *_all_layers(model)]:
        rng = getattr(layer, "_random_generator", None)
        if isinstance(rng, keras_backend.RandomGenerator):
            rng._rng_type = keras_backend.RandomGenerator.RNG_STATEFUL
            rng._generator = generator
            rng._built = True
            rewired.append(layer)
    return rewired


def _as_tensor(values, dtype):
    """`values` as a tensor of `dtype` (a tensor of that dtype is used as it is, not copied)."""
    if isinstance(values, tf.Tensor) and values.dtype == dtype:
        return values
    return tf.convert_to_tensor(np.asarray(values, dtype.as_numpy_dtype))


def _plus_zero(v):
    """Turn -0.0 (from masking by multiplication, as tfmot does) into +0.0.

    A pruned weight is a zero to the encoder, not a value to send.
    """
    return tf.where(tf.equal(v, 0.0), tf.zeros_like(v), v)
