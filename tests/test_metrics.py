"""Unit tests of prunefl_lite.metrics: hand-checked tiny cases and one test per validation rule."""

import numpy as np
import pytest

import prunefl_lite as pfl
from prunefl_lite import metrics

Y = np.array([0, 0, 0, 0, 1, 1])
S = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.4])


def test_roc_auc_counts_correctly_ranked_pairs():
    # pairs (positive, negative) ranked right: 0.8 beats 0.1, 0.2, 0.3 (not 0.9); 0.4 beats 3
    assert metrics.roc_auc(Y, S) == pytest.approx(6 / 8)


def test_roc_auc_perfect_and_reversed():
    assert metrics.roc_auc([0, 1], [0.2, 0.7]) == 1.0
    assert metrics.roc_auc([0, 1], [0.7, 0.2]) == 0.0


def test_roc_auc_ties_count_half():
    assert metrics.roc_auc([0, 1], [0.5, 0.5]) == 0.5


def test_pr_auc_is_average_precision():
    # ranking 0.9 (neg), 0.8 (pos: precision 1/2), 0.4 (pos: precision 2/3); recall steps of 1/2
    assert metrics.pr_auc(Y, S) == pytest.approx(0.5 * (1 / 2) + 0.5 * (2 / 3))


def test_pr_auc_of_a_constant_score_is_the_positive_rate():
    y = np.array([0] * 9 + [1])
    assert metrics.pr_auc(y, np.zeros(10)) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "specificity, expected",
    [(1.0, 0.0),  # threshold above 0.9: nothing flagged
     (0.75, 1.0),  # threshold 0.4: one false alarm of four, both positives caught
     (0.9, 0.0)],  # 0.75 specificity is not enough for 0.9
)
def test_sensitivity_at_specificity_hand_checked(specificity, expected):
    assert metrics.sensitivity_at_specificity(Y, S, specificity) == expected


def test_sensitivity_at_specificity_separable_scores():
    assert metrics.sensitivity_at_specificity([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0) == 1.0


def test_sensitivity_grows_as_specificity_is_relaxed():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = y + rng.normal(0, 1, 200)
    values = [metrics.sensitivity_at_specificity(y, s, q) for q in (0.99, 0.95, 0.8, 0.5)]
    assert values == sorted(values) and values[0] < values[-1]


def test_rare_class_recall_hand_checked():
    assert metrics.rare_class_recall([0, 0, 0, 1, 1], [0, 0, 1, 1, 0]) == 0.5
    assert metrics.rare_class_recall([2, 2, 1], [2, 0, 1], rare_label=2) == 0.5


def test_package_exposes_the_module():
    assert pfl.metrics is metrics


@pytest.mark.parametrize(
    "y_true, match",
    [([], "non-empty 1-d"),
     ([[0, 1]], "non-empty 1-d"),
     ([0, 2], "only 0 and 1"),
     ([1, 1], "both classes"),
     ([0, 0], "both classes")],
)
@pytest.mark.parametrize("function", [metrics.roc_auc, metrics.pr_auc,
                                      metrics.sensitivity_at_specificity])
def test_labels_are_validated(function, y_true, match):
    scores = np.zeros(np.asarray(y_true).shape[-1] if np.asarray(y_true).size else 0)
    with pytest.raises(ValueError, match=f"y_true must .*{match}"):
        function(y_true, scores)


@pytest.mark.parametrize(
    "scores, match",
    [([0.1, 0.2, 0.3], "one value per label"),
     ([0.1, np.nan], "finite"),
     ([0.1, np.inf], "finite")],
)
@pytest.mark.parametrize("function", [metrics.roc_auc, metrics.pr_auc,
                                      metrics.sensitivity_at_specificity])
def test_scores_are_validated(function, scores, match):
    with pytest.raises(ValueError, match=f"scores must .*{match}"):
        function([0, 1], scores)


@pytest.mark.parametrize("specificity, error", [
    (0, ValueError), (-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError),
    (np.float32(1.5), ValueError), (True, TypeError), ("0.9", TypeError)])
def test_specificity_is_validated(specificity, error):
    with pytest.raises(error, match=r"specificity must be a number in \(0, 1\]"):
        metrics.sensitivity_at_specificity([0, 1], [0.1, 0.9], specificity)


@pytest.mark.parametrize("specificity", [np.float32(0.75), np.float64(0.75), 0.75])
def test_specificity_accepts_numpy_scalars(specificity):
    y, s = [0, 0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.9, 0.8, 0.4]
    assert metrics.sensitivity_at_specificity(y, s, specificity) == 1.0


@pytest.mark.parametrize(
    "y_true, y_pred, rare_label, match",
    [([], [], 1, "non-empty 1-d"),
     ([0, 1], [0], 1, "same shape"),
     ([0, 0], [0, 1], 1, "rare_label must occur")],
)
def test_rare_class_recall_is_validated(y_true, y_pred, rare_label, match):
    with pytest.raises(ValueError, match=match):
        metrics.rare_class_recall(y_true, y_pred, rare_label)
