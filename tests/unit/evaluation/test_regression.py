"""Regression metrics: values against scikit-learn/scipy, bootstrap CIs, undefined cases."""

import warnings

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from medassist.evaluation.metrics import UndefinedMetricWarning
from medassist.evaluation.regression import (
    RegressionMetrics,
    compute_mae,
    compute_r2,
    compute_rmse,
    compute_spearman,
    evaluate_regression,
)
from medassist.exceptions import DataError, EmptyDataError

rng = np.random.default_rng(0)
Y = rng.normal(size=200)
P = Y + rng.normal(scale=0.5, size=200)
P[:5] = P[5]  # ties


def test_values_match_reference_implementations():
    assert compute_rmse(P, Y) == pytest.approx(mean_squared_error(Y, P) ** 0.5)
    assert compute_mae(P, Y) == pytest.approx(mean_absolute_error(Y, P))
    assert compute_r2(P, Y) == pytest.approx(r2_score(Y, P))
    assert compute_spearman(P, Y) == pytest.approx(spearmanr(P, Y).statistic)


def test_stateful_class_equals_the_pure_functions():
    m = RegressionMetrics()
    for s in range(0, 200, 64):
        m.update(P[s:s + 64], Y[s:s + 64])
    assert m.aggregate()["rmse"] == pytest.approx(compute_rmse(P, Y))
    m.reset()
    with pytest.raises(EmptyDataError):
        m.aggregate()


def test_bootstrap_interval_brackets_the_estimate_and_is_seeded():
    a = evaluate_regression(P, Y, n_boot=300, seed=1)
    b = evaluate_regression(P, Y, n_boot=300, seed=1)
    assert a == b and a["task"] == "regression" and a["n"] == 200
    for name, v in a["metrics"].items():
        assert v["ci_low"] <= v["value"] <= v["ci_high"], name
    assert evaluate_regression(P, Y, n_boot=0)["metrics"]["rmse"]["ci_low"] is None


def test_undefined_metrics_warn_and_return_nan():
    with pytest.warns(UndefinedMetricWarning, match="r2"):
        assert np.isnan(compute_r2(np.array([1.0, 2.0]), np.array([3.0, 3.0])))
    with pytest.warns(UndefinedMetricWarning, match="spearman"):
        assert np.isnan(compute_spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        out = evaluate_regression(np.ones(3), np.ones(3), n_boot=10)
    assert out["metrics"]["r2"]["value"] is None and out["metrics"]["rmse"]["value"] == 0.0


@pytest.mark.parametrize("pred, true, match", [
    (np.ones(3), np.ones(4), "same number"), (np.ones((3, 2)), np.ones(3), "1-D"),
    (np.array([1.0, np.nan]), np.ones(2), "NaN"), (np.array([]), np.array([]), "0 samples"),
])
def test_bad_inputs_raise(pred, true, match):
    with pytest.raises(DataError, match=match):
        compute_rmse(pred, true)
