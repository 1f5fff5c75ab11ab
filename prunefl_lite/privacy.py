"""Privacy in FL: the gradient leak of a Dense layer, DP-FedAvg with its epsilon, a secure-sum toy.

Three tools the course uses to show what plain FedAvg reveals and what buys privacy back:

* `invert_dense_update`: the exact reconstruction of a single example from the update of a
  Dense layer with bias (the ratio of a kernel column to its bias entry is the input).
* `DPFedAvg` and `epsilon`: client-level differential privacy by per-client update clipping
  and Gaussian noise on the sum (McMahan et al. 2018, "Learning differentially private
  recurrent language models", ICLR 2018), accounted with Google's `dp_accounting`.
* `agree_pair_seeds`, `masked_upload`, `secure_sum`: a toy of the pairwise masking at the
  heart of secure aggregation (Bonawitz et al. 2017, "Practical secure aggregation for
  privacy-preserving machine learning", CCS 2017): the server learns only the sum.
"""

import contextlib
import itertools

import numpy as np

from prunefl_lite.strategy import NoPruning, StrategyWrapper
from prunefl_lite.validate import check_int, check_number

__all__ = [
    "DPFedAvg", "agree_pair_seeds", "clip_update", "decode_fixed_point", "encode_fixed_point",
    "epsilon", "invert_dense_update", "masked_upload", "secure_sum", "top_k_mask",
]

_NOISE_SALT = 0x44504641  # separates the noise stream from the engine's sampling stream


# --- The leak: one example's Dense-layer update reveals the example ---


def invert_dense_update(kernel_update, bias_update, kept=None, unit=None):
    """Recover the input of a Dense layer from its (sparse) update on a single example.

    For y = x W + b and one example, dL/dW[i, j] = x_i dL/db_j, so every unit j with a
    non-zero bias update gives x = dW[:, j] / db_j exactly. An SGD update is
    -learning_rate times the gradient, so the ratio is the same for updates. With a pruned
    upload the attacker uses, for each input i, any unit j whose kernel entry (i, j) and bias
    entry j both survived; inputs with no such unit stay unknown (NaN). With a batch of
    several examples the same ratio is a weighted mixture of the inputs instead.

    Args:
        kernel_update: Array (num_inputs, num_units): the layer's kernel update.
        bias_update: Array (num_units,): the layer's bias update.
        kept: Optional pair of boolean arrays shaped like the two updates, True where the
            upload carries the entry; default: every entry is carried.
        unit: Use only this unit (column); default: for each input, the surviving unit
            with the largest |bias update| (the most accurate ratio).

    Returns:
        Float64 array (num_inputs,), NaN where the input cannot be recovered.

    Raises:
        ValueError: If shapes disagree or `unit` is out of range.

    Example:
        >>> x, delta = np.array([0.0, 0.5, 1.0]), np.array([0.0, -2.0, 0.3])
        >>> invert_dense_update(np.outer(x, delta), delta).tolist()
        [0.0, 0.5, 1.0]
    """
    kernel = np.asarray(kernel_update, np.float64)
    bias = np.asarray(bias_update, np.float64)
    if kernel.ndim != 2 or bias.shape != (kernel.shape[1],):
        raise ValueError(f"kernel_update must be (inputs, units) and bias_update (units,), got "
                         f"{kernel.shape} and {bias.shape}")
    keep_w, keep_b = kept if kept is not None else (np.ones(kernel.shape, bool),
                                                     np.ones(bias.shape, bool))
    if np.shape(keep_w) != kernel.shape or np.shape(keep_b) != bias.shape:
        raise ValueError(f"kept must be boolean arrays of shapes {kernel.shape} and "
                         f"{bias.shape}, got {np.shape(keep_w)} and {np.shape(keep_b)}")
    usable = np.asarray(keep_w, bool) & (np.asarray(keep_b, bool) & (bias != 0))[None, :]
    if unit is not None:
        if not 0 <= unit < bias.size:
            raise ValueError(f"unit must be in [0, {bias.size}), got {unit}")
        usable = usable & (np.arange(bias.size) == unit)[None, :]
    strength = np.where(usable, np.abs(bias)[None, :], -1.0)
    best = strength.argmax(axis=1)
    rows = np.arange(kernel.shape[0])
    ratio = kernel[rows, best] / np.where(bias[best] != 0, bias[best], 1.0)
    return np.where(usable[rows, best], ratio, np.nan)


