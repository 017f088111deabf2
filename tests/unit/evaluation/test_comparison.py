import numpy as np
import pytest

from medassist.evaluation.comparison import verdict
from medassist.evaluation.metrics import evaluate_classification, paired_auc_difference


def _probs(score):
    return np.column_stack([1 - score, score])


def test_paired_difference_uses_the_same_resamples_and_is_zero_for_the_same_model():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = _probs(np.clip(0.3 * y + 0.7 * rng.random(200), 0, 1))
    d = paired_auc_difference(p, p, y, n_boot=200, seed=3)
    assert d["difference"] == 0 and d["ci_low"] == 0 and d["ci_high"] == 0
    other = _probs(rng.random(200))
    d = paired_auc_difference(p, other, y, n_boot=200, seed=3)
    ev = evaluate_classification(p, y, classes=["no", "yes"], n_boot=0)
    assert d["auc_a"] == pytest.approx(ev["metrics"]["auc"]["value"])
    assert d["ci_low"] > 0 and d["difference"] == pytest.approx(d["auc_a"] - d["auc_b"])


@pytest.mark.parametrize("lo, hi, words", [(0.01, 0.05, "The deep model ranks patients better than a simple logistic model"),
                                           (-0.04, 0.02, "A simple logistic model does as well on these data"),
                                           (-0.08, -0.01, "A simple logistic model does better than the deep model")])
def test_verdict_in_words(lo, hi, words):
    d = {"auc_a": 0.84, "auc_b": 0.85, "difference": -0.01, "ci_low": lo, "ci_high": hi}
    assert verdict(d, model="mlp", baseline="logistic").startswith(words)


def test_verdict_example_from_the_issue():
    d = {"auc_a": 0.84, "auc_b": 0.85, "difference": -0.01, "ci_low": -0.04, "ci_high": 0.02}
    assert verdict(d, model="mlp", baseline="logistic") == (
        "A simple logistic model does as well on these data (AUC 0.85 vs 0.84 for the deep model, "
        "difference −0.01 [−0.04, +0.02]).")
