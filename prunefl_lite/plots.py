"""Matplotlib helpers for the chapters; each returns `(fig, ax)` and labels axes with units."""

import matplotlib.pyplot as plt
import numpy as np

METRIC_LABELS = {
    "accuracy": "test accuracy (fraction)",
    "loss": "test loss (cross-entropy, nats)",
    "sparsity": "kernel sparsity (fraction of zeros)",
    "bytes_up": "bytes uploaded per round",
    "bytes_down": "bytes downloaded per round",
    "seconds": "wall time per round (s)",
}


def _axes(ax, figsize=(6, 3.5)):
    """Use the given axes or make a new figure."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def plot_label_counts(counts, ax=None, title="Examples per class on each client", legend=True):
    """Stacked bars: how many examples of each class every client holds.

    Args:
        counts: Array (num_clients, num_classes), e.g. from `data.label_counts`.
        ax: Axes to draw on (default: a new figure).
        title: Axes title.
        legend: Draw the class legend (turn off on all but one panel of a multi-panel figure).

    Returns:
        `(fig, ax)`: the matplotlib Figure and Axes (x: client index, y: examples).

    Example:
        >>> fig, ax = plot_label_counts(np.array([[3, 1], [0, 4]]))
        >>> ax.get_xlabel()
        'client'
    """
    fig, ax = _axes(ax)
    counts = np.asarray(counts)
    bottom = np.zeros(len(counts))
    colors = plt.cm.tab10(np.arange(counts.shape[1]) % 10)
    for c in range(counts.shape[1]):
        ax.bar(np.arange(len(counts)), counts[:, c], bottom=bottom, color=colors[c], label=str(c))
        bottom += counts[:, c]
    ax.set(xlabel="client", ylabel="examples", title=title)
    if legend:
        ax.legend(title="class", fontsize="x-small", ncol=2, bbox_to_anchor=(1.0, 1.0))
    return fig, ax


def plot_histories(histories, metric="accuracy", x="round", ax=None, title=None):
    """One line per run: a metric against rounds or against cumulative uploaded bytes.

    Args:
        histories: Dict {label: History}.
        metric: A `History` metric name.
        x: "round", or "bytes_up" to plot against cumulative uploaded megabytes.
        ax: Axes to draw on.
        title: Axes title.

    Returns:
        `(fig, ax)`: the matplotlib Figure and Axes; a fraction metric such as accuracy is
        plotted as it is stored (label from `METRIC_LABELS`).

    Raises:
        ValueError: If `x` is neither "round" nor "bytes_up".

    Example:
        >>> from prunefl_lite.history import History
        >>> rounds = [{"accuracy": 0.5, "bytes_up": 10}, {"accuracy": 0.7, "bytes_up": 9}]
        >>> h = History(rounds=rounds)
        >>> fig, ax = plot_histories({"dense": h}, x="bytes_up")
        >>> ax.get_xlabel()
        'cumulative bytes uploaded (MB)'
    """
    if x not in ("round", "bytes_up"):
        raise ValueError(f"x must be one of 'round', 'bytes_up', got {x!r}")
    fig, ax = _axes(ax)
    for label, history in histories.items():
        values = np.array(history.metric(metric), dtype=float)
        if x == "round":
            xs = np.arange(1, len(values) + 1)
        else:
            xs = np.cumsum(history.metric("bytes_up")) / 1e6
        ax.plot(xs, values, label=label)
    xlabel = "round" if x == "round" else "cumulative bytes uploaded (MB)"
    ax.set(xlabel=xlabel, ylabel=METRIC_LABELS.get(metric, metric), title=title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig, ax
