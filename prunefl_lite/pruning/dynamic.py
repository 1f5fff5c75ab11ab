"""Dynamic sparse federated training: sparse from round 1, a server-side prune-and-regrow.

`DynamicPruning` never sends a dense model. The server draws a mask at the target sparsity
before round 1 (per-layer densities Erdos-Renyi-kernel, Evci et al. 2020); clients train under
it. Every `regrow_every` rounds each client also reports, for the pruned positions where the
gradient of its local loss is largest, those gradients (a sparse payload, uploaded beside its
weights); the server drops the smallest kept weights of each layer and regrows as many pruned
positions with the largest mean reported gradient, so each layer's density stays fixed. That
is RigL's criterion (Evci et al. 2020) applied by the server to client gradient reports, close
to PruneFL's client-reported importance (Jiang et al. 2022). It is not FedDST (Bibikar et al.
2022), where each client readjusts its own mask (magnitude prune, gradient regrow on its data)
and the server merges the clients' masks by votes and re-prunes. The number swapped decays to
zero on a cosine schedule, and the last rounds train under a fixed mask.

The reports reveal gradient entries at pruned positions: for a client with one example, the
first Dense layer's gradient is the outer product of the input and the output error, so its
reports give the input up to scale at the reported positions.
"""

import math

import numpy as np

from prunefl_lite.server import weighted_average
from prunefl_lite.strategy import NoPruning
from prunefl_lite.validate import check_choice, check_fraction, check_int, check_number

__all__ = ["DynamicPruning", "ServerOptimizer", "erk_densities"]


def erk_densities(shapes, target_sparsity):
    """Per-kernel densities of the Erdos-Renyi-kernel rule at an overall sparsity.

    Density of a kernel is proportional to sum(shape) / prod(shape) (small layers stay
    denser), scaled so that the kernels keep `(1 - target_sparsity)` of their weights in
    total; a kernel whose density would exceed 1 stays dense and the rest are rescaled
    (Evci et al. 2020, "Rigging the Lottery").

    Args:
        shapes: Kernel shapes (tuples of ints, each with >= 2 dimensions).
        target_sparsity: Overall fraction of zeros, in [0, 1).

    Returns:
        A list of floats in (0, 1], one per shape.

    Raises:
        ValueError: If `target_sparsity` is outside [0, 1) or `shapes` is empty.

    Example:
        >>> [round(d, 3) for d in erk_densities([(64, 200), (200, 200), (200, 10)], 0.9)]
        [0.129, 0.063, 0.658]
    """
    check_fraction("target_sparsity", target_sparsity)
    if len(shapes) == 0:
        raise ValueError("shapes must hold at least one kernel shape, got none")
    sizes = np.array([math.prod(s) for s in shapes], np.float64)
    raw = np.array([sum(s) / math.prod(s) for s in shapes], np.float64)
    dense = np.zeros(len(shapes), bool)
    while not dense.all():
        budget = (1 - target_sparsity) * sizes.sum() - sizes[dense].sum()
        scale = budget / (raw[~dense] * sizes[~dense]).sum()
        density = np.where(dense, 1.0, raw * scale)
        if not np.any(density > 1.0):
            return [float(d) for d in density]
        dense |= density > 1.0
    return [1.0] * len(shapes)


def cosine_fraction(round_num, initial, end_round):
    """RigL's cosine decay: `initial` at round 0, 0 at `end_round` and after."""
    if round_num >= end_round:
        return 0.0
    return initial * (1 + math.cos(math.pi * round_num / end_round)) / 2


