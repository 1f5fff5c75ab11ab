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


def plot_band(histories, metric="accuracy", label=None, ax=None, scale=100.0):
    """Mean of a metric over seeds per round, with a shaded min-max band (the course's spread).

    Args:
        histories: The runs of one setting, one `History` per seed, all with the same rounds.
        metric: A `History` metric name (rounds where it is None are not drawn).
        label: Legend label of the line.
        ax: Axes to draw on (default: a new figure).
        scale: Multiplier of the values (100 shows a fraction such as accuracy in %).

    Returns:
        `(fig, ax)`: the matplotlib Figure and Axes.

    Raises:
        ValueError: If `histories` is empty or the runs have different numbers of rounds.

    Example:
        >>> from prunefl_lite.history import History
        >>> runs = [History(rounds=[{"accuracy": a}, {"accuracy": a + 0.1}]) for a in (0.5, 0.7)]
        >>> fig, ax = plot_band(runs, label="dense")
        >>> [round(float(y), 1) for y in ax.lines[0].get_ydata()]
        [60.0, 70.0]
    """
    runs = [np.array([np.nan if v is None else v for v in h.metric(metric)], float)
            for h in histories]
    if not runs or len({len(r) for r in runs}) != 1:
        raise ValueError("histories must hold at least one run, all with the same number of "
                         f"rounds, got lengths {[len(r) for r in runs]}")
    values = scale * np.stack(runs)
    fig, ax = _axes(ax)
    xs = np.arange(1, values.shape[1] + 1)
    keep = ~np.isnan(values).any(axis=0)
    (line,) = ax.plot(xs[keep], values[:, keep].mean(axis=0), label=label)
    ax.fill_between(xs[keep], values[:, keep].min(axis=0), values[:, keep].max(axis=0),
                    color=line.get_color(), alpha=0.2)
    ylabel = METRIC_LABELS.get(metric, metric)
    if scale == 100:  # a fraction shown in %
        ylabel = ylabel.replace("(fraction)", "(%)").replace("(fraction of zeros)", "(%)")
    ax.set(xlabel="round", ylabel=ylabel)
    return fig, ax
