"""MedMNIST AUC/ACC definitions and per-label AUC."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medassist.evaluation.multilabel import evaluate_multilabel, medmnist_acc, medmnist_auc, per_label_auc


def test_definitions_match_the_medmnist_evaluator():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (50, 3))
    s = np.clip(y * 0.4 + rng.random((50, 3)) * 0.6, 0, 1)
    expected_auc = np.mean([roc_auc_score(y[:, j], s[:, j]) for j in range(3)])
    expected_acc = np.mean([np.mean((s[:, j] >= 0.5) == y[:, j]) for j in range(3)])
    assert medmnist_auc(s, y, task="multilabel") == pytest.approx(expected_auc)
    assert medmnist_acc(s, y, task="multilabel") == pytest.approx(expected_acc)
    yc = rng.integers(0, 3, 60)
    p = rng.dirichlet(np.ones(3), 60)
    assert medmnist_auc(p, yc, task="multiclass") == pytest.approx(np.mean([roc_auc_score(yc == k, p[:, k]) for k in range(3)]))
    assert medmnist_acc(p, yc, task="multiclass") == pytest.approx(np.mean(p.argmax(1) == yc))
    yb = rng.integers(0, 2, 40)
    pb = np.stack([1 - s[:40, 0], s[:40, 0]], axis=1)
    assert medmnist_auc(pb, yb, task="binary") == pytest.approx(roc_auc_score(yb, pb[:, 1]))


def test_label_with_one_class_is_nan_and_left_out():
    y = np.array([[0, 1], [1, 1], [0, 1], [1, 1]])
    s = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.5], [0.7, 0.6]])
    aucs = per_label_auc(s, y)
    assert aucs[0] == 1.0 and np.isnan(aucs[1])
    assert medmnist_auc(s, y, task="multilabel") == 1.0
    ev = evaluate_multilabel(s, y, labels=["a", "b"], n_boot=20)
    assert ev["per_label"][1]["auc"] is None and ev["n_labels_with_auc"] == 1
    assert ev["metrics"]["medmnist_acc"]["value"] == pytest.approx(np.mean([1.0, 0.75]))
