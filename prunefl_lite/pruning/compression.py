"""Update compression: top-k and random-k sparsified updates, error feedback, STC's ternary values.

A dense model's clients train as in FedAvg, but each uploads the global weights plus a
*compressed update*: only a `1 - sparsity` share of the entries of its update (trained weights
minus global weights) is non-zero. The round sends an upload of a strategy with
`upload_update = True` as that update (the difference to the global weights the client
received), so the sparse update travels as positions and values and its bytes are counted.

* `TopKUpdates`: each array keeps its k entries of largest |update| (Stich et al. 2018; Lin et
  al. 2018, DGC);
* `RandomKUpdates`: each array keeps k entries drawn uniformly from (seed, round, client);
  `unbiased=True` scales them by size / k so that the compressed update equals the update on
  average over the draw;
* `STC`: sparse ternary compression (Sattler et al. 2019): top-k, then every kept entry of an
  array replaced by mu * sign, mu the mean |kept entry|; only the upload is compressed here
  (the paper also compresses the broadcast).

With `error_feedback=True` (Stich et al. 2018; Karimireddy et al. 2019) a client adds what it
did not send last time (its *residual*, kept in `client.state`, on the client) to its next update
before compressing, and keeps the new remainder: nothing is lost, only delayed. Under client
sampling a client's residual waits until the client is sampled again, so it is applied to a
global model that has moved on meanwhile (a stale residual). The residual is computed against
what the 32-bit codec carries; with `value_bits` 16 or 8 the round's quantisation of the
upload happens after it and is not fed back.
"""

import numpy as np

from prunefl_lite.strategy import NoPruning
from prunefl_lite.validate import check_choice, check_fraction, check_int

__all__ = ["RandomKUpdates", "STC", "TopKUpdates", "kept_count", "random_k", "ternary", "top_k"]

_RANDOM_K_SALT = 22  # separates a client's random-k draw from its other streams


def kept_count(size, sparsity):
    """How many of `size` entries a `sparsity`-sparse compression keeps: at least one.

    Example:
        >>> kept_count(1000, 0.99), kept_count(10, 0.99), kept_count(10, 0.0)
        (10, 1, 10)
    """
    return max(1, int(round((1 - sparsity) * size)))


def top_k(update, sparsity):
    """The update with only its `kept_count` entries of largest magnitude (others +0.0).

    At a tie on the k-th magnitude which of the tied entries is kept is left to
    `np.argpartition` (deterministic for a given input); it selects in linear time.

    Args:
        update: An array (any shape, float).
        sparsity: Fraction of entries set to zero, in [0, 1).

    Returns:
        An array of `update`'s shape and dtype.

    Example:
        >>> top_k(np.array([0.1, -3.0, 2.0, 0.5]), 0.5).tolist()
        [0.0, -3.0, 2.0, 0.0]
    """
    flat = np.asarray(update).ravel()
    k = kept_count(flat.size, sparsity)
    keep = np.argpartition(-np.abs(flat), k - 1)[:k] if k < flat.size else slice(None)
    out = np.zeros_like(flat)
    out[keep] = flat[keep]
    return out.reshape(np.shape(update))


def random_k(update, sparsity, rng, unbiased=False):
    """The update at `kept_count` positions drawn uniformly without replacement (others +0.0).

    With `unbiased` the kept entries are multiplied by size / k, so that the expectation over
    the draw is the update itself (each entry is kept with probability k / size).

    Example:
        >>> u = np.arange(1.0, 5.0)
        >>> out = random_k(u, 0.5, np.random.default_rng(0), unbiased=True)
        >>> int(np.count_nonzero(out)), bool(set(out[out != 0]) <= set(2 * u))
        (2, True)
    """
    flat = np.asarray(update).ravel()
    k = kept_count(flat.size, sparsity)
    keep = rng.choice(flat.size, size=k, replace=False)
    out = np.zeros_like(flat)
    out[keep] = flat[keep] * (flat.size / k if unbiased else 1)
    return out.reshape(np.shape(update))


def ternary(update, sparsity):
    """STC's ternary update: top-k positions, each set to mu * sign (mu = mean |kept entry|).

    Example:
        >>> ternary(np.array([0.1, -3.0, 2.0, 0.5]), 0.5).tolist()
        [0.0, -2.5, 2.5, 0.0]
    """
    kept = top_k(update, sparsity)
    nonzero = kept != 0
    if not nonzero.any():
        return kept
    mu = np.abs(kept[nonzero]).mean()
    return (np.sign(kept) * mu).astype(kept.dtype) + 0.0


