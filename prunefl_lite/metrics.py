"""Metrics a clinician or a fraud analyst reads, as thin wrappers over scikit-learn.

ROC AUC, PR AUC (average precision), sensitivity at a fixed specificity, and the recall of the
rare class. The maths is scikit-learn's; these functions only validate their inputs (binary
labels with both classes present, finite scores of the same length) and pick the operating
point, so that a notebook cannot silently compute an AUC on one class or on swapped arguments.
"""

import numpy as np
from sklearn import metrics as _sk

from prunefl_lite.validate import check_number


def _check_labels(y_true, name="y_true"):
    """Return `y_true` as an int array after checking it is 1-d, binary, with both classes."""
    y = np.asarray(y_true)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array of 0/1 labels, got shape {y.shape}")
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"{name} must hold only 0 and 1, got values {sorted(values)[:5]}")
    if values != {0, 1}:
        raise ValueError(f"{name} must hold both classes 0 and 1, got only {sorted(values)}")
    return y.astype(np.int64)


def _check_scores(y, scores, name="scores"):
    """Return `scores` as a float array after checking shape and finiteness."""
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != y.shape:
        raise ValueError(f"{name} must have one value per label, shape {y.shape}, got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} must be finite, got {int(np.sum(~np.isfinite(s)))} NaN/inf")
    return s


def roc_auc(y_true, scores):
    """Area under the ROC curve: the probability that a random positive outranks a random negative.

    Args:
        y_true: 0/1 labels (1 = the positive class, e.g. malignant), both classes present.
        scores: Higher means more likely positive (a probability or a logit), one per label.

    Returns:
        A float in [0, 1]; 0.5 is chance.

    Raises:
        ValueError: On labels that are not binary with both classes, or misshaped/non-finite scores.

    Example:
        >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])  # 3 of 4 pairs ranked right
        0.75
    """
    y = _check_labels(y_true)
    return float(_sk.roc_auc_score(y, _check_scores(y, scores)))


def pr_auc(y_true, scores):
    """Area under the precision-recall curve, as average precision (scikit-learn's estimator).

    Unlike ROC AUC it depends on the positive rate: a random scorer gets about the fraction
    of positives, so it is the curve to read when positives are rare (fraud).

    Args:
        y_true: 0/1 labels, both classes present (1 = the rare positive class).
        scores: Higher means more likely positive, one per label.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: As `roc_auc`.

    Example:
        >>> pr_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])  # (1/1 + 2/3) / 2
        0.8333...
    """
    y = _check_labels(y_true)
    return float(_sk.average_precision_score(y, _check_scores(y, scores)))


def sensitivity_at_specificity(y_true, scores, specificity=0.95):
    """Largest sensitivity (true-positive rate) of any threshold whose specificity is at least this.

    This is the operating point a screening programme fixes: "we accept at most 5 % false
    alarms among healthy patients; how many cancers do we catch?". Read off scikit-learn's
    ROC curve (every threshold, none dropped).

    Args:
        y_true: 0/1 labels, both classes present (1 = positive, e.g. malignant).
        scores: Higher means more likely positive, one per label.
        specificity: Required true-negative rate, in (0, 1].

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: As `roc_auc`, or if `specificity` is not in (0, 1].

    Example:
        >>> y, s = [0, 0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.9, 0.8, 0.4]
        >>> sensitivity_at_specificity(y, s, specificity=0.75)  # threshold 0.4: 2 of 2 caught
        1.0
        >>> sensitivity_at_specificity(y, s, specificity=1.0)  # no false alarm allowed
        0.0
    """
    specificity = check_number("specificity", specificity, 0, 1, low_open=True)
    y = _check_labels(y_true)
    fpr, tpr, _ = _sk.roc_curve(y, _check_scores(y, scores), drop_intermediate=False)
    return float(tpr[fpr <= 1 - specificity + 1e-12].max())


def rare_class_recall(y_true, y_pred, rare_label=1):
    """Recall of one class: the fraction of its examples that are predicted as it.

    For fraud this is the share of frauds caught at the model's decision (e.g. the argmax of
    its outputs); Hooker et al. (2019) found that pruning costs such rare cases more than the
    overall accuracy shows.

    Args:
        y_true: Integer labels (any number of classes); `rare_label` must occur.
        y_pred: Predicted labels, one per example.
        rare_label: The class whose recall is returned.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: On misshaped inputs or a `rare_label` absent from `y_true`.

    Example:
        >>> rare_class_recall([0, 0, 0, 1, 1], [0, 0, 1, 1, 0])
        0.5
    """
    y, p = np.asarray(y_true), np.asarray(y_pred)
    if y.ndim != 1 or len(y) == 0 or p.shape != y.shape:
        raise ValueError(f"y_true and y_pred must be non-empty 1-d arrays of the same shape, "
                         f"got {y.shape} and {p.shape}")
    if not np.any(y == rare_label):
        raise ValueError(f"rare_label must occur in y_true, got {rare_label!r}")
    return float(_sk.recall_score(y == rare_label, p == rare_label))
