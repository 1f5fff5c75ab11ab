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
        rng: `np.random.Generator` for the per-epoch shuffles.

    Returns:
        A dict of NumPy arrays: "rows" (steps, batch_size) int32 indices and "weights"
        (steps, batch_size) float32 (1 real example, 0 padding), one row per step; "start" and
        "stop" (one entry per client): the client's steps are rows start[k] to stop[k] - 1.

    Example:
        >>> plan = plan_local_steps([np.arange(3), np.arange(3, 8)], 1, 2, np.random.default_rng(0))
        >>> plan["rows"].shape, float(plan["weights"].sum()), plan["stop"].tolist()
        ((5, 2), 8.0, [2, 5])
    """
    rows, weights, steps_per_client = [], [], []
    # padding beyond the largest client would only add zero-weight rows: cap the batch width
    batch_size = min(batch_size, max(len(own_rows) for own_rows in client_rows))
    for own_rows in client_rows:
        steps = -(-len(own_rows) // batch_size)  # ceil: the last batch may be partial
        for _ in range(local_epochs):
            # pad with the client's own first row: padding never touches another client's data
            order = np.full(steps * batch_size, own_rows[0], dtype=np.int32)
            order[: len(own_rows)] = rng.permutation(own_rows)
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

    Args:
        model: An uncompiled `tf.keras` model (built by the run's `model_fn`). Its trainable
            variables are the federated weights; the only other variables allowed are
            tensorflow-model-optimization's pruning bookkeeping (masks, thresholds, steps).
        masked: Whether clients train under server-given masks (`set_masks`): after every
            SGD step masked-out weights are set back to exactly zero.

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
        self.model = model
        self.variables = list(model.trainable_variables)
        self._check_variables(model)
        self.masked = masked
        self._global = [tf.Variable(v, trainable=False) for v in self.variables]
        self._masks = [tf.Variable(tf.ones(v.shape, tf.bool), trainable=False)
                       for v in self.variables]
        self._learning_rate = tf.Variable(0.0, trainable=False)
        self._step_vars = [v for v in model.non_trainable_variables if "pruning_step" in v.name]
        self._tfmot_masks = self._find_tfmot_masks(model)
        self._loss = tf.keras.losses.SparseCategoricalCrossentropy(
            from_logits=not outputs_probabilities(model), reduction="none"
        )
        self._x = self._y = None
        self._round_fn = self._evaluate_fn = None
        self.traces = 0  # how many times the round function was traced (tests pin this)

    def _check_variables(self, model):
        """Refuse models whose non-trainable state FedAvg would silently ignore."""
        for v in model.non_trainable_variables:
            if not any(key in v.name for key in ("mask", "threshold", "pruning_step")):
                raise ValueError(
                    f"model has non-trainable variable {v.name!r} (e.g. BatchNormalization "
                    "statistics); prunefl_lite averages trainable weights only, so use a model "
                    "without such layers"
                )

    def _find_tfmot_masks(self, model):
        """Pairs (index of a kernel in `variables`, its tfmot mask variable), for wrapped layers."""
        index = {v.ref(): i for i, v in enumerate(self.variables)}
        return [(index[w.ref()], m) for layer in model.layers
                for w, m, _ in getattr(layer, "pruning_vars", [])]

    def get_weights(self):
        """The current trainable weights as a list of NumPy arrays."""
        return [v.numpy() for v in self.variables]

    def set_weights(self, weights):
        """Load a list of arrays into the model's trainable variables."""
        for v, w in zip(self.variables, weights, strict=True):
            v.assign(w)

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
        self._round_fn = tf.function(self._round, input_signature=[
            x_spec, spec([None], tf.int64), spec([None, None], tf.int32),
            spec([None, None], tf.float32), spec([None], tf.int32), spec([None], tf.int32),
            spec([None], tf.int64),
        ])
        self._evaluate_fn = tf.function(self._evaluate, input_signature=[
            x_spec, spec([None], tf.int64)])

    def train(self, global_weights, plan, learning_rate, pruning_steps=None):
        """Run every client of `plan` from `global_weights`; return their final weights.

        Args:
            global_weights: The weights every client starts from.
            plan: The output of `plan_local_steps`.
            learning_rate: Local SGD step size.
            pruning_steps: For models wrapped by tensorflow-model-optimization: one value per
                client, the step its pruning step counter starts from (tfmot's wrapper adds one
                per training batch, and its schedule reads the counter). Default zeros.

        Returns:
            A list of arrays, one per weight, each with a leading axis of one row per client.
        """
        for g, w in zip(self._global, global_weights, strict=True):
            g.assign(w)
        self._learning_rate.assign(learning_rate)
        if pruning_steps is None:
            pruning_steps = np.zeros(len(plan["start"]), np.int64)
        stacked = self._round_fn(
            self._x, self._y, plan["rows"], plan["weights"], plan["start"], plan["stop"],
            np.asarray(pruning_steps, np.int64),
        )
        return [s.numpy() for s in stacked]

    def _round(self, x, y, rows, weights, start, stop, pruning_steps):
        self.traces += 1
        num_clients = tf.shape(start)[0]
        results = [tf.TensorArray(v.dtype, size=num_clients, element_shape=v.shape)
                   for v in self.variables]
        for k in tf.range(num_clients):
            self._start_client(pruning_steps[k])
            for s in tf.range(start[k], stop[k]):
                self._sgd_step(tf.gather(x, rows[s]), tf.gather(y, rows[s]), weights[s])
            for i, mask in self._tfmot_masks:  # what UpdatePruningStep does at an epoch's end
                self.variables[i].assign(tf.where(mask > 0, self.variables[i], 0.0))
            results = [r.write(k, _plus_zero(v)) for r, v in zip(results, self.variables)]
        return [r.stack() for r in results]

    def _start_client(self, pruning_step):
        for v, g in zip(self.variables, self._global):
            v.assign(g)
        for step in self._step_vars:
            step.assign(pruning_step)
        for i, mask in self._tfmot_masks:  # a client starts from the global model's zeros
            mask.assign(tf.cast(tf.not_equal(self._global[i], 0.0), mask.dtype))

    def _sgd_step(self, xb, yb, wb):
        with tf.GradientTape() as tape:
            per_example = self._loss(yb, self.model(xb, training=True))
            loss = tf.reduce_sum(per_example * wb) / tf.maximum(tf.reduce_sum(wb), 1.0)
        grads = tape.gradient(loss, self.variables)
        for v, g in zip(self.variables, grads):
            v.assign_sub(self._learning_rate * g)
        if self.masked:
            for v, m in zip(self.variables, self._masks):  # exact zeros, even where v is NaN
                v.assign(tf.where(m, v, tf.zeros_like(v)))

    def evaluate(self, weights, x, y):
        """Mean loss and accuracy of `weights` on `(x, y)`.

        Returns:
            A `(loss, accuracy)` pair of floats.
        """
        self.set_weights(weights)
        loss, correct = self._evaluate_fn(np.asarray(x, np.float32), np.asarray(y, np.int64))
        return float(loss), float(correct) / len(y)

    def _evaluate(self, x, y):
        out = self.model(x, training=False)
        loss = tf.reduce_mean(self._loss(y, out))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(out, axis=-1), y), tf.int32))
        return loss, correct


def _plus_zero(v):
    """Turn -0.0 (from masking by multiplication, as tfmot does) into +0.0.

    A pruned weight is a zero to the encoder, not a value to send.
    """
    return tf.where(tf.equal(v, 0.0), tf.zeros_like(v), v)