def top_k_mask(arrays, fraction):
    """Boolean masks keeping the largest-|value| `1 - fraction` of all entries, jointly.

    The client-side "top-k" sparsification of an update (Aji & Heafield 2017 style): the
    entries kept are chosen by the client from its own update, so which ones survive is data.

    Args:
        arrays: A list of NumPy arrays (an update).
        fraction: Fraction of entries to drop, in [0, 1).

    Returns:
        A list of boolean arrays, True where the entry is kept (ties broken by position).

    Example:
        >>> [m.tolist() for m in top_k_mask([np.array([3.0, -1.0]), np.array([0.5, -4.0])], 0.5)]
        [[True, False], [False, True]]
    """
    fraction = check_number("fraction", fraction, 0, 1, high_open=True)
    flat = np.concatenate([np.abs(np.asarray(a, np.float64)).ravel() for a in arrays])
    keep = flat.size - int(round(fraction * flat.size))
    chosen = np.zeros(flat.size, bool)
    chosen[np.argsort(-flat, kind="stable")[:keep]] = True
    bounds = np.cumsum([0] + [np.size(a) for a in arrays])
    return [chosen[a:b].reshape(np.shape(arr)) for a, b, arr in
            zip(bounds[:-1], bounds[1:], arrays)]


# --- DP-FedAvg (McMahan et al. 2018) ---


def clip_update(update, clip_norm):
    """Scale a list of arrays so that their joint L2 norm is at most `clip_norm`.

    Args:
        update: A list of NumPy arrays (a client's model update, weights minus global).
        clip_norm: The bound C > 0.

    Returns:
        `(clipped, norm)`: float64 arrays of norm min(norm, C), and the norm before clipping.

    Example:
        >>> clipped, norm = clip_update([np.array([3.0]), np.array([4.0])], 1.0)
        >>> norm, [round(float(a[0]), 6) for a in clipped]
        (5.0, [0.6, 0.8])
    """
    clip_norm = check_number("clip_norm", clip_norm, 0, low_open=True)
    arrays = [np.asarray(u, np.float64) for u in update]
    norm = float(np.sqrt(sum(np.sum(a * a) for a in arrays)))
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return [a * scale for a in arrays], norm


