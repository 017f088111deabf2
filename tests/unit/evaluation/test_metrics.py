"""Classification metrics against scikit-learn, degenerate inputs, bootstrap and evaluation."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from medassist.evaluation import (
    METRIC_NAMES,
    ClassificationMetrics,
    UndefinedMetricWarning,
    bootstrap_ci,
    compute_accuracy,
    compute_brier,
    compute_ece,
    compute_f1,
    compute_pr_auc,
    compute_roc_auc,
    compute_sensitivity,
    compute_specificity,
    confusion_matrix,
    evaluate_classification,
    subgroup_metrics,
)
from medassist.exceptions import ConfigError, DataError, EmptyDataError


def make_probs(n: int, n_classes: int, *, seed: int = 0, signal: float = 1.0, decimals=None):
    """Random softmax probabilities (n, C) with some signal, and labels (n,)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    z = rng.normal(size=(n, n_classes))
    z[np.arange(n), y] += signal
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    if decimals is not None:  # coarse probabilities create many ties
        p = np.round(p, decimals)
        p = p / p.sum(axis=1, keepdims=True)
    return p, y


@pytest.mark.parametrize("positive_index", [1, 0])
@pytest.mark.parametrize("decimals", [None, 1])
def test_binary_metrics_match_sklearn(positive_index, decimals):
    p, y = make_probs(300, 2, seed=1, decimals=decimals)
    kw = {"positive_index": positive_index}
    pos_score = p[:, positive_index]
    y_pos = (y == positive_index).astype(int)
    pred_pos = (pos_score >= 0.5).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y_pos, pred_pos).ravel()

    assert compute_roc_auc(p, y, **kw) == pytest.approx(skm.roc_auc_score(y_pos, pos_score))
    assert compute_pr_auc(p, y, **kw) == pytest.approx(
        skm.average_precision_score(y_pos, pos_score)
    )
    assert compute_brier(p, y, **kw) == pytest.approx(skm.brier_score_loss(y_pos, pos_score))
    assert compute_f1(p, y, **kw) == pytest.approx(skm.f1_score(y_pos, pred_pos))
    assert compute_accuracy(p, y, **kw) == pytest.approx(skm.accuracy_score(y_pos, pred_pos))
    assert compute_sensitivity(p, y, **kw) == pytest.approx(tp / (tp + fn))
    assert compute_specificity(p, y, **kw) == pytest.approx(tn / (tn + fp))


@pytest.mark.parametrize("n_classes", [3, 5])
def test_multiclass_metrics_match_sklearn(n_classes):
    p, y = make_probs(400, n_classes, seed=2)
    pred = p.argmax(axis=1)
    onehot = np.eye(n_classes)[y]
    cm = skm.confusion_matrix(y, pred)
    tn = cm.sum() - cm.sum(axis=0) - cm.sum(axis=1) + np.diag(cm)
    fp = cm.sum(axis=0) - np.diag(cm)

    assert compute_roc_auc(p, y) == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr", average="macro")
    )
    assert compute_pr_auc(p, y) == pytest.approx(
        skm.average_precision_score(onehot, p, average="macro")
    )
    # Multiclass Brier sums over classes (Brier's original definition).
    assert compute_brier(p, y) == pytest.approx(np.mean(np.sum((p - onehot) ** 2, axis=1)))
    assert compute_f1(p, y) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert compute_accuracy(p, y) == pytest.approx(skm.accuracy_score(y, pred))
    assert compute_sensitivity(p, y) == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert compute_specificity(p, y) == pytest.approx(np.mean(tn / (tn + fp)))
    np.testing.assert_array_equal(confusion_matrix(p, y), cm)


def test_threshold_changes_binary_decisions():
    p = np.array([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8], [0.9, 0.1]])
    y = np.array([1, 1, 1, 0])
    assert compute_sensitivity(p, y) == pytest.approx(2 / 3)
    assert compute_sensitivity(p, y, threshold=0.25) == pytest.approx(1.0)
    assert compute_specificity(p, y, threshold=0.05) == pytest.approx(0.0)


