"""Regression metrics: pure ``compute_*`` functions, a stateful accumulator, bootstrap CIs.

Conventions: ``y_pred`` and ``y_true`` are float arrays (N,) of the same length, finite. A
metric that is not defined for the input (R² of a constant target, Spearman's rho with a
constant side, fewer than two samples) issues an :class:`UndefinedMetricWarning` and returns
NaN; it never invents a number.

Example:
    >>> compute_rmse(np.array([1.0, 2.0]), np.array([1.0, 3.0]))
    0.7071067811865476
    >>> evaluate_regression(y_pred, y_true, n_boot=1000)["metrics"]["rmse"]
    {'value': 1.02, 'ci_low': 0.87, 'ci_high': 1.19, 'n_boot_valid': 1000}
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from medassist.evaluation.bootstrap import check_bootstrap, json_float, percentile_ci, resamples
from medassist.evaluation.metrics import UndefinedMetricWarning, to_numpy
from medassist.exceptions import DataError, EmptyDataError

#: Metric names in the order reports show them.
REGRESSION_METRICS: tuple[str, ...] = ("rmse", "mae", "r2", "spearman")


def _check(y_pred: Any, y_true: Any, *, owner: str) -> tuple[np.ndarray, np.ndarray]:
    p, y = to_numpy(y_pred), to_numpy(y_true)
    if p.ndim != 1 or y.ndim != 1:
        raise DataError(f"{owner}: y_pred and y_true must be 1-D arrays (N,). Got shapes {p.shape} and {y.shape}.")
    if len(p) != len(y):
        raise DataError(f"{owner}: y_pred has {len(p)} values but y_true has {len(y)}; expected the same number.")
    if len(y) == 0:
        raise EmptyDataError(f"{owner}: got 0 samples; expected at least one.")
    try:
        p, y = p.astype(np.float64), y.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{owner}: y_pred and y_true must hold numbers ({e}).") from e
    for name, a in (("y_pred", p), ("y_true", y)):
        if not np.all(np.isfinite(a)):
            raise DataError(f"{owner}: {name} holds {int(np.sum(~np.isfinite(a)))} NaN/inf value(s).")
    return p, y


def _undefined(metric: str, reason: str) -> float:
    warnings.warn(f"{metric} is undefined: {reason}. Returning NaN.", UndefinedMetricWarning, stacklevel=4)
    return math.nan


def _rank(a: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), as scipy.stats.rankdata."""
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], len(a)]
    avg = (starts + ends - 1) / 2.0
    ranks = np.empty(len(a))
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _values(p: np.ndarray, y: np.ndarray, names=REGRESSION_METRICS, *, warn: bool = True) -> dict[str, float]:
    out: dict[str, float] = {}
    err = p - y
    undefined = _undefined if warn else (lambda m, r: math.nan)
    if "rmse" in names:
        out["rmse"] = float(np.sqrt(np.mean(err**2)))
    if "mae" in names:
        out["mae"] = float(np.mean(np.abs(err)))
    if "r2" in names:
        ss_tot = float(np.sum((y - y.mean()) ** 2))
        out["r2"] = undefined("r2", "y_true is constant") if ss_tot == 0 else 1.0 - float(np.sum(err**2)) / ss_tot
    if "spearman" in names:
        if len(y) < 2:
            out["spearman"] = undefined("spearman", "fewer than two samples")
        else:
            rp, ry = _rank(p), _rank(y)
            rp, ry = rp - rp.mean(), ry - ry.mean()
            den = math.sqrt(float(np.sum(rp**2) * np.sum(ry**2)))
            out["spearman"] = undefined("spearman", "y_pred or y_true is constant") if den == 0 else float(np.sum(rp * ry) / den)
    return {n: out[n] for n in names}


def compute_rmse(y_pred: Any, y_true: Any) -> float:
    """Root mean squared error, in the target's units."""
    return _values(*_check(y_pred, y_true, owner="compute_rmse"), ("rmse",))["rmse"]


def compute_mae(y_pred: Any, y_true: Any) -> float:
    """Mean absolute error, in the target's units."""
    return _values(*_check(y_pred, y_true, owner="compute_mae"), ("mae",))["mae"]


def compute_r2(y_pred: Any, y_true: Any) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot; NaN (with a warning) for a constant target."""
    return _values(*_check(y_pred, y_true, owner="compute_r2"), ("r2",))["r2"]


def compute_spearman(y_pred: Any, y_true: Any) -> float:
    """Spearman's rank correlation (ties get average ranks); NaN when a side is constant."""
    return _values(*_check(y_pred, y_true, owner="compute_spearman"), ("spearman",))["spearman"]


class RegressionMetrics:
    """Accumulates batches and computes every metric of :data:`REGRESSION_METRICS`.

    Example:
        >>> m = RegressionMetrics()
        >>> for pred, true in batches: m.update(pred, true)
        >>> m.aggregate()["rmse"]
    """

    def __init__(self) -> None:
        self._pred: list[np.ndarray] = []
        self._true: list[np.ndarray] = []

    def update(self, y_pred: Any, y_true: Any) -> None:
        p, y = _check(y_pred, y_true, owner="RegressionMetrics")
        self._pred.append(p.copy())
        self._true.append(y.copy())

    def aggregate(self) -> dict[str, float]:
        if not self._pred:
            raise EmptyDataError("RegressionMetrics: aggregate() called before any update().")
        return _values(np.concatenate(self._pred), np.concatenate(self._true))

    def reset(self) -> None:
        self._pred.clear()
        self._true.clear()


def evaluate_regression(
    y_pred: Any, y_true: Any, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
) -> dict[str, Any]:
    """Every regression metric with a percentile-bootstrap CI, as plain JSON.

    Returns:
        ``{"n", "task": "regression", "metrics": {name: {"value", "ci_low", "ci_high",
        "n_boot_valid"}}, "bootstrap": {...}, "target_mean", "target_sd"}``; undefined values
        are None.
    """
    owner = "evaluate_regression"
    p, y = _check(y_pred, y_true, owner=owner)
    check_bootstrap(n_boot, alpha, seed, owner=owner, min_boot=0)
    point = _values(p, y)
    boot = np.full((n_boot, len(REGRESSION_METRICS)), math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for b, idx in enumerate(resamples(len(y), n_boot, seed)):
            v = _values(p[idx], y[idx], warn=False)
            boot[b] = [v[n] for n in REGRESSION_METRICS]
    metrics = {}
    for j, name in enumerate(REGRESSION_METRICS):
        low, high, n_valid = percentile_ci(boot[:, j], alpha) if n_boot else (None, None, 0)
        metrics[name] = {"value": json_float(point[name]), "ci_low": json_float(low), "ci_high": json_float(high), "n_boot_valid": n_valid}
    return {
        "n": int(len(y)), "task": "regression", "metrics": metrics,
        "bootstrap": {"n_boot": int(n_boot), "alpha": float(alpha), "seed": int(seed), "method": "percentile"},
        "target_mean": float(y.mean()), "target_sd": float(y.std()),
    }