class DPFedAvg(StrategyWrapper):
    """DP-FedAvg: clip each client's update to norm C, add Gaussian noise z*C to the sum.

    McMahan et al. (2018)'s algorithm with a fixed denominator. Each answering client's
    update (its weights minus the global weights) is clipped to L2 norm `clip_norm` on the
    client (`client_upload`); the server sums the clipped updates, adds noise drawn from
    N(0, (noise_multiplier * clip_norm)^2) to every coordinate of the sum, and divides by the
    expected number of clients per round, `config.clients_per_round` (q N in the paper). The
    denominator is fixed, not the number that answered, so one client changes the average by
    at most C / m whatever the others do; clients are weighted equally (weighting by example
    counts would let one client's weight grow without bound). The noisy average update is
    added to the global weights; the server learning rate then applies as in FedAvg.

    The guarantee is client-level (user-level) (epsilon, delta)-DP of the sequence of released
    global models, for the epsilon that `epsilon` computes, against anyone who sees them. It
    assumes the server adds the noise honestly; the server still sees each clipped update
    unless secure aggregation hides them.

    It may wrap a pruning strategy whose aggregation is the plain average (`NoPruning`,
    `pruning.GlobalPruning`): clients train under the inner strategy's mask and the noise is
    added only to the coordinates that mask keeps. The mask is computed from earlier released
    models, so using it costs no privacy; an aggregation that needs individual updates (the
    keepers average of `ClientPruning`) has no bounded sensitivity and is refused.

    Args:
        noise_multiplier: z >= 0, the noise standard deviation in units of `clip_norm`
            (0 clips without noise: no privacy, useful as a baseline).
        clip_norm: C > 0, the bound on each client's update norm.
        inner: None (dense FedAvg) or a strategy that aggregates by the plain average.
        report_norms: Clients also upload their update norm before clipping, which the
            server logs in `update_norms` (one list per round). A diagnostic for choosing C:
            the norm is not privatised, so a private deployment would not send it.

    Client half: `client_upload` clips (global weights + clipped update); with
    `report_norms` `client_report` sends the norm. Server half: `round_masks` keeps the round's
    global weights and masks, `aggregate` re-clips, sums, adds the noise and divides.

    Raises:
        TypeError: On a bool or non-number multiplier or clip norm.
        ValueError: On a negative multiplier, a non-positive clip norm, or an inner strategy
            with its own aggregation rule.

    Example:
        >>> dp = DPFedAvg(noise_multiplier=1.0, clip_norm=0.5)
        >>> DPFedAvg(noise_multiplier=-1.0, clip_norm=0.5)
        Traceback (most recent call last):
        ...
        ValueError: noise_multiplier must be a number in [0, inf), got -1.0
    """

    def __init__(self, noise_multiplier, clip_norm, inner=None, report_norms=False):
        self.noise_multiplier = check_number("noise_multiplier", noise_multiplier, 0)
        self.clip_norm = check_number("clip_norm", clip_norm, 0, low_open=True)
        super().__init__(inner)
        if type(self.inner).aggregate is not NoPruning.aggregate:
            raise ValueError(
                f"inner must aggregate by the plain average (e.g. GlobalPruning), got "
                f"{type(self.inner).__name__}, whose aggregation needs individual updates")
        self.report_norms = bool(report_norms)
        self.update_norms = []

    # --- server half
    def start(self, weights, config):
        """Seed the noise from `config.seed`, fix the denominator, reset the logs."""
        self._rng = np.random.default_rng([config.seed, _NOISE_SALT])
        self.denominator = config.clients_per_round
        self.update_norms = []  # per round, the clients' reported norms before clipping
        return self.inner.start(weights, config)

    def round_masks(self, round_num, weights):
        """The inner strategy's masks; the server keeps them and the round's global weights."""
        self._global = [np.asarray(w) for w in weights]
        self._masks = self.inner.round_masks(round_num, weights)
        self.update_norms.append([])
        return self._masks

    def receive(self, round_num, uploads):
        """Log the reported norms (with `report_norms`); then the inner strategy's receive."""
        for upload in uploads:
            if upload.report and "update_norm" in upload.report:
                self.update_norms[-1].append(float(upload.report["update_norm"]))
        self.inner.receive(round_num, uploads)

    def aggregate(self, updates, num_examples):
        """Global weights + (sum of clipped updates + noise) / clients_per_round."""
        total = [np.zeros(g.shape) for g in self._global]
        for weights in updates:  # re-clip in float64: float32 rounding cannot exceed C
            update = [np.asarray(w, np.float64) - g for w, g in zip(weights, self._global)]
            for t, c in zip(total, clip_update(update, self.clip_norm)[0]):
                t += c
        sigma = self.noise_multiplier * self.clip_norm
        masks = self._masks or [None] * len(total)
        for t, m in zip(total, masks):
            noise = self._rng.normal(0.0, sigma, t.shape) if sigma > 0 else 0.0
            t += noise if m is None else np.where(m, noise, 0.0)
        return [(g + t / self.denominator).astype(g.dtype) for g, t in zip(self._global, total)]

    # --- client half
    def _update(self, round_num, client_id, weights, global_weights):
        """The inner strategy's upload minus the global weights, in float64."""
        weights = self.inner.client_upload(round_num, client_id, weights, global_weights)
        return [np.asarray(w, np.float64) - np.asarray(g) for w, g in zip(weights,
                                                                            global_weights)]

    def client_upload(self, round_num, client_id, weights, global_weights):
        """Clip the client's update to `clip_norm` and upload global + clipped update."""
        clipped, _ = clip_update(self._update(round_num, client_id, weights, global_weights),
                                 self.clip_norm)
        return [(np.asarray(g) + c).astype(np.asarray(g).dtype)
                for g, c in zip(global_weights, clipped)]

    def client_report(self, client, weights, upload):
        """With `report_norms`: the update's norm before clipping (merged with inner's)."""
        own = None
        if self.report_norms:
            update = self._update(client.round_num, client.client_id, weights,
                                  client.global_weights)
            own = {"update_norm": np.float64(clip_update(update, self.clip_norm)[1])}
        return self._merged_report(own, client, weights, upload)


