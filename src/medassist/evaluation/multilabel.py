"""Multi-label metrics, and the MedMNIST v2 definitions of AUC and ACC for every task.

MedMNIST (Yang et al., 2023, ``medmnist/evaluator.py``) defines:

- binary: AUC of the positive-class score; ACC at threshold 0.5 on that score;
- multi-class (and ordinal): the mean over classes of one-vs-rest AUCs of the softmax scores;
  ACC of the arg-max;
- multi-label: the mean over labels of per-label AUCs; ACC = the mean over labels of per-label
  accuracy at threshold 0.5.

Figures computed here therefore compare directly with the paper's tables. A label with only one
class present in the data has no AUC: it is NaN (with a warning) and left out of the mean, and
the result says how many labels were used.

Example:
    >>> medmnist_auc(y_score, y_true, task="multilabel"), medmnist_acc(y_score, y_true, task="multilabel")
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from medassist.evaluation.bootstrap import resamples
from medassist.evaluation.metrics import UndefinedMetricWarning, compute_roc_auc
from medassist.exceptions import DataError


def _auc_binary(score: np.ndarray, y: np.ndarray) -> float:
    y = np.asarray(y).astype(int)
    if y.min() == y.max():
        return math.nan
    p = np.stack([1 - score, score], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return float(compute_roc_auc(p, y, positive_index=1))


def _check(y_score: Any, y_true: Any, task: str) -> tuple[np.ndarray, np.ndarray]:
    s, y = np.asarray(y_score, dtype=float), np.asarray(y_true)
    if s.ndim != 2 or len(s) != len(y):
        raise DataError(f"y_score must be (N, K) with N = len(y_true) = {len(y)}; got shape {s.shape}.")
    if task == "multilabel" and y.shape != s.shape:
        raise DataError(f"multi-label y_true must have the shape of y_score {s.shape}; got {y.shape}.")
    if task != "multilabel" and y.ndim != 1:
        y = y.reshape(-1)
    return s, y


def per_label_auc(y_score: Any, y_true: Any) -> np.ndarray:
    """AUC of each label (K,) from sigmoid scores (N, K) and 0/1 targets (N, K); NaN where undefined."""
    s, y = _check(y_score, y_true, "multilabel")
    return np.array([_auc_binary(s[:, j], y[:, j]) for j in range(s.shape[1])])


def medmnist_auc(y_score: Any, y_true: Any, *, task: str) -> float:
    """MedMNIST AUC (see module docstring); ``task`` in binary | multiclass | ordinal | multilabel."""
    s, y = _check(y_score, y_true, task)
    if task == "binary":
        return _auc_binary(s[:, -1], y)
    if task == "multilabel":
        aucs = per_label_auc(s, y)
    else:
        aucs = np.array([_auc_binary(s[:, k], (y == k).astype(int)) for k in range(s.shape[1])])
    if np.isnan(aucs).all():
        warnings.warn("No label or class has both outcomes present; the AUC is undefined.", UndefinedMetricWarning, stacklevel=2)
        return math.nan
    return float(np.nanmean(aucs))


def medmnist_acc(y_score: Any, y_true: Any, *, task: str, threshold: float = 0.5) -> float:
    """MedMNIST ACC (see module docstring)."""
    s, y = _check(y_score, y_true, task)
    if task == "binary":
        return float(np.mean((s[:, -1] >= threshold).astype(int) == y))
    if task == "multilabel":
        return float(np.mean(((s >= threshold).astype(int) == y).mean(axis=0)))
    return float(np.mean(s.argmax(axis=1) == y))


def evaluate_multilabel(
    y_score: Any, y_true: Any, *, labels: Sequence[str], threshold: float = 0.5, n_boot: int = 200, alpha: float = 0.05, seed: int = 0
) -> dict[str, Any]:
    """Per-label AUC, prevalence, sensitivity and specificity, the MedMNIST AUC/ACC, and a
    bootstrap interval of the macro AUC, as plain JSON (undefined values are None)."""
    s, y = _check(y_score, y_true, "multilabel")
    if len(labels) != s.shape[1]:
        raise DataError(f"{len(labels)} label names for {s.shape[1]} columns of y_score.")
    pred = (s >= threshold).astype(int)
    aucs = per_label_auc(s, y)

    def clean(x: float) -> float | None:
        return None if x is None or not math.isfinite(x) else float(x)

    rows = []
    for j, name in enumerate(labels):
        pos, neg = y[:, j] == 1, y[:, j] == 0
        rows.append({
            "label": str(name), "n_positive": int(pos.sum()), "prevalence": float(pos.mean()), "auc": clean(aucs[j]),
            "sensitivity": clean(float(pred[pos, j].mean()) if pos.any() else math.nan),
            "specificity": clean(float(1 - pred[neg, j].mean()) if neg.any() else math.nan),
        })
    boots = []
    for idx in resamples(len(y), n_boot, seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            a = per_label_auc(s[idx], y[idx])
        if not np.isnan(a).all():
            boots.append(float(np.nanmean(a)))
    low, high = (np.percentile(boots, [100 * alpha / 2, 100 * (1 - alpha / 2)]) if boots else (math.nan, math.nan))
    macro = float(np.nanmean(aucs)) if not np.isnan(aucs).all() else math.nan
    return {
        "n": int(len(y)), "task": "multilabel", "labels": [str(n) for n in labels], "threshold": float(threshold),
        "per_label": rows, "n_labels_with_auc": int((~np.isnan(aucs)).sum()),
        "metrics": {
            "macro_auc": {"value": clean(macro), "ci_low": clean(float(low)), "ci_high": clean(float(high)), "n_boot_valid": len(boots)},
            "medmnist_auc": {"value": clean(medmnist_auc(s, y, task="multilabel"))},
            "medmnist_acc": {"value": clean(medmnist_acc(s, y, task="multilabel", threshold=threshold))},
            "exact_match": {"value": float(np.mean((pred == y).all(axis=1)))},
        },
        "bootstrap": {"n_boot": int(n_boot), "alpha": float(alpha), "seed": int(seed), "method": "percentile"},
    }
