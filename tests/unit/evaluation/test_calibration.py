"""Temperature scaling and reliability curves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medassist.evaluation import TemperatureScaler, compute_ece, reliability_curve
from medassist.exceptions import ConfigError, DataError, NotFittedError


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def nll(p, y):
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def overconfident_logits(n=2000, n_classes=3, factor=4.0, seed=0):
    """Labels drawn from softmax(z); the logits handed over are factor * z (over-confident)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=1.5, size=(n, n_classes))
    p = softmax(z)
    y = np.array([rng.choice(n_classes, p=row) for row in p])
    return factor * z, y


def test_temperature_scaling_fixes_overconfidence():
    logits, y = overconfident_logits()
    scaler = TemperatureScaler().fit(logits, y)
    assert scaler.temperature_ == pytest.approx(4.0, rel=0.15)
    calibrated = scaler.transform(logits)
    raw = softmax(logits)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    assert nll(calibrated, y) < nll(raw, y) - 0.1
    assert compute_ece(calibrated, y) < 0.5 * compute_ece(raw, y)
    assert scaler.nll_after_ < scaler.nll_before_
    # Scaling never changes which class is ranked first.
    np.testing.assert_array_equal(calibrated.argmax(axis=1), raw.argmax(axis=1))


def test_round_trip_through_plain_json():
    logits, y = overconfident_logits(n=500, n_classes=2, seed=1)
    scaler = TemperatureScaler(max_iter=50).fit(logits, y)
    d = json.loads(json.dumps(scaler.to_dict()))
    restored = TemperatureScaler.from_dict(d)
    assert restored.temperature_ == scaler.temperature_
    assert restored.max_iter == 50
    np.testing.assert_allclose(restored.transform(logits), scaler.transform(logits))


def test_not_fitted_raises():
    scaler = TemperatureScaler()
    with pytest.raises(NotFittedError, match="fit"):
        scaler.transform(np.zeros((2, 2)))
    with pytest.raises(NotFittedError):
        scaler.to_dict()


def test_accepts_tensors_and_works_under_no_grad():
    torch = pytest.importorskip("torch")
    logits, y = overconfident_logits(n=400, seed=2)
    with torch.no_grad():
        scaler = TemperatureScaler().fit(torch.tensor(logits, dtype=torch.float32),
                                         torch.tensor(y))
    assert scaler.temperature_ > 1.5
    assert scaler.transform(torch.tensor(logits)).shape == (400, 3)


def test_degenerate_fit_is_clamped_with_warning():
    # Logits that always point at the wrong class: NLL keeps falling as T -> infinity.
    logits = np.array([[5.0, -5.0], [-5.0, 5.0]] * 20)
    y = np.array([1, 0] * 20)
    with pytest.warns(RuntimeWarning, match="clamped"):
        scaler = TemperatureScaler().fit(logits, y)
    assert scaler.temperature_ == pytest.approx(20.0)
    np.testing.assert_allclose(scaler.transform(logits)[0], softmax(logits[:1] / 20.0)[0])


def test_invalid_inputs():
    with pytest.raises(ConfigError, match="max_iter"):
        TemperatureScaler(max_iter=0)
    with pytest.raises(DataError, match="2-D"):
        TemperatureScaler().fit(np.zeros(5), np.zeros(5, dtype=int))
    with pytest.raises(DataError, match="NaN"):
        TemperatureScaler().fit(np.array([[np.nan, 1.0]]), np.array([0]))
    scaler = TemperatureScaler().fit(*overconfident_logits(n=100, seed=3))
    with pytest.raises(DataError, match="3 columns"):
        scaler.transform(np.zeros((4, 2)))
    with pytest.raises(ConfigError):
        TemperatureScaler.from_dict({"method": "isotonic"})
    with pytest.raises(ConfigError, match="temperature"):
        TemperatureScaler.from_dict({"method": "temperature", "temperature": -1, "n_classes": 2})


def test_reliability_curve_bins():
    p_pos = np.array([0.05, 0.08, 0.55, 0.95, 1.0])
    y = np.array([0, 1, 1, 1, 0])
    mean_pred, frac, counts = reliability_curve(np.column_stack([1 - p_pos, p_pos]), y, n_bins=10)
    assert counts.tolist() == [2, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert mean_pred[0] == pytest.approx(0.065) and frac[0] == pytest.approx(0.5)
    assert np.isnan(mean_pred[1]) and np.isnan(frac[1])
    assert mean_pred[9] == pytest.approx(0.975) and frac[9] == pytest.approx(0.5)
    # positive_index=0 reads the other column and the other class.
    _, frac0, counts0 = reliability_curve(np.column_stack([1 - p_pos, p_pos]), y,
                                          positive_index=0, n_bins=10)
    assert counts0.sum() == 5 and frac0[0] == pytest.approx(0.5)
