"""Unstructured magnitude pruning from scratch (NumPy): masks, applying them, counting zeros."""

import numpy as np

from prunefl_lite.validate import check_choice, check_fraction

__all__ = ["apply_masks", "kernel_sparsity", "magnitude_masks", "sparsity"]


def _check_weights(weights, name="weights", finite=True):
    """Return `weights` as a list after checking it is a non-empty list of numeric arrays."""
    if not isinstance(weights, (list, tuple)) or not weights:
        raise (ValueError if isinstance(weights, (list, tuple)) else TypeError)(
            f"{name} must be a non-empty list of NumPy arrays, got {weights!r:.60}"
        )
    for i, w in enumerate(weights):
        if not isinstance(w, np.ndarray) or w.dtype.kind not in "biuf":
            kind = w.dtype if isinstance(w, np.ndarray) else type(w).__name__
            raise TypeError(f"{name}[{i}] must be a numeric NumPy array, got {kind}")
        if finite and not np.isfinite(w).all():
            bad = int(w.size - np.isfinite(w).sum())
            raise ValueError(f"{name}[{i}] must be finite, got {bad} NaN/inf values")
    return list(weights)


def _check_prunable(prunable, weights):
    """Return one bool per array: `prunable` checked, or kernels (ndim >= 2) by default."""
    if prunable is None:
        return [w.ndim >= 2 for w in weights]
    if not isinstance(prunable, (list, tuple)) or len(prunable) != len(weights):
        got = len(prunable) if isinstance(prunable, (list, tuple)) else repr(prunable)
        raise ValueError(
            f"prunable must have one entry per array of weights ({len(weights)}), got {got}"
        )
    for i, p in enumerate(prunable):
        if not isinstance(p, (bool, np.bool_)):
            raise TypeError(f"prunable[{i}] must be a bool, got {p!r}")
    return [bool(p) for p in prunable]



def _prune_smallest(arrays, fraction):
    """Masks (True = keep) pruning the round(fraction * n) smallest |w| of `arrays` ranked together.

    A stable sort ranks the magnitudes, so among equal magnitudes the lower flat index (arrays in
    order, each in C order) is pruned first: ties are deterministic.
    """
    flat = np.concatenate([np.abs(a).ravel() for a in arrays]) if arrays else np.zeros(0)
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argsort(flat, kind="stable")[: round(fraction * flat.size)]] = False
    pieces = np.split(keep, np.cumsum([a.size for a in arrays])[:-1])
    return [piece.reshape(a.shape) for piece, a in zip(pieces, arrays, strict=True)]


def magnitude_masks(weights, sparsity, scope="global", prunable=None):
    """Magnitude-pruning masks (True = keep) that prune exactly round(sparsity * n) weights.

    Weights are ranked by ABSOLUTE value, so -5 outranks 0.1 (the articles' rule
    ``weights * (weights > threshold)`` deletes every negative weight). Ties are broken by a
    stable sort: among equal magnitudes the lower flat index is pruned first. Already-zero weights
    have the smallest magnitude, so they go first and masks are nested as sparsity grows.

    Args:
        weights: List of NumPy arrays, e.g. ``model.get_weights()``.
        sparsity: Fraction of the prunable weights to prune, in [0, 1).
        scope: "global" ranks all prunable weights together (n = their total count);
            "layer" prunes round(sparsity * size) weights of each prunable array separately.
        prunable: One bool per array saying which may be pruned; default: arrays with
            ndim >= 2 (kernels), so biases are left alone. Other arrays get all-True masks.

    Returns:
        A list of boolean arrays shaped like `weights`.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If `sparsity`, `scope`, `prunable` or the weights' values are invalid.

    Example:
        >>> kernel, bias = np.array([[-5.0, 0.1], [0.3, -0.2]]), np.array([0.0, 1.0])
        >>> magnitude_masks([kernel, bias], 0.5)
        [array([[ True, False], [ True, False]]), array([ True,  True])]
    """
    weights = _check_weights(weights)
    check_fraction("sparsity", sparsity)
    check_choice("scope", scope, ("global", "layer"))
    prunable = _check_prunable(prunable, weights)
    if scope == "layer":
        return [
            _prune_smallest([w], sparsity)[0] if p else np.ones(w.shape, dtype=bool)
            for w, p in zip(weights, prunable, strict=True)
        ]
    pruned = iter(
        _prune_smallest([w for w, p in zip(weights, prunable, strict=True) if p], sparsity)
    )
    return [
        next(pruned) if p else np.ones(w.shape, dtype=bool)
        for w, p in zip(weights, prunable, strict=True)
    ]


def apply_masks(weights, masks):
    """Zero the weights whose mask entry is False (or 0); return new arrays of the same dtypes.

    Args:
        weights: List of NumPy arrays.
        masks: One array per weight array with the same shape; nonzero/True means keep.

    Returns:
        A list of new arrays; pruned entries are +0.0.

    Example:
        >>> apply_masks([np.array([-5.0, 0.1])], [np.array([True, False])])
        [array([-5.,  0.])]
    """
    weights = _check_weights(weights, finite=False)
    masks = _check_masks(masks, weights)
    return [np.where(m, w, np.zeros_like(w)) for w, m in zip(weights, masks, strict=True)]


def _check_masks(masks, weights):
    """Return `masks` as bool arrays after checking there is one per array, with its shape."""
    if not isinstance(masks, (list, tuple)) or len(masks) != len(weights):
        got = len(masks) if isinstance(masks, (list, tuple)) else repr(masks)
        raise ValueError(
            f"masks must have one entry per array of weights ({len(weights)}), got {got}"
        )
    masks = [np.asarray(m) != 0 for m in masks]
    for i, (w, m) in enumerate(zip(weights, masks, strict=True)):
        if m.shape != w.shape:
            raise ValueError(
                f"masks[{i}] must have shape {w.shape} like weights[{i}], got {m.shape}"
            )
    return masks


def sparsity(weights):
    """Fraction of exact zeros over all entries of a list of arrays.

    Example:
        >>> sparsity([np.array([0.0, 1.0]), np.array([[0.0, 0.0], [2.0, 3.0]])])
        0.5
    """
    weights = _check_weights(weights, finite=False)
    total = sum(w.size for w in weights)
    if total == 0:
        raise ValueError("weights must hold at least one entry, got only empty arrays")
    return float(sum(w.size - np.count_nonzero(w) for w in weights) / total)



def kernel_sparsity(weights):
    """Fraction of exact zeros in the kernels (arrays with ndim >= 2): History's "sparsity".

    Biases and other 1-D arrays (BatchNorm parameters and statistics) are left out, so the
    figure is the sparsity of what magnitude pruning prunes.

    Args:
        weights: A list of NumPy arrays.

    Returns:
        A float in [0, 1]; 0.0 when there is no kernel.

    Example:
        >>> kernel_sparsity([np.array([[0.0, 1.0], [0.0, 2.0]]), np.zeros(2)])  # bias ignored
        0.5
    """
    kernels = [w for w in weights if np.ndim(w) >= 2]
    total = sum(w.size for w in kernels)
    return float(sum(np.count_nonzero(w == 0) for w in kernels) / total) if total else 0.0