@contextlib.contextmanager
def _quiet_absl():
    """Set absl logging to ERROR (dp_accounting warns on stderr) and restore it."""
    from absl import logging as absl_logging

    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(level)


def epsilon(noise_multiplier, num_clients, clients_per_round, num_rounds, delta=1e-5,
            accountant="rdp"):
    """Epsilon of DP-FedAvg at `delta`, from Google's `dp_accounting`.

    The event is `num_rounds` compositions of a Gaussian mechanism (noise multiplier z) on a
    Poisson sample of clients with rate q = clients_per_round / num_clients, under
    add-or-remove-one-client adjacency: the accounting of McMahan et al. (2018) and of the
    TensorFlow Federated DP tutorial. (`run_fedavg` samples exactly m clients without
    replacement; the Poisson figure is the standard approximation for it.)

    Args:
        noise_multiplier: z > 0.
        num_clients: N, the population the clients are sampled from.
        clients_per_round: m, the expected sample per round, 1 <= m <= N.
        num_rounds: T >= 1.
        delta: Target delta in (0, 1).
        accountant: "rdp" (Renyi DP, Mironov 2017) or "pld" (privacy loss distributions,
            tighter: a numerically exact composition up to discretisation).

    Returns:
        Epsilon (a float).

    Raises:
        TypeError: If a count is not an integer or a number is not a number (bools refused).
        ValueError: On out-of-range arguments.

    Example:
        >>> round(epsilon(1.2, 3383, 120, 100), 2)  # the TFF tutorial's setting: about 2
        1.99
        >>> round(epsilon(np.float32(1.2), np.int64(3383), np.int32(120), np.int64(100)), 2)
        1.99
    """
    # the shared validators: NumPy scalars pass as plain values, bools are refused (TypeError)
    from prunefl_lite.validate import check_choice, check_int

    noise_multiplier = check_number("noise_multiplier", noise_multiplier, 0, low_open=True)
    num_clients = check_int("num_clients", num_clients, 1)
    num_rounds = check_int("num_rounds", num_rounds, 1)
    clients_per_round = check_int("clients_per_round", clients_per_round, 1, num_clients)
    delta = check_number("delta", delta, 0, 1, low_open=True, high_open=True)
    check_choice("accountant", accountant, ("rdp", "pld"))
    import dp_accounting

    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            clients_per_round / num_clients, dp_accounting.GaussianDpEvent(noise_multiplier)),
        int(num_rounds))
    with _quiet_absl():
        if accountant == "rdp":
            acc = dp_accounting.rdp.RdpAccountant()
        else:
            acc = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
        acc.compose(event)
        return float(acc.get_epsilon(delta))


# --- Secure aggregation: pairwise masks that cancel in the sum (Bonawitz et al. 2017) ---


def _check_bits(bits):
    return check_int("bits", bits, 8, 62)


def encode_fixed_point(values, scale_bits=16, bits=32):
    """Map floats to integers modulo 2^bits: round(x * 2^scale_bits), two's complement.

    Masks must be uniform over a finite group to hide a value perfectly (a one-time pad), so
    secure aggregation works on integers modulo 2^bits, not on floats.

    Example:
        >>> encode_fixed_point(np.array([1.0, -1.0]), scale_bits=4, bits=8).tolist()
        [16, 240]
    """
    bits = _check_bits(bits)
    scaled = np.round(np.asarray(values, np.float64) * 2.0**scale_bits)
    if np.any(np.abs(scaled) >= 2.0 ** (bits - 1)):
        raise ValueError(f"values must satisfy |x| < 2^{bits - 1 - scale_bits} to fit in "
                         f"{bits} bits, got max |x| = {np.max(np.abs(values))}")
    return scaled.astype(np.int64).astype(np.uint64) % np.uint64(2**bits)