class DynamicPruning(NoPruning):
    """Sparse federated training from round 1; the server drops and regrows by client reports.

    Before round 1 the server keeps, per kernel, an ERK share of its weights (random positions
    from the run's seed) so that the kernels are `target_sparsity` sparse; biases stay dense.
    Every round both directions send only the kept values (and the positions to a client that
    does not hold the current mask). In a regrowth round r (every `regrow_every` rounds before
    `end_fraction` of the run) each client computes the gradient of its local loss (all its
    examples, at its trained weights) and reports the `report_factor * n` pruned positions of
    each kernel with the largest |gradient| and their gradients, where n = a(r) * kept and
    a(r) decays from `regrow_fraction` to 0 on a cosine. The server drops the n smallest kept
    weights of each kernel and regrows the n pruned positions with the largest |mean reported
    gradient| (weighted by the clients' example counts), initialised at one SGD step from
    zero (-learning_rate * mean gradient), so the new positions are non-zero and the payload
    carries them.

    Client half: in a regrowth round the broadcast's instructions say how many positions of
    each kernel to report (`report_counts`); the client computes the gradient on its own
    examples and uploads the report beside its weights. The server never holds client data.
    The reports are counted in the history's `bytes_up` (and shown in `bytes_report`);
    `signal_bytes` holds the server's log of them per round, `total_signal_bytes()` their sum
    (already part of `bytes_up`: do not add it again). A `ServerOptimizer` (FedAvgM or
    FedAdam) may replace the plain average by a server step (keep
    `FedConfig.server_learning_rate` at 1: the round loop applies it after this step); with
    `target_sparsity=0` and `regrow_fraction=0` this class is dense FedAvg with that server
    optimiser (the honest baseline for it).
    Kept weights start at their initial values times 1/sqrt(density) (`rescale`), so a unit's
    pre-activation has the variance of the dense initialisation; without it the 90 %-sparse
    2NN barely trains.

    A sparse model learns more slowly per round than a dense one, so without a server
    optimiser (or without regrowth) it ends lower; `tests/benchmarks/bench_fl_pruning.py`
    measures the gap to dense FedAdam and the bytes. The defaults (half the kept weights
    swappable at first, every 5 rounds, mask fixed after 75 % of the rounds) were chosen on
    validation accuracy among a handful of settings that were all within seed noise.

    Args:
        target_sparsity: Fraction of zeros in the kernels (arrays with >= 2 dims), in [0, 1).
        regrow_every: Rounds between mask updates, >= 1.
        regrow_fraction: Fraction of each kernel's kept weights swapped at round 0 of the
            cosine, in [0, 1); 0 trains under the initial mask throughout.
        end_fraction: Fraction of the rounds after which the mask is fixed, in (0, 1].
        report_factor: A client reports `report_factor` times as many positions as are regrown.
        server_optimizer: None (plain FedAvg average) or a `ServerOptimizer`.
        distribution: "erk" or "uniform" (every kernel at `target_sparsity`).
        rescale: Multiply the kept initial weights of each kernel by 1/sqrt(density).
        density_scaling: Server step of each kernel times density ** -density_scaling,
            in [0, 1] (0: no scaling).

    Raises:
        TypeError: On an argument of the wrong type.
        ValueError: On an argument out of range.

    Example:
        >>> strategy = DynamicPruning(0.9, regrow_fraction=0.0)
        >>> weights = [np.ones((64, 200), np.float32), np.zeros(200, np.float32)]
        >>> class Config: num_rounds, seed, learning_rate = 10, 0, 0.05
        >>> masked = strategy.start(weights, Config)
        >>> round(float(np.mean(masked[0] == 0)), 3), bool(np.all(masked[1] == 0))
        (0.9, True)
    """

    masked = True

    def __init__(self, target_sparsity, regrow_every=5, regrow_fraction=0.5, end_fraction=0.75,
                 report_factor=2, server_optimizer=None, distribution="erk", rescale=True,
                 density_scaling=0.0):
        check_fraction("target_sparsity", target_sparsity)
        check_int("regrow_every", regrow_every, 1)
        check_fraction("regrow_fraction", regrow_fraction)
        check_number("end_fraction", end_fraction, 0, 1, low_open=True)
        check_int("report_factor", report_factor, 1)
        if server_optimizer is not None and not isinstance(server_optimizer, ServerOptimizer):
            raise TypeError("server_optimizer must be None or a ServerOptimizer, "
                            f"got {type(server_optimizer).__name__}")
        check_choice("distribution", distribution, ("erk", "uniform"))
        self.target_sparsity = target_sparsity
        self.regrow_every, self.regrow_fraction = regrow_every, regrow_fraction
        self.end_fraction, self.report_factor = end_fraction, report_factor
        self.server_optimizer, self.distribution = server_optimizer, distribution
        self.rescale = bool(rescale)
        self.density_scaling = check_number("density_scaling", density_scaling, 0, 1)

    # ----------------------------------------------------------------- run state
    def start(self, weights, config):
        """Draw the initial mask; return the masked initial weights."""
        self.num_rounds, self.learning_rate = config.num_rounds, config.learning_rate
        self.end_round = max(1, round(self.end_fraction * config.num_rounds))
        self.signal_bytes, self.swapped = {}, {}
        if self.server_optimizer is not None:
            self.server_optimizer.reset()
        self._kernels = [i for i, w in enumerate(weights) if np.ndim(w) >= 2]
        rng = np.random.default_rng([config.seed, 16])
        self.masks = self._initial_masks(weights, rng)
        return self._apply(self._rescaled(weights) if self.rescale else weights)

    def _rescaled(self, weights):
        """Kernels times 1/sqrt(density): a unit's input variance as in the dense init."""
        return [w if m is None else (w / np.sqrt(m.mean())).astype(w.dtype)
                for w, m in zip(weights, self.masks)]

    def _initial_masks(self, weights, rng):
        """Random positions at each kernel's density (ERK or uniform); None for other arrays."""
        shapes = [weights[i].shape for i in self._kernels]
        if self.distribution == "erk":
            densities = erk_densities(shapes, self.target_sparsity)
        else:
            densities = [1 - self.target_sparsity] * len(shapes)
        masks = [None] * len(weights)
        for i, density in zip(self._kernels, densities):
            size = weights[i].size
            keep = rng.permutation(size) < round(density * size)
            masks[i] = keep.reshape(weights[i].shape)
        return masks

    def _apply(self, weights):
        """Weights with exact +0.0 wherever the mask is False."""
        return [w if m is None else np.where(m, w, 0).astype(w.dtype)
                for w, m in zip(weights, self.masks)]

    def total_signal_bytes(self):
        """All regrowth reports sent so far (bytes, every client and round)."""
        return int(sum(self.signal_bytes.values()))

    # ----------------------------------------------------------------- hooks
    def round_masks(self, round_num, weights):
        """A copy of the current mask list (the round loop keeps it as what clients hold)."""
        self._global = weights  # the server optimiser steps from here
        if self.regrowth_round(round_num):
            self._reports = [np.zeros(weights[i].shape, np.float64) for i in self._kernels]
            self._report_weight = 0.0
        return list(self.masks)

    def regrowth_round(self, round_num):
        """Whether clients report and the server updates the mask in this round."""
        return (self.regrow_fraction > 0 and round_num % self.regrow_every == 0
                and round_num < min(self.end_round, self.num_rounds))

    def client_instructions(self, round_num):
        """In a regrowth round, how many positions of each array a client reports."""
        if not self.regrowth_round(round_num):
            return {}
        counts = [0] * len(self.masks)
        for i in self._kernels:
            counts[i] = self.report_factor * self.swap_count(round_num, int(self.masks[i].sum()))
        return {"report_counts": counts}

    def client_report(self, client, weights, upload):
        """Client half: the largest |gradients| of its own loss at pruned positions.

        Uses only what the broadcast brought (masks, `report_counts`) and the client's own
        data (`client.gradients`); returns {"k<i>": array of kernel i's shape, zero except at
        the reported positions}, or None outside regrowth rounds.
        """
        counts = client.instructions.get("report_counts")
        if not counts:
            return None
        grads = client.gradients(weights)
        report = {}
        for i, (k, mask) in enumerate(zip(counts, client.masks)):
            if k <= 0 or mask is None:
                continue
            g = np.where(mask, 0.0, grads[i]).ravel()
            top = np.argpartition(-np.abs(g), min(k, g.size - 1))[:k]
            sent = np.zeros(g.size, np.float32)
            sent[top] = g[top]
            report[f"k{i}"] = sent.reshape(mask.shape)
        return report

    def receive(self, round_num, uploads):
        """Server half: add the clients' reports, weighted by their example counts."""
        if not self.regrowth_round(round_num):
            return
        for upload in uploads:
            if not upload.report:
                continue
            for j, i in enumerate(self._kernels):
                if f"k{i}" in upload.report:
                    self._reports[j] += upload.num_examples * upload.report[f"k{i}"]
            self._report_weight += upload.num_examples
            self.signal_bytes[round_num] = (self.signal_bytes.get(round_num, 0)
                                            + _report_bytes(upload.report))

    def aggregate(self, updates, num_examples):
        """FedAvg's weighted average, then the server optimiser's step (if any), masked."""
        average = weighted_average(updates, num_examples)
        if self.density_scaling:
            average = [g + (a - g) * self._scale(i) for i, (a, g)
                       in enumerate(zip(average, self._global))]
        if self.server_optimizer is None:
            return average
        return self._apply(self.server_optimizer.step(self._global, average, self.masks))

    def _scale(self, i):
        """Server step multiplier of array i: density ** -density_scaling (1 for biases)."""
        if self.masks[i] is None:
            return 1.0
        return float(self.masks[i].mean()) ** -self.density_scaling

    def finish_round(self, round_num, weights):
        """Keep the mask's zeros exact; in a regrowth round, drop and regrow."""
        weights = self._apply(weights)
        if self.regrowth_round(round_num) and self._report_weight > 0:
            weights = self._regrow(round_num, weights)
        return weights

    # ----------------------------------------------------------------- regrowth
    def swap_count(self, round_num, kept):
        """How many of `kept` weights a kernel swaps in regrowth round `round_num`."""
        return int(cosine_fraction(round_num, self.regrow_fraction, self.end_round) * kept)

    def _regrow(self, round_num, weights):
        """Drop the n smallest kept weights of each kernel, regrow n reported positions."""
        weights, self.masks = list(weights), list(self.masks)  # never edit a list handed out
        self.swapped[round_num] = 0
        for j, i in enumerate(self._kernels):
            mean_grad = self._reports[j] / self._report_weight
            mask, w = self.masks[i].ravel().copy(), weights[i].ravel().copy()
            candidates = np.flatnonzero(~mask & (mean_grad.ravel() != 0))
            n = min(self.swap_count(round_num, int(mask.sum())), candidates.size)
            if n == 0:
                continue
            kept = np.flatnonzero(mask)
            drop = kept[np.argsort(np.abs(w[kept]), kind="stable")[:n]]
            grow = candidates[np.argsort(-np.abs(mean_grad.ravel()[candidates]),
                                         kind="stable")[:n]]
            mask[drop], mask[grow] = False, True
            w[drop] = 0.0
            w[grow] = -self.learning_rate * mean_grad.ravel()[grow]
            self.masks[i] = mask.reshape(self.masks[i].shape)
            weights[i] = w.reshape(weights[i].shape).astype(weights[i].dtype)
            self.swapped[round_num] += n
        return weights