def test_ece_binary_matches_hand_computation():
    p_pos = np.array([0.05, 0.15, 0.12, 0.55, 0.95, 0.92])
    y = np.array([0, 1, 0, 1, 1, 1])
    p = np.column_stack([1 - p_pos, p_pos])
    # bins of width 0.1: {0.05}, {0.15, 0.12}, {0.55}, {0.95, 0.92}
    expected = (abs(0.05 - 0) + 2 * abs(0.135 - 0.5) + abs(0.55 - 1) + 2 * abs(0.935 - 1)) / 6
    assert compute_ece(p, y, n_bins=10) == pytest.approx(expected)


def test_ece_small_for_calibrated_and_large_for_overconfident():
    rng = np.random.default_rng(3)
    q = rng.uniform(size=20_000)
    y = (rng.uniform(size=q.size) < q).astype(int)  # outcomes drawn from the stated probability
    calibrated = np.column_stack([1 - q, q])
    overconfident = np.column_stack([1 - (q > 0.5), (q > 0.5)]).astype(float)
    assert compute_ece(calibrated, y) < 0.02
    assert compute_ece(overconfident, y) > 0.2


def test_multiclass_ece_uses_top_label_confidence():
    p = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    y = np.array([0, 1, 2])
    # top confidences 0.8 (right), 0.6 (wrong), 0.8 (right); 10 bins
    expected = (2 * abs(0.8 - 1.0) + abs(0.6 - 0.0)) / 3
    assert compute_ece(p, y, n_bins=10) == pytest.approx(expected)


@pytest.mark.parametrize("fn", [compute_roc_auc, compute_pr_auc, compute_sensitivity])
def test_one_class_only_warns_and_returns_nan(fn):
    p, _ = make_probs(20, 2, seed=4)
    y = np.zeros(20, dtype=int)  # negatives only
    with pytest.warns(UndefinedMetricWarning, match="undefined"):
        assert math.isnan(fn(p, y))


def test_f1_is_nan_only_when_no_positive_is_present_or_predicted():
    y = np.zeros(3, dtype=int)
    flagged = np.array([[0.9, 0.1], [0.3, 0.7], [0.8, 0.2]])
    assert compute_f1(flagged, y) == 0.0  # a false positive: F1 is defined and 0
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(compute_f1(np.array([[0.9, 0.1]] * 3), y))


def test_specificity_without_negatives_warns_nan():
    p, _ = make_probs(20, 2, seed=4)
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(compute_specificity(p, np.ones(20, dtype=int)))


def test_multiclass_missing_class_warns_nan_instead_of_averaging_the_rest():
    p, y = make_probs(60, 3, seed=5)
    y = np.where(y == 2, 0, y)
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(compute_roc_auc(p, y))
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(compute_sensitivity(p, y))