class _UpdateCompression(NoPruning):
    """Clients upload global + a compressed update, optionally with error feedback."""

    upload_update = True  # the round sends the upload as (upload - global): a sparse update

    def __init__(self, sparsity, error_feedback, value_bits):
        self.sparsity = check_fraction("sparsity", sparsity)
        self.error_feedback = bool(error_feedback)
        self.upload_value_bits = check_choice("value_bits", check_int("value_bits", value_bits),
                                              (32, 16, 8))

    def compress(self, update, client, index):
        """The compressed version of one array's update (subclasses)."""
        raise NotImplementedError

    def client_step(self, client, weights):
        """Client half: compress (update + residual); keep what was not sent as the residual.

        Every float array of the model is compressed (kernels and biases alike). The residual
        is `update + old residual - sent`, with `sent` exactly what the upload carries
        (`upload - global` in the arrays' dtype), stored in `client.state["residual<i>"]`.
        """
        upload = []
        for i, (w, g) in enumerate(zip(weights, client.global_weights)):
            w, g = np.asarray(w), np.asarray(g)
            if not np.issubdtype(g.dtype, np.floating):
                upload.append(w)
                continue
            update = w - g
            if self.error_feedback:
                update = update + client.state.get(f"residual{i}", np.zeros_like(update))
            sent = (g + self.compress(update, client, i)).astype(g.dtype)
            if self.error_feedback:
                client.state[f"residual{i}"] = (update - (sent - g)).astype(g.dtype)
            upload.append(sent)
        return upload, None


class TopKUpdates(_UpdateCompression):
    """Top-k sparsified updates: each array uploads its largest-|update| entries only.

    Each client's update of each array keeps `kept_count(size, sparsity)` entries, those of
    largest magnitude (Stich et al. 2018; Lin et al. 2018, DGC, per layer); the upload carries
    their positions and values. With `error_feedback` the client adds its residual first (see
    the module docstring); without it, small coordinates that never make the top k are never
    sent.

    Args:
        sparsity: Fraction of each array's update entries NOT sent, in [0, 1).
        error_feedback: Keep the residual on the client and add it to the next update.
        value_bits: Width of each sent value: 32 (exact), 16 or 8 (the round's unbiased
            stochastic rounding of the update).

    Raises:
        TypeError: On an argument of the wrong type.
        ValueError: On `sparsity` outside [0, 1) or `value_bits` not 32, 16 or 8.

    Example:
        >>> from types import SimpleNamespace
        >>> s = TopKUpdates(0.5, error_feedback=True)
        >>> client = SimpleNamespace(global_weights=[np.zeros(4)], state={})
        >>> s.client_step(client, [np.array([0.1, -3.0, 2.0, 0.5])])[0][0].tolist()
        [0.0, -3.0, 2.0, 0.0]
        >>> client.state["residual0"].tolist()  # what was not sent, added next time
        [0.1, 0.0, 0.0, 0.5]
    """

    def __init__(self, sparsity, error_feedback=True, value_bits=32):
        super().__init__(sparsity, error_feedback, value_bits)

    def compress(self, update, client, index):
        """The top-k entries of the update."""
        return top_k(update, self.sparsity)


class RandomKUpdates(_UpdateCompression):
    """Random-k sparsified updates: each array uploads k entries at random positions.

    The positions are drawn per client, round and array from (seed, round, client) (a client
    that runs alone draws the same), uniformly without replacement.

    Args:
        sparsity: Fraction of each array's update entries NOT sent, in [0, 1).
        error_feedback: Keep the residual on the client and add it to the next update.
        unbiased: Scale the kept entries by size / k (the compressed update is unbiased; its
            variance grows by size / k - 1 times the squared entries).
        value_bits: 32, 16 or 8.

    Raises:
        TypeError: On an argument of the wrong type.
        ValueError: On `sparsity` outside [0, 1) or `value_bits` not 32, 16 or 8.

    Example:
        >>> RandomKUpdates(0.9, error_feedback=False).sparsity
        0.9
    """

    def __init__(self, sparsity, error_feedback=True, unbiased=False, value_bits=32):
        super().__init__(sparsity, error_feedback, value_bits)
        self.unbiased = bool(unbiased)

    def compress(self, update, client, index):
        """Random-k entries of the update, drawn from (seed, round, client, array)."""
        rng = np.random.default_rng([client.seed, client.round_num, client.client_id, index,
                                     _RANDOM_K_SALT])
        return random_k(update, self.sparsity, rng, self.unbiased)


class STC(_UpdateCompression):
    """Sparse ternary compression of the uploads (Sattler et al. 2019).

    Top-k per array, then each kept entry replaced by mu * sign(entry), with mu the mean
    magnitude of the kept entries; with error feedback (the paper's default) the difference
    is the residual. The two values +-mu are the outermost levels of the codec's 8-bit grid
    (`value_bits=8`, the default), so they travel in 8 bits each nearly exactly (the paper's
    Golomb-coded signs would need 1 bit; the package's codec has no 1-bit width).

    Args:
        sparsity: Fraction of each array's update entries NOT sent, in [0, 1).
        error_feedback: Keep the residual on the client and add it to the next update.
        value_bits: 8 (default), 16 or 32.

    Example:
        >>> STC(0.99).upload_value_bits
        8
    """

    def __init__(self, sparsity, error_feedback=True, value_bits=8):
        super().__init__(sparsity, error_feedback, value_bits)

    def compress(self, update, client, index):
        """The ternary top-k update."""
        return ternary(update, self.sparsity)
