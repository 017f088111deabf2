"""Evaluation: classification metrics with bootstrap CIs, calibration, model cards, HTML reports.

Importing this package loads neither torch nor matplotlib; they are imported where used.
"""

from medassist.evaluation.calibration import TemperatureScaler, reliability_curve
from medassist.evaluation.metrics import (
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
from medassist.evaluation.model_card import ModelCard, default_card_texts
from medassist.evaluation.report import write_report

__all__ = [
    "METRIC_NAMES",
    "ClassificationMetrics",
    "ModelCard",
    "TemperatureScaler",
    "UndefinedMetricWarning",
    "bootstrap_ci",
    "compute_accuracy",
    "compute_brier",
    "compute_ece",
    "compute_f1",
    "compute_pr_auc",
    "compute_roc_auc",
    "compute_sensitivity",
    "compute_specificity",
    "confusion_matrix",
    "default_card_texts",
    "evaluate_classification",
    "reliability_curve",
    "subgroup_metrics",
    "write_report",
]
