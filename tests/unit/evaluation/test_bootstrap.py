"""The one bootstrap: the resample stream is pinned (every interval in saved bundles and
benchmark figures depends on it), shared by all evaluations, and NaN draws are skipped."""

import numpy as np
import pytest

from medassist.evaluation.bootstrap import bootstrap, json_float, percentile_ci, resample_weights, resamples
from medassist.evaluation.metrics import evaluate_classification, paired_auc_difference
from medassist.evaluation.regression import evaluate_regression
from medassist.exceptions import DataError


def test_resample_stream_is_pinned():
    assert [r.tolist() for r in resamples(5, 2, 0)] == [[4, 3, 2, 1, 1], [0, 0, 0, 0, 4]]
    y = np.arange(10.0)
    point, low, high = bootstrap(lambda r: y[r].mean(), 10, n_boot=200, seed=1)
    assert float(point) == 4.5
    assert float(low) == pytest.approx(2.6925000000000003, abs=1e-12) and float(high) == pytest.approx(6.4, abs=1e-12)


def test_weights_count_the_same_resamples_in_chunks():
    rows = np.stack(list(resamples(7, 10, 3)))
    chunks = list(resample_weights(7, 10, 3, chunk_elems=20))  # 2 resamples a chunk
    assert [start for start, _ in chunks] == [0, 2, 4, 6, 8]
    W = np.concatenate([w for _, w in chunks])
    assert W.shape == (10, 7) and (W.sum(axis=1) == 7).all()
    assert all((np.bincount(r, minlength=7) == w).all() for r, w in zip(rows, W))


def test_percentile_ci_skips_nan_and_json_float_drops_it():
    assert percentile_ci(np.array([1.0, 2.0, np.nan, 4.0]), 0.5) == (1.5, 3.0, 3)
    low, high, n = percentile_ci(np.array([np.nan]), 0.05)
    assert np.isnan(low) and np.isnan(high) and n == 0
    assert json_float(np.nan) is None and json_float(None) is None and json_float(np.float32(2.0)) == 2.0


def test_bootstrap_refuses_too_few_rows():
    with pytest.raises(DataError, match="at least 2 rows"):
        bootstrap(lambda r: 0.0, 1)


def test_evaluations_share_the_stream():
    """A metric's interval from evaluate_* equals a hand-made bootstrap over the same resamples."""
    rng = np.random.default_rng(0)
    y = rng.normal(size=40)
    p = y + rng.normal(size=40)
    mae = [np.mean(np.abs(p[i] - y[i])) for i in resamples(40, 100, 5)]
    got = evaluate_regression(p, y, n_boot=100, seed=5)["metrics"]["mae"]
    assert (got["ci_low"], got["ci_high"]) == pytest.approx(tuple(np.quantile(mae, [0.025, 0.975])), abs=1e-12)
    yc = rng.integers(0, 2, 60)
    pc = np.clip(yc * 0.3 + rng.random(60) * 0.7, 0, 1)
    P = np.column_stack([1 - pc, pc])
    same = paired_auc_difference(P, P, yc, n_boot=50, seed=2)
    assert same["difference"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0
    ev = evaluate_classification(P, yc, classes=["a", "b"], n_boot=50, seed=2)
    assert ev["metrics"]["auc"]["n_boot_valid"] == 50