def decode_fixed_point(encoded, scale_bits=16, bits=32):
    """Inverse of `encode_fixed_point` (integers in [2^(bits-1), 2^bits) are negative).

    Example:
        >>> decode_fixed_point(np.array([16, 240], np.uint64), scale_bits=4, bits=8).tolist()
        [1.0, -1.0]
    """
    bits = _check_bits(bits)
    v = np.asarray(encoded, np.uint64).astype(np.int64)
    v = np.where(v >= 2 ** (bits - 1), v - 2**bits, v)
    return v / 2.0**scale_bits


def agree_pair_seeds(client_ids, seed):
    """One shared secret seed per pair of clients (a stand-in for Diffie-Hellman agreement).

    In the protocol each pair derives its seed by key agreement, so the server never knows
    it; here a seeded generator plays that part.

    Returns:
        A dict {(i, j): int} for every pair i < j of `client_ids`.

    Example:
        >>> sorted(agree_pair_seeds([3, 1, 2], seed=0))
        [(1, 2), (1, 3), (2, 3)]
    """
    ids = sorted(int(i) for i in client_ids)
    if len(set(ids)) != len(ids) or len(ids) < 2:
        raise ValueError(f"client_ids must hold at least two distinct ids, got {client_ids!r}")
    rng = np.random.default_rng(seed)
    return {pair: int(rng.integers(2**62)) for pair in itertools.combinations(ids, 2)}


def _pair_mask(pair_seed, size, bits):
    """The pseudo-random mask expanded from a pair's seed, uniform modulo 2^bits."""
    return np.random.default_rng(pair_seed).integers(0, 2**bits, size, dtype=np.uint64)


def masked_upload(encoded, client_id, pair_seeds, bits=32):
    """Client i's upload: its encoded vector + masks of pairs (i, j>i) - masks of (j<i, i).

    Each masked upload alone is uniformly distributed modulo 2^bits, whatever the value;
    in the sum over all clients every pair's mask appears once with + and once with -.

    Example:
        >>> seeds = agree_pair_seeds([0, 1], seed=0)
        >>> a = masked_upload(np.array([5], np.uint64), 0, seeds, bits=8)
        >>> b = masked_upload(np.array([7], np.uint64), 1, seeds, bits=8)
        >>> ((a + b) % 256).tolist()
        [12]
    """
    bits = _check_bits(bits)
    modulus = np.uint64(2**bits)
    out = np.asarray(encoded, np.uint64).ravel() % modulus
    for (i, j), pair_seed in pair_seeds.items():
        if client_id in (i, j):
            mask = _pair_mask(pair_seed, out.size, bits)
            out = (out + mask) % modulus if client_id == i else (out + modulus - mask) % modulus
    return out.reshape(np.shape(encoded))


def secure_sum(uploads, pair_seeds, bits=32):
    """The server's side: sum the masked uploads modulo 2^bits and remove dropped clients' masks.

    `uploads` maps each client that answered to its masked upload. A client that dropped
    after the masks were agreed leaves its pair masks in the survivors' uploads; in the
    protocol the survivors then reveal their Shamir shares of the dropped client's pair
    seeds, so the server can regenerate and remove exactly those masks (and nothing that
    would unmask a survivor). Here the server reads those seeds from `pair_seeds` for the
    dropped clients only.

    Returns:
        The sum of the answering clients' encoded vectors, modulo 2^bits.

    Example:
        >>> seeds = agree_pair_seeds([0, 1, 2], seed=0)
        >>> ups = {k: masked_upload(np.array([k + 1], np.uint64), k, seeds, bits=8)
        ...        for k in (0, 2)}  # client 1 dropped
        >>> int(secure_sum(ups, seeds, bits=8)[0])
        4
    """
    bits = _check_bits(bits)
    if not uploads:
        raise ValueError("uploads must hold at least one client's masked upload, got none")
    modulus = np.uint64(2**bits)
    answered = set(uploads)
    total = sum(np.asarray(u, np.uint64) % modulus for u in uploads.values()) % modulus
    for (i, j), pair_seed in pair_seeds.items():
        if (i in answered) == (j in answered):
            continue  # both answered (the masks cancel) or both dropped (no mask was sent)
        mask = _pair_mask(pair_seed, total.size, bits).reshape(total.shape)
        # i answered alone: it added the mask, so subtract it; j answered alone: add it back
        total = (total + modulus - mask) % modulus if i in answered else (total + mask) % modulus
    return total