def test_defined_metrics_do_not_warn():
    p, y = make_probs(50, 2, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fn in (compute_roc_auc, compute_pr_auc, compute_accuracy, compute_sensitivity,
                   compute_specificity, compute_f1, compute_brier, compute_ece):
            assert math.isfinite(fn(p, y))


@pytest.mark.parametrize(
    ("y_prob", "y_true", "match"),
    [
        (np.array([0.2, 0.8]), np.array([0, 1]), "2-D"),
        (np.array([[0.2, 0.8]]), np.array([0, 1]), "rows"),
        (np.array([[0.2, 0.9], [0.5, 0.5]]), np.array([0, 1]), "sum to 1"),
        (np.array([[2.0, -1.0], [0.5, 0.5]]), np.array([0, 1]), r"\[0, 1\]"),
        (np.array([[0.2, 0.8], [0.5, 0.5]]), np.array([0, 2]), "0..1"),
        (np.array([[0.2, 0.8], [0.5, 0.5]]), np.array([0.0, 0.5]), "integer"),
        (np.array([[np.nan, 0.8], [0.5, 0.5]]), np.array([0, 1]), "NaN"),
    ],
)
def test_bad_inputs_raise_data_error(y_prob, y_true, match):
    with pytest.raises(DataError, match=match):
        compute_roc_auc(y_prob, y_true)


def test_empty_input_and_bad_options():
    with pytest.raises(EmptyDataError):
        compute_accuracy(np.zeros((0, 2)), np.zeros(0, dtype=int))
    p, y = make_probs(10, 2)
    with pytest.raises(ConfigError, match="positive_index"):
        compute_roc_auc(p, y, positive_index=2)
    with pytest.raises(ConfigError, match="threshold"):
        compute_f1(p, y, threshold=1.5)
    with pytest.raises(ConfigError, match="n_bins"):
        compute_ece(p, y, n_bins=0)


def test_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    p, y = make_probs(40, 2, seed=7)
    assert compute_roc_auc(torch.tensor(p), torch.tensor(y)) == pytest.approx(
        compute_roc_auc(p, y)
    )


def test_classification_metrics_accumulates_batches_and_resets():
    p, y = make_probs(120, 3, seed=8)
    m = ClassificationMetrics(n_classes=3)
    for start in range(0, 120, 32):
        m.update(p[start : start + 32], y[start : start + 32])
    result = m.aggregate()
    assert list(result) == list(METRIC_NAMES)
    assert result["auc"] == pytest.approx(compute_roc_auc(p, y))
    assert result["f1"] == pytest.approx(compute_f1(p, y))
    assert result["ece"] == pytest.approx(compute_ece(p, y))
    m.reset()
    with pytest.raises(EmptyDataError):
        m.aggregate()
    with pytest.raises(DataError, match="3 columns"):
        m.update(*make_probs(5, 2))
    with pytest.raises(ConfigError, match="n_classes"):
        ClassificationMetrics(n_classes=1)


def test_bootstrap_ci_contains_point_and_narrows_with_more_data():
    small_p, small_y = make_probs(100, 2, seed=9)
    large_p, large_y = make_probs(2000, 2, seed=9)
    point, low, high = bootstrap_ci(compute_roc_auc, small_p, small_y, n_boot=300)
    assert point == pytest.approx(compute_roc_auc(small_p, small_y))
    assert low <= point <= high
    _, low_l, high_l = bootstrap_ci(compute_roc_auc, large_p, large_y, n_boot=300)
    assert (high_l - low_l) < 0.6 * (high - low)


def test_bootstrap_ci_is_reproducible_and_skips_nan_resamples():
    p, y = make_probs(30, 2, seed=10)
    y[:] = 0
    y[0] = 1  # one positive: many resamples have none and give NaN
    first = bootstrap_ci(compute_roc_auc, p, y, n_boot=200, seed=3)
    assert first == bootstrap_ci(compute_roc_auc, p, y, n_boot=200, seed=3)
    assert all(math.isfinite(v) for v in first)


def test_bootstrap_ci_all_nan_gives_nan_bounds():
    p, _ = make_probs(20, 2)
    with pytest.warns(UndefinedMetricWarning):
        point, low, high = bootstrap_ci(compute_roc_auc, p, np.zeros(20, dtype=int), n_boot=50)
    assert math.isnan(point) and math.isnan(low) and math.isnan(high)


def test_evaluate_classification_is_json_and_matches_bootstrap_ci():
    p, y = make_probs(500, 2, seed=11)
    result = evaluate_classification(p, y, classes=["healthy", "sick"], n_boot=200, seed=5)
    json.dumps(result, allow_nan=False)
    assert result["n"] == 500
    assert result["positive_class"] == "sick"
    assert result["class_counts"] == {"healthy": int((y == 0).sum()), "sick": int((y == 1).sum())}
    assert set(result["metrics"]) == set(METRIC_NAMES)
    assert np.array_equal(result["confusion_matrix"], confusion_matrix(p, y))
    # The vectorised bootstrap draws the same resamples as bootstrap_ci with the same seed.
    for name, fn in (("auc", compute_roc_auc), ("pr_auc", compute_pr_auc),
                     ("specificity", compute_specificity), ("brier", compute_brier)):
        point, low, high = bootstrap_ci(fn, p, y, n_boot=200, seed=5)
        m = result["metrics"][name]
        assert m["value"] == pytest.approx(point)
        assert (m["ci_low"], m["ci_high"]) == pytest.approx((low, high))
        assert m["ci_low"] <= m["value"] <= m["ci_high"]
    # ECE has its own interval (below), which holds the estimate.
    ece = result["metrics"]["ece"]
    assert ece["value"] == pytest.approx(compute_ece(p, y, n_bins=15))
    assert ece["ci_low"] <= ece["value"] <= ece["ci_high"]


def test_evaluate_classification_multiclass_and_undefined_values_are_none():
    p, y = make_probs(90, 3, seed=12)
    result = evaluate_classification(p, y, classes=["a", "b", "c"], n_boot=50)
    assert result["positive_class"] is None
    # positive_index means nothing for multiclass; None is accepted there.
    no_pos = evaluate_classification(p, y, classes=["a", "b", "c"], positive_index=None,
                                     n_boot=50)
    assert no_pos["metrics"] == result["metrics"]
    assert compute_roc_auc(p, y, positive_index=None) == pytest.approx(compute_roc_auc(p, y))
    assert len(result["confusion_matrix"]) == 3
    p2, _ = make_probs(40, 2)
    with pytest.warns(UndefinedMetricWarning):
        degenerate = evaluate_classification(p2, np.zeros(40, dtype=int), classes=["n", "p"],
                                             n_boot=20)
    assert degenerate["metrics"]["auc"] == {
        "value": None, "ci_low": None, "ci_high": None, "n_boot_valid": 0
    }
    json.dumps(degenerate, allow_nan=False)
    with pytest.raises(ConfigError, match="classes"):
        evaluate_classification(p, y, classes=["a", "b"], n_boot=0)


def test_evaluate_classification_is_fast():
    import time

    p, y = make_probs(500, 2, seed=13)
    start = time.perf_counter()
    evaluate_classification(p, y, classes=["n", "p"], n_boot=1000)
    assert time.perf_counter() - start < 5.0  # ~0.1 s here; generous for busy CI machines


def test_subgroup_metrics_reports_each_group_and_suppresses_small_ones():
    p, y = make_probs(200, 2, seed=14)
    groups = np.array(["F"] * 120 + ["M"] * 75 + ["X"] * 4 + [None], dtype=object)
    rows = subgroup_metrics(p, y, groups, classes=["n", "p"], positive_index=1, min_size=10)
    by_name = {r["group"]: r for r in rows}
    assert set(by_name) == {"F", "M", "X", "(missing)"}
    assert by_name["F"]["n"] == 120
    assert by_name["F"]["auc"] == pytest.approx(compute_roc_auc(p[:120], y[:120]))
    assert by_name["M"]["accuracy"] == pytest.approx(compute_accuracy(p[120:195], y[120:195]))
    assert by_name["X"]["suppressed"] and by_name["X"]["auc"] is None
    json.dumps(rows, allow_nan=False)


# ---- ECE interval: the estimate inside, coverage of the true ECE (issue 13, item 4) -----------

def _calibrated(rng, n, shift=0.0):
    q = rng.uniform(0.02, 0.98, n)
    y = (rng.random(n) < q).astype(int)
    pm = np.clip(q + shift, 0.001, 0.999)
    return np.column_stack([1 - pm, pm]), y


def test_ece_interval_contains_its_estimate_and_covers_zero_for_a_calibrated_model():
    """Perfectly calibrated probabilities: the true ECE is 0, the binned estimate is biased up.
    The percentile bootstrap never covered 0 here (and put the estimate at its lower edge)."""
    rng = np.random.default_rng(7)
    covered, reps = 0, 40
    for r in range(reps):
        p, y = _calibrated(rng, 300)
        ece = evaluate_classification(p, y, classes=["a", "b"], n_boot=200, seed=r)["metrics"]["ece"]
        assert ece["ci_low"] <= ece["value"] <= ece["ci_high"]
        assert ece["ci_low"] < ece["value"] or ece["value"] == 0  # not pinned to the lower edge
        covered += ece["ci_low"] == 0.0
    assert covered / reps >= 0.85


def test_ece_interval_covers_the_true_ece_of_a_miscalibrated_model():
    rng = np.random.default_rng(11)
    big_p, big_y = _calibrated(np.random.default_rng(0), 200_000, shift=0.08)
    true = compute_ece(big_p, big_y)
    covered, reps = 0, 30
    for r in range(reps):
        p, y = _calibrated(rng, 400, shift=0.08)
        ece = evaluate_classification(p, y, classes=["a", "b"], n_boot=200, seed=r)["metrics"]["ece"]
        assert ece["ci_low"] <= ece["value"] <= ece["ci_high"]
        covered += ece["ci_low"] <= true <= ece["ci_high"]
    assert covered / reps >= 0.85