def _report_bytes(report):
    """Bytes of a report as it travels (`round.report_payload`)."""
    from prunefl_lite.round import report_payload

    names, payload = report_payload(report)
    return len(names) + len(payload)


class ServerOptimizer:
    """A server optimiser on the clients' mean update (Reddi et al. 2021, "Adaptive FedOpt").

    The server treats delta = average - global as a pseudo-gradient (negated) and steps:
    "sgd" is FedAvgM (Hsu et al. 2019): v = momentum v + delta, global += learning_rate v;
    "adam" is FedAdam: m = momentum m + (1 - momentum) delta, s = beta2 s + (1 - beta2)
    delta^2, global += learning_rate m / (sqrt(s) + tau). State is kept per weight; where a
    mask is False the state is reset to zero (a regrown weight starts fresh).

    Args:
        name: "sgd" or "adam".
        learning_rate: Server learning rate, > 0.
        momentum: FedAvgM's momentum or FedAdam's beta1, in [0, 1).
        beta2: FedAdam's second-moment decay, in [0, 1).
        tau: FedAdam's adaptivity, > 0.

    Example:
        >>> opt = ServerOptimizer("sgd", momentum=0.5)
        >>> g = [np.zeros(2)]
        >>> g = opt.step(g, [np.ones(2)], [None]); g = opt.step(g, [g[0] + 1], [None])
        >>> g[0].tolist()  # steps 1, then 0.5 * 1 + 1
        [2.5, 2.5]
    """

    def __init__(self, name="sgd", learning_rate=1.0, momentum=0.9, beta2=0.99, tau=1e-3):
        check_choice("name", name, ("sgd", "adam"))
        check_number("learning_rate", learning_rate, 0, low_open=True)
        check_fraction("momentum", momentum)
        check_fraction("beta2", beta2)
        check_number("tau", tau, 0, low_open=True)
        self.name, self.learning_rate, self.momentum = name, learning_rate, momentum
        self.beta2, self.tau = beta2, tau
        self.reset()

    def reset(self):
        """Forget the state (a new run)."""
        self._m = self._s = None

    def step(self, global_weights, average, masks):
        """The new global weights from the old ones and the clients' weighted average."""
        delta = [np.asarray(a, np.float64) - g for a, g in zip(average, global_weights)]
        if self._m is None:
            self._m = [np.zeros_like(d) for d in delta]
            self._s = [np.zeros_like(d) for d in delta]
        out = []
        for j, (g, d, mask) in enumerate(zip(global_weights, delta, masks)):
            keep = 1.0 if mask is None else mask
            if self.name == "sgd":
                self._m[j] = (self.momentum * self._m[j] + d) * keep
                step = self._m[j]
            else:
                self._m[j] = (self.momentum * self._m[j] + (1 - self.momentum) * d) * keep
                self._s[j] = (self.beta2 * self._s[j] + (1 - self.beta2) * d * d) * keep
                step = self._m[j] / (np.sqrt(self._s[j]) + self.tau)
            out.append((g + self.learning_rate * step).astype(np.asarray(g).dtype))
        return out
